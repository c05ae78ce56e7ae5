//! Clients' questions relayed to the business's admin chat (`[support]`): which admin-chat
//! message stands for which client chat. The last lines of a chat that go along are read
//! from the chat log (`Store::last_chat_lines`).

use crate::domain::BusinessId;
use chrono::{DateTime, Utc};

use super::{Store, StoreError, to_millis};

/// One relayed question as posted in an admin chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportRelay<'a> {
    /// `telegram` or `max`.
    pub messenger: &'a str,
    pub admin_chat: &'a str,
    pub admin_message: &'a str,
    /// The client's chat ([`crate::domain::ChatRef::key`]).
    pub chat_key: &'a str,
    /// The relay job's key: a retried job finds what it already posted.
    pub question_key: &'a str,
}

impl Store {
    pub async fn record_support_relay(
        &self,
        business_id: &BusinessId,
        relay: &SupportRelay<'_>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO support_relays (business_id, messenger, admin_chat, admin_message, \
             chat_key, question_key, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(business_id.as_str())
        .bind(relay.messenger)
        .bind(relay.admin_chat)
        .bind(relay.admin_message)
        .bind(relay.chat_key)
        .bind(relay.question_key)
        .bind(to_millis(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether the question with this key was already posted in `messenger`'s admin chat.
    pub async fn support_relayed(
        &self,
        business_id: &BusinessId,
        question_key: &str,
        messenger: &str,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM support_relays WHERE business_id = $1 AND question_key = $2 \
             AND messenger = $3",
        )
        .bind(business_id.as_str())
        .bind(question_key)
        .bind(messenger)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// The client chat whose question `admin_message` in `admin_chat` relayed, if it is one.
    pub async fn support_relay_chat(
        &self,
        business_id: &BusinessId,
        messenger: &str,
        admin_chat: &str,
        admin_message: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT chat_key FROM support_relays WHERE business_id = $1 AND messenger = $2 \
             AND admin_chat = $3 AND admin_message = $4",
        )
        .bind(business_id.as_str())
        .bind(messenger)
        .bind(admin_chat)
        .bind(admin_message)
        .fetch_optional(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::SupportRelay;
    use crate::domain::bid;
    use crate::store::testing;
    use chrono::{Duration, Utc};

    #[tokio::test]
    async fn a_relay_maps_its_admin_message_back_to_the_clients_chat() {
        for store in testing::all().await {
            let now = Utc::now();
            let relay = SupportRelay {
                messenger: "telegram",
                admin_chat: "-1001",
                admin_message: "77",
                chat_key: "max:5",
                question_key: "support:max:5:1",
            };
            assert!(
                !store
                    .support_relayed(&bid("b"), relay.question_key, "telegram")
                    .await
                    .unwrap()
            );
            store
                .record_support_relay(&bid("b"), &relay, now)
                .await
                .unwrap();
            assert!(
                store
                    .support_relayed(&bid("b"), relay.question_key, "telegram")
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .support_relayed(&bid("b"), relay.question_key, "max")
                    .await
                    .unwrap()
            );
            let chat = |admin_chat: &'static str, message: &'static str| {
                let store = store.clone();
                async move {
                    store
                        .support_relay_chat(&bid("b"), "telegram", admin_chat, message)
                        .await
                        .unwrap()
                }
            };
            assert_eq!(chat("-1001", "77").await.as_deref(), Some("max:5"));
            // The same message id in another chat is no relay of ours.
            assert_eq!(chat("-1002", "77").await, None);
            assert_eq!(chat("-1001", "78").await, None);
            // The same question is posted once per messenger.
            assert!(
                store
                    .record_support_relay(&bid("b"), &relay, now)
                    .await
                    .is_err()
            );
            // Past the chat log's retention the post leads nowhere; a newer one still does.
            let newer = SupportRelay {
                admin_message: "79",
                question_key: "support:max:5:2",
                ..relay.clone()
            };
            store
                .record_support_relay(&bid("b"), &newer, now + Duration::days(100))
                .await
                .unwrap();
            let config = crate::store::retention::RetentionConfig::default();
            let purged = store
                .purge_expired(&bid("b"), &config, now + Duration::days(181))
                .await
                .unwrap();
            assert_eq!(purged.support_relays, 1, "{:?}", store.backend());
            assert_eq!(chat("-1001", "77").await, None);
            assert_eq!(chat("-1001", "79").await.as_deref(), Some("max:5"));
            store
                .record_support_relay(&bid("b"), &relay, now)
                .await
                .unwrap();

            for (i, text) in ["один", "два", "три", "четыре"].iter().enumerate() {
                store
                    .log_chat(
                        &bid("b"),
                        "max:5",
                        now + Duration::seconds(i as i64),
                        "client",
                        text,
                        None,
                    )
                    .await
                    .unwrap();
            }
            let lines = store
                .last_chat_lines(&bid("b"), "max:5", now + Duration::seconds(3), 2)
                .await
                .unwrap();
            let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
            assert_eq!(texts, ["два", "три"], "{:?}", store.backend());
        }
    }
}
