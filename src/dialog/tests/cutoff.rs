//! The cancellation and move cut-off.

use super::*;

/// A 3 h cut-off, "now" at 09:00 local on Mon 2 Dec; the world's visits are on Tue 3 Dec
/// 10:00 (bk-1) and Fri 6 Dec (bk-2), plus one today at 11:00, two hours away (bk-soon).
fn bot_with_cutoff() -> Bot {
    let mut c = ctx();
    c.change_cutoff = Some(chrono::Duration::hours(3));
    let mut world = world_with_bookings();
    let soon = world.booking("bk-soon", utc("2024-12-02T06:00:00Z"));
    world.bookings.push(soon);
    Bot::with(c, world)
}

#[test]
fn inside_the_cutoff_my_bookings_offers_a_call_instead_of_cancel_and_move() {
    let mut bot = bot_with_cutoff();
    bot.start();
    let r = bot.press(&ru("btn-my"));
    let text = &r[0].text;
    assert!(text.contains("3 записи"), "{text}");
    let call = i18n::t_args(
        Lang::Ru,
        "my-item-call",
        &[("phone", "+7 343 000-00-00".into())],
    );
    // The visit two hours away comes first and carries the call line; the others do not.
    let soon = text.find("Пн 2 дек, 11:00").expect("soon listed");
    let tomorrow = text.find("Вт 3 дек, 10:00").expect("tomorrow listed");
    let line = text.find(&call).expect("call line");
    assert!(soon < line && line < tomorrow, "{text}");
    assert_eq!(text.matches(&call).count(), 1, "{text}");
    let data: Vec<String> = bot
        .screen()
        .buttons
        .iter()
        .flatten()
        .map(|b| b.data.clone())
        .collect();
    assert!(!data.iter().any(|d| d.ends_with(":bk-soon")), "{data:?}");
    assert!(data.iter().any(|d| d.ends_with("C:bk-1")), "{data:?}");
    assert!(data.iter().any(|d| d.ends_with("R:bk-2")), "{data:?}");
}

#[test]
fn a_reminder_cancel_or_move_inside_the_cutoff_says_call_and_changes_nothing() {
    let buttons = crate::dialog::reminder_buttons(
        &Default::default(),
        Lang::Ru,
        &crate::domain::bk("bk-soon"),
        true,
    );
    for kind in ["Rc:", "Rm:"] {
        let mut bot = bot_with_cutoff();
        bot.start();
        let data = buttons
            .iter()
            .flatten()
            .find(|b| b.data.contains(kind))
            .expect("reminder button")
            .data
            .clone();
        let r = bot.send(Input::Button(data));
        let text = &r.last().expect("reply").text;
        assert!(text.contains("уже скоро"), "{kind}: {text}");
        assert!(text.contains("+7 343 000-00-00"), "{kind}: {text}");
        assert!(!bot.has_button(&ru("btn-yes-cancel")), "{kind}");
        assert!(
            !bot.commands.iter().any(|c| matches!(
                c,
                Command::Cancel { .. } | Command::Reschedule { .. } | Command::LoadDays { .. }
            )),
            "{kind}: {:?}",
            bot.commands
        );
        assert!(bot.has_button(&ru("btn-my")));
    }
}

#[test]
fn a_visit_that_crosses_the_cutoff_while_the_client_decides_is_not_changed() {
    // The cancel question for Tuesday's 10:00 visit is asked on Monday; "yes" comes on Tuesday
    // at 08:00, two hours before it.
    let mut bot = bot_with_cutoff();
    bot.start();
    bot.press(&ru("btn-my"));
    bot.press(&i18n::t_args(Lang::Ru, "btn-cancel-n", &[("n", 2.into())]));
    assert!(bot.has_button(&ru("btn-yes-cancel")));
    bot.ctx.now = utc("2024-12-03T03:00:00Z");
    let r = bot.press(&ru("btn-yes-cancel"));
    assert!(r[0].text.contains("уже скоро"), "{}", r[0].text);
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::Cancel { .. }))
    );

    // The same for a move confirmed too late.
    let mut bot = bot_with_cutoff();
    bot.start();
    bot.press(&ru("btn-my"));
    bot.press(&i18n::t_args(
        Lang::Ru,
        "btn-reschedule-n",
        &[("n", 2.into())],
    ));
    bot.press("Ср 4 дек");
    bot.press("15:00");
    bot.ctx.now = utc("2024-12-03T03:00:00Z");
    let r = bot.press(&ru("btn-confirm"));
    assert!(r[0].text.contains("уже скоро"), "{}", r[0].text);
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::Reschedule { .. }))
    );
}

#[test]
fn without_a_cutoff_a_visit_can_be_changed_up_to_its_start() {
    let mut bot = bot_with_cutoff();
    bot.ctx.change_cutoff = None;
    bot.start();
    bot.press(&ru("btn-my"));
    assert!(
        bot.button(&i18n::t_args(Lang::Ru, "btn-cancel-n", &[("n", 1.into())]))
            .data
            .ends_with("C:bk-soon")
    );
    bot.press(&i18n::t_args(Lang::Ru, "btn-cancel-n", &[("n", 1.into())]));
    bot.press(&ru("btn-yes-cancel"));
    assert_eq!(
        bot.last_command(),
        &Command::Cancel {
            booking_id: crate::domain::bk("bk-soon")
        }
    );
}

#[test]
fn inside_the_cutoff_without_a_business_phone_the_client_is_told_to_call_the_salon() {
    let mut bot = bot_with_cutoff();
    bot.ctx.business_phone = None;
    bot.start();
    let r = bot.press(&ru("btn-my"));
    assert!(
        r[0].text.contains(&ru("my-item-call-nophone")),
        "{}",
        r[0].text
    );
}
