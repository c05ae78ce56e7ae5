//! The MAX client and adapter against the official payloads and the fake Bot API: every
//! contract file parses, the fake accepts the documented requests, errors map to `MaxError`,
//! and the adapter (with a scripted conversation handler) answers, edits, falls back, splits,
//! apologises and keeps its marker across a restart.

use crate::support;
use crate::support::BotConfig;
use crate::support::bid;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use secrecy::SecretString;
use serde_json::{Value, json};
use support::fake_max::{self, Failure, FakeMax, contract, contract_names};
use support::{RunningMaxBot, fast_max_limits};
use zapis::conversation::{ChatEvent, ConversationError};
use zapis::dialog::{Button, Reply};
use zapis::domain::ChatRef;
use zapis::messenger::ChatHandler;
use zapis::messenger::max::{
    ApiErrorBody, BotInfo, MaxAdapter, MaxClient, MaxError, MaxTarget, MaxUpdate, SubscribeArgs,
    UpdateList, incoming, parse_webhook,
};

const T: Duration = Duration::from_secs(5);

// ----------------------------------------------------------------------- contracts

#[test]
fn every_long_poll_fixture_parses_with_its_marker() {
    for name in contract_names("sdk-update.") {
        let list: UpdateList =
            serde_json::from_value(contract(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(list.updates.len(), 1, "{name}");
        assert!(list.marker.is_some(), "{name}");
        let update = &list.updates[0];
        assert!(
            !matches!(update, MaxUpdate::Unreadable { .. }),
            "{name}: {update:?}"
        );
        let kind = name
            .trim_start_matches("sdk-update.")
            .trim_end_matches(".json");
        assert_eq!(update.update_type(), kind, "{name}");
    }
}

#[test]
fn every_webhook_fixture_parses_as_one_update() {
    let mut names = contract_names("sdk-webhook.");
    names.push("webhook-bot-started-deeplink.json".into());
    for name in names {
        let body = serde_json::to_vec(&contract(&name)).unwrap();
        let updates =
            parse_webhook(&HeaderMap::new(), &body, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(updates.len(), 1, "{name}");
        assert!(
            !matches!(updates[0], MaxUpdate::Unreadable { .. }),
            "{name}: {:?}",
            updates[0]
        );
    }
}

#[test]
fn fixtures_translate_to_the_events_the_dialog_expects() {
    let deeplink = serde_json::to_vec(&contract("webhook-bot-started-deeplink.json")).unwrap();
    let update = parse_webhook(&HeaderMap::new(), &deeplink, None).unwrap();
    let i = incoming(&update[0]).unwrap();
    assert_eq!(i.target, MaxTarget::User(1234567890));
    assert_eq!(
        i.event,
        ChatEvent::Start {
            payload: Some("any data meaningful to bot".into())
        }
    );

    let list: UpdateList =
        serde_json::from_value(contract("sdk-update.message_callback.json")).unwrap();
    let i = incoming(&list.updates[0]).unwrap();
    // The callback carries the message without its keyboard: no label comes with the press.
    assert_eq!(i.event, ChatEvent::button("picture"));
    assert_eq!(i.lang.as_deref(), Some("ru"));
    assert_eq!(i.target, MaxTarget::User(123456789));
    assert_eq!(
        i.editable.as_deref(),
        Some("mid.000000000adf429c019d47d58f2b3d9e")
    );
    assert!(i.callback_id.is_some());

    let list: UpdateList =
        serde_json::from_value(contract("sdk-update.message_created.json")).unwrap();
    let MaxUpdate::MessageCreated { message, .. } = &list.updates[0] else {
        panic!("{:?}", list.updates[0]);
    };
    // seq is above 2^53 and must survive as an integer.
    assert_eq!(message.body.seq, 116327994376978687);
    let i = incoming(&list.updates[0]).unwrap();
    assert_eq!(i.target, MaxTarget::Chat(-70801090403050));
    assert_eq!(i.event, ChatEvent::Text("...".into()));

    let list: UpdateList = serde_json::from_value(contract("sdk-update.bot_started.json")).unwrap();
    let i = incoming(&list.updates[0]).unwrap();
    assert_eq!(i.event, ChatEvent::Start { payload: None });
    for ignored in [
        "sdk-update.bot_stopped.json",
        "sdk-update.message_removed.json",
    ] {
        let list: UpdateList = serde_json::from_value(contract(ignored)).unwrap();
        assert!(incoming(&list.updates[0]).is_none(), "{ignored}");
    }
}

#[test]
fn bot_info_and_error_bodies_parse() {
    let me: BotInfo = serde_json::from_value(contract("sdk-botInfo.ok.json")).unwrap();
    assert_eq!(me.user_id, 123123123);
    assert_eq!(me.username.as_deref(), Some("test-bot"));
    for (name, code) in [
        ("sdk-error.invalid-token.json", "verify.token"),
        (
            "sdk-error.attachment.not.ready.json",
            "attachment.not.ready",
        ),
        ("error-chat-denied.response.json", "chat.denied"),
        ("error-too-many-requests.response.json", "too.many.requests"),
    ] {
        let e: ApiErrorBody = serde_json::from_value(contract(name)).unwrap();
        assert_eq!(e.code, code, "{name}");
    }
    // Responses the client does not use still are JSON objects it could read.
    for name in contract_names("sdk-chats-") {
        assert!(contract(&name).is_object(), "{name}");
    }
    assert!(contract("sdk-bot.patch_commands.ok.json")["commands"].is_array());
}

// ----------------------------------------------------------------------- client

fn client(fake: &FakeMax) -> MaxClient {
    MaxClient::with_limits(&fake.config(), fast_max_limits())
}

#[tokio::test]
async fn the_fake_accepts_the_documented_requests() {
    let fake = FakeMax::start().await;
    fake.user(123456789);
    let c = client(&fake);
    for name in contract_names("send-message") {
        let body = contract(&name);
        let mid = c
            .send(MaxTarget::User(123456789), &body)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(mid.starts_with("mid."), "{name}: {mid}");
    }
    let calls = fake.calls_of("POST /messages");
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.status == 200));
    assert_eq!(
        calls[0].query.get("user_id").map(String::as_str),
        Some("123456789")
    );
    let shown = fake.user(123456789).history();
    assert!(shown.iter().any(|m| m.has_button("slot:1100")));
    assert!(shown.iter().any(|m| m.has_button("https://example.com")));
}

#[tokio::test]
async fn tokens_and_errors_map_to_max_error() {
    let fake = FakeMax::start().await;
    let c = client(&fake);
    assert_eq!(c.me().await.unwrap().username.as_deref(), Some("zapis_bot"));
    let mut bad = fake.config();
    bad.token = SecretString::from("wrong");
    let err = MaxClient::with_limits(&bad, fast_max_limits())
        .me()
        .await
        .unwrap_err();
    assert!(matches!(err, MaxError::Unauthorized), "{err}");
    assert!(!err.to_string().contains(fake_max::TOKEN));

    // Unknown user: chat.denied.
    let err = c
        .send(MaxTarget::User(1), &json!({"text": "hi"}))
        .await
        .unwrap_err();
    assert!(err.is_chat_denied(), "{err}");
    // A scripted attachment error keeps its code.
    fake.user(5);
    fake.fail_next("POST /messages", Failure::AttachmentNotReady);
    let err = c
        .send(MaxTarget::User(5), &json!({"text": "hi"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MaxError::Api { status: 400, code, .. } if code == "attachment.not.ready"),
        "{err}"
    );
    // Editing a message that does not exist.
    let err = c
        .edit(MaxTarget::User(5), "mid.nope", &json!({"text": "x"}))
        .await
        .unwrap_err();
    assert!(matches!(err, MaxError::Api { status: 404, .. }), "{err}");
    // Too long a text is refused by the fake like by MAX; the client splits before sending.
    let err = c
        .send(MaxTarget::User(5), &json!({"text": "я".repeat(4001)}))
        .await
        .unwrap_err();
    assert!(matches!(err, MaxError::Api { status: 400, .. }), "{err}");
    c.send_text(MaxTarget::User(5), &"я ".repeat(3000))
        .await
        .unwrap();
    let unauthorized: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.status == 401)
        .collect();
    assert_eq!(unauthorized.len(), 1);
}

#[tokio::test]
async fn too_many_requests_is_waited_out_then_given_up() {
    let fake = FakeMax::start().await;
    fake.user(5);
    let c = client(&fake);
    fake.fail_next("POST /messages", Failure::TooManyRequests);
    fake.fail_next("POST /messages", Failure::TooManyRequests);
    let started = Instant::now();
    c.send(MaxTarget::User(5), &json!({"text": "hi"}))
        .await
        .unwrap();
    // 50 ms then 100 ms of backoff with the test limits.
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(fake.calls_of("POST /messages").len(), 3);
    for _ in 0..4 {
        fake.fail_next("POST /messages", Failure::TooManyRequests);
    }
    let err = c
        .send(MaxTarget::User(5), &json!({"text": "hi"}))
        .await
        .unwrap_err();
    assert!(matches!(err, MaxError::RateLimited { .. }), "{err}");
}

#[tokio::test]
async fn long_polling_blocks_and_markers_commit() {
    let fake = FakeMax::start().await;
    let c = client(&fake);
    let started = Instant::now();
    let empty = c
        .updates(None, 100, Duration::from_secs(1), &[])
        .await
        .unwrap();
    assert!(empty.updates.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));

    let user = fake.user(7);
    let poll = {
        let c = c.clone();
        let marker = empty.marker;
        tokio::spawn(async move { c.updates(marker, 100, Duration::from_secs(10), &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pos = user.start(Some("src_landing"));
    let list = poll.await.unwrap().unwrap();
    assert_eq!(list.updates.len(), 1);
    assert_eq!(list.marker, Some(pos + 1));
    // Without the new marker, the same update comes again (not committed yet)…
    let again = c
        .updates(empty.marker, 100, Duration::ZERO, &[])
        .await
        .unwrap();
    assert_eq!(again.updates.len(), 1);
    // …and passing it commits.
    let after = c
        .updates(list.marker, 100, Duration::ZERO, &[])
        .await
        .unwrap();
    assert!(after.updates.is_empty());
    assert_eq!(fake.committed(), pos + 1);
    // `types` filters.
    user.send_text("hi");
    let only_starts = c
        .updates(after.marker, 100, Duration::ZERO, &["bot_started"])
        .await
        .unwrap();
    assert!(only_starts.updates.is_empty());
}

#[tokio::test]
async fn subscribe_registers_the_webhook_and_polling_then_stops_working() {
    let fake = FakeMax::start().await;
    let mut config = fake.config();
    config.webhook_secret = Some(SecretString::from("s3cret_value"));
    let args = SubscribeArgs {
        url: Some(
            "https://zapis.example/webhooks/max/s3cret_value"
                .parse()
                .unwrap(),
        ),
    };
    let line = zapis::messenger::max::subscribe(&config, &args)
        .await
        .unwrap();
    assert!(line.contains("https://zapis.example"), "{line}");
    let subs = fake.subscriptions();
    assert_eq!(subs.len(), 1);
    let call = &fake.calls_of("POST /subscriptions")[0];
    assert_eq!(call.body["secret"], "s3cret_value");
    assert_eq!(
        call.body["update_types"],
        json!(["bot_started", "message_created", "message_callback"])
    );
    let err = client(&fake)
        .updates(None, 10, Duration::ZERO, &[])
        .await
        .unwrap_err();
    assert!(matches!(err, MaxError::Api { status: 400, .. }), "{err}");
    let http = SubscribeArgs {
        url: Some("http://insecure.example/h".parse().unwrap()),
    };
    assert!(
        zapis::messenger::max::subscribe(&config, &http)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn check_reports_reachable_bad_credentials_and_unreachable() {
    let fake = FakeMax::start().await;
    let ok = zapis::messenger::max::status(&fake.config()).await;
    assert!(ok.starts_with("reachable (@zapis_bot)"), "{ok}");
    let mut bad = fake.config();
    bad.token = SecretString::from("nope");
    let status = zapis::messenger::max::status(&bad).await;
    assert!(status.starts_with("bad credentials"), "{status}");
    let mut gone = fake.config();
    gone.api_url = "http://127.0.0.1:9".parse().unwrap();
    let status = zapis::messenger::max::status(&gone).await;
    assert!(status.starts_with("unreachable"), "{status}");
    assert!(!status.contains(fake_max::TOKEN));
}

// ----------------------------------------------------------------------- adapter

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    chat: ChatRef,
    lang: Option<String>,
    event: ChatEvent,
}

#[derive(Default)]
struct Scripted {
    seen: Mutex<Vec<Seen>>,
}

fn text(t: impl Into<String>) -> Reply {
    Reply {
        text: t.into(),
        ..Reply::default()
    }
}

fn button(label: &str, data: &str) -> Button {
    Button {
        label: label.into(),
        data: data.into(),
    }
}

impl Scripted {
    fn events(&self) -> Vec<ChatEvent> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.event.clone())
            .collect()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl ChatHandler for Scripted {
    async fn handle(
        &self,
        chat: &ChatRef,
        user_lang: Option<&str>,
        event: ChatEvent,
    ) -> Result<Vec<Reply>, ConversationError> {
        self.seen.lock().unwrap().push(Seen {
            chat: chat.clone(),
            lang: user_lang.map(String::from),
            event: event.clone(),
        });
        Ok(match &event {
            ChatEvent::Start { payload } => vec![Reply {
                text: format!("start {payload:?}"),
                buttons: vec![vec![
                    button("10:00", "slot:1000"),
                    button("11:00", "slot:1100"),
                ]],
                ..Reply::default()
            }],
            ChatEvent::Button { data, .. } => vec![Reply {
                text: format!("picked {data}"),
                edit: true,
                ..Reply::default()
            }],
            ChatEvent::Contact { phone } => vec![text(format!("got {phone}"))],
            ChatEvent::Text(t) if t == "phone?" => vec![Reply {
                text: "Share your phone".into(),
                request_contact: true,
                buttons: vec![vec![button("Back", "back")]],
                ..Reply::default()
            }],
            ChatEvent::Text(t) if t == "long" => vec![Reply {
                text: format!("{}\n{}", "a".repeat(3990), "b".repeat(1000)),
                buttons: vec![vec![button("OK", "ok")]],
                ..Reply::default()
            }],
            ChatEvent::Text(t) if t == "boom" => {
                let source = serde_json::from_str::<()>("{").unwrap_err();
                return Err(ConversationError::State {
                    chat: "max:boom".into(),
                    source,
                });
            }
            ChatEvent::Text(t) => vec![text(format!("echo {t}"))],
        })
    }
}

fn adapter(fake: &FakeMax) -> MaxAdapter {
    MaxAdapter::new(&fake.config())
        .limits(fast_max_limits())
        .poll_timeout(Duration::from_secs(5))
}

async fn setup() -> (FakeMax, Arc<Scripted>, RunningMaxBot) {
    let fake = FakeMax::start().await;
    let handler = Arc::new(Scripted::default());
    let bot = RunningMaxBot::start(adapter(&fake), handler.clone());
    (fake, handler, bot)
}

#[tokio::test]
async fn start_payload_text_and_locale_reach_the_handler() {
    let (fake, handler, bot) = setup().await;
    let user = fake.user(42).with_locale(Some("en"));
    user.start(Some("src_landing"));
    let shown = user.wait_for_text("start", T).await;
    assert_eq!(shown.text, "start Some(\"src_landing\")");
    assert!(shown.has_button("slot:1000"));
    user.send_text("/start ad_vk");
    user.wait_for_text("ad_vk", T).await;
    user.send_text("hello");
    user.wait_for_text("echo hello", T).await;
    let seen = handler.seen();
    assert_eq!(seen[0].chat.chat_id, "42");
    assert_eq!(seen[0].chat.channel, zapis::domain::Channel::Max);
    assert_eq!(seen[0].lang.as_deref(), Some("en"));
    assert_eq!(
        handler.events()[1],
        ChatEvent::Start {
            payload: Some("ad_vk".into())
        }
    );
    // Sent to the user's dialog, never with the token anywhere but the header.
    let sends = fake.calls_of("POST /messages");
    assert!(
        sends
            .iter()
            .all(|c| c.query.get("user_id").map(String::as_str) == Some("42"))
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_button_press_is_answered_with_the_next_screen_in_place_of_its_message() {
    let (fake, handler, bot) = setup().await;
    let user = fake.user(42);
    user.start(None);
    let shown = user.wait_for_text("start", T).await;
    let callback = user.press("11:00");
    let edited = user.wait_for_text("picked slot:1100", T).await;
    assert!(edited.edited);
    assert_eq!(edited.mid, shown.mid);
    // The keyboard went away with the new screen (attachments: []).
    assert!(edited.buttons.is_empty());
    assert!(fake.answered(&callback));
    assert!(
        matches!(&handler.events()[1], ChatEvent::Button { data, .. } if data == "slot:1100"),
        "{:?}",
        handler.events()
    );
    // The screen travelled in the answer: no separate edit, no new message.
    let answers = fake.calls_of("POST /answers");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].status, 200);
    assert_eq!(answers[0].body["message"]["text"], "picked slot:1100");
    assert!(fake.calls_of("PUT /messages").is_empty());
    assert_eq!(fake.calls_of("POST /messages").len(), 1);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_answer_is_acknowledged_and_the_screen_still_arrives() {
    let (fake, _handler, bot) = setup().await;
    let user = fake.user(42);
    user.start(None);
    user.wait_for_text("start", T).await;
    // MAX refuses the screen as an answer, and then the edit too.
    fake.fail_next(
        "POST /answers",
        Failure::Custom {
            status: 400,
            body: json!({"code": "proto.payload", "message": "bad message"}),
        },
    );
    fake.fail_next(
        "PUT /messages",
        Failure::Custom {
            status: 400,
            body: json!({"code": "message.edit.denied", "message": "too old"}),
        },
    );
    let callback = user.press("10:00");
    let reply = user.wait_for_text("picked slot:1000", T).await;
    assert!(!reply.edited);
    // The press was still acknowledged, with a notification.
    assert!(fake.answered(&callback));
    let answers = fake.calls_of("POST /answers");
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[1].status, 200);
    assert!(answers[1].body["notification"].is_string());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn the_fake_refuses_an_empty_callback_answer_as_max_does() {
    let fake = FakeMax::start().await;
    let user = fake.user(77);
    let c = client(&fake);
    c.send(
        MaxTarget::User(77),
        &contract("send-message-inline-keyboard.schema-example.request.json"),
    )
    .await
    .unwrap();
    let target = MaxTarget::User(77);
    let first = user.press("Press me!");
    let err = c.answer(target, &first, &json!({})).await.unwrap_err();
    assert!(
        matches!(&err, MaxError::Api { status: 400, code, message }
            if code == "proto.payload" && message.contains("`message` or `notification` required")),
        "{err}"
    );
    assert!(!fake.answered(&first));
    c.answer(target, &first, &json!({"notification": "Готово"}))
        .await
        .unwrap();
    assert!(fake.answered(&first));

    // `message` replaces the pressed message and obeys the NewMessageBody rules.
    let second = user.press("Press me!");
    let too_many: Vec<Value> = (0..31)
        .map(|i| json!([{"type": "callback", "text": "b", "payload": format!("p{i}")}]))
        .collect();
    let err = c
        .answer(
            target,
            &second,
            &json!({"message": {"text": "x", "attachments": [
                {"type": "inline_keyboard", "payload": {"buttons": too_many}}]}}),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, MaxError::Api { status: 400, .. }), "{err}");
    c.answer(
        target,
        &second,
        &json!({"message": {"text": "next screen", "attachments": []}}),
    )
    .await
    .unwrap();
    let shown = user.history().pop().unwrap();
    assert_eq!(shown.text, "next screen");
    assert!(shown.edited && shown.buttons.is_empty());
}

#[tokio::test]
async fn contact_requests_and_shared_contacts() {
    let (fake, handler, bot) = setup().await;
    let user = fake.user(42);
    user.send_text("phone?");
    let ask = user.wait_for_reply(|m| m.requests_contact(), T).await;
    // The contact button and the dialog's own buttons share one keyboard.
    assert!(ask.has_button("back"));
    assert_eq!(ask.buttons[0][0].label, "📱 Отправить мой номер");
    user.share_contact("+79161234567");
    user.wait_for_text("got +79161234567", T).await;
    assert_eq!(
        handler.events()[1],
        ChatEvent::Contact {
            phone: "+79161234567".into()
        }
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn long_texts_are_split_with_the_keyboard_on_the_last_part() {
    let (fake, _handler, bot) = setup().await;
    let user = fake.user(42);
    user.send_text("long");
    let last = user.wait_for_text("bbb", T).await;
    assert!(last.has_button("ok"));
    let parts = user.history();
    assert_eq!(parts.len(), 2);
    assert!(parts[0].buttons.is_empty());
    assert!(parts.iter().all(|p| p.text.chars().count() <= 4000));
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_failing_conversation_gets_an_apology_and_the_bot_keeps_running() {
    let (fake, _handler, bot) = setup().await;
    let user = fake.user(42);
    user.send_text("boom");
    user.wait_for_text("Извините", T).await;
    user.send_text("still there?");
    user.wait_for_text("echo still there?", T).await;
    assert!(!bot.is_finished());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn official_fixtures_replayed_through_polling_never_stop_the_bot() {
    let (fake, handler, bot) = setup().await;
    for name in contract_names("sdk-update.") {
        fake.push_fixture(&name);
    }
    fake.push_update(json!({"update_type": "something_new", "timestamp": 1}));
    fake.push_update(json!({"update_type": "bot_started", "timestamp": 1, "user": "garbled"}));
    let user = fake.user(42);
    user.send_text("after the fixtures");
    user.wait_for_text("echo after the fixtures", T).await;
    let events = handler.events();
    assert!(
        events.contains(&ChatEvent::Start { payload: None }),
        "{events:?}"
    );
    assert!(events.contains(&ChatEvent::button("picture")), "{events:?}");
    assert!(
        events.contains(&ChatEvent::Text("...".into())),
        "{events:?}"
    );
    assert!(!bot.is_finished());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_wrong_token_is_a_startup_error_not_a_hang() {
    let fake = FakeMax::start().await;
    let mut config = fake.config();
    config.token = SecretString::from("wrong");
    let handler = Arc::new(Scripted::default());
    let result = tokio::time::timeout(
        T,
        MaxAdapter::new(&config)
            .limits(fast_max_limits())
            .run(handler, std::future::pending()),
    )
    .await
    .expect("returns promptly");
    assert!(matches!(result, Err(MaxError::Unauthorized)));
}

#[tokio::test]
async fn a_restart_resumes_from_the_stored_marker_and_handles_each_update_once() {
    let fake = FakeMax::start().await;
    let store = zapis::store::Store::connect("sqlite::memory:")
        .await
        .unwrap();
    let handler = Arc::new(Scripted::default());
    let run = |h: Arc<Scripted>| {
        RunningMaxBot::start(
            adapter(&fake).cursor_store(store.clone(), &bid("default")),
            h,
        )
    };
    let bot = run(handler.clone());
    let user = fake.user(42);
    let first = user.send_text("one");
    user.wait_for_text("echo one", T).await;
    // Stop before the bot's next poll could tell MAX it is done with `first`.
    bot.stop().await.unwrap();
    let saved = store.load_cursor(&bid("default"), "max").await.unwrap();
    assert_eq!(saved, Some((first + 1).to_string()));

    let calls_before = fake.calls_of("GET /updates").len();
    let bot = run(handler.clone());
    let second = user.send_text("two");
    user.wait_for_text("echo two", T).await;
    let resumed = &fake.calls_of("GET /updates")[calls_before];
    assert_eq!(
        resumed.query.get("marker"),
        Some(&(first + 1).to_string()),
        "the restarted bot resumes from the stored marker"
    );
    fake.wait_for_committed(second, T).await;
    bot.stop().await.unwrap();
    let texts: Vec<ChatEvent> = handler.events();
    assert_eq!(
        texts,
        vec![ChatEvent::Text("one".into()), ChatEvent::Text("two".into())]
    );
    assert!(
        fake.deliveries().values().all(|n| *n == 1),
        "{:?}",
        fake.deliveries()
    );
}

#[test]
fn webhook_bodies_need_the_secret_when_one_is_set() {
    let secret = SecretString::from("s3cret_value");
    let body = serde_json::to_vec(&contract("sdk-webhook.message_callback.json")).unwrap();
    let err = parse_webhook(&HeaderMap::new(), &body, Some(&secret)).unwrap_err();
    assert!(matches!(err, MaxError::BadSecret));
    let mut headers = HeaderMap::new();
    headers.insert(
        zapis::messenger::max::SECRET_HEADER,
        "s3cret_value".parse().unwrap(),
    );
    let updates = parse_webhook(&headers, &body, Some(&secret)).unwrap();
    assert!(matches!(updates[0], MaxUpdate::MessageCallback { .. }));
    let list = serde_json::to_vec(&contract("sdk-update.bot_added.json")).unwrap();
    assert_eq!(
        parse_webhook(&headers, &list, Some(&secret)).unwrap().len(),
        1
    );
}

#[tokio::test]
async fn default_pacing_keeps_under_two_messages_a_second_per_chat() {
    let fake = FakeMax::start().await;
    fake.user(5);
    fake.user(6);
    let c = MaxClient::new(&fake.config());
    let started = Instant::now();
    for i in 0..4 {
        c.send(MaxTarget::User(5), &json!({"text": format!("m{i}")}))
            .await
            .unwrap();
    }
    let mid = c
        .send(MaxTarget::User(6), &json!({"text": "x"}))
        .await
        .unwrap();
    c.edit(MaxTarget::User(6), &mid, &json!({"text": "y"}))
        .await
        .unwrap();
    c.send(MaxTarget::User(6), &json!({"text": "z"}))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1800));
    assert!(
        fake.rate_violations().is_empty(),
        "{:?}",
        fake.rate_violations()
    );
}

#[tokio::test]
async fn a_webhook_delivery_takes_the_same_path_as_polling() {
    let fake = FakeMax::start().await;
    let user = fake.user(42);
    let handler = Arc::new(Scripted::default());
    let bot = zapis::messenger::max::MaxBot::new(
        MaxClient::with_limits(&fake.config(), fast_max_limits()),
        handler.clone(),
        zapis::i18n::Lang::Ru,
    );
    let secret = SecretString::from("s3cret_value");
    let mut headers = HeaderMap::new();
    headers.insert(
        zapis::messenger::max::SECRET_HEADER,
        "s3cret_value".parse().unwrap(),
    );
    let body = json!({"update_type": "bot_started", "timestamp": 1, "chat_id": fake_max::dialog_id(42),
                      "user": user.user_json(), "payload": "ad_vk", "user_locale": "ru"});
    let body = serde_json::to_vec(&body).unwrap();
    for update in parse_webhook(&headers, &body, Some(&secret)).unwrap() {
        bot.handle_update(update).await;
    }
    let shown = user.wait_for_text("start", T).await;
    assert_eq!(shown.text, "start Some(\"ad_vk\")");
    assert_eq!(
        handler.events(),
        vec![ChatEvent::Start {
            payload: Some("ad_vk".into())
        }]
    );
}

#[tokio::test]
async fn outage_alerts_reach_the_max_admin_chat() {
    use zapis::sync::{Alert, AlertKind, AlertSink};
    let fake = FakeMax::start().await;
    // The admin chat is a dialog the fake knows; its chat id follows the fake's numbering.
    fake.user(777001);
    let chat = fake_max::dialog_id(777001);
    let sink = zapis::messenger::notify::MaxAlertSink::new(&fake.config(), chat);
    let at = chrono::Utc::now();
    let alert = Alert {
        kind: AlertKind::Recovered,
        business_id: bid("default"),
        system: zapis::domain::System::Yclients,
        since: at - chrono::Duration::hours(3),
        at,
        last_error: None,
    };
    sink.send(&alert).await.expect("the alert is sent");
    let sent = fake.calls_of("POST /messages");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].query.get("chat_id"), Some(&chat.to_string()));
    assert!(
        sent[0].body["text"]
            .as_str()
            .unwrap_or_default()
            .contains("yclients"),
        "{:?}",
        sent[0]
    );
}

/// The `[support]` admin chat as a handler sees it: admins' replies and the dialogs.
#[derive(Default)]
struct AdminDesk {
    answers: Mutex<Vec<(i64, String, String)>>,
    dialogs: Mutex<Vec<ChatEvent>>,
}

const ADMIN_CHAT: i64 = -70801090403050;

#[async_trait]
impl ChatHandler for AdminDesk {
    async fn handle(
        &self,
        _chat: &ChatRef,
        _user_lang: Option<&str>,
        event: ChatEvent,
    ) -> Result<Vec<Reply>, ConversationError> {
        self.dialogs.lock().unwrap().push(event);
        Ok(Vec::new())
    }

    fn support_chat(&self, channel: zapis::domain::Channel) -> Option<i64> {
        (channel == zapis::domain::Channel::Max).then_some(ADMIN_CHAT)
    }

    async fn relay_answer(
        &self,
        reply: zapis::support::AdminReply<'_>,
    ) -> Result<bool, ConversationError> {
        self.answers.lock().unwrap().push((
            reply.admin_chat,
            reply.replied_to.to_string(),
            reply.text.to_string(),
        ));
        Ok(true)
    }
}

/// MAX's `message_created` in a group chat (the contract), with its `link` made a reply to
/// `mid`, or no link at all; `chat` and `is_bot` as given.
fn admin_update(chat: i64, link: Option<&str>, is_bot: bool, text: &str) -> MaxUpdate {
    let mut list = contract("sdk-update.message_created.json");
    let message = &mut list["updates"][0]["message"];
    message["recipient"]["chat_id"] = json!(chat);
    message["sender"]["is_bot"] = json!(is_bot);
    message["body"]["text"] = json!(text);
    match link {
        Some(mid) => {
            message["link"]["type"] = json!("reply");
            message["link"]["message"]["mid"] = json!(mid);
        }
        None => {
            message.as_object_mut().unwrap().remove("link");
        }
    }
    let list: UpdateList = serde_json::from_value(list).expect("the contract parses");
    list.updates.into_iter().next().expect("one update")
}

#[tokio::test]
async fn a_reply_in_the_max_admin_chat_is_an_answer_and_nothing_else_there_is_a_dialog() {
    let fake = FakeMax::start().await;
    let desk = Arc::new(AdminDesk::default());
    let bot = zapis::messenger::max::MaxBot::new(
        MaxClient::with_limits(&fake.config(), fast_max_limits()),
        desk.clone(),
        zapis::i18n::Lang::Ru,
    );
    bot.handle_update(admin_update(
        ADMIN_CHAT,
        Some("mid.relay-1"),
        false,
        "Да, во дворе.",
    ))
    .await;
    // Admins' own talk, a forward, and our own posts coming back are no answers.
    bot.handle_update(admin_update(
        ADMIN_CHAT,
        None,
        false,
        "коллеги, кто возьмёт?",
    ))
    .await;
    let mut forward = admin_update(ADMIN_CHAT, Some("mid.relay-1"), false, "пересылаю");
    if let MaxUpdate::MessageCreated { message, .. } = &mut forward {
        message.link.as_mut().unwrap().kind = "forward".into();
    }
    bot.handle_update(forward).await;
    bot.handle_update(admin_update(ADMIN_CHAT, Some("mid.relay-1"), true, "#Q1"))
        .await;
    assert_eq!(
        *desk.answers.lock().unwrap(),
        vec![(
            ADMIN_CHAT,
            "mid.relay-1".to_string(),
            "Да, во дворе.".to_string()
        )]
    );
    assert!(
        desk.dialogs.lock().unwrap().is_empty(),
        "the admin chat never becomes a dialog"
    );
    // The same reply in another chat is that chat's own talk.
    bot.handle_update(admin_update(-5, Some("mid.relay-1"), false, "чужой ответ"))
        .await;
    assert_eq!(desk.answers.lock().unwrap().len(), 1);
    assert_eq!(desk.dialogs.lock().unwrap().len(), 1);
}

/// A notice to a MAX user who blocked the bot is dead at once: MAX's 403 `chat.denied` will
/// not change by retrying, so it is not retried for a week. An outage is retried.
#[tokio::test]
async fn a_notice_to_a_user_who_blocked_the_bot_is_not_retried() {
    use zapis::clock::{Clock, FakeClock};
    use zapis::messenger::notify::MaxChatNotifier;
    use zapis::sync::{Alerts, Engine, JobState, SyncConfig};

    let fake = FakeMax::start().await;
    fake.user(5);
    let store = zapis::store::Store::connect("sqlite::memory:")
        .await
        .expect("store");
    let clock = Arc::new(FakeClock::new(chrono::Utc::now()));
    let mut engine = Engine::new(
        store,
        clock.clone(),
        SyncConfig::default(),
        Alerts::new(Vec::new()),
        &bid("salon"),
    );
    engine.register(
        zapis::domain::System::Max,
        Arc::new(MaxChatNotifier::new(&fake.config())),
    );
    let notice = |user: &str, key: &str| {
        zapis::lifecycle::effects::notify_job(
            &bid("salon"),
            &ChatRef::new(zapis::domain::Channel::Max, user),
            key,
            Reply {
                text: "Запись перенесена".into(),
                ..Reply::default()
            },
        )
        .expect("a MAX chat takes messages")
    };
    let queue = engine.queue();
    // User 1 never started the bot (or blocked it): chat.denied.
    let denied = queue
        .enqueue(&notice("1", "moved:1"), clock.now())
        .await
        .unwrap()
        .unwrap();
    engine.run_due().await.unwrap();
    fake.fail_next(
        "POST /messages",
        Failure::Custom {
            status: 503,
            body: json!({"code": "service.unavailable", "message": "try later"}),
        },
    );
    let outage = queue
        .enqueue(&notice("5", "moved:5"), clock.now())
        .await
        .unwrap()
        .unwrap();
    engine.run_due().await.unwrap();
    let job = |id| {
        let queue = engine.queue();
        async move { queue.job(id).await.unwrap().unwrap() }
    };
    let denied = job(denied).await;
    assert_eq!(denied.state, JobState::Dead, "{denied:?}");
    assert!(
        denied
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("chat.denied"),
        "{denied:?}"
    );
    let outage = job(outage).await;
    assert_eq!(outage.state, JobState::Pending, "{outage:?}");
}
