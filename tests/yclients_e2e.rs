//! The real `zapis run` booking into a fake YClients through Telegram, then the salon deleting
//! the record: YClients' webhook reaches our HTTP endpoint, the booking is cancelled in our store
//! and the client is told in the chat. A replayed webhook changes nothing more.

mod support;

use std::time::Duration;

use serde_json::json;
use support::e2e::{Service, WAIT, book_first_slot};
use support::fake_telegram::{FakeTelegram, TOKEN};
use support::fake_yclients::{FakeSalon, FakeYclients, PARTNER_TOKEN};
use zapis::domain::BookingStatus;
use zapis::store::Store;

const SECRET: &str = "webhook-secret-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salon_deletion_reaches_the_store_and_the_client() {
    let tg = FakeTelegram::start().await;
    let yc = FakeYclients::start(FakeSalon::standard(777, chrono_tz::Asia::Yekaterinburg)).await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let port = free_port();
    let config = dir.path().join("zapis.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[store]
url = "{store_url}"

[business]
name = "Салон «Лилия»"
timezone = "Asia/Yekaterinburg"
address = "Екатеринбург, ул. Ленина, 1"

[booking]
system = "yclients"

[booking.yclients]
base_url = "{yc_url}"
company_id = 777
partner_token = "{PARTNER_TOKEN}"

[telegram]
token = "{TOKEN}"
api_url = "{tg_url}"

[sync]
poll = "100ms"

[http]
listen = "127.0.0.1:{port}"
webhook_secret = "{SECRET}"
"#,
            yc_url = yc.base_url,
            tg_url = tg.api_url(),
        ),
    )
    .unwrap();
    let service = Service::start(&config);

    let user = tg.user(2001);
    user.send_text("/start src_vk");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    let picked = book_first_slot(&user, "Женская стрижка", "+7 912 345-67-89", "Анна").await;
    let done = user.wait_for_text("вы записаны", WAIT).await;
    assert!(done.text.contains(&picked), "{}", done.text);

    let records = yc.active_records();
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = records[0].clone();
    assert_eq!(record.service_id, 101);
    assert_eq!(record.phone, "79123456789");
    assert_eq!(
        record.local.format("%H:%M").to_string(),
        picked,
        "the salon's local time"
    );

    // The salon deletes the record in YClients, which notifies us.
    yc.salon_delete(record.id);
    let hook = json!({
        "company_id": 777,
        "resource": "record",
        "resource_id": record.id,
        "status": "delete",
        "data": { "id": record.id, "company_id": 777, "staff_id": record.staff_id,
                  "api_id": record.api_id, "deleted": true,
                  "services": [{"id": record.service_id}] }
    });
    let url = format!("http://127.0.0.1:{port}/webhooks/yclients/{SECRET}");
    let client = reqwest::Client::new();
    let mut accepted = false;
    for _ in 0..100 {
        if let Ok(resp) = client.post(&url).json(&hook).send().await {
            assert_eq!(resp.status(), 200);
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "the webhook endpoint answers");
    let told = user.wait_for_text("Салон отменил", WAIT).await;
    assert!(told.text.contains("Женская стрижка"), "{}", told.text);

    let store = Store::connect(&store_url).await.unwrap();
    let booking = store.bookings("default").await.unwrap().remove(0);
    assert_eq!(booking.status, BookingStatus::CancelledByBusiness);

    // A wrong secret is refused, and the same delivery again is taken but changes nothing.
    let wrong = client
        .post(format!(
            "http://127.0.0.1:{port}/webhooks/yclients/not-the-secret-000000"
        ))
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    let again = client.post(&url).json(&hook).send().await.unwrap();
    assert_eq!(again.status(), 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let notices = user
        .history()
        .iter()
        .filter(|m| m.text.contains("Салон отменил"))
        .count();
    assert_eq!(notices, 1, "the client is told once");
    service.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_confirmed_while_yclients_is_down_completes_when_it_is_back() {
    use support::e2e::{book_until_confirm, press_label};
    use support::fake_yclients::Down;
    let tg = FakeTelegram::start().await;
    let yc = FakeYclients::start(FakeSalon::standard(777, chrono_tz::Europe::Kaliningrad)).await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = dir.path().join("zapis.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[store]
url = "{store_url}"
[business]
name = "Салон «Лилия»"
timezone = "Europe/Kaliningrad"
[booking]
system = "yclients"
[booking.yclients]
base_url = "{yc_url}"
company_id = 777
partner_token = "{PARTNER_TOKEN}"
max_retries = 0
[telegram]
token = "{TOKEN}"
api_url = "{tg_url}"
[sync]
poll = "100ms"
"#,
            yc_url = yc.base_url,
            tg_url = tg.api_url(),
        ),
    )
    .unwrap();
    let service = Service::start(&config);
    let user = tg.user(2002);
    user.send_text("/start");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    book_until_confirm(&user, "Маникюр", "+7 912 000-11-22", "Вера").await;
    yc.set_down(Down::Unavailable);
    press_label(&user, "Подтвердить").await;
    user.wait_for_text("не отвечает", WAIT).await;
    assert!(yc.active_records().is_empty());

    yc.set_down(Down::Up);
    // The first retry comes about ten seconds later.
    let confirmed = user
        .wait_for_text("подтвердило вашу запись", Duration::from_secs(40))
        .await;
    assert!(confirmed.text.contains("Маникюр"), "{}", confirmed.text);
    assert_eq!(yc.active_records().len(), 1, "booked exactly once");
    let store = Store::connect(&store_url).await.unwrap();
    let booking = store.bookings("default").await.unwrap().remove(0);
    assert_eq!(booking.status, BookingStatus::Booked);
    service.stop();
}
