use super::*;
use crate::connectors::Kind;

fn contract(name: &str) -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/contracts/bitrix24");
    let path = std::path::Path::new(dir).join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("contract file {} is missing ({e}); the contracts directory must sit beside the repository", path.display())
    })
}

fn value(name: &str) -> Value {
    serde_json::from_slice(&contract(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn api(status: u16, name: &str) -> CrmError {
    let e: ErrorIn = serde_json::from_value(value(name)).unwrap();
    map_error(&ApiError {
        status: Some(status),
        code: e.error,
        description: e.error_description,
        retry_after: None,
        oauth: false,
    })
}

#[test]
fn every_contract_payload_parses() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/contracts/bitrix24");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("contracts/bitrix24 exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".json") {
            let _: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            seen += 1;
        }
    }
    assert_eq!(
        seen, 16,
        "a new payload file: give it a parsing test of its own"
    );
}

#[test]
fn crm_lead_add_response_gives_the_id() {
    let v = value("crm-lead-add.response.json");
    assert_eq!(id_of(&v["result"]), Some(3465));
}

#[test]
fn time_fragment_carries_the_operating_reset() {
    let v = value("time.fragment.json");
    assert_eq!(v["time"]["operating_reset_at"].as_i64(), Some(1778747792));
    let v = value("crm-lead-add.response.json");
    assert_eq!(v["time"]["operating_reset_at"].as_i64(), Some(1705765533));
}

#[test]
fn crm_duplicate_findbycomm_response_lists_contact_ids() {
    let v = value("crm-duplicate-findbycomm.response.json");
    let ids: Vec<i64> = v["result"]["CONTACT"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(id_of)
        .collect();
    assert_eq!(ids, vec![275, 2297]);
}

#[test]
fn request_contracts_have_the_shapes_the_client_sends() {
    // crm.duplicate.findbycomm: `values` an array, as phone_variants produces.
    let v = value("crm-duplicate-findbycomm.request.json");
    assert!(v["values"].is_array() && v["type"] == "PHONE");
    assert!(phone_variants(&Phone::parse("+79123456789").unwrap()).len() <= 20);
    // Timeline comments: lower-case `fields` with ENTITY_ID/ENTITY_TYPE/COMMENT.
    let v = value("crm-timeline-comment-add.request.json");
    for key in ["ENTITY_ID", "ENTITY_TYPE", "COMMENT"] {
        assert!(v["fields"].get(key).is_some(), "{key}");
    }
    // To-dos: camelCase at the top level.
    let v = value("crm-activity-todo-add.request.json");
    for key in [
        "ownerTypeId",
        "ownerId",
        "deadline",
        "title",
        "responsibleId",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    let v = value("tasks-task-add.request.json");
    assert!(v["fields"]["UF_CRM_TASK"].is_array());
    let v = value("crm-deal-update.request.json");
    assert_eq!(id_of(&v["ID"]), Some(123));
    let v = value("crm-lead-add.request.json");
    assert_eq!(v["fields"]["PHONE"][0]["VALUE_TYPE"], "WORK");
    // And its PHP form encoding is what a batch command carries.
    let q = php_query(&v);
    assert!(
        q.contains("fields%5BPHONE%5D%5B0%5D%5BVALUE%5D=555888"),
        "{q}"
    );
    assert!(q.contains("params%5BREGISTER_SONET_EVENT%5D=Y"), "{q}");
}

#[test]
fn error_contracts_map_to_retry_decisions() {
    let e = api(400, "error-fields-must-be-array.response.json");
    assert!(
        e.is_permanent() && e.to_string().contains("must be array"),
        "{e}"
    );
    let e = api(403, "error-access-denied.response.json");
    assert!(
        e.is_permanent() && e.to_string().contains("Access denied"),
        "{e}"
    );
    let e = api(400, "error-not-found.response.json");
    assert!(
        e.is_permanent() && e.to_string().contains("NOT_FOUND"),
        "{e}"
    );
    let e = api(402, "oauth-error-payment-required.response.json");
    assert!(e.is_payment_required() && e.status() == Some(402), "{e:?}");
    let not_found: ErrorIn =
        serde_json::from_value(value("error-not-found.response.json")).unwrap();
    assert!(
        CallError::Api(ApiError {
            status: Some(400),
            code: not_found.error,
            description: not_found.error_description,
            retry_after: None,
            oauth: false,
        })
        .is_not_found()
    );
}

#[test]
fn codes_and_statuses_sort_errors() {
    let e = |status: Option<u16>, code: &str| {
        map_error(&ApiError {
            status,
            code: code.into(),
            description: "x".into(),
            retry_after: None,
            oauth: true,
        })
    };
    assert_eq!(
        e(Some(503), "QUERY_LIMIT_EXCEEDED").retry_after(),
        Some(QUERY_LIMIT_RETRY)
    );
    assert_eq!(
        e(Some(429), "OPERATION_TIME_LIMIT").retry_after(),
        Some(OPERATION_LIMIT_RETRY)
    );
    for code in ["expired_token", "invalid_token", "NO_AUTH_FOUND"] {
        let a = e(Some(401), code);
        assert!(
            a.is_auth() && a.to_string().contains("zapis bitrix24 auth"),
            "{code}"
        );
    }
    for code in ["ACCESS_DENIED", "insufficient_scope"] {
        assert!(e(Some(403), code).is_permanent(), "{code}");
    }
    for code in ["INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER"] {
        assert!(e(Some(500), code).is_transient(), "{code}");
    }
    assert!(e(Some(500), "ERROR_CORE").is_transient());
    assert!(e(Some(400), "ERROR_CORE").is_permanent());
    assert!(e(Some(502), "").is_transient());
    assert!(e(None, "").is_transient());
    assert!(e(Some(400), "").is_permanent());
    assert!(e(Some(401), "").is_auth());
    assert!(e(Some(400), "PAYMENT_REQUIRED").is_payment_required());
    // A numeric error code (`100`) reads as text.
    let n: ErrorIn = serde_json::from_str(r#"{"error": 100, "error_description": "bad"}"#).unwrap();
    assert_eq!(n.error, "100");
}

fn kind(status: Option<u16>, code: &str, retry_after: Option<Duration>) -> Kind {
    map_error(&ApiError {
        status,
        code: code.into(),
        description: "x".into(),
        retry_after,
        oauth: false,
    })
    .kind()
}

#[test]
fn a_rate_limit_code_keeps_the_portals_hint_or_waits_its_own() {
    let hint = Some(Duration::from_secs(7));
    assert_eq!(
        kind(Some(503), "QUERY_LIMIT_EXCEEDED", hint),
        Kind::Transient { retry_after: hint }
    );
    assert_eq!(
        kind(Some(503), "OPERATION_TIME_LIMIT", None),
        Kind::Transient {
            retry_after: Some(OPERATION_LIMIT_RETRY)
        }
    );
}

#[test]
fn an_overloaded_portal_waits_ten_minutes_whatever_it_says() {
    assert_eq!(
        kind(Some(503), "OVERLOAD_LIMIT", Some(Duration::from_secs(7))),
        Kind::Transient {
            retry_after: Some(OVERLOAD_RETRY)
        }
    );
}

#[test]
fn a_refused_token_code_is_auth_whatever_the_status() {
    assert_eq!(kind(Some(400), "invalid_grant", None), Kind::Auth);
    assert_eq!(kind(Some(500), "invalid_client", None), Kind::Auth);
}

#[test]
fn payment_required_is_the_code_not_only_the_status() {
    assert_eq!(
        kind(Some(200), "PAYMENT_REQUIRED", None),
        Kind::PaymentRequired
    );
    assert_eq!(kind(None, "PAYMENT_REQUIRED", None), Kind::PaymentRequired);
}

#[test]
fn a_missing_right_or_a_closed_portal_is_permanent_not_auth() {
    assert_eq!(kind(Some(401), "ACCESS_DENIED", None), Kind::Permanent);
    assert_eq!(kind(Some(403), "", None), Kind::Permanent);
    assert_eq!(kind(Some(403), "SOMETHING_ELSE", None), Kind::Permanent);
    assert_eq!(kind(Some(410), "PORTAL_DELETED", None), Kind::Permanent);
}

#[test]
fn a_server_error_code_passes_even_on_a_4xx() {
    assert!(matches!(
        kind(Some(400), "INTERNAL_SERVER_ERROR", None),
        Kind::Transient { .. }
    ));
}

#[test]
fn every_5xx_and_a_statusless_unknown_pass_and_a_425_is_refused() {
    for status in [501, 505] {
        assert!(
            matches!(kind(Some(status), "", None), Kind::Transient { .. }),
            "{status}"
        );
    }
    assert!(matches!(
        kind(None, "SOMETHING", None),
        Kind::Transient { .. }
    ));
    assert_eq!(kind(Some(425), "", None), Kind::Permanent);
}

#[test]
fn a_batch_with_an_unpaid_command_reads_http_402() {
    let chunk = vec![Command {
        name: "0".into(),
        method: "crm.deal.add",
        params: json!({}),
    }];
    let failed = ErrorIn {
        error: "PAYMENT_REQUIRED".into(),
        error_description: "unpaid".into(),
    };
    let e = batch_error(&[(&chunk[0], failed)], &chunk, &BTreeMap::new(), false);
    assert!(e.is_payment_required() && e.status() == Some(402), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("CRM account is not paid (HTTP 402): Bitrix24 batch command failed"),
        "{e}"
    );
}

#[test]
fn batch_result_error_as_a_list_is_keyed_by_command() {
    let v = value("batch-result-error-list.fragment.json");
    let chunk: Vec<Command> = ["0", "1"]
        .iter()
        .map(|n| Command {
            name: n.to_string(),
            method: "crm.deal.get",
            params: json!({}),
        })
        .collect();
    let keyed = keyed(v["result_error"].clone(), &chunk);
    assert_eq!(keyed["1"]["error_description"], "Not found");
    assert_eq!(keyed["0"]["error"], "");
    // Each failed command is its own error: a legacy refusal (empty code) is permanent
    // and names the method; a limit inside a batch passes.
    let e: ErrorIn = serde_json::from_value(keyed["1"].clone()).unwrap();
    let refused = command_error(&chunk[1], &e, false);
    assert!(refused.is_permanent(), "{refused}");
    assert!(
        refused.to_string().contains("crm.deal.get: Not found"),
        "{refused}"
    );
    let limit = ErrorIn {
        error: "QUERY_LIMIT_EXCEEDED".into(),
        error_description: "Too many requests".into(),
    };
    assert!(command_error(&chunk[0], &limit, false).is_transient());
    // `[]` is PHP's empty map.
    assert!(super::keyed(json!([]), &chunk).is_empty());
}

#[test]
fn oauth_token_response_parses() {
    let t: TokenIn = serde_json::from_value(value("oauth-token.response.json")).unwrap();
    assert_eq!(t.expires_in, 3600);
    assert_eq!(t.refresh_token, "4f9k4jpmg13usmybzuqknt2v9fh0q6rl");
}

#[test]
fn event_contract_parses_and_needs_its_token() {
    let token = SecretString::from("jvh9y1ulvt2m6k5or90v9mg8nn32ozas".to_string());
    let e = parse_event(&contract("event-oncrmdealadd.webhook.json"), &token).unwrap();
    assert_eq!(e.kind, EventKind::DealAdd);
    assert_eq!(e.id.as_deref(), Some("7405"));
    assert_eq!(
        e.member_id.as_deref(),
        Some("d897063e1ce7c5eb9f04b9751eef5915")
    );
    let other = SecretString::from("x".to_string());
    assert_eq!(
        parse_event(&contract("event-oncrmdealadd.webhook.json"), &other),
        Err(EventError::WrongToken)
    );
    assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
}

#[test]
fn an_imported_contact_reads_back_with_the_run_tag() {
    // Shaped as `crm.contact.get`'s documented answer (api-reference/crm/contacts/
    // crm-contact-get.md): string ids, `null` for empty scalars, multifield items.
    let ours = json!({
        "ID": "43", "NAME": "Иванова Анна", "LAST_NAME": null,
        "PHONE": [{"ID": "156", "VALUE_TYPE": "MOBILE", "VALUE": "+79123456789", "TYPE_ID": "PHONE"}],
        "EMAIL": [{"ID": "158", "VALUE_TYPE": "WORK", "VALUE": "anna@mail.ru", "TYPE_ID": "EMAIL"}],
        "ORIGINATOR_ID": "zapis",
        "ORIGIN_ID": import_origin("zapis-import-3f2a9c1b7d4e", "phone:+79123456789"),
    });
    let r = import_record(ours).unwrap();
    assert_eq!(r.id, "43");
    assert_eq!(r.name, "Иванова Анна");
    assert_eq!(r.phones, ["+79123456789"]);
    assert_eq!(r.emails, ["anna@mail.ru"]);
    assert_eq!(r.tags, ["zapis-import-3f2a9c1b7d4e"]);
    // A manager's contact: no email selected back as `null`, no origin, a name in parts.
    let theirs = json!({
        "ID": 44, "NAME": "Анна", "LAST_NAME": "Иванова",
        "PHONE": [{"ID": "160", "VALUE_TYPE": "WORK", "VALUE": "8 (912) 345-67-89", "TYPE_ID": "PHONE"}],
        "EMAIL": null, "ORIGINATOR_ID": null, "ORIGIN_ID": null,
    });
    let r = import_record(theirs).unwrap();
    assert_eq!((r.id.as_str(), r.name.as_str()), ("44", "Анна Иванова"));
    assert!(r.emails.is_empty() && r.tags.is_empty());
    // Someone else's system using the same fields is not us.
    let other = json!({"ID": "45", "ORIGINATOR_ID": "1c", "ORIGIN_ID": "zapis-import-x/phone:+7"});
    assert!(import_record(other).unwrap().tags.is_empty());
}

#[test]
fn money_is_a_decimal_string_and_phones_have_their_typed_forms() {
    assert_eq!(money(150_000), "1500.00");
    assert_eq!(money(99_050), "990.50");
    assert_eq!(money(-5), "-0.05");
    let v = phone_variants(&Phone::parse("8 912 345 67 89").unwrap());
    for want in [
        "+79123456789",
        "79123456789",
        "89123456789",
        "9123456789",
        "8 (912) 345-67-89",
    ] {
        assert!(v.contains(&want.to_string()), "{want} in {v:?}");
    }
}
