//! "Call an administrator": the button, free text to the admins, and their hours.

use super::*;

pub(super) fn with_support(hours: Option<&str>, days: Option<&[&str]>) -> Bot {
    let config = crate::support::SupportConfig {
        telegram_chat_id: Some(-100),
        hours: hours.map(str::to_string),
        days: days.map(|d| d.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let mut ctx = ctx();
    ctx.support = Some(Support {
        hours: config.hours().expect("hours"),
    });
    Bot::with(ctx, World::salon())
}

pub(super) fn calls(bot: &Bot) -> Vec<Option<String>> {
    bot.commands
        .iter()
        .filter_map(|c| match c {
            Command::CallAdmin { question } => Some(question.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn without_an_admin_chat_there_is_no_call_and_free_text_gets_the_hint() {
    let mut bot = Bot::new();
    bot.start();
    assert!(!bot.has_button(&ru("btn-call-admin")));
    let r = bot.text("а парковка есть?");
    assert!(r[0].text.contains(&note("note-hint")));
    // A pressed "call" from an old message is nothing without an admin chat.
    let v = bot.st.v;
    bot.send(Input::Button(format!("{v}|Q")));
    assert!(calls(&bot).is_empty());
}

#[test]
fn the_call_button_on_the_menu_and_help_asks_for_an_administrator() {
    let mut bot = with_support(None, None);
    bot.start();
    assert!(bot.has_button(&ru("btn-call-admin")));
    let r = bot.press(&ru("btn-call-admin"));
    assert_eq!(calls(&bot), [None]);
    assert_eq!(r.len(), 1);
    assert!(r[0].text.contains(&ru("support-called")), "{}", r[0].text);
    assert!(!r[0].text.contains("не на связи"), "no hours, always in");
    assert!(bot.has_button(&ru("btn-menu")));

    bot.text("/help");
    assert!(bot.has_button(&ru("btn-call-admin")));
    bot.press(&ru("btn-call-admin"));
    assert_eq!(calls(&bot), [None, None]);
}

#[test]
fn free_text_the_dialog_cannot_place_goes_to_the_admins_and_keeps_the_step() {
    let mut bot = with_support(None, None);
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    let r = bot.text("  а мастер Анна работает в субботу?  ");
    assert_eq!(
        calls(&bot),
        [Some("а мастер Анна работает в субботу?".to_string())]
    );
    assert_eq!(r.len(), 1);
    assert!(r[0].text.contains(&ru("support-sent")), "{}", r[0].text);
    assert!(!r[0].text.contains(&note("note-hint")));
    // The masters screen is still the current one: its buttons work.
    bot.press("Анна");
    assert!(bot.has_button("Сегодня 2 дек"));

    // What the dialog does place is not a question: a phone at the phone step, a command.
    bot.press("Сегодня 2 дек");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("/menu");
    assert_eq!(calls(&bot).len(), 1);
}

#[test]
fn outside_the_hours_the_client_is_told_when_admins_answer() {
    // The test clock: Monday 2 Dec 2024, 09:00 in Yekaterinburg.
    let mut bot = with_support(Some("10:00-20:00"), None);
    bot.start();
    let r = bot.text("вы работаете?");
    assert!(
        r[0].text.contains("ответим сегодня с 10:00"),
        "{}",
        r[0].text
    );
    assert_eq!(calls(&bot).len(), 1, "the question goes to admins anyway");

    let mut bot = with_support(Some("08:00-09:00"), None);
    bot.start();
    let r = bot.press(&ru("btn-call-admin"));
    assert!(
        r[0].text.contains("ответим завтра с 08:00"),
        "{}",
        r[0].text
    );

    let mut bot = with_support(Some("10:00-18:00"), Some(&["sat"]));
    bot.start();
    let r = bot.text("вы работаете?");
    assert!(
        r[0].text.contains("ответим Сб 7 дек с 10:00"),
        "{}",
        r[0].text
    );

    let mut bot = with_support(Some("08:00-20:00"), None);
    bot.start();
    let r = bot.text("вы работаете?");
    assert!(!r[0].text.contains("не на связи"), "{}", r[0].text);
}
