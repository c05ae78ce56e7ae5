//! Unfinished bookings become leads. A client who took a new booking to the contact step
//! (the consent before the phone, the phone, the name, the confirmation) and left without
//! confirming is worth a manager's call: once they have been away for `[crm]
//! unfinished_after`, the attempt becomes one CRM lead "Незавершённая запись" with what they
//! had chosen, what they had given and the chat, unless they booked in the meantime.
//!
//! The conversation records each attempt with its turns (`store::AttemptTurn`); the check
//! here runs under a lease and queues one job per attempt through the outbox; `crm::jobs`
//! delivers it through the same lead and notes steps as a booking's lead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::domain::{Money, Source};
use crate::normalize::Phone;
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
pub fn lead_key(business_id: &str, chat_key: &str, started_at: DateTime<Utc>) -> String {
    let digest = Sha256::digest(format!(
        "unfinished:{business_id}:{chat_key}:{}",
        started_at.timestamp_millis()
    ));
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("u{}", &hex[..31])
}

/// One job per attempt: the key names the attempt, so neither a restart nor a second instance
/// can queue it twice; ordered with the chat's other jobs.
pub fn unfinished_job(business_id: &str, system: &str, due: &DueAttempt) -> NewJob {
    let started_at = due.started_at.timestamp_millis();
    let payload = UnfinishedJob {
        chat_key: due.chat_key.clone(),
        started_at,
    };
    NewJob {
        business_id: business_id.to_string(),
        system: system.to_string(),
        operation: UNFINISHED_BOOKING.to_string(),
        payload: serde_json::to_value(payload).unwrap_or_default(),
        idempotency_key: format!("{UNFINISHED_BOOKING}:{}:{started_at}", due.chat_key),
        ordering_key: Some(format!("chat:{}", due.chat_key)),
    }
}

/// Hands every attempt idle for `after` over to the CRM as one job each; returns how many.
pub async fn tick(
    store: &Store,
    business_id: &str,
    system: &str,
    after: Duration,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let after = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    let idle_since = now.checked_sub_signed(after).unwrap_or(DateTime::<Utc>::MIN_UTC);
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
    business_id: String,
    system: &'static str,
    after: Duration,
    clock: std::sync::Arc<dyn Clock>,
    lease: crate::store::LoopLease,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    let every = check_every(after);
    tokio::spawn(async move {
        loop {
            if lease.hold(clock.now()).await
                && let Err(e) = tick(&store, &business_id, system, after, clock.now()).await
            {
                tracing::error!(error = %e, "unfinished bookings: cannot read the store");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        lease.release().await;
    })
}
