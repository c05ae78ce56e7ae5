//! "Call an administrator" through the real `zapis run` binary and the fake Telegram Bot API:
//! a client's call and typed question reach the admin group with who asks and where from, an
//! admin's reply there comes back to the client, and replies anywhere else do not.

use crate::support;

use support::e2e::{Service, WAIT, press_label};
use support::fake_telegram::{BotMessage, FakeTelegram, FakeUser, TOKEN};

const ADMIN_GROUP: i64 = -1001234567890;
const OTHER_GROUP: i64 = -1009876543210;

/// The first message the bot posted in `group` whose text has `needle`.
async fn posted(group: &FakeUser, needle: &str) -> BotMessage {
    group.wait_for_text(needle, WAIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_question_reaches_the_admin_group_and_the_admins_reply_comes_back() {
    let fake = FakeTelegram::start().await;
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
timezone = "Europe/Moscow"
address = "Москва, ул. Пушкина, 10"

[privacy]
consent = false

[telegram]
token = "{TOKEN}"
api_url = "{}"

[support]
telegram_chat_id = {ADMIN_GROUP}
"#,
            fake.api_url()
        ),
    )
    .unwrap();
    let admins = fake.group_member(ADMIN_GROUP, "Администраторы", 501);
    let stranger = fake.group_member(OTHER_GROUP, "Посторонние", 601);
    let service = Service::start(&config);

    let client = fake.user(4242);
    client.send_text("/start vk_spring");
    client.wait_for_text("Салон «Лилия»", WAIT).await;
    client.share_contact("+79123456789");
    client
        .wait_for_reply(
            |m| {
                m.labels()
                    .iter()
                    .any(|l| l.contains("Позвать администратора"))
            },
            WAIT,
        )
        .await;

    // The button on the main menu.
    press_label(&client, "Позвать администратора").await;
    client.wait_for_text("Позвали администратора", WAIT).await;
    let relay = posted(&admins, "#Q").await;
    for part in [
        "+7 912 345-67-89",
        "vk_spring",
        "Telegram",
        "Позвать администратора",
    ] {
        assert!(relay.text.contains(part), "no {part:?} in {}", relay.text);
    }
    admins.reply_to(relay.message_id, "Здравствуйте! Чем помочь?");
    client
        .wait_for_text("Администратор: Здравствуйте! Чем помочь?", WAIT)
        .await;

    // Free text the dialog cannot place goes to the admins as a question.
    client.send_text("А у вас есть парковка?");
    client.wait_for_text("Передали ваш вопрос", WAIT).await;
    let question = posted(&admins, "Вопрос: А у вас есть парковка?").await;
    assert_ne!(question.message_id, relay.message_id);
    assert!(
        question.text.contains("+7 912 345-67-89"),
        "{}",
        question.text
    );

    // A reply to the same message id in another chat is nobody's answer: the bot treats it as
    // that chat's own talk, and the client gets nothing of it.
    stranger.reply_to(question.message_id, "чужой ответ");
    stranger.wait_for_text("Передали ваш вопрос", WAIT).await;
    // Admins' talk in their chat that replies to nothing is not relayed either.
    admins.send_text("коллеги, кто возьмёт?");
    admins.reply_to(question.message_id, "Да, бесплатная парковка во дворе.");
    client
        .wait_for_text("Администратор: Да, бесплатная парковка во дворе.", WAIT)
        .await;
    let history: Vec<String> = client.history().into_iter().map(|m| m.text).collect();
    assert!(
        !history
            .iter()
            .any(|t| t.contains("чужой ответ") || t.contains("коллеги")),
        "{history:#?}"
    );
    // The admins' chat holds only relays: the bot never answers admins' talk as a dialog.
    assert!(
        admins.history().iter().all(|m| m.text.contains("#Q")),
        "{:#?}",
        admins.history()
    );
    service.stop();
}
