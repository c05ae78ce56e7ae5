//! GetCourse import API (`/pl/api/users`, `/pl/api/deals`): form posts with the secret `key`,
//! `action=add` and `params` as base64 JSON; answers have two levels of success.
//! Facts relied on: docs/getcourse.md.
//!
//! The folder: this file holds the type and its calls; `config.rs` `[school.getcourse]`;
//! `wire.rs` the people we send and the two-level answers; `tests.rs`.

use std::time::Duration;

use base64::Engine as _;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::SchoolError;
use crate::connectors::{Failure, Kind, Quirks};

pub(super) mod config;
#[cfg(test)]
mod tests;
mod wire;

use config::GetCourseConfig;
pub use wire::{GcUser, Imported, parse_import, truthy};

pub struct GetCourse {
    http: reqwest::Client,
    config: GetCourseConfig,
}

impl GetCourse {
    pub fn new(config: GetCourseConfig) -> Result<GetCourse, SchoolError> {
        let http = crate::connectors::http::builder(Some(Duration::from_secs(config.timeout_secs)))
            .build()
            .map_err(|e| SchoolError::permanent(format!("cannot build the HTTP client: {e}")))?;
        Ok(GetCourse { http, config })
    }

    pub fn config(&self) -> &GetCourseConfig {
        &self.config
    }

    fn url(&self, path: &str) -> Result<url::Url, SchoolError> {
        self.config
            .account_url
            .join(path)
            .map_err(|e| SchoolError::permanent(format!("bad GetCourse URL {path}: {e}")))
    }

    async fn import(&self, what: &str, params: &Value) -> Result<Imported, SchoolError> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(params.to_string());
        let response = self
            .http
            .post(self.url(&format!("/pl/api/{what}"))?)
            .form(&[
                ("key", self.config.key.expose_secret()),
                ("action", "add"),
                ("params", encoded.as_str()),
            ])
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(transport)?;
        if !(200..=299).contains(&status) {
            // GetCourse's Retry-After, if it ever sends one, has never been read.
            let failure = Failure::from_status(&GetCourseQuirks, status, None, None, "");
            let message = match failure.kind {
                Kind::Auth => {
                    format!("GetCourse refused the key (HTTP {status}): check school.getcourse.key")
                }
                Kind::Transient { .. } => format!("GetCourse failed (HTTP {status})"),
                Kind::Permanent | Kind::PaymentRequired => {
                    format!(
                        "HTTP {status}: {}",
                        text.chars().take(200).collect::<String>()
                    )
                }
            };
            return Err(Failure { message, ..failure }.into());
        }
        let answer: Value = serde_json::from_str(&text)
            .map_err(|e| SchoolError::permanent(format!("GetCourse answered non-JSON: {e}")))?;
        parse_import(&answer)
    }

    /// Adds (or updates) the user and puts them in `group`: the training opens to the group.
    pub async fn add_to_group(&self, user: &GcUser, group: &str) -> Result<Imported, SchoolError> {
        let params = json!({
            "user": {
                "email": user.email,
                "phone": user.phone,
                "first_name": user.first_name,
                "group_name": [group],
            },
            "system": {"refresh_if_exists": 1},
        });
        self.import("users", &params).await
    }

    /// Creates (or, with the same number, updates) a paid deal for the offer; the product
    /// opens access per its own setting.
    pub async fn add_paid_deal(
        &self,
        user: &GcUser,
        offer_code: &str,
        deal_number: &str,
        cost: &str,
    ) -> Result<Imported, SchoolError> {
        let params = json!({
            "user": user,
            "system": {"refresh_if_exists": 1},
            "deal": {
                "deal_number": deal_number,
                "offer_code": offer_code,
                "deal_cost": cost,
                "deal_status": "payed",
                "deal_is_paid": 1,
                "payment_type": "OTHER",
                "payment_status": "accepted",
                "deal_currency": "RUB",
            },
        });
        self.import("deals", &params).await
    }

    /// Proves the key: the synchronous custom-fields export answers only to a valid key.
    pub async fn check(&self) -> Result<String, SchoolError> {
        let response = self
            .http
            .get(self.url("/pl/api/account/fields")?)
            .query(&[("key", self.config.key.expose_secret())])
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.map_err(|e| {
            SchoolError::permanent(format!("GetCourse answered non-JSON: {}", e.without_url()))
        })?;
        if status == 200 && truthy(&answer["success"]) {
            Ok(format!(
                "key accepted by {}",
                self.config.account_url.host_str().unwrap_or("?")
            ))
        } else {
            Err(SchoolError::auth(format!(
                "GetCourse refused the key: {}",
                answer["error_message"]
                    .as_str()
                    .unwrap_or("no reason given")
            )))
        }
    }
}

/// Without the URL: GetCourse's key travels in it.
fn transport(e: reqwest::Error) -> SchoolError {
    SchoolError::transient(format!("GetCourse unreachable: {}", e.without_url()))
}

/// Where this connector has always read GetCourse's statuses otherwise than the shared
/// classifier; kept as they were.
pub(super) struct GetCourseQuirks;

impl Quirks for GetCourseQuirks {
    fn classify(&self, status: Option<u16>, _: Option<&str>, _: &str) -> Option<Kind> {
        match status? {
            // GetCourse documents no payment status: a 402 is refused like any other 4xx.
            402 | 425 => Some(Kind::Permanent),
            // Every 5xx passes, 501 and 505 included.
            501 | 505 => Some(Kind::Transient { retry_after: None }),
            _ => None,
        }
    }
}
