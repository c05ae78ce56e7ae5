use super::*;

const CONTRACTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/contracts/dikidi");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dikidi");

fn load(dir: &str, name: &str) -> Value {
    let path = std::path::Path::new(dir).join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} unreadable: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn payload(v: &Value) -> Value {
    open_envelope(v)
        .expect("known envelope")
        .expect("a success")
}

const TZ: Tz = chrono_tz::Europe::Moscow;

#[test]
fn get_datetimes_contract_parses_in_the_company_zone() {
    let (times, masters) = parse_datetimes(
        payload(&load(CONTRACTS, "dikidi-get-datetimes.response.json")),
        TZ,
    )
    .unwrap();
    let anna = &times["1357205"];
    assert_eq!(anna.len(), 2);
    assert_eq!(anna[0].to_rfc3339(), "2025-02-17T11:15:00+00:00");
    assert_eq!(masters[0].name, "Анна");
    assert_eq!(masters[0].id, "1357205");
}

#[test]
fn get_dates_true_contract_parses_without_envelope() {
    let days = parse_days(payload(&load(
        CONTRACTS,
        "dikidi-get-dates-true.response.json",
    )))
    .unwrap();
    assert_eq!(days, vec![NaiveDate::from_ymd_opt(2024, 1, 15).unwrap()]);
}

#[test]
fn every_error_contract_is_a_known_error() {
    let cases = [
        ("dikidi-error-boolean-true.response.json", "refused"),
        ("dikidi-error-not-ajax.response.json", "refused"),
        ("dikidi-error-object-numeric-code.response.json", "auth"),
        ("dikidi-error-object-string-code.response.json", "auth"),
        ("dikidi-error-string-code.response.json", "not found"),
    ];
    for (file, kind) in cases {
        let e = open_envelope(&load(CONTRACTS, file))
            .unwrap_or_else(|w| panic!("{file}: {w}"))
            .expect_err(file);
        let mapped = map_vendor_error(Endpoint::GetDatetimes, &e);
        let seen = match &mapped {
            BookingError::NotFound(_) => "not found",
            e if e.is_auth() => "auth",
            e if e.is_refusal() => "refused",
            _ => "other",
        };
        assert_eq!(seen, kind, "{file}: {mapped:?}");
    }
    // The booking steps read an authorisation demand as "online booking impossible".
    let e = open_envelope(&load(
        CONTRACTS,
        "dikidi-error-object-string-code.response.json",
    ))
    .unwrap()
    .unwrap_err();
    assert!(matches!(
        map_vendor_error(Endpoint::Record, &e),
        BookingError::Closed(_)
    ));
    let e = map_vendor_error(Endpoint::TimeReservation, &e);
    assert!(matches!(e, BookingError::SlotTaken) || e.is_auth(), "{e:?}");
}

#[test]
fn success_forms_of_the_envelope() {
    for body in [
        r#"{"error": {"code": 0, "message": ""}, "data": {"x": 1}}"#,
        r#"{"error": {"code": "0"}, "data": {"x": 1}}"#,
        r#"{"error": 0, "data": {"x": 1}}"#,
        r#"{"error": "0", "data": {"x": 1}}"#,
        r#"{"error": false, "data": {"x": 1}}"#,
        r#"{"data": {"x": 1}}"#,
    ] {
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(payload(&v)["x"], 1, "{body}");
    }
    let v: Value =
        serde_json::from_str(r#"{"error": 1, "message": "Specialist not found"}"#).unwrap();
    let e = open_envelope(&v).unwrap().unwrap_err();
    assert_eq!(e.message, "Specialist not found");
    assert!(matches!(
        map_vendor_error(Endpoint::GetDatetimes, &e),
        BookingError::NotFound(_)
    ));
    for weird in [
        r#"[1, 2]"#,
        r#"{"error": [1]}"#,
        r#"{"error": {"msg": "x"}}"#,
    ] {
        let v: Value = serde_json::from_str(weird).unwrap();
        assert!(open_envelope(&v).is_err(), "{weird} is drift");
    }
}

#[test]
fn our_fixtures_parse() {
    let catalog =
        parse_catalog(payload(&load(FIXTURES, "company_services.response.json"))).unwrap();
    assert!(!catalog.services.is_empty());
    let s = &catalog.services[0];
    assert!(s.duration_min > 0 && s.price_min.kopecks() > 0, "{s:?}");
    assert!(!catalog.masters[&s.id].is_empty());
    let keyed = parse_catalog(payload(&load(
        FIXTURES,
        "company_services.keyed.response.json",
    )))
    .unwrap();
    assert_eq!(keyed.services.len(), catalog.services.len());

    let r: WireReservation =
        serde_json::from_value(payload(&load(FIXTURES, "time_reservation.response.json"))).unwrap();
    assert!(id_of(&r.record_id).is_some());
    let rec: WireRecordAnswer =
        serde_json::from_value(payload(&load(FIXTURES, "record.response.json"))).unwrap();
    assert!(parse_local(&rec.bookings[0].time, TZ).is_some());
    let info =
        parse_records_info(payload(&load(FIXTURES, "records_info.response.json")), TZ).unwrap();
    assert_eq!(info.len(), 1);
    let (start, end, _) = info.values().next().unwrap();
    assert_eq!(duration_between(*start, *end), Some(60));
    payload(&load(FIXTURES, "remove_record.response.json"));
    payload(&load(FIXTURES, "check.response.json"));
}

#[test]
fn empty_php_arrays_are_empty_not_drift() {
    let v: Value = serde_json::json!({"error": {"code": 0}, "data": {"times": [], "masters": []}});
    let (times, masters) = parse_datetimes(payload(&v), TZ).unwrap();
    assert!(times.is_empty() && masters.is_empty());
    assert!(
        parse_records_info(Value::Array(vec![]), TZ)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn changed_shapes_fail_to_parse() {
    let renamed = serde_json::json!({"slots": {"1": ["2025-02-17 14:15:00"]}});
    assert!(parse_datetimes(renamed, TZ).is_err());
    let iso = serde_json::json!({"times": {"1": ["2025-02-17T14:15:00+03:00"]}});
    assert!(parse_datetimes(iso, TZ).is_err());
    assert!(parse_days(serde_json::json!({"dates": ["2025-02-17"]})).is_err());
    assert!(parse_catalog(serde_json::json!({"categories": []})).is_err());
    let flat = serde_json::json!({"77": {"id": 77, "time": "2025-02-17 14:15:00"}});
    assert!(parse_records_info(flat, TZ).is_err());
}

#[test]
fn redaction_keeps_shape_and_drops_content() {
    let v = serde_json::json!({"phone": "+79123456789", "name": "Анна", "list": [1, 2, 3, 4],
                               "1357205": {"time": "2025-02-17 14:15:00"}});
    let s = sample_of(&v);
    assert!(
        !s.contains("7912") && !s.contains("Анна") && !s.contains("1357205"),
        "{s}"
    );
    assert!(
        s.contains("9999-99-99 99:99:99") && s.contains("phone"),
        "{s}"
    );
}

#[test]
fn the_session_is_the_hash_of_cookie_name() {
    let s = WidgetSession::from_cookies(vec![
        "lang=43bb~ru".into(),
        "cookie_name=171439ab~692f4bb3%3A1756".into(),
    ])
    .expect("a session");
    assert_eq!(s.hash, "692f4bb3:1756");
    assert_eq!(s.cookies.len(), 2);
    assert!(WidgetSession::from_cookies(vec!["cookie_name=nohash".into()]).is_none());
    assert!(WidgetSession::from_cookies(vec!["cid=1~2".into()]).is_none());
}

#[test]
fn record_refusals_are_read_by_their_words() {
    let e = |code: &str, message: &str| VendorError {
        code: code.into(),
        message: message.into(),
    };
    assert_eq!(demand_of(&e("SMS_CODE_REQUIRED", "")), Some(Demand::Code));
    assert_eq!(demand_of(&e("1", "Введите код из СМС")), Some(Demand::Code));
    assert_eq!(
        demand_of(&e("CAPTCHA_ERROR", "Введите код с картинки")),
        Some(Demand::Captcha),
        "a captcha wins over the word code"
    );
    assert_eq!(demand_of(&e("1", "Пройдите капчу")), Some(Demand::Captcha));
    assert_eq!(demand_of(&e("USER_AUTHORISATION_ERROR", "bad auth")), None);
    assert_eq!(demand_of(&e("NUMBER_NOT_TRUE", "")), None);
}

#[test]
fn only_an_explicit_marker_cancels_a_listed_record() {
    let info = |extra: Value| {
        let mut record = serde_json::json!({"id": 7, "time": "2025-02-17 14:15:00"});
        if let (Value::Object(r), Value::Object(e)) = (&mut record, extra) {
            r.extend(e);
        }
        let parsed =
            parse_records_info(serde_json::json!({"7": {"record": record}}), TZ).expect("parses");
        parsed["7"].2.reported_cancelled()
    };
    assert!(!info(serde_json::json!({})));
    assert!(!info(serde_json::json!({"status": "1", "deleted": 0})));
    assert!(info(serde_json::json!({"deleted": 1})));
    assert!(info(serde_json::json!({"is_deleted": "1"})));
    assert!(info(serde_json::json!({"status": "Cancelled"})));
}

#[test]
fn config_defaults_and_user_agent() {
    let c = DikidiConfig::widget(Url::parse("http://127.0.0.1:1").unwrap(), 550001);
    assert_eq!(c.poll_interval_secs, 300);
    let ua = c.user_agent();
    assert!(ua.starts_with("zapis/") && ua.contains("550001"), "{ua}");
    assert!(!ua.contains("Mozilla"));
}
