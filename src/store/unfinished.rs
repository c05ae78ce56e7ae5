//! Unfinished bookings: a chat's new booking that reached the contact step and was not
//! confirmed, one row per attempt (see `crate::unfinished`). A turn in the contact step opens
//! or refreshes the chat's open attempt and a booking closes it, in the turn's own
//! transaction; the periodic check turns an attempt idle for long enough into one CRM job and
//! marks it, in one transaction.

use crate::domain::BusinessId;
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{Store, StoreError, from_millis, to_millis};
use crate::sync::{NewJob, enqueue_in};

/// What a turn does to the chat's unfinished booking, written with the turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttemptTurn<'a> {
    /// Nothing: the turn is elsewhere, or unfinished bookings are not followed.
    #[default]
    None,
    /// The turn enters the contact step of a new booking: the chat's open attempt, or a new
    /// one, now holds this draft (JSON) and counts its idleness from this turn.
    Enter(&'a str),
    /// The turn stays in the contact step: the open attempt, if there is one, now holds this
    /// draft and counts from this turn. An attempt already handed over stays handed over: a
    /// client coming back to it after its lead was made is not a new lead.
    Stay(&'a str),
    /// The turn made a booking: the chat's open attempt is over.
    Booked,
}

/// An attempt the check found idle for long enough, with no booking since it began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueAttempt {
    pub chat_key: String,
    /// The attempt's id within its chat: when it reached the contact step.
    pub started_at: DateTime<Utc>,
}

/// An attempt as stored, for the job that makes its lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub chat_key: String,
    pub started_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub draft: String,
}

/// A booking from the attempt's chat made since the attempt began (a failed request is none).
/// `u` is the attempt's row.
const BOOKED_SINCE: &str = "EXISTS (SELECT 1 FROM bookings b \
       WHERE b.business_id = u.business_id AND b.channel || ':' || b.chat_id = u.chat_key \
         AND b.created_at >= u.started_at AND b.status <> 'failed')";

/// Both dialects take a partial index as the conflict target.
const OPEN_ATTEMPT: &str = "INSERT INTO unfinished_bookings \
       (business_id, chat_key, started_at, last_at, draft, enqueued_at) \
     VALUES ($1, $2, $3, $3, $4, NULL) \
     ON CONFLICT (business_id, chat_key) WHERE enqueued_at IS NULL \
     DO UPDATE SET last_at = excluded.last_at, draft = excluded.draft";

pub(crate) async fn attempt_turn_in(
    conn: &mut AnyConnection,
    business_id: &BusinessId,
    chat_key: &str,
    turn: AttemptTurn<'_>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match turn {
        AttemptTurn::None => {}
        AttemptTurn::Enter(draft) => {
            sqlx::query(OPEN_ATTEMPT)
                .bind(business_id.as_str())
                .bind(chat_key)
                .bind(to_millis(now))
                .bind(draft)
                .execute(&mut *conn)
                .await?;
        }
        AttemptTurn::Stay(draft) => {
            sqlx::query(
                "UPDATE unfinished_bookings SET last_at = $3, draft = $4 \
                 WHERE business_id = $1 AND chat_key = $2 AND enqueued_at IS NULL",
            )
            .bind(business_id.as_str())
            .bind(chat_key)
            .bind(to_millis(now))
            .bind(draft)
            .execute(&mut *conn)
            .await?;
        }
        AttemptTurn::Booked => {
            sqlx::query(
                "DELETE FROM unfinished_bookings \
                 WHERE business_id = $1 AND chat_key = $2 AND enqueued_at IS NULL",
            )
            .bind(business_id.as_str())
            .bind(chat_key)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

impl Store {
    /// Open attempts of `business_id` whose last turn in the contact step is no later than
    /// `idle_since` and whose chat has made no booking since, oldest first. Open attempts a
    /// booking already ended (a turn that died between its booking and its own write) are
    /// closed on the way.
    pub async fn due_unfinished(
        &self,
        business_id: &BusinessId,
        idle_since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueAttempt>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM unfinished_bookings AS u \
             WHERE u.business_id = $1 AND u.enqueued_at IS NULL AND {BOOKED_SINCE}"
        )))
        .bind(business_id.as_str())
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT u.chat_key, u.started_at FROM unfinished_bookings u \
             WHERE u.business_id = $1 AND u.enqueued_at IS NULL AND u.last_at <= $2 \
               AND NOT {BOOKED_SINCE} \
             ORDER BY u.last_at LIMIT $3"
        )))
        .bind(business_id.as_str())
        .bind(to_millis(idle_since))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueAttempt {
                    chat_key: r.try_get("chat_key")?,
                    started_at: from_millis(r.try_get("started_at")?)?,
                })
            })
            .collect()
    }

    /// Marks a due attempt as handed over and queues `job` for it, in one transaction, if it
    /// is still open, still idle since `idle_since` and still without a booking: a turn or a
    /// booking that came in after [`Store::due_unfinished`] read it wins. Returns whether the
    /// job was queued; the job's idempotency key keeps a second instance from queuing it twice.
    pub async fn enqueue_unfinished(
        &self,
        business_id: &BusinessId,
        due: &DueAttempt,
        idle_since: DateTime<Utc>,
        job: &NewJob,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let marked = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE unfinished_bookings AS u SET enqueued_at = $4 \
             WHERE u.business_id = $1 AND u.chat_key = $2 AND u.started_at = $3 \
               AND u.enqueued_at IS NULL AND u.last_at <= $5 AND NOT {BOOKED_SINCE}"
        )))
        .bind(business_id.as_str())
        .bind(&due.chat_key)
        .bind(to_millis(due.started_at))
        .bind(to_millis(now))
        .bind(to_millis(idle_since))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked == 0 {
            return Ok(false);
        }
        let queued = enqueue_in(&mut tx, job, now).await?.is_some();
        tx.commit().await?;
        Ok(queued)
    }

    /// One attempt, or `None` once erased or purged.
    pub async fn unfinished_attempt(
        &self,
        business_id: &BusinessId,
        chat_key: &str,
        started_at: DateTime<Utc>,
    ) -> Result<Option<Attempt>, StoreError> {
        let row = sqlx::query(
            "SELECT chat_key, started_at, last_at, draft FROM unfinished_bookings \
             WHERE business_id = $1 AND chat_key = $2 AND started_at = $3",
        )
        .bind(business_id.as_str())
        .bind(chat_key)
        .bind(to_millis(started_at))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Attempt {
                chat_key: r.try_get("chat_key")?,
                started_at: from_millis(r.try_get("started_at")?)?,
                last_at: from_millis(r.try_get("last_at")?)?,
                draft: r.try_get("draft")?,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
impl Store {
    pub(crate) async fn unfinished_count(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM unfinished_bookings")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}
