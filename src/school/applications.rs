//! An application to a course (from a landing form or the bot), stored together with the job
//! that takes it to AlfaCRM, in one transaction: either both exist or neither.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::ALFACRM;
use crate::domain::Source;
use crate::normalize::{Email, Phone};
use crate::store::{Store, StoreError, from_millis, new_id, to_millis};
use crate::sync::jobs::{NewJob, enqueue_in};

/// The job operation that turns an application into a customer in a group.
pub const APPLICATION_CREATED: &str = "application.created";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub id: String,
    pub business_id: String,
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
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewApplication {
    pub form: String,
    pub name: String,
    pub phone: Phone,
    pub email: Option<Email>,
    pub course: Option<String>,
    pub group_id: Option<i64>,
    pub trial: bool,
    pub comment: Option<String>,
    pub source: Source,
    pub referrer: Option<String>,
}

/// Stores the application and queues its delivery to AlfaCRM (when configured) together.
pub async fn submit(
    store: &Store,
    business_id: &str,
    new: NewApplication,
    deliver_to_alfacrm: bool,
    now: DateTime<Utc>,
) -> Result<Application, StoreError> {
    let app = Application {
        id: new_id(),
        business_id: business_id.into(),
        form: new.form,
        name: new.name,
        phone: new.phone,
        email: new.email,
        course: new.course,
        group_id: new.group_id,
        trial: new.trial,
        comment: new.comment,
        source: new.source,
        referrer: new.referrer,
        created_at: now,
    };
    let source = serde_json::to_string(&app.source)
        .map_err(|e| StoreError::Corrupt(format!("source: {e}")))?;
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO school_applications (id, business_id, form, name, phone, email, course, \
           group_id, trial, comment, source, referrer, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&app.id)
    .bind(&app.business_id)
    .bind(&app.form)
    .bind(&app.name)
    .bind(app.phone.as_str())
    .bind(app.email.as_ref().map(|e| e.as_str().to_string()))
    .bind(app.course.as_deref())
    .bind(app.group_id)
    .bind(i64::from(app.trial))
    .bind(app.comment.as_deref())
    .bind(source)
    .bind(app.referrer.as_deref())
    .bind(to_millis(now))
    .execute(&mut *tx)
    .await?;
    if deliver_to_alfacrm {
        enqueue_in(
            &mut tx,
            &NewJob {
                business_id: business_id.into(),
                system: ALFACRM.into(),
                operation: APPLICATION_CREATED.into(),
                payload: serde_json::json!({ "application_id": app.id }),
                idempotency_key: format!("application:{}", app.id),
                // One person's applications reach the CRM in order, so the second finds the
                // customer the first created.
                ordering_key: Some(format!("customer:{}", app.phone.as_str())),
            },
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(app)
}

/// Application `id` of `business_id`; another business's application is not found.
pub async fn application(
    store: &Store,
    business_id: &str,
    id: &str,
) -> Result<Option<Application>, StoreError> {
    let row = sqlx::query(
        "SELECT id, business_id, form, name, phone, email, course, group_id, trial, comment, \
           source, referrer, created_at FROM school_applications WHERE id = $1 AND business_id = $2",
    )
    .bind(id)
    .bind(business_id)
    .fetch_optional(store.pool())
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
        business_id: r.try_get("business_id")?,
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
        created_at: from_millis(r.try_get("created_at")?)?,
    }))
}

pub async fn count(store: &Store, business_id: &str) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM school_applications WHERE business_id = $1")
            .bind(business_id)
            .fetch_one(store.pool())
            .await?,
    )
}

/// Adds `hits` turned-away requests (`honeypot`, `rate_limited`) to a form's counter.
pub async fn add_spam(
    store: &Store,
    business_id: &str,
    form: &str,
    reason: &str,
    hits: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO school_spam (business_id, form, reason, hits) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (business_id, form, reason) DO UPDATE SET hits = school_spam.hits + excluded.hits",
    )
    .bind(business_id)
    .bind(form)
    .bind(reason)
    .bind(hits)
    .execute(store.pool())
    .await?;
    Ok(())
}

pub async fn spam_hits(
    store: &Store,
    business_id: &str,
    form: &str,
    reason: &str,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT hits FROM school_spam WHERE business_id = $1 AND form = $2 AND reason = $3",
    )
    .bind(business_id)
    .bind(form)
    .bind(reason)
    .fetch_optional(store.pool())
    .await?
    .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Utm};
    use crate::store::testing;

    fn new(phone: &str) -> NewApplication {
        NewApplication {
            form: "landing".into(),
            name: "Анна".into(),
            phone: Phone::parse(phone).unwrap(),
            email: Some(Email::parse("anna@example.ru").unwrap()),
            course: Some("python".into()),
            group_id: None,
            trial: false,
            comment: None,
            source: Source {
                channel: Channel::WebForm,
                payload: None,
                link_name: None,
                utm: Utm {
                    source: Some("vk".into()),
                    ..Utm::default()
                },
            },
            referrer: Some("https://vk.com/".into()),
        }
    }

    #[tokio::test]
    async fn an_application_and_its_job_are_stored_together_and_read_back() {
        for store in testing::all().await {
            let now = Utc::now();
            let app = submit(&store, "b", new("8 912 345-67-89"), true, now)
                .await
                .unwrap();
            let back = application(&store, "b", &app.id).await.unwrap().unwrap();
            assert!(
                application(&store, "other", &app.id)
                    .await
                    .unwrap()
                    .is_none()
            );
            assert_eq!(back.phone.as_str(), "+79123456789");
            assert_eq!(back.source.utm.source.as_deref(), Some("vk"));
            let jobs = crate::sync::Queue::new(store.clone())
                .jobs_in_state(crate::sync::JobState::Pending)
                .await
                .unwrap();
            assert_eq!(jobs.len(), 1);
            assert_eq!(jobs[0].payload["application_id"], app.id.as_str());
            add_spam(&store, "b", "landing", "honeypot", 1)
                .await
                .unwrap();
            add_spam(&store, "b", "landing", "honeypot", 40)
                .await
                .unwrap();
            assert_eq!(
                spam_hits(&store, "b", "landing", "honeypot").await.unwrap(),
                41
            );
        }
    }
}
