//! A fake Telegram Bot API on a real loopback HTTP port, close enough to Telegram for teloxide
//! 0.17: `POST /bot{token}/{method}` with case-insensitive method names, the `{ok, result}`
//! envelope, long-polling `getUpdates` with offset confirmation and `allowed_updates`, and
//! Telegram's validation errors with their exact `description` strings (teloxide matches on
//! them). Shapes come from `../shared/contracts/telegram/`.
//!
//! Tests drive it as a user would: `fake.user(42).send_text("/start src_landing")`,
//! `.press("10:00")`, `.share_contact("+79161234567")`, then `.wait_for_reply(..)`.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use tokio::sync::watch;

pub const TOKEN: &str = "123:ABC";
/// teloxide's HTTP client gives up after 17 s; a long poll must answer before that.
const MAX_POLL: Duration = Duration::from_secs(15);
const NOT_MODIFIED: &str = "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message";
const QUERY_TOO_OLD: &str =
    "Bad Request: query is too old and response timeout expired or query id is invalid";

/// `../shared/contracts` next to the repository, as CI lays it out.
pub fn contracts_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/contracts"
    ));
    assert!(
        dir.is_dir(),
        "contract files missing: expected {} (the shared/ checkout next to the repository)",
        dir.display()
    );
    dir
}

/// One file of `contracts/telegram/`, parsed.
pub fn contract(name: &str) -> Value {
    let path = contracts_dir().join("telegram").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read contract {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("contract {} is not JSON: {e}", path.display()))
}

/// An error answer the test can make the fake give once.
#[derive(Debug, Clone)]
pub enum Failure {
    /// 429 with `parameters.retry_after` (keep it at 1: teloxide really sleeps).
    TooManyRequests {
        retry_after: u64,
    },
    BotBlocked,
    ChatNotFound,
    Conflict,
    /// What Telegram says when a message is too old to edit.
    MessageCantBeEdited,
    /// The edit would change nothing.
    MessageNotModified,
    Custom {
        status: u16,
        body: Value,
    },
}

impl Failure {
    fn response(&self) -> (StatusCode, Value) {
        let body = match self {
            Failure::TooManyRequests { retry_after } => {
                let mut body = contract("error-429-too-many-requests.response.json");
                body["description"] =
                    json!(format!("Too Many Requests: retry after {retry_after}"));
                body["parameters"]["retry_after"] = json!(retry_after);
                body
            }
            Failure::BotBlocked => contract("error-403-bot-blocked.response.json"),
            Failure::ChatNotFound => contract("error-400-chat-not-found.response.json"),
            Failure::Conflict => contract("error-409-conflict-get-updates.response.json"),
            Failure::MessageCantBeEdited => error_body(400, "Bad Request: message can't be edited"),
            Failure::MessageNotModified => error_body(400, NOT_MODIFIED),
            Failure::Custom { body, .. } => body.clone(),
        };
        let status = body["error_code"].as_u64().unwrap_or(400) as u16;
        let status = match self {
            Failure::Custom { status, .. } => *status,
            _ => status,
        };
        (StatusCode::from_u16(status).unwrap(), body)
    }
}

/// A request the bot made, as received.
#[derive(Debug, Clone)]
pub struct Call {
    /// Lower-cased method name (`sendmessage`).
    pub method: String,
    /// The method as the client spelled it (`SendMessage`).
    pub raw_method: String,
    pub params: Value,
    pub status: u16,
    /// When the fake received it.
    pub at: std::time::Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeButton {
    pub label: String,
    pub data: String,
}

/// A message the bot sent or an edit it made, as the user's screen shows it afterwards.
#[derive(Debug, Clone)]
pub struct BotMessage {
    pub chat_id: i64,
    pub message_id: i64,
    pub text: String,
    /// Inline keyboard rows.
    pub buttons: Vec<Vec<FakeButton>>,
    /// A reply keyboard (`keyboard` markup), raw.
    pub reply_keyboard: Option<Value>,
    /// The message carried `remove_keyboard: true`.
    pub removes_keyboard: bool,
    /// This entry records an `editMessageText`, not a new message.
    pub edited: bool,
}

impl BotMessage {
    pub fn has_button(&self, label_or_data: &str) -> bool {
        self.find_button(label_or_data).is_some()
    }

    pub fn find_button(&self, label_or_data: &str) -> Option<&FakeButton> {
        let all = || self.buttons.iter().flatten();
        all()
            .find(|b| b.label == label_or_data)
            .or_else(|| all().find(|b| b.data == label_or_data))
    }

    pub fn labels(&self) -> Vec<String> {
        self.buttons
            .iter()
            .flatten()
            .map(|b| b.label.clone())
            .collect()
    }

    /// Shows a reply-keyboard button with `request_contact: true`.
    pub fn requests_contact(&self) -> bool {
        self.reply_keyboard.as_ref().is_some_and(|kb| {
            kb["keyboard"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|row| row.as_array().into_iter().flatten())
                .any(|b| b["request_contact"] == json!(true))
        })
    }
}

#[derive(Debug, Clone)]
struct StoredMessage {
    text: String,
    inline: Option<Value>,
}

#[derive(Debug, Default)]
struct ChatState {
    first_name: String,
    /// A group's title; `None` for a private chat with a user.
    title: Option<String>,
    language_code: Option<String>,
    /// Index into `outputs` at the user's last action: replies are looked for after it.
    cursor: usize,
    outputs: Vec<BotMessage>,
}

#[derive(Debug, Default)]
struct World {
    /// getUpdates calls waiting right now: Telegram serves one poller per bot.
    polls_in_flight: usize,
    /// getUpdates calls refused with 409 because another was waiting.
    conflicts: usize,
    next_update_id: i64,
    next_message_id: i64,
    next_query_id: u64,
    updates: VecDeque<Value>,
    confirmed_offset: i64,
    allowed_updates: Option<Vec<String>>,
    chats: HashMap<i64, ChatState>,
    /// Bot messages by (chat, message id), in their current (possibly edited) state.
    messages: HashMap<(i64, i64), StoredMessage>,
    /// Callback query ids handed out and whether they were answered.
    queries: HashMap<String, bool>,
    calls: Vec<Call>,
    failures: HashMap<String, VecDeque<Failure>>,
}

struct Shared {
    world: Mutex<World>,
    /// Bumped on every change, so long polls and waiting tests wake without busy loops.
    changes: watch::Sender<u64>,
    me: Value,
    /// The one bot token this fake answers; any other is 401, as Telegram does.
    token: String,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn changed(&self) {
        self.changes.send_modify(|v| *v += 1);
    }
    /// Waits until `check` returns Some, or the deadline passes.
    async fn wait<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&World) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.changes.subscribe();
        loop {
            if let Some(found) = check(&self.world()) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return check(&self.world());
            }
        }
    }
}

/// The running fake. Dropping it stops the server.
pub struct FakeTelegram {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
    /// False while the fake plays an API that cannot be reached.
    open: watch::Sender<bool>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeTelegram {
    pub async fn start() -> FakeTelegram {
        FakeTelegram::start_with(true, TOKEN).await
    }

    /// A fake of another bot: it answers `token` only (a deployment of several businesses has
    /// a bot each).
    pub async fn start_for(token: &str) -> FakeTelegram {
        FakeTelegram::start_with(true, token).await
    }

    /// A fake whose address drops every connection, as an API that cannot be reached, until
    /// [`FakeTelegram::open`].
    pub async fn start_closed() -> FakeTelegram {
        FakeTelegram::start_with(false, TOKEN).await
    }

    /// From now on the fake answers.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    async fn start_with(open: bool, token: &str) -> FakeTelegram {
        let me = contract("get-me.result.json");
        let (changes, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            world: Mutex::new(World {
                next_update_id: 1,
                next_message_id: 1,
                ..World::default()
            }),
            changes,
            me,
            token: token.to_string(),
        });
        let app = Router::new()
            .route("/{bot}/{method}", any(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, mut opened) = watch::channel(open);
        let server = tokio::spawn(async move {
            while !*opened.borrow_and_update() {
                tokio::select! {
                    accepted = listener.accept() => drop(accepted),
                    _ = opened.changed() => {}
                }
            }
            axum::serve(listener, app).await.unwrap();
        });
        FakeTelegram {
            shared,
            addr,
            server,
            open,
        }
    }

    pub fn api_url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).unwrap()
    }

    /// A user in a private chat (chat id = user id), language `ru` unless changed.
    pub fn user(&self, chat_id: i64) -> FakeUser {
        self.shared
            .world()
            .chats
            .entry(chat_id)
            .or_insert_with(|| ChatState {
                first_name: format!("User{chat_id}"),
                language_code: Some("ru".into()),
                ..ChatState::default()
            });
        FakeUser {
            chat_id,
            from_id: chat_id,
            shared: self.shared.clone(),
        }
    }

    /// A member (`user_id`) of a supergroup (`chat_id`, negative as Telegram has them) the bot
    /// is in. Every member's handle shares the group's state: what the bot posted there.
    pub fn group_member(&self, chat_id: i64, title: &str, user_id: i64) -> FakeUser {
        self.shared
            .world()
            .chats
            .entry(chat_id)
            .or_insert_with(|| ChatState {
                first_name: format!("User{user_id}"),
                title: Some(title.to_string()),
                language_code: Some("ru".into()),
                ..ChatState::default()
            });
        FakeUser {
            chat_id,
            from_id: user_id,
            shared: self.shared.clone(),
        }
    }

    /// Every call the bot made, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.world().calls.clone()
    }

    /// Params of every call of one method (any spelling).
    pub fn calls_of(&self, method: &str) -> Vec<Value> {
        let method = method.to_ascii_lowercase();
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .map(|c| c.params)
            .collect()
    }

    /// Waits until the bot has called `method` at least `count` times; returns those params.
    pub async fn wait_for_calls(
        &self,
        method: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        let method = method.to_ascii_lowercase();
        let found = self
            .shared
            .wait(timeout, |w| {
                let calls: Vec<Value> = w
                    .calls
                    .iter()
                    .filter(|c| c.method == method)
                    .map(|c| c.params.clone())
                    .collect();
                (calls.len() >= count).then_some(calls)
            })
            .await;
        found.unwrap_or_else(|| {
            panic!(
                "bot made fewer than {count} {method} calls in {timeout:?}; calls: {:#?}",
                self.calls()
            )
        })
    }

    /// The next call of `method` answers with `failure` instead.
    pub fn fail_next(&self, method: &str, failure: Failure) {
        self.shared
            .world()
            .failures
            .entry(method.to_ascii_lowercase())
            .or_default()
            .push_back(failure);
    }

    /// The highest offset the bot confirmed (updates below it are gone for good).
    pub fn confirmed_offset(&self) -> i64 {
        self.shared.world().confirmed_offset
    }

    /// Waits until the bot has confirmed `update_id` (asked for updates past it), which
    /// teloxide does once it took the update for processing.
    pub async fn wait_for_confirmed(&self, update_id: i64, timeout: Duration) {
        let done = self
            .shared
            .wait(timeout, |w| (w.confirmed_offset > update_id).then_some(()))
            .await;
        assert!(
            done.is_some(),
            "update {update_id} not confirmed within {timeout:?} (offset {})",
            self.confirmed_offset()
        );
    }

    /// Updates queued and not yet confirmed.
    /// Takes the updates waiting for the bot, as Telegram does when it posts them to a
    /// webhook instead of holding them for getUpdates.
    pub fn take_updates(&self) -> Vec<Value> {
        let updates: Vec<Value> = self.shared.world().updates.drain(..).collect();
        updates
    }

    /// getUpdates calls refused because another poller was waiting (two processes polling).
    pub fn conflicts(&self) -> usize {
        self.shared.world().conflicts
    }

    pub fn pending_updates(&self) -> usize {
        self.shared.world().updates.len()
    }

    /// Whether the bot answered the callback query with this id.
    pub fn answered(&self, query_id: &str) -> bool {
        self.shared
            .world()
            .queries
            .get(query_id)
            .copied()
            .unwrap_or(false)
    }

    /// Puts a bot message into a chat as if sent earlier (for contract tests).
    pub fn seed_bot_message(&self, chat_id: i64, message_id: i64, text: &str) {
        let mut w = self.shared.world();
        w.messages.insert(
            (chat_id, message_id),
            StoredMessage {
                text: text.into(),
                inline: None,
            },
        );
        w.next_message_id = w.next_message_id.max(message_id + 1);
    }

    /// Registers a callback query id as issued and unanswered (for contract tests).
    pub fn seed_callback_query(&self, id: &str) {
        self.shared.world().queries.insert(id.into(), false);
    }
}

/// One scripted user; cheap to clone, all handles of a chat share its state.
#[derive(Clone)]
pub struct FakeUser {
    pub chat_id: i64,
    /// Who writes: the chat itself in a private chat, a member in a group.
    pub from_id: i64,
    shared: Arc<Shared>,
}

impl FakeUser {
    /// `None` models a client that reports no language.
    pub fn with_lang(self, language_code: Option<&str>) -> FakeUser {
        if let Some(chat) = self.shared.world().chats.get_mut(&self.chat_id) {
            chat.language_code = language_code.map(str::to_string);
        }
        self
    }

    /// Types a message. Returns its update id.
    pub fn send_text(&self, text: &str) -> i64 {
        let mut message = self.user_message();
        message["text"] = json!(text);
        if text.starts_with('/') {
            let len = text
                .split_whitespace()
                .next()
                .unwrap_or(text)
                .encode_utf16()
                .count();
            message["entities"] = json!([{"type": "bot_command", "offset": 0, "length": len}]);
        }
        self.push("message", message)
    }

    /// Replies to message `message_id` of this chat (Telegram's message ids are per chat).
    /// The update carries `reply_to_message` as Telegram does: the bot's message when it is
    /// one, else a member's message with that id. Returns the update id.
    pub fn reply_to(&self, message_id: i64, text: &str) -> i64 {
        let replied = {
            let w = self.shared.world();
            let mut replied = match w.messages.get(&(self.chat_id, message_id)) {
                Some(stored) => {
                    bot_message_json(&self.shared.me, self.chat_id, message_id, &stored.text)
                }
                None => json!({
                    "message_id": message_id,
                    "date": now(),
                    "from": {"id": self.from_id + 1, "is_bot": false, "first_name": "Someone"},
                    "text": "…",
                }),
            };
            replied["chat"] = chat_json(&w, self.chat_id);
            replied
        };
        let mut message = self.user_message();
        message["text"] = json!(text);
        message["reply_to_message"] = replied;
        self.push("message", message)
    }

    /// Taps the "share my phone" button. Returns the update id.
    pub fn share_contact(&self, phone: &str) -> i64 {
        let mut message = self.user_message();
        let first_name = message["from"]["first_name"].clone();
        message["contact"] =
            json!({"phone_number": phone, "first_name": first_name, "user_id": self.chat_id});
        self.push("message", message)
    }

    /// Presses a button (by label, else by callback data) on the latest bot message that has an
    /// inline keyboard. Returns the callback query id.
    pub fn press(&self, label_or_data: &str) -> String {
        let message_id = {
            let w = self.shared.world();
            let last = w
                .messages
                .iter()
                .filter(|((chat, _), m)| *chat == self.chat_id && m.inline.is_some())
                .max_by_key(|((_, id), _)| *id)
                .map(|((_, id), _)| *id);
            last.unwrap_or_else(|| {
                panic!(
                    "chat {} has no bot message with buttons to press",
                    self.chat_id
                )
            })
        };
        self.press_on(message_id, label_or_data)
    }

    /// Presses a button on a given bot message, even an old one.
    pub fn press_on(&self, message_id: i64, label_or_data: &str) -> String {
        let (stored, data) = {
            let w = self.shared.world();
            let stored = w
                .messages
                .get(&(self.chat_id, message_id))
                .unwrap_or_else(|| panic!("no bot message {message_id} in chat {}", self.chat_id))
                .clone();
            let buttons = parse_inline(stored.inline.as_ref());
            let shown = BotMessage {
                chat_id: self.chat_id,
                message_id,
                text: stored.text.clone(),
                buttons,
                reply_keyboard: None,
                removes_keyboard: false,
                edited: false,
            };
            let data = shown
                .find_button(label_or_data)
                .unwrap_or_else(|| {
                    panic!(
                        "no button {label_or_data:?} on message {message_id} ({:?}); buttons: {:?}",
                        shown.text,
                        shown.labels()
                    )
                })
                .data
                .clone();
            (stored, data)
        };
        let query_id = {
            let mut w = self.shared.world();
            w.next_query_id += 1;
            let id = format!("cq{}-{}", self.chat_id, w.next_query_id);
            w.queries.insert(id.clone(), false);
            id
        };
        let from = self.user_message()["from"].clone();
        let mut message = bot_message_json(&self.shared.me, self.chat_id, message_id, &stored.text);
        if let Some(inline) = &stored.inline {
            message["reply_markup"] = inline.clone();
        }
        self.push(
            "callback_query",
            json!({
                "id": query_id,
                "from": from,
                "message": message,
                "chat_instance": format!("-{}", self.chat_id.unsigned_abs() * 7 + 1),
                "data": data,
            }),
        );
        query_id
    }

    /// Everything the bot showed in this chat, sends and edits, oldest first.
    pub fn history(&self) -> Vec<BotMessage> {
        self.shared
            .world()
            .chats
            .get(&self.chat_id)
            .map(|c| c.outputs.clone())
            .unwrap_or_default()
    }

    /// What the bot showed since the user's last action.
    pub fn replies(&self) -> Vec<BotMessage> {
        let w = self.shared.world();
        w.chats
            .get(&self.chat_id)
            .map(|c| c.outputs[c.cursor..].to_vec())
            .unwrap_or_default()
    }

    /// The first message or edit since the user's last action that matches; panics with what
    /// the bot did show if none comes in time.
    pub async fn wait_for_reply(
        &self,
        predicate: impl Fn(&BotMessage) -> bool,
        timeout: Duration,
    ) -> BotMessage {
        let chat_id = self.chat_id;
        let found = self
            .shared
            .wait(timeout, |w| {
                let chat = w.chats.get(&chat_id)?;
                chat.outputs[chat.cursor..]
                    .iter()
                    .find(|m| predicate(m))
                    .cloned()
            })
            .await;
        found.unwrap_or_else(|| {
            panic!(
                "no matching bot reply in chat {chat_id} within {timeout:?}; since the last user action: {:#?}",
                self.replies()
            )
        })
    }

    /// The first message or edit since the user's last action.
    pub async fn next_reply(&self, timeout: Duration) -> BotMessage {
        self.wait_for_reply(|_| true, timeout).await
    }

    /// Waits for a reply whose text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str, timeout: Duration) -> BotMessage {
        self.wait_for_reply(|m| m.text.contains(needle), timeout)
            .await
    }

    fn user_message(&self) -> Value {
        let w = self.shared.world();
        let chat = w.chats.get(&self.chat_id);
        let first_name = chat.map(|c| c.first_name.clone()).unwrap_or_default();
        let mut from = json!({"id": self.from_id, "is_bot": false, "first_name": first_name});
        if let Some(lang) = chat.and_then(|c| c.language_code.clone()) {
            from["language_code"] = json!(lang);
        }
        json!({
            "message_id": 0,
            "date": now(),
            "chat": chat_json(&w, self.chat_id),
            "from": from,
        })
    }

    fn push(&self, kind: &str, mut payload: Value) -> i64 {
        let update_id = {
            let mut w = self.shared.world();
            if kind == "message" {
                payload["message_id"] = json!(w.next_message_id);
                w.next_message_id += 1;
            }
            let id = w.next_update_id;
            w.next_update_id += 1;
            w.updates.push_back(json!({"update_id": id, kind: payload}));
            if let Some(chat) = w.chats.get_mut(&self.chat_id) {
                chat.cursor = chat.outputs.len();
            }
            id
        };
        self.shared.changed();
        update_id
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn error_body(code: u16, description: &str) -> Value {
    json!({"ok": false, "error_code": code, "description": description})
}

/// The `chat` object of a message in `chat_id`: a private chat, or a supergroup with a title.
fn chat_json(w: &World, chat_id: i64) -> Value {
    match w.chats.get(&chat_id).and_then(|c| c.title.clone()) {
        Some(title) => json!({"id": chat_id, "type": "supergroup", "title": title}),
        None => json!({"id": chat_id, "type": "private", "first_name": format!("User{chat_id}")}),
    }
}

fn bot_message_json(me: &Value, chat_id: i64, message_id: i64, text: &str) -> Value {
    json!({
        "message_id": message_id,
        "date": now(),
        "chat": {"id": chat_id, "type": "private", "first_name": format!("User{chat_id}")},
        "from": {"id": me["id"], "is_bot": true, "first_name": me["first_name"], "username": me["username"]},
        "text": text,
    })
}

fn parse_inline(markup: Option<&Value>) -> Vec<Vec<FakeButton>> {
    let Some(rows) = markup.and_then(|m| m["inline_keyboard"].as_array()) else {
        return Vec::new();
    };
    rows.iter()
        .map(|row| {
            row.as_array()
                .into_iter()
                .flatten()
                .map(|b| FakeButton {
                    label: b["text"].as_str().unwrap_or_default().to_string(),
                    data: b["callback_data"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .collect()
}

/// Query string, form body or JSON body, merged into one object. Form values that are JSON
/// (`reply_markup`, `allowed_updates`) are decoded the way Telegram does.
fn params(query: Option<&str>, body: &[u8]) -> Value {
    let mut out = serde_json::Map::new();
    let mut add_form = |s: &str| {
        for (k, v) in url::form_urlencoded::parse(s.as_bytes()) {
            let value = serde_json::from_str::<Value>(&v).unwrap_or(Value::String(v.to_string()));
            out.insert(k.to_string(), value);
        }
    };
    if let Some(q) = query {
        add_form(q);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => out.extend(map),
        _ => add_form(&String::from_utf8_lossy(body)),
    }
    Value::Object(out)
}

/// The fields of a `multipart/form-data` body, each value read as JSON where it is JSON
/// (`allowed_updates`), else as text; file parts are kept as their text.
fn multipart_params(boundary: &str, body: &[u8]) -> Value {
    let text = String::from_utf8_lossy(body);
    let mut out = serde_json::Map::new();
    for part in text.split(&format!("--{boundary}")) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = head
            .split("name=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let parsed = serde_json::from_str::<Value>(value)
            .ok()
            .filter(|v| !v.is_number())
            .unwrap_or_else(|| Value::String(value.to_string()));
        out.insert(name.to_string(), parsed);
    }
    Value::Object(out)
}

fn int(params: &Value, key: &str) -> Option<i64> {
    match &params[key] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn ok(result: Value) -> (StatusCode, Value) {
    (StatusCode::OK, json!({"ok": true, "result": result}))
}

fn bad(description: &str) -> (StatusCode, Value) {
    (StatusCode::BAD_REQUEST, error_body(400, description))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path((bot, raw_method)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let boundary = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .filter(|t| t.starts_with("multipart/form-data"))
        .and_then(|t| t.split("boundary=").nth(1))
        .map(|b| b.trim_matches('"').to_string());
    let params = match boundary {
        // Methods that may carry a file (setWebhook's certificate) come as multipart.
        Some(boundary) => multipart_params(&boundary, &body),
        None => params(query.as_deref(), &body),
    };
    let method = raw_method.to_ascii_lowercase();
    let (status, body) = if bot.strip_prefix("bot") != Some(shared.token.as_str()) {
        (StatusCode::UNAUTHORIZED, error_body(401, "Unauthorized"))
    } else {
        let failure = shared
            .world()
            .failures
            .get_mut(&method)
            .and_then(|q| q.pop_front());
        match failure {
            Some(f) => f.response(),
            None => answer(&shared, &method, &params).await,
        }
    };
    shared.world().calls.push(Call {
        method,
        raw_method,
        params,
        status: status.as_u16(),
        at: std::time::Instant::now(),
    });
    shared.changed();
    (status, axum::Json(body)).into_response()
}

async fn answer(shared: &Shared, method: &str, params: &Value) -> (StatusCode, Value) {
    match method {
        "getme" => ok(shared.me.clone()),
        "getwebhookinfo" => ok(contract("get-webhook-info.result.json")),
        "deletewebhook" | "setwebhook" | "setmycommands" | "deletemycommands" | "close"
        | "logout" => ok(json!(true)),
        "getupdates" => get_updates(shared, params).await,
        "sendmessage" => send_message(shared, params),
        // Only a chat the bot is in, as Telegram answers; any other is "chat not found".
        "getchat" => {
            let id = params["chat_id"]
                .as_i64()
                .or_else(|| params["chat_id"].as_str().and_then(|s| s.parse().ok()));
            let w = shared.world();
            match id.filter(|id| w.chats.contains_key(id)) {
                Some(id) => ok(chat_json(&w, id)),
                None => (
                    StatusCode::BAD_REQUEST,
                    contract("error-400-chat-not-found.response.json"),
                ),
            }
        }
        "editmessagetext" => edit_message_text(shared, params),
        "answercallbackquery" => {
            let id = params["callback_query_id"].as_str().unwrap_or_default();
            let mut w = shared.world();
            match w.queries.get_mut(id) {
                Some(answered) if !*answered => {
                    *answered = true;
                    ok(json!(true))
                }
                _ => bad(QUERY_TOO_OLD),
            }
        }
        _ => (StatusCode::NOT_FOUND, error_body(404, "Not Found")),
    }
}

fn update_kind(update: &Value) -> String {
    update
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "update_id").cloned())
        .unwrap_or_default()
}

/// One getUpdates call waiting; dropped with the call, also when its client goes away.
struct Polling<'a>(&'a Shared);

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.0.world().polls_in_flight -= 1;
    }
}

async fn get_updates(shared: &Shared, params: &Value) -> (StatusCode, Value) {
    // Two processes polling one bot: Telegram answers 409 "terminated by other getUpdates
    // request" (to the earlier call; here to the later, which tells the same).
    {
        let mut w = shared.world();
        if w.polls_in_flight > 0 {
            w.conflicts += 1;
            return (
                StatusCode::CONFLICT,
                contract("error-409-conflict-get-updates.response.json"),
            );
        }
        w.polls_in_flight += 1;
    }
    let _polling = Polling(shared);
    let offset = int(params, "offset").unwrap_or(0);
    let limit = int(params, "limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout =
        Duration::from_secs(int(params, "timeout").unwrap_or(0).max(0) as u64).min(MAX_POLL);
    {
        let mut w = shared.world();
        if let Some(list) = params["allowed_updates"].as_array() {
            w.allowed_updates = Some(
                list.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
            );
        }
        if offset > 0 {
            w.updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            w.confirmed_offset = w.confirmed_offset.max(offset);
        }
    }
    shared.changed();
    let started = Instant::now();
    let batch = shared
        .wait(timeout, |w| {
            let batch: Vec<Value> = w
                .updates
                .iter()
                .filter(|u| u["update_id"].as_i64().unwrap_or(0) >= offset)
                .filter(|u| allowed(w.allowed_updates.as_deref(), &update_kind(u)))
                .take(limit)
                .cloned()
                .collect();
            (!batch.is_empty()).then_some(batch)
        })
        .await
        .unwrap_or_default();
    debug_assert!(started.elapsed() <= MAX_POLL + Duration::from_secs(1));
    ok(Value::Array(batch))
}

fn allowed(list: Option<&[String]>, kind: &str) -> bool {
    match list {
        Some(list) if !list.is_empty() => list.iter().any(|k| k == kind),
        // Telegram's default: everything but these three.
        _ => !matches!(
            kind,
            "chat_member" | "message_reaction" | "message_reaction_count"
        ),
    }
}

/// Checks text and markup like Telegram; returns the inline markup to store, if any.
fn validate(params: &Value) -> Result<(String, Option<Value>, Value), (StatusCode, Value)> {
    let text = params["text"].as_str().unwrap_or_default().to_string();
    if text.trim().is_empty() {
        return Err(bad("Bad Request: message text is empty"));
    }
    if text.encode_utf16().count() > 4096 {
        return Err(bad("Bad Request: message is too long"));
    }
    let markup = params["reply_markup"].clone();
    for b in markup["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r.as_array().into_iter().flatten())
    {
        if let Some(data) = b.get("callback_data") {
            let len = data.as_str().map_or(0, str::len);
            if !(1..=64).contains(&len) {
                return Err(bad("Bad Request: BUTTON_DATA_INVALID"));
            }
        }
        if b["text"].as_str().is_none_or(str::is_empty) {
            return Err(bad(
                "Bad Request: text buttons are unallowed in the inline keyboard",
            ));
        }
    }
    let inline = markup
        .get("inline_keyboard")
        .is_some()
        .then(|| markup.clone());
    Ok((text, inline, markup))
}

fn send_message(shared: &Shared, params: &Value) -> (StatusCode, Value) {
    let Some(chat_id) = int(params, "chat_id") else {
        return bad("Bad Request: chat_id is empty");
    };
    let (text, inline, markup) = match validate(params) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let result = {
        let mut w = shared.world();
        if !w.chats.contains_key(&chat_id) {
            return Failure::ChatNotFound.response();
        }
        let message_id = w.next_message_id;
        w.next_message_id += 1;
        w.messages.insert(
            (chat_id, message_id),
            StoredMessage {
                text: text.clone(),
                inline: inline.clone(),
            },
        );
        let shown = BotMessage {
            chat_id,
            message_id,
            text: text.clone(),
            buttons: parse_inline(inline.as_ref()),
            reply_keyboard: markup.get("keyboard").is_some().then(|| markup.clone()),
            removes_keyboard: markup["remove_keyboard"] == json!(true),
            edited: false,
        };
        if let Some(chat) = w.chats.get_mut(&chat_id) {
            chat.outputs.push(shown);
        }
        let mut result = bot_message_json(&shared.me, chat_id, message_id, &text);
        result["chat"] = chat_json(&w, chat_id);
        if let Some(inline) = inline {
            result["reply_markup"] = inline;
        }
        result
    };
    ok(result)
}

fn edit_message_text(shared: &Shared, params: &Value) -> (StatusCode, Value) {
    let (Some(chat_id), Some(message_id)) = (int(params, "chat_id"), int(params, "message_id"))
    else {
        return bad("Bad Request: message to edit not found");
    };
    let (text, inline, markup) = match validate(params) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if !markup.is_null() && inline.is_none() {
        return bad("Bad Request: inline keyboard expected");
    }
    let mut w = shared.world();
    let Some(stored) = w.messages.get_mut(&(chat_id, message_id)) else {
        return bad("Bad Request: message to edit not found");
    };
    if stored.text == text && stored.inline == inline {
        return bad(NOT_MODIFIED);
    }
    stored.text = text.clone();
    stored.inline = inline.clone();
    let shown = BotMessage {
        chat_id,
        message_id,
        text: text.clone(),
        buttons: parse_inline(inline.as_ref()),
        reply_keyboard: None,
        removes_keyboard: false,
        edited: true,
    };
    if let Some(chat) = w.chats.get_mut(&chat_id) {
        chat.outputs.push(shown);
    }
    let mut result = bot_message_json(&shared.me, chat_id, message_id, &text);
    result["edit_date"] = json!(now());
    if let Some(inline) = inline {
        result["reply_markup"] = inline;
    }
    ok(result)
}
