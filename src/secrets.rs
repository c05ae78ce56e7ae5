//! Keeping configured secrets out of everything we write: one [`Scrubber`] built from the
//! configuration's secrets replaces them (and their URL-encoded forms) in upstream error texts
//! before those reach the journal, `sync_jobs.last_error`, `sync_outages.last_error` and the
//! log. Also the rules for secrets that guard a public route: not empty, not a placeholder.

use std::borrow::Cow;
use std::io::Write;
use std::sync::{Arc, RwLock};

use secrecy::{ExposeSecret, SecretString};

use crate::config::{BusinessSettings, Config, Deployment};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Secrets shorter than this are not scrubbed: replacing two letters everywhere would wreck
/// every text, and such a value guards nothing (routes' secrets must be longer anyway).
const MIN_SCRUBBED: usize = 6;

/// Values copied from examples and documentation rather than chosen.
const PLACEHOLDERS: &[&str] = &[
    "secret",
    "replace-me",
    "replace_me",
    "replaceme",
    "changeme",
    "change-me",
    "change_me",
    "password",
    "token",
    "…",
    "...",
    "xxx",
    "todo",
    "example",
    "at-least-16-chars-of-a-za-z0-9-_",
];

/// Why a secret that guards a public route cannot be used, or `None` when it can.
pub fn unusable(value: &str) -> Option<&'static str> {
    let v = value.trim();
    if v.is_empty() {
        return Some("must not be empty");
    }
    let lower = v.to_lowercase();
    if PLACEHOLDERS.contains(&lower.as_str()) || v.chars().all(|c| c == '*' || c == '.') {
        return Some(
            "is the placeholder from the example; set a random value (e.g. `openssl rand -hex 16`)",
        );
    }
    None
}

/// A business's own webhook secret in a deployment of several: derived from the deployment's
/// `http.webhook_secret` and the business's id, so each business's URLs are its own (a salon
/// that sees its URL in its CRM's settings learns nothing of another's) with nothing more to
/// configure or store. 32 hex digits of HMAC-SHA-256.
pub fn business_secret(deployment: &SecretString, business: &str) -> SecretString {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(deployment.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
    mac.update(b"webhooks/");
    mac.update(business.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    SecretString::from(hex)
}

/// Compares without an early exit, so the secret cannot be guessed by timing.
pub(crate) fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Replaces every configured secret in a text.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    /// Longest first, so a secret containing another is replaced whole.
    needles: Vec<String>,
}

impl Scrubber {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Scrubber {
        let mut needles: Vec<String> = Vec::new();
        for s in secrets {
            let s = s.trim();
            if s.chars().count() < MIN_SCRUBBED {
                continue;
            }
            let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
            for n in [s.to_string(), encoded] {
                if !needles.contains(&n) {
                    needles.push(n);
                }
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Scrubber { needles }
    }

    /// Every secret of a configuration: tokens, keys, passwords, the secret parts of URLs.
    pub fn from_config(config: &Config) -> Scrubber {
        let (deployment, business) = config.clone().into_parts();
        Scrubber::from_parts(&deployment, [&business])
    }

    /// Every secret of a deployment and of the businesses it serves.
    pub fn from_parts<'a>(
        deployment: &Deployment,
        businesses: impl IntoIterator<Item = &'a BusinessSettings>,
    ) -> Scrubber {
        let mut all: Vec<String> = Vec::new();
        for business in businesses {
            business_secrets(business, &mut all);
        }
        deployment_secrets(deployment, &mut all);
        Scrubber::new(all.iter().map(String::as_str))
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.needles.iter().any(|n| text.contains(n.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), MASK);
            }
        }
        Cow::Owned(out)
    }
}

/// A business's tokens, keys and passwords.
fn business_secrets(config: &BusinessSettings, all: &mut Vec<String>) {
    let mut add = |s: &SecretString| all.push(s.expose_secret().to_string());
    if let Some(tg) = &config.telegram {
        add(&tg.token);
        if let Some(s) = &tg.webhook_secret {
            add(s);
        }
    }
    if let Some(max) = &config.max {
        add(&max.token);
        if let Some(s) = &max.webhook_secret {
            add(s);
        }
    }
    if let Some(y) = &config.booking.yclients {
        add(&y.partner_token);
        if let Some(t) = &y.user_token {
            add(t);
        }
    }
    if let Some(t) = config
        .booking
        .dikidi
        .as_ref()
        .and_then(|d| d.partner_token.as_ref())
    {
        add(t);
    }
    if let Some(crm) = &config.crm {
        if let Some(a) = &crm.amocrm {
            for s in [&a.token, &a.client_secret].into_iter().flatten() {
                add(s);
            }
        }
        if let Some(b) = &crm.bitrix24 {
            for s in [&b.client_secret, &b.application_token]
                .into_iter()
                .flatten()
            {
                add(s);
            }
            if let Some(url) = &b.webhook_url {
                let url = url.expose_secret();
                all.push(url.to_string());
                // `…/rest/<user>/<code>/`: the code is the credential.
                if let Some(code) = url.trim_end_matches('/').rsplit('/').next() {
                    all.push(code.to_string());
                }
            }
        }
    }
    if let Some(school) = &config.school {
        if let Some(a) = &school.alfacrm {
            all.push(a.api_key.expose_secret().to_string());
        }
        if let Some(g) = &school.getcourse {
            all.push(g.key.expose_secret().to_string());
        }
    }
    if let Some(onec) = &config.onec {
        if let Some(p) = &onec.password {
            all.push(p.expose_secret().to_string());
        }
        if let Some(c) = &onec.commerceml {
            all.push(c.password.expose_secret().to_string());
        }
    }
}

/// The deployment's: the webhook secret, the store's password, the alert channels' credentials.
fn deployment_secrets(config: &Deployment, all: &mut Vec<String>) {
    if let Some(http) = &config.http {
        all.push(http.webhook_secret.expose_secret().to_string());
    }
    if let Ok(url) = url::Url::parse(&config.store.url)
        && let Some(p) = url.password()
    {
        all.push(p.to_string());
        if let Some(decoded) = percent_decode(p) {
            all.push(decoded);
        }
    }
    if let Some(password) = config
        .alerts
        .email
        .as_ref()
        .and_then(|e| e.password.as_ref())
    {
        all.push(password.expose_secret().to_string());
    }
    if let Some(url) = &config.alerts.webhook_url {
        // Chat hooks carry their credential in the path or query.
        if let Some(q) = url.query() {
            all.push(q.to_string());
        }
        if let Some(last) = url.path_segments().and_then(|mut s| s.next_back()) {
            all.push(last.to_string());
        }
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let decoded: String = url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    (decoded != s).then_some(decoded)
}

static GLOBAL: RwLock<Option<Arc<Scrubber>>> = RwLock::new(None);

/// Makes `scrubber` the one the log writer uses.
pub fn install(scrubber: Scrubber) {
    if let Ok(mut g) = GLOBAL.write() {
        *g = Some(Arc::new(scrubber));
    }
}

/// The installed scrubber (an empty one before the configuration is read).
pub fn installed() -> Arc<Scrubber> {
    GLOBAL
        .read()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_default()
}

/// A log writer that scrubs each formatted event (the formatter writes an event in one call)
/// before it reaches stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrubbingStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ScrubbingStderr {
    type Writer = ScrubbingWriter;
    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingWriter
    }
}

pub struct ScrubbingWriter;

impl Write for ScrubbingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let scrubber = installed();
        let mut err = std::io::stderr().lock();
        if scrubber.is_empty() {
            err.write_all(buf)?;
        } else {
            let text = String::from_utf8_lossy(buf);
            err.write_all(scrubber.scrub(&text).as_bytes())?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_their_url_forms_are_masked() {
        let s = Scrubber::new(["gc-key/with+chars=", "k", "abcdef123456"]);
        let text = "GET https://x.getcourse.ru/pl/api?key=gc-key%2Fwith%2Bchars%3D failed; \
                    body said gc-key/with+chars= and abcdef123456; k stays";
        let out = s.scrub(text);
        assert!(!out.contains("gc-key"), "{out}");
        assert!(!out.contains("abcdef123456"), "{out}");
        assert!(out.ends_with("k stays"), "{out}");
        assert!(matches!(s.scrub("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn placeholders_and_empty_values_are_unusable() {
        for bad in ["", "  ", "secret", "SECRET", "replace-me", "…", "****"] {
            assert!(unusable(bad).is_some(), "{bad:?}");
        }
        assert!(unusable("k3J9-q0Zx_7PpL2mWv").is_none());
    }
}
