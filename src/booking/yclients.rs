//! YClients (and its twin Altegio) over the documented REST API, online-booking methods first:
//! `book_services` → `book_staff` → `book_dates` → `book_times` → `book_check` → `book_record`,
//! then move (`PUT /book_record`), read (`GET /book_record/…/{hash}`) and cancel
//! (`DELETE /user/records/{id}/{hash}`). These need only the partner token; the record hash we
//! get back lets us cancel and move without a salon user's token. Where a user token is
//! configured, the admin methods (`GET`/`DELETE /record/{company}/{id}`) are used instead.
//!
//! The vendor's JSON is inconsistent (numbers as strings, `[]` for empty objects, three date
//! encodings), so wire fields that vary are read as `serde_json::Value` and converted by hand at
//! this module's edge. See docs/yclients.md for every assumption and its source.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use dashmap::DashMap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use url::Url;

use super::{BookRequest, BookingError, BookingSystem, Record, RecordStatus};
use crate::clock::Clock;
use crate::connectors::failure::{self, ByStatus};
use crate::connectors::{Failure, http};
use crate::domain::{Master, Money, Service, Slot};

/// The media type selecting the v2 envelope; calls without it are reported to fail.
const ACCEPT_V2: &str = "application/vnd.yclients.v2+json";
/// Larger pages are silently cut to 200 by the server, so we never ask for more.
pub const MAX_PAGE: u32 = 200;
/// Used when no endpoint tells a service's length; the docs name 3600 s as the default.
const DEFAULT_SEANCE_SECONDS: i64 = 3600;
/// The longest 429 wait sat out inside one call; anything longer goes back to the caller.
const INLINE_429_WAIT: StdDuration = StdDuration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// `[booking.yclients]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YclientsConfig {
    #[serde(default = "default_base_url")]
    pub base_url: Url,
    pub company_id: u64,
    /// From the YClients developer cabinet; enough for every online-booking method.
    pub partner_token: SecretString,
    /// From `POST /auth`; enables the admin methods (record read/delete by id).
    #[serde(default)]
    pub user_token: Option<SecretString>,
    /// The numeric partner id from the developer cabinet, sent as `X-Partner-Id` on every
    /// call. Undocumented, but live admin calls were refused with 403 «Не указан
    /// идентификатор партнера» without it (docs/yclients.md).
    #[serde(default)]
    pub partner_id: Option<u64>,
    /// How long free days and slots are reused before asking again; 0 switches the cache off.
    #[serde(default = "default_slot_cache_ttl")]
    pub slot_cache_ttl_secs: u64,
    /// Requests per second this client allows itself; the published limit is 5 per IP.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_second: u32,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// How many times one request is repeated after a 429 before giving up with `Unavailable`.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

fn default_base_url() -> Url {
    Url::parse("https://api.yclients.com").expect("constant URL parses")
}
fn default_slot_cache_ttl() -> u64 {
    30
}
fn default_rate_limit() -> u32 {
    5
}
fn default_timeout() -> u64 {
    15
}
fn default_max_retries() -> u32 {
    5
}

impl YclientsConfig {
    /// Settings for a company with every default, e.g. for tests against a fake.
    pub fn new(base_url: Url, company_id: u64, partner_token: &str) -> YclientsConfig {
        YclientsConfig {
            base_url,
            company_id,
            partner_token: SecretString::from(partner_token.to_owned()),
            user_token: None,
            partner_id: None,
            slot_cache_ttl_secs: default_slot_cache_ttl(),
            rate_limit_per_second: default_rate_limit(),
            timeout_secs: default_timeout(),
            max_retries: default_max_retries(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Call counters
// ---------------------------------------------------------------------------------------------

/// Every remote method we call, counted separately so a benchmark can say where calls go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Company,
    BookServices,
    BookStaff,
    BookDates,
    BookTimes,
    BookCheck,
    BookRecord,
    BookRecordMove,
    BookRecordGet,
    UserRecordDelete,
    RecordGet,
    RecordDelete,
    RecordUpdate,
    Records,
    ClientsSearch,
    ClientCreate,
    ClientGet,
    ClientUpdate,
}

impl Endpoint {
    pub const ALL: [Endpoint; 18] = [
        Endpoint::Company,
        Endpoint::BookServices,
        Endpoint::BookStaff,
        Endpoint::BookDates,
        Endpoint::BookTimes,
        Endpoint::BookCheck,
        Endpoint::BookRecord,
        Endpoint::BookRecordMove,
        Endpoint::BookRecordGet,
        Endpoint::UserRecordDelete,
        Endpoint::RecordGet,
        Endpoint::RecordDelete,
        Endpoint::RecordUpdate,
        Endpoint::Records,
        Endpoint::ClientsSearch,
        Endpoint::ClientCreate,
        Endpoint::ClientGet,
        Endpoint::ClientUpdate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Company => "company",
            Endpoint::BookServices => "book_services",
            Endpoint::BookStaff => "book_staff",
            Endpoint::BookDates => "book_dates",
            Endpoint::BookTimes => "book_times",
            Endpoint::BookCheck => "book_check",
            Endpoint::BookRecord => "book_record",
            Endpoint::BookRecordMove => "book_record_move",
            Endpoint::BookRecordGet => "book_record_get",
            Endpoint::UserRecordDelete => "user_records_delete",
            Endpoint::RecordGet => "record_get",
            Endpoint::RecordDelete => "record_delete",
            Endpoint::RecordUpdate => "record_update",
            Endpoint::Records => "records",
            Endpoint::ClientsSearch => "clients_search",
            Endpoint::ClientCreate => "client_create",
            Endpoint::ClientGet => "client_get",
            Endpoint::ClientUpdate => "client_update",
        }
    }

    fn index(self) -> usize {
        Endpoint::ALL
            .iter()
            .position(|e| *e == self)
            .unwrap_or_default()
    }
}

/// HTTP requests sent per endpoint, retries included.
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

    /// Non-zero counters by endpoint name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        Endpoint::ALL
            .iter()
            .map(|e| (e.name(), self.get(*e)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Lenient readers for the vendor's shifting types
// ---------------------------------------------------------------------------------------------

/// An id that arrives as `16` or `"16"`.
fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

fn i64_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.round() as i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().map(|f| f.round() as i64))
        }
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn f64_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().replace(',', ".").parse().ok(),
        _ => None,
    }
}

/// `true`, `1`, `"1"`.
fn bool_of(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        other => i64_of(other).is_some_and(|n| n != 0),
    }
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A service's `comment` as plain text: the YClients editor may store HTML, and the chats show
/// text as it is, so tags go (a paragraph or line break becomes a new line), entities are
/// decoded and runs of blank space close up. Nothing left means no description.
fn description_of(v: &Value) -> Option<String> {
    let Value::String(raw) = v else {
        return None;
    };
    let mut text = String::with_capacity(raw.len());
    let mut rest = raw.as_str();
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        let after = rest[open + 1..].chars().next();
        let is_tag = after.is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!');
        let close = rest[open..].find('>').filter(|_| is_tag);
        let Some(close) = close else {
            // A '<' that opens no tag is text ("цена < 1000").
            text.push('<');
            rest = &rest[open + 1..];
            continue;
        };
        let tag = rest[open + 1..open + close].trim_start_matches('/');
        let name: String = tag
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        if matches!(name.as_str(), "br" | "p" | "div" | "li" | "ul" | "ol") {
            text.push('\n');
        }
        rest = &rest[open + close + 1..];
    }
    text.push_str(rest);
    // A no-break space (`&nbsp;`) is whitespace below, like any other.
    let text = html_escape::decode_html_entities(&text);
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            l.split(|c: char| c.is_whitespace() || c.is_control())
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|l| !l.is_empty())
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// `service_ids[]` once per service of the visit, as YClients takes arrays.
fn service_pairs(service_id: &str) -> Vec<(&'static str, String)> {
    Service::ids_in(service_id)
        .map(|id| ("service_ids[]", id.to_owned()))
        .collect()
}

/// Rubles (possibly `"1000.00"`) to kopecks.
fn money_of(v: &Value) -> Money {
    Money(f64_of(v).map(|r| (r * 100.0).round() as i64).unwrap_or(0))
}

/// Seconds to whole minutes, never zero for a real service.
fn minutes_of(seconds: i64) -> u32 {
    u32::try_from((seconds.max(60) + 59) / 60).unwrap_or(u32::MAX)
}

/// Reads every instant encoding the API uses: unix seconds (number or digit string), ISO 8601
/// with `+03:00` or `+0300` (with or without fractions), and the zone-less salon-local
/// `2019-01-16 16:00:00`, which is read in the company's zone.
pub fn parse_instant(v: &Value, tz: Tz) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => Utc.timestamp_opt(n.as_i64()?, 0).single(),
        Value::String(s) => parse_instant_str(s, tz),
        _ => None,
    }
}

fn parse_instant_str(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Utc.timestamp_opt(s.parse().ok()?, 0).single();
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, f) {
            return local_to_utc(tz, naive);
        }
    }
    None
}

fn local_to_utc(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// A day as `book_dates` gives it: `"2026-09-17"` or unix seconds of (some) midnight.
fn parse_day(v: &Value, tz: Tz) -> Option<NaiveDate> {
    if let Value::String(s) = v
        && let Ok(d) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
    {
        return Some(d);
    }
    // Unix midnights: the docs' samples are UTC midnights, a salon's own midnight is earlier;
    // read in the salon's (east-of-UTC for every Russian zone) zone, both give the right date.
    parse_instant(v, tz).map(|t| t.with_timezone(&tz).date_naive())
}

// ---------------------------------------------------------------------------------------------
// Wire types (private)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct WireCompany {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    title: Value,
    #[serde(default)]
    timezone_name: Option<String>,
    #[serde(default)]
    address: Value,
    #[serde(default)]
    phone_confirmation: Value,
}

#[derive(Debug, Deserialize)]
struct WireBookServices {
    #[serde(default)]
    services: Vec<WireService>,
    /// The documented key is `categories`; both doc samples and live code use `category`.
    #[serde(default, alias = "categories")]
    category: Vec<WireCategory>,
}

#[derive(Debug, Deserialize)]
struct WireService {
    id: Value,
    #[serde(default)]
    title: Value,
    #[serde(default)]
    category_id: Value,
    #[serde(default)]
    price_min: Value,
    #[serde(default)]
    price_max: Value,
    /// The salon's description of the service; may hold HTML from the YClients editor.
    #[serde(default)]
    comment: Value,
    /// Present only when the request named a master.
    #[serde(default)]
    seance_length: Value,
}

#[derive(Debug, Deserialize)]
struct WireCategory {
    id: Value,
    #[serde(default)]
    title: Value,
}

#[derive(Debug, Deserialize)]
struct WireStaff {
    id: Value,
    #[serde(default)]
    name: Value,
    #[serde(default)]
    specialization: Value,
    #[serde(default)]
    bookable: Value,
}

#[derive(Debug, Default, Deserialize)]
struct WireDates {
    #[serde(default)]
    booking_dates: Vec<Value>,
    /// Month → day numbers (strings in the docs, numbers at Altegio), year implied.
    #[serde(default)]
    booking_days: Value,
}

#[derive(Debug, Deserialize)]
struct WireTime {
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    seance_length: Value,
    #[serde(default)]
    datetime: Value,
}

#[derive(Debug, Deserialize)]
struct WireCreated {
    #[serde(default)]
    record_id: Value,
    #[serde(default)]
    record_hash: Value,
}

/// The record object of `GET /record`, `GET /book_record`, `PUT /book_record` and webhooks.
#[derive(Debug, Deserialize)]
struct WireRecord {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    staff_id: Value,
    #[serde(default)]
    staff: Value,
    #[serde(default)]
    services: Vec<WireRecordService>,
    #[serde(default)]
    datetime: Value,
    #[serde(default)]
    date: Value,
    #[serde(default)]
    seance_length: Value,
    #[serde(default)]
    length: Value,
    #[serde(default)]
    deleted: Value,
    #[serde(default)]
    attendance: Value,
    #[serde(default)]
    last_change_date: Value,
    #[serde(default)]
    api_id: Value,
    #[serde(default)]
    client: Value,
}

#[derive(Debug, Deserialize)]
struct WireRecordService {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    title: Value,
    #[serde(default)]
    cost: Value,
}

impl WireRecord {
    fn staff_id(&self) -> Option<String> {
        id_of(&self.staff_id).or_else(|| id_of(self.staff.get("id").unwrap_or(&Value::Null)))
    }

    fn start(&self, tz: Tz) -> Option<DateTime<Utc>> {
        parse_instant(&self.datetime, tz).or_else(|| parse_instant(&self.date, tz))
    }

    fn seconds(&self) -> i64 {
        i64_of(&self.seance_length)
            .or_else(|| i64_of(&self.length))
            .unwrap_or(DEFAULT_SEANCE_SECONDS)
    }

    fn status(&self) -> RecordStatus {
        record_status(bool_of(&self.deleted), i64_of(&self.attendance))
    }

    fn to_record(&self, external_id: String, tz: Tz) -> Result<Record, BookingError> {
        let start = self
            .start(tz)
            .ok_or_else(|| BookingError::rejected("the record has no readable start"))?;
        Ok(Record {
            external_id,
            // All of a visit's services, joined as our booking of them holds them.
            service_id: self
                .services
                .iter()
                .filter_map(|s| id_of(&s.id))
                .collect::<Vec<_>>()
                .join(&crate::domain::SERVICES_JOIN.to_string()),
            master_id: self.staff_id().unwrap_or_default(),
            start,
            duration_min: minutes_of(self.seconds()),
            status: self.status(),
        })
    }
}

/// `deleted` wins; then attendance per the docs: 2 confirmed, 1 came, 0 waiting, −1 no-show.
fn record_status(deleted: bool, attendance: Option<i64>) -> RecordStatus {
    if deleted {
        return RecordStatus::Cancelled;
    }
    match attendance {
        Some(1) => RecordStatus::Visited,
        Some(-1) => RecordStatus::NoShow,
        _ => RecordStatus::Active,
    }
}

// ---------------------------------------------------------------------------------------------
// External ids
// ---------------------------------------------------------------------------------------------

/// `record_id:record_hash` for online bookings (the hash is what lets a partner token cancel),
/// bare `record_id` for records we learned of otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalId {
    pub record_id: u64,
    pub hash: Option<String>,
}

impl ExternalId {
    pub fn parse(s: &str) -> Result<ExternalId, BookingError> {
        let (id, hash) = match s.split_once(':') {
            Some((id, hash)) if !hash.is_empty() => (id, Some(hash.to_owned())),
            Some((id, _)) => (id, None),
            None => (s, None),
        };
        let record_id = id
            .trim()
            .parse()
            .map_err(|_| BookingError::NotFound(format!("not a YClients record id: {s:?}")))?;
        Ok(ExternalId { record_id, hash })
    }
}

impl fmt::Display for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.hash {
            Some(h) => write!(f, "{}:{h}", self.record_id),
            None => write!(f, "{}", self.record_id),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Company, check report
// ---------------------------------------------------------------------------------------------

/// What the company record tells us once; the time zone decides every day boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyInfo {
    pub id: u64,
    pub title: String,
    pub timezone: Tz,
    pub address: String,
    /// The salon demands an SMS code with every online booking; we cannot send one.
    pub phone_confirmation: bool,
}

/// What `zapis check` prints for YClients.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub company: CompanyInfo,
    pub services: Vec<Service>,
    /// Bookable masters per service id.
    pub masters: Vec<(String, Vec<Master>)>,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.company;
        writeln!(
            f,
            "yclients company {} «{}», {}, time zone {}",
            c.id, c.title, c.address, c.timezone
        )?;
        if c.phone_confirmation {
            writeln!(
                f,
                "  warning: the company requires SMS confirmation of the phone; online bookings \
                 without a code will be refused"
            )?;
        }
        writeln!(f, "  {} bookable services", self.services.len())?;
        for s in &self.services {
            let masters = self
                .masters
                .iter()
                .find(|(id, _)| *id == s.id)
                .map(|(_, m)| {
                    m.iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            writeln!(
                f,
                "  - [{}] {} / {} ({} min, {}–{}): {}",
                s.id,
                s.category,
                s.name,
                s.duration_min,
                s.price_min,
                s.price_max,
                if masters.is_empty() {
                    "no bookable masters"
                } else {
                    &masters
                }
            )?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Slot cache
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SlotKey {
    master: String,
    service: String,
    day: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DaysKey {
    /// `"0"` for any master, the API's own spelling.
    master: String,
    service: String,
    from: NaiveDate,
    to: NaiveDate,
}

/// Catalogue and availability answers reused for a short time, so ten clients browsing the same
/// day cost the salon's rate limit one request, not ten. Keyed within one company (one client
/// instance per company).
struct Cache {
    ttl: Duration,
    clock: Arc<dyn Clock>,
    slots: DashMap<SlotKey, (DateTime<Utc>, Vec<Slot>)>,
    days: DashMap<DaysKey, (DateTime<Utc>, Vec<NaiveDate>)>,
    services: DashMap<(), (DateTime<Utc>, Vec<Service>)>,
    masters: DashMap<String, (DateTime<Utc>, Vec<Master>)>,
}

impl Cache {
    fn on(&self) -> bool {
        self.ttl > Duration::zero()
    }

    fn fresh(&self, stored: DateTime<Utc>) -> bool {
        self.on() && self.clock.now() < stored + self.ttl
    }

    fn get<K: std::hash::Hash + Eq, V: Clone>(
        &self,
        map: &DashMap<K, (DateTime<Utc>, V)>,
        key: &K,
    ) -> Option<V> {
        let hit = map.get(key)?;
        self.fresh(hit.0).then(|| hit.1.clone())
    }

    fn put<K: std::hash::Hash + Eq, V>(&self, map: &DashMap<K, (DateTime<Utc>, V)>, key: K, v: V) {
        if self.on() {
            map.insert(key, (self.clock.now(), v));
        }
    }

    fn invalidate_day(&self, master: &str, day: NaiveDate) {
        self.slots
            .retain(|k, _| !(k.master == master && k.day == day));
        self.days.retain(|k, _| {
            !((k.master == master || k.master == "0") && k.from <= day && day <= k.to)
        });
    }

    fn invalidate_master(&self, master: &str) {
        self.slots.retain(|k, _| k.master != master);
        self.days
            .retain(|k, _| !(k.master == master || k.master == "0"));
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
}

/// A record changed in YClients (by the salon, or an echo of our own write).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordEvent {
    pub company_id: u64,
    pub record_id: u64,
    pub change: ChangeKind,
    pub staff_id: Option<String>,
    pub service_ids: Vec<String>,
    pub start: Option<DateTime<Utc>>,
    pub duration_min: Option<u32>,
    /// −1 no-show, 0 waiting, 1 came, 2 confirmed.
    pub attendance: Option<i64>,
    pub deleted: bool,
    /// Our booking id when the record was made by us (`api_id`).
    pub api_id: Option<String>,
    pub last_change: Option<DateTime<Utc>>,
    /// Who the record is for, as the schedule holds them: lets a record an admin made for a
    /// client we know be linked to that client.
    pub client: Option<RecordClient>,
    /// The first service's title and the master's name, for a booking we learn of this way.
    pub service_title: Option<String>,
    pub staff_name: Option<String>,
    /// The sum of the services' prices.
    pub price: Money,
}

/// The client of a record (`data.client`): the phone as the salon typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordClient {
    pub phone: String,
    pub name: String,
}

impl RecordEvent {
    /// The record's state as our domain sees it; a delete event is a cancellation.
    pub fn status(&self) -> RecordStatus {
        record_status(
            self.deleted || self.change == ChangeKind::Delete,
            self.attendance,
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    Record(RecordEvent),
    /// The marketplace app was uninstalled or frozen for a salon (`event`).
    Marketplace {
        salon_id: u64,
        event: String,
    },
    /// Any other resource (clients, finances…): recorded, not acted upon here.
    Other {
        resource: String,
        resource_id: Option<u64>,
        status: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook body is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("webhook body is not a YClients event: {0}")]
    Shape(String),
}

/// Parses a webhook body: one event object or (defensively, as one receiver reports) an array of
/// them. `tz` reads the zone-less `date` when a record carries no `datetime`.
pub fn parse_webhook(body: &[u8], tz: Tz) -> Result<Vec<WebhookEvent>, WebhookError> {
    let v: Value = serde_json::from_slice(body)?;
    match v {
        Value::Array(items) => items.iter().map(|i| parse_one_webhook(i, tz)).collect(),
        other => Ok(vec![parse_one_webhook(&other, tz)?]),
    }
}

fn parse_one_webhook(v: &Value, tz: Tz) -> Result<WebhookEvent, WebhookError> {
    if let Some(event) = v.get("event").and_then(Value::as_str) {
        let salon_id = v
            .get("salon_id")
            .and_then(i64_of)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| WebhookError::Shape("marketplace event without salon_id".into()))?;
        return Ok(WebhookEvent::Marketplace {
            salon_id,
            event: event.to_owned(),
        });
    }
    let resource = v
        .get("resource")
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::Shape("no `resource`".into()))?;
    let status = v.get("status").map(str_of).unwrap_or_default();
    let resource_id = v
        .get("resource_id")
        .and_then(i64_of)
        .and_then(|n| u64::try_from(n).ok());
    if resource != "record" {
        return Ok(WebhookEvent::Other {
            resource: resource.to_owned(),
            resource_id,
            status,
        });
    }
    let change = match status.as_str() {
        "create" => ChangeKind::Create,
        "update" => ChangeKind::Update,
        "delete" => ChangeKind::Delete,
        other => return Err(WebhookError::Shape(format!("unknown status {other:?}"))),
    };
    let data = v.get("data").cloned().unwrap_or(Value::Null);
    // A delete may carry only ids; every data field is optional then.
    let record: Option<WireRecord> = if data.is_object() {
        Some(serde_json::from_value(data)?)
    } else {
        None
    };
    let record_id = record
        .as_ref()
        .and_then(|r| i64_of(&r.id))
        .and_then(|n| u64::try_from(n).ok())
        .or(resource_id)
        .ok_or_else(|| WebhookError::Shape("record event without an id".into()))?;
    let company_id = v
        .get("company_id")
        .and_then(i64_of)
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or_default();
    Ok(WebhookEvent::Record(match record {
        Some(r) => RecordEvent {
            company_id,
            record_id,
            change,
            staff_id: r.staff_id(),
            service_ids: r.services.iter().filter_map(|s| id_of(&s.id)).collect(),
            start: r.start(tz),
            duration_min: Some(minutes_of(r.seconds())),
            attendance: i64_of(&r.attendance),
            deleted: bool_of(&r.deleted),
            api_id: id_of(&r.api_id).filter(|a| a != "0"),
            last_change: parse_instant(&r.last_change_date, tz),
            client: record_client(&r.client),
            service_title: r
                .services
                .first()
                .map(|s| str_of(&s.title))
                .filter(|t| !t.trim().is_empty()),
            staff_name: r
                .staff
                .get("name")
                .map(str_of)
                .filter(|n| !n.trim().is_empty()),
            price: Money(r.services.iter().map(|s| money_of(&s.cost).0).sum()),
        },
        None => RecordEvent {
            company_id,
            record_id,
            change,
            staff_id: None,
            service_ids: Vec::new(),
            start: None,
            duration_min: None,
            attendance: None,
            deleted: change == ChangeKind::Delete,
            api_id: None,
            last_change: None,
            client: None,
            service_title: None,
            staff_name: None,
            price: Money(0),
        },
    }))
}

fn record_client(v: &Value) -> Option<RecordClient> {
    let phone = id_of(v.get("phone")?)?;
    let name = ["name", "surname"]
        .iter()
        .filter_map(|k| v.get(*k).map(str_of))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let name = match v.get("display_name").map(str_of) {
        Some(d) if !d.trim().is_empty() => d.trim().to_owned(),
        _ => name,
    };
    Some(RecordClient { phone, name })
}

/// The body of `PUT /record` that keeps a record as it is and marks it confirmed: the fields
/// the create call requires (staff, services, client, datetime, length), the rest that would be
/// reset if left out (comment, api_id), and no SMS to the client about the change.
fn confirmed_record_body(current: &Value) -> Result<Value, BookingError> {
    let staff_id = i64_of(&current["staff_id"])
        .or_else(|| i64_of(&current["staff"]["id"]))
        .ok_or_else(|| BookingError::rejected("the record has no master"))?;
    let datetime = current
        .get("datetime")
        .filter(|v| !v.is_null())
        .or_else(|| current.get("date"))
        .cloned()
        .ok_or_else(|| BookingError::rejected("the record has no start"))?;
    let services: Vec<Value> = current["services"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|s| {
                    json!({
                        "id": s["id"],
                        "first_cost": s.get("first_cost").unwrap_or(&s["cost"]),
                        "discount": s.get("discount").cloned().unwrap_or(json!(0)),
                        "cost": s["cost"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let client = &current["client"];
    let mut body = json!({
        "staff_id": staff_id,
        "services": services,
        "client": {
            "phone": id_of(&client["phone"]).unwrap_or_default(),
            "name": str_of(&client["name"]),
            "email": str_of(&client["email"]),
        },
        "datetime": datetime,
        "seance_length": i64_of(&current["seance_length"])
            .or_else(|| i64_of(&current["length"]))
            .unwrap_or(DEFAULT_SEANCE_SECONDS),
        "comment": str_of(&current["comment"]),
        "api_id": str_of(&current["api_id"]),
        "attendance": 2,
        "save_if_busy": true,
        "send_sms": false,
    });
    // A full update resets what it is not given: the salon's labels (read as objects, written
    // as ids), custom fields and colour go back as read.
    if let Some(labels) = current["record_labels"].as_array() {
        let ids: Vec<Value> = labels
            .iter()
            .filter_map(|l| id_of(l.get("id").unwrap_or(l)))
            .map(Value::String)
            .collect();
        body["record_labels"] = Value::Array(ids);
    }
    if let Some(fields) = current.get("custom_fields").filter(|f| f.is_object()) {
        body["custom_fields"] = fields.clone();
    }
    if let Some(color) = current["custom_color"].as_str() {
        body["custom_color"] = json!(color);
    }
    Ok(body)
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

pub struct Yclients {
    http: reqwest::Client,
    base: String,
    company_id: u64,
    partner_token: SecretString,
    user_token: Option<SecretString>,
    partner_id: Option<u64>,
    limiter: DefaultDirectRateLimiter,
    /// A per-minute ceiling for long runs (an import); `None` for the bot's short bursts.
    minute_limiter: Option<DefaultDirectRateLimiter>,
    max_retries: u32,
    counters: CallCounters,
    company: OnceCell<CompanyInfo>,
    cache: Cache,
}

/// A decoded answer: the HTTP status and the `data` member (or the whole body when the answer
/// has no envelope, as `GET /book_record` and `/auth` do).
struct Answer {
    data: Value,
    /// `meta` of the envelope (`total_count` on lists); `Null` when absent.
    meta: Value,
}

impl Yclients {
    pub fn new(config: &YclientsConfig, clock: Arc<dyn Clock>) -> Yclients {
        let http = http::builder(Some(StdDuration::from_secs(config.timeout_secs)))
            .connect_timeout(StdDuration::from_secs(config.timeout_secs.clamp(1, 5)))
            .build()
            // The builder fails only when the TLS backend cannot start; so would Client::new.
            .unwrap_or_default();
        // One request per period, no bursts: a burst of 5 followed by the refill would put up
        // to 9 requests into one wall-clock second. The 5 % margin absorbs network jitter that
        // can bunch arrivals at the server.
        let rate = config.rate_limit_per_second.max(1);
        let period = StdDuration::from_micros(1_050_000 / u64::from(rate));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        Yclients {
            http,
            base: format!("{}/api/v1", config.base_url.as_str().trim_end_matches('/')),
            company_id: config.company_id,
            partner_token: config.partner_token.clone(),
            user_token: config.user_token.clone(),
            partner_id: config.partner_id,
            limiter: RateLimiter::direct(quota),
            minute_limiter: None,
            max_retries: config.max_retries,
            counters: CallCounters::default(),
            company: OnceCell::new(),
            cache: Cache {
                ttl: Duration::seconds(i64::try_from(config.slot_cache_ttl_secs).unwrap_or(0)),
                clock,
                slots: DashMap::new(),
                days: DashMap::new(),
                services: DashMap::new(),
                masters: DashMap::new(),
            },
        }
    }

    /// Also keeps under `per_minute` requests in any 60 seconds. The published limit is "200
    /// requests a minute, or 5 a second"; 5 a second sustained would be 300 a minute, so a run
    /// that lasts minutes (an import) honours both.
    pub fn with_minute_limit(mut self, per_minute: u32) -> Yclients {
        self.minute_limiter = minute_quota(per_minute).map(RateLimiter::direct);
        self
    }

    /// Requests sent so far, per endpoint.
    pub fn calls(&self) -> &CallCounters {
        &self.counters
    }

    /// Forgets cached slots and free days of one master on one salon-local day. Webhooks call
    /// this when the salon changes the schedule.
    pub fn invalidate_day(&self, master_id: &str, day: NaiveDate) {
        self.cache.invalidate_day(master_id, day);
    }

    /// Cache invalidation for a record webhook: the master's whole cache goes, because an
    /// update does not say which day the record moved away from.
    pub fn apply_webhook(&self, event: &RecordEvent) {
        if let Some(staff) = &event.staff_id {
            self.cache.invalidate_master(staff);
        } else {
            self.cache.slots.clear();
            self.cache.days.clear();
        }
    }

    fn auth_header(&self, admin: bool) -> Result<HeaderValue, BookingError> {
        let mut value = format!("Bearer {}", self.partner_token.expose_secret());
        if admin {
            let user = self
                .user_token
                .as_ref()
                .ok_or_else(|| BookingError::auth("this operation needs a YClients user token"))?;
            value.push_str(", User ");
            value.push_str(user.expose_secret());
        }
        let mut header = HeaderValue::from_str(&value)
            .map_err(|_| BookingError::auth("a token contains invalid characters"))?;
        // Keeps the tokens out of any Debug output of the request.
        header.set_sensitive(true);
        Ok(header)
    }

    /// Sends one request, paced by the limiter. A 429 asking for at most [`INLINE_429_WAIT`]
    /// (Retry-After, else a doubling back-off) is waited out and repeated up to `max_retries`
    /// times: a client in the chat barely notices. A longer wait is not sat out here while the
    /// chat waits: the failure carries YClients' `Retry-After` to the caller, and the queue
    /// honours it.
    async fn call(
        &self,
        endpoint: Endpoint,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        admin: bool,
    ) -> Result<Answer, BookingError> {
        let url = format!("{}{}", self.base, path);
        let auth = self.auth_header(admin)?;
        let mut backoff = StdDuration::from_millis(250);
        let mut attempt = 0;
        loop {
            if let Some(minute) = &self.minute_limiter {
                minute.until_ready().await;
            }
            self.limiter.until_ready().await;
            self.counters.hit(endpoint);
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header(ACCEPT, ACCEPT_V2)
                .header(CONTENT_TYPE, "application/json")
                .header(AUTHORIZATION, auth.clone())
                .query(query);
            if let Some(id) = self.partner_id {
                req = req.header("X-Partner-Id", id.to_string());
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let failure = http::transport_failure("YClients", endpoint.name(), e);
                    tracing::warn!(endpoint = endpoint.name(), error = %failure, "yclients unreachable");
                    return Err(failure.into());
                }
            };
            let status = resp.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let hint = failure::retry_after(resp.headers());
                let wait = hint.unwrap_or(backoff);
                attempt += 1;
                if attempt > self.max_retries || wait > INLINE_429_WAIT {
                    tracing::warn!(
                        endpoint = endpoint.name(),
                        attempts = attempt,
                        retry_after_s = hint.map(|h| h.as_secs()),
                        "yclients is rate limiting; handing the wait to the caller"
                    );
                    return Err(Failure::from_status(
                        &ByStatus,
                        429,
                        None,
                        hint,
                        format!(
                            "YClients {} is rate limited (429 after {attempt} attempts)",
                            endpoint.name()
                        ),
                    )
                    .into());
                }
                tracing::info!(
                    endpoint = endpoint.name(),
                    wait_ms = wait.as_millis() as u64,
                    "yclients 429, waiting"
                );
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(INLINE_429_WAIT);
                continue;
            }
            let bytes = resp.bytes().await.map_err(|e| {
                BookingError::unavailable(format!(
                    "YClients {}: reading the answer: {}",
                    endpoint.name(),
                    e.without_url()
                ))
            })?;
            let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&bytes).chars().take(300).collect())
                })
            };
            return map_answer(endpoint, status, body);
        }
    }

    /// The company record, read once per process: its zone decides every day boundary.
    pub async fn company(&self) -> Result<&CompanyInfo, BookingError> {
        self.company
            .get_or_try_init(|| async {
                let answer = self
                    .call(
                        Endpoint::Company,
                        Method::GET,
                        &format!("/company/{}/", self.company_id),
                        &[],
                        None,
                        false,
                    )
                    .await?;
                let wire: WireCompany = decode(Endpoint::Company, answer.data)?;
                let tz_name = wire.timezone_name.unwrap_or_default();
                let timezone: Tz = tz_name.parse().map_err(|_| {
                    BookingError::rejected(format!(
                        "company {} has no usable timezone_name ({tz_name:?})",
                        self.company_id
                    ))
                })?;
                Ok(CompanyInfo {
                    id: i64_of(&wire.id)
                        .and_then(|n| u64::try_from(n).ok())
                        .unwrap_or(self.company_id),
                    title: str_of(&wire.title),
                    timezone,
                    address: str_of(&wire.address),
                    phone_confirmation: bool_of(&wire.phone_confirmation),
                })
            })
            .await
    }

    async fn tz(&self) -> Result<Tz, BookingError> {
        Ok(self.company().await?.timezone)
    }

    /// Validates the tokens and the company id and lists what a client would see.
    pub async fn check(&self) -> Result<CheckReport, BookingError> {
        let company = self.company().await?.clone();
        let services = self.services().await?;
        let mut masters = Vec::new();
        for s in &services {
            masters.push((s.id.clone(), self.masters(&s.id).await?));
        }
        Ok(CheckReport {
            company,
            services,
            masters,
        })
    }

    async fn book_services(
        &self,
        staff_id: Option<&str>,
    ) -> Result<WireBookServices, BookingError> {
        let query: Vec<(&str, String)> = staff_id
            .map(|s| vec![("staff_id", s.to_owned())])
            .unwrap_or_default();
        let answer = self
            .call(
                Endpoint::BookServices,
                Method::GET,
                &format!("/book_services/{}", self.company_id),
                &query,
                None,
                false,
            )
            .await?;
        decode(Endpoint::BookServices, answer.data)
    }

    async fn book_staff(&self, service_id: Option<&str>) -> Result<Vec<Master>, BookingError> {
        let query = service_id.map(service_pairs).unwrap_or_default();
        let answer = self
            .call(
                Endpoint::BookStaff,
                Method::GET,
                &format!("/book_staff/{}", self.company_id),
                &query,
                None,
                false,
            )
            .await?;
        let staff: Vec<WireStaff> = decode(Endpoint::BookStaff, answer.data)?;
        Ok(staff
            .into_iter()
            .filter(|s| bool_of(&s.bookable))
            .filter_map(|s| {
                Some(Master {
                    id: id_of(&s.id)?,
                    name: str_of(&s.name),
                    specialization: str_of(&s.specialization),
                })
            })
            .collect())
    }

    /// One master's free slots on one salon-local day, cached.
    async fn master_slots(
        &self,
        service_id: &str,
        master_id: &str,
        day: NaiveDate,
    ) -> Result<Vec<Slot>, BookingError> {
        let key = SlotKey {
            master: master_id.to_owned(),
            service: service_id.to_owned(),
            day,
        };
        if let Some(hit) = self.cache.get(&self.cache.slots, &key) {
            return Ok(hit);
        }
        let tz = self.tz().await?;
        let answer = self
            .call(
                Endpoint::BookTimes,
                Method::GET,
                &format!(
                    "/book_times/{}/{}/{}",
                    self.company_id,
                    master_id,
                    day.format("%Y-%m-%d")
                ),
                &service_pairs(service_id),
                None,
                false,
            )
            .await?;
        let times: Vec<WireTime> = decode(Endpoint::BookTimes, answer.data)?;
        let mut slots = Vec::with_capacity(times.len());
        for t in times {
            // The documented `datetime` first; the local `time` on the asked day as a fallback.
            let start = parse_instant(&t.datetime, tz).or_else(|| {
                let time = NaiveTime::parse_from_str(t.time.as_deref()?.trim(), "%H:%M").ok()?;
                local_to_utc(tz, day.and_time(time))
            });
            let Some(start) = start else {
                tracing::warn!(
                    master = master_id,
                    "yclients slot without a readable time, skipped"
                );
                continue;
            };
            slots.push(Slot {
                master_id: master_id.to_owned(),
                start,
                duration_min: minutes_of(
                    i64_of(&t.seance_length).unwrap_or(DEFAULT_SEANCE_SECONDS),
                ),
            });
        }
        slots.sort_by_key(|s| s.start);
        self.cache.put(&self.cache.slots, key, slots.clone());
        Ok(slots)
    }

    /// The datetime we send back in book_check/book_record/move: ISO 8601 with the salon's
    /// offset, the form book_times returns live and the older docs use in requests.
    fn wire_datetime(start: DateTime<Utc>, tz: Tz) -> String {
        start
            .with_timezone(&tz)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    }

    /// Re-reads one record by its external id; `None` when YClients no longer has it.
    async fn read_record(&self, id: &ExternalId) -> Result<Option<Record>, BookingError> {
        let tz = self.tz().await?;
        let result = match (&id.hash, &self.user_token) {
            (Some(hash), _) => {
                self.call(
                    Endpoint::BookRecordGet,
                    Method::GET,
                    &format!("/book_record/{}/{}/{}", self.company_id, id.record_id, hash),
                    &[],
                    None,
                    false,
                )
                .await
            }
            (None, Some(_)) => {
                self.call(
                    Endpoint::RecordGet,
                    Method::GET,
                    &format!("/record/{}/{}", self.company_id, id.record_id),
                    &[],
                    None,
                    true,
                )
                .await
            }
            (None, None) => {
                return Err(BookingError::auth(
                    "reading a record without its hash needs a YClients user token",
                ));
            }
        };
        let answer = match result {
            Ok(a) => a,
            Err(BookingError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let wire: WireRecord = decode(Endpoint::RecordGet, answer.data)?;
        wire.to_record(id.to_string(), tz).map(Some)
    }

    /// One admin read (`GET /records`, today, one record): whether the account takes admin
    /// calls as configured. Writes nothing.
    pub async fn admin_read(&self) -> Result<(), BookingError> {
        let tz = self.tz().await?;
        let today = self.cache.clock.now().with_timezone(&tz).date_naive();
        self.call(
            Endpoint::Records,
            Method::GET,
            &format!("/records/{}", self.company_id),
            &[
                ("page", "1".into()),
                ("count", "1".into()),
                ("start_date", today.to_string()),
                ("end_date", today.to_string()),
            ],
            None,
            true,
        )
        .await
        .map(|_| ())
    }

    /// Admin record list for the days `[from, to]` (user token), deleted records included so
    /// cancellations are seen. Paged until `meta.total_count` records are read.
    pub async fn records(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Record>, BookingError> {
        Ok(self.records_paged(from, to).await?.records)
    }

    async fn records_paged(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<super::RecordListing, BookingError> {
        let tz = self.tz().await?;
        let (items, calls) = self.wire_records(from, to, None, true).await?;
        let mut out = Vec::with_capacity(items.len());
        for r in items {
            let Some(id) = i64_of(&r.id).and_then(|n| u64::try_from(n).ok()) else {
                continue;
            };
            out.push(r.to_record(id.to_string(), tz)?);
        }
        Ok(super::RecordListing {
            records: out,
            calls,
        })
    }

    /// `GET /records/{company}` page by page. The docs give no maximum for `count` and a
    /// server may cut a page shorter than asked, so a short page is not the end: the listing
    /// goes on until `meta.total_count` records are read (or a page comes back empty).
    async fn wire_records(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        staff_id: Option<&str>,
        with_deleted: bool,
    ) -> Result<(Vec<WireRecord>, usize), BookingError> {
        let mut out: Vec<WireRecord> = Vec::new();
        let mut calls = 0;
        for page in 1u32.. {
            calls += 1;
            let mut query = vec![
                ("page", page.to_string()),
                ("count", MAX_PAGE.to_string()),
                ("start_date", from.to_string()),
                ("end_date", to.to_string()),
            ];
            if with_deleted {
                query.push(("with_deleted", "1".into()));
            }
            if let Some(staff) = staff_id {
                query.push(("staff_id", staff.to_owned()));
            }
            let answer = self
                .call(
                    Endpoint::Records,
                    Method::GET,
                    &format!("/records/{}", self.company_id),
                    &query,
                    None,
                    true,
                )
                .await?;
            let total = answer
                .meta
                .get("total_count")
                .and_then(i64_of)
                .and_then(|t| usize::try_from(t).ok());
            let items: Vec<WireRecord> = decode(Endpoint::Records, answer.data)?;
            let n = items.len();
            out.extend(items);
            let done = match total {
                Some(total) => out.len() >= total,
                // Without a total, the older rule: a page shorter than asked is the last.
                None => n < MAX_PAGE as usize,
            };
            if done || n == 0 {
                break;
            }
        }
        Ok((out, calls))
    }
}

/// At most `per_minute` (10 or more) requests in any 60 seconds: a burst of 5, then the rest
/// of the minute's allowance evenly spread, with 2 % to spare for jitter.
fn minute_quota(per_minute: u32) -> Option<Quota> {
    const BURST: u32 = 5;
    let spread = u64::from(per_minute.max(2 * BURST) - BURST);
    let period = StdDuration::from_micros(61_200_000 / spread);
    let burst = NonZeroU32::new(BURST).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).map(|q| q.allow_burst(burst))
}

// ---------------------------------------------------------------------------------------------
// Client cards (admin API, user token): what an import reads and writes
// ---------------------------------------------------------------------------------------------

/// A client card of the salon, as the import matches against it: values as YClients holds
/// them (the phone as digits, whether it came as a number or a string).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalonClient {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// A new client card. YClients holds one phone (required) and one email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClient {
    pub name: String,
    /// Digits with the country code, no plus: `79123456789`.
    pub phone: String,
    pub email: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
struct WireClient {
    id: Value,
    #[serde(default)]
    name: Value,
    #[serde(default)]
    phone: Value,
    #[serde(default)]
    email: Value,
}

impl WireClient {
    fn into_salon_client(self) -> Option<SalonClient> {
        let text = |v: &Value| Some(str_of(v).trim().to_owned()).filter(|s| !s.is_empty());
        Some(SalonClient {
            id: id_of(&self.id)?,
            name: text(&self.name).unwrap_or_default(),
            phone: text(&self.phone),
            email: text(&self.email),
        })
    }
}

/// Fields of a card `PUT /client/{company}/{id}` takes, as documented. Whether the call
/// replaces the card or merges into it is not said, so an update sends every one of them as
/// read. `spent` and `balance` are left out: they are described as values at the time the
/// client is added, and money is not ours to rewrite.
const CLIENT_WRITABLE: [&str; 13] = [
    "name",
    "surname",
    "patronymic",
    "phone",
    "email",
    "sex_id",
    "importance_id",
    "discount",
    "card",
    "birth_date",
    "comment",
    "sms_check",
    "sms_not",
];

impl Yclients {
    /// Whether the admin methods (client cards, records by id) can be called.
    pub fn has_user_token(&self) -> bool {
        self.user_token.is_some()
    }

    /// One page of `POST /company/{id}/clients/search` (200 a page, ordered by id), and the
    /// total the server counts.
    async fn clients_search(
        &self,
        page: u32,
        filters: Vec<Value>,
    ) -> Result<(Vec<SalonClient>, Option<u64>), BookingError> {
        let body = json!({
            "page": page,
            "page_size": MAX_PAGE,
            "fields": ["id", "name", "phone", "email"],
            "order_by": "id",
            "order_by_direction": "ASC",
            "operation": "AND",
            "filters": filters,
        });
        let answer = self
            .call(
                Endpoint::ClientsSearch,
                Method::POST,
                &format!("/company/{}/clients/search", self.company_id),
                &[],
                Some(&body),
                true,
            )
            .await?;
        let total = answer.meta.get("total_count").and_then(i64_of);
        let items: Vec<Value> = decode(Endpoint::ClientsSearch, answer.data)?;
        let clients = items
            .into_iter()
            .filter_map(|v| match serde_json::from_value::<WireClient>(v) {
                Ok(c) => c.into_salon_client(),
                Err(e) => {
                    // Left out, a client could be added a second time: say so loudly.
                    tracing::warn!(error = %e, "unreadable YClients client left out");
                    None
                }
            })
            .collect();
        Ok((clients, total.and_then(|t| u64::try_from(t).ok())))
    }

    /// Every client card of the salon, 200 a request.
    pub async fn all_clients(&self) -> Result<Vec<SalonClient>, BookingError> {
        let mut out = Vec::new();
        let mut previous_first: Option<String> = None;
        for page in 1u32.. {
            let (items, total) = self.clients_search(page, Vec::new()).await?;
            let n = items.len();
            // A server ignoring `page` would loop forever on full pages.
            let first = items.first().map(|c| c.id.clone());
            if first.is_some() && first == previous_first {
                return Err(BookingError::unavailable(format!(
                    "YClients clients/search answered page {page} with the previous page"
                )));
            }
            previous_first = first;
            out.extend(items);
            let seen_all = total.is_some_and(|t| out.len() as u64 >= t);
            if n < MAX_PAGE as usize || seen_all {
                break;
            }
        }
        Ok(out)
    }

    /// Cards the salon's quick search finds for a phone's digits or an email (the first 200).
    /// What the quick search compares is not documented: callers check every hit themselves.
    pub async fn quick_search_clients(&self, text: &str) -> Result<Vec<SalonClient>, BookingError> {
        let filters = vec![json!({"type": "quick_search", "state": {"value": text}})];
        Ok(self.clients_search(1, filters).await?.0)
    }

    /// `POST /clients/{company}`: the new card's id.
    pub async fn create_client(&self, client: &NewClient) -> Result<String, BookingError> {
        let mut body = json!({"name": client.name, "phone": client.phone});
        if let Some(e) = &client.email {
            body["email"] = json!(e);
        }
        if let Some(b) = client.birth_date {
            body["birth_date"] = json!(b.format("%Y-%m-%d").to_string());
        }
        if let Some(c) = &client.comment {
            body["comment"] = json!(c);
        }
        let answer = self
            .call(
                Endpoint::ClientCreate,
                Method::POST,
                &format!("/clients/{}", self.company_id),
                &[],
                Some(&body),
                true,
            )
            .await?;
        answer
            .data
            .get("id")
            .and_then(id_of)
            .ok_or_else(|| BookingError::unavailable("YClients created a client without an id"))
    }

    /// Gives a card the phone and/or email it lacks: `GET /client/{company}/{id}`, then
    /// `PUT` with every writable field as read and ours added.
    pub async fn complete_client(
        &self,
        id: &str,
        phone: Option<&str>,
        email: Option<&str>,
    ) -> Result<(), BookingError> {
        let path = format!("/client/{}/{}", self.company_id, id);
        let card = self
            .call(Endpoint::ClientGet, Method::GET, &path, &[], None, true)
            .await?
            .data;
        let mut body = serde_json::Map::new();
        for key in CLIENT_WRITABLE {
            let v = card.get(key).cloned().unwrap_or(Value::Null);
            let keep = match (key, &v) {
                (_, Value::Null) => false,
                // No birthday reads as `0`; an empty one as "".
                ("birth_date", Value::String(s)) => !s.trim().is_empty(),
                ("birth_date", _) => false,
                ("phone", other) => !str_of(other).trim().is_empty(),
                _ => true,
            };
            if keep {
                let v = if key == "phone" { json!(str_of(&v)) } else { v };
                body.insert(key.to_owned(), v);
            }
        }
        // Categories read as objects; the update takes their ids as `labels`.
        if let Some(ids) = card.get("categories").and_then(Value::as_array) {
            let ids: Vec<Value> = ids.iter().filter_map(|c| c.get("id").cloned()).collect();
            if !ids.is_empty() {
                body.insert("labels".into(), Value::Array(ids));
            }
        }
        if let Some(fields) = card.get("custom_fields").filter(|f| f.is_object()) {
            body.insert("custom_fields".into(), fields.clone());
        }
        if let Some(p) = phone {
            body.insert("phone".into(), json!(p));
        }
        if let Some(e) = email {
            body.insert("email".into(), json!(e));
        }
        self.call(
            Endpoint::ClientUpdate,
            Method::PUT,
            &path,
            &[],
            Some(&Value::Object(body)),
            true,
        )
        .await?;
        Ok(())
    }
}

/// Turns an HTTP status and body into data or the matching `BookingError`.
fn map_answer(endpoint: Endpoint, status: StatusCode, body: Value) -> Result<Answer, BookingError> {
    let message = error_message(&body);
    let name = endpoint.name();
    if status.is_success() {
        // HTTP 200 with `success: false` is an error too (seen in SDK tests).
        if body.get("success").and_then(Value::as_bool) == Some(false)
            || body.get("errors").is_some_and(|e| !e.is_null())
        {
            return Err(classify_refusal(name, status, &body, message));
        }
        let (data, meta) = match &body {
            Value::Object(map) if map.contains_key("success") => (
                map.get("data").cloned().unwrap_or(Value::Null),
                map.get("meta").cloned().unwrap_or(Value::Null),
            ),
            other => (other.clone(), Value::Null),
        };
        return Ok(Answer { data, meta });
    }
    let code = status.as_u16();
    if is_partner_id_refusal(&message) {
        return Err(Failure::auth(format!(
            "YClients {name}: {message} (set booking.yclients.partner_id)"
        ))
        .with_status(code)
        .into());
    }
    match code {
        404 => Err(BookingError::NotFound(format!(
            "YClients {name}: {message}"
        ))),
        401 | 408 => Err(Failure::from_status(
            &ByStatus,
            code,
            None,
            None,
            format!("YClients {name}: {message}"),
        )
        .into()),
        // Their refusal of our data: a slot gone, or a request that will fail again.
        400..=499 => Err(classify_refusal(name, status, &body, message)),
        _ => Err(Failure::from_status(
            &ByStatus,
            code,
            None,
            None,
            format!("YClients {name}: HTTP {code}: {message}"),
        )
        .into()),
    }
}

/// The refusal a live account gave admin calls sent without `X-Partner-Id` (403, Russian), and
/// Altegio's English twin (401).
pub fn is_partner_id_refusal(message: &str) -> bool {
    message.contains("Не указан идентификатор партнера")
        || message.contains("Partner ID not specified")
}

fn classify_refusal(name: &str, status: StatusCode, body: &Value, message: String) -> BookingError {
    let code = error_code(body);
    // 433 "time taken or not working time", 436 "no free master for any-master": both mean the
    // slot shown is gone. The older docs' body has only the message, so read that too.
    let taken_words = ["уже занято", "нельзя записаться"];
    if matches!(code, Some(433 | 436)) || taken_words.iter().any(|w| message.contains(w)) {
        return BookingError::SlotTaken;
    }
    let failure = Failure::permanent(format!(
        "YClients {name}: HTTP {}{}: {message}",
        status.as_u16(),
        code.map(|c| format!(" code {c}")).unwrap_or_default()
    ))
    .with_status(status.as_u16());
    match code {
        Some(code) => failure.with_code(code.to_string()).into(),
        None => failure.into(),
    }
}

/// The docs give the online-booking codes (431–438) without the key that carries them, so look
/// in the likely places.
fn error_code(body: &Value) -> Option<i64> {
    let candidates = [
        body.get("code"),
        body.pointer("/meta/code"),
        body.pointer("/data/code"),
        body.pointer("/errors/code"),
        body.pointer("/meta/errors/0/code"),
        body.pointer("/errors/0/code"),
    ];
    candidates.into_iter().flatten().find_map(i64_of)
}

fn error_message(body: &Value) -> String {
    [
        body.pointer("/meta/message"),
        body.pointer("/errors/message"),
        body.get("message"),
    ]
    .into_iter()
    .flatten()
    .find_map(|m| m.as_str().map(str::to_owned))
    .unwrap_or_else(|| match body {
        Value::String(s) => s.clone(),
        Value::Null => "no body".into(),
        other => other.to_string().chars().take(300).collect(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(
    endpoint: Endpoint,
    data: Value,
) -> Result<T, BookingError> {
    // `[]` where an object is expected is PHP's empty map; an empty list for a list.
    serde_json::from_value(data).map_err(|e| {
        BookingError::unavailable(format!(
            "YClients {} answered in an unexpected shape: {e}",
            endpoint.name()
        ))
    })
}

#[async_trait]
impl BookingSystem for Yclients {
    fn system(&self) -> &'static str {
        "yclients"
    }

    /// An online booking's appointment takes a list of services (`services: [id, …]`), and
    /// `book_staff`, `book_dates` and `book_times` take `service_ids[]` of them all.
    fn several_services(&self) -> bool {
        true
    }

    async fn services(&self) -> Result<Vec<Service>, BookingError> {
        if let Some(hit) = self.cache.get(&self.cache.services, &()) {
            return Ok(hit);
        }
        let wire = self.book_services(None).await?;
        let categories: BTreeMap<String, String> = wire
            .category
            .iter()
            .filter_map(|c| Some((id_of(&c.id)?, str_of(&c.title))))
            .collect();
        let mut lengths: BTreeMap<String, i64> = wire
            .services
            .iter()
            .filter_map(|s| Some((id_of(&s.id)?, i64_of(&s.seance_length)?)))
            .collect();
        // `seance_length` comes only when a master is named, so ask per bookable master until
        // every service has a length.
        if wire
            .services
            .iter()
            .any(|s| id_of(&s.id).is_some_and(|id| !lengths.contains_key(&id)))
        {
            for master in self.book_staff(None).await? {
                let per_master = self.book_services(Some(&master.id)).await?;
                for s in per_master.services {
                    if let (Some(id), Some(len)) = (id_of(&s.id), i64_of(&s.seance_length)) {
                        lengths.entry(id).or_insert(len);
                    }
                }
                if wire
                    .services
                    .iter()
                    .all(|s| id_of(&s.id).is_some_and(|id| lengths.contains_key(&id)))
                {
                    break;
                }
            }
        }
        let services: Vec<Service> = wire
            .services
            .iter()
            .filter_map(|s| {
                let id = id_of(&s.id)?;
                let category = id_of(&s.category_id)
                    .and_then(|c| categories.get(&c).cloned())
                    .unwrap_or_default();
                Some(Service {
                    duration_min: minutes_of(
                        lengths.get(&id).copied().unwrap_or(DEFAULT_SEANCE_SECONDS),
                    ),
                    id,
                    name: str_of(&s.title),
                    category,
                    price_min: money_of(&s.price_min),
                    price_max: money_of(&s.price_max),
                    description: description_of(&s.comment),
                })
            })
            .collect();
        self.cache.put(&self.cache.services, (), services.clone());
        Ok(services)
    }

    async fn masters(&self, service_id: &str) -> Result<Vec<Master>, BookingError> {
        if let Some(hit) = self.cache.get(&self.cache.masters, &service_id.to_owned()) {
            return Ok(hit);
        }
        let masters = self.book_staff(Some(service_id)).await?;
        self.cache
            .put(&self.cache.masters, service_id.to_owned(), masters.clone());
        Ok(masters)
    }

    async fn free_days(
        &self,
        service_id: &str,
        master_id: Option<&str>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<NaiveDate>, BookingError> {
        let key = DaysKey {
            master: master_id.unwrap_or("0").to_owned(),
            service: service_id.to_owned(),
            from,
            to,
        };
        if let Some(hit) = self.cache.get(&self.cache.days, &key) {
            return Ok(hit);
        }
        let tz = self.tz().await?;
        let mut query = service_pairs(service_id);
        query.extend([
            // 0 is the documented "any master".
            ("staff_id", key.master.clone()),
            ("date_from", from.to_string()),
            ("date_to", to.to_string()),
        ]);
        let answer = self
            .call(
                Endpoint::BookDates,
                Method::GET,
                &format!("/book_dates/{}", self.company_id),
                &query,
                None,
                false,
            )
            .await?;
        let wire: WireDates = if answer.data.is_array() {
            WireDates::default()
        } else {
            decode(Endpoint::BookDates, answer.data)?
        };
        let mut days: Vec<NaiveDate> = wire
            .booking_dates
            .iter()
            .filter_map(|v| parse_day(v, tz))
            .collect();
        if days.is_empty()
            && let Value::Object(months) = &wire.booking_days
        {
            // Month → days without a year: place each month in the asked range.
            for year in from.year()..=to.year() {
                for (month, list) in months {
                    let Ok(month) = month.parse::<u32>() else {
                        continue;
                    };
                    for d in list.as_array().into_iter().flatten().filter_map(i64_of) {
                        if let Some(date) = u32::try_from(d)
                            .ok()
                            .and_then(|d| NaiveDate::from_ymd_opt(year, month, d))
                        {
                            days.push(date);
                        }
                    }
                }
            }
        }
        days.retain(|d| from <= *d && *d <= to);
        days.sort();
        days.dedup();
        self.cache.put(&self.cache.days, key, days.clone());
        Ok(days)
    }

    async fn free_slots(
        &self,
        service_id: &str,
        master_id: Option<&str>,
        day: NaiveDate,
    ) -> Result<Vec<Slot>, BookingError> {
        if let Some(m) = master_id {
            return self.master_slots(service_id, m, day).await;
        }
        // "Any master": book_times with staff_id 0 does not say whose the slot is, and the
        // client must see who will do the work, so ask each bookable master and keep the first
        // master (in the salon's own order) for every start time.
        let mut merged: BTreeMap<DateTime<Utc>, Slot> = BTreeMap::new();
        for master in self.masters(service_id).await? {
            for slot in self.master_slots(service_id, &master.id, day).await? {
                merged.entry(slot.start).or_insert(slot);
            }
        }
        Ok(merged.into_values().collect())
    }

    async fn book(&self, request: &BookRequest) -> Result<Record, BookingError> {
        let company = self.company().await?;
        let tz = company.timezone;
        let datetime = Self::wire_datetime(request.start, tz);
        let staff_id: i64 = request
            .master_id
            .parse()
            .map_err(|_| BookingError::NotFound(format!("master {}", request.master_id)))?;
        // A visit of several services is one appointment with all of them, as the widget books.
        let services = Service::ids_in(&request.service_id)
            .map(|id| id.parse::<i64>())
            .collect::<Result<Vec<i64>, _>>()
            .map_err(|_| BookingError::NotFound(format!("service {}", request.service_id)))?;
        let appointment = json!({
            "id": 1,
            "services": services,
            "staff_id": staff_id,
            "datetime": datetime,
        });
        let day = request.start.with_timezone(&tz).date_naive();
        let check = self
            .call(
                Endpoint::BookCheck,
                Method::POST,
                &format!("/book_check/{}", self.company_id),
                &[],
                Some(&json!({ "appointments": [appointment.clone()] })),
                false,
            )
            .await;
        if let Err(BookingError::SlotTaken) = check {
            self.invalidate_day(&request.master_id, day);
        }
        check?;
        // YClients wants the phone as digits only ("79161502239").
        let phone: String = request
            .client_phone
            .as_str()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let body = json!({
            "phone": phone,
            "fullname": request.client_name,
            "email": request.client_email.as_ref().map(|e| e.as_str()).unwrap_or(""),
            "comment": request.comment,
            "api_id": request.booking_id,
            "notify_by_sms": 0,
            "notify_by_email": 0,
            "appointments": [appointment],
        });
        let result = self
            .call(
                Endpoint::BookRecord,
                Method::POST,
                &format!("/book_record/{}", self.company_id),
                &[],
                Some(&body),
                false,
            )
            .await;
        // Whatever happened, that day's cached slots are no longer trustworthy.
        self.invalidate_day(&request.master_id, day);
        let answer = match result {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(phone = %request.client_phone.masked(), booking = %request.booking_id, error = %e, "yclients booking failed");
                return Err(e);
            }
        };
        let created: Vec<WireCreated> = decode(Endpoint::BookRecord, answer.data)?;
        let first = created.first().ok_or_else(|| {
            BookingError::unavailable("YClients book_record answered without a record")
        })?;
        let record_id = i64_of(&first.record_id)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| {
                BookingError::unavailable("YClients book_record answered without record_id")
            })?;
        let external = ExternalId {
            record_id,
            hash: id_of(&first.record_hash),
        };
        tracing::info!(phone = %request.client_phone.masked(), booking = %request.booking_id, record = record_id, "yclients record created");
        Ok(Record {
            external_id: external.to_string(),
            service_id: request.service_id.clone(),
            master_id: request.master_id.clone(),
            start: request.start,
            duration_min: request.duration_min,
            status: RecordStatus::Active,
        })
    }

    async fn cancel(&self, external_id: &str) -> Result<(), BookingError> {
        let id = ExternalId::parse(external_id)?;
        let tz = self.tz().await?;
        // Read first: the day to invalidate, and an already-deleted record is a success.
        let existing = self.read_record(&id).await?;
        match &existing {
            None => return Ok(()),
            Some(r) if r.status == RecordStatus::Cancelled => return Ok(()),
            Some(_) => {}
        }
        let result = match (&self.user_token, &id.hash) {
            (Some(_), _) => {
                self.call(
                    Endpoint::RecordDelete,
                    Method::DELETE,
                    &format!("/record/{}/{}", self.company_id, id.record_id),
                    &[],
                    None,
                    true,
                )
                .await
            }
            (None, Some(hash)) => {
                self.call(
                    Endpoint::UserRecordDelete,
                    Method::DELETE,
                    &format!("/user/records/{}/{}", id.record_id, hash),
                    &[],
                    None,
                    false,
                )
                .await
            }
            (None, None) => {
                return Err(BookingError::auth(
                    "cancelling a record without its hash needs a YClients user token",
                ));
            }
        };
        if let Some(r) = &existing {
            self.invalidate_day(&r.master_id, r.start.with_timezone(&tz).date_naive());
        }
        match result {
            Ok(_) | Err(BookingError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn reschedule(&self, external_id: &str, slot: &Slot) -> Result<Record, BookingError> {
        let id = ExternalId::parse(external_id)?;
        let tz = self.tz().await?;
        let existing = self
            .read_record(&id)
            .await?
            .ok_or_else(|| BookingError::NotFound(format!("YClients record {external_id}")))?;
        if existing.status == RecordStatus::Cancelled {
            return Err(BookingError::NotFound(format!(
                "YClients record {external_id} is cancelled"
            )));
        }
        if !existing.master_id.is_empty() && existing.master_id != slot.master_id {
            // The online-booking move takes only a new time; another master means a new record.
            return Err(BookingError::rejected(
                "YClients moves a booking only in time, not to another master",
            ));
        }
        // Only the time: `comment` is optional, and an empty one would wipe what the salon
        // wrote on the record. The older docs want the user token here too; the current ones
        // the partner token alone, so it goes along when we have it.
        let result = self
            .call(
                Endpoint::BookRecordMove,
                Method::PUT,
                &format!("/book_record/{}/{}", self.company_id, id.record_id),
                &[],
                Some(&json!({ "datetime": Self::wire_datetime(slot.start, tz) })),
                self.user_token.is_some(),
            )
            .await;
        self.invalidate_day(
            &existing.master_id,
            existing.start.with_timezone(&tz).date_naive(),
        );
        self.invalidate_day(&slot.master_id, slot.start.with_timezone(&tz).date_naive());
        let answer = result?;
        // The move answer is a record, but its sample says `deleted: true` for a live record,
        // so the status is not taken from it.
        let wire: Result<WireRecord, _> = serde_json::from_value(answer.data);
        let start = wire.ok().and_then(|w| w.start(tz)).unwrap_or(slot.start);
        Ok(Record {
            external_id: id.to_string(),
            service_id: existing.service_id,
            master_id: existing.master_id,
            start,
            duration_min: existing.duration_min,
            status: RecordStatus::Active,
        })
    }

    async fn record(&self, external_id: &str) -> Result<Option<Record>, BookingError> {
        self.read_record(&ExternalId::parse(external_id)?).await
    }

    /// Our booking id travels as the record's `api_id`. No documented filter searches by it,
    /// so the master's records of that salon-local day are listed (admin `GET /records`,
    /// one call for a day) and compared. Without a user token there is no list to search:
    /// `None`, and the caller goes on to the slot check.
    async fn find_record_for_booking(
        &self,
        request: &BookRequest,
    ) -> Result<Option<Record>, BookingError> {
        if self.user_token.is_none() {
            tracing::warn!(
                booking = %request.booking_id,
                "a record made by a lost book_record answer cannot be searched without \
                 booking.yclients.user_token"
            );
            return Ok(None);
        }
        let tz = self.tz().await?;
        let day = request.start.with_timezone(&tz).date_naive();
        let (items, _) = self
            .wire_records(day, day, Some(&request.master_id), false)
            .await?;
        for r in items {
            if id_of(&r.api_id).as_deref() != Some(request.booking_id.as_str())
                || bool_of(&r.deleted)
            {
                continue;
            }
            let Some(id) = i64_of(&r.id).and_then(|n| u64::try_from(n).ok()) else {
                continue;
            };
            let record = r.to_record(id.to_string(), tz)?;
            tracing::info!(booking = %request.booking_id, record = id, "yclients record of an earlier attempt found");
            return Ok(Some(record));
        }
        Ok(None)
    }

    /// `attendance = 2` ("confirmed") on the record. YClients has no partial update: `PUT
    /// /record` takes the whole record, so the current one is read and written back with the
    /// status changed. Needs the admin (user) token; without it the schedule keeps no
    /// confirmation and `false` says so.
    async fn confirm_visit(&self, external_id: &str) -> Result<bool, BookingError> {
        if self.user_token.is_none() {
            return Ok(false);
        }
        let id = ExternalId::parse(external_id)?;
        let path = format!("/record/{}/{}", self.company_id, id.record_id);
        let current = self
            .call(Endpoint::RecordGet, Method::GET, &path, &[], None, true)
            .await?
            .data;
        if bool_of(&current["deleted"]) {
            return Err(BookingError::NotFound(
                "the record was deleted in the schedule".into(),
            ));
        }
        if i64_of(&current["attendance"]) == Some(2) {
            return Ok(true);
        }
        let body = confirmed_record_body(&current)?;
        self.call(
            Endpoint::RecordUpdate,
            Method::PUT,
            &path,
            &[],
            Some(&body),
            true,
        )
        .await?;
        Ok(true)
    }

    async fn records_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Option<super::RecordListing>, BookingError> {
        // The admin list needs the user token; without it records are read one by one by hash.
        if self.user_token.is_none() {
            return Ok(None);
        }
        let tz = self.tz().await?;
        let listing = self
            .records_paged(
                from.with_timezone(&tz).date_naive(),
                to.with_timezone(&tz).date_naive(),
            )
            .await?;
        Ok(Some(listing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(name: &str) -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/contracts/yclients/");
        let text = std::fs::read_to_string(format!("{path}{name}"))
            .unwrap_or_else(|e| panic!("contract {name} is missing at {path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn data(name: &str) -> Value {
        let v = contract(name);
        map_answer(Endpoint::Company, StatusCode::OK, v)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .data
    }

    const MSK: Tz = chrono_tz::Europe::Moscow;

    #[test]
    fn instants_in_every_documented_encoding() {
        let want = Utc.with_ymd_and_hms(2020, 11, 21, 13, 0, 0).unwrap();
        for v in [
            json!("2020-11-21T16:00:00+03:00"),
            json!("2020-11-21T16:00:00+0300"),
            json!("2020-11-21T16:00:00.000+03:00"),
            json!("2020-11-21 16:00:00"),
            json!(want.timestamp()),
            json!(want.timestamp().to_string()),
        ] {
            assert_eq!(parse_instant(&v, MSK), Some(want), "{v}");
        }
        assert_eq!(parse_instant(&json!("завтра"), MSK), None);
        assert_eq!(parse_instant(&Value::Null, MSK), None);
    }

    #[test]
    fn company_contract_gives_zone_and_address() {
        let c: WireCompany = serde_json::from_value(data("company-get.response.json")).unwrap();
        assert_eq!(c.timezone_name.as_deref(), Some("Europe/Moscow"));
        assert_eq!(str_of(&c.address), "Большой Саввинский пер., д. 3");
        assert!(bool_of(&c.phone_confirmation));
    }

    #[test]
    fn book_services_contract_reads_category_key_and_lengths() {
        let s: WireBookServices =
            serde_json::from_value(data("book-services.response.json")).unwrap();
        assert_eq!(s.services.len(), 2);
        assert_eq!(s.category.len(), 2);
        assert_eq!(i64_of(&s.services[0].seance_length), Some(3600));
        assert_eq!(money_of(&json!("1000.00")), Money(100_000));
        assert_eq!(money_of(&json!(1500)), Money(150_000));
        // The documented payloads carry an empty `comment`: no description.
        assert!(
            s.services
                .iter()
                .all(|x| description_of(&x.comment).is_none())
        );
    }

    #[test]
    fn a_service_comment_becomes_plain_text() {
        let mut payload = data("book-services.response.json");
        payload["services"][0]["comment"] = json!(
            "<p>Мытьё &amp; уход &#8212; &laquo;люкс&raquo;<br/>для&nbsp;всех   типов волос</p>\n\n<div>Цена < 1000?</div>"
        );
        payload["services"][1]["comment"] = json!("  <p> </p>&nbsp;");
        let s: WireBookServices = serde_json::from_value(payload).unwrap();
        assert_eq!(
            description_of(&s.services[0].comment).as_deref(),
            Some("Мытьё & уход — «люкс»\nдля всех типов волос\nЦена < 1000?")
        );
        assert_eq!(description_of(&s.services[1].comment), None);
        assert_eq!(description_of(&Value::Null), None);
        assert_eq!(description_of(&json!(0)), None);
    }

    #[test]
    fn book_staff_contract_string_ids_and_empty_position() {
        let staff: Vec<WireStaff> =
            serde_json::from_value(data("book-staff.response.json")).unwrap();
        let bookable: Vec<_> = staff.iter().filter(|s| bool_of(&s.bookable)).collect();
        assert_eq!(bookable.len(), 1);
        assert_eq!(id_of(&bookable[0].id).as_deref(), Some("16"));
    }

    #[test]
    fn book_dates_contract_unix_days() {
        let d: WireDates = serde_json::from_value(data("book-dates.response.json")).unwrap();
        let first = parse_day(&d.booking_dates[0], MSK).unwrap();
        assert_eq!(first, NaiveDate::from_ymd_opt(2015, 9, 4).unwrap());
        assert_eq!(
            parse_day(&json!("2026-09-17"), MSK),
            NaiveDate::from_ymd_opt(2026, 9, 17)
        );
    }

    #[test]
    fn book_times_contracts_unix_and_iso() {
        for name in ["book-times.response.json", "book-times-iso.response.json"] {
            let t: Vec<WireTime> = serde_json::from_value(data(name)).unwrap();
            assert_eq!(t.len(), 5, "{name}");
            let start = parse_instant(&t[0].datetime, MSK).unwrap();
            assert_eq!(start.timestamp(), 1443513600, "{name}");
            assert_eq!(i64_of(&t[0].seance_length), Some(3600));
        }
    }

    #[test]
    fn staff_seances_contract_parses() {
        let v = data("book-staff-seances.response.json");
        let seances: Vec<WireTime> = serde_json::from_value(v["seances"].clone()).unwrap();
        assert_eq!(seances.len(), 5);
    }

    #[test]
    fn book_check_and_record_contracts() {
        assert!(
            map_answer(
                Endpoint::BookCheck,
                StatusCode::CREATED,
                contract("book-check.response.json")
            )
            .is_ok()
        );
        let created: Vec<WireCreated> =
            serde_json::from_value(data("book-record.response.json")).unwrap();
        let id = ExternalId {
            record_id: u64::try_from(i64_of(&created[0].record_id).unwrap()).unwrap(),
            hash: id_of(&created[0].record_hash),
        };
        assert_eq!(id.to_string(), "2820023:567df655304da9b98487769426d4e76e");
        assert_eq!(ExternalId::parse(&id.to_string()).unwrap(), id);
        assert_eq!(ExternalId::parse("42").unwrap().hash, None);
        assert!(ExternalId::parse("abc:def").is_err());
        assert!(
            map_answer(
                Endpoint::BookCheck,
                StatusCode::CREATED,
                contract("book-code.response.json")
            )
            .is_ok()
        );
    }

    #[test]
    fn record_contracts_map_status_and_offsets() {
        // Bare object, `+0000` offsets, `deleted: true`.
        let r: WireRecord = serde_json::from_value(data("book-record-get.response.json")).unwrap();
        let rec = r.to_record("13132699:h".into(), MSK).unwrap();
        assert_eq!(rec.status, RecordStatus::Cancelled);
        assert_eq!(rec.master_id, "55436");
        assert_eq!(rec.service_id, "389043");
        assert_eq!(rec.duration_min, 30);
        assert_eq!(
            rec.start,
            Utc.with_ymd_and_hms(2017, 10, 24, 17, 30, 0).unwrap()
        );
        // Full admin record: `+09:00` datetime, number phone, `[]` custom fields.
        let r: WireRecord = serde_json::from_value(data("record-get.response.json")).unwrap();
        let rec = r.to_record("2".into(), MSK).unwrap();
        assert_eq!(rec.status, RecordStatus::Active);
        assert_eq!(
            rec.start,
            Utc.with_ymd_and_hms(2019, 1, 1, 3, 0, 0).unwrap()
        );
        assert_eq!(rec.master_id, "9");
        // Move answer: no meta, unix dates.
        let r: WireRecord = serde_json::from_value(data("book-record-move.response.json")).unwrap();
        assert_eq!(r.start(MSK).unwrap().timestamp(), 1463754600);
        assert_eq!(r.staff_id().as_deref(), Some("924"));
        assert_eq!(record_status(false, Some(-1)), RecordStatus::NoShow);
        assert_eq!(record_status(false, Some(1)), RecordStatus::Visited);
        assert_eq!(record_status(false, Some(2)), RecordStatus::Active);
    }

    #[test]
    fn the_minute_quota_keeps_any_minute_under_the_ceiling() {
        use governor::clock::FakeRelativeClock;
        for ceiling in [200, 60, 1000] {
            let clock = FakeRelativeClock::default();
            let limiter =
                RateLimiter::direct_with_clock(minute_quota(ceiling).unwrap(), clock.clone());
            // A caller that asks every 10 ms for three minutes.
            let mut admitted: Vec<u64> = Vec::new();
            for tick in 0..18_000u64 {
                if limiter.check().is_ok() {
                    admitted.push(tick * 10);
                }
                clock.advance(StdDuration::from_millis(10));
            }
            let worst = admitted
                .iter()
                .enumerate()
                .map(|(i, start)| {
                    admitted[i..]
                        .iter()
                        .take_while(|t| **t < start + 60_000)
                        .count()
                })
                .max()
                .unwrap();
            assert!(worst <= ceiling as usize, "{ceiling}: {worst} in a minute");
            // And not needlessly slow: within 10 % of the ceiling.
            assert!(
                worst * 10 >= ceiling as usize * 9,
                "{ceiling}: only {worst}"
            );
        }
    }

    #[test]
    fn client_card_contracts_parse() {
        // `POST /clients` answers the card with the phone as a JSON number.
        let card: WireClient =
            serde_json::from_value(data("clients-create.response.json")).unwrap();
        let card = card.into_salon_client().unwrap();
        assert_eq!(card.id, "1121412");
        assert_eq!(card.name, "Василий");
        assert_eq!(card.phone.as_deref(), Some("79211234567"));
        assert_eq!(card.email.as_deref(), Some("123456789@gmail.com"));
        // `clients/search` gives only the requested fields, and the total in `meta`.
        let answer = map_answer(
            Endpoint::ClientsSearch,
            StatusCode::OK,
            contract("clients-search.response.json"),
        )
        .unwrap();
        assert_eq!(answer.meta["total_count"], 908);
        let items: Vec<WireClient> = decode(Endpoint::ClientsSearch, answer.data).unwrap();
        let found: Vec<SalonClient> = items
            .into_iter()
            .filter_map(WireClient::into_salon_client)
            .collect();
        assert_eq!(found.len(), 3);
        assert_eq!(
            (found[0].id.as_str(), found[0].name.as_str()),
            ("2", "Петров")
        );
        assert_eq!(found[0].phone, None);
    }

    #[test]
    fn admin_list_contracts_parse() {
        for name in [
            "company-services.response.json",
            "company-staff.response.json",
            "clients-search.response.json",
            "clients-create.response.json",
            "clients-visits-search.response.json",
            "validate-phone.response.json",
        ] {
            let v = contract(name);
            assert!(
                map_answer(Endpoint::Records, StatusCode::OK, v).is_ok(),
                "{name}"
            );
        }
        let meta = contract("records-list-meta.fragment.json");
        assert_eq!(meta["meta"]["total_count"], 10);
        let auth = contract("auth.response.json");
        assert!(map_answer(Endpoint::Company, StatusCode::CREATED, auth).is_ok());
        for name in [
            "timetable-dates.fragment.json",
            "timetable-seances.fragment.json",
        ] {
            assert!(contract(name).get("data").is_some(), "{name}");
        }
    }

    #[test]
    fn error_contracts_map_to_booking_errors() {
        let taken = contract("error-433-time-taken.response.json");
        assert!(matches!(
            map_answer(Endpoint::BookCheck, StatusCode::UNPROCESSABLE_ENTITY, taken),
            Err(BookingError::SlotTaken)
        ));
        let coded = json!({"success": false, "data": null, "meta": {"message": "x", "code": 433}});
        assert!(matches!(
            map_answer(
                Endpoint::BookRecord,
                StatusCode::UNPROCESSABLE_ENTITY,
                coded
            ),
            Err(BookingError::SlotTaken)
        ));
        let e = map_answer(
            Endpoint::Company,
            StatusCode::UNAUTHORIZED,
            contract("error-401-unauthorized.response.json"),
        );
        assert!(
            matches!(&e, Err(err) if err.is_auth() && err.to_string().contains("Необходима авторизация"))
        );
        let e = map_answer(
            Endpoint::Company,
            StatusCode::UNAUTHORIZED,
            contract("error-401-partner-id-not-specified.response.json"),
        );
        assert!(matches!(&e, Err(err) if err.is_auth() && err.to_string().contains("Partner ID")));
        let e = map_answer(
            Endpoint::Company,
            StatusCode::BAD_REQUEST,
            contract("error-400-aggregator-not-found.response.json"),
        );
        assert!(
            matches!(&e, Err(err) if err.is_refusal() && err.to_string().contains("Агрегатор не найден"))
        );
        let e = map_answer(
            Endpoint::Company,
            StatusCode::SERVICE_UNAVAILABLE,
            Value::Null,
        );
        assert!(matches!(&e, Err(err) if err.is_transient()));
        let e = map_answer(
            Endpoint::Company,
            StatusCode::OK,
            json!({"success": false, "data": null, "meta": {"message": "логическая ошибка"}}),
        );
        assert!(
            matches!(&e, Err(err) if err.is_refusal() && err.to_string().contains("логическая"))
        );
        let e = map_answer(
            Endpoint::Company,
            StatusCode::NOT_FOUND,
            json!({"errors": {"code": 404, "message": "Not found"}, "meta": {}}),
        );
        assert!(matches!(e, Err(BookingError::NotFound(m)) if m.contains("Not found")));
    }

    #[test]
    fn record_webhook_contract_becomes_an_event() {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/contracts/yclients/webhook-record-update.webhook.json"
        ))
        .expect("webhook-record-update.webhook.json");
        let events = parse_webhook(&body, MSK).unwrap();
        let WebhookEvent::Record(e) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(e.record_id, 234961815);
        assert_eq!(e.company_id, 358944);
        assert_eq!(e.change, ChangeKind::Update);
        assert_eq!(e.staff_id.as_deref(), Some("1072559"));
        assert_eq!(e.service_ids, ["6137968"]);
        assert_eq!(
            e.start,
            Some(Utc.with_ymd_and_hms(2020, 11, 21, 13, 0, 0).unwrap())
        );
        assert_eq!(e.duration_min, Some(135));
        assert_eq!(e.attendance, Some(0));
        assert_eq!(e.status(), RecordStatus::Active);
        assert_eq!(
            e.last_change,
            Some(Utc.with_ymd_and_hms(2020, 11, 17, 10, 58, 19).unwrap())
        );
    }

    #[test]
    fn other_webhook_contracts_parse() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/contracts/yclients/");
        let fin = std::fs::read(format!(
            "{dir}webhook-finances-operation-create.webhook.json"
        ))
        .expect("webhook-finances-operation-create.webhook.json");
        let events = parse_webhook(&fin, MSK).unwrap();
        assert!(matches!(
            &events[0],
            WebhookEvent::Other { resource, resource_id: Some(199254095), status }
                if resource == "finances_operation" && status == "create"
        ));
        let uninstall = std::fs::read(format!("{dir}webhook-marketplace-uninstall.webhook.json"))
            .expect("webhook-marketplace-uninstall.webhook.json");
        assert_eq!(
            parse_webhook(&uninstall, MSK).unwrap(),
            vec![WebhookEvent::Marketplace {
                salon_id: 123,
                event: "uninstall".into()
            }]
        );
        let delete = br#"[{"company_id": 1, "resource": "record", "resource_id": 7, "status": "delete", "data": []}]"#;
        let events = parse_webhook(delete, MSK).unwrap();
        let WebhookEvent::Record(e) = &events[0] else {
            panic!()
        };
        assert_eq!((e.record_id, e.status()), (7, RecordStatus::Cancelled));
        assert!(parse_webhook(b"{\"resource\": \"record\", \"status\": \"boom\"}", MSK).is_err());
        assert!(parse_webhook(b"not json", MSK).is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let mut c = YclientsConfig::new(default_base_url(), 1, "PARTNER-SECRET");
        c.user_token = Some(SecretString::from("USER-SECRET".to_owned()));
        let text = format!("{c:?}");
        assert!(
            !text.contains("PARTNER-SECRET") && !text.contains("USER-SECRET"),
            "{text}"
        );
    }
}
