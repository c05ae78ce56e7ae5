//! Webhook mode: reading and checking a delivery, subscribing, status and the admin chat's
//! check, and the inbox handler that feeds a stored delivery to the bot.

use super::*;

use async_trait::async_trait;

use crate::sync::inbox::{InboxHandler, InboxMessage};
use crate::sync::{Delivered, DeliveryError, JobContext};

// ---------------------------------------------------------------------------------------------
// Webhooks

/// Checks the secret header and reads a webhook body: one bare `Update` (what MAX posts) or,
/// leniently, an `UpdateList`. The lead's `POST /webhooks/max/{secret}` route feeds the result
/// into [`MaxBot::handle_update`].
pub fn parse_webhook(
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&SecretString>,
) -> Result<Vec<MaxUpdate>, MaxError> {
    if let Some(secret) = secret {
        let given = headers
            .get(SECRET_HEADER)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !constant_time_eq(given, secret.expose_secret().as_bytes()) {
            return Err(MaxError::BadSecret);
        }
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| MaxError::BadWebhook(e.to_string()))?;
    if value.get("updates").is_some() {
        let list: UpdateList =
            serde_json::from_value(value).map_err(|e| MaxError::BadWebhook(e.to_string()))?;
        return Ok(list.updates);
    }
    if value.get("update_type").and_then(Value::as_str).is_none() {
        return Err(MaxError::BadWebhook("no update_type".into()));
    }
    Ok(vec![MaxUpdate::from_value(value)])
}

/// Compares without an early exit, so response timing does not reveal the secret.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `zapis max subscribe`.
#[derive(Debug, Clone, clap::Args)]
pub struct SubscribeArgs {
    /// Public HTTPS URL MAX should post updates to; `max.webhook_url` when omitted.
    #[arg(long)]
    pub url: Option<Url>,
}

/// Registers our webhook with MAX; returns a line for the operator.
pub async fn subscribe(config: &MaxConfig, args: &SubscribeArgs) -> Result<String, MaxError> {
    let url = args
        .url
        .clone()
        .or_else(|| config.webhook_url.clone())
        .ok_or_else(|| {
            MaxError::Config("no webhook URL: pass --url or set max.webhook_url".into())
        })?;
    if url.scheme() != "https" {
        return Err(MaxError::Config(
            "MAX delivers webhooks over HTTPS only".into(),
        ));
    }
    let client = MaxClient::new(config);
    client
        .subscribe(&url, config.webhook_secret.as_ref(), UPDATE_TYPES)
        .await?;
    Ok(format!(
        "MAX will post {} to {url}{}",
        UPDATE_TYPES.join(", "),
        if config.webhook_secret.is_some() {
            " with the secret header"
        } else {
            " (no secret set: consider max.webhook_secret)"
        }
    ))
}

/// `zapis check`'s line for MAX: reachable, bad credentials or unreachable.
pub async fn status(config: &MaxConfig) -> String {
    let client = MaxClient::with_limits(
        config,
        MaxLimits {
            max_retries: 0,
            ..MaxLimits::default()
        },
    );
    match client.me().await {
        Ok(me) => format!(
            "reachable (@{})",
            me.username
                .or(me.name)
                .unwrap_or_else(|| me.user_id.to_string())
        ),
        Err(MaxError::Unauthorized) => "bad credentials (the token was refused)".into(),
        Err(MaxError::Network { reason, .. }) => {
            format!("unreachable: {} ({reason})", config.api_url)
        }
        Err(e) => format!("unreachable: {e}"),
    }
}

/// What `zapis check` says of the `[support]` admin chat in MAX: the bot must be a member.
pub async fn admin_chat_status(config: &MaxConfig, chat_id: i64) -> Result<String, String> {
    let client = MaxClient::with_limits(
        config,
        MaxLimits {
            max_retries: 0,
            ..MaxLimits::default()
        },
    );
    match client.chat(chat_id).await {
        Ok(chat) => Ok(chat.title.unwrap_or_else(|| chat.chat_id.to_string())),
        Err(MaxError::Api { message, .. }) => Err(message),
        Err(e) => Err(e.to_string()),
    }
}

// ------------------------------------------------------------------ the inbox handler

// MAX updates delivered by webhook (`max.mode = "webhook"`), processed from the inbox through
// the same path as long polling. The secret was checked when the delivery was stored.

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
