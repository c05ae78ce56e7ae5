//! The schedule's SMS confirmation code, and what a finished write says to the client.

use super::*;

impl Engine<'_> {
    // ---- confirmation code ---------------------------------------------------------------

    /// The schedule sent the client a code and holds the booking until it is typed here.
    pub(super) fn render_code(&mut self) {
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

    pub(super) fn take_code(&mut self, raw: &str) {
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
    pub(super) fn give_up_code(&mut self, booking_id: BookingId, out_of_tries: bool) {
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
    pub(super) fn write(&mut self, command: Command, wait_key: &str) {
        self.bump();
        let text = self.t(wait_key);
        self.say(text, Vec::new(), false);
        self.command(command);
    }

    pub(super) fn done(&mut self, booking: &Booking, key: &str) {
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
}
