//! zapis against a fake 1C OData interface over real HTTP (tests/support/fake_onec.rs), wired
//! as `zapis run` wires it: `App::build` from a config file, `app.engine()`, the change
//! applier for visits. Runs on SQLite and, when ZAPIS_TEST_POSTGRES_URL is set, PostgreSQL.

use crate::support;
use crate::support::bid;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};
use support::app::{Settings, TestApp, drain};
use support::fake_getcourse::FakeGetCourse;
use support::fake_onec::{self, FakeOnec};
use zapis::accounting::Accounting;
use zapis::accounting::onec_odata::{Counterparty, ODataList, OnecOdata, parse_entity_sets};
use zapis::app::App;
use zapis::clock::{Clock, FakeClock};
use zapis::connectors::{Failure, Kind};
use zapis::domain::{Booking, BookingStatus, Channel, Money, Source, Utm};
use zapis::lifecycle::changes::ScheduleChange;
use zapis::normalize::Phone;
use zapis::store::test_support::raw_pool;
use zapis::sync::{JobState, Queue};

const BIZ: &str = "salon";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap()
}

fn contract(name: &str) -> String {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/contracts/onec")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn store_urls() -> Vec<String> {
    let mut urls = vec!["sqlite::memory:".to_string()];
    if let Ok(base) = std::env::var("ZAPIS_TEST_POSTGRES_URL") {
        // A fresh schema per test; App::build connects by URL, so hand it that URL.
        let store = zapis::store::test_support::fresh_postgres(&base).await;
        let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(raw_pool(&store))
            .await
            .expect("schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        urls.push(format!("{base}{sep}options=-csearch_path%3D{schema}"));
    } else {
        eprintln!("SKIPPED PostgreSQL half: ZAPIS_TEST_POSTGRES_URL is not set");
    }
    urls
}

fn settings(store_url: &str, fake: &FakeOnec, post_sales: bool) -> Settings {
    salon(Settings::new(store_url).onec_odata(fake), post_sales)
}

/// The salon on 1C over OData; after the visit a sales document when `post_sales`.
fn salon(settings: Settings, post_sales: bool) -> Settings {
    settings
        .set("business.id", BIZ)
        .set("business.locale", "ru")
        .set("business.address", "Москва")
        .set("business.phone", "+7 495 123-45-67")
        .set("onec.post_sales", post_sales)
        .set("onec.services.svc-haircut", fake_onec::NOMENCLATURE_HAIRCUT)
}

async fn app(store_url: &str, fake: &FakeOnec, post_sales: bool, clock: Arc<FakeClock>) -> App {
    settings(store_url, fake, post_sales).app(clock).await
}

fn booking(id: &str, phone: &str, name: &str, rubles: i64) -> Booking {
    Booking {
        id: crate::support::bk(id),
        business_id: bid(BIZ),
        client_phone: Phone::parse(phone).expect("phone"),
        client_name: name.into(),
        client_email: None,
        service_id: "svc-haircut".into(),
        service_name: "Стрижка женская".into(),
        master_id: "m1".into(),
        master_name: "Ольга".into(),
        start: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
        duration_min: 60,
        price: Money::from_rubles(rubles),
        status: BookingStatus::Booked,
        source: Source {
            channel: Channel::Telegram,
            payload: None,
            link_name: None,
            utm: Utm::default(),
        },
        chat: None,
        external_id: None,
        created_at: t0(),
    }
}

/// What `Conversations` queues when the schedule confirms a booking.
async fn confirm(app: &App, b: &Booking) {
    app.store.insert_booking(b).await.expect("booking");
    Queue::new(app.store.clone())
        .enqueue(
            &zapis::lifecycle::effects::invoice_job(&bid(BIZ), &b.id, app.clock.now()),
            app.clock.now(),
        )
        .await
        .expect("enqueue");
}

fn with_phone<'a>(objects: &'a [Value], phone: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|c| {
            c[fake_onec::CONTACTS]
                .as_array()
                .is_some_and(|rows| rows.iter().any(|r| r["НомерТелефона"] == phone))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_makes_one_counterparty_an_invoice_and_after_the_visit_a_posted_sales_document() {
    for url in store_urls().await {
        let t = TestApp::builder(&url, t0())
            .onec_odata()
            .settings(move |s| salon(s, true))
            .build()
            .await;
        let (app, fake, clock) = (&t.app, t.onec.as_ref().unwrap(), &t.clock);
        let engine = app.engine();

        let anna = booking("bk-1", "+7 916 123-45-67", "Анна Петрова", 1500);
        confirm(app, &anna).await;
        engine.run_due().await.expect("run");

        let counterparties = fake.objects(fake_onec::COUNTERPARTIES);
        let anna_cp = with_phone(&counterparties, "+79161234567");
        assert_eq!(
            anna_cp.len(),
            1,
            "the client appears once: {counterparties:#?}"
        );
        assert_eq!(anna_cp[0]["Description"], "Анна Петрова");
        let anna_key = anna_cp[0]["Ref_Key"].as_str().expect("key").to_string();
        assert_eq!(
            app.store
                .external_id(
                    &bid(BIZ),
                    "client",
                    "+79161234567",
                    zapis::domain::System::Onec
                )
                .await
                .unwrap()
                .as_deref(),
            Some(anna_key.as_str()),
            "the counterparty's Ref_Key is linked to the client"
        );

        let invoices = fake.objects(fake_onec::INVOICES);
        assert_eq!(invoices.len(), 1);
        let inv = &invoices[0];
        assert_eq!(inv["Контрагент_Key"], anna_key.as_str());
        assert_eq!(inv["Организация_Key"], fake_onec::ORGANISATION);
        assert_eq!(inv["СуммаДокумента"], 1500);
        assert_eq!(inv["Posted"], false, "invoices wait for the accountant");
        let lines = inv["Товары"].as_array().expect("invoice lines");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["LineNumber"], "1");
        assert_eq!(
            lines[0]["Номенклатура_Key"],
            fake_onec::NOMENCLATURE_HAIRCUT
        );
        assert_eq!(lines[0]["Количество"], 1);
        assert_eq!(lines[0]["Цена"], 1500);
        assert_eq!(lines[0]["Сумма"], 1500);
        assert_eq!(
            app.store
                .external_id(
                    &bid(BIZ),
                    "booking_invoice",
                    "bk-1",
                    zapis::domain::System::Onec
                )
                .await
                .unwrap()
                .as_deref(),
            inv["Ref_Key"].as_str()
        );

        // The visit took place: the sales document, through the real change applier.
        clock.set(anna.end() + Duration::minutes(5));
        let stored = app
            .store
            .booking(&bid(BIZ), &crate::support::bk("bk-1"))
            .await
            .unwrap()
            .unwrap();
        let changed = app
            .change_applier()
            .apply(&app.store, &stored, &ScheduleChange::Visited, clock.now())
            .await
            .expect("visited");
        assert!(changed.changed());
        engine.run_due().await.expect("run");
        let sales = fake.objects(fake_onec::SALES);
        assert_eq!(sales.len(), 1);
        let sale = &sales[0];
        assert_eq!(sale["Контрагент_Key"], anna_key.as_str());
        assert_eq!(sale["СуммаДокумента"], 1500);
        assert_eq!(
            sale["Date"], "2026-12-01T14:00:00",
            "the visit's end, local time"
        );
        assert_eq!(sale["Posted"], true, "post_sales = true posts it");
        let services = sale["Услуги"].as_array().expect("sales lines");
        assert_eq!(services.len(), 1);
        assert_eq!(services[0]["Содержание"], "Стрижка женская");
        assert_eq!(services[0]["Сумма"], 1500);
        assert_eq!(
            with_phone(&fake.objects(fake_onec::COUNTERPARTIES), "+79161234567").len(),
            1,
            "still one counterparty"
        );
        let queue = Queue::new(app.store.clone());
        assert!(
            queue
                .jobs_in_state(JobState::Dead)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_typed_differently_finds_the_same_counterparty() {
    for url in store_urls().await {
        let t = TestApp::builder(&url, t0())
            .onec_odata()
            .settings(move |s| salon(s, false))
            .build()
            .await;
        let (app, fake) = (&t.app, t.onec.as_ref().unwrap());
        let engine = app.engine();
        confirm(app, &booking("bk-a", "+7 916 123-45-67", "Анна", 1500)).await;
        engine.run_due().await.unwrap();
        confirm(app, &booking("bk-b", "8 (916) 123 45 67", "Анна П.", 2000)).await;
        engine.run_due().await.unwrap();
        let counterparties = fake.objects(fake_onec::COUNTERPARTIES);
        assert_eq!(with_phone(&counterparties, "+79161234567").len(), 1);
        assert_eq!(fake.objects(fake_onec::INVOICES).len(), 2);

        // Another zapis install (a fresh store) finds her in 1C by phone instead of adding her.
        let clock2 = Arc::new(FakeClock::new(t0()));
        let other = app_on_fresh_sqlite(fake, clock2).await;
        confirm(&other, &booking("bk-c", "+79161234567", "Анна", 900)).await;
        other.engine().run_due().await.unwrap();
        let counterparties = fake.objects(fake_onec::COUNTERPARTIES);
        assert_eq!(with_phone(&counterparties, "+79161234567").len(), 1);
        let invoices = fake.objects(fake_onec::INVOICES);
        assert_eq!(invoices.len(), 3);
        assert!(
            invoices
                .iter()
                .all(|i| i["Контрагент_Key"] == invoices[0]["Контрагент_Key"])
        );
        assert!(
            fake.requests().iter().any(|r| r.starts_with(
                "GET /buh/odata/standard.odata/Catalog_Контрагенты_КонтактнаяИнформация"
            )),
            "the search went through the contact-information section"
        );
    }
}

async fn app_on_fresh_sqlite(fake: &FakeOnec, clock: Arc<FakeClock>) -> App {
    app("sqlite::memory:", fake, false, clock).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hour_of_1c_down_delays_the_documents_and_loses_nothing() {
    for url in store_urls().await {
        let t = TestApp::builder(&url, t0())
            .onec_odata()
            .settings(move |s| salon(s, false))
            .build()
            .await;
        let (app, fake, clock) = (&t.app, t.onec.as_ref().unwrap(), &t.clock);
        let engine = app.engine();
        fake.set_down(true);
        for i in 0..3 {
            confirm(
                app,
                &booking(
                    &format!("bk-{i}"),
                    &format!("+7916000000{i}"),
                    "Клиент",
                    1000 + i,
                ),
            )
            .await;
        }
        let queue = Queue::new(app.store.clone());
        let back = t0() + Duration::hours(1);
        let mut attempts = 0;
        while clock.now() < back + Duration::hours(1) {
            if clock.now() >= back {
                fake.set_down(false);
            }
            attempts += engine.run_due().await.unwrap();
            let next = queue.next_due().await.unwrap();
            match next {
                Some(n) => clock.set(n.max(clock.now() + Duration::seconds(1))),
                None => break,
            }
        }
        assert!(attempts > 3, "the jobs were retried during the outage");
        assert!(
            queue
                .jobs_in_state(JobState::Dead)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(queue.jobs_in_state(JobState::Done).await.unwrap().len(), 3);
        assert_eq!(fake.objects(fake_onec::INVOICES).len(), 3);
        for i in 0..3 {
            let phone = format!("+7916000000{i}");
            assert_eq!(
                with_phone(&fake.objects(fake_onec::COUNTERPARTIES), &phone).len(),
                1
            );
        }
        let journal_failures = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM sync_journal WHERE system = 'onec' AND outcome <> 'done'",
        )
        .fetch_one(raw_pool(&app.store))
        .await
        .unwrap();
        assert!(journal_failures >= 3, "the failed attempts are journaled");
    }
}

#[tokio::test]
async fn the_client_reads_the_contract_payloads_and_the_fake_speaks_1c() {
    // The contract files parse into the client's wire types.
    let list: ODataList<Counterparty> =
        serde_json::from_str(&contract("odata-catalog-kontragenty-list.response.json")).unwrap();
    assert_eq!(
        list.value[0].ref_key,
        "bd5a3c14-1111-2222-3333-444455556666"
    );
    assert_eq!(list.value[0].inn.as_deref(), Some("7720285735"));
    let one: Counterparty =
        serde_json::from_str(&contract("odata-catalog-kontragenty-get.response.json")).unwrap();
    assert_eq!(one.description, "Чебоксарец");
    assert!(!one.deletion_mark);

    let fake = FakeOnec::start().await;
    let config = settings("sqlite::memory:", &fake, false).config();
    let onec = OnecOdata::new(config.onec.as_ref().unwrap()).unwrap();
    // Found by ИНН among the contract's counterparties, served by the fake.
    assert_eq!(
        onec.find_counterparty(None, Some("7720285735"))
            .await
            .unwrap()
            .as_deref(),
        Some("bd5a3c14-1111-2222-3333-444455556666")
    );
    assert_eq!(
        onec.find_counterparty(None, Some("0000000000"))
            .await
            .unwrap(),
        None
    );
    // $metadata lists the sets.
    let sets = onec.entity_sets().await.unwrap();
    assert!(sets.contains(&"Catalog_Контрагенты".to_string()));
    assert_eq!(
        parse_entity_sets("<a><EntitySet Name=\"X\"/></a>").unwrap(),
        vec!["X"]
    );
    // Stock from the register's Balance.
    let stock = onec.stock().await.unwrap();
    assert_eq!(stock.len(), 2);
    assert!(
        stock
            .iter()
            .any(|s| s.item == fake_onec::NOMENCLATURE_SHAMPOO && s.quantity == 2.0)
    );

    // Wrong password → auth error; a missing object → permanent with 1C's message.
    let mut bad = config.onec.clone().unwrap();
    bad.password = Some(secrecy::SecretString::from("wrong".to_string()));
    let e = OnecOdata::new(&bad).unwrap().stock().await.unwrap_err();
    assert!(e.is_auth(), "{e:?}");
    let mut wrong_name = config.onec.clone().unwrap();
    wrong_name.objects.invoice = "Document_СчетНаОплатуКлиенту".into();
    let e = OnecOdata::new(&wrong_name)
        .unwrap()
        .find_document(zapis::accounting::DocKind::Invoice, "zapis:invoice:x")
        .await
        .unwrap_err();
    match e.failure() {
        Failure {
            kind: Kind::Permanent,
            status,
            message,
            ..
        } => {
            assert_eq!(*status, Some(404));
            assert!(message.contains("не найдено"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    fake.set_down(true);
    let e = onec.stock().await.unwrap_err();
    assert!(e.is_transient() && e.status() == Some(500), "{e:?}");
}

#[tokio::test]
async fn onec_check_lists_the_names_and_marks_a_mismatch_and_stock_alerts() {
    let fake = FakeOnec::start().await;
    let config = settings("sqlite::memory:", &fake, false).config();
    let mut onec_config = config.onec.clone().unwrap();

    let onec = OnecOdata::new(&onec_config).unwrap();
    let mut out = Vec::new();
    let ok = zapis::accounting::cli::check(&onec_config, &onec, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(ok, "{text}");
    assert!(text.contains("credentials accepted"), "{text}");
    assert!(
        text.contains("ok        onec.objects.invoice           Document_СчетНаОплатуПокупателю"),
        "{text}"
    );

    // Торговля's name against a Бухгалтерия base: marked, with the published look-alike.
    onec_config.objects.invoice = "Document_СчетНаОплатуКлиенту".into();
    let onec = OnecOdata::new(&onec_config).unwrap();
    let mut out = Vec::new();
    let ok = zapis::accounting::cli::check(&onec_config, &onec, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!ok);
    assert!(
        text.contains("MISMATCH  onec.objects.invoice           Document_СчетНаОплатуКлиенту is not published; published: Document_СчетНаОплатуПокупателю\n"),
        "{text}"
    );

    // Stock with a threshold of 3: the shampoo (2 left) is low, the other line is not.
    onec_config.low_stock_threshold = Some(3);
    let store = zapis::store::Store::connect("sqlite::memory:")
        .await
        .unwrap();
    let sink = zapis::sync::MemorySink::default();
    let alerts = zapis::sync::Alerts::new(vec![Arc::new(sink.clone())]);
    let mut out = Vec::new();
    let lines = zapis::accounting::cli::stock(
        &onec_config,
        Some(&onec),
        &store,
        &bid(BIZ),
        Some(&alerts),
        t0(),
        &mut out,
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(lines, 2, "{text}");
    assert!(
        text.contains(&format!("2  {}  LOW", fake_onec::NOMENCLATURE_SHAMPOO)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "40.5  {} (svc-haircut)\n",
            fake_onec::NOMENCLATURE_HAIRCUT
        )),
        "{text}"
    );
    let sent = sink.alerts();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, zapis::sync::AlertKind::LowStock);
    assert!(
        sent[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains(fake_onec::NOMENCLATURE_SHAMPOO)
    );
    assert!(
        !sent[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains(fake_onec::NOMENCLATURE_HAIRCUT)
    );
}

const HOOK_SECRET: &str = "school-hook-secret-0123456789";

/// A school whose payments arrive from GetCourse, with 1C over OData: `[onec.services]` maps
/// the course key to its Номенклатура; the other course falls back to `nomenclature_key`.
fn school_settings(store_url: &str, fake: &FakeOnec, gc: &FakeGetCourse) -> Settings {
    Settings::new(store_url)
        .set("business.id", BIZ)
        .set("business.name", "Школа «Код»")
        .set("http.listen", "127.0.0.1:9")
        .set("http.webhook_secret", HOOK_SECRET)
        .getcourse(gc, "group")
        .push(
            "school.courses",
            json!({"key": "python", "title": "Python для подростков",
                   "getcourse_group": "Python, поток декабрь"}),
        )
        .push(
            "school.courses",
            json!({"key": "design", "title": "Дизайн", "getcourse_group": "Дизайн"}),
        )
        .onec_odata(fake)
        .set("onec.services.python", fake_onec::NOMENCLATURE_HAIRCUT)
}

async fn getcourse_notice(http: &reqwest::Client, base: &str, query: &[(&str, &str)]) -> u16 {
    let mut url = url::Url::parse(&format!("{base}/webhooks/getcourse/{HOOK_SECRET}")).unwrap();
    url.query_pairs_mut().extend_pairs(query);
    http.get(url).send().await.unwrap().status().as_u16()
}

fn invoices_marked<'a>(invoices: &'a [Value], marker: &str) -> Vec<&'a Value> {
    invoices
        .iter()
        .filter(|i| i["Комментарий"] == marker)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_getcourse_payment_makes_one_counterparty_and_one_invoice_even_sent_twice_and_retried() {
    for url in store_urls().await {
        let fake = FakeOnec::start().await;
        let gc = FakeGetCourse::start().await;
        let clock = Arc::new(FakeClock::new(t0()));
        let app = school_settings(&url, &fake, &gc).app(clock.clone()).await;
        let engine = app.engine();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(zapis::http::serve_on(
            listener,
            app.http_state(secrecy::SecretString::from(HOOK_SECRET)),
            std::future::pending::<()>(),
        ));
        let http = reqwest::Client::new();

        // 1C creates the counterparty and the invoice but both answers are lost: the retries
        // must find them instead of creating them again.
        fake.lose_answers(fake_onec::COUNTERPARTIES, 1);
        fake.lose_answers(fake_onec::INVOICES, 1);
        let paid = [
            ("id", "900001"),
            ("number", "4711"),
            ("email", "Anna@Example.ru"),
            ("phone", "8 (912) 345-67-89"),
            ("name", "Анна Смирнова"),
            ("status", "payed"),
            ("payed_money", "9 900,50 руб."),
            ("course", "python"),
        ];
        assert_eq!(getcourse_notice(&http, &base, &paid).await, 200);
        // GetCourse re-sends on a timeout.
        assert_eq!(getcourse_notice(&http, &base, &paid).await, 200);
        drain(&engine, &clock).await;

        let counterparties = fake.objects(fake_onec::COUNTERPARTIES);
        let anna = with_phone(&counterparties, "+79123456789");
        assert_eq!(
            anna.len(),
            1,
            "one payer, one counterparty: {counterparties:#?}"
        );
        assert_eq!(anna[0]["Description"], "Анна Смирнова");
        assert!(
            anna[0][fake_onec::CONTACTS]
                .as_array()
                .is_some_and(|rows| rows.iter().any(|r| r["АдресЭП"] == "Anna@example.ru")),
            "the e-mail is kept with the phone: {:#?}",
            anna[0]
        );
        let anna_key = anna[0]["Ref_Key"].as_str().unwrap().to_string();
        let invoices = fake.objects(fake_onec::INVOICES);
        assert_eq!(invoices.len(), 1, "{invoices:#?}");
        let inv = &invoices[0];
        assert_eq!(inv["Комментарий"], "zapis:payment:getcourse:900001");
        assert_eq!(inv["Контрагент_Key"], anna_key.as_str());
        assert_eq!(inv["Организация_Key"], fake_onec::ORGANISATION);
        assert_eq!(inv["СуммаДокумента"], 9900.5);
        assert_eq!(inv["Posted"], false);
        // Local (Moscow) time of the attempt that created it, between the notice and now.
        let date = inv["Date"].as_str().unwrap_or_default();
        let local = |t: DateTime<Utc>| {
            t.with_timezone(&chrono_tz::Europe::Moscow)
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string()
        };
        assert!(
            date >= "2026-11-30T12:00:00" && date <= local(clock.now()).as_str(),
            "{date}"
        );
        let lines = inv["Товары"].as_array().expect("lines");
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0]["Номенклатура_Key"],
            fake_onec::NOMENCLATURE_HAIRCUT
        );
        assert_eq!(lines[0]["Содержание"], "Python для подростков");
        assert_eq!(lines[0]["Количество"], 1);
        assert_eq!(lines[0]["Цена"], 9900.5);
        assert_eq!(lines[0]["Сумма"], 9900.5);
        assert_eq!(
            app.store
                .external_id(
                    &bid(BIZ),
                    "payment_invoice",
                    "getcourse:900001",
                    zapis::domain::System::Onec
                )
                .await
                .unwrap()
                .as_deref(),
            inv["Ref_Key"].as_str()
        );
        // The notice's other job, queued with the invoice's, opened the course.
        let user = gc.user_by_email("Anna@example.ru").expect("GetCourse user");
        assert!(user.groups.contains("Python, поток декабрь"), "{user:?}");
        let queue = Queue::new(app.store.clone());
        let onec_jobs: Vec<_> = queue
            .jobs_in_state(JobState::Done)
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.system == "onec")
            .collect();
        assert_eq!(onec_jobs.len(), 1, "the re-sent notice queued nothing new");
        assert!(onec_jobs[0].attempts >= 3, "the lost answers were retried");

        // A payer known by e-mail only, twice; the first counterparty's answer is lost, so
        // the retry has to find it in 1C by its e-mail.
        fake.lose_answers(fake_onec::COUNTERPARTIES, 1);
        for (deal, money) in [("900002", "12 500 руб."), ("900003", "3000")] {
            let status = getcourse_notice(
                &http,
                &base,
                &[
                    ("id", deal),
                    ("email", "petr@example.ru"),
                    ("name", "Пётр"),
                    ("status", "payed"),
                    ("payed_money", money),
                    ("course", "design"),
                ],
            )
            .await;
            assert_eq!(status, 200);
        }
        drain(&engine, &clock).await;
        let counterparties = fake.objects(fake_onec::COUNTERPARTIES);
        let petr: Vec<&Value> = counterparties
            .iter()
            .filter(|c| c["Description"] == "Пётр")
            .collect();
        assert_eq!(petr.len(), 1, "{counterparties:#?}");
        let invoices = fake.objects(fake_onec::INVOICES);
        assert_eq!(invoices.len(), 3);
        for (deal, sum) in [("900002", 12500), ("900003", 3000)] {
            let found = invoices_marked(&invoices, &format!("zapis:payment:getcourse:{deal}"));
            assert_eq!(found.len(), 1, "{deal}");
            assert_eq!(found[0]["Контрагент_Key"], petr[0]["Ref_Key"]);
            assert_eq!(found[0]["СуммаДокумента"], sum);
            let line = &found[0]["Товары"][0];
            assert_eq!(line["Содержание"], "Дизайн");
            assert_eq!(
                line["Номенклатура_Key"],
                fake_onec::NOMENCLATURE_SHAMPOO,
                "an unmapped course takes onec.nomenclature_key"
            );
        }
        assert!(fake.requests().iter().any(|r| r.starts_with(
            "GET /buh/odata/standard.odata/Catalog_Контрагенты_КонтактнаяИнформация"
        )),);
        assert!(
            queue
                .jobs_in_state(JobState::Dead)
                .await
                .unwrap()
                .is_empty()
        );

        // A notice without the sum cannot be invoiced: the job stops and says what to add.
        getcourse_notice(
            &http,
            &base,
            &[
                ("id", "900004"),
                ("phone", "+7 903 555-44-33"),
                ("status", "payed"),
                ("course", "python"),
            ],
        )
        .await;
        drain(&engine, &clock).await;
        let dead = queue.jobs_in_state(JobState::Dead).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].system, "onec");
        assert!(
            dead[0]
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("payed_money"),
            "{:?}",
            dead[0].last_error
        );
        assert_eq!(fake.objects(fake_onec::INVOICES).len(), 3);
    }
}

/// An `[alerts] webhook_url` receiver: every alert zapis posts, as JSON.
async fn alert_receiver() -> (String, Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::{Json, Router, routing::post};
    let received = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let sink = received.clone();
    let app = Router::new().route(
        "/alerts",
        post(move |Json(v): Json<Value>| async move {
            sink.lock().unwrap().push(v);
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn stock_settings(store_url: &str, fake: &FakeOnec, alerts_url: &str) -> Settings {
    settings(store_url, fake, false)
        .set("onec.low_stock_threshold", 3)
        .set("alerts.webhook_url", alerts_url)
}

fn low_stock_texts(received: &std::sync::Mutex<Vec<Value>>) -> Vec<String> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "low_stock")
        .map(|a| a["last_error"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_check_alerts_each_item_once_until_it_recovers() {
    use fake_onec::{NOMENCLATURE_HAIRCUT as HAIRCUT, NOMENCLATURE_SHAMPOO as SHAMPOO};
    // A file, not memory: the restart at the end must find the same store.
    let files = tempfile::tempdir().unwrap();
    let mut urls = vec![format!(
        "sqlite://{}",
        files.path().join("zapis.db").display()
    )];
    urls.extend(
        store_urls()
            .await
            .into_iter()
            .filter(|u| !u.starts_with("sqlite:")),
    );
    for url in urls {
        let fake = FakeOnec::start().await;
        let (alerts_url, received) = alert_receiver().await;
        let clock = Arc::new(FakeClock::new(t0()));
        let config = stock_settings(&url, &fake, &alerts_url).config();
        let app = App::build(config.clone(), clock.clone())
            .await
            .expect("app");
        let (watch, every) = app.stock_watch().expect("a threshold turns the check on");
        assert_eq!(every, std::time::Duration::from_secs(3600), "1h by default");

        // Shampoo: 2 left (threshold 3) → one alert; the haircut line (40.5) is fine.
        let r = watch.run_once(clock.now()).await.expect("pass");
        assert_eq!(r.items, 2);
        assert_eq!(r.alerted, vec![(SHAMPOO.to_string(), 2.0)]);
        let texts = low_stock_texts(&received);
        assert_eq!(texts, vec![format!("{SHAMPOO} (2)")]);
        let first = received.lock().unwrap()[0].clone();
        assert_eq!(first["at"], json!(t0()), "the injected clock's time");
        assert_eq!(first["system"], "onec");

        // Still low an hour later: no second alert.
        clock.advance(Duration::hours(1));
        let r = watch.run_once(clock.now()).await.unwrap();
        assert!(r.alerted.is_empty());
        assert_eq!(low_stock_texts(&received).len(), 1);

        // Five more arrive at the second warehouse: 7 in all, recovered, no alert.
        fake.set_stock(SHAMPOO, fake_onec::WAREHOUSE_2, 5.0);
        clock.advance(Duration::hours(1));
        let r = watch.run_once(clock.now()).await.unwrap();
        assert_eq!(r.recovered, vec![SHAMPOO.to_string()]);
        assert!(r.alerted.is_empty());
        assert_eq!(low_stock_texts(&received).len(), 1);

        // Sold at the second warehouse again: low again, alerted again, once.
        fake.set_stock(SHAMPOO, fake_onec::WAREHOUSE_2, 0.0);
        clock.advance(Duration::hours(1));
        watch.run_once(clock.now()).await.unwrap();
        clock.advance(Duration::hours(1));
        watch.run_once(clock.now()).await.unwrap();
        assert_eq!(
            low_stock_texts(&received),
            vec![format!("{SHAMPOO} (2)"), format!("{SHAMPOO} (2)")]
        );

        // The other item sells out: 1C leaves it out of the balance; it is alerted at 0, named
        // by the service it is mapped to.
        fake.set_stock(HAIRCUT, fake_onec::WAREHOUSE, 0.0);
        clock.advance(Duration::hours(1));
        let r = watch.run_once(clock.now()).await.unwrap();
        assert_eq!(r.items, 2);
        assert_eq!(r.alerted, vec![(HAIRCUT.to_string(), 0.0)]);
        assert_eq!(
            low_stock_texts(&received).last().map(String::as_str),
            Some(format!("{HAIRCUT} (svc-haircut) (0)").as_str())
        );

        // 1C down: the pass fails, nothing is alerted or forgotten.
        fake.set_down(true);
        clock.advance(Duration::hours(1));
        assert!(watch.run_once(clock.now()).await.is_err());
        fake.set_down(false);

        // A restart on the same store remembers what was alerted.
        let again = App::build(config, clock.clone()).await.expect("app");
        let (watch2, _) = again.stock_watch().unwrap();
        clock.advance(Duration::hours(1));
        let r = watch2.run_once(clock.now()).await.unwrap();
        assert!(r.alerted.is_empty(), "{r:?}");
        assert_eq!(low_stock_texts(&received).len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_check_loop_reads_the_balance_each_period_and_stops_on_shutdown() {
    let fake = FakeOnec::start().await;
    let (alerts_url, received) = alert_receiver().await;
    let clock = Arc::new(FakeClock::new(t0()));
    // Without a threshold there is nothing to check against: no loop.
    let plain = settings("sqlite::memory:", &fake, false)
        .app(clock.clone())
        .await;
    assert!(plain.stock_watch().is_none());

    let app = stock_settings("sqlite::memory:", &fake, &alerts_url)
        .set("onec.stock_check_interval", "15m")
        .app(clock.clone())
        .await;
    let (watch, every) = app.stock_watch().unwrap();
    assert_eq!(every, std::time::Duration::from_secs(15 * 60));
    let balance_reads = || {
        fake.requests()
            .iter()
            .filter(|r| r.ends_with("/Balance"))
            .count()
    };
    // The loop as `zapis run` spawns it, on a short period so the test sees several passes.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let period = std::time::Duration::from_millis(20);
    let lease = zapis::store::LoopLease::new(
        app.store.clone(),
        &bid("default"),
        "onec_stock",
        "i1",
        period,
    );
    let task = tokio::spawn(watch.run(clock.clone(), period, lease, stop_rx));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while balance_reads() < 4 {
        assert!(std::time::Instant::now() < deadline, "the loop stalled");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        low_stock_texts(&received),
        vec![format!("{} (2)", fake_onec::NOMENCLATURE_SHAMPOO)],
        "several passes, one alert"
    );
    stop_tx.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .expect("the loop stops on shutdown")
        .unwrap();
    let after = balance_reads();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(balance_reads(), after, "no pass after shutdown");
}

/// `zapis check --config <path>` as an operator runs it: exit status and stdout.
async fn zapis_check(config: String) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zapis.toml");
    std::fs::write(&path, config).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_zapis"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&output.stdout).to_string();
    (
        output.status.success(),
        format!("{out}{}", String::from_utf8_lossy(&output.stderr)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zapis_check_has_a_1c_line_with_credentials_and_object_names() {
    let fake = FakeOnec::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("z.db").display());
    let good = settings(&store, &fake, false);

    let (ok, out) = zapis_check(good.toml()).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("onec (odata): reachable, credentials accepted, 8 entity sets published\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "  ok        onec.objects.invoice           Document_СчетНаОплатуПокупателю\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "  ok        onec.objects.stock_register    AccumulationRegister_ТоварыНаСкладах\n"
        ),
        "{out}"
    );

    // Торговля's invoice name against a Бухгалтерия base.
    let (ok, out) = zapis_check(
        good.clone()
            .set("onec.objects.invoice", "Document_СчетНаОплатуКлиенту")
            .toml(),
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("some [onec.objects] names are not published"),
        "{out}"
    );
    assert!(
        out.contains("  MISMATCH  onec.objects.invoice           Document_СчетНаОплатуКлиенту is not published; published: Document_СчетНаОплатуПокупателю\n"),
        "{out}"
    );
    assert!(out.contains("1 system(s) failed the check"), "{out}");

    let (ok, out) = zapis_check(good.clone().set("onec.password", "wrong").toml()).await;
    assert!(!ok, "{out}");
    assert!(out.contains("onec (odata): bad credentials"), "{out}");
    assert!(!out.contains("wrong"), "the password is not printed: {out}");

    let elsewhere = fake
        .base_url()
        .strip_suffix(&format!("/{}", fake_onec::PUBLICATION))
        .expect("the base ends with its publication")
        .to_string()
        + "/no-such-base";
    let (ok, out) = zapis_check(good.clone().set("onec.base_url", elsewhere).toml()).await;
    assert!(!ok, "{out}");
    assert!(out.contains("onec (odata): misconfigured"), "{out}");

    fake.set_down(true);
    let (ok, out) = zapis_check(good.toml()).await;
    assert!(!ok, "{out}");
    assert!(out.contains("onec (odata): unreachable"), "{out}");
    fake.set_down(false);

    // CommerceML: 1C calls us, nothing to reach; the line says so and passes.
    let cml = Settings::new(&store)
        .remove("business.id")
        .set("http.listen", "127.0.0.1:9")
        .set("http.webhook_secret", "0123456789abcdef")
        .set("onec.mode", "commerceml")
        .set("onec.commerceml.user", "1c")
        .set("onec.commerceml.password", "a-long-exchange-password");
    let (ok, out) = zapis_check(cml.toml()).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("onec (commerceml): 1C calls us at /1c/exchange"),
        "{out}"
    );
}
