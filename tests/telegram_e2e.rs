//! The real `zapis run` binary against a fake Telegram Bot API over HTTP: a client arrives from a
//! `/start src_landing` deep link, books a slot in the sandbox salon, survives a restart of the
//! service in the middle of the conversation, and cancels the booking from "my bookings".

mod support;

use support::e2e::{Service, WAIT, keyboard, payload, press_kind, press_label};
use support::fake_telegram::{FakeTelegram, TOKEN};
use zapis::domain::BookingStatus;
use zapis::store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_books_from_a_deep_link_survives_a_restart_and_cancels() {
    let fake = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("zapis.db");
    let store_url = format!("sqlite://{}", db.display());
    let config = dir.path().join("zapis.toml");
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
api_url = "{}"
"#,
            fake.api_url()
        ),
    )
    .unwrap();

    let service = Service::start(&config);
    let user = fake.user(4242);
    user.send_text("/start src_landing");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    press_label(&user, "Записаться").await;
    press_label(&user, "Женская стрижка").await;
    let masters = keyboard(&user, |m| {
        m.labels().iter().any(|l| l.contains("Любой мастер"))
    })
    .await;

    // The service restarts between two steps; the conversation picks up where it was.
    service.stop();
    let service = Service::start(&config);
    let master_button = masters
        .buttons
        .iter()
        .flatten()
        .find(|b| b.label.contains("Любой мастер"))
        .unwrap()
        .data
        .clone();
    user.press_on(masters.message_id, &master_button);
    press_kind(&user, "d:").await;
    let times = press_kind(&user, "t:").await;
    let picked = times
        .buttons
        .iter()
        .flatten()
        .find(|b| payload(&b.data).starts_with("t:"))
        .unwrap()
        .label
        .clone();
    user.wait_for_reply(|m| m.requests_contact(), WAIT).await;
    user.share_contact("+7 912 345-67-89");
    user.wait_for_text("имя", WAIT).await;
    user.send_text("Анна");
    user.wait_for_text("Проверьте запись", WAIT).await;
    press_label(&user, "Подтвердить").await;
    let done = user.wait_for_text("вы записаны", WAIT).await;
    assert!(
        done.text.contains(&picked),
        "the confirmation names the picked time {picked}: {}",
        done.text
    );

    let store = Store::connect(&store_url).await.unwrap();
    let bookings = store.bookings("default").await.unwrap();
    assert_eq!(bookings.len(), 1, "{bookings:#?}");
    let booking = &bookings[0];
    assert_eq!(booking.status, BookingStatus::Booked);
    assert_eq!(booking.source.payload.as_deref(), Some("src_landing"));
    assert_eq!(booking.source.channel, zapis::domain::Channel::Telegram);
    assert_eq!(booking.client_phone.as_str(), "+79123456789");
    assert_eq!(booking.client_name, "Анна");
    assert_eq!(booking.service_name, "Женская стрижка");
    let local = booking
        .start
        .with_timezone(&chrono_tz::Europe::Moscow)
        .format("%H:%M")
        .to_string();
    assert_eq!(local, picked);
    let record = booking
        .external_id
        .clone()
        .expect("the schedule confirmed a record");

    press_label(&user, "Мои записи").await;
    press_label(&user, "Отменить").await;
    press_label(&user, "Да, отменить").await;
    user.wait_for_text("Запись отменена", WAIT).await;

    let booking = store.booking(&booking.id).await.unwrap().unwrap();
    assert_eq!(booking.status, BookingStatus::CancelledByClient);
    let status: String = sqlx::query_scalar("SELECT status FROM sandbox_records WHERE id = $1")
        .bind(&record)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(status, "cancelled");
    // Every callback was answered, so no client was left with a spinning button.
    assert!(fake.calls_of("answercallbackquery").len() >= 8);
    service.stop();
}
