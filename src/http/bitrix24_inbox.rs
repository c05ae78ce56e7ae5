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

/// The inbox key of an event: `event`, `data[FIELDS][ID]` and `ts` (unix seconds the event was
/// raised). The `auth` block is left out: it says who sent it, not what changed. Bitrix24
/// sends events once (no retries are documented), so the key mostly guards against a proxy
/// re-sending; two updates of one deal within the same second share a key, and the handler
/// re-reads the deal when it runs. `None` (the body digest is used) without `ts`.
pub fn delivery_key(body: &str) -> Option<String> {
    let trimmed = body.trim();
    let (event, id, ts) = if trimmed.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(trimmed).ok()?;
        let text = |p: &str| {
            v.pointer(p).map(|x| match x {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        (text("/event")?, text("/data/FIELDS/ID")?, text("/ts")?)
    } else {
        let pairs = super::dedup::form_pairs(trimmed);
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        (get("event")?, get("data[FIELDS][ID]")?, get("ts")?)
    };
    Some(super::dedup::stamp_key(
        "bitrix24",
        &[event.to_ascii_uppercase(), id, ts],
    ))
}

#[cfg(test)]
mod tests {
    use super::delivery_key;

    #[test]
    fn events_are_keyed_on_their_ts_not_their_auth() {
        let body = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/contracts/bitrix24/event-oncrmdealadd.webhook.json"
        ))
        .expect("event-oncrmdealadd.webhook.json");
        assert_eq!(
            delivery_key(&body).as_deref(),
            Some("bitrix24:ONCRMDEALADD|7405|1766047124")
        );
        let form = |ts: &str, domain: &str| {
            format!(
                "event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID%5D=7405&ts={ts}\
                 &auth%5Bdomain%5D={domain}&auth%5Bapplication_token%5D=t"
            )
        };
        // The same event through another edge: one key.
        assert_eq!(delivery_key(&form("1", "a")), delivery_key(&form("1", "b")));
        // The same deal updated again later (to the same stage): a new key.
        assert_ne!(delivery_key(&form("1", "a")), delivery_key(&form("2", "a")));
        assert_eq!(
            delivery_key("event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID%5D=1"),
            None
        );
    }
}
