//! `[crm]` settings. The lead wires [`CrmConfig`] into the main `Config` as `crm`.
//!
//! ```toml
//! [crm]
//! system = "amocrm"
//!
//! [crm.amocrm]
//! base_url = "https://salon.amocrm.ru"
//! token = "long-lived token"            # or client_id / client_secret / redirect_uri
//! pipeline_id = 3177727
//! new_status_id = 29352079
//! task_lead_time = "2h"                 # or a number of minutes
//! booking_id_field_id = 771234          # optional; otherwise a `zapis:<id>` tag is used
//! ```

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use url::Url;

/// amoCRM's system stages: every pipeline ends in these two.
pub const AMO_WON_STATUS_ID: i64 = 142;
pub const AMO_LOST_STATUS_ID: i64 = 143;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmConfig {
    pub system: CrmSystem,
    #[serde(default)]
    pub amocrm: Option<AmoCrmConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrmSystem {
    Amocrm,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: key `{key}`: {message}")]
pub struct CrmConfigError {
    pub key: String,
    pub message: String,
}

impl CrmConfig {
    pub fn validate(&self) -> Result<(), CrmConfigError> {
        match self.system {
            CrmSystem::Amocrm => match &self.amocrm {
                Some(amo) => amo.validate(),
                None => Err(CrmConfigError {
                    key: "crm.amocrm".into(),
                    message: "system = \"amocrm\" needs a [crm.amocrm] section".into(),
                }),
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmoCrmConfig {
    /// The account's own address (`https://{subdomain}.amocrm.ru`): amoCRM refuses requests
    /// made to the common domain.
    pub base_url: Url,
    /// A long-lived token of a private integration. Set this, or the three OAuth keys.
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// Sent verbatim: amoCRM compares it with the integration's setting, and a URL parser
    /// would add a trailing slash to a bare host.
    #[serde(default)]
    pub redirect_uri: Option<String>,

    pub pipeline_id: i64,
    /// Stage for a fresh booking; amoCRM puts a lead into the pipeline's first stage when absent.
    #[serde(default)]
    pub new_status_id: Option<i64>,
    /// A manager moving a lead to the cancelled stage cancels the visit in the schedule and
    /// tells the client.
    #[serde(default = "default_true")]
    pub cancel_from_crm: bool,
    #[serde(default = "default_cancelled")]
    pub cancelled_status_id: i64,
    #[serde(default = "default_done")]
    pub done_status_id: i64,
    /// Sent with a move to "lost" so the manager sees why.
    #[serde(default)]
    pub loss_reason_id: Option<i64>,
    #[serde(default)]
    pub responsible_user_id: Option<i64>,
    /// 1 = follow-up, 2 = meeting (amoCRM's predefined task types).
    #[serde(default = "default_task_type")]
    pub task_type_id: i64,
    /// How long before the visit the manager's task falls due.
    #[serde(default = "default_task_lead_time")]
    pub task_lead_time: LeadTime,
    /// A text custom field of leads holding our booking id (the natural key searched before
    /// every create). Without it a `zapis:<id>` tag plays that role.
    #[serde(default)]
    pub booking_id_field_id: Option<i64>,
    /// A text custom field of leads for the deep-link start payload; a `start:<payload>` tag
    /// otherwise.
    #[serde(default)]
    pub start_payload_field_id: Option<i64>,
    /// Tag put on every lead the bot creates.
    #[serde(default = "default_bot_tag")]
    pub bot_tag: String,
    /// Prefix of the channel tag (`telegram`, `max`, `web_form`).
    #[serde(default)]
    pub channel_tag_prefix: String,
    /// Prefix of the campaign tag (tracked link name, else utm_campaign).
    #[serde(default = "default_campaign_prefix")]
    pub campaign_tag_prefix: String,
    /// amoCRM documents no note size limit; long transcripts are split into notes of at most
    /// this many characters so each stays readable in the card.
    #[serde(default = "default_note_max_chars")]
    pub note_max_chars: usize,
    /// Client-side ceiling. amoCRM allows 7 requests per second; one below leaves room for
    /// network jitter bunching requests up on arrival.
    #[serde(default = "default_rps")]
    pub max_requests_per_second: u32,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_cancelled() -> i64 {
    AMO_LOST_STATUS_ID
}
fn default_done() -> i64 {
    AMO_WON_STATUS_ID
}
fn default_task_type() -> i64 {
    1
}
fn default_task_lead_time() -> LeadTime {
    LeadTime(Duration::from_secs(3600))
}
fn default_bot_tag() -> String {
    "zapis".into()
}
fn default_campaign_prefix() -> String {
    "campaign:".into()
}
fn default_note_max_chars() -> usize {
    4000
}
fn default_rps() -> u32 {
    6
}
fn default_timeout() -> u64 {
    30
}

/// The documented amoCRM ceiling.
pub const AMO_MAX_RPS: u32 = 7;

impl AmoCrmConfig {
    /// A config with every optional key at its default, for tests and examples.
    pub fn new(base_url: Url, pipeline_id: i64) -> AmoCrmConfig {
        AmoCrmConfig {
            base_url,
            token: None,
            client_id: None,
            client_secret: None,
            redirect_uri: None,
            pipeline_id,
            new_status_id: None,
            cancelled_status_id: default_cancelled(),
            cancel_from_crm: true,
            done_status_id: default_done(),
            loss_reason_id: None,
            responsible_user_id: None,
            task_type_id: default_task_type(),
            task_lead_time: default_task_lead_time(),
            booking_id_field_id: None,
            start_payload_field_id: None,
            bot_tag: default_bot_tag(),
            channel_tag_prefix: String::new(),
            campaign_tag_prefix: default_campaign_prefix(),
            note_max_chars: default_note_max_chars(),
            max_requests_per_second: default_rps(),
            timeout_secs: default_timeout(),
        }
    }

    pub fn uses_oauth(&self) -> bool {
        self.token.is_none()
    }

    pub fn validate(&self) -> Result<(), CrmConfigError> {
        let err = |key: &str, message: &str| CrmConfigError {
            key: format!("crm.amocrm.{key}"),
            message: message.into(),
        };
        if !matches!(self.base_url.scheme(), "http" | "https") || self.base_url.host().is_none() {
            return Err(err(
                "base_url",
                "must be the account URL, https://{subdomain}.amocrm.ru",
            ));
        }
        let oauth_keys = [
            self.client_id.is_some(),
            self.client_secret.is_some(),
            self.redirect_uri.is_some(),
        ];
        match (self.token.is_some(), oauth_keys) {
            (true, [false, false, false]) | (false, [true, true, true]) => {}
            (true, _) => {
                return Err(err(
                    "token",
                    "set either a long-lived token or client_id/client_secret/redirect_uri, not both",
                ));
            }
            (false, _) => {
                return Err(err(
                    "client_id",
                    "OAuth needs client_id, client_secret and redirect_uri (or set a long-lived token)",
                ));
            }
        }
        if let Some(uri) = &self.redirect_uri
            && Url::parse(uri).is_err()
        {
            return Err(err("redirect_uri", "must be an absolute URL"));
        }
        if self.max_requests_per_second == 0 || self.max_requests_per_second > AMO_MAX_RPS {
            return Err(err(
                "max_requests_per_second",
                "must be between 1 and 7 (amoCRM's documented limit)",
            ));
        }
        if self.note_max_chars < 200 {
            return Err(err("note_max_chars", "must be at least 200"));
        }
        if self.cancelled_status_id == AMO_LOST_STATUS_ID
            && self.loss_reason_id.is_some_and(|id| id <= 0)
        {
            return Err(err("loss_reason_id", "must be a positive id"));
        }
        Ok(())
    }
}

/// A duration given as minutes (`90`) or as a short string (`"90m"`, `"2h"`, `"1h30m"`, `"1d"`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LeadTime(pub Duration);

impl fmt::Debug for LeadTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m", self.0.as_secs() / 60)
    }
}

impl LeadTime {
    pub fn parse(s: &str) -> Result<LeadTime, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty duration".into());
        }
        if let Ok(minutes) = s.parse::<u64>() {
            return Ok(LeadTime(Duration::from_secs(minutes * 60)));
        }
        let mut total = 0u64;
        let mut number = String::new();
        for ch in s.chars().filter(|c| !c.is_whitespace()) {
            if ch.is_ascii_digit() {
                number.push(ch);
                continue;
            }
            let n: u64 = number
                .parse()
                .map_err(|_| format!("{s:?}: expected a number before {ch:?}"))?;
            number.clear();
            let unit = match ch {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(format!("{s:?}: unknown unit {ch:?} (use s, m, h or d)")),
            };
            total = total.saturating_add(n.saturating_mul(unit));
        }
        if !number.is_empty() {
            return Err(format!("{s:?}: a number needs a unit (s, m, h, d)"));
        }
        Ok(LeadTime(Duration::from_secs(total)))
    }
}

impl<'de> Deserialize<'de> for LeadTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LeadTime, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Minutes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Minutes(m) => Ok(LeadTime(Duration::from_secs(m * 60))),
            Raw::Text(s) => LeadTime::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Root {
        crm: CrmConfig,
    }

    fn parse(toml: &str) -> Result<CrmConfig, String> {
        use figment::Figment;
        use figment::providers::{Format, Toml};
        let root: Root = Figment::from(Toml::string(toml))
            .extract()
            .map_err(|e| e.to_string())?;
        root.crm.validate().map_err(|e| e.to_string())?;
        Ok(root.crm)
    }

    #[test]
    fn long_lived_token_config_parses_with_defaults() {
        let c = parse(
            r#"
[crm]
system = "amocrm"
[crm.amocrm]
base_url = "https://salon.amocrm.ru"
token = "SECRET-TOKEN"
pipeline_id = 3177727
task_lead_time = "1h30m"
"#,
        )
        .unwrap();
        let amo = c.amocrm.unwrap();
        assert_eq!(amo.cancelled_status_id, 143);
        assert_eq!(amo.done_status_id, 142);
        assert_eq!(amo.task_lead_time.0, Duration::from_secs(5400));
        assert!(!amo.uses_oauth());
        assert!(!format!("{amo:?}").contains("SECRET-TOKEN"));
    }

    #[test]
    fn task_lead_time_takes_minutes_too() {
        assert_eq!(LeadTime::parse("45").unwrap().0, Duration::from_secs(2700));
        assert_eq!(LeadTime::parse("2h").unwrap().0, Duration::from_secs(7200));
        assert!(LeadTime::parse("2x").is_err());
        assert!(LeadTime::parse("2").is_ok());
        assert!(LeadTime::parse("1h30").is_err());
    }

    #[test]
    fn half_an_oauth_setup_is_rejected_with_the_key() {
        let err = parse(
            r#"
[crm]
system = "amocrm"
[crm.amocrm]
base_url = "https://salon.amocrm.ru"
client_id = "abc"
pipeline_id = 1
"#,
        )
        .unwrap_err();
        assert!(err.contains("crm.amocrm.client_id"), "{err}");
    }

    #[test]
    fn unknown_keys_and_a_rate_above_the_limit_are_rejected() {
        let base = "[crm]\nsystem = \"amocrm\"\n[crm.amocrm]\nbase_url = \"https://s.amocrm.ru\"\ntoken = \"t\"\npipeline_id = 1\n";
        assert!(parse(&format!("{base}colour = 1\n")).is_err());
        let err = parse(&format!("{base}max_requests_per_second = 10\n")).unwrap_err();
        assert!(err.contains("max_requests_per_second"), "{err}");
    }
}
