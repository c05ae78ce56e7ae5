//! The confirmation code a salon may demand.

use super::*;

/// Books up to the confirmation and confirms; the schedule answers that it wants a code.
pub(super) fn bot_at_code() -> Bot {
    let mut bot = Bot::new();
    bot.world.write_answers.push_back(Loaded::CodeRequired {
        booking_id: crate::domain::bk("bk-code"),
    });
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+7 912 345-67-89");
    bot.text("Анна");
    bot.press(&t(Lang::Ru, "btn-confirm"));
    bot
}

#[test]
fn a_code_demand_asks_for_the_code_and_the_right_code_completes_the_booking() {
    let mut bot = bot_at_code();
    let asked = bot.last().clone();
    assert!(asked.text.contains("+7 912 345-67-89"), "{}", asked.text);
    assert!(asked.text.contains("код"), "{}", asked.text);
    assert!(bot.st.awaits_code());
    assert!(bot.has_button(&ru("btn-resend-code")));
    // Spaces and dashes as the client may type them.
    let replies = bot.text("43-21");
    assert_eq!(
        bot.last_command(),
        &Command::SubmitCode {
            booking_id: crate::domain::bk("bk-code"),
            code: "4321".into()
        }
    );
    assert!(replies.iter().any(|r| r.text.contains("вы записаны")));
    assert!(!bot.st.awaits_code());
    // The code is nowhere in the persisted state.
    let json = serde_json::to_string(&bot.st).unwrap();
    assert!(!json.contains("4321"), "{json}");
}

#[test]
fn three_wrong_codes_give_up_and_say_call() {
    let mut bot = bot_at_code();
    let first = bot.text("1111");
    assert!(
        first
            .iter()
            .any(|r| r.text.contains(&note("note-code-wrong")))
    );
    assert!(first.iter().any(|r| r.text.contains("Осталось 2 попытки")));
    // Not a code at all: asked again, no try spent, nothing sent.
    let commands = bot.commands.len();
    let odd = bot.text("привет");
    assert_eq!(bot.commands.len(), commands);
    assert!(odd.iter().any(|r| r.text.contains(&note("note-bad-code"))));
    bot.text("2222");
    assert!(bot.last().text.contains("Осталась 1 попытка"));
    let last = bot.text("3333");
    assert_eq!(
        bot.last_command(),
        &Command::AbandonCode {
            booking_id: crate::domain::bk("bk-code")
        }
    );
    let told = &last.last().unwrap().text;
    assert!(told.contains("+7 343 000-00-00"), "{told}");
    assert!(!bot.st.awaits_code());
    let submitted = bot
        .commands
        .iter()
        .filter(|c| matches!(c, Command::SubmitCode { .. }))
        .count();
    assert_eq!(submitted, 3);
}

#[test]
fn the_code_is_sent_again_once_and_cancel_abandons_the_booking() {
    let mut bot = bot_at_code();
    let resent = bot.press(&ru("btn-resend-code"));
    assert_eq!(
        bot.commands
            .iter()
            .filter(|c| matches!(c, Command::ResendCode { .. }))
            .count(),
        1
    );
    assert!(
        resent
            .iter()
            .any(|r| r.text.contains(&note("note-code-resent")))
    );
    // Once only.
    assert!(!bot.has_button(&ru("btn-resend-code")));
    bot.press(&ru("btn-cancel"));
    assert_eq!(
        bot.last_command(),
        &Command::AbandonCode {
            booking_id: crate::domain::bk("bk-code")
        }
    );
    assert!(!bot.st.awaits_code());
}

#[test]
fn a_failed_code_check_returns_to_the_code_prompt_on_retry() {
    let mut bot = bot_at_code();
    bot.world.write_answers.push_back(Loaded::Failed {
        reason: "timeout".into(),
    });
    bot.text("4321");
    assert!(bot.has_button(&ru("btn-retry")));
    // Retry asks for the code again; nothing is booked anew.
    bot.press(&ru("btn-retry"));
    assert!(bot.st.awaits_code());
    assert!(bot.last().text.contains("+7 912 345-67-89"));
    assert_eq!(bot.books().len(), 1);
    bot.text("4321");
    assert!(bot.last().text.contains("вы записаны"));
}

#[test]
fn leaving_the_code_prompt_gives_up_the_waiting_booking_once() {
    let mut bot = bot_at_code();
    bot.text("/start");
    let abandoned = bot
        .commands
        .iter()
        .filter(|c| matches!(c, Command::AbandonCode { .. }))
        .count();
    assert_eq!(abandoned, 1);
    assert!(!bot.st.awaits_code());
    // A code typed afterwards is just text.
    bot.text("4321");
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::SubmitCode { .. }))
    );
}
