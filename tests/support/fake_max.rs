//! A fake MAX Bot API (schema 0.0.33) on a real loopback HTTP port: the raw token in
//! `Authorization` (401 `verify.token` otherwise), bare JSON bodies with no `{ok, result}`
//! envelope, `{code, message}` errors, `GET /updates` long polling that blocks up to `timeout`
//! with MAX's marker semantics (passing a marker commits everything before it; no marker means
//! "everything after the last commitment"), `POST`/`PUT /messages` with MAX's keyboard limits,
//! `POST /answers`, `/subscriptions`, scripted failures (429 `too.many.requests` without
//! `Retry-After`, 403 `chat.denied`, …) and a per-chat 2 messages/s check. Shapes come from
//! `../shared/contracts/max/`.
//!
//! Tests drive it as a user would: `fake.user(42).start(Some("src_landing"))`,
//! `.press("10:00")`, `.share_contact("+79161234567")`, then `.wait_for_text(..)`.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

pub const TOKEN: &str = "max-test-token-0123";
pub const BOT_ID: i64 = 229229229;
const MAX_POLL: Duration = Duration::from_secs(30);
/// Dialog chat ids are distinct from user ids, as on MAX.
const DIALOG_BASE: i64 = 100_000_000_000;

pub fn dialog_id(user_id: i64) -> i64 {
    DIALOG_BASE + user_id
}

/// `../shared/contracts` next to the repository, as CI lays it out.
pub fn contracts_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/contracts"
    ));
    assert!(
        dir.join("max").is_dir(),
        "contract files missing: expected {}/max (the shared/ checkout next to the repository)",
        dir.display()
    );
    dir
}

/// One file of `contracts/max/`, parsed.
pub fn contract(name: &str) -> Value {
    let path = contracts_dir().join("max").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read contract {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("contract {} is not JSON: {e}", path.display()))
}

/// Names of the `contracts/max/` files starting with `prefix` and ending in `.json`, sorted.
pub fn contract_names(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(contracts_dir().join("max"))
        .expect("contracts/max is readable")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no contracts/max/{prefix}*.json files");
    names
}

/// An error answer the test can make the fake give once.
#[derive(Debug, Clone)]
pub enum Failure {
    /// 429 `too.many.requests`, with no `Retry-After` (MAX sends none).
    TooManyRequests,
    /// 403 `chat.denied`: the user stopped or blocked the bot.
    ChatDenied,
    AttachmentNotReady,
    Custom {
        status: u16,
        body: Value,
    },
}

impl Failure {
    fn response(&self) -> (StatusCode, Value) {
        match self {
            Failure::TooManyRequests => (
                StatusCode::TOO_MANY_REQUESTS,
                contract("error-too-many-requests.response.json"),
            ),
            Failure::ChatDenied => (
                StatusCode::FORBIDDEN,
                contract("error-chat-denied.response.json"),
            ),
            Failure::AttachmentNotReady => (
                StatusCode::BAD_REQUEST,
                contract("sdk-error.attachment.not.ready.json"),
            ),
            Failure::Custom { status, body } => (
                StatusCode::from_u16(*status).expect("valid status"),
                body.clone(),
            ),
        }
    }
}

/// A request the bot made, as received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GET /updates`, `POST /messages`, …
    pub route: String,
    pub query: HashMap<String, String>,
    pub body: Value,
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeButton {
    /// `callback`, `link`, `request_contact`, …
    pub kind: String,
    pub label: String,
    /// Callback payload (or URL for a link button).
    pub data: String,
}

/// A message the bot sent or an edit it made, as the user's screen shows it afterwards.
#[derive(Debug, Clone)]
pub struct BotMessage {
    pub user_id: i64,
    pub mid: String,
    pub text: String,
    pub buttons: Vec<Vec<FakeButton>>,
    /// This entry records a `PUT /messages`, not a new message.
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

    /// Shows a `request_contact` button.
    pub fn requests_contact(&self) -> bool {
        self.buttons
            .iter()
            .flatten()
            .any(|b| b.kind == "request_contact")
    }
}

#[derive(Debug, Clone)]
struct StoredMessage {
    user_id: i64,
    order: u64,
    text: String,
    keyboard: Option<Value>,
}

#[derive(Debug, Default)]
struct ChatState {
    name: String,
    locale: Option<String>,
    cursor: usize,
    outputs: Vec<BotMessage>,
}

#[derive(Debug, Default)]
struct World {
    next_pos: i64,
    next_order: u64,
    /// Queued updates by position; positions below `committed` are gone.
    updates: VecDeque<(i64, Value)>,
    committed: i64,
    /// How often each update position was handed to the bot.
    deliveries: HashMap<i64, usize>,
    chats: HashMap<i64, ChatState>,
    messages: HashMap<String, StoredMessage>,
    /// Callback ids handed out → (answered?, the message whose button was pressed).
    callbacks: HashMap<String, (bool, String)>,
    calls: Vec<Call>,
    failures: HashMap<String, VecDeque<Failure>>,
    subscriptions: Vec<Value>,
    sends: HashMap<i64, Vec<Instant>>,
    /// Callback answers per chat: MAX limits them to two a second on their own.
    answer_sends: HashMap<i64, Vec<Instant>>,
    rate_violations: Vec<String>,
}

struct Shared {
    world: Mutex<World>,
    changes: watch::Sender<u64>,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn changed(&self) {
        self.changes.send_modify(|v| *v += 1);
    }
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
pub struct FakeMax {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
    /// False while the fake plays an API that cannot be reached.
    open: watch::Sender<bool>,
}

impl Drop for FakeMax {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeMax {
    pub async fn start() -> FakeMax {
        FakeMax::start_with(true).await
    }

    /// A fake whose address drops every connection, as an API that cannot be reached, until
    /// [`FakeMax::open`].
    pub async fn start_closed() -> FakeMax {
        FakeMax::start_with(false).await
    }

    /// From now on the fake answers.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    async fn start_with(open: bool) -> FakeMax {
        let (changes, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            world: Mutex::new(World {
                next_pos: 25_493_970,
                ..World::default()
            }),
            changes,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
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
        FakeMax {
            shared,
            addr,
            server,
            open,
        }
    }

    pub fn api_url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).unwrap()
    }

    /// A user with a dialog with the bot, locale `ru` unless changed.
    pub fn user(&self, user_id: i64) -> FakeMaxUser {
        self.shared
            .world()
            .chats
            .entry(user_id)
            .or_insert_with(|| ChatState {
                name: format!("User{user_id}"),
                locale: Some("ru".into()),
                ..ChatState::default()
            });
        FakeMaxUser {
            user_id,
            shared: self.shared.clone(),
        }
    }

    /// Queues a raw update (its own `update_type`); returns its position.
    pub fn push_update(&self, update: Value) -> i64 {
        push(&self.shared, update, None)
    }

    /// Queues every update of an official `sdk-update.*` fixture (or the bare update of an
    /// `sdk-webhook.*` one); returns their positions.
    pub fn push_fixture(&self, name: &str) -> Vec<i64> {
        let value = contract(name);
        let updates = match value.get("updates") {
            Some(list) => list.as_array().cloned().unwrap_or_default(),
            None => vec![value],
        };
        updates.into_iter().map(|u| self.push_update(u)).collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.world().calls.clone()
    }

    /// Calls of one route (`"POST /messages"`), in order.
    pub fn calls_of(&self, route: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.route == route)
            .collect()
    }

    pub async fn wait_for_calls(&self, route: &str, count: usize, timeout: Duration) -> Vec<Call> {
        let found = self
            .shared
            .wait(timeout, |w| {
                let calls: Vec<Call> = w
                    .calls
                    .iter()
                    .filter(|c| c.route == route)
                    .cloned()
                    .collect();
                (calls.len() >= count).then_some(calls)
            })
            .await;
        found.unwrap_or_else(|| {
            panic!(
                "bot made fewer than {count} {route} calls in {timeout:?}; calls: {:#?}",
                self.calls()
            )
        })
    }

    /// The next call of `route` (`"POST /messages"`) answers with `failure` instead.
    pub fn fail_next(&self, route: &str, failure: Failure) {
        self.shared
            .world()
            .failures
            .entry(route.to_string())
            .or_default()
            .push_back(failure);
    }

    /// Position of the latest queued update.
    pub fn last_pos(&self) -> i64 {
        self.shared.world().next_pos - 1
    }

    /// The marker the bot last passed (updates before it are committed).
    pub fn committed(&self) -> i64 {
        self.shared.world().committed
    }

    /// Waits until the bot has committed the update at `pos`.
    pub async fn wait_for_committed(&self, pos: i64, timeout: Duration) {
        let done = self
            .shared
            .wait(timeout, |w| (w.committed > pos).then_some(()))
            .await;
        assert!(
            done.is_some(),
            "update {pos} not committed within {timeout:?} (marker {})",
            self.committed()
        );
    }

    /// How often each update position was handed to the bot.
    pub fn deliveries(&self) -> HashMap<i64, usize> {
        self.shared.world().deliveries.clone()
    }

    pub fn answered(&self, callback_id: &str) -> bool {
        self.shared
            .world()
            .callbacks
            .get(callback_id)
            .is_some_and(|c| c.0)
    }

    /// Sends that broke MAX's 2 messages/s per chat.
    pub fn rate_violations(&self) -> Vec<String> {
        self.shared.world().rate_violations.clone()
    }

    pub fn subscriptions(&self) -> Vec<Value> {
        self.shared.world().subscriptions.clone()
    }

    /// Puts a bot message into a dialog as if sent earlier; returns its mid.
    pub fn seed_bot_message(&self, user_id: i64, text: &str) -> String {
        let mut w = self.shared.world();
        store_message(&mut w, user_id, text, None)
    }
}

/// One scripted user; cheap to clone.
#[derive(Clone)]
pub struct FakeMaxUser {
    pub user_id: i64,
    shared: Arc<Shared>,
}

impl FakeMaxUser {
    /// `None` models a client that reports no locale.
    pub fn with_locale(self, locale: Option<&str>) -> FakeMaxUser {
        if let Some(chat) = self.shared.world().chats.get_mut(&self.user_id) {
            chat.locale = locale.map(str::to_string);
        }
        self
    }

    pub fn user_json(&self) -> Value {
        let w = self.shared.world();
        let name = w
            .chats
            .get(&self.user_id)
            .map(|c| c.name.clone())
            .unwrap_or_default();
        json!({"user_id": self.user_id, "first_name": name, "is_bot": false,
               "last_activity_time": now_ms(), "name": name})
    }

    fn locale(&self) -> Option<String> {
        self.shared
            .world()
            .chats
            .get(&self.user_id)
            .and_then(|c| c.locale.clone())
    }

    fn envelope(&self, update_type: &str, mut fields: Value) -> Value {
        fields["update_type"] = json!(update_type);
        fields["timestamp"] = json!(now_ms());
        if let Some(locale) = self.locale() {
            fields["user_locale"] = json!(locale);
        }
        fields
    }

    /// Opens the bot from `https://max.ru/<bot>?start=<payload>`: a `bot_started` update.
    pub fn start(&self, payload: Option<&str>) -> i64 {
        let mut fields = json!({"chat_id": dialog_id(self.user_id), "user": self.user_json(),
                                "user_id": self.user_id});
        if let Some(p) = payload {
            fields["payload"] = json!(p);
        }
        let update = self.envelope("bot_started", fields);
        push(&self.shared, update, Some(self.user_id))
    }

    fn user_message(&self, body: Value) -> Value {
        let mid = {
            let mut w = self.shared.world();
            w.next_order += 1;
            format!("mid.user{:028x}", w.next_order)
        };
        let mut body = body;
        body["mid"] = json!(mid);
        body["seq"] = json!(116_327_994_376_978_687_i64);
        self.envelope(
            "message_created",
            json!({"message": {
                "recipient": {"chat_id": dialog_id(self.user_id), "chat_type": "dialog", "user_id": BOT_ID},
                "timestamp": now_ms(),
                "body": body,
                "sender": self.user_json(),
            }}),
        )
    }

    /// Types a message.
    pub fn send_text(&self, text: &str) -> i64 {
        let update = self.user_message(json!({"text": text}));
        push(&self.shared, update, Some(self.user_id))
    }

    /// Taps the `request_contact` button: a message with a `contact` attachment (vCard).
    pub fn share_contact(&self, phone: &str) -> i64 {
        let user = self.user_json();
        let name = user["name"].as_str().unwrap_or_default().to_string();
        let vcf = format!(
            "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:{name}\r\nTEL;TYPE=cell:{phone}\r\nEND:VCARD\r\n"
        );
        let update = self.user_message(json!({
            "text": "",
            "attachments": [{"type": "contact", "payload": {"vcf_info": vcf, "max_info": user}}],
        }));
        push(&self.shared, update, Some(self.user_id))
    }

    /// Presses a callback button (by label, else by payload) on the latest bot message with a
    /// keyboard. Returns the callback id.
    pub fn press(&self, label_or_data: &str) -> String {
        let mid = {
            let w = self.shared.world();
            w.messages
                .iter()
                .filter(|(_, m)| m.user_id == self.user_id && m.keyboard.is_some())
                .max_by_key(|(_, m)| m.order)
                .map(|(mid, _)| mid.clone())
                .unwrap_or_else(|| panic!("user {} has no bot message with buttons", self.user_id))
        };
        self.press_on(&mid, label_or_data)
    }

    /// Presses a callback button on a given bot message, even an old one.
    pub fn press_on(&self, mid: &str, label_or_data: &str) -> String {
        let stored = self
            .shared
            .world()
            .messages
            .get(mid)
            .cloned()
            .unwrap_or_else(|| panic!("no bot message {mid}"));
        let shown = BotMessage {
            user_id: self.user_id,
            mid: mid.to_string(),
            text: stored.text.clone(),
            buttons: parse_keyboard(stored.keyboard.as_ref()),
            edited: false,
        };
        let button = shown.find_button(label_or_data).unwrap_or_else(|| {
            panic!(
                "no button {label_or_data:?} on {mid} ({:?}); buttons: {:?}",
                shown.text,
                shown.labels()
            )
        });
        assert_eq!(
            button.kind, "callback",
            "{label_or_data:?} is a {} button, not a callback one",
            button.kind
        );
        let callback_id = {
            let mut w = self.shared.world();
            w.next_order += 1;
            let id = format!("cb{}-{}", self.user_id, w.next_order);
            w.callbacks.insert(id.clone(), (false, mid.to_string()));
            id
        };
        let mut body = json!({"mid": mid, "seq": 116_328_147_937_082_782_i64, "text": stored.text});
        if let Some(kb) = &stored.keyboard {
            body["attachments"] = json!([kb]);
        }
        let update = self.envelope(
            "message_callback",
            json!({
                "callback": {"timestamp": now_ms(), "callback_id": callback_id,
                             "user": self.user_json(), "payload": button.data},
                "message": {
                    "recipient": {"chat_id": dialog_id(self.user_id), "chat_type": "dialog", "user_id": self.user_id},
                    "timestamp": now_ms(),
                    "body": body,
                    "sender": {"user_id": BOT_ID, "first_name": "zapis", "username": "zapis_bot", "is_bot": true, "name": "zapis"},
                },
            }),
        );
        push(&self.shared, update, Some(self.user_id));
        callback_id
    }

    /// Everything the bot showed this user, sends and edits, oldest first.
    pub fn history(&self) -> Vec<BotMessage> {
        self.shared
            .world()
            .chats
            .get(&self.user_id)
            .map(|c| c.outputs.clone())
            .unwrap_or_default()
    }

    /// What the bot showed since the user's last action.
    pub fn replies(&self) -> Vec<BotMessage> {
        let w = self.shared.world();
        w.chats
            .get(&self.user_id)
            .map(|c| c.outputs[c.cursor..].to_vec())
            .unwrap_or_default()
    }

    pub async fn wait_for_reply(
        &self,
        predicate: impl Fn(&BotMessage) -> bool,
        timeout: Duration,
    ) -> BotMessage {
        let user_id = self.user_id;
        let found = self
            .shared
            .wait(timeout, |w| {
                let chat = w.chats.get(&user_id)?;
                chat.outputs[chat.cursor..]
                    .iter()
                    .find(|m| predicate(m))
                    .cloned()
            })
            .await;
        found.unwrap_or_else(|| {
            panic!(
                "no matching bot reply for user {user_id} within {timeout:?}; since the last user action: {:#?}",
                self.replies()
            )
        })
    }

    pub async fn next_reply(&self, timeout: Duration) -> BotMessage {
        self.wait_for_reply(|_| true, timeout).await
    }

    pub async fn wait_for_text(&self, needle: &str, timeout: Duration) -> BotMessage {
        self.wait_for_reply(|m| m.text.contains(needle), timeout)
            .await
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn push(shared: &Shared, update: Value, user: Option<i64>) -> i64 {
    let pos = {
        let mut w = shared.world();
        let pos = w.next_pos;
        w.next_pos += 1;
        w.updates.push_back((pos, update));
        if let Some(chat) = user.and_then(|u| w.chats.get_mut(&u)) {
            chat.cursor = chat.outputs.len();
        }
        pos
    };
    shared.changed();
    pos
}

fn store_message(w: &mut World, user_id: i64, text: &str, keyboard: Option<Value>) -> String {
    w.next_order += 1;
    let order = w.next_order;
    let mid = format!("mid.{order:032x}");
    w.messages.insert(
        mid.clone(),
        StoredMessage {
            user_id,
            order,
            text: text.to_string(),
            keyboard,
        },
    );
    mid
}

fn parse_keyboard(kb: Option<&Value>) -> Vec<Vec<FakeButton>> {
    let Some(rows) = kb.and_then(|k| k["payload"]["buttons"].as_array()) else {
        return Vec::new();
    };
    rows.iter()
        .map(|row| {
            row.as_array()
                .into_iter()
                .flatten()
                .map(|b| FakeButton {
                    kind: b["type"].as_str().unwrap_or_default().to_string(),
                    label: b["text"].as_str().unwrap_or_default().to_string(),
                    data: b["payload"]
                        .as_str()
                        .or_else(|| b["url"].as_str())
                        .unwrap_or_default()
                        .to_string(),
                })
                .collect()
        })
        .collect()
}

fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Value) {
    (status, json!({"code": code, "message": message}))
}

fn bad(message: &str) -> (StatusCode, Value) {
    error(StatusCode::BAD_REQUEST, "proto.payload", message)
}

async fn handle(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = format!("{} {}", method, uri.path());
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let body_json: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()))
    };
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(TOKEN);
    let (status, answer) = if !authorized {
        (
            StatusCode::UNAUTHORIZED,
            contract("sdk-error.invalid-token.json"),
        )
    } else if let Some(f) = shared
        .world()
        .failures
        .get_mut(&route)
        .and_then(|q| q.pop_front())
    {
        f.response()
    } else if body_json.is_string() {
        bad("request body is not JSON")
    } else {
        answer(&shared, &route, &query, &body_json).await
    };
    shared.world().calls.push(Call {
        route,
        query,
        body: body_json,
        status: status.as_u16(),
    });
    shared.changed();
    (status, axum::Json(answer)).into_response()
}

async fn answer(
    shared: &Shared,
    route: &str,
    query: &HashMap<String, String>,
    body: &Value,
) -> (StatusCode, Value) {
    let ok = |v: Value| (StatusCode::OK, v);
    match route {
        "GET /me" => ok(
            json!({"user_id": BOT_ID, "first_name": "zapis", "username": "zapis_bot",
                               "is_bot": true, "last_activity_time": now_ms(), "name": "zapis"}),
        ),
        "GET /updates" => get_updates(shared, query).await,
        r if r.starts_with("GET /chats/") => get_chat(shared, &r["GET /chats/".len()..]),
        "POST /messages" => send_message(shared, query, body),
        "PUT /messages" => edit_message(shared, query, body),
        "POST /answers" => answer_callback(shared, query, body),
        "GET /subscriptions" => ok(json!({"subscriptions": shared.world().subscriptions.clone()})),
        "POST /subscriptions" => {
            let url = body["url"].as_str().unwrap_or_default();
            if !url.starts_with("https://") {
                return bad("url must start with https://");
            }
            if let Some(secret) = body.get("secret").and_then(Value::as_str) {
                let shape = (5..=256).contains(&secret.len())
                    && secret
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !shape {
                    return bad("secret must match ^[\\w-]{5,256}$");
                }
            }
            let mut w = shared.world();
            w.subscriptions.retain(|s| s["url"] != body["url"]);
            w.subscriptions
                .push(json!({"url": url, "time": now_ms(), "update_types": body["update_types"]}));
            ok(json!({"success": true}))
        }
        "DELETE /subscriptions" => {
            let url = query.get("url").cloned().unwrap_or_default();
            shared
                .world()
                .subscriptions
                .retain(|s| s["url"] != json!(url));
            ok(json!({"success": true}))
        }
        _ => error(StatusCode::NOT_FOUND, "not.found", "Method not found"),
    }
}

async fn get_updates(shared: &Shared, query: &HashMap<String, String>) -> (StatusCode, Value) {
    if !shared.world().subscriptions.is_empty() {
        // MAX: "long polling does not work with an active subscription"; the code is a guess.
        return bad("long polling is disabled while a webhook subscription is active");
    }
    let num = |k: &str| query.get(k).and_then(|v| v.parse::<i64>().ok());
    let limit = num("limit").unwrap_or(100).clamp(1, 1000) as usize;
    let timeout =
        Duration::from_secs(num("timeout").unwrap_or(30).clamp(0, 90) as u64).min(MAX_POLL);
    let types: Option<Vec<String>> = query
        .get("types")
        .map(|t| t.split(',').map(str::to_string).collect());
    let from = {
        let mut w = shared.world();
        match num("marker") {
            Some(marker) => {
                w.updates.retain(|(pos, _)| *pos >= marker);
                w.committed = w.committed.max(marker);
                marker
            }
            // Schema: without a marker, everything after the last commitment.
            None => w.committed,
        }
    };
    shared.changed();
    let batch = shared
        .wait(timeout, |w| {
            let mut last = None;
            let mut batch = Vec::new();
            for (pos, u) in w.updates.iter().filter(|(pos, _)| *pos >= from) {
                if batch.len() == limit {
                    break;
                }
                last = Some(*pos);
                let kind = u["update_type"].as_str().unwrap_or_default();
                if types.as_ref().is_none_or(|t| t.iter().any(|k| k == kind)) {
                    batch.push((*pos, u.clone()));
                }
            }
            last.map(|last| (batch, last + 1))
        })
        .await;
    let mut w = shared.world();
    let (batch, marker) = batch.unwrap_or_else(|| (Vec::new(), from.max(w.next_pos)));
    for (pos, _) in &batch {
        *w.deliveries.entry(*pos).or_default() += 1;
    }
    let updates: Vec<Value> = batch.into_iter().map(|(_, u)| u).collect();
    (
        StatusCode::OK,
        json!({"updates": updates, "marker": marker}),
    )
}

type Answer = (StatusCode, Value);

/// MAX's `NewMessageBody` rules; returns the text and the keyboard: `None` when `attachments`
/// was null (an edit keeps the old one), `Some(None)` when the list has no keyboard.
fn validate(body: &Value) -> Result<(String, Option<Option<Value>>), Answer> {
    let text = body["text"].as_str().unwrap_or_default().to_string();
    if text.chars().count() > 4000 {
        return Err(bad("text: size must be between 0 and 4000"));
    }
    let attachments = match body.get("attachments") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(list.clone()),
        Some(_) => return Err(bad("attachments must be an array")),
    };
    if attachments.as_ref().is_some_and(|a| a.len() > 12) {
        return Err(bad("attachments: at most 12"));
    }
    let keyboard = attachments.as_ref().map(|list| {
        list.iter()
            .find(|a| a["type"] == "inline_keyboard")
            .cloned()
    });
    if let Some(Some(kb)) = &keyboard {
        let rows = kb["payload"]["buttons"]
            .as_array()
            .ok_or_else(|| bad("inline_keyboard.payload.buttons is required"))?;
        // 30 rows, 7 buttons a row, 3 with a link/contact/geo/app button: MAX's keyboard guide
        // (dev.max.ru/docs-api/use-cases/sending-messages/keyboard/); text and payload lengths:
        // the schema's `Button.text` and `CallbackButton.payload`.
        if rows.is_empty() || rows.len() > 30 {
            return Err(bad("keyboard: 1 to 30 rows"));
        }
        for row in rows {
            let row = row
                .as_array()
                .ok_or_else(|| bad("keyboard row must be an array"))?;
            let special = row.iter().any(|b| {
                matches!(
                    b["type"].as_str(),
                    Some("link" | "request_contact" | "request_geo_location" | "open_app")
                )
            });
            let max = if special { 3 } else { 7 };
            if row.is_empty() || row.len() > max {
                return Err(bad(&format!("keyboard row: 1 to {max} buttons")));
            }
            for b in row {
                let label = b["text"].as_str().unwrap_or_default().chars().count();
                if !(1..=128).contains(&label) {
                    return Err(bad("button text: 1 to 128 characters"));
                }
                match b["type"].as_str() {
                    Some("callback") => {
                        let p = b["payload"].as_str().unwrap_or_default().len();
                        if !(1..=1024).contains(&p) {
                            return Err(bad("callback payload: 1 to 1024 characters"));
                        }
                    }
                    Some("link") => {
                        if b["url"].as_str().is_none_or(|u| u.len() > 2048) {
                            return Err(bad("link url is required, at most 2048"));
                        }
                    }
                    Some(
                        "request_contact"
                        | "request_geo_location"
                        | "message"
                        | "open_app"
                        | "clipboard",
                    ) => {}
                    other => return Err(bad(&format!("unknown button type {other:?}"))),
                }
            }
        }
    }
    if text.trim().is_empty() && attachments.as_ref().is_none_or(Vec::is_empty) {
        return Err(bad("message is empty"));
    }
    Ok((text, keyboard))
}

fn note_send(w: &mut World, user_id: i64, what: &str) {
    note_in_window(w, false, user_id, what);
}

fn note_in_window(w: &mut World, answer: bool, user_id: i64, what: &str) {
    let now = Instant::now();
    let window = if answer {
        &mut w.answer_sends
    } else {
        &mut w.sends
    };
    let sends = window.entry(user_id).or_default();
    sends.retain(|t| now.duration_since(*t) < Duration::from_millis(990));
    sends.push(now);
    if sends.len() > 2 {
        let gaps: Vec<u128> = sends
            .windows(2)
            .map(|p| (p[1] - p[0]).as_millis())
            .collect();
        w.rate_violations.push(format!(
            "user {user_id}: {} messages within one second (gaps {gaps:?} ms), last: {what}",
            sends.len()
        ));
    }
}

fn send_message(
    shared: &Shared,
    query: &HashMap<String, String>,
    body: &Value,
) -> (StatusCode, Value) {
    let num = |k: &str| query.get(k).and_then(|v| v.parse::<i64>().ok());
    let user_id = match (num("user_id"), num("chat_id")) {
        (Some(u), None) => u,
        (None, Some(c)) if c > DIALOG_BASE => c - DIALOG_BASE,
        (None, Some(_)) => return Failure::ChatDenied.response(),
        _ => return bad("exactly one of user_id and chat_id is required"),
    };
    let (text, keyboard) = match validate(body) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let keyboard = keyboard.flatten();
    let mut w = shared.world();
    if !w.chats.contains_key(&user_id) {
        return Failure::ChatDenied.response();
    }
    note_send(&mut w, user_id, &format!("send {text:?}"));
    let mid = store_message(&mut w, user_id, &text, keyboard.clone());
    let shown = BotMessage {
        user_id,
        mid: mid.clone(),
        text: text.clone(),
        buttons: parse_keyboard(keyboard.as_ref()),
        edited: false,
    };
    if let Some(chat) = w.chats.get_mut(&user_id) {
        chat.outputs.push(shown);
    }
    let mut msg_body = json!({"mid": mid, "seq": 116_328_147_937_082_782_i64, "text": text});
    if let Some(a) = body.get("attachments").filter(|a| !a.is_null()) {
        msg_body["attachments"] = a.clone();
    }
    (
        StatusCode::OK,
        json!({"message": {
            "sender": {"user_id": BOT_ID, "first_name": "zapis", "username": "zapis_bot", "is_bot": true, "name": "zapis"},
            "recipient": {"chat_id": dialog_id(user_id), "chat_type": "dialog", "user_id": user_id},
            "timestamp": now_ms(),
            "body": msg_body,
        }}),
    )
}

/// `GET /chats/{chatId}`: the contract's chat with the asked id, for a dialog the fake knows;
/// any other is not found.
fn get_chat(shared: &Shared, id: &str) -> (StatusCode, Value) {
    let user = id
        .parse::<i64>()
        .ok()
        .filter(|c| *c > DIALOG_BASE)
        .map(|c| c - DIALOG_BASE);
    if !user.is_some_and(|u| shared.world().chats.contains_key(&u)) {
        return (
            StatusCode::NOT_FOUND,
            json!({"code": "not.found", "message": format!("Chat {id} not found")}),
        );
    }
    let mut chat = contract("sdk-chats-get-chat-by-id.json");
    chat["chat_id"] = json!(id.parse::<i64>().unwrap_or_default());
    (StatusCode::OK, chat)
}

/// `POST /answers`: a `CallbackAnswer` must carry `message` (it replaces the pressed message,
/// validated like any `NewMessageBody`) or `notification`; MAX refuses `{}` with 400
/// `proto.payload` "Invalid request. `message` or `notification` required" (quoted from the
/// live API by public MAX clients, docs/max.md).
fn answer_callback(
    shared: &Shared,
    query: &HashMap<String, String>,
    body: &Value,
) -> (StatusCode, Value) {
    let id = query.get("callback_id").cloned().unwrap_or_default();
    if id.is_empty() {
        return bad("callback_id is required");
    }
    let message = body.get("message").filter(|m| !m.is_null());
    let notification = body.get("notification").filter(|n| !n.is_null());
    if message.is_none() && notification.is_none() {
        return bad("Invalid request. `message` or `notification` required");
    }
    if notification.is_some_and(|n| !n.is_string()) {
        return bad("notification must be a string");
    }
    let checked = match message.map(validate).transpose() {
        Ok(v) => v,
        Err(e) => return e,
    };
    let mut w = shared.world();
    let Some((_, mid)) = w.callbacks.get(&id).cloned() else {
        return error(StatusCode::NOT_FOUND, "not.found", "callback not found");
    };
    if let Some(entry) = w.callbacks.get_mut(&id) {
        entry.0 = true;
    }
    if let Some(user_id) = w.messages.get(&mid).map(|m| m.user_id) {
        note_in_window(&mut w, true, user_id, &format!("answer {body}"));
    }
    if let Some((text, keyboard)) = checked
        && let Some(stored) = w.messages.get_mut(&mid)
    {
        stored.text = text.clone();
        if let Some(kb) = keyboard {
            stored.keyboard = kb;
        }
        let user_id = stored.user_id;
        let shown = BotMessage {
            user_id,
            mid: mid.clone(),
            text,
            buttons: parse_keyboard(stored.keyboard.as_ref()),
            edited: true,
        };
        if let Some(chat) = w.chats.get_mut(&user_id) {
            chat.outputs.push(shown);
        }
    }
    (StatusCode::OK, json!({"success": true}))
}

fn edit_message(
    shared: &Shared,
    query: &HashMap<String, String>,
    body: &Value,
) -> (StatusCode, Value) {
    let Some(mid) = query.get("message_id").filter(|m| !m.is_empty()) else {
        return bad("message_id is required");
    };
    let (text, keyboard) = match validate(body) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let mut w = shared.world();
    let Some(stored) = w.messages.get_mut(mid) else {
        return error(StatusCode::NOT_FOUND, "not.found", "Message not found");
    };
    stored.text = text.clone();
    // null attachments keep the old ones; a list (even empty) replaces them.
    if let Some(kb) = keyboard {
        stored.keyboard = kb;
    }
    let user_id = stored.user_id;
    let shown = BotMessage {
        user_id,
        mid: mid.clone(),
        text,
        buttons: parse_keyboard(stored.keyboard.as_ref()),
        edited: true,
    };
    note_send(&mut w, user_id, &format!("edit {:?}", shown.text));
    if let Some(chat) = w.chats.get_mut(&user_id) {
        chat.outputs.push(shown);
    }
    (StatusCode::OK, json!({"success": true}))
}
