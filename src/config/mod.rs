//! Typed settings from one TOML file, overridable by `ZAPIS_SECTION__KEY` environment variables.
//! Unknown keys are rejected; every error names the key and where it came from.
//!
//! Two parts: the [`Deployment`] (what a process has once) and the [`BusinessSettings`] (what
//! each business it serves has). The rule for a section: would two businesses served by one
//! process share it? Then it is the deployment's: `[store]`, `[http]`, `[log]`, `[alerts]` (the
//! operator's, about outages), `[sync]` (workers, leases, polling, retries) and `[retention]`.
//! Everything a business sets up for itself is the business's: `[business]`, `[booking]`,
//! `[telegram]`, `[max]`, `[crm]`, `[reminders]`, `[school]`, `[onec]`, `[privacy]`,
//! `[support]`. `[sync]` also carries what a business may well want its own way: three
//! policies (`schedule_to_crm`, `notify_client`, `admin_bookings`) and its reconciliation's
//! period and reach (`reconcile_interval`, `reconcile_ahead`). They stay in the deployment's
//! `[sync]` for now, where the file has always had them, and are read from there.
//!
//! [`Config`] is today's single file: both parts in one table, read and checked as one, with
//! the same keys, overrides and messages as ever. It stays a flat struct rather than a pair
//! of parts (or two `#[serde(flatten)]` halves, which would lose `deny_unknown_fields` and the
//! key paths in error messages); [`Config::into_parts`] takes it apart, and what builds
//! per-business things (connectors, bots, conversations) reads only [`BusinessSettings`].
//!
//! The folder: this file holds the root [`Config`], its two parts and its small sections;
//! `load.rs` reading the file and the environment, the demo configuration and error messages
//! that never repeat a value; `validate.rs` the checks across sections; `http.rs` `[http]`;
//! `tests.rs`. Each connector's own section lives in its folder (`crm/amocrm/config.rs`,
//! `booking/yclients/config.rs`, …).

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::business::{BusinessConfig, PrivacyConfig};
use crate::domain::BusinessKind;
use crate::messenger::config::{MaxConfig, TelegramConfig};

mod businesses;
mod http;
mod load;
#[cfg(test)]
mod tests;
mod validate;

pub use businesses::{
    BUSINESS_SECTIONS, BusinessFile, BusinessesConfig, DEPLOYMENT_SECTIONS, Fleet, Layout, valid_id,
};
pub use http::HttpConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid configuration: key `{key}`: {message}")]
    Key { key: String, message: String },
    /// A business file of a deployment: the problem, and which file it is in.
    #[error("{}: {source}", file.display())]
    InFile {
        file: PathBuf,
        source: Box<ConfigError>,
    },
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
    /// A deployment file's folder of business files; a business read from it carries the
    /// deployment file's table, this included (`businesses.rs`).
    #[serde(default)]
    pub businesses: Option<BusinessesConfig>,
}

/// What one process has once, however many businesses it serves: see the module header.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub store: StoreConfig,
    pub http: Option<HttpConfig>,
    pub log: LogConfig,
    pub alerts: crate::sync::AlertsConfig,
    pub sync: crate::sync::SyncConfig,
    pub retention: crate::store::retention::RetentionConfig,
}

/// Everything one business sets up for itself: see the module header.
#[derive(Debug, Clone)]
pub struct BusinessSettings {
    pub business: BusinessConfig,
    pub booking: BookingConfig,
    pub telegram: Option<TelegramConfig>,
    pub max: Option<MaxConfig>,
    pub crm: Option<crate::crm::config::CrmConfig>,
    pub reminders: crate::lifecycle::reminders::RemindersConfig,
    pub school: Option<crate::school::config::SchoolConfig>,
    pub onec: Option<crate::accounting::config::OnecConfig>,
    pub privacy: PrivacyConfig,
    pub support: Option<crate::support::SupportConfig>,
}

impl Config {
    /// The file taken apart. Every section is named here, so a new one cannot be added to the
    /// file without deciding whose it is.
    pub fn into_parts(self) -> (Deployment, BusinessSettings) {
        let Config {
            store,
            business,
            booking,
            telegram,
            max,
            crm,
            sync,
            alerts,
            reminders,
            http,
            log,
            retention,
            school,
            onec,
            privacy,
            support,
            businesses: _,
        } = self;
        (
            Deployment {
                store,
                http,
                log,
                alerts,
                sync,
                retention,
            },
            BusinessSettings {
                business,
                booking,
                telegram,
                max,
                crm,
                reminders,
                school,
                onec,
                privacy,
                support,
            },
        )
    }
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
