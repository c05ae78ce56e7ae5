//! Calls to amoCRM: OAuth grants (the code, the refresh token; the pair and its lock are
//! [`OAuthTokens`]), the paced request, and the sorting of an answer's status into what the
//! caller should do.

use super::*;
use crate::connectors::pacing::AMOCRM_INLINE_WAIT;
use crate::connectors::{Failure, Kind, Quirks};
use crate::domain::BusinessId;

impl AmoCrm {
    // ---------------------------------------------------------------- OAuth

    /// Exchanges an authorisation code (valid 20 minutes) for the first token pair and stores
    /// it. Backs `zapis amocrm auth --code CODE`.
    pub async fn exchange_code(&self, code: &str) -> Result<(), CrmError> {
        let AuthMode::OAuth(oauth) = &self.inner.auth else {
            return Err(CrmError::permanent(
                "crm.amocrm uses a long-lived token; an authorisation code is only for OAuth",
            ));
        };
        oauth
            .tokens
            .exchange(
                self.inner.clock.as_ref(),
                self.token_request(oauth, Grant::Code(code)),
            )
            .await?;
        tracing::info!("amoCRM authorised; token pair stored");
        Ok(())
    }

    pub(super) async fn access_token(&self) -> Result<SecretString, CrmError> {
        let oauth = match &self.inner.auth {
            AuthMode::LongLived(token) => return Ok(token.clone()),
            AuthMode::OAuth(oauth) => oauth,
        };
        oauth
            .tokens
            .access_token(self.inner.clock.as_ref(), |refresh_token| {
                self.spend_refresh_token(oauth, refresh_token)
            })
            .await
    }

    /// After a 401: refresh unless someone already replaced the token that was refused.
    pub(super) async fn refresh_after_401(&self, refused: &SecretString) -> Result<(), CrmError> {
        let AuthMode::OAuth(oauth) = &self.inner.auth else {
            return Ok(());
        };
        oauth
            .tokens
            .refresh_after_401(refused, self.inner.clock.as_ref(), |refresh_token| {
                self.spend_refresh_token(oauth, refresh_token)
            })
            .await
    }

    async fn spend_refresh_token(
        &self,
        oauth: &OAuth,
        refresh_token: SecretString,
    ) -> Result<TokenPair, CrmError> {
        self.token_request(oauth, Grant::Refresh(&refresh_token))
            .await
    }

    pub(super) async fn token_request(
        &self,
        oauth: &OAuth,
        grant: Grant<'_>,
    ) -> Result<TokenPair, CrmError> {
        let (grant_type, code, refresh_token) = match grant {
            Grant::Code(c) => ("authorization_code", Some(c), None),
            Grant::Refresh(r) => ("refresh_token", None, Some(r.expose_secret())),
        };
        let body = TokenRequestOut {
            client_id: &oauth.client_id,
            client_secret: oauth.client_secret.expose_secret(),
            grant_type,
            code,
            refresh_token,
            redirect_uri: &oauth.redirect_uri,
        };
        let url = self.url("/oauth2/access_token")?;
        let turn = self.inner.limiter.turn().await;
        let response = self.inner.http.post(url).json(&body).send().await;
        drop(turn);
        let response = response.map_err(transport_error)?;
        let status = response.status();
        let retry_after = retry_after(&response);
        let bytes = response.bytes().await.map_err(transport_error)?;
        tracing::debug!(
            status = status.as_u16(),
            grant_type,
            "amoCRM token endpoint"
        );
        if status.is_success() {
            let token: TokenIn = parse_body(&bytes, "token response")?;
            return Ok(TokenPair {
                access_token: SecretString::from(token.access_token),
                refresh_token: SecretString::from(token.refresh_token),
                expires_at: self.now() + chrono::Duration::seconds(token.expires_in),
            });
        }
        let failure = Failure::from_status(
            &TokenEndpointQuirks,
            status.as_u16(),
            None,
            retry_after,
            "amoCRM token endpoint unavailable",
        );
        if failure.is_transient() {
            return Err(failure.into());
        }
        let problem: ProblemIn = serde_json::from_slice(&bytes).unwrap_or_default();
        let why = problem
            .hint
            .or(problem.detail)
            .or(problem.title)
            .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        let what = match grant {
            Grant::Code(_) => "refused the authorisation code",
            Grant::Refresh(_) => {
                "refused the refresh token (it is single-use and expires after 3 months unused)"
            }
        };
        Err(CrmError::from(Failure {
            message: format!("amoCRM {what}: {why}; {AUTH_FIX}"),
            ..failure
        }))
    }

    // ---------------------------------------------------------------- transport

    pub(super) fn url(&self, path: &str) -> Result<Url, CrmError> {
        self.inner
            .config
            .base_url
            .join(path)
            .map_err(|e| CrmError::permanent(format!("bad amoCRM URL for {path}: {e}")))
    }

    pub(super) async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<Vec<u8>>, CrmError> {
        self.execute(Method::GET, path, query, None).await
    }

    pub(super) async fn send_json<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<Option<Vec<u8>>, CrmError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| CrmError::permanent(format!("cannot encode the request: {e}")))?;
        self.execute(method, path, &[], Some(bytes)).await
    }

    /// One API call: rate-limited, authorised, refreshed once on 401 (OAuth), and mapped to
    /// `CrmError` by status. `None` is amoCRM's 204 (nothing found).
    pub(super) async fn execute(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, CrmError> {
        let url = self.url(path)?;
        let oauth = matches!(self.inner.auth, AuthMode::OAuth(_));
        let mut refreshed = false;
        let mut throttled = false;
        loop {
            let token = self.access_token().await?;
            let turn = self.inner.limiter.turn().await;
            let mut request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose_secret())
                .header(
                    ACCEPT,
                    "application/hal+json, application/problem+json, application/json",
                );
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let response = request.send().await;
            // amoCRM counted the request before it answered: from now its place frees a window on.
            drop(turn);
            let response = response.map_err(transport_error)?;
            let status = response.status();
            // The query may hold a phone number: log the path only.
            tracing::debug!(%method, path, status = status.as_u16(), "amoCRM call");
            if status == StatusCode::UNAUTHORIZED && oauth && !refreshed {
                refreshed = true;
                self.refresh_after_401(&token).await?;
                continue;
            }
            let retry_after = retry_after(&response);
            // Read to the end either way, so the connection goes back to the pool.
            let bytes = response.bytes().await.map_err(transport_error)?;
            if status == StatusCode::TOO_MANY_REQUESTS && !throttled {
                // amoCRM did nothing with a 429'd request, so sending it again is safe; a
                // short wait here costs the caller a second instead of the queue's backoff.
                let wait = retry_after.unwrap_or(Duration::from_secs(1));
                if wait <= AMOCRM_INLINE_WAIT {
                    throttled = true;
                    tracing::info!(
                        %method,
                        path,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "amoCRM asks us to slow down"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            return map_status(status, retry_after, &bytes, oauth);
        }
    }
}

/// `zapis amocrm auth --code CODE`: exchanges the code and stores the first token pair for
/// `business_id`. The CLI only has to load the config and the store and call this.
pub async fn authorize(
    config: AmoCrmConfig,
    store: Store,
    business_id: &BusinessId,
    code: &str,
) -> Result<(), CrmError> {
    let client = AmoCrm::new(
        config,
        store,
        business_id,
        Arc::new(crate::clock::SystemClock),
    )?;
    client.exchange_code(code).await
}

#[derive(Clone, Copy)]
pub(super) enum Grant<'a> {
    Code(&'a str),
    Refresh(&'a SecretString),
}

/// amoCRM's 400 naming a custom field (`custom_fields_values.N.field_id`).
pub(super) fn refuses_a_field(e: &CrmError) -> bool {
    e.status() == Some(400)
        && e.details()
            .iter()
            .any(|d| d.path.contains("custom_fields_values"))
}

/// PHONE enum codes: a mobile line is `MOB`, a landline `WORK`.
pub(super) fn phone_enum(mobile: bool) -> &'static str {
    if mobile { "MOB" } else { "WORK" }
}

pub(super) fn lead_id(id: &str) -> Result<i64, CrmError> {
    id.parse()
        .map_err(|_| CrmError::permanent(format!("{id:?} is not an amoCRM id")))
}

// -------------------------------------------------------------------- status mapping

pub(super) fn transport_error(e: reqwest::Error) -> CrmError {
    // The URL may carry a phone in the query: the shared builder leaves it out.
    CrmError::from(crate::connectors::http::transport_failure("amoCRM", "", e))
}

pub(super) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    crate::connectors::failure::retry_after(response.headers())
}

pub(super) fn map_status(
    status: StatusCode,
    retry_after: Option<Duration>,
    bytes: &[u8],
    oauth: bool,
) -> Result<Option<Vec<u8>>, CrmError> {
    let code = status.as_u16();
    if status == StatusCode::NO_CONTENT {
        return Ok(None);
    }
    if status.is_success() {
        return Ok(Some(bytes.to_vec()));
    }
    // 429 bodies may not be JSON (the official SDK says so): parse leniently everywhere.
    let problem: ProblemIn = serde_json::from_slice(bytes).unwrap_or_default();
    let message = problem
        .detail
        .clone()
        .or_else(|| problem.title.clone())
        .or_else(|| problem.hint.clone())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_string()
        });
    let message = match code {
        401 if oauth => {
            format!("amoCRM refused the access token even after a refresh ({message}); {AUTH_FIX}")
        }
        401 => format!(
            "amoCRM refused the long-lived token ({message}); issue a new one in the integration's \"Keys and scopes\" tab and set crm.amocrm.token"
        ),
        403 => format!(
            "amoCRM refused access ({message}): the account or IP may be blocked for exceeding the rate limit, or the user lacks rights"
        ),
        429 => "amoCRM rate limit exceeded".into(),
        _ => message,
    };
    // A 429 without `Retry-After` still means "within the second": amoCRM's window is one.
    let hint = if code == 429 {
        retry_after.or(Some(Duration::from_secs(1)))
    } else {
        retry_after
    };
    let failure = Failure::from_status(&AmoCrmQuirks, code, None, hint, message);
    if failure.kind != Kind::Permanent {
        return Err(CrmError::from(failure));
    }
    let details = problem
        .validation_errors
        .into_iter()
        .flat_map(|item| {
            let request_id = item.request_id;
            item.errors.into_iter().map(move |e| FieldError {
                request_id: request_id.clone(),
                code: e.code.unwrap_or_default(),
                path: e.path.unwrap_or_default(),
                detail: e.detail.unwrap_or_default(),
            })
        })
        .collect();
    Err(CrmError::invalid(failure, details))
}

/// Where amoCRM's statuses mean something other than the shared classifier says.
pub(super) struct AmoCrmQuirks;

impl Quirks for AmoCrmQuirks {
    fn classify(&self, status: Option<u16>, _: Option<&str>, _: &str) -> Option<Kind> {
        match status? {
            // amoCRM blocks an account or address that exceeded its rate limit with a 403 (as
            // it refuses a user without rights): the block lifts by itself, so wait it out.
            403 => Some(Kind::Transient {
                retry_after: Some(BLOCKED_RETRY),
            }),
            // This connector has always retried every 5xx and refused a 425; kept as it was.
            501 | 505 => Some(Kind::Transient { retry_after: None }),
            425 => Some(Kind::Permanent),
            _ => None,
        }
    }
}

/// The OAuth token endpoint: any refusal there (a used, expired (3 months unused) or revoked
/// refresh token, a stale code or a wrong secret) is terminal, and only a fresh authorisation
/// helps; a rate limit or an outage passes.
pub(super) struct TokenEndpointQuirks;

impl Quirks for TokenEndpointQuirks {
    fn classify(&self, status: Option<u16>, _: Option<&str>, _: &str) -> Option<Kind> {
        match status? {
            429 | 500..=599 => Some(Kind::Transient { retry_after: None }),
            _ => Some(Kind::Auth),
        }
    }
}

pub(super) fn parse_body<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, CrmError> {
    // A 2xx we cannot read leaves the outcome unknown; retrying is safe because every create
    // is preceded by a search.
    serde_json::from_slice(bytes)
        .map_err(|e| CrmError::transient(format!("unexpected amoCRM {what}: {e}")))
}
