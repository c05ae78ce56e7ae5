//! Bot API calls whose answer matters only as success or failure.
//!
//! Telegram answers `sendMessage` and `editMessageText` with the whole message: the chat, the
//! sender, the text and the keyboard echoed back. teloxide parses that into its `Message`
//! (buffering it twice over on the way, for its untagged and flattened parts), which was a
//! sixth of what a turn of the bot cost besides the store; the dialog's replies never read it.
//! Wrapped in [`Unread`], a payload goes out exactly as teloxide would send it and its
//! `result` is skipped unparsed, while a refusal is still parsed into the same
//! [`teloxide::RequestError`] (flood control's `retry_after`, "message is not modified", a
//! blocked bot).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use teloxide::requests::{JsonRequest, Payload};

use super::TelegramBot;

/// `P` sent as is, its answer's `result` left unread.
#[derive(Clone, Serialize)]
#[serde(transparent)]
pub(super) struct Unread<P>(pub(super) P);

impl<P: Payload> Payload for Unread<P> {
    type Output = Done;
    const NAME: &'static str = P::NAME;

    fn timeout_hint(&self) -> Option<Duration> {
        self.0.timeout_hint()
    }
}

/// Telegram accepted the call; what it answered with was not read.
#[derive(Debug)]
pub(super) struct Done;

impl<'de> Deserialize<'de> for Done {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Done)
    }
}

/// The request for `payload` whose answer is not read.
pub(super) fn unread<P>(bot: &TelegramBot, payload: P) -> JsonRequest<Unread<P>> {
    JsonRequest::new(bot.clone(), Unread(payload))
}

#[cfg(test)]
mod tests {
    use teloxide::payloads::{EditMessageText, EditMessageTextSetters, SendMessage};
    use teloxide::requests::Payload;
    use teloxide::types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId};

    use super::{Done, Unread};

    fn keyboard() -> InlineKeyboardMarkup {
        InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Записаться", "book")]])
    }

    #[test]
    fn a_wrapped_call_goes_out_as_teloxide_sends_it() {
        let edit = EditMessageText::new(ChatId(7), MessageId(42), "Выберите услугу")
            .reply_markup(keyboard());
        assert_eq!(
            serde_json::to_value(Unread(edit.clone())).unwrap(),
            serde_json::to_value(&edit).unwrap()
        );
        assert_eq!(
            <Unread<EditMessageText> as Payload>::NAME,
            <EditMessageText as Payload>::NAME
        );
        let send = SendMessage::new(ChatId(7), "Здравствуйте");
        assert_eq!(
            serde_json::to_value(Unread(send.clone())).unwrap(),
            serde_json::to_value(&send).unwrap()
        );
        assert_eq!(<Unread<SendMessage> as Payload>::NAME, "SendMessage");
    }

    #[test]
    fn any_answer_is_taken_unread() {
        for result in [
            r#"{"message_id":1,"chat":{"id":7,"type":"private"},"date":0,"text":"x"}"#,
            "true",
            "null",
            r#"[1,{"a":[]}]"#,
        ] {
            assert!(serde_json::from_str::<Done>(result).is_ok(), "{result}");
        }
        assert!(serde_json::from_str::<Done>("{").is_err());
    }
}
