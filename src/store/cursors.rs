//! Per-channel read positions of messenger update streams (MAX's `marker`). Opaque text, so
//! each adapter keeps its own format.

use crate::domain::BusinessId;
use chrono::{DateTime, Utc};

use super::{Store, StoreError, to_millis};

impl Store {
    /// The cursor saved for `channel` (`"max"`), if any.
    pub async fn load_cursor(
        &self,
        business_id: &BusinessId,
        channel: &str,
    ) -> Result<Option<String>, StoreError> {
        let cursor = sqlx::query_scalar::<_, String>(
            "SELECT cursor FROM messenger_cursors WHERE business_id = $1 AND channel = $2",
        )
        .bind(business_id.as_str())
        .bind(channel)
        .fetch_optional(&self.pool)
        .await?;
        Ok(cursor)
    }

    /// Replaces the cursor of `channel`. Call it only once everything before the cursor was
    /// handled: the adapter resumes from here after a restart.
    pub async fn save_cursor(
        &self,
        business_id: &BusinessId,
        channel: &str,
        cursor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // Both dialects accept ON CONFLICT … DO UPDATE with `excluded`.
        sqlx::query(
            "INSERT INTO messenger_cursors (business_id, channel, cursor, updated_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (business_id, channel) \
             DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
        )
        .bind(business_id.as_str())
        .bind(channel)
        .bind(cursor)
        .bind(to_millis(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::bid;
    use crate::store::testing;

    #[tokio::test]
    async fn cursors_are_per_business_and_channel_and_overwrite() {
        for store in testing::all().await {
            let now = chrono::Utc::now();
            assert_eq!(store.load_cursor(&bid("b1"), "max").await.unwrap(), None);
            store
                .save_cursor(&bid("b1"), "max", "100", now)
                .await
                .unwrap();
            store
                .save_cursor(&bid("b1"), "max", "105", now)
                .await
                .unwrap();
            store
                .save_cursor(&bid("b2"), "max", "7", now)
                .await
                .unwrap();
            assert_eq!(
                store
                    .load_cursor(&bid("b1"), "max")
                    .await
                    .unwrap()
                    .as_deref(),
                Some("105")
            );
            assert_eq!(
                store
                    .load_cursor(&bid("b2"), "max")
                    .await
                    .unwrap()
                    .as_deref(),
                Some("7")
            );
            assert_eq!(
                store.load_cursor(&bid("b1"), "telegram").await.unwrap(),
                None
            );
        }
    }
}
