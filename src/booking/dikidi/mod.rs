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
//!
//! The folder: this file holds the type's [`BookingSystem`] impl, the booking steps, the events
//! of two-way sync and the check report; `config.rs` its settings; `client.rs` the paced calls,
//! the envelope and the drift alarm; `wire.rs` and `map.rs` the vendor's shapes and their
//! readers; `poller.rs` the poll that stands in for webhooks (a salon's cancel starts there).

use crate::domain::{BookingId, RecordId, System};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use governor::{DefaultDirectRateLimiter, RateLimiter};
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
use crate::connectors::pacing::{DIKIDI_INLINE_WAIT, Pace};
use crate::connectors::{Failure, http};
use crate::domain::{Master, Money, Service, Slot};

mod client;
mod config;
mod map;
mod poller;
#[cfg(test)]
mod tests;
mod wire;

pub use client::*;
pub use config::*;
pub use map::*;
pub use poller::*;
use wire::*;

/// Used when neither the catalogue nor the slot answer says how long a service lasts.
const DEFAULT_SERVICE_MIN: u32 = 60;
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
// Events for two-way sync
// ---------------------------------------------------------------------------------------------

/// A record we made, as we last knew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownRecord {
    pub external_id: RecordId,
    pub start: DateTime<Utc>,
    pub status: RecordStatus,
}

/// What polling found; the sync engine turns these into domain events and alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DikidiEvent {
    /// Dikidi reports the record deleted or cancelled (a positive signal; absence is not one).
    Cancelled { external_id: RecordId },
    /// `records_info` answered without records we know: drift, not a cancellation. Raised
    /// once per record until it is listed again; nothing is cancelled and no client is told.
    RecordsMissing { external_ids: Vec<RecordId> },
    /// The salon's `record` step demanded a captcha for booking `booking_id`. zapis never
    /// tries to pass one: the client was told to call.
    CaptchaDemanded { booking_id: BookingId },
    /// The record now starts at another time.
    Moved {
        external_id: RecordId,
        new_start: DateTime<Utc>,
    },
    /// A payload no longer parses: "Dikidi's API changed". Raised once per episode.
    ApiChanged { endpoint: String, sample: String },
    /// The endpoint that changed parses again; booking is back on.
    ApiRecovered,
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

impl Dikidi {
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
        let mut missing: Vec<RecordId> = Vec::new();
        let mut listed: Vec<RecordId> = Vec::new();
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
                let ids: Vec<String> = batch.iter().map(|k| k.external_id.to_string()).collect();
                match self.records_info(&ids).await {
                    Ok(found) => {
                        for k in batch {
                            match found.get(k.external_id.as_str()) {
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
                            if found.contains_key(k.external_id.as_str()) {
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
            let fresh: Vec<RecordId> = missing
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
            external_id: RecordId::parse(&external_id)?,
            service_id: request.service_id.clone(),
            master_id: master_id.to_owned(),
            start,
            duration_min: duration_between(start, end).unwrap_or(request.duration_min),
            status: RecordStatus::Active,
        })
    }

    fn pending_record(&self, booking_id: &BookingId) -> Result<PendingRecord, BookingError> {
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
    fn captcha(&self, booking_id: &BookingId, why: &str) -> BookingError {
        tracing::warn!(booking = %booking_id, "dikidi demands a captcha; the client is told to call");
        self.drift
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .outbox
            .push(DikidiEvent::CaptchaDemanded {
                booking_id: booking_id.clone(),
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
    fn system(&self) -> System {
        System::Dikidi
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
        super::keep_days_within(&mut days, from, to);
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
        Slot::sort(&mut slots);
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

    async fn confirm_code(
        &self,
        booking_id: &BookingId,
        code: &str,
    ) -> Result<Record, BookingError> {
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

    async fn resend_code(&self, booking_id: &BookingId) -> Result<Option<Record>, BookingError> {
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

    async fn abandon_code(&self, booking_id: &BookingId) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(booking_id);
    }

    async fn cancel(&self, external_id: &RecordId) -> Result<(), BookingError> {
        self.partner_guard()?;
        self.call(
            Endpoint::RemoveRecord,
            &[("id", external_id.to_string())],
            None,
            &[],
            |_| Ok(()),
        )
        .await?;
        tracing::info!(record = %external_id, "dikidi: cancelled");
        Ok(())
    }

    async fn reschedule(
        &self,
        _external_id: &RecordId,
        _slot: &Slot,
    ) -> Result<Record, BookingError> {
        self.partner_guard()?;
        // The widget has no move step; a move is a cancel plus a new booking, which needs the
        // client's data this call does not carry.
        Err(BookingError::rejected(
            "Dikidi's widget cannot move a record; cancel it and book again",
        ))
    }

    async fn record(&self, external_id: &RecordId) -> Result<Option<Record>, BookingError> {
        self.partner_guard()?;
        let found = self.records_info(&[external_id.to_string()]).await?;
        Ok(found
            .get(external_id.as_str())
            .map(|(start, end, body)| Record {
                external_id: external_id.clone(),
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
