//! Engine behaviour on both backends, with a fake clock and in-process handlers; this file holds
//! the fixtures the parts share.

mod failures;
mod observe;
mod queue;
mod webhooks;

use crate::domain::bid;
use crate::domain::{BusinessId, System};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::clock::{Clock, FakeClock};
use crate::store::{Store, testing};
use crate::sync::inbox::{InboxDispatcher, InboxHandler, InboxMessage, Received};
use crate::sync::jobs::Finish;
use crate::sync::journal::{JournalFilter, read_journal};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("valid instant")
}

fn job(key: &str, ordering: Option<&str>) -> NewJob {
    NewJob {
        business_id: bid("b"),
        system: System::AmoCrm,
        operation: "create_lead".into(),
        payload: serde_json::json!({ "key": key, "phone": "+79123456789" }),
        idempotency_key: key.into(),
        ordering_key: ordering.map(str::to_owned),
    }
}

/// A target whose answer the test scripts; it records every call.
struct Scripted {
    clock: Arc<FakeClock>,
    down_until: Mutex<DateTime<Utc>>,
    permanent: Mutex<bool>,
    unpaid: Mutex<bool>,
    auth_failures: Mutex<u32>,
    refreshes: Mutex<u32>,
    calls: Mutex<Vec<(String, DateTime<Utc>, bool)>>,
}

impl Scripted {
    fn new(clock: Arc<FakeClock>) -> Arc<Scripted> {
        Arc::new(Scripted {
            clock,
            down_until: Mutex::new(t0()),
            permanent: Mutex::new(false),
            unpaid: Mutex::new(false),
            auth_failures: Mutex::new(0),
            refreshes: Mutex::new(0),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn delivered(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.2)
            .map(|c| c.0.clone())
            .collect()
    }
}

#[async_trait]
impl JobHandler for Scripted {
    async fn handle(&self, job: &Job, _ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        let now = self.clock.now();
        let result = if now < *self.down_until.lock().unwrap() {
            Err(DeliveryError::Transient {
                message: "HTTP 503".into(),
                retry_after: None,
                http_status: Some(503),
            })
        } else if *self.permanent.lock().unwrap() {
            Err(DeliveryError::Permanent {
                message: "HTTP 422: phone +79123456789 is not valid for pipeline 7".into(),
                http_status: Some(422),
            })
        } else if *self.unpaid.lock().unwrap() {
            Err(DeliveryError::PaymentRequired {
                message: "HTTP 402: Payment Required".into(),
                http_status: Some(402),
            })
        } else if *self.auth_failures.lock().unwrap() > 0 {
            *self.auth_failures.lock().unwrap() -= 1;
            Err(DeliveryError::Auth {
                message: "HTTP 401: token expired".into(),
                http_status: Some(401),
            })
        } else {
            Ok(Delivered::linked(
                "lead",
                &job.idempotency_key,
                &format!("ext-{}", job.idempotency_key),
            ))
        };
        self.calls
            .lock()
            .unwrap()
            .push((job.idempotency_key.clone(), now, result.is_ok()));
        result
    }

    async fn refresh_auth(&self, _business_id: &BusinessId) -> Result<(), DeliveryError> {
        *self.refreshes.lock().unwrap() += 1;
        Ok(())
    }
}

fn engine(
    store: &Store,
    clock: Arc<FakeClock>,
    target: Arc<Scripted>,
    sink: &MemorySink,
) -> Engine {
    let config = SyncConfig {
        batch: 8,
        ..SyncConfig::default()
    };
    let mut engine = Engine::new(
        store.clone(),
        clock,
        config,
        Alerts::new(vec![Arc::new(sink.clone())]),
        &bid("b"),
    );
    engine.register(System::AmoCrm, target);
    engine
}

/// An engine with a scripted `crm` target, both on a fake clock at [`t0`], and the alerts it sent.
fn rig(store: &Store) -> (Arc<FakeClock>, Arc<Scripted>, MemorySink, Engine) {
    let clock = Arc::new(FakeClock::new(t0()));
    let target = Scripted::new(clock.clone());
    let sink = MemorySink::default();
    let engine = engine(store, clock.clone(), target.clone(), &sink);
    (clock, target, sink, engine)
}

/// Enqueues a new job at [`t0`] and returns its id.
async fn enqueue(queue: &Queue, key: &str, ordering: Option<&str>) -> i64 {
    queue
        .enqueue(&job(key, ordering), t0())
        .await
        .unwrap()
        .expect("a new key")
}

/// Claims for the one business and system the fixtures use.
async fn claim(
    queue: &Queue,
    worker: &str,
    limit: usize,
    lease: Duration,
    now: DateTime<Utc>,
) -> Vec<Job> {
    let systems = vec![System::AmoCrm];
    let businesses = vec!["b".to_string()];
    queue
        .claim(worker, &businesses, &systems, limit, lease, now)
        .await
        .unwrap()
}

/// Runs due jobs and moves the fake clock to the next due time until nothing is pending or
/// `until` is reached.
async fn drive(engine: &Engine, clock: &FakeClock, until: DateTime<Utc>, stops: &[DateTime<Utc>]) {
    for _ in 0..100_000 {
        engine.run_due().await.unwrap();
        let Some(next) = engine.queue().next_due().await.unwrap() else {
            return;
        };
        let now = clock.now();
        // Stop at scripted instants (e.g. the end of an outage) even if nothing is due there.
        let next = stops
            .iter()
            .copied()
            .filter(|s| *s > now && *s < next)
            .min()
            .unwrap_or(next);
        if next > until {
            return;
        }
        clock.set(next.max(now));
    }
    panic!("the queue did not settle");
}

fn entry(job_id: i64, attempt: i64, outcome: &str) -> journal::JournalEntry {
    journal::JournalEntry {
        at: t0(),
        business_id: "b".into(),
        system: System::AmoCrm,
        operation: "create_lead".into(),
        job_id,
        attempt,
        outcome: outcome.into(),
        http_status: None,
        duration_ms: 1,
        error: None,
    }
}

fn retry_of(job_id: i64) -> Finish {
    Finish {
        job_id,
        attempt: 1,
        disposition: jobs::Disposition::Done,
        error: None,
        add_auth_refresh: false,
        link: None,
        journal: entry(job_id, 1, "delivered"),
    }
}
