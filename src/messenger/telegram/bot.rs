//! Updates into the dialog and its replies back: messages and button presses become
//! [`ChatEvent`]s, [`Reply`]s become messages with keyboards (see the rendering choices in
//! `mod.rs`).

use std::sync::Arc;

use dashmap::DashSet;
use teloxide::dispatching::{UpdateFilterExt, UpdateHandler};
use teloxide::payloads::{EditMessageText, SendMessage};
use teloxide::prelude::*;
use teloxide::requests::Request;
use teloxide::types::{
    ButtonRequest, InlineKeyboardButton, InlineKeyboardButtonKind, InlineKeyboardMarkup,
    KeyboardButton, KeyboardMarkup, KeyboardRemove, MessageId, ReplyMarkup,
};
use teloxide::{ApiError, RequestError};

use super::pacing::TelegramPacer;
use super::polling::Redactor;
use super::turns::ChatTurns;
use super::unread::unread;
use super::{HandlerError, MAX_TEXT_LEN, TelegramBot};
use crate::conversation::ChatEvent;
use crate::dialog::Reply;
use crate::domain::{Channel, ChatRef};
use crate::i18n::{Lang, Texts};
use crate::messenger::{
    ChatHandler, describe, relay_admin_reply, replies_or_apology, send_in_parts,
};

pub(super) fn schema() -> UpdateHandler<HandlerError> {
    // Both branches matter beyond routing: teloxide derives `allowed_updates` from this tree,
    // and without the callback branch Telegram would never send button presses.
    dptree::entry()
        .branch(Update::filter_message().endpoint(on_message))
        .branch(Update::filter_callback_query().endpoint(on_callback))
}

async fn on_message(bot: TelegramBot, msg: Message, inner: Arc<Inner>) -> Result<(), HandlerError> {
    if inner.handler.support_chat(Channel::Telegram) == Some(msg.chat.id.0) {
        inner.admin_message(&msg).await;
        return Ok(());
    }
    // Taken before the first await, so turns follow the order updates arrived in.
    let mut turn = inner.turns.enter(msg.chat.id.0);
    let Some(event) = message_event(&msg) else {
        tracing::debug!(
            chat = msg.chat.id.0,
            "ignoring a message without text or contact"
        );
        return Ok(());
    };
    let lang = msg.from.as_ref().and_then(|u| u.language_code.clone());
    on_own_task(async move {
        turn.wait().await;
        inner
            .dispatch(&bot, msg.chat.id, lang.as_deref(), event, None)
            .await;
    })
    .await
}

async fn on_callback(
    bot: TelegramBot,
    query: CallbackQuery,
    inner: Arc<Inner>,
) -> Result<(), HandlerError> {
    let mut turn = query
        .message
        .as_ref()
        .map(|m| inner.turns.enter(m.chat().id.0));
    on_own_task(async move {
        // Answer before the (possibly slow) booking work: the client spins until we do.
        if let Err(e) = bot.answer_callback_query(query.id.clone()).await {
            tracing::warn!(error = %inner.redactor.redact(&e.to_string()), "answerCallbackQuery failed");
        }
        let (Some(message), Some(data)) = (query.message.as_ref(), query.data.clone()) else {
            // Inline-mode callbacks have no chat to talk to; we never send inline-mode messages.
            tracing::debug!("ignoring a callback without a message or data");
            return;
        };
        let pressed = query.regular_message();
        let editable = pressed.map(|m| m.id);
        let label = pressed
            .and_then(Message::reply_markup)
            .and_then(|kb| pressed_label(kb, &data));
        if let Some(turn) = turn.as_mut() {
            turn.wait().await;
        }
        inner
            .dispatch(
                &bot,
                message.chat().id,
                query.from.language_code.as_deref(),
                ChatEvent::Button { data, label },
                editable,
            )
            .await;
    })
    .await
}

/// Runs an update's turn on a task of its own, and waits for it. With no per-chat workers
/// (see `mod.rs`), teloxide polls every update's handler inside one task, so every chat's
/// turns would share one core however many the runtime has. A handler dropped before its turn
/// is done (a webhook delivery released at shutdown) stops the turn with it, as it did when
/// the turn ran inside the handler: the delivery's retry must not meet a turn still going.
pub(super) async fn on_own_task<F>(turn: F) -> Result<(), HandlerError>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tokio_util::task::AbortOnDropHandle::new(tokio::spawn(turn))
        .await
        .map_err(HandlerError::from)
}

/// The label of the callback button with `data` on the keyboard it was pressed on.
fn pressed_label(keyboard: &InlineKeyboardMarkup, data: &str) -> Option<String> {
    keyboard
        .inline_keyboard
        .iter()
        .flatten()
        .find(|b| matches!(&b.kind, InlineKeyboardButtonKind::CallbackData(d) if d == data))
        .map(|b| b.text.clone())
}

/// What a message says to the dialog: a shared contact or its text; `None` for anything else
/// (stickers, photos, service messages).
pub fn message_event(msg: &Message) -> Option<ChatEvent> {
    if let Some(contact) = msg.contact() {
        Some(ChatEvent::Contact {
            phone: contact.phone_number.clone(),
        })
    } else {
        msg.text().map(text_event)
    }
}

/// `/start`, `/start payload` and `/start@bot payload` open a conversation with the deep-link
/// payload; everything else is plain text for the dialog.
pub fn text_event(text: &str) -> ChatEvent {
    let trimmed = text.trim();
    let (head, rest) = trimmed
        .split_once(char::is_whitespace)
        .map_or((trimmed, ""), |(h, r)| (h, r.trim()));
    let command = head.split_once('@').map_or(head, |(c, _bot)| c);
    if command.eq_ignore_ascii_case("/start") {
        ChatEvent::Start {
            payload: (!rest.is_empty()).then(|| rest.to_string()),
        }
    } else {
        ChatEvent::Text(text.to_string())
    }
}

pub(super) struct Inner {
    pub(super) handler: Arc<dyn ChatHandler>,
    /// Chats whose screen currently shows our "share my phone" reply keyboard.
    pub(super) contact_keyboard: DashSet<i64>,
    pub(super) redactor: Redactor,
    pub(super) default_lang: Lang,
    pub(super) texts: Texts,
    pub(super) pacer: Arc<TelegramPacer>,
    pub(super) turns: Arc<ChatTurns>,
}

impl Inner {
    /// A message in the `[support]` admin chat: a reply to a relayed question goes back to the
    /// client; the admins' other talk is none of the bot's business.
    async fn admin_message(&self, msg: &Message) {
        let (Some(replied), Some(text)) = (msg.reply_to_message(), msg.text()) else {
            return;
        };
        let replied_to = replied.id.0.to_string();
        let message_id = msg.id.0.to_string();
        let reply = crate::support::AdminReply {
            channel: Channel::Telegram,
            admin_chat: msg.chat.id.0,
            replied_to: &replied_to,
            message_id: &message_id,
            text,
            // Bots in a group see replies to their own posts; another bot's post is not ours.
            replied_text: replied
                .from
                .as_ref()
                .filter(|u| u.is_bot)
                .and(replied.text()),
        };
        relay_admin_reply(self.handler.as_ref(), reply).await;
    }

    async fn dispatch(
        &self,
        bot: &TelegramBot,
        chat_id: ChatId,
        lang: Option<&str>,
        event: ChatEvent,
        editable: Option<MessageId>,
    ) {
        let chat = ChatRef::new(Channel::Telegram, chat_id.0.to_string());
        tracing::info!(chat = %chat.chat_id, event = %describe(&event), "Telegram input");
        let replies = replies_or_apology(
            self.handler.as_ref(),
            &chat,
            lang,
            event,
            &self.texts,
            self.default_lang,
            "tg-apology",
        )
        .await;
        let mut editable = editable;
        for reply in &replies {
            let target = if reply.edit && !reply.request_contact {
                editable.take()
            } else {
                None
            };
            if let Some(message_id) = target
                && self.edit(bot, chat_id, message_id, reply).await
            {
                continue;
            }
            self.send(bot, chat_id, lang, reply).await;
        }
    }

    /// True when the message now shows the reply (edited, or already identical).
    async fn edit(
        &self,
        bot: &TelegramBot,
        chat_id: ChatId,
        message_id: MessageId,
        reply: &Reply,
    ) -> bool {
        let mut parts = split_text(&reply.text);
        let first = parts.remove(0);
        let mut payload = EditMessageText::new(chat_id, message_id, first);
        if parts.is_empty()
            && let Some(kb) = inline_keyboard(reply)
        {
            payload = payload.reply_markup(kb);
        }
        let request = unread(bot, payload);
        match self.pacer.send(chat_id.0, || request.send_ref()).await {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => {}
            Err(e) => {
                tracing::info!(
                    chat = chat_id.0,
                    message_id = message_id.0,
                    error = %self.redactor.redact(&e.to_string()),
                    "cannot edit; sending a new message instead"
                );
                return false;
            }
        }
        if !parts.is_empty() {
            let markup = inline_keyboard(reply).map(ReplyMarkup::InlineKeyboard);
            self.send_parts(bot, chat_id, parts, markup).await;
        }
        true
    }

    async fn send(&self, bot: &TelegramBot, chat_id: ChatId, lang: Option<&str>, reply: &Reply) {
        let inline = inline_keyboard(reply);
        if reply.request_contact {
            let keyboard = KeyboardMarkup::new([[KeyboardButton::new(
                self.texts
                    .t(Lang::pick(lang, self.default_lang), "tg-share-phone"),
            )
            .request(ButtonRequest::Contact)]])
            .one_time_keyboard()
            .resize_keyboard();
            if self
                .send_parts(
                    bot,
                    chat_id,
                    split_text(&reply.text),
                    Some(ReplyMarkup::Keyboard(keyboard)),
                )
                .await
            {
                self.contact_keyboard.insert(chat_id.0);
            }
            if let Some(kb) = inline {
                let text = vec![
                    self.texts
                        .t(Lang::pick(lang, self.default_lang), "tg-or-choose"),
                ];
                self.send_parts(bot, chat_id, text, Some(ReplyMarkup::InlineKeyboard(kb)))
                    .await;
            }
            return;
        }
        let (markup, removes_keyboard) = match inline {
            Some(kb) => (Some(ReplyMarkup::InlineKeyboard(kb)), false),
            None if self.contact_keyboard.remove(&chat_id.0).is_some() => (
                Some(ReplyMarkup::KeyboardRemove(KeyboardRemove::new())),
                true,
            ),
            None => (None, false),
        };
        let sent = self
            .send_parts(bot, chat_id, split_text(&reply.text), markup)
            .await;
        if removes_keyboard && !sent {
            self.contact_keyboard.insert(chat_id.0);
        }
    }

    /// Sends the parts in order, the markup on the last one. False if any part failed.
    async fn send_parts(
        &self,
        bot: &TelegramBot,
        chat_id: ChatId,
        parts: Vec<String>,
        markup: Option<ReplyMarkup>,
    ) -> bool {
        send_in_parts(parts, markup, |part, markup| async move {
            let mut payload = SendMessage::new(chat_id, part);
            if let Some(markup) = markup {
                payload = payload.reply_markup(markup);
            }
            let request = unread(bot, payload);
            let Err(e) = self.pacer.send(chat_id.0, || request.send_ref()).await else {
                return true;
            };
            let error = self.redactor.redact(&e.to_string());
            match e {
                RequestError::Api(ApiError::BotBlocked | ApiError::UserDeactivated) => {
                    tracing::info!(chat = chat_id.0, %error, "the user is unreachable");
                }
                _ => tracing::warn!(chat = chat_id.0, %error, "sendMessage failed"),
            }
            false
        })
        .await
    }
}

pub(crate) fn inline_keyboard(reply: &Reply) -> Option<InlineKeyboardMarkup> {
    let rows: Vec<Vec<InlineKeyboardButton>> = reply
        .buttons
        .iter()
        .filter(|row| !row.is_empty())
        .map(|row| {
            row.iter()
                .map(|b| InlineKeyboardButton::callback(b.label.clone(), b.data.clone()))
                .collect()
        })
        .collect();
    (!rows.is_empty()).then(|| InlineKeyboardMarkup::new(rows))
}

/// Splits a text into parts Telegram accepts, preferring line breaks, then spaces. An empty
/// text becomes a placeholder because Telegram refuses empty messages.
pub fn split_text(text: &str) -> Vec<String> {
    split_text_at(text, MAX_TEXT_LEN)
}

pub(crate) fn split_text_at(text: &str, max_utf16: usize) -> Vec<String> {
    if text.trim().is_empty() {
        return vec!["…".to_string()];
    }
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.encode_utf16().count() > max_utf16 {
        // Byte index of the first char that no longer fits.
        let mut units = 0;
        let mut hard = rest.len();
        for (i, ch) in rest.char_indices() {
            units += ch.len_utf16();
            if units > max_utf16 {
                hard = i;
                break;
            }
        }
        let window = &rest[..hard];
        let cut = window
            .rfind('\n')
            .or_else(|| window.rfind(' '))
            .filter(|&i| i > 0)
            .unwrap_or(hard);
        let (head, tail) = rest.split_at(cut);
        if !head.trim().is_empty() {
            parts.push(head.to_string());
        }
        rest = tail.strip_prefix(['\n', ' ']).unwrap_or(tail);
    }
    if !rest.trim().is_empty() {
        parts.push(rest.to_string());
    }
    parts
}
