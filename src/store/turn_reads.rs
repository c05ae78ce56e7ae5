//! Group reads of what chat turns start from, on SQLite. A turn's read queued while another is
//! under way is served by the next one, together with every other chat's that queued
//! meanwhile: one statement for all of them instead of one hand-off to a connection's thread
//! and back per chat, which is what a read cost. A read still starts only after it was asked
//! for, so it sees every turn committed before: a chat's next turn always starts from its last.
//!
//! PostgreSQL keeps one keyed read per turn: its connections are sockets the runtime serves,
//! and without statistics (a fresh deployment) its planner keys a batch's `dialogs` lookups by
//! the business alone (`dialogs_by_age`) in each form tried (scalar subqueries on the JSON,
//! lateral joins on typed columns).

use sqlx::Row;
use tokio::sync::oneshot;

use super::dialogs::TurnStart;
use super::{Store, StoreError};
use crate::domain::BusinessId;

/// Chats in one statement at most: bounds its parameter's size and the time it takes.
const MAX_BATCH: usize = 256;

/// The chats of a batch come as one JSON array of `[business, chat key, with buttons]`, so
/// there is one statement to prepare whatever the batch's size. Served per chat by the
/// `dialogs` key and `chat_log_latest`, as the single read is.
pub(crate) const LOAD_TURNS_SQL: &str = "SELECT k.key AS i, \
       (SELECT state FROM dialogs WHERE business_id = json_extract(k.value, '$[0]') \
          AND chat_key = json_extract(k.value, '$[1]')) AS state, \
       CASE WHEN json_extract(k.value, '$[2]') THEN \
         (SELECT buttons FROM chat_log WHERE business_id = json_extract(k.value, '$[0]') \
            AND chat_key = json_extract(k.value, '$[1]') AND buttons IS NOT NULL \
          ORDER BY id DESC LIMIT 1) END AS buttons \
     FROM json_each($1) AS k";

pub(super) struct PendingRead {
    business_id: BusinessId,
    chat_key: String,
    with_buttons: bool,
    done: oneshot::Sender<Result<TurnStart, StoreError>>,
}

/// Reads asked for and not yet served.
pub(super) type ReadQueue = super::group::Group<PendingRead>;

fn take_batch(pending: &mut Vec<PendingRead>) -> Vec<PendingRead> {
    let n = pending.len().min(MAX_BATCH);
    pending.drain(..n).collect()
}

impl Store {
    /// Queues the chat's read for the next batch and returns its answer.
    pub(super) async fn load_turn_grouped(
        &self,
        business_id: &BusinessId,
        chat_key: &str,
        with_buttons: bool,
    ) -> Result<TurnStart, StoreError> {
        let (done, answer) = oneshot::channel();
        let read = PendingRead {
            business_id: business_id.clone(),
            chat_key: chat_key.to_string(),
            with_buttons,
            done,
        };
        self.reads
            .wait(
                read,
                answer,
                || StoreError::ReadLost,
                take_batch,
                |batch| {
                    let store = self.clone();
                    async move { store.read_batch(batch).await }
                },
            )
            .await
    }

    async fn read_batch(&self, batch: Vec<PendingRead>) {
        let keys: Vec<(&str, &str, bool)> = batch
            .iter()
            .map(|p| (p.business_id.as_str(), p.chat_key.as_str(), p.with_buttons))
            .collect();
        let read = match serde_json::to_string(&keys) {
            Ok(json) => self.read_turns(&json, batch.len()).await,
            Err(e) => Err(StoreError::Corrupt(format!("chat keys as JSON: {e}"))),
        };
        match read {
            Ok(starts) => {
                for (p, start) in batch.into_iter().zip(starts) {
                    let _ = p.done.send(Ok(start));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for p in batch {
                    let _ = p.done.send(Err(StoreError::Read(message.clone())));
                }
            }
        }
    }

    /// The starts of the `n` chats in `json`, in its order.
    async fn read_turns(&self, json: &str, n: usize) -> Result<Vec<TurnStart>, StoreError> {
        let rows = sqlx::query(LOAD_TURNS_SQL)
            .bind(json)
            .fetch_all(&self.pool)
            .await?;
        let mut starts = vec![TurnStart::default(); n];
        for row in rows {
            let i: i64 = row.try_get("i")?;
            let slot = usize::try_from(i)
                .ok()
                .and_then(|i| starts.get_mut(i))
                .ok_or_else(|| StoreError::Corrupt(format!("a batch read answered row {i}")))?;
            *slot = TurnStart {
                state: row.try_get("state")?,
                last_buttons: row.try_get("buttons")?,
            };
        }
        Ok(starts)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Store, testing};
    use crate::domain::bid;
    use crate::store::TurnLine;

    async fn save(store: &Store, business: &str, chat: &str, state: &str, buttons: Option<&str>) {
        let lines = [TurnLine {
            author: "bot",
            text: format!("hello {chat}"),
            buttons: buttons.map(str::to_string),
        }];
        store
            .save_turn(
                &bid(business),
                chat,
                &lines,
                None,
                state,
                chrono::Utc::now(),
            )
            .await
            .unwrap();
    }

    /// Reads every (business, chat, with buttons) while the reader is held, so they are all
    /// served by one batch.
    async fn read_in_one_batch(
        store: &Store,
        keys: &[(&str, &str, bool)],
    ) -> Vec<Result<crate::store::TurnStart, String>> {
        let reader = store.reads.leader.lock().await;
        let mut tasks = Vec::new();
        for (i, (business, chat, with_buttons)) in keys.iter().enumerate() {
            let (reader, business, chat, with_buttons) = (
                store.clone(),
                business.to_string(),
                chat.to_string(),
                *with_buttons,
            );
            tasks.push(tokio::spawn(async move {
                reader
                    .load_turn(&bid(&business), &chat, with_buttons)
                    .await
                    .map_err(|e| e.to_string())
            }));
            while store.reads.lock().len() <= i {
                tokio::task::yield_now().await;
            }
        }
        drop(reader);
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("the read task"));
        }
        results
    }

    #[tokio::test]
    async fn chats_read_together_each_get_their_own_start() {
        let store = testing::sqlite().await;
        save(&store, "a", "telegram:1", "{\"n\":1}", Some("[1]")).await;
        save(&store, "a", "telegram:2", "{\"n\":2}", None).await;
        // The same chat key in another business is another chat.
        save(&store, "b", "telegram:1", "{\"n\":3}", Some("[3]")).await;
        let results = read_in_one_batch(
            &store,
            &[
                ("a", "telegram:1", true),
                ("a", "telegram:2", true),
                ("b", "telegram:1", false),
                ("a", "telegram:new", true),
                ("b", "telegram:1", true),
            ],
        )
        .await;
        let got: Vec<(Option<String>, Option<String>)> = results
            .into_iter()
            .map(|r| {
                let s = r.unwrap();
                (s.state, s.last_buttons)
            })
            .collect();
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            got,
            [
                (some("{\"n\":1}"), some("[1]")),
                (some("{\"n\":2}"), None),
                (some("{\"n\":3}"), None),
                (None, None),
                (some("{\"n\":3}"), some("[3]")),
            ],
            "{:?}",
            store.backend()
        );
    }

    #[tokio::test]
    async fn a_batch_larger_than_one_statement_takes_is_served_whole() {
        let store = testing::sqlite().await;
        let chats: Vec<String> = (0..300).map(|i| format!("telegram:{i}")).collect();
        for (i, chat) in chats.iter().enumerate().step_by(7) {
            save(&store, "a", chat, &format!("{{\"n\":{i}}}"), None).await;
        }
        let keys: Vec<(&str, &str, bool)> =
            chats.iter().map(|c| ("a", c.as_str(), false)).collect();
        let results = read_in_one_batch(&store, &keys).await;
        for (i, r) in results.into_iter().enumerate() {
            let expected = (i % 7 == 0).then(|| format!("{{\"n\":{i}}}"));
            assert_eq!(
                r.unwrap().state,
                expected,
                "chat {i} on {:?}",
                store.backend()
            );
        }
    }

    #[tokio::test]
    async fn a_failed_batch_read_fails_each_of_its_chats_and_the_next_read_works() {
        let store = testing::sqlite().await;
        save(&store, "a", "telegram:1", "{\"n\":1}", None).await;
        sqlx::query("ALTER TABLE dialogs RENAME TO dialogs_away")
            .execute(store.pool())
            .await
            .unwrap();
        let results = read_in_one_batch(
            &store,
            &[("a", "telegram:1", false), ("a", "telegram:2", true)],
        )
        .await;
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().is_err_and(|e| e.contains("dialogs"))),
            "{results:?} on {:?}",
            store.backend()
        );
        sqlx::query("ALTER TABLE dialogs_away RENAME TO dialogs")
            .execute(store.pool())
            .await
            .unwrap();
        let start = store
            .load_turn(&bid("a"), "telegram:1", false)
            .await
            .unwrap();
        assert_eq!(start.state.as_deref(), Some("{\"n\":1}"));
    }
}
