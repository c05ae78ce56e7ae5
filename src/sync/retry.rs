//! The retry decision. A connector reports *what kind* of failure it saw as a
//! [`DeliveryError`]; the [`RetryPolicy`] turns a transient one into the next attempt time.

use std::time::Duration;

use rand::Rng;

/// How a delivery attempt failed. The variant *is* the retry decision, so no caller has to
/// parse an error string to decide whether to try again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying: timeout, connection error, 5xx (except 501), 429, Bitrix's
    /// 503 QUERY_LIMIT_EXCEEDED. `retry_after` is the target's own hint, honoured when it is
    /// longer than our backoff.
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
        http_status: Option<u16>,
    },
    /// Retrying cannot help (validation error, a required object is gone): the job goes dead
    /// at once with the vendor's message kept for the operator.
    #[error("{message}")]
    Permanent {
        message: String,
        http_status: Option<u16>,
    },
    /// Credentials were refused: the engine refreshes the token once, then gives up with an
    /// alert.
    #[error("{message}")]
    Auth {
        message: String,
        http_status: Option<u16>,
    },
    /// The target's account is blocked until somebody pays (amoCRM 402). Retrying cannot
    /// help today but will once the bill is paid, so the job waits like a transient one
    /// instead of dying, and the engine alerts at once rather than after `alert_after`.
    #[error("{message}")]
    PaymentRequired {
        message: String,
        http_status: Option<u16>,
    },
}

impl DeliveryError {
    pub fn transient(message: impl Into<String>) -> DeliveryError {
        DeliveryError::Transient {
            message: message.into(),
            retry_after: None,
            http_status: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> DeliveryError {
        DeliveryError::Permanent {
            message: message.into(),
            http_status: None,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            DeliveryError::Transient { http_status, .. }
            | DeliveryError::Permanent { http_status, .. }
            | DeliveryError::Auth { http_status, .. }
            | DeliveryError::PaymentRequired { http_status, .. } => *http_status,
        }
    }

    pub fn outcome(&self) -> &'static str {
        match self {
            DeliveryError::Transient { .. } => "transient",
            DeliveryError::Permanent { .. } => "permanent",
            DeliveryError::Auth { .. } => "auth",
            DeliveryError::PaymentRequired { .. } => "payment_required",
        }
    }

    /// Maps a transport-level failure (no HTTP answer) to a decision: every one of them is
    /// transient, since the target may come back.
    pub fn from_reqwest(err: &reqwest::Error) -> DeliveryError {
        let kind = if err.is_timeout() {
            "timeout"
        } else if err.is_connect() {
            "connection refused or unreachable"
        } else if err.is_body() || err.is_decode() {
            "the answer was cut off or unreadable"
        } else {
            "transport error"
        };
        // reqwest's Display includes the URL, which may carry a token in its query: keep only
        // the kind and the innermost cause.
        let cause = std::error::Error::source(err)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        DeliveryError::transient(format!("{kind}{cause}"))
    }

    /// Maps an HTTP answer that was not a success to a decision, by the one status classifier
    /// every connector uses.
    pub fn from_status(status: u16, retry_after: Option<Duration>, body: &str) -> DeliveryError {
        let snippet: String = body.chars().take(500).collect();
        let message = if snippet.trim().is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", snippet.trim())
        };
        crate::connectors::Failure::from_status(
            &crate::connectors::failure::ByStatus,
            status,
            None,
            retry_after,
            message,
        )
        .into()
    }
}

/// When to try again: fixed first steps, then a uniformly random wait in `steady` forever,
/// until the job is older than `max_age`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Waits after the 1st, 2nd, … failure.
    pub steps: Vec<Duration>,
    /// After the steps run out: a uniform random wait in this range (the jitter spreads a
    /// backlog so a recovering target is not hit by every job at once).
    pub steady_min: Duration,
    pub steady_max: Duration,
    /// A job older than this goes dead instead of being retried.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    /// ~10 s, 30 s, 1 min, 2 min, 5 min (≈8.7 min in total), then every 5–15 minutes: the
    /// "every 5–15 minutes" promise holds well within the first half hour.
    fn default() -> Self {
        RetryPolicy {
            steps: [10, 30, 60, 120, 300].map(Duration::from_secs).to_vec(),
            steady_min: Duration::from_secs(5 * 60),
            steady_max: Duration::from_secs(15 * 60),
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The wait after failure number `failures` (1-based), with jitter. A step gets ±20 %
    /// jitter too, so jobs that failed together do not retry in lockstep.
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let mut rng = rand::rng();
        let index = failures.saturating_sub(1) as usize;
        let base = match self.steps.get(index) {
            Some(step) => {
                let ms = step.as_millis() as f64;
                Duration::from_millis(rng.random_range(ms * 0.8..=ms * 1.2) as u64)
            }
            None => {
                let (lo, hi) = (
                    self.steady_min.as_millis() as u64,
                    self.steady_max.as_millis() as u64,
                );
                Duration::from_millis(if hi > lo {
                    rng.random_range(lo..=hi)
                } else {
                    lo
                })
            }
        };
        match retry_after {
            Some(hint) if hint > base => hint,
            _ => base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_decisions() {
        use DeliveryError as E;
        assert!(matches!(E::from_status(500, None, ""), E::Transient { .. }));
        assert!(matches!(E::from_status(502, None, ""), E::Transient { .. }));
        assert!(matches!(E::from_status(501, None, ""), E::Permanent { .. }));
        assert!(matches!(E::from_status(401, None, ""), E::Auth { .. }));
        assert!(matches!(E::from_status(403, None, ""), E::Auth { .. }));
        assert!(matches!(
            E::from_status(404, None, "not found"),
            E::Permanent { .. }
        ));
        assert!(matches!(E::from_status(422, None, ""), E::Permanent { .. }));
        match E::from_status(429, Some(Duration::from_secs(120)), "") {
            E::Transient {
                retry_after,
                http_status,
                ..
            } => {
                assert_eq!(retry_after, Some(Duration::from_secs(120)));
                assert_eq!(http_status, Some(429));
            }
            other => panic!("429 must be transient, got {other:?}"),
        }
        let bitrix = r#"{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}"#;
        match E::from_status(503, None, bitrix) {
            E::Transient { message, .. } => assert!(message.contains("QUERY_LIMIT_EXCEEDED")),
            other => panic!("Bitrix rate limit must be transient, got {other:?}"),
        }
        match E::from_status(400, None, r#"{"error":"phone is invalid"}"#) {
            E::Permanent { message, .. } => assert!(message.contains("phone is invalid")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_reaches_five_to_fifteen_minutes_within_half_an_hour() {
        let policy = RetryPolicy::default();
        for _ in 0..200 {
            let mut total = Duration::ZERO;
            for failure in 1..=5 {
                total += policy.delay(failure, None);
            }
            assert!(total < Duration::from_secs(30 * 60), "steps took {total:?}");
            for failure in 6..40 {
                let d = policy.delay(failure, None);
                assert!(
                    d >= Duration::from_secs(300) && d <= Duration::from_secs(900),
                    "{d:?}"
                );
            }
        }
    }

    #[test]
    fn retry_after_wins_only_when_longer() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(3600)
        );
        assert!(policy.delay(1, Some(Duration::from_secs(1))) >= Duration::from_secs(8));
    }
}
