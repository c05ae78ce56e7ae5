//! The YClients connector against the fake YClients over real HTTP.

use crate::support;

use std::sync::Arc;

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use secrecy::SecretString;
use serde_json::json;
use support::app::Settings;
use support::fake_yclients::{
    self, Down, FakeSalon, FakeYclients, PARTNER_TOKEN, USER_TOKEN, contract, contract_path,
};
use zapis::booking::yclients::{Endpoint, WebhookEvent, Yclients, YclientsConfig, parse_webhook};
use zapis::booking::{BookRequest, BookingError, BookingSystem, RecordStatus};
use zapis::clock::FakeClock;
use zapis::domain::Slot;
use zapis::normalize::Phone;

const COMPANY: u64 = 777;
const EKB: Tz = chrono_tz::Asia::Yekaterinburg;
const KGD: Tz = chrono_tz::Europe::Kaliningrad;

struct Env {
    fake: FakeYclients,
    yc: Yclients,
    clock: Arc<FakeClock>,
}

fn config(fake: &FakeYclients) -> YclientsConfig {
    YclientsConfig::new(fake.base_url.clone(), COMPANY, PARTNER_TOKEN)
}

async fn env(tz: Tz) -> Env {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, tz)).await;
    let clock = Arc::new(FakeClock::new(Utc::now()));
    let yc = Yclients::new(&config(&fake), clock.clone());
    Env { fake, yc, clock }
}

/// A Tuesday two to three weeks ahead: both bookable masters work, nothing is in the past.
fn tuesday() -> NaiveDate {
    let mut d = Utc::now().date_naive() + Duration::days(14);
    while d.weekday() != Weekday::Tue {
        d += Duration::days(1);
    }
    d
}

fn at(day: NaiveDate, h: u32, m: u32) -> NaiveDateTime {
    day.and_time(NaiveTime::from_hms_opt(h, m, 0).unwrap())
}

fn utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    tz.from_local_datetime(&local).unwrap().with_timezone(&Utc)
}

fn request(master: &str, service: &str, start: DateTime<Utc>, minutes: u32) -> BookRequest {
    BookRequest {
        booking_id: crate::support::bk(&uuid::Uuid::new_v4().to_string()),
        service_id: service.into(),
        master_id: master.into(),
        start,
        duration_min: minutes,
        client_phone: Phone::parse("+7 912 345-67-89").unwrap(),
        client_name: "Анна Иванова".into(),
        client_email: None,
        comment: "Telegram, src_landing".into(),
    }
}

#[tokio::test]
async fn catalogue_days_and_slots_in_yekaterinburg() {
    let e = env(EKB).await;
    let services = e.yc.services().await.unwrap();
    assert_eq!(services.len(), 3);
    let manicure = services.iter().find(|s| s.id == "201").unwrap();
    assert_eq!(manicure.category, "Ногти");
    assert_eq!(manicure.duration_min, 90);
    assert_eq!(manicure.price_min.kopecks(), 150_050);
    assert_eq!(manicure.price_max.kopecks(), 180_000);
    // The salon's HTML description arrives as plain text, a paragraph a line.
    assert_eq!(
        manicure.description.as_deref(),
        Some("Снятие, опил и покрытие гель-лаком.\nДизайн — по запросу.")
    );
    let men = services.iter().find(|s| s.id == "102").unwrap();
    assert_eq!((men.duration_min, men.category.as_str()), (45, "Стрижки"));
    assert_eq!(men.description, None, "an empty comment is no description");

    let masters: Vec<String> =
        e.yc.masters("101")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
    assert_eq!(masters, ["11", "12"], "the trainee is not bookable online");

    let day = tuesday();
    let days =
        e.yc.free_days("102", Some("11"), day, day + Duration::days(6))
            .await
            .unwrap();
    assert_eq!(days.len(), 6, "Olga rests on Mondays: {days:?}");
    assert!(days.iter().all(|d| d.weekday() != Weekday::Mon));
    let any =
        e.yc.free_days("201", None, day, day + Duration::days(6))
            .await
            .unwrap();
    assert!(any.iter().all(|d| d.weekday() != Weekday::Wed), "{any:?}");

    let slots = e.yc.free_slots("101", Some("11"), day).await.unwrap();
    assert_eq!(slots[0].start, utc(EKB, at(day, 10, 0)));
    assert_eq!(slots[0].start.format("%H:%M").to_string(), "05:00", "UTC+5");
    assert_eq!(slots[0].duration_min, 60);
    assert_eq!(slots.last().unwrap().start, utc(EKB, at(day, 18, 0)));
}

#[tokio::test]
async fn slots_in_kaliningrad_and_any_master_merges_one_slot_per_time() {
    let e = env(KGD).await;
    let day = tuesday();
    let olga = e.yc.free_slots("101", Some("11"), day).await.unwrap();
    assert_eq!(olga[0].start, utc(KGD, at(day, 10, 0)));
    assert_eq!(olga[0].start.format("%H:%M").to_string(), "08:00", "UTC+2");
    let any = e.yc.free_slots("101", None, day).await.unwrap();
    let noon: Vec<&Slot> = any
        .iter()
        .filter(|s| s.start == utc(KGD, at(day, 12, 0)))
        .collect();
    assert_eq!(noon.len(), 1, "one slot per time");
    assert_eq!(noon[0].master_id, "11", "the salon's first master wins");
    let last = any.last().unwrap();
    assert_eq!(
        (last.master_id.as_str(), last.start),
        ("12", utc(KGD, at(day, 19, 0)))
    );
    let mut starts: Vec<_> = any.iter().map(|s| s.start).collect();
    starts.dedup();
    assert_eq!(starts.len(), any.len());
}

#[tokio::test]
async fn booking_creates_the_record_in_the_schedule() {
    let e = env(EKB).await;
    let day = tuesday();
    let req = request("11", "101", utc(EKB, at(day, 10, 0)), 60);
    let record = e.yc.book(&req).await.unwrap();
    let records = e.fake.active_records();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.staff_id, r.service_id, r.local),
        (11, 101, at(day, 10, 0))
    );
    assert_eq!(r.phone, "79123456789", "digits only");
    assert_eq!(r.fullname, "Анна Иванова");
    assert_eq!(r.comment, "Telegram, src_landing");
    assert_eq!(r.api_id, req.booking_id);
    assert_eq!(record.external_id, format!("{}:{}", r.id, r.hash));
    assert_eq!(record.status, RecordStatus::Active);
    let again = e.yc.record(&record.external_id).await.unwrap().unwrap();
    assert_eq!(
        (again.master_id.as_str(), again.service_id.as_str()),
        ("11", "101")
    );
    assert_eq!(
        (again.start, again.duration_min, again.status),
        (req.start, 60, RecordStatus::Active)
    );
    assert_eq!(e.yc.calls().get(Endpoint::BookCheck), 1);
    assert_eq!(e.yc.calls().get(Endpoint::BookRecord), 1);
}

#[tokio::test]
async fn slot_taken_between_listing_and_booking_is_reported_without_a_double_record() {
    let e = env(EKB).await;
    let day = tuesday();
    let slots = e.yc.free_slots("101", Some("11"), day).await.unwrap();
    let first = slots[0].clone();
    e.fake.salon_book(11, 101, at(day, 10, 0));
    let err =
        e.yc.book(&request("11", "101", first.start, 60))
            .await
            .unwrap_err();
    assert!(matches!(err, BookingError::SlotTaken), "{err:?}");
    let records = e.fake.active_records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].source, "salon");
    assert_eq!(
        e.yc.calls().get(Endpoint::BookRecord),
        0,
        "book_check stopped it"
    );
    let fresh = e.yc.free_slots("101", Some("11"), day).await.unwrap();
    assert!(
        !fresh.iter().any(|s| s.start == first.start),
        "the cache forgot the day"
    );
}

#[tokio::test]
async fn cancel_deletes_and_salon_changes_are_seen() {
    let e = env(KGD).await;
    let day = tuesday();
    let r1 =
        e.yc.book(&request("12", "201", utc(KGD, at(day, 12, 0)), 90))
            .await
            .unwrap();
    e.yc.cancel(&r1.external_id).await.unwrap();
    assert!(e.fake.records()[0].deleted);
    assert_eq!(
        e.yc.record(&r1.external_id).await.unwrap().unwrap().status,
        RecordStatus::Cancelled
    );
    e.yc.cancel(&r1.external_id)
        .await
        .expect("cancelling twice is fine");

    let r2 =
        e.yc.book(&request("12", "201", utc(KGD, at(day, 15, 0)), 90))
            .await
            .unwrap();
    let id: u64 = r2.external_id.split(':').next().unwrap().parse().unwrap();
    e.fake.salon_mark_attendance(id, -1);
    assert_eq!(
        e.yc.record(&r2.external_id).await.unwrap().unwrap().status,
        RecordStatus::NoShow
    );
    e.fake.salon_delete(id);
    assert_eq!(
        e.yc.record(&r2.external_id).await.unwrap().unwrap().status,
        RecordStatus::Cancelled
    );
    assert!(
        e.yc.record(&zapis::domain::RecordId::parse(&format!("{id}:wronghash")).unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn reschedule_moves_the_record_in_time_only() {
    let e = env(EKB).await;
    let day = tuesday();
    let r =
        e.yc.book(&request("11", "101", utc(EKB, at(day, 10, 0)), 60))
            .await
            .unwrap();
    let to = Slot {
        master_id: "11".into(),
        start: utc(EKB, at(day + Duration::days(1), 14, 0)),
        duration_min: 60,
    };
    let moved = e.yc.reschedule(&r.external_id, &to).await.unwrap();
    assert_eq!(
        (moved.start, moved.external_id.as_str()),
        (to.start, r.external_id.as_str())
    );
    assert_eq!(
        e.fake.active_records()[0].local,
        at(day + Duration::days(1), 14, 0)
    );
    // The old time is free again, the new one taken, without waiting for the cache to expire.
    let slots = e.yc.free_slots("101", Some("11"), day).await.unwrap();
    assert!(slots.iter().any(|s| s.start == utc(EKB, at(day, 10, 0))));

    let other = Slot {
        master_id: "12".into(),
        ..to.clone()
    };
    assert!(matches!(
        e.yc.reschedule(&r.external_id, &other).await,
        Err(err) if err.is_refusal()
    ));
    e.fake.salon_book(11, 101, at(day, 16, 0));
    let taken = Slot {
        start: utc(EKB, at(day, 16, 0)),
        ..to
    };
    assert!(matches!(
        e.yc.reschedule(&r.external_id, &taken).await,
        Err(BookingError::SlotTaken)
    ));
}

#[tokio::test]
async fn bad_token_is_an_auth_error() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    let yc = Yclients::new(
        &YclientsConfig::new(fake.base_url.clone(), COMPANY, "wrong"),
        Arc::new(FakeClock::new(Utc::now())),
    );
    let err = yc.services().await.unwrap_err();
    assert!(
        err.is_auth() && err.to_string().contains("Необходима авторизация"),
        "{err:?}"
    );
    assert!(!err.to_string().contains(PARTNER_TOKEN));
    // A missing Accept header is refused the same way (seen by SDK users).
    let resp = reqwest::Client::new()
        .get(format!("{}api/v1/company/{COMPANY}", fake.base_url))
        .header("Authorization", format!("Bearer {PARTNER_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["meta"]["message"].as_str().unwrap().contains("Accept"));
}

#[tokio::test]
async fn down_schedule_is_unavailable_and_recovers() {
    let e = env(EKB).await;
    e.fake.set_down(Down::Unavailable);
    let err = e.yc.services().await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        err.to_string().contains("Сервис временно недоступен"),
        "{err}"
    );
    e.fake.set_down(Down::Refused);
    let fresh = Yclients::new(&config(&e.fake), e.clock.clone());
    let err = fresh.services().await.unwrap_err();
    assert!(
        err.is_transient() && err.to_string().contains("cannot connect"),
        "{err:?}"
    );
    e.fake.set_down(Down::Up);
    assert_eq!(fresh.services().await.unwrap().len(), 3);
}

#[tokio::test]
async fn rate_limited_burst_is_retried_nothing_lost_and_never_above_five_per_second() {
    let e = env(EKB).await;
    let yc = Arc::new(e.yc);
    let day = tuesday();
    yc.company().await.unwrap();
    e.fake.fail_next_with_429(4, None);
    let mut tasks = Vec::new();
    for (i, h) in [10, 11, 12, 13, 14, 15, 16, 17].into_iter().enumerate() {
        let yc = yc.clone();
        let master = if i % 2 == 0 { "11" } else { "12" };
        let start = utc(EKB, at(day, h, 0));
        let start = if master == "12" && h < 12 {
            utc(EKB, at(day, h + 8, 0))
        } else {
            start
        };
        tasks.push(tokio::spawn(async move {
            yc.book(&request(master, "101", start, 60)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("every booking got through");
    }
    assert_eq!(e.fake.active_records().len(), 8, "nothing lost");
    assert!(
        e.fake.max_requests_per_second() <= 5,
        "saw {}",
        e.fake.max_requests_per_second()
    );
    assert!(
        yc.calls().total() > 8 * 2 + 4,
        "{:?}",
        yc.calls().snapshot()
    );

    // A server that keeps refusing gets reported, not dropped.
    e.fake.fail_next_with_429(100, Some(0));
    let err = yc.masters("102").await.unwrap_err();
    assert!(
        err.is_transient() && err.to_string().contains("429"),
        "{err:?}"
    );
}

/// YClients counts requests per IP address, so two clients in one process (two businesses
/// behind one partner token, or a booking client and an import) share the five a second.
#[tokio::test]
async fn two_clients_in_one_process_share_the_five_a_second() {
    let e = env(EKB).await;
    let other = Arc::new(Yclients::new(&config(&e.fake), e.clock.clone()));
    let yc = Arc::new(e.yc);
    let mut tasks = Vec::new();
    for (i, client) in [yc.clone(), other.clone()].into_iter().enumerate() {
        for d in 0..6 {
            let client = client.clone();
            // A different day each: nothing is served from the slot cache.
            let day = tuesday() + Duration::days(i64::try_from(7 * i + d).unwrap());
            tasks.push(tokio::spawn(async move {
                client.free_slots("101", Some("11"), day).await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().expect("every read got through");
    }
    assert!(yc.calls().total() + other.calls().total() >= 12);
    assert!(
        e.fake.max_requests_per_second() <= 5,
        "saw {} in one second",
        e.fake.max_requests_per_second()
    );
    assert_eq!(e.fake.throttled(), 0, "nothing was refused");
}

/// A 429 asking for a long wait is not sat out while the client waits in the chat: the call
/// returns at once, and YClients' `Retry-After` reaches the queue's retry decision.
#[tokio::test]
async fn a_long_retry_after_goes_to_the_queue_instead_of_holding_the_chat() {
    let e = env(EKB).await;
    e.yc.company().await.unwrap();
    let start = utc(EKB, at(tuesday(), 10, 0));
    e.fake.fail_next_with_429(1, Some(120));
    let started = std::time::Instant::now();
    let err =
        e.yc.book(&request("11", "101", start, 60))
            .await
            .unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
    assert!(err.is_transient(), "{err:?}");
    let hint = Some(std::time::Duration::from_secs(120));
    assert_eq!(err.failure().and_then(|f| f.retry_after()), hint);
    match zapis::sync::DeliveryError::from(err) {
        zapis::sync::DeliveryError::Transient {
            retry_after,
            http_status,
            ..
        } => assert_eq!((retry_after, http_status), (hint, Some(429))),
        other => panic!("not transient: {other:?}"),
    }
    assert!(e.fake.active_records().is_empty(), "nothing was booked");
    // The retry the queue makes later books it once.
    e.yc.book(&request("11", "101", start, 60)).await.unwrap();
    assert_eq!(e.fake.active_records().len(), 1);
}

#[tokio::test]
async fn cache_serves_repeats_within_ttl_and_forgets_on_writes_and_webhooks() {
    let e = env(EKB).await;
    let day = tuesday();
    let times = || e.yc.calls().get(Endpoint::BookTimes);
    e.yc.free_slots("101", Some("11"), day).await.unwrap();
    e.yc.free_slots("101", Some("11"), day).await.unwrap();
    e.yc.free_days("101", Some("11"), day, day + Duration::days(7))
        .await
        .unwrap();
    e.yc.free_days("101", Some("11"), day, day + Duration::days(7))
        .await
        .unwrap();
    assert_eq!((times(), e.yc.calls().get(Endpoint::BookDates)), (1, 1));
    e.clock.advance(Duration::seconds(31));
    e.yc.free_slots("101", Some("11"), day).await.unwrap();
    assert_eq!(times(), 2, "expired after the TTL");

    e.yc.book(&request("11", "101", utc(EKB, at(day, 11, 0)), 60))
        .await
        .unwrap();
    let after = e.yc.free_slots("101", Some("11"), day).await.unwrap();
    assert_eq!(times(), 3, "our booking invalidated the day");
    assert!(!after.iter().any(|s| s.start == utc(EKB, at(day, 11, 0))));
    e.yc.free_days("101", Some("11"), day, day + Duration::days(7))
        .await
        .unwrap();
    assert_eq!(e.yc.calls().get(Endpoint::BookDates), 2);

    e.yc.invalidate_day("11", day);
    e.yc.free_slots("101", Some("11"), day).await.unwrap();
    assert_eq!(times(), 4);

    // The salon moves a record; its webhook drops that master's cache.
    let id = e.fake.salon_book(11, 101, at(day, 15, 0));
    let rec = e.fake.records().into_iter().find(|r| r.id == id).unwrap();
    let salon = FakeSalon::standard(COMPANY, EKB);
    let hook = json!({"company_id": COMPANY, "resource": "record", "resource_id": id, "status": "create",
                      "data": fake_yclients::admin_record_json_for(&salon, &rec)});
    let events = parse_webhook(hook.to_string().as_bytes(), EKB).unwrap();
    let WebhookEvent::Record(ev) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(ev.start, Some(utc(EKB, at(day, 15, 0))));
    e.yc.apply_webhook(ev);
    let slots = e.yc.free_slots("101", Some("11"), day).await.unwrap();
    assert_eq!(times(), 5);
    assert!(!slots.iter().any(|s| s.start == utc(EKB, at(day, 15, 0))));
}

#[tokio::test]
async fn cache_can_be_switched_off() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    let mut cfg = config(&fake);
    cfg.slot_cache_ttl_secs = 0;
    let yc = Yclients::new(&cfg, Arc::new(FakeClock::new(Utc::now())));
    yc.free_slots("101", Some("11"), tuesday()).await.unwrap();
    yc.free_slots("101", Some("11"), tuesday()).await.unwrap();
    assert_eq!(yc.calls().get(Endpoint::BookTimes), 2);
}

#[tokio::test]
async fn check_reports_company_services_and_masters() {
    let e = env(EKB).await;
    let report = e.yc.check().await.unwrap();
    assert_eq!(report.company.timezone, EKB);
    assert_eq!(report.company.address, "ул. Ленина, 1");
    let text = report.to_string();
    assert!(text.contains("Asia/Yekaterinburg"), "{text}");
    assert!(text.contains("Маникюр") && text.contains("Анна"), "{text}");
    assert!(!text.contains("Пётр"), "not bookable: {text}");
    assert!(!text.contains(PARTNER_TOKEN));
}

#[tokio::test]
async fn user_token_uses_admin_methods_and_pages_at_200() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    let mut cfg = config(&fake);
    cfg.user_token = Some(SecretString::from(USER_TOKEN.to_owned()));
    cfg.rate_limit_per_second = 5;
    let yc = Yclients::new(&cfg, Arc::new(FakeClock::new(Utc::now())));
    let day = tuesday();
    let r = yc
        .book(&request("11", "101", utc(EKB, at(day, 10, 0)), 60))
        .await
        .unwrap();
    yc.cancel(&r.external_id).await.unwrap();
    assert_eq!(yc.calls().get(Endpoint::RecordDelete), 1);
    assert!(fake.records()[0].deleted);
    // 250 records made by the salon over the next days: two pages of at most 200.
    for i in 0..250u32 {
        fake.salon_book(
            13,
            101,
            at(day + Duration::days(i64::from(i / 8)), 9 + i % 8, 0),
        );
    }
    let all = yc.records(day, day + Duration::days(40)).await.unwrap();
    assert_eq!(all.len(), 251, "250 live and the cancelled one");
    assert_eq!(yc.calls().get(Endpoint::Records), 2);
    assert_eq!(
        all.iter()
            .filter(|r| r.status == RecordStatus::Cancelled)
            .count(),
        1
    );
}

#[tokio::test]
async fn the_fake_accepts_every_request_example_in_the_contracts() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    let http = reqwest::Client::new();
    let examples = [
        ("auth.request.json", "POST", "/auth".to_string()),
        (
            "book-code.request.json",
            "POST",
            format!("/book_code/{COMPANY}"),
        ),
        (
            "book-check.request.json",
            "POST",
            format!("/book_check/{COMPANY}"),
        ),
        (
            "book-record.request.json",
            "POST",
            format!("/book_record/{COMPANY}"),
        ),
        (
            "book-record-move.request.json",
            "PUT",
            format!("/book_record/{COMPANY}/1"),
        ),
        (
            "clients-search.request.json",
            "POST",
            format!("/company/{COMPANY}/clients/search"),
        ),
        (
            "clients-visits-search.request.json",
            "POST",
            format!("/company/{COMPANY}/clients/visits/search"),
        ),
        (
            "hooks-settings.request.json",
            "POST",
            format!("/hooks_settings/{COMPANY}"),
        ),
        (
            "records-create.request.json",
            "POST",
            format!("/records/{COMPANY}"),
        ),
    ];
    let dir = contract_path("");
    let on_disk = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".request.json")
        })
        .count();
    assert_eq!(
        on_disk,
        examples.len(),
        "a new request example needs a line here"
    );
    for (name, method, path) in examples {
        let body = contract(name);
        let resp = http
            .request(
                method.parse().unwrap(),
                format!("{}api/v1{path}", fake.base_url),
            )
            .header("Accept", "application/vnd.api.v2+json")
            .header(
                "Authorization",
                format!("Bearer {PARTNER_TOKEN}, User {USER_TOKEN}"),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert!(
            status != 400 && status != 401 && !text.contains("Метод не найден"),
            "{name}: {status} {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(210)).await;
    }
}

#[tokio::test]
async fn app_builds_the_yclients_system_from_config() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, KGD)).await;
    let app = Settings::new("sqlite::memory:")
        .remove("business.id")
        .set("business.name", "S")
        .set("business.timezone", "Europe/Kaliningrad")
        .set("booking.system", "yclients")
        .set("booking.yclients.base_url", fake.base_url.to_string())
        .set("booking.yclients.company_id", COMPANY)
        .set("booking.yclients.partner_token", PARTNER_TOKEN)
        .app(Arc::new(FakeClock::new(Utc::now())))
        .await;
    assert_eq!(app.booking.system(), "yclients");
    let report = app.yclients.as_ref().unwrap().check().await.unwrap();
    assert_eq!(report.company.timezone, KGD);
    assert_eq!(app.booking.services().await.unwrap().len(), 3);
}

#[tokio::test]
async fn confirming_a_visit_rewrites_the_whole_record_with_attendance_2_and_needs_a_user_token() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    let mut cfg = config(&fake);
    cfg.user_token = Some(SecretString::from(USER_TOKEN.to_owned()));
    let clock = Arc::new(FakeClock::new(Utc::now()));
    let admin = Yclients::new(&cfg, clock.clone());
    let partner_only = Yclients::new(&config(&fake), clock);
    let day = tuesday();
    let req = request("11", "101", utc(EKB, at(day, 10, 0)), 60);
    let booked = admin.book(&req).await.unwrap();
    let before = fake.records()[0].clone();

    // Without the admin token the schedule keeps no confirmation, and nothing is written.
    assert!(
        !partner_only
            .confirm_visit(&booked.external_id)
            .await
            .unwrap()
    );
    assert_eq!(fake.record_updates(), 0);

    assert!(admin.confirm_visit(&booked.external_id).await.unwrap());
    let after = fake.record(before.id).unwrap();
    assert_eq!(after.attendance, 2);
    assert_eq!(
        (
            after.staff_id,
            after.service_id,
            after.local,
            after.length_sec,
            &after.phone,
            &after.fullname,
            &after.comment,
            &after.api_id,
        ),
        (
            before.staff_id,
            before.service_id,
            before.local,
            before.length_sec,
            &before.phone,
            &before.fullname,
            &before.comment,
            &before.api_id,
        ),
        "a full update that changes only the status"
    );
    assert_eq!(admin.calls().get(Endpoint::RecordUpdate), 1);

    // Pressed twice: the record already says confirmed, so no second write.
    assert!(admin.confirm_visit(&booked.external_id).await.unwrap());
    assert_eq!(fake.record_updates(), 1);

    // A record the salon deleted meanwhile is not revived by the confirmation.
    let other = admin
        .book(&request("11", "101", utc(EKB, at(day, 12, 0)), 60))
        .await
        .unwrap();
    let other_id: u64 = other
        .external_id
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    fake.salon_delete(other_id);
    assert!(admin.confirm_visit(&other.external_id).await.is_err());
    assert!(fake.record(other_id).unwrap().deleted);
    assert_eq!(fake.record_updates(), 1);
}

#[tokio::test]
async fn a_record_webhook_names_its_client_service_master_and_price() {
    // The documented record object, as a `create` webhook carries it.
    let record = contract("record-get.response.json")["data"].clone();
    let body = json!({"company_id": 4564, "resource": "record", "resource_id": 2,
                      "status": "create", "data": record});
    let events = parse_webhook(body.to_string().as_bytes(), EKB).unwrap();
    let [WebhookEvent::Record(event)] = events.as_slice() else {
        panic!("{events:?}");
    };
    let client = event.client.as_ref().expect("client");
    assert_eq!(client.phone, "70001234567");
    assert_eq!(client.name, "Иван Иванович Иванов");
    assert_eq!(event.service_title.as_deref(), Some("Наращивание волос"));
    assert_eq!(event.staff_name.as_deref(), Some("Оксана"));
    assert_eq!(event.price, zapis::domain::Money::from_rubles(100));
    assert_eq!(event.api_id, None);
}

#[tokio::test]
async fn client_cards_are_listed_200_a_page_and_completed_without_losing_what_they_hold() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    fake.set_rate_limit(1000);
    for i in 0..450u64 {
        fake.insert_client(&format!("Клиент {i}"), &format!("7916{i:07}"), "", "");
    }
    let mut cfg = config(&fake);
    cfg.user_token = Some(SecretString::from(USER_TOKEN.to_owned()));
    cfg.rate_limit_per_second = 1000;
    let yc = Yclients::new(&cfg, Arc::new(FakeClock::new(Utc::now())));
    let all = yc.all_clients().await.unwrap();
    assert_eq!(all.len(), 450);
    assert_eq!(
        all.iter()
            .map(|c| c.id.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        450
    );
    assert_eq!(yc.calls().get(Endpoint::ClientsSearch), 3, "200 + 200 + 50");
    assert_eq!(all[7].phone.as_deref(), Some("79160000007"));
    assert_eq!(all[7].email, None);

    // The salon's comment, birthday, category and balance survive adding an email.
    let id = all[7].id.clone();
    yc.complete_client(&id, None, Some("k7@mail.ru"))
        .await
        .unwrap();
    let card = fake
        .clients()
        .into_iter()
        .find(|c| c["id"].as_u64().is_some_and(|n| n.to_string() == id))
        .unwrap();
    assert_eq!(card["email"], "k7@mail.ru");
    assert_eq!(card["name"], "Клиент 7");
    assert_eq!(card["birth_date"], "1980-01-02");
    assert_eq!(card["categories"][0]["id"], 4);
    assert_eq!(card["balance"], -1200);
    let hits = yc.quick_search_clients("9160000007").await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].email.as_deref(), Some("k7@mail.ru"));
    // Without the user token the cards are out of reach.
    let partner_only = Yclients::new(&config(&fake), Arc::new(FakeClock::new(Utc::now())));
    assert!(matches!(
        partner_only.all_clients().await,
        Err(err) if err.is_auth()
    ));
}

// ---------------------------------------------------------------------------------------------
// Faults, the partner id, writes that keep the salon's data, paging
// ---------------------------------------------------------------------------------------------

fn admin_config(fake: &FakeYclients) -> YclientsConfig {
    let mut cfg = config(fake);
    cfg.user_token = Some(SecretString::from(USER_TOKEN.to_owned()));
    cfg
}

#[tokio::test]
async fn a_record_whose_answer_was_lost_is_found_by_our_booking_id() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    let mut cfg = admin_config(&fake);
    cfg.timeout_secs = 1;
    let clock = Arc::new(FakeClock::new(Utc::now()));
    let yc = Yclients::new(&cfg, clock.clone());
    let day = tuesday();
    let req = request("11", "101", utc(EKB, at(day, 10, 0)), 60);
    fake.hold_next_answer(
        reqwest::Method::POST,
        "/api/v1/book_record/",
        std::time::Duration::from_millis(2500),
    );
    assert!(matches!(
        yc.book(&req).await,
        Err(err) if err.is_transient()
    ));
    let made = fake.active_records();
    assert_eq!(made.len(), 1, "the write was done, only its answer lost");

    // The slot check alone would call our own record "taken".
    assert!(matches!(yc.book(&req).await, Err(BookingError::SlotTaken)));
    let found = yc
        .find_record_for_booking(&req)
        .await
        .unwrap()
        .expect("found");
    assert_eq!(found.external_id, made[0].id.to_string());
    assert_eq!(
        (found.start, found.status),
        (req.start, RecordStatus::Active)
    );
    assert_eq!(
        yc.calls().get(Endpoint::Records),
        1,
        "one call for the master's day"
    );
    // Someone else's booking is not ours; a deleted record is not found.
    let other = request("11", "101", req.start, 60);
    assert!(yc.find_record_for_booking(&other).await.unwrap().is_none());
    fake.salon_delete(made[0].id);
    assert!(yc.find_record_for_booking(&req).await.unwrap().is_none());
    // Without a user token there is no list to search.
    let partner_only = Yclients::new(&config(&fake), clock);
    assert!(
        partner_only
            .find_record_for_booking(&req)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(partner_only.calls().get(Endpoint::Records), 0);
}

#[tokio::test]
async fn a_5xx_at_the_record_step_writes_nothing_and_the_retry_books_once() {
    let e = env(EKB).await;
    let req = request("11", "101", utc(EKB, at(tuesday(), 10, 0)), 60);
    e.fake
        .fail_next(reqwest::Method::POST, "/api/v1/book_record/", 500);
    assert!(matches!(
        e.yc.book(&req).await,
        Err(err) if err.is_transient()
    ));
    assert!(e.fake.active_records().is_empty());
    e.yc.book(&req).await.unwrap();
    assert_eq!(e.fake.active_records().len(), 1);
}

#[tokio::test]
async fn the_partner_id_goes_on_every_call_and_admin_calls_need_it_where_demanded() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    fake.require_partner_id(4242);
    let clock = Arc::new(FakeClock::new(Utc::now()));
    let without = Yclients::new(&admin_config(&fake), clock.clone());
    let e = without.admin_read().await.unwrap_err();
    assert!(
        matches!(&e, err if err.is_auth() && err.to_string().contains("Не указан идентификатор партнера") && err.to_string().contains("booking.yclients.partner_id")),
        "{e}"
    );
    // Online booking does not need it.
    assert_eq!(without.services().await.unwrap().len(), 3);

    let mut cfg = admin_config(&fake);
    cfg.partner_id = Some(4242);
    let with = Yclients::new(&cfg, clock);
    let before = fake.partner_headers().len();
    with.admin_read().await.unwrap();
    let r = with
        .book(&request("11", "101", utc(EKB, at(tuesday(), 10, 0)), 60))
        .await
        .unwrap();
    with.cancel(&r.external_id).await.unwrap();
    let sent = &fake.partner_headers()[before..];
    assert!(sent.len() >= 5, "{sent:?}");
    assert!(
        sent.iter().all(|h| h.as_deref() == Some("4242")),
        "every call carries it: {sent:?}"
    );
}

#[tokio::test]
async fn moving_a_visit_sends_only_the_time_and_the_salons_comment_survives() {
    for user_token in [false, true] {
        let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
        let cfg = if user_token {
            admin_config(&fake)
        } else {
            config(&fake)
        };
        let yc = Yclients::new(&cfg, Arc::new(FakeClock::new(Utc::now())));
        let day = tuesday();
        let r = yc
            .book(&request("11", "101", utc(EKB, at(day, 10, 0)), 60))
            .await
            .unwrap();
        let id = fake.active_records()[0].id;
        fake.salon_decorate(id, "аллергия на краску", &[], json!([]), "");
        let to = Slot {
            master_id: "11".into(),
            start: utc(EKB, at(day, 15, 0)),
            duration_min: 60,
        };
        yc.reschedule(&r.external_id, &to).await.unwrap();
        let after = fake.record(id).unwrap();
        assert_eq!(after.local, at(day, 15, 0));
        assert_eq!(
            after.comment, "аллергия на краску",
            "user token: {user_token}"
        );
    }
}

#[tokio::test]
async fn ill_come_sends_back_labels_custom_fields_and_colour() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    let yc = Yclients::new(&admin_config(&fake), Arc::new(FakeClock::new(Utc::now())));
    let r = yc
        .book(&request("11", "101", utc(EKB, at(tuesday(), 10, 0)), 60))
        .await
        .unwrap();
    let id = fake.active_records()[0].id;
    let fields = json!({"salesap_id": 1786534, "повод": ["свадьба"]});
    fake.salon_decorate(id, "VIP", &[67345, 104474], fields.clone(), "f44336");
    assert!(yc.confirm_visit(&r.external_id).await.unwrap());
    let after = fake.record(id).unwrap();
    assert_eq!(after.attendance, 2);
    assert_eq!(
        (
            after.labels,
            after.custom_fields,
            after.custom_color,
            after.comment
        ),
        (
            vec![67345, 104474],
            fields,
            "f44336".to_string(),
            "VIP".to_string()
        )
    );
}

#[tokio::test]
async fn the_record_list_is_read_to_its_total_when_pages_come_shorter_than_asked() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    fake.set_records_page_cap(50);
    let yc = Yclients::new(&admin_config(&fake), Arc::new(FakeClock::new(Utc::now())));
    let day = tuesday();
    for i in 0..120u32 {
        fake.salon_book(
            13,
            101,
            at(day + Duration::days(i64::from(i / 8)), 9 + i % 8, 0),
        );
    }
    let all = yc.records(day, day + Duration::days(40)).await.unwrap();
    assert_eq!(all.len(), 120);
    assert_eq!(yc.calls().get(Endpoint::Records), 3);
}

// ---------------------------------------------------------------------------------------------
// The fake's refusals and its keeping of what it is not sent
// ---------------------------------------------------------------------------------------------

async fn raw(
    fake: &FakeYclients,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
    partner_id: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}api/v1{path}", fake.base_url))
        .header("accept", "application/vnd.yclients.v2+json")
        .header(
            "authorization",
            format!("Bearer {PARTNER_TOKEN}, User {USER_TOKEN}"),
        );
    if let Some(id) = partner_id {
        req = req.header("x-partner-id", id);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn the_fake_refuses_admin_calls_without_the_partner_id_when_told_to() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    let path = format!("/records/{COMPANY}");
    assert_eq!(
        raw(&fake, reqwest::Method::GET, &path, None, None).await.0,
        200
    );
    fake.require_partner_id(4242);
    let (status, body) = raw(&fake, reqwest::Method::GET, &path, None, None).await;
    assert_eq!(status, 403);
    assert_eq!(body["meta"]["message"], "Не указан идентификатор партнера");
    assert_eq!(
        raw(&fake, reqwest::Method::GET, &path, None, Some("1"))
            .await
            .0,
        403,
        "another partner's id"
    );
    assert_eq!(
        raw(&fake, reqwest::Method::GET, &path, None, Some("4242"))
            .await
            .0,
        200
    );
    // The online-booking methods are not admin calls.
    let (status, _) = raw(
        &fake,
        reqwest::Method::GET,
        &format!("/book_services/{COMPANY}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_fake_keeps_what_a_move_omits_and_an_empty_comment_wipes() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    let day = tuesday();
    let id = fake.salon_book(11, 101, at(day, 10, 0));
    fake.salon_decorate(id, "оплачено заранее", &[], json!([]), "");
    let path = format!("/book_record/{COMPANY}/{id}");
    let when = |h| json!(format!("{}T{h}:00:00+05:00", day));
    let (status, _) = raw(
        &fake,
        reqwest::Method::PUT,
        &path,
        Some(json!({"datetime": when(12)})),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let r = fake.record(id).unwrap();
    assert_eq!(
        (r.local, r.comment.as_str()),
        (at(day, 12, 0), "оплачено заранее")
    );
    let (status, _) = raw(
        &fake,
        reqwest::Method::PUT,
        &path,
        Some(json!({"datetime": when(13), "comment": ""})),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        fake.record(id).unwrap().comment,
        "",
        "an empty comment wipes"
    );
}

#[tokio::test]
async fn the_fake_resets_what_a_full_update_omits() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    let day = tuesday();
    let id = fake.salon_book(11, 101, at(day, 10, 0));
    fake.salon_decorate(id, "c", &[67345], json!({"k": 1}), "f44336");
    let (_, read) = raw(
        &fake,
        reqwest::Method::GET,
        &format!("/record/{COMPANY}/{id}"),
        None,
        None,
    )
    .await;
    assert_eq!(read["data"]["record_labels"][0]["id"], "67345");
    assert_eq!(read["data"]["custom_color"], "f44336");
    let body = json!({
        "staff_id": 11, "services": [{"id": 101}], "client": {"phone": "79990000000", "name": "x"},
        "datetime": format!("{day} 10:00:00"), "seance_length": 3600, "attendance": 2
    });
    let (status, _) = raw(
        &fake,
        reqwest::Method::PUT,
        &format!("/record/{COMPANY}/{id}"),
        Some(body),
        None,
    )
    .await;
    assert_eq!(status, 201);
    let r = fake.record(id).unwrap();
    assert_eq!(
        (r.labels.len(), r.custom_fields, r.custom_color, r.comment),
        (0, json!([]), String::new(), String::new())
    );
}

#[tokio::test]
async fn the_fake_pages_records_shorter_than_asked_with_the_true_total() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    fake.set_records_page_cap(2);
    let day = tuesday();
    for h in 10..15 {
        fake.salon_book(11, 101, at(day, h, 0));
    }
    let (status, body) = raw(
        &fake,
        reqwest::Method::GET,
        &format!("/records/{COMPANY}?page=1&count=200"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["meta"]["total_count"], 5);
}

#[tokio::test]
async fn the_fake_fails_once_or_holds_an_answer_after_writing() {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, EKB)).await;
    let day = tuesday();
    let body = json!({
        "phone": "79123456789", "fullname": "Анна", "email": "",
        "appointments": [{"id": 1, "services": [101], "staff_id": 11,
                          "datetime": format!("{day}T10:00:00+05:00")}]
    });
    let path = format!("/book_record/{COMPANY}");
    fake.fail_next(reqwest::Method::POST, "/api/v1/book_record/", 503);
    assert_eq!(
        raw(
            &fake,
            reqwest::Method::POST,
            &path,
            Some(body.clone()),
            None
        )
        .await
        .0,
        503
    );
    assert!(fake.records().is_empty(), "a 5xx writes nothing");
    fake.hold_next_answer(
        reqwest::Method::POST,
        "/api/v1/book_record/",
        std::time::Duration::from_millis(700),
    );
    let started = std::time::Instant::now();
    let (status, _) = raw(&fake, reqwest::Method::POST, &path, Some(body), None).await;
    assert_eq!(status, 201);
    assert!(started.elapsed() >= std::time::Duration::from_millis(700));
    assert_eq!(fake.records().len(), 1);
}

/// Two services in one visit, as the YClients widget books them: only a master who renders
/// both is offered, the slots leave room for both, and one appointment carries both.
#[tokio::test]
async fn several_services_are_one_visit_of_their_summed_length() {
    let e = env(EKB).await;
    assert!(e.yc.several_services());
    let visit = zapis::domain::Service::ids_in("101+201").collect::<Vec<_>>();
    assert_eq!(visit, ["101", "201"]);
    let masters = e.yc.masters("101+201").await.unwrap();
    let names: Vec<&str> = masters.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["Анна"], "only she renders a haircut and a manicure");
    let day = tuesday();
    let one = e.yc.free_slots("101", Some("12"), day).await.unwrap();
    let both = e.yc.free_slots("101+201", Some("12"), day).await.unwrap();
    let last = |slots: &[zapis::domain::Slot]| slots.iter().map(|s| s.start).max().unwrap();
    // Анна works until 20:00: a 60-minute haircut starts by 19:00, the 150-minute visit by 17:30.
    assert_eq!(last(&one), utc(EKB, at(day, 19, 0)));
    assert_eq!(last(&both), utc(EKB, at(day, 17, 30)));
    assert!(
        e.yc.free_days("101+201", None, day, day)
            .await
            .unwrap()
            .contains(&day)
    );
    let late = request("12", "101+201", utc(EKB, at(day, 18, 0)), 150);
    assert!(matches!(
        e.yc.book(&late).await,
        Err(zapis::booking::BookingError::SlotTaken)
    ));
    let req = request("12", "101+201", utc(EKB, at(day, 17, 30)), 150);
    let record = e.yc.book(&req).await.unwrap();
    let records = e.fake.active_records();
    assert_eq!(records.len(), 1, "one appointment");
    assert_eq!(records[0].service_ids(), [101, 201]);
    assert_eq!(records[0].length_sec, 150 * 60);
    let again = e.yc.record(&record.external_id).await.unwrap().unwrap();
    assert_eq!(again.service_id, "101+201");
    assert_eq!(again.duration_min, 150);
    // Moved later the same day, the visit keeps both services and must still fit.
    let moved =
        e.yc.reschedule(
            &record.external_id,
            &zapis::domain::Slot {
                master_id: "12".into(),
                start: utc(EKB, at(day, 12, 0)),
                duration_min: 150,
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.service_id, "101+201");
    assert_eq!(e.fake.active_records()[0].service_ids(), [101, 201]);
}
