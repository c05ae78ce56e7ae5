//! Personal-data consent.

use super::*;

/// A bot that shows the consent screen instead of agreeing on its own.
fn asking_bot(ctx: Context) -> Bot {
    let mut bot = Bot::with(ctx, World::salon());
    bot.auto_consent = false;
    bot
}

#[test]
fn the_consent_is_asked_before_the_phone_and_once_per_chat() {
    let mut bot = asking_bot(ctx());
    bot.goto_times("Анна");
    let r = bot.press("10:00");
    assert_eq!(r.len(), 1);
    assert!(!r[0].request_contact, "no phone asked before the consent");
    assert!(r[0].text.contains("Салон Лаванда"), "{}", r[0].text);
    assert!(r[0].text.contains("телефона"), "{}", r[0].text);
    assert!(consent_button(&r[0]).is_some());
    assert!(bot.has_button(&ru("btn-back")) && bot.has_button(&ru("btn-menu")));
    assert!(bot.st.consent().is_none());

    let r = bot.press(&ru("btn-consent"));
    assert!(r[0].request_contact, "agreeing goes on to the phone");
    assert!(r[0].text.contains(&ru("ask-phone")));
    let consent = bot.st.consent().cloned().expect("the agreement is kept");
    assert_eq!(consent.at, bot.ctx.now);
    assert!(consent.version.starts_with("ru-"), "{}", consent.version);
    assert_eq!(consent.version.len(), "ru-".len() + 12);

    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 1);
    assert_eq!(bot.books()[0].consent.as_ref(), Some(&consent));

    // The next booking in this chat goes from the time straight to the confirmation.
    bot.goto_times("Анна");
    let r = bot.press("15:00");
    assert!(
        consent_button(&r[0]).is_none(),
        "asked again: {}",
        r[0].text
    );
    assert!(r[0].text.contains("Проверьте запись"), "{}", r[0].text);
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books()[1].consent.as_ref(), Some(&consent));
}

#[test]
fn a_phone_typed_or_shared_on_the_consent_screen_is_not_taken() {
    let mut bot = asking_bot(ctx());
    bot.goto_times("Анна");
    bot.press("10:00");
    for input in [
        Input::Text("+7 912 345-67-89".into()),
        Input::Contact {
            phone: "+79123456789".into(),
        },
        Input::Text("согласен".into()),
    ] {
        let r = bot.send(input);
        assert_eq!(r.len(), 1);
        assert!(
            r[0].text.contains(&note("note-consent-first")),
            "{}",
            r[0].text
        );
        assert!(
            consent_button(&r[0]).is_some(),
            "the consent is shown again"
        );
        assert!(!r[0].request_contact);
        assert!(bot.st.phone().is_none());
        assert!(bot.st.consent().is_none());
    }
    // Back leads to the times, as it does from the phone step.
    bot.press(&ru("btn-back"));
    assert!(bot.has_button("10:00"));
    bot.press("10:00");
    let r = bot.press(&ru("btn-consent"));
    assert!(r[0].request_contact);
}

#[test]
fn a_contact_shared_out_of_turn_is_kept_only_after_the_consent() {
    let mut bot = asking_bot(ctx());
    bot.start();
    let r = bot.send(Input::Contact {
        phone: "+79123456789".into(),
    });
    assert!(
        r[0].text.contains(&note("note-consent-first")),
        "{}",
        r[0].text
    );
    assert!(bot.st.phone().is_none());
}

#[test]
fn a_changed_consent_text_or_policy_asks_again() {
    let mut bot = asking_bot(ctx());
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.press(&ru("btn-consent"));
    bot.text("+79123456789");
    bot.text("Мария");
    let first = bot.st.consent().cloned().expect("agreed");

    // The business links its policy: what was agreed to no longer reads the same.
    bot.ctx.policy_url = Some("https://lavanda.example/privacy".into());
    // Even the confirmation already on screen does not book without the new agreement.
    let r = bot.press(&ru("btn-confirm"));
    assert!(bot.books().is_empty(), "booked on an outdated consent");
    assert!(consent_button(&r[0]).is_some());
    assert!(
        r[0].text.contains("https://lavanda.example/privacy"),
        "{}",
        r[0].text
    );
    bot.ctx.now = utc("2024-12-02T04:05:00Z");
    let r = bot.press(&ru("btn-consent"));
    assert!(r[0].text.contains("Проверьте запись"), "{}", r[0].text);
    let second = bot.st.consent().cloned().expect("agreed again");
    assert_ne!(second.version, first.version);
    assert_eq!(second.at, utc("2024-12-02T04:05:00Z"));
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books()[0].consent.as_ref(), Some(&second));

    // Each language's text has its own version: an English client agrees to the English one.
    let mut c = ctx();
    c.user_lang = Some("en".into());
    let mut en = asking_bot(c);
    en.start();
    en.press(&t(Lang::En, "btn-book"));
    en.press("Стрижка женская");
    en.press("Анна");
    let day = en
        .screen()
        .buttons
        .iter()
        .flatten()
        .find(|b| b.data.ends_with("d:20241202"))
        .expect("today")
        .data
        .clone();
    en.send(Input::Button(day));
    en.press("10:00");
    en.press(&t(Lang::En, "btn-consent"));
    let version = &en.st.consent().expect("agreed").version;
    assert!(version.starts_with("en-"), "{version}");
}

#[test]
fn with_the_consent_off_the_phone_is_asked_at_once() {
    let mut c = ctx();
    c.consent = false;
    let mut bot = asking_bot(c);
    bot.goto_times("Анна");
    let r = bot.press("10:00");
    assert!(r[0].request_contact);
    assert!(consent_button(&r[0]).is_none());
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 1);
    assert_eq!(bot.books()[0].consent, None);
    // Nor does "my data" ask for it.
    bot.press(&ru("btn-menu"));
    bot.press(&ru("btn-data"));
    let r = bot.press(&ru("btn-data-phone"));
    assert!(r[0].request_contact);
}

#[test]
fn my_data_asks_the_consent_before_a_new_phone_or_name() {
    let mut bot = asking_bot(ctx());
    bot.start();
    bot.press(&ru("btn-data"));
    let r = bot.press(&ru("btn-data-phone"));
    assert!(consent_button(&r[0]).is_some(), "{}", r[0].text);
    assert!(!r[0].request_contact);
    bot.press(&ru("btn-back"));
    assert!(bot.has_button(&ru("btn-data-phone")), "back to my data");
    bot.press(&ru("btn-data-name"));
    let r = bot.text("Мария");
    assert!(
        r[0].text.contains(&note("note-consent-first")),
        "{}",
        r[0].text
    );
    assert_eq!(bot.st.name(), None);
    bot.press(&ru("btn-back"));
    bot.press(&ru("btn-data-phone"));
    let r = bot.press(&ru("btn-consent"));
    assert!(r[0].request_contact);
    assert!(r[0].text.contains(&ru("data-ask-phone")));
    bot.text("+79123456789");
    assert_eq!(bot.st.phone().map(Phone::as_str), Some("+79123456789"));
    // Agreed once: the name is asked at once.
    bot.press(&ru("btn-data-name"));
    assert!(bot.last().text.contains(&ru("data-ask-name")));
}
