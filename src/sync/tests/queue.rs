//! The queue itself: outbox transactions, ordering keys, claims, leases and purging.

use super::*;
use crate::store::StoreError;

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
        let a = enqueue(&queue, "a", Some("booking-1")).await;
        let b = enqueue(&queue, "b", Some("booking-1")).await;
        let c = enqueue(&queue, "c", Some("booking-2")).await;
        let lease = Duration::from_secs(60);
        let claimed: Vec<i64> = claim(&queue, "w1", 10, lease, t0())
            .await
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
        assert!(claim(&queue, "w2", 10, lease, t0()).await.is_empty());
        let later = t0() + chrono::Duration::seconds(11);
        let claimed = claim(&queue, "w2", 10, lease, later).await;
        assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a]);
        let done = Finish {
            disposition: jobs::Disposition::Done,
            attempt: 2,
            error: None,
            journal: entry(a, 2, "delivered"),
            ..retry_of(a)
        };
        queue.finish("w2", &[done], later).await.unwrap();
        let claimed = claim(&queue, "w2", 10, lease, later).await;
        assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![b]);
    }
}

#[tokio::test]
async fn a_completion_claims_the_next_batch_and_unstarted_jobs_go_back_untouched() {
    for store in testing::all().await {
        let queue = Queue::new(store.clone());
        let mut ids = Vec::new();
        for (key, ordering) in [("a", Some("k1")), ("b", Some("k1")), ("c", None)] {
            ids.push(enqueue(&queue, key, ordering).await);
        }
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        let systems = vec![System::AmoCrm];
        let businesses = vec!["b".to_string()];
        let lease = Duration::from_secs(60);
        let first = claim(&queue, "w1", 1, lease, t0()).await;
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
        assert!(claim(&queue, "w2", 10, lease, t0()).await.is_empty());
        // The worker stops before starting them: they return as they were, no attempt counted
        // and none journaled.
        let held: Vec<(i64, i64)> = more.iter().map(|j| (j.id, j.attempts)).collect();
        queue.unclaim("w1", &held).await.unwrap();
        for id in [b, c] {
            let j = queue.job(id).await.unwrap().unwrap();
            assert_eq!((j.state, j.attempts), (JobState::Pending, 0));
        }
        let again = claim(&queue, "w2", 10, lease, t0()).await;
        assert_eq!(again.len(), 2);
    }
}

#[tokio::test]
async fn a_dead_workers_job_returns_after_its_lease_and_the_old_worker_is_fenced_out() {
    for store in testing::all().await {
        let queue = Queue::new(store.clone());
        let id = enqueue(&queue, "k", None).await;
        let lease = Duration::from_secs(30);
        assert_eq!(claim(&queue, "dead-worker", 1, lease, t0()).await.len(), 1);
        assert_eq!(
            queue
                .reap_expired(t0() + chrono::Duration::seconds(10))
                .await
                .unwrap(),
            0
        );
        let later = t0() + chrono::Duration::seconds(31);
        assert_eq!(queue.reap_expired(later).await.unwrap(), 1);
        let again = claim(&queue, "w2", 1, lease, later).await;
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
            ids.push(enqueue(&queue, key, Some("k")).await);
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

/// Only zapis writes system names, so a row naming one it does not know was written by hand or
/// by a newer zapis: it reads back as a corrupt row naming the value, never as a guess or a
/// panic, and a worker never claims it (claims ask for the systems it has handlers for).
#[tokio::test]
async fn a_row_naming_an_unknown_system_reads_as_corrupt_naming_the_name() {
    for store in testing::all().await {
        let queue = Queue::new(store.clone());
        let id = queue
            .enqueue(&job("k1", None), t0())
            .await
            .unwrap()
            .unwrap();
        sqlx::query("UPDATE sync_jobs SET system = 'flaky' WHERE id = $1")
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
        let errors = [
            queue.job(id).await.expect_err("the job"),
            queue.stats().await.expect_err("the counts"),
            queue.counts_of(&bid("b")).await.expect_err("the gauges"),
        ];
        for err in errors {
            assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
            assert!(err.to_string().contains("`flaky`"), "{err}");
        }
        let claimed = queue
            .claim(
                "w1",
                &["b".to_string()],
                &System::ALL,
                10,
                Duration::from_secs(60),
                t0(),
            )
            .await
            .expect("a claim skips what no handler asked for");
        assert!(claimed.is_empty(), "{claimed:?}");

        let entry = crate::sync::journal::JournalEntry {
            at: t0(),
            business_id: "b".into(),
            system: System::AmoCrm,
            operation: "create_lead".into(),
            job_id: id,
            attempt: 1,
            outcome: "delivered".into(),
            http_status: None,
            duration_ms: 1,
            error: None,
        };
        crate::sync::journal::insert_journal(&store, &entry)
            .await
            .unwrap();
        let read = read_journal(&store, &JournalFilter::default()).await;
        assert_eq!(read.unwrap(), vec![entry]);
        // The journal is append-only: the odd row is a new one.
        sqlx::query(
            "INSERT INTO sync_journal (at, business_id, system, operation, job_id, attempt, \
               outcome, http_status, duration_ms, error) \
             VALUES (1, 'b', 'test', 'op', 0, 1, 'delivered', NULL, 1, NULL)",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let err = read_journal(&store, &JournalFilter::default())
            .await
            .expect_err("the journal");
        assert!(err.to_string().contains("`test`"), "{err}");
    }
}

/// A worker records a batch and claims its next in one round trip, and the answer never
/// reaches it: the batch it recorded stays done once, and the batch it claimed without knowing
/// comes back when its lease runs out, its attempt journaled as abandoned, to be delivered once.
#[tokio::test]
async fn a_completion_whose_answer_is_lost_leaves_each_job_done_once() {
    for store in testing::all().await {
        let queue = Queue::new(store.clone());
        let ids: Vec<i64> =
            futures::future::join_all(["a", "b", "c", "d"].map(|key| enqueue(&queue, key, None)))
                .await;
        let systems = vec![System::AmoCrm];
        let businesses = vec!["b".to_string()];
        let lease = Duration::from_secs(30);
        let first = claim(&queue, "w1", 2, lease, t0()).await;
        let next = NextClaim {
            businesses: &businesses,
            systems: &systems,
            limit: 2,
            lease,
        };
        let finishes: Vec<Finish> = first.iter().map(|j| retry_of(j.id)).collect();
        // The write is done; what it answered is dropped, as a lost answer would be.
        let _lost = queue
            .finish_and_claim("w1", &finishes, t0(), Some(next))
            .await
            .unwrap();
        let later = t0() + chrono::Duration::seconds(31);
        assert_eq!(queue.reap_expired(later).await.unwrap(), 2);
        let again = claim(&queue, "w2", 10, lease, later).await;
        assert_eq!(again.len(), 2, "the claimed batch is back, and only it");
        assert!(again.iter().all(|j| j.maybe_delivered_before()));
        let finishes: Vec<Finish> = again
            .iter()
            .map(|j| Finish {
                attempt: j.attempts,
                journal: entry(j.id, j.attempts, "delivered"),
                ..retry_of(j.id)
            })
            .collect();
        assert_eq!(queue.finish("w2", &finishes, later).await.unwrap(), 2);
        let journal = read_journal(&store, &JournalFilter::default())
            .await
            .unwrap();
        for id in &ids {
            let job = queue.job(*id).await.unwrap().unwrap();
            assert_eq!(job.state, JobState::Done, "job {id}");
            let outcomes: Vec<&str> = journal
                .iter()
                .filter(|e| e.job_id == *id)
                .map(|e| e.outcome.as_str())
                .collect();
            assert_eq!(
                outcomes.iter().filter(|o| **o == "delivered").count(),
                1,
                "job {id}: {outcomes:?}"
            );
        }
    }
}

/// A batch's external ids are recorded with its completion, only for the jobs the worker still
/// held, and one per key when two of its jobs link the same one.
#[tokio::test]
async fn links_are_recorded_only_for_held_jobs_and_once_per_key() {
    for store in testing::all().await {
        let queue = Queue::new(store.clone());
        let mut ids = Vec::new();
        for key in ["a", "b", "c", "d"] {
            ids.push(enqueue(&queue, key, None).await);
        }
        let lease = Duration::from_secs(30);
        assert_eq!(claim(&queue, "w1", 1, lease, t0()).await.len(), 1);
        assert_eq!(claim(&queue, "w1", 3, lease * 4, t0()).await.len(), 3);
        // w1 loses `a` to an expired lease; w2 takes it over.
        let later = t0() + chrono::Duration::seconds(31);
        assert_eq!(queue.reap_expired(later).await.unwrap(), 1);
        assert_eq!(claim(&queue, "w2", 1, lease, later).await[0].id, ids[0]);
        let linked = |id: i64, attempt: i64, entity_id: &str, external: &str| Finish {
            attempt,
            link: Some(jobs::LinkRecord {
                entity: "lead".into(),
                entity_id: entity_id.into(),
                external_id: external.into(),
            }),
            journal: entry(id, attempt, "delivered"),
            ..retry_of(id)
        };
        let finishes = [
            linked(ids[0], 1, "a", "ext-a"),
            linked(ids[1], 1, "b", "ext-b"),
            linked(ids[2], 1, "same", "ext-c"),
            linked(ids[3], 1, "same", "ext-d"),
        ];
        assert_eq!(queue.finish("w1", &finishes, later).await.unwrap(), 3);
        let external = |entity_id: &'static str| {
            let store = store.clone();
            async move {
                store
                    .external_id(&bid("b"), "lead", entity_id, System::AmoCrm)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(external("a").await, None, "w1 no longer held `a`");
        assert_eq!(external("b").await.as_deref(), Some("ext-b"));
        assert_eq!(external("same").await.as_deref(), Some("ext-c"));
    }
}

/// A batch goes in whole, in its order, once per key: a key already queued or repeated in the
/// batch keeps its first job, and what a job carries comes back as it went in.
#[tokio::test]
async fn a_batch_is_enqueued_in_order_once_per_key_and_reads_back_as_given() {
    for store in testing::all().await {
        let queue = Queue::new(store.clone());
        let first = enqueue(&queue, "k0", None).await;
        let mut odd = job("k2", Some("chat-1"));
        odd.payload = serde_json::json!({
            "name": "Анна \"О'Нил\" \\ 🙂",
            "nested": {"n": 1.5, "list": [null, true]},
        });
        let batch = vec![
            job("k1", None),
            odd.clone(),
            job("k0", None),
            job("k1", Some("chat-2")),
            job("k3", Some("chat-1")),
        ];
        let inserted = queue.enqueue_batch(&batch, t0()).await.unwrap();
        assert_eq!(inserted, 3, "k0 was queued before and k1 is repeated");
        let mut ids = Vec::new();
        for id in first + 1..first + 100 {
            if let Some(j) = queue.job(id).await.unwrap() {
                ids.push((id, j));
            }
        }
        let keys: Vec<&str> = ids
            .iter()
            .map(|(_, j)| j.payload["key"].as_str().unwrap_or("odd"))
            .collect();
        assert_eq!(keys, ["k1", "odd", "k3"], "ids follow the batch's order");
        let (_, k1) = &ids[0];
        assert_eq!(k1.ordering_key, None, "the first k1 is kept");
        assert_eq!(k1.state, JobState::Pending);
        let (_, stored) = &ids[1];
        assert_eq!(stored.payload, odd.payload);
        assert_eq!(stored.ordering_key.as_deref(), Some("chat-1"));
        assert_eq!(stored.operation, "create_lead");
        assert_eq!(stored.business_id, "b");
        assert_eq!(stored.system, System::AmoCrm);
        assert_eq!(queue.enqueue_batch(&batch, t0()).await.unwrap(), 0);
    }
}

/// A due job of `system` for `business`, enqueued at `at` (its due time).
async fn enqueue_for(
    queue: &Queue,
    business: &str,
    system: System,
    key: &str,
    at: DateTime<Utc>,
) -> i64 {
    let job = NewJob {
        business_id: bid(business),
        system,
        ..job(key, None)
    };
    queue.enqueue(&job, at).await.unwrap().expect("a new key")
}

#[tokio::test]
async fn a_backlog_of_one_business_and_system_does_not_hold_back_the_others() {
    for store in testing::all().await {
        let queue = Queue::new(store.clone());
        let earlier = t0() - chrono::Duration::hours(1);
        for i in 0..8 {
            enqueue_for(&queue, "b", System::AmoCrm, &format!("backlog{i}"), earlier).await;
        }
        let mut others = vec![
            enqueue_for(&queue, "b", System::Yclients, "b-yclients", t0()).await,
            enqueue_for(&queue, "c", System::AmoCrm, "c-amocrm", t0()).await,
            enqueue_for(&queue, "c", System::Yclients, "c-yclients", t0()).await,
        ];
        let systems = vec![System::AmoCrm, System::Yclients];
        let businesses = vec!["b".to_string(), "c".to_string()];
        let lease = Duration::from_secs(60);
        // Four claims of two take eight jobs: the eight earliest would all be the backlog.
        let mut taken = Vec::new();
        for _ in 0..4 {
            let batch = queue
                .claim("w1", &businesses, &systems, 2, lease, t0())
                .await
                .unwrap();
            assert_eq!(batch.len(), 2, "{:?}", store.backend());
            taken.extend(batch.iter().map(|j| j.id));
        }
        others.retain(|id| !taken.contains(id));
        assert!(
            others.is_empty(),
            "{:?}: jobs left behind the backlog: {others:?}",
            store.backend()
        );
    }
}

#[tokio::test]
async fn a_claim_locks_only_the_jobs_it_takes() {
    for store in testing::all().await {
        if store.backend() != crate::store::Backend::Postgres {
            // SQLite locks the database, not rows: its claims take turns.
            continue;
        }
        let queue = Queue::new(store.clone());
        for system in [System::AmoCrm, System::Yclients] {
            for i in 0..8 {
                enqueue_for(&queue, "b", system, &format!("{system}{i}"), t0()).await;
            }
        }
        let (systems, businesses) = (vec![System::AmoCrm, System::Yclients], vec!["b".into()]);
        let next = NextClaim {
            businesses: &businesses,
            systems: &systems,
            limit: 4,
            lease: Duration::from_secs(60),
        };
        let mut tx = store.pool().begin().await.unwrap();
        let claimed = queue.claim_on(&mut tx, "w1", next, t0()).await.unwrap();
        assert_eq!(claimed.len(), 4);
        // While the claim is open, another worker can lock every job it did not take.
        let free: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT id FROM sync_jobs FOR UPDATE SKIP LOCKED) f",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(free, 12);
        tx.rollback().await.unwrap();
    }
}
