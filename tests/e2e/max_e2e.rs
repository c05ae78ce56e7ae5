//! The real `zapis run` binary against the fake MAX Bot API over HTTP: a client arrives with a
//! `bot_started` deep-link payload, books in the sandbox salon across a restart of the service
//! (the marker is kept, no update is lost or handled twice), and cancels from "my bookings".
//! Also: `zapis check` for MAX, and Telegram and MAX running side by side.

use crate::support;
use crate::support::bid;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::app::Settings;
use support::fake_max::FakeMax;
use support::fake_telegram::FakeTelegram;
use support::scenario::{self, Scenario, Step};
use zapis::domain::{BookingStatus, Channel};
use zapis::store::Store;

const WAIT: Duration = Duration::from_secs(20);

struct Service {
    child: Child,
}

impl Service {
    fn start(config: &Path) -> Service {
        let child = Command::new(env!("CARGO_BIN_EXE_zapis"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .env_remove("ZAPIS_TELEGRAM__TOKEN")
            .env_remove("ZAPIS_MAX__TOKEN")
            .stdin(Stdio::null())
            .spawn()
            .expect("zapis run starts");
        Service { child }
    }

    /// Stops the service the way a supervisor does (SIGTERM) and waits for it to exit.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        for _ in 0..200 {
            if let Some(exit) = self.child.try_wait().expect("wait on zapis") {
                assert!(exit.success(), "zapis run exited with {exit}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("zapis run did not stop within 10 s of SIGTERM");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The salon with no messenger yet.
fn salon(store_url: &str) -> Settings {
    Settings::single(store_url, "Салон «Лилия»").set("business.address", "Москва, ул. Пушкина, 10")
}

fn steps(name: &'static str, steps: Vec<Step>) -> Scenario {
    Scenario { name, steps }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_books_from_a_max_deep_link_across_a_restart_and_cancels() {
    use Step::*;
    let fake = FakeMax::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = salon(&store_url).max(&fake).write_in(dir.path());
    let user = fake.user(4242);

    let service = Service::start(&config);
    let first_half = steps(
        "max e2e, before the restart",
        vec![
            Start(Some("src_landing")),
            ExpectText("Салон «Лилия»"),
            PressLabel("Записаться"),
            PressLabel("Женская стрижка"),
            ExpectText("мастер"),
        ],
    );
    scenario::run(&first_half, &user).await;
    let last_before = fake.last_pos();
    fake.wait_for_committed(last_before, WAIT).await;

    // The service restarts between two updates; it resumes from its stored marker.
    service.stop();
    // Pacing state lives in the process; a real restart takes longer than MAX's one-second
    // window, this one might not.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let polls_before = fake.calls_of("GET /updates").len();
    let service = Service::start(&config);
    let second_half = steps(
        "max e2e, after the restart",
        vec![
            PressLabel("Любой мастер"),
            PressKind("d:"),
            PressKind("t:"),
            PressLabel("Согласен"),
            ExpectContactRequest,
            ShareContact("+7 912 345-67-89"),
            ExpectText("имя"),
            SendText("Анна"),
            ExpectText("Проверьте запись"),
            PressLabel("Подтвердить"),
            ExpectText("вы записаны"),
        ],
    );
    scenario::run(&second_half, &user).await;
    let resumed = &fake.calls_of("GET /updates")[polls_before];
    let marker: i64 = resumed
        .query
        .get("marker")
        .expect("the restarted service passes its stored marker")
        .parse()
        .unwrap();
    assert_eq!(marker, last_before + 1);

    let store = Store::connect(&store_url).await.unwrap();
    let bookings = store.bookings(&bid("default")).await.unwrap();
    assert_eq!(bookings.len(), 1, "{bookings:#?}");
    let booking = &bookings[0];
    assert_eq!(booking.status, BookingStatus::Booked);
    assert_eq!(booking.source.payload.as_deref(), Some("src_landing"));
    assert_eq!(booking.source.channel, Channel::Max);
    assert_eq!(booking.client_phone.as_str(), "+79123456789");
    assert_eq!(booking.client_name, "Анна");
    assert_eq!(booking.chat.as_ref().map(|c| c.channel), Some(Channel::Max));

    let cancel = steps(
        "max e2e, cancel",
        vec![
            PressLabel("Мои записи"),
            PressLabel("Отменить"),
            PressLabel("Да, отменить"),
            ExpectText("Запись отменена"),
        ],
    );
    scenario::run(&cancel, &user).await;
    let booking = store
        .booking(&booking.business_id, &booking.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(booking.status, BookingStatus::CancelledByClient);

    // Each update was handed over once and so handled once: one answer per press.
    fake.wait_for_committed(fake.last_pos(), WAIT).await;
    let deliveries = fake.deliveries();
    assert_eq!(deliveries.len() as i64, fake.last_pos() - 25_493_970 + 1);
    assert!(deliveries.values().all(|n| *n == 1), "{deliveries:?}");
    let answers = fake.calls_of("POST /answers");
    let presses = [&first_half, &second_half, &cancel]
        .iter()
        .flat_map(|s| s.steps.iter())
        .filter(|s| matches!(s, PressLabel(_) | PressKind(_)))
        .count();
    assert_eq!(answers.len(), presses, "one answer per press");
    // MAX refuses an empty answer with 400; every one here was accepted, and each carried the
    // next screen or a notification.
    assert!(
        answers.iter().all(|c| c.status == 200),
        "{:?}",
        answers
            .iter()
            .filter(|c| c.status != 200)
            .map(|c| (&c.body, c.status))
            .collect::<Vec<_>>()
    );
    assert!(
        answers
            .iter()
            .all(|c| c.body.get("message").is_some() || c.body.get("notification").is_some())
    );
    // Screens that replace the pressed message travel in the answer, not in a separate edit.
    assert!(
        answers.iter().any(|c| c.body.get("message").is_some()),
        "no screen was sent as an answer"
    );
    assert!(
        fake.rate_violations().is_empty(),
        "{:?}",
        fake.rate_violations()
    );
    service.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_and_max_run_side_by_side_report_their_polls_and_stop_together() {
    let max = FakeMax::start().await;
    let tg = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let port = support::e2e::free_port();
    let config = salon(&store_url)
        .max(&max)
        .telegram(&tg)
        .http(port, "path-secret-0123456789")
        .write_in(dir.path());
    let service = Service::start(&config);
    let on_max = max.user(1);
    on_max.start(None);
    let on_tg = tg.user(2);
    on_tg.send_text("/start");
    on_max.wait_for_text("Салон «Лилия»", WAIT).await;
    on_tg.wait_for_text("Салон «Лилия»", WAIT).await;

    // Both poll loops report to /health/ready; MAX failing its polls makes it not ready
    // until a poll is answered again.
    let ready = ready_with(port, 200).await;
    let poller = |ready: &serde_json::Value, name: &str| {
        ready["pollers"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["messenger"] == name).cloned())
            .unwrap_or_else(|| panic!("{name} in {ready}"))
    };
    assert_eq!(poller(&ready, "telegram")["state"], "up", "{ready}");
    assert_eq!(poller(&ready, "max")["state"], "up", "{ready}");
    let outage = support::fake_max::Failure::Custom {
        status: 503,
        body: serde_json::json!({"code": "service.unavailable", "message": "try later"}),
    };
    max.fail_next("GET /updates", outage);
    // An update ends the poll in flight, so the next one meets the outage; the poll after it
    // waits for an update, and only its answer shows MAX is back.
    on_max.send_text("/start");
    let down = ready_with(port, 503).await;
    assert_eq!(poller(&down, "max")["state"], "down", "{down}");
    assert!(poller(&down, "max")["since"].is_string(), "{down}");
    assert_eq!(poller(&down, "telegram")["state"], "up", "{down}");
    for _ in 0..(WAIT.as_millis() / 50) {
        let failed = max
            .calls_of("GET /updates")
            .iter()
            .filter(|c| c.status == 503)
            .count();
        if failed == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    on_max.send_text("/start");
    let back = ready_with(port, 200).await;
    assert_eq!(poller(&back, "max")["state"], "up", "{back}");

    // The same for Telegram, whose failed polls teloxide reports and whose answered ones show
    // by the updates they bring.
    // (A 5xx would do too, but teloxide holds a 5xx answer 10 s before it reports it.)
    tg.fail_next("getUpdates", support::fake_telegram::Failure::Conflict);
    on_tg.send_text("/start");
    let down = ready_with(port, 503).await;
    assert_eq!(poller(&down, "telegram")["state"], "down", "{down}");
    assert!(
        poller(&down, "telegram")["last_error"].is_string(),
        "{down}"
    );
    assert_eq!(poller(&down, "max")["state"], "up", "{down}");
    on_tg.send_text("/start");
    let back = ready_with(port, 200).await;
    assert_eq!(poller(&back, "telegram")["state"], "up", "{back}");
    service.stop();
}

/// MAX cannot be reached when the service starts: the service runs (its HTTP face answers,
/// `/health/ready` says the MAX poller is down), and once MAX answers the bot starts and a
/// client is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_max_unreachable_runs_and_the_bot_follows_when_it_answers() {
    let max = FakeMax::start_closed().await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let port = support::e2e::free_port();
    let config = salon(&store_url)
        .max(&max)
        .http(port, "path-secret-0123456789")
        .write_in(dir.path());
    let service = Service::start(&config);

    let poller = |ready: &serde_json::Value| ready["pollers"][0].clone();
    let mut down = ready_with(port, 503).await;
    for _ in 0..(WAIT.as_millis() / 100) {
        if poller(&down)["state"] == "down" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        down = ready_with(port, 503).await;
    }
    assert_eq!(poller(&down)["messenger"], "max", "{down}");
    assert_eq!(poller(&down)["state"], "down", "{down}");
    assert!(poller(&down)["last_error"].is_string(), "{down}");

    max.open();
    let user = max.user(31);
    user.start(None);
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    let up = ready_with(port, 200).await;
    assert_eq!(poller(&up)["state"], "up", "{up}");
    service.stop();
}

/// Polls `/health/ready` until it answers `status`; returns its JSON body.
async fn ready_with(port: u16, status: u16) -> serde_json::Value {
    let mut last = String::new();
    for _ in 0..(WAIT.as_millis() / 100) {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/health/ready")).await {
            let code = r.status().as_u16();
            last = r.text().await.unwrap_or_default();
            if code == status {
                return serde_json::from_str(&last).expect("/health/ready is JSON");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/health/ready never answered {status}; last body: {last}");
}

fn check(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["check", "--config"])
        .arg(config)
        .env_remove("ZAPIS_MAX__TOKEN")
        .output()
        .expect("zapis check runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tells_reachable_and_bad_credentials_for_max() {
    let fake = FakeMax::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = salon(&store_url).max(&fake).write_in(dir.path());
    let (ok, out) = tokio::task::spawn_blocking(move || check(&config))
        .await
        .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("max: reachable (@zapis_bot)"), "{out}");

    let config = salon(&store_url)
        .max(&fake)
        .set("max.token", "wrong-token")
        .write_in(dir.path());
    let (ok, out) = tokio::task::spawn_blocking(move || check(&config))
        .await
        .unwrap();
    assert!(!ok, "{out}");
    assert!(out.contains("max: bad credentials"), "{out}");
    assert!(!out.contains("wrong-token"), "{out}");
}

/// Webhook mode: MAX posts updates to our HTTP endpoint with its secret header; a deep-link
/// start is answered through the same dialog, a forged or repeated delivery changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_answers_updates_posted_by_max() {
    let fake = FakeMax::start().await;
    let user = fake.user(1234567890);
    let dir = tempfile::tempdir().unwrap();
    let port = support::e2e::free_port();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let path = Settings::single(&store_url, "Салон «Лилия»")
        .max(&fake)
        .set("max.mode", "webhook")
        .set(
            "max.webhook_url",
            "https://zapis.example/webhooks/max/path-secret-0123456789",
        )
        .set("max.webhook_secret", "max_header_secret")
        .set("sync.poll", "100ms")
        .http(port, "path-secret-0123456789")
        .write_in(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/contracts/max/webhook-bot-started-deeplink.json"
    ))
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/webhooks/max/path-secret-0123456789");
    let client = reqwest::Client::new();
    let post = |secret: &'static str| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-max-bot-api-secret", secret)
            .body(body.clone())
            .send()
    };
    let mut status = None;
    for _ in 0..100 {
        if let Ok(resp) = post("forged").await {
            status = Some(resp.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status,
        Some(401),
        "a delivery without MAX's secret is refused"
    );
    assert_eq!(post("max_header_secret").await.unwrap().status(), 200);
    assert_eq!(post("max_header_secret").await.unwrap().status(), 200);
    user.wait_for_text("Салон «Лилия»", Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let greetings = user
        .history()
        .iter()
        .filter(|m| m.text.contains("Салон «Лилия»"))
        .count();
    assert_eq!(greetings, 1, "a repeated delivery is processed once");
    let _ = child.kill();
    let _ = child.wait();
}
