//! AmoCRM's lead webhooks, processed from the inbox. A manager moving a lead to the configured
//! "cancelled" stage cancels the visit in the schedule and tells the client; our own stage moves
//! coming back find the booking already cancelled and change nothing.

use std::sync::Arc;

use async_trait::async_trait;

use crate::booking::BookingSystem;
use crate::booking::changes::ChangeApplier;
use crate::crm::amocrm::{WebhookEvent, parse_webhook};
use crate::crm::reconcile::{cancel_from_crm, linked_booking};
use crate::sync::inbox::{InboxHandler, InboxMessage};
use crate::sync::{Delivered, DeliveryError, JobContext};

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
        let delivery = parse_webhook(message.body.as_bytes())
            .map_err(|e| DeliveryError::permanent(format!("unreadable amoCRM webhook: {e}")))?;
        for event in delivery.events {
            let WebhookEvent::LeadStatusChanged {
                lead_id, status_id, ..
            } = event
            else {
                continue;
            };
            if status_id != self.cancelled_status_id || !self.cancel_from_crm {
                continue;
            }
            let Some(booking) = linked_booking(
                ctx.store,
                &message.business_id,
                "amocrm",
                &lead_id.to_string(),
            )
            .await?
            else {
                continue;
            };
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
