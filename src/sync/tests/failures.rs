//! How the engine answers each kind of failure: outages, bad data, refused credentials, an
//! unpaid account and jobs too old to keep trying.

use super::*;
use crate::domain::bid;

#[tokio::test]
async fn three_hour_outage_retries_every_5_to_15_minutes_alerts_once_and_recovers() {
    for store in testing::all().await {
        let (clock, target, sink, engine) = rig(&store);
        let outage_end = t0() + chrono::Duration::hours(3);
        *target.down_until.lock().unwrap() = outage_end;
        for i in 0..5 {
            enqueue(engine.queue(), &format!("k{i}"), None).await;
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
        let (clock, target, sink, engine) = rig(&store);
        *target.permanent.lock().unwrap() = true;
        let id = enqueue(engine.queue(), "k", None).await;
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
                .external_id(&bid("b"), "lead", "k", System::AmoCrm)
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
        let (_, target, sink, engine) = rig(&store);
        *target.auth_failures.lock().unwrap() = 1;
        let ok = enqueue(engine.queue(), "refreshed", None).await;
        engine.run_due().await.unwrap();
        assert_eq!(
            engine.queue().job(ok).await.unwrap().unwrap().state,
            JobState::Done
        );
        assert_eq!(*target.refreshes.lock().unwrap(), 1);

        *target.auth_failures.lock().unwrap() = 100;
        let a = enqueue(engine.queue(), "a", None).await;
        let b = enqueue(engine.queue(), "b", None).await;
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
        let (clock, target, sink, engine) = rig(&store);
        *target.unpaid.lock().unwrap() = true;
        let mut ids = Vec::new();
        for key in ["a", "b"] {
            ids.push(enqueue(engine.queue(), key, None).await);
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
        let (clock, target, sink, engine) = rig(&store);
        *target.down_until.lock().unwrap() = t0() + chrono::Duration::days(30);
        let id = enqueue(engine.queue(), "k", None).await;
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
