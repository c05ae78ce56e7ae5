//! Wording: what leaving a flow says, prices, the phone prompt, formatted phones; names
//! refused with a hint; days labelled today and tomorrow.

use super::*;

/// Moves booking `n` of "my bookings" to Wednesday 15:00 and stops at the before/after screen.
pub(super) fn goto_move_confirmation(bot: &mut Bot) {
    bot.start();
    bot.press(&ru("btn-my"));
    bot.press(&i18n::t_args(
        Lang::Ru,
        "btn-reschedule-n",
        &[("n", 1.into())],
    ));
    bot.press("Ср 4 дек");
    bot.press("15:00");
    assert!(bot.last().text.contains("Станет: Ср 4 дек, 15:00"));
}

#[test]
fn leaving_a_move_says_the_visit_stays_and_leaving_a_booking_says_none_is_made() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    goto_move_confirmation(&mut bot);
    let r = bot.press(&ru("btn-cancel"));
    let text = &r[0].text;
    assert!(text.contains(&note("note-visit-kept")), "{text}");
    assert!(text.contains("остаётся как была"), "{text}");
    assert!(!text.contains(&note("note-flow-cancelled")), "{text}");
    assert!(!text.contains(&note("note-booking-dropped")), "{text}");
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::Cancel { .. } | Command::Reschedule { .. })),
        "leaving the move screen changes nothing"
    );

    // The same by command, and from the cancel question.
    goto_move_confirmation(&mut bot);
    let r = bot.text("/cancel");
    assert!(
        r[0].text.contains(&note("note-visit-kept")),
        "{}",
        r[0].text
    );
    bot.press(&ru("btn-my"));
    bot.press(&i18n::t_args(Lang::Ru, "btn-cancel-n", &[("n", 1.into())]));
    let r = bot.text("/cancel");
    assert!(
        r[0].text.contains(&note("note-visit-kept")),
        "{}",
        r[0].text
    );
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::Cancel { .. }))
    );

    // A new booking given up says no booking is made, not that a visit is kept.
    bot.goto_times("Анна");
    let r = bot.text("/cancel");
    assert!(
        r[0].text.contains(&note("note-booking-dropped")),
        "{}",
        r[0].text
    );
    assert!(r[0].text.contains("новую запись не оформляем"));
    // With nothing in progress, the plain acknowledgement.
    let r = bot.text("/cancel");
    assert!(
        r[0].text.contains(&note("note-flow-cancelled")),
        "{}",
        r[0].text
    );
}

#[test]
fn a_price_range_keeps_its_from_on_the_confirmation_and_after_booking() {
    let mut bot = Bot::new();
    bot.start();
    bot.press(&ru("btn-book"));
    let from = "от 3\u{a0}000\u{a0}₽";
    assert!(bot.button("Окрашивание").label.contains(from));
    bot.press("Окрашивание");
    bot.press("Анна");
    bot.press("Сегодня 2 дек");
    bot.press("10:00");
    bot.text("+79123456789");
    let r = bot.text("Мария");
    assert!(
        r[0].text.contains(&format!("Стоимость: {from}")),
        "{}",
        r[0].text
    );
    let r = bot.press(&ru("btn-confirm"));
    let booked = &r.last().expect("reply").text;
    assert!(booked.contains(&format!("Стоимость: {from}")), "{booked}");

    // A fixed price has no "from" anywhere.
    bot.press(&ru("btn-book"));
    bot.press("Маникюр");
    bot.press("Анна");
    bot.press("Сегодня 2 дек");
    let r = bot.press("10:00");
    assert!(
        r[0].text.contains("Стоимость: 1\u{a0}200\u{a0}₽"),
        "{}",
        r[0].text
    );
    assert!(!r[0].text.contains("от "), "{}", r[0].text);
}

#[test]
fn the_phone_prompt_names_the_share_button_the_messengers_show() {
    for lang in [Lang::Ru, Lang::En] {
        let prompt = t(lang, "ask-phone");
        for key in ["tg-share-phone", "max-share-phone"] {
            let label = t(lang, key);
            let words = label.trim_start_matches("📱").trim();
            assert!(words.len() > 5, "{key}: {label}");
            assert!(
                prompt.contains(words),
                "{lang:?}: {prompt:?} does not name {label:?}"
            );
        }
    }
    assert!(!t(Lang::Ru, "ask-phone").contains("Поделиться"));
}

#[test]
fn phones_are_shown_formatted() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("89123456789");
    let r = bot.text("Мария");
    assert!(
        r[0].text.contains("Телефон: +7 912 345-67-89"),
        "{}",
        r[0].text
    );
    assert!(!r[0].text.contains("+79123456789"), "{}", r[0].text);

    // The code prompt names the number the SMS went to the same way.
    let bot = bot_at_code();
    let ask = &bot.last().text;
    assert!(ask.contains("+7 912 345-67-89"), "{ask}");
}

// ---- name validation -----------------------------------------------------------------------

#[test]
fn a_name_without_letters_or_with_a_phone_in_it_is_refused_with_a_hint() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    for bad in [
        "89123456789",
        "+7 912",
        "—",
        "Мария 8 912 345-67-89",
        "...",
        "12345",
    ] {
        let r = bot.text(bad);
        assert!(
            r[0].text.contains(&note("note-name-not-a-name")),
            "{bad:?}: {}",
            r[0].text
        );
        assert!(
            r[0].text.contains(&ru("ask-name")),
            "{bad:?}: the name is asked again"
        );
        assert_eq!(bot.st.name(), None, "{bad:?} taken as a name");
    }
    assert!(bot.books().is_empty());
    for good in ["Анна", "Anna-Maria", "Ли", "Д'Артаньян", "Анна 2"] {
        let mut bot = Bot::new();
        bot.goto_times("Анна");
        bot.press("10:00");
        bot.text("+79123456789");
        let r = bot.text(good);
        assert!(
            !r[0].text.contains(&note("note-name-not-a-name")),
            "{good:?} refused"
        );
        assert_eq!(bot.st.name(), Some(good));
        assert!(bot.has_button(&ru("btn-confirm")), "{good:?}");
    }
}

#[test]
fn the_name_hint_is_in_the_clients_language() {
    let mut ctx = ctx();
    ctx.user_lang = Some("en".into());
    let mut bot = Bot::with(ctx, World::salon());
    bot.start();
    bot.press(&t(Lang::En, "btn-book"));
    bot.press("Стрижка женская");
    bot.press(&t(Lang::En, "btn-any-master"));
    bot.press("Today 2 Dec");
    bot.press("10:00");
    bot.text("+79123456789");
    let r = bot.text("89123456789");
    assert!(
        r[0].text.contains("does not look like a name"),
        "{}",
        r[0].text
    );
}

// ---- today and tomorrow ----------------------------------------------------------------------

fn day_labels(bot: &Bot) -> Vec<String> {
    bot.screen()
        .buttons
        .iter()
        .flatten()
        .filter(|b| b.data.contains("|d:"))
        .map(|b| b.label.clone())
        .collect()
}

#[test]
fn day_buttons_say_today_and_tomorrow_by_the_business_calendar() {
    let mut world = World::salon();
    world.free_days = vec![
        date(2024, 12, 2),
        date(2024, 12, 3),
        date(2024, 12, 4),
        date(2024, 12, 10),
    ];
    let mut bot = Bot::with(ctx(), world);
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    bot.press("Анна");
    assert_eq!(
        day_labels(&bot),
        ["Сегодня 2 дек", "Завтра 3 дек", "Ср 4 дек"]
    );
    // The day keeps its weekday where it is named in a sentence.
    let r = bot.press("Завтра 3 дек");
    assert!(r[0].text.contains("Вт 3 дек"), "{}", r[0].text);
    // Next week has neither.
    bot.press(&ru("btn-back"));
    bot.press(&ru("btn-next-week"));
    assert_eq!(day_labels(&bot), ["Вт 10 дек"]);

    // 21:00Z on 2 Dec is already 02:00 on 3 Dec in Yekaterinburg: the 3rd is today there,
    // though the server's UTC date is still the 2nd.
    let mut late = ctx();
    late.now = utc("2024-12-02T21:00:00Z");
    let mut world = World::salon();
    world.free_days = vec![date(2024, 12, 3), date(2024, 12, 4), date(2024, 12, 5)];
    let mut bot = Bot::with(late, world);
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    bot.press("Анна");
    assert_eq!(
        day_labels(&bot),
        ["Сегодня 3 дек", "Завтра 4 дек", "Чт 5 дек"]
    );

    // In English.
    let mut en = ctx();
    en.user_lang = Some("en".into());
    let mut world = World::salon();
    world.free_days = vec![date(2024, 12, 2), date(2024, 12, 3)];
    let mut bot = Bot::with(en, world);
    bot.start();
    bot.press(&t(Lang::En, "btn-book"));
    bot.press("Стрижка женская");
    bot.press(&t(Lang::En, "btn-any-master"));
    assert_eq!(day_labels(&bot), ["Today 2 Dec", "Tomorrow 3 Dec"]);
}
