//! The real `zapis run` binary booking into a fake Dikidi from a fake Telegram chat, the way
//! Dikidi's widget books: a session opened before the reservation and carried on every step,
//! the salon's SMS code relayed by the client in chat, a captcha never attempted, and polling
//! that never cancels a booking because `records_info` left it out.

use crate::support;
use crate::support::bid;

use std::path::PathBuf;

use support::app::Settings;
use support::e2e::{Service, WAIT, book_first_slot, keyboard, press_label};
use support::fake_dikidi::FakeDikidi;
use support::fake_telegram::{FakeTelegram, FakeUser};
use zapis::domain::{Booking, BookingStatus};
use zapis::store::Store;

const ADMIN: i64 = -4800;
const PHONE: &str = "+7 495 123-45-67";

struct World {
    tg: FakeTelegram,
    dikidi: FakeDikidi,
    dir: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        World {
            tg: FakeTelegram::start().await,
            dikidi: FakeDikidi::start(chrono_tz::Europe::Moscow).await,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn store_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("zapis.db").display())
    }

    fn run(&self) -> Service {
        let config: PathBuf = Settings::single(&self.store_url(), "Салон «Лилия»")
            .set("business.phone", PHONE)
            .dikidi(&self.dikidi)
            .set("booking.dikidi.rate_limit_per_second", 7)
            .set("booking.dikidi.poll_interval_secs", 1)
            .set("booking.dikidi.poll_jitter_secs", 0)
            .telegram(&self.tg)
            .set("sync.poll", "100ms")
            .set("alerts.telegram_chat_id", ADMIN)
            .write_in(self.dir.path());
        Service::start(&config)
    }

    async fn store(&self) -> Store {
        Store::connect(&self.store_url()).await.unwrap()
    }

    async fn bookings(&self) -> Vec<Booking> {
        self.store().await.bookings(&bid("default")).await.unwrap()
    }

    async fn journal(&self, booking: &zapis::domain::BookingId) -> Vec<(String, String)> {
        self.store()
            .await
            .booking_events(&bid("default"), booking)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.detail))
            .collect()
    }

    async fn hello(&self, user: &FakeUser) {
        user.send_text("/start");
        keyboard(user, |m| m.text.contains("Здравствуйте")).await;
    }
}

fn count(user: &FakeUser, needle: &str) -> usize {
    user.history()
        .iter()
        .filter(|m| m.text.contains(needle))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_opens_a_widget_session_and_carries_it_on_every_step() {
    let w = World::start().await;
    let service = w.run();
    let user = w.tg.user(5101);
    w.hello(&user).await;
    book_first_slot(&user, "Женская стрижка", "+7 912 345-67-89", "Анна").await;
    user.wait_for_text("вы записаны", WAIT).await;

    let records = w.dikidi.records();
    assert_eq!(records.len(), 1, "{records:#?}");
    let log = w.dikidi.log();
    let steps: Vec<_> = log
        .iter()
        .filter(|l| {
            ["/time_reservation/", "/check/", "/record/"]
                .iter()
                .any(|s| l.path.ends_with(s))
        })
        .collect();
    assert_eq!(steps.len(), 3, "{steps:#?}");
    let session = steps[0].cookie.clone().expect("the widget session");
    assert!(steps.iter().all(|l| l.cookie.as_deref() == Some(&session)));
    let form = &w.dikidi.record_forms()[0];
    let get = |k: &str| form.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
    assert_eq!(get("session"), Some(session.as_str()));
    assert_eq!(get("action_source"), Some("direct_link"));
    assert_eq!(get("is_show_all_times"), Some("3"));
    assert_eq!(get("active_cart_id"), Some("0"));
    assert_eq!(get("captcha_token"), Some(""));
    let booking = w.bookings().await.remove(0);
    assert_eq!(booking.status, BookingStatus::Booked);
    assert_eq!(
        booking.external_id.as_deref(),
        Some(records[0].id.to_string().as_str())
    );
    service.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_salons_sms_code_is_asked_in_chat_and_completes_the_booking() {
    let w = World::start().await;
    w.dikidi.demand_code(true);
    let service = w.run();
    let user = w.tg.user(5102);
    w.hello(&user).await;
    book_first_slot(&user, "Женская стрижка", "+7 912 345-67-89", "Анна").await;
    let asked = user.wait_for_text("пришёл код", WAIT).await;
    assert!(asked.text.contains("+7 912 345-67-89"), "{}", asked.text);
    assert_eq!(w.dikidi.sms().len(), 1);
    assert!(w.dikidi.records().is_empty());
    assert_eq!(w.bookings().await[0].status, BookingStatus::Requested);

    user.send_text("0000");
    user.wait_for_text("Код не подошёл", WAIT).await;
    press_label(&user, "Прислать код ещё раз").await;
    user.wait_for_text("Отправили код ещё раз", WAIT).await;
    assert_eq!(w.dikidi.sms().len(), 2);
    let code = w.dikidi.sms()[1].1.clone();
    user.send_text(&code);
    user.wait_for_text("вы записаны", WAIT).await;

    let records = w.dikidi.records();
    assert_eq!(records.len(), 1, "one record for one booking");
    let bookings = w.bookings().await;
    assert_eq!(bookings.len(), 1);
    assert_eq!(bookings[0].status, BookingStatus::Booked);
    assert_eq!(
        bookings[0].external_id.as_deref(),
        Some(records[0].id.to_string().as_str())
    );
    // The codes reached Dikidi and nothing else: not the chat log.
    let lines = w
        .store()
        .await
        .chat_lines(
            &bid("default"),
            "telegram:5102",
            chrono::Utc::now() - chrono::Duration::hours(1),
            chrono::Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    assert!(lines.iter().any(|l| l.text == "[code]"), "{lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| !l.text.contains(&code) && !l.text.contains("0000")),
        "{lines:#?}"
    );
    service.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_wrong_codes_end_with_please_call_and_no_record() {
    let w = World::start().await;
    w.dikidi.demand_code(true);
    let service = w.run();
    let user = w.tg.user(5103);
    w.hello(&user).await;
    book_first_slot(&user, "Женская стрижка", "+7 912 345-67-89", "Анна").await;
    user.wait_for_text("пришёл код", WAIT).await;
    for wrong in ["1111", "2222"] {
        user.send_text(wrong);
        user.wait_for_text("Код не подошёл", WAIT).await;
    }
    user.send_text("3333");
    let told = user.wait_for_text("запись не завершена", WAIT).await;
    assert!(told.text.contains(PHONE), "{}", told.text);
    assert!(w.dikidi.records().is_empty());
    let booking = w.bookings().await.remove(0);
    assert_eq!(booking.status, BookingStatus::Failed);
    assert_eq!(w.dikidi.sms().len(), 1, "no code was asked for again");
    service.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captcha_is_never_attempted_the_client_is_told_to_call_and_the_admin_why() {
    let w = World::start().await;
    w.dikidi.demand_captcha(true);
    let admin = w.tg.user(ADMIN);
    let service = w.run();
    let user = w.tg.user(5104);
    w.hello(&user).await;
    book_first_slot(&user, "Женская стрижка", "+7 912 345-67-89", "Анна").await;
    let told = user
        .wait_for_text("Онлайн-запись сейчас недоступна", WAIT)
        .await;
    assert!(told.text.contains(PHONE), "{}", told.text);
    let alert = admin.wait_for_text("captcha", WAIT).await;
    let booking = w.bookings().await.remove(0);
    assert!(alert.text.contains(booking.id.as_str()), "{}", alert.text);
    assert_eq!(booking.status, BookingStatus::Failed);
    let journal = w.journal(&booking.id).await;
    assert!(
        journal.iter().any(|(kind, _)| kind == "captcha"),
        "{journal:?}"
    );
    // One try, the token left empty: nothing was done to get past it.
    let forms = w.dikidi.record_forms();
    assert_eq!(forms.len(), 1);
    assert!(
        forms[0]
            .iter()
            .any(|(k, v)| k == "captcha_token" && v.is_empty())
    );
    assert!(w.dikidi.records().is_empty());
    service.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_left_out_of_records_info_cancel_nothing_and_alert_the_admin() {
    let w = World::start().await;
    let admin = w.tg.user(ADMIN);
    let service = w.run();
    let user = w.tg.user(5105);
    w.hello(&user).await;
    book_first_slot(&user, "Женская стрижка", "+7 912 345-67-89", "Анна").await;
    user.wait_for_text("вы записаны", WAIT).await;
    w.hello(&user).await;
    book_first_slot(&user, "Маникюр", "+7 912 345-67-89", "Анна").await;
    user.wait_for_text("вы записаны", WAIT).await;

    // Dikidi answers `[]` for our ids, as an anonymous caller might be answered.
    w.dikidi.records_info_empty(true);
    let alert = admin.wait_for_text("records_info", WAIT).await;
    assert!(alert.text.contains("without 2"), "{}", alert.text);
    assert!(
        alert.text.contains("Nothing was cancelled"),
        "{}",
        alert.text
    );
    // A few more polls: no second alert for the same records, no cancellation, no message.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(count(&admin, "records_info"), 1);
    assert_eq!(count(&user, "отменил"), 0);
    let bookings = w.bookings().await;
    assert_eq!(bookings.len(), 2);
    for b in &bookings {
        assert_eq!(b.status, BookingStatus::Booked, "{b:?}");
        let journal = w.journal(&b.id).await;
        assert!(
            journal.iter().any(|(kind, _)| kind == "records-missing"),
            "{journal:?}"
        );
    }
    assert!(w.dikidi.records().iter().all(|r| !r.cancelled));

    // A positive signal still cancels, and the client is told once.
    w.dikidi.records_info_empty(false);
    w.dikidi.mark_deleted(true);
    let first = w.dikidi.records()[0].id.to_string();
    w.dikidi.salon_cancels(&first);
    user.wait_for_text("Салон отменил", WAIT).await;
    let bookings = w.bookings().await;
    let cancelled: Vec<_> = bookings
        .iter()
        .filter(|b| b.status == BookingStatus::CancelledByBusiness)
        .collect();
    assert_eq!(cancelled.len(), 1, "{bookings:#?}");
    assert_eq!(cancelled[0].external_id.as_deref(), Some(first.as_str()));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(count(&user, "Салон отменил"), 1);
    service.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probe_opens_a_widget_session_and_reserves_nothing() {
    let world = World::start().await;
    let config: PathBuf = Settings::single(&world.store_url(), "Салон")
        .dikidi(&world.dikidi)
        .write_in(world.dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["check", "--probe", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.contains("dikidi") && l.contains("widget session"))
        .unwrap_or_else(|| panic!("no session row: {text}"));
    assert!(row.contains(" ok "), "{row}");
    assert!(row.contains("cookie_name"), "{row}");
    assert!(row.contains("session hash of"), "{row}");
    for step in ["time_reservation", "check", "record"] {
        let hits = world
            .dikidi
            .log()
            .iter()
            .filter(|l| l.path.contains(&format!("/{step}")))
            .count();
        assert_eq!(hits, 0, "the probe must not call {step}");
    }
}
