//! `[http]`: the server for webhooks, forms, health checks and the console.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, e.g. `0.0.0.0:8080`.
    pub listen: std::net::SocketAddr,
    /// The secret path segment vendors' webhooks must carry: `/webhooks/<system>/<secret>`.
    pub webhook_secret: SecretString,
    /// Proxies (CIDR blocks) whose `X-Forwarded-For` hops are stripped to find a form
    /// visitor's address (with `school.forms.trust_forwarded_for`).
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Connections served at once; one more is refused at once. Lowered at start to fit under
    /// the open-files limit.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A request's headers must arrive within this; also how long an idle connection lives.
    #[serde(
        default = "default_header_read_timeout",
        deserialize_with = "crate::sync::config::de_duration"
    )]
    pub header_read_timeout: std::time::Duration,
    /// The longest pause between two pieces of a request body.
    #[serde(
        default = "default_body_timeout",
        deserialize_with = "crate::sync::config::de_duration"
    )]
    pub body_timeout: std::time::Duration,
    /// A request must be answered within this, body reading included.
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "crate::sync::config::de_duration"
    )]
    pub request_timeout: std::time::Duration,
    /// Serve `/metrics` on `listen` too. Off by default: the numbers tell business volumes to
    /// anyone who can reach the webhook address.
    #[serde(default)]
    pub metrics: bool,
    /// Serve `/metrics` (alone) on this address as well, e.g. `127.0.0.1:9464` for a local
    /// Prometheus.
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Serve the browser console at `/console` (nothing in it opens without a user added by
    /// `zapis user add`).
    #[serde(default = "default_true")]
    pub console: bool,
    /// The address people and vendors reach this service at, e.g. `https://zapis.example.ru`:
    /// the console's webhook URLs start with it, and its cookies are `Secure` when it is https.
    #[serde(default)]
    pub public_url: Option<url::Url>,
}

fn default_true() -> bool {
    true
}

fn default_max_connections() -> usize {
    crate::http::server::Limits::default().max_connections
}
fn default_header_read_timeout() -> std::time::Duration {
    crate::http::server::Limits::default().header_read_timeout
}
fn default_body_timeout() -> std::time::Duration {
    crate::http::server::Limits::default().body_timeout
}
fn default_request_timeout() -> std::time::Duration {
    crate::http::server::Limits::default().request_timeout
}

impl HttpConfig {
    /// The server's limits as configured (before fitting under the descriptor limit).
    pub fn limits(&self) -> crate::http::server::Limits {
        crate::http::server::Limits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            body_timeout: self.body_timeout,
            request_timeout: self.request_timeout,
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        use secrecy::ExposeSecret;
        let key = |k: &str, message: &str| ConfigError::Key {
            key: format!("http.{k}"),
            message: message.into(),
        };
        let secret = self.webhook_secret.expose_secret();
        if let Some(why) = crate::secrets::unusable(secret) {
            return Err(key("webhook_secret", why));
        }
        if secret.len() < 16
            || !secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(key(
                "webhook_secret",
                "use at least 16 characters of A-Z, a-z, 0-9, - and _",
            ));
        }
        if self.max_connections < 16 {
            return Err(key("max_connections", "must be at least 16"));
        }
        for (name, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_timeout", self.body_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if d < std::time::Duration::from_secs(1) || d > std::time::Duration::from_secs(600) {
                return Err(key(name, "must be between 1s and 10m"));
            }
        }
        if let Some(url) = &self.public_url
            && (!matches!(url.scheme(), "https" | "http") || url.host().is_none())
        {
            return Err(key(
                "public_url",
                "must be the http(s) address of this service, e.g. https://zapis.example.ru",
            ));
        }
        Ok(())
    }
}
