//! The HTTP face of `zapis run`: vendors' webhooks into the inbox, health checks, metrics and
//! the console.
//! A webhook is acknowledged only after it is stored; the sync engine processes it.

pub mod dedup;
pub mod forms;
pub mod ops;
pub mod server;

use crate::domain::BusinessId;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};

use crate::clock::Clock;
use crate::secrets::same_secret;
use crate::store::Store;
use crate::sync::inbox::{self, Received};

/// Sources whose webhooks are accepted.
pub const SOURCES: &[&str] = &[
    "yclients",
    "amocrm",
    "bitrix24",
    "max",
    "getcourse",
    "telegram",
];

#[derive(Clone)]
pub struct HttpState {
    pub store: Store,
    /// The business served; `None` in a deployment's own state, which serves no business's
    /// webhooks (those reach [`Tenants`]) and so reads nobody's rows.
    pub business_id: Option<BusinessId>,
    pub secret: SecretString,
    /// The members of [`SOURCES`] this deployment is configured for; a webhook for any other
    /// is answered 404 and stored nowhere.
    pub sources: Vec<&'static str>,
    pub clock: std::sync::Arc<dyn Clock>,
    /// MAX signs its deliveries with this header secret (`max.webhook_secret`).
    pub max_secret: Option<SecretString>,
    /// Telegram sends this in every webhook delivery (`telegram.webhook_secret`).
    pub telegram_secret: Option<SecretString>,
    /// Bitrix24 puts this in every outbound event (`crm.bitrix24.application_token`).
    pub bitrix24_token: Option<SecretString>,
    /// Landing-page applications (`POST /forms/{form}`), when `[school]` is configured.
    pub forms: Option<forms::FormsState>,
    /// 1C's CommerceML exchange, when `[onec] mode = "commerceml"`.
    pub onec: Option<std::sync::Arc<crate::accounting::exchange::Exchange>>,
    /// What `/health/ready` and `/metrics` report on (`zapis run` sets it); without it
    /// readiness is the store's alone and `/metrics` is not served.
    pub ops: Option<std::sync::Arc<ops::Ops>>,
    /// The browser console at `/console` (`zapis run` sets it unless `http.console = false`).
    pub console: Option<std::sync::Arc<crate::console::ConsoleState>>,
}

pub fn router(state: HttpState) -> Router {
    let console = state.console.clone();
    let router = ops_routes(state.clone()).merge(business_routes(state));
    match console {
        Some(console) => router.merge(crate::console::router(console)),
        None => router,
    }
}

/// What a supervisor asks of the process, whichever businesses it serves.
fn ops_routes(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(ops::live))
        .route("/health/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .with_state(state)
}

/// One business's routes: its vendors' webhooks, its landing forms, its 1C exchange.
fn business_routes(state: HttpState) -> Router {
    let forms = state.forms.clone();
    // GetCourse's "call URL" step may be set to GET; the webhook handler refuses GET for
    // every other source.
    let mut router = Router::new().route(
        "/webhooks/{source}/{secret}",
        post(webhook).get(webhook_get),
    );
    // 1C's exchange exists only when 1C is set up to call us; its handler checks the session
    // before it reads a body and streams what it reads to disk under its own caps.
    if let Some(onec) = &state.onec {
        onec.start_sweeper();
        router = router.route("/1c/exchange", get(onec_exchange).post(onec_exchange));
    }
    let mut router = router.with_state(state);
    if let Some(forms) = forms {
        router = router.merge(forms::router(forms));
    }
    router
}

/// The businesses of a deployment of several, by id, each with the routes one business has
/// (`business_routes`) and its readiness, reached with its id after the first segment:
/// `/webhooks/<id>/…`, `/forms/<id>/…`, `/1c/<id>/exchange`, `/health/<id>/ready`. Businesses
/// come and go while the server runs.
#[derive(Clone, Default)]
pub struct Tenants {
    routes: std::sync::Arc<std::sync::RwLock<std::collections::HashMap<BusinessId, Router>>>,
}

impl Tenants {
    /// Serves `state`'s business under its id, in place of what served it before.
    pub fn set(&self, id: BusinessId, state: HttpState) {
        // Its readiness: its deliveries and bots, as `/health/ready` tells of one business.
        let routes = Router::new()
            .route("/health/ready", get(ops::ready))
            .with_state(state.clone())
            .merge(business_routes(state));
        self.routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, routes);
    }

    pub fn remove(&self, business: &str) {
        self.routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(business);
    }

    fn get(&self, business: &str) -> Option<Router> {
        self.routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(business)
            .cloned()
    }
}

/// A deployment of several businesses: the process's own routes (`state` carries the store,
/// the clock, ops and the console) and each business's under its id. The single business's
/// paths (`/webhooks/<source>/…`) are not served: a URL always names its business.
pub fn deployment_router(state: HttpState, tenants: Tenants) -> Router {
    use axum::routing::any;
    let console = state.console.clone();
    let to_business = any(to_business).with_state(tenants);
    let router = ops_routes(state)
        .route(
            "/webhooks/{business}/{source}/{secret}",
            to_business.clone(),
        )
        .route("/forms/{business}/{form}", to_business.clone())
        .route("/1c/{business}/exchange", to_business.clone())
        .route("/health/{business}/ready", to_business);
    match console {
        Some(console) => router.merge(crate::console::router(console)),
        None => router,
    }
}

/// Hands a request to its business's routes with the id taken out of the path; a business
/// this deployment does not serve is 404, as an unknown path is.
async fn to_business(State(tenants): State<Tenants>, mut request: Request) -> Response {
    use axum::response::IntoResponse;
    use tower::ServiceExt;
    let path = request.uri().path();
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let (Some(kind), Some(business), Some(rest)) = (parts.next(), parts.next(), parts.next())
    else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let Some(routes) = tenants.get(business) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let inner = match request.uri().query() {
        Some(q) => format!("/{kind}/{rest}?{q}"),
        None => format!("/{kind}/{rest}"),
    };
    let Ok(uri) = inner.parse::<axum::http::Uri>() else {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    };
    // A fresh request: the outer route's path parameters, kept in the extensions, would be
    // added to the inner route's. The peer's address is all the inner routes read besides.
    let peer = request
        .extensions_mut()
        .remove::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
    let (parts, body) = request.into_parts();
    let mut request = Request::new(body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers;
    if let Some(peer) = peer {
        request.extensions_mut().insert(peer);
    }
    match routes.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

async fn health(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    match state.store.ping().await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unreachable"),
    }
}

/// `/1c/exchange`: the exchange lives with the rest of 1C in `accounting`; the route hands it
/// this deployment's state.
async fn onec_exchange(
    State(state): State<HttpState>,
    Query(q): Query<crate::accounting::exchange::ExchangeQuery>,
    request: Request,
) -> Response {
    crate::accounting::exchange::exchange(state.onec.clone(), q, request).await
}

async fn webhook_get(
    state: State<HttpState>,
    Path((source, secret)): Path<(String, String)>,
    query: RawQuery,
    headers: HeaderMap,
) -> (StatusCode, &'static str) {
    if source != "getcourse" {
        return (StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    webhook(state, Path((source, secret)), query, headers, Bytes::new()).await
}

async fn webhook(
    state: State<HttpState>,
    Path((source, secret)): Path<(String, String)>,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    // A label only for the sources we know: the path is anyone's to make up.
    let label = SOURCES
        .iter()
        .copied()
        .find(|s| *s == source)
        .unwrap_or("other");
    let answer = receive_webhook(state, Path((source, secret)), query, headers, body).await;
    let result = match answer {
        (StatusCode::OK, "duplicate") => "duplicate",
        (StatusCode::OK, _) => "stored",
        (StatusCode::SERVICE_UNAVAILABLE, _) => "failed",
        _ => "refused",
    };
    crate::metrics::webhook(label, result);
    answer
}

async fn receive_webhook(
    State(state): State<HttpState>,
    Path((source, secret)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    if !same_secret(&secret, state.secret.expose_secret()) {
        return (StatusCode::NOT_FOUND, "not found");
    }
    let Some(business_id) = &state.business_id else {
        return (StatusCode::NOT_FOUND, "not found");
    };
    let Some(source) = state.sources.iter().copied().find(|s| *s == source) else {
        return (StatusCode::NOT_FOUND, "unknown source");
    };
    if source == "max"
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
    if source == "telegram" {
        let Some(expected) = &state.telegram_secret else {
            return (StatusCode::FORBIDDEN, "webhooks are not enabled");
        };
        let given = headers
            .get(crate::messenger::telegram::webhook::SECRET_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same_secret(given, expected.expose_secret()) {
            return (StatusCode::UNAUTHORIZED, "bad secret");
        }
    }
    if source == "bitrix24" {
        // Bitrix24 events are unsigned: the application token inside is the only proof of
        // origin, so a forged event is refused before it reaches the inbox.
        let Some(token) = &state.bitrix24_token else {
            tracing::warn!("Bitrix24 event refused: crm.bitrix24.application_token is not set");
            return (StatusCode::FORBIDDEN, "events are not enabled");
        };
        match crate::crm::bitrix24::parse_event(&body, token) {
            Ok(_) => {}
            Err(
                crate::crm::bitrix24::EventError::WrongToken
                | crate::crm::bitrix24::EventError::MissingToken,
            ) => return (StatusCode::UNAUTHORIZED, "bad application token"),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable Bitrix24 event refused");
                return (StatusCode::BAD_REQUEST, "unreadable event");
            }
        }
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not UTF-8");
    };
    let stripped;
    let text = match (source, &state.bitrix24_token) {
        // The token proves origin only while it is secret: the stored event keeps a digest.
        ("bitrix24", Some(token)) => {
            stripped = crate::crm::bitrix24::strip_token(text, token);
            stripped.as_str()
        }
        _ => text,
    };
    // Vendors re-send the same delivery on timeouts: its change stamp identifies it.
    let dedup = dedup::delivery_key(source, text, query.as_deref());
    let mut kept = inbox::keep_headers(&headers);
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        kept.insert(inbox::QUERY_HEADER.to_string(), query);
    }
    match inbox::receive(
        &state.store,
        business_id,
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

/// Asked of `listen(2)`; Linux lowers it to `net.core.somaxconn` (4096 by default since 5.4).
const LISTEN_BACKLOG: u32 = 65_535;

/// Serves until `shutdown` resolves, within `limits`.
pub async fn serve(
    listen: std::net::SocketAddr,
    state: HttpState,
    limits: server::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener(listen)?;
    tracing::info!(%listen, max_connections = limits.max_connections, "HTTP server listening");
    server::serve_with(listener, state, limits, shutdown).await
}

/// A listening socket on `listen`, its backlog as long as the kernel allows.
fn listener(listen: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    // A wave of reconnecting clients must not overflow the queue of connections waiting to be
    // accepted: a dropped SYN costs the next client (a vendor, `/health`) a one-second
    // retransmit. Queued connections cost the kernel memory, not our descriptors, so the queue
    // is as long as the kernel allows (`net.core.somaxconn`), whatever the connection cap.
    let backlog = LISTEN_BACKLOG;
    socket.listen(backlog)
}

/// Serves a deployment of several businesses (`deployment_router`) until `shutdown` resolves.
pub async fn serve_deployment(
    listen: std::net::SocketAddr,
    state: HttpState,
    tenants: Tenants,
    limits: server::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener(listen)?;
    tracing::info!(%listen, max_connections = limits.max_connections, "HTTP server listening");
    server::serve_router(
        listener,
        deployment_router(state, tenants),
        limits,
        shutdown,
    )
    .await
}

/// Serves on an already bound listener with the default limits.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve_with(listener, state, server::Limits::default(), shutdown).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_dedup_key_is_a_stable_digest() {
        use super::dedup::body_digest;
        // Pinned: the same delivery must map to the same key in every build.
        assert_eq!(body_digest("{}", None), "body:68e9e86b6926cc2b37df96b5-2");
        assert_eq!(
            body_digest("event=ONCRMDEALUPDATE", Some("a=1")),
            "body:ce2aa70fd080840659bfd30f-21"
        );
        assert_ne!(body_digest("a", Some("b")), body_digest("ab", None));
    }
}
