//! `[crm.amocrm]`: the account, its pipeline and stages, tags and pacing.

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::crm::config::{
    CrmConfigError, LeadTime, default_note_max_chars, default_task_lead_time, default_timeout,
    default_true,
};

/// amoCRM's system stages: every pipeline ends in these two.
pub const AMO_WON_STATUS_ID: i64 = 142;
pub const AMO_LOST_STATUS_ID: i64 = 143;

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
    /// Client-side ceiling: amoCRM's documented 7 requests a second. Requests leave evenly
    /// spaced, so that the one seven after another leaves a second and a guard after it (see
    /// `WINDOW_GUARD`): the guard, not a lower rate, absorbs the jitter on the way.
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
fn default_bot_tag() -> String {
    "zapis".into()
}
fn default_campaign_prefix() -> String {
    "campaign:".into()
}
fn default_rps() -> u32 {
    AMO_MAX_RPS
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::crm::config::tests::parse;

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
