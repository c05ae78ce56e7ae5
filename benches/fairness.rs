//! One business's backlog beside another's bookings, in one store: a business (`busy`) has
//! 100,000 product jobs due at once — what a bulk import or a long outage of its CRM leaves
//! behind — and drains them through its own delivery engine as fast as the store allows
//! (handlers that do nothing: the most pressure one business can put on the store), while a
//! second business (`quiet`) takes a booking every 250 ms and a third (`idle`, like most
//! businesses of a deployment at any moment) has nothing to do.
//!
//! Figures, each min / median / max over rounds in which `alone` (no backlog) and `beside`
//! (the backlog draining) alternate, each on a fresh database (SQLite, and PostgreSQL in a
//! fresh schema — no planner statistics — when ZAPIS_TEST_POSTGRES_URL is set):
//! - quiet's bookings: p50 and p99 from enqueue to the handler running its job, with the
//!   shipped `[sync]` settings (batch 16, poll 1 s: the poll is the floor of this figure);
//! - an idle business's empty claim: how long one claim takes for a business with nothing due
//!   (every idle business's workers make one each poll), median of the window's claims;
//! - busy's running jobs at most, sampled through the window, beside its cap (workers ×
//!   batch per instance): a backlog never holds more than that.
//!
//! `cargo bench --bench fairness`; FAIRNESS_BACKLOG (100000), FAIRNESS_ROUNDS (3),
//! FAIRNESS_WINDOW_SECS (12).

#[path = "support/stores.rs"]
mod stores;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use stores::{backends, dispose, fresh};
use zapis::clock::{Clock, SystemClock};
use zapis::dialog::Reply;
use zapis::domain::{Channel, ChatRef, System};
use zapis::lifecycle::effects::{Operation, booking_job, notify_job};
use zapis::store::Store;
use zapis::store::test_support::raw_pool;
use zapis::sync::{
    Alerts, Delivered, DeliveryError, Engine, Job, JobContext, JobHandler, NewJob, Queue,
    SyncConfig,
};

const SYSTEMS: [System; 3] = [System::Yclients, System::AmoCrm, System::Telegram];

struct Noop;

#[async_trait]
impl JobHandler for Noop {
    async fn handle(&self, _job: &Job, _ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        Ok(Delivered::done())
    }
}

/// Records, per idempotency key, when the handler first ran the job.
#[derive(Default)]
struct Stamps(Mutex<HashMap<String, Instant>>);

#[async_trait]
impl JobHandler for Stamps {
    async fn handle(&self, job: &Job, _ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        if let Ok(mut seen) = self.0.lock() {
            seen.entry(job.idempotency_key.clone())
                .or_insert_with(Instant::now);
        }
        Ok(Delivered::done())
    }
}

/// The jobs one bot booking causes: the schedule, the CRM and the client's reminder.
fn booking(business: &str, i: usize) -> Vec<NewJob> {
    let business = &bid(business);
    let at = chrono::Utc::now();
    let id = zapis::domain::BookingId::generate();
    let chat = ChatRef::new(Channel::Telegram, format!("{}", 700_000_000 + i));
    let mut jobs: Vec<NewJob> = [System::Yclients, System::AmoCrm]
        .into_iter()
        .map(|system| booking_job(business, system, Operation::BookingCreated, &id, None, at))
        .collect();
    jobs.extend(notify_job(
        business,
        &chat,
        &format!("reminder:{id}"),
        Reply {
            text: format!("Напоминаем: завтра в 14:30 вы записаны на стрижку к Ольге. №{i}"),
            buttons: Vec::new(),
            request_contact: false,
            edit: false,
        },
    ));
    jobs
}

fn engine(store: &Store, business: &str, handler: Arc<dyn JobHandler>) -> Arc<Engine> {
    let business = &bid(business);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut engine = Engine::new(
        store.clone(),
        clock,
        SyncConfig::default(),
        Alerts::default(),
        business,
    );
    for system in SYSTEMS {
        engine.register(system, handler.clone());
    }
    Arc::new(engine)
}

struct Round {
    p50: f64,
    p99: f64,
    idle_claim_ms: f64,
    busy_running_max: i64,
    busy_left: i64,
}

async fn round(store: &Store, backlog: usize, window: Duration) -> Round {
    let queue = Queue::new(store.clone());
    let clock = SystemClock;
    if backlog > 0 {
        let mut jobs = Vec::with_capacity(backlog + 3);
        let mut i = 0;
        while jobs.len() < backlog {
            jobs.extend(booking("busy", i));
            i += 1;
        }
        jobs.truncate(backlog);
        for chunk in jobs.chunks(5_000) {
            queue
                .enqueue_batch(chunk, clock.now())
                .await
                .expect("backlog enqueued");
        }
    }
    let stamps = Arc::new(Stamps::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let busy = tokio::spawn(engine(store, "busy", Arc::new(Noop)).run(stopped.clone()));
    let quiet = tokio::spawn(engine(store, "quiet", stamps.clone()).run(stopped.clone()));

    let started = Instant::now();
    let mut enqueued: HashMap<String, Instant> = HashMap::new();
    let mut claims = Vec::new();
    let mut running_max = 0i64;
    let systems: Vec<System> = SYSTEMS.to_vec();
    let idle = vec!["idle".to_string()];
    let mut i = 0;
    while started.elapsed() < window {
        for job in booking("quiet", i) {
            queue
                .enqueue_batch(std::slice::from_ref(&job), clock.now())
                .await
                .expect("booking enqueued");
            enqueued.insert(job.idempotency_key.clone(), Instant::now());
        }
        i += 1;
        let t = Instant::now();
        let got = queue
            .claim(
                "idle-w",
                &idle,
                &systems,
                SyncConfig::default().batch,
                Duration::from_secs(60),
                clock.now(),
            )
            .await
            .expect("idle claim");
        assert!(got.is_empty(), "the idle business has nothing to claim");
        claims.push(t.elapsed().as_secs_f64() * 1000.0);
        let running: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sync_jobs WHERE business_id = 'busy' AND state = 'running'",
        )
        .fetch_one(raw_pool(store))
        .await
        .expect("running count");
        running_max = running_max.max(running);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Every booking of the window is delivered before its latency is read.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = stamps.0.lock().map(|s| s.len()).unwrap_or(0);
        if done >= enqueued.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let busy_left: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sync_jobs WHERE business_id = 'busy' AND state <> 'done'",
    )
    .fetch_one(raw_pool(store))
    .await
    .expect("backlog left");
    let _ = stop.send(true);
    busy.await.expect("busy task").expect("busy engine");
    quiet.await.expect("quiet task").expect("quiet engine");

    let seen = stamps.0.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(
        seen.len(),
        enqueued.len(),
        "every booking of the quiet business was delivered"
    );
    let mut waits: Vec<f64> = enqueued
        .iter()
        .filter_map(|(key, at)| Some(seen.get(key)?.duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    waits.sort_by(|a, b| a.total_cmp(b));
    claims.sort_by(|a, b| a.total_cmp(b));
    Round {
        p50: percentile(&waits, 0.50),
        p99: percentile(&waits, 0.99),
        idle_claim_ms: percentile(&claims, 0.50),
        busy_running_max: running_max,
        busy_left,
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at]
}

fn spread(xs: &[f64]) -> String {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => "-".into(),
        n => format!("{:>7.1} / {:>7.1} / {:>7.1}", v[0], v[n / 2], v[n - 1]),
    }
}

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let backlog = env_or("FAIRNESS_BACKLOG", 100_000);
    let rounds = env_or("FAIRNESS_ROUNDS", 3).max(1);
    let window = Duration::from_secs(env_or("FAIRNESS_WINDOW_SECS", 12) as u64);
    let shipped = SyncConfig::default();
    let cap = shipped.workers * shipped.batch;
    let dir = tempfile::tempdir().expect("tempdir");
    let backends = backends();
    println!(
        "backlog {backlog} jobs of one business; quiet business books every 250 ms for {window:?}; \
         shipped [sync]: {} workers, batch {}, poll {:?}; {rounds} rounds, alone/beside alternating",
        shipped.workers, shipped.batch, shipped.poll
    );
    println!("figures: min / median / max over rounds");
    let mut run = 0;
    for backend in backends {
        let mut alone: Vec<Round> = Vec::new();
        let mut beside: Vec<Round> = Vec::new();
        for r in 0..rounds {
            // Alternate which case runs first so neither always gets the cold cache.
            let order = if r % 2 == 0 {
                [0, backlog]
            } else {
                [backlog, 0]
            };
            for jobs in order {
                run += 1;
                let store = fresh(backend, &dir.path().join(format!("fair{run}.db"))).await;
                let figures = round(&store, jobs, window).await;
                dispose(store).await;
                if jobs == 0 {
                    alone.push(figures);
                } else {
                    beside.push(figures);
                }
            }
        }
        for (name, rs) in [("alone", &alone), ("beside", &beside)] {
            let col = |f: fn(&Round) -> f64| spread(&rs.iter().map(f).collect::<Vec<_>>());
            println!(
                "{backend:<8} {name:<6} quiet booking p50 ms {}   p99 ms {}   idle claim ms {}   \
                 busy running max {} (cap {cap}), busy left after window {}",
                col(|r| r.p50),
                col(|r| r.p99),
                col(|r| r.idle_claim_ms),
                rs.iter().map(|r| r.busy_running_max).max().unwrap_or(0),
                rs.iter().map(|r| r.busy_left).min().unwrap_or(0),
            );
        }
    }
}

/// A business id written in a bench, where a bad one is the bench's own mistake.
fn bid(id: &str) -> zapis::domain::BusinessId {
    zapis::domain::BusinessId::parse(id).expect("a bench's business id is valid")
}
