//! Languages, where a client came from, edited messages, the persisted state, durations and
//! booking a past visit again.

use super::*;

#[test]
fn english_speakers_get_english() {
    let mut c = ctx();
    c.user_lang = Some("en-US".into());
    let mut bot = Bot::with(c, World::salon());
    let r = bot.start();
    assert!(r[0].text.contains("Hello"));
    let en = |k: &str| t(Lang::En, k);
    bot.press(&en("btn-book"));
    assert_eq!(
        bot.button("Окрашивание").label,
        "Окрашивание · from 3\u{a0}000\u{a0}₽ · 2 hours 30 minutes"
    );
    bot.press("Стрижка женская");
    bot.press(&en("btn-any-master"));
    bot.press("Today 2 Dec");
    bot.press("10:00");
    let r = bot.text("bad");
    assert!(r[0].text.contains("does not look like a phone"));
    bot.text("+79123456789");
    let r = bot.text("Mary");
    assert!(r[0].text.contains("Mon 2 Dec, 10:00"));
    let r = bot.press(&en("btn-confirm"));
    assert!(r[1].text.contains("you are booked"));
    assert_eq!(bot.st.lang(), Some(Lang::En));
}

#[test]
fn unknown_languages_use_the_business_default() {
    let mut c = ctx();
    c.user_lang = Some("de".into());
    c.default_lang = Lang::En;
    let mut bot = Bot::with(c, World::salon());
    assert!(bot.start()[0].text.contains("Hello"));
    let mut c = ctx();
    c.user_lang = Some("uk".into());
    c.default_lang = Lang::En;
    let mut bot = Bot::with(c, World::salon());
    assert!(bot.start()[0].text.contains("Здравствуйте"));
}

#[test]
fn the_source_goes_into_the_booking_and_survives_a_bare_start() {
    let campaign = Source {
        channel: Channel::Telegram,
        payload: Some("src_vk_dec".into()),
        link_name: Some("VK December".into()),
        utm: Utm {
            source: Some("vk".into()),
            ..Utm::default()
        },
    };
    let mut bot = Bot::new();
    bot.send(Input::Start {
        source: campaign.clone(),
    });
    bot.start();
    bot.text("/start");
    assert_eq!(bot.st.source(), Some(&campaign));
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    bot.press("Анна");
    bot.press("Сегодня 2 дек");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    assert_eq!(bot.books()[0].source, campaign);

    // A new tracked link replaces the old one.
    let other = Source {
        payload: Some("src_site".into()),
        ..Source::direct(Channel::Telegram)
    };
    bot.send(Input::Start {
        source: other.clone(),
    });
    assert_eq!(bot.st.source(), Some(&other));
}

#[test]
fn replies_to_presses_edit_and_others_do_not() {
    let mut bot = Bot::new();
    assert!(!bot.start()[0].edit);
    assert!(bot.press(&ru("btn-book"))[0].edit);
    assert!(!bot.text("hi")[0].edit);
    let r = bot.press("Стрижка женская");
    assert_eq!(r.len(), 1);
    assert!(r[0].edit);
}

#[test]
fn stale_global_navigation_is_honoured() {
    let mut bot = Bot::new();
    bot.start();
    let my = bot.button(&ru("btn-my")).data;
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    bot.send(Input::Button(my));
    assert!(matches!(bot.last_command(), Command::LoadMyBookings { .. }));
}

#[test]
fn long_ids_fit_into_button_data() {
    let mut world = World::salon();
    let long = "0f8fad5b-d9cb-469f-a165-70867728950e";
    world.services[0].id = long.into();
    world.masters[0].id = "1234567890".into();
    world.hours = vec![(10, "1234567890")];
    let b = world.booking(long, utc("2024-12-03T05:00:00Z"));
    world.bookings = vec![b];
    let mut bot = Bot::with(ctx(), world);
    bot.st.v = u32::MAX - 3;
    bot.goto_times("Анна");
    assert!(bot.has_button("10:00"));
    bot.text("/my");
    bot.press(&i18n::t_args(Lang::Ru, "btn-cancel-n", &[("n", 1.into())]));
    // check_reply has asserted every length on the way.
    assert!(bot.replies.len() > 5);
}

#[test]
fn state_stays_compact() {
    let mut bot = Bot::new();
    bot.goto_times("Анна");
    bot.press("10:00");
    bot.text("+79123456789");
    bot.text("Мария");
    bot.press(&ru("btn-confirm"));
    assert!(bot.max_json < 800, "state grew to {} bytes", bot.max_json);
    let json = serde_json::to_string(&bot.st).expect("json");
    assert!(json.len() < 200, "{json}");
}

#[test]
fn an_empty_state_from_an_old_version_still_works() {
    // A state written before any field existed, or by an older build.
    let st: DialogState = serde_json::from_str("{}").expect("empty state");
    let (_, out) = step(st, Input::Text("привет".into()), &ctx());
    assert!(out.replies[0].text.contains(&note("note-hint")));
}

#[test]
fn a_stored_phone_is_read_back_as_written_and_an_unnormalised_one_is_parsed() {
    let st: DialogState = serde_json::from_str(
        r#"{"phone":"+79123456789","guest":{"name":"Петя","phone":"+447946095812"}}"#,
    )
    .expect("state");
    assert_eq!(st.phone().map(|p| p.as_str()), Some("+79123456789"));
    assert_eq!(
        st.guest
            .as_ref()
            .and_then(|g| g.phone.as_ref())
            .map(|p| p.as_str()),
        Some("+447946095812")
    );
    // Not in E.164: read as a person would type it.
    let st: DialogState = serde_json::from_str(r#"{"phone":"8 (912) 345-67-89"}"#).expect("state");
    assert_eq!(st.phone().map(|p| p.as_str()), Some("+79123456789"));
    for bad in [
        r#"{"phone":"not a phone"}"#,
        r#"{"phone":"+0123456789"}"#,
        r#"{"phone":""}"#,
    ] {
        assert!(serde_json::from_str::<DialogState>(bad).is_err(), "{bad}");
    }
}

#[test]
fn booking_ids_stored_while_they_were_plain_strings_read_back_unchanged() {
    use super::state::{Act, At};
    // As builds that held our booking ids as `String` wrote a state, a command and an answer.
    let old_state = r#"{"at":{"Code":{"booking":"bk-code","tries":1}},"mv":{"id":"3f2a9c0e5b7d4e1f8a6b2c9d0e7f1a3b","svc_id":"s1","svc":"Стрижка","master_id":"m1","master":"Ирина","dur":60,"start":"2026-12-07T10:00:00Z"}}"#;
    let st: DialogState = serde_json::from_str(old_state).expect("state");
    assert_eq!(
        st.mv.as_ref().map(|m| m.id.as_str()),
        Some("3f2a9c0e5b7d4e1f8a6b2c9d0e7f1a3b")
    );
    assert!(matches!(&st.at, At::Code(w) if w.booking == "bk-code" && w.tries == 1));
    // Written back, the ids are the same plain strings.
    let written = serde_json::to_value(&st).expect("json");
    assert_eq!(written["mv"]["id"], "3f2a9c0e5b7d4e1f8a6b2c9d0e7f1a3b");
    assert_eq!(written["at"]["Code"]["booking"], "bk-code");
    let st: DialogState =
        serde_json::from_str(r#"{"at":{"My":{"act":{"Move":"sb-1"}}}}"#).expect("state");
    assert!(matches!(&st.at, At::My { act: Some(Act::Move(id)) } if id == "sb-1"));
    let command: Command =
        serde_json::from_str(r#"{"SubmitCode":{"booking_id":"b1","code":"1234"}}"#)
            .expect("command");
    assert_eq!(
        command,
        Command::SubmitCode {
            booking_id: crate::domain::bk("b1"),
            code: "1234".into()
        }
    );
    let loaded: Loaded =
        serde_json::from_str(r#"{"CodeRequired":{"booking_id":"bk-1"}}"#).expect("answer");
    assert_eq!(
        loaded,
        Loaded::CodeRequired {
            booking_id: crate::domain::bk("bk-1")
        }
    );
    // Nothing any build wrote is empty; a state that says so was not written by us.
    assert!(serde_json::from_str::<DialogState>(r#"{"at":{"Code":{"booking":""}}}"#).is_err());
}

#[test]
fn unexpected_answers_are_ignored() {
    let (st, out) = step(
        DialogState::default(),
        Input::Loaded(Loaded::Booked(World::salon().booking("x", ctx().now))),
        &ctx(),
    );
    assert!(out.replies.is_empty() && out.commands.is_empty());
    assert_eq!(st.at, super::state::At::Menu);
}

#[test]
fn steps_are_deterministic() {
    let run = || {
        let mut bot = Bot::new();
        bot.goto_times(&ru("btn-any-master"));
        bot.press("12:00");
        bot.text("+79123456789");
        bot.text("Мария");
        bot.press(&ru("btn-confirm"));
        (bot.replies, bot.commands, bot.st)
    };
    assert_eq!(run(), run());
}

#[test]
fn durations_under_an_hour_show_minutes_only() {
    let mut world = World::salon();
    world.services = vec![service("z", "Консультация", "Прочее", 0, 0, 30)];
    let mut bot = Bot::with(ctx(), world);
    bot.start();
    bot.press(&ru("btn-book"));
    assert_eq!(
        bot.button("Консультация").label,
        "Консультация · 0\u{a0}₽ · 30 минут"
    );
}

#[test]
fn a_past_visit_books_again_with_the_same_master() {
    let mut bot = Bot::with(ctx(), world_with_bookings());
    bot.start();
    let r = bot.press(&ru("btn-my"));
    let screen = r.last().expect("my bookings");
    assert!(screen.text.contains(&ru("my-past")), "{}", screen.text);
    let again = i18n::t_args(
        Lang::Ru,
        "btn-again",
        &[
            ("service", "Стрижка женская".into()),
            ("master", "Анна".into()),
        ],
    );
    let r = bot.press(&again);
    // Straight to the days of that master: the master screen is skipped.
    assert!(
        bot.commands.iter().any(|c| matches!(
            c,
            Command::LoadDays { service_id, master_id: Some(m), .. } if service_id == "s1" && m == "m1"
        )),
        "{:?}",
        bot.commands
    );
    assert!(
        r.last()
            .expect("days")
            .buttons
            .iter()
            .flatten()
            .any(|b| b.data.contains("|d:"))
    );
}

#[test]
fn no_past_visits_no_book_again_row() {
    let mut world = World::salon();
    let soon = world.booking("bk-1", utc("2024-12-03T05:00:00Z"));
    world.bookings = vec![soon];
    let mut bot = Bot::with(ctx(), world);
    bot.start();
    let r = bot.press(&ru("btn-my"));
    let screen = r.last().expect("my bookings");
    assert!(!screen.text.contains(&ru("my-past")));
    assert!(
        !screen
            .buttons
            .iter()
            .flatten()
            .any(|b| b.data.contains("|Ag:"))
    );
}
