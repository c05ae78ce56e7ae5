//! Conversation state, so a restart in the middle of a conversation resumes it, and the turn
//! that changes it: one read before the dialog engine runs, one transaction after.

use crate::domain::BusinessId;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{AttemptTurn, Backend, Store, StoreError, to_millis};
use crate::domain::Source;

/// One line of the chat log written with a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnLine {
    /// `client` or `bot`.
    pub author: &'static str,
    pub text: String,
    /// The buttons shown with a bot line, as JSON.
    pub buttons: Option<String>,
}

/// A step of the marketer's funnel a turn reached (read back by `store::analytics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunnelStep {
    /// The chat was started (`/start`, `bot_started`), with or without a deep link.
    Start,
    /// The client picked a time and was asked for their contacts.
    Contact,
}

impl FunnelStep {
    pub fn as_str(self) -> &'static str {
        match self {
            FunnelStep::Start => "start",
            FunnelStep::Contact => "contact",
        }
    }
}

/// A funnel step written with a turn, attributed to the chat's source.
#[derive(Debug, Clone, Copy)]
pub struct TurnEvent<'a> {
    pub step: FunnelStep,
    pub source: &'a Source,
}

/// Contact events of the chat after its latest start (served by `chat_events_by_chat`).
pub(super) const CONTACTS_SINCE_START: &str = "SELECT COUNT(*) FROM chat_events \
     WHERE business_id = $1 AND chat_key = $2 AND kind = 'contact' AND id > COALESCE( \
       (SELECT MAX(id) FROM chat_events WHERE business_id = $1 AND chat_key = $2 \
          AND kind = 'start'), 0)";

pub(super) const UPSERT_FUNNEL_HOUR: &str = "INSERT INTO funnel_hours \
       (business_id, hour, src_kind, src_label, started, reached) \
     VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (business_id, hour, src_kind, src_label) \
     DO UPDATE SET started = funnel_hours.started + excluded.started, \
       reached = funnel_hours.reached + excluded.reached";

pub(super) const HOUR_MS: i64 = 3_600_000;

/// What a chat's turn starts from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnStart {
    pub state: Option<String>,
    /// The buttons (JSON) of the bot's latest line that had any, when asked for.
    pub last_buttons: Option<String>,
}

/// Both dialects accept ON CONFLICT … DO UPDATE with `excluded`.
const UPSERT_DIALOG: &str = "INSERT INTO dialogs (business_id, chat_key, state, updated_at) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (business_id, chat_key) \
     DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at";

/// Served by the `dialogs` key and `chat_log_latest`. Parameters: business, chat key.
pub(crate) const LOAD_TURN_SQL: &str = "SELECT (SELECT state FROM dialogs WHERE business_id = $1 AND chat_key = $2) AS state, \
       (SELECT buttons FROM chat_log WHERE business_id = $1 AND chat_key = $2 \
          AND buttons IS NOT NULL ORDER BY id DESC LIMIT 1) AS buttons";

impl Store {
    /// The chat's dialog state and, with `with_buttons`, the buttons it was last shown, in one
    /// statement; on SQLite one statement with the other chats whose turns start meanwhile
    /// (`store::turn_reads`).
    pub async fn load_turn(
        &self,
        business_id: &BusinessId,
        chat_key: &str,
        with_buttons: bool,
    ) -> Result<TurnStart, StoreError> {
        if self.backend == Backend::Sqlite {
            return self
                .load_turn_grouped(business_id, chat_key, with_buttons)
                .await;
        }
        if !with_buttons {
            return Ok(TurnStart {
                state: self.load_dialog(business_id, chat_key).await?,
                last_buttons: None,
            });
        }
        let row = sqlx::query(LOAD_TURN_SQL)
            .bind(business_id.as_str())
            .bind(chat_key)
            .fetch_one(&self.pool)
            .await?;
        Ok(TurnStart {
            state: row.try_get("state")?,
            last_buttons: row.try_get("buttons")?,
        })
    }

    /// Writes a turn's chat lines, the funnel step it reached if any, and the dialog state
    /// after it in one transaction: either the whole turn is stored or none of it. Returns once
    /// it is committed; turns of other chats saved meanwhile share the transaction
    /// (`store::turns`).
    pub async fn save_turn(
        &self,
        business_id: &BusinessId,
        chat_key: &str,
        lines: &[TurnLine],
        event: Option<TurnEvent<'_>>,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.save_turn_with(
            business_id,
            chat_key,
            lines,
            event,
            AttemptTurn::None,
            state,
            now,
        )
        .await
    }

    /// [`Store::save_turn`] that also opens, refreshes or closes the chat's unfinished
    /// booking, in the same transaction: a lead for it can never miss a turn that was stored.
    #[allow(clippy::too_many_arguments)]
    pub async fn save_turn_with(
        &self,
        business_id: &BusinessId,
        chat_key: &str,
        lines: &[TurnLine],
        event: Option<TurnEvent<'_>>,
        attempt: AttemptTurn<'_>,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.save_turn_grouped(super::turns::OwnedTurn {
            business_id: business_id.clone(),
            chat_key: chat_key.to_string(),
            lines: lines.to_vec(),
            event: event.map(|e| (e.step, e.source.clone())),
            attempt: super::turns::OwnedAttempt::of(attempt),
            state: state.to_string(),
            now,
        })
        .await
    }

    pub async fn load_dialog(
        &self,
        business_id: &BusinessId,
        chat_key: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar(
                "SELECT state FROM dialogs WHERE business_id = $1 AND chat_key = $2",
            )
            .bind(business_id.as_str())
            .bind(chat_key)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    pub async fn save_dialog(
        &self,
        business_id: &BusinessId,
        chat_key: &str,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(UPSERT_DIALOG)
            .bind(business_id.as_str())
            .bind(chat_key)
            .bind(state)
            .bind(to_millis(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// What tests read of the chat events as they are stored.
#[cfg(test)]
impl Store {
    pub(crate) async fn chat_event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM chat_events")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// Kind, chat, start payload and tracked link's name of every event, oldest first.
    pub(crate) async fn chat_event_rows(
        &self,
    ) -> Vec<(String, String, Option<String>, Option<String>)> {
        sqlx::query_as("SELECT kind, chat_key, payload, link_name FROM chat_events ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    /// Kind, messenger and start payload of the events of one chat, oldest first.
    pub(crate) async fn chat_event_rows_of(
        &self,
        chat_key: &str,
    ) -> Vec<(String, String, Option<String>)> {
        sqlx::query_as(
            "SELECT kind, channel, payload FROM chat_events WHERE chat_key = $1 ORDER BY id",
        )
        .bind(chat_key)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    pub(crate) async fn dialog_count(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM dialogs")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }
}

#[cfg(test)]
mod tests {
    use super::TurnLine;
    use crate::domain::bid;
    use crate::store::testing;

    fn line(author: &'static str, text: &str, buttons: Option<&str>) -> TurnLine {
        TurnLine {
            author,
            text: text.into(),
            buttons: buttons.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn a_turn_is_stored_whole_in_order_and_read_back_in_one_go() {
        for store in testing::all().await {
            let now = chrono::Utc::now();
            let start = store
                .load_turn(&bid("b"), "telegram:1", true)
                .await
                .unwrap();
            assert_eq!(start, super::TurnStart::default());
            let lines = [
                line("client", "/start", None),
                line("bot", "Здравствуйте", Some("[1]")),
                line("bot", "Выберите услугу", Some("[2]")),
                line("bot", "без кнопок", None),
            ];
            store
                .save_turn(&bid("b"), "telegram:1", &lines, None, "{\"s\":1}", now)
                .await
                .unwrap();
            store
                .save_turn(
                    &bid("b"),
                    "telegram:2",
                    &[line("client", "чужое", Some("[9]"))],
                    None,
                    "{}",
                    now,
                )
                .await
                .unwrap();
            let start = store
                .load_turn(&bid("b"), "telegram:1", true)
                .await
                .unwrap();
            assert_eq!(start.state.as_deref(), Some("{\"s\":1}"));
            assert_eq!(
                start.last_buttons.as_deref(),
                Some("[2]"),
                "{:?}",
                store.backend()
            );
            let texts: Vec<String> = store
                .chat_lines(
                    &bid("b"),
                    "telegram:1",
                    now - chrono::Duration::seconds(1),
                    now,
                )
                .await
                .unwrap()
                .into_iter()
                .map(|l| format!("{}:{}", l.author, l.text))
                .collect();
            assert_eq!(
                texts,
                [
                    "client:/start",
                    "bot:Здравствуйте",
                    "bot:Выберите услугу",
                    "bot:без кнопок"
                ]
            );
        }
    }

    #[tokio::test]
    async fn a_turn_that_cannot_save_its_state_leaves_no_lines_behind() {
        for store in testing::all().await {
            let now = chrono::Utc::now();
            sqlx::query("ALTER TABLE dialogs RENAME TO dialogs_away")
                .execute(store.pool())
                .await
                .unwrap();
            let lines = [line("client", "/start", None), line("bot", "hi", None)];
            let source = crate::domain::Source::direct(crate::domain::Channel::Telegram);
            let start = super::TurnEvent {
                step: super::FunnelStep::Start,
                source: &source,
            };
            let err = store
                .save_turn(&bid("b"), "telegram:1", &lines, Some(start), "{}", now)
                .await;
            assert!(err.is_err(), "{:?}", store.backend());
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chat_log")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(count, 0, "half a turn was stored on {:?}", store.backend());
            let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chat_events")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(
                events,
                0,
                "a turn's event outlived it on {:?}",
                store.backend()
            );
        }
    }

    #[tokio::test]
    async fn dialog_state_is_saved_and_replaced() {
        for store in testing::all().await {
            let now = chrono::Utc::now();
            assert_eq!(
                store.load_dialog(&bid("b"), "telegram:1").await.unwrap(),
                None
            );
            store
                .save_dialog(&bid("b"), "telegram:1", "{\"a\":1}", now)
                .await
                .unwrap();
            store
                .save_dialog(&bid("b"), "telegram:1", "{\"a\":2}", now)
                .await
                .unwrap();
            store
                .save_dialog(&bid("other"), "telegram:1", "{\"a\":3}", now)
                .await
                .unwrap();
            assert_eq!(
                store
                    .load_dialog(&bid("b"), "telegram:1")
                    .await
                    .unwrap()
                    .as_deref(),
                Some("{\"a\":2}")
            );
        }
    }
}
