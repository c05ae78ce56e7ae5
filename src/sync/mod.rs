//! The durable sync engine: everything zapis writes to another system goes through it.
//!
//! - [`jobs`]: the job table, which is both the transactional outbox (a job commits with the
//!   change that causes it, via [`jobs::enqueue_in`]) and the queue workers claim from.
//! - [`worker`]: the [`worker::Engine`] and the [`worker::JobHandler`] seam connectors implement.
//! - [`retry`]: [`retry::DeliveryError`] (the connector's retry decision) and the backoff policy.
//! - [`journal`]: the append-only audit of every attempt, with personal data masked.
//! - [`health`] and [`alerts`]: per-system outages, one alert per outage and one on recovery.
//! - [`inbox`]: incoming webhooks stored raw and processed once.
//! - [`http_target`]: the generic outbound `http` connector.
//! - [`cli`]: `zapis queue`, `zapis journal`, `zapis worker`.
//!
//! Why the queue is our own rather than a crate: docs/queue.md.

pub mod alerts;
pub mod cli;
pub mod config;
pub mod health;
pub mod http_target;
pub mod inbox;
pub mod jobs;
pub mod journal;
mod queries;
pub mod retry;
pub mod worker;

pub use alerts::{Alert, AlertKind, AlertSink, Alerts, EmailSink, MemorySink, WebhookSink};
pub use config::{AdminBookings, AlertsConfig, EmailAlertsConfig, SmtpSecurity, SyncConfig};
pub use jobs::{Job, JobState, NewJob, NextClaim, Queue, enqueue_in};
pub use retry::{DeliveryError, RetryPolicy};
pub use worker::{Delivered, Engine, JobContext, JobHandler};

#[cfg(test)]
mod tests;
