//! The job table: the transactional outbox and the queue in one. A job is inserted in the
//! caller's transaction ([`enqueue_in`]), claimed atomically by workers, fenced by
//! `(worker_id, attempts)` so a worker that lost its lease cannot overwrite a newer attempt, and
//! never deleted: done and dead rows stay for audit.

use crate::domain::{BusinessId, System};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::store::{Backend, Store, StoreError, from_millis, to_millis};
use crate::sync::journal::{JournalEntry, insert_journal_batch_in, insert_journal_in};

mod claim;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    Done,
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Result<JobState, StoreError> {
        Ok(match s {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "dead" => JobState::Dead,
            other => return Err(StoreError::Corrupt(format!("job state {other:?}"))),
        })
    }
}

/// What a change asks to be delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub business_id: BusinessId,
    /// The target system; a worker claims only systems it has a handler for.
    pub system: System,
    /// What to do there, e.g. `create_lead`.
    pub operation: String,
    pub payload: serde_json::Value,
    /// Unique per business and system: enqueueing the same key twice keeps the first job.
    pub idempotency_key: String,
    /// Jobs with the same key (same business and system) run strictly one after another, in
    /// insertion order, retries included.
    pub ordering_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub business_id: BusinessId,
    pub system: System,
    pub operation: String,
    pub payload: serde_json::Value,
    pub idempotency_key: String,
    pub ordering_key: Option<String>,
    pub state: JobState,
    /// Attempts started so far, this one included while running.
    pub attempts: i64,
    pub auth_refreshes: i64,
    pub run_at: DateTime<Utc>,
    pub lease_until: Option<DateTime<Utc>>,
    pub worker_id: Option<String>,
    pub last_error: Option<String>,
    pub age_from: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Job {
    /// True when an earlier attempt may have reached the target (it timed out, lost its
    /// connection or its worker died): a handler must search before it creates.
    pub fn maybe_delivered_before(&self) -> bool {
        self.attempts > 1
    }
}

const JOB_COLUMNS: &str = "id, business_id, system, operation, payload, idempotency_key, \
     ordering_key, state, attempts, auth_refreshes, run_at, lease_until, worker_id, last_error, \
     age_from, created_at, updated_at, finished_at";

fn job_from_row(r: &AnyRow) -> Result<Job, StoreError> {
    let payload: String = r.try_get("payload")?;
    let opt_time = |col: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        r.try_get::<Option<i64>, _>(col)?
            .map(from_millis)
            .transpose()
    };
    Ok(Job {
        id: r.try_get("id")?,
        business_id: crate::store::business_id_in(r)?,
        system: crate::store::system_in(r)?,
        operation: r.try_get("operation")?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("job payload: {e}")))?,
        idempotency_key: r.try_get("idempotency_key")?,
        ordering_key: r.try_get("ordering_key")?,
        state: JobState::parse(&r.try_get::<String, _>("state")?)?,
        attempts: r.try_get("attempts")?,
        auth_refreshes: r.try_get("auth_refreshes")?,
        run_at: from_millis(r.try_get("run_at")?)?,
        lease_until: opt_time("lease_until")?,
        worker_id: r.try_get("worker_id")?,
        last_error: r.try_get("last_error")?,
        age_from: from_millis(r.try_get("age_from")?)?,
        created_at: from_millis(r.try_get("created_at")?)?,
        updated_at: from_millis(r.try_get("updated_at")?)?,
        finished_at: opt_time("finished_at")?,
    })
}

/// Inserts `job` on an open connection or transaction, so it commits (or rolls back) together
/// with the change that caused it. Returns the new job's id, or `None` when a job with the same
/// idempotency key already exists.
pub async fn enqueue_in(
    conn: &mut AnyConnection,
    job: &NewJob,
    now: DateTime<Utc>,
) -> Result<Option<i64>, StoreError> {
    let payload = job.payload.to_string();
    let now = to_millis(now);
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO sync_jobs (business_id, system, operation, payload, idempotency_key, \
           ordering_key, state, attempts, auth_refreshes, run_at, age_from, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, 0, $7, $7, $7, $7) \
         ON CONFLICT (business_id, system, idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(job.business_id.as_str())
    .bind(job.system.as_str())
    .bind(&job.operation)
    .bind(payload)
    .bind(&job.idempotency_key)
    .bind(job.ordering_key.as_deref())
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(id)
}

/// How an attempt ended, as the worker records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    Done,
    /// Try again at this instant.
    Retry(DateTime<Utc>),
    Dead,
}

/// Where a delivered object lives in the target, recorded in `links` with the completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    pub entity: String,
    pub entity_id: String,
    pub external_id: String,
}

/// What [`Queue::finish_and_claim`] claims next for the worker.
#[derive(Debug, Clone, Copy)]
pub struct NextClaim<'a> {
    pub businesses: &'a [String],
    pub systems: &'a [System],
    pub limit: usize,
    pub lease: Duration,
}

impl NextClaim<'_> {
    /// Whether this claim can take nothing (no business, no system or no room).
    pub(crate) fn is_empty(&self) -> bool {
        self.businesses.is_empty() || self.systems.is_empty() || self.limit == 0
    }
}

/// One finished attempt: the job's new state and its journal row, written together.
#[derive(Debug, Clone)]
pub struct Finish {
    pub job_id: i64,
    pub attempt: i64,
    pub disposition: Disposition,
    pub error: Option<String>,
    pub add_auth_refresh: bool,
    pub link: Option<LinkRecord>,
    pub journal: JournalEntry,
}

/// Counts per system and state, and how long the oldest undelivered job has waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRow {
    pub system: System,
    pub state: JobState,
    pub count: i64,
    pub oldest_created_at: Option<DateTime<Utc>>,
}

/// The queue operations on a [`Store`].
#[derive(Debug, Clone)]
pub struct Queue {
    store: Store,
    /// On SQLite the worker loops of one engine take turns at their write transactions here.
    /// SQLite admits one writer, and a connection that finds the file locked sleeps in steps
    /// of 1, 2, 5, 10 ms and more before it looks again, while a claim or a completion holds
    /// the lock for a fraction of a millisecond: waiting in line costs far less than that.
    sqlite_writer: Arc<tokio::sync::Mutex<()>>,
    /// Claims made through this queue so far: where the next one starts its round of
    /// businesses and systems (see [`Queue::claim_sql`]).
    claims: Arc<std::sync::atomic::AtomicUsize>,
}

impl Queue {
    pub fn new(store: Store) -> Queue {
        Queue {
            store,
            sqlite_writer: Arc::default(),
            claims: Arc::default(),
        }
    }

    /// This queue's turn at writing, on SQLite; PostgreSQL locks rows, not the database.
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.store.backend() {
            Backend::Sqlite => Some(self.sqlite_writer.lock().await),
            Backend::Postgres => None,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn enqueue(
        &self,
        job: &NewJob,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let mut conn = self.store.pool().acquire().await?;
        enqueue_in(&mut conn, job, now).await
    }

    /// Inserts many jobs in one transaction with multi-row statements (imports, benchmarks).
    pub async fn enqueue_batch(
        &self,
        jobs: &[NewJob],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        const COLS: usize = 6;
        // 400 rows × 6 binds stays far below both backends' parameter limits.
        const CHUNK: usize = 400;
        let now = to_millis(now);
        let backend = self.store.backend();
        let mut tx = self.store.begin().await?;
        let mut inserted = 0;
        for chunk in jobs.chunks(CHUNK) {
            // The moment is our own integer, written into the statement, so the rows' parameters
            // run in order (SQLite's anonymous ones: `row_params`; binding a chunk's 2,800 `$N`
            // took a tenth of a queue drain's CPU).
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    format!(
                        "({}, 'pending', 0, 0, {now}, {now}, {now}, {now})",
                        crate::store::row_params(backend, i, COLS)
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO sync_jobs (business_id, system, operation, payload, idempotency_key, \
                   ordering_key, state, attempts, auth_refreshes, run_at, age_from, created_at, \
                   updated_at) VALUES {} \
                 ON CONFLICT (business_id, system, idempotency_key) DO NOTHING",
                values.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for job in chunk {
                q = q
                    .bind(job.business_id.as_str())
                    .bind(job.system.as_str())
                    .bind(&job.operation)
                    .bind(job.payload.to_string())
                    .bind(&job.idempotency_key)
                    .bind(job.ordering_key.as_deref());
            }
            inserted += q.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    pub async fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM sync_jobs WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await?;
        row.map(|r| job_from_row(&r)).transpose()
    }

    /// The latest `limit` jobs of a business in `state`, newest first.
    pub async fn latest_of(
        &self,
        business: &BusinessId,
        state: JobState,
        limit: i64,
    ) -> Result<Vec<Job>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM sync_jobs WHERE business_id = $1 AND state = $2 \
             ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(business.as_str())
            .bind(state.as_str())
            .bind(limit)
            .fetch_all(self.store.pool())
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    pub async fn jobs_in_state(&self, state: JobState) -> Result<Vec<Job>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM sync_jobs WHERE state = $1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state.as_str())
            .fetch_all(self.store.pool())
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Removes delivered jobs that finished before `cutoff`, in short batches so no claim
    /// waits long behind it. Returns how many went.
    pub async fn purge_done(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        const BATCH: i64 = 1000;
        let mut removed = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM sync_jobs WHERE id IN (SELECT id FROM sync_jobs \
                   WHERE state = 'done' AND finished_at < $1 ORDER BY finished_at LIMIT $2)",
            )
            .bind(to_millis(cutoff))
            .bind(BATCH)
            .execute(self.store.pool())
            .await?
            .rows_affected();
            removed += done;
            if done < BATCH as u64 {
                return Ok(removed);
            }
        }
    }

    /// `zapis queue retry ID`: a dead job is pending again with a fresh age; a pending one
    /// (waiting out its backoff) runs now. `business` keeps an operator of one business to its
    /// own jobs. The job's state before, or `None` when no such job of that business can be
    /// retried (it is running, done, another business's, or does not exist).
    pub async fn revive(
        &self,
        id: i64,
        business: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<JobState>, StoreError> {
        let now = to_millis(now);
        let mut tx = self.store.begin().await?;
        let state: Option<String> = sqlx::query_scalar(
            "SELECT state FROM sync_jobs WHERE id = $1 AND ($2 IS NULL OR business_id = $2)",
        )
        .bind(id)
        .bind(business)
        .fetch_optional(&mut *tx)
        .await?;
        let before = match state.as_deref() {
            Some("dead") => JobState::Dead,
            Some("pending") => JobState::Pending,
            _ => return Ok(None),
        };
        let sql = if before == JobState::Dead {
            "UPDATE sync_jobs SET state = 'pending', run_at = $1, age_from = $1, updated_at = $1, \
               auth_refreshes = 0, finished_at = NULL WHERE id = $2 AND state = 'dead'"
        } else {
            "UPDATE sync_jobs SET run_at = $1, updated_at = $1 WHERE id = $2 AND state = 'pending'"
        };
        let done = sqlx::query(sql)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((done.rows_affected() == 1).then_some(before))
    }

    /// Brings back every dead job, or those of one system or business (`zapis queue retry
    /// --dead`).
    pub async fn revive_dead(
        &self,
        system: Option<System>,
        business: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let now = to_millis(now);
        let done = sqlx::query(
            "UPDATE sync_jobs SET state = 'pending', run_at = $1, age_from = $1, updated_at = $1, \
               auth_refreshes = 0, finished_at = NULL \
             WHERE state = 'dead' AND ($2 IS NULL OR system = $2) \
               AND ($3 IS NULL OR business_id = $3)",
        )
        .bind(now)
        .bind(system.map(System::as_str))
        .bind(business)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// The earliest time a pending job becomes due (tests drive a fake clock with it).
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let ms: Option<i64> =
            sqlx::query_scalar("SELECT MIN(run_at) FROM sync_jobs WHERE state = 'pending'")
                .fetch_one(self.store.pool())
                .await?;
        ms.map(from_millis).transpose()
    }

    pub async fn stats(&self) -> Result<Vec<QueueRow>, StoreError> {
        self.stats_of(None).await
    }

    /// Counts per system and state, of one business or of all.
    pub async fn stats_of(&self, business: Option<&str>) -> Result<Vec<QueueRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT system, state, COUNT(*) AS n, MIN(created_at) AS oldest FROM sync_jobs \
             WHERE ($1 IS NULL OR business_id = $1) \
             GROUP BY system, state ORDER BY system, state",
        )
        .bind(business)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QueueRow {
                    system: crate::store::system_in(r)?,
                    state: JobState::parse(&r.try_get::<String, _>("state")?)?,
                    count: r.try_get("n")?,
                    oldest_created_at: r
                        .try_get::<Option<i64>, _>("oldest")?
                        .map(from_millis)
                        .transpose()?,
                })
            })
            .collect()
    }
}
