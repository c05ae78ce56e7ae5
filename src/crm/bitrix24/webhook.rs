//! Bitrix24's outbound events: parsing and checking one (`application_token`). The inbox
//! handler that acts on a deal (lead) moved to the cancelled stage is `lifecycle::inbox`.
//!
//! Bitrix24's outbound events (`ONCRMDEALUPDATE`, `ONCRMLEADUPDATE`), processed from the
//! inbox. An event carries only the id, so the deal (lead) is re-read: when a manager moved it
//! to the configured "cancelled" stage, the visit is cancelled in the schedule and the client
//! told. Our own stage moves come back as events too and find the booking already cancelled.

use super::*;

use sha2::{Digest, Sha256};

// -------------------------------------------------------------------- events in

/// What an outbound event reports; only the id travels, re-read with `deal_stage`/`get_lead`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    DealAdd,
    DealUpdate,
    DealDelete,
    LeadAdd,
    LeadUpdate,
    LeadDelete,
    ContactAdd,
    ContactUpdate,
    ContactDelete,
    /// Any other code, upper-cased, kept so callers can log what they ignore.
    Other(String),
}

impl EventKind {
    fn parse(code: &str) -> EventKind {
        match code.to_ascii_uppercase().as_str() {
            "ONCRMDEALADD" => EventKind::DealAdd,
            "ONCRMDEALUPDATE" => EventKind::DealUpdate,
            "ONCRMDEALDELETE" => EventKind::DealDelete,
            "ONCRMLEADADD" => EventKind::LeadAdd,
            "ONCRMLEADUPDATE" => EventKind::LeadUpdate,
            "ONCRMLEADDELETE" => EventKind::LeadDelete,
            "ONCRMCONTACTADD" => EventKind::ContactAdd,
            "ONCRMCONTACTUPDATE" => EventKind::ContactUpdate,
            "ONCRMCONTACTDELETE" => EventKind::ContactDelete,
            other => EventKind::Other(other.to_string()),
        }
    }
}

/// One verified outbound event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// `data[FIELDS][ID]`.
    pub id: Option<String>,
    pub ts: Option<i64>,
    pub domain: Option<String>,
    pub member_id: Option<String>,
    pub handler_id: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("crm.bitrix24.application_token is not set; events cannot be verified")]
    NotConfigured,
    #[error("Bitrix24 event has no auth[application_token]")]
    MissingToken,
    #[error("Bitrix24 event carries a wrong application token")]
    WrongToken,
    #[error("Bitrix24 event field {key} is missing")]
    Missing { key: String },
    #[error("Bitrix24 event body is not readable: {0}")]
    Malformed(String),
}

/// Parses an outbound event: on the wire `application/x-www-form-urlencoded` with PHP bracket
/// keys (`data[FIELDS][ID]`, `auth[application_token]`); the JSON form the docs print is read
/// too. Events are unsigned; the application token is the only proof of origin, compared in
/// constant time.
pub fn parse_event(body: &[u8], expected_token: &SecretString) -> Result<Event, EventError> {
    let mut flat: HashMap<String, String> = HashMap::new();
    let trimmed = body.trim_ascii_start();
    if trimmed.starts_with(b"{") {
        let v: Value =
            serde_json::from_slice(trimmed).map_err(|e| EventError::Malformed(e.to_string()))?;
        let mut pairs = Vec::new();
        flatten(None, &v, &mut pairs);
        flat.extend(pairs);
    } else {
        for (k, v) in url::form_urlencoded::parse(body) {
            // Normalise `data[FIELDS][ID]` spelling (no spaces, as sent).
            let key = crate::crm::bracket_parts(&k).join("|");
            flat.insert(key, v.into_owned());
        }
        flat = flat
            .into_iter()
            .map(|(k, v)| {
                let mut parts = k.split('|');
                let head = parts.next().unwrap_or_default().to_string();
                let key = parts.fold(head, |acc, p| format!("{acc}[{p}]"));
                (key, v)
            })
            .collect();
    }
    let token = flat
        .get("auth[application_token]")
        .ok_or(EventError::MissingToken)?;
    if !constant_time_eq(token.as_bytes(), expected_token.expose_secret().as_bytes()) {
        return Err(EventError::WrongToken);
    }
    let code = flat.get("event").ok_or_else(|| EventError::Missing {
        key: "event".into(),
    })?;
    Ok(Event {
        kind: EventKind::parse(code),
        id: flat
            .get("data[FIELDS][ID]")
            .or_else(|| flat.get("data[ID]"))
            .cloned(),
        ts: flat.get("ts").and_then(|t| t.trim().parse().ok()),
        domain: flat.get("auth[domain]").cloned(),
        member_id: flat.get("auth[member_id]").cloned(),
        handler_id: flat.get("event_handler_id").cloned(),
    })
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
        let pairs = crate::sync::inbox::form_pairs(trimmed);
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        (get("event")?, get("data[FIELDS][ID]")?, get("ts")?)
    };
    Some(crate::sync::inbox::stamp_key(
        "bitrix24",
        &[event.to_ascii_uppercase(), id, ts],
    ))
}

const TOKEN_KEY: &str = "auth[application_token]";

/// What the stored event keeps instead of the application token.
fn token_digest(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Replaces the application token of a verified event (form-encoded or JSON) with its digest,
/// so the inbox never holds the secret. Other fields keep their bytes.
pub fn strip_token(body: &str, token: &SecretString) -> String {
    replace_token(body, &token_digest(token.expose_secret()))
}

/// The stored event with the configured token back in place of a matching digest; a digest of
/// another token stays, and the event fails the token check.
pub(crate) fn restore_token(body: &str, token: &SecretString) -> String {
    let digest = token_digest(token.expose_secret());
    let stored = stored_token(body);
    if stored.as_deref() == Some(digest.as_str()) {
        replace_token(body, token.expose_secret())
    } else {
        body.to_string()
    }
}

fn stored_token(body: &str) -> Option<String> {
    if body.trim_start().starts_with('{') {
        let v: Value = serde_json::from_str(body).ok()?;
        return v["auth"]["application_token"].as_str().map(String::from);
    }
    url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| normalise_key(k) == TOKEN_KEY)
        .map(|(_, v)| v.into_owned())
}

/// `auth[application_token]` however its brackets were spelt or encoded.
fn normalise_key(key: &str) -> String {
    key.chars().filter(|c| !c.is_whitespace()).collect()
}

fn replace_token(body: &str, value: &str) -> String {
    if body.trim_start().starts_with('{') {
        let Ok(mut v) = serde_json::from_str::<Value>(body) else {
            return body.to_string();
        };
        if let Some(auth) = v.get_mut("auth").and_then(Value::as_object_mut)
            && auth.contains_key("application_token")
        {
            auth.insert("application_token".into(), Value::String(value.into()));
        }
        return v.to_string();
    }
    body.split('&')
        .map(|pair| {
            let key = url::form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(k, _)| normalise_key(&k));
            if key.as_deref() == Some(TOKEN_KEY) {
                let encoded: String =
                    url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
                format!("auth%5Bapplication_token%5D={encoded}")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_token_is_replaced_by_its_digest_and_restored_only_for_the_same_token() {
        let token = SecretString::from("app-token-0123456789");
        let form = "event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID%5D=7&auth[application_token]=app-token-0123456789&auth[domain]=p.bitrix24.ru";
        let stored = strip_token(form, &token);
        assert!(!stored.contains("app-token"), "{stored}");
        assert!(stored.starts_with("event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID%5D=7&"));
        let back = restore_token(&stored, &token);
        let event = crate::crm::bitrix24::parse_event(back.as_bytes(), &token).unwrap();
        assert_eq!(event.id.as_deref(), Some("7"));
        let other = SecretString::from("rotated-token-000000");
        let not_back = restore_token(&stored, &other);
        assert!(crate::crm::bitrix24::parse_event(not_back.as_bytes(), &other).is_err());

        let json = r#"{"event":"ONCRMDEALUPDATE","data":{"FIELDS":{"ID":"8"}},"auth":{"application_token":"app-token-0123456789"}}"#;
        let stored = strip_token(json, &token);
        assert!(!stored.contains("app-token"), "{stored}");
        let back = restore_token(&stored, &token);
        let event = crate::crm::bitrix24::parse_event(back.as_bytes(), &token).unwrap();
        assert_eq!(event.id.as_deref(), Some("8"));
    }
}
