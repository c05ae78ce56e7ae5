//! Messenger adapters: each one turns its platform's updates into [`ChatEvent`]s, asks a
//! [`ChatHandler`] what to say, and renders the neutral [`Reply`]s its own way.

pub mod config;
pub mod console;
pub mod liveness;
pub mod max;
pub mod notify;
pub mod telegram;

/// The pacing's former path, still used by the integration tests.
pub use telegram::pacing as telegram_pacing;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::conversation::{ChatEvent, ConversationError, Conversations};
use crate::dialog::Reply;
use crate::domain::ChatRef;
use crate::i18n::{Lang, Texts};
use crate::normalize::mask_phone;
use crate::support::AdminReply;

#[derive(Debug, thiserror::Error)]
pub enum MessengerError {
    #[error("telegram: {0}")]
    Telegram(#[from] telegram::TelegramError),
    #[error("max: {0}")]
    Max(#[from] max::MaxError),
}

/// The waits between tries to start a messenger whose API cannot be reached: 1 s, doubling up
/// to a minute, so a long outage costs one request a minute and a short one is over quickly.
#[derive(Debug, Clone)]
pub struct StartBackoff {
    next: Duration,
}

impl StartBackoff {
    pub const FIRST: Duration = Duration::from_secs(1);
    pub const LONGEST: Duration = Duration::from_secs(60);

    /// How long to wait before the next try.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::LONGEST);
        wait
    }

    /// After a failed try to start `messenger` (`label` as people write it): a WARN naming the
    /// messenger and the error (never the token), the poller marked down, then the wait before
    /// the next try. `false` when `shutdown` comes first.
    pub async fn wait_after_failure(
        &mut self,
        messenger: &'static str,
        label: &str,
        error: &(dyn std::fmt::Display + Sync),
        liveness: &liveness::Poller,
        shutdown: impl Future<Output = ()> + Unpin,
    ) -> bool {
        let wait = self.next_wait();
        tracing::warn!(
            messenger,
            error = %error,
            retry_in_secs = wait.as_secs(),
            "{label} cannot be reached at start; trying again"
        );
        liveness.start_failed(&error.to_string(), chrono::Utc::now());
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = shutdown => false,
        }
    }
}

impl Default for StartBackoff {
    fn default() -> Self {
        StartBackoff { next: Self::FIRST }
    }
}

/// How every messenger adapter starts: `$attempt` (an expression giving a `Result`, which may
/// `return` from the adapter, as when `$shutdown` comes during it) is tried until it is `Ok`,
/// the loop's value, or fails for good (an error matching `$gives_up`, returned from the
/// adapter). An API that cannot be reached is tried again with [`StartBackoff`], the rest of the
/// service running meanwhile; `$shutdown` during that wait ends the adapter with `Ok(())`.
/// `$messenger` and `$label` name it in the log as in [`StartBackoff::wait_after_failure`].
///
/// A macro rather than a function taking the try as an async closure: the closure would borrow
/// `$shutdown` for each try, and the future of such a function cannot be shown `Send` for
/// `tokio::spawn` by today's compiler.
macro_rules! start_with_retries {
    (
        $messenger:literal,
        $label:literal,
        $liveness:expr,
        $shutdown:expr,
        gives_up: $gives_up:pat,
        $attempt:expr $(,)?
    ) => {{
        let mut backoff = $crate::messenger::StartBackoff::default();
        loop {
            let error = match $attempt {
                Ok(started) => break started,
                Err(e) if matches!(e, $gives_up) => return Err(e),
                Err(e) => e,
            };
            if !backoff
                .wait_after_failure($messenger, $label, &error, $liveness, $shutdown)
                .await
            {
                return Ok(());
            }
        }
    }};
}
pub(crate) use start_with_retries;

/// Runs `adapter` to its end, then tells `liveness` that it stopped, however it ended.
pub(crate) async fn reporting_stop<T>(
    liveness: &liveness::Poller,
    adapter: impl Future<Output = T>,
) -> T {
    let result = adapter.await;
    liveness.stopped();
    result
}

/// What the dialog answers `event` in `chat` with; when the conversation fails, the error is
/// logged and the answer is one apology, the text `apology` in the chat's language.
pub(crate) async fn replies_or_apology(
    handler: &dyn ChatHandler,
    chat: &ChatRef,
    lang: Option<&str>,
    event: ChatEvent,
    texts: &Texts,
    default_lang: Lang,
    apology: &str,
) -> Vec<Reply> {
    match handler.handle(chat, lang, event).await {
        Ok(replies) => replies,
        Err(e) => {
            tracing::error!(chat = %chat.chat_id, error = %e, "conversation failed; apologising");
            vec![Reply {
                text: texts.t(Lang::pick(lang, default_lang), apology),
                ..Reply::default()
            }]
        }
    }
}

/// Sends a long text's `parts` in order through `send`, `keyboard` with the last one; stops at
/// the first part `send` reports failed (it logs why). False if one failed.
pub(crate) async fn send_in_parts<K, F, Sent>(
    parts: Vec<String>,
    keyboard: Option<K>,
    mut send: F,
) -> bool
where
    F: FnMut(String, Option<K>) -> Sent,
    Sent: Future<Output = bool>,
{
    let last = parts.len().saturating_sub(1);
    let mut keyboard = keyboard;
    for (i, part) in parts.into_iter().enumerate() {
        let keyboard = if i == last { keyboard.take() } else { None };
        if !send(part, keyboard).await {
            return false;
        }
    }
    true
}

/// What to log about an input: enough to follow a conversation, nothing personal.
pub(crate) fn describe(event: &ChatEvent) -> String {
    match event {
        ChatEvent::Start { payload: Some(p) } => format!("start payload={p:?}"),
        ChatEvent::Start { payload: None } => "start".to_string(),
        // Users type phones and names here, so only the length is logged.
        ChatEvent::Text(t) => format!("text ({} chars)", t.chars().count()),
        ChatEvent::Button { data, .. } => format!("button {data:?}"),
        ChatEvent::Contact { phone } => format!("contact {}", mask_phone(phone)),
    }
}

/// Hands an admin's reply in the `[support]` admin chat to `handler`, logging what became of it.
pub(crate) async fn relay_admin_reply(handler: &dyn ChatHandler, reply: AdminReply<'_>) {
    match handler.relay_answer(reply).await {
        Ok(true) => {}
        Ok(false) => tracing::debug!("a reply in the admin chat to no relayed question"),
        Err(e) => tracing::error!(error = %e, "an admin's answer could not be queued"),
    }
}

/// What an adapter needs from the conversation runtime. A trait rather than the concrete
/// [`Conversations`] so adapters can be tested with a scripted double.
#[async_trait]
pub trait ChatHandler: Send + Sync {
    async fn handle(
        &self,
        chat: &ChatRef,
        user_lang: Option<&str>,
        event: ChatEvent,
    ) -> Result<Vec<Reply>, ConversationError>;

    /// The `[support]` admin chat on `channel`: its messages are admins' talk, not a dialog.
    fn support_chat(&self, _channel: crate::domain::Channel) -> Option<i64> {
        None
    }

    /// An admin's reply in the admin chat; `true` when it answered a relayed question and is
    /// on its way to the client.
    async fn relay_answer(
        &self,
        _reply: crate::support::AdminReply<'_>,
    ) -> Result<bool, ConversationError> {
        Ok(false)
    }
}

#[async_trait]
impl ChatHandler for Conversations {
    async fn handle(
        &self,
        chat: &ChatRef,
        user_lang: Option<&str>,
        event: ChatEvent,
    ) -> Result<Vec<Reply>, ConversationError> {
        Conversations::handle(self, chat, user_lang, event).await
    }

    fn support_chat(&self, channel: crate::domain::Channel) -> Option<i64> {
        Conversations::support_chat(self, channel)
    }

    async fn relay_answer(
        &self,
        reply: crate::support::AdminReply<'_>,
    ) -> Result<bool, ConversationError> {
        Conversations::relay_answer(self, reply).await
    }
}

/// A clonable "please stop" flag shared by the process (SIGTERM, ctrl-c) and the adapters.
/// Triggering it before an adapter starts is fine: [`StopSignal::stopped`] resolves at once.
#[derive(Debug, Clone)]
pub struct StopSignal {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal::new()
    }
}

impl StopSignal {
    pub fn new() -> StopSignal {
        let (tx, _rx) = watch::channel(false);
        StopSignal {
            tx: std::sync::Arc::new(tx),
        }
    }

    pub fn stop(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_stopped(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once [`StopSignal::stop`] has been called (now or earlier).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            // An error means every sender is gone, so nobody can stop us any more: treat
            // that as a stop too rather than hanging forever.
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn start_retries_wait_one_second_doubling_up_to_a_minute() {
        let mut backoff = StartBackoff::default();
        let waits: Vec<u64> = (0..9).map(|_| backoff.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[tokio::test]
    async fn stop_signal_resolves_for_waiters_before_and_after_stop() {
        let signal = StopSignal::new();
        let early = tokio::spawn(signal.stopped());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!early.is_finished());
        signal.stop();
        tokio::time::timeout(Duration::from_secs(1), early)
            .await
            .expect("early waiter wakes")
            .expect("task ran");
        tokio::time::timeout(Duration::from_secs(1), signal.clone().stopped())
            .await
            .expect("late waiter resolves at once");
        assert!(signal.is_stopped());
    }
}
