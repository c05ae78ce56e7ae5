//! The inbox key of a webhook delivery. A vendor re-sends a delivery it thinks was lost, and
//! the repeat must be dropped; a new change that happens to read the same (a lead moved to
//! "cancelled", back, and to "cancelled" again) must not be. So where a vendor stamps its
//! deliveries with a change time or an event id, the key is built from that stamp and the
//! entity it names (each vendor's `delivery_key`, beside its inbox handler); otherwise it is a
//! digest of the body and query. docs/yclients.md lists which stamp each vendor gives.

use sha2::{Digest, Sha256};

#[cfg(test)]
use crate::sync::inbox::{MAX_KEY, stamp_key};

/// The key under which a delivery of `source` is stored; the same delivery sent again gets the
/// same key.
pub fn delivery_key(source: &str, body: &str, query: Option<&str>) -> String {
    let stamped = match source {
        "yclients" => crate::booking::yclients::delivery_key(body),
        "amocrm" => crate::crm::amocrm::delivery_key(body),
        "bitrix24" => crate::crm::bitrix24::delivery_key(body),
        "max" => crate::messenger::max::delivery_key(body),
        "telegram" => crate::messenger::telegram::webhook::delivery_key(body),
        _ => None,
    };
    stamped.unwrap_or_else(|| body_digest(body, query))
}

/// A stable digest (the same across builds and restarts) of what arrived.
pub fn body_digest(body: &str, query: Option<&str>) -> String {
    let mut hash = Sha256::new();
    hash.update(body.as_bytes());
    hash.update([0]);
    hash.update(query.unwrap_or("").as_bytes());
    let digest = hash.finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("body:{hex}-{}", body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unstamped_sources_key_on_the_body_and_query() {
        let a = delivery_key("getcourse", "", Some("deal_id=1&status=payed"));
        assert_eq!(
            a,
            delivery_key("getcourse", "", Some("deal_id=1&status=payed"))
        );
        assert_ne!(
            a,
            delivery_key("getcourse", "", Some("deal_id=2&status=payed"))
        );
        assert!(a.starts_with("body:"), "{a}");
        // Unreadable bodies of stamped sources fall back to the digest as well.
        assert!(delivery_key("yclients", "not json", None).starts_with("body:"));
    }

    #[test]
    fn long_stamps_are_digested() {
        let parts: Vec<String> = (0..100).map(|i| format!("lead{i}")).collect();
        let key = stamp_key("amocrm", &parts);
        assert!(key.len() < MAX_KEY, "{key}");
        assert_ne!(key, stamp_key("amocrm", &parts[1..]));
    }
}
