//! The conversation as it happened: client inputs and bot replies, oldest first.

use crate::domain::BusinessId;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, from_millis, to_millis};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    pub at: DateTime<Utc>,
    /// `client` or `bot`.
    pub author: String,
    pub text: String,
}

/// A chat's lines in a period, in the order they were said: served by `chat_log_latest`.
/// Parameters: business, chat key, from, to (Unix ms). `+at` keeps SQLite from reading the
/// business's lines of the period by `chat_log_by_time` instead of the chat's few.
pub(super) const CHAT_LINES_SQL: &str = "SELECT at, author, text FROM chat_log \
     WHERE business_id = $1 AND chat_key = $2 AND +at >= $3 AND +at <= $4 ORDER BY id";

/// The last lines of a chat before a moment, latest first: served by `chat_log_latest`.
/// Parameters: business, chat key, before (Unix ms), how many. `+at`: as above.
pub(super) const LAST_CHAT_LINES_SQL: &str = "SELECT at, author, text FROM chat_log \
     WHERE business_id = $1 AND chat_key = $2 AND +at < $3 ORDER BY id DESC LIMIT $4";

/// A line as [`CHAT_LINES_SQL`] and [`LAST_CHAT_LINES_SQL`] read it.
fn chat_line(r: &sqlx::any::AnyRow) -> Result<ChatLine, StoreError> {
    Ok(ChatLine {
        at: from_millis(r.try_get("at")?)?,
        author: r.try_get("author")?,
        text: r.try_get("text")?,
    })
}

impl Store {
    pub async fn log_chat(
        &self,
        business_id: &BusinessId,
        chat_key: &str,
        at: DateTime<Utc>,
        author: &str,
        text: &str,
        buttons: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO chat_log (business_id, chat_key, at, author, text, buttons) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(business_id.as_str())
        .bind(chat_key)
        .bind(to_millis(at))
        .bind(author)
        .bind(text)
        .bind(buttons.map(str::to_string))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The buttons (as stored JSON) of the bot's latest message that had any.
    pub async fn last_buttons(
        &self,
        business_id: &BusinessId,
        chat_key: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT buttons FROM chat_log WHERE business_id = $1 AND chat_key = $2 \
             AND buttons IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .bind(business_id.as_str())
        .bind(chat_key)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn chat_lines(
        &self,
        business_id: &BusinessId,
        chat_key: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ChatLine>, StoreError> {
        let rows = sqlx::query(CHAT_LINES_SQL)
            .bind(business_id.as_str())
            .bind(chat_key)
            .bind(to_millis(from))
            .bind(to_millis(to))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(chat_line).collect()
    }

    /// The last `n` lines of a chat logged before `before`, oldest first.
    pub async fn last_chat_lines(
        &self,
        business_id: &BusinessId,
        chat_key: &str,
        before: DateTime<Utc>,
        n: i64,
    ) -> Result<Vec<ChatLine>, StoreError> {
        let rows = sqlx::query(LAST_CHAT_LINES_SQL)
            .bind(business_id.as_str())
            .bind(chat_key)
            .bind(to_millis(before))
            .bind(n)
            .fetch_all(&self.pool)
            .await?;
        let mut lines = rows.iter().map(chat_line).collect::<Result<Vec<_>, _>>()?;
        lines.reverse();
        Ok(lines)
    }
}

#[cfg(test)]
impl Store {
    /// How many lines `author` (`client`, `bot`, `admin`) wrote, in all chats.
    pub(crate) async fn chat_lines_by(&self, author: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM chat_log WHERE author = $1")
            .bind(author)
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// Lines of a chat that keep the buttons shown with them.
    pub(crate) async fn chat_lines_with_buttons(&self, chat_key: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM chat_log WHERE chat_key = $1 AND buttons IS NOT NULL",
        )
        .bind(chat_key)
        .fetch_one(&self.pool)
        .await
        .expect("count")
    }

    /// How many lines `author` wrote that read `text`, in all chats.
    pub(crate) async fn chat_lines_by_reading(&self, author: &str, text: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM chat_log WHERE author = $1 AND text = $2")
            .bind(author)
            .bind(text)
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::bid;
    use crate::store::testing;
    use chrono::{Duration, Utc};

    #[tokio::test]
    async fn lines_come_back_in_order_within_the_window() {
        for store in testing::all().await {
            let t0 = Utc::now();
            store
                .log_chat(&bid("b"), "telegram:1", t0, "client", "/start", None)
                .await
                .unwrap();
            store
                .log_chat(
                    &bid("b"),
                    "telegram:1",
                    t0,
                    "bot",
                    "Здравствуйте",
                    Some("[1]"),
                )
                .await
                .unwrap();
            store
                .log_chat(&bid("b"), "telegram:2", t0, "client", "чужое", None)
                .await
                .unwrap();
            let later = t0 + Duration::hours(5);
            store
                .log_chat(&bid("b"), "telegram:1", later, "client", "потом", None)
                .await
                .unwrap();
            let lines = store
                .chat_lines(
                    &bid("b"),
                    "telegram:1",
                    t0 - Duration::minutes(1),
                    t0 + Duration::hours(1),
                )
                .await
                .unwrap();
            let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
            assert_eq!(texts, ["/start", "Здравствуйте"], "{:?}", store.backend());
            assert_eq!(
                store
                    .last_buttons(&bid("b"), "telegram:1")
                    .await
                    .unwrap()
                    .as_deref(),
                Some("[1]")
            );
        }
    }
}
