//! The booking conversation, pure and messenger-agnostic:
//! `(state, input) → (state, replies, commands)`.
//!
//! The engine never touches the network or the store. What it needs from the outside world it
//! asks for with a [`Command`]; the runtime carries the command out and feeds the answer back as
//! [`Input::Loaded`]. Replies are neutral (text and button rows) and each messenger adapter
//! renders them its own way.

mod engine;
pub mod links;
mod state;

pub use engine::step;
pub use state::{DialogState, FunnelStage};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::domain::{Booking, BookingId, Channel, Consent, Master, Service, Slot, Source};
use crate::i18n::{Lang, Texts};
use crate::normalize::Phone;

/// Longest callback payload any messenger accepts (Telegram: 64 bytes).
pub const MAX_BUTTON_DATA: usize = 64;

/// Facts about the business and the moment that the engine reads but never changes.
#[derive(Debug, Clone)]
pub struct Context {
    pub now: DateTime<Utc>,
    pub timezone: Tz,
    pub business_name: String,
    pub address: String,
    /// A phone to call, shown when booking online is not possible.
    pub business_phone: Option<String>,
    /// The business locale, used when the messenger tells no language.
    pub default_lang: Lang,
    /// The language the messenger reports for this user, if any (`ru`, `en-US`).
    pub user_lang: Option<String>,
    /// The messenger this conversation happens on: the source of a booking made without a
    /// deep link.
    pub channel: Channel,
    /// A school: services are courses, masters are groups (or a trial lesson), and the flow
    /// ends in an application after phone and name instead of a slot. This switches the flow
    /// only; the words (курс, преподаватель) come from `texts`, built for the same kind.
    pub school: bool,
    /// The schedule books several services in one visit (YClients): the masters screen offers
    /// to add another service.
    pub several_services: bool,
    /// The business's words: its kind's terms and its own overrides over the built-ins.
    pub texts: Texts,
    /// How long before a visit it can still be cancelled or moved in the chat; closer to it
    /// the client is asked to call. `None`: up to the visit itself.
    pub change_cutoff: Option<chrono::Duration>,
    /// Ask the client to agree to the personal-data policy before their phone and name
    /// (`privacy.consent`).
    pub consent: bool,
    /// The business's personal-data policy, linked from the consent message.
    pub policy_url: Option<String>,
    /// "Call an administrator" (`[support]`): `None` when the business has no admin chat.
    pub support: Option<Support>,
}

/// The admin chat clients can call on, as the dialog needs to know it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Support {
    /// When admins answer; always when `None`.
    pub hours: Option<crate::support::SupportHours>,
}

/// The master id that stands for "a trial lesson" among a course's groups.
pub const TRIAL: &str = "trial";

/// An application to a course, collected by the school-mode dialog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolDraft {
    pub course: Service,
    /// The group chosen; `None` with `trial` for a trial lesson.
    pub group: Option<Master>,
    pub trial: bool,
    pub phone: Phone,
    pub name: String,
    pub source: Source,
    /// The client's agreement to the personal-data policy, stored with the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
}

/// Something the user did, or the answer to a command.
// Inputs are short-lived values moved once through `step`; boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// `/start`, with the source already resolved from the deep-link payload.
    Start {
        source: Source,
    },
    Text(String),
    /// Callback data of a pressed button, verbatim.
    Button(String),
    /// A phone shared with the messenger's contact button.
    Contact {
        phone: String,
    },
    Loaded(Loaded),
}

/// The answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Loaded {
    Services(Vec<Service>),
    Masters(Vec<Master>),
    Days(Vec<NaiveDate>),
    Slots(Vec<Slot>),
    /// The schedule confirmed the booking.
    Booked(Booking),
    /// The schedule was unreachable; the booking waits in the queue and the client will be told.
    BookingPending(Booking),
    /// The slot was taken between showing and confirming.
    SlotTaken,
    /// The school application is stored and on its way to the school's CRM.
    Enrolled {
        course: String,
        group: Option<String>,
    },
    MyBookings(Vec<Booking>),
    Cancelled(Booking),
    Rescheduled(Booking),
    /// The client's "I'll come" is recorded.
    VisitConfirmed(Booking),
    /// Online booking into the schedule is switched off (the schedule's API changed, or it
    /// demands what a bot cannot give); tell the client to call instead of pretending.
    BookingClosed,
    /// The schedule sent the client a confirmation code (an SMS from Dikidi) and holds booking
    /// `booking_id` until the code is entered.
    CodeRequired {
        booking_id: BookingId,
    },
    /// The code entered is not the one the schedule sent.
    CodeWrong,
    /// The schedule sent the code once more.
    CodeResent,
    /// The booking that waited for a code is given up.
    CodeAbandoned,
    /// The client's question is on its way to the admin chat.
    AdminCalled,
    /// A load or write failed for a reason the user cannot fix; say sorry and offer to retry.
    Failed {
        reason: String,
    },
}

/// Work the engine asks the runtime to do.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    LoadServices,
    LoadMasters {
        service_id: String,
    },
    LoadDays {
        service_id: String,
        master_id: Option<String>,
        from: NaiveDate,
        to: NaiveDate,
    },
    LoadSlots {
        service_id: String,
        master_id: Option<String>,
        day: NaiveDate,
    },
    Book(BookingDraft),
    /// School mode: submit an application to a course.
    Enrol(EnrolDraft),
    /// Upcoming bookings of this chat (and of `phone`, when known).
    LoadMyBookings {
        phone: Option<Phone>,
    },
    Cancel {
        booking_id: BookingId,
    },
    Reschedule {
        booking_id: BookingId,
        slot: Slot,
    },
    /// "I'll come" from a reminder: record it here, in the schedule and the CRM.
    ConfirmVisit {
        booking_id: BookingId,
    },
    /// Completes a booking the schedule holds with the confirmation code the client typed.
    SubmitCode {
        booking_id: BookingId,
        code: String,
    },
    /// Asks the schedule to send the confirmation code again.
    ResendCode {
        booking_id: BookingId,
    },
    /// The client gave up (or ran out of tries) on a booking that waited for a code.
    AbandonCode {
        booking_id: BookingId,
    },
    /// Relay to the business's admin chat: the client's question as typed, or `None` when they
    /// pressed "Call an administrator". Who asks is the runtime's to add.
    CallAdmin {
        question: Option<String>,
    },
}

/// Buttons under a reminder. They carry no render version: a reminder arrives outside the
/// conversation and its buttons stay valid whatever the client did in between. A visit inside
/// `booking.change_cutoff` (`changeable` false) gets "I'll come" alone.
pub fn reminder_buttons(
    texts: &Texts,
    lang: Lang,
    booking_id: &BookingId,
    changeable: bool,
) -> Vec<Vec<Button>> {
    let button = |key: &str, data: String| Button {
        label: texts.t(lang, key),
        data,
    };
    let mut rows = vec![vec![button(
        "btn-remind-come",
        links::confirm_visit(booking_id),
    )]];
    if changeable {
        rows.push(vec![
            button("btn-remind-cancel", links::cancel_visit(booking_id)),
            button("btn-remind-move", links::move_visit(booking_id)),
        ]);
    }
    rows
}

/// Everything needed to make a booking, collected step by step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingDraft {
    pub service: Service,
    pub master: Option<Master>,
    pub slot: Slot,
    pub phone: Phone,
    pub name: String,
    pub source: Source,
    /// The client's comment to the visit, for the record in the schedule and the CRM lead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The client's agreement to the personal-data policy, stored with the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
}

/// A message to show. Adapters render `buttons` as inline keyboards.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reply {
    pub text: String,
    pub buttons: Vec<Vec<Button>>,
    /// Ask the messenger to show its "share my phone" button.
    pub request_contact: bool,
    /// Replace the message whose button was pressed instead of sending a new one.
    pub edit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub label: String,
    /// Callback data, at most [`MAX_BUTTON_DATA`] bytes.
    pub data: String,
}

/// What one step produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub replies: Vec<Reply>,
    pub commands: Vec<Command>,
}

#[cfg(test)]
mod tests;

/// `text` cut to `max` characters, with an ellipsis when anything was cut.
pub fn shorten(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let mut short: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        short.push('…');
    }
    short
}
