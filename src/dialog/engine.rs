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

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use super::state::{Act, At, CodeWait, ConsentFor, Flow, Guest, Moving, Note};
use super::{
    BookingDraft, Button, Command, Context, DialogState, EnrolDraft, Input, Loaded,
    MAX_BUTTON_DATA, Outcome, Reply, TRIAL,
};
use crate::domain::{Booking, BookingStatus, Consent, Master, Service, Slot, Source};
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

/// Advances the conversation by one input.
pub fn step(state: DialogState, input: Input, ctx: &Context) -> (DialogState, Outcome) {
    let mut engine = Engine {
        lang: state.lang.unwrap_or(ctx.default_lang),
        st: state,
        ctx,
        out: Outcome::default(),
    };
    engine.run(input);
    (engine.st, engine.out)
}

struct Engine<'a> {
    st: DialogState,
    ctx: &'a Context,
    out: Outcome,
    lang: Lang,
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
            ("C", At::My { .. }) if !arg.is_empty() => {
                self.my_bookings(Some(Act::Cancel(arg.to_string())));
            }
            ("R", At::My { .. }) if !arg.is_empty() => {
                self.my_bookings(Some(Act::Move(arg.to_string())));
            }
            ("Ag", At::My { .. }) => match arg.split_once(':') {
                Some((service, master)) if !service.is_empty() && !master.is_empty() => {
                    self.clear_flow();
                    self.st.again = Some(master.to_string());
                    self.load_services(None, 0, Some(service.to_string()));
                }
                _ => self.again(Note::Hint),
            },
            ("Rk", _) if !arg.is_empty() => {
                self.clear_flow();
                self.st.at = At::ConfirmingVisit;
                self.command(Command::ConfirmVisit {
                    booking_id: arg.to_string(),
                });
            }
            ("Rc", _) if !arg.is_empty() => {
                self.my_bookings(Some(Act::Cancel(arg.to_string())));
            }
            ("Rm", _) if !arg.is_empty() => {
                self.my_bookings(Some(Act::Move(arg.to_string())));
            }
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

    // ---- navigation ---------------------------------------------------------------------

    fn clear_flow(&mut self) {
        // Leaving the code prompt any way at all gives up the booking that waited for it.
        if let At::Code(w) = &self.st.at {
            let booking_id = w.booking.clone();
            self.command(Command::AbandonCode { booking_id });
        }
        self.st.at = At::Menu;
        self.st.flow = None;
        self.st.mv = None;
        self.st.week = 0;
        self.st.day = None;
        self.st.slot = None;
        self.st.again = None;
        self.st.comment = None;
        self.st.guest = None;
    }

    /// Gives up what is in progress and says what that means for the client: a visit being
    /// moved or cancelled stays as it was, a new booking is simply not made.
    fn leave(&mut self) {
        let note = if self.st.mv.is_some() {
            Note::VisitKept
        } else if self.st.flow.is_some() || matches!(self.st.at, At::Code(_)) {
            Note::BookingDropped
        } else {
            Note::FlowCancelled
        };
        self.clear_flow();
        self.st.note = Some(note);
        self.menu();
    }

    fn menu(&mut self) {
        self.clear_flow();
        let text = self.t("menu");
        self.render_menu(text);
    }

    fn help(&mut self) {
        let phone = match &self.ctx.business_phone {
            Some(p) => self.ta("help-phone", &[("phone", p.clone().into())]),
            None => String::new(),
        };
        let text = self.ta(
            "help",
            &[
                ("business", self.ctx.business_name.clone().into()),
                ("address", self.ctx.address.clone().into()),
                ("phone", phone.into()),
            ],
        );
        // Help leaves the current step alone, so its buttons are only the global ones that
        // stay valid from any message.
        let mut buttons = vec![
            vec![self.btn("btn-book", "B")],
            vec![self.btn("btn-my", "Y")],
        ];
        if self.ctx.support.is_some() {
            buttons.push(vec![self.btn("btn-call-admin", "Q")]);
        }
        buttons.push(vec![self.btn("btn-menu", "M")]);
        self.say(text, buttons, false);
    }

    /// Sends the client's question (or just the call) to the admin chat and says when to
    /// expect an answer. The current step stays as it was: its buttons still work.
    fn call_admin(&mut self, question: Option<String>) {
        let asked = question.is_some();
        self.command(Command::CallAdmin { question });
        let mut text = self.t(if asked {
            "support-sent"
        } else {
            "support-called"
        });
        let hours = self.ctx.support.and_then(|s| s.hours);
        let local = self.local(self.ctx.now).naive_local();
        if let Some(open) = hours.and_then(|h| h.next_open(local)) {
            let today = self.today();
            let day = if open.date() == today {
                self.t("support-day-today")
            } else if today.succ_opt() == Some(open.date()) {
                self.t("support-day-tomorrow")
            } else {
                self.day_label(open.date())
            };
            let closed = self.ta(
                "support-closed",
                &[
                    ("day", day.into()),
                    ("time", open.format("%H:%M").to_string().into()),
                ],
            );
            text = format!("{closed}\n\n{text}");
        }
        if asked {
            self.say(text, Vec::new(), false);
        } else if matches!(self.st.at, At::Menu) {
            // A press replaces the screen it was on: from the menu, the way back to it.
            let buttons = vec![vec![self.btn("btn-menu", "M")]];
            self.say(text, buttons, false);
        } else {
            // From a step of a booking: the press's screen says who was called, and the step
            // follows, its buttons working as before.
            self.say(text, Vec::new(), false);
            self.show();
        }
    }

    /// Shows the current step again, with `note` above it.
    fn again(&mut self, note: Note) {
        self.st.note = Some(note);
        self.show();
    }

    /// Renders the current step, loading what it shows when it is not kept in the state.
    fn show(&mut self) {
        match self.st.at.clone() {
            At::Menu => self.menu(),
            At::Services { cat, page, .. } => self.load_services(cat, page, None),
            At::Masters => self.render_masters(),
            At::Days => self.load_days(),
            At::Times => self.load_slots(),
            At::Phone => self.render_phone(),
            At::Name => self.render_name(),
            At::Confirm => self.render_confirm(),
            At::My { .. } => self.my_bookings(None),
            At::CancelAsk => self.render_cancel_ask(),
            At::Code(_) => self.render_code(),
            At::Data => self.render_data(),
            At::DataName => self.render_data_name(),
            At::DataPhone => self.render_data_phone(),
            At::Comment => self.render_comment(),
            At::GuestName => self.render_guest_name(),
            At::GuestPhone => self.render_guest_phone(),
            At::Consent(_) => self.render_consent(),
            At::Booking
            | At::Cancelling
            | At::Rescheduling
            | At::ConfirmingVisit
            | At::CodeCheck(_) => {
                let text = self.t("wait");
                self.screen(text, Vec::new(), false);
            }
        }
    }

    fn back(&mut self) {
        match self.st.at.clone() {
            At::Services { cat: Some(_), .. } => self.load_services(None, 0, None),
            // Adding a service to a visit: back to its masters, the visit as it was.
            At::Services { .. } if self.adding_service() => {
                if let Some(flow) = &mut self.st.flow {
                    flow.adding = false;
                }
                self.st.at = At::Masters;
                self.render_masters();
            }
            At::Masters => self.begin_booking(),
            At::Days if self.st.mv.is_some() => self.my_bookings(None),
            At::Days => {
                self.st.at = At::Masters;
                self.render_masters();
            }
            At::Phone | At::Confirm | At::Consent(ConsentFor::Booking) if self.ctx.school => {
                self.render_masters()
            }
            At::Times | At::Confirm => {
                self.st.slot = None;
                self.load_days();
            }
            At::Phone | At::Consent(ConsentFor::Booking) => {
                self.st.slot = None;
                self.load_slots();
            }
            At::Name => {
                self.st.at = At::Phone;
                self.render_phone();
            }
            At::CancelAsk => {
                self.st.mv = None;
                self.my_bookings(None);
            }
            At::Comment | At::GuestName => {
                self.st.at = At::Confirm;
                self.render_confirm();
            }
            At::GuestPhone => {
                self.st.at = At::GuestName;
                self.render_guest_name();
            }
            At::DataName
            | At::DataPhone
            | At::Consent(ConsentFor::DataName | ConsentFor::DataPhone) => {
                self.st.at = At::Data;
                self.render_data();
            }
            _ => self.menu(),
        }
    }

    fn retry(&mut self) {
        // A write that failed goes back to its confirmation, so nothing is written again
        // without the user confirming it again.
        match self.st.at.clone() {
            At::Booking | At::Rescheduling => self.st.at = At::Confirm,
            At::Cancelling => self.st.at = At::CancelAsk,
            // The booking still waits for its code: ask for it again.
            At::CodeCheck(w) => self.st.at = At::Code(w),
            _ => {}
        }
        self.show();
    }

    fn failed(&mut self) {
        let mut text = self.t("failed");
        if let Some(phone) = &self.ctx.business_phone {
            text.push('\n');
            text.push_str(&self.ta("failed-call", &[("phone", phone.clone().into())]));
        }
        self.bump();
        let buttons = vec![vec![self.btn("btn-retry", "r"), self.btn("btn-menu", "M")]];
        self.say(text, buttons, false);
    }

    /// Online booking is off: the phone is the way to book, so it leads the message.
    fn closed(&mut self) {
        let text = match &self.ctx.business_phone {
            Some(phone) => self.ta("booking-closed-call", &[("phone", phone.clone().into())]),
            None => self.t("booking-closed"),
        };
        self.bump();
        let buttons = vec![vec![self.btn("btn-menu", "M")]];
        self.say(text, buttons, false);
    }

    // ---- booking ------------------------------------------------------------------------

    fn begin_booking(&mut self) {
        self.clear_flow();
        self.load_services(None, 0, None);
    }

    fn load_services(&mut self, cat: Option<u16>, page: u16, pick: Option<String>) {
        self.st.at = At::Services { cat, page, pick };
        self.command(Command::LoadServices);
    }

    fn services_loaded(
        &mut self,
        list: Vec<Service>,
        cat: Option<u16>,
        page: u16,
        pick: Option<String>,
    ) {
        if let Some(id) = pick {
            let adding = self
                .st
                .flow
                .as_ref()
                .filter(|f| f.adding)
                .map(|f| f.svc.clone());
            match visit_in(&list, &id) {
                Some(picked) => {
                    let svc = match adding {
                        Some(visit) => Service::visit_of(&visit, &picked),
                        None => picked,
                    };
                    let service_id = svc.id.clone();
                    self.st.flow = Some(Flow {
                        svc,
                        masters: Vec::new(),
                        master: None,
                        adding: false,
                    });
                    self.st.at = At::Masters;
                    self.command(Command::LoadMasters { service_id });
                }
                None => {
                    self.st.at = At::Services {
                        cat,
                        page,
                        pick: None,
                    };
                    self.st.note = Some(Note::NotFound);
                    self.command(Command::LoadServices);
                }
            }
            return;
        }
        self.render_services(&list, cat, page);
    }

    fn render_services(&mut self, list: &[Service], cat: Option<u16>, page: u16) {
        self.bump();
        if list.is_empty() {
            let text = self.t("no-services");
            let buttons = vec![vec![self.btn("btn-menu", "M")]];
            self.screen(text, buttons, false);
            return;
        }
        let mut categories: Vec<&str> = Vec::new();
        for s in list {
            if !categories.contains(&s.category.as_str()) {
                categories.push(&s.category);
            }
        }
        let grouped = list.len() > PAGE && categories.len() > 1;
        let category = cat
            .map(usize::from)
            .and_then(|i| categories.get(i).copied())
            .filter(|_| grouped);
        // Remember what is shown, since a category index from an older list may be gone.
        let cat = category.and(cat);
        let mut rows = Vec::new();
        let text;
        let total;
        let page = usize::from(page);
        if grouped && category.is_none() {
            text = self.t("choose-category");
            total = categories.len();
            for (i, name) in categories.iter().enumerate().skip(page * PAGE).take(PAGE) {
                rows.push(vec![self.button_raw(name.to_string(), &format!("c:{i}"))]);
            }
        } else {
            // Adding to a visit: what it has already is not offered again.
            let visit = self
                .st
                .flow
                .as_ref()
                .filter(|f| f.adding)
                .map(|f| f.svc.clone());
            text = match (&visit, category) {
                (Some(v), _) => {
                    self.ta("choose-more-service", &[("service", v.name.clone().into())])
                }
                (None, Some(c)) => self.ta("choose-service-in", &[("category", c.into())]),
                (None, None) => self.t("choose-service"),
            };
            let items: Vec<&Service> = list
                .iter()
                .filter(|s| category.is_none_or(|c| s.category == c))
                .filter(|s| {
                    visit
                        .as_ref()
                        .is_none_or(|v| !Service::ids_in(&v.id).any(|id| id == s.id))
                })
                .collect();
            total = items.len();
            for s in items.iter().skip(page * PAGE).take(PAGE) {
                let label = self.service_label(s);
                rows.push(vec![self.button_raw(label, &format!("s:{}", s.id))]);
            }
        }
        let mut nav = Vec::new();
        if page > 0 {
            nav.push(self.btn("btn-prev", &format!("p:{}", page - 1)));
        }
        if (page + 1) * PAGE < total {
            nav.push(self.btn("btn-next", &format!("p:{}", page + 1)));
        }
        if !nav.is_empty() {
            rows.push(nav);
        }
        rows.push(vec![self.btn("btn-back", "<")]);
        self.st.at = At::Services {
            cat,
            page: u16::try_from(page).unwrap_or(0),
            pick: None,
        };
        self.screen(text, rows, false);
    }

    fn render_masters(&mut self) {
        if self.ctx.school {
            self.render_groups();
            return;
        }
        let Some(flow) = self.st.flow.clone() else {
            self.menu();
            return;
        };
        self.bump();
        let mut rows = Vec::new();
        let text = if flow.masters.is_empty() {
            self.ta("no-masters", &[("service", flow.svc.name.clone().into())])
        } else {
            for m in &flow.masters {
                let label = if m.specialization.is_empty() {
                    m.name.clone()
                } else {
                    format!("{} · {}", m.name, m.specialization)
                };
                rows.push(vec![self.button_raw(label, &format!("m:{}", m.id))]);
            }
            rows.push(vec![self.btn("btn-any-master", "A")]);
            if self.can_add_service() {
                rows.push(vec![self.btn("btn-add-service", "Sa")]);
            }
            self.ta(
                "choose-master",
                &[("service", flow.svc.name.clone().into())],
            )
        };
        // The schedule's description of the service, shown as the service is picked. It is
        // dropped from the state then: descriptions can be long and the state stays small.
        let description = self.st.flow.as_mut().and_then(|f| f.svc.description.take());
        let text = match description {
            Some(d) => format!("{}\n\n{text}", super::shorten(&d, DESCRIPTION_MAX_CHARS)),
            None => text,
        };
        rows.push(vec![self.btn("btn-back", "<")]);
        self.st.at = At::Masters;
        self.screen(text, rows, false);
    }

    /// The visit being put together may take one more service.
    fn can_add_service(&self) -> bool {
        self.ctx.several_services
            && !self.ctx.school
            && self.st.mv.is_none()
            && self
                .st
                .flow
                .as_ref()
                .is_some_and(|f| Service::ids_in(&f.svc.id).count() < VISIT_MAX_SERVICES)
    }

    fn adding_service(&self) -> bool {
        self.st.flow.as_ref().is_some_and(|f| f.adding)
    }

    fn pick_master(&mut self, id: Option<&str>) {
        let school = self.ctx.school;
        let Some(flow) = &mut self.st.flow else {
            self.menu();
            return;
        };
        if school {
            // A course is chosen with a group (or the trial lesson), never "any".
            match id {
                Some(id) if flow.masters.iter().any(|m| m.id == id) => {
                    flow.master = Some(id.to_string());
                    self.after_slot();
                }
                _ => self.again(Note::Hint),
            }
            return;
        }
        match id {
            Some(id) if flow.masters.iter().any(|m| m.id == id) => {
                flow.master = Some(id.to_string())
            }
            Some(_) => {
                self.again(Note::Hint);
                return;
            }
            None => flow.master = None,
        }
        self.st.week = 0;
        self.load_days();
    }

    /// What the day and time screens look for: service, master and slot length.
    fn target(&self) -> Option<(String, Option<String>, u32)> {
        if let Some(mv) = &self.st.mv {
            return Some((mv.svc_id.clone(), Some(mv.master_id.clone()), mv.dur));
        }
        self.st
            .flow
            .as_ref()
            .map(|f| (f.svc.id.clone(), f.master.clone(), f.svc.duration_min))
    }

    fn week_range(&self) -> (NaiveDate, NaiveDate) {
        let from = self.today() + Duration::days(7 * i64::from(self.st.week));
        (from, from + Duration::days(6))
    }

    fn load_days(&mut self) {
        let Some((service_id, master_id, _)) = self.target() else {
            self.menu();
            return;
        };
        let (from, to) = self.week_range();
        self.st.at = At::Days;
        self.st.day = None;
        self.command(Command::LoadDays {
            service_id,
            master_id,
            from,
            to,
        });
    }

    fn render_days(&mut self, mut days: Vec<NaiveDate>) {
        let (from, to) = self.week_range();
        let today = self.today();
        days.retain(|d| *d >= from && *d <= to && *d >= today);
        days.sort();
        days.dedup();
        self.bump();
        let range = format!("{} – {}", self.short_date(from), self.short_date(to));
        let text = if days.is_empty() {
            self.ta("no-days", &[("range", range.into())])
        } else {
            self.ta("choose-day", &[("range", range.into())])
        };
        let mut rows: Vec<Vec<Button>> = Vec::new();
        for chunk in days.chunks(DAYS_PER_ROW) {
            let row = chunk
                .iter()
                .map(|d| {
                    let label = self.day_button(*d);
                    self.button_raw(label, &format!("d:{}", d.format("%Y%m%d")))
                })
                .collect();
            rows.push(row);
        }
        let mut nav = Vec::new();
        if self.st.week > 0 {
            nav.push(self.btn("btn-prev-week", &format!("w:{}", self.st.week - 1)));
        }
        if self.st.week < MAX_WEEKS {
            nav.push(self.btn("btn-next-week", &format!("w:{}", self.st.week + 1)));
        }
        if !nav.is_empty() {
            rows.push(nav);
        }
        rows.push(vec![self.btn("btn-back", "<")]);
        self.screen(text, rows, false);
    }

    fn pick_day(&mut self, arg: &str) {
        let (from, to) = self.week_range();
        match NaiveDate::parse_from_str(arg, "%Y%m%d") {
            Ok(day) if day >= from && day <= to && day >= self.today() => {
                self.st.day = Some(day);
                self.load_slots();
            }
            _ => self.again(Note::Hint),
        }
    }

    fn load_slots(&mut self) {
        let (Some((service_id, master_id, _)), Some(day)) = (self.target(), self.st.day) else {
            self.menu();
            return;
        };
        self.st.at = At::Times;
        self.command(Command::LoadSlots {
            service_id,
            master_id,
            day,
        });
    }

    fn render_times(&mut self, mut slots: Vec<Slot>) {
        let Some(day) = self.st.day else {
            self.menu();
            return;
        };
        let now = self.ctx.now;
        let tz = self.ctx.timezone;
        slots.retain(|s| s.start > now && s.start.with_timezone(&tz).date_naive() == day);
        slots.sort_by(|a, b| a.start.cmp(&b.start).then(a.master_id.cmp(&b.master_id)));
        // With any master several masters may be free at once; the client picks a time.
        slots.dedup_by_key(|s| s.start);
        slots.truncate(MAX_TIMES);
        self.bump();
        let day_label = self.day_label(day);
        let text = if slots.is_empty() {
            self.ta("no-times", &[("day", day_label.into())])
        } else {
            self.ta("choose-time", &[("day", day_label.into())])
        };
        let mut rows: Vec<Vec<Button>> = Vec::new();
        for chunk in slots.chunks(TIMES_PER_ROW) {
            let row = chunk
                .iter()
                .map(|s| {
                    let label = self.time(s.start);
                    let data = format!("t:{}:{}", s.start.timestamp(), s.master_id);
                    self.button_raw(label, &data)
                })
                .collect();
            rows.push(row);
        }
        rows.push(vec![self.btn("btn-back", "<")]);
        self.screen(text, rows, false);
    }

    fn pick_time(&mut self, arg: &str) {
        let parsed = arg.split_once(':').and_then(|(secs, master)| {
            let start = DateTime::<Utc>::from_timestamp(secs.parse().ok()?, 0)?;
            (!master.is_empty()).then(|| (start, master.to_string()))
        });
        let (Some((start, master_id)), Some((_, wanted_master, dur))) = (parsed, self.target())
        else {
            self.again(Note::Hint);
            return;
        };
        let on_day = Some(self.local(start).date_naive()) == self.st.day;
        let right_master = wanted_master.is_none_or(|m| m == master_id);
        if !on_day || !right_master || start <= self.ctx.now {
            self.again(Note::Hint);
            return;
        }
        self.st.slot = Some(Slot {
            master_id,
            start,
            duration_min: dur,
        });
        self.after_slot();
    }

    /// Asks for what is still unknown about the client, then shows the confirmation.
    fn after_slot(&mut self) {
        if self.st.mv.is_none() && self.consent_needed() {
            self.ask_consent(ConsentFor::Booking);
        } else if self.st.mv.is_none() && self.st.phone.is_none() {
            self.st.at = At::Phone;
            self.render_phone();
        } else if self.st.mv.is_none() && self.st.name.is_none() {
            self.st.at = At::Name;
            self.render_name();
        } else {
            self.st.at = At::Confirm;
            self.render_confirm();
        }
    }

    // ---- personal-data consent -----------------------------------------------------------

    /// Whether the client has yet to agree to the consent text as it reads now.
    fn consent_needed(&self) -> bool {
        self.ctx.consent
            && self
                .st
                .consent
                .as_ref()
                .is_none_or(|c| c.version != self.consent_version())
    }

    /// What the client agrees to: what is collected, for what, and the policy when linked.
    fn consent_text(&self) -> String {
        let mut text = self.ta(
            "consent",
            &[("business", self.ctx.business_name.clone().into())],
        );
        if let Some(url) = &self.ctx.policy_url {
            text.push('\n');
            text.push_str(&self.ta("consent-policy", &[("url", url.clone().into())]));
        }
        text
    }

    /// `ru-1a2b3c4d5e6f`: the language and a digest of the text and the policy link, so an
    /// agreement to an older text (or another policy) is told apart and asked again.
    fn consent_version(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(self.consent_text().as_bytes());
        hash.update(b"\n");
        hash.update(
            self.ctx
                .policy_url
                .as_deref()
                .unwrap_or_default()
                .as_bytes(),
        );
        let digest = hash.finalize();
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("{}-{hex}", self.lang.code())
    }

    fn ask_consent(&mut self, next: ConsentFor) {
        self.st.at = At::Consent(next);
        self.render_consent();
    }

    fn render_consent(&mut self) {
        self.bump();
        let text = self.consent_text();
        let buttons = vec![
            vec![self.btn("btn-consent", "G")],
            vec![self.btn("btn-back", "<"), self.btn("btn-menu", "M")],
        ];
        self.screen(text, buttons, false);
    }

    fn agree(&mut self, next: ConsentFor) {
        self.st.consent = Some(Consent {
            at: self.ctx.now,
            version: self.consent_version(),
        });
        match next {
            ConsentFor::Booking => self.after_slot(),
            ConsentFor::DataPhone => {
                self.st.at = At::DataPhone;
                self.render_data_phone();
            }
            ConsentFor::DataName => {
                self.st.at = At::DataName;
                self.render_data_name();
            }
        }
    }

    fn render_phone(&mut self) {
        self.bump();
        let text = self.t("ask-phone");
        let buttons = vec![vec![self.btn("btn-back", "<")]];
        self.screen(text, buttons, true);
    }

    fn take_phone(&mut self, raw: &str) {
        // A conversation left at the phone step before the consent was asked for.
        if self.consent_needed() {
            self.st.note = Some(Note::ConsentFirst);
            self.ask_consent(ConsentFor::Booking);
            return;
        }
        match Phone::parse(raw) {
            Ok(phone) => {
                self.st.phone = Some(phone);
                self.after_slot();
            }
            Err(_) => self.again(Note::BadPhone),
        }
    }

    fn render_name(&mut self) {
        self.bump();
        let text = self.t("ask-name");
        let buttons = vec![vec![self.btn("btn-back", "<")]];
        self.screen(text, buttons, false);
    }

    fn take_name(&mut self, raw: &str) {
        match read_name(raw) {
            Ok(name) => {
                self.st.name = Some(name);
                self.after_slot();
            }
            Err(note) => self.again(note),
        }
    }

    /// The master a slot belongs to, when the loaded list names them.
    fn slot_master(&self, slot: &Slot) -> Option<Master> {
        self.st
            .flow
            .as_ref()?
            .masters
            .iter()
            .find(|m| m.id == slot.master_id)
            .cloned()
    }

    fn render_confirm(&mut self) {
        if self.ctx.school && self.st.mv.is_none() {
            self.render_enrol_confirm();
            return;
        }
        let Some(slot) = self.st.slot.clone() else {
            self.show_times_or_menu();
            return;
        };
        let text = if let Some(mv) = self.st.mv.clone() {
            self.ta(
                "confirm-reschedule",
                &[
                    ("service", mv.svc.into()),
                    ("master", mv.master.into()),
                    ("old", self.when(mv.start).into()),
                    ("new", self.when(slot.start).into()),
                    ("address", self.ctx.address.clone().into()),
                ],
            )
        } else {
            let (Some(flow), Some(phone), Some(name)) = (
                self.st.flow.clone(),
                self.st.phone.clone(),
                self.st.name.clone(),
            ) else {
                self.menu();
                return;
            };
            let master = self
                .slot_master(&slot)
                .map(|m| m.name)
                .unwrap_or_else(|| self.t("any-master"));
            let mut text = self.ta(
                "confirm-booking",
                &[
                    ("service", flow.svc.name.clone().into()),
                    ("master", master.into()),
                    ("when", self.when(slot.start).into()),
                    ("duration", self.duration(flow.svc.duration_min).into()),
                    ("price", self.price(&flow.svc).into()),
                    ("address", self.ctx.address.clone().into()),
                    ("name", self.visitor_name(&name).into()),
                    ("phone", self.visitor_phone(&phone).formatted().into()),
                ],
            );
            if self.st.guest.is_some() {
                text.push('\n');
                text.push_str(&self.booker_line(&name, &phone));
            }
            if let Some(comment) = &self.st.comment {
                text.push('\n');
                text.push_str(&self.ta("confirm-comment", &[("comment", comment.clone().into())]));
            }
            text
        };
        self.bump();
        let mut buttons = vec![vec![self.btn("btn-confirm", "K")]];
        if self.st.mv.is_none() {
            let key = if self.st.comment.is_some() {
                "btn-comment-edit"
            } else {
                "btn-comment"
            };
            buttons.push(vec![self.btn(key, "N")]);
            if self.st.guest.is_some() {
                buttons.push(vec![self.btn("btn-guest-self", "Os")]);
            } else {
                buttons.push(vec![self.btn("btn-guest", "O")]);
            }
        }
        buttons.push(vec![self.btn("btn-change-time", "T")]);
        buttons.push(vec![self.btn("btn-cancel", "X")]);
        self.screen(text, buttons, false);
    }

    fn render_comment(&mut self) {
        self.bump();
        let text = self.ta(
            "ask-comment",
            &[(
                "max",
                i64::try_from(COMMENT_MAX_CHARS).unwrap_or(i64::MAX).into(),
            )],
        );
        let mut rows = Vec::new();
        if self.st.comment.is_some() {
            rows.push(vec![self.btn("btn-comment-drop", "Nx")]);
        }
        rows.push(vec![self.btn("btn-back", "<")]);
        self.screen(text, rows, false);
    }

    fn take_comment(&mut self, raw: &str) {
        let comment = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        if comment.chars().count() > COMMENT_MAX_CHARS {
            self.again(Note::CommentLong);
            return;
        }
        self.st.comment = (!comment.is_empty()).then_some(comment);
        self.st.at = At::Confirm;
        self.render_confirm();
    }

    /// Who comes to the visit: the other person when booking for them, else the client.
    fn visitor_name(&self, own: &str) -> String {
        self.st
            .guest
            .as_ref()
            .map_or_else(|| own.to_string(), |g| g.name.clone())
    }

    /// The visitor's phone; the client's own when the other person has none given.
    fn visitor_phone(&self, own: &Phone) -> Phone {
        self.st
            .guest
            .as_ref()
            .and_then(|g| g.phone.clone())
            .unwrap_or_else(|| own.clone())
    }

    /// "Booked by: name, phone", the client who books for someone else.
    fn booker_line(&self, name: &str, phone: &Phone) -> String {
        self.ta(
            "confirm-booker",
            &[
                ("name", name.to_string().into()),
                ("phone", phone.formatted().into()),
            ],
        )
    }

    fn render_guest_name(&mut self) {
        self.bump();
        let text = self.t("ask-guest-name");
        let buttons = vec![vec![self.btn("btn-back", "<")]];
        self.screen(text, buttons, false);
    }

    fn take_guest_name(&mut self, raw: &str) {
        match read_name(raw) {
            Ok(name) => {
                self.st.guest = Some(Guest { name, phone: None });
                self.st.at = At::GuestPhone;
                self.render_guest_phone();
            }
            Err(note) => self.again(note),
        }
    }

    fn render_guest_phone(&mut self) {
        self.bump();
        let text = self.t("ask-guest-phone");
        let buttons = vec![
            vec![self.btn("btn-guest-no-phone", "Op")],
            vec![self.btn("btn-back", "<")],
        ];
        self.screen(text, buttons, false);
    }

    fn take_guest_phone(&mut self, raw: &str) {
        let Some(guest) = self.st.guest.as_mut() else {
            self.st.at = At::Confirm;
            self.render_confirm();
            return;
        };
        match Phone::parse(raw) {
            Ok(phone) => {
                guest.phone = Some(phone);
                self.st.at = At::Confirm;
                self.render_confirm();
            }
            Err(_) => self.again(Note::BadPhone),
        }
    }

    fn show_times_or_menu(&mut self) {
        if self.st.day.is_some() && self.target().is_some() {
            self.load_slots();
        } else {
            self.menu();
        }
    }

    fn confirm(&mut self) {
        // The text may have changed since the client reached the confirmation: nothing about
        // them is written without their agreement to the text as it reads now.
        if self.st.mv.is_none() && self.consent_needed() {
            self.ask_consent(ConsentFor::Booking);
            return;
        }
        if self.ctx.school && self.st.mv.is_none() {
            self.enrol();
            return;
        }
        let Some(slot) = self.st.slot.clone() else {
            self.show_times_or_menu();
            return;
        };
        if let Some(mv) = &self.st.mv {
            let booking_id = mv.id.clone();
            self.st.at = At::Rescheduling;
            self.write(Command::Reschedule { booking_id, slot }, "rescheduling");
            return;
        }
        let (Some(flow), Some(phone), Some(name)) = (
            self.st.flow.clone(),
            self.st.phone.clone(),
            self.st.name.clone(),
        ) else {
            self.menu();
            return;
        };
        // For someone else, the schedule's record is theirs, and its comment says who booked
        // it and how to reach them.
        let comment = match &self.st.guest {
            Some(_) => Some(
                [
                    self.st.comment.clone(),
                    Some(self.booker_line(&name, &phone)),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("\n"),
            ),
            None => self.st.comment.clone(),
        };
        let draft = BookingDraft {
            master: self.slot_master(&slot),
            service: flow.svc,
            slot,
            phone: self.visitor_phone(&phone),
            name: self.visitor_name(&name),
            source: self
                .st
                .source
                .clone()
                .unwrap_or_else(|| Source::direct(self.ctx.channel)),
            comment,
            consent: self.st.consent.clone(),
        };
        self.st.at = At::Booking;
        self.write(Command::Book(draft), "booking");
    }

    // ---- confirmation code ---------------------------------------------------------------

    /// The schedule sent the client a code and holds the booking until it is typed here.
    fn render_code(&mut self) {
        let At::Code(w) = self.st.at.clone() else {
            self.menu();
            return;
        };
        let phone = self
            .st
            .phone
            .as_ref()
            .map(Phone::formatted)
            .unwrap_or_default();
        let mut text = self.ta("ask-code", &[("phone", phone.into())]);
        if w.tries > 0 {
            let left = i64::from(CODE_TRIES.saturating_sub(w.tries));
            text = format!(
                "{}\n\n{text}",
                self.ta("code-tries-left", &[("count", left.into())])
            );
        }
        self.bump();
        let mut rows = Vec::new();
        if !w.resent {
            rows.push(vec![self.btn("btn-resend-code", "Rs")]);
        }
        rows.push(vec![self.btn("btn-cancel", "X")]);
        self.screen(text, rows, false);
    }

    fn take_code(&mut self, raw: &str) {
        let At::Code(w) = self.st.at.clone() else {
            self.again(Note::Hint);
            return;
        };
        let code: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if !CODE_LEN.contains(&code.chars().count()) || !code.chars().all(|c| c.is_ascii_digit()) {
            self.again(Note::BadCode);
            return;
        }
        let booking_id = w.booking.clone();
        self.st.at = At::CodeCheck(w);
        self.write(Command::SubmitCode { booking_id, code }, "code-checking");
    }

    /// Drops a booking that waited for a code: on the client's cancel, or after the last wrong
    /// try, when the phone is the way left to book.
    fn give_up_code(&mut self, booking_id: String, out_of_tries: bool) {
        self.st.at = At::Menu;
        self.command(Command::AbandonCode { booking_id });
        if !out_of_tries {
            self.clear_flow();
            self.st.note = Some(Note::BookingDropped);
            self.menu();
            return;
        }
        let text = match &self.ctx.business_phone {
            Some(phone) => self.ta("code-failed-call", &[("phone", phone.clone().into())]),
            None => self.t("code-failed"),
        };
        self.clear_flow();
        self.bump();
        let buttons = vec![vec![self.btn("btn-menu", "M")]];
        self.st.edit = false;
        self.screen(text, buttons, false);
    }

    /// Sends a write. The version moves on first, so a second tap on the same button (or any
    /// button of the screen that asked) is stale and cannot write twice.
    fn write(&mut self, command: Command, wait_key: &str) {
        self.bump();
        let text = self.t(wait_key);
        self.say(text, Vec::new(), false);
        self.command(command);
    }

    fn done(&mut self, booking: &Booking, key: &str) {
        let when = self.when(booking.start);
        // The record holds the lowest price of a range; the client was shown "from" it.
        let price = match &self.st.flow {
            Some(flow) if flow.svc.id == booking.service_id => self.price(&flow.svc),
            _ => booking.price.to_string(),
        };
        let text = self.ta(
            key,
            &[
                ("service", booking.service_name.clone().into()),
                ("master", booking.master_name.clone().into()),
                ("when", when.into()),
                ("price", price.into()),
                ("address", self.ctx.address.clone().into()),
            ],
        );
        self.clear_flow();
        self.bump();
        let buttons = vec![
            vec![self.btn("btn-my", "Y")],
            vec![self.btn("btn-book", "B"), self.btn("btn-menu", "M")],
        ];
        // A confirmation is a new message the client can find later, not an edit.
        self.st.edit = false;
        self.screen(text, buttons, false);
    }

    // ---- school mode --------------------------------------------------------------------

    /// A course's groups with their start dates, and the trial lesson when it has one.
    fn render_groups(&mut self) {
        let Some(flow) = self.st.flow.clone() else {
            self.menu();
            return;
        };
        self.bump();
        let mut rows = Vec::new();
        let course = flow.svc.name.clone();
        let text = if flow.masters.is_empty() {
            self.ta("school-no-groups", &[("course", course.into())])
        } else {
            for g in &flow.masters {
                let label = if g.id == TRIAL {
                    self.t("school-btn-trial")
                } else if g.specialization.is_empty() {
                    g.name.clone()
                } else {
                    format!("{} · {}", g.name, g.specialization)
                };
                rows.push(vec![self.button_raw(label, &format!("m:{}", g.id))]);
            }
            self.ta("school-choose-group", &[("course", course.into())])
        };
        rows.push(vec![self.btn("btn-back", "<")]);
        self.st.at = At::Masters;
        self.screen(text, rows, false);
    }

    fn chosen_group(&self) -> Option<Master> {
        let flow = self.st.flow.as_ref()?;
        let id = flow.master.as_ref()?;
        flow.masters.iter().find(|m| &m.id == id).cloned()
    }

    fn render_enrol_confirm(&mut self) {
        let (Some(flow), Some(group), Some(phone), Some(name)) = (
            self.st.flow.clone(),
            self.chosen_group(),
            self.st.phone.clone(),
            self.st.name.clone(),
        ) else {
            self.menu();
            return;
        };
        let group_text = if group.id == TRIAL {
            self.t("school-trial")
        } else if group.specialization.is_empty() {
            group.name.clone()
        } else {
            format!("{}, {}", group.name, group.specialization)
        };
        let text = self.ta(
            "school-confirm",
            &[
                ("course", flow.svc.name.clone().into()),
                ("group", group_text.into()),
                ("name", name.into()),
                ("phone", phone.formatted().into()),
            ],
        );
        self.bump();
        let buttons = vec![
            vec![self.btn("school-btn-send", "K")],
            vec![self.btn("btn-back", "<")],
            vec![self.btn("btn-cancel", "X")],
        ];
        self.screen(text, buttons, false);
    }

    fn enrol(&mut self) {
        let (Some(flow), Some(group), Some(phone), Some(name)) = (
            self.st.flow.clone(),
            self.chosen_group(),
            self.st.phone.clone(),
            self.st.name.clone(),
        ) else {
            self.menu();
            return;
        };
        let trial = group.id == TRIAL;
        let draft = EnrolDraft {
            course: flow.svc,
            group: (!trial).then_some(group),
            trial,
            phone,
            name,
            source: self
                .st
                .source
                .clone()
                .unwrap_or_else(|| Source::direct(self.ctx.channel)),
            consent: self.st.consent.clone(),
        };
        self.st.at = At::Booking;
        self.write(Command::Enrol(draft), "school-sending");
    }

    fn enrolled(&mut self, course: String, group: Option<String>) {
        let text = match group {
            Some(group) => self.ta(
                "school-enrolled",
                &[("course", course.into()), ("group", group.into())],
            ),
            None => self.ta("school-enrolled-trial", &[("course", course.into())]),
        };
        self.clear_flow();
        self.bump();
        let buttons = vec![vec![self.btn("btn-book", "B"), self.btn("btn-menu", "M")]];
        self.st.edit = false;
        self.screen(text, buttons, false);
    }

    // ---- my bookings --------------------------------------------------------------------

    fn my_bookings(&mut self, act: Option<Act>) {
        if act.is_none() {
            self.clear_flow();
        }
        self.st.at = At::My { act };
        self.command(Command::LoadMyBookings {
            phone: self.st.phone.clone(),
        });
    }

    fn my_loaded(&mut self, list: Vec<Booking>, act: Option<Act>) {
        let now = self.ctx.now;
        // Visits that took place (or were booked and are over), newest first: "book again".
        let mut past: Vec<Booking> = list
            .iter()
            .filter(|b| {
                b.start <= now && matches!(b.status, BookingStatus::Booked | BookingStatus::Visited)
            })
            .cloned()
            .collect();
        past.sort_by_key(|b| std::cmp::Reverse(b.start));
        past.dedup_by(|a, b| a.service_id == b.service_id && a.master_id == b.master_id);
        past.truncate(PAST_VISITS);
        let mut upcoming: Vec<Booking> = list
            .into_iter()
            .filter(|b| b.status.is_active() && b.start > now)
            .collect();
        upcoming.sort_by_key(|b| b.start);
        let Some(act) = act else {
            self.render_my(&upcoming, &past);
            return;
        };
        let id = match &act {
            Act::Cancel(id) | Act::Move(id) => id,
        };
        let Some(b) = upcoming.iter().find(|b| &b.id == id) else {
            self.st.at = At::My { act: None };
            self.st.note = Some(Note::NotFound);
            self.render_my(&upcoming, &past);
            return;
        };
        if self.too_late_to_change(b.start) {
            let b = b.clone();
            self.clear_flow();
            self.render_too_late(&b.service_name, b.start);
            return;
        }
        self.st.flow = None;
        self.st.mv = Some(Moving {
            id: b.id.clone(),
            svc_id: b.service_id.clone(),
            svc: b.service_name.clone(),
            master_id: b.master_id.clone(),
            master: b.master_name.clone(),
            dur: b.duration_min,
            start: b.start,
        });
        match act {
            Act::Cancel(_) => {
                self.st.at = At::CancelAsk;
                self.render_cancel_ask();
            }
            Act::Move(_) => {
                self.st.week = 0;
                self.st.slot = None;
                self.load_days();
            }
        }
    }

    fn render_my(&mut self, upcoming: &[Booking], past: &[Booking]) {
        self.st.at = At::My { act: None };
        self.bump();
        let again_rows: Vec<Vec<Button>> = past
            .iter()
            .map(|b| {
                let label = self.ta(
                    "btn-again",
                    &[
                        ("service", b.service_name.clone().into()),
                        ("master", b.master_name.clone().into()),
                    ],
                );
                vec![self.button_raw(label, &format!("Ag:{}:{}", b.service_id, b.master_id))]
            })
            .collect();
        if upcoming.is_empty() {
            let mut text = self.t("my-none");
            if !past.is_empty() {
                text.push_str("\n\n");
                text.push_str(&self.t("my-past"));
            }
            let mut buttons = again_rows;
            buttons.push(vec![self.btn("btn-book", "B")]);
            buttons.push(vec![self.btn("btn-menu", "M")]);
            self.screen(text, buttons, false);
            return;
        }
        let count = i64::try_from(upcoming.len()).unwrap_or(i64::MAX);
        let mut text = self.ta("my-count", &[("count", count.into())]);
        let mut rows = Vec::new();
        for (i, b) in upcoming.iter().enumerate() {
            let n = i + 1;
            text.push_str("\n\n");
            text.push_str(&self.ta(
                "my-item",
                &[
                    ("n", n.into()),
                    ("service", b.service_name.clone().into()),
                    ("master", b.master_name.clone().into()),
                    ("when", self.when(b.start).into()),
                ],
            ));
            if self.too_late_to_change(b.start) {
                text.push('\n');
                text.push_str(&self.call_instead("my-item-call"));
                continue;
            }
            let cancel = self.ta("btn-cancel-n", &[("n", n.into())]);
            let move_ = self.ta("btn-reschedule-n", &[("n", n.into())]);
            rows.push(vec![
                self.button_raw(cancel, &format!("C:{}", b.id)),
                self.button_raw(move_, &format!("R:{}", b.id)),
            ]);
        }
        if !past.is_empty() {
            text.push_str("\n\n");
            text.push_str(&self.t("my-past"));
            rows.extend(again_rows);
        }
        rows.push(vec![self.btn("btn-book", "B"), self.btn("btn-back", "<")]);
        self.screen(text, rows, false);
    }

    /// Whether the visit at `start` is inside `booking.change_cutoff`: too close to be
    /// cancelled or moved online.
    fn too_late_to_change(&self, start: DateTime<Utc>) -> bool {
        self.ctx
            .change_cutoff
            .is_some_and(|cutoff| start - self.ctx.now < cutoff)
    }

    /// The visit being cancelled or moved has come inside the cut-off since it was picked.
    fn moving_too_late(&self) -> bool {
        self.st
            .mv
            .as_ref()
            .is_some_and(|mv| self.too_late_to_change(mv.start))
    }

    fn too_late(&mut self) {
        let Some(mv) = self.st.mv.take() else {
            self.my_bookings(None);
            return;
        };
        self.render_too_late(&mv.svc, mv.start);
    }

    /// `key` with the business phone, or its variant without one (`<key>-nophone`).
    fn call_instead(&self, key: &str) -> String {
        match &self.ctx.business_phone {
            Some(phone) => self.ta(key, &[("phone", phone.clone().into())]),
            None => self.t(&format!("{key}-nophone")),
        }
    }

    /// A visit too close to change online: say so and give the phone to call.
    fn render_too_late(&mut self, service: &str, start: DateTime<Utc>) {
        let mut text = self.ta(
            "change-too-late",
            &[
                ("service", service.to_string().into()),
                ("when", self.when(start).into()),
            ],
        );
        text.push('\n');
        text.push_str(&self.call_instead("change-call"));
        self.st.at = At::My { act: None };
        self.bump();
        let buttons = vec![vec![self.btn("btn-my", "Y"), self.btn("btn-menu", "M")]];
        self.screen(text, buttons, false);
    }

    fn render_cancel_ask(&mut self) {
        let Some(mv) = self.st.mv.clone() else {
            self.my_bookings(None);
            return;
        };
        let text = self.ta(
            "cancel-ask",
            &[
                ("service", mv.svc.into()),
                ("master", mv.master.into()),
                ("when", self.when(mv.start).into()),
            ],
        );
        self.bump();
        let buttons = vec![vec![
            self.btn("btn-yes-cancel", "Cy"),
            self.btn("btn-no", "Cn"),
        ]];
        self.screen(text, buttons, false);
    }

    fn cancel_booking(&mut self) {
        let Some(mv) = &self.st.mv else {
            self.my_bookings(None);
            return;
        };
        let booking_id = mv.id.clone();
        self.st.at = At::Cancelling;
        self.write(Command::Cancel { booking_id }, "cancelling");
    }

    // ---- my data ------------------------------------------------------------------------

    fn my_data(&mut self) {
        self.clear_flow();
        self.st.at = At::Data;
        self.render_data();
    }

    /// The name and phone the next booking is made with, and buttons to change them.
    fn render_data(&mut self) {
        let unset = self.t("data-unset");
        let name = self.st.name.clone().unwrap_or_else(|| unset.clone());
        let phone = self.st.phone.as_ref().map_or(unset, Phone::formatted);
        let text = self.ta("data", &[("name", name.into()), ("phone", phone.into())]);
        self.bump();
        let buttons = vec![
            vec![self.btn("btn-data-name", "Dn")],
            vec![self.btn("btn-data-phone", "Dp")],
            vec![self.btn("btn-menu", "M")],
        ];
        self.screen(text, buttons, false);
    }

    fn render_data_name(&mut self) {
        self.bump();
        let text = self.t("data-ask-name");
        let buttons = vec![vec![self.btn("btn-back", "<")]];
        self.screen(text, buttons, false);
    }

    fn render_data_phone(&mut self) {
        self.bump();
        let text = self.t("data-ask-phone");
        let buttons = vec![vec![self.btn("btn-back", "<")]];
        self.screen(text, buttons, true);
    }

    fn change_name(&mut self, raw: &str) {
        match read_name(raw) {
            Ok(name) => {
                self.st.name = Some(name);
                self.st.at = At::Data;
                self.st.note = Some(Note::NameSaved);
                self.render_data();
            }
            Err(note) => self.again(note),
        }
    }

    fn change_phone(&mut self, raw: &str) {
        if self.consent_needed() {
            self.st.note = Some(Note::ConsentFirst);
            self.ask_consent(ConsentFor::DataPhone);
            return;
        }
        match Phone::parse(raw) {
            Ok(phone) => {
                self.st.phone = Some(phone);
                self.st.at = At::Data;
                self.st.note = Some(Note::PhoneSaved);
                self.render_data();
            }
            Err(_) => self.again(Note::BadPhone),
        }
    }

    // ---- output helpers -----------------------------------------------------------------

    fn command(&mut self, command: Command) {
        self.out.commands.push(command);
    }

    /// Starts a new screen: buttons of every earlier one become stale.
    fn bump(&mut self) {
        self.st.v = self.st.v.wrapping_add(1);
    }

    /// A reply with any pending note above it.
    fn screen(&mut self, text: String, mut buttons: Vec<Vec<Button>>, request_contact: bool) {
        // "Call an administrator" on every screen with buttons, once.
        if self.ctx.support.is_some()
            && !buttons.is_empty()
            && !buttons.iter().flatten().any(|b| b.data.ends_with("|Q"))
        {
            buttons.push(vec![self.btn("btn-call-admin", "Q")]);
        }
        let text = match self.st.note.take() {
            Some(note) => format!("{}\n\n{text}", self.t(note_key(note))),
            None => text,
        };
        self.say(text, buttons, request_contact);
    }

    fn say(&mut self, text: String, buttons: Vec<Vec<Button>>, request_contact: bool) {
        // Only the first reply to a press replaces its message; later ones follow it.
        let edit = std::mem::take(&mut self.st.edit);
        self.out.replies.push(Reply {
            text,
            buttons,
            request_contact,
            edit,
        });
    }

    fn render_menu(&mut self, text: String) {
        self.clear_flow();
        self.bump();
        // `screen` adds "call an administrator" when there is an admin chat.
        let buttons = vec![
            vec![self.btn("btn-book", "B")],
            vec![self.btn("btn-my", "Y")],
            vec![self.btn("btn-data", "D"), self.btn("btn-help", "H")],
        ];
        self.screen(text, buttons, false);
    }

    /// A button labelled with the message `key`.
    fn btn(&self, key: &str, payload: &str) -> Button {
        let label = self.t(key);
        self.button_raw(label, payload)
    }

    fn button_raw(&self, label: String, payload: &str) -> Button {
        let data = format!("{}|{payload}", self.st.v);
        debug_assert!(
            data.len() <= MAX_BUTTON_DATA,
            "button data {data:?} is longer than {MAX_BUTTON_DATA} bytes"
        );
        Button { label, data }
    }

    fn t(&self, key: &str) -> String {
        self.ctx.texts.t(self.lang, key)
    }

    fn ta(&self, key: &str, args: &[(&str, FluentValue<'_>)]) -> String {
        self.ctx.texts.t_args(self.lang, key, args)
    }

    // ---- formatting ---------------------------------------------------------------------

    fn local(&self, t: DateTime<Utc>) -> DateTime<Tz> {
        t.with_timezone(&self.ctx.timezone)
    }

    fn today(&self) -> NaiveDate {
        self.local(self.ctx.now).date_naive()
    }

    /// `2 дек`, `2 Dec`.
    fn short_date(&self, d: NaiveDate) -> String {
        format!("{} {}", d.day(), self.t(&format!("month-{}", d.month())))
    }

    /// `Пн 2 дек`, `Mon 2 Dec`.
    fn day_label(&self, d: NaiveDate) -> String {
        let weekday = self.t(&format!("weekday-{}", d.weekday().number_from_monday()));
        format!("{weekday} {}", self.short_date(d))
    }

    /// A day button: `Сегодня 2 дек`, `Завтра 3 дек`, else `Ср 4 дек`. "Today" is the
    /// business's, not the server's: the client books by the salon's calendar.
    fn day_button(&self, d: NaiveDate) -> String {
        let today = self.today();
        let key = if d == today {
            "day-today"
        } else if today.succ_opt() == Some(d) {
            "day-tomorrow"
        } else {
            return self.day_label(d);
        };
        format!("{} {}", self.t(key), self.short_date(d))
    }

    /// `10:00` on the business clock.
    fn time(&self, t: DateTime<Utc>) -> String {
        self.local(t).format("%H:%M").to_string()
    }

    /// `Пн 2 дек, 10:00` on the business clock.
    fn when(&self, t: DateTime<Utc>) -> String {
        let day = self.day_label(self.local(t).date_naive());
        format!("{day}, {}", self.time(t))
    }

    fn price(&self, s: &Service) -> String {
        if s.price_min == s.price_max {
            s.price_min.to_string()
        } else {
            self.ta("price-from", &[("price", s.price_min.to_string().into())])
        }
    }

    /// `45 минут`, `1 час 30 минут`.
    fn duration(&self, minutes: u32) -> String {
        let (h, m) = (i64::from(minutes / 60), i64::from(minutes % 60));
        let hours = self.ta("hours", &[("count", h.into())]);
        let mins = self.ta("minutes", &[("count", m.into())]);
        match (h, m) {
            (0, _) => mins,
            (_, 0) => hours,
            _ => format!("{hours} {mins}"),
        }
    }

    /// `Стрижка · от 1 500 ₽ · 1 час`; a course by its title alone.
    fn service_label(&self, s: &Service) -> String {
        if self.ctx.school {
            return s.name.clone();
        }
        format!(
            "{} · {} · {}",
            s.name,
            self.price(s),
            self.duration(s.duration_min)
        )
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
