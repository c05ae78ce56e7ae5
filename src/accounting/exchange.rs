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

/// governor's time source, read from our clock so the throttle follows it in tests too.
#[derive(Clone)]
struct LimiterClock(Arc<dyn Clock>);

impl governor::clock::Clock for LimiterClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let ms = self.0.now().timestamp_millis().max(0) as u64;
        Nanos::new(ms.saturating_mul(1_000_000))
    }
}

type AddressLimiter = RateLimiter<
    IpAddr,
    governor::state::keyed::DashMapStateStore<IpAddr>,
    LimiterClock,
    governor::middleware::NoOpMiddleware<Nanos>,
>;
type GlobalLimiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    LimiterClock,
    governor::middleware::NoOpMiddleware<Nanos>,
>;

/// Throttles wrong logins: each failure spends from its address's budget and the global one;
/// an address (or everyone) out of budget is refused before its credentials are looked at,
/// so a right guess during the wait teaches nothing.
struct LoginGuard {
    per_address: AddressLimiter,
    global: GlobalLimiter,
    blocked: Mutex<HashMap<IpAddr, i64>>,
    global_until_ms: AtomicI64,
}

fn quota(burst: u32, every: Duration) -> Quota {
    Quota::with_period(every)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

fn nanos_to_ms(n: Nanos) -> i64 {
    i64::try_from(n.as_u64() / 1_000_000).unwrap_or(i64::MAX)
}

impl LoginGuard {
    fn new(clock: Arc<dyn Clock>) -> LoginGuard {
        let clock = LimiterClock(clock);
        LoginGuard {
            per_address: RateLimiter::dashmap_with_clock(
                quota(ADDRESS_BURST, ADDRESS_REFILL),
                clock.clone(),
            ),
            global: RateLimiter::direct_with_clock(quota(GLOBAL_BURST, GLOBAL_REFILL), clock),
            blocked: Mutex::new(HashMap::new()),
            global_until_ms: AtomicI64::new(0),
        }
    }

    fn blocked_map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, i64>> {
        self.blocked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds this address must wait before its credentials are looked at again.
    fn wait_ms(&self, key: IpAddr, now_ms: i64) -> Option<i64> {
        let global = self.global_until_ms.load(Ordering::Relaxed);
        let address = self.blocked_map().get(&key).copied().unwrap_or(0);
        let until = global.max(address);
        (until > now_ms).then_some(until - now_ms)
    }

    fn failed(&self, key: IpAddr, now_ms: i64) {
        if let Err(not_until) = self.per_address.check_key(&key) {
            let until = nanos_to_ms(not_until.earliest_possible());
            let mut blocked = self.blocked_map();
            if blocked.len() >= MAX_BLOCKED {
                blocked.retain(|_, at| *at > now_ms);
            }
            if blocked.len() >= MAX_BLOCKED {
                self.global_until_ms.fetch_max(until, Ordering::Relaxed);
            } else {
                blocked.insert(key, until);
            }
            tracing::warn!(address = %key, "1C exchange: too many wrong logins from one address");
        }
        if let Err(not_until) = self.global.check() {
            let until = nanos_to_ms(not_until.earliest_possible());
            if self.global_until_ms.fetch_max(until, Ordering::Relaxed) <= now_ms {
                tracing::warn!("1C exchange: too many wrong logins; every login waits");
            }
        }
    }

    fn sweep(&self, now_ms: i64) {
        self.per_address.retain_recent();
        self.blocked_map().retain(|_, at| *at > now_ms);
    }
}

/// The address the throttle counts: IPv6 by /64, as one subscriber usually holds a /64.
fn address_key(peer: Option<SocketAddr>) -> IpAddr {
    match peer.map(|p| p.ip()) {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
        Some(v4) => v4,
        None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    }
}

/// The exchange endpoint's state, shared by requests.
pub struct Exchange {
    store: Store,
    business_id: String,
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
        business_id: &str,
        clock: Arc<dyn Clock>,
        config: CommerceMlConfig,
        timezone: chrono_tz::Tz,
    ) -> Exchange {
        let upload_dir = config.upload_dir.clone().unwrap_or_else(std::env::temp_dir);
        Exchange {
            store,
            business_id: business_id.to_string(),
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

/// Where a piece goes and how much may still arrive.
struct Target {
    path: PathBuf,
    len_before: u64,
    room: u64,
}

/// Streams one piece of a file to its end on disk; 1C sends pieces in order. A piece over
/// `file_limit` or over what the session may still hold is refused and leaves nothing behind.
/// Returns the piece's size.
async fn receive(
    ex: &Exchange,
    cookie: &str,
    filename: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<u64, String> {
    let name = safe_filename(filename).map_err(str::to_string)?;
    let limit = ex.config.file_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(format!(
            "a piece of {name} is larger than file_limit ({limit} bytes); send pieces no larger"
        ));
    }
    if !wanted(&name) {
        // Pictures of goods: read and dropped, so 1C's connection stays usable.
        return drain(body, limit).await;
    }
    let target = ex.with_session(cookie, |session| -> Result<Target, String> {
        match session.imports.get(&name) {
            Some(ImportState::Running) => return Err(format!("{name} is still being imported")),
            // A file sent again after its import is a new file, not more of the old one.
            Some(_) => {
                session.imports.remove(&name);
                session.forget(&name);
            }
            None => {}
        }
        if !session.receiving.insert(name.clone()) {
            return Err(format!("a piece of {name} is already being received"));
        }
        let stored = match session.files.get(&name) {
            Some(s) => s.clone(),
            None => {
                let stored = Stored {
                    path: session.new_path("upload"),
                    len: 0,
                };
                session.files.insert(name.clone(), stored.clone());
                stored
            }
        };
        Ok(Target {
            path: stored.path,
            len_before: stored.len,
            room: ex.config.upload_limit.saturating_sub(session.bytes),
        })
    })??;
    let written = write_piece(&target, body, limit).await;
    ex.with_session(cookie, |session| {
        session.receiving.remove(&name);
        match &written {
            Ok(n) => {
                session.bytes += n;
                if let Some(stored) = session.files.get_mut(&name) {
                    stored.len = target.len_before + n;
                }
            }
            Err(_) if target.len_before == 0 => session.forget(&name),
            Err(_) => {}
        }
    })?;
    written.map_err(|e| match e {
        PieceError::TooLarge => format!(
            "a piece of {name} is larger than file_limit ({limit} bytes); send pieces no larger"
        ),
        PieceError::SessionFull => format!(
            "the exchange is larger than {} (onec.commerceml.upload_limit); send fewer or \
             smaller files",
            megabytes(ex.config.upload_limit)
        ),
        PieceError::Body(e) => format!("the piece of {name} broke off: {e}"),
        PieceError::Disk(e) => {
            tracing::error!(error = %e, "1C exchange: cannot write a received file");
            "the site cannot store files now, try later".into()
        }
    })
}

enum PieceError {
    TooLarge,
    SessionFull,
    Body(axum::Error),
    Disk(std::io::Error),
}

async fn write_piece(target: &Target, body: Body, limit: u64) -> Result<u64, PieceError> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&target.path)
        .await
        .map_err(PieceError::Disk)?;
    let mut stream = body.into_data_stream();
    let mut piece = 0u64;
    let outcome = loop {
        let Some(chunk) = stream.next().await else {
            break Ok(piece);
        };
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => break Err(PieceError::Body(e)),
        };
        piece += chunk.len() as u64;
        if piece > limit {
            break Err(PieceError::TooLarge);
        }
        if piece > target.room {
            break Err(PieceError::SessionFull);
        }
        if let Err(e) = file.write_all(&chunk).await {
            break Err(PieceError::Disk(e));
        }
    };
    let flushed = file.flush().await;
    match (outcome, flushed) {
        (Ok(n), Ok(())) => Ok(n),
        (outcome, flushed) => {
            // Nothing of a refused piece stays: the file is as before it.
            let _ = file.set_len(target.len_before).await;
            Err(outcome.err().unwrap_or_else(|| {
                PieceError::Disk(
                    flushed
                        .err()
                        .unwrap_or_else(|| std::io::Error::other("write failed")),
                )
            }))
        }
    }
}

async fn drain(body: Body, limit: u64) -> Result<u64, String> {
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("the piece broke off: {e}"))?;
        total += chunk.len() as u64;
        if total > limit {
            return Err(format!(
                "a piece is larger than file_limit ({limit} bytes); send pieces no larger"
            ));
        }
    }
    Ok(total)
}

/// The limits an archive is unpacked under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UnzipLimits {
    pub(crate) entries: u64,
    /// Bytes the picked entries may unpack to, together.
    pub(crate) bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Unpacked {
    pub(crate) entry: String,
    stored: Stored,
}

/// Reads through to a file but fails once `budget` bytes were read while it is set: the zip
/// reader loads the whole central directory when it opens an archive, so the directory's
/// size is bounded before the entry count can be checked.
struct Budgeted {
    file: std::fs::File,
    /// Bytes left while the archive is opened; `None` once it is.
    budget: std::rc::Rc<std::cell::Cell<Option<u64>>>,
    over: std::rc::Rc<std::cell::Cell<bool>>,
}

impl Read for Budgeted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if let Some(left) = self.budget.get() {
            match left.checked_sub(n as u64) {
                Some(l) => self.budget.set(Some(l)),
                None => {
                    self.over.set(true);
                    return Err(std::io::Error::other(
                        "the archive's directory is too large",
                    ));
                }
            }
        }
        Ok(n)
    }
}

impl Seek for Budgeted {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

/// Inflates the entries `pick` chooses into files under `dir` (to disk, never memory), under
/// the entry-count and size limits. With `first_only`, stops at the first one.
pub(crate) fn unzip(
    archive: &Path,
    pick: impl Fn(&str) -> bool,
    first_only: bool,
    limits: UnzipLimits,
    next_path: &mut dyn FnMut() -> PathBuf,
) -> Result<Vec<Unpacked>, String> {
    let file = std::fs::File::open(archive).map_err(|e| format!("cannot open the archive: {e}"))?;
    // The end record, one comment and up to the allowed number of directory entries with
    // ordinary names (46 bytes + name + extras each).
    let budget = 2 * (65_536 + 22) + limits.entries.saturating_mul(1024);
    let dir_budget = std::rc::Rc::new(std::cell::Cell::new(Some(budget)));
    let over = std::rc::Rc::new(std::cell::Cell::new(false));
    let reader = Budgeted {
        file,
        budget: dir_budget.clone(),
        over: over.clone(),
    };
    let too_many = || {
        format!(
            "the archive lists more than {} entries (onec.commerceml.zip_entry_limit)",
            limits.entries
        )
    };
    let opened = zip::ZipArchive::new(reader);
    dir_budget.set(None);
    let mut zip = match opened {
        Ok(z) => z,
        Err(_) if over.get() => return Err(too_many()),
        Err(e) => {
            return Err(format!(
                "not a readable zip archive ({e}); was it uploaded completely?"
            ));
        }
    };
    if zip.len() as u64 > limits.entries {
        return Err(too_many());
    }
    let mut left = limits.bytes;
    let too_big = || {
        format!(
            "the archive unpacks to more than {} (onec.commerceml.unpack_limit or what is left of \
             onec.commerceml.upload_limit)",
            megabytes(limits.bytes)
        )
    };
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let Some(name) = zip.name_for_index(i).map(str::to_string) else {
            continue;
        };
        if !pick(&name) {
            continue;
        }
        let mut entry = zip
            .by_index(i)
            .map_err(|e| format!("broken archive entry {name}: {e}"))?;
        if entry.is_dir() {
            continue;
        }
        // The declared size may lie; it only refuses early. The copy below counts for real.
        if entry.size() > left {
            return Err(too_big());
        }
        let path = next_path();
        let mut target =
            std::fs::File::create(&path).map_err(|e| format!("cannot unpack {name}: {e}"))?;
        let copied = std::io::copy(&mut (&mut entry).take(left + 1), &mut target);
        let copied = match copied {
            Ok(n) if n <= left => n,
            Ok(_) => {
                let _ = std::fs::remove_file(&path);
                return Err(too_big());
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(format!("broken archive entry {name}: {e}"));
            }
        };
        left -= copied;
        out.push(Unpacked {
            entry: name,
            stored: Stored { path, len: copied },
        });
        if first_only {
            break;
        }
    }
    Ok(out)
}

/// What an import reads: the file itself, or the archives that may hold it.
enum Source {
    File(PathBuf),
    Archives(Vec<(String, PathBuf)>),
}

/// Import runs in the background: 1C repeats the request while we answer `progress`, so a big
/// catalogue never hits its HTTP timeout.
fn import(ex: &Arc<Exchange>, cookie: String, filename: Option<&str>) -> Response {
    let name = match safe_filename(filename) {
        Ok(n) => n,
        Err(reason) => return failure(reason),
    };
    let planned = ex.with_session(&cookie, |session| {
        match session.imports.get(&name) {
            Some(ImportState::Running) => {
                return Err(Box::new(text(
                    StatusCode::OK,
                    format!("progress\nimporting {name}\n"),
                )));
            }
            Some(ImportState::Done) => return Err(Box::new(success())),
            Some(ImportState::Failed(reason)) => {
                return Err(Box::new(failure(format!("{name}: {reason}"))));
            }
            None => {}
        }
        if !wanted(&name) {
            return Err(Box::new(success()));
        }
        if session.receiving.contains(&name) {
            return Err(Box::new(failure(format!("{name} is still being received"))));
        }
        let source = match session.files.get(&name) {
            Some(_) if is_zip(&name) => {
                return Err(Box::new(failure(format!(
                    "{name} is an archive; ask for a file inside it"
                ))));
            }
            Some(stored) => Source::File(stored.path.clone()),
            None => {
                let archives: Vec<(String, PathBuf)> = session
                    .files
                    .iter()
                    .filter(|(n, _)| is_zip(n))
                    .map(|(n, s)| (n.clone(), s.path.clone()))
                    .collect();
                if archives.is_empty() {
                    return Err(Box::new(failure(format!(
                        "{name} was not received; send it with mode=file"
                    ))));
                }
                Source::Archives(archives)
            }
        };
        session.imports.insert(name.clone(), ImportState::Running);
        let limits = UnzipLimits {
            entries: ex.config.zip_entry_limit,
            bytes: ex
                .config
                .unpack_limit
                .saturating_sub(session.unpacked)
                .min(ex.config.upload_limit.saturating_sub(session.bytes)),
        };
        Ok((source, session.dir.clone(), limits))
    });
    let (source, dir, limits) = match planned {
        Ok(Ok(p)) => p,
        Ok(Err(answer)) => return *answer,
        Err(reason) => return failure(reason),
    };
    let ex = ex.clone();
    let task_name = name.clone();
    tokio::spawn(async move {
        let outcome = import_file(&ex, &cookie, &task_name, source, dir, limits).await;
        let state = match outcome {
            Ok(()) => ImportState::Done,
            Err(reason) => {
                tracing::warn!(file = %task_name, %reason, "1C file refused");
                ImportState::Failed(reason)
            }
        };
        if let Some(session) = ex.sessions().get_mut(&cookie) {
            session.imports.insert(task_name, state);
        }
    });
    text(StatusCode::OK, format!("progress\nimporting {name}\n"))
}

async fn import_file(
    ex: &Exchange,
    cookie: &str,
    name: &str,
    source: Source,
    dir: Arc<tempfile::TempDir>,
    limits: UnzipLimits,
) -> Result<(), String> {
    let path = match source {
        Source::File(path) => path,
        Source::Archives(archives) => {
            let wanted_name = name.to_string();
            let unpack_dir = dir.clone();
            let found = tokio::task::spawn_blocking(move || -> Result<Option<Unpacked>, String> {
                let mut n = 0u64;
                for (archive_name, archive) in archives {
                    let mut next = || {
                        n += 1;
                        unpack_dir
                            .path()
                            .join(format!("unpacked-{}-{n}", uuid::Uuid::new_v4().simple()))
                    };
                    let got = unzip(
                        &archive,
                        |entry| {
                            entry == wanted_name || entry.rsplit('/').next() == Some(&wanted_name)
                        },
                        true,
                        limits,
                        &mut next,
                    )
                    .map_err(|e| format!("{archive_name}: {e}"))?;
                    if let Some(u) = got.into_iter().next() {
                        return Ok(Some(u));
                    }
                }
                Ok(None)
            })
            .await
            .map_err(|e| format!("the import stopped: {e}"))??;
            let Some(unpacked) = found else {
                return Err(format!("{name} was not received; send it with mode=file"));
            };
            tracing::debug!(entry = %unpacked.entry, bytes = unpacked.stored.len, "1C file unpacked");
            let _ = ex.with_session(cookie, |session| {
                session.unpacked += unpacked.stored.len;
                session.bytes += unpacked.stored.len;
            });
            unpacked.stored.path
        }
    };
    let parsed = tokio::task::spawn_blocking(move || {
        // The directory lives while its file is read, even if the session ends meanwhile.
        let _dir = dir;
        commerceml::parse_file(&path)
    })
    .await
    .map_err(|e| format!("the import stopped: {e}"))?;
    let pkg = parsed.map_err(|e| e.to_string())?;
    apply(ex, &pkg).await
}

async fn apply(ex: &Exchange, pkg: &Package) -> Result<(), String> {
    match commerceml::apply(&ex.store, &ex.business_id, pkg, ex.clock.now()).await {
        Ok(()) => {
            tracing::info!(
                items = pkg.catalog.len(),
                offers = pkg.offers.len(),
                documents = pkg.documents.len(),
                "1C file imported"
            );
            if !pkg.offers.is_empty() {
                low_stock_alert(ex, pkg).await;
            }
            Ok(())
        }
        Err(CmlError::Malformed(m)) => Err(m),
        Err(CmlError::Store(e)) => {
            tracing::error!(error = %e, "1C exchange: cannot store the file");
            Err("the site's database is unavailable, try later".into())
        }
    }
}

async fn low_stock_alert(ex: &Exchange, pkg: &Package) {
    let Some(threshold) = ex.low_stock_threshold else {
        return;
    };
    let limit = i64::try_from(threshold)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    let low: Vec<String> = pkg
        .offers
        .iter()
        .filter_map(|o| {
            let q = o.quantity_milli?;
            (q <= limit).then(|| format!("{} ({})", o.name, q / 1000))
        })
        .collect();
    if low.is_empty() {
        return;
    }
    let now = ex.clock.now();
    ex.alerts
        .send(&Alert {
            kind: AlertKind::LowStock,
            business_id: ex.business_id.clone(),
            system: "onec".into(),
            since: now,
            at: now,
            last_error: Some(low.join(", ")),
        })
        .await;
}

async fn query(ex: &Exchange) -> Response {
    let now = ex.clock.now();
    let bookings = match commerceml::pending_for_query(&ex.store, &ex.business_id, now).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "1C exchange: cannot read bookings");
            return failure("the site's database is unavailable, try later");
        }
    };
    let encoding = encoding_rs::Encoding::for_label(ex.config.encoding.as_bytes())
        .unwrap_or(encoding_rs::UTF_8);
    let style = DocumentStyle {
        encoding,
        timezone: ex.timezone,
    };
    match commerceml::write_documents(&bookings, now, &style) {
        Ok(bytes) => {
            let mut r = (StatusCode::OK, bytes).into_response();
            let content_type = format!("application/xml; charset={}", encoding.name());
            if let Ok(v) = HeaderValue::from_str(&content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        }
        Err(e) => failure(format!("cannot write the documents: {e}")),
    }
}

/// 1C's documents back (payments, statuses). A piece shorter than `file_limit` is the last
/// one; the whole file is then read from disk and applied at once.
async fn sale_file(
    ex: &Exchange,
    cookie: &str,
    filename: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let name = match safe_filename(filename) {
        Ok(n) => n,
        Err(reason) => return failure(reason),
    };
    let piece = match receive(ex, cookie, Some(&name), headers, body).await {
        Ok(n) => n,
        Err(reason) => return failure(reason),
    };
    if piece >= ex.config.file_limit || !wanted(&name) {
        return success();
    }
    let taken = ex.with_session(cookie, |session| {
        let stored = session.files.remove(&name)?;
        session.bytes = session.bytes.saturating_sub(stored.len);
        let limits = UnzipLimits {
            entries: ex.config.zip_entry_limit,
            bytes: ex
                .config
                .unpack_limit
                .saturating_sub(session.unpacked)
                .min(ex.config.upload_limit.saturating_sub(session.bytes)),
        };
        Some((stored, session.dir.clone(), limits))
    });
    let (stored, dir, limits) = match taken {
        Ok(Some(t)) => t,
        Ok(None) => return failure(format!("{name} was not received")),
        Err(reason) => return failure(reason),
    };
    let zipped = is_zip(&name);
    let parsed = tokio::task::spawn_blocking(move || -> Result<Package, String> {
        let files = if zipped {
            let mut n = 0u64;
            let mut next = || {
                n += 1;
                dir.path()
                    .join(format!("unpacked-{}-{n}", uuid::Uuid::new_v4().simple()))
            };
            let unpacked = unzip(
                &stored.path,
                |entry| entry.to_ascii_lowercase().ends_with(".xml"),
                false,
                limits,
                &mut next,
            );
            let _ = std::fs::remove_file(&stored.path);
            unpacked?.into_iter().map(|u| u.stored.path).collect()
        } else {
            vec![stored.path]
        };
        let mut all = Package::default();
        let mut outcome = Ok(());
        for file in &files {
            if outcome.is_ok() {
                match commerceml::parse_file(file) {
                    Ok(pkg) => {
                        all.catalog.extend(pkg.catalog);
                        all.offers.extend(pkg.offers);
                        all.documents.extend(pkg.documents);
                    }
                    Err(e) => outcome = Err(e.to_string()),
                }
            }
            let _ = std::fs::remove_file(file);
        }
        outcome.map(|()| all)
    })
    .await;
    let all = match parsed {
        Ok(Ok(all)) => all,
        Ok(Err(reason)) => return failure(format!("{name}: {reason}")),
        Err(e) => return failure(format!("{name}: the import stopped: {e}")),
    };
    match apply(ex, &all).await {
        Ok(()) => success(),
        Err(reason) => failure(format!("{name}: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_stay_inside_the_exchange() {
        assert!(safe_filename(Some("../etc/passwd")).is_err());
        assert!(safe_filename(Some("/etc/passwd")).is_err());
        assert!(safe_filename(Some("a\\..\\b")).is_err());
        assert!(safe_filename(None).is_err());
        assert_eq!(
            safe_filename(Some("import_files/ab/x.xml")).as_deref(),
            Ok("import_files/ab/x.xml")
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; zapis_1c=abc; b=2"),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("abc"));
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let a: SocketAddr = "[2001:db8:1:2:aaaa::1]:5000".parse().unwrap();
        let b: SocketAddr = "[2001:db8:1:2:bbbb::9]:6000".parse().unwrap();
        let c: SocketAddr = "[2001:db8:1:3::1]:6000".parse().unwrap();
        assert_eq!(address_key(Some(a)), address_key(Some(b)));
        assert_ne!(address_key(Some(a)), address_key(Some(c)));
        let mapped: SocketAddr = "[::ffff:10.0.0.7]:1".parse().unwrap();
        assert_eq!(
            address_key(Some(mapped)),
            "10.0.0.7".parse::<IpAddr>().unwrap()
        );
    }
}
