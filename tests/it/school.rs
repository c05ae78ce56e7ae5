//! Schools end to end: the real service (config → App → HTTP router → sync engine) against
//! fake AlfaCRM and GetCourse accounts over real HTTP, on a fake clock. A landing application
//! becomes one customer in the right group with a start date, assigned to the curator with a
//! task; a GetCourse payment opens the course and marks the student; outages and spam are
//! survived.

use crate::support;
use crate::support::bid;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use support::app::Settings;
use support::fake_alfacrm::{self as alfa, FakeAlfa};
use support::fake_getcourse::{self as gcfake, FakeGetCourse};
use zapis::app::App;
use zapis::clock::{Clock, FakeClock};
use zapis::school::applications;
use zapis::store::test_support::raw_pool;
use zapis::sync::{Engine, JobState};

const SECRET: &str = "school-hook-secret-0123456789";
const CURATOR: i64 = 7;
const LEAD_NEW: i64 = 1;
const SOURCE_VK: i64 = 5;
const SOURCE_FORM: i64 = 2;
const SOURCE_GC: i64 = 9;
const STUDYING: i64 = 3;

struct School {
    app: App,
    engine: Engine,
    clock: Arc<FakeClock>,
    url: String,
    alfa: FakeAlfa,
    gc: FakeGetCourse,
    http: reqwest::Client,
    /// The forms' state the server runs with, to flush its spam counters when a test says.
    forms: zapis::http::forms::FormsState,
    _dir: tempfile::TempDir,
}

struct Options<'a> {
    access: &'a str,
    per_minute: u32,
    burst: u32,
    /// More settings (`school.forms`, `http`).
    more: fn(Settings) -> Settings,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            access: "group",
            per_minute: 1000,
            burst: 1000,
            more: |s| s,
        }
    }
}

/// A school's settings: landing forms, AlfaCRM and GetCourse, no messenger.
fn school_settings(
    opts: &Options<'_>,
    alfa: &FakeAlfa,
    gc: &FakeGetCourse,
    store_url: &str,
    listen: &str,
) -> Settings {
    let settings = Settings::new(store_url)
        .remove("business.id")
        .set("business.name", "Школа «Код»")
        .set("http.listen", listen)
        .set("http.webhook_secret", SECRET)
        .set(
            "school.forms.allowed_origins",
            json!(["https://school.example"]),
        )
        .set(
            "school.forms.thank_you_url",
            "https://school.example/thanks",
        )
        .set("school.forms.per_minute", opts.per_minute)
        .set("school.forms.burst", opts.burst)
        .set("school.forms.spam_flush_interval", "1h")
        .alfacrm(alfa)
        .set("school.alfacrm.curator_id", CURATOR)
        .set("school.alfacrm.lead_status_id", LEAD_NEW)
        .set(
            "school.alfacrm.lead_sources",
            json!({"vk": SOURCE_VK, "web_form": SOURCE_FORM, "getcourse": SOURCE_GC}),
        )
        .set("school.alfacrm.study_status_id", STUDYING)
        .set("school.alfacrm.pay_account_id", 1)
        .getcourse(gc, opts.access)
        .push(
            "school.courses",
            json!({"key": "python", "title": "Python для подростков",
                   "alfacrm_group_ids": [alfa::GROUP_PYTHON, alfa::GROUP_PYTHON_LATE],
                   "getcourse_group": "Python, поток декабрь",
                   "getcourse_offer_code": "python-dec"}),
        )
        .push(
            "school.courses",
            json!({"key": "design", "title": "Дизайн",
                   "alfacrm_group_ids": [alfa::GROUP_DESIGN],
                   "getcourse_group": "Дизайн", "getcourse_offer_code": "design"}),
        );
    (opts.more)(settings)
}

async fn start(opts: Options<'_>) -> School {
    let alfa = FakeAlfa::start().await;
    let gc = FakeGetCourse::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let clock = Arc::new(FakeClock::new(
        Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap(),
    ));
    let app = school_settings(&opts, &alfa, &gc, &store_url, "127.0.0.1:9")
        .app(clock.clone())
        .await;
    let engine = app.engine();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = app.http_state(secrecy::SecretString::from(SECRET));
    let forms = state.forms.clone().expect("[school] mounts the forms");
    tokio::spawn(zapis::http::serve_on(
        listener,
        state,
        std::future::pending::<()>(),
    ));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    School {
        app,
        engine,
        clock,
        url,
        alfa,
        gc,
        http,
        forms,
        _dir: dir,
    }
}

impl School {
    async fn post_json(&self, form: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/forms/{form}", self.url))
            .header("accept", "application/json")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Runs every due job, moving the fake clock to the next retry, until the queue is idle.
    async fn drain(&self) {
        for _ in 0..200 {
            self.engine.run_due().await.unwrap();
            match self.engine.queue().next_due().await.unwrap() {
                None => return,
                Some(next) if next > self.clock.now() => self.clock.set(next),
                Some(_) => {}
            }
        }
        panic!("the queue did not settle");
    }

    async fn jobs(&self, state: JobState) -> Vec<zapis::sync::Job> {
        self.engine.queue().jobs_in_state(state).await.unwrap()
    }

    fn customers_with_phone(&self, e164: &str) -> Vec<Value> {
        self.alfa
            .customers()
            .into_iter()
            .filter(|c| {
                c["phone"].as_array().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        zapis::normalize::Phone::parse(p.as_str().unwrap_or_default())
                            .is_ok_and(|p| p.as_str() == e164)
                    })
                })
            })
            .collect()
    }
}

fn landing(phone: &str) -> Value {
    json!({
        "name": "Анна Смирнова",
        "phone": phone,
        "email": "anna@example.ru",
        "course": "python",
        "comment": "Можно вечером?",
        "utm_source": "vk",
        "utm_medium": "cpc",
        "utm_campaign": "winter",
        "referrer": "https://vk.com/feed",
    })
}

#[tokio::test]
async fn a_landing_application_becomes_one_assigned_customer_in_the_group_with_its_start() {
    let s = start(Options::default()).await;
    let r = s.post_json("landing", landing("+7 (912) 345-67-89")).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["ok"], true);
    s.drain().await;

    let customers = s.customers_with_phone("+79123456789");
    assert_eq!(customers.len(), 1, "{customers:?}");
    let c = &customers[0];
    assert_eq!(c["name"], "Анна Смирнова");
    assert_eq!(c["assigned_id"], CURATOR);
    assert_eq!(c["lead_status_id"], LEAD_NEW);
    assert_eq!(
        c["lead_source_id"], SOURCE_VK,
        "utm_source=vk maps to its lead source"
    );
    assert_eq!(c["is_study"], 0);
    assert_eq!(c["branch_ids"], json!([alfa::BRANCH]));
    assert_eq!(c["email"], json!(["anna@example.ru"]));
    let note = c["note"].as_str().unwrap();
    for part in [
        "utm_source=vk",
        "utm_campaign=winter",
        "https://vk.com/feed",
        "Можно вечером?",
    ] {
        assert!(note.contains(part), "note lacks {part}: {note}");
    }
    let id = c["id"].as_i64().unwrap();
    let cgis = s.alfa.cgis_of(id);
    assert_eq!(cgis.len(), 1);
    assert_eq!(cgis[0]["group_id"], alfa::GROUP_PYTHON);
    assert_eq!(cgis[0]["b_date"], "2026-12-07", "the group's own start");
    let tasks = s.alfa.state().tasks.clone();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["assigned_ids"], json!([CURATOR]));
    assert_eq!(tasks[0]["customer_ids"], json!([id]));
    assert!(tasks[0]["text"].as_str().unwrap().contains("07.12.2026"));

    // The same person again, phone typed another way: no second customer, no second group row.
    let r = s.post_json("landing", landing("8 912 345 67 89")).await;
    assert_eq!(r.status(), 200);
    s.drain().await;
    assert_eq!(s.customers_with_phone("+79123456789").len(), 1);
    assert_eq!(s.alfa.cgis_of(id).len(), 1);
    assert!(s.jobs(JobState::Dead).await.is_empty());
}

#[tokio::test]
async fn a_customer_a_manager_typed_in_by_hand_is_found_not_duplicated() {
    let s = start(Options::default()).await;
    let existing = s.alfa.add_customer("Анна", "8(912)345-67-89", None);
    let mut body = landing("+79123456789");
    body["course"] = json!("design");
    body["utm_source"] = Value::Null;
    s.post_json("landing", body).await;
    s.drain().await;
    assert_eq!(s.alfa.customers().len(), 1);
    let cgis = s.alfa.cgis_of(existing);
    assert_eq!(cgis.len(), 1);
    assert_eq!(cgis[0]["group_id"], alfa::GROUP_DESIGN);
    assert_eq!(
        cgis[0]["b_date"], "2026-11-29",
        "a group that has begun is joined from today"
    );
}

#[tokio::test]
async fn a_plain_html_form_post_is_redirected_and_a_chosen_group_is_kept() {
    let s = start(Options {
        more: |s| s.set("school.forms.names", json!(["landing", "promo"])),
        ..Options::default()
    })
    .await;
    let r = s
        .http
        .post(format!("{}/forms/promo", s.url))
        .form(&[
            ("name", "Олег"),
            ("phone", "9161112233"),
            ("course", "python"),
            ("group", &alfa::GROUP_PYTHON_LATE.to_string()),
            ("utm_source", "yandex"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        "https://school.example/thanks"
    );
    s.drain().await;
    let c = &s.customers_with_phone("+79161112233")[0];
    assert_eq!(
        c["lead_source_id"], SOURCE_FORM,
        "yandex is not mapped: the channel's source is used"
    );
    let cgis = s.alfa.cgis_of(c["id"].as_i64().unwrap());
    assert_eq!(cgis[0]["group_id"], alfa::GROUP_PYTHON_LATE);
    assert_eq!(cgis[0]["b_date"], "2027-01-16");
}

#[tokio::test]
async fn a_bad_field_is_named_in_a_422_and_nothing_is_saved() {
    let s = start(Options::default()).await;
    let cases = [
        (json!({"phone": "+79123456789", "course": "python"}), "name"),
        (
            json!({"name": "А", "phone": "12", "course": "python"}),
            "phone",
        ),
        (json!({"name": "А", "course": "python"}), "phone"),
        (
            json!({"name": "А", "phone": "+79123456789", "course": "python", "email": "no-at"}),
            "email",
        ),
        (
            json!({"name": "А", "phone": "+79123456789", "course": "cooking"}),
            "course",
        ),
        (
            json!({"name": "А", "phone": "+79123456789", "course": "python", "group": 21}),
            "group",
        ),
    ];
    for (body, field) in cases {
        let r = s.post_json("landing", body.clone()).await;
        assert_eq!(r.status(), 422, "{body}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["field"], field, "{body}");
    }
    assert_eq!(
        applications::count(&s.app.store, &bid("default"))
            .await
            .unwrap(),
        0
    );
    assert!(s.jobs(JobState::Pending).await.is_empty());
}

#[tokio::test]
async fn cors_answers_only_the_configured_origin() {
    let s = start(Options::default()).await;
    let preflight = |origin: &'static str| {
        s.http
            .request(reqwest::Method::OPTIONS, format!("{}/forms/landing", s.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight("https://school.example").await.unwrap();
    assert_eq!(
        ok.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://school.example")
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

async fn spam_rows(s: &School) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM school_spam")
        .fetch_one(raw_pool(&s.app.store))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_spam_burst_is_rate_limited_and_honeypot_hits_are_dropped_and_counted() {
    let s = start(Options {
        per_minute: 2,
        burst: 3,
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        let r = s
            .post_json("landing", landing(&format!("+7912000{:04}", i)))
            .await;
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        7,
        "{statuses:?}"
    );
    let store = &s.app.store;
    assert_eq!(
        applications::count(store, &bid("default")).await.unwrap(),
        3
    );
    s.forms.flush_spam().await;
    assert_eq!(
        applications::spam_hits(store, &bid("default"), "landing", "rate_limited")
            .await
            .unwrap(),
        7
    );

    // Honeypot: a fresh server so the limit does not hide it.
    let s = start(Options::default()).await;
    let real: Value = s
        .post_json("landing", landing("+79123450000"))
        .await
        .json()
        .await
        .unwrap();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..4 {
        let mut body = landing("+79123456789");
        body["website"] = json!("http://spam.example");
        let r = s.post_json("landing", body).await;
        assert_eq!(r.status(), 200, "the bot is answered like a person");
        let answer: Value = r.json().await.unwrap();
        // Same shape as a real answer, with an id that looks like one.
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&answer), keys(&real), "{answer} vs {real}");
        let id = answer["id"].as_str().unwrap();
        assert_eq!(id.len(), real["id"].as_str().unwrap().len(), "{id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        assert!(ids.insert(id.to_string()), "ids repeat: {id}");
    }
    let store = &s.app.store;
    assert_eq!(
        applications::count(store, &bid("default")).await.unwrap(),
        1
    );
    s.forms.flush_spam().await;
    assert_eq!(
        applications::spam_hits(store, &bid("default"), "landing", "honeypot")
            .await
            .unwrap(),
        4
    );
    s.drain().await;
    assert_eq!(s.alfa.customers().len(), 1);
}

#[tokio::test]
async fn two_thousand_spam_posts_write_nothing_until_one_counter_per_form_and_reason() {
    let s = start(Options {
        per_minute: 1,
        burst: 1,
        more: |s| s.set("school.forms.names", json!(["landing", "trial"])),
        ..Options::default()
    })
    .await;
    assert_eq!(
        s.post_json("landing", landing("+79120000001"))
            .await
            .status(),
        200
    );
    for i in 0..1000 {
        let form = if i % 2 == 0 { "landing" } else { "trial" };
        let r = s.post_json(form, landing("+79120000002")).await;
        assert_eq!(r.status(), 429);
    }
    // Honeypot posts from another server with room in its limit.
    let h = start(Options::default()).await;
    for _ in 0..1000 {
        let mut body = landing("+79120000003");
        body["website"] = json!("x");
        assert_eq!(h.post_json("landing", body).await.status(), 200);
    }
    // Nothing was written per post.
    assert_eq!(spam_rows(&s).await, 0);
    assert_eq!(spam_rows(&h).await, 0);
    s.forms.flush_spam().await;
    h.forms.flush_spam().await;
    assert_eq!(spam_rows(&s).await, 2, "one counter per form and reason");
    assert_eq!(spam_rows(&h).await, 1);
    let hits = |st: &School, form: &'static str, reason: &'static str| {
        let store = st.app.store.clone();
        async move {
            applications::spam_hits(&store, &bid("default"), form, reason)
                .await
                .unwrap()
        }
    };
    assert_eq!(hits(&s, "landing", "rate_limited").await, 500);
    assert_eq!(hits(&s, "trial", "rate_limited").await, 500);
    assert_eq!(hits(&h, "landing", "honeypot").await, 1000);
    // A second flush adds to the counters.
    for _ in 0..3 {
        s.post_json("trial", landing("+79120000002")).await;
    }
    s.forms.flush_spam().await;
    assert_eq!(hits(&s, "trial", "rate_limited").await, 503);
    assert_eq!(
        applications::count(&h.app.store, &bid("default"))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn an_unknown_form_is_404_before_anything_is_stored() {
    let s = start(Options::default()).await;
    let r = s
        .post_json("someone-elses-form", landing("+79123456789"))
        .await;
    assert_eq!(r.status(), 404);
    let mut bot = landing("+79123456789");
    bot["website"] = json!("x");
    assert_eq!(s.post_json("anything", bot).await.status(), 404);
    s.forms.flush_spam().await;
    assert_eq!(
        applications::count(&s.app.store, &bid("default"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(spam_rows(&s).await, 0);
    assert!(s.jobs(JobState::Pending).await.is_empty());
}

#[tokio::test]
async fn a_corrected_application_right_after_a_422_goes_through() {
    let s = start(Options {
        per_minute: 1,
        burst: 1,
        ..Options::default()
    })
    .await;
    let mut typo = landing("+7912");
    assert_eq!(s.post_json("landing", typo.clone()).await.status(), 422);
    typo["phone"] = json!("+79123456789");
    typo["email"] = json!("anna@");
    assert_eq!(s.post_json("landing", typo.clone()).await.status(), 422);
    typo["email"] = json!("anna@example.ru");
    assert_eq!(s.post_json("landing", typo.clone()).await.status(), 200);
    // The allowance is spent by the one that was taken.
    assert_eq!(s.post_json("landing", typo).await.status(), 429);
    assert_eq!(
        applications::count(&s.app.store, &bid("default"))
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn behind_a_proxy_the_visitor_is_read_from_the_right_and_ipv6_is_limited_per_64() {
    let s = start(Options {
        per_minute: 1,
        burst: 2,
        more: |s| {
            s.set("school.forms.trust_forwarded_for", true)
                .set("http.trusted_proxies", json!(["127.0.0.0/8", "10.0.0.0/8"]))
        },
        ..Options::default()
    })
    .await;
    let post = |forwarded: String| {
        s.http
            .post(format!("{}/forms/landing", s.url))
            .header("accept", "application/json")
            .header("x-forwarded-for", forwarded)
            .json(&landing("+79123456789"))
            .send()
    };
    // A bot writes a new address at the left each time; our proxy appends the real one.
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = post(format!("198.51.100.{i}, 203.0.113.7, 10.0.0.5"))
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    // Another visitor is not affected.
    assert_eq!(post("203.0.113.8".into()).await.unwrap().status(), 200);
    // An IPv6 visitor rotating addresses inside one /64 is one visitor.
    let mut statuses = Vec::new();
    for i in 1..=5 {
        let r = post(format!("2001:db8:0:7::{i:x}")).await.unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    assert_eq!(post("2001:db8:0:8::1".into()).await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_rate_limiter_forgets_quiet_addresses() {
    let s = start(Options {
        per_minute: 60_000,
        burst: 1,
        more: |s| s.set("school.forms.trust_forwarded_for", true),
        ..Options::default()
    })
    .await;
    for i in 0..40 {
        let r = s
            .http
            .post(format!("{}/forms/landing", s.url))
            .header("accept", "application/json")
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&landing("+79123456789"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(s.forms.tracked_addresses(), 40);
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.forms.housekeep().await;
    assert_eq!(s.forms.tracked_addresses(), 0);
}

#[tokio::test]
async fn a_webhook_for_a_system_that_is_not_configured_is_404_and_stored_nowhere() {
    let s = start(Options::default()).await;
    for source in ["yclients", "amocrm", "bitrix24", "max"] {
        let r = s
            .http
            .post(format!("{}/webhooks/{source}/{SECRET}", s.url))
            .body("{\"resource\":\"record\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{source}");
    }
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sync_inbox")
        .fetch_one(raw_pool(&s.app.store))
        .await
        .unwrap();
    assert_eq!(stored, 0);
    // GetCourse is configured here and is taken.
    assert_eq!(notify(&s, &[("id", "1"), ("status", "new")]).await, 200);
}

#[tokio::test]
async fn an_upstream_error_quoting_the_api_key_is_stored_and_journaled_without_it() {
    let s = start(Options::default()).await;
    {
        let mut state = s.alfa.state();
        state.down = true;
        state.down_message = Some(format!(
            "proxy could not pass POST /v2api/auth/login {{\"email\":\"{}\",\"api_key\":\"{}\"}}",
            alfa::EMAIL,
            alfa::API_KEY
        ));
    }
    assert_eq!(
        s.post_json("landing", landing("+79123456789"))
            .await
            .status(),
        200
    );
    s.engine.run_due().await.unwrap();
    // Past the alert threshold, so the outage row carries the error as well.
    s.clock.set(s.clock.now() + chrono::Duration::hours(3));
    s.engine.run_due().await.unwrap();
    let pool = raw_pool(&s.app.store);
    let journal: Vec<Option<String>> = sqlx::query_scalar("SELECT error FROM sync_journal")
        .fetch_all(pool)
        .await
        .unwrap();
    let jobs: Vec<Option<String>> = sqlx::query_scalar("SELECT last_error FROM sync_jobs")
        .fetch_all(pool)
        .await
        .unwrap();
    let outages: Vec<Option<String>> = sqlx::query_scalar("SELECT last_error FROM sync_outages")
        .fetch_all(pool)
        .await
        .unwrap();
    assert!(!journal.is_empty() && !jobs.is_empty() && !outages.is_empty());
    for text in journal.iter().chain(&jobs).chain(&outages).flatten() {
        assert!(!text.contains(alfa::API_KEY), "{text}");
        assert!(text.contains("proxy could not pass"), "{text}");
    }
    assert!(
        journal.iter().flatten().any(|t| t.contains("***")),
        "{journal:?}"
    );
}

#[tokio::test]
async fn alfacrm_down_for_an_hour_loses_nothing() {
    let s = start(Options::default()).await;
    s.alfa.set_down(true);
    for phone in ["+79123456789", "+79161112233", "+79035554433"] {
        assert_eq!(s.post_json("landing", landing(phone)).await.status(), 200);
    }
    let began = s.clock.now();
    let end = began + chrono::Duration::hours(1);
    while s.clock.now() < end {
        s.engine.run_due().await.unwrap();
        let next = s
            .engine
            .queue()
            .next_due()
            .await
            .unwrap()
            .expect("still queued");
        s.clock
            .set(next.max(s.clock.now() + chrono::Duration::seconds(1)));
    }
    assert!(s.alfa.customers().is_empty());
    assert!(
        s.jobs(JobState::Dead).await.is_empty(),
        "an hour is not a reason to give up"
    );
    let waiting = s.jobs(JobState::Pending).await;
    assert_eq!(waiting.len(), 3);
    assert!(waiting.iter().all(|j| j.attempts >= 3), "{waiting:?}");

    s.alfa.set_down(false);
    s.drain().await;
    assert_eq!(s.alfa.customers().len(), 3);
    for phone in ["+79123456789", "+79161112233", "+79035554433"] {
        let c = s.customers_with_phone(phone);
        assert_eq!(c.len(), 1, "{phone}");
        assert_eq!(s.alfa.cgis_of(c[0]["id"].as_i64().unwrap()).len(), 1);
    }
    assert_eq!(s.alfa.state().tasks.len(), 3);
    assert!(s.jobs(JobState::Dead).await.is_empty());
}

#[tokio::test]
async fn an_expired_token_is_renewed_once_and_throttling_is_retried() {
    let s = start(Options::default()).await;
    s.post_json("landing", landing("+79123456789")).await;
    s.drain().await;
    assert_eq!(s.alfa.state().logins, 1);
    s.alfa.expire_tokens();
    s.alfa.state().throttle_next = 1;
    s.post_json("landing", landing("+79161112233")).await;
    s.drain().await;
    {
        let st = s.alfa.state();
        assert_eq!(st.logins, 2, "one fresh login after the 401");
        assert_eq!(st.unauthorized, 1);
        assert_eq!(st.customers.len(), 2);
    }
    assert!(s.jobs(JobState::Dead).await.is_empty());
}

async fn notify(s: &School, query: &[(&str, &str)]) -> u16 {
    let mut url = url::Url::parse(&format!("{}/webhooks/getcourse/{SECRET}", s.url)).unwrap();
    url.query_pairs_mut().extend_pairs(query);
    s.http.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_getcourse_payment_opens_the_group_and_marks_the_alfacrm_student() {
    let s = start(Options::default()).await;
    // The lead from the landing page pays in GetCourse.
    s.post_json("landing", landing("+7 912 345-67-89")).await;
    s.drain().await;
    let lead = s.customers_with_phone("+79123456789")[0]["id"]
        .as_i64()
        .unwrap();
    let status = notify(
        &s,
        &[
            ("id", "900001"),
            ("number", "4711"),
            ("email", "anna@example.ru"),
            ("phone", "89123456789"),
            ("name", "Анна Смирнова"),
            ("status", "payed"),
            ("payed_money", "9 900 руб."),
            ("offers", "Python для подростков"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    // GetCourse re-sends on a timeout: the same call twice is processed once.
    assert_eq!(
        notify(
            &s,
            &[
                ("id", "900001"),
                ("number", "4711"),
                ("email", "anna@example.ru"),
                ("phone", "89123456789"),
                ("name", "Анна Смирнова"),
                ("status", "payed"),
                ("payed_money", "9 900 руб."),
                ("offers", "Python для подростков"),
            ],
        )
        .await,
        200
    );
    s.drain().await;

    let user =
        s.gc.user_by_email("anna@example.ru")
            .expect("user in GetCourse");
    assert!(user.groups.contains("Python, поток декабрь"), "{user:?}");
    assert_eq!(user.phone.as_deref(), Some("+79123456789"));
    assert_eq!(
        s.alfa.customers().len(),
        1,
        "the same student, not a new one"
    );
    let c = s.alfa.customer(lead).unwrap();
    assert_eq!(c["is_study"], 1);
    assert_eq!(c["study_status_id"], STUDYING);
    let pays = s.alfa.state().pays.clone();
    assert_eq!(pays.len(), 1);
    assert_eq!(pays[0]["customer_id"], lead);
    assert_eq!(pays[0]["income"].as_f64(), Some(9900.0));
    assert_eq!(pays[0]["document_date"], "29.11.2026");
    assert!(pays[0]["note"].as_str().unwrap().contains("900001"));
    assert!(s.jobs(JobState::Dead).await.is_empty());
}

#[tokio::test]
async fn a_payment_from_an_unknown_email_creates_the_student_and_a_paid_deal() {
    let s = start(Options {
        access: "deal",
        ..Options::default()
    })
    .await;
    let status = notify(
        &s,
        &[
            ("id", "900002"),
            ("number", "4712"),
            ("email", "new.student@example.ru"),
            ("phone", "+7 903 555-44-33"),
            ("name", "Пётр"),
            ("status", "payed"),
            ("payed_money", "12 500 руб."),
            ("course", "design"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    // An unpaid order's notice changes nothing.
    notify(
        &s,
        &[
            ("id", "900003"),
            ("email", "x@example.ru"),
            ("status", "new"),
        ],
    )
    .await;
    s.drain().await;

    let customers = s.alfa.customers();
    assert_eq!(customers.len(), 1, "{customers:?}");
    let c = &customers[0];
    assert_eq!(c["name"], "Пётр");
    assert_eq!(c["is_study"], 1);
    assert_eq!(c["lead_source_id"], SOURCE_GC);
    assert_eq!(c["email"], json!(["new.student@example.ru"]));
    let id = c["id"].as_i64().unwrap();
    assert_eq!(s.alfa.cgis_of(id)[0]["group_id"], alfa::GROUP_DESIGN);
    assert_eq!(s.alfa.state().pays[0]["income"].as_f64(), Some(12500.0));
    let deals = s.gc.state().deals.clone();
    assert_eq!(deals.len(), 1);
    let deal = &deals[0].1;
    assert_eq!(deal["offer_code"], "design");
    assert_eq!(deal["deal_is_paid"], 1);
    assert_eq!(deal["deal_status"], "payed");
    assert_eq!(deal["deal_number"], "4712");
    assert!(s.gc.user_by_email("new.student@example.ru").is_some());
}

#[tokio::test]
async fn the_fakes_accept_every_contract_payload() {
    let alfa_fake = FakeAlfa::start().await;
    let dir = alfa::contracts_dir().join("alfacrm");
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
    };
    let mut seen = Vec::new();
    let http = reqwest::Client::new();
    // Login: the documented body shape, with the doc's placeholders refused as credentials.
    let login = read("auth-login.request.json");
    seen.push("auth-login.request.json");
    assert_eq!(
        login.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["api_key", "email"]
    );
    let r = http
        .post(format!("{}/v2api/auth/login", alfa_fake.url))
        .json(&login)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let token: Value = http
        .post(format!("{}/v2api/auth/login", alfa_fake.url))
        .json(&json!({"email": alfa::EMAIL, "api_key": alfa::API_KEY}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let call = |path: &str, body: Value| {
        http.post(format!("{}/v2api/{}/{path}", alfa_fake.url, alfa::BRANCH))
            .header("X-ALFACRM-TOKEN", &token)
            .json(&body)
            .send()
    };
    let created: Value = call("customer/create", read("customer-create.request.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    seen.push("customer-create.request.json");
    assert_eq!(created["success"], true, "{created}");
    assert_eq!(created["errors"], json!([]));
    let parsed: zapis::school::Customer = serde_json::from_value(created["model"].clone()).unwrap();
    assert!(parsed.has_phone(&zapis::normalize::Phone::parse("+79001234567").unwrap()));
    let paid: Value = call("pay/create", read("pay-create.request.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    seen.push("pay-create.request.json");
    assert_eq!(paid["success"], true, "{paid}");
    let list: Value = call(
        "customer/index",
        json!({"phone": "9001234567", "is_study": 2}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        list.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["count", "items", "page", "total"]
    );
    let hook: alfa::Webhook = serde_json::from_value(read("webhook-pay-create.json")).unwrap();
    seen.push("webhook-pay-create.json");
    assert_eq!(hook.entity, "Pay");
    assert!(hook.fields_old.is_empty() && hook.fields_rel.is_empty());
    assert_eq!(hook.fields_new["customer_id"], 3);
    // No token → the documented 401 body.
    let r = http
        .post(format!("{}/v2api/1/customer/index", alfa_fake.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 401);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") {
            assert!(seen.contains(&name.as_str()), "{name} is not exercised");
        }
    }

    let gc = FakeGetCourse::start().await;
    let dir = gcfake::contracts_dir().join("getcourse");
    let mut seen = Vec::new();
    let import = |what: &'static str, params: Value| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(params.to_string());
        http.post(format!("{}/pl/api/{what}", gc.url))
            .form(&[
                ("key", gcfake::KEY),
                ("action", "add"),
                ("params", encoded.as_str()),
            ])
            .send()
    };
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
    };
    let template = read("import.response.json");
    seen.push("import.response.json");
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let users: Value = import("users", read("users-add.params.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    seen.push("users-add.params.json");
    assert_eq!(keys(&users), keys(&template));
    zapis::school::getcourse::parse_import(&users).expect("the users import succeeds");
    let u = gc
        .user_by_email("email")
        .expect("the placeholder user is stored");
    assert!(
        u.groups.contains("Группа1") && u.groups.contains("Группа2"),
        "{u:?}"
    );
    let deals: Value = import("deals", read("deals-add.params.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    seen.push("deals-add.params.json");
    assert_eq!(keys(&deals), keys(&template));
    let mut inner = keys(&deals["result"]);
    inner.retain(|k| k != "user_status");
    let mut expected = keys(&template["result"]);
    expected.retain(|k| k != "user_status");
    assert_eq!(
        inner, expected,
        "deal answers carry every documented result key"
    );
    let ok = zapis::school::getcourse::parse_import(&deals).expect("the deal import succeeds");
    assert!(ok.deal_id.is_some());
    // Outer success with an inner refusal: no user given.
    let refused: Value = import("users", json!({"user": {}}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refused["success"], true);
    assert_eq!(refused["result"]["error"], true);
    assert!(zapis::school::getcourse::parse_import(&refused).is_err());
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") {
            assert!(seen.contains(&name.as_str()), "{name} is not exercised");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zapis_check_validates_the_alfacrm_login_and_the_getcourse_key() {
    let alfa_fake = FakeAlfa::start().await;
    let gc = FakeGetCourse::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::new(&format!("sqlite://{}", dir.path().join("z.db").display()))
        .remove("business.id")
        .set("business.name", "Школа")
        .alfacrm(&alfa_fake)
        .getcourse(&gc, "group");
    let write = |settings: Settings| {
        let path = dir.path().join("zapis.toml");
        settings.write(&path);
        path
    };
    let run = |path: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_zapis"))
                .args(["check", "--config"])
                .arg(&path)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let good = run(write(settings.clone())).await;
    let out = String::from_utf8_lossy(&good.stdout).to_string();
    assert!(
        good.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(out.contains("school (alfacrm): reachable"), "{out}");
    assert!(out.contains("school (getcourse): reachable"), "{out}");
    let bad = run(write(
        settings
            .set("school.alfacrm.api_key", "wrong-key")
            .set("school.getcourse.key", "wrong"),
    ))
    .await;
    let out = String::from_utf8_lossy(&bad.stdout).to_string();
    assert!(!bad.status.success());
    assert!(out.contains("school.alfacrm.email"), "{out}");
    assert!(out.contains("GetCourse refused the key"), "{out}");
    let _ = Duration::ZERO;
}

/// A school that only takes landing forms (no messenger) runs as `zapis run`: the form is
/// accepted and its customer reaches AlfaCRM through the service's own delivery engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forms_only_school_runs_and_delivers_a_landing_application() {
    let alfa = FakeAlfa::start().await;
    let gc = FakeGetCourse::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("zapis.toml");
    school_settings(
        &Options::default(),
        &alfa,
        &gc,
        &store_url,
        &format!("127.0.0.1:{port}"),
    )
    .write(&config);
    let service = support::e2e::Service::start(&config);

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/forms/landing");
    let mut answer = None;
    for _ in 0..(support::e2e::WAIT.as_millis() / 100) {
        if let Ok(r) = http
            .post(&url)
            .header("accept", "application/json")
            .json(&landing("+7 912 000-11-22"))
            .send()
            .await
        {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = answer.expect("the service listens");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<Value>().await.unwrap()["ok"], true);

    let delivered = |alfa: &FakeAlfa| {
        alfa.customers().iter().any(|c| {
            c["phone"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    zapis::normalize::Phone::parse(p.as_str().unwrap_or_default())
                        .is_ok_and(|p| p.as_str() == "+79120001122")
                })
            })
        })
    };
    for _ in 0..(support::e2e::WAIT.as_millis() / 100) {
        if delivered(&alfa) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered(&alfa), "{:?}", alfa.customers());
    let ready: Value = reqwest::get(format!("http://127.0.0.1:{port}/health/ready"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready["pollers"],
        json!([]),
        "no messenger, no poller: {ready}"
    );
    service.stop();
}

/// Two schools of one deployment behind one server: each takes its landing forms at
/// `/forms/<id>/<form>` under its own allowed origins, and an application lands in its school
/// only; the single-school path is not served.
#[tokio::test]
async fn each_school_of_a_deployment_takes_its_own_landing_forms() {
    let alfa = FakeAlfa::start().await;
    let gc = FakeGetCourse::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let clock = Arc::new(FakeClock::new(
        Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap(),
    ));
    let tenants = zapis::http::Tenants::default();
    let mut apps = Vec::new();
    for (id, origin) in [
        ("school-a", "https://a.example"),
        ("school-b", "https://b.example"),
    ] {
        let app = school_settings(&Options::default(), &alfa, &gc, &store_url, "127.0.0.1:9")
            .set("business.id", id)
            .set("school.forms.allowed_origins", json!([origin]))
            .app(clock.clone())
            .await;
        tenants.set(
            app.settings.business.id.clone(),
            app.http_state(secrecy::SecretString::from(SECRET)),
        );
        apps.push(app);
    }
    let mut shell = apps[0].http_state(secrecy::SecretString::from(SECRET));
    shell.business_id = None;
    shell.forms = None;
    shell.sources = Vec::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(zapis::http::server::serve_router(
        listener,
        zapis::http::deployment_router(shell, tenants),
        zapis::http::server::Limits::default(),
        std::future::pending::<()>(),
    ));
    let http = reqwest::Client::new();
    let post = |path: String| {
        let http = http.clone();
        async move {
            http.post(path)
                .header("accept", "application/json")
                .json(&landing("+79123456789"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(post(format!("{url}/forms/school-a/landing")).await, 200);
    assert_eq!(post(format!("{url}/forms/landing")).await, 404);
    assert_eq!(post(format!("{url}/forms/nobody/landing")).await, 404);
    let store = &apps[0].store;
    assert_eq!(
        applications::count(store, &bid("school-a")).await.unwrap(),
        1
    );
    assert_eq!(
        applications::count(store, &bid("school-b")).await.unwrap(),
        0
    );
    // The browser's preflight is answered with the business's own origins.
    let preflight = |business: &str, origin: &str| {
        let http = http.clone();
        let target = format!("{url}/forms/{business}/landing");
        let origin = origin.to_string();
        async move {
            http.request(reqwest::Method::OPTIONS, target)
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .send()
                .await
                .unwrap()
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap_or_default().to_string())
        }
    };
    assert_eq!(
        preflight("school-b", "https://b.example").await.as_deref(),
        Some("https://b.example")
    );
    assert_eq!(preflight("school-b", "https://a.example").await, None);
}
