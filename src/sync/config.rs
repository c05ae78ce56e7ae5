//! `[sync]` and `[alerts]` settings. Durations are written as `90s`, `15m`, `2h`, `7d`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::sync::retry::RetryPolicy;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Concurrent worker loops in this process.
    pub workers: usize,
    /// Jobs one worker claims at once (they run concurrently and finish in one transaction).
    pub batch: usize,
    /// How long a claim is valid without a heartbeat; a dead worker's jobs return after it.
    #[serde(deserialize_with = "de_duration")]
    pub lease: Duration,
    /// How often an idle worker looks for due jobs.
    #[serde(deserialize_with = "de_duration")]
    pub poll: Duration,
    /// Alert when a system has failed continuously for longer than this.
    #[serde(deserialize_with = "de_duration")]
    pub alert_after: Duration,
    /// A job older than this goes dead instead of being retried.
    #[serde(deserialize_with = "de_duration")]
    pub max_age: Duration,
    /// Timeout of one outbound call.
    #[serde(deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// How often upcoming bookings linked to us are re-read from the schedule: the safety net
    /// for missed webhooks and the only path for schedules without them.
    #[serde(deserialize_with = "de_duration")]
    pub reconcile_interval: Duration,
    /// How far ahead the reconciliation poll looks.
    #[serde(deserialize_with = "de_duration")]
    pub reconcile_ahead: Duration,
    /// Whether a change made in the schedule (cancel, move, visit, no-show) moves the CRM lead.
    pub schedule_to_crm: bool,
    /// Whether the client is told in their chat when the business cancels, moves or books for
    /// them.
    pub notify_client: bool,
    /// What happens to a record an admin makes in the schedule for a client we know.
    pub admin_bookings: AdminBookings,
    /// Delivered jobs are removed from the queue table this long after they finished (their
    /// journal rows stay); pending, running and dead jobs are never removed.
    #[serde(deserialize_with = "de_duration")]
    pub done_retention: Duration,
}

/// `sync.admin_bookings`: a record made directly in the schedule for a client who booked with
/// us before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminBookings {
    /// Left alone.
    Ignore,
    /// Linked to the client: they are told, reminded, and can cancel or move it in the chat.
    #[default]
    Link,
    /// Linked, and a lead is created in the CRM as for a booking made in the chat.
    Lead,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            workers: 2,
            batch: 16,
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            alert_after: Duration::from_secs(2 * 3600),
            max_age: Duration::from_secs(7 * 24 * 3600),
            request_timeout: Duration::from_secs(30),
            reconcile_interval: Duration::from_secs(5 * 60),
            reconcile_ahead: Duration::from_secs(60 * 24 * 3600),
            schedule_to_crm: true,
            notify_client: true,
            admin_bookings: AdminBookings::Link,
            done_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl SyncConfig {
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_age: self.max_age,
            ..RetryPolicy::default()
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// POST every alert as JSON here.
    pub webhook_url: Option<url::Url>,
    /// Admin chat for alerts in Telegram (used by the Telegram adapter's sink).
    pub telegram_chat_id: Option<i64>,
    /// Admin chat for alerts in MAX (used by the MAX adapter's sink).
    pub max_chat_id: Option<i64>,
    /// `[alerts.email]`: every alert as an e-mail through an SMTP server.
    pub email: Option<EmailAlertsConfig>,
}

impl AlertsConfig {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), KeyError> {
        match &self.email {
            Some(email) => email.validate(),
            None => Ok(()),
        }
    }
}

/// A setting that is wrong, by its full key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}`: {message}")]
pub struct KeyError {
    pub key: String,
    pub message: String,
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption, for a relay on the same host or network (port 25).
    None,
}

impl SmtpSecurity {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

/// `[alerts.email]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailAlertsConfig {
    pub host: String,
    /// 587, 465 or 25 by `security` unless given.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<secrecy::SecretString>,
    /// The sender, `alerts@example.ru` or `Zapis <alerts@example.ru>`.
    pub from: String,
    /// Every recipient; at least one.
    pub to: Vec<String>,
}

impl EmailAlertsConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.security.default_port())
    }

    pub fn validate(&self) -> Result<(), KeyError> {
        use secrecy::ExposeSecret;
        let key = |k: &str, message: String| KeyError {
            key: format!("alerts.email.{k}"),
            message,
        };
        if self.host.trim().is_empty() {
            return Err(key("host", "must not be empty".into()));
        }
        if self.security != SmtpSecurity::None {
            lettre::transport::smtp::client::TlsParameters::new(self.host.clone()).map_err(
                |e| {
                    key(
                        "host",
                        format!("{:?} cannot be checked by TLS: {e}", self.host),
                    )
                },
            )?;
        }
        if self.port == Some(0) {
            return Err(key("port", "must be a port number, 1 to 65535".into()));
        }
        self.from.parse::<lettre::message::Mailbox>().map_err(|e| {
            key(
                "from",
                format!("{:?} is not an e-mail address: {e}", self.from),
            )
        })?;
        if self.to.is_empty() {
            return Err(key("to", "needs at least one address".into()));
        }
        for to in &self.to {
            to.parse::<lettre::message::Mailbox>()
                .map_err(|e| key("to", format!("{to:?} is not an e-mail address: {e}")))?;
        }
        match (&self.username, &self.password) {
            (Some(_), None) => {
                return Err(key("password", "is needed with username".into()));
            }
            (None, Some(_)) => {
                return Err(key("username", "is needed with password".into()));
            }
            (Some(user), Some(password)) => {
                if user.trim().is_empty() {
                    return Err(key("username", "must not be empty".into()));
                }
                if password.expose_secret().is_empty() {
                    return Err(key("password", "must not be empty".into()));
                }
                if self.security == SmtpSecurity::None {
                    // The password would cross the network in clear text.
                    return Err(key(
                        "security",
                        "\"none\" with a password would send it unencrypted; use \"starttls\" or \"tls\""
                            .into(),
                    ));
                }
            }
            (None, None) => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected a number and a unit (ms, s, m, h, d), e.g. 15m")]
pub struct DurationError(pub String);

/// Parses `250ms`, `90s`, `15m`, `2h`, `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError(text.into()))?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| DurationError(text.into()))?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(DurationError(text.into())),
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| DurationError(text.into()))
}

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// A list of durations (`["24h", "2h"]`).
pub(crate) fn de_durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    list.iter()
        .map(|s| parse_duration(s).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sections_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("h").is_err());
        let c: SyncConfig = serde_json::from_str(r#"{"alert_after":"30m","workers":4}"#).unwrap();
        assert_eq!(c.alert_after, Duration::from_secs(1800));
        assert_eq!(c.workers, 4);
        assert_eq!(c.max_age, Duration::from_secs(7 * 86400));
        assert_eq!(c.reconcile_interval, Duration::from_secs(300));
        assert_eq!(c.done_retention, Duration::from_secs(7 * 86400));
        assert!(serde_json::from_str::<SyncConfig>(r#"{"alert_afetr":"30m"}"#).is_err());
        let a: AlertsConfig =
            serde_json::from_str(r#"{"webhook_url":"https://ops.example/hook"}"#).unwrap();
        assert!(a.webhook_url.is_some());
    }
}
