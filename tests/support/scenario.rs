//! Dialog scenarios as data, run unchanged against every messenger's fake, so the Telegram and
//! MAX frontends cannot drift apart: a step that works on one and not the other fails the test
//! for the other.

use std::time::Duration;

use async_trait::async_trait;

use super::fake_max::FakeMaxUser;
use super::fake_telegram::FakeUser;

pub const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub enum Step {
    /// Arrive through a deep link (`/start payload` on Telegram, `bot_started` on MAX).
    Start(Option<&'static str>),
    /// Press the first button of the latest keyboard whose label contains this.
    PressLabel(&'static str),
    /// Press the first button whose callback payload starts with this (`d:` a day, `t:` a time).
    PressKind(&'static str),
    ShareContact(&'static str),
    SendText(&'static str),
    /// A reply since the user's last action contains this.
    ExpectText(&'static str),
    /// A reply since the user's last action offers the messenger's "share my phone" button.
    ExpectContactRequest,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub steps: Vec<Step>,
}

/// A keyboard as the user sees it: which message it is on, and its (label, data) buttons.
#[derive(Debug, Clone)]
pub struct ShownKeyboard {
    pub message: String,
    pub buttons: Vec<(String, String)>,
}

/// What a scripted user of any messenger fake can do.
#[async_trait]
pub trait ScriptedUser: Send + Sync {
    fn messenger(&self) -> &'static str;
    fn start(&self, payload: Option<&str>);
    fn send_text(&self, text: &str);
    fn share_contact(&self, phone: &str);
    /// The latest bot message with pressable (callback) buttons.
    fn latest_keyboard(&self) -> Option<ShownKeyboard>;
    fn press_on(&self, message: &str, data: &str);
    async fn expect_text(&self, needle: &str);
    async fn expect_contact_request(&self);
}

/// The payload part of a button's data (`7|s:s1` → `s:s1`).
pub fn payload(data: &str) -> &str {
    data.split_once('|').map_or(data, |(_, p)| p)
}

/// Runs every step, failing with the scenario, messenger and step named.
pub async fn run(scenario: &Scenario, user: &dyn ScriptedUser) {
    for (i, step) in scenario.steps.iter().enumerate() {
        eprintln!(
            "[{} on {}] step {i}: {step:?}",
            scenario.name,
            user.messenger()
        );
        match step {
            Step::Start(payload) => user.start(*payload),
            Step::SendText(text) => user.send_text(text),
            Step::ShareContact(phone) => user.share_contact(phone),
            Step::ExpectText(needle) => user.expect_text(needle).await,
            Step::ExpectContactRequest => user.expect_contact_request().await,
            Step::PressLabel(needle) => {
                press(user, |label, _| label.contains(needle), step).await;
            }
            Step::PressKind(prefix) => {
                press(user, |_, data| payload(data).starts_with(prefix), step).await;
            }
        }
    }
}

async fn press(user: &dyn ScriptedUser, want: impl Fn(&str, &str) -> bool, step: &Step) {
    for _ in 0..(WAIT.as_millis() / 50) {
        if let Some(kb) = user.latest_keyboard()
            && let Some((_, data)) = kb.buttons.iter().find(|(l, d)| want(l, d))
        {
            user.press_on(&kb.message, data);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{}: no keyboard for {step:?}; the latest is {:#?}",
        user.messenger(),
        user.latest_keyboard()
    );
}

#[async_trait]
impl ScriptedUser for FakeUser {
    fn messenger(&self) -> &'static str {
        "telegram"
    }
    fn start(&self, payload: Option<&str>) {
        match payload {
            Some(p) => FakeUser::send_text(self, &format!("/start {p}")),
            None => FakeUser::send_text(self, "/start"),
        };
    }
    fn send_text(&self, text: &str) {
        FakeUser::send_text(self, text);
    }
    fn share_contact(&self, phone: &str) {
        FakeUser::share_contact(self, phone);
    }
    fn latest_keyboard(&self) -> Option<ShownKeyboard> {
        let m = self
            .history()
            .into_iter()
            .rev()
            .find(|m| !m.buttons.is_empty())?;
        Some(ShownKeyboard {
            message: m.message_id.to_string(),
            buttons: m
                .buttons
                .iter()
                .flatten()
                .map(|b| (b.label.clone(), b.data.clone()))
                .collect(),
        })
    }
    fn press_on(&self, message: &str, data: &str) {
        let id = message.parse().expect("telegram message ids are numbers");
        FakeUser::press_on(self, id, data);
    }
    async fn expect_text(&self, needle: &str) {
        self.wait_for_text(needle, WAIT).await;
    }
    async fn expect_contact_request(&self) {
        self.wait_for_reply(|m| m.requests_contact(), WAIT).await;
    }
}

#[async_trait]
impl ScriptedUser for FakeMaxUser {
    fn messenger(&self) -> &'static str {
        "max"
    }
    fn start(&self, payload: Option<&str>) {
        FakeMaxUser::start(self, payload);
    }
    fn send_text(&self, text: &str) {
        FakeMaxUser::send_text(self, text);
    }
    fn share_contact(&self, phone: &str) {
        FakeMaxUser::share_contact(self, phone);
    }
    fn latest_keyboard(&self) -> Option<ShownKeyboard> {
        let m = self
            .history()
            .into_iter()
            .rev()
            .find(|m| m.buttons.iter().flatten().any(|b| b.kind == "callback"))?;
        Some(ShownKeyboard {
            message: m.mid.clone(),
            buttons: m
                .buttons
                .iter()
                .flatten()
                .filter(|b| b.kind == "callback")
                .map(|b| (b.label.clone(), b.data.clone()))
                .collect(),
        })
    }
    fn press_on(&self, message: &str, data: &str) {
        FakeMaxUser::press_on(self, message, data);
    }
    async fn expect_text(&self, needle: &str) {
        self.wait_for_text(needle, WAIT).await;
    }
    async fn expect_contact_request(&self) {
        self.wait_for_reply(|m| m.requests_contact(), WAIT).await;
    }
}

/// Book from a deep link, then cancel from "my bookings".
pub fn book_and_cancel() -> Scenario {
    use Step::*;
    let mut steps = vec![Start(Some("src_landing")), ExpectText("Салон «Лилия»")];
    steps.extend(to_phone_step());
    steps.extend([
        ShareContact("+7 912 345-67-89"),
        ExpectText("имя"),
        SendText("Анна"),
        ExpectText("Проверьте запись"),
        PressLabel("Подтвердить"),
        ExpectText("вы записаны"),
        PressLabel("Мои записи"),
        PressLabel("Отменить"),
        PressLabel("Да, отменить"),
        ExpectText("Запись отменена"),
    ]);
    Scenario {
        name: "book and cancel",
        steps,
    }
}

/// A typed phone that is no phone is asked for again; a good one moves on.
pub fn bad_phone_is_asked_again() -> Scenario {
    use Step::*;
    let mut steps = vec![Start(None), ExpectText("Салон «Лилия»")];
    steps.extend(to_phone_step());
    steps.extend([
        SendText("12"),
        ExpectText("Не получилось распознать номер"),
        SendText("+7 912 345-67-89"),
        ExpectText("имя"),
    ]);
    Scenario {
        name: "bad phone re-ask",
        steps,
    }
}

fn to_phone_step() -> Vec<Step> {
    use Step::*;
    vec![
        PressLabel("Записаться"),
        PressLabel("Женская стрижка"),
        PressLabel("Любой мастер"),
        PressKind("d:"),
        PressKind("t:"),
        // The personal-data consent comes before the phone.
        ExpectText("персональных данных"),
        PressLabel("Согласен"),
        ExpectContactRequest,
    ]
}
