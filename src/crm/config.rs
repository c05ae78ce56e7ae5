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
//! booking_id_field_id = 771234          # optional; otherwise found or created by name
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
    /// every create). Without it zapis finds the text field named `zapis: номер записи` or
    /// creates it, and keeps its id in the store (`zapis amocrm setup`): amoCRM's `query`
    /// searches field values, never tags.
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

/// Which Bitrix24 entity a booking becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bitrix24Mode {
    /// A contact plus a deal in `category_id` (the usual sales funnel).
    Deal,
    /// A lead carrying the client's name, phone and email, linked to a contact when one exists.
    Lead,
}

/// How the manager's reminder is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bitrix24Todo {
    /// `crm.activity.todo.add`: a to-do in the deal/lead timeline (scope `crm` only).
    Activity,
    /// `tasks.task.add` bound through `UF_CRM_TASK` (needs scope `task` and a responsible id).
    Task,
}

/// `[crm.bitrix24]`. Either `webhook_url` (an incoming webhook; the URL holds its secret code)
/// or `portal_url` + `client_id` + `client_secret` (an OAuth application).
///
/// ```toml
/// [crm]
/// system = "bitrix24"
///
/// [crm.bitrix24]
/// webhook_url = "https://salon.bitrix24.ru/rest/1/abcdef123456/"
/// mode = "deal"                       # or "lead"
/// category_id = 0
/// booking_id_field = "UF_CRM_ZAPIS_BOOKING"   # default ORIGIN_ID
/// sources = { telegram = "UC_TELEGRAM", web_form = "WEB" }
/// todo = "activity"                   # or "task" (needs responsible_id)
/// application_token = "…"             # from the outgoing webhook / app install event
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bitrix24Config {
    /// `https://{portal}/rest/{user_id}/{code}/`. Secret: the code is the credential.
    #[serde(default)]
    pub webhook_url: Option<SecretString>,
    /// `https://{portal}`: the OAuth application's portal (REST calls go to `{portal}/rest/`).
    #[serde(default)]
    pub portal_url: Option<Url>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// Bitrix24 exchanges and refreshes tokens on its central server, not on the portal.
    #[serde(default = "default_b24_oauth_url")]
    pub oauth_url: Url,
    #[serde(default = "default_b24_mode")]
    pub mode: Bitrix24Mode,
    /// Deal funnel (`CATEGORY_ID`); 0 is the default funnel. Ignored in lead mode.
    #[serde(default)]
    pub category_id: i64,
    /// `STAGE_ID` (deal) or `STATUS_ID` (lead) of a fresh booking. Defaults: `NEW`, or
    /// `C{category}:NEW` in another funnel.
    #[serde(default)]
    pub new_stage_id: Option<String>,
    /// Defaults: `LOSE` (deal), `JUNK` (lead).
    #[serde(default)]
    pub cancelled_stage_id: Option<String>,
    /// Defaults: `WON` (deal), `CONVERTED` (lead).
    #[serde(default)]
    pub done_stage_id: Option<String>,
    /// Our channel (`telegram`, `max`, `console`, `web_form`) → `SOURCE_ID`. Unmapped channels
    /// get `default_source_id`. See `Bitrix24::sources()` for the portal's list.
    #[serde(default)]
    pub sources: std::collections::BTreeMap<String, String>,
    #[serde(default = "default_b24_source")]
    pub default_source_id: String,
    /// Field of deals/leads holding our booking id, the key searched before every create:
    /// `ORIGIN_ID` (built in, paired with `ORIGINATOR_ID = "zapis"`) or a `UF_CRM_…` field.
    #[serde(default = "default_b24_booking_field")]
    pub booking_id_field: String,
    #[serde(default = "default_b24_todo")]
    pub todo: Bitrix24Todo,
    /// `ASSIGNED_BY_ID` of new deals/leads and the responsible of to-dos and tasks.
    #[serde(default)]
    pub responsible_id: Option<i64>,
    #[serde(default = "default_task_lead_time")]
    pub task_lead_time: LeadTime,
    /// `auth[application_token]` of outbound events; events are refused without a match.
    #[serde(default)]
    pub application_token: Option<SecretString>,
    /// A manager moving a deal (lead) to the cancelled stage cancels the visit in the
    /// schedule and tells the client.
    #[serde(default = "default_true")]
    pub cancel_from_crm: bool,
    /// Bitrix24 documents no comment size limit; long transcripts are split for readability.
    #[serde(default = "default_note_max_chars")]
    pub note_max_chars: usize,
    /// The leaky bucket drains 2 requests/s (5 on Enterprise).
    #[serde(default = "default_b24_rps")]
    pub max_requests_per_second: u32,
    /// Requests allowed at once before pacing starts. The portal blocks above 50 (250 on
    /// Enterprise) and other apps share its bucket, so stay well below.
    #[serde(default = "default_b24_burst")]
    pub burst: u32,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_b24_oauth_url() -> Url {
    Url::parse("https://oauth.bitrix.info/oauth/token/").expect("constant URL parses")
}
fn default_b24_mode() -> Bitrix24Mode {
    Bitrix24Mode::Deal
}
fn default_b24_source() -> String {
    "OTHER".into()
}
fn default_b24_booking_field() -> String {
    "ORIGIN_ID".into()
}
fn default_b24_todo() -> Bitrix24Todo {
    Bitrix24Todo::Activity
}
fn default_b24_rps() -> u32 {
    2
}
fn default_b24_burst() -> u32 {
    10
}

/// The documented Enterprise ceilings (drain 5/s, block above 250); other plans: 2/s, 50.
pub const B24_MAX_RPS: u32 = 5;
pub const B24_MAX_BURST: u32 = 250;

impl Bitrix24Config {
    /// A webhook-mode config with every optional key at its default, for tests and examples.
    pub fn with_webhook(webhook_url: &str) -> Bitrix24Config {
        Bitrix24Config {
            webhook_url: Some(SecretString::from(webhook_url.to_string())),
            portal_url: None,
            client_id: None,
            client_secret: None,
            oauth_url: default_b24_oauth_url(),
            mode: default_b24_mode(),
            category_id: 0,
            new_stage_id: None,
            cancelled_stage_id: None,
            done_stage_id: None,
            sources: Default::default(),
            default_source_id: default_b24_source(),
            booking_id_field: default_b24_booking_field(),
            todo: default_b24_todo(),
            responsible_id: None,
            task_lead_time: default_task_lead_time(),
            application_token: None,
            cancel_from_crm: true,
            note_max_chars: default_note_max_chars(),
            max_requests_per_second: default_b24_rps(),
            burst: default_b24_burst(),
            timeout_secs: default_timeout(),
        }
    }

    /// An OAuth-application config with every optional key at its default.
    pub fn with_oauth(
        portal_url: Url,
        client_id: &str,
        client_secret: &str,
        oauth_url: Url,
    ) -> Bitrix24Config {
        let mut c = Bitrix24Config::with_webhook("");
        c.webhook_url = None;
        c.portal_url = Some(portal_url);
        c.client_id = Some(client_id.into());
        c.client_secret = Some(SecretString::from(client_secret.to_string()));
        c.oauth_url = oauth_url;
        c
    }

    pub fn uses_oauth(&self) -> bool {
        self.webhook_url.is_none()
    }

    fn stage_prefix(&self) -> String {
        if self.mode == Bitrix24Mode::Deal && self.category_id > 0 {
            format!("C{}:", self.category_id)
        } else {
            String::new()
        }
    }

    pub fn new_stage(&self) -> String {
        self.new_stage_id
            .clone()
            .unwrap_or_else(|| format!("{}NEW", self.stage_prefix()))
    }

    pub fn cancelled_stage(&self) -> String {
        self.cancelled_stage_id
            .clone()
            .unwrap_or_else(|| match self.mode {
                Bitrix24Mode::Deal => format!("{}LOSE", self.stage_prefix()),
                Bitrix24Mode::Lead => "JUNK".into(),
            })
    }

    pub fn done_stage(&self) -> String {
        self.done_stage_id
            .clone()
            .unwrap_or_else(|| match self.mode {
                Bitrix24Mode::Deal => format!("{}WON", self.stage_prefix()),
                Bitrix24Mode::Lead => "CONVERTED".into(),
            })
    }

    /// `SOURCE_ID` for one of our channels.
    pub fn source_for(&self, channel: &str) -> String {
        self.sources
            .get(channel)
            .cloned()
            .unwrap_or_else(|| self.default_source_id.clone())
    }

    pub fn validate(&self) -> Result<(), CrmConfigError> {
        use secrecy::ExposeSecret;
        let err = |key: &str, message: &str| CrmConfigError {
            key: format!("crm.bitrix24.{key}"),
            message: message.into(),
        };
        let oauth_keys = [
            self.portal_url.is_some(),
            self.client_id.is_some(),
            self.client_secret.is_some(),
        ];
        match (&self.webhook_url, oauth_keys) {
            (Some(url), [false, false, false]) => {
                // The message must not repeat the URL: it holds the secret code.
                let parsed = Url::parse(url.expose_secret()).map_err(|_| {
                    err(
                        "webhook_url",
                        "must be an absolute URL, https://{portal}/rest/{user_id}/{code}/",
                    )
                })?;
                let segments: Vec<&str> = parsed
                    .path_segments()
                    .map(|s| s.filter(|p| !p.is_empty()).collect())
                    .unwrap_or_default();
                let shape_ok = matches!(parsed.scheme(), "http" | "https")
                    && parsed.host().is_some()
                    && segments.len() == 3
                    && segments[0] == "rest"
                    && segments[1].chars().all(|c| c.is_ascii_digit());
                if !shape_ok {
                    return Err(err(
                        "webhook_url",
                        "must look like https://{portal}/rest/{user_id}/{code}/ (copy it from the incoming webhook's page)",
                    ));
                }
            }
            (Some(_), _) => {
                return Err(err(
                    "webhook_url",
                    "set either webhook_url or portal_url/client_id/client_secret, not both",
                ));
            }
            (None, [true, true, true]) => {
                let portal = self.portal_url.as_ref().map(|u| (u.scheme(), u.host()));
                if !matches!(portal, Some(("http" | "https", Some(_)))) {
                    return Err(err(
                        "portal_url",
                        "must be the portal address, https://{portal}.bitrix24.ru",
                    ));
                }
            }
            (None, _) => {
                return Err(err(
                    "webhook_url",
                    "needs webhook_url, or portal_url + client_id + client_secret for an OAuth application",
                ));
            }
        }
        if self.category_id < 0 {
            return Err(err(
                "category_id",
                "must be 0 (the default funnel) or a funnel id",
            ));
        }
        for (key, value) in [
            ("new_stage_id", &self.new_stage_id),
            ("cancelled_stage_id", &self.cancelled_stage_id),
            ("done_stage_id", &self.done_stage_id),
        ] {
            if let Some(v) = value {
                if v.trim().is_empty() {
                    return Err(err(key, "must not be empty"));
                }
                let prefix = self.stage_prefix();
                if !prefix.is_empty() && !v.starts_with(&prefix) {
                    return Err(err(
                        key,
                        &format!(
                            "stages of funnel {} start with {prefix:?}",
                            self.category_id
                        ),
                    ));
                }
            }
        }
        let field = self.booking_id_field.as_str();
        if field != "ORIGIN_ID" && !field.starts_with("UF_CRM_") {
            return Err(err(
                "booking_id_field",
                "must be ORIGIN_ID or a user field UF_CRM_…",
            ));
        }
        if self.todo == Bitrix24Todo::Task && self.responsible_id.is_none() {
            return Err(err(
                "responsible_id",
                "todo = \"task\" needs responsible_id (tasks.task.add requires RESPONSIBLE_ID)",
            ));
        }
        if self.max_requests_per_second == 0 || self.max_requests_per_second > B24_MAX_RPS {
            return Err(err(
                "max_requests_per_second",
                "must be between 1 and 5 (2 on non-Enterprise plans)",
            ));
        }
        if self.burst == 0 || self.burst >= B24_MAX_BURST {
            return Err(err(
                "burst",
                "must be between 1 and 249, below the portal's block threshold (50; 250 on Enterprise)",
            ));
        }
        if self.note_max_chars < 200 {
            return Err(err("note_max_chars", "must be at least 200"));
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

    #[test]
    fn unknown_keys_and_a_rate_above_the_limit_are_rejected() {
        let base = "[crm]\nsystem = \"amocrm\"\n[crm.amocrm]\nbase_url = \"https://s.amocrm.ru\"\ntoken = \"t\"\npipeline_id = 1\n";
        assert!(parse(&format!("{base}colour = 1\n")).is_err());
        let err = parse(&format!("{base}max_requests_per_second = 10\n")).unwrap_err();
        assert!(err.contains("max_requests_per_second"), "{err}");
    }
    #[test]
    fn bitrix24_webhook_config_parses_with_mode_defaults_and_hides_the_code() {
        let c = parse(
            r#"
[crm]
system = "bitrix24"
[crm.bitrix24]
webhook_url = "https://salon.bitrix24.ru/rest/1/S3CRETc0de/"
category_id = 2
sources = { telegram = "UC_TELEGRAM" }
"#,
        )
        .unwrap();
        let b = c.bitrix24.unwrap();
        assert_eq!(b.mode, Bitrix24Mode::Deal);
        assert_eq!(
            (b.new_stage(), b.cancelled_stage(), b.done_stage()),
            ("C2:NEW".into(), "C2:LOSE".into(), "C2:WON".into())
        );
        assert_eq!(b.source_for("telegram"), "UC_TELEGRAM");
        assert_eq!(b.source_for("max"), "OTHER");
        assert_eq!(b.booking_id_field, "ORIGIN_ID");
        assert_eq!((b.max_requests_per_second, b.burst), (2, 10));
        assert!(!b.uses_oauth());
        assert!(!format!("{b:?}").contains("S3CRETc0de"));
        let mut lead = b.clone();
        lead.mode = Bitrix24Mode::Lead;
        assert_eq!(
            (lead.new_stage(), lead.cancelled_stage(), lead.done_stage()),
            ("NEW".into(), "JUNK".into(), "CONVERTED".into())
        );
    }

    #[test]
    fn bitrix24_mistakes_name_their_key_and_never_echo_the_webhook() {
        let base = "[crm]\nsystem = \"bitrix24\"\n[crm.bitrix24]\n";
        let hook = "webhook_url = \"https://s.bitrix24.ru/rest/1/c0de/\"\n";
        let err = parse(base).unwrap_err();
        assert!(err.contains("crm.bitrix24.webhook_url"), "{err}");
        let err = parse(&format!(
            "{base}webhook_url = \"https://s.bitrix24.ru/rest/T0pSecret\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("crm.bitrix24.webhook_url") && !err.contains("T0pSecret"),
            "{err}"
        );
        let err = parse(&format!("{base}{hook}client_id = \"app.1\"\n")).unwrap_err();
        assert!(err.contains("not both"), "{err}");
        let err = parse(&format!(
            "{base}portal_url = \"https://s.bitrix24.ru\"\nclient_id = \"a\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("crm.bitrix24.webhook_url"), "{err}");
        let err = parse(&format!("{base}{hook}todo = \"task\"\n")).unwrap_err();
        assert!(err.contains("crm.bitrix24.responsible_id"), "{err}");
        let err = parse(&format!("{base}{hook}booking_id_field = \"ZAPIS\"\n")).unwrap_err();
        assert!(err.contains("crm.bitrix24.booking_id_field"), "{err}");
        let err = parse(&format!("{base}{hook}max_requests_per_second = 6\n")).unwrap_err();
        assert!(
            err.contains("crm.bitrix24.max_requests_per_second"),
            "{err}"
        );
        let err = parse(&format!("{base}{hook}burst = 250\n")).unwrap_err();
        assert!(err.contains("crm.bitrix24.burst"), "{err}");
        let err = parse(&format!(
            "{base}{hook}category_id = 3\ndone_stage_id = \"WON\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("crm.bitrix24.done_stage_id"), "{err}");
        let err = parse("[crm]\nsystem = \"bitrix24\"\n").unwrap_err();
        assert!(err.contains("[crm.bitrix24]"), "{err}");
        let ok = parse(&format!("{base}portal_url = \"https://s.bitrix24.ru\"\nclient_id = \"a\"\nclient_secret = \"b\"\nmode = \"lead\"\ntodo = \"task\"\nresponsible_id = 1\n")).unwrap();
        assert!(ok.bitrix24.unwrap().uses_oauth());
    }
}
