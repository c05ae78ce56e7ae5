//! Bookings, stored together with their client's card (clients.rs), and read for the chat, the
//! reminders, the reconcilers and the console.

use crate::domain::BusinessId;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::clients::{set_consent_in, upsert_client_in};
use super::{Store, StoreError, from_millis, to_millis};
use crate::domain::{
    Booking, BookingId, BookingStatus, Channel, ChatRef, Consent, Money, RecordId, Source,
};
use crate::normalize::{Email, Phone};

pub(super) const BOOKING_COLUMNS: &str = "b.id, b.business_id, c.phone, c.name, c.email, b.service_id, \
     b.service_name, b.master_id, b.master_name, b.start_at, b.duration_min, b.price, b.status, \
     b.source, b.channel, b.chat_id, b.external_id, b.created_at";

impl Store {
    /// Stores a new booking (and its client) in one transaction.
    pub async fn insert_booking(&self, booking: &Booking) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        insert_booking_in(&mut tx, booking).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a new booking (and its client) with the client's comment to the visit and their
    /// agreement to the personal-data policy, in one transaction.
    pub async fn insert_booking_with_comment(
        &self,
        booking: &Booking,
        comment: Option<&str>,
        consent: Option<&Consent>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        insert_booking_in(&mut tx, booking).await?;
        if let Some(consent) = consent {
            set_consent_in(
                &mut tx,
                &booking.business_id,
                &booking.client_phone,
                consent,
            )
            .await?;
        }
        if let Some(comment) = comment {
            sqlx::query("UPDATE bookings SET client_comment = $1 WHERE id = $2")
                .bind(comment)
                .bind(booking.id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The client's comment to booking `id`, when they wrote one.
    pub async fn booking_comment(&self, id: &BookingId) -> Result<Option<String>, StoreError> {
        let comment: Option<Option<String>> =
            sqlx::query_scalar("SELECT client_comment FROM bookings WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(comment.flatten())
    }

    /// The client's latest booking made from a chat: who they are and where to reach them.
    pub async fn latest_chat_booking_of(
        &self,
        business_id: &BusinessId,
        phone: &Phone,
    ) -> Result<Option<Booking>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(latest_chat_booking_sql()))
            .bind(business_id.as_str())
            .bind(phone.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| booking_from_row(&r)).transpose()
    }

    /// Booking `id` of `business_id`; another business's booking is not found.
    pub async fn booking(
        &self,
        business_id: &BusinessId,
        id: &BookingId,
    ) -> Result<Option<Booking>, StoreError> {
        let sql = format!(
            "SELECT {BOOKING_COLUMNS} FROM bookings b JOIN clients c ON c.id = b.client_id \
             WHERE b.id = $1 AND b.business_id = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .bind(business_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| booking_from_row(&r)).transpose()
    }

    /// Marks booking `id` as being changed in the schedule by us until `until`. The schedule
    /// shows our write before our store does; meanwhile a report of that booking from the
    /// schedule is most likely our own write coming back, and waits (see [`booking_for_change_in`]).
    pub async fn hold_change(
        &self,
        id: &BookingId,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE bookings SET changing_until = $1 WHERE id = $2")
            .bind(to_millis(until))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends [`Store::hold_change`]: our store now holds what we wrote to the schedule (or the
    /// write failed and the schedule holds what it had).
    pub async fn release_change(&self, id: &BookingId) -> Result<(), StoreError> {
        sqlx::query("UPDATE bookings SET changing_until = NULL WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_booking_status(
        &self,
        id: &BookingId,
        status: BookingStatus,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE bookings SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(to_millis(now))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the schedule's confirmation: its record id and the booked state.
    pub async fn confirm_booking(
        &self,
        id: &BookingId,
        external_id: &RecordId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        confirm_booking_in(&mut conn, id, external_id, now).await
    }

    pub async fn move_booking(
        &self,
        id: &BookingId,
        master_id: &str,
        master_name: &str,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE bookings SET master_id = $1, master_name = $2, start_at = $3, updated_at = $4 \
             WHERE id = $5",
        )
        .bind(master_id)
        .bind(master_name)
        .bind(to_millis(start))
        .bind(to_millis(now))
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Active bookings from `now` on that were made from this chat or belong to `phone`.
    pub async fn upcoming_bookings(
        &self,
        business_id: &BusinessId,
        chat: &ChatRef,
        phone: Option<&Phone>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Booking>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(upcoming_sql()))
            .bind(business_id.as_str())
            .bind(to_millis(now))
            .bind(chat.channel.as_str())
            .bind(chat.chat_id.as_str())
            .bind(phone.map(|p| p.as_str().to_string()).unwrap_or_default())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(booking_from_row).collect()
    }

    /// The latest visits of this chat or phone that are over, newest first ("book again").
    pub async fn past_visits(
        &self,
        business_id: &BusinessId,
        chat: &ChatRef,
        phone: Option<&Phone>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Booking>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(past_visits_sql()))
            .bind(business_id.as_str())
            .bind(to_millis(now))
            .bind(chat.channel.as_str())
            .bind(chat.chat_id.as_str())
            .bind(phone.map(|p| p.as_str().to_string()).unwrap_or_default())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(booking_from_row).collect()
    }

    /// Active bookings of the business starting in `(from, to]`, soonest first: reminders and
    /// the reconciliation poll.
    pub async fn active_bookings_between(
        &self,
        business_id: &BusinessId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Booking>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(active_between_sql()))
            .bind(business_id.as_str())
            .bind(to_millis(from))
            .bind(to_millis(to))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(booking_from_row).collect()
    }

    /// Bookings of the business starting in `[from, to)`, latest first, at most `limit`, each
    /// with its client's id (the console's list).
    pub async fn bookings_starting_between(
        &self,
        business_id: &BusinessId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(String, Booking)>, StoreError> {
        let sql = format!(
            "SELECT {BOOKING_COLUMNS}, c.id AS client_id FROM bookings b \
               JOIN clients c ON c.id = b.client_id \
             WHERE b.business_id = $1 AND b.start_at >= $2 AND b.start_at < $3 \
             ORDER BY b.start_at DESC LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(business_id.as_str())
            .bind(to_millis(from))
            .bind(to_millis(to))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("client_id")?, booking_from_row(r)?)))
            .collect()
    }

    /// Every booking of the business, newest first (for support and the CLI).
    pub async fn bookings(&self, business_id: &BusinessId) -> Result<Vec<Booking>, StoreError> {
        let sql = format!(
            "SELECT {BOOKING_COLUMNS} FROM bookings b JOIN clients c ON c.id = b.client_id \
             WHERE b.business_id = $1 ORDER BY b.start_at DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(business_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(booking_from_row).collect()
    }
}

/// "A chat's or a phone's bookings" as two indexed lookups joined by UNION: one by chat
/// (`bookings_by_chat`), one by the client's phone (`clients` unique key, then
/// `bookings_by_client`). An `OR` across the join would read every booking of the business.
/// Parameters: business, now, channel, chat id, phone.
fn chat_or_phone_sql(time: &str, statuses: &str, tail: &str) -> String {
    format!(
        "SELECT {BOOKING_COLUMNS} FROM bookings b JOIN clients c ON c.id = b.client_id \
         WHERE b.business_id = $1 AND b.channel = $3 AND b.chat_id = $4 \
           AND b.start_at {time} $2 AND b.status IN ({statuses}) \
         UNION \
         SELECT {BOOKING_COLUMNS} FROM clients c \
           JOIN bookings b ON b.business_id = c.business_id AND b.client_id = c.id \
         WHERE c.business_id = $1 AND c.phone = $5 \
           AND b.start_at {time} $2 AND b.status IN ({statuses}) \
         {tail}"
    )
}

pub(crate) fn upcoming_sql() -> String {
    chat_or_phone_sql(">=", "'requested', 'booked'", "ORDER BY start_at")
}

/// Parameters as [`upcoming_sql`], then the limit.
pub(crate) fn past_visits_sql() -> String {
    chat_or_phone_sql(
        "<",
        "'booked', 'visited'",
        "ORDER BY start_at DESC LIMIT $6",
    )
}

/// Reminders and both reconcilers: served by `bookings_by_start`. Parameters: business,
/// from (exclusive), to.
pub(crate) fn active_between_sql() -> String {
    format!(
        "SELECT {BOOKING_COLUMNS} FROM bookings b JOIN clients c ON c.id = b.client_id \
         WHERE b.business_id = $1 AND b.start_at > $2 AND b.start_at <= $3 \
         AND b.status IN ('requested', 'booked') ORDER BY b.start_at"
    )
}

pub(crate) fn latest_chat_booking_sql() -> String {
    format!(
        "SELECT {BOOKING_COLUMNS} FROM clients c JOIN bookings b ON b.business_id = c.business_id \
           AND b.client_id = c.id \
         WHERE c.business_id = $1 AND c.phone = $2 AND b.chat_id IS NOT NULL \
         ORDER BY b.created_at DESC LIMIT 1"
    )
}

/// Booking `id` as it stands inside the caller's transaction, locked against other writers on
/// PostgreSQL (SQLite's `BEGIN IMMEDIATE` already is), with the moment until which our own
/// change to it is in flight, if one is.
pub async fn booking_for_change_in(
    conn: &mut AnyConnection,
    postgres: bool,
    business_id: &BusinessId,
    id: &BookingId,
) -> Result<Option<(Booking, Option<DateTime<Utc>>)>, StoreError> {
    let lock = if postgres { " FOR UPDATE OF b" } else { "" };
    let sql = format!(
        "SELECT {BOOKING_COLUMNS}, b.changing_until FROM bookings b \
         JOIN clients c ON c.id = b.client_id WHERE b.id = $1 AND b.business_id = $2{lock}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.as_str())
        .bind(business_id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let until: Option<i64> = row.try_get("changing_until")?;
    Ok(Some((
        booking_from_row(&row)?,
        until.map(from_millis).transpose()?,
    )))
}

pub async fn confirm_booking_in(
    conn: &mut AnyConnection,
    id: &BookingId,
    external_id: &RecordId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE bookings SET status = $1, external_id = $2, updated_at = $3 WHERE id = $4")
        .bind(BookingStatus::Booked.as_str())
        .bind(external_id.as_str())
        .bind(to_millis(now))
        .bind(id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Moves booking `id` to `start` with `master_id` inside the caller's transaction.
pub async fn move_booking_in(
    conn: &mut AnyConnection,
    id: &BookingId,
    start: DateTime<Utc>,
    master_id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE bookings SET start_at = $1, master_id = $2, updated_at = $3 WHERE id = $4")
        .bind(start.timestamp_millis())
        .bind(master_id)
        .bind(now.timestamp_millis())
        .bind(id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn set_booking_status_in(
    conn: &mut AnyConnection,
    id: &BookingId,
    status: BookingStatus,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE bookings SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(to_millis(now))
        .bind(id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Inserts a booking and its client on an open connection or transaction, so callers can commit
/// it together with the jobs it causes.
pub async fn insert_booking_in(
    conn: &mut AnyConnection,
    booking: &Booking,
) -> Result<(), StoreError> {
    let client_id = upsert_client_in(
        conn,
        &booking.business_id,
        &booking.client_phone,
        &booking.client_name,
        booking.client_email.as_ref(),
        booking.created_at,
    )
    .await?;
    let source = serde_json::to_string(&booking.source)
        .map_err(|e| StoreError::Corrupt(format!("source does not serialise: {e}")))?;
    let key = super::analytics::SourceKey::of_booking(&booking.source);
    sqlx::query(
        "INSERT INTO bookings (id, business_id, client_id, service_id, service_name, master_id, \
           master_name, start_at, duration_min, price, status, source, source_payload, channel, \
           chat_id, external_id, created_at, updated_at, src_kind, src_label) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17, \
           $18, $19)",
    )
    .bind(booking.id.as_str())
    .bind(booking.business_id.as_str())
    .bind(client_id)
    .bind(&booking.service_id)
    .bind(&booking.service_name)
    .bind(&booking.master_id)
    .bind(&booking.master_name)
    .bind(to_millis(booking.start))
    .bind(i64::from(booking.duration_min))
    .bind(booking.price.kopecks())
    .bind(booking.status.as_str())
    .bind(source)
    .bind(booking.source.payload.clone())
    .bind(
        booking
            .chat
            .as_ref()
            .map(|c| c.channel.as_str().to_string()),
    )
    .bind(booking.chat.as_ref().map(|c| c.chat_id.clone()))
    .bind(booking.external_id.as_deref())
    .bind(to_millis(booking.created_at))
    .bind(key.as_ref().map(|k| k.kind.as_str()))
    .bind(key.map(|k| k.label))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A client's phone as stored: a number, or the mark an erasure leaves in its place.
pub(super) fn stored_phone(raw: &str) -> Result<Phone, crate::normalize::ContactError> {
    if raw.starts_with(super::forget::ERASED_PHONE_PREFIX) {
        Ok(Phone::erased())
    } else {
        Phone::parse(raw)
    }
}

pub(super) fn booking_from_row(row: &AnyRow) -> Result<Booking, StoreError> {
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("{what}: {e}"));
    let phone: String = row.try_get("phone")?;
    let email: Option<String> = row.try_get("email")?;
    let status: String = row.try_get("status")?;
    let source: String = row.try_get("source")?;
    let channel: Option<String> = row.try_get("channel")?;
    let chat_id: Option<String> = row.try_get("chat_id")?;
    let duration: i64 = row.try_get("duration_min")?;
    let chat = match (channel, chat_id) {
        (Some(ch), Some(id)) => Some(ChatRef::new(
            Channel::parse(&ch).ok_or_else(|| corrupt("channel", &ch))?,
            id,
        )),
        _ => None,
    };
    Ok(Booking {
        id: crate::store::booking_id_named(row, "id")?,
        business_id: crate::store::business_id_in(row)?,
        client_phone: stored_phone(&phone).map_err(|e| corrupt("client phone", &e))?,
        client_name: row.try_get("name")?,
        client_email: email
            .map(|e| Email::parse(&e))
            .transpose()
            .map_err(|e| corrupt("email", &e))?,
        service_id: row.try_get("service_id")?,
        service_name: row.try_get("service_name")?,
        master_id: row.try_get("master_id")?,
        master_name: row.try_get("master_name")?,
        start: from_millis(row.try_get("start_at")?)?,
        duration_min: u32::try_from(duration).map_err(|e| corrupt("duration", &e))?,
        price: Money(row.try_get("price")?),
        status: BookingStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        source: serde_json::from_str::<Source>(&source).map_err(|e| corrupt("source", &e))?,
        chat,
        external_id: row
            .try_get::<Option<String>, _>("external_id")?
            .map(|id| RecordId::parse(&id))
            .transpose()
            .map_err(|e| corrupt("external id", &e))?,
        created_at: from_millis(row.try_get("created_at")?)?,
    })
}

#[cfg(test)]
mod tests;
