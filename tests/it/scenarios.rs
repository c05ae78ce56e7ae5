//! One scenario description, run against the Telegram and the MAX frontends (the real adapters,
//! the real runtime and sandbox salon, each messenger's fake), so the two cannot drift apart.

use crate::support;
use crate::support::bid;

use support::fake_max::FakeMax;
use support::fake_telegram::FakeTelegram;
use support::scenario::{self, Scenario};
use zapis::domain::{BookingStatus, Channel};

async fn on_telegram(s: &Scenario) -> Vec<zapis::domain::Booking> {
    let fake = FakeTelegram::start().await;
    let (app, bot) = support::start_demo_bot(&fake).await;
    scenario::run(s, &fake.user(501)).await;
    bot.stop().await.expect("telegram adapter stops cleanly");
    app.store.bookings(&bid("default")).await.unwrap()
}

async fn on_max(s: &Scenario) -> Vec<zapis::domain::Booking> {
    let fake = FakeMax::start().await;
    let (app, bot) = support::start_demo_max_bot(&fake).await;
    scenario::run(s, &fake.user(501)).await;
    bot.stop().await.expect("MAX adapter stops cleanly");
    app.store.bookings(&bid("default")).await.unwrap()
}

fn assert_booked_and_cancelled(bookings: &[zapis::domain::Booking], channel: Channel) {
    assert_eq!(bookings.len(), 1, "{bookings:#?}");
    let b = &bookings[0];
    assert_eq!(b.status, BookingStatus::CancelledByClient);
    assert_eq!(b.source.channel, channel);
    assert_eq!(b.source.payload.as_deref(), Some("src_landing"));
    assert_eq!(b.client_phone.as_str(), "+79123456789");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn book_and_cancel_on_telegram() {
    let bookings = on_telegram(&scenario::book_and_cancel()).await;
    assert_booked_and_cancelled(&bookings, Channel::Telegram);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn book_and_cancel_on_max() {
    let bookings = on_max(&scenario::book_and_cancel()).await;
    assert_booked_and_cancelled(&bookings, Channel::Max);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_phone_is_asked_again_on_telegram() {
    assert!(
        on_telegram(&scenario::bad_phone_is_asked_again())
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_phone_is_asked_again_on_max() {
    assert!(
        on_max(&scenario::bad_phone_is_asked_again())
            .await
            .is_empty()
    );
}
