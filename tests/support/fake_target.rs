//! A target system over real HTTP that misbehaves on purpose. `POST /objects` stores the JSON
//! body under its `Idempotency-Key` header and answers `{"id": ...}`; `GET /objects?key=K`
//! finds it. It does NOT deduplicate on POST — a second create for a key is stored and
//! counted as a duplicate, so the tests prove that the engine, not the target, prevents them.
//!
//! Faults (a configurable share of all calls): 500, 503 QUERY_LIMIT_EXCEEDED, 429 with
//! Retry-After, a hang past the client's timeout (half of them after storing the object) and
//! closing the connection after storing the object. It is a tiny hand-rolled HTTP/1.1
//! server so it can drop a connection at exactly the wrong moment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub calls: u64,
    pub faults: u64,
    pub posts: u64,
    /// POSTs for a key that already had an object.
    pub duplicates: u64,
    /// Requests for one key that overlapped in time (two workers on one job).
    pub overlapping: u64,
    /// Objects of one entity stored out of `seq` order.
    pub out_of_order: u64,
}

#[derive(Default)]
struct State {
    /// When set, every POST is refused with 422 and this message (a validation error).
    reject: Option<String>,
    /// Every answer is delayed this long, after the object was stored (a slow target).
    delay: Duration,
    objects: HashMap<String, String>,
    last_seq: HashMap<String, i64>,
    in_flight: HashMap<String, u32>,
    counters: Counters,
}

pub struct FakeTarget {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    fault_per_mille: Arc<AtomicU32>,
    hang: Duration,
}

impl FakeTarget {
    pub async fn start(fault_rate: f64, hang: Duration) -> FakeTarget {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake target");
        let addr = listener.local_addr().expect("local addr");
        let target = FakeTarget {
            addr,
            state: Arc::default(),
            fault_per_mille: Arc::new(AtomicU32::new((fault_rate * 1000.0) as u32)),
            hang,
        };
        let (state, faults) = (target.state.clone(), target.fault_per_mille.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (state, faults) = (state.clone(), faults.clone());
                tokio::spawn(serve(socket, state, faults, hang));
            }
        });
        target
    }

    pub fn url(&self) -> String {
        format!("http://{}/objects", self.addr)
    }

    pub fn set_fault_rate(&self, rate: f64) {
        self.fault_per_mille
            .store((rate * 1000.0) as u32, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn set_reject(&self, message: Option<&str>) {
        self.state.lock().unwrap().reject = message.map(str::to_owned);
    }

    pub fn counters(&self) -> Counters {
        self.state.lock().unwrap().counters.clone()
    }

    pub fn object_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.state.lock().unwrap().objects.keys().cloned().collect();
        keys.sort();
        keys
    }

    pub fn hang(&self) -> Duration {
        self.hang
    }
}

/// The request as this target needs it: the shared HTTP reader, plus the idempotency key.
struct Request {
    method: String,
    path: String,
    key: Option<String>,
    body: Vec<u8>,
}

async fn read_request(socket: &mut TcpStream) -> Option<Request> {
    let raw = super::chaos_proxy::read_request(socket).await?;
    Some(Request {
        key: raw.header("idempotency-key").map(str::to_string),
        method: raw.method,
        path: raw.target,
        body: raw.body,
    })
}

async fn respond(socket: &mut TcpStream, status: &str, extra: &str, body: &str) {
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(text.as_bytes()).await;
    let _ = socket.shutdown().await;
}

enum Fault {
    None,
    Status500,
    Status503,
    Status429,
    Hang { store_first: bool },
    CloseAfterStore,
}

async fn serve(
    mut socket: TcpStream,
    state: Arc<Mutex<State>>,
    faults: Arc<AtomicU32>,
    hang: Duration,
) {
    let Some(req) = read_request(&mut socket).await else {
        return;
    };
    let fault = {
        let mut rng = rand::rng();
        if rng.random_range(0..1000) < faults.load(Ordering::SeqCst) {
            match rng.random_range(0..5) {
                0 => Fault::Status500,
                1 => Fault::Status503,
                2 => Fault::Status429,
                3 => Fault::Hang {
                    store_first: rng.random_bool(0.5),
                },
                _ => Fault::CloseAfterStore,
            }
        } else {
            Fault::None
        }
    };
    let key = match (&req.key, req.path.split_once("?key=")) {
        (Some(k), _) => k.clone(),
        (None, Some((_, k))) => k.to_string(),
        _ => String::new(),
    };
    {
        let mut s = state.lock().unwrap();
        s.counters.calls += 1;
        if !matches!(fault, Fault::None) {
            s.counters.faults += 1;
        }
        let n = s.in_flight.entry(key.clone()).or_default();
        *n += 1;
        if *n > 1 {
            s.counters.overlapping += 1;
        }
    }
    handle(&mut socket, &req, &key, fault, &state, hang).await;
    let mut s = state.lock().unwrap();
    if let Some(n) = s.in_flight.get_mut(&key) {
        *n -= 1;
    }
}

async fn handle(
    socket: &mut TcpStream,
    req: &Request,
    key: &str,
    fault: Fault,
    state: &Mutex<State>,
    hang: Duration,
) {
    match fault {
        Fault::Status500 => return respond(socket, "500 Internal Server Error", "", "{}").await,
        Fault::Status503 => {
            let body =
                r#"{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}"#;
            return respond(socket, "503 Service Unavailable", "", body).await;
        }
        Fault::Status429 => {
            return respond(socket, "429 Too Many Requests", "Retry-After: 1\r\n", "{}").await;
        }
        _ => {}
    }
    let reject = state.lock().unwrap().reject.clone();
    if let (Some(message), "POST") = (reject, req.method.as_str()) {
        let body = serde_json::json!({ "error": message }).to_string();
        return respond(socket, "422 Unprocessable Entity", "", &body).await;
    }
    let stores = req.method == "POST"
        && match fault {
            Fault::None | Fault::CloseAfterStore => true,
            Fault::Hang { store_first } => store_first,
            _ => false,
        };
    let found = if stores {
        Some(store(state, key, &req.body))
    } else {
        lookup(state, key)
    };
    let delay = state.lock().unwrap().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match fault {
        Fault::Hang { .. } => {
            tokio::time::sleep(hang).await;
            return;
        }
        Fault::CloseAfterStore => return, // dropping the socket closes it without an answer
        _ => {}
    }
    match (req.method.as_str(), found) {
        ("POST", Some(id)) => {
            respond(socket, "201 Created", "", &format!("{{\"id\":\"{id}\"}}")).await
        }
        ("GET", Some(id)) => respond(socket, "200 OK", "", &format!("{{\"id\":\"{id}\"}}")).await,
        ("GET", None) => respond(socket, "404 Not Found", "", r#"{"error":"not found"}"#).await,
        _ => respond(socket, "400 Bad Request", "", r#"{"error":"bad request"}"#).await,
    }
}

fn lookup(state: &Mutex<State>, key: &str) -> Option<String> {
    state.lock().unwrap().objects.get(key).cloned()
}

fn store(state: &Mutex<State>, key: &str, body: &[u8]) -> String {
    let mut s = state.lock().unwrap();
    s.counters.posts += 1;
    let id = format!("obj-{}", s.counters.posts);
    if s.objects.insert(key.to_string(), id.clone()).is_some() {
        s.counters.duplicates += 1;
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let (Some(entity), Some(seq)) = (v["entity"].as_str(), v["seq"].as_i64())
    {
        let last = s.last_seq.insert(entity.to_string(), seq);
        // A re-store of the same seq is a duplicate (counted above), not reordering.
        if last.map_or(seq != 0, |l| seq != l + 1 && seq != l) {
            s.counters.out_of_order += 1;
        }
    }
    id
}
