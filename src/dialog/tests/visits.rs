//! A service's description, a visit for someone else, and visits of several services.

use super::*;

#[test]
fn a_services_description_is_shown_as_it_is_picked_and_not_kept_in_the_state() {
    let mut world = World::salon();
    world.services[0].description = Some("Мытьё, стрижка и укладка.\nДля всех типов волос.".into());
    world.services[1].description = Some("Ц".repeat(700));
    let mut bot = Bot::with(ctx(), world);
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    let text = bot.screen().text.clone();
    assert!(
        text.starts_with("Мытьё, стрижка и укладка.\nДля всех типов волос.\n\n"),
        "{text}"
    );
    assert!(text.contains("выберите мастера"), "{text}");
    let json = serde_json::to_string(&bot.st).expect("json");
    assert!(
        !json.contains("Мытьё"),
        "the description is not in the state: {json}"
    );
    // Back from the masters: the services again, and a long description is cut.
    bot.press(&ru("btn-back"));
    bot.press("Окрашивание");
    let text = bot.screen().text.clone();
    assert!(
        text.starts_with(&format!("{}…\n\n", "Ц".repeat(600))),
        "{text}"
    );
    // A service without one: the masters screen as before.
    bot.press(&ru("btn-back"));
    bot.press("Маникюр");
    assert!(
        bot.screen().text.starts_with("Маникюр"),
        "{}",
        bot.screen().text
    );
}

#[test]
fn a_mother_books_her_child_under_the_childs_name_and_stays_herself() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    assert!(bot.has_button(&ru("btn-guest")));
    let r = bot.press(&ru("btn-guest"));
    assert_eq!(r[0].text, ru("ask-guest-name"));
    // The name step's checks hold for the other person's name too.
    let r = bot.text("89123456789");
    assert!(
        r[0].text.contains(&note("note-name-not-a-name")),
        "{}",
        r[0].text
    );
    let r = bot.text("Петя");
    assert!(r[0].text.contains(&ru("ask-guest-phone")), "{}", r[0].text);
    let r = bot.text("не помню");
    assert!(r[0].text.contains(&note("note-bad-phone")), "{}", r[0].text);
    // No phone of his own: the visit is his, the phone to call is hers.
    let r = bot.press(&ru("btn-guest-no-phone"));
    let text = &r[0].text;
    assert!(text.contains("Имя: Петя"), "{text}");
    assert!(text.contains("Телефон: +7 912 345-67-89"), "{text}");
    assert!(
        text.contains("Записывает: Мария, +7 912 345-67-89"),
        "{text}"
    );
    assert!(bot.has_button(&ru("btn-guest-self")));
    bot.press(&ru("btn-confirm"));
    let book = bot.books()[0].clone();
    assert_eq!(book.name, "Петя");
    assert_eq!(book.phone.as_str(), "+79123456789");
    assert_eq!(
        book.comment.as_deref(),
        Some("Записывает: Мария, +7 912 345-67-89")
    );
    // She is still herself, and the next booking is hers unless she says otherwise.
    assert_eq!(bot.st.name(), Some("Мария"));
    assert_eq!(bot.st.guest, None);
    bot.press(&ru("btn-book"));
    bot.press("Маникюр");
    bot.press("Анна");
    bot.press("Ср 4 дек");
    let r = bot.press("15:00");
    assert!(r[0].text.contains("Имя: Мария"), "{}", r[0].text);
    assert!(!r[0].text.contains("Записывает"), "{}", r[0].text);
}

#[test]
fn the_other_persons_own_phone_goes_with_the_comment_and_the_choice_can_be_undone() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-comment"));
    bot.text("Первый раз");
    bot.press(&ru("btn-guest"));
    // Back from the name: the confirmation as it was.
    let r = bot.press(&ru("btn-back"));
    assert!(r[0].text.contains("Имя: Мария"), "{}", r[0].text);
    bot.press(&ru("btn-guest"));
    bot.text("Ольга Петровна");
    let r = bot.text("8 (916) 555-12-34");
    assert!(r[0].text.contains("Имя: Ольга Петровна"), "{}", r[0].text);
    assert!(
        r[0].text.contains("Телефон: +7 916 555-12-34"),
        "{}",
        r[0].text
    );
    // Changed her mind: herself after all.
    let r = bot.press(&ru("btn-guest-self"));
    assert!(r[0].text.contains("Имя: Мария"), "{}", r[0].text);
    assert!(bot.has_button(&ru("btn-guest")));
    bot.press(&ru("btn-guest"));
    bot.text("Ольга Петровна");
    bot.text("+79165551234");
    bot.press(&ru("btn-confirm"));
    let book = bot.books()[0].clone();
    assert_eq!(book.name, "Ольга Петровна");
    assert_eq!(book.phone.as_str(), "+79165551234");
    assert_eq!(
        book.comment.as_deref(),
        Some("Первый раз\nЗаписывает: Мария, +7 912 345-67-89")
    );
    assert_eq!(bot.st.phone().map(|p| p.as_str()), Some("+79123456789"));
}

#[test]
fn moving_a_visit_offers_no_booking_for_someone_else() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    goto_move_confirmation(&mut bot);
    assert!(bot.has_button(&ru("btn-confirm")));
    assert!(!bot.has_button(&ru("btn-guest")));
    let data = bot.button(&ru("btn-confirm")).data;
    let version = data.split('|').next().expect("version");
    let r = bot.send(Input::Button(format!("{version}|O")));
    assert!(r[0].text.contains(&note("note-hint")), "{}", r[0].text);
}

#[test]
fn the_call_is_on_every_screen_and_pressed_mid_booking_keeps_the_step() {
    let mut bot = with_support(None, None);
    bot.start();
    bot.press(&ru("btn-book"));
    assert!(bot.has_button(&ru("btn-call-admin")), "on the services");
    bot.press("Стрижка женская");
    assert!(bot.has_button(&ru("btn-call-admin")), "on the masters");
    let once = bot
        .screen()
        .buttons
        .iter()
        .flatten()
        .filter(|b| b.label == ru("btn-call-admin"))
        .count();
    assert_eq!(once, 1);
    bot.press("Анна");
    assert!(bot.has_button(&ru("btn-call-admin")), "on the days");
    let r = bot.press(&ru("btn-call-admin"));
    assert_eq!(calls(&bot), [None]);
    assert!(r[0].text.contains(&ru("support-called")), "{}", r[0].text);
    assert!(r[0].edit, "the pressed message says who was called");
    // The days again, below it, and they still work.
    assert!(bot.has_button("Сегодня 2 дек"), "{:?}", bot.screen());
    bot.press("Сегодня 2 дек");
    assert!(bot.has_button("10:00"));
    // From the menu the call shows the way back to it.
    bot.text("/menu");
    bot.press(&ru("btn-call-admin"));
    assert!(bot.has_button(&ru("btn-menu")));
}

#[test]
fn a_visit_of_several_services_where_the_schedule_books_them_together() {
    let mut ctx = ctx();
    ctx.several_services = true;
    let mut bot = Bot::with(ctx, World::salon());
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    assert!(bot.has_button(&ru("btn-add-service")));
    let r = bot.press(&ru("btn-add-service"));
    assert!(
        r[0].text.contains("Что добавить к «Стрижка женская»?"),
        "{}",
        r[0].text
    );
    assert!(
        !bot.has_button("Стрижка женская"),
        "what the visit has is not offered"
    );
    // Back: the masters of the visit as it was.
    bot.press(&ru("btn-back"));
    assert!(
        bot.screen().text.starts_with("Стрижка женская:"),
        "{}",
        bot.screen().text
    );
    bot.press(&ru("btn-add-service"));
    bot.press("Маникюр");
    assert_eq!(
        bot.last_command(),
        &Command::LoadMasters {
            service_id: "s1+s3".into()
        }
    );
    assert!(
        bot.screen().text.contains("Стрижка женская + Маникюр"),
        "{}",
        bot.screen().text
    );
    bot.press(&ru("btn-add-service"));
    bot.press("Окрашивание");
    // Three is as many as one visit takes here.
    assert!(!bot.has_button(&ru("btn-add-service")));
    bot.press("Анна");
    bot.press("Сегодня 2 дек");
    bot.press("10:00");
    bot.text("+79123456789");
    let r = bot.text("Мария");
    let text = &r[0].text;
    assert!(
        text.contains("Стрижка женская + Маникюр + Окрашивание"),
        "{text}"
    );
    // 60 + 45 + 150 minutes; 1 500 + 1 200 + from 3 000 rubles.
    assert!(text.contains("4 часа 15 минут"), "{text}");
    assert!(
        text.contains(&format!("от {}", Money::from_rubles(5700))),
        "{text}"
    );
    bot.press(&ru("btn-confirm"));
    let book = bot.books()[0].clone();
    assert_eq!(book.service.id, "s1+s3+s2");
    assert_eq!(book.service.duration_min, 255);
}

#[test]
fn one_service_a_visit_where_the_schedule_books_one() {
    let mut bot = Bot::new();
    bot.start();
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    assert!(!bot.has_button(&ru("btn-add-service")));
    let v = bot.st.v;
    let r = bot.send(Input::Button(format!("{v}|Sa")));
    assert!(r[0].text.contains(&note("note-hint")), "{}", r[0].text);
}
