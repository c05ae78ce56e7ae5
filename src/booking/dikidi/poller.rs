//! Dikidi sends no webhooks: the poller reads our upcoming records back and turns a salon's
//! change into an event of two-way sync.

use super::*;

// ---------------------------------------------------------------------------------------------
// Poller
// ---------------------------------------------------------------------------------------------

/// Runs `poll_changes` every interval ± jitter by the injected clock and hands each event to
/// `sink`. The sync engine owns what the events become (journal, alerts, the client's chat).
pub struct Poller {
    pub(super) dikidi: Arc<Dikidi>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) next_due: DateTime<Utc>,
    /// With several instances on one store, only the holder of this polls.
    pub(super) lease: Option<crate::store::LoopLease>,
}

impl Poller {
    /// The first poll is due at once: a restart should not hide a day's cancellations.
    pub fn new(dikidi: Arc<Dikidi>, clock: Arc<dyn Clock>) -> Poller {
        let next_due = clock.now();
        Poller {
            dikidi,
            clock,
            next_due,
            lease: None,
        }
    }

    /// Polls only while this instance holds `lease` (instances sharing a store poll a
    /// business's Dikidi once between them), and gives it up when stopped.
    pub fn with_lease(mut self, lease: crate::store::LoopLease) -> Poller {
        self.lease = Some(lease);
        self
    }

    pub fn next_due(&self) -> DateTime<Utc> {
        self.next_due
    }

    pub(super) fn schedule_next(&mut self) {
        let interval = i64::try_from(self.dikidi.poll_interval.as_millis()).unwrap_or(300_000);
        let jitter = i64::try_from(self.dikidi.poll_jitter.as_millis())
            .unwrap_or(0)
            .min(interval / 2);
        let offset = if jitter > 0 {
            rand::rng().random_range(-jitter..=jitter)
        } else {
            0
        };
        self.next_due = self.clock.now() + Duration::milliseconds(interval + offset);
    }

    /// Polls if due; returns whether it did. Errors are logged, never fatal: polling must go on
    /// so the connector recovers by itself.
    pub async fn tick(
        &mut self,
        known: &[KnownRecord],
        sink: &mut (dyn FnMut(DikidiEvent) + Send),
    ) -> bool {
        if self.clock.now() < self.next_due {
            return false;
        }
        match self.dikidi.poll_changes(known).await {
            Ok(events) => events.into_iter().for_each(&mut *sink),
            Err(e) => tracing::warn!(error = %e, "dikidi poll failed; will try again"),
        }
        self.schedule_next();
        true
    }

    /// Polls until `stop` resolves. `known` yields the upcoming records we made each time.
    pub async fn run<K, KF>(
        mut self,
        mut known: K,
        events: tokio::sync::mpsc::Sender<DikidiEvent>,
        stop: impl std::future::Future<Output = ()>,
    ) where
        K: FnMut() -> KF,
        KF: std::future::Future<Output = Vec<KnownRecord>>,
    {
        tokio::pin!(stop);
        loop {
            let held = match (&self.lease, self.clock.now() >= self.next_due) {
                (Some(lease), true) => lease.hold(self.clock.now()).await,
                (_, due) => due,
            };
            if !held && self.clock.now() >= self.next_due {
                // Another instance polls; look again a round later, in case it died.
                self.schedule_next();
            }
            if held {
                let records = known().await;
                let mut out = Vec::new();
                self.tick(&records, &mut |e| out.push(e)).await;
                for e in out {
                    if events.send(e).await.is_err() {
                        return;
                    }
                }
            }
            tokio::select! {
                _ = &mut stop => {
                    if let Some(lease) = &self.lease {
                        lease.release().await;
                    }
                    return;
                }
                // Checks the (possibly fake) clock once a second.
                _ = tokio::time::sleep(StdDuration::from_secs(1)) => {}
            }
        }
    }
}
