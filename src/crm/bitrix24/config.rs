//! `[crm.bitrix24]`: the portal and its credentials, the entity a booking becomes, stages,
//! sources and pacing.

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::crm::config::{
    CrmConfigError, LeadTime, default_note_max_chars, default_task_lead_time, default_timeout,
    default_true,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::config::tests::parse;

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
