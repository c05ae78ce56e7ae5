//! What every screen is made of: output and buttons, words, dates, times, prices.

use super::*;

/// Message keys of the months and weekdays, so a date's words need no key formatted first.
const MONTHS: [&str; 12] = [
    "month-1", "month-2", "month-3", "month-4", "month-5", "month-6", "month-7", "month-8",
    "month-9", "month-10", "month-11", "month-12",
];
const WEEKDAYS: [&str; 7] = [
    "weekday-1",
    "weekday-2",
    "weekday-3",
    "weekday-4",
    "weekday-5",
    "weekday-6",
    "weekday-7",
];

impl Engine<'_> {
    // ---- output helpers -----------------------------------------------------------------

    pub(super) fn command(&mut self, command: Command) {
        self.out.commands.push(command);
    }

    /// Starts a new screen: buttons of every earlier one become stale.
    pub(super) fn bump(&mut self) {
        self.st.v = self.st.v.wrapping_add(1);
    }

    /// A reply with any pending note above it.
    pub(super) fn screen(
        &mut self,
        text: String,
        mut buttons: Vec<Vec<Button>>,
        request_contact: bool,
    ) {
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

    pub(super) fn say(&mut self, text: String, buttons: Vec<Vec<Button>>, request_contact: bool) {
        // Only the first reply to a press replaces its message; later ones follow it.
        let edit = std::mem::take(&mut self.st.edit);
        self.out.replies.push(Reply {
            text,
            buttons,
            request_contact,
            edit,
        });
    }

    pub(super) fn render_menu(&mut self, text: String) {
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
    pub(super) fn btn(&self, key: &str, payload: impl std::fmt::Display) -> Button {
        let label = self.t(key);
        self.button_raw(label, payload)
    }

    /// The payload is written straight after the version: pass `format_args!` rather than a
    /// formatted `String`, a screen has dozens of buttons.
    pub(super) fn button_raw(&self, label: String, payload: impl std::fmt::Display) -> Button {
        use std::fmt::Write;
        let mut data = String::with_capacity(24);
        // Writing to a String cannot fail.
        let _ = write!(data, "{}|{payload}", self.st.v);
        debug_assert!(
            data.len() <= MAX_BUTTON_DATA,
            "button data {data:?} is longer than {MAX_BUTTON_DATA} bytes"
        );
        Button { label, data }
    }

    pub(super) fn t(&self, key: &str) -> String {
        self.ctx.texts.t(self.lang, key)
    }

    pub(super) fn ta(&self, key: &str, args: &[(&str, FluentValue<'_>)]) -> String {
        self.ctx.texts.t_args(self.lang, key, args)
    }

    // ---- formatting ---------------------------------------------------------------------

    pub(super) fn local(&self, t: DateTime<Utc>) -> DateTime<Tz> {
        t.with_timezone(&self.ctx.timezone)
    }

    pub(super) fn today(&self) -> NaiveDate {
        self.local(self.ctx.now).date_naive()
    }

    /// `2 дек`, `2 Dec`.
    pub(super) fn short_date(&self, d: NaiveDate) -> String {
        let month = self.t(MONTHS[d.month0() as usize]);
        format!("{} {month}", d.day())
    }

    /// `Пн 2 дек`, `Mon 2 Dec`.
    pub(super) fn day_label(&self, d: NaiveDate) -> String {
        let weekday = self.t(WEEKDAYS[d.weekday().num_days_from_monday() as usize]);
        let month = self.t(MONTHS[d.month0() as usize]);
        format!("{weekday} {} {month}", d.day())
    }

    /// A day button: `Сегодня 2 дек`, `Завтра 3 дек`, else `Ср 4 дек`. "Today" is the
    /// business's, not the server's: the client books by the salon's calendar.
    pub(super) fn day_button(&self, d: NaiveDate) -> String {
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
    pub(super) fn time(&self, t: DateTime<Utc>) -> String {
        use chrono::Timelike;
        let local = self.local(t);
        format!("{:02}:{:02}", local.hour(), local.minute())
    }

    /// `Пн 2 дек, 10:00` on the business clock.
    pub(super) fn when(&self, t: DateTime<Utc>) -> String {
        let day = self.day_label(self.local(t).date_naive());
        format!("{day}, {}", self.time(t))
    }

    pub(super) fn price(&self, s: &Service) -> String {
        if s.price_min == s.price_max {
            s.price_min.to_string()
        } else {
            self.ta("price-from", &[("price", s.price_min.to_string().into())])
        }
    }

    /// `45 минут`, `1 час 30 минут`.
    pub(super) fn duration(&self, minutes: u32) -> String {
        let (h, m) = (i64::from(minutes / 60), i64::from(minutes % 60));
        // Only the parts shown are formatted: a catalogue screen has a label per service.
        let hours = || self.ctx.texts.t_count(self.lang, "hours", h);
        let mins = || self.ctx.texts.t_count(self.lang, "minutes", m);
        match (h, m) {
            (0, _) => mins(),
            (_, 0) => hours(),
            _ => format!("{} {}", hours(), mins()),
        }
    }

    /// `Стрижка · от 1 500 ₽ · 1 час`; a course by its title alone.
    pub(super) fn service_label(&self, s: &Service) -> String {
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
