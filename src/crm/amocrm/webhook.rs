//! Lead webhooks: parsing a delivery. The inbox handler that acts on a lead moved to the
//! cancelled stage is `lifecycle::inbox`.

use super::*;

// -------------------------------------------------------------------- inbound webhooks

/// One change amoCRM reports to our webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// `leads[status][N][…]`: the lead moved to another stage.
    LeadStatusChanged {
        lead_id: i64,
        status_id: i64,
        pipeline_id: i64,
        old_status_id: Option<i64>,
        old_pipeline_id: Option<i64>,
    },
    /// `leads[delete][N][id]`.
    LeadDeleted { lead_id: i64 },
    /// Any other entity/action, kept so callers can log what they ignore.
    Other {
        entity: String,
        action: String,
        id: Option<i64>,
    },
}

/// A whole webhook delivery: the account it came from and its events in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookDelivery {
    pub account_id: Option<i64>,
    pub account_subdomain: Option<String>,
    pub events: Vec<WebhookEvent>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("amoCRM webhook field {key} is missing")]
    Missing { key: String },
    #[error("amoCRM webhook field {key} is not a number")]
    NotANumber { key: String },
}

/// Parses amoCRM's `application/x-www-form-urlencoded` webhook body (PHP-style bracket keys,
/// every value a string). Payloads are unsigned, so callers should re-read the lead through
/// the API before acting on it.
pub fn parse_webhook(body: &[u8]) -> Result<WebhookDelivery, WebhookError> {
    // (entity, action, index) → field → value, for the flat fields of each item.
    let mut items: BTreeMap<(String, String, u32), HashMap<String, String>> = BTreeMap::new();
    let mut delivery = WebhookDelivery::default();
    for (key, value) in url::form_urlencoded::parse(body) {
        let parts = super::super::bracket_parts(&key);
        match parts.as_slice() {
            [entity, action, index, field] => {
                if let Ok(index) = index.parse::<u32>() {
                    items
                        .entry((entity.to_string(), action.to_string(), index))
                        .or_default()
                        .insert(field.to_string(), value.into_owned());
                }
            }
            ["account", "id"] => delivery.account_id = value.trim().parse().ok(),
            ["account", "subdomain"] => delivery.account_subdomain = Some(value.into_owned()),
            _ => {}
        }
    }
    for ((entity, action, index), fields) in items {
        let key = |f: &str| format!("{entity}[{action}][{index}][{f}]");
        let number = |f: &str| -> Result<Option<i64>, WebhookError> {
            match fields.get(f) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| WebhookError::NotANumber { key: key(f) }),
            }
        };
        let required = |f: &str| -> Result<i64, WebhookError> {
            number(f)?.ok_or_else(|| WebhookError::Missing { key: key(f) })
        };
        let event = match (entity.as_str(), action.as_str()) {
            ("leads", "status") => WebhookEvent::LeadStatusChanged {
                lead_id: required("id")?,
                status_id: required("status_id")?,
                pipeline_id: required("pipeline_id")?,
                old_status_id: number("old_status_id")?,
                old_pipeline_id: number("old_pipeline_id")?,
            },
            ("leads", "delete") => WebhookEvent::LeadDeleted {
                lead_id: required("id")?,
            },
            _ => WebhookEvent::Other {
                id: number("id").ok().flatten(),
                entity,
                action,
            },
        };
        delivery.events.push(event);
    }
    Ok(delivery)
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
