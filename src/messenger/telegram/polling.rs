//! What the poll loop adds to teloxide's: the webhook check before polling, error handlers
//! that keep the token out of the logs, and the poller's liveness.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use teloxide::RequestError;
use teloxide::error_handlers::ErrorHandler;
use teloxide::prelude::*;
use teloxide::stop::StopToken;
use teloxide::types::AllowedUpdate;
use teloxide::update_listeners::{AsUpdateStream, Polling, UpdateListener};

use crate::messenger::liveness::Poller;

/// What the bot checks before it polls. teloxide's own webhook check only logs failures, with
/// the token in the URL; doing it here keeps the same call order and turns a bad token into a
/// clear startup error.
pub(super) async fn prepare(bot: &Bot) -> Result<(), RequestError> {
    let webhook = bot.get_webhook_info().await?;
    if webhook.url.is_some() {
        tracing::warn!("a Telegram webhook was set; deleting it to use long polling");
        bot.delete_webhook().await?;
    }
    Ok(())
}

/// Network errors from reqwest print the request URL, and Telegram puts the token in it.
#[derive(Clone)]
pub(super) struct Redactor {
    token: Arc<SecretString>,
}

impl Redactor {
    pub(super) fn new(token: &SecretString) -> Redactor {
        Redactor {
            token: Arc::new(token.clone()),
        }
    }

    pub(super) fn redact(&self, text: &str) -> String {
        let token = self.token.expose_secret();
        if token.is_empty() {
            return text.to_string();
        }
        text.replace(token, "<token>")
    }
}

pub(super) struct LogError(pub(super) Redactor);

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
pub(super) struct WatchedPolling {
    pub(super) inner: Polling<Bot>,
    pub(super) liveness: Arc<Poller>,
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
pub(super) struct PollError {
    pub(super) log: LogError,
    pub(super) liveness: Arc<Poller>,
    /// The backoff teloxide chose for this failure, in milliseconds.
    pub(super) retry_in: Arc<std::sync::atomic::AtomicU64>,
    pub(super) answer_within: Duration,
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
