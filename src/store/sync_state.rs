//! What each linked system last held for a booking, the journal of the changes applied to it,
//! the reminders already sent and the client's confirmation of a visit.

use crate::domain::{BookingId, BusinessId, System};
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{Store, StoreError, from_millis, to_millis};

/// A booking's state in one system as we last saw it there (or wrote it ourselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownState {
    pub system: System,
    pub version: String,
    pub status: String,
    pub seen_at: DateTime<Utc>,
}

/// One line of a booking's story: a change applied, a notice, a conflict resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingEvent {
    pub at: DateTime<Utc>,
    /// `schedule`, `crm`, `client`, `reconcile`.
    pub origin: String,
    pub kind: String,
    pub detail: String,
}

/// The version string of a booking's state: equal strings mean nothing changed.
pub fn version_of(status: &str, start: DateTime<Utc>, master_id: &str) -> String {
    format!("{status}|{}|{master_id}", start.timestamp_millis())
}

/// Parameters: business, system, from (exclusive), to.
pub(crate) const KNOWN_VERSIONS_SQL: &str = "SELECT s.booking_id, s.version FROM bookings b \
     JOIN booking_sync s ON s.business_id = b.business_id AND s.booking_id = b.id \
       AND s.system = $2 \
     WHERE b.business_id = $1 AND b.start_at > $3 AND b.start_at <= $4 \
       AND b.status IN ('requested', 'booked')";

impl Store {
    pub async fn known_state(
        &self,
        business_id: &BusinessId,
        booking_id: &BookingId,
        system: System,
    ) -> Result<Option<KnownState>, StoreError> {
        let row = sqlx::query(
            "SELECT system, version, status, seen_at FROM booking_sync \
             WHERE business_id = $1 AND booking_id = $2 AND system = $3",
        )
        .bind(business_id.as_str())
        .bind(booking_id.as_str())
        .bind(system.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| known_from_row(&r)).transpose()
    }

    /// The last known version in `system` of every active booking starting in `(from, to]`,
    /// by booking id: one query for a whole reconciliation round, reading only the round's
    /// bookings (`bookings_by_start`, then the `booking_sync` key), not every booking ever made.
    pub async fn known_versions(
        &self,
        business_id: &BusinessId,
        system: System,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<std::collections::HashMap<BookingId, String>, StoreError> {
        let rows = sqlx::query(KNOWN_VERSIONS_SQL)
            .bind(business_id.as_str())
            .bind(system.as_str())
            .bind(to_millis(from))
            .bind(to_millis(to))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    super::booking_id_named(r, "booking_id")?,
                    r.try_get("version")?,
                ))
            })
            .collect()
    }

    /// Every system's last known state of a booking.
    pub async fn known_states(
        &self,
        business_id: &BusinessId,
        booking_id: &BookingId,
    ) -> Result<Vec<KnownState>, StoreError> {
        let rows = self
            .rows_of_booking(
                "SELECT system, version, status, seen_at FROM booking_sync \
                 WHERE business_id = $1 AND booking_id = $2 ORDER BY system",
                business_id,
                booking_id,
            )
            .await?;
        rows.iter().map(known_from_row).collect()
    }

    pub async fn put_known(
        &self,
        business_id: &BusinessId,
        booking_id: &BookingId,
        system: System,
        version: &str,
        status: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        put_known_in(
            &mut conn,
            business_id,
            booking_id,
            system,
            version,
            status,
            now,
        )
        .await
    }

    /// A booking's story, oldest first.
    pub async fn booking_events(
        &self,
        business_id: &BusinessId,
        booking_id: &BookingId,
    ) -> Result<Vec<BookingEvent>, StoreError> {
        let rows = self
            .rows_of_booking(
                "SELECT at, origin, kind, detail FROM booking_events \
                 WHERE business_id = $1 AND booking_id = $2 ORDER BY id",
                business_id,
                booking_id,
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(BookingEvent {
                    at: from_millis(r.try_get("at")?)?,
                    origin: r.try_get("origin")?,
                    kind: r.try_get("kind")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// The rows `sql` reads of one booking: `$1` its business, `$2` its id.
    async fn rows_of_booking(
        &self,
        sql: &'static str,
        business_id: &BusinessId,
        booking_id: &BookingId,
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        Ok(sqlx::query(sql)
            .bind(business_id.as_str())
            .bind(booking_id.as_str())
            .fetch_all(&self.pool)
            .await?)
    }

    /// When the booking last had an event of `kind` (`moved`), if ever.
    pub async fn last_event_at(
        &self,
        business_id: &BusinessId,
        booking_id: &BookingId,
        kind: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT MAX(at) FROM booking_events \
             WHERE business_id = $1 AND booking_id = $2 AND kind = $3",
        )
        .bind(business_id.as_str())
        .bind(booking_id.as_str())
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?;
        at.flatten().map(from_millis).transpose()
    }

    /// When the client said they will come, if they did.
    pub async fn visit_confirmed_at(
        &self,
        booking_id: &BookingId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<Option<i64>> =
            sqlx::query_scalar("SELECT confirmed_at FROM bookings WHERE id = $1")
                .bind(booking_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        at.flatten().map(from_millis).transpose()
    }

    /// Reminders of a booking already handled (sent or skipped), as `(offset seconds, start, skipped)`.
    pub async fn reminders_done(
        &self,
        business_id: &BusinessId,
        booking_id: &BookingId,
    ) -> Result<Vec<(i64, DateTime<Utc>, bool)>, StoreError> {
        let rows = sqlx::query(
            "SELECT offset_s, start_at, skipped FROM reminders_sent \
             WHERE business_id = $1 AND booking_id = $2 ORDER BY start_at, offset_s DESC",
        )
        .bind(business_id.as_str())
        .bind(booking_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let skipped: i64 = r.try_get("skipped")?;
                Ok((
                    r.try_get("offset_s")?,
                    from_millis(r.try_get("start_at")?)?,
                    skipped != 0,
                ))
            })
            .collect()
    }
}

pub async fn put_known_in(
    conn: &mut AnyConnection,
    business_id: &BusinessId,
    booking_id: &BookingId,
    system: System,
    version: &str,
    status: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO booking_sync (business_id, booking_id, system, version, status, seen_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (business_id, booking_id, system) \
         DO UPDATE SET version = excluded.version, status = excluded.status, \
           seen_at = excluded.seen_at",
    )
    .bind(business_id.as_str())
    .bind(booking_id.as_str())
    .bind(system.as_str())
    .bind(version)
    .bind(status)
    .bind(to_millis(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn record_event_in(
    conn: &mut AnyConnection,
    business_id: &BusinessId,
    booking_id: &BookingId,
    origin: &str,
    kind: &str,
    detail: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO booking_events (business_id, booking_id, at, origin, kind, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(business_id.as_str())
    .bind(booking_id.as_str())
    .bind(to_millis(now))
    .bind(origin)
    .bind(kind)
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Claims one reminder: `false` when it was handled before (another tick, an earlier process),
/// so the caller sends nothing.
pub async fn claim_reminder_in(
    conn: &mut AnyConnection,
    business_id: &BusinessId,
    booking_id: &BookingId,
    offset_s: i64,
    start: DateTime<Utc>,
    skipped: bool,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO reminders_sent (business_id, booking_id, offset_s, start_at, at, skipped) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (business_id, booking_id, offset_s, start_at) DO NOTHING",
    )
    .bind(business_id.as_str())
    .bind(booking_id.as_str())
    .bind(offset_s)
    .bind(to_millis(start))
    .bind(to_millis(now))
    .bind(i64::from(skipped))
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn confirm_visit_in(
    conn: &mut AnyConnection,
    booking_id: &BookingId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE bookings SET confirmed_at = $1, updated_at = $1 WHERE id = $2")
        .bind(to_millis(now))
        .bind(booking_id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn known_from_row(r: &sqlx::any::AnyRow) -> Result<KnownState, StoreError> {
    Ok(KnownState {
        system: super::system_in(r)?,
        version: r.try_get("version")?,
        status: r.try_get("status")?,
        seen_at: from_millis(r.try_get("seen_at")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bid;
    use crate::store::testing;
    use chrono::TimeZone;

    #[tokio::test]
    async fn known_state_is_replaced_and_reminders_are_claimed_once() {
        for store in testing::all().await {
            let t = Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap();
            let bk = crate::domain::bk("bk");
            let v1 = version_of("booked", t, "m1");
            store
                .put_known(&bid("b"), &bk, System::Yclients, &v1, "booked", t)
                .await
                .unwrap();
            let v2 = version_of("cancelled", t, "m1");
            store
                .put_known(&bid("b"), &bk, System::Yclients, &v2, "cancelled", t)
                .await
                .unwrap();
            let known = store
                .known_state(&bid("b"), &bk, System::Yclients)
                .await
                .unwrap();
            assert_eq!(known.map(|k| k.version), Some(v2));
            assert_eq!(store.known_states(&bid("b"), &bk).await.unwrap().len(), 1);

            let mut conn = store.pool().acquire().await.unwrap();
            assert!(
                claim_reminder_in(&mut conn, &bid("b"), &bk, 120, t, false, t)
                    .await
                    .unwrap()
            );
            assert!(
                !claim_reminder_in(&mut conn, &bid("b"), &bk, 120, t, false, t)
                    .await
                    .unwrap(),
                "{:?}",
                store.backend()
            );
            let later = t + chrono::Duration::hours(1);
            assert!(
                claim_reminder_in(&mut conn, &bid("b"), &bk, 120, later, false, t)
                    .await
                    .unwrap(),
                "a moved visit is reminded again"
            );
            record_event_in(&mut conn, &bid("b"), &bk, "schedule", "cancelled", "x", t)
                .await
                .unwrap();
            drop(conn);
            let events = store.booking_events(&bid("b"), &bk).await.unwrap();
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].kind, "cancelled");
        }
    }
}
