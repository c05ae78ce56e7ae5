//! Admins' replies in the `[support]` admin chat, routed back to the client who asked.

use crate::dialog::DialogState;
use crate::domain::ChatRef;
use crate::store::StoreError;
use crate::sync::enqueue_in;

use super::{ConversationError, Conversations};

impl Conversations {
    /// The admin chat of `[support]` on `channel`, if one is configured there.
    pub fn support_chat(&self, channel: crate::domain::Channel) -> Option<i64> {
        let support = self.support.as_ref()?;
        match channel {
            crate::domain::Channel::Telegram => support.telegram_chat_id,
            crate::domain::Channel::Max => support.max_chat_id,
            _ => None,
        }
    }

    /// An admin's reply in the admin chat: when the message it replies to relayed a client's
    /// question, the answer is queued to the client's chat and noted in the CRM card. `false`
    /// when it did not (a reply to anything else, or in another chat).
    pub async fn relay_answer(
        &self,
        reply: crate::support::AdminReply<'_>,
    ) -> Result<bool, ConversationError> {
        let crate::support::AdminReply {
            channel,
            admin_chat,
            replied_to,
            message_id,
            text: answer,
            replied_text,
        } = reply;
        if self.support_chat(channel) != Some(admin_chat) || answer.trim().is_empty() {
            return Ok(false);
        }
        let business = &self.business.id;
        let found = self
            .store
            .support_relay_chat(
                business,
                channel.as_str(),
                &admin_chat.to_string(),
                replied_to,
            )
            .await?;
        // The relay's row is stored just after the messenger confirms the post, so a reply
        // that comes at once (or is read while that write waits for the database) finds no
        // row yet: the post's own marker names the question's job, which holds the chat.
        let found = match (found, replied_text.and_then(crate::support::marker_in)) {
            (Some(key), _) => Some(key),
            (None, Some(job_id)) => self.question_chat(job_id).await?,
            (None, None) => None,
        };
        let Some(key) = found else {
            return Ok(false);
        };
        let Some(chat) = ChatRef::from_key(&key) else {
            tracing::warn!(chat = %key, "a relayed question names no chat we can answer");
            return Ok(false);
        };
        let lang = self
            .store
            .load_dialog(business, &key)
            .await?
            .and_then(|json| serde_json::from_str::<DialogState>(&json).ok())
            .and_then(|s| s.lang())
            .unwrap_or(self.business.locale);
        let reply = crate::support::answer_reply(&self.business.texts, lang, answer.trim());
        let now = self.clock.now();
        // Keyed by the admin's message: the same update read twice (a restart before its
        // offset was committed) is one answer to the client and one note.
        let Some(job) = crate::lifecycle::effects::notify_job(
            business,
            &chat,
            &format!("support:{}:{admin_chat}:{message_id}", channel.as_str()),
            reply.clone(),
        ) else {
            tracing::warn!(chat = %key, "a relayed question names a chat that takes no messages");
            return Ok(false);
        };
        let note = self.crm_system.map(|system| {
            crate::support::note_job(
                business,
                system,
                &chat,
                crate::support::NoteKind::Answer,
                Some(answer.trim().to_string()),
                now,
            )
        });
        let mut tx = self.store.begin().await.map_err(StoreError::from)?;
        if enqueue_in(&mut tx, &job, now).await?.is_none() {
            tracing::debug!(chat = %key, "admin's answer already queued");
            return Ok(true);
        }
        if let Some(note) = &note {
            enqueue_in(&mut tx, note, now).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        self.store
            .log_chat(business, &key, now, "admin", &reply.text, None)
            .await?;
        tracing::info!(chat = %key, "admin's answer queued to the client");
        Ok(true)
    }

    /// The chat whose question job `job_id` of this business relayed, if it is one.
    async fn question_chat(&self, job_id: i64) -> Result<Option<String>, ConversationError> {
        let job = crate::sync::Queue::new(self.store.clone())
            .job(job_id)
            .await?;
        Ok(job
            .filter(|j| {
                j.business_id == self.business.id
                    && j.system == crate::support::SUPPORT_SYSTEM
                    && j.operation == crate::support::RELAY_QUESTION
            })
            .and_then(|j| serde_json::from_value::<crate::support::QuestionJob>(j.payload).ok())
            .map(|q| q.chat.key()))
    }
}
