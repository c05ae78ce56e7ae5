//! Webhook mode: Telegram posts each update to the HTTP server (`/webhooks/telegram/<secret>`,
//! or `/webhooks/<id>/telegram/<secret>` in a deployment of several businesses), which checks
//! `X-Telegram-Bot-Api-Secret-Token` before it reads the body and stores the update in the
//! inbox; the inbox job runs it through the same handlers as a polled update. No process polls,
//! so fifty bots need no fifty pollers, and any instance behind the proxy takes the delivery.

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use teloxide::prelude::*;
use teloxide::types::{AllowedUpdate, Update};

use super::bot::{Inner, schema};
use super::{TelegramAdapter, TelegramError};
use crate::messenger::ChatHandler;
use crate::sync::inbox::{InboxHandler, InboxMessage};
use crate::sync::{Delivered, DeliveryError, JobContext};

/// The header Telegram sends `secret_token` in with every update.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The inbox key of a delivery: Telegram's `update_id`, which a re-sent update repeats.
pub fn delivery_key(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(format!("update:{}", v.get("update_id")?.as_i64()?))
}

impl TelegramAdapter {
    /// Registers the webhook (`setWebhook` with the secret and the update kinds the handlers
    /// read), then waits for `shutdown`. The webhook stays set when the process stops:
    /// Telegram keeps the updates and retries them until an instance answers.
    pub(super) async fn serve_webhook<S>(self, shutdown: S) -> Result<(), TelegramError>
    where
        S: std::future::Future<Output = ()> + Send,
    {
        let (Some(url), Some(secret)) = (self.webhook_url.clone(), self.webhook_secret.clone())
        else {
            // The config check refuses webhook mode without both.
            return Err(TelegramError::Startup {
                api_url: self.api_url.to_string(),
                reason: "webhook mode without telegram.webhook_url and webhook_secret".into(),
            });
        };
        let redactor = super::polling::Redactor::new(&self.token);
        let bot = Bot::new(self.token.expose_secret()).set_api_url(self.api_url.clone());
        tokio::pin!(shutdown);
        crate::messenger::start_with_retries!(
            "telegram",
            "Telegram",
            &self.liveness,
            &mut shutdown,
            gives_up: TelegramError::Unauthorized,
            {
                let set = bot
                    .set_webhook(url.clone())
                    .secret_token(secret.expose_secret().to_string())
                    .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
                let result = tokio::select! {
                    r = set.send() => r,
                    () = &mut shutdown => return Ok(()),
                };
                match result {
                    Ok(_) => Ok(()),
                    Err(teloxide::RequestError::Api(teloxide::ApiError::InvalidToken)) => {
                        Err(TelegramError::Unauthorized)
                    }
                    Err(e) => Err(TelegramError::Startup {
                        api_url: self.api_url.to_string(),
                        reason: redactor.redact(&e.to_string()),
                    }),
                }
            },
        );
        let now = chrono::Utc::now();
        self.liveness.started(now);
        self.liveness.polled(now);
        tracing::info!("Telegram webhook set; updates arrive over HTTP");
        shutdown.await;
        Ok(())
    }

    /// The inbox handler for this bot's webhook deliveries.
    pub fn inbox(self, handler: Arc<dyn ChatHandler>) -> TelegramInbox {
        let bot = Bot::new(self.token.expose_secret()).set_api_url(self.api_url.clone());
        TelegramInbox {
            inner: self.inner(handler),
            bot,
        }
    }
}

/// Runs a stored webhook delivery through the bot's handlers.
pub struct TelegramInbox {
    inner: Arc<Inner>,
    bot: Bot,
}

#[async_trait]
impl InboxHandler for TelegramInbox {
    async fn process(
        &self,
        message: &InboxMessage,
        _ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let update: Update = serde_json::from_str(&message.body)
            .map_err(|e| DeliveryError::permanent(format!("unreadable Telegram update: {e}")))?;
        let deps = dptree::deps![update, self.bot.clone(), self.inner.clone()];
        match schema().dispatch(deps).await {
            std::ops::ControlFlow::Break(Ok(())) => Ok(Delivered::done()),
            std::ops::ControlFlow::Break(Err(e)) => Err(DeliveryError::transient(
                self.inner.redactor.redact(&e.to_string()),
            )),
            // A kind of update the bot does not read (it asked only for messages and presses).
            std::ops::ControlFlow::Continue(_) => Ok(Delivered::done()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_keyed_by_its_update_id() {
        assert_eq!(
            delivery_key(r#"{"update_id": 42, "message": {}}"#).as_deref(),
            Some("update:42")
        );
        assert_eq!(delivery_key(r#"{"message": {}}"#), None);
        assert_eq!(delivery_key("not json"), None);
    }
}
