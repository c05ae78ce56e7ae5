//! The jobs a change to a booking causes in other systems. The runtime writes them into the
//! outbox in the same transaction as the change; the handlers in `crm_jobs`, `schedule_jobs`,
//! `accounting::jobs` and `messenger::notify` carry them out.

use crate::domain::BusinessId;
use crate::domain::System;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Booking, BookingId};
use crate::store::Store;
use crate::sync::{DeliveryError, Job, NewJob};

/// What a job asks its system to do. Stored as its [`Operation::as_str`] in the job's
/// `operation` column, so the queue and the journal read it as they always did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// A booking was confirmed by the schedule: contact, lead, transcript and task in the CRM.
    BookingCreated,
    /// The client or the business cancelled: the lead moves to the cancelled stage.
    BookingCancelled,
    /// The visit moved: a note on the lead.
    BookingRescheduled,
    /// The client answered a reminder with "I'll come": a note on the lead, and the schedule's
    /// confirmation status.
    BookingConfirmed,
    /// The schedule marked the visit as done: the lead moves to the won stage.
    BookingVisited,
    /// The schedule marked the client as not having come: a note on the lead.
    BookingNoShow,
    /// The schedule was unreachable when the client confirmed: book it when it is back.
    CompleteBooking,
    /// Tell a client something in the chat they booked from, outside any conversation turn.
    Notify,
    /// Counterparty and invoice in 1C for a confirmed booking.
    OnecInvoice,
    /// Sales document in 1C for a visit that took place.
    OnecSales,
}

impl Operation {
    pub const ALL: [Operation; 10] = [
        Operation::BookingCreated,
        Operation::BookingCancelled,
        Operation::BookingRescheduled,
        Operation::BookingConfirmed,
        Operation::BookingVisited,
        Operation::BookingNoShow,
        Operation::CompleteBooking,
        Operation::Notify,
        Operation::OnecInvoice,
        Operation::OnecSales,
    ];

    /// The name stored in the job table; jobs already queued carry these, so they never change.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::BookingCreated => "booking_created",
            Operation::BookingCancelled => "booking_cancelled",
            Operation::BookingRescheduled => "booking_rescheduled",
            Operation::BookingConfirmed => "booking_confirmed",
            Operation::BookingVisited => "booking_visited",
            Operation::BookingNoShow => "booking_no_show",
            Operation::CompleteBooking => "complete_booking",
            Operation::Notify => "notify",
            Operation::OnecInvoice => "onec_invoice",
            Operation::OnecSales => "onec_sales",
        }
    }

    /// The operation a queued job names; `None` for one this module does not define.
    pub fn of(job: &Job) -> Option<Operation> {
        job.operation.parse().ok()
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored operation name that is none of [`Operation`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no operation {0:?}")]
pub struct UnknownOperation(pub String);

impl FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(s: &str) -> Result<Operation, UnknownOperation> {
        Operation::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| UnknownOperation(s.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingJob {
    pub booking_id: BookingId,
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
    business_id: &BusinessId,
    system: System,
    operation: Operation,
    booking_id: &BookingId,
    by: Option<&str>,
    at: DateTime<Utc>,
) -> NewJob {
    // Creation and cancellation happen once per booking; moves may repeat, so their key
    // carries the moment.
    let key = match operation {
        Operation::BookingRescheduled => {
            format!("{operation}:{booking_id}:{}", at.timestamp_millis())
        }
        _ => format!("{operation}:{booking_id}"),
    };
    let payload = BookingJob {
        booking_id: booking_id.clone(),
        by: by.map(str::to_string),
    };
    NewJob {
        business_id: business_id.clone(),
        system,
        operation: operation.as_str().to_string(),
        payload: serde_json::to_value(payload).unwrap_or_default(),
        idempotency_key: key,
        ordering_key: Some(format!("booking:{booking_id}")),
    }
}

/// The accounting system (1C) as a job's target.
pub const ONEC_SYSTEM: System = System::Onec;

pub fn invoice_job(business_id: &BusinessId, booking_id: &BookingId, at: DateTime<Utc>) -> NewJob {
    booking_job(
        business_id,
        ONEC_SYSTEM,
        Operation::OnecInvoice,
        booking_id,
        None,
        at,
    )
}

pub fn sales_job(business_id: &BusinessId, booking_id: &BookingId, at: DateTime<Utc>) -> NewJob {
    booking_job(
        business_id,
        ONEC_SYSTEM,
        Operation::OnecSales,
        booking_id,
        None,
        at,
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyJob {
    pub chat_id: String,
    pub reply: crate::dialog::Reply,
}

/// A message to a client's chat, queued like any other delivery so an unreachable messenger
/// loses nothing. `key` makes the same notice for the same event unique. `None` when the
/// chat's channel takes no messages (a web form, the schedule).
pub fn notify_job(
    business_id: &BusinessId,
    chat: &crate::domain::ChatRef,
    key: &str,
    reply: crate::dialog::Reply,
) -> Option<NewJob> {
    let system = chat.channel.system()?;
    let payload = NotifyJob {
        chat_id: chat.chat_id.clone(),
        reply,
    };
    Some(NewJob {
        business_id: business_id.clone(),
        system,
        operation: Operation::Notify.as_str().to_string(),
        payload: serde_json::to_value(payload).unwrap_or_default(),
        idempotency_key: format!("{}:{}:{key}", Operation::Notify, chat.key()),
        ordering_key: Some(format!("chat:{}", chat.key())),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bid;

    /// Queued jobs and the journal carry these names; renaming one would strand its jobs.
    #[test]
    fn operations_keep_the_names_stored_in_the_job_table() {
        let stored: Vec<&str> = Operation::ALL.iter().map(|op| op.as_str()).collect();
        assert_eq!(
            stored,
            [
                "booking_created",
                "booking_cancelled",
                "booking_rescheduled",
                "booking_confirmed",
                "booking_visited",
                "booking_no_show",
                "complete_booking",
                "notify",
                "onec_invoice",
                "onec_sales",
            ]
        );
        for op in Operation::ALL {
            assert_eq!(op.as_str().parse::<Operation>(), Ok(op));
        }
        assert_eq!(
            "support_note".parse::<Operation>(),
            Err(UnknownOperation("support_note".into()))
        );
    }

    #[test]
    fn a_booking_job_queued_while_ids_were_plain_strings_reads_back_unchanged() {
        for old in [
            serde_json::json!({"booking_id": "3f2a9c0e5b7d4e1f8a6b2c9d0e7f1a3b"}),
            serde_json::json!({"booking_id": "bk-1", "by": "client"}),
            serde_json::json!({"booking_id": crate::domain::lead_key_of('u', "chat:1")}),
        ] {
            let job: BookingJob = serde_json::from_value(old.clone()).expect("payload");
            assert_eq!(job.booking_id, old["booking_id"].as_str().expect("id"));
            assert_eq!(serde_json::to_value(&job).expect("json"), old);
        }
        let made = booking_job(
            &bid("b"),
            System::AmoCrm,
            Operation::BookingCreated,
            &crate::domain::bk("bk-1"),
            Some("client"),
            DateTime::from_timestamp_millis(1_700_000_000_000).expect("a moment"),
        );
        assert_eq!(
            made.payload,
            serde_json::json!({"booking_id": "bk-1", "by": "client"})
        );
        assert!(
            serde_json::from_value::<BookingJob>(serde_json::json!({"booking_id": ""})).is_err()
        );
    }

    #[test]
    fn a_booking_job_keys_a_move_by_its_moment_and_the_rest_by_the_booking() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_000).expect("a moment");
        let job = booking_job(
            &bid("b"),
            System::AmoCrm,
            Operation::BookingCreated,
            &crate::domain::bk("bk1"),
            None,
            at,
        );
        assert_eq!(job.operation, "booking_created");
        assert_eq!(job.idempotency_key, "booking_created:bk1");
        let job = booking_job(
            &bid("b"),
            System::AmoCrm,
            Operation::BookingRescheduled,
            &crate::domain::bk("bk1"),
            None,
            at,
        );
        assert_eq!(job.idempotency_key, "booking_rescheduled:bk1:1700000000000");
    }
}
