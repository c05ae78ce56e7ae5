//! Clients: one card per phone and business, found or created on every booking, with their
//! agreement to the personal-data policy.

use crate::domain::BusinessId;
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::bookings::{BOOKING_COLUMNS, booking_from_row, stored_phone};
use super::{Store, StoreError, from_millis, new_id, to_millis};
use crate::domain::{Booking, Client, Consent};
use crate::normalize::{Email, Phone};

impl Store {
    /// Finds the client by phone or creates them; a known client's name and email are updated
    /// only with non-empty values, so a later short answer never erases what we knew.
    pub async fn upsert_client(
        &self,
        business_id: &BusinessId,
        phone: &Phone,
        name: &str,
        email: Option<&Email>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let mut conn = self.pool.acquire().await?;
        upsert_client_in(&mut conn, business_id, phone, name, email, now).await
    }

    /// Finds the client by phone or creates them, and records their agreement to the
    /// personal-data policy: a school's applicant, who has no booking.
    pub async fn record_consent(
        &self,
        business_id: &BusinessId,
        phone: &Phone,
        name: &str,
        consent: &Consent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        upsert_client_in(&mut tx, business_id, phone, name, None, now).await?;
        set_consent_in(&mut tx, business_id, phone, consent).await?;
        tx.commit().await?;
        Ok(())
    }

    /// When client `phone` agreed to the personal-data policy, and to which version of it.
    pub async fn client_consent(
        &self,
        business_id: &BusinessId,
        phone: &Phone,
    ) -> Result<Option<Consent>, StoreError> {
        let row: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT consent_at, consent_version FROM clients WHERE business_id = $1 AND phone = $2",
        )
        .bind(business_id.as_str())
        .bind(phone.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some((Some(at), Some(version))) => Ok(Some(Consent {
                at: from_millis(at)?,
                version,
            })),
            _ => Ok(None),
        }
    }

    /// A client of this business (never of another, whatever id is asked for) and their
    /// bookings, latest first.
    pub async fn client_with_bookings(
        &self,
        business_id: &BusinessId,
        client_id: &str,
    ) -> Result<Option<(Client, Vec<Booking>)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, business_id, phone, name, email FROM clients \
             WHERE business_id = $1 AND id = $2",
        )
        .bind(business_id.as_str())
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("client {client_id} {what}: {e}"))
        };
        let phone: String = row.try_get("phone")?;
        let email: Option<String> = row.try_get("email")?;
        let client = Client {
            id: row.try_get("id")?,
            business_id: crate::store::business_id_in(&row)?,
            phone: stored_phone(&phone).map_err(|e| corrupt("phone", &e))?,
            name: row.try_get("name")?,
            email: email
                .map(|e| Email::parse(&e))
                .transpose()
                .map_err(|e| corrupt("email", &e))?,
        };
        let sql = format!(
            "SELECT {BOOKING_COLUMNS} FROM bookings b JOIN clients c ON c.id = b.client_id \
             WHERE b.business_id = $1 AND b.client_id = $2 ORDER BY b.start_at DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(business_id.as_str())
            .bind(client_id)
            .fetch_all(&self.pool)
            .await?;
        let bookings = rows
            .iter()
            .map(booking_from_row)
            .collect::<Result<_, _>>()?;
        Ok(Some((client, bookings)))
    }
}

pub async fn upsert_client_in(
    conn: &mut AnyConnection,
    business_id: &BusinessId,
    phone: &Phone,
    name: &str,
    email: Option<&Email>,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let existing: Option<String> =
        sqlx::query_scalar("SELECT id FROM clients WHERE business_id = $1 AND phone = $2")
            .bind(business_id.as_str())
            .bind(phone.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(id) = existing {
        sqlx::query(
            "UPDATE clients SET \
               name = CASE WHEN $1 = '' THEN name ELSE $1 END, \
               email = COALESCE($2, email), updated_at = $3 WHERE id = $4",
        )
        .bind(name.trim())
        .bind(email.map(|e| e.as_str().to_string()))
        .bind(to_millis(now))
        .bind(&id)
        .execute(&mut *conn)
        .await?;
        return Ok(id);
    }
    let id = new_id();
    sqlx::query(
        "INSERT INTO clients (id, business_id, phone, name, email, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(&id)
    .bind(business_id.as_str())
    .bind(phone.as_str())
    .bind(name.trim())
    .bind(email.map(|e| e.as_str().to_string()))
    .bind(to_millis(now))
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

/// Records on client `phone`'s card their agreement to the personal-data policy. Bookings made
/// outside the bot (the schedule's own, imports) never call this: their clients agreed to
/// nothing here.
pub async fn set_consent_in(
    conn: &mut AnyConnection,
    business_id: &BusinessId,
    phone: &Phone,
    consent: &Consent,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE clients SET consent_at = $1, consent_version = $2 \
         WHERE business_id = $3 AND phone = $4",
    )
    .bind(to_millis(consent.at))
    .bind(&consent.version)
    .bind(business_id.as_str())
    .bind(phone.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
impl Store {
    /// The phones of the clients not forgotten, in order.
    pub(crate) async fn remembered_phones(&self) -> Vec<String> {
        sqlx::query_scalar::<_, String>(
            "SELECT phone FROM clients WHERE phone NOT LIKE 'forgotten:%' ORDER BY phone",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}
