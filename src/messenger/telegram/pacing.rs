//! Pacing of the bot's messages under Telegram's flood limits, and waiting out its 429s.
//!
//! What Telegram documents (Bot FAQ, "My bot is hitting limits, how do I avoid this?",
//! <https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this>):
//! - "In a single chat, avoid sending more than one message per second. We may allow short
//!   bursts that go over this limit, but eventually you'll begin receiving 429 errors."
//! - "In a group, bots aren't able to send more than 20 messages per minute."
//! - "For bulk notifications, bots are not able to broadcast more than about 30 messages per
//!   second."
//! - A 429 answer carries `parameters.retry_after`: "the number of seconds left to wait before
//!   the request can be repeated" (<https://core.telegram.org/bots/api#responseparameters>).
//!
//! So: every chat is paced at `chat_messages_per_second` with `chat_burst` messages of slack
//! (a generic cell rate), group chats (negative ids) additionally to at most
//! `group_messages_per_minute` in any sliding minute, and all chats together to at most
//! `messages_per_second` in any sliding second. Each message reserves the exact instant it may
//! go and sleeps until then; nothing ticks on a fixed cadence, so an idle bot answers at once.
//!
//! teloxide's own `Throttle` adaptor is not used: it applies the 20-per-minute cap to private
//! chats too (one busy client would wait 3 s per reply after 20 answers), releases its queue
//! on a fixed 250 ms tick, and has no switch to turn pacing off.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use serde::Deserialize;
use teloxide::RequestError;
use tokio::time::Instant;

/// `[telegram.limits]`: the defaults are Telegram's documented limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramLimits {
    /// `false` turns pacing off (a local Bot API server, benchmarks); 429s are still waited out.
    pub enabled: bool,
    /// All chats together, in any sliding second.
    pub messages_per_second: NonZeroU32,
    /// Sustained rate in one chat.
    pub chat_messages_per_second: NonZeroU32,
    /// Messages one chat may get back to back before the sustained rate applies.
    pub chat_burst: NonZeroU32,
    /// Group and channel chats, in any sliding minute.
    pub group_messages_per_minute: NonZeroU32,
    /// How many times one message is re-sent after a 429, each after its `retry_after`.
    pub retries_after_429: u32,
}

impl Default for TelegramLimits {
    fn default() -> Self {
        TelegramLimits {
            enabled: true,
            messages_per_second: NonZeroU32::new(30).expect("non-zero"),
            chat_messages_per_second: NonZeroU32::MIN,
            chat_burst: NonZeroU32::new(3).expect("non-zero"),
            group_messages_per_minute: NonZeroU32::new(20).expect("non-zero"),
            retries_after_429: 3,
        }
    }
}

impl TelegramLimits {
    /// No pacing at all; 429s are still honoured.
    pub fn off() -> TelegramLimits {
        TelegramLimits {
            enabled: false,
            ..TelegramLimits::default()
        }
    }
}

/// Prune idle chats' pacing state after this many sends, so the maps hold only chats that
/// still owe a wait.
const PRUNE_EVERY: u32 = 1024;

/// One pacer per bot: the adapter's replies and the queued notices share it.
pub struct TelegramPacer {
    limits: TelegramLimits,
    state: Mutex<State>,
}

struct State {
    /// All chats: instants of the latest `messages_per_second` sends (some may lie ahead).
    overall: Window,
    /// Per chat: the generic cell rate's theoretical arrival time.
    chats: HashMap<i64, Instant>,
    groups: HashMap<i64, Window>,
    /// Chats Telegram told to wait (429), until when.
    frozen: HashMap<i64, Instant>,
    since_prune: u32,
}

/// At most `limit` instants in any `period`, reserved in order.
struct Window {
    limit: usize,
    period: Duration,
    slots: VecDeque<Instant>,
}

impl Window {
    fn new(limit: NonZeroU32, period: Duration) -> Window {
        Window {
            limit: limit.get() as usize,
            period,
            slots: VecDeque::new(),
        }
    }

    fn earliest(&self, at: Instant) -> Instant {
        if self.slots.len() < self.limit {
            return at;
        }
        // Slots are kept sorted and capped at `limit`, so the front is the limit-th latest.
        self.slots
            .front()
            .map_or(at, |&oldest| at.max(oldest + self.period))
    }

    fn commit(&mut self, at: Instant) {
        self.slots.push_back(at);
        while self.slots.len() > self.limit {
            self.slots.pop_front();
        }
    }

    fn idle(&self, now: Instant) -> bool {
        self.slots
            .back()
            .is_none_or(|&last| last + self.period <= now)
    }
}

impl TelegramPacer {
    pub fn new(limits: TelegramLimits) -> TelegramPacer {
        TelegramPacer {
            limits,
            state: Mutex::new(State {
                overall: Window::new(limits.messages_per_second, Duration::from_secs(1)),
                chats: HashMap::new(),
                groups: HashMap::new(),
                frozen: HashMap::new(),
                since_prune: 0,
            }),
        }
    }

    /// The pacer of the bot `token` talks as on `api_url`, made on first use: the dialog
    /// adapter and the notice sender of one bot must count against the same limits.
    pub fn shared(api_url: &url::Url, token: &str, limits: TelegramLimits) -> Arc<TelegramPacer> {
        type Registry = Mutex<HashMap<(String, String, TelegramLimits), Weak<TelegramPacer>>>;
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        // The bot id (before the colon) names the bot without holding its secret half.
        let bot = token.split(':').next().unwrap_or_default().to_string();
        let key = (api_url.to_string(), bot, limits);
        let mut registry = REGISTRY
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        registry.retain(|_, pacer| pacer.strong_count() > 0);
        if let Some(pacer) = registry.get(&key).and_then(Weak::upgrade) {
            return pacer;
        }
        let pacer = Arc::new(TelegramPacer::new(limits));
        registry.insert(key, Arc::downgrade(&pacer));
        pacer
    }

    pub fn limits(&self) -> &TelegramLimits {
        &self.limits
    }

    /// Sends with `call` when `chat` may get a message, re-sending after each 429's
    /// `retry_after` up to `retries_after_429` times.
    pub async fn send<T, F, Fut>(&self, chat: i64, mut call: F) -> Result<T, RequestError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        let mut attempt = 0;
        loop {
            self.ready(chat).await;
            match call().await {
                Err(RequestError::RetryAfter(wait)) if attempt < self.limits.retries_after_429 => {
                    attempt += 1;
                    tracing::warn!(
                        chat,
                        retry_after_s = wait.seconds(),
                        attempt,
                        "Telegram flood control; waiting before sending again"
                    );
                    self.freeze(chat, wait.duration());
                }
                other => return other,
            }
        }
    }

    /// Telegram asked this chat to wait.
    pub fn freeze(&self, chat: i64, wait: Duration) {
        let until = Instant::now() + wait;
        let mut s = self.lock();
        let entry = s.frozen.entry(chat).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Waits until a message to `chat` keeps within every limit, and counts it as sent.
    pub async fn ready(&self, chat: i64) {
        loop {
            let now = Instant::now();
            let (at, reserved) = self.reserve(chat, now);
            // A timer even for no wait at all goes through the runtime's timer wheel.
            if at > now {
                tokio::time::sleep_until(at).await;
            }
            if reserved {
                return;
            }
        }
    }

    /// The instant the message may go and whether it was counted (when not, the caller sleeps
    /// and asks again: the chat's own limits were not yet met).
    fn reserve(&self, chat: i64, now: Instant) -> (Instant, bool) {
        let limits = &self.limits;
        let mut s = self.lock();
        let mut due = now;
        if let Some(&until) = s.frozen.get(&chat) {
            due = due.max(until);
        }
        if !limits.enabled {
            return (due, due <= now);
        }
        let interval = Duration::from_secs(1) / limits.chat_messages_per_second.get();
        let slack = interval * (limits.chat_burst.get() - 1);
        if let Some(&tat) = s.chats.get(&chat) {
            due = due.max(tat.checked_sub(slack).unwrap_or(now));
        }
        if chat < 0
            && let Some(window) = s.groups.get(&chat)
        {
            due = due.max(window.earliest(now));
        }
        if due > now {
            return (due, false);
        }
        // The chat may send now; its turn among all chats is first come, first served.
        let at = s.overall.earliest(now);
        s.overall.commit(at);
        let tat = s.chats.get(&chat).map_or(at, |&tat| tat.max(at)) + interval;
        s.chats.insert(chat, tat);
        if chat < 0 {
            s.groups
                .entry(chat)
                .or_insert_with(|| {
                    Window::new(limits.group_messages_per_minute, Duration::from_secs(60))
                })
                .commit(at);
        }
        s.since_prune += 1;
        if s.since_prune >= PRUNE_EVERY {
            s.since_prune = 0;
            s.chats.retain(|_, tat| *tat > now);
            s.groups.retain(|_, w| !w.idle(now));
            s.frozen.retain(|_, until| *until > now);
        }
        (at, true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few maps of instants; a panic while holding it leaves them usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Chats whose pacing state is still held (for memory tests).
    pub fn tracked_chats(&self) -> usize {
        let s = self.lock();
        s.chats.len() + s.groups.len() + s.frozen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use teloxide::types::Seconds;

    fn limits() -> TelegramLimits {
        TelegramLimits::default()
    }

    /// Send instants, relative to the start, of `n` messages to `chat` sent one after another.
    async fn times(pacer: &TelegramPacer, chat: i64, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut out = Vec::new();
        for _ in 0..n {
            pacer.ready(chat).await;
            out.push(start.elapsed());
        }
        out
    }

    fn max_in_window(times: &[Duration], window: Duration) -> usize {
        times
            .iter()
            .map(|&t| times.iter().filter(|&&u| u >= t && u < t + window).count())
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn one_chat_gets_a_short_burst_then_one_message_a_second() {
        let pacer = TelegramPacer::new(limits());
        let t = times(&pacer, 42, 6).await;
        let secs: Vec<u64> = t.iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(secs, [0, 0, 0, 1000, 2000, 3000], "{t:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn private_chats_have_no_per_minute_cap_but_groups_have_twenty() {
        let pacer = TelegramPacer::new(limits());
        let private = times(&pacer, 42, 40).await;
        // 40 replies to one client take ~37 s at 1/s after the burst, not two minutes.
        assert!(private[39] < Duration::from_secs(38), "{:?}", private[39]);

        let pacer = TelegramPacer::new(limits());
        let group = times(&pacer, -100_123, 45).await;
        assert_eq!(max_in_window(&group, Duration::from_secs(60)), 20);
        // The 21st message waits for the first to leave the minute, not longer.
        assert_eq!(group[20], Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn all_chats_together_stay_at_thirty_in_any_second() {
        let pacer = Arc::new(TelegramPacer::new(limits()));
        let start = Instant::now();
        let tasks: Vec<_> = (0..95)
            .map(|chat| {
                let pacer = pacer.clone();
                tokio::spawn(async move {
                    pacer.ready(chat).await;
                    start.elapsed()
                })
            })
            .collect();
        let mut t = Vec::new();
        for task in tasks {
            t.push(task.await.unwrap());
        }
        t.sort();
        assert_eq!(max_in_window(&t, Duration::from_secs(1)), 30);
        // 95 chats need exactly three full seconds of waiting, with no fixed tick added.
        assert_eq!(t[0], Duration::ZERO);
        assert_eq!(t[94], Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn turned_off_it_never_waits() {
        let pacer = TelegramPacer::new(TelegramLimits::off());
        let t = times(&pacer, -5, 200).await;
        assert_eq!(t[199], Duration::ZERO);
        assert_eq!(pacer.tracked_chats(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_is_waited_out_for_its_retry_after_then_sent_again() {
        for pacer in [
            TelegramPacer::new(limits()),
            TelegramPacer::new(TelegramLimits::off()),
        ] {
            let start = Instant::now();
            let mut calls = Vec::new();
            let result = pacer
                .send(7, || {
                    calls.push(start.elapsed());
                    let n = calls.len();
                    async move {
                        if n < 3 {
                            Err(RequestError::RetryAfter(Seconds::from_seconds(5)))
                        } else {
                            Ok(n)
                        }
                    }
                })
                .await;
            assert_eq!(result.unwrap(), 3);
            assert_eq!(
                calls,
                [
                    Duration::ZERO,
                    Duration::from_secs(5),
                    Duration::from_secs(10)
                ]
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_gives_up_after_the_configured_retries() {
        let pacer = TelegramPacer::new(TelegramLimits {
            retries_after_429: 1,
            ..limits()
        });
        let mut calls = 0;
        let result: Result<(), _> = pacer
            .send(7, || {
                calls += 1;
                async { Err(RequestError::RetryAfter(Seconds::from_seconds(1))) }
            })
            .await;
        assert!(matches!(result, Err(RequestError::RetryAfter(_))));
        assert_eq!(calls, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_chats_are_forgotten() {
        let pacer = TelegramPacer::new(limits());
        for chat in 0..(PRUNE_EVERY as i64) {
            pacer.ready(chat).await;
        }
        // Each entry is still owed its interval right after sending.
        assert!(pacer.tracked_chats() > 0);
        tokio::time::advance(Duration::from_secs(61)).await;
        for chat in 0..(PRUNE_EVERY as i64) {
            pacer.ready(-chat - 1).await;
        }
        // After the next prune only chats still inside their interval or minute remain.
        assert!(
            pacer.tracked_chats() <= 2 * PRUNE_EVERY as usize,
            "{}",
            pacer.tracked_chats()
        );
    }

    #[test]
    fn the_registry_shares_one_pacer_per_bot_and_limits() {
        let url = url::Url::parse("http://127.0.0.1:1").unwrap();
        let a = TelegramPacer::shared(&url, "1:AAA", limits());
        let b = TelegramPacer::shared(&url, "1:AAA", limits());
        let c = TelegramPacer::shared(&url, "2:AAA", limits());
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
