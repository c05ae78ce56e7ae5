//! The school-mode bot through the real `zapis run` binary, against fake Telegram and fake
//! AlfaCRM over HTTP: a client from a deep link picks a course, a group read from AlfaCRM,
//! gives a phone and a name, and the application reaches AlfaCRM as one customer in that
//! group, assigned to the curator, with the source recorded.

use crate::support;
use crate::support::bid;
use support::e2e::until;

use serde_json::{Value, json};
use support::app::Settings;
use support::e2e::{Service, WAIT, keyboard, press_label};
use support::fake_alfacrm::{self as alfa, FakeAlfa};
use support::fake_telegram::FakeTelegram;

const CURATOR: i64 = 7;
const SOURCE_TELEGRAM: i64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_client_enrols_into_a_course_group_and_lands_in_alfacrm() {
    let tg = FakeTelegram::start().await;
    let crm = FakeAlfa::start().await;
    // Group starts relative to the school's today: a start shows only while it is ahead.
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Moscow)
        .date_naive();
    let evening = today + chrono::Duration::days(10);
    let weekend = today + chrono::Duration::days(40);
    for g in crm.state().groups.iter_mut() {
        let start = match g["id"].as_i64() {
            Some(id) if id == alfa::GROUP_PYTHON => evening,
            Some(id) if id == alfa::GROUP_PYTHON_LATE => weekend,
            _ => continue,
        };
        g["b_date"] = json!(start.format("%Y-%m-%d").to_string());
        g["e_date"] = json!(
            (start + chrono::Duration::days(180))
                .format("%Y-%m-%d")
                .to_string()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = Settings::single(&store_url, "Школа «Код»")
        .set("business.kind", "school")
        .telegram(&tg)
        .set("sync.poll", "100ms")
        .alfacrm(&crm)
        .set("school.alfacrm.curator_id", CURATOR)
        .set("school.alfacrm.lead_status_id", 1)
        .set(
            "school.alfacrm.lead_sources",
            json!({ "telegram": SOURCE_TELEGRAM }),
        )
        .push(
            "school.courses",
            json!({
                "key": "python",
                "title": "Python для подростков",
                "alfacrm_group_ids": [alfa::GROUP_PYTHON, alfa::GROUP_PYTHON_LATE],
                "trial": true,
            }),
        )
        .push(
            "school.courses",
            json!({
                "key": "design",
                "title": "Дизайн",
                "alfacrm_group_ids": [alfa::GROUP_DESIGN],
            }),
        )
        .write_in(dir.path());
    let service = Service::start(&config);
    let user = tg.user(5151);
    user.send_text("/start src_vk_winter");
    user.wait_for_text("Школа «Код»", WAIT).await;
    press_label(&user, "Записаться").await;
    // Courses, not services: titles without prices or durations.
    let courses = keyboard(&user, |m| m.labels().iter().any(|l| l == "Дизайн")).await;
    assert!(
        courses
            .labels()
            .iter()
            .any(|l| l == "Python для подростков")
    );
    press_label(&user, "Python для подростков").await;
    // Groups as AlfaCRM has them, with their start dates, and the trial lesson.
    let groups = keyboard(&user, |m| {
        m.labels().iter().any(|l| l.contains("Python, выходные"))
    })
    .await;
    let labels = groups.labels();
    assert!(
        labels.iter().any(|l| l.contains("Python, вечерняя")
            && l.contains(&evening.format("%d.%m.%Y").to_string())),
        "{labels:?}"
    );
    assert!(
        labels.iter().any(|l| l.contains("Пробное занятие")),
        "{labels:?}"
    );
    assert!(!labels.iter().any(|l| l.contains("Дизайн")), "{labels:?}");
    press_label(&user, "Python, выходные").await;
    support::e2e::agree(&user).await;
    user.wait_for_reply(|m| m.requests_contact(), WAIT).await;
    user.send_text("8 (912) 345-67-89");
    user.wait_for_reply(|m| m.text.contains("имя"), WAIT).await;
    user.send_text("Анна Смирнова");
    let confirm = user
        .wait_for_reply(|m| m.text.contains("Проверьте заявку"), WAIT)
        .await;
    assert!(
        confirm.text.contains("Python, выходные"),
        "{}",
        confirm.text
    );
    assert!(
        confirm.text.contains("+7 912 345-67-89"),
        "{}",
        confirm.text
    );
    press_label(&user, "Отправить заявку").await;
    user.wait_for_text("Заявка принята", WAIT).await;

    until("the customer in AlfaCRM, enrolled", || {
        crm.customers().len() == 1
            && !crm
                .cgis_of(crm.customers()[0]["id"].as_i64().unwrap_or(0))
                .is_empty()
    })
    .await;
    let c: Value = crm.customers()[0].clone();
    assert_eq!(c["name"], "Анна Смирнова");
    assert_eq!(c["phone"], json!(["+79123456789"]));
    assert_eq!(c["assigned_id"], CURATOR);
    assert_eq!(c["lead_source_id"], SOURCE_TELEGRAM);
    assert!(
        c["note"].as_str().unwrap().contains("src_vk_winter"),
        "the deep link is on the card: {}",
        c["note"]
    );
    let cgis = crm.cgis_of(c["id"].as_i64().unwrap());
    assert_eq!(cgis.len(), 1);
    assert_eq!(cgis[0]["group_id"], alfa::GROUP_PYTHON_LATE);
    assert_eq!(cgis[0]["b_date"], weekend.format("%Y-%m-%d").to_string());
    until("the curator's task", || crm.state().tasks.len() == 1).await;
    service.stop();
    // The applicant agreed before giving the phone; the agreement is on their card here.
    let store = zapis::store::Store::connect(&store_url).await.unwrap();
    let phone = zapis::normalize::Phone::parse("+79123456789").unwrap();
    let consent = store
        .client_consent(&bid("default"), &phone)
        .await
        .unwrap()
        .expect("the applicant's consent is stored");
    assert!(consent.version.starts_with("ru-"), "{}", consent.version);
}
