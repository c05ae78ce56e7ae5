//! The CRM side of a booking's story, run by the sync engine: contact, lead, transcript and task
//! when a booking is confirmed; a stage move when it is cancelled; a note when it moves.
//! Every step searches before it creates, so a retry after an unknown outcome adds nothing twice.

use crate::domain::BusinessId;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::crm::{
    ContactRequest, Crm, LeadRequest, Stage, TaskRequest, TranscriptLine, delivery_error,
};
use crate::domain::{Booking, BookingStatus};
use crate::i18n::{FluentValue, Lang, Texts};
use crate::lifecycle::effects::{Operation, load_booking_job};
use crate::normalize::Phone;
use crate::support::{SUPPORT_NOTE, SupportNoteJob, question_lead_key};
use crate::sync::{Delivered, DeliveryError, Job, JobContext, JobHandler};
use crate::unfinished::{UNFINISHED_BOOKING, UnfinishedDraft, UnfinishedJob, lead_key};

/// How far back the chat is read for the transcript of a booking.
const TRANSCRIPT_WINDOW: Duration = Duration::hours(6);

pub struct CrmJobs {
    crm: Arc<dyn Crm>,
    /// Language of the notes and tasks managers read.
    lang: Lang,
    texts: Texts,
    timezone: chrono_tz::Tz,
}

impl CrmJobs {
    pub fn new(crm: Arc<dyn Crm>, lang: Lang, timezone: chrono_tz::Tz) -> CrmJobs {
        CrmJobs {
            crm,
            lang,
            texts: Texts::default(),
            timezone,
        }
    }

    /// The business's words for notes and tasks (built-in salon words otherwise).
    pub fn with_texts(mut self, texts: Texts) -> CrmJobs {
        self.texts = texts;
        self
    }

    fn when(&self, booking: &Booking) -> String {
        booking
            .start
            .with_timezone(&self.timezone)
            .format("%d.%m.%Y %H:%M")
            .to_string()
    }

    async fn transcript(
        &self,
        booking: &Booking,
        ctx: &JobContext<'_>,
    ) -> Result<Vec<TranscriptLine>, DeliveryError> {
        let Some(chat) = &booking.chat else {
            return Ok(Vec::new());
        };
        self.chat_transcript(
            &booking.business_id,
            &chat.key(),
            booking.created_at - TRANSCRIPT_WINDOW,
            booking.created_at + Duration::minutes(5),
            ctx,
        )
        .await
    }

    async fn chat_transcript(
        &self,
        business_id: &BusinessId,
        chat_key: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        ctx: &JobContext<'_>,
    ) -> Result<Vec<TranscriptLine>, DeliveryError> {
        let lines = ctx
            .store
            .chat_lines(business_id, chat_key, from, to)
            .await
            .map_err(store_error)?;
        Ok(lines
            .into_iter()
            .map(|l| TranscriptLine {
                at: l.at,
                author: self.texts.t(
                    self.lang,
                    if l.author == "client" {
                        "crm-author-client"
                    } else {
                        "crm-author-bot"
                    },
                ),
                text: l.text,
            })
            .collect())
    }

    async fn lead_id(
        &self,
        booking: &Booking,
        ctx: &JobContext<'_>,
    ) -> Result<String, DeliveryError> {
        let linked = ctx
            .store
            .external_id(
                &booking.business_id,
                "booking",
                &booking.id,
                self.crm.system(),
            )
            .await
            .map_err(store_error)?;
        if let Some(id) = linked {
            return Ok(id);
        }
        match self
            .crm
            .find_lead_by_booking(&booking.id)
            .await
            .map_err(delivery_error)?
        {
            Some(lead) => Ok(lead.id),
            None => Err(DeliveryError::Permanent {
                message: format!(
                    "no lead in {} for booking {}",
                    self.crm.system(),
                    booking.id
                ),
                http_status: None,
            }),
        }
    }

    async fn link(
        &self,
        booking: &Booking,
        entity: &str,
        ctx: &JobContext<'_>,
    ) -> Result<Option<String>, DeliveryError> {
        ctx.store
            .external_id(&booking.business_id, entity, &booking.id, self.crm.system())
            .await
            .map_err(store_error)
    }

    async fn put_link(
        &self,
        booking: &Booking,
        entity: &str,
        external_id: &str,
        ctx: &JobContext<'_>,
    ) -> Result<(), DeliveryError> {
        ctx.store
            .put_link(
                &booking.business_id,
                entity,
                &booking.id,
                self.crm.system(),
                external_id,
                ctx.now,
            )
            .await
            .map_err(store_error)
    }

    /// The lead of `req` and then its notes, each step recorded in our store under the
    /// booking's id (`entity`, `{entity}_transcript`) the moment the CRM confirms it: our own
    /// link first, then the CRM's search by the booking id the lead carries, then a new lead.
    /// Returns the lead and whether this very call created it.
    async fn lead_with_notes(
        &self,
        mut req: LeadRequest,
        transcript: &[TranscriptLine],
        entity: &str,
        ctx: &JobContext<'_>,
    ) -> Result<(String, bool), DeliveryError> {
        let booking = req.booking.clone();
        let (lead_id, fresh) = match self.link(&booking, entity, ctx).await? {
            Some(id) => (id, false),
            None => {
                let found = self
                    .crm
                    .find_lead_by_booking(&booking.id)
                    .await
                    .map_err(delivery_error)?;
                let (id, fresh) = match found {
                    Some(lead) => (lead.id, false),
                    None => {
                        if !req.without_contact && req.contact_id.is_none() {
                            req.contact_id = self
                                .crm
                                .contact_for_lead(&ContactRequest::for_booking(&booking))
                                .await
                                .map_err(delivery_error)?
                                .map(|c| c.id);
                        }
                        // Notes are a step of their own: a failed note must not cost the
                        // new lead's id.
                        req.transcript.clear();
                        let created = self.crm.create_lead(&req).await.map_err(delivery_error)?;
                        (created.lead_id, true)
                    }
                };
                self.put_link(&booking, entity, &id, ctx).await?;
                (id, fresh)
            }
        };
        let notes = format!("{entity}_transcript");
        if self.link(&booking, &notes, ctx).await?.is_none() {
            self.crm
                .ensure_booking_notes(&lead_id, &booking, transcript, fresh)
                .await
                .map_err(delivery_error)?;
            // The lead's id stands for "its notes are written": unique per booking, as the
            // links table wants.
            self.put_link(&booking, &notes, &lead_id, ctx).await?;
        }
        Ok((lead_id, fresh))
    }

    /// A booking into the CRM in four steps — contact, lead, transcript, task — each recorded
    /// in our store the moment the CRM confirms it, so a retry after any single failure starts
    /// from what is already done and searches only for what it cannot know (a write whose
    /// answer was lost).
    async fn created(
        &self,
        booking: &Booking,
        ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let mut transcript = self.transcript(booking, ctx).await?;
        // The client's comment to the visit leads the notes, apart from the chat around it.
        if let Some(comment) = ctx
            .store
            .booking_comment(&booking.id)
            .await
            .map_err(store_error)?
        {
            transcript.insert(
                0,
                TranscriptLine {
                    at: booking.created_at,
                    author: self.texts.t(self.lang, "crm-author-comment"),
                    text: comment,
                },
            );
        }
        let (lead_id, fresh) = self
            .lead_with_notes(
                LeadRequest::for_booking(booking.clone(), None),
                &transcript,
                "booking",
                ctx,
            )
            .await?;
        if self.link(booking, "booking_task", ctx).await?.is_none() {
            let text = self.texts.t_args(
                self.lang,
                "crm-task-confirm",
                &[
                    ("service", FluentValue::from(booking.service_name.clone())),
                    ("when", FluentValue::from(self.when(booking))),
                    ("name", FluentValue::from(booking.client_name.clone())),
                    (
                        "phone",
                        FluentValue::from(booking.client_phone.as_str().to_string()),
                    ),
                ],
            );
            let task = TaskRequest {
                lead_id: lead_id.clone(),
                text,
                visit_at: booking.start,
            };
            // A lead from an earlier attempt may already have its task, whose answer was lost.
            let existing = if !fresh {
                self.crm.find_task(&task).await.map_err(delivery_error)?
            } else {
                None
            };
            let task_id = match existing {
                Some(id) => id,
                None => self.crm.create_task(&task).await.map_err(delivery_error)?,
            };
            self.put_link(booking, "booking_task", &task_id, ctx)
                .await?;
        }
        Ok(Delivered::linked("booking", &booking.id, &lead_id))
    }
}

impl CrmJobs {
    /// A new booking the client left in its contact step, as a lead of its own: found or
    /// created like a booking's (its key in the booking id field), with a contact only when
    /// the client gave a phone, and the chat as its notes headed by what they had chosen.
    async fn unfinished(
        &self,
        job: &Job,
        ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let payload: UnfinishedJob = serde_json::from_value(job.payload.clone())
            .map_err(|e| DeliveryError::permanent(format!("unreadable job payload: {e}")))?;
        let started_at = Utc
            .timestamp_millis_opt(payload.started_at)
            .single()
            .ok_or_else(|| DeliveryError::permanent("job with an impossible attempt time"))?;
        let Some(attempt) = ctx
            .store
            .unfinished_attempt(&job.business_id, &payload.chat_key, started_at)
            .await
            .map_err(store_error)?
        else {
            // Erased at the client's request, or past its retention: nothing is left to send.
            return Ok(Delivered::done());
        };
        let draft: UnfinishedDraft = serde_json::from_str(&attempt.draft)
            .map_err(|e| DeliveryError::permanent(format!("unreadable unfinished booking: {e}")))?;
        let key = lead_key(&job.business_id, &attempt.chat_key, started_at);
        let start = draft.start.unwrap_or(attempt.last_at);
        let dash = || "—".to_string();
        let summary = self.texts.t_args(
            self.lang,
            "crm-note-unfinished",
            &[
                ("service", FluentValue::from(draft.service.clone())),
                (
                    "master",
                    FluentValue::from(draft.master.clone().unwrap_or_else(dash)),
                ),
                (
                    "when",
                    FluentValue::from(
                        draft
                            .start
                            .map(|s| {
                                s.with_timezone(&self.timezone)
                                    .format("%d.%m.%Y %H:%M")
                                    .to_string()
                            })
                            .unwrap_or_else(dash),
                    ),
                ),
                (
                    "phone",
                    FluentValue::from(
                        draft
                            .phone
                            .as_ref()
                            .map(|p| p.formatted())
                            .unwrap_or_else(dash),
                    ),
                ),
                (
                    "name",
                    FluentValue::from(draft.name.clone().unwrap_or_else(dash)),
                ),
                ("chat", FluentValue::from(attempt.chat_key.clone())),
            ],
        );
        let mut transcript = self
            .chat_transcript(
                &job.business_id,
                &attempt.chat_key,
                attempt.started_at - TRANSCRIPT_WINDOW,
                attempt.last_at + Duration::minutes(5),
                ctx,
            )
            .await?;
        transcript.insert(
            0,
            TranscriptLine {
                at: attempt.last_at,
                author: self.texts.t(self.lang, "crm-author-unfinished"),
                text: summary,
            },
        );
        let without_contact = draft.phone.is_none();
        // The lead stands in for a booking that never was one: its key takes the booking id's
        // place, as the CRM finds a booking's lead by that id.
        let booking = Booking {
            id: lead_as_booking_id(&key)?,
            business_id: job.business_id.clone(),
            client_phone: draft.phone.clone().unwrap_or_else(Phone::erased),
            client_name: draft.name.clone().unwrap_or_default(),
            client_email: None,
            service_id: draft.service_id.clone(),
            service_name: draft.service.clone(),
            master_id: draft.master_id.clone().unwrap_or_default(),
            master_name: draft.master.clone().unwrap_or_default(),
            start,
            duration_min: draft.duration_min,
            price: draft.price,
            status: BookingStatus::Requested,
            source: draft.source.clone(),
            chat: None,
            external_id: None,
            created_at: attempt.started_at,
        };
        let title = self.texts.t_args(
            self.lang,
            "crm-lead-unfinished",
            &[("service", FluentValue::from(draft.service.clone()))],
        );
        let req = LeadRequest {
            title: Some(title),
            without_contact,
            ..LeadRequest::for_booking(booking, None)
        };
        let (lead_id, _) = self
            .lead_with_notes(req, &transcript, "unfinished", ctx)
            .await?;
        tracing::info!(lead_id = %lead_id, chat = %attempt.chat_key, "unfinished booking delivered as a lead");
        Ok(Delivered::linked("unfinished", &key, &lead_id))
    }
}

impl CrmJobs {
    /// One message of a question's exchange with the admins, as a note in the client's card:
    /// the lead of their booking still ahead when they have one, else the chat's own question
    /// lead, found or created once with the source and the chat so far. The note's first line
    /// names the message and its second, so a retry after a lost answer does not add it twice.
    async fn support_note(
        &self,
        job: &Job,
        ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let note: SupportNoteJob = serde_json::from_value(job.payload.clone())
            .map_err(|e| DeliveryError::permanent(format!("unreadable job payload: {e}")))?;
        let state = ctx
            .store
            .load_dialog(&job.business_id, &note.chat_key)
            .await
            .map_err(store_error)?
            .and_then(|json| serde_json::from_str::<crate::dialog::DialogState>(&json).ok())
            .unwrap_or_default();
        let phone = state.phone().filter(|p| !p.is_erased()).cloned();
        let mut lead_id = None;
        if let Some(phone) = &phone
            && let Some(booking) = ctx
                .store
                .latest_chat_booking_of(&job.business_id, phone)
                .await
                .map_err(store_error)?
            && booking.status.is_active()
            && booking.start > note.at - Duration::days(1)
        {
            lead_id = self.link(&booking, "booking", ctx).await?;
        }
        let lead_id = match lead_id {
            Some(id) => id,
            None => self.question_lead(job, &note, &state, phone, ctx).await?,
        };
        let head = format!(
            "{} ({})",
            self.texts.t(self.lang, note.kind.head_id()),
            note.at
                .with_timezone(&self.timezone)
                .format("%d.%m.%Y %H:%M:%S %Z")
        );
        let text = match &note.text {
            Some(body) => format!("{head}:\n{body}"),
            None => head,
        };
        self.crm
            .ensure_note(&lead_id, &text)
            .await
            .map_err(delivery_error)?;
        tracing::info!(lead_id = %lead_id, chat = %note.chat_key, "support exchange logged into the CRM card");
        Ok(Delivered::done())
    }

    /// The chat's question lead, found or created like an unfinished booking's: with a contact
    /// only when the client gave a phone, the source they came from and the chat as its notes.
    async fn question_lead(
        &self,
        job: &Job,
        note: &SupportNoteJob,
        state: &crate::dialog::DialogState,
        phone: Option<Phone>,
        ctx: &JobContext<'_>,
    ) -> Result<String, DeliveryError> {
        let key = question_lead_key(&job.business_id, &note.chat_key);
        let name = state.name().map(str::to_string);
        let channel = crate::domain::ChatRef::from_key(&note.chat_key)
            .map_or(crate::domain::Channel::Telegram, |c| c.channel);
        let source = state
            .source()
            .cloned()
            .unwrap_or_else(|| crate::domain::Source::direct(channel));
        let transcript = self
            .chat_transcript(
                &job.business_id,
                &note.chat_key,
                note.at - TRANSCRIPT_WINDOW,
                note.at,
                ctx,
            )
            .await?;
        let question = self.texts.t(self.lang, "crm-lead-question-service");
        let booking = Booking {
            id: lead_as_booking_id(&key)?,
            business_id: job.business_id.clone(),
            client_phone: phone.clone().unwrap_or_else(Phone::erased),
            client_name: name.clone().unwrap_or_default(),
            client_email: None,
            service_id: String::new(),
            service_name: question,
            master_id: String::new(),
            master_name: String::new(),
            start: note.at,
            duration_min: 0,
            price: crate::domain::Money::default(),
            status: BookingStatus::Requested,
            source,
            chat: None,
            external_id: None,
            created_at: note.at,
        };
        let title = self.texts.t_args(
            self.lang,
            "crm-lead-question",
            &[(
                "name",
                FluentValue::from(name.unwrap_or_else(|| match channel {
                    crate::domain::Channel::Max => "MAX".to_string(),
                    crate::domain::Channel::Telegram => "Telegram".to_string(),
                    other => other.as_str().to_string(),
                })),
            )],
        );
        let req = LeadRequest {
            title: Some(title),
            without_contact: phone.is_none(),
            ..LeadRequest::for_booking(booking, None)
        };
        let (lead_id, _) = self
            .lead_with_notes(req, &transcript, "question", ctx)
            .await?;
        Ok(lead_id)
    }
}

#[async_trait]
impl JobHandler for CrmJobs {
    async fn handle(&self, job: &Job, ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        if job.operation == UNFINISHED_BOOKING {
            return self.unfinished(job, ctx).await;
        }
        if job.operation == SUPPORT_NOTE {
            return self.support_note(job, ctx).await;
        }
        let (payload, booking) = load_booking_job(job, ctx.store).await?;
        let by = self.texts.t(
            self.lang,
            match payload.by.as_deref() {
                Some("business") => "crm-by-business",
                Some("crm") => "crm-by-crm",
                _ => "crm-by-client",
            },
        );
        let Some(operation) = Operation::of(job) else {
            return Err(self.no_operation(job));
        };
        match operation {
            Operation::BookingCreated => self.created(&booking, ctx).await,
            Operation::BookingCancelled => {
                let lead = self.lead_id(&booking, ctx).await?;
                let note = self.texts.t_args(
                    self.lang,
                    "crm-note-cancelled",
                    &[
                        ("by", FluentValue::from(by)),
                        ("when", FluentValue::from(self.when(&booking))),
                    ],
                );
                self.crm
                    .move_lead(&lead, &Stage::Cancelled, Some(&note))
                    .await
                    .map_err(delivery_error)?;
                Ok(Delivered::done())
            }
            Operation::BookingRescheduled => {
                let lead = self.lead_id(&booking, ctx).await?;
                let note = self.texts.t_args(
                    self.lang,
                    "crm-note-rescheduled",
                    &[
                        ("by", FluentValue::from(by)),
                        ("when", FluentValue::from(self.when(&booking))),
                        ("master", FluentValue::from(booking.master_name.clone())),
                    ],
                );
                self.crm
                    .add_note(&lead, &note)
                    .await
                    .map_err(delivery_error)?;
                Ok(Delivered::done())
            }
            Operation::BookingConfirmed | Operation::BookingNoShow => {
                let lead = self.lead_id(&booking, ctx).await?;
                let key = if operation == Operation::BookingConfirmed {
                    "crm-note-confirmed"
                } else {
                    "crm-note-no-show"
                };
                let note = self.texts.t_args(
                    self.lang,
                    key,
                    &[
                        ("by", FluentValue::from(by)),
                        ("when", FluentValue::from(self.when(&booking))),
                    ],
                );
                self.crm
                    .add_note(&lead, &note)
                    .await
                    .map_err(delivery_error)?;
                Ok(Delivered::done())
            }
            Operation::BookingVisited => {
                let lead = self.lead_id(&booking, ctx).await?;
                let note = self.texts.t_args(
                    self.lang,
                    "crm-note-visited",
                    &[
                        ("by", FluentValue::from(by)),
                        ("when", FluentValue::from(self.when(&booking))),
                    ],
                );
                self.crm
                    .move_lead(&lead, &Stage::Done, Some(&note))
                    .await
                    .map_err(delivery_error)?;
                Ok(Delivered::done())
            }
            Operation::CompleteBooking
            | Operation::Notify
            | Operation::OnecInvoice
            | Operation::OnecSales => Err(self.no_operation(job)),
        }
    }
}

impl CrmJobs {
    fn no_operation(&self, job: &Job) -> DeliveryError {
        DeliveryError::Permanent {
            message: format!("{} has no operation {:?}", self.crm.system(), job.operation),
            http_status: None,
        }
    }
}

fn store_error(e: crate::store::StoreError) -> DeliveryError {
    DeliveryError::Transient {
        message: format!("store: {e}"),
        retry_after: None,
        http_status: None,
    }
}

/// A lead key where the CRM operations expect a booking id. Keys are made by
/// [`crate::domain::lead_key_of`] (32 characters), so one that does not fit is a bug.
fn lead_as_booking_id(key: &str) -> Result<crate::domain::BookingId, DeliveryError> {
    crate::domain::BookingId::parse(key)
        .map_err(|e| DeliveryError::permanent(format!("lead key: {e}")))
}
