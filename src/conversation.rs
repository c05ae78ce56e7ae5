//! The runtime between messengers and the dialog engine: loads a chat's state, runs the engine,
//! carries out its commands against the booking system and the store, saves the state, and
//! hands the replies back to the adapter that asked.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::Mutex;

use crate::booking::{BookRequest, BookingError, BookingSystem};
use crate::business::BusinessConfig;
use crate::clock::Clock;
use crate::dialog::{
    self, BookingDraft, Button, Command, Context, DialogState, FunnelStage, Input, Loaded, Reply,
};
use crate::domain::{Booking, BookingStatus, ChatRef, Source};
use crate::lifecycle::effects::{Operation, booking_job};
use crate::store::{AttemptTurn, FunnelStep, Store, StoreError, TurnEvent, TurnLine};
use crate::store::{confirm_booking_in, set_booking_status_in};
use crate::sync::{NewJob, enqueue_in};

/// What a messenger adapter saw the user do, before any interpretation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// `/start` (Telegram) or `bot_started` (MAX), with the deep-link payload if any.
    Start {
        payload: Option<String>,
    },
    Text(String),
    /// Callback data of a pressed inline button.
    Button(String),
    /// A phone number shared with the messenger's contact button.
    Contact {
        phone: String,
    },
}

/// How long an admin's reply looks for the relay it answers before it is taken for talk.
const RELAY_RECORD_GRACE: std::time::Duration = std::time::Duration::from_secs(3);
const RELAY_RECORD_STEP: std::time::Duration = std::time::Duration::from_millis(150);

#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("dialog state of {chat} is unreadable: {source}")]
    State {
        chat: String,
        source: serde_json::Error,
    },
}

/// What the client did, as a person reading the CRM card would want it: typed text as is, a
/// pressed button by its label among those last shown.
fn input_line(event: &ChatEvent, last_buttons: Option<&str>, awaits_code: bool) -> TurnLine {
    let text = match event {
        // A confirmation code is a credential: it reaches the schedule and nothing else.
        ChatEvent::Text(_) if awaits_code => "[code]".to_string(),
        ChatEvent::Start { payload: Some(p) } => format!("/start {p}"),
        ChatEvent::Start { payload: None } => "/start".to_string(),
        ChatEvent::Text(t) => t.clone(),
        ChatEvent::Contact { phone } => phone.clone(),
        ChatEvent::Button(data) => last_buttons
            .and_then(|json| serde_json::from_str::<Vec<Button>>(json).ok())
            .and_then(|buttons| buttons.into_iter().find(|b| &b.data == data))
            .map(|b| format!("[{}]", b.label))
            .unwrap_or_else(|| "[…]".to_string()),
    };
    TurnLine {
        author: "client",
        text,
        buttons: None,
    }
}

fn reply_line(reply: &Reply) -> TurnLine {
    let buttons: Vec<&Button> = reply.buttons.iter().flatten().collect();
    TurnLine {
        author: "bot",
        text: reply.text.clone(),
        buttons: (!buttons.is_empty()).then(|| serde_json::to_string(&buttons).unwrap_or_default()),
    }
}

fn parse_state(key: &str, json: Option<&str>) -> DialogState {
    let Some(json) = json else {
        return DialogState::default();
    };
    serde_json::from_str(json).unwrap_or_else(|e| {
        // A state written by an older release must not lock the client out: start over.
        tracing::warn!(chat = %key, error = %e, "unreadable dialog state, starting afresh");
        DialogState::default()
    })
}

/// An engine that keeps asking for more work is a bug; this bounds the damage.
const MAX_COMMANDS_PER_INPUT: usize = 8;

pub struct Conversations {
    store: Store,
    booking: Arc<dyn BookingSystem>,
    business: BusinessConfig,
    clock: Arc<dyn Clock>,
    chat_locks: DashMap<String, Arc<Mutex<()>>>,
    /// The CRM that gets a lead for every booking, when one is configured.
    crm_system: Option<&'static str>,
    /// School mode: courses from config, groups from the school's CRM, applications instead
    /// of bookings.
    school: Option<SchoolMode>,
    /// Whether a confirmed booking also gets a counterparty and an invoice in 1C.
    accounting: bool,
    /// New bookings left in the contact step are recorded, for their CRM lead after this
    /// pause.
    unfinished: Option<std::time::Duration>,
    /// The business phone as clients read it (`+7 495 123-45-67`), formatted once.
    business_phone: Option<String>,
    /// `booking.change_cutoff`: how long before a visit the chat stops cancelling or moving it.
    change_cutoff: Option<chrono::Duration>,
    /// `[privacy]`: the personal-data consent asked before the phone.
    privacy: crate::business::PrivacyConfig,
    /// `[support]`: the admin chats clients' questions go to.
    support: Option<crate::support::SupportConfig>,
}

struct SchoolMode {
    config: crate::school::config::SchoolConfig,
    crm: Arc<dyn crate::school::SchoolCrm>,
}

impl Conversations {
    pub fn new(
        store: Store,
        booking: Arc<dyn BookingSystem>,
        business: BusinessConfig,
        clock: Arc<dyn Clock>,
    ) -> Conversations {
        let business_phone = business
            .phone
            .as_deref()
            .map(crate::normalize::display_phone);
        Conversations {
            business_phone,
            change_cutoff: None,
            privacy: crate::business::PrivacyConfig::default(),
            store,
            booking,
            business,
            clock,
            chat_locks: DashMap::new(),
            crm_system: None,
            school: None,
            accounting: false,
            unfinished: None,
            support: None,
        }
    }

    /// Questions the bot cannot answer go to these admin chats, and admins' replies there come
    /// back to the client.
    pub fn with_support(mut self, support: crate::support::SupportConfig) -> Conversations {
        self.support = Some(support);
        self
    }

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
        } = reply;
        if self.support_chat(channel) != Some(admin_chat) || answer.trim().is_empty() {
            return Ok(false);
        }
        let business = &self.business.id;
        // The relay's row is stored just after the messenger confirms the post, so a reply
        // that comes at once (or is read while that write waits for the database) may look
        // for it a moment too early: look again for a short while before calling it no
        // answer. Only replies in the admin chat ever wait, and nothing is sent for the others.
        let mut waited = std::time::Duration::ZERO;
        let key = loop {
            let found = self
                .store
                .support_relay_chat(
                    business,
                    channel.as_str(),
                    &admin_chat.to_string(),
                    replied_to,
                )
                .await?;
            match found {
                Some(key) => break key,
                None if waited < RELAY_RECORD_GRACE => {
                    tokio::time::sleep(RELAY_RECORD_STEP).await;
                    waited += RELAY_RECORD_STEP;
                }
                None => return Ok(false),
            }
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
        let job = crate::lifecycle::effects::notify_job(
            business,
            &chat,
            &format!("support:{}:{admin_chat}:{message_id}", channel.as_str()),
            reply.clone(),
        );
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

    /// The bot enrols into courses: services are the configured courses, masters the
    /// course's groups read from the school's CRM.
    pub fn with_school(
        mut self,
        config: crate::school::config::SchoolConfig,
        crm: Arc<dyn crate::school::SchoolCrm>,
    ) -> Conversations {
        self.school = Some(SchoolMode { config, crm });
        self
    }

    /// Visits closer than `cutoff` are no longer cancelled or moved in the chat: the client is
    /// asked to call.
    pub fn with_change_cutoff(mut self, cutoff: Option<std::time::Duration>) -> Conversations {
        // Validated at start to at most a week, so the conversion cannot overflow.
        self.change_cutoff = cutoff.and_then(|c| chrono::Duration::from_std(c).ok());
        self
    }

    /// Whether (and with which policy link) the client agrees to the processing of their
    /// personal data before giving their phone.
    pub fn with_privacy(mut self, privacy: crate::business::PrivacyConfig) -> Conversations {
        self.privacy = privacy;
        self
    }

    /// Every confirmed booking also queues the counterparty and invoice for 1C.
    pub fn with_accounting(mut self) -> Conversations {
        self.accounting = true;
        self
    }

    /// New bookings the client takes to the contact step are recorded with each turn there,
    /// so one left unconfirmed can become a CRM lead (`crate::unfinished`).
    pub fn with_unfinished(mut self, after: std::time::Duration) -> Conversations {
        self.unfinished = Some(after);
        self
    }

    /// The pause after which an unfinished booking becomes a lead, when they are followed.
    pub fn follows_unfinished(&self) -> Option<std::time::Duration> {
        self.unfinished
    }

    /// Every confirmed, cancelled or moved booking also queues a job for this CRM.
    pub fn with_crm(mut self, system: &'static str) -> Conversations {
        self.crm_system = Some(system);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn business(&self) -> &BusinessConfig {
        &self.business
    }

    /// Handles one user action in one chat and returns what to show. Actions of one chat are
    /// processed one at a time, so a double tap cannot interleave with itself.
    pub async fn handle(
        &self,
        chat: &ChatRef,
        user_lang: Option<&str>,
        event: ChatEvent,
    ) -> Result<Vec<Reply>, ConversationError> {
        let key = chat.key();
        let lock = self.chat_locks.entry(key.clone()).or_default().clone();
        let _guard = lock.lock().await;

        // One read before the engine runs and one transaction after it: the state, the input
        // and the replies of a turn are stored together or not at all.
        let start = self
            .store
            .load_turn(
                &self.business.id,
                &key,
                matches!(event, ChatEvent::Button(_)),
            )
            .await?;
        let mut state = parse_state(&key, start.state.as_deref());
        let stage_before = state.funnel_stage();
        let started = matches!(event, ChatEvent::Start { .. });
        let mut lines = vec![input_line(
            &event,
            start.last_buttons.as_deref(),
            state.awaits_code(),
        )];
        let ctx = Context {
            now: self.clock.now(),
            timezone: self.business.timezone,
            business_name: self.business.name.clone(),
            address: self.business.address.clone(),
            business_phone: self.business_phone.clone(),
            default_lang: self.business.locale,
            user_lang: user_lang.map(str::to_string),
            channel: chat.channel,
            school: self.school.is_some(),
            several_services: self.school.is_none() && self.booking.several_services(),
            texts: self.business.texts.clone(),
            change_cutoff: self.change_cutoff,
            consent: self.privacy.consent,
            policy_url: self.privacy.policy_url.as_ref().map(ToString::to_string),
            support: self.support.as_ref().map(|s| dialog::Support {
                // Checked when the config was read.
                hours: s.hours().ok().flatten(),
            }),
        };
        let mut input = Some(self.input_for(chat, event).await?);
        let mut queue: Vec<Command> = Vec::new();
        let mut replies = Vec::new();
        let mut executed = 0;
        let mut booked = false;
        while let Some(next) = input.take() {
            let (new_state, outcome) = dialog::step(state, next, &ctx);
            state = new_state;
            replies.extend(outcome.replies);
            queue.extend(outcome.commands);
            if !queue.is_empty() {
                if executed == MAX_COMMANDS_PER_INPUT {
                    tracing::error!(chat = %key, "dialog asked for too many commands; stopping");
                    break;
                }
                executed += 1;
                let command = queue.remove(0);
                let books = matches!(command, Command::Book(_));
                let loaded = self.execute(chat, command).await?;
                // A request the schedule holds (a code, an outage) is a booking made too.
                booked |= books
                    && matches!(
                        loaded,
                        Loaded::Booked(_) | Loaded::BookingPending(_) | Loaded::CodeRequired { .. }
                    );
                input = Some(Input::Loaded(loaded));
            }
        }
        lines.extend(replies.iter().map(reply_line));
        let json = serde_json::to_string(&state).map_err(|source| ConversationError::State {
            chat: key.clone(),
            source,
        })?;
        let step = if started {
            Some(FunnelStep::Start)
        } else if stage_before == FunnelStage::Choosing
            && state.funnel_stage() == FunnelStage::Contact
        {
            Some(FunnelStep::Contact)
        } else {
            None
        };
        // A chat whose state was lost (or that never sent /start) counts as a direct one.
        let direct;
        let source = match state.source() {
            Some(source) => source,
            None => {
                direct = Source::direct(chat.channel);
                &direct
            }
        };
        let event = step.map(|step| TurnEvent { step, source });
        let follows = self.unfinished.is_some();
        let draft = if follows && !booked {
            state
                .unfinished_draft(chat.channel)
                .and_then(|d| serde_json::to_string(&d).ok())
        } else {
            None
        };
        let attempt = match (&draft, follows && booked) {
            (_, true) => AttemptTurn::Booked,
            (Some(draft), false) if stage_before == FunnelStage::Contact => {
                AttemptTurn::Stay(draft)
            }
            (Some(draft), false) => AttemptTurn::Enter(draft),
            (None, false) => AttemptTurn::None,
        };
        self.store
            .save_turn_with(
                &self.business.id,
                &key,
                &lines,
                event,
                attempt,
                &json,
                self.clock.now(),
            )
            .await?;
        drop(_guard);
        // The chat's lock goes with its last waiter, so idle chats hold nothing.
        self.chat_locks
            .remove_if(&key, |_, lock| Arc::strong_count(lock) <= 2);
        Ok(replies)
    }

    /// Writes a booking's state change and the jobs it causes in one transaction.
    async fn commit_change(
        &self,
        booking_id: &str,
        change: Change<'_>,
        jobs: &[NewJob],
    ) -> Result<(), ConversationError> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await.map_err(StoreError::from)?;
        match change {
            Change::Confirmed { external_id } => {
                confirm_booking_in(&mut tx, booking_id, external_id, now).await?;
            }
            Change::Status(status) => {
                set_booking_status_in(&mut tx, booking_id, status, now).await?;
            }
            Change::None => {}
        }
        for job in jobs {
            enqueue_in(&mut tx, job, now).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Reports from the schedule about this booking wait while we write its change there
    /// ourselves, so the salon is not credited with the client's own move or cancel.
    async fn hold_change(&self, booking_id: &str) -> Result<(), ConversationError> {
        let until = self.clock.now() + crate::lifecycle::changes::CHANGE_IN_FLIGHT;
        self.store.hold_change(booking_id, until).await?;
        Ok(())
    }

    fn crm_job(&self, operation: Operation, booking_id: &str, by: Option<&str>) -> Option<NewJob> {
        self.crm_system.map(|system| {
            booking_job(
                &self.business.id,
                system,
                operation,
                booking_id,
                by,
                self.clock.now(),
            )
        })
    }

    async fn input_for(
        &self,
        chat: &ChatRef,
        event: ChatEvent,
    ) -> Result<Input, ConversationError> {
        Ok(match event {
            ChatEvent::Start { payload } => {
                let source = self.resolve_source(chat, payload).await?;
                crate::metrics::dialog_started(&source);
                Input::Start { source }
            }
            ChatEvent::Text(text) => Input::Text(text),
            ChatEvent::Button(data) => Input::Button(data),
            ChatEvent::Contact { phone } => Input::Contact { phone },
        })
    }

    /// A deep-link payload is kept verbatim; when it is one of our tracked-link tokens, the full
    /// UTM set stored under it comes along.
    async fn resolve_source(
        &self,
        chat: &ChatRef,
        payload: Option<String>,
    ) -> Result<Source, ConversationError> {
        let mut source = Source::direct(chat.channel);
        let Some(payload) = payload.filter(|p| !p.trim().is_empty()) else {
            return Ok(source);
        };
        if let Some(link) = self.store.tracked_link(&self.business.id, &payload).await? {
            source.link_name = Some(link.name);
            source.utm = link.utm;
        }
        source.payload = Some(payload);
        Ok(source)
    }

    async fn execute(&self, chat: &ChatRef, command: Command) -> Result<Loaded, ConversationError> {
        if let Some(school) = &self.school {
            match command {
                Command::LoadServices => return Ok(school_courses(&school.config)),
                Command::LoadMasters { service_id } => {
                    return Ok(self.school_groups(school, &service_id).await);
                }
                Command::Enrol(draft) => return self.enrol(school, draft).await,
                _ => {}
            }
        }
        let b = &self.booking;
        let loaded = match command {
            Command::LoadServices => b.services().await.map(Loaded::Services),
            Command::LoadMasters { service_id } => {
                b.masters(&service_id).await.map(Loaded::Masters)
            }
            Command::LoadDays {
                service_id,
                master_id,
                from,
                to,
            } => b
                .free_days(&service_id, master_id.as_deref(), from, to)
                .await
                .map(Loaded::Days),
            Command::LoadSlots {
                service_id,
                master_id,
                day,
            } => b
                .free_slots(&service_id, master_id.as_deref(), day)
                .await
                .map(Loaded::Slots),
            Command::Book(draft) => return self.book(chat, draft).await,
            Command::Enrol(_) => Err(BookingError::rejected(
                "applications are taken in school mode only",
            )),
            Command::LoadMyBookings { phone } => {
                let now = self.clock.now();
                let business = &self.business.id;
                let mut list = self
                    .store
                    .upcoming_bookings(business, chat, phone.as_ref(), now)
                    .await?;
                // The engine tells upcoming from past by time; past visits offer "book again".
                list.extend(
                    self.store
                        .past_visits(business, chat, phone.as_ref(), now, 5)
                        .await?,
                );
                Ok(Loaded::MyBookings(list))
            }
            Command::Cancel { booking_id } => return self.cancel(chat, &booking_id).await,
            Command::Reschedule { booking_id, slot } => {
                return self.reschedule(chat, &booking_id, slot).await;
            }
            Command::ConfirmVisit { booking_id } => {
                return self.confirm_visit(chat, &booking_id).await;
            }
            Command::SubmitCode { booking_id, code } => {
                return self.submit_code(chat, &booking_id, Some(&code)).await;
            }
            Command::ResendCode { booking_id } => {
                return self.submit_code(chat, &booking_id, None).await;
            }
            Command::CallAdmin { question } => {
                let now = self.clock.now();
                // The card in the CRM gets the question too, with the lead it needs.
                let note = self.crm_system.map(|system| {
                    let kind = if question.is_some() {
                        crate::support::NoteKind::Question
                    } else {
                        crate::support::NoteKind::Called
                    };
                    crate::support::note_job(
                        &self.business.id,
                        system,
                        chat,
                        kind,
                        question.clone(),
                        now,
                    )
                });
                let job = crate::support::question_job(&self.business.id, chat, question, now);
                let mut tx = self.store.begin().await.map_err(StoreError::from)?;
                enqueue_in(&mut tx, &job, now).await?;
                if let Some(note) = &note {
                    enqueue_in(&mut tx, note, now).await?;
                }
                tx.commit().await.map_err(StoreError::from)?;
                Ok(Loaded::AdminCalled)
            }
            Command::AbandonCode { booking_id } => {
                if let Some(booking) = self.owned_booking(chat, &booking_id).await?
                    && booking.status == BookingStatus::Requested
                {
                    self.booking.abandon_code(&booking.id).await;
                    self.store
                        .set_booking_status(&booking.id, BookingStatus::Failed, self.clock.now())
                        .await?;
                }
                Ok(Loaded::CodeAbandoned)
            }
        };
        Ok(loaded.unwrap_or_else(|e| failed(&e)))
    }

    /// A course's groups as AlfaCRM has them now, with their start dates; the trial lesson
    /// last when the course offers one.
    async fn school_groups(&self, school: &SchoolMode, course_key: &str) -> Loaded {
        let Some(course) = school.config.course(course_key) else {
            return Loaded::Failed {
                reason: format!("unknown course {course_key}"),
            };
        };
        let groups = match school.crm.groups().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read groups from the school CRM");
                return Loaded::Failed {
                    reason: e.to_string(),
                };
            }
        };
        let today = self
            .clock
            .now()
            .with_timezone(&self.business.timezone)
            .date_naive();
        let lang = self.business.locale;
        let mut list: Vec<crate::domain::Master> = course
            .alfacrm_group_ids
            .iter()
            .filter_map(|id| groups.iter().find(|g| g.id == *id))
            // A group that has ended takes no one.
            .filter(|g| g.e_date.is_none_or(|end| end >= today))
            .map(|g| crate::domain::Master {
                id: g.id.to_string(),
                name: g.name.clone(),
                specialization: g
                    .b_date
                    .filter(|d| *d > today)
                    .map(|d| {
                        self.business.texts.t_args(
                            lang,
                            "school-group-start",
                            &[(
                                "date",
                                crate::i18n::FluentValue::from(d.format("%d.%m.%Y").to_string()),
                            )],
                        )
                    })
                    .unwrap_or_default(),
            })
            .collect();
        if course.trial {
            list.push(crate::domain::Master {
                id: crate::dialog::TRIAL.into(),
                name: String::new(),
                specialization: String::new(),
            });
        }
        Loaded::Masters(list)
    }

    async fn enrol(
        &self,
        school: &SchoolMode,
        draft: crate::dialog::EnrolDraft,
    ) -> Result<Loaded, ConversationError> {
        let group_id = draft.group.as_ref().and_then(|g| g.id.parse::<i64>().ok());
        if let Some(consent) = &draft.consent {
            self.store
                .record_consent(
                    &self.business.id,
                    &draft.phone,
                    &draft.name,
                    consent,
                    self.clock.now(),
                )
                .await?;
        }
        let new = crate::school::applications::NewApplication {
            form: "bot".into(),
            name: draft.name,
            phone: draft.phone,
            email: None,
            course: Some(draft.course.id.clone()),
            group_id,
            trial: draft.trial,
            comment: None,
            source: draft.source,
            referrer: None,
        };
        let app = crate::school::applications::submit(
            &self.store,
            &self.business.id,
            new,
            school.config.alfacrm.is_some(),
            self.clock.now(),
        )
        .await?;
        tracing::info!(application = %app.id, phone = %app.phone.masked(), "application from the bot");
        Ok(Loaded::Enrolled {
            course: draft.course.name,
            group: draft.group.map(|g| g.name),
        })
    }

    async fn book(&self, chat: &ChatRef, draft: BookingDraft) -> Result<Loaded, ConversationError> {
        let now = self.clock.now();
        let master_name = match &draft.master {
            Some(m) if m.id == draft.slot.master_id => m.name.clone(),
            _ => {
                self.master_name(&draft.service.id, &draft.slot.master_id)
                    .await
            }
        };
        let booking = Booking {
            id: uuid::Uuid::new_v4().simple().to_string(),
            business_id: self.business.id.clone(),
            client_phone: draft.phone.clone(),
            client_name: draft.name.clone(),
            client_email: None,
            service_id: draft.service.id.clone(),
            service_name: draft.service.name.clone(),
            master_id: draft.slot.master_id.clone(),
            master_name,
            start: draft.slot.start,
            duration_min: draft.service.duration_min,
            price: draft.service.price_min,
            status: BookingStatus::Requested,
            source: draft.source.clone(),
            chat: Some(chat.clone()),
            external_id: None,
            created_at: now,
        };
        // The request is on record before the schedule is asked, so nothing is lost if the
        // process dies in between.
        self.store
            .insert_booking_with_comment(&booking, draft.comment.as_deref(), draft.consent.as_ref())
            .await?;
        let request = BookRequest {
            booking_id: booking.id.clone(),
            service_id: booking.service_id.clone(),
            master_id: booking.master_id.clone(),
            start: booking.start,
            duration_min: booking.duration_min,
            client_phone: booking.client_phone.clone(),
            client_name: booking.client_name.clone(),
            client_email: None,
            comment: crate::booking::record_comment(draft.comment.as_deref(), &booking.source),
        };
        match self.booking.book(&request).await {
            Ok(record) => self.confirmed(booking, record).await,
            Err(BookingError::CodeRequired) => {
                // The schedule holds the booking until the client types the code it sent.
                tracing::info!(booking = %booking.id, "the schedule asks the client for a code");
                Ok(Loaded::CodeRequired {
                    booking_id: booking.id,
                })
            }
            Err(BookingError::SlotTaken) => {
                self.store
                    .set_booking_status(&booking.id, BookingStatus::Failed, now)
                    .await?;
                Ok(Loaded::SlotTaken)
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(booking = %booking.id, error = %e, "schedule unreachable; booking queued");
                let job = booking_job(
                    &self.business.id,
                    self.booking.system(),
                    Operation::CompleteBooking,
                    &booking.id,
                    Some("client"),
                    now,
                );
                self.commit_change(&booking.id, Change::None, &[job])
                    .await?;
                Ok(Loaded::BookingPending(booking))
            }
            Err(e) => {
                self.store
                    .set_booking_status(&booking.id, BookingStatus::Failed, now)
                    .await?;
                Ok(failed(&e))
            }
        }
    }

    /// Completes (`code`) or asks again for the code of (`None`) a booking the schedule holds.
    async fn submit_code(
        &self,
        chat: &ChatRef,
        id: &str,
        code: Option<&str>,
    ) -> Result<Loaded, ConversationError> {
        let booking = match self.owned_booking(chat, id).await? {
            Some(b) if b.status == BookingStatus::Requested => b,
            _ => {
                return Ok(Loaded::Failed {
                    reason: format!("booking {id} does not wait for a code"),
                });
            }
        };
        let answer = match code {
            Some(code) => self.booking.confirm_code(&booking.id, code).await.map(Some),
            None => self.booking.resend_code(&booking.id).await,
        };
        match answer {
            Ok(Some(record)) => self.confirmed(booking, record).await,
            Ok(None) => Ok(Loaded::CodeResent),
            Err(BookingError::CodeWrong) => Ok(Loaded::CodeWrong),
            Err(e) if e.is_transient() => Ok(failed(&e)),
            Err(e) => {
                self.store
                    .set_booking_status(&booking.id, BookingStatus::Failed, self.clock.now())
                    .await?;
                Ok(match e {
                    BookingError::SlotTaken => Loaded::SlotTaken,
                    // The held booking cannot be completed online any more (it expired, or the
                    // schedule wants what a bot cannot give): the phone is the way left.
                    e => {
                        tracing::warn!(booking = %booking.id, error = %e, "code booking given up");
                        Loaded::BookingClosed
                    }
                })
            }
        }
    }

    /// The schedule confirmed the booking: its link, the CRM and accounting jobs, the client.
    async fn confirmed(
        &self,
        mut booking: Booking,
        record: crate::booking::Record,
    ) -> Result<Loaded, ConversationError> {
        let now = self.clock.now();
        let mut jobs: Vec<NewJob> = self
            .crm_job(Operation::BookingCreated, &booking.id, Some("client"))
            .into_iter()
            .collect();
        if self.accounting {
            jobs.push(crate::lifecycle::effects::invoice_job(
                &self.business.id,
                &booking.id,
                now,
            ));
        }
        self.commit_change(
            &booking.id,
            Change::Confirmed {
                external_id: &record.external_id,
            },
            &jobs,
        )
        .await?;
        self.store
            .put_link(
                &self.business.id,
                "booking",
                &booking.id,
                self.booking.system(),
                &record.external_id,
                now,
            )
            .await?;
        booking.status = BookingStatus::Booked;
        booking.external_id = Some(record.external_id);
        crate::booking::log_booked(&booking);
        Ok(Loaded::Booked(booking))
    }

    /// Only a booking made from this chat, or one under a phone this chat booked with, may be
    /// changed from it.
    async fn owned_booking(
        &self,
        chat: &ChatRef,
        id: &str,
    ) -> Result<Option<Booking>, ConversationError> {
        let Some(booking) = self.store.booking(&self.business.id, id).await? else {
            return Ok(None);
        };
        if booking.business_id != self.business.id {
            return Ok(None);
        }
        if booking.chat.as_ref() == Some(chat) {
            return Ok(Some(booking));
        }
        let mine = self
            .store
            .upcoming_bookings(&self.business.id, chat, None, self.clock.now())
            .await?;
        Ok(mine
            .iter()
            .any(|b| b.client_phone == booking.client_phone)
            .then_some(booking))
    }

    async fn cancel(&self, chat: &ChatRef, id: &str) -> Result<Loaded, ConversationError> {
        let Some(mut booking) = self.owned_booking(chat, id).await? else {
            return Ok(Loaded::Failed {
                reason: format!("booking {id} not found"),
            });
        };
        if let Some(external) = &booking.external_id {
            self.hold_change(&booking.id).await?;
            match self.booking.cancel(external).await {
                Ok(()) | Err(BookingError::NotFound(_)) => {}
                Err(e) => {
                    self.store.release_change(&booking.id).await?;
                    return Ok(failed(&e));
                }
            }
        }
        booking.status = BookingStatus::CancelledByClient;
        let jobs: Vec<NewJob> = self
            .crm_job(Operation::BookingCancelled, &booking.id, Some("client"))
            .into_iter()
            .collect();
        self.commit_change(&booking.id, Change::Status(booking.status), &jobs)
            .await?;
        self.store.release_change(&booking.id).await?;
        tracing::info!(booking = %booking.id, "cancelled by client");
        Ok(Loaded::Cancelled(booking))
    }

    async fn reschedule(
        &self,
        chat: &ChatRef,
        id: &str,
        slot: crate::domain::Slot,
    ) -> Result<Loaded, ConversationError> {
        let Some(mut booking) = self.owned_booking(chat, id).await? else {
            return Ok(Loaded::Failed {
                reason: format!("booking {id} not found"),
            });
        };
        let Some(external) = booking.external_id.clone() else {
            return Ok(Loaded::Failed {
                reason: "booking is not confirmed yet".into(),
            });
        };
        self.hold_change(&booking.id).await?;
        let moved = self.booking.reschedule(&external, &slot).await;
        if moved.is_err() {
            self.store.release_change(&booking.id).await?;
        }
        match moved {
            Ok(record) => {
                let master_name = if record.master_id == booking.master_id {
                    booking.master_name.clone()
                } else {
                    self.master_name(&booking.service_id, &record.master_id)
                        .await
                };
                self.store
                    .move_booking(
                        &booking.id,
                        &record.master_id,
                        &master_name,
                        record.start,
                        self.clock.now(),
                    )
                    .await?;
                booking.master_id = record.master_id;
                booking.master_name = master_name;
                booking.start = record.start;
                if let Some(job) =
                    self.crm_job(Operation::BookingRescheduled, &booking.id, Some("client"))
                {
                    self.commit_change(&booking.id, Change::None, &[job])
                        .await?;
                }
                self.store.release_change(&booking.id).await?;
                Ok(Loaded::Rescheduled(booking))
            }
            Err(BookingError::SlotTaken) => Ok(Loaded::SlotTaken),
            Err(e) => Ok(failed(&e)),
        }
    }

    /// "I'll come": the schedule's confirmation status where it has one, our store, and a note
    /// for the CRM. A second press changes nothing more.
    async fn confirm_visit(&self, chat: &ChatRef, id: &str) -> Result<Loaded, ConversationError> {
        let Some(booking) = self.owned_booking(chat, id).await? else {
            return Ok(Loaded::Failed {
                reason: format!("booking {id} not found"),
            });
        };
        if !booking.status.is_active() || booking.start <= self.clock.now() {
            return Ok(Loaded::Failed {
                reason: format!("booking {id} is no longer upcoming"),
            });
        }
        if self.store.visit_confirmed_at(&booking.id).await?.is_some() {
            return Ok(Loaded::VisitConfirmed(booking));
        }
        let now = self.clock.now();
        let mut jobs: Vec<NewJob> = self
            .crm_job(Operation::BookingConfirmed, &booking.id, Some("client"))
            .into_iter()
            .collect();
        // The schedule's confirmation status goes through the queue, so a schedule that is down
        // gets it when it is back.
        if booking.external_id.is_some() {
            jobs.push(booking_job(
                &self.business.id,
                self.booking.system(),
                Operation::BookingConfirmed,
                &booking.id,
                Some("client"),
                now,
            ));
        }
        let mut tx = self.store.begin().await.map_err(StoreError::from)?;
        crate::store::confirm_visit_in(&mut tx, &booking.id, now).await?;
        crate::store::record_event_in(
            &mut tx,
            &booking.business_id,
            &booking.id,
            "client",
            "confirmed",
            "I'll come (reminder)",
            now,
        )
        .await?;
        for job in &jobs {
            enqueue_in(&mut tx, job, now).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(booking = %booking.id, "visit confirmed by client");
        Ok(Loaded::VisitConfirmed(booking))
    }

    async fn master_name(&self, service_id: &str, master_id: &str) -> String {
        match self.booking.masters(service_id).await {
            Ok(masters) => masters
                .into_iter()
                .find(|m| m.id == master_id)
                .map(|m| m.name)
                .unwrap_or_else(|| master_id.to_string()),
            Err(_) => master_id.to_string(),
        }
    }
}

enum Change<'a> {
    Confirmed { external_id: &'a str },
    Status(BookingStatus),
    None,
}

fn failed(e: &BookingError) -> Loaded {
    if let BookingError::Closed(reason) = e {
        tracing::warn!(%reason, "online booking is closed; the client is told to call");
        return Loaded::BookingClosed;
    }
    tracing::warn!(error = %e, "booking system call failed");
    Loaded::Failed {
        reason: e.to_string(),
    }
}

/// The configured courses as the dialog's "services".
fn school_courses(config: &crate::school::config::SchoolConfig) -> Loaded {
    Loaded::Services(
        config
            .courses
            .iter()
            .map(|c| crate::domain::Service {
                id: c.key.clone(),
                name: c.title.clone(),
                category: String::new(),
                duration_min: 0,
                price_min: crate::domain::Money::default(),
                price_max: crate::domain::Money::default(),
                description: None,
            })
            .collect(),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Presses the first button of `shown` that `pick` accepts.
    pub(crate) async fn press(
        conv: &Conversations,
        chat: &ChatRef,
        shown: &[Reply],
        pick: impl Fn(&Button) -> bool,
    ) -> Vec<Reply> {
        let labels: Vec<&str> = shown
            .iter()
            .flat_map(|r| r.buttons.iter().flatten())
            .map(|b| b.label.as_str())
            .collect();
        let data = shown
            .iter()
            .flat_map(|r| r.buttons.iter().flatten())
            .find(|b| pick(b))
            .unwrap_or_else(|| panic!("no such button among {labels:?}"))
            .data
            .clone();
        conv.handle(chat, None, ChatEvent::Button(data))
            .await
            .expect("press")
    }

    /// The kind of a button (`d:` a day, `t:` a time), after the render counter.
    fn kind(b: &Button, prefix: &str) -> bool {
        b.data
            .split_once('|')
            .is_some_and(|(_, p)| p.starts_with(prefix))
    }

    /// From a fresh chat to the first free time of a women's haircut.
    pub(crate) async fn pick_a_time(
        conv: &Conversations,
        chat: &ChatRef,
        payload: Option<&str>,
    ) -> Vec<Reply> {
        let payload = payload.map(str::to_string);
        let shown = conv
            .handle(chat, None, ChatEvent::Start { payload })
            .await
            .expect("start");
        let shown = press(conv, chat, &shown, |b| b.label.contains("Записаться")).await;
        let shown = press(conv, chat, &shown, |b| b.label.contains("Женская стрижка")).await;
        let shown = press(conv, chat, &shown, |b| b.label.contains("Любой мастер")).await;
        let shown = press(conv, chat, &shown, |b| kind(b, "d:")).await;
        press(conv, chat, &shown, |b| kind(b, "t:")).await
    }

    /// Chats holding a turn lock now: none once every turn is over.
    pub(crate) fn locked_chats(conv: &Conversations) -> usize {
        conv.chat_locks.len()
    }
}
