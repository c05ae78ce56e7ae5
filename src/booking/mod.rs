//! The seam to booking systems (YClients, Dikidi, the built-in sandbox).

pub mod dikidi;
pub mod sandbox;
pub mod yclients;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::connectors::{Failure, Kind};
use crate::domain::{BookingId, InvalidRecordId, Master, RecordId, Service, Slot, System};
use crate::normalize::{Email, Phone};
use crate::sync::DeliveryError;

/// What can go wrong when talking to a schedule: the outcomes a caller acts on, and a
/// [`Failure`] (with its retry decision) for everything else.
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    /// The slot was free when shown but is taken now.
    #[error("the slot is no longer free")]
    SlotTaken,
    #[error("not found in the schedule: {0}")]
    NotFound(String),
    /// Online booking into this schedule is switched off for now (e.g. the vendor changed its
    /// API and we no longer understand it). Not retried, not queued: the client is told to
    /// call the business instead.
    #[error("online booking into the schedule is closed: {0}")]
    Closed(String),
    /// The schedule sent the client a confirmation code (an SMS) and holds the booking until it
    /// is entered; [`BookingSystem::confirm_code`] completes it.
    #[error("the schedule wants the confirmation code it sent to the client")]
    CodeRequired,
    /// The code entered is not the one the schedule sent.
    #[error("the schedule refused the confirmation code")]
    CodeWrong,
    /// The schedule could not be reached, refused the request or our credentials.
    #[error("{}", describe(.0))]
    Failed(Failure),
}

fn describe(f: &Failure) -> String {
    let what = match f.kind {
        Kind::Transient { .. } => "the schedule is unavailable",
        Kind::Auth => "the schedule rejected our credentials",
        Kind::Permanent | Kind::PaymentRequired => "the schedule refused the request",
    };
    format!("{what}: {}", f.message)
}

/// A record id no schedule would send (empty, over-long, control characters): the answer is
/// not one we can keep, and asking again brings the same.
impl From<InvalidRecordId> for BookingError {
    fn from(e: InvalidRecordId) -> BookingError {
        BookingError::rejected(format!("the schedule's answer: {e}"))
    }
}

impl BookingError {
    /// The schedule could not be reached or answered with a temporary failure.
    pub fn unavailable(message: impl Into<String>) -> BookingError {
        BookingError::Failed(Failure::transient(message))
    }

    /// The schedule refused the request; retrying will not help.
    pub fn rejected(message: impl Into<String>) -> BookingError {
        BookingError::Failed(Failure::permanent(message))
    }

    /// The schedule refused our credentials.
    pub fn auth(message: impl Into<String>) -> BookingError {
        BookingError::Failed(Failure::auth(message))
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, BookingError::Failed(f) if f.is_transient())
    }

    /// The schedule refused this request for good (not our credentials).
    pub fn is_refusal(&self) -> bool {
        matches!(self, BookingError::Failed(f) if f.kind == Kind::Permanent)
    }

    pub fn is_auth(&self) -> bool {
        matches!(self, BookingError::Failed(f) if f.is_auth())
    }

    /// The failure behind a refusal or an outage; `None` for the outcomes a caller acts on.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            BookingError::Failed(f) => Some(f),
            _ => None,
        }
    }
}

impl From<Failure> for BookingError {
    fn from(f: Failure) -> BookingError {
        BookingError::Failed(f)
    }
}

/// The queue's decision for a schedule's answer, the same for every caller: an outage waits
/// (with the schedule's own hint), credentials alert, and a slot taken, a record gone or
/// closed booking will not change by retrying.
impl From<BookingError> for DeliveryError {
    fn from(e: BookingError) -> DeliveryError {
        match e {
            BookingError::Failed(f) => f.into(),
            other => DeliveryError::permanent(other.to_string()),
        }
    }
}

/// A booking request as the schedule needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookRequest {
    /// Our booking id, written into the record where the system has a place for it.
    pub booking_id: BookingId,
    pub service_id: String,
    pub master_id: String,
    pub start: DateTime<Utc>,
    pub duration_min: u32,
    pub client_phone: Phone,
    pub client_name: String,
    pub client_email: Option<Email>,
    /// Free text for the administrator: the source of the booking, a client's note.
    pub comment: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    Active,
    Cancelled,
    Visited,
    NoShow,
}

/// A record as the schedule holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The schedule's id of the record, checked where its answer was read.
    pub external_id: RecordId,
    pub service_id: String,
    pub master_id: String,
    pub start: DateTime<Utc>,
    pub duration_min: u32,
    pub status: RecordStatus,
}

/// Records listed in bulk, with the number of calls the listing took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordListing {
    pub records: Vec<Record>,
    pub calls: usize,
}

/// The part of an external id the schedule's lists name (`123` of `123:hash`).
pub fn record_key(external_id: &str) -> &str {
    external_id.split(':').next().unwrap_or(external_id)
}

/// Free days as a schedule answered them, kept to `from..=to`, in order, each once.
pub(crate) fn keep_days_within(days: &mut Vec<NaiveDate>, from: NaiveDate, to: NaiveDate) {
    days.retain(|d| from <= *d && *d <= to);
    days.sort();
    days.dedup();
}

/// The note on the record in the schedule: the client's own comment first, then where they
/// came from.
pub(crate) fn record_comment(client: Option<&str>, source: &crate::domain::Source) -> String {
    let origin = booking_comment(source);
    match client {
        Some(comment) => format!("{comment}\n{origin}"),
        None => origin,
    }
}

/// The note the administrator sees on the record: where the client came from.
fn booking_comment(source: &crate::domain::Source) -> String {
    let mut parts = vec![format!("zapis: {}", source.channel)];
    if let Some(p) = &source.payload {
        parts.push(format!("start={p}"));
    }
    let utm = &source.utm;
    for (k, v) in [
        ("utm_source", &utm.source),
        ("utm_medium", &utm.medium),
        ("utm_campaign", &utm.campaign),
        ("utm_content", &utm.content),
        ("utm_term", &utm.term),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    }
    parts.join("; ")
}

/// One line and one count per booking the schedule confirmed, with where it came from.
pub(crate) fn log_booked(booking: &crate::domain::Booking) {
    let source = &booking.source;
    tracing::info!(
        booking = %booking.id,
        phone = %booking.client_phone.masked(),
        channel = source.channel.as_str(),
        source = %crate::metrics::source_label(source),
        payload = source.payload.as_deref().unwrap_or(""),
        utm_source = source.utm.source.as_deref().unwrap_or(""),
        utm_campaign = source.utm.campaign.as_deref().unwrap_or(""),
        service = %booking.service_name,
        "booked"
    );
    crate::metrics::booked(source);
}

#[async_trait]
pub trait BookingSystem: Send + Sync {
    /// Short name for logs, links and the journal (`sandbox`, `yclients`).
    fn system(&self) -> System;
    /// Books several services in one visit: then a service id may be a visit's joined ids
    /// ([`crate::domain::Service::visit_of`]) everywhere one is taken.
    fn several_services(&self) -> bool {
        false
    }
    /// Bookable services.
    async fn services(&self) -> Result<Vec<Service>, BookingError>;
    /// Masters who render a service.
    async fn masters(&self, service_id: &str) -> Result<Vec<Master>, BookingError>;
    /// Days in `[from, to]` (business-local dates) with at least one free slot.
    async fn free_days(
        &self,
        service_id: &str,
        master_id: Option<&str>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<NaiveDate>, BookingError>;
    /// Free slots on a business-local day; `None` means any master.
    async fn free_slots(
        &self,
        service_id: &str,
        master_id: Option<&str>,
        day: NaiveDate,
    ) -> Result<Vec<Slot>, BookingError>;
    async fn book(&self, request: &BookRequest) -> Result<Record, BookingError>;
    async fn cancel(&self, external_id: &RecordId) -> Result<(), BookingError>;
    async fn reschedule(&self, external_id: &RecordId, slot: &Slot)
    -> Result<Record, BookingError>;
    /// Re-reads one record; `None` when the schedule no longer has it.
    async fn record(&self, external_id: &RecordId) -> Result<Option<Record>, BookingError>;
    /// The live record an earlier attempt of `request` made (its answer lost), where the
    /// schedule lets us search by our booking id; `None` when there is none or the system
    /// cannot tell. The request gives the day and master to narrow the search to.
    async fn find_record_for_booking(
        &self,
        _request: &BookRequest,
    ) -> Result<Option<Record>, BookingError> {
        Ok(None)
    }
    /// Every record starting within `[from, to]`, cancelled ones included, when the schedule can
    /// list them in a few calls; `None` when records can only be read one by one. The
    /// reconciliation poll uses it to re-read a hundred bookings in one call instead of a
    /// hundred.
    async fn records_between(
        &self,
        _from: DateTime<Utc>,
        _to: DateTime<Utc>,
    ) -> Result<Option<RecordListing>, BookingError> {
        Ok(None)
    }
    /// Completes booking `booking_id`, which [`BookingSystem::book`] left waiting with
    /// [`BookingError::CodeRequired`], with the code the client typed. The code is never logged.
    async fn confirm_code(
        &self,
        _booking_id: &BookingId,
        _code: &str,
    ) -> Result<Record, BookingError> {
        Err(BookingError::rejected(
            "this schedule does not ask for confirmation codes",
        ))
    }
    /// Asks the schedule to send the confirmation code again; `Some` when it booked instead.
    async fn resend_code(&self, _booking_id: &BookingId) -> Result<Option<Record>, BookingError> {
        Err(BookingError::rejected(
            "this schedule does not ask for confirmation codes",
        ))
    }
    /// Drops what the schedule holds for a booking that waited for a code.
    async fn abandon_code(&self, _booking_id: &BookingId) {}
    /// Marks the visit confirmed by the client where the schedule has such a status;
    /// `false` when it has none (our store and the CRM then hold the confirmation alone).
    async fn confirm_visit(&self, _external_id: &RecordId) -> Result<bool, BookingError> {
        Ok(false)
    }
}

#[cfg(test)]
mod error_tests {
    use std::time::Duration;

    use super::*;
    use crate::connectors::failure::ByStatus;

    /// Every caller (the booking jobs, the CRM's cancellation, imports) gets its decision from
    /// this one conversion: refused credentials alert, an outage waits with the schedule's hint.
    #[test]
    fn a_schedules_failure_means_the_same_to_every_caller() {
        assert_eq!(
            DeliveryError::from(BookingError::auth("token refused")).outcome(),
            "auth"
        );
        let hint = Some(Duration::from_secs(120));
        let limited = Failure::from_status(&ByStatus, 429, None, hint, "slow down");
        match DeliveryError::from(BookingError::from(limited)) {
            DeliveryError::Transient { retry_after, .. } => assert_eq!(retry_after, hint),
            other => panic!("{other:?}"),
        }
        for done in [
            BookingError::SlotTaken,
            BookingError::NotFound("record 1".into()),
            BookingError::Closed("api changed".into()),
            BookingError::rejected("bad phone"),
        ] {
            assert_eq!(DeliveryError::from(done).outcome(), "permanent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Source};

    #[test]
    fn the_record_comment_puts_the_clients_words_before_the_source() {
        let mut source = Source::direct(Channel::Max);
        source.payload = Some("src_vk".into());
        assert_eq!(record_comment(None, &source), "zapis: max; start=src_vk");
        assert_eq!(
            record_comment(Some("Покороче"), &source),
            "Покороче\nzapis: max; start=src_vk"
        );
    }
}
