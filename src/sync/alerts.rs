//! Alerts to people: one when a system has been failing for longer than `alert_after`, one
//! when it recovers, and one when credentials are refused for good. Where they go is an
//! [`AlertSink`]: an HTTP webhook or e-mail here; the Telegram/MAX admin chat sinks come with
//! the messenger adapters.

use crate::domain::{BusinessId, System};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Serialize;

use super::config::{EmailAlertsConfig, SmtpSecurity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Deliveries to the system have failed continuously since `since`.
    Down,
    /// Deliveries succeed again after an outage we alerted about.
    Recovered,
    /// The system refused our credentials even after a token refresh.
    AuthFailed,
    /// The system's account is not paid; writes wait in the queue until it is.
    PaymentRequired,
    /// Stock reported by the accounting system fell to the configured threshold;
    /// `last_error` lists the items.
    LowStock,
    /// Something a person must look at; nothing was changed automatically. `last_error` says
    /// what and why.
    Attention,
}

impl AlertKind {
    /// The serialised name (`auth_failed`), for the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Down => "down",
            AlertKind::Recovered => "recovered",
            AlertKind::AuthFailed => "auth_failed",
            AlertKind::PaymentRequired => "payment_required",
            AlertKind::LowStock => "low_stock",
            AlertKind::Attention => "attention",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub business_id: BusinessId,
    pub system: System,
    pub since: DateTime<Utc>,
    pub at: DateTime<Utc>,
    /// Already masked.
    pub last_error: Option<String>,
}

impl Alert {
    /// A one-line human text for chat sinks.
    pub fn text(&self) -> String {
        let minutes = (self.at - self.since).num_minutes();
        let duration = format!("{}h{:02}m", minutes / 60, minutes % 60);
        match self.kind {
            AlertKind::Down => format!(
                "⚠ {} ({}) has been failing for {duration}; operations are queued. Last error: {}",
                self.system,
                self.business_id,
                self.last_error.as_deref().unwrap_or("-")
            ),
            AlertKind::Recovered => format!(
                "✅ {} ({}) is delivering again after {duration}.",
                self.system, self.business_id
            ),
            AlertKind::PaymentRequired => format!(
                "💳 {} ({}) blocks writes: the account is not paid. Operations wait in the queue \
                 and go out once it is paid. {}",
                self.system,
                self.business_id,
                self.last_error.as_deref().unwrap_or("")
            ),
            AlertKind::LowStock => format!(
                "📦 {} ({}): low stock: {}",
                self.system,
                self.business_id,
                self.last_error.as_deref().unwrap_or("-")
            ),
            AlertKind::Attention => format!(
                "👀 {} ({}) needs a look: {}",
                self.system,
                self.business_id,
                self.last_error.as_deref().unwrap_or("-")
            ),
            AlertKind::AuthFailed => format!(
                "⛔ {} ({}) refuses our credentials; reconnect the integration. {}",
                self.system,
                self.business_id,
                self.last_error.as_deref().unwrap_or("")
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert webhook failed: {0}")]
    Http(String),
    #[error("alert e-mail failed: {0}")]
    Email(String),
    #[error("alerts.email: {0}")]
    EmailConfig(String),
}

#[async_trait]
pub trait AlertSink: Send + Sync {
    async fn send(&self, alert: &Alert) -> Result<(), AlertError>;
}

/// POSTs the alert as JSON (`kind`, `business_id`, `system`, `since`, `at`, `last_error`,
/// `text`) to a configured URL.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    client: reqwest::Client,
    url: url::Url,
}

impl WebhookSink {
    pub fn new(client: reqwest::Client, url: url::Url) -> WebhookSink {
        WebhookSink { client, url }
    }
}

#[async_trait]
impl AlertSink for WebhookSink {
    async fn send(&self, alert: &Alert) -> Result<(), AlertError> {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(flatten)]
            alert: &'a Alert,
            text: String,
        }
        let response = self
            .client
            .post(self.url.clone())
            .json(&Body {
                alert,
                text: alert.text(),
            })
            .send()
            .await
            .map_err(|e| AlertError::Http(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(AlertError::Http(format!("HTTP {}", response.status())));
        }
        Ok(())
    }
}

impl Alert {
    /// A short subject line for e-mail: what happened to which system.
    pub fn subject(&self) -> String {
        let what = match self.kind {
            AlertKind::Down => "is down",
            AlertKind::Recovered => "recovered",
            AlertKind::AuthFailed => "refuses our credentials",
            AlertKind::PaymentRequired => "needs payment",
            AlertKind::LowStock => "low stock",
            AlertKind::Attention => "needs a look",
        };
        format!("zapis: {} {what} ({})", self.system, self.business_id)
    }
}

/// Sends every alert as a plain-text e-mail through an SMTP server (`[alerts.email]`).
#[derive(Clone)]
pub struct EmailSink {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl std::fmt::Debug for EmailSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSink")
            .field("from", &self.from)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

/// How long one SMTP exchange may take before the alert counts as not delivered.
const SMTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl EmailSink {
    pub fn new(config: &EmailAlertsConfig) -> Result<EmailSink, AlertError> {
        use secrecy::ExposeSecret;
        let bad =
            |what: &str, e: &dyn std::fmt::Display| AlertError::EmailConfig(format!("{what}: {e}"));
        let builder = match config.security {
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host)
                .map_err(|e| bad("host", &e))?,
            SmtpSecurity::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)
                    .map_err(|e| bad("host", &e))?
            }
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            }
        };
        let mut builder = builder.port(config.port()).timeout(Some(SMTP_TIMEOUT));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_string(),
            ));
        }
        let from = config.from.parse().map_err(|e| bad("from", &e))?;
        let to = config
            .to
            .iter()
            .map(|to| to.parse().map_err(|e| bad("to", &e)))
            .collect::<Result<Vec<Mailbox>, _>>()?;
        Ok(EmailSink {
            transport: builder.build(),
            from,
            to,
        })
    }

    fn message(&self, alert: &Alert) -> Result<Message, AlertError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(alert.subject())
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let body = format!(
            "{}\n\nsystem: {}\nbusiness: {}\nkind: {}\nsince: {}\nat: {}\nlast error: {}\n",
            alert.text(),
            alert.system,
            alert.business_id,
            alert.kind.as_str(),
            alert.since.to_rfc3339(),
            alert.at.to_rfc3339(),
            alert.last_error.as_deref().unwrap_or("-"),
        );
        builder
            .body(body)
            .map_err(|e| AlertError::Email(e.to_string()))
    }
}

#[async_trait]
impl AlertSink for EmailSink {
    async fn send(&self, alert: &Alert) -> Result<(), AlertError> {
        let message = self.message(alert)?;
        self.transport
            .send(message)
            .await
            .map_err(|e| AlertError::Email(e.to_string()))?;
        Ok(())
    }
}

/// Keeps alerts in memory: for tests and for `zapis` runs without any sink configured
/// (the alerts are logged as well).
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    alerts: Arc<Mutex<Vec<Alert>>>,
}

impl MemorySink {
    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait]
impl AlertSink for MemorySink {
    async fn send(&self, alert: &Alert) -> Result<(), AlertError> {
        self.alerts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(alert.clone());
        Ok(())
    }
}

/// Sends to every sink; one failing sink does not stop the others.
#[derive(Default, Clone)]
pub struct Alerts {
    sinks: Vec<Arc<dyn AlertSink>>,
}

impl Alerts {
    pub fn new(sinks: Vec<Arc<dyn AlertSink>>) -> Alerts {
        Alerts { sinks }
    }

    pub async fn send(&self, alert: &Alert) {
        crate::metrics::alert(alert.kind.as_str());
        tracing::warn!(kind = ?alert.kind, system = %alert.system, business = %alert.business_id, "{}", alert.text());
        for sink in &self.sinks {
            if let Err(e) = sink.send(alert).await {
                tracing::error!(error = %e, "alert not delivered");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bid;

    #[tokio::test]
    async fn webhook_sink_posts_the_alert_as_json() {
        use axum::{Json, Router, routing::post};
        let received = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
        let sink_state = received.clone();
        let app = Router::new().route(
            "/hook",
            post(move |Json(v): Json<serde_json::Value>| async move {
                sink_state.lock().unwrap_or_else(|p| p.into_inner()).push(v);
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = url::Url::parse(&format!("http://{addr}/hook")).unwrap();
        let sink = WebhookSink::new(reqwest::Client::new(), url);
        let since = Utc::now() - chrono::Duration::minutes(125);
        let alert = Alert {
            kind: AlertKind::Down,
            business_id: bid("salon"),
            system: System::AmoCrm,
            since,
            at: Utc::now(),
            last_error: Some("HTTP 503".into()),
        };
        sink.send(&alert).await.unwrap();
        let got = received.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["kind"], "down");
        assert_eq!(got[0]["system"], "amocrm");
        assert!(
            got[0]["text"]
                .as_str()
                .unwrap()
                .contains("failing for 2h05m"),
            "{}",
            got[0]
        );
    }
}
