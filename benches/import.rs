//! Import figures. (1) Read + normalise + deduplicate 100,000 CSV rows of mixed phone shapes
//! with 10% duplicates: rows/s and peak memory (VmHWM from /proc/self/status). (2) 5,000
//! clients into the amoCRM fake through the real `zapis import` binary: wall time against the
//! floor the rate limit sets (requests ÷ 7 per second, with 250 contacts per request).
//! `cargo bench --bench import`; ZAPIS_BENCH_ROWS sets the row count of (1).

#[path = "../tests/support/fake_amocrm.rs"]
mod fake_amocrm;

use std::process::{Command, Stdio};
use std::time::Instant;

use fake_amocrm::FakeAmo;

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn base(rows: usize) -> String {
    let mut csv = String::with_capacity(rows * 80);
    csv.push_str("ФИО;Телефон;Email;Дата рождения\n");
    let uniques = rows - rows / 10;
    for i in 0..rows {
        let n = i % uniques;
        let national = format!("9{:09}", 100_000_000 + n);
        let (a, b, c, d) = (
            &national[..3],
            &national[3..6],
            &national[6..8],
            &national[8..],
        );
        let phone = match i % 4 {
            0 => format!("8 ({a}) {b}-{c}-{d}"),
            1 => format!("+7 {a} {b}{c}{d}"),
            2 => national.clone(),
            _ => format!("7-{a}-{b}-{c}-{d}"),
        };
        csv.push_str(&format!(
            "иванова   АННА {n};{phone};Client{n}@Mail.RU ;{:02}.{:02}.19{:02}\n",
            n % 28 + 1,
            n % 12 + 1,
            n % 90 + 10
        ));
    }
    csv
}

fn normalise_and_dedup() {
    let rows: usize = std::env::var("ZAPIS_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let csv = base(rows);
    let before = vm_hwm_kib().unwrap_or(0);
    let started = Instant::now();
    let records = zapis::import::read_bytes(csv.as_bytes(), &[]).expect("reads");
    let read = started.elapsed();
    let prepared = zapis::import::prepare(records);
    let total = started.elapsed();
    let peak = vm_hwm_kib().unwrap_or(0);
    assert_eq!(prepared.clients.len(), rows - rows / 10);
    println!(
        "normalise+dedup: {rows} rows ({} MiB CSV) → {} clients in {:.2} s (read {:.2} s): {:.0} rows/s; peak RSS {} MiB (before {} MiB)",
        csv.len() / (1 << 20),
        prepared.clients.len(),
        total.as_secs_f64(),
        read.as_secs_f64(),
        rows as f64 / total.as_secs_f64(),
        peak / 1024,
        before / 1024
    );
}

async fn into_amocrm() {
    let amo = FakeAmo::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("zapis.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}\"\n\n[business]\nname = \"Салон\"\ntimezone = \"Europe/Moscow\"\n\n\
             [sync]\npoll = \"100ms\"\n\n[crm]\nsystem = \"amocrm\"\n\n[crm.amocrm]\nbase_url = \"{}\"\n\
             token = \"{}\"\npipeline_id = {}\nnew_status_id = {}\n",
            dir.path().join("zapis.db").display(),
            amo.base_url,
            fake_amocrm::LONG_LIVED_TOKEN,
            fake_amocrm::PIPELINE_ID,
            fake_amocrm::STATUS_NEW
        ),
    )
    .expect("config");
    let file = dir.path().join("base.csv");
    std::fs::write(&file, base(5000).replace(";Client", ";client")).expect("csv");
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .arg("import")
        .arg(&file)
        .args(["--into", "amocrm", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("zapis import runs");
    let wall = started.elapsed();
    assert!(status.success());
    let requests = amo.requests().len();
    // Evenly spaced at 7/s, n requests need (n - 1) / 7 seconds.
    let floor = (requests.saturating_sub(1)) as f64 / fake_amocrm::MAX_RPS as f64;
    println!(
        "5,000 clients into amoCRM: {} contacts, {requests} requests, wall {:.2} s vs rate-limit floor {:.2} s ({:.2}x); max {} req in any second, {} throttled",
        amo.contacts().len(),
        wall.as_secs_f64(),
        floor,
        wall.as_secs_f64() / floor.max(f64::EPSILON),
        amo.max_per_second(),
        amo.throttled()
    );
}

#[tokio::main]
async fn main() {
    normalise_and_dedup();
    into_amocrm().await;
}
