//! An application to a course (from a landing form or the bot), stored together with the job
//! that takes it to AlfaCRM, in one transaction: either both exist or neither.

use crate::domain::BusinessId;
use chrono::{DateTime, Utc};

use super::ALFACRM;
use crate::store::applications::insert_application_in;
use crate::store::{Store, StoreError, new_id};
use crate::sync::jobs::{NewJob, enqueue_in};

pub use crate::store::applications::{Application, NewApplication};

/// The job operation that turns an application into a customer in a group.
pub const APPLICATION_CREATED: &str = "application.created";

/// Stores the application and queues its delivery to AlfaCRM (when configured) together.
pub async fn submit(
    store: &Store,
    business_id: &BusinessId,
    new: NewApplication,
    deliver_to_alfacrm: bool,
    now: DateTime<Utc>,
) -> Result<Application, StoreError> {
    let app = Application {
        id: new_id(),
        business_id: business_id.clone(),
        details: new,
        created_at: now,
    };
    let source = serde_json::to_string(&app.details.source)
        .map_err(|e| StoreError::Corrupt(format!("source: {e}")))?;
    let mut tx = store.begin().await?;
    insert_application_in(&mut tx, &app, &source).await?;
    if deliver_to_alfacrm {
        enqueue_in(
            &mut tx,
            &NewJob {
                business_id: business_id.clone(),
                system: ALFACRM,
                operation: APPLICATION_CREATED.into(),
                payload: serde_json::json!({ "application_id": app.id }),
                idempotency_key: format!("application:{}", app.id),
                // One person's applications reach the CRM in order, so the second finds the
                // customer the first created.
                ordering_key: Some(format!("customer:{}", app.details.phone.as_str())),
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
    business_id: &BusinessId,
    id: &str,
) -> Result<Option<Application>, StoreError> {
    store.application(business_id, id).await
}

pub async fn count(store: &Store, business_id: &BusinessId) -> Result<i64, StoreError> {
    store.application_count(business_id).await
}

/// Adds `hits` turned-away requests (`honeypot`, `rate_limited`) to a form's counter.
pub async fn add_spam(
    store: &Store,
    business_id: &BusinessId,
    form: &str,
    reason: &str,
    hits: i64,
) -> Result<(), StoreError> {
    store.add_spam(business_id, form, reason, hits).await
}

pub async fn spam_hits(
    store: &Store,
    business_id: &BusinessId,
    form: &str,
    reason: &str,
) -> Result<i64, StoreError> {
    store.spam_hits(business_id, form, reason).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bid;
    use crate::domain::{Channel, Source, Utm};
    use crate::normalize::{Email, Phone};
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
            let app = submit(&store, &bid("b"), new("8 912 345-67-89"), true, now)
                .await
                .unwrap();
            let back = application(&store, &bid("b"), &app.id)
                .await
                .unwrap()
                .unwrap();
            assert!(
                application(&store, &bid("other"), &app.id)
                    .await
                    .unwrap()
                    .is_none()
            );
            assert_eq!(back.details.phone.as_str(), "+79123456789");
            assert_eq!(back.details.source.utm.source.as_deref(), Some("vk"));
            let jobs = crate::sync::Queue::new(store.clone())
                .jobs_in_state(crate::sync::JobState::Pending)
                .await
                .unwrap();
            assert_eq!(jobs.len(), 1);
            assert_eq!(jobs[0].payload["application_id"], app.id.as_str());
            add_spam(&store, &bid("b"), "landing", "honeypot", 1)
                .await
                .unwrap();
            add_spam(&store, &bid("b"), "landing", "honeypot", 40)
                .await
                .unwrap();
            assert_eq!(
                spam_hits(&store, &bid("b"), "landing", "honeypot")
                    .await
                    .unwrap(),
                41
            );
        }
    }
}
