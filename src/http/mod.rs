//! The HTTP face of `zapis run`: vendors' webhooks into the inbox, and a health check.
//! A webhook is acknowledged only after it is stored; the sync engine processes it.

pub mod amocrm_inbox;
pub mod commerceml;
pub mod max_inbox;
pub mod yclients_inbox;

use std::hash::{DefaultHasher, Hash, Hasher};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};

use crate::clock::Clock;
use crate::store::Store;
use crate::sync::inbox::{self, Received};

/// Sources whose webhooks are accepted.
pub const SOURCES: &[&str] = &["yclients", "amocrm", "bitrix24", "max", "getcourse"];

#[derive(Clone)]
pub struct HttpState {
    pub store: Store,
    pub business_id: String,
    pub secret: SecretString,
    pub clock: std::sync::Arc<dyn Clock>,
    /// MAX signs its deliveries with this header secret (`max.webhook_secret`).
    pub max_secret: Option<SecretString>,
    /// 1C's CommerceML exchange, when `[onec] mode = "commerceml"`.
    pub onec: Option<std::sync::Arc<commerceml::Exchange>>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/webhooks/{source}/{secret}", post(webhook))
        .route(
            "/1c/exchange",
            // 1C sends files in pieces of at most `file_limit`, capped by config validation.
            get(commerceml::exchange)
                .post(commerceml::exchange)
                .layer(axum::extract::DefaultBodyLimit::max(commerceml::MAX_PIECE)),
        )
        .with_state(state)
}

async fn health(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    match sqlx::query("SELECT 1").execute(state.store.pool()).await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unreachable"),
    }
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

async fn webhook(
    State(state): State<HttpState>,
    Path((source, secret)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    if !same_secret(&secret, state.secret.expose_secret()) {
        return (StatusCode::NOT_FOUND, "not found");
    }
    let Some(source) = SOURCES.iter().find(|s| **s == source) else {
        return (StatusCode::NOT_FOUND, "unknown source");
    };
    if *source == "max"
        && let Some(expected) = &state.max_secret
    {
        let given = headers
            .get("x-max-bot-api-secret")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same_secret(given, expected.expose_secret()) {
            return (StatusCode::UNAUTHORIZED, "bad secret");
        }
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not UTF-8");
    };
    // Vendors re-send the same delivery on timeouts; the body identifies it.
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    let dedup = format!("{:016x}-{}", hasher.finish(), text.len());
    let kept = inbox::keep_headers(&headers);
    match inbox::receive(
        &state.store,
        &state.business_id,
        source,
        &dedup,
        &kept,
        text,
        state.clock.now(),
    )
    .await
    {
        Ok(Received::New(id)) => {
            tracing::info!(source, inbox = id, "webhook stored");
            (StatusCode::OK, "ok")
        }
        Ok(Received::Duplicate) => (StatusCode::OK, "duplicate"),
        Err(e) => {
            tracing::error!(source, error = %e, "cannot store webhook; the sender will retry");
            (StatusCode::SERVICE_UNAVAILABLE, "try again")
        }
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listen: std::net::SocketAddr,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "HTTP server listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
