//! `[max]`: the bot's token, API address and how updates reach us.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::sync::config::KeyError;

/// How MAX delivers updates to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MaxMode {
    /// `GET /updates` long polling: fine for development, MAX advises webhooks in production.
    #[default]
    Polling,
    /// MAX posts updates to `webhook_url` (register it with `zapis max subscribe`).
    Webhook,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxConfig {
    pub token: SecretString,
    #[serde(default = "default_max_api")]
    pub api_url: Url,
    #[serde(default)]
    pub mode: MaxMode,
    /// The bot's username, for printing deep links; read from `GET /me` when absent.
    #[serde(default)]
    pub bot_username: Option<String>,
    /// Sent by MAX in `X-Max-Bot-Api-Secret` with every webhook delivery.
    #[serde(default)]
    pub webhook_secret: Option<SecretString>,
    /// Our public HTTPS address MAX posts updates to.
    #[serde(default)]
    pub webhook_url: Option<Url>,
    /// PEM file with extra root certificates to trust for `api_url`. MAX's host is signed by
    /// the Russian Trusted Root CA (Минцифры), which the built-in roots do not include.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

fn default_max_api() -> Url {
    Url::parse("https://platform-api2.max.ru").expect("constant URL parses")
}

impl MaxConfig {
    pub fn validate(&self) -> Result<(), KeyError> {
        use secrecy::ExposeSecret;
        let key = |k: &str, message: String| KeyError {
            key: format!("max.{k}"),
            message,
        };
        if self.token.expose_secret().trim().is_empty() {
            return Err(key("token", "must not be empty".into()));
        }
        if let Some(secret) = &self.webhook_secret {
            if let Some(why) = crate::secrets::unusable(secret.expose_secret()) {
                return Err(key("webhook_secret", why.into()));
            }
            // MAX's own rule for `SubscriptionRequestBody.secret`; checked here so a bad one
            // fails at startup, not at `zapis max subscribe` time.
            let s = secret.expose_secret();
            let shape_ok = (5..=256).contains(&s.len())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !shape_ok {
                return Err(key(
                    "webhook_secret",
                    "must be 5–256 characters of A-Z, a-z, 0-9, _ and -".into(),
                ));
            }
        }
        if let Some(url) = &self.webhook_url
            && url.scheme() != "https"
        {
            return Err(key(
                "webhook_url",
                "must be an https:// URL, MAX delivers webhooks over HTTPS only".into(),
            ));
        }
        if let Some(path) = &self.ca_cert {
            let pem = read_bounded(path, MAX_CA_BUNDLE)
                .map_err(|e| key("ca_cert", format!("cannot read {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default();
            if certs.is_empty() {
                return Err(key(
                    "ca_cert",
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
        }
        if self.mode == MaxMode::Webhook && self.webhook_url.is_none() {
            return Err(key(
                "webhook_url",
                "mode = \"webhook\" needs webhook_url, the public address MAX posts to".into(),
            ));
        }
        Ok(())
    }
}

/// A CA bundle is a few hundred KiB at most; a path to a device or a huge file must not stall
/// the start or fill memory.
const MAX_CA_BUNDLE: u64 = 4 << 20;

fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB",
            limit >> 20
        )));
    }
    Ok(out)
}
