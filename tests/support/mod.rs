//! What the test binaries share beside the fakes: settings pointing at a fake, the real
//! adapters run against one, the real executable (`e2e`), a PostgreSQL schema per test.
//! The fakes themselves are the `zapis-fakes` crate (tests/support/lib.rs), compiled once and
//! re-exported here so tests name them `support::fake_*`.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod app;
pub mod e2e;

// Each binary names the fakes it needs.
#[allow(unused_imports)]
pub use zapis_fakes::{
    chaos_proxy, cml_xsd, fake_alfacrm, fake_amocrm, fake_bitrix24, fake_dikidi, fake_getcourse,
    fake_max, fake_onec, fake_target, fake_telegram, fake_yclients, scenario,
};

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use zapis::messenger::telegram::{TelegramAdapter, TelegramError};
use zapis::messenger::telegram_pacing::TelegramLimits;
use zapis::messenger::{ChatHandler, StopSignal};

use fake_max::FakeMax;
use fake_telegram::FakeTelegram;
use secrecy::SecretString;
use zapis::messenger::config::{MaxConfig, MaxMode, TelegramConfig};

/// A bot's settings pointing at a fake messenger (the fakes know nothing of zapis's types).
pub trait BotConfig {
    type Config;
    fn config(&self) -> Self::Config;
}

impl BotConfig for FakeTelegram {
    type Config = TelegramConfig;
    fn config(&self) -> TelegramConfig {
        TelegramConfig {
            token: SecretString::from(fake_telegram::TOKEN),
            api_url: self.api_url(),
            bot_username: None,
            limits: Default::default(),
            mode: Default::default(),
            webhook_url: None,
            webhook_secret: None,
        }
    }
}

/// A polling bot.
impl BotConfig for FakeMax {
    type Config = MaxConfig;
    fn config(&self) -> MaxConfig {
        MaxConfig {
            token: SecretString::from(fake_max::TOKEN),
            api_url: self.api_url(),
            mode: MaxMode::Polling,
            bot_username: None,
            webhook_secret: None,
            webhook_url: None,
            ca_cert: None,
        }
    }
}

/// Limits loose enough that pacing never delays a test, yet still in the path.
pub fn fast_limits() -> TelegramLimits {
    let many = std::num::NonZeroU32::new(100_000).expect("non-zero");
    TelegramLimits {
        messages_per_second: many,
        chat_messages_per_second: many,
        chat_burst: many,
        group_messages_per_minute: many,
        ..TelegramLimits::default()
    }
}

/// The real Telegram adapter running against a fake, stoppable like `zapis run` stops it.
pub struct RunningBot {
    stop: StopSignal,
    task: JoinHandle<Result<(), TelegramError>>,
}

impl RunningBot {
    pub fn start(fake: &FakeTelegram, handler: Arc<dyn ChatHandler>) -> RunningBot {
        RunningBot::with_limits(fake, handler, fast_limits())
    }

    pub fn with_limits(
        fake: &FakeTelegram,
        handler: Arc<dyn ChatHandler>,
        limits: TelegramLimits,
    ) -> RunningBot {
        let stop = StopSignal::new();
        let adapter = TelegramAdapter::new(&fake.config())
            .limits(limits)
            .poll_timeout(Duration::from_secs(5));
        let task = tokio::spawn(adapter.run(handler, stop.stopped()));
        RunningBot { stop, task }
    }

    /// Stops gracefully and returns what `run` returned.
    pub async fn stop(self) -> Result<(), TelegramError> {
        self.stop.stop();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the adapter stops within 10 s")
            .expect("the adapter task did not panic")
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// The real runtime (in-memory SQLite, sandbox salon, demo business) behind the real Telegram
/// adapter, pointed at `fake`. The end-to-end booking test builds on this.
pub async fn start_demo_bot(fake: &FakeTelegram) -> (zapis::app::App, RunningBot) {
    let mut config = zapis::config::Config::demo("sqlite::memory:");
    config.telegram = Some(fake.config());
    let app = zapis::app::App::build(config, Arc::new(zapis::clock::SystemClock))
        .await
        .expect("demo app builds on an in-memory store");
    let bot = RunningBot::start(fake, app.conversations.clone());
    (app, bot)
}

/// A fresh PostgreSQL schema's URL (migrated), or `None` with a note when no server is set.
pub async fn postgres_url() -> Option<String> {
    let Ok(base) = std::env::var("ZAPIS_TEST_POSTGRES_URL") else {
        eprintln!("SKIPPED PostgreSQL half of this test: ZAPIS_TEST_POSTGRES_URL is not set");
        return None;
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base)
        .await
        .expect("connect to test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create test schema");
    admin.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    zapis::store::Store::connect(&url)
        .await
        .expect("migrate test schema")
        .close()
        .await;
    Some(url)
}

/// MAX pacing loose enough that no test waits on it, with quick 429 retries.
pub fn fast_max_limits() -> zapis::messenger::max::MaxLimits {
    zapis::messenger::max::MaxLimits {
        per_chat_interval: Duration::from_millis(1),
        overall_per_second: 1000,
        retry_base: Duration::from_millis(50),
        max_retries: 3,
    }
}

/// The real MAX adapter running against a fake, stoppable like `zapis run` stops it.
pub struct RunningMaxBot {
    stop: StopSignal,
    task: JoinHandle<Result<(), zapis::messenger::max::MaxError>>,
}

impl RunningMaxBot {
    pub fn start(
        adapter: zapis::messenger::max::MaxAdapter,
        handler: Arc<dyn ChatHandler>,
    ) -> RunningMaxBot {
        let stop = StopSignal::new();
        let task = tokio::spawn(adapter.run(handler, stop.stopped()));
        RunningMaxBot { stop, task }
    }

    pub async fn stop(self) -> Result<(), zapis::messenger::max::MaxError> {
        self.stop.stop();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the MAX adapter stops within 10 s")
            .expect("the MAX adapter task did not panic")
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// The real runtime (in-memory SQLite, sandbox salon, demo business) behind the real MAX
/// adapter, pointed at `fake`, with the marker kept in the store.
pub async fn start_demo_max_bot(fake: &fake_max::FakeMax) -> (zapis::app::App, RunningMaxBot) {
    let mut config = zapis::config::Config::demo("sqlite::memory:");
    config.max = Some(fake.config());
    let app = zapis::app::App::build(config, Arc::new(zapis::clock::SystemClock))
        .await
        .expect("demo app builds on an in-memory store");
    let adapter = zapis::messenger::max::MaxAdapter::new(&fake.config())
        .limits(fast_max_limits())
        .poll_timeout(Duration::from_secs(5))
        .default_lang(app.settings.business.locale)
        .cursor_store(app.store.clone(), &app.settings.business.id);
    let bot = RunningMaxBot::start(adapter, app.conversations.clone());
    (app, bot)
}

/// A business id written in a test, where a bad one is the test's own mistake.
pub fn bid(id: &str) -> zapis::domain::BusinessId {
    zapis::domain::BusinessId::parse(id).expect("a test's business id is valid")
}

/// One of our booking ids written in a test, where a bad one is the test's own mistake.
pub fn bk(id: &str) -> zapis::domain::BookingId {
    zapis::domain::BookingId::parse(id).expect("a test's booking id is valid")
}
