//! Bitrix24 REST (classic `crm.*` methods) over HTTPS, through an incoming webhook or an OAuth
//! application. Wire types mirror the vendor JSON and stay private here; callers see the
//! [`Crm`] seam plus a few Bitrix-only helpers (`check`, `sources`, `deal_stage`,
//! [`parse_event`]). What this relies on is listed, with sources, in docs/bitrix24.md.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use url::Url;

use super::config::{Bitrix24Config, Bitrix24Mode, Bitrix24Todo};
use super::tokens::{TokenPair, TokenStore};
use super::{
    ContactDraft, ContactRecord, ContactRef, ContactRequest, ContactUpdate, CreatedLead, Crm,
    CrmError, CrmLead, FieldError, LeadRequest, Stage, TRANSCRIPT_HEADER, TaskRequest,
    TranscriptLine, transcript_notes,
};
use crate::clock::Clock;
use crate::domain::Booking;
use crate::normalize::{Email, Phone, is_mobile_phone, unicode_email};
use crate::store::Store;

pub const SYSTEM: &str = "bitrix24";

/// `batch` takes at most 50 commands per request.
const BATCH: usize = 50;
/// An import writes this many contacts per request: one `batch` of `crm.contact.add` (or
/// `crm.contact.update`) commands.
pub const CONTACT_BATCH: usize = BATCH;
/// What an import reads of each contact. Multiple fields are returned only when named.
const IMPORT_SELECT: [&str; 7] = [
    "ID",
    "NAME",
    "LAST_NAME",
    "PHONE",
    "EMAIL",
    "ORIGINATOR_ID",
    "ORIGIN_ID",
];
/// List methods answer pages of this many.
const PAGE: u64 = 50;
/// `crm.duplicate.findbycomm` takes at most 20 values.
const MAX_DUPLICATE_VALUES: usize = 20;
/// List methods return pages of 50; a directory or a card's comments never need more pages
/// than this, and a bound keeps a misbehaving `next` from looping forever.
const MAX_PAGES: usize = 100;
/// Refresh this long before the access token (1 hour) expires.
const REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);
/// The bucket drains at least 2 requests/s, so one second frees room for the next request.
const QUERY_LIMIT_RETRY: Duration = Duration::from_secs(1);
/// `OPERATION_TIME_LIMIT` without `operating_reset_at`: the oldest one-minute basket drops
/// within a minute.
const OPERATION_LIMIT_RETRY: Duration = Duration::from_secs(60);
/// `OVERLOAD_LIMIT` is a manual block by Bitrix24; retry slowly.
const OVERLOAD_RETRY: Duration = Duration::from_secs(600);
/// Written to `ORIGINATOR_ID` when our booking id lives in `ORIGIN_ID`.
const ORIGINATOR: &str = "zapis";
const OAUTH_FIX: &str = "re-run `zapis bitrix24 auth --code CODE` with a fresh code from the application's install (codes live 30 seconds)";
const WEBHOOK_FIX: &str =
    "create a new incoming webhook (scopes crm, task) and set crm.bitrix24.webhook_url";

/// One limiter per portal, shared by every client of that portal in the process: the portal
/// counts all our requests in one bucket.
static LIMITERS: LazyLock<Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn limiter_for(portal: &Url, per_second: u32, burst: u32) -> Arc<DefaultDirectRateLimiter> {
    let key = format!(
        "{}|{per_second}|{burst}",
        portal.origin().ascii_serialization()
    );
    let mut map = LIMITERS.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(key)
        .or_insert_with(|| {
            // GCRA with the portal's drain rate and a burst below its threshold: over any span
            // T at most `burst + rate·T` requests leave, so the portal's counter (which drains
            // at the same rate) never passes `burst`.
            let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            Arc::new(RateLimiter::direct(
                Quota::per_second(rate).allow_burst(burst),
            ))
        })
        .clone()
}

/// The Bitrix24 client. Cheap to clone; clones share the token cache, the stage directory and
/// the rate limiter.
#[derive(Clone)]
pub struct Bitrix24 {
    inner: Arc<Inner>,
}

struct Inner {
    config: Bitrix24Config,
    http: reqwest::Client,
    limiter: Arc<DefaultDirectRateLimiter>,
    auth: AuthMode,
    clock: Arc<dyn Clock>,
    /// `crm.status.list` answers by `ENTITY_ID`; stages change rarely, so one read serves all.
    directory: tokio::sync::Mutex<HashMap<String, Vec<StatusItem>>>,
}

enum AuthMode {
    /// The webhook base, `…/rest/{user}/{code}/`: secret as a whole.
    Webhook(SecretString),
    OAuth(Box<OAuth>),
}

struct OAuth {
    /// `{portal}/rest/`.
    rest: Url,
    client_id: String,
    client_secret: SecretString,
    token_url: Url,
    tokens: TokenStore,
    /// Held across a refresh so one refresh token is spent by one request only.
    state: tokio::sync::Mutex<Option<TokenPair>>,
}

impl std::fmt::Debug for Bitrix24 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.inner.auth {
            AuthMode::Webhook(_) => "webhook",
            AuthMode::OAuth(_) => "oauth",
        };
        f.debug_struct("Bitrix24")
            .field("auth", &auth)
            .field("mode", &self.inner.config.mode)
            .finish_non_exhaustive()
    }
}

/// A stage (or lead status) from `crm.status.list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusItem {
    /// The directory's numeric id: what [`CrmLead::status_id`] and [`Stage::Custom`] carry.
    pub id: i64,
    /// `NEW`, `C1:WON`, `JUNK`, `WEB`…: what deals and leads carry.
    pub status_id: String,
    pub name: String,
    /// `S` success, `F` failure, absent while in process.
    pub semantics: Option<String>,
}

/// What `check()` found in the portal; `Display` prints it for the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub auth: &'static str,
    pub mode: Bitrix24Mode,
    pub category_id: i64,
    /// The `crm.status.list` directory the stages live in (`DEAL_STAGE_1`, `STATUS`).
    pub directory: String,
    pub stages: Vec<StatusItem>,
    /// `(our stage key, STATUS_ID)` as configured, all found in `stages`.
    pub configured: Vec<(&'static str, String)>,
    pub booking_id_field: String,
    pub sources: Vec<StatusItem>,
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Bitrix24 ({} auth): OK", self.auth)?;
        let what = match self.mode {
            Bitrix24Mode::Deal => format!("deals in funnel {}", self.category_id),
            Bitrix24Mode::Lead => "leads".into(),
        };
        writeln!(f, "bookings become {what}; stages from {}:", self.directory)?;
        for s in &self.stages {
            let mark = self
                .configured
                .iter()
                .filter(|(_, id)| *id == s.status_id)
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ");
            let mark = if mark.is_empty() {
                String::new()
            } else {
                format!("  <- {mark}")
            };
            writeln!(f, "  {} {}{mark}", s.status_id, s.name)?;
        }
        writeln!(f, "booking id field: {}", self.booking_id_field)?;
        let sources: Vec<String> = self.sources.iter().map(|s| s.status_id.clone()).collect();
        write!(f, "sources: {}", sources.join(", "))
    }
}

/// A deal or lead's place in the funnel, re-read after an event (events carry only the id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityStage {
    pub id: String,
    /// `STAGE_ID` of a deal, `STATUS_ID` of a lead.
    pub stage_id: String,
    /// 0 for leads.
    pub category_id: i64,
    /// The product stage this is configured as, if any.
    pub stage: Option<Stage>,
}

// -------------------------------------------------------------------- errors

/// A failed call before it is sorted into a [`CrmError`]: callers that expect "Not found"
/// (reads) look at it first.
#[derive(Debug)]
enum CallError {
    Api(ApiError),
    Crm(CrmError),
}

#[derive(Debug, Clone)]
struct ApiError {
    status: Option<u16>,
    code: String,
    description: String,
    retry_after: Option<Duration>,
    oauth: bool,
}

impl CallError {
    fn is_not_found(&self) -> bool {
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

/// Sorts a Bitrix24 error into what the caller should do. The `error` code decides when it is
/// known; legacy `crm.*` methods send an empty code, and then the HTTP status does.
fn map_error(e: &ApiError) -> CrmError {
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
    let transient = |retry_after: Option<Duration>| CrmError::Transient {
        message: format!("Bitrix24 {message}"),
        status: e.status,
        retry_after,
    };
    let permanent = |hint: &str| CrmError::Permanent {
        message: format!("Bitrix24 {message}{hint}"),
        status: e.status,
        details: Vec::new(),
    };
    match code {
        "QUERY_LIMIT_EXCEEDED" => transient(e.retry_after.or(Some(QUERY_LIMIT_RETRY))),
        "OPERATION_TIME_LIMIT" => transient(e.retry_after.or(Some(OPERATION_LIMIT_RETRY))),
        "OVERLOAD_LIMIT" => transient(Some(OVERLOAD_RETRY)),
        "expired_token" | "invalid_token" | "NO_AUTH_FOUND" | "invalid_grant"
        | "invalid_client" => CrmError::Auth {
            message: if e.oauth {
                format!("Bitrix24 refused the application's token ({message}); {OAUTH_FIX}")
            } else {
                format!("Bitrix24 refused the incoming webhook ({message}); {WEBHOOK_FIX}")
            },
        },
        "PAYMENT_REQUIRED" => CrmError::PaymentRequired {
            message: format!("Bitrix24 {message}"),
            status: e.status.unwrap_or(402),
        },
        "ACCESS_DENIED"
        | "insufficient_scope"
        | "INVALID_CREDENTIALS"
        | "user_access_error"
        | "invalid_scope" => permanent(
            "; give the webhook's user (or the application) the crm and task scopes and access to the funnel",
        ),
        "PORTAL_DELETED" => permanent("; the portal is closed"),
        "INTERNAL_SERVER_ERROR" | "ERROR_UNEXPECTED_ANSWER" => transient(e.retry_after),
        // ERROR_CORE is the CRM core refusing: a 5xx (or no status) is its own trouble and
        // passes; with a 4xx it judged our data (e.g. "invalid address"), which stays wrong.
        "ERROR_CORE" => match e.status {
            Some(s) if (400..500).contains(&s) => permanent(""),
            _ => transient(e.retry_after),
        },
        _ => match e.status {
            Some(401) => CrmError::Auth {
                message: if e.oauth {
                    format!("Bitrix24 refused the token ({message}); {OAUTH_FIX}")
                } else {
                    format!("Bitrix24 refused the incoming webhook ({message}); {WEBHOOK_FIX}")
                },
            },
            Some(402) => CrmError::PaymentRequired {
                message: format!("Bitrix24 {message}"),
                status: 402,
            },
            Some(403) if code.is_empty() => permanent(
                "; give the webhook's user (or the application) the crm and task scopes and access to the funnel",
            ),
            Some(408) | Some(429) | Some(500..=599) | None => transient(e.retry_after),
            _ => permanent(""),
        },
    }
}

fn transport_error(e: reqwest::Error) -> CrmError {
    // The URL carries the webhook's secret code (or a phone in a query): never print it.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    CrmError::transient(format!("Bitrix24 {kind}: {}", e.without_url()))
}

fn store_error(e: crate::store::StoreError) -> CrmError {
    CrmError::transient(format!("token store: {e}"))
}

fn parse_value<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, CrmError> {
    // A 2xx we cannot read leaves the outcome unknown; retrying is safe because creates are
    // preceded by searches.
    serde_json::from_value(value)
        .map_err(|e| CrmError::transient(format!("unexpected Bitrix24 {what}: {e}")))
}

fn retry_after_header(response: &reqwest::Response) -> Option<Duration> {
    crate::connectors::failure::retry_after(response.headers())
}

// -------------------------------------------------------------------- encoding

/// PHP-style bracket encoding of nested parameters (`fields[PHONE][0][VALUE]=…`): what a
/// `batch` command's query string and a form body carry.
fn php_query(params: &Value) -> String {
    let mut pairs = Vec::new();
    flatten(None, params, &mut pairs);
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn flatten(prefix: Option<&str>, value: &Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| match prefix {
        Some(p) => format!("{p}[{k}]"),
        None => k.to_string(),
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(Some(&key(k)), v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(Some(&key(&i.to_string())), v, out);
            }
        }
        scalar => {
            if let Some(p) = prefix {
                let text = match scalar {
                    Value::String(s) => s.clone(),
                    Value::Bool(true) => "Y".into(),
                    Value::Bool(false) => "N".into(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                out.push((p.to_string(), text));
            }
        }
    }
}

/// Ids arrive as numbers from adds and as strings from reads.
fn id_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn entity_id(id: &str) -> Result<i64, CrmError> {
    id.trim()
        .parse()
        .map_err(|_| CrmError::permanent(format!("{id:?} is not a Bitrix24 id")))
}

/// Kopecks as Bitrix24 money, `"1500.00"`: a decimal string, never a float.
fn money(kopecks: i64) -> String {
    let sign = if kopecks < 0 { "-" } else { "" };
    let abs = kopecks.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// The ways a manager may have typed this number. `crm.duplicate.findbycomm` compares whole
/// numbers, so a Russian number is looked up in its +7, 7, 8 and ten-digit forms.
fn phone_variants(phone: &Phone) -> Vec<String> {
    let e164 = phone.as_str().to_string();
    let digits: String = e164.chars().filter(char::is_ascii_digit).collect();
    let mut out = vec![e164.clone(), digits.clone()];
    if digits.len() == 11 && digits.starts_with('7') {
        let national = &digits[1..];
        let (a, b, c, d) = (
            &national[..3],
            &national[3..6],
            &national[6..8],
            &national[8..],
        );
        out.extend([
            format!("8{national}"),
            national.to_string(),
            format!("+7 {a} {b}-{c}-{d}"),
            format!("+7 ({a}) {b}-{c}-{d}"),
            format!("8 ({a}) {b}-{c}-{d}"),
            format!("8 {a} {b} {c} {d}"),
            format!("8 {a} {b}-{c}-{d}"),
            format!("8-{a}-{b}-{c}-{d}"),
        ]);
    }
    out.dedup();
    out.truncate(MAX_DUPLICATE_VALUES);
    out
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

// -------------------------------------------------------------------- client

/// One successful answer: `result`, and for lists `total`/`next`.
struct Answer {
    result: Value,
    next: Option<u64>,
    total: Option<u64>,
}

enum Body {
    Json(Value),
    Form(Vec<(String, String)>),
}

/// One `batch` command: its name (reported on failure), method and parameters.
struct Command {
    name: String,
    method: &'static str,
    params: Value,
}

impl Bitrix24 {
    /// Builds a client. With OAuth the token pair lives in `store` under `business_id`; run
    /// [`Bitrix24::exchange_code`] (CLI `zapis bitrix24 auth --code CODE`) once first.
    pub fn new(
        config: Bitrix24Config,
        store: Store,
        business_id: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Bitrix24, CrmError> {
        config
            .validate()
            .map_err(|e| CrmError::permanent(e.to_string()))?;
        let http = super::http_client(config.timeout_secs)?;
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
                    tokens: TokenStore::new(store, business_id, SYSTEM),
                    state: tokio::sync::Mutex::new(None),
                };
                (AuthMode::OAuth(Box::new(oauth)), portal.clone())
            }
            (None, None) => return Err(bad("webhook_url")),
        };
        let limiter = limiter_for(&portal, config.max_requests_per_second, config.burst);
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

    fn now(&self) -> DateTime<Utc> {
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

    fn is_oauth(&self) -> bool {
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
        let mut state = oauth.state.lock().await;
        let pair = self
            .token_request(oauth, "authorization_code", "code", code)
            .await?;
        oauth
            .tokens
            .save(&pair, self.now())
            .await
            .map_err(store_error)?;
        *state = Some(pair);
        tracing::info!("Bitrix24 application authorised; token pair stored");
        Ok(())
    }

    async fn access_token(&self, oauth: &OAuth) -> Result<SecretString, CrmError> {
        let mut state = oauth.state.lock().await;
        if state.is_none() {
            *state = oauth.tokens.load().await.map_err(store_error)?;
        }
        let Some(pair) = state.as_ref() else {
            return Err(CrmError::Auth {
                message: format!("no Bitrix24 tokens are stored for this business; {OAUTH_FIX}"),
            });
        };
        if pair.expires_at - REFRESH_MARGIN <= self.now() {
            self.refresh_locked(oauth, &mut state).await?;
        }
        state
            .as_ref()
            .map(|p| p.access_token.clone())
            .ok_or_else(|| CrmError::Auth {
                message: format!("no Bitrix24 tokens; {OAUTH_FIX}"),
            })
    }

    /// After `expired_token`: refresh unless someone already replaced the refused token.
    async fn refresh_after_401(
        &self,
        oauth: &OAuth,
        refused: &SecretString,
    ) -> Result<(), CrmError> {
        let mut state = oauth.state.lock().await;
        let still_current = state
            .as_ref()
            .is_some_and(|p| p.access_token.expose_secret() == refused.expose_secret());
        if still_current {
            self.refresh_locked(oauth, &mut state).await?;
        }
        Ok(())
    }

    /// Spends the refresh token and stores the new pair before anything uses it.
    async fn refresh_locked(
        &self,
        oauth: &OAuth,
        state: &mut Option<TokenPair>,
    ) -> Result<(), CrmError> {
        // Another instance sharing the store may have rotated already: its pair is the live one.
        let stored = oauth.tokens.load().await.map_err(store_error)?;
        if let (Some(stored), Some(held)) = (&stored, state.as_ref())
            && !stored.same_refresh(held)
        {
            let fresh = stored.expires_at - REFRESH_MARGIN > self.now();
            *state = Some(stored.clone());
            if fresh {
                return Ok(());
            }
        }
        let current = state.clone().or(stored).ok_or_else(|| CrmError::Auth {
            message: format!("no Bitrix24 tokens are stored for this business; {OAUTH_FIX}"),
        })?;
        let pair = self
            .token_request(
                oauth,
                "refresh_token",
                "refresh_token",
                current.refresh_token.expose_secret(),
            )
            .await?;
        // The old refresh token is spent from this instant: persist the new pair first. If the
        // store fails, keep the pair in memory (it is the only live one) and say so.
        let saved = oauth.tokens.save(&pair, self.now()).await;
        *state = Some(pair);
        if let Err(e) = saved {
            tracing::error!(error = %e, "Bitrix24 tokens rotated but could not be stored");
            return Err(store_error(e));
        }
        tracing::info!("Bitrix24 access token refreshed; new pair stored");
        Ok(())
    }

    /// `GET https://oauth.bitrix.info/oauth/token/?grant_type=…`: the central server, not the
    /// portal, so the portal's bucket does not apply.
    async fn token_request(
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
        Err(CrmError::Auth {
            message: format!("Bitrix24 {what}: {why}; {OAUTH_FIX}"),
        })
    }

    // ---------------------------------------------------------------- transport

    async fn call(&self, method: &str, params: Value) -> Result<Answer, CallError> {
        self.send(method, Body::Json(params)).await
    }

    /// One REST call: paced by the portal's limiter, authorised, refreshed once on
    /// `expired_token` (OAuth), errors sorted by [`map_error`].
    async fn send(&self, method: &str, body: Body) -> Result<Answer, CallError> {
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
    async fn list_all(&self, method: &str, params: Value) -> Result<Vec<Value>, CrmError> {
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
    async fn batch(
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
    async fn batch_each(
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
fn command_error(c: &Command, e: &ErrorIn, oauth: bool) -> CrmError {
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
fn keyed(value: Value, chunk: &[Command]) -> BTreeMap<String, Value> {
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

fn batch_error(
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
    if let Some(CrmError::PaymentRequired { status, .. }) = sorted
        .iter()
        .find(|e| matches!(e, CrmError::PaymentRequired { .. }))
    {
        return CrmError::PaymentRequired {
            message,
            status: *status,
        };
    }
    if !sorted.is_empty() && sorted.iter().all(|e| e.is_transient()) {
        return CrmError::Transient {
            message,
            status: None,
            retry_after: sorted.iter().find_map(|e| e.retry_after()),
        };
    }
    CrmError::Permanent {
        message,
        status: None,
        details,
    }
}

// -------------------------------------------------------------------- CRM operations

impl Bitrix24 {
    fn entity_prefix(&self) -> &'static str {
        if self.is_deal() {
            "crm.deal"
        } else {
            "crm.lead"
        }
    }

    /// `ENTITY_TYPE` of timeline comments.
    fn timeline_type(&self) -> &'static str {
        if self.is_deal() { "deal" } else { "lead" }
    }

    /// `ownerTypeId` of activities: 1 lead, 2 deal.
    fn owner_type_id(&self) -> i64 {
        if self.is_deal() { 2 } else { 1 }
    }

    fn stage_field(&self) -> &'static str {
        if self.is_deal() {
            "STAGE_ID"
        } else {
            "STATUS_ID"
        }
    }

    /// The `crm.status.list` directory of our stages.
    fn directory_name(&self, category: i64) -> String {
        match (self.is_deal(), category) {
            (false, _) => "STATUS".into(),
            (true, 0) => "DEAL_STAGE".into(),
            (true, n) => format!("DEAL_STAGE_{n}"),
        }
    }

    async fn directory(&self, entity: &str, reload: bool) -> Result<Vec<StatusItem>, CrmError> {
        let mut cache = self.inner.directory.lock().await;
        if !reload && let Some(items) = cache.get(entity) {
            return Ok(items.clone());
        }
        let raw = self
            .list_all(
                "crm.status.list",
                json!({"filter": {"ENTITY_ID": entity}, "order": {"SORT": "ASC"}}),
            )
            .await?;
        let items: Vec<StatusItem> = raw
            .into_iter()
            .filter_map(|v| serde_json::from_value::<StatusIn>(v).ok())
            .filter_map(|s| {
                Some(StatusItem {
                    id: id_of(&s.id)?,
                    status_id: s.status_id,
                    name: s.name.unwrap_or_default(),
                    semantics: s.extra.and_then(|e| e.semantics).filter(|x| !x.is_empty()),
                })
            })
            .collect();
        cache.insert(entity.to_string(), items.clone());
        Ok(items)
    }

    /// The directory's numeric id of a stage string, re-reading the directory once when the
    /// stage is new to us; 0 when the portal does not list it.
    async fn numeric_stage(&self, category: i64, stage_id: &str) -> Result<i64, CrmError> {
        let entity = self.directory_name(category);
        for reload in [false, true] {
            if let Some(s) = self
                .directory(&entity, reload)
                .await?
                .iter()
                .find(|s| s.status_id == stage_id)
            {
                return Ok(s.id);
            }
        }
        tracing::warn!(stage_id, directory = %entity, "Bitrix24 stage not in its directory");
        Ok(0)
    }

    fn classify(&self, stage_id: &str) -> Option<Stage> {
        let cfg = &self.inner.config;
        if stage_id == cfg.new_stage() {
            Some(Stage::New)
        } else if stage_id == cfg.cancelled_stage() {
            Some(Stage::Cancelled)
        } else if stage_id == cfg.done_stage() {
            Some(Stage::Done)
        } else {
            None
        }
    }

    async fn to_crm_lead(&self, e: &EntityIn) -> Result<CrmLead, CrmError> {
        let id = id_of(&e.id).ok_or_else(|| CrmError::transient("Bitrix24 entity without ID"))?;
        let category = if self.is_deal() {
            e.category_id.as_ref().and_then(id_of).unwrap_or(0)
        } else {
            0
        };
        let stage = self.stage_of(e);
        let status_id = self.numeric_stage(category, &stage).await?;
        let price = e
            .opportunity
            .as_ref()
            .and_then(text_of)
            .and_then(|p| p.trim().parse::<f64>().ok())
            .map(|p| p.round() as i64);
        Ok(CrmLead {
            id: id.to_string(),
            status_id,
            pipeline_id: category,
            price,
            name: e.title.clone(),
        })
    }

    fn stage_of(&self, e: &EntityIn) -> String {
        let raw = if self.is_deal() {
            &e.stage_id
        } else {
            &e.status_id
        };
        raw.clone().unwrap_or_default()
    }

    // ---------------------------------------------------------------- contacts

    /// Contacts whose phone (then email) is ours, oldest first, verified on our side: the
    /// duplicate search ignores extensions and matches whole strings only.
    async fn find_contact(
        &self,
        phone: &Phone,
        email: Option<&Email>,
    ) -> Result<Option<i64>, CrmError> {
        let by_phone = if phone.is_erased() {
            Vec::new()
        } else {
            self.duplicates("PHONE", phone_variants(phone)).await?
        };
        for c in self.contacts_by_id(&by_phone).await? {
            if c.phones().any(|p| &p == phone) {
                let id = id_of(&c.id).unwrap_or_default();
                tracing::debug!(contact_id = id, phone = %phone.masked(), "Bitrix24 contact found by phone");
                return Ok(Some(id));
            }
        }
        if let Some(email) = email {
            // Both written forms: a manager may have typed either.
            let wanted = Email::parse_ascii(email.as_str()).ok();
            let mut forms = vec![email.unicode()];
            if let Some(ascii) = &wanted
                && ascii.as_str() != forms[0]
            {
                forms.push(ascii.as_str().to_string());
            }
            let by_email = self.duplicates("EMAIL", forms).await?;
            for c in self.contacts_by_id(&by_email).await? {
                if c.emails()
                    .any(|e| &e == email || Email::parse_ascii(e.as_str()).ok() == wanted)
                {
                    let id = id_of(&c.id).unwrap_or_default();
                    tracing::debug!(contact_id = id, email = %email.masked(), "Bitrix24 contact found by email");
                    return Ok(Some(id));
                }
            }
        }
        Ok(None)
    }

    async fn duplicates(&self, kind: &str, values: Vec<String>) -> Result<Vec<i64>, CrmError> {
        let answer = self
            .call(
                "crm.duplicate.findbycomm",
                json!({"entity_type": "CONTACT", "type": kind, "values": values}),
            )
            .await?;
        // Nothing found is `[]`, found is `{"CONTACT": [ids]}`.
        let mut ids: Vec<i64> = answer
            .result
            .get("CONTACT")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(id_of).collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    async fn contacts_by_id(&self, ids: &[i64]) -> Result<Vec<ContactIn>, CrmError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // PHONE and EMAIL are multiple fields: `*` leaves them out, so they are named.
        let raw = self
            .list_all(
                "crm.contact.list",
                json!({"filter": {"@ID": ids}, "select": ["ID", "NAME", "PHONE", "EMAIL"], "order": {"ID": "ASC"}}),
            )
            .await?;
        let mut contacts: Vec<ContactIn> = raw
            .into_iter()
            .filter_map(|v| match serde_json::from_value(v) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable Bitrix24 contact skipped");
                    None
                }
            })
            .collect();
        contacts.sort_by_key(|c| id_of(&c.id).unwrap_or(i64::MAX));
        Ok(contacts)
    }

    fn multifields(req_phone: &Phone, email: Option<&Email>) -> (Value, Option<Value>) {
        (
            json!([{"VALUE": req_phone.as_str(), "VALUE_TYPE": phone_value_type(req_phone.is_mobile())}]),
            email.map(|e| json!([{"VALUE": e.unicode(), "VALUE_TYPE": "WORK"}])),
        )
    }

    async fn add_contact(&self, req: &ContactRequest) -> Result<i64, CrmError> {
        let (phone, email) = Self::multifields(&req.phone, req.email.as_ref());
        let mut fields = json!({"NAME": req.name, "OPENED": "Y", "PHONE": phone});
        if let Some(email) = email {
            fields["EMAIL"] = email;
        }
        if let Some(r) = self.inner.config.responsible_id {
            fields["ASSIGNED_BY_ID"] = json!(r);
        }
        let answer = self
            .call(
                "crm.contact.add",
                json!({"fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}}),
            )
            .await?;
        let id = id_of(&answer.result)
            .ok_or_else(|| CrmError::transient("Bitrix24 added no contact"))?;
        tracing::info!(contact_id = id, phone = %req.phone.masked(), "Bitrix24 contact created");
        Ok(id)
    }

    // ---------------------------------------------------------------- deals / leads

    fn source_description(booking: &Booking) -> String {
        let s = &booking.source;
        let mut parts = vec![format!("zapis: {}", s.channel.as_str())];
        if let Some(link) = &s.link_name {
            parts.push(format!("link {link}"));
        }
        if let Some(payload) = &s.payload {
            parts.push(format!("start={payload}"));
        }
        parts.join("; ")
    }

    fn entity_fields(&self, req: &LeadRequest, contact_id: Option<i64>) -> Map<String, Value> {
        let cfg = &self.inner.config;
        let booking = &req.booking;
        let mut f = Map::new();
        f.insert("TITLE".into(), json!(req.title()));
        f.insert("OPPORTUNITY".into(), json!(money(booking.price.kopecks())));
        f.insert("CURRENCY_ID".into(), json!("RUB"));
        f.insert(
            "SOURCE_ID".into(),
            json!(cfg.source_for(booking.source.channel.as_str())),
        );
        f.insert(
            "SOURCE_DESCRIPTION".into(),
            json!(Self::source_description(booking)),
        );
        f.insert("OPENED".into(), json!("Y"));
        f.insert(
            "COMMENTS".into(),
            json!(format!(
                "{}, мастер {}, {} UTC, {} мин",
                booking.service_name,
                booking.master_name,
                booking.start.format("%d.%m.%Y %H:%M"),
                booking.duration_min
            )),
        );
        let utm = &booking.source.utm;
        for (key, value) in [
            ("UTM_SOURCE", &utm.source),
            ("UTM_MEDIUM", &utm.medium),
            ("UTM_CAMPAIGN", &utm.campaign),
            ("UTM_CONTENT", &utm.content),
            ("UTM_TERM", &utm.term),
        ] {
            if let Some(v) = value {
                f.insert(key.into(), json!(v));
            }
        }
        f.insert(cfg.booking_id_field.clone(), json!(booking.id));
        if cfg.booking_id_field == "ORIGIN_ID" {
            f.insert("ORIGINATOR_ID".into(), json!(ORIGINATOR));
        }
        if let Some(r) = cfg.responsible_id {
            f.insert("ASSIGNED_BY_ID".into(), json!(r));
        }
        match cfg.mode {
            Bitrix24Mode::Deal => {
                f.insert("CATEGORY_ID".into(), json!(cfg.category_id));
                f.insert("STAGE_ID".into(), json!(cfg.new_stage()));
                if let Some(c) = contact_id {
                    f.insert("CONTACT_ID".into(), json!(c));
                }
            }
            Bitrix24Mode::Lead => {
                f.insert("STATUS_ID".into(), json!(cfg.new_stage()));
                f.insert("NAME".into(), json!(booking.client_name));
                if !req.without_contact {
                    let (phone, email) =
                        Self::multifields(&booking.client_phone, booking.client_email.as_ref());
                    f.insert("PHONE".into(), phone);
                    if let Some(email) = email {
                        f.insert("EMAIL".into(), email);
                    }
                }
                if let Some(c) = contact_id {
                    f.insert("CONTACT_ID".into(), json!(c));
                }
            }
        }
        f
    }

    fn comment_params(&self, id: i64, text: &str) -> Value {
        // Timeline comments take `fields` in lower case only (crm 23.100.0+).
        json!({"fields": {"ENTITY_ID": id, "ENTITY_TYPE": self.timeline_type(), "COMMENT": text}})
    }

    /// Adds comments, one call for one, `batch` (halt=0: the parts are independent) for more.
    async fn post_comments(&self, id: i64, texts: &[String]) -> Result<Vec<String>, CrmError> {
        match texts {
            [] => Ok(Vec::new()),
            [one] => {
                let answer = self
                    .call("crm.timeline.comment.add", self.comment_params(id, one))
                    .await?;
                let cid = id_of(&answer.result)
                    .ok_or_else(|| CrmError::transient("Bitrix24 added no comment"))?;
                Ok(vec![cid.to_string()])
            }
            many => {
                let commands: Vec<Command> = many
                    .iter()
                    .enumerate()
                    .map(|(i, text)| Command {
                        name: format!("comment_{i}"),
                        method: "crm.timeline.comment.add",
                        params: self.comment_params(id, text),
                    })
                    .collect();
                let names: Vec<String> = commands.iter().map(|c| c.name.clone()).collect();
                let results = self.batch(commands, false).await?;
                Ok(names
                    .iter()
                    .filter_map(|n| results.get(n).and_then(id_of))
                    .map(|i| i.to_string())
                    .collect())
            }
        }
    }

    async fn comments(&self, id: i64) -> Result<Vec<String>, CrmError> {
        let raw = self
            .list_all(
                "crm.timeline.comment.list",
                json!({"filter": {"ENTITY_ID": id, "ENTITY_TYPE": self.timeline_type()}, "select": ["ID", "COMMENT"]}),
            )
            .await?;
        Ok(raw
            .iter()
            .filter_map(|c| c.get("COMMENT").and_then(text_of))
            .collect())
    }

    /// Re-reads a deal (lead in lead mode): what an `ONCRM…UPDATE` event needs, since events
    /// carry only the id. `None` when the portal no longer has it.
    pub async fn deal_stage(&self, id: &str) -> Result<Option<EntityStage>, CrmError> {
        let Some(e) = self.get_entity(entity_id(id)?).await? else {
            return Ok(None);
        };
        let stage_id = self.stage_of(&e);
        Ok(Some(EntityStage {
            id: id.to_string(),
            category_id: if self.is_deal() {
                e.category_id.as_ref().and_then(id_of).unwrap_or(0)
            } else {
                0
            },
            stage: self.classify(&stage_id),
            stage_id,
        }))
    }

    async fn get_entity(&self, id: i64) -> Result<Option<EntityIn>, CrmError> {
        let method = format!("{}.get", self.entity_prefix());
        match self.call(&method, json!({"id": id})).await {
            Ok(answer) => Ok(Some(parse_value(answer.result, "entity")?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn resolve_stage(&self, stage: &Stage) -> Result<String, CrmError> {
        let cfg = &self.inner.config;
        Ok(match stage {
            Stage::New => cfg.new_stage(),
            Stage::Cancelled => cfg.cancelled_stage(),
            Stage::Done => cfg.done_stage(),
            Stage::Custom {
                pipeline_id,
                status_id,
            } => {
                let category = pipeline_id.unwrap_or(cfg.category_id);
                if self.is_deal() && category != cfg.category_id {
                    return Err(CrmError::permanent(format!(
                        "moving a deal to funnel {category} needs crm.item.update; zapis keeps deals in crm.bitrix24.category_id = {}",
                        cfg.category_id
                    )));
                }
                let entity = self.directory_name(category);
                self.directory(&entity, true)
                    .await?
                    .into_iter()
                    .find(|s| s.id == *status_id)
                    .map(|s| s.status_id)
                    .ok_or_else(|| {
                        CrmError::permanent(format!("stage {status_id} is not in {entity}"))
                    })?
            }
        })
    }

    // ---------------------------------------------------------------- admin

    /// The portal's lead/deal sources (`crm.status.list`, `ENTITY_ID = SOURCE`), for mapping
    /// our channels in `crm.bitrix24.sources`.
    pub async fn sources(&self) -> Result<Vec<StatusItem>, CrmError> {
        self.directory("SOURCE", true).await
    }

    /// Validates the credentials (`crm.deal.fields` / `crm.lead.fields`, which also shows the
    /// booking id field exists), the configured stages (`crm.status.list`) and sources.
    pub async fn check(&self) -> Result<CheckReport, CrmError> {
        let cfg = &self.inner.config;
        let fields = self
            .call(&format!("{}.fields", self.entity_prefix()), json!({}))
            .await?
            .result;
        if fields.get(&cfg.booking_id_field).is_none() {
            return Err(CrmError::permanent(format!(
                "field {} (crm.bitrix24.booking_id_field) does not exist on {}s; create a string user field or use ORIGIN_ID",
                cfg.booking_id_field,
                self.timeline_type()
            )));
        }
        let category = if self.is_deal() { cfg.category_id } else { 0 };
        let directory = self.directory_name(category);
        let stages = self.directory(&directory, true).await?;
        if stages.is_empty() {
            return Err(CrmError::permanent(format!(
                "{directory} is empty: funnel {category} (crm.bitrix24.category_id) does not exist"
            )));
        }
        let configured = vec![
            ("new_stage_id", cfg.new_stage()),
            ("cancelled_stage_id", cfg.cancelled_stage()),
            ("done_stage_id", cfg.done_stage()),
        ];
        for (key, id) in &configured {
            if !stages.iter().any(|s| &s.status_id == id) {
                return Err(CrmError::permanent(format!(
                    "stage {id} (crm.bitrix24.{key}) is not in {directory}"
                )));
            }
        }
        let sources = self.sources().await?;
        let mut wanted: Vec<(String, &String)> = cfg
            .sources
            .iter()
            .map(|(k, v)| (format!("sources.{k}"), v))
            .collect();
        wanted.push(("default_source_id".into(), &cfg.default_source_id));
        for (key, id) in wanted {
            if !sources.iter().any(|s| &s.status_id == id) {
                return Err(CrmError::permanent(format!(
                    "source {id} (crm.bitrix24.{key}) is not in the portal's sources; add it (crm.status.add ENTITY_ID=SOURCE) or pick one of {}",
                    sources
                        .iter()
                        .map(|s| s.status_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(CheckReport {
            auth: if self.is_oauth() { "oauth" } else { "webhook" },
            mode: cfg.mode,
            category_id: category,
            directory,
            stages,
            configured,
            booking_id_field: cfg.booking_id_field.clone(),
            sources,
        })
    }

    /// Parses an outbound event and checks its `auth[application_token]` against
    /// `crm.bitrix24.application_token`.
    pub fn parse_event(&self, body: &[u8]) -> Result<Event, EventError> {
        let token = self
            .inner
            .config
            .application_token
            .as_ref()
            .ok_or(EventError::NotConfigured)?;
        parse_event(body, token)
    }
}

/// `zapis bitrix24 auth --code CODE`: exchanges the code and stores the first token pair.
pub async fn authorize(
    config: Bitrix24Config,
    store: Store,
    business_id: &str,
    code: &str,
) -> Result<(), CrmError> {
    let client = Bitrix24::new(
        config,
        store,
        business_id,
        Arc::new(crate::clock::SystemClock),
    )?;
    client.exchange_code(code).await
}

// -------------------------------------------------------------------- import

/// Contacts an import creates carry `ORIGINATOR_ID = "zapis"` and `ORIGIN_ID = "{run tag}/{key}"`
/// (built-in fields for an external system's id), so a resumed run recognises its own work.
fn import_origin(tag: &str, key: &str) -> String {
    format!("{tag}/{key}")
}

/// The items of one list page: `[]`, a list, or PHP's `{}` for nothing.
fn page_items(result: Value) -> Vec<Value> {
    match result {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

fn import_record(v: Value) -> Option<ContactRecord> {
    let c: ImportContactIn = match serde_json::from_value(v) {
        Ok(c) => c,
        Err(e) => {
            // Skipping a contact could make the import create it again: say so loudly.
            tracing::warn!(error = %e, "unreadable Bitrix24 contact left out of the import's matching");
            return None;
        }
    };
    let id = id_of(&c.id)?;
    let name = [&c.name, &c.last_name]
        .iter()
        .filter_map(|v| v.as_ref().and_then(text_of))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let values = |items: &[MultiIn]| -> Vec<String> {
        items
            .iter()
            .filter_map(|m| m.value.clone())
            .filter(|v| !v.trim().is_empty())
            .collect()
    };
    let originator = c.originator_id.as_ref().and_then(text_of);
    let tags = match (
        originator.as_deref(),
        c.origin_id.as_ref().and_then(text_of),
    ) {
        (Some(ORIGINATOR), Some(origin)) => origin
            .split_once('/')
            .map(|(tag, _)| vec![tag.to_string()])
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    Some(ContactRecord {
        id: id.to_string(),
        name,
        phones: values(&c.phone),
        emails: values(&c.email),
        tags,
    })
}

/// Phones as typed, each with its line type: `MOBILE` for a mobile, `WORK` for a landline.
fn multi_phones(values: &[String]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|v| json!({"VALUE": v, "VALUE_TYPE": phone_value_type(is_mobile_phone(v))}))
            .collect(),
    )
}

/// E-mails with internationalised domains in Unicode, as people read and type them.
fn multi_emails(values: &[String]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|v| json!({"VALUE": unicode_email(v), "VALUE_TYPE": "WORK"}))
            .collect(),
    )
}

fn phone_value_type(mobile: bool) -> &'static str {
    if mobile { "MOBILE" } else { "WORK" }
}

impl Bitrix24 {
    fn contact_list_params(start: u64) -> Value {
        json!({"order": {"ID": "ASC"}, "select": IMPORT_SELECT, "start": start})
    }

    /// Every contact of the portal, for an import's matching. The first `crm.contact.list`
    /// page says how many there are; the other pages (`start` = 50, 100, …) go up to 50 to a
    /// `batch`, so one request brings up to 2,500 contacts.
    pub async fn import_contacts(&self) -> Result<Vec<ContactRecord>, CrmError> {
        let first = self
            .call("crm.contact.list", Self::contact_list_params(0))
            .await?;
        let mut raw = page_items(first.result);
        match (first.total, first.next) {
            (_, None) => {}
            (Some(total), Some(_)) => {
                let starts: Vec<u64> = (1..).map(|n| n * PAGE).take_while(|s| *s < total).collect();
                for chunk in starts.chunks(BATCH) {
                    let commands: Vec<Command> = chunk
                        .iter()
                        .map(|s| Command {
                            name: format!("page_{s}"),
                            method: "crm.contact.list",
                            params: Self::contact_list_params(*s),
                        })
                        .collect();
                    for page in self.batch_each(&commands).await? {
                        raw.extend(page_items(page?));
                    }
                }
            }
            // No total to plan with: follow `next` one page at a time.
            (None, Some(next)) => {
                let mut params = Self::contact_list_params(next);
                loop {
                    let answer = self.call("crm.contact.list", params.clone()).await?;
                    raw.extend(page_items(answer.result));
                    match answer.next {
                        Some(n) => params["start"] = json!(n),
                        None => break,
                    }
                }
            }
        }
        Ok(raw.into_iter().filter_map(import_record).collect())
    }

    /// Contacts holding any of these phones (in the forms a manager may have typed them) or
    /// emails: `crm.duplicate.findbycomm` with up to 20 values a command, then the hits read
    /// with `crm.contact.list` by `@ID`, all through `batch`.
    pub async fn find_contact_records(
        &self,
        phones: &[Phone],
        emails: &[Email],
    ) -> Result<Vec<ContactRecord>, CrmError> {
        let mut phone_values: Vec<String> = phones.iter().flat_map(phone_variants).collect();
        phone_values.sort();
        phone_values.dedup();
        // Both written forms: ours go out in Unicode, a manager may have typed either.
        let mut email_values: Vec<String> = emails
            .iter()
            .flat_map(|e| [e.as_str().to_string(), e.unicode()])
            .collect();
        email_values.sort();
        email_values.dedup();
        let mut commands = Vec::new();
        for (kind, values) in [("PHONE", &phone_values), ("EMAIL", &email_values)] {
            for (i, part) in values.chunks(MAX_DUPLICATE_VALUES).enumerate() {
                commands.push(Command {
                    name: format!("{}_{i}", kind.to_lowercase()),
                    method: "crm.duplicate.findbycomm",
                    params: json!({"entity_type": "CONTACT", "type": kind, "values": part}),
                });
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for chunk in commands.chunks(BATCH) {
            for found in self.batch_each(chunk).await? {
                // Nothing found is `[]`, found is `{"CONTACT": [ids]}`.
                let found = found?;
                ids.extend(
                    found
                        .get("CONTACT")
                        .and_then(|v| v.as_array())
                        .into_iter()
                        .flatten()
                        .filter_map(id_of),
                );
            }
        }
        let ids: Vec<i64> = ids.into_iter().collect();
        let reads: Vec<Command> = ids
            .chunks(PAGE as usize)
            .enumerate()
            .map(|(i, part)| Command {
                name: format!("ids_{i}"),
                method: "crm.contact.list",
                params: json!({"filter": {"@ID": part}, "select": IMPORT_SELECT, "order": {"ID": "ASC"}}),
            })
            .collect();
        let mut records = Vec::new();
        for chunk in reads.chunks(BATCH) {
            for page in self.batch_each(chunk).await? {
                records.extend(page_items(page?).into_iter().filter_map(import_record));
            }
        }
        Ok(records)
    }

    /// Creates up to 50 contacts with one `batch` of `crm.contact.add`: each gets its id or
    /// its own refusal.
    pub async fn add_contacts(
        &self,
        drafts: &[ContactDraft],
    ) -> Result<Vec<Result<String, CrmError>>, CrmError> {
        let mut out = Vec::with_capacity(drafts.len());
        for part in drafts.chunks(BATCH) {
            let commands: Vec<Command> = part
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let mut fields = json!({
                        "NAME": d.name,
                        "OPENED": "Y",
                        "PHONE": multi_phones(&d.phones),
                        "EMAIL": multi_emails(&d.emails),
                    });
                    if let Some(b) = d.birthday {
                        fields["BIRTHDATE"] = json!(b.format("%Y-%m-%d").to_string());
                    }
                    if let Some(c) = &d.comment {
                        fields["COMMENTS"] = json!(c);
                    }
                    if let (Some(tag), Some(key)) = (&d.tag, &d.external_key) {
                        fields["ORIGINATOR_ID"] = json!(ORIGINATOR);
                        fields["ORIGIN_ID"] = json!(import_origin(tag, key));
                    }
                    if let Some(r) = self.inner.config.responsible_id {
                        fields["ASSIGNED_BY_ID"] = json!(r);
                    }
                    Command {
                        name: format!("add_{i}"),
                        method: "crm.contact.add",
                        // No live-feed entry per imported contact.
                        params: json!({"fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}}),
                    }
                })
                .collect();
            for outcome in self.batch_each(&commands).await? {
                out.push(outcome.and_then(|v| {
                    id_of(&v)
                        .map(|id| id.to_string())
                        .ok_or_else(|| CrmError::transient("Bitrix24 crm.contact.add gave no id"))
                }));
            }
        }
        Ok(out)
    }

    /// Adds phones and emails to existing contacts, up to 50 per `batch` of
    /// `crm.contact.update`. Multiple-field values sent without an `ID` are added and the
    /// contact's own values stay as they are, so only the new ones are sent.
    pub async fn append_contact_values(
        &self,
        items: &[ContactUpdate],
    ) -> Result<Vec<Result<(), CrmError>>, CrmError> {
        let mut out = Vec::with_capacity(items.len());
        for part in items.chunks(BATCH) {
            let mut commands = Vec::with_capacity(part.len());
            let mut slots = Vec::with_capacity(part.len());
            for (i, u) in part.iter().enumerate() {
                let id = match entity_id(&u.id) {
                    Ok(id) => id,
                    Err(e) => {
                        slots.push(Some(Err(e)));
                        continue;
                    }
                };
                let mut fields = Map::new();
                if !u.new_phones.is_empty() {
                    fields.insert("PHONE".into(), multi_phones(&u.new_phones));
                }
                if !u.new_emails.is_empty() {
                    fields.insert("EMAIL".into(), multi_emails(&u.new_emails));
                }
                if fields.is_empty() {
                    slots.push(Some(Ok(())));
                    continue;
                }
                commands.push(Command {
                    name: format!("update_{i}"),
                    method: "crm.contact.update",
                    params: json!({"id": id, "fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}}),
                });
                slots.push(None);
            }
            let mut sent = self.batch_each(&commands).await?.into_iter();
            for slot in slots {
                out.push(match slot {
                    Some(done) => done,
                    None => sent
                        .next()
                        .unwrap_or_else(|| {
                            Err(CrmError::transient("Bitrix24 batch lost a command"))
                        })
                        .and_then(|v| match v {
                            Value::Bool(false) => Err(CrmError::permanent(
                                "Bitrix24 crm.contact.update answered false",
                            )),
                            _ => Ok(()),
                        }),
                });
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Crm for Bitrix24 {
    fn system(&self) -> &'static str {
        SYSTEM
    }

    /// The configured funnel's stages (`crm.status.list`), the deal or lead fields
    /// (`crm.deal.fields` / `crm.lead.fields`, user fields by their list label) and the
    /// portal's sources.
    async fn catalog(&self) -> Result<crate::crm::CrmCatalog, CrmError> {
        let cfg = &self.inner.config;
        let category = if self.is_deal() { cfg.category_id } else { 0 };
        let name = self.directory_name(category);
        let stages = self.directory(&name, true).await?;
        let pipelines = vec![crate::crm::CatalogPipeline {
            id: category.to_string(),
            name,
            stages: stages.into_iter().map(|s| (s.status_id, s.name)).collect(),
        }];
        let raw = self
            .call(&format!("{}.fields", self.entity_prefix()), json!({}))
            .await?
            .result;
        let text = |v: &serde_json::Value, k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let fields = raw
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(id, f)| crate::crm::CatalogField {
                        id: id.clone(),
                        name: text(f, "listLabel")
                            .or_else(|| text(f, "formLabel"))
                            .or_else(|| text(f, "title"))
                            .unwrap_or_else(|| id.clone()),
                        code: None,
                        kind: text(f, "type").unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sources = self
            .sources()
            .await?
            .into_iter()
            .map(|s| (s.status_id, s.name))
            .collect();
        Ok(crate::crm::CrmCatalog {
            pipelines,
            fields,
            sources,
        })
    }

    async fn find_or_create_contact(&self, req: &ContactRequest) -> Result<ContactRef, CrmError> {
        if let Some(id) = self.find_contact(&req.phone, req.email.as_ref()).await? {
            return Ok(ContactRef {
                id: id.to_string(),
                created: false,
            });
        }
        Ok(ContactRef {
            id: self.add_contact(req).await?.to_string(),
            created: true,
        })
    }

    async fn contact_for_lead(&self, req: &ContactRequest) -> Result<Option<ContactRef>, CrmError> {
        match self.inner.config.mode {
            Bitrix24Mode::Deal => self.find_or_create_contact(req).await.map(Some),
            // A lead carries the client's data itself; it links a contact only if one exists.
            Bitrix24Mode::Lead => Ok(self
                .find_contact(&req.phone, req.email.as_ref())
                .await?
                .map(|id| ContactRef {
                    id: id.to_string(),
                    created: false,
                })),
        }
    }

    async fn create_lead(&self, req: &LeadRequest) -> Result<CreatedLead, CrmError> {
        let booking = &req.booking;
        let contact = match (&req.contact_id, self.inner.config.mode) {
            (Some(id), _) => Some(ContactRef {
                id: entity_id(id)?.to_string(),
                created: false,
            }),
            (None, _) if req.without_contact => None,
            (None, Bitrix24Mode::Deal) => Some(
                self.find_or_create_contact(&ContactRequest::for_booking(booking))
                    .await?,
            ),
            // A lead carries the client's data itself; it links a contact only if one exists
            // (converting the lead makes the contact in Bitrix24's own way).
            (None, Bitrix24Mode::Lead) => self
                .find_contact(&booking.client_phone, booking.client_email.as_ref())
                .await?
                .map(|id| ContactRef {
                    id: id.to_string(),
                    created: false,
                }),
        };
        let contact_id = contact.as_ref().map(|c| entity_id(&c.id)).transpose()?;
        let fields = self.entity_fields(req, contact_id);
        let method = format!("{}.add", self.entity_prefix());
        let answer = self
            .call(
                &method,
                json!({"fields": fields, "params": {"REGISTER_SONET_EVENT": "Y"}}),
            )
            .await?;
        let id = id_of(&answer.result)
            .ok_or_else(|| CrmError::transient(format!("Bitrix24 {method} returned no id")))?;
        tracing::info!(id, booking_id = %booking.id, phone = %booking.client_phone.masked(), "Bitrix24 {} created", self.timeline_type());
        let note_ids = self.add_notes(&id.to_string(), &req.transcript).await?;
        Ok(CreatedLead {
            lead_id: id.to_string(),
            contact,
            note_ids,
        })
    }

    async fn find_lead_by_booking(&self, booking_id: &str) -> Result<Option<CrmLead>, CrmError> {
        let field = &self.inner.config.booking_id_field;
        let method = format!("{}.list", self.entity_prefix());
        let mut filter = Map::new();
        filter.insert(format!("={field}"), json!(booking_id));
        let answer = self
            .call(
                &method,
                json!({
                    "filter": filter,
                    "select": ["ID", "TITLE", "STAGE_ID", "STATUS_ID", "CATEGORY_ID", "OPPORTUNITY", field],
                    "order": {"ID": "ASC"},
                }),
            )
            .await?;
        let items = match answer.result {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        // Oldest first; and check the field ourselves, so a filter Bitrix24 ignored (an
        // unknown field) cannot hand us someone else's deal.
        for item in items {
            if item.get(field.as_str()).and_then(text_of).as_deref() == Some(booking_id) {
                let e: EntityIn = parse_value(item, "entity")?;
                return Ok(Some(self.to_crm_lead(&e).await?));
            }
        }
        Ok(None)
    }

    async fn add_notes(
        &self,
        lead_id: &str,
        transcript: &[TranscriptLine],
    ) -> Result<Vec<String>, CrmError> {
        let id = entity_id(lead_id)?;
        let texts = transcript_notes(transcript, self.inner.config.note_max_chars);
        self.post_comments(id, &texts).await
    }

    /// Adds the transcript parts the card lacks. A part is recognised by its first line
    /// (`Переписка с ботом (2/3):`), so a retry after a partly failed batch adds only what is
    /// missing.
    async fn ensure_transcript(
        &self,
        lead_id: &str,
        transcript: &[TranscriptLine],
    ) -> Result<Vec<String>, CrmError> {
        if transcript.is_empty() {
            return Ok(Vec::new());
        }
        let id = entity_id(lead_id)?;
        let texts = transcript_notes(transcript, self.inner.config.note_max_chars);
        let existing: Vec<String> = self
            .comments(id)
            .await?
            .iter()
            .filter(|c| c.starts_with(TRANSCRIPT_HEADER))
            .filter_map(|c| c.lines().next().map(str::to_string))
            .collect();
        let missing: Vec<String> = texts
            .into_iter()
            .filter(|t| {
                let head = t.lines().next().unwrap_or_default();
                !existing.iter().any(|e| e == head)
            })
            .collect();
        self.post_comments(id, &missing).await
    }

    async fn ensure_note(&self, lead_id: &str, text: &str) -> Result<Option<String>, CrmError> {
        let head = text.lines().next().unwrap_or_default();
        let comments = self.comments(entity_id(lead_id)?).await?;
        if comments.iter().any(|c| c.lines().next() == Some(head)) {
            return Ok(None);
        }
        self.add_note(lead_id, text).await.map(Some)
    }

    async fn add_note(&self, lead_id: &str, text: &str) -> Result<String, CrmError> {
        let id = entity_id(lead_id)?;
        let text: String = text
            .chars()
            .take(self.inner.config.note_max_chars)
            .collect();
        self.post_comments(id, &[text])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| CrmError::transient("Bitrix24 added no comment"))
    }

    async fn create_task(&self, req: &TaskRequest) -> Result<String, CrmError> {
        let cfg = &self.inner.config;
        let id = entity_id(&req.lead_id)?;
        let lead_time = chrono::Duration::from_std(cfg.task_lead_time.0)
            .unwrap_or_else(|_| chrono::Duration::hours(1));
        // A last-minute booking still gets a reminder, due now rather than in the past.
        let due = (req.visit_at - lead_time).max(self.now());
        let deadline = due.to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        let title: String = req.text.chars().take(250).collect();
        match cfg.todo {
            Bitrix24Todo::Activity => {
                let mut params = json!({
                    "ownerTypeId": self.owner_type_id(),
                    "ownerId": id,
                    "deadline": deadline,
                    "title": title,
                    "description": req.text,
                    "pingOffsets": [0, 15],
                });
                if let Some(r) = cfg.responsible_id {
                    params["responsibleId"] = json!(r);
                }
                let answer = self.call("crm.activity.todo.add", params).await?;
                answer
                    .result
                    .get("id")
                    .and_then(id_of)
                    .map(|i| i.to_string())
                    .ok_or_else(|| CrmError::transient("Bitrix24 added no to-do"))
            }
            Bitrix24Todo::Task => {
                let binding = if self.is_deal() {
                    format!("D_{id}")
                } else {
                    format!("L_{id}")
                };
                let answer = self
                    .call(
                        "tasks.task.add",
                        json!({"fields": {
                            "TITLE": title,
                            "DESCRIPTION": req.text,
                            "RESPONSIBLE_ID": cfg.responsible_id,
                            "DEADLINE": deadline,
                            "UF_CRM_TASK": [binding],
                        }}),
                    )
                    .await?;
                answer
                    .result
                    .get("task")
                    .and_then(|t| t.get("id"))
                    .and_then(id_of)
                    .map(|i| i.to_string())
                    .ok_or_else(|| CrmError::transient("Bitrix24 added no task"))
            }
        }
    }

    async fn find_task(&self, req: &TaskRequest) -> Result<Option<String>, CrmError> {
        let id = entity_id(&req.lead_id)?;
        let title: String = req.text.chars().take(250).collect();
        let found = match self.inner.config.todo {
            Bitrix24Todo::Activity => {
                let answer = self
                    .call(
                        "crm.activity.list",
                        json!({
                            "filter": {"OWNER_TYPE_ID": self.owner_type_id(), "OWNER_ID": id},
                            "select": ["ID", "SUBJECT", "DESCRIPTION"],
                            "order": {"ID": "ASC"},
                        }),
                    )
                    .await?;
                answer.result.as_array().and_then(|items| {
                    items
                        .iter()
                        .find(|a| {
                            a.get("SUBJECT").and_then(text_of).as_deref() == Some(&title)
                                || a.get("DESCRIPTION").and_then(text_of).as_deref()
                                    == Some(&req.text)
                        })
                        .and_then(|a| a.get("ID").and_then(id_of))
                })
            }
            Bitrix24Todo::Task => {
                let binding = if self.is_deal() {
                    format!("D_{id}")
                } else {
                    format!("L_{id}")
                };
                let answer = self
                    .call(
                        "tasks.task.list",
                        json!({
                            "filter": {"UF_CRM_TASK": binding},
                            "select": ["ID", "TITLE"],
                            "order": {"ID": "asc"},
                        }),
                    )
                    .await?;
                // The tasks module answers `{"tasks": [{"id", "title"}]}` in camelCase.
                answer
                    .result
                    .get("tasks")
                    .and_then(|t| t.as_array())
                    .and_then(|items| {
                        items
                            .iter()
                            .find(|t| t.get("title").and_then(text_of).as_deref() == Some(&title))
                            .and_then(|t| t.get("id").and_then(id_of))
                    })
            }
        };
        Ok(found.map(|id| id.to_string()))
    }

    async fn move_lead(
        &self,
        lead_id: &str,
        stage: &Stage,
        note: Option<&str>,
    ) -> Result<(), CrmError> {
        let id = entity_id(lead_id)?;
        let stage_id = self.resolve_stage(stage).await?;
        let mut fields = Map::new();
        fields.insert(self.stage_field().into(), json!(stage_id));
        let update = Command {
            name: "move".into(),
            method: if self.is_deal() {
                "crm.deal.update"
            } else {
                "crm.lead.update"
            },
            params: json!({"id": id, "fields": fields, "params": {"REGISTER_HISTORY_EVENT": "Y"}}),
        };
        match note {
            None => {
                self.call(update.method, update.params).await?;
            }
            Some(note) => {
                let text: String = note
                    .chars()
                    .take(self.inner.config.note_max_chars)
                    .collect();
                let comment = Command {
                    name: "comment".into(),
                    method: "crm.timeline.comment.add",
                    params: self.comment_params(id, &text),
                };
                // halt=1: the comment says why the deal moved, so it must not land when the
                // move failed (a retry would then add it twice).
                self.batch(vec![update, comment], true).await?;
            }
        }
        tracing::info!(id, stage_id, "Bitrix24 {} moved", self.timeline_type());
        Ok(())
    }

    async fn get_lead(&self, lead_id: &str) -> Result<Option<CrmLead>, CrmError> {
        match self.get_entity(entity_id(lead_id)?).await? {
            Some(e) => Ok(Some(self.to_crm_lead(&e).await?)),
            None => Ok(None),
        }
    }

    async fn cancelled_among(&self, lead_ids: &[String]) -> Result<Vec<String>, CrmError> {
        let method = format!("{}.list", self.entity_prefix());
        let mut found = Vec::new();
        // `@ID` is Bitrix24's "in list" filter; a page holds 50 items, so 50 ids a call.
        for chunk in lead_ids.chunks(50) {
            let ids = chunk
                .iter()
                .map(|id| entity_id(id))
                .collect::<Result<Vec<i64>, CrmError>>()?;
            let answer = self
                .call(
                    &method,
                    json!({
                        "filter": {"@ID": ids},
                        "select": ["ID", "STAGE_ID", "STATUS_ID", "CATEGORY_ID"],
                    }),
                )
                .await?;
            let Value::Array(items) = answer.result else {
                continue;
            };
            for item in items {
                let e: EntityIn = parse_value(item, "entity")?;
                if self.classify(&self.stage_of(&e)) == Some(Stage::Cancelled)
                    && let Some(id) = id_of(&e.id)
                {
                    found.push(id.to_string());
                }
            }
        }
        Ok(found)
    }
}

// -------------------------------------------------------------------- events in

/// What an outbound event reports; only the id travels, re-read with `deal_stage`/`get_lead`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    DealAdd,
    DealUpdate,
    DealDelete,
    LeadAdd,
    LeadUpdate,
    LeadDelete,
    ContactAdd,
    ContactUpdate,
    ContactDelete,
    /// Any other code, upper-cased, kept so callers can log what they ignore.
    Other(String),
}

impl EventKind {
    fn parse(code: &str) -> EventKind {
        match code.to_ascii_uppercase().as_str() {
            "ONCRMDEALADD" => EventKind::DealAdd,
            "ONCRMDEALUPDATE" => EventKind::DealUpdate,
            "ONCRMDEALDELETE" => EventKind::DealDelete,
            "ONCRMLEADADD" => EventKind::LeadAdd,
            "ONCRMLEADUPDATE" => EventKind::LeadUpdate,
            "ONCRMLEADDELETE" => EventKind::LeadDelete,
            "ONCRMCONTACTADD" => EventKind::ContactAdd,
            "ONCRMCONTACTUPDATE" => EventKind::ContactUpdate,
            "ONCRMCONTACTDELETE" => EventKind::ContactDelete,
            other => EventKind::Other(other.to_string()),
        }
    }
}

/// One verified outbound event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// `data[FIELDS][ID]`.
    pub id: Option<String>,
    pub ts: Option<i64>,
    pub domain: Option<String>,
    pub member_id: Option<String>,
    pub handler_id: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("crm.bitrix24.application_token is not set; events cannot be verified")]
    NotConfigured,
    #[error("Bitrix24 event has no auth[application_token]")]
    MissingToken,
    #[error("Bitrix24 event carries a wrong application token")]
    WrongToken,
    #[error("Bitrix24 event field {key} is missing")]
    Missing { key: String },
    #[error("Bitrix24 event body is not readable: {0}")]
    Malformed(String),
}

/// Parses an outbound event: on the wire `application/x-www-form-urlencoded` with PHP bracket
/// keys (`data[FIELDS][ID]`, `auth[application_token]`); the JSON form the docs print is read
/// too. Events are unsigned; the application token is the only proof of origin, compared in
/// constant time.
pub fn parse_event(body: &[u8], expected_token: &SecretString) -> Result<Event, EventError> {
    let mut flat: HashMap<String, String> = HashMap::new();
    let trimmed = body.trim_ascii_start();
    if trimmed.starts_with(b"{") {
        let v: Value =
            serde_json::from_slice(trimmed).map_err(|e| EventError::Malformed(e.to_string()))?;
        let mut pairs = Vec::new();
        flatten(None, &v, &mut pairs);
        flat.extend(pairs);
    } else {
        for (k, v) in url::form_urlencoded::parse(body) {
            // Normalise `data[FIELDS][ID]` spelling (no spaces, as sent).
            let key = crate::crm::bracket_parts(&k).join("|");
            flat.insert(key, v.into_owned());
        }
        flat = flat
            .into_iter()
            .map(|(k, v)| {
                let mut parts = k.split('|');
                let head = parts.next().unwrap_or_default().to_string();
                let key = parts.fold(head, |acc, p| format!("{acc}[{p}]"));
                (key, v)
            })
            .collect();
    }
    let token = flat
        .get("auth[application_token]")
        .ok_or(EventError::MissingToken)?;
    if !constant_time_eq(token.as_bytes(), expected_token.expose_secret().as_bytes()) {
        return Err(EventError::WrongToken);
    }
    let code = flat.get("event").ok_or_else(|| EventError::Missing {
        key: "event".into(),
    })?;
    Ok(Event {
        kind: EventKind::parse(code),
        id: flat
            .get("data[FIELDS][ID]")
            .or_else(|| flat.get("data[ID]"))
            .cloned(),
        ts: flat.get("ts").and_then(|t| t.trim().parse().ok()),
        domain: flat.get("auth[domain]").cloned(),
        member_id: flat.get("auth[member_id]").cloned(),
        handler_id: flat.get("event_handler_id").cloned(),
    })
}

// -------------------------------------------------------------------- wire types (in)

#[derive(Deserialize, Default)]
struct ErrorIn {
    #[serde(default, deserialize_with = "string_or_null")]
    error: String,
    #[serde(default, deserialize_with = "string_or_null")]
    error_description: String,
}

/// `error` is a string, sometimes empty, sometimes a number (`100`) or absent.
fn string_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(text_of(&v).unwrap_or_default())
}

#[derive(Deserialize)]
struct TokenIn {
    access_token: String,
    refresh_token: String,
    expires_in: i64,
}

#[derive(Deserialize)]
struct BatchIn {
    #[serde(default)]
    result: Value,
    #[serde(default)]
    result_error: Value,
}

#[derive(Deserialize)]
struct MultiIn {
    #[serde(rename = "VALUE", default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct ContactIn {
    #[serde(rename = "ID")]
    id: Value,
    #[serde(rename = "PHONE", default, deserialize_with = "null_as_empty")]
    phone: Vec<MultiIn>,
    #[serde(rename = "EMAIL", default, deserialize_with = "null_as_empty")]
    email: Vec<MultiIn>,
}

/// A multiple field the contact has no value in comes back as `null` when it is selected by
/// name: that is "none", not a reason to skip the contact (and create a duplicate).
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<MultiIn>, D::Error> {
    Ok(Option::<Vec<MultiIn>>::deserialize(d)?.unwrap_or_default())
}

impl ContactIn {
    fn phones(&self) -> impl Iterator<Item = Phone> + '_ {
        self.phone
            .iter()
            .filter_map(|m| m.value.as_deref())
            .filter_map(|v| Phone::parse(v).ok())
    }
    fn emails(&self) -> impl Iterator<Item = Email> + '_ {
        self.email
            .iter()
            .filter_map(|m| m.value.as_deref())
            .filter_map(|v| Email::parse(v).ok())
    }
}

/// A contact as an import reads it (`IMPORT_SELECT`). Scalars are read leniently: a contact
/// left out of the matching would be created a second time.
#[derive(Deserialize)]
struct ImportContactIn {
    #[serde(rename = "ID")]
    id: Value,
    #[serde(rename = "NAME", default)]
    name: Option<Value>,
    #[serde(rename = "LAST_NAME", default)]
    last_name: Option<Value>,
    #[serde(rename = "PHONE", default, deserialize_with = "null_as_empty")]
    phone: Vec<MultiIn>,
    #[serde(rename = "EMAIL", default, deserialize_with = "null_as_empty")]
    email: Vec<MultiIn>,
    #[serde(rename = "ORIGINATOR_ID", default)]
    originator_id: Option<Value>,
    #[serde(rename = "ORIGIN_ID", default)]
    origin_id: Option<Value>,
}

#[derive(Deserialize)]
struct EntityIn {
    #[serde(rename = "ID")]
    id: Value,
    #[serde(rename = "TITLE", default)]
    title: Option<String>,
    #[serde(rename = "STAGE_ID", default)]
    stage_id: Option<String>,
    #[serde(rename = "STATUS_ID", default)]
    status_id: Option<String>,
    #[serde(rename = "CATEGORY_ID", default)]
    category_id: Option<Value>,
    #[serde(rename = "OPPORTUNITY", default)]
    opportunity: Option<Value>,
}

#[derive(Deserialize)]
struct StatusIn {
    #[serde(rename = "ID")]
    id: Value,
    #[serde(rename = "STATUS_ID")]
    status_id: String,
    #[serde(rename = "NAME", default)]
    name: Option<String>,
    #[serde(rename = "EXTRA", default)]
    extra: Option<StatusExtraIn>,
}

#[derive(Deserialize)]
struct StatusExtraIn {
    #[serde(rename = "SEMANTICS", default)]
    semantics: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(name: &str) -> Vec<u8> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/contracts/bitrix24");
        let path = std::path::Path::new(dir).join(name);
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!("contract file {} is missing ({e}); the contracts directory must sit beside the repository", path.display())
        })
    }

    fn value(name: &str) -> Value {
        serde_json::from_slice(&contract(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn api(status: u16, name: &str) -> CrmError {
        let e: ErrorIn = serde_json::from_value(value(name)).unwrap();
        map_error(&ApiError {
            status: Some(status),
            code: e.error,
            description: e.error_description,
            retry_after: None,
            oauth: false,
        })
    }

    #[test]
    fn every_contract_payload_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/contracts/bitrix24");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("contracts/bitrix24 exists") {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".json") {
                let _: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                seen += 1;
            }
        }
        assert_eq!(
            seen, 16,
            "a new payload file: give it a parsing test of its own"
        );
    }

    #[test]
    fn crm_lead_add_response_gives_the_id() {
        let v = value("crm-lead-add.response.json");
        assert_eq!(id_of(&v["result"]), Some(3465));
    }

    #[test]
    fn time_fragment_carries_the_operating_reset() {
        let v = value("time.fragment.json");
        assert_eq!(v["time"]["operating_reset_at"].as_i64(), Some(1778747792));
        let v = value("crm-lead-add.response.json");
        assert_eq!(v["time"]["operating_reset_at"].as_i64(), Some(1705765533));
    }

    #[test]
    fn crm_duplicate_findbycomm_response_lists_contact_ids() {
        let v = value("crm-duplicate-findbycomm.response.json");
        let ids: Vec<i64> = v["result"]["CONTACT"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(id_of)
            .collect();
        assert_eq!(ids, vec![275, 2297]);
    }

    #[test]
    fn request_contracts_have_the_shapes_the_client_sends() {
        // crm.duplicate.findbycomm: `values` an array, as phone_variants produces.
        let v = value("crm-duplicate-findbycomm.request.json");
        assert!(v["values"].is_array() && v["type"] == "PHONE");
        assert!(phone_variants(&Phone::parse("+79123456789").unwrap()).len() <= 20);
        // Timeline comments: lower-case `fields` with ENTITY_ID/ENTITY_TYPE/COMMENT.
        let v = value("crm-timeline-comment-add.request.json");
        for key in ["ENTITY_ID", "ENTITY_TYPE", "COMMENT"] {
            assert!(v["fields"].get(key).is_some(), "{key}");
        }
        // To-dos: camelCase at the top level.
        let v = value("crm-activity-todo-add.request.json");
        for key in [
            "ownerTypeId",
            "ownerId",
            "deadline",
            "title",
            "responsibleId",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        let v = value("tasks-task-add.request.json");
        assert!(v["fields"]["UF_CRM_TASK"].is_array());
        let v = value("crm-deal-update.request.json");
        assert_eq!(id_of(&v["ID"]), Some(123));
        let v = value("crm-lead-add.request.json");
        assert_eq!(v["fields"]["PHONE"][0]["VALUE_TYPE"], "WORK");
        // And its PHP form encoding is what a batch command carries.
        let q = php_query(&v);
        assert!(
            q.contains("fields%5BPHONE%5D%5B0%5D%5BVALUE%5D=555888"),
            "{q}"
        );
        assert!(q.contains("params%5BREGISTER_SONET_EVENT%5D=Y"), "{q}");
    }

    #[test]
    fn error_contracts_map_to_retry_decisions() {
        let e = api(400, "error-fields-must-be-array.response.json");
        assert!(
            e.is_permanent() && e.to_string().contains("must be array"),
            "{e}"
        );
        let e = api(403, "error-access-denied.response.json");
        assert!(
            e.is_permanent() && e.to_string().contains("Access denied"),
            "{e}"
        );
        let e = api(400, "error-not-found.response.json");
        assert!(
            e.is_permanent() && e.to_string().contains("NOT_FOUND"),
            "{e}"
        );
        let e = api(402, "oauth-error-payment-required.response.json");
        assert!(
            matches!(e, CrmError::PaymentRequired { status: 402, .. }),
            "{e:?}"
        );
        let not_found: ErrorIn =
            serde_json::from_value(value("error-not-found.response.json")).unwrap();
        assert!(
            CallError::Api(ApiError {
                status: Some(400),
                code: not_found.error,
                description: not_found.error_description,
                retry_after: None,
                oauth: false,
            })
            .is_not_found()
        );
    }

    #[test]
    fn codes_and_statuses_sort_errors() {
        let e = |status: Option<u16>, code: &str| {
            map_error(&ApiError {
                status,
                code: code.into(),
                description: "x".into(),
                retry_after: None,
                oauth: true,
            })
        };
        assert_eq!(
            e(Some(503), "QUERY_LIMIT_EXCEEDED").retry_after(),
            Some(QUERY_LIMIT_RETRY)
        );
        assert_eq!(
            e(Some(429), "OPERATION_TIME_LIMIT").retry_after(),
            Some(OPERATION_LIMIT_RETRY)
        );
        for code in ["expired_token", "invalid_token", "NO_AUTH_FOUND"] {
            let a = e(Some(401), code);
            assert!(
                a.is_auth() && a.to_string().contains("zapis bitrix24 auth"),
                "{code}"
            );
        }
        for code in ["ACCESS_DENIED", "insufficient_scope"] {
            assert!(e(Some(403), code).is_permanent(), "{code}");
        }
        for code in ["INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER"] {
            assert!(e(Some(500), code).is_transient(), "{code}");
        }
        assert!(e(Some(500), "ERROR_CORE").is_transient());
        assert!(e(Some(400), "ERROR_CORE").is_permanent());
        assert!(e(Some(502), "").is_transient());
        assert!(e(None, "").is_transient());
        assert!(e(Some(400), "").is_permanent());
        assert!(e(Some(401), "").is_auth());
        assert!(matches!(
            e(Some(400), "PAYMENT_REQUIRED"),
            CrmError::PaymentRequired { .. }
        ));
        // A numeric error code (`100`) reads as text.
        let n: ErrorIn =
            serde_json::from_str(r#"{"error": 100, "error_description": "bad"}"#).unwrap();
        assert_eq!(n.error, "100");
    }

    #[test]
    fn batch_result_error_as_a_list_is_keyed_by_command() {
        let v = value("batch-result-error-list.fragment.json");
        let chunk: Vec<Command> = ["0", "1"]
            .iter()
            .map(|n| Command {
                name: n.to_string(),
                method: "crm.deal.get",
                params: json!({}),
            })
            .collect();
        let keyed = keyed(v["result_error"].clone(), &chunk);
        assert_eq!(keyed["1"]["error_description"], "Not found");
        assert_eq!(keyed["0"]["error"], "");
        // Each failed command is its own error: a legacy refusal (empty code) is permanent
        // and names the method; a limit inside a batch passes.
        let e: ErrorIn = serde_json::from_value(keyed["1"].clone()).unwrap();
        let refused = command_error(&chunk[1], &e, false);
        assert!(refused.is_permanent(), "{refused}");
        assert!(
            refused.to_string().contains("crm.deal.get: Not found"),
            "{refused}"
        );
        let limit = ErrorIn {
            error: "QUERY_LIMIT_EXCEEDED".into(),
            error_description: "Too many requests".into(),
        };
        assert!(command_error(&chunk[0], &limit, false).is_transient());
        // `[]` is PHP's empty map.
        assert!(super::keyed(json!([]), &chunk).is_empty());
    }

    #[test]
    fn oauth_token_response_parses() {
        let t: TokenIn = serde_json::from_value(value("oauth-token.response.json")).unwrap();
        assert_eq!(t.expires_in, 3600);
        assert_eq!(t.refresh_token, "4f9k4jpmg13usmybzuqknt2v9fh0q6rl");
    }

    #[test]
    fn event_contract_parses_and_needs_its_token() {
        let token = SecretString::from("jvh9y1ulvt2m6k5or90v9mg8nn32ozas".to_string());
        let e = parse_event(&contract("event-oncrmdealadd.webhook.json"), &token).unwrap();
        assert_eq!(e.kind, EventKind::DealAdd);
        assert_eq!(e.id.as_deref(), Some("7405"));
        assert_eq!(
            e.member_id.as_deref(),
            Some("d897063e1ce7c5eb9f04b9751eef5915")
        );
        let other = SecretString::from("x".to_string());
        assert_eq!(
            parse_event(&contract("event-oncrmdealadd.webhook.json"), &other),
            Err(EventError::WrongToken)
        );
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    }

    #[test]
    fn an_imported_contact_reads_back_with_the_run_tag() {
        // Shaped as `crm.contact.get`'s documented answer (api-reference/crm/contacts/
        // crm-contact-get.md): string ids, `null` for empty scalars, multifield items.
        let ours = json!({
            "ID": "43", "NAME": "Иванова Анна", "LAST_NAME": null,
            "PHONE": [{"ID": "156", "VALUE_TYPE": "MOBILE", "VALUE": "+79123456789", "TYPE_ID": "PHONE"}],
            "EMAIL": [{"ID": "158", "VALUE_TYPE": "WORK", "VALUE": "anna@mail.ru", "TYPE_ID": "EMAIL"}],
            "ORIGINATOR_ID": "zapis",
            "ORIGIN_ID": import_origin("zapis-import-3f2a9c1b7d4e", "phone:+79123456789"),
        });
        let r = import_record(ours).unwrap();
        assert_eq!(r.id, "43");
        assert_eq!(r.name, "Иванова Анна");
        assert_eq!(r.phones, ["+79123456789"]);
        assert_eq!(r.emails, ["anna@mail.ru"]);
        assert_eq!(r.tags, ["zapis-import-3f2a9c1b7d4e"]);
        // A manager's contact: no email selected back as `null`, no origin, a name in parts.
        let theirs = json!({
            "ID": 44, "NAME": "Анна", "LAST_NAME": "Иванова",
            "PHONE": [{"ID": "160", "VALUE_TYPE": "WORK", "VALUE": "8 (912) 345-67-89", "TYPE_ID": "PHONE"}],
            "EMAIL": null, "ORIGINATOR_ID": null, "ORIGIN_ID": null,
        });
        let r = import_record(theirs).unwrap();
        assert_eq!((r.id.as_str(), r.name.as_str()), ("44", "Анна Иванова"));
        assert!(r.emails.is_empty() && r.tags.is_empty());
        // Someone else's system using the same fields is not us.
        let other =
            json!({"ID": "45", "ORIGINATOR_ID": "1c", "ORIGIN_ID": "zapis-import-x/phone:+7"});
        assert!(import_record(other).unwrap().tags.is_empty());
    }

    #[test]
    fn money_is_a_decimal_string_and_phones_have_their_typed_forms() {
        assert_eq!(money(150_000), "1500.00");
        assert_eq!(money(99_050), "990.50");
        assert_eq!(money(-5), "-0.05");
        let v = phone_variants(&Phone::parse("8 912 345 67 89").unwrap());
        for want in [
            "+79123456789",
            "79123456789",
            "89123456789",
            "9123456789",
            "8 (912) 345-67-89",
        ] {
            assert!(v.contains(&want.to_string()), "{want} in {v:?}");
        }
    }
}
