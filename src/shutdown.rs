//! One signal for every long-running part of `zapis run`: Ctrl-C or SIGTERM; and the rounds of
//! a business's periodic loops, each on the instance holding its lease, until the stop.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::store::LoopLease;

/// Resolves when the process is asked to stop.
/// As [`signal`], with the handlers installed at once rather than when first awaited: a
/// SIGTERM that comes while the service is still starting (reading a CRM's setup, say) stops it
/// cleanly instead of ending the process by the signal's default.
pub fn listen() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal as unix_signal};
        let handlers = (
            unix_signal(SignalKind::terminate()),
            unix_signal(SignalKind::interrupt()),
        );
        async move {
            match handlers {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                    tracing::info!("shutting down");
                }
                _ => signal().await,
            }
        }
    }
    #[cfg(not(unix))]
    signal()
}

pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// When a periodic loop's rounds come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// A round at once, then one `every` after the last one ended.
    Pause(Duration),
    /// The first round only after `every`, then one `every` after the last one ended.
    PauseFirst(Duration),
    /// A round at once, then one every `every` from the last one's start; a round that runs
    /// late pushes the next ones back rather than bunching them.
    Tick(Duration),
}

/// The rounds of one periodic loop: each waits for its time, then for this instance to hold
/// the loop's lease (another instance sharing the store may hold it; that round is skipped).
/// Once `stop` turns true (or its sender is gone) while a round waits, the lease is given up
/// and the rounds end.
pub struct LeasedRounds {
    lease: LoopLease,
    clock: Arc<dyn Clock>,
    stop: watch::Receiver<bool>,
    pace: Pace,
    first: bool,
}

enum Pace {
    Pause { every: Duration, at_once: bool },
    Tick(tokio::time::Interval),
}

impl LeasedRounds {
    pub fn new(
        cadence: Cadence,
        lease: LoopLease,
        clock: Arc<dyn Clock>,
        stop: watch::Receiver<bool>,
    ) -> LeasedRounds {
        let pace = match cadence {
            Cadence::Pause(every) => Pace::Pause {
                every,
                at_once: true,
            },
            Cadence::PauseFirst(every) => Pace::Pause {
                every,
                at_once: false,
            },
            Cadence::Tick(every) => {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Pace::Tick(tick)
            }
        };
        LeasedRounds {
            lease,
            clock,
            stop,
            pace,
            first: true,
        }
    }

    /// The time of the next round this instance runs; `None` once stopped, the lease given up.
    pub async fn next(&mut self) -> Option<DateTime<Utc>> {
        loop {
            if !self.wait().await {
                self.lease.release().await;
                return None;
            }
            if self.lease.hold(self.clock.now()).await {
                return Some(self.clock.now());
            }
        }
    }

    /// Waits for the next round's time; `false` when the stop came first (on a tick, also when
    /// it came with it).
    async fn wait(&mut self) -> bool {
        let first = std::mem::replace(&mut self.first, false);
        let stopped = match &mut self.pace {
            Pace::Pause { at_once: true, .. } if first => false,
            Pace::Pause { every, .. } => tokio::select! {
                () = tokio::time::sleep(*every) => false,
                _ = self.stop.wait_for(|s| *s) => true,
            },
            Pace::Tick(tick) => {
                let ticked = tokio::select! {
                    _ = tick.tick() => true,
                    _ = self.stop.wait_for(|s| *s) => false,
                };
                !ticked || *self.stop.borrow()
            }
        };
        !stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::domain::bid;
    use crate::store::{Store, testing};
    use std::time::Instant;

    const PAUSE: Duration = Duration::from_millis(200);

    fn rounds(
        store: &Store,
        holder: &str,
        cadence: Cadence,
    ) -> (watch::Sender<bool>, LeasedRounds) {
        let lease = LoopLease::new(store.clone(), &bid("b1"), "test", holder, PAUSE);
        let (stop, stopped) = watch::channel(false);
        let rounds = LeasedRounds::new(cadence, lease, Arc::new(SystemClock), stopped);
        (stop, rounds)
    }

    #[tokio::test]
    async fn rounds_keep_their_cadence_and_a_stop_hands_the_lease_over() {
        let store = testing::sqlite().await;
        for cadence in [Cadence::Pause(PAUSE), Cadence::Tick(PAUSE)] {
            let (stop, mut a) = rounds(&store, &format!("{cadence:?}"), cadence);
            let started = Instant::now();
            assert!(a.next().await.is_some());
            assert!(
                started.elapsed() < PAUSE,
                "{cadence:?}: the first round at once"
            );
            assert!(a.next().await.is_some());
            assert!(
                started.elapsed() >= PAUSE,
                "{cadence:?}: the next one later"
            );
            stop.send(true).unwrap();
            assert!(a.next().await.is_none(), "{cadence:?}: stopped");
        }

        let (stop_a, mut a) = rounds(&store, "a", Cadence::Pause(PAUSE));
        assert!(a.next().await.is_some());
        let (_stop_b, mut b) = rounds(&store, "b", Cadence::PauseFirst(PAUSE));
        let started = Instant::now();
        let refused = tokio::time::timeout(PAUSE * 3, b.next()).await;
        assert!(refused.is_err(), "a holds the lease: b gets no round");
        stop_a.send(true).unwrap();
        assert!(a.next().await.is_none());
        assert!(
            // A bound, not a pace: a loaded machine may take a while to run b's round.
            tokio::time::timeout(PAUSE * 50, b.next())
                .await
                .unwrap()
                .is_some(),
            "a gave the lease up: b's next round is its own"
        );
        assert!(
            started.elapsed() >= PAUSE,
            "b's first round waited its pause"
        );
    }
}
