//! MAX updates delivered by webhook (`max.mode = "webhook"`), processed from the inbox through
//! the same path as long polling. The secret was checked when the delivery was stored.

use async_trait::async_trait;
use axum::http::HeaderMap;

use crate::messenger::max::{MaxBot, parse_webhook};
use crate::sync::inbox::{InboxHandler, InboxMessage};
use crate::sync::{Delivered, DeliveryError, JobContext};

pub struct MaxInbox {
    pub bot: MaxBot,
}

#[async_trait]
impl InboxHandler for MaxInbox {
    async fn process(
        &self,
        message: &InboxMessage,
        _ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let updates = parse_webhook(&HeaderMap::new(), message.body.as_bytes(), None)
            .map_err(|e| DeliveryError::permanent(format!("unreadable MAX webhook: {e}")))?;
        for update in updates {
            self.bot.handle_update(update).await;
        }
        Ok(Delivered::done())
    }
}

/// The inbox key of a delivery: the update's `update_type`, its `timestamp` (milliseconds) and
/// what it is about: the callback id of a button press, the message id of a message, else the
/// chat and user. A re-sent update repeats all of them; a second press of the same button is a
/// new callback. `None` (the body digest is used) without a `timestamp`.
pub fn delivery_key(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let kind = v.get("update_type")?.as_str()?;
    let at = v.get("timestamp")?.as_i64()?;
    let text = |p: &str| {
        v.pointer(p).and_then(|x| match x {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        })
    };
    let about = text("/callback/callback_id")
        .or_else(|| text("/message/body/mid"))
        .unwrap_or_else(|| {
            format!(
                "{}/{}",
                text("/chat_id").unwrap_or_default(),
                text("/user/user_id").unwrap_or_default()
            )
        });
    Some(crate::sync::inbox::stamp_key(
        "max",
        &[kind.to_owned(), at.to_string(), about],
    ))
}

#[cfg(test)]
mod tests {
    use super::delivery_key;

    fn contract(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../shared/contracts/max/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn updates_are_keyed_on_their_timestamp_and_subject() {
        let press = contract("sdk-webhook.message_callback.json");
        let key = delivery_key(&press).expect("a stamped update");
        assert!(key.starts_with("max:"), "{key}");
        assert_eq!(delivery_key(&press.clone()).as_deref(), Some(key.as_str()));
        // The same button pressed again: a new callback at a new time.
        let mut again: serde_json::Value = serde_json::from_str(&press).unwrap();
        again["timestamp"] = serde_json::json!(1775025609999_i64);
        again["callback"]["callback_id"] = serde_json::json!("another");
        assert_ne!(delivery_key(&again.to_string()), Some(key));
        let started = contract("webhook-bot-started-deeplink.json");
        assert!(delivery_key(&started).is_some());
        assert_eq!(delivery_key(r#"{"update_type":"bot_started"}"#), None);
    }
}
