//! Throttling wrong exchange logins: a budget per address (IPv6 by /64) and one for all
//! addresses together, on our clock.

use super::*;

/// governor's time source, read from our clock so the throttle follows it in tests too.
#[derive(Clone)]
struct LimiterClock(Arc<dyn Clock>);

impl governor::clock::Clock for LimiterClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let ms = self.0.now().timestamp_millis().max(0) as u64;
        Nanos::new(ms.saturating_mul(1_000_000))
    }
}

type AddressLimiter = RateLimiter<
    IpAddr,
    governor::state::keyed::DashMapStateStore<IpAddr>,
    LimiterClock,
    governor::middleware::NoOpMiddleware<Nanos>,
>;
type GlobalLimiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    LimiterClock,
    governor::middleware::NoOpMiddleware<Nanos>,
>;

/// Throttles wrong logins: each failure spends from its address's budget and the global one;
/// an address (or everyone) out of budget is refused before its credentials are looked at,
/// so a right guess during the wait teaches nothing.
pub(super) struct LoginGuard {
    per_address: AddressLimiter,
    global: GlobalLimiter,
    blocked: Mutex<HashMap<IpAddr, i64>>,
    global_until_ms: AtomicI64,
}

fn quota(burst: u32, every: Duration) -> Quota {
    Quota::with_period(every)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

fn nanos_to_ms(n: Nanos) -> i64 {
    i64::try_from(n.as_u64() / 1_000_000).unwrap_or(i64::MAX)
}

impl LoginGuard {
    pub(super) fn new(clock: Arc<dyn Clock>) -> LoginGuard {
        let clock = LimiterClock(clock);
        LoginGuard {
            per_address: RateLimiter::dashmap_with_clock(
                quota(ADDRESS_BURST, ADDRESS_REFILL),
                clock.clone(),
            ),
            global: RateLimiter::direct_with_clock(quota(GLOBAL_BURST, GLOBAL_REFILL), clock),
            blocked: Mutex::new(HashMap::new()),
            global_until_ms: AtomicI64::new(0),
        }
    }

    fn blocked_map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, i64>> {
        self.blocked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds this address must wait before its credentials are looked at again.
    pub(super) fn wait_ms(&self, key: IpAddr, now_ms: i64) -> Option<i64> {
        let global = self.global_until_ms.load(Ordering::Relaxed);
        let address = self.blocked_map().get(&key).copied().unwrap_or(0);
        let until = global.max(address);
        (until > now_ms).then_some(until - now_ms)
    }

    pub(super) fn failed(&self, key: IpAddr, now_ms: i64) {
        if let Err(not_until) = self.per_address.check_key(&key) {
            let until = nanos_to_ms(not_until.earliest_possible());
            let mut blocked = self.blocked_map();
            if blocked.len() >= MAX_BLOCKED {
                blocked.retain(|_, at| *at > now_ms);
            }
            if blocked.len() >= MAX_BLOCKED {
                self.global_until_ms.fetch_max(until, Ordering::Relaxed);
            } else {
                blocked.insert(key, until);
            }
            tracing::warn!(address = %key, "1C exchange: too many wrong logins from one address");
        }
        if let Err(not_until) = self.global.check() {
            let until = nanos_to_ms(not_until.earliest_possible());
            if self.global_until_ms.fetch_max(until, Ordering::Relaxed) <= now_ms {
                tracing::warn!("1C exchange: too many wrong logins; every login waits");
            }
        }
    }

    pub(super) fn sweep(&self, now_ms: i64) {
        self.per_address.retain_recent();
        self.blocked_map().retain(|_, at| *at > now_ms);
    }
}

/// The address the throttle counts: IPv6 by /64, as one subscriber usually holds a /64.
pub(super) fn address_key(peer: Option<SocketAddr>) -> IpAddr {
    match peer.map(|p| p.ip()) {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
        Some(v4) => v4,
        None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    }
}
