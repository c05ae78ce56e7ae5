//! Queue throughput: enqueue, claim, run, complete (with the journal row every attempt
//! writes), on SQLite and — when ZAPIS_TEST_POSTGRES_URL is set — PostgreSQL in a fresh
//! schema (a new deployment: the planner has no statistics yet), with 1 and 4 workers.
//! `cargo bench --bench queue`; ZAPIS_BENCH_JOBS sets the job count (default 20000),
//! ZAPIS_BENCH_ROUNDS the rounds (default 3), ZAPIS_BENCH_APALIS_SQLITE_JOBS the count for
//! apalis on SQLite (default 2000: it drains at about a hundred jobs a second).
//! ZAPIS_BENCH_ONLY narrows a run to what its comma-separated words name among the backends
//! (`sqlite`, `postgres`), worker counts (`1`, `4`) and contenders (`product`, `bare`,
//! `apalis`, `floor`); a kind it names nothing of stays whole.
//!
//! Contenders, interleaved within each round, each on a fresh database:
//! - `zapis product`: the product's jobs — per booking a `booking_created` for the schedule
//!   and for the CRM, a reminder notice for the chat (≈ 400 B of JSON), and for every fourth
//!   booking a `booking_rescheduled` for both systems — with their ordering keys
//!   (`booking:<id>`, `chat:<key>`) and the shipped `[sync]` settings (batch 16, poll 1 s);
//!   each `booking_created` answers with the external id it made, as the real handlers do;
//! - `zapis bare`: no-op jobs with a `{"n": i}` payload and no ordering key, batch 100, poll
//!   5 ms (the shape this bench used to run);
//! - `apalis`: a peer queue (apalis 1.0: apalis-sqlite / apalis-postgres) on the product's
//!   payloads, batch 16, 5 ms poll (its interval poll fetches only on ticks, so a 1 s poll
//!   would cap it at 16 jobs a second per worker); it has no ordering keys;
//! - `floor`: a bare INSERT + batched DELETE … RETURNING loop, batch 16, the floor no queue on
//!   that database can beat.
//!
//! Every contender gets its workload pushed in one bulk call, then drained by 1 or 4 workers;
//! "drained" means every job has been handled (counted in memory) and then the database says
//! no job is left unfinished (polled every 5 ms from then on), so each figure includes
//! persisting the last completion. Figures: end-to-end jobs/s (enqueue + drain), min /
//! median / max over the rounds.
//!
//! apalis settings otherwise: 4 workers = 4 `WorkerBuilder` workers on clones of one storage
//! (each fetches its own batches, as our 4 worker loops do), defaults otherwise (`lock_tasks`
//! and `persist_results` on: each task is marked Running before it runs and its result
//! stored, its counterpart of our running state and journal row). Pushed with
//! `TaskSink::push_bulk` (one transaction). On SQLite its pool gets our store's settings
//! (WAL, `synchronous = NORMAL`, 10 s busy timeout, 8 connections); `SqliteStorage::setup`
//! also sets `synchronous = OFF` on the connection it runs on, so setup runs on a pool of its
//! own that is closed before the measurement. On PostgreSQL it keeps its `apalis` schema in
//! the same database (dropped and recreated per run) on an 8-connection pool like ours.

#[path = "support/stores.rs"]
mod stores;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::{BackendExt, BoxDynError, TaskSink, WorkerBuilder, WorkerContext};
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use async_trait::async_trait;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use stores::{backends, dispose, fresh};
use zapis::clock::{Clock, SystemClock};
use zapis::dialog::{Button, Reply};
use zapis::domain::{Channel, ChatRef, System};
use zapis::lifecycle::effects::{Operation, booking_job, notify_job};
use zapis::store::test_support::raw_pool;
use zapis::store::{Backend, Store};
use zapis::sync::{
    Alerts, Delivered, DeliveryError, Engine, Job, JobContext, JobHandler, NewJob, Queue,
    SyncConfig,
};

struct Noop;

#[async_trait]
impl JobHandler for Noop {
    async fn handle(&self, job: &Job, _ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        RAN.fetch_add(1, Ordering::Relaxed);
        // A created booking is linked to what it made there (the record, the lead), as the
        // schedule's and the CRM's handlers link theirs: the completion records the link.
        if job.operation == Operation::BookingCreated.as_str()
            && let Some(booking) = job.payload.get("booking_id").and_then(|b| b.as_str())
        {
            return Ok(Delivered::linked(
                "booking",
                booking,
                &format!("ext-{}", job.id),
            ));
        }
        Ok(Delivered::done())
    }
}

/// Jobs zapis's handler has run in the current measurement.
static RAN: AtomicUsize = AtomicUsize::new(0);

/// Waits until `ran` says every job has been handled, checking memory only: a count of
/// unfinished jobs every 5 ms from the start would run beside the workers on the same
/// database (on a table of 20,000 jobs it takes as long as the interval) and measure the poll.
async fn handled_all(ran: &AtomicUsize, n: usize) {
    while ran.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Claim batch of the bare shape.
const BARE_BATCH: usize = 100;

/// The shipped claim batch, which the peer and the floor use too.
fn product_batch() -> usize {
    SyncConfig::default().batch
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The product's jobs, ordering keys and shipped settings.
    Product,
    /// No-op jobs without ordering keys, batch 100, 5 ms poll.
    Bare,
}

fn bare_jobs(n: usize) -> Vec<NewJob> {
    (0..n)
        .map(|i| NewJob {
            business_id: bid("bench"),
            system: System::Http,
            operation: "op".into(),
            payload: serde_json::json!({ "n": i }),
            idempotency_key: format!("k{i}"),
            ordering_key: None,
        })
        .collect()
}

/// The reminder a client gets the day before, as `reminders` queues it.
fn reminder(i: usize) -> Reply {
    Reply {
        text: format!(
            "Напоминаем: завтра, 12 декабря, в 14:30 вы записаны на «Окрашивание в одну тон \
             + укладка» к мастеру Ольге Петровой. Адрес: Екатеринбург, ул. Ленина, 1, \
             вход со двора. Если планы изменились, перенесите или отмените запись. №{i}"
        ),
        buttons: vec![vec![
            Button {
                label: "Приду".into(),
                data: format!("v1:c:{:032x}", i),
            },
            Button {
                label: "Отменить".into(),
                data: format!("v1:x:{:032x}", i),
            },
        ]],
        request_contact: false,
        edit: false,
    }
}

/// The jobs a stream of bot bookings causes, `n` of them.
fn product_jobs(n: usize) -> Vec<NewJob> {
    let at = chrono::Utc::now();
    let mut out = Vec::with_capacity(n + 4);
    let mut i = 0;
    while out.len() < n {
        let booking = zapis::domain::BookingId::generate();
        let chat = ChatRef::new(Channel::Telegram, format!("{}", 700_000_000 + i));
        for system in [System::Yclients, System::AmoCrm] {
            out.push(booking_job(
                &bid("bench"),
                system,
                Operation::BookingCreated,
                &booking,
                None,
                at,
            ));
        }
        out.extend(notify_job(
            &bid("bench"),
            &chat,
            &format!("reminder:{booking}"),
            reminder(i),
        ));
        if i % 4 == 3 {
            for system in [System::Yclients, System::AmoCrm] {
                out.push(booking_job(
                    &bid("bench"),
                    system,
                    Operation::BookingRescheduled,
                    &booking,
                    Some("client"),
                    at,
                ));
            }
        }
        i += 1;
    }
    out.truncate(n);
    out
}

fn payloads(jobs: &[NewJob]) -> Vec<serde_json::Value> {
    jobs.iter().map(|j| j.payload.clone()).collect()
}

#[derive(Clone, Copy)]
struct Figures {
    enqueue: f64,
    drain: f64,
    total: f64,
}

async fn engine_run(store: &Store, shape: Shape, n: usize, workers: usize) -> Figures {
    let queue = Queue::new(store.clone());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (batch, config) = match shape {
        Shape::Bare => (
            bare_jobs(n),
            SyncConfig {
                workers,
                batch: BARE_BATCH,
                poll: Duration::from_millis(5),
                lease: Duration::from_secs(60),
                ..SyncConfig::default()
            },
        ),
        Shape::Product => (
            product_jobs(n),
            SyncConfig {
                workers,
                ..SyncConfig::default()
            },
        ),
    };
    let started = Instant::now();
    queue
        .enqueue_batch(&batch, clock.now())
        .await
        .expect("enqueue");
    let enqueued = started.elapsed();
    let mut engine = Engine::new(
        store.clone(),
        clock,
        config,
        Alerts::default(),
        &bid("bench"),
    );
    for system in [
        System::Http,
        System::Yclients,
        System::AmoCrm,
        System::Telegram,
    ] {
        engine.register(system, Arc::new(Noop));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    RAN.store(0, Ordering::Relaxed);
    let drain_start = Instant::now();
    let running = tokio::spawn(Arc::new(engine).run(stopped));
    handled_all(&RAN, n).await;
    // Then until the store has the last completion.
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sync_jobs WHERE state IN ('pending', 'running')",
        )
        .fetch_one(raw_pool(store))
        .await
        .expect("count");
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = drain_start.elapsed();
    let _ = stop.send(true);
    running.await.expect("engine task").expect("engine");
    let journal: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sync_journal")
        .fetch_one(raw_pool(store))
        .await
        .expect("journal count");
    assert_eq!(journal as usize, n, "one journal row per job");
    Figures {
        enqueue: n as f64 / enqueued.as_secs_f64(),
        drain: n as f64 / drained.as_secs_f64(),
        total: n as f64 / (enqueued + drained).as_secs_f64(),
    }
}

/// Jobs the peer's handler has run in the current measurement.
static PEER_RAN: AtomicUsize = AtomicUsize::new(0);

async fn peer_noop(_job: serde_json::Value) -> Result<(), BoxDynError> {
    PEER_RAN.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

type PeerWorker = (
    WorkerContext,
    tokio::task::JoinHandle<Result<(), apalis::prelude::WorkerError>>,
);

/// Waits until `unfinished` reports no job left, then stops the workers; returns the drain
/// time counted from `drain_start`, or why a worker stopped with jobs left.
async fn peer_finish<F, Fut>(
    n: usize,
    drain_start: Instant,
    mut workers: Vec<PeerWorker>,
    unfinished: F,
) -> Result<Duration, String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = i64>,
{
    // Every job handled, then until the store has the last completion; a worker that stops
    // early ends the wait with an error either way.
    loop {
        let handled = PEER_RAN.load(Ordering::Relaxed) >= n;
        if handled && unfinished().await == 0 {
            break;
        }
        if let Some(i) = workers
            .iter()
            .position(|(_, running)| running.is_finished())
        {
            let (_, running) = workers.swap_remove(i);
            let outcome = running.await.expect("peer worker task");
            for (ctx, running) in workers {
                let _ = ctx.stop();
                let _ = running.await;
            }
            return Err(match outcome {
                Err(e) => format!("a worker stopped with jobs left: {e}"),
                Ok(()) => "a worker stopped with jobs left".to_string(),
            });
        }
        let wait = if handled { 5 } else { 1 };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    let drained = drain_start.elapsed();
    for (ctx, _) in &workers {
        ctx.stop().expect("stop peer worker");
    }
    for (_, running) in workers {
        running
            .await
            .expect("peer worker task")
            .expect("peer worker");
    }
    assert_eq!(
        PEER_RAN.load(Ordering::Relaxed),
        n,
        "the peer ran each job once"
    );
    Ok(drained)
}

async fn apalis_sqlite_run(
    file: &std::path::Path,
    n: usize,
    workers: usize,
) -> Result<Figures, String> {
    // A file of its own beside ours (same disk, same pragmas): apalis' migrator refuses a
    // database whose migration table lists versions it does not know, such as ours.
    let file = file.with_extension("apalis.db");
    let options = SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
    // setup() leaves `synchronous = OFF` on the connection it ran on: keep that one out.
    let setup = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .expect("apalis sqlite setup pool");
    SqliteStorage::setup(&setup)
        .await
        .expect("apalis sqlite setup");
    setup.close().await;
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .expect("apalis sqlite pool");
    let config = apalis_sqlite::Config::default()
        .queue("bench")
        .batch_size(product_batch());
    let mut storage = SqliteStorage::new(&pool).with_config(config);
    let started = Instant::now();
    storage
        .push_bulk(payloads(&product_jobs(n)))
        .await
        .expect("apalis sqlite push");
    let enqueued = started.elapsed();
    PEER_RAN.store(0, Ordering::Relaxed);
    let drain_start = Instant::now();
    let running = (0..workers)
        .map(|i| {
            let ctx = WorkerContext::new(&format!("bench-{i}"));
            let worker = WorkerBuilder::new(&ctx)
                .backend(storage.clone().poll_with_interval(Duration::from_millis(5)))
                .build(peer_noop);
            (ctx, tokio::spawn(worker.run()))
        })
        .collect();
    let drained = peer_finish(n, drain_start, running, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM Jobs WHERE job_type = 'bench' AND status <> 'Done'",
        )
        .fetch_one(&pool)
        .await
        .expect("apalis sqlite count")
    })
    .await;
    pool.close().await;
    let drained = drained?;
    Ok(Figures {
        enqueue: n as f64 / enqueued.as_secs_f64(),
        drain: n as f64 / drained.as_secs_f64(),
        total: n as f64 / (enqueued + drained).as_secs_f64(),
    })
}

async fn apalis_postgres_run(n: usize, workers: usize) -> Result<Figures, String> {
    let url = std::env::var("ZAPIS_TEST_POSTGRES_URL").expect("postgres url");
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await
        .expect("apalis postgres pool");
    // A fresh schema per run, as ours gets.
    sqlx::query("DROP SCHEMA IF EXISTS apalis CASCADE")
        .execute(&pool)
        .await
        .expect("drop apalis schema");
    PostgresStorage::setup(&pool)
        .await
        .expect("apalis postgres setup");
    let config = apalis_postgres::Config::default()
        .queue("bench")
        .batch_size(product_batch());
    let mut storage = PostgresStorage::new(&pool).with_config(config);
    let started = Instant::now();
    storage
        .push_bulk(payloads(&product_jobs(n)))
        .await
        .expect("apalis postgres push");
    let enqueued = started.elapsed();
    PEER_RAN.store(0, Ordering::Relaxed);
    let drain_start = Instant::now();
    let running = (0..workers)
        .map(|i| {
            let ctx = WorkerContext::new(&format!("bench-{i}"));
            let worker = WorkerBuilder::new(&ctx)
                .backend(storage.clone().poll_with_interval(Duration::from_millis(5)))
                .build(peer_noop);
            (ctx, tokio::spawn(worker.run()))
        })
        .collect();
    let drained = peer_finish(n, drain_start, running, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'bench' AND status <> 'Done'",
        )
        .fetch_one(&pool)
        .await
        .expect("apalis postgres count")
    })
    .await;
    pool.close().await;
    let drained = drained?;
    Ok(Figures {
        enqueue: n as f64 / enqueued.as_secs_f64(),
        drain: n as f64 / drained.as_secs_f64(),
        total: n as f64 / (enqueued + drained).as_secs_f64(),
    })
}

/// The floor: multi-row INSERTs, then workers DELETE … RETURNING batches of the same size.
async fn floor_run(store: &Store, n: usize, workers: usize) -> Figures {
    let payloads = payloads(&product_jobs(n));
    let (ddl, lock) = match store.backend() {
        Backend::Sqlite => (
            "CREATE TABLE bench_floor (id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL)",
            "",
        ),
        Backend::Postgres => (
            "CREATE TABLE bench_floor (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL)",
            "FOR UPDATE SKIP LOCKED",
        ),
    };
    sqlx::query(ddl)
        .execute(raw_pool(store))
        .await
        .expect("floor table");
    let started = Instant::now();
    let mut tx = raw_pool(store).begin().await.expect("begin");
    for chunk in (0..n).collect::<Vec<_>>().chunks(400) {
        let values: Vec<String> = (1..=chunk.len()).map(|i| format!("(${i})")).collect();
        let sql = format!(
            "INSERT INTO bench_floor (payload) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for &i in chunk {
            q = q.bind(payloads[i].to_string());
        }
        q.execute(&mut *tx).await.expect("insert");
    }
    tx.commit().await.expect("commit");
    let enqueued = started.elapsed();
    let drain_start = Instant::now();
    let batch = product_batch();
    let sql = format!(
        "DELETE FROM bench_floor WHERE id IN \
         (SELECT id FROM bench_floor ORDER BY id LIMIT {batch} {lock}) RETURNING id"
    );
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (store, sql) = (store.clone(), sql.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_all(raw_pool(&store))
                    .await
                    .expect("delete");
                if ids.is_empty() {
                    break;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("floor worker");
    }
    let drained = drain_start.elapsed();
    Figures {
        enqueue: n as f64 / enqueued.as_secs_f64(),
        drain: n as f64 / drained.as_secs_f64(),
        total: n as f64 / (enqueued + drained).as_secs_f64(),
    }
}

fn spread(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => (f64::NAN, f64::NAN, f64::NAN),
        n => (v[0], v[n / 2], v[n - 1]),
    }
}

const CONTENDERS: [&str; 4] = ["zapis product", "zapis bare", "apalis", "floor"];

#[tokio::main]
async fn main() {
    // RUST_LOG=sqlx=warn shows slow statements.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let n: usize = std::env::var("ZAPIS_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rounds: usize = std::env::var("ZAPIS_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    // apalis-sqlite drains at about a hundred jobs a second: fewer jobs keep a run short.
    let peer_sqlite_n: usize = std::env::var("ZAPIS_BENCH_APALIS_SQLITE_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
        .min(n);
    let only = Only::from_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let backends: Vec<&str> = only.keep(backends());
    let worker_counts = only.keep(vec!["1", "4"]);
    let contenders: Vec<usize> = (0..CONTENDERS.len())
        .filter(|&c| only.keep(CONTENDERS.to_vec()).contains(&CONTENDERS[c]))
        .collect();
    let shipped = SyncConfig::default();
    println!(
        "{n} jobs a run; product shape with shipped settings (batch {}, poll {:?}); {rounds} rounds, \
         contenders interleaved within each round",
        shipped.batch, shipped.poll
    );
    println!("end-to-end jobs/s (enqueue + claim, run, complete), min / median / max");
    println!("(apalis on SQLite runs {peer_sqlite_n} jobs: it drains at about a hundred a second)");
    let mut run = 0;
    let mut summary = Vec::new();
    for backend in backends {
        for workers in worker_counts
            .iter()
            .map(|w| w.parse::<usize>().expect("1 or 4"))
        {
            // Per contender: end-to-end rates, and the last error if a run failed.
            let mut rates: Vec<Vec<f64>> = vec![Vec::new(); CONTENDERS.len()];
            let mut failed: Vec<Option<String>> = vec![None; CONTENDERS.len()];
            let mut drains: Vec<Vec<f64>> = vec![Vec::new(); CONTENDERS.len()];
            let mut enqueues: Vec<Vec<f64>> = vec![Vec::new(); CONTENDERS.len()];
            for round in 0..rounds {
                // Rotate the order so no contender always runs first on a cold cache.
                for k in 0..contenders.len() {
                    let c = contenders[(k + round) % contenders.len()];
                    run += 1;
                    let file = dir.path().join(format!("bench{run}.db"));
                    let store = fresh(backend, &file).await;
                    let figures = match CONTENDERS[c] {
                        "zapis product" => Ok(engine_run(&store, Shape::Product, n, workers).await),
                        "zapis bare" => Ok(engine_run(&store, Shape::Bare, n, workers).await),
                        "apalis" => match backend {
                            "sqlite" => apalis_sqlite_run(&file, peer_sqlite_n, workers).await,
                            _ => apalis_postgres_run(n, workers).await,
                        },
                        _ => Ok(floor_run(&store, n, workers).await),
                    };
                    dispose(store).await;
                    match figures {
                        Ok(f) => {
                            rates[c].push(f.total);
                            drains[c].push(f.drain);
                            enqueues[c].push(f.enqueue);
                        }
                        Err(e) => failed[c] = Some(e),
                    }
                }
            }
            for (c, name) in CONTENDERS.iter().enumerate() {
                if !contenders.contains(&c) {
                    continue;
                }
                let (lo, mid, hi) = spread(&rates[c]);
                let (_, drain, _) = spread(&drains[c]);
                let (_, enqueue, _) = spread(&enqueues[c]);
                let note = failed[c]
                    .as_ref()
                    .map(|e| {
                        format!(
                            "  ({} of {rounds} runs failed: {e})",
                            rounds - rates[c].len()
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "{backend:<8} {workers} worker(s)  {name:<13} {lo:>8.0} / {mid:>8.0} / {hi:>8.0}   (medians: enqueue {enqueue:>7.0}, drain {drain:>7.0}){note}"
                );
            }
            let median = |c: usize| spread(&rates[c]).1;
            summary.push((backend, workers, median(0), median(1), median(2), median(3)));
        }
    }
    println!();
    println!(
        "medians, jobs/s           product     bare   apalis    floor   product/apalis product/floor"
    );
    for (backend, workers, product, bare, peer, floor) in summary {
        println!(
            "{backend:<8} {workers} worker(s) {product:>9.0} {bare:>8.0} {peer:>8.0} {floor:>8.0}   {:>14.2} {:>13.2}",
            product / peer,
            product / floor
        );
    }
}

/// What ZAPIS_BENCH_ONLY keeps of a run.
struct Only(Vec<String>);

impl Only {
    fn from_env() -> Only {
        Only(
            std::env::var("ZAPIS_BENCH_ONLY")
                .unwrap_or_default()
                .split(',')
                .map(|w| w.trim().to_string())
                .filter(|w| !w.is_empty())
                .collect(),
        )
    }

    /// The items whose name (or its last word: `zapis product` is `product`) is among the
    /// words, or all of them when the words name none.
    fn keep<'a>(&self, items: Vec<&'a str>) -> Vec<&'a str> {
        let named = |item: &&str| {
            let last = item.rsplit(' ').next().unwrap_or(item);
            self.0.iter().any(|w| w == item || w == last)
        };
        if items.iter().any(named) {
            items.into_iter().filter(named).collect()
        } else {
            items
        }
    }
}

/// A business id written in a bench, where a bad one is the bench's own mistake.
fn bid(id: &str) -> zapis::domain::BusinessId {
    zapis::domain::BusinessId::parse(id).expect("a bench's business id is valid")
}
