//! The fake Telegram server itself, checked against ../shared/contracts/telegram.

use crate::support;
use crate::support::BotConfig;
use crate::support::bid;

use serde_json::{Value, json};
use support::fake_telegram::{Failure, FakeTelegram, TOKEN, contract};

async fn post(fake: &FakeTelegram, token: &str, method: &str, body: &Value) -> (u16, Value) {
    let url = format!("{}bot{token}/{method}", fake.api_url());
    let response = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// teloxide parses updates from the response text (its map keys are borrowed strings), so go
/// through text as it does; `from_value` would turn every update into `UpdateKind::Error`.
fn parse_updates(result: &Value) -> Vec<teloxide::types::Update> {
    serde_json::from_str(&result.to_string()).unwrap()
}

/// Every key of `expected` exists in `actual` with the same JSON type, recursively.
fn assert_same_shape(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                let inner = a
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} missing in {actual}"));
                assert_same_shape(v, inner, &format!("{path}.{k}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let (Some(e), Some(a)) = (e.first(), a.first()) {
                assert_same_shape(e, a, &format!("{path}[0]"));
            }
        }
        (e, a) => assert_eq!(
            std::mem::discriminant(e),
            std::mem::discriminant(a),
            "{path}: expected a value like {e}, got {a}"
        ),
    }
}

#[tokio::test]
async fn contract_updates_parse_with_teloxide() {
    let response = contract("get-updates-message-and-callback.response.json");
    let updates = parse_updates(&response["result"]);
    assert_eq!(updates.len(), 2);
    assert!(matches!(
        updates[0].kind,
        teloxide::types::UpdateKind::Message(_)
    ));
    assert!(matches!(
        updates[1].kind,
        teloxide::types::UpdateKind::CallbackQuery(_)
    ));
}

#[tokio::test]
async fn scripted_updates_have_the_contract_shape_and_parse_with_teloxide() {
    let fake = FakeTelegram::start().await;
    let user = fake.user(123);
    user.send_text("/start src_landing");
    let (_, sent) = post(
        &fake,
        TOKEN,
        "SendMessage",
        &contract("send-message-inline-keyboard.request.json"),
    )
    .await;
    assert_eq!(sent["ok"], json!(true), "{sent}");
    user.press("10:00");

    let (status, got) = post(
        &fake,
        TOKEN,
        "GetUpdates",
        &json!({"offset": 0, "timeout": 0}),
    )
    .await;
    assert_eq!(status, 200);
    let expected = contract("get-updates-message-and-callback.response.json");
    assert_same_shape(&expected["result"][0], &got["result"][0], "message update");
    assert_same_shape(&expected["result"][1], &got["result"][1], "callback update");
    assert_eq!(
        got["result"][1]["callback_query"]["data"],
        json!("slot:1000")
    );
    let parsed = parse_updates(&got["result"]);
    assert!(matches!(
        parsed[1].kind,
        teloxide::types::UpdateKind::CallbackQuery(_)
    ));

    // A sent message comes back as a Message with the shape of the contract's bot message.
    assert_same_shape(
        &expected["result"][1]["callback_query"]["message"],
        &sent["result"],
        "sendMessage result",
    );
}

#[tokio::test]
async fn getme_and_getwebhookinfo_answer_the_contract_results_in_any_case() {
    let fake = FakeTelegram::start().await;
    for method in ["GetMe", "getMe", "getme"] {
        let (status, body) = post(&fake, TOKEN, method, &json!({})).await;
        assert_eq!(
            (status, &body["result"]),
            (200, &contract("get-me.result.json"))
        );
    }
    let (_, body) = post(&fake, TOKEN, "GetWebhookInfo", &json!({})).await;
    assert_eq!(body["result"], contract("get-webhook-info.result.json"));
    let _: teloxide::types::Me = serde_json::from_value(contract("get-me.result.json")).unwrap();
}

#[tokio::test]
async fn wrong_token_is_unauthorized() {
    let fake = FakeTelegram::start().await;
    let (status, body) = post(&fake, "1:WRONG", "GetMe", &json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
    );
}

#[tokio::test]
async fn every_contract_request_body_is_accepted() {
    let fake = FakeTelegram::start().await;
    let user = fake.user(123);
    // Thirteen updates, so the contract's offset 13 confirms twelve and gets the last one
    // at once instead of long-polling for its full 10 s.
    for i in 1..=13 {
        user.send_text(&format!("m{i}"));
    }
    fake.seed_bot_message(123, 5, "Pick a slot");
    fake.seed_callback_query("q1");
    for (file, method) in [
        ("send-message-inline-keyboard.request.json", "SendMessage"),
        ("edit-message-text.request.json", "EditMessageText"),
        ("answer-callback-query.request.json", "AnswerCallbackQuery"),
        ("get-updates-allowed-updates.request.json", "GetUpdates"),
    ] {
        let (status, body) = post(&fake, TOKEN, method, &contract(file)).await;
        assert_eq!(status, 200, "{file}: {body}");
        assert_eq!(body["ok"], json!(true), "{file}");
    }
    assert!(fake.answered("q1"));
    assert_eq!(fake.confirmed_offset(), 13);
    assert_eq!(fake.pending_updates(), 1);
    assert_eq!(
        fake.calls_of("editmessagetext")[0],
        contract("edit-message-text.request.json")
    );
    // Editing again to the same text is "not modified", in Telegram's exact words.
    let (status, body) = post(
        &fake,
        TOKEN,
        "EditMessageText",
        &contract("edit-message-text.request.json"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .starts_with("Bad Request: message is not modified")
    );
}

#[tokio::test]
async fn validation_errors_use_telegram_descriptions() {
    let fake = FakeTelegram::start().await;
    fake.user(123);
    let long_data = json!({"chat_id": 123, "text": "x", "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "я".repeat(33)}]]}});
    let (status, body) = post(&fake, TOKEN, "SendMessage", &long_data).await;
    assert_eq!(
        (status, body["description"].as_str()),
        (400, Some("Bad Request: BUTTON_DATA_INVALID"))
    );

    let (status, _) = post(
        &fake,
        TOKEN,
        "SendMessage",
        &json!({"chat_id": 123, "text": "x".repeat(4097)}),
    )
    .await;
    assert_eq!(status, 400);

    let (status, body) = post(
        &fake,
        TOKEN,
        "SendMessage",
        &json!({"chat_id": 77, "text": "x"}),
    )
    .await;
    assert_eq!(
        (status, body),
        (400, contract("error-400-chat-not-found.response.json"))
    );

    fake.fail_next("sendMessage", Failure::BotBlocked);
    let (status, body) = post(
        &fake,
        TOKEN,
        "SendMessage",
        &json!({"chat_id": 123, "text": "x"}),
    )
    .await;
    assert_eq!(
        (status, body),
        (403, contract("error-403-bot-blocked.response.json"))
    );

    fake.fail_next("SendMessage", Failure::TooManyRequests { retry_after: 1 });
    let (status, body) = post(
        &fake,
        TOKEN,
        "SendMessage",
        &json!({"chat_id": 123, "text": "x"}),
    )
    .await;
    assert_eq!(status, 429);
    assert_same_shape(
        &contract("error-429-too-many-requests.response.json"),
        &body,
        "429",
    );
    assert_eq!(body["parameters"]["retry_after"], json!(1));
}

#[tokio::test]
async fn get_updates_long_polls_confirms_offsets_and_honours_allowed_updates() {
    let fake = FakeTelegram::start().await;
    let user = fake.user(5);

    // Nothing queued: the poll waits for the timeout instead of spinning.
    let started = std::time::Instant::now();
    let (_, body) = post(&fake, TOKEN, "getUpdates", &json!({"timeout": 1})).await;
    assert_eq!(body["result"], json!([]));
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));

    // A waiting poll wakes as soon as an update arrives.
    let poll = {
        let url = format!("{}bot{TOKEN}/getUpdates", fake.api_url());
        tokio::spawn(async move {
            let body: Value = reqwest::Client::new()
                .post(url)
                .json(&json!({"timeout": 10, "allowed_updates": ["message"]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let first = user.send_text("hello");
    let started = std::time::Instant::now();
    let body = poll.await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(body["result"][0]["update_id"], json!(first));

    // Unconfirmed updates come again; confirmed ones never do.
    let (_, again) = post(&fake, TOKEN, "getUpdates", &json!({"offset": first})).await;
    assert_eq!(again["result"].as_array().unwrap().len(), 1);
    let (_, after) = post(&fake, TOKEN, "getUpdates", &json!({"offset": first + 1})).await;
    assert_eq!(after["result"], json!([]));
    assert_eq!(fake.pending_updates(), 0);

    // allowed_updates is remembered: callbacks stay withheld while only messages are allowed.
    fake.seed_bot_message(5, 900, "pick");
    let (_, sent) = post(
        &fake,
        TOKEN,
        "sendMessage",
        &json!({"chat_id": 5, "text": "pick", "reply_markup": {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}}),
    )
    .await;
    assert_eq!(sent["ok"], json!(true));
    user.press("A");
    let (_, withheld) = post(&fake, TOKEN, "getUpdates", &json!({"offset": first + 1})).await;
    assert_eq!(withheld["result"], json!([]));
    let (_, delivered) = post(
        &fake,
        TOKEN,
        "getUpdates",
        &json!({"offset": first + 1, "allowed_updates": ["message", "callback_query"]}),
    )
    .await;
    assert!(delivered["result"][0]["callback_query"]["chat_instance"].is_string());
}

#[tokio::test]
async fn outage_alerts_reach_the_admin_chat() {
    use zapis::sync::{Alert, AlertKind, AlertSink};
    let fake = FakeTelegram::start().await;
    // The admin chat exists on Telegram's side before the bot writes to it.
    fake.user(-100500);
    let sink = zapis::messenger::notify::TelegramAlertSink::new(&fake.config(), -100500);
    let at = chrono::Utc::now();
    let alert = Alert {
        kind: AlertKind::Down,
        business_id: bid("default"),
        system: zapis::domain::System::AmoCrm,
        since: at - chrono::Duration::hours(2),
        at,
        last_error: Some("HTTP 503".into()),
    };
    sink.send(&alert).await.expect("the alert is sent");
    let sent = fake.calls_of("sendmessage");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["chat_id"], serde_json::json!(-100500));
    assert!(
        sent[0]["text"].as_str().unwrap().contains("amocrm"),
        "{sent:?}"
    );
}
