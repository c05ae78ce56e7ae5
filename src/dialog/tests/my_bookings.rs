//! "My bookings": listing, cancelling, answers to a reminder, links, rescheduling, and what
//! failures and a closed schedule say.

use super::*;

pub(super) fn world_with_bookings() -> World {
    let mut world = World::salon();
    let past = world.booking("bk-old", utc("2024-11-20T05:00:00Z"));
    let mut gone = world.booking("bk-gone", utc("2024-12-05T05:00:00Z"));
    gone.status = BookingStatus::CancelledByClient;
    let later = world.booking("bk-2", utc("2024-12-06T07:00:00Z"));
    let soon = world.booking("bk-1", utc("2024-12-03T05:00:00Z"));
    world.bookings = vec![past, gone, later, soon];
    world
}

#[test]
fn my_bookings_none() {
    let mut bot = Bot::new();
    bot.start();
    let r = bot.press(&ru("btn-my"));
    assert_eq!(bot.last_command(), &Command::LoadMyBookings { phone: None });
    assert!(r[0].text.contains(&ru("my-none")));
    assert!(bot.has_button(&ru("btn-book")));
}

#[test]
fn my_bookings_lists_upcoming_ones() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    let r = bot.press(&ru("btn-my"));
    let text = &r[0].text;
    assert!(text.contains("2 записи"), "{text}");
    let first = text.find("Вт 3 дек, 10:00").expect("soonest listed");
    let second = text.find("Пт 6 дек, 12:00").expect("later listed");
    assert!(first < second, "sorted by time");
    assert!(!text.contains("20 ноя") && !text.contains("5 дек"));
    assert!(bot.button("1").data.ends_with("C:bk-1"));
    assert!(
        bot.button(&i18n::t_args(
            Lang::Ru,
            "btn-reschedule-n",
            &[("n", 2.into())]
        ))
        .data
        .ends_with("R:bk-2")
    );
}

#[test]
fn my_bookings_uses_the_known_phone() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("/my");
    assert_eq!(
        bot.last_command(),
        &Command::LoadMyBookings {
            phone: Some(Phone::parse("+79123456789").expect("phone"))
        }
    );
}

#[test]
fn cancelling_asks_first() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    bot.press(&ru("btn-my"));
    let cancel_1 = i18n::t_args(Lang::Ru, "btn-cancel-n", &[("n", 1.into())]);
    let r = bot.press(&cancel_1);
    assert!(r[0].text.contains("Вт 3 дек, 10:00"));
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::Cancel { .. }))
    );

    // "No" goes back to the list.
    bot.press(&ru("btn-no"));
    assert!(bot.last().text.contains("2 записи"));
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::Cancel { .. }))
    );

    bot.press(&cancel_1);
    let yes = bot.button(&ru("btn-yes-cancel")).data;
    let r = bot.send(Input::Button(yes.clone()));
    assert_eq!(
        bot.last_command(),
        &Command::Cancel {
            booking_id: crate::domain::bk("bk-1")
        }
    );
    assert!(r.last().expect("reply").text.contains("Запись отменена"));
    // A second tap cancels nothing more.
    bot.send(Input::Button(yes));
    let cancels = bot
        .commands
        .iter()
        .filter(|c| matches!(c, Command::Cancel { .. }))
        .count();
    assert_eq!(cancels, 1);
}

/// A reminder's buttons, pressed from wherever the conversation happens to be.
#[test]
fn reminder_answers_work_from_any_screen() {
    let buttons = crate::dialog::reminder_buttons(
        &Default::default(),
        Lang::Ru,
        &crate::domain::bk("bk-1"),
        true,
    );
    let data = |kind: &str| {
        buttons
            .iter()
            .flatten()
            .find(|b| b.data.contains(kind))
            .expect("button")
            .data
            .clone()
    };
    for b in buttons.iter().flatten() {
        assert!(b.data.len() <= MAX_BUTTON_DATA);
    }

    // "I'll come" in the middle of booking something else.
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.goto_times("Анна");
    let r = bot.send(Input::Button(data("Rk:")));
    assert_eq!(
        bot.last_command(),
        &Command::ConfirmVisit {
            booking_id: crate::domain::bk("bk-1")
        }
    );
    assert!(r.last().expect("reply").text.contains("ждём вас"), "{r:#?}");
    assert!(r.last().expect("reply").text.contains("Вт 3 дек, 10:00"));

    // "Cancel" asks first, then cancels that booking.
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    let r = bot.send(Input::Button(data("Rc:")));
    assert!(r.last().expect("reply").text.contains("Вт 3 дек, 10:00"));
    bot.press(&ru("btn-yes-cancel"));
    assert_eq!(
        bot.last_command(),
        &Command::Cancel {
            booking_id: crate::domain::bk("bk-1")
        }
    );

    // "Move" goes straight to the days of the same service and master.
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.send(Input::Button(data("Rm:")));
    assert!(matches!(
        bot.last_command(),
        Command::LoadDays { service_id, master_id: Some(m), .. } if service_id == "s1" && m == "m1"
    ));

    // Any other stale button is still refused.
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    let r = bot.send(Input::Button("0|C:bk-1".into()));
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::Cancel { .. }))
    );
    assert!(!r.is_empty());
}

/// Every payload `links` hands out to other modules leads to its step, pressed from the middle
/// of another flow on a message many screens old.
#[test]
fn every_link_leads_to_its_step_from_any_screen() {
    let id = "bk-1";
    let uuid = "0d1f6c1e-6b7a-4c57-9e2f-3a3c1a7f2b11";
    for data in [
        links::book(),
        links::my_bookings(),
        links::confirm_visit(&crate::domain::bk(uuid)),
        links::cancel_visit(&crate::domain::bk(uuid)),
        links::move_visit(&crate::domain::bk(uuid)),
    ] {
        assert!(data.len() <= MAX_BUTTON_DATA, "{data}");
    }
    // The commands `link` sets off, pressed while choosing a time for another visit.
    let press = |link: String| {
        let mut bot = Bot::with(ctx(), world_with_bookings());
        bot.goto_times("Анна");
        assert_ne!(bot.st.v, 0, "the link must be older than the screen");
        let before = bot.commands.len();
        bot.send(Input::Button(link));
        let new = bot.commands.split_off(before);
        (bot, new)
    };

    let (_, new) = press(links::book());
    assert_eq!(new.first(), Some(&Command::LoadServices), "{new:?}");

    let (_, new) = press(links::my_bookings());
    assert!(
        matches!(new.first(), Some(Command::LoadMyBookings { .. })),
        "{new:?}"
    );

    let (_, new) = press(links::confirm_visit(&crate::domain::bk(id)));
    assert_eq!(
        new.first(),
        Some(&Command::ConfirmVisit {
            booking_id: crate::domain::bk(id)
        })
    );

    let (mut bot, _) = press(links::cancel_visit(&crate::domain::bk(id)));
    bot.press(&ru("btn-yes-cancel"));
    assert_eq!(
        bot.last_command(),
        &Command::Cancel {
            booking_id: crate::domain::bk(id)
        }
    );

    let (_, new) = press(links::move_visit(&crate::domain::bk(id)));
    assert!(
        new.iter().any(|c| matches!(
            c,
            Command::LoadDays { service_id, master_id: Some(m), .. } if service_id == "s1" && m == "m1"
        )),
        "{new:?}"
    );
}

#[test]
fn rescheduling_keeps_service_and_master() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    bot.press(&ru("btn-my"));
    bot.press(&i18n::t_args(
        Lang::Ru,
        "btn-reschedule-n",
        &[("n", 1.into())],
    ));
    assert!(matches!(
        bot.last_command(),
        Command::LoadDays { service_id, master_id: Some(m), .. } if service_id == "s1" && m == "m1"
    ));
    bot.press("Ср 4 дек");
    assert!(matches!(
        bot.last_command(),
        Command::LoadSlots { master_id: Some(m), day, .. } if m == "m1" && *day == date(2024, 12, 4)
    ));
    let r = bot.press("15:00");
    assert!(
        r[0].text.contains("Вт 3 дек, 10:00"),
        "old time: {}",
        r[0].text
    );
    assert!(
        r[0].text.contains("Ср 4 дек, 15:00"),
        "new time: {}",
        r[0].text
    );
    assert!(
        !r[0].request_contact,
        "no phone asked when moving a booking"
    );
    let r = bot.press(&ru("btn-confirm"));
    assert_eq!(
        bot.commands
            .iter()
            .filter(|c| matches!(c, Command::Reschedule { .. }))
            .collect::<Vec<_>>(),
        vec![&Command::Reschedule {
            booking_id: crate::domain::bk("bk-1"),
            slot: Slot {
                master_id: "m1".into(),
                start: utc("2024-12-04T10:00:00Z"),
                duration_min: 60,
            }
        }]
    );
    assert!(bot.books().is_empty());
    assert!(r.last().expect("reply").text.contains("перенесена"));
}

#[test]
fn back_from_reschedule_days_returns_to_my_bookings() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    bot.press(&ru("btn-my"));
    bot.press(&i18n::t_args(
        Lang::Ru,
        "btn-reschedule-n",
        &[("n", 2.into())],
    ));
    bot.press(&ru("btn-back"));
    assert!(bot.last().text.contains("2 записи"));
}

#[test]
fn a_booking_gone_meanwhile_is_reported() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    bot.press(&ru("btn-my"));
    bot.world.bookings.retain(|b| b.id != "bk-1");
    let r = bot.press(&i18n::t_args(Lang::Ru, "btn-cancel-n", &[("n", 1.into())]));
    assert!(r[0].text.contains(&note("note-not-found")));
    assert!(r[0].text.contains("1 запись"));
}

#[test]
fn failures_apologise_and_retry() {
    let mut world = World::salon();
    world.fail_loads = 1;
    let mut bot = Bot::with(ctx(), world);
    bot.start();
    let r = bot.press(&ru("btn-book"));
    assert!(r[0].text.contains(&ru("failed")));
    assert!(r[0].text.contains("+7 343 000-00-00"));
    assert!(bot.has_button(&ru("btn-menu")));
    bot.press(&ru("btn-retry"));
    assert!(bot.has_button("Стрижка женская"));
}

#[test]
fn a_failed_booking_goes_back_to_the_confirmation() {
    let mut world = World::salon();
    world.write_answers.push_back(Loaded::Failed {
        reason: "rejected".into(),
    });
    let mut bot = Bot::with(ctx(), world);
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    assert!(bot.last().text.contains(&ru("failed")));
    bot.press(&ru("btn-retry"));
    assert_eq!(
        bot.books().len(),
        1,
        "retry shows the confirmation, it does not book"
    );
    assert!(bot.has_button(&ru("btn-confirm")));
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books().len(), 2);
}

#[test]
fn a_closed_schedule_tells_the_client_to_call_the_business() {
    let mut world = World::salon();
    world.write_answers.push_back(Loaded::BookingClosed);
    let mut bot = Bot::with(ctx(), world);
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    let text = &bot.last().text;
    assert!(text.contains("Онлайн-запись сейчас недоступна"), "{text}");
    assert!(text.contains("+7 343 000-00-00"), "{text}");
    assert!(
        !text.contains(&ru("failed")),
        "no pretending it is a glitch: {text}"
    );
    assert!(bot.has_button(&ru("btn-menu")));
}
