//! `[telegram]` and `[max]`: each lives in its adapter's folder (`telegram/config.rs`,
//! `max/config.rs`); this module is the one path the rest of the crate names them by.

pub use super::max::config::{MaxConfig, MaxMode};
pub use super::telegram::config::{TelegramConfig, TelegramMode};
