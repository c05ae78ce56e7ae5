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
//!
//! The folder: this file holds the limits and the long-polling runner; `config.rs` `[max]`;
//! `client.rs` the paced calls and the error type; `wire.rs` MAX's shapes; `bot.rs` updates
//! into the dialog and replies back; `webhook.rs` webhook mode and its inbox handler.

use crate::domain::BusinessId;
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

use super::{ChatHandler, describe};
use crate::connectors::failure::{self, Quirks};
use crate::connectors::{Failure, Kind, http};
use crate::conversation::{ChatEvent, Conversations};
use crate::dialog::Reply;
use crate::domain::{Channel, ChatRef};
use crate::i18n::{Lang, Texts};
use crate::store::{Store, StoreError};

mod bot;
mod client;
pub(super) mod config;
#[cfg(test)]
mod tests;
mod webhook;
mod wire;

pub use bot::*;
pub use client::*;
use config::{MaxConfig, MaxMode};
pub use webhook::*;
pub use wire::*;

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
    cursor: Option<(Store, BusinessId)>,
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
    pub fn cursor_store(mut self, store: Store, business_id: &BusinessId) -> MaxAdapter {
        self.cursor = Some((store, business_id.clone()));
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
        super::reporting_stop(&liveness, self.poll(handler, shutdown)).await
    }

    async fn poll<S>(self, handler: Arc<dyn ChatHandler>, shutdown: S) -> Result<(), MaxError>
    where
        S: Future<Output = ()> + Send,
    {
        tokio::pin!(shutdown);
        let client = MaxClient::with_limits(&self.config, self.limits);
        // A refused token or a wrong setting ends the loop (no retry fixes it).
        let me = super::start_with_retries!(
            "max",
            "MAX",
            &self.liveness,
            &mut shutdown,
            gives_up: MaxError::Unauthorized | MaxError::Config(_),
            tokio::select! {
                me = client.me() => me,
                () = &mut shutdown => return Ok(()),
            },
        );
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
