//! The built-in salon's records (`sandbox_records`): a master's busy times, and records
//! written so that two requests for one time book it once.

use crate::domain::{BookingId, BusinessId};
use sqlx::Row;

use super::{Backend, Store, StoreError};

/// A record to write, times in unix milliseconds.
pub struct NewSandboxRecord<'a> {
    pub id: &'a str,
    pub business_id: &'a BusinessId,
    pub master_id: &'a str,
    pub service_id: &'a str,
    pub start_at: i64,
    pub end_at: i64,
    pub client_phone: &'a str,
    pub client_name: &'a str,
    pub comment: &'a str,
    pub booking_id: &'a BookingId,
    pub created_at: i64,
}

/// A record as stored, times in unix milliseconds.
pub struct SandboxRecord {
    pub id: String,
    pub service_id: String,
    pub master_id: String,
    pub start_at: i64,
    pub end_at: i64,
    pub status: String,
}

impl Store {
    /// Start and end of the master's active records that overlap `from`..`to`.
    pub async fn sandbox_busy(
        &self,
        business_id: &BusinessId,
        master_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT start_at, end_at FROM sandbox_records WHERE business_id = $1 \
             AND master_id = $2 AND status = 'active' AND start_at < $3 AND end_at > $4",
        )
        .bind(business_id.as_str())
        .bind(master_id)
        .bind(to)
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("start_at")?, r.try_get("end_at")?)))
            .collect()
    }

    /// Writes the record unless its master is busy at that time: false when busy. On
    /// PostgreSQL an advisory lock per master serialises concurrent writers; the unique index
    /// catches what slips past.
    pub async fn insert_sandbox_record(
        &self,
        r: &NewSandboxRecord<'_>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))::text")
                .bind(format!("{}:{}", r.business_id, r.master_id))
                .execute(&mut *tx)
                .await?;
        }
        let clash: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sandbox_records WHERE business_id = $1 AND master_id = $2 \
             AND status = 'active' AND start_at < $3 AND end_at > $4",
        )
        .bind(r.business_id.as_str())
        .bind(r.master_id)
        .bind(r.end_at)
        .bind(r.start_at)
        .fetch_one(&mut *tx)
        .await?;
        if clash > 0 {
            return Ok(false);
        }
        let inserted = sqlx::query(
            "INSERT INTO sandbox_records (id, business_id, master_id, service_id, start_at, end_at, \
               client_phone, client_name, comment, booking_id, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'active', $11)",
        )
        .bind(r.id)
        .bind(r.business_id.as_str())
        .bind(r.master_id)
        .bind(r.service_id)
        .bind(r.start_at)
        .bind(r.end_at)
        .bind(r.client_phone)
        .bind(r.client_name)
        .bind(r.comment)
        .bind(r.booking_id.as_str())
        .bind(r.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Cancels the record; false when `business_id` has no record `id`.
    pub async fn cancel_sandbox_record(
        &self,
        business_id: &BusinessId,
        id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sandbox_records SET status = 'cancelled' WHERE id = $1 AND business_id = $2",
        )
        .bind(id)
        .bind(business_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() != 0)
    }

    /// Moves the record to `master_id` at `start_at`..`end_at` unless that master is busy
    /// then with another record: false when busy.
    pub async fn move_sandbox_record(
        &self,
        business_id: &BusinessId,
        id: &str,
        master_id: &str,
        start_at: i64,
        end_at: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let clash: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sandbox_records WHERE business_id = $1 AND master_id = $2 \
             AND status = 'active' AND id <> $3 AND start_at < $4 AND end_at > $5",
        )
        .bind(business_id.as_str())
        .bind(master_id)
        .bind(id)
        .bind(end_at)
        .bind(start_at)
        .fetch_one(&mut *tx)
        .await?;
        if clash > 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE sandbox_records SET master_id = $1, start_at = $2, end_at = $3 WHERE id = $4",
        )
        .bind(master_id)
        .bind(start_at)
        .bind(end_at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The active record written for our booking `booking_id`.
    pub async fn sandbox_record_for_booking(
        &self,
        business_id: &BusinessId,
        booking_id: &BookingId,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM sandbox_records WHERE business_id = $1 AND booking_id = $2 \
             AND status = 'active'",
        )
        .bind(business_id.as_str())
        .bind(booking_id.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn sandbox_record(
        &self,
        business_id: &BusinessId,
        id: &str,
    ) -> Result<Option<SandboxRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, service_id, master_id, start_at, end_at, status FROM sandbox_records \
             WHERE id = $1 AND business_id = $2",
        )
        .bind(id)
        .bind(business_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SandboxRecord {
            id: row.try_get("id")?,
            service_id: row.try_get("service_id")?,
            master_id: row.try_get("master_id")?,
            start_at: row.try_get("start_at")?,
            end_at: row.try_get("end_at")?,
            status: row.try_get("status")?,
        }))
    }
}
