//! Memory of the real `zapis run` process under the 1C exchange (`/1c/exchange`).
//!
//! (1) Hostile: rounds of 30 concurrent 60 MB uploads without credentials; the resident set
//! (VmRSS from /proc/<pid>/status) before and after each round, and the peak (VmHWM).
//! Goal: under +20 MB.
//! (2) Ordinary: 100 catalogue exchanges as 1C runs them (checkauth, init, an 8 MB import.xml
//! in 1 MiB pieces, import until success, complete) plus a sale exchange (query, success,
//! complete); VmRSS at the start and after every 20 exchanges. Goal: back within +20 MB of
//! the start.
//!
//! `cargo bench --bench onec_exchange`; ZAPIS_BENCH_ROUNDS (default 3) and
//! ZAPIS_BENCH_EXCHANGES (default 100) change the counts.

use zapis_fakes::fake_telegram;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_telegram::{FakeTelegram, TOKEN};

const USER: &str = "1c-exchange";
const PASSWORD: &str = "bench-exchange-password-0123";
const PIECE: usize = 1024 * 1024;

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn spread(label: &str, mut values: Vec<f64>) {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        return;
    }
    println!(
        "{label}: min {:.1} / median {:.1} / max {:.1} MiB over {n} rounds",
        values[0],
        values[n / 2],
        values[n - 1]
    );
}

struct Zapis(Child);

impl Drop for Zapis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A catalogue of about `bytes` bytes: items with long descriptions, as 1C exports them.
fn catalogue(bytes: usize) -> Vec<u8> {
    let mut xml = String::with_capacity(bytes + 4096);
    xml.push('\u{feff}');
    xml.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<КоммерческаяИнформация \
         ВерсияСхемы=\"2.07\" ДатаФормирования=\"2026-11-29T09:00:00\"><Каталог><Ид>c</Ид>\
         <Наименование>Каталог</Наименование><Товары>",
    );
    let description = "Описание услуги салона, как его выгружает 1С. ".repeat(20);
    let mut i = 0;
    while xml.len() < bytes {
        xml.push_str(&format!(
            "<Товар><Ид>item-{i}</Ид><Артикул>A-{i}</Артикул><Наименование>Услуга {i}\
             </Наименование><БазоваяЕдиница>шт</БазоваяЕдиница><Описание>{description}\
             </Описание></Товар>"
        ));
        i += 1;
    }
    xml.push_str("</Товары></Каталог></КоммерческаяИнформация>");
    xml.into_bytes()
}

async fn login(http: &reqwest::Client, url: &str, kind: &str) -> String {
    let body = http
        .get(format!("{url}?type={kind}&mode=checkauth"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("checkauth")
        .text()
        .await
        .expect("body");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.first(), Some(&"success"), "{body}");
    let cookie = format!("{}={}", lines[1], lines[2]);
    call(http, url, &cookie, kind, "init", None).await;
    cookie
}

async fn call(
    http: &reqwest::Client,
    url: &str,
    cookie: &str,
    kind: &str,
    mode: &str,
    file: Option<(&str, Vec<u8>)>,
) -> String {
    let mut target = format!("{url}?type={kind}&mode={mode}");
    let request = match file {
        Some((name, bytes)) => {
            target.push_str(&format!("&filename={name}"));
            http.post(target).body(bytes)
        }
        None => http.get(target),
    };
    request
        .header("Cookie", cookie)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body")
}

async fn exchange_once(http: &reqwest::Client, url: &str, file: &[u8]) {
    let cookie = login(http, url, "catalog").await;
    for piece in file.chunks(PIECE) {
        let answer = call(
            http,
            url,
            &cookie,
            "catalog",
            "file",
            Some(("import.xml", piece.to_vec())),
        )
        .await;
        assert_eq!(answer.trim(), "success");
    }
    loop {
        let answer = http
            .get(format!(
                "{url}?type=catalog&mode=import&filename=import.xml"
            ))
            .header("Cookie", &cookie)
            .send()
            .await
            .expect("import")
            .text()
            .await
            .expect("body");
        if answer.starts_with("progress") {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(answer.trim(), "success", "{answer}");
        break;
    }
    call(http, url, &cookie, "catalog", "complete", None).await;
    let sale = login(http, url, "sale").await;
    call(http, url, &sale, "sale", "query", None).await;
    call(http, url, &sale, "sale", "success", None).await;
    call(http, url, &sale, "sale", "complete", None).await;
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("ZAPIS_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let exchanges: usize = std::env::var("ZAPIS_BENCH_EXCHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let telegram = FakeTelegram::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let uploads = dir.path().join("uploads");
    std::fs::create_dir(&uploads).expect("upload dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = format!(
        "[store]\nurl = \"sqlite://{}\"\n[business]\nname = \"Салон\"\ntimezone = \"Europe/Moscow\"\n\
         [telegram]\ntoken = \"{TOKEN}\"\napi_url = \"{}\"\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\nwebhook_secret = \"0123456789abcdef\"\n\
         [onec]\nmode = \"commerceml\"\n[onec.commerceml]\nuser = \"{USER}\"\n\
         password = \"{PASSWORD}\"\nupload_dir = \"{}\"\n",
        dir.path().join("z.db").display(),
        telegram.api_url(),
        uploads.display()
    );
    let path = dir.path().join("zapis.toml");
    std::fs::write(&path, config).expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .env_remove("ZAPIS_TELEGRAM__TOKEN")
        .stdin(Stdio::null())
        .spawn()
        .expect("zapis run starts");
    let zapis = Zapis(child);
    let pid = zapis.0.id();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let url = format!("{base}/1c/exchange");
    let started = Instant::now();
    loop {
        if http
            .get(format!("{base}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "zapis run did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start_rss = status_kib(pid, "VmRSS:");
    println!("zapis run: VmRSS at start {:.1} MiB", mib(start_rss));

    // (1) 30 concurrent 60 MB uploads without credentials, per round.
    let body = axum::body::Bytes::from(vec![b'x'; 60 * 1000 * 1000]);
    let mut deltas = Vec::new();
    for round in 0..rounds {
        let before = status_kib(pid, "VmRSS:");
        let t = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..30 {
            let http = reqwest::Client::new();
            let body = body.clone();
            let target = if i % 2 == 0 {
                format!("{url}?type=catalog&mode=file&filename=import.xml")
            } else {
                format!("{url}?type=sale&mode=file&filename=to.xml")
            };
            tasks.push(tokio::spawn(async move {
                match http
                    .post(target)
                    .header("Cookie", "zapis_1c=forged")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) => r.status().as_u16(),
                    // The server answers 401 and closes without reading the 60 MB.
                    Err(_) => 0,
                }
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap_or(0));
        }
        let after = status_kib(pid, "VmRSS:");
        let refused = statuses.iter().filter(|s| **s == 401 || **s == 0).count();
        println!(
            "round {round}: 30 × 60 MB unauthenticated in {:?}: VmRSS {:.1} → {:.1} MiB ({:+.1}); \
             {refused}/30 refused (401 or closed unread)",
            t.elapsed(),
            mib(before),
            mib(after),
            mib(after) - mib(before)
        );
        deltas.push(mib(after) - mib(start_rss));
    }
    spread("VmRSS over the start after each round", deltas);
    println!(
        "peak VmHWM so far {:.1} MiB (start {:.1} MiB)",
        mib(status_kib(pid, "VmHWM:")),
        mib(start_rss)
    );

    // (2) Ordinary exchanges.
    let file = catalogue(8 * 1024 * 1024);
    let before = status_kib(pid, "VmRSS:");
    println!(
        "{exchanges} ordinary exchanges of an {:.1} MB catalogue: VmRSS before {:.1} MiB",
        file.len() as f64 / 1_048_576.0,
        mib(before)
    );
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for n in 1..=exchanges {
        let t = Instant::now();
        exchange_once(&http, &url, &file).await;
        times.push(t.elapsed().as_secs_f64());
        if n % 20 == 0 || n == exchanges {
            let now = status_kib(pid, "VmRSS:");
            rss.push(mib(now) - mib(before));
            println!(
                "after {n}: VmRSS {:.1} MiB ({:+.1} over the start of the exchanges)",
                mib(now),
                mib(now) - mib(before)
            );
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "one exchange: min {:.2} / median {:.2} / max {:.2} s",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
    spread("VmRSS over the start, every 20 exchanges", rss);
    let left: usize = std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0);
    println!("session directories left in upload_dir: {left}");
    println!("peak VmHWM {:.1} MiB", mib(status_kib(pid, "VmHWM:")));
}
