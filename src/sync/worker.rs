//! The worker pool: claims due jobs, runs them through the handler registered for their
//! system, and records each attempt (new job state + journal row + link) in one transaction.

use crate::domain::{BusinessId, System};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::Instrument;

use crate::clock::Clock;
use crate::store::{Store, StoreError};
use crate::sync::alerts::{Alert, AlertKind, Alerts};
use crate::sync::config::SyncConfig;
use crate::sync::health::{self, Outage};
use crate::sync::jobs::NextClaim;
use crate::sync::jobs::{Disposition, Finish, Job, LinkRecord, Queue};
use crate::sync::journal::{JournalEntry, mask_text};
use crate::sync::retry::{DeliveryError, RetryPolicy};

/// What a handler reports on success: optionally the id the target gave the object, so the
/// engine records it in `links` with the completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    pub link: Option<LinkRecord>,
}

impl Delivered {
    pub fn done() -> Delivered {
        Delivered::default()
    }

    pub fn linked(entity: &str, entity_id: &str, external_id: &str) -> Delivered {
        Delivered {
            link: Some(LinkRecord {
                entity: entity.into(),
                entity_id: entity_id.into(),
                external_id: external_id.into(),
            }),
        }
    }
}

/// What a handler may use besides the job.
pub struct JobContext<'a> {
    pub store: &'a Store,
    pub now: DateTime<Utc>,
}

/// One target system's delivery code. Delivery is at least once, so `handle` must be
/// idempotent: when [`Job::maybe_delivered_before`] is true it searches the target by a natural
/// key before creating anything.
#[async_trait]
pub trait JobHandler: Send + Sync {
    async fn handle(&self, job: &Job, ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError>;

    /// Called once when the target refused our credentials; `Ok` means "try again now".
    async fn refresh_auth(&self, _business_id: &BusinessId) -> Result<(), DeliveryError> {
        Err(DeliveryError::Auth {
            message: "this connector cannot refresh its token".into(),
            http_status: None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    NotTried,
    Succeeded,
    Failed,
}

/// An attempt's outcome as the `zapis_vendor_calls_total` label: a journal outcome, with a
/// rate limit (429) told apart from other transient failures.
fn metric_outcome(outcome: &str, http_status: Option<u16>) -> &'static str {
    match (outcome, http_status) {
        ("delivered", _) => "ok",
        ("transient", Some(429)) => "429",
        ("transient", _) => "transient",
        ("permanent", _) => "permanent",
        ("auth", _) => "auth",
        ("payment_required", _) => "payment_required",
        _ => "other",
    }
}

/// How often a worker removes delivered jobs past `sync.done_retention` from the hot table.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

pub struct Engine {
    queue: Queue,
    clock: Arc<dyn Clock>,
    handlers: HashMap<System, Arc<dyn JobHandler>>,
    /// The businesses whose jobs this engine may claim: its handlers hold their credentials.
    businesses: Vec<String>,
    systems: Vec<System>,
    policy: RetryPolicy,
    config: SyncConfig,
    alerts: Alerts,
    /// Unique per process; each worker loop appends its index.
    instance: String,
    /// How long a stopping worker lets running jobs finish before releasing them.
    shutdown_grace: Duration,
    /// Configured secrets are cut out of error texts before they are stored or logged.
    scrubber: Arc<crate::secrets::Scrubber>,
}

impl Engine {
    /// An engine delivering the jobs of `business_id` only.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        config: SyncConfig,
        alerts: Alerts,
        business_id: &BusinessId,
    ) -> Engine {
        Engine {
            queue: Queue::new(store),
            clock,
            handlers: HashMap::new(),
            businesses: vec![business_id.to_string()],
            systems: Vec::new(),
            policy: config.retry_policy(),
            config,
            alerts,
            instance: format!("w-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            shutdown_grace: Duration::from_secs(10),
            scrubber: Arc::default(),
        }
    }

    /// Error texts (journal, `last_error`, outages, log) lose these secrets first.
    pub fn with_scrubber(mut self, scrubber: Arc<crate::secrets::Scrubber>) -> Engine {
        self.scrubber = scrubber;
        self
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Engine {
        self.policy = policy;
        self
    }

    pub fn with_shutdown_grace(mut self, grace: Duration) -> Engine {
        self.shutdown_grace = grace;
        self
    }

    pub fn register(&mut self, system: System, handler: Arc<dyn JobHandler>) {
        if self.handlers.insert(system, handler).is_none() {
            self.systems.push(system);
        }
    }

    /// The systems this engine delivers to, in registration order.
    pub fn systems(&self) -> &[System] {
        &self.systems
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Runs `config.workers` loops until `shutdown` turns true, then lets running jobs finish
    /// (or releases them after the grace period) and returns.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) -> Result<(), EngineError> {
        let mut loops = tokio::task::JoinSet::new();
        for i in 0..self.config.workers.max(1) {
            let engine = self.clone();
            let shutdown = shutdown.clone();
            let worker_id = format!("{}-{i}", self.instance);
            loops.spawn(async move { engine.worker_loop(worker_id, shutdown).await });
        }
        let mut result = Ok(());
        while let Some(joined) = loops.join_next().await {
            match joined {
                Ok(Err(e)) => result = Err(e),
                Err(e) => tracing::error!(error = %e, "worker loop panicked"),
                Ok(Ok(())) => {}
            }
        }
        result
    }

    async fn worker_loop(
        &self,
        worker_id: String,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), EngineError> {
        let heartbeat = self.spawn_heartbeat(worker_id.clone());
        let mut reap_due = Instant::now();
        let mut purge_due = Instant::now();
        // A batch claimed together with the previous one's completion, not started yet.
        let mut next: Vec<Job> = Vec::new();
        let result = loop {
            if *shutdown.borrow() {
                break Ok(());
            }
            // Reaping is cheap but not free; the lease is long compared with this period.
            if Instant::now() >= reap_due {
                if let Err(e) = self.queue.reap_expired(self.clock.now()).await {
                    tracing::warn!(error = %e, "reaping expired leases failed");
                }
                reap_due = Instant::now() + (self.config.lease / 4).max(Duration::from_millis(50));
            }
            if Instant::now() >= purge_due {
                let cutoff = self.clock.now()
                    - chrono::Duration::from_std(self.config.done_retention)
                        .unwrap_or(chrono::Duration::MAX);
                match self.queue.purge_done(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "delivered jobs past retention removed"),
                    Err(e) => tracing::warn!(error = %e, "removing old delivered jobs failed"),
                }
                purge_due = Instant::now() + PURGE_EVERY;
            }
            let prefetched = std::mem::take(&mut next);
            let claimed = match self
                .run_batch(&worker_id, Some(&mut shutdown), prefetched)
                .await
            {
                Ok((n, more)) => {
                    next = more;
                    n
                }
                Err(e) => {
                    // The store may be briefly unavailable; keep the worker alive.
                    tracing::error!(error = %e, "worker batch failed");
                    0
                }
            };
            // Idle only when a claim found nothing: finishing a partial batch may have made
            // the next job of an ordering key due, and waiting a whole poll for it would stall
            // a chain of changes to one booking.
            if claimed == 0 && next.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
        };
        if !next.is_empty() {
            let held: Vec<(i64, i64)> = next.iter().map(|j| (j.id, j.attempts)).collect();
            if let Err(e) = self.queue.unclaim(&worker_id, &held).await {
                // Not lost: the lease expires and the reaper hands them out again.
                tracing::warn!(error = %e, jobs = held.len(), "returning unstarted jobs failed");
            }
        }
        heartbeat.abort();
        result
    }

    fn spawn_heartbeat(&self, worker_id: String) -> tokio::task::JoinHandle<()> {
        let queue = self.queue.clone();
        let clock = self.clock.clone();
        let lease = self.config.lease;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval((lease / 3).max(Duration::from_millis(20)));
            loop {
                tick.tick().await;
                if let Err(e) = queue.heartbeat(&worker_id, clock.now() + lease).await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
        })
    }

    /// Processes every job that is due now, in batches, on this task (tests and
    /// `zapis queue run-once`). Returns the number of attempts made.
    pub async fn run_due(&self) -> Result<usize, EngineError> {
        let worker_id = format!("{}-inline", self.instance);
        self.queue.reap_expired(self.clock.now()).await?;
        let mut total = 0;
        loop {
            let (n, _) = self.run_batch(&worker_id, None, Vec::new()).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// Runs one batch (`prefetched`, or claimed now) concurrently and records the outcomes
    /// together. A worker loop (`shutdown` given) whose batch was full claims its next batch in
    /// the same transaction and gets it back to run next.
    async fn run_batch(
        &self,
        worker_id: &str,
        shutdown: Option<&mut watch::Receiver<bool>>,
        prefetched: Vec<Job>,
    ) -> Result<(usize, Vec<Job>), EngineError> {
        let limit = self.config.batch.max(1);
        let jobs = if prefetched.is_empty() {
            self.queue
                .claim(
                    worker_id,
                    &self.businesses,
                    &self.systems,
                    limit,
                    self.config.lease,
                    self.clock.now(),
                )
                .await?
        } else {
            prefetched
        };
        if jobs.is_empty() {
            return Ok((0, Vec::new()));
        }
        let prefetch = shutdown.is_some() && jobs.len() >= limit;
        let count = jobs.len();
        let work = futures::future::join_all(jobs.iter().map(|job| self.attempt(job)));
        let finishes = match shutdown {
            None => work.await,
            Some(shutdown) => {
                tokio::pin!(work);
                tokio::select! {
                    done = &mut work => done,
                    _ = async {
                        while !*shutdown.borrow() {
                            if shutdown.changed().await.is_err() { break; }
                        }
                        tokio::time::sleep(self.shutdown_grace).await;
                    } => {
                        let held: Vec<(i64, i64)> = jobs.iter().map(|j| (j.id, j.attempts)).collect();
                        tracing::info!(jobs = held.len(), "shutting down: releasing running jobs");
                        self.queue.release(worker_id, &held, self.clock.now()).await?;
                        return Ok((count, Vec::new()));
                    }
                }
            }
        };
        let finished_at = self.clock.now();
        let next = prefetch.then_some(NextClaim {
            businesses: &self.businesses,
            systems: &self.systems,
            limit,
            lease: self.config.lease,
        });
        let (_, more) = self
            .queue
            .finish_and_claim(worker_id, &finishes, finished_at, next)
            .await?;
        self.track_health(&finishes, finished_at).await?;
        Ok((count, more))
    }

    async fn attempt(&self, job: &Job) -> Finish {
        let span = tracing::info_span!("job", id = job.id, system = %job.system, operation = %job.operation, attempt = job.attempts);
        async {
            let Some(handler) = self.handlers.get(&job.system) else {
                // Claims are filtered by registered systems, so this is a programming error.
                return self.finish(
                    job,
                    Err(DeliveryError::permanent("no handler for this system")),
                    Duration::ZERO,
                    Refresh::NotTried,
                );
            };
            let ctx = JobContext {
                store: self.queue.store(),
                now: self.clock.now(),
            };
            let started = Instant::now();
            let mut result = handler.handle(job, &ctx).await;
            let mut refresh = Refresh::NotTried;
            if let Err(DeliveryError::Auth {
                message,
                http_status,
            }) = &result
                && job.auth_refreshes == 0
            {
                refresh = match handler.refresh_auth(&job.business_id).await {
                    // The attempt is journaled as an auth failure and retried at once.
                    Ok(()) => Refresh::Succeeded,
                    Err(e) => {
                        result = Err(DeliveryError::Auth {
                            message: format!("{message}; token refresh failed: {e}"),
                            http_status: *http_status,
                        });
                        Refresh::Failed
                    }
                };
            }
            self.finish(job, result, started.elapsed(), refresh)
        }
        .instrument(span)
        .await
    }

    fn finish(
        &self,
        job: &Job,
        result: Result<Delivered, DeliveryError>,
        took: Duration,
        refresh: Refresh,
    ) -> Finish {
        let now = self.clock.now();
        let (disposition, error, http_status, outcome, link) = match result {
            Ok(delivered) => (
                Disposition::Done,
                None,
                None,
                "delivered".to_string(),
                delivered.link,
            ),
            Err(e) => {
                let status = e.http_status();
                let outcome = e.outcome().to_string();
                let too_old =
                    (now - job.age_from).to_std().unwrap_or_default() >= self.policy.max_age;
                let later = |wait: std::time::Duration| {
                    Disposition::Retry(now + chrono::Duration::from_std(wait).unwrap_or_default())
                };
                let disposition = match &e {
                    DeliveryError::Transient { .. } | DeliveryError::PaymentRequired { .. }
                        if too_old =>
                    {
                        Disposition::Dead
                    }
                    DeliveryError::Transient { retry_after, .. } => {
                        let failures = u32::try_from(job.attempts).unwrap_or(u32::MAX);
                        later(self.policy.delay(failures, *retry_after))
                    }
                    // Nothing is lost while the account is unpaid: the job waits on the
                    // steady schedule (no early fast steps) until it is paid or too old.
                    DeliveryError::PaymentRequired { .. } => {
                        later(self.policy.delay(u32::MAX, None))
                    }
                    DeliveryError::Permanent { .. } => Disposition::Dead,
                    // Refreshed just now and the refresh worked: try again at once.
                    DeliveryError::Auth { .. } if refresh == Refresh::Succeeded => {
                        Disposition::Retry(now)
                    }
                    DeliveryError::Auth { .. } => Disposition::Dead,
                };
                let mut text = e.to_string();
                if disposition == Disposition::Dead
                    && too_old
                    && matches!(
                        e,
                        DeliveryError::Transient { .. } | DeliveryError::PaymentRequired { .. }
                    )
                {
                    text = format!("gave up after max_age: {text}");
                }
                let text = mask_text(&self.scrubber.scrub(&text));
                (disposition, Some(text), status, outcome, None)
            }
        };
        // The fields repeat the span's so a collector reading one JSON line has them.
        let (system, job_id, attempt) = (job.system.as_str(), job.id, job.attempts);
        match (&disposition, &error) {
            (Disposition::Done, _) => tracing::debug!("delivered"),
            (Disposition::Dead, Some(e)) => tracing::warn!(
                system,
                job_id,
                attempt,
                error = %e,
                "delivery failed; the job is dead"
            ),
            (Disposition::Retry(_), Some(e)) if refresh == Refresh::Succeeded => tracing::info!(
                system,
                job_id,
                attempt,
                error = %e,
                "credentials refreshed; retrying at once"
            ),
            (Disposition::Retry(at), Some(e)) => tracing::warn!(
                system,
                job_id,
                attempt,
                next_run = %at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                error = %e,
                "delivery failed; will retry"
            ),
            _ => {}
        }
        crate::metrics::attempt(
            job.system,
            metric_outcome(&outcome, http_status),
            (disposition == Disposition::Done)
                .then(|| (now - job.created_at).to_std().unwrap_or_default()),
        );
        Finish {
            job_id: job.id,
            attempt: job.attempts,
            disposition,
            error: error.clone(),
            add_auth_refresh: refresh != Refresh::NotTried,
            link,
            journal: JournalEntry {
                at: now,
                business_id: job.business_id.to_string(),
                system: job.system,
                operation: job.operation.clone(),
                job_id: job.id,
                attempt: job.attempts,
                outcome,
                http_status,
                duration_ms: took.as_millis() as i64,
                error,
            },
        }
    }

    /// Opens or closes outages from a batch's outcomes and sends the resulting alerts.
    /// Permanent errors are about the data, not the system, so they do not count.
    async fn track_health(
        &self,
        finishes: &[Finish],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut by_system: HashMap<(&str, System), (bool, Option<&str>)> = HashMap::new();
        for f in finishes {
            let system = f.journal.system;
            let key = (f.journal.business_id.as_str(), system);
            let entry = by_system.entry(key).or_insert((false, None));
            match f.journal.outcome.as_str() {
                "delivered" => entry.0 = true,
                "transient" | "auth" => entry.1 = f.error.as_deref(),
                _ => {}
            }
            // An unpaid account blocks every write until a person acts: tell them at once,
            // once per outage, instead of after `alert_after`.
            if f.journal.outcome == "payment_required"
                && let Some(mut alert) = health::record_failure(
                    self.queue.store(),
                    &business_of(&f.journal.business_id)?,
                    Outage::Payment(system),
                    f.error.as_deref().unwrap_or(""),
                    Duration::ZERO,
                    now,
                )
                .await?
            {
                alert.kind = AlertKind::PaymentRequired;
                self.alerts.send(&alert).await;
            }
            if f.journal.outcome == "auth" && f.disposition == Disposition::Dead {
                let since = now;
                if let Some(mut alert) = health::record_failure(
                    self.queue.store(),
                    &business_of(&f.journal.business_id)?,
                    Outage::Auth(system),
                    f.error.as_deref().unwrap_or(""),
                    Duration::ZERO,
                    since,
                )
                .await?
                {
                    alert.kind = AlertKind::AuthFailed;
                    self.alerts.send(&alert).await;
                }
            }
        }
        // One read tells which outages a delivery could close; most batches have none open.
        let mut delivered_for: Vec<&str> = by_system
            .iter()
            .filter(|(_, (any_success, _))| *any_success)
            .map(|((business, _), _)| *business)
            .collect();
        delivered_for.sort_unstable();
        delivered_for.dedup();
        let open = health::open_outages(self.queue.store(), &delivered_for).await?;
        let is_open = |business: &str, outage: Outage| {
            let key = outage.key();
            open.iter()
                .any(|(b, s)| b.as_str() == business && *s == key)
        };
        for ((business, system), (any_success, failure)) in by_system {
            // The journal keeps the id as a string; these entries were written from jobs,
            // whose ids were read as `BusinessId`s, so this only fails on a corrupt row.
            let business = &business_of(business)?;
            let alert: Option<Alert> = if any_success {
                // A delivery also ends a credential outage.
                let auth = Outage::Auth(system);
                if is_open(business, auth) {
                    health::record_success(self.queue.store(), business, auth, now).await?;
                }
                let payment = Outage::Payment(system);
                if is_open(business, payment)
                    && let Some(paid) =
                        health::record_success(self.queue.store(), business, payment, now).await?
                {
                    self.alerts.send(&paid).await;
                }
                let down = Outage::Down(system);
                if is_open(business, down) {
                    health::record_success(self.queue.store(), business, down, now).await?
                } else {
                    None
                }
            } else if let Some(error) = failure {
                health::record_failure(
                    self.queue.store(),
                    business,
                    Outage::Down(system),
                    error,
                    self.config.alert_after,
                    now,
                )
                .await?
            } else {
                None
            };
            if let Some(alert) = alert {
                self.alerts.send(&alert).await;
            }
        }
        Ok(())
    }
}

/// The business of a journal entry. The journal keeps the id as a string (it also records what
/// belongs to no business); a delivery's entry was written from its job, whose id was read as a
/// [`BusinessId`], so this fails only on a corrupt row.
fn business_of(journalled: &str) -> Result<BusinessId, StoreError> {
    BusinessId::parse(journalled).map_err(|e| StoreError::Corrupt(format!("journal entry: {e}")))
}
