//! One `zapis run` for several businesses, through the real binary: a deployment file with
//! `[businesses]` and a file per business, each with its own bot and its own CRM.
//! - each business's bookings land in its own CRM and nowhere else, under its own id;
//! - each business's webhooks are at `/webhooks/<id>/<source>/<its secret>`: another business's
//!   secret, or the single-business path, is 404;
//! - a business file added while the service runs is picked up on SIGHUP, and a broken one is
//!   refused with its file and key in the log while the others keep answering;
//! - `zapis business list` shows each business or why its file is refused.

use crate::support;
use crate::support::bid;
use support::e2e::{free_port, until};

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::json;
use support::app::Settings;
use support::e2e::{Service, WAIT, book_first_slot};
use support::fake_amocrm::FakeAmo;
use support::fake_bitrix24::{self as b24_fake, FakeBitrix};
use support::fake_telegram::{FakeTelegram, FakeUser};
use zapis::store::Store;

const SECRET: &str = "deployment-secret-0123456789";

/// A business's own file, with its bot (a fake started for `token`).
fn business(name: &str, tg: &FakeTelegram, token: &str) -> Settings {
    Settings::empty()
        .set("business.name", name)
        .set("business.timezone", "Europe/Moscow")
        .telegram(tg)
        .set("telegram.token", token)
}

/// Bitrix24 in lead mode, its events signed.
fn bitrix24(settings: Settings, fake: &FakeBitrix) -> Settings {
    settings
        .bitrix24(fake)
        .set("crm.bitrix24.mode", "lead")
        .set("crm.bitrix24.booking_id_field", b24_fake::BOOKING_FIELD)
        .set("crm.bitrix24.responsible_id", 5)
        .set(
            "crm.bitrix24.application_token",
            b24_fake::APPLICATION_TOKEN,
        )
}

async fn book(user: &FakeUser, greeting: &str, phone: &str) {
    user.send_text("/start");
    user.wait_for_text(greeting, WAIT).await;
    book_first_slot(user, "Женская стрижка", phone, "Анна").await;
    user.wait_for_text("вы записаны", WAIT).await;
}

async fn post(port: u16, path: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("leads%5Bstatus%5D%5B0%5D%5Bid%5D=1")
        .send()
        .await
        .expect("the request is answered")
        .status()
}

fn business_list(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["business", "list", "--config"])
        .arg(config)
        .env_remove("ZAPIS_BUSINESS")
        .output()
        .expect("zapis business list runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_business_books_into_its_own_crm_and_a_new_one_joins_on_sighup() {
    let (tg_a, tg_b, tg_c) = (
        FakeTelegram::start_for("111:AAA").await,
        FakeTelegram::start_for("222:BBB").await,
        FakeTelegram::start_for("333:CCC").await,
    );
    let amo = FakeAmo::start().await;
    let bitrix = FakeBitrix::start().await;
    let dir = tempfile::tempdir().expect("a folder");
    let folder = dir.path().join("businesses");
    std::fs::create_dir(&folder).expect("the businesses folder");
    let port = free_port();
    let config = dir.path().join("zapis.toml");
    Settings::empty()
        .set(
            "store.url",
            format!("sqlite://{}", dir.path().join("zapis.db").display()),
        )
        .set("sync.poll", "100ms")
        .http(port, SECRET)
        .set("businesses.dir", "businesses")
        .write(&config);
    business("Салон А", &tg_a, "111:AAA")
        .amocrm(&amo)
        .write(&folder.join("salon-a.toml"));
    bitrix24(business("Клиника Б", &tg_b, "222:BBB"), &bitrix).write(&folder.join("clinic-b.toml"));
    let log = dir.path().join("zapis.log");
    let service = Service::start_logging_at(&config, &log, "info");

    book(&tg_a.user(1001), "Салон А", "+7 912 000-00-01").await;
    book(&tg_b.user(2001), "Клиника Б", "+7 912 000-00-02").await;
    until("a lead in each CRM", || {
        amo.leads().len() == 1 && bitrix.leads().len() == 1
    })
    .await;
    // Nothing of one business reached the other's CRM, nor went twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(amo.leads().len(), 1);
    assert_eq!(bitrix.leads().len(), 1);
    let amo_phones = serde_json::to_string(&amo.contacts()).expect("json");
    assert!(amo_phones.contains("79120000001"), "{amo_phones}");
    assert!(!amo_phones.contains("79120000002"), "{amo_phones}");
    let b24_leads = serde_json::to_string(&bitrix.leads()).expect("json");
    assert!(!b24_leads.contains("79120000001"), "{b24_leads}");
    let store = Store::open_existing(&format!(
        "sqlite://{}",
        dir.path().join("zapis.db").display()
    ))
    .await
    .expect("the store");
    for (id, phone) in [("salon-a", "+79120000001"), ("clinic-b", "+79120000002")] {
        let rows = store.bookings(&bid(id)).await.expect("bookings");
        assert_eq!(rows.len(), 1, "{id}: {rows:?}");
        assert_eq!(rows[0].client_phone.as_str(), phone, "{id}");
    }

    // Each business's webhooks under its id and its own secret.
    let secret_of = |id: &str| {
        zapis::secrets::business_secret(&SECRET.into(), id)
            .expose_secret()
            .to_string()
    };
    let (a, b) = (secret_of("salon-a"), secret_of("clinic-b"));
    assert_ne!(a, b);
    assert_eq!(
        post(port, &format!("/webhooks/salon-a/amocrm/{a}")).await,
        200
    );
    assert_eq!(
        post(port, &format!("/webhooks/salon-a/amocrm/{b}")).await,
        404
    );
    assert_eq!(
        post(port, &format!("/webhooks/clinic-b/amocrm/{b}")).await,
        404,
        "not its CRM"
    );
    assert_eq!(post(port, &format!("/webhooks/amocrm/{SECRET}")).await, 404);
    assert_eq!(
        post(port, &format!("/webhooks/nobody/amocrm/{a}")).await,
        404
    );

    // A third business and a broken file, picked up without a restart.
    business("Студия В", &tg_c, "333:CCC").write(&folder.join("school-c.toml"));
    std::fs::write(
        folder.join("broken.toml"),
        "[business]\nname = \"Сломанный\"\ntimezone = \"Europe/Nowhere\"\n",
    )
    .expect("broken");
    service.signal("HUP");
    book(&tg_c.user(3001), "Студия В", "+7 912 000-00-03").await;
    // The others kept running through it.
    let again = tg_a.user(1002);
    again.send_text("/start");
    again.wait_for_text("Салон А", WAIT).await;
    let text = std::fs::read_to_string(&log).expect("the log");
    assert!(
        text.contains("broken.toml") && text.contains("business.timezone"),
        "the broken file is named with its key: {text}"
    );
    assert_eq!(amo.leads().len(), 1, "the new business has no CRM");
    assert_eq!(
        store.bookings(&bid("school-c")).await.expect("rows").len(),
        1
    );

    let list = business_list(&config);
    for id in ["salon-a", "clinic-b", "school-c"] {
        assert!(list.contains(id), "{list}");
    }
    assert!(
        list.contains("broken") && list.contains("refused"),
        "{list}"
    );
    assert!(!list.contains("111:AAA"), "no token in the list: {list}");

    // A changed file restarts its business alone; a removed one stops it.
    bitrix24(business("Клиника Бета", &tg_b, "222:BBB"), &bitrix)
        .write(&folder.join("clinic-b.toml"));
    std::fs::remove_file(folder.join("school-c.toml")).expect("school-c removed");
    service.signal("HUP");
    // Updates read before the restart are the old business's to answer: wait for the new one.
    until("clinic-b restarted under its new name", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Клиника Бета"))
    })
    .await;
    let renamed = tg_b.user(2002);
    renamed.send_text("/start");
    renamed.wait_for_text("Клиника Бета", WAIT).await;
    let gone = tg_c.user(3002);
    gone.send_text("/start");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        gone.history().is_empty(),
        "a removed business's bot still answers"
    );
    assert_eq!(
        post(port, &format!("/webhooks/clinic-b/bitrix24/{b}")).await,
        401,
        "clinic-b's routes still there (an unsigned event is refused, not unknown)"
    );
    let c = secret_of("school-c");
    assert_eq!(
        post(port, &format!("/webhooks/school-c/yclients/{c}")).await,
        404
    );
    service.stop();
}

/// The deployment an agency runs: three businesses (YClients + amoCRM, Dikidi + Bitrix24, a
/// school on AlfaCRM) served by two instances on one store (PostgreSQL when
/// ZAPIS_TEST_POSTGRES_URL is set). Each business's bookings land in its own fakes only; the
/// instance holding the bots is SIGKILLed and the other takes the bots and Dikidi's polling
/// over within a lease; nothing is lost or doubled, no bot is polled twice at once, and no
/// vendor's rate limit is exceeded across both instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_serve_three_businesses_and_one_survives_the_others_death() {
    use support::fake_alfacrm::{self as alfa, FakeAlfa};
    use support::fake_dikidi::FakeDikidi;
    use support::fake_yclients::{FakeSalon, FakeYclients};

    let (tg_a, tg_b, tg_c) = (
        FakeTelegram::start_for("111:AAA").await,
        FakeTelegram::start_for("222:BBB").await,
        FakeTelegram::start_for("333:CCC").await,
    );
    let yc = FakeYclients::start(FakeSalon::standard(777, chrono_tz::Europe::Moscow)).await;
    let amo = FakeAmo::start().await;
    let dikidi = FakeDikidi::start(chrono_tz::Europe::Moscow).await;
    let bitrix = FakeBitrix::start().await;
    let school = FakeAlfa::start().await;
    let dir = tempfile::tempdir().expect("a folder");
    let folder = dir.path().join("businesses");
    std::fs::create_dir(&folder).expect("the businesses folder");
    let store_url = match support::postgres_url().await {
        Some(url) => url,
        None => format!("sqlite://{}", dir.path().join("zapis.db").display()),
    };
    let (port_1, port_2) = (free_port(), free_port());
    let config = dir.path().join("zapis.toml");
    Settings::empty()
        .set("store.url", store_url.as_str())
        .set("sync.poll", "100ms")
        .http(port_1, SECRET)
        .set("businesses", json!({}))
        .write(&config);
    business("Салон А", &tg_a, "111:AAA")
        .yclients(&yc, 777)
        .amocrm(&amo)
        .write(&folder.join("salon-a.toml"));
    let clinic = business("Клиника Б", &tg_b, "222:BBB")
        .dikidi(&dikidi)
        .set("booking.dikidi.rate_limit_per_second", 7)
        .set("booking.dikidi.poll_interval_secs", 1)
        .set("booking.dikidi.poll_jitter_secs", 0);
    bitrix24(clinic, &bitrix).write(&folder.join("clinic-b.toml"));
    business("Школа В", &tg_c, "333:CCC")
        .set("business.kind", "school")
        .alfacrm(&school)
        .set("school.alfacrm.curator_id", 7)
        .set("school.alfacrm.lead_status_id", 1)
        .push(
            "school.courses",
            json!({
                "key": "python",
                "title": "Python для подростков",
                "alfacrm_group_ids": [alfa::GROUP_PYTHON],
            }),
        )
        .write(&folder.join("school-c.toml"));
    let first = Service::start_with_env(&config, &dir.path().join("one.log"), "warn", &[]);
    // The first instance is serving before the second starts, so it holds every bot.
    let hello = tg_a.user(1000);
    hello.send_text("/start");
    hello.wait_for_text("Салон А", WAIT).await;
    let listen_2 = format!("127.0.0.1:{port_2}");
    let second = Service::start_with_env(
        &config,
        &dir.path().join("two.log"),
        "warn",
        &[("ZAPIS_HTTP__LISTEN", &listen_2)],
    );

    let enrol = |user: FakeUser, phone: &'static str| async move {
        user.send_text("/start");
        user.wait_for_text("Школа В", WAIT).await;
        support::e2e::press_label(&user, "Записаться").await;
        support::e2e::press_label(&user, "Python для подростков").await;
        support::e2e::press_label(&user, "Python, вечерняя").await;
        support::e2e::agree(&user).await;
        user.wait_for_reply(|m| m.requests_contact(), WAIT).await;
        user.send_text(phone);
        user.wait_for_reply(|m| m.text.contains("имя"), WAIT).await;
        user.send_text("Анна Смирнова");
        user.wait_for_reply(|m| m.text.contains("Проверьте заявку"), WAIT)
            .await;
        support::e2e::press_label(&user, "Отправить заявку").await;
        user.wait_for_text("Заявка принята", WAIT).await;
    };
    // Each business's readiness on each instance: the one polling its bot is up, the other
    // stands by and is ready all the same (it takes the business's webhooks).
    let bots_of = |port: u16, id: &'static str| async move {
        let answer = reqwest::get(format!("http://127.0.0.1:{port}/health/{id}/ready"))
            .await
            .expect("readiness answered");
        let status = answer.status().as_u16();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        (
            status,
            body["pollers"][0]["state"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    };
    until("the second instance is serving", || {
        std::net::TcpStream::connect(("127.0.0.1", port_2)).is_ok()
    })
    .await;
    assert_eq!(bots_of(port_1, "salon-a").await, (200, "up".to_string()));
    let mut standing_by = (0, String::new());
    for _ in 0..100 {
        standing_by = bots_of(port_2, "salon-a").await;
        if standing_by.1 == "standby" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(standing_by, (200, "standby".to_string()));
    assert_eq!(bots_of(port_1, "nobody").await.0, 404);

    book(&tg_a.user(1001), "Салон А", "+7 912 000-00-01").await;
    book(&tg_b.user(2001), "Клиника Б", "+7 912 000-00-02").await;
    enrol(tg_c.user(3001), "+7 912 000-00-03").await;
    until("a booking in each business's systems", || {
        yc.records().len() == 1
            && amo.leads().len() == 1
            && dikidi.records().len() == 1
            && bitrix.leads().len() == 1
            && school.customers().len() == 1
    })
    .await;
    // Dikidi is polled by one instance: at its 1 s interval, not twice that.
    let polled = dikidi.calls_to("records_info");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let in_four_seconds = dikidi.calls_to("records_info") - polled;
    assert!(
        (1..=5).contains(&in_four_seconds),
        "{in_four_seconds} polls of Dikidi in 4 s"
    );

    drop(first); // SIGKILL: no lease is given up
    let killed_polls = dikidi.calls_to("records_info");
    // The bots answer again once the second instance holds them (the lease outlives 15 s).
    let (ann, bob) = (tg_a.user(1002), tg_b.user(2002));
    ann.send_text("/start");
    ann.wait_for_text("Салон А", Duration::from_secs(45)).await;
    bob.send_text("/start");
    bob.wait_for_text("Клиника Б", Duration::from_secs(45))
        .await;
    book_first_slot(&ann, "Мужская стрижка", "+7 912 000-00-11", "Анна").await;
    ann.wait_for_text("вы записаны", WAIT).await;
    book_first_slot(&bob, "Женская стрижка", "+7 912 000-00-12", "Борис").await;
    bob.wait_for_text("вы записаны", WAIT).await;
    enrol(tg_c.user(3002), "+7 912 000-00-13").await;
    until("the second bookings in each business's systems", || {
        amo.leads().len() == 2 && bitrix.leads().len() == 2 && school.customers().len() == 2
    })
    .await;
    assert_eq!(bots_of(port_2, "salon-a").await, (200, "up".to_string()));
    until("Dikidi polled again, by the second instance", || {
        dikidi.calls_to("records_info") > killed_polls
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Nothing doubled, nothing crossed over.
    assert_eq!(yc.records().len(), 2);
    assert_eq!(dikidi.records().len(), 2);
    assert_eq!(amo.leads().len(), 2);
    assert_eq!(bitrix.leads().len(), 2);
    assert_eq!(school.customers().len(), 2);
    let amo_contacts = serde_json::to_string(&amo.contacts()).expect("json");
    for other in ["79120000002", "79120000003", "79120000012", "79120000013"] {
        assert!(
            !amo_contacts.contains(other),
            "{other} in amoCRM: {amo_contacts}"
        );
    }
    let b24 = serde_json::to_string(&bitrix.leads()).expect("json");
    for other in ["79120000001", "79120000003", "79120000011", "79120000013"] {
        assert!(!b24.contains(other), "{other} in Bitrix24: {b24}");
    }
    for tg in [&tg_a, &tg_b, &tg_c] {
        assert_eq!(
            tg.conflicts(),
            0,
            "a bot was polled by both instances at once"
        );
    }
    assert_eq!(yc.throttled(), 0, "YClients' rate limit");
    assert_eq!(amo.throttled(), 0, "amoCRM's rate limit");
    assert_eq!(bitrix.throttled(), 0, "Bitrix24's rate limit");
    assert!(
        dikidi.max_in_window(Duration::from_millis(900)) <= 7,
        "Dikidi's pace"
    );
    second.stop();
}
