//! A booking made through Telegram ends up in the CRM exactly as a careful manager would have
//! typed it, through the real `zapis run` and its delivery engine, and a manager's "cancelled"
//! in the CRM comes back to the schedule and the client. The same story runs against amoCRM,
//! Bitrix24 in deal mode and Bitrix24 in lead mode:
//! - one contact, one lead (deal) in the right stage with the price and our booking id, the
//!   chat transcript and a task (to-do);
//! - a second booking from the same phone typed differently reuses the contact;
//! - a cancellation in the chat moves the lead to the cancelled stage, and the CRM's webhook
//!   about that move (our own change coming back) changes nothing more;
//! - a manager moving a lead to "cancelled" (webhook) cancels the visit in the schedule and
//!   tells the client;
//! - a manager's move whose webhook was lost is caught by the periodic reconciliation;
//! - a comment the client wrote before confirming is on the schedule's record and in the lead;
//! - the CRM's rate limit was never exceeded.

use crate::support;
use support::e2e::until;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::app::Settings;
use support::e2e::{Service, WAIT, book_first_slot, book_until_confirm, press_label};
use support::fake_amocrm::{self as amo_fake, FakeAmo};
use support::fake_bitrix24::{self as b24_fake, FakeBitrix};
use support::fake_telegram::{FakeTelegram, FakeUser};
use zapis::store::Store;
use zapis::store::test_support::raw_pool;

const SECRET: &str = "crm-hook-secret-0123456789";

fn custom_field(entity: &Value, field_id: i64) -> Option<String> {
    entity["custom_fields_values"]
        .as_array()?
        .iter()
        .find_map(|f| {
            (f["field_id"] == json!(field_id))
                .then(|| f["values"][0]["value"].as_str().map(str::to_string))
                .flatten()
        })
}

/// The CRM side of the story: one fake, seen through what a manager would look at.
enum Crm {
    Amo(FakeAmo),
    Bitrix { fake: FakeBitrix, deal_mode: bool },
}

impl Crm {
    /// `settings` with this CRM, reconciled every second.
    fn settings(&self, settings: Settings) -> Settings {
        match self {
            Crm::Amo(amo) => settings.amocrm(amo).set("crm.amocrm.loss_reason_id", 7),
            Crm::Bitrix { fake, deal_mode } => settings
                .bitrix24(fake)
                .set(
                    "crm.bitrix24.mode",
                    if *deal_mode { "deal" } else { "lead" },
                )
                .set(
                    "crm.bitrix24.category_id",
                    if *deal_mode { b24_fake::CATEGORY } else { 0 },
                )
                .set("crm.bitrix24.booking_id_field", b24_fake::BOOKING_FIELD)
                .set(
                    "crm.bitrix24.todo",
                    if *deal_mode { "activity" } else { "task" },
                )
                .set("crm.bitrix24.responsible_id", 5)
                .set(
                    "crm.bitrix24.application_token",
                    b24_fake::APPLICATION_TOKEN,
                )
                .set("crm.bitrix24.sources", json!({ "telegram": "UC_TELEGRAM" })),
        }
        .set("crm.reconcile_interval", "1s")
    }

    fn source(&self) -> &'static str {
        match self {
            Crm::Amo(_) => "amocrm",
            Crm::Bitrix { .. } => "bitrix24",
        }
    }

    fn entity(&self) -> &'static str {
        match self {
            Crm::Bitrix {
                deal_mode: true, ..
            } => "deal",
            _ => "lead",
        }
    }

    fn leads(&self) -> Vec<Value> {
        match self {
            Crm::Amo(amo) => amo.leads(),
            Crm::Bitrix {
                fake,
                deal_mode: true,
            } => fake.deals(),
            Crm::Bitrix { fake, .. } => fake.leads(),
        }
    }

    fn lead(&self, id: &str) -> Value {
        match self {
            Crm::Amo(amo) => amo.lead(id),
            Crm::Bitrix {
                fake,
                deal_mode: true,
            } => fake.deal(id),
            Crm::Bitrix { fake, .. } => fake.lead(id),
        }
    }

    fn lead_id(lead: &Value) -> String {
        match &lead["id"] {
            Value::Null => lead["ID"].as_str().expect("Bitrix24 ID").to_string(),
            id => id.to_string(),
        }
    }

    fn stage(&self, lead: &Value) -> String {
        match self {
            Crm::Amo(_) => lead["status_id"].to_string(),
            Crm::Bitrix {
                deal_mode: true, ..
            } => lead["STAGE_ID"].as_str().unwrap_or_default().to_string(),
            Crm::Bitrix { .. } => lead["STATUS_ID"].as_str().unwrap_or_default().to_string(),
        }
    }

    fn new_stage(&self) -> String {
        match self {
            Crm::Amo(_) => amo_fake::STATUS_NEW.to_string(),
            Crm::Bitrix {
                deal_mode: true, ..
            } => format!("C{}:NEW", b24_fake::CATEGORY),
            Crm::Bitrix { .. } => "NEW".into(),
        }
    }

    fn cancelled_stage(&self) -> String {
        match self {
            Crm::Amo(_) => amo_fake::LOST.to_string(),
            Crm::Bitrix {
                deal_mode: true, ..
            } => format!("C{}:LOSE", b24_fake::CATEGORY),
            Crm::Bitrix { .. } => "JUNK".into(),
        }
    }

    fn price(&self, lead: &Value) -> String {
        match self {
            Crm::Amo(_) => lead["price"].to_string(),
            Crm::Bitrix { .. } => lead["OPPORTUNITY"].as_str().unwrap_or_default().to_string(),
        }
    }

    fn booking_id(&self, lead: &Value) -> Option<String> {
        match self {
            Crm::Amo(_) => custom_field(lead, amo_fake::FIELD_BOOKING_ID),
            Crm::Bitrix { .. } => lead[b24_fake::BOOKING_FIELD].as_str().map(str::to_string),
        }
    }

    fn transcript(&self, lead_id: &str) -> String {
        match self {
            Crm::Amo(amo) => amo
                .notes_of(lead_id)
                .iter()
                .map(|n| n.to_string())
                .collect(),
            Crm::Bitrix { fake, .. } => fake
                .comments_of(self.entity(), lead_id)
                .iter()
                .map(|c| c["COMMENT"].to_string())
                .collect(),
        }
    }

    /// Tasks or to-dos set for the manager.
    fn tasks(&self) -> usize {
        match self {
            Crm::Amo(amo) => amo.tasks().len(),
            Crm::Bitrix {
                fake,
                deal_mode: true,
            } => fake.activities().len(),
            Crm::Bitrix { fake, .. } => fake.tasks().len(),
        }
    }

    /// How many client records the CRM holds: contacts, and in lead mode the leads' own
    /// phones for clients without a contact.
    fn client_records(&self) -> usize {
        match self {
            Crm::Amo(amo) => amo.contacts().len(),
            Crm::Bitrix { fake, .. } => fake.contacts().len(),
        }
    }

    fn debug_clients(&self) -> String {
        match self {
            Crm::Amo(amo) => format!("{:#?}", amo.contacts()),
            Crm::Bitrix { fake, .. } => format!("{:#?} calls {:?}", fake.contacts(), fake.calls()),
        }
    }

    /// A manager drags the lead to "cancelled"; returns the webhook body the CRM then sends.
    fn manager_cancels(&self, lead_id: &str) -> String {
        match self {
            Crm::Amo(amo) => {
                let old = amo.move_by_manager(lead_id, amo_fake::LOST);
                amo.status_webhook_form(lead_id, amo_fake::LOST, old)
            }
            Crm::Bitrix { fake, .. } => {
                fake.move_by_manager(self.entity(), lead_id, &self.cancelled_stage());
                self.update_event(lead_id)
            }
        }
    }

    /// The webhook the CRM sends about a stage change zapis made itself.
    fn echo_of_our_cancel(&self, lead_id: &str) -> String {
        match self {
            Crm::Amo(amo) => amo.status_webhook_form(lead_id, amo_fake::LOST, amo_fake::STATUS_NEW),
            Crm::Bitrix { .. } => self.update_event(lead_id),
        }
    }

    fn update_event(&self, lead_id: &str) -> String {
        let Crm::Bitrix { fake, deal_mode } = self else {
            unreachable!("Bitrix24 only")
        };
        let code = if *deal_mode {
            "ONCRMDEALUPDATE"
        } else {
            "ONCRMLEADUPDATE"
        };
        fake.event_form(code, lead_id)
    }

    fn assert_rate_kept(&self) {
        match self {
            Crm::Amo(amo) => assert!(
                amo.max_per_second() <= amo_fake::MAX_RPS,
                "amoCRM saw {} requests in a second",
                amo.max_per_second()
            ),
            Crm::Bitrix { fake, .. } => {
                assert!(
                    fake.max_level() <= b24_fake::BUCKET_LIMIT,
                    "the portal's bucket reached {}",
                    fake.max_level()
                );
                assert_eq!(fake.throttled(), 0, "QUERY_LIMIT_EXCEEDED answers");
            }
        }
    }
}

fn write_config(dir: &Path, tg: &FakeTelegram, crm: &Crm) -> (String, u16) {
    let store_url = format!("sqlite://{}", dir.join("zapis.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = Settings::single(&store_url, "Салон «Лилия»")
        .set("business.address", "Москва, ул. Пушкина, 10")
        .telegram(tg)
        .set("sync.poll", "100ms")
        .http(port, SECRET);
    crm.settings(settings).write_in(dir);
    (store_url, port)
}

async fn post_webhook(port: u16, source: &str, body: String) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}/webhooks/{source}/{SECRET}"
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("webhook delivered")
        .status()
}

async fn book(user: &FakeUser, start: &str, service: &str, phone: &str) {
    user.send_text(start);
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    book_first_slot(user, service, phone, "Анна").await;
    user.wait_for_text("вы записаны", WAIT).await;
}

async fn record_status(store: &Store, booking_id: &str) -> String {
    use sqlx::Row;
    sqlx::query("SELECT status FROM sandbox_records WHERE booking_id = $1")
        .bind(booking_id)
        .fetch_one(raw_pool(store))
        .await
        .expect("the schedule record")
        .try_get::<String, _>("status")
        .expect("status")
}

async fn record_comment(store: &Store, booking_id: &str) -> String {
    use sqlx::Row;
    sqlx::query("SELECT comment FROM sandbox_records WHERE booking_id = $1")
        .bind(booking_id)
        .fetch_one(raw_pool(store))
        .await
        .expect("the schedule record")
        .try_get::<String, _>("comment")
        .expect("comment")
}

fn told_of_cancel(user: &FakeUser) -> usize {
    user.history()
        .iter()
        .filter(|m| m.text.contains("Салон отменил вашу запись"))
        .count()
}

async fn two_way_story(crm: Crm) {
    let tg = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (store_url, port) = write_config(dir.path(), &tg, &crm);
    let service = Service::start(&dir.path().join("zapis.toml"));
    let label = crm.source().to_string() + " " + crm.entity();

    // A booking from a deep link: contact, lead, transcript, task.
    let ann = tg.user(1001);
    book(
        &ann,
        "/start src_landing",
        "Женская стрижка",
        "+7 912 345-67-89",
    )
    .await;
    until("one lead with a task", || {
        crm.leads().len() == 1 && crm.tasks() == 1
    })
    .await;
    let lead = crm.leads().remove(0);
    let first_id = Crm::lead_id(&lead);
    assert_eq!(crm.stage(&lead), crm.new_stage(), "{label}: {lead:#}");
    assert!(
        crm.price(&lead).starts_with("2000"),
        "{label}: {}",
        crm.price(&lead)
    );
    assert!(
        crm.booking_id(&lead).is_some(),
        "the lead carries our booking id"
    );
    until("the transcript", || {
        crm.transcript(&first_id).contains("/start src_landing")
    })
    .await;
    assert!(crm.transcript(&first_id).contains("Анна"), "{label}");
    let clients = crm.client_records();

    // The same phone typed the way people type it, from another chat: no second client.
    let same = tg.user(1002);
    book(&same, "/start", "Маникюр", "8 (912) 345 67 89").await;
    until("the second lead", || {
        crm.leads().len() == 2 && crm.tasks() == 2
    })
    .await;
    assert_eq!(
        crm.client_records(),
        clients,
        "{label}: no duplicate contact: {}",
        crm.debug_clients()
    );
    let second_id = crm
        .leads()
        .iter()
        .map(Crm::lead_id)
        .find(|id| *id != first_id)
        .expect("second lead");

    // Cancelled in the chat → the lead moves to the cancelled stage. Both bookings share the
    // phone, so "my bookings" lists both; which one is first depends on the free slots.
    press_label(&ann, "Мои записи").await;
    press_label(&ann, "Отменить").await;
    press_label(&ann, "Да, отменить").await;
    ann.wait_for_text("Запись отменена", WAIT).await;
    until("a lead moved to cancelled", || {
        crm.leads()
            .iter()
            .any(|l| crm.stage(l) == crm.cancelled_stage())
    })
    .await;
    let (cancelled_id, other_id) = if crm.stage(&crm.lead(&first_id)) == crm.cancelled_stage() {
        (first_id.clone(), second_id.clone())
    } else {
        (second_id.clone(), first_id.clone())
    };
    // The chat each booking was made from: the deep link is in the first one's transcript.
    let owner = |lead_id: &str| {
        if crm.transcript(lead_id).contains("src_landing") {
            &ann
        } else {
            &same
        }
    };
    let cancelled_booking = crm.booking_id(&crm.lead(&cancelled_id)).unwrap();
    let other_booking = crm.booking_id(&crm.lead(&other_id)).unwrap();

    // The CRM tells us about our own move: nothing more happens.
    let status = post_webhook(port, crm.source(), crm.echo_of_our_cancel(&cancelled_id)).await;
    assert!(status.is_success(), "{label}: {status}");

    // A manager cancels the other lead in the CRM → the visit is cancelled and the client told.
    let status = post_webhook(port, crm.source(), crm.manager_cancels(&other_id)).await;
    assert!(status.is_success(), "{label}: {status}");
    owner(&other_id)
        .wait_for_text("Салон отменил вашу запись", WAIT)
        .await;
    let store = Store::connect(&store_url).await.unwrap();
    assert_eq!(record_status(&store, &other_booking).await, "cancelled");

    // A manager cancels a third lead and the webhook is lost: reconciliation catches it. This
    // client writes a comment to the visit before confirming.
    let third = tg.user(1003);
    third.send_text("/start");
    third.wait_for_text("Салон «Лилия»", WAIT).await;
    book_until_confirm(&third, "Маникюр", "+7 913 000-11-22", "Вера").await;
    press_label(&third, "Добавить комментарий").await;
    third.wait_for_text("Напишите комментарий", WAIT).await;
    third.send_text("Аллергия на лак");
    third
        .wait_for_text("Комментарий: Аллергия на лак", WAIT)
        .await;
    press_label(&third, "Подтвердить").await;
    third.wait_for_text("вы записаны", WAIT).await;
    until("the third lead", || crm.leads().len() == 3).await;
    let third_id = crm
        .leads()
        .iter()
        .map(Crm::lead_id)
        .find(|id| *id != cancelled_id && *id != other_id)
        .expect("third lead");
    let third_booking = crm.booking_id(&crm.lead(&third_id)).unwrap();
    // The comment is on the schedule's record, with the source after it, and in the lead as a
    // note of its own, not only as a chat line.
    let record_comment = record_comment(&store, &third_booking).await;
    assert!(
        record_comment.starts_with("Аллергия на лак\nzapis: telegram"),
        "{label}: {record_comment}"
    );
    until("the comment in the lead", || {
        crm.transcript(&third_id)
            .contains("Комментарий клиента к визиту: Аллергия на лак")
    })
    .await;
    let _lost = crm.manager_cancels(&third_id);
    third.wait_for_text("Салон отменил вашу запись", WAIT).await;
    assert_eq!(record_status(&store, &third_booking).await, "cancelled");

    // Nobody was told twice, and the client who cancelled herself was not told at all.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        told_of_cancel(owner(&cancelled_id)),
        0,
        "{label}: echo reached the client"
    );
    assert_eq!(told_of_cancel(owner(&other_id)), 1, "{label}");
    assert_eq!(told_of_cancel(&third), 1, "{label}");
    assert_eq!(record_status(&store, &cancelled_booking).await, "cancelled");
    // A manager's cancel is not sent back to the CRM as a move of ours.
    assert_eq!(crm.stage(&crm.lead(&other_id)), crm.cancelled_stage());
    crm.assert_rate_kept();
    store.close().await;
    service.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amocrm_booking_story_both_ways() {
    two_way_story(Crm::Amo(FakeAmo::start().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_deal_mode_booking_story_both_ways() {
    two_way_story(Crm::Bitrix {
        fake: FakeBitrix::start().await,
        deal_mode: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_lead_mode_booking_story_both_ways() {
    two_way_story(Crm::Bitrix {
        fake: FakeBitrix::start().await,
        deal_mode: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_events_with_a_wrong_token_are_refused() {
    let tg = FakeTelegram::start().await;
    let crm = Crm::Bitrix {
        fake: FakeBitrix::start().await,
        deal_mode: true,
    };
    let dir = tempfile::tempdir().unwrap();
    let (store_url, port) = write_config(dir.path(), &tg, &crm);
    let service = Service::start(&dir.path().join("zapis.toml"));
    let forged = crm
        .update_event("7405")
        .replace(b24_fake::APPLICATION_TOKEN, "forged-token");
    let mut status = reqwest::StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        match reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{port}/webhooks/bitrix24/{SECRET}"
            ))
            .body(forged.clone())
            .send()
            .await
        {
            Ok(r) => {
                status = r.status();
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    let good = post_webhook(port, "bitrix24", crm.update_event("7405")).await;
    assert!(good.is_success(), "{good}");
    let store = Store::connect(&store_url).await.unwrap();
    use sqlx::Row;
    let stored: i64 = sqlx::query("SELECT COUNT(*) AS n FROM sync_inbox")
        .fetch_one(raw_pool(&store))
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(stored, 1, "only the genuine event reached the inbox");
    store.close().await;
    service.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probe_lists_the_amocrm_tracking_fields_and_what_zapis_does_without_one() {
    let amo = FakeAmo::start().await;
    amo.remove_lead_field_code("UTM_TERM");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("zapis.toml");
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    Crm::Amo(amo.clone())
        .settings(Settings::single(&store_url, "Салон"))
        .write(&config);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["check", "--probe", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.contains("amocrm") && l.contains("UTM tracking fields"))
        .unwrap_or_else(|| panic!("no tracking row: {text}"));
    assert!(row.contains(" ok "), "{row}");
    assert!(
        row.contains(
            "present: UTM_SOURCE, UTM_MEDIUM, UTM_CAMPAIGN, UTM_CONTENT; missing: UTM_TERM"
        ),
        "{row}"
    );
    assert!(row.contains("tags and a note"), "{row}");
}

/// Every table of the SQLite store at `url`, with how many rows mention any of `needles`
/// (compared as text, case-sensitive), for tables with at least one.
async fn tables_mentioning(store: &Store, needles: &[&str]) -> Vec<(String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(raw_pool(store))
    .await
    .expect("tables");
    assert!(tables.len() > 20, "the whole schema is scanned: {tables:?}");
    let mut hits = Vec::new();
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info('{table}')"
        )))
        .fetch_all(raw_pool(store))
        .await
        .expect("columns");
        let any: Vec<String> = columns
            .iter()
            .flat_map(|c| {
                needles
                    .iter()
                    .map(move |n| format!("INSTR(CAST(\"{c}\" AS TEXT), '{n}') > 0"))
            })
            .collect();
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM \"{table}\" WHERE {}",
            any.join(" OR ")
        )))
        .fetch_one(raw_pool(store))
        .await
        .expect("scan");
        if n > 0 {
            hits.push((table, n));
        }
    }
    hits
}

/// `zapis forget` while the client's lead is still on its way to amoCRM: the command says the
/// erasure waits; once the lead is delivered the client's number and name are gone from every
/// table of the store, the visit stays as an anonymous booking and the journal records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_client_leaves_no_trace_in_the_store_once_their_lead_is_delivered() {
    let tg = FakeTelegram::start().await;
    let amo = FakeAmo::start().await;
    let crm = Crm::Amo(amo);
    let dir = tempfile::tempdir().unwrap();
    let (store_url, _port) = write_config(dir.path(), &tg, &crm);
    let config = dir.path().join("zapis.toml");
    let service = Service::start(&config);
    let Crm::Amo(amo) = &crm else { unreachable!() };
    let needles = ["9165551234", "Ефросинья"];

    // amoCRM refuses writes (the account is unpaid): the lead waits in the queue.
    amo.set_unpaid(true);
    let client = tg.user(3003);
    client.send_text("/start src_landing");
    client.wait_for_text("Салон «Лилия»", WAIT).await;
    book_first_slot(&client, "Женская стрижка", "+7 916 555-12-34", "Ефросинья").await;
    client.wait_for_text("вы записаны", WAIT).await;
    // Someone else's data stays.
    book(
        &tg.user(3004),
        "/start",
        "Женская стрижка",
        "+7 912 345-67-89",
    )
    .await;
    let store = Store::connect(&store_url).await.unwrap();
    let waiting = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT id FROM sync_jobs WHERE system = 'amocrm' AND state = 'pending' \
             AND attempts > 0 ORDER BY id",
        )
        .fetch_all(raw_pool(&store))
        .await
        .unwrap()
    };
    for _ in 0..200 {
        if waiting().await.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let jobs = waiting().await;
    assert!(jobs.len() >= 2, "both leads wait: {jobs:?}");

    let forget = |phone: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zapis"))
            .args(["forget", phone, "--config"])
            .arg(&config)
            .output()
            .expect("zapis forget runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let said = forget("8 (916) 555-12-34");
    assert!(said.contains("still on their way"), "{said}");
    assert!(
        said.contains("+7916") && !said.contains("9165551234"),
        "{said}"
    );
    assert!(!tables_mentioning(&store, &needles).await.is_empty());

    // The account is paid; an operator runs the waiting jobs now. The lead is delivered and
    // the erasure follows.
    amo.set_unpaid(false);
    for id in jobs {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zapis"))
            .args(["queue", "--config"])
            .arg(&config)
            .args(["retry", &id.to_string()])
            .output()
            .expect("zapis queue retry runs");
        assert!(out.status.success(), "{out:?}");
    }
    for _ in 0..300 {
        if tables_mentioning(&store, &needles).await.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let left = tables_mentioning(&store, &needles).await;
    assert!(left.is_empty(), "still in the store: {left:?}");
    assert!(
        amo.contacts()
            .iter()
            .any(|c| c.to_string().contains("Ефросинья")),
        "the CRM got its contact before the erasure, and keeps it"
    );
    assert!(
        !tables_mentioning(&store, &["9123456789"]).await.is_empty(),
        "the other client is untouched"
    );
    let bookings: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bookings")
        .fetch_one(raw_pool(&store))
        .await
        .unwrap();
    assert_eq!(bookings, 2, "the visit stays, anonymous");
    let journal: Vec<String> = sqlx::query_scalar(
        "SELECT error FROM sync_journal WHERE operation = 'forget' AND outcome = 'erased'",
    )
    .fetch_all(raw_pool(&store))
    .await
    .unwrap();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert!(
        journal[0].contains("+7916") && !journal[0].contains("9165551234"),
        "{journal:?}"
    );

    // Asked again, there is nothing left to erase.
    let said = forget("+79165551234");
    assert!(said.contains("erased. client card: 0"), "{said}");
    service.stop();
}
