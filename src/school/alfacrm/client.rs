//! Login with the token kept until it is nearly stale, the calls scoped to the branch, and the
//! sorting of AlfaCRM's answers into [`SchoolError`]s.

use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::config::AlfaCrmConfig;
use super::wire::{Login, Page, Saved};
use super::{AlfaCrm, PAGE_SIZE, TOKEN_LIFETIME};
use crate::connectors::{Failure, Kind, Quirks};
use crate::school::SchoolError;

impl AlfaCrm {
    pub fn new(config: AlfaCrmConfig) -> Result<AlfaCrm, SchoolError> {
        let http = crate::connectors::http::builder(Some(Duration::from_secs(config.timeout_secs)))
            .build()
            .map_err(|e| SchoolError::permanent(format!("cannot build the HTTP client: {e}")))?;
        Ok(AlfaCrm {
            http,
            config,
            token: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &AlfaCrmConfig {
        &self.config
    }

    fn url(&self, path: &str) -> Result<url::Url, SchoolError> {
        self.config
            .base_url
            .join(path)
            .map_err(|e| SchoolError::permanent(format!("bad AlfaCRM URL {path}: {e}")))
    }

    async fn login(&self) -> Result<String, SchoolError> {
        let response = self
            .http
            .post(self.url("/v2api/auth/login")?)
            .json(&Login {
                email: &self.config.email,
                api_key: self.config.api_key.expose_secret(),
            })
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let failure = Failure::from_status(&AlfaCrmQuirks, status, None, None, "");
            if failure.is_auth() {
                return Err(Failure {
                    message: format!(
                        "AlfaCRM refused the login of {} (HTTP {status}): check \
                         school.alfacrm.email and api_key, and that the user's role has the \
                         v2api module",
                        self.config.email
                    ),
                    ..failure
                }
                .into());
            }
        }
        let body = check_status(response).await?;
        #[derive(Deserialize)]
        struct Token {
            token: String,
        }
        let token: Token = serde_json::from_value(body)
            .map_err(|e| SchoolError::permanent(format!("AlfaCRM login answer: {e}")))?;
        Ok(token.token)
    }

    async fn token(&self, renew: bool) -> Result<String, SchoolError> {
        let mut held = self.token.lock().await;
        if !renew
            && let Some((token, at)) = held.as_ref()
            && at.elapsed() < TOKEN_LIFETIME
        {
            return Ok(token.clone());
        }
        let token = self.login().await?;
        *held = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    /// One branch-scoped call; `query` carries what AlfaCRM wants in the URL (`id`,
    /// `group_id`, `per-page`).
    pub async fn call(
        &self,
        entity_action: &str,
        query: &[(&str, String)],
        body: &Value,
    ) -> Result<Value, SchoolError> {
        let path = format!("/v2api/{}/{entity_action}", self.config.branch_id);
        let mut renewed = false;
        loop {
            let token = self.token(false).await?;
            let response = self
                .http
                .post(self.url(&path)?)
                .query(query)
                .header("X-ALFACRM-TOKEN", token)
                .json(body)
                .send()
                .await
                .map_err(transport)?;
            if response.status().as_u16() == 401 && !renewed {
                // The vendor's advice: the token died early (restart, another login), log in
                // again once.
                renewed = true;
                self.token(true).await?;
                continue;
            }
            return check_status(response).await;
        }
    }

    pub(super) async fn index<T: serde::de::DeserializeOwned>(
        &self,
        entity: &str,
        query: &[(&str, String)],
        filter: Value,
    ) -> Result<Vec<T>, SchoolError> {
        let mut out = Vec::new();
        let mut page = 0i64;
        loop {
            let mut body = filter.clone();
            if let Some(map) = body.as_object_mut() {
                map.insert("page".into(), json!(page));
            }
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("per-page", PAGE_SIZE.to_string()));
            let answer = self.call(&format!("{entity}/index"), &q, &body).await?;
            let page_of: Page<T> = serde_json::from_value(answer).map_err(|e| {
                SchoolError::permanent(format!("AlfaCRM {entity}/index answer: {e}"))
            })?;
            let got = page_of.items.len() as i64;
            out.extend(page_of.items);
            if got == 0 || out.len() as i64 >= page_of.total || page >= 50 {
                return Ok(out);
            }
            page += 1;
        }
    }

    pub(super) async fn save(
        &self,
        entity_action: &str,
        query: &[(&str, String)],
        body: &Value,
    ) -> Result<Value, SchoolError> {
        let answer = self.call(entity_action, query, body).await?;
        let saved: Saved = serde_json::from_value(answer)
            .map_err(|e| SchoolError::permanent(format!("AlfaCRM {entity_action} answer: {e}")))?;
        if !saved.success || has_errors(&saved.errors) {
            return Err(SchoolError::Rejected {
                message: format!("AlfaCRM refused {entity_action}"),
                fields: field_errors(&saved.errors),
            });
        }
        Ok(saved.model)
    }

    /// Logs in and reads the branch list: proves the e-mail, key and branch are right.
    pub async fn check(&self) -> Result<String, SchoolError> {
        self.token(true).await?;
        let path = "/v2api/branch/index";
        let token = self.token(false).await?;
        let answer = check_status(
            self.http
                .post(self.url(path)?)
                .header("X-ALFACRM-TOKEN", token)
                .json(&json!({"is_active": 1, "page": 0}))
                .send()
                .await
                .map_err(transport)?,
        )
        .await?;
        let branches: Page<Value> = serde_json::from_value(answer)
            .map_err(|e| SchoolError::permanent(format!("AlfaCRM branch/index answer: {e}")))?;
        let branch = branches
            .items
            .iter()
            .find(|b| b["id"].as_i64() == Some(self.config.branch_id));
        match branch {
            Some(b) => Ok(format!(
                "logged in as {}, branch {} ({})",
                self.config.email,
                self.config.branch_id,
                b["name"].as_str().unwrap_or("?")
            )),
            None if branches.items.is_empty() => Ok(format!(
                "logged in as {}, branch {}",
                self.config.email, self.config.branch_id
            )),
            None => Err(SchoolError::permanent(format!(
                "branch {} is not among the account's branches",
                self.config.branch_id
            ))),
        }
    }
}

fn has_errors(errors: &Value) -> bool {
    match errors {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Null => false,
        _ => true,
    }
}

fn field_errors(errors: &Value) -> Vec<(String, String)> {
    match errors {
        Value::Object(map) => map
            .iter()
            .flat_map(|(field, messages)| {
                let list: Vec<String> = match messages {
                    Value::Array(a) => a
                        .iter()
                        .map(|m| {
                            m.as_str()
                                .map(String::from)
                                .unwrap_or_else(|| m.to_string())
                        })
                        .collect(),
                    other => vec![other.as_str().unwrap_or_default().to_string()],
                };
                list.into_iter().map(move |m| (field.clone(), m))
            })
            .collect(),
        Value::Array(a) => a
            .iter()
            .map(|m| (String::new(), m.as_str().unwrap_or_default().to_string()))
            .collect(),
        _ => Vec::new(),
    }
}

fn transport(e: reqwest::Error) -> SchoolError {
    SchoolError::transient(format!("AlfaCRM unreachable: {}", e.without_url()))
}

async fn check_status(response: reqwest::Response) -> Result<Value, SchoolError> {
    let status = response.status().as_u16();
    let retry_after = crate::connectors::failure::retry_after(response.headers());
    let text = response.text().await.map_err(transport)?;
    if (200..=299).contains(&status) {
        return serde_json::from_str(&text)
            .map_err(|e| SchoolError::permanent(format!("AlfaCRM answered non-JSON: {e}")));
    }
    let vendor_message = || {
        serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(String::from))
            .unwrap_or_else(|| text.chars().take(200).collect())
    };
    // The PHP client waits a second after a 429; no Retry-After is documented.
    let hint = if status == 429 {
        retry_after.or(Some(Duration::from_secs(1)))
    } else {
        retry_after
    };
    let failure = Failure::from_status(&AlfaCrmQuirks, status, None, hint, "");
    let message = match failure.kind {
        Kind::Auth => format!(
            "AlfaCRM refused the token (HTTP {status}): {}",
            vendor_message()
        ),
        Kind::Transient { .. } if status == 429 => "AlfaCRM asks to slow down (429)".into(),
        Kind::Transient { .. } => format!("AlfaCRM failed (HTTP {status}): {}", vendor_message()),
        Kind::Permanent | Kind::PaymentRequired => format!("HTTP {status}: {}", vendor_message()),
    };
    Err(Failure { message, ..failure }.into())
}

/// Where this connector has always read AlfaCRM's statuses otherwise than the shared
/// classifier; kept as they were.
pub(super) struct AlfaCrmQuirks;

impl Quirks for AlfaCrmQuirks {
    fn classify(&self, status: Option<u16>, _: Option<&str>, _: &str) -> Option<Kind> {
        match status? {
            // AlfaCRM documents no payment status: a 402 is refused like any other 4xx.
            402 | 425 => Some(Kind::Permanent),
            505 => Some(Kind::Transient { retry_after: None }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(status: u16) -> Kind {
        Failure::from_status(&AlfaCrmQuirks, status, None, None, "").kind
    }

    #[test]
    fn a_402_is_refused_not_payment_required() {
        assert_eq!(kind(402), Kind::Permanent);
    }

    #[test]
    fn a_425_is_refused() {
        assert_eq!(kind(425), Kind::Permanent);
    }

    #[test]
    fn a_505_passes_and_a_501_is_refused() {
        assert!(matches!(kind(505), Kind::Transient { .. }));
        assert_eq!(kind(501), Kind::Permanent);
    }

    #[test]
    fn the_status_decides_the_rest() {
        assert_eq!(kind(401), Kind::Auth);
        assert_eq!(kind(403), Kind::Auth);
        for s in [408, 429, 500, 503] {
            assert!(matches!(kind(s), Kind::Transient { .. }), "{s}");
        }
        assert_eq!(kind(404), Kind::Permanent);
    }
}
