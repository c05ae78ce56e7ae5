//! Full conversations through the dialog engine on one thread, persisting the state as JSON
//! like the runtime does: read once when a user input arrives, written once when its steps
//! (the input and the answers to the commands it issued) are done (`Conversations::handle`).
//! Prints user inputs/s (min / median / max over rounds) and the size of the persisted state.
//! Beside it, in interleaved rounds, the same conversations with the state read and written
//! around every engine step, as this bench measured before: an upper bound on what the JSON
//! costs, for comparison with earlier figures.
//!
//! The commands the engine issues are answered by an in-memory schedule. Its catalogue
//! (40 services, 6 masters) is cloned before each round's clock starts, one copy per load
//! the round will ask for, so a round times the engine and the JSON round-trip, not copying
//! the schedule's data; the time spent answering the remaining commands (building slot lists,
//! bookings) is measured and shown apart.
//!
//! `cargo bench --bench dialog`; ZAPIS_BENCH_ROUNDS (default 7), ZAPIS_BENCH_DIALOGS
//! (conversations a round, default 2000).

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant};

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
        several_services: false,
        texts: Default::default(),
        change_cutoff: None,
        consent: true,
        policy_url: None,
        support: None,
    }
}

/// Ready copies of the catalogue, moved out one per load.
#[derive(Default)]
struct Stock {
    services: Vec<Vec<Service>>,
    masters: Vec<Vec<Master>>,
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
                description: None,
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

    fn booking(&self, id: zapis::domain::BookingId, start: DateTime<Utc>) -> Booking {
        Booking {
            id,
            business_id: zapis::domain::BusinessId::parse("b1").expect("a valid id"),
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

    fn answer(&mut self, cmd: &Command, stock: &mut Stock) -> Loaded {
        match cmd {
            Command::LoadServices => Loaded::Services(
                stock
                    .services
                    .pop()
                    .unwrap_or_else(|| self.services.clone()),
            ),
            Command::LoadMasters { .. } => {
                Loaded::Masters(stock.masters.pop().unwrap_or_else(|| self.masters.clone()))
            }
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
                let id = zapis::domain::BookingId::parse(&format!("bk-{}", self.bookings.len()))
                    .expect("a booking id");
                let b = self.booking(id, d.slot.start);
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
            Command::CallAdmin { .. } => Loaded::AdminCalled,
        }
    }
}

#[derive(Default)]
struct Stats {
    /// Catalogue loads asked for (to size the next round's stock).
    services_loads: usize,
    masters_loads: usize,
    /// Time spent answering commands, outside the engine.
    answering: StdDuration,
    user_inputs: u64,
    steps: u64,
    json_total: u64,
    json_count: u64,
    json_max: usize,
}

struct Dialog<'a> {
    json: String,
    /// Read and write the state around every step rather than every user input.
    per_step: bool,
    ctx: &'a Context,
    world: &'a mut World,
    stock: &'a mut Stock,
    screen: Reply,
    stats: &'a mut Stats,
}

impl Dialog<'_> {
    fn send(&mut self, input: Input) {
        self.stats.user_inputs += 1;
        let mut state: DialogState = serde_json::from_str(&self.json).expect("state");
        let mut queue = vec![input];
        while let Some(input) = queue.pop() {
            let (next, out) = step(state, input, self.ctx);
            state = next;
            self.stats.steps += 1;
            if self.per_step {
                self.persist(&state);
                state = serde_json::from_str(&self.json).expect("state");
            }
            if let Some(r) = out
                .replies
                .into_iter()
                .rev()
                .find(|r| !r.buttons.is_empty())
            {
                self.screen = r;
            }
            for c in out.commands {
                match c {
                    Command::LoadServices => self.stats.services_loads += 1,
                    Command::LoadMasters { .. } => self.stats.masters_loads += 1,
                    _ => {}
                }
                let t = Instant::now();
                let loaded = self.world.answer(&c, self.stock);
                self.stats.answering += t.elapsed();
                queue.push(Input::Loaded(loaded));
            }
        }
        if !self.per_step {
            self.persist(&state);
        }
    }

    fn persist(&mut self, state: &DialogState) {
        self.json = serde_json::to_string(state).expect("json");
        self.stats.json_total += self.json.len() as u64;
        self.stats.json_count += 1;
        self.stats.json_max = self.stats.json_max.max(self.json.len());
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
fn conversation(
    ctx: &Context,
    world: &mut World,
    stock: &mut Stock,
    stats: &mut Stats,
    n: usize,
    per_step: bool,
) {
    let ru = |k: &str| t(Lang::Ru, k);
    world.bookings.clear();
    let mut d = Dialog {
        json: "{}".into(),
        per_step,
        ctx,
        world,
        stock,
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
    d.press(&ru("btn-consent"));
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

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spread(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// The figures of one way of persisting, over rounds.
#[derive(Default)]
struct Series {
    inputs: Vec<f64>,
    steps: Vec<f64>,
    engine: Vec<f64>,
    last: Stats,
}

fn round(
    ctx: &Context,
    world: &mut World,
    loads: (usize, usize),
    dialogs: usize,
    per_step: bool,
    series: &mut Series,
) {
    let mut stock = Stock {
        services: (0..loads.0 * dialogs)
            .map(|_| world.services.clone())
            .collect(),
        masters: (0..loads.1 * dialogs)
            .map(|_| world.masters.clone())
            .collect(),
    };
    let mut stats = Stats::default();
    let started = Instant::now();
    for n in 0..dialogs {
        conversation(black_box(ctx), world, &mut stock, &mut stats, n, per_step);
    }
    let secs = started.elapsed().as_secs_f64();
    assert!(
        stock.services.is_empty() && stock.masters.is_empty(),
        "every conversation loads the catalogue the same number of times"
    );
    series.inputs.push(stats.user_inputs as f64 / secs);
    series.steps.push(stats.steps as f64 / secs);
    series
        .engine
        .push(stats.user_inputs as f64 / (secs - stats.answering.as_secs_f64()));
    series.last = stats;
}

fn report(title: &str, dialogs: usize, series: &Series) {
    let stats = &series.last;
    println!(
        "  {title} ({:.1} user inputs and {:.1} steps a conversation)",
        stats.user_inputs as f64 / dialogs as f64,
        stats.steps as f64 / dialogs as f64
    );
    let (a, b, c) = spread(&series.inputs);
    println!("    user inputs/s                          {a:>9.0} / {b:>9.0} / {c:>9.0}");
    let (a, b, c) = spread(&series.steps);
    println!("    engine steps/s (incl. command answers) {a:>9.0} / {b:>9.0} / {c:>9.0}");
    let (a, b, c) = spread(&series.engine);
    println!(
        "    user inputs/s, answering time removed  {a:>9.0} / {b:>9.0} / {c:>9.0}   \
         (last round: {:.0} ms of answering)",
        stats.answering.as_secs_f64() * 1000.0
    );
    println!(
        "    persisted state JSON: avg {:.0} bytes, max {} bytes (over {} writes)",
        stats.json_total as f64 / stats.json_count as f64,
        stats.json_max,
        stats.json_count
    );
}

fn main() {
    let ctx = ctx();
    let rounds = env_usize("ZAPIS_BENCH_ROUNDS", 7).max(1);
    let dialogs = env_usize("ZAPIS_BENCH_DIALOGS", 2_000).max(1);
    let mut world = World::new();
    // Warm up the Fluent bundles and the allocator, and learn how many loads a round asks for.
    let mut warm = Stats::default();
    conversation(&ctx, &mut world, &mut Stock::default(), &mut warm, 0, false);
    let loads = (warm.services_loads, warm.masters_loads);
    let (mut per_input, mut per_step) = (Series::default(), Series::default());
    for r in 0..rounds {
        // Alternate which way goes first, so neither always runs on a warmer machine.
        for first in [r % 2 == 0, r % 2 != 0] {
            let series = if first { &mut per_step } else { &mut per_input };
            round(&ctx, &mut world, loads, dialogs, first, series);
        }
    }
    println!(
        "dialog engine, one thread, {rounds} interleaved rounds of {dialogs} full conversations \
         each way; min / median / max"
    );
    report(
        "state JSON read and written once a user input, as the runtime does",
        dialogs,
        &per_input,
    );
    report(
        "state JSON read and written around every step (this bench's earlier way)",
        dialogs,
        &per_step,
    );
}
