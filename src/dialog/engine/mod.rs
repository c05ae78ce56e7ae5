//! The conversation as a state machine. Every function here is pure: what it needs from the
//! world it asks for with a [`Command`], and the answer comes back as [`Input::Loaded`].
//!
//! Button data is `"<version>|<payload>"`. The version is a counter bumped on every screen
//! rendered, so a press from an older message is recognised and never acted upon blindly.
//! Payloads: `M` menu, `B` book, `Y` my bookings, `H` help, `D` my data (`Dn` change the name,
//! `Dp` change the phone), `<` back, `r` retry, `X` cancel the flow, `K` confirm, `T` change
//! time, `N` write a comment (`Nx` drop it), `A` any master, `Cy`/`Cn` confirm/refuse cancelling,
//! `c:<category index>`, `p:<page>`, `s:<service id>`, `m:<master id>`, `w:<week>`,
//! `d:<yyyymmdd>`, `t:<unix seconds>:<master id>`, `C:<booking id>` cancel, `R:<booking id>`
//! reschedule; under a reminder, valid from any message: `Rk:<booking id>` "I'll come",
//! `Rc:<booking id>` cancel, `Rm:<booking id>` move; `Rs` send the confirmation code again;
//! `G` agree to the personal-data policy; `Q` call an administrator (valid from any message).
//!
//! The folder: this file holds [`step`], the engine and how it reads each input (start, text,
//! contact, button press, loaded answer); `navigation.rs` the menu, help, back and leaving a
//! flow; `booking.rs` service → master → day → time; `details.rs` consent, phone, name, guest,
//! comment and the confirm screen; `code.rs` the SMS confirmation code; `school.rs` school
//! mode; `my.rs` "my bookings" and "my data"; `render.rs` screens, buttons, words and
//! formatting. Every step is a method on the one engine, so the files call each other freely.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use super::state::{Act, At, CodeWait, ConsentFor, Flow, Guest, Moving, Note};
use super::{
    BookingDraft, Button, Command, Context, DialogState, EnrolDraft, Input, Loaded,
    MAX_BUTTON_DATA, Outcome, Reply, TRIAL,
};
use crate::domain::{Booking, BookingId, BookingStatus, Consent, Master, Service, Slot, Source};
use crate::i18n::{FluentValue, Lang};
use crate::normalize::Phone;

/// Services (or categories) per page; more than this and a list gets categories.
const PAGE: usize = 8;
/// How far ahead the day screen can be paged.
const MAX_WEEKS: u16 = 12;
const DAYS_PER_ROW: usize = 3;
const TIMES_PER_ROW: usize = 4;
/// Telegram allows 100 buttons per keyboard; a day rarely has more free starts than this.
const MAX_TIMES: usize = 64;
const NAME_MAX_CHARS: usize = 100;
/// A comment to a visit is a wish or two; the bound keeps the persisted state under 1 KB.
const COMMENT_MAX_CHARS: usize = 200;
/// Services one visit may join: a visit of more is a call to the salon.
const VISIT_MAX_SERVICES: usize = 3;
/// A service's description is read above the masters, not instead of them.
const DESCRIPTION_MAX_CHARS: usize = 600;
/// Past visits offered for "book again" in "my bookings".
const PAST_VISITS: usize = 3;
/// Wrong confirmation codes a client may enter before the booking is given up.
const CODE_TRIES: u8 = 3;
/// SMS confirmation codes are short runs of digits.
const CODE_LEN: std::ops::RangeInclusive<usize> = 3..=8;

mod booking;
mod code;
mod details;
mod my;
mod navigation;
mod render;
mod school;

/// Advances the conversation by one input.
pub fn step(state: DialogState, input: Input, ctx: &Context) -> (DialogState, Outcome) {
    let mut engine = Engine {
        lang: state.lang.unwrap_or(ctx.default_lang),
        st: state,
        ctx,
        out: Outcome::default(),
        consent_version: std::cell::OnceCell::new(),
    };
    engine.run(input);
    (engine.st, engine.out)
}

struct Engine<'a> {
    st: DialogState,
    ctx: &'a Context,
    out: Outcome,
    lang: Lang,
    /// The consent text's version in `lang`, worked out once a step: it formats the text and
    /// hashes it, and a step may ask several times.
    consent_version: std::cell::OnceCell<String>,
}

impl Engine<'_> {
    fn run(&mut self, input: Input) {
        if self.st.lang.is_none() || matches!(input, Input::Start { .. }) {
            let lang = Lang::pick(self.ctx.user_lang.as_deref(), self.ctx.default_lang);
            self.st.lang = Some(lang);
            self.lang = lang;
        }
        match input {
            Input::Start { source } => {
                self.st.edit = false;
                self.start(Some(source));
            }
            Input::Text(text) => {
                self.st.edit = false;
                self.text(&text);
            }
            Input::Button(data) => {
                self.st.edit = true;
                self.button(&data);
            }
            Input::Contact { phone } => {
                self.st.edit = false;
                self.contact(&phone);
            }
            Input::Loaded(loaded) => self.loaded(loaded),
        }
    }

    // ---- inputs -------------------------------------------------------------------------

    fn start(&mut self, source: Option<Source>) {
        if let Some(source) = source {
            // A bare /start must not wipe the campaign a client originally came from.
            let tracked =
                source.payload.is_some() || source.link_name.is_some() || !source.utm.is_empty();
            if tracked || self.st.source.is_none() {
                self.st.source = Some(source);
            }
        }
        self.clear_flow();
        let greeting = self.ta(
            "greeting",
            &[("business", self.ctx.business_name.clone().into())],
        );
        self.render_menu(greeting);
    }

    fn text(&mut self, text: &str) {
        let trimmed = text.trim();
        if let Some(cmd) = trimmed.strip_prefix('/') {
            // Group chats append the bot's name: `/book@zapis_bot`.
            let cmd = cmd
                .split(['@', ' '])
                .next()
                .unwrap_or_default()
                .to_lowercase();
            match cmd.as_str() {
                "start" => self.start(None),
                "help" => self.help(),
                "book" => self.begin_booking(),
                "my" => self.my_bookings(None),
                "menu" => self.menu(),
                "cancel" => self.leave(),
                _ => self.again(Note::UnknownCommand),
            }
            return;
        }
        match self.st.at {
            At::Phone => self.take_phone(trimmed),
            At::Name => self.take_name(trimmed),
            At::DataName => self.change_name(trimmed),
            At::DataPhone => self.change_phone(trimmed),
            At::Comment => self.take_comment(trimmed),
            At::GuestName => self.take_guest_name(trimmed),
            At::GuestPhone => self.take_guest_phone(trimmed),
            At::Code(_) => self.take_code(trimmed),
            // Whatever is typed here, a phone included, is not an agreement: only the button is.
            At::Consent(_) => self.again(Note::ConsentFirst),
            // What the bot cannot place is a question for a person, when there is one.
            _ if self.ctx.support.is_some() && !trimmed.is_empty() => {
                self.call_admin(Some(trimmed.to_string()));
            }
            _ => self.again(Note::Hint),
        }
    }

    fn contact(&mut self, raw: &str) {
        match self.st.at {
            At::Phone => {
                self.take_phone(raw);
                return;
            }
            At::DataPhone => {
                self.change_phone(raw);
                return;
            }
            // A contact card shared here is the other person's.
            At::GuestPhone => {
                self.take_guest_phone(raw);
                return;
            }
            _ => {}
        }
        // A phone is personal data: without the client's agreement it is not kept.
        if self.consent_needed() {
            self.again(Note::ConsentFirst);
            return;
        }
        // A contact shared out of turn is still the client's phone; keep it for later.
        match Phone::parse(raw) {
            Ok(phone) => {
                self.st.phone = Some(phone);
                self.again(Note::PhoneSaved);
            }
            Err(_) => self.again(Note::Hint),
        }
    }

    /// A press on a booking's button: `act` on the booking the button names. Data that cannot
    /// be a booking id (control characters, over-long) is no button of ours and is answered
    /// like any unknown press.
    fn act_on(&mut self, arg: &str, act: fn(BookingId) -> Act) {
        match BookingId::parse(arg) {
            Ok(id) => self.my_bookings(Some(act(id))),
            Err(_) => self.again(Note::Hint),
        }
    }

    fn button(&mut self, data: &str) {
        let Some((version, payload)) = data.split_once('|') else {
            self.again(Note::Hint);
            return;
        };
        if version.parse::<u32>().ok() != Some(self.st.v) {
            match payload {
                // Going to the menu, booking or help means the same from any message, and so
                // do a reminder's answers.
                "M" | "B" | "Y" | "H" | "D" | "Q" => {}
                p if p.starts_with("Rk:") || p.starts_with("Rc:") || p.starts_with("Rm:") => {}
                _ => {
                    self.again(Note::Stale);
                    return;
                }
            }
        }
        let (kind, arg) = payload.split_once(':').unwrap_or((payload, ""));
        let at = self.st.at.clone();
        match (kind, &at) {
            ("M", _) => self.menu(),
            ("B", _) => self.begin_booking(),
            ("Y", _) => self.my_bookings(None),
            ("H", _) => self.help(),
            ("D", _) => self.my_data(),
            ("Q", _) if self.ctx.support.is_some() => self.call_admin(None),
            ("Dn", At::Data) if self.consent_needed() => self.ask_consent(ConsentFor::DataName),
            ("Dn", At::Data) => {
                self.st.at = At::DataName;
                self.render_data_name();
            }
            ("Dp", At::Data) if self.consent_needed() => self.ask_consent(ConsentFor::DataPhone),
            ("Dp", At::Data) => {
                self.st.at = At::DataPhone;
                self.render_data_phone();
            }
            ("G", At::Consent(next)) => self.agree(*next),
            ("<", _) => self.back(),
            ("r", _) => self.retry(),
            ("X", At::Code(w)) => self.give_up_code(w.booking.clone(), false),
            ("Rs", At::Code(w)) if !w.resent => {
                let mut w = w.clone();
                w.resent = true;
                let booking_id = w.booking.clone();
                self.st.at = At::CodeCheck(w);
                self.write(Command::ResendCode { booking_id }, "code-resending");
            }
            ("X", _) => self.leave(),
            ("c", At::Services { .. }) => match arg.parse::<u16>() {
                Ok(cat) => self.load_services(Some(cat), 0, None),
                Err(_) => self.again(Note::Hint),
            },
            ("p", At::Services { cat, .. }) => match arg.parse::<u16>() {
                Ok(page) => self.load_services(*cat, page, None),
                Err(_) => self.again(Note::Hint),
            },
            ("s", At::Services { cat, page, .. }) if !arg.is_empty() => {
                self.load_services(*cat, *page, Some(arg.to_string()));
            }
            ("Sa", At::Masters) if self.can_add_service() => {
                if let Some(flow) = &mut self.st.flow {
                    flow.adding = true;
                }
                self.load_services(None, 0, None);
            }
            ("m", At::Masters) => self.pick_master(Some(arg)),
            ("A", At::Masters) => self.pick_master(None),
            ("w", At::Days) => match arg.parse::<u16>() {
                Ok(week) if week <= MAX_WEEKS => {
                    self.st.week = week;
                    self.load_days();
                }
                _ => self.again(Note::Hint),
            },
            ("d", At::Days) => self.pick_day(arg),
            ("t", At::Times) => self.pick_time(arg),
            ("K", At::Confirm) if self.moving_too_late() => self.too_late(),
            ("K", At::Confirm) => self.confirm(),
            ("N", At::Confirm) if self.st.mv.is_none() && !self.ctx.school => {
                self.st.at = At::Comment;
                self.render_comment();
            }
            ("O", At::Confirm) if self.st.mv.is_none() && !self.ctx.school => {
                self.st.at = At::GuestName;
                self.render_guest_name();
            }
            ("Os", At::Confirm) => {
                self.st.guest = None;
                self.render_confirm();
            }
            ("Op", At::GuestPhone) => {
                self.st.at = At::Confirm;
                self.render_confirm();
            }
            ("Nx", At::Comment) => {
                self.st.comment = None;
                self.st.at = At::Confirm;
                self.render_confirm();
            }
            ("T", At::Confirm) => {
                self.st.slot = None;
                self.load_slots();
            }
            ("C", At::My { .. }) if !arg.is_empty() => self.act_on(arg, Act::Cancel),
            ("R", At::My { .. }) if !arg.is_empty() => self.act_on(arg, Act::Move),
            ("Ag", At::My { .. }) => match arg.split_once(':') {
                Some((service, master)) if !service.is_empty() && !master.is_empty() => {
                    self.clear_flow();
                    self.st.again = Some(master.to_string());
                    self.load_services(None, 0, Some(service.to_string()));
                }
                _ => self.again(Note::Hint),
            },
            ("Rk", _) if !arg.is_empty() => match BookingId::parse(arg) {
                Ok(booking_id) => {
                    self.clear_flow();
                    self.st.at = At::ConfirmingVisit;
                    self.command(Command::ConfirmVisit { booking_id });
                }
                Err(_) => self.again(Note::Hint),
            },
            ("Rc", _) if !arg.is_empty() => self.act_on(arg, Act::Cancel),
            ("Rm", _) if !arg.is_empty() => self.act_on(arg, Act::Move),
            ("Cy", At::CancelAsk) if self.moving_too_late() => self.too_late(),
            ("Cy", At::CancelAsk) => self.cancel_booking(),
            ("Cn", At::CancelAsk) => {
                self.st.mv = None;
                self.my_bookings(None);
            }
            _ => self.again(Note::Hint),
        }
    }

    fn loaded(&mut self, loaded: Loaded) {
        // Answers that arrive when the engine waits for something else are dropped: the user
        // has moved on and the fresh screen will load what it needs.
        match (loaded, self.st.at.clone()) {
            (Loaded::Services(list), At::Services { cat, page, pick }) => {
                self.services_loaded(list, cat, page, pick)
            }
            (Loaded::Masters(list), At::Masters) => {
                let again = self.st.again.take();
                let known = again.filter(|m| list.iter().any(|x| &x.id == m));
                if let Some(flow) = &mut self.st.flow {
                    flow.masters = list;
                }
                match known {
                    // The master of a past visit still renders this service: straight to days.
                    Some(master) => self.pick_master(Some(&master)),
                    None => self.render_masters(),
                }
            }
            (Loaded::Days(days), At::Days) => self.render_days(days),
            (Loaded::Slots(slots), At::Times) => self.render_times(slots),
            (Loaded::Booked(b), At::Booking | At::CodeCheck(_)) => self.done(&b, "booked"),
            (Loaded::CodeRequired { booking_id }, At::Booking) => {
                self.st.at = At::Code(CodeWait {
                    booking: booking_id,
                    tries: 0,
                    resent: false,
                });
                self.st.edit = false;
                self.render_code();
            }
            (Loaded::CodeWrong, At::CodeCheck(mut w)) => {
                w.tries = w.tries.saturating_add(1);
                if w.tries >= CODE_TRIES {
                    self.give_up_code(w.booking, true);
                } else {
                    self.st.at = At::Code(w);
                    self.again(Note::CodeWrong);
                }
            }
            (Loaded::CodeResent, At::CodeCheck(w)) => {
                self.st.at = At::Code(w);
                self.again(Note::CodeResent);
            }
            (Loaded::Enrolled { course, group }, At::Booking) => self.enrolled(course, group),
            (Loaded::BookingPending(b), At::Booking) => self.done(&b, "booking-pending"),
            (Loaded::Rescheduled(b), At::Rescheduling) => self.done(&b, "rescheduled"),
            (Loaded::Cancelled(b), At::Cancelling) => self.done(&b, "cancelled"),
            (Loaded::VisitConfirmed(b), At::ConfirmingVisit) => self.done(&b, "visit-confirmed"),
            (Loaded::SlotTaken, At::Booking | At::Rescheduling | At::CodeCheck(_)) => {
                // Offer what is free now; booking another time silently would surprise.
                self.st.slot = None;
                self.st.note = Some(Note::SlotTaken);
                self.st.edit = false;
                self.load_slots();
            }
            (Loaded::MyBookings(list), At::My { act }) => self.my_loaded(list, act),
            (Loaded::Failed { .. }, _) => self.failed(),
            (Loaded::BookingClosed, _) => self.closed(),
            _ => {}
        }
    }
}

/// Digits a name may hold before it reads as a phone number (`Анна 2`, not `Анна 8912…`).
const NAME_MAX_DIGITS: usize = 4;

/// A name as typed, with its spaces tidied, or the note saying what is wrong with it. A name
/// has letters, of any script; a phone number or a dash typed at the name step is not one.
fn read_name(raw: &str) -> Result<String, Note> {
    let name = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        Err(Note::NameEmpty)
    } else if name.chars().count() > NAME_MAX_CHARS {
        Err(Note::NameLong)
    } else if !name.chars().any(char::is_alphabetic)
        || name.chars().filter(char::is_ascii_digit).count() > NAME_MAX_DIGITS
    {
        Err(Note::NameNotAName)
    } else {
        Ok(name)
    }
}

fn note_key(note: Note) -> &'static str {
    match note {
        Note::Hint => "note-hint",
        Note::UnknownCommand => "note-unknown-command",
        Note::Stale => "note-stale",
        Note::SlotTaken => "note-slot-taken",
        Note::BadPhone => "note-bad-phone",
        Note::NameEmpty => "note-name-empty",
        Note::NameLong => "note-name-long",
        Note::NameNotAName => "note-name-not-a-name",
        Note::NotFound => "note-not-found",
        Note::FlowCancelled => "note-flow-cancelled",
        Note::BookingDropped => "note-booking-dropped",
        Note::VisitKept => "note-visit-kept",
        Note::PhoneSaved => "note-phone-saved",
        Note::NameSaved => "note-name-saved",
        Note::CommentLong => "note-comment-long",
        Note::BadCode => "note-bad-code",
        Note::CodeWrong => "note-code-wrong",
        Note::CodeResent => "note-code-resent",
        Note::ConsentFirst => "note-consent-first",
    }
}

/// The service `id` names in `list`: one of it, or a visit of several joined (a past visit
/// booked again), rebuilt from the services as they are now.
fn visit_in(list: &[Service], id: &str) -> Option<Service> {
    let mut visit: Option<Service> = None;
    for part in Service::ids_in(id) {
        let service = list.iter().find(|s| s.id == part)?;
        visit = Some(match visit {
            Some(v) => Service::visit_of(&v, service),
            None => service.clone(),
        });
    }
    visit
}
