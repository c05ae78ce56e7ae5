//! Typed settings from one TOML file, overridable by `ZAPIS_SECTION__KEY` environment variables.
//! Unknown keys are rejected; every error names the key and where it came from.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::business::{BusinessConfig, PrivacyConfig};
use crate::domain::BusinessKind;
use crate::messenger::config::{MaxConfig, TelegramConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid configuration: key `{key}`: {message}")]
    Key { key: String, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub store: StoreConfig,
    pub business: BusinessConfig,
    #[serde(default)]
    pub booking: BookingConfig,
    #[serde(default)]
    pub telegram: Option<TelegramConfig>,
    #[serde(default)]
    pub max: Option<MaxConfig>,
    /// The CRM that gets a lead for every booking.
    #[serde(default)]
    pub crm: Option<crate::crm::config::CrmConfig>,
    /// Delivery workers, retries and the outage alert threshold.
    #[serde(default)]
    pub sync: crate::sync::SyncConfig,
    /// Where alerts about outages go.
    #[serde(default)]
    pub alerts: crate::sync::AlertsConfig,
    /// Reminders before a visit in the client's chat.
    #[serde(default)]
    pub reminders: crate::lifecycle::reminders::RemindersConfig,
    /// The HTTP server for webhooks and health checks.
    #[serde(default)]
    pub http: Option<HttpConfig>,
    /// How `zapis run` writes its log.
    #[serde(default)]
    pub log: LogConfig,
    /// How long webhook bodies, the chat log and dialog states are kept.
    #[serde(default)]
    pub retention: crate::store::retention::RetentionConfig,
    /// Landing forms, AlfaCRM, GetCourse and the courses of a school.
    #[serde(default)]
    pub school: Option<crate::school::config::SchoolConfig>,
    /// The business's 1C: OData client or CommerceML exchange endpoint.
    #[serde(default)]
    pub onec: Option<crate::accounting::config::OnecConfig>,
    /// The client's consent to the processing of their personal data.
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// "Call an administrator": the admin chat clients' questions go to, and its hours.
    #[serde(default)]
    pub support: Option<crate::support::SupportConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people, `json` (one object a line) for a log collector.
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, e.g. `0.0.0.0:8080`.
    pub listen: std::net::SocketAddr,
    /// The secret path segment vendors' webhooks must carry: `/webhooks/<system>/<secret>`.
    pub webhook_secret: SecretString,
    /// Proxies (CIDR blocks) whose `X-Forwarded-For` hops are stripped to find a form
    /// visitor's address (with `school.forms.trust_forwarded_for`).
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Connections served at once; one more is refused at once. Lowered at start to fit under
    /// the open-files limit.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A request's headers must arrive within this; also how long an idle connection lives.
    #[serde(
        default = "default_header_read_timeout",
        deserialize_with = "crate::sync::config::de_duration"
    )]
    pub header_read_timeout: std::time::Duration,
    /// The longest pause between two pieces of a request body.
    #[serde(
        default = "default_body_timeout",
        deserialize_with = "crate::sync::config::de_duration"
    )]
    pub body_timeout: std::time::Duration,
    /// A request must be answered within this, body reading included.
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "crate::sync::config::de_duration"
    )]
    pub request_timeout: std::time::Duration,
    /// Serve `/metrics` on `listen` too. Off by default: the numbers tell business volumes to
    /// anyone who can reach the webhook address.
    #[serde(default)]
    pub metrics: bool,
    /// Serve `/metrics` (alone) on this address as well, e.g. `127.0.0.1:9464` for a local
    /// Prometheus.
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Serve the browser console at `/console` (nothing in it opens without a user added by
    /// `zapis user add`).
    #[serde(default = "default_true")]
    pub console: bool,
    /// The address people and vendors reach this service at, e.g. `https://zapis.example.ru`:
    /// the console's webhook URLs start with it, and its cookies are `Secure` when it is https.
    #[serde(default)]
    pub public_url: Option<url::Url>,
}

fn default_true() -> bool {
    true
}

fn default_max_connections() -> usize {
    crate::http::server::Limits::default().max_connections
}
fn default_header_read_timeout() -> std::time::Duration {
    crate::http::server::Limits::default().header_read_timeout
}
fn default_body_timeout() -> std::time::Duration {
    crate::http::server::Limits::default().body_timeout
}
fn default_request_timeout() -> std::time::Duration {
    crate::http::server::Limits::default().request_timeout
}

impl HttpConfig {
    /// The server's limits as configured (before fitting under the descriptor limit).
    pub fn limits(&self) -> crate::http::server::Limits {
        crate::http::server::Limits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            body_timeout: self.body_timeout,
            request_timeout: self.request_timeout,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        use secrecy::ExposeSecret;
        let key = |k: &str, message: &str| ConfigError::Key {
            key: format!("http.{k}"),
            message: message.into(),
        };
        let secret = self.webhook_secret.expose_secret();
        if let Some(why) = crate::secrets::unusable(secret) {
            return Err(key("webhook_secret", why));
        }
        if secret.len() < 16
            || !secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(key(
                "webhook_secret",
                "use at least 16 characters of A-Z, a-z, 0-9, - and _",
            ));
        }
        if self.max_connections < 16 {
            return Err(key("max_connections", "must be at least 16"));
        }
        for (name, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_timeout", self.body_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if d < std::time::Duration::from_secs(1) || d > std::time::Duration::from_secs(600) {
                return Err(key(name, "must be between 1s and 10m"));
            }
        }
        if let Some(url) = &self.public_url
            && (!matches!(url.scheme(), "https" | "http") || url.host().is_none())
        {
            return Err(key(
                "public_url",
                "must be the http(s) address of this service, e.g. https://zapis.example.ru",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://zapis.db` or `postgres://user@host/db`.
    #[serde(default = "default_store_url")]
    pub url: String,
}

fn default_store_url() -> String {
    "sqlite://zapis.db".into()
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: default_store_url(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BookingSystemKind {
    #[default]
    Sandbox,
    Yclients,
    Dikidi,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BookingConfig {
    #[serde(default)]
    pub system: BookingSystemKind,
    /// `[booking.yclients]`, required when `system = "yclients"`.
    #[serde(default)]
    pub yclients: Option<crate::booking::yclients::YclientsConfig>,
    /// `[booking.dikidi]`, required when `system = "dikidi"`.
    #[serde(default)]
    pub dikidi: Option<crate::booking::dikidi::DikidiConfig>,
    /// `change_cutoff = "3h"`: closer than this to a visit, the client cannot cancel or move
    /// it in the chat and is asked to call. Not set: up to the visit itself.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub change_cutoff: Option<std::time::Duration>,
}

/// Longest `booking.change_cutoff` accepted: beyond a week it reads as a typo.
const MAX_CHANGE_CUTOFF: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

fn de_opt_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    crate::sync::config::de_duration(d).map(Some)
}

impl Config {
    /// Reads `path`, then applies `ZAPIS_SECTION__KEY` environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::Missing(path.to_path_buf()));
        }
        let figment = Figment::from(Toml::file_exact(path)).merge(env_provider());
        Self::from_figment_in(figment, path.parent())
    }

    /// The built-in sandbox salon used by `zapis demo`.
    pub fn demo(store_url: &str) -> Config {
        let base = Figment::from(Toml::string(DEMO_TOML))
            .merge(Serialized::default("store.url", store_url));
        Self::from_figment(base).expect("the built-in demo config is valid")
    }

    pub(crate) fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        Self::from_figment_in(figment, None)
    }

    /// `base`: the config file's directory, which relative paths in it start from.
    fn from_figment_in(figment: Figment, base: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config: Config = figment.extract().map_err(|e| {
            // One message per problem, each naming the key and its source, never the value.
            let all: Vec<String> = e
                .into_iter()
                .map(|e| without_value(e).to_string())
                .collect();
            ConfigError::Invalid(all.join("; ").replace("key \"default.", "key \""))
        })?;
        config.validate()?;
        config.business.texts = match &mut config.business.locales {
            None => crate::i18n::Texts::builtin(config.business.kind),
            Some(dir) => {
                if let Some(base) = base.filter(|_| dir.is_relative()) {
                    *dir = base.join(&*dir);
                }
                crate::i18n::Texts::load(config.business.kind, dir).map_err(|e| {
                    ConfigError::Key {
                        key: "business.locales".into(),
                        message: e.to_string(),
                    }
                })?
            }
        };
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.reminders
            .validate()
            .map_err(|message| ConfigError::Key {
                key: "reminders.offsets".into(),
                message,
            })?;
        if self
            .booking
            .change_cutoff
            .is_some_and(|c| c > MAX_CHANGE_CUTOFF)
        {
            return Err(ConfigError::Key {
                key: "booking.change_cutoff".into(),
                message: "must be at most 7d".into(),
            });
        }
        if self.sync.reconcile_interval.is_zero() {
            return Err(ConfigError::Key {
                key: "sync.reconcile_interval".into(),
                message: "must be positive".into(),
            });
        }
        if let Some(onec) = &self.onec {
            onec.validate().map_err(|e| ConfigError::Key {
                key: e.key,
                message: e.message,
            })?;
            if onec.mode == crate::accounting::config::OnecMode::Commerceml && self.http.is_none() {
                return Err(ConfigError::Key {
                    key: "http".into(),
                    message:
                        "onec.mode = \"commerceml\" needs the [http] server: 1C calls /1c/exchange"
                            .into(),
                });
            }
        }
        if let Some(crm) = &self.crm {
            crm.validate().map_err(|e| ConfigError::Key {
                key: e.key,
                message: e.message,
            })?;
        }
        if let Some(school) = &self.school {
            school.validate().map_err(|e| ConfigError::Key {
                key: e.key,
                message: e.message,
            })?;
        }
        if self.business.kind == BusinessKind::School
            && self
                .school
                .as_ref()
                .is_none_or(|s| s.alfacrm.is_none() || s.courses.is_empty())
        {
            return Err(ConfigError::Key {
                key: "business.kind".into(),
                message: "kind = \"school\" needs [school.alfacrm] and at least one \
                          [[school.courses]]: the bot reads courses and groups from AlfaCRM"
                    .into(),
            });
        }
        if let Some(http) = &self.http {
            http.validate()?;
        }
        self.privacy.validate().map_err(|e| ConfigError::Key {
            key: e.key,
            message: e.message,
        })?;
        self.alerts.validate().map_err(|e| ConfigError::Key {
            key: e.key,
            message: e.message,
        })?;
        if let Some(support) = &self.support {
            support
                .validate(self.telegram.is_some(), self.max.is_some())
                .map_err(|e| ConfigError::Key {
                    key: e.key,
                    message: e.message,
                })?;
        }
        if let Some(token) = self
            .crm
            .as_ref()
            .and_then(|c| c.bitrix24.as_ref())
            .and_then(|b| b.application_token.as_ref())
        {
            use secrecy::ExposeSecret;
            if let Some(why) = crate::secrets::unusable(token.expose_secret()) {
                return Err(ConfigError::Key {
                    key: "crm.bitrix24.application_token".into(),
                    message: why.into(),
                });
            }
        }
        if self.business.name.trim().is_empty() {
            return Err(ConfigError::Key {
                key: "business.name".into(),
                message: "must not be empty".into(),
            });
        }
        if self.business.id.trim().is_empty() {
            return Err(ConfigError::Key {
                key: "business.id".into(),
                message: "must not be empty".into(),
            });
        }
        if !(self.store.url.starts_with("sqlite:") || self.store.url.starts_with("postgres")) {
            // Only the scheme is shown: the rest of a URL may carry a password.
            let scheme = self
                .store
                .url
                .split_once("://")
                .map(|(s, _)| s)
                .filter(|s| s.len() <= 16 && s.chars().all(|c| c.is_ascii_alphanumeric()))
                .map_or_else(|| "this value".to_string(), |s| format!("the scheme {s:?}"));
            return Err(ConfigError::Key {
                key: "store.url".into(),
                message: format!(
                    "{scheme} is neither sqlite:// nor postgres:// (the URL is not shown: it may hold a password)"
                ),
            });
        }
        if let Some(max) = &self.max {
            max.validate().map_err(|e| ConfigError::Key {
                key: e.key,
                message: e.message,
            })?;
        }
        match self.booking.system {
            BookingSystemKind::Sandbox => {}
            BookingSystemKind::Yclients => {
                let Some(y) = &self.booking.yclients else {
                    return Err(ConfigError::Key {
                        key: "booking.yclients".into(),
                        message: "system = \"yclients\" needs a [booking.yclients] section \
                                  with company_id and partner_token"
                            .into(),
                    });
                };
                if !(1..=5).contains(&y.rate_limit_per_second) {
                    return Err(ConfigError::Key {
                        key: "booking.yclients.rate_limit_per_second".into(),
                        message: "must be 1..=5, YClients allows 5 requests a second".into(),
                    });
                }
            }
            BookingSystemKind::Dikidi => {
                use crate::booking::dikidi::DikidiMode;
                let Some(d) = &self.booking.dikidi else {
                    return Err(ConfigError::Key {
                        key: "booking.dikidi".into(),
                        message: "system = \"dikidi\" needs a [booking.dikidi] section \
                                  with company_id"
                            .into(),
                    });
                };
                if d.mode == DikidiMode::Partner && d.partner_token.is_none() {
                    return Err(ConfigError::Key {
                        key: "booking.dikidi.partner_token".into(),
                        message: "mode = \"partner\" needs the token Dikidi issued".into(),
                    });
                }
                // Dikidi publishes no limit; more than the busiest OSS client (7/s) is rude.
                if !(1..=7).contains(&d.rate_limit_per_second) {
                    return Err(ConfigError::Key {
                        key: "booking.dikidi.rate_limit_per_second".into(),
                        message: "must be 1..=7".into(),
                    });
                }
                if d.poll_jitter_secs >= d.poll_interval_secs {
                    return Err(ConfigError::Key {
                        key: "booking.dikidi.poll_jitter_secs".into(),
                        message: "must be smaller than poll_interval_secs".into(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A configuration error that says what was wrong with a value without repeating it: the value
/// may be a token (`token = 12345` is an integer where a string belongs), and the TOML parser
/// quotes the whole offending line.
fn without_value(mut e: figment::Error) -> figment::Error {
    use figment::error::{Actual, Kind};
    let kind_of = |a: &Actual| -> &'static str {
        match a {
            Actual::Bool(_) => "a boolean",
            Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
            Actual::Float(_) => "a float",
            Actual::Char(_) => "a character",
            Actual::Str(_) | Actual::Other(_) => "a string",
            Actual::Bytes(_) => "bytes",
            Actual::Unit | Actual::Option => "nothing",
            Actual::Seq => "a list",
            Actual::Map => "a table",
            _ => "a value",
        }
    };
    e.kind = match e.kind {
        Kind::InvalidType(actual, expected) => Kind::Message(format!(
            "invalid type: found {}, expected {expected}",
            kind_of(&actual)
        )),
        Kind::InvalidValue(actual, expected) => Kind::Message(format!(
            "invalid value: {}, expected {expected}",
            kind_of(&actual)
        )),
        Kind::Message(m) => Kind::Message(without_quoted_source(&m)),
        other => other,
    };
    e
}

/// Drops the source excerpt TOML parse errors carry (`3 | token = "ab`, the caret line).
fn without_quoted_source(message: &str) -> String {
    let kept: Vec<&str> = message
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            let gutter = t.split_once('|').is_some_and(|(head, _)| {
                head.trim().is_empty() || head.trim().chars().all(|c| c.is_ascii_digit())
            });
            !gutter && !t.is_empty()
        })
        .collect();
    kept.join(" ")
}

/// `ZAPIS_TELEGRAM__TOKEN` → `telegram.token`. Variables without a section separator (such as
/// test settings) are not configuration keys and are left alone.
fn env_provider() -> Env {
    Env::prefixed("ZAPIS_")
        .split("__")
        .filter(|k| k.as_str().contains("__") || k.as_str().contains('.'))
}

const DEMO_TOML: &str = r#"
[business]
name = "Салон «Лилия»"
timezone = "Europe/Moscow"
locale = "ru"
address = "Москва, ул. Пушкина, 10"
phone = "+7 495 123-45-67"

[booking]
system = "sandbox"
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;
    use crate::messenger::config::MaxMode;
    use secrecy::ExposeSecret;
    use url::Url;

    /// Loads inside figment's Jail: it serialises tests that touch the environment and clears
    /// `ZAPIS_*` variables another test may have set.
    #[allow(clippy::result_large_err)] // Jail's closure signature is figment's, not ours.
    fn load(toml: &str) -> Result<Config, ConfigError> {
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("zapis.toml", toml)?;
            result = Some(Config::load(Path::new("zapis.toml")));
            Ok(())
        });
        result.expect("the jail ran")
    }

    const MINIMAL: &str = r#"
[business]
name = "Салон"
timezone = "Asia/Yekaterinburg"
"#;

    #[test]
    fn privacy_consent_is_on_by_default_and_a_bad_policy_url_is_refused_by_name() {
        let c = load(MINIMAL).expect("loads");
        assert!(c.privacy.consent);
        assert_eq!(c.privacy.policy_url, None);
        let c = load(&format!(
            "{MINIMAL}\n[privacy]\nconsent = false\npolicy_url = \"https://salon.example/privacy\"\n"
        ))
        .expect("loads");
        assert!(!c.privacy.consent);
        assert_eq!(
            c.privacy.policy_url.as_ref().map(Url::as_str),
            Some("https://salon.example/privacy")
        );
        for bad in [
            "http://salon.example/privacy",
            "not a link",
            "mailto:a@b.ru",
        ] {
            let err = load(&format!("{MINIMAL}\n[privacy]\npolicy_url = \"{bad}\"\n"))
                .expect_err(bad)
                .to_string();
            assert!(err.contains("privacy.policy_url"), "{bad}: {err}");
        }
        let err = load(&format!("{MINIMAL}\n[privacy]\nconsent = \"yes\"\n"))
            .expect_err("a string")
            .to_string();
        assert!(err.contains("privacy.consent"), "{err}");
        let err = load(&format!("{MINIMAL}\n[privacy]\nconsnet = false\n"))
            .expect_err("a typo")
            .to_string();
        assert!(err.contains("consnet"), "{err}");
    }

    #[test]
    fn retention_periods_parse_and_a_short_or_unknown_one_is_refused_by_name() {
        let c = load(&format!(
            "{MINIMAL}\n[retention]\ninbox_bodies = \"7d\"\nchat_log = \"off\"\n"
        ))
        .expect("loads");
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(c.retention.inbox_bodies, Some(7 * day));
        assert_eq!(c.retention.chat_log, None);
        assert_eq!(c.retention.dialogs, Some(365 * day));
        assert_eq!(
            load(MINIMAL).expect("loads").retention.chat_log,
            Some(180 * day)
        );
        for (toml, named) in [
            ("chat_log = \"10m\"", "shorter than an hour"),
            ("chat_logs = \"30d\"", "chat_logs"),
            ("dialogs = \"soon\"", "soon"),
        ] {
            let e = load(&format!("{MINIMAL}\n[retention]\n{toml}\n"))
                .expect_err(toml)
                .to_string();
            assert!(e.contains("retention") && e.contains(named), "{toml}: {e}");
        }
    }

    #[test]
    fn alerts_by_email_load_and_a_wrong_setting_is_refused_by_its_key() {
        const EMAIL: &str = "[alerts.email]\nhost = \"smtp.example.ru\"\nfrom = \"alerts@salon.example\"\n\
                             to = [\"owner@salon.example\"]\n";
        let c = load(&format!(
            "{MINIMAL}\n{EMAIL}username = \"alerts\"\npassword = \"smtp-pass-0123\"\n"
        ))
        .expect("loads");
        let scrubbed = crate::secrets::Scrubber::from_config(&c)
            .scrub("535 auth failed for alerts / smtp-pass-0123")
            .into_owned();
        assert!(!scrubbed.contains("smtp-pass-0123"), "{scrubbed}");
        let email = c.alerts.email.expect("[alerts.email]");
        assert_eq!(email.security, crate::sync::SmtpSecurity::Starttls);
        assert_eq!(email.port(), 587);
        assert_eq!(
            email.password.map(|p| p.expose_secret().to_string()),
            Some("smtp-pass-0123".to_string())
        );
        for (extra, named) in [
            ("security = \"ssl\"", "alerts.email.security"),
            ("username = \"alerts\"", "alerts.email.password"),
            (
                "username = \"a\"\npassword = \"p\"\nsecurity = \"none\"",
                "alerts.email.security",
            ),
            ("port = 0", "alerts.email.port"),
            ("reply_to = \"x@y.z\"", "reply_to"),
        ] {
            let e = load(&format!("{MINIMAL}\n{EMAIL}{extra}\n"))
                .expect_err(extra)
                .to_string();
            assert!(e.contains(named), "{extra}: {e}");
        }
        for (section, named) in [
            (
                "[alerts.email]\nhost = \"h\"\nfrom = \"not an address\"\nto = [\"a@b.c\"]\n",
                "alerts.email.from",
            ),
            (
                "[alerts.email]\nhost = \"h\"\nfrom = \"a@b.c\"\nto = []\n",
                "alerts.email.to",
            ),
            (
                "[alerts.email]\nhost = \"h\"\nfrom = \"a@b.c\"\nto = [\"a@b.c\", \"@\"]\n",
                "alerts.email.to",
            ),
            (
                "[alerts.email]\nhost = \"h\"\nfrom = \"a@b.c\"\n",
                "missing field `to`",
            ),
        ] {
            let e = load(&format!("{MINIMAL}\n{section}"))
                .expect_err(section)
                .to_string();
            assert!(e.contains(named), "{section}: {e}");
            assert!(!e.contains("smtp-pass"), "{e}");
        }
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/zapis.example.toml"))
                .expect("zapis.example.toml is shipped");
        let c = load(&text).expect("the example loads");
        assert!(c.telegram.is_some() && c.max.is_some());
        assert_eq!(c.sync.alert_after, std::time::Duration::from_secs(2 * 3600));
    }

    #[test]
    fn the_http_example_block_is_valid_when_uncommented() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/zapis.example.toml"))
                .expect("zapis.example.toml is shipped");
        let start = text.find("# [http]\n").expect("an [http] example");
        let block: String = text[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches("# "))
            // Its prose lines are not TOML; its keys and their trailing comments are.
            .filter(|l| {
                l.starts_with('[')
                    || l.split_once(" = ")
                        .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        // The example's secret is a placeholder that is refused at start.
        let block = block.replace(
            "at-least-16-chars-of-A-Za-z0-9-_",
            "0f1e2d3c4b5a69788796a5b4",
        );
        let c = load(&format!("{MINIMAL}\n{block}")).expect("the [http] example loads");
        let http = c.http.expect("[http]");
        assert!(!http.metrics, "metrics stay off unless asked for");
        assert_eq!(
            http.metrics_listen,
            Some("127.0.0.1:9464".parse().expect("an address"))
        );
        let err = load(&format!(
            "{MINIMAL}\n[http]\nlisten = \"127.0.0.1:8080\"\n\
             webhook_secret = \"0f1e2d3c4b5a69788796a5b4\"\nmetrics = \"yes\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("metrics"), "{err}");
    }

    /// The commented `[onec]` block of the example, uncommented.
    fn onec_example() -> String {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/zapis.example.toml"))
                .expect("zapis.example.toml is shipped");
        let start = text.find("# [onec]\n").expect("an [onec] example");
        text[start..]
            .lines()
            .take_while(|l| l.starts_with("# "))
            .map(|l| l.trim_start_matches("# "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_onec_example_is_valid_in_both_modes() {
        let c = load(&format!("{MINIMAL}\n{}", onec_example())).expect("odata example");
        let onec = c.onec.expect("onec");
        assert_eq!(onec.mode, crate::accounting::config::OnecMode::Odata);
        assert_eq!(onec.objects.invoice, "Document_СчетНаОплатуПокупателю");
        assert_eq!(onec.services.len(), 1);
        let cml = onec_example()
            .replacen("mode = \"odata\"", "mode = \"commerceml\"", 1)
            .lines()
            .filter(|l| !l.starts_with("stock_check_interval"))
            .collect::<Vec<_>>()
            .join("\n");
        // The example's exchange password is a placeholder: refused, naming the key.
        let err = load(&format!("{MINIMAL}\n{cml}")).unwrap_err().to_string();
        assert!(err.contains("onec.commerceml.password"), "{err}");
        let cml = cml.replacen(
            "password = \"secret\"                   # placeholder",
            "password = \"Xq7-long-random-exchange-password\" #",
            1,
        );
        let err = load(&format!("{MINIMAL}\n{cml}")).unwrap_err().to_string();
        assert!(err.contains("`http`"), "{err}");
        let http = "[http]\nlisten = \"127.0.0.1:8080\"\nwebhook_secret = \"0123456789abcdef\"\n";
        let c = load(&format!("{MINIMAL}\n{http}\n{cml}")).expect("commerceml example");
        assert_eq!(
            c.onec.and_then(|o| o.commerceml).map(|m| m.file_limit),
            Some(1_048_576)
        );
    }

    #[test]
    fn the_change_cutoff_is_a_duration_and_a_bad_one_names_the_key() {
        let c = load(MINIMAL).expect("minimal");
        assert_eq!(
            c.booking.change_cutoff, None,
            "no cut-off unless configured"
        );
        let with = |v: &str| {
            load(&format!("{MINIMAL}\n[booking]\nchange_cutoff = {v}\n")).map_err(|e| e.to_string())
        };
        let c = with("\"3h\"").expect("3h");
        assert_eq!(
            c.booking.change_cutoff,
            Some(std::time::Duration::from_secs(3 * 3600))
        );
        assert_eq!(
            with("\"90m\"").expect("90m").booking.change_cutoff,
            Some(std::time::Duration::from_secs(90 * 60))
        );
        for bad in ["\"soon\"", "\"3 hours\"", "3", "\"30d\""] {
            let err = with(bad).expect_err(bad);
            assert!(err.contains("booking.change_cutoff"), "{bad}: {err}");
        }
    }

    #[test]
    fn onec_odata_without_organisation_names_the_key() {
        let broken = onec_example().replace("organisation_key = ", "# organisation_key = ");
        let err = load(&format!("{MINIMAL}\n{broken}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("onec.organisation_key"), "{err}");
        let bad_service = onec_example().replace(
            "haircut = \"7a2b9c44-7b3c-11e6-8343-40167e2531c3\"",
            "haircut = \"not-a-guid\"",
        );
        let err = load(&format!("{MINIMAL}\n{bad_service}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("onec.services.haircut"), "{err}");
        let no_section = format!("{MINIMAL}\n[onec]\nmode = \"commerceml\"\n");
        let err = load(&no_section).unwrap_err().to_string();
        assert!(err.contains("onec.commerceml"), "{err}");
    }

    #[test]
    fn the_stock_check_interval_is_checked_at_start() {
        let c = load(&format!("{MINIMAL}\n{}", onec_example())).expect("odata example");
        let onec = c.onec.expect("onec");
        assert_eq!(
            onec.stock_check_every(),
            Some(std::time::Duration::from_secs(3600))
        );
        let with = |from: &str, to: &str| {
            load(&format!(
                "{MINIMAL}\n{}",
                onec_example().replacen(from, to, 1)
            ))
            .map_err(|e| e.to_string())
        };
        let c = with(
            "stock_check_interval = \"1h\"",
            "stock_check_interval = \"10m\"",
        )
        .expect("10m");
        assert_eq!(
            c.onec.and_then(|o| o.stock_check_every()),
            Some(std::time::Duration::from_secs(600))
        );
        let err = with(
            "stock_check_interval = \"1h\"",
            "stock_check_interval = \"10s\"",
        )
        .unwrap_err();
        assert!(err.contains("onec.stock_check_interval"), "{err}");
        let err = with("low_stock_threshold = 3", "").unwrap_err();
        assert!(err.contains("onec.stock_check_interval"), "{err}");
        assert!(err.contains("low_stock_threshold"), "{err}");
        let err = with(
            "stock_check_interval = \"1h\"",
            "stock_check_interval = \"hourly\"",
        )
        .unwrap_err();
        assert!(err.contains("stock_check_interval"), "{err}");
        let http = "[http]\nlisten = \"127.0.0.1:8080\"\nwebhook_secret = \"0123456789abcdef\"\n";
        let cml = onec_example().replacen("mode = \"odata\"", "mode = \"commerceml\"", 1);
        let err = load(&format!("{MINIMAL}\n{http}\n{cml}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("onec.stock_check_interval"), "{err}");
        // Without a threshold and without the key there is no check, and no error.
        let none = onec_example()
            .replace("low_stock_threshold = 3", "")
            .replace("stock_check_interval = \"1h\"", "");
        let c = load(&format!("{MINIMAL}\n{none}")).expect("no stock check");
        assert_eq!(c.onec.and_then(|o| o.stock_check_every()), None);
    }

    #[test]
    fn the_example_school_block_is_valid_when_uncommented() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/zapis.example.toml"))
                .expect("zapis.example.toml is shipped");
        let start = text
            .find("# [school.forms]")
            .expect("the school block is shipped");
        let block: String = text[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
            .map(|l| format!("{l}\n"))
            .collect();
        let school_kind = format!(
            "{}\n{block}",
            MINIMAL.replace("[business]", "[business]\nkind = \"school\"")
        );
        let c = load(&school_kind).expect("the school example loads");
        let school = c.school.expect("school section");
        assert_eq!(c.business.kind, BusinessKind::School);
        assert_eq!(school.courses[0].alfacrm_group_ids, vec![12, 13]);
        assert_eq!(school.alfacrm.unwrap().lead_sources["getcourse"], 9);
        let err = load(&format!("{MINIMAL}\n[school.alfacrm]\ncolour = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        let err = load(&MINIMAL.replace("[business]", "[business]\nkind = \"school\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("business.kind"), "{err}");
    }

    #[test]
    fn business_words_follow_the_kind_and_a_locales_dir_beside_the_config() {
        use crate::i18n::Lang;
        let c = load(MINIMAL).expect("loads");
        assert_eq!(c.business.kind, BusinessKind::Salon);
        assert_eq!(
            c.business.texts.t(Lang::Ru, "btn-any-master"),
            "Любой мастер"
        );
        let clinic = MINIMAL.replace("[business]", "[business]\nkind = \"clinic\"");
        let c = load(&clinic).expect("a clinic loads");
        assert_eq!(c.business.kind, BusinessKind::Clinic);
        assert_eq!(c.business.texts.t(Lang::Ru, "btn-any-master"), "Любой врач");

        #[allow(clippy::result_large_err)]
        fn load_in_conf(toml: &str, ftl: &str) -> Result<Config, ConfigError> {
            let mut result = None;
            figment::Jail::expect_with(|jail| {
                jail.clear_env();
                jail.create_dir("conf/words/ru")?;
                jail.create_file("conf/words/ru/main.ftl", ftl)?;
                jail.create_file("conf/zapis.toml", toml)?;
                result = Some(Config::load(Path::new("conf/zapis.toml")));
                Ok(())
            });
            result.expect("the jail ran")
        }
        let with_dir = clinic.replace("[business]", "[business]\nlocales = \"words\"");
        let c = load_in_conf(&with_dir, "btn-any-master = Кто угодно\n").expect("loads");
        assert_eq!(c.business.texts.t(Lang::Ru, "btn-any-master"), "Кто угодно");
        assert_eq!(c.business.texts.t(Lang::En, "btn-any-master"), "Any doctor");
        let err = load_in_conf(&with_dir, "btn-any-master = { $who }\n")
            .unwrap_err()
            .to_string();
        for want in [
            "business.locales",
            "words/ru/main.ftl",
            "`btn-any-master`",
            "$who",
        ] {
            assert!(err.contains(want), "{want:?} missing in {err}");
        }
        let err = load(&with_dir).unwrap_err().to_string();
        assert!(err.contains("business.locales"), "{err}");
        let err = load(&MINIMAL.replace("[business]", "[business]\nkind = \"spa\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("kind"), "{err}");
    }

    #[test]
    fn minimal_config_fills_defaults() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(c.store.url, "sqlite://zapis.db");
        assert_eq!(c.business.timezone, chrono_tz::Asia::Yekaterinburg);
        assert_eq!(c.business.locale, Lang::Ru);
        assert_eq!(c.booking.system, BookingSystemKind::Sandbox);
        assert!(c.telegram.is_none());
    }

    #[test]
    fn unknown_key_is_rejected_with_key_and_file_named() {
        let err = load(&format!("{MINIMAL}\ncolour = \"red\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        assert!(err.contains("zapis.toml"), "{err}");
    }

    #[test]
    fn telegram_limits_default_to_telegrams_and_a_zero_names_the_key() {
        let c = load(&format!("{MINIMAL}\n[telegram]\ntoken = \"1:A\"\n")).unwrap();
        let limits = c.telegram.unwrap().limits;
        assert!(limits.enabled);
        assert_eq!(limits.messages_per_second.get(), 30);
        assert_eq!(limits.chat_messages_per_second.get(), 1);
        assert_eq!(limits.group_messages_per_minute.get(), 20);
        let c = load(&format!(
            "{MINIMAL}\n[telegram]\ntoken = \"1:A\"\n[telegram.limits]\nenabled = false\nchat_burst = 5\n"
        ))
        .unwrap();
        let limits = c.telegram.unwrap().limits;
        assert!(!limits.enabled);
        assert_eq!(limits.chat_burst.get(), 5);
        let err = load(&format!(
            "{MINIMAL}\n[telegram]\ntoken = \"1:A\"\n[telegram.limits]\nmessages_per_second = 0\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("telegram.limits.messages_per_second"), "{err}");
    }

    #[test]
    fn bad_timezone_names_the_key() {
        let err = load("[business]\nname = \"S\"\ntimezone = \"Mars/Olympus\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("business.timezone"), "{err}");
        assert!(err.contains("zapis.toml"), "{err}");
    }

    #[test]
    // Jail's closure signature is figment's, not ours.
    #[allow(clippy::result_large_err)]
    fn env_overrides_the_file_and_secrets_never_print() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "zapis.toml",
                &format!("{MINIMAL}\n[telegram]\ntoken = \"from-file\"\n"),
            )?;
            jail.set_env("ZAPIS_TELEGRAM__TOKEN", "123:SECRET");
            jail.set_env("ZAPIS_TEST_POSTGRES_URL", "postgres://ignored");
            let c = Config::load(Path::new("zapis.toml")).expect("config loads");
            let tg = c.telegram.as_ref().expect("telegram section");
            assert_eq!(tg.token.expose_secret(), "123:SECRET");
            assert!(!format!("{c:?}").contains("SECRET"));
            Ok(())
        });
    }

    #[test]
    fn yclients_needs_its_section_and_reads_defaults() {
        let err = load(&format!("{MINIMAL}\n[booking]\nsystem = \"yclients\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("booking.yclients"), "{err}");
        let c = load(&format!(
            "{MINIMAL}\n[booking]\nsystem = \"yclients\"\n[booking.yclients]\ncompany_id = 42\npartner_token = \"PT-SECRET\"\n"
        ))
        .unwrap();
        let y = c.booking.yclients.as_ref().expect("section");
        assert_eq!(y.company_id, 42);
        assert_eq!(y.base_url.as_str(), "https://api.yclients.com/");
        assert_eq!(y.slot_cache_ttl_secs, 30);
        assert_eq!(y.rate_limit_per_second, 5);
        assert_eq!(y.partner_token.expose_secret(), "PT-SECRET");
        assert!(!format!("{c:?}").contains("PT-SECRET"));
        let err = load(&format!(
            "{MINIMAL}\n[booking]\nsystem = \"yclients\"\n[booking.yclients]\ncompany_id = 1\npartner_token = \"x\"\nrate_limit_per_second = 50\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("rate_limit_per_second"), "{err}");
        let err = load(&format!(
            "{MINIMAL}\n[booking]\nsystem = \"yclients\"\n[booking.yclients]\ncompany_id = 1\npartner_token = \"x\"\ncolour = 1\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn max_section_reads_defaults_and_checks_webhook_settings() {
        let c = load(&format!("{MINIMAL}\n[max]\ntoken = \"MAX-SECRET\"\n")).unwrap();
        let m = c.max.as_ref().expect("max section");
        assert_eq!(m.api_url.as_str(), "https://platform-api2.max.ru/");
        assert_eq!(m.mode, MaxMode::Polling);
        assert!(!format!("{c:?}").contains("MAX-SECRET"));
        let err = load(&format!(
            "{MINIMAL}\n[max]\ntoken = \"t\"\nmode = \"webhook\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("max.webhook_url"), "{err}");
        let err = load(&format!(
            "{MINIMAL}\n[max]\ntoken = \"t\"\nwebhook_secret = \"no spaces!\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("max.webhook_secret"), "{err}");
        let err = load(&format!(
            "{MINIMAL}\n[max]\ntoken = \"t\"\nwebhook_url = \"http://x.ru/h\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("https"), "{err}");
        let err = load(&format!(
            "{MINIMAL}\n[max]\ntoken = \"t\"\nca_cert = \"/nonexistent/ca.pem\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("max.ca_cert"), "{err}");
        let system_roots = "/etc/ssl/certs/ca-certificates.crt";
        if Path::new(system_roots).exists() {
            let c = load(&format!(
                "{MINIMAL}\n[max]\ntoken = \"t\"\nca_cert = \"{system_roots}\"\n"
            ))
            .unwrap();
            assert!(c.max.unwrap().ca_cert.is_some());
        }
        let err = load(&format!("{MINIMAL}\n[max]\ntoken = \"t\"\ncolour = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        let c = load(&format!(
            "{MINIMAL}\n[max]\ntoken = \"t\"\nmode = \"webhook\"\nwebhook_url = \"https://zapis.example/webhooks/max/abcde\"\nwebhook_secret = \"abc_DEF-123\"\n"
        ))
        .unwrap();
        assert_eq!(c.max.unwrap().mode, MaxMode::Webhook);
    }

    #[test]
    fn dikidi_needs_its_section_and_reads_defaults() {
        use crate::booking::dikidi::DikidiMode;
        let err = load(&format!("{MINIMAL}\n[booking]\nsystem = \"dikidi\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("booking.dikidi"), "{err}");
        let c = load(&format!(
            "{MINIMAL}\n[booking]\nsystem = \"dikidi\"\n[booking.dikidi]\ncompany_id = 550001\n"
        ))
        .unwrap();
        let d = c.booking.dikidi.as_ref().expect("section");
        assert_eq!(d.mode, DikidiMode::Widget);
        assert_eq!(d.base_url.as_str(), "https://dikidi.net/");
        assert_eq!(d.poll_interval_secs, 300);
        let err = load(&format!(
            "{MINIMAL}\n[booking]\nsystem = \"dikidi\"\n[booking.dikidi]\ncompany_id = 1\nmode = \"partner\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("partner_token"), "{err}");
        let c = load(&format!(
            "{MINIMAL}\n[booking]\nsystem = \"dikidi\"\n[booking.dikidi]\ncompany_id = 1\nmode = \"partner\"\npartner_token = \"DK-SECRET\"\n"
        ))
        .unwrap();
        assert!(!format!("{c:?}").contains("DK-SECRET"));
    }

    #[test]
    fn missing_file_is_named() {
        let err = Config::load(Path::new("/nonexistent/zapis.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/zapis.toml"), "{err}");
    }

    #[test]
    fn demo_config_is_valid() {
        let c = Config::demo("sqlite::memory:");
        assert_eq!(c.store.url, "sqlite::memory:");
        assert_eq!(c.business.timezone, chrono_tz::Europe::Moscow);
    }
}
