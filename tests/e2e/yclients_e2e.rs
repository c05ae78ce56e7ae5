//! The real `zapis run` booking into a fake YClients through Telegram, then the salon deleting
//! the record: YClients' webhook reaches our HTTP endpoint, the booking is cancelled in our store
//! and the client is told in the chat. A replayed webhook changes nothing more.

use crate::support;
use crate::support::bid;
use support::e2e::free_port;

use std::time::Duration;

use serde_json::json;
use support::app::Settings;
use support::e2e::{Service, WAIT, agree, book_first_slot, is_consent, press_kind, press_label};
use support::fake_telegram::FakeTelegram;
use support::fake_yclients::{FakeSalon, FakeYclients};
use zapis::domain::BookingStatus;
use zapis::store::Store;

const SECRET: &str = "webhook-secret-0123456789";

/// A salon on YClients with a Telegram bot.
fn salon(store_url: &str, yc: &FakeYclients, tg: &FakeTelegram) -> Settings {
    Settings::single(store_url, "Салон «Лилия»")
        .set("business.timezone", "Asia/Yekaterinburg")
        .set("business.address", "Екатеринбург, ул. Ленина, 1")
        .yclients(yc, 777)
        .telegram(tg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salon_deletion_reaches_the_store_and_the_client() {
    let tg = FakeTelegram::start().await;
    let yc = FakeYclients::start(FakeSalon::standard(777, chrono_tz::Asia::Yekaterinburg)).await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let port = free_port();
    let config = salon(&store_url, &yc, &tg)
        .set("sync.poll", "100ms")
        .http(port, SECRET)
        .write_in(dir.path());
    let service = Service::start(&config);

    let user = tg.user(2001);
    user.send_text("/start src_vk");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    let picked = book_first_slot(&user, "Женская стрижка", "+7 912 345-67-89", "Анна").await;
    let done = user.wait_for_text("вы записаны", WAIT).await;
    assert!(done.text.contains(&picked), "{}", done.text);

    let records = yc.active_records();
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = records[0].clone();
    assert_eq!(record.service_id, 101);
    assert_eq!(record.phone, "79123456789");
    assert_eq!(
        record.local.format("%H:%M").to_string(),
        picked,
        "the salon's local time"
    );

    // The salon deletes the record in YClients, which notifies us.
    yc.salon_delete(record.id);
    let hook = json!({
        "company_id": 777,
        "resource": "record",
        "resource_id": record.id,
        "status": "delete",
        "data": { "id": record.id, "company_id": 777, "staff_id": record.staff_id,
                  "api_id": record.api_id, "deleted": true,
                  "services": [{"id": record.service_id}] }
    });
    let url = format!("http://127.0.0.1:{port}/webhooks/yclients/{SECRET}");
    let client = reqwest::Client::new();
    let mut accepted = false;
    for _ in 0..100 {
        if let Ok(resp) = client.post(&url).json(&hook).send().await {
            assert_eq!(resp.status(), 200);
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "the webhook endpoint answers");
    let told = user.wait_for_text("Салон отменил", WAIT).await;
    assert!(told.text.contains("Женская стрижка"), "{}", told.text);

    let store = Store::connect(&store_url).await.unwrap();
    let booking = store.bookings(&bid("default")).await.unwrap().remove(0);
    assert_eq!(booking.status, BookingStatus::CancelledByBusiness);

    // A wrong secret is refused, and the same delivery again is taken but changes nothing.
    let wrong = client
        .post(format!(
            "http://127.0.0.1:{port}/webhooks/yclients/not-the-secret-000000"
        ))
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    let again = client.post(&url).json(&hook).send().await.unwrap();
    assert_eq!(again.status(), 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let notices = user
        .history()
        .iter()
        .filter(|m| m.text.contains("Салон отменил"))
        .count();
    assert_eq!(notices, 1, "the client is told once");
    service.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_confirmed_while_yclients_is_down_completes_when_it_is_back() {
    use support::e2e::{book_until_confirm, press_label};
    use support::fake_yclients::Down;
    let tg = FakeTelegram::start().await;
    let yc = FakeYclients::start(FakeSalon::standard(777, chrono_tz::Europe::Kaliningrad)).await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = Settings::single(&store_url, "Салон «Лилия»")
        .set("business.timezone", "Europe/Kaliningrad")
        .yclients(&yc, 777)
        .set("booking.yclients.max_retries", 0)
        .telegram(&tg)
        .set("sync.poll", "100ms")
        .write_in(dir.path());
    let service = Service::start(&config);
    let user = tg.user(2002);
    user.send_text("/start src_queue");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    book_until_confirm(&user, "Маникюр", "+7 912 000-11-22", "Вера").await;
    yc.set_down(Down::Unavailable);
    press_label(&user, "Подтвердить").await;
    user.wait_for_text("не отвечает", WAIT).await;
    assert!(yc.active_records().is_empty());

    yc.set_down(Down::Up);
    // The first retry comes about ten seconds later.
    let confirmed = user
        .wait_for_text("подтвердило вашу запись", Duration::from_secs(40))
        .await;
    assert!(confirmed.text.contains("Маникюр"), "{}", confirmed.text);
    let records = yc.active_records();
    assert_eq!(records.len(), 1, "booked exactly once");
    assert!(
        records[0].comment.contains("start=src_queue"),
        "a queued booking still tells the salon its source: {:?}",
        records[0].comment
    );
    let store = Store::connect(&store_url).await.unwrap();
    let booking = store.bookings(&bid("default")).await.unwrap().remove(0);
    assert_eq!(booking.status, BookingStatus::Booked);
    service.stop();
}

/// The visit's local date and time as the confirmation screen shows it ("Когда: Вс 29 ноя, 10:00").
fn shown_local_time(text: &str, tz: chrono_tz::Tz) -> chrono::NaiveDateTime {
    use chrono::Datelike;
    const MONTHS: [&str; 12] = [
        "янв", "фев", "мар", "апр", "мая", "июн", "июл", "авг", "сен", "окт", "ноя", "дек",
    ];
    let line = text
        .lines()
        .find(|l| l.starts_with("Когда:"))
        .expect("the screen names the time");
    let parts: Vec<&str> = line.split([' ', ',']).filter(|p| !p.is_empty()).collect();
    // ["Когда:", "Вс", "29", "ноя", "10:00"]
    let day: u32 = parts[2].parse().unwrap();
    let month = MONTHS.iter().position(|m| *m == parts[3]).unwrap() as u32 + 1;
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    let year = if month < today.month() {
        today.year() + 1
    } else {
        today.year()
    };
    let date = chrono::NaiveDate::from_ymd_opt(year, month, day).unwrap();
    date.and_time(chrono::NaiveTime::parse_from_str(parts[4], "%H:%M").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_taken_before_confirm_offers_fresh_times_and_cancel_deletes_the_record() {
    use support::e2e::press_label;
    let tz = chrono_tz::Asia::Yekaterinburg;
    let tg = FakeTelegram::start().await;
    let yc = FakeYclients::start(FakeSalon::standard(777, tz)).await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = Settings::single(&store_url, "Салон «Лилия»")
        .set("business.timezone", "Asia/Yekaterinburg")
        .yclients(&yc, 777)
        .telegram(&tg)
        .write_in(dir.path());
    let service = Service::start(&config);
    let user = tg.user(2003);
    user.send_text("/start");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    press_label(&user, "Записаться").await;
    press_label(&user, "Мужская стрижка").await;
    // This time with a named master, so the slot is hers alone.
    press_label(&user, "Ольга").await;
    // A day after today: late in the salon's day, today may have one free time left, and once
    // it is taken there would be no fresh time to offer.
    let today = chrono::Utc::now()
        .with_timezone(&tz)
        .format("d:%Y%m%d")
        .to_string();
    let days = support::e2e::keyboard(&user, |m| {
        m.buttons
            .iter()
            .flatten()
            .any(|b| support::e2e::payload(&b.data).starts_with("d:"))
    })
    .await;
    let day = days
        .buttons
        .iter()
        .flatten()
        .map(|b| b.data.clone())
        .find(|d| {
            let p = support::e2e::payload(d);
            p.starts_with("d:") && !p.starts_with(&today)
        })
        .expect("a day after today is offered");
    user.press(&day);
    support::e2e::press_kind(&user, "t:").await;
    support::e2e::agree(&user).await;
    user.wait_for_reply(|m| m.requests_contact(), WAIT).await;
    user.send_text("+7 912 555-44-33");
    user.wait_for_text("имя", WAIT).await;
    user.send_text("Олег");
    let confirm = user.wait_for_text("Проверьте запись", WAIT).await;
    let local = shown_local_time(&confirm.text, tz);

    // Someone else takes the time at the front desk before the client confirms.
    yc.salon_book(11, 102, local);
    press_label(&user, "Подтвердить").await;
    let fresh = user
        .wait_for_reply(
            |m| m.buttons.iter().flatten().any(|b| b.data.contains("|t:")),
            WAIT,
        )
        .await;
    assert!(
        !fresh.labels().contains(&local.format("%H:%M").to_string()),
        "the taken time is not offered again: {:?}",
        fresh.labels()
    );
    assert_eq!(yc.active_records().len(), 1, "no double booking");

    // The client takes another time, then cancels from "my bookings".
    support::e2e::press_kind(&user, "t:").await;
    user.wait_for_text("Проверьте запись", WAIT).await;
    press_label(&user, "Подтвердить").await;
    user.wait_for_text("вы записаны", WAIT).await;
    assert_eq!(yc.active_records().len(), 2);
    press_label(&user, "Мои записи").await;
    press_label(&user, "Отменить").await;
    press_label(&user, "Да, отменить").await;
    user.wait_for_text("Запись отменена", WAIT).await;
    let left = yc.active_records();
    assert_eq!(
        left.len(),
        1,
        "only the front desk's record is left: {left:#?}"
    );
    assert_ne!(left[0].phone, "79125554433");
    service.stop();
}

/// `zapis check [--probe]` on a config file; (success, stdout).
fn zapis_check(config: &std::path::Path, probe: bool) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_zapis"));
    cmd.args(["check", "--config"]).arg(config);
    if probe {
        cmd.arg("--probe");
    }
    let out = cmd
        .env_remove("ZAPIS_TELEGRAM__TOKEN")
        .output()
        .expect("zapis check runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_companys_time_zone_wins_over_a_disagreeing_business_timezone() {
    let tz = chrono_tz::Asia::Yekaterinburg;
    let tg = FakeTelegram::start().await;
    let yc = FakeYclients::start(FakeSalon::standard(777, tz)).await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = dir.path().join("zapis.toml");
    // A Yekaterinburg salon set up as Moscow: two hours apart.
    Settings::single(&store_url, "Салон «Лилия»")
        .yclients(&yc, 777)
        .telegram(&tg)
        .write(&config);
    let (ok, out) = zapis_check(&config, false);
    assert!(!ok, "{out}");
    assert!(
        out.contains("Europe/Moscow") && out.contains("Asia/Yekaterinburg"),
        "names both zones: {out}"
    );

    let log = dir.path().join("run.log");
    let service = Service::start_logging_to(&config, &log);
    let user = tg.user(2004);
    user.send_text("/start");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    let picked = book_first_slot(&user, "Женская стрижка", "+7 912 345-67-89", "Анна").await;
    let done = user.wait_for_text("вы записаны", WAIT).await;
    let record = yc.active_records().remove(0);
    assert_eq!(
        record.local.format("%H:%M").to_string(),
        picked,
        "the time the client picked is the salon's own"
    );
    assert!(
        done.text
            .contains(&record.local.format("%H:%M").to_string()),
        "{}",
        done.text
    );
    service.stop();
    let log = std::fs::read_to_string(&log).unwrap();
    let warning = log
        .lines()
        .find(|l| l.contains("business.timezone"))
        .unwrap_or_else(|| panic!("a warning at start: {log}"));
    assert!(
        warning.contains("Europe/Moscow") && warning.contains("Asia/Yekaterinburg"),
        "{warning}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probe_asks_the_live_accounts_and_writes_nothing() {
    use support::fake_onec::FakeOnec;
    use support::fake_yclients::USER_TOKEN;
    let yc = FakeYclients::start(FakeSalon::standard(777, chrono_tz::Asia::Yekaterinburg)).await;
    yc.require_partner_id(4242);
    let onec = FakeOnec::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = dir.path().join("zapis.toml");
    let write = |partner_id: Option<i64>| {
        let settings = Settings::single(&store_url, "Салон «Лилия»")
            .set("business.timezone", "Asia/Yekaterinburg")
            .yclients(&yc, 777)
            .set("booking.yclients.user_token", USER_TOKEN)
            .onec_odata(&onec);
        match partner_id {
            Some(id) => settings.set("booking.yclients.partner_id", id),
            None => settings,
        }
        .write(&config);
    };

    // No partner id configured: plain check says admin calls are refused, the probe says what
    // to set, and both fail.
    write(None);
    let (ok, out) = zapis_check(&config, false);
    assert!(!ok, "{out}");
    assert!(
        out.contains("Не указан идентификатор партнера") && out.contains("partner_id"),
        "{out}"
    );
    let (ok, out) = zapis_check(&config, true);
    assert!(!ok, "{out}");
    let row = |needle: &str| {
        out.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle} row: {out}"))
            .to_string()
    };
    assert!(row("X-Partner-Id").contains("FIX"), "{out}");
    assert!(row("company time zone").contains("ok"), "{out}");
    let invoice = row("Document_СчетНаОплатуПокупателю ");
    assert!(
        invoice.contains("FIX") && invoice.contains("ВалютаДокумента_Key"),
        "the required attribute zapis does not send: {invoice}"
    );
    assert!(
        !invoice.contains("Контрагент_Key"),
        "zapis sends that one: {invoice}"
    );

    // Configured: refused without it, accepted with it.
    write(Some(4242));
    let (_, out) = zapis_check(&config, true);
    let partner = out
        .lines()
        .find(|l| l.contains("X-Partner-Id"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        !partner.contains("FIX") && partner.contains("accepted with it"),
        "{partner}"
    );

    let writes: Vec<String> = yc
        .request_log()
        .into_iter()
        .chain(onec.requests())
        .filter(|r| !r.starts_with("GET "))
        .collect();
    assert!(writes.is_empty(), "the probe wrote: {writes:?}");
    assert!(yc.request_count() > 0 && !onec.requests().is_empty());
}

/// A haircut and a manicure in one visit, from the Telegram chat into one YClients
/// appointment with both services and their summed length, with the master who does both,
/// and the client's comment on the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_in_one_visit_become_one_appointment() {
    let tg = FakeTelegram::start().await;
    let yc = FakeYclients::start(FakeSalon::standard(777, chrono_tz::Asia::Yekaterinburg)).await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = salon(&store_url, &yc, &tg).write_in(dir.path());
    let service = Service::start(&config);

    let user = tg.user(2002);
    user.send_text("/start");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    press_label(&user, "Записаться").await;
    press_label(&user, "Женская стрижка").await;
    press_label(&user, "Добавить услугу").await;
    user.wait_for_text("Что добавить к «Женская стрижка»?", WAIT)
        .await;
    press_label(&user, "Маникюр").await;
    let masters = user.wait_for_text("Женская стрижка + Маникюр", WAIT).await;
    let labels = masters.labels();
    assert!(labels.iter().any(|l| l.contains("Анна")), "{labels:?}");
    assert!(
        !labels.iter().any(|l| l.contains("Ольга")),
        "she does no manicure: {labels:?}"
    );
    press_label(&user, "Анна").await;
    press_kind(&user, "d:").await;
    press_kind(&user, "t:").await;
    let shown = user
        .wait_for_reply(|m| is_consent(m) || m.requests_contact(), WAIT)
        .await;
    if is_consent(&shown) {
        agree(&user).await;
    }
    user.wait_for_reply(|m| m.requests_contact(), WAIT).await;
    user.send_text("+7 912 345-67-89");
    user.wait_for_text("имя", WAIT).await;
    user.send_text("Анна Иванова");
    let confirm = user.wait_for_text("Проверьте запись", WAIT).await;
    assert!(
        confirm.text.contains("Женская стрижка + Маникюр"),
        "{}",
        confirm.text
    );
    assert!(confirm.text.contains("2 часа 30 минут"), "{}", confirm.text);
    // A comment to the visit goes onto the schedule's record.
    press_label(&user, "Добавить комментарий").await;
    user.wait_for_text("Напишите комментарий", WAIT).await;
    user.send_text("Аллергия на лак");
    user.wait_for_text("Комментарий: Аллергия на лак", WAIT)
        .await;
    press_label(&user, "Подтвердить").await;
    user.wait_for_text("вы записаны", WAIT).await;

    let records = yc.active_records();
    assert_eq!(records.len(), 1, "one appointment: {records:#?}");
    assert_eq!(records[0].service_ids(), [101, 201]);
    assert_eq!(records[0].staff_id, 12);
    assert_eq!(records[0].length_sec, 150 * 60);
    assert!(
        records[0]
            .comment
            .starts_with("Аллергия на лак\nzapis: telegram"),
        "{}",
        records[0].comment
    );
    let store = Store::connect(&store_url).await.unwrap();
    let booking = store.bookings(&bid("default")).await.unwrap().remove(0);
    assert_eq!(booking.service_id, "101+201");
    assert_eq!(booking.service_name, "Женская стрижка + Маникюр");
    assert_eq!(booking.duration_min, 150);
    service.stop();
}
