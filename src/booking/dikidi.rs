//! Dikidi. Dikidi publishes no API reference and sends no webhooks (docs/dikidi.md has the
//! research with sources). Two modes:
//!
//! - `widget`: the JSON endpoints Dikidi's own online-booking widget calls under its site
//!   (`…/ajax/newrecord/…`), exactly as public open-source clients use them: `company_services`
//!   for services and masters, `get_dates_true` for free days, `get_datetimes` for free times,
//!   a widget session opened with `company_services` and sent on `time_reservation` → `check`
//!   → `record` to book (with the SMS code the client relays when the salon demands one),
//!   `records_info` to re-read records and `remove_record` to cancel. We identify ourselves (a
//!   User-Agent naming zapis), pace ourselves per company, and carry no cookies but the ones
//!   Dikidi sets when our own session opens, for the steps of that one booking.
//! - `partner`: Dikidi's partner REST API exists "on request"; its contract is not public. The
//!   token is configured and kept, and every call answers a clear `Rejected` until a business
//!   hands us the documentation and the calls are written.
//!
//! Because the widget endpoints are undocumented they can change any day. Every payload is
//! read strictly enough that a changed shape fails to parse; the first failure raises one
//! `ApiChanged` event (endpoint + redacted sample), switches booking off (`BookingError::Closed`,
//! which the dialog renders as "call us at <phone>"), and polling keeps probing until the shape
//! is understood again (`ApiRecovered`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE, REFERER, SET_COOKIE, USER_AGENT};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::{BookRequest, BookingError, BookingSystem, Record, RecordStatus};
use crate::clock::Clock;
use crate::connectors::failure::{self, ByStatus};
use crate::connectors::{Failure, http};
use crate::domain::{Master, Money, Service, Slot};

/// Used when neither the catalogue nor the slot answer says how long a service lasts.
const DEFAULT_SERVICE_MIN: u32 = 60;
/// The longest "slow down" sat out inside one call; a longer one goes back to the caller.
const INLINE_WAIT: StdDuration = StdDuration::from_secs(2);
/// Record ids per `records_info` request; the clients we read send short lists.
const RECORDS_PER_REQUEST: usize = 20;
/// A sample in an alert is for a developer's eyes, not a log flood.
const SAMPLE_MAX_CHARS: usize = 1200;
/// How long a booking waits for the client's SMS code; Dikidi's own hold on the reserved time
/// is not published, so the wait is kept short.
const CODE_WAIT_MINUTES: i64 = 15;

pub const PARTNER_NOT_CONFIGURED: &str = "Dikidi partner API contract not configured: the partner \
     API is given to a business on request and its contract is not public; use mode = \"widget\" \
     until the calls are written from the documentation (see docs/dikidi.md)";

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DikidiMode {
    /// The public online-booking widget endpoints.
    #[default]
    Widget,
    /// The partner REST API (token from config; contract not public yet).
    Partner,
}

impl DikidiMode {
    pub fn name(self) -> &'static str {
        match self {
            DikidiMode::Widget => "widget",
            DikidiMode::Partner => "partner",
        }
    }
}

/// `[booking.dikidi]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DikidiConfig {
    #[serde(default)]
    pub mode: DikidiMode,
    #[serde(default = "default_base_url")]
    pub base_url: Url,
    pub company_id: u64,
    /// Required with `mode = "partner"`; never logged.
    #[serde(default)]
    pub partner_token: Option<SecretString>,
    /// The company's zone. Dikidi's times carry none; the business zone is used when absent.
    #[serde(default)]
    pub timezone: Option<Tz>,
    /// Who runs this instance (an e-mail or URL), put into the User-Agent so Dikidi can reach
    /// a person instead of guessing.
    #[serde(default)]
    pub contact: Option<String>,
    /// Requests per second to this company; Dikidi publishes no limit, OSS clients use up to 7.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_second: u32,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// How long the services/masters catalogue is reused.
    #[serde(default = "default_catalog_ttl")]
    pub catalog_cache_secs: u64,
    /// How often upcoming records we made are re-read (Dikidi sends no webhooks).
    #[serde(default = "default_poll_interval")]
    pub poll_interval_secs: u64,
    /// Each poll moves by up to ± this much, so many instances do not arrive in step.
    #[serde(default = "default_poll_jitter")]
    pub poll_jitter_secs: u64,
    /// Requests one poll cycle may spend on this company; the rest waits for the next cycle.
    #[serde(default = "default_poll_budget")]
    pub poll_budget: u32,
}

fn default_base_url() -> Url {
    Url::parse("https://dikidi.net").expect("constant URL parses")
}
fn default_rate_limit() -> u32 {
    2
}
fn default_timeout() -> u64 {
    15
}
fn default_catalog_ttl() -> u64 {
    300
}
fn default_poll_interval() -> u64 {
    300
}
fn default_poll_jitter() -> u64 {
    30
}
fn default_poll_budget() -> u32 {
    10
}

impl DikidiConfig {
    /// Widget mode with every default, e.g. for tests against a fake.
    pub fn widget(base_url: Url, company_id: u64) -> DikidiConfig {
        DikidiConfig {
            mode: DikidiMode::Widget,
            base_url,
            company_id,
            partner_token: None,
            timezone: None,
            contact: None,
            rate_limit_per_second: default_rate_limit(),
            timeout_secs: default_timeout(),
            catalog_cache_secs: default_catalog_ttl(),
            poll_interval_secs: default_poll_interval(),
            poll_jitter_secs: default_poll_jitter(),
            poll_budget: default_poll_budget(),
        }
    }

    /// The User-Agent: names the software and, when configured, the operator. Never a browser's.
    pub fn user_agent(&self) -> String {
        let contact = self
            .contact
            .as_deref()
            .map(|c| format!("; contact: {c}"))
            .unwrap_or_default();
        format!(
            "zapis/{} (booking integration for Dikidi company {}{contact})",
            env!("CARGO_PKG_VERSION"),
            self.company_id
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

/// Every widget endpoint we call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    CompanyServices,
    GetDatesTrue,
    GetDatetimes,
    TimeReservation,
    Check,
    Record,
    RecordsInfo,
    RemoveRecord,
}

impl Endpoint {
    pub const ALL: [Endpoint; 8] = [
        Endpoint::CompanyServices,
        Endpoint::GetDatesTrue,
        Endpoint::GetDatetimes,
        Endpoint::TimeReservation,
        Endpoint::Check,
        Endpoint::Record,
        Endpoint::RecordsInfo,
        Endpoint::RemoveRecord,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::CompanyServices => "company_services",
            Endpoint::GetDatesTrue => "get_dates_true",
            Endpoint::GetDatetimes => "get_datetimes",
            Endpoint::TimeReservation => "time_reservation",
            Endpoint::Check => "check",
            Endpoint::Record => "record",
            Endpoint::RecordsInfo => "records_info",
            Endpoint::RemoveRecord => "remove_record",
        }
    }

    /// Paths as the OSS clients call them (docs/dikidi.md, "Endpoints").
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::CompanyServices => "/mobile/ajax/newrecord/company_services/",
            Endpoint::GetDatesTrue => "/ru/ajax/newrecord/get_dates_true/",
            Endpoint::GetDatetimes => "/ru/mobile/ajax/newrecord/get_datetimes/",
            Endpoint::TimeReservation => "/ru/ajax/newrecord/time_reservation/",
            Endpoint::Check => "/ru/mobile/newrecord/check/",
            Endpoint::Record => "/ru/ajax/newrecord/record/",
            Endpoint::RecordsInfo => "/ru/mobile/ajax/newrecord/records_info/",
            Endpoint::RemoveRecord => "/ru/mobile/newrecord/remove_record/",
        }
    }

    /// Reads can be repeated to probe whether a changed shape is back; writes cannot.
    fn is_read(self) -> bool {
        matches!(
            self,
            Endpoint::CompanyServices
                | Endpoint::GetDatesTrue
                | Endpoint::GetDatetimes
                | Endpoint::RecordsInfo
        )
    }

    fn index(self) -> usize {
        Endpoint::ALL
            .iter()
            .position(|e| *e == self)
            .unwrap_or_default()
    }
}

/// HTTP requests sent per endpoint.
#[derive(Debug, Default)]
pub struct CallCounters {
    counts: [AtomicU64; Endpoint::ALL.len()],
}

impl CallCounters {
    fn hit(&self, endpoint: Endpoint) {
        self.counts[endpoint.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, endpoint: Endpoint) -> u64 {
        self.counts[endpoint.index()].load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Events for two-way sync
// ---------------------------------------------------------------------------------------------

/// A record we made, as we last knew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownRecord {
    pub external_id: String,
    pub start: DateTime<Utc>,
    pub status: RecordStatus,
}

/// What polling found; the sync engine turns these into domain events and alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DikidiEvent {
    /// Dikidi reports the record deleted or cancelled (a positive signal; absence is not one).
    Cancelled { external_id: String },
    /// `records_info` answered without records we know: drift, not a cancellation. Raised
    /// once per record until it is listed again; nothing is cancelled and no client is told.
    RecordsMissing { external_ids: Vec<String> },
    /// The salon's `record` step demanded a captcha for booking `booking_id`. zapis never
    /// tries to pass one: the client was told to call.
    CaptchaDemanded { booking_id: String },
    /// The record now starts at another time.
    Moved {
        external_id: String,
        new_start: DateTime<Utc>,
    },
    /// A payload no longer parses: "Dikidi's API changed". Raised once per episode.
    ApiChanged { endpoint: String, sample: String },
    /// The endpoint that changed parses again; booking is back on.
    ApiRecovered,
}

// ---------------------------------------------------------------------------------------------
// Drift state
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct DriftInfo {
    endpoint: Endpoint,
    /// The query of the failing request, so a read can be repeated as a probe.
    query: Vec<(String, String)>,
    sample: String,
}

#[derive(Debug, Default)]
struct DriftState {
    active: Option<DriftInfo>,
    /// Events raised by any call (a client's booking may be the first to see the change),
    /// handed out by the next poll.
    outbox: Vec<DikidiEvent>,
}

// ---------------------------------------------------------------------------------------------
// Lenient readers where the vendor is known to vary, strict where a change must be noticed
// ---------------------------------------------------------------------------------------------

/// An id that arrives as `16` or `"16"` (OSS clients model both).
fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

fn f64_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s
            .trim()
            .replace([' ', '\u{a0}'], "")
            .replace(',', ".")
            .parse()
            .ok(),
        _ => None,
    }
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn money_of(v: &Value) -> Money {
    Money(f64_of(v).map(|r| (r * 100.0).round() as i64).unwrap_or(0))
}

/// Service `time` is minutes in the catalogue.
fn minutes_of(v: &Value) -> Option<u32> {
    f64_of(v)
        .filter(|m| *m > 0.0)
        .and_then(|m| u32::try_from(m.round() as i64).ok())
}

/// Dikidi's only time format: `2025-02-17 14:15:00`, salon-local, no zone. Anything else is a
/// changed payload, not something to guess at.
fn parse_local(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

fn wire_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Keeps a payload's structure (keys, types, the pattern of dates) and drops its content:
/// digits become 9, letters x, arrays keep three items. Phones and names never reach an alert.
pub fn redact(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(
            s.chars()
                .take(40)
                .map(|c| {
                    if c.is_ascii_digit() {
                        '9'
                    } else if c.is_alphabetic() {
                        'x'
                    } else {
                        c
                    }
                })
                .collect(),
        ),
        Value::Number(_) => Value::from(9),
        Value::Array(items) => Value::Array(items.iter().take(3).map(redact).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .take(20)
                .map(|(k, v)| {
                    // Keys that are ids or dates (PHP maps keyed by record or master id) are
                    // content too.
                    let key = if k.chars().any(|c| c.is_ascii_digit()) {
                        redact(&Value::String(k.clone()))
                            .as_str()
                            .unwrap_or("")
                            .to_owned()
                    } else {
                        k.clone()
                    };
                    (key, redact(v))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn sample_of(v: &Value) -> String {
    let mut s = redact(v).to_string();
    if s.chars().count() > SAMPLE_MAX_CHARS {
        s = s.chars().take(SAMPLE_MAX_CHARS).collect::<String>() + "…";
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Envelope
// ---------------------------------------------------------------------------------------------

/// A vendor error in any of its encodings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VendorError {
    code: String,
    message: String,
}

/// Runs every reader of a Dikidi answer over one body and drops the results: what fuzzing
/// drives, so each reader meets every shape.
pub(crate) fn read_every_answer(body: &[u8], tz: Tz) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let payload = match open_envelope(&value) {
        Ok(Ok(payload)) => payload,
        Ok(Err(_)) | Err(_) => value,
    };
    let _ = parse_catalog(payload.clone());
    let _ = parse_days(payload.clone());
    let _ = parse_datetimes(payload.clone(), tz);
    let _ = parse_records_info(payload, tz);
}

/// Opens the non-uniform envelope. `Ok(Ok(payload))` is a success (the `data` member, or the
/// body itself when it has none), `Ok(Err(_))` a vendor error in a known encoding, and
/// `Err(_)` a body that is neither: a changed shape.
fn open_envelope(body: &Value) -> Result<Result<Value, VendorError>, String> {
    let Value::Object(map) = body else {
        return Err("the answer is not a JSON object".into());
    };
    let payload = || match map.get("data") {
        Some(data) => data.clone(),
        None => body.clone(),
    };
    let top_message = map.get("message").map(str_of).unwrap_or_default();
    let error = match map.get("error") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => return Ok(Ok(payload())),
        Some(e) => e,
    };
    let failure = |code: String, message: String| {
        Ok(Err(VendorError {
            code,
            message: if message.is_empty() {
                top_message.clone()
            } else {
                message
            },
        }))
    };
    match error {
        Value::Object(e) => {
            let Some(code) = e.get("code") else {
                return Err("`error` is an object without `code`".into());
            };
            let message = e.get("message").map(str_of).unwrap_or_default();
            match code {
                Value::Number(n) if n.as_i64() == Some(0) => Ok(Ok(payload())),
                Value::String(s) if s.trim() == "0" => Ok(Ok(payload())),
                Value::Number(_) | Value::String(_) => failure(str_of(code), message),
                _ => Err("`error.code` is neither a number nor a string".into()),
            }
        }
        Value::Number(n) if n.as_i64() == Some(0) => Ok(Ok(payload())),
        Value::Number(n) => failure(n.to_string(), String::new()),
        Value::String(s) if s.trim() == "0" || s.trim().is_empty() => Ok(Ok(payload())),
        // `{"error": "Это не AJAX запрос"}`: the message is the error itself.
        Value::String(s) => failure(s.clone(), String::new()),
        Value::Bool(_) => failure("true".into(), String::new()),
        _ => Err("`error` has an unknown type".into()),
    }
}

/// A vendor error in a known encoding, mapped by the codes OSS clients report.
fn map_vendor_error(endpoint: Endpoint, e: &VendorError) -> BookingError {
    let name = endpoint.name();
    let text = if e.message.is_empty() || e.message == e.code {
        e.code.clone()
    } else {
        format!("{} ({})", e.code, e.message)
    };
    let lower = e.code.to_lowercase();
    if lower.contains("ajax") {
        // Our own request lacks X-Requested-With: a bug on our side, not the salon's.
        return BookingError::rejected(format!(
            "Dikidi {name} refused the request as not coming from its widget: {text}"
        ));
    }
    match e.code.as_str() {
        "COMPANY_ERROR" => BookingError::NotFound(format!("Dikidi {name}: company: {text}")),
        "USER_AUTHORISATION_ERROR" | "USER_AUTHORISATION_DATA_ERROR" | "400"
            if matches!(endpoint, Endpoint::Check | Endpoint::Record) =>
        {
            // The widget wants a signed-in client, which a bot cannot be.
            BookingError::Closed(format!("Dikidi {name} demands a signed-in client: {text}"))
        }
        "USER_AUTHORISATION_ERROR" | "USER_AUTHORISATION_DATA_ERROR" | "400" => {
            BookingError::auth(format!("Dikidi {name}: {text}"))
        }
        "NUMBER_NOT_TRUE" => {
            BookingError::rejected(format!("Dikidi {name} refused the phone number: {text}"))
        }
        _ if endpoint == Endpoint::TimeReservation => {
            // A reservation fails when the time is no longer free; no OSS client distinguishes
            // other reasons, so neither can we.
            tracing::info!(code = %e.code, "dikidi refused the reservation; reading as taken");
            BookingError::SlotTaken
        }
        "1" => BookingError::NotFound(format!("Dikidi {name}: {text}")),
        _ => BookingError::rejected(format!("Dikidi {name}: {text}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Wire types (private). Required fields are required on purpose: a missing one is drift.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct WireServicesData {
    /// An array of categories with `array=1`, otherwise an object keyed by category id.
    list: Value,
}

#[derive(Debug, Deserialize)]
struct WireCategory {
    #[serde(default)]
    name: Value,
    services: Vec<WireService>,
}

#[derive(Debug, Deserialize)]
struct WireService {
    id: Value,
    name: String,
    #[serde(default)]
    cost: Value,
    #[serde(default)]
    price: Value,
    /// Minutes.
    #[serde(default)]
    time: Value,
    #[serde(default)]
    masters: Vec<WireServiceMaster>,
}

#[derive(Debug, Deserialize)]
struct WireServiceMaster {
    id: Value,
    #[serde(default)]
    username: Value,
}

#[derive(Debug, Deserialize)]
struct WireDatesTrue {
    dates_true: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct WireDatetimes {
    #[serde(default)]
    masters: Value,
    /// `{"<master_id>": ["YYYY-MM-DD HH:MM:SS", …]}` or `[]` when nothing is free.
    times: Value,
}

#[derive(Debug, Deserialize)]
struct WireMasterEntry {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    username: Value,
}

#[derive(Debug, Deserialize)]
struct WireReservation {
    record_id: Value,
    #[serde(default)]
    master_id: Value,
}

#[derive(Debug, Deserialize)]
struct WireRecordAnswer {
    bookings: Vec<WireBooking>,
}

#[derive(Debug, Deserialize)]
struct WireBooking {
    id: Value,
    time: String,
    #[serde(default)]
    time_to: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireRecordInfo {
    record: WireRecordBody,
}

#[derive(Debug, Deserialize)]
struct WireRecordBody {
    #[serde(default)]
    id: Value,
    time: String,
    #[serde(default)]
    time_to: Option<String>,
    #[serde(default)]
    service_id: Value,
    #[serde(default)]
    master_id: Value,
    /// No public client shows how a cancelled record looks in `records_info`; these are the
    /// only markers we act on (docs/dikidi.md, "Change detection").
    #[serde(default)]
    deleted: Value,
    #[serde(default)]
    is_deleted: Value,
    #[serde(default)]
    status: Value,
}

impl WireRecordBody {
    /// A positive "this record is cancelled" in the answer itself.
    fn reported_cancelled(&self) -> bool {
        let truthy = |v: &Value| match v {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_i64().is_some_and(|n| n != 0),
            Value::String(s) => matches!(s.trim(), "1" | "true"),
            _ => false,
        };
        let status = match &self.status {
            Value::String(s) => s.trim().to_lowercase(),
            _ => String::new(),
        };
        truthy(&self.deleted)
            || truthy(&self.is_deleted)
            || matches!(
                status.as_str(),
                "deleted" | "removed" | "cancelled" | "canceled"
            )
    }
}

/// Catalogue: services and, per service, its masters.
#[derive(Debug, Clone, Default)]
struct Catalog {
    services: Vec<Service>,
    masters: BTreeMap<String, Vec<Master>>,
}

fn parse_catalog(payload: Value) -> Result<Catalog, String> {
    let data: WireServicesData = serde_json::from_value(payload).map_err(|e| e.to_string())?;
    let categories: Vec<Value> = match data.list {
        Value::Array(items) => items,
        Value::Object(map) => map.into_iter().map(|(_, v)| v).collect(),
        _ => return Err("`list` is neither an array nor an object".into()),
    };
    let mut catalog = Catalog::default();
    for c in categories {
        let c: WireCategory = serde_json::from_value(c).map_err(|e| e.to_string())?;
        let category = str_of(&c.name);
        for s in c.services {
            let id = id_of(&s.id).ok_or("a service without an id")?;
            let cost = if s.cost.is_null() { &s.price } else { &s.cost };
            catalog.services.push(Service {
                id: id.clone(),
                name: s.name,
                category: category.clone(),
                duration_min: minutes_of(&s.time).unwrap_or(DEFAULT_SERVICE_MIN),
                price_min: money_of(cost),
                price_max: money_of(cost),
                // Dikidi's service lists carry no description.
                description: None,
            });
            let masters = s
                .masters
                .iter()
                .filter_map(|m| {
                    Some(Master {
                        id: id_of(&m.id)?,
                        name: str_of(&m.username),
                        specialization: String::new(),
                    })
                })
                .collect();
            catalog.masters.insert(id, masters);
        }
    }
    Ok(catalog)
}

fn parse_days(payload: Value) -> Result<Vec<NaiveDate>, String> {
    let wire: WireDatesTrue = serde_json::from_value(payload).map_err(|e| e.to_string())?;
    wire.dates_true
        .iter()
        .map(|d| {
            NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                .map_err(|_| format!("`dates_true` item {d:?} is not YYYY-MM-DD"))
        })
        .collect()
}

/// Free times per master id, and the masters named in the answer.
type Datetimes = (BTreeMap<String, Vec<DateTime<Utc>>>, Vec<Master>);

fn parse_datetimes(payload: Value, tz: Tz) -> Result<Datetimes, String> {
    let wire: WireDatetimes = serde_json::from_value(payload).map_err(|e| e.to_string())?;
    let mut times = BTreeMap::new();
    match wire.times {
        Value::Array(a) if a.is_empty() => {}
        Value::Object(map) => {
            for (master, list) in map {
                let Value::Array(list) = list else {
                    return Err(format!("`times.{master}` is not an array"));
                };
                let mut parsed = Vec::with_capacity(list.len());
                for t in list {
                    let s = t.as_str().ok_or("a time that is not a string")?;
                    parsed.push(
                        parse_local(s, tz)
                            .ok_or_else(|| format!("time {s:?} is not YYYY-MM-DD HH:MM:SS"))?,
                    );
                }
                times.insert(master, parsed);
            }
        }
        _ => return Err("`times` is neither an object nor an empty array".into()),
    }
    let mut masters = Vec::new();
    if let Value::Object(map) = wire.masters {
        for (key, m) in map {
            let m: WireMasterEntry = serde_json::from_value(m).map_err(|e| e.to_string())?;
            masters.push(Master {
                id: id_of(&m.id).unwrap_or(key),
                name: str_of(&m.username),
                specialization: String::new(),
            });
        }
    }
    Ok((times, masters))
}

/// Record id → start, end and the rest of the record.
type RecordsInfo = BTreeMap<String, (DateTime<Utc>, Option<DateTime<Utc>>, WireRecordBody)>;

/// `records_info`: object keyed by record id (`[]` when none is known).
fn parse_records_info(payload: Value, tz: Tz) -> Result<RecordsInfo, String> {
    let mut out = BTreeMap::new();
    match payload {
        Value::Array(a) if a.is_empty() => {}
        Value::Object(map) => {
            for (key, v) in map {
                let info: WireRecordInfo =
                    serde_json::from_value(v).map_err(|e| format!("record {key}: {e}"))?;
                let start = parse_local(&info.record.time, tz)
                    .ok_or_else(|| format!("record {key}: `time` is not YYYY-MM-DD HH:MM:SS"))?;
                let end = match &info.record.time_to {
                    Some(t) => Some(parse_local(t, tz).ok_or_else(|| {
                        format!("record {key}: `time_to` is not YYYY-MM-DD HH:MM:SS")
                    })?),
                    None => None,
                };
                let id = id_of(&info.record.id).unwrap_or(key);
                out.insert(id, (start, end, info.record));
            }
        }
        _ => return Err("the answer is neither an object keyed by record id nor `[]`".into()),
    }
    Ok(out)
}

fn duration_between(start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> Option<u32> {
    let end = end?;
    u32::try_from((end - start).num_minutes())
        .ok()
        .filter(|m| *m > 0)
}

// ---------------------------------------------------------------------------------------------
// Check report
// ---------------------------------------------------------------------------------------------

/// What `zapis check` prints for Dikidi.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub mode: DikidiMode,
    pub base_url: String,
    pub company_id: u64,
    /// Services the company lists, when it answered.
    pub outcome: Result<usize, String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "booking (dikidi, {} mode, {}): company {} ",
            self.mode.name(),
            self.base_url,
            self.company_id
        )?;
        match &self.outcome {
            Ok(n) => writeln!(f, "answers, {n} bookable services"),
            Err(e) => writeln!(f, "does not answer: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// How calls authenticate. The partner variant holds the token for the day its contract is
/// known; until then no partner call leaves the process.
enum Auth {
    Widget,
    #[allow(dead_code)] // Kept for the partner calls once their contract is known.
    Partner {
        token: SecretString,
    },
}

pub struct Dikidi {
    http: reqwest::Client,
    base: String,
    company_id: u64,
    mode: DikidiMode,
    auth: Auth,
    tz: Tz,
    user_agent: String,
    limiter: DefaultDirectRateLimiter,
    counters: CallCounters,
    clock: Arc<dyn Clock>,
    catalog_ttl: Duration,
    catalog: Mutex<Option<(DateTime<Utc>, Catalog)>>,
    drift: Mutex<DriftState>,
    poll_budget: u32,
    /// Where the previous poll stopped when the budget ran out.
    poll_cursor: AtomicUsize,
    /// Bookings whose `record` step waits for the client's SMS code, by our booking id.
    pending: Mutex<HashMap<String, PendingRecord>>,
    /// Known records `records_info` left out, already alarmed about.
    missing: Mutex<BTreeSet<String>>,
    pub(crate) poll_interval: StdDuration,
    pub(crate) poll_jitter: StdDuration,
}

/// One answer: the HTTP status, the body as JSON (or why it is not), and any cookie set.
struct Raw {
    body: Value,
    cookies: Vec<String>,
}

/// A widget session as the widget holds it: the hash it sends as `session` (query and form)
/// and the cookies Dikidi set when it opened.
#[derive(Debug, Clone)]
struct WidgetSession {
    hash: String,
    cookies: Vec<String>,
}

impl WidgetSession {
    /// The hash is the part after `~` of the `cookie_name` cookie (`Zimin0/Custom-Dikidi-Api:
    /// utils.py @ 928fcc0`, `book()`, step 0), percent-decoded.
    fn from_cookies(cookies: Vec<String>) -> Option<WidgetSession> {
        let raw = cookies
            .iter()
            .find_map(|c| c.strip_prefix("cookie_name="))?
            .split_once('~')?
            .1
            .to_owned();
        let hash: String = url::form_urlencoded::parse(format!("h={raw}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())?;
        (!hash.trim().is_empty()).then_some(WidgetSession { hash, cookies })
    }
}

/// A booking whose `record` step waits for the client's code. Never logged: the session is a
/// credential of that booking.
#[derive(Clone)]
struct PendingRecord {
    session: WidgetSession,
    /// The `record` form without `code`.
    form: Vec<(&'static str, String)>,
    request: BookRequest,
    master_id: String,
    since: DateTime<Utc>,
    resent: bool,
}

/// What a `record` refusal demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Demand {
    Code,
    Captcha,
}

/// What the `record` step answered.
enum RecordOutcome {
    Booked(WireRecordAnswer),
    /// The salon wants the SMS code Dikidi sent to the client (or the one sent was wrong).
    CodeDemanded,
    /// The salon wants a captcha solved; never attempted.
    Captcha(String),
}

/// Which demand a `record` refusal carries. No public client shows the refusal itself; the
/// form's `code` and `captcha_token` fields are all the sources give, so the refusal is read
/// by its words (docs/dikidi.md).
fn demand_of(e: &VendorError) -> Option<Demand> {
    let text = format!("{} {}", e.code, e.message).to_lowercase();
    if ["captcha", "капч"].iter().any(|k| text.contains(k)) {
        return Some(Demand::Captcha);
    }
    ["code", "sms", "смс", "код"]
        .iter()
        .any(|k| text.contains(k))
        .then_some(Demand::Code)
}

impl Dikidi {
    /// `business_tz` is used when the section names no zone of its own.
    pub fn new(config: &DikidiConfig, business_tz: Tz, clock: Arc<dyn Clock>) -> Dikidi {
        let http = http::builder(Some(StdDuration::from_secs(config.timeout_secs)))
            .connect_timeout(StdDuration::from_secs(config.timeout_secs.clamp(1, 5)))
            .build()
            // The builder fails only when the TLS backend cannot start; so would Client::new.
            .unwrap_or_default();
        let rate = config.rate_limit_per_second.max(1);
        // One request per period, no bursts: politeness to a site that never agreed to us.
        let period = StdDuration::from_micros(1_000_000 / u64::from(rate));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        let auth = match (config.mode, &config.partner_token) {
            (DikidiMode::Partner, Some(token)) => Auth::Partner {
                token: token.clone(),
            },
            _ => Auth::Widget,
        };
        Dikidi {
            http,
            base: config.base_url.as_str().trim_end_matches('/').to_owned(),
            company_id: config.company_id,
            mode: config.mode,
            auth,
            tz: config.timezone.unwrap_or(business_tz),
            user_agent: config.user_agent(),
            limiter: RateLimiter::direct(quota),
            counters: CallCounters::default(),
            clock,
            catalog_ttl: Duration::seconds(i64::try_from(config.catalog_cache_secs).unwrap_or(0)),
            catalog: Mutex::new(None),
            drift: Mutex::new(DriftState::default()),
            poll_budget: config.poll_budget.max(1),
            poll_cursor: AtomicUsize::new(0),
            pending: Mutex::new(HashMap::new()),
            missing: Mutex::new(BTreeSet::new()),
            poll_interval: StdDuration::from_secs(config.poll_interval_secs.max(1)),
            poll_jitter: StdDuration::from_secs(config.poll_jitter_secs),
        }
    }

    pub fn mode(&self) -> DikidiMode {
        self.mode
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    pub fn calls(&self) -> &CallCounters {
        &self.counters
    }

    /// The endpoint whose answer no longer parses, while booking is switched off.
    pub fn drifted(&self) -> Option<(String, String)> {
        let d = self.drift.lock().unwrap_or_else(|p| p.into_inner());
        d.active
            .as_ref()
            .map(|a| (a.endpoint.name().to_owned(), a.sample.clone()))
    }

    /// Events raised outside a poll (e.g. by a booking that met a changed shape).
    pub fn take_events(&self) -> Vec<DikidiEvent> {
        std::mem::take(&mut self.drift.lock().unwrap_or_else(|p| p.into_inner()).outbox)
    }

    fn shape_changed(
        &self,
        endpoint: Endpoint,
        query: &[(&str, String)],
        body: &Value,
        why: &str,
    ) -> BookingError {
        let sample = sample_of(body);
        let mut d = self.drift.lock().unwrap_or_else(|p| p.into_inner());
        if d.active.is_none() {
            tracing::error!(
                endpoint = endpoint.name(),
                problem = why,
                sample = %sample,
                "Dikidi's API changed: a payload no longer parses; booking into Dikidi is off"
            );
            d.active = Some(DriftInfo {
                endpoint,
                query: query
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
                sample: sample.clone(),
            });
            d.outbox.push(DikidiEvent::ApiChanged {
                endpoint: endpoint.name().to_owned(),
                sample,
            });
        } else {
            tracing::warn!(
                endpoint = endpoint.name(),
                problem = why,
                "dikidi payload still unreadable"
            );
        }
        BookingError::Closed(format!(
            "Dikidi's API changed: {} answered in an unknown shape ({why})",
            endpoint.name()
        ))
    }

    /// A payload of `endpoint` parsed: if that endpoint had raised the alarm, it is over.
    fn shape_ok(&self, endpoint: Endpoint) {
        let mut d = self.drift.lock().unwrap_or_else(|p| p.into_inner());
        if d.active.as_ref().is_some_and(|a| a.endpoint == endpoint) {
            Self::recover(&mut d);
        }
    }

    fn recover(d: &mut DriftState) {
        if d.active.take().is_some() {
            tracing::warn!("Dikidi's payloads parse again; booking into Dikidi is back on");
            d.outbox.push(DikidiEvent::ApiRecovered);
        }
    }

    /// Sends one request, paced per company. A 429/503 is waited out once (Retry-After up to
    /// 30 s, as the OSS pollers do); other failures come back for the caller to map.
    async fn send(
        &self,
        endpoint: Endpoint,
        query: &[(&str, String)],
        form: Option<&[(&str, String)]>,
        cookies: &[String],
    ) -> Result<Raw, BookingError> {
        if let Auth::Partner { .. } = self.auth {
            return Err(BookingError::rejected(PARTNER_NOT_CONFIGURED));
        }
        let url = format!("{}{}", self.base, endpoint.path());
        let name = endpoint.name();
        let mut retried = false;
        loop {
            self.limiter.until_ready().await;
            self.counters.hit(endpoint);
            let mut req = match form {
                Some(_) => self.http.post(&url),
                None => self.http.get(&url),
            }
            .query(query)
            .header(USER_AGENT, &self.user_agent)
            // The widget endpoints answer only AJAX requests; this says what we are, not who.
            .header("X-Requested-With", "XMLHttpRequest")
            .header(ACCEPT, "application/json, text/javascript, */*; q=0.01")
            .header(REFERER, format!("{}/{}", self.base, self.company_id));
            if let Some(form) = form {
                req = req.form(form);
            }
            if !cookies.is_empty() {
                req = req.header(COOKIE, cookies.join("; "));
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let failure = http::transport_failure("Dikidi", name, e);
                    tracing::warn!(endpoint = name, error = %failure, "dikidi unreachable");
                    return Err(failure.into());
                }
            };
            let status = resp.status();
            if matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) {
                let hint = failure::retry_after(resp.headers());
                let wait = hint.unwrap_or(StdDuration::from_secs(1));
                // One short wait is sat out; a longer one is not, while a client waits in the
                // chat: the hint goes to the caller (the queue honours it).
                if retried || wait > INLINE_WAIT {
                    return Err(Failure::from_status(
                        &ByStatus,
                        status.as_u16(),
                        None,
                        hint,
                        format!(
                            "Dikidi {name}: HTTP {} (asked to wait {} s)",
                            status.as_u16(),
                            wait.as_secs()
                        ),
                    )
                    .into());
                }
                retried = true;
                tracing::info!(
                    endpoint = name,
                    wait_ms = wait.as_millis() as u64,
                    "dikidi asks us to slow down"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            let cookies: Vec<String> = resp
                .headers()
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|v| v.split(';').next())
                .map(|v| v.trim().to_owned())
                .filter(|v| v.contains('='))
                .collect();
            let html = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("html"));
            let bytes = resp.bytes().await.map_err(|e| {
                BookingError::unavailable(format!("Dikidi {name}: reading: {}", e.without_url()))
            })?;
            // PHP sites often label JSON as text/html, so the body decides, not the header.
            let body: Option<Value> = serde_json::from_slice(&bytes).ok();
            let Some(body) = body else {
                // An HTML page (bot challenge, 403, maintenance) is an outage, not drift.
                let what = if html || bytes.trim_ascii_start().starts_with(b"<") {
                    "an HTML page (a bot challenge or an error page)"
                } else {
                    "a body that is not JSON"
                };
                tracing::warn!(
                    endpoint = name,
                    status = status.as_u16(),
                    "dikidi answered {what}"
                );
                return Err(BookingError::unavailable(format!(
                    "Dikidi {name}: HTTP {} with {what}",
                    status.as_u16()
                )));
            };
            if status == StatusCode::NOT_FOUND {
                return Err(BookingError::NotFound(format!("Dikidi {name}: HTTP 404")));
            }
            if status.is_server_error() {
                return Err(BookingError::unavailable(format!(
                    "Dikidi {name}: HTTP {}",
                    status.as_u16()
                )));
            }
            return Ok(Raw { body, cookies });
        }
    }

    /// Sends, opens the envelope and parses the payload with `parse`; a failure at either step
    /// raises the drift alarm.
    async fn call<T>(
        &self,
        endpoint: Endpoint,
        query: &[(&str, String)],
        form: Option<&[(&str, String)]>,
        cookies: &[String],
        parse: impl FnOnce(Value) -> Result<T, String>,
    ) -> Result<(T, Vec<String>), BookingError> {
        let raw = self.send(endpoint, query, form, cookies).await?;
        let payload = match open_envelope(&raw.body) {
            Ok(Ok(payload)) => payload,
            Ok(Err(vendor)) => {
                // A known error encoding still means the shape is understood.
                self.shape_ok(endpoint);
                return Err(map_vendor_error(endpoint, &vendor));
            }
            Err(why) => return Err(self.shape_changed(endpoint, query, &raw.body, &why)),
        };
        match parse(payload) {
            Ok(v) => {
                self.shape_ok(endpoint);
                Ok((v, raw.cookies))
            }
            Err(why) => Err(self.shape_changed(endpoint, query, &raw.body, &why)),
        }
    }

    fn company(&self) -> String {
        self.company_id.to_string()
    }

    async fn catalog(&self) -> Result<Catalog, BookingError> {
        {
            let cached = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, c)) = cached.as_ref()
                && self.clock.now() < *at + self.catalog_ttl
            {
                return Ok(c.clone());
            }
        }
        let query = [
            ("company", self.company()),
            ("lang", "ru".into()),
            ("array", "1".into()),
        ];
        let (catalog, _) = self
            .call(Endpoint::CompanyServices, &query, None, &[], parse_catalog)
            .await?;
        if self.catalog_ttl > Duration::zero() {
            *self.catalog.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((self.clock.now(), catalog.clone()));
        }
        Ok(catalog)
    }

    async fn datetimes(
        &self,
        service_id: &str,
        master_id: Option<&str>,
        day: Option<NaiveDate>,
    ) -> Result<Datetimes, BookingError> {
        let mut query = vec![
            ("company_id", self.company()),
            ("service_id[]", service_id.to_owned()),
        ];
        if let Some(m) = master_id {
            query.push(("master_id", m.to_owned()));
        }
        match day {
            Some(d) => {
                query.push(("date", d.format("%Y-%m-%d").to_string()));
                query.push(("with_first", "0".into()));
            }
            None => query.push(("with_first", "1".into())),
        }
        let tz = self.tz;
        let (dt, _) = self
            .call(Endpoint::GetDatetimes, &query, None, &[], |p| {
                parse_datetimes(p, tz)
            })
            .await?;
        Ok(dt)
    }

    /// Says which mode is in use and whether the company id answers.
    pub async fn check(&self) -> CheckReport {
        let outcome = match self.mode {
            DikidiMode::Partner => Err(PARTNER_NOT_CONFIGURED.to_owned()),
            DikidiMode::Widget => self
                .catalog()
                .await
                .map(|c| c.services.len())
                .map_err(|e| e.to_string()),
        };
        CheckReport {
            mode: self.mode,
            base_url: self.base.clone(),
            company_id: self.company_id,
            outcome,
        }
    }

    async fn records_info(&self, ids: &[String]) -> Result<RecordsInfo, BookingError> {
        let mut query = vec![("company_id", self.company())];
        for id in ids {
            query.push(("record_id_list[]", id.clone()));
        }
        let tz = self.tz;
        let (info, _) = self
            .call(Endpoint::RecordsInfo, &query, None, &[], |p| {
                parse_records_info(p, tz)
            })
            .await?;
        Ok(info)
    }

    /// Re-reads upcoming records we made and reports the ones the salon cancelled or moved,
    /// plus any drift alarm raised since the last poll. At most `poll_budget` requests are
    /// spent; records beyond that are read on the next poll (round robin).
    pub async fn poll_changes(
        &self,
        known: &[KnownRecord],
    ) -> Result<Vec<DikidiEvent>, BookingError> {
        if self.mode == DikidiMode::Partner {
            return Err(BookingError::rejected(PARTNER_NOT_CONFIGURED));
        }
        let now = self.clock.now();
        let watched: Vec<&KnownRecord> = known
            .iter()
            .filter(|k| k.status == RecordStatus::Active && k.start > now)
            .collect();
        let mut budget = self.poll_budget as usize;
        let mut events = Vec::new();
        let mut missing: Vec<String> = Vec::new();
        let mut listed: Vec<String> = Vec::new();
        let mut failure = None;

        // While drifted, spend one request on repeating the request that failed, so the alarm
        // clears by itself once the shape is back.
        let probe = self
            .drift
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .active
            .clone();
        if let Some(p) = probe {
            budget = budget.saturating_sub(1);
            let result = if p.endpoint.is_read() {
                let query: Vec<(&str, String)> = p
                    .query
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                let tz = self.tz;
                match p.endpoint {
                    Endpoint::CompanyServices => self
                        .call(p.endpoint, &query, None, &[], |v| {
                            parse_catalog(v).map(|_| ())
                        })
                        .await
                        .map(|_| ()),
                    Endpoint::GetDatesTrue => self
                        .call(p.endpoint, &query, None, &[], |v| parse_days(v).map(|_| ()))
                        .await
                        .map(|_| ()),
                    Endpoint::GetDatetimes => self
                        .call(p.endpoint, &query, None, &[], |v| {
                            parse_datetimes(v, tz).map(|_| ())
                        })
                        .await
                        .map(|_| ()),
                    _ => self
                        .call(p.endpoint, &query, None, &[], |v| {
                            parse_records_info(v, tz).map(|_| ())
                        })
                        .await
                        .map(|_| ()),
                }
            } else {
                // A write step cannot be probed without booking. Once the catalogue reads
                // again, one booking may try; it re-raises the alarm if the step is still off.
                *self.catalog.lock().unwrap_or_else(|p| p.into_inner()) = None;
                let r = self.catalog().await.map(|_| ());
                if r.is_ok() {
                    Self::recover(&mut self.drift.lock().unwrap_or_else(|p| p.into_inner()));
                }
                r
            };
            if let Err(e) = result {
                failure = Some(e);
            }
        }

        let batches: Vec<&[&KnownRecord]> = watched.chunks(RECORDS_PER_REQUEST).collect();
        if !batches.is_empty() && failure.is_none() {
            let start = self.poll_cursor.load(Ordering::Relaxed) % batches.len();
            let take = budget.min(batches.len());
            if take < batches.len() {
                tracing::info!(
                    batches = batches.len(),
                    budget = take,
                    "dikidi poll budget reached; the rest is read next time"
                );
            }
            for i in 0..take {
                let batch = batches[(start + i) % batches.len()];
                let ids: Vec<String> = batch.iter().map(|k| k.external_id.clone()).collect();
                match self.records_info(&ids).await {
                    Ok(found) => {
                        for k in batch {
                            match found.get(&k.external_id) {
                                // Absent is not cancelled: an anonymous or partial answer
                                // would otherwise cancel bookings in bulk.
                                None => missing.push(k.external_id.clone()),
                                Some((_, _, body)) if body.reported_cancelled() => {
                                    events.push(DikidiEvent::Cancelled {
                                        external_id: k.external_id.clone(),
                                    })
                                }
                                Some((start, _, _)) if *start != k.start => {
                                    events.push(DikidiEvent::Moved {
                                        external_id: k.external_id.clone(),
                                        new_start: *start,
                                    })
                                }
                                Some(_) => {}
                            }
                            if found.contains_key(&k.external_id) {
                                listed.push(k.external_id.clone());
                            }
                        }
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            self.poll_cursor
                .store((start + take) % batches.len().max(1), Ordering::Relaxed);
        }
        {
            let mut alarmed = self.missing.lock().unwrap_or_else(|p| p.into_inner());
            for id in &listed {
                alarmed.remove(id);
            }
            let fresh: Vec<String> = missing
                .into_iter()
                .filter(|id| alarmed.insert(id.clone()))
                .collect();
            if !fresh.is_empty() {
                tracing::error!(
                    records = fresh.len(),
                    "dikidi records_info left out records we made; nothing is cancelled"
                );
                events.push(DikidiEvent::RecordsMissing {
                    external_ids: fresh,
                });
            }
        }
        // Alarms go out even when the poll itself failed: that is when they matter.
        let mut out = self.take_events();
        out.extend(events);
        match failure {
            // A drift error is already in `out`; report it rather than losing the events.
            Some(BookingError::Closed(_)) | None => Ok(out),
            Some(e) if out.is_empty() => Err(e),
            Some(e) => {
                tracing::warn!(error = %e, "dikidi poll incomplete");
                Ok(out)
            }
        }
    }

    /// `zapis check --probe`: opens a widget session as a booking would and describes it (which
    /// cookies came, how long the hash is), reserving nothing.
    pub async fn probe_session(&self) -> Result<String, BookingError> {
        let session = self.open_session().await?;
        let names: Vec<&str> = session
            .cookies
            .iter()
            .filter_map(|c| c.split('=').next())
            .collect();
        Ok(format!(
            "company_services set {} (session hash of {} characters)",
            names.join(", "),
            session.hash.chars().count()
        ))
    }

    /// Opens a widget session the way the widget does: its first call, `company_services`,
    /// sets the session cookie. The catalogue read on the way refreshes the cache.
    async fn open_session(&self) -> Result<WidgetSession, BookingError> {
        let query = [
            ("company", self.company()),
            ("lang", "ru".into()),
            ("array", "1".into()),
        ];
        let (catalog, cookies) = self
            .call(Endpoint::CompanyServices, &query, None, &[], parse_catalog)
            .await?;
        if self.catalog_ttl > Duration::zero() {
            *self.catalog.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((self.clock.now(), catalog));
        }
        WidgetSession::from_cookies(cookies).ok_or_else(|| {
            tracing::error!(
                "Dikidi opened no widget session (no cookie_name cookie on company_services)"
            );
            BookingError::Closed(
                "Dikidi set no widget session cookie on company_services; the widget cannot book \
                 without one"
                    .into(),
            )
        })
    }

    /// The `record` step with the session on the query, the form and the cookies.
    async fn record_step(
        &self,
        session: &WidgetSession,
        form: &[(&'static str, String)],
        code: &str,
    ) -> Result<RecordOutcome, BookingError> {
        let query = [
            ("company_id", self.company()),
            ("session", session.hash.clone()),
            ("social_key", String::new()),
        ];
        let mut form: Vec<(&str, String)> = form.to_vec();
        form.push(("code", code.to_owned()));
        let raw = self
            .send(Endpoint::Record, &query, Some(&form), &session.cookies)
            .await?;
        match open_envelope(&raw.body) {
            Ok(Ok(payload)) => match serde_json::from_value::<WireRecordAnswer>(payload) {
                Ok(answer) => {
                    self.shape_ok(Endpoint::Record);
                    Ok(RecordOutcome::Booked(answer))
                }
                Err(e) => {
                    Err(self.shape_changed(Endpoint::Record, &query, &raw.body, &e.to_string()))
                }
            },
            Ok(Err(vendor)) => {
                self.shape_ok(Endpoint::Record);
                match demand_of(&vendor) {
                    Some(Demand::Code) => Ok(RecordOutcome::CodeDemanded),
                    Some(Demand::Captcha) => Ok(RecordOutcome::Captcha(vendor.code.clone())),
                    None => Err(map_vendor_error(Endpoint::Record, &vendor)),
                }
            }
            Err(why) => Err(self.shape_changed(Endpoint::Record, &query, &raw.body, &why)),
        }
    }

    fn record_of(
        &self,
        answer: &WireRecordAnswer,
        request: &BookRequest,
        master_id: &str,
    ) -> Result<Record, BookingError> {
        let Some(booking) = answer.bookings.first() else {
            return Err(BookingError::rejected(
                "Dikidi record answered without a booking",
            ));
        };
        let external_id = id_of(&booking.id)
            .ok_or_else(|| BookingError::rejected("Dikidi record answered without an id"))?;
        let start = parse_local(&booking.time, self.tz).unwrap_or(request.start);
        let end = booking
            .time_to
            .as_deref()
            .and_then(|t| parse_local(t, self.tz));
        tracing::info!(record = %external_id, phone = %request.client_phone.masked(), "dikidi: booked");
        Ok(Record {
            external_id,
            service_id: request.service_id.clone(),
            master_id: master_id.to_owned(),
            start,
            duration_min: duration_between(start, end).unwrap_or(request.duration_min),
            status: RecordStatus::Active,
        })
    }

    fn pending_record(&self, booking_id: &str) -> Result<PendingRecord, BookingError> {
        let now = self.clock.now();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, p| now - p.since < Duration::minutes(CODE_WAIT_MINUTES));
        pending.get(booking_id).cloned().ok_or_else(|| {
            BookingError::rejected(format!(
                "no Dikidi booking waits for a code under {booking_id} (it expired or was done)"
            ))
        })
    }

    /// A captcha is never attempted: the booking stops, the client is told to call (the
    /// dialog renders `Closed`), and the next poll hands the admin alert to the sync engine.
    fn captcha(&self, booking_id: &str, why: &str) -> BookingError {
        tracing::warn!(booking = %booking_id, "dikidi demands a captcha; the client is told to call");
        self.drift
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .outbox
            .push(DikidiEvent::CaptchaDemanded {
                booking_id: booking_id.to_owned(),
            });
        BookingError::Closed(format!(
            "Dikidi's record step demands a captcha ({why}); zapis does not solve captchas"
        ))
    }

    fn refuse_if_drifted(&self) -> Result<(), BookingError> {
        match self.drifted() {
            Some((endpoint, _)) => Err(BookingError::Closed(format!(
                "Dikidi's API changed ({endpoint} no longer parses); booking into Dikidi is off \
                 until it reads again"
            ))),
            None => Ok(()),
        }
    }

    fn partner_guard(&self) -> Result<(), BookingError> {
        match self.mode {
            DikidiMode::Partner => Err(BookingError::rejected(PARTNER_NOT_CONFIGURED)),
            DikidiMode::Widget => Ok(()),
        }
    }

    async fn service_minutes(&self, service_id: &str) -> u32 {
        self.catalog()
            .await
            .ok()
            .and_then(|c| {
                c.services
                    .iter()
                    .find(|s| s.id == service_id)
                    .map(|s| s.duration_min)
            })
            .unwrap_or(DEFAULT_SERVICE_MIN)
    }
}

#[async_trait]
impl BookingSystem for Dikidi {
    fn system(&self) -> &'static str {
        "dikidi"
    }

    async fn services(&self) -> Result<Vec<Service>, BookingError> {
        self.partner_guard()?;
        Ok(self.catalog().await?.services)
    }

    async fn masters(&self, service_id: &str) -> Result<Vec<Master>, BookingError> {
        self.partner_guard()?;
        let catalog = self.catalog().await?;
        if let Some(m) = catalog.masters.get(service_id).filter(|m| !m.is_empty()) {
            return Ok(m.clone());
        }
        // The catalogue does not always list masters; the first free day's answer names them.
        let (_, masters) = self.datetimes(service_id, None, None).await?;
        Ok(masters)
    }

    async fn free_days(
        &self,
        service_id: &str,
        master_id: Option<&str>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<NaiveDate>, BookingError> {
        self.partner_guard()?;
        let mut query = vec![
            ("company_id", self.company()),
            ("services_id[]", service_id.to_owned()),
            ("date_from", from.format("%Y-%m-%d").to_string()),
            ("date_to", to.format("%Y-%m-%d").to_string()),
        ];
        if let Some(m) = master_id {
            query.push(("master_id", m.to_owned()));
        }
        let (mut days, _) = self
            .call(Endpoint::GetDatesTrue, &query, None, &[], parse_days)
            .await?;
        days.retain(|d| from <= *d && *d <= to);
        days.sort();
        days.dedup();
        Ok(days)
    }

    async fn free_slots(
        &self,
        service_id: &str,
        master_id: Option<&str>,
        day: NaiveDate,
    ) -> Result<Vec<Slot>, BookingError> {
        self.partner_guard()?;
        let duration_min = self.service_minutes(service_id).await;
        let (times, _) = self.datetimes(service_id, master_id, Some(day)).await?;
        let tz = self.tz;
        let mut slots: Vec<Slot> = times
            .into_iter()
            .filter(|(m, _)| master_id.is_none_or(|want| want == m))
            .flat_map(|(master, list)| {
                list.into_iter().map(move |start| Slot {
                    master_id: master.clone(),
                    start,
                    duration_min,
                })
            })
            // Without times on the asked day Dikidi answers with the nearest day's.
            .filter(|s| s.start.with_timezone(&tz).date_naive() == day)
            .collect();
        slots.sort_by(|a, b| a.start.cmp(&b.start).then(a.master_id.cmp(&b.master_id)));
        Ok(slots)
    }

    async fn book(&self, request: &BookRequest) -> Result<Record, BookingError> {
        self.partner_guard()?;
        self.refuse_if_drifted()?;
        let company = self.company();
        let phone = request.client_phone.as_str().to_owned();
        let comment = format!("{} [zapis booking {}]", request.comment, request.booking_id);
        tracing::info!(
            phone = %request.client_phone.masked(),
            master = %request.master_id,
            "dikidi: reserving a time"
        );
        // 0. A widget session, as both public widget clients open one before reserving.
        let session = self.open_session().await?;
        // 1. Hold the time.
        let (reservation, _) = self
            .call(
                Endpoint::TimeReservation,
                &[
                    ("company_id", company.clone()),
                    ("master_id", request.master_id.clone()),
                    ("services_id[]", request.service_id.clone()),
                    ("time", wire_time(request.start, self.tz)),
                    ("action_source", "dikidi".into()),
                    ("session", session.hash.clone()),
                ],
                None,
                &session.cookies,
                |p| serde_json::from_value::<WireReservation>(p).map_err(|e| e.to_string()),
            )
            .await?;
        if id_of(&reservation.record_id).is_none() {
            return Err(BookingError::SlotTaken);
        }
        // 2. Client data. `share_id` (Zimin0) and `shared_id` (Alex221291) both appear in the
        //    public clients; both are sent, as zero.
        let client = [
            ("company", company.clone()),
            ("type", "normal".into()),
            ("session", session.hash.clone()),
            ("social_key", String::new()),
            ("share_id", "0".into()),
            ("shared_id", "0".into()),
            ("phone", phone.clone()),
            ("first_name", request.client_name.clone()),
            ("last_name", String::new()),
            ("comments", comment.clone()),
            ("promocode_appointment_id", String::new()),
        ];
        self.call(
            Endpoint::Check,
            &[
                ("company", company.clone()),
                ("session", session.hash.clone()),
                ("social_key", String::new()),
            ],
            Some(&client),
            &session.cookies,
            |_| Ok(()),
        )
        .await?;
        // 3. Commit, with the widget's whole form; `code` stays empty until the salon asks.
        let form: Vec<(&'static str, String)> = vec![
            ("type", "normal".into()),
            ("name", request.client_name.clone()),
            ("first_name", request.client_name.clone()),
            ("last_name", String::new()),
            ("phone", phone),
            ("comments", comment),
            ("is_show_all_times", "3".into()),
            ("captcha_token", String::new()),
            ("action_source", "direct_link".into()),
            ("session", session.hash.clone()),
            ("social_key", String::new()),
            ("active_cart_id", "0".into()),
            ("active_method", "0".into()),
            ("agreement", "1".into()),
        ];
        let master_id = id_of(&reservation.master_id).unwrap_or_else(|| request.master_id.clone());
        match self.record_step(&session, &form, "").await? {
            RecordOutcome::Booked(answer) => self.record_of(&answer, request, &master_id),
            RecordOutcome::CodeDemanded => {
                tracing::info!(
                    phone = %request.client_phone.masked(),
                    "dikidi: the salon wants the client's SMS code"
                );
                let now = self.clock.now();
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                pending.retain(|_, p| now - p.since < Duration::minutes(CODE_WAIT_MINUTES));
                pending.insert(
                    request.booking_id.clone(),
                    PendingRecord {
                        session,
                        form,
                        request: request.clone(),
                        master_id,
                        since: now,
                        resent: false,
                    },
                );
                Err(BookingError::CodeRequired)
            }
            RecordOutcome::Captcha(why) => Err(self.captcha(&request.booking_id, &why)),
        }
    }

    async fn confirm_code(&self, booking_id: &str, code: &str) -> Result<Record, BookingError> {
        self.partner_guard()?;
        let pending = self.pending_record(booking_id)?;
        match self
            .record_step(&pending.session, &pending.form, code)
            .await?
        {
            RecordOutcome::Booked(answer) => {
                self.abandon_code(booking_id).await;
                self.record_of(&answer, &pending.request, &pending.master_id)
            }
            RecordOutcome::CodeDemanded => {
                tracing::info!(booking = %booking_id, "dikidi refused the SMS code");
                Err(BookingError::CodeWrong)
            }
            RecordOutcome::Captcha(why) => {
                self.abandon_code(booking_id).await;
                Err(self.captcha(booking_id, &why))
            }
        }
    }

    async fn resend_code(&self, booking_id: &str) -> Result<Option<Record>, BookingError> {
        self.partner_guard()?;
        let pending = self.pending_record(booking_id)?;
        if pending.resent {
            return Err(BookingError::rejected(
                "the SMS code was sent again once already",
            ));
        }
        // The widget's `record` without a code is what made Dikidi send the first SMS; no
        // public client shows another way to ask for it again.
        match self
            .record_step(&pending.session, &pending.form, "")
            .await?
        {
            RecordOutcome::Booked(answer) => {
                self.abandon_code(booking_id).await;
                self.record_of(&answer, &pending.request, &pending.master_id)
                    .map(Some)
            }
            RecordOutcome::CodeDemanded => {
                if let Some(p) = self
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_mut(booking_id)
                {
                    p.resent = true;
                }
                Ok(None)
            }
            RecordOutcome::Captcha(why) => {
                self.abandon_code(booking_id).await;
                Err(self.captcha(booking_id, &why))
            }
        }
    }

    async fn abandon_code(&self, booking_id: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(booking_id);
    }

    async fn cancel(&self, external_id: &str) -> Result<(), BookingError> {
        self.partner_guard()?;
        self.call(
            Endpoint::RemoveRecord,
            &[("id", external_id.to_owned())],
            None,
            &[],
            |_| Ok(()),
        )
        .await?;
        tracing::info!(record = %external_id, "dikidi: cancelled");
        Ok(())
    }

    async fn reschedule(&self, _external_id: &str, _slot: &Slot) -> Result<Record, BookingError> {
        self.partner_guard()?;
        // The widget has no move step; a move is a cancel plus a new booking, which needs the
        // client's data this call does not carry.
        Err(BookingError::rejected(
            "Dikidi's widget cannot move a record; cancel it and book again",
        ))
    }

    async fn record(&self, external_id: &str) -> Result<Option<Record>, BookingError> {
        self.partner_guard()?;
        let found = self.records_info(&[external_id.to_owned()]).await?;
        Ok(found.get(external_id).map(|(start, end, body)| Record {
            external_id: external_id.to_owned(),
            service_id: id_of(&body.service_id).unwrap_or_default(),
            master_id: id_of(&body.master_id).unwrap_or_default(),
            start: *start,
            duration_min: duration_between(*start, *end).unwrap_or(DEFAULT_SERVICE_MIN),
            status: if body.reported_cancelled() {
                RecordStatus::Cancelled
            } else {
                RecordStatus::Active
            },
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Poller
// ---------------------------------------------------------------------------------------------

/// Runs `poll_changes` every interval ± jitter by the injected clock and hands each event to
/// `sink`. The sync engine owns what the events become (journal, alerts, the client's chat).
pub struct Poller {
    dikidi: Arc<Dikidi>,
    clock: Arc<dyn Clock>,
    next_due: DateTime<Utc>,
}

impl Poller {
    /// The first poll is due at once: a restart should not hide a day's cancellations.
    pub fn new(dikidi: Arc<Dikidi>, clock: Arc<dyn Clock>) -> Poller {
        let next_due = clock.now();
        Poller {
            dikidi,
            clock,
            next_due,
        }
    }

    pub fn next_due(&self) -> DateTime<Utc> {
        self.next_due
    }

    fn schedule_next(&mut self) {
        let interval = i64::try_from(self.dikidi.poll_interval.as_millis()).unwrap_or(300_000);
        let jitter = i64::try_from(self.dikidi.poll_jitter.as_millis())
            .unwrap_or(0)
            .min(interval / 2);
        let offset = if jitter > 0 {
            rand::rng().random_range(-jitter..=jitter)
        } else {
            0
        };
        self.next_due = self.clock.now() + Duration::milliseconds(interval + offset);
    }

    /// Polls if due; returns whether it did. Errors are logged, never fatal: polling must go on
    /// so the connector recovers by itself.
    pub async fn tick(
        &mut self,
        known: &[KnownRecord],
        sink: &mut (dyn FnMut(DikidiEvent) + Send),
    ) -> bool {
        if self.clock.now() < self.next_due {
            return false;
        }
        match self.dikidi.poll_changes(known).await {
            Ok(events) => events.into_iter().for_each(&mut *sink),
            Err(e) => tracing::warn!(error = %e, "dikidi poll failed; will try again"),
        }
        self.schedule_next();
        true
    }

    /// Polls until `stop` resolves. `known` yields the upcoming records we made each time.
    pub async fn run<K, KF>(
        mut self,
        mut known: K,
        events: tokio::sync::mpsc::Sender<DikidiEvent>,
        stop: impl std::future::Future<Output = ()>,
    ) where
        K: FnMut() -> KF,
        KF: std::future::Future<Output = Vec<KnownRecord>>,
    {
        tokio::pin!(stop);
        loop {
            if self.clock.now() >= self.next_due {
                let records = known().await;
                let mut out = Vec::new();
                self.tick(&records, &mut |e| out.push(e)).await;
                for e in out {
                    if events.send(e).await.is_err() {
                        return;
                    }
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                // Checks the (possibly fake) clock once a second.
                _ = tokio::time::sleep(StdDuration::from_secs(1)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/contracts/dikidi");
    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dikidi");

    fn load(dir: &str, name: &str) -> Value {
        let path = std::path::Path::new(dir).join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} unreadable: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn payload(v: &Value) -> Value {
        open_envelope(v)
            .expect("known envelope")
            .expect("a success")
    }

    const TZ: Tz = chrono_tz::Europe::Moscow;

    #[test]
    fn get_datetimes_contract_parses_in_the_company_zone() {
        let (times, masters) = parse_datetimes(
            payload(&load(CONTRACTS, "dikidi-get-datetimes.response.json")),
            TZ,
        )
        .unwrap();
        let anna = &times["1357205"];
        assert_eq!(anna.len(), 2);
        assert_eq!(anna[0].to_rfc3339(), "2025-02-17T11:15:00+00:00");
        assert_eq!(masters[0].name, "Анна");
        assert_eq!(masters[0].id, "1357205");
    }

    #[test]
    fn get_dates_true_contract_parses_without_envelope() {
        let days = parse_days(payload(&load(
            CONTRACTS,
            "dikidi-get-dates-true.response.json",
        )))
        .unwrap();
        assert_eq!(days, vec![NaiveDate::from_ymd_opt(2024, 1, 15).unwrap()]);
    }

    #[test]
    fn every_error_contract_is_a_known_error() {
        let cases = [
            ("dikidi-error-boolean-true.response.json", "refused"),
            ("dikidi-error-not-ajax.response.json", "refused"),
            ("dikidi-error-object-numeric-code.response.json", "auth"),
            ("dikidi-error-object-string-code.response.json", "auth"),
            ("dikidi-error-string-code.response.json", "not found"),
        ];
        for (file, kind) in cases {
            let e = open_envelope(&load(CONTRACTS, file))
                .unwrap_or_else(|w| panic!("{file}: {w}"))
                .expect_err(file);
            let mapped = map_vendor_error(Endpoint::GetDatetimes, &e);
            let seen = match &mapped {
                BookingError::NotFound(_) => "not found",
                e if e.is_auth() => "auth",
                e if e.is_refusal() => "refused",
                _ => "other",
            };
            assert_eq!(seen, kind, "{file}: {mapped:?}");
        }
        // The booking steps read an authorisation demand as "online booking impossible".
        let e = open_envelope(&load(
            CONTRACTS,
            "dikidi-error-object-string-code.response.json",
        ))
        .unwrap()
        .unwrap_err();
        assert!(matches!(
            map_vendor_error(Endpoint::Record, &e),
            BookingError::Closed(_)
        ));
        let e = map_vendor_error(Endpoint::TimeReservation, &e);
        assert!(matches!(e, BookingError::SlotTaken) || e.is_auth(), "{e:?}");
    }

    #[test]
    fn success_forms_of_the_envelope() {
        for body in [
            r#"{"error": {"code": 0, "message": ""}, "data": {"x": 1}}"#,
            r#"{"error": {"code": "0"}, "data": {"x": 1}}"#,
            r#"{"error": 0, "data": {"x": 1}}"#,
            r#"{"error": "0", "data": {"x": 1}}"#,
            r#"{"error": false, "data": {"x": 1}}"#,
            r#"{"data": {"x": 1}}"#,
        ] {
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(payload(&v)["x"], 1, "{body}");
        }
        let v: Value =
            serde_json::from_str(r#"{"error": 1, "message": "Specialist not found"}"#).unwrap();
        let e = open_envelope(&v).unwrap().unwrap_err();
        assert_eq!(e.message, "Specialist not found");
        assert!(matches!(
            map_vendor_error(Endpoint::GetDatetimes, &e),
            BookingError::NotFound(_)
        ));
        for weird in [
            r#"[1, 2]"#,
            r#"{"error": [1]}"#,
            r#"{"error": {"msg": "x"}}"#,
        ] {
            let v: Value = serde_json::from_str(weird).unwrap();
            assert!(open_envelope(&v).is_err(), "{weird} is drift");
        }
    }

    #[test]
    fn our_fixtures_parse() {
        let catalog =
            parse_catalog(payload(&load(FIXTURES, "company_services.response.json"))).unwrap();
        assert!(!catalog.services.is_empty());
        let s = &catalog.services[0];
        assert!(s.duration_min > 0 && s.price_min.kopecks() > 0, "{s:?}");
        assert!(!catalog.masters[&s.id].is_empty());
        let keyed = parse_catalog(payload(&load(
            FIXTURES,
            "company_services.keyed.response.json",
        )))
        .unwrap();
        assert_eq!(keyed.services.len(), catalog.services.len());

        let r: WireReservation =
            serde_json::from_value(payload(&load(FIXTURES, "time_reservation.response.json")))
                .unwrap();
        assert!(id_of(&r.record_id).is_some());
        let rec: WireRecordAnswer =
            serde_json::from_value(payload(&load(FIXTURES, "record.response.json"))).unwrap();
        assert!(parse_local(&rec.bookings[0].time, TZ).is_some());
        let info =
            parse_records_info(payload(&load(FIXTURES, "records_info.response.json")), TZ).unwrap();
        assert_eq!(info.len(), 1);
        let (start, end, _) = info.values().next().unwrap();
        assert_eq!(duration_between(*start, *end), Some(60));
        payload(&load(FIXTURES, "remove_record.response.json"));
        payload(&load(FIXTURES, "check.response.json"));
    }

    #[test]
    fn empty_php_arrays_are_empty_not_drift() {
        let v: Value =
            serde_json::json!({"error": {"code": 0}, "data": {"times": [], "masters": []}});
        let (times, masters) = parse_datetimes(payload(&v), TZ).unwrap();
        assert!(times.is_empty() && masters.is_empty());
        assert!(
            parse_records_info(Value::Array(vec![]), TZ)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn changed_shapes_fail_to_parse() {
        let renamed = serde_json::json!({"slots": {"1": ["2025-02-17 14:15:00"]}});
        assert!(parse_datetimes(renamed, TZ).is_err());
        let iso = serde_json::json!({"times": {"1": ["2025-02-17T14:15:00+03:00"]}});
        assert!(parse_datetimes(iso, TZ).is_err());
        assert!(parse_days(serde_json::json!({"dates": ["2025-02-17"]})).is_err());
        assert!(parse_catalog(serde_json::json!({"categories": []})).is_err());
        let flat = serde_json::json!({"77": {"id": 77, "time": "2025-02-17 14:15:00"}});
        assert!(parse_records_info(flat, TZ).is_err());
    }

    #[test]
    fn redaction_keeps_shape_and_drops_content() {
        let v = serde_json::json!({"phone": "+79123456789", "name": "Анна", "list": [1, 2, 3, 4],
                                   "1357205": {"time": "2025-02-17 14:15:00"}});
        let s = sample_of(&v);
        assert!(
            !s.contains("7912") && !s.contains("Анна") && !s.contains("1357205"),
            "{s}"
        );
        assert!(
            s.contains("9999-99-99 99:99:99") && s.contains("phone"),
            "{s}"
        );
    }

    #[test]
    fn the_session_is_the_hash_of_cookie_name() {
        let s = WidgetSession::from_cookies(vec![
            "lang=43bb~ru".into(),
            "cookie_name=171439ab~692f4bb3%3A1756".into(),
        ])
        .expect("a session");
        assert_eq!(s.hash, "692f4bb3:1756");
        assert_eq!(s.cookies.len(), 2);
        assert!(WidgetSession::from_cookies(vec!["cookie_name=nohash".into()]).is_none());
        assert!(WidgetSession::from_cookies(vec!["cid=1~2".into()]).is_none());
    }

    #[test]
    fn record_refusals_are_read_by_their_words() {
        let e = |code: &str, message: &str| VendorError {
            code: code.into(),
            message: message.into(),
        };
        assert_eq!(demand_of(&e("SMS_CODE_REQUIRED", "")), Some(Demand::Code));
        assert_eq!(demand_of(&e("1", "Введите код из СМС")), Some(Demand::Code));
        assert_eq!(
            demand_of(&e("CAPTCHA_ERROR", "Введите код с картинки")),
            Some(Demand::Captcha),
            "a captcha wins over the word code"
        );
        assert_eq!(demand_of(&e("1", "Пройдите капчу")), Some(Demand::Captcha));
        assert_eq!(demand_of(&e("USER_AUTHORISATION_ERROR", "bad auth")), None);
        assert_eq!(demand_of(&e("NUMBER_NOT_TRUE", "")), None);
    }

    #[test]
    fn only_an_explicit_marker_cancels_a_listed_record() {
        let info = |extra: Value| {
            let mut record = serde_json::json!({"id": 7, "time": "2025-02-17 14:15:00"});
            if let (Value::Object(r), Value::Object(e)) = (&mut record, extra) {
                r.extend(e);
            }
            let parsed = parse_records_info(serde_json::json!({"7": {"record": record}}), TZ)
                .expect("parses");
            parsed["7"].2.reported_cancelled()
        };
        assert!(!info(serde_json::json!({})));
        assert!(!info(serde_json::json!({"status": "1", "deleted": 0})));
        assert!(info(serde_json::json!({"deleted": 1})));
        assert!(info(serde_json::json!({"is_deleted": "1"})));
        assert!(info(serde_json::json!({"status": "Cancelled"})));
    }

    #[test]
    fn config_defaults_and_user_agent() {
        let c = DikidiConfig::widget(Url::parse("http://127.0.0.1:1").unwrap(), 550001);
        assert_eq!(c.poll_interval_secs, 300);
        let ua = c.user_agent();
        assert!(ua.starts_with("zapis/") && ua.contains("550001"), "{ua}");
        assert!(!ua.contains("Mozilla"));
    }
}
