//! The accept loop behind `zapis run`'s HTTP face. `axum::serve` accepts without limit and
//! has no header-read timeout, so a few thousand idle or slow connections exhaust the process's
//! descriptors and nobody else gets in. Here every connection takes a slot of a fixed cap set
//! below the descriptor limit, headers must arrive within `header_read_timeout`, each piece of a
//! body within `body_timeout`, and a whole request is answered within `request_timeout`.
//!
//! A full cap must not lock out a vendor or `/health` for a whole header-read timeout: slowloris
//! clients hold their slots by never finishing their headers. So a newcomer over the cap takes
//! the slot of the connection that has waited longest for a request (still trickling headers,
//! or idle between keep-alive requests), which is closed; only when every slot is serving a
//! request is the newcomer answered 503 and closed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
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
    /// Connections held at once; one more takes the slot of the connection waiting longest for
    /// a request, or is refused at once when every slot is serving one.
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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let flusher = forms
        .clone()
        .map(|f| tokio::spawn(f.run_housekeeping(stop_rx)));
    let served = serve_router(listener, super::router(state), limits, shutdown).await;
    let _ = stop_tx.send(true);
    if let Some(task) = flusher {
        let _ = task.await;
    }
    served
}

/// Serves `app` on `listener` until `shutdown` resolves, within `limits`.
pub async fn serve_router(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ));
    let slots = Arc::new(Slots::new(limits.max_connections.max(1)));
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
        let Some(slot) = Slots::admit(&slots) else {
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let conn = slot.conn.clone();
        let requests = slots.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let request = request.map(axum::body::Body::new);
            requests.serving(&conn);
            let answer = app.clone().oneshot(request);
            let served = Served {
                slots: requests.clone(),
                conn: conn.clone(),
            };
            async move {
                let answer = answer.await?;
                Ok::<_, std::convert::Infallible>(answer.map(|inner| Answer {
                    inner,
                    _served: served,
                }))
            }
        });
        let connection = http1.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                },
                () = slot.conn.evict.notified() => tracing::debug!(
                    %peer,
                    "closed the connection waiting longest for a request: http.max_connections reached"
                ),
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
    Ok(())
}

/// The connection slots: how many are held, and which holders wait for a request, longest first.
struct Slots {
    cap: usize,
    state: Mutex<SlotState>,
}

struct SlotState {
    held: usize,
    /// Orders waiting connections by when they began to wait.
    next_turn: u64,
    waiting: BTreeMap<u64, Arc<Conn>>,
}

/// One admitted connection, as the slots see it.
struct Conn {
    /// Its key in `waiting`, or `BUSY` while a request is being served. Changed under the lock.
    turn: AtomicU64,
    /// Its slot went to a newcomer; set under the lock, before `evict` is notified.
    evicted: AtomicBool,
    evict: Notify,
}

const BUSY: u64 = u64::MAX;

impl Slots {
    fn new(cap: usize) -> Slots {
        Slots {
            cap,
            state: Mutex::new(SlotState {
                held: 0,
                next_turn: 0,
                waiting: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // The state stays consistent between statements, so a panic elsewhere cannot leave it
        // half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection: a free one, or the one of the connection waiting longest
    /// for a request (told to close). `None` when every slot is serving a request.
    fn admit(slots: &Arc<Slots>) -> Option<Slot> {
        let mut state = slots.lock();
        if state.held < slots.cap {
            state.held += 1;
        } else {
            let (_, victim) = state.waiting.pop_first()?;
            victim.turn.store(BUSY, Ordering::Relaxed);
            victim.evicted.store(true, Ordering::Relaxed);
            // A stored permit: the victim's task may not be polling `notified()` yet.
            victim.evict.notify_one();
        }
        let turn = state.next_turn;
        state.next_turn += 1;
        let conn = Arc::new(Conn {
            turn: AtomicU64::new(turn),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        });
        state.waiting.insert(turn, conn.clone());
        Some(Slot {
            slots: slots.clone(),
            conn,
        })
    }

    /// The connection's request headers are in: it is no longer a candidate to close.
    fn serving(&self, conn: &Conn) {
        let mut state = self.lock();
        let turn = conn.turn.swap(BUSY, Ordering::Relaxed);
        if turn != BUSY {
            state.waiting.remove(&turn);
        }
    }

    /// The connection answered and now waits for its next request, the newest in line.
    fn waiting(&self, conn: &Arc<Conn>) {
        let mut state = self.lock();
        if conn.evicted.load(Ordering::Relaxed) || conn.turn.load(Ordering::Relaxed) != BUSY {
            return;
        }
        let turn = state.next_turn;
        state.next_turn += 1;
        conn.turn.store(turn, Ordering::Relaxed);
        state.waiting.insert(turn, conn.clone());
    }
}

/// Puts a connection back in line for eviction once its answer is sent: hyper drops the body
/// after its last byte is written, so a large answer read slowly is not cut off half-way.
struct Served {
    slots: Arc<Slots>,
    conn: Arc<Conn>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.slots.waiting(&self.conn);
    }
}

/// A response body carrying its connection's [`Served`] until it is sent.
struct Answer {
    inner: axum::body::Body,
    _served: Served,
}

impl hyper::body::Body for Answer {
    type Data = hyper::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A held slot; freed when the connection's task ends, unless a newcomer already took it.
struct Slot {
    slots: Arc<Slots>,
    conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        let turn = self.conn.turn.swap(BUSY, Ordering::Relaxed);
        if turn != BUSY {
            state.waiting.remove(&turn);
        }
        if !self.conn.evicted.load(Ordering::Relaxed) {
            state.held -= 1;
        }
    }
}

/// Every slot serving a request: a short 503 if the socket takes it without waiting, then close.
fn refuse(stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
        retry-after: 1\r\ncontent-length: 0\r\n\r\n";
    let _ = stream.try_write(BUSY);
    tracing::debug!("connection refused: every slot of http.max_connections is serving a request");
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

    #[test]
    fn a_newcomer_over_the_cap_takes_the_slot_waited_on_longest() {
        let slots = Arc::new(Slots::new(3));
        let a = Slots::admit(&slots).expect("a free slot");
        let b = Slots::admit(&slots).expect("a free slot");
        let c = Slots::admit(&slots).expect("a free slot");
        // `a` is serving a request, `b` waited longest among the rest.
        slots.serving(&a.conn);
        let d = Slots::admit(&slots).expect("b's slot");
        assert!(b.conn.evicted.load(Ordering::Relaxed));
        assert!(!c.conn.evicted.load(Ordering::Relaxed));
        // `a` answered: it now waits behind `c` and `d`.
        slots.waiting(&a.conn);
        let e = Slots::admit(&slots).expect("c's slot");
        assert!(c.conn.evicted.load(Ordering::Relaxed));
        drop((b, c));
        assert_eq!(
            slots.lock().held,
            3,
            "evicted connections do not free a slot twice"
        );
        slots.serving(&a.conn);
        slots.serving(&d.conn);
        slots.serving(&e.conn);
        assert!(
            Slots::admit(&slots).is_none(),
            "every slot is serving a request"
        );
        drop(a);
        let f = Slots::admit(&slots).expect("a closed connection frees its slot");
        assert_eq!(slots.lock().held, 3);
        // `d` has answered, but its answer is still being sent: not yet a candidate.
        slots.serving(&f.conn);
        let sending = Served {
            slots: slots.clone(),
            conn: d.conn.clone(),
        };
        assert!(
            Slots::admit(&slots).is_none(),
            "an answer being sent holds its slot"
        );
        drop(sending);
        let _g = Slots::admit(&slots).expect("d's slot once its answer is sent");
        assert!(d.conn.evicted.load(Ordering::Relaxed));
        assert!(!e.conn.evicted.load(Ordering::Relaxed));
    }
}
