use super::*;
use crate::connectors::{Failure, Kind};

fn contract(name: &str) -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/contracts/amocrm");
    let path = std::path::Path::new(dir).join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("contract file {} is missing ({e}); the contracts directory must sit beside the repository", path.display())
    })
}

#[test]
fn parses_contacts_list_response() {
    let page: ContactsPage =
        serde_json::from_slice(&contract("contacts-list.response.json")).unwrap();
    assert_eq!(page.embedded.contacts.len(), 1);
    assert_eq!(page.embedded.contacts[0].id, 7143599);
    assert_eq!(page.embedded.contacts[0].phones().count(), 0);
}

#[test]
fn parses_contact_custom_fields_values_fragment() {
    let contact: ContactIn = serde_json::from_slice(
        &[
            b"{\"id\": 1, ".as_slice(),
            &contract("contact-custom-fields-values.fragment.json")[1..],
        ]
        .concat(),
    )
    .unwrap();
    let values: Vec<&str> = contact.values_of("PHONE").collect();
    assert_eq!(values, vec!["+79123"]);
    // "+79123" is no valid phone: it must not match anything.
    assert_eq!(contact.phones().count(), 0);
}

#[test]
fn parses_contacts_add_response() {
    let page: AddedPage<ContactsAddedEmbedded> =
        serde_json::from_slice(&contract("contacts-add.response.json")).unwrap();
    let ids: Vec<i64> = page.embedded.contacts.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![40401635, 40401636]);
}

#[test]
fn parses_contacts_update_response() {
    let page: AddedPage<ContactsAddedEmbedded> =
        serde_json::from_slice(&contract("contacts-update.response.json")).unwrap();
    assert_eq!(page.embedded.contacts[0].id, 3);
}

#[test]
fn parses_leads_complex_response() {
    let added: Vec<ComplexIn> =
        serde_json::from_slice(&contract("leads-complex.response.json")).unwrap();
    assert_eq!(added[0].id, 9774766);
    assert_eq!(added[0].contact_id, Some(12117258));
    assert_eq!(added[0].merged, Some(false));
}

#[test]
fn parses_notes_add_response() {
    let page: AddedPage<NotesEmbedded> =
        serde_json::from_slice(&contract("notes-add.response.json")).unwrap();
    assert_eq!(page.embedded.notes[0].id, 76787983);
}

#[test]
fn parses_note_params_fragments() {
    for name in [
        "note-params-common.fragment.json",
        "note-params-service-message.fragment.json",
    ] {
        let note: NoteIn = serde_json::from_slice(&contract(name)).unwrap();
        assert!(note.params.and_then(|p| p.text).is_some(), "{name}");
    }
}

#[test]
fn parses_validation_error_response_into_a_permanent_error_with_paths() {
    let err = map_status(
        StatusCode::BAD_REQUEST,
        None,
        &contract("validation-error.response.json"),
        false,
    )
    .unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(err.status(), Some(400));
    let d = &err.details()[0];
    assert_eq!(d.code, "NotSupportedChoice");
    assert_eq!(d.path, "custom_fields_values.0.field_id");
    assert_eq!(d.request_id.as_deref(), Some("0"));
    assert!(err.to_string().contains("Request validation failed"));
}

#[test]
fn parses_webhook_status_lead_form_byte_exact() {
    let body = contract("webhook-status-lead.form.txt");
    assert!(
        !body.ends_with(b"\n"),
        "the contract body has no trailing newline"
    );
    let d = parse_webhook(&body).unwrap();
    assert_eq!(d.account_subdomain.as_deref(), Some("test000002"));
    assert_eq!(d.account_id, None);
    assert_eq!(
        d.events,
        vec![WebhookEvent::LeadStatusChanged {
            lead_id: 31926520,
            status_id: 10216994,
            pipeline_id: 2116,
            old_status_id: Some(10216995),
            old_pipeline_id: None,
        }]
    );
}

#[test]
fn parses_webhook_status_lead_modern_decoded() {
    // The file is decoded `key=value` lines, not a wire body: encode it as amoCRM would.
    let text = String::from_utf8(contract("webhook-status-lead-modern.decoded.txt")).unwrap();
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(text.lines().filter_map(|l| l.split_once('=')))
        .finish();
    let d = parse_webhook(body.as_bytes()).unwrap();
    assert_eq!(d.account_id, Some(29013640));
    assert_eq!(d.account_subdomain.as_deref(), Some("drvorobjev"));
    assert_eq!(
        d.events,
        vec![WebhookEvent::LeadStatusChanged {
            lead_id: 23802129,
            status_id: 47873533,
            pipeline_id: 5389528,
            old_status_id: Some(47888833),
            old_pipeline_id: Some(5389528),
        }]
    );
}

#[test]
fn webhook_with_a_bad_number_names_the_key() {
    let err = parse_webhook(
        b"leads[status][0][id]=x&leads[status][0][status_id]=1&leads[status][0][pipeline_id]=2",
    )
    .unwrap_err();
    assert_eq!(
        err,
        WebhookError::NotANumber {
            key: "leads[status][0][id]".into()
        }
    );
    let d = parse_webhook(b"leads[add][0][id]=5&contacts[delete][0][id]=6").unwrap();
    assert_eq!(d.events.len(), 2);
}

#[test]
fn statuses_map_to_retry_decisions() {
    let t = map_status(
        StatusCode::TOO_MANY_REQUESTS,
        Some(Duration::from_secs(3)),
        b"Too many",
        false,
    )
    .unwrap_err();
    assert!(t.is_transient());
    assert_eq!(t.retry_after(), Some(Duration::from_secs(3)));
    assert!(
        map_status(StatusCode::BAD_GATEWAY, None, b"", false)
            .unwrap_err()
            .is_transient()
    );
    let p = map_status(StatusCode::PAYMENT_REQUIRED, None, b"", false).unwrap_err();
    assert!(p.is_payment_required() && p.status() == Some(402), "{p:?}");
    let a = map_status(StatusCode::UNAUTHORIZED, None, b"{}", false).unwrap_err();
    assert!(a.is_auth() && a.to_string().contains("crm.amocrm.token"));
    assert_eq!(
        map_status(StatusCode::NO_CONTENT, None, b"", false).unwrap(),
        None
    );
}

fn amo_status(status: StatusCode, retry_after: Option<Duration>) -> CrmError {
    map_status(status, retry_after, b"", true).unwrap_err()
}

#[test]
fn a_403_is_a_rate_limit_block_waited_out() {
    let e = amo_status(StatusCode::FORBIDDEN, Some(Duration::from_secs(5)));
    assert_eq!(
        e.kind(),
        Kind::Transient {
            retry_after: Some(BLOCKED_RETRY)
        }
    );
    assert_eq!(e.status(), Some(403));
}

#[test]
fn a_429_without_retry_after_waits_a_second() {
    let e = amo_status(StatusCode::TOO_MANY_REQUESTS, None);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    assert!(e.to_string().contains("amoCRM rate limit exceeded"), "{e}");
}

#[test]
fn every_5xx_passes_and_a_425_is_refused() {
    for status in [
        StatusCode::NOT_IMPLEMENTED,
        StatusCode::HTTP_VERSION_NOT_SUPPORTED,
    ] {
        assert!(amo_status(status, None).is_transient(), "{status}");
    }
    let e = amo_status(StatusCode::TOO_EARLY, None);
    assert_eq!(e.kind(), Kind::Permanent);
}

#[test]
fn the_token_endpoint_refusing_anything_is_auth_and_an_outage_passes() {
    let kind = |s| Failure::from_status(&TokenEndpointQuirks, s, None, None, "").kind;
    for s in [400, 403, 404] {
        assert_eq!(kind(s), Kind::Auth, "{s}");
    }
    for s in [429, 500, 501, 503] {
        assert!(matches!(kind(s), Kind::Transient { .. }), "{s}");
    }
}

#[test]
fn bracket_keys_split() {
    assert_eq!(
        crate::crm::bracket_parts("leads[status][0][custom_fields][0][id]"),
        vec!["leads", "status", "0", "custom_fields", "0", "id"]
    );
    assert_eq!(crate::crm::bracket_parts("plain"), vec!["plain"]);
}
