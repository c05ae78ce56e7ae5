//! School mode: course, group or trial lesson, phone, name, application.

use super::*;

fn school() -> (Context, World) {
    let mut world = World::salon();
    world.services = vec![
        service("python", "Python для подростков", "", 0, 0, 0),
        service("design", "Дизайн", "", 0, 0, 0),
    ];
    world.masters = vec![
        Master {
            id: "12".into(),
            name: "Python, вечерняя".into(),
            specialization: "старт 07.12.2026".into(),
        },
        Master {
            id: TRIAL.into(),
            name: String::new(),
            specialization: String::new(),
        },
    ];
    let mut c = ctx();
    c.school = true;
    c.texts = i18n::Texts::builtin(crate::domain::BusinessKind::School);
    (c, world)
}

fn enrols(bot: &Bot) -> Vec<&EnrolDraft> {
    bot.commands
        .iter()
        .filter_map(|c| match c {
            Command::Enrol(d) => Some(d),
            _ => None,
        })
        .collect()
}

#[test]
fn school_mode_goes_course_group_phone_name_application_without_days_or_times() {
    let (c, world) = school();
    let mut bot = Bot::with(c, world);
    bot.start();
    bot.press("Записаться");
    assert!(bot.has_button("Дизайн"));
    assert!(
        !bot.screen()
            .buttons
            .iter()
            .flatten()
            .any(|b| b.label.contains('₽')),
        "a course is named without a price"
    );
    bot.press("Python для подростков");
    assert!(
        bot.screen().text.contains("выберите группу"),
        "{}",
        bot.screen().text
    );
    assert!(bot.has_button("Пробное занятие"));
    assert!(!bot.has_button("Любой мастер"));
    bot.press("Python, вечерняя");
    assert!(
        bot.last().request_contact,
        "the phone comes right after the group"
    );
    bot.back_from_phone_returns_to_groups();
    bot.press("Python, вечерняя");
    bot.text("+7 912 345-67-89");
    bot.text("Анна");
    assert!(
        bot.screen().text.contains("Проверьте заявку"),
        "{}",
        bot.screen().text
    );
    bot.press("Отправить заявку");
    assert!(
        bot.last().text.contains("Заявка принята"),
        "{}",
        bot.last().text
    );
    let sent = enrols(&bot);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].course.id, "python");
    assert_eq!(sent[0].group.as_ref().map(|g| g.id.as_str()), Some("12"));
    assert!(!sent[0].trial);
    assert_eq!(sent[0].phone.as_str(), "+79123456789");
    assert_eq!(sent[0].source, Source::direct(Channel::Telegram));
    assert!(bot.books().is_empty());
    assert!(
        !bot.commands
            .iter()
            .any(|c| matches!(c, Command::LoadDays { .. } | Command::LoadSlots { .. }))
    );

    // The trial lesson, with phone and name already known: straight to the confirmation.
    bot.press("Записаться");
    bot.press("Python для подростков");
    bot.press("Пробное занятие");
    assert!(
        bot.screen().text.contains("пробное занятие"),
        "{}",
        bot.screen().text
    );
    bot.press("Отправить заявку");
    assert!(
        bot.last().text.contains("пробное занятие"),
        "{}",
        bot.last().text
    );
    let sent = enrols(&bot);
    assert!(sent[1].trial && sent[1].group.is_none());
}

impl Bot {
    fn back_from_phone_returns_to_groups(&mut self) {
        self.press("Назад");
        assert!(
            self.screen().text.contains("выберите группу"),
            "{}",
            self.screen().text
        );
    }
}
