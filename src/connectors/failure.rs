//! What went wrong talking to a vendor, sorted once by what the caller should do about it.
//!
//! Every connector used to sort HTTP statuses on its own, and the copies disagreed (a
//! schedule's refused credentials were "auth" in one caller and "permanent" in another; a MAX
//! client who blocked the bot was retried for a week). Now a connector builds a [`Failure`]
//! with [`Failure::from_status`] (the status decides, a vendor's [`Quirks`] may decide first
//! from its own error code), and the queue gets its decision from `DeliveryError::from`.
//! Domain outcomes a caller acts on (a slot taken, a record not found, booking closed) stay
//! in each capability's own error enum, which wraps a `Failure` for everything else.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::sync::DeliveryError;

/// The longest `Retry-After` honoured. A vendor asking for more is asked again after this:
/// a wrong or hostile header must not park a booking past its alert.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What the caller should do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Try again later: no answer, a timeout, 408, 425, 429, a 5xx other than 501. The
    /// vendor's own hint of when, if it gave one.
    Transient { retry_after: Option<Duration> },
    /// The same request will fail again: fix the data or the configuration.
    Permanent,
    /// Credentials were refused (or lack a right): someone must fix the settings.
    Auth,
    /// The vendor's account is blocked until somebody pays: wait, and tell someone now.
    PaymentRequired,
}

/// A failed vendor call: what to do about it, and what the vendor said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: Kind,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The vendor's own error code (`chat.denied`, `QUERY_LIMIT_EXCEEDED`, `433`), if any.
    pub code: Option<String>,
    /// For the operator: the vendor's words with what we were doing; never a token or URL.
    pub message: String,
}

/// A vendor's own rules, consulted before the status: an error code or message that says more
/// than the HTTP status does (Bitrix24 answers 503 for its rate limit, MAX 403 for a user who
/// blocked the bot). `None` leaves the decision to the status.
pub trait Quirks {
    fn classify(&self, status: Option<u16>, code: Option<&str>, message: &str) -> Option<Kind>;
}

/// No quirks: the status alone decides.
pub struct ByStatus;

impl Quirks for ByStatus {
    fn classify(&self, _: Option<u16>, _: Option<&str>, _: &str) -> Option<Kind> {
        None
    }
}

/// The one status classifier.
pub fn kind_of_status(status: u16, retry_after: Option<Duration>) -> Kind {
    match status {
        401 | 403 => Kind::Auth,
        402 => Kind::PaymentRequired,
        408 | 425 | 429 => Kind::Transient { retry_after },
        // Not Implemented and HTTP Version Not Supported will not start working by themselves.
        501 | 505 => Kind::Permanent,
        500..=599 => Kind::Transient { retry_after },
        _ => Kind::Permanent,
    }
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            status: None,
            code: None,
            message: message.into(),
        }
    }

    pub fn transient(message: impl Into<String>) -> Failure {
        Failure::new(Kind::Transient { retry_after: None }, message)
    }

    pub fn permanent(message: impl Into<String>) -> Failure {
        Failure::new(Kind::Permanent, message)
    }

    pub fn auth(message: impl Into<String>) -> Failure {
        Failure::new(Kind::Auth, message)
    }

    /// A non-success answer, sorted by the vendor's quirks first and the status after.
    pub fn from_status(
        quirks: &dyn Quirks,
        status: u16,
        code: Option<&str>,
        retry_after: Option<Duration>,
        message: impl Into<String>,
    ) -> Failure {
        Failure::from_answer(quirks, Some(status), code, retry_after, message)
    }

    /// [`Failure::from_status`] for an error that may come without a status of its own (a
    /// command inside a batch). Without one only the quirks can judge it, and what they leave
    /// passes: nothing said the request itself was wrong.
    pub fn from_answer(
        quirks: &dyn Quirks,
        status: Option<u16>,
        code: Option<&str>,
        retry_after: Option<Duration>,
        message: impl Into<String>,
    ) -> Failure {
        let message = message.into();
        let kind = match quirks.classify(status, code, &message) {
            // A quirk that says "transient" without a hint keeps the vendor's header.
            Some(Kind::Transient { retry_after: None }) => Kind::Transient { retry_after },
            Some(kind) => kind,
            None => match status {
                Some(status) => kind_of_status(status, retry_after),
                None => Kind::Transient { retry_after },
            },
        };
        Failure {
            kind,
            status,
            code: code.map(str::to_owned),
            message,
        }
    }

    pub fn with_status(mut self, status: u16) -> Failure {
        self.status = Some(status);
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Failure {
        self.code = Some(code.into());
        self
    }

    pub fn is_transient(&self) -> bool {
        matches!(self.kind, Kind::Transient { .. })
    }

    pub fn is_auth(&self) -> bool {
        self.kind == Kind::Auth
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            Kind::Transient { retry_after } => retry_after,
            _ => None,
        }
    }
}

impl From<Failure> for DeliveryError {
    fn from(f: Failure) -> DeliveryError {
        let (message, http_status) = (f.message, f.status);
        match f.kind {
            Kind::Transient { retry_after } => DeliveryError::Transient {
                message,
                retry_after,
                http_status,
            },
            Kind::Permanent => DeliveryError::Permanent {
                message,
                http_status,
            },
            Kind::Auth => DeliveryError::Auth {
                message,
                http_status,
            },
            Kind::PaymentRequired => DeliveryError::PaymentRequired {
                message,
                http_status,
            },
        }
    }
}

/// The `Retry-After` of an answer: delta-seconds, or an HTTP date counted from now; capped at
/// [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// [`retry_after`] for a header value already read, at a given moment.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is RFC 2822 with the obsolete GMT.
            let at = DateTime::parse_from_rfc2822(value)
                .ok()?
                .with_timezone(&Utc);
            let now: DateTime<Utc> = now.into();
            (at - now).to_std().unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_decides_without_quirks() {
        let kind = |s| kind_of_status(s, None);
        assert_eq!(kind(401), Kind::Auth);
        assert_eq!(kind(403), Kind::Auth);
        assert_eq!(kind(402), Kind::PaymentRequired);
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(matches!(kind(s), Kind::Transient { .. }), "{s}");
        }
        for s in [400, 404, 409, 422, 501, 505] {
            assert_eq!(kind(s), Kind::Permanent, "{s}");
        }
    }

    struct Blocked;
    impl Quirks for Blocked {
        fn classify(&self, _: Option<u16>, code: Option<&str>, _: &str) -> Option<Kind> {
            match code {
                Some("chat.denied") => Some(Kind::Permanent),
                Some("LIMIT") => Some(Kind::Transient { retry_after: None }),
                _ => None,
            }
        }
    }

    #[test]
    fn a_quirk_decides_before_the_status_and_keeps_the_vendors_hint() {
        let f = Failure::from_status(&Blocked, 403, Some("chat.denied"), None, "blocked");
        assert_eq!(f.kind, Kind::Permanent);
        assert_eq!(f.status, Some(403));
        assert_eq!(f.code.as_deref(), Some("chat.denied"));
        let hint = Some(Duration::from_secs(7));
        let f = Failure::from_status(&Blocked, 503, Some("LIMIT"), hint, "slow down");
        assert_eq!(f.retry_after(), hint);
        // An unknown code falls through to the status.
        let f = Failure::from_status(&Blocked, 403, Some("other"), None, "no rights");
        assert_eq!(f.kind, Kind::Auth);
    }

    #[test]
    fn without_a_status_the_quirks_decide_and_the_rest_passes() {
        let f = Failure::from_answer(&Blocked, None, Some("chat.denied"), None, "blocked");
        assert_eq!((f.kind, f.status), (Kind::Permanent, None));
        let hint = Some(Duration::from_secs(3));
        let f = Failure::from_answer(&Blocked, None, Some("other"), hint, "odd");
        assert_eq!(f.kind, Kind::Transient { retry_after: hint });
    }

    #[test]
    fn the_queue_gets_the_decision_and_the_hint() {
        let hint = Some(Duration::from_secs(30));
        let f = Failure::from_status(&ByStatus, 429, None, hint, "too many");
        assert_eq!(
            DeliveryError::from(f),
            DeliveryError::Transient {
                message: "too many".into(),
                retry_after: hint,
                http_status: Some(429),
            }
        );
        let f = Failure::from_status(&ByStatus, 402, None, None, "unpaid");
        assert_eq!(DeliveryError::from(f).outcome(), "payment_required");
        assert_eq!(DeliveryError::from(Failure::auth("no")).outcome(), "auth");
        assert_eq!(
            DeliveryError::from(Failure::permanent("no")).outcome(),
            "permanent"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date already past means "now".
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
