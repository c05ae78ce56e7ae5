//! `[school]` settings: the landing forms, AlfaCRM, GetCourse and the course ↔ group ↔ offer
//! mapping that ties them together. `[school.alfacrm]` and `[school.getcourse]` live beside
//! their clients (`alfacrm/config.rs`, `getcourse/config.rs`) and are re-exported here.
//!
//! ```toml
//! [school.forms]
//! allowed_origins = ["https://school.example"]
//! thank_you_url = "https://school.example/thanks"
//!
//! [school.alfacrm]
//! base_url = "https://school.s20.online"
//! email = "api@school.example"
//! api_key = "…"
//! branch_id = 1
//! curator_id = 7
//!
//! [school.getcourse]
//! account_url = "https://school.getcourse.ru"
//! key = "…"
//! access = "group"
//!
//! [[school.courses]]
//! key = "python"
//! title = "Python для подростков"
//! alfacrm_group_ids = [12]
//! getcourse_group = "Python, поток декабрь"
//! ```

use std::collections::HashSet;

use serde::Deserialize;
use url::Url;

pub use super::alfacrm::config::AlfaCrmConfig;
pub use super::getcourse::config::{AccessMode, GetCourseConfig};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: key `{key}`: {message}")]
pub struct SchoolConfigError {
    pub key: String,
    pub message: String,
}

pub(super) fn err(key: &str, message: impl Into<String>) -> SchoolConfigError {
    SchoolConfigError {
        key: format!("school.{key}"),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchoolConfig {
    #[serde(default)]
    pub forms: FormsConfig,
    #[serde(default)]
    pub alfacrm: Option<AlfaCrmConfig>,
    #[serde(default)]
    pub getcourse: Option<GetCourseConfig>,
    #[serde(default)]
    pub courses: Vec<CourseConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormsConfig {
    /// The forms pages post to (`POST /forms/<name>`); any other name is answered 404.
    #[serde(default = "default_names")]
    pub names: Vec<String>,
    /// How often turned-away posts are written to `school_spam` (one counter per form and
    /// reason, not a row per post).
    #[serde(
        default = "default_spam_flush",
        deserialize_with = "crate::sync::config::de_duration"
    )]
    pub spam_flush_interval: std::time::Duration,
    /// Pages on these origins may post applications from the browser (CORS).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Where a browser lands after a plain HTML form post; without it the answer is JSON.
    #[serde(default)]
    pub thank_you_url: Option<Url>,
    /// A field hidden from people: a bot that fills it is answered politely and ignored.
    #[serde(default = "default_honeypot")]
    pub honeypot_field: String,
    /// Applications one address may send per minute.
    #[serde(default = "default_per_minute")]
    pub per_minute: u32,
    /// How many of them may come at once.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Take the client address from `X-Forwarded-For` (only behind a proxy that sets it).
    #[serde(default)]
    pub trust_forwarded_for: bool,
}

fn default_names() -> Vec<String> {
    vec!["landing".into()]
}
fn default_spam_flush() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}
fn default_honeypot() -> String {
    "website".into()
}
fn default_per_minute() -> u32 {
    6
}
fn default_burst() -> u32 {
    3
}

impl Default for FormsConfig {
    fn default() -> Self {
        FormsConfig {
            names: default_names(),
            spam_flush_interval: default_spam_flush(),
            allowed_origins: Vec::new(),
            thank_you_url: None,
            honeypot_field: default_honeypot(),
            per_minute: default_per_minute(),
            burst: default_burst(),
            trust_forwarded_for: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourseConfig {
    /// What the landing form sends in `course`, and what GetCourse's callback may carry.
    pub key: String,
    pub title: String,
    /// AlfaCRM groups a student of this course may join; the first is the default.
    #[serde(default)]
    pub alfacrm_group_ids: Vec<i64>,
    /// A trial lesson is offered in the bot for this course.
    #[serde(default)]
    pub trial: bool,
    /// GetCourse group that opens the training (access = "group").
    #[serde(default)]
    pub getcourse_group: Option<String>,
    /// GetCourse offer code sold for this course (access = "deal"), also used to recognise
    /// the course in a payment notice.
    #[serde(default)]
    pub getcourse_offer_code: Option<String>,
}

/// Both school CRMs' `timeout_secs` default.
pub(super) fn default_timeout() -> u64 {
    30
}

impl SchoolConfig {
    pub fn course(&self, key: &str) -> Option<&CourseConfig> {
        self.courses.iter().find(|c| c.key == key)
    }

    pub fn validate(&self) -> Result<(), SchoolConfigError> {
        if self.forms.per_minute == 0 {
            return Err(err("forms.per_minute", "must be at least 1"));
        }
        if self.forms.burst == 0 {
            return Err(err("forms.burst", "must be at least 1"));
        }
        if self.forms.names.is_empty() {
            return Err(err(
                "forms.names",
                "name at least one form, e.g. [\"landing\"]",
            ));
        }
        for name in &self.forms.names {
            let ok = (1..=64).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(err(
                    "forms.names",
                    format!("{name:?}: use 1–64 characters of A-Z, a-z, 0-9, - and _"),
                ));
            }
        }
        if self.forms.spam_flush_interval < std::time::Duration::from_secs(1) {
            return Err(err("forms.spam_flush_interval", "must be at least 1s"));
        }
        if self.forms.honeypot_field.trim().is_empty() {
            return Err(err("forms.honeypot_field", "must not be empty"));
        }
        for origin in &self.forms.allowed_origins {
            let ok = Url::parse(origin)
                .map(|u| matches!(u.scheme(), "http" | "https") && u.path() == "/")
                .unwrap_or(false);
            if !ok || origin.ends_with('/') {
                return Err(err(
                    "forms.allowed_origins",
                    format!("{origin:?} is not an origin like \"https://school.example\""),
                ));
            }
        }
        if let Some(a) = &self.alfacrm {
            a.validate()?;
        }
        if let Some(g) = &self.getcourse {
            g.validate()?;
        }
        let mut seen = HashSet::new();
        for (i, c) in self.courses.iter().enumerate() {
            let key = |k: &str| format!("courses[{i}].{k}");
            if c.key.trim().is_empty() || !seen.insert(c.key.as_str()) {
                return Err(err(&key("key"), "must be present and unique"));
            }
            if self.alfacrm.is_some() && c.alfacrm_group_ids.is_empty() {
                return Err(err(
                    &key("alfacrm_group_ids"),
                    "name the AlfaCRM group(s) students of this course join",
                ));
            }
            match self.getcourse.as_ref().map(|g| g.access) {
                Some(AccessMode::Group) if c.getcourse_group.is_none() => {
                    return Err(err(
                        &key("getcourse_group"),
                        "access = \"group\" needs the GetCourse group of every course",
                    ));
                }
                Some(AccessMode::Deal) if c.getcourse_offer_code.is_none() => {
                    return Err(err(
                        &key("getcourse_offer_code"),
                        "access = \"deal\" needs the GetCourse offer code of every course",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SchoolConfig {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(text))
            .extract()
            .expect("parses")
    }

    const BASE: &str = r#"
[alfacrm]
base_url = "https://school.s20.online"
email = "api@school.example"
api_key = "k"
branch_id = 1

[getcourse]
account_url = "https://school.getcourse.ru"
key = "g"
access = "deal"

[[courses]]
key = "python"
title = "Python"
alfacrm_group_ids = [12]
getcourse_offer_code = "py"
"#;

    #[test]
    fn a_complete_section_is_valid_and_maps_courses() {
        let c = parse(BASE);
        c.validate().expect("valid");
        assert_eq!(c.course("python").unwrap().alfacrm_group_ids, vec![12]);
        assert_eq!(c.forms.honeypot_field, "website");
        assert!(c.alfacrm.as_ref().unwrap().curator_task);
    }

    #[test]
    fn missing_mapping_names_the_course_key() {
        let c = parse(&BASE.replace("getcourse_offer_code = \"py\"\n", ""));
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "school.courses[0].getcourse_offer_code");
        let c = parse(&BASE.replace("alfacrm_group_ids = [12]\n", ""));
        assert_eq!(
            c.validate().unwrap_err().key,
            "school.courses[0].alfacrm_group_ids"
        );
    }

    #[test]
    fn an_origin_with_a_path_is_refused() {
        let c = parse(&format!(
            "[forms]\nallowed_origins = [\"https://a.example/page\"]\n{BASE}"
        ));
        assert_eq!(
            c.validate().unwrap_err().key,
            "school.forms.allowed_origins"
        );
    }
}
