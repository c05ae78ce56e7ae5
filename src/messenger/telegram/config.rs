//! `[telegram]`: the bot's token, API address and flood limits.

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    pub token: SecretString,
    #[serde(default = "default_telegram_api")]
    pub api_url: Url,
    /// The bot's username, for printing deep links; read from `getMe` when absent.
    #[serde(default)]
    pub bot_username: Option<String>,
    /// `[telegram.limits]`: flood-limit pacing; defaults are Telegram's documented limits.
    #[serde(default)]
    pub limits: super::pacing::TelegramLimits,
}

fn default_telegram_api() -> Url {
    Url::parse("https://api.telegram.org").expect("constant URL parses")
}
