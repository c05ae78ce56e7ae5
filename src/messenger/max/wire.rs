//! MAX's JSON shapes (schema 0.0.33); unknown fields are ignored everywhere, as MAX adds them.

use super::*;

// ---------------------------------------------------------------------------------------------
// Wire types (MAX schema 0.0.33). Unknown fields are ignored everywhere: MAX adds fields.

/// `{code, message}`, MAX's error body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ApiErrorBody {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// `GET /me`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BotInfo {
    pub user_id: i64,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub is_bot: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MaxUser {
    pub user_id: i64,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub is_bot: bool,
    /// Not in schema 0.0.33's `User`, but some payloads carry it; `user_locale` wins.
    #[serde(default)]
    pub locale: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MaxRecipient {
    #[serde(default)]
    pub chat_id: Option<i64>,
    /// `dialog`, `chat` or `channel`.
    #[serde(default)]
    pub chat_type: Option<String>,
    #[serde(default)]
    pub user_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MaxMessageBody {
    pub mid: String,
    /// Above 2^53: an integer, never a float.
    #[serde(default)]
    pub seq: i64,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub attachments: Option<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MaxMessage {
    #[serde(default)]
    pub sender: Option<MaxUser>,
    pub recipient: MaxRecipient,
    #[serde(default)]
    pub timestamp: i64,
    pub body: MaxMessageBody,
    /// The message this one forwards or replies to.
    #[serde(default)]
    pub link: Option<MaxLink>,
}

/// `Chat`, as far as the admin-chat check reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MaxChat {
    pub chat_id: i64,
    #[serde(default)]
    pub title: Option<String>,
}

/// `Message.link`: `{type: forward|reply, sender?, chat_id?, message}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MaxLink {
    /// `forward` or `reply`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub message: Option<MaxLinkedBody>,
    /// Who wrote the linked message: a relayed question is the bot's own post.
    #[serde(default)]
    pub sender: Option<MaxUser>,
}

/// The linked message's body: its id, and its text for a relayed question's marker.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MaxLinkedBody {
    pub mid: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MaxCallback {
    pub callback_id: String,
    #[serde(default)]
    pub payload: Option<String>,
    pub user: MaxUser,
    #[serde(default)]
    pub timestamp: i64,
}

/// One update. Types the dialog does not use are kept by name only, and a known type that does
/// not parse is kept with the reason: neither may stop the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum MaxUpdate {
    BotStarted {
        timestamp: i64,
        chat_id: i64,
        user: MaxUser,
        /// The deep-link `?start=` value.
        payload: Option<String>,
        user_locale: Option<String>,
    },
    MessageCreated {
        timestamp: i64,
        message: MaxMessage,
        user_locale: Option<String>,
    },
    MessageCallback {
        timestamp: i64,
        callback: MaxCallback,
        /// Null when the message with the keyboard was deleted.
        message: Option<MaxMessage>,
        user_locale: Option<String>,
    },
    Other {
        update_type: String,
    },
    Unreadable {
        update_type: String,
        reason: String,
    },
}

#[derive(Deserialize)]
pub(super) struct BotStartedWire {
    #[serde(default)]
    pub(super) timestamp: i64,
    pub(super) chat_id: i64,
    pub(super) user: MaxUser,
    #[serde(default)]
    pub(super) payload: Option<String>,
    #[serde(default)]
    pub(super) user_locale: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct MessageCreatedWire {
    #[serde(default)]
    pub(super) timestamp: i64,
    pub(super) message: MaxMessage,
    #[serde(default)]
    pub(super) user_locale: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct MessageCallbackWire {
    #[serde(default)]
    pub(super) timestamp: i64,
    pub(super) callback: MaxCallback,
    #[serde(default)]
    pub(super) message: Option<MaxMessage>,
    #[serde(default)]
    pub(super) user_locale: Option<String>,
}

impl MaxUpdate {
    /// Never fails: what cannot be read becomes [`MaxUpdate::Unreadable`].
    pub fn from_value(value: Value) -> MaxUpdate {
        let update_type = value
            .get("update_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let unreadable = |e: serde_json::Error| MaxUpdate::Unreadable {
            update_type: update_type.clone(),
            reason: e.to_string(),
        };
        match update_type.as_str() {
            "bot_started" => match serde_json::from_value::<BotStartedWire>(value) {
                Ok(w) => MaxUpdate::BotStarted {
                    timestamp: w.timestamp,
                    chat_id: w.chat_id,
                    user: w.user,
                    payload: w.payload,
                    user_locale: w.user_locale,
                },
                Err(e) => unreadable(e),
            },
            "message_created" => match serde_json::from_value::<MessageCreatedWire>(value) {
                Ok(w) => MaxUpdate::MessageCreated {
                    timestamp: w.timestamp,
                    message: w.message,
                    user_locale: w.user_locale,
                },
                Err(e) => unreadable(e),
            },
            "message_callback" => match serde_json::from_value::<MessageCallbackWire>(value) {
                Ok(w) => MaxUpdate::MessageCallback {
                    timestamp: w.timestamp,
                    callback: w.callback,
                    message: w.message,
                    user_locale: w.user_locale,
                },
                Err(e) => unreadable(e),
            },
            _ => MaxUpdate::Other { update_type },
        }
    }

    pub fn update_type(&self) -> &str {
        match self {
            MaxUpdate::BotStarted { .. } => "bot_started",
            MaxUpdate::MessageCreated { .. } => "message_created",
            MaxUpdate::MessageCallback { .. } => "message_callback",
            MaxUpdate::Other { update_type } | MaxUpdate::Unreadable { update_type, .. } => {
                update_type
            }
        }
    }
}

impl<'de> Deserialize<'de> for MaxUpdate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(MaxUpdate::from_value(Value::deserialize(d)?))
    }
}

/// `GET /updates`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UpdateList {
    pub updates: Vec<MaxUpdate>,
    #[serde(default)]
    pub marker: Option<i64>,
}

/// `SimpleQueryResult`: a 200 can still say `success: false`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct SimpleResult {
    pub(super) success: bool,
    #[serde(default)]
    pub(super) message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct SendMessageResult {
    pub(super) message: MaxMessage,
}

/// Where a message goes: a user's dialog with the bot, or a group chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaxTarget {
    User(i64),
    Chat(i64),
}

impl MaxTarget {
    pub(super) fn query(self) -> (&'static str, String) {
        match self {
            MaxTarget::User(id) => ("user_id", id.to_string()),
            MaxTarget::Chat(id) => ("chat_id", id.to_string()),
        }
    }

    /// The conversation key: the user id for dialogs (the same in every update type, unlike
    /// the dialog's chat id, which a callback on a deleted message does not carry).
    pub fn chat_ref(self) -> ChatRef {
        match self {
            MaxTarget::User(id) => ChatRef::new(Channel::Max, id.to_string()),
            MaxTarget::Chat(id) => ChatRef::new(Channel::Max, format!("chat{id}")),
        }
    }
}
