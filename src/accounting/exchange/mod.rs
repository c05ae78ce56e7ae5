//! `/1c/exchange`: the "site" side of 1C's built-in CommerceML exchange. 1C calls us (so the
//! business's 1C can stay behind NAT): `checkauth` → `init` → `file` (chunks) → `import` for
//! the catalogue and offers; `query` → `success` → `file` for orders.
//!
//! Answers are the protocol's plain-text lines: `success`, `progress`, `failure\n<reason>`
//! (1C shows the reason to its user).
//!
//! Nothing of a request body is read before the session cookie is checked, and what is read
//! streams to the session's directory on disk under `file_limit` per piece and `upload_limit`
//! per session. Sessions end on `complete`, `deactivate`, a new `init` and after `session_ttl`
//! without a request; their files go with them.

use crate::domain::{BusinessId, System};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::StreamExt;
use governor::nanos::Nanos;
use governor::{Quota, RateLimiter};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;

use super::commerceml::{self, CmlError, DocumentStyle, Package};
use super::config::CommerceMlConfig;
use crate::clock::Clock;
use crate::store::{Store, StoreError};
use crate::sync::{Alerts, alerts::Alert, alerts::AlertKind};

mod apply;
mod guard;
#[cfg(test)]
mod tests;
mod unzip;
mod upload;

use apply::{import, query, sale_file};
use guard::{LoginGuard, address_key};
use upload::receive;

pub(crate) use unzip::{Unpacked, UnzipLimits, unzip};

pub const COOKIE: &str = "zapis_1c";
/// The largest piece of a file one request may carry (`onec.commerceml.file_limit` ≤ this).
pub const MAX_PIECE: usize = 64 * 1024 * 1024;
/// Logins are valid this long; the files of an idle session go sooner (`session_ttl`).
const SESSION_TTL_MS: i64 = 24 * 3600 * 1000;
/// Exchange sessions holding files at once; a new one pushes out the least recently used.
pub const MAX_SESSIONS: usize = 8;
/// Failed logins one address may make in a row, then one more per [`ADDRESS_REFILL`].
pub const ADDRESS_BURST: u32 = 10;
pub const ADDRESS_REFILL: Duration = Duration::from_secs(6);
/// Failed logins from all addresses together, then one more per [`GLOBAL_REFILL`].
pub const GLOBAL_BURST: u32 = 100;
pub const GLOBAL_REFILL: Duration = Duration::from_secs(1);
/// Addresses remembered as refused at once; beyond this every login waits (a flood from many
/// addresses must not grow memory).
const MAX_BLOCKED: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum ImportState {
    Running,
    Done,
    Failed(String),
}

#[derive(Debug, Clone)]
struct Stored {
    path: PathBuf,
    len: u64,
}

struct Session {
    /// Deleted with everything in it when the last holder lets go: the session, or an import
    /// still reading one of its files.
    dir: Arc<tempfile::TempDir>,
    files: HashMap<String, Stored>,
    /// Files with a piece being written now.
    receiving: HashSet<String>,
    imports: HashMap<String, ImportState>,
    /// On disk: uploads plus unpacked entries.
    bytes: u64,
    unpacked: u64,
    last_used_ms: i64,
    next_file: u64,
}

impl Session {
    fn new(parent: &Path, now_ms: i64) -> std::io::Result<Session> {
        let dir = tempfile::Builder::new()
            .prefix("zapis-1c-")
            .tempdir_in(parent)?;
        Ok(Session {
            dir: Arc::new(dir),
            files: HashMap::new(),
            receiving: HashSet::new(),
            imports: HashMap::new(),
            bytes: 0,
            unpacked: 0,
            last_used_ms: now_ms,
            next_file: 0,
        })
    }

    fn new_path(&mut self, kind: &str) -> PathBuf {
        self.next_file += 1;
        self.dir.path().join(format!("{kind}-{}", self.next_file))
    }

    fn forget(&mut self, name: &str) {
        if let Some(old) = self.files.remove(name) {
            self.bytes = self.bytes.saturating_sub(old.len);
            let _ = std::fs::remove_file(&old.path);
        }
    }
}

/// The exchange endpoint's state, shared by requests.
pub struct Exchange {
    store: Store,
    business_id: BusinessId,
    clock: Arc<dyn Clock>,
    config: CommerceMlConfig,
    timezone: chrono_tz::Tz,
    low_stock_threshold: Option<u64>,
    alerts: Alerts,
    sessions: Mutex<HashMap<String, Session>>,
    upload_dir: PathBuf,
    guard: LoginGuard,
}

impl Exchange {
    pub fn new(
        store: Store,
        business_id: &BusinessId,
        clock: Arc<dyn Clock>,
        config: CommerceMlConfig,
        timezone: chrono_tz::Tz,
    ) -> Exchange {
        let upload_dir = config.upload_dir.clone().unwrap_or_else(std::env::temp_dir);
        Exchange {
            store,
            business_id: business_id.clone(),
            guard: LoginGuard::new(clock.clone()),
            clock,
            config,
            timezone,
            low_stock_threshold: None,
            alerts: Alerts::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
            upload_dir,
        }
    }

    /// Offers at or below `threshold` units after an import raise an alert.
    pub fn with_low_stock_alert(mut self, threshold: Option<u64>, alerts: Alerts) -> Exchange {
        self.low_stock_threshold = threshold;
        self.alerts = alerts;
        self
    }

    /// Ends idle sessions every minute even when 1C stops calling; stops with the exchange.
    pub fn start_sweeper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(ex) = weak.upgrade() else { return };
                ex.sweep();
            }
        });
    }

    /// Exchange sessions holding files now.
    pub fn open_sessions(&self) -> usize {
        self.sessions().len()
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves plain data; keep serving.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sweep(&self) {
        let now = self.now_ms();
        let ttl = i64::try_from(self.config.session_ttl.as_millis()).unwrap_or(i64::MAX);
        let ended: Vec<Session> = {
            let mut sessions = self.sessions();
            let idle: Vec<String> = sessions
                .iter()
                .filter(|(_, s)| now.saturating_sub(s.last_used_ms) >= ttl)
                .map(|(k, _)| k.clone())
                .collect();
            idle.iter().filter_map(|k| sessions.remove(k)).collect()
        };
        if !ended.is_empty() {
            tracing::info!(sessions = ended.len(), "1C exchange: idle sessions ended");
        }
        // Directories are deleted here, outside the lock.
        drop(ended);
        self.guard.sweep(now);
    }

    /// The session of `cookie`, made when it has none (after `init`, expiry or on another
    /// instance); the least recently used one goes when too many hold files.
    fn with_session<T>(
        &self,
        cookie: &str,
        f: impl FnOnce(&mut Session) -> T,
    ) -> Result<T, String> {
        let now = self.now_ms();
        let mut evicted = None;
        let mut sessions = self.sessions();
        if !sessions.contains_key(cookie) {
            if sessions.len() >= MAX_SESSIONS
                && let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_used_ms)
                    .map(|(k, _)| k.clone())
            {
                evicted = sessions.remove(&oldest);
            }
            let session = Session::new(&self.upload_dir, now).map_err(|e| {
                tracing::error!(error = %e, dir = %self.upload_dir.display(),
                    "1C exchange: cannot make the session directory");
                "the site cannot store files now, try later".to_string()
            })?;
            sessions.insert(cookie.to_string(), session);
        }
        let out = sessions.get_mut(cookie).map(|s| {
            s.last_used_ms = now;
            f(s)
        });
        drop(sessions);
        drop(evicted);
        out.ok_or_else(|| "no exchange session: log in again".to_string())
    }

    fn end_session(&self, cookie: &str) {
        let ended = self.sessions().remove(cookie);
        drop(ended);
    }
}

#[derive(Debug, Deserialize)]
pub struct ExchangeQuery {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    filename: Option<String>,
}

fn text(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn success() -> Response {
    text(StatusCode::OK, "success\n".into())
}

fn failure(reason: impl std::fmt::Display) -> Response {
    text(StatusCode::OK, format!("failure\n{reason}\n"))
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    let (user, password) = pair.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Equal or not, in time that depends on neither value: both sides are hashed first, so
/// not even the length of the expected one shows.
fn same(given: &str, expected: &str) -> subtle::Choice {
    Sha256::digest(given.as_bytes()).ct_eq(&Sha256::digest(expected.as_bytes()))
}

fn credentials_match(config: &CommerceMlConfig, headers: &HeaderMap) -> bool {
    let (user, password) = basic_credentials(headers).unwrap_or_default();
    // Both are compared whatever the first gives: a right user name must not answer faster.
    let ok = same(&user, &config.user) & same(&password, config.password.expose_secret());
    bool::from(ok)
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// A path inside the exchange, never outside it.
fn safe_filename(name: Option<&str>) -> Result<String, &'static str> {
    let name = name.unwrap_or("").replace('\\', "/");
    if name.is_empty() {
        return Err("no filename given");
    }
    if name.starts_with('/') || name.split('/').any(|part| part == "..") {
        return Err("the filename leaves the exchange directory");
    }
    Ok(name)
}

pub(crate) fn wanted(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".xml") || lower.ends_with(".zip")
}

fn is_zip(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".zip")
}

/// Answers one request of 1C's exchange; `onec` is `None` when 1C is not set up to call us.
pub async fn exchange(onec: Option<Arc<Exchange>>, q: ExchangeQuery, request: Request) -> Response {
    let Some(ex) = onec else {
        return text(StatusCode::NOT_FOUND, "not found".into());
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    ex.sweep();
    if !matches!(q.kind.as_str(), "catalog" | "sale") {
        return failure(format!("unknown exchange type {:?}", q.kind));
    }
    if q.mode == "checkauth" {
        return checkauth(&ex, &headers, peer).await;
    }
    let Some(cookie) = session_cookie(&headers) else {
        return text(
            StatusCode::UNAUTHORIZED,
            "failure\nno exchange session: log in with mode=checkauth first\n".into(),
        );
    };
    match session_valid(&ex, &cookie).await {
        Ok(true) => {}
        Ok(false) => {
            return text(
                StatusCode::UNAUTHORIZED,
                "failure\nthe exchange session expired: log in again\n".into(),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "1C exchange: cannot read sessions");
            return failure("the site's database is unavailable, try later");
        }
    }
    // Authenticated from here on: only now may the body be read.
    match (q.kind.as_str(), q.mode.as_str()) {
        (_, "init") => {
            // A new exchange starts clean: the previous one's files go.
            ex.end_session(&cookie);
            if let Err(reason) = ex.with_session(&cookie, |_| ()) {
                return failure(reason);
            }
            text(
                StatusCode::OK,
                format!(
                    "zip={}\nfile_limit={}\n",
                    if ex.config.zip { "yes" } else { "no" },
                    ex.config.file_limit
                ),
            )
        }
        ("catalog", "file") => {
            match receive(&ex, &cookie, q.filename.as_deref(), &headers, body).await {
                Ok(_) => success(),
                Err(reason) => failure(reason),
            }
        }
        ("catalog", "import") => import(&ex, cookie, q.filename.as_deref()),
        ("sale", "query") => query(&ex).await,
        ("sale", "success") => {
            match commerceml::mark_delivered(&ex.store, &ex.business_id, ex.clock.now()).await {
                Ok(n) => {
                    tracing::info!(documents = n, "1C took the bookings");
                    success()
                }
                Err(e) => {
                    tracing::error!(error = %e, "1C exchange: cannot mark documents delivered");
                    failure("the site's database is unavailable, try later")
                }
            }
        }
        ("sale", "file") => sale_file(&ex, &cookie, q.filename.as_deref(), &headers, body).await,
        (_, "complete") | (_, "deactivate") => {
            // The exchange is over: its files go now, not at expiry. The login stays valid,
            // as 1C may still send `complete` after `deactivate`.
            ex.end_session(&cookie);
            success()
        }
        (kind, mode) => failure(format!("unknown mode {mode:?} for type={kind}")),
    }
}

async fn checkauth(ex: &Exchange, headers: &HeaderMap, peer: Option<SocketAddr>) -> Response {
    let now = ex.now_ms();
    let key = address_key(peer);
    if let Some(wait) = ex.guard.wait_ms(key, now) {
        let seconds = (wait + 999) / 1000;
        let mut r = text(
            StatusCode::TOO_MANY_REQUESTS,
            format!("failure\ntoo many wrong exchange logins; try again in {seconds} s\n"),
        );
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    if !credentials_match(&ex.config, headers) {
        ex.guard.failed(key, now);
        return text(
            StatusCode::UNAUTHORIZED,
            "failure\nwrong exchange login or password\n".into(),
        );
    }
    let cookie = uuid::Uuid::new_v4().simple().to_string();
    let stored = ex
        .store
        .onec_start_session(&cookie, &ex.business_id, now)
        .await;
    if let Err(e) = stored {
        tracing::error!(error = %e, "1C exchange: cannot store the session");
        return failure("the site's database is unavailable, try later");
    }
    // Old sessions go when a new one starts; nothing else reads them.
    let _ = ex
        .store
        .onec_drop_sessions_before(now - SESSION_TTL_MS)
        .await;
    text(StatusCode::OK, format!("success\n{COOKIE}\n{cookie}\n"))
}

async fn session_valid(ex: &Exchange, cookie: &str) -> Result<bool, StoreError> {
    let created = ex
        .store
        .onec_session_started(cookie, &ex.business_id)
        .await?;
    Ok(created.is_some_and(|at| ex.now_ms() - at < SESSION_TTL_MS))
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}
