//! The accept loop behind `zapis run`'s HTTP face. `axum::serve` accepts without limit and
//! has no header-read timeout, so a few thousand idle or slow connections exhaust the process's
//! descriptors and nobody else gets in. Here every connection takes a slot of a fixed cap set
//! below the descriptor limit (one over the cap is answered 503 and closed at once), headers
//! must arrive within `header_read_timeout`, each piece of a body within `body_timeout`, and a
//! whole request is answered within `request_timeout`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use super::HttpState;

/// Descriptors kept free for everything else the process opens: the store's pool, vendor
/// clients, the messenger bots, log files.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// How long open connections may finish their request once a shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Connection limits, from `[http]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; one more is refused at once.
    pub max_connections: usize,
    /// A request's line and headers must arrive within this (also an idle keep-alive's life).
    pub header_read_timeout: Duration,
    /// The longest pause between two pieces of a request body.
    pub body_timeout: Duration,
    /// A request must be answered within this, body reading included.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Raises the soft open-files limit to the hard one and returns the soft limit in force, or
/// `None` where the platform has no such limit.
pub fn raise_descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => Some(limit),
            Err(e) => {
                tracing::warn!(error = %e, "cannot raise the open-files limit");
                rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .ok()
                    .map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

impl Limits {
    /// The cap actually used: the configured one, lowered to fit under the descriptor limit.
    pub fn fitted_to(mut self, descriptor_limit: Option<u64>) -> Limits {
        if let Some(limit) = descriptor_limit {
            let room = limit.saturating_sub(RESERVED_DESCRIPTORS).max(16);
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            if self.max_connections > room {
                tracing::warn!(
                    configured = self.max_connections,
                    used = room,
                    descriptor_limit = limit,
                    "http.max_connections lowered to fit under the open-files limit"
                );
                self.max_connections = room;
            }
        }
        self
    }
}

/// Serves `state` on `listener` until `shutdown` resolves, within `limits`.
pub async fn serve_with(
    listener: TcpListener,
    state: HttpState,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let forms = state.forms.clone();
    let app = super::router(state)
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let flusher = forms
        .clone()
        .map(|f| tokio::spawn(f.run_housekeeping(stop_rx)));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a moment
                    // instead of spinning, and keep serving the connections we have.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let request = request.map(axum::body::Body::new);
            app.clone().oneshot(request)
        });
        let connection = http1.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after the shutdown grace period");
    }
    let _ = stop_tx.send(true);
    if let Some(task) = flusher {
        let _ = task.await;
    }
    Ok(())
}

/// One over the cap: a short 503 if the socket takes it without waiting, then close.
fn refuse(stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
        retry-after: 1\r\ncontent-length: 0\r\n\r\n";
    let _ = stream.try_write(BUSY);
    tracing::debug!("connection refused: http.max_connections reached");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_under_the_descriptor_limit() {
        let limits = Limits::default();
        assert_eq!(limits.fitted_to(Some(1024)).max_connections, 768);
        assert_eq!(limits.fitted_to(Some(1_000_000)).max_connections, 4096);
        assert_eq!(limits.fitted_to(None).max_connections, 4096);
    }
}
