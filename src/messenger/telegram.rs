//! Telegram adapter over teloxide 0.17: long polling, messages and inline-button callbacks in,
//! neutral [`Reply`]s out.
//!
//! Rendering choices, because one Telegram message carries only one `reply_markup`:
//! - `buttons` become an inline keyboard on the (last part of the) message.
//! - `request_contact` shows a one-time reply keyboard with a "share my phone" button on the
//!   reply's text. If the same reply also has inline buttons they follow in a second, short
//!   message, so neither is lost.
//! - The contact keyboard is removed (`ReplyKeyboardRemove`) on the next message we send to that
//!   chat that has no inline keyboard of its own. Which chats show one is remembered in memory
//!   only: after a restart a stale keyboard stays until the user uses it (it is one-time).
//! - `edit: true` on a reply to a button press edits the message the button was on; only the
//!   first such reply edits (a second edit would just overwrite the first). Edits that Telegram
//!   refuses (message too old, deleted) fall back to a new message; "message is not modified"
//!   counts as success. `edit` on a reply to anything but a button sends a new message.
//! - Texts longer than Telegram's 4096 characters are split at line or word breaks; the keyboard
//!   goes on the last part.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashSet;
use secrecy::{ExposeSecret, SecretString};
use teloxide::dispatching::{Dispatcher, UpdateFilterExt, UpdateHandler};
use teloxide::error_handlers::ErrorHandler;
use teloxide::prelude::*;
use teloxide::requests::Request;
use teloxide::stop::StopToken;
use teloxide::types::AllowedUpdate;
use teloxide::types::{
    ButtonRequest, InlineKeyboardButton, InlineKeyboardMarkup, KeyboardButton, KeyboardMarkup,
    KeyboardRemove, MessageId, ReplyMarkup,
};
use teloxide::update_listeners::{AsUpdateStream, Polling, UpdateListener};
use teloxide::{ApiError, RequestError};
use tokio::sync::oneshot;
use url::Url;

use super::ChatHandler;
use super::config::TelegramConfig;
use super::liveness::Poller;
use super::telegram_pacing::{TelegramLimits, TelegramPacer};
use crate::conversation::{ChatEvent, Conversations};
use crate::dialog::Reply;
use crate::domain::{Channel, ChatRef};
use crate::i18n::{Lang, Texts};
use crate::normalize::mask_phone;

/// Telegram's limit on a message text, in UTF-16 code units (what its clients count).
pub const MAX_TEXT_LEN: usize = 4096;

/// The bot type every handler sees; pacing is ours ([`TelegramPacer`]), not an adaptor.
pub type TelegramBot = Bot;

type HandlerError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    #[error("Telegram rejected the bot token (check telegram.token)")]
    Unauthorized,
    #[error("Telegram API at {api_url} failed at startup: {reason}")]
    Startup { api_url: String, reason: String },
}

/// Runs the Telegram bot with the production settings until `shutdown` resolves.
pub async fn run<S>(
    config: &TelegramConfig,
    conversations: Arc<Conversations>,
    liveness: Arc<Poller>,
    shutdown: S,
) -> Result<(), TelegramError>
where
    S: Future<Output = ()> + Send,
{
    let lang = conversations.business().locale;
    let texts = conversations.business().texts.clone();
    TelegramAdapter::new(config)
        .default_lang(lang)
        .texts(texts)
        .liveness(liveness)
        .run(conversations, shutdown)
        .await
}

/// The adapter with its tunables; [`run`] is the usual entry point.
pub struct TelegramAdapter {
    token: SecretString,
    api_url: Url,
    limits: TelegramLimits,
    poll_timeout: Duration,
    default_lang: Lang,
    texts: Texts,
    liveness: Arc<Poller>,
}

/// How long after it is sent a failed poll's retry has answered or failed: teloxide's own
/// timeout of one API call (17 s), plus the 10 s it holds a 5xx answer before reporting it.
const API_CALL_TIMEOUT: Duration = Duration::from_secs(17 + 10);

impl TelegramAdapter {
    pub fn new(config: &TelegramConfig) -> TelegramAdapter {
        TelegramAdapter {
            token: config.token.clone(),
            api_url: config.api_url.clone(),
            limits: config.limits,
            poll_timeout: Duration::from_secs(10),
            default_lang: Lang::default(),
            texts: Texts::default(),
            liveness: Arc::default(),
        }
    }

    /// Where the poll loop reports whether it is alive (`/health/ready`).
    pub fn liveness(mut self, poller: Arc<Poller>) -> TelegramAdapter {
        self.liveness = poller;
        self
    }

    /// The business locale, for the adapter's own few words when Telegram tells no language.
    pub fn default_lang(mut self, lang: Lang) -> TelegramAdapter {
        self.default_lang = lang;
        self
    }

    /// The business's words, for the adapter's own few (the built-in ones otherwise).
    pub fn texts(mut self, texts: Texts) -> TelegramAdapter {
        self.texts = texts;
        self
    }

    /// Overrides the configured flood limits (`[telegram.limits]`), e.g. so tests are not
    /// slowed down to real-world pacing.
    pub fn limits(mut self, limits: TelegramLimits) -> TelegramAdapter {
        self.limits = limits;
        self
    }

    /// Long-poll timeout; must stay below teloxide's 17 s HTTP timeout.
    pub fn poll_timeout(mut self, timeout: Duration) -> TelegramAdapter {
        self.poll_timeout = timeout.min(Duration::from_secs(15));
        self
    }

    /// Polls Telegram and answers every chat until `shutdown` resolves, then lets in-flight
    /// updates finish and confirms the last offset so a restart does not see them again.
    /// An API that cannot be reached is tried again with [`super::StartBackoff`]; returns an
    /// error only when Telegram refuses the token.
    pub async fn run<S>(
        self,
        handler: Arc<dyn ChatHandler>,
        shutdown: S,
    ) -> Result<(), TelegramError>
    where
        S: Future<Output = ()> + Send,
    {
        let liveness = self.liveness.clone();
        let result = self.poll(handler, shutdown).await;
        liveness.stopped();
        result
    }

    async fn poll<S>(self, handler: Arc<dyn ChatHandler>, shutdown: S) -> Result<(), TelegramError>
    where
        S: Future<Output = ()> + Send,
    {
        let redactor = Redactor::new(&self.token);
        let startup_error = |e: RequestError| match e {
            RequestError::Api(ApiError::InvalidToken) => TelegramError::Unauthorized,
            other => TelegramError::Startup {
                api_url: self.api_url.to_string(),
                reason: redactor.redact(&other.to_string()),
            },
        };

        let bot = Bot::new(self.token.expose_secret()).set_api_url(self.api_url.clone());
        let pacer = TelegramPacer::shared(&self.api_url, self.token.expose_secret(), self.limits);

        let inner = Arc::new(Inner {
            handler,
            contact_keyboard: DashSet::new(),
            redactor: redactor.clone(),
            default_lang: self.default_lang,
            texts: self.texts.clone(),
            pacer,
            turns: ChatTurns::default(),
        });
        // Every update goes to one concurrent worker; per-chat order is kept by `ChatTurns`.
        // teloxide's default distribution keeps a worker task and a queue per chat ever seen
        // (freed only when a later update finds more idle workers than were ever busy at
        // once), ~60 KiB each: memory that grew with every client who started a dialog.
        let mut dispatcher = Dispatcher::builder(bot.clone(), schema())
            .distribution_function(|_| None::<()>)
            .dependencies(dptree::deps![inner])
            .default_handler(|update| async move {
                tracing::debug!(update_id = update.id.0, "ignoring a Telegram update kind");
            })
            .error_handler(Arc::new(LogError(redactor.clone())))
            .build();
        let stop = dispatcher.shutdown_token();
        tokio::pin!(shutdown);
        // An API that cannot be reached at start is tried again, the rest of the service
        // running meanwhile; only a refused token ends the loop (no retry can fix it).
        let mut backoff = super::StartBackoff::default();
        loop {
            let failed: RequestError = 'attempt: {
                let prepared = tokio::select! {
                    r = prepare(&bot) => r,
                    () = &mut shutdown => return Ok(()),
                };
                if let Err(e) = prepared {
                    break 'attempt e;
                }
                // teloxide reports a failed poll (to the backoff and the error handler) but
                // not an answered empty one: the delay it waits is kept so the error handler
                // can tell when the retry must have answered.
                let retry_in = Arc::new(std::sync::atomic::AtomicU64::new(0));
                let listener = Polling::builder(bot.clone())
                    .timeout(self.poll_timeout)
                    .backoff_strategy({
                        let retry_in = retry_in.clone();
                        move |failures| {
                            let wait = teloxide::backoff::exponential_backoff_strategy(failures);
                            retry_in.store(
                                u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                                std::sync::atomic::Ordering::Relaxed,
                            );
                            wait
                        }
                    })
                    .build();
                let listener = WatchedPolling {
                    inner: listener,
                    liveness: self.liveness.clone(),
                };
                self.liveness.started(chrono::Utc::now());

                tracing::info!(api_url = %self.api_url, "Telegram bot polling");
                let poll_errors = PollError {
                    log: LogError(redactor.clone()),
                    liveness: self.liveness.clone(),
                    retry_in,
                    answer_within: self.poll_timeout + API_CALL_TIMEOUT,
                };
                let dispatch =
                    dispatcher.try_dispatch_with_listener(listener, Arc::new(poll_errors));
                tokio::pin!(dispatch);
                tokio::select! {
                    result = &mut dispatch => match result {
                        Ok(()) => return Ok(()),
                        Err(e) => break 'attempt e,
                    },
                    () = &mut shutdown => {}
                }
                tracing::info!("stopping the Telegram bot");
                // An idle dispatcher has not started polling yet (getMe in flight), so
                // dropping it loses nothing; a running one must be drained so the last offset
                // gets confirmed.
                if stop.shutdown().is_ok() {
                    dispatch.await.map_err(startup_error)?;
                }
                tracing::info!("Telegram bot stopped");
                return Ok(());
            };
            let error = startup_error(failed);
            if matches!(error, TelegramError::Unauthorized) {
                return Err(error);
            }
            if !backoff
                .wait_after_failure(
                    "telegram",
                    "Telegram",
                    &error,
                    &self.liveness,
                    &mut shutdown,
                )
                .await
            {
                return Ok(());
            }
        }
    }
}

/// What the bot checks before it polls. teloxide's own webhook check only logs failures, with
/// the token in the URL; doing it here keeps the same call order and turns a bad token into a
/// clear startup error.
async fn prepare(bot: &Bot) -> Result<(), RequestError> {
    let webhook = bot.get_webhook_info().await?;
    if webhook.url.is_some() {
        tracing::warn!("a Telegram webhook was set; deleting it to use long polling");
        bot.delete_webhook().await?;
    }
    Ok(())
}

fn schema() -> UpdateHandler<HandlerError> {
    // Both branches matter beyond routing: teloxide derives `allowed_updates` from this tree,
    // and without the callback branch Telegram would never send button presses.
    dptree::entry()
        .branch(Update::filter_message().endpoint(on_message))
        .branch(Update::filter_callback_query().endpoint(on_callback))
}

async fn on_message(bot: TelegramBot, msg: Message, inner: Arc<Inner>) -> Result<(), HandlerError> {
    if inner.handler.support_chat(Channel::Telegram) == Some(msg.chat.id.0) {
        inner.admin_message(&msg).await;
        return Ok(());
    }
    // Taken before the first await, so turns follow the order updates arrived in.
    let mut turn = inner.turns.enter(msg.chat.id.0);
    let Some(event) = message_event(&msg) else {
        tracing::debug!(
            chat = msg.chat.id.0,
            "ignoring a message without text or contact"
        );
        return Ok(());
    };
    let lang = msg.from.as_ref().and_then(|u| u.language_code.clone());
    turn.wait().await;
    inner
        .dispatch(&bot, msg.chat.id, lang.as_deref(), event, None)
        .await;
    Ok(())
}

async fn on_callback(
    bot: TelegramBot,
    query: CallbackQuery,
    inner: Arc<Inner>,
) -> Result<(), HandlerError> {
    let mut turn = query
        .message
        .as_ref()
        .map(|m| inner.turns.enter(m.chat().id.0));
    // Answer before the (possibly slow) booking work: the client spins until we do.
    if let Err(e) = bot.answer_callback_query(query.id.clone()).await {
        tracing::warn!(error = %inner.redactor.redact(&e.to_string()), "answerCallbackQuery failed");
    }
    let (Some(message), Some(data)) = (query.message.as_ref(), query.data.clone()) else {
        // Inline-mode callbacks have no chat to talk to; we never send inline-mode messages.
        tracing::debug!("ignoring a callback without a message or data");
        return Ok(());
    };
    let editable = query.regular_message().map(|m| m.id);
    if let Some(turn) = turn.as_mut() {
        turn.wait().await;
    }
    inner
        .dispatch(
            &bot,
            message.chat().id,
            query.from.language_code.as_deref(),
            ChatEvent::Button(data),
            editable,
        )
        .await;
    Ok(())
}

/// What a message says to the dialog: a shared contact or its text; `None` for anything else
/// (stickers, photos, service messages).
pub fn message_event(msg: &Message) -> Option<ChatEvent> {
    if let Some(contact) = msg.contact() {
        Some(ChatEvent::Contact {
            phone: contact.phone_number.clone(),
        })
    } else {
        msg.text().map(text_event)
    }
}

/// `/start`, `/start payload` and `/start@bot payload` open a conversation with the deep-link
/// payload; everything else is plain text for the dialog.
pub fn text_event(text: &str) -> ChatEvent {
    let trimmed = text.trim();
    let (head, rest) = trimmed
        .split_once(char::is_whitespace)
        .map_or((trimmed, ""), |(h, r)| (h, r.trim()));
    let command = head.split_once('@').map_or(head, |(c, _bot)| c);
    if command.eq_ignore_ascii_case("/start") {
        ChatEvent::Start {
            payload: (!rest.is_empty()).then(|| rest.to_string()),
        }
    } else {
        ChatEvent::Text(text.to_string())
    }
}

struct Inner {
    handler: Arc<dyn ChatHandler>,
    /// Chats whose screen currently shows our "share my phone" reply keyboard.
    contact_keyboard: DashSet<i64>,
    redactor: Redactor,
    default_lang: Lang,
    texts: Texts,
    pacer: Arc<TelegramPacer>,
    turns: ChatTurns,
}

impl Inner {
    /// A message in the `[support]` admin chat: a reply to a relayed question goes back to the
    /// client; the admins' other talk is none of the bot's business.
    async fn admin_message(&self, msg: &Message) {
        let (Some(replied), Some(text)) = (msg.reply_to_message(), msg.text()) else {
            return;
        };
        let replied_to = replied.id.0.to_string();
        let message_id = msg.id.0.to_string();
        let reply = crate::support::AdminReply {
            channel: Channel::Telegram,
            admin_chat: msg.chat.id.0,
            replied_to: &replied_to,
            message_id: &message_id,
            text,
        };
        match self.handler.relay_answer(reply).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!("a reply in the admin chat to no relayed question"),
            Err(e) => tracing::error!(error = %e, "an admin's answer could not be queued"),
        }
    }

    async fn dispatch(
        &self,
        bot: &TelegramBot,
        chat_id: ChatId,
        lang: Option<&str>,
        event: ChatEvent,
        editable: Option<MessageId>,
    ) {
        let chat = ChatRef::new(Channel::Telegram, chat_id.0.to_string());
        tracing::info!(chat = %chat.chat_id, event = %describe(&event), "Telegram input");
        let replies = match self.handler.handle(&chat, lang, event).await {
            Ok(replies) => replies,
            Err(e) => {
                tracing::error!(chat = %chat.chat_id, error = %e, "conversation failed; apologising");
                vec![Reply {
                    text: self
                        .texts
                        .t(Lang::pick(lang, self.default_lang), "tg-apology"),
                    ..Reply::default()
                }]
            }
        };
        let mut editable = editable;
        for reply in &replies {
            let target = if reply.edit && !reply.request_contact {
                editable.take()
            } else {
                None
            };
            if let Some(message_id) = target
                && self.edit(bot, chat_id, message_id, reply).await
            {
                continue;
            }
            self.send(bot, chat_id, lang, reply).await;
        }
    }

    /// True when the message now shows the reply (edited, or already identical).
    async fn edit(
        &self,
        bot: &TelegramBot,
        chat_id: ChatId,
        message_id: MessageId,
        reply: &Reply,
    ) -> bool {
        let mut parts = split_text(&reply.text);
        let first = parts.remove(0);
        let mut request = bot.edit_message_text(chat_id, message_id, first);
        if parts.is_empty()
            && let Some(kb) = inline_keyboard(reply)
        {
            request = request.reply_markup(kb);
        }
        match self.pacer.send(chat_id.0, || request.clone().send()).await {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => {}
            Err(e) => {
                tracing::info!(
                    chat = chat_id.0,
                    message_id = message_id.0,
                    error = %self.redactor.redact(&e.to_string()),
                    "cannot edit; sending a new message instead"
                );
                return false;
            }
        }
        if !parts.is_empty() {
            let markup = inline_keyboard(reply).map(ReplyMarkup::InlineKeyboard);
            self.send_parts(bot, chat_id, parts, markup).await;
        }
        true
    }

    async fn send(&self, bot: &TelegramBot, chat_id: ChatId, lang: Option<&str>, reply: &Reply) {
        let inline = inline_keyboard(reply);
        if reply.request_contact {
            let keyboard = KeyboardMarkup::new([[KeyboardButton::new(
                self.texts
                    .t(Lang::pick(lang, self.default_lang), "tg-share-phone"),
            )
            .request(ButtonRequest::Contact)]])
            .one_time_keyboard()
            .resize_keyboard();
            if self
                .send_parts(
                    bot,
                    chat_id,
                    split_text(&reply.text),
                    Some(ReplyMarkup::Keyboard(keyboard)),
                )
                .await
            {
                self.contact_keyboard.insert(chat_id.0);
            }
            if let Some(kb) = inline {
                let text = vec![
                    self.texts
                        .t(Lang::pick(lang, self.default_lang), "tg-or-choose"),
                ];
                self.send_parts(bot, chat_id, text, Some(ReplyMarkup::InlineKeyboard(kb)))
                    .await;
            }
            return;
        }
        let (markup, removes_keyboard) = match inline {
            Some(kb) => (Some(ReplyMarkup::InlineKeyboard(kb)), false),
            None if self.contact_keyboard.remove(&chat_id.0).is_some() => (
                Some(ReplyMarkup::KeyboardRemove(KeyboardRemove::new())),
                true,
            ),
            None => (None, false),
        };
        let sent = self
            .send_parts(bot, chat_id, split_text(&reply.text), markup)
            .await;
        if removes_keyboard && !sent {
            self.contact_keyboard.insert(chat_id.0);
        }
    }

    /// Sends the parts in order, the markup on the last one. False if any part failed.
    async fn send_parts(
        &self,
        bot: &TelegramBot,
        chat_id: ChatId,
        parts: Vec<String>,
        markup: Option<ReplyMarkup>,
    ) -> bool {
        let last = parts.len().saturating_sub(1);
        let mut markup = markup;
        for (i, part) in parts.into_iter().enumerate() {
            let mut request = bot.send_message(chat_id, part);
            if i == last
                && let Some(markup) = markup.take()
            {
                request = request.reply_markup(markup);
            }
            if let Err(e) = self.pacer.send(chat_id.0, || request.clone().send()).await {
                let error = self.redactor.redact(&e.to_string());
                match e {
                    RequestError::Api(ApiError::BotBlocked | ApiError::UserDeactivated) => {
                        tracing::info!(chat = chat_id.0, %error, "the user is unreachable");
                    }
                    _ => tracing::warn!(chat = chat_id.0, %error, "sendMessage failed"),
                }
                return false;
            }
        }
        true
    }
}

/// Per-chat turns: updates of one chat are handled one at a time, in the order they arrived,
/// while different chats run concurrently. A chat holds state only while it has an update in
/// flight, so idle chats cost nothing.
#[derive(Default)]
pub(crate) struct ChatTurns {
    waiting: Mutex<HashMap<i64, VecDeque<oneshot::Sender<()>>>>,
}

/// A place in a chat's line; dropping it passes the turn on.
pub(crate) struct Turn<'a> {
    turns: &'a ChatTurns,
    chat: i64,
    wait: Option<oneshot::Receiver<()>>,
}

impl ChatTurns {
    /// Joins the chat's line without waiting (call before the first await of a handler).
    pub(crate) fn enter(&self, chat: i64) -> Turn<'_> {
        let mut waiting = self.lock();
        let wait = match waiting.get_mut(&chat) {
            Some(line) => {
                let (tx, rx) = oneshot::channel();
                line.push_back(tx);
                Some(rx)
            }
            None => {
                waiting.insert(chat, VecDeque::new());
                None
            }
        };
        Turn {
            turns: self,
            chat,
            wait,
        }
    }

    /// Chats with an update in flight.
    #[cfg(test)]
    pub(crate) fn busy_chats(&self) -> usize {
        self.lock().len()
    }

    fn pass_on(&self, chat: i64) {
        let mut waiting = self.lock();
        if let Some(line) = waiting.get_mut(&chat) {
            while let Some(next) = line.pop_front() {
                // A waiter that went away (its handler was dropped) is skipped.
                if next.send(()).is_ok() {
                    return;
                }
            }
            waiting.remove(&chat);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, VecDeque<oneshot::Sender<()>>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Turn<'_> {
    /// Resolves when every earlier update of this chat is done.
    pub(crate) async fn wait(&mut self) {
        if let Some(rx) = self.wait.as_mut() {
            // The sender is dropped only by `pass_on` after a failed send, never while queued.
            let _ = rx.await;
            self.wait = None;
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let holds = match self.wait.as_mut() {
            None => true,
            Some(rx) => {
                // Dropped while waiting: refuse the turn, unless it was given just now.
                rx.close();
                rx.try_recv().is_ok()
            }
        };
        if holds {
            self.turns.pass_on(self.chat);
        }
    }
}

pub(crate) fn inline_keyboard(reply: &Reply) -> Option<InlineKeyboardMarkup> {
    let rows: Vec<Vec<InlineKeyboardButton>> = reply
        .buttons
        .iter()
        .filter(|row| !row.is_empty())
        .map(|row| {
            row.iter()
                .map(|b| InlineKeyboardButton::callback(b.label.clone(), b.data.clone()))
                .collect()
        })
        .collect();
    (!rows.is_empty()).then(|| InlineKeyboardMarkup::new(rows))
}

/// Splits a text into parts Telegram accepts, preferring line breaks, then spaces. An empty
/// text becomes a placeholder because Telegram refuses empty messages.
pub fn split_text(text: &str) -> Vec<String> {
    split_text_at(text, MAX_TEXT_LEN)
}

pub(crate) fn split_text_at(text: &str, max_utf16: usize) -> Vec<String> {
    if text.trim().is_empty() {
        return vec!["…".to_string()];
    }
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.encode_utf16().count() > max_utf16 {
        // Byte index of the first char that no longer fits.
        let mut units = 0;
        let mut hard = rest.len();
        for (i, ch) in rest.char_indices() {
            units += ch.len_utf16();
            if units > max_utf16 {
                hard = i;
                break;
            }
        }
        let window = &rest[..hard];
        let cut = window
            .rfind('\n')
            .or_else(|| window.rfind(' '))
            .filter(|&i| i > 0)
            .unwrap_or(hard);
        let (head, tail) = rest.split_at(cut);
        if !head.trim().is_empty() {
            parts.push(head.to_string());
        }
        rest = tail.strip_prefix(['\n', ' ']).unwrap_or(tail);
    }
    if !rest.trim().is_empty() {
        parts.push(rest.to_string());
    }
    parts
}

/// What to log about an input: enough to follow a conversation, nothing personal.
fn describe(event: &ChatEvent) -> String {
    match event {
        ChatEvent::Start { payload: Some(p) } => format!("start payload={p:?}"),
        ChatEvent::Start { payload: None } => "start".to_string(),
        // Users type phones and names here, so only the length is logged.
        ChatEvent::Text(t) => format!("text ({} chars)", t.chars().count()),
        ChatEvent::Button(data) => format!("button {data:?}"),
        ChatEvent::Contact { phone } => format!("contact {}", mask_phone(phone)),
    }
}

/// Network errors from reqwest print the request URL, and Telegram puts the token in it.
#[derive(Clone)]
struct Redactor {
    token: Arc<SecretString>,
}

impl Redactor {
    fn new(token: &SecretString) -> Redactor {
        Redactor {
            token: Arc::new(token.clone()),
        }
    }

    fn redact(&self, text: &str) -> String {
        let token = self.token.expose_secret();
        if token.is_empty() {
            return text.to_string();
        }
        text.replace(token, "<token>")
    }
}

struct LogError(Redactor);

impl<E> ErrorHandler<E> for LogError
where
    E: std::fmt::Debug + Send + 'static,
{
    fn handle_error(
        self: Arc<Self>,
        error: E,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        let text = self.0.redact(&format!("{error:?}"));
        Box::pin(async move {
            tracing::warn!(error = %text, "Telegram polling or handler error");
        })
    }
}

/// teloxide's polling, with each update it yields counted as an answered poll. Counted here,
/// in the stream's order, rather than in the update's handler: a handler runs on its own task
/// and could otherwise mark the poller up after a later poll had failed.
struct WatchedPolling {
    inner: Polling<Bot>,
    liveness: Arc<Poller>,
}

impl UpdateListener for WatchedPolling {
    type Err = RequestError;

    fn stop_token(&mut self) -> StopToken {
        self.inner.stop_token()
    }

    fn hint_allowed_updates(&mut self, hint: &mut dyn Iterator<Item = AllowedUpdate>) {
        self.inner.hint_allowed_updates(hint);
    }
}

impl<'a> AsUpdateStream<'a> for WatchedPolling {
    type StreamErr = RequestError;
    type Stream = futures::stream::BoxStream<'a, Result<Update, RequestError>>;

    fn as_stream(&'a mut self) -> Self::Stream {
        use futures::StreamExt;
        let liveness = self.liveness.clone();
        self.inner
            .as_stream()
            .inspect(move |item| {
                if item.is_ok() {
                    liveness.polled(chrono::Utc::now());
                }
            })
            .boxed()
    }
}

/// A failed poll: logged like any error, and the poller marked down until its retry answers.
struct PollError {
    log: LogError,
    liveness: Arc<Poller>,
    /// The backoff teloxide chose for this failure, in milliseconds.
    retry_in: Arc<std::sync::atomic::AtomicU64>,
    answer_within: Duration,
}

impl ErrorHandler<RequestError> for PollError {
    fn handle_error(
        self: Arc<Self>,
        error: RequestError,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        let retry_in = match &error {
            RequestError::RetryAfter(wait) => wait.duration(),
            _ => Duration::from_millis(self.retry_in.load(std::sync::atomic::Ordering::Relaxed)),
        };
        let text = self.log.0.redact(&error.to_string());
        self.liveness.failed(
            &text,
            retry_in,
            Some(self.answer_within),
            chrono::Utc::now(),
        );
        Arc::new(LogError(self.log.0.clone())).handle_error(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_commands_carry_the_deep_link_payload() {
        assert_eq!(
            text_event("/start src_landing"),
            ChatEvent::Start {
                payload: Some("src_landing".into())
            }
        );
        assert_eq!(text_event("/start"), ChatEvent::Start { payload: None });
        assert_eq!(text_event("/start   "), ChatEvent::Start { payload: None });
        assert_eq!(
            text_event("/start@zapis_bot ad_vk"),
            ChatEvent::Start {
                payload: Some("ad_vk".into())
            }
        );
        assert_eq!(text_event("/started"), ChatEvent::Text("/started".into()));
        assert_eq!(text_event("привет"), ChatEvent::Text("привет".into()));
    }

    #[test]
    fn long_texts_split_at_line_breaks_within_the_limit() {
        let line = "а".repeat(30);
        let text = [line.as_str(); 10].join("\n");
        let parts = split_text_at(&text, 100);
        assert!(parts.iter().all(|p| p.encode_utf16().count() <= 100));
        assert_eq!(parts.join("\n"), text);
        assert_eq!(parts[0], [line.as_str(); 3].join("\n"));
    }

    #[test]
    fn unbreakable_texts_are_cut_hard_and_emoji_count_as_two_units() {
        let text = "😀".repeat(5);
        let parts = split_text_at(&text, 4);
        assert_eq!(parts, vec!["😀😀", "😀😀", "😀"]);
        assert_eq!(split_text(""), vec!["…"]);
        assert_eq!(split_text("short"), vec!["short"]);
    }

    #[test]
    fn the_token_never_reaches_the_logs() {
        let r = Redactor::new(&SecretString::from("123:ABC"));
        assert_eq!(
            r.redact("error sending request for url (http://x/bot123:ABC/GetMe)"),
            "error sending request for url (http://x/bot<token>/GetMe)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_chat_takes_turns_in_arrival_order_while_other_chats_run_alongside() {
        let turns = ChatTurns::default();
        let log = std::sync::Mutex::new(Vec::new());
        async fn run(mut turn: Turn<'_>, id: &str, ms: u64, log: &std::sync::Mutex<Vec<String>>) {
            turn.wait().await;
            log.lock().unwrap().push(format!("{id}+"));
            tokio::time::sleep(Duration::from_millis(ms)).await;
            log.lock().unwrap().push(format!("{id}-"));
        }
        let first = turns.enter(1);
        let second = turns.enter(1);
        let other = turns.enter(2);
        let third = turns.enter(1);
        assert_eq!(turns.busy_chats(), 2);
        // Polled in reverse, so only the turns can put them in order.
        tokio::join!(
            run(third, "c", 1, &log),
            run(other, "x", 5, &log),
            run(second, "b", 10, &log),
            run(first, "a", 20, &log),
        );
        let log = log.into_inner().unwrap();
        assert_eq!(log, ["x+", "a+", "x-", "a-", "b+", "b-", "c+", "c-"]);
        assert_eq!(turns.busy_chats(), 0, "an idle chat leaves nothing behind");
    }

    #[tokio::test]
    async fn a_turn_dropped_while_waiting_is_skipped() {
        let turns = ChatTurns::default();
        let first = turns.enter(7);
        let gone = turns.enter(7);
        let mut last = turns.enter(7);
        drop(gone);
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), last.wait())
            .await
            .expect("the turn passes over a waiter that went away");
        drop(last);
        assert_eq!(turns.busy_chats(), 0);
    }

    #[test]
    fn contacts_are_logged_masked() {
        let text = describe(&ChatEvent::Contact {
            phone: "+79161234567".into(),
        });
        assert!(!text.contains("1234567"), "{text}");
        assert!(!describe(&ChatEvent::Text("my phone 89161234567".into())).contains("916"));
    }
}
