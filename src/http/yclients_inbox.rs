//! YClients' record webhooks, processed from the inbox: the slot cache forgets what changed,
//! and a record the salon deleted, moved or marked becomes a change of our booking.

use std::sync::Arc;

use async_trait::async_trait;

use crate::booking::changes::{ChangeApplier, ForeignRecord, ScheduleChange};
use crate::booking::yclients::{ChangeKind, RecordEvent, WebhookEvent, Yclients, parse_webhook};
use crate::normalize::Phone;
use crate::sync::inbox::{InboxHandler, InboxMessage};
use crate::sync::{Delivered, DeliveryError, JobContext};

pub struct YclientsInbox {
    pub yclients: Arc<Yclients>,
    pub applier: ChangeApplier,
}

#[async_trait]
impl InboxHandler for YclientsInbox {
    async fn process(
        &self,
        message: &InboxMessage,
        ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let events = parse_webhook(message.body.as_bytes(), self.applier.timezone)
            .map_err(|e| DeliveryError::permanent(format!("unreadable YClients webhook: {e}")))?;
        let store = ctx.store;
        let transient =
            |e: crate::store::StoreError| DeliveryError::transient(format!("store: {e}"));
        for event in events {
            let WebhookEvent::Record(record) = event else {
                continue;
            };
            self.yclients.apply_webhook(&record);
            // Our bookings carry our id as `api_id`; links know the record id, alone (a record
            // we learned of) or as `id:hash` (one we booked online).
            let record_id = record.record_id.to_string();
            let booking_id = match &record.api_id {
                Some(id) => Some(id.clone()),
                None => match store
                    .entity_for_external(&message.business_id, "booking", "yclients", &record_id)
                    .await
                    .map_err(transient)?
                {
                    Some(id) => Some(id),
                    None => store
                        .entity_for_external_prefix(
                            &message.business_id,
                            "booking",
                            "yclients",
                            &format!("{record_id}:"),
                        )
                        .await
                        .map_err(transient)?,
                },
            };
            let Some(booking_id) = booking_id else {
                if let Some(foreign) = foreign_record(&record) {
                    self.applier
                        .adopt(store, &message.business_id, &foreign, ctx.now)
                        .await
                        .map_err(transient)?;
                }
                continue;
            };
            let Some(booking) = store
                .booking(&message.business_id, &booking_id)
                .await
                .map_err(transient)?
            else {
                continue;
            };
            let change = if record.deleted || record.change == ChangeKind::Delete {
                ScheduleChange::Cancelled
            } else if record.attendance == Some(-1) {
                ScheduleChange::NoShow
            } else if record.attendance == Some(1) {
                ScheduleChange::Visited
            } else if let Some(start) = record.start {
                ScheduleChange::Moved {
                    start,
                    master_id: record.staff_id.clone(),
                }
            } else {
                continue;
            };
            self.applier
                .apply(store, &booking, &change, ctx.now)
                .await
                .map_err(transient)?;
        }
        Ok(Delivered::done())
    }
}

/// A live record with a client's phone, as the schedule holds it; `None` for a deleted record or
/// one without what a booking needs.
fn foreign_record(record: &RecordEvent) -> Option<ForeignRecord> {
    if record.deleted || record.change == ChangeKind::Delete || record.attendance == Some(-1) {
        return None;
    }
    let client = record.client.as_ref()?;
    let client_phone = Phone::parse(&client.phone).ok()?;
    Some(ForeignRecord {
        external_id: record.record_id.to_string(),
        client_phone,
        service_id: record.service_ids.first()?.clone(),
        service_name: record.service_title.clone().unwrap_or_default(),
        master_id: record.staff_id.clone()?,
        master_name: record.staff_name.clone().unwrap_or_default(),
        start: record.start?,
        duration_min: record.duration_min.unwrap_or(60),
        price: record.price,
    })
}
