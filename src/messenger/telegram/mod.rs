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
//!
//! The folder: this file holds the adapter and its poll loop; `bot.rs` updates into the dialog
//! and replies back (keyboards, long texts split); `turns.rs` the per-chat order of updates;
//! `polling.rs` what the poll loop adds to teloxide's (the webhook check, token-redacting error
//! handlers, liveness); `webhook.rs` webhook mode (`setWebhook`, the inbox handler of the
//! updates Telegram posts); `pacing.rs` the flood limits; `unread.rs` sends whose answer is
//! not parsed; `config.rs` `[telegram]`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashSet;
use secrecy::{ExposeSecret, SecretString};
use teloxide::dispatching::Dispatcher;
use teloxide::prelude::*;
use teloxide::update_listeners::Polling;
use teloxide::{ApiError, RequestError};
use url::Url;

use super::ChatHandler;
use super::liveness::Poller;
use crate::conversation::Conversations;
use crate::i18n::{Lang, Texts};

mod bot;
pub mod config;
pub mod pacing;
mod polling;
#[cfg(test)]
mod tests;
mod turns;
mod unread;
pub mod webhook;

use bot::{Inner, schema};
use config::TelegramConfig;
use pacing::{TelegramLimits, TelegramPacer};
use polling::{LogError, PollError, Redactor, WatchedPolling, prepare};

pub(crate) use bot::{inline_keyboard, split_text_at};
pub use bot::{message_event, split_text, text_event};

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
    mode: config::TelegramMode,
    webhook_url: Option<Url>,
    webhook_secret: Option<SecretString>,
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
            mode: config.mode,
            webhook_url: config.webhook_url.clone(),
            webhook_secret: config.webhook_secret.clone(),
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
        if self.mode == config::TelegramMode::Webhook {
            return super::reporting_stop(&liveness, self.serve_webhook(shutdown)).await;
        }
        super::reporting_stop(&liveness, self.poll(handler, shutdown)).await
    }

    /// What every update's handlers share, polled or delivered.
    fn inner(&self, handler: Arc<dyn ChatHandler>) -> Arc<Inner> {
        let pacer = TelegramPacer::shared(&self.api_url, self.token.expose_secret(), self.limits);
        Arc::new(Inner {
            handler,
            contact_keyboard: DashSet::new(),
            redactor: Redactor::new(&self.token),
            default_lang: self.default_lang,
            texts: self.texts.clone(),
            pacer,
            turns: Arc::default(),
        })
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
        let inner = self.inner(handler);
        // Every update goes to one concurrent worker, whose handler moves its turn onto a task
        // of its own (`bot::on_own_task`); per-chat order is kept by `ChatTurns`.
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
        // Only a refused token ends the loop (no retry can fix it). A try that gets as far as
        // polling returns from here once `shutdown` comes.
        super::start_with_retries!(
            "telegram",
            "Telegram",
            &self.liveness,
            &mut shutdown,
            gives_up: TelegramError::Unauthorized,
            'attempt: {
                let prepared = tokio::select! {
                    r = prepare(&bot) => r,
                    () = &mut shutdown => return Ok(()),
                };
                if let Err(e) = prepared {
                    break 'attempt Err(startup_error(e));
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
                    result = &mut dispatch => break 'attempt result.map_err(startup_error),
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
            },
        );
        Ok(())
    }
}
