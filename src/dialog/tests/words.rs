//! A business's words: a clinic's terms and a business's own overrides.

use super::*;

/// The master screen, its "any" button and the confirmation of a booking, as a client of a
/// business of `kind` reads them in `lang`.
fn booking_words(kind: crate::domain::BusinessKind, lang: Lang) -> (String, String, String) {
    let mut c = ctx();
    c.texts = i18n::Texts::builtin(kind);
    c.user_lang = Some(lang.code().into());
    let mut bot = Bot::with(c, World::salon());
    bot.start();
    bot.press(&t(lang, "btn-book"));
    bot.press("Стрижка женская");
    let masters = bot.screen().text.clone();
    let any = match lang {
        Lang::Ru => "Любой",
        Lang::En => "Any",
    };
    let any = bot.button(any).label;
    bot.press("Анна");
    bot.press(&t(lang, "day-today"));
    bot.press("10:00");
    bot.send(Input::Contact {
        phone: "79123456789".into(),
    });
    let confirm = bot.text("Мария")[0].text.clone();
    (masters, any, confirm)
}

#[test]
fn a_clinic_says_doctor_where_a_salon_says_master() {
    use crate::domain::BusinessKind::{Clinic, Salon, School};
    let (masters, any, confirm) = booking_words(Salon, Lang::Ru);
    assert_eq!(masters, "Стрижка женская: выберите мастера");
    assert_eq!(any, "Любой мастер");
    assert!(confirm.contains("Мастер: Анна"), "{confirm}");
    assert!(confirm.contains("Услуга: Стрижка женская"), "{confirm}");

    let (masters, any, confirm) = booking_words(Clinic, Lang::Ru);
    assert_eq!(masters, "Стрижка женская: выберите врача");
    assert_eq!(any, "Любой врач");
    assert!(confirm.contains("Врач: Анна"), "{confirm}");
    assert!(!confirm.contains("Мастер"), "{confirm}");

    let (masters, any, confirm) = booking_words(Salon, Lang::En);
    assert_eq!(masters, "Стрижка женская: choose a master");
    assert_eq!(any, "Any master");
    assert!(confirm.contains("Master: Анна"), "{confirm}");
    assert!(confirm.contains("check your booking"), "{confirm}");

    let (masters, any, confirm) = booking_words(Clinic, Lang::En);
    assert_eq!(masters, "Стрижка женская: choose a doctor");
    assert_eq!(any, "Any doctor");
    assert!(confirm.contains("Doctor: Анна"), "{confirm}");
    assert!(confirm.contains("check your appointment"), "{confirm}");
    assert!(!confirm.to_lowercase().contains("master"), "{confirm}");

    // A school's words without its application flow (courses sold as visits).
    let (masters, any, confirm) = booking_words(School, Lang::Ru);
    assert_eq!(masters, "Стрижка женская: выберите преподавателя");
    assert_eq!(any, "Любой преподаватель");
    assert!(confirm.contains("Курс: Стрижка женская"), "{confirm}");
}

#[test]
fn a_clinic_notice_names_the_clinic_in_agreement() {
    use crate::domain::BusinessKind::Clinic;
    let clinic = i18n::Texts::builtin(Clinic);
    let args = [("service", "Осмотр".into()), ("when", "2 дек".into())];
    let ru = clinic.t_args(Lang::Ru, "notify-cancelled-by-business", &args);
    assert!(ru.starts_with("Клиника отменила вашу запись"), "{ru}");
    let salon = i18n::t_args(Lang::Ru, "notify-cancelled-by-business", &args);
    assert!(salon.starts_with("Салон отменил вашу запись"), "{salon}");
    let en = clinic.t_args(Lang::En, "notify-cancelled-by-business", &args);
    assert!(
        en.starts_with("The clinic cancelled your appointment"),
        "{en}"
    );
}

#[test]
fn an_override_changes_what_the_dialog_says() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("ru")).expect("ru dir");
    std::fs::write(
        dir.path().join("ru/words.ftl"),
        "greeting = Добро пожаловать в { $business }!\n-master = { $case ->\n   *[nom] стилист\n    [acc] стилиста\n}\n",
    )
    .expect("override file");
    let mut c = ctx();
    c.texts = i18n::Texts::load(crate::domain::BusinessKind::Salon, dir.path())
        .expect("a valid override");
    let mut bot = Bot::with(c, World::salon());
    let r = bot.start();
    assert!(
        r[0].text.starts_with("Добро пожаловать в Салон Лаванда!"),
        "{}",
        r[0].text
    );
    bot.press(&ru("btn-book"));
    bot.press("Стрижка женская");
    assert_eq!(bot.screen().text, "Стрижка женская: выберите стилиста");
    assert!(bot.has_button("Любой стилист"));
}
