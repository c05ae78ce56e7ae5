//! A fake YClients over real HTTP on 127.0.0.1, reproducing the documented contract
//! (../shared/reference/booking-apis.md Part 1, ../shared/contracts/yclients/): the
//! `{success,data,meta}` envelope and its exceptions (bare `GET /book_record`, no-`meta` move
//! answer), string-typed ids, `position: []`, `category` instead of `categories`,
//! `seance_length` only when a master is named, ISO datetimes with `+05:00` in slots and
//! `+0500` in records, the 422 "time taken" body, 401 for a bad token or a missing Accept
//! header, 429 above 5 requests a second (and, when a test sets it, above a per-minute
//! ceiling), pages cut at 200 (or shorter, when a test says so), 204 on DELETE. It keeps the
//! salon's schedule, records and client cards in memory and lets a test inspect and change them
//! "as the salon". What the vendor does not do is reproduced too: admin calls refused without
//! `X-Partner-Id` when the account demands it, a move keeping every field it is not sent (and an
//! empty `comment` wiping the salon's), a full `PUT /record` resetting labels, custom fields and
//! colour it is not sent. Faults for one call: a 5xx before anything is written, or the write
//! done and the answer held past the client's timeout.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration as StdDuration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use serde_json::{Value, json};

/// The shared contracts folder; tests fail loudly when it is not next to the repository.
pub const CONTRACTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/contracts");

pub fn contract_path(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(CONTRACTS).join("yclients");
    assert!(
        dir.is_dir(),
        "the contracts folder {} is missing: the YClients fake and its tests need it",
        dir.display()
    );
    dir.join(name)
}

pub fn contract(name: &str) -> Value {
    let path = contract_path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("contract {} unreadable: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("contract {name}: {e}"))
}

pub const PARTNER_TOKEN: &str = "partner-token-fake";
pub const USER_TOKEN: &str = "user-token-fake";

#[derive(Debug, Clone)]
pub struct FakeService {
    pub id: u64,
    pub title: String,
    pub category_id: u64,
    pub category: String,
    pub price_min: f64,
    pub price_max: f64,
    pub seance_length: i64,
    /// The salon's description, as the YClients editor stores it (it may hold HTML).
    pub comment: String,
}

#[derive(Debug, Clone)]
pub struct FakeStaff {
    pub id: u64,
    pub name: String,
    pub specialization: String,
    pub bookable: bool,
    pub service_ids: Vec<u64>,
    pub opens: NaiveTime,
    pub closes: NaiveTime,
    pub days_off: Vec<Weekday>,
}

#[derive(Debug, Clone)]
pub struct FakeSalon {
    pub company_id: u64,
    pub title: String,
    pub timezone: Tz,
    pub address: String,
    pub services: Vec<FakeService>,
    pub staff: Vec<FakeStaff>,
    /// Slot grid in minutes.
    pub step_min: i64,
}

impl FakeSalon {
    /// A salon with two categories, three services and three masters, one not bookable online.
    pub fn standard(company_id: u64, timezone: Tz) -> FakeSalon {
        let t = |h| NaiveTime::from_hms_opt(h, 0, 0).expect("valid time");
        let svc = |id, title: &str, cat_id, cat: &str, min, max, len| FakeService {
            id,
            title: title.into(),
            category_id: cat_id,
            category: cat.into(),
            price_min: min,
            price_max: max,
            seance_length: len,
            comment: String::new(),
        };
        FakeSalon {
            company_id,
            title: "Салон «Лилия»".into(),
            timezone,
            address: "ул. Ленина, 1".into(),
            services: vec![
                svc(101, "Женская стрижка", 11, "Стрижки", 2000.0, 2500.0, 3600),
                svc(102, "Мужская стрижка", 11, "Стрижки", 1200.0, 1200.0, 2700),
                FakeService {
                    comment: "<p>Снятие, опил и&nbsp;покрытие <b>гель-лаком</b>.</p>\
                              <p>Дизайн &mdash; по&nbsp;запросу.</p>"
                        .into(),
                    ..svc(201, "Маникюр", 12, "Ногти", 1500.5, 1800.0, 5400)
                },
            ],
            staff: vec![
                FakeStaff {
                    id: 11,
                    name: "Ольга".into(),
                    specialization: "Стилист".into(),
                    bookable: true,
                    service_ids: vec![101, 102],
                    opens: t(10),
                    closes: t(19),
                    days_off: vec![Weekday::Mon],
                },
                FakeStaff {
                    id: 12,
                    name: "Анна".into(),
                    specialization: "Универсал".into(),
                    bookable: true,
                    service_ids: vec![101, 201],
                    opens: t(12),
                    closes: t(20),
                    days_off: vec![Weekday::Wed],
                },
                FakeStaff {
                    id: 13,
                    name: "Пётр".into(),
                    specialization: "Стажёр".into(),
                    bookable: false,
                    service_ids: vec![101, 102],
                    opens: t(9),
                    closes: t(18),
                    days_off: vec![],
                },
            ],
            step_min: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRecord {
    pub id: u64,
    pub hash: String,
    pub staff_id: u64,
    pub service_id: u64,
    /// The visit's other services, booked in the same appointment.
    pub more_service_ids: Vec<u64>,
    /// Salon-local start.
    pub local: NaiveDateTime,
    pub length_sec: i64,
    pub phone: String,
    pub fullname: String,
    pub email: String,
    pub comment: String,
    pub api_id: String,
    pub deleted: bool,
    pub attendance: i64,
    /// `online` (book_record), `admin` (POST /records) or `salon` (made by a test).
    pub source: &'static str,
    /// Label ids (`record_labels`), shown as objects and written as ids.
    pub labels: Vec<u64>,
    /// `custom_fields`: an object, or PHP's `[]` when empty.
    pub custom_fields: Value,
    pub custom_color: String,
}

impl FakeRecord {
    /// Every service of the visit, the first one first.
    pub fn service_ids(&self) -> Vec<u64> {
        std::iter::once(self.service_id)
            .chain(self.more_service_ids.iter().copied())
            .collect()
    }

    fn end(&self) -> NaiveDateTime {
        self.local + Duration::seconds(self.length_sec)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down {
    Up,
    /// Every request gets 503 with an envelope.
    Unavailable,
    /// The listener is closed: connections are refused.
    Refused,
}

struct Inner {
    salon: FakeSalon,
    records: Vec<FakeRecord>,
    next_id: u64,
    down: Down,
    forced_429: u32,
    retry_after: Option<u64>,
    rate_limit: u32,
    started: Instant,
    window_second: u64,
    window_count: u32,
    max_per_second: u32,
    total: u64,
    log: Vec<String>,
    record_updates: usize,
    /// Client cards by id, in the shape `GET /client` answers.
    clients: BTreeMap<u64, Value>,
    next_client_id: u64,
    /// Arrival times within the last minute.
    minute: VecDeque<Instant>,
    max_per_minute: u32,
    /// Refuse with 429 above this many requests in any 60 s; `None` counts only.
    minute_limit: Option<u32>,
    throttled: u64,
    /// Admin calls without this `X-Partner-Id` get 403 «Не указан идентификатор партнера».
    require_partner: Option<u64>,
    /// The `X-Partner-Id` of every request, in arrival order.
    partner_headers: Vec<Option<String>>,
    /// The next request matching (method, path prefix) fails with this status, untouched.
    fail_once: Option<(Method, String, StatusCode)>,
    /// The next request matching (method, path prefix) is done, and its answer held this long.
    hold_once: Option<(Method, String, StdDuration)>,
    /// `/records` pages are cut to this many, whatever `count` asked.
    page_cap: usize,
}

pub struct FakeYclients {
    pub base_url: url::Url,
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl FakeYclients {
    pub async fn start(salon: FakeSalon) -> FakeYclients {
        let inner = Arc::new(Mutex::new(Inner {
            salon,
            records: Vec::new(),
            next_id: 5_000_001,
            down: Down::Up,
            forced_429: 0,
            retry_after: None,
            rate_limit: 5,
            started: Instant::now(),
            window_second: 0,
            window_count: 0,
            max_per_second: 0,
            total: 0,
            log: Vec::new(),
            record_updates: 0,
            clients: BTreeMap::new(),
            next_client_id: 1_121_412,
            minute: VecDeque::new(),
            max_per_minute: 0,
            minute_limit: None,
            throttled: 0,
            require_partner: None,
            partner_headers: Vec::new(),
            fail_once: None,
            hold_once: None,
            page_cap: 200,
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake");
        let addr = listener.local_addr().expect("local addr");
        let fake = FakeYclients {
            base_url: url::Url::parse(&format!("http://{addr}")).expect("url"),
            addr,
            inner,
            server: Mutex::new(None),
        };
        fake.serve(listener);
        fake
    }

    fn serve(&self, listener: std::net::TcpListener) {
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let app = Router::new()
            .fallback(handle)
            .with_state(self.inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.server.lock().expect("server slot") = Some(task);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_down(&self, down: Down) {
        let was = std::mem::replace(&mut self.lock().down, down);
        if down == Down::Refused
            && was != Down::Refused
            && let Some(task) = self.server.lock().expect("server slot").take()
        {
            task.abort();
        }
        if was == Down::Refused && down != Down::Refused {
            let listener = std::net::TcpListener::bind(self.addr).expect("rebind the fake");
            self.serve(listener);
        }
    }

    /// The next `n` requests get 429, with `Retry-After` when given.
    pub fn fail_next_with_429(&self, n: u32, retry_after: Option<u64>) {
        let mut s = self.lock();
        s.forced_429 = n;
        s.retry_after = retry_after;
    }

    /// Admin calls must carry `X-Partner-Id: id`, as a live marketplace account demanded.
    pub fn require_partner_id(&self, id: u64) {
        self.lock().require_partner = Some(id);
    }

    /// The `X-Partner-Id` sent with every request so far, in arrival order.
    pub fn partner_headers(&self) -> Vec<Option<String>> {
        self.lock().partner_headers.clone()
    }

    /// The next `method` request under `path` (e.g. `/api/v1/book_record/`) gets `status`
    /// and changes nothing.
    pub fn fail_next(&self, method: Method, path: &str, status: u16) {
        let status = StatusCode::from_u16(status).expect("a status code");
        self.lock().fail_once = Some((method, path.to_owned(), status));
    }

    /// The next `method` request under `path` is carried out, and its answer sent only after
    /// `hold` (past the client's timeout: the write is done, the client does not know).
    pub fn hold_next_answer(&self, method: Method, path: &str, hold: StdDuration) {
        self.lock().hold_once = Some((method, path.to_owned(), hold));
    }

    /// `/records` answers at most `n` a page whatever `count` asked, with the true total.
    pub fn set_records_page_cap(&self, n: usize) {
        self.lock().page_cap = n.max(1);
    }

    /// The salon's own marks on a record: its comment, labels, custom fields and colour.
    pub fn salon_decorate(
        &self,
        record_id: u64,
        comment: &str,
        labels: &[u64],
        custom_fields: Value,
        color: &str,
    ) {
        if let Some(r) = self.lock().records.iter_mut().find(|r| r.id == record_id) {
            r.comment = comment.to_owned();
            r.labels = labels.to_vec();
            r.custom_fields = custom_fields;
            r.custom_color = color.to_owned();
        }
    }

    pub fn set_rate_limit(&self, per_second: u32) {
        self.lock().rate_limit = per_second;
    }

    /// The most requests that arrived within one wall-clock second.
    pub fn max_requests_per_second(&self) -> u32 {
        self.lock().max_per_second
    }

    /// Answer 429 above `per_minute` requests in any 60 seconds ("200 requests a minute").
    pub fn set_minute_limit(&self, per_minute: u32) {
        self.lock().minute_limit = Some(per_minute);
    }

    /// The most requests that arrived within any 60 seconds.
    pub fn max_requests_per_minute(&self) -> u32 {
        self.lock().max_per_minute
    }

    /// Requests answered 429 because a limit was exceeded (forced ones not counted).
    pub fn throttled(&self) -> u64 {
        self.lock().throttled
    }

    /// A client card as the salon typed it; the phone kept exactly as given.
    pub fn insert_client(&self, name: &str, phone: &str, email: &str, comment: &str) -> u64 {
        let mut s = self.lock();
        let id = s.next_client_id;
        s.next_client_id += 1;
        let mut card = client_template(id);
        card["name"] = json!(name);
        card["phone"] = json!(phone);
        card["email"] = json!(email);
        card["comment"] = json!(comment);
        card["categories"] = json!([{"id": 4, "title": "VIP", "color": "#e8d313"}]);
        card["birth_date"] = json!("1980-01-02");
        card["balance"] = json!(-1200);
        s.clients.insert(id, card);
        id
    }

    /// Every client card, by id.
    pub fn clients(&self) -> Vec<Value> {
        self.lock().clients.values().cloned().collect()
    }

    pub fn request_count(&self) -> u64 {
        self.lock().total
    }

    /// `METHOD /path` of every request, in arrival order.
    pub fn request_log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    pub fn records(&self) -> Vec<FakeRecord> {
        self.lock().records.clone()
    }

    pub fn active_records(&self) -> Vec<FakeRecord> {
        self.records().into_iter().filter(|r| !r.deleted).collect()
    }

    pub fn timezone(&self) -> Tz {
        self.lock().salon.timezone
    }

    /// Someone else (the salon's phone line) books a time: the slot disappears.
    pub fn salon_book(&self, staff_id: u64, service_id: u64, local: NaiveDateTime) -> u64 {
        let mut s = self.lock();
        let len = s
            .salon
            .services
            .iter()
            .find(|x| x.id == service_id)
            .map(|x| x.seance_length)
            .unwrap_or(3600);
        let id = s.next_id;
        s.next_id += 1;
        s.records.push(FakeRecord {
            id,
            hash: format!("{:032x}", id * 7919),
            staff_id,
            service_id,
            more_service_ids: Vec::new(),
            local,
            length_sec: len,
            phone: "79990000000".into(),
            fullname: "Звонок в салон".into(),
            email: String::new(),
            comment: String::new(),
            api_id: String::new(),
            deleted: false,
            attendance: 0,
            source: "salon",
            labels: Vec::new(),
            custom_fields: json!([]),
            custom_color: String::new(),
        });
        id
    }

    /// An admin books a client by phone in the salon's own screen: a record with no `api_id`.
    pub fn admin_book_for(
        &self,
        staff_id: u64,
        service_id: u64,
        local: NaiveDateTime,
        phone: &str,
        fullname: &str,
    ) -> u64 {
        let id = self.salon_book(staff_id, service_id, local);
        if let Some(r) = self.lock().records.iter_mut().find(|r| r.id == id) {
            r.phone = phone.to_owned();
            r.fullname = fullname.to_owned();
            r.source = "admin";
        }
        id
    }

    /// The record as the salon's screen holds it now.
    pub fn record(&self, record_id: u64) -> Option<FakeRecord> {
        self.lock()
            .records
            .iter()
            .find(|r| r.id == record_id)
            .cloned()
    }

    /// `PUT /record` calls taken.
    pub fn record_updates(&self) -> usize {
        self.lock().record_updates
    }

    pub fn salon_delete(&self, record_id: u64) {
        if let Some(r) = self.lock().records.iter_mut().find(|r| r.id == record_id) {
            r.deleted = true;
        }
    }

    pub fn salon_move(&self, record_id: u64, local: NaiveDateTime) {
        if let Some(r) = self.lock().records.iter_mut().find(|r| r.id == record_id) {
            r.local = local;
        }
    }

    /// The record webhook YClients would post now for this record (`create`, `update`,
    /// `delete`), its `data` the full record as `GET /record` shows it.
    pub fn record_webhook(&self, record_id: u64, status: &str) -> Value {
        let s = self.lock();
        let data = s
            .records
            .iter()
            .find(|r| r.id == record_id)
            .map(|r| admin_record_json_for(&s.salon, r))
            .unwrap_or(Value::Null);
        json!({
            "company_id": s.salon.company_id,
            "resource": "record",
            "resource_id": record_id,
            "status": status,
            "data": data,
        })
    }

    pub fn salon_mark_attendance(&self, record_id: u64, attendance: i64) {
        if let Some(r) = self.lock().records.iter_mut().find(|r| r.id == record_id) {
            r.attendance = attendance;
        }
    }
}

impl Drop for FakeYclients {
    fn drop(&mut self) {
        if let Some(task) = self.server.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

fn envelope(status: StatusCode, data: Value, meta: Value) -> Response {
    (
        status,
        axum::Json(json!({"success": true, "data": data, "meta": meta})),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"success": false, "data": null, "meta": {"message": message}})),
    )
        .into_response()
}

fn created_no_data() -> Response {
    (
        StatusCode::CREATED,
        axum::Json(json!({"success": true, "meta": {"message": "Created"}})),
    )
        .into_response()
}

fn bad_format() -> Response {
    error(StatusCode::BAD_REQUEST, "Недопустимый формат запроса")
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn q<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn service_ids(pairs: &[(String, String)]) -> Vec<u64> {
    pairs
        .iter()
        .filter(|(k, _)| k == "service_ids[]")
        .filter_map(|(_, v)| v.parse().ok())
        .collect()
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (resp, hold) = {
        let mut s = inner.lock().unwrap_or_else(|p| p.into_inner());
        let hold = match &s.hold_once {
            Some((m, prefix, d)) if *m == method && uri.path().starts_with(prefix.as_str()) => {
                let d = *d;
                s.hold_once = None;
                Some(d)
            }
            _ => None,
        };
        (respond(&mut s, method, uri, headers, body), hold)
    };
    if let Some(d) = hold {
        tokio::time::sleep(d).await;
    }
    resp
}

fn respond(s: &mut Inner, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    s.total += 1;
    s.log.push(format!("{method} {}", uri.path()));
    let partner_header = headers
        .get("x-partner-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    s.partner_headers.push(partner_header.clone());
    if let Some((m, prefix, status)) = s.fail_once.clone()
        && m == method
        && uri.path().starts_with(prefix.as_str())
    {
        s.fail_once = None;
        return error(status, "Внутренняя ошибка сервера");
    }
    let second = s.started.elapsed().as_secs();
    if second != s.window_second {
        s.window_second = second;
        s.window_count = 0;
    }
    s.window_count += 1;
    s.max_per_second = s.max_per_second.max(s.window_count);
    let now = Instant::now();
    while s
        .minute
        .front()
        .is_some_and(|t| now.duration_since(*t).as_secs_f64() >= 60.0)
    {
        s.minute.pop_front();
    }
    s.minute.push_back(now);
    s.max_per_minute = s.max_per_minute.max(s.minute.len() as u32);
    let over_minute = s
        .minute_limit
        .is_some_and(|limit| s.minute.len() as u32 > limit);
    if s.down != Down::Up {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Сервис временно недоступен",
        );
    }
    if s.forced_429 > 0 || s.window_count > s.rate_limit || over_minute {
        if s.forced_429 == 0 {
            s.throttled += 1;
        }
        s.forced_429 = s.forced_429.saturating_sub(1);
        let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "Превышен лимит запросов");
        if let Some(secs) = s.retry_after {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        return resp;
    }
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(accept.contains("application/vnd.yclients.v2+json")
        || accept.contains("application/vnd.api.v2+json"))
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "Для использования API укажите в запросе заголовок Accept: application/vnd.api.v2+json",
        );
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (partner, user) = match auth.split_once(',') {
        Some((p, u)) => (p.trim(), Some(u.trim())),
        None => (auth.trim(), None),
    };
    let user_ok = match user {
        None => false,
        Some(u) if u == format!("User {USER_TOKEN}") => true,
        Some(_) => return error(StatusCode::UNAUTHORIZED, "Необходима авторизация"),
    };
    if partner != format!("Bearer {PARTNER_TOKEN}") {
        return error(StatusCode::UNAUTHORIZED, "Необходима авторизация");
    }
    let path = uri
        .path()
        .trim_start_matches("/api/v1/")
        .trim_end_matches('/');
    let parts: Vec<&str> = path.split('/').collect();
    let pairs = query_pairs(&uri);
    let json_body: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(_) => return bad_format(),
        }
    };
    let admin = matches!(
        parts.first(),
        Some(&"record" | &"records" | &"hooks_settings" | &"clients" | &"client")
    ) || (parts.first() == Some(&"company") && parts.len() > 2);
    if admin && !user_ok {
        return error(StatusCode::UNAUTHORIZED, "Необходима авторизация");
    }
    if admin
        && let Some(id) = s.require_partner
        && partner_header.as_deref() != Some(id.to_string().as_str())
    {
        return error(StatusCode::FORBIDDEN, "Не указан идентификатор партнера");
    }
    let company_id = s.salon.company_id;
    let company_ok = |cid: &str| cid.parse::<u64>().ok() == Some(company_id);
    match (method.clone(), parts.as_slice()) {
        (Method::GET, ["company", cid]) if company_ok(cid) => company(s),
        (Method::GET, ["book_services", cid]) if company_ok(cid) => book_services(s, &pairs),
        (Method::GET, ["book_staff", cid]) if company_ok(cid) => book_staff(s, &pairs),
        (Method::GET, ["book_dates", cid]) if company_ok(cid) => book_dates(s, &pairs),
        (Method::GET, ["book_times", cid, staff, date]) if company_ok(cid) => {
            book_times(s, staff, date, &pairs)
        }
        (Method::POST, ["book_code", cid]) if company_ok(cid) => match json_body {
            Some(b) if b.get("phone").is_some() => created_no_data(),
            _ => bad_format(),
        },
        (Method::POST, ["book_check", cid]) if company_ok(cid) => match json_body {
            Some(b) => book_check(s, &b),
            None => bad_format(),
        },
        (Method::POST, ["book_record", cid]) if company_ok(cid) => match json_body {
            Some(b) => book_record(s, &b),
            None => bad_format(),
        },
        (Method::PUT, ["book_record", cid, rid, ..]) if company_ok(cid) => match json_body {
            Some(b) => move_record(s, rid, &b),
            None => bad_format(),
        },
        (Method::GET, ["book_record", cid, rid, hash]) if company_ok(cid) => {
            match find(s, rid, Some(hash)) {
                Some(r) => (StatusCode::OK, axum::Json(online_record_json(s, &r))).into_response(),
                None => error(StatusCode::NOT_FOUND, "Запись не найдена"),
            }
        }
        (Method::DELETE, ["user", "records", rid, hash]) => delete(s, rid, Some(hash)),
        (Method::GET, ["record", cid, rid]) if company_ok(cid) => match find(s, rid, None) {
            Some(r) => envelope(StatusCode::OK, admin_record_json(s, &r), json!([])),
            None => error(StatusCode::NOT_FOUND, "Запись не найдена"),
        },
        (Method::DELETE, ["record", cid, rid]) if company_ok(cid) => delete(s, rid, None),
        (Method::PUT, ["record", cid, rid]) if company_ok(cid) => match json_body {
            Some(b) => admin_update(s, rid, &b),
            None => bad_format(),
        },
        (Method::GET, ["records", cid]) if company_ok(cid) => records_page(s, &pairs),
        (Method::POST, ["records", cid]) if company_ok(cid) => match json_body {
            Some(b) => admin_create(s, &b),
            None => bad_format(),
        },
        (Method::POST, ["auth"]) => match json_body {
            Some(b) if b.get("login").is_some() && b.get("password").is_some() => (
                StatusCode::CREATED,
                axum::Json(json!({
                    "id": 123456, "user_token": USER_TOKEN, "name": "Администратор",
                    "phone": "79161234567", "login": "admin", "email": "admin@example.com",
                    "avatar": ""
                })),
            )
                .into_response(),
            _ => error(StatusCode::UNAUTHORIZED, "Неверный логин или пароль"),
        },
        (Method::POST, ["company", cid, "clients", "search"]) if company_ok(cid) => match json_body
        {
            Some(b) => clients_search(s, &b),
            None => bad_format(),
        },
        (Method::POST, ["clients", cid]) if company_ok(cid) => match json_body {
            Some(b) => client_create(s, &b),
            None => bad_format(),
        },
        (Method::GET, ["client", cid, id]) if company_ok(cid) => {
            match id.parse::<u64>().ok().and_then(|id| s.clients.get(&id)) {
                Some(card) => envelope(StatusCode::OK, card.clone(), json!([])),
                None => error(StatusCode::NOT_FOUND, "Клиент не найден"),
            }
        }
        (Method::PUT, ["client", cid, id]) if company_ok(cid) => match json_body {
            Some(b) => client_update(s, id, &b),
            None => bad_format(),
        },
        (Method::POST, ["company", cid, "clients", "visits", "search"]) if company_ok(cid) => {
            match json_body {
                Some(_) => envelope(
                    StatusCode::OK,
                    json!({"records": [], "goods_transactions": []}),
                    json!({"dateCursor": {"previous": null, "next": null}}),
                ),
                None => bad_format(),
            }
        }
        (Method::POST, ["hooks_settings", cid]) if company_ok(cid) => match json_body {
            Some(b) if b.get("urls").is_some() => envelope(StatusCode::CREATED, b, json!([])),
            _ => bad_format(),
        },
        (_, [_, cid, ..]) if cid.parse::<u64>().is_ok() && !company_ok(cid) => {
            error(StatusCode::NOT_FOUND, "Компания не найдена")
        }
        _ => error(StatusCode::NOT_FOUND, "Метод не найден"),
    }
}

// ---------------------------------------------------------------------------------------------
// Schedule logic
// ---------------------------------------------------------------------------------------------

fn staff_of(s: &Inner, id: u64) -> Option<&FakeStaff> {
    s.salon.staff.iter().find(|x| x.id == id)
}

fn service_of(s: &Inner, id: u64) -> Option<&FakeService> {
    s.salon.services.iter().find(|x| x.id == id)
}

/// Services asked for together: one visit of their summed length, which only a master who
/// renders them all takes (YClients' online booking with several `service_ids[]`).
struct Visit {
    ids: Vec<u64>,
    seance_length: i64,
}

impl Visit {
    fn rendered_by(&self, staff: &FakeStaff) -> bool {
        self.ids.iter().all(|id| staff.service_ids.contains(id))
    }
}

/// `None` when nothing is asked for or a service is unknown.
fn visit_of(s: &Inner, ids: &[u64]) -> Option<Visit> {
    if ids.is_empty() {
        return None;
    }
    let mut seance_length = 0;
    for id in ids {
        seance_length += service_of(s, *id)?.seance_length;
    }
    Some(Visit {
        ids: ids.to_vec(),
        seance_length,
    })
}

fn now_local(s: &Inner) -> NaiveDateTime {
    Utc::now().with_timezone(&s.salon.timezone).naive_local()
}

/// Is `[start, start+len)` inside the master's hours, not on a day off, not in the past and
/// free of other live records (except `ignore`)?
fn is_free(
    s: &Inner,
    staff: &FakeStaff,
    start: NaiveDateTime,
    len: i64,
    ignore: Option<u64>,
) -> bool {
    let end = start + Duration::seconds(len);
    if staff.days_off.contains(&start.weekday())
        || start.time() < staff.opens
        || end.date() != start.date()
        || end.time() > staff.closes
        || start < now_local(s)
    {
        return false;
    }
    s.records.iter().all(|r| {
        r.deleted
            || r.staff_id != staff.id
            || Some(r.id) == ignore
            || r.end() <= start
            || end <= r.local
    })
}

fn free_times(s: &Inner, staff: &FakeStaff, service: &Visit, day: NaiveDate) -> Vec<NaiveDateTime> {
    if !service.rendered_by(staff) {
        return vec![];
    }
    let mut out = Vec::new();
    let mut t = day.and_time(staff.opens);
    while t.date() == day && t.time() < staff.closes {
        if is_free(s, staff, t, service.seance_length, None) {
            out.push(t);
        }
        t += Duration::minutes(s.salon.step_min);
    }
    out
}

fn offset_of(tz: Tz, local: NaiveDateTime) -> DateTime<Tz> {
    tz.from_local_datetime(&local)
        .earliest()
        .unwrap_or_else(|| tz.from_utc_datetime(&local))
}

/// The request `datetime` in any documented form, as a salon-local time.
fn parse_local(v: &Value, tz: Tz) -> Option<NaiveDateTime> {
    match v {
        Value::Number(n) => Some(
            Utc.timestamp_opt(n.as_i64()?, 0)
                .single()?
                .with_timezone(&tz)
                .naive_local(),
        ),
        Value::String(s) => {
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Some(t.with_timezone(&tz).naive_local());
            }
            if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%z") {
                return Some(t.with_timezone(&tz).naive_local());
            }
            for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
                if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
                    return Some(t);
                }
            }
            None
        }
        _ => None,
    }
}

const MONTHS: [&str; 12] = [
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
];

/// The documented (older edition) body for a taken or non-working time.
fn time_taken(staff: &FakeStaff, at: NaiveDateTime) -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        &format!(
            "К сотруднику {}({}) нельзя записаться на {} {} {} в {}. Выбранное время уже занято или является нерабочим.",
            staff.name,
            staff.id,
            at.day(),
            MONTHS[at.month0() as usize],
            at.year(),
            at.format("%H:%M")
        ),
    )
}

fn company(s: &Inner) -> Response {
    let c = &s.salon;
    envelope(
        StatusCode::OK,
        json!({
            "id": c.company_id, "title": c.title, "country_id": 1, "country": "Россия",
            "city_id": 1, "city": "Город", "timezone_name": c.timezone.name(),
            "address": c.address, "phone_confirmation": false,
            "active_staff_count": c.staff.len(), "groups": {}, "bookforms": [], "access": {}
        }),
        json!({}),
    )
}

fn book_services(s: &Inner, pairs: &[(String, String)]) -> Response {
    let staff = q(pairs, "staff_id")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|id| *id != 0)
        .and_then(|id| staff_of(s, id));
    let services: Vec<Value> = s
        .salon
        .services
        .iter()
        .filter(|x| staff.is_none_or(|st| st.service_ids.contains(&x.id)))
        .map(|x| {
            let mut v = json!({
                "id": x.id, "title": x.title, "category_id": x.category_id,
                // One number, one string: the same field changes type across answers.
                "price_min": x.price_min, "price_max": format!("{:.2}", x.price_max),
                "discount": 0, "comment": x.comment, "weight": 0, "active": 1, "sex": 0, "image": "",
                "prepaid": "forbidden"
            });
            if staff.is_some() {
                v["seance_length"] = json!(x.seance_length);
            }
            v
        })
        .collect();
    let mut cats: BTreeMap<u64, &str> = BTreeMap::new();
    for x in &s.salon.services {
        cats.insert(x.category_id, &x.category);
    }
    let category: Vec<Value> = cats
        .iter()
        .map(|(id, t)| json!({"id": id, "title": t, "sex": 0, "api_id": 0, "weight": 1}))
        .collect();
    envelope(
        StatusCode::OK,
        json!({"events": [], "services": services, "category": category}),
        json!([]),
    )
}

fn book_staff(s: &Inner, pairs: &[(String, String)]) -> Response {
    let wanted = service_ids(pairs);
    let list: Vec<Value> = s
        .salon
        .staff
        .iter()
        .filter(|st| wanted.iter().all(|id| st.service_ids.contains(id)))
        .enumerate()
        .map(|(i, st)| {
            let mut v = json!({
                "id": st.id.to_string(), "name": st.name, "bookable": st.bookable,
                "specialization": st.specialization,
                "position": if i % 2 == 0 { json!({"id": 1, "title": st.specialization}) } else { json!([]) },
                "show_rating": "1", "rating": "5", "votes_count": "0",
                "avatar": "https://yclients.com/images/no-master.png", "comments_count": "0",
                "weight": "10", "information": "<span></span>"
            });
            if st.bookable {
                v["seance_date"] = json!(Utc::now().timestamp());
                v["seances"] = json!([]);
            }
            v
        })
        .collect();
    envelope(StatusCode::OK, json!(list), json!([]))
}

fn candidates<'a>(s: &'a Inner, staff_id: u64, service: &Visit) -> Vec<&'a FakeStaff> {
    s.salon
        .staff
        .iter()
        .filter(|st| st.bookable && service.rendered_by(st))
        .filter(|st| staff_id == 0 || st.id == staff_id)
        .collect()
}

fn book_dates(s: &Inner, pairs: &[(String, String)]) -> Response {
    let staff_id: u64 = q(pairs, "staff_id")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let Some(ref service) = visit_of(s, &service_ids(pairs)) else {
        return envelope(
            StatusCode::OK,
            json!({"booking_days": [], "booking_dates": [], "working_days": [], "working_dates": []}),
            json!([]),
        );
    };
    let today = now_local(s).date();
    let parse = |k| q(pairs, k).and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok());
    let from = parse("date_from").unwrap_or(today);
    let to = parse("date_to").unwrap_or(from + Duration::days(30));
    let mut dates = Vec::new();
    let mut day = from;
    while day <= to {
        if candidates(s, staff_id, service)
            .iter()
            .any(|st| !free_times(s, st, service, day).is_empty())
        {
            dates.push(day);
        }
        day += Duration::days(1);
    }
    let mut days: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in &dates {
        days.entry(d.month().to_string())
            .or_default()
            .push(d.day().to_string());
    }
    let strings: Vec<String> = dates.iter().map(|d| d.to_string()).collect();
    envelope(
        StatusCode::OK,
        json!({"booking_days": days, "booking_dates": strings, "working_days": days, "working_dates": strings}),
        json!([]),
    )
}

fn book_times(s: &Inner, staff: &str, date: &str, pairs: &[(String, String)]) -> Response {
    let (Ok(staff_id), Ok(day)) = (
        staff.parse::<u64>(),
        NaiveDate::parse_from_str(date, "%Y-%m-%d"),
    ) else {
        return bad_format();
    };
    let Some(ref service) = visit_of(s, &service_ids(pairs)) else {
        return envelope(StatusCode::OK, json!([]), json!([]));
    };
    if staff_id != 0 && staff_of(s, staff_id).is_none() {
        return error(StatusCode::NOT_FOUND, "Сотрудник не найден");
    }
    let mut times: Vec<NaiveDateTime> = candidates(s, staff_id, service)
        .iter()
        .flat_map(|st| free_times(s, st, service, day))
        .collect();
    times.sort();
    times.dedup();
    let tz = s.salon.timezone;
    let list: Vec<Value> = times
        .iter()
        .map(|t| {
            json!({
                "time": t.format("%H:%M").to_string(),
                "seance_length": service.seance_length,
                "sum_length": service.seance_length,
                "datetime": offset_of(tz, *t).format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            })
        })
        .collect();
    envelope(StatusCode::OK, json!(list), json!([]))
}

// A test fake: the error is the HTTP answer itself, built once per refused request.
#[allow(clippy::result_large_err)]
/// Validates one appointment; `Ok((staff, services, local))` or the error answer.
fn validate(
    s: &Inner,
    a: &Value,
    ignore: Option<u64>,
) -> Result<(u64, Vec<u64>, NaiveDateTime), Response> {
    let tz = s.salon.timezone;
    let ids: Vec<u64> = a["services"]
        .as_array()
        .ok_or_else(bad_format)?
        .iter()
        .map(|v| v.as_u64().ok_or_else(bad_format))
        .collect::<Result<_, _>>()?;
    let service = visit_of(s, &ids)
        .ok_or_else(|| error(StatusCode::UNPROCESSABLE_ENTITY, "Услуга не найдена"))?;
    let local = parse_local(&a["datetime"], tz).ok_or_else(bad_format)?;
    let staff_id = a["staff_id"].as_u64().ok_or_else(bad_format)?;
    if staff_id == 0 {
        return candidates(s, 0, &service)
            .into_iter()
            .find(|st| is_free(s, st, local, service.seance_length, ignore))
            .map(|st| (st.id, ids.clone(), local))
            .ok_or_else(|| {
                error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Нет свободных сотрудников на выбранное время",
                )
            });
    }
    let staff = staff_of(s, staff_id)
        .ok_or_else(|| error(StatusCode::UNPROCESSABLE_ENTITY, "Сотрудник не найден"))?;
    if !staff.bookable
        || !service.rendered_by(staff)
        || !is_free(s, staff, local, service.seance_length, ignore)
    {
        return Err(time_taken(staff, local));
    }
    Ok((staff_id, ids, local))
}

fn book_check(s: &Inner, body: &Value) -> Response {
    let Some(list) = body["appointments"].as_array() else {
        return bad_format();
    };
    for a in list {
        if let Err(resp) = validate(s, a, None) {
            return resp;
        }
    }
    created_no_data()
}

fn book_record(s: &mut Inner, body: &Value) -> Response {
    let Some(list) = body["appointments"].as_array().cloned() else {
        return bad_format();
    };
    let phone = body["phone"].as_str().unwrap_or("");
    if !(10..=15).contains(&phone.len()) || !phone.bytes().all(|b| b.is_ascii_digit()) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Неверный формат номера телефона",
        );
    }
    let fullname = body["fullname"].as_str().unwrap_or("").trim().to_owned();
    if fullname.is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Не указано имя клиента");
    }
    let mut out = Vec::new();
    for a in &list {
        let (staff_id, ids, local) = match validate(s, a, None) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let len = visit_of(s, &ids).map_or(3600, |v| v.seance_length);
        let (service_id, more_service_ids) = (ids[0], ids[1..].to_vec());
        let id = s.next_id;
        s.next_id += 1;
        let hash = format!("{:032x}", id * 7919);
        s.records.push(FakeRecord {
            id,
            hash: hash.clone(),
            staff_id,
            service_id,
            more_service_ids,
            local,
            length_sec: len,
            phone: phone.to_owned(),
            fullname: fullname.clone(),
            email: body["email"].as_str().unwrap_or("").to_owned(),
            comment: body["comment"].as_str().unwrap_or("").to_owned(),
            api_id: body["api_id"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| body["api_id"].to_string()),
            deleted: false,
            attendance: 0,
            source: "online",
            labels: Vec::new(),
            custom_fields: json!([]),
            custom_color: String::new(),
        });
        out.push(json!({"id": a["id"], "record_id": id, "record_hash": hash}));
    }
    envelope(StatusCode::CREATED, json!(out), json!([]))
}

fn find(s: &Inner, rid: &str, hash: Option<&str>) -> Option<FakeRecord> {
    let id: u64 = rid.parse().ok()?;
    s.records
        .iter()
        .find(|r| r.id == id && hash.is_none_or(|h| h == r.hash))
        .cloned()
}

fn delete(s: &mut Inner, rid: &str, hash: Option<&str>) -> Response {
    let Some(found) = find(s, rid, hash).filter(|r| !r.deleted) else {
        return error(StatusCode::NOT_FOUND, "Запись не найдена");
    };
    if let Some(r) = s.records.iter_mut().find(|r| r.id == found.id) {
        r.deleted = true;
    }
    StatusCode::NO_CONTENT.into_response()
}

fn move_record(s: &mut Inner, rid: &str, body: &Value) -> Response {
    let Some(rec) = find(s, rid, None).filter(|r| !r.deleted) else {
        return error(StatusCode::NOT_FOUND, "Запись не найдена");
    };
    let datetime = match body.get("datetime") {
        Some(v) => v.clone(),
        // Only the comment changes: the time stays.
        None => json!(rec.local.format("%Y-%m-%d %H:%M:%S").to_string()),
    };
    let a = json!({"services": rec.service_ids(), "staff_id": rec.staff_id, "datetime": datetime});
    let local = match validate(s, &a, Some(rec.id)) {
        Ok((_, _, local)) => local,
        Err(resp) => return resp,
    };
    let tz = s.salon.timezone;
    let moved = {
        let Some(r) = s.records.iter_mut().find(|r| r.id == rec.id) else {
            return error(StatusCode::NOT_FOUND, "Запись не найдена");
        };
        r.local = local;
        // Optional and taken as given: left out, the salon's comment stays; `""` wipes it.
        if let Some(c) = body.get("comment").and_then(Value::as_str) {
            r.comment = c.to_owned();
        }
        r.clone()
    };
    let staff_name = staff_of(s, moved.staff_id)
        .map(|x| x.name.clone())
        .unwrap_or_default();
    let services: Vec<Value> = moved
        .service_ids()
        .into_iter()
        .map(|id| {
            let title = service_of(s, id)
                .map(|x| x.title.clone())
                .unwrap_or_default();
            json!({"id": id, "title": title, "cost": 0, "discount": 0})
        })
        .collect();
    // The documented answer: unix dates, string company numbers, no `meta`.
    (
        StatusCode::OK,
        axum::Json(json!({
            "success": true,
            "data": {
                "id": moved.id,
                "services": services,
                "company": {"id": s.salon.company_id, "title": s.salon.title, "timezone": "0", "city_id": "0"},
                "staff": {"id": moved.staff_id, "name": staff_name, "rating": "5"},
                "date": offset_of(tz, moved.local).timestamp(),
                "create_date": Utc::now().timestamp(),
                "comment": moved.comment,
                "deleted": false,
                "length": moved.length_sec,
                "online": true,
                "api_id": moved.api_id,
            }
        })),
    )
        .into_response()
}

/// `GET /book_record/…`: a bare object with `+0500`-style offsets.
fn online_record_json(s: &Inner, r: &FakeRecord) -> Value {
    let tz = s.salon.timezone;
    let at = offset_of(tz, r.local);
    let services: Vec<Value> = r
        .service_ids()
        .into_iter()
        .map(|id| {
            let service = service_of(s, id);
            json!({
                "id": id, "title": service.map(|x| x.title.clone()),
                "cost": service.map(|x| x.price_min),
                "seance_length": service.map_or(r.length_sec, |x| x.seance_length), "amount": 1
            })
        })
        .collect();
    json!({
        "id": r.id,
        "services": services,
        "company": {"id": s.salon.company_id, "title": s.salon.title, "timezone": 5,
                    "allow_delete_record": true, "allow_change_record": true},
        "staff": {"id": r.staff_id, "name": staff_of(s, r.staff_id).map(|x| x.name.clone()), "position": []},
        "clients_count": 1,
        "date": r.local.format("%Y-%m-%d %H:%M:%S").to_string(),
        "datetime": at.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
        "create_date": at.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
        "comment": r.comment, "deleted": r.deleted, "attendance": r.attendance,
        "length": r.length_sec, "online": true, "api_id": r.api_id,
        "last_change_date": Utc::now().with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S%z").to_string(),
    })
}

/// `GET /record/…` and webhooks: the full record, `+05:00` datetime, `+0500` create date,
/// numeric client phone, `[]` custom fields.
pub fn admin_record_json_for(salon: &FakeSalon, r: &FakeRecord) -> Value {
    let tz = salon.timezone;
    let staff = salon.staff.iter().find(|x| x.id == r.staff_id);
    let services: Vec<Value> = r
        .service_ids()
        .into_iter()
        .map(|id| {
            let service = salon.services.iter().find(|x| x.id == id);
            let price = service.map(|x| x.price_min).unwrap_or(0.0);
            json!({"id": id, "title": service.map(|x| x.title.clone()),
                   "cost": price, "first_cost": price, "discount": 0, "amount": 1})
        })
        .collect();
    let at = offset_of(tz, r.local);
    json!({
        "id": r.id, "company_id": salon.company_id, "staff_id": r.staff_id,
        "services": services,
        "goods_transactions": [],
        "staff": {"id": r.staff_id, "name": staff.map(|x| x.name.clone()), "position": []},
        "client": {"id": 1, "name": r.fullname, "phone": r.phone.parse::<u64>().ok(), "email": r.email, "custom_fields": []},
        "comer": null, "clients_count": 1,
        "date": r.local.format("%Y-%m-%d %H:%M:%S").to_string(),
        "datetime": at.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        "create_date": at.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
        "comment": r.comment, "visit_attendance": r.attendance, "attendance": r.attendance,
        "confirmed": 1, "seance_length": r.length_sec, "length": r.length_sec,
        "api_id": r.api_id, "visit_id": r.id.to_string(), "deleted": r.deleted,
        "custom_fields": r.custom_fields, "documents": [],
        "custom_color": r.custom_color, "custom_font_color": "#ffffff",
        "record_labels": r.labels.iter().map(|id| json!({
            "id": id.to_string(), "title": format!("Метка {id}"), "color": "#009800",
            "icon": "unlock", "font_color": "#ffffff"
        })).collect::<Vec<_>>(),
        "last_change_date": at.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
    })
}

fn admin_record_json(s: &Inner, r: &FakeRecord) -> Value {
    admin_record_json_for(&s.salon, r)
}

fn records_page(s: &Inner, pairs: &[(String, String)]) -> Response {
    let page: usize = q(pairs, "page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    // Larger pages are silently cut to 200, as the vendor does.
    let count: usize = q(pairs, "count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
        .min(s.page_cap);
    let staff: Option<u64> = q(pairs, "staff_id").and_then(|v| v.parse().ok());
    let with_deleted = q(pairs, "with_deleted") == Some("1");
    let parse = |k| q(pairs, k).and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok());
    let (from, to) = (parse("start_date"), parse("end_date"));
    let all: Vec<&FakeRecord> = s
        .records
        .iter()
        .filter(|r| with_deleted || !r.deleted)
        .filter(|r| staff.is_none_or(|id| r.staff_id == id))
        .filter(|r| {
            from.is_none_or(|f| r.local.date() >= f) && to.is_none_or(|t| r.local.date() <= t)
        })
        .collect();
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * count)
        .take(count)
        .map(|r| admin_record_json(s, r))
        .collect();
    envelope(
        StatusCode::OK,
        json!(items),
        json!({"page": page, "total_count": all.len()}),
    )
}

/// `PUT /record/{company}/{id}`: a full update with the create call's body. The fields create
/// requires must all be present (a partial body is refused, as the vendor's "full update"
/// promises); what is given replaces what the record held.
fn admin_update(s: &mut Inner, rid: &str, body: &Value) -> Response {
    let tz = s.salon.timezone;
    let Some(found) = find(s, rid, None).filter(|r| !r.deleted) else {
        return error(StatusCode::NOT_FOUND, "Запись не найдена");
    };
    let (Some(staff_id), Some(service_id), Some(local), Some(len)) = (
        body["staff_id"].as_u64(),
        body["services"]
            .as_array()
            .and_then(|l| l.first())
            .and_then(|x| x["id"].as_u64()),
        parse_local(&body["datetime"], tz),
        body["seance_length"].as_i64(),
    ) else {
        return bad_format();
    };
    if body["client"]["phone"].as_str().is_none_or(str::is_empty) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Не указан телефон клиента",
        );
    }
    let Some(r) = s.records.iter_mut().find(|r| r.id == found.id) else {
        return error(StatusCode::NOT_FOUND, "Запись не найдена");
    };
    r.staff_id = staff_id;
    r.service_id = service_id;
    r.local = local;
    r.length_sec = len;
    r.phone = body["client"]["phone"].as_str().unwrap_or("").to_owned();
    r.fullname = body["client"]["name"].as_str().unwrap_or("").to_owned();
    r.email = body["client"]["email"].as_str().unwrap_or("").to_owned();
    r.comment = body["comment"].as_str().unwrap_or("").to_owned();
    r.api_id = body["api_id"].as_str().unwrap_or("").to_owned();
    r.attendance = body["attendance"].as_i64().unwrap_or(0);
    // A full update: what it is not given is reset, as the docs' "same body as create" reads.
    r.labels = label_ids(&body["record_labels"]);
    r.custom_fields = object_or_empty(&body["custom_fields"]);
    r.custom_color = body["custom_color"].as_str().unwrap_or("").to_owned();
    let updated = r.clone();
    s.record_updates += 1;
    envelope(
        StatusCode::CREATED,
        admin_record_json(s, &updated),
        json!([]),
    )
}

/// Label ids as `record_labels` is written: strings (the docs' example) or numbers.
fn label_ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|l| {
            l.iter()
                .filter_map(|x| x.as_u64().or_else(|| x.as_str()?.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

fn object_or_empty(v: &Value) -> Value {
    match v {
        Value::Object(m) if !m.is_empty() => v.clone(),
        _ => json!([]),
    }
}

fn admin_create(s: &mut Inner, body: &Value) -> Response {
    let tz = s.salon.timezone;
    let (Some(staff_id), Some(service_id), Some(local)) = (
        body["staff_id"].as_u64(),
        body["services"]
            .as_array()
            .and_then(|l| l.first())
            .and_then(|x| x["id"].as_u64()),
        parse_local(&body["datetime"], tz),
    ) else {
        return bad_format();
    };
    let Some(len) = body["seance_length"].as_i64() else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Не указана длительность");
    };
    let id = s.next_id;
    s.next_id += 1;
    let rec = FakeRecord {
        id,
        hash: format!("{:032x}", id * 7919),
        staff_id,
        service_id,
        more_service_ids: Vec::new(),
        local,
        length_sec: len,
        phone: body["client"]["phone"].as_str().unwrap_or("").to_owned(),
        fullname: body["client"]["name"].as_str().unwrap_or("").to_owned(),
        email: body["client"]["email"].as_str().unwrap_or("").to_owned(),
        comment: body["comment"].as_str().unwrap_or("").to_owned(),
        api_id: body["api_id"].as_str().unwrap_or("").to_owned(),
        deleted: false,
        attendance: body["attendance"].as_i64().unwrap_or(0),
        source: "admin",
        labels: label_ids(&body["record_labels"]),
        custom_fields: object_or_empty(&body["custom_fields"]),
        custom_color: body["custom_color"].as_str().unwrap_or("").to_owned(),
    };
    let out = admin_record_json(s, &rec);
    s.records.push(rec);
    envelope(StatusCode::CREATED, json!([out]), json!([]))
}

// ---------------------------------------------------------------------------------------------
// Client cards
// ---------------------------------------------------------------------------------------------

/// A card in the shape of the documented `POST /clients` answer (clients-create.response.json),
/// emptied: the phone a JSON number, `custom_fields` PHP's `[]`.
fn client_template(id: u64) -> Value {
    let mut card = contract("clients-create.response.json")["data"].clone();
    card["id"] = json!(id);
    for key in ["surname", "patronymic", "email", "card", "comment"] {
        card[key] = json!("");
    }
    for key in [
        "discount",
        "importance_id",
        "sex_id",
        "spent",
        "balance",
        "visits",
        "sms_check",
        "sms_not",
    ] {
        card[key] = json!(0);
    }
    card["sex"] = json!("Неизвестно");
    card["importance"] = json!("Без класса важности");
    card["birth_date"] = json!(0);
    card["categories"] = json!([]);
    card["custom_fields"] = json!([]);
    card
}

fn digits(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    text.chars().filter(char::is_ascii_digit).collect()
}

/// Name and phone are required; the phone must have 9 to 15 digits; one card per phone. The
/// messages are the documented ones of the bulk endpoint.
fn check_card(s: &Inner, body: &Value, except: Option<u64>) -> Result<String, &'static str> {
    if body["name"].as_str().is_none_or(|n| n.trim().is_empty()) {
        return Err("Не указано имя клиента");
    }
    let phone = digits(&body["phone"]);
    if phone.is_empty() {
        return Err("Номер телефона клиента не может быть пустым");
    }
    if !(9..=15).contains(&phone.len()) {
        return Err("Телефон должен содержать от 9 до 15 цифр");
    }
    let taken = s
        .clients
        .iter()
        .any(|(id, c)| Some(*id) != except && digits(&c["phone"]) == phone);
    if taken {
        return Err("Клиент с указанным телефоном уже существует в базе");
    }
    Ok(phone)
}

/// Writes the documented fields of a create or update body into a card. Absent fields are
/// reset: nothing says `PUT` merges, so the fake takes the stricter reading.
fn write_card(card: &mut Value, body: &Value, phone: &str) {
    card["name"] = body["name"].clone();
    card["phone"] = json!(phone.parse::<u64>().unwrap_or(0));
    for key in ["surname", "patronymic", "email", "card", "comment"] {
        card[key] = json!(body[key].as_str().unwrap_or(""));
    }
    for key in [
        "sex_id",
        "importance_id",
        "discount",
        "sms_check",
        "sms_not",
    ] {
        card[key] = json!(body[key].as_i64().unwrap_or(0));
    }
    card["birth_date"] = match body["birth_date"].as_str() {
        Some(d) if NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok() => json!(d),
        _ => json!(0),
    };
    let labels = body
        .get("labels")
        .or_else(|| body.get("categories"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    card["categories"] = Value::Array(
        labels
            .iter()
            .filter_map(Value::as_u64)
            .map(|id| json!({"id": id, "title": format!("Категория {id}"), "color": "#e8d313"}))
            .collect(),
    );
    card["custom_fields"] = match &body["custom_fields"] {
        Value::Object(m) if !m.is_empty() => Value::Object(m.clone()),
        _ => json!([]),
    };
}

fn client_create(s: &mut Inner, body: &Value) -> Response {
    let phone = match check_card(s, body, None) {
        Ok(p) => p,
        Err(why) => return error(StatusCode::UNPROCESSABLE_ENTITY, why),
    };
    let id = s.next_client_id;
    s.next_client_id += 1;
    let mut card = client_template(id);
    write_card(&mut card, body, &phone);
    // Spent and balance are taken once, when the client is added.
    card["spent"] = json!(body["spent"].as_i64().unwrap_or(0));
    card["balance"] = json!(body["balance"].as_i64().unwrap_or(0));
    s.clients.insert(id, card.clone());
    envelope(StatusCode::CREATED, card, json!([]))
}

fn client_update(s: &mut Inner, id: &str, body: &Value) -> Response {
    let Some(id) = id
        .parse::<u64>()
        .ok()
        .filter(|id| s.clients.contains_key(id))
    else {
        return error(StatusCode::NOT_FOUND, "Клиент не найден");
    };
    let phone = match check_card(s, body, Some(id)) {
        Ok(p) => p,
        Err(why) => return error(StatusCode::UNPROCESSABLE_ENTITY, why),
    };
    let Some(card) = s.clients.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "Клиент не найден");
    };
    write_card(card, body, &phone);
    envelope(StatusCode::OK, card.clone(), json!([]))
}

/// `POST /company/{id}/clients/search`: `page`, `page_size` (25 by default, cut at 200),
/// `fields` (only those come back), `filters` of type `id` and `quick_search` (a part of the
/// name, of the phone's digits or of the email); other filter types are accepted and ignored.
fn clients_search(s: &Inner, body: &Value) -> Response {
    let page = body["page"].as_u64().unwrap_or(1).max(1) as usize;
    let size = body["page_size"].as_u64().unwrap_or(25).clamp(1, 200) as usize;
    let fields: Vec<String> = body["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let filters = body["filters"].as_array().cloned().unwrap_or_default();
    let matches = |card: &Value| {
        filters.iter().all(|f| match f["type"].as_str() {
            Some("id") => f["state"]["value"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|i| i.as_u64() == card["id"].as_u64())),
            Some("quick_search") => {
                let q = f["state"]["value"].as_str().unwrap_or("").to_lowercase();
                let q_digits: String = q.chars().filter(char::is_ascii_digit).collect();
                let name = card["name"].as_str().unwrap_or("").to_lowercase();
                let email = card["email"].as_str().unwrap_or("").to_lowercase();
                q.is_empty()
                    || name.contains(&q)
                    || email.contains(&q)
                    || (q_digits.len() == q.len() && digits(&card["phone"]).contains(&q_digits))
            }
            _ => true,
        })
    };
    let found: Vec<&Value> = s.clients.values().filter(|c| matches(c)).collect();
    let data: Vec<Value> = found
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|card| {
            if fields.is_empty() {
                return (*card).clone();
            }
            let mut out = serde_json::Map::new();
            for f in &fields {
                out.insert(f.clone(), card.get(f).cloned().unwrap_or(Value::Null));
            }
            Value::Object(out)
        })
        .collect();
    envelope(
        StatusCode::OK,
        Value::Array(data),
        json!({"total_count": found.len()}),
    )
}
