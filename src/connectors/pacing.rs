//! One pacing layer: a rate limiter per vendor account (or per egress address, where the
//! vendor counts that way), shared by every client of that account in the process. Two clients
//! of one account (a business's booking client and its import, or two businesses behind one
//! partner token) must not each spend the whole allowance.
//!
//! Every process on one store shares it too (instances on PostgreSQL, or `zapis run` and a
//! `zapis import` on one SQLite file, or a process restarted within the vendor's second): a
//! [`Pacer`] told to ([`Pacer::share_through`]) also takes each request's turn from the
//! account's row in the store (`Store::take_pace_turn`, one atomic statement), so the
//! processes together keep the vendor's pace. The process's own limiter still spaces its requests first; the row adds the
//! wait the other instances' requests call for. A store that cannot answer costs the shared
//! part only: the request leaves at the process's pace, and the warning says so.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

type Registry = Mutex<HashMap<String, Arc<Pacer>>>;

static LIMITERS: LazyLock<Registry> = LazyLock::new(|| Mutex::new(HashMap::new()));

// The longest "slow down" (a 429, or Dikidi's 503, and the wait its `Retry-After` asks for)
// that one call sits out itself, while a client waits in the chat: a longer one goes back to
// the caller, and the queue honours it. One idea, each vendor's ceiling as it had it.

/// The longest "slow down" a YClients call sits out itself; its own back-off without a
/// `Retry-After` doubles up to this too.
pub const YCLIENTS_INLINE_WAIT: Duration = Duration::from_secs(1);
/// The longest "slow down" a Dikidi call sits out itself (once).
pub const DIKIDI_INLINE_WAIT: Duration = Duration::from_secs(2);
/// The longest 429 an amoCRM call sits out itself (once): paced at amoCRM's own limit, a
/// 429 means a request was held up on its way, and one second clears the window it fell in.
pub const AMOCRM_INLINE_WAIT: Duration = Duration::from_secs(1);

/// How requests to one account are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// One request per period, no bursts: no sliding second ever holds more than the vendor's
    /// allowance (a burst allowance would let a window hold nearly twice as many).
    Even { period: Duration },
    /// `per_second` on average with up to `burst` at once: for a vendor whose counter drains at
    /// a rate and refuses above a threshold (Bitrix24's leaky bucket).
    Bursty { per_second: u32, burst: u32 },
    /// Evenly spaced at `period`, and never more than `limit` requests in any `period × limit`
    /// (a second and a guard) as the vendor counts them, on arrival: a request keeps its place
    /// in that window from its turn until its answer is in ([`Pacer::turn`]), so one held up
    /// on its way (a loaded machine, a slow network) cannot land in the same second as the
    /// `limit` after it. See [`Pace::sliding_second`].
    Window { limit: u32, period: Duration },
}

impl Pace {
    /// Evenly spaced, `per_second` a second.
    pub fn per_second(per_second: u32) -> Pace {
        Pace::Even {
            period: Duration::from_secs(1) / per_second.max(1),
        }
    }

    /// Evenly spaced at a vendor's "at most `limit` in any second", with `guard` to spare: the
    /// request `limit` after another leaves a second and `guard` after it. At exactly
    /// `1 s / limit` the `limit + 1` requests of a window span a second to the nanosecond (less,
    /// after rounding), so the slightest delay of the first on its way makes the vendor count
    /// one too many; the guard is how much later than the one `limit` after it a request may
    /// arrive without that.
    ///
    /// Spacing alone is not enough: a request held up by more than the guard between its turn
    /// and its arrival lands in one second with the `limit` after it (on a loaded machine this
    /// happened). So the pace is also a window of `limit` places a request keeps until its
    /// answer is in ([`Pace::Window`]).
    pub fn sliding_second(limit: u32, guard: Duration) -> Pace {
        let limit = limit.max(1);
        // Rounded up: the window must come out no shorter than asked.
        let nanos = (Duration::from_secs(1) + guard)
            .as_nanos()
            .div_ceil(u128::from(limit));
        Pace::Window {
            limit,
            period: Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)),
        }
    }

    /// The average time between two requests at this pace.
    pub fn period(self) -> Duration {
        match self {
            Pace::Even { period } | Pace::Window { period, .. } => period,
            Pace::Bursty { per_second, .. } => Duration::from_secs(1) / per_second.max(1),
        }
    }

    /// The quota of one limiter at this pace.
    pub fn quota(self) -> Quota {
        match self {
            Pace::Even { period } | Pace::Window { period, .. } => Quota::with_period(period)
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::MIN),
            Pace::Bursty { per_second, burst } => {
                let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
                let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
                Quota::per_second(rate).allow_burst(burst)
            }
        }
    }
}

/// The pace of one account: the process's limiter, and the store's row when instances share it.
#[derive(Debug)]
pub struct Pacer {
    account: String,
    pace: Pace,
    local: DefaultDirectRateLimiter,
    window: Option<Window>,
    shared: std::sync::OnceLock<crate::store::Store>,
    /// The shared pace failed and said so; quiet until it answers again.
    shared_failed: std::sync::atomic::AtomicBool,
}

/// The places of a [`Pace::Window`]: requests whose answer is not in yet, and when the others'
/// came in (oldest first). A request may arrive at the vendor any time before its answer, so a
/// place is given back only a window's span after that.
#[derive(Debug)]
struct Window {
    limit: usize,
    span: Duration,
    places: Mutex<Places>,
    freed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Places {
    in_flight: usize,
    answered: std::collections::VecDeque<tokio::time::Instant>,
}

impl Window {
    fn new(limit: u32, span: Duration) -> Window {
        Window {
            limit: usize::try_from(limit.max(1)).unwrap_or(usize::MAX),
            span,
            places: Mutex::new(Places::default()),
            freed: tokio::sync::Notify::new(),
        }
    }

    /// Takes a place if one is free; otherwise how long until one may be (`None`: when a
    /// request in flight is answered).
    fn try_take(&self) -> Result<(), Option<Duration>> {
        let mut places = self.places.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        while places
            .answered
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.span)
        {
            places.answered.pop_front();
        }
        if places.in_flight + places.answered.len() < self.limit {
            places.in_flight += 1;
            return Ok(());
        }
        Err(places
            .answered
            .front()
            .map(|t| (*t + self.span).saturating_duration_since(now)))
    }

    async fn take(&self) {
        loop {
            // Registered before looking, so an answer between the look and the wait still wakes.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_take() {
                Ok(()) => return,
                Err(Some(wait)) => tokio::time::sleep(wait).await,
                Err(None) => freed.await,
            }
        }
    }

    fn give_back(&self) {
        let mut places = self.places.lock().unwrap_or_else(|p| p.into_inner());
        places.in_flight = places.in_flight.saturating_sub(1);
        places.answered.push_back(tokio::time::Instant::now());
        drop(places);
        self.freed.notify_waiters();
    }
}

/// A request's turn: for a [`Pace::Window`], its place in the window until dropped, which
/// must be when its answer is in (or it was given up).
#[must_use = "a turn keeps the request's place until it is dropped: hold it until the answer is in"]
pub struct Turn<'a> {
    window: Option<&'a Window>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Some(window) = self.window {
            window.give_back();
        }
    }
}

impl Pacer {
    fn new(account: &str, pace: Pace) -> Pacer {
        let window = match pace {
            Pace::Window { limit, period } => Some(Window::new(limit, period * limit.max(1))),
            Pace::Even { .. } | Pace::Bursty { .. } => None,
        };
        Pacer {
            account: account.to_string(),
            pace,
            local: RateLimiter::direct(pace.quota()),
            window,
            shared: std::sync::OnceLock::new(),
            shared_failed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// From now on also keeps the pace with every instance sharing `store` (the first store
    /// given stays).
    pub fn share_through(&self, store: &crate::store::Store) {
        let _ = self.shared.set(store.clone());
    }

    /// How this account's requests are spaced (what a connector's tests check it chose).
    #[cfg(test)]
    pub(crate) fn pace(&self) -> Pace {
        self.pace
    }

    /// Waits for this request's turn, for a request that holds no place in a window (the
    /// turn ends at once). A vendor counted on arrival takes [`Pacer::turn`] instead.
    pub async fn until_ready(&self) {
        let _turn = self.turn().await;
    }

    /// Waits for this request's turn and keeps its place in the pace's window (if it has one)
    /// until the turn is dropped: drop it once the answer is in.
    pub async fn turn(&self) -> Turn<'_> {
        if let Some(window) = &self.window {
            window.take().await;
        }
        let turn = Turn {
            window: self.window.as_ref(),
        };
        self.take_turn().await;
        turn
    }

    async fn take_turn(&self) {
        self.local.until_ready().await;
        let Some(store) = self.shared.get() else {
            return;
        };
        let (period, burst) = match self.pace {
            Pace::Even { period } | Pace::Window { period, .. } => (period, 1),
            Pace::Bursty { per_second, burst } => (
                Duration::from_secs(1) / per_second.max(1),
                i64::from(burst.max(1)),
            ),
        };
        // Whole milliseconds, rounded up: rounded down, 7 turns of 142 ms would put eight
        // requests in 994 ms.
        let period_ms = i64::try_from(period.as_nanos().div_ceil(1_000_000))
            .unwrap_or(i64::MAX)
            .max(1);
        let now_ms = chrono::Utc::now().timestamp_millis();
        match store
            .take_pace_turn(&self.account, now_ms, period_ms, burst)
            .await
        {
            Ok(turn) => {
                self.shared_failed
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                let left = left_of(turn, now_ms, chrono::Utc::now().timestamp_millis());
                if left > 0 {
                    tokio::time::sleep(Duration::from_millis(u64::try_from(left).unwrap_or(0)))
                        .await
                }
            }
            // Once an outage: a store without the table (a dry run's, opened without
            // migrating) would otherwise warn on every request.
            Err(e)
                if !self
                    .shared_failed
                    .swap(true, std::sync::atomic::Ordering::Relaxed) =>
            {
                tracing::warn!(
                    account = %self.account,
                    error = %e,
                    "cannot take a turn from the shared pace; requests keep the process's own \
                     pace until it answers"
                )
            }
            Err(e) => {
                tracing::debug!(account = %self.account, error = %e, "shared pace unanswered")
            }
        }
    }

    /// Whether the process's limiter lets a request go now (without waiting).
    pub fn check(&self) -> bool {
        self.local.check().is_ok()
    }
}

/// How many milliseconds are left until `turn`, for a turn asked for at `asked_ms` whose
/// answer came in at `answered_ms` (both on this machine's clock). The statement ran at
/// `turn.ran_at_ms` on the database's clock, which on one machine (SQLite, a local
/// PostgreSQL) is this one's: the turn is then an instant, and neither the wait for another
/// process's write before the statement nor a late answer after it moves the request off it.
/// A database clock outside `[asked, answered]` is another machine's, off from ours; the
/// statement is then taken to have run at the nearer end, which is off by no more than the
/// round trip.
fn left_of(turn: crate::store::PaceTurn, asked_ms: i64, answered_ms: i64) -> i64 {
    let ran = turn.ran_at_ms.clamp(asked_ms, answered_ms.max(asked_ms));
    ran.saturating_add(turn.wait_ms).saturating_sub(answered_ms)
}

/// The pacer of `account` (a vendor name and what the vendor counts by, e.g. its origin) at
/// `pace`. Every caller naming the same account and pace gets the same pacer.
pub fn limiter(account: &str, pace: Pace) -> Arc<Pacer> {
    let key = format!("{account}|{pace:?}");
    let mut map = LIMITERS.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(key)
        .or_insert_with(|| Arc::new(Pacer::new(account, pace)))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_shares_one_limiter_and_another_does_not() {
        let pace = Pace::per_second(5);
        let a = limiter("yclients|https://a.example", pace);
        let b = limiter("yclients|https://a.example", pace);
        let other = limiter("yclients|https://b.example", pace);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &other));
        // The first request passes, the second within the period waits, on either handle.
        assert!(a.check());
        assert!(!b.check());
        assert!(other.check());
    }

    /// Requests admitted as soon as the pace allows, some of them asked for late (a request
    /// that comes after its turn restarts the spacing from then): whatever the demand, any
    /// `limit + 1` admissions in a row span at least a second and the guard, and when demand
    /// never lets up they span no more than that (the pace is the limit, not below it).
    #[test]
    fn at_the_limit_no_second_and_guard_holds_one_request_too_many() {
        use governor::clock::{Clock, FakeRelativeClock};
        for (limit, guard) in [
            (7, Duration::from_millis(21)),
            (7, Duration::ZERO),
            (5, Duration::from_millis(3)),
        ] {
            let pace = Pace::sliding_second(limit, guard);
            let clock = FakeRelativeClock::default();
            let limiter = RateLimiter::direct_with_clock(pace.quota(), clock.clone());
            let mut admitted: Vec<Duration> = Vec::new();
            for i in 0..200u64 {
                // Every fifth request is asked for a while after its turn.
                if i % 5 == 0 {
                    clock.advance(Duration::from_millis(37 * (i % 3)));
                }
                loop {
                    match limiter.check() {
                        Ok(()) => break,
                        Err(not_until) => clock.advance(not_until.wait_time_from(clock.now())),
                    }
                }
                admitted.push(Duration::from(clock.now()));
            }
            let window = Duration::from_secs(1) + guard;
            let spans: Vec<Duration> = admitted
                .windows(limit as usize + 1)
                .map(|w| w[w.len() - 1] - w[0])
                .collect();
            let shortest = spans.iter().min().copied().unwrap_or_default();
            assert!(
                shortest >= window,
                "{} requests in {shortest:?} at {limit}/s with a guard of {guard:?}",
                limit + 1
            );
            // Where no request came late, the pace kept to the window, a few nanoseconds of
            // rounding aside.
            let tightest_run = admitted[1..5]
                .windows(2)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or_default();
            assert!(
                tightest_run * limit <= window + Duration::from_nanos(u64::from(limit)),
                "{tightest_run:?} between requests at {limit}/s with a guard of {guard:?}"
            );
        }
    }

    /// Seven places a window of 1.05 s, requests sent as fast as they are let go, and two of
    /// them held up 300 ms on their way (a loaded machine, a slow link). A place given back
    /// at the turn, as spacing alone does, lets the held-up request land in the same second
    /// as the seven after it: eight, one amoCRM refuses. Kept until the answer, no second
    /// ever holds more than seven arrivals, however late one came. (Time is the runtime's
    /// paused clock, so the schedule is exact.)
    #[tokio::test(start_paused = true)]
    async fn a_request_held_up_on_its_way_never_makes_a_second_too_full() {
        async fn arrivals(kept_until_answered: bool) -> Vec<tokio::time::Instant> {
            let window: &'static Window =
                Box::leak(Box::new(Window::new(7, Duration::from_millis(1050))));
            let arrived = Arc::new(Mutex::new(Vec::new()));
            let mut requests = Vec::new();
            for i in 0..22 {
                window.take().await;
                let turn = Turn {
                    window: Some(window),
                };
                let turn = if kept_until_answered {
                    Some(turn)
                } else {
                    drop(turn);
                    None
                };
                let arrived = arrived.clone();
                requests.push(tokio::spawn(async move {
                    if i == 0 || i == 14 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    arrived
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(tokio::time::Instant::now());
                    // The answer comes back a moment after the vendor counted the request.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    drop(turn);
                }));
            }
            for r in requests {
                r.await.expect("the request ran");
            }
            let mut arrived = arrived.lock().unwrap_or_else(|p| p.into_inner()).clone();
            arrived.sort();
            arrived
        }
        fn fullest_second(arrived: &[tokio::time::Instant]) -> usize {
            (0..arrived.len())
                .map(|i| {
                    arrived[i..]
                        .iter()
                        .take_while(|t| t.duration_since(arrived[i]) < Duration::from_secs(1))
                        .count()
                })
                .max()
                .unwrap_or(0)
        }
        let given_back_at_the_turn = arrivals(false).await;
        assert_eq!(
            fullest_second(&given_back_at_the_turn),
            8,
            "the held-up request is what a window must absorb"
        );
        let kept = arrivals(true).await;
        assert!(
            fullest_second(&kept) <= 7,
            "{} requests arrived within one second",
            fullest_second(&kept)
        );
        assert_eq!(kept.len(), 22);
    }

    /// A shared turn is an instant: the request leaves at it whether the statement waited for
    /// another process's write first or its answer came in late, and is never early.
    #[test]
    fn a_shared_turn_keeps_its_instant_however_long_the_store_took() {
        use crate::store::PaceTurn;
        // Asked at 1,000; the statement waited 200 ms for the file and then ran, its turn 100
        // ms later at 1,300; the answer is in at once.
        let after_a_lock = PaceTurn {
            ran_at_ms: 1_200,
            wait_ms: 100,
        };
        assert_eq!(left_of(after_a_lock, 1_000, 1_201), 99);
        // Ran at once, turn at 1,200, but the answer was 200 ms on its way: go now, not at
        // 1,400 on the next turn's heels.
        let answered_late = PaceTurn {
            ran_at_ms: 1_000,
            wait_ms: 200,
        };
        assert_eq!(left_of(answered_late, 1_000, 1_200), 0);
        assert_eq!(left_of(answered_late, 1_000, 1_150), 50);
        // A database on another machine, its clock a minute off either way: the statement is
        // taken to have run as the answer came in (ahead) or as it was asked (behind).
        let ahead = PaceTurn {
            ran_at_ms: 61_000,
            wait_ms: 300,
        };
        assert_eq!(left_of(ahead, 1_000, 1_020), 300);
        let behind = PaceTurn {
            ran_at_ms: -59_000,
            wait_ms: 300,
        };
        assert_eq!(left_of(behind, 1_000, 1_020), 280);
    }

    /// Two instances (two pacers of one account, as two processes have) sharing a store keep
    /// the vendor's 5 a second between them: their turns are 200 ms apart, so no 900 ms (a
    /// second less the wake-up jitter of a loaded machine) holds six of their requests; each
    /// on its own pace would put ten in a second.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_sharing_a_store_keep_one_pace_between_them() {
        // Two processes on one SQLite file (`zapis run` beside `zapis import`) each open the
        // store on their own: two handles, nothing shared in memory but the file.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = format!("sqlite://{}", dir.path().join("zapis.db").display());
        let mut pairs = vec![(
            crate::store::Store::connect(&file).await.expect("a store"),
            crate::store::Store::connect(&file)
                .await
                .expect("the same store again"),
        )];
        pairs.extend(
            crate::store::testing::postgres()
                .await
                .map(|store| (store.clone(), store)),
        );
        for (store_one, store_two) in pairs {
            let pace = Pace::per_second(5);
            let (one, two) = (
                Arc::new(Pacer::new("vendor|shared", pace)),
                Arc::new(Pacer::new("vendor|shared", pace)),
            );
            one.share_through(&store_one);
            two.share_through(&store_two);
            let started = std::time::Instant::now();
            let calls = (0..12).map(|i| {
                let pacer = if i % 2 == 0 { one.clone() } else { two.clone() };
                async move {
                    pacer.until_ready().await;
                    started.elapsed()
                }
            });
            let mut at: Vec<Duration> = futures::future::join_all(calls).await;
            at.sort();
            let busiest = at
                .iter()
                .map(|t| {
                    at.iter()
                        .filter(|u| **u >= *t && **u - *t < Duration::from_millis(900))
                        .count()
                })
                .max()
                .unwrap_or(0);
            assert!(busiest <= 5, "{busiest} requests in one second: {at:?}");
        }
    }
}
