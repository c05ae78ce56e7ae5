//! The end-to-end tests: the real `zapis` executable (`CARGO_BIN_EXE_zapis`) spawned as a
//! service or a command, against the fakes over real HTTP, a scripted user in the messenger, a
//! real browser on the console. The in-process tests are in tests/it.
//!
//! The stories' bots are paced at 20 messages a second per chat (`limits.*` under each
//! `[telegram]`): at Telegram's own 1 a second after a burst of 3, every booking a scripted
//! client walks through waits ~9 s on the pacer, which made these stories most of CI's time.
//! The pacing itself is tested in `messenger::telegram::pacing`; `demo` and `http_hostile`
//! keep the defaults.

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
