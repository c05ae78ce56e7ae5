//! Two-way sync figures through the fakes over real HTTP on 127.0.0.1:
//!
//! 1. Latency from a YClients webhook received (stored in the inbox) to the amoCRM lead moved
//!    to "lost" in the fake CRM, through the running delivery engine: p50 / p99.
//! 2. Reconciliation cost: schedule API calls (counted by the fake) and wall time of one poll
//!    over 100 upcoming bookings, with the YClients admin list (user token) and without it
//!    (one read per record).
//!
//! `cargo bench --bench sync`; ZAPIS_BENCH_SAMPLES sets the webhook count (default 60).

#[path = "../tests/support/fake_amocrm.rs"]
mod fake_amocrm;
#[path = "../tests/support/fake_yclients.rs"]
#[allow(dead_code)]
mod fake_yclients;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use fake_amocrm::FakeAmo;
use fake_yclients::{FakeSalon, FakeYclients, PARTNER_TOKEN, USER_TOKEN};
use serde_json::{Value, json};
use zapis::app::App;
use zapis::clock::{Clock, SystemClock};
use zapis::config::Config;
use zapis::domain::{Booking, BookingStatus, Channel, ChatRef, Money, Source};
use zapis::normalize::Phone;

fn config(dir: &std::path::Path, yc: &FakeYclients, amo: &FakeAmo, user_token: bool) -> Config {
    let path = dir.join("zapis.toml");
    let user = if user_token {
        format!("user_token = \"{USER_TOKEN}\"")
    } else {
        String::new()
    };
    std::fs::write(
        &path,
        format!(
            r#"
[store]
url = "sqlite://{db}"
[business]
name = "Салон"
timezone = "Asia/Yekaterinburg"
[booking]
system = "yclients"
[booking.yclients]
base_url = "{yc}"
company_id = 777
partner_token = "{PARTNER_TOKEN}"
{user}
[sync]
poll = "5ms"
[crm]
system = "amocrm"
[crm.amocrm]
base_url = "{amo}"
token = "{token}"
pipeline_id = {pipeline}
new_status_id = {status_new}
loss_reason_id = 7
"#,
            db = dir.join("zapis.db").display(),
            yc = yc.base_url,
            amo = amo.base_url,
            token = fake_amocrm::LONG_LIVED_TOKEN,
            pipeline = fake_amocrm::PIPELINE_ID,
            status_new = fake_amocrm::STATUS_NEW,
        ),
    )
    .expect("config file");
    let mut config = Config::load(&path).expect("config");
    if let Some(y) = config.booking.yclients.as_mut() {
        y.rate_limit_per_second = 5;
    }
    config
}

/// `n` bookings a day or more ahead, each with a salon record and a lead; returns
/// `(booking id, record id, lead id)`.
async fn seed(app: &App, yc: &FakeYclients, amo: &FakeAmo, n: usize) -> Vec<(String, u64, String)> {
    let tz = yc.timezone();
    let base = (Utc::now() + chrono::Duration::days(2))
        .with_timezone(&tz)
        .date_naive();
    let leads: Vec<Value> = (0..n)
        .map(|i| {
            json!({"name": format!("bench {i}"), "pipeline_id": fake_amocrm::PIPELINE_ID,
                   "status_id": fake_amocrm::STATUS_NEW})
        })
        .collect();
    let created: Value = reqwest::Client::new()
        .post(format!("{}api/v4/leads", amo.base_url))
        .bearer_auth(fake_amocrm::LONG_LIVED_TOKEN)
        .json(&leads)
        .send()
        .await
        .expect("leads")
        .json()
        .await
        .expect("leads json");
    let lead_ids: Vec<String> = created["_embedded"]["leads"]
        .as_array()
        .expect("leads created")
        .iter()
        .map(|l| l["id"].to_string())
        .collect();
    let now = Utc::now();
    let mut out = Vec::new();
    for (i, lead) in lead_ids.into_iter().enumerate() {
        let day = base + chrono::Duration::days((i / 16) as i64);
        let local = day
            .and_hms_opt(10 + (i % 16 / 2) as u32, 0, 0)
            .expect("time");
        let staff = if i % 2 == 0 { 11 } else { 12 };
        let record = yc.salon_book(staff, 101, local);
        let id = format!("bench{i:04}");
        let start = local
            .and_local_timezone(tz)
            .single()
            .expect("local")
            .with_timezone(&Utc);
        let booking = Booking {
            id: id.clone(),
            business_id: "default".into(),
            client_phone: Phone::parse(&format!("+7912{:07}", i)).expect("phone"),
            client_name: "Клиент".into(),
            client_email: None,
            service_id: "101".into(),
            service_name: "Женская стрижка".into(),
            master_id: staff.to_string(),
            master_name: "Ольга".into(),
            start,
            duration_min: 60,
            price: Money::from_rubles(2000),
            status: BookingStatus::Booked,
            source: Source::direct(Channel::Telegram),
            chat: Some(ChatRef::new(Channel::Telegram, format!("{}", 5000 + i))),
            external_id: Some(format!(
                "{record}:{}",
                yc.record(record).expect("seeded record").hash
            )),
            created_at: now,
        };
        app.store.insert_booking(&booking).await.expect("booking");
        // Linked as an online booking is: `id:hash`, which lets a partner token read it.
        let hash = yc.record(record).expect("seeded record").hash;
        app.store
            .put_link(
                "default",
                "booking",
                &id,
                "yclients",
                &format!("{record}:{hash}"),
                now,
            )
            .await
            .expect("link");
        app.store
            .put_link("default", "booking", &id, "amocrm", &lead, now)
            .await
            .expect("link");
        out.push((id, record, lead));
    }
    out
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn latency(samples: usize) {
    let yc = FakeYclients::start(FakeSalon::standard(777, chrono_tz::Asia::Yekaterinburg)).await;
    yc.set_rate_limit(1000);
    let amo = FakeAmo::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = App::build(config(dir.path(), &yc, &amo, false), clock.clone())
        .await
        .expect("app");
    let seeded = seed(&app, &yc, &amo, samples).await;
    let engine = Arc::new(app.engine());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(engine.run(stop_rx));
    let mut took = Vec::new();
    for (i, (_, record, lead)) in seeded.iter().enumerate() {
        yc.salon_delete(*record);
        let hook = yc.record_webhook(*record, "delete").to_string();
        let t = Instant::now();
        zapis::sync::inbox::receive(
            &app.store,
            "default",
            "yclients",
            &format!("bench-{i}"),
            &Default::default(),
            &hook,
            clock.now(),
        )
        .await
        .expect("inbox");
        loop {
            if amo.lead(lead)["status_id"] == json!(fake_amocrm::LOST) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "lead {lead} never moved"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        took.push(t.elapsed());
    }
    let _ = stop_tx.send(true);
    let _ = running.await;
    took.sort();
    println!(
        "webhook received -> CRM lead moved (YClients delete -> amoCRM lost), {} samples: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        took.len(),
        pct(&took, 0.5).as_secs_f64() * 1e3,
        pct(&took, 0.99).as_secs_f64() * 1e3,
        took.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

async fn reconcile_cost(user_token: bool) {
    let yc = FakeYclients::start(FakeSalon::standard(777, chrono_tz::Asia::Yekaterinburg)).await;
    yc.set_rate_limit(1000);
    let amo = FakeAmo::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = App::build(config(dir.path(), &yc, &amo, user_token), clock.clone())
        .await
        .expect("app");
    seed(&app, &yc, &amo, 100).await;
    let reconciler = app.reconciler();
    // The first round learns the versions; the second is the steady state.
    reconciler.poll(clock.now()).await.expect("poll");
    let before = yc.request_count();
    let t = Instant::now();
    let report = reconciler.poll(clock.now()).await.expect("poll");
    let wall = t.elapsed();
    let calls = yc.request_count() - before;
    println!(
        "reconciliation, 100 upcoming bookings, {}: {calls} schedule API calls per poll (reported {}), {} checked, {:.0} ms",
        if user_token {
            "admin list (user token)"
        } else {
            "one read per record (no user token)"
        },
        report.calls,
        report.checked,
        wall.as_secs_f64() * 1e3
    );
}

fn main() {
    let samples = std::env::var("ZAPIS_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _ = Utc::now().hour();
    rt.block_on(async {
        latency(samples).await;
        reconcile_cost(true).await;
        reconcile_cost(false).await;
    });
}
