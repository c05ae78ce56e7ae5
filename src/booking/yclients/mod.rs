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
//!
//! The folder: this file holds the type's [`BookingSystem`] impl, external ids and the check
//! report; `config.rs` its settings; `client.rs` the paced calls and the sorting of answers;
//! `wire.rs` and `map.rs` the vendor's shapes and their lenient readers; `cache.rs` the slot
//! cache; `cards.rs` client cards for imports; `webhook.rs` record webhooks (a salon's cancel or
//! move starts there; `lifecycle::inbox` applies it).

use crate::domain::{RecordId, System};
use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
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

mod cache;
mod cards;
mod client;
mod config;
mod map;
#[cfg(test)]
mod tests;
mod webhook;
mod wire;

use cache::*;
pub use cards::*;
pub use client::*;
pub use config::*;
pub use map::*;
pub use webhook::*;
use wire::*;

/// The media type selecting the v2 envelope; calls without it are reported to fail.
const ACCEPT_V2: &str = "application/vnd.yclients.v2+json";
/// Larger pages are silently cut to 200 by the server, so we never ask for more.
pub const MAX_PAGE: u32 = 200;
/// Used when no endpoint tells a service's length; the docs name 3600 s as the default.
const DEFAULT_SEANCE_SECONDS: i64 = 3600;

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

#[async_trait]
impl BookingSystem for Yclients {
    fn system(&self) -> System {
        System::Yclients
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
        super::keep_days_within(&mut days, from, to);
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
            external_id: RecordId::parse(&external.to_string())?,
            service_id: request.service_id.clone(),
            master_id: request.master_id.clone(),
            start: request.start,
            duration_min: request.duration_min,
            status: RecordStatus::Active,
        })
    }

    async fn cancel(&self, external_id: &RecordId) -> Result<(), BookingError> {
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

    async fn reschedule(
        &self,
        external_id: &RecordId,
        slot: &Slot,
    ) -> Result<Record, BookingError> {
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
            external_id: RecordId::parse(&id.to_string())?,
            service_id: existing.service_id,
            master_id: existing.master_id,
            start,
            duration_min: existing.duration_min,
            status: RecordStatus::Active,
        })
    }

    async fn record(&self, external_id: &RecordId) -> Result<Option<Record>, BookingError> {
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
    async fn confirm_visit(&self, external_id: &RecordId) -> Result<bool, BookingError> {
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
