use serde_json::json;

use super::*;

#[test]
fn inner_failure_under_outer_success_is_an_error() {
    let e = parse_import(&json!({"success": true, "action": "add", "result": {
        "success": false, "error": true, "error_message": "Не указан email"}}))
    .unwrap_err();
    assert!(e.to_string().contains("Не указан email"), "{e}");
    let ok = parse_import(&json!({"success": "true", "result": {
        "success": "true", "error": "false", "user_id": 77, "deal_id": "9"}}))
    .unwrap();
    assert_eq!(ok.user_id.as_deref(), Some("77"));
    assert_eq!(ok.deal_id.as_deref(), Some("9"));
}
