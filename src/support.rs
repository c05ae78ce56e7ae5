//! "Call an administrator": a client's question the bot cannot answer goes to the business's
//! admin chat (`[support]`), and an admin's reply to it goes back to the client's chat.
//!
//! The dialog asks for it with [`crate::dialog::Command::CallAdmin`]; the conversation driver
//! queues a [`RELAY_QUESTION`] job, and [`SupportJobs`] posts the question with who asks and
//! what they said last. Each posted message is recorded (`support_relays`), so a reply to it in
//! the configured admin chat, and only there, finds the client it belongs to.

use crate::domain::BusinessId;
use crate::domain::System;
use chrono::{DateTime, Datelike, Duration, NaiveDateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Channel, ChatRef};
use crate::i18n::{FluentValue, Lang, Texts};
use crate::store::{Store, SupportRelay};
use crate::sync::{Delivered, DeliveryError, Job, JobContext, JobHandler, NewJob};

/// The delivery system the relay jobs belong to.
pub const SUPPORT_SYSTEM: System = System::Support;
/// Post a client's question in the admin chat(s).
pub const RELAY_QUESTION: &str = "relay_question";
/// The CRM job that logs one message of a question's exchange into the client's card.
pub const SUPPORT_NOTE: &str = "support_note";
/// Lines of the chat shown to admins with a question.
const CONTEXT_LINES: i64 = 6;
/// A bot screen can be long (a list of services); admins need its gist.
const LINE_MAX_CHARS: usize = 160;
/// Keeps the whole relay within one message of either messenger (Telegram: 4096 characters).
const QUESTION_MAX_CHARS: usize = 2000;

/// `[support]`: where clients' questions go and when admins answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportConfig {
    /// A Telegram group the bot is a member of (`-100…`).
    #[serde(default)]
    pub telegram_chat_id: Option<i64>,
    /// A MAX chat the bot is a member of.
    #[serde(default)]
    pub max_chat_id: Option<i64>,
    /// `"10:00-20:00"` on the business clock; outside it the client is told when to expect an
    /// answer. No hours: admins are taken to be always there.
    #[serde(default)]
    pub hours: Option<String>,
    /// The days `hours` apply to (`["mon", "tue", …]`); every day when not given.
    #[serde(default)]
    pub days: Option<Vec<String>>,
}

impl SupportConfig {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self, telegram: bool, max: bool) -> Result<(), crate::sync::config::KeyError> {
        let key = |k: &str, message: &str| crate::sync::config::KeyError {
            key: format!("support.{k}"),
            message: message.to_string(),
        };
        if self.telegram_chat_id.is_none() && self.max_chat_id.is_none() {
            return Err(key(
                "telegram_chat_id",
                "[support] needs telegram_chat_id or max_chat_id: the admin chat questions go to",
            ));
        }
        if self.telegram_chat_id.is_some() && !telegram {
            return Err(key(
                "telegram_chat_id",
                "needs the [telegram] bot: it posts the questions there",
            ));
        }
        if self.max_chat_id.is_some() && !max {
            return Err(key(
                "max_chat_id",
                "needs the [max] bot: it posts the questions there",
            ));
        }
        if self.days.is_some() && self.hours.is_none() {
            return Err(key("days", "needs support.hours"));
        }
        self.hours()
            .map_err(|(k, message)| key(k, &message))
            .map(|_| ())
    }

    /// The working hours, if any; an error names the key (`hours` or `days`) and what is wrong.
    pub fn hours(&self) -> Result<Option<SupportHours>, (&'static str, String)> {
        let Some(hours) = &self.hours else {
            return Ok(None);
        };
        let (open, close) = hours
            .split_once('-')
            .ok_or(("hours", format!("{hours:?} is not like \"10:00-20:00\"")))?;
        let time = |s: &str| {
            NaiveTime::parse_from_str(s.trim(), "%H:%M")
                .map_err(|_| ("hours", format!("{:?} is not a time like 10:00", s.trim())))
        };
        let (open, close) = (time(open)?, time(close)?);
        if close <= open {
            return Err(("hours", format!("{hours:?} must end after it starts")));
        }
        let mut days = [true; 7];
        if let Some(list) = &self.days {
            days = [false; 7];
            for day in list {
                let i = WEEKDAYS
                    .iter()
                    .position(|d| d.eq_ignore_ascii_case(day.trim()))
                    .ok_or((
                        "days",
                        format!("{day:?} is not one of mon, tue, wed, thu, fri, sat, sun"),
                    ))?;
                days[i] = true;
            }
            if !days.contains(&true) {
                return Err(("days", "must name at least one day".to_string()));
            }
        }
        Ok(Some(SupportHours { open, close, days }))
    }
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// When admins answer, on the business clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportHours {
    pub open: NaiveTime,
    pub close: NaiveTime,
    /// Monday first.
    pub days: [bool; 7],
}

impl SupportHours {
    /// `None` while admins are in at `local`; otherwise when they next are.
    pub fn next_open(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        let day_on = |d: chrono::NaiveDate| self.days[d.weekday().num_days_from_monday() as usize];
        let t = local.time();
        if day_on(local.date()) && self.open <= t && t < self.close {
            return None;
        }
        (0..=7)
            .map(|i| local.date() + Duration::days(i))
            .filter(|d| day_on(*d))
            .map(|d| d.and_time(self.open))
            .find(|start| *start > local)
    }
}

/// The payload of a [`RELAY_QUESTION`] job. Who asks (name, phone, source) is read from the
/// chat's state when it is posted, so the queue holds no more personal data than the question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionJob {
    pub chat: ChatRef,
    /// What the client typed; `None` when they pressed the button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    pub at: DateTime<Utc>,
}

/// The job that relays a client's question.
pub fn question_job(
    business_id: &BusinessId,
    chat: &ChatRef,
    question: Option<String>,
    at: DateTime<Utc>,
) -> NewJob {
    let payload = QuestionJob {
        chat: chat.clone(),
        question,
        at,
    };
    NewJob {
        business_id: business_id.clone(),
        system: SUPPORT_SYSTEM,
        operation: RELAY_QUESTION.to_string(),
        payload: serde_json::to_value(payload).unwrap_or_default(),
        idempotency_key: format!("{RELAY_QUESTION}:{}:{}", chat.key(), at.timestamp_millis()),
        ordering_key: Some(format!("support:{}", chat.key())),
    }
}

/// Which message of a question's exchange a [`SUPPORT_NOTE`] logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// The client pressed "Call an administrator".
    Called,
    /// The client typed a question the bot could not place.
    Question,
    /// An admin's reply from the admin chat.
    Answer,
}

impl NoteKind {
    fn as_str(self) -> &'static str {
        match self {
            NoteKind::Called => "called",
            NoteKind::Question => "question",
            NoteKind::Answer => "answer",
        }
    }

    /// The locale id of the note's first line.
    pub fn head_id(self) -> &'static str {
        match self {
            NoteKind::Called => "crm-note-support-called",
            NoteKind::Question => "crm-note-support-question",
            NoteKind::Answer => "crm-note-support-answer",
        }
    }
}

/// The payload of a [`SUPPORT_NOTE`] job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportNoteJob {
    pub chat_key: String,
    pub kind: NoteKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub at: DateTime<Utc>,
}

/// The CRM job that logs a question, a call or an answer into the client's card; ordered with
/// the chat's other CRM jobs, so the question is in the card before its answer.
pub fn note_job(
    business_id: &BusinessId,
    crm_system: System,
    chat: &ChatRef,
    kind: NoteKind,
    text: Option<String>,
    at: DateTime<Utc>,
) -> NewJob {
    let chat_key = chat.key();
    let payload = SupportNoteJob {
        chat_key: chat_key.clone(),
        kind,
        text,
        at,
    };
    NewJob {
        business_id: business_id.clone(),
        system: crm_system,
        operation: SUPPORT_NOTE.to_string(),
        payload: serde_json::to_value(payload).unwrap_or_default(),
        idempotency_key: format!(
            "{SUPPORT_NOTE}:{}:{chat_key}:{}",
            kind.as_str(),
            at.timestamp_millis()
        ),
        ordering_key: Some(format!("chat:{chat_key}")),
    }
}

/// The key in the CRM of the lead a chat's questions go to when the client has no booking's
/// lead: one per chat, so every question and answer of that chat lands in the same card, and
/// unlike any booking id or unfinished booking's key.
pub fn question_lead_key(business_id: &BusinessId, chat_key: &str) -> String {
    crate::domain::lead_key_of('q', &format!("question:{business_id}:{chat_key}"))
}

/// An admin's reply in the admin chat, as a messenger adapter reads it.
#[derive(Debug, Clone, Copy)]
pub struct AdminReply<'a> {
    pub channel: Channel,
    pub admin_chat: i64,
    /// The admin-chat message it replies to: a relayed question when it is one of ours.
    pub replied_to: &'a str,
    /// The reply's own id in the admin chat: the same update read twice is the same answer.
    pub message_id: &'a str,
    pub text: &'a str,
    /// The text of the message replied to, when the messenger shows it is the bot's own post:
    /// a relayed question names its job there ([`marker`]), so the answer finds the client
    /// even before the relay's row is stored.
    pub replied_text: Option<&'a str>,
}

/// An admin chat a question can be posted in; returns the posted message's id there.
#[async_trait::async_trait]
pub trait AdminChat: Send + Sync {
    /// `telegram` or `max`.
    fn messenger(&self) -> &'static str;
    fn chat_id(&self) -> String;
    async fn post(&self, text: &str) -> Result<String, DeliveryError>;
}

/// Posts relay jobs in the configured admin chats.
pub struct SupportJobs {
    chats: Vec<Box<dyn AdminChat>>,
    texts: Texts,
    lang: Lang,
}

impl SupportJobs {
    pub fn new(chats: Vec<Box<dyn AdminChat>>, texts: Texts, lang: Lang) -> SupportJobs {
        SupportJobs { chats, texts, lang }
    }

    async fn text(
        &self,
        store: &Store,
        job: &Job,
        q: &QuestionJob,
    ) -> Result<String, DeliveryError> {
        let transient =
            |e: crate::store::StoreError| DeliveryError::transient(format!("store: {e}"));
        let key = q.chat.key();
        let state = store
            .load_dialog(&job.business_id, &key)
            .await
            .map_err(transient)?
            .and_then(|json| serde_json::from_str::<crate::dialog::DialogState>(&json).ok())
            .unwrap_or_default();
        let lines = store
            .last_chat_lines(&job.business_id, &key, q.at, CONTEXT_LINES)
            .await
            .map_err(transient)?;
        let t = |k: &str| self.texts.t(self.lang, k);
        let dash = "—".to_string();
        let source = state
            .source()
            .map(describe_source)
            .unwrap_or_else(|| q.chat.channel.as_str().to_string());
        let mut text = self.texts.t_args(
            self.lang,
            "support-relay",
            &[
                ("marker", FluentValue::from(marker(job.id))),
                (
                    "name",
                    state
                        .name()
                        .map(str::to_string)
                        .unwrap_or(dash.clone())
                        .into(),
                ),
                (
                    "phone",
                    state.phone().map(|p| p.formatted()).unwrap_or(dash).into(),
                ),
                ("channel", channel_label(q.chat.channel).into()),
                ("source", source.into()),
            ],
        );
        match &q.question {
            Some(question) => {
                text.push_str("\n\n");
                text.push_str(&self.texts.t_args(
                    self.lang,
                    "support-relay-question",
                    &[(
                        "question",
                        crate::dialog::shorten(question, QUESTION_MAX_CHARS).into(),
                    )],
                ));
            }
            None => {
                text.push_str("\n\n");
                text.push_str(&t("support-relay-called"));
            }
        }
        if !lines.is_empty() {
            text.push_str("\n\n");
            text.push_str(&t("support-relay-lines"));
            for line in &lines {
                let who = if line.author == "client" {
                    t("support-relay-client")
                } else {
                    t("support-relay-bot")
                };
                let one_line = line.text.split_whitespace().collect::<Vec<_>>().join(" ");
                text.push_str(&format!(
                    "\n{who}: {}",
                    crate::dialog::shorten(&one_line, LINE_MAX_CHARS)
                ));
            }
        }
        text.push_str("\n\n");
        text.push_str(&t("support-relay-reply"));
        Ok(text)
    }
}

/// The short tag admins see on a relayed question (`#Q42`).
pub fn marker(job_id: i64) -> String {
    format!("#Q{job_id}")
}

/// The job a relayed question's text names by its [`marker`]: the first `#Q` followed by
/// digits.
pub fn marker_in(text: &str) -> Option<i64> {
    text.match_indices("#Q").find_map(|(at, tag)| {
        let digits: String = text[at + tag.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

fn channel_label(channel: Channel) -> String {
    match channel {
        Channel::Telegram => "Telegram".into(),
        Channel::Max => "MAX".into(),
        other => other.as_str().to_string(),
    }
}

/// Where the client came from, as admins read it: the tracked link's name, the deep-link
/// payload and the UTM source, whichever are known.
fn describe_source(source: &crate::domain::Source) -> String {
    let mut parts = vec![channel_label(source.channel)];
    if let Some(name) = &source.link_name {
        parts.push(name.clone());
    } else if let Some(payload) = &source.payload {
        parts.push(payload.clone());
    }
    if let Some(utm) = &source.utm.source {
        parts.push(format!("utm_source={utm}"));
    }
    if let Some(campaign) = &source.utm.campaign {
        parts.push(format!("utm_campaign={campaign}"));
    }
    parts.join(" · ")
}

#[async_trait::async_trait]
impl JobHandler for SupportJobs {
    async fn handle(&self, job: &Job, ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        if job.operation != RELAY_QUESTION {
            return Err(DeliveryError::permanent(format!(
                "no operation {:?}",
                job.operation
            )));
        }
        let q: QuestionJob = serde_json::from_value(job.payload.clone())
            .map_err(|e| DeliveryError::permanent(format!("unreadable question: {e}")))?;
        let text = self.text(ctx.store, job, &q).await?;
        let chat_key = q.chat.key();
        for chat in &self.chats {
            // A retry after one admin chat got it posts only in the others.
            let posted = ctx
                .store
                .support_relayed(&job.business_id, &job.idempotency_key, chat.messenger())
                .await
                .map_err(|e| DeliveryError::transient(format!("store: {e}")))?;
            if posted {
                continue;
            }
            let message = chat.post(&text).await?;
            let admin_chat = chat.chat_id();
            ctx.store
                .record_support_relay(
                    &job.business_id,
                    &SupportRelay {
                        messenger: chat.messenger(),
                        admin_chat: &admin_chat,
                        admin_message: &message,
                        chat_key: &chat_key,
                        question_key: &job.idempotency_key,
                    },
                    ctx.now,
                )
                .await
                .map_err(|e| DeliveryError::transient(format!("store: {e}")))?;
        }
        tracing::info!(
            chat = %chat_key,
            marker = %marker(job.id),
            "client's question relayed to the admin chat"
        );
        Ok(Delivered::done())
    }
}

/// The admin's answer as the client reads it.
pub fn answer_reply(texts: &Texts, lang: Lang, answer: &str) -> crate::dialog::Reply {
    crate::dialog::Reply {
        text: texts.t_args(
            lang,
            "support-answer",
            &[("text", answer.to_string().into())],
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn a_marker_is_read_back_from_the_post() {
        assert_eq!(
            marker_in(&format!("Вопрос {}: парковка", marker(42))),
            Some(42)
        );
        assert_eq!(marker_in("#Q без номера, потом #Q7"), Some(7));
        assert_eq!(marker_in("нет метки"), None);
        assert_eq!(marker_in("#Q"), None);
    }

    fn at(d: u32, h: u32, m: u32) -> NaiveDateTime {
        // December 2026: the 7th is a Monday.
        NaiveDate::from_ymd_opt(2026, 12, d)
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
    }

    fn config(hours: &str, days: Option<&[&str]>) -> SupportConfig {
        SupportConfig {
            telegram_chat_id: Some(-100),
            hours: Some(hours.into()),
            days: days.map(|d| d.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn admins_are_in_within_the_hours_and_next_open_otherwise() {
        let hours = config("10:00-20:00", Some(&["mon", "tue", "wed", "thu", "fri"]))
            .hours()
            .unwrap()
            .unwrap();
        assert_eq!(hours.next_open(at(7, 10, 0)), None);
        assert_eq!(hours.next_open(at(7, 19, 59)), None);
        assert_eq!(hours.next_open(at(7, 9, 0)), Some(at(7, 10, 0)));
        assert_eq!(hours.next_open(at(7, 20, 0)), Some(at(8, 10, 0)));
        // Friday evening waits for Monday.
        assert_eq!(hours.next_open(at(11, 21, 0)), Some(at(14, 10, 0)));
        assert_eq!(hours.next_open(at(12, 12, 0)), Some(at(14, 10, 0)));
    }

    #[test]
    fn wrong_hours_and_days_are_refused_by_their_key() {
        for (hours, days, key) in [
            ("10-20", None, "support.hours"),
            ("20:00-10:00", None, "support.hours"),
            ("10:00-20:00", Some(&["пн"][..]), "support.days"),
            ("10:00-20:00", Some(&[][..]), "support.days"),
        ] {
            let e = config(hours, days).validate(true, false).unwrap_err();
            assert_eq!(e.key, key, "{hours} {days:?}: {}", e.message);
        }
        let e = SupportConfig::default().validate(true, true).unwrap_err();
        assert_eq!(e.key, "support.telegram_chat_id");
        let e = SupportConfig {
            max_chat_id: Some(5),
            ..Default::default()
        }
        .validate(true, false)
        .unwrap_err();
        assert_eq!(e.key, "support.max_chat_id");
        assert!(
            config("09:30-18:00", Some(&["Sat"]))
                .validate(true, false)
                .is_ok()
        );
    }
}
