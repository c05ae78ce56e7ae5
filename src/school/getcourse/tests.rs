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

fn kind(status: u16) -> Kind {
    Failure::from_status(&GetCourseQuirks, status, None, None, "").kind
}

#[test]
fn a_402_is_refused_not_payment_required() {
    assert_eq!(kind(402), Kind::Permanent);
}

#[test]
fn a_425_is_refused() {
    assert_eq!(kind(425), Kind::Permanent);
}

#[test]
fn every_5xx_passes() {
    for s in [500, 501, 503, 505] {
        assert!(matches!(kind(s), Kind::Transient { .. }), "{s}");
    }
}

#[test]
fn a_refusal_of_the_data_is_permanent_and_a_rejected_one_reaches_the_queue_so() {
    assert_eq!(kind(401), Kind::Auth);
    assert_eq!(kind(404), Kind::Permanent);
    let e = parse_import(&json!({"success": true, "result": {
        "success": false, "error": true, "error_message": "Не указан email"}}))
    .unwrap_err();
    let text = e.to_string();
    assert_eq!(
        crate::sync::DeliveryError::from(e),
        crate::sync::DeliveryError::Permanent {
            message: text,
            http_status: None,
        }
    );
}
