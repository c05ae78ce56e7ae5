//! "Call an administrator" through the real `zapis run` binary and the fake Telegram Bot API:
//! a client's call and typed question reach the admin group with who asks and where from, an
//! admin's reply there comes back to the client, and replies anywhere else do not.

use crate::support;

use support::app::Settings;
use support::e2e::{Service, WAIT, press_label};
use support::fake_telegram::{BotMessage, FakeTelegram, FakeUser};

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
    let config = Settings::single(&store_url, "Салон «Лилия»")
        .set("business.address", "Москва, ул. Пушкина, 10")
        .set("privacy.consent", false)
        .telegram(&fake)
        .set("support.telegram_chat_id", ADMIN_GROUP)
        .write_in(dir.path());
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

/// A MAX client's question goes to the admins' Telegram group and the answer comes back to
/// MAX; with amoCRM the exchange lands in one "question" lead with the client's source, once,
/// although amoCRM made that lead and the question's note and answered each with a 500.
/// On SQLite and, when `ZAPIS_TEST_POSTGRES_URL` is set, PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_from_max_is_answered_from_telegram_and_logged_once_into_amocrm() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("zapis.db").display());
    // The two stories share nothing (own fakes, own files, own schema), and each mostly waits
    // on retry backoffs: side by side they take the time of one.
    match support::postgres_url().await {
        Some(url) => {
            tokio::join!(crm_story(&sqlite), crm_story(&url));
        }
        None => crm_story(&sqlite).await,
    }
}

async fn crm_story(store_url: &str) {
    use support::fake_amocrm::{FakeAmo, FaultKind};
    use support::fake_max::FakeMax;

    let tg = FakeTelegram::start().await;
    let max = FakeMax::start().await;
    let amo = FakeAmo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = Settings::single(store_url, "Салон «Лилия»")
        .set("business.address", "Москва, ул. Пушкина, 10")
        .set("privacy.consent", false)
        .telegram(&tg)
        .max(&max)
        .set("sync.poll", "100ms")
        .amocrm(&amo)
        .set("support.telegram_chat_id", ADMIN_GROUP)
        .write_in(dir.path());
    // The lead is made and its answer lost; then the question's note, the same way.
    amo.fault(
        "POST",
        "/api/v4/leads",
        Some("Вопрос из чата"),
        FaultKind::AfterStatus(500),
    );
    amo.fault(
        "POST",
        "/api/v4/leads/notes",
        Some("Вопрос клиента"),
        FaultKind::AfterStatus(500),
    );
    let admins = tg.group_member(ADMIN_GROUP, "Администраторы", 501);
    let service = Service::start(&config);

    let client = max.user(7001);
    client.start(Some("vk_spring"));
    client.wait_for_text("Салон «Лилия»", WAIT).await;
    client.send_text("Можно с собакой?");
    client.wait_for_text("Передали ваш вопрос", WAIT).await;
    let question = posted(&admins, "Вопрос: Можно с собакой?").await;
    assert!(question.text.contains("MAX"), "{}", question.text);
    assert!(question.text.contains("vk_spring"), "{}", question.text);
    admins.reply_to(question.message_id, "Конечно, ждём вас обоих!");
    client
        .wait_for_text("Администратор: Конечно, ждём вас обоих!", WAIT)
        .await;

    let notes = |lead: &serde_json::Value| -> String {
        amo.notes_of(&lead["id"].to_string())
            .iter()
            .filter_map(|n| n["params"]["text"].as_str().map(str::to_string))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let questions = || -> Vec<serde_json::Value> {
        amo.leads()
            .into_iter()
            .filter(|l| {
                l["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("Вопрос из чата"))
            })
            .collect()
    };
    // Each fault costs one backoff step (10 s) before the retry.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !questions()
        .first()
        .is_some_and(|l| notes(l).contains("Ответ администратора"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no answer in the card: {:#?}",
            amo.leads()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(amo.fired().len(), 2, "both faults met");
    // A late duplicate would come from a retry still running: give it time.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    let leads = questions();
    assert_eq!(leads.len(), 1, "{store_url}: one question lead: {leads:#?}");
    let lead = &leads[0];
    assert_eq!(lead["name"], "Вопрос из чата — MAX");
    let tags = lead["_embedded"]["tags"].to_string();
    assert!(
        tags.contains("vk_spring"),
        "the source is on the lead: {tags}"
    );
    let text = notes(lead);
    assert!(
        text.contains("Вопрос клиента (") && text.contains("MSK):\nМожно с собакой?"),
        "the question's note, on the business clock: {text}"
    );
    // The transcript ends where the question was asked: the answer is in its own note only.
    for (said, times) in [
        ("Переписка с ботом", 1),
        ("Вопрос клиента", 1),
        ("Ответ администратора", 1),
        ("Конечно, ждём вас обоих!", 1),
    ] {
        assert_eq!(
            text.matches(said).count(),
            times,
            "{store_url}: {said:?} in the notes: {text}"
        );
    }
    drop(service);
}

fn check(config: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("zapis check runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `zapis check` tells whether the bot can see the admin chats: a wrong id would otherwise
/// show only as questions that never arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tells_whether_the_bot_sees_the_admin_chats() {
    use support::fake_max::{self, FakeMax};
    let tg = FakeTelegram::start().await;
    let max = FakeMax::start().await;
    tg.group_member(ADMIN_GROUP, "Администраторы", 501);
    max.user(9001);
    let dir = tempfile::tempdir().unwrap();
    let write = |telegram_chat: i64, max_chat: i64| {
        let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
        Settings::single(&store_url, "Салон «Лилия»")
            .telegram(&tg)
            .max(&max)
            .set("support.telegram_chat_id", telegram_chat)
            .set("support.max_chat_id", max_chat)
            .write_in(dir.path())
    };
    let config = write(ADMIN_GROUP, fake_max::dialog_id(9001));
    let (ok, out) = tokio::task::spawn_blocking(move || check(&config))
        .await
        .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "support: Telegram admin chat «Администраторы» ({ADMIN_GROUP}) reachable"
        )),
        "{out}"
    );
    assert!(
        out.contains("support: MAX admin chat «chat title»"),
        "{out}"
    );

    let config = write(OTHER_GROUP, fake_max::dialog_id(9002));
    let (ok, out) = tokio::task::spawn_blocking(move || check(&config))
        .await
        .unwrap();
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "support: the bot cannot see Telegram chat {OTHER_GROUP} (Bad Request: chat not found)"
        )),
        "{out}"
    );
    assert!(
        out.contains("support: the bot cannot see MAX chat"),
        "{out}"
    );
}
