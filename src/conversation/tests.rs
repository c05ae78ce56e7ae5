//! Helpers the tests of the runtime (and of the app) drive a chat with.

use super::*;

/// Presses the first button of `shown` that `pick` accepts.
pub(crate) async fn press(
    conv: &Conversations,
    chat: &ChatRef,
    shown: &[Reply],
    pick: impl Fn(&Button) -> bool,
) -> Vec<Reply> {
    let labels: Vec<&str> = shown
        .iter()
        .flat_map(|r| r.buttons.iter().flatten())
        .map(|b| b.label.as_str())
        .collect();
    let button = shown
        .iter()
        .flat_map(|r| r.buttons.iter().flatten())
        .find(|b| pick(b))
        .unwrap_or_else(|| panic!("no such button among {labels:?}"));
    let event = ChatEvent::pressing(button);
    conv.handle(chat, None, event).await.expect("press")
}

/// The kind of a button (`d:` a day, `t:` a time), after the render counter.
fn kind(b: &Button, prefix: &str) -> bool {
    b.data
        .split_once('|')
        .is_some_and(|(_, p)| p.starts_with(prefix))
}

/// From a fresh chat to the first free time of a women's haircut.
pub(crate) async fn pick_a_time(
    conv: &Conversations,
    chat: &ChatRef,
    payload: Option<&str>,
) -> Vec<Reply> {
    let payload = payload.map(str::to_string);
    let shown = conv
        .handle(chat, None, ChatEvent::Start { payload })
        .await
        .expect("start");
    let shown = press(conv, chat, &shown, |b| b.label.contains("Записаться")).await;
    let shown = press(conv, chat, &shown, |b| b.label.contains("Женская стрижка")).await;
    let shown = press(conv, chat, &shown, |b| b.label.contains("Любой мастер")).await;
    let shown = press(conv, chat, &shown, |b| kind(b, "d:")).await;
    press(conv, chat, &shown, |b| kind(b, "t:")).await
}

/// Chats holding a turn lock now: none once every turn is over.
pub(crate) fn locked_chats(conv: &Conversations) -> usize {
    conv.chat_locks.len()
}
