//! Prometheus metrics (`/metrics`), through the `metrics` facade. The recorder is installed
//! only when metrics are served (`[http] metrics` or `metrics_listen`); until then every
//! recording below is a no-op costing a relaxed load.
//!
//! Label values are bounded by construction: systems, channels and outcomes are ours, a
//! webhook source is one of [`crate::http::SOURCES`], and a booking's source is the name of a
//! tracked link or form (set by the operator), never a client's free text.

use crate::domain::{BusinessId, System};
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::Source;
use crate::store::{Store, StoreError};

/// Jobs in the queue by system and state (gauge, read from the store at each scrape).
pub const JOBS: &str = "zapis_jobs";
/// Seconds from a job's enqueue to its confirmed delivery, by system (histogram).
pub const DELIVERY_SECONDS: &str = "zapis_delivery_seconds";
/// Delivery attempts into a system by outcome: ok, transient, 429, permanent, auth,
/// payment_required (counter).
pub const VENDOR_CALLS: &str = "zapis_vendor_calls_total";
/// Webhooks by source and result: stored, duplicate, refused, failed (not stored: the
/// sender retries) (counter).
pub const WEBHOOKS: &str = "zapis_webhooks_total";
/// Dialogs started (`/start`, a deep link) by channel and source (counter).
pub const DIALOG_STARTS: &str = "zapis_dialog_starts_total";
/// Bookings confirmed by the schedule, by channel and source (counter).
pub const BOOKINGS: &str = "zapis_bookings_total";
/// Alerts raised, by kind (counter).
pub const ALERTS: &str = "zapis_alerts_total";

/// Every metric this service exports, for the documentation test.
pub const NAMES: &[&str] = &[
    JOBS,
    DELIVERY_SECONDS,
    VENDOR_CALLS,
    WEBHOOKS,
    DIALOG_STARTS,
    BOOKINGS,
    ALERTS,
];

/// From a fast API call to a job that waited out a day-long outage.
const DELIVERY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
];

const JOB_STATES: [&str; 4] = ["pending", "running", "done", "dead"];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot set up the metrics recorder: {0}")]
    Recorder(String),
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns the handle `/metrics` renders.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(DELIVERY_SECONDS.into()), DELIVERY_BUCKETS)
        .map_err(|e| MetricsError::Recorder(e.to_string()))?
        .build_recorder();
    let handle = recorder.handle();
    match metrics::set_global_recorder(recorder) {
        Ok(()) => {
            describe();
            Ok(HANDLE.get_or_init(|| handle).clone())
        }
        // Another thread won the race and stored its handle, or a recorder of someone else's
        // is installed (then ours would render nothing).
        Err(_) => HANDLE
            .get()
            .cloned()
            .ok_or_else(|| MetricsError::Recorder("another metrics recorder is installed".into())),
    }
}

fn describe() {
    metrics::describe_gauge!(JOBS, "Jobs in the queue by system and state.");
    metrics::describe_histogram!(
        DELIVERY_SECONDS,
        metrics::Unit::Seconds,
        "Time from a job's enqueue to its confirmed delivery, by system."
    );
    metrics::describe_counter!(
        VENDOR_CALLS,
        "Delivery attempts into a system, by outcome (ok, transient, 429, permanent, auth, payment_required)."
    );
    metrics::describe_counter!(
        WEBHOOKS,
        "Webhooks received, by source and result (stored, duplicate, refused, failed)."
    );
    metrics::describe_counter!(DIALOG_STARTS, "Dialogs started, by channel and source.");
    metrics::describe_counter!(
        BOOKINGS,
        "Bookings confirmed by the schedule, by channel and source."
    );
    metrics::describe_counter!(ALERTS, "Alerts raised, by kind.");
}

/// A booking's or dialog's source as a label: the tracked link's (or form's) name, else
/// `deep_link` for an untracked start payload, else `direct`.
pub fn source_label(source: &Source) -> String {
    match (&source.link_name, &source.payload) {
        (Some(name), _) => name.clone(),
        (None, Some(_)) => "deep_link".into(),
        (None, None) => "direct".into(),
    }
}

pub fn dialog_started(source: &Source) {
    metrics::counter!(
        DIALOG_STARTS,
        "channel" => source.channel.as_str(),
        "source" => source_label(source)
    )
    .increment(1);
}

pub fn booked(source: &Source) {
    metrics::counter!(
        BOOKINGS,
        "channel" => source.channel.as_str(),
        "source" => source_label(source)
    )
    .increment(1);
}

/// One attempt's outcome; `enqueued_for` is given when it delivered the job.
pub fn attempt(system: System, outcome: &'static str, enqueued_for: Option<Duration>) {
    metrics::counter!(VENDOR_CALLS, "system" => system.as_str(), "outcome" => outcome).increment(1);
    if let Some(waited) = enqueued_for {
        metrics::histogram!(DELIVERY_SECONDS, "system" => system.as_str())
            .record(waited.as_secs_f64());
    }
}

pub fn webhook(source: &'static str, result: &'static str) {
    metrics::counter!(WEBHOOKS, "source" => source, "result" => result).increment(1);
}

pub fn alert(kind: &'static str) {
    metrics::counter!(ALERTS, "kind" => kind).increment(1);
}

/// Refreshes the job gauges from the store: every state of every `systems` entry is set, so
/// a count that fell to zero reads zero rather than its last value.
pub async fn refresh_jobs(
    store: &Store,
    business_id: &BusinessId,
    systems: &[System],
) -> Result<(), StoreError> {
    let rows = crate::sync::Queue::new(store.clone())
        .counts_of(business_id)
        .await?;
    for system in systems {
        for state in JOB_STATES {
            let n = rows
                .iter()
                .find(|(s, st, _)| s == system && st == state)
                .map_or(0, |r| r.2);
            metrics::gauge!(JOBS, "system" => system.as_str(), "state" => state).set(n as f64);
        }
    }
    for (system, state, n) in rows.iter().filter(|r| !systems.contains(&r.0)) {
        // A system no longer configured still has jobs worth seeing.
        metrics::gauge!(JOBS, "system" => system.as_str(), "state" => state.clone()).set(*n as f64);
    }
    Ok(())
}

/// The Prometheus text for a scrape.
pub fn render(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    handle.render()
}
