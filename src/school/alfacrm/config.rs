//! `[school.alfacrm]`: the account, the API user and branch, lead sources and statuses.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::school::config::{SchoolConfigError, default_timeout, err};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlfaCrmConfig {
    /// The account's own address, e.g. `https://school.s20.online`.
    pub base_url: Url,
    /// The e-mail of the CRM user the API key belongs to.
    pub email: String,
    pub api_key: SecretString,
    /// Every call is made in this branch (филиал), and new customers are created in it.
    pub branch_id: i64,
    /// The curator new leads are assigned to and who gets the task about them.
    #[serde(default)]
    pub curator_id: Option<i64>,
    /// The lead status a new application gets ("new"), from `lead-status/index`.
    #[serde(default)]
    pub lead_status_id: Option<i64>,
    /// Our source (`utm_source`, or the channel: `web_form`, `telegram`, `max`) → the id of
    /// the AlfaCRM lead source (`lead-source/index`).
    #[serde(default)]
    pub lead_sources: BTreeMap<String, i64>,
    /// The lead source for anything not in `lead_sources`.
    #[serde(default)]
    pub default_lead_source_id: Option<i64>,
    /// The study status set when a payment makes a lead a student, from `study-status/index`.
    #[serde(default)]
    pub study_status_id: Option<i64>,
    /// Whether the curator gets a task about every new application (`task/create`).
    #[serde(default = "yes")]
    pub curator_task: bool,
    /// Accounts for `pay/create`; AlfaCRM refuses a payment without them on some setups.
    #[serde(default)]
    pub pay_account_id: Option<i64>,
    #[serde(default)]
    pub pay_item_id: Option<i64>,
    #[serde(default)]
    pub pay_type_id: Option<i64>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn yes() -> bool {
    true
}

impl AlfaCrmConfig {
    pub fn validate(&self) -> Result<(), SchoolConfigError> {
        if !matches!(self.base_url.scheme(), "http" | "https") || self.base_url.host().is_none() {
            return Err(err(
                "alfacrm.base_url",
                "must be the account URL, https://{hostname}",
            ));
        }
        if !self.email.contains('@') {
            return Err(err("alfacrm.email", "must be the API user's e-mail"));
        }
        if self.branch_id <= 0 {
            return Err(err("alfacrm.branch_id", "must be a branch id (1, 2, …)"));
        }
        Ok(())
    }
}
