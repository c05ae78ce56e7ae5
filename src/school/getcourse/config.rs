//! `[school.getcourse]`: the account, its key and how a payment opens the course.

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::school::config::{SchoolConfigError, default_timeout, err};

/// How a payment opens the course in GetCourse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessMode {
    /// Add the user to the course's group (`user.group_name`).
    #[default]
    Group,
    /// Create a paid deal for the course's offer; the product opens access itself.
    Deal,
    /// GetCourse opens access itself (its own payment page); only AlfaCRM is told.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetCourseConfig {
    /// `https://{account}.getcourse.ru` (or `.getcourse.io`, or the school's own domain).
    pub account_url: Url,
    /// The secret key from Профиль → Настройки аккаунта → API.
    pub key: SecretString,
    #[serde(default)]
    pub access: AccessMode,
    /// Values of `{object.status}` that mean the order is paid.
    #[serde(default = "default_paid")]
    pub paid_statuses: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_paid() -> Vec<String> {
    vec![
        "payed".into(),
        "paid".into(),
        "Завершен".into(),
        "Оплачен".into(),
    ]
}

impl GetCourseConfig {
    pub fn validate(&self) -> Result<(), SchoolConfigError> {
        if self.account_url.scheme() != "https" && self.account_url.scheme() != "http" {
            return Err(err(
                "getcourse.account_url",
                "must be https://{account}.getcourse.ru",
            ));
        }
        if self.paid_statuses.is_empty() {
            return Err(err("getcourse.paid_statuses", "must name at least one"));
        }
        Ok(())
    }
}
