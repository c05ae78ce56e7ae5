//! School mode: a course's groups or its trial lesson, and the application.

use super::*;

impl Engine<'_> {
    // ---- school mode --------------------------------------------------------------------

    /// A course's groups with their start dates, and the trial lesson when it has one.
    pub(super) fn render_groups(&mut self) {
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
                rows.push(vec![self.button_raw(label, format_args!("m:{}", g.id))]);
            }
            self.ta("school-choose-group", &[("course", course.into())])
        };
        rows.push(vec![self.btn("btn-back", "<")]);
        self.st.at = At::Masters;
        self.screen(text, rows, false);
    }

    pub(super) fn chosen_group(&self) -> Option<Master> {
        let flow = self.st.flow.as_ref()?;
        let id = flow.master.as_ref()?;
        flow.masters.iter().find(|m| &m.id == id).cloned()
    }

    pub(super) fn render_enrol_confirm(&mut self) {
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

    pub(super) fn enrol(&mut self) {
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

    pub(super) fn enrolled(&mut self, course: String, group: Option<String>) {
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
}
