//! Bitrix24's outbound events (`ONCRMDEALUPDATE`, `ONCRMLEADUPDATE`), processed from the
//! inbox. An event carries only the id, so the deal (lead) is re-read: when a manager moved it
//! to the configured "cancelled" stage, the visit is cancelled in the schedule and the client
//! told. Our own stage moves come back as events too and find the booking already cancelled.

use std::sync::Arc;

use async_trait::async_trait;

use crate::booking::BookingSystem;
use crate::booking::changes::ChangeApplier;
use crate::crm::Stage;
use crate::crm::bitrix24::{Bitrix24, EventKind};
use crate::crm::reconcile::{cancel_from_crm, linked_booking};
use crate::sync::inbox::{InboxHandler, InboxMessage};
use crate::sync::{Delivered, DeliveryError, JobContext};

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
        // The token was checked when the event was received; checking again keeps an event
        // stored before a token change from acting.
        let event = self
            .crm
            .parse_event(message.body.as_bytes())
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
        let Some(booking) =
            linked_booking(ctx.store, &message.business_id, "bitrix24", &id).await?
        else {
            return Ok(Delivered::done());
        };
        if !booking.status.is_active() {
            // Already cancelled (often our own move echoing back): no need to re-read.
            return Ok(Delivered::done());
        }
        let stage = self
            .crm
            .deal_stage(&id)
            .await
            .map_err(crate::crm::jobs::delivery_error)?;
        if stage.and_then(|s| s.stage) == Some(Stage::Cancelled) {
            cancel_from_crm(
                ctx.store,
                self.booking.as_ref(),
                &self.applier,
                &booking,
                ctx.now,
            )
            .await?;
        }
        Ok(Delivered::done())
    }
}
