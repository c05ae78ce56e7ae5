//! A scripted Telegram client of the bot: presses buttons by what they say and walks the
//! booking flow, for every test and benchmark that drives a real bot through the fake Bot API.

use std::time::Duration;

use crate::fake_telegram::{BotMessage, FakeUser};

/// How long a scripted client waits for the bot's answer.
pub const WAIT: Duration = Duration::from_secs(20);

/// A port nothing listens on yet, for a service's `[http] listen`.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `done` holds, looking every 50 ms for up to 20 s.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The payload part of a button's callback data (`7|s:s1` → `s:s1`).
pub fn payload(data: &str) -> &str {
    data.split_once('|').map_or(data, |(_, p)| p)
}

/// Presses the first button of the latest keyboard whose label contains `needle`.
pub async fn press_label(user: &FakeUser, needle: &str) -> BotMessage {
    let shown = keyboard(user, |m| m.labels().iter().any(|l| l.contains(needle))).await;
    let button = shown
        .buttons
        .iter()
        .flatten()
        .find(|b| b.label.contains(needle))
        .expect("button present");
    user.press(&button.data);
    shown
}

/// Presses the first button whose callback payload starts with `prefix` (a day, a time).
pub async fn press_kind(user: &FakeUser, prefix: &str) -> BotMessage {
    let shown = keyboard(user, |m| {
        m.buttons
            .iter()
            .flatten()
            .any(|b| payload(&b.data).starts_with(prefix))
    })
    .await;
    let button = shown
        .buttons
        .iter()
        .flatten()
        .find(|b| payload(&b.data).starts_with(prefix))
        .expect("button present");
    user.press(&button.data);
    shown
}

pub async fn keyboard(user: &FakeUser, want: impl Fn(&BotMessage) -> bool) -> BotMessage {
    for _ in 0..(WAIT.as_millis() / 50) {
        let latest = user
            .history()
            .into_iter()
            .rev()
            .find(|m| !m.buttons.is_empty());
        if let Some(m) = latest.filter(&want) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no keyboard as wanted; the chat shows: {:#?}",
        user.history()
    );
}

/// The label of the button that agrees to the personal-data policy.
pub const AGREE: &str = "Согласен";

/// Whether `m` is the personal-data consent screen.
pub fn is_consent(m: &BotMessage) -> bool {
    m.labels().iter().any(|l| l.contains(AGREE))
}

/// Agrees to the personal-data policy on the consent screen shown, as a booking client does
/// before giving their phone.
pub async fn agree(user: &FakeUser) -> BotMessage {
    press_label(user, AGREE).await
}

/// Walks the booking flow from the main menu to the confirmation: the first free day and time
/// with any master, a shared contact and a name. Returns the picked time's label.
pub async fn book_first_slot(user: &FakeUser, service: &str, phone: &str, name: &str) -> String {
    let picked = book_until_confirm(user, service, phone, name).await;
    press_label(user, "Подтвердить").await;
    picked
}

/// The booking flow up to the confirmation screen, without confirming.
pub async fn book_until_confirm(user: &FakeUser, service: &str, phone: &str, name: &str) -> String {
    press_label(user, "Записаться").await;
    press_label(user, service).await;
    press_label(user, "Любой мастер").await;
    press_kind(user, "d:").await;
    let times = press_kind(user, "t:").await;
    let picked = times
        .buttons
        .iter()
        .flatten()
        .find(|b| payload(&b.data).starts_with("t:"))
        .map(|b| b.label.clone())
        .unwrap_or_default();
    let asked = |m: &BotMessage| {
        m.requests_contact() || m.text.contains("имя") || m.text.contains("Проверьте запись")
    };
    // The personal-data consent comes first in a chat that has not agreed yet.
    let mut shown = user
        .wait_for_reply(|m| is_consent(m) || asked(m), WAIT)
        .await;
    if is_consent(&shown) {
        agree(user).await;
        shown = user.wait_for_reply(asked, WAIT).await;
    }
    if shown.requests_contact() {
        user.send_text(phone);
        shown = user
            .wait_for_reply(
                |m| m.text.contains("имя") || m.text.contains("Проверьте запись"),
                WAIT,
            )
            .await;
    }
    if shown.text.contains("имя") {
        user.send_text(name);
        user.wait_for_text("Проверьте запись", WAIT).await;
    }
    picked
}
