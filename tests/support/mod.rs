//! Shared test helpers: fake vendor servers and ways to run the real adapters against them.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod fake_amocrm;
pub mod fake_bitrix24;
pub mod fake_telegram;
pub mod fake_yclients;

use std::sync::Arc;
use std::time::Duration;

use teloxide::adaptors::throttle::Limits;
use tokio::task::JoinHandle;
use zapis::messenger::telegram::{TelegramAdapter, TelegramError};
use zapis::messenger::{ChatHandler, StopSignal};

use fake_telegram::FakeTelegram;

/// Limits loose enough that teloxide's throttle never delays a test, yet still in the path.
pub fn fast_limits() -> Limits {
    Limits {
        messages_per_sec_chat: 1000,
        messages_per_min_chat: 100_000,
        messages_per_min_channel_or_supergroup: 100_000,
        messages_per_sec_overall: 1000,
    }
}

/// The real Telegram adapter running against a fake, stoppable like `zapis run` stops it.
pub struct RunningBot {
    stop: StopSignal,
    task: JoinHandle<Result<(), TelegramError>>,
}

impl RunningBot {
    pub fn start(fake: &FakeTelegram, handler: Arc<dyn ChatHandler>) -> RunningBot {
        let stop = StopSignal::new();
        let adapter = TelegramAdapter::new(&fake.config())
            .limits(fast_limits())
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
