//! Queue throughput with no-op jobs: enqueue, claim, run, complete (with the journal row every
//! attempt writes), on SQLite and — when ZAPIS_TEST_POSTGRES_URL is set — PostgreSQL, with 1
//! and 4 workers. The same volume through a bare INSERT + batched DELETE … RETURNING loop is
//! the floor no queue on that database can beat; the ratio says what the queue's bookkeeping
//! costs. `cargo bench --bench queue`; ZAPIS_BENCH_JOBS sets the job count (default 20000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
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
    let mut engine = Engine::new(store.clone(), clock, config, Alerts::default());
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

async fn fresh(backend: &str, dir: &std::path::Path, run: usize) -> Store {
    match backend {
        "sqlite" => Store::connect(&format!(
            "sqlite://{}",
            dir.join(format!("bench{run}.db")).display()
        ))
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
    let mut run = 0;
    for backend in backends {
        for workers in [1, 4] {
            run += 1;
            let store = fresh(backend, dir.path(), run).await;
            let q = engine_run(&store, n, workers).await;
            let f = floor_run(&store, n, workers).await;
            store.close().await;
            println!(
                "{backend:<8} {workers} worker(s)  zapis queue: {:>8.0} | {:>8.0} | {:>8.0}    \
                 floor INSERT+DELETE: {:>8.0} | {:>8.0} | {:>8.0}    queue/floor end to end: {:.2}",
                q.enqueue,
                q.drain,
                q.total,
                f.enqueue,
                f.drain,
                f.total,
                q.total / f.total
            );
        }
    }
}
