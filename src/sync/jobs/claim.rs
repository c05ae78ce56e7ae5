//! The worker's side of the queue: claiming due jobs (one statement per backend), leases and
//! heartbeats, reaping expired leases, recording attempts, and handing jobs back.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::*;

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

impl Queue {
    /// Atomically takes up to `limit` due jobs of `businesses` in `systems` for `worker_id` and
    /// leases them until `now + lease`. The business filter is what keeps processes of different
    /// businesses sharing one store from delivering each other's jobs. A job waits while an earlier job with its ordering key is pending
    /// or running. PostgreSQL skips rows other claimers have locked; SQLite serialises
    /// writers, so the one UPDATE … RETURNING is atomic there.
    pub async fn claim(
        &self,
        worker_id: &str,
        businesses: &[String],
        systems: &[System],
        limit: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self.store.pool().acquire().await?;
        let spec = NextClaim {
            businesses,
            systems,
            limit,
            lease,
        };
        self.claim_on(&mut conn, worker_id, spec, now).await
    }

    /// The claim statement for `systems` systems of `businesses` businesses. Parameters: worker
    /// id, lease end, now, limit, the systems, then the businesses.
    ///
    /// Every walk runs along `sync_jobs_due (business_id, system, run_at, id)` for one business
    /// and one system, so a claim never steps over another business's jobs: one business's
    /// backlog (an import, a long CRM outage) costs the others' claims nothing, where a walk
    /// along `(system, run_at)` read every earlier job of the system to find a business's first.
    ///
    /// The walks run one after another until the batch is full, each in due order, and each
    /// claim starts at the next business and system ([`bind_claim`]), so no business or system
    /// waits behind another's backlog for more than a round of claims. Taking the earliest of
    /// every walk's batch instead read a whole batch in each walk; on PostgreSQL it locked them
    /// all, with four systems four rows for every one claimed, which the other workers then
    /// stepped around: the claim cost half as much again.
    pub(crate) fn claim_sql(&self, systems: usize, businesses: usize) -> String {
        format!(
            "UPDATE sync_jobs SET state = 'running', worker_id = $1, lease_until = $2, \
               attempts = attempts + 1, updated_at = $3 \
             WHERE id {} RETURNING {JOB_COLUMNS}",
            self.claim_pick(systems, businesses, false)
        )
    }

    /// The claim's choice of ids, for [`Queue::claim_sql`]'s parameters. `finishing`: the
    /// statement also completes jobs, in a `done` expression whose ids count as finished
    /// (PostgreSQL only; the statement's own snapshot still has them running).
    fn claim_pick(&self, systems: usize, businesses: usize, finishing: bool) -> String {
        let not_finishing = if finishing {
            " AND p.id NOT IN (SELECT id FROM done)"
        } else {
            ""
        };
        let placeholders: Vec<String> = (0..systems).map(|i| format!("${}", i + 5)).collect();
        let business_placeholders: Vec<String> = (0..businesses)
            .map(|i| format!("${}", i + 5 + systems))
            .collect();
        match self.store.backend() {
            // One walk per business and system, each locking at most a batch, and the
            // ordering-key probe kept to `sync_jobs_key`: on a table the planner has no
            // statistics for yet (a fresh deployment), `system IN (…)` reads and sorts every
            // pending job of the business, and the probe takes the idempotency index and
            // filters every job of the system, for each candidate (29 s a batch at 20,000
            // pending). `FOR UPDATE` may not sit under a `UNION`, so the walks hang off a
            // lateral join; with no sort above it, the join stops pulling (and locking) once
            // the batch is full. `= ANY(ARRAY(…))` then updates the claimed ids by primary key.
            Backend::Postgres => {
                let walk = format!(
                    "SELECT j.id, j.run_at FROM sync_jobs j \
                     WHERE j.state = 'pending' AND j.business_id = b.business \
                       AND j.system = s.system AND j.run_at <= $3 \
                       AND (j.ordering_key IS NULL \
                         OR j.id = ({FIRST_OPEN_OF_KEY_PG}{not_finishing})) \
                     ORDER BY j.run_at, j.id LIMIT $4 FOR UPDATE OF j SKIP LOCKED"
                );
                format!(
                    "= ANY(ARRAY(SELECT c.id FROM unnest(ARRAY[{}]::text[]) AS b(business) \
                       CROSS JOIN unnest(ARRAY[{}]::text[]) AS s(system) \
                       CROSS JOIN LATERAL ({walk}) c LIMIT $4))",
                    business_placeholders.join(", "),
                    placeholders.join(", ")
                )
            }
            // SQLite given `system IN (…)` reads every pending job through `(state, system)`
            // and sorts them all for each batch. One walk per business and system along
            // `sync_jobs_due`, in turn as on PostgreSQL, each stopping after a batch.
            Backend::Sqlite => {
                let walks: Vec<String> = business_placeholders
                    .iter()
                    .flat_map(|b| placeholders.iter().map(move |s| (b, s)))
                    .map(|(b, s)| {
                        format!(
                            "SELECT * FROM (SELECT j.id, j.run_at FROM sync_jobs j \
                             WHERE j.state = 'pending' AND j.business_id = {b} \
                               AND j.system = {s} AND j.run_at <= $3 \
                               AND (j.ordering_key IS NULL OR j.id = ({FIRST_OPEN_OF_KEY})) \
                             ORDER BY j.run_at, j.id LIMIT $4)"
                        )
                    })
                    .collect();
                format!(
                    "IN (SELECT id FROM ({}) LIMIT $4)",
                    walks.join(" UNION ALL ")
                )
            }
        }
    }

    /// [`finish_and_claim_pg`]'s statement: `done` plain successes completed and journaled,
    /// and when `next` gives the claim's systems and businesses, the next batch claimed. The
    /// claim's parameters come first ($1 worker, $2 lease end, $3 now, $4 limit, systems,
    /// businesses, all bound even without a claim); the completion reuses $1 and $3 and its
    /// own follow. Yields one row at least: `held`, the held ids joined by commas, beside each
    /// claimed job's columns (NULL when none).
    pub(crate) fn finish_and_claim_sql(&self, done: usize, next: Option<(usize, usize)>) -> String {
        let (systems, businesses) = next.unwrap_or((0, 0));
        let completion = if done == 0 {
            "journaled AS (SELECT NULL::bigint AS job_id WHERE false)".to_string()
        } else {
            completion_ctes(done, 5 + systems + businesses, 3, 1)
        };
        let claim = match next {
            Some(_) => format!(
                "UPDATE sync_jobs SET state = 'running', worker_id = $1, lease_until = $2, \
                   attempts = attempts + 1, updated_at = $3 \
                 WHERE id {} RETURNING {JOB_COLUMNS}",
                self.claim_pick(systems, businesses, done > 0)
            ),
            None => format!("SELECT {JOB_COLUMNS} FROM sync_jobs WHERE false"),
        };
        format!(
            "WITH {completion}, claimed AS ({claim}) \
             SELECT h.held, c.* FROM \
               (SELECT string_agg(job_id::text, ',') AS held FROM journaled) h \
               LEFT JOIN claimed c ON true"
        )
    }

    /// A new round number for a claim's starting business and system.
    fn next_round(&self) -> usize {
        self.claims
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// [`Queue::claim`] on `conn`, which may be a transaction held open.
    pub(crate) async fn claim_on(
        &self,
        conn: &mut AnyConnection,
        worker_id: &str,
        spec: NextClaim<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        if spec.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.claim_sql(spec.systems.len(), spec.businesses.len());
        let q = bind_claim(
            sqlx::query(sqlx::AssertSqlSafe(sql)),
            worker_id,
            spec,
            self.next_round(),
            now,
        );
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
                system: crate::store::system_in(r)?,
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
        // Rows are updated in id order so two transactions never wait on each other in a cycle.
        let mut ordered: Vec<&Finish> = finishes.iter().collect();
        ordered.sort_by_key(|f| f.job_id);
        let (plain_done, others): (Vec<&Finish>, Vec<&Finish>) =
            ordered.into_iter().partition(|f| {
                f.disposition == Disposition::Done && f.error.is_none() && !f.add_auth_refresh
            });
        let _turn = self.write_turn().await;
        let (held, claimed) = if self.store.backend() == Backend::Postgres
            && others.is_empty()
            && plain_done.len() <= COMPLETION_CHUNK
            && finishes.iter().all(|f| f.link.is_none())
        {
            let mut conn = self.store.pool().acquire().await?;
            finish_and_claim_pg(self, &mut conn, worker_id, &plain_done, now, next).await?
        } else {
            self.finish_and_claim_in_transaction(worker_id, &plain_done, &others, now, next)
                .await?
        };
        if held < finishes.len() {
            // The reaper already journaled these attempts as abandoned.
            tracing::warn!(
                lost = finishes.len() - held,
                "lease lost before attempts were recorded"
            );
        }
        Ok((held, claimed))
    }

    /// [`Queue::finish_and_claim`] as one transaction of multi-row statements, for any
    /// outcomes on either store: the held attempts' count and the claimed jobs.
    async fn finish_and_claim_in_transaction(
        &self,
        worker_id: &str,
        plain_done: &[&Finish],
        others: &[&Finish],
        now: DateTime<Utc>,
        next: Option<NextClaim<'_>>,
    ) -> Result<(usize, Vec<Job>), StoreError> {
        let now_ms = to_millis(now);
        let mut held: Vec<&Finish> = Vec::with_capacity(plain_done.len() + others.len());
        // Journal rows already written with their completion.
        let mut journaled = 0;
        let mut tx = self.store.begin().await?;
        // The common case, successes, in one statement per chunk: this is what makes
        // completion cheap enough for thousands of jobs a second.
        for chunk in plain_done.chunks(COMPLETION_CHUNK) {
            let ids = match self.store.backend() {
                Backend::Postgres => {
                    let ids = complete_and_journal_pg(&mut tx, worker_id, chunk, now_ms).await?;
                    journaled += ids.len();
                    ids
                }
                Backend::Sqlite => complete(&mut tx, worker_id, chunk, now_ms).await?,
            };
            held.extend(chunk.iter().filter(|f| ids.contains(&f.job_id)));
        }
        for &f in others {
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
        let entries: Vec<&JournalEntry> = held[journaled..].iter().map(|f| &f.journal).collect();
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
        // One statement may not upsert the same key twice (PostgreSQL refuses): the earliest
        // job's link is kept.
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
                    system: crate::store::system_in(&r)?,
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
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds a claim's parameters in [`Queue::claim_sql`]'s order: worker, lease end, now, limit,
/// the systems, then the businesses, each list rotated to start at its `round`-th entry (where
/// the claim walks first).
fn bind_claim<'q>(
    mut q: AnyQuery<'q>,
    worker_id: &'q str,
    spec: NextClaim<'q>,
    round: usize,
    now: DateTime<Utc>,
) -> AnyQuery<'q> {
    let now_ms = to_millis(now);
    q = q
        .bind(worker_id)
        .bind(now_ms + spec.lease.as_millis() as i64)
        .bind(now_ms)
        .bind(spec.limit as i64);
    for s in rotated(spec.systems, round) {
        q = q.bind(s.as_str());
    }
    for b in rotated(spec.businesses, round) {
        q = q.bind(b.as_str());
    }
    q
}

/// `items` from the `round`-th (modulo their count) on, then the ones before it.
fn rotated<T>(items: &[T], round: usize) -> impl Iterator<Item = &T> {
    let start = round.checked_rem(items.len()).unwrap_or(0);
    items[start..].iter().chain(&items[..start])
}

/// The most successes one completion statement records (10 parameters each on PostgreSQL,
/// well under its 65,535); [`finish_and_claim_pg`] takes batches of up to one.
const COMPLETION_CHUNK: usize = 200;

/// A batch of plain successes recorded and the next batch claimed in one PostgreSQL statement,
/// atomic on its own: under a backlog a worker pays one round trip a batch where BEGIN, the
/// completion, the claim and COMMIT took four. The statement's snapshot still has the batch it
/// completes running, so the claim's ordering-key probe leaves out the jobs `done` holds: a
/// job whose key's earlier job finishes here is free to go in this same claim.
/// Returns how many attempts were still held, and the claimed jobs.
async fn finish_and_claim_pg(
    queue: &Queue,
    conn: &mut AnyConnection,
    worker_id: &str,
    done: &[&Finish],
    now: DateTime<Utc>,
    next: Option<NextClaim<'_>>,
) -> Result<(usize, Vec<Job>), StoreError> {
    let next = next.filter(|n| !n.is_empty());
    let sql = queue.finish_and_claim_sql(
        done.len(),
        next.map(|n| (n.systems.len(), n.businesses.len())),
    );
    let q = sqlx::query(sqlx::AssertSqlSafe(sql));
    let q = match next {
        Some(n) => bind_claim(q, worker_id, n, queue.next_round(), now),
        // Placeholders the completion reuses.
        None => q
            .bind(worker_id)
            .bind(None::<i64>)
            .bind(to_millis(now))
            .bind(None::<i64>),
    };
    let rows = bind_completion(q, done).fetch_all(&mut *conn).await?;
    let mut held = 0;
    let mut claimed = Vec::new();
    for r in &rows {
        if held == 0
            && let Some(ids) = r.try_get::<Option<String>, _>("held")?
        {
            held = ids.split(',').count();
        }
        if r.try_get::<Option<i64>, _>("id")?.is_some() {
            claimed.push(job_from_row(r)?);
        }
    }
    claimed.sort_by_key(|j| j.id);
    Ok((held, claimed))
}

/// The fenced completion of successful attempts: the ids of the jobs this worker still held.
/// The plain id list lets the planner use the primary key; the `(id, attempts)` pairs fence.
async fn complete(
    conn: &mut AnyConnection,
    worker_id: &str,
    chunk: &[&Finish],
    now_ms: i64,
) -> Result<HashSet<i64>, StoreError> {
    let (ids, pairs) = fence_lists(chunk.len(), 3, 2);
    let sql = format!(
        "UPDATE sync_jobs SET state = 'done', lease_until = NULL, worker_id = NULL, \
           last_error = NULL, updated_at = $1, finished_at = $1 \
         WHERE id IN ({ids}) AND worker_id = $2 AND state = 'running' \
           AND (id, attempts) IN (VALUES {pairs}) RETURNING id"
    );
    let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
        .bind(now_ms)
        .bind(worker_id);
    for f in chunk {
        q = q.bind(f.job_id).bind(f.attempt);
    }
    Ok(q.fetch_all(&mut *conn).await?.into_iter().collect())
}

/// [`complete`] and the attempts' journal rows in one PostgreSQL statement (a data-modifying
/// `WITH`): a row is journaled only for a job the update still held, and a batch pays one
/// round trip for both.
async fn complete_and_journal_pg(
    conn: &mut AnyConnection,
    worker_id: &str,
    chunk: &[&Finish],
    now_ms: i64,
) -> Result<HashSet<i64>, StoreError> {
    let sql = format!(
        "WITH {} SELECT job_id FROM journaled",
        completion_ctes(chunk.len(), 3, 1, 2)
    );
    let q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now_ms)
        .bind(worker_id);
    let rows = bind_completion(q, chunk).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<i64, _>("job_id")?))
        .collect()
}

/// Parameters a job takes in [`completion_ctes`]: id, attempt, then the journal's
/// at, business, system, operation, outcome, http status, duration and error.
const PER_COMPLETION: usize = 10;

/// The completion of `jobs` jobs and their journal rows as two common table expressions,
/// `done` and `journaled`, the latter yielding `job_id` for each job still held (PostgreSQL
/// takes data-modifying `WITH`s only at a statement's top level). The jobs' parameters start
/// at `$first`; `$now` and `$worker` are the time and the worker.
fn completion_ctes(jobs: usize, first: usize, now: usize, worker: usize) -> String {
    let (ids, pairs) = fence_lists(jobs, first, PER_COMPLETION);
    let rows: Vec<String> = (0..jobs)
        .map(|i| {
            let b = first + PER_COMPLETION * i;
            format!(
                "(${}, ${}, ${}, ${}, ${b}, ${}, ${}, ${}, ${}, ${})",
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 1,
                b + 6,
                b + 7,
                b + 8,
                b + 9
            )
        })
        .collect();
    // `state || ''`: on a table without statistics the planner otherwise ANDs the primary key
    // with `sync_jobs_lease` (every running entry, most of them dead) to find sixteen rows.
    format!(
        "done AS (\
           UPDATE sync_jobs SET state = 'done', lease_until = NULL, worker_id = NULL, \
             last_error = NULL, updated_at = ${now}, finished_at = ${now} \
           WHERE id IN ({ids}) AND worker_id = ${worker} AND state || '' = 'running' \
             AND (id, attempts) IN (VALUES {pairs}) RETURNING id), \
         journaled AS (\
           INSERT INTO sync_journal (at, business_id, system, operation, job_id, attempt, \
             outcome, http_status, duration_ms, error) \
           SELECT v.* FROM (VALUES {}) AS v (at, business_id, system, operation, job_id, \
             attempt, outcome, http_status, duration_ms, error) \
           WHERE v.job_id IN (SELECT id FROM done) RETURNING job_id)",
        rows.join(", ")
    )
}

/// Binds the jobs' parameters of [`completion_ctes`], after those bound before.
fn bind_completion<'q>(mut q: AnyQuery<'q>, chunk: &[&'q Finish]) -> AnyQuery<'q> {
    for f in chunk {
        let e = &f.journal;
        q = q
            .bind(f.job_id)
            .bind(f.attempt)
            .bind(to_millis(e.at))
            .bind(e.business_id.as_str())
            .bind(e.system.as_str())
            .bind(e.operation.as_str())
            .bind(e.outcome.as_str())
            .bind(e.http_status.map(i64::from))
            .bind(e.duration_ms)
            .bind(e.error.as_deref().map(crate::sync::journal::mask_text));
    }
    q
}

/// The id list and the `(id, attempt)` pairs of a fenced completion of `jobs` jobs whose
/// parameters start at `$first`, `per_job` parameters each with the id and attempt first.
fn fence_lists(jobs: usize, first: usize, per_job: usize) -> (String, String) {
    let mut ids = String::new();
    let mut pairs = String::new();
    for i in 0..jobs {
        let b = first + per_job * i;
        if i > 0 {
            ids.push_str(", ");
            pairs.push_str(", ");
        }
        ids.push_str(&format!("${b}"));
        pairs.push_str(&format!("(${b}, ${})", b + 1));
    }
    (ids, pairs)
}
