//! The Telegram adapter in front of the real conversation runtime. The full booking walk
//! (book a sandbox slot from `/start src_landing`, cancel, restart mid-conversation) belongs
//! here once the dialog engine lands; until then this proves the wiring.

mod support;

use std::time::Duration;

use support::fake_telegram::FakeTelegram;

#[tokio::test]
async fn the_runtime_answers_telegram_users_without_errors() {
    let fake = FakeTelegram::start().await;
    let (_app, bot) = support::start_demo_bot(&fake).await;
    let user = fake.user(555);
    let update = user.send_text("/start src_landing");
    fake.wait_for_confirmed(update, Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The adapter apologises only when the runtime fails.
    assert!(
        user.history()
            .iter()
            .all(|m| !m.text.starts_with("Извините")),
        "{:#?}",
        user.history()
    );
    assert_eq!(fake.pending_updates(), 0, "the update was consumed");
    bot.stop().await.unwrap();
}
