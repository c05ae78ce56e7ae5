//! `/health` latency of the real `zapis run` binary while 2,000 slow clients (headers trickled a
//! byte a second, reconnecting when cut off) and 1,100 idle connections (reconnecting when
//! closed) are held against it, the server started under a soft limit of 1,024 descriptors.
//! Rounds interleave a quiet phase and a flood phase; each prints min/median/max.
//!
//! ```sh
//! cargo bench --bench http_flood                     # release build
//! cargo bench --profile dev --bench http_flood       # the debug binary, no release build
//! HTTP_FLOOD_ROUNDS=3 HTTP_FLOOD_SLOW=2000 HTTP_FLOOD_IDLE=1100 cargo bench --bench http_flood
//! # a host whose hard limit is 1,024 too: the connection cap (768) is full all the time
//! HTTP_FLOOD_HARD_LIMIT=1 cargo bench --bench http_flood
//! ```

use zapis_fakes::fake_telegram;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "bench-hook-secret-0123456789";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn health(port: u16, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let attempt = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(b"GET /health HTTP/1.1\r\nhost: zapis\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.ok()?;
        answer.starts_with(b"HTTP/1.1 200").then_some(())
    };
    tokio::time::timeout(within, attempt).await.ok().flatten()?;
    Some(started.elapsed())
}

/// Holds a connection that never sends a byte, reconnecting when the server closes it.
async fn idle_client(port: u16, stop: Arc<AtomicBool>, held: Arc<AtomicUsize>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        held.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 64];
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                _ => {}
            }
        }
        held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Slowloris: a request line, then a header byte a second, never the end of the headers.
async fn slow_client(port: u16, stop: Arc<AtomicBool>, held: Arc<AtomicUsize>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        held.fetch_add(1, Ordering::Relaxed);
        if s.write_all(b"POST /webhooks/yclients/x HTTP/1.1\r\nhost: z\r\nx-slow: ")
            .await
            .is_ok()
        {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if s.write_all(b"a").await.is_err() {
                    break;
                }
                match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                    Ok(Ok(_)) | Ok(Err(_)) => break,
                    Err(_) => {}
                }
            }
        }
        held.fetch_sub(1, Ordering::Relaxed);
    }
}

fn summary(label: &str, mut xs: Vec<Duration>, failed: usize) {
    xs.sort();
    if xs.is_empty() {
        println!("{label:<34} no answers, {failed} failed");
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<34} min {:>8.2} ms  median {:>8.2} ms  max {:>8.2} ms  ({} answered, {failed} not within 1 s)",
        ms(xs[0]),
        ms(xs[xs.len() / 2]),
        ms(xs[xs.len() - 1]),
        xs.len()
    );
}

#[tokio::main]
async fn main() {
    let rounds = env_usize("HTTP_FLOOD_ROUNDS", 3);
    let slow = env_usize("HTTP_FLOOD_SLOW", 2000);
    let idle = env_usize("HTTP_FLOOD_IDLE", 1100);
    let probes = env_usize("HTTP_FLOOD_PROBES", 40);
    // This process holds every attacking socket itself.
    let _ = rlimit::increase_nofile_limit(u64::MAX);

    let tg = fake_telegram::FakeTelegram::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = dir.path().join("zapis.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{db}\"\n[business]\nname = \"Bench\"\ntimezone = \"Europe/Moscow\"\n\
             [telegram]\ntoken = \"{token}\"\napi_url = \"{api}\"\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\nwebhook_secret = \"{SECRET}\"\n",
            db = dir.path().join("zapis.db").display(),
            token = fake_telegram::TOKEN,
            api = tg.api_url(),
        ),
    )
    .expect("config written");
    let bin = std::env::var("ZAPIS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_zapis").into());
    let hard = std::env::var_os("HTTP_FLOOD_HARD_LIMIT").is_some();
    let ulimit = if hard {
        "ulimit -n 1024"
    } else {
        "ulimit -Sn 1024"
    };
    let _server = Server(
        Command::new("sh")
            .arg("-c")
            .arg(format!("{ulimit} && exec \"$0\" run --config \"$1\""))
            .arg(&bin)
            .arg(&config)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .spawn()
            .expect("zapis run starts"),
    );
    let ready = Instant::now();
    while health(port, Duration::from_secs(1)).await.is_none() {
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "zapis did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "zapis run ({bin}) under `{ulimit}`; flood: {slow} slow + {idle} idle connections; \
         {probes} probes a phase, {rounds} rounds"
    );
    let (mut quiet_all, mut flood_all) = (Vec::new(), Vec::new());
    let (mut quiet_failed, mut flood_failed) = (0, 0);
    for round in 1..=rounds {
        // Quiet phase.
        let mut quiet = Vec::new();
        for _ in 0..probes {
            match health(port, Duration::from_secs(1)).await {
                Some(d) => quiet.push(d),
                None => quiet_failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        summary(&format!("round {round}: quiet"), quiet.clone(), 0);
        quiet_all.extend(quiet);

        // Flood phase: probes spread over 15 s, past the 10 s header-read timeout, so they
        // also meet the reconnect wave.
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let mut attackers = tokio::task::JoinSet::new();
        for _ in 0..idle {
            attackers.spawn(idle_client(port, stop.clone(), held.clone()));
        }
        for _ in 0..slow {
            attackers.spawn(slow_client(port, stop.clone(), held.clone()));
        }
        let settle = Instant::now();
        while held.load(Ordering::Relaxed) < (slow + idle) * 95 / 100
            && settle.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut flood = Vec::new();
        let mut failed = 0;
        let mut min_held = usize::MAX;
        for _ in 0..probes {
            min_held = min_held.min(held.load(Ordering::Relaxed));
            match health(port, Duration::from_secs(1)).await {
                Some(d) => flood.push(d),
                None => failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(15_000 / probes as u64)).await;
        }
        summary(&format!("round {round}: flood"), flood.clone(), failed);
        println!("{:<34} attacking connections held: at least {min_held}", "");
        flood_all.extend(flood);
        flood_failed += failed;
        stop.store(true, Ordering::Relaxed);
        while attackers.join_next().await.is_some() {}
    }
    summary("all rounds: quiet", quiet_all, quiet_failed);
    summary("all rounds: flood", flood_all, flood_failed);
}
