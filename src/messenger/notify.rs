//! Delivering queued notices to clients' chats: the sync engine's handlers for the `telegram`
//! and `max` systems.

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use teloxide::RequestError;
use teloxide::prelude::*;
use teloxide::requests::Request;

use super::config::{MaxConfig, TelegramConfig};
use crate::lifecycle::effects::{NotifyJob, Operation};
use crate::messenger::max::{MaxClient, MaxTarget};
use crate::messenger::telegram::pacing::TelegramPacer;
use crate::sync::alerts::AlertError;
use crate::sync::{Alert, AlertSink, Delivered, DeliveryError, Job, JobContext, JobHandler};

fn payload(job: &Job) -> Result<NotifyJob, DeliveryError> {
    if Operation::of(job) != Some(Operation::Notify) {
        return Err(DeliveryError::permanent(format!(
            "no operation {:?}",
            job.operation
        )));
    }
    serde_json::from_value(job.payload.clone())
        .map_err(|e| DeliveryError::permanent(format!("unreadable notice: {e}")))
}

pub struct TelegramNotifier {
    bot: Bot,
    /// Shared with the bot's dialog adapter: notices and replies count against one set of
    /// flood limits.
    pacer: Arc<TelegramPacer>,
}

impl TelegramNotifier {
    pub fn new(config: &TelegramConfig) -> TelegramNotifier {
        let bot = Bot::new(config.token.expose_secret()).set_api_url(config.api_url.clone());
        TelegramNotifier {
            bot,
            pacer: TelegramPacer::shared(
                &config.api_url,
                config.token.expose_secret(),
                config.limits,
            ),
        }
    }
}

#[async_trait]
impl JobHandler for TelegramNotifier {
    async fn handle(&self, job: &Job, _ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        let notice = payload(job)?;
        let chat: i64 = notice
            .chat_id
            .parse()
            .map_err(|_| DeliveryError::permanent(format!("bad chat id {:?}", notice.chat_id)))?;
        let mut request = self
            .bot
            .send_message(ChatId(chat), notice.reply.text.clone());
        if let Some(kb) = super::telegram::inline_keyboard(&notice.reply) {
            request = request.reply_markup(kb);
        }
        // A 429 is not waited out here (a worker would sit idle): the queue retries after it.
        self.pacer.ready(chat).await;
        match request.await {
            Ok(_) => Ok(Delivered::done()),
            Err(RequestError::RetryAfter(s)) => {
                self.pacer.freeze(chat, s.duration());
                Err(DeliveryError::Transient {
                    message: "Telegram flood control".into(),
                    retry_after: Some(s.duration()),
                    http_status: Some(429),
                })
            }
            Err(RequestError::Network(_) | RequestError::Io(_)) => {
                Err(DeliveryError::transient("Telegram is unreachable"))
            }
            // The description never carries the token; the URL (in network errors) would.
            Err(RequestError::Api(e)) => {
                Err(DeliveryError::permanent(format!("Telegram refused: {e}")))
            }
            Err(_) => Err(DeliveryError::transient("Telegram answered unexpectedly")),
        }
    }
}

pub struct MaxChatNotifier {
    client: MaxClient,
}

impl MaxChatNotifier {
    pub fn new(config: &MaxConfig) -> MaxChatNotifier {
        MaxChatNotifier {
            client: MaxClient::new(config),
        }
    }
}

#[async_trait]
impl JobHandler for MaxChatNotifier {
    async fn handle(&self, job: &Job, _ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        let notice = payload(job)?;
        let target = match notice.chat_id.strip_prefix("chat") {
            Some(id) => id.parse().map(MaxTarget::Chat),
            None => notice.chat_id.parse().map(MaxTarget::User),
        }
        .map_err(|_| DeliveryError::permanent(format!("bad chat id {:?}", notice.chat_id)))?;
        // The label of a contact button is the only text the keyboard adds, and notices never
        // ask for a contact, so the language does not matter here.
        self.client
            .send_reply(target, &notice.reply, crate::i18n::Lang::Ru)
            .await
            .map_err(|e| DeliveryError::from(e.failure()))?;
        Ok(Delivered::done())
    }
}

/// An admin chat in Telegram: outage alerts, and clients' questions (`[support]`).
pub struct TelegramAlertSink {
    bot: Bot,
    chat: ChatId,
    pacer: Arc<TelegramPacer>,
}

impl TelegramAlertSink {
    pub fn new(config: &TelegramConfig, chat_id: i64) -> TelegramAlertSink {
        let bot = Bot::new(config.token.expose_secret()).set_api_url(config.api_url.clone());
        TelegramAlertSink {
            bot,
            chat: ChatId(chat_id),
            pacer: TelegramPacer::shared(
                &config.api_url,
                config.token.expose_secret(),
                config.limits,
            ),
        }
    }
}

impl TelegramAlertSink {
    /// Posts `text` in the admin chat; the id of the message posted.
    async fn post_text(&self, text: &str) -> Result<i32, RequestError> {
        let request = self.bot.send_message(self.chat, text);
        self.pacer
            .send(self.chat.0, || request.send_ref())
            .await
            .map(|m| m.id.0)
    }
}

/// What a failed send to an admin chat says, without the URL (and with it the token) that
/// network errors carry.
fn telegram_failure(e: &RequestError) -> String {
    match e {
        RequestError::Api(api) => format!("Telegram refused: {api}"),
        _ => "Telegram is unreachable".to_string(),
    }
}

#[async_trait]
impl AlertSink for TelegramAlertSink {
    async fn send(&self, alert: &Alert) -> Result<(), AlertError> {
        self.post_text(&alert.text())
            .await
            .map(|_| ())
            .map_err(|e| AlertError::Http(telegram_failure(&e)))
    }
}

#[async_trait]
impl crate::support::AdminChat for TelegramAlertSink {
    fn messenger(&self) -> &'static str {
        "telegram"
    }

    fn chat_id(&self) -> String {
        self.chat.0.to_string()
    }

    async fn post(&self, text: &str) -> Result<String, DeliveryError> {
        match self.post_text(text).await {
            Ok(id) => Ok(id.to_string()),
            // A chat the bot is not in, or was removed from, needs a person, not retries.
            Err(e @ RequestError::Api(_)) => Err(DeliveryError::permanent(telegram_failure(&e))),
            Err(e) => Err(DeliveryError::transient(telegram_failure(&e))),
        }
    }
}

/// An admin chat in MAX: outage alerts, and clients' questions (`[support]`).
pub struct MaxAlertSink {
    client: MaxClient,
    to: MaxTarget,
}

impl MaxAlertSink {
    pub fn new(config: &MaxConfig, chat_id: i64) -> MaxAlertSink {
        MaxAlertSink {
            client: MaxClient::new(config),
            to: MaxTarget::Chat(chat_id),
        }
    }
}

#[async_trait]
impl AlertSink for MaxAlertSink {
    async fn send(&self, alert: &Alert) -> Result<(), AlertError> {
        self.client
            .send_text(self.to, &alert.text())
            .await
            .map_err(|e| AlertError::Http(format!("MAX: {e}")))
    }
}

#[async_trait]
impl crate::support::AdminChat for MaxAlertSink {
    fn messenger(&self) -> &'static str {
        "max"
    }

    fn chat_id(&self) -> String {
        match self.to {
            MaxTarget::Chat(id) | MaxTarget::User(id) => id.to_string(),
        }
    }

    async fn post(&self, text: &str) -> Result<String, DeliveryError> {
        // A relayed question is kept well under MAX's message limit, so it is one message
        // with one id to reply to.
        self.client
            .send(self.to, &serde_json::json!({ "text": text }))
            .await
            .map_err(|e| DeliveryError::transient(format!("MAX: {e}")))
    }
}
