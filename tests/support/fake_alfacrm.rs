//! A fake AlfaCRM account over real HTTP (axum on 127.0.0.1:0), reproducing the v2api contract
//! in ../shared/reference/school-accounting-apis.md §1: `POST /v2api/auth/login` → `{token}`;
//! every other call needs `X-ALFACRM-TOKEN` (tokens die after 15 minutes, or at once on
//! `expire_tokens`) else 401 with a Yii error body; `index` answers `{total,count,page,items}`
//! paged by `per-page` (default 20); `create`/`update` answer `{success,errors,model}` with
//! validation errors as HTTP 200 `success:false`; `cgi/*` need `group_id` or `customer_id` in the
//! query; 429 and outages on demand. Phones are stored as typed.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

pub const EMAIL: &str = "api@school.example";
pub const API_KEY: &str = "alfa-api-key-0123";
pub const BRANCH: i64 = 1;
pub const GROUP_PYTHON: i64 = 12;
pub const GROUP_PYTHON_LATE: i64 = 13;
pub const GROUP_DESIGN: i64 = 21;
/// The lifetime the vendor documents.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

pub fn contracts_dir() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/contracts"
    ));
    assert!(
        dir.join("alfacrm").is_dir(),
        "contracts directory {} is missing: the AlfaCRM fake is checked against it",
        dir.display()
    );
    dir
}

/// An AlfaCRM webhook event. Empty `fields_old`/`fields_rel` arrive as `[]`, full ones as
/// objects.
#[derive(Debug, Deserialize)]
pub struct Webhook {
    pub branch_id: i64,
    pub event: String,
    pub entity: String,
    pub entity_id: i64,
    #[serde(deserialize_with = "map_or_empty_array")]
    pub fields_old: serde_json::Map<String, Value>,
    #[serde(deserialize_with = "map_or_empty_array")]
    pub fields_new: serde_json::Map<String, Value>,
    #[serde(deserialize_with = "map_or_empty_array")]
    pub fields_rel: serde_json::Map<String, Value>,
    pub user_id: i64,
    pub datetime: String,
}

fn map_or_empty_array<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<serde_json::Map<String, Value>, D::Error> {
    match Value::deserialize(d)? {
        Value::Object(m) => Ok(m),
        Value::Array(a) if a.is_empty() => Ok(serde_json::Map::new()),
        other => Err(serde::de::Error::custom(format!(
            "expected an object or [], got {other}"
        ))),
    }
}

#[derive(Default)]
pub struct AlfaState {
    pub tokens: HashMap<String, Instant>,
    pub logins: usize,
    pub customers: Vec<Value>,
    pub groups: Vec<Value>,
    pub cgis: Vec<Value>,
    pub tasks: Vec<Value>,
    pub pays: Vec<Value>,
    /// Every call after login: (path, query, body).
    pub calls: Vec<(String, String, Value)>,
    /// Answer the next N calls with 429.
    pub throttle_next: usize,
    /// Answer every call with 503 while true (an outage).
    pub down: bool,
    /// What the outage page says instead of "maintenance": a proxy in front of the CRM may
    /// echo the request it could not pass on, credentials included.
    pub down_message: Option<String>,
    /// Total 401s answered (expired or unknown tokens).
    pub unauthorized: usize,
    next_id: i64,
}

impl AlfaState {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
}

#[derive(Clone)]
pub struct FakeAlfa {
    pub url: String,
    state: Arc<Mutex<AlfaState>>,
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn yii(status: StatusCode, name: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"name": name, "message": message, "code": 0, "status": status.as_u16()})),
    )
        .into_response()
}

fn rejected(errors: Value) -> Response {
    axum::Json(json!({"success": false, "errors": errors})).into_response()
}

fn saved(model: &Value) -> Response {
    axum::Json(json!({"success": true, "errors": [], "model": model})).into_response()
}

fn query_map(query: &Option<String>) -> HashMap<String, String> {
    query
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

impl FakeAlfa {
    pub async fn start() -> FakeAlfa {
        let mut state = AlfaState {
            next_id: 100,
            ..AlfaState::default()
        };
        state.groups = vec![
            json!({"id": GROUP_PYTHON, "branch_ids": [BRANCH], "teacher_ids": [], "name": "Python, вечерняя",
                   "level_id": null, "status_id": 1, "limit": 12, "note": "",
                   "b_date": "2026-12-07", "e_date": "2027-05-31"}),
            json!({"id": GROUP_PYTHON_LATE, "branch_ids": [BRANCH], "teacher_ids": [], "name": "Python, выходные",
                   "level_id": null, "status_id": 1, "limit": 12, "note": "",
                   "b_date": "2027-01-16", "e_date": "2027-06-30"}),
            json!({"id": GROUP_DESIGN, "branch_ids": [BRANCH], "teacher_ids": [], "name": "Дизайн",
                   "level_id": null, "status_id": 1, "limit": 10, "note": "",
                   "b_date": "2026-01-10", "e_date": "2027-01-10"}),
        ];
        let shared = Arc::new(Mutex::new(state));
        let app = axum::Router::new()
            .route("/v2api/auth/login", post(login))
            .route("/v2api/{branch}/{entity}/{action}", post(branch_call))
            .route("/v2api/{entity}/{action}", post(global_call))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake AlfaCRM");
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAlfa { url, state: shared }
    }

    pub fn state(&self) -> MutexGuard<'_, AlfaState> {
        self.state.lock().unwrap()
    }

    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    /// Every token issued so far dies, as after 15 minutes.
    pub fn expire_tokens(&self) {
        self.state().tokens.clear();
    }

    /// A customer a manager typed in by hand.
    pub fn add_customer(&self, name: &str, phone: &str, email: Option<&str>) -> i64 {
        let mut s = self.state();
        let id = s.id();
        s.customers.push(json!({
            "id": id, "name": name, "branch_ids": [BRANCH], "is_study": 0, "legal_type": 1,
            "phone": [phone], "email": email.map(|e| vec![e]).unwrap_or_default(),
            "balance": "0.00", "note": "", "assigned_id": null, "lead_status_id": null,
        }));
        id
    }

    pub fn customers(&self) -> Vec<Value> {
        self.state().customers.clone()
    }

    pub fn customer(&self, id: i64) -> Option<Value> {
        self.customers().into_iter().find(|c| c["id"] == json!(id))
    }

    pub fn cgis_of(&self, customer_id: i64) -> Vec<Value> {
        self.state()
            .cgis
            .iter()
            .filter(|c| c["customer_id"] == json!(customer_id))
            .cloned()
            .collect()
    }
}

type Shared = Arc<Mutex<AlfaState>>;

async fn login(State(state): State<Shared>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return yii(StatusCode::BAD_REQUEST, "Bad Request", "JSON body expected");
    };
    if v["email"] != json!(EMAIL) || v["api_key"] != json!(API_KEY) {
        return yii(StatusCode::FORBIDDEN, "Forbidden", "Access denied");
    }
    let mut s = state.lock().unwrap();
    if s.down {
        let message = s.down_message.clone().unwrap_or_else(|| "down".into());
        return yii(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            &message,
        );
    }
    s.logins += 1;
    let token = format!("tok-{}", uuid::Uuid::new_v4().simple());
    s.tokens.insert(token.clone(), Instant::now());
    axum::Json(json!({"token": token})).into_response()
}

async fn branch_call(
    state: State<Shared>,
    Path((branch, entity, action)): Path<(String, String, String)>,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(branch) = branch.parse::<i64>() else {
        return yii(StatusCode::NOT_FOUND, "Not Found", "Page not found.");
    };
    call(state, Some(branch), entity, action, query, headers, body).await
}

async fn global_call(
    state: State<Shared>,
    Path((entity, action)): Path<(String, String)>,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    call(state, None, entity, action, query, headers, body).await
}

fn matches_filter(item: &Value, filter: &Value) -> bool {
    let Some(filter) = filter.as_object() else {
        return true;
    };
    filter.iter().all(|(key, want)| match key.as_str() {
        "page" | "per-page" | "count" | "removed" | "is_active" => true,
        "is_study" => want == &json!(2) || item["is_study"] == *want,
        // Assumed: AlfaCRM matches a phone when its digits contain the digits searched for
        // (docs/alfacrm.md); the client filters the hits itself.
        "phone" => {
            let needle = digits(want.as_str().unwrap_or_default());
            !needle.is_empty()
                && item["phone"].as_array().is_some_and(|phones| {
                    phones
                        .iter()
                        .any(|p| digits(p.as_str().unwrap_or_default()).contains(&needle))
                })
        }
        "email" => item["email"].as_array().is_some_and(|emails| {
            emails.iter().any(|e| {
                e.as_str()
                    .unwrap_or_default()
                    .eq_ignore_ascii_case(want.as_str().unwrap_or_default())
            })
        }),
        _ => item.get(key) == Some(want),
    })
}

fn index(items: &[Value], filter: &Value, query: &HashMap<String, String>) -> Response {
    let page = filter["page"].as_u64().unwrap_or(0) as usize;
    let per_page = query
        .get("per-page")
        .and_then(|v| v.parse().ok())
        .or_else(|| filter["per-page"].as_u64().map(|v| v as usize))
        .or_else(|| filter["count"].as_u64().map(|v| v as usize))
        .unwrap_or(20)
        .clamp(1, 500);
    let matched: Vec<&Value> = items.iter().filter(|i| matches_filter(i, filter)).collect();
    let slice: Vec<Value> = matched
        .iter()
        .skip(page * per_page)
        .take(per_page)
        .map(|v| (*v).clone())
        .collect();
    axum::Json(json!({"total": matched.len(), "count": slice.len(), "page": page, "items": slice}))
        .into_response()
}

fn valid_date(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    chrono::NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d").is_ok()
        || chrono::NaiveDate::parse_from_str(s, "%d.%m.%Y").is_ok()
}

async fn call(
    State(state): State<Shared>,
    branch: Option<i64>,
    entity: String,
    action: String,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let token = headers
        .get("x-alfacrm-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let alive = s
        .tokens
        .get(token)
        .is_some_and(|at| at.elapsed() < TOKEN_LIFETIME);
    if !alive {
        s.unauthorized += 1;
        return yii(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Your request was made with invalid credentials.",
        );
    }
    if s.down {
        let message = s
            .down_message
            .clone()
            .unwrap_or_else(|| "maintenance".into());
        return yii(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            &message,
        );
    }
    if s.throttle_next > 0 {
        s.throttle_next -= 1;
        return yii(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            "Rate limit exceeded",
        );
    }
    let Ok(filter) = serde_json::from_slice::<Value>(if body.is_empty() { b"{}" } else { &body })
    else {
        return yii(StatusCode::BAD_REQUEST, "Bad Request", "JSON body expected");
    };
    let query = query_map(&raw);
    s.calls.push((
        format!("{entity}/{action}"),
        raw.clone().unwrap_or_default(),
        filter.clone(),
    ));
    if let Some(b) = branch
        && b != BRANCH
    {
        return yii(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Access denied to branch",
        );
    }
    match (entity.as_str(), action.as_str()) {
        ("branch", "index") => index(
            &[json!({"id": BRANCH, "name": "Центр", "is_active": 1})],
            &filter,
            &query,
        ),
        ("customer", "index") => index(&s.customers, &filter, &query),
        ("group", "index") => index(&s.groups, &filter, &query),
        ("task", "index") => index(&s.tasks, &filter, &query),
        ("pay", "index") => index(&s.pays, &filter, &query),
        ("cgi", "index") => {
            if !query.contains_key("group_id") && !query.contains_key("customer_id") {
                return yii(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    "Need customer_id or group_id",
                );
            }
            let cgis: Vec<Value> = s
                .cgis
                .iter()
                .filter(|c| {
                    query.iter().all(|(k, v)| {
                        k == "per-page" || v.parse::<i64>().is_ok_and(|n| c[k.as_str()] == json!(n))
                    })
                })
                .cloned()
                .collect();
            index(&cgis, &filter, &query)
        }
        ("customer", "create") => {
            let mut errors = serde_json::Map::new();
            if filter["name"].as_str().is_none_or(|n| n.trim().is_empty()) {
                errors.insert("name".into(), json!(["Необходимо заполнить «Имя»."]));
            }
            if filter["branch_ids"].as_array().is_none_or(|b| b.is_empty()) {
                errors.insert(
                    "branch_ids".into(),
                    json!(["Необходимо заполнить «Филиалы»."]),
                );
            }
            for list in ["phone", "email"] {
                if !filter[list].is_null() && !filter[list].is_array() {
                    errors.insert(list.into(), json!(["Значение должно быть массивом."]));
                }
            }
            if !errors.is_empty() {
                return rejected(Value::Object(errors));
            }
            let id = s.id();
            let mut model = filter.clone();
            model["id"] = json!(id);
            for key in [
                "assigned_id",
                "lead_status_id",
                "lead_source_id",
                "study_status_id",
            ] {
                if model.get(key).is_none() {
                    model[key] = Value::Null;
                }
            }
            model["balance"] = json!("0.00");
            s.customers.push(model.clone());
            saved(&model)
        }
        ("customer", "update") => {
            let Some(id) = query.get("id").and_then(|v| v.parse::<i64>().ok()) else {
                return yii(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    "Missing required parameters: id",
                );
            };
            let Some(c) = s.customers.iter_mut().find(|c| c["id"] == json!(id)) else {
                return yii(StatusCode::NOT_FOUND, "Not Found", "Object not found");
            };
            if let Some(map) = filter.as_object() {
                for (k, v) in map {
                    c[k.as_str()] = v.clone();
                }
            }
            let model = c.clone();
            saved(&model)
        }
        ("cgi", "create") => {
            let Some(group_id) = query.get("group_id").and_then(|v| v.parse::<i64>().ok()) else {
                return yii(StatusCode::BAD_REQUEST, "Bad Request", "Need group_id");
            };
            let customer_id = filter["customer_id"].as_i64().unwrap_or(0);
            if !s.customers.iter().any(|c| c["id"] == json!(customer_id)) {
                return rejected(json!({"customer_id": ["Клиент не найден"]}));
            }
            if !s.groups.iter().any(|g| g["id"] == json!(group_id)) {
                return rejected(json!({"group_id": ["Группа не найдена"]}));
            }
            if s.cgis
                .iter()
                .any(|c| c["customer_id"] == json!(customer_id) && c["group_id"] == json!(group_id))
            {
                return rejected(json!({"group_id": ["Клиент уже состоит в группе"]}));
            }
            if !filter["b_date"].is_null() && !valid_date(&filter["b_date"]) {
                return rejected(json!({"b_date": ["Неверный формат даты"]}));
            }
            let id = s.id();
            let model = json!({"id": id, "customer_id": customer_id, "group_id": group_id,
                "b_date": filter["b_date"], "e_date": filter.get("e_date").cloned().unwrap_or(Value::Null)});
            s.cgis.push(model.clone());
            saved(&model)
        }
        ("task", "create") => {
            if filter["text"].as_str().is_none_or(|t| t.is_empty()) {
                return rejected(json!({"text": ["Необходимо заполнить «Текст»."]}));
            }
            let id = s.id();
            let mut model = filter.clone();
            model["id"] = json!(id);
            model["is_done"] = json!(0);
            s.tasks.push(model.clone());
            saved(&model)
        }
        ("pay", "create") => {
            let mut errors = serde_json::Map::new();
            if !filter["customer_id"].is_i64() {
                errors.insert(
                    "customer_id".into(),
                    json!(["Необходимо заполнить «Клиент»."]),
                );
            }
            if !filter["income"].is_number() || filter["income"].as_f64() == Some(0.0) {
                errors.insert("income".into(), json!(["Необходимо заполнить «Сумма»."]));
            }
            if !valid_date(&filter["document_date"]) {
                errors.insert("document_date".into(), json!(["Неверный формат даты"]));
            }
            if !errors.is_empty() {
                return rejected(Value::Object(errors));
            }
            let id = s.id();
            let mut model = filter.clone();
            model["id"] = json!(id);
            s.pays.push(model.clone());
            saved(&model)
        }
        _ => yii(StatusCode::NOT_FOUND, "Not Found", "Page not found."),
    }
}
