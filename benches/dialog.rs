//! Full conversations through the dialog engine, persisting the state as JSON between steps
//! like the runtime does. Prints engine throughput and the size of the persisted state.
//!
//! `cargo bench --bench dialog`

use std::hint::black_box;
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use zapis::dialog::{Command, Context, DialogState, Input, Loaded, Reply, step};
use zapis::domain::{Booking, BookingStatus, Channel, Master, Money, Service, Slot, Source};
use zapis::i18n::{Lang, t};
use zapis::normalize::Phone;

const TZ: chrono_tz::Tz = chrono_tz::Asia::Yekaterinburg;

fn ctx() -> Context {
    Context {
        now: "2024-12-02T04:00:00Z".parse().expect("now"),
        timezone: TZ,
        business_name: "Салон Лаванда".into(),
        address: "Екатеринбург, ул. Ленина, 1".into(),
        business_phone: Some("+7 343 000-00-00".into()),
        default_lang: Lang::Ru,
        user_lang: Some("ru".into()),
        channel: zapis::domain::Channel::Telegram,
        school: false,
    }
}

struct World {
    services: Vec<Service>,
    masters: Vec<Master>,
    bookings: Vec<Booking>,
}

impl World {
    fn new() -> World {
        let categories = ["Волосы", "Ногти", "Брови и ресницы", "Массаж"];
        let services = (0..40)
            .map(|i| Service {
                id: format!("{}", 1000 + i),
                name: format!("Услуга номер {i}"),
                category: categories[i % categories.len()].into(),
                duration_min: 30 + 15 * (i as u32 % 6),
                price_min: Money::from_rubles(1000 + 100 * i as i64),
                price_max: Money::from_rubles(1000 + 250 * i as i64),
            })
            .collect();
        let masters = (0..6)
            .map(|i| Master {
                id: format!("{}", 500 + i),
                name: format!("Мастер {i}"),
                specialization: "Стилист".into(),
            })
            .collect();
        World {
            services,
            masters,
            bookings: Vec::new(),
        }
    }

    fn slot(day: NaiveDate, hour: u32, master: &str) -> Slot {
        let local = day.and_hms_opt(hour, 0, 0).expect("hour");
        Slot {
            master_id: master.into(),
            start: TZ
                .from_local_datetime(&local)
                .single()
                .expect("local")
                .with_timezone(&Utc),
            duration_min: 60,
        }
    }

    fn booking(&self, id: String, start: DateTime<Utc>) -> Booking {
        Booking {
            id,
            business_id: "b1".into(),
            client_phone: Phone::parse("+79123456789").expect("phone"),
            client_name: "Мария".into(),
            client_email: None,
            service_id: "1000".into(),
            service_name: "Услуга номер 0".into(),
            master_id: "500".into(),
            master_name: "Мастер 0".into(),
            start,
            duration_min: 60,
            price: Money::from_rubles(1500),
            status: BookingStatus::Booked,
            source: Source::direct(Channel::Telegram),
            chat: None,
            external_id: None,
            created_at: start,
        }
    }

    fn answer(&mut self, cmd: &Command) -> Loaded {
        match cmd {
            Command::LoadServices => Loaded::Services(self.services.clone()),
            Command::LoadMasters { .. } => Loaded::Masters(self.masters.clone()),
            Command::LoadDays { from, to, .. } => {
                let mut days = Vec::new();
                let mut d = *from;
                while d <= *to {
                    days.push(d);
                    d += Duration::days(1);
                }
                Loaded::Days(days)
            }
            Command::LoadSlots { master_id, day, .. } => Loaded::Slots(
                (10..20)
                    .flat_map(|h| {
                        self.masters
                            .iter()
                            .filter(|m| master_id.as_deref().is_none_or(|w| w == m.id))
                            .map(move |m| World::slot(*day, h, &m.id))
                    })
                    .collect(),
            ),
            Command::Book(d) => {
                let b = self.booking(format!("bk-{}", self.bookings.len()), d.slot.start);
                self.bookings.push(b.clone());
                Loaded::Booked(b)
            }
            Command::Enrol(d) => Loaded::Enrolled {
                course: d.course.name.clone(),
                group: d.group.as_ref().map(|g| g.name.clone()),
            },
            Command::LoadMyBookings { .. } => Loaded::MyBookings(self.bookings.clone()),
            Command::ConfirmVisit { booking_id } => Loaded::VisitConfirmed(
                self.bookings
                    .iter()
                    .find(|b| &b.id == booking_id)
                    .cloned()
                    .expect("booking"),
            ),
            Command::Cancel { booking_id } => {
                let i = self
                    .bookings
                    .iter()
                    .position(|b| &b.id == booking_id)
                    .expect("booking");
                Loaded::Cancelled(self.bookings.remove(i))
            }
            Command::Reschedule { booking_id, slot } => {
                let b = self.booking(booking_id.clone(), slot.start);
                Loaded::Rescheduled(b)
            }
            // This salon never asks for a confirmation code; answer as a schedule would.
            Command::SubmitCode { booking_id, .. } => Loaded::Booked(
                self.bookings
                    .iter()
                    .find(|b| &b.id == booking_id)
                    .cloned()
                    .expect("booking"),
            ),
            Command::ResendCode { .. } => Loaded::CodeResent,
            Command::AbandonCode { .. } => Loaded::CodeAbandoned,
        }
    }
}

#[derive(Default)]
struct Stats {
    user_inputs: u64,
    steps: u64,
    json_total: u64,
    json_count: u64,
    json_max: usize,
}

struct Dialog<'a> {
    json: String,
    ctx: &'a Context,
    world: World,
    screen: Reply,
    stats: &'a mut Stats,
}

impl Dialog<'_> {
    fn send(&mut self, input: Input) {
        self.stats.user_inputs += 1;
        let mut queue = vec![input];
        while let Some(input) = queue.pop() {
            let state: DialogState = serde_json::from_str(&self.json).expect("state");
            let (state, out) = step(state, input, self.ctx);
            self.json = serde_json::to_string(&state).expect("json");
            self.stats.steps += 1;
            self.stats.json_total += self.json.len() as u64;
            self.stats.json_count += 1;
            self.stats.json_max = self.stats.json_max.max(self.json.len());
            if let Some(r) = out
                .replies
                .into_iter()
                .rev()
                .find(|r| !r.buttons.is_empty())
            {
                self.screen = r;
            }
            for c in out.commands {
                queue.push(Input::Loaded(self.world.answer(&c)));
            }
        }
    }

    fn press(&mut self, label: &str) {
        let data = self
            .screen
            .buttons
            .iter()
            .flatten()
            .find(|b| b.label.contains(label))
            .unwrap_or_else(|| panic!("no {label:?} in {:?}", self.screen))
            .data
            .clone();
        self.send(Input::Button(data));
    }

    fn text(&mut self, s: &str) {
        self.send(Input::Text(s.into()));
    }
}

/// One client: books twice (a master, then any master), lists, reschedules and cancels.
fn conversation(ctx: &Context, stats: &mut Stats, n: usize) {
    let ru = |k: &str| t(Lang::Ru, k);
    let mut d = Dialog {
        json: "{}".into(),
        ctx,
        world: World::new(),
        screen: Reply::default(),
        stats,
    };
    d.send(Input::Start {
        source: Source {
            payload: Some(format!("src_campaign_{}", n % 7)),
            ..Source::direct(Channel::Telegram)
        },
    });
    d.press(&ru("btn-book"));
    d.press("Волосы");
    d.press(&ru("btn-next"));
    d.press("Услуга номер 36");
    d.press("Мастер 2");
    d.press(&ru("btn-next-week"));
    d.press("Вт 10 дек");
    d.press("14:00");
    d.text("не помню");
    d.send(Input::Contact {
        phone: "79123456789".into(),
    });
    d.text("Мария Иванова");
    d.press(&ru("btn-confirm"));

    d.press(&ru("btn-book"));
    d.press("Ногти");
    d.press("Услуга номер 1 ");
    d.press(&ru("btn-any-master"));
    d.press("Ср 4 дек");
    d.press("11:00");
    d.press(&ru("btn-confirm"));

    d.press(&ru("btn-my"));
    d.press("Перенести 1");
    d.press("Чт 5 дек");
    d.press("16:00");
    d.press(&ru("btn-confirm"));
    d.press(&ru("btn-my"));
    d.press("Отменить 2");
    d.press(&ru("btn-yes-cancel"));
    d.text("/menu");
}

fn main() {
    let ctx = ctx();
    let mut stats = Stats::default();
    // Warm up the Fluent bundles and the allocator.
    conversation(&ctx, &mut stats, 0);
    let mut stats = Stats::default();
    let dialogs = 2_000;
    let started = Instant::now();
    for n in 0..dialogs {
        conversation(black_box(&ctx), &mut stats, n);
    }
    let secs = started.elapsed().as_secs_f64();
    println!("dialog engine, {dialogs} full conversations (JSON state round-trip per step)");
    println!(
        "  user inputs: {} ({:.0}/s), engine steps incl. command answers: {} ({:.0}/s)",
        stats.user_inputs,
        stats.user_inputs as f64 / secs,
        stats.steps,
        stats.steps as f64 / secs
    );
    println!(
        "  per conversation: {:.1} user inputs, {:.2} ms",
        stats.user_inputs as f64 / dialogs as f64,
        secs * 1000.0 / dialogs as f64
    );
    println!(
        "  persisted state JSON: avg {:.0} bytes, max {} bytes (over {} steps)",
        stats.json_total as f64 / stats.json_count as f64,
        stats.json_max,
        stats.json_count
    );
}
