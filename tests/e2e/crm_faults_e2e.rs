//! One booking, one contact, one lead, one transcript, one task — after any single failure at
//! any step of the CRM job, through the real `zapis run` in its default CRM configuration.
//!
//! For amoCRM and for Bitrix24 (deal mode), each step of the job (contact, lead, transcript
//! note, task) meets each kind of fault once: a 5xx before the write, the write done and its
//! answer cut off, the write done and its answer held past our 1 s timeout. Twelve clients book
//! through Telegram, each meeting one fault (the fake matches the fault on the client's name in
//! the request body), and the CRM must end with exactly one of everything per booking. The
//! measured table is printed (run with `--nocapture` to see it).

use crate::support;
use support::e2e::free_port;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::app::Settings;
use support::e2e::{Service, WAIT, book_first_slot};
use support::fake_amocrm::{self as amo_fake, FakeAmo};
use support::fake_bitrix24::{self as b24_fake, FakeBitrix};
use support::fake_telegram::{FakeTelegram, FakeUser, TOKEN};
use zapis::store::test_support::raw_pool;

const TRANSCRIPT_HEADER: &str = "Переписка с ботом";
const SECRET: &str = "webhook-secret-0123456789";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Contact,
    Lead,
    Transcript,
    Task,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// 500 before anything is written.
    Refused,
    /// Written; the connection breaks while the answer is on its way.
    AnswerLost,
    /// Written; the answer arrives 2.5 s later, past the client's 1 s timeout.
    AnswerLate,
}

const STEPS: [Step; 4] = [Step::Contact, Step::Lead, Step::Transcript, Step::Task];
const FAULTS: [Fault; 3] = [Fault::Refused, Fault::AnswerLost, Fault::AnswerLate];
/// One client per case; none of these names is part of another or of a master's name.
const NAMES: [&str; 12] = [
    "Алиса",
    "Борис",
    "Варвара",
    "Григорий",
    "Дарья",
    "Евгений",
    "Жанна",
    "Захар",
    "Инна",
    "Кирилл",
    "Лидия",
    "Марк",
];

struct Case {
    step: Step,
    fault: Fault,
    name: &'static str,
    phone: String,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for step in STEPS {
        for fault in FAULTS {
            let i = out.len();
            out.push(Case {
                step,
                fault,
                name: NAMES[i],
                phone: format!("+7 912 555-{:02}-{:02}", 10 + i, 20 + i),
            });
        }
    }
    out
}

/// What the CRM holds for one booking, and what its client saw.
#[derive(Debug)]
struct Row {
    contacts: usize,
    leads: usize,
    transcripts: usize,
    tasks: usize,
    told_booked: usize,
    /// What else the client was sent after "вы записаны" (a reminder may come; a false word
    /// about the booking must not).
    told_after: Vec<String>,
}

impl Row {
    fn done(&self) -> bool {
        self.contacts >= 1 && self.leads >= 1 && self.transcripts >= 1 && self.tasks >= 1
    }
}

enum Crm {
    Amo(FakeAmo),
    Bitrix(FakeBitrix),
}

impl Crm {
    fn label(&self) -> &'static str {
        match self {
            Crm::Amo(_) => "amoCRM",
            Crm::Bitrix(_) => "Bitrix24 (deal mode)",
        }
    }

    /// `settings` with this CRM as configured by default: no booking id field named, only a
    /// short timeout.
    fn settings(&self, settings: Settings) -> Settings {
        match self {
            Crm::Amo(amo) => settings
                .amocrm_minimal(amo)
                .set("crm.amocrm.timeout_secs", 1),
            Crm::Bitrix(b24) => settings.bitrix24(b24).set("crm.bitrix24.timeout_secs", 1),
        }
    }

    fn inject(&self, case: &Case) {
        match self {
            Crm::Amo(amo) => {
                let path = match case.step {
                    Step::Contact => "/api/v4/contacts",
                    Step::Lead => "/api/v4/leads",
                    Step::Transcript => "/api/v4/leads/notes",
                    Step::Task => "/api/v4/tasks",
                };
                let kind = match case.fault {
                    Fault::Refused => amo_fake::FaultKind::Before(500),
                    Fault::AnswerLost => amo_fake::FaultKind::AfterDrop,
                    Fault::AnswerLate => amo_fake::FaultKind::AfterDelay(2500),
                };
                amo.fault("POST", path, Some(case.name), kind);
            }
            Crm::Bitrix(b24) => {
                let method = match case.step {
                    Step::Contact => "crm.contact.add",
                    Step::Lead => "crm.deal.add",
                    Step::Transcript => "crm.timeline.comment.add",
                    Step::Task => "crm.activity.todo.add",
                };
                let kind = match case.fault {
                    Fault::Refused => b24_fake::FaultKind::Before(500),
                    Fault::AnswerLost => b24_fake::FaultKind::AfterDrop,
                    Fault::AnswerLate => b24_fake::FaultKind::AfterDelay(2500),
                };
                b24.fault(method, Some(case.name), kind);
            }
        }
    }

    fn faults_fired(&self) -> usize {
        match self {
            Crm::Amo(amo) => amo.fired().len(),
            Crm::Bitrix(b24) => b24.fired().len(),
        }
    }

    fn pending(&self) -> String {
        match self {
            Crm::Amo(amo) => format!("{:?}", amo.pending_faults()),
            Crm::Bitrix(b24) => format!("{:?}", b24.pending_faults()),
        }
    }

    fn row(&self, case: &Case, user: &FakeUser) -> Row {
        let digits: String = case.phone.chars().filter(char::is_ascii_digit).collect();
        let history = user.history();
        let booked_at = history.iter().position(|m| m.text.contains("вы записаны"));
        let told_booked = history
            .iter()
            .filter(|m| m.text.contains("вы записаны"))
            .count();
        let told_after: Vec<String> = booked_at
            .map(|i| history[i + 1..].iter().map(|m| m.text.clone()).collect())
            .unwrap_or_default();
        let has_phone = |v: &Value| {
            let d: String = v
                .as_str()
                .unwrap_or_default()
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            d == digits
        };
        match self {
            Crm::Amo(amo) => {
                let contacts = amo
                    .contacts()
                    .iter()
                    .filter(|c| {
                        c["custom_fields_values"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .flat_map(|f| f["values"].as_array().into_iter().flatten())
                            .any(|v| has_phone(&v["value"]))
                    })
                    .count();
                let leads: Vec<Value> = amo
                    .leads()
                    .into_iter()
                    .filter(|l| {
                        l["name"]
                            .as_str()
                            .is_some_and(|n| n.ends_with(&format!("— {}", case.name)))
                    })
                    .collect();
                let mut transcripts = 0;
                let mut tasks = 0;
                for lead in &leads {
                    let id = lead["id"].to_string();
                    transcripts += amo
                        .notes_of(&id)
                        .iter()
                        .filter(|n| {
                            n["params"]["text"]
                                .as_str()
                                .is_some_and(|t| t.starts_with(TRANSCRIPT_HEADER))
                        })
                        .count();
                    tasks += amo
                        .tasks()
                        .iter()
                        .filter(|t| t["entity_id"] == lead["id"])
                        .count();
                }
                Row {
                    contacts,
                    leads: leads.len(),
                    transcripts,
                    tasks,
                    told_booked,
                    told_after,
                }
            }
            Crm::Bitrix(b24) => {
                let contacts = b24
                    .contacts()
                    .iter()
                    .filter(|c| {
                        c["PHONE"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|p| has_phone(&p["VALUE"]))
                    })
                    .count();
                let deals: Vec<Value> = b24
                    .deals()
                    .into_iter()
                    .filter(|d| {
                        d["TITLE"]
                            .as_str()
                            .is_some_and(|t| t.ends_with(&format!("— {}", case.name)))
                    })
                    .collect();
                let mut transcripts = 0;
                let mut tasks = 0;
                for deal in &deals {
                    let id = deal["ID"].as_str().unwrap_or_default().to_string();
                    transcripts += b24
                        .comments_of("deal", &id)
                        .iter()
                        .filter(|c| {
                            c["COMMENT"]
                                .as_str()
                                .is_some_and(|t| t.starts_with(TRANSCRIPT_HEADER))
                        })
                        .count();
                    tasks += b24
                        .activities()
                        .iter()
                        .filter(|a| a["ownerId"].to_string().trim_matches('"') == id)
                        .count();
                }
                Row {
                    contacts,
                    leads: deals.len(),
                    transcripts,
                    tasks,
                    told_booked,
                    told_after,
                }
            }
        }
    }
}

fn write_config(dir: &Path, tg: &FakeTelegram, crm: &Crm) {
    let store_url = format!("sqlite://{}", dir.join("zapis.db").display());
    crm.settings(Settings::single(&store_url, "Салон «Лилия»").telegram(tg))
        .set("sync.poll", "100ms")
        .write_in(dir);
}

async fn fault_table(crm: Crm) {
    let tg = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &tg, &crm);
    let cases = cases();
    for case in &cases {
        crm.inject(case);
    }
    let service = Service::start(&dir.path().join("zapis.toml"));
    let mut users = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let user = tg.user(3000 + i as i64);
        user.send_text("/start");
        user.wait_for_text("Салон «Лилия»", WAIT).await;
        let service_name = if i % 2 == 0 {
            "Женская стрижка"
        } else {
            "Маникюр"
        };
        book_first_slot(&user, service_name, &case.phone, case.name).await;
        user.wait_for_text("вы записаны", WAIT).await;
        users.push(user);
    }
    // A faulted step is retried on the engine's first backoff step (10 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let all_done = cases.iter().zip(&users).all(|(c, u)| crm.row(c, u).done());
        if (all_done && crm.faults_fired() == cases.len()) || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Late duplicates would come from retries still running: give them time to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut table = format!(
        "{}: step × fault → contacts, leads, transcripts, tasks; the client was told\n",
        crm.label()
    );
    let mut wrong = Vec::new();
    for (case, user) in cases.iter().zip(&users) {
        let row = crm.row(case, user);
        table.push_str(&format!(
            "  {:<10} {:<11} → {} contact, {} lead, {} transcript, {} task; \"вы записаны\" ×{}, then {:?}\n",
            format!("{:?}", case.step),
            format!("{:?}", case.fault),
            row.contacts,
            row.leads,
            row.transcripts,
            row.tasks,
            row.told_booked,
            row.told_after
        ));
        // Nothing the CRM does may reach the client as news about the booking.
        let false_word = row.told_after.iter().any(|t| {
            let t = t.to_lowercase();
            ["не удалось", "отмен", "занят", "ошибк"]
                .iter()
                .any(|w| t.contains(w))
        });
        let counts = (
            row.contacts,
            row.leads,
            row.transcripts,
            row.tasks,
            row.told_booked,
        );
        if counts != (1, 1, 1, 1, 1) || false_word {
            wrong.push(format!("{:?} × {:?}: {row:?}", case.step, case.fault));
        }
    }
    eprintln!("{table}");
    service.stop();
    assert_eq!(
        crm.faults_fired(),
        cases.len(),
        "{}: faults never met (the step never made that call): {}\n{table}",
        crm.label(),
        crm.pending()
    );
    assert!(
        wrong.is_empty(),
        "{}:\n{}\n{table}",
        crm.label(),
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amocrm_default_config_one_of_everything_after_any_single_fault() {
    let amo = FakeAmo::start().await;
    fault_table(Crm::Amo(amo)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_default_config_one_of_everything_after_any_single_fault() {
    let b24 = FakeBitrix::start().await;
    fault_table(Crm::Bitrix(b24)).await;
}

/// Runs `zapis <command> --config <config> <rest>` and returns its standard output.
fn zapis(command: &[&str], config: &Path, rest: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(command)
        .arg("--config")
        .arg(config)
        .args(rest)
        .env("RUST_LOG", "warn")
        .output()
        .expect("zapis runs");
    assert!(
        out.status.success(),
        "zapis {command:?} {rest:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `/health/ready` until it answers `status`; returns its JSON body.
async fn ready_with(port: u16, status: u16) -> Value {
    let http = reqwest::Client::new();
    let mut last = String::new();
    for _ in 0..(WAIT.as_millis() / 100) {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/health/ready"))
            .send()
            .await
        {
            let code = r.status().as_u16();
            last = r.text().await.unwrap_or_default();
            if code == status {
                return serde_json::from_str(&last)
                    .unwrap_or_else(|e| panic!("/health/ready is JSON ({e}): {last}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/health/ready never answered {status}; last body: {last}");
}

fn integration<'a>(ready: &'a Value, system: &str) -> &'a Value {
    ready["integrations"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["system"] == system))
        .unwrap_or_else(|| panic!("{system} in {ready}"))
}

/// The value of the sample of `name` whose labels include all of `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&prometheus_parse::Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    match found.as_slice() {
        [one] => match &one.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.last().map(|b| b.count).unwrap_or_default()
            }
            other => panic!("{name}: unexpected {other:?}"),
        },
        _ => panic!(
            "{name}{labels:?}: {} samples among {:#?}",
            found.len(),
            scrape
                .samples
                .iter()
                .filter(|s| s.metric.starts_with("zapis_"))
                .map(|s| format!("{} {:?} {:?}", s.metric, s.labels, s.value))
                .collect::<Vec<_>>()
        ),
    }
}

/// While amoCRM is down, `/health/ready` says so (503, since when, the last error) and the
/// failed delivery is a WARN line with its system and job; once amoCRM is back and the job
/// delivered, it is ready again. `/metrics` counted the booking under its tracked link, the
/// dialog start, both attempts and the delivery's latency; the log has one line for the
/// booking with its source and no phone in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_an_amocrm_outage_and_metrics_and_log_show_the_booking() {
    let tg = FakeTelegram::start().await;
    let amo = FakeAmo::start().await;
    let crm = Crm::Amo(amo.clone());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = crm
        .settings(Settings::single(&store_url, "Салон «Лилия»").telegram(&tg))
        .set("sync.poll", "100ms")
        .http(port, SECRET)
        .set("http.metrics", true)
        .set("log.format", "json")
        .write_in(dir.path());
    let created = zapis(&["link", "create"], &config, &["--name", "spring"]);
    let token = created
        .split_whitespace()
        .find(|w| w.starts_with("l_"))
        .unwrap_or_else(|| panic!("a link token in {created}"))
        .to_string();

    let log = dir.path().join("zapis.log");
    let service = Service::start_logging_at(&config, &log, "info");
    let ready = ready_with(port, 200).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"]["reachable"], true);
    assert_eq!(integration(&ready, "amocrm")["state"], "up");
    assert_eq!(ready["pollers"][0]["messenger"], "telegram");
    assert_eq!(ready["pollers"][0]["state"], "up");
    let live = reqwest::get(format!("http://127.0.0.1:{port}/health/live"))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    amo.set_down(true);
    let user = tg.user(7001);
    user.send_text(&format!("/start {token}"));
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    book_first_slot(&user, "Женская стрижка", "+7 912 345-67-89", "Анна").await;
    user.wait_for_text("вы записаны", WAIT).await;

    let down = ready_with(port, 503).await;
    assert_eq!(down["status"], "not_ready");
    assert_eq!(down["store"]["reachable"], true);
    let amo_state = integration(&down, "amocrm");
    assert_eq!(amo_state["state"], "down", "{down}");
    assert!(amo_state["since"].is_string(), "{down}");
    assert!(
        amo_state["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("Service unavailable")),
        "{down}"
    );
    assert_eq!(integration(&down, "telegram")["state"], "up", "{down}");

    amo.set_down(false);
    let store = zapis::store::Store::connect(&store_url).await.unwrap();
    let (job_id,): (i64,) =
        sqlx::query_as("SELECT id FROM sync_jobs WHERE system = 'amocrm' AND state = 'pending'")
            .fetch_one(raw_pool(&store))
            .await
            .unwrap();
    // The backoff would retry in 10 s; the operator's command runs it now.
    zapis(&["queue"], &config, &["retry", &job_id.to_string()]);
    let back = ready_with(port, 200).await;
    let amo_state = integration(&back, "amocrm");
    assert_eq!(amo_state["state"], "degraded", "{back}");
    assert!(amo_state["delivered"].as_i64() >= Some(1), "{back}");
    assert!(amo_state["failed"].as_i64() >= Some(1), "{back}");
    assert!(amo_state.get("since").is_none(), "{back}");

    // A webhook, its re-delivery, and one with a wrong secret.
    let form = amo.status_webhook_form("424242", 142, 143);
    let http = reqwest::Client::new();
    for secret in [SECRET, SECRET, "not-the-secret-at-all"] {
        http.post(format!("http://127.0.0.1:{port}/webhooks/amocrm/{secret}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
            .await
            .expect("the webhook is answered");
    }

    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text");
    let telegram_spring = [("channel", "telegram"), ("source", "spring")];
    assert_eq!(
        sample(&scrape, "zapis_bookings_total", &telegram_spring),
        1.0
    );
    assert_eq!(
        sample(&scrape, "zapis_dialog_starts_total", &telegram_spring),
        1.0
    );
    let amo_calls = |outcome| {
        sample(
            &scrape,
            "zapis_vendor_calls_total",
            &[("system", "amocrm"), ("outcome", outcome)],
        )
    };
    assert!(amo_calls("transient") >= 1.0, "{text}");
    assert!(amo_calls("ok") >= 1.0, "{text}");
    assert!(
        sample(
            &scrape,
            "zapis_jobs",
            &[("system", "amocrm"), ("state", "done")]
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &scrape,
            "zapis_jobs",
            &[("system", "amocrm"), ("state", "pending")]
        ),
        0.0,
        "{text}"
    );
    assert!(
        sample(&scrape, "zapis_delivery_seconds", &[("system", "amocrm")]) >= 1.0,
        "{text}"
    );
    for (result, n) in [("stored", 1.0), ("duplicate", 1.0), ("refused", 1.0)] {
        let labels = [("source", "amocrm"), ("result", result)];
        assert_eq!(
            sample(&scrape, "zapis_webhooks_total", &labels),
            n,
            "{text}"
        );
    }
    service.stop();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let booked: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "booked")
        .collect();
    assert_eq!(booked.len(), 1, "one line per booking: {text}");
    let booked = booked[0];
    assert_eq!(booked["level"], "INFO");
    assert_eq!(booked["fields"]["source"], "spring");
    assert_eq!(booked["fields"]["channel"], "telegram");
    assert_eq!(booked["fields"]["payload"], token.as_str());
    let phone = booked["fields"]["phone"].as_str().unwrap_or_default();
    assert!(phone.contains('*') && !phone.contains("345"), "{booked}");
    assert!(!text.contains("9123456789"), "no phone in clear: {text}");
    let failed = lines
        .iter()
        .find(|l| l["fields"]["message"] == "delivery failed; will retry")
        .unwrap_or_else(|| panic!("a failed-delivery line: {text}"));
    assert_eq!(failed["level"], "WARN");
    assert_eq!(failed["fields"]["system"], "amocrm");
    assert_eq!(failed["fields"]["job_id"], job_id);
    assert_eq!(failed["fields"]["attempt"], 1);
    assert!(failed["fields"]["next_run"].is_string(), "{failed}");
}

/// Telegram cannot be reached when the service starts: the service runs anyway (webhooks are
/// stored, `/health/ready` says the poller is down with its error, a WARN names Telegram
/// without its token), and once Telegram answers the bot starts and a client is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_telegram_unreachable_serves_webhooks_and_the_bot_follows_when_it_answers() {
    let tg = FakeTelegram::start_closed().await;
    let amo = FakeAmo::start().await;
    let crm = Crm::Amo(amo.clone());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = crm
        .settings(Settings::single(&store_url, "Салон «Лилия»").telegram(&tg))
        .set("sync.poll", "100ms")
        .http(port, SECRET)
        .write_in(dir.path());
    let log = dir.path().join("zapis.log");
    let service = Service::start_logging_at(&config, &log, "warn");

    let telegram = |ready: &Value| ready["pollers"][0].clone();
    let mut down = ready_with(port, 503).await;
    for _ in 0..(WAIT.as_millis() / 100) {
        if telegram(&down)["state"] == "down" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        down = ready_with(port, 503).await;
    }
    assert_eq!(telegram(&down)["messenger"], "telegram", "{down}");
    assert_eq!(telegram(&down)["state"], "down", "{down}");
    assert!(telegram(&down)["since"].is_string(), "{down}");
    assert!(telegram(&down)["last_error"].is_string(), "{down}");
    assert_eq!(down["store"]["reachable"], true, "{down}");

    // Meanwhile a vendor's webhook is taken in and stored.
    let form = amo.status_webhook_form("424242", 142, 143);
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/amocrm/{SECRET}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("the webhook is answered");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "ok");
    let store = zapis::store::Store::connect(&store_url).await.unwrap();
    let (stored,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM sync_inbox WHERE source = 'amocrm'")
            .fetch_one(raw_pool(&store))
            .await
            .unwrap();
    assert_eq!(stored, 1);

    tg.open();
    let user = tg.user(7101);
    user.send_text("/start");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    let up = ready_with(port, 200).await;
    assert_eq!(telegram(&up)["state"], "up", "{up}");
    service.stop();

    let text = std::fs::read_to_string(&log).unwrap();
    let warned = text
        .lines()
        .filter(|l| l.contains("Telegram cannot be reached at start"))
        .collect::<Vec<_>>();
    assert!(!warned.is_empty(), "{text}");
    assert!(warned.iter().all(|l| l.contains("telegram")), "{text}");
    assert!(!text.contains(TOKEN), "the token is never logged: {text}");
}

/// A deployment with no messenger that only relays a CRM's webhooks runs: the webhook is
/// stored and readiness lists no poller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhooks_only_deployment_runs_without_a_messenger() {
    let amo = FakeAmo::start().await;
    let crm = Crm::Amo(amo.clone());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = crm
        .settings(Settings::single(&store_url, "Салон «Лилия»").http(port, SECRET))
        .write_in(dir.path());
    let service = Service::start(&config);
    let ready = ready_with(port, 200).await;
    assert_eq!(ready["pollers"], serde_json::json!([]), "{ready}");
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/amocrm/{SECRET}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(amo.status_webhook_form("424243", 142, 143))
        .send()
        .await
        .expect("the webhook is answered");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "ok");
    service.stop();
}
