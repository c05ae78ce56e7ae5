//! The amoCRM connector over real HTTP against the fake account in tests/support: what only
//! amoCRM does (its fields, tags, complex adds, pacing, long-lived tokens). The stories every
//! CRM tells alike are in crm_conformance.rs.

use crate::support;
use crate::support::bid;

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use support::fake_amocrm::{self as fake, FakeAmo, contract};
use zapis::clock::{Clock, FakeClock, SystemClock};
use zapis::crm::amocrm::AmoCrm;
use zapis::crm::config::AmoCrmConfig;
use zapis::crm::{Crm, LeadOutcome, LeadRequest, TranscriptLine};
use zapis::domain::{Booking, BookingStatus, Channel, Money, Source, Utm};
use zapis::normalize::Phone;
use zapis::store::Store;

async fn store() -> Store {
    Store::connect("sqlite::memory:").await.expect("store")
}

pub(crate) fn config(fake: &FakeAmo) -> AmoCrmConfig {
    let mut c = AmoCrmConfig::new(fake.base_url.clone(), fake::PIPELINE_ID);
    c.token = Some(SecretString::from(fake::LONG_LIVED_TOKEN.to_string()));
    c.new_status_id = Some(fake::STATUS_NEW);
    c.booking_id_field_id = Some(fake::FIELD_BOOKING_ID);
    c.loss_reason_id = Some(7);
    c.responsible_user_id = Some(504141);
    c
}

pub(crate) fn oauth_config(fake: &FakeAmo) -> AmoCrmConfig {
    let mut c = config(fake);
    c.token = None;
    c.client_id = Some(fake::CLIENT_ID.into());
    c.client_secret = Some(SecretString::from(fake::CLIENT_SECRET.to_string()));
    c.redirect_uri = Some(fake::REDIRECT_URI.into());
    c
}

async fn client(cfg: AmoCrmConfig) -> AmoCrm {
    AmoCrm::new(cfg, store().await, &bid("salon"), Arc::new(SystemClock)).expect("client")
}

fn booking(id: &str, phone: &str) -> Booking {
    Booking {
        id: crate::support::bk(id),
        business_id: bid("salon"),
        client_phone: Phone::parse(phone).unwrap(),
        client_name: "Анна".into(),
        client_email: None,
        service_id: "s1".into(),
        service_name: "Стрижка".into(),
        master_id: "m1".into(),
        master_name: "Ольга".into(),
        start: Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap(),
        duration_min: 60,
        price: Money::from_rubles(1500),
        status: BookingStatus::Booked,
        source: Source {
            channel: Channel::Telegram,
            payload: Some("src_landing".into()),
            link_name: Some("landing".into()),
            utm: Utm {
                source: Some("yandex".into()),
                medium: Some("cpc".into()),
                campaign: Some("spring".into()),
                content: None,
                term: None,
            },
        },
        chat: None,
        external_id: None,
        created_at: Utc::now(),
    }
}

fn request(b: Booking) -> LeadRequest {
    LeadRequest::for_booking(b, None)
}

fn field_value(entity: &Value, key: &str, want: Value) -> Option<Value> {
    entity["custom_fields_values"]
        .as_array()?
        .iter()
        .find(|f| f[key] == want)
        .map(|f| f["values"][0]["value"].clone())
}

pub(crate) fn tags(lead: &Value) -> Vec<String> {
    lead["_embedded"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn fake_accepts_every_request_example_in_the_contracts() {
    let fake = FakeAmo::start().await;
    let http = reqwest::Client::new();
    let url = |p: &str| fake.base_url.join(p).unwrap();
    let send = |method: reqwest::Method, path: &str, file: &str, auth: bool| {
        let mut r = http
            .request(method, url(path))
            .header("content-type", "application/json")
            .body(contract(file));
        if auth {
            r = r.bearer_auth(fake::LONG_LIVED_TOKEN);
        }
        r.send()
    };
    fake.issue_code("xxxxxxx");
    fake.add_refresh_token("xxxxx");
    fake.insert_contact(3, json!({"name": "Иван"}));
    let cases = [
        (
            reqwest::Method::POST,
            "/oauth2/access_token",
            "oauth-access-token-authorization-code.request.json",
            false,
        ),
        (
            reqwest::Method::POST,
            "/oauth2/access_token",
            "oauth-access-token-refresh-token.request.json",
            false,
        ),
        (
            reqwest::Method::POST,
            "/api/v4/contacts",
            "contacts-add.request.json",
            true,
        ),
        (
            reqwest::Method::PATCH,
            "/api/v4/contacts/3",
            "contact-update.request.json",
            true,
        ),
        (
            reqwest::Method::POST,
            "/api/v4/contacts/chats",
            "contacts-chats-link.request.json",
            true,
        ),
        (
            reqwest::Method::POST,
            "/api/v4/leads/complex",
            "leads-complex.request.json",
            true,
        ),
        (
            reqwest::Method::POST,
            "/api/v4/webhooks",
            "webhooks-subscribe.request.json",
            true,
        ),
    ];
    for (method, path, file, auth) in cases {
        // Stay under the fake's 7 req/s: this test is about bodies, not rates.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = send(method, path, file, auth).await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "{file} → {path}: {body}");
    }
    // The complex add made the lead and its contact, with the PHONE stored under its code.
    let lead = fake.leads().pop().unwrap();
    assert_eq!(lead["status_id"], json!(29352079));
    assert_eq!(tags(&lead), vec!["bot"]);
    assert_eq!(fake.contacts().len(), 4);
    assert_eq!(fake.refresh_token_used("xxxxx"), Some(true));
}

#[tokio::test]
async fn fake_answers_like_amocrm_204_401_validation_and_429() {
    let fake = FakeAmo::start().await;
    let http = reqwest::Client::new();
    let get = |token: &str, q: &str| {
        http.get(fake.base_url.join("/api/v4/contacts").unwrap())
            .query(&[("query", q)])
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        get(fake::LONG_LIVED_TOKEN, "nobody")
            .await
            .unwrap()
            .status(),
        204
    );
    let r = get("wrong", "x").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = http
        .post(fake.base_url.join("/api/v4/tasks").unwrap())
        .bearer_auth(fake::LONG_LIVED_TOKEN)
        .json(&json!([{"text": "позвонить"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["validation-errors"][0]["errors"][0]["path"],
        "complete_till"
    );
    // A raw burst with no limiter is throttled.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let burst: Vec<_> = (0..12).map(|_| get(fake::LONG_LIVED_TOKEN, "x")).collect();
    let statuses: Vec<u16> = futures_statuses(burst).await;
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(fake.max_per_second() > fake::MAX_RPS);
}

async fn futures_statuses<F>(futures: Vec<F>) -> Vec<u16>
where
    F: std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap().unwrap().status().as_u16());
    }
    out
}

#[tokio::test]
async fn lead_carries_pipeline_stage_tags_utm_price_and_booking_id() {
    let fake = FakeAmo::start().await;
    // The sync engine holds the connector as a trait object.
    let crm: Arc<dyn Crm> = Arc::new(client(config(&fake)).await);
    assert_eq!(crm.system(), "amocrm");
    let b = booking("a1b2c3d4e5f60718293a4b5c6d7e8f90", "+79123456789");
    let created = crm.create_lead(&request(b.clone())).await.unwrap();
    let lead = fake.lead(&created.lead_id);
    assert_eq!(lead["pipeline_id"], json!(fake::PIPELINE_ID));
    assert_eq!(lead["status_id"], json!(fake::STATUS_NEW));
    assert_eq!(lead["price"], json!(1500));
    assert_eq!(lead["responsible_user_id"], json!(504141));
    assert_eq!(lead["name"], json!("Стрижка — Анна"));
    let t = tags(&lead);
    for want in ["zapis", "telegram", "campaign:landing", "start:src_landing"] {
        assert!(t.contains(&want.to_string()), "{want} missing from {t:?}");
    }
    assert_eq!(
        field_value(&lead, "field_id", json!(fake::FIELD_BOOKING_ID)),
        Some(json!(b.id))
    );
    assert_eq!(
        field_value(&lead, "field_code", json!("UTM_SOURCE")),
        Some(json!("yandex"))
    );
    assert_eq!(
        field_value(&lead, "field_code", json!("UTM_MEDIUM")),
        Some(json!("cpc"))
    );
    assert_eq!(
        field_value(&lead, "field_code", json!("UTM_CAMPAIGN")),
        Some(json!("spring"))
    );
    assert!(field_value(&lead, "field_code", json!("UTM_TERM")).is_none());

    let read = crm.get_lead(&created.lead_id).await.unwrap().unwrap();
    assert_eq!(
        (read.status_id, read.pipeline_id),
        (fake::STATUS_NEW, fake::PIPELINE_ID)
    );
    assert!(crm.get_lead("999999").await.unwrap().is_none());
}

#[tokio::test]
async fn start_payload_goes_to_its_field_when_one_is_configured() {
    let fake = FakeAmo::start().await;
    let mut cfg = config(&fake);
    cfg.start_payload_field_id = Some(fake::FIELD_START_PAYLOAD);
    let crm = client(cfg).await;
    let created = crm
        .create_lead(&request(booking("c1", "+79123456789")))
        .await
        .unwrap();
    let lead = fake.lead(&created.lead_id);
    assert_eq!(
        field_value(&lead, "field_id", json!(fake::FIELD_START_PAYLOAD)),
        Some(json!("src_landing"))
    );
    assert!(!tags(&lead).iter().any(|t| t.starts_with("start:")));
}

fn transcript(n: usize) -> Vec<TranscriptLine> {
    (0..n)
        .map(|i| TranscriptLine {
            at: Utc.with_ymd_and_hms(2026, 5, 30, 9, 0, 0).unwrap()
                + chrono::Duration::seconds(i as i64),
            author: if i % 2 == 0 {
                "Клиент".into()
            } else {
                "Бот".into()
            },
            text: format!("сообщение номер {i}: {}", "текст ".repeat(8)),
        })
        .collect()
}

#[tokio::test]
async fn transcript_is_split_under_the_note_limit_and_batched() {
    let fake = FakeAmo::start().await;
    let mut cfg = config(&fake);
    cfg.note_max_chars = 1000;
    let crm = client(cfg).await;
    let mut req = request(booking("t1", "+79123456789"));
    req.transcript = transcript(800);
    let created = crm.create_lead(&req).await.unwrap();
    let notes = fake.notes_of(&created.lead_id);
    assert_eq!(notes.len(), created.note_ids.len());
    assert!(
        notes.len() > 50,
        "{} notes: should need two batches",
        notes.len()
    );
    for n in &notes {
        assert_eq!(n["note_type"], "common");
        assert!(n["params"]["text"].as_str().unwrap().chars().count() <= 1000);
    }
    assert_eq!(
        fake.count("POST", "/api/v4/leads/notes"),
        notes.len().div_ceil(50)
    );
    let all: String = notes
        .iter()
        .map(|n| n["params"]["text"].as_str().unwrap())
        .collect();
    assert!(all.contains("сообщение номер 0:") && all.contains("сообщение номер 799:"));
}

/// Without a booking field the lead is found by its tag (the story with the field is in
/// crm_conformance.rs).
#[tokio::test]
async fn search_before_create_finds_the_lead_by_its_tag_without_a_booking_field() {
    let fake = FakeAmo::start().await;
    let mut cfg = config(&fake);
    cfg.booking_id_field_id = None;
    let crm = client(cfg).await;
    let id = "5f0c1e2d3b4a59687766554433221100";
    let mut req = request(booking(id, "+79123456789"));
    // The first attempt created the lead but died before the transcript.
    let first = crm.create_lead(&req).await.unwrap();
    assert!(crm.find_lead_by_booking("another").await.unwrap().is_none());
    req.transcript = transcript(3);
    let outcome = crm.ensure_lead(&req).await.unwrap();
    assert!(
        matches!(&outcome, LeadOutcome::Existing(l) if l.id == first.lead_id),
        "{outcome:?}"
    );
    assert_eq!(fake.leads().len(), 1);
    assert_eq!(
        fake.notes_of(&first.lead_id).len(),
        1,
        "the missing transcript was added"
    );
    crm.ensure_lead(&req).await.unwrap();
    assert_eq!(fake.notes_of(&first.lead_id).len(), 1, "and only once");
    assert!(tags(&fake.lead(&first.lead_id)).contains(&"zapis:5f0c1e2d3b4a5968".to_string()));
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    let fake = FakeAmo::start().await;
    let clock = Arc::new(FakeClock::new(Utc::now()));
    let crm = AmoCrm::new(
        oauth_config(&fake),
        store().await,
        &bid("salon"),
        clock.clone() as Arc<dyn Clock>,
    )
    .unwrap();
    fake.issue_code("c");
    crm.exchange_code("c").await.unwrap();
    assert!(crm.get_lead("1").await.unwrap().is_none());
    assert_eq!(fake.refreshes(), 0);
    clock.advance(chrono::Duration::seconds(86400 - 60));
    assert!(crm.get_lead("1").await.unwrap().is_none());
    assert_eq!(
        fake.refreshes(),
        1,
        "refreshed ahead of expiry, with no 401 first"
    );
}

#[tokio::test]
async fn a_dead_refresh_token_is_an_auth_error_naming_the_fix() {
    let fake = FakeAmo::start().await;
    let crm = client(oauth_config(&fake)).await;
    fake.issue_code("c");
    crm.exchange_code("c").await.unwrap();
    fake.revoke_refresh_tokens();
    fake.expire_access_tokens();
    let err = crm.get_lead("1").await.unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert!(err.is_alert_worthy());
    let msg = err.to_string();
    assert!(msg.contains("zapis amocrm auth --code"), "{msg}");
    assert!(!msg.contains("refresh-"), "no token in the message: {msg}");
    // A spent code is refused the same way.
    let err = crm.exchange_code("c").await.unwrap_err();
    assert!(
        err.is_auth() && err.to_string().contains("authorisation code"),
        "{err}"
    );
}

#[tokio::test]
async fn a_burst_of_50_operations_never_exceeds_7_per_second() {
    let fake = FakeAmo::start().await;
    // Two clients of one account share its limiter.
    let a = client(config(&fake)).await;
    let b = client(config(&fake)).await;
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let crm = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { crm.find_lead_by_booking(&format!("burst-{i}")).await })
        })
        .collect();
    for h in handles {
        assert!(h.await.unwrap().unwrap().is_none());
    }
    eprintln!(
        "50 operations in {:?}, max {} requests in any second, {} throttled",
        started.elapsed(),
        fake.max_per_second(),
        fake.throttled()
    );
    assert!(
        fake.max_per_second() <= fake::MAX_RPS,
        "{}",
        fake.max_per_second()
    );
    assert_eq!(fake.throttled(), 0);
    assert_eq!(fake.count("GET", "/api/v4/leads"), 50);
}

/// Paced at amoCRM's own limit, a 429 means a request was held up on its way. amoCRM did
/// nothing with it, so the call sends it again after the second it asks for; a second 429, or
/// a longer wait asked for, goes back to the caller (the queue's backoff).
#[tokio::test]
async fn a_short_429_is_sat_out_once_and_a_second_goes_back_to_the_caller() {
    let fake = FakeAmo::start().await;
    let crm = client(config(&fake)).await;
    // Whatever the first call reads besides the lead search is read now.
    assert!(crm.find_lead_by_booking("warm").await.unwrap().is_none());
    let sent = || fake.requests().len();
    let before = sent();
    fake.inject(429, Some(1));
    assert!(crm.find_lead_by_booking("once").await.unwrap().is_none());
    assert_eq!(sent() - before, 2, "sent again");

    let before = sent();
    fake.inject(429, Some(1));
    fake.inject(429, Some(1));
    let err = crm.find_lead_by_booking("twice").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(err.status(), Some(429));
    assert_eq!(sent() - before, 2, "sent again once only");

    let before = sent();
    fake.inject(429, Some(3));
    let err = crm.find_lead_by_booking("longer").await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)), "{err:?}");
    assert_eq!(sent() - before, 1, "not sat out");
}

#[tokio::test]
async fn a_validation_error_is_permanent_with_the_field_path() {
    let fake = FakeAmo::start().await;
    let mut cfg = config(&fake);
    cfg.booking_id_field_id = Some(12345); // no such field in the account
    let crm = client(cfg).await;
    let err = crm
        .create_lead(&request(booking("v1", "+79123456789")))
        .await
        .unwrap_err();
    assert!(err.is_permanent() && !err.is_transient(), "{err:?}");
    assert_eq!(err.status(), Some(400));
    let d = &err.details()[0];
    assert_eq!(d.code, "NotSupportedChoice");
    assert_eq!(d.path, "custom_fields_values.0.field_id");
    assert_eq!(d.request_id.as_deref(), Some("0"));
    assert!(fake.leads().is_empty());
    // A bad stage id too.
    let mut cfg = config(&fake);
    cfg.new_status_id = Some(1);
    let err = client(cfg)
        .await
        .create_lead(&request(booking("v2", "+79123456789")))
        .await
        .unwrap_err();
    assert_eq!(err.details()[0].path, "status_id");
}

#[tokio::test]
async fn an_unpaid_account_is_payment_required() {
    let fake = FakeAmo::start().await;
    let crm = client(config(&fake)).await;
    fake.set_unpaid(true);
    let err = crm
        .create_lead(&request(booking("p1", "+79123456789")))
        .await
        .unwrap_err();
    assert!(
        err.is_payment_required() && err.status() == Some(402),
        "{err:?}"
    );
    assert!(err.is_permanent() && err.is_alert_worthy());
}

#[tokio::test]
async fn a_bad_long_lived_token_is_auth() {
    let fake = FakeAmo::start().await;
    let mut cfg = config(&fake);
    cfg.token = Some(SecretString::from("nope".to_string()));
    let err = client(cfg).await.get_lead("1").await.unwrap_err();
    assert!(
        err.is_auth() && err.to_string().contains("crm.amocrm.token"),
        "{err}"
    );
}

#[tokio::test]
async fn check_validates_token_pipeline_and_stages() {
    let fake = FakeAmo::start().await;
    let report = client(config(&fake)).await.check().await.unwrap();
    assert_eq!(report.pipeline_id, fake::PIPELINE_ID);
    assert!(report.stages.iter().any(|(id, _)| *id == fake::LOST));
    let mut cfg = config(&fake);
    cfg.done_status_id = 555;
    let err = client(cfg).await.check().await.unwrap_err();
    assert!(
        err.to_string().contains("crm.amocrm.done_status_id"),
        "{err}"
    );
    let mut cfg = config(&fake);
    cfg.pipeline_id = 1;
    let err = client(cfg).await.check().await.unwrap_err();
    assert!(err.to_string().contains("pipeline 1"), "{err}");
}

#[tokio::test]
async fn webhook_registration_subscribes_the_destination() {
    let fake = FakeAmo::start().await;
    let crm = client(config(&fake)).await;
    let url = url::Url::parse("https://zapis.example/webhooks/amocrm").unwrap();
    let hook = crm
        .register_webhook(&url, &["status_lead", "delete_lead"])
        .await
        .unwrap();
    assert_eq!(hook.destination, url.as_str());
    assert_eq!(hook.settings, vec!["status_lead", "delete_lead"]);
    crm.register_webhook(&url, &["status_lead"]).await.unwrap();
    assert_eq!(fake.webhooks().len(), 1);
}

#[tokio::test]
async fn concurrent_401s_spend_the_refresh_token_once() {
    let fake = FakeAmo::start().await;
    let db = store().await;
    fake.issue_code("c");
    zapis::crm::amocrm::authorize(oauth_config(&fake), db.clone(), &bid("salon"), "c")
        .await
        .unwrap();
    let crm = AmoCrm::new(
        oauth_config(&fake),
        db,
        &bid("salon"),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert!(crm.get_lead("1").await.unwrap().is_none());
    fake.expire_access_tokens();
    let handles: Vec<_> = (0..5)
        .map(|_| {
            let crm = crm.clone();
            tokio::spawn(async move { crm.get_lead("1").await })
        })
        .collect();
    for h in handles {
        assert!(h.await.unwrap().unwrap().is_none());
    }
    assert_eq!(fake.refreshes(), 1);
}

// ------------------------------------------------------------------ the fake's refusals

async fn api(
    fake: &FakeAmo,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Option<Value>) {
    // The fake counts every call against its 7 a second; these tests are about answers.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut r = reqwest::Client::new()
        .request(method, fake.base_url.join(path).unwrap())
        .bearer_auth(fake::LONG_LIVED_TOKEN);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).ok())
}

fn lead_with(fields: Value, tag: &str) -> Value {
    json!([{"name": "Стрижка — Анна", "pipeline_id": fake::PIPELINE_ID,
            "custom_fields_values": fields,
            "_embedded": {"tags": [{"name": tag}], "contacts": [{"first_name": "Анна"}]}}])
}

/// The shape of a JSON value: object keys with their shapes, array items' shape, or the type.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

#[tokio::test]
async fn fake_query_searches_filled_field_values_never_tags() {
    let fake = FakeAmo::start().await;
    let booking_id = "9d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a";
    let (status, _) = api(
        &fake,
        reqwest::Method::POST,
        "/api/v4/leads/complex",
        Some(lead_with(
            json!([{"field_id": fake::FIELD_BOOKING_ID, "values": [{"value": booking_id}]}]),
            "zapis:9d1c2b3a4f5e6d7c",
        )),
    )
    .await;
    assert_eq!(status, 200);
    // The tag is on the lead, yet `query` does not see it: amoCRM searches field values.
    let (status, body) = api(
        &fake,
        reqwest::Method::GET,
        "/api/v4/leads?query=zapis:9d1c2b3a4f5e6d7c",
        None,
    )
    .await;
    assert_eq!((status, body), (204, None), "a tag is not a filled field");
    let (status, body) = api(
        &fake,
        reqwest::Method::GET,
        &format!("/api/v4/leads?query={booking_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body.unwrap()["_embedded"]["leads"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn fake_lists_lead_fields_fifty_a_page_and_creates_text_fields() {
    let fake = FakeAmo::start().await;
    let total = fake.lead_fields().len();
    assert!(total > fake::FIELDS_PER_PAGE, "the list needs two pages");
    let (status, first) = api(
        &fake,
        reqwest::Method::GET,
        "/api/v4/leads/custom_fields?limit=250&page=1",
        None,
    )
    .await;
    let first = first.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        first["_embedded"]["custom_fields"]
            .as_array()
            .unwrap()
            .len(),
        fake::FIELDS_PER_PAGE,
        "at most 50 a request, whatever limit asks"
    );
    assert!(first["_links"]["next"]["href"].is_string());
    let (_, second) = api(
        &fake,
        reqwest::Method::GET,
        "/api/v4/leads/custom_fields?limit=250&page=2",
        None,
    )
    .await;
    let second = second.unwrap();
    assert_eq!(
        second["_embedded"]["custom_fields"]
            .as_array()
            .unwrap()
            .len(),
        total - fake::FIELDS_PER_PAGE
    );
    assert!(second["_links"].get("next").is_none());
    let (status, _) = api(
        &fake,
        reqwest::Method::GET,
        "/api/v4/leads/custom_fields?page=3",
        None,
    )
    .await;
    assert_eq!(status, 204, "past the end is 204");

    let (status, added) = api(
        &fake,
        reqwest::Method::POST,
        "/api/v4/leads/custom_fields",
        Some(json!([{"type": "text", "name": "Номер визита", "request_id": "0"}])),
    )
    .await;
    assert_eq!(status, 200);
    let id = added.unwrap()["_embedded"]["custom_fields"][0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(fake.lead_field_named("Номер визита"), Some(id));
    let (status, refused) = api(
        &fake,
        reqwest::Method::POST,
        "/api/v4/leads/custom_fields",
        Some(json!([{"type": "hologram", "name": "X"}])),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        shape(&refused.unwrap()),
        shape(&serde_json::from_slice(&contract("validation-error.response.json")).unwrap())
    );
}

#[tokio::test]
async fn fake_refuses_a_lead_naming_a_field_the_account_lacks_as_amocrm_does() {
    let fake = FakeAmo::start().await;
    let documented: Value =
        serde_json::from_slice(&contract("validation-error.response.json")).unwrap();
    let (status, body) = api(
        &fake,
        reqwest::Method::POST,
        "/api/v4/leads/complex",
        Some(lead_with(
            json!([{"field_id": 12345, "values": [{"value": "x"}]}]),
            "t",
        )),
    )
    .await;
    let body = body.unwrap();
    assert_eq!(status, 400);
    assert_eq!(shape(&body), shape(&documented), "{body:#}");
    assert_eq!(
        body["validation-errors"][0]["errors"][0]["path"],
        "custom_fields_values.0.field_id"
    );
    // A tracking field this account never set up, named by code.
    fake.remove_lead_field_code("UTM_SOURCE");
    let (status, body) = api(
        &fake,
        reqwest::Method::POST,
        "/api/v4/leads/complex",
        Some(lead_with(
            json!([{"field_code": "UTM_SOURCE", "values": [{"value": "yandex"}]}]),
            "t",
        )),
    )
    .await;
    let body = body.unwrap();
    assert_eq!(status, 400);
    assert_eq!(shape(&body), shape(&documented), "{body:#}");
    assert_eq!(
        body["validation-errors"][0]["errors"][0]["path"],
        "custom_fields_values.0.field_code"
    );
    assert!(fake.leads().is_empty(), "a refused lead is not written");
}

#[tokio::test]
async fn fake_faults_fire_once_and_after_ones_write_first() {
    use fake::FaultKind;
    let fake = FakeAmo::start().await;
    let task = |text: &str| json!([{"text": text, "complete_till": 1700000000}]);
    fake.fault("POST", "/api/v4/tasks", None, FaultKind::Before(500));
    assert_eq!(
        api(
            &fake,
            reqwest::Method::POST,
            "/api/v4/tasks",
            Some(task("a"))
        )
        .await
        .0,
        500
    );
    assert!(fake.tasks().is_empty(), "refused before the write");
    fake.fault(
        "POST",
        "/api/v4/tasks",
        Some("only-b"),
        FaultKind::AfterStatus(502),
    );
    assert_eq!(
        api(
            &fake,
            reqwest::Method::POST,
            "/api/v4/tasks",
            Some(task("a"))
        )
        .await
        .0,
        200,
        "the needle decides which request meets the fault"
    );
    assert_eq!(
        api(
            &fake,
            reqwest::Method::POST,
            "/api/v4/tasks",
            Some(task("only-b"))
        )
        .await
        .0,
        502
    );
    assert_eq!(fake.tasks().len(), 2, "written, then the answer failed");
    fake.fault("POST", "/api/v4/tasks", None, FaultKind::AfterDrop);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let cut = reqwest::Client::new()
        .post(fake.base_url.join("/api/v4/tasks").unwrap())
        .bearer_auth(fake::LONG_LIVED_TOKEN)
        .json(&task("c"))
        .send()
        .await;
    let cut = match cut {
        Ok(r) => r.bytes().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(cut.is_err(), "the answer never arrives whole");
    assert_eq!(fake.tasks().len(), 3);
    fake.fault("POST", "/api/v4/tasks", None, FaultKind::AfterDelay(600));
    let started = std::time::Instant::now();
    assert_eq!(
        api(
            &fake,
            reqwest::Method::POST,
            "/api/v4/tasks",
            Some(task("d"))
        )
        .await
        .0,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(fake.tasks().len(), 4);
    assert_eq!(fake.fired().len(), 4);
    assert!(fake.pending_faults().is_empty());
    assert_eq!(
        api(
            &fake,
            reqwest::Method::POST,
            "/api/v4/tasks",
            Some(task("e"))
        )
        .await
        .0,
        200,
        "each fault fires once"
    );
}

// ------------------------------------------------------------------ the default configuration

fn default_config(fake: &FakeAmo) -> AmoCrmConfig {
    let mut c = config(fake);
    c.booking_id_field_id = None;
    c
}

#[tokio::test]
async fn without_a_configured_field_the_booking_field_is_created_once_and_kept() {
    use zapis::crm::amocrm::{BOOKING_FIELD_NAME, FieldOrigin};
    let fake = FakeAmo::start().await;
    let db = store().await;
    let crm = AmoCrm::new(
        default_config(&fake),
        db.clone(),
        &bid("salon"),
        Arc::new(SystemClock),
    )
    .unwrap();
    let report = crm.setup().await.unwrap();
    assert_eq!(report.booking_field_origin, FieldOrigin::Created);
    assert_eq!(
        fake.lead_field_named(BOOKING_FIELD_NAME),
        Some(report.booking_field_id)
    );
    assert_eq!(fake.count("POST", "/api/v4/leads/custom_fields"), 1);
    assert!(report.tracking_missing.is_empty(), "{report}");
    assert_eq!(
        db.external_id(
            &bid("salon"),
            "crm_field",
            "lead_booking_id",
            zapis::domain::System::AmoCrm
        )
        .await
        .unwrap(),
        Some(report.booking_field_id.to_string())
    );
    // The next start reads it from the store; another deployment finds it by name.
    let again = AmoCrm::new(
        default_config(&fake),
        db.clone(),
        &bid("salon"),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert_eq!(
        again.booking_field().await.unwrap(),
        (report.booking_field_id, FieldOrigin::Stored)
    );
    let elsewhere = client(default_config(&fake)).await;
    assert_eq!(
        elsewhere.booking_field().await.unwrap(),
        (report.booking_field_id, FieldOrigin::Found)
    );
    assert_eq!(fake.count("POST", "/api/v4/leads/custom_fields"), 1);
    // A configured field still wins.
    assert_eq!(
        client(config(&fake)).await.booking_field().await.unwrap(),
        (fake::FIELD_BOOKING_ID, FieldOrigin::Configured)
    );

    // The lead carries the id in that field, and the search after a lost answer finds it.
    let b = booking("0f1e2d3c4b5a69788796a5b4c3d2e1f0", "+79123456789");
    fake.fault(
        "POST",
        "/api/v4/leads/complex",
        None,
        fake::FaultKind::AfterDrop,
    );
    let err = crm.create_lead(&request(b.clone())).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let found = crm.find_lead_by_booking(&b.id).await.unwrap().unwrap();
    let lead = fake.lead(&found.id);
    assert_eq!(
        field_value(&lead, "field_id", json!(report.booking_field_id)),
        Some(json!(b.id))
    );
    assert!(
        tags(&lead).contains(&"zapis:0f1e2d3c4b5a6978".to_string()),
        "tags stay"
    );
}

#[tokio::test]
async fn a_lead_never_fails_for_a_tracking_field_the_account_lacks() {
    use zapis::crm::amocrm::UNTRACKED_NOTE_HEADER;
    let fake = FakeAmo::start().await;
    fake.remove_lead_field_code("UTM_SOURCE");
    let crm = client(default_config(&fake)).await;
    let report = crm.setup().await.unwrap();
    assert_eq!(report.tracking_missing, vec!["UTM_SOURCE".to_string()]);
    let b = booking("utm-1", "+79123456789");
    let created = crm.create_lead(&request(b.clone())).await.unwrap();
    let lead = fake.lead(&created.lead_id);
    assert_eq!(
        field_value(&lead, "field_code", json!("UTM_MEDIUM")),
        Some(json!("cpc")),
        "present fields are filled by id"
    );
    assert!(field_value(&lead, "field_code", json!("UTM_SOURCE")).is_none());
    assert!(
        tags(&lead).contains(&"utm_source:yandex".to_string()),
        "{:?}",
        tags(&lead)
    );
    crm.ensure_booking_notes(&created.lead_id, &b, &transcript(2), true)
        .await
        .unwrap();
    let notes = fake.notes_of(&created.lead_id);
    assert_eq!(notes.len(), 2, "{notes:#?}");
    let untracked = notes[0]["params"]["text"].as_str().unwrap();
    assert!(
        untracked.starts_with(UNTRACKED_NOTE_HEADER) && untracked.contains("utm_source=yandex"),
        "{untracked}"
    );
    // A retry writes neither note again.
    crm.ensure_booking_notes(&created.lead_id, &b, &transcript(2), false)
        .await
        .unwrap();
    assert_eq!(fake.notes_of(&created.lead_id).len(), 2);

    // A field removed after it was read: the refused create re-reads the fields and goes on.
    fake.remove_lead_field_code("UTM_MEDIUM");
    let again = crm
        .create_lead(&request(booking("utm-2", "+79123456789")))
        .await
        .unwrap();
    assert!(tags(&fake.lead(&again.lead_id)).contains(&"utm_medium:cpc".to_string()));
    assert_eq!(fake.leads().len(), 2);
}
