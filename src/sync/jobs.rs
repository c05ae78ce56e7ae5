//! The job table: the transactional outbox and the queue in one. A job is inserted in the
//! caller's transaction ([`enqueue_in`]), claimed atomically by workers, fenced by
//! `(worker_id, attempts)` so a worker that lost its lease cannot overwrite a newer attempt, and
//! never deleted: done and dead rows stay for audit.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::store::{Backend, Store, StoreError, from_millis, to_millis};
use crate::sync::journal::{JournalEntry, insert_journal_batch_in, insert_journal_in};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    Done,
    Dead,
}

/// The same probe for PostgreSQL, written so only `sync_jobs_key (ordering_key, id)` can serve
/// it: `|| ''` keeps business and system out of any index condition, since without statistics
/// the planner would rather walk the idempotency index on `(business_id, system)` and filter
/// every job of the system. An ordering key names one booking, chat or customer, so the few
/// rows sharing it are filtered cheaply.
const FIRST_OPEN_OF_KEY_PG: &str = "SELECT MIN(p.id) FROM sync_jobs p \
     WHERE p.ordering_key = j.ordering_key AND p.state IN ('pending', 'running') \
       AND p.business_id || '' = j.business_id AND p.system || '' = j.system";

/// A job with an ordering key runs only when it is the first open (pending or running) job of
/// its key. Written as a scalar subquery for the minimum id, served by `sync_jobs_order` as one
/// index probe per candidate: the equivalent `NOT EXISTS (earlier open job)` lets PostgreSQL
/// plan an anti-join over the whole table when it has no statistics yet (a fresh deployment),
/// which cost ~0.5 s per claim.
const FIRST_OPEN_OF_KEY: &str = "SELECT MIN(p.id) FROM sync_jobs p \
     WHERE p.business_id = j.business_id AND p.system = j.system \
       AND p.ordering_key = j.ordering_key AND p.state IN ('pending', 'running')";

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
    pub business_id: String,
    /// The target system, e.g. `amocrm`; a worker claims only systems it has a handler for.
    pub system: String,
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
    pub business_id: String,
    pub system: String,
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
        business_id: r.try_get("business_id")?,
        system: r.try_get("system")?,
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
    .bind(&job.business_id)
    .bind(&job.system)
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
    pub systems: &'a [String],
    pub limit: usize,
    pub lease: Duration,
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
    pub system: String,
    pub state: JobState,
    pub count: i64,
    pub oldest_created_at: Option<DateTime<Utc>>,
}

/// The queue operations on a [`Store`].
#[derive(Debug, Clone)]
pub struct Queue {
    store: Store,
}

impl Queue {
    pub fn new(store: Store) -> Queue {
        Queue { store }
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
        const COLS: usize = 7;
        // 400 rows × 7 binds stays far below both backends' parameter limits.
        const CHUNK: usize = 400;
        let now = to_millis(now);
        let mut tx = self.store.begin().await?;
        let mut inserted = 0;
        for chunk in jobs.chunks(CHUNK) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * COLS;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, 'pending', 0, 0, ${b7}, ${b7}, ${b7}, ${b7})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b7 = b + 7
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
                    .bind(&job.business_id)
                    .bind(&job.system)
                    .bind(&job.operation)
                    .bind(job.payload.to_string())
                    .bind(&job.idempotency_key)
                    .bind(job.ordering_key.as_deref())
                    .bind(now);
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
        business: &str,
        state: JobState,
        limit: i64,
    ) -> Result<Vec<Job>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM sync_jobs WHERE business_id = $1 AND state = $2 \
             ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(business)
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

    /// Atomically takes up to `limit` due jobs of `businesses` in `systems` for `worker_id` and
    /// leases them until `now + lease`. The business filter is what keeps processes of different
    /// businesses sharing one store from delivering each other's jobs. A job waits while an earlier job with its ordering key is pending
    /// or running. PostgreSQL skips rows other claimers have locked; SQLite serialises
    /// writers, so the one UPDATE … RETURNING is atomic there.
    pub async fn claim(
        &self,
        worker_id: &str,
        businesses: &[String],
        systems: &[String],
        limit: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        let mut conn = self.store.pool().acquire().await?;
        let spec = NextClaim {
            businesses,
            systems,
            limit,
            lease,
        };
        self.claim_on(&mut conn, worker_id, spec, now).await
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

    /// The claim statement for `systems` systems of `businesses` businesses. Parameters: worker
    /// id, lease end, now, limit, the systems, then the businesses.
    pub(crate) fn claim_sql(&self, systems: usize, businesses: usize) -> String {
        let placeholders: Vec<String> = (0..systems).map(|i| format!("${}", i + 5)).collect();
        let business_placeholders: Vec<String> = (0..businesses)
            .map(|i| format!("${}", i + 5 + systems))
            .collect();
        let businesses_in = business_placeholders.join(", ");
        let candidate = |system: &str| {
            format!(
                "SELECT j.id, j.run_at FROM sync_jobs j \
                 WHERE j.state = 'pending' AND j.run_at <= $3 AND j.system {system} \
                   AND j.business_id IN ({businesses_in}) \
                   AND (j.ordering_key IS NULL OR j.id = ({FIRST_OPEN_OF_KEY})) \
                 ORDER BY j.run_at, j.id LIMIT $4"
            )
        };
        let pick = match self.store.backend() {
            // One walk per system along `sync_jobs_due`, each locking at most a batch, and the
            // ordering-key probe kept to `sync_jobs_key`: on a table the planner has no
            // statistics for yet (a fresh deployment), `system IN (…)` reads and sorts every
            // pending job of the business, and the probe takes the idempotency index and
            // filters every job of the system, for each candidate (29 s a batch at 20,000
            // pending). `FOR UPDATE` may not sit under a `UNION`, so the walks hang off a
            // lateral join. `= ANY(ARRAY(…))` then updates the claimed ids by primary key.
            Backend::Postgres => {
                let walk = format!(
                    "SELECT j.id, j.run_at FROM sync_jobs j \
                     WHERE j.state = 'pending' AND j.run_at <= $3 AND j.system = s.system \
                       AND j.business_id IN ({businesses_in}) \
                       AND (j.ordering_key IS NULL OR j.id = ({FIRST_OPEN_OF_KEY_PG})) \
                     ORDER BY j.run_at, j.id LIMIT $4 FOR UPDATE OF j SKIP LOCKED"
                );
                format!(
                    "= ANY(ARRAY(SELECT c.id FROM unnest(ARRAY[{}]::text[]) AS s(system) \
                       CROSS JOIN LATERAL ({walk}) c ORDER BY c.run_at, c.id LIMIT $4))",
                    placeholders.join(", ")
                )
            }
            // SQLite given `system IN (…)` reads every pending job through `(state, system)`
            // and sorts them all for each batch. One walk per system along its own
            // `(system, run_at, id)` index stops after a batch; only those few are sorted.
            Backend::Sqlite => {
                let walks: Vec<String> = placeholders
                    .iter()
                    .map(|p| format!("SELECT * FROM ({})", candidate(&format!("= {p}"))))
                    .collect();
                format!(
                    "IN (SELECT id FROM ({}) ORDER BY run_at, id LIMIT $4)",
                    walks.join(" UNION ALL ")
                )
            }
        };
        format!(
            "UPDATE sync_jobs SET state = 'running', worker_id = $1, lease_until = $2, \
               attempts = attempts + 1, updated_at = $3 \
             WHERE id {pick} RETURNING {JOB_COLUMNS}"
        )
    }

    async fn claim_on(
        &self,
        conn: &mut AnyConnection,
        worker_id: &str,
        spec: NextClaim<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        let NextClaim {
            businesses,
            systems,
            limit,
            lease,
        } = spec;
        if businesses.is_empty() || systems.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let sql = self.claim_sql(systems.len(), businesses.len());
        let now_ms = to_millis(now);
        let lease_until = now_ms + lease.as_millis() as i64;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(worker_id)
            .bind(lease_until)
            .bind(now_ms)
            .bind(limit as i64);
        for s in systems {
            q = q.bind(s);
        }
        for b in businesses {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&mut *conn).await?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    /// Extends the lease of every job `worker_id` is running. On PostgreSQL rows locked by
    /// a concurrent completion are skipped (they are finishing anyway), so a heartbeat never
    /// waits on a lock and cannot take part in a deadlock.
    pub async fn heartbeat(
        &self,
        worker_id: &str,
        until: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "UPDATE sync_jobs SET lease_until = $1 WHERE id IN (SELECT id FROM sync_jobs \
             WHERE worker_id = $2 AND state = 'running' {})",
            self.skip_locked()
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to_millis(until))
            .bind(worker_id)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected())
    }

    fn skip_locked(&self) -> &'static str {
        match self.store.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// Returns jobs whose worker stopped renewing its lease (it crashed or was killed) to the
    /// queue, journaling the lost attempt: its outcome is unknown, so the next attempt will
    /// search before it creates.
    pub async fn reap_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let now_ms = to_millis(now);
        let mut tx = self.store.begin().await?;
        let sql = format!(
            "UPDATE sync_jobs SET state = 'pending', run_at = $1, lease_until = NULL, \
               worker_id = NULL, updated_at = $1, \
               last_error = 'worker lost (lease expired); outcome of the attempt unknown' \
             WHERE id IN (SELECT id FROM sync_jobs WHERE state = 'running' AND lease_until < $1 \
               {}) \
             RETURNING id, business_id, system, operation, attempts",
            self.skip_locked()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms)
            .fetch_all(&mut *tx)
            .await?;
        for r in &rows {
            let entry = JournalEntry {
                at: now,
                business_id: r.try_get("business_id")?,
                system: r.try_get("system")?,
                operation: r.try_get("operation")?,
                job_id: r.try_get("id")?,
                attempt: r.try_get("attempts")?,
                outcome: "abandoned".into(),
                http_status: None,
                duration_ms: 0,
                error: Some("worker lost (lease expired); outcome unknown".into()),
            };
            insert_journal_in(&mut tx, &entry).await?;
        }
        tx.commit().await?;
        if !rows.is_empty() {
            tracing::warn!(
                jobs = rows.len(),
                "re-queued jobs whose worker lease expired"
            );
        }
        Ok(rows.len() as u64)
    }

    /// Records finished attempts in one transaction: each job's new state (only if this worker
    /// still holds that attempt), its journal row and the link to what it created.
    /// Returns how many were still held (the others were lost to an expired lease and already
    /// journaled as abandoned).
    pub async fn finish(
        &self,
        worker_id: &str,
        finishes: &[Finish],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        Ok(self
            .finish_and_claim(worker_id, finishes, now, None)
            .await?
            .0)
    }

    /// [`Queue::finish`], and in the same transaction the worker's next batch when `next` is
    /// given: under a backlog a worker then pays one commit per batch instead of two.
    pub async fn finish_and_claim(
        &self,
        worker_id: &str,
        finishes: &[Finish],
        now: DateTime<Utc>,
        next: Option<NextClaim<'_>>,
    ) -> Result<(usize, Vec<Job>), StoreError> {
        let now_ms = to_millis(now);
        // Rows are updated in id order so two transactions never wait on each other in a cycle.
        let mut ordered: Vec<&Finish> = finishes.iter().collect();
        ordered.sort_by_key(|f| f.job_id);
        let (plain_done, others): (Vec<&Finish>, Vec<&Finish>) =
            ordered.into_iter().partition(|f| {
                f.disposition == Disposition::Done && f.error.is_none() && !f.add_auth_refresh
            });
        let mut held: Vec<&Finish> = Vec::with_capacity(finishes.len());
        let mut tx = self.store.begin().await?;
        // The common case, successes, in one statement per chunk: this is what makes
        // completion cheap enough for thousands of jobs a second.
        for chunk in plain_done.chunks(200) {
            let pairs: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${})", 3 + 2 * i, 4 + 2 * i))
                .collect();
            // The plain id list lets the planner use the primary key; the pairs fence.
            let ids: Vec<String> = (0..chunk.len())
                .map(|i| format!("${}", 3 + 2 * i))
                .collect();
            let sql = format!(
                "UPDATE sync_jobs SET state = 'done', lease_until = NULL, worker_id = NULL, \
                   last_error = NULL, updated_at = $1, finished_at = $1 \
                 WHERE id IN ({}) AND worker_id = $2 AND state = 'running' \
                   AND (id, attempts) IN (VALUES {}) RETURNING id",
                ids.join(", "),
                pairs.join(", ")
            );
            let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .bind(now_ms)
                .bind(worker_id);
            for f in chunk {
                q = q.bind(f.job_id).bind(f.attempt);
            }
            let ids: std::collections::HashSet<i64> =
                q.fetch_all(&mut *tx).await?.into_iter().collect();
            held.extend(chunk.iter().filter(|f| ids.contains(&f.job_id)));
        }
        for f in others {
            let (state, run_at, finished_at) = match &f.disposition {
                Disposition::Done => (JobState::Done, None, Some(now_ms)),
                Disposition::Retry(at) => (JobState::Pending, Some(to_millis(*at)), None),
                Disposition::Dead => (JobState::Dead, None, Some(now_ms)),
            };
            let updated = sqlx::query(
                "UPDATE sync_jobs SET state = $1, run_at = COALESCE($2, run_at), \
                   lease_until = NULL, worker_id = NULL, last_error = $3, updated_at = $4, \
                   finished_at = $5, auth_refreshes = auth_refreshes + $6 \
                 WHERE id = $7 AND worker_id = $8 AND attempts = $9 AND state = 'running'",
            )
            .bind(state.as_str())
            .bind(run_at)
            .bind(f.error.as_deref().map(crate::sync::journal::mask_text))
            .bind(now_ms)
            .bind(finished_at)
            .bind(i64::from(f.add_auth_refresh))
            .bind(f.job_id)
            .bind(worker_id)
            .bind(f.attempt)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 1 {
                held.push(f);
            }
        }
        if held.len() < finishes.len() {
            // The reaper already journaled these attempts as abandoned.
            tracing::warn!(
                lost = finishes.len() - held.len(),
                "lease lost before attempts were recorded"
            );
        }
        let entries: Vec<&JournalEntry> = held.iter().map(|f| &f.journal).collect();
        insert_journal_batch_in(&mut tx, &entries).await?;
        let mut links: Vec<(&str, &str, &LinkRecord)> = held
            .iter()
            .filter_map(|f| {
                Some((
                    f.journal.business_id.as_str(),
                    f.journal.system.as_str(),
                    f.link.as_ref()?,
                ))
            })
            .collect();
        // One statement may not upsert the same key twice (PostgreSQL refuses): last one wins.
        links.sort_by(|a, b| {
            (a.0, a.1, &a.2.entity, &a.2.entity_id).cmp(&(b.0, b.1, &b.2.entity, &b.2.entity_id))
        });
        links.dedup_by(|b, a| {
            (a.0, a.1, &a.2.entity, &a.2.entity_id) == (b.0, b.1, &b.2.entity, &b.2.entity_id)
        });
        for chunk in links.chunks(200) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = 2 + i * 5;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, $1)",
                        b,
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO links (business_id, entity, entity_id, system, external_id, created_at) \
                 VALUES {} ON CONFLICT (business_id, entity, entity_id, system) \
                 DO UPDATE SET external_id = excluded.external_id",
                values.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_ms);
            for (business, system, link) in chunk {
                q = q
                    .bind(*business)
                    .bind(&link.entity)
                    .bind(&link.entity_id)
                    .bind(*system)
                    .bind(&link.external_id);
            }
            q.execute(&mut *tx).await?;
        }
        let claimed = match next {
            Some(n) => self.claim_on(&mut tx, worker_id, n, now).await?,
            None => Vec::new(),
        };
        tx.commit().await?;
        Ok((held.len(), claimed))
    }

    /// Gives jobs a worker claimed but never started back to the queue as they were: no
    /// attempt was made, so none is counted or journaled.
    pub async fn unclaim(&self, worker_id: &str, jobs: &[(i64, i64)]) -> Result<(), StoreError> {
        let mut jobs = jobs.to_vec();
        jobs.sort_unstable();
        let mut tx = self.store.begin().await?;
        for (id, attempt) in jobs {
            sqlx::query(
                "UPDATE sync_jobs SET state = 'pending', attempts = attempts - 1, \
                   lease_until = NULL, worker_id = NULL \
                 WHERE id = $1 AND worker_id = $2 AND attempts = $3 AND state = 'running'",
            )
            .bind(id)
            .bind(worker_id)
            .bind(attempt)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
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
        system: Option<&str>,
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
        .bind(system)
        .bind(business)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Gives running jobs of a stopping worker back to the queue, journaling the interrupted
    /// attempt (its request may have gone out, so the next attempt searches first).
    pub async fn release(
        &self,
        worker_id: &str,
        jobs: &[(i64, i64)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now_ms = to_millis(now);
        let mut jobs = jobs.to_vec();
        jobs.sort_unstable();
        let mut tx = self.store.begin().await?;
        for (id, attempt) in jobs {
            let row = sqlx::query(
                "UPDATE sync_jobs SET state = 'pending', run_at = $1, lease_until = NULL, \
                   worker_id = NULL, updated_at = $1, last_error = 'interrupted by shutdown' \
                 WHERE id = $2 AND worker_id = $3 AND attempts = $4 AND state = 'running' \
                 RETURNING business_id, system, operation",
            )
            .bind(now_ms)
            .bind(id)
            .bind(worker_id)
            .bind(attempt)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(r) = row {
                let entry = JournalEntry {
                    at: now,
                    business_id: r.try_get("business_id")?,
                    system: r.try_get("system")?,
                    operation: r.try_get("operation")?,
                    job_id: id,
                    attempt,
                    outcome: "interrupted".into(),
                    http_status: None,
                    duration_ms: 0,
                    error: Some("worker shut down during the attempt".into()),
                };
                insert_journal_in(&mut tx, &entry).await?;
            }
        }
        tx.commit().await?;
        Ok(())
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
                    system: r.try_get("system")?,
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
