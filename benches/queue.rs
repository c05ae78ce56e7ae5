//! Queue throughput with no-op jobs: enqueue, claim, run, complete (with the journal row every
//! attempt writes), on SQLite and — when ZAPIS_TEST_POSTGRES_URL is set — PostgreSQL, with 1
//! and 4 workers. The same volume runs, on the same database, through a peer queue (apalis 1.0:
//! apalis-sqlite / apalis-postgres) and through a bare INSERT + batched DELETE … RETURNING loop,
//! the floor no queue on that database can beat; the ratios say what each queue's bookkeeping
//! costs. `cargo bench --bench queue`; ZAPIS_BENCH_JOBS sets the job count (default 20000).
//!
//! Every contender gets the same workload: N jobs with a small JSON payload pushed in one bulk
//! call, then drained by 1 or 4 workers; "drained" means the database says no job is left
//! unfinished (polled every 5 ms), so each figure includes persisting the last completion.
//!
//! apalis settings, chosen to match ours: `Config::batch_size(100)` (our claim batch), a 5 ms
//! poll interval (`poll_with_interval`, our `poll`), 4 workers = 4 `WorkerBuilder` workers on
//! clones of one storage (each fetches its own batches, as our 4 worker loops do), defaults
//! otherwise (`lock_tasks` and `persist_results` on: each task is marked Running before it runs
//! and its result stored, its counterpart of our running state and journal row). Pushed with
//! `TaskSink::push_bulk` (one transaction). On SQLite its pool gets our store's settings
//! (WAL, `synchronous = NORMAL`, 10 s busy timeout, 8 connections); `SqliteStorage::setup`
//! also sets `synchronous = OFF` on the connection it runs on, so setup runs on a pool of its
//! own that is closed before the measurement. On PostgreSQL it keeps its `apalis` schema in
//! the same database (dropped and recreated per run) on an 8-connection pool like ours.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::{BackendExt, BoxDynError, TaskSink, WorkerBuilder, WorkerContext};
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use async_trait::async_trait;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use zapis::clock::{Clock, SystemClock};
use zapis::store::{Backend, Store};
use zapis::sync::{
    Alerts, Delivered, DeliveryError, Engine, Job, JobContext, JobHandler, NewJob, Queue,
    SyncConfig,
};

struct Noop;

#[async_trait]
impl JobHandler for Noop {
    async fn handle(&self, _job: &Job, _ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        Ok(Delivered::done())
    }
}

const BATCH: usize = 100;

fn jobs(n: usize) -> Vec<NewJob> {
    (0..n)
        .map(|i| NewJob {
            business_id: "bench".into(),
            system: "noop".into(),
            operation: "op".into(),
            payload: serde_json::json!({ "n": i }),
            idempotency_key: format!("k{i}"),
            ordering_key: None,
        })
        .collect()
}

#[derive(Clone, Copy)]
struct Figures {
    enqueue: f64,
    drain: f64,
    total: f64,
}

async fn engine_run(store: &Store, n: usize, workers: usize) -> Figures {
    let queue = Queue::new(store.clone());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let batch = jobs(n);
    let started = Instant::now();
    queue
        .enqueue_batch(&batch, clock.now())
        .await
        .expect("enqueue");
    let enqueued = started.elapsed();
    let config = SyncConfig {
        workers,
        batch: BATCH,
        poll: Duration::from_millis(5),
        lease: Duration::from_secs(60),
        ..SyncConfig::default()
    };
    let mut engine = Engine::new(store.clone(), clock, config, Alerts::default(), "bench");
    engine.register("noop", Arc::new(Noop));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let drain_start = Instant::now();
    let running = tokio::spawn(Arc::new(engine).run(stopped));
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sync_jobs WHERE state IN ('pending', 'running')",
        )
        .fetch_one(store.pool())
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
        .fetch_one(store.pool())
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

fn peer_payloads(n: usize) -> Vec<serde_json::Value> {
    (0..n).map(|i| serde_json::json!({ "n": i })).collect()
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
    while unfinished().await > 0 {
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
        tokio::time::sleep(Duration::from_millis(5)).await;
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
        .batch_size(BATCH);
    let mut storage = SqliteStorage::new(&pool).with_config(config);
    let started = Instant::now();
    storage
        .push_bulk(peer_payloads(n))
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
        .batch_size(BATCH);
    let mut storage = PostgresStorage::new(&pool).with_config(config);
    let started = Instant::now();
    storage
        .push_bulk(peer_payloads(n))
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
        .execute(store.pool())
        .await
        .expect("floor table");
    let started = Instant::now();
    let mut tx = store.pool().begin().await.expect("begin");
    for chunk in (0..n).collect::<Vec<_>>().chunks(400) {
        let values: Vec<String> = (1..=chunk.len()).map(|i| format!("(${i})")).collect();
        let sql = format!(
            "INSERT INTO bench_floor (payload) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in chunk {
            q = q.bind(serde_json::json!({ "n": i }).to_string());
        }
        q.execute(&mut *tx).await.expect("insert");
    }
    tx.commit().await.expect("commit");
    let enqueued = started.elapsed();
    let drain_start = Instant::now();
    let sql = format!(
        "DELETE FROM bench_floor WHERE id IN \
         (SELECT id FROM bench_floor ORDER BY id LIMIT {BATCH} {lock}) RETURNING id"
    );
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (store, sql) = (store.clone(), sql.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_all(store.pool())
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

/// The faster of two runs, by end-to-end rate.
fn best(a: Option<Figures>, b: Figures) -> Option<Figures> {
    match a {
        Some(a) if a.total >= b.total => Some(a),
        _ => Some(b),
    }
}

async fn fresh(backend: &str, file: &std::path::Path) -> Store {
    match backend {
        "sqlite" => Store::connect(&format!("sqlite://{}", file.display()))
            .await
            .expect("sqlite store"),
        _ => {
            let base = std::env::var("ZAPIS_TEST_POSTGRES_URL").expect("postgres url");
            zapis::store::test_support::fresh_postgres(&base).await
        }
    }
}

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
    let dir = tempfile::tempdir().expect("tempdir");
    let mut backends = vec!["sqlite"];
    if std::env::var("ZAPIS_TEST_POSTGRES_URL").is_ok() {
        backends.push("postgres");
    } else {
        println!("PostgreSQL skipped: ZAPIS_TEST_POSTGRES_URL is not set");
    }
    println!(
        "{n} no-op jobs, claim batch {BATCH}; jobs/s (enqueue | claim+run+complete | end to end)"
    );
    let rounds: usize = std::env::var("ZAPIS_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .max(1);
    println!("best of {rounds} rounds, contenders interleaved within each round");
    let mut rows = Vec::new();
    let mut run = 0;
    for backend in backends {
        for workers in [1, 4] {
            let (mut ours, mut peer, mut floor): (
                Option<Figures>,
                Result<Figures, String>,
                Option<Figures>,
            ) = (None, Err("not run".into()), None);
            for _ in 0..rounds {
                run += 1;
                let file = dir.path().join(format!("bench{run}.db"));
                let store = fresh(backend, &file).await;
                ours = best(ours, engine_run(&store, n, workers).await);
                let this_peer = match backend {
                    "sqlite" => apalis_sqlite_run(&file, n, workers).await,
                    _ => apalis_postgres_run(n, workers).await,
                };
                peer = match (peer, this_peer) {
                    (Ok(a), Ok(b)) => Ok(best(Some(a), b).unwrap_or(b)),
                    (_, Ok(b)) => Ok(b),
                    (Ok(a), Err(_)) => Ok(a),
                    (Err(_), Err(e)) => Err(e),
                };
                floor = best(floor, floor_run(&store, n, workers).await);
                store.close().await;
            }
            let (Some(ours), Some(floor)) = (ours, floor) else {
                continue;
            };
            for (name, f) in [
                ("zapis", Ok(&ours)),
                ("apalis", peer.as_ref()),
                ("floor", Ok(&floor)),
            ] {
                match f {
                    Ok(f) => println!(
                        "{backend:<8} {workers} worker(s)  {name:<6} {:>8.0} | {:>8.0} | {:>8.0}",
                        f.enqueue, f.drain, f.total
                    ),
                    Err(e) => println!("{backend:<8} {workers} worker(s)  {name:<6} failed: {e}"),
                }
            }
            rows.push((
                backend,
                workers,
                ours.total,
                peer.map(|f| f.total).unwrap_or(f64::NAN),
                floor.total,
            ));
        }
    }
    println!();
    println!(
        "end to end jobs/s    {:>8} {:>8} {:>8}   zapis/apalis zapis/floor apalis/floor",
        "zapis", "apalis", "floor"
    );
    for (backend, workers, ours, peer, floor) in rows {
        println!(
            "{backend:<8} {workers} worker(s) {ours:>8.0} {peer:>8.0} {floor:>8.0}   \
             {:>12.2} {:>11.2} {:>12.2}",
            ours / peer,
            ours / floor,
            peer / floor
        );
    }
}
