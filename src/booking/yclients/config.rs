//! `[booking.yclients]`: tokens, company, pacing and cache settings.

use super::*;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// `[booking.yclients]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YclientsConfig {
    #[serde(default = "default_base_url")]
    pub base_url: Url,
    pub company_id: u64,
    /// From the YClients developer cabinet; enough for every online-booking method.
    pub partner_token: SecretString,
    /// From `POST /auth`; enables the admin methods (record read/delete by id).
    #[serde(default)]
    pub user_token: Option<SecretString>,
    /// The numeric partner id from the developer cabinet, sent as `X-Partner-Id` on every
    /// call. Undocumented, but live admin calls were refused with 403 «Не указан
    /// идентификатор партнера» without it (docs/yclients.md).
    #[serde(default)]
    pub partner_id: Option<u64>,
    /// How long free days and slots are reused before asking again; 0 switches the cache off.
    #[serde(default = "default_slot_cache_ttl")]
    pub slot_cache_ttl_secs: u64,
    /// Requests per second this client allows itself; the published limit is 5 per IP.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_second: u32,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// How many times one request is repeated after a 429 before giving up with `Unavailable`.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

pub(super) fn default_base_url() -> Url {
    Url::parse("https://api.yclients.com").expect("constant URL parses")
}
pub(super) fn default_slot_cache_ttl() -> u64 {
    30
}
pub(super) fn default_rate_limit() -> u32 {
    5
}
pub(super) fn default_timeout() -> u64 {
    15
}
pub(super) fn default_max_retries() -> u32 {
    5
}

impl YclientsConfig {
    /// Settings for a company with every default, e.g. for tests against a fake.
    pub fn new(base_url: Url, company_id: u64, partner_token: &str) -> YclientsConfig {
        YclientsConfig {
            base_url,
            company_id,
            partner_token: SecretString::from(partner_token.to_owned()),
            user_token: None,
            partner_id: None,
            slot_cache_ttl_secs: default_slot_cache_ttl(),
            rate_limit_per_second: default_rate_limit(),
            timeout_secs: default_timeout(),
            max_retries: default_max_retries(),
        }
    }
}
