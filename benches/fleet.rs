//! Many businesses in one deployment: `zapis run` over a folder of business files, each with
//! its own Telegram bot (one fake Bot API per bot, in this process, over real HTTP), the
//! sandbox schedule, on SQLite or, with ZAPIS_TEST_POSTGRES_URL, on a fresh PostgreSQL schema.
//!
//! - Memory: VmRSS of two instances serving N businesses (the first polls every bot, the
//!   second stands by with every business's deliveries and loops), beside one instance of one
//!   business on the same store kind, all idle for a few seconds; per business is
//!   (instance of N − instance of 1) / (N − 1).
//! - Start: from spawning the first instance until every business's bot has answered.
//! - Turns: waves in which one client of every business sends /start at once, against waves
//!   of the same size to the single business (its peer in this run); the time from the update
//!   to the bot's answer, median and p99 of each wave, and turns a second. Rounds interleave
//!   the two; each figure is min/median/max over rounds.
//! - CPU of both fleet instances while idle, which the per-business loops cost.
//! - Bookings: every business but the first has one client book through the whole chat (the
//!   sandbox schedule, a lead in the business's own amoCRM fake) at once; each booking's time
//!   from the confirm tap to its lead in that business's CRM (p50, p99), and bookings a minute.
//!   Rounds alternate between a calm deployment and one where the first business imports
//!   100,000 clients into its amoCRM (`zapis import`, a process of its own on the same store)
//!   the whole time: the others' p99 should not move.
//!
//! `cargo bench --bench fleet`; FLEET_BENCH_BUSINESSES (50), FLEET_BENCH_ROUNDS (5),
//! FLEET_BENCH_BOOKING_ROUNDS (4: two calm, two beside the import), FLEET_BENCH_IMPORT (100000).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zapis_fakes::chat::{WAIT as TURN_WAIT, book_until_confirm, press_label};
use zapis_fakes::fake_amocrm::{self as amo_fake, FakeAmo};
use zapis_fakes::fake_telegram::FakeTelegram;

#[path = "support/process.rs"]
mod process;
use process::cpu_of;

const WAIT: Duration = Duration::from_secs(120);

struct Instance {
    child: Child,
}

impl Instance {
    fn start(config: &Path, env: &[(&str, &str)]) -> Instance {
        let bin = std::env::var("ZAPIS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_zapis").into());
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("zapis run starts");
        Instance { child }
    }

    fn status(&self, field: &str) -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field))
            .map(|l| l.to_string())
    }

    fn rss_mib(&self) -> f64 {
        self.status("VmRSS:")
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }

    /// User + system CPU of the process so far.
    fn cpu(&self) -> Duration {
        cpu_of(self.child.id())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(i: usize) -> String {
    format!("{}:FLEET{i}", 100_000 + i)
}

fn name(i: usize) -> String {
    format!("Салон №{i}")
}

fn business_toml(i: usize, fake: &FakeTelegram, amo: Option<&FakeAmo>) -> String {
    let crm = amo.map_or(String::new(), |amo| {
        format!(
            "\n[crm]\nsystem = \"amocrm\"\n\n[crm.amocrm]\nbase_url = \"{}\"\ntoken = \"{}\"\n\
             pipeline_id = {}\nnew_status_id = {}\nbooking_id_field_id = {}\n",
            amo.base_url,
            amo_fake::LONG_LIVED_TOKEN,
            amo_fake::PIPELINE_ID,
            amo_fake::STATUS_NEW,
            amo_fake::FIELD_BOOKING_ID,
        )
    });
    format!(
        "[business]\nname = \"{}\"\ntimezone = \"Europe/Moscow\"\n\n[telegram]\ntoken = \"{}\"\n\
         api_url = \"{}\"\n\n[telegram.limits]\nenabled = false\n{crm}",
        name(i),
        token(i),
        fake.api_url()
    )
}

/// Client base of `rows` distinct clients, the shape `zapis import` reads.
fn client_base(rows: usize) -> String {
    let mut csv = String::with_capacity(rows * 60);
    csv.push_str("ФИО;Телефон;Email\n");
    for n in 0..rows {
        csv.push_str(&format!(
            "Иванова Анна {n};+7 9{:09};client{n}@mail.ru\n",
            200_000_000 + n
        ));
    }
    csv
}

/// One client of each business books at once; per booking, the time from the confirm tap to
/// its lead in the business's CRM. Returns those and the wave's wall time.
async fn booking_wave(
    fakes: &[&FakeTelegram],
    amos: &[&FakeAmo],
    names: &[String],
    chat: i64,
) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let bookings = fakes
        .iter()
        .zip(amos)
        .zip(names)
        .map(|((fake, amo), name)| {
            let user = fake.user(chat);
            let name = name.clone();
            async move {
                user.send_text("/start");
                user.wait_for_text(&name, TURN_WAIT).await;
                let phone = format!("+7916{:07}", chat % 10_000_000);
                book_until_confirm(&user, "Женская стрижка", &phone, "Анна").await;
                let leads = amo.leads().len();
                let tapped = Instant::now();
                press_label(&user, "Подтвердить").await;
                while amo.leads().len() == leads {
                    assert!(tapped.elapsed() < WAIT, "the lead reached the CRM");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                tapped.elapsed()
            }
        });
    let delays = futures::future::join_all(bookings).await;
    (delays, started.elapsed())
}

/// A store for one deployment: a fresh PostgreSQL schema, or a SQLite file in `dir`.
async fn store_url(dir: &Path) -> (String, &'static str) {
    let Ok(base) = std::env::var("ZAPIS_TEST_POSTGRES_URL") else {
        return (
            format!("sqlite://{}", dir.join("zapis.db").display()),
            "SQLite",
        );
    };
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base).await.expect("PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("a schema");
    admin.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    (
        format!("{base}{sep}options=-csearch_path%3D{schema}"),
        "PostgreSQL",
    )
}

/// One client of each business sends /start at once; each answer's delay.
async fn wave(fakes: &[&FakeTelegram], names: &[String], chat: i64) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let turns = fakes.iter().zip(names).map(|(fake, name)| {
        let user = fake.user(chat);
        let name = name.clone();
        async move {
            let sent = Instant::now();
            user.send_text("/start");
            user.wait_for_text(&name, WAIT).await;
            sent.elapsed()
        }
    });
    let delays = futures::future::join_all(turns).await;
    (delays, started.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn spread(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let n = env_usize("FLEET_BENCH_BUSINESSES", 50).max(2);
    let rounds = env_usize("FLEET_BENCH_ROUNDS", 5).max(1);
    let mut fakes = Vec::new();
    for i in 0..n {
        fakes.push(FakeTelegram::start_for(&token(i)).await);
    }
    let single_fake = FakeTelegram::start_for(&token(n)).await;
    let mut amos = Vec::new();
    for _ in 0..n {
        amos.push(FakeAmo::start().await);
    }

    // The deployment of N businesses.
    let dir = tempfile::tempdir().expect("a folder");
    let folder = dir.path().join("businesses");
    std::fs::create_dir(&folder).expect("businesses folder");
    let (store, kind) = store_url(dir.path()).await;
    let config = dir.path().join("zapis.toml");
    std::fs::write(
        &config,
        format!("[store]\nurl = \"{store}\"\n\n[businesses]\n"),
    )
    .expect("deployment file");
    for (i, fake) in fakes.iter().enumerate() {
        std::fs::write(
            folder.join(format!("b{i:03}.toml")),
            business_toml(i, fake, Some(&amos[i])),
        )
        .expect("business file");
    }
    // One business alone, as today's single file, on the same kind of store.
    let single_dir = tempfile::tempdir().expect("a folder");
    let (single_store, _) = store_url(single_dir.path()).await;
    let single_config = single_dir.path().join("zapis.toml");
    std::fs::write(
        &single_config,
        format!(
            "[store]\nurl = \"{single_store}\"\n\n{}",
            business_toml(n, &single_fake, None)
        ),
    )
    .expect("single file");

    println!(
        "zapis: {n} businesses in one deployment, each with its own Telegram bot; store {kind}"
    );
    let started = Instant::now();
    let first = Instance::start(&config, &[]);
    let names: Vec<String> = (0..n).map(name).collect();
    let all: Vec<&FakeTelegram> = fakes.iter().collect();
    let (_, _) = wave(&all, &names, 1).await;
    let start_all = started.elapsed();
    let second = Instance::start(&config, &[]);
    let single = Instance::start(&single_config, &[]);
    let one = [&single_fake];
    let single_name = [name(n)];
    let _ = wave(&one, &single_name, 1).await;
    // Idle: both fleet instances' loops and deliveries running, nothing to do.
    let cpu_before = (first.cpu(), second.cpu(), single.cpu());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = |before: Duration, now: Duration| (now - before).as_secs_f64() / 10.0 * 100.0;
    let (rss_first, rss_second, rss_single) = (first.rss_mib(), second.rss_mib(), single.rss_mib());
    println!(
        "idle 10 s: CPU {:.1} % (polling instance), {:.1} % (standing by), {:.1} % (one business alone)",
        idle_cpu(cpu_before.0, first.cpu()),
        idle_cpu(cpu_before.1, second.cpu()),
        idle_cpu(cpu_before.2, single.cpu())
    );
    println!(
        "resident memory: {rss_first:.1} MiB (polling {n} bots), {rss_second:.1} MiB (standing by), \
         {rss_single:.1} MiB (one business alone); per business {:.2} MiB polling, {:.2} MiB standing by",
        (rss_first - rss_single) / (n - 1) as f64,
        (rss_second - rss_single) / (n - 1) as f64,
    );
    println!(
        "start: every business's bot answering {:.2} s after spawning",
        start_all.as_secs_f64()
    );

    // Turns: a wave to every business of the fleet, then one of the same size to the single
    // business (n clients of it), interleaved.
    let single_many: Vec<&FakeTelegram> = (0..n).map(|_| &single_fake).collect();
    let mut fleet = (Vec::new(), Vec::new(), Vec::new());
    let mut alone = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let chat = 100 + round as i64;
        let (mut delays, took) = wave(&all, &names, chat).await;
        delays.sort();
        fleet
            .0
            .push(percentile(&delays, 0.5).as_secs_f64() * 1000.0);
        fleet
            .1
            .push(percentile(&delays, 0.99).as_secs_f64() * 1000.0);
        fleet.2.push(n as f64 / took.as_secs_f64());
        // n different clients of the one business.
        let single_names: Vec<String> = (0..n).map(|_| name(n)).collect();
        let users: Vec<_> = (0..n)
            .map(|k| single_many[k].user(10_000 * (round as i64 + 1) + k as i64))
            .collect();
        let started = Instant::now();
        let turns = users
            .iter()
            .zip(&single_names)
            .map(|(user, name)| async move {
                let sent = Instant::now();
                user.send_text("/start");
                user.wait_for_text(name, WAIT).await;
                sent.elapsed()
            });
        let mut delays = futures::future::join_all(turns).await;
        let took = started.elapsed();
        delays.sort();
        alone
            .0
            .push(percentile(&delays, 0.5).as_secs_f64() * 1000.0);
        alone
            .1
            .push(percentile(&delays, 0.99).as_secs_f64() * 1000.0);
        alone.2.push(n as f64 / took.as_secs_f64());
    }
    let show = |label: &str, xs: &[f64], unit: &str| {
        let (lo, mid, hi) = spread(xs);
        println!("  {label:<44} {lo:>8.1} / {mid:>8.1} / {hi:>8.1} {unit}");
    };
    println!("/start to answer, waves of {n} at once, {rounds} rounds (min / median / max):");
    show(
        &format!("{n} businesses, one client each: median"),
        &fleet.0,
        "ms",
    );
    show(
        &format!("{n} businesses, one client each: p99"),
        &fleet.1,
        "ms",
    );
    show(
        &format!("{n} businesses, one client each: turns/s"),
        &fleet.2,
        "/s",
    );
    show(&format!("1 business, {n} clients: median"), &alone.0, "ms");
    show(&format!("1 business, {n} clients: p99"), &alone.1, "ms");
    show(&format!("1 business, {n} clients: turns/s"), &alone.2, "/s");
    bookings(&config, &all, &amos, &names).await;
    for (fake, i) in fakes.iter().zip(0..) {
        assert_eq!(
            fake.conflicts(),
            0,
            "business {i}'s bot was polled twice at once"
        );
    }
    drop((first, second, single));
}

/// Bookings through every business's bot but the first's, in rounds alternating between a calm
/// deployment and one where the first business imports a client base the whole round.
async fn bookings(config: &Path, fakes: &[&FakeTelegram], amos: &[FakeAmo], names: &[String]) {
    let rounds = env_usize("FLEET_BENCH_BOOKING_ROUNDS", 4).max(2);
    let rows = env_usize("FLEET_BENCH_IMPORT", 100_000);
    let dir = tempfile::tempdir().expect("a folder");
    let base = dir.path().join("clients.csv");
    std::fs::write(&base, client_base(rows)).expect("client base");
    let amo_refs: Vec<&FakeAmo> = amos.iter().collect();
    let (bookers, booker_amos, booker_names) = (&fakes[1..], &amo_refs[1..], &names[1..]);
    let mut calm = (Vec::new(), Vec::new(), Vec::new());
    let mut beside = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let importing = round % 2 == 1;
        let mut import = importing.then(|| {
            let bin =
                std::env::var("ZAPIS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_zapis").into());
            Command::new(bin)
                .arg("import")
                .arg(&base)
                .args(["--into", "amocrm", "--business", "b000", "--config"])
                .arg(config)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("zapis import starts")
        });
        if importing {
            // Past reading and deduplicating the file: the import is recording its plan in
            // the shared store, then writing to its CRM (the count printed at the end says
            // how far it got while the others booked).
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let (mut delays, took) =
            booking_wave(bookers, booker_amos, booker_names, 500_000 + round as i64).await;
        if let Some(child) = import.as_mut() {
            let still = child.try_wait().expect("import status").is_none();
            assert!(still, "the import ran for the whole round; make it larger");
            let _ = child.kill();
            let _ = child.wait();
        }
        delays.sort();
        let figures = if importing { &mut beside } else { &mut calm };
        figures
            .0
            .push(percentile(&delays, 0.5).as_secs_f64() * 1000.0);
        figures
            .1
            .push(percentile(&delays, 0.99).as_secs_f64() * 1000.0);
        figures
            .2
            .push(delays.len() as f64 / took.as_secs_f64() * 60.0);
    }
    let show = |label: &str, xs: &[f64], unit: &str| {
        let (lo, mid, hi) = spread(xs);
        println!("  {label:<44} {lo:>8.1} / {mid:>8.1} / {hi:>8.1} {unit}");
    };
    let k = bookers.len();
    println!(
        "bookings, {k} businesses each booking one client at once, confirm tap to lead in its CRM \
         ({} rounds each, min / median / max):",
        rounds / 2
    );
    show("calm: p50", &calm.0, "ms");
    show("calm: p99", &calm.1, "ms");
    show("calm: bookings a minute", &calm.2, "/min");
    show(
        &format!("b000 importing {rows} clients: p50"),
        &beside.0,
        "ms",
    );
    show(
        &format!("b000 importing {rows} clients: p99"),
        &beside.1,
        "ms",
    );
    show(
        &format!("b000 importing {rows} clients: bookings a minute"),
        &beside.2,
        "/min",
    );
    println!(
        "  b000's amoCRM: {} contacts imported during the rounds, {} requests throttled",
        amos[0].contacts().len(),
        amos[0].throttled()
    );
}
