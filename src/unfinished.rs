//! Unfinished bookings become leads. A client who took a new booking to the contact step
//! (the consent before the phone, the phone, the name, the confirmation) and left without
//! confirming is worth a manager's call: once they have been away for `[crm]
//! unfinished_after`, the attempt becomes one CRM lead "Незавершённая запись" with what they
//! had chosen, what they had given and the chat, unless they booked in the meantime.
//!
//! The conversation records each attempt with its turns (`store::AttemptTurn`); the check
//! here runs under a lease and queues one job per attempt through the outbox;
//! `lifecycle::crm_jobs` delivers it through the same lead and notes steps as a booking's lead.

use crate::domain::BusinessId;
use crate::domain::System;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::domain::{Money, Source};
use crate::normalize::Phone;
use crate::shutdown::{Cadence, LeasedRounds};
use crate::store::{DueAttempt, Store, StoreError};
use crate::sync::NewJob;

/// The CRM job that makes an unfinished booking's lead.
pub const UNFINISHED_BOOKING: &str = "unfinished_booking";

/// Attempts one check hands over at most; the rest wait for the next check.
const BATCH: i64 = 200;

/// What a new booking had when the client was last in its contact step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnfinishedDraft {
    pub service_id: String,
    pub service: String,
    pub price: Money,
    pub duration_min: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Phone>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub source: Source,
}

/// The job's payload: which attempt. Its data stays in the store, where an erasure reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnfinishedJob {
    pub chat_key: String,
    /// Unix milliseconds: the attempt's id within its chat.
    pub started_at: i64,
}

/// The lead's key in the CRM, where a booking's lead has the booking id: the same for every
/// attempt to deliver it, so a retry after a lost answer finds the lead instead of making
/// another, and unlike any booking id.
pub fn lead_key(business_id: &BusinessId, chat_key: &str, started_at: DateTime<Utc>) -> String {
    crate::domain::lead_key_of(
        'u',
        &format!(
            "unfinished:{business_id}:{chat_key}:{}",
            started_at.timestamp_millis()
        ),
    )
}

/// One job per attempt: the key names the attempt, so neither a restart nor a second instance
/// can queue it twice; ordered with the chat's other jobs.
pub fn unfinished_job(business_id: &BusinessId, system: System, due: &DueAttempt) -> NewJob {
    let started_at = due.started_at.timestamp_millis();
    let payload = UnfinishedJob {
        chat_key: due.chat_key.clone(),
        started_at,
    };
    NewJob {
        business_id: business_id.clone(),
        system,
        operation: UNFINISHED_BOOKING.to_string(),
        payload: serde_json::to_value(payload).unwrap_or_default(),
        idempotency_key: format!("{UNFINISHED_BOOKING}:{}:{started_at}", due.chat_key),
        ordering_key: Some(format!("chat:{}", due.chat_key)),
    }
}

/// Hands every attempt idle for `after` over to the CRM as one job each; returns how many.
pub async fn tick(
    store: &Store,
    business_id: &BusinessId,
    system: System,
    after: Duration,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let after = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    let idle_since = now
        .checked_sub_signed(after)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut queued = 0;
    for due in store.due_unfinished(business_id, idle_since, BATCH).await? {
        let job = unfinished_job(business_id, system, &due);
        if store
            .enqueue_unfinished(business_id, &due, idle_since, &job, now)
            .await?
        {
            queued += 1;
        }
    }
    if queued > 0 {
        tracing::info!(leads = queued, "unfinished bookings handed to the CRM");
    }
    Ok(queued)
}

/// How often the check runs: a tenth of the pause, so a lead comes at most that late, and no
/// more often than every second nor less often than every minute.
pub fn check_every(after: Duration) -> Duration {
    (after / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// The periodic check, on the instance holding its lease.
pub fn spawn(
    store: Store,
    business_id: BusinessId,
    system: System,
    after: Duration,
    clock: std::sync::Arc<dyn Clock>,
    lease: crate::store::LoopLease,
    stop: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut rounds = LeasedRounds::new(Cadence::Pause(check_every(after)), lease, clock, stop);
    tokio::spawn(async move {
        while let Some(now) = rounds.next().await {
            if let Err(e) = tick(&store, &business_id, system, after, now).await {
                tracing::error!(error = %e, "unfinished bookings: cannot read the store");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bid;
    use crate::domain::{Booking, BookingStatus, Channel, ChatRef};
    use crate::store::retention::RetentionConfig;
    use crate::store::{AttemptTurn, testing};
    use crate::sync::{JobState, Queue};
    use chrono::TimeZone;

    const PAUSE: Duration = Duration::from_secs(30 * 60);

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 10, 9, 0, 0).unwrap() + chrono::Duration::minutes(min)
    }

    fn draft(phone: Option<&str>) -> String {
        serde_json::to_string(&UnfinishedDraft {
            service_id: "s1".into(),
            service: "Стрижка".into(),
            price: Money::from_rubles(1500),
            duration_min: 60,
            master_id: Some("m1".into()),
            master: Some("Ольга".into()),
            start: Some(t(24 * 60)),
            phone: phone.map(|p| Phone::parse(p).unwrap()),
            name: None,
            source: Source::direct(Channel::Telegram),
        })
        .unwrap()
    }

    async fn turn(store: &Store, chat: &str, attempt: AttemptTurn<'_>, at: DateTime<Utc>) {
        store
            .save_turn_with(&bid("b1"), chat, &[], None, attempt, "{}", at)
            .await
            .expect("turn");
    }

    async fn booking(store: &Store, id: &str, chat_id: &str, at: DateTime<Utc>, failed: bool) {
        store
            .insert_booking(&Booking {
                id: crate::domain::bk(id),
                business_id: bid("b1"),
                client_phone: Phone::parse("+79123456789").unwrap(),
                client_name: "Анна".into(),
                client_email: None,
                service_id: "s1".into(),
                service_name: "Стрижка".into(),
                master_id: "m1".into(),
                master_name: "Ольга".into(),
                start: t(24 * 60),
                duration_min: 60,
                price: Money::from_rubles(1500),
                status: if failed {
                    BookingStatus::Failed
                } else {
                    BookingStatus::Requested
                },
                source: Source::direct(Channel::Telegram),
                chat: Some(ChatRef::new(Channel::Telegram, chat_id)),
                external_id: None,
                created_at: at,
            })
            .await
            .expect("booking");
    }

    async fn leads(store: &Store) -> Vec<(System, UnfinishedJob)> {
        Queue::new(store.clone())
            .jobs_in_state(JobState::Pending)
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.operation == UNFINISHED_BOOKING)
            .map(|j| (j.system, serde_json::from_value(j.payload).unwrap()))
            .collect()
    }

    async fn rows(store: &Store) -> i64 {
        store.unfinished_count().await
    }

    /// A client who left in the contact step gets one lead once the pause has passed since
    /// their last turn there; checking again (another instance, a restart) adds nothing, and
    /// a later attempt of the same chat is a lead of its own.
    #[tokio::test]
    async fn an_attempt_left_in_the_contact_step_is_handed_over_once() {
        for store in testing::all().await {
            let chat = "telegram:1";
            turn(&store, chat, AttemptTurn::Enter(&draft(None)), t(0)).await;
            // Typing a phone that does not parse keeps the client in the step: the pause
            // counts from their last turn, the attempt is still the one begun at t(0).
            turn(&store, chat, AttemptTurn::Stay(&draft(None)), t(10)).await;
            assert_eq!(
                tick(&store, &bid("b1"), System::AmoCrm, PAUSE, t(35))
                    .await
                    .unwrap(),
                0
            );
            assert_eq!(
                tick(&store, &bid("b1"), System::AmoCrm, PAUSE, t(41))
                    .await
                    .unwrap(),
                1
            );
            let queued = leads(&store).await;
            assert_eq!(queued.len(), 1, "{:?}", store.backend());
            assert_eq!(queued[0].0, "amocrm");
            assert_eq!(queued[0].1.chat_key, chat);
            assert_eq!(queued[0].1.started_at, t(0).timestamp_millis());
            let attempt = store
                .unfinished_attempt(&bid("b1"), chat, t(0))
                .await
                .unwrap()
                .expect("kept for the job");
            assert_eq!(attempt.last_at, t(10));

            assert_eq!(
                tick(&store, &bid("b1"), System::AmoCrm, PAUSE, t(50))
                    .await
                    .unwrap(),
                0
            );
            // Even an attempt read before it was handed over is not queued twice.
            let due = DueAttempt {
                chat_key: chat.into(),
                started_at: t(0),
            };
            let job = unfinished_job(&bid("b1"), System::AmoCrm, &due);
            assert!(
                !store
                    .enqueue_unfinished(&bid("b1"), &due, t(40), &job, t(50))
                    .await
                    .unwrap()
            );
            assert_eq!(leads(&store).await.len(), 1);

            // Back on the same screen after the lead was made: the same attempt, no new lead.
            turn(&store, chat, AttemptTurn::Stay(&draft(None)), t(60)).await;
            assert_eq!(
                tick(&store, &bid("b1"), System::AmoCrm, PAUSE, t(200))
                    .await
                    .unwrap(),
                0
            );
            assert_eq!(
                store
                    .unfinished_attempt(&bid("b1"), chat, t(0))
                    .await
                    .unwrap()
                    .map(|a| a.last_at),
                Some(t(10)),
                "a handed-over attempt is left as it was handed over"
            );
            // Back a day later, a new time picked, and gone again: a second lead, for the
            // second attempt.
            turn(&store, chat, AttemptTurn::Enter(&draft(None)), t(1440)).await;
            assert_eq!(
                tick(&store, &bid("b1"), System::AmoCrm, PAUSE, t(1500))
                    .await
                    .unwrap(),
                1
            );
            let queued = leads(&store).await;
            assert_eq!(queued.len(), 2);
            assert_eq!(queued[1].1.started_at, t(1440).timestamp_millis());
            // Another business's check sees none of it.
            assert_eq!(
                tick(&store, &bid("b2"), System::AmoCrm, PAUSE, t(3000))
                    .await
                    .unwrap(),
                0
            );
        }
    }

    /// A client who books after all gets no unfinished lead: whether their booking turn closed
    /// the attempt, or the booking is only in the bookings table (a turn that died after it),
    /// or it came between the check's read and its write. A failed request is no booking.
    #[tokio::test]
    async fn an_attempt_followed_by_a_booking_is_never_handed_over() {
        for store in testing::all().await {
            // The booking turn closes the attempt.
            turn(&store, "telegram:2", AttemptTurn::Enter(&draft(None)), t(0)).await;
            booking(&store, "bk-2", "2", t(3), false).await;
            turn(&store, "telegram:2", AttemptTurn::Booked, t(3)).await;
            // Only the booking says so.
            turn(&store, "telegram:3", AttemptTurn::Enter(&draft(None)), t(0)).await;
            booking(&store, "bk-3", "3", t(20), false).await;
            // A booking from an earlier attempt does not close a later one; a failed one
            // closes nothing.
            booking(&store, "bk-4a", "4", t(-60), false).await;
            turn(&store, "telegram:4", AttemptTurn::Enter(&draft(None)), t(0)).await;
            booking(&store, "bk-4b", "4", t(5), true).await;
            assert_eq!(
                tick(&store, &bid("b1"), System::AmoCrm, PAUSE, t(120))
                    .await
                    .unwrap(),
                1
            );
            let queued = leads(&store).await;
            assert_eq!(queued.len(), 1, "{:?}", store.backend());
            assert_eq!(queued[0].1.chat_key, "telegram:4");
            assert_eq!(rows(&store).await, 1, "the booked attempts are gone");

            // Read as due, then booked before the check wrote: the booking wins.
            turn(
                &store,
                "telegram:5",
                AttemptTurn::Enter(&draft(None)),
                t(200),
            )
            .await;
            let due = store.due_unfinished(&bid("b1"), t(240), 10).await.unwrap();
            assert_eq!(due.len(), 1);
            booking(&store, "bk-5", "5", t(239), false).await;
            let job = unfinished_job(&bid("b1"), System::AmoCrm, &due[0]);
            assert!(
                !store
                    .enqueue_unfinished(&bid("b1"), &due[0], t(240), &job, t(270))
                    .await
                    .unwrap()
            );
            // Read as due, then back in the step before the check wrote: not idle any more.
            turn(
                &store,
                "telegram:6",
                AttemptTurn::Enter(&draft(None)),
                t(200),
            )
            .await;
            let due = store.due_unfinished(&bid("b1"), t(240), 10).await.unwrap();
            turn(
                &store,
                "telegram:6",
                AttemptTurn::Stay(&draft(None)),
                t(265),
            )
            .await;
            let job = unfinished_job(&bid("b1"), System::AmoCrm, &due[0]);
            assert!(
                !store
                    .enqueue_unfinished(&bid("b1"), &due[0], t(240), &job, t(270))
                    .await
                    .unwrap()
            );
            assert_eq!(leads(&store).await.len(), 1);
        }
    }

    /// What a client gave in an unfinished booking goes with an erasure of their phone, and
    /// with the dialogs' retention period.
    #[tokio::test]
    async fn attempts_go_with_an_erasure_and_with_retention() {
        for store in testing::all().await {
            turn(
                &store,
                "telegram:7",
                AttemptTurn::Enter(&draft(Some("+79165551234"))),
                t(0),
            )
            .await;
            turn(&store, "telegram:8", AttemptTurn::Enter(&draft(None)), t(0)).await;
            let phone = Phone::parse("8 916 555-12-34").unwrap();
            let forgot = store.forget(&bid("b1"), &phone, t(10)).await.unwrap();
            let crate::store::forget::Forgot::Erased(erased) = forgot else {
                panic!("nothing on its way: {forgot:?}");
            };
            assert_eq!(erased.unfinished_bookings, 1);
            assert_eq!(rows(&store).await, 1, "the other chat's attempt stays");
            let purged = store
                .purge_expired(&bid("b1"), &RetentionConfig::default(), t(364 * 1440))
                .await
                .unwrap();
            assert_eq!(purged.unfinished_bookings, 0);
            let purged = store
                .purge_expired(&bid("b1"), &RetentionConfig::default(), t(366 * 1440))
                .await
                .unwrap();
            assert_eq!(purged.unfinished_bookings, 1, "{:?}", store.backend());
            assert_eq!(rows(&store).await, 0);
        }
    }

    #[test]
    fn the_lead_key_names_one_attempt_and_is_no_booking_id() {
        let a = lead_key(&bid("b1"), "telegram:1", t(0));
        assert_eq!(a.len(), 32);
        assert!(a.starts_with('u'), "{a}");
        assert_eq!(a, lead_key(&bid("b1"), "telegram:1", t(0)));
        assert_ne!(a, lead_key(&bid("b1"), "telegram:1", t(1)));
        assert_ne!(a, lead_key(&bid("b1"), "telegram:2", t(0)));
        assert_eq!(check_every(PAUSE), Duration::from_secs(60));
        assert_eq!(check_every(Duration::from_secs(1)), Duration::from_secs(1));
    }
}
