//! A misbehaving network in front of any fake vendor: an HTTP/1.1 proxy that answers a share
//! of calls itself with 500, 503 QUERY_LIMIT_EXCEEDED or 429 + Retry-After (the call never
//! reaches the vendor), hangs past the client's timeout (half of the time after the vendor
//! already acted), or closes the connection after the vendor acted and before the answer.
//! The last two leave the client not knowing whether its write happened — what the sync
//! engine's search-before-create must survive. It also counts what the client sent per
//! second, faults included, since vendors count every arrival against the rate limit.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default, Clone)]
pub struct ProxyCounters {
    pub calls: u64,
    pub faults: u64,
    /// Calls that reached the vendor and whose answer the client never got.
    pub unknown_outcomes: u64,
    /// The most calls the client sent within any one second.
    pub max_per_second: usize,
}

#[derive(Default)]
struct State {
    arrivals: VecDeque<Instant>,
    counters: ProxyCounters,
}

pub struct ChaosProxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    fault_per_mille: Arc<AtomicU32>,
}

enum Fault {
    None,
    Status500,
    Status503,
    Status429,
    Hang { forward_first: bool },
    CloseAfterForward,
}

impl ChaosProxy {
    /// Proxies to `upstream` (scheme, host and port; paths pass through unchanged).
    pub async fn start(upstream: url::Url, fault_rate: f64, hang: Duration) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("local addr");
        let proxy = ChaosProxy {
            addr,
            state: Arc::default(),
            fault_per_mille: Arc::new(AtomicU32::new((fault_rate * 1000.0) as u32)),
        };
        let (state, faults) = (proxy.state.clone(), proxy.fault_per_mille.clone());
        let client = reqwest::Client::new();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (state, faults, client, upstream) = (
                    state.clone(),
                    faults.clone(),
                    client.clone(),
                    upstream.clone(),
                );
                tokio::spawn(serve(socket, state, faults, client, upstream, hang));
            }
        });
        proxy
    }

    /// `http://127.0.0.1:PORT` with `path` appended, for a client's base URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_fault_rate(&self, rate: f64) {
        self.fault_per_mille
            .store((rate * 1000.0) as u32, Ordering::SeqCst);
    }

    pub fn counters(&self) -> ProxyCounters {
        self.state.lock().unwrap().counters.clone()
    }
}

/// One HTTP/1.1 request as it came off the socket.
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request (head and `Content-Length` body); `None` when the peer went away.
pub async fn read_request(socket: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let mut headers = Vec::new();
    let mut length = 0;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim().to_string(), value.trim().to_string());
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok()?;
        }
        headers.push((name, value));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

async fn respond(socket: &mut TcpStream, status: u16, headers: &[(String, String)], body: &[u8]) {
    let mut text = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    let _ = socket.write_all(text.as_bytes()).await;
    let _ = socket.write_all(body).await;
    let _ = socket.shutdown().await;
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn forward(client: &reqwest::Client, upstream: &url::Url, req: &Request) -> Option<Answer> {
    let url = upstream.join(&req.target).ok()?;
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).ok()?;
    let mut builder = client.request(method, url).body(req.body.clone());
    for (k, v) in &req.headers {
        let lower = k.to_ascii_lowercase();
        if !matches!(lower.as_str(), "host" | "content-length" | "connection") {
            builder = builder.header(k.as_str(), v.as_str());
        }
    }
    let answer = builder.send().await.ok()?;
    let status = answer.status().as_u16();
    let headers = answer
        .headers()
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "content-type" | "retry-after"))
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let body = answer.bytes().await.ok()?.to_vec();
    Some(Answer {
        status,
        headers,
        body,
    })
}

async fn serve(
    mut socket: TcpStream,
    state: Arc<Mutex<State>>,
    faults: Arc<AtomicU32>,
    client: reqwest::Client,
    upstream: url::Url,
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
                    forward_first: rng.random_bool(0.5),
                },
                _ => Fault::CloseAfterForward,
            }
        } else {
            Fault::None
        }
    };
    {
        let mut s = state.lock().unwrap();
        let now = Instant::now();
        s.arrivals.push_back(now);
        while s
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            s.arrivals.pop_front();
        }
        s.counters.max_per_second = s.counters.max_per_second.max(s.arrivals.len());
        s.counters.calls += 1;
        if !matches!(fault, Fault::None) {
            s.counters.faults += 1;
        }
        if matches!(
            fault,
            Fault::CloseAfterForward
                | Fault::Hang {
                    forward_first: true
                }
        ) {
            s.counters.unknown_outcomes += 1;
        }
    }
    let json = vec![("Content-Type".to_string(), "application/json".to_string())];
    match fault {
        Fault::Status500 => respond(&mut socket, 500, &json, b"{}").await,
        Fault::Status503 => {
            let body =
                br#"{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}"#;
            respond(&mut socket, 503, &json, body).await
        }
        Fault::Status429 => {
            let mut headers = json.clone();
            headers.push(("Retry-After".into(), "1".into()));
            respond(&mut socket, 429, &headers, b"{}").await
        }
        Fault::Hang { forward_first } => {
            if forward_first {
                let _ = forward(&client, &upstream, &req).await;
            }
            tokio::time::sleep(hang).await;
        }
        // Dropping the socket closes it without an answer.
        Fault::CloseAfterForward => {
            let _ = forward(&client, &upstream, &req).await;
        }
        Fault::None => match forward(&client, &upstream, &req).await {
            Some(a) => respond(&mut socket, a.status, &a.headers, &a.body).await,
            None => respond(&mut socket, 502, &json, b"{}").await,
        },
    }
}
