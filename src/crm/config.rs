//! `[crm]` settings. The lead wires [`CrmConfig`] into the main `Config` as `crm`.
//!
//! This file holds what both CRMs share (the system choice, reconcile and unfinished-booking
//! timing, [`LeadTime`], common defaults); `[crm.amocrm]` lives in `amocrm/config.rs` and
//! `[crm.bitrix24]` in `bitrix24/config.rs`, both re-exported here.
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
//! booking_id_field_id = 771234          # optional; otherwise found or created by name
//! ```

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use super::amocrm::config::{AMO_LOST_STATUS_ID, AMO_MAX_RPS, AMO_WON_STATUS_ID, AmoCrmConfig};
pub use super::bitrix24::config::{
    B24_MAX_BURST, B24_MAX_RPS, Bitrix24Config, Bitrix24Mode, Bitrix24Todo,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmConfig {
    pub system: CrmSystem,
    /// How often the leads of upcoming bookings are re-read for a manager's cancel that no
    /// webhook reported (Bitrix24 never re-sends a lost event).
    #[serde(
        default = "default_reconcile_interval",
        deserialize_with = "de_reconcile_interval"
    )]
    pub reconcile_interval: Duration,
    /// How long a client who left a new booking in its contact step (consent, phone, name,
    /// confirmation) is waited for before the attempt becomes a lead "Незавершённая запись";
    /// `None` ("off" or 0): no such leads.
    #[serde(
        default = "default_unfinished_after",
        deserialize_with = "de_unfinished_after"
    )]
    pub unfinished_after: Option<Duration>,
    #[serde(default)]
    pub amocrm: Option<AmoCrmConfig>,
    #[serde(default)]
    pub bitrix24: Option<Bitrix24Config>,
}

fn default_reconcile_interval() -> Duration {
    Duration::from_secs(300)
}

fn de_reconcile_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    let interval = crate::sync::config::parse_duration(&text).map_err(serde::de::Error::custom)?;
    if interval.is_zero() {
        return Err(serde::de::Error::custom("must be longer than zero"));
    }
    Ok(interval)
}

fn default_unfinished_after() -> Option<Duration> {
    Some(Duration::from_secs(30 * 60))
}

/// The longest pause before an unfinished booking's lead: the transcript it carries is read
/// from the chat log, and a lead days late is no use to a manager.
const MAX_UNFINISHED_AFTER: Duration = Duration::from_secs(7 * 86_400);

fn de_unfinished_after<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let pause = crate::sync::config::parse_duration(&text).map_err(serde::de::Error::custom)?;
    if pause > MAX_UNFINISHED_AFTER {
        return Err(serde::de::Error::custom("must be at most 7d (or \"off\")"));
    }
    Ok(Some(pause).filter(|p| !p.is_zero()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrmSystem {
    Amocrm,
    Bitrix24,
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
            CrmSystem::Bitrix24 => match &self.bitrix24 {
                Some(b24) => b24.validate(),
                None => Err(CrmConfigError {
                    key: "crm.bitrix24".into(),
                    message: "system = \"bitrix24\" needs a [crm.bitrix24] section".into(),
                }),
            },
        }
    }
}

// Defaults both CRMs' sections use.
pub(super) fn default_task_lead_time() -> LeadTime {
    LeadTime(Duration::from_secs(3600))
}
pub(super) fn default_note_max_chars() -> usize {
    4000
}
pub(super) fn default_timeout() -> u64 {
    30
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

pub(super) fn default_true() -> bool {
    true
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Root {
        crm: CrmConfig,
    }

    pub(in crate::crm) fn parse(toml: &str) -> Result<CrmConfig, String> {
        use figment::Figment;
        use figment::providers::{Format, Toml};
        let root: Root = Figment::from(Toml::string(toml))
            .extract()
            .map_err(|e| e.to_string())?;
        root.crm.validate().map_err(|e| e.to_string())?;
        Ok(root.crm)
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
    fn unfinished_after_defaults_to_half_an_hour_turns_off_and_names_its_key() {
        let base = "[crm]\nsystem = \"amocrm\"\n[crm.amocrm]\nbase_url = \"https://s.amocrm.ru\"\ntoken = \"t\"\npipeline_id = 1\n";
        let with = |v: &str| {
            parse(&base.replacen(
                "[crm.amocrm]",
                &format!("unfinished_after = {v}\n[crm.amocrm]"),
                1,
            ))
        };
        assert_eq!(
            parse(base).unwrap().unfinished_after,
            Some(Duration::from_secs(1800))
        );
        assert_eq!(
            with("\"1s\"").unwrap().unfinished_after,
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            with("\"2h\"").unwrap().unfinished_after,
            Some(Duration::from_secs(7200))
        );
        for off in ["\"off\"", "\"OFF\"", "\"0s\"", "\"0m\""] {
            assert_eq!(with(off).unwrap().unfinished_after, None, "{off}");
        }
        for bad in ["\"soon\"", "30", "\"8d\"", "\"-1m\""] {
            let err = with(bad).expect_err(bad);
            assert!(err.contains("crm.unfinished_after"), "{bad}: {err}");
        }
    }
}
