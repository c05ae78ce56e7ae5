//! The persisted state of one conversation.
//!
//! It is written as JSON after every step, so it holds only what cannot be re-loaded: the
//! choices made so far and where the user is. Lists shown on screen (services, days, slots,
//! bookings) are loaded again when needed; buttons carry the ids they stand for.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{BookingId, Consent, Master, Service, Slot, Source};
use crate::i18n::Lang;
use crate::normalize::Phone;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DialogState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) lang: Option<Lang>,
    /// Render counter, the prefix of every button's data: a press carrying another number
    /// comes from an older message.
    #[serde(default)]
    pub(super) v: u32,
    /// The input that started this chain was a button press, so the first reply replaces the
    /// message it was pressed in. Persisted because the reply may come only after a command.
    #[serde(default, skip_serializing_if = "is_false")]
    pub(super) edit: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) source: Option<Source>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "stored_phone"
    )]
    pub(super) phone: Option<Phone>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<String>,
    #[serde(default, skip_serializing_if = "At::is_menu")]
    pub(super) at: At,
    /// A remark to put above the next screen rendered (a hint, an apology).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) note: Option<Note>,
    /// A new booking being put together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) flow: Option<Flow>,
    /// An existing booking being cancelled or moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) mv: Option<Moving>,
    /// Weeks after the current one shown on the day screen.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) week: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) day: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) slot: Option<Slot>,
    /// "Book again": the master to pick once the service's masters are loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) again: Option<String>,
    /// The client's comment to the visit being booked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) comment: Option<String>,
    /// The client's agreement to the personal-data policy. Kept across bookings, so it is asked
    /// once per chat, and again only when the text agreed to has changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) consent: Option<Consent>,
    /// The booking being put together is for someone else (a child, a relative): their name,
    /// and their phone when given. The client's own name and phone stay as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) guest: Option<Guest>,
}

/// The person a booking is made for when it is not the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Guest {
    pub name: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "stored_phone"
    )]
    pub phone: Option<Phone>,
}

/// A phone of the persisted state: written by the engine in E.164, so it is not parsed again
/// on every step ([`Phone::from_stored`]).
fn stored_phone<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Phone>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| Phone::from_stored(s).map_err(serde::de::Error::custom))
        .transpose()
}

impl DialogState {
    /// The language this conversation is held in, once known.
    pub fn lang(&self) -> Option<Lang> {
        self.lang
    }
    /// The client's phone, once given.
    pub fn phone(&self) -> Option<&Phone> {
        self.phone.as_ref()
    }
    /// The client's name, once given.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// The client's agreement to the personal-data policy, once given.
    pub fn consent(&self) -> Option<&Consent> {
        self.consent.as_ref()
    }
    /// Where the client came from, once known.
    pub fn source(&self) -> Option<&Source> {
        self.source.as_ref()
    }
    /// The next text is a confirmation code: the runtime must not write it to any log.
    pub fn awaits_code(&self) -> bool {
        matches!(self.at, At::Code(_) | At::CodeCheck(_))
    }
    /// Where the client stands in putting a new booking together, for the marketer's funnel:
    /// a turn that goes from [`FunnelStage::Choosing`] to [`FunnelStage::Contact`] is the
    /// client picking a time (or a group) and being asked for their contacts. The phone step
    /// is skipped when the phone is known, so the name and the confirmation count as well.
    pub fn funnel_stage(&self) -> FunnelStage {
        match self.at {
            // Moving a booking passes through the confirmation too, but it is no new client.
            // The consent asked before the phone is the first screen of the contact step.
            At::Consent(ConsentFor::Booking)
            | At::Phone
            | At::Name
            | At::Confirm
            | At::GuestName
            | At::GuestPhone
                if self.mv.is_none() =>
            {
                FunnelStage::Contact
            }
            At::Menu | At::Services { .. } | At::Masters | At::Days | At::Times => {
                FunnelStage::Choosing
            }
            _ => FunnelStage::Other,
        }
    }
}

impl DialogState {
    /// The new booking being put together while the client is in its contact step: what a
    /// lead made of it holds if they leave there (`crate::unfinished`). `channel` stands for
    /// the source when the chat has none on record.
    pub fn unfinished_draft(
        &self,
        channel: crate::domain::Channel,
    ) -> Option<crate::unfinished::UnfinishedDraft> {
        if self.funnel_stage() != FunnelStage::Contact {
            return None;
        }
        let flow = self.flow.as_ref()?;
        let master_id = self
            .slot
            .as_ref()
            .map(|s| s.master_id.clone())
            .or_else(|| flow.master.clone());
        let master = master_id
            .as_ref()
            .and_then(|id| flow.masters.iter().find(|m| &m.id == id))
            .map(|m| m.name.clone());
        Some(crate::unfinished::UnfinishedDraft {
            service_id: flow.svc.id.clone(),
            service: flow.svc.name.clone(),
            price: flow.svc.price_min,
            duration_min: flow.svc.duration_min,
            master_id,
            master,
            start: self.slot.as_ref().map(|s| s.start),
            phone: self.phone.clone(),
            name: self.name.clone(),
            source: self
                .source
                .clone()
                .unwrap_or_else(|| Source::direct(channel)),
        })
    }
}

/// See [`DialogState::funnel_stage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunnelStage {
    /// On the menu or choosing a service, master, day or time.
    Choosing,
    /// Giving a phone or a name, or confirming, for a new booking.
    Contact,
    /// Anywhere else: booking in flight, own bookings, own data.
    Other,
}

/// The screen the user is on, or the answer the engine waits for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum At {
    #[default]
    Menu,
    Services {
        /// Index of the chosen category among those of the loaded list.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cat: Option<u16>,
        #[serde(default, skip_serializing_if = "is_zero")]
        page: u16,
        /// A service id pressed; the list is re-loaded to learn its details.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pick: Option<String>,
    },
    Masters,
    Days,
    Times,
    Phone,
    Name,
    Confirm,
    /// `Book` sent; waiting for its answer.
    Booking,
    My {
        /// What to do with one booking once the list is re-loaded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        act: Option<Act>,
    },
    CancelAsk,
    Cancelling,
    Rescheduling,
    /// "I'll come" sent; waiting for it to be recorded.
    ConfirmingVisit,
    /// The schedule holds a booking until the client types the code it sent them.
    Code(CodeWait),
    /// A code (or a request to send it again) sent; waiting for the schedule's answer.
    CodeCheck(CodeWait),
    /// "My data": the name and phone bookings are made with.
    Data,
    /// Waiting for a new name.
    DataName,
    /// Waiting for a new phone, typed or shared.
    DataPhone,
    /// Waiting for the comment to the visit, before the confirmation.
    Comment,
    /// Booking for someone else: waiting for their name.
    GuestName,
    /// Booking for someone else: waiting for their phone (or "no phone").
    GuestPhone,
    /// The personal-data consent, asked before the phone (or the name) is; agreeing goes on to
    /// the step named.
    Consent(ConsentFor),
}

/// Where agreeing to the personal-data policy leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum ConsentFor {
    /// The booking (or school application) flow: the phone, the name or the confirmation.
    Booking,
    /// "My data": a new phone.
    DataPhone,
    /// "My data": a new name.
    DataName,
}

/// A booking waiting for the client's confirmation code. The code itself is never kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct CodeWait {
    pub booking: BookingId,
    /// Wrong codes entered so far.
    #[serde(default)]
    pub tries: u8,
    /// The code was sent again once already.
    #[serde(default)]
    pub resent: bool,
}

impl At {
    fn is_menu(&self) -> bool {
        *self == At::Menu
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Act {
    Cancel(BookingId),
    Move(BookingId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Note {
    Hint,
    UnknownCommand,
    Stale,
    SlotTaken,
    BadPhone,
    NameEmpty,
    NameLong,
    /// Digits, a phone number or punctuation where a name was asked.
    NameNotAName,
    NotFound,
    FlowCancelled,
    /// A new booking was given up before it was made.
    BookingDropped,
    /// A move or cancel was given up: the visit stays as it was.
    VisitKept,
    PhoneSaved,
    NameSaved,
    CommentLong,
    BadCode,
    CodeWrong,
    CodeResent,
    /// A phone (typed or shared) before the personal-data consent: not kept.
    ConsentFirst,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Flow {
    pub svc: Service,
    /// Kept for the back button and to name the master of an any-master slot; a salon has a
    /// handful, unlike services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masters: Vec<Master>,
    /// `None`: any master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The services screen is open to add another service to the visit.
    #[serde(default, skip_serializing_if = "is_false")]
    pub adding: bool,
}

/// What the engine needs to know about a booking being cancelled or moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Moving {
    pub id: BookingId,
    pub svc_id: String,
    pub svc: String,
    pub master_id: String,
    pub master: String,
    pub dur: u32,
    pub start: DateTime<Utc>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}
