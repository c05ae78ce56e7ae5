//! Calls to the portal: one method, a batch of up to 50, paging; and the sorting of Bitrix24's
//! errors (an `error` code, else the status) into what the caller should do.

use super::*;
use crate::connectors::{Failure, Kind, Quirks};
use crate::domain::BusinessId;

// -------------------------------------------------------------------- errors

/// A failed call before it is sorted into a [`CrmError`]: callers that expect "Not found"
/// (reads) look at it first.
#[derive(Debug)]
pub(super) enum CallError {
    Api(ApiError),
    Crm(CrmError),
}

#[derive(Debug, Clone)]
pub(super) struct ApiError {
    pub(super) status: Option<u16>,
    pub(super) code: String,
    pub(super) description: String,
    pub(super) retry_after: Option<Duration>,
    pub(super) oauth: bool,
}

impl CallError {
    pub(super) fn is_not_found(&self) -> bool {
        match self {
            CallError::Api(e) => {
                e.code.eq_ignore_ascii_case("NOT_FOUND")
                    || e.code == "OWNER_NOT_FOUND"
                    || e.description
                        .trim_end_matches('.')
                        .eq_ignore_ascii_case("not found")
            }
            CallError::Crm(_) => false,
        }
    }
}

impl From<CrmError> for CallError {
    fn from(e: CrmError) -> CallError {
        CallError::Crm(e)
    }
}

impl From<CallError> for CrmError {
    fn from(e: CallError) -> CrmError {
        match e {
            CallError::Crm(e) => e,
            CallError::Api(e) => map_error(&e),
        }
    }
}

/// Sorts a Bitrix24 error into what the caller should do: [`Bitrix24Quirks`] by the `error`
/// code when it is known; legacy `crm.*` methods send an empty code, and then the HTTP status
/// does.
pub(super) fn map_error(e: &ApiError) -> CrmError {
    let code = e.code.as_str();
    let desc = if e.description.is_empty() {
        code.to_string()
    } else {
        e.description.clone()
    };
    let message = if code.is_empty() {
        desc.clone()
    } else {
        format!("{code}: {desc}")
    };
    let refused_token = |whose: &str| {
        if e.oauth {
            format!("Bitrix24 refused {whose} ({message}); {OAUTH_FIX}")
        } else {
            format!("Bitrix24 refused the incoming webhook ({message}); {WEBHOOK_FIX}")
        }
    };
    let text = match (code, e.status) {
        (c, _) if is_refused_token(c) => refused_token("the application's token"),
        (c, _) if is_missing_right(c) => format!("Bitrix24 {message}; {SCOPE_FIX}"),
        ("PORTAL_DELETED", _) => format!("Bitrix24 {message}; the portal is closed"),
        (c, Some(401)) if !is_known(c) => refused_token("the token"),
        ("", Some(403)) => format!("Bitrix24 {message}; {SCOPE_FIX}"),
        _ => format!("Bitrix24 {message}"),
    };
    let code = (!code.is_empty()).then_some(code);
    let hint = e.retry_after.or(match code {
        Some("QUERY_LIMIT_EXCEEDED") => Some(QUERY_LIMIT_RETRY),
        Some("OPERATION_TIME_LIMIT") => Some(OPERATION_LIMIT_RETRY),
        _ => None,
    });
    CrmError::from(Failure::from_answer(
        &Bitrix24Quirks,
        e.status,
        code,
        hint,
        text,
    ))
}

const SCOPE_FIX: &str =
    "give the webhook's user (or the application) the crm and task scopes and access to the funnel";

fn is_refused_token(code: &str) -> bool {
    matches!(
        code,
        "expired_token" | "invalid_token" | "NO_AUTH_FOUND" | "invalid_grant" | "invalid_client"
    )
}

fn is_missing_right(code: &str) -> bool {
    matches!(
        code,
        "ACCESS_DENIED"
            | "insufficient_scope"
            | "INVALID_CREDENTIALS"
            | "user_access_error"
            | "invalid_scope"
    )
}

/// The codes [`Bitrix24Quirks`] decides by; any other leaves the decision to the status.
fn is_known(code: &str) -> bool {
    is_refused_token(code)
        || is_missing_right(code)
        || matches!(
            code,
            "QUERY_LIMIT_EXCEEDED"
                | "OPERATION_TIME_LIMIT"
                | "OVERLOAD_LIMIT"
                | "PAYMENT_REQUIRED"
                | "PORTAL_DELETED"
                | "INTERNAL_SERVER_ERROR"
                | "ERROR_UNEXPECTED_ANSWER"
                | "ERROR_CORE"
        )
}

/// What Bitrix24 says beyond its status: its rate limits come as 503 (or 429) with a code,
/// a missing right as 401 or 403 with a code, and a refused token as a code whatever the
/// status.
pub(super) struct Bitrix24Quirks;

impl Quirks for Bitrix24Quirks {
    fn classify(&self, status: Option<u16>, code: Option<&str>, _: &str) -> Option<Kind> {
        let pass = Kind::Transient { retry_after: None };
        match code.unwrap_or("") {
            "QUERY_LIMIT_EXCEEDED" | "OPERATION_TIME_LIMIT" => Some(pass),
            // The portal is overloaded as a whole: ten minutes, whatever the header says.
            "OVERLOAD_LIMIT" => Some(Kind::Transient {
                retry_after: Some(OVERLOAD_RETRY),
            }),
            c if is_refused_token(c) => Some(Kind::Auth),
            "PAYMENT_REQUIRED" => Some(Kind::PaymentRequired),
            // A right the webhook's user lacks is fixed in the portal, not by new credentials.
            c if is_missing_right(c) => Some(Kind::Permanent),
            "PORTAL_DELETED" => Some(Kind::Permanent),
            "INTERNAL_SERVER_ERROR" | "ERROR_UNEXPECTED_ANSWER" => Some(pass),
            // ERROR_CORE is the CRM core refusing: a 5xx (or no status) is its own trouble and
            // passes; with a 4xx it judged our data (e.g. "invalid address"), which stays wrong.
            "ERROR_CORE" => match status {
                Some(400..=499) => Some(Kind::Permanent),
                _ => Some(pass),
            },
            _ => match status {
                // A legacy method's 403 without a code is a missing right, as above.
                Some(403) => Some(Kind::Permanent),
                // This connector has always retried every 5xx and refused a 425; kept as it was.
                Some(501 | 505) => Some(pass),
                Some(425) => Some(Kind::Permanent),
                // A batch command's own error carries no status: one we do not know passes.
                None => Some(pass),
                _ => None,
            },
        }
    }
}

pub(super) fn transport_error(e: reqwest::Error) -> CrmError {
    // The URL carries the webhook's secret code (or a phone in a query): left out.
    CrmError::from(crate::connectors::http::transport_failure(
        "Bitrix24", "", e,
    ))
}

pub(super) fn parse_value<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, CrmError> {
    // A 2xx we cannot read leaves the outcome unknown; retrying is safe because creates are
    // preceded by searches.
    serde_json::from_value(value)
        .map_err(|e| CrmError::transient(format!("unexpected Bitrix24 {what}: {e}")))
}

pub(super) fn retry_after_header(response: &reqwest::Response) -> Option<Duration> {
    crate::connectors::failure::retry_after(response.headers())
}

// -------------------------------------------------------------------- client

/// One successful answer: `result`, and for lists `total`/`next`.
pub(super) struct Answer {
    pub(super) result: Value,
    pub(super) next: Option<u64>,
    pub(super) total: Option<u64>,
}

pub(super) enum Body {
    Json(Value),
    Form(Vec<(String, String)>),
}

/// One `batch` command: its name (reported on failure), method and parameters.
pub(super) struct Command {
    pub(super) name: String,
    pub(super) method: &'static str,
    pub(super) params: Value,
}

impl Bitrix24 {
    /// Builds a client. With OAuth the token pair lives in `store` under `business_id`; run
    /// [`Bitrix24::exchange_code`] (CLI `zapis bitrix24 auth --code CODE`) once first.
    pub fn new(
        config: Bitrix24Config,
        store: Store,
        business_id: &BusinessId,
        clock: Arc<dyn Clock>,
    ) -> Result<Bitrix24, CrmError> {
        config
            .validate()
            .map_err(|e| CrmError::permanent(e.to_string()))?;
        let http = crate::crm::http_client(config.timeout_secs)?;
        let bad = |key: &str| CrmError::permanent(format!("crm.bitrix24.{key} is not usable"));
        let (auth, portal) = match (&config.webhook_url, &config.portal_url) {
            (Some(hook), _) => {
                let mut base = hook.expose_secret().trim().to_string();
                if !base.ends_with('/') {
                    base.push('/');
                }
                let portal = Url::parse(&base).map_err(|_| bad("webhook_url"))?;
                let origin = Url::parse(&portal.origin().ascii_serialization())
                    .map_err(|_| bad("webhook_url"))?;
                (AuthMode::Webhook(SecretString::from(base)), origin)
            }
            (None, Some(portal)) => {
                let rest = portal.join("/rest/").map_err(|_| bad("portal_url"))?;
                let oauth = OAuth {
                    rest,
                    client_id: config.client_id.clone().ok_or_else(|| bad("client_id"))?,
                    client_secret: config
                        .client_secret
                        .clone()
                        .ok_or_else(|| bad("client_secret"))?,
                    token_url: config.oauth_url.clone(),
                    tokens: OAuthTokens::new(
                        TokenStore::new(store.clone(), business_id, SYSTEM),
                        "Bitrix24",
                        OAUTH_FIX,
                    ),
                };
                (AuthMode::OAuth(Box::new(oauth)), portal.clone())
            }
            (None, None) => return Err(bad("webhook_url")),
        };
        let limiter = limiter_for(&portal, config.max_requests_per_second, config.burst);
        // Every process on the store shares the account's pace too.
        limiter.share_through(&store);
        Ok(Bitrix24 {
            inner: Arc::new(Inner {
                config,
                http,
                limiter,
                auth,
                clock,
                directory: tokio::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn config(&self) -> &Bitrix24Config {
        &self.inner.config
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// Deal mode (contact + deal) rather than lead mode.
    pub fn is_deal(&self) -> bool {
        self.inner.config.mode == Bitrix24Mode::Deal
    }

    /// `crm.bitrix24.application_token`, which outbound events must carry.
    pub fn application_token(&self) -> Option<&SecretString> {
        self.inner.config.application_token.as_ref()
    }

    pub(super) fn is_oauth(&self) -> bool {
        matches!(self.inner.auth, AuthMode::OAuth(_))
    }

    // ---------------------------------------------------------------- OAuth

    /// Exchanges an application's authorisation code for the first token pair and stores it.
    pub async fn exchange_code(&self, code: &str) -> Result<(), CrmError> {
        let AuthMode::OAuth(oauth) = &self.inner.auth else {
            return Err(CrmError::permanent(
                "crm.bitrix24 uses an incoming webhook; an authorisation code is only for OAuth",
            ));
        };
        oauth
            .tokens
            .exchange(
                self.inner.clock.as_ref(),
                self.token_request(oauth, "authorization_code", "code", code),
            )
            .await?;
        tracing::info!("Bitrix24 application authorised; token pair stored");
        Ok(())
    }

    pub(super) async fn access_token(&self, oauth: &OAuth) -> Result<SecretString, CrmError> {
        oauth
            .tokens
            .access_token(self.inner.clock.as_ref(), |refresh_token| {
                self.spend_refresh_token(oauth, refresh_token)
            })
            .await
    }

    /// After `expired_token`: refresh unless someone already replaced the refused token.
    pub(super) async fn refresh_after_401(
        &self,
        oauth: &OAuth,
        refused: &SecretString,
    ) -> Result<(), CrmError> {
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
        self.token_request(
            oauth,
            "refresh_token",
            "refresh_token",
            refresh_token.expose_secret(),
        )
        .await
    }

    /// `GET https://oauth.bitrix.info/oauth/token/?grant_type=…`: the central server, not the
    /// portal, so the portal's bucket does not apply.
    pub(super) async fn token_request(
        &self,
        oauth: &OAuth,
        grant_type: &str,
        key: &str,
        value: &str,
    ) -> Result<TokenPair, CrmError> {
        let response = self
            .inner
            .http
            .get(oauth.token_url.clone())
            .query(&[
                ("grant_type", grant_type),
                ("client_id", oauth.client_id.as_str()),
                ("client_secret", oauth.client_secret.expose_secret()),
                (key, value),
            ])
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let retry_after = retry_after_header(&response);
        let bytes = response.bytes().await.map_err(transport_error)?;
        tracing::debug!(
            status = status.as_u16(),
            grant_type,
            "Bitrix24 token endpoint"
        );
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() && body.get("error").is_none() {
            let token: TokenIn = parse_value(body, "token response")?;
            return Ok(TokenPair {
                access_token: SecretString::from(token.access_token),
                refresh_token: SecretString::from(token.refresh_token),
                expires_at: self.now() + chrono::Duration::seconds(token.expires_in),
            });
        }
        let err: ErrorIn = serde_json::from_value(body).unwrap_or_default();
        let api = ApiError {
            status: Some(status.as_u16()),
            code: err.error.clone(),
            description: err.error_description.clone(),
            retry_after,
            oauth: true,
        };
        if err.error == "PAYMENT_REQUIRED" || status.is_server_error() || status == 429 {
            return Err(map_error(&api));
        }
        // Any other refusal is terminal: a spent or expired (180 days) refresh token, a stale
        // code (30 seconds) or a wrong secret; only a fresh authorisation helps.
        let why = if err.error.is_empty() {
            format!("HTTP {}", status.as_u16())
        } else {
            format!("{}: {}", err.error, err.error_description)
        };
        let what = if grant_type == "refresh_token" {
            "refused the refresh token (single-use, valid 180 days)"
        } else {
            "refused the authorisation code"
        };
        Err(CrmError::from(
            Failure::auth(format!("Bitrix24 {what}: {why}; {OAUTH_FIX}"))
                .with_status(status.as_u16()),
        ))
    }

    // ---------------------------------------------------------------- transport

    pub(super) async fn call(&self, method: &str, params: Value) -> Result<Answer, CallError> {
        self.send(method, Body::Json(params)).await
    }

    /// One REST call: paced by the portal's limiter, authorised, refreshed once on
    /// `expired_token` (OAuth), errors sorted by [`map_error`].
    pub(super) async fn send(&self, method: &str, body: Body) -> Result<Answer, CallError> {
        let mut refreshed = false;
        loop {
            let (url, token) = match &self.inner.auth {
                AuthMode::Webhook(base) => {
                    let url = Url::parse(base.expose_secret())
                        .and_then(|b| b.join(method))
                        .map_err(|_| {
                            CrmError::permanent("crm.bitrix24.webhook_url is not usable")
                        })?;
                    (url, None)
                }
                AuthMode::OAuth(oauth) => {
                    let url = oauth.rest.join(method).map_err(|_| {
                        CrmError::permanent(format!("bad Bitrix24 method name {method:?}"))
                    })?;
                    (url, Some(self.access_token(oauth).await?))
                }
            };
            let mut request = self.inner.http.post(url);
            request = match &body {
                Body::Json(params) => {
                    let mut params = params.clone();
                    if let (Some(token), Value::Object(map)) = (&token, &mut params) {
                        map.insert("auth".into(), Value::String(token.expose_secret().into()));
                    }
                    let bytes = serde_json::to_vec(&params).map_err(|e| {
                        CrmError::permanent(format!("cannot encode the request: {e}"))
                    })?;
                    request.header(CONTENT_TYPE, "application/json").body(bytes)
                }
                Body::Form(pairs) => {
                    let mut s = url::form_urlencoded::Serializer::new(String::new());
                    for (k, v) in pairs {
                        s.append_pair(k, v);
                    }
                    if let Some(token) = &token {
                        s.append_pair("auth", token.expose_secret());
                    }
                    request
                        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(s.finish())
                }
            };
            self.inner.limiter.until_ready().await;
            let response = request.send().await.map_err(transport_error)?;
            let status = response.status();
            // The URL holds the webhook code: log the method only.
            tracing::debug!(method, status = status.as_u16(), "Bitrix24 call");
            let retry_after = retry_after_header(&response);
            let bytes = response.bytes().await.map_err(transport_error)?;
            let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
            let error = parsed
                .as_ref()
                .and_then(|v| v.get("error"))
                .filter(|e| !e.is_null());
            if status.is_success()
                && error.is_none()
                && let Some(Value::Object(mut map)) = parsed
            {
                let result = map.remove("result").unwrap_or(Value::Null);
                let next = map.get("next").and_then(|n| n.as_u64());
                let total = map.get("total").and_then(|n| n.as_u64());
                return Ok(Answer {
                    result,
                    next,
                    total,
                });
            }
            let err: ErrorIn = parsed
                .clone()
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
            if let (Some(token), AuthMode::OAuth(oauth)) = (&token, &self.inner.auth)
                && !refreshed
                && (err.error == "expired_token"
                    || (status == StatusCode::UNAUTHORIZED && err.error != "NO_AUTH_FOUND"))
            {
                refreshed = true;
                self.refresh_after_401(oauth, token).await?;
                continue;
            }
            let retry_after = retry_after.or_else(|| {
                // 429 OPERATION_TIME_LIMIT: `time.operating_reset_at` says when the oldest
                // basket drops.
                let reset = parsed
                    .as_ref()?
                    .get("time")?
                    .get("operating_reset_at")?
                    .as_i64()?;
                let wait = reset - self.now().timestamp();
                (wait > 0).then(|| Duration::from_secs(wait.unsigned_abs()))
            });
            if parsed.is_none() && status.is_success() {
                return Err(CrmError::transient(format!(
                    "Bitrix24 {method} answered something other than JSON"
                ))
                .into());
            }
            return Err(CallError::Api(ApiError {
                status: Some(status.as_u16()),
                code: err.error,
                description: err.error_description,
                retry_after,
                oauth: self.is_oauth(),
            }));
        }
    }

    /// Every page of a list method (`start` = the previous answer's `next`).
    pub(super) async fn list_all(
        &self,
        method: &str,
        params: Value,
    ) -> Result<Vec<Value>, CrmError> {
        let mut items = Vec::new();
        let mut params = params;
        for _ in 0..MAX_PAGES {
            let answer = self.call(method, params.clone()).await?;
            match answer.result {
                Value::Array(page) => items.extend(page),
                // Empty lists may come as `{}` or `[]` (PHP serialisation).
                Value::Object(map) if map.is_empty() => {}
                Value::Null => {}
                other => items.push(other),
            }
            match answer.next {
                Some(next) => {
                    if let Value::Object(map) = &mut params {
                        map.insert("start".into(), json!(next));
                    }
                }
                None => return Ok(items),
            }
        }
        Err(CrmError::transient(format!(
            "Bitrix24 {method} kept paging past {MAX_PAGES} pages"
        )))
    }

    /// Runs commands through `batch` (≤ 50 per request). Bitrix24 answers 200 even when
    /// commands fail, so `result_error` is read and any failure returned, naming the command.
    /// `halt` stops at the first failure (for commands that depend on the ones before).
    pub(super) async fn batch(
        &self,
        commands: Vec<Command>,
        halt: bool,
    ) -> Result<BTreeMap<String, Value>, CrmError> {
        let mut results = BTreeMap::new();
        for chunk in commands.chunks(BATCH) {
            let mut form = vec![("halt".to_string(), if halt { "1" } else { "0" }.to_string())];
            for c in chunk {
                form.push((
                    format!("cmd[{}]", c.name),
                    format!("{}?{}", c.method, php_query(&c.params)),
                ));
            }
            let answer = self.send("batch", Body::Form(form)).await?;
            let batch: BatchIn = parse_value(answer.result, "batch answer")?;
            let ok = keyed(batch.result, chunk);
            let failed = keyed(batch.result_error, chunk);
            let mut errors = Vec::new();
            for c in chunk {
                if let Some(e) = failed.get(&c.name) {
                    let e: ErrorIn = serde_json::from_value(e.clone()).unwrap_or_default();
                    errors.push((c, e));
                } else if let Some(v) = ok.get(&c.name) {
                    results.insert(c.name.clone(), v.clone());
                } else if !halt {
                    errors.push((
                        c,
                        ErrorIn {
                            error: String::new(),
                            error_description: "no result in the batch answer".into(),
                        },
                    ));
                }
                // With halt, commands after a failure are simply not run: reported below.
            }
            let missing = chunk.iter().any(|c| !results.contains_key(&c.name));
            if !errors.is_empty() || missing {
                return Err(batch_error(&errors, chunk, &results, self.is_oauth()));
            }
        }
        Ok(results)
    }
}

impl Bitrix24 {
    /// Runs up to 50 independent commands as one `batch` (halt=0) and gives each command its
    /// own outcome, in the order sent. Bitrix24 answers 200 whatever the commands did, so
    /// `result_error` is read per command: a failed command fails only itself, and a command
    /// with neither a result nor an error has an unknown outcome (transient).
    pub(super) async fn batch_each(
        &self,
        chunk: &[Command],
    ) -> Result<Vec<Result<Value, CrmError>>, CrmError> {
        if chunk.is_empty() {
            return Ok(Vec::new());
        }
        if chunk.len() > BATCH {
            return Err(CrmError::permanent(format!(
                "a Bitrix24 batch takes at most {BATCH} commands, not {}",
                chunk.len()
            )));
        }
        let mut form = vec![("halt".to_string(), "0".to_string())];
        for c in chunk {
            form.push((
                format!("cmd[{}]", c.name),
                format!("{}?{}", c.method, php_query(&c.params)),
            ));
        }
        let answer = self.send("batch", Body::Form(form)).await?;
        let batch: BatchIn = parse_value(answer.result, "batch answer")?;
        let ok = keyed(batch.result, chunk);
        let failed = keyed(batch.result_error, chunk);
        let oauth = self.is_oauth();
        Ok(chunk
            .iter()
            .map(|c| {
                if let Some(e) = failed.get(&c.name) {
                    let e: ErrorIn = serde_json::from_value(e.clone()).unwrap_or_default();
                    Err(command_error(c, &e, oauth))
                } else if let Some(v) = ok.get(&c.name) {
                    Ok(v.clone())
                } else {
                    Err(CrmError::transient(format!(
                        "Bitrix24 batch gave no answer for {} ({})",
                        c.name, c.method
                    )))
                }
            })
            .collect())
    }
}

/// One failed `batch` command as a [`CrmError`]. Sub-calls carry no status of their own.
/// Legacy crm.* refusals have an empty code and are 400s when called directly; `ERROR_CORE`
/// from a command is the method's own validation (crm.contact.add documents it for an invalid
/// address), so both are taken as 400s: refused, not retried.
pub(super) fn command_error(c: &Command, e: &ErrorIn, oauth: bool) -> CrmError {
    let refusal = e.error.is_empty() || e.error == "ERROR_CORE";
    map_error(&ApiError {
        status: if refusal { Some(400) } else { None },
        code: e.error.clone(),
        description: format!("{}: {}", c.method, e.error_description),
        retry_after: None,
        oauth,
    })
}

/// `result` / `result_error` of a batch keyed by command name: an object, or a list when
/// PHP saw sequential keys, or `[]` when empty.
pub(super) fn keyed(value: Value, chunk: &[Command]) -> BTreeMap<String, Value> {
    match value {
        Value::Object(map) => map.into_iter().collect(),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                // A list means the keys were 0..n: our names when they are indices, else the
                // n-th command.
                let name = chunk
                    .iter()
                    .find(|c| c.name == i.to_string())
                    .or_else(|| chunk.get(i))
                    .map(|c| c.name.clone())
                    .unwrap_or_else(|| i.to_string());
                (name, v)
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

pub(super) fn batch_error(
    errors: &[(&Command, ErrorIn)],
    chunk: &[Command],
    results: &BTreeMap<String, Value>,
    oauth: bool,
) -> CrmError {
    let not_run: Vec<&str> = chunk
        .iter()
        .filter(|c| !results.contains_key(&c.name) && !errors.iter().any(|(e, _)| e.name == c.name))
        .map(|c| c.name.as_str())
        .collect();
    let details: Vec<FieldError> = errors
        .iter()
        .map(|(c, e)| FieldError {
            request_id: Some(c.name.clone()),
            code: e.error.clone(),
            path: c.method.to_string(),
            detail: e.error_description.clone(),
        })
        .collect();
    let mut names: Vec<String> = errors
        .iter()
        .map(|(c, e)| format!("{} ({}): {}", c.name, c.method, e.error_description))
        .collect();
    if !not_run.is_empty() {
        names.push(format!("not run: {}", not_run.join(", ")));
    }
    let message = format!("Bitrix24 batch command failed: {}", names.join("; "));
    // The worst failure decides: auth and payment need a person, transient ones pass.
    let sorted: Vec<CrmError> = errors
        .iter()
        .map(|(_, e)| {
            map_error(&ApiError {
                // Sub-calls carry no status of their own; legacy validation errors are 400-ish.
                status: if e.error.is_empty() { Some(400) } else { None },
                code: e.error.clone(),
                description: e.error_description.clone(),
                retry_after: None,
                oauth,
            })
        })
        .collect();
    if let Some(auth) = sorted.iter().find(|e| e.is_auth()) {
        return auth.clone();
    }
    if let Some(unpaid) = sorted.iter().find(|e| e.is_payment_required()) {
        return CrmError::from(Failure {
            message,
            ..unpaid.failure().clone()
        });
    }
    if !sorted.is_empty() && sorted.iter().all(|e| e.is_transient()) {
        let retry_after = sorted.iter().find_map(|e| e.retry_after());
        return CrmError::from(Failure::new(Kind::Transient { retry_after }, message));
    }
    CrmError::invalid(Failure::permanent(message), details)
}
