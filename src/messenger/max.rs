//! MAX (VK) adapter: a thin client over MAX's HTTP Bot API (no SDK), long polling or webhooks
//! in, neutral [`Reply`]s out.
//!
//! The wire contract is MAX schema 0.0.33: host `platform-api2.max.ru`, the raw token in the
//! `Authorization` header, bare JSON bodies (no `{ok, result}` envelope), errors as
//! `{code, message}`, millisecond timestamps, `update_type` as the update discriminator.
//!
//! Rendering choices:
//! - `buttons` become an `inline_keyboard` attachment; MAX keyboards are inline only, so the
//!   "share my phone" request is one more (`request_contact`) button row on the same message.
//!   Rows are split to MAX's limits (7 buttons, 3 when the row has a contact or link button;
//!   30 rows; button text ≤ 128 characters, callback payload ≤ 1024; sources at the constants).
//!   A button whose data is an `https://` URL becomes a `link` button.
//! - `edit: true` on a reply to a button press edits the message the button was on
//!   (`PUT /messages`); only the first such reply edits. A refused edit falls back to a new
//!   message. An edit without buttons sends `attachments: []`, which MAX reads as "remove the
//!   old keyboard" (null would keep it).
//! - Texts longer than 4000 characters are split at line or word breaks; the keyboard goes on
//!   the last part.
//! - Every callback is answered (`POST /answers`) once the dialog has its next screen: with that
//!   screen as the answer's `message` when it replaces the pressed message, else with a short
//!   `notification`. MAX refuses an empty answer, and the client shows a spinner until then.
//! - Pacing: ≤ 2 messages/s per chat (MAX's documented limit, as one every 600 ms so no one-second
//!   window ever holds three, even with network jitter) and ≤ 30 requests/s overall; a 429 is
//!   waited out and retried.
//!
//! Polling keeps MAX's `marker` in the store (`messenger_cursors`), saved only after every
//! update of a batch was handled: a restart neither loses nor replays an update.

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use url::Url;

use super::ChatHandler;
use super::config::{MaxConfig, MaxMode};
use crate::connectors::failure::{self, Quirks};
use crate::connectors::{Failure, Kind, http};
use crate::conversation::{ChatEvent, Conversations};
use crate::dialog::Reply;
use crate::domain::{Channel, ChatRef};
use crate::i18n::{Lang, Texts};
use crate::normalize::mask_phone;
use crate::store::{Store, StoreError};

/// MAX's limit on a message text (`NewMessageBody.text`).
pub const MAX_TEXT_LEN: usize = 4000;
/// Rows, buttons per row, and per row with a `link`, `open_app`, `request_geo_location` or
/// `request_contact` button: MAX's keyboard guide, https://dev.max.ru/docs-api/use-cases/sending-messages/keyboard/
/// ("до 210 кнопок, сгруппированных в 30 рядов — до 7 кнопок в каждом (до 3, если это кнопки
/// типа link, open_app, request_geo_location или request_contact)"). The OpenAPI schema and the
/// official clients do not state them (docs/max.md).
pub const MAX_ROWS: usize = 30;
pub const MAX_BUTTONS_PER_ROW: usize = 7;
pub const MAX_SPECIAL_BUTTONS_PER_ROW: usize = 3;
/// `Button.text` `maxLength: 128`, `max-messenger/api-schema:schema.yaml` (0.0.33).
pub const MAX_BUTTON_TEXT: usize = 128;
/// `CallbackButton.payload` `maxLength: 1024`, same schema.
pub const MAX_CALLBACK_PAYLOAD: usize = 1024;
/// Header MAX puts the subscription secret in on every webhook delivery.
pub const SECRET_HEADER: &str = "X-Max-Bot-Api-Secret";
/// The `channel` of MAX's row in `messenger_cursors`.
pub const CURSOR_CHANNEL: &str = "max";
/// The update types the booking dialog reacts to; MAX sends only these when asked.
pub const UPDATE_TYPES: &[&str] = &["bot_started", "message_created", "message_callback"];

#[derive(Debug, thiserror::Error)]
pub enum MaxError {
    #[error("MAX rejected the bot token (check max.token)")]
    Unauthorized,
    #[error("MAX answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("MAX kept answering 429 too.many.requests")]
    RateLimited { retry_after: Option<Duration> },
    #[error("cannot reach MAX at {api_url}: {reason}")]
    Network { api_url: String, reason: String },
    #[error("unexpected answer from MAX to {path}: {reason}")]
    Decode { path: String, reason: String },
    #[error("MAX refused the request: {0}")]
    Refused(String),
    #[error("webhook secret missing or wrong")]
    BadSecret,
    #[error("webhook body is not a MAX update: {0}")]
    BadWebhook(String),
    #[error("invalid MAX settings: {0}")]
    Config(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl MaxError {
    /// The user stopped or blocked the bot: nothing to retry, nobody to tell.
    pub fn is_chat_denied(&self) -> bool {
        matches!(self, MaxError::Api { code, .. } if code == "chat.denied")
    }

    /// What the queue should do about it. A user who blocked the bot, a chat that is gone or
    /// a message MAX refuses will be refused again: permanent, not retried for a week.
    pub fn failure(&self) -> Failure {
        let message = format!("MAX: {self}");
        match self {
            MaxError::Unauthorized => Failure::auth(message).with_status(401),
            MaxError::Api { status, code, .. } => {
                Failure::from_status(&MaxQuirks, *status, Some(code), None, message)
            }
            MaxError::RateLimited { retry_after } => {
                Failure::from_status(&MaxQuirks, 429, None, *retry_after, message)
            }
            // An answer we could not read may still mean the message went out; a retry is
            // what the notice's idempotency key is for.
            MaxError::Network { .. } | MaxError::Decode { .. } | MaxError::Store(_) => {
                Failure::transient(message)
            }
            MaxError::Refused(_)
            | MaxError::BadSecret
            | MaxError::BadWebhook(_)
            | MaxError::Config(_) => Failure::permanent(message),
        }
    }
}

/// MAX answers 403 about the chat (`chat.denied`, a bot not in a group), not the token: its
/// refused token is a 401. So a 403 is the chat's verdict, not a credentials problem.
struct MaxQuirks;

impl Quirks for MaxQuirks {
    fn classify(&self, status: Option<u16>, code: Option<&str>, _: &str) -> Option<Kind> {
        match (status, code) {
            // The upload is still being processed: the same message goes through shortly.
            (_, Some("attachment.not.ready")) => Some(Kind::Transient { retry_after: None }),
            (_, Some("chat.denied")) | (Some(403 | 404), _) => Some(Kind::Permanent),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire types (MAX schema 0.0.33). Unknown fields are ignored everywhere: MAX adds fields.

/// `{code, message}`, MAX's error body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ApiErrorBody {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// `GET /me`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BotInfo {
    pub user_id: i64,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub is_bot: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MaxUser {
    pub user_id: i64,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub is_bot: bool,
    /// Not in schema 0.0.33's `User`, but some payloads carry it; `user_locale` wins.
    #[serde(default)]
    pub locale: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MaxRecipient {
    #[serde(default)]
    pub chat_id: Option<i64>,
    /// `dialog`, `chat` or `channel`.
    #[serde(default)]
    pub chat_type: Option<String>,
    #[serde(default)]
    pub user_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MaxMessageBody {
    pub mid: String,
    /// Above 2^53: an integer, never a float.
    #[serde(default)]
    pub seq: i64,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub attachments: Option<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MaxMessage {
    #[serde(default)]
    pub sender: Option<MaxUser>,
    pub recipient: MaxRecipient,
    #[serde(default)]
    pub timestamp: i64,
    pub body: MaxMessageBody,
    /// The message this one forwards or replies to.
    #[serde(default)]
    pub link: Option<MaxLink>,
}

/// `Chat`, as far as the admin-chat check reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MaxChat {
    pub chat_id: i64,
    #[serde(default)]
    pub title: Option<String>,
}

/// `Message.link`: `{type: forward|reply, sender?, chat_id?, message}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MaxLink {
    /// `forward` or `reply`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub message: Option<MaxLinkedBody>,
}

/// The linked message's body; only its id matters here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MaxLinkedBody {
    pub mid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MaxCallback {
    pub callback_id: String,
    #[serde(default)]
    pub payload: Option<String>,
    pub user: MaxUser,
    #[serde(default)]
    pub timestamp: i64,
}

/// One update. Types the dialog does not use are kept by name only, and a known type that does
/// not parse is kept with the reason: neither may stop the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum MaxUpdate {
    BotStarted {
        timestamp: i64,
        chat_id: i64,
        user: MaxUser,
        /// The deep-link `?start=` value.
        payload: Option<String>,
        user_locale: Option<String>,
    },
    MessageCreated {
        timestamp: i64,
        message: MaxMessage,
        user_locale: Option<String>,
    },
    MessageCallback {
        timestamp: i64,
        callback: MaxCallback,
        /// Null when the message with the keyboard was deleted.
        message: Option<MaxMessage>,
        user_locale: Option<String>,
    },
    Other {
        update_type: String,
    },
    Unreadable {
        update_type: String,
        reason: String,
    },
}

#[derive(Deserialize)]
struct BotStartedWire {
    #[serde(default)]
    timestamp: i64,
    chat_id: i64,
    user: MaxUser,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    user_locale: Option<String>,
}

#[derive(Deserialize)]
struct MessageCreatedWire {
    #[serde(default)]
    timestamp: i64,
    message: MaxMessage,
    #[serde(default)]
    user_locale: Option<String>,
}

#[derive(Deserialize)]
struct MessageCallbackWire {
    #[serde(default)]
    timestamp: i64,
    callback: MaxCallback,
    #[serde(default)]
    message: Option<MaxMessage>,
    #[serde(default)]
    user_locale: Option<String>,
}

impl MaxUpdate {
    /// Never fails: what cannot be read becomes [`MaxUpdate::Unreadable`].
    pub fn from_value(value: Value) -> MaxUpdate {
        let update_type = value
            .get("update_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let unreadable = |e: serde_json::Error| MaxUpdate::Unreadable {
            update_type: update_type.clone(),
            reason: e.to_string(),
        };
        match update_type.as_str() {
            "bot_started" => match serde_json::from_value::<BotStartedWire>(value) {
                Ok(w) => MaxUpdate::BotStarted {
                    timestamp: w.timestamp,
                    chat_id: w.chat_id,
                    user: w.user,
                    payload: w.payload,
                    user_locale: w.user_locale,
                },
                Err(e) => unreadable(e),
            },
            "message_created" => match serde_json::from_value::<MessageCreatedWire>(value) {
                Ok(w) => MaxUpdate::MessageCreated {
                    timestamp: w.timestamp,
                    message: w.message,
                    user_locale: w.user_locale,
                },
                Err(e) => unreadable(e),
            },
            "message_callback" => match serde_json::from_value::<MessageCallbackWire>(value) {
                Ok(w) => MaxUpdate::MessageCallback {
                    timestamp: w.timestamp,
                    callback: w.callback,
                    message: w.message,
                    user_locale: w.user_locale,
                },
                Err(e) => unreadable(e),
            },
            _ => MaxUpdate::Other { update_type },
        }
    }

    pub fn update_type(&self) -> &str {
        match self {
            MaxUpdate::BotStarted { .. } => "bot_started",
            MaxUpdate::MessageCreated { .. } => "message_created",
            MaxUpdate::MessageCallback { .. } => "message_callback",
            MaxUpdate::Other { update_type } | MaxUpdate::Unreadable { update_type, .. } => {
                update_type
            }
        }
    }
}

impl<'de> Deserialize<'de> for MaxUpdate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(MaxUpdate::from_value(Value::deserialize(d)?))
    }
}

/// `GET /updates`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UpdateList {
    pub updates: Vec<MaxUpdate>,
    #[serde(default)]
    pub marker: Option<i64>,
}

/// `SimpleQueryResult`: a 200 can still say `success: false`.
#[derive(Debug, Clone, Deserialize)]
struct SimpleResult {
    success: bool,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct SendMessageResult {
    message: MaxMessage,
}

/// Where a message goes: a user's dialog with the bot, or a group chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaxTarget {
    User(i64),
    Chat(i64),
}

impl MaxTarget {
    fn query(self) -> (&'static str, String) {
        match self {
            MaxTarget::User(id) => ("user_id", id.to_string()),
            MaxTarget::Chat(id) => ("chat_id", id.to_string()),
        }
    }

    /// The conversation key: the user id for dialogs (the same in every update type, unlike
    /// the dialog's chat id, which a callback on a deleted message does not carry).
    pub fn chat_ref(self) -> ChatRef {
        match self {
            MaxTarget::User(id) => ChatRef::new(Channel::Max, id.to_string()),
            MaxTarget::Chat(id) => ChatRef::new(Channel::Max, format!("chat{id}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client

/// Pacing under MAX's limits; tests loosen it.
#[derive(Debug, Clone, Copy)]
pub struct MaxLimits {
    /// Minimum gap between two messages (or two callback answers) in one chat.
    pub per_chat_interval: Duration,
    pub overall_per_second: u32,
    /// First wait after a 429 (MAX sends no `Retry-After`); doubles per retry.
    pub retry_base: Duration,
    pub max_retries: u32,
}

impl Default for MaxLimits {
    fn default() -> Self {
        MaxLimits {
            // 2/s would be one every 500 ms, but then three sends can land within one second on
            // MAX's side once network jitter shifts them; 600 ms keeps a margin.
            per_chat_interval: Duration::from_millis(600),
            overall_per_second: 30,
            retry_base: Duration::from_secs(1),
            max_retries: 4,
        }
    }
}

/// The few MAX Bot API methods zapis uses.
#[derive(Clone)]
pub struct MaxClient {
    http: reqwest::Client,
    api_url: Url,
    token: SecretString,
    limits: MaxLimits,
    overall: Arc<DefaultDirectRateLimiter>,
    messages: Arc<DefaultKeyedRateLimiter<MaxTarget>>,
    answers: Arc<DefaultKeyedRateLimiter<MaxTarget>>,
    /// Calls since the per-chat limiters last dropped idle chats.
    since_prune: Arc<std::sync::atomic::AtomicU32>,
}

/// Webhook mode and the notice sender have no polling loop to forget idle chats after; every
/// this many calls the client does it itself.
const PRUNE_EVERY: u32 = 1024;

const CALL_TIMEOUT: Duration = Duration::from_secs(15);

impl MaxClient {
    pub fn new(config: &MaxConfig) -> MaxClient {
        MaxClient::with_limits(config, MaxLimits::default())
    }

    pub fn with_limits(config: &MaxConfig, limits: MaxLimits) -> MaxClient {
        let per_chat = Quota::with_period(limits.per_chat_interval.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN));
        let overall = Quota::per_second(
            NonZeroU32::new(limits.overall_per_second).unwrap_or(NonZeroU32::MIN),
        );
        MaxClient {
            http: http_client(config),
            api_url: config.api_url.clone(),
            token: config.token.clone(),
            limits,
            overall: Arc::new(RateLimiter::direct(overall)),
            messages: Arc::new(RateLimiter::keyed(per_chat)),
            answers: Arc::new(RateLimiter::keyed(per_chat)),
            since_prune: Arc::default(),
        }
    }

    pub fn api_url(&self) -> &Url {
        &self.api_url
    }

    fn url(&self, path: &str) -> Result<Url, MaxError> {
        let base = self.api_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{path}")).map_err(|e| MaxError::Config(e.to_string()))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<T, MaxError> {
        let url = self.url(path)?;
        let mut auth = HeaderValue::from_str(self.token.expose_secret()).map_err(|_| {
            MaxError::Config("max.token has characters a header cannot carry".into())
        })?;
        auth.set_sensitive(true);
        let calls = self
            .since_prune
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if calls >= PRUNE_EVERY {
            self.since_prune
                .store(0, std::sync::atomic::Ordering::Relaxed);
            self.forget_idle_chats();
        }
        let mut attempt = 0;
        loop {
            self.overall.until_ready().await;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .query(query)
                .header(AUTHORIZATION, auth.clone())
                .timeout(timeout);
            if let Some(body) = body {
                request = request.json(body);
            }
            // The token travels in a header, so reqwest's error text (which names the URL)
            // carries no secret.
            let network = |e: reqwest::Error| MaxError::Network {
                api_url: self.api_url.to_string(),
                reason: if e.is_timeout() {
                    "timed out".into()
                } else {
                    e.to_string()
                },
            };
            let response = request.send().await.map_err(network)?;
            let status = response.status();
            let retry_after = failure::retry_after(response.headers());
            let bytes = response.bytes().await.map_err(network)?;
            if status.is_success() {
                return serde_json::from_slice(&bytes).map_err(|e| MaxError::Decode {
                    path: path.to_string(),
                    reason: e.to_string(),
                });
            }
            let error =
                serde_json::from_slice::<ApiErrorBody>(&bytes).unwrap_or_else(|_| ApiErrorBody {
                    code: format!("http.{}", status.as_u16()),
                    message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                });
            match status.as_u16() {
                429 if attempt < self.limits.max_retries => {
                    let wait = retry_after
                        .unwrap_or_else(|| self.limits.retry_base * 2u32.pow(attempt.min(6)));
                    tracing::info!(
                        path,
                        wait_ms = wait.as_millis() as u64,
                        "MAX rate limit; waiting"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                429 => return Err(MaxError::RateLimited { retry_after }),
                401 => return Err(MaxError::Unauthorized),
                status => {
                    return Err(MaxError::Api {
                        status,
                        code: error.code,
                        message: error.message,
                    });
                }
            }
        }
    }

    /// `GET /me`: who the token belongs to.
    pub async fn me(&self) -> Result<BotInfo, MaxError> {
        self.call(Method::GET, "me", &[], None, CALL_TIMEOUT).await
    }

    /// `GET /chats/{chatId}`: a chat the bot is a member of.
    pub async fn chat(&self, chat_id: i64) -> Result<MaxChat, MaxError> {
        self.call(
            Method::GET,
            &format!("chats/{chat_id}"),
            &[],
            None,
            CALL_TIMEOUT,
        )
        .await
    }

    /// `GET /updates`, blocking up to `timeout` when nothing is waiting. Passing `marker`
    /// commits everything before it on MAX's side.
    pub async fn updates(
        &self,
        marker: Option<i64>,
        limit: u32,
        timeout: Duration,
        types: &[&str],
    ) -> Result<UpdateList, MaxError> {
        let mut query = vec![
            ("limit", limit.clamp(1, 1000).to_string()),
            ("timeout", timeout.as_secs().min(90).to_string()),
        ];
        if let Some(marker) = marker {
            query.push(("marker", marker.to_string()));
        }
        if !types.is_empty() {
            query.push(("types", types.join(",")));
        }
        self.call(
            Method::GET,
            "updates",
            &query,
            None,
            timeout + Duration::from_secs(10),
        )
        .await
    }

    /// `POST /messages`; returns the new message's `mid`.
    pub async fn send(&self, to: MaxTarget, body: &Value) -> Result<String, MaxError> {
        self.messages.until_key_ready(&to).await;
        let result: SendMessageResult = self
            .call(
                Method::POST,
                "messages",
                &[to.query()],
                Some(body),
                CALL_TIMEOUT,
            )
            .await?;
        Ok(result.message.body.mid)
    }

    /// `PUT /messages?message_id=` with a whole new body.
    pub async fn edit(&self, to: MaxTarget, mid: &str, body: &Value) -> Result<(), MaxError> {
        // Edits change what the chat shows as much as sends do, so they share the pacing.
        self.messages.until_key_ready(&to).await;
        let result: SimpleResult = self
            .call(
                Method::PUT,
                "messages",
                &[("message_id", mid.to_string())],
                Some(body),
                CALL_TIMEOUT,
            )
            .await?;
        simple(result)
    }

    /// `POST /answers?callback_id=`: stops the client's spinner. `body` is a `CallbackAnswer`.
    pub async fn answer(
        &self,
        chat: MaxTarget,
        callback_id: &str,
        body: &Value,
    ) -> Result<(), MaxError> {
        self.answers.until_key_ready(&chat).await;
        let result: SimpleResult = self
            .call(
                Method::POST,
                "answers",
                &[("callback_id", callback_id.to_string())],
                Some(body),
                CALL_TIMEOUT,
            )
            .await?;
        simple(result)
    }

    /// `POST /subscriptions`: MAX will post updates to `url` (HTTPS, port 443).
    pub async fn subscribe(
        &self,
        url: &Url,
        secret: Option<&SecretString>,
        types: &[&str],
    ) -> Result<(), MaxError> {
        let mut body = json!({"url": url.as_str(), "update_types": types});
        if let Some(secret) = secret {
            body["secret"] = json!(secret.expose_secret());
        }
        let result: SimpleResult = self
            .call(
                Method::POST,
                "subscriptions",
                &[],
                Some(&body),
                CALL_TIMEOUT,
            )
            .await?;
        simple(result)
    }

    /// Drops pacing state of chats idle long enough to be within their limit again, so the
    /// per-chat limiters do not grow with every user ever seen.
    pub fn forget_idle_chats(&self) {
        self.messages.retain_recent();
        self.answers.retain_recent();
    }

    /// Sends a reply (split to MAX's limit) with its buttons under the last part.
    pub async fn send_reply(
        &self,
        to: MaxTarget,
        reply: &Reply,
        lang: Lang,
    ) -> Result<(), MaxError> {
        let parts = split_text(&reply.text);
        let last = parts.len().saturating_sub(1);
        let mut kb = keyboard(reply, lang);
        for (i, part) in parts.into_iter().enumerate() {
            let mut body = json!({"text": part});
            if i == last
                && let Some(kb) = kb.take()
            {
                body["attachments"] = json!([kb]);
            }
            self.send(to, &body).await?;
        }
        Ok(())
    }

    /// Sends a plain text (split to MAX's limit) to a user or chat.
    pub async fn send_text(&self, to: MaxTarget, text: &str) -> Result<(), MaxError> {
        for part in split_text(text) {
            self.send(to, &json!({"text": part})).await?;
        }
        Ok(())
    }
}

/// No client-wide timeout (long polls need longer than other calls); the extra roots of
/// `max.ca_cert` trusted besides the built-in ones. Config validation already read the file, so
/// a failure here is logged rather than fatal.
fn http_client(config: &MaxConfig) -> reqwest::Client {
    let mut builder = http::builder(None);
    if let Some(path) = &config.ca_cert {
        match std::fs::read(path).map(|pem| reqwest::Certificate::from_pem_bundle(&pem)) {
            Ok(Ok(certs)) => {
                for cert in certs {
                    builder = builder.add_root_certificate(cert);
                }
            }
            Ok(Err(e)) => {
                tracing::error!(path = %path.display(), error = %e, "max.ca_cert is not PEM")
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read max.ca_cert")
            }
        }
    }
    builder.build().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot build the MAX HTTP client; using defaults");
        reqwest::Client::new()
    })
}

fn simple(result: SimpleResult) -> Result<(), MaxError> {
    if result.success {
        Ok(())
    } else {
        Err(MaxError::Refused(result.message.unwrap_or_default()))
    }
}

/// Posts alerts to a MAX admin chat or user, for the sync engine's alert sink.
#[derive(Clone)]
pub struct MaxNotifier {
    client: MaxClient,
    to: MaxTarget,
}

impl MaxNotifier {
    pub fn new(config: &MaxConfig, to: MaxTarget) -> MaxNotifier {
        MaxNotifier {
            client: MaxClient::new(config),
            to,
        }
    }

    pub async fn send_text(&self, text: &str) -> Result<(), MaxError> {
        self.client.send_text(self.to, text).await
    }
}

// ---------------------------------------------------------------------------------------------
// Updates → dialog → replies

/// What an update means for the dialog, and where to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub target: MaxTarget,
    pub lang: Option<String>,
    pub event: ChatEvent,
    /// A callback to answer.
    pub callback_id: Option<String>,
    /// The message a button was pressed on, editable in place.
    pub editable: Option<String>,
}

/// Translates an update, or `None` when it is nothing the dialog reacts to.
pub fn incoming(update: &MaxUpdate) -> Option<Incoming> {
    match update {
        MaxUpdate::BotStarted {
            user,
            payload,
            user_locale,
            ..
        } => Some(Incoming {
            target: MaxTarget::User(user.user_id),
            lang: user_locale.clone().or_else(|| user.locale.clone()),
            event: ChatEvent::Start {
                payload: payload
                    .as_deref()
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string),
            },
            callback_id: None,
            editable: None,
        }),
        MaxUpdate::MessageCreated {
            message,
            user_locale,
            ..
        } => {
            let sender = message.sender.as_ref()?;
            // Our own messages (and other bots') come back in group chats; never answer them.
            if sender.is_bot {
                return None;
            }
            let event =
                if let Some(phone) = message.body.attachments.as_deref().and_then(contact_phone) {
                    ChatEvent::Contact { phone }
                } else {
                    let text = message
                        .body
                        .text
                        .as_deref()
                        .filter(|t| !t.trim().is_empty())?;
                    // MAX sends deep links as `bot_started`, but a typed `/start x` means the same.
                    super::telegram::text_event(text)
                };
            Some(Incoming {
                target: target_of(&message.recipient, sender.user_id),
                lang: user_locale.clone().or_else(|| sender.locale.clone()),
                event,
                callback_id: None,
                editable: None,
            })
        }
        MaxUpdate::MessageCallback {
            callback,
            message,
            user_locale,
            ..
        } => {
            let target = message
                .as_ref()
                .map(|m| target_of(&m.recipient, callback.user.user_id))
                .unwrap_or(MaxTarget::User(callback.user.user_id));
            Some(Incoming {
                target,
                lang: user_locale.clone().or_else(|| callback.user.locale.clone()),
                event: ChatEvent::Button(callback.payload.clone().unwrap_or_default()),
                callback_id: Some(callback.callback_id.clone()),
                editable: message.as_ref().map(|m| m.body.mid.clone()),
            })
        }
        MaxUpdate::Other { .. } | MaxUpdate::Unreadable { .. } => None,
    }
}

fn target_of(recipient: &MaxRecipient, user_id: i64) -> MaxTarget {
    match (recipient.chat_type.as_deref(), recipient.chat_id) {
        (Some("chat" | "channel"), Some(chat_id)) => MaxTarget::Chat(chat_id),
        _ => MaxTarget::User(user_id),
    }
}

/// The phone of a shared contact: `vcf_phone` if present, else the first `TEL` of the vCard.
pub fn contact_phone(attachments: &[Value]) -> Option<String> {
    attachments
        .iter()
        .filter(|a| a.get("type").and_then(Value::as_str) == Some("contact"))
        .find_map(|a| {
            let payload = a.get("payload")?;
            payload
                .get("vcf_phone")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .or_else(|| vcard_phone(payload.get("vcf_info")?.as_str()?))
        })
}

/// `TEL;TYPE=cell:+7 916 …` or `item1.TEL;VALUE=uri:tel:+7…` → the number.
pub fn vcard_phone(vcf: &str) -> Option<String> {
    vcf.lines().find_map(|line| {
        let (name, value) = line.trim().split_once(':')?;
        let property = name.split(';').next()?.rsplit('.').next()?;
        if !property.eq_ignore_ascii_case("TEL") {
            return None;
        }
        let value = value.trim();
        let value = value.strip_prefix("tel:").unwrap_or(value).trim();
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// The part of the adapter shared by long polling and webhooks: one update in, replies out.
pub struct MaxBot {
    client: MaxClient,
    handler: Arc<dyn ChatHandler>,
    default_lang: Lang,
    texts: Texts,
}

impl MaxBot {
    pub fn new(client: MaxClient, handler: Arc<dyn ChatHandler>, default_lang: Lang) -> MaxBot {
        MaxBot {
            client,
            handler,
            default_lang,
            texts: Texts::default(),
        }
    }

    /// The business's words, for the bot's own few (the built-in ones otherwise).
    pub fn with_texts(mut self, texts: Texts) -> MaxBot {
        self.texts = texts;
        self
    }

    /// The bot for the webhook route: production pacing, the business locale for its own words.
    pub fn from_config(config: &MaxConfig, conversations: Arc<Conversations>) -> MaxBot {
        let lang = conversations.business().locale;
        let texts = conversations.business().texts.clone();
        MaxBot::new(MaxClient::new(config), conversations, lang).with_texts(texts)
    }

    pub fn client(&self) -> &MaxClient {
        &self.client
    }

    /// A message in the `[support]` admin chat: a reply to a relayed question goes back to the
    /// client; the admins' other talk (and our own posts coming back) is not a dialog.
    async fn admin_message(&self, admin_chat: i64, message: &MaxMessage) {
        if message.sender.as_ref().is_none_or(|s| s.is_bot) {
            return;
        }
        let replied = message
            .link
            .as_ref()
            .filter(|l| l.kind == "reply")
            .and_then(|l| l.message.as_ref());
        let (Some(replied), Some(text)) = (replied, message.body.text.as_deref()) else {
            return;
        };
        let reply = crate::support::AdminReply {
            channel: Channel::Max,
            admin_chat,
            replied_to: &replied.mid,
            message_id: &message.body.mid,
            text,
        };
        match self.handler.relay_answer(reply).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!("a reply in the admin chat to no relayed question"),
            Err(e) => tracing::error!(error = %e, "an admin's answer could not be queued"),
        }
    }

    /// Handles one update to the end (answer, dialog, replies). Never fails: problems are
    /// logged, so one bad update cannot stop the others.
    pub async fn handle_update(&self, update: MaxUpdate) {
        if let MaxUpdate::MessageCreated { message, .. } = &update
            && let Some(admin_chat) = message.recipient.chat_id
            && self.handler.support_chat(Channel::Max) == Some(admin_chat)
        {
            self.admin_message(admin_chat, message).await;
            return;
        }
        let Some(input) = incoming(&update) else {
            match &update {
                MaxUpdate::Unreadable {
                    update_type,
                    reason,
                } => tracing::warn!(update_type, reason, "skipping an unreadable MAX update"),
                other => {
                    tracing::debug!(update_type = other.update_type(), "ignoring a MAX update")
                }
            }
            return;
        };
        let lang = input.lang.as_deref();
        let empty_press = matches!(&input.event, ChatEvent::Button(p) if p.is_empty());
        let chat = input.target.chat_ref();
        let replies = if empty_press {
            Vec::new()
        } else {
            tracing::info!(chat = %chat.chat_id, event = %describe(&input.event), "MAX input");
            match self.handler.handle(&chat, lang, input.event.clone()).await {
                Ok(replies) => replies,
                Err(e) => {
                    tracing::error!(chat = %chat.chat_id, error = %e, "conversation failed; apologising");
                    vec![Reply {
                        text: self
                            .texts
                            .t(Lang::pick(lang, self.default_lang), "max-apology"),
                        ..Reply::default()
                    }]
                }
            }
        };
        let lang = Lang::pick(lang, self.default_lang);
        let mut editable = input.editable.clone();
        let mut rest: &[Reply] = &replies;
        if let Some(callback_id) = &input.callback_id {
            // MAX refuses an empty `CallbackAnswer` (400 "`message` or `notification`
            // required"), so a press is answered with the next screen as `message`, which
            // replaces the pressed message and saves the separate edit, or else with a short
            // `notification`. Until it is answered the client shows a spinner.
            if self
                .answer_with_screen(input.target, callback_id, replies.first(), lang)
                .await
            {
                editable = None;
                rest = &replies[1..];
            } else {
                let ack = json!({"notification": self.texts.t(lang, "max-callback-ack")});
                if let Err(e) = self.client.answer(input.target, callback_id, &ack).await {
                    tracing::warn!(error = %e, "MAX callback answer failed");
                }
            }
        }
        for reply in rest {
            let target_mid = if reply.edit { editable.take() } else { None };
            if let Some(mid) = target_mid
                && self.edit(input.target, &mid, reply, lang).await
            {
                continue;
            }
            self.send(input.target, reply, lang).await;
        }
    }

    /// Answers a press with `reply` as the callback's `message` when it is a one-part edit of
    /// the pressed message; true when MAX took it (the message now shows the reply).
    async fn answer_with_screen(
        &self,
        to: MaxTarget,
        callback_id: &str,
        reply: Option<&Reply>,
        lang: Lang,
    ) -> bool {
        let Some(reply) = reply.filter(|r| r.edit) else {
            return false;
        };
        let mut parts = split_text(&reply.text);
        if parts.len() != 1 {
            return false;
        }
        // `[]`, not null: the old keyboard must go when the new screen has none.
        let attachments: Vec<Value> = keyboard_in(reply, &self.texts, lang).into_iter().collect();
        let body = json!({"message": {"text": parts.remove(0), "attachments": attachments}});
        match self.client.answer(to, callback_id, &body).await {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, "MAX refused the screen as a callback answer");
                false
            }
        }
    }

    /// True when the message now shows the reply.
    async fn edit(&self, to: MaxTarget, mid: &str, reply: &Reply, lang: Lang) -> bool {
        let mut parts = split_text(&reply.text);
        let first = parts.remove(0);
        let kb = if parts.is_empty() {
            keyboard_in(reply, &self.texts, lang)
        } else {
            None
        };
        // `[]`, not null: null would keep the old keyboard under the new text.
        let body = json!({"text": first, "attachments": kb.into_iter().collect::<Vec<_>>()});
        if let Err(e) = self.client.edit(to, mid, &body).await {
            tracing::info!(mid, error = %e, "cannot edit; sending a new message instead");
            return false;
        }
        if !parts.is_empty() {
            self.send_parts(to, parts, keyboard_in(reply, &self.texts, lang))
                .await;
        }
        true
    }

    async fn send(&self, to: MaxTarget, reply: &Reply, lang: Lang) {
        self.send_parts(
            to,
            split_text(&reply.text),
            keyboard_in(reply, &self.texts, lang),
        )
        .await;
    }

    /// Sends the parts in order, the keyboard on the last one. False if any part failed.
    async fn send_parts(&self, to: MaxTarget, parts: Vec<String>, keyboard: Option<Value>) -> bool {
        let last = parts.len().saturating_sub(1);
        let mut keyboard = keyboard;
        for (i, part) in parts.into_iter().enumerate() {
            let mut body = json!({"text": part});
            if i == last
                && let Some(kb) = keyboard.take()
            {
                body["attachments"] = json!([kb]);
            }
            if let Err(e) = self.client.send(to, &body).await {
                if e.is_chat_denied() {
                    tracing::info!(?to, error = %e, "the user is unreachable");
                } else {
                    tracing::warn!(?to, error = %e, "MAX send failed");
                }
                return false;
            }
        }
        true
    }
}

/// The `inline_keyboard` attachment for a reply, within MAX's limits, or `None`.
pub fn keyboard(reply: &Reply, lang: Lang) -> Option<Value> {
    keyboard_in(reply, &Texts::default(), lang)
}

/// [`keyboard`] with the business's words for the contact button.
pub fn keyboard_in(reply: &Reply, texts: &Texts, lang: Lang) -> Option<Value> {
    let mut rows: Vec<Vec<Value>> = Vec::new();
    if reply.request_contact {
        rows.push(vec![json!({
            "type": "request_contact",
            "text": button_text(&texts.t(lang, "max-share-phone")),
        })]);
    }
    for row in &reply.buttons {
        let buttons: Vec<Value> = row
            .iter()
            .filter_map(|b| {
                let text = button_text(&b.label);
                if b.data.starts_with("https://") || b.data.starts_with("http://") {
                    return Some(json!({"type": "link", "text": text, "url": b.data}));
                }
                if b.data.is_empty() || b.data.len() > MAX_CALLBACK_PAYLOAD {
                    tracing::warn!(label = %b.label, "dropping a button whose payload MAX refuses");
                    return None;
                }
                Some(json!({"type": "callback", "text": text, "payload": b.data}))
            })
            .collect();
        let special = buttons.iter().any(|b| b["type"] != "callback");
        let per_row = if special {
            MAX_SPECIAL_BUTTONS_PER_ROW
        } else {
            MAX_BUTTONS_PER_ROW
        };
        rows.extend(buttons.chunks(per_row).map(<[Value]>::to_vec));
    }
    if rows.len() > MAX_ROWS {
        tracing::warn!(rows = rows.len(), "keyboard cut to MAX's 30 rows");
        rows.truncate(MAX_ROWS);
    }
    (!rows.is_empty()).then(|| json!({"type": "inline_keyboard", "payload": {"buttons": rows}}))
}

fn button_text(label: &str) -> String {
    let label = if label.trim().is_empty() {
        "…"
    } else {
        label
    };
    if label.chars().count() <= MAX_BUTTON_TEXT {
        return label.to_string();
    }
    let mut cut: String = label.chars().take(MAX_BUTTON_TEXT - 1).collect();
    cut.push('…');
    cut
}

/// Splits a text into parts MAX accepts (counted in UTF-16 units, the stricter reading of
/// "4000 characters"). An empty text becomes a placeholder.
pub fn split_text(text: &str) -> Vec<String> {
    super::telegram::split_text_at(text, MAX_TEXT_LEN)
}

/// What to log about an input: enough to follow a conversation, nothing personal.
fn describe(event: &ChatEvent) -> String {
    match event {
        ChatEvent::Start { payload: Some(p) } => format!("start payload={p:?}"),
        ChatEvent::Start { payload: None } => "start".to_string(),
        ChatEvent::Text(t) => format!("text ({} chars)", t.chars().count()),
        ChatEvent::Button(data) => format!("button {data:?}"),
        ChatEvent::Contact { phone } => format!("contact {}", mask_phone(phone)),
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/// Checks the secret header and reads a webhook body: one bare `Update` (what MAX posts) or,
/// leniently, an `UpdateList`. The lead's `POST /webhooks/max/{secret}` route feeds the result
/// into [`MaxBot::handle_update`].
pub fn parse_webhook(
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&SecretString>,
) -> Result<Vec<MaxUpdate>, MaxError> {
    if let Some(secret) = secret {
        let given = headers
            .get(SECRET_HEADER)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !constant_time_eq(given, secret.expose_secret().as_bytes()) {
            return Err(MaxError::BadSecret);
        }
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| MaxError::BadWebhook(e.to_string()))?;
    if value.get("updates").is_some() {
        let list: UpdateList =
            serde_json::from_value(value).map_err(|e| MaxError::BadWebhook(e.to_string()))?;
        return Ok(list.updates);
    }
    if value.get("update_type").and_then(Value::as_str).is_none() {
        return Err(MaxError::BadWebhook("no update_type".into()));
    }
    Ok(vec![MaxUpdate::from_value(value)])
}

/// Compares without an early exit, so response timing does not reveal the secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `zapis max subscribe`.
#[derive(Debug, Clone, clap::Args)]
pub struct SubscribeArgs {
    /// Public HTTPS URL MAX should post updates to; `max.webhook_url` when omitted.
    #[arg(long)]
    pub url: Option<Url>,
}

/// Registers our webhook with MAX; returns a line for the operator.
pub async fn subscribe(config: &MaxConfig, args: &SubscribeArgs) -> Result<String, MaxError> {
    let url = args
        .url
        .clone()
        .or_else(|| config.webhook_url.clone())
        .ok_or_else(|| {
            MaxError::Config("no webhook URL: pass --url or set max.webhook_url".into())
        })?;
    if url.scheme() != "https" {
        return Err(MaxError::Config(
            "MAX delivers webhooks over HTTPS only".into(),
        ));
    }
    let client = MaxClient::new(config);
    client
        .subscribe(&url, config.webhook_secret.as_ref(), UPDATE_TYPES)
        .await?;
    Ok(format!(
        "MAX will post {} to {url}{}",
        UPDATE_TYPES.join(", "),
        if config.webhook_secret.is_some() {
            " with the secret header"
        } else {
            " (no secret set: consider max.webhook_secret)"
        }
    ))
}

/// `zapis check`'s line for MAX: reachable, bad credentials or unreachable.
pub async fn status(config: &MaxConfig) -> String {
    let client = MaxClient::with_limits(
        config,
        MaxLimits {
            max_retries: 0,
            ..MaxLimits::default()
        },
    );
    match client.me().await {
        Ok(me) => format!(
            "reachable (@{})",
            me.username
                .or(me.name)
                .unwrap_or_else(|| me.user_id.to_string())
        ),
        Err(MaxError::Unauthorized) => "bad credentials (the token was refused)".into(),
        Err(MaxError::Network { reason, .. }) => {
            format!("unreachable: {} ({reason})", config.api_url)
        }
        Err(e) => format!("unreachable: {e}"),
    }
}

/// What `zapis check` says of the `[support]` admin chat in MAX: the bot must be a member.
pub async fn admin_chat_status(config: &MaxConfig, chat_id: i64) -> Result<String, String> {
    let client = MaxClient::with_limits(
        config,
        MaxLimits {
            max_retries: 0,
            ..MaxLimits::default()
        },
    );
    match client.chat(chat_id).await {
        Ok(chat) => Ok(chat.title.unwrap_or_else(|| chat.chat_id.to_string())),
        Err(MaxError::Api { message, .. }) => Err(message),
        Err(e) => Err(e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Running

/// Runs the MAX bot with the production settings until `shutdown` resolves.
pub async fn run<S>(
    config: &MaxConfig,
    conversations: Arc<Conversations>,
    liveness: Arc<super::liveness::Poller>,
    shutdown: S,
) -> Result<(), MaxError>
where
    S: Future<Output = ()> + Send,
{
    let lang = conversations.business().locale;
    let cursor = (
        conversations.store().clone(),
        conversations.business().id.clone(),
    );
    let texts = conversations.business().texts.clone();
    MaxAdapter::new(config)
        .default_lang(lang)
        .texts(texts)
        .liveness(liveness)
        .cursor_store(cursor.0, &cursor.1)
        .run(conversations, shutdown)
        .await
}

/// The adapter with its tunables; [`run`] is the usual entry point.
pub struct MaxAdapter {
    config: MaxConfig,
    limits: MaxLimits,
    poll_timeout: Duration,
    default_lang: Lang,
    texts: Texts,
    cursor: Option<(Store, String)>,
    liveness: Arc<super::liveness::Poller>,
}

impl MaxAdapter {
    pub fn new(config: &MaxConfig) -> MaxAdapter {
        MaxAdapter {
            config: config.clone(),
            limits: MaxLimits::default(),
            poll_timeout: Duration::from_secs(30),
            default_lang: Lang::default(),
            texts: Texts::default(),
            cursor: None,
            liveness: Arc::default(),
        }
    }

    /// Where the poll loop reports whether it is alive (`/health/ready`).
    pub fn liveness(mut self, poller: Arc<super::liveness::Poller>) -> MaxAdapter {
        self.liveness = poller;
        self
    }

    pub fn default_lang(mut self, lang: Lang) -> MaxAdapter {
        self.default_lang = lang;
        self
    }

    /// The business's words, for the adapter's own few (the built-in ones otherwise).
    pub fn texts(mut self, texts: Texts) -> MaxAdapter {
        self.texts = texts;
        self
    }

    pub fn limits(mut self, limits: MaxLimits) -> MaxAdapter {
        self.limits = limits;
        self
    }

    /// Long-poll timeout (MAX allows up to 90 s).
    pub fn poll_timeout(mut self, timeout: Duration) -> MaxAdapter {
        self.poll_timeout = timeout.min(Duration::from_secs(90));
        self
    }

    /// Keeps the polling marker in `store` under `business_id`; without it the marker lives in
    /// memory and a restart starts wherever MAX thinks we were.
    pub fn cursor_store(mut self, store: Store, business_id: &str) -> MaxAdapter {
        self.cursor = Some((store, business_id.to_string()));
        self
    }

    /// Polls MAX (or, in webhook mode, waits: the HTTP server feeds [`MaxBot::handle_update`])
    /// until `shutdown` resolves. A batch being handled is finished and its marker saved before
    /// returning. An API that cannot be reached is tried again with [`super::StartBackoff`];
    /// fails only when the bot cannot start (bad token, wrong settings).
    pub async fn run<S>(self, handler: Arc<dyn ChatHandler>, shutdown: S) -> Result<(), MaxError>
    where
        S: Future<Output = ()> + Send,
    {
        let liveness = self.liveness.clone();
        let result = self.poll(handler, shutdown).await;
        liveness.stopped();
        result
    }

    async fn poll<S>(self, handler: Arc<dyn ChatHandler>, shutdown: S) -> Result<(), MaxError>
    where
        S: Future<Output = ()> + Send,
    {
        tokio::pin!(shutdown);
        let client = MaxClient::with_limits(&self.config, self.limits);
        // An API that cannot be reached at start is tried again, the rest of the service
        // running meanwhile; a refused token or a wrong setting ends the loop (no retry fixes it).
        let mut backoff = super::StartBackoff::default();
        let me = loop {
            let tried = tokio::select! {
                me = client.me() => me,
                () = &mut shutdown => return Ok(()),
            };
            let error = match tried {
                Ok(me) => break me,
                Err(e @ (MaxError::Unauthorized | MaxError::Config(_))) => return Err(e),
                Err(e) => e,
            };
            if !backoff
                .wait_after_failure("max", "MAX", &error, &self.liveness, &mut shutdown)
                .await
            {
                return Ok(());
            }
        };
        tracing::info!(api_url = %self.config.api_url, bot = me.username.as_deref().unwrap_or("?"), "MAX bot started");
        let bot =
            MaxBot::new(client.clone(), handler, self.default_lang).with_texts(self.texts.clone());
        self.liveness.started(chrono::Utc::now());
        if self.config.mode == MaxMode::Webhook {
            tracing::info!("MAX in webhook mode: updates arrive through the HTTP server");
            shutdown.await;
            return Ok(());
        }
        let mut marker = match &self.cursor {
            Some((store, business)) => store
                .load_cursor(business, CURSOR_CHANNEL)
                .await?
                .and_then(|c| c.parse::<i64>().ok()),
            None => None,
        };
        let mut failures = 0u32;
        loop {
            let polled = tokio::select! {
                r = client.updates(marker, 100, self.poll_timeout, UPDATE_TYPES) => r,
                // Dropping an unanswered poll loses nothing: MAX commits only what a later
                // `marker` passes.
                () = &mut shutdown => break,
            };
            let list = match polled {
                Ok(list) => {
                    failures = 0;
                    self.liveness.polled(chrono::Utc::now());
                    list
                }
                Err(MaxError::Unauthorized) => return Err(MaxError::Unauthorized),
                Err(e) => {
                    failures += 1;
                    let wait = Duration::from_secs(1 << failures.min(5));
                    self.liveness
                        .failed(&e.to_string(), wait, None, chrono::Utc::now());
                    tracing::warn!(error = %e, wait_s = wait.as_secs(), "MAX polling failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => continue,
                        () = &mut shutdown => break,
                    }
                }
            };
            // Not raced against shutdown: a batch is finished before the marker moves past it.
            let handled_any = !list.updates.is_empty();
            for update in list.updates {
                bot.handle_update(update).await;
            }
            if handled_any {
                client.forget_idle_chats();
            }
            if let Some(next) = list.marker
                && Some(next) != marker
            {
                marker = Some(next);
                if let Some((store, business)) = &self.cursor
                    && let Err(e) = store
                        .save_cursor(
                            business,
                            CURSOR_CHANNEL,
                            &next.to_string(),
                            chrono::Utc::now(),
                        )
                        .await
                {
                    // MAX still gets the marker with the next poll; only a restart right now
                    // would see this batch again.
                    tracing::error!(error = %e, "cannot save the MAX marker");
                }
            }
        }
        tracing::info!("MAX bot stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::Button;

    fn reply(buttons: Vec<Vec<(&str, &str)>>) -> Reply {
        Reply {
            text: "x".into(),
            buttons: buttons
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|(l, d)| Button {
                            label: l.into(),
                            data: d.into(),
                        })
                        .collect()
                })
                .collect(),
            ..Reply::default()
        }
    }

    #[test]
    fn vcards_give_their_phone() {
        let vcf =
            "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Анна\r\nTEL;TYPE=cell:+79161234567\r\nEND:VCARD";
        assert_eq!(vcard_phone(vcf).as_deref(), Some("+79161234567"));
        assert_eq!(
            vcard_phone("BEGIN:VCARD\nitem1.TEL;VALUE=uri:tel:+7 912 345-67-89\nEND:VCARD")
                .as_deref(),
            Some("+7 912 345-67-89")
        );
        assert_eq!(vcard_phone("BEGIN:VCARD\nFN:x\nEND:VCARD"), None);
        let att =
            json!([{"type": "contact", "payload": {"vcf_info": vcf, "max_info": {"user_id": 1}}}]);
        assert_eq!(
            contact_phone(att.as_array().unwrap()).as_deref(),
            Some("+79161234567")
        );
        let att = json!([{"type": "image", "payload": {}}]);
        assert_eq!(contact_phone(att.as_array().unwrap()), None);
    }

    #[test]
    fn keyboards_respect_max_limits() {
        let many: Vec<(&str, &str)> = (0..10).map(|_| ("b", "p")).collect();
        let kb = keyboard(&reply(vec![many]), Lang::Ru).unwrap();
        let rows = kb["payload"]["buttons"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].as_array().unwrap().len(), 7);
        let long = "я".repeat(300);
        let kb = keyboard(
            &reply(vec![vec![
                (long.as_str(), "p"),
                ("Сайт", "https://example.com"),
            ]]),
            Lang::Ru,
        )
        .unwrap();
        let b = &kb["payload"]["buttons"][0];
        assert_eq!(b[0]["text"].as_str().unwrap().chars().count(), 128);
        assert_eq!(b[1]["type"], "link");
        let rows: Vec<Vec<(&str, &str)>> = (0..40).map(|_| vec![("b", "p")]).collect();
        let mut r = reply(rows);
        r.request_contact = true;
        let kb = keyboard(&r, Lang::En).unwrap();
        let rows = kb["payload"]["buttons"].as_array().unwrap();
        assert_eq!(rows.len(), MAX_ROWS);
        assert_eq!(rows[0][0]["type"], "request_contact");
        assert!(keyboard(&reply(vec![]), Lang::Ru).is_none());
    }

    #[test]
    fn updates_translate_to_chat_events() {
        let started = MaxUpdate::from_value(
            json!({"update_type":"bot_started","timestamp":1,"chat_id":5,
            "user":{"user_id":7,"name":"A"},"payload":"src_landing","user_locale":"en"}),
        );
        let i = incoming(&started).unwrap();
        assert_eq!(i.target, MaxTarget::User(7));
        assert_eq!(i.lang.as_deref(), Some("en"));
        assert_eq!(
            i.event,
            ChatEvent::Start {
                payload: Some("src_landing".into())
            }
        );
        let typed = MaxUpdate::from_value(json!({"update_type":"message_created","timestamp":1,
            "message":{"recipient":{"chat_id":5,"chat_type":"dialog"},"timestamp":1,
              "body":{"mid":"m1","seq":116327994376978687_i64,"text":"/start ad_vk"},
              "sender":{"user_id":7,"is_bot":false}}}));
        assert_eq!(
            incoming(&typed).unwrap().event,
            ChatEvent::Start {
                payload: Some("ad_vk".into())
            }
        );
        let echo = MaxUpdate::from_value(json!({"update_type":"message_created","timestamp":1,
            "message":{"recipient":{"chat_id":-5,"chat_type":"chat"},"timestamp":1,
              "body":{"mid":"m1","seq":1,"text":"hi"},"sender":{"user_id":9,"is_bot":true}}}));
        assert!(incoming(&echo).is_none());
        let other = MaxUpdate::from_value(json!({"update_type":"bot_stopped","timestamp":1}));
        assert!(incoming(&other).is_none());
        let broken = MaxUpdate::from_value(json!({"update_type":"bot_started","timestamp":1}));
        assert!(matches!(broken, MaxUpdate::Unreadable { .. }));
    }

    #[test]
    fn webhook_secret_is_checked() {
        let secret = SecretString::from("s3cret_value");
        let body =
            br#"{"update_type":"bot_started","timestamp":1,"chat_id":1,"user":{"user_id":1}}"#;
        let mut headers = HeaderMap::new();
        assert!(matches!(
            parse_webhook(&headers, body, Some(&secret)),
            Err(MaxError::BadSecret)
        ));
        headers.insert(SECRET_HEADER, HeaderValue::from_static("s3cret_value"));
        let updates = parse_webhook(&headers, body, Some(&secret)).unwrap();
        assert_eq!(updates.len(), 1);
        assert!(parse_webhook(&headers, b"[1]", Some(&secret)).is_err());
    }

    #[test]
    fn contacts_are_logged_masked() {
        let text = describe(&ChatEvent::Contact {
            phone: "+79161234567".into(),
        });
        assert!(!text.contains("1234567"), "{text}");
    }
}
