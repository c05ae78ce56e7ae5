//! `[telegram]`: the bot's token, API address, flood limits, and how updates arrive (long
//! polling, or a webhook Telegram posts to).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::sync::config::KeyError;

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
    /// `polling` (the default: this process asks Telegram for updates) or `webhook` (Telegram
    /// posts them to `webhook_url`, which the HTTP server serves: no poller per bot).
    #[serde(default)]
    pub mode: TelegramMode,
    /// The public https address Telegram posts updates to, in webhook mode: this deployment's
    /// `/webhooks/telegram/<http.webhook_secret>` (or `/webhooks/<id>/telegram/<secret>` in a
    /// deployment of several businesses), as the console's setup page shows it.
    #[serde(default)]
    pub webhook_url: Option<Url>,
    /// Telegram sends it in `X-Telegram-Bot-Api-Secret-Token` with every update; a delivery
    /// without it is refused. 1–256 of `A-Z a-z 0-9 _ -`.
    #[serde(default)]
    pub webhook_secret: Option<SecretString>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    #[default]
    Polling,
    Webhook,
}

fn default_telegram_api() -> Url {
    Url::parse("https://api.telegram.org").expect("constant URL parses")
}

impl TelegramConfig {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), KeyError> {
        let key = |key: &str, message: &str| KeyError {
            key: key.into(),
            message: message.into(),
        };
        if self.mode != TelegramMode::Webhook {
            return Ok(());
        }
        match &self.webhook_url {
            None => {
                return Err(key(
                    "telegram.webhook_url",
                    "mode = \"webhook\" needs the public https address Telegram posts to",
                ));
            }
            Some(url) if url.scheme() != "https" => {
                return Err(key(
                    "telegram.webhook_url",
                    "must be https://: Telegram posts webhooks over TLS only",
                ));
            }
            Some(_) => {}
        }
        let Some(secret) = &self.webhook_secret else {
            return Err(key(
                "telegram.webhook_secret",
                "mode = \"webhook\" needs a secret Telegram sends with every update",
            ));
        };
        let secret = secret.expose_secret();
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if secret.is_empty() || secret.len() > 256 || !secret.chars().all(allowed) {
            return Err(key(
                "telegram.webhook_secret",
                "must be 1 to 256 of A-Z, a-z, 0-9, `_` and `-` (Telegram's rule)",
            ));
        }
        if let Some(why) = crate::secrets::unusable(secret) {
            return Err(key("telegram.webhook_secret", why));
        }
        Ok(())
    }
}
