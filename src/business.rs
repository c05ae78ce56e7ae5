//! The business the bot speaks for: its profile (`[business]`) and what it asks of clients
//! before it takes their data (`[privacy]`). Read by the conversation and the reminders, which
//! need no other part of the configuration.

use std::path::PathBuf;

use chrono_tz::Tz;
use serde::Deserialize;
use url::Url;

use crate::domain::{BusinessId, BusinessKind};
use crate::i18n::{Lang, Texts};
use crate::sync::config::KeyError;

/// `[business]`: who the bot speaks for, where, and in which words.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessConfig {
    /// Rows in the store carry this id, so one deployment can host several businesses; it is
    /// checked as it is read (see [`BusinessId`]).
    #[serde(default = "BusinessId::default_id")]
    pub id: BusinessId,
    pub name: String,
    pub timezone: Tz,
    #[serde(default)]
    pub locale: Lang,
    #[serde(default)]
    pub address: String,
    /// Shown to clients when online booking is impossible.
    #[serde(default)]
    pub phone: Option<String>,
    /// What the bot sells, and so the words it uses: visits to a master (salon), appointments
    /// with a doctor (clinic), or places on courses (school).
    #[serde(default)]
    pub kind: BusinessKind,
    /// A directory of the business's own `ru/*.ftl` and `en/*.ftl` messages over the built-in
    /// ones; relative to the config file's directory.
    #[serde(default)]
    pub locales: Option<PathBuf>,
    /// The words clients read, built from `kind` and `locales` when the config is loaded.
    #[serde(skip)]
    pub texts: Texts,
}

/// `[privacy]`: 152-ФЗ asks for the client's consent before their personal data is processed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Ask the client to agree before the bot asks for their phone. On unless the business
    /// collects the consent some other way.
    #[serde(default = "default_true")]
    pub consent: bool,
    /// The business's personal-data policy, linked from the consent message.
    #[serde(default)]
    pub policy_url: Option<Url>,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            consent: true,
            policy_url: None,
        }
    }
}

impl PrivacyConfig {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), KeyError> {
        if let Some(url) = &self.policy_url
            && (url.scheme() != "https" || url.host_str().is_none_or(str::is_empty))
        {
            return Err(KeyError {
                key: "privacy.policy_url".into(),
                message: "must be an https:// address clients can open".into(),
            });
        }
        Ok(())
    }
}

fn default_true() -> bool {
    true
}
