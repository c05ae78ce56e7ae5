//! Two businesses sharing one store: each process's delivery engine claims and loads only its
//! own business's jobs, so one salon's bookings never reach another salon's CRM. Built as
//! `zapis run` wires it (`App::build` from a config file, `app.engine()`), against two amoCRM
//! fakes over HTTP, on SQLite and, when `ZAPIS_TEST_POSTGRES_URL` is set, PostgreSQL.

use crate::support;
use crate::support::bid;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use support::app::Settings;
use support::fake_amocrm::FakeAmo;
use zapis::app::App;
use zapis::clock::FakeClock;
use zapis::domain::{Booking, BookingStatus, Channel, Money, Source, Utm};
use zapis::lifecycle::effects::{Operation, booking_job};
use zapis::normalize::Phone;
use zapis::sync::{JobState, Queue};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap()
}

async fn store_urls(dir: &std::path::Path) -> Vec<String> {
    // A file, not `:memory:`: both businesses' apps must open the same database.
    let mut urls = vec![format!("sqlite://{}", dir.join("shared.db").display())];
    match support::postgres_url().await {
        Some(url) => urls.push(url),
        None => eprintln!("SKIPPED PostgreSQL half: ZAPIS_TEST_POSTGRES_URL is not set"),
    }
    urls
}

async fn app(store_url: &str, business: &str, amo: &FakeAmo, clock: Arc<FakeClock>) -> App {
    Settings::new(store_url)
        .set("business.id", business)
        .set("business.name", format!("Салон {business}"))
        .amocrm(amo)
        .app(clock)
        .await
}

fn booking(business: &str, id: &str, phone: &str, name: &str) -> Booking {
    Booking {
        id: crate::support::bk(id),
        business_id: bid(business),
        client_phone: Phone::parse(phone).expect("phone"),
        client_name: name.into(),
        client_email: None,
        service_id: "s1".into(),
        service_name: "Стрижка".into(),
        master_id: "m1".into(),
        master_name: "Ольга".into(),
        start: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
        duration_min: 60,
        price: Money::from_rubles(2000),
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

/// What the dialog stores when a client books: the booking and its CRM job.
async fn book(app: &App, b: &Booking) {
    app.store.insert_booking(b).await.expect("booking");
    Queue::new(app.store.clone())
        .enqueue(
            &booking_job(
                &b.business_id,
                zapis::domain::System::AmoCrm,
                Operation::BookingCreated,
                &b.id,
                None,
                app.clock.now(),
            ),
            app.clock.now(),
        )
        .await
        .expect("enqueue");
}

fn lead_names(amo: &FakeAmo) -> Vec<String> {
    amo.contacts()
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn each_business_delivers_only_its_own_bookings_from_a_shared_store() {
    let dir = tempfile::tempdir().expect("dir");
    for url in store_urls(dir.path()).await {
        let clock = Arc::new(FakeClock::new(t0()));
        let (amo_a, amo_b) = (FakeAmo::start().await, FakeAmo::start().await);
        let lilia = app(&url, "lilia", &amo_a, clock.clone()).await;
        let roza = app(&url, "roza", &amo_b, clock.clone()).await;

        book(
            &lilia,
            &booking("lilia", "bk-a", "+7 912 345-67-89", "Анна"),
        )
        .await;
        book(&roza, &booking("roza", "bk-b", "+7 916 123-45-67", "Белла")).await;

        // Roza's engine runs first: it must leave Lilia's job alone, not deliver it into its
        // own CRM.
        roza.engine().run_due().await.expect("roza runs");
        assert_eq!(
            amo_b.leads().len(),
            1,
            "{url}: roza's CRM has roza's lead only"
        );
        assert_eq!(lead_names(&amo_b), vec!["Белла".to_string()], "{url}");
        assert!(
            amo_a.leads().is_empty(),
            "{url}: lilia's job waits for lilia"
        );
        let pending = Queue::new(lilia.store.clone())
            .jobs_in_state(JobState::Pending)
            .await
            .expect("jobs");
        assert_eq!(
            pending
                .iter()
                .map(|j| j.business_id.as_str())
                .collect::<Vec<_>>(),
            vec!["lilia"],
            "{url}"
        );

        lilia.engine().run_due().await.expect("lilia runs");
        assert_eq!(lead_names(&amo_a), vec!["Анна".to_string()], "{url}");
        assert_eq!(amo_b.leads().len(), 1, "{url}: nothing more reached roza");
        lilia.store.close().await;
        roza.store.close().await;
    }
}

#[tokio::test]
async fn a_job_naming_another_business_booking_finds_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    for url in store_urls(dir.path()).await {
        let clock = Arc::new(FakeClock::new(t0()));
        let (amo_a, amo_b) = (FakeAmo::start().await, FakeAmo::start().await);
        let lilia = app(&url, "lilia", &amo_a, clock.clone()).await;
        let roza = app(&url, "roza", &amo_b, clock.clone()).await;
        lilia
            .store
            .insert_booking(&booking("lilia", "bk-a", "+7 912 345-67-89", "Анна"))
            .await
            .expect("booking");
        // A job of roza's that names lilia's booking (a forged or mis-routed payload).
        Queue::new(roza.store.clone())
            .enqueue(
                &booking_job(
                    &bid("roza"),
                    zapis::domain::System::AmoCrm,
                    Operation::BookingCreated,
                    &crate::support::bk("bk-a"),
                    None,
                    t0(),
                ),
                t0(),
            )
            .await
            .expect("enqueue");
        roza.engine().run_due().await.expect("roza runs");
        assert!(
            amo_b.leads().is_empty(),
            "{url}: lilia's client never reaches roza"
        );
        assert!(amo_b.contacts().is_empty(), "{url}");
        let dead = Queue::new(roza.store.clone())
            .jobs_in_state(JobState::Dead)
            .await
            .expect("jobs");
        assert_eq!(dead.len(), 1, "{url}: refused, not retried");
        lilia.store.close().await;
        roza.store.close().await;
    }
}
