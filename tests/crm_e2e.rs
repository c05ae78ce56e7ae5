//! A booking made through Telegram ends up in the CRM exactly as a careful manager would have
//! typed it, through the real `zapis run` and its delivery engine: one contact, one lead in the
//! right stage with the price and the booking id, the chat transcript and a task; a second
//! booking from the same phone typed differently reuses the contact; a cancellation in the chat
//! moves the lead to "lost".

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::e2e::{Service, WAIT, book_first_slot, press_label};
use support::fake_amocrm::{self as fake, FakeAmo};
use support::fake_telegram::{FakeTelegram, TOKEN};

const SECRET: &str = "amo-hook-secret-0123456789";

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn custom_field(entity: &Value, field_id: i64) -> Option<String> {
    entity["custom_fields_values"]
        .as_array()?
        .iter()
        .find_map(|f| {
            (f["field_id"] == json!(field_id)).then(|| f["values"][0]["value"].to_string())
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_reach_amocrm_once_with_source_transcript_and_task() {
    let tg = FakeTelegram::start().await;
    let amo = FakeAmo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = dir.path().join("zapis.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &config,
        format!(
            r#"
[store]
url = "{store_url}"

[business]
name = "Салон «Лилия»"
timezone = "Europe/Moscow"
address = "Москва, ул. Пушкина, 10"

[telegram]
token = "{TOKEN}"
api_url = "{tg_url}"

[sync]
poll = "100ms"

[http]
listen = "127.0.0.1:{port}"
webhook_secret = "{secret}"

[crm]
system = "amocrm"

[crm.amocrm]
base_url = "{amo_url}"
token = "{amo_token}"
pipeline_id = {pipeline}
new_status_id = {status_new}
booking_id_field_id = {field}
loss_reason_id = 7
"#,
            tg_url = tg.api_url(),
            amo_url = amo.base_url,
            amo_token = fake::LONG_LIVED_TOKEN,
            pipeline = fake::PIPELINE_ID,
            status_new = fake::STATUS_NEW,
            field = fake::FIELD_BOOKING_ID,
            port = port,
            secret = SECRET,
        ),
    )
    .unwrap();
    let service = Service::start(&config);

    let ann = tg.user(1001);
    ann.send_text("/start src_landing");
    ann.wait_for_text("Салон «Лилия»", WAIT).await;
    book_first_slot(&ann, "Женская стрижка", "+7 912 345-67-89", "Анна").await;
    ann.wait_for_text("вы записаны", WAIT).await;

    until("one lead with a task", || {
        amo.leads().len() == 1 && amo.tasks().len() == 1
    })
    .await;
    let contacts = amo.contacts();
    assert_eq!(contacts.len(), 1, "{contacts:#?}");
    let lead = amo.leads().remove(0);
    assert_eq!(lead["status_id"], json!(fake::STATUS_NEW));
    assert_eq!(lead["pipeline_id"], json!(fake::PIPELINE_ID));
    assert_eq!(lead["price"], json!(2000));
    assert!(
        custom_field(&lead, fake::FIELD_BOOKING_ID).is_some(),
        "{lead:#}"
    );
    let lead_id = lead["id"].to_string();
    let notes = amo.notes_of(&lead_id);
    let text: String = notes.iter().map(|n| n.to_string()).collect();
    assert!(
        text.contains("/start src_landing"),
        "the transcript starts at the deep link: {text}"
    );
    assert!(text.contains("Анна"), "{text}");

    // Another chat, the same phone as a person types it: the contact is reused.
    let same = tg.user(1002);
    same.send_text("/start");
    same.wait_for_text("Салон «Лилия»", WAIT).await;
    book_first_slot(&same, "Маникюр", "8 (912) 345 67 89", "Анна").await;
    same.wait_for_text("вы записаны", WAIT).await;
    until("the second lead", || {
        amo.leads().len() == 2 && amo.tasks().len() == 2
    })
    .await;
    assert_eq!(
        amo.contacts().len(),
        1,
        "no duplicate contact: {:#?}",
        amo.contacts()
    );

    // Cancelling in the chat moves the first lead to "lost".
    press_label(&ann, "Мои записи").await;
    press_label(&ann, "Отменить").await;
    press_label(&ann, "Да, отменить").await;
    ann.wait_for_text("Запись отменена", WAIT).await;
    until("the lead moved to lost", || {
        amo.lead(&lead_id)["status_id"] == json!(fake::LOST)
    })
    .await;
    assert!(
        amo.max_per_second() <= 7,
        "the CRM saw {} requests in a second",
        amo.max_per_second()
    );
    service.stop();
}
