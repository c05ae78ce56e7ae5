//! YClients' record webhooks, processed from the inbox: the slot cache forgets what changed,
//! and a record the salon deleted, moved or marked becomes a change of our booking.

use std::sync::Arc;

use async_trait::async_trait;

use crate::booking::changes::{Applied, ChangeApplier, ForeignRecord, ScheduleChange};
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

/// The inbox key of a delivery: per event `resource:resource_id:status:data.last_change_date`,
/// the record's own change time (second precision, `+0500` style). YClients documents no
/// event id; a record's `last_change_date` moves with every change, so a re-sent delivery
/// repeats the key and a new change does not. `None` (the body digest is used) when an event
/// carries no change time: a bare delete, a marketplace event.
pub fn delivery_key(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let events = match v {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    let mut parts = Vec::with_capacity(events.len());
    for e in &events {
        let resource = e.get("resource")?.as_str()?;
        let id = e.get("resource_id").map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })?;
        let status = e.get("status").and_then(|s| s.as_str()).unwrap_or("");
        let changed = e
            .pointer("/data/last_change_date")
            .and_then(|d| d.as_str())
            .filter(|d| !d.trim().is_empty())?;
        parts.push(format!("{resource}:{id}:{status}:{changed}"));
    }
    (!parts.is_empty()).then(|| crate::sync::inbox::stamp_key("yclients", &parts))
}

#[cfg(test)]
mod tests {
    use super::delivery_key;

    fn hook(status: &str, changed: &str, staff: u64) -> String {
        serde_json::json!({
            "company_id": 1, "resource": "record", "resource_id": 7, "status": status,
            "data": {"id": 7, "staff_id": staff, "last_change_date": changed}
        })
        .to_string()
    }

    #[test]
    fn a_repeat_shares_the_key_and_a_new_change_with_the_same_content_does_not() {
        let first = hook("update", "2026-12-01T10:00:00+0500", 11);
        assert_eq!(delivery_key(&first), delivery_key(&first.clone()));
        // Moved to master 12, back to 11, to 12 again: three changes, three keys.
        let keys = [
            delivery_key(&hook("update", "2026-12-01T10:00:00+0500", 12)),
            delivery_key(&hook("update", "2026-12-01T10:05:00+0500", 11)),
            delivery_key(&hook("update", "2026-12-01T10:09:00+0500", 12)),
        ];
        assert!(keys.iter().all(Option::is_some));
        assert_ne!(keys[0], keys[2]);
        assert_ne!(keys[0], keys[1]);
        // Same change time, another event: delete after update.
        assert_ne!(
            delivery_key(&hook("delete", "2026-12-01T10:00:00+0500", 11)),
            delivery_key(&first)
        );
    }

    #[test]
    fn the_contract_webhook_is_keyed_on_its_change_time() {
        let body = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/contracts/yclients/webhook-record-update.webhook.json"
        ))
        .expect("webhook-record-update.webhook.json");
        assert_eq!(
            delivery_key(&body).as_deref(),
            Some("yclients:record:234961815:update:2020-11-17T13:58:19+0300")
        );
        // A delete carrying no record has no change time: the body digest decides.
        assert_eq!(
            delivery_key(r#"{"resource":"record","resource_id":7,"status":"delete","data":[]}"#),
            None
        );
    }
}
