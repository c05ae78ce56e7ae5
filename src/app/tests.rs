//! The conversation runtime as the deployment wires it: the store, the schedule and the admin
//! chat [`App::build`] gives it.

use crate::domain::{BusinessId, System};
use std::sync::Arc;

use super::App;
use crate::conversation::tests::{locked_chats, pick_a_time, press};
use crate::conversation::{ChatEvent, Conversations};
use crate::dialog::{Button, Reply};
use crate::domain::{Channel, ChatRef};

async fn demo(url: &str) -> App {
    App::build(
        crate::config::Config::demo(url),
        Arc::new(crate::clock::SystemClock),
    )
    .await
    .expect("demo app")
}

/// The demo on a SQLite file in a directory that lives as long as the returned guard.
async fn demo_on_file() -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("z.db").display());
    let app = demo(&url).await;
    (dir, app)
}

/// A chat's start is recorded with its deep link, the turn that picks a time as the
/// contact step, once; the turns in between and after record nothing.
#[tokio::test]
async fn the_start_and_the_contact_step_are_recorded_with_the_chats_source() {
    let (_dir, app) = demo_on_file().await;
    let conv = app.conversations.clone();
    let store = conv.store();
    let chat = ChatRef::new(Channel::Telegram, "7");
    let consent = pick_a_time(&conv, &chat, Some("src_vk")).await;
    let rows: Vec<(String, String, Option<String>, Option<String>)> = store.chat_event_rows().await;
    let with = |kind: &str| {
        (
            kind.to_string(),
            "telegram:7".to_string(),
            Some("src_vk".to_string()),
            None,
        )
    };
    assert_eq!(rows, [with("start"), with("contact")]);
    // The consent is given and the phone typed: the same part of the flow, nothing new.
    press(&conv, &chat, &consent, |b| b.label.contains("Согласен")).await;
    conv.handle(&chat, None, ChatEvent::Text("+7 916 555-12-34".into()))
        .await
        .expect("phone");
    assert_eq!(store.chat_event_count().await, 2);
    // A chat without a deep link counts as a direct one, on its own messenger.
    let other = ChatRef::new(Channel::Max, "8");
    pick_a_time(&conv, &other, None).await;
    let direct: Vec<(String, String, Option<String>)> = store.chat_event_rows_of("max:8").await;
    assert_eq!(
        direct,
        [
            ("start".into(), "max".into(), None),
            ("contact".into(), "max".into(), None)
        ]
    );
}

/// The demo business with a Telegram admin chat (-100), and a question from chat 7 queued for
/// it: the app (its directory kept alive), the business and the question job's key.
async fn app_with_a_question() -> (tempfile::TempDir, App, BusinessId, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("z.db").display());
    let mut config = crate::config::Config::demo(&url);
    config.support = Some(crate::support::SupportConfig {
        telegram_chat_id: Some(-100),
        ..Default::default()
    });
    let app = App::build(config, Arc::new(crate::clock::SystemClock))
        .await
        .expect("app");
    let conv = app.conversations.clone();
    let chat = ChatRef::new(Channel::Telegram, "7");
    conv.handle(&chat, None, ChatEvent::Start { payload: None })
        .await
        .expect("start");
    conv.handle(&chat, None, ChatEvent::Text("А парковка есть?".into()))
        .await
        .expect("question");
    let (business, question_key): (String, String) = crate::sync::Queue::new(conv.store().clone())
        .only_job_of(System::Support)
        .await;
    let business = BusinessId::parse(&business).expect("the job's business id");
    (dir, app, business, question_key)
}

/// What the relay job stores once the admin chat confirmed its post: message 77 in chat -100
/// relayed chat 7's question.
async fn record_relay(store: &crate::store::Store, business: &BusinessId, question_key: &str) {
    let relay = crate::store::SupportRelay {
        messenger: "telegram",
        admin_chat: "-100",
        admin_message: "77",
        chat_key: "telegram:7",
        question_key,
    };
    store
        .record_support_relay(business, &relay, chrono::Utc::now())
        .await
        .unwrap();
}

/// The same admin reply read twice (a restart before the update's offset was committed)
/// is one answer to the client and one line in the chat log.
#[tokio::test]
async fn an_admin_reply_read_twice_is_one_answer() {
    let (_dir, app, business, question_key) = app_with_a_question().await;
    let conv = app.conversations.clone();
    let store = conv.store();
    record_relay(store, &business, &question_key).await;
    let answer = |message_id: &'static str, replied_to: &'static str| crate::support::AdminReply {
        channel: Channel::Telegram,
        admin_chat: -100,
        replied_to,
        message_id,
        text: "Да, во дворе.",
        replied_text: None,
    };
    let queue = crate::sync::Queue::new(store.clone());
    let answers = || queue.count_with_key_like(System::Telegram, "%support:%");
    assert!(conv.relay_answer(answer("501", "77")).await.unwrap());
    assert!(conv.relay_answer(answer("501", "77")).await.unwrap());
    assert_eq!(answers().await, 1);
    assert_eq!(store.chat_lines_by("admin").await, 1);
    // Another reply to the same question is another answer.
    assert!(conv.relay_answer(answer("502", "77")).await.unwrap());
    assert_eq!(answers().await, 2);
    // A reply to a message that relayed nothing, or in another chat, is none.
    assert!(!conv.relay_answer(answer("503", "78")).await.unwrap());
    let mut elsewhere = answer("504", "77");
    elsewhere.admin_chat = -200;
    assert!(!conv.relay_answer(elsewhere).await.unwrap());
    assert_eq!(answers().await, 2);
}

/// An admin who answers the moment the relay appears (or whose reply is read while the relay's
/// row still waits for the database) is not lost, and nothing waits for the row: the post's
/// own marker names the question's job.
#[tokio::test]
async fn a_reply_read_before_its_relay_is_stored_still_reaches_the_client() {
    let (_dir, app, _business, _question_key) = app_with_a_question().await;
    let conv = app.conversations.clone();
    let queue = crate::sync::Queue::new(conv.store().clone());
    let question = queue
        .jobs_in_state(crate::sync::JobState::Pending)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.system == crate::support::SUPPORT_SYSTEM)
        .expect("the question is queued");
    let posted = format!(
        "Вопрос из чата {}\nКлиент: —",
        crate::support::marker(question.id)
    );
    let reply = |message_id, replied_text| crate::support::AdminReply {
        channel: Channel::Telegram,
        admin_chat: -100,
        replied_to: "77",
        message_id,
        text: "Да, во дворе.",
        replied_text,
    };
    let answers = || queue.count_with_key_like(System::Telegram, "%support:%");
    // Not the bot's own post (the adapter passes no text), or a marker naming no question of
    // ours: no answer.
    assert!(!conv.relay_answer(reply("499", None)).await.unwrap());
    assert!(
        !conv
            .relay_answer(reply("500", Some("#Q999999")))
            .await
            .unwrap()
    );
    assert_eq!(answers().await, 0);
    assert!(
        conv.relay_answer(reply("501", Some(&posted)))
            .await
            .unwrap(),
        "the answer was dropped"
    );
    assert_eq!(answers().await, 1);
}

/// Starts the chat; what it showed and the first button on it.
async fn start_chat(conv: &Conversations, chat: &ChatRef) -> (Vec<Reply>, Button) {
    let shown = conv
        .handle(chat, None, ChatEvent::Start { payload: None })
        .await
        .expect("start");
    let button = shown
        .iter()
        .flat_map(|r| r.buttons.iter().flatten())
        .next()
        .expect("a button to press")
        .clone();
    (shown, button)
}

/// Many chats at once on a file store: every input, every reply and every state arrives,
/// and no per-chat lock outlives its turn.
#[tokio::test]
async fn concurrent_turns_store_every_input_reply_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("z.db").display());
    {
        let app = demo(&url).await;
        let conv = app.conversations.clone();
        let chats = 40;
        let mut tasks = Vec::new();
        for i in 0..chats {
            let conv = conv.clone();
            tasks.push(tokio::spawn(async move {
                let chat = ChatRef::new(Channel::Telegram, i.to_string());
                let (first, button) = start_chat(&conv, &chat).await;
                let event = ChatEvent::pressing(&button);
                let second = conv.handle(&chat, None, event).await.expect("press");
                first.len() + second.len()
            }));
        }
        let mut replies = 0;
        for task in tasks {
            replies += task.await.unwrap() as i64;
        }
        let store = conv.store();
        assert_eq!(store.dialog_count().await, chats);
        assert_eq!(store.chat_lines_by("client").await, 2 * chats);
        assert_eq!(store.chat_lines_by("bot").await, replies);
        // A pressed button is logged by the label the client saw.
        let unknown = store.chat_lines_by_reading("client", "[…]").await;
        assert_eq!(unknown, 0);
        assert_eq!(locked_chats(&conv), 0, "idle chats keep no lock");
    }
}

/// A press is logged by the label on the message it was pressed on, even an older one than
/// the last shown; where presses come without it (MAX), by the buttons the chat log kept, and
/// only such chats' bot lines keep their buttons.
#[tokio::test]
async fn presses_are_logged_by_their_label_whichever_way_it_comes() {
    let (_dir, app) = demo_on_file().await;
    let conv = app.conversations.clone();
    let store = conv.store().clone();
    for channel in [Channel::Telegram, Channel::Max] {
        let chat = ChatRef::new(channel, "7".to_string());
        let (_, button) = start_chat(&conv, &chat).await;
        let event = match channel {
            Channel::Max => ChatEvent::button(button.data.clone()),
            _ => ChatEvent::press(button.data.clone(), "На старом экране"),
        };
        conv.handle(&chat, None, event).await.expect("press");
        let label = match channel {
            Channel::Max => format!("[{}]", button.label),
            _ => "[На старом экране]".to_string(),
        };
        assert_eq!(
            store.chat_lines_by_reading("client", &label).await,
            1,
            "{channel:?}"
        );
        let kept = store.chat_lines_with_buttons(&chat.key()).await;
        assert_eq!(kept > 0, channel == Channel::Max, "{channel:?}: {kept}");
    }
}
