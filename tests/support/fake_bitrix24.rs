//! A fake Bitrix24 portal over real HTTP (axum on 127.0.0.1:0), reproducing the documented REST
//! contract (../shared/reference/crm-apis.md §2, checklist §2.8): `/rest/{user}/{code}/{method}`
//! and `/rest/{method}` with `auth`, JSON and form (PHP bracket) bodies, `{result, time, total,
//! next}` answers with 50-item pages, `{error, error_description}` errors (empty `error` for
//! legacy crm.* methods), a leaky bucket answering 503 QUERY_LIMIT_EXCEEDED above its threshold,
//! `batch` with `result_error` and PHP's `[]` for empty maps, and the OAuth server's token
//! endpoint with single-use refresh tokens. State lives in memory and is open to inspection.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

pub const WEBHOOK_USER: &str = "1";
pub const WEBHOOK_CODE: &str = "hook5ecret0code";
pub const CLIENT_ID: &str = "app.573ad8a0346747.09223434";
pub const CLIENT_SECRET: &str = "app-client-secret";
pub const APPLICATION_TOKEN: &str = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas";
/// The one string user field deals and leads have.
pub const BOOKING_FIELD: &str = "UF_CRM_ZAPIS_BOOKING";
/// A second funnel with prefixed stages.
pub const CATEGORY: i64 = 1;
/// Non-Enterprise bucket: block above 50, drain 2 per second.
pub const BUCKET_LIMIT: f64 = 50.0;
pub const BUCKET_DRAIN: f64 = 2.0;

/// Contracts live beside the repository; tests must not silently skip when they are absent.
pub fn contracts_dir() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/contracts"
    ));
    assert!(
        dir.join("bitrix24").is_dir(),
        "contracts directory {} is missing: the Bitrix24 fake is checked against it",
        dir.display()
    );
    dir
}

pub fn contract(name: &str) -> Vec<u8> {
    let path = contracts_dir().join("bitrix24").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn contract_json(name: &str) -> Value {
    serde_json::from_slice(&contract(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// PHP bracket form encoding of a JSON value, as Bitrix24 reads form bodies.
pub fn php_form(value: &Value) -> String {
    fn walk(prefix: Option<String>, v: &Value, out: &mut Vec<(String, String)>) {
        let key = |k: &str| match &prefix {
            Some(p) => format!("{p}[{k}]"),
            None => k.to_string(),
        };
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| walk(Some(key(k)), v, out)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, v)| walk(Some(key(&i.to_string())), v, out)),
            Value::String(s) => out.push((prefix.clone().unwrap_or_default(), s.clone())),
            Value::Null => out.push((prefix.clone().unwrap_or_default(), String::new())),
            other => out.push((prefix.clone().unwrap_or_default(), other.to_string())),
        }
    }
    let mut pairs = Vec::new();
    walk(None, value, &mut pairs);
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The reverse: PHP's `parse_str`, with sequential numeric keys turned into JSON arrays.
pub fn php_parse(text: &[u8]) -> Value {
    let mut root = Value::Object(Map::new());
    for (k, v) in url::form_urlencoded::parse(text) {
        let parts = bracket_parts(&k);
        let mut cur = &mut root;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let map = match cur {
                Value::Object(m) => m,
                _ => break,
            };
            if last {
                map.insert(part.to_string(), Value::String(v.to_string()));
                break;
            }
            cur = map
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !cur.is_object() {
                *cur = Value::Object(Map::new());
            }
        }
    }
    arrays(root)
}

fn arrays(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let sequential = !m.is_empty() && (0..m.len()).all(|i| m.contains_key(&i.to_string()));
            if sequential {
                let mut m = m;
                Value::Array(
                    (0..m.len())
                        .map(|i| arrays(m.remove(&i.to_string()).unwrap_or(Value::Null)))
                        .collect(),
                )
            } else {
                Value::Object(m.into_iter().map(|(k, v)| (k, arrays(v))).collect())
            }
        }
        other => other,
    }
}

fn bracket_parts(key: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    parts.push(head.to_string());
    while let Some(stripped) = rest.strip_prefix('[') {
        match stripped.find(']') {
            Some(end) => {
                parts.push(stripped[..end].to_string());
                rest = &stripped[end + 1..];
            }
            None => break,
        }
    }
    parts
}

/// One fault, fired once by the first call of `method` that matches it.
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: String,
    /// Matches only a call whose body contains this text (a client's name, say).
    pub needle: Option<String>,
    pub kind: FaultKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Refused with this status (`INTERNAL_SERVER_ERROR`) before anything is written.
    Before(u16),
    /// Carried out, then answered with this status instead of the result.
    AfterStatus(u16),
    /// Carried out, then the connection is cut while the answer is on its way.
    AfterDrop,
    /// Carried out, then the answer is held this many milliseconds (past the client's timeout).
    AfterDelay(u64),
}

/// A failure the fake answers for matching calls (directly or inside `batch`).
#[derive(Clone)]
struct Failure {
    method: String,
    /// Matches when the call's JSON-serialised parameters contain this text.
    needle: String,
    status: u16,
    body: Value,
}

#[derive(Default)]
struct Inner {
    next_id: i64,
    contacts: BTreeMap<i64, Value>,
    deals: BTreeMap<i64, Value>,
    leads: BTreeMap<i64, Value>,
    comments: Vec<Value>,
    activities: Vec<Value>,
    tasks: Vec<Value>,
    /// Access token → expired?
    access: HashMap<String, bool>,
    /// Refresh token → already used?
    refresh: HashMap<String, bool>,
    codes: HashSet<String>,
    refreshes: usize,
    last_pair: Option<(String, String)>,
    issued_by_refresh: HashSet<String>,
    hang_new_tokens: bool,
    hung: usize,
    unpaid: bool,
    bucket: f64,
    bucket_at: Option<Instant>,
    limit: f64,
    drain: f64,
    max_level: f64,
    throttled: usize,
    injected: VecDeque<(u16, Value)>,
    failures: Vec<Failure>,
    /// Requests whose body contains one of these are carried out, then answered with a 500:
    /// the portal did the work and the answer was lost.
    lost_answers: Vec<String>,
    /// Top-level method of every REST call, in arrival order.
    calls: Vec<String>,
    /// Methods run inside batches.
    batched: Vec<String>,
    /// Commands in each `batch` call that was run.
    batch_sizes: Vec<usize>,
    /// Content types of REST bodies seen.
    content_types: Vec<String>,
    faults: Vec<Fault>,
    fired: Vec<Fault>,
}

#[derive(Clone)]
pub struct FakeBitrix {
    pub base_url: url::Url,
    inner: Arc<Mutex<Inner>>,
}

type Outcome = Result<(Value, Option<usize>, Option<usize>), (u16, Value)>;

impl FakeBitrix {
    pub async fn start() -> FakeBitrix {
        let inner = Arc::new(Mutex::new(Inner {
            next_id: 100,
            limit: BUCKET_LIMIT,
            drain: BUCKET_DRAIN,
            ..Inner::default()
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Bitrix24");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("fake Bitrix24 serves");
        });
        FakeBitrix {
            base_url: url::Url::parse(&format!("http://{addr}")).expect("url"),
            inner,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn webhook_url(&self) -> String {
        format!("{}rest/{WEBHOOK_USER}/{WEBHOOK_CODE}/", self.base_url)
    }
    pub fn token_url(&self) -> url::Url {
        self.base_url.join("/oauth/token/").expect("url")
    }

    // ------------------------------------------------------------- setup
    pub fn issue_code(&self, code: &str) {
        self.lock().codes.insert(code.into());
    }
    pub fn expire_access_tokens(&self) {
        self.lock().access.values_mut().for_each(|e| *e = true);
    }
    pub fn revoke_refresh_tokens(&self) {
        self.lock().refresh.values_mut().for_each(|u| *u = true);
    }
    pub fn hang_new_tokens(&self, on: bool) {
        self.lock().hang_new_tokens = on;
    }
    pub fn set_unpaid(&self, on: bool) {
        self.lock().unpaid = on;
    }
    /// Threshold and drain of the leaky bucket (Enterprise: 250 and 5).
    pub fn set_bucket(&self, limit: f64, drain: f64) {
        let mut s = self.lock();
        s.limit = limit;
        s.drain = drain;
    }
    /// The next REST answers are these (status, body).
    pub fn inject(&self, status: u16, body: Value) {
        self.lock().injected.push_back((status, body));
    }
    /// Calls of `method` whose parameters contain `needle` fail with this answer, also inside
    /// `batch` (where they land in `result_error`).
    pub fn fail_when(&self, method: &str, needle: &str, status: u16, body: Value) {
        self.lock().failures.push(Failure {
            method: method.into(),
            needle: needle.into(),
            status,
            body,
        });
    }
    /// The first call of `method` (whose body contains `needle`, when given) meets this fault,
    /// once.
    pub fn fault(&self, method: &str, needle: Option<&str>, kind: FaultKind) {
        self.lock().faults.push(Fault {
            method: method.into(),
            needle: needle.map(str::to_string),
            kind,
        });
    }
    /// Faults that fired so far.
    pub fn fired(&self) -> Vec<Fault> {
        self.lock().fired.clone()
    }
    /// Faults set but not met yet.
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }
    /// The next request whose body contains `needle` is carried out and then answered with
    /// a 500, as when a proxy or the network drops the answer.
    pub fn lose_answer_of(&self, needle: &str) {
        self.lock().lost_answers.push(needle.into());
    }
    /// A contact as a manager typed it by hand.
    pub fn insert_contact_with_phone(&self, name: &str, phone: &str) -> i64 {
        let mut s = self.lock();
        let id = s.id();
        s.contacts.insert(
            id,
            json!({"ID": id.to_string(), "NAME": name,
                   "PHONE": [{"ID": (id * 10).to_string(), "TYPE_ID": "PHONE", "VALUE": phone, "VALUE_TYPE": "WORK"}],
                   "EMAIL": []}),
        );
        id
    }
    pub fn insert_deal(&self, id: i64, fields: Value) {
        let mut d = fields;
        d["ID"] = json!(id.to_string());
        if d.get("CATEGORY_ID").is_none() {
            d["CATEGORY_ID"] = json!("0");
        }
        if d.get("STAGE_ID").is_none() {
            d["STAGE_ID"] = json!("NEW");
        }
        self.lock().deals.insert(id, d);
    }

    /// A manager drags a deal (`entity = "deal"`) or lead to another stage in the portal.
    pub fn move_by_manager(&self, entity: &str, id: &str, stage: &str) {
        let id: i64 = id.parse().expect("numeric id");
        let mut s = self.lock();
        let (pool, field) = match entity {
            "deal" => (&mut s.deals, "STAGE_ID"),
            _ => (&mut s.leads, "STATUS_ID"),
        };
        let item = pool.get_mut(&id).expect("entity exists");
        item[field] = json!(stage);
    }

    /// The outbound event the portal POSTs about an entity: the contract's example with its
    /// event code and id replaced, form-encoded with PHP brackets as Bitrix24 sends it.
    pub fn event_form(&self, event: &str, id: &str) -> String {
        let mut v = contract_json("event-oncrmdealadd.webhook.json");
        v["event"] = json!(event);
        v["data"]["FIELDS"]["ID"] = json!(id);
        v["auth"]["application_token"] = json!(APPLICATION_TOKEN);
        php_form(&v)
    }

    // ------------------------------------------------------------- inspection
    pub fn contacts(&self) -> Vec<Value> {
        self.lock().contacts.values().cloned().collect()
    }
    pub fn deals(&self) -> Vec<Value> {
        self.lock().deals.values().cloned().collect()
    }
    pub fn leads(&self) -> Vec<Value> {
        self.lock().leads.values().cloned().collect()
    }
    pub fn deal(&self, id: &str) -> Value {
        let id: i64 = id.parse().expect("numeric id");
        self.lock().deals.get(&id).cloned().expect("deal exists")
    }
    pub fn lead(&self, id: &str) -> Value {
        let id: i64 = id.parse().expect("numeric id");
        self.lock().leads.get(&id).cloned().expect("lead exists")
    }
    pub fn comments_of(&self, entity_type: &str, id: &str) -> Vec<Value> {
        self.lock()
            .comments
            .iter()
            .filter(|c| c["ENTITY_TYPE"] == entity_type && c["ENTITY_ID"] == id)
            .cloned()
            .collect()
    }
    pub fn activities(&self) -> Vec<Value> {
        self.lock().activities.clone()
    }
    pub fn tasks(&self) -> Vec<Value> {
        self.lock().tasks.clone()
    }
    pub fn refreshes(&self) -> usize {
        self.lock().refreshes
    }
    pub fn hung(&self) -> usize {
        self.lock().hung
    }
    pub fn last_pair(&self) -> Option<(String, String)> {
        self.lock().last_pair.clone()
    }
    pub fn refresh_token_used(&self, token: &str) -> Option<bool> {
        self.lock().refresh.get(token).copied()
    }
    /// Highest level the leaky bucket reached.
    pub fn max_level(&self) -> f64 {
        self.lock().max_level
    }
    pub fn throttled(&self) -> usize {
        self.lock().throttled
    }
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }
    pub fn count(&self, method: &str) -> usize {
        self.calls().iter().filter(|m| *m == method).count()
    }
    pub fn batched(&self) -> Vec<String> {
        self.lock().batched.clone()
    }
    /// How many commands each `batch` call carried (refused ones included).
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.lock().batch_sizes.clone()
    }
    /// A contact as a manager typed it, with any phones and emails.
    pub fn insert_contact(&self, name: &str, phones: &[&str], emails: &[&str]) -> i64 {
        let mut s = self.lock();
        let id = s.id();
        let mut n = id * 10;
        let mut multi = |kind: &str, values: &[&str]| -> Value {
            Value::Array(
                values
                    .iter()
                    .map(|v| {
                        n += 1;
                        json!({"ID": n.to_string(), "TYPE_ID": kind, "VALUE": v, "VALUE_TYPE": "WORK"})
                    })
                    .collect(),
            )
        };
        let phone = multi("PHONE", phones);
        let email = multi("EMAIL", emails);
        s.contacts.insert(
            id,
            json!({"ID": id.to_string(), "NAME": name, "LAST_NAME": null, "PHONE": phone,
                   "EMAIL": email, "ORIGINATOR_ID": null, "ORIGIN_ID": null}),
        );
        id
    }
    pub fn content_types(&self) -> Vec<String> {
        self.lock().content_types.clone()
    }
}

impl Inner {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
}

// ------------------------------------------------------------------ responses

fn time() -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    json!({"start": now, "finish": now + 0.01, "duration": 0.01, "processing": 0.005,
           "date_start": "2026-05-14T10:26:32+02:00", "date_finish": "2026-05-14T10:26:33+02:00",
           "operating_reset_at": now as i64 + 600, "operating": 0.0})
}

fn json_response(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn err(status: u16, code: &str, description: &str) -> (u16, Value) {
    (
        status,
        json!({"error": code, "error_description": description}),
    )
}

fn fields_must_be_array() -> (u16, Value) {
    (
        400,
        contract_json("error-fields-must-be-array.response.json"),
    )
}

fn not_found() -> (u16, Value) {
    err(400, "", "Not found")
}

// ------------------------------------------------------------------ routing

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").as_bytes().to_vec();
    if path.trim_end_matches('/') == "/oauth/token" {
        let mut s = inner.lock().unwrap_or_else(|p| p.into_inner());
        return token_endpoint(&mut s, &php_parse(&query));
    }
    let Some(rest) = path.strip_prefix("/rest/") else {
        return json_response(
            404,
            json!({"error": "NOT_FOUND", "error_description": "Not found"}),
        );
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (hook, method) = match segments.as_slice() {
        [user, code, method] => (Some((*user, *code)), *method),
        [method] => (None, *method),
        _ => {
            return json_response(
                400,
                json!({"error": "INVALID_REQUEST", "error_description": "Bad path"}),
            );
        }
    };
    let method = method.trim_end_matches(".json").to_string();
    // Parameters: the query string plus a JSON or form body.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut params = php_parse(&query);
    if !body.is_empty() {
        let from_body = if content_type.starts_with("application/json") {
            match serde_json::from_slice::<Value>(&body) {
                Ok(v) => v,
                Err(_) => {
                    return json_response(
                        400,
                        json!({"error": "INVALID_REQUEST", "error_description": "Invalid JSON"}),
                    );
                }
            }
        } else {
            php_parse(&body)
        };
        if let (Value::Object(p), Value::Object(b)) = (&mut params, from_body) {
            p.extend(b);
        }
    }
    let hang = {
        let mut s = inner.lock().unwrap_or_else(|p| p.into_inner());
        s.calls.push(method.clone());
        s.content_types.push(content_type);
        match authorise(&mut s, hook, &params) {
            Err((status, body)) => return json_response(status, body),
            Ok(hang) => hang,
        }
    };
    if hang {
        // The client "crashed" with a fresh token in flight: never answer.
        std::future::pending::<()>().await;
    }
    let (answer, fault) = {
        let mut s = inner.lock().unwrap_or_else(|p| p.into_inner());
        // The leaky bucket: every request adds one, the level drains continuously, and a request
        // that would take it above the threshold is refused.
        let now = Instant::now();
        if let Some(at) = s.bucket_at {
            let drained = now.duration_since(at).as_secs_f64() * s.drain;
            s.bucket = (s.bucket - drained).max(0.0);
        }
        s.bucket_at = Some(now);
        if s.bucket + 1.0 > s.limit {
            s.throttled += 1;
            return json_response(
                503,
                json!({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}),
            );
        }
        s.bucket += 1.0;
        s.max_level = s.max_level.max(s.bucket);
        if let Some((status, body)) = s.injected.pop_front() {
            return json_response(status, body);
        }
        let text = String::from_utf8_lossy(&body).to_string();
        let fault = s
            .faults
            .iter()
            .position(|f| {
                f.method == method && f.needle.as_ref().is_none_or(|n| text.contains(n.as_str()))
            })
            .map(|i| s.faults.remove(i));
        if let Some(f) = &fault {
            s.fired.push(f.clone());
            if let FaultKind::Before(status) = f.kind {
                return json_response(
                    status,
                    json!({"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}),
                );
            }
        }
        let outcome = if method == "batch" {
            // Commands run in the order sent (PHP arrays keep it); a JSON map parsed here would be
            // sorted by key, so the order is read off the raw form pairs.
            let order: Vec<String> = url::form_urlencoded::parse(&query)
                .chain(url::form_urlencoded::parse(&body))
                .filter_map(|(k, _)| {
                    let parts = bracket_parts(&k);
                    (parts.len() == 2 && parts[0].eq_ignore_ascii_case("cmd"))
                        .then(|| parts[1].clone())
                })
                .collect();
            batch(&mut s, &params, &order)
        } else {
            dispatch(&mut s, &method, &params)
        };
        let raw = String::from_utf8_lossy(&body);
        if let Some(i) = s.lost_answers.iter().position(|n| raw.contains(n.as_str())) {
            s.lost_answers.remove(i);
            return json_response(
                500,
                json!({"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}),
            );
        }
        let answer = match outcome {
            Ok((result, total, next)) => {
                let mut body = json!({"result": result, "time": time()});
                if let Some(t) = total {
                    body["total"] = json!(t);
                }
                if let Some(n) = next {
                    body["next"] = json!(n);
                }
                json_response(200, body)
            }
            Err((status, body)) => json_response(status, body),
        };
        (answer, fault)
    };
    match fault.map(|f| f.kind) {
        Some(FaultKind::AfterStatus(status)) => json_response(
            status,
            json!({"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}),
        ),
        Some(FaultKind::AfterDrop) => {
            // Status and headers go out, then the connection breaks before the body.
            let (parts, _) = answer.into_parts();
            let broken = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("connection cut"))
            });
            Response::from_parts(parts, axum::body::Body::from_stream(broken))
        }
        Some(FaultKind::AfterDelay(ms)) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            answer
        }
        _ => answer,
    }
}

/// Webhook code or OAuth `auth` token. `Ok(true)` means "hang: a refreshed token under test".
fn authorise(
    s: &mut Inner,
    hook: Option<(&str, &str)>,
    params: &Value,
) -> Result<bool, (u16, Value)> {
    if let Some((user, code)) = hook {
        if user == WEBHOOK_USER && code == WEBHOOK_CODE {
            return Ok(false);
        }
        return Err(err(401, "NO_AUTH_FOUND", "Wrong authorization data"));
    }
    let token = params.get("auth").and_then(|a| a.as_str()).unwrap_or("");
    match s.access.get(token) {
        None => Err(err(
            401,
            "invalid_token",
            "The access token provided is invalid.",
        )),
        Some(true) => Err(err(
            401,
            "expired_token",
            "The access token provided has expired.",
        )),
        Some(false) => {
            if s.hang_new_tokens && s.issued_by_refresh.contains(token) {
                s.hung += 1;
                return Ok(true);
            }
            Ok(false)
        }
    }
}

fn token_endpoint(s: &mut Inner, q: &Value) -> Response {
    let get = |k: &str| q.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    if s.unpaid {
        return json_response(
            402,
            contract_json("oauth-error-payment-required.response.json"),
        );
    }
    if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        return json_response(
            401,
            json!({"error": "invalid_client", "error_description": "Invalid client"}),
        );
    }
    let by_refresh = match get("grant_type").as_str() {
        "authorization_code" => {
            if !s.codes.remove(&get("code")) {
                return json_response(
                    400,
                    json!({"error": "invalid_grant", "error_description": "Invalid authorization code"}),
                );
            }
            false
        }
        "refresh_token" => {
            let token = get("refresh_token");
            match s.refresh.get(&token) {
                Some(false) => {
                    s.refresh.insert(token, true);
                    s.refreshes += 1;
                    true
                }
                _ => {
                    return json_response(
                        400,
                        json!({"error": "invalid_grant", "error_description": "Invalid refresh token"}),
                    );
                }
            }
        }
        _ => {
            return json_response(
                400,
                json!({"error": "invalid_request", "error_description": "Unsupported grant_type"}),
            );
        }
    };
    let n = s.id();
    let access = format!("access-{n}");
    let refresh = format!("refresh-{n}");
    s.access.insert(access.clone(), false);
    s.refresh.insert(refresh.clone(), false);
    if by_refresh {
        s.issued_by_refresh.insert(access.clone());
    }
    s.last_pair = Some((access.clone(), refresh.clone()));
    let mut body = contract_json("oauth-token.response.json");
    body["access_token"] = json!(access);
    body["refresh_token"] = json!(refresh);
    json_response(200, body)
}

// ------------------------------------------------------------------ methods

/// A parameter under any of its spellings (`fields`/`FIELDS`): legacy crm.* accept both.
fn param<'a>(p: &'a Value, name: &str) -> Option<&'a Value> {
    p.get(name)
        .or_else(|| p.get(name.to_uppercase()))
        .or_else(|| p.get(name.to_lowercase()))
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn digits_without_extension(phone: &str) -> String {
    let lower = phone.to_lowercase();
    let cut = ["доб", "ext", "#", ","]
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .unwrap_or(lower.len());
    lower[..cut].chars().filter(char::is_ascii_digit).collect()
}

fn directory(entity: &str) -> Vec<Value> {
    let stages: Vec<(&str, &str, &str)> = match entity {
        "DEAL_STAGE" => vec![
            ("NEW", "New", ""),
            ("PREPARATION", "Preparation", ""),
            ("EXECUTING", "In progress", ""),
            ("WON", "Deal won", "S"),
            ("LOSE", "Deal lost", "F"),
        ],
        "DEAL_STAGE_1" => vec![
            ("C1:NEW", "Booked", ""),
            ("C1:CONFIRMED", "Confirmed", ""),
            ("C1:WON", "Visited", "S"),
            ("C1:LOSE", "Cancelled", "F"),
        ],
        "STATUS" => vec![
            ("NEW", "Unassigned", ""),
            ("IN_PROCESS", "In progress", ""),
            ("PROCESSED", "Processed", ""),
            ("CONVERTED", "Good lead", "S"),
            ("JUNK", "Junk lead", "F"),
        ],
        "SOURCE" => vec![
            ("CALL", "Call", ""),
            ("EMAIL", "E-mail", ""),
            ("WEB", "Website", ""),
            ("ADVERTISING", "Advertising", ""),
            ("PARTNER", "Existing client", ""),
            ("RECOMMENDATION", "By recommendation", ""),
            ("TRADE_SHOW", "Trade show", ""),
            ("WEBFORM", "CRM form", ""),
            ("CALLBACK", "Callback", ""),
            ("RC_GENERATOR", "Sales generator", ""),
            ("STORE", "Online store", ""),
            ("OTHER", "Other", ""),
            ("UC_TELEGRAM", "Telegram bot", ""),
        ],
        _ => vec![],
    };
    let base = match entity {
        "DEAL_STAGE" => 100,
        "DEAL_STAGE_1" => 200,
        "STATUS" => 300,
        _ => 400,
    };
    stages
        .into_iter()
        .enumerate()
        .map(|(i, (id, name, sem))| {
            let mut item = json!({"ID": (base + i).to_string(), "ENTITY_ID": entity, "STATUS_ID": id,
                                  "NAME": name, "SORT": ((i + 1) * 10).to_string(), "SYSTEM": "Y"});
            if !sem.is_empty() || entity.starts_with("DEAL_STAGE") || entity == "STATUS" {
                let semantics = if sem.is_empty() { "process" } else { sem };
                item["EXTRA"] = json!({"SEMANTICS": semantics, "COLOR": "#39A8EF"});
            }
            item
        })
        .collect()
}

fn stage_entity(category: i64) -> String {
    if category == 0 {
        "DEAL_STAGE".into()
    } else {
        format!("DEAL_STAGE_{category}")
    }
}

fn page(items: Vec<Value>, params: &Value) -> Outcome {
    let start = int(param(params, "start")).unwrap_or(0).max(0) as usize;
    let total = items.len();
    let slice: Vec<Value> = items.into_iter().skip(start).take(50).collect();
    let next = (start + 50 < total).then_some(start + 50);
    Ok((Value::Array(slice), Some(total), next))
}

fn select(item: &Value, params: &Value) -> Value {
    let wanted: Vec<String> = param(params, "select")
        .and_then(|s| s.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let multiple = ["PHONE", "EMAIL", "WEB", "IM"];
    let Value::Object(map) = item else {
        return item.clone();
    };
    if wanted.is_empty() || wanted.iter().any(|w| w == "*") {
        // `*` leaves out multiple fields.
        return Value::Object(
            map.iter()
                .filter(|(k, _)| !multiple.contains(&k.as_str()) || wanted.iter().any(|w| w == *k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
    }
    let mut out = Map::new();
    out.insert("ID".into(), map.get("ID").cloned().unwrap_or(Value::Null));
    for w in &wanted {
        out.insert(w.clone(), map.get(w).cloned().unwrap_or(Value::Null));
    }
    Value::Object(out)
}

fn matches_filter(item: &Value, filter: Option<&Value>) -> bool {
    let Some(Value::Object(filter)) = filter else {
        return true;
    };
    filter.iter().all(|(key, want)| {
        if let Some(field) = key.strip_prefix('@') {
            let have = text(item.get(field));
            return want
                .as_array()
                .is_some_and(|a| a.iter().any(|w| text(Some(w)) == have));
        }
        let field = key.trim_start_matches('=');
        text(item.get(field)) == text(Some(want))
    })
}

fn failure_for(s: &Inner, method: &str, params: &Value) -> Option<(u16, Value)> {
    let serialized = params.to_string();
    s.failures
        .iter()
        .find(|f| f.method == method && serialized.contains(&f.needle))
        .map(|f| (f.status, f.body.clone()))
}

fn dispatch(s: &mut Inner, method: &str, p: &Value) -> Outcome {
    if let Some(f) = failure_for(s, method, p) {
        return Err(f);
    }
    match method {
        "profile" => Ok((
            json!({"ID": "1", "ADMIN": true, "NAME": "Admin"}),
            None,
            None,
        )),
        "crm.status.list" => {
            let entity = param(p, "filter")
                .and_then(|f| text(param(f, "ENTITY_ID")))
                .unwrap_or_default();
            page(directory(&entity), p)
        }
        "crm.deal.fields" | "crm.lead.fields" => {
            let mut fields = json!({
                "ID": {"type": "integer", "isReadOnly": true},
                "TITLE": {"type": "string"}, "OPPORTUNITY": {"type": "double"},
                "CURRENCY_ID": {"type": "crm_currency"}, "SOURCE_ID": {"type": "crm_status"},
                "SOURCE_DESCRIPTION": {"type": "string"}, "ORIGINATOR_ID": {"type": "string"},
                "ORIGIN_ID": {"type": "string"}, "UTM_SOURCE": {"type": "string"},
                "ASSIGNED_BY_ID": {"type": "user"}, "CONTACT_ID": {"type": "crm_contact"},
            });
            fields[BOOKING_FIELD] =
                json!({"type": "string", "isMultiple": false, "title": BOOKING_FIELD});
            if method == "crm.deal.fields" {
                fields["STAGE_ID"] = json!({"type": "crm_status"});
                fields["CATEGORY_ID"] = json!({"type": "crm_category"});
            } else {
                fields["STATUS_ID"] = json!({"type": "crm_status"});
            }
            Ok((fields, None, None))
        }
        "crm.duplicate.findbycomm" => findbycomm(s, p),
        "crm.contact.add" => add_entity(s, "contact", p),
        "crm.deal.add" => add_entity(s, "deal", p),
        "crm.lead.add" => add_entity(s, "lead", p),
        "crm.contact.list" => list_entities(&s.contacts, p),
        "crm.deal.list" => list_entities(&s.deals, p),
        "crm.lead.list" => list_entities(&s.leads, p),
        "crm.contact.get" => get_entity(&s.contacts, p),
        "crm.deal.get" => get_entity(&s.deals, p),
        "crm.lead.get" => get_entity(&s.leads, p),
        "crm.contact.update" => update_contact(s, p),
        "crm.deal.update" => update_entity(&mut s.deals, p),
        "crm.lead.update" => update_entity(&mut s.leads, p),
        "crm.timeline.comment.add" => add_comment(s, p),
        "crm.timeline.comment.list" => {
            let filter = param(p, "filter");
            let items: Vec<Value> = s
                .comments
                .iter()
                .filter(|c| matches_filter(c, filter))
                .map(|c| select(c, p))
                .collect();
            page(items, p)
        }
        "crm.activity.todo.add" => add_todo(s, p),
        "tasks.task.add" => add_task(s, p),
        "crm.activity.list" => {
            // Activities as crm.activity.list shows them, to-dos included.
            let items: Vec<Value> = s
                .activities
                .iter()
                .map(|a| {
                    json!({
                        "ID": text(a.get("id")),
                        "OWNER_TYPE_ID": text(a.get("ownerTypeId")),
                        "OWNER_ID": text(a.get("ownerId")),
                        "SUBJECT": a.get("title").cloned().unwrap_or(Value::Null),
                        "DESCRIPTION": a.get("description").cloned().unwrap_or(Value::Null),
                        "PROVIDER_ID": "CRM_TODO",
                    })
                })
                .filter(|a| matches_filter(a, param(p, "filter")))
                .map(|a| select(&a, p))
                .collect();
            page(items, p)
        }
        "tasks.task.list" => {
            let binding = param(p, "filter").and_then(|f| text(param(f, "UF_CRM_TASK")));
            let items: Vec<Value> = s
                .tasks
                .iter()
                .filter(|t| {
                    binding.as_ref().is_none_or(|b| {
                        t["UF_CRM_TASK"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|v| text(Some(v)).as_ref() == Some(b)))
                    })
                })
                .map(|t| json!({"id": t["ID"], "title": t["TITLE"]}))
                .collect();
            Ok((json!({"tasks": items}), None, None))
        }
        _ => Err(err(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")),
    }
}

fn findbycomm(s: &Inner, p: &Value) -> Outcome {
    let Some(kind) = text(p.get("type")) else {
        return Err(err(400, "", "Parameter 'type' is required."));
    };
    if kind != "PHONE" && kind != "EMAIL" {
        return Err(err(400, "", "Communication type is not defined"));
    }
    let Some(values) = p.get("values").and_then(|v| v.as_array()) else {
        return Err(err(400, "", "Communication values is not defined"));
    };
    if values.len() > 20 {
        return Err(err(400, "", "Too many communication values"));
    }
    let wanted: Vec<String> = values
        .iter()
        .filter_map(|v| text(Some(v)))
        .map(|v| {
            if kind == "PHONE" {
                digits_without_extension(&v)
            } else {
                v.to_lowercase()
            }
        })
        .filter(|v| !v.is_empty())
        .collect();
    let entity = text(p.get("entity_type")).unwrap_or_else(|| "CONTACT".into());
    let pool = match entity.as_str() {
        "LEAD" => &s.leads,
        _ => &s.contacts,
    };
    let ids: Vec<i64> = pool
        .iter()
        .filter(|(_, c)| {
            c.get(&kind)
                .and_then(|m| m.as_array())
                .is_some_and(|items| {
                    items.iter().any(|m| {
                        let v = text(m.get("VALUE")).unwrap_or_default();
                        let v = if kind == "PHONE" {
                            digits_without_extension(&v)
                        } else {
                            v.to_lowercase()
                        };
                        wanted.contains(&v)
                    })
                })
        })
        .map(|(id, _)| *id)
        .collect();
    if ids.is_empty() {
        // PHP serialises the empty map as a list.
        return Ok((json!([]), None, None));
    }
    Ok((json!({ entity: ids }), None, None))
}

fn multifield(kind: &str, v: &Value, next: &mut i64) -> Value {
    let items = match v {
        Value::Array(a) => a.clone(),
        Value::Object(m) => m.values().cloned().collect(),
        _ => vec![],
    };
    Value::Array(
        items
            .into_iter()
            .map(|m| {
                *next += 1;
                json!({"ID": next.to_string(), "TYPE_ID": kind,
                       "VALUE": text(m.get("VALUE")).unwrap_or_default(),
                       "VALUE_TYPE": text(m.get("VALUE_TYPE")).unwrap_or_else(|| "WORK".into())})
            })
            .collect(),
    )
}

fn store_fields(
    s: &mut Inner,
    entity: &str,
    fields: &Map<String, Value>,
    target: &mut Map<String, Value>,
) {
    for (k, v) in fields {
        match k.as_str() {
            "PHONE" | "EMAIL" | "WEB" | "IM" => {
                let mut next = s.next_id * 10;
                target.insert(k.clone(), multifield(k, v, &mut next));
            }
            // "An incorrect field in `fields` will be ignored": unknown user fields vanish.
            uf if uf.starts_with("UF_") && uf != BOOKING_FIELD && entity != "contact" => {}
            "OPPORTUNITY" => {
                let n: f64 = text(Some(v)).and_then(|t| t.parse().ok()).unwrap_or(0.0);
                target.insert(k.clone(), json!(format!("{n:.2}")));
            }
            // A `date` is written as YYYY-MM-DD and read back as a datetime in the portal's zone.
            "BIRTHDATE" => {
                let t = text(Some(v)).unwrap_or_default();
                let read = if t.len() == 10 {
                    format!("{t}T00:00:00+03:00")
                } else {
                    t
                };
                target.insert(k.clone(), json!(read));
            }
            _ => {
                // Reads give every scalar as a string.
                let value = match v {
                    Value::Number(n) => json!(n.to_string()),
                    other => other.clone(),
                };
                target.insert(k.clone(), value);
            }
        }
    }
}

fn add_entity(s: &mut Inner, entity: &str, p: &Value) -> Outcome {
    let Some(Value::Object(fields)) = param(p, "fields") else {
        return Err(fields_must_be_array());
    };
    let fields = fields.clone();
    let id = s.id();
    let mut item = Map::new();
    item.insert("ID".into(), json!(id.to_string()));
    store_fields(s, entity, &fields, &mut item);
    match entity {
        "deal" => {
            let category = int(item.get("CATEGORY_ID")).unwrap_or(0);
            let stages = directory(&stage_entity(category));
            if stages.is_empty() {
                return Err(err(400, "", "Category not found"));
            }
            let valid = text(item.get("STAGE_ID"))
                .is_some_and(|st| stages.iter().any(|s| s["STATUS_ID"] == st.as_str()));
            if !valid {
                // An unknown stage falls back to the funnel's first one.
                item.insert("STAGE_ID".into(), stages[0]["STATUS_ID"].clone());
            }
            item.insert("CATEGORY_ID".into(), json!(category.to_string()));
            s.deals.insert(id, Value::Object(item));
        }
        "lead" => {
            if !item.contains_key("STATUS_ID") {
                item.insert("STATUS_ID".into(), json!("NEW"));
            }
            s.leads.insert(id, Value::Object(item));
        }
        _ => {
            s.contacts.insert(id, Value::Object(item));
        }
    }
    Ok((json!(id), None, None))
}

fn list_entities(pool: &BTreeMap<i64, Value>, p: &Value) -> Outcome {
    let filter = param(p, "filter");
    let items: Vec<Value> = pool
        .values()
        .filter(|e| matches_filter(e, filter))
        .map(|e| select(e, p))
        .collect();
    page(items, p)
}

fn get_entity(pool: &BTreeMap<i64, Value>, p: &Value) -> Outcome {
    let Some(id) = int(param(p, "id")) else {
        return Err(err(400, "", "ID is not defined or invalid."));
    };
    pool.get(&id)
        .map(|e| (e.clone(), None, None))
        .ok_or_else(not_found)
}

fn update_entity(pool: &mut BTreeMap<i64, Value>, p: &Value) -> Outcome {
    let Some(id) = int(param(p, "id")) else {
        return Err(err(400, "", "ID is not defined or invalid."));
    };
    let Some(Value::Object(fields)) = param(p, "fields").cloned() else {
        return Err(fields_must_be_array());
    };
    let Some(Value::Object(item)) = pool.get_mut(&id) else {
        return Err(not_found());
    };
    for (k, v) in fields {
        let value = match v {
            Value::Number(n) => json!(n.to_string()),
            other => other,
        };
        item.insert(k, value);
    }
    Ok((json!(true), None, None))
}

/// `crm.contact.update`: scalars are replaced; in a multiple field a value with an `ID`
/// overwrites that value (or deletes it, with an empty `VALUE` or `DELETE = Y`), a value
/// without one is added, and values not mentioned stay.
fn update_contact(s: &mut Inner, p: &Value) -> Outcome {
    let Some(id) = int(param(p, "id")) else {
        return Err(err(400, "", "ID is not defined or invalid."));
    };
    let Some(Value::Object(fields)) = param(p, "fields").cloned() else {
        return Err(fields_must_be_array());
    };
    let Some(Value::Object(mut item)) = s.contacts.remove(&id) else {
        return Err(not_found());
    };
    for (k, v) in fields {
        match k.as_str() {
            "PHONE" | "EMAIL" | "WEB" | "IM" => {
                let mut held: Vec<Value> = item
                    .get(&k)
                    .and_then(|v| v.as_array())
                    .cloned()
                    .unwrap_or_default();
                let items = match v {
                    Value::Array(a) => a,
                    Value::Object(m) => m.into_iter().map(|(_, v)| v).collect(),
                    _ => vec![],
                };
                for m in items {
                    let value = text(m.get("VALUE")).unwrap_or_default();
                    match text(m.get("ID")) {
                        Some(vid) => {
                            let delete =
                                value.is_empty() || text(m.get("DELETE")).as_deref() == Some("Y");
                            if delete {
                                held.retain(|h| text(h.get("ID")).as_deref() != Some(vid.as_str()));
                            } else if let Some(h) = held
                                .iter_mut()
                                .find(|h| text(h.get("ID")).as_deref() == Some(vid.as_str()))
                            {
                                h["VALUE"] = json!(value);
                            }
                        }
                        None if !value.is_empty() => {
                            let n = s.id() * 10;
                            held.push(json!({"ID": n.to_string(), "TYPE_ID": k, "VALUE": value,
                                             "VALUE_TYPE": text(m.get("VALUE_TYPE")).unwrap_or_else(|| "WORK".into())}));
                        }
                        None => {}
                    }
                }
                item.insert(k, Value::Array(held));
            }
            _ => {
                let value = match v {
                    Value::Number(n) => json!(n.to_string()),
                    other => other,
                };
                item.insert(k, value);
            }
        }
    }
    s.contacts.insert(id, Value::Object(item));
    Ok((json!(true), None, None))
}

fn owner_exists(s: &Inner, kind: &str, id: i64) -> bool {
    match kind {
        "deal" => s.deals.contains_key(&id),
        "lead" => s.leads.contains_key(&id),
        "contact" => s.contacts.contains_key(&id),
        _ => false,
    }
}

fn add_comment(s: &mut Inner, p: &Value) -> Outcome {
    // Since crm 23.100.0 only the lower-case `fields` key is accepted.
    let Some(Value::Object(fields)) = p.get("fields") else {
        return Err(fields_must_be_array());
    };
    let kind = text(fields.get("ENTITY_TYPE"))
        .unwrap_or_default()
        .to_lowercase();
    let Some(owner) = int(fields.get("ENTITY_ID")) else {
        return Err(err(400, "INVALID_ARG_VALUE", "ENTITY_ID is required"));
    };
    let comment = text(fields.get("COMMENT")).unwrap_or_default();
    if comment.trim().is_empty() {
        return Err(err(400, "INVALID_ARG_VALUE", "Comment is empty"));
    }
    if !owner_exists(s, &kind, owner) {
        return Err((400, contract_json("error-not-found.response.json")));
    }
    let id = s.id();
    s.comments.push(json!({"ID": id.to_string(), "ENTITY_TYPE": kind, "ENTITY_ID": owner.to_string(),
                           "COMMENT": comment, "FILES": fields.get("FILES").cloned().unwrap_or(Value::Null)}));
    Ok((json!(id), None, None))
}

fn add_todo(s: &mut Inner, p: &Value) -> Outcome {
    let (Some(owner_type), Some(owner), Some(deadline)) = (
        int(p.get("ownerTypeId")),
        int(p.get("ownerId")),
        text(p.get("deadline")),
    ) else {
        return Err(err(
            400,
            "100",
            "Required parameters ownerTypeId, ownerId, deadline",
        ));
    };
    let parsed = chrono::DateTime::parse_from_rfc3339(&deadline).is_ok()
        || chrono::NaiveDateTime::parse_from_str(&deadline, "%Y-%m-%dT%H:%M:%S").is_ok();
    if !parsed {
        return Err(err(400, "WRONG_DATETIME_FORMAT", "Wrong datetime format"));
    }
    let kind = match owner_type {
        1 => "lead",
        2 => "deal",
        3 => "contact",
        _ => "",
    };
    if !owner_exists(s, kind, owner) {
        return Err(err(400, "OWNER_NOT_FOUND", "Owner not found"));
    }
    let id = s.id();
    let mut todo = p.clone();
    todo["id"] = json!(id);
    s.activities.push(todo);
    Ok((json!({"id": id}), None, None))
}

fn add_task(s: &mut Inner, p: &Value) -> Outcome {
    let Some(Value::Object(fields)) = param(p, "fields") else {
        return Err(fields_must_be_array());
    };
    let (Some(title), Some(responsible)) =
        (text(fields.get("TITLE")), int(fields.get("RESPONSIBLE_ID")))
    else {
        return Err(err(400, "", "TITLE and RESPONSIBLE_ID are required"));
    };
    let id = s.id();
    let mut task = Value::Object(fields.clone());
    task["ID"] = json!(id.to_string());
    s.tasks.push(task);
    Ok((
        json!({"task": {"id": id.to_string(), "title": title, "responsibleId": responsible.to_string(), "status": "2"}}),
        None,
        None,
    ))
}

fn batch(s: &mut Inner, p: &Value, order: &[String]) -> Outcome {
    let halt = int(param(p, "halt")).unwrap_or(0) != 0;
    let commands: Vec<(String, String)> = match param(p, "cmd") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), text(Some(v)).unwrap_or_default()))
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), text(Some(v)).unwrap_or_default()))
            .collect(),
        _ => return Err(err(400, "", "Parameter 'cmd' is required")),
    };
    let mut commands = commands;
    commands.sort_by_key(|(name, _)| order.iter().position(|o| o == name).unwrap_or(usize::MAX));
    s.batch_sizes.push(commands.len());
    if commands.len() > 50 {
        return Err(err(
            400,
            "ERROR_BATCH_LENGTH_EXCEEDED",
            "Max batch length exceeded",
        ));
    }
    let mut results = Map::new();
    let mut errors = Map::new();
    let mut totals = Map::new();
    let mut nexts = Map::new();
    for (name, command) in commands {
        let (method, query) = command.split_once('?').unwrap_or((command.as_str(), ""));
        let method = method.trim_end_matches(".json");
        let outcome = if method == "batch" {
            Err(err(
                405,
                "ERROR_BATCH_METHOD_NOT_ALLOWED",
                "Method is not allowed for batch usage",
            ))
        } else {
            s.batched.push(method.to_string());
            dispatch(s, method, &php_parse(query.as_bytes()))
        };
        match outcome {
            Ok((result, total, next)) => {
                if let Some(t) = total {
                    totals.insert(name.clone(), json!(t));
                }
                if let Some(n) = next {
                    nexts.insert(name.clone(), json!(n));
                }
                results.insert(name, result);
            }
            Err((_, body)) => {
                errors.insert(name, body);
                if halt {
                    break;
                }
            }
        }
    }
    // PHP: an empty map serialises as `[]`, sequential keys as a list.
    let php = |m: Map<String, Value>| {
        if m.is_empty() {
            json!([])
        } else {
            arrays(Value::Object(m))
        }
    };
    Ok((
        json!({"result": php(results), "result_error": php(errors), "result_total": php(totals),
               "result_next": php(nexts), "result_time": {}}),
        None,
        None,
    ))
}
