use super::turns::{ChatTurns, Turn};
use super::*;
use crate::conversation::ChatEvent;
use crate::messenger::describe;

#[test]
fn start_commands_carry_the_deep_link_payload() {
    assert_eq!(
        text_event("/start src_landing"),
        ChatEvent::Start {
            payload: Some("src_landing".into())
        }
    );
    assert_eq!(text_event("/start"), ChatEvent::Start { payload: None });
    assert_eq!(text_event("/start   "), ChatEvent::Start { payload: None });
    assert_eq!(
        text_event("/start@zapis_bot ad_vk"),
        ChatEvent::Start {
            payload: Some("ad_vk".into())
        }
    );
    assert_eq!(text_event("/started"), ChatEvent::Text("/started".into()));
    assert_eq!(text_event("привет"), ChatEvent::Text("привет".into()));
}

#[test]
fn long_texts_split_at_line_breaks_within_the_limit() {
    let line = "а".repeat(30);
    let text = [line.as_str(); 10].join("\n");
    let parts = split_text_at(&text, 100);
    assert!(parts.iter().all(|p| p.encode_utf16().count() <= 100));
    assert_eq!(parts.join("\n"), text);
    assert_eq!(parts[0], [line.as_str(); 3].join("\n"));
}

#[test]
fn unbreakable_texts_are_cut_hard_and_emoji_count_as_two_units() {
    let text = "😀".repeat(5);
    let parts = split_text_at(&text, 4);
    assert_eq!(parts, vec!["😀😀", "😀😀", "😀"]);
    assert_eq!(split_text(""), vec!["…"]);
    assert_eq!(split_text("short"), vec!["short"]);
}

#[test]
fn the_token_never_reaches_the_logs() {
    let r = Redactor::new(&SecretString::from("123:ABC"));
    assert_eq!(
        r.redact("error sending request for url (http://x/bot123:ABC/GetMe)"),
        "error sending request for url (http://x/bot<token>/GetMe)"
    );
}

#[tokio::test(start_paused = true)]
async fn a_chat_takes_turns_in_arrival_order_while_other_chats_run_alongside() {
    let turns = Arc::new(ChatTurns::default());
    let log = std::sync::Mutex::new(Vec::new());
    async fn run(mut turn: Turn, id: &str, ms: u64, log: &std::sync::Mutex<Vec<String>>) {
        turn.wait().await;
        log.lock().unwrap().push(format!("{id}+"));
        tokio::time::sleep(Duration::from_millis(ms)).await;
        log.lock().unwrap().push(format!("{id}-"));
    }
    let first = turns.enter(1);
    let second = turns.enter(1);
    let other = turns.enter(2);
    let third = turns.enter(1);
    assert_eq!(turns.busy_chats(), 2);
    // Polled in reverse, so only the turns can put them in order.
    tokio::join!(
        run(third, "c", 1, &log),
        run(other, "x", 5, &log),
        run(second, "b", 10, &log),
        run(first, "a", 20, &log),
    );
    let log = log.into_inner().unwrap();
    assert_eq!(log, ["x+", "a+", "x-", "a-", "b+", "b-", "c+", "c-"]);
    assert_eq!(turns.busy_chats(), 0, "an idle chat leaves nothing behind");
}

#[tokio::test]
async fn a_turn_dropped_while_waiting_is_skipped() {
    let turns = Arc::new(ChatTurns::default());
    let first = turns.enter(7);
    let gone = turns.enter(7);
    let mut last = turns.enter(7);
    drop(gone);
    drop(first);
    tokio::time::timeout(Duration::from_secs(1), last.wait())
        .await
        .expect("the turn passes over a waiter that went away");
    drop(last);
    assert_eq!(turns.busy_chats(), 0);
}

#[test]
fn contacts_are_logged_masked() {
    let text = describe(&ChatEvent::Contact {
        phone: "+79161234567".into(),
    });
    assert!(!text.contains("1234567"), "{text}");
    assert!(!describe(&ChatEvent::Text("my phone 89161234567".into())).contains("916"));
}

#[tokio::test(start_paused = true)]
async fn a_turn_on_its_own_task_stops_when_its_handler_is_dropped() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let finished = Arc::new(AtomicBool::new(false));
    let turn = {
        let finished = finished.clone();
        async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            finished.store(true, Ordering::SeqCst);
        }
    };
    let handler = super::bot::on_own_task(turn);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(100), handler)
            .await
            .is_err(),
        "the turn is still going"
    );
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert!(!finished.load(Ordering::SeqCst), "the dropped turn went on");

    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    super::bot::on_own_task(async move { d.store(true, Ordering::SeqCst) })
        .await
        .unwrap();
    assert!(done.load(Ordering::SeqCst));
}
