//! One pacing layer: a rate limiter per vendor account (or per egress address, where the
//! vendor counts that way), shared by every client of that account in the process. Two clients
//! of one account (a business's booking client and its import, or two businesses behind one
//! partner token) must not each spend the whole allowance.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

type Registry = Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>;

static LIMITERS: LazyLock<Registry> = LazyLock::new(|| Mutex::new(HashMap::new()));

// The longest "slow down" (a 429, or Dikidi's 503, and the wait its `Retry-After` asks for)
// that one call sits out itself, while a client waits in the chat: a longer one goes back to
// the caller, and the queue honours it. One idea, each vendor's ceiling as it had it.

/// The longest "slow down" a YClients call sits out itself; its own back-off without a
/// `Retry-After` doubles up to this too.
pub const YCLIENTS_INLINE_WAIT: Duration = Duration::from_secs(1);
/// The longest "slow down" a Dikidi call sits out itself (once).
pub const DIKIDI_INLINE_WAIT: Duration = Duration::from_secs(2);

/// How requests to one account are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// One request per period, no bursts: no sliding second ever holds more than the vendor's
    /// allowance (a burst allowance would let a window hold nearly twice as many).
    Even { period: Duration },
    /// `per_second` on average with up to `burst` at once: for a vendor whose counter drains at
    /// a rate and refuses above a threshold (Bitrix24's leaky bucket).
    Bursty { per_second: u32, burst: u32 },
}

impl Pace {
    /// Evenly spaced, `per_second` a second.
    pub fn per_second(per_second: u32) -> Pace {
        Pace::Even {
            period: Duration::from_secs(1) / per_second.max(1),
        }
    }

    /// The quota of one limiter at this pace.
    pub fn quota(self) -> Quota {
        match self {
            Pace::Even { period } => Quota::with_period(period)
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

/// The limiter of `account` (a vendor name and what the vendor counts by, e.g. its origin) at
/// `pace`. Every caller naming the same account and pace gets the same limiter.
pub fn limiter(account: &str, pace: Pace) -> Arc<DefaultDirectRateLimiter> {
    let key = format!("{account}|{pace:?}");
    let mut map = LIMITERS.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(key)
        .or_insert_with(|| Arc::new(RateLimiter::direct(pace.quota())))
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
        assert!(a.check().is_ok());
        assert!(b.check().is_err());
        assert!(other.check().is_ok());
    }
}
