//! The end-to-end tests: the real `zapis` executable (`CARGO_BIN_EXE_zapis`) spawned as a
//! service or a command, against the fakes over real HTTP, a scripted user in the messenger, a
//! real browser on the console. The in-process tests are in tests/it.
//!
//! A story's config is built in code with `support::app::Settings`, rendered to TOML in one
//! place, so a key is written once: the bot on a fake (`Settings::telegram`, with the stories'
//! pace), a CRM, a schedule, the HTTP face. What stays text is what a test says about the
//! text itself: broken or misspelt files and the line an error names.
//!
//! The stories' bots are paced at 20 messages a second per chat (`Settings::telegram` says
//! why): at Telegram's own pace they waited on the pacer for most of CI's time. `demo` and
//! `http_hostile` keep the defaults.

#[path = "../support/mod.rs"]
mod support;

mod console_browser;
mod crm_e2e;
mod crm_faults_e2e;
mod demo;
mod dikidi_e2e;
mod fleet_e2e;
mod http_hostile;
mod max_e2e;
mod school_telegram_e2e;
mod support_e2e;
mod sync_chaos;
mod telegram_e2e;
mod two_way_e2e;
mod unfinished_e2e;
mod words_e2e;
mod yclients_e2e;
