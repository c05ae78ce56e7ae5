//! The CRM seam: what the bot needs from any CRM (AmoCRM now, Bitrix24 next), in our own
//! terms. Each system is one module with its wire types private to it; callers see only
//! [`Crm`], the request/answer types below and [`CrmError`]: the shared [`Failure`] (with
//! the retry decision the sync engine needs), and a refusal's field-level complaints.

pub mod amocrm;
pub mod bitrix24;
pub mod config;
pub mod tokens;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::connectors::{Failure, Kind};
use crate::domain::{Booking, System};
use crate::normalize::{Email, Phone};
use crate::sync::DeliveryError;

/// One field-level complaint from a CRM's validator, kept verbatim for the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Index of the item in a batch (`request_id`), when the CRM says.
    pub request_id: Option<String>,
    pub code: String,
    /// Dotted path inside the item, e.g. `custom_fields_values.0.field_id`.
    pub path: String,
    pub detail: String,
}

/// Every failure of a CRM call: a [`Failure`] carrying the retry decision, and for a refusal
/// of named fields the CRM's own complaints beside it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CrmError {
    /// The CRM's validator refused the request field by field: the same request fails again,
    /// and the journal keeps the complaints verbatim.
    #[error("{}{}", describe(failure), details_suffix(details))]
    Invalid {
        failure: Failure,
        details: Vec<FieldError>,
    },
    #[error("{}", describe(.0))]
    Failed(Failure),
}

fn describe(f: &Failure) -> String {
    let status = status_suffix(f.status);
    match f.kind {
        Kind::Transient { .. } => format!("temporary CRM failure{status}: {}", f.message),
        Kind::Permanent => format!("CRM rejected the request{status}: {}", f.message),
        Kind::Auth => format!("CRM authorisation failed: {}", f.message),
        Kind::PaymentRequired => format!("CRM account is not paid{status}: {}", f.message),
    }
}

fn status_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

fn details_suffix(details: &[FieldError]) -> String {
    if details.is_empty() {
        return String::new();
    }
    let items: Vec<String> = details
        .iter()
        .map(|d| format!("{}: {} ({})", d.path, d.detail, d.code))
        .collect();
    format!(" [{}]", items.join("; "))
}

impl CrmError {
    /// A refusal with the CRM's field-level complaints; without any it is a plain failure.
    pub(crate) fn invalid(failure: Failure, details: Vec<FieldError>) -> CrmError {
        if details.is_empty() {
            CrmError::from(failure)
        } else {
            CrmError::Invalid { failure, details }
        }
    }
    pub fn failure(&self) -> &Failure {
        match self {
            CrmError::Invalid { failure, .. } | CrmError::Failed(failure) => failure,
        }
    }
    pub fn kind(&self) -> Kind {
        self.failure().kind
    }
    pub fn is_transient(&self) -> bool {
        self.failure().is_transient()
    }
    pub fn is_permanent(&self) -> bool {
        matches!(self.kind(), Kind::Permanent | Kind::PaymentRequired)
    }
    pub fn is_auth(&self) -> bool {
        self.failure().is_auth()
    }
    pub fn is_payment_required(&self) -> bool {
        self.kind() == Kind::PaymentRequired
    }
    /// Someone must act (pay, re-authorise): worth an alert at once rather than after hours.
    pub fn is_alert_worthy(&self) -> bool {
        matches!(self.kind(), Kind::Auth | Kind::PaymentRequired)
    }
    pub fn retry_after(&self) -> Option<Duration> {
        self.failure().retry_after()
    }
    pub fn status(&self) -> Option<u16> {
        self.failure().status
    }
    pub fn details(&self) -> &[FieldError] {
        match self {
            CrmError::Invalid { details, .. } => details,
            CrmError::Failed(_) => &[],
        }
    }
    pub(crate) fn transient(message: impl Into<String>) -> CrmError {
        CrmError::from(Failure::transient(message))
    }
    pub(crate) fn permanent(message: impl Into<String>) -> CrmError {
        CrmError::from(Failure::permanent(message))
    }
    pub(crate) fn auth(message: impl Into<String>) -> CrmError {
        CrmError::from(Failure::auth(message))
    }
}

impl From<Failure> for CrmError {
    fn from(mut f: Failure) -> CrmError {
        // A payment refusal always names its status (Bitrix24's batch commands carry none):
        // the journal and the message read "HTTP 402" either way.
        if f.kind == Kind::PaymentRequired && f.status.is_none() {
            f.status = Some(402);
        }
        CrmError::Failed(f)
    }
}

/// The field-level complaints go into the journal's message, verbatim.
impl From<CrmError> for DeliveryError {
    fn from(e: CrmError) -> DeliveryError {
        match e {
            CrmError::Failed(f) => f.into(),
            CrmError::Invalid {
                mut failure,
                details,
            } => {
                let detail: Vec<String> = details.iter().map(|d| format!("{d:?}")).collect();
                failure.message = format!("{}: {}", failure.message, detail.join("; "));
                failure.into()
            }
        }
    }
}

/// Who to find or create in the CRM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRequest {
    pub name: String,
    pub phone: Phone,
    pub email: Option<Email>,
}

impl ContactRequest {
    pub fn for_booking(booking: &Booking) -> ContactRequest {
        ContactRequest {
            name: booking.client_name.clone(),
            phone: booking.client_phone.clone(),
            email: booking.client_email.clone(),
        }
    }
}

/// A contact as the CRM holds it, values as typed there: what an import matches against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactRecord {
    pub id: String,
    pub name: String,
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub tags: Vec<String>,
}

/// A contact to write in bulk (an import): the full set of phones and emails it should carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactDraft {
    pub name: String,
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub birthday: Option<chrono::NaiveDate>,
    pub comment: Option<String>,
    /// A label marking who wrote the contact, so a resumed import recognises its own work.
    pub tag: Option<String>,
    /// Our own key for the contact (an import's `phone:+7…`), for targets with a field meant
    /// for an external system's id.
    pub external_key: Option<String>,
}

/// An existing contact an import completes. `phones`/`emails` are everything it should carry
/// (its own values as typed, then ours it lacked); `new_phones`/`new_emails` are ours alone,
/// for targets whose update adds values rather than replacing them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactUpdate {
    pub id: String,
    /// As the target holds it: an import never renames a contact.
    pub name: String,
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub new_phones: Vec<String>,
    pub new_emails: Vec<String>,
}

/// A contact in the CRM, and whether this call created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRef {
    pub id: String,
    pub created: bool,
}

/// Who said what in the chat, for the transcript in the lead card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptLine {
    pub at: DateTime<Utc>,
    /// "Клиент", "Бот", a manager's name: shown as is.
    pub author: String,
    pub text: String,
}

/// Everything needed to put a booking into the CRM.
#[derive(Debug, Clone)]
pub struct LeadRequest {
    pub booking: Booking,
    /// A contact already found or created; the CRM module searches by phone when absent.
    pub contact_id: Option<String>,
    /// Chat lines to log into the card as notes, after the lead exists.
    pub transcript: Vec<TranscriptLine>,
    /// The lead's title when it is not the booking's own "service — client" (an unfinished
    /// booking's "Незавершённая запись — service").
    pub title: Option<String>,
    /// The client gave no phone (an unfinished booking): the lead goes without a contact,
    /// none is searched for or created, and `booking.client_phone` names no one.
    pub without_contact: bool,
}

impl LeadRequest {
    /// A booking's own lead.
    pub fn for_booking(booking: Booking, contact_id: Option<String>) -> LeadRequest {
        LeadRequest {
            booking,
            contact_id,
            transcript: Vec::new(),
            title: None,
            without_contact: false,
        }
    }

    /// The title a lead of this request carries.
    pub fn title(&self) -> String {
        self.title.clone().unwrap_or_else(|| {
            format!(
                "{} — {}",
                self.booking.service_name, self.booking.client_name
            )
        })
    }
}

/// What the CRM account holds that zapis's settings name by id: its pipelines with their
/// stages, its lead fields, its sources. Shown on the console's setup page so nobody copies
/// ids out of the CRM's own screens by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrmCatalog {
    pub pipelines: Vec<CatalogPipeline>,
    pub fields: Vec<CatalogField>,
    /// Bitrix24's `SOURCE_ID` values; amoCRM has no such list.
    pub sources: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogPipeline {
    pub id: String,
    pub name: String,
    /// `(id, name)` in the CRM's order.
    pub stages: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogField {
    pub id: String,
    pub name: String,
    pub code: Option<String>,
    pub kind: String,
}

/// A lead as the CRM holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmLead {
    pub id: String,
    pub status_id: i64,
    pub pipeline_id: i64,
    pub price: Option<i64>,
    pub name: Option<String>,
}

/// The result of [`Crm::create_lead`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedLead {
    pub lead_id: String,
    pub contact: Option<ContactRef>,
    /// Ids of the transcript notes added.
    pub note_ids: Vec<String>,
}

/// The result of [`Crm::ensure_lead`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadOutcome {
    /// A lead for this booking was already there (an earlier attempt reached the CRM).
    Existing(CrmLead),
    Created(CreatedLead),
}

impl LeadOutcome {
    pub fn lead_id(&self) -> &str {
        match self {
            LeadOutcome::Existing(l) => &l.id,
            LeadOutcome::Created(c) => &c.lead_id,
        }
    }
}

/// Where a lead should go, in product terms; each CRM maps these to its stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// The configured "new booking" stage.
    New,
    /// The visit was cancelled: amoCRM's "lost" (143) with the configured loss reason.
    Cancelled,
    /// The client came: amoCRM's "won" (142).
    Done,
    /// A stage id from the CRM's own configuration.
    Custom {
        pipeline_id: Option<i64>,
        status_id: i64,
    },
}

/// A task for the manager responsible for the lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    pub lead_id: String,
    pub text: String,
    /// The visit: the task falls due the configured lead time before it.
    pub visit_at: DateTime<Utc>,
}

/// What the bot needs from a CRM. Dyn-compatible so the sync engine holds a `dyn Crm`.
///
/// Writes are not idempotent on the CRM side, so callers search before they create:
/// [`Crm::ensure_lead`] does exactly that with our booking id as the natural key.
#[async_trait]
pub trait Crm: Send + Sync {
    /// [`System::AmoCrm`], [`System::Bitrix24`]: the `system` of links and stored tokens.
    fn system(&self) -> System;

    /// Settles what the connector needs from the account before its first booking (amoCRM:
    /// the lead field holding our booking id, found or created). Safe to call again; the
    /// writes call it themselves when it has not run.
    async fn prepare(&self) -> Result<(), CrmError> {
        Ok(())
    }

    /// Finds the contact by normalised phone (then email), or creates it.
    async fn find_or_create_contact(&self, req: &ContactRequest) -> Result<ContactRef, CrmError>;

    /// The contact step of a booking: the contact its lead will be linked to. Found or
    /// created, except where the lead carries the client's data itself and links only a
    /// contact that already exists (Bitrix24's lead mode).
    async fn contact_for_lead(&self, req: &ContactRequest) -> Result<Option<ContactRef>, CrmError> {
        self.find_or_create_contact(req).await.map(Some)
    }

    /// Creates the lead for a booking (with its contact when needed) and logs the transcript.
    async fn create_lead(&self, req: &LeadRequest) -> Result<CreatedLead, CrmError>;

    /// The lead carrying our booking id, if an earlier attempt created one. Text, not a
    /// `BookingId`: the CRM's field holds a lead key where the lead is no booking's.
    async fn find_lead_by_booking(&self, booking_id: &str) -> Result<Option<CrmLead>, CrmError>;

    /// Adds notes (split and batched as the CRM needs); returns the note ids.
    async fn add_notes(
        &self,
        lead_id: &str,
        transcript: &[TranscriptLine],
    ) -> Result<Vec<String>, CrmError>;

    /// Adds the transcript unless the lead already carries it (a note starting with
    /// [`TRANSCRIPT_HEADER`]): the retry-safe way after a create whose notes failed.
    async fn ensure_transcript(
        &self,
        lead_id: &str,
        transcript: &[TranscriptLine],
    ) -> Result<Vec<String>, CrmError>;

    /// The notes step of a booking: the transcript, and whatever else this CRM keeps in notes
    /// about a booking (amoCRM: tracking values the account has no field for). `fresh` says
    /// the lead was created by this very attempt, so nothing can be there yet; otherwise what
    /// the lead already carries is not written again.
    async fn ensure_booking_notes(
        &self,
        lead_id: &str,
        booking: &Booking,
        transcript: &[TranscriptLine],
        fresh: bool,
    ) -> Result<Vec<String>, CrmError> {
        let _ = booking;
        if fresh {
            self.add_notes(lead_id, transcript).await
        } else {
            self.ensure_transcript(lead_id, transcript).await
        }
    }

    /// Adds one plain text note to the lead.
    async fn add_note(&self, lead_id: &str, text: &str) -> Result<String, CrmError>;

    /// Adds the note unless the lead already has one with the same first line: the
    /// retry-safe way for a note whose first line is unique to it. `None` when it was there.
    async fn ensure_note(&self, lead_id: &str, text: &str) -> Result<Option<String>, CrmError> {
        self.add_note(lead_id, text).await.map(Some)
    }

    /// Creates a task for the responsible manager; returns the task id.
    async fn create_task(&self, req: &TaskRequest) -> Result<String, CrmError>;

    /// The account's pipelines, stages, fields and sources with their ids (read-only). A CRM
    /// that cannot list them shows none.
    async fn catalog(&self) -> Result<CrmCatalog, CrmError> {
        Ok(CrmCatalog::default())
    }

    /// The task this request would create, if an earlier attempt already created it (same
    /// lead, same text): asked before creating again after an attempt whose outcome is
    /// unknown, so a lost answer never leaves the manager two tasks.
    async fn find_task(&self, req: &TaskRequest) -> Result<Option<String>, CrmError>;

    /// Moves the lead to a stage and, when given, leaves a note saying why.
    async fn move_lead(
        &self,
        lead_id: &str,
        stage: &Stage,
        note: Option<&str>,
    ) -> Result<(), CrmError>;

    /// The lead's current stage, or `None` if the CRM no longer has it.
    async fn get_lead(&self, lead_id: &str) -> Result<Option<CrmLead>, CrmError>;

    /// Of these leads (deals), the ones now in the configured "cancelled" stage, read in as
    /// few calls as the CRM allows. The periodic reconciliation asks this about the leads of
    /// upcoming bookings, since a webhook can be lost (Bitrix24 never re-sends one).
    async fn cancelled_among(&self, lead_ids: &[String]) -> Result<Vec<String>, CrmError>;

    /// Search-before-create: the safe way to push a booking after an unknown outcome.
    async fn ensure_lead(&self, req: &LeadRequest) -> Result<LeadOutcome, CrmError> {
        if let Some(existing) = self.find_lead_by_booking(&req.booking.id).await? {
            // An earlier attempt may have died between the lead and its notes.
            self.ensure_transcript(&existing.id, &req.transcript)
                .await?;
            return Ok(LeadOutcome::Existing(existing));
        }
        Ok(LeadOutcome::Created(self.create_lead(req).await?))
    }
}

/// Splits a PHP-style form key, as both CRMs' webhooks use them:
/// `leads[status][0][id]` → `["leads", "status", "0", "id"]`.
pub(crate) fn bracket_parts(key: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    parts.push(head);
    while let Some(stripped) = rest.strip_prefix('[') {
        match stripped.find(']') {
            Some(end) => {
                parts.push(&stripped[..end]);
                rest = &stripped[end + 1..];
            }
            None => break,
        }
    }
    parts
}

/// The HTTP client both CRM connectors use: the call timeout from their config, a short
/// connect timeout, and a User-Agent naming zapis.
pub(crate) fn http_client(timeout_secs: u64) -> Result<reqwest::Client, CrmError> {
    crate::connectors::http::client(Some(Duration::from_secs(timeout_secs))).map_err(CrmError::from)
}

/// Every transcript note starts with this, so a retry can tell whether it was logged.
pub const TRANSCRIPT_HEADER: &str = "Переписка с ботом";

/// Splits a transcript into note texts of at most `max_chars` characters each, never cutting
/// a line unless one line alone is longer than a note.
pub fn transcript_notes(transcript: &[TranscriptLine], max_chars: usize) -> Vec<String> {
    // Room for the "(2/3)" part header added below.
    const HEADER_ROOM: usize = 40;
    let budget = max_chars.saturating_sub(HEADER_ROOM).max(1);
    let mut chunks: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut current_len = 0usize;
    for line in transcript {
        let text = format!(
            "[{}] {}: {}",
            line.at.format("%d.%m.%Y %H:%M UTC"),
            line.author,
            line.text
        );
        for piece in split_chars(&text, budget) {
            let len = piece.chars().count();
            let extra = if current.is_empty() { len } else { len + 1 };
            if current_len + extra > budget && !current.is_empty() {
                chunks.push(std::mem::take(&mut current));
                current_len = 0;
            }
            if !current.is_empty() {
                current.push('\n');
                current_len += 1;
            }
            current.push_str(&piece);
            current_len += len;
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    let total = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            if total == 1 {
                format!("{TRANSCRIPT_HEADER}:\n{body}")
            } else {
                format!("{TRANSCRIPT_HEADER} ({}/{total}):\n{body}", i + 1)
            }
        })
        .collect()
}

fn split_chars(text: &str, max: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(max).map(|c| c.iter().collect()).collect()
}

/// For `map_err`: the CRM error's own retry decision, as the queue takes it.
pub fn delivery_error(e: CrmError) -> DeliveryError {
    e.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn line(text: &str) -> TranscriptLine {
        TranscriptLine {
            at: Utc.with_ymd_and_hms(2026, 5, 12, 9, 30, 0).unwrap(),
            author: "Клиент".into(),
            text: text.into(),
        }
    }

    #[test]
    fn short_transcript_is_one_note() {
        let notes = transcript_notes(&[line("Привет"), line("Хочу стрижку")], 1000);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("Привет\n[12.05.2026 09:30 UTC] Клиент: Хочу стрижку"));
    }

    #[test]
    fn long_transcript_splits_under_the_limit_and_keeps_everything() {
        let lines: Vec<_> = (0..200)
            .map(|i| line(&format!("сообщение {i} {}", "ы".repeat(50))))
            .collect();
        let notes = transcript_notes(&lines, 1000);
        assert!(notes.len() > 5);
        for n in &notes {
            assert!(n.chars().count() <= 1000, "{}", n.chars().count());
        }
        assert!(notes[0].starts_with(&format!("Переписка с ботом (1/{})", notes.len())));
        let joined = notes.join("\n");
        for i in 0..200 {
            assert!(joined.contains(&format!("сообщение {i} ")));
        }
    }

    #[test]
    fn one_huge_line_is_cut() {
        let notes = transcript_notes(&[line(&"я".repeat(5000))], 1000);
        assert!(notes.len() >= 5);
        assert!(notes.iter().all(|n| n.chars().count() <= 1000));
    }

    #[test]
    fn errors_carry_the_retry_decision() {
        let t = CrmError::from(Failure::from_status(
            &crate::connectors::failure::ByStatus,
            429,
            None,
            Some(Duration::from_secs(2)),
            "slow",
        ));
        assert!(t.is_transient() && !t.is_permanent());
        assert_eq!(t.retry_after(), Some(Duration::from_secs(2)));
        let p = CrmError::from(Failure::new(Kind::PaymentRequired, "pay").with_status(402));
        assert!(p.is_permanent() && p.is_alert_worthy());
        let v = CrmError::invalid(
            Failure::permanent("Request validation failed").with_status(400),
            vec![FieldError {
                request_id: Some("0".into()),
                code: "NotSupportedChoice".into(),
                path: "custom_fields_values.0.field_id".into(),
                detail: "The value you selected is not a valid choice.".into(),
            }],
        );
        assert!(v.to_string().contains("custom_fields_values.0.field_id"));
    }

    #[test]
    fn messages_and_the_queue_keep_what_the_crm_said() {
        let unpaid = CrmError::from(Failure::new(Kind::PaymentRequired, "Bitrix24 unpaid"));
        assert_eq!(
            unpaid.to_string(),
            "CRM account is not paid (HTTP 402): Bitrix24 unpaid"
        );
        assert_eq!(unpaid.status(), Some(402));
        assert_eq!(
            CrmError::transient("slow").to_string(),
            "temporary CRM failure: slow"
        );
        assert_eq!(
            CrmError::auth("refused").to_string(),
            "CRM authorisation failed: refused"
        );
        let detail = FieldError {
            request_id: None,
            code: "NotSupportedChoice".into(),
            path: "name".into(),
            detail: "bad".into(),
        };
        let v = CrmError::invalid(
            Failure::permanent("validation").with_status(400),
            vec![detail.clone()],
        );
        assert_eq!(
            v.to_string(),
            "CRM rejected the request (HTTP 400): validation [name: bad (NotSupportedChoice)]"
        );
        assert_eq!(
            DeliveryError::from(v),
            DeliveryError::Permanent {
                message: format!("validation: {detail:?}"),
                http_status: Some(400),
            }
        );
        assert!(matches!(
            CrmError::invalid(Failure::permanent("x"), Vec::new()),
            CrmError::Failed(_)
        ));
    }
}
