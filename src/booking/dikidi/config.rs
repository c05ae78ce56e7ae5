//! `[booking.dikidi]`: mode (widget or partner), company, pacing and time zone.

use super::*;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DikidiMode {
    /// The public online-booking widget endpoints.
    #[default]
    Widget,
    /// The partner REST API (token from config; contract not public yet).
    Partner,
}

impl DikidiMode {
    pub fn name(self) -> &'static str {
        match self {
            DikidiMode::Widget => "widget",
            DikidiMode::Partner => "partner",
        }
    }
}

/// `[booking.dikidi]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DikidiConfig {
    #[serde(default)]
    pub mode: DikidiMode,
    #[serde(default = "default_base_url")]
    pub base_url: Url,
    pub company_id: u64,
    /// Required with `mode = "partner"`; never logged.
    #[serde(default)]
    pub partner_token: Option<SecretString>,
    /// The company's zone. Dikidi's times carry none; the business zone is used when absent.
    #[serde(default)]
    pub timezone: Option<Tz>,
    /// Who runs this instance (an e-mail or URL), put into the User-Agent so Dikidi can reach
    /// a person instead of guessing.
    #[serde(default)]
    pub contact: Option<String>,
    /// Requests per second to this company; Dikidi publishes no limit, OSS clients use up to 7.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_second: u32,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// How long the services/masters catalogue is reused.
    #[serde(default = "default_catalog_ttl")]
    pub catalog_cache_secs: u64,
    /// How often upcoming records we made are re-read (Dikidi sends no webhooks).
    #[serde(default = "default_poll_interval")]
    pub poll_interval_secs: u64,
    /// Each poll moves by up to ± this much, so many instances do not arrive in step.
    #[serde(default = "default_poll_jitter")]
    pub poll_jitter_secs: u64,
    /// Requests one poll cycle may spend on this company; the rest waits for the next cycle.
    #[serde(default = "default_poll_budget")]
    pub poll_budget: u32,
}

pub(super) fn default_base_url() -> Url {
    Url::parse("https://dikidi.net").expect("constant URL parses")
}
pub(super) fn default_rate_limit() -> u32 {
    2
}
pub(super) fn default_timeout() -> u64 {
    15
}
pub(super) fn default_catalog_ttl() -> u64 {
    300
}
pub(super) fn default_poll_interval() -> u64 {
    300
}
pub(super) fn default_poll_jitter() -> u64 {
    30
}
pub(super) fn default_poll_budget() -> u32 {
    10
}

impl DikidiConfig {
    /// Widget mode with every default, e.g. for tests against a fake.
    pub fn widget(base_url: Url, company_id: u64) -> DikidiConfig {
        DikidiConfig {
            mode: DikidiMode::Widget,
            base_url,
            company_id,
            partner_token: None,
            timezone: None,
            contact: None,
            rate_limit_per_second: default_rate_limit(),
            timeout_secs: default_timeout(),
            catalog_cache_secs: default_catalog_ttl(),
            poll_interval_secs: default_poll_interval(),
            poll_jitter_secs: default_poll_jitter(),
            poll_budget: default_poll_budget(),
        }
    }

    /// The User-Agent: names the software and, when configured, the operator. Never a browser's.
    pub fn user_agent(&self) -> String {
        let contact = self
            .contact
            .as_deref()
            .map(|c| format!("; contact: {c}"))
            .unwrap_or_default();
        format!(
            "zapis/{} (booking integration for Dikidi company {}{contact})",
            env!("CARGO_PKG_VERSION"),
            self.company_id
        )
    }
}
