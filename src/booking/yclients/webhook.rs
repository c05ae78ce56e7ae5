//! Record webhooks: parsing and checking a delivery. The inbox handler that turns a salon's
//! change into a change of our booking is `lifecycle::inbox`.

use super::*;

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
}

/// A record changed in YClients (by the salon, or an echo of our own write).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordEvent {
    pub company_id: u64,
    pub record_id: u64,
    pub change: ChangeKind,
    pub staff_id: Option<String>,
    pub service_ids: Vec<String>,
    pub start: Option<DateTime<Utc>>,
    pub duration_min: Option<u32>,
    /// −1 no-show, 0 waiting, 1 came, 2 confirmed.
    pub attendance: Option<i64>,
    pub deleted: bool,
    /// Our booking id when the record was made by us (`api_id`).
    pub api_id: Option<String>,
    pub last_change: Option<DateTime<Utc>>,
    /// Who the record is for, as the schedule holds them: lets a record an admin made for a
    /// client we know be linked to that client.
    pub client: Option<RecordClient>,
    /// The first service's title and the master's name, for a booking we learn of this way.
    pub service_title: Option<String>,
    pub staff_name: Option<String>,
    /// The sum of the services' prices.
    pub price: Money,
}

/// The client of a record (`data.client`): the phone as the salon typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordClient {
    pub phone: String,
    pub name: String,
}

impl RecordEvent {
    /// The record's state as our domain sees it; a delete event is a cancellation.
    pub fn status(&self) -> RecordStatus {
        record_status(
            self.deleted || self.change == ChangeKind::Delete,
            self.attendance,
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    Record(RecordEvent),
    /// The marketplace app was uninstalled or frozen for a salon (`event`).
    Marketplace {
        salon_id: u64,
        event: String,
    },
    /// Any other resource (clients, finances…): recorded, not acted upon here.
    Other {
        resource: String,
        resource_id: Option<u64>,
        status: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook body is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("webhook body is not a YClients event: {0}")]
    Shape(String),
}

/// Parses a webhook body: one event object or (defensively, as one receiver reports) an array of
/// them. `tz` reads the zone-less `date` when a record carries no `datetime`.
pub fn parse_webhook(body: &[u8], tz: Tz) -> Result<Vec<WebhookEvent>, WebhookError> {
    let v: Value = serde_json::from_slice(body)?;
    match v {
        Value::Array(items) => items.iter().map(|i| parse_one_webhook(i, tz)).collect(),
        other => Ok(vec![parse_one_webhook(&other, tz)?]),
    }
}

pub(super) fn parse_one_webhook(v: &Value, tz: Tz) -> Result<WebhookEvent, WebhookError> {
    if let Some(event) = v.get("event").and_then(Value::as_str) {
        let salon_id = v
            .get("salon_id")
            .and_then(i64_of)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| WebhookError::Shape("marketplace event without salon_id".into()))?;
        return Ok(WebhookEvent::Marketplace {
            salon_id,
            event: event.to_owned(),
        });
    }
    let resource = v
        .get("resource")
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::Shape("no `resource`".into()))?;
    let status = v.get("status").map(str_of).unwrap_or_default();
    let resource_id = v
        .get("resource_id")
        .and_then(i64_of)
        .and_then(|n| u64::try_from(n).ok());
    if resource != "record" {
        return Ok(WebhookEvent::Other {
            resource: resource.to_owned(),
            resource_id,
            status,
        });
    }
    let change = match status.as_str() {
        "create" => ChangeKind::Create,
        "update" => ChangeKind::Update,
        "delete" => ChangeKind::Delete,
        other => return Err(WebhookError::Shape(format!("unknown status {other:?}"))),
    };
    let data = v.get("data").cloned().unwrap_or(Value::Null);
    // A delete may carry only ids; every data field is optional then.
    let record: Option<WireRecord> = if data.is_object() {
        Some(serde_json::from_value(data)?)
    } else {
        None
    };
    let record_id = record
        .as_ref()
        .and_then(|r| i64_of(&r.id))
        .and_then(|n| u64::try_from(n).ok())
        .or(resource_id)
        .ok_or_else(|| WebhookError::Shape("record event without an id".into()))?;
    let company_id = v
        .get("company_id")
        .and_then(i64_of)
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or_default();
    Ok(WebhookEvent::Record(match record {
        Some(r) => RecordEvent {
            company_id,
            record_id,
            change,
            staff_id: r.staff_id(),
            service_ids: r.services.iter().filter_map(|s| id_of(&s.id)).collect(),
            start: r.start(tz),
            duration_min: Some(minutes_of(r.seconds())),
            attendance: i64_of(&r.attendance),
            deleted: bool_of(&r.deleted),
            api_id: id_of(&r.api_id).filter(|a| a != "0"),
            last_change: parse_instant(&r.last_change_date, tz),
            client: record_client(&r.client),
            service_title: r
                .services
                .first()
                .map(|s| str_of(&s.title))
                .filter(|t| !t.trim().is_empty()),
            staff_name: r
                .staff
                .get("name")
                .map(str_of)
                .filter(|n| !n.trim().is_empty()),
            price: Money(r.services.iter().map(|s| money_of(&s.cost).0).sum()),
        },
        None => RecordEvent {
            company_id,
            record_id,
            change,
            staff_id: None,
            service_ids: Vec::new(),
            start: None,
            duration_min: None,
            attendance: None,
            deleted: change == ChangeKind::Delete,
            api_id: None,
            last_change: None,
            client: None,
            service_title: None,
            staff_name: None,
            price: Money(0),
        },
    }))
}

pub(super) fn record_client(v: &Value) -> Option<RecordClient> {
    let phone = id_of(v.get("phone")?)?;
    let name = ["name", "surname"]
        .iter()
        .filter_map(|k| v.get(*k).map(str_of))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let name = match v.get("display_name").map(str_of) {
        Some(d) if !d.trim().is_empty() => d.trim().to_owned(),
        _ => name,
    };
    Some(RecordClient { phone, name })
}

/// The body of `PUT /record` that keeps a record as it is and marks it confirmed: the fields
/// the create call requires (staff, services, client, datetime, length), the rest that would be
/// reset if left out (comment, api_id), and no SMS to the client about the change.
pub(super) fn confirmed_record_body(current: &Value) -> Result<Value, BookingError> {
    let staff_id = i64_of(&current["staff_id"])
        .or_else(|| i64_of(&current["staff"]["id"]))
        .ok_or_else(|| BookingError::rejected("the record has no master"))?;
    let datetime = current
        .get("datetime")
        .filter(|v| !v.is_null())
        .or_else(|| current.get("date"))
        .cloned()
        .ok_or_else(|| BookingError::rejected("the record has no start"))?;
    let services: Vec<Value> = current["services"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|s| {
                    json!({
                        "id": s["id"],
                        "first_cost": s.get("first_cost").unwrap_or(&s["cost"]),
                        "discount": s.get("discount").cloned().unwrap_or(json!(0)),
                        "cost": s["cost"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let client = &current["client"];
    let mut body = json!({
        "staff_id": staff_id,
        "services": services,
        "client": {
            "phone": id_of(&client["phone"]).unwrap_or_default(),
            "name": str_of(&client["name"]),
            "email": str_of(&client["email"]),
        },
        "datetime": datetime,
        "seance_length": i64_of(&current["seance_length"])
            .or_else(|| i64_of(&current["length"]))
            .unwrap_or(DEFAULT_SEANCE_SECONDS),
        "comment": str_of(&current["comment"]),
        "api_id": str_of(&current["api_id"]),
        "attendance": 2,
        "save_if_busy": true,
        "send_sms": false,
    });
    // A full update resets what it is not given: the salon's labels (read as objects, written
    // as ids), custom fields and colour go back as read.
    if let Some(labels) = current["record_labels"].as_array() {
        let ids: Vec<Value> = labels
            .iter()
            .filter_map(|l| id_of(l.get("id").unwrap_or(l)))
            .map(Value::String)
            .collect();
        body["record_labels"] = Value::Array(ids);
    }
    if let Some(fields) = current.get("custom_fields").filter(|f| f.is_object()) {
        body["custom_fields"] = fields.clone();
    }
    if let Some(color) = current["custom_color"].as_str() {
        body["custom_color"] = json!(color);
    }
    Ok(body)
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
