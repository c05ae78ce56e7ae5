//! The real `zapis` binary speaks a business's words: a clinic's client reads "врач" where a
//! salon's reads "мастер", a business's own message file changes the greeting on the next
//! start without a rebuild, and a broken one stops `zapis run` and `zapis check` naming the
//! file and the message.

use std::path::Path;

use crate::support;

use support::app::Settings;
use support::e2e::{Service, WAIT, agree, is_consent, keyboard, press_kind, press_label};
use support::fake_telegram::FakeTelegram;

fn clinic_config(dir: &Path, api_url: &url::Url, locales: Option<&str>) -> std::path::PathBuf {
    let store_url = format!("sqlite://{}", dir.join("zapis.db").display());
    let settings = Settings::single(&store_url, "Клиника «Дента»")
        .set("business.address", "Москва, ул. Пушкина, 10")
        .set("business.kind", "clinic")
        .telegram_at(api_url);
    match locales {
        Some(l) => settings.set("business.locales", l),
        None => settings,
    }
    .write_in(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_says_doctor_and_its_own_greeting_needs_no_rebuild() {
    let fake = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = clinic_config(dir.path(), &fake.api_url(), None);
    let service = Service::start(&config);

    let user = fake.user(5151);
    user.send_text("/start");
    let greeting = user.wait_for_text("Клиника «Дента»", WAIT).await;
    assert!(
        greeting.text.starts_with("Здравствуйте!"),
        "{}",
        greeting.text
    );
    press_label(&user, "Записаться").await;
    press_label(&user, "Женская стрижка").await;
    let masters = keyboard(&user, |m| m.labels().iter().any(|l| l == "Любой врач")).await;
    assert!(masters.text.ends_with("выберите врача"), "{}", masters.text);
    assert!(
        !user
            .history()
            .iter()
            .any(|m| m.text.contains("мастер") || m.labels().iter().any(|l| l.contains("мастер"))),
        "a salon's word in a clinic's chat: {:#?}",
        user.history()
    );
    press_label(&user, "Любой врач").await;
    press_kind(&user, "d:").await;
    press_kind(&user, "t:").await;
    let consent = user.wait_for_text("персональных данных", WAIT).await;
    assert!(is_consent(&consent), "{consent:#?}");
    agree(&user).await;
    user.wait_for_reply(|m| m.requests_contact(), WAIT).await;
    user.send_text("+7 912 345-67-89");
    user.wait_for_text("Как к вам обращаться", WAIT).await;
    user.send_text("Мария");
    let confirm = user.wait_for_text("Проверьте запись", WAIT).await;
    assert!(confirm.text.contains("\nВрач: "), "{}", confirm.text);
    assert!(!confirm.text.contains("Мастер"), "{}", confirm.text);

    // The same clinic in English.
    let en = fake.user(5252).with_lang(Some("en"));
    en.send_text("/start");
    en.wait_for_text("Hello!", WAIT).await;
    press_label(&en, "Book").await;
    press_label(&en, "Женская стрижка").await;
    let masters = keyboard(&en, |m| m.labels().iter().any(|l| l == "Any doctor")).await;
    assert!(
        masters.text.ends_with("choose a doctor"),
        "{}",
        masters.text
    );
    service.stop();

    // The business writes its own greeting; the same binary reads it on the next start.
    std::fs::create_dir_all(dir.path().join("words/ru")).unwrap();
    std::fs::write(
        dir.path().join("words/ru/greeting.ftl"),
        "greeting =\n    Добро пожаловать в { $business }!\n    Запишитесь к { -master(case: \"dat\") } онлайн.\n",
    )
    .unwrap();
    let config = clinic_config(dir.path(), &fake.api_url(), Some("words"));
    let service = Service::start(&config);
    let other = fake.user(5353);
    other.send_text("/start");
    let greeting = other.wait_for_text("Добро пожаловать", WAIT).await;
    assert_eq!(
        greeting.text,
        "Добро пожаловать в Клиника «Дента»!\nЗапишитесь к врачу онлайн."
    );
    // English has no override and keeps the built-in greeting.
    let en = fake.user(5454).with_lang(Some("en"));
    en.send_text("/start");
    en.wait_for_text("Hello! This is the booking bot of Клиника «Дента»", WAIT)
        .await;
    service.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_override_stops_the_start_naming_the_file_and_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let api_url: url::Url = "http://127.0.0.1:9/".parse().unwrap();
    let config = clinic_config(dir.path(), &api_url, Some("words"));
    let file = dir.path().join("words/ru/bad.ftl");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let zapis = |cmd: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_zapis"))
            .args([cmd, "--config"])
            .arg(&config)
            .env_remove("ZAPIS_TELEGRAM__TOKEN")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let cases = [
        // An id the bot has no message for.
        (
            "greeting = Привет!\ngreting = Опечатка\n",
            "greting",
            "not a built-in message",
        ),
        // Fluent that does not parse.
        (
            "menu = Меню\ngreeting = Привет, { $business\n",
            "greeting",
            "syntax error",
        ),
        // A placeholder the bot does not fill for this message.
        ("greeting = Привет, { $client }!\n", "greeting", "$client"),
    ];
    for (ftl, id, why) in cases {
        std::fs::write(&file, ftl).unwrap();
        for cmd in ["check", "run"] {
            let out = zapis(cmd);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "zapis {cmd} accepted {ftl:?}: {stderr}"
            );
            for want in [
                "business.locales",
                &file.display().to_string(),
                &format!("`{id}`"),
                why,
            ] {
                assert!(
                    stderr.contains(want),
                    "zapis {cmd}: {want:?} missing in {stderr}"
                );
            }
        }
    }
}
