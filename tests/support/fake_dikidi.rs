//! A fake Dikidi widget backend over real HTTP on 127.0.0.1, answering in the shapes recorded in
//! ../shared/contracts/dikidi/ and tests/fixtures/dikidi/ (docs/dikidi.md): the mobile
//! `{error:{code,message},data}` envelope, top-level `get_dates_true`, `times` as an object or
//! `[]`, zone-less local `YYYY-MM-DD HH:MM:SS`, string error codes, `{"error": "Это не AJAX
//! запрос"}` without `X-Requested-With`.
//!
//! Booking is the widget's: `company_services` opens a session (`Set-Cookie: cookie_name=
//! <sig>~<hash>`, as `Zimin0/Custom-Dikidi-Api:utils.py @ 928fcc0` reads it), and
//! `time_reservation`, `check` and `record` are refused without that hash as `session` and the
//! cookie. A salon can demand the client's SMS code (the fake "sends" one and books only with
//! it) or a captcha (never booked). `records_info` answers as the public clients show: an object
//! keyed by record id, `{"<id>": {"record": {id, time, time_to, master_username, master_post,
//! service_id, service_name}}}`, and, like the public sources, says nothing of cancelled
//! records: they are simply absent, unless a test asks for an explicit `deleted` marker. It can
//! also answer `[]` for everything, as an anonymous caller might get. A test can act as the
//! salon (cancel, move), switch the payload shape, and read the request log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration as StdDuration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/dikidi");
pub const CONTRACTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/contracts/dikidi"
);

pub fn fixture(dir: &str, name: &str) -> Value {
    let path = std::path::Path::new(dir).join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} unreadable: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[derive(Debug, Clone)]
pub struct FakeRecord {
    pub id: u64,
    pub master_id: u64,
    pub service_id: u64,
    pub start: NaiveDateTime,
    pub minutes: i64,
    pub phone: String,
    pub name: String,
    pub comment: String,
    pub cancelled: bool,
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub at: Instant,
    pub path: String,
    pub user_agent: String,
    pub ajax: bool,
    pub cookie: Option<String>,
}

#[derive(Debug, Default)]
struct Session {
    /// `time_reservation` held a time in this session.
    reserved: bool,
    master_id: u64,
    service_id: u64,
    start: Option<NaiveDateTime>,
    phone: Option<String>,
    name: Option<String>,
    comment: Option<String>,
}

/// id, name, category id, category, cost in rubles, minutes, master ids.
type FakeService = (u64, &'static str, u64, &'static str, i64, i64, Vec<u64>);

struct Inner {
    company_id: u64,
    tz: Tz,
    services: Vec<FakeService>,
    masters: Vec<(u64, &'static str)>,
    records: BTreeMap<u64, FakeRecord>,
    sessions: BTreeMap<String, Session>,
    next_id: u64,
    changed_shape: bool,
    log: Vec<Logged>,
    demand_code: bool,
    demand_captcha: bool,
    /// SMS "sent" to clients: phone and code.
    sms: Vec<(String, String)>,
    /// Cancelled records come back with `"deleted": 1` instead of being left out.
    mark_deleted: bool,
    /// `records_info` answers `[]` whatever is asked.
    records_info_empty: bool,
    /// Every `record` form received.
    record_forms: Vec<Vec<(String, String)>>,
}

#[derive(Clone)]
pub struct FakeDikidi {
    inner: Arc<Mutex<Inner>>,
    addr: SocketAddr,
}

pub const COMPANY: u64 = 550001;
pub const ANNA: u64 = 1357205;
pub const OLGA: u64 = 1357206;
pub const HAIRCUT: u64 = 3001;
pub const MANICURE: u64 = 3002;

impl FakeDikidi {
    pub async fn start(tz: Tz) -> FakeDikidi {
        let inner = Inner {
            company_id: COMPANY,
            tz,
            services: vec![
                (
                    HAIRCUT,
                    "Женская стрижка",
                    81001,
                    "Стрижки",
                    2000,
                    60,
                    vec![ANNA, OLGA],
                ),
                (MANICURE, "Маникюр", 81002, "Ногти", 1500, 90, vec![ANNA]),
            ],
            masters: vec![(ANNA, "Анна"), (OLGA, "Ольга")],
            records: BTreeMap::new(),
            sessions: BTreeMap::new(),
            next_id: 91_000_001,
            changed_shape: false,
            log: Vec::new(),
            demand_code: false,
            demand_captcha: false,
            sms: Vec::new(),
            mark_deleted: false,
            records_info_empty: false,
            record_forms: Vec::new(),
        };
        let fake = FakeDikidi {
            inner: Arc::new(Mutex::new(inner)),
            addr: ([127, 0, 0, 1], 0).into(),
        };
        let app = Router::new().fallback(handle).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("fake dikidi serves");
        });
        FakeDikidi { addr, ..fake }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn base_url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).expect("url")
    }

    pub fn records(&self) -> Vec<FakeRecord> {
        self.lock().records.values().cloned().collect()
    }

    pub fn record(&self, id: &str) -> Option<FakeRecord> {
        let id: u64 = id.parse().ok()?;
        self.lock().records.get(&id).cloned()
    }

    /// The salon cancels a record in its Dikidi journal.
    pub fn salon_cancels(&self, id: &str) {
        let id: u64 = id.parse().expect("numeric id");
        self.lock().records.get_mut(&id).expect("record").cancelled = true;
    }

    /// The salon moves a record to another local start.
    pub fn salon_moves(&self, id: &str, to: NaiveDateTime) {
        let id: u64 = id.parse().expect("numeric id");
        self.lock().records.get_mut(&id).expect("record").start = to;
    }

    /// Dikidi "deploys" a new payload shape (or goes back to the known one).
    pub fn set_changed_shape(&self, on: bool) {
        self.lock().changed_shape = on;
    }

    /// The salon confirms online bookings by SMS: `record` books only with the code sent.
    pub fn demand_code(&self, on: bool) {
        self.lock().demand_code = on;
    }

    /// The salon's widget demands a captcha at `record`.
    pub fn demand_captcha(&self, on: bool) {
        self.lock().demand_captcha = on;
    }

    /// The SMS codes "sent", oldest first: (phone, code).
    pub fn sms(&self) -> Vec<(String, String)> {
        self.lock().sms.clone()
    }

    /// Cancelled records are listed with `"deleted": 1` (a positive signal) instead of left out.
    pub fn mark_deleted(&self, on: bool) {
        self.lock().mark_deleted = on;
    }

    /// `records_info` answers `[]` for any ids, as an anonymous caller might be answered.
    pub fn records_info_empty(&self, on: bool) {
        self.lock().records_info_empty = on;
    }

    /// Every `record` form received, oldest first.
    pub fn record_forms(&self) -> Vec<Vec<(String, String)>> {
        self.lock().record_forms.clone()
    }

    pub fn log(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    pub fn calls_to(&self, endpoint: &str) -> usize {
        self.lock()
            .log
            .iter()
            .filter(|l| l.path.contains(endpoint))
            .count()
    }

    /// The most requests that arrived within any `window`.
    pub fn max_in_window(&self, window: StdDuration) -> usize {
        let times: Vec<Instant> = self.lock().log.iter().map(|l| l.at).collect();
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| t.duration_since(times[i]) < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

fn query_pairs(s: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn ok(data: Value) -> Value {
    json!({"error": {"code": 0, "message": ""}, "data": data})
}

fn local_fmt(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

impl Inner {
    fn today(&self) -> NaiveDate {
        Utc::now().with_timezone(&self.tz).date_naive()
    }

    fn minutes_of(&self, service: u64) -> i64 {
        self.services
            .iter()
            .find(|s| s.0 == service)
            .map(|s| s.5)
            .unwrap_or(60)
    }

    fn masters_of(&self, service: u64) -> Vec<u64> {
        self.services
            .iter()
            .find(|s| s.0 == service)
            .map(|s| s.6.clone())
            .unwrap_or_default()
    }

    /// Hourly 10:00–18:00 every day from tomorrow (so no test meets a past slot), free unless
    /// an active record overlaps.
    fn free_times(&self, master: u64, service: u64, day: NaiveDate) -> Vec<NaiveDateTime> {
        if day <= self.today() || day > self.today() + Duration::days(60) {
            return Vec::new();
        }
        let len = Duration::minutes(self.minutes_of(service));
        (10..18)
            .filter_map(|h| NaiveTime::from_hms_opt(h, 0, 0))
            .map(|t| day.and_time(t))
            .filter(|start| {
                !self.records.values().any(|r| {
                    !r.cancelled
                        && r.master_id == master
                        && r.start < *start + len
                        && *start < r.start + Duration::minutes(r.minutes)
                })
            })
            .collect()
    }

    fn masters_for(&self, q: &[(String, String)], service: u64) -> Vec<u64> {
        match get(q, "master_id").and_then(|m| m.parse().ok()) {
            Some(m) => vec![m],
            None => self.masters_of(service),
        }
    }

    fn company_services(&self) -> Value {
        let mut cats: BTreeMap<u64, Value> = BTreeMap::new();
        for (id, name, cat_id, cat, cost, minutes, masters) in &self.services {
            let entry = cats.entry(*cat_id).or_insert_with(|| {
                json!({"id": cat_id, "name": cat, "category_value": 1, "category_custom_sort": 0,
                       "field_sort_service": "name", "services": []})
            });
            let masters: Vec<Value> = masters
                .iter()
                .map(|m| {
                    let name = self.masters.iter().find(|x| x.0 == *m).map(|x| x.1);
                    json!({"id": m, "username": name, "image": "", "cost": cost.to_string(),
                           "time": minutes, "price": format!("{cost} ₽"), "floating": 0, "share_id": 0})
                })
                .collect();
            if let Some(list) = entry["services"].as_array_mut() {
                list.push(
                    json!({"id": id, "company_service_id": id, "name": name, "image": "",
                    "cost": cost.to_string(), "time": minutes, "floating": 0, "discount": 0,
                    "price": format!("{cost} ₽"), "share": null, "masters": masters}),
                );
            }
        }
        let list: Vec<Value> = cats.into_values().collect();
        if self.changed_shape {
            return ok(json!({"categories": list}));
        }
        ok(json!({"list": list,
                  "currency": {"id": 1, "title": "Рубль", "abbr": "₽", "iso": "RUB"},
                  "minimal_cost": 1500}))
    }

    fn dates_true(&self, q: &[(String, String)]) -> Value {
        let service: u64 = get(q, "services_id[]")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let parse = |k| get(q, k).and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        let (Some(from), Some(to)) = (parse("date_from"), parse("date_to")) else {
            return json!({"error": 1, "message": "dates required"});
        };
        let masters = self.masters_for(q, service);
        let days: Vec<String> = from
            .iter_days()
            .take_while(|d| *d <= to)
            .filter(|d| {
                masters
                    .iter()
                    .any(|m| !self.free_times(*m, service, *d).is_empty())
            })
            .map(|d| d.format("%Y-%m-%d").to_string())
            .collect();
        if self.changed_shape {
            return json!({"dates": days});
        }
        json!({"dates_true": days})
    }

    fn datetimes(&self, q: &[(String, String)]) -> Value {
        let service: u64 = get(q, "service_id[]")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let masters = self.masters_for(q, service);
        let day = get(q, "date")
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .unwrap_or(self.today() + Duration::days(1));
        let mut times = serde_json::Map::new();
        let mut masters_json = serde_json::Map::new();
        for m in &masters {
            let name = self.masters.iter().find(|x| x.0 == *m).map(|x| x.1);
            masters_json.insert(m.to_string(), json!({"id": m, "username": name}));
            let free = self.free_times(*m, service, day);
            if !free.is_empty() {
                let list: Vec<String> = free
                    .into_iter()
                    .map(|t| {
                        if self.changed_shape {
                            t.format("%Y-%m-%dT%H:%M:%S+03:00").to_string()
                        } else {
                            local_fmt(t)
                        }
                    })
                    .collect();
                times.insert(m.to_string(), json!(list));
            }
        }
        let times = if times.is_empty() {
            json!([])
        } else {
            Value::Object(times)
        };
        let key = if self.changed_shape { "slots" } else { "times" };
        ok(
            json!({"company": {"id": self.company_id}, "dates_true": [day.format("%Y-%m-%d").to_string()],
                  "date_near": day.format("%Y-%m-%d").to_string(),
                  "masters": masters_json, key: times}),
        )
    }

    fn records_info(&self, q: &[(String, String)]) -> Value {
        let mut out = serde_json::Map::new();
        for (_, id) in q.iter().filter(|(k, _)| k == "record_id_list[]") {
            if self.records_info_empty {
                break;
            }
            let Some(r) = id.parse::<u64>().ok().and_then(|id| self.records.get(&id)) else {
                continue;
            };
            if r.cancelled && !self.mark_deleted {
                continue;
            }
            let service = self.services.iter().find(|s| s.0 == r.service_id);
            let mut body = json!({"id": r.id, "time": local_fmt(r.start),
                "time_to": local_fmt(r.start + Duration::minutes(r.minutes)),
                "master_username": self.masters.iter().find(|m| m.0 == r.master_id).map(|m| m.1),
                "master_post": "", "service_id": r.service_id.to_string(),
                "service_name": service.map(|s| s.1)});
            if r.cancelled {
                body["deleted"] = json!(1);
            }
            out.insert(
                r.id.to_string(),
                if self.changed_shape {
                    body
                } else {
                    json!({"record": body})
                },
            );
        }
        if out.is_empty() {
            return ok(json!([]));
        }
        ok(Value::Object(out))
    }
}

/// The hash of the `cookie_name=<sig>~<hash>` cookie.
fn cookie_session(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies
        .split(';')
        .filter_map(|c| c.trim().strip_prefix("cookie_name="))
        .filter_map(|v| v.split_once('~'))
        .map(|(_, hash)| hash.replace("%3A", ":"))
        .next()
}

/// The session a widget step carries: the same hash as `session` in the query (and in the form
/// of the POST steps) and in the cookie, and known to the fake.
fn step_session(
    s: &Inner,
    q: &[(String, String)],
    form: &[(String, String)],
    cookie: Option<&str>,
    post: bool,
) -> Option<String> {
    let hash = get(q, "session")?;
    if cookie != Some(hash) || (post && get(form, "session") != Some(hash)) {
        return None;
    }
    s.sessions.contains_key(hash).then(|| hash.to_owned())
}

fn no_session() -> Value {
    json!({"error": {"code": "USER_AUTHORISATION_ERROR", "message": "Сессия не найдена"}})
}

async fn handle(
    State(fake): State<FakeDikidi>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let q = query_pairs(uri.query().unwrap_or(""));
    let form = query_pairs(std::str::from_utf8(&body).unwrap_or(""));
    let ajax = headers
        .get("x-requested-with")
        .is_some_and(|v| v == "XMLHttpRequest");
    let cookie = cookie_session(&headers);
    let mut s = fake.lock();
    s.log.push(Logged {
        at: Instant::now(),
        path: path.clone(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        ajax,
        cookie: cookie.clone(),
    });
    if !ajax {
        return json_response(json!({"error": "Это не AJAX запрос"}), None);
    }
    let company = ["company_id", "company"]
        .iter()
        .find_map(|k| get(&q, k).or(get(&form, k)))
        .and_then(|c| c.parse::<u64>().ok());
    let endpoint = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_owned();
    if endpoint != "remove_record" && company != Some(s.company_id) {
        return json_response(
            json!({"error": "COMPANY_ERROR", "message": "not found"}),
            None,
        );
    }
    let mut set_cookie = None;
    let session = step_session(
        &s,
        &q,
        &form,
        cookie.as_deref(),
        endpoint != "time_reservation",
    );
    let answer = match endpoint.as_str() {
        "company_services" => {
            // The widget's first call opens its session.
            let hash = format!("{:040x}", 0xd1c1d1_u64 + s.sessions.len() as u64);
            s.sessions.insert(hash.clone(), Session::default());
            set_cookie = Some(format!(
                "cookie_name=171439abb7face671ce6c97768cfc757b6292360~{hash}; path=/; HttpOnly"
            ));
            s.company_services()
        }
        "get_dates_true" => s.dates_true(&q),
        "get_datetimes" => s.datetimes(&q),
        "records_info" => s.records_info(&q),
        "time_reservation" => {
            let master: u64 = get(&q, "master_id")
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            let service: u64 = get(&q, "services_id[]")
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            let time = get(&q, "time")
                .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").ok());
            match (time, session) {
                (_, None) => no_session(),
                (Some(t), Some(sid)) if s.free_times(master, service, t.date()).contains(&t) => {
                    s.sessions.insert(
                        sid,
                        Session {
                            reserved: true,
                            master_id: master,
                            service_id: service,
                            start: Some(t),
                            ..Session::default()
                        },
                    );
                    let next = s.next_id;
                    ok(json!({"record_id": next, "master_id": master, "duration_string": "1:00"}))
                }
                _ => json!({"error": {"code": "TIME_NOT_AVAILABLE", "message": "Время занято"}}),
            }
        }
        "check" => match session.and_then(|c| s.sessions.get_mut(&c)) {
            Some(sess) if sess.reserved => {
                sess.phone = get(&form, "phone").map(str::to_owned);
                sess.name = get(&form, "first_name").map(str::to_owned);
                sess.comment = get(&form, "comments").map(str::to_owned);
                ok(json!({}))
            }
            _ => no_session(),
        },
        "record" => {
            s.record_forms.push(form.clone());
            let code = get(&form, "code").unwrap_or("").to_owned();
            let phone = session
                .as_ref()
                .and_then(|c| s.sessions.get(c))
                .and_then(|x| x.phone.clone());
            let last_code = s.sms.iter().rev().find(|(p, _)| Some(p) == phone.as_ref());
            let last_code = last_code.map(|(_, c)| c.clone());
            if session.is_none() {
                no_session()
            } else if s.demand_captcha && get(&form, "captcha_token").unwrap_or("").is_empty() {
                json!({"error": {"code": "CAPTCHA_ERROR", "message": "Подтвердите, что вы не робот"}})
            } else if s.demand_code && code.is_empty() {
                let sent = format!("{:04}", 4000 + 37 * (s.sms.len() as u64 + 1));
                s.sms.push((phone.unwrap_or_default(), sent));
                json!({"error": {"code": "SMS_CODE_REQUIRED", "message": "Введите код из СМС"}})
            } else if s.demand_code && Some(&code) != last_code.as_ref() {
                json!({"error": {"code": "SMS_CODE_ERROR", "message": "Неверный код из СМС"}})
            } else {
                let sess = session.and_then(|c| s.sessions.remove(&c));
                match sess {
                    Some(Session {
                        reserved: true,
                        master_id,
                        service_id,
                        start: Some(start),
                        phone: Some(phone),
                        name,
                        comment,
                    }) => {
                        let id = s.next_id;
                        s.next_id += 1;
                        let minutes = s.minutes_of(service_id);
                        s.records.insert(
                            id,
                            FakeRecord {
                                id,
                                master_id,
                                service_id,
                                start,
                                minutes,
                                phone,
                                name: name.unwrap_or_default(),
                                comment: comment.unwrap_or_default(),
                                cancelled: false,
                            },
                        );
                        let booking = json!({"id": id, "time": local_fmt(start),
                        "time_to": local_fmt(start + Duration::minutes(minutes)),
                        "cost": 2000, "duration": minutes, "duration_string": "1:00",
                        "employees": [{"id": master_id, "username": "", "image": ""}],
                        "services": [{"id": service_id, "name": "", "cost": 2000,
                                      "duration": minutes, "duration_string": "1:00",
                                      "icon": {"value": ""}}]});
                        if s.changed_shape {
                            ok(json!({"appointment": booking}))
                        } else {
                            ok(json!({"bookings": [booking],
                                  "currency": {"id": 1, "title": "Рубль", "abbr": "₽", "iso": "RUB"}}))
                        }
                    }
                    _ => no_session(),
                }
            }
        }
        "remove_record" => {
            let id: Option<u64> = get(&q, "id").and_then(|i| i.parse().ok());
            match id.and_then(|id| s.records.get_mut(&id)) {
                Some(r) => {
                    r.cancelled = true;
                    json!({"error": {"code": 0, "message": ""}})
                }
                None => json!({"error": 1, "message": "Запись не найдена"}),
            }
        }
        _ => {
            return (StatusCode::NOT_FOUND, "<html>404</html>").into_response();
        }
    };
    json_response(answer, set_cookie)
}

fn json_response(v: Value, set_cookie: Option<String>) -> Response {
    // Dikidi labels JSON as text/html in places; the client must not trust the header.
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        v.to_string(),
    )
        .into_response();
    if let Some(c) = set_cookie
        && let Ok(v) = c.parse()
    {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Same keys at every level (values and array lengths aside): the fake speaks the fixtures'
/// language.
pub fn same_shape(a: &Value, b: &Value) -> Result<(), String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let kx: Vec<&String> = x.keys().collect();
            let ky: Vec<&String> = y.keys().collect();
            // Maps keyed by ids differ in keys by design; compare their first values.
            if kx.iter().all(|k| k.parse::<u64>().is_ok())
                && ky.iter().all(|k| k.parse::<u64>().is_ok())
            {
                return match (x.values().next(), y.values().next()) {
                    (Some(a), Some(b)) => same_shape(a, b),
                    _ => Ok(()),
                };
            }
            if kx != ky {
                return Err(format!("keys {kx:?} vs {ky:?}"));
            }
            for k in kx {
                same_shape(&x[k], &y[k]).map_err(|e| format!("{k}.{e}"))?;
            }
            Ok(())
        }
        (Value::Array(x), Value::Array(y)) => match (x.first(), y.first()) {
            (Some(a), Some(b)) => same_shape(a, b),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}
