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

/// The inbox key of a delivery: per entity of the form (`leads[status][0][…]`) its id, stage
/// and `last_modified` (unix seconds of the change). A re-sent delivery repeats it; the same
/// stage reached again later has a new `last_modified`. `None` (the body digest is used) when
/// an entity carries no `last_modified`, as some newer deliveries do.
pub fn delivery_key(body: &str) -> Option<String> {
    use std::collections::BTreeMap;
    // `leads[status][0]` → (field → value) for its top-level fields.
    let mut entities: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (key, value) in crate::sync::inbox::form_pairs(body) {
        let Some((name, rest)) = key.split_once('[') else {
            continue;
        };
        let segments: Vec<&str> = rest.trim_end_matches(']').split("][").collect();
        if name == "account" || segments.len() != 3 {
            continue;
        }
        let entity = format!("{name}[{}][{}]", segments[0], segments[1]);
        entities
            .entry(entity)
            .or_default()
            .insert(segments[2].to_owned(), value);
    }
    let mut parts = Vec::with_capacity(entities.len());
    for (entity, fields) in &entities {
        let id = fields.get("id")?;
        let modified = fields.get("last_modified")?;
        let stage = fields.get("status_id").map(String::as_str).unwrap_or("");
        parts.push(format!("{entity}:{id}:{stage}:{modified}"));
    }
    (!parts.is_empty()).then(|| crate::sync::inbox::stamp_key("amocrm", &parts))
}

#[cfg(test)]
mod tests {
    use super::delivery_key;

    fn form(status: i64, modified: i64) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("leads[status][0][id]", "31926520")
            .append_pair("leads[status][0][status_id]", &status.to_string())
            .append_pair("leads[status][0][last_modified]", &modified.to_string())
            .append_pair("leads[status][0][custom_fields][0][id]", "1119321")
            .append_pair("account[subdomain]", "test000002")
            .finish()
    }

    #[test]
    fn cancelled_back_and_cancelled_again_are_three_changes() {
        let cancelled = form(143, 1_456_820_780);
        assert_eq!(delivery_key(&cancelled), delivery_key(&cancelled.clone()));
        let again = form(143, 1_456_820_990);
        let back = form(142, 1_456_820_900);
        let keys = [
            delivery_key(&cancelled),
            delivery_key(&back),
            delivery_key(&again),
        ];
        assert!(keys.iter().all(Option::is_some), "{keys:?}");
        assert_ne!(keys[0], keys[2]);
        assert_ne!(keys[0], keys[1]);
    }

    #[test]
    fn the_contract_delivery_is_keyed_on_last_modified() {
        let body = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/contracts/amocrm/webhook-status-lead.form.txt"
        ))
        .expect("webhook-status-lead.form.txt");
        assert_eq!(
            delivery_key(&body).as_deref(),
            Some("amocrm:leads[status][0]:31926520:10216994:1456820780")
        );
        // Without `last_modified` there is no stamp: the body digest decides.
        assert_eq!(
            delivery_key("leads[status][0][id]=1&leads[status][0][status_id]=2"),
            None
        );
    }
}
