//! The jobs a change to a booking causes in other systems. The runtime writes them into the
//! outbox in the same transaction as the change; the handlers in `crm_jobs`, `schedule_jobs`,
//! `accounting::jobs` and `messenger::notify` carry them out.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Booking;
use crate::store::Store;
use crate::sync::{DeliveryError, Job, NewJob};

/// A booking was confirmed by the schedule: contact, lead, transcript and task in the CRM.
pub const BOOKING_CREATED: &str = "booking_created";
/// The client or the business cancelled: the lead moves to the cancelled stage.
pub const BOOKING_CANCELLED: &str = "booking_cancelled";
/// The visit moved: a note on the lead.
pub const BOOKING_RESCHEDULED: &str = "booking_rescheduled";
/// The client answered a reminder with "I'll come": a note on the lead.
pub const BOOKING_CONFIRMED: &str = "booking_confirmed";
/// The schedule marked the visit as done: the lead moves to the won stage.
pub const BOOKING_VISITED: &str = "booking_visited";
/// The schedule marked the client as not having come: a note on the lead.
pub const BOOKING_NO_SHOW: &str = "booking_no_show";
/// The schedule was unreachable when the client confirmed: book it when it is back.
pub const COMPLETE_BOOKING: &str = "complete_booking";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingJob {
    pub booking_id: String,
    /// Who made the change, for the note on the lead (`client`, `business`, `crm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The payload of a booking job and the booking it names: a store error is worth retrying,
/// an unreadable payload or a booking that is not in the store is not.
pub async fn load_booking_job(
    job: &Job,
    store: &Store,
) -> Result<(BookingJob, Booking), DeliveryError> {
    let payload: BookingJob = serde_json::from_value(job.payload.clone())
        .map_err(|e| DeliveryError::permanent(format!("unreadable job payload: {e}")))?;
    let booking = store
        .booking(&job.business_id, &payload.booking_id)
        .await
        .map_err(|e| DeliveryError::transient(format!("store: {e}")))?
        .ok_or_else(|| {
            DeliveryError::permanent(format!(
                "booking {} is not in the store",
                payload.booking_id
            ))
        })?;
    Ok((payload, booking))
}

/// A job about one booking. Jobs of one booking run in order in each system.
pub fn booking_job(
    business_id: &str,
    system: &str,
    operation: &str,
    booking_id: &str,
    by: Option<&str>,
    at: DateTime<Utc>,
) -> NewJob {
    // Creation and cancellation happen once per booking; moves may repeat, so their key
    // carries the moment.
    let key = match operation {
        BOOKING_RESCHEDULED => format!("{operation}:{booking_id}:{}", at.timestamp_millis()),
        _ => format!("{operation}:{booking_id}"),
    };
    let payload = BookingJob {
        booking_id: booking_id.to_string(),
        by: by.map(str::to_string),
    };
    NewJob {
        business_id: business_id.to_string(),
        system: system.to_string(),
        operation: operation.to_string(),
        payload: serde_json::to_value(payload).unwrap_or_default(),
        idempotency_key: key,
        ordering_key: Some(format!("booking:{booking_id}")),
    }
}

/// The accounting system (1C) as a job's target.
pub const ONEC_SYSTEM: &str = "onec";
/// Counterparty and invoice for a confirmed booking.
pub const ONEC_INVOICE: &str = "onec_invoice";
/// Sales document for a visit that took place.
pub const ONEC_SALES: &str = "onec_sales";

pub fn invoice_job(business_id: &str, booking_id: &str, at: DateTime<Utc>) -> NewJob {
    booking_job(business_id, ONEC_SYSTEM, ONEC_INVOICE, booking_id, None, at)
}

pub fn sales_job(business_id: &str, booking_id: &str, at: DateTime<Utc>) -> NewJob {
    booking_job(business_id, ONEC_SYSTEM, ONEC_SALES, booking_id, None, at)
}

/// Tell a client something in the chat they booked from, outside any conversation turn.
pub const NOTIFY: &str = "notify";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyJob {
    pub chat_id: String,
    pub reply: crate::dialog::Reply,
}

/// A message to a client's chat, queued like any other delivery so an unreachable messenger
/// loses nothing. `key` makes the same notice for the same event unique.
pub fn notify_job(
    business_id: &str,
    chat: &crate::domain::ChatRef,
    key: &str,
    reply: crate::dialog::Reply,
) -> NewJob {
    let payload = NotifyJob {
        chat_id: chat.chat_id.clone(),
        reply,
    };
    NewJob {
        business_id: business_id.to_string(),
        system: chat.channel.as_str().to_string(),
        operation: NOTIFY.to_string(),
        payload: serde_json::to_value(payload).unwrap_or_default(),
        idempotency_key: format!("{NOTIFY}:{}:{key}", chat.key()),
        ordering_key: Some(format!("chat:{}", chat.key())),
    }
}

/// The language a client chatted in, for notices sent outside the conversation.
pub async fn client_lang(
    store: &crate::store::Store,
    booking: &crate::domain::Booking,
    default: crate::i18n::Lang,
) -> crate::i18n::Lang {
    let Some(chat) = &booking.chat else {
        return default;
    };
    let state = store
        .load_dialog(&booking.business_id, &chat.key())
        .await
        .ok()
        .flatten();
    state
        .and_then(|json| serde_json::from_str::<crate::dialog::DialogState>(&json).ok())
        .and_then(|s| s.lang())
        .unwrap_or(default)
}
