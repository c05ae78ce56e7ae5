//! "My bookings" (cancel, move, the cutoff before a visit) and "my data" (name, phone).

use super::*;

impl Engine<'_> {
    // ---- my bookings --------------------------------------------------------------------

    pub(super) fn my_bookings(&mut self, act: Option<Act>) {
        if act.is_none() {
            self.clear_flow();
        }
        self.st.at = At::My { act };
        self.command(Command::LoadMyBookings {
            phone: self.st.phone.clone(),
        });
    }

    pub(super) fn my_loaded(&mut self, list: Vec<Booking>, act: Option<Act>) {
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

    pub(super) fn render_my(&mut self, upcoming: &[Booking], past: &[Booking]) {
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
                vec![self.button_raw(label, format_args!("Ag:{}:{}", b.service_id, b.master_id))]
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
                self.button_raw(cancel, format_args!("C:{}", b.id)),
                self.button_raw(move_, format_args!("R:{}", b.id)),
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
    pub(super) fn too_late_to_change(&self, start: DateTime<Utc>) -> bool {
        self.ctx
            .change_cutoff
            .is_some_and(|cutoff| start - self.ctx.now < cutoff)
    }

    /// The visit being cancelled or moved has come inside the cut-off since it was picked.
    pub(super) fn moving_too_late(&self) -> bool {
        self.st
            .mv
            .as_ref()
            .is_some_and(|mv| self.too_late_to_change(mv.start))
    }

    pub(super) fn too_late(&mut self) {
        let Some(mv) = self.st.mv.take() else {
            self.my_bookings(None);
            return;
        };
        self.render_too_late(&mv.svc, mv.start);
    }

    /// `key` with the business phone, or its variant without one (`<key>-nophone`).
    pub(super) fn call_instead(&self, key: &str) -> String {
        match &self.ctx.business_phone {
            Some(phone) => self.ta(key, &[("phone", phone.clone().into())]),
            None => self.t(&format!("{key}-nophone")),
        }
    }

    /// A visit too close to change online: say so and give the phone to call.
    pub(super) fn render_too_late(&mut self, service: &str, start: DateTime<Utc>) {
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

    pub(super) fn render_cancel_ask(&mut self) {
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

    pub(super) fn cancel_booking(&mut self) {
        let Some(mv) = &self.st.mv else {
            self.my_bookings(None);
            return;
        };
        let booking_id = mv.id.clone();
        self.st.at = At::Cancelling;
        self.write(Command::Cancel { booking_id }, "cancelling");
    }

    // ---- my data ------------------------------------------------------------------------

    pub(super) fn my_data(&mut self) {
        self.clear_flow();
        self.st.at = At::Data;
        self.render_data();
    }

    /// The name and phone the next booking is made with, and buttons to change them.
    pub(super) fn render_data(&mut self) {
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

    pub(super) fn render_data_name(&mut self) {
        self.bump();
        let text = self.t("data-ask-name");
        let buttons = vec![vec![self.btn("btn-back", "<")]];
        self.screen(text, buttons, false);
    }

    pub(super) fn render_data_phone(&mut self) {
        self.bump();
        let text = self.t("data-ask-phone");
        let buttons = vec![vec![self.btn("btn-back", "<")]];
        self.screen(text, buttons, true);
    }

    pub(super) fn change_name(&mut self, raw: &str) {
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

    pub(super) fn change_phone(&mut self, raw: &str) {
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
}
