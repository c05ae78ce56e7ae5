//! The sync engine against a misbehaving target over real HTTP, with real worker processes
//! killed by SIGKILL. Runs on SQLite always and on PostgreSQL when ZAPIS_TEST_POSTGRES_URL is
//! set.

use crate::support;
use crate::support::bid;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use support::app::Settings;
use support::fake_target::FakeTarget;
use zapis::store::Store;
use zapis::store::test_support::raw_pool;
use zapis::sync::journal::{JournalFilter, read_journal};
use zapis::sync::{JobState, NewJob, Queue};

fn spawn_worker(store_url: &str, target: &FakeTarget, log: &std::path::Path) -> Child {
    spawn_worker_with(store_url, target, log, &[])
}

fn spawn_worker_with(
    store_url: &str,
    target: &FakeTarget,
    log: &std::path::Path,
    extra: &[&str],
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("worker log");
    Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args([
            "--store",
            store_url,
            "worker",
            "--http-target",
            &target.url(),
            "--business",
            "b",
        ])
        .args(["--workers", "4", "--batch", "8", "--poll", "50ms"])
        .args(if extra.contains(&"--request-timeout") {
            Vec::new()
        } else {
            vec![
                "--request-timeout".to_string(),
                format!("{}ms", target.hang().as_millis() / 4),
            ]
        })
        .args([
            "--retry-steps",
            "20ms,50ms,100ms",
            "--retry-steady",
            "100ms-300ms",
        ])
        // A short lease makes the chaos test's killed workers' jobs come back quickly.
        .args(if extra.contains(&"--lease") {
            &[][..]
        } else {
            &["--lease", "1s"][..]
        })
        .args(extra)
        .env("RUST_LOG", "zapis=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn zapis worker")
}

fn jobs(n: usize, entities: usize) -> Vec<NewJob> {
    (0..n)
        .map(|i| {
            let entity = format!("e{}", i % entities);
            NewJob {
                business_id: bid("b"),
                system: zapis::domain::System::Http,
                operation: "object".into(),
                payload: serde_json::json!({
                    "entity": entity,
                    "seq": i / entities,
                    "client": format!("+7912{:07}", i),
                }),
                idempotency_key: format!("op-{i:04}"),
                ordering_key: Some(entity),
            }
        })
        .collect()
}

async fn wait_all_done(queue: &Queue, n: usize, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        let done: i64 = queue
            .stats()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.state == JobState::Done)
            .map(|r| r.count)
            .sum();
        if done as usize == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Every job delivered exactly once to the target, and the journal has one row per attempt.
async fn assert_exactly_once(store: &Store, queue: &Queue, target: &FakeTarget, n: usize) {
    let expected: Vec<String> = (0..n).map(|i| format!("op-{i:04}")).collect();
    assert_eq!(
        target.object_keys(),
        expected,
        "the target holds exactly the N objects"
    );
    let c = target.counters();
    assert_eq!(c.duplicates, 0, "no object was created twice: {c:?}");
    assert_eq!(c.out_of_order, 0, "per-entity order held: {c:?}");
    let done = queue.jobs_in_state(JobState::Done).await.unwrap();
    assert_eq!(done.len(), n);
    let journal = read_journal(store, &JournalFilter::default())
        .await
        .unwrap();
    let mut rows_per_job: HashMap<i64, i64> = HashMap::new();
    for e in &journal {
        *rows_per_job.entry(e.job_id).or_default() += 1;
        assert!(
            !e.error.as_deref().unwrap_or("").contains("+7912"),
            "unmasked phone: {e:?}"
        );
    }
    for job in &done {
        assert_eq!(
            rows_per_job.get(&job.id).copied().unwrap_or(0),
            job.attempts,
            "journal rows of job {}",
            job.id
        );
        let ext = store
            .external_id(
                &bid("b"),
                "object",
                &job.idempotency_key,
                zapis::domain::System::Http,
            )
            .await
            .unwrap();
        assert!(ext.is_some(), "job {} has its external id linked", job.id);
    }
    let delivered = journal.iter().filter(|e| e.outcome == "delivered").count();
    assert_eq!(delivered, n, "one delivered row per job");
}

async fn chaos(store_url: &str, label: &str) {
    const N: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let store = Store::connect(store_url).await.unwrap();
    let queue = Queue::new(store.clone());
    let target = FakeTarget::start(0.30, Duration::from_millis(800)).await;
    assert_eq!(
        queue
            .enqueue_batch(&jobs(N, 100), chrono::Utc::now())
            .await
            .unwrap(),
        N as u64
    );

    let started = Instant::now();
    let mut kills = 0;
    while kills < 4 {
        let mut worker = spawn_worker(store_url, &target, &log);
        let life = rand::rng().random_range(700..1500);
        tokio::time::sleep(Duration::from_millis(life)).await;
        worker.kill().expect("SIGKILL the worker");
        worker.wait().unwrap();
        kills += 1;
    }
    let mut worker = spawn_worker(store_url, &target, &log);
    let settled = wait_all_done(&queue, N, Duration::from_secs(90)).await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    let abandoned = read_journal(&store, &JournalFilter::default())
        .await
        .unwrap()
        .iter()
        .filter(|e| e.outcome == "abandoned")
        .count();
    let c = target.counters();
    eprintln!(
        "[{label}] {N} jobs in {:.1}s, {kills} SIGKILLs, {} calls, {} faults, {abandoned} attempts abandoned by killed workers",
        started.elapsed().as_secs_f64(),
        c.calls,
        c.faults
    );
    assert!(
        settled,
        "[{label}] not all jobs done; worker log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        c.faults as f64 > 0.2 * c.calls as f64,
        "the chaos happened: {c:?}"
    );
    assert_exactly_once(&store, &queue, &target, N).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sqlite_exactly_n_objects_despite_faults_and_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chaos.db").display());
    chaos(&url, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_postgres_exactly_n_objects_despite_faults_and_sigkills() {
    if let Some(url) = support::postgres_url().await {
        chaos(&url, "postgres").await;
    }
}

/// Three worker processes on one store share the queue; with a healthy target every job is
/// attempted exactly once and no two requests for one job overlap.
async fn several_processes(store_url: &str, label: &str) {
    const N: usize = 600;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let store = Store::connect(store_url).await.unwrap();
    let queue = Queue::new(store.clone());
    let target = FakeTarget::start(0.0, Duration::from_millis(800)).await;
    let unordered: Vec<NewJob> = jobs(N, N)
        .into_iter()
        .map(|j| NewJob {
            ordering_key: None,
            ..j
        })
        .collect();
    queue
        .enqueue_batch(&unordered, chrono::Utc::now())
        .await
        .unwrap();
    let started = Instant::now();
    let mut workers: Vec<Child> = (0..3)
        // Nobody dies and nothing hangs here, so a lease and a request timeout long enough to
        // survive a loaded CI machine: a timed-out answer is rightly tried again, which this
        // test would count as a second run. It is about claims never overlapping, not about
        // lease expiry or lost answers (the chaos test covers those).
        .map(|_| {
            spawn_worker_with(
                store_url,
                &target,
                &log,
                &["--lease", "10s", "--request-timeout", "5s"],
            )
        })
        .collect();
    let settled = wait_all_done(&queue, N, Duration::from_secs(60)).await;
    for w in &mut workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    eprintln!(
        "[{label}] 3 processes delivered {N} jobs in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        settled,
        "[{label}] not all jobs done:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let c = target.counters();
    assert_eq!(
        (c.calls, c.posts, c.overlapping),
        (N as u64, N as u64, 0),
        "{c:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for job in queue.jobs_in_state(JobState::Done).await.unwrap() {
        assert_eq!(job.attempts, 1, "job {} ran more than once", job.id);
    }
    assert_exactly_once(&store, &queue, &target, N).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_postgres_run_each_job_once() {
    if let Some(url) = support::postgres_url().await {
        several_processes(&url, "postgres").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_sqlite_run_each_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("multi.db").display());
    several_processes(&url, "sqlite").await;
}

/// A validation error kills the job at once with the vendor's message (phone masked);
/// `zapis queue retry ID` delivers it once the cause is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_error_is_dead_with_message_and_queue_retry_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("dead.db").display());
    let log = dir.path().join("worker.log");
    let store = Store::connect(&url).await.unwrap();
    let queue = Queue::new(store.clone());
    let target = FakeTarget::start(0.0, Duration::from_millis(800)).await;
    target.set_reject(Some("field phone +79991234567 does not match the pipeline"));
    let id = queue
        .enqueue(&jobs(1, 1)[0], chrono::Utc::now())
        .await
        .unwrap()
        .unwrap();
    let mut worker = spawn_worker(&url, &target, &log);
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let job = queue.job(id).await.unwrap().unwrap();
        if job.state == JobState::Dead || Instant::now() > deadline {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.attempts, 1);
    let error = dead.last_error.unwrap();
    assert!(
        error.contains("HTTP 422") && error.contains("does not match the pipeline"),
        "{error}"
    );
    assert!(
        error.contains("+799******67") && !error.contains("1234"),
        "phone masked: {error}"
    );

    target.set_reject(None);
    let out = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["--store", &url, "queue", "retry", &id.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_all_done(&queue, 1, Duration::from_secs(20)).await,
        "revived job delivered"
    );
    let listing = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args([
            "--store",
            &url,
            "journal",
            "--job",
            &id.to_string(),
            "--since",
            "1h",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listing.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines().next().unwrap().contains("permanent 422"),
        "{text}"
    );
    assert!(text.lines().nth(1).unwrap().contains("delivered"), "{text}");
    let failed = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["--store", &url, "journal", "--failed", "--system", "http"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&failed.stdout).lines().count(), 1);
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert_eq!(target.object_keys(), vec!["op-0000".to_string()]);
}

/// SIGTERM: running jobs get the grace period, then are released (journaled `interrupted`);
/// the process exits cleanly, nothing stays `running`, and a restarted worker delivers
/// everything exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_running_jobs_and_nothing_is_lost() {
    const N: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("term.db").display());
    let log = dir.path().join("worker.log");
    let store = Store::connect(&url).await.unwrap();
    let queue = Queue::new(store.clone());
    let target = FakeTarget::start(0.0, Duration::from_secs(4)).await;
    target.set_delay(Duration::from_millis(1500));
    let unordered: Vec<NewJob> = jobs(N, N)
        .into_iter()
        .map(|j| NewJob {
            ordering_key: None,
            ..j
        })
        .collect();
    queue
        .enqueue_batch(&unordered, chrono::Utc::now())
        .await
        .unwrap();
    let mut worker = spawn_worker_with(&url, &target, &log, &["--shutdown-grace", "200ms"]);
    // Wait until the worker holds jobs, then ask it to stop.
    let deadline = Instant::now() + Duration::from_secs(20);
    while queue
        .jobs_in_state(JobState::Running)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the worker never claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let term = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let stopped_at = Instant::now();
    let status = loop {
        if let Some(status) = worker.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(10),
            "worker ignored SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "clean exit: {status:?}");
    assert!(
        queue
            .jobs_in_state(JobState::Running)
            .await
            .unwrap()
            .is_empty()
    );
    let interrupted = read_journal(&store, &JournalFilter::default())
        .await
        .unwrap()
        .iter()
        .filter(|e| e.outcome == "interrupted")
        .count();
    assert!(interrupted > 0, "in-flight jobs were released");

    target.set_delay(Duration::ZERO);
    let mut worker = spawn_worker(&url, &target, &log);
    let settled = wait_all_done(&queue, N, Duration::from_secs(30)).await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert!(
        settled,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_exactly_once(&store, &queue, &target, N).await;
}

// ------------------------------------------------------------------ against the CRM fakes

/// Which CRM fake the chaos runs against.
enum CrmFake {
    Amo(support::fake_amocrm::FakeAmo),
    Bitrix(support::fake_bitrix24::FakeBitrix),
}

fn crm_booking(i: usize) -> zapis::domain::Booking {
    use chrono::TimeZone;
    use zapis::domain::{Booking, BookingStatus, Channel, Money, Source, Utm};
    Booking {
        id: crate::support::bk(&format!("chaos-{i:03}")),
        business_id: bid("salon"),
        client_phone: zapis::normalize::Phone::parse(&format!(
            "+7 912 {:03} {:04}",
            i / 10_000,
            i % 10_000
        ))
        .expect("phone"),
        client_name: format!("Клиент {i}"),
        client_email: None,
        service_id: "s1".into(),
        service_name: "Стрижка".into(),
        master_id: "m1".into(),
        master_name: "Ольга".into(),
        start: chrono::Utc.with_ymd_and_hms(2030, 6, 1, 10, 0, 0).unwrap()
            + chrono::Duration::hours(i as i64),
        duration_min: 60,
        price: Money::from_rubles(1500),
        status: BookingStatus::Booked,
        source: Source {
            channel: Channel::Telegram,
            payload: Some("src_chaos".into()),
            link_name: None,
            utm: Utm::default(),
        },
        chat: None,
        external_id: None,
        created_at: chrono::Utc::now(),
    }
}

/// Bookings and their "create the lead" jobs, committed together as the bot does.
async fn seed_bookings(store: &Store, n: usize, system: zapis::domain::System) {
    for i in 0..n {
        let booking = crm_booking(i);
        let mut tx = raw_pool(store).begin().await.unwrap();
        zapis::store::insert_booking_in(&mut tx, &booking)
            .await
            .unwrap();
        let job = zapis::lifecycle::effects::booking_job(
            &bid("salon"),
            system,
            zapis::lifecycle::effects::Operation::BookingCreated,
            &booking.id,
            None,
            chrono::Utc::now(),
        );
        zapis::sync::enqueue_in(&mut tx, &job, chrono::Utc::now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

fn spawn_crm_worker(config: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("worker log");
    Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["worker", "--config"])
        .arg(config)
        .args([
            "--retry-steps",
            "100ms,200ms,400ms",
            "--retry-steady",
            "500ms-1s",
        ])
        .env("RUST_LOG", "zapis=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn zapis worker")
}

/// The sync engine's chaos against a CRM: 30 % of calls fail in every way a network can,
/// the worker process is SIGKILLed three times, and the CRM still ends with exactly one
/// contact, one lead and one task per booking, while its rate limit was never exceeded.
async fn crm_chaos(crm: CrmFake, n: usize) {
    use support::chaos_proxy::ChaosProxy;
    let system = match crm {
        CrmFake::Amo(_) => zapis::domain::System::AmoCrm,
        CrmFake::Bitrix(_) => zapis::domain::System::Bitrix24,
    };
    let upstream = match &crm {
        CrmFake::Amo(f) => f.base_url.clone(),
        CrmFake::Bitrix(f) => f.base_url.clone(),
    };
    // The CRM clients time out after 1 s; a hang lasts longer.
    let proxy = ChaosProxy::start(upstream, 0.30, Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let settings = Settings::new(&store_url)
        .set("sync.workers", 2)
        .set("sync.batch", 4)
        .set("sync.poll", "50ms")
        .set("sync.lease", "2s");
    // The CRM is reached through the proxy.
    let settings = match &crm {
        // The default configuration: the worker finds or creates the booking id field itself,
        // through the same chaos.
        CrmFake::Amo(f) => settings
            .amocrm(f)
            .set("crm.amocrm.base_url", proxy.url(""))
            .remove("crm.amocrm.booking_id_field_id")
            .set("crm.amocrm.timeout_secs", 1),
        CrmFake::Bitrix(f) => {
            use support::fake_bitrix24 as b24;
            settings
                .bitrix24(f)
                .set(
                    "crm.bitrix24.webhook_url",
                    proxy.url(&format!(
                        "/rest/{}/{}/",
                        b24::WEBHOOK_USER,
                        b24::WEBHOOK_CODE
                    )),
                )
                .set("crm.bitrix24.category_id", b24::CATEGORY)
                .set("crm.bitrix24.booking_id_field", b24::BOOKING_FIELD)
                .set("crm.bitrix24.responsible_id", 5)
                .set("crm.bitrix24.timeout_secs", 1)
        }
    };
    let config = settings.write_in(dir.path());
    let store = Store::connect(&store_url).await.unwrap();
    seed_bookings(&store, n, system).await;
    let queue = Queue::new(store.clone());
    let log = dir.path().join("worker.log");

    let started = Instant::now();
    for _ in 0..3 {
        let mut worker = spawn_crm_worker(&config, &log);
        let life = rand::rng().random_range(2000..4000);
        tokio::time::sleep(Duration::from_millis(life)).await;
        worker.kill().expect("SIGKILL the worker");
        worker.wait().unwrap();
        // A supervisor restarts after a pause; the CRM's one-second window has passed.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let mut worker = spawn_crm_worker(&config, &log);
    let settled = wait_all_done(&queue, n, Duration::from_secs(150)).await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    let c = proxy.counters();
    eprintln!(
        "[{system}] {n} bookings in {:.1}s, 3 SIGKILLs, {} calls, {} faults, {} unknown outcomes, peak {} calls/s",
        started.elapsed().as_secs_f64(),
        c.calls,
        c.faults,
        c.unknown_outcomes,
        c.max_per_second
    );
    assert!(
        settled,
        "[{system}] not all jobs done: {:?}\nworker log:\n{}",
        queue.stats().await.unwrap(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        c.faults > 0 && c.unknown_outcomes > 0,
        "the chaos happened: {c:?}"
    );

    // Exactly one contact, lead and task per booking in the CRM.
    let (contacts, leads, tasks): (Vec<serde_json::Value>, Vec<serde_json::Value>, usize) =
        match &crm {
            CrmFake::Amo(f) => (f.contacts(), f.leads(), f.tasks().len()),
            CrmFake::Bitrix(f) => (f.contacts(), f.deals(), f.activities().len()),
        };
    let amo_field = match &crm {
        CrmFake::Amo(f) => {
            let named = f.lead_field_named(zapis::crm::amocrm::BOOKING_FIELD_NAME);
            assert!(named.is_some(), "[amocrm] the booking id field was created");
            let created = f
                .lead_fields()
                .iter()
                .filter(|x| x["name"] == zapis::crm::amocrm::BOOKING_FIELD_NAME)
                .count();
            assert_eq!(
                created, 1,
                "[amocrm] one booking id field, despite the chaos"
            );
            named
        }
        CrmFake::Bitrix(_) => None,
    };
    let mut booking_ids: Vec<String> = leads
        .iter()
        .map(|l| match &crm {
            CrmFake::Amo(_) => l["custom_fields_values"]
                .as_array()
                .and_then(|fs| {
                    fs.iter()
                        .find(|f| f["field_id"] == serde_json::json!(amo_field))
                })
                .and_then(|f| f["values"][0]["value"].as_str())
                .unwrap_or_default()
                .to_string(),
            CrmFake::Bitrix(_) => l[support::fake_bitrix24::BOOKING_FIELD]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
        .collect();
    booking_ids.sort();
    let expected: Vec<String> = (0..n).map(|i| format!("chaos-{i:03}")).collect();
    assert_eq!(
        booking_ids, expected,
        "[{system}] one lead per booking, none missing"
    );
    assert_eq!(contacts.len(), n, "[{system}] one contact per client");
    assert_eq!(tasks, n, "[{system}] one task per booking");
    for b in &expected {
        assert!(
            store
                .external_id(&bid("salon"), "booking", b, system)
                .await
                .unwrap()
                .is_some(),
            "{b} is linked to its lead"
        );
    }
    // Every attempt is journaled.
    let journal = read_journal(&store, &JournalFilter::default())
        .await
        .unwrap();
    let attempts: i64 = queue
        .jobs_in_state(JobState::Done)
        .await
        .unwrap()
        .iter()
        .map(|j| j.attempts)
        .sum();
    assert_eq!(
        journal.len() as i64,
        attempts,
        "[{system}] a journal row per attempt"
    );
    match &crm {
        CrmFake::Amo(f) => {
            assert!(
                c.max_per_second <= support::fake_amocrm::MAX_RPS
                    && f.max_per_second() <= support::fake_amocrm::MAX_RPS,
                "[amocrm] {} requests/s sent, {} seen by the CRM",
                c.max_per_second,
                f.max_per_second()
            );
        }
        CrmFake::Bitrix(f) => {
            assert!(
                f.max_level() <= support::fake_bitrix24::BUCKET_LIMIT,
                "[bitrix24] the bucket reached {}",
                f.max_level()
            );
        }
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_against_amocrm_no_duplicate_contacts_or_leads_under_the_rate_limit() {
    crm_chaos(
        CrmFake::Amo(support::fake_amocrm::FakeAmo::start().await),
        30,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_against_bitrix24_no_duplicate_contacts_or_deals_and_the_bucket_holds() {
    crm_chaos(
        CrmFake::Bitrix(support::fake_bitrix24::FakeBitrix::start().await),
        12,
    )
    .await;
}

/// `zapis queue retry` with `--business` touches only that business's jobs, and a pending job
/// waiting out its backoff is run now rather than refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_retry_keeps_to_one_business_and_runs_a_waiting_job_now() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("retry.db").display());
    let store = Store::connect(&url).await.unwrap();
    let queue = Queue::new(store.clone());
    let now = chrono::Utc::now();
    let mut ids = HashMap::new();
    for (i, (business, state)) in [("a", "dead"), ("b", "dead"), ("a", "pending")]
        .into_iter()
        .enumerate()
    {
        let job = NewJob {
            business_id: bid(business),
            ..jobs(3, 3)[i].clone()
        };
        let id = queue.enqueue(&job, now).await.unwrap().unwrap();
        // Dead, or pending with its next try an hour away.
        sqlx::query("UPDATE sync_jobs SET state = $1, run_at = $2 WHERE id = $3")
            .bind(state)
            .bind((now + chrono::Duration::hours(1)).timestamp_millis())
            .bind(id)
            .execute(raw_pool(&store))
            .await
            .unwrap();
        ids.insert((business, state), id);
    }
    let zapis = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_zapis"))
            .args(["--store", &url, "queue", "retry"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let state = |id: i64| {
        let queue = queue.clone();
        async move { queue.job(id).await.unwrap().unwrap() }
    };

    // Another business's job is not found under this one.
    let b_dead = ids[&("b", "dead")].to_string();
    let (ok, text) = zapis(&[&b_dead, "--business", "a"]);
    assert!(!ok && text.contains("for business a"), "{text}");
    assert_eq!(state(ids[&("b", "dead")]).await.state, JobState::Dead);

    let (ok, text) = zapis(&["--dead", "--business", "a"]);
    assert!(ok && text.contains("1 dead job(s)"), "{text}");
    assert_eq!(state(ids[&("a", "dead")]).await.state, JobState::Pending);
    assert_eq!(state(ids[&("b", "dead")]).await.state, JobState::Dead);

    // A job waiting out its backoff runs now.
    let waiting = ids[&("a", "pending")];
    let (ok, text) = zapis(&[&waiting.to_string()]);
    assert!(ok && text.contains("runs now"), "{text}");
    let job = state(waiting).await;
    assert_eq!(job.state, JobState::Pending);
    assert!(job.run_at <= chrono::Utc::now(), "{:?}", job.run_at);
}

/// `zapis backup FILE` while `zapis worker` keeps writing to the store: the copy opens, holds
/// every job enqueued before it and is a store this zapis can run on; a second backup into the
/// same file is refused rather than overwriting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_store_is_written_is_a_complete_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("zapis.db");
    let url = format!("sqlite://{}", db.display());
    let config = Settings::single(&url, "Салон").write_in(dir.path());
    let store = zapis::store::Store::connect(&url).await.unwrap();
    let queue = zapis::sync::Queue::new(store.clone());
    let jobs: Vec<zapis::sync::NewJob> = (0..500)
        .map(|i| zapis::sync::NewJob {
            business_id: bid("default"),
            system: zapis::domain::System::Http,
            operation: "op".into(),
            payload: serde_json::json!({ "n": i }),
            idempotency_key: format!("k{i}"),
            ordering_key: None,
        })
        .collect();
    queue
        .enqueue_batch(&jobs, chrono::Utc::now())
        .await
        .unwrap();
    // A writer keeps going while the copy is taken.
    let writer = {
        let queue = queue.clone();
        tokio::spawn(async move {
            for i in 500..1500 {
                let job = zapis::sync::NewJob {
                    business_id: bid("default"),
                    system: zapis::domain::System::Http,
                    operation: "op".into(),
                    payload: serde_json::json!({ "n": i }),
                    idempotency_key: format!("k{i}"),
                    ordering_key: None,
                };
                queue.enqueue(&job, chrono::Utc::now()).await.unwrap();
            }
        })
    };
    let copy = dir.path().join("backup.db");
    let backup = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_zapis"))
            .args(["backup", "--config"])
            .arg(&config)
            .arg(&copy)
            .output()
            .expect("zapis backup runs")
    };
    let out = backup();
    assert!(out.status.success(), "{out:?}");
    writer.await.unwrap();
    let saved = zapis::store::Store::open_existing(&format!("sqlite://{}", copy.display()))
        .await
        .expect("the copy is a store at this zapis's schema");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sync_jobs")
        .fetch_one(raw_pool(&saved))
        .await
        .unwrap();
    assert!((500..=1500).contains(&n), "{n} jobs in the copy");
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM sync_jobs ORDER BY id")
        .fetch_all(raw_pool(&saved))
        .await
        .unwrap();
    assert_eq!(
        ids,
        (1..=n).collect::<Vec<_>>(),
        "a prefix of the writes, no gaps"
    );
    let again = backup();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists already"),
        "{again:?}"
    );
}
