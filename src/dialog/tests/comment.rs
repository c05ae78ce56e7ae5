//! A comment to the visit.

use super::*;

#[test]
fn a_comment_before_confirming_goes_into_the_booking() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    assert!(bot.has_button(&ru("btn-comment")));
    let r = bot.press(&ru("btn-comment"));
    assert!(
        r[0].text.contains("Не больше 200 символов"),
        "{}",
        r[0].text
    );
    assert!(
        !bot.has_button(&ru("btn-comment-drop")),
        "nothing to drop yet"
    );
    let r = bot.text("  Покороче,\n пожалуйста  ");
    assert!(
        r[0].text.contains("Комментарий: Покороче, пожалуйста"),
        "{}",
        r[0].text
    );
    assert!(bot.has_button(&ru("btn-comment-edit")));
    assert!(bot.books().is_empty(), "a comment does not book by itself");
    bot.press(&ru("btn-confirm"));
    let books = bot.books();
    assert_eq!(books.len(), 1);
    assert_eq!(books[0].comment.as_deref(), Some("Покороче, пожалуйста"));
    // The comment belonged to that visit: the next booking starts without one.
    assert!(
        !serde_json::to_string(&bot.st)
            .expect("json")
            .contains("Покороче")
    );
    bot.press(&ru("btn-book"));
    bot.press("Маникюр");
    bot.press("Анна");
    bot.press("Ср 4 дек");
    let r = bot.press("15:00");
    assert!(!r[0].text.contains("Комментарий:"), "{}", r[0].text);
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books()[1].comment, None);
}

#[test]
fn a_comment_can_be_changed_dropped_or_left_and_a_long_one_is_refused() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-comment"));
    // Back from the comment prompt: the confirmation again, no comment.
    let r = bot.press(&ru("btn-back"));
    assert!(r[0].text.contains("Проверьте запись"), "{}", r[0].text);
    assert!(!r[0].text.contains("Комментарий:"));
    bot.press(&ru("btn-comment"));
    let long = "а".repeat(201);
    let r = bot.text(&long);
    assert!(
        r[0].text.contains(&note("note-comment-long")),
        "{}",
        r[0].text
    );
    assert!(r[0].text.contains("Не больше 200"), "the prompt again");
    bot.text(&"б".repeat(200));
    assert!(bot.last().text.contains(&"б".repeat(200)));
    // The longest comment keeps the persisted state within 1 KB.
    let json = serde_json::to_string(&bot.st).expect("json");
    assert!(json.len() <= 1024, "{} bytes: {json}", json.len());
    bot.press(&ru("btn-comment-edit"));
    bot.text("Аллергия на лак");
    assert!(bot.last().text.contains("Комментарий: Аллергия на лак"));
    bot.press(&ru("btn-comment-edit"));
    let r = bot.press(&ru("btn-comment-drop"));
    assert!(!r[0].text.contains("Комментарий:"), "{}", r[0].text);
    assert!(bot.has_button(&ru("btn-comment")));
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books()[0].comment, None);
}

#[test]
fn moving_a_visit_offers_no_comment() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    goto_move_confirmation(&mut bot);
    assert!(!bot.has_button(&ru("btn-comment")));
    let data = bot.button(&ru("btn-confirm")).data;
    let version = data.split('|').next().expect("version");
    let r = bot.send(Input::Button(format!("{version}|N")));
    assert!(r[0].text.contains(&note("note-hint")), "{}", r[0].text);
}
