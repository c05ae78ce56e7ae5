//! The runtime between messengers and the dialog engine: loads a chat's state, runs the engine,
//! carries out its commands against the booking system and the store, saves the state, and
//! hands the replies back to the adapter that asked.
//!
//! `mod.rs` holds a turn (`Conversations::handle`) and the runtime's settings; `commands.rs`
//! carries out the engine's commands against the schedule and the store; `support.rs` routes
//! an admin's reply in the admin chat back to the client.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::Mutex;

use crate::booking::{BookRequest, BookingError, BookingSystem};
use crate::business::BusinessConfig;
use crate::clock::Clock;
use crate::dialog::{
    self, BookingDraft, Button, Command, Context, DialogState, FunnelStage, Input, Loaded, Reply,
};
use crate::domain::System;
use crate::domain::{Booking, BookingStatus, Channel, ChatRef, Source};
use crate::lifecycle::effects::{Operation, booking_job};
use crate::store::{AttemptTurn, FunnelStep, Store, StoreError, TurnEvent, TurnLine};
use crate::store::{confirm_booking_in, set_booking_status_in};
use crate::sync::{NewJob, enqueue_in};

mod commands;
mod support;
#[cfg(test)]
pub(crate) mod tests;

/// What a messenger adapter saw the user do, before any interpretation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// `/start` (Telegram) or `bot_started` (MAX), with the deep-link payload if any.
    Start {
        payload: Option<String>,
    },
    Text(String),
    /// A pressed inline button: its callback data, and its label as the message it was on
    /// showed it (`None` when the messenger did not send that message along, e.g. a deleted
    /// one).
    Button {
        data: String,
        label: Option<String>,
    },
    /// A phone number shared with the messenger's contact button.
    Contact {
        phone: String,
    },
}

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

impl ChatEvent {
    /// A press of the button with callback `data` whose label is not known.
    pub fn button(data: impl Into<String>) -> ChatEvent {
        ChatEvent::Button {
            data: data.into(),
            label: None,
        }
    }

    /// A press of the button with callback `data`, labelled `label` where it was pressed.
    pub fn press(data: impl Into<String>, label: impl Into<String>) -> ChatEvent {
        ChatEvent::Button {
            data: data.into(),
            label: Some(label.into()),
        }
    }

    /// A press of `button` as it was shown.
    pub fn pressing(button: &Button) -> ChatEvent {
        ChatEvent::press(button.data.clone(), button.label.clone())
    }
}

/// Whether presses in this messenger come without the label of the button pressed, so each
/// bot line keeps its buttons in the chat log to label the next press from. MAX's callback
/// carries the message without its keyboard; Telegram's carries the keyboard it was pressed
/// on (the label then costs no read and no write), and the console knows what it showed.
fn presses_come_unlabelled(channel: Channel) -> bool {
    matches!(channel, Channel::Max)
}

/// What the client did, as a person reading the CRM card would want it: typed text as is, a
/// pressed button by its label on the message it was pressed on or, when the messenger did
/// not send that along, among the buttons last shown.
fn input_line(event: &ChatEvent, last_buttons: Option<&str>, awaits_code: bool) -> TurnLine {
    let text = match event {
        // A confirmation code is a credential: it reaches the schedule and nothing else.
        ChatEvent::Text(_) if awaits_code => "[code]".to_string(),
        ChatEvent::Start { payload: Some(p) } => format!("/start {p}"),
        ChatEvent::Start { payload: None } => "/start".to_string(),
        ChatEvent::Text(t) => t.clone(),
        ChatEvent::Contact { phone } => phone.clone(),
        ChatEvent::Button {
            label: Some(label), ..
        } => format!("[{label}]"),
        ChatEvent::Button { data, label: None } => last_buttons
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

/// A bot line of the chat log, with its buttons as JSON when `keep_buttons`.
fn reply_line(reply: &Reply, keep_buttons: bool) -> TurnLine {
    let buttons: Vec<&Button> = reply.buttons.iter().flatten().collect();
    TurnLine {
        author: "bot",
        text: reply.text.clone(),
        buttons: (keep_buttons && !buttons.is_empty())
            .then(|| serde_json::to_string(&buttons).unwrap_or_default()),
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
    crm_system: Option<System>,
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
    pub fn with_crm(mut self, system: System) -> Conversations {
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
                matches!(event, ChatEvent::Button { label: None, .. }),
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
        let keep_buttons = presses_come_unlabelled(chat.channel);
        lines.extend(replies.iter().map(|r| reply_line(r, keep_buttons)));
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
}
