//! The inbox handlers of the webhooks that report a change to a booking: a record changed in
//! YClients, a lead (deal) moved to the cancelled stage in amoCRM or Bitrix24. Each vendor's
//! folder parses its own payload; what the change does to our booking is decided here, with
//! the rest of the booking's story.

use crate::domain::BusinessId;
use crate::domain::{RecordId, System};
use std::sync::Arc;

use async_trait::async_trait;

use super::changes::{Applied, ChangeApplier, ForeignRecord, ScheduleChange};
use super::crm_reconcile::{cancel_from_crm, linked_booking};
use crate::booking::BookingSystem;
use crate::booking::yclients::{self, ChangeKind, RecordEvent, Yclients};
use crate::crm::Stage;
use crate::crm::amocrm;
use crate::crm::bitrix24::{Bitrix24, EventKind, restore_token};
use crate::normalize::Phone;
use crate::sync::inbox::{InboxHandler, InboxMessage};
use crate::sync::{Delivered, DeliveryError, JobContext};

// ------------------------------------------------------------------ YClients

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
        let events = yclients::parse_webhook(message.body.as_bytes(), self.applier.timezone)
            .map_err(|e| DeliveryError::permanent(format!("unreadable YClients webhook: {e}")))?;
        let store = ctx.store;
        let transient =
            |e: crate::store::StoreError| DeliveryError::transient(format!("store: {e}"));
        for event in events {
            let yclients::WebhookEvent::Record(record) = event else {
                continue;
            };
            self.yclients.apply_webhook(&record);
            // Our bookings carry our id as `api_id`; links know the record id, alone (a record
            // we learned of) or as `id:hash` (one we booked online).
            let record_id = record.record_id.to_string();
            let booking_id = match &record.api_id {
                Some(id) => Some(id.clone()),
                None => match store
                    .entity_for_external(
                        &message.business_id,
                        "booking",
                        System::Yclients,
                        &record_id,
                    )
                    .await
                    .map_err(transient)?
                {
                    Some(id) => Some(id),
                    None => store
                        .entity_for_external_prefix(
                            &message.business_id,
                            "booking",
                            System::Yclients,
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
            // A link row's entity id is text for every kind of entity; a booking's is our
            // booking id.
            let booking_id = crate::store::parse_booking_id(&booking_id).map_err(transient)?;
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
            let applied = self
                .applier
                .apply(store, &booking, &change, ctx.now)
                .await
                .map_err(transient)?;
            if applied == Applied::InFlight {
                // Our own write of this booking is on its way into the store; this webhook is
                // judged again once it is there (an echo then changes nothing).
                return Err(DeliveryError::transient(format!(
                    "booking {} is being changed by zapis right now",
                    booking.id
                )));
            }
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
        external_id: RecordId::parse(&record.record_id.to_string()).ok()?,
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

// ------------------------------------------------------------------ amoCRM

pub struct AmoCrmInbox {
    pub booking: Arc<dyn BookingSystem>,
    pub applier: ChangeApplier,
    pub cancelled_status_id: i64,
    /// `crm.amocrm.cancel_from_crm`: whether a manager's move cancels the visit.
    pub cancel_from_crm: bool,
}

#[async_trait]
impl InboxHandler for AmoCrmInbox {
    async fn process(
        &self,
        message: &InboxMessage,
        ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let delivery = amocrm::parse_webhook(message.body.as_bytes())
            .map_err(|e| DeliveryError::permanent(format!("unreadable amoCRM webhook: {e}")))?;
        for event in delivery.events {
            let amocrm::WebhookEvent::LeadStatusChanged {
                lead_id, status_id, ..
            } = event
            else {
                continue;
            };
            if status_id != self.cancelled_status_id || !self.cancel_from_crm {
                continue;
            }
            cancel_linked(
                ctx,
                &message.business_id,
                System::AmoCrm,
                &lead_id.to_string(),
                self.booking.as_ref(),
                &self.applier,
                async || Ok(true),
            )
            .await?;
        }
        Ok(Delivered::done())
    }
}

// ------------------------------------------------------------------ Bitrix24

pub struct Bitrix24Inbox {
    pub crm: Bitrix24,
    pub booking: Arc<dyn BookingSystem>,
    pub applier: ChangeApplier,
    /// `crm.bitrix24.cancel_from_crm`: whether a manager's move cancels the visit.
    pub cancel_from_crm: bool,
}

#[async_trait]
impl InboxHandler for Bitrix24Inbox {
    async fn process(
        &self,
        message: &InboxMessage,
        ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        // The token was checked when the event was received, and the stored body keeps only
        // its digest; comparing that digest keeps an event stored before a token change from
        // acting.
        let body = match self.crm.application_token() {
            Some(token) => restore_token(&message.body, token),
            None => message.body.clone(),
        };
        let event = self
            .crm
            .parse_event(body.as_bytes())
            .map_err(|e| DeliveryError::permanent(e.to_string()))?;
        let watched = if self.crm.is_deal() {
            EventKind::DealUpdate
        } else {
            EventKind::LeadUpdate
        };
        if event.kind != watched || !self.cancel_from_crm {
            return Ok(Delivered::done());
        }
        let Some(id) = event.id else {
            return Err(DeliveryError::permanent(
                "Bitrix24 update event without data[FIELDS][ID]",
            ));
        };
        // Whether the lead is cancelled is read back: an update event does not say what changed.
        cancel_linked(
            ctx,
            &message.business_id,
            System::Bitrix24,
            &id,
            self.booking.as_ref(),
            &self.applier,
            async || {
                let stage = self
                    .crm
                    .deal_stage(&id)
                    .await
                    .map_err(crate::crm::delivery_error)?;
                Ok(stage.and_then(|s| s.stage) == Some(Stage::Cancelled))
            },
        )
        .await?;
        Ok(Delivered::done())
    }
}

// ------------------------------------------------------------------ both CRMs

/// A manager's move of lead (deal) `lead_id` in `system` that may cancel the visit: the
/// booking linked to it, while still active, is cancelled once `cancelled` (which may read the
/// lead back) says the lead is in the cancelled stage.
async fn cancel_linked(
    ctx: &JobContext<'_>,
    business_id: &BusinessId,
    system: System,
    lead_id: &str,
    booking_system: &dyn BookingSystem,
    applier: &ChangeApplier,
    cancelled: impl AsyncFnOnce() -> Result<bool, DeliveryError>,
) -> Result<(), DeliveryError> {
    let Some(booking) = linked_booking(ctx.store, business_id, system, lead_id).await? else {
        return Ok(());
    };
    if !booking.status.is_active() {
        // Already cancelled (often our own move echoing back): no need to re-read.
        return Ok(());
    }
    if cancelled().await? {
        cancel_from_crm(ctx.store, booking_system, applier, &booking, ctx.now).await?;
    }
    Ok(())
}
