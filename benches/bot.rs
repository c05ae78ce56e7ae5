//! The Telegram bot against a bare teloxide bot, both as separate processes polling the same
//! kind of fake Bot API (one instance each, in this process, over real HTTP on 127.0.0.1):
//!
//! - zapis: the real `zapis run` binary (sandbox schedule, SQLite store, shipped logging to a
//!   discarded stderr), with `[telegram.limits]` off and as shipped;
//! - bare: this bench binary re-run as a minimal teloxide bot (same teloxide version, default
//!   dispatcher), which answers a message with a menu and a button press with
//!   answerCallbackQuery + an edit, as zapis does; without and with teloxide's `Throttle`.
//!
//! Workload: waves over `chats` private chats; in one wave every chat sends one update at
//! once — `/start`, then a press of "Записаться" on the menu the bot showed — and the wave
//! ends when every chat has got a message with an inline keyboard back. Rounds interleave
//! the two bots; each prints updates/s and CPU per update (utime + stime of the bot process
//! from /proc/<pid>/stat, the counters getrusage reports), min/median/max over rounds, and
//! the median CPU this bench process (the fake, mostly) spent per update in that bot's rounds:
//! on a small machine the two share the cores, so a bot's rate is bound by the sum.
//!
//! Memory: fresh processes; VmRSS (/proc/<pid>/status) idle, after 1,000 and after 10,000
//! chats each left mid-dialog (`/start`, "Записаться": a service list on screen), driven in
//! waves of 1,000 chats at once (a burst: that many updates in flight) and of 50.
//!
//! `cargo bench --bench bot`; BOT_BENCH_ROUNDS (5; 0 runs only the memory part),
//! BOT_BENCH_CHATS (500, chats per wave with limits off), BOT_BENCH_PACED_CHATS (60, with
//! limits), BOT_BENCH_RSS_CHATS ("1000,10000"), BOT_BENCH_RSS_WAVES ("1000,50"); ZAPIS_BIN, the
//! `zapis` executable to drive (default: this bench build's, thin-LTO and 8 MB larger than the
//! shipped one, whose pages are a third of idle memory: memory figures are taken with
//! `ZAPIS_BIN=target/release/zapis` after `cargo build --release`); ZAPIS_BIN_BEFORE, another
//! build of it to run as a third contender with limits off, in the same interleaved rounds and
//! fresh-process memory runs (a change's cost or gain beside the same peer in one run).

use std::collections::{HashMap, VecDeque};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use tokio::sync::Notify;

#[path = "support/process.rs"]
mod process;
use process::cpu_of;

const TOKEN: &str = "123:ABC";
const BARE_ENV: &str = "ZAPIS_BENCH_BARE_BOT";
const WAVE_TIMEOUT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------------
// The fake Bot API: only what both bots call, with as little work per call as possible so the
// bots, not the fake, set the pace.

#[derive(Default)]
struct FakeChat {
    /// The latest bot message with an inline keyboard: (message id, text, reply_markup).
    keyboard: Option<(i64, String, Value)>,
    /// An update was sent and no keyboard has come back since.
    waiting: bool,
}

#[derive(Default)]
struct World {
    next_update: i64,
    next_message: i64,
    updates: VecDeque<Value>,
    chats: HashMap<i64, FakeChat>,
    waiting: usize,
    /// Calls other than getUpdates.
    calls: u64,
}

struct Fake {
    world: Mutex<World>,
    new_updates: Notify,
    wave_done: Notify,
}

impl Fake {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct FakeServer {
    fake: Arc<Fake>,
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn user(chat: i64) -> Value {
    json!({"id": chat, "is_bot": false, "first_name": format!("U{chat}"), "language_code": "ru"})
}

fn private_chat(chat: i64) -> Value {
    json!({"id": chat, "type": "private", "first_name": format!("U{chat}")})
}

fn bot_message(chat: i64, message_id: i64, text: &str, markup: &Value) -> Value {
    let mut m = json!({
        "message_id": message_id,
        "date": now(),
        "chat": private_chat(chat),
        "from": {"id": 123, "is_bot": true, "first_name": "Bench", "username": "bench_bot"},
        "text": text,
    });
    if !markup.is_null() {
        m["reply_markup"] = markup.clone();
    }
    m
}

impl FakeServer {
    async fn start() -> FakeServer {
        let fake = Arc::new(Fake {
            world: Mutex::new(World {
                next_update: 1,
                next_message: 1,
                ..World::default()
            }),
            new_updates: Notify::new(),
            wave_done: Notify::new(),
        });
        let app = Router::new()
            .route("/{bot}/{method}", any(handle))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake");
        let url = format!("http://{}", listener.local_addr().expect("fake address"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake serves");
        });
        FakeServer { fake, url, server }
    }

    /// Every chat sends `/start`.
    fn start_wave(&self, chats: &[i64]) {
        let mut w = self.fake.world();
        for &chat in chats {
            let message_id = w.next_message;
            w.next_message += 1;
            let message = json!({
                "message_id": message_id,
                "date": now(),
                "chat": private_chat(chat),
                "from": user(chat),
                "text": "/start",
                "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
            });
            push(&mut w, chat, json!({ "message": message }));
        }
        drop(w);
        self.fake.new_updates.notify_waiters();
    }

    /// Every chat presses the button labelled `label` (else the first) on the bot's latest
    /// message with a keyboard.
    fn press_wave(&self, chats: &[i64], label: &str) {
        let mut w = self.fake.world();
        for &chat in chats {
            let Some((message_id, text, markup)) =
                w.chats.get(&chat).and_then(|c| c.keyboard.clone())
            else {
                panic!("chat {chat} has no keyboard to press");
            };
            let buttons: Vec<&Value> = markup["inline_keyboard"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|row| row.as_array().into_iter().flatten())
                .collect();
            let button = buttons
                .iter()
                .find(|b| b["text"].as_str().is_some_and(|t| t.contains(label)))
                .or(buttons.first())
                .unwrap_or_else(|| panic!("chat {chat}: an empty keyboard"));
            let data = button["callback_data"].clone();
            let id = w.next_update;
            let query = json!({
                "id": format!("q{id}"),
                "from": user(chat),
                "message": bot_message(chat, message_id, &text, &markup),
                "chat_instance": format!("{chat}"),
                "data": data,
            });
            push(&mut w, chat, json!({ "callback_query": query }));
        }
        drop(w);
        self.fake.new_updates.notify_waiters();
    }

    /// Waits until every chat that sent an update has got a keyboard back.
    async fn wave_done(&self) {
        let deadline = tokio::time::Instant::now() + WAVE_TIMEOUT;
        loop {
            let notified = self.fake.wave_done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let left = self.fake.world().waiting;
            if left == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("{left} chats got no answer within {WAVE_TIMEOUT:?}");
            }
        }
    }

    fn calls(&self) -> u64 {
        self.fake.world().calls
    }
}

fn push(w: &mut World, chat: i64, mut update: Value) {
    let id = w.next_update;
    w.next_update += 1;
    update["update_id"] = json!(id);
    w.updates.push_back(update);
    let c = w.chats.entry(chat).or_default();
    if !c.waiting {
        c.waiting = true;
        w.waiting += 1;
    }
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    Path((bot, method)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if bot.strip_prefix("bot") != Some(TOKEN) {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            axum::Json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"})),
        )
            .into_response();
    }
    let params: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let method = method.to_ascii_lowercase();
    if method == "getupdates" {
        return get_updates(&fake, &params).await;
    }
    fake.world().calls += 1;
    match method.as_str() {
        "getme" => ok(json!({"id": 123, "is_bot": true, "first_name": "Bench",
            "username": "bench_bot", "can_join_groups": true,
            "can_read_all_group_messages": false, "supports_inline_queries": false,
            "has_main_web_app": false})),
        "getwebhookinfo" => ok(json!({"url": "", "has_custom_certificate": false,
            "pending_update_count": 0})),
        "sendmessage" | "editmessagetext" => {
            let chat = params["chat_id"].as_i64().unwrap_or_default();
            let text = params["text"].as_str().unwrap_or_default().to_string();
            let markup = params["reply_markup"].clone();
            let mut w = fake.world();
            let message_id = match params["message_id"].as_i64() {
                Some(id) => id,
                None => {
                    w.next_message += 1;
                    w.next_message
                }
            };
            let answered = markup.get("inline_keyboard").is_some();
            let mut done = false;
            if answered {
                let c = w.chats.entry(chat).or_default();
                c.keyboard = Some((message_id, text.clone(), markup.clone()));
                if c.waiting {
                    c.waiting = false;
                    w.waiting -= 1;
                    done = w.waiting == 0;
                }
            }
            drop(w);
            if done {
                fake.wave_done.notify_waiters();
            }
            ok(bot_message(chat, message_id, &text, &markup))
        }
        _ => ok(json!(true)),
    }
}

async fn get_updates(fake: &Fake, params: &Value) -> Response {
    let offset = params["offset"].as_i64().unwrap_or(0);
    let limit = params["limit"].as_u64().unwrap_or(100).clamp(1, 100) as usize;
    let timeout = Duration::from_secs(params["timeout"].as_u64().unwrap_or(0).min(15));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = fake.new_updates.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut w = fake.world();
            while w
                .updates
                .front()
                .is_some_and(|u| u["update_id"].as_i64().unwrap_or(0) < offset)
            {
                w.updates.pop_front();
            }
            if !w.updates.is_empty() {
                let batch: Vec<Value> = w.updates.iter().take(limit).cloned().collect();
                return ok(Value::Array(batch));
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return ok(json!([]));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The bare teloxide bot.

mod bare {
    use teloxide::adaptors::throttle::Limits;
    use teloxide::prelude::*;
    use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

    type HandlerResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    fn menu() -> InlineKeyboardMarkup {
        InlineKeyboardMarkup::new([
            vec![InlineKeyboardButton::callback("Записаться", "book")],
            vec![InlineKeyboardButton::callback("Мои записи", "my")],
            vec![InlineKeyboardButton::callback("Контакты", "contacts")],
        ])
    }

    fn services() -> InlineKeyboardMarkup {
        InlineKeyboardMarkup::new((0..8).map(|i| {
            vec![InlineKeyboardButton::callback(
                format!("Услуга {i}"),
                format!("s:{i}"),
            )]
        }))
    }

    async fn on_message<R: Requester>(bot: R, msg: Message) -> HandlerResult
    where
        R::Err: std::error::Error + Send + Sync + 'static,
    {
        bot.send_message(msg.chat.id, "Здравствуйте! Это салон. Чем помочь?")
            .reply_markup(menu())
            .await?;
        Ok(())
    }

    async fn on_callback<R: Requester>(bot: R, q: CallbackQuery) -> HandlerResult
    where
        R::Err: std::error::Error + Send + Sync + 'static,
    {
        bot.answer_callback_query(q.id.clone()).await?;
        if let Some(m) = q.regular_message() {
            bot.edit_message_text(m.chat.id, m.id, "Выберите услугу")
                .reply_markup(services())
                .await?;
        }
        Ok(())
    }

    pub async fn run(api_url: &str, throttle: bool) {
        let url = url::Url::parse(api_url).expect("api url");
        let bot = Bot::new(super::TOKEN).set_api_url(url);
        if throttle {
            let bot = bot.throttle(Limits::default());
            type B = teloxide::adaptors::Throttle<Bot>;
            let handler = dptree::entry()
                .branch(Update::filter_message().endpoint(on_message::<B>))
                .branch(Update::filter_callback_query().endpoint(on_callback::<B>));
            Dispatcher::builder(bot, handler).build().dispatch().await;
        } else {
            let handler = dptree::entry()
                .branch(Update::filter_message().endpoint(on_message::<Bot>))
                .branch(Update::filter_callback_query().endpoint(on_callback::<Bot>));
            Dispatcher::builder(bot, handler).build().dispatch().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The bots as processes.

struct BotProcess {
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for BotProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BotProcess {
    fn zapis(api_url: &str, limits: bool, bin: &str) -> BotProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("zapis.toml");
        std::fs::write(
            &config,
            format!(
                "[store]\nurl = \"sqlite://{db}\"\n\n[business]\nname = \"Салон «Лилия»\"\n\
                 timezone = \"Europe/Moscow\"\n\n[telegram]\ntoken = \"{TOKEN}\"\napi_url = \"{api_url}\"\n\
                 {limits}",
                db = dir.path().join("zapis.db").display(),
                limits = if limits {
                    ""
                } else {
                    "\n[telegram.limits]\nenabled = false\n"
                },
            ),
        )
        .expect("config");
        let child = Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("zapis run starts");
        BotProcess {
            child,
            _dir: Some(dir),
        }
    }

    fn bare(api_url: &str, throttle: bool) -> BotProcess {
        let child = Command::new(std::env::current_exe().expect("this bench's path"))
            .env(BARE_ENV, api_url)
            .arg(if throttle { "throttle" } else { "plain" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bare bot starts");
        BotProcess { child, _dir: None }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU of the whole process so far.
    fn cpu(&self) -> Duration {
        cpu_of(self.pid())
    }

    fn rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements.

struct Contender {
    name: &'static str,
    fake: FakeServer,
    process: BotProcess,
    chats: Vec<i64>,
    rates: Vec<f64>,
    cpu_us: Vec<f64>,
    /// This bench process's CPU per update while the contender ran its round: the fake Bot API
    /// it talked to, mostly. With both on one machine, the two together are what a round can
    /// spend of its cores.
    fake_cpu_us: Vec<f64>,
    calls_per_update: f64,
}

impl Contender {
    async fn start(name: &'static str, chats: usize, spawn: impl Fn(&str) -> BotProcess) -> Self {
        let fake = FakeServer::start().await;
        let process = spawn(&fake.url);
        let mut c = Contender {
            name,
            fake,
            process,
            chats: (1..=chats as i64).map(|i| 1_000_000 + i).collect(),
            rates: Vec::new(),
            cpu_us: Vec::new(),
            fake_cpu_us: Vec::new(),
            calls_per_update: 0.0,
        };
        // Warm-up: the first wave also waits for the bot to start polling.
        c.waves(2).await;
        c
    }

    /// Runs `n` waves (alternately /start and a press); returns (updates, wall, cpu, calls,
    /// this process's cpu).
    async fn waves(&mut self, n: usize) -> (usize, Duration, Duration, u64, Duration) {
        let cpu = self.process.cpu();
        let own_cpu = cpu_of(std::process::id());
        let calls = self.fake.calls();
        let started = Instant::now();
        for i in 0..n {
            if i % 2 == 0 {
                self.fake.start_wave(&self.chats);
            } else {
                self.fake.press_wave(&self.chats, "Записаться");
            }
            self.fake.wave_done().await;
        }
        (
            n * self.chats.len(),
            started.elapsed(),
            self.process.cpu() - cpu,
            self.fake.calls() - calls,
            cpu_of(std::process::id()) - own_cpu,
        )
    }

    async fn round(&mut self, waves: usize) {
        let (updates, wall, cpu, calls, own_cpu) = self.waves(waves).await;
        self.rates.push(updates as f64 / wall.as_secs_f64());
        self.cpu_us.push(cpu.as_secs_f64() * 1e6 / updates as f64);
        self.fake_cpu_us
            .push(own_cpu.as_secs_f64() * 1e6 / updates as f64);
        self.calls_per_update = calls as f64 / updates as f64;
    }
}

fn spread(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// zapis (and its build before a change, when given) against the bare bot, rounds
/// interleaved; prints each one's updates/s and CPU µs per update and the ratios of medians.
async fn throughput(label: &str, limits: bool, chats: usize, rounds: usize, bins: &Bins) {
    let waves = 4;
    let mut contenders = vec![
        Contender::start("zapis", chats, |url| {
            BotProcess::zapis(url, limits, &bins.zapis)
        })
        .await,
        Contender::start(
            if limits { "bare+Throttle" } else { "bare" },
            chats,
            |url| BotProcess::bare(url, limits),
        )
        .await,
    ];
    if let (Some(before), false) = (&bins.before, limits) {
        contenders.push(
            Contender::start("zapis before", chats, |url| {
                BotProcess::zapis(url, limits, before)
            })
            .await,
        );
    }
    let n = contenders.len();
    for r in 0..rounds {
        // Rotate who goes first, so none always follows another's tail.
        for k in 0..n {
            contenders[(r + k) % n].round(waves).await;
        }
    }
    println!(
        "{label}: {chats} chats a wave, {waves} waves a round, {rounds} rounds (min / median / max)"
    );
    for c in &contenders {
        let (r0, r1, r2) = spread(&c.rates);
        let (c0, c1, c2) = spread(&c.cpu_us);
        let (_, f1, _) = spread(&c.fake_cpu_us);
        println!(
            "  {:<14} updates/s {r0:>8.0} / {r1:>8.0} / {r2:>8.0}   CPU µs/update {c0:>6.0} / {c1:>6.0} / {c2:>6.0}   API calls/update {:.2}   fake API's CPU µs/update {f1:.0}",
            c.name, c.calls_per_update
        );
    }
    let ratio = |a: &Contender, b: &Contender| {
        (
            spread(&a.rates).1 / spread(&b.rates).1,
            spread(&a.cpu_us).1 / spread(&b.cpu_us).1,
        )
    };
    for c in [&contenders[0]].into_iter().chain(contenders.get(2)) {
        let (rate, cpu) = ratio(c, &contenders[1]);
        println!(
            "  {} / {}: updates/s {rate:.2}x, CPU per update {cpu:.2}x (medians)",
            c.name, contenders[1].name
        );
    }
    if let Some(before) = contenders.get(2) {
        let (rate, cpu) = ratio(&contenders[0], before);
        println!(
            "  zapis / zapis before: updates/s {rate:.2}x, CPU per update {cpu:.2}x (medians)"
        );
    }
}

/// The `zapis` executables to drive.
struct Bins {
    zapis: String,
    before: Option<String>,
}

/// Resident set of fresh processes, idle and after `marks` chats each left mid-dialog.
async fn memory(marks: &[usize], wave: usize, bins: &Bins) {
    println!(
        "resident set (VmRSS), fresh processes, limits off; chats left mid-dialog, {wave} chats a wave"
    );
    // Each contender's name and its `zapis` executable (none: the bare bot).
    let mut contenders = vec![("zapis", Some(bins.zapis.as_str())), ("bare", None)];
    if let Some(before) = &bins.before {
        contenders.push(("before", Some(before.as_str())));
    }
    for (name, bin) in contenders {
        let fake = FakeServer::start().await;
        let process = match bin {
            Some(bin) => BotProcess::zapis(&fake.url, false, bin),
            None => BotProcess::bare(&fake.url, false),
        };
        // The first chat tells us the bot is up.
        fake.start_wave(&[1]);
        fake.wave_done().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut line = format!("  {name:<6} idle {:>6.1} MiB", process.rss_mib());
        let mut done = 1;
        for &mark in marks {
            let chats: Vec<i64> = (done as i64 + 1..=mark as i64).collect();
            for batch in chats.chunks(wave.max(1)) {
                fake.start_wave(batch);
                fake.wave_done().await;
                fake.press_wave(batch, "Записаться");
                fake.wave_done().await;
            }
            done = mark;
            tokio::time::sleep(Duration::from_secs(2)).await;
            line.push_str(&format!(
                "   after {mark} chats {:>6.1} MiB",
                process.rss_mib()
            ));
        }
        println!("{line}");
    }
}

fn main() {
    if let Ok(api_url) = std::env::var(BARE_ENV) {
        let throttle = std::env::args().any(|a| a == "throttle");
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(bare::run(&api_url, throttle));
        return;
    }
    let rounds = env_usize("BOT_BENCH_ROUNDS", 5);
    let chats = env_usize("BOT_BENCH_CHATS", 500);
    let paced_chats = env_usize("BOT_BENCH_PACED_CHATS", 60);
    let marks: Vec<usize> = std::env::var("BOT_BENCH_RSS_CHATS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rss_waves: Vec<usize> = std::env::var("BOT_BENCH_RSS_WAVES")
        .unwrap_or_else(|_| "1000,50".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let bins = Bins {
        zapis: std::env::var("ZAPIS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_zapis").into()),
        before: std::env::var("ZAPIS_BIN_BEFORE").ok(),
    };
    rt.block_on(async {
        if rounds > 0 {
            throughput("limits off", false, chats, rounds, &bins).await;
            if paced_chats > 0 {
                throughput("shipped limits", true, paced_chats, rounds.min(3), &bins).await;
            }
        }
        for wave in rss_waves {
            memory(&marks, wave, &bins).await;
        }
    });
}
