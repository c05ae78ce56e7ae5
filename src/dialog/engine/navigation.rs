//! Moving around: the menu, help, calling an administrator, back, retry, and leaving a flow
//! (which gives up what it held).

use super::*;

impl Engine<'_> {
    // ---- navigation ---------------------------------------------------------------------

    pub(super) fn clear_flow(&mut self) {
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
    pub(super) fn leave(&mut self) {
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

    pub(super) fn menu(&mut self) {
        self.clear_flow();
        let text = self.t("menu");
        self.render_menu(text);
    }

    pub(super) fn help(&mut self) {
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
    pub(super) fn call_admin(&mut self, question: Option<String>) {
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
    pub(super) fn again(&mut self, note: Note) {
        self.st.note = Some(note);
        self.show();
    }

    /// Renders the current step, loading what it shows when it is not kept in the state.
    pub(super) fn show(&mut self) {
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

    pub(super) fn back(&mut self) {
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

    pub(super) fn retry(&mut self) {
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

    pub(super) fn failed(&mut self) {
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
    pub(super) fn closed(&mut self) {
        let text = match &self.ctx.business_phone {
            Some(phone) => self.ta("booking-closed-call", &[("phone", phone.clone().into())]),
            None => self.t("booking-closed"),
        };
        self.bump();
        let buttons = vec![vec![self.btn("btn-menu", "M")]];
        self.say(text, buttons, false);
    }
}
