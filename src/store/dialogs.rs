//! Conversation state, so a restart in the middle of a conversation resumes it.

use chrono::{DateTime, Utc};

use super::{Backend, Store, StoreError, to_millis};

impl Store {
    pub async fn load_dialog(
        &self,
        business_id: &str,
        chat_key: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT state FROM dialogs WHERE business_id = $1 AND chat_key = $2")
            .bind(business_id)
            .bind(chat_key)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn save_dialog(
        &self,
        business_id: &str,
        chat_key: &str,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // Both dialects accept ON CONFLICT … DO UPDATE with `excluded`.
        let sql = match self.backend {
            Backend::Sqlite | Backend::Postgres => {
                "INSERT INTO dialogs (business_id, chat_key, state, updated_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (business_id, chat_key) \
                 DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
            }
        };
        sqlx::query(sql)
            .bind(business_id)
            .bind(chat_key)
            .bind(state)
            .bind(to_millis(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing;

    #[tokio::test]
    async fn dialog_state_is_saved_and_replaced() {
        for store in testing::all().await {
            let now = chrono::Utc::now();
            assert_eq!(store.load_dialog("b", "telegram:1").await.unwrap(), None);
            store.save_dialog("b", "telegram:1", "{\"a\":1}", now).await.unwrap();
            store.save_dialog("b", "telegram:1", "{\"a\":2}", now).await.unwrap();
            store.save_dialog("other", "telegram:1", "{\"a\":3}", now).await.unwrap();
            assert_eq!(
                store.load_dialog("b", "telegram:1").await.unwrap().as_deref(),
                Some("{\"a\":2}")
            );
        }
    }
}
