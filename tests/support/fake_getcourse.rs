//! A fake GetCourse account over real HTTP, reproducing the legacy import API
//! (../shared/reference/school-accounting-apis.md §2): `POST /pl/api/users|deals` with a
//! form body of `key`, `action=add` and `params` (base64 JSON); two-level answers
//! `{success, action, result:{success, error, error_message, user_id, deal_id, …}}` where a
//! refused action still has outer `success: true`; a wrong key is outer `success: false`.
//! `GET /pl/api/account/fields` answers to a valid key. Users, groups and deals are kept
//! for inspection.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

pub const KEY: &str = "gc-secret-key-0123";

#[derive(Debug, Clone, Default)]
pub struct GcUser {
    pub id: i64,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub groups: BTreeSet<String>,
}

#[derive(Default)]
pub struct GcState {
    pub users: Vec<GcUser>,
    /// (user id, params.deal) of every deal created.
    pub deals: Vec<(i64, Value)>,
    /// Every decoded `params` received, by endpoint.
    pub imports: Vec<(String, Value)>,
    next_id: i64,
}

#[derive(Clone)]
pub struct FakeGetCourse {
    pub url: String,
    state: Arc<Mutex<GcState>>,
}

type Shared = Arc<Mutex<GcState>>;

pub fn contracts_dir() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/contracts"
    ));
    assert!(
        dir.join("getcourse").is_dir(),
        "contracts directory {} is missing: the GetCourse fake is checked against it",
        dir.display()
    );
    dir
}

fn answer(success: bool, result: Value) -> Response {
    axum::Json(json!({"success": success, "action": "add", "result": result})).into_response()
}

fn refused(message: &str) -> Response {
    answer(
        true,
        json!({"success": false, "error": true, "error_message": message}),
    )
}

impl FakeGetCourse {
    pub async fn start() -> FakeGetCourse {
        let shared = Arc::new(Mutex::new(GcState {
            next_id: 5000,
            ..GcState::default()
        }));
        let app = axum::Router::new()
            .route("/pl/api/{what}", post(import))
            .route("/pl/api/account/fields", get(fields))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake GetCourse");
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGetCourse { url, state: shared }
    }

    pub fn state(&self) -> MutexGuard<'_, GcState> {
        self.state.lock().unwrap()
    }

    pub fn user_by_email(&self, email: &str) -> Option<GcUser> {
        self.state()
            .users
            .iter()
            .find(|u| u.email.as_deref() == Some(email))
            .cloned()
    }
}

async fn fields(State(_): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let query: HashMap<String, String> = q
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    if query.get("key").map(String::as_str) != Some(KEY) {
        return axum::Json(json!({"success": false, "error": true,
            "error_message": "Неверный ключ", "error_code": 0}))
        .into_response();
    }
    axum::Json(json!({"success": true, "info": [{"id": 1, "name": "Город"}]})).into_response()
}

fn text(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

async fn import(State(state): State<Shared>, Path(what): Path<String>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("key").map(String::as_str) != Some(KEY) {
        return axum::Json(json!({"success": false, "error_message": "Неверный ключ"}))
            .into_response();
    }
    if form.get("action").map(String::as_str) != Some("add") {
        return answer(
            false,
            json!({"error": true, "error_message": "Неизвестное действие"}),
        );
    }
    let Some(params) = form.get("params") else {
        return refused("Не переданы параметры");
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(params.trim()) else {
        return refused("params: не base64");
    };
    let Ok(params) = serde_json::from_slice::<Value>(&decoded) else {
        return refused("params: не JSON");
    };
    let mut s = state.lock().unwrap();
    s.imports.push((what.clone(), params.clone()));
    let user = &params["user"];
    let email = text(&user["email"]);
    let phone = text(&user["phone"]);
    if email.is_none() && phone.is_none() {
        return refused("Не указан email или телефон пользователя");
    }
    if !matches!(what.as_str(), "users" | "deals") {
        return refused("Неизвестный объект");
    }
    let mut groups = BTreeSet::new();
    if let Some(list) = user["group_name"].as_array() {
        for g in list {
            match g {
                Value::String(name) => {
                    groups.insert(name.clone());
                }
                Value::Array(pair) => match (pair.first().and_then(Value::as_str), pair.get(1)) {
                    (Some(name), Some(Value::String(_))) => {
                        groups.insert(name.to_string());
                    }
                    _ => return refused("group_name: неверный формат"),
                },
                _ => return refused("group_name: неверный формат"),
            }
        }
    }
    let existing = s.users.iter().position(|u| {
        (email.is_some() && u.email == email) || (phone.is_some() && u.phone == phone)
    });
    let user_id = match existing {
        Some(i) => {
            let u = &mut s.users[i];
            u.groups.extend(groups);
            u.id
        }
        None => {
            s.next_id += 1;
            let id = s.next_id;
            s.users.push(GcUser {
                id,
                email: email.clone(),
                phone,
                first_name: text(&user["first_name"]),
                groups,
            });
            id
        }
    };
    let mut result = json!({"success": true, "error": false, "error_message": "",
        "user_id": user_id, "user_status": if existing.is_some() { "active" } else { "added" }});
    if what == "deals" {
        let deal = &params["deal"];
        if text(&deal["offer_code"]).is_none() && deal["offer_id"].is_null() {
            return refused("Не указано предложение");
        }
        let number = text(&deal["deal_number"]);
        let at = s
            .deals
            .iter()
            .position(|(_, d)| number.is_some() && text(&d["deal_number"]) == number);
        let deal_id = match at {
            Some(i) => {
                s.deals[i].1 = deal.clone();
                i as i64 + 1
            }
            None => {
                s.deals.push((user_id, deal.clone()));
                s.deals.len() as i64
            }
        };
        result["deal_id"] = json!(deal_id);
        result["deal_number"] = json!(number.unwrap_or_else(|| deal_id.to_string()));
        result["payment_link"] = json!("");
    }
    answer(true, result)
}
