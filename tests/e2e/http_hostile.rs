//! The public HTTP face tried as a hostile client and as a careless operator would: the real
//! `zapis run` binary under a 1,024-descriptor limit with idle, slow and excess connections,
//! `zapis check` with placeholder secrets and broken configs, and the real router storing a
//! Bitrix24 event.

use crate::support;
use support::e2e::free_port;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{Value, json};
use support::app::Settings;
use support::fake_telegram::FakeTelegram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zapis::store::test_support::raw_pool;

const SECRET: &str = "hostile-hook-secret-0123456789";

/// `zapis run` started with a soft open-files limit of 1,024, as on most Linux hosts.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `http` adds keys to `[http]`.
async fn start_server(tg: &FakeTelegram, http: &[(&str, Value)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = format!("sqlite://{}", dir.path().join("zapis.db").display());
    // The bot at Telegram's own pace: nothing here books.
    let settings = Settings::single(&db, "Салон")
        .telegram(tg)
        .remove("telegram.limits")
        .http(port, SECRET);
    let config = http
        .iter()
        .fold(settings, |s, (key, value)| {
            s.set(&format!("http.{key}"), value.clone())
        })
        .write_in(dir.path());
    let child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 1024 && exec \"$0\" run --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_zapis"))
        .arg(&config)
        .env("RUST_LOG", "warn")
        .env_remove("ZAPIS_TELEGRAM__TOKEN")
        .stdin(Stdio::null())
        .spawn()
        .expect("zapis run starts");
    let server = Server {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if health(port, Duration::from_secs(1)).await == Some(200) {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("zapis run did not answer /health within 30 s");
}

/// The status of `GET /health` on a fresh connection, or `None` when no answer came in time.
async fn health(port: u16, within: Duration) -> Option<u16> {
    let attempt = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(b"GET /health HTTP/1.1\r\nhost: zapis\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.ok()?;
        status_of(&answer)
    };
    tokio::time::timeout(within, attempt).await.ok().flatten()
}

fn status_of(answer: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(answer);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Reads until the server answers or closes; `None` if it does neither within `within`.
async fn until_answer_or_close(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        return;
                    }
                }
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().map(|()| got)
}

async fn connect_many(port: u16, n: usize) -> Vec<TcpStream> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        tasks.spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(10),
                TcpStream::connect(("127.0.0.1", port)),
            )
            .await
        });
    }
    let mut held = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(Ok(Ok(s))) = r {
            held.push(s);
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleven_hundred_idle_connections_under_a_1024_descriptor_limit_leave_health_answering() {
    let tg = FakeTelegram::start().await;
    let server = start_server(&tg, &[("header_read_timeout", json!("3s"))]).await;
    let mut idle = connect_many(server.port, 1100).await;
    assert_eq!(idle.len(), 1100, "every idle connection was let in");
    // Our own process holds 1,100 sockets too; the server raised its limit and accepts more.
    assert_eq!(
        health(server.port, Duration::from_secs(5)).await,
        Some(200),
        "/health answers while 1,100 idle connections are held"
    );
    // Idle connections do not live for ever: they are closed after the header-read timeout.
    let started = Instant::now();
    for s in idle.iter_mut().take(20) {
        let got = until_answer_or_close(s, Duration::from_secs(10)).await;
        assert!(got.is_some(), "an idle connection was held past 10 s");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_slow_bodies_and_slow_requests_are_cut_off() {
    let tg = FakeTelegram::start().await;
    let server = start_server(
        &tg,
        &[
            ("header_read_timeout", json!("2s")),
            ("body_timeout", json!("2s")),
            ("request_timeout", json!("3s")),
        ],
    )
    .await;
    let port = server.port;
    // Slowloris: a request line, then a header byte every second, never the blank line.
    let slow_headers = tokio::spawn(async move {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nhost: z\r\nx-slow: ")
            .await
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(8) {
            if s.write_all(b"a").await.is_err() {
                return Some(started.elapsed());
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                Ok(Ok(_)) | Ok(Err(_)) => return Some(started.elapsed()),
                Err(_) => {}
            }
        }
        None
    });
    // A body that stops after ten bytes of a thousand.
    let stalled_body = tokio::spawn(async move {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(
            format!(
                "POST /webhooks/yclients/{SECRET} HTTP/1.1\r\nhost: z\r\ncontent-length: 1000\r\n\r\n0123456789"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        until_answer_or_close(&mut s, Duration::from_secs(8)).await
    });
    // A body trickled a byte every half second: no pause is long, the whole is.
    let trickled = tokio::spawn(async move {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(
            format!(
                "POST /webhooks/yclients/{SECRET} HTTP/1.1\r\nhost: z\r\ncontent-length: 100\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        while started.elapsed() < Duration::from_secs(8) {
            if s.write_all(b"x").await.is_err() {
                break;
            }
            let mut buf = [0u8; 512];
            match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    got.extend_from_slice(&buf[..n]);
                    break;
                }
                Err(_) => {}
            }
        }
        (started.elapsed(), got)
    });
    let cut = slow_headers
        .await
        .unwrap()
        .expect("slow headers were cut off");
    assert!(
        cut < Duration::from_secs(5),
        "slow headers held for {cut:?}"
    );
    assert!(
        stalled_body.await.unwrap().is_some(),
        "a stalled body was held past 8 s"
    );
    let (took, answer) = trickled.await.unwrap();
    assert!(
        took < Duration::from_secs(6),
        "a trickled body held for {took:?}"
    );
    assert_eq!(
        status_of(&answer),
        Some(408),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(health(port, Duration::from_secs(5)).await, Some(200));
}

/// Opens `n` slowloris connections: a request line and the start of a header, never the end.
async fn slowloris(port: u16, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"POST /webhooks/yclients/x HTTP/1.1\r\nhost: z\r\nx-slow: a")
            .await
            .unwrap();
        held.push(s);
    }
    held
}

/// Whether the server closed (or answered) `s`; a connection still held shows nothing.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cap_of_slow_clients_gives_way_to_a_health_check() {
    let tg = FakeTelegram::start().await;
    // The header-read timeout is far longer than the test: only eviction can free a slot.
    let server = start_server(
        &tg,
        &[
            ("max_connections", json!(20)),
            ("header_read_timeout", json!("60s")),
        ],
    )
    .await;
    let mut slow = slowloris(server.port, 20).await;
    // The server has taken all twenty before the newcomer knocks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        health(server.port, Duration::from_secs(5)).await,
        Some(200),
        "/health answered while slow clients fill every slot"
    );
    assert!(
        closed_by_server(&mut slow[0]).await,
        "the slow client waiting longest gave up its slot"
    );
    let mut still_held = 0;
    for s in slow.iter_mut().skip(1) {
        if !closed_by_server(s).await {
            still_held += 1;
        }
    }
    assert_eq!(
        still_held, 19,
        "one newcomer costs one slow client its slot"
    );
    // The slot the check took is free again once it is answered.
    for _ in 0..30 {
        assert_eq!(health(server.port, Duration::from_secs(5)).await, Some(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_a_cap_of_requests_in_progress_is_refused_at_once() {
    let tg = FakeTelegram::start().await;
    let server = start_server(
        &tg,
        &[
            ("max_connections", json!(20)),
            ("header_read_timeout", json!("3s")),
            ("body_timeout", json!("3s")),
        ],
    )
    .await;
    // Twenty requests whose headers are in and whose bodies stall: each slot serves a request.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        s.write_all(
            format!(
                "POST /webhooks/yclients/{SECRET} HTTP/1.1\r\nhost: z\r\ncontent-length: 1000\r\n\r\n0123456789"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let answer = until_answer_or_close(&mut extra, Duration::from_secs(2))
        .await
        .expect("the 21st connection is answered or closed at once");
    if !answer.is_empty() {
        assert_eq!(
            status_of(&answer),
            Some(503),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    // Once the stalled bodies time out, the server takes new connections again.
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if health(server.port, Duration::from_secs(1)).await == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `zapis check` on a config text: (success, stdout + stderr).
fn check(dir: &Path, text: &str) -> (bool, String) {
    let path: PathBuf = dir.join("zapis.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["check", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .env_remove("ZAPIS_TELEGRAM__TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("zapis check runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn base(dir: &Path) -> String {
    format!(
        "[store]\nurl = \"sqlite://{}\"\n[business]\nname = \"Салон\"\ntimezone = \"Europe/Moscow\"\n",
        dir.join("z.db").display()
    )
}

#[test]
fn placeholder_and_empty_secrets_guarding_public_routes_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[http]\nlisten = \"127.0.0.1:8080\"\nwebhook_secret = \"at-least-16-chars-of-A-Za-z0-9-_\"\n",
            "http.webhook_secret",
        ),
        (
            "[max]\ntoken = \"t0ken-value\"\nwebhook_secret = \"replace-me\"\n",
            "max.webhook_secret",
        ),
        (
            "[crm]\nsystem = \"bitrix24\"\n[crm.bitrix24]\nwebhook_url = \"https://p.bitrix24.ru/rest/1/abcdefgh12345678/\"\napplication_token = \"\"\n",
            "crm.bitrix24.application_token",
        ),
        (
            "[crm]\nsystem = \"bitrix24\"\n[crm.bitrix24]\nwebhook_url = \"https://p.bitrix24.ru/rest/1/abcdefgh12345678/\"\napplication_token = \"secret\"\n",
            "crm.bitrix24.application_token",
        ),
    ];
    for (section, key) in cases {
        let (ok, out) = check(dir.path(), &format!("{}{section}", base(dir.path())));
        assert!(!ok, "{section} was accepted: {out}");
        assert!(out.contains(key), "{key} not named: {out}");
    }
}

#[test]
fn config_errors_name_the_key_without_echoing_the_value() {
    let dir = tempfile::tempdir().unwrap();
    // A syntax error on the token's line.
    let (ok, out) = check(
        dir.path(),
        &format!(
            "{}[telegram]\ntoken = \"123456:SYNTAX-SECRET-abc\napi_url = \"https://api.telegram.org\"\n",
            base(dir.path())
        ),
    );
    assert!(!ok);
    assert!(!out.contains("SYNTAX-SECRET"), "{out}");
    assert!(out.contains("line 6") || out.contains("TOML"), "{out}");
    // An unsupported store scheme with a password in it.
    let (ok, out) = check(
        dir.path(),
        &base(dir.path()).replacen(
            &format!("sqlite://{}", dir.path().join("z.db").display()),
            "mysql://zapis:DB-PASSWORD-42@db.local/zapis",
            1,
        ),
    );
    assert!(!ok);
    assert!(!out.contains("DB-PASSWORD-42"), "{out}");
    assert!(out.contains("store.url"), "{out}");
    // A token typed as a number.
    let (ok, out) = check(
        dir.path(),
        &format!("{}[telegram]\ntoken = 987654321987\n", base(dir.path())),
    );
    assert!(!ok);
    assert!(!out.contains("987654321987"), "{out}");
    assert!(out.contains("telegram.token"), "{out}");
}

#[test]
fn zapis_check_does_not_print_the_getcourse_key_when_getcourse_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port();
    let (ok, out) = check(
        dir.path(),
        &format!(
            "{}[school.getcourse]\naccount_url = \"http://127.0.0.1:{closed}\"\nkey = \"GC-KEY-SECRET-4242\"\n",
            base(dir.path())
        ),
    );
    assert!(!ok, "{out}");
    assert!(out.contains("school (getcourse)"), "{out}");
    assert!(!out.contains("GC-KEY-SECRET-4242"), "{out}");
}

#[tokio::test]
async fn a_bitrix24_event_is_stored_without_its_application_token_and_unconfigured_sources_are_404()
{
    const APP_TOKEN: &str = "b24-application-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("z.db").display());
    let store = zapis::store::Store::connect(&url).await.unwrap();
    let state = zapis::http::HttpState {
        store: store.clone(),
        business_id: Some(support::bid("default")),
        secret: SecretString::from(SECRET),
        sources: vec!["bitrix24"],
        clock: Arc::new(zapis::clock::SystemClock),
        max_secret: None,
        telegram_secret: None,
        bitrix24_token: Some(SecretString::from(APP_TOKEN)),
        forms: None,
        onec: None,
        ops: None,
        console: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(zapis::http::serve_on(
        listener,
        state,
        std::future::pending::<()>(),
    ));
    let http = reqwest::Client::new();
    let post = |source: &str, body: String| {
        http.post(format!("{base}/webhooks/{source}/{SECRET}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let event = format!(
        "event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID%5D=41&ts=1764000000&auth%5Bdomain%5D=p.bitrix24.ru&auth%5Bapplication_token%5D={APP_TOKEN}"
    );
    assert_eq!(post("bitrix24", event.clone()).await.unwrap().status(), 200);
    for source in ["yclients", "amocrm", "max", "getcourse"] {
        let r = post(source, "{}".into()).await.unwrap();
        assert_eq!(r.status(), 404, "{source}");
    }
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT source, body FROM sync_inbox ORDER BY id")
            .fetch_all(raw_pool(&store))
            .await
            .unwrap();
    assert_eq!(
        rows.len(),
        1,
        "only the configured source is stored: {rows:?}"
    );
    assert_eq!(rows[0].0, "bitrix24");
    assert!(!rows[0].1.contains(APP_TOKEN), "{}", rows[0].1);
    assert!(rows[0].1.contains("ONCRMDEALUPDATE"));
    // The same delivery again is recognised as a repeat.
    let again = post("bitrix24", event).await.unwrap();
    assert_eq!(again.text().await.unwrap(), "duplicate");
}
