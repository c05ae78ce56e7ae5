//! Updates → dialog → replies: an update read as a chat event, the bot that answers it, and
//! replies rendered as MAX messages and keyboards within MAX's limits.

use super::*;

// ---------------------------------------------------------------------------------------------
// Updates → dialog → replies

/// What an update means for the dialog, and where to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub target: MaxTarget,
    pub lang: Option<String>,
    pub event: ChatEvent,
    /// A callback to answer.
    pub callback_id: Option<String>,
    /// The message a button was pressed on, editable in place.
    pub editable: Option<String>,
}

/// Translates an update, or `None` when it is nothing the dialog reacts to.
pub fn incoming(update: &MaxUpdate) -> Option<Incoming> {
    match update {
        MaxUpdate::BotStarted {
            user,
            payload,
            user_locale,
            ..
        } => Some(Incoming {
            target: MaxTarget::User(user.user_id),
            lang: user_locale.clone().or_else(|| user.locale.clone()),
            event: ChatEvent::Start {
                payload: payload
                    .as_deref()
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string),
            },
            callback_id: None,
            editable: None,
        }),
        MaxUpdate::MessageCreated {
            message,
            user_locale,
            ..
        } => {
            let sender = message.sender.as_ref()?;
            // Our own messages (and other bots') come back in group chats; never answer them.
            if sender.is_bot {
                return None;
            }
            let event =
                if let Some(phone) = message.body.attachments.as_deref().and_then(contact_phone) {
                    ChatEvent::Contact { phone }
                } else {
                    let text = message
                        .body
                        .text
                        .as_deref()
                        .filter(|t| !t.trim().is_empty())?;
                    // MAX sends deep links as `bot_started`, but a typed `/start x` means the same.
                    super::super::telegram::text_event(text)
                };
            Some(Incoming {
                target: target_of(&message.recipient, sender.user_id),
                lang: user_locale.clone().or_else(|| sender.locale.clone()),
                event,
                callback_id: None,
                editable: None,
            })
        }
        MaxUpdate::MessageCallback {
            callback,
            message,
            user_locale,
            ..
        } => {
            let target = message
                .as_ref()
                .map(|m| target_of(&m.recipient, callback.user.user_id))
                .unwrap_or(MaxTarget::User(callback.user.user_id));
            Some(Incoming {
                target,
                lang: user_locale.clone().or_else(|| callback.user.locale.clone()),
                event: {
                    let data = callback.payload.clone().unwrap_or_default();
                    let label = message
                        .as_ref()
                        .and_then(|m| m.body.attachments.as_deref())
                        .and_then(|a| pressed_label(a, &data));
                    ChatEvent::Button { data, label }
                },
                callback_id: Some(callback.callback_id.clone()),
                editable: message.as_ref().map(|m| m.body.mid.clone()),
            })
        }
        MaxUpdate::Other { .. } | MaxUpdate::Unreadable { .. } => None,
    }
}

/// The text of the callback button with `payload` in a message's inline keyboard.
pub(super) fn pressed_label(attachments: &[Value], payload: &str) -> Option<String> {
    attachments
        .iter()
        .filter(|a| a["type"] == "inline_keyboard")
        .filter_map(|a| a["payload"]["buttons"].as_array())
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .find(|b| b["type"] == "callback" && b["payload"] == payload)
        .and_then(|b| b["text"].as_str())
        .map(str::to_string)
}

pub(super) fn target_of(recipient: &MaxRecipient, user_id: i64) -> MaxTarget {
    match (recipient.chat_type.as_deref(), recipient.chat_id) {
        (Some("chat" | "channel"), Some(chat_id)) => MaxTarget::Chat(chat_id),
        _ => MaxTarget::User(user_id),
    }
}

/// The phone of a shared contact: `vcf_phone` if present, else the first `TEL` of the vCard.
pub fn contact_phone(attachments: &[Value]) -> Option<String> {
    attachments
        .iter()
        .filter(|a| a.get("type").and_then(Value::as_str) == Some("contact"))
        .find_map(|a| {
            let payload = a.get("payload")?;
            payload
                .get("vcf_phone")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .or_else(|| vcard_phone(payload.get("vcf_info")?.as_str()?))
        })
}

/// `TEL;TYPE=cell:+7 916 …` or `item1.TEL;VALUE=uri:tel:+7…` → the number.
pub fn vcard_phone(vcf: &str) -> Option<String> {
    vcf.lines().find_map(|line| {
        let (name, value) = line.trim().split_once(':')?;
        let property = name.split(';').next()?.rsplit('.').next()?;
        if !property.eq_ignore_ascii_case("TEL") {
            return None;
        }
        let value = value.trim();
        let value = value.strip_prefix("tel:").unwrap_or(value).trim();
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// The part of the adapter shared by long polling and webhooks: one update in, replies out.
pub struct MaxBot {
    pub(super) client: MaxClient,
    pub(super) handler: Arc<dyn ChatHandler>,
    pub(super) default_lang: Lang,
    pub(super) texts: Texts,
}

impl MaxBot {
    pub fn new(client: MaxClient, handler: Arc<dyn ChatHandler>, default_lang: Lang) -> MaxBot {
        MaxBot {
            client,
            handler,
            default_lang,
            texts: Texts::default(),
        }
    }

    /// The business's words, for the bot's own few (the built-in ones otherwise).
    pub fn with_texts(mut self, texts: Texts) -> MaxBot {
        self.texts = texts;
        self
    }

    /// The bot for the webhook route: production pacing, the business locale for its own words.
    pub fn from_config(config: &MaxConfig, conversations: Arc<Conversations>) -> MaxBot {
        let lang = conversations.business().locale;
        let texts = conversations.business().texts.clone();
        MaxBot::new(MaxClient::new(config), conversations, lang).with_texts(texts)
    }

    pub fn client(&self) -> &MaxClient {
        &self.client
    }

    /// A message in the `[support]` admin chat: a reply to a relayed question goes back to the
    /// client; the admins' other talk (and our own posts coming back) is not a dialog.
    pub(super) async fn admin_message(&self, admin_chat: i64, message: &MaxMessage) {
        if message.sender.as_ref().is_none_or(|s| s.is_bot) {
            return;
        }
        let link = message.link.as_ref().filter(|l| l.kind == "reply");
        let replied = link.and_then(|l| l.message.as_ref());
        let (Some(replied), Some(text)) = (replied, message.body.text.as_deref()) else {
            return;
        };
        // Only the bot's own post can carry a relayed question's marker.
        let replied_text = link
            .and_then(|l| l.sender.as_ref())
            .filter(|s| s.is_bot)
            .and(replied.text.as_deref());
        let reply = crate::support::AdminReply {
            channel: Channel::Max,
            admin_chat,
            replied_to: &replied.mid,
            message_id: &message.body.mid,
            text,
            replied_text,
        };
        super::super::relay_admin_reply(self.handler.as_ref(), reply).await;
    }

    /// Handles one update to the end (answer, dialog, replies). Never fails: problems are
    /// logged, so one bad update cannot stop the others.
    pub async fn handle_update(&self, update: MaxUpdate) {
        if let MaxUpdate::MessageCreated { message, .. } = &update
            && let Some(admin_chat) = message.recipient.chat_id
            && self.handler.support_chat(Channel::Max) == Some(admin_chat)
        {
            self.admin_message(admin_chat, message).await;
            return;
        }
        let Some(input) = incoming(&update) else {
            match &update {
                MaxUpdate::Unreadable {
                    update_type,
                    reason,
                } => tracing::warn!(update_type, reason, "skipping an unreadable MAX update"),
                other => {
                    tracing::debug!(update_type = other.update_type(), "ignoring a MAX update")
                }
            }
            return;
        };
        let lang = input.lang.as_deref();
        let empty_press = matches!(&input.event, ChatEvent::Button { data, .. } if data.is_empty());
        let chat = input.target.chat_ref();
        let replies = if empty_press {
            Vec::new()
        } else {
            tracing::info!(chat = %chat.chat_id, event = %describe(&input.event), "MAX input");
            super::super::replies_or_apology(
                self.handler.as_ref(),
                &chat,
                lang,
                input.event.clone(),
                &self.texts,
                self.default_lang,
                "max-apology",
            )
            .await
        };
        let lang = Lang::pick(lang, self.default_lang);
        let mut editable = input.editable.clone();
        let mut rest: &[Reply] = &replies;
        if let Some(callback_id) = &input.callback_id {
            // MAX refuses an empty `CallbackAnswer` (400 "`message` or `notification`
            // required"), so a press is answered with the next screen as `message`, which
            // replaces the pressed message and saves the separate edit, or else with a short
            // `notification`. Until it is answered the client shows a spinner.
            if self
                .answer_with_screen(input.target, callback_id, replies.first(), lang)
                .await
            {
                editable = None;
                rest = &replies[1..];
            } else {
                let ack = json!({"notification": self.texts.t(lang, "max-callback-ack")});
                if let Err(e) = self.client.answer(input.target, callback_id, &ack).await {
                    tracing::warn!(error = %e, "MAX callback answer failed");
                }
            }
        }
        for reply in rest {
            let target_mid = if reply.edit { editable.take() } else { None };
            if let Some(mid) = target_mid
                && self.edit(input.target, &mid, reply, lang).await
            {
                continue;
            }
            self.send(input.target, reply, lang).await;
        }
    }

    /// Answers a press with `reply` as the callback's `message` when it is a one-part edit of
    /// the pressed message; true when MAX took it (the message now shows the reply).
    pub(super) async fn answer_with_screen(
        &self,
        to: MaxTarget,
        callback_id: &str,
        reply: Option<&Reply>,
        lang: Lang,
    ) -> bool {
        let Some(reply) = reply.filter(|r| r.edit) else {
            return false;
        };
        let mut parts = split_text(&reply.text);
        if parts.len() != 1 {
            return false;
        }
        // `[]`, not null: the old keyboard must go when the new screen has none.
        let attachments: Vec<Value> = keyboard_in(reply, &self.texts, lang).into_iter().collect();
        let body = json!({"message": {"text": parts.remove(0), "attachments": attachments}});
        match self.client.answer(to, callback_id, &body).await {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, "MAX refused the screen as a callback answer");
                false
            }
        }
    }

    /// True when the message now shows the reply.
    pub(super) async fn edit(&self, to: MaxTarget, mid: &str, reply: &Reply, lang: Lang) -> bool {
        let mut parts = split_text(&reply.text);
        let first = parts.remove(0);
        let kb = if parts.is_empty() {
            keyboard_in(reply, &self.texts, lang)
        } else {
            None
        };
        // `[]`, not null: null would keep the old keyboard under the new text.
        let body = json!({"text": first, "attachments": kb.into_iter().collect::<Vec<_>>()});
        if let Err(e) = self.client.edit(to, mid, &body).await {
            tracing::info!(mid, error = %e, "cannot edit; sending a new message instead");
            return false;
        }
        if !parts.is_empty() {
            self.send_parts(to, parts, keyboard_in(reply, &self.texts, lang))
                .await;
        }
        true
    }

    pub(super) async fn send(&self, to: MaxTarget, reply: &Reply, lang: Lang) {
        self.send_parts(
            to,
            split_text(&reply.text),
            keyboard_in(reply, &self.texts, lang),
        )
        .await;
    }

    /// Sends the parts in order, the keyboard on the last one. False if any part failed.
    pub(super) async fn send_parts(
        &self,
        to: MaxTarget,
        parts: Vec<String>,
        keyboard: Option<Value>,
    ) -> bool {
        super::super::send_in_parts(parts, keyboard, |part, keyboard| async move {
            let mut body = json!({"text": part});
            if let Some(kb) = keyboard {
                body["attachments"] = json!([kb]);
            }
            let Err(e) = self.client.send(to, &body).await else {
                return true;
            };
            if e.is_chat_denied() {
                tracing::info!(?to, error = %e, "the user is unreachable");
            } else {
                tracing::warn!(?to, error = %e, "MAX send failed");
            }
            false
        })
        .await
    }
}

/// The `inline_keyboard` attachment for a reply, within MAX's limits, or `None`.
pub fn keyboard(reply: &Reply, lang: Lang) -> Option<Value> {
    keyboard_in(reply, &Texts::default(), lang)
}

/// [`keyboard`] with the business's words for the contact button.
pub fn keyboard_in(reply: &Reply, texts: &Texts, lang: Lang) -> Option<Value> {
    let mut rows: Vec<Vec<Value>> = Vec::new();
    if reply.request_contact {
        rows.push(vec![json!({
            "type": "request_contact",
            "text": button_text(&texts.t(lang, "max-share-phone")),
        })]);
    }
    for row in &reply.buttons {
        let buttons: Vec<Value> = row
            .iter()
            .filter_map(|b| {
                let text = button_text(&b.label);
                if b.data.starts_with("https://") || b.data.starts_with("http://") {
                    return Some(json!({"type": "link", "text": text, "url": b.data}));
                }
                if b.data.is_empty() || b.data.len() > MAX_CALLBACK_PAYLOAD {
                    tracing::warn!(label = %b.label, "dropping a button whose payload MAX refuses");
                    return None;
                }
                Some(json!({"type": "callback", "text": text, "payload": b.data}))
            })
            .collect();
        let special = buttons.iter().any(|b| b["type"] != "callback");
        let per_row = if special {
            MAX_SPECIAL_BUTTONS_PER_ROW
        } else {
            MAX_BUTTONS_PER_ROW
        };
        rows.extend(buttons.chunks(per_row).map(<[Value]>::to_vec));
    }
    if rows.len() > MAX_ROWS {
        tracing::warn!(rows = rows.len(), "keyboard cut to MAX's 30 rows");
        rows.truncate(MAX_ROWS);
    }
    (!rows.is_empty()).then(|| json!({"type": "inline_keyboard", "payload": {"buttons": rows}}))
}

pub(super) fn button_text(label: &str) -> String {
    let label = if label.trim().is_empty() {
        "…"
    } else {
        label
    };
    if label.chars().count() <= MAX_BUTTON_TEXT {
        return label.to_string();
    }
    let mut cut: String = label.chars().take(MAX_BUTTON_TEXT - 1).collect();
    cut.push('…');
    cut
}

/// Splits a text into parts MAX accepts (counted in UTF-16 units, the stricter reading of
/// "4000 characters"). An empty text becomes a placeholder.
pub fn split_text(text: &str) -> Vec<String> {
    super::super::telegram::split_text_at(text, MAX_TEXT_LEN)
}
