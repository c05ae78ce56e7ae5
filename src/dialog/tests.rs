//! Conversations driven end to end against a scripted world, the way the runtime drives them:
//! every command is answered and fed back, and the state goes through JSON between steps.

use std::collections::VecDeque;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use super::*;
use crate::domain::{BookingStatus, Channel, Money, Utm};
use crate::i18n::{self, t};

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().expect("test timestamp")
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("test date")
}

fn ctx() -> Context {
    Context {
        // Monday 2 Dec 2024, 09:00 in Yekaterinburg (UTC+5).
        now: utc("2024-12-02T04:00:00Z"),
        timezone: chrono_tz::Asia::Yekaterinburg,
        business_name: "Салон Лаванда".into(),
        address: "ул. Ленина, 1".into(),
        business_phone: Some("+7 343 000-00-00".into()),
        default_lang: Lang::Ru,
        user_lang: Some("ru".into()),
        channel: Channel::Telegram,
        school: false,
        several_services: false,
        texts: Default::default(),
        change_cutoff: None,
        consent: true,
        policy_url: None,
        support: None,
    }
}

fn service(id: &str, name: &str, category: &str, min: i64, max: i64, dur: u32) -> Service {
    Service {
        id: id.into(),
        name: name.into(),
        category: category.into(),
        duration_min: dur,
        price_min: Money::from_rubles(min),
        price_max: Money::from_rubles(max),
        description: None,
    }
}

fn master(id: &str, name: &str) -> Master {
    Master {
        id: id.into(),
        name: name.into(),
        specialization: String::new(),
    }
}

/// A booking system and store as the runtime would expose them.
struct World {
    services: Vec<Service>,
    masters: Vec<Master>,
    free_days: Vec<NaiveDate>,
    /// Local hours with free slots on every free day, and who is free then.
    hours: Vec<(u32, &'static str)>,
    /// Scripted answers to `Book` (or `Reschedule`); when empty the write succeeds.
    write_answers: VecDeque<Loaded>,
    /// Scripted failures for the next load of any kind.
    fail_loads: u32,
    bookings: Vec<Booking>,
}

impl World {
    fn salon() -> World {
        World {
            services: vec![
                service("s1", "Стрижка женская", "Волосы", 1500, 1500, 60),
                service("s2", "Окрашивание", "Волосы", 3000, 6000, 150),
                service("s3", "Маникюр", "Ногти", 1200, 1200, 45),
            ],
            masters: vec![master("m1", "Анна"), master("m2", "Ольга")],
            free_days: vec![date(2024, 12, 2), date(2024, 12, 4), date(2024, 12, 10)],
            hours: vec![(10, "m1"), (10, "m2"), (12, "m2"), (15, "m1")],
            write_answers: VecDeque::new(),
            fail_loads: 0,
            bookings: Vec::new(),
        }
    }

    fn booking(&self, id: &str, start: DateTime<Utc>) -> Booking {
        Booking {
            id: id.into(),
            business_id: "b1".into(),
            client_phone: Phone::parse("+79123456789").expect("phone"),
            client_name: "Мария".into(),
            client_email: None,
            service_id: "s1".into(),
            service_name: "Стрижка женская".into(),
            master_id: "m1".into(),
            master_name: "Анна".into(),
            start,
            duration_min: 60,
            price: Money::from_rubles(1500),
            status: BookingStatus::Booked,
            source: Source::direct(Channel::Telegram),
            chat: None,
            external_id: None,
            created_at: utc("2024-12-01T00:00:00Z"),
        }
    }

    fn answer(&mut self, cmd: &Command) -> Loaded {
        let is_load = !matches!(
            cmd,
            Command::Book(_)
                | Command::Enrol(_)
                | Command::Cancel { .. }
                | Command::Reschedule { .. }
                | Command::SubmitCode { .. }
                | Command::ResendCode { .. }
                | Command::AbandonCode { .. }
        );
        if is_load && self.fail_loads > 0 {
            self.fail_loads -= 1;
            return Loaded::Failed {
                reason: "timeout".into(),
            };
        }
        let tz = chrono_tz::Asia::Yekaterinburg;
        match cmd {
            Command::LoadServices => Loaded::Services(self.services.clone()),
            Command::LoadMasters { .. } => Loaded::Masters(self.masters.clone()),
            Command::LoadDays { from, to, .. } => Loaded::Days(
                self.free_days
                    .iter()
                    .filter(|d| *d >= from && *d <= to)
                    .copied()
                    .collect(),
            ),
            Command::LoadSlots { master_id, day, .. } => Loaded::Slots(
                self.hours
                    .iter()
                    .filter(|(_, m)| master_id.as_deref().is_none_or(|w| w == *m))
                    .filter(|_| self.free_days.contains(day))
                    .map(|(h, m)| Slot {
                        master_id: (*m).into(),
                        start: tz
                            .from_local_datetime(&day.and_hms_opt(*h, 0, 0).expect("hour"))
                            .single()
                            .expect("local time")
                            .with_timezone(&Utc),
                        duration_min: 60,
                    })
                    .collect(),
            ),
            Command::Book(d) => self.write_answers.pop_front().unwrap_or_else(|| {
                let mut b = self.booking("bk-new", d.slot.start);
                b.service_id = d.service.id.clone();
                b.service_name = d.service.name.clone();
                // As the runtime records it: the lowest price of a range.
                b.price = d.service.price_min;
                b.master_name = d
                    .master
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                Loaded::Booked(b)
            }),
            Command::Enrol(d) => Loaded::Enrolled {
                course: d.course.name.clone(),
                group: d.group.as_ref().map(|g| g.name.clone()),
            },
            Command::LoadMyBookings { .. } => Loaded::MyBookings(self.bookings.clone()),
            Command::Cancel { booking_id } => {
                let b = self.bookings.iter().find(|b| &b.id == booking_id).cloned();
                match b {
                    Some(mut b) => {
                        b.status = BookingStatus::CancelledByClient;
                        Loaded::Cancelled(b)
                    }
                    None => Loaded::Failed {
                        reason: "no such booking".into(),
                    },
                }
            }
            Command::Reschedule { booking_id, slot } => {
                self.write_answers.pop_front().unwrap_or_else(|| {
                    let mut b = self.booking(booking_id, slot.start);
                    b.start = slot.start;
                    Loaded::Rescheduled(b)
                })
            }
            Command::ConfirmVisit { booking_id } => {
                match self.bookings.iter().find(|b| &b.id == booking_id) {
                    Some(b) => Loaded::VisitConfirmed(b.clone()),
                    None => Loaded::Failed {
                        reason: "no such booking".into(),
                    },
                }
            }
            Command::SubmitCode { .. } if !self.write_answers.is_empty() => {
                self.write_answers.pop_front().expect("checked")
            }
            // The schedule's code is always 4321 in this world.
            Command::SubmitCode { booking_id, code } if code == "4321" => {
                Loaded::Booked(self.booking(booking_id, utc("2024-12-02T05:00:00Z")))
            }
            Command::SubmitCode { .. } => Loaded::CodeWrong,
            Command::ResendCode { .. } => Loaded::CodeResent,
            Command::AbandonCode { .. } => Loaded::CodeAbandoned,
            Command::CallAdmin { .. } => Loaded::AdminCalled,
        }
    }
}

/// Drives the engine like the runtime: answers commands, persists state as JSON between steps.
struct Bot {
    st: DialogState,
    ctx: Context,
    world: World,
    commands: Vec<Command>,
    replies: Vec<Reply>,
    max_json: usize,
    /// Press «Согласен» whenever the consent screen comes up, as a client booking would, so
    /// flows that are not about the consent walk on to the phone.
    auto_consent: bool,
}

impl Bot {
    fn new() -> Bot {
        Bot::with(ctx(), World::salon())
    }

    fn with(ctx: Context, world: World) -> Bot {
        Bot {
            st: DialogState::default(),
            ctx,
            world,
            commands: Vec::new(),
            replies: Vec::new(),
            max_json: 0,
            auto_consent: true,
        }
    }

    /// One user input and everything it sets off; returns the replies of this turn.
    fn send(&mut self, input: Input) -> Vec<Reply> {
        let mut queue = VecDeque::from([input]);
        let mut turn = Vec::new();
        let mut guard = 0;
        while let Some(input) = queue.pop_front() {
            guard += 1;
            assert!(guard < 20, "command loop does not settle");
            let (st, out) = self.step_persisted(input);
            self.st = st;
            for r in &out.replies {
                check_reply(r);
            }
            turn.extend(out.replies);
            for cmd in out.commands {
                let answer = self.world.answer(&cmd);
                self.commands.push(cmd);
                queue.push_back(Input::Loaded(answer));
            }
        }
        self.replies.extend(turn.clone());
        if self.auto_consent
            && let Some(agree) = turn.last().and_then(consent_button)
        {
            // The turn a test looks at is the one after the agreement: the step it expects.
            return self.send(Input::Button(agree.data));
        }
        turn
    }

    /// Steps from the state as read back from JSON, and checks a restart would not change
    /// what happens next.
    fn step_persisted(&mut self, input: Input) -> (DialogState, Outcome) {
        let json = serde_json::to_string(&self.st).expect("state serializes");
        self.max_json = self.max_json.max(json.len());
        let restored: DialogState = serde_json::from_str(&json).expect("state deserializes");
        assert_eq!(restored, self.st, "state survives JSON: {json}");
        let direct = step(self.st.clone(), input.clone(), &self.ctx);
        let resumed = step(restored, input, &self.ctx);
        assert_eq!(direct, resumed, "a restart changes the outcome");
        resumed
    }

    fn start(&mut self) -> Vec<Reply> {
        self.send(Input::Start {
            source: Source::direct(Channel::Telegram),
        })
    }

    fn text(&mut self, s: &str) -> Vec<Reply> {
        self.send(Input::Text(s.into()))
    }

    /// The last reply that has buttons: the screen the user looks at.
    fn screen(&self) -> &Reply {
        self.replies
            .iter()
            .rev()
            .find(|r| !r.buttons.is_empty())
            .expect("a screen with buttons")
    }

    fn last(&self) -> &Reply {
        self.replies.last().expect("a reply")
    }

    fn button(&self, label: &str) -> Button {
        self.screen()
            .buttons
            .iter()
            .flatten()
            .find(|b| b.label.contains(label))
            .unwrap_or_else(|| panic!("no button {label:?} in {:#?}", self.screen()))
            .clone()
    }

    fn has_button(&self, label: &str) -> bool {
        self.screen()
            .buttons
            .iter()
            .flatten()
            .any(|b| b.label.contains(label))
    }

    fn press(&mut self, label: &str) -> Vec<Reply> {
        let data = self.button(label).data;
        self.send(Input::Button(data))
    }

    fn books(&self) -> Vec<&BookingDraft> {
        self.commands
            .iter()
            .filter_map(|c| match c {
                Command::Book(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    fn last_command(&self) -> &Command {
        self.commands.last().expect("a command")
    }

    /// Start → service → master → day → time.
    fn goto_times(&mut self, master_label: &str) {
        self.start();
        self.press(&t(Lang::Ru, "btn-book"));
        self.press("Стрижка женская");
        self.press(master_label);
        self.press("Сегодня 2 дек");
    }
}

/// The «Согласен» button, when `r` is the consent screen.
fn consent_button(r: &Reply) -> Option<Button> {
    let labels = [t(Lang::Ru, "btn-consent"), t(Lang::En, "btn-consent")];
    r.buttons
        .iter()
        .flatten()
        .find(|b| labels.contains(&b.label))
        .cloned()
}

/// Every reply the tests ever see passes through here.
fn check_reply(r: &Reply) {
    assert!(!r.text.trim().is_empty(), "empty reply text");
    assert!(
        !r.text.contains('\u{2068}') && !r.text.contains('\u{2069}'),
        "isolation marks in {:?}",
        r.text
    );
    for b in r.buttons.iter().flatten() {
        assert!(
            b.data.len() <= MAX_BUTTON_DATA,
            "button data {:?} is {} bytes",
            b.data,
            b.data.len()
        );
        assert!(!b.label.is_empty(), "button without a label");
        assert!(b.data.contains('|'), "unversioned button data {:?}", b.data);
    }
}

fn ru(key: &str) -> String {
    t(Lang::Ru, key)
}

fn note(key: &str) -> String {
    ru(key)
}

#[test]
fn happy_path_books_the_picked_slot() {
    let mut bot = Bot::new();
    let r = bot.start();
    assert_eq!(r.len(), 1);
    assert!(r[0].text.contains("Салон Лаванда"));
    assert!(!r[0].edit);
    for key in ["btn-book", "btn-my", "btn-help"] {
        assert!(bot.has_button(&ru(key)), "{key}");
    }

    bot.press(&ru("btn-book"));
    assert_eq!(bot.last_command(), &Command::LoadServices);
    assert!(bot.last().edit, "a screen after a press replaces the menu");
    let label = bot.button("Стрижка женская").label;
    assert_eq!(label, "Стрижка женская · 1\u{a0}500\u{a0}₽ · 1 час");
    assert_eq!(
        bot.button("Окрашивание").label,
        "Окрашивание · от 3\u{a0}000\u{a0}₽ · 2 часа 30 минут"
    );
    assert_eq!(
        bot.button("Маникюр").label,
        "Маникюр · 1\u{a0}200\u{a0}₽ · 45 минут"
    );

    bot.press("Стрижка женская");
    assert_eq!(
        bot.last_command(),
        &Command::LoadMasters {
            service_id: "s1".into()
        }
    );
    assert!(bot.has_button(&ru("btn-any-master")));

    bot.press("Анна");
    assert_eq!(
        bot.last_command(),
        &Command::LoadDays {
            service_id: "s1".into(),
            master_id: Some("m1".into()),
            from: date(2024, 12, 2),
            to: date(2024, 12, 8),
        }
    );
    assert!(bot.has_button("Сегодня 2 дек"));
    assert!(bot.has_button("Ср 4 дек"));
    assert!(
        !bot.has_button("10 дек"),
        "next week's day on this week's page"
    );

    bot.press("Сегодня 2 дек");
    assert_eq!(
        bot.last_command(),
        &Command::LoadSlots {
            service_id: "s1".into(),
            master_id: Some("m1".into()),
            day: date(2024, 12, 2),
        }
    );
    // Yekaterinburg is UTC+5: the 05:00Z slot is 10:00 on the business clock.
    assert!(bot.has_button("10:00"));
    assert!(bot.has_button("15:00"));
    assert!(!bot.has_button("12:00"), "Ольга's time offered for Анна");

    let r = bot.press("10:00");
    assert!(r[0].request_contact, "phone step shows the contact button");
    assert!(r[0].text.contains("+7 912 345-67-89"));

    bot.send(Input::Contact {
        phone: "79123456789".into(),
    });
    assert!(bot.last().text.contains(&ru("ask-name")));
    assert!(!bot.last().edit);

    let r = bot.text("  Мария  ");
    let confirm = &r[0].text;
    for part in [
        "Стрижка женская",
        "Анна",
        "Пн 2 дек, 10:00",
        "1\u{a0}500\u{a0}₽",
        "ул. Ленина, 1",
        "Мария",
        "+7 912 345-67-89",
        "1 час",
    ] {
        assert!(confirm.contains(part), "{part:?} missing in {confirm}");
    }
    assert!(bot.has_button(&ru("btn-confirm")));
    assert!(bot.has_button(&ru("btn-change-time")));
    assert!(bot.has_button(&ru("btn-cancel")));
    assert!(bot.books().is_empty());

    let r = bot.press(&ru("btn-confirm"));
    let books = bot.books();
    assert_eq!(books.len(), 1);
    let d = books[0];
    assert_eq!(d.service.id, "s1");
    assert_eq!(d.master.as_ref().map(|m| m.id.as_str()), Some("m1"));
    assert_eq!(d.slot.start, utc("2024-12-02T05:00:00Z"));
    assert_eq!(d.slot.master_id, "m1");
    assert_eq!(d.slot.duration_min, 60);
    assert_eq!(d.phone.as_str(), "+79123456789");
    assert_eq!(d.name, "Мария");
    assert_eq!(r.len(), 2);
    assert!(
        r[0].edit && r[0].buttons.is_empty(),
        "confirm screen becomes 'booking…'"
    );
    assert!(!r[1].edit, "the confirmation is a message of its own");
    assert!(r[1].text.contains("Пн 2 дек, 10:00"));
    assert!(r[1].text.contains("ул. Ленина, 1"));
    assert!(r[1].text.contains(&ru("btn-my").replace("🗂 ", "")));
    assert!(bot.has_button(&ru("btn-my")));
    // The client is remembered for next time.
    assert_eq!(bot.st.phone().map(Phone::as_str), Some("+79123456789"));
    assert_eq!(bot.st.name(), Some("Мария"));
}

#[test]
fn known_client_skips_phone_and_name() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("8 912 345 67 89");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 1);

    bot.press(&ru("btn-book"));
    bot.press("Маникюр");
    bot.press("Ольга");
    bot.press("Сегодня 2 дек");
    let r = bot.press("12:00");
    assert!(
        r[0].text.contains("Маникюр"),
        "straight to confirm: {}",
        r[0].text
    );
    assert!(bot.has_button(&ru("btn-confirm")));
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 2);
    assert_eq!(bot.books()[1].name, "Мария");
}

#[test]
fn any_master_books_the_master_of_the_slot() {
    let mut bot = Bot::new();
    bot.goto_times(&ru("btn-any-master"));
    assert!(matches!(
        bot.commands.iter().rev().nth(1),
        Some(Command::LoadDays {
            master_id: None,
            ..
        })
    ));
    assert!(matches!(
        bot.last_command(),
        Command::LoadSlots {
            master_id: None,
            ..
        }
    ));
    // Both masters are free at 10:00: one button for the time.
    let tens = bot
        .screen()
        .buttons
        .iter()
        .flatten()
        .filter(|b| b.label == "10:00")
        .count();
    assert_eq!(tens, 1);
    bot.press("12:00");
    bot.text("+7 912 345-67-89");
    let r = bot.text("Мария");
    assert!(r[0].text.contains("Ольга"), "{}", r[0].text);
    bot.press(&ru("btn-confirm"));
    let d = bot.books()[0];
    assert_eq!(d.slot.master_id, "m2");
    assert_eq!(d.master.as_ref().map(|m| m.name.as_str()), Some("Ольга"));
}

#[test]
fn many_services_are_grouped_by_category_and_paged() {
    let mut world = World::salon();
    world.services = (1..=10)
        .map(|i| {
            service(
                &format!("h{i}"),
                &format!("Услуга {i}"),
                "Волосы",
                1000,
                1000,
                30,
            )
        })
        .chain([service("n1", "Маникюр", "Ногти", 1200, 1200, 45)])
        .collect();
    let mut bot = Bot::with(ctx(), world);
    bot.start();
    let r = bot.press(&ru("btn-book"));
    assert!(r[0].text.contains(&ru("choose-category")));
    assert!(bot.has_button("Волосы") && bot.has_button("Ногти"));
    assert!(!bot.has_button("Услуга 1"));

    let r = bot.press("Волосы");
    assert!(r[0].text.contains("Волосы"));
    assert!(bot.has_button("Услуга 1 ·"));
    assert!(bot.has_button("Услуга 8 ·"));
    assert!(!bot.has_button("Услуга 9 ·"));
    assert!(!bot.has_button("Маникюр"));
    assert!(!bot.has_button(&ru("btn-prev")));

    bot.press(&ru("btn-next"));
    assert!(bot.has_button("Услуга 9 ·") && bot.has_button("Услуга 10 ·"));
    assert!(!bot.has_button("Услуга 1 ·"));
    assert!(!bot.has_button(&ru("btn-next")));

    bot.press(&ru("btn-prev"));
    assert!(bot.has_button("Услуга 1 ·"));

    // Back goes to the categories, then to the menu.
    bot.press(&ru("btn-back"));
    assert!(bot.has_button("Ногти"));
    bot.press(&ru("btn-back"));
    assert!(bot.has_button(&ru("btn-my")));

    bot.press(&ru("btn-book"));
    bot.press("Ногти");
    bot.press("Маникюр");
    assert_eq!(
        bot.last_command(),
        &Command::LoadMasters {
            service_id: "n1".into()
        }
    );
}

#[test]
fn days_are_paged_by_week_from_today() {
    let mut bot = Bot::new();
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    bot.press("Анна");
    assert!(
        !bot.has_button(&ru("btn-prev-week")),
        "no weeks before this one"
    );

    bot.press(&ru("btn-next-week"));
    assert!(matches!(
        bot.last_command(),
        Command::LoadDays { from, to, .. } if *from == date(2024, 12, 9) && *to == date(2024, 12, 15)
    ));
    assert!(bot.has_button("Вт 10 дек"));
    assert!(!bot.has_button("Сегодня 2 дек"));

    bot.press(&ru("btn-prev-week"));
    assert!(bot.has_button("Сегодня 2 дек"));
}

#[test]
fn an_empty_week_says_so_and_offers_the_next() {
    let mut bot = Bot::new();
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    bot.press("Анна");
    bot.press(&ru("btn-next-week"));
    let r = bot.press(&ru("btn-next-week"));
    assert!(r[0].text.contains("16 дек – 22 дек"), "{}", r[0].text);
    assert!(r[0].text.contains("свободных дней нет"));
    let day_buttons = bot
        .screen()
        .buttons
        .iter()
        .flatten()
        .filter(|b| b.data.contains("|d:"))
        .count();
    assert_eq!(day_buttons, 0);
    assert!(bot.has_button(&ru("btn-next-week")));
    assert!(bot.has_button(&ru("btn-back")));
}

#[test]
fn business_timezone_is_used_for_today_and_times() {
    // 20:00Z on 1 Dec is already 01:00 on 2 Dec in Yekaterinburg.
    let mut c = ctx();
    c.now = utc("2024-12-01T20:00:00Z");
    let mut bot = Bot::with(c, World::salon());
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    bot.press("Анна");
    assert!(matches!(
        bot.last_command(),
        Command::LoadDays { from, .. } if *from == date(2024, 12, 2)
    ));
    bot.press("Сегодня 2 дек");
    let data = bot.button("10:00").data;
    let secs = utc("2024-12-02T05:00:00Z").timestamp();
    assert!(data.ends_with(&format!("t:{secs}:m1")), "{data}");
}

#[test]
fn past_slots_are_not_offered() {
    let mut c = ctx();
    // 11:00 local: 10:00 is gone, 15:00 is still free.
    c.now = utc("2024-12-02T06:00:00Z");
    let mut bot = Bot::with(c, World::salon());
    bot.goto_times("Анна");
    assert!(!bot.has_button("10:00"));
    assert!(bot.has_button("15:00"));
}

#[test]
fn a_bad_phone_is_asked_again_with_an_example() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    let r = bot.text("мой номер секрет");
    assert!(r[0].text.contains(&note("note-bad-phone")));
    assert!(r[0].request_contact);
    let r = bot.text("123");
    assert!(r[0].text.contains("+7 912 345-67-89"));
    assert!(bot.st.phone().is_none());
    let r = bot.text("8 (912) 345-67-89");
    assert!(r[0].text.contains(&ru("ask-name")));
    assert_eq!(bot.st.phone().map(Phone::as_str), Some("+79123456789"));
}

#[test]
fn a_shared_contact_is_taken_as_the_phone() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    let r = bot.send(Input::Contact {
        phone: "+79123456789".into(),
    });
    assert!(!r[0].request_contact);
    assert!(r[0].text.contains(&ru("ask-name")));
    let r = bot.send(Input::Contact {
        phone: "not a phone".into(),
    });
    assert!(r[0].text.contains(&note("note-hint")), "{}", r[0].text);
}

#[test]
fn names_are_trimmed_and_bounded() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    let r = bot.text("   ");
    assert!(r[0].text.contains(&note("note-name-empty")));
    let r = bot.text(&"я".repeat(101));
    assert!(r[0].text.contains(&note("note-name-long")));
    assert!(bot.st.name().is_none());
    bot.text(&"я".repeat(100));
    assert!(bot.has_button(&ru("btn-confirm")));
    assert_eq!(bot.st.name().map(|n| n.chars().count()), Some(100));
    bot.press(&ru("btn-cancel"));
    bot.goto_times("Анна");
    bot.press("10:00");
    assert!(
        bot.has_button(&ru("btn-confirm")),
        "a known name is not asked again"
    );
    assert!(bot.last().text.contains(&"я".repeat(100)));
}

#[test]
fn booking_pending_tells_the_request_is_saved() {
    let mut world = World::salon();
    let pending = world.booking("bk-q", utc("2024-12-02T05:00:00Z"));
    world
        .write_answers
        .push_back(Loaded::BookingPending(Booking {
            status: BookingStatus::Requested,
            ..pending
        }));
    let mut bot = Bot::with(ctx(), world);
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    let r = bot.press(&ru("btn-confirm"));
    assert!(r[1].text.contains("не отвечает"), "{}", r[1].text);
    assert!(r[1].text.contains("Пн 2 дек, 10:00"));
    assert_eq!(bot.books().len(), 1);
}

#[test]
fn a_taken_slot_offers_fresh_slots_and_books_nothing_else() {
    let mut world = World::salon();
    world.write_answers.push_back(Loaded::SlotTaken);
    let mut bot = Bot::with(ctx(), world);
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    let before = bot.commands.len();
    let r = bot.press(&ru("btn-confirm"));
    let after: Vec<_> = bot.commands[before..].to_vec();
    assert!(matches!(after[0], Command::Book(_)));
    assert_eq!(
        after[1..],
        [Command::LoadSlots {
            service_id: "s1".into(),
            master_id: Some("m1".into()),
            day: date(2024, 12, 2),
        }]
    );
    assert_eq!(bot.books().len(), 1);
    let last = r.last().expect("reply");
    assert!(last.text.contains(&note("note-slot-taken")));
    assert!(bot.has_button("15:00"));
    // Picking again goes to the confirmation, not straight to a booking.
    bot.press("15:00");
    assert_eq!(bot.books().len(), 1);
    assert!(bot.last().text.contains("15:00"));
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 2);
    assert_eq!(bot.books()[1].slot.start, utc("2024-12-02T10:00:00Z"));
}

#[test]
fn a_stale_time_button_shows_fresh_slots() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    let old = bot.button("10:00").data;
    bot.text("хочу в 10");
    assert!(bot.last().text.contains(&note("note-hint")));
    let loads_before = bot.commands.len();
    let r = bot.send(Input::Button(old));
    assert_eq!(r.len(), 1);
    assert!(r[0].text.contains(&note("note-stale")));
    assert!(r[0].edit, "the old message is replaced");
    assert!(matches!(
        bot.commands[loads_before..],
        [Command::LoadSlots { .. }]
    ));
    assert!(bot.has_button("10:00"));
    assert!(bot.st.slot.is_none());
}

#[test]
fn a_stale_confirm_does_not_book() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    let old_confirm = bot.button(&ru("btn-confirm")).data;
    bot.text("что-то");
    let r = bot.send(Input::Button(old_confirm));
    assert!(bot.books().is_empty());
    assert!(r[0].text.contains(&note("note-stale")));
    assert!(bot.has_button(&ru("btn-confirm")));
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 1);
}

#[test]
fn a_double_tap_on_confirm_books_once() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    let confirm = bot.button(&ru("btn-confirm")).data;
    bot.send(Input::Button(confirm.clone()));
    let r = bot.send(Input::Button(confirm));
    assert_eq!(bot.books().len(), 1);
    assert!(r[0].text.contains(&note("note-stale")));
}

#[test]
fn a_double_tap_while_the_booking_is_in_flight_books_once() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    let confirm = bot.button(&ru("btn-confirm")).data;
    // The runtime has sent Book but not yet fed the answer back.
    let (st, out) = step(bot.st.clone(), Input::Button(confirm.clone()), &bot.ctx);
    assert!(matches!(out.commands[..], [Command::Book(_)]));
    let (_, out) = step(st, Input::Button(confirm), &bot.ctx);
    assert!(out.commands.is_empty());
    assert!(out.replies[0].text.contains(&note("note-stale")));
    assert!(out.replies[0].text.contains(&ru("wait")));
}

#[test]
fn garbage_text_at_every_step_keeps_the_step() {
    let mut bot = Bot::new();
    let hint = note("note-hint");
    bot.start();
    let r = bot.text("привет");
    assert!(r[0].text.contains(&hint) && bot.has_button(&ru("btn-book")));

    bot.press(&ru("btn-book"));
    let r = bot.text("стрижка");
    assert!(r[0].text.contains(&hint) && bot.has_button("Стрижка женская"));
    assert!(!r[0].edit);

    bot.press("Стрижка женская");
    let r = bot.text("любая");
    assert!(r[0].text.contains(&hint) && bot.has_button("Анна"));

    bot.press("Анна");
    let r = bot.text("завтра");
    assert!(r[0].text.contains(&hint) && bot.has_button("Сегодня 2 дек"));

    bot.press("Сегодня 2 дек");
    let r = bot.text("10");
    assert!(r[0].text.contains(&hint) && bot.has_button("10:00"));

    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    let r = bot.text("да");
    assert!(r[0].text.contains(&hint) && bot.has_button(&ru("btn-confirm")));
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 1);
}

#[test]
fn garbage_button_data_is_a_hint_not_a_crash() {
    let mut bot = Bot::new();
    bot.start();
    for junk in [
        "",
        "|",
        "x",
        "999999999999|B",
        "1|t:abc:m1",
        "1|d:2024",
        "1|s:",
    ] {
        let r = bot.send(Input::Button(junk.into()));
        assert!(!r.is_empty(), "{junk:?}");
    }
    let v = bot.st.v;
    let r = bot.send(Input::Button(format!("{v}|t:1733115600:m1")));
    assert!(
        r[0].text.contains(&note("note-hint")),
        "a time on the menu screen"
    );
    assert!(bot.books().is_empty());
}

#[test]
fn commands_in_text() {
    let mut bot = Bot::new();
    bot.start();
    let r = bot.text("/help");
    assert!(r[0].text.contains("ул. Ленина, 1"));
    assert!(r[0].text.contains("+7 343 000-00-00"));
    assert!(r[0].text.contains("/book"));

    let r = bot.text("/frobnicate");
    assert!(r[0].text.contains(&note("note-unknown-command")));

    bot.text("/book");
    assert_eq!(bot.last_command(), &Command::LoadServices);
    bot.press("Стрижка женская");
    let r = bot.text("/nope");
    assert!(r[0].text.contains(&note("note-unknown-command")));
    assert!(bot.has_button("Анна"), "the step is kept");

    let r = bot.text("/cancel");
    assert!(r[0].text.contains(&note("note-booking-dropped")));
    assert!(bot.has_button(&ru("btn-book")));

    bot.text("/my@zapis_bot");
    assert!(matches!(bot.last_command(), Command::LoadMyBookings { .. }));

    let r = bot.text("/menu");
    assert!(r[0].text.contains(&ru("menu")));
}

#[test]
fn help_mid_flow_keeps_the_step() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    let time = bot.button("10:00").data;
    bot.text("/help");
    // The time screen is still the current one.
    bot.send(Input::Button(time));
    assert!(bot.last().request_contact);
}

#[test]
fn back_buttons_walk_the_flow_backwards() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    assert!(bot.last().text.contains(&ru("ask-name")));
    bot.press(&ru("btn-back"));
    assert!(bot.last().request_contact, "name → phone");
    bot.press(&ru("btn-back"));
    assert!(bot.has_button("10:00"), "phone → times");
    bot.press(&ru("btn-back"));
    assert!(bot.has_button("Сегодня 2 дек"), "times → days");
    bot.press(&ru("btn-back"));
    assert!(bot.has_button("Ольга"), "days → masters");
    bot.press(&ru("btn-back"));
    assert!(bot.has_button("Маникюр"), "masters → services");
    bot.press(&ru("btn-back"));
    assert!(bot.has_button(&ru("btn-help")), "services → menu");
    assert!(bot.books().is_empty());
}

#[test]
fn change_time_and_cancel_on_the_confirmation() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-change-time"));
    assert!(matches!(bot.last_command(), Command::LoadSlots { .. }));
    bot.press("15:00");
    assert!(bot.last().text.contains("Пн 2 дек, 15:00"));
    bot.press(&ru("btn-cancel"));
    assert!(bot.last().text.contains(&note("note-booking-dropped")));
    assert!(bot.books().is_empty());
}

fn world_with_bookings() -> World {
    let mut world = World::salon();
    let past = world.booking("bk-old", utc("2024-11-20T05:00:00Z"));
    let mut gone = world.booking("bk-gone", utc("2024-12-05T05:00:00Z"));
    gone.status = BookingStatus::CancelledByClient;
    let later = world.booking("bk-2", utc("2024-12-06T07:00:00Z"));
    let soon = world.booking("bk-1", utc("2024-12-03T05:00:00Z"));
    world.bookings = vec![past, gone, later, soon];
    world
}

#[test]
fn my_bookings_none() {
    let mut bot = Bot::new();
    bot.start();
    let r = bot.press(&ru("btn-my"));
    assert_eq!(bot.last_command(), &Command::LoadMyBookings { phone: None });
    assert!(r[0].text.contains(&ru("my-none")));
    assert!(bot.has_button(&ru("btn-book")));
}

#[test]
fn my_bookings_lists_upcoming_ones() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    let r = bot.press(&ru("btn-my"));
    let text = &r[0].text;
    assert!(text.contains("2 записи"), "{text}");
    let first = text.find("Вт 3 дек, 10:00").expect("soonest listed");
    let second = text.find("Пт 6 дек, 12:00").expect("later listed");
    assert!(first < second, "sorted by time");
    assert!(!text.contains("20 ноя") && !text.contains("5 дек"));
    assert!(bot.button("1").data.ends_with("C:bk-1"));
    assert!(
        bot.button(&i18n::t_args(
            Lang::Ru,
            "btn-reschedule-n",
            &[("n", 2.into())]
        ))
        .data
        .ends_with("R:bk-2")
    );
}

#[test]
fn my_bookings_uses_the_known_phone() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("/my");
    assert_eq!(
        bot.last_command(),
        &Command::LoadMyBookings {
            phone: Some(Phone::parse("+79123456789").expect("phone"))
        }
    );
}

#[test]
fn cancelling_asks_first() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    bot.press(&ru("btn-my"));
    let cancel_1 = i18n::t_args(Lang::Ru, "btn-cancel-n", &[("n", 1.into())]);
    let r = bot.press(&cancel_1);
    assert!(r[0].text.contains("Вт 3 дек, 10:00"));
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::Cancel { .. }))
    );

    // "No" goes back to the list.
    bot.press(&ru("btn-no"));
    assert!(bot.last().text.contains("2 записи"));
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::Cancel { .. }))
    );

    bot.press(&cancel_1);
    let yes = bot.button(&ru("btn-yes-cancel")).data;
    let r = bot.send(Input::Button(yes.clone()));
    assert_eq!(
        bot.last_command(),
        &Command::Cancel {
            booking_id: "bk-1".into()
        }
    );
    assert!(r.last().expect("reply").text.contains("Запись отменена"));
    // A second tap cancels nothing more.
    bot.send(Input::Button(yes));
    let cancels = bot
        .commands
        .iter()
        .filter(|c| matches!(c, Command::Cancel { .. }))
        .count();
    assert_eq!(cancels, 1);
}

/// A reminder's buttons, pressed from wherever the conversation happens to be.
#[test]
fn reminder_answers_work_from_any_screen() {
    let buttons = crate::dialog::reminder_buttons(&Default::default(), Lang::Ru, "bk-1", true);
    let data = |kind: &str| {
        buttons
            .iter()
            .flatten()
            .find(|b| b.data.contains(kind))
            .expect("button")
            .data
            .clone()
    };
    for b in buttons.iter().flatten() {
        assert!(b.data.len() <= MAX_BUTTON_DATA);
    }

    // "I'll come" in the middle of booking something else.
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.goto_times("Анна");
    let r = bot.send(Input::Button(data("Rk:")));
    assert_eq!(
        bot.last_command(),
        &Command::ConfirmVisit {
            booking_id: "bk-1".into()
        }
    );
    assert!(r.last().expect("reply").text.contains("ждём вас"), "{r:#?}");
    assert!(r.last().expect("reply").text.contains("Вт 3 дек, 10:00"));

    // "Cancel" asks first, then cancels that booking.
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    let r = bot.send(Input::Button(data("Rc:")));
    assert!(r.last().expect("reply").text.contains("Вт 3 дек, 10:00"));
    bot.press(&ru("btn-yes-cancel"));
    assert_eq!(
        bot.last_command(),
        &Command::Cancel {
            booking_id: "bk-1".into()
        }
    );

    // "Move" goes straight to the days of the same service and master.
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.send(Input::Button(data("Rm:")));
    assert!(matches!(
        bot.last_command(),
        Command::LoadDays { service_id, master_id: Some(m), .. } if service_id == "s1" && m == "m1"
    ));

    // Any other stale button is still refused.
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    let r = bot.send(Input::Button("0|C:bk-1".into()));
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::Cancel { .. }))
    );
    assert!(!r.is_empty());
}

/// Every payload `links` hands out to other modules leads to its step, pressed from the middle
/// of another flow on a message many screens old.
#[test]
fn every_link_leads_to_its_step_from_any_screen() {
    let id = "bk-1";
    let uuid = "0d1f6c1e-6b7a-4c57-9e2f-3a3c1a7f2b11";
    for data in [
        links::book(),
        links::my_bookings(),
        links::confirm_visit(uuid),
        links::cancel_visit(uuid),
        links::move_visit(uuid),
    ] {
        assert!(data.len() <= MAX_BUTTON_DATA, "{data}");
    }
    // The commands `link` sets off, pressed while choosing a time for another visit.
    let press = |link: String| {
        let mut bot = Bot::with(ctx(), world_with_bookings());
        bot.goto_times("Анна");
        assert_ne!(bot.st.v, 0, "the link must be older than the screen");
        let before = bot.commands.len();
        bot.send(Input::Button(link));
        let new = bot.commands.split_off(before);
        (bot, new)
    };

    let (_, new) = press(links::book());
    assert_eq!(new.first(), Some(&Command::LoadServices), "{new:?}");

    let (_, new) = press(links::my_bookings());
    assert!(
        matches!(new.first(), Some(Command::LoadMyBookings { .. })),
        "{new:?}"
    );

    let (_, new) = press(links::confirm_visit(id));
    assert_eq!(
        new.first(),
        Some(&Command::ConfirmVisit {
            booking_id: id.into()
        })
    );

    let (mut bot, _) = press(links::cancel_visit(id));
    bot.press(&ru("btn-yes-cancel"));
    assert_eq!(
        bot.last_command(),
        &Command::Cancel {
            booking_id: id.into()
        }
    );

    let (_, new) = press(links::move_visit(id));
    assert!(
        new.iter().any(|c| matches!(
            c,
            Command::LoadDays { service_id, master_id: Some(m), .. } if service_id == "s1" && m == "m1"
        )),
        "{new:?}"
    );
}

#[test]
fn rescheduling_keeps_service_and_master() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    bot.press(&ru("btn-my"));
    bot.press(&i18n::t_args(
        Lang::Ru,
        "btn-reschedule-n",
        &[("n", 1.into())],
    ));
    assert!(matches!(
        bot.last_command(),
        Command::LoadDays { service_id, master_id: Some(m), .. } if service_id == "s1" && m == "m1"
    ));
    bot.press("Ср 4 дек");
    assert!(matches!(
        bot.last_command(),
        Command::LoadSlots { master_id: Some(m), day, .. } if m == "m1" && *day == date(2024, 12, 4)
    ));
    let r = bot.press("15:00");
    assert!(
        r[0].text.contains("Вт 3 дек, 10:00"),
        "old time: {}",
        r[0].text
    );
    assert!(
        r[0].text.contains("Ср 4 дек, 15:00"),
        "new time: {}",
        r[0].text
    );
    assert!(
        !r[0].request_contact,
        "no phone asked when moving a booking"
    );
    let r = bot.press(&ru("btn-confirm"));
    assert_eq!(
        bot.commands
            .iter()
            .filter(|c| matches!(c, Command::Reschedule { .. }))
            .collect::<Vec<_>>(),
        vec![&Command::Reschedule {
            booking_id: "bk-1".into(),
            slot: Slot {
                master_id: "m1".into(),
                start: utc("2024-12-04T10:00:00Z"),
                duration_min: 60,
            }
        }]
    );
    assert!(bot.books().is_empty());
    assert!(r.last().expect("reply").text.contains("перенесена"));
}

#[test]
fn back_from_reschedule_days_returns_to_my_bookings() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    bot.press(&ru("btn-my"));
    bot.press(&i18n::t_args(
        Lang::Ru,
        "btn-reschedule-n",
        &[("n", 2.into())],
    ));
    bot.press(&ru("btn-back"));
    assert!(bot.last().text.contains("2 записи"));
}

#[test]
fn a_booking_gone_meanwhile_is_reported() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    bot.press(&ru("btn-my"));
    bot.world.bookings.retain(|b| b.id != "bk-1");
    let r = bot.press(&i18n::t_args(Lang::Ru, "btn-cancel-n", &[("n", 1.into())]));
    assert!(r[0].text.contains(&note("note-not-found")));
    assert!(r[0].text.contains("1 запись"));
}

#[test]
fn failures_apologise_and_retry() {
    let mut world = World::salon();
    world.fail_loads = 1;
    let mut bot = Bot::with(ctx(), world);
    bot.start();
    let r = bot.press(&ru("btn-book"));
    assert!(r[0].text.contains(&ru("failed")));
    assert!(r[0].text.contains("+7 343 000-00-00"));
    assert!(bot.has_button(&ru("btn-menu")));
    bot.press(&ru("btn-retry"));
    assert!(bot.has_button("Стрижка женская"));
}

#[test]
fn a_failed_booking_goes_back_to_the_confirmation() {
    let mut world = World::salon();
    world.write_answers.push_back(Loaded::Failed {
        reason: "rejected".into(),
    });
    let mut bot = Bot::with(ctx(), world);
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    assert!(bot.last().text.contains(&ru("failed")));
    bot.press(&ru("btn-retry"));
    assert_eq!(
        bot.books().len(),
        1,
        "retry shows the confirmation, it does not book"
    );
    assert!(bot.has_button(&ru("btn-confirm")));
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 2);
}

#[test]
fn a_closed_schedule_tells_the_client_to_call_the_business() {
    let mut world = World::salon();
    world.write_answers.push_back(Loaded::BookingClosed);
    let mut bot = Bot::with(ctx(), world);
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    let text = &bot.last().text;
    assert!(text.contains("Онлайн-запись сейчас недоступна"), "{text}");
    assert!(text.contains("+7 343 000-00-00"), "{text}");
    assert!(
        !text.contains(&ru("failed")),
        "no pretending it is a glitch: {text}"
    );
    assert!(bot.has_button(&ru("btn-menu")));
}

#[test]
fn english_speakers_get_english() {
    let mut c = ctx();
    c.user_lang = Some("en-US".into());
    let mut bot = Bot::with(c, World::salon());
    let r = bot.start();
    assert!(r[0].text.contains("Hello"));
    let en = |k: &str| t(Lang::En, k);
    bot.press(&en("btn-book"));
    assert_eq!(
        bot.button("Окрашивание").label,
        "Окрашивание · from 3\u{a0}000\u{a0}₽ · 2 hours 30 minutes"
    );
    bot.press("Стрижка женская");
    bot.press(&en("btn-any-master"));
    bot.press("Today 2 Dec");
    bot.press("10:00");
    let r = bot.text("bad");
    assert!(r[0].text.contains("does not look like a phone"));
    bot.text("+79123456789");
    let r = bot.text("Mary");
    assert!(r[0].text.contains("Mon 2 Dec, 10:00"));
    let r = bot.press(&en("btn-confirm"));
    assert!(r[1].text.contains("you are booked"));
    assert_eq!(bot.st.lang(), Some(Lang::En));
}

#[test]
fn unknown_languages_use_the_business_default() {
    let mut c = ctx();
    c.user_lang = Some("de".into());
    c.default_lang = Lang::En;
    let mut bot = Bot::with(c, World::salon());
    assert!(bot.start()[0].text.contains("Hello"));
    let mut c = ctx();
    c.user_lang = Some("uk".into());
    c.default_lang = Lang::En;
    let mut bot = Bot::with(c, World::salon());
    assert!(bot.start()[0].text.contains("Здравствуйте"));
}

#[test]
fn the_source_goes_into_the_booking_and_survives_a_bare_start() {
    let campaign = Source {
        channel: Channel::Telegram,
        payload: Some("src_vk_dec".into()),
        link_name: Some("VK December".into()),
        utm: Utm {
            source: Some("vk".into()),
            ..Utm::default()
        },
    };
    let mut bot = Bot::new();
    bot.send(Input::Start {
        source: campaign.clone(),
    });
    bot.start();
    bot.text("/start");
    assert_eq!(bot.st.source(), Some(&campaign));
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    bot.press("Анна");
    bot.press("Сегодня 2 дек");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books()[0].source, campaign);

    // A new tracked link replaces the old one.
    let other = Source {
        payload: Some("src_site".into()),
        ..Source::direct(Channel::Telegram)
    };
    bot.send(Input::Start {
        source: other.clone(),
    });
    assert_eq!(bot.st.source(), Some(&other));
}

#[test]
fn replies_to_presses_edit_and_others_do_not() {
    let mut bot = Bot::new();
    assert!(!bot.start()[0].edit);
    assert!(bot.press(&ru("btn-book"))[0].edit);
    assert!(!bot.text("hi")[0].edit);
    let r = bot.press("Стрижка женская");
    assert_eq!(r.len(), 1);
    assert!(r[0].edit);
}

#[test]
fn stale_global_navigation_is_honoured() {
    let mut bot = Bot::new();
    bot.start();
    let my = bot.button(&ru("btn-my")).data;
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    bot.send(Input::Button(my));
    assert!(matches!(bot.last_command(), Command::LoadMyBookings { .. }));
}

#[test]
fn long_ids_fit_into_button_data() {
    let mut world = World::salon();
    let long = "0f8fad5b-d9cb-469f-a165-70867728950e";
    world.services[0].id = long.into();
    world.masters[0].id = "1234567890".into();
    world.hours = vec![(10, "1234567890")];
    let b = world.booking(long, utc("2024-12-03T05:00:00Z"));
    world.bookings = vec![b];
    let mut bot = Bot::with(ctx(), world);
    bot.st.v = u32::MAX - 3;
    bot.goto_times("Анна");
    assert!(bot.has_button("10:00"));
    bot.text("/my");
    bot.press(&i18n::t_args(Lang::Ru, "btn-cancel-n", &[("n", 1.into())]));
    // check_reply has asserted every length on the way.
    assert!(bot.replies.len() > 5);
}

#[test]
fn state_stays_compact() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    assert!(bot.max_json < 800, "state grew to {} bytes", bot.max_json);
    let json = serde_json::to_string(&bot.st).expect("json");
    assert!(json.len() < 200, "{json}");
}

#[test]
fn an_empty_state_from_an_old_version_still_works() {
    // A state written before any field existed, or by an older build.
    let st: DialogState = serde_json::from_str("{}").expect("empty state");
    let (_, out) = step(st, Input::Text("привет".into()), &ctx());
    assert!(out.replies[0].text.contains(&note("note-hint")));
}

#[test]
fn unexpected_answers_are_ignored() {
    let (st, out) = step(
        DialogState::default(),
        Input::Loaded(Loaded::Booked(World::salon().booking("x", ctx().now))),
        &ctx(),
    );
    assert!(out.replies.is_empty() && out.commands.is_empty());
    assert_eq!(st.at, super::state::At::Menu);
}

#[test]
fn steps_are_deterministic() {
    let run = || {
        let mut bot = Bot::new();
        bot.goto_times(&ru("btn-any-master"));
        bot.press("12:00");
        bot.text("+79123456789");
        bot.text("Мария");
        bot.press(&ru("btn-confirm"));
        (bot.replies, bot.commands, bot.st)
    };
    assert_eq!(run(), run());
}

#[test]
fn durations_under_an_hour_show_minutes_only() {
    let mut world = World::salon();
    world.services = vec![service("z", "Консультация", "Прочее", 0, 0, 30)];
    let mut bot = Bot::with(ctx(), world);
    bot.start();
    bot.press(&ru("btn-book"));
    assert_eq!(
        bot.button("Консультация").label,
        "Консультация · 0\u{a0}₽ · 30 минут"
    );
}

#[test]
fn a_past_visit_books_again_with_the_same_master() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    let r = bot.press(&ru("btn-my"));
    let screen = r.last().expect("my bookings");
    assert!(screen.text.contains(&ru("my-past")), "{}", screen.text);
    let again = i18n::t_args(
        Lang::Ru,
        "btn-again",
        &[
            ("service", "Стрижка женская".into()),
            ("master", "Анна".into()),
        ],
    );
    let r = bot.press(&again);
    // Straight to the days of that master: the master screen is skipped.
    assert!(
        bot.commands.iter().any(|c| matches!(
            c,
            Command::LoadDays { service_id, master_id: Some(m), .. } if service_id == "s1" && m == "m1"
        )),
        "{:?}",
        bot.commands
    );
    assert!(
        r.last()
            .expect("days")
            .buttons
            .iter()
            .flatten()
            .any(|b| b.data.contains("|d:"))
    );
}

#[test]
fn no_past_visits_no_book_again_row() {
    let mut world = World::salon();
    let soon = world.booking("bk-1", utc("2024-12-03T05:00:00Z"));
    world.bookings = vec![soon];
    let mut bot = Bot::with(ctx(), world);
    bot.start();
    let r = bot.press(&ru("btn-my"));
    let screen = r.last().expect("my bookings");
    assert!(!screen.text.contains(&ru("my-past")));
    assert!(
        !screen
            .buttons
            .iter()
            .flatten()
            .any(|b| b.data.contains("|Ag:"))
    );
}

fn school() -> (Context, World) {
    let mut world = World::salon();
    world.services = vec![
        service("python", "Python для подростков", "", 0, 0, 0),
        service("design", "Дизайн", "", 0, 0, 0),
    ];
    world.masters = vec![
        Master {
            id: "12".into(),
            name: "Python, вечерняя".into(),
            specialization: "старт 07.12.2026".into(),
        },
        Master {
            id: TRIAL.into(),
            name: String::new(),
            specialization: String::new(),
        },
    ];
    let mut c = ctx();
    c.school = true;
    c.texts = i18n::Texts::builtin(crate::domain::BusinessKind::School);
    (c, world)
}

fn enrols(bot: &Bot) -> Vec<&EnrolDraft> {
    bot.commands
        .iter()
        .filter_map(|c| match c {
            Command::Enrol(d) => Some(d),
            _ => None,
        })
        .collect()
}

#[test]
fn school_mode_goes_course_group_phone_name_application_without_days_or_times() {
    let (c, world) = school();
    let mut bot = Bot::with(c, world);
    bot.start();
    bot.press("Записаться");
    assert!(bot.has_button("Дизайн"));
    assert!(
        !bot.screen()
            .buttons
            .iter()
            .flatten()
            .any(|b| b.label.contains('₽')),
        "a course is named without a price"
    );
    bot.press("Python для подростков");
    assert!(
        bot.screen().text.contains("выберите группу"),
        "{}",
        bot.screen().text
    );
    assert!(bot.has_button("Пробное занятие"));
    assert!(!bot.has_button("Любой мастер"));
    bot.press("Python, вечерняя");
    assert!(
        bot.last().request_contact,
        "the phone comes right after the group"
    );
    bot.back_from_phone_returns_to_groups();
    bot.press("Python, вечерняя");
    bot.text("+7 912 345-67-89");
    bot.text("Анна");
    assert!(
        bot.screen().text.contains("Проверьте заявку"),
        "{}",
        bot.screen().text
    );
    bot.press("Отправить заявку");
    assert!(
        bot.last().text.contains("Заявка принята"),
        "{}",
        bot.last().text
    );
    let sent = enrols(&bot);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].course.id, "python");
    assert_eq!(sent[0].group.as_ref().map(|g| g.id.as_str()), Some("12"));
    assert!(!sent[0].trial);
    assert_eq!(sent[0].phone.as_str(), "+79123456789");
    assert_eq!(sent[0].source, Source::direct(Channel::Telegram));
    assert!(bot.books().is_empty());
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::LoadDays { .. } | Command::LoadSlots { .. }))
    );

    // The trial lesson, with phone and name already known: straight to the confirmation.
    bot.press("Записаться");
    bot.press("Python для подростков");
    bot.press("Пробное занятие");
    assert!(
        bot.screen().text.contains("пробное занятие"),
        "{}",
        bot.screen().text
    );
    bot.press("Отправить заявку");
    assert!(
        bot.last().text.contains("пробное занятие"),
        "{}",
        bot.last().text
    );
    let sent = enrols(&bot);
    assert!(sent[1].trial && sent[1].group.is_none());
}

impl Bot {
    fn back_from_phone_returns_to_groups(&mut self) {
        self.press("Назад");
        assert!(
            self.screen().text.contains("выберите группу"),
            "{}",
            self.screen().text
        );
    }
}

// ---- the confirmation code a salon may demand -----------------------------------------------

/// Books up to the confirmation and confirms; the schedule answers that it wants a code.
fn bot_at_code() -> Bot {
    let mut bot = Bot::new();
    bot.world.write_answers.push_back(Loaded::CodeRequired {
        booking_id: "bk-code".into(),
    });
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+7 912 345-67-89");
    bot.text("Анна");
    bot.press(&t(Lang::Ru, "btn-confirm"));
    bot
}

#[test]
fn a_code_demand_asks_for_the_code_and_the_right_code_completes_the_booking() {
    let mut bot = bot_at_code();
    let asked = bot.last().clone();
    assert!(asked.text.contains("+7 912 345-67-89"), "{}", asked.text);
    assert!(asked.text.contains("код"), "{}", asked.text);
    assert!(bot.st.awaits_code());
    assert!(bot.has_button(&ru("btn-resend-code")));
    // Spaces and dashes as the client may type them.
    let replies = bot.text("43-21");
    assert_eq!(
        bot.last_command(),
        &Command::SubmitCode {
            booking_id: "bk-code".into(),
            code: "4321".into()
        }
    );
    assert!(replies.iter().any(|r| r.text.contains("вы записаны")));
    assert!(!bot.st.awaits_code());
    // The code is nowhere in the persisted state.
    let json = serde_json::to_string(&bot.st).unwrap();
    assert!(!json.contains("4321"), "{json}");
}

#[test]
fn three_wrong_codes_give_up_and_say_call() {
    let mut bot = bot_at_code();
    let first = bot.text("1111");
    assert!(
        first
            .iter()
            .any(|r| r.text.contains(&note("note-code-wrong")))
    );
    assert!(first.iter().any(|r| r.text.contains("Осталось 2 попытки")));
    // Not a code at all: asked again, no try spent, nothing sent.
    let commands = bot.commands.len();
    let odd = bot.text("привет");
    assert_eq!(bot.commands.len(), commands);
    assert!(odd.iter().any(|r| r.text.contains(&note("note-bad-code"))));
    bot.text("2222");
    assert!(bot.last().text.contains("Осталась 1 попытка"));
    let last = bot.text("3333");
    assert_eq!(
        bot.last_command(),
        &Command::AbandonCode {
            booking_id: "bk-code".into()
        }
    );
    let told = &last.last().unwrap().text;
    assert!(told.contains("+7 343 000-00-00"), "{told}");
    assert!(!bot.st.awaits_code());
    let submitted = bot
        .commands
        .iter()
        .filter(|c| matches!(c, Command::SubmitCode { .. }))
        .count();
    assert_eq!(submitted, 3);
}

#[test]
fn the_code_is_sent_again_once_and_cancel_abandons_the_booking() {
    let mut bot = bot_at_code();
    let resent = bot.press(&ru("btn-resend-code"));
    assert_eq!(
        bot.commands
            .iter()
            .filter(|c| matches!(c, Command::ResendCode { .. }))
            .count(),
        1
    );
    assert!(
        resent
            .iter()
            .any(|r| r.text.contains(&note("note-code-resent")))
    );
    // Once only.
    assert!(!bot.has_button(&ru("btn-resend-code")));
    bot.press(&ru("btn-cancel"));
    assert_eq!(
        bot.last_command(),
        &Command::AbandonCode {
            booking_id: "bk-code".into()
        }
    );
    assert!(!bot.st.awaits_code());
}

#[test]
fn a_failed_code_check_returns_to_the_code_prompt_on_retry() {
    let mut bot = bot_at_code();
    bot.world.write_answers.push_back(Loaded::Failed {
        reason: "timeout".into(),
    });
    bot.text("4321");
    assert!(bot.has_button(&ru("btn-retry")));
    // Retry asks for the code again; nothing is booked anew.
    bot.press(&ru("btn-retry"));
    assert!(bot.st.awaits_code());
    assert!(bot.last().text.contains("+7 912 345-67-89"));
    assert_eq!(bot.books().len(), 1);
    bot.text("4321");
    assert!(bot.last().text.contains("вы записаны"));
}

#[test]
fn leaving_the_code_prompt_gives_up_the_waiting_booking_once() {
    let mut bot = bot_at_code();
    bot.text("/start");
    let abandoned = bot
        .commands
        .iter()
        .filter(|c| matches!(c, Command::AbandonCode { .. }))
        .count();
    assert_eq!(abandoned, 1);
    assert!(!bot.st.awaits_code());
    // A code typed afterwards is just text.
    bot.text("4321");
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::SubmitCode { .. }))
    );
}

// ---- wording ---------------------------------------------------------------------------

/// Moves booking `n` of "my bookings" to Wednesday 15:00 and stops at the before/after screen.
fn goto_move_confirmation(bot: &mut Bot) {
    bot.start();
    bot.press(&ru("btn-my"));
    bot.press(&i18n::t_args(
        Lang::Ru,
        "btn-reschedule-n",
        &[("n", 1.into())],
    ));
    bot.press("Ср 4 дек");
    bot.press("15:00");
    assert!(bot.last().text.contains("Станет: Ср 4 дек, 15:00"));
}

#[test]
fn leaving_a_move_says_the_visit_stays_and_leaving_a_booking_says_none_is_made() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    goto_move_confirmation(&mut bot);
    let r = bot.press(&ru("btn-cancel"));
    let text = &r[0].text;
    assert!(text.contains(&note("note-visit-kept")), "{text}");
    assert!(text.contains("остаётся как была"), "{text}");
    assert!(!text.contains(&note("note-flow-cancelled")), "{text}");
    assert!(!text.contains(&note("note-booking-dropped")), "{text}");
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::Cancel { .. } | Command::Reschedule { .. })),
        "leaving the move screen changes nothing"
    );

    // The same by command, and from the cancel question.
    goto_move_confirmation(&mut bot);
    let r = bot.text("/cancel");
    assert!(
        r[0].text.contains(&note("note-visit-kept")),
        "{}",
        r[0].text
    );
    bot.press(&ru("btn-my"));
    bot.press(&i18n::t_args(Lang::Ru, "btn-cancel-n", &[("n", 1.into())]));
    let r = bot.text("/cancel");
    assert!(
        r[0].text.contains(&note("note-visit-kept")),
        "{}",
        r[0].text
    );
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::Cancel { .. }))
    );

    // A new booking given up says no booking is made, not that a visit is kept.
    bot.goto_times("Анна");
    let r = bot.text("/cancel");
    assert!(
        r[0].text.contains(&note("note-booking-dropped")),
        "{}",
        r[0].text
    );
    assert!(r[0].text.contains("новую запись не оформляем"));
    // With nothing in progress, the plain acknowledgement.
    let r = bot.text("/cancel");
    assert!(
        r[0].text.contains(&note("note-flow-cancelled")),
        "{}",
        r[0].text
    );
}

#[test]
fn a_price_range_keeps_its_from_on_the_confirmation_and_after_booking() {
    let mut bot = Bot::new();
    bot.start();
    bot.press(&ru("btn-book"));
    let from = "от 3\u{a0}000\u{a0}₽";
    assert!(bot.button("Окрашивание").label.contains(from));
    bot.press("Окрашивание");
    bot.press("Анна");
    bot.press("Сегодня 2 дек");
    bot.press("10:00");
    bot.text("+79123456789");
    let r = bot.text("Мария");
    assert!(
        r[0].text.contains(&format!("Стоимость: {from}")),
        "{}",
        r[0].text
    );
    let r = bot.press(&ru("btn-confirm"));
    let booked = &r.last().expect("reply").text;
    assert!(booked.contains(&format!("Стоимость: {from}")), "{booked}");

    // A fixed price has no "from" anywhere.
    bot.press(&ru("btn-book"));
    bot.press("Маникюр");
    bot.press("Анна");
    bot.press("Сегодня 2 дек");
    let r = bot.press("10:00");
    assert!(
        r[0].text.contains("Стоимость: 1\u{a0}200\u{a0}₽"),
        "{}",
        r[0].text
    );
    assert!(!r[0].text.contains("от "), "{}", r[0].text);
}

#[test]
fn the_phone_prompt_names_the_share_button_the_messengers_show() {
    for lang in [Lang::Ru, Lang::En] {
        let prompt = t(lang, "ask-phone");
        for key in ["tg-share-phone", "max-share-phone"] {
            let label = t(lang, key);
            let words = label.trim_start_matches("📱").trim();
            assert!(words.len() > 5, "{key}: {label}");
            assert!(
                prompt.contains(words),
                "{lang:?}: {prompt:?} does not name {label:?}"
            );
        }
    }
    assert!(!t(Lang::Ru, "ask-phone").contains("Поделиться"));
}

#[test]
fn phones_are_shown_formatted() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("89123456789");
    let r = bot.text("Мария");
    assert!(
        r[0].text.contains("Телефон: +7 912 345-67-89"),
        "{}",
        r[0].text
    );
    assert!(!r[0].text.contains("+79123456789"), "{}", r[0].text);

    // The code prompt names the number the SMS went to the same way.
    let bot = bot_at_code();
    let ask = &bot.last().text;
    assert!(ask.contains("+7 912 345-67-89"), "{ask}");
}

// ---- name validation -----------------------------------------------------------------------

#[test]
fn a_name_without_letters_or_with_a_phone_in_it_is_refused_with_a_hint() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    for bad in [
        "89123456789",
        "+7 912",
        "—",
        "Мария 8 912 345-67-89",
        "...",
        "12345",
    ] {
        let r = bot.text(bad);
        assert!(
            r[0].text.contains(&note("note-name-not-a-name")),
            "{bad:?}: {}",
            r[0].text
        );
        assert!(
            r[0].text.contains(&ru("ask-name")),
            "{bad:?}: the name is asked again"
        );
        assert_eq!(bot.st.name(), None, "{bad:?} taken as a name");
    }
    assert!(bot.books().is_empty());
    for good in ["Анна", "Anna-Maria", "Ли", "Д'Артаньян", "Анна 2"] {
        let mut bot = Bot::new();
        bot.goto_times("Анна");
        bot.press("10:00");
        bot.text("+79123456789");
        let r = bot.text(good);
        assert!(
            !r[0].text.contains(&note("note-name-not-a-name")),
            "{good:?} refused"
        );
        assert_eq!(bot.st.name(), Some(good));
        assert!(bot.has_button(&ru("btn-confirm")), "{good:?}");
    }
}

#[test]
fn the_name_hint_is_in_the_clients_language() {
    let mut ctx = ctx();
    ctx.user_lang = Some("en".into());
    let mut bot = Bot::with(ctx, World::salon());
    bot.start();
    bot.press(&t(Lang::En, "btn-book"));
    bot.press("Стрижка женская");
    bot.press(&t(Lang::En, "btn-any-master"));
    bot.press("Today 2 Dec");
    bot.press("10:00");
    bot.text("+79123456789");
    let r = bot.text("89123456789");
    assert!(
        r[0].text.contains("does not look like a name"),
        "{}",
        r[0].text
    );
}

// ---- today and tomorrow ----------------------------------------------------------------------

fn day_labels(bot: &Bot) -> Vec<String> {
    bot.screen()
        .buttons
        .iter()
        .flatten()
        .filter(|b| b.data.contains("|d:"))
        .map(|b| b.label.clone())
        .collect()
}

#[test]
fn day_buttons_say_today_and_tomorrow_by_the_business_calendar() {
    let mut world = World::salon();
    world.free_days = vec![
        date(2024, 12, 2),
        date(2024, 12, 3),
        date(2024, 12, 4),
        date(2024, 12, 10),
    ];
    let mut bot = Bot::with(ctx(), world);
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    bot.press("Анна");
    assert_eq!(
        day_labels(&bot),
        ["Сегодня 2 дек", "Завтра 3 дек", "Ср 4 дек"]
    );
    // The day keeps its weekday where it is named in a sentence.
    let r = bot.press("Завтра 3 дек");
    assert!(r[0].text.contains("Вт 3 дек"), "{}", r[0].text);
    // Next week has neither.
    bot.press(&ru("btn-back"));
    bot.press(&ru("btn-next-week"));
    assert_eq!(day_labels(&bot), ["Вт 10 дек"]);

    // 21:00Z on 2 Dec is already 02:00 on 3 Dec in Yekaterinburg: the 3rd is today there,
    // though the server's UTC date is still the 2nd.
    let mut late = ctx();
    late.now = utc("2024-12-02T21:00:00Z");
    let mut world = World::salon();
    world.free_days = vec![date(2024, 12, 3), date(2024, 12, 4), date(2024, 12, 5)];
    let mut bot = Bot::with(late, world);
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    bot.press("Анна");
    assert_eq!(
        day_labels(&bot),
        ["Сегодня 3 дек", "Завтра 4 дек", "Чт 5 дек"]
    );

    // In English.
    let mut en = ctx();
    en.user_lang = Some("en".into());
    let mut world = World::salon();
    world.free_days = vec![date(2024, 12, 2), date(2024, 12, 3)];
    let mut bot = Bot::with(en, world);
    bot.start();
    bot.press(&t(Lang::En, "btn-book"));
    bot.press("Стрижка женская");
    bot.press(&t(Lang::En, "btn-any-master"));
    assert_eq!(day_labels(&bot), ["Today 2 Dec", "Tomorrow 3 Dec"]);
}

// ---- the cancellation and move cut-off -------------------------------------------------------

/// A 3 h cut-off, "now" at 09:00 local on Mon 2 Dec; the world's visits are on Tue 3 Dec
/// 10:00 (bk-1) and Fri 6 Dec (bk-2), plus one today at 11:00, two hours away (bk-soon).
fn bot_with_cutoff() -> Bot {
    let mut c = ctx();
    c.change_cutoff = Some(chrono::Duration::hours(3));
    let mut world = world_with_bookings();
    let soon = world.booking("bk-soon", utc("2024-12-02T06:00:00Z"));
    world.bookings.push(soon);
    Bot::with(c, world)
}

#[test]
fn inside_the_cutoff_my_bookings_offers_a_call_instead_of_cancel_and_move() {
    let mut bot = bot_with_cutoff();
    bot.start();
    let r = bot.press(&ru("btn-my"));
    let text = &r[0].text;
    assert!(text.contains("3 записи"), "{text}");
    let call = i18n::t_args(
        Lang::Ru,
        "my-item-call",
        &[("phone", "+7 343 000-00-00".into())],
    );
    // The visit two hours away comes first and carries the call line; the others do not.
    let soon = text.find("Пн 2 дек, 11:00").expect("soon listed");
    let tomorrow = text.find("Вт 3 дек, 10:00").expect("tomorrow listed");
    let line = text.find(&call).expect("call line");
    assert!(soon < line && line < tomorrow, "{text}");
    assert_eq!(text.matches(&call).count(), 1, "{text}");
    let data: Vec<String> = bot
        .screen()
        .buttons
        .iter()
        .flatten()
        .map(|b| b.data.clone())
        .collect();
    assert!(!data.iter().any(|d| d.ends_with(":bk-soon")), "{data:?}");
    assert!(data.iter().any(|d| d.ends_with("C:bk-1")), "{data:?}");
    assert!(data.iter().any(|d| d.ends_with("R:bk-2")), "{data:?}");
}

#[test]
fn a_reminder_cancel_or_move_inside_the_cutoff_says_call_and_changes_nothing() {
    let buttons = crate::dialog::reminder_buttons(&Default::default(), Lang::Ru, "bk-soon", true);
    for kind in ["Rc:", "Rm:"] {
        let mut bot = bot_with_cutoff();
        bot.start();
        let data = buttons
            .iter()
            .flatten()
            .find(|b| b.data.contains(kind))
            .expect("reminder button")
            .data
            .clone();
        let r = bot.send(Input::Button(data));
        let text = &r.last().expect("reply").text;
        assert!(text.contains("уже скоро"), "{kind}: {text}");
        assert!(text.contains("+7 343 000-00-00"), "{kind}: {text}");
        assert!(!bot.has_button(&ru("btn-yes-cancel")), "{kind}");
        assert!(
            !bot.commands.iter().any(|c| matches!(
                c,
                Command::Cancel { .. } | Command::Reschedule { .. } | Command::LoadDays { .. }
            )),
            "{kind}: {:?}",
            bot.commands
        );
        assert!(bot.has_button(&ru("btn-my")));
    }
}

#[test]
fn a_visit_that_crosses_the_cutoff_while_the_client_decides_is_not_changed() {
    // The cancel question for Tuesday's 10:00 visit is asked on Monday; "yes" comes on Tuesday
    // at 08:00, two hours before it.
    let mut bot = bot_with_cutoff();
    bot.start();
    bot.press(&ru("btn-my"));
    bot.press(&i18n::t_args(Lang::Ru, "btn-cancel-n", &[("n", 2.into())]));
    assert!(bot.has_button(&ru("btn-yes-cancel")));
    bot.ctx.now = utc("2024-12-03T03:00:00Z");
    let r = bot.press(&ru("btn-yes-cancel"));
    assert!(r[0].text.contains("уже скоро"), "{}", r[0].text);
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::Cancel { .. }))
    );

    // The same for a move confirmed too late.
    let mut bot = bot_with_cutoff();
    bot.start();
    bot.press(&ru("btn-my"));
    bot.press(&i18n::t_args(
        Lang::Ru,
        "btn-reschedule-n",
        &[("n", 2.into())],
    ));
    bot.press("Ср 4 дек");
    bot.press("15:00");
    bot.ctx.now = utc("2024-12-03T03:00:00Z");
    let r = bot.press(&ru("btn-confirm"));
    assert!(r[0].text.contains("уже скоро"), "{}", r[0].text);
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::Reschedule { .. }))
    );
}

#[test]
fn without_a_cutoff_a_visit_can_be_changed_up_to_its_start() {
    let mut bot = bot_with_cutoff();
    bot.ctx.change_cutoff = None;
    bot.start();
    bot.press(&ru("btn-my"));
    assert!(
        bot.button(&i18n::t_args(Lang::Ru, "btn-cancel-n", &[("n", 1.into())]))
            .data
            .ends_with("C:bk-soon")
    );
    bot.press(&i18n::t_args(Lang::Ru, "btn-cancel-n", &[("n", 1.into())]));
    bot.press(&ru("btn-yes-cancel"));
    assert_eq!(
        bot.last_command(),
        &Command::Cancel {
            booking_id: "bk-soon".into()
        }
    );
}

#[test]
fn inside_the_cutoff_without_a_business_phone_the_client_is_told_to_call_the_salon() {
    let mut bot = bot_with_cutoff();
    bot.ctx.business_phone = None;
    bot.start();
    let r = bot.press(&ru("btn-my"));
    assert!(
        r[0].text.contains(&ru("my-item-call-nophone")),
        "{}",
        r[0].text
    );
}

// ---- my data ---------------------------------------------------------------------------------

#[test]
fn my_data_changes_the_name_and_phone_the_next_booking_uses() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 1);

    bot.press(&ru("btn-menu"));
    let r = bot.press(&ru("btn-data"));
    assert!(r[0].text.contains("Имя: Мария"), "{}", r[0].text);
    assert!(
        r[0].text.contains("Телефон: +7 912 345-67-89"),
        "{}",
        r[0].text
    );

    bot.press(&ru("btn-data-name"));
    assert!(bot.last().text.contains(&ru("data-ask-name")));
    // The name rules of the booking step hold here too.
    let r = bot.text("89123456789");
    assert!(
        r[0].text.contains(&note("note-name-not-a-name")),
        "{}",
        r[0].text
    );
    assert_eq!(bot.st.name(), Some("Мария"));
    let r = bot.text("Мария Иванова");
    assert!(
        r[0].text.contains(&note("note-name-saved")),
        "{}",
        r[0].text
    );
    assert!(r[0].text.contains("Имя: Мария Иванова"), "{}", r[0].text);

    let r = bot.press(&ru("btn-data-phone"));
    assert!(r[0].request_contact, "the share button is offered");
    assert!(r[0].text.contains(&ru("data-ask-phone")));
    let r = bot.text("не скажу");
    assert!(r[0].text.contains(&note("note-bad-phone")), "{}", r[0].text);
    assert_eq!(bot.st.phone().map(Phone::as_str), Some("+79123456789"));
    let r = bot.send(Input::Contact {
        phone: "+7 922 000-11-22".into(),
    });
    assert!(
        r[0].text.contains(&note("note-phone-saved")),
        "{}",
        r[0].text
    );
    assert!(
        r[0].text.contains("Телефон: +7 922 000-11-22"),
        "{}",
        r[0].text
    );

    // The next booking goes under the new name and phone, without asking again.
    bot.press(&ru("btn-menu"));
    bot.press(&ru("btn-book"));
    bot.press("Маникюр");
    bot.press("Ольга");
    bot.press("Ср 4 дек");
    let r = bot.press("12:00");
    assert!(r[0].text.contains("Имя: Мария Иванова"), "{}", r[0].text);
    bot.press(&ru("btn-confirm"));
    let books = bot.books();
    assert_eq!(books.len(), 2);
    assert_eq!(books[1].name, "Мария Иванова");
    assert_eq!(books[1].phone.as_str(), "+79220001122");
}

#[test]
fn my_data_of_a_new_client_says_nothing_is_given_and_back_leaves_it_unchanged() {
    let mut bot = Bot::new();
    bot.start();
    let r = bot.press(&ru("btn-data"));
    assert_eq!(
        r[0].text.matches(&ru("data-unset")).count(),
        2,
        "{}",
        r[0].text
    );
    bot.press(&ru("btn-data-name"));
    let r = bot.press(&ru("btn-back"));
    assert!(r[0].text.contains(&ru("data-unset")), "{}", r[0].text);
    assert!(bot.has_button(&ru("btn-data-name")));
    assert_eq!(bot.st.name(), None);
    // A stale "my data" button from an old menu still works, like the other global ones.
    let old_menu = bot
        .replies
        .iter()
        .find_map(|r| {
            r.buttons
                .iter()
                .flatten()
                .find(|b| b.label == ru("btn-data"))
        })
        .expect("menu button")
        .data
        .clone();
    bot.press(&ru("btn-menu"));
    let r = bot.send(Input::Button(old_menu));
    assert!(r[0].text.contains(&ru("data-unset")), "{}", r[0].text);
    assert!(!r[0].text.contains(&note("note-stale")));
}

// ---- a comment to the visit --------------------------------------------------------------

#[test]
fn a_comment_before_confirming_goes_into_the_booking() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    assert!(bot.has_button(&ru("btn-comment")));
    let r = bot.press(&ru("btn-comment"));
    assert!(
        r[0].text.contains("Не больше 200 символов"),
        "{}",
        r[0].text
    );
    assert!(
        !bot.has_button(&ru("btn-comment-drop")),
        "nothing to drop yet"
    );
    let r = bot.text("  Покороче,\n пожалуйста  ");
    assert!(
        r[0].text.contains("Комментарий: Покороче, пожалуйста"),
        "{}",
        r[0].text
    );
    assert!(bot.has_button(&ru("btn-comment-edit")));
    assert!(bot.books().is_empty(), "a comment does not book by itself");
    bot.press(&ru("btn-confirm"));
    let books = bot.books();
    assert_eq!(books.len(), 1);
    assert_eq!(books[0].comment.as_deref(), Some("Покороче, пожалуйста"));
    // The comment belonged to that visit: the next booking starts without one.
    assert!(
        !serde_json::to_string(&bot.st)
            .expect("json")
            .contains("Покороче")
    );
    bot.press(&ru("btn-book"));
    bot.press("Маникюр");
    bot.press("Анна");
    bot.press("Ср 4 дек");
    let r = bot.press("15:00");
    assert!(!r[0].text.contains("Комментарий:"), "{}", r[0].text);
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books()[1].comment, None);
}

#[test]
fn a_comment_can_be_changed_dropped_or_left_and_a_long_one_is_refused() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-comment"));
    // Back from the comment prompt: the confirmation again, no comment.
    let r = bot.press(&ru("btn-back"));
    assert!(r[0].text.contains("Проверьте запись"), "{}", r[0].text);
    assert!(!r[0].text.contains("Комментарий:"));
    bot.press(&ru("btn-comment"));
    let long = "а".repeat(201);
    let r = bot.text(&long);
    assert!(
        r[0].text.contains(&note("note-comment-long")),
        "{}",
        r[0].text
    );
    assert!(r[0].text.contains("Не больше 200"), "the prompt again");
    bot.text(&"б".repeat(200));
    assert!(bot.last().text.contains(&"б".repeat(200)));
    // The longest comment keeps the persisted state within 1 KB.
    let json = serde_json::to_string(&bot.st).expect("json");
    assert!(json.len() <= 1024, "{} bytes: {json}", json.len());
    bot.press(&ru("btn-comment-edit"));
    bot.text("Аллергия на лак");
    assert!(bot.last().text.contains("Комментарий: Аллергия на лак"));
    bot.press(&ru("btn-comment-edit"));
    let r = bot.press(&ru("btn-comment-drop"));
    assert!(!r[0].text.contains("Комментарий:"), "{}", r[0].text);
    assert!(bot.has_button(&ru("btn-comment")));
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books()[0].comment, None);
}

#[test]
fn moving_a_visit_offers_no_comment() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    goto_move_confirmation(&mut bot);
    assert!(!bot.has_button(&ru("btn-comment")));
    let data = bot.button(&ru("btn-confirm")).data;
    let version = data.split('|').next().expect("version");
    let r = bot.send(Input::Button(format!("{version}|N")));
    assert!(r[0].text.contains(&note("note-hint")), "{}", r[0].text);
}

// ---- personal-data consent ------------------------------------------------------------------

/// A bot that shows the consent screen instead of agreeing on its own.
fn asking_bot(ctx: Context) -> Bot {
    let mut bot = Bot::with(ctx, World::salon());
    bot.auto_consent = false;
    bot
}

#[test]
fn the_consent_is_asked_before_the_phone_and_once_per_chat() {
    let mut bot = asking_bot(ctx());
    bot.goto_times("Анна");
    let r = bot.press("10:00");
    assert_eq!(r.len(), 1);
    assert!(!r[0].request_contact, "no phone asked before the consent");
    assert!(r[0].text.contains("Салон Лаванда"), "{}", r[0].text);
    assert!(r[0].text.contains("телефона"), "{}", r[0].text);
    assert!(consent_button(&r[0]).is_some());
    assert!(bot.has_button(&ru("btn-back")) && bot.has_button(&ru("btn-menu")));
    assert!(bot.st.consent().is_none());

    let r = bot.press(&ru("btn-consent"));
    assert!(r[0].request_contact, "agreeing goes on to the phone");
    assert!(r[0].text.contains(&ru("ask-phone")));
    let consent = bot.st.consent().cloned().expect("the agreement is kept");
    assert_eq!(consent.at, bot.ctx.now);
    assert!(consent.version.starts_with("ru-"), "{}", consent.version);
    assert_eq!(consent.version.len(), "ru-".len() + 12);

    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 1);
    assert_eq!(bot.books()[0].consent.as_ref(), Some(&consent));

    // The next booking in this chat goes from the time straight to the confirmation.
    bot.goto_times("Анна");
    let r = bot.press("15:00");
    assert!(
        consent_button(&r[0]).is_none(),
        "asked again: {}",
        r[0].text
    );
    assert!(r[0].text.contains("Проверьте запись"), "{}", r[0].text);
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books()[1].consent.as_ref(), Some(&consent));
}

#[test]
fn a_phone_typed_or_shared_on_the_consent_screen_is_not_taken() {
    let mut bot = asking_bot(ctx());
    bot.goto_times("Анна");
    bot.press("10:00");
    for input in [
        Input::Text("+7 912 345-67-89".into()),
        Input::Contact {
            phone: "+79123456789".into(),
        },
        Input::Text("согласен".into()),
    ] {
        let r = bot.send(input);
        assert_eq!(r.len(), 1);
        assert!(
            r[0].text.contains(&note("note-consent-first")),
            "{}",
            r[0].text
        );
        assert!(
            consent_button(&r[0]).is_some(),
            "the consent is shown again"
        );
        assert!(!r[0].request_contact);
        assert!(bot.st.phone().is_none());
        assert!(bot.st.consent().is_none());
    }
    // Back leads to the times, as it does from the phone step.
    bot.press(&ru("btn-back"));
    assert!(bot.has_button("10:00"));
    bot.press("10:00");
    let r = bot.press(&ru("btn-consent"));
    assert!(r[0].request_contact);
}

#[test]
fn a_contact_shared_out_of_turn_is_kept_only_after_the_consent() {
    let mut bot = asking_bot(ctx());
    bot.start();
    let r = bot.send(Input::Contact {
        phone: "+79123456789".into(),
    });
    assert!(
        r[0].text.contains(&note("note-consent-first")),
        "{}",
        r[0].text
    );
    assert!(bot.st.phone().is_none());
}

#[test]
fn a_changed_consent_text_or_policy_asks_again() {
    let mut bot = asking_bot(ctx());
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.press(&ru("btn-consent"));
    bot.text("+79123456789");
    bot.text("Мария");
    let first = bot.st.consent().cloned().expect("agreed");

    // The business links its policy: what was agreed to no longer reads the same.
    bot.ctx.policy_url = Some("https://lavanda.example/privacy".into());
    // Even the confirmation already on screen does not book without the new agreement.
    let r = bot.press(&ru("btn-confirm"));
    assert!(bot.books().is_empty(), "booked on an outdated consent");
    assert!(consent_button(&r[0]).is_some());
    assert!(
        r[0].text.contains("https://lavanda.example/privacy"),
        "{}",
        r[0].text
    );
    bot.ctx.now = utc("2024-12-02T04:05:00Z");
    let r = bot.press(&ru("btn-consent"));
    assert!(r[0].text.contains("Проверьте запись"), "{}", r[0].text);
    let second = bot.st.consent().cloned().expect("agreed again");
    assert_ne!(second.version, first.version);
    assert_eq!(second.at, utc("2024-12-02T04:05:00Z"));
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books()[0].consent.as_ref(), Some(&second));

    // Each language's text has its own version: an English client agrees to the English one.
    let mut c = ctx();
    c.user_lang = Some("en".into());
    let mut en = asking_bot(c);
    en.start();
    en.press(&t(Lang::En, "btn-book"));
    en.press("Стрижка женская");
    en.press("Анна");
    let day = en
        .screen()
        .buttons
        .iter()
        .flatten()
        .find(|b| b.data.ends_with("d:20241202"))
        .expect("today")
        .data
        .clone();
    en.send(Input::Button(day));
    en.press("10:00");
    en.press(&t(Lang::En, "btn-consent"));
    let version = &en.st.consent().expect("agreed").version;
    assert!(version.starts_with("en-"), "{version}");
}

#[test]
fn with_the_consent_off_the_phone_is_asked_at_once() {
    let mut c = ctx();
    c.consent = false;
    let mut bot = asking_bot(c);
    bot.goto_times("Анна");
    let r = bot.press("10:00");
    assert!(r[0].request_contact);
    assert!(consent_button(&r[0]).is_none());
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 1);
    assert_eq!(bot.books()[0].consent, None);
    // Nor does "my data" ask for it.
    bot.press(&ru("btn-menu"));
    bot.press(&ru("btn-data"));
    let r = bot.press(&ru("btn-data-phone"));
    assert!(r[0].request_contact);
}

#[test]
fn my_data_asks_the_consent_before_a_new_phone_or_name() {
    let mut bot = asking_bot(ctx());
    bot.start();
    bot.press(&ru("btn-data"));
    let r = bot.press(&ru("btn-data-phone"));
    assert!(consent_button(&r[0]).is_some(), "{}", r[0].text);
    assert!(!r[0].request_contact);
    bot.press(&ru("btn-back"));
    assert!(bot.has_button(&ru("btn-data-phone")), "back to my data");
    bot.press(&ru("btn-data-name"));
    let r = bot.text("Мария");
    assert!(
        r[0].text.contains(&note("note-consent-first")),
        "{}",
        r[0].text
    );
    assert_eq!(bot.st.name(), None);
    bot.press(&ru("btn-back"));
    bot.press(&ru("btn-data-phone"));
    let r = bot.press(&ru("btn-consent"));
    assert!(r[0].request_contact);
    assert!(r[0].text.contains(&ru("data-ask-phone")));
    bot.text("+79123456789");
    assert_eq!(bot.st.phone().map(Phone::as_str), Some("+79123456789"));
    // Agreed once: the name is asked at once.
    bot.press(&ru("btn-data-name"));
    assert!(bot.last().text.contains(&ru("data-ask-name")));
}

/// The master screen, its "any" button and the confirmation of a booking, as a client of a
/// business of `kind` reads them in `lang`.
fn booking_words(kind: crate::domain::BusinessKind, lang: Lang) -> (String, String, String) {
    let mut c = ctx();
    c.texts = i18n::Texts::builtin(kind);
    c.user_lang = Some(lang.code().into());
    let mut bot = Bot::with(c, World::salon());
    bot.start();
    bot.press(&t(lang, "btn-book"));
    bot.press("Стрижка женская");
    let masters = bot.screen().text.clone();
    let any = match lang {
        Lang::Ru => "Любой",
        Lang::En => "Any",
    };
    let any = bot.button(any).label;
    bot.press("Анна");
    bot.press(&t(lang, "day-today"));
    bot.press("10:00");
    bot.send(Input::Contact {
        phone: "79123456789".into(),
    });
    let confirm = bot.text("Мария")[0].text.clone();
    (masters, any, confirm)
}

#[test]
fn a_clinic_says_doctor_where_a_salon_says_master() {
    use crate::domain::BusinessKind::{Clinic, Salon, School};
    let (masters, any, confirm) = booking_words(Salon, Lang::Ru);
    assert_eq!(masters, "Стрижка женская: выберите мастера");
    assert_eq!(any, "Любой мастер");
    assert!(confirm.contains("Мастер: Анна"), "{confirm}");
    assert!(confirm.contains("Услуга: Стрижка женская"), "{confirm}");

    let (masters, any, confirm) = booking_words(Clinic, Lang::Ru);
    assert_eq!(masters, "Стрижка женская: выберите врача");
    assert_eq!(any, "Любой врач");
    assert!(confirm.contains("Врач: Анна"), "{confirm}");
    assert!(!confirm.contains("Мастер"), "{confirm}");

    let (masters, any, confirm) = booking_words(Salon, Lang::En);
    assert_eq!(masters, "Стрижка женская: choose a master");
    assert_eq!(any, "Any master");
    assert!(confirm.contains("Master: Анна"), "{confirm}");
    assert!(confirm.contains("check your booking"), "{confirm}");

    let (masters, any, confirm) = booking_words(Clinic, Lang::En);
    assert_eq!(masters, "Стрижка женская: choose a doctor");
    assert_eq!(any, "Any doctor");
    assert!(confirm.contains("Doctor: Анна"), "{confirm}");
    assert!(confirm.contains("check your appointment"), "{confirm}");
    assert!(!confirm.to_lowercase().contains("master"), "{confirm}");

    // A school's words without its application flow (courses sold as visits).
    let (masters, any, confirm) = booking_words(School, Lang::Ru);
    assert_eq!(masters, "Стрижка женская: выберите преподавателя");
    assert_eq!(any, "Любой преподаватель");
    assert!(confirm.contains("Курс: Стрижка женская"), "{confirm}");
}

#[test]
fn a_clinic_notice_names_the_clinic_in_agreement() {
    use crate::domain::BusinessKind::Clinic;
    let clinic = i18n::Texts::builtin(Clinic);
    let args = [("service", "Осмотр".into()), ("when", "2 дек".into())];
    let ru = clinic.t_args(Lang::Ru, "notify-cancelled-by-business", &args);
    assert!(ru.starts_with("Клиника отменила вашу запись"), "{ru}");
    let salon = i18n::t_args(Lang::Ru, "notify-cancelled-by-business", &args);
    assert!(salon.starts_with("Салон отменил вашу запись"), "{salon}");
    let en = clinic.t_args(Lang::En, "notify-cancelled-by-business", &args);
    assert!(
        en.starts_with("The clinic cancelled your appointment"),
        "{en}"
    );
}

#[test]
fn an_override_changes_what_the_dialog_says() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("ru")).expect("ru dir");
    std::fs::write(
        dir.path().join("ru/words.ftl"),
        "greeting = Добро пожаловать в { $business }!\n-master = { $case ->\n   *[nom] стилист\n    [acc] стилиста\n}\n",
    )
    .expect("override file");
    let mut c = ctx();
    c.texts = i18n::Texts::load(crate::domain::BusinessKind::Salon, dir.path())
        .expect("a valid override");
    let mut bot = Bot::with(c, World::salon());
    let r = bot.start();
    assert!(
        r[0].text.starts_with("Добро пожаловать в Салон Лаванда!"),
        "{}",
        r[0].text
    );
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    assert_eq!(bot.screen().text, "Стрижка женская: выберите стилиста");
    assert!(bot.has_button("Любой стилист"));
}

fn with_support(hours: Option<&str>, days: Option<&[&str]>) -> Bot {
    let config = crate::support::SupportConfig {
        telegram_chat_id: Some(-100),
        hours: hours.map(str::to_string),
        days: days.map(|d| d.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let mut ctx = ctx();
    ctx.support = Some(Support {
        hours: config.hours().expect("hours"),
    });
    Bot::with(ctx, World::salon())
}

fn calls(bot: &Bot) -> Vec<Option<String>> {
    bot.commands
        .iter()
        .filter_map(|c| match c {
            Command::CallAdmin { question } => Some(question.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn without_an_admin_chat_there_is_no_call_and_free_text_gets_the_hint() {
    let mut bot = Bot::new();
    bot.start();
    assert!(!bot.has_button(&ru("btn-call-admin")));
    let r = bot.text("а парковка есть?");
    assert!(r[0].text.contains(&note("note-hint")));
    // A pressed "call" from an old message is nothing without an admin chat.
    let v = bot.st.v;
    bot.send(Input::Button(format!("{v}|Q")));
    assert!(calls(&bot).is_empty());
}

#[test]
fn the_call_button_on_the_menu_and_help_asks_for_an_administrator() {
    let mut bot = with_support(None, None);
    bot.start();
    assert!(bot.has_button(&ru("btn-call-admin")));
    let r = bot.press(&ru("btn-call-admin"));
    assert_eq!(calls(&bot), [None]);
    assert_eq!(r.len(), 1);
    assert!(r[0].text.contains(&ru("support-called")), "{}", r[0].text);
    assert!(!r[0].text.contains("не на связи"), "no hours, always in");
    assert!(bot.has_button(&ru("btn-menu")));

    bot.text("/help");
    assert!(bot.has_button(&ru("btn-call-admin")));
    bot.press(&ru("btn-call-admin"));
    assert_eq!(calls(&bot), [None, None]);
}

#[test]
fn free_text_the_dialog_cannot_place_goes_to_the_admins_and_keeps_the_step() {
    let mut bot = with_support(None, None);
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    let r = bot.text("  а мастер Анна работает в субботу?  ");
    assert_eq!(
        calls(&bot),
        [Some("а мастер Анна работает в субботу?".to_string())]
    );
    assert_eq!(r.len(), 1);
    assert!(r[0].text.contains(&ru("support-sent")), "{}", r[0].text);
    assert!(!r[0].text.contains(&note("note-hint")));
    // The masters screen is still the current one: its buttons work.
    bot.press("Анна");
    assert!(bot.has_button("Сегодня 2 дек"));

    // What the dialog does place is not a question: a phone at the phone step, a command.
    bot.press("Сегодня 2 дек");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("/menu");
    assert_eq!(calls(&bot).len(), 1);
}

#[test]
fn outside_the_hours_the_client_is_told_when_admins_answer() {
    // The test clock: Monday 2 Dec 2024, 09:00 in Yekaterinburg.
    let mut bot = with_support(Some("10:00-20:00"), None);
    bot.start();
    let r = bot.text("вы работаете?");
    assert!(
        r[0].text.contains("ответим сегодня с 10:00"),
        "{}",
        r[0].text
    );
    assert_eq!(calls(&bot).len(), 1, "the question goes to admins anyway");

    let mut bot = with_support(Some("08:00-09:00"), None);
    bot.start();
    let r = bot.press(&ru("btn-call-admin"));
    assert!(
        r[0].text.contains("ответим завтра с 08:00"),
        "{}",
        r[0].text
    );

    let mut bot = with_support(Some("10:00-18:00"), Some(&["sat"]));
    bot.start();
    let r = bot.text("вы работаете?");
    assert!(
        r[0].text.contains("ответим Сб 7 дек с 10:00"),
        "{}",
        r[0].text
    );

    let mut bot = with_support(Some("08:00-20:00"), None);
    bot.start();
    let r = bot.text("вы работаете?");
    assert!(!r[0].text.contains("не на связи"), "{}", r[0].text);
}

#[test]
fn a_services_description_is_shown_as_it_is_picked_and_not_kept_in_the_state() {
    let mut world = World::salon();
    world.services[0].description = Some("Мытьё, стрижка и укладка.\nДля всех типов волос.".into());
    world.services[1].description = Some("Ц".repeat(700));
    let mut bot = Bot::with(ctx(), world);
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    let text = bot.screen().text.clone();
    assert!(
        text.starts_with("Мытьё, стрижка и укладка.\nДля всех типов волос.\n\n"),
        "{text}"
    );
    assert!(text.contains("выберите мастера"), "{text}");
    let json = serde_json::to_string(&bot.st).expect("json");
    assert!(
        !json.contains("Мытьё"),
        "the description is not in the state: {json}"
    );
    // Back from the masters: the services again, and a long description is cut.
    bot.press(&ru("btn-back"));
    bot.press("Окрашивание");
    let text = bot.screen().text.clone();
    assert!(
        text.starts_with(&format!("{}…\n\n", "Ц".repeat(600))),
        "{text}"
    );
    // A service without one: the masters screen as before.
    bot.press(&ru("btn-back"));
    bot.press("Маникюр");
    assert!(
        bot.screen().text.starts_with("Маникюр"),
        "{}",
        bot.screen().text
    );
}

#[test]
fn a_mother_books_her_child_under_the_childs_name_and_stays_herself() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    assert!(bot.has_button(&ru("btn-guest")));
    let r = bot.press(&ru("btn-guest"));
    assert_eq!(r[0].text, ru("ask-guest-name"));
    // The name step's checks hold for the other person's name too.
    let r = bot.text("89123456789");
    assert!(
        r[0].text.contains(&note("note-name-not-a-name")),
        "{}",
        r[0].text
    );
    let r = bot.text("Петя");
    assert!(r[0].text.contains(&ru("ask-guest-phone")), "{}", r[0].text);
    let r = bot.text("не помню");
    assert!(r[0].text.contains(&note("note-bad-phone")), "{}", r[0].text);
    // No phone of his own: the visit is his, the phone to call is hers.
    let r = bot.press(&ru("btn-guest-no-phone"));
    let text = &r[0].text;
    assert!(text.contains("Имя: Петя"), "{text}");
    assert!(text.contains("Телефон: +7 912 345-67-89"), "{text}");
    assert!(
        text.contains("Записывает: Мария, +7 912 345-67-89"),
        "{text}"
    );
    assert!(bot.has_button(&ru("btn-guest-self")));
    bot.press(&ru("btn-confirm"));
    let book = bot.books()[0].clone();
    assert_eq!(book.name, "Петя");
    assert_eq!(book.phone.as_str(), "+79123456789");
    assert_eq!(
        book.comment.as_deref(),
        Some("Записывает: Мария, +7 912 345-67-89")
    );
    // She is still herself, and the next booking is hers unless she says otherwise.
    assert_eq!(bot.st.name(), Some("Мария"));
    assert_eq!(bot.st.guest, None);
    bot.press(&ru("btn-book"));
    bot.press("Маникюр");
    bot.press("Анна");
    bot.press("Ср 4 дек");
    let r = bot.press("15:00");
    assert!(r[0].text.contains("Имя: Мария"), "{}", r[0].text);
    assert!(!r[0].text.contains("Записывает"), "{}", r[0].text);
}

#[test]
fn the_other_persons_own_phone_goes_with_the_comment_and_the_choice_can_be_undone() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-comment"));
    bot.text("Первый раз");
    bot.press(&ru("btn-guest"));
    // Back from the name: the confirmation as it was.
    let r = bot.press(&ru("btn-back"));
    assert!(r[0].text.contains("Имя: Мария"), "{}", r[0].text);
    bot.press(&ru("btn-guest"));
    bot.text("Ольга Петровна");
    let r = bot.text("8 (916) 555-12-34");
    assert!(r[0].text.contains("Имя: Ольга Петровна"), "{}", r[0].text);
    assert!(
        r[0].text.contains("Телефон: +7 916 555-12-34"),
        "{}",
        r[0].text
    );
    // Changed her mind: herself after all.
    let r = bot.press(&ru("btn-guest-self"));
    assert!(r[0].text.contains("Имя: Мария"), "{}", r[0].text);
    assert!(bot.has_button(&ru("btn-guest")));
    bot.press(&ru("btn-guest"));
    bot.text("Ольга Петровна");
    bot.text("+79165551234");
    bot.press(&ru("btn-confirm"));
    let book = bot.books()[0].clone();
    assert_eq!(book.name, "Ольга Петровна");
    assert_eq!(book.phone.as_str(), "+79165551234");
    assert_eq!(
        book.comment.as_deref(),
        Some("Первый раз\nЗаписывает: Мария, +7 912 345-67-89")
    );
    assert_eq!(bot.st.phone().map(|p| p.as_str()), Some("+79123456789"));
}

#[test]
fn moving_a_visit_offers_no_booking_for_someone_else() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    goto_move_confirmation(&mut bot);
    assert!(bot.has_button(&ru("btn-confirm")));
    assert!(!bot.has_button(&ru("btn-guest")));
    let data = bot.button(&ru("btn-confirm")).data;
    let version = data.split('|').next().expect("version");
    let r = bot.send(Input::Button(format!("{version}|O")));
    assert!(r[0].text.contains(&note("note-hint")), "{}", r[0].text);
}

#[test]
fn the_call_is_on_every_screen_and_pressed_mid_booking_keeps_the_step() {
    let mut bot = with_support(None, None);
    bot.start();
    bot.press(&ru("btn-book"));
    assert!(bot.has_button(&ru("btn-call-admin")), "on the services");
    bot.press("Стрижка женская");
    assert!(bot.has_button(&ru("btn-call-admin")), "on the masters");
    let once = bot
        .screen()
        .buttons
        .iter()
        .flatten()
        .filter(|b| b.label == ru("btn-call-admin"))
        .count();
    assert_eq!(once, 1);
    bot.press("Анна");
    assert!(bot.has_button(&ru("btn-call-admin")), "on the days");
    let r = bot.press(&ru("btn-call-admin"));
    assert_eq!(calls(&bot), [None]);
    assert!(r[0].text.contains(&ru("support-called")), "{}", r[0].text);
    assert!(r[0].edit, "the pressed message says who was called");
    // The days again, below it, and they still work.
    assert!(bot.has_button("Сегодня 2 дек"), "{:?}", bot.screen());
    bot.press("Сегодня 2 дек");
    assert!(bot.has_button("10:00"));
    // From the menu the call shows the way back to it.
    bot.text("/menu");
    bot.press(&ru("btn-call-admin"));
    assert!(bot.has_button(&ru("btn-menu")));
}

#[test]
fn a_visit_of_several_services_where_the_schedule_books_them_together() {
    let mut ctx = ctx();
    ctx.several_services = true;
    let mut bot = Bot::with(ctx, World::salon());
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    assert!(bot.has_button(&ru("btn-add-service")));
    let r = bot.press(&ru("btn-add-service"));
    assert!(
        r[0].text.contains("Что добавить к «Стрижка женская»?"),
        "{}",
        r[0].text
    );
    assert!(
        !bot.has_button("Стрижка женская"),
        "what the visit has is not offered"
    );
    // Back: the masters of the visit as it was.
    bot.press(&ru("btn-back"));
    assert!(
        bot.screen().text.starts_with("Стрижка женская:"),
        "{}",
        bot.screen().text
    );
    bot.press(&ru("btn-add-service"));
    bot.press("Маникюр");
    assert_eq!(
        bot.last_command(),
        &Command::LoadMasters {
            service_id: "s1+s3".into()
        }
    );
    assert!(
        bot.screen().text.contains("Стрижка женская + Маникюр"),
        "{}",
        bot.screen().text
    );
    bot.press(&ru("btn-add-service"));
    bot.press("Окрашивание");
    // Three is as many as one visit takes here.
    assert!(!bot.has_button(&ru("btn-add-service")));
    bot.press("Анна");
    bot.press("Сегодня 2 дек");
    bot.press("10:00");
    bot.text("+79123456789");
    let r = bot.text("Мария");
    let text = &r[0].text;
    assert!(
        text.contains("Стрижка женская + Маникюр + Окрашивание"),
        "{text}"
    );
    // 60 + 45 + 150 minutes; 1 500 + 1 200 + from 3 000 rubles.
    assert!(text.contains("4 часа 15 минут"), "{text}");
    assert!(
        text.contains(&format!("от {}", Money::from_rubles(5700))),
        "{text}"
    );
    bot.press(&ru("btn-confirm"));
    let book = bot.books()[0].clone();
    assert_eq!(book.service.id, "s1+s3+s2");
    assert_eq!(book.service.duration_min, 255);
}

#[test]
fn one_service_a_visit_where_the_schedule_books_one() {
    let mut bot = Bot::new();
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    assert!(!bot.has_button(&ru("btn-add-service")));
    let v = bot.st.v;
    let r = bot.send(Input::Button(format!("{v}|Sa")));
    assert!(r[0].text.contains(&note("note-hint")), "{}", r[0].text);
}
