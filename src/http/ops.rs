//! What a supervisor and a monitoring system ask of the running service: is the process
//! serving (`/health/live`), can it do its work (`/health/ready`), and its numbers (`/metrics`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;

use super::HttpState;
use crate::messenger::liveness::{Poller, PollerState, PollerStatus};
use crate::sync::health::{Health, IntegrationHealth, READY_WINDOW, integration_health};
use crate::sync::journal::mask_text;

/// What `/health/ready` and `/metrics` read besides the store.
pub struct Ops {
    /// The systems the delivery engine writes to.
    pub systems: Vec<crate::domain::System>,
    /// The configured messengers' poll loops.
    pub pollers: Vec<(&'static str, Arc<Poller>)>,
    /// Set when `/metrics` is served on this listener (`[http] metrics = true`).
    pub metrics: Option<PrometheusHandle>,
}

#[derive(Debug, serde::Serialize)]
struct Readiness {
    /// `ready` or `not_ready`.
    status: &'static str,
    checked_at: DateTime<Utc>,
    store: StoreState,
    integrations: Vec<IntegrationHealth>,
    pollers: Vec<PollerReport>,
}

#[derive(Debug, serde::Serialize)]
struct StoreState {
    reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, serde::Serialize)]
struct PollerReport {
    messenger: &'static str,
    #[serde(flatten)]
    status: PollerStatus,
}

pub async fn live() -> (StatusCode, &'static str) {
    (StatusCode::OK, "ok")
}

/// 200 when the store answers, no configured system is down and every messenger polls; else
/// 503. The body says which part is not ready, since when, and the last error.
pub async fn ready(State(state): State<HttpState>) -> Response {
    let now = state.clock.now();
    let ops = state.ops.as_deref();
    let mut store = match state.store.ping().await {
        Ok(_) => StoreState {
            reachable: true,
            error: None,
        },
        Err(e) => StoreState {
            reachable: false,
            error: Some(e.to_string()),
        },
    };
    let mut integrations = Vec::new();
    // A deployment's own state has no business, and so no integrations of its own.
    if store.reachable
        && let Some(ops) = ops
        && let Some(business_id) = &state.business_id
    {
        match integration_health(&state.store, business_id, &ops.systems, READY_WINDOW, now).await {
            Ok(found) => integrations = found,
            Err(e) => {
                store = StoreState {
                    reachable: false,
                    error: Some(e.to_string()),
                }
            }
        }
    }
    let pollers: Vec<PollerReport> = ops
        .map(|ops| {
            ops.pollers
                .iter()
                .map(|(messenger, poller)| {
                    let mut status = poller.status(now);
                    status.last_error = status.last_error.as_deref().map(mask_text);
                    PollerReport { messenger, status }
                })
                .collect()
        })
        .unwrap_or_default();
    let ok = store.reachable
        && integrations.iter().all(|i| i.state != Health::Down)
        && pollers
            .iter()
            .all(|p| matches!(p.status.state, PollerState::Up | PollerState::Standby));
    let body = Readiness {
        status: if ok { "ready" } else { "not_ready" },
        checked_at: now,
        store,
        integrations,
        pollers,
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// The Prometheus text, with the job gauges read from the store now; 404 unless metrics are
/// served on this listener.
pub async fn metrics(State(state): State<HttpState>) -> Response {
    let Some((ops, handle)) = state
        .ops
        .as_deref()
        .and_then(|ops| ops.metrics.as_ref().map(|h| (ops, h)))
    else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    if let Some(business_id) = &state.business_id
        && let Err(e) = crate::metrics::refresh_jobs(&state.store, business_id, &ops.systems).await
    {
        // The counters are still worth a scrape; the job gauges keep their last values.
        tracing::warn!(error = %e, "cannot count the queue's jobs for /metrics");
    }
    scrape(handle)
}

fn scrape(handle: &PrometheusHandle) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(handle),
    )
        .into_response()
}

/// `/metrics` alone, for `[http] metrics_listen`: an address a monitoring network reaches and
/// the public does not.
pub async fn serve_metrics(
    listen: std::net::SocketAddr,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Said at once: the task's result is only read at shutdown.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .inspect_err(|e| tracing::error!(%listen, error = %e, "cannot listen for /metrics"))?;
    tracing::info!(%listen, "metrics listening");
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bid;
    use axum::body::Body;
    use axum::http::Request;
    use std::time::Duration;
    use tower::ServiceExt;

    use crate::clock::FakeClock;
    use crate::store::{Store, testing};

    fn state(store: &Store, ops: Option<Ops>) -> HttpState {
        HttpState {
            store: store.clone(),
            business_id: Some(crate::domain::bid("b1")),
            secret: "webhook-secret-0123456789".into(),
            sources: Vec::new(),
            clock: Arc::new(FakeClock::new(
                DateTime::from_timestamp(1_800_000_000, 0).expect("a time"),
            )),
            max_secret: None,
            telegram_secret: None,
            bitrix24_token: None,
            forms: None,
            onec: None,
            ops: ops.map(Arc::new),
            console: None,
        }
    }

    async fn get(state: HttpState, path: &str) -> (StatusCode, String) {
        let answer = crate::http::router(state)
            .oneshot(Request::get(path).body(Body::empty()).expect("a request"))
            .await
            .expect("an answer");
        let status = answer.status();
        let body = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .expect("a body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readiness_names_what_is_not_ready() {
        let store = testing::sqlite().await;
        let telegram = Arc::new(Poller::default());
        let ops = || Ops {
            systems: vec![crate::domain::System::AmoCrm],
            pollers: vec![("telegram", telegram.clone())],
            metrics: None,
        };
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");

        let (status, body) = get(state(&store, Some(ops())), "/health/ready").await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "still starting: {body}"
        );
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["pollers"][0]["state"], "starting");

        telegram.started(now);
        let (status, body) = get(state(&store, Some(ops())), "/health/ready").await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // A poll error keeps no phone in clear.
        telegram.failed("chat +79123456789 unreachable", Duration::ZERO, None, now);
        let (status, body) = get(state(&store, Some(ops())), "/health/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(!body.contains("9123456789"), "{body}");
        telegram.polled(now);

        crate::sync::health::record_failure(
            &store,
            &bid("b1"),
            crate::sync::health::Outage::Down(crate::domain::System::AmoCrm),
            "HTTP 502",
            Duration::ZERO,
            now,
        )
        .await
        .expect("recorded");
        let (status, body) = get(state(&store, Some(ops())), "/health/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["integrations"][0]["state"], "down");
        assert_eq!(json["integrations"][0]["last_error"], "HTTP 502");

        // Live and the old check do not look at vendors; metrics are not served without a
        // recorder handle.
        assert_eq!(
            get(state(&store, Some(ops())), "/health/live").await.0,
            StatusCode::OK
        );
        assert_eq!(
            get(state(&store, Some(ops())), "/health").await.0,
            StatusCode::OK
        );
        assert_eq!(
            get(state(&store, Some(ops())), "/metrics").await.0,
            StatusCode::NOT_FOUND
        );

        store.close().await;
        let (status, body) = get(state(&store, Some(ops())), "/health/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["store"]["reachable"], false);
        assert!(json["store"]["error"].is_string());
        assert_eq!(
            get(state(&store, None), "/health/live").await.0,
            StatusCode::OK
        );
    }
}
