//! Whether a messenger's poll loop is alive, as `/health/ready` reports it. The loop publishes
//! what it sees (started, a poll answered, a poll failed, stopped) into a shared [`Poller`];
//! reading it costs a lock and no request to the messenger.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::config::{MaxConfig, TelegramConfig};

/// What a poller is doing, as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PollerState {
    /// Not started yet (the bot is checking its token), or not polling in this mode.
    Starting,
    /// Polls are answered.
    Up,
    /// Every poll since `since` has failed.
    Down,
    /// The loop has ended.
    Stopped,
    /// Another instance sharing the store polls this bot; this one takes over if it dies.
    Standby,
}

/// A poller's state with its times, for the readiness report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PollerStatus {
    pub state: PollerState,
    /// When the current state began (the first failed poll, for `down`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The last failure's text, while down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    running: bool,
    /// Waiting for the bot while another instance polls it.
    standby: bool,
    ended: bool,
    up_since: Option<DateTime<Utc>>,
    failing_since: Option<DateTime<Utc>>,
    last_error: Option<String>,
    /// A poller that cannot see its successful empty polls (teloxide reports only updates and
    /// errors) tells when its retry must have answered: no failure by then means it did.
    recovered_unless_failed_by: Option<DateTime<Utc>>,
}

/// One messenger's poll loop, shared between the loop (writer) and the HTTP face (reader).
#[derive(Debug, Default)]
pub struct Poller {
    inner: Mutex<Inner>,
}

impl Poller {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every write leaves the state whole, so a panicked writer cannot leave it half-done.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The loop is polling (its token was accepted).
    pub fn started(&self, now: DateTime<Utc>) {
        let mut s = self.lock();
        s.running = true;
        s.standby = false;
        s.ended = false;
        s.up_since = Some(now);
        s.failing_since = None;
        s.last_error = None;
        s.recovered_unless_failed_by = None;
    }

    /// The messenger could not be reached to start the loop; the start is tried again.
    /// Shown as `down` since the first failed try, with this error.
    pub fn start_failed(&self, error: &str, now: DateTime<Utc>) {
        let mut s = self.lock();
        s.running = false;
        s.ended = false;
        s.failing_since.get_or_insert(now);
        s.last_error = Some(error.to_string());
        s.recovered_unless_failed_by = None;
    }

    /// A poll was answered.
    pub fn polled(&self, now: DateTime<Utc>) {
        let mut s = self.lock();
        if s.failing_since.take().is_some() || s.up_since.is_none() {
            s.up_since = Some(now);
        }
        s.last_error = None;
        s.recovered_unless_failed_by = None;
    }

    /// A poll failed; the next one is made after `retry_in`. `answer_within` bounds how long
    /// that retry can take to fail, for a loop that cannot report a successful empty poll.
    pub fn failed(
        &self,
        error: &str,
        retry_in: Duration,
        answer_within: Option<Duration>,
        now: DateTime<Utc>,
    ) {
        let mut s = self.lock();
        Self::settle(&mut s, now);
        s.failing_since.get_or_insert(now);
        s.last_error = Some(error.to_string());
        s.recovered_unless_failed_by = answer_within.map(|within| {
            now + chrono::Duration::from_std(retry_in + within).unwrap_or(chrono::Duration::MAX)
        });
    }

    /// The loop ended (shutdown, or a fatal error).
    /// Another instance polls the bot; this one waits to take over.
    pub fn standby(&self) {
        let mut s = self.lock();
        s.standby = !s.running;
    }

    pub fn stopped(&self) {
        let mut s = self.lock();
        s.standby = false;
        s.running = false;
        s.ended = true;
    }

    /// An inferred recovery becomes a recorded one once its deadline passed without a failure.
    fn settle(s: &mut Inner, now: DateTime<Utc>) {
        if let Some(by) = s.recovered_unless_failed_by
            && now > by
        {
            s.failing_since = None;
            s.last_error = None;
            s.recovered_unless_failed_by = None;
            s.up_since = Some(by);
        }
    }

    pub fn status(&self, now: DateTime<Utc>) -> PollerStatus {
        let mut s = self.lock();
        Self::settle(&mut s, now);
        let (state, since) = if s.standby && !s.running {
            (PollerState::Standby, None)
        } else if s.ended {
            (PollerState::Stopped, None)
        } else if !s.running {
            match s.failing_since {
                Some(since) => (PollerState::Down, Some(since)),
                None => (PollerState::Starting, None),
            }
        } else if let Some(since) = s.failing_since {
            (PollerState::Down, Some(since))
        } else {
            (PollerState::Up, s.up_since)
        };
        PollerStatus {
            state,
            since,
            last_error: (state == PollerState::Down)
                .then(|| s.last_error.clone())
                .flatten(),
        }
    }
}

/// The pollers of the configured messengers.
#[derive(Debug, Clone, Default)]
pub struct Pollers {
    pub telegram: Arc<Poller>,
    pub max: Arc<Poller>,
}

impl Pollers {
    /// The pollers of the messengers configured, by name.
    pub fn configured(
        &self,
        telegram: Option<&TelegramConfig>,
        max: Option<&MaxConfig>,
    ) -> Vec<(&'static str, Arc<Poller>)> {
        let mut out = Vec::new();
        if telegram.is_some() {
            out.push(("telegram", self.telegram.clone()));
        }
        if max.is_some() {
            out.push(("max", self.max.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn a_poller_is_down_from_its_first_failure_until_a_poll_is_answered() {
        let p = Poller::default();
        assert_eq!(p.status(at(0)).state, PollerState::Starting);
        p.started(at(0));
        assert_eq!(p.status(at(1)).state, PollerState::Up);
        p.failed("connection refused", Duration::from_secs(1), None, at(5));
        p.failed("connection refused", Duration::from_secs(2), None, at(7));
        let down = p.status(at(100));
        assert_eq!(down.state, PollerState::Down);
        assert_eq!(down.since, Some(at(5)));
        assert_eq!(down.last_error.as_deref(), Some("connection refused"));
        p.polled(at(101));
        let up = p.status(at(102));
        assert_eq!(
            (up.state, up.since, up.last_error),
            (PollerState::Up, Some(at(101)), None)
        );
        p.stopped();
        assert_eq!(p.status(at(103)).state, PollerState::Stopped);
    }

    #[test]
    fn a_start_that_cannot_reach_the_messenger_is_down_until_it_starts() {
        let p = Poller::default();
        p.start_failed("connection refused", at(0));
        p.start_failed("connection refused", at(2));
        let down = p.status(at(3));
        assert_eq!(down.state, PollerState::Down);
        assert_eq!(down.since, Some(at(0)));
        assert_eq!(down.last_error.as_deref(), Some("connection refused"));
        p.started(at(4));
        let up = p.status(at(5));
        assert_eq!((up.state, up.last_error), (PollerState::Up, None));
    }

    #[test]
    fn a_retry_that_did_not_fail_in_time_counts_as_answered() {
        let p = Poller::default();
        p.started(at(0));
        p.failed(
            "timeout",
            Duration::from_secs(2),
            Some(Duration::from_secs(20)),
            at(10),
        );
        assert_eq!(
            p.status(at(31)).state,
            PollerState::Down,
            "still within the retry"
        );
        // The retry failed too: a new deadline, the outage keeps its start.
        p.failed(
            "timeout",
            Duration::from_secs(4),
            Some(Duration::from_secs(20)),
            at(31),
        );
        assert_eq!(p.status(at(50)).since, Some(at(10)));
        let up = p.status(at(56));
        assert_eq!(up.state, PollerState::Up);
        assert_eq!(up.since, Some(at(55)));
    }

    #[test]
    fn a_poller_standing_by_is_up_the_moment_it_takes_the_bot_over() {
        let p = Poller::default();
        p.standby();
        assert_eq!(p.status(at(0)).state, PollerState::Standby);
        p.started(at(5));
        assert_eq!(p.status(at(6)).state, PollerState::Up);
        // A running loop is not put on standby.
        p.standby();
        assert_eq!(p.status(at(7)).state, PollerState::Up);
        // Its hold lost, the loop ends and the instance waits again.
        p.stopped();
        p.standby();
        assert_eq!(p.status(at(8)).state, PollerState::Standby);
    }
}
