//! Conversations driven end to end against a scripted world, the way the runtime drives them:
//! every command is answered and fed back, and the state goes through JSON between steps.
//!
//! This file holds the scripted world and the bot that drives it; each other file is one
//! group of conversations, named for what it covers.

use crate::domain::bid;
use std::collections::VecDeque;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use super::*;
use crate::domain::{BookingStatus, Channel, Money, Utm};
use crate::i18n::{self, t};

mod booking;
mod code;
mod comment;
mod consent;
mod cutoff;
mod general;
mod my_bookings;
mod my_data;
mod school;
mod support;
mod visits;
mod wording;
mod words;

// Helpers a group defines beside its own tests and others reuse.
use code::bot_at_code;
use my_bookings::world_with_bookings;
use support::{calls, with_support};
use wording::goto_move_confirmation;

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
            id: crate::domain::bk(id),
            business_id: bid("b1"),
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
