use super::*;

fn contract(name: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/contracts/yclients/");
    let text = std::fs::read_to_string(format!("{path}{name}"))
        .unwrap_or_else(|e| panic!("contract {name} is missing at {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn data(name: &str) -> Value {
    let v = contract(name);
    map_answer(Endpoint::Company, StatusCode::OK, v)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .data
}

const MSK: Tz = chrono_tz::Europe::Moscow;

#[test]
fn instants_in_every_documented_encoding() {
    let want = Utc.with_ymd_and_hms(2020, 11, 21, 13, 0, 0).unwrap();
    for v in [
        json!("2020-11-21T16:00:00+03:00"),
        json!("2020-11-21T16:00:00+0300"),
        json!("2020-11-21T16:00:00.000+03:00"),
        json!("2020-11-21 16:00:00"),
        json!(want.timestamp()),
        json!(want.timestamp().to_string()),
    ] {
        assert_eq!(parse_instant(&v, MSK), Some(want), "{v}");
    }
    assert_eq!(parse_instant(&json!("завтра"), MSK), None);
    assert_eq!(parse_instant(&Value::Null, MSK), None);
}

#[test]
fn company_contract_gives_zone_and_address() {
    let c: WireCompany = serde_json::from_value(data("company-get.response.json")).unwrap();
    assert_eq!(c.timezone_name.as_deref(), Some("Europe/Moscow"));
    assert_eq!(str_of(&c.address), "Большой Саввинский пер., д. 3");
    assert!(bool_of(&c.phone_confirmation));
}

#[test]
fn book_services_contract_reads_category_key_and_lengths() {
    let s: WireBookServices = serde_json::from_value(data("book-services.response.json")).unwrap();
    assert_eq!(s.services.len(), 2);
    assert_eq!(s.category.len(), 2);
    assert_eq!(i64_of(&s.services[0].seance_length), Some(3600));
    assert_eq!(money_of(&json!("1000.00")), Money(100_000));
    assert_eq!(money_of(&json!(1500)), Money(150_000));
    // The documented payloads carry an empty `comment`: no description.
    assert!(
        s.services
            .iter()
            .all(|x| description_of(&x.comment).is_none())
    );
}

#[test]
fn a_service_comment_becomes_plain_text() {
    let mut payload = data("book-services.response.json");
    payload["services"][0]["comment"] = json!(
        "<p>Мытьё &amp; уход &#8212; &laquo;люкс&raquo;<br/>для&nbsp;всех   типов волос</p>\n\n<div>Цена < 1000?</div>"
    );
    payload["services"][1]["comment"] = json!("  <p> </p>&nbsp;");
    let s: WireBookServices = serde_json::from_value(payload).unwrap();
    assert_eq!(
        description_of(&s.services[0].comment).as_deref(),
        Some("Мытьё & уход — «люкс»\nдля всех типов волос\nЦена < 1000?")
    );
    assert_eq!(description_of(&s.services[1].comment), None);
    assert_eq!(description_of(&Value::Null), None);
    assert_eq!(description_of(&json!(0)), None);
}

#[test]
fn book_staff_contract_string_ids_and_empty_position() {
    let staff: Vec<WireStaff> = serde_json::from_value(data("book-staff.response.json")).unwrap();
    let bookable: Vec<_> = staff.iter().filter(|s| bool_of(&s.bookable)).collect();
    assert_eq!(bookable.len(), 1);
    assert_eq!(id_of(&bookable[0].id).as_deref(), Some("16"));
}

#[test]
fn book_dates_contract_unix_days() {
    let d: WireDates = serde_json::from_value(data("book-dates.response.json")).unwrap();
    let first = parse_day(&d.booking_dates[0], MSK).unwrap();
    assert_eq!(first, NaiveDate::from_ymd_opt(2015, 9, 4).unwrap());
    assert_eq!(
        parse_day(&json!("2026-09-17"), MSK),
        NaiveDate::from_ymd_opt(2026, 9, 17)
    );
}

#[test]
fn book_times_contracts_unix_and_iso() {
    for name in ["book-times.response.json", "book-times-iso.response.json"] {
        let t: Vec<WireTime> = serde_json::from_value(data(name)).unwrap();
        assert_eq!(t.len(), 5, "{name}");
        let start = parse_instant(&t[0].datetime, MSK).unwrap();
        assert_eq!(start.timestamp(), 1443513600, "{name}");
        assert_eq!(i64_of(&t[0].seance_length), Some(3600));
    }
}

#[test]
fn staff_seances_contract_parses() {
    let v = data("book-staff-seances.response.json");
    let seances: Vec<WireTime> = serde_json::from_value(v["seances"].clone()).unwrap();
    assert_eq!(seances.len(), 5);
}

#[test]
fn book_check_and_record_contracts() {
    assert!(
        map_answer(
            Endpoint::BookCheck,
            StatusCode::CREATED,
            contract("book-check.response.json")
        )
        .is_ok()
    );
    let created: Vec<WireCreated> =
        serde_json::from_value(data("book-record.response.json")).unwrap();
    let id = ExternalId {
        record_id: u64::try_from(i64_of(&created[0].record_id).unwrap()).unwrap(),
        hash: id_of(&created[0].record_hash),
    };
    assert_eq!(id.to_string(), "2820023:567df655304da9b98487769426d4e76e");
    assert_eq!(ExternalId::parse(&id.to_string()).unwrap(), id);
    assert_eq!(ExternalId::parse("42").unwrap().hash, None);
    assert!(ExternalId::parse("abc:def").is_err());
    assert!(
        map_answer(
            Endpoint::BookCheck,
            StatusCode::CREATED,
            contract("book-code.response.json")
        )
        .is_ok()
    );
}

#[test]
fn record_contracts_map_status_and_offsets() {
    // Bare object, `+0000` offsets, `deleted: true`.
    let r: WireRecord = serde_json::from_value(data("book-record-get.response.json")).unwrap();
    let rec = r.to_record("13132699:h".into(), MSK).unwrap();
    assert_eq!(rec.status, RecordStatus::Cancelled);
    assert_eq!(rec.master_id, "55436");
    assert_eq!(rec.service_id, "389043");
    assert_eq!(rec.duration_min, 30);
    assert_eq!(
        rec.start,
        Utc.with_ymd_and_hms(2017, 10, 24, 17, 30, 0).unwrap()
    );
    // Full admin record: `+09:00` datetime, number phone, `[]` custom fields.
    let r: WireRecord = serde_json::from_value(data("record-get.response.json")).unwrap();
    let rec = r.to_record("2".into(), MSK).unwrap();
    assert_eq!(rec.status, RecordStatus::Active);
    assert_eq!(
        rec.start,
        Utc.with_ymd_and_hms(2019, 1, 1, 3, 0, 0).unwrap()
    );
    assert_eq!(rec.master_id, "9");
    // Move answer: no meta, unix dates.
    let r: WireRecord = serde_json::from_value(data("book-record-move.response.json")).unwrap();
    assert_eq!(r.start(MSK).unwrap().timestamp(), 1463754600);
    assert_eq!(r.staff_id().as_deref(), Some("924"));
    assert_eq!(record_status(false, Some(-1)), RecordStatus::NoShow);
    assert_eq!(record_status(false, Some(1)), RecordStatus::Visited);
    assert_eq!(record_status(false, Some(2)), RecordStatus::Active);
}

#[test]
fn the_minute_quota_keeps_any_minute_under_the_ceiling() {
    use governor::clock::FakeRelativeClock;
    for ceiling in [200, 60, 1000] {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(minute_quota(ceiling).unwrap(), clock.clone());
        // A caller that asks every 10 ms for three minutes.
        let mut admitted: Vec<u64> = Vec::new();
        for tick in 0..18_000u64 {
            if limiter.check().is_ok() {
                admitted.push(tick * 10);
            }
            clock.advance(StdDuration::from_millis(10));
        }
        let worst = admitted
            .iter()
            .enumerate()
            .map(|(i, start)| {
                admitted[i..]
                    .iter()
                    .take_while(|t| **t < start + 60_000)
                    .count()
            })
            .max()
            .unwrap();
        assert!(worst <= ceiling as usize, "{ceiling}: {worst} in a minute");
        // And not needlessly slow: within 10 % of the ceiling.
        assert!(
            worst * 10 >= ceiling as usize * 9,
            "{ceiling}: only {worst}"
        );
    }
}

#[test]
fn client_card_contracts_parse() {
    // `POST /clients` answers the card with the phone as a JSON number.
    let card: WireClient = serde_json::from_value(data("clients-create.response.json")).unwrap();
    let card = card.into_salon_client().unwrap();
    assert_eq!(card.id, "1121412");
    assert_eq!(card.name, "Василий");
    assert_eq!(card.phone.as_deref(), Some("79211234567"));
    assert_eq!(card.email.as_deref(), Some("123456789@gmail.com"));
    // `clients/search` gives only the requested fields, and the total in `meta`.
    let answer = map_answer(
        Endpoint::ClientsSearch,
        StatusCode::OK,
        contract("clients-search.response.json"),
    )
    .unwrap();
    assert_eq!(answer.meta["total_count"], 908);
    let items: Vec<WireClient> = decode(Endpoint::ClientsSearch, answer.data).unwrap();
    let found: Vec<SalonClient> = items
        .into_iter()
        .filter_map(WireClient::into_salon_client)
        .collect();
    assert_eq!(found.len(), 3);
    assert_eq!(
        (found[0].id.as_str(), found[0].name.as_str()),
        ("2", "Петров")
    );
    assert_eq!(found[0].phone, None);
}

#[test]
fn admin_list_contracts_parse() {
    for name in [
        "company-services.response.json",
        "company-staff.response.json",
        "clients-search.response.json",
        "clients-create.response.json",
        "clients-visits-search.response.json",
        "validate-phone.response.json",
    ] {
        let v = contract(name);
        assert!(
            map_answer(Endpoint::Records, StatusCode::OK, v).is_ok(),
            "{name}"
        );
    }
    let meta = contract("records-list-meta.fragment.json");
    assert_eq!(meta["meta"]["total_count"], 10);
    let auth = contract("auth.response.json");
    assert!(map_answer(Endpoint::Company, StatusCode::CREATED, auth).is_ok());
    for name in [
        "timetable-dates.fragment.json",
        "timetable-seances.fragment.json",
    ] {
        assert!(contract(name).get("data").is_some(), "{name}");
    }
}

#[test]
fn error_contracts_map_to_booking_errors() {
    let taken = contract("error-433-time-taken.response.json");
    assert!(matches!(
        map_answer(Endpoint::BookCheck, StatusCode::UNPROCESSABLE_ENTITY, taken),
        Err(BookingError::SlotTaken)
    ));
    let coded = json!({"success": false, "data": null, "meta": {"message": "x", "code": 433}});
    assert!(matches!(
        map_answer(
            Endpoint::BookRecord,
            StatusCode::UNPROCESSABLE_ENTITY,
            coded
        ),
        Err(BookingError::SlotTaken)
    ));
    let e = map_answer(
        Endpoint::Company,
        StatusCode::UNAUTHORIZED,
        contract("error-401-unauthorized.response.json"),
    );
    assert!(
        matches!(&e, Err(err) if err.is_auth() && err.to_string().contains("Необходима авторизация"))
    );
    let e = map_answer(
        Endpoint::Company,
        StatusCode::UNAUTHORIZED,
        contract("error-401-partner-id-not-specified.response.json"),
    );
    assert!(matches!(&e, Err(err) if err.is_auth() && err.to_string().contains("Partner ID")));
    let e = map_answer(
        Endpoint::Company,
        StatusCode::BAD_REQUEST,
        contract("error-400-aggregator-not-found.response.json"),
    );
    assert!(
        matches!(&e, Err(err) if err.is_refusal() && err.to_string().contains("Агрегатор не найден"))
    );
    let e = map_answer(
        Endpoint::Company,
        StatusCode::SERVICE_UNAVAILABLE,
        Value::Null,
    );
    assert!(matches!(&e, Err(err) if err.is_transient()));
    let e = map_answer(
        Endpoint::Company,
        StatusCode::OK,
        json!({"success": false, "data": null, "meta": {"message": "логическая ошибка"}}),
    );
    assert!(matches!(&e, Err(err) if err.is_refusal() && err.to_string().contains("логическая")));
    let e = map_answer(
        Endpoint::Company,
        StatusCode::NOT_FOUND,
        json!({"errors": {"code": 404, "message": "Not found"}, "meta": {}}),
    );
    assert!(matches!(e, Err(BookingError::NotFound(m)) if m.contains("Not found")));
}

#[test]
fn record_webhook_contract_becomes_an_event() {
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/contracts/yclients/webhook-record-update.webhook.json"
    ))
    .expect("webhook-record-update.webhook.json");
    let events = parse_webhook(&body, MSK).unwrap();
    let WebhookEvent::Record(e) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(e.record_id, 234961815);
    assert_eq!(e.company_id, 358944);
    assert_eq!(e.change, ChangeKind::Update);
    assert_eq!(e.staff_id.as_deref(), Some("1072559"));
    assert_eq!(e.service_ids, ["6137968"]);
    assert_eq!(
        e.start,
        Some(Utc.with_ymd_and_hms(2020, 11, 21, 13, 0, 0).unwrap())
    );
    assert_eq!(e.duration_min, Some(135));
    assert_eq!(e.attendance, Some(0));
    assert_eq!(e.status(), RecordStatus::Active);
    assert_eq!(
        e.last_change,
        Some(Utc.with_ymd_and_hms(2020, 11, 17, 10, 58, 19).unwrap())
    );
}

#[test]
fn other_webhook_contracts_parse() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/contracts/yclients/");
    let fin = std::fs::read(format!(
        "{dir}webhook-finances-operation-create.webhook.json"
    ))
    .expect("webhook-finances-operation-create.webhook.json");
    let events = parse_webhook(&fin, MSK).unwrap();
    assert!(matches!(
        &events[0],
        WebhookEvent::Other { resource, resource_id: Some(199254095), status }
            if resource == "finances_operation" && status == "create"
    ));
    let uninstall = std::fs::read(format!("{dir}webhook-marketplace-uninstall.webhook.json"))
        .expect("webhook-marketplace-uninstall.webhook.json");
    assert_eq!(
        parse_webhook(&uninstall, MSK).unwrap(),
        vec![WebhookEvent::Marketplace {
            salon_id: 123,
            event: "uninstall".into()
        }]
    );
    let delete = br#"[{"company_id": 1, "resource": "record", "resource_id": 7, "status": "delete", "data": []}]"#;
    let events = parse_webhook(delete, MSK).unwrap();
    let WebhookEvent::Record(e) = &events[0] else {
        panic!()
    };
    assert_eq!((e.record_id, e.status()), (7, RecordStatus::Cancelled));
    assert!(parse_webhook(b"{\"resource\": \"record\", \"status\": \"boom\"}", MSK).is_err());
    assert!(parse_webhook(b"not json", MSK).is_err());
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let mut c = YclientsConfig::new(default_base_url(), 1, "PARTNER-SECRET");
    c.user_token = Some(SecretString::from("USER-SECRET".to_owned()));
    let text = format!("{c:?}");
    assert!(
        !text.contains("PARTNER-SECRET") && !text.contains("USER-SECRET"),
        "{text}"
    );
}

/// A request keeps its place in a window of five until its answer is in, so one held up on its
/// way cannot reach YClients in the same second as the five after it (what a window absorbs is
/// shown in `connectors::pacing`'s tests); they leave 210 ms apart, as before.
#[test]
fn yclients_requests_keep_a_place_in_a_window_of_five_until_answered() {
    let config = YclientsConfig::new(
        Url::parse("http://127.0.0.1:9/window-pace").unwrap(),
        1,
        "partner",
    );
    let client = Yclients::new(&config, Arc::new(crate::clock::SystemClock));
    assert_eq!(
        client.limiter.pace(),
        crate::connectors::pacing::Pace::Window {
            limit: 5,
            period: StdDuration::from_millis(210),
        }
    );
}
