//! Unfinished bookings become leads, through the real `zapis run` with a fake amoCRM:
//! - a client from a deep link who picks a time, agrees, gives a phone and a name and leaves
//!   at the confirmation becomes, after the pause, exactly one lead "Незавершённая запись"
//!   with the source tag, linked to their contact, with a note summing up the attempt and the
//!   chat transcript — although amoCRM answered the first write of that lead with a 500;
//! - a client who leaves at the consent screen, before any phone, becomes one lead without a
//!   contact, although amoCRM refused its first write with a 503;
//! - a client who goes on to book gets only the booking's own lead.

use crate::support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::app::Settings;
use support::e2e::{Service, WAIT, book_until_confirm, is_consent, press_kind, press_label};
use support::fake_amocrm::{FakeAmo, FaultKind};
use support::fake_telegram::{FakeTelegram, FakeUser};

const UNFINISHED: &str = "Незавершённая запись";

fn write_config(dir: &Path, store_url: &str, tg: &FakeTelegram, amo: &FakeAmo) {
    Settings::single(store_url, "Салон «Лилия»")
        .set("business.address", "Москва, ул. Пушкина, 10")
        .telegram(tg)
        .set("sync.poll", "100ms")
        .amocrm(amo)
        .set("crm.unfinished_after", "4s")
        .write_in(dir);
}

fn name(lead: &Value) -> String {
    lead["name"].as_str().unwrap_or_default().to_string()
}

fn tags(lead: &Value) -> Vec<String> {
    lead["_embedded"]["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn contacts(lead: &Value) -> usize {
    lead["_embedded"]["contacts"]
        .as_array()
        .map_or(0, |c| c.len())
}

fn notes(amo: &FakeAmo, lead: &Value) -> String {
    amo.notes_of(&lead["id"].to_string())
        .iter()
        .filter_map(|n| n["params"]["text"].as_str().map(str::to_string))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The unfinished leads whose notes name this chat.
fn unfinished_of(amo: &FakeAmo, chat: &str) -> Vec<Value> {
    amo.leads()
        .into_iter()
        .filter(|l| name(l).starts_with(UNFINISHED))
        .filter(|l| notes(amo, l).contains(chat))
        .collect()
}

async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Up to the consent screen, and no further.
async fn leave_at_consent(user: &FakeUser, service: &str) {
    press_label(user, "Записаться").await;
    press_label(user, service).await;
    press_label(user, "Любой мастер").await;
    press_kind(user, "d:").await;
    press_kind(user, "t:").await;
    user.wait_for_reply(is_consent, WAIT).await;
}

/// On SQLite and, when `ZAPIS_TEST_POSTGRES_URL` is set, PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_who_leaves_in_the_contact_step_becomes_one_lead_and_one_who_books_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("zapis.db").display());
    // The two stories share nothing (own fakes, own files, own schema), and each mostly waits
    // on retry backoffs: side by side they take the time of one.
    match support::postgres_url().await {
        Some(url) => {
            tokio::join!(story(&sqlite), story(&url));
        }
        None => story(&sqlite).await,
    }
}

async fn story(store_url: &str) {
    let tg = FakeTelegram::start().await;
    let amo = FakeAmo::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), store_url, &tg, &amo);
    // amoCRM makes the first unfinished lead and answers with a 500; it refuses the other's
    // first write with a 503.
    amo.fault(
        "POST",
        "/api/v4/leads",
        Some("Незавершённая запись — Женская стрижка"),
        FaultKind::AfterStatus(500),
    );
    amo.fault(
        "POST",
        "/api/v4/leads",
        Some("Незавершённая запись — Педикюр"),
        FaultKind::Before(503),
    );
    let service = Service::start(&dir.path().join("zapis.toml"));

    // Left at the confirmation, with a phone and a name, from a deep link.
    let left = tg.user(2001);
    left.send_text("/start src_landing");
    left.wait_for_text("Салон «Лилия»", WAIT).await;
    book_until_confirm(&left, "Женская стрижка", "+7 916 555-12-34", "Ефросинья").await;

    // Gone from the consent screen: no phone, no name.
    let shy = tg.user(2003);
    shy.send_text("/start");
    shy.wait_for_text("Салон «Лилия»", WAIT).await;
    leave_at_consent(&shy, "Педикюр").await;

    // Goes through the same steps and books.
    let booker = tg.user(2002);
    booker.send_text("/start");
    booker.wait_for_text("Салон «Лилия»", WAIT).await;
    book_until_confirm(&booker, "Маникюр", "+7 912 345-67-89", "Борис").await;
    press_label(&booker, "Подтвердить").await;
    booker.wait_for_text("вы записаны", WAIT).await;

    // The faulted leads are retried on the engine's first backoff step (10 s).
    until(
        "both unfinished leads, with their transcripts",
        Duration::from_secs(60),
        || {
            ["telegram:2001", "telegram:2003"].iter().all(|chat| {
                unfinished_of(&amo, chat)
                    .first()
                    .is_some_and(|l| notes(&amo, l).contains("Переписка с ботом"))
            })
        },
    )
    .await;
    until("both faults met", WAIT, || amo.fired().len() == 2).await;
    until("the booking's lead", WAIT, || {
        amo.leads().iter().any(|l| name(l).contains("Борис"))
    })
    .await;
    // Late duplicates would come from checks and retries still running: give them time.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let leads = amo.leads();
    let unfinished: Vec<&Value> = leads
        .iter()
        .filter(|l| name(l).starts_with(UNFINISHED))
        .collect();
    assert_eq!(
        unfinished.len(),
        2,
        "{store_url}: one per client who left: {:#?}",
        leads
            .iter()
            .map(|l| format!(
                "{} {} {}",
                name(l),
                l["custom_fields_values"],
                notes(&amo, l)
            ))
            .collect::<Vec<_>>()
    );

    let lead = unfinished_of(&amo, "telegram:2001").remove(0);
    assert_eq!(name(&lead), "Незавершённая запись — Женская стрижка");
    assert!(
        tags(&lead).contains(&"start:src_landing".to_string()),
        "the source is on the lead as on a booking's: {:?}",
        tags(&lead)
    );
    assert_eq!(contacts(&lead), 1, "linked to the client's contact");
    let contact = amo
        .contacts()
        .into_iter()
        .find(|c| c.to_string().contains("Ефросинья"))
        .expect("the contact was found or created by the phone");
    assert!(contact.to_string().contains("9165551234"), "{contact}");
    let text = notes(&amo, &lead);
    assert_eq!(
        text.matches("Переписка с ботом").count(),
        1,
        "one transcript: {text}"
    );
    for said in [
        "Женская стрижка",
        "+7 916 555-12-34",
        "Ефросинья",
        "/start src_landing",
        "Проверьте запись",
    ] {
        assert!(text.contains(said), "{said:?} is not in the notes: {text}");
    }

    let lead = unfinished_of(&amo, "telegram:2003").remove(0);
    assert_eq!(name(&lead), "Незавершённая запись — Педикюр");
    assert_eq!(contacts(&lead), 0, "no phone, no contact");
    assert!(
        notes(&amo, &lead).contains("Телефон: —"),
        "{}",
        notes(&amo, &lead)
    );

    assert!(
        unfinished_of(&amo, "telegram:2002").is_empty(),
        "the client who booked has no unfinished lead"
    );
    let booked: Vec<&Value> = leads.iter().filter(|l| name(l).contains("Борис")).collect();
    assert_eq!(booked.len(), 1, "only the booking's own lead");
    assert_eq!(name(booked[0]), "Маникюр — Борис");
    assert!(
        !amo.contacts()
            .iter()
            .any(|c| c.to_string().contains("Ефросинья") && c.to_string().contains("Борис")),
        "contacts stay apart"
    );
    // Killed rather than stopped: a graceful stop drains the bot's pending long poll, up to
    // its 10 s timeout, which is no part of this story.
    drop(service);
}
