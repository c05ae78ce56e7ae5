//! Who the visit is for and the last look before booking: personal-data consent, phone, name,
//! a guest's name and phone, a comment, the confirm screen and the booking itself.

use super::*;

impl Engine<'_> {
    // ---- personal-data consent -----------------------------------------------------------

    /// Whether the client has yet to agree to the consent text as it reads now.
    pub(super) fn consent_needed(&self) -> bool {
        self.ctx.consent
            && self
                .st
                .consent
                .as_ref()
                .is_none_or(|c| c.version != self.consent_version())
    }

    /// What the client agrees to: what is collected, for what, and the policy when linked.
    pub(super) fn consent_text(&self) -> String {
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
    pub(super) fn consent_version(&self) -> &str {
        self.consent_version
            .get_or_init(|| self.consent_version_now())
    }

    fn consent_version_now(&self) -> String {
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

    pub(super) fn ask_consent(&mut self, next: ConsentFor) {
        self.st.at = At::Consent(next);
        self.render_consent();
    }

    pub(super) fn render_consent(&mut self) {
        self.bump();
        let text = self.consent_text();
        let buttons = vec![
            vec![self.btn("btn-consent", "G")],
            vec![self.btn("btn-back", "<"), self.btn("btn-menu", "M")],
        ];
        self.screen(text, buttons, false);
    }

    pub(super) fn agree(&mut self, next: ConsentFor) {
        self.st.consent = Some(Consent {
            at: self.ctx.now,
            version: self.consent_version().to_string(),
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

    pub(super) fn render_phone(&mut self) {
        self.bump();
        let text = self.t("ask-phone");
        let buttons = vec![vec![self.btn("btn-back", "<")]];
        self.screen(text, buttons, true);
    }

    pub(super) fn take_phone(&mut self, raw: &str) {
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

    pub(super) fn render_name(&mut self) {
        self.bump();
        let text = self.t("ask-name");
        let buttons = vec![vec![self.btn("btn-back", "<")]];
        self.screen(text, buttons, false);
    }

    pub(super) fn take_name(&mut self, raw: &str) {
        match read_name(raw) {
            Ok(name) => {
                self.st.name = Some(name);
                self.after_slot();
            }
            Err(note) => self.again(note),
        }
    }

    /// The master a slot belongs to, when the loaded list names them.
    pub(super) fn slot_master(&self, slot: &Slot) -> Option<Master> {
        self.st
            .flow
            .as_ref()?
            .masters
            .iter()
            .find(|m| m.id == slot.master_id)
            .cloned()
    }

    pub(super) fn render_confirm(&mut self) {
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

    pub(super) fn render_comment(&mut self) {
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

    pub(super) fn take_comment(&mut self, raw: &str) {
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
    pub(super) fn visitor_name(&self, own: &str) -> String {
        self.st
            .guest
            .as_ref()
            .map_or_else(|| own.to_string(), |g| g.name.clone())
    }

    /// The visitor's phone; the client's own when the other person has none given.
    pub(super) fn visitor_phone(&self, own: &Phone) -> Phone {
        self.st
            .guest
            .as_ref()
            .and_then(|g| g.phone.clone())
            .unwrap_or_else(|| own.clone())
    }

    /// "Booked by: name, phone", the client who books for someone else.
    pub(super) fn booker_line(&self, name: &str, phone: &Phone) -> String {
        self.ta(
            "confirm-booker",
            &[
                ("name", name.to_string().into()),
                ("phone", phone.formatted().into()),
            ],
        )
    }

    pub(super) fn render_guest_name(&mut self) {
        self.bump();
        let text = self.t("ask-guest-name");
        let buttons = vec![vec![self.btn("btn-back", "<")]];
        self.screen(text, buttons, false);
    }

    pub(super) fn take_guest_name(&mut self, raw: &str) {
        match read_name(raw) {
            Ok(name) => {
                self.st.guest = Some(Guest { name, phone: None });
                self.st.at = At::GuestPhone;
                self.render_guest_phone();
            }
            Err(note) => self.again(note),
        }
    }

    pub(super) fn render_guest_phone(&mut self) {
        self.bump();
        let text = self.t("ask-guest-phone");
        let buttons = vec![
            vec![self.btn("btn-guest-no-phone", "Op")],
            vec![self.btn("btn-back", "<")],
        ];
        self.screen(text, buttons, false);
    }

    pub(super) fn take_guest_phone(&mut self, raw: &str) {
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

    pub(super) fn show_times_or_menu(&mut self) {
        if self.st.day.is_some() && self.target().is_some() {
            self.load_slots();
        } else {
            self.menu();
        }
    }

    pub(super) fn confirm(&mut self) {
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
}
