//! A fake amoCRM account over real HTTP (axum on 127.0.0.1:0), reproducing the documented v4
//! contract (../shared/reference/crm-apis.md §1.12): hal+json answers with `_embedded`,
//! problem+json errors, 204 on empty results, 400 `validation-errors`, 429 above 7 requests
//! in any sliding second, single-use refresh tokens, 401 for bad or expired access tokens,
//! 402 for an unpaid account. State lives in memory and is open to inspection.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const PIPELINE_ID: i64 = 3177727;
pub const STATUS_NEW: i64 = 29352079;
pub const STATUS_CONFIRMED: i64 = 29352082;
pub const WON: i64 = 142;
pub const LOST: i64 = 143;
/// Text custom fields of leads this account has.
pub const FIELD_BOOKING_ID: i64 = 900001;
pub const FIELD_START_PAYLOAD: i64 = 900002;
/// The first id the account gives a field created through the API.
pub const FIRST_NEW_FIELD_ID: i64 = 950001;
/// amoCRM lists custom fields 50 to a page ("Метод возвращает до 50 полей за один запрос").
pub const FIELDS_PER_PAGE: usize = 50;
pub const CLIENT_ID: &str = "xxxx";
pub const CLIENT_SECRET: &str = "xxxx";
pub const REDIRECT_URI: &str = "https://test.test";
pub const LONG_LIVED_TOKEN: &str = "long-lived-token";
/// The documented ceiling: more than this in any sliding second gets 429.
pub const MAX_RPS: usize = 7;

const PHONE_ENUMS: &[&str] = &["WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"];
const EMAIL_ENUMS: &[&str] = &["WORK", "PRIV", "OTHER"];
/// The tracking fields a lead has in a typical account (type `tracking_data`, by code).
pub const TRACKING_CODES: &[&str] = &[
    "UTM_SOURCE",
    "UTM_MEDIUM",
    "UTM_CAMPAIGN",
    "UTM_CONTENT",
    "UTM_TERM",
    "UTM_REFERRER",
];

/// The account's lead fields: two text fields of its own, the tracking fields, and enough
/// ordinary fields of a busy account that the list takes two pages.
fn default_lead_fields() -> Vec<Value> {
    let mut fields = vec![
        lead_field(FIELD_BOOKING_ID, "ID записи", "text", None),
        lead_field(FIELD_START_PAYLOAD, "Откуда пришёл", "text", None),
    ];
    for (k, code) in TRACKING_CODES.iter().enumerate() {
        fields.push(lead_field(
            800000 + k as i64,
            code,
            "tracking_data",
            Some(code),
        ));
    }
    for k in 0..48 {
        fields.push(lead_field(700000 + k, &format!("Поле {k}"), "text", None));
    }
    fields
}

fn lead_field(id: i64, name: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"id": id, "name": name, "type": kind, "account_id": 28805383, "code": code,
           "sort": 500 + id % 1000, "is_api_only": false, "enums": null, "group_id": null,
           "required_statuses": [], "is_deletable": true, "is_predefined": false,
           "entity_type": "leads", "remind": null,
           "_links": {"self": {"href": format!("/api/v4/leads/custom_fields/{id}")}}})
}

/// One fault, fired once by the first request that matches it.
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: String,
    pub path: String,
    /// Matches only a request whose body contains this text (a client's name, say).
    pub needle: Option<String>,
    pub kind: FaultKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Refused with this status before anything is written.
    Before(u16),
    /// Written, then answered with this status instead of the result.
    AfterStatus(u16),
    /// Written, then the connection is cut while the answer is on its way.
    AfterDrop,
    /// Written, then the answer is held this many milliseconds (past the client's timeout).
    AfterDelay(u64),
}

/// Contracts live beside the repository; tests must not silently skip when they are absent.
pub fn contracts_dir() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/contracts"
    ));
    assert!(
        dir.join("amocrm").is_dir(),
        "contracts directory {} is missing: the amoCRM fake is checked against it",
        dir.display()
    );
    dir
}

pub fn contract(name: &str) -> Vec<u8> {
    let path = contracts_dir().join("amocrm").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[derive(Default)]
struct Inner {
    next_id: i64,
    contacts: BTreeMap<i64, Value>,
    leads: BTreeMap<i64, Value>,
    notes: Vec<Value>,
    tasks: Vec<Value>,
    webhooks: Vec<Value>,
    chats: Vec<Value>,
    /// Access token → expired?
    access: HashMap<String, bool>,
    /// Refresh token → already used?
    refresh: HashMap<String, bool>,
    codes: HashSet<String>,
    refreshes: usize,
    last_pair: Option<(String, String)>,
    /// When set, API calls bearing a token issued by a refresh never get an answer: the
    /// client "crashes" right after rotating.
    hang_new_tokens: bool,
    hung: usize,
    issued_by_refresh: HashSet<String>,
    arrivals: VecDeque<Instant>,
    /// Every arrival, kept for [`FakeAmo::shortest_span`].
    arrived: Vec<Instant>,
    max_per_second: usize,
    throttled: usize,
    injected: VecDeque<(u16, Option<u64>)>,
    /// Requests allowed in a sliding second; [`MAX_RPS`] unless a load test raises it.
    max_rps: usize,
    unpaid: bool,
    /// Every call is answered 503 (an outage) until switched back.
    down: bool,
    requests: Vec<(String, String)>,
    lead_fields: Vec<Value>,
    faults: Vec<Fault>,
    /// Faults that fired, in order.
    fired: Vec<Fault>,
}

#[derive(Clone)]
pub struct FakeAmo {
    pub base_url: url::Url,
    inner: Arc<Mutex<Inner>>,
}

impl FakeAmo {
    pub async fn start() -> FakeAmo {
        let inner = Arc::new(Mutex::new(Inner {
            next_id: 1000,
            max_rps: MAX_RPS,
            lead_fields: default_lead_fields(),
            ..Inner::default()
        }));
        inner
            .lock()
            .unwrap()
            .access
            .insert(LONG_LIVED_TOKEN.into(), false);
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake amoCRM");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("fake amoCRM serves");
        });
        FakeAmo {
            base_url: url::Url::parse(&format!("http://{addr}")).expect("url"),
            inner,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ------------------------------------------------------------- setup
    pub fn issue_code(&self, code: &str) {
        self.lock().codes.insert(code.into());
    }
    pub fn add_refresh_token(&self, token: &str) {
        self.lock().refresh.insert(token.into(), false);
    }
    pub fn expire_access_tokens(&self) {
        for (token, expired) in self.lock().access.iter_mut() {
            if token != LONG_LIVED_TOKEN {
                *expired = true;
            }
        }
    }
    pub fn revoke_refresh_tokens(&self) {
        for used in self.lock().refresh.values_mut() {
            *used = true;
        }
    }
    pub fn hang_new_tokens(&self, on: bool) {
        self.lock().hang_new_tokens = on;
    }
    /// The first request `method path` (whose body contains `needle`, when given) meets this
    /// fault, once.
    pub fn fault(&self, method: &str, path: &str, needle: Option<&str>, kind: FaultKind) {
        self.lock().faults.push(Fault {
            method: method.into(),
            path: path.into(),
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
    /// The account loses the lead field with this code (a tracking field nobody set up).
    pub fn remove_lead_field_code(&self, code: &str) {
        self.lock()
            .lead_fields
            .retain(|f| f["code"].as_str() != Some(code));
    }
    /// A lead field added in the account's settings.
    pub fn add_lead_field(&self, id: i64, name: &str, kind: &str) {
        self.lock()
            .lead_fields
            .push(lead_field(id, name, kind, None));
    }
    pub fn lead_fields(&self) -> Vec<Value> {
        self.lock().lead_fields.clone()
    }
    /// The id of the lead field with this name, if the account has one.
    pub fn lead_field_named(&self, name: &str) -> Option<i64> {
        self.lock()
            .lead_fields
            .iter()
            .filter(|f| f["name"].as_str() == Some(name))
            .filter_map(|f| f["id"].as_i64())
            .min()
    }
    /// The next API answers are these statuses (with a `Retry-After` when given).
    pub fn inject(&self, status: u16, retry_after: Option<u64>) {
        self.lock().injected.push_back((status, retry_after));
    }
    /// A load test's fake account that takes more than the documented 7 requests a second.
    pub fn set_max_rps(&self, n: usize) {
        self.lock().max_rps = n;
    }
    pub fn set_unpaid(&self, unpaid: bool) {
        self.lock().unpaid = unpaid;
    }
    /// An outage: every call answered 503 while `down`.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }
    pub fn insert_contact(&self, id: i64, contact: Value) {
        let mut c = contact;
        c["id"] = json!(id);
        self.lock().contacts.insert(id, c);
    }
    /// A contact as a manager typed it by hand.
    pub fn insert_contact_with_phone(&self, name: &str, phone: &str) -> i64 {
        let mut s = self.lock();
        s.next_id += 1;
        let id = s.next_id;
        s.contacts.insert(
            id,
            json!({"id": id, "name": name, "custom_fields_values": [
                {"field_id": 66192, "field_code": "PHONE", "field_name": "Телефон", "field_type": "multitext",
                 "values": [{"value": phone, "enum_id": 1, "enum": "WORK"}]}]}),
        );
        id
    }

    // ------------------------------------------------------------- inspection
    pub fn contacts(&self) -> Vec<Value> {
        self.lock().contacts.values().cloned().collect()
    }
    pub fn leads(&self) -> Vec<Value> {
        self.lock().leads.values().cloned().collect()
    }
    pub fn lead(&self, id: &str) -> Value {
        let id: i64 = id.parse().expect("numeric lead id");
        self.lock().leads.get(&id).cloned().expect("lead exists")
    }
    /// A manager drags a lead to another stage in the account.
    pub fn move_by_manager(&self, lead_id: &str, status_id: i64) -> i64 {
        let id: i64 = lead_id.parse().expect("numeric lead id");
        let mut s = self.lock();
        let lead = s.leads.get_mut(&id).expect("lead exists");
        let old = lead["status_id"].as_i64().unwrap_or_default();
        lead["status_id"] = json!(status_id);
        old
    }

    /// The webhook amoCRM POSTs when a lead changes stage: the contract's form with the
    /// lead's id, stages and pipeline put in, every other field as the contract has it.
    pub fn status_webhook_form(&self, lead_id: &str, status_id: i64, old_status_id: i64) -> String {
        let body = contract("webhook-status-lead.form.txt");
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(&body) {
            let v = match k.as_ref() {
                "leads[status][0][id]" => lead_id.to_string(),
                "leads[status][0][status_id]" => status_id.to_string(),
                "leads[status][0][old_status_id]" => old_status_id.to_string(),
                "leads[status][0][pipeline_id]" => PIPELINE_ID.to_string(),
                _ => v.into_owned(),
            };
            out.append_pair(&k, &v);
        }
        out.finish()
    }

    pub fn notes_of(&self, lead_id: &str) -> Vec<Value> {
        let id: i64 = lead_id.parse().expect("numeric lead id");
        self.lock()
            .notes
            .iter()
            .filter(|n| n["entity_id"] == json!(id))
            .cloned()
            .collect()
    }
    pub fn tasks(&self) -> Vec<Value> {
        self.lock().tasks.clone()
    }
    pub fn webhooks(&self) -> Vec<Value> {
        self.lock().webhooks.clone()
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
    /// Most requests seen in any sliding second.
    pub fn max_per_second(&self) -> usize {
        self.lock().max_per_second
    }
    pub fn throttled(&self) -> usize {
        self.lock().throttled
    }
    /// The shortest time in which `n` requests in a row arrived: a client keeping to the
    /// limit never has `MAX_RPS + 1` of them within a second, and this says by how much.
    pub fn shortest_span(&self, n: usize) -> Option<Duration> {
        self.lock()
            .arrived
            .windows(n.max(1))
            .map(|w| w[w.len() - 1].duration_since(w[0]))
            .min()
    }
    /// `(method, path)` of every request, in arrival order.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.lock().requests.clone()
    }
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(m, p)| m == method && p == path)
            .count()
    }
}

// ------------------------------------------------------------------ responses

fn hal(status: StatusCode, body: Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/hal+json"),
    );
    r
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let body = json!({
        "title": status.canonical_reason().unwrap_or(""),
        "type": format!("https://httpstatus.es/{}", status.as_u16()),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// One validation complaint: (request_id, code, path, detail).
type Complaint = (String, &'static str, String, &'static str);

fn validation(errors: Vec<Complaint>) -> Response {
    let mut by_request: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (rid, code, path, detail) in errors {
        by_request
            .entry(rid)
            .or_default()
            .push(json!({"code": code, "path": path, "detail": detail}));
    }
    let items: Vec<Value> = by_request
        .into_iter()
        .map(|(rid, errors)| json!({"request_id": rid, "errors": errors}))
        .collect();
    let body = json!({
        "validation-errors": items,
        "title": "Bad Request",
        "type": "https://httpstatus.es/400",
        "status": 400,
        "detail": "Request validation failed",
    });
    let mut r = (StatusCode::BAD_REQUEST, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

const MISSING: &str = "This field is missing.";
const BAD_CHOICE: &str = "The value you selected is not a valid choice.";
const BAD_TYPE: &str = "This value should be of type int.";

// ------------------------------------------------------------------ dispatch

type Shared = Arc<Mutex<Inner>>;

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let (hang, after) = {
        let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
        s.requests.push((method.to_string(), path.clone()));
        // Rate limit: every arrival counts, rejected or not, as amoCRM counts them.
        let now = Instant::now();
        s.arrivals.push_back(now);
        s.arrived.push(now);
        while s
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            s.arrivals.pop_front();
        }
        let in_window = s.arrivals.len();
        s.max_per_second = s.max_per_second.max(in_window);
        if in_window > s.max_rps {
            s.throttled += 1;
            let mut r = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        if s.down {
            return problem(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable");
        }
        if path == "/oauth2/access_token" && method == Method::POST {
            return token_endpoint(&mut s, &body);
        }
        if !path.starts_with("/api/v4/") {
            return problem(StatusCode::NOT_FOUND, "Not found");
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        match token.as_ref().and_then(|t| s.access.get(t)) {
            Some(false) => {}
            Some(true) => return problem(StatusCode::UNAUTHORIZED, "Token has expired"),
            None => return problem(StatusCode::UNAUTHORIZED, "Unauthorized"),
        }
        let token = token.unwrap_or_default();
        if s.hang_new_tokens && s.issued_by_refresh.contains(&token) {
            s.hung += 1;
            (true, None)
        } else {
            if let Some((status, retry)) = s.injected.pop_front() {
                let code =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut r = if status == 429 {
                    (code, "Too Many Requests").into_response()
                } else {
                    problem(code, "Injected failure")
                };
                if let Some(secs) = retry {
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                return r;
            }
            if s.unpaid {
                return problem(StatusCode::PAYMENT_REQUIRED, "Account is not paid");
            }
            let text = String::from_utf8_lossy(&body);
            let matching = s.faults.iter().position(|f| {
                f.method == method.as_str()
                    && f.path == path
                    && f.needle.as_ref().is_none_or(|n| text.contains(n.as_str()))
            });
            let fault = matching.map(|i| s.faults.remove(i));
            if let Some(f) = &fault {
                s.fired.push(f.clone());
                if let FaultKind::Before(status) = f.kind {
                    let code =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return problem(code, "Injected failure");
                }
            }
            let segments: Vec<&str> = path.trim_start_matches("/api/v4/").split('/').collect();
            let raw_query = uri.query().unwrap_or("");
            let answer = api(&mut s, &method, &segments, &query, raw_query, &body);
            match fault.map(|f| f.kind) {
                Some(FaultKind::AfterStatus(status)) => {
                    let code =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return problem(code, "Injected failure after the write");
                }
                Some(FaultKind::AfterDrop) => return cut_answer(answer),
                Some(FaultKind::AfterDelay(ms)) => (false, Some((answer, ms))),
                _ => return answer,
            }
        }
    };
    if let Some((answer, ms)) = after {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return answer;
    }
    if hang {
        std::future::pending::<()>().await;
    }
    unreachable!("a hung request never answers")
}

/// The answer's status and headers go out, then the connection breaks before its body: what a
/// client sees when the network drops an answer midway.
fn cut_answer(answer: Response) -> Response {
    let (parts, _) = answer.into_parts();
    let broken = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("connection cut"))
    });
    Response::from_parts(parts, axum::body::Body::from_stream(broken))
}

fn token_endpoint(s: &mut Inner, body: &[u8]) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return problem(StatusCode::BAD_REQUEST, "Body must be JSON");
    };
    let str_of = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("");
    if str_of("client_id") != CLIENT_ID
        || str_of("client_secret") != CLIENT_SECRET
        || str_of("redirect_uri") != REDIRECT_URI
    {
        return token_refused("Client authentication failed");
    }
    match str_of("grant_type") {
        "authorization_code" => {
            if !s.codes.remove(str_of("code")) {
                return token_refused("Authorization code has expired");
            }
        }
        "refresh_token" => {
            let token = str_of("refresh_token");
            match s.refresh.get_mut(token) {
                Some(used) if !*used => *used = true,
                _ => return token_refused("Token has been revoked"),
            }
            s.refreshes += 1;
        }
        _ => return token_refused("The authorization grant type is not supported"),
    }
    s.next_id += 1;
    let access = format!("access-{}", s.next_id);
    let refresh = format!("refresh-{}", s.next_id);
    s.access.insert(access.clone(), false);
    s.refresh.insert(refresh.clone(), false);
    if str_of("grant_type") == "refresh_token" {
        s.issued_by_refresh.insert(access.clone());
    }
    s.last_pair = Some((access.clone(), refresh.clone()));
    let mut r = (
        StatusCode::OK,
        json!({
            "token_type": "Bearer",
            "expires_in": 86400,
            "access_token": access,
            "refresh_token": refresh,
        })
        .to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Observed amoCRM behaviour: a plain 400 with hint/title/detail for any refused grant.
fn token_refused(hint: &str) -> Response {
    let body = json!({"hint": hint, "title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400, "detail": hint});
    (StatusCode::BAD_REQUEST, body.to_string()).into_response()
}

fn api(
    s: &mut Inner,
    method: &Method,
    seg: &[&str],
    query: &HashMap<String, String>,
    raw_query: &str,
    body: &[u8],
) -> Response {
    let json_body = || serde_json::from_slice::<Value>(body);
    match (method.as_str(), seg) {
        ("GET", ["account"]) => hal(
            StatusCode::OK,
            json!({"id": 28805383, "name": "Салон", "subdomain": "example", "currency": "RUB", "_links": {"self": {"href": "/api/v4/account"}}}),
        ),
        ("GET", ["leads", "pipelines", id]) => match id.parse::<i64>() {
            Ok(PIPELINE_ID) => hal(StatusCode::OK, pipeline()),
            _ => no_content(),
        },
        // Every pipeline (at most 50 in an account) on one page, each with its statuses.
        ("GET", ["leads", "pipelines"]) => hal(
            StatusCode::OK,
            json!({"_total_items": 2, "_links": {"self": {"href": "/api/v4/leads/pipelines"}},
                   "_embedded": {"pipelines": [pipeline(),
                {"id": OTHER_PIPELINE_ID, "name": "Опт", "sort": 2, "is_main": false, "_embedded": {"statuses": [
                    {"id": 142, "name": "Успешно реализовано", "pipeline_id": OTHER_PIPELINE_ID},
                    {"id": 143, "name": "Закрыто и не реализовано", "pipeline_id": OTHER_PIPELINE_ID}]}}]}}),
        ),
        ("GET", ["contacts"]) => {
            let q = query.get("query").cloned().unwrap_or_default();
            // Documented paging: `limit` up to 250 (default 50), `page` from 1, `_links.next`
            // while more remain; ids ascending (the map's order).
            let limit: usize = match query.get("limit").map(|l| l.parse::<usize>()) {
                None => 50,
                Some(Ok(l)) if (1..=250).contains(&l) => l,
                Some(_) => return problem(StatusCode::BAD_REQUEST, "limit must be 1..250"),
            };
            let page_no: usize = match query.get("page").map(|p| p.parse::<usize>()) {
                None => 1,
                Some(Ok(p)) if p >= 1 => p,
                Some(_) => {
                    return problem(StatusCode::BAD_REQUEST, "page must be a positive integer");
                }
            };
            let found: Vec<Value> = s
                .contacts
                .values()
                .filter(|c| matches_query(c, &q))
                .cloned()
                .collect();
            let total = found.len();
            let items: Vec<Value> = found
                .into_iter()
                .skip((page_no - 1) * limit)
                .take(limit)
                .collect();
            let more = page_no * limit < total;
            paged("contacts", items, page_no, limit, more)
        }
        ("POST", ["contacts"]) => match json_body() {
            Ok(Value::Array(items)) => add_contacts(s, items),
            _ => validation(vec![(
                "0".into(),
                "InvalidType",
                "".into(),
                "This value should be of type array.",
            )]),
        },
        ("PATCH", ["contacts", id]) => {
            let Ok(id) = id.parse::<i64>() else {
                return problem(StatusCode::NOT_FOUND, "Not found");
            };
            let Ok(item) = json_body() else {
                return problem(StatusCode::BAD_REQUEST, "Body must be JSON");
            };
            patch_contacts(s, vec![with_id(item, id)])
        }
        ("PATCH", ["contacts"]) => match json_body() {
            Ok(Value::Array(items)) => patch_contacts(s, items),
            _ => problem(StatusCode::BAD_REQUEST, "Body must be an array"),
        },
        ("POST", ["contacts", "chats"]) => match json_body() {
            Ok(Value::Array(items)) => {
                let mut errors = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    for key in ["contact_id", "chat_id"] {
                        if item.get(key).is_none() {
                            errors.push((i.to_string(), "FieldMissing", key.to_string(), MISSING));
                        }
                    }
                }
                if !errors.is_empty() {
                    return validation(errors);
                }
                s.chats.extend(items.iter().cloned());
                hal(
                    StatusCode::OK,
                    json!({"_total_items": items.len(), "_embedded": {"chats": items}}),
                )
            }
            _ => problem(StatusCode::BAD_REQUEST, "Body must be an array"),
        },
        ("GET", ["leads"]) => {
            let q = query.get("query").cloned().unwrap_or_default();
            // `filter[id][]=1&filter[id][]=2` (or `filter[id]=1`): a list, so read it from
            // the raw query, where repeated keys survive.
            let ids: Vec<String> = url::form_urlencoded::parse(raw_query.as_bytes())
                .filter(|(k, _)| k == "filter[id][]" || k == "filter[id]")
                .map(|(_, v)| v.into_owned())
                .collect();
            let found: Vec<Value> = s
                .leads
                .values()
                .filter(|l| matches_query(l, &q))
                .filter(|l| ids.is_empty() || ids.contains(&l["id"].to_string()))
                .cloned()
                .collect();
            page("leads", found)
        }
        ("GET", ["leads", "custom_fields"]) => {
            // Documented paging: `page` from 1, up to 50 fields a request whatever `limit`
            // asks, `_links.next` while more remain; 204 past the end.
            let limit: usize = match query.get("limit").map(|l| l.parse::<usize>()) {
                None => FIELDS_PER_PAGE,
                Some(Ok(l)) if (1..=250).contains(&l) => l.min(FIELDS_PER_PAGE),
                Some(_) => return problem(StatusCode::BAD_REQUEST, "limit must be 1..250"),
            };
            let page_no: usize = match query.get("page").map(|p| p.parse::<usize>()) {
                None => 1,
                Some(Ok(p)) if p >= 1 => p,
                Some(_) => {
                    return problem(StatusCode::BAD_REQUEST, "page must be a positive integer");
                }
            };
            let total = s.lead_fields.len();
            let items: Vec<Value> = s
                .lead_fields
                .iter()
                .skip((page_no - 1) * limit)
                .take(limit)
                .cloned()
                .collect();
            if items.is_empty() {
                return no_content();
            }
            let href = |p: usize| format!("/api/v4/leads/custom_fields?limit={limit}&page={p}");
            let mut links = json!({"self": {"href": href(page_no)}});
            if page_no * limit < total {
                links["next"] = json!({"href": href(page_no + 1)});
            }
            hal(
                StatusCode::OK,
                json!({"_total_items": items.len(), "_page": page_no,
                       "_page_count": total.div_ceil(limit), "_links": links,
                       "_embedded": {"custom_fields": items}}),
            )
        }
        ("POST", ["leads", "custom_fields"]) => match json_body() {
            Ok(Value::Array(items)) => add_lead_fields(s, items),
            _ => validation(vec![(
                "0".into(),
                "InvalidType",
                "".into(),
                "This value should be of type array.",
            )]),
        },
        ("GET", ["leads", id]) => match id.parse::<i64>().ok().and_then(|id| s.leads.get(&id)) {
            Some(lead) => hal(StatusCode::OK, lead.clone()),
            None => no_content(),
        },
        ("POST", ["leads"]) => match json_body() {
            Ok(Value::Array(items)) => add_leads(s, items, false),
            _ => problem(StatusCode::BAD_REQUEST, "Body must be an array"),
        },
        ("POST", ["leads", "complex"]) => match json_body() {
            Ok(Value::Array(items)) => add_leads(s, items, true),
            _ => problem(StatusCode::BAD_REQUEST, "Body must be an array"),
        },
        ("PATCH", ["leads", id]) => {
            let Ok(id) = id.parse::<i64>() else {
                return problem(StatusCode::NOT_FOUND, "Not found");
            };
            let Ok(item) = json_body() else {
                return problem(StatusCode::BAD_REQUEST, "Body must be JSON");
            };
            patch_leads(s, vec![with_id(item, id)])
        }
        ("PATCH", ["leads"]) => match json_body() {
            Ok(Value::Array(items)) => patch_leads(s, items),
            _ => problem(StatusCode::BAD_REQUEST, "Body must be an array"),
        },
        ("POST", ["leads", "notes"]) => match json_body() {
            Ok(Value::Array(items)) => add_notes(s, items),
            _ => problem(StatusCode::BAD_REQUEST, "Body must be an array"),
        },
        ("GET", ["leads", id, "notes"]) => {
            let id: i64 = id.parse().unwrap_or(-1);
            let wanted = query.get("filter[note_type]");
            let found: Vec<Value> = s
                .notes
                .iter()
                .filter(|n| n["entity_id"] == json!(id))
                .filter(|n| wanted.is_none_or(|t| n["note_type"] == json!(t)))
                .cloned()
                .collect();
            page("notes", found)
        }
        ("GET", ["tasks"]) => {
            // `filter[entity_id]` needs `filter[entity_type]`; both may be lists.
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw_query.as_bytes())
                .into_owned()
                .collect();
            let values = |key: &str| -> Vec<String> {
                pairs
                    .iter()
                    .filter(|(k, _)| k == key || *k == format!("{key}[]"))
                    .map(|(_, v)| v.clone())
                    .collect()
            };
            let (types, ids) = (values("filter[entity_type]"), values("filter[entity_id]"));
            if !ids.is_empty() && types.is_empty() {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "filter[entity_id] needs filter[entity_type]",
                );
            }
            let found: Vec<Value> = s
                .tasks
                .iter()
                .filter(|t| {
                    types.is_empty() || types.iter().any(|ty| t["entity_type"] == json!(ty))
                })
                .filter(|t| ids.is_empty() || ids.contains(&t["entity_id"].to_string()))
                .cloned()
                .collect();
            page("tasks", found)
        }
        ("POST", ["tasks"]) => match json_body() {
            Ok(Value::Array(items)) => add_tasks(s, items),
            _ => problem(StatusCode::BAD_REQUEST, "Body must be an array"),
        },
        ("POST", ["webhooks"]) => {
            let Ok(req) = json_body() else {
                return problem(StatusCode::BAD_REQUEST, "Body must be JSON");
            };
            let mut errors = Vec::new();
            if !req.get("destination").is_some_and(Value::is_string) {
                errors.push(("0".into(), "FieldMissing", "destination".into(), MISSING));
            }
            if !req.get("settings").is_some_and(Value::is_array) {
                errors.push(("0".into(), "FieldMissing", "settings".into(), MISSING));
            }
            if !errors.is_empty() {
                return validation(errors);
            }
            // Re-subscribing a destination updates it instead of adding another.
            s.webhooks
                .retain(|w| w["destination"] != req["destination"]);
            s.next_id += 1;
            let hook = json!({"id": s.next_id, "destination": req["destination"], "settings": req["settings"],
                              "sort": req.get("sort").cloned().unwrap_or(json!(1)), "disabled": false,
                              "created_by": 504141, "created_at": 1575539157, "updated_at": 1575539157});
            s.webhooks.push(hook.clone());
            hal(StatusCode::OK, hook)
        }
        _ => problem(StatusCode::NOT_FOUND, "Not found"),
    }
}

fn paged(entity: &str, items: Vec<Value>, page_no: usize, limit: usize, more: bool) -> Response {
    if items.is_empty() {
        return no_content();
    }
    let mut links =
        json!({"self": {"href": format!("/api/v4/{entity}?limit={limit}&page={page_no}")}});
    if more {
        links["next"] =
            json!({"href": format!("/api/v4/{entity}?limit={limit}&page={}", page_no + 1)});
    }
    let mut embedded = serde_json::Map::new();
    embedded.insert(entity.into(), Value::Array(items));
    hal(
        StatusCode::OK,
        json!({"_page": page_no, "_links": links, "_embedded": embedded}),
    )
}

fn with_id(mut item: Value, id: i64) -> Value {
    item["id"] = json!(id);
    item
}

fn page(entity: &str, items: Vec<Value>) -> Response {
    if items.is_empty() {
        return no_content();
    }
    let mut embedded = serde_json::Map::new();
    embedded.insert(entity.into(), Value::Array(items));
    hal(
        StatusCode::OK,
        json!({"_page": 1, "_links": {"self": {"href": format!("/api/v4/{entity}")}}, "_embedded": embedded}),
    )
}

/// amoCRM's `query`: a search over the filled fields — the name and custom field values,
/// never tags ("Осуществляет поиск по заполненным полям сущности",
/// amocrm.ru/developers/content/crm_platform/leads-api). Digit-only queries match phone values
/// by digits, since phones are stored as typed.
fn matches_query(entity: &Value, q: &str) -> bool {
    if q.is_empty() {
        return true;
    }
    let q_lower = q.to_lowercase();
    let digits_only = q.chars().all(|c| c.is_ascii_digit());
    let text_hit = |v: &str| {
        if digits_only {
            let d: String = v.chars().filter(char::is_ascii_digit).collect();
            d.contains(q)
        } else {
            v.to_lowercase().contains(&q_lower)
        }
    };
    if entity["name"].as_str().is_some_and(text_hit) {
        return true;
    }
    entity["custom_fields_values"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["values"].as_array().into_iter().flatten())
        .any(|v| v["value"].as_str().is_some_and(text_hit))
}

/// Checks `custom_fields_values` against this account's fields.
fn check_fields(
    rid: &str,
    prefix: &str,
    cfv: &Value,
    ids: &HashMap<i64, Option<String>>,
    codes: &[String],
    errors: &mut Vec<Complaint>,
) {
    let Some(fields) = cfv.as_array() else {
        if !cfv.is_null() {
            errors.push((
                rid.into(),
                "InvalidType",
                format!("{prefix}custom_fields_values"),
                "This value should be of type array.",
            ));
        }
        return;
    };
    for (i, f) in fields.iter().enumerate() {
        let path = |k: &str| format!("{prefix}custom_fields_values.{i}.{k}");
        let code: Option<&str> = if let Some(id) = f.get("field_id") {
            match id.as_i64() {
                None => {
                    errors.push((rid.into(), "InvalidType", path("field_id"), BAD_TYPE));
                    continue;
                }
                Some(id) => match ids.get(&id) {
                    Some(code) => code.as_deref(),
                    None => {
                        errors.push((
                            rid.into(),
                            "NotSupportedChoice",
                            path("field_id"),
                            BAD_CHOICE,
                        ));
                        continue;
                    }
                },
            }
        } else if let Some(code) = f.get("field_code").and_then(Value::as_str) {
            match codes.iter().find(|c| c.as_str() == code) {
                Some(c) => Some(c.as_str()),
                None => {
                    errors.push((
                        rid.into(),
                        "NotSupportedChoice",
                        path("field_code"),
                        BAD_CHOICE,
                    ));
                    continue;
                }
            }
        } else {
            errors.push((rid.into(), "FieldMissing", path("field_id"), MISSING));
            continue;
        };
        let Some(values) = f.get("values").and_then(Value::as_array) else {
            errors.push((rid.into(), "FieldMissing", path("values"), MISSING));
            continue;
        };
        for (j, v) in values.iter().enumerate() {
            if v.get("value").is_none() {
                errors.push((
                    rid.into(),
                    "FieldMissing",
                    path(&format!("values.{j}.value")),
                    MISSING,
                ));
            }
            if let Some(e) = v.get("enum_code") {
                let allowed = match code {
                    Some("PHONE") => PHONE_ENUMS,
                    Some("EMAIL") => EMAIL_ENUMS,
                    _ => &[][..],
                };
                if !e.as_str().is_some_and(|e| allowed.contains(&e)) {
                    errors.push((
                        rid.into(),
                        "NotSupportedChoice",
                        path(&format!("values.{j}.enum_code")),
                        BAD_CHOICE,
                    ));
                }
            }
        }
    }
}

fn contact_fields() -> HashMap<i64, Option<String>> {
    HashMap::from([
        (66192, Some("PHONE".to_string())),
        (66194, Some("EMAIL".to_string())),
        (271316, None),
    ])
}

const CONTACT_CODES: [(&str, i64); 2] = [("PHONE", 66192), ("EMAIL", 66194)];

fn contact_code_ids() -> Vec<(String, i64)> {
    CONTACT_CODES
        .iter()
        .map(|(c, id)| (c.to_string(), *id))
        .collect()
}

fn contact_codes() -> Vec<String> {
    CONTACT_CODES.iter().map(|(c, _)| c.to_string()).collect()
}

/// Field id → its code, where it has one.
type FieldCodes = HashMap<i64, Option<String>>;

/// The account's lead fields: id → code, and the codes a request may name.
fn lead_fields(s: &Inner) -> (FieldCodes, Vec<(String, i64)>) {
    let ids = s
        .lead_fields
        .iter()
        .filter_map(|f| Some((f["id"].as_i64()?, f["code"].as_str().map(str::to_string))))
        .collect();
    let codes = s
        .lead_fields
        .iter()
        .filter_map(|f| Some((f["code"].as_str()?.to_string(), f["id"].as_i64()?)))
        .collect();
    (ids, codes)
}

/// `POST /api/v4/leads/custom_fields`: `type` and `name` required; the answer lists the new
/// fields under `_embedded.custom_fields`.
fn add_lead_fields(s: &mut Inner, items: Vec<Value>) -> Response {
    const TYPES: &[&str] = &[
        "text",
        "numeric",
        "checkbox",
        "select",
        "multiselect",
        "date",
        "url",
        "textarea",
        "radiobutton",
        "streetaddress",
        "smart_address",
        "birthday",
        "date_time",
        "price",
        "monetary",
    ];
    let mut errors = Vec::new();
    for (i, f) in items.iter().enumerate() {
        let rid = f["request_id"]
            .as_str()
            .map_or(i.to_string(), str::to_string);
        if f["name"].as_str().is_none_or(|n| n.trim().is_empty()) {
            errors.push((rid.clone(), "FieldMissing", "name".into(), MISSING));
        }
        match f["type"].as_str() {
            None => errors.push((rid, "FieldMissing", "type".into(), MISSING)),
            Some(t) if !TYPES.contains(&t) => {
                errors.push((rid, "NotSupportedChoice", "type".into(), BAD_CHOICE))
            }
            _ => {}
        }
    }
    if !errors.is_empty() {
        return validation(errors);
    }
    let mut out = Vec::new();
    for (i, f) in items.iter().enumerate() {
        let id = FIRST_NEW_FIELD_ID
            + s.lead_fields
                .iter()
                .filter(|f| f["id"].as_i64() >= Some(FIRST_NEW_FIELD_ID))
                .count() as i64;
        let mut field = lead_field(
            id,
            f["name"].as_str().unwrap_or_default(),
            f["type"].as_str().unwrap_or("text"),
            f["code"].as_str(),
        );
        field["request_id"] = f.get("request_id").cloned().unwrap_or(json!(i.to_string()));
        s.lead_fields.push(field.clone());
        if let Some(stored) = s.lead_fields.last_mut()
            && let Some(m) = stored.as_object_mut()
        {
            m.remove("request_id");
        }
        out.push(field);
    }
    hal(
        StatusCode::OK,
        json!({"_total_items": out.len(), "_embedded": {"custom_fields": out}}),
    )
}

fn check_int(rid: &str, item: &Value, key: &str, errors: &mut Vec<Complaint>) {
    if let Some(v) = item.get(key)
        && !v.is_i64()
        && !v.is_null()
    {
        errors.push((rid.into(), "InvalidType", key.into(), BAD_TYPE));
    }
}

fn check_contact(rid: &str, prefix: &str, c: &Value, errors: &mut Vec<Complaint>) {
    if !c.is_object() {
        errors.push((
            rid.into(),
            "InvalidType",
            prefix.trim_end_matches('.').into(),
            "This value should be of type object.",
        ));
        return;
    }
    for key in ["name", "first_name", "last_name"] {
        if c.get(key).is_some_and(|v| !v.is_string()) {
            errors.push((
                rid.into(),
                "InvalidType",
                format!("{prefix}{key}"),
                "This value should be of type string.",
            ));
        }
    }
    check_fields(
        rid,
        prefix,
        &c["custom_fields_values"],
        &contact_fields(),
        &contact_codes(),
        errors,
    );
}

/// Stored as a GET would return it: field codes filled in, tags under `_embedded`.
fn store_fields(
    cfv: &Value,
    ids: &HashMap<i64, Option<String>>,
    code_ids: &[(String, i64)],
) -> Value {
    let Some(fields) = cfv.as_array() else {
        return Value::Null;
    };
    Value::Array(
        fields
            .iter()
            .map(|f| {
                let mut f = f.clone();
                if let Some(code) = f.get("field_code").and_then(Value::as_str) {
                    if let Some((_, id)) = code_ids.iter().find(|(c, _)| *c == code) {
                        f["field_id"] = json!(id);
                    }
                } else if let Some(id) = f["field_id"].as_i64() {
                    f["field_code"] = json!(ids.get(&id).cloned().flatten());
                }
                f
            })
            .collect(),
    )
}

fn new_contact(s: &mut Inner, c: &Value) -> i64 {
    s.next_id += 1;
    let id = s.next_id;
    let name = c["name"].as_str().map(str::to_string).unwrap_or_else(|| {
        format!(
            "{} {}",
            c["first_name"].as_str().unwrap_or(""),
            c["last_name"].as_str().unwrap_or("")
        )
        .trim()
        .to_string()
    });
    let mut tags: Vec<Value> = c["tags_to_add"].as_array().cloned().unwrap_or_default();
    tags.extend(
        c["_embedded"]["tags"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    s.contacts.insert(
        id,
        json!({"id": id, "name": name, "custom_fields_values":
            store_fields(&c["custom_fields_values"], &contact_fields(), &contact_code_ids()),
            "_embedded": {"tags": tags, "companies": []}}),
    );
    id
}

fn add_contacts(s: &mut Inner, items: Vec<Value>) -> Response {
    if items.len() > 250 {
        return problem(StatusCode::BAD_REQUEST, "Too many entities in one request");
    }
    let mut errors = Vec::new();
    for (i, c) in items.iter().enumerate() {
        check_contact(&i.to_string(), "", c, &mut errors);
    }
    if !errors.is_empty() {
        return validation(errors);
    }
    let added: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let id = new_contact(s, c);
            json!({"id": id, "request_id": c.get("request_id").cloned().unwrap_or(json!(i.to_string())),
                   "_links": {"self": {"href": format!("/api/v4/contacts/{id}")}}})
        })
        .collect();
    hal(
        StatusCode::OK,
        json!({"_links": {"self": {"href": "/api/v4/contacts"}}, "_embedded": {"contacts": added}}),
    )
}

fn patch_contacts(s: &mut Inner, items: Vec<Value>) -> Response {
    if items.len() > 250 {
        return problem(StatusCode::BAD_REQUEST, "Too many entities in one request");
    }
    let mut errors = Vec::new();
    for (i, c) in items.iter().enumerate() {
        check_contact(&i.to_string(), "", c, &mut errors);
        if !c["id"]
            .as_i64()
            .is_some_and(|id| s.contacts.contains_key(&id))
        {
            errors.push((i.to_string(), "NotSupportedChoice", "id".into(), BAD_CHOICE));
        }
    }
    if !errors.is_empty() {
        return validation(errors);
    }
    let mut out = Vec::new();
    for c in items {
        let id = c["id"].as_i64().unwrap_or_default();
        let stored = s.contacts.get_mut(&id).expect("checked above");
        if let Some(name) = c["name"].as_str() {
            stored["name"] = json!(name);
        }
        if let Some(first) = c["first_name"].as_str() {
            stored["name"] =
                json!(format!("{first} {}", c["last_name"].as_str().unwrap_or("")).trim());
        }
        if c.get("custom_fields_values").is_some() {
            stored["custom_fields_values"] = store_fields(
                &c["custom_fields_values"],
                &contact_fields(),
                &contact_code_ids(),
            );
        }
        out.push(
            json!({"id": id, "name": stored["name"], "updated_at": 1590945248,
                        "_links": {"self": {"href": format!("/api/v4/contacts/{id}")}}}),
        );
    }
    hal(
        StatusCode::OK,
        json!({"_links": {"self": {"href": "/api/v4/contacts"}}, "_embedded": {"contacts": out}}),
    )
}

fn check_stage(rid: &str, item: &Value, errors: &mut Vec<Complaint>) {
    check_int(rid, item, "pipeline_id", errors);
    check_int(rid, item, "status_id", errors);
    if let Some(p) = item["pipeline_id"].as_i64()
        && p != PIPELINE_ID
    {
        errors.push((
            rid.into(),
            "NotSupportedChoice",
            "pipeline_id".into(),
            BAD_CHOICE,
        ));
    }
    if let Some(st) = item["status_id"].as_i64()
        && ![STATUS_NEW, STATUS_CONFIRMED, WON, LOST].contains(&st)
    {
        errors.push((
            rid.into(),
            "NotSupportedChoice",
            "status_id".into(),
            BAD_CHOICE,
        ));
    }
}

fn add_leads(s: &mut Inner, items: Vec<Value>, complex: bool) -> Response {
    let limit = if complex { 50 } else { 250 };
    if items.len() > limit {
        return problem(StatusCode::BAD_REQUEST, "Too many entities in one request");
    }
    let mut errors = Vec::new();
    for (i, lead) in items.iter().enumerate() {
        let rid = i.to_string();
        if !lead.is_object() {
            errors.push((
                rid,
                "InvalidType",
                "".into(),
                "This value should be of type object.",
            ));
            continue;
        }
        check_int(&rid, lead, "price", &mut errors);
        check_int(&rid, lead, "responsible_user_id", &mut errors);
        check_stage(&rid, lead, &mut errors);
        let (ids, codes) = lead_fields(s);
        let code_names: Vec<String> = codes.into_iter().map(|(c, _)| c).collect();
        check_fields(
            &rid,
            "",
            &lead["custom_fields_values"],
            &ids,
            &code_names,
            &mut errors,
        );
        let contacts = lead["_embedded"]["contacts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if complex && contacts.len() > 1 {
            errors.push((
                rid.clone(),
                "NotSupportedChoice",
                "_embedded.contacts".into(),
                "Only one contact per lead.",
            ));
        }
        for (j, c) in contacts.iter().enumerate() {
            if complex {
                check_contact(&rid, &format!("_embedded.contacts.{j}."), c, &mut errors);
            } else if !c["id"]
                .as_i64()
                .is_some_and(|id| s.contacts.contains_key(&id))
            {
                errors.push((
                    rid.clone(),
                    "NotSupportedChoice",
                    format!("_embedded.contacts.{j}.id"),
                    BAD_CHOICE,
                ));
            }
        }
    }
    if !errors.is_empty() {
        return validation(errors);
    }
    let (field_ids, field_codes) = lead_fields(s);
    let mut complex_out = Vec::new();
    let mut plain_out = Vec::new();
    for (i, lead) in items.iter().enumerate() {
        let contacts = lead["_embedded"]["contacts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut contact_ids = Vec::new();
        for c in &contacts {
            let id = match c["id"].as_i64() {
                Some(id) if !complex || s.contacts.contains_key(&id) => id,
                _ => new_contact(s, c),
            };
            contact_ids.push(id);
        }
        s.next_id += 1;
        let id = s.next_id;
        let mut tags: Vec<Value> = lead["_embedded"]["tags"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        tags.extend(lead["tags_to_add"].as_array().cloned().unwrap_or_default());
        let stored = json!({
            "id": id,
            "name": lead.get("name").cloned().unwrap_or(json!(format!("Сделка #{id}"))),
            "price": lead.get("price").cloned().unwrap_or(json!(0)),
            "responsible_user_id": lead.get("responsible_user_id").cloned().unwrap_or(json!(504141)),
            "status_id": lead["status_id"].as_i64().unwrap_or(STATUS_NEW),
            "pipeline_id": lead["pipeline_id"].as_i64().unwrap_or(PIPELINE_ID),
            "loss_reason_id": lead.get("loss_reason_id").cloned().unwrap_or(Value::Null),
            "custom_fields_values": store_fields(&lead["custom_fields_values"], &field_ids, &field_codes),
            "account_id": 28805383,
            "_links": {"self": {"href": format!("/api/v4/leads/{id}")}},
            "_embedded": {"tags": tags, "contacts": contact_ids.iter().map(|c| json!({"id": c, "is_main": true})).collect::<Vec<_>>()},
        });
        s.leads.insert(id, stored);
        let rid = lead
            .get("request_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or(i.to_string());
        complex_out.push(json!({"id": id, "contact_id": contact_ids.first(), "company_id": null, "request_id": [rid.clone()], "merged": false}));
        plain_out.push(json!({"id": id, "request_id": rid, "_links": {"self": {"href": format!("/api/v4/leads/{id}")}}}));
    }
    if complex {
        hal(StatusCode::OK, Value::Array(complex_out))
    } else {
        hal(
            StatusCode::OK,
            json!({"_links": {"self": {"href": "/api/v4/leads"}}, "_embedded": {"leads": plain_out}}),
        )
    }
}

fn patch_leads(s: &mut Inner, items: Vec<Value>) -> Response {
    let mut errors = Vec::new();
    for (i, lead) in items.iter().enumerate() {
        let rid = i.to_string();
        check_stage(&rid, lead, &mut errors);
        check_int(&rid, lead, "loss_reason_id", &mut errors);
        check_int(&rid, lead, "price", &mut errors);
        if !lead["id"]
            .as_i64()
            .is_some_and(|id| s.leads.contains_key(&id))
        {
            errors.push((rid, "NotSupportedChoice", "id".into(), BAD_CHOICE));
        }
    }
    if !errors.is_empty() {
        return validation(errors);
    }
    let mut out = Vec::new();
    for lead in items {
        let id = lead["id"].as_i64().unwrap_or_default();
        let stored = s.leads.get_mut(&id).expect("checked above");
        for key in [
            "status_id",
            "pipeline_id",
            "loss_reason_id",
            "price",
            "name",
        ] {
            if let Some(v) = lead.get(key) {
                stored[key] = v.clone();
            }
        }
        out.push(json!({"id": id, "updated_at": 1590945248, "_links": {"self": {"href": format!("/api/v4/leads/{id}")}}}));
    }
    hal(
        StatusCode::OK,
        json!({"_links": {"self": {"href": "/api/v4/leads"}}, "_embedded": {"leads": out}}),
    )
}

fn add_notes(s: &mut Inner, items: Vec<Value>) -> Response {
    if items.len() > 250 {
        return problem(StatusCode::BAD_REQUEST, "Too many entities in one request");
    }
    let types = [
        "common",
        "call_in",
        "call_out",
        "service_message",
        "extended_service_message",
        "sms_in",
        "sms_out",
        "geolocation",
        "attachment",
        "message_cashier",
    ];
    let mut errors = Vec::new();
    for (i, n) in items.iter().enumerate() {
        let rid = i.to_string();
        match n.get("entity_id") {
            None => errors.push((rid.clone(), "FieldMissing", "entity_id".into(), MISSING)),
            Some(v) if !v.as_i64().is_some_and(|id| s.leads.contains_key(&id)) => errors.push((
                rid.clone(),
                "NotSupportedChoice",
                "entity_id".into(),
                BAD_CHOICE,
            )),
            _ => {}
        }
        if !n["note_type"].as_str().is_some_and(|t| types.contains(&t)) {
            errors.push((
                rid.clone(),
                "NotSupportedChoice",
                "note_type".into(),
                BAD_CHOICE,
            ));
        }
        if !n["params"]["text"].is_string() {
            errors.push((rid, "FieldMissing", "params.text".into(), MISSING));
        }
    }
    if !errors.is_empty() {
        return validation(errors);
    }
    let mut out = Vec::new();
    for (i, n) in items.into_iter().enumerate() {
        s.next_id += 1;
        let id = s.next_id;
        let entity_id = n["entity_id"].clone();
        s.notes.push(json!({"id": id, "entity_id": entity_id, "note_type": n["note_type"], "params": n["params"]}));
        out.push(json!({"id": id, "entity_id": entity_id, "request_id": i.to_string(),
                        "_links": {"self": {"href": format!("/api/v4/leads/{entity_id}/notes/{id}")}}}));
    }
    hal(
        StatusCode::OK,
        json!({"_links": {"self": {"href": "/api/v4/leads/notes"}}, "_embedded": {"notes": out}}),
    )
}

fn add_tasks(s: &mut Inner, items: Vec<Value>) -> Response {
    let mut errors = Vec::new();
    for (i, t) in items.iter().enumerate() {
        let rid = i.to_string();
        if !t["text"].is_string() {
            errors.push((rid.clone(), "FieldMissing", "text".into(), MISSING));
        }
        match t.get("complete_till") {
            None => errors.push((rid.clone(), "FieldMissing", "complete_till".into(), MISSING)),
            Some(v) if !v.is_i64() => {
                errors.push((rid.clone(), "InvalidType", "complete_till".into(), BAD_TYPE))
            }
            _ => {}
        }
        if let Some(e) = t.get("entity_type")
            && !e
                .as_str()
                .is_some_and(|e| ["leads", "contacts", "companies", "customers"].contains(&e))
        {
            errors.push((
                rid.clone(),
                "NotSupportedChoice",
                "entity_type".into(),
                BAD_CHOICE,
            ));
        }
        check_int(&rid, t, "task_type_id", &mut errors);
    }
    if !errors.is_empty() {
        return validation(errors);
    }
    let mut out = Vec::new();
    for (i, t) in items.into_iter().enumerate() {
        s.next_id += 1;
        let id = s.next_id;
        let mut stored = t.clone();
        stored["id"] = json!(id);
        s.tasks.push(stored);
        out.push(json!({"id": id, "request_id": i.to_string(), "_links": {"self": {"href": format!("/api/v4/tasks/{id}")}}}));
    }
    hal(
        StatusCode::OK,
        json!({"_links": {"self": {"href": "/api/v4/tasks"}}, "_embedded": {"tasks": out}}),
    )
}

/// A second pipeline the account has besides the bookings' one.
pub const OTHER_PIPELINE_ID: i64 = 7_700_001;

fn pipeline() -> Value {
    json!({"id": PIPELINE_ID, "name": "Записи", "sort": 1, "is_main": true, "_embedded": {"statuses": [
        {"id": STATUS_NEW, "name": "Новая запись", "pipeline_id": PIPELINE_ID},
        {"id": STATUS_CONFIRMED, "name": "Подтверждена", "pipeline_id": PIPELINE_ID},
        {"id": WON, "name": "Успешно реализовано", "pipeline_id": PIPELINE_ID},
        {"id": LOST, "name": "Закрыто и не реализовано", "pipeline_id": PIPELINE_ID}]}})
}
