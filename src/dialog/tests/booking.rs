//! Booking a visit: the happy path, categories and pages, days and times, phones and names,
//! taken slots, stale and repeated presses, commands and going back.

use super::*;

#[test]
fn happy_path_books_the_picked_slot() {
    let mut bot = Bot::new();
    let r = bot.start();
    assert_eq!(r.len(), 1);
    assert!(r[0].text.contains("Салон Лаванда"));
    assert!(!r[0].edit);
    for key in ["btn-book", "btn-my", "btn-help"] {
        assert!(bot.has_button(&ru(key)), "{key}");
    }

    bot.press(&ru("btn-book"));
    assert_eq!(bot.last_command(), &Command::LoadServices);
    assert!(bot.last().edit, "a screen after a press replaces the menu");
    let label = bot.button("Стрижка женская").label;
    assert_eq!(label, "Стрижка женская · 1\u{a0}500\u{a0}₽ · 1 час");
    assert_eq!(
        bot.button("Окрашивание").label,
        "Окрашивание · от 3\u{a0}000\u{a0}₽ · 2 часа 30 минут"
    );
    assert_eq!(
        bot.button("Маникюр").label,
        "Маникюр · 1\u{a0}200\u{a0}₽ · 45 минут"
    );

    bot.press("Стрижка женская");
    assert_eq!(
        bot.last_command(),
        &Command::LoadMasters {
            service_id: "s1".into()
        }
    );
    assert!(bot.has_button(&ru("btn-any-master")));

    bot.press("Анна");
    assert_eq!(
        bot.last_command(),
        &Command::LoadDays {
            service_id: "s1".into(),
            master_id: Some("m1".into()),
            from: date(2024, 12, 2),
            to: date(2024, 12, 8),
        }
    );
    assert!(bot.has_button("Сегодня 2 дек"));
    assert!(bot.has_button("Ср 4 дек"));
    assert!(
        !bot.has_button("10 дек"),
        "next week's day on this week's page"
    );

    bot.press("Сегодня 2 дек");
    assert_eq!(
        bot.last_command(),
        &Command::LoadSlots {
            service_id: "s1".into(),
            master_id: Some("m1".into()),
            day: date(2024, 12, 2),
        }
    );
    // Yekaterinburg is UTC+5: the 05:00Z slot is 10:00 on the business clock.
    assert!(bot.has_button("10:00"));
    assert!(bot.has_button("15:00"));
    assert!(!bot.has_button("12:00"), "Ольга's time offered for Анна");

    let r = bot.press("10:00");
    assert!(r[0].request_contact, "phone step shows the contact button");
    assert!(r[0].text.contains("+7 912 345-67-89"));

    bot.send(Input::Contact {
        phone: "79123456789".into(),
    });
    assert!(bot.last().text.contains(&ru("ask-name")));
    assert!(!bot.last().edit);

    let r = bot.text("  Мария  ");
    let confirm = &r[0].text;
    for part in [
        "Стрижка женская",
        "Анна",
        "Пн 2 дек, 10:00",
        "1\u{a0}500\u{a0}₽",
        "ул. Ленина, 1",
        "Мария",
        "+7 912 345-67-89",
        "1 час",
    ] {
        assert!(confirm.contains(part), "{part:?} missing in {confirm}");
    }
    assert!(bot.has_button(&ru("btn-confirm")));
    assert!(bot.has_button(&ru("btn-change-time")));
    assert!(bot.has_button(&ru("btn-cancel")));
    assert!(bot.books().is_empty());

    let r = bot.press(&ru("btn-confirm"));
    let books = bot.books();
    assert_eq!(books.len(), 1);
    let d = books[0];
    assert_eq!(d.service.id, "s1");
    assert_eq!(d.master.as_ref().map(|m| m.id.as_str()), Some("m1"));
    assert_eq!(d.slot.start, utc("2024-12-02T05:00:00Z"));
    assert_eq!(d.slot.master_id, "m1");
    assert_eq!(d.slot.duration_min, 60);
    assert_eq!(d.phone.as_str(), "+79123456789");
    assert_eq!(d.name, "Мария");
    assert_eq!(r.len(), 2);
    assert!(
        r[0].edit && r[0].buttons.is_empty(),
        "confirm screen becomes 'booking…'"
    );
    assert!(!r[1].edit, "the confirmation is a message of its own");
    assert!(r[1].text.contains("Пн 2 дек, 10:00"));
    assert!(r[1].text.contains("ул. Ленина, 1"));
    assert!(r[1].text.contains(&ru("btn-my").replace("🗂 ", "")));
    assert!(bot.has_button(&ru("btn-my")));
    // The client is remembered for next time.
    assert_eq!(bot.st.phone().map(Phone::as_str), Some("+79123456789"));
    assert_eq!(bot.st.name(), Some("Мария"));
}

#[test]
fn known_client_skips_phone_and_name() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("8 912 345 67 89");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 1);

    bot.press(&ru("btn-book"));
    bot.press("Маникюр");
    bot.press("Ольга");
    bot.press("Сегодня 2 дек");
    let r = bot.press("12:00");
    assert!(
        r[0].text.contains("Маникюр"),
        "straight to confirm: {}",
        r[0].text
    );
    assert!(bot.has_button(&ru("btn-confirm")));
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 2);
    assert_eq!(bot.books()[1].name, "Мария");
}

#[test]
fn any_master_books_the_master_of_the_slot() {
    let mut bot = Bot::new();
    bot.goto_times(&ru("btn-any-master"));
    assert!(matches!(
        bot.commands.iter().rev().nth(1),
        Some(Command::LoadDays {
            master_id: None,
            ..
        })
    ));
    assert!(matches!(
        bot.last_command(),
        Command::LoadSlots {
            master_id: None,
            ..
        }
    ));
    // Both masters are free at 10:00: one button for the time.
    let tens = bot
        .screen()
        .buttons
        .iter()
        .flatten()
        .filter(|b| b.label == "10:00")
        .count();
    assert_eq!(tens, 1);
    bot.press("12:00");
    bot.text("+7 912 345-67-89");
    let r = bot.text("Мария");
    assert!(r[0].text.contains("Ольга"), "{}", r[0].text);
    bot.press(&ru("btn-confirm"));
    let d = bot.books()[0];
    assert_eq!(d.slot.master_id, "m2");
    assert_eq!(d.master.as_ref().map(|m| m.name.as_str()), Some("Ольга"));
}

#[test]
fn many_services_are_grouped_by_category_and_paged() {
    let mut world = World::salon();
    world.services = (1..=10)
        .map(|i| {
            service(
                &format!("h{i}"),
                &format!("Услуга {i}"),
                "Волосы",
                1000,
                1000,
                30,
            )
        })
        .chain([service("n1", "Маникюр", "Ногти", 1200, 1200, 45)])
        .collect();
    let mut bot = Bot::with(ctx(), world);
    bot.start();
    let r = bot.press(&ru("btn-book"));
    assert!(r[0].text.contains(&ru("choose-category")));
    assert!(bot.has_button("Волосы") && bot.has_button("Ногти"));
    assert!(!bot.has_button("Услуга 1"));

    let r = bot.press("Волосы");
    assert!(r[0].text.contains("Волосы"));
    assert!(bot.has_button("Услуга 1 ·"));
    assert!(bot.has_button("Услуга 8 ·"));
    assert!(!bot.has_button("Услуга 9 ·"));
    assert!(!bot.has_button("Маникюр"));
    assert!(!bot.has_button(&ru("btn-prev")));

    bot.press(&ru("btn-next"));
    assert!(bot.has_button("Услуга 9 ·") && bot.has_button("Услуга 10 ·"));
    assert!(!bot.has_button("Услуга 1 ·"));
    assert!(!bot.has_button(&ru("btn-next")));

    bot.press(&ru("btn-prev"));
    assert!(bot.has_button("Услуга 1 ·"));

    // Back goes to the categories, then to the menu.
    bot.press(&ru("btn-back"));
    assert!(bot.has_button("Ногти"));
    bot.press(&ru("btn-back"));
    assert!(bot.has_button(&ru("btn-my")));

    bot.press(&ru("btn-book"));
    bot.press("Ногти");
    bot.press("Маникюр");
    assert_eq!(
        bot.last_command(),
        &Command::LoadMasters {
            service_id: "n1".into()
        }
    );
}

#[test]
fn days_are_paged_by_week_from_today() {
    let mut bot = Bot::new();
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    bot.press("Анна");
    assert!(
        !bot.has_button(&ru("btn-prev-week")),
        "no weeks before this one"
    );

    bot.press(&ru("btn-next-week"));
    assert!(matches!(
        bot.last_command(),
        Command::LoadDays { from, to, .. } if *from == date(2024, 12, 9) && *to == date(2024, 12, 15)
    ));
    assert!(bot.has_button("Вт 10 дек"));
    assert!(!bot.has_button("Сегодня 2 дек"));

    bot.press(&ru("btn-prev-week"));
    assert!(bot.has_button("Сегодня 2 дек"));
}

#[test]
fn an_empty_week_says_so_and_offers_the_next() {
    let mut bot = Bot::new();
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    bot.press("Анна");
    bot.press(&ru("btn-next-week"));
    let r = bot.press(&ru("btn-next-week"));
    assert!(r[0].text.contains("16 дек – 22 дек"), "{}", r[0].text);
    assert!(r[0].text.contains("свободных дней нет"));
    let day_buttons = bot
        .screen()
        .buttons
        .iter()
        .flatten()
        .filter(|b| b.data.contains("|d:"))
        .count();
    assert_eq!(day_buttons, 0);
    assert!(bot.has_button(&ru("btn-next-week")));
    assert!(bot.has_button(&ru("btn-back")));
}

#[test]
fn business_timezone_is_used_for_today_and_times() {
    // 20:00Z on 1 Dec is already 01:00 on 2 Dec in Yekaterinburg.
    let mut c = ctx();
    c.now = utc("2024-12-01T20:00:00Z");
    let mut bot = Bot::with(c, World::salon());
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    bot.press("Анна");
    assert!(matches!(
        bot.last_command(),
        Command::LoadDays { from, .. } if *from == date(2024, 12, 2)
    ));
    bot.press("Сегодня 2 дек");
    let data = bot.button("10:00").data;
    let secs = utc("2024-12-02T05:00:00Z").timestamp();
    assert!(data.ends_with(&format!("t:{secs}:m1")), "{data}");
}

#[test]
fn past_slots_are_not_offered() {
    let mut c = ctx();
    // 11:00 local: 10:00 is gone, 15:00 is still free.
    c.now = utc("2024-12-02T06:00:00Z");
    let mut bot = Bot::with(c, World::salon());
    bot.goto_times("Анна");
    assert!(!bot.has_button("10:00"));
    assert!(bot.has_button("15:00"));
}

#[test]
fn a_bad_phone_is_asked_again_with_an_example() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    let r = bot.text("мой номер секрет");
    assert!(r[0].text.contains(&note("note-bad-phone")));
    assert!(r[0].request_contact);
    let r = bot.text("123");
    assert!(r[0].text.contains("+7 912 345-67-89"));
    assert!(bot.st.phone().is_none());
    let r = bot.text("8 (912) 345-67-89");
    assert!(r[0].text.contains(&ru("ask-name")));
    assert_eq!(bot.st.phone().map(Phone::as_str), Some("+79123456789"));
}

#[test]
fn a_shared_contact_is_taken_as_the_phone() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    let r = bot.send(Input::Contact {
        phone: "+79123456789".into(),
    });
    assert!(!r[0].request_contact);
    assert!(r[0].text.contains(&ru("ask-name")));
    let r = bot.send(Input::Contact {
        phone: "not a phone".into(),
    });
    assert!(r[0].text.contains(&note("note-hint")), "{}", r[0].text);
}

#[test]
fn names_are_trimmed_and_bounded() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    let r = bot.text("   ");
    assert!(r[0].text.contains(&note("note-name-empty")));
    let r = bot.text(&"я".repeat(101));
    assert!(r[0].text.contains(&note("note-name-long")));
    assert!(bot.st.name().is_none());
    bot.text(&"я".repeat(100));
    assert!(bot.has_button(&ru("btn-confirm")));
    assert_eq!(bot.st.name().map(|n| n.chars().count()), Some(100));
    bot.press(&ru("btn-cancel"));
    bot.goto_times("Анна");
    bot.press("10:00");
    assert!(
        bot.has_button(&ru("btn-confirm")),
        "a known name is not asked again"
    );
    assert!(bot.last().text.contains(&"я".repeat(100)));
}

#[test]
fn booking_pending_tells_the_request_is_saved() {
    let mut world = World::salon();
    let pending = world.booking("bk-q", utc("2024-12-02T05:00:00Z"));
    world
        .write_answers
        .push_back(Loaded::BookingPending(Booking {
            status: BookingStatus::Requested,
            ..pending
        }));
    let mut bot = Bot::with(ctx(), world);
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    let r = bot.press(&ru("btn-confirm"));
    assert!(r[1].text.contains("не отвечает"), "{}", r[1].text);
    assert!(r[1].text.contains("Пн 2 дек, 10:00"));
    assert_eq!(bot.books().len(), 1);
}

#[test]
fn a_taken_slot_offers_fresh_slots_and_books_nothing_else() {
    let mut world = World::salon();
    world.write_answers.push_back(Loaded::SlotTaken);
    let mut bot = Bot::with(ctx(), world);
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    let before = bot.commands.len();
    let r = bot.press(&ru("btn-confirm"));
    let after: Vec<_> = bot.commands[before..].to_vec();
    assert!(matches!(after[0], Command::Book(_)));
    assert_eq!(
        after[1..],
        [Command::LoadSlots {
            service_id: "s1".into(),
            master_id: Some("m1".into()),
            day: date(2024, 12, 2),
        }]
    );
    assert_eq!(bot.books().len(), 1);
    let last = r.last().expect("reply");
    assert!(last.text.contains(&note("note-slot-taken")));
    assert!(bot.has_button("15:00"));
    // Picking again goes to the confirmation, not straight to a booking.
    bot.press("15:00");
    assert_eq!(bot.books().len(), 1);
    assert!(bot.last().text.contains("15:00"));
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 2);
    assert_eq!(bot.books()[1].slot.start, utc("2024-12-02T10:00:00Z"));
}

#[test]
fn a_stale_time_button_shows_fresh_slots() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    let old = bot.button("10:00").data;
    bot.text("хочу в 10");
    assert!(bot.last().text.contains(&note("note-hint")));
    let loads_before = bot.commands.len();
    let r = bot.send(Input::Button(old));
    assert_eq!(r.len(), 1);
    assert!(r[0].text.contains(&note("note-stale")));
    assert!(r[0].edit, "the old message is replaced");
    assert!(matches!(
        bot.commands[loads_before..],
        [Command::LoadSlots { .. }]
    ));
    assert!(bot.has_button("10:00"));
    assert!(bot.st.slot.is_none());
}

#[test]
fn a_stale_confirm_does_not_book() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    let old_confirm = bot.button(&ru("btn-confirm")).data;
    bot.text("что-то");
    let r = bot.send(Input::Button(old_confirm));
    assert!(bot.books().is_empty());
    assert!(r[0].text.contains(&note("note-stale")));
    assert!(bot.has_button(&ru("btn-confirm")));
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 1);
}

#[test]
fn a_double_tap_on_confirm_books_once() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    let confirm = bot.button(&ru("btn-confirm")).data;
    bot.send(Input::Button(confirm.clone()));
    let r = bot.send(Input::Button(confirm));
    assert_eq!(bot.books().len(), 1);
    assert!(r[0].text.contains(&note("note-stale")));
}

#[test]
fn a_double_tap_while_the_booking_is_in_flight_books_once() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    let confirm = bot.button(&ru("btn-confirm")).data;
    // The runtime has sent Book but not yet fed the answer back.
    let (st, out) = step(bot.st.clone(), Input::Button(confirm.clone()), &bot.ctx);
    assert!(matches!(out.commands[..], [Command::Book(_)]));
    let (_, out) = step(st, Input::Button(confirm), &bot.ctx);
    assert!(out.commands.is_empty());
    assert!(out.replies[0].text.contains(&note("note-stale")));
    assert!(out.replies[0].text.contains(&ru("wait")));
}

#[test]
fn garbage_text_at_every_step_keeps_the_step() {
    let mut bot = Bot::new();
    let hint = note("note-hint");
    bot.start();
    let r = bot.text("привет");
    assert!(r[0].text.contains(&hint) && bot.has_button(&ru("btn-book")));

    bot.press(&ru("btn-book"));
    let r = bot.text("стрижка");
    assert!(r[0].text.contains(&hint) && bot.has_button("Стрижка женская"));
    assert!(!r[0].edit);

    bot.press("Стрижка женская");
    let r = bot.text("любая");
    assert!(r[0].text.contains(&hint) && bot.has_button("Анна"));

    bot.press("Анна");
    let r = bot.text("завтра");
    assert!(r[0].text.contains(&hint) && bot.has_button("Сегодня 2 дек"));

    bot.press("Сегодня 2 дек");
    let r = bot.text("10");
    assert!(r[0].text.contains(&hint) && bot.has_button("10:00"));

    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    let r = bot.text("да");
    assert!(r[0].text.contains(&hint) && bot.has_button(&ru("btn-confirm")));
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 1);
}

#[test]
fn garbage_button_data_is_a_hint_not_a_crash() {
    let mut bot = Bot::new();
    bot.start();
    for junk in [
        "",
        "|",
        "x",
        "999999999999|B",
        "1|t:abc:m1",
        "1|d:2024",
        "1|s:",
    ] {
        let r = bot.send(Input::Button(junk.into()));
        assert!(!r.is_empty(), "{junk:?}");
    }
    let v = bot.st.v;
    let r = bot.send(Input::Button(format!("{v}|t:1733115600:m1")));
    assert!(
        r[0].text.contains(&note("note-hint")),
        "a time on the menu screen"
    );
    assert!(bot.books().is_empty());
}

#[test]
fn commands_in_text() {
    let mut bot = Bot::new();
    bot.start();
    let r = bot.text("/help");
    assert!(r[0].text.contains("ул. Ленина, 1"));
    assert!(r[0].text.contains("+7 343 000-00-00"));
    assert!(r[0].text.contains("/book"));

    let r = bot.text("/frobnicate");
    assert!(r[0].text.contains(&note("note-unknown-command")));

    bot.text("/book");
    assert_eq!(bot.last_command(), &Command::LoadServices);
    bot.press("Стрижка женская");
    let r = bot.text("/nope");
    assert!(r[0].text.contains(&note("note-unknown-command")));
    assert!(bot.has_button("Анна"), "the step is kept");

    let r = bot.text("/cancel");
    assert!(r[0].text.contains(&note("note-booking-dropped")));
    assert!(bot.has_button(&ru("btn-book")));

    bot.text("/my@zapis_bot");
    assert!(matches!(bot.last_command(), Command::LoadMyBookings { .. }));

    let r = bot.text("/menu");
    assert!(r[0].text.contains(&ru("menu")));
}

#[test]
fn help_mid_flow_keeps_the_step() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    let time = bot.button("10:00").data;
    bot.text("/help");
    // The time screen is still the current one.
    bot.send(Input::Button(time));
    assert!(bot.last().request_contact);
}

#[test]
fn back_buttons_walk_the_flow_backwards() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    assert!(bot.last().text.contains(&ru("ask-name")));
    bot.press(&ru("btn-back"));
    assert!(bot.last().request_contact, "name → phone");
    bot.press(&ru("btn-back"));
    assert!(bot.has_button("10:00"), "phone → times");
    bot.press(&ru("btn-back"));
    assert!(bot.has_button("Сегодня 2 дек"), "times → days");
    bot.press(&ru("btn-back"));
    assert!(bot.has_button("Ольга"), "days → masters");
    bot.press(&ru("btn-back"));
    assert!(bot.has_button("Маникюр"), "masters → services");
    bot.press(&ru("btn-back"));
    assert!(bot.has_button(&ru("btn-help")), "services → menu");
    assert!(bot.books().is_empty());
}

#[test]
fn change_time_and_cancel_on_the_confirmation() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-change-time"));
    assert!(matches!(bot.last_command(), Command::LoadSlots { .. }));
    bot.press("15:00");
    assert!(bot.last().text.contains("Пн 2 дек, 15:00"));
    bot.press(&ru("btn-cancel"));
    assert!(bot.last().text.contains(&note("note-booking-dropped")));
    assert!(bot.books().is_empty());
}
