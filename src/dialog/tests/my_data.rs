//! "My data": changing the name and phone the next booking uses.

use super::*;

#[test]
fn my_data_changes_the_name_and_phone_the_next_booking_uses() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 1);

    bot.press(&ru("btn-menu"));
    let r = bot.press(&ru("btn-data"));
    assert!(r[0].text.contains("Имя: Мария"), "{}", r[0].text);
    assert!(
        r[0].text.contains("Телефон: +7 912 345-67-89"),
        "{}",
        r[0].text
    );

    bot.press(&ru("btn-data-name"));
    assert!(bot.last().text.contains(&ru("data-ask-name")));
    // The name rules of the booking step hold here too.
    let r = bot.text("89123456789");
    assert!(
        r[0].text.contains(&note("note-name-not-a-name")),
        "{}",
        r[0].text
    );
    assert_eq!(bot.st.name(), Some("Мария"));
    let r = bot.text("Мария Иванова");
    assert!(
        r[0].text.contains(&note("note-name-saved")),
        "{}",
        r[0].text
    );
    assert!(r[0].text.contains("Имя: Мария Иванова"), "{}", r[0].text);

    let r = bot.press(&ru("btn-data-phone"));
    assert!(r[0].request_contact, "the share button is offered");
    assert!(r[0].text.contains(&ru("data-ask-phone")));
    let r = bot.text("не скажу");
    assert!(r[0].text.contains(&note("note-bad-phone")), "{}", r[0].text);
    assert_eq!(bot.st.phone().map(Phone::as_str), Some("+79123456789"));
    let r = bot.send(Input::Contact {
        phone: "+7 922 000-11-22".into(),
    });
    assert!(
        r[0].text.contains(&note("note-phone-saved")),
        "{}",
        r[0].text
    );
    assert!(
        r[0].text.contains("Телефон: +7 922 000-11-22"),
        "{}",
        r[0].text
    );

    // The next booking goes under the new name and phone, without asking again.
    bot.press(&ru("btn-menu"));
    bot.press(&ru("btn-book"));
    bot.press("Маникюр");
    bot.press("Ольга");
    bot.press("Ср 4 дек");
    let r = bot.press("12:00");
    assert!(r[0].text.contains("Имя: Мария Иванова"), "{}", r[0].text);
    bot.press(&ru("btn-confirm"));
    let books = bot.books();
    assert_eq!(books.len(), 2);
    assert_eq!(books[1].name, "Мария Иванова");
    assert_eq!(books[1].phone.as_str(), "+79220001122");
}

#[test]
fn my_data_of_a_new_client_says_nothing_is_given_and_back_leaves_it_unchanged() {
    let mut bot = Bot::new();
    bot.start();
    let r = bot.press(&ru("btn-data"));
    assert_eq!(
        r[0].text.matches(&ru("data-unset")).count(),
        2,
        "{}",
        r[0].text
    );
    bot.press(&ru("btn-data-name"));
    let r = bot.press(&ru("btn-back"));
    assert!(r[0].text.contains(&ru("data-unset")), "{}", r[0].text);
    assert!(bot.has_button(&ru("btn-data-name")));
    assert_eq!(bot.st.name(), None);
    // A stale "my data" button from an old menu still works, like the other global ones.
    let old_menu = bot
        .replies
        .iter()
        .find_map(|r| {
            r.buttons
                .iter()
                .flatten()
                .find(|b| b.label == ru("btn-data"))
        })
        .expect("menu button")
        .data
        .clone();
    bot.press(&ru("btn-menu"));
    let r = bot.send(Input::Button(old_menu));
    assert!(r[0].text.contains(&ru("data-unset")), "{}", r[0].text);
    assert!(!r[0].text.contains(&note("note-stale")));
}
