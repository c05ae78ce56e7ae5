//! Group commit of chat turns. Turns of different chats that become ready while a commit is
//! under way are written together by the next one: one `BEGIN IMMEDIATE … COMMIT` and one
//! multi-row statement per table for all of them, instead of each turn queueing for SQLite's
//! single write lock (and sleeping in its busy handler) with a transaction of its own. A turn's
//! caller is answered only after the commit that holds its turn, so a reply is never sent for
//! a turn that is not stored, and every turn is still stored whole or not at all: a batch that
//! fails is rolled back and its turns are written again one transaction each.

use crate::domain::BusinessId;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::dialogs::{CONTACTS_SINCE_START, FunnelStep, HOUR_MS, TurnLine, UPSERT_FUNNEL_HOUR};
use super::{AttemptTurn, Backend, Store, StoreError, to_millis};
use crate::domain::Source;

/// Turns in one transaction at most: bounds the time a commit holds the write lock and the
/// size of its statements.
const MAX_BATCH: usize = 256;

/// Rows per multi-row INSERT on PostgreSQL, well under its limit of 65,535 bound parameters
/// for the widest row (10 parameters).
const ROWS_PER_STATEMENT: usize = 500;

/// On SQLite a batch's rows go in as one JSON array a table: one statement, prepared once and
/// kept, and one bound value instead of one a column and row (sqlx copies each bound text twice
/// on its way to SQLite). Rows get ids in the array's order.
const SQLITE_EVENTS: &str = "INSERT INTO chat_events (business_id, chat_key, at, kind, channel, \
       payload, link_name, utm_source, utm_medium, utm_campaign) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
       value ->> 6, value ->> 7, value ->> 8, value ->> 9 FROM json_each($1) ORDER BY key";
const SQLITE_LINES: &str = "INSERT INTO chat_log (business_id, chat_key, at, author, text, buttons) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 \
     FROM json_each($1) ORDER BY key";
/// `WHERE true` tells SQLite the `ON CONFLICT` is the upsert's, not a join's.
const SQLITE_DIALOGS: &str = "INSERT INTO dialogs (business_id, chat_key, state, updated_at) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each($1) WHERE true \
     ON CONFLICT (business_id, chat_key) \
     DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at";

/// A turn as the batch writes it, owned so it can outlive the caller that handed it over.
pub(super) struct OwnedTurn {
    pub(super) business_id: BusinessId,
    pub(super) chat_key: String,
    pub(super) lines: Vec<TurnLine>,
    pub(super) event: Option<(FunnelStep, Source)>,
    pub(super) attempt: OwnedAttempt,
    pub(super) state: String,
    pub(super) now: DateTime<Utc>,
}

pub(super) enum OwnedAttempt {
    None,
    Enter(String),
    Stay(String),
    Booked,
}

impl OwnedAttempt {
    pub(super) fn of(attempt: AttemptTurn<'_>) -> OwnedAttempt {
        match attempt {
            AttemptTurn::None => OwnedAttempt::None,
            AttemptTurn::Enter(d) => OwnedAttempt::Enter(d.to_string()),
            AttemptTurn::Stay(d) => OwnedAttempt::Stay(d.to_string()),
            AttemptTurn::Booked => OwnedAttempt::Booked,
        }
    }

    fn as_turn(&self) -> AttemptTurn<'_> {
        match self {
            OwnedAttempt::None => AttemptTurn::None,
            OwnedAttempt::Enter(d) => AttemptTurn::Enter(d),
            OwnedAttempt::Stay(d) => AttemptTurn::Stay(d),
            OwnedAttempt::Booked => AttemptTurn::Booked,
        }
    }
}

pub(super) struct Pending {
    turn: OwnedTurn,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// Turns handed over and not yet committed.
pub(super) type TurnQueue = super::group::Group<Pending>;

/// The oldest pending turns, at most one per chat: a dialog upsert may not touch one row twice
/// (PostgreSQL refuses it), and a chat's later turn must not commit before its earlier one
/// anyway.
fn take_batch(pending: &mut Vec<Pending>) -> Vec<Pending> {
    let mut chats = HashSet::new();
    let mut batch = Vec::new();
    let mut rest = Vec::new();
    for p in pending.drain(..) {
        if batch.len() < MAX_BATCH
            && rest.is_empty()
            && chats.insert((p.turn.business_id.clone(), p.turn.chat_key.clone()))
        {
            batch.push(p);
        } else {
            rest.push(p);
        }
    }
    *pending = rest;
    batch
}

impl Store {
    /// Hands the turn to the next group commit and returns once it is committed (or failed).
    pub(super) async fn save_turn_grouped(&self, turn: OwnedTurn) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        self.turns
            .wait(
                Pending { turn, done },
                answer,
                || StoreError::TurnLost,
                take_batch,
                |batch| {
                    let store = self.clone();
                    async move { store.commit_batch(batch).await }
                },
            )
            .await
    }

    async fn commit_batch(&self, batch: Vec<Pending>) {
        if batch.len() > 1 {
            let turns: Vec<&OwnedTurn> = batch.iter().map(|p| &p.turn).collect();
            match self.write_turns(&turns).await {
                Ok(()) => {
                    for p in batch {
                        let _ = p.done.send(Ok(()));
                    }
                    return;
                }
                // One bad turn must not sink the others: each is tried again alone.
                Err(e) => {
                    tracing::debug!(error = %e, turns = batch.len(), "a batch of turns failed")
                }
            }
        }
        for p in batch {
            let r = self.write_turns(&[&p.turn]).await;
            let _ = p.done.send(r);
        }
    }

    /// All `turns` in one transaction.
    async fn write_turns(&self, turns: &[&OwnedTurn]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for t in turns {
            super::unfinished::attempt_turn_in(
                &mut tx,
                &t.business_id,
                &t.chat_key,
                t.attempt.as_turn(),
                t.now,
            )
            .await?;
        }
        // The Sources page reads the hourly roll-up: counts of the batch summed per row of it.
        let mut hours: Vec<(&str, i64, &'static str, String, i64, i64)> = Vec::new();
        for t in turns {
            let Some((step, source)) = &t.event else {
                continue;
            };
            // The contact step counts once per start, however often the client goes back and
            // forth.
            let (started, reached) = match step {
                FunnelStep::Start => (1, 0),
                FunnelStep::Contact => {
                    let since_start: i64 = sqlx::query_scalar(CONTACTS_SINCE_START)
                        .bind(t.business_id.as_str())
                        .bind(t.chat_key.as_str())
                        .fetch_one(&mut *tx)
                        .await?;
                    if since_start > 0 {
                        continue;
                    }
                    (0, 1)
                }
            };
            let key = super::analytics::SourceKey::of(source);
            let millis = to_millis(t.now);
            let hour = millis - millis.rem_euclid(HOUR_MS);
            let kind = key.kind.as_str();
            match hours
                .iter_mut()
                .find(|h| h.0 == t.business_id && h.1 == hour && h.2 == kind && h.3 == key.label)
            {
                Some(h) => {
                    h.4 += started;
                    h.5 += reached;
                }
                None => hours.push((&t.business_id, hour, kind, key.label, started, reached)),
            }
        }
        for (business_id, hour, kind, label, started, reached) in hours {
            sqlx::query(UPSERT_FUNNEL_HOUR)
                .bind(business_id)
                .bind(hour)
                .bind(kind)
                .bind(label)
                .bind(started)
                .bind(reached)
                .execute(&mut *tx)
                .await?;
        }
        let events: Vec<_> = turns
            .iter()
            .filter_map(|t| {
                let (step, source) = t.event.as_ref()?;
                Some((
                    t.business_id.as_str(),
                    t.chat_key.as_str(),
                    to_millis(t.now),
                    step.as_str(),
                    source.channel.as_str(),
                    source.payload.as_deref(),
                    source.link_name.as_deref(),
                    source.utm.source.as_deref(),
                    source.utm.medium.as_deref(),
                    source.utm.campaign.as_deref(),
                ))
            })
            .collect();
        // In the log's order: rows get ids in the order given.
        let lines: Vec<_> = turns
            .iter()
            .flat_map(|t| {
                t.lines.iter().map(move |line| {
                    (
                        t.business_id.as_str(),
                        t.chat_key.as_str(),
                        to_millis(t.now),
                        line.author,
                        line.text.as_str(),
                        line.buttons.as_deref(),
                    )
                })
            })
            .collect();
        let dialogs: Vec<_> = turns
            .iter()
            .map(|t| {
                (
                    t.business_id.as_str(),
                    t.chat_key.as_str(),
                    t.state.as_str(),
                    to_millis(t.now),
                )
            })
            .collect();
        if self.backend == Backend::Sqlite {
            insert_json(&mut tx, SQLITE_EVENTS, &events).await?;
            insert_json(&mut tx, SQLITE_LINES, &lines).await?;
            insert_json(&mut tx, SQLITE_DIALOGS, &dialogs).await?;
        } else {
            insert_values(
                &mut tx,
                "INSERT INTO chat_events (business_id, chat_key, at, kind, channel, payload, \
                 link_name, utm_source, utm_medium, utm_campaign) VALUES ",
                10,
                "",
                &events,
                ROWS_PER_STATEMENT / 2,
                |q, e| {
                    q.bind(e.0)
                        .bind(e.1)
                        .bind(e.2)
                        .bind(e.3)
                        .bind(e.4)
                        .bind(e.5)
                        .bind(e.6)
                        .bind(e.7)
                        .bind(e.8)
                        .bind(e.9)
                },
            )
            .await?;
            insert_values(
                &mut tx,
                "INSERT INTO chat_log (business_id, chat_key, at, author, text, buttons) VALUES ",
                6,
                "",
                &lines,
                ROWS_PER_STATEMENT,
                |q, l| {
                    q.bind(l.0)
                        .bind(l.1)
                        .bind(l.2)
                        .bind(l.3)
                        .bind(l.4)
                        .bind(l.5)
                },
            )
            .await?;
            insert_values(
                &mut tx,
                "INSERT INTO dialogs (business_id, chat_key, state, updated_at) VALUES ",
                4,
                " ON CONFLICT (business_id, chat_key) \
                 DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                &dialogs,
                ROWS_PER_STATEMENT,
                |q, d| q.bind(d.0).bind(d.1).bind(d.2).bind(d.3),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Runs one of the `SQLITE_…` statements with `rows` as its JSON array (none: nothing to run).
async fn insert_json<T: serde::Serialize>(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    sql: &'static str,
    rows: &[T],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_string(rows)
        .map_err(|e| StoreError::Corrupt(format!("a batch of turns as JSON: {e}")))?;
    sqlx::query(sql).bind(json).execute(&mut **tx).await?;
    Ok(())
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Inserts `rows` on PostgreSQL in multi-row statements of up to `per_statement` rows, each
/// row's `width` parameters bound by `bind`; `tail` follows each statement's VALUES.
async fn insert_values<'q, T>(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    head: &str,
    width: usize,
    tail: &str,
    rows: &'q [T],
    per_statement: usize,
    bind: impl Fn(AnyQuery<'q>, &'q T) -> AnyQuery<'q>,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(per_statement) {
        let sql = values_sql(head, chunk.len(), width, tail);
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
        chunk.iter().fold(query, &bind).execute(&mut **tx).await?;
    }
    Ok(())
}

/// `head` followed by `rows` groups of `width` numbered parameters (PostgreSQL's), then
/// `tail`.
fn values_sql(head: &str, rows: usize, width: usize, tail: &str) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(head.len() + rows * width * 5 + tail.len());
    sql.push_str(head);
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "${}", r * width + c + 1);
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

#[cfg(test)]
mod tests {
    use crate::domain::bid;
    use std::collections::BTreeMap;

    use super::super::{Backend, Store, testing};
    use super::{FunnelStep, TurnLine};
    use crate::domain::{Channel, Source};
    use crate::store::TurnEvent;

    fn lines(chat: usize) -> Vec<TurnLine> {
        vec![
            TurnLine {
                author: "client",
                text: format!("/start {chat}"),
                buttons: None,
            },
            TurnLine {
                author: "bot",
                text: format!("hello {chat}"),
                buttons: Some(format!("[{chat}]")),
            },
        ]
    }

    /// Saves one turn for each chat, in order, while the leader's place is held, so they all wait
    /// for one commit; returns each turn's result.
    async fn save_in_one_batch(store: &Store, chats: &[String]) -> Vec<Result<(), String>> {
        let committer = store.turns.leader.lock().await;
        let source = Source::direct(Channel::Telegram);
        let mut tasks = Vec::new();
        for (i, chat) in chats.iter().enumerate() {
            let (saver, chat, source) = (store.clone(), chat.clone(), source.clone());
            tasks.push(tokio::spawn(async move {
                let event = TurnEvent {
                    step: FunnelStep::Start,
                    source: &source,
                };
                saver
                    .save_turn(
                        &bid("b"),
                        &chat,
                        &lines(i),
                        Some(event),
                        &format!("{{\"n\":{i}}}"),
                        chrono::Utc::now(),
                    )
                    .await
                    .map_err(|e| e.to_string())
            }));
            // One at a time, so the batch holds them in this order.
            while store.turns.lock().len() <= i {
                tokio::task::yield_now().await;
            }
        }
        drop(committer);
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("the save task"));
        }
        results
    }

    async fn states(store: &Store) -> BTreeMap<String, String> {
        sqlx::query_as::<_, (String, String)>("SELECT chat_key, state FROM dialogs")
            .fetch_all(store.pool())
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    #[tokio::test]
    async fn turns_saved_together_are_all_stored_each_whole_and_in_order() {
        for store in testing::all().await {
            let chats: Vec<String> = (0..40).map(|i| format!("telegram:{i}")).collect();
            let results = save_in_one_batch(&store, &chats).await;
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            let states = states(&store).await;
            assert_eq!(states.len(), chats.len(), "{:?}", store.backend());
            for (i, chat) in chats.iter().enumerate() {
                assert_eq!(states[chat], format!("{{\"n\":{i}}}"));
                let now = chrono::Utc::now();
                let texts: Vec<String> = store
                    .chat_lines(&bid("b"), chat, now - chrono::Duration::minutes(1), now)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|l| l.text)
                    .collect();
                assert_eq!(texts, [format!("/start {i}"), format!("hello {i}")]);
                let start = store.load_turn(&bid("b"), chat, true).await.unwrap();
                assert_eq!(start.last_buttons, Some(format!("[{i}]")));
            }
            assert_eq!(store.chat_event_count().await, 40);
            // Starts of one hour and source are summed into one roll-up row.
            let started: Vec<i64> = sqlx::query_scalar("SELECT started FROM funnel_hours")
                .fetch_all(store.pool())
                .await
                .unwrap();
            let expected: i64 = 40;
            assert!(
                started.iter().sum::<i64>() == expected && started.len() <= 2,
                "{started:?} on {:?}",
                store.backend()
            );
        }
    }

    /// What a client types and where they came from is stored as it came, whatever it holds:
    /// on SQLite the batch travels as JSON, so quotes, backslashes, line breaks and emoji must
    /// come out of it unchanged, missing values as NULL, and the time to the millisecond.
    #[tokio::test]
    async fn a_turns_texts_and_source_are_stored_exactly() {
        for store in testing::all().await {
            let text = "Он сказал: \"завтра\" \\ в 10:00\nи ушёл 💇‍♀️ {\"x\":[1]}";
            let state = r#"{"name":"Анна \"Аня\"","path":"C:\\x","n":[1,2]}"#;
            let mut source = Source::direct(Channel::Max);
            source.payload = Some("ad_\"vk\"\\1".into());
            source.utm.campaign = Some("зима 🎄".into());
            let at = chrono::DateTime::from_timestamp_millis(1_796_000_000_123).unwrap();
            let lines = [
                TurnLine {
                    author: "client",
                    text: text.into(),
                    buttons: None,
                },
                TurnLine {
                    author: "bot",
                    text: "ok".into(),
                    buttons: Some(r#"[[{"label":"Да \"✓\"","data":"y"}]]"#.into()),
                },
            ];
            let event = TurnEvent {
                step: FunnelStep::Start,
                source: &source,
            };
            store
                .save_turn(&bid("b"), "max:1", &lines, Some(event), state, at)
                .await
                .unwrap();
            let stored = store
                .chat_lines(
                    &bid("b"),
                    "max:1",
                    at - chrono::Duration::seconds(1),
                    at + chrono::Duration::seconds(1),
                )
                .await
                .unwrap();
            let got: Vec<(&str, &str, chrono::DateTime<chrono::Utc>)> = stored
                .iter()
                .map(|l| (l.author.as_str(), l.text.as_str(), l.at))
                .collect();
            assert_eq!(
                got,
                [("client", text, at), ("bot", "ok", at)],
                "{:?}",
                store.backend()
            );
            let start = store.load_turn(&bid("b"), "max:1", true).await.unwrap();
            assert_eq!(start.state.as_deref(), Some(state));
            assert_eq!(start.last_buttons, lines[1].buttons);
            assert_eq!(
                store.chat_event_rows().await,
                [(
                    "start".to_string(),
                    "max:1".to_string(),
                    source.payload.clone(),
                    None
                )]
            );
            let campaign: Option<String> =
                sqlx::query_scalar("SELECT utm_campaign FROM chat_events")
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
            assert_eq!(campaign, source.utm.campaign);
            assert_eq!(store.chat_lines_with_buttons("max:1").await, 1);
        }
    }

    #[tokio::test]
    async fn a_turn_that_fails_in_a_batch_fails_alone() {
        for store in testing::all().await {
            let refuse = match store.backend() {
                Backend::Sqlite => vec![
                    "CREATE TRIGGER refuse BEFORE INSERT ON dialogs \
                     WHEN NEW.chat_key = 'telegram:bad' BEGIN SELECT RAISE(ABORT, 'refused'); END",
                ],
                Backend::Postgres => vec![
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN \
                     IF NEW.chat_key = 'telegram:bad' THEN RAISE EXCEPTION 'refused'; END IF; \
                     RETURN NEW; END $$ LANGUAGE plpgsql",
                    "CREATE TRIGGER refuse BEFORE INSERT ON dialogs \
                     FOR EACH ROW EXECUTE FUNCTION refuse()",
                ],
            };
            for sql in refuse {
                sqlx::query(sql).execute(store.pool()).await.unwrap();
            }
            let chats: Vec<String> = ["telegram:1", "telegram:bad", "telegram:2"]
                .map(String::from)
                .to_vec();
            let results = save_in_one_batch(&store, &chats).await;
            assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
            assert!(
                results[1].as_ref().is_err_and(|e| e.contains("refused")),
                "{results:?}"
            );
            let states = states(&store).await;
            assert_eq!(
                states.keys().collect::<Vec<_>>(),
                ["telegram:1", "telegram:2"],
                "{:?}",
                store.backend()
            );
            let now = chrono::Utc::now();
            let bad = store
                .chat_lines(
                    &bid("b"),
                    "telegram:bad",
                    now - chrono::Duration::minutes(1),
                    now,
                )
                .await
                .unwrap();
            assert!(bad.is_empty(), "half of the refused turn was stored");
            assert_eq!(store.chat_event_count().await, 2);
        }
    }

    #[tokio::test]
    async fn two_turns_of_one_chat_commit_one_after_the_other() {
        for store in testing::all().await {
            let chats: Vec<String> = ["telegram:1", "telegram:1"].map(String::from).to_vec();
            let results = save_in_one_batch(&store, &chats).await;
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            // The later turn's state is the one left.
            assert_eq!(states(&store).await["telegram:1"], "{\"n\":1}");
            let now = chrono::Utc::now();
            let texts: Vec<String> = store
                .chat_lines(
                    &bid("b"),
                    "telegram:1",
                    now - chrono::Duration::minutes(1),
                    now,
                )
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.text)
                .collect();
            assert_eq!(texts, ["/start 0", "hello 0", "/start 1", "hello 1"]);
        }
    }
}
