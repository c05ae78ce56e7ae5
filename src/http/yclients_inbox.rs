//! YClients' record webhooks, processed from the inbox: the slot cache forgets what changed,
//! and a record the salon deleted, moved or marked becomes a change of our booking.

use std::sync::Arc;

use async_trait::async_trait;

use crate::booking::changes::{ChangeApplier, ScheduleChange};
use crate::booking::yclients::{ChangeKind, WebhookEvent, Yclients, parse_webhook};
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
            // Our bookings carry our id as `api_id`; older links know the record id.
            let booking_id = match &record.api_id {
                Some(id) => Some(id.clone()),
                None => store
                    .entity_for_external_prefix(
                        &message.business_id,
                        "booking",
                        "yclients",
                        &format!("{}:", record.record_id),
                    )
                    .await
                    .map_err(transient)?,
            };
            let Some(booking_id) = booking_id else {
                continue;
            };
            let Some(booking) = store.booking(&booking_id).await.map_err(transient)? else {
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
