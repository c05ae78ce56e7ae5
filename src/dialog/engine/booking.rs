//! Booking's first steps: service (by category and page, several in one visit), master, day
//! and time.

use super::*;

impl Engine<'_> {
    // ---- booking ------------------------------------------------------------------------

    pub(super) fn begin_booking(&mut self) {
        self.clear_flow();
        self.load_services(None, 0, None);
    }

    pub(super) fn load_services(&mut self, cat: Option<u16>, page: u16, pick: Option<String>) {
        self.st.at = At::Services { cat, page, pick };
        self.command(Command::LoadServices);
    }

    pub(super) fn services_loaded(
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

    pub(super) fn render_services(&mut self, list: &[Service], cat: Option<u16>, page: u16) {
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
                rows.push(vec![
                    self.button_raw(name.to_string(), format_args!("c:{i}")),
                ]);
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
                rows.push(vec![self.button_raw(label, format_args!("s:{}", s.id))]);
            }
        }
        let mut nav = Vec::new();
        if page > 0 {
            nav.push(self.btn("btn-prev", format_args!("p:{}", page - 1)));
        }
        if (page + 1) * PAGE < total {
            nav.push(self.btn("btn-next", format_args!("p:{}", page + 1)));
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

    pub(super) fn render_masters(&mut self) {
        if self.ctx.school {
            self.render_groups();
            return;
        }
        let Some(flow) = self.st.flow.take() else {
            self.menu();
            return;
        };
        self.bump();
        let mut rows = Vec::new();
        let text = if flow.masters.is_empty() {
            self.ta("no-masters", &[("service", flow.svc.name.as_str().into())])
        } else {
            for m in &flow.masters {
                let label = if m.specialization.is_empty() {
                    m.name.clone()
                } else {
                    format!("{} · {}", m.name, m.specialization)
                };
                rows.push(vec![self.button_raw(label, format_args!("m:{}", m.id))]);
            }
            rows.push(vec![self.btn("btn-any-master", "A")]);
            if self.can_add_service_to(&flow) {
                rows.push(vec![self.btn("btn-add-service", "Sa")]);
            }
            self.ta(
                "choose-master",
                &[("service", flow.svc.name.as_str().into())],
            )
        };
        self.st.flow = Some(flow);
        // The schedule's description of the service, shown as the service is picked. It is
        // dropped from the state then: descriptions can be long and the state stays small.
        let description = self.st.flow.as_mut().and_then(|f| f.svc.description.take());
        let text = match description {
            Some(d) => format!(
                "{}\n\n{text}",
                crate::dialog::shorten(&d, DESCRIPTION_MAX_CHARS)
            ),
            None => text,
        };
        rows.push(vec![self.btn("btn-back", "<")]);
        self.st.at = At::Masters;
        self.screen(text, rows, false);
    }

    /// The visit being put together may take one more service.
    pub(super) fn can_add_service(&self) -> bool {
        self.st
            .flow
            .as_ref()
            .is_some_and(|f| self.can_add_service_to(f))
    }

    fn can_add_service_to(&self, flow: &Flow) -> bool {
        self.ctx.several_services
            && !self.ctx.school
            && self.st.mv.is_none()
            && Service::ids_in(&flow.svc.id).count() < VISIT_MAX_SERVICES
    }

    pub(super) fn adding_service(&self) -> bool {
        self.st.flow.as_ref().is_some_and(|f| f.adding)
    }

    pub(super) fn pick_master(&mut self, id: Option<&str>) {
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
    pub(super) fn target(&self) -> Option<(String, Option<String>, u32)> {
        if let Some(mv) = &self.st.mv {
            return Some((mv.svc_id.clone(), Some(mv.master_id.clone()), mv.dur));
        }
        self.st
            .flow
            .as_ref()
            .map(|f| (f.svc.id.clone(), f.master.clone(), f.svc.duration_min))
    }

    pub(super) fn week_range(&self) -> (NaiveDate, NaiveDate) {
        let from = self.today() + Duration::days(7 * i64::from(self.st.week));
        (from, from + Duration::days(6))
    }

    pub(super) fn load_days(&mut self) {
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

    pub(super) fn render_days(&mut self, mut days: Vec<NaiveDate>) {
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
                    self.button_raw(
                        label,
                        format_args!("d:{:04}{:02}{:02}", d.year(), d.month(), d.day()),
                    )
                })
                .collect();
            rows.push(row);
        }
        let mut nav = Vec::new();
        if self.st.week > 0 {
            nav.push(self.btn("btn-prev-week", format_args!("w:{}", self.st.week - 1)));
        }
        if self.st.week < MAX_WEEKS {
            nav.push(self.btn("btn-next-week", format_args!("w:{}", self.st.week + 1)));
        }
        if !nav.is_empty() {
            rows.push(nav);
        }
        rows.push(vec![self.btn("btn-back", "<")]);
        self.screen(text, rows, false);
    }

    pub(super) fn pick_day(&mut self, arg: &str) {
        let (from, to) = self.week_range();
        match NaiveDate::parse_from_str(arg, "%Y%m%d") {
            Ok(day) if day >= from && day <= to && day >= self.today() => {
                self.st.day = Some(day);
                self.load_slots();
            }
            _ => self.again(Note::Hint),
        }
    }

    pub(super) fn load_slots(&mut self) {
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

    pub(super) fn render_times(&mut self, mut slots: Vec<Slot>) {
        let Some(day) = self.st.day else {
            self.menu();
            return;
        };
        let now = self.ctx.now;
        let tz = self.ctx.timezone;
        slots.retain(|s| s.start > now && s.start.with_timezone(&tz).date_naive() == day);
        Slot::sort(&mut slots);
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
                    self.button_raw(
                        label,
                        format_args!("t:{}:{}", s.start.timestamp(), s.master_id),
                    )
                })
                .collect();
            rows.push(row);
        }
        rows.push(vec![self.btn("btn-back", "<")]);
        self.screen(text, rows, false);
    }

    pub(super) fn pick_time(&mut self, arg: &str) {
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
    pub(super) fn after_slot(&mut self) {
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
}
