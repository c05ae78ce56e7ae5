//! Applications to a course (from a landing form or the bot) and the per-form counters of
//! turned-away requests.

use crate::domain::BusinessId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use super::{Store, StoreError, from_millis, to_millis};
use crate::domain::Source;
use crate::normalize::{Email, Phone};

/// An application as the form or the bot submitted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewApplication {
    /// Which form (or `bot`) it came from.
    pub form: String,
    pub name: String,
    pub phone: Phone,
    pub email: Option<Email>,
    /// The course key from `[[school.courses]]`.
    pub course: Option<String>,
    /// The AlfaCRM group chosen, when the form or the bot chose one.
    pub group_id: Option<i64>,
    /// A trial lesson rather than enrolment.
    pub trial: bool,
    pub comment: Option<String>,
    pub source: Source,
    pub referrer: Option<String>,
}

/// A stored application: what was submitted, of which business, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub id: String,
    pub business_id: BusinessId,
    #[serde(flatten)]
    pub details: NewApplication,
    pub created_at: DateTime<Utc>,
}

/// Stores `app` inside the caller's transaction, so the job that delivers it can be enqueued
/// in the same one.
pub async fn insert_application_in(
    conn: &mut AnyConnection,
    app: &Application,
    source: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO school_applications (id, business_id, form, name, phone, email, course, \
           group_id, trial, comment, source, referrer, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&app.id)
    .bind(app.business_id.as_str())
    .bind(&app.details.form)
    .bind(&app.details.name)
    .bind(app.details.phone.as_str())
    .bind(app.details.email.as_ref().map(|e| e.as_str().to_string()))
    .bind(app.details.course.as_deref())
    .bind(app.details.group_id)
    .bind(i64::from(app.details.trial))
    .bind(app.details.comment.as_deref())
    .bind(source)
    .bind(app.details.referrer.as_deref())
    .bind(to_millis(app.created_at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Application `id` of `business_id`; another business's application is not found.
    pub async fn application(
        &self,
        business_id: &BusinessId,
        id: &str,
    ) -> Result<Option<Application>, StoreError> {
        let row = sqlx::query(
            "SELECT id, business_id, form, name, phone, email, course, group_id, trial, comment, \
               source, referrer, created_at FROM school_applications WHERE id = $1 AND business_id = $2",
        )
        .bind(id)
        .bind(business_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("application {id} {what}: {e}"))
        };
        let phone: String = r.try_get("phone")?;
        let email: Option<String> = r.try_get("email")?;
        let source: String = r.try_get("source")?;
        Ok(Some(Application {
            id: r.try_get("id")?,
            business_id: crate::store::business_id_in(&r)?,
            details: NewApplication {
                form: r.try_get("form")?,
                name: r.try_get("name")?,
                phone: Phone::parse(&phone).map_err(|e| corrupt("phone", &e))?,
                email: email
                    .map(|e| Email::parse(&e))
                    .transpose()
                    .map_err(|e| corrupt("email", &e))?,
                course: r.try_get("course")?,
                group_id: r.try_get("group_id")?,
                trial: r.try_get::<i64, _>("trial")? != 0,
                comment: r.try_get("comment")?,
                source: serde_json::from_str(&source).map_err(|e| corrupt("source", &e))?,
                referrer: r.try_get("referrer")?,
            },
            created_at: from_millis(r.try_get("created_at")?)?,
        }))
    }

    pub async fn application_count(&self, business_id: &BusinessId) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM school_applications WHERE business_id = $1")
                .bind(business_id.as_str())
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Adds `hits` turned-away requests (`honeypot`, `rate_limited`) to a form's counter.
    pub async fn add_spam(
        &self,
        business_id: &BusinessId,
        form: &str,
        reason: &str,
        hits: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO school_spam (business_id, form, reason, hits) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (business_id, form, reason) DO UPDATE SET hits = school_spam.hits + excluded.hits",
        )
        .bind(business_id.as_str())
        .bind(form)
        .bind(reason)
        .bind(hits)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn spam_hits(
        &self,
        business_id: &BusinessId,
        form: &str,
        reason: &str,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT hits FROM school_spam WHERE business_id = $1 AND form = $2 AND reason = $3",
        )
        .bind(business_id.as_str())
        .bind(form)
        .bind(reason)
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or(0))
    }
}
