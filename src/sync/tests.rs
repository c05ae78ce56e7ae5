//! Engine behaviour on both backends, with a fake clock and in-process handlers.

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
        business_id: "b".into(),
        system: "crm".into(),
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

    async fn refresh_auth(&self, _business_id: &str) -> Result<(), DeliveryError> {
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
        "b",
    );
    engine.register("crm", target);
    engine
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

#[tokio::test]
async fn a_job_commits_or_rolls_back_with_its_change_and_keys_are_unique() {
    for store in testing::all().await {
        let queue = Queue::new(store.clone());
        let mut tx = store.pool().begin().await.unwrap();
        assert!(
            enqueue_in(&mut tx, &job("k1", None), t0())
                .await
                .unwrap()
                .is_some()
        );
        tx.rollback().await.unwrap();
        assert!(
            queue.stats().await.unwrap().is_empty(),
            "a rolled-back job must not exist"
        );

        let mut tx = store.pool().begin().await.unwrap();
        let id = enqueue_in(&mut tx, &job("k1", None), t0())
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            queue.enqueue(&job("k1", None), t0()).await.unwrap(),
            None,
            "same key twice"
        );
        let stored = queue.job(id).await.unwrap().unwrap();
        assert_eq!(stored.state, JobState::Pending);
        assert_eq!(stored.payload["key"], "k1");
    }
}

#[tokio::test]
async fn jobs_with_one_ordering_key_run_strictly_in_order() {
    for store in testing::all().await {
        let queue = Queue::new(store.clone());
        let a = queue
            .enqueue(&job("a", Some("booking-1")), t0())
            .await
            .unwrap()
            .unwrap();
        let b = queue
            .enqueue(&job("b", Some("booking-1")), t0())
            .await
            .unwrap()
            .unwrap();
        let c = queue
            .enqueue(&job("c", Some("booking-2")), t0())
            .await
            .unwrap()
            .unwrap();
        let systems = vec!["crm".to_string()];
        let businesses = vec!["b".to_string()];
        let lease = Duration::from_secs(60);
        let claimed: Vec<i64> = queue
            .claim("w1", &businesses, &systems, 10, lease, t0())
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(claimed, vec![a, c], "b waits for a");
        // a fails and is rescheduled: b still waits, retries included.
        let retry = Finish {
            job_id: a,
            attempt: 1,
            disposition: jobs::Disposition::Retry(t0() + chrono::Duration::seconds(10)),
            error: Some("HTTP 503".into()),
            add_auth_refresh: false,
            link: None,
            journal: entry(a, 1, "transient"),
        };
        assert_eq!(queue.finish("w1", &[retry], t0()).await.unwrap(), 1);
        assert!(
            queue
                .claim("w2", &businesses, &systems, 10, lease, t0())
                .await
                .unwrap()
                .is_empty()
        );
        let later = t0() + chrono::Duration::seconds(11);
        let claimed = queue
            .claim("w2", &businesses, &systems, 10, lease, later)
            .await
            .unwrap();
        assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a]);
        let done = Finish {
            disposition: jobs::Disposition::Done,
            attempt: 2,
            error: None,
            journal: entry(a, 2, "delivered"),
            ..retry_of(a)
        };
        queue.finish("w2", &[done], later).await.unwrap();
        let claimed = queue
            .claim("w2", &businesses, &systems, 10, lease, later)
            .await
            .unwrap();
        assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![b]);
    }
}

#[tokio::test]
async fn a_completion_claims_the_next_batch_and_unstarted_jobs_go_back_untouched() {
    for store in testing::all().await {
        let queue = Queue::new(store.clone());
        let mut ids = Vec::new();
        for (key, ordering) in [("a", Some("k1")), ("b", Some("k1")), ("c", None)] {
            ids.push(
                queue
                    .enqueue(&job(key, ordering), t0())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        let systems = vec!["crm".to_string()];
        let businesses = vec!["b".to_string()];
        let lease = Duration::from_secs(60);
        let first = queue
            .claim("w1", &businesses, &systems, 1, lease, t0())
            .await
            .unwrap();
        assert_eq!(first.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a]);
        // a's completion and the next claim commit together: b, a's successor, is free to go
        // in that same transaction.
        let next = NextClaim {
            businesses: &businesses,
            systems: &systems,
            limit: 10,
            lease,
        };
        let (held, more) = queue
            .finish_and_claim("w1", &[retry_of(a)], t0(), Some(next))
            .await
            .unwrap();
        assert_eq!(held, 1);
        let mut more_ids: Vec<i64> = more.iter().map(|j| j.id).collect();
        more_ids.sort_unstable();
        assert_eq!(more_ids, vec![b, c]);
        assert!(more.iter().all(|j| j.attempts == 1));
        // Nobody else can take them meanwhile.
        assert!(
            queue
                .claim("w2", &businesses, &systems, 10, lease, t0())
                .await
                .unwrap()
                .is_empty()
        );
        // The worker stops before starting them: they return as they were, no attempt counted
        // and none journaled.
        let held: Vec<(i64, i64)> = more.iter().map(|j| (j.id, j.attempts)).collect();
        queue.unclaim("w1", &held).await.unwrap();
        for id in [b, c] {
            let j = queue.job(id).await.unwrap().unwrap();
            assert_eq!((j.state, j.attempts), (JobState::Pending, 0));
        }
        let again = queue
            .claim("w2", &businesses, &systems, 10, lease, t0())
            .await
            .unwrap();
        assert_eq!(again.len(), 2);
    }
}

fn entry(job_id: i64, attempt: i64, outcome: &str) -> journal::JournalEntry {
    journal::JournalEntry {
        at: t0(),
        business_id: "b".into(),
        system: "crm".into(),
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

#[tokio::test]
async fn a_dead_workers_job_returns_after_its_lease_and_the_old_worker_is_fenced_out() {
    for store in testing::all().await {
        let queue = Queue::new(store.clone());
        let id = queue.enqueue(&job("k", None), t0()).await.unwrap().unwrap();
        let systems = vec!["crm".to_string()];
        let businesses = vec!["b".to_string()];
        let lease = Duration::from_secs(30);
        assert_eq!(
            queue
                .claim("dead-worker", &businesses, &systems, 1, lease, t0())
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            queue
                .reap_expired(t0() + chrono::Duration::seconds(10))
                .await
                .unwrap(),
            0
        );
        let later = t0() + chrono::Duration::seconds(31);
        assert_eq!(queue.reap_expired(later).await.unwrap(), 1);
        let again = queue
            .claim("w2", &businesses, &systems, 1, lease, later)
            .await
            .unwrap();
        assert_eq!(again[0].attempts, 2);
        assert!(
            again[0].maybe_delivered_before(),
            "the next attempt must search first"
        );
        // The first worker wakes up and tries to record its attempt: ignored.
        assert_eq!(
            queue
                .finish("dead-worker", &[retry_of(id)], later)
                .await
                .unwrap(),
            0
        );
        let rows = read_journal(
            &store,
            &JournalFilter {
                job_id: Some(id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            rows.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>(),
            vec!["abandoned"]
        );
        assert_eq!(
            queue.job(id).await.unwrap().unwrap().state,
            JobState::Running
        );
    }
}

#[tokio::test]
async fn three_hour_outage_retries_every_5_to_15_minutes_alerts_once_and_recovers() {
    for store in testing::all().await {
        let clock = Arc::new(FakeClock::new(t0()));
        let target = Scripted::new(clock.clone());
        let outage_end = t0() + chrono::Duration::hours(3);
        *target.down_until.lock().unwrap() = outage_end;
        let sink = MemorySink::default();
        let engine = engine(&store, clock.clone(), target.clone(), &sink);
        for i in 0..5 {
            engine
                .queue()
                .enqueue(&job(&format!("k{i}"), None), t0())
                .await
                .unwrap();
        }
        drive(
            &engine,
            &clock,
            t0() + chrono::Duration::hours(6),
            &[outage_end],
        )
        .await;

        let mut delivered = target.delivered();
        delivered.sort();
        assert_eq!(delivered, vec!["k0", "k1", "k2", "k3", "k4"]);
        let journal = read_journal(&store, &JournalFilter::default())
            .await
            .unwrap();
        assert_eq!(
            journal.len(),
            target.calls.lock().unwrap().len(),
            "a row per attempt"
        );
        for key in 0..5 {
            let id = engine
                .queue()
                .jobs_in_state(JobState::Done)
                .await
                .unwrap()
                .iter()
                .find(|j| j.idempotency_key == format!("k{key}"))
                .unwrap()
                .id;
            let times: Vec<DateTime<Utc>> = journal
                .iter()
                .filter(|e| e.job_id == id)
                .map(|e| e.at)
                .collect();
            assert!(
                times.len() > 15,
                "a 3 h outage means many attempts, got {}",
                times.len()
            );
            for pair in times.windows(2) {
                let gap = pair[1] - pair[0];
                if pair[0] - t0() >= chrono::Duration::minutes(30) {
                    assert!(
                        gap >= chrono::Duration::minutes(5) && gap <= chrono::Duration::minutes(15),
                        "gap {gap} at {}",
                        pair[0]
                    );
                }
            }
            let last = *times.last().unwrap();
            assert!(last >= outage_end && last - outage_end <= chrono::Duration::minutes(15));
        }
        let alerts = sink.alerts();
        assert_eq!(
            alerts.iter().map(|a| a.kind).collect::<Vec<_>>(),
            vec![AlertKind::Down, AlertKind::Recovered]
        );
        let down_after = alerts[0].at - t0();
        assert!(
            down_after >= chrono::Duration::hours(2)
                && down_after <= chrono::Duration::minutes(135),
            "{down_after}"
        );
        assert_eq!(alerts[0].since, t0());
        let health = health::system_health(&store, Duration::from_secs(3600), clock.now())
            .await
            .unwrap();
        assert_eq!(
            health[0].health,
            health::Health::Degraded,
            "failed and recovered within the hour"
        );
    }
}

#[tokio::test]
async fn a_permanent_error_kills_the_job_with_the_message_and_retry_delivers_it() {
    for store in testing::all().await {
        let clock = Arc::new(FakeClock::new(t0()));
        let target = Scripted::new(clock.clone());
        *target.permanent.lock().unwrap() = true;
        let sink = MemorySink::default();
        let engine = engine(&store, clock.clone(), target.clone(), &sink);
        let id = engine
            .queue()
            .enqueue(&job("k", None), t0())
            .await
            .unwrap()
            .unwrap();
        engine.run_due().await.unwrap();
        let dead = engine.queue().job(id).await.unwrap().unwrap();
        assert_eq!(dead.state, JobState::Dead);
        assert_eq!(dead.attempts, 1, "no retries for a permanent error");
        assert_eq!(
            dead.last_error.as_deref(),
            Some("HTTP 422: phone +791******89 is not valid for pipeline 7")
        );
        assert!(sink.alerts().is_empty(), "bad data is not an outage");

        *target.permanent.lock().unwrap() = false;
        let mut out = Vec::new();
        let args = cli::QueueArgs {
            command: Some(cli::QueueCommand::Retry {
                id: Some(id),
                dead: false,
                system: None,
                business: None,
            }),
        };
        cli::queue_command(&store, &args, clock.now(), &mut out)
            .await
            .unwrap();
        engine.run_due().await.unwrap();
        assert_eq!(
            engine.queue().job(id).await.unwrap().unwrap().state,
            JobState::Done
        );
        assert_eq!(
            store
                .external_id("b", "lead", "k", "crm")
                .await
                .unwrap()
                .as_deref(),
            Some("ext-k")
        );
    }
}

#[tokio::test]
async fn auth_errors_refresh_once_then_die_with_one_alert() {
    for store in testing::all().await {
        let clock = Arc::new(FakeClock::new(t0()));
        let target = Scripted::new(clock.clone());
        let sink = MemorySink::default();
        let engine = engine(&store, clock.clone(), target.clone(), &sink);
        *target.auth_failures.lock().unwrap() = 1;
        let ok = engine
            .queue()
            .enqueue(&job("refreshed", None), t0())
            .await
            .unwrap()
            .unwrap();
        engine.run_due().await.unwrap();
        assert_eq!(
            engine.queue().job(ok).await.unwrap().unwrap().state,
            JobState::Done
        );
        assert_eq!(*target.refreshes.lock().unwrap(), 1);

        *target.auth_failures.lock().unwrap() = 100;
        let a = engine
            .queue()
            .enqueue(&job("a", None), t0())
            .await
            .unwrap()
            .unwrap();
        let b = engine
            .queue()
            .enqueue(&job("b", None), t0())
            .await
            .unwrap()
            .unwrap();
        engine.run_due().await.unwrap();
        for id in [a, b] {
            let j = engine.queue().job(id).await.unwrap().unwrap();
            assert_eq!(
                (j.state, j.attempts),
                (JobState::Dead, 2),
                "one refresh, one retry"
            );
        }
        assert_eq!(
            sink.alerts().iter().map(|a| a.kind).collect::<Vec<_>>(),
            vec![AlertKind::AuthFailed]
        );
    }
}

#[tokio::test]
async fn an_unpaid_account_keeps_jobs_waiting_and_alerts_once_at_once() {
    for store in testing::all().await {
        let clock = Arc::new(FakeClock::new(t0()));
        let target = Scripted::new(clock.clone());
        let sink = MemorySink::default();
        let engine = engine(&store, clock.clone(), target.clone(), &sink);
        *target.unpaid.lock().unwrap() = true;
        let mut ids = Vec::new();
        for key in ["a", "b"] {
            ids.push(
                engine
                    .queue()
                    .enqueue(&job(key, None), t0())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        // Three hours unpaid: the jobs keep waiting on the steady 5–15 minute schedule.
        for _ in 0..18 {
            engine.run_due().await.unwrap();
            clock.advance(chrono::Duration::minutes(10));
        }
        for id in &ids {
            let j = engine.queue().job(*id).await.unwrap().unwrap();
            assert_eq!(j.state, JobState::Pending, "{j:?}");
            let wait = j.run_at - clock.now();
            assert!(wait <= chrono::Duration::minutes(15), "{wait:?}");
        }
        let kinds: Vec<AlertKind> = sink.alerts().iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            vec![AlertKind::PaymentRequired],
            "one alert, sent with the first refusal, no Down storm"
        );
        assert_eq!(
            sink.alerts()[0].at,
            t0(),
            "the alert does not wait for alert_after"
        );

        *target.unpaid.lock().unwrap() = false;
        clock.advance(chrono::Duration::minutes(15));
        engine.run_due().await.unwrap();
        assert_eq!(target.delivered(), vec!["a".to_string(), "b".to_string()]);
        let kinds: Vec<AlertKind> = sink.alerts().iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            vec![AlertKind::PaymentRequired, AlertKind::Recovered]
        );
        let journal = read_journal(
            &store,
            &JournalFilter {
                failed_only: true,
                ..JournalFilter::default()
            },
        )
        .await
        .unwrap();
        assert!(
            journal.iter().all(|e| e.outcome == "payment_required"),
            "{journal:?}"
        );
    }
}

#[tokio::test]
async fn a_job_older_than_max_age_goes_dead() {
    for store in testing::all().await {
        let clock = Arc::new(FakeClock::new(t0()));
        let target = Scripted::new(clock.clone());
        *target.down_until.lock().unwrap() = t0() + chrono::Duration::days(30);
        let sink = MemorySink::default();
        let engine = engine(&store, clock.clone(), target.clone(), &sink);
        let id = engine
            .queue()
            .enqueue(&job("k", None), t0())
            .await
            .unwrap()
            .unwrap();
        drive(&engine, &clock, t0() + chrono::Duration::days(8), &[]).await;
        let j = engine.queue().job(id).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Dead);
        assert!(j.last_error.unwrap().starts_with("gave up after max_age"));
        assert!(clock.now() - t0() >= chrono::Duration::days(7));
        assert_eq!(
            sink.alerts().len(),
            1,
            "one Down alert for a week-long outage"
        );
    }
}

struct CountingInbox(Mutex<Vec<String>>);

#[async_trait]
impl InboxHandler for CountingInbox {
    async fn process(
        &self,
        message: &InboxMessage,
        _ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        self.0.lock().unwrap().push(message.body.clone());
        Ok(Delivered::done())
    }
}

#[tokio::test]
async fn a_webhook_received_twice_is_stored_without_secrets_and_processed_once() {
    for store in testing::all().await {
        let mut headers = BTreeMap::new();
        headers.insert("Authorization".to_string(), "Bearer secret".to_string());
        headers.insert("x-event-id".to_string(), "ev1".to_string());
        let first = inbox::receive(&store, "b", "yclients", "ev1", &headers, "{\"a\":1}", t0())
            .await
            .unwrap();
        let second = inbox::receive(&store, "b", "yclients", "ev1", &headers, "{\"a\":1}", t0())
            .await
            .unwrap();
        let Received::New(id) = first else {
            panic!("first delivery must be new")
        };
        assert_eq!(second, Received::Duplicate);
        let stored = inbox::message(&store, "b", id).await.unwrap().unwrap();
        assert_eq!(
            stored.headers.keys().collect::<Vec<_>>(),
            vec!["x-event-id"]
        );

        let handler = Arc::new(CountingInbox(Mutex::new(Vec::new())));
        let mut dispatcher = InboxDispatcher::default();
        dispatcher.register("yclients", handler.clone());
        let clock = Arc::new(FakeClock::new(t0()));
        let mut engine = Engine::new(
            store.clone(),
            clock,
            SyncConfig::default(),
            Alerts::default(),
            "b",
        );
        engine.register(inbox::INBOX_SYSTEM, Arc::new(dispatcher));
        engine.run_due().await.unwrap();
        engine.run_due().await.unwrap();
        assert_eq!(*handler.0.lock().unwrap(), vec!["{\"a\":1}".to_string()]);
    }
}

#[tokio::test]
async fn the_journal_is_append_only() {
    for store in testing::all().await {
        let clock = Arc::new(FakeClock::new(t0()));
        let target = Scripted::new(clock.clone());
        let engine = engine(&store, clock, target, &MemorySink::default());
        engine.queue().enqueue(&job("k", None), t0()).await.unwrap();
        engine.run_due().await.unwrap();
        assert!(
            sqlx::query("UPDATE sync_journal SET outcome = 'x'")
                .execute(store.pool())
                .await
                .is_err()
        );
        assert!(
            sqlx::query("DELETE FROM sync_journal")
                .execute(store.pool())
                .await
                .is_err()
        );
        assert_eq!(
            read_journal(&store, &JournalFilter::default())
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn purging_removes_only_delivered_jobs_past_retention() {
    for store in testing::all().await {
        let queue = Queue::new(store.clone());
        let mut ids = Vec::new();
        for key in [
            "old-done",
            "new-done",
            "old-dead",
            "old-pending",
            "old-running",
        ] {
            ids.push(
                queue
                    .enqueue(&job(key, Some("k")), t0())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        let old = crate::store::to_millis(t0());
        let new = crate::store::to_millis(t0() + chrono::Duration::days(8));
        for (id, state, finished) in [
            (ids[0], "done", Some(old)),
            (ids[1], "done", Some(new)),
            (ids[2], "dead", Some(old)),
            (ids[3], "pending", None),
            (ids[4], "running", None),
        ] {
            sqlx::query("UPDATE sync_jobs SET state = $1, finished_at = $2 WHERE id = $3")
                .bind(state)
                .bind(finished)
                .bind(id)
                .execute(store.pool())
                .await
                .unwrap();
        }
        let cutoff = t0() + chrono::Duration::days(1);
        assert_eq!(queue.purge_done(cutoff).await.unwrap(), 1);
        assert!(queue.job(ids[0]).await.unwrap().is_none());
        for id in &ids[1..] {
            assert!(queue.job(*id).await.unwrap().is_some(), "job {id} kept");
        }
        assert_eq!(queue.purge_done(cutoff).await.unwrap(), 0);
    }
}

/// `/health/ready` reads the engine's own records: an open outage (the system's, or a refused
/// credential) is down with its start and error, failures without one are degraded, and a
/// payload the system rejects leaves it up.
#[tokio::test]
async fn integration_health_is_down_while_an_outage_is_open() {
    for store in testing::all().await {
        let now = t0();
        let systems: Vec<String> = ["amocrm", "telegram", "yclients"]
            .map(String::from)
            .to_vec();
        let mut conn = store.pool().acquire().await.unwrap();
        for (system, outcome) in [
            ("amocrm", "transient"),
            ("telegram", "delivered"),
            ("telegram", "transient"),
            ("yclients", "permanent"),
        ] {
            crate::sync::journal::insert_journal_in(
                &mut conn,
                &crate::sync::journal::JournalEntry {
                    at: now,
                    business_id: "b1".into(),
                    system: system.into(),
                    operation: "op".into(),
                    job_id: 1,
                    attempt: 1,
                    outcome: outcome.into(),
                    http_status: None,
                    duration_ms: 5,
                    error: Some("boom".into()),
                },
            )
            .await
            .unwrap();
        }
        drop(conn);
        health::record_failure(&store, "b1", "amocrm", "HTTP 503", Duration::ZERO, now)
            .await
            .unwrap();
        // Another business's outage is not ours.
        health::record_failure(&store, "b2", "yclients", "HTTP 500", Duration::ZERO, now)
            .await
            .unwrap();
        let later = now + chrono::Duration::minutes(5);
        let states =
            health::integration_health(&store, "b1", &systems, Duration::from_secs(3600), later)
                .await
                .unwrap();
        let by = |s: &str| states.iter().find(|h| h.system == s).unwrap().clone();
        let amo = by("amocrm");
        assert_eq!(amo.state, health::Health::Down);
        assert_eq!(amo.since, Some(now));
        assert_eq!(amo.last_error.as_deref(), Some("HTTP 503"));
        assert_eq!((amo.delivered, amo.failed), (0, 1));
        assert_eq!(by("telegram").state, health::Health::Degraded);
        assert_eq!(by("yclients").state, health::Health::Up);

        // A refused credential is the system's outage too; a delivery ends both.
        health::record_success(&store, "b1", "amocrm", later)
            .await
            .unwrap();
        health::record_failure(
            &store,
            "b1",
            "amocrm#auth",
            "HTTP 401",
            Duration::ZERO,
            later,
        )
        .await
        .unwrap();
        let states =
            health::integration_health(&store, "b1", &systems, Duration::from_secs(3600), later)
                .await
                .unwrap();
        assert_eq!(states[0].state, health::Health::Down);
        assert_eq!(states[0].last_error.as_deref(), Some("HTTP 401"));
        health::record_success(&store, "b1", "amocrm#auth", later)
            .await
            .unwrap();
        let states =
            health::integration_health(&store, "b1", &systems, Duration::from_secs(3600), later)
                .await
                .unwrap();
        assert_eq!(states[0].state, health::Health::Degraded);
        assert_eq!(states[0].since, None);
    }
}

/// A minimal SMTP server for one test: answers the dialogue lettre speaks over a plain
/// connection and keeps every message's envelope recipients and DATA text.
async fn fake_smtp() -> (u16, Arc<Mutex<Vec<(Vec<String>, String)>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let kept = mails.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 fake ESMTP\r\n").await?;
                let mut rcpt = Vec::new();
                while let Some(line) = lines.next_line().await? {
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-fake\r\n250 8BITMIME\r\n",
                        "HELO" | "MAIL" | "RSET" | "NOOP" => b"250 OK\r\n",
                        "RCPT" => {
                            rcpt.push(line[4..].trim().to_string());
                            b"250 OK\r\n"
                        }
                        "DATA" => {
                            write.write_all(b"354 end with .\r\n").await?;
                            let mut data = String::new();
                            while let Some(l) = lines.next_line().await? {
                                if l == "." {
                                    break;
                                }
                                data.push_str(&l);
                                data.push('\n');
                            }
                            kept.lock().unwrap().push((std::mem::take(&mut rcpt), data));
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await?;
                            break;
                        }
                        _ => b"502 not implemented\r\n",
                    };
                    write.write_all(answer).await?;
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    (port, mails)
}

#[tokio::test]
async fn an_outage_alert_arrives_as_one_email_naming_the_system_in_its_subject() {
    for store in testing::all().await {
        let (port, mails) = fake_smtp().await;
        let email: EmailAlertsConfig = serde_json::from_value(serde_json::json!({
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "from": "Zapis <alerts@salon.example>",
            "to": ["owner@salon.example", "ops@agency.example"],
        }))
        .unwrap();
        email.validate().unwrap();
        let clock = Arc::new(FakeClock::new(t0()));
        let target = Scripted::new(clock.clone());
        *target.down_until.lock().unwrap() = t0() + chrono::Duration::hours(3);
        let sink = MemorySink::default();
        let mut engine = Engine::new(
            store.clone(),
            clock.clone(),
            SyncConfig::default(),
            Alerts::new(vec![
                Arc::new(sink.clone()),
                Arc::new(EmailSink::new(&email).unwrap()),
            ]),
            "b",
        );
        engine.register("crm", target);
        engine
            .queue()
            .enqueue(&job("k0", None), t0())
            .await
            .unwrap();
        drive(&engine, &clock, t0() + chrono::Duration::minutes(150), &[]).await;

        assert_eq!(
            sink.alerts().iter().map(|a| a.kind).collect::<Vec<_>>(),
            vec![AlertKind::Down]
        );
        let mails = mails.lock().unwrap().clone();
        assert_eq!(mails.len(), 1, "{mails:?}");
        let (rcpt, data) = &mails[0];
        assert_eq!(
            rcpt,
            &["<owner@salon.example>", "<ops@agency.example>"]
                .map(|r| format!("TO:{r}"))
                .to_vec(),
            "{rcpt:?}"
        );
        let subject = data
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_else(|| panic!("a subject in {data}"));
        assert_eq!(subject, "zapis: crm is down (b)");
        assert!(
            data.contains("From: Zapis <alerts@salon.example>"),
            "{data}"
        );
        assert!(
            data.contains("HTTP 503"),
            "the last error in the body: {data}"
        );
    }
}
