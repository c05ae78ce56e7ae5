//! API calls and latency per completed booking through the YClients connector, cache on vs off,
//! against the fake YClients in-process over real HTTP on 127.0.0.1.
//!
//! Each simulated client walks the bot's path: services → masters of a service → free days of a
//! master (two weeks) → free times on the first day → book the first time. Run with
//! `cargo bench --bench yclients`.

use zapis_fakes::fake_yclients;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use fake_yclients::{FakeSalon, FakeYclients, PARTNER_TOKEN};
use zapis::booking::yclients::{Yclients, YclientsConfig};
use zapis::booking::{BookRequest, BookingSystem};
use zapis::clock::SystemClock;
use zapis::normalize::Phone;

const COMPANY: u64 = 777;

struct Figures {
    bookings: u32,
    calls: u64,
    wall: Duration,
    max_rps: u32,
    by_endpoint: String,
}

async fn run(clients: u32, cache: bool, rate: u32) -> Figures {
    let fake = FakeYclients::start(FakeSalon::standard(COMPANY, chrono_tz::Europe::Moscow)).await;
    fake.set_rate_limit(rate.max(5));
    let mut cfg = YclientsConfig::new(fake.base_url.clone(), COMPANY, PARTNER_TOKEN);
    cfg.slot_cache_ttl_secs = if cache { 30 } else { 0 };
    cfg.rate_limit_per_second = rate;
    let yc = Yclients::new(&cfg, Arc::new(SystemClock));
    let from = Utc::now().date_naive() + chrono::Duration::days(1);
    let to = from + chrono::Duration::days(13);
    let started = Instant::now();
    let mut bookings = 0;
    for i in 0..clients {
        let services = yc.services().await.expect("services");
        let service = &services[0];
        let masters = yc.masters(&service.id).await.expect("masters");
        let master = &masters[i as usize % masters.len()];
        let days = yc
            .free_days(&service.id, Some(&master.id), from, to)
            .await
            .expect("days");
        let slots = yc
            .free_slots(&service.id, Some(&master.id), days[0])
            .await
            .expect("slots");
        let slot = &slots[0];
        yc.book(&BookRequest {
            booking_id: zapis::domain::BookingId::parse(&format!("bench-{i}"))
                .expect("a booking id"),
            service_id: service.id.clone(),
            master_id: master.id.clone(),
            start: slot.start,
            duration_min: slot.duration_min,
            client_phone: Phone::parse(&format!("+7912{:07}", 1_000_000 + i)).expect("phone"),
            client_name: "Клиент".into(),
            client_email: None,
            comment: "bench".into(),
        })
        .await
        .expect("booking");
        bookings += 1;
    }
    let wall = started.elapsed();
    assert_eq!(fake.active_records().len(), bookings as usize);
    Figures {
        bookings: bookings as u32,
        calls: yc.calls().total(),
        wall,
        max_rps: fake.max_requests_per_second(),
        by_endpoint: format!("{:?}", yc.calls().snapshot()),
    }
}

fn print(label: &str, f: &Figures) {
    println!(
        "{label:<34} {:>3} bookings  {:>5.2} calls/booking  {:>7.1} ms/booking  max {} req/s at the server",
        f.bookings,
        f.calls as f64 / f64::from(f.bookings),
        f.wall.as_secs_f64() * 1000.0 / f64::from(f.bookings),
        f.max_rps
    );
    println!("{:<34} {}", "", f.by_endpoint);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!(
            "YClients connector, one booking = services → masters → days → times → check → record"
        );
        // Paced as in production (5 req/s): latency is dominated by the limiter.
        let paced_on = run(8, true, 5).await;
        print("paced 5 req/s, cache on", &paced_on);
        let paced_off = run(8, false, 5).await;
        print("paced 5 req/s, cache off", &paced_off);
        // Unpaced: what HTTP + JSON + the fake cost per booking without the limiter's waits.
        let fast_on = run(40, true, 10_000).await;
        print("unpaced, cache on", &fast_on);
        let fast_off = run(40, false, 10_000).await;
        print("unpaced, cache off", &fast_off);
    });
}
