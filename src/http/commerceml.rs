//! `/1c/exchange`: the "site" side of 1C's built-in CommerceML exchange. 1C calls us (so the
//! business's 1C can stay behind NAT): `checkauth` → `init` → `file` (chunks) → `import` for
//! the catalogue and offers; `query` → `success` → `file` for orders.
//!
//! Answers are the protocol's plain-text lines: `success`, `progress`, `failure\n<reason>`
//! (1C shows the reason to its user).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::HttpState;
use crate::accounting::commerceml::{self, CmlError, DocumentStyle, Package};
use crate::accounting::config::CommerceMlConfig;
use crate::clock::Clock;
use crate::store::Store;
use crate::sync::{Alerts, alerts::Alert, alerts::AlertKind};

pub const COOKIE: &str = "zapis_1c";
/// The largest piece of a file one request may carry (`onec.commerceml.file_limit` ≤ this).
pub const MAX_PIECE: usize = 64 * 1024 * 1024;
/// What one exchange session may hold in memory: images and other files are not kept.
const SESSION_CAP: usize = 256 * 1024 * 1024;
/// Sessions older than this must log in again.
const SESSION_TTL_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum ImportState {
    Running,
    Done,
    Failed(String),
}

#[derive(Default)]
struct Session {
    files: HashMap<String, Vec<u8>>,
    imports: HashMap<String, ImportState>,
    bytes: usize,
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
}

impl Exchange {
    pub fn new(
        store: Store,
        business_id: &str,
        clock: Arc<dyn Clock>,
        config: CommerceMlConfig,
        timezone: chrono_tz::Tz,
    ) -> Exchange {
        Exchange {
            store,
            business_id: business_id.to_string(),
            clock,
            config,
            timezone,
            low_stock_threshold: None,
            alerts: Alerts::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Offers at or below `threshold` units after an import raise an alert.
    pub fn with_low_stock_alert(mut self, threshold: Option<u64>, alerts: Alerts) -> Exchange {
        self.low_stock_threshold = threshold;
        self.alerts = alerts;
        self
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves plain data; keep serving.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
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

fn wanted(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".xml") || lower.ends_with(".zip")
}

pub async fn exchange(
    State(state): State<HttpState>,
    Query(q): Query<ExchangeQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(ex) = state.onec.clone() else {
        return text(StatusCode::NOT_FOUND, "not found".into());
    };
    if !matches!(q.kind.as_str(), "catalog" | "sale") {
        return failure(format!("unknown exchange type {:?}", q.kind));
    }
    if q.mode == "checkauth" {
        return checkauth(&ex, &headers).await;
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
    match (q.kind.as_str(), q.mode.as_str()) {
        (_, "init") => {
            ex.sessions().insert(cookie, Session::default());
            text(
                StatusCode::OK,
                format!(
                    "zip={}\nfile_limit={}\n",
                    if ex.config.zip { "yes" } else { "no" },
                    ex.config.file_limit
                ),
            )
        }
        ("catalog", "file") => match receive_chunk(&ex, &cookie, q.filename.as_deref(), &body) {
            Ok(_) => success(),
            Err(reason) => failure(reason),
        },
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
        ("sale", "file") => sale_file(&ex, &cookie, q.filename.as_deref(), &body).await,
        (_, "complete") | (_, "deactivate") => success(),
        (kind, mode) => failure(format!("unknown mode {mode:?} for type={kind}")),
    }
}

async fn checkauth(ex: &Exchange, headers: &HeaderMap) -> Response {
    let ok = basic_credentials(headers).is_some_and(|(user, password)| {
        super::same_secret(&user, &ex.config.user)
            && super::same_secret(&password, ex.config.password.expose_secret())
    });
    if !ok {
        return text(
            StatusCode::UNAUTHORIZED,
            "failure\nwrong exchange login or password\n".into(),
        );
    }
    let cookie = uuid::Uuid::new_v4().simple().to_string();
    let now = ex.clock.now().timestamp_millis();
    let stored = sqlx::query(
        "INSERT INTO onec_sessions (cookie, business_id, created_at) VALUES ($1, $2, $3)",
    )
    .bind(&cookie)
    .bind(&ex.business_id)
    .bind(now)
    .execute(ex.store.pool())
    .await;
    if let Err(e) = stored {
        tracing::error!(error = %e, "1C exchange: cannot store the session");
        return failure("the site's database is unavailable, try later");
    }
    // Old sessions go when a new one starts; nothing else reads them.
    let _ = sqlx::query("DELETE FROM onec_sessions WHERE created_at < $1")
        .bind(now - SESSION_TTL_MS)
        .execute(ex.store.pool())
        .await;
    text(StatusCode::OK, format!("success\n{COOKIE}\n{cookie}\n"))
}

async fn session_valid(ex: &Exchange, cookie: &str) -> Result<bool, sqlx::Error> {
    let created: Option<i64> = sqlx::query_scalar(
        "SELECT created_at FROM onec_sessions WHERE cookie = $1 AND business_id = $2",
    )
    .bind(cookie)
    .bind(&ex.business_id)
    .fetch_optional(ex.store.pool())
    .await?;
    Ok(created.is_some_and(|at| ex.clock.now().timestamp_millis() - at < SESSION_TTL_MS))
}

/// Appends one piece of a file; 1C sends pieces in order. Returns the file's size so far.
fn receive_chunk(
    ex: &Exchange,
    cookie: &str,
    filename: Option<&str>,
    body: &[u8],
) -> Result<usize, String> {
    let name = safe_filename(filename).map_err(str::to_string)?;
    let mut sessions = ex.sessions();
    let session = sessions.entry(cookie.to_string()).or_default();
    if !wanted(&name) {
        // Pictures of goods: accepted, not kept.
        return Ok(body.len());
    }
    if session.bytes + body.len() > SESSION_CAP {
        return Err(format!(
            "the exchange is larger than {} MB; lower the file size in 1C's exchange settings",
            SESSION_CAP / 1024 / 1024
        ));
    }
    match session.imports.remove(&name) {
        Some(ImportState::Running) => {
            session.imports.insert(name.clone(), ImportState::Running);
            return Err(format!("{name} is still being imported"));
        }
        // A file sent again after its import is a new file, not more of the old one.
        Some(_) => {
            if let Some(old) = session.files.remove(&name) {
                session.bytes = session.bytes.saturating_sub(old.len());
            }
        }
        None => {}
    }
    session.bytes += body.len();
    let file = session.files.entry(name).or_default();
    file.extend_from_slice(body);
    Ok(file.len())
}

/// The named file, as uploaded or from inside an uploaded archive.
fn find_file(session: &Session, name: &str) -> Result<Option<Vec<u8>>, String> {
    if let Some(bytes) = session.files.get(name) {
        if name.to_ascii_lowercase().ends_with(".zip") {
            return Err(format!("{name} is an archive; ask for a file inside it"));
        }
        return Ok(Some(bytes.clone()));
    }
    for (archive_name, archive) in &session.files {
        if !archive_name.to_ascii_lowercase().ends_with(".zip") {
            continue;
        }
        if let Some(bytes) = from_zip(archive, |entry| {
            entry == name || entry.rsplit('/').next() == Some(name)
        })
        .map_err(|e| format!("{archive_name}: {e}"))?
        .into_iter()
        .next()
        {
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

/// Entries of a zip archive chosen by `pick`, each read up to the session cap.
fn from_zip(archive: &[u8], pick: impl Fn(&str) -> bool) -> Result<Vec<Vec<u8>>, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive))
        .map_err(|e| format!("not a readable zip archive ({e}); was it uploaded completely?"))?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| format!("broken archive: {e}"))?;
        if entry.is_dir() || !pick(entry.name()) {
            continue;
        }
        let mut bytes = Vec::new();
        (&mut entry)
            .take(SESSION_CAP as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("broken archive entry {}: {e}", entry.name()))?;
        if bytes.len() > SESSION_CAP {
            return Err(format!(
                "{} unpacks to more than the allowed size",
                entry.name()
            ));
        }
        out.push(bytes);
    }
    Ok(out)
}

/// Import runs in the background: 1C repeats the request while we answer `progress`, so a big
/// catalogue never hits its HTTP timeout.
fn import(ex: &Arc<Exchange>, cookie: String, filename: Option<&str>) -> Response {
    let name = match safe_filename(filename) {
        Ok(n) => n,
        Err(reason) => return failure(reason),
    };
    let bytes = {
        let mut sessions = ex.sessions();
        let session = sessions.entry(cookie.clone()).or_default();
        match session.imports.get(&name) {
            Some(ImportState::Running) => {
                return text(StatusCode::OK, format!("progress\nimporting {name}\n"));
            }
            Some(ImportState::Done) => return success(),
            Some(ImportState::Failed(reason)) => return failure(format!("{name}: {reason}")),
            None => {}
        }
        if !wanted(&name) {
            return success();
        }
        match find_file(session, &name) {
            Ok(Some(bytes)) => {
                session.imports.insert(name.clone(), ImportState::Running);
                bytes
            }
            Ok(None) => return failure(format!("{name} was not received; send it with mode=file")),
            Err(reason) => return failure(reason),
        }
    };
    let ex = ex.clone();
    let task_name = name.clone();
    tokio::spawn(async move {
        let outcome = import_bytes(&ex, bytes).await;
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

async fn import_bytes(ex: &Exchange, bytes: Vec<u8>) -> Result<(), String> {
    let parsed = tokio::task::spawn_blocking(move || commerceml::parse(&bytes))
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
/// one; the whole file is then read and applied at once.
async fn sale_file(ex: &Exchange, cookie: &str, filename: Option<&str>, body: &[u8]) -> Response {
    let name = match safe_filename(filename) {
        Ok(n) => n,
        Err(reason) => return failure(reason),
    };
    if let Err(reason) = receive_chunk(ex, cookie, Some(&name), body) {
        return failure(reason);
    }
    let limit = usize::try_from(ex.config.file_limit).unwrap_or(usize::MAX);
    if body.len() >= limit || !wanted(&name) {
        return success();
    }
    let bytes = {
        let mut sessions = ex.sessions();
        let Some(session) = sessions.get_mut(cookie) else {
            return failure("no exchange session: start with mode=init");
        };
        let Some(bytes) = session.files.remove(&name) else {
            return failure(format!("{name} was not received"));
        };
        session.bytes = session.bytes.saturating_sub(bytes.len());
        bytes
    };
    let files = if name.to_ascii_lowercase().ends_with(".zip") {
        match from_zip(&bytes, |entry| entry.to_ascii_lowercase().ends_with(".xml")) {
            Ok(files) => files,
            Err(reason) => return failure(format!("{name}: {reason}")),
        }
    } else {
        vec![bytes]
    };
    let mut all = Package::default();
    for file in files {
        let parsed = tokio::task::spawn_blocking(move || commerceml::parse(&file)).await;
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => return failure(format!("{name}: the import stopped: {e}")),
        };
        match parsed {
            Ok(pkg) => {
                all.catalog.extend(pkg.catalog);
                all.offers.extend(pkg.offers);
                all.documents.extend(pkg.documents);
            }
            Err(e) => return failure(format!("{name}: {e}")),
        }
    }
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
}
