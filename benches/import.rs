//! Import figures. (1) Read + normalise + deduplicate 100,000 CSV rows of mixed phone shapes
//! with 10% duplicates: rows/s (min / median / max over rounds) and peak memory (VmHWM from
//! /proc/self/status). (2) 5,000 clients into the amoCRM fake through the real `zapis import`
//! binary at the shipped `max_requests_per_second` (amoCRM's documented 7). Each run is bound
//! by a pacing floor: its requests evenly spaced at the client's pace, (requests − 1) × the
//! period between them (at 7 a second the period is a second and a guard, over 7). Printed
//! beside it: amoCRM's documented floor (the same requests at exactly 7 a second), what zapis
//! adds above its pacing floor, the fake's count of requests it throttled (429: more than 7 in
//! a sliding second) and the shortest time in which 8 requests in a row arrived (above a
//! second is under the limit; by how much is the margin left). 21 requests is the fewest for
//! 5,000 contacts into an empty account: one listing, then 250 contacts a request.
//! `cargo bench --bench import`; ZAPIS_BENCH_ROWS sets the row count of (1),
//! ZAPIS_BENCH_ROUNDS the rounds (default 3). ZAPIS_BENCH_BEFORE=PATH@RATE also runs another
//! build of `zapis` (at its own shipped rate), interleaved round by round with this one.

use zapis_fakes::fake_amocrm;

use std::process::Stdio;
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

fn normalise_and_dedup() -> f64 {
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
    rows as f64 / total.as_secs_f64()
}

struct ImportRun {
    requests: usize,
    shortest_eight: f64,
    wall: f64,
    pacing_floor: f64,
    vendor_floor: f64,
    max_per_second: usize,
    throttled: usize,
}

async fn into_amocrm(bin: &std::path::Path, rate: u32) -> ImportRun {
    let amo = FakeAmo::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("zapis.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}\"\n\n[business]\nname = \"Салон\"\ntimezone = \"Europe/Moscow\"\n\n\
             [sync]\npoll = \"100ms\"\n\n[crm]\nsystem = \"amocrm\"\n\n[crm.amocrm]\nbase_url = \"{}\"\n\
             token = \"{}\"\npipeline_id = {}\nnew_status_id = {}\nmax_requests_per_second = {rate}\n",
            dir.path().join("zapis.db").display(),
            amo.base_url,
            fake_amocrm::LONG_LIVED_TOKEN,
            fake_amocrm::PIPELINE_ID,
            fake_amocrm::STATUS_NEW
        ),
    )
    .expect("config");
    let file = dir.path().join("base.csv");
    // 5,555 rows, a tenth of them duplicates: 5,000 distinct clients.
    std::fs::write(&file, base(5555).replace(";Client", ";client")).expect("csv");
    let started = Instant::now();
    // The fake answers on this runtime: wait for the import without blocking a worker.
    let status = tokio::process::Command::new(bin)
        .arg("import")
        .arg(&file)
        .args(["--into", "amocrm", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .await
        .expect("zapis import runs");
    let wall = started.elapsed();
    assert!(status.success());
    let requests = amo.requests().len();
    assert_eq!(
        amo.contacts().len(),
        5000,
        "every distinct client reached the CRM"
    );
    // Evenly spaced, n requests need n - 1 periods.
    let gaps = requests.saturating_sub(1) as f64;
    ImportRun {
        requests,
        shortest_eight: amo
            .shortest_span(fake_amocrm::MAX_RPS + 1)
            .map_or(f64::INFINITY, |d| d.as_secs_f64()),
        wall: wall.as_secs_f64(),
        pacing_floor: gaps * period(rate).as_secs_f64(),
        vendor_floor: gaps / fake_amocrm::MAX_RPS as f64,
        max_per_second: amo.max_per_second(),
        throttled: amo.throttled(),
    }
}

/// The period between two requests at `rate` a second, as the shipped client spaces them.
fn period(rate: u32) -> std::time::Duration {
    zapis::crm::amocrm::pace(rate).period()
}

fn spread(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("ZAPIS_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let rates: Vec<f64> = (0..rounds).map(|_| normalise_and_dedup()).collect();
    let (a, b, c) = spread(&rates);
    println!(
        "normalise+dedup rows/s over {rounds} rounds: min {a:.0} / median {b:.0} / max {c:.0}"
    );
    let shipped = zapis::crm::config::AmoCrmConfig::new(
        url::Url::parse("https://example.amocrm.ru").expect("url"),
        1,
    )
    .max_requests_per_second;
    // (label, binary, rate, pacing period): this build, and another one to compare with.
    let mut builds: Vec<(String, std::path::PathBuf, u32, std::time::Duration)> = vec![(
        format!("this build, max_requests_per_second = {shipped} (shipped)"),
        env!("CARGO_BIN_EXE_zapis").into(),
        shipped,
        period(shipped),
    )];
    if let Ok(before) = std::env::var("ZAPIS_BENCH_BEFORE") {
        // That build paced its rate without a guard.
        let (path, rate) = before.rsplit_once('@').unwrap_or((before.as_str(), "6"));
        let rate: u32 = rate.parse().expect("ZAPIS_BENCH_BEFORE=PATH@RATE");
        builds.push((
            format!("{path}, max_requests_per_second = {rate}"),
            path.into(),
            rate,
            std::time::Duration::from_secs(1) / rate.max(1),
        ));
    }
    let mut runs: Vec<Vec<ImportRun>> = builds.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for k in 0..builds.len() {
            let k = (k + round) % builds.len();
            let (_, bin, rate, period) = &builds[k];
            let mut run = into_amocrm(bin, *rate).await;
            run.pacing_floor = run.requests.saturating_sub(1) as f64 * period.as_secs_f64();
            runs[k].push(run);
        }
    }
    println!(
        "5,000 clients (5,555 rows, duplicates merged) into amoCRM via `zapis import`, {rounds} rounds interleaved; min / median / max"
    );
    for ((label, _, _, period), runs) in builds.iter().zip(&runs) {
        let walls: Vec<f64> = runs.iter().map(|r| r.wall).collect();
        let above: Vec<f64> = runs.iter().map(|r| r.wall - r.pacing_floor).collect();
        let ratio: Vec<f64> = runs
            .iter()
            .map(|r| r.wall / r.vendor_floor.max(f64::EPSILON))
            .collect();
        let (w0, w1, w2) = spread(&walls);
        let (a0, a1, a2) = spread(&above);
        let (r0, r1, r2) = spread(&ratio);
        let r = &runs[0];
        let shortest = runs
            .iter()
            .map(|r| r.shortest_eight)
            .fold(f64::INFINITY, f64::min);
        println!(
            "  {label}: {} requests, {:.1} ms apart; wall {w0:.2} / {w1:.2} / {w2:.2} s; \
             pacing floor {:.2} s, zapis above it {a0:.2} / {a1:.2} / {a2:.2} s; \
             amoCRM's documented floor (7/s) {:.2} s, wall / that floor {r0:.2} / {r1:.2} / {r2:.2}x; \
             max {} req in any second, 8 in a row in no less than {:.0} ms, {} throttled (429) in all rounds",
            r.requests,
            period.as_secs_f64() * 1000.0,
            r.pacing_floor,
            r.vendor_floor,
            runs.iter().map(|r| r.max_per_second).max().unwrap_or(0),
            shortest * 1000.0,
            runs.iter().map(|r| r.throttled).sum::<usize>(),
        );
    }
}
