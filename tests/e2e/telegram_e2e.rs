//! The real `zapis run` binary against a fake Telegram Bot API over HTTP: a client arrives from a
//! `/start src_landing` deep link, books a slot in the sandbox salon, survives a restart of the
//! service in the middle of the conversation, and cancels the booking from "my bookings".

use crate::support;
use crate::support::bid;

use support::app::Settings;
use support::e2e::{Service, WAIT, keyboard, payload, press_kind, press_label};
use support::fake_telegram::FakeTelegram;
use zapis::domain::BookingStatus;
use zapis::store::Store;
use zapis::store::test_support::raw_pool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_books_from_a_deep_link_survives_a_restart_and_cancels() {
    let fake = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("zapis.db");
    let store_url = format!("sqlite://{}", db.display());
    let config = Settings::single(&store_url, "Салон «Лилия»")
        .set("business.address", "Москва, ул. Пушкина, 10")
        .telegram(&fake)
        .write_in(dir.path());

    let service = Service::start(&config);
    let user = fake.user(4242);
    user.send_text("/start src_landing");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    press_label(&user, "Записаться").await;
    press_label(&user, "Женская стрижка").await;
    let masters = keyboard(&user, |m| {
        m.labels().iter().any(|l| l.contains("Любой мастер"))
    })
    .await;

    // The service restarts between two steps; the conversation picks up where it was.
    service.stop();
    let service = Service::start(&config);
    let master_button = masters
        .buttons
        .iter()
        .flatten()
        .find(|b| b.label.contains("Любой мастер"))
        .unwrap()
        .data
        .clone();
    user.press_on(masters.message_id, &master_button);
    press_kind(&user, "d:").await;
    let times = press_kind(&user, "t:").await;
    let picked = times
        .buttons
        .iter()
        .flatten()
        .find(|b| payload(&b.data).starts_with("t:"))
        .unwrap()
        .label
        .clone();
    // The personal-data consent comes before the phone prompt, and a contact shared on it is
    // not taken as the phone.
    let consent = user.wait_for_text("персональных данных", WAIT).await;
    assert!(support::e2e::is_consent(&consent), "{consent:#?}");
    assert!(!consent.requests_contact(), "{consent:#?}");
    assert!(
        !user.history().iter().any(|m| m.requests_contact()),
        "the phone was asked before the consent: {:#?}",
        user.history()
    );
    user.share_contact("+7 912 345-67-89");
    let refused = user.wait_for_text("Номер не сохранён", WAIT).await;
    assert!(support::e2e::is_consent(&refused), "{refused:#?}");
    support::e2e::agree(&user).await;
    user.wait_for_reply(|m| m.requests_contact(), WAIT).await;
    user.share_contact("+7 912 345-67-89");
    user.wait_for_text("имя", WAIT).await;
    user.send_text("Анна");
    user.wait_for_text("Проверьте запись", WAIT).await;
    press_label(&user, "Подтвердить").await;
    let done = user.wait_for_text("вы записаны", WAIT).await;
    assert!(
        done.text.contains(&picked),
        "the confirmation names the picked time {picked}: {}",
        done.text
    );

    let store = Store::connect(&store_url).await.unwrap();
    let bookings = store.bookings(&bid("default")).await.unwrap();
    assert_eq!(bookings.len(), 1, "{bookings:#?}");
    let booking = &bookings[0];
    assert_eq!(booking.status, BookingStatus::Booked);
    assert_eq!(booking.source.payload.as_deref(), Some("src_landing"));
    assert_eq!(booking.source.channel, zapis::domain::Channel::Telegram);
    assert_eq!(booking.client_phone.as_str(), "+79123456789");
    assert_eq!(booking.client_name, "Анна");
    assert_eq!(booking.service_name, "Женская стрижка");
    let local = booking
        .start
        .with_timezone(&chrono_tz::Europe::Moscow)
        .format("%H:%M")
        .to_string();
    assert_eq!(local, picked);
    let record = booking
        .external_id
        .clone()
        .expect("the schedule confirmed a record");
    // The agreement is on the client's card, given before the booking was made.
    let (consent_at, version): (Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT consent_at, consent_version FROM clients WHERE phone = '+79123456789'",
    )
    .fetch_one(raw_pool(&store))
    .await
    .unwrap();
    let consent_at = consent_at.expect("consent_at is stored");
    assert!(
        consent_at <= booking.created_at.timestamp_millis(),
        "agreed at {consent_at}, booked at {}",
        booking.created_at
    );
    assert!(
        version.as_deref().is_some_and(|v| v.starts_with("ru-")),
        "{version:?}"
    );

    press_label(&user, "Мои записи").await;
    press_label(&user, "Отменить").await;
    press_label(&user, "Да, отменить").await;
    user.wait_for_text("Запись отменена", WAIT).await;

    let booking = store
        .booking(&booking.business_id, &booking.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(booking.status, BookingStatus::CancelledByClient);
    let status: String = sqlx::query_scalar("SELECT status FROM sandbox_records WHERE id = $1")
        .bind(record.as_str())
        .fetch_one(raw_pool(&store))
        .await
        .unwrap();
    assert_eq!(status, "cancelled");
    // Every callback was answered, so no client was left with a spinning button.
    assert!(fake.calls_of("answercallbackquery").len() >= 8);
    service.stop();
}

/// The same journey with `[booking] system = "dikidi"`: the record appears in the fake Dikidi,
/// the chat's cancellation removes it there, and when Dikidi's payloads change shape the client
/// is told to call the business instead of being shown a generic error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_books_and_cancels_in_dikidi_and_is_told_to_call_when_dikidi_changes() {
    use support::fake_dikidi::FakeDikidi;

    let fake = FakeTelegram::start().await;
    let dikidi = FakeDikidi::start(chrono_tz::Europe::Moscow).await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = Settings::single(&store_url, "Салон «Лилия»")
        .set("business.phone", "+7 495 123-45-67")
        .dikidi(&dikidi)
        .set("booking.dikidi.rate_limit_per_second", 7)
        .telegram(&fake)
        .write_in(dir.path());

    let service = Service::start(&config);
    let user = fake.user(4343);
    user.send_text("/start src_dikidi");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    press_label(&user, "Записаться").await;
    press_label(&user, "Женская стрижка").await;
    press_label(&user, "Любой мастер").await;
    press_kind(&user, "d:").await;
    press_kind(&user, "t:").await;
    support::e2e::agree(&user).await;
    user.wait_for_reply(|m| m.requests_contact(), WAIT).await;
    user.share_contact("+7 912 345-67-89");
    user.wait_for_text("имя", WAIT).await;
    user.send_text("Анна");
    user.wait_for_text("Проверьте запись", WAIT).await;
    press_label(&user, "Подтвердить").await;
    user.wait_for_text("вы записаны", WAIT).await;

    let records = dikidi.records();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].phone, "+79123456789");
    assert!(
        records[0].comment.contains("start=src_dikidi"),
        "{:?}",
        records[0]
    );
    let store = Store::connect(&store_url).await.unwrap();
    let booking = store.bookings(&bid("default")).await.unwrap().remove(0);
    assert_eq!(
        booking.external_id.as_deref(),
        Some(records[0].id.to_string().as_str())
    );

    press_label(&user, "Мои записи").await;
    press_label(&user, "Отменить").await;
    press_label(&user, "Да, отменить").await;
    user.wait_for_text("Запись отменена", WAIT).await;
    assert!(dikidi.records()[0].cancelled, "cancelled in Dikidi too");

    dikidi.set_changed_shape(true);
    user.send_text("/start");
    // Wait for the fresh greeting, so the press lands on it and not on an older keyboard.
    keyboard(&user, |m| m.text.contains("Здравствуйте")).await;
    press_label(&user, "Записаться").await;
    press_label(&user, "Женская стрижка").await;
    press_label(&user, "Любой мастер").await;
    let told = user
        .wait_for_text("Онлайн-запись сейчас недоступна", WAIT)
        .await;
    assert!(told.text.contains("+7 495 123-45-67"), "{}", told.text);
    service.stop();
}

/// Dikidi pushes nothing, so the poll is the only way a salon's cancellation reaches us: the
/// next poll after it cancels our booking and tells the client; a payload that changes shape
/// raises one alert in the admin chat, and its recovery one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dikidi_changes_reach_the_client_by_polling_and_drift_alerts_the_admin() {
    use support::e2e::book_first_slot;
    use support::fake_dikidi::FakeDikidi;

    let fake = FakeTelegram::start().await;
    let dikidi = FakeDikidi::start(chrono_tz::Europe::Moscow).await;
    let admin = fake.user(-4700);
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = Settings::single(&store_url, "Салон «Лилия»")
        .set("business.phone", "+7 495 123-45-67")
        .dikidi(&dikidi)
        .set("booking.dikidi.rate_limit_per_second", 7)
        .set("booking.dikidi.poll_interval_secs", 1)
        .set("booking.dikidi.poll_jitter_secs", 0)
        .telegram(&fake)
        .set("sync.poll", "100ms")
        .set("alerts.telegram_chat_id", -4700)
        .write_in(dir.path());
    let service = Service::start(&config);
    let user = fake.user(4344);
    user.send_text("/start");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    book_first_slot(&user, "Женская стрижка", "+7 912 345-67-89", "Анна").await;
    user.wait_for_text("вы записаны", WAIT).await;
    let record = dikidi.records()[0].id.to_string();

    // Dikidi lists the cancelled record as deleted: the positive signal polling acts on.
    dikidi.mark_deleted(true);
    dikidi.salon_cancels(&record);
    let told = user.wait_for_text("Салон отменил", WAIT).await;
    assert!(told.text.contains("Женская стрижка"), "{}", told.text);
    let store = Store::connect(&store_url).await.unwrap();
    let booking = store.bookings(&bid("default")).await.unwrap().remove(0);
    assert_eq!(
        booking.status,
        zapis::domain::BookingStatus::CancelledByBusiness
    );

    // Polling needs an upcoming booking to read; a second one keeps it busy.
    user.send_text("/start");
    keyboard(&user, |m| m.text.contains("Здравствуйте")).await;
    book_first_slot(&user, "Маникюр", "+7 912 345-67-89", "Анна").await;
    user.wait_for_text("вы записаны", WAIT).await;
    dikidi.set_changed_shape(true);
    admin.wait_for_text("Dikidi's API changed", WAIT).await;
    dikidi.set_changed_shape(false);
    admin.wait_for_text("delivering again", WAIT).await;
    let alerts = admin
        .history()
        .iter()
        .filter(|m| m.text.contains("API changed"))
        .count();
    assert_eq!(alerts, 1, "one alert per episode");
    service.stop();
}

/// `[log] format = "json"` gives a collector one JSON object a line; the text format written
/// to a file carries no colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_json_lines_for_a_collector_and_plain_text_in_a_file() {
    let fake = FakeTelegram::start().await;
    for format in ["json", "text"] {
        let dir = tempfile::tempdir().unwrap();
        let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
        let config = Settings::single(&store_url, "Салон «Лилия»")
            .telegram(&fake)
            .set("log.format", format)
            .write_in(dir.path());
        let log = dir.path().join("zapis.log");
        let service = Service::start_logging_at(&config, &log, "info");
        let user = fake.user(if format == "json" { 5101 } else { 5102 });
        user.send_text("/start");
        user.wait_for_text("Салон «Лилия»", WAIT).await;
        service.stop();

        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            !text.contains('\u{1b}'),
            "no escape codes in a file: {text}"
        );
        assert!(text.contains("zapis is running"), "{text}");
        if format == "json" {
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            let running = lines
                .iter()
                .find(|l| l["fields"]["message"] == "zapis is running")
                .expect("the start line");
            assert_eq!(running["level"], "INFO");
            assert_eq!(running["fields"]["business"], "Салон «Лилия»");
            assert!(running["timestamp"].is_string());
            assert!(
                lines
                    .iter()
                    .any(|l| l["fields"]["message"] == "Telegram input"
                        && l["fields"]["chat"] == "5101"),
                "{text}"
            );
        } else {
            assert!(text.lines().all(|l| !l.starts_with('{')), "{text}");
        }
    }
}

/// `/metrics` tells business volumes, so the webhook address serves it only when
/// `[http] metrics = true`; `metrics_listen` serves it alone on an address of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_refused_on_the_public_address_unless_enabled() {
    let fake = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let (port, metrics_port) = (support::e2e::free_port(), support::e2e::free_port());
    let config = Settings::single(&store_url, "Салон «Лилия»")
        .telegram(&fake)
        .http(port, "webhook-secret-0123456789")
        .set("http.metrics_listen", format!("127.0.0.1:{metrics_port}"))
        .write_in(dir.path());
    let service = Service::start(&config);
    let user = fake.user(5201);
    user.send_text("/start");
    user.wait_for_text("Салон «Лилия»", WAIT).await;

    let get = |url: String| async move {
        let r = reqwest::get(url).await.expect("the service answers");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    };
    let (status, _) = get(format!("http://127.0.0.1:{port}/metrics")).await;
    assert_eq!(status, 404, "not on the webhook address");
    let (status, _) = get(format!("http://127.0.0.1:{port}/health")).await;
    assert_eq!(status, 200, "the old health check stays");
    let (status, _) = get(format!(
        "http://127.0.0.1:{metrics_port}/webhooks/yclients/x"
    ))
    .await;
    assert_eq!(status, 404, "the metrics address serves nothing else");
    let (status, text) = get(format!("http://127.0.0.1:{metrics_port}/metrics")).await;
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text");
    let starts: f64 = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "zapis_dialog_starts_total"
                && s.labels.get("channel") == Some("telegram")
                && s.labels.get("source") == Some("direct")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(starts, 1.0, "{text}");
    service.stop();
}

/// `[privacy] consent = false`: the start warns that the consent is not asked, the phone is
/// asked straight after the time, and the client's card carries no consent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_consent_off_the_start_warns_and_the_phone_is_asked_at_once() {
    let fake = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = Settings::single(&store_url, "Салон «Лилия»")
        .set("privacy.consent", false)
        .telegram(&fake)
        .write_in(dir.path());
    let log = dir.path().join("zapis.log");
    let service = Service::start_logging_to(&config, &log);
    let user = fake.user(4545);
    user.send_text("/start");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    press_label(&user, "Записаться").await;
    press_label(&user, "Женская стрижка").await;
    press_label(&user, "Любой мастер").await;
    press_kind(&user, "d:").await;
    press_kind(&user, "t:").await;
    user.wait_for_reply(|m| m.requests_contact(), WAIT).await;
    assert!(
        !user.history().iter().any(support::e2e::is_consent),
        "{:#?}",
        user.history()
    );
    user.send_text("+7 912 345-67-89");
    user.wait_for_text("имя", WAIT).await;
    user.send_text("Анна");
    user.wait_for_text("Проверьте запись", WAIT).await;
    press_label(&user, "Подтвердить").await;
    user.wait_for_text("вы записаны", WAIT).await;
    service.stop();

    let text = std::fs::read_to_string(&log).unwrap();
    let warning = text
        .lines()
        .find(|l| l.contains("privacy.consent = false"))
        .unwrap_or_else(|| panic!("no warning at start: {text}"));
    assert!(warning.contains("WARN"), "{warning}");
    let store = Store::connect(&store_url).await.unwrap();
    let (consent_at, version): (Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT consent_at, consent_version FROM clients WHERE phone = '+79123456789'",
    )
    .fetch_one(raw_pool(&store))
    .await
    .unwrap();
    assert_eq!((consent_at, version), (None, None));
}

/// `booking.change_cutoff` through the real binary: of a client's two visits, the one inside
/// the cut-off shows the business phone to call and no cancel or move buttons (a cancellation
/// asked before the cut-off and answered inside it cancels nothing), while the one outside it
/// is still cancelled from the chat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_the_change_cutoff_my_bookings_offers_a_call_and_outside_it_cancels() {
    let fake = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = dir.path().join("zapis.toml");
    let write_config = |cutoff: Option<&str>| {
        let settings = Settings::single(&store_url, "Салон «Лилия»")
            .set("business.phone", "+7 495 123-45-67")
            .telegram(&fake);
        match cutoff {
            Some(cutoff) => settings.set("booking.change_cutoff", cutoff),
            None => settings,
        }
        .write(&config);
    };
    write_config(None);
    let service = Service::start(&config);
    let user = fake.user(5151);

    // A visit on the first free day of this week, then one in the next week.
    user.send_text("/start");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    support::e2e::book_first_slot(&user, "Женская стрижка", "+7 912 345-67-89", "Анна").await;
    user.wait_for_text("вы записаны", WAIT).await;
    user.send_text("/start");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    press_label(&user, "Записаться").await;
    press_label(&user, "Женская стрижка").await;
    press_label(&user, "Любой мастер").await;
    press_kind(&user, "w:1").await;
    keyboard(&user, |m| {
        m.buttons
            .iter()
            .flatten()
            .any(|b| payload(&b.data) == "w:0")
    })
    .await;
    press_kind(&user, "d:").await;
    press_kind(&user, "t:").await;
    user.wait_for_text("Проверьте запись", WAIT).await;
    press_label(&user, "Подтвердить").await;
    user.wait_for_text("вы записаны", WAIT).await;
    // Before the cut-off is set the client opens the near visit's cancellation and leaves
    // the question unanswered.
    press_label(&user, "Мои записи").await;
    press_label(&user, "Отменить 1").await;
    let asked = keyboard(&user, |m| {
        m.labels().iter().any(|l| l.contains("Да, отменить"))
    })
    .await;
    service.stop();

    let store = Store::connect(&store_url).await.unwrap();
    let mut bookings = store.bookings(&bid("default")).await.unwrap();
    assert_eq!(bookings.len(), 2, "{bookings:#?}");
    bookings.sort_by_key(|b| b.start);
    let (near, far) = (bookings[0].clone(), bookings[1].clone());
    // The cut-off falls between the two visits: half an hour beyond the nearer one.
    let minutes = (near.start - chrono::Utc::now()).num_minutes() + 30;
    assert!(
        chrono::Duration::minutes(minutes) < far.start - chrono::Utc::now(),
        "the visits are too close together to split: {} and {}",
        near.start,
        far.start
    );
    write_config(Some(&format!("{minutes}m")));
    let service = Service::start(&config);

    // The question asked before the cut-off, answered inside it, cancels nothing.
    let yes = asked
        .buttons
        .iter()
        .flatten()
        .find(|b| b.label.contains("Да, отменить"))
        .unwrap()
        .data
        .clone();
    user.press_on(asked.message_id, &yes);
    let refused = user.wait_for_text("уже скоро", WAIT).await;
    assert!(
        !refused.labels().iter().any(|l| l.contains("Да, отменить")),
        "{refused:#?}"
    );

    user.send_text("/start");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    press_label(&user, "Мои записи").await;
    let mine = user.wait_for_text("Позвоните нам", WAIT).await;
    assert!(
        mine.text.contains("+7 495 123-45-67"),
        "the business phone to call: {}",
        mine.text
    );
    let changes: Vec<&str> = mine
        .buttons
        .iter()
        .flatten()
        .map(|b| payload(&b.data))
        .filter(|p| p.starts_with("C:") || p.starts_with("R:"))
        .collect();
    assert_eq!(
        changes,
        [format!("C:{}", far.id), format!("R:{}", far.id)],
        "only the visit outside the cut-off can be cancelled or moved: {mine:#?}"
    );
    press_label(&user, "Отменить").await;
    press_label(&user, "Да, отменить").await;
    user.wait_for_text("Запись отменена", WAIT).await;

    let status = |id: zapis::domain::BookingId| {
        let store = &store;
        async move {
            store
                .booking(&bid("default"), &id)
                .await
                .unwrap()
                .unwrap()
                .status
        }
    };
    assert_eq!(
        status(far.id.clone()).await,
        BookingStatus::CancelledByClient
    );
    assert_eq!(status(near.id.clone()).await, BookingStatus::Booked);
    service.stop();
}

/// Two `zapis run` on one store for one bot: one polls it and the other waits, so Telegram never
/// sees two pollers (it would answer 409); the poller SIGKILLed, the other takes the bot over
/// within the lease and answers what the client said meanwhile, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_instances_one_polls_the_bot_and_the_other_takes_over_when_it_dies() {
    use std::time::Duration;
    let fake = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = Settings::single(&store_url, "Салон «Лилия»")
        .telegram(&fake)
        .write_in(dir.path());
    let first = Service::start(&config);
    let ann = fake.user(7001);
    ann.send_text("/start");
    ann.wait_for_text("Салон «Лилия»", WAIT).await;
    let second = Service::start(&config);
    // Both running for a while: several polls' worth, and the second's first tries.
    for n in 0..3 {
        let user = fake.user(7100 + n);
        user.send_text("/start");
        user.wait_for_text("Салон «Лилия»", WAIT).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(fake.conflicts(), 0, "two processes polled the bot at once");

    drop(first); // SIGKILL: no lease given up
    let bob = fake.user(7201);
    bob.send_text("/start");
    // The lease outlives three rounds of 5 s; the waiting instance looks every 5 s.
    bob.wait_for_text("Салон «Лилия»", Duration::from_secs(40))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let greetings = bob
        .history()
        .iter()
        .filter(|m| m.text.contains("Салон «Лилия»"))
        .count();
    assert_eq!(greetings, 1, "the update was handled once");
    assert_eq!(fake.conflicts(), 0);
    second.stop();
}

/// Webhook mode: the bot registers its webhook with the secret instead of polling; Telegram's
/// posts (here: the fake's waiting updates, posted as Telegram would) are answered, a post
/// without the secret is refused and changes nothing, and a re-sent update is answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_webhook_mode_telegram_posts_updates_and_nothing_polls() {
    use std::time::Duration;
    const HOOK_SECRET: &str = "tg-hook-secret_0123456789";
    const HTTP_SECRET: &str = "http-secret-0123456789";
    let fake = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::e2e::free_port();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = Settings::single(&store_url, "Салон «Лилия»")
        .set("sync.poll", "100ms")
        .http(port, HTTP_SECRET)
        .telegram(&fake)
        .set("telegram.mode", "webhook")
        .set(
            "telegram.webhook_url",
            format!("https://hub.example/webhooks/telegram/{HTTP_SECRET}"),
        )
        .set("telegram.webhook_secret", HOOK_SECRET)
        .write_in(dir.path());
    let service = Service::start(&config);
    let set = fake.wait_for_calls("setwebhook", 1, WAIT).await;
    assert_eq!(
        set[0]["url"],
        format!("https://hub.example/webhooks/telegram/{HTTP_SECRET}")
    );
    assert_eq!(set[0]["secret_token"], HOOK_SECRET);
    let url = format!("http://127.0.0.1:{port}/webhooks/telegram/{HTTP_SECRET}");
    let http = reqwest::Client::new();
    let post = |update: serde_json::Value, secret: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(url)
                .header("x-telegram-bot-api-secret-token", secret)
                .json(&update)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let user = fake.user(4343);
    user.send_text("/start");
    let update = fake.take_updates().remove(0);
    assert_eq!(post(update.clone(), "wrong-secret").await, 401);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        user.history().is_empty(),
        "a post without the secret was read"
    );
    assert_eq!(post(update.clone(), HOOK_SECRET).await, 200);
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    // Telegram re-sends when our answer is lost: one greeting still.
    assert_eq!(post(update, HOOK_SECRET).await, 200);
    // Button presses arrive the same way, as Telegram pushes them.
    let pushing = async {
        loop {
            for update in fake.take_updates() {
                post(update, HOOK_SECRET).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let pressing = async {
        press_label(&user, "Записаться").await;
        press_label(&user, "Женская стрижка").await;
    };
    tokio::select! {
        () = pushing => {}
        () = pressing => {}
    }
    let greetings = user
        .history()
        .iter()
        .filter(|m| m.text.contains("Здравствуйте"))
        .count();
    assert_eq!(greetings, 1, "the re-sent update was answered once");
    assert!(fake.calls_of("getupdates").is_empty(), "nothing polled");
    assert_eq!(fake.conflicts(), 0);
    service.stop();
}
