//! A fake 1C OData standard interface over real HTTP, after 1C's documented contract
//! (../shared/reference/school-accounting-apis.md §3.4, §3.10) and the payloads in
//! ../shared/contracts/onec/:
//! - everything under `/{publication}/odata/standard.odata/`, HTTP Basic with an infobase user
//!   (401 otherwise);
//! - JSON only with `$format=json` (406 otherwise, where 1C would answer Atom);
//! - objects as `Set(guid'…')`, created with `POST Set` (the answer carries the new
//!   `Ref_Key`), documents posted with `POST Set(guid'…')/Post`;
//! - references as `…_Key` GUIDs that must point at existing objects;
//! - tabular sections sent inside the object as arrays whose rows carry `LineNumber`, and
//!   readable as their own set `Owner_Section` (rows with the owner's `Ref_Key`);
//! - `$filter` with `eq` (strings, booleans, guids) joined by `and`; `$select`;
//! - errors as `{"odata.error": {"code", "message": {"lang", "value"}}}`;
//! - `$metadata` as EDMX; `AccumulationRegister_…/Balance`.
//!
//! The counterparties of the contract files are loaded at start.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};

pub const USER: &str = "zapis-odata";
pub const PASSWORD: &str = "пароль-1c";
pub const PUBLICATION: &str = "buh";
pub const ORGANISATION: &str = "0d5a1f3e-7b3c-11e6-8343-40167e2531c3";
pub const WAREHOUSE: &str = "5f1e8a10-7b3c-11e6-8343-40167e2531c3";
pub const WAREHOUSE_2: &str = "5f1e8a11-7b3c-11e6-8343-40167e2531c3";
pub const NOMENCLATURE_HAIRCUT: &str = "7a2b9c44-7b3c-11e6-8343-40167e2531c3";
pub const NOMENCLATURE_SHAMPOO: &str = "7a2b9c45-7b3c-11e6-8343-40167e2531c3";

pub const COUNTERPARTIES: &str = "Catalog_Контрагенты";
pub const CONTACTS: &str = "КонтактнаяИнформация";
pub const INVOICES: &str = "Document_СчетНаОплатуПокупателю";
pub const SALES: &str = "Document_РеализацияТоваровУслуг";
pub const STOCK: &str = "AccumulationRegister_ТоварыНаСкладах";

#[derive(Default)]
struct Data {
    /// Entity set → objects, in creation order.
    sets: HashMap<String, Vec<Value>>,
    requests: Vec<String>,
    /// Set → how many of the next creations are stored but answered with a 502.
    lost_answers: HashMap<String, usize>,
}

#[derive(Clone)]
struct Shared {
    data: Arc<Mutex<Data>>,
    down: Arc<AtomicBool>,
}

pub struct FakeOnec {
    pub addr: SocketAddr,
    shared: Shared,
}

fn contract(name: &str) -> Value {
    let path = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/contracts/onec"
    ))
    .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

impl FakeOnec {
    pub async fn start() -> FakeOnec {
        let mut data = Data::default();
        let mut counterparties = Vec::new();
        let list = contract("odata-catalog-kontragenty-list.response.json");
        for v in list["value"].as_array().cloned().unwrap_or_default() {
            counterparties.push(v);
        }
        let mut one = contract("odata-catalog-kontragenty-get.response.json");
        if let Some(m) = one.as_object_mut() {
            m.remove("odata.metadata");
        }
        counterparties.push(one);
        data.sets.insert(COUNTERPARTIES.into(), counterparties);
        data.sets.insert(
            format!("{STOCK}/Balance"),
            vec![
                json!({"Номенклатура_Key": NOMENCLATURE_SHAMPOO, "Склад_Key": WAREHOUSE, "ВНаличииBalance": 2}),
                json!({"Номенклатура_Key": NOMENCLATURE_HAIRCUT, "Склад_Key": WAREHOUSE, "ВНаличииBalance": 40.5}),
            ],
        );
        let shared = Shared {
            data: Arc::new(Mutex::new(data)),
            down: Arc::new(AtomicBool::new(false)),
        };
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake 1C");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeOnec { addr, shared }
    }

    /// The publication address to configure (`onec.base_url`).
    pub fn base_url(&self) -> String {
        format!("http://{}/{PUBLICATION}", self.addr)
    }

    /// While down, every call answers 500 with 1C's internal-error body.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// The next `n` objects POSTed to `set` are created, but the answer is lost on the way
    /// back (a 502 from the proxy in front of 1C): the caller cannot know it succeeded.
    pub fn lose_answers(&self, set: &str, n: usize) {
        self.lock().lost_answers.insert(set.to_string(), n);
    }

    /// Sets an item's balance at a warehouse. Zero removes the row: 1C's `Balance` virtual
    /// table leaves out what has nothing left.
    pub fn set_stock(&self, item: &str, warehouse: &str, quantity: f64) {
        let mut data = self.lock();
        let rows = data.sets.entry(format!("{STOCK}/Balance")).or_default();
        rows.retain(|r| !(r["Номенклатура_Key"] == item && r["Склад_Key"] == warehouse));
        if quantity != 0.0 {
            rows.push(json!({
                "Номенклатура_Key": item,
                "Склад_Key": warehouse,
                "ВНаличииBalance": quantity,
            }));
        }
    }

    pub fn objects(&self, set: &str) -> Vec<Value> {
        self.lock().sets.get(set).cloned().unwrap_or_default()
    }

    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        self.shared.data.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn odata_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json;charset=utf-8")],
        json!({"odata.error": {"code": code, "message": {"lang": "ru", "value": message}}})
            .to_string(),
    )
        .into_response()
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json;charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_params(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn authorised(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(b64) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return false;
    };
    String::from_utf8(raw).is_ok_and(|pair| pair == format!("{USER}:{PASSWORD}"))
}

fn is_guid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok() && s.len() == 36
}

/// `a eq 'x' and b eq false and c eq guid'…'` → (field, value) pairs; anything else is an
/// error, as 1C refuses what it cannot parse.
fn parse_filter(filter: &str) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    let mut rest = filter.trim();
    while !rest.is_empty() {
        let (field, after) = rest
            .split_once(" eq ")
            .ok_or_else(|| format!("unsupported filter {filter:?}"))?;
        let after = after.trim_start();
        let (value, tail) = if let Some(s) = after.strip_prefix("guid'") {
            let end = s.find('\'').ok_or("unterminated guid")?;
            (Value::String(s[..end].to_string()), &s[end + 1..])
        } else if let Some(s) = after.strip_prefix('\'') {
            let mut v = String::new();
            let mut chars = s.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().map(|(_, n)| *n) == Some('\'') {
                        v.push('\'');
                        chars.next();
                        continue;
                    }
                    end = Some(i);
                    break;
                }
                v.push(c);
            }
            let end = end.ok_or("unterminated string")?;
            (Value::String(v), &s[end + 1..])
        } else if let Some(t) = after.strip_prefix("true") {
            (Value::Bool(true), t)
        } else if let Some(t) = after.strip_prefix("false") {
            (Value::Bool(false), t)
        } else {
            return Err(format!("unsupported literal in {filter:?}"));
        };
        out.push((field.trim().to_string(), value));
        let tail = tail.trim_start();
        rest = match tail.strip_prefix("and ") {
            Some(r) => r.trim_start(),
            None if tail.is_empty() => "",
            None => return Err(format!("unsupported filter {filter:?}")),
        };
    }
    Ok(out)
}

fn select(obj: &Value, fields: Option<&String>) -> Value {
    let Some(fields) = fields else {
        return obj.clone();
    };
    let wanted: BTreeSet<&str> = fields.split(',').map(str::trim).collect();
    let mut out = Map::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if wanted.contains(k.as_str()) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// `Set(guid'…')` → (set, key).
fn keyed(segment: &str) -> Option<(&str, &str)> {
    let (set, rest) = segment.split_once("(guid'")?;
    let key = rest.strip_suffix("')")?;
    Some((set, key))
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = percent_decode(uri.path());
    let params = query_params(&uri);
    let prefix = format!("/{PUBLICATION}/odata/standard.odata/");
    {
        let mut data = shared.data.lock().unwrap_or_else(|p| p.into_inner());
        data.requests.push(format!("{method} {path}"));
    }
    let Some(rest) = path.strip_prefix(&prefix) else {
        return odata_error(StatusCode::NOT_FOUND, "0", "не найдено");
    };
    if !authorised(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"1C\"")],
            "",
        )
            .into_response();
    }
    if shared.down.load(Ordering::SeqCst) {
        return odata_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "-1",
            "Произошла внутренняя ошибка OData сервиса. Сервер 1С:Предприятия не найден",
        );
    }
    if rest == "$metadata" {
        return (
            StatusCode::OK,
            [("content-type", "application/xml;charset=utf-8")],
            METADATA.to_string(),
        )
            .into_response();
    }
    let wants_json = params.get("$format").map(String::as_str) == Some("json");
    let mut data = shared.data.lock().unwrap_or_else(|p| p.into_inner());
    let metadata_url = format!("http://1c.local/{PUBLICATION}/odata/standard.odata/$metadata");
    // Posting: POST Set(guid'…')/Post
    if let Some(target) = rest.strip_suffix("/Post") {
        if method != Method::POST {
            return odata_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "2",
                "метод не поддерживается",
            );
        }
        let Some((set, key)) = keyed(target) else {
            return odata_error(StatusCode::BAD_REQUEST, "6", "неверный адрес объекта");
        };
        let Some(doc) = data
            .sets
            .get_mut(set)
            .and_then(|v| v.iter_mut().find(|o| o["Ref_Key"] == key))
        else {
            return odata_error(StatusCode::NOT_FOUND, "0", "не найдено");
        };
        doc["Posted"] = json!(true);
        return StatusCode::OK.into_response();
    }
    if !wants_json {
        return odata_error(
            StatusCode::NOT_ACCEPTABLE,
            "9",
            "формат не поддерживается этим фейком: нужен $format=json",
        );
    }
    if let Some((set, key)) = keyed(rest) {
        if method != Method::GET {
            return odata_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "2",
                "метод не поддерживается",
            );
        }
        return match data
            .sets
            .get(set)
            .and_then(|v| v.iter().find(|o| o["Ref_Key"] == key))
        {
            Some(obj) => {
                let mut obj = obj.clone();
                if let Some(m) = obj.as_object_mut() {
                    m.insert(
                        "odata.metadata".into(),
                        json!(format!("{metadata_url}#{set}/@Element")),
                    );
                }
                json_answer(StatusCode::OK, obj)
            }
            None => odata_error(StatusCode::NOT_FOUND, "0", "не найдено"),
        };
    }
    let known_sets = [COUNTERPARTIES, INVOICES, SALES];
    let contact_set = format!("{COUNTERPARTIES}_{CONTACTS}");
    match method {
        Method::GET => {
            let rows: Vec<Value> = if rest == contact_set {
                data.sets
                    .get(COUNTERPARTIES)
                    .into_iter()
                    .flatten()
                    .flat_map(|c| {
                        let owner = c["Ref_Key"].clone();
                        c[CONTACTS]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .map(move |mut row| {
                                row["Ref_Key"] = owner.clone();
                                row
                            })
                    })
                    .collect()
            } else if known_sets.contains(&rest) || rest == format!("{STOCK}/Balance") {
                data.sets.get(rest).cloned().unwrap_or_default()
            } else {
                return odata_error(StatusCode::NOT_FOUND, "0", "не найдено");
            };
            let filter = match params.get("$filter").map(|f| parse_filter(f)).transpose() {
                Ok(f) => f.unwrap_or_default(),
                Err(e) => return odata_error(StatusCode::BAD_REQUEST, "3", &e),
            };
            let value: Vec<Value> = rows
                .iter()
                .filter(|o| filter.iter().all(|(field, v)| &o[field.as_str()] == v))
                .map(|o| select(o, params.get("$select")))
                .collect();
            json_answer(
                StatusCode::OK,
                json!({"odata.metadata": format!("{metadata_url}#{rest}"), "value": value}),
            )
        }
        Method::POST if known_sets.contains(&rest) => {
            let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&body) else {
                return odata_error(StatusCode::BAD_REQUEST, "5", "тело запроса не разобрано");
            };
            // References must be GUIDs of existing objects, tabular rows must be numbered.
            for (k, v) in &obj {
                if k.ends_with("_Key") {
                    let Some(key) = v.as_str().filter(|s| is_guid(s)) else {
                        return odata_error(StatusCode::BAD_REQUEST, "7", &format!("{k}: не GUID"));
                    };
                    if k == "Контрагент_Key"
                        && !data
                            .sets
                            .get(COUNTERPARTIES)
                            .is_some_and(|cs| cs.iter().any(|c| c["Ref_Key"] == key))
                    {
                        return odata_error(StatusCode::BAD_REQUEST, "7", "Контрагент не найден");
                    }
                }
                if let Value::Array(rows) = v {
                    for row in rows {
                        if row.get("LineNumber").and_then(Value::as_str).is_none() {
                            return odata_error(
                                StatusCode::BAD_REQUEST,
                                "8",
                                &format!("{k}: строка без LineNumber"),
                            );
                        }
                        for (rk, rv) in row.as_object().into_iter().flatten() {
                            if rk.ends_with("_Key") && !rv.as_str().is_some_and(is_guid) {
                                return odata_error(
                                    StatusCode::BAD_REQUEST,
                                    "7",
                                    &format!("{k}.{rk}: не GUID"),
                                );
                            }
                        }
                    }
                }
            }
            let key = uuid::Uuid::new_v4().to_string();
            obj.insert("Ref_Key".into(), json!(key));
            obj.insert("DataVersion".into(), json!("AAAAAAAAAAE="));
            obj.entry("DeletionMark").or_insert(json!(false));
            if rest.starts_with("Document_") {
                obj.entry("Posted").or_insert(json!(false));
                let n = data.sets.get(rest).map_or(0, Vec::len) + 1;
                obj.insert("Number".into(), json!(format!("ЗП-{n:06}")));
            } else {
                let n = data.sets.get(rest).map_or(0, Vec::len) + 1;
                obj.insert("Code".into(), json!(format!("{n:09}")));
                obj.insert("Predefined".into(), json!(false));
            }
            let stored = Value::Object(obj);
            data.sets
                .entry(rest.to_string())
                .or_default()
                .push(stored.clone());
            if let Some(n) = data.lost_answers.get_mut(rest)
                && *n > 0
            {
                *n -= 1;
                return (StatusCode::BAD_GATEWAY, "502 Bad Gateway").into_response();
            }
            let mut answer = stored;
            answer["odata.metadata"] = json!(format!("{metadata_url}#{rest}/@Element"));
            json_answer(StatusCode::CREATED, answer)
        }
        _ => odata_error(StatusCode::NOT_FOUND, "0", "не найдено"),
    }
}

const METADATA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<edmx:Edmx xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx" Version="1.0">
  <edmx:DataServices xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata" m:DataServiceVersion="3.0">
    <Schema xmlns="http://schemas.microsoft.com/ado/2009/11/edm" Namespace="StandardODATA">
      <EntityType Name="Catalog_Контрагенты">
        <Key><PropertyRef Name="Ref_Key"/></Key>
        <Property Name="Ref_Key" Type="Edm.Guid" Nullable="false"/>
        <Property Name="Description" Type="Edm.String"/>
        <Property Name="ИНН" Type="Edm.String"/>
      </EntityType>
      <EntityType Name="Document_СчетНаОплатуПокупателю">
        <Key><PropertyRef Name="Ref_Key"/></Key>
        <Property Name="Ref_Key" Type="Edm.Guid" Nullable="false"/>
        <Property Name="Date" Type="Edm.DateTime" Nullable="false"/>
        <Property Name="Контрагент_Key" Type="Edm.Guid" Nullable="false"/>
        <Property Name="ВалютаДокумента_Key" Type="Edm.Guid" Nullable="false"/>
        <Property Name="Комментарий" Type="Edm.String"/>
      </EntityType>
      <EntityContainer Name="EnterpriseV8" m:IsDefaultEntityContainer="true">
        <EntitySet Name="Catalog_Контрагенты" EntityType="StandardODATA.Catalog_Контрагенты"/>
        <EntitySet Name="Catalog_Контрагенты_КонтактнаяИнформация" EntityType="StandardODATA.Catalog_Контрагенты_КонтактнаяИнформация"/>
        <EntitySet Name="Catalog_Номенклатура" EntityType="StandardODATA.Catalog_Номенклатура"/>
        <EntitySet Name="Document_СчетНаОплатуПокупателю" EntityType="StandardODATA.Document_СчетНаОплатуПокупателю"/>
        <EntitySet Name="Document_СчетНаОплатуПокупателю_Товары" EntityType="StandardODATA.Document_СчетНаОплатуПокупателю_Товары"/>
        <EntitySet Name="Document_РеализацияТоваровУслуг" EntityType="StandardODATA.Document_РеализацияТоваровУслуг"/>
        <EntitySet Name="Document_РеализацияТоваровУслуг_Услуги" EntityType="StandardODATA.Document_РеализацияТоваровУслуг_Услуги"/>
        <EntitySet Name="AccumulationRegister_ТоварыНаСкладах" EntityType="StandardODATA.AccumulationRegister_ТоварыНаСкладах"/>
      </EntityContainer>
    </Schema>
  </edmx:DataServices>
</edmx:Edmx>
"#;
