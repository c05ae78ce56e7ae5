//! How long raw traffic and conversations stay: webhook bodies, the chat log, dialog states and
//! the funnel's chat events go once their `[retention]` period has passed (personal data is kept no longer than it is
//! needed), except what an unfinished delivery still reads: a stored webhook whose job has not
//! been processed, and the chat of a booking whose CRM note is still to be written. Delivered
//! jobs have their own period (`sync.done_retention`); the journal is append-only and holds no
//! personal data (its errors are masked), so it is not purged.

use crate::domain::BusinessId;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

use super::{Store, StoreError, to_millis};
use crate::sync::config::parse_duration;

/// `[retention]`: each period is a duration (`30d`) or `"off"` to keep for ever.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Webhook bodies and headers are blanked this long after they arrived; the row stays so a
    /// late re-delivery is still recognised as a duplicate.
    #[serde(deserialize_with = "de_period")]
    pub inbox_bodies: Option<Duration>,
    /// Chat lines (the transcript) are removed this long after they were written.
    #[serde(deserialize_with = "de_period")]
    pub chat_log: Option<Duration>,
    /// A chat's dialog state (where the client is in the flow, the phone and name they gave)
    /// is removed this long after its last turn: the client is asked for them again. A booking
    /// they left unfinished goes the same time after its last turn.
    #[serde(deserialize_with = "de_period")]
    pub dialogs: Option<Duration>,
    /// The funnel's chat events (a chat started, reached the contact step) are removed this
    /// long after they happened: the Sources page cannot look further back.
    #[serde(deserialize_with = "de_period")]
    pub chat_events: Option<Duration>,
}

impl Default for RetentionConfig {
    fn default() -> RetentionConfig {
        const DAY: u64 = 86_400;
        RetentionConfig {
            inbox_bodies: Some(Duration::from_secs(30 * DAY)),
            chat_log: Some(Duration::from_secs(180 * DAY)),
            dialogs: Some(Duration::from_secs(365 * DAY)),
            chat_events: Some(Duration::from_secs(730 * DAY)),
        }
    }
}

fn de_period<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let period = parse_duration(&text).map_err(serde::de::Error::custom)?;
    if period < Duration::from_secs(3600) {
        return Err(serde::de::Error::custom(format!(
            "{text:?} is shorter than an hour: a period this short would remove what is still \
             in use; write at least 1h, or \"off\""
        )));
    }
    Ok(Some(period))
}

/// How often the purge runs.
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Rows one statement touches, so no writer waits long behind a purge.
const BATCH: i64 = 1000;

/// What one purge removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub inbox_bodies: u64,
    pub chat_lines: u64,
    pub dialogs: u64,
    pub chat_events: u64,
    pub unfinished_bookings: u64,
    pub support_relays: u64,
}

/// Chats whose transcript an unfinished CRM job of a booking may still read. Dead jobs count:
/// an operator may bring them back.
const CHATS_STILL_NEEDED: &str = "SELECT b.channel || ':' || b.chat_id FROM sync_jobs j \
     JOIN bookings b ON b.business_id = j.business_id AND b.id = SUBSTR(j.ordering_key, 9) \
     WHERE j.business_id = $1 AND j.state IN ('pending', 'running', 'dead') \
       AND j.ordering_key LIKE 'booking:%' \
       AND b.chat_id IS NOT NULL";

impl Store {
    /// Removes what `config` no longer keeps for `business_id`, as of `now`.
    pub async fn purge_expired(
        &self,
        business_id: &BusinessId,
        config: &RetentionConfig,
        now: DateTime<Utc>,
    ) -> Result<Purged, StoreError> {
        let cutoff = |period: Duration| {
            to_millis(now) - i64::try_from(period.as_millis()).unwrap_or(i64::MAX / 2)
        };
        let mut purged = Purged::default();
        if let Some(period) = config.inbox_bodies {
            // The inbox job's idempotency key is `source:dedup_key` (see `sync::inbox`).
            let sql = "UPDATE sync_inbox SET body = '', headers = '{}' WHERE id IN ( \
                 SELECT i.id FROM sync_inbox i \
                 WHERE i.business_id = $1 AND i.received_at < $2 AND i.body <> '' \
                   AND NOT EXISTS (SELECT 1 FROM sync_jobs j \
                     WHERE j.business_id = i.business_id AND j.system = 'inbox' \
                       AND j.idempotency_key = i.source || ':' || i.dedup_key \
                       AND j.state IN ('pending', 'running', 'dead')) \
                 ORDER BY i.received_at LIMIT $3)";
            purged.inbox_bodies = self.in_batches(sql, business_id, cutoff(period)).await?;
        }
        if let Some(period) = config.chat_log {
            let sql = format!(
                "DELETE FROM chat_log WHERE id IN ( \
                   SELECT id FROM chat_log WHERE business_id = $1 AND at < $2 \
                     AND chat_key NOT IN ({CHATS_STILL_NEEDED}) \
                   ORDER BY at LIMIT $3)"
            );
            purged.chat_lines = self.in_batches(&sql, business_id, cutoff(period)).await?;
        }
        if let Some(period) = config.dialogs {
            let sql = "DELETE FROM dialogs WHERE business_id = $1 AND chat_key IN ( \
                 SELECT chat_key FROM dialogs WHERE business_id = $1 AND updated_at < $2 \
                 ORDER BY updated_at LIMIT $3)";
            purged.dialogs = self.in_batches(sql, business_id, cutoff(period)).await?;
        }
        if let Some(period) = config.dialogs {
            // What a client had chosen and given in a booking they left is part of their dialog
            // and goes with it, lead or no lead.
            let sql = "DELETE FROM unfinished_bookings WHERE business_id = $1 \
                 AND (chat_key, started_at) IN ( \
                   SELECT chat_key, started_at FROM unfinished_bookings \
                   WHERE business_id = $1 AND last_at < $2 ORDER BY last_at LIMIT $3)";
            purged.unfinished_bookings = self.in_batches(sql, business_id, cutoff(period)).await?;
        }
        if let Some(period) = config.chat_log {
            // Which admin post relayed which chat's question goes with the chat it points to:
            // an admin's reply to a post that old reaches no one.
            let sql = "DELETE FROM support_relays WHERE business_id = $1 \
                 AND (messenger, admin_chat, admin_message) IN ( \
                   SELECT messenger, admin_chat, admin_message FROM support_relays \
                   WHERE business_id = $1 AND created_at < $2 ORDER BY created_at LIMIT $3)";
            purged.support_relays = self.in_batches(sql, business_id, cutoff(period)).await?;
        }
        if let Some(period) = config.chat_events {
            let sql = "DELETE FROM chat_events WHERE id IN ( \
                 SELECT id FROM chat_events WHERE business_id = $1 AND at < $2 \
                 ORDER BY at LIMIT $3)";
            purged.chat_events = self.in_batches(sql, business_id, cutoff(period)).await?;
        }
        Ok(purged)
    }

    async fn in_batches(
        &self,
        sql: &str,
        business_id: &BusinessId,
        cutoff: i64,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .bind(business_id.as_str())
                .bind(cutoff)
                .bind(BATCH)
                .execute(&self.pool)
                .await?
                .rows_affected();
            total += n;
            if n < BATCH as u64 {
                return Ok(total);
            }
        }
    }
}

/// How often erasures waiting for a delivery are looked at: the client is forgotten soon after
/// the last delivery about them.
pub const ERASURES_EVERY: Duration = Duration::from_secs(5);

/// Runs the purge every [`PURGE_EVERY`], and waiting erasures every [`ERASURES_EVERY`], on the
/// instance holding the `retention` lease.
pub fn spawn(
    store: Store,
    business_id: BusinessId,
    config: RetentionConfig,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
    lease: super::LoopLease,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut purge_due = tokio::time::Instant::now();
        loop {
            if lease.hold(clock.now()).await {
                match store.run_waiting_erasures(&business_id, clock.now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(clients = n, "waiting erasures carried out"),
                    Err(e) => tracing::warn!(error = %e, "waiting erasures failed"),
                }
                if tokio::time::Instant::now() >= purge_due {
                    purge_due = tokio::time::Instant::now() + PURGE_EVERY;
                    match store
                        .purge_expired(&business_id, &config, clock.now())
                        .await
                    {
                        Ok(p) if p == Purged::default() => {}
                        Ok(p) => tracing::info!(
                            inbox_bodies = p.inbox_bodies,
                            chat_lines = p.chat_lines,
                            dialogs = p.dialogs,
                            chat_events = p.chat_events,
                            unfinished_bookings = p.unfinished_bookings,
                            support_relays = p.support_relays,
                            "retention: removed what is past its period"
                        ),
                        Err(e) => tracing::warn!(error = %e, "retention: purge failed"),
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(ERASURES_EVERY) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        lease.release().await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{System, bid};
    use crate::store::testing;
    use crate::sync::inbox::{Received, receive};
    use crate::sync::jobs::{Disposition, Finish, NewJob, Queue};
    use chrono::TimeZone;

    const DAY: i64 = 86_400_000;

    fn t(day: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_900_000_000_000 + day * DAY)
            .single()
            .expect("instant")
    }

    async fn count(store: &Store, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(store.pool())
            .await
            .expect("count")
    }

    async fn exec(store: &Store, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(store.pool())
            .await
            .expect("exec");
    }

    /// The funnel's events stay two years by default, per business, and "off" keeps them.
    #[tokio::test]
    async fn chat_events_go_after_their_period() {
        use crate::domain::{Channel, Source};
        use crate::store::{FunnelStep, TurnEvent};
        for store in testing::all().await {
            let source = Source::direct(Channel::Telegram);
            for (business, day) in [("b1", 0), ("b1", 100), ("b2", 0)] {
                let event = TurnEvent {
                    step: FunnelStep::Start,
                    source: &source,
                };
                store
                    .save_turn(&bid(business), "telegram:1", &[], Some(event), "{}", t(day))
                    .await
                    .expect("turn");
            }
            let off = RetentionConfig {
                chat_events: None,
                ..RetentionConfig::default()
            };
            let purged = store
                .purge_expired(&bid("b1"), &off, t(800))
                .await
                .expect("purge");
            assert_eq!(purged.chat_events, 0);
            let purged = store
                .purge_expired(&bid("b1"), &RetentionConfig::default(), t(800))
                .await
                .expect("purge");
            assert_eq!(purged.chat_events, 1, "{:?}", store.backend());
            assert_eq!(
                count(
                    &store,
                    "SELECT COUNT(*) FROM chat_events WHERE business_id = 'b1'"
                )
                .await,
                1
            );
            assert_eq!(
                count(
                    &store,
                    "SELECT COUNT(*) FROM chat_events WHERE business_id = 'b2'"
                )
                .await,
                1
            );
        }
    }

    /// Old webhooks, chat lines and dialogs go; what a job still waiting for delivery reads
    /// stays, on both databases.
    #[tokio::test]
    async fn the_purge_removes_what_is_past_its_period_and_keeps_what_a_waiting_job_reads() {
        for store in testing::all().await {
            let queue = Queue::new(store.clone());
            let headers = Default::default();
            // Two old webhooks: one processed (its job done), one whose job still waits.
            let mut ids = Vec::new();
            for key in ["done", "waiting"] {
                let Received::New(id) = receive(
                    &store,
                    &bid("b1"),
                    "yclients",
                    key,
                    &headers,
                    "{\"client\":{\"phone\":\"+79161234567\"}}",
                    t(0),
                )
                .await
                .expect("receive") else {
                    panic!("new webhook");
                };
                ids.push(id);
            }
            let claimed = queue
                .claim(
                    "w",
                    &["b1".into()],
                    &[System::Inbox],
                    10,
                    Duration::from_secs(60),
                    t(0),
                )
                .await
                .expect("claim");
            let done = claimed
                .iter()
                .find(|j| j.idempotency_key == "yclients:done")
                .expect("claimed");
            let finish = |job: &crate::sync::Job, disposition| Finish {
                job_id: job.id,
                attempt: job.attempts,
                disposition,
                error: None,
                add_auth_refresh: false,
                link: None,
                journal: crate::sync::journal::JournalEntry {
                    at: t(0),
                    business_id: "b1".into(),
                    system: System::Inbox,
                    operation: "yclients".into(),
                    job_id: job.id,
                    attempt: job.attempts,
                    outcome: "ok".into(),
                    http_status: None,
                    duration_ms: 1,
                    error: None,
                },
            };
            let waiting = claimed
                .iter()
                .find(|j| j.idempotency_key == "yclients:waiting")
                .expect("claimed");
            queue
                .finish(
                    "w",
                    &[
                        finish(done, Disposition::Done),
                        finish(waiting, Disposition::Retry(t(1))),
                    ],
                    t(0),
                )
                .await
                .expect("finish");

            // Two old chats: one with a booking whose CRM job waits, one without.
            exec(
                &store,
                "INSERT INTO clients (id, business_id, phone, name, email, created_at, updated_at) \
                 VALUES ('c1', 'b1', '+79161234567', 'Анна', NULL, 0, 0)",
            )
            .await;
            exec(
                &store,
                "INSERT INTO bookings (id, business_id, client_id, service_id, service_name, \
                   master_id, master_name, start_at, duration_min, price, status, source, \
                   source_payload, channel, chat_id, external_id, created_at, updated_at) \
                 VALUES ('bk1', 'b1', 'c1', 's', 's', 'm', 'm', 0, 60, 0, 'booked', '{}', NULL, \
                   'telegram', '100', NULL, 0, 0)",
            )
            .await;
            queue
                .enqueue(
                    &NewJob {
                        business_id: bid("b1"),
                        system: System::AmoCrm,
                        operation: "booking_created".into(),
                        payload: serde_json::json!({ "booking_id": "bk1" }),
                        idempotency_key: "bk1:created".into(),
                        ordering_key: Some("booking:bk1".into()),
                    },
                    t(0),
                )
                .await
                .expect("enqueue");
            for chat in ["telegram:100", "telegram:200"] {
                store
                    .log_chat(&bid("b1"), chat, t(0), "client", "+79161234567", None)
                    .await
                    .expect("log");
                store
                    .log_chat(&bid("b1"), chat, t(200), "client", "recent", None)
                    .await
                    .expect("log");
                store
                    .save_dialog(&bid("b1"), chat, "{}", t(0))
                    .await
                    .expect("dialog");
            }
            // Another business's old rows are not this purge's to touch.
            store
                .log_chat(&bid("b2"), "telegram:200", t(0), "client", "other", None)
                .await
                .expect("log");

            let config = RetentionConfig::default();
            let purged = store
                .purge_expired(&bid("b1"), &config, t(220))
                .await
                .expect("purge");
            assert_eq!(
                purged,
                Purged {
                    inbox_bodies: 1,
                    chat_lines: 1,
                    dialogs: 0,
                    chat_events: 0,
                    unfinished_bookings: 0,
                    support_relays: 0
                }
            );
            let bodies: Vec<(i64, String)> =
                sqlx::query_as("SELECT id, body FROM sync_inbox ORDER BY id")
                    .fetch_all(store.pool())
                    .await
                    .expect("bodies");
            assert_eq!(
                bodies[0],
                (ids[0], String::new()),
                "the processed webhook's body"
            );
            assert!(
                bodies[1].1.contains("+79161234567"),
                "the waiting job's webhook"
            );
            assert_eq!(
                count(&store, "SELECT COUNT(*) FROM chat_log WHERE chat_key = 'telegram:200' AND business_id = 'b1'").await,
                1,
                "only the recent line of the chat without a waiting job"
            );
            assert_eq!(
                count(
                    &store,
                    "SELECT COUNT(*) FROM chat_log WHERE chat_key = 'telegram:100'"
                )
                .await,
                2,
                "the transcript the waiting CRM job will write"
            );
            assert_eq!(
                count(
                    &store,
                    "SELECT COUNT(*) FROM chat_log WHERE business_id = 'b2'"
                )
                .await,
                1
            );

            // A year on, the dialogs go; the chat of the still-waiting job keeps its lines.
            let purged = store
                .purge_expired(&bid("b1"), &config, t(400))
                .await
                .expect("purge");
            assert_eq!(purged.dialogs, 2);
            assert_eq!(purged.chat_lines, 1);
            assert_eq!(count(&store, "SELECT COUNT(*) FROM dialogs").await, 0);
            // Nothing is left to do, and "off" keeps everything.
            let off = RetentionConfig {
                inbox_bodies: None,
                chat_log: None,
                dialogs: None,
                chat_events: None,
            };
            assert_eq!(
                store
                    .purge_expired(&bid("b1"), &off, t(10_000))
                    .await
                    .expect("purge"),
                Purged::default()
            );
        }
    }
}
