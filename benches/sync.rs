//! Two-way sync figures through the fakes over real HTTP on 127.0.0.1:
//!
//! 1. Latency from a YClients webhook received (stored in the inbox) to the amoCRM lead moved
//!    to "lost" in the fake CRM, through the running delivery engine: min / p50 / p99 / max.
//!    Both clients pace their calls (YClients at `rate_limit_per_second` + 5 %, amoCRM at
//!    `max_requests_per_second`, one call a period, no burst), so each sample is bound by a
//!    pacing floor: (calls − 1) periods per system, counted from the calls the fakes saw during
//!    the sample (the schedule is read before the CRM is written, so the two add up). Samples
//!    start 300 ms apart, longer than either period, so every sample starts with both
//!    limiters ready. Printed: latency, its floor, and what zapis adds above the floor.
//! 2. Reconciliation cost: schedule API calls (counted by the fake) and wall time of one poll
//!    over 100 upcoming bookings, with the YClients admin list (user token) and without it
//!    (one read per record), rounds interleaved; wall time beside the floor its calls set.
//!
//! `cargo bench --bench sync`; ZAPIS_BENCH_SAMPLES sets the webhook count (default 60),
//! ZAPIS_BENCH_ROUNDS the reconciliation rounds (default 3).

use zapis_fakes::fake_amocrm;
use zapis_fakes::fake_yclients;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use fake_amocrm::FakeAmo;
use fake_yclients::{FakeSalon, FakeYclients, PARTNER_TOKEN, USER_TOKEN};
use serde_json::{Value, json};
use zapis::app::App;
use zapis::clock::{Clock, SystemClock};
use zapis::config::{BusinessSettings, Config};
use zapis::domain::{Booking, BookingStatus, Channel, ChatRef, Money, Source, System};
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
            id: zapis::domain::BookingId::parse(&id).expect("a booking id"),
            business_id: bid("default"),
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
            external_id: Some(
                zapis::domain::RecordId::parse(&format!(
                    "{record}:{}",
                    yc.record(record).expect("seeded record").hash
                ))
                .expect("a record id"),
            ),
            created_at: now,
        };
        app.store.insert_booking(&booking).await.expect("booking");
        // Linked as an online booking is: `id:hash`, which lets a partner token read it.
        let hash = yc.record(record).expect("seeded record").hash;
        app.store
            .put_link(
                &bid("default"),
                "booking",
                &id,
                System::Yclients,
                &format!("{record}:{hash}"),
                now,
            )
            .await
            .expect("link");
        app.store
            .put_link(&bid("default"), "booking", &id, System::AmoCrm, &lead, now)
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
    let (yc_period, amo_period) = periods(&app.settings);
    let mut took = Vec::new();
    let mut floors = Vec::new();
    let mut above = Vec::new();
    for (i, (_, record, lead)) in seeded.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(300)).await;
        yc.salon_delete(*record);
        let hook = yc.record_webhook(*record, "delete").to_string();
        let (yc_before, amo_before) = (yc.request_count(), amo.requests().len());
        let t = Instant::now();
        zapis::sync::inbox::receive(
            &app.store,
            &bid("default"),
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
        let elapsed = t.elapsed();
        let yc_calls = (yc.request_count() - yc_before) as u32;
        let amo_calls = (amo.requests().len() - amo_before) as u32;
        let floor =
            yc_period * yc_calls.saturating_sub(1) + amo_period * amo_calls.saturating_sub(1);
        took.push(elapsed);
        floors.push(floor);
        above.push(elapsed.saturating_sub(floor));
    }
    let _ = stop_tx.send(true);
    let _ = running.await;
    println!(
        "webhook received -> CRM lead moved (YClients delete -> amoCRM lost), {} samples; \
         YClients paced at one call per {:.0} ms, amoCRM at one per {:.0} ms",
        took.len(),
        yc_period.as_secs_f64() * 1e3,
        amo_period.as_secs_f64() * 1e3
    );
    for (label, xs) in [
        ("latency", took),
        ("pacing floor", floors),
        ("zapis above the floor", above),
    ] {
        let mut xs = xs;
        xs.sort();
        println!(
            "  {label:<22} min {:>6.1} ms  p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
            xs.first().copied().unwrap_or_default().as_secs_f64() * 1e3,
            pct(&xs, 0.5).as_secs_f64() * 1e3,
            pct(&xs, 0.99).as_secs_f64() * 1e3,
            xs.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }
}

/// One call's period for YClients and for amoCRM, as their clients pace them.
fn periods(config: &BusinessSettings) -> (Duration, Duration) {
    let yc = config
        .booking
        .yclients
        .as_ref()
        .map_or(5, |y| y.rate_limit_per_second)
        .max(1);
    let amo = config
        .crm
        .as_ref()
        .and_then(|c| c.amocrm.as_ref())
        .map_or(6, |a| a.max_requests_per_second)
        .max(1);
    (
        Duration::from_micros(1_050_000 / u64::from(yc)),
        Duration::from_secs(1) / amo,
    )
}

/// One steady-state reconciliation poll: (schedule calls, reported calls, checked, wall, floor).
type Poll = (u64, usize, usize, Duration, Duration);

async fn reconcile_cost(user_token: bool) -> Poll {
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
    let (yc_period, _) = periods(&app.settings);
    let floor = yc_period * (calls.saturating_sub(1) as u32);
    (calls, report.calls, report.checked, wall, floor)
}

fn main() {
    let samples = std::env::var("ZAPIS_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let rounds: usize = std::env::var("ZAPIS_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _ = Utc::now().hour();
    rt.block_on(async {
        latency(samples).await;
        let mut runs: [Vec<Poll>; 2] = Default::default();
        for _ in 0..rounds {
            runs[0].push(reconcile_cost(true).await);
            runs[1].push(reconcile_cost(false).await);
        }
        println!("reconciliation, 100 upcoming bookings, one steady-state poll, {rounds} rounds interleaved");
        for (label, runs) in [
            ("admin list (user token)", &runs[0]),
            ("one read per record (no user token)", &runs[1]),
        ] {
            let mut walls: Vec<Duration> = runs.iter().map(|r| r.3).collect();
            let mut above: Vec<Duration> = runs.iter().map(|r| r.3.saturating_sub(r.4)).collect();
            walls.sort();
            above.sort();
            let (calls, reported, checked, _, floor) = runs[0];
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "  {label:<36} {calls} schedule API calls (reported {reported}), {checked} checked; \
                 wall min/median/max {:.0} / {:.0} / {:.0} ms; pacing floor {:.0} ms; zapis above it {:.0} / {:.0} / {:.0} ms",
                ms(walls[0]),
                ms(walls[walls.len() / 2]),
                ms(walls[walls.len() - 1]),
                ms(floor),
                ms(above[0]),
                ms(above[above.len() / 2]),
                ms(above[above.len() - 1]),
            );
        }
    });
}

/// A business id written in a bench, where a bad one is the bench's own mistake.
fn bid(id: &str) -> zapis::domain::BusinessId {
    zapis::domain::BusinessId::parse(id).expect("a bench's business id is valid")
}
