//! Two-way sync through the real `zapis run`, with Telegram, YClients and amoCRM all fakes over
//! HTTP: a change made in any one of them reaches the other two and the client's chat, our own
//! changes coming back produce nothing, a lost webhook is caught by the reconciliation poll, and
//! a reminder goes out once and its "Cancel" cancels everywhere.

use crate::support;
use crate::support::bid;
use support::e2e::free_port;

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use support::app::Settings;
use support::e2e::{Service, WAIT, book_first_slot, press_kind, press_label};
use support::fake_amocrm::{self as fake_amo, FakeAmo};
use support::fake_telegram::{FakeTelegram, FakeUser};
use support::fake_yclients::{FakeRecord, FakeSalon, FakeYclients, USER_TOKEN};
use zapis::domain::BookingStatus;
use zapis::store::Store;

const SECRET: &str = "two-way-secret-0123456789";

async fn until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

struct World {
    tg: FakeTelegram,
    yc: FakeYclients,
    amo: FakeAmo,
    dir: tempfile::TempDir,
    port: u16,
}

impl World {
    async fn start() -> World {
        World {
            tg: FakeTelegram::start().await,
            yc: FakeYclients::start(FakeSalon::standard(777, chrono_tz::Asia::Yekaterinburg)).await,
            amo: FakeAmo::start().await,
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
        }
    }

    fn store_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("zapis.db").display())
    }

    /// Writes the configuration with the given `[sync]` reconcile interval and reminder
    /// offset, and starts the service on it.
    fn run(&self, reconcile: &str, offset: &str) -> Service {
        self.run_with(reconcile, offset, |s| s)
    }

    /// [`World::run`] with the settings changed by `edit`.
    fn run_with(
        &self,
        reconcile: &str,
        offset: &str,
        edit: impl FnOnce(Settings) -> Settings,
    ) -> Service {
        let settings = Settings::single(&self.store_url(), "Салон «Лилия»")
            .set("business.timezone", "Asia/Yekaterinburg")
            .set("business.address", "Екатеринбург, ул. Ленина, 1")
            .yclients(&self.yc, 777)
            .telegram(&self.tg)
            .set("sync.poll", "100ms")
            .set("sync.reconcile_interval", reconcile)
            .set("reminders.offsets", json!([offset]))
            .set("reminders.check_every", "200ms")
            .http(self.port, SECRET)
            .amocrm(&self.amo)
            .set("crm.amocrm.loss_reason_id", 7);
        Service::start(&edit(settings).write_in(self.dir.path()))
    }

    async fn post(&self, source: &str, body: reqwest::RequestBuilder) {
        let _ = source;
        for _ in 0..100 {
            if let Some(b) = body.try_clone()
                && let Ok(resp) = b.send().await
            {
                assert_eq!(resp.status(), 200);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the webhook endpoint does not answer");
    }

    async fn yclients_hook(&self, hook: &Value) {
        let url = format!("http://127.0.0.1:{}/webhooks/yclients/{SECRET}", self.port);
        self.post("yclients", reqwest::Client::new().post(url).json(hook))
            .await;
    }

    /// What amoCRM posts when a manager moves a lead to another stage (the form contract).
    async fn amo_status_hook(&self, lead_id: &str, status_id: i64, old_status_id: i64) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("leads[status][0][id]", lead_id)
            .append_pair("leads[status][0][status_id]", &status_id.to_string())
            .append_pair(
                "leads[status][0][old_status_id]",
                &old_status_id.to_string(),
            )
            .append_pair(
                "leads[status][0][pipeline_id]",
                &fake_amo::PIPELINE_ID.to_string(),
            )
            .append_pair("leads[status][0][last_modified]", "1456820780")
            .append_pair("account[subdomain]", "test000002")
            .finish();
        let url = format!("http://127.0.0.1:{}/webhooks/amocrm/{SECRET}", self.port);
        self.post(
            "amocrm",
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await;
    }

    /// Books the first free slot from a new chat and waits for its lead; returns the record
    /// and the lead id.
    async fn book(&self, chat: i64, phone: &str) -> (FakeUser, FakeRecord, String) {
        let user = self.tg.user(chat);
        user.send_text("/start");
        user.wait_for_text("Салон «Лилия»", WAIT).await;
        let before: Vec<u64> = self.yc.records().iter().map(|r| r.id).collect();
        let leads_before = self.amo.leads().len();
        book_first_slot(&user, "Женская стрижка", phone, "Анна").await;
        user.wait_for_text("вы записаны", WAIT).await;
        let record = self
            .yc
            .active_records()
            .into_iter()
            .find(|r| !before.contains(&r.id))
            .expect("a new record");
        until("the lead", WAIT, || self.amo.leads().len() > leads_before).await;
        let lead = self.amo.leads().into_iter().last().expect("lead")["id"].to_string();
        (user, record, lead)
    }

    fn notes_text(&self, lead: &str) -> String {
        self.amo
            .notes_of(lead)
            .iter()
            .map(|n| n.to_string())
            .collect()
    }
}

fn count(user: &FakeUser, needle: &str) -> usize {
    user.history()
        .iter()
        .filter(|m| m.text.contains(needle))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_any_side_reaches_every_other_side_once() {
    let w = World::start().await;
    let service = w.run("1s", "30d");
    let tz = w.yc.timezone();

    // 1. Moved in the schedule (webhook): the lead gets a note, the client the new time.
    let (ann, rec, lead) = w.book(3001, "+7 912 345-67-89").await;
    let new_local = rec.local + chrono::Duration::days(1) + chrono::Duration::hours(1);
    w.yc.salon_move(rec.id, new_local);
    w.yclients_hook(&w.yc.record_webhook(rec.id, "update"))
        .await;
    let told = ann.wait_for_text("Салон перенёс", WAIT).await;
    let new_shown = new_local.format("%d.%m %H:%M").to_string();
    assert!(
        told.text.contains(&new_shown),
        "{} / {new_shown}",
        told.text
    );
    until("the move note", WAIT, || {
        w.notes_text(&lead).contains("перенесена")
    })
    .await;
    assert!(
        w.notes_text(&lead)
            .contains(&new_local.format("%d.%m.%Y %H:%M").to_string()),
        "{}",
        w.notes_text(&lead)
    );

    // 2. Our own change echoed back: the client moves it in the chat, YClients reports that
    // very move; nothing more happens (no "the salon moved" notice, one note only).
    press_label(&ann, "Мои записи").await;
    press_label(&ann, "Перенести").await;
    press_kind(&ann, "d:").await;
    press_kind(&ann, "t:").await;
    press_label(&ann, "Подтвердить").await;
    ann.wait_for_text("перенесена", WAIT).await;
    until("the client's move note", WAIT, || {
        w.notes_text(&lead).matches("перенесена").count() >= 2
    })
    .await;
    w.yclients_hook(&w.yc.record_webhook(rec.id, "update"))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count(&ann, "Салон перенёс"), 1, "{:#?}", ann.history());
    assert_eq!(
        w.notes_text(&lead).matches("перенесена").count(),
        2,
        "{}",
        w.notes_text(&lead)
    );

    // 3. Cancelled in the schedule (webhook): the lead moves to lost, the client is told.
    w.yc.salon_delete(rec.id);
    w.yclients_hook(&w.yc.record_webhook(rec.id, "delete"))
        .await;
    ann.wait_for_text("Салон отменил", WAIT).await;
    until("the lead lost", WAIT, || {
        w.amo.lead(&lead)["status_id"] == json!(fake_amo::LOST)
    })
    .await;

    // 4. A webhook lost on purpose: the salon moves Boris' visit and nothing tells us; the
    // poll (every second here) finds it within one interval and a bit.
    let (boris, rec_b, lead_b) = w.book(3002, "+7 922 111-22-33").await;
    let moved_b = rec_b.local + chrono::Duration::hours(2);
    w.yc.salon_move(rec_b.id, moved_b);
    let told = boris
        .wait_for_text("Салон перенёс", Duration::from_secs(5))
        .await;
    assert!(
        told.text
            .contains(&moved_b.format("%d.%m %H:%M").to_string()),
        "{}",
        told.text
    );
    until("the note from the poll", WAIT, || {
        w.notes_text(&lead_b).contains("перенесена")
    })
    .await;
    // And the poll does not repeat itself.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(count(&boris, "Салон перенёс"), 1);

    // 5. A manager cancels in the CRM: the record goes from the schedule, the client is told,
    // and nothing bounces back to the CRM.
    let (vera, rec_v, lead_v) = w.book(3003, "+7 933 444-55-66").await;
    let patches_before = w.amo.count("PATCH", &format!("/api/v4/leads/{lead_v}"))
        + w.amo.count("PATCH", "/api/v4/leads");
    w.amo_status_hook(&lead_v, fake_amo::LOST, fake_amo::STATUS_NEW)
        .await;
    vera.wait_for_text("Салон отменил", WAIT).await;
    until("the record deleted", WAIT, || {
        w.yc.records().iter().any(|r| r.id == rec_v.id && r.deleted)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let patches_after = w.amo.count("PATCH", &format!("/api/v4/leads/{lead_v}"))
        + w.amo.count("PATCH", "/api/v4/leads");
    assert_eq!(patches_before, patches_after, "no echo to the CRM");
    assert_eq!(count(&vera, "Салон отменил"), 1);

    service.stop();
    let store = Store::connect(&w.store_url()).await.unwrap();
    let statuses: Vec<BookingStatus> = store
        .bookings(&bid("default"))
        .await
        .unwrap()
        .iter()
        .map(|b| b.status)
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == BookingStatus::CancelledByBusiness)
            .count(),
        2,
        "{statuses:?}"
    );
    let _ = tz;
}

/// While zapis itself writes a change to the schedule, the schedule shows it before our store
/// does. A poll (every second here) in that window must not credit the salon with it: the vendor's
/// answers are held 2.5 s, so at least two polls land in each window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_we_are_writing_is_not_taken_for_the_salons() {
    let w = World::start().await;
    let service = w.run("1s", "30d");
    let hold = Duration::from_millis(2500);

    // The client's move in the chat.
    let (ann, rec, lead) = w.book(3101, "+7 912 345-67-89").await;
    w.yc.hold_next_answer(reqwest::Method::PUT, "/api/v1/book_record/", hold);
    press_label(&ann, "Мои записи").await;
    press_label(&ann, "Перенести").await;
    press_kind(&ann, "d:").await;
    press_kind(&ann, "t:").await;
    press_label(&ann, "Подтвердить").await;
    ann.wait_for_text("перенесена", WAIT).await;
    until("the client's move note", WAIT, || {
        w.notes_text(&lead).contains("перенесена")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let notes = w.notes_text(&lead);
    assert_eq!(notes.matches("перенесена").count(), 1, "{notes}");
    assert!(notes.contains("клиентом"), "{notes}");
    assert_eq!(count(&ann, "Салон перенёс"), 0, "{:#?}", ann.history());

    // The client's cancel in the chat.
    w.yc.hold_next_answer(reqwest::Method::DELETE, "/api/v1/user/records/", hold);
    press_label(&ann, "Мои записи").await;
    press_label(&ann, "Отменить").await;
    press_label(&ann, "Да, отменить").await;
    ann.wait_for_text("Запись отменена", WAIT).await;
    until("the lead lost", WAIT, || {
        w.amo.lead(&lead)["status_id"] == json!(fake_amo::LOST)
    })
    .await;
    assert!(
        w.yc.records().iter().any(|r| r.id == rec.id && r.deleted),
        "the record is gone from the schedule"
    );

    // A manager's cancel in the CRM: nothing goes back to the CRM.
    let (vera, rec_v, lead_v) = w.book(3102, "+7 933 444-55-66").await;
    let patches = || {
        w.amo.count("PATCH", &format!("/api/v4/leads/{lead_v}"))
            + w.amo.count("PATCH", "/api/v4/leads")
    };
    let patches_before = patches();
    w.yc.hold_next_answer(reqwest::Method::DELETE, "/api/v1/user/records/", hold);
    w.amo_status_hook(&lead_v, fake_amo::LOST, fake_amo::STATUS_NEW)
        .await;
    vera.wait_for_text("Салон отменил", WAIT).await;
    until("the record deleted", WAIT, || {
        w.yc.records().iter().any(|r| r.id == rec_v.id && r.deleted)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(patches(), patches_before, "no echo to the CRM");
    assert_eq!(count(&vera, "Салон отменил"), 1, "{:#?}", vera.history());

    service.stop();
    let store = Store::connect(&w.store_url()).await.unwrap();
    let mut statuses: Vec<BookingStatus> = store
        .bookings(&bid("default"))
        .await
        .unwrap()
        .iter()
        .map(|b| b.status)
        .collect();
    statuses.sort_by_key(|s| s.as_str());
    assert_eq!(
        statuses,
        vec![
            BookingStatus::CancelledByBusiness,
            BookingStatus::CancelledByClient
        ],
        "the client's cancel is the client's, the manager's the business's"
    );
    assert_eq!(count(&ann, "Салон отменил"), 0, "{:#?}", ann.history());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_fires_once_across_restarts_and_its_cancel_cancels_everywhere() {
    let w = World::start().await;
    let service = w.run("5m", "30d");
    let tz = w.yc.timezone();
    let start_of = |rec: &FakeRecord| {
        rec.local
            .and_local_timezone(tz)
            .single()
            .expect("local time")
            .with_timezone(&Utc)
    };
    // The first free slot can start within a minute of now (a run just before the hour);
    // a reminder needs some lead, so such a visit is left and the next one booked.
    let mut chat = 4001;
    let (ann, rec, lead) = loop {
        let (user, rec, lead) = w.book(chat, "+7 912 345-67-89").await;
        if start_of(&rec) - Utc::now() > chrono::Duration::minutes(3) || chat > 4030 {
            break (user, rec, lead);
        }
        chat += 10;
    };
    service.stop();

    // The visit's start, and an offset that puts the reminder's moment three seconds ahead.
    let start = start_of(&rec);
    let offset = (start - Utc::now()).num_seconds() - 3;
    let service = w.run_with("5m", &format!("{offset}s"), |s| {
        s.set("booking.yclients.user_token", USER_TOKEN)
    });
    let reminder = ann.wait_for_text("Напоминаем", WAIT).await;
    assert!(
        reminder
            .text
            .contains(&rec.local.format("%d.%m %H:%M").to_string()),
        "the salon's local time: {}",
        reminder.text
    );
    let button = |label: &str| {
        reminder
            .buttons
            .iter()
            .flatten()
            .find(|b| b.label.contains(label))
            .unwrap_or_else(|| panic!("{label}: {reminder:#?}"))
            .data
            .clone()
    };
    let cancel = button("Отменить");
    let come = button("Приду");
    button("Перенести");
    // A restart sends nothing again.
    service.stop();
    let service = w.run_with("5m", &format!("{offset}s"), |s| {
        s.set("booking.yclients.user_token", USER_TOKEN)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&ann, "Напоминаем"), 1, "{:#?}", ann.history());

    // "I'll come": the schedule's record is marked confirmed (attendance 2) and keeps the rest.
    ann.press_on(reminder.message_id, &come);
    ann.wait_for_text("Спасибо, ждём вас", WAIT).await;
    until("the record confirmed", WAIT, || {
        w.yc.record(rec.id).is_some_and(|r| r.attendance == 2)
    })
    .await;
    let confirmed = w.yc.record(rec.id).expect("record");
    assert_eq!(
        (
            confirmed.local,
            confirmed.staff_id,
            &confirmed.phone,
            &confirmed.api_id
        ),
        (rec.local, rec.staff_id, &rec.phone, &rec.api_id),
        "the full update kept the record as it was"
    );
    assert_eq!(w.yc.record_updates(), 1);

    // "Cancel" from the reminder: asked once, then cancelled in the schedule, the CRM and here.
    ann.press_on(reminder.message_id, &cancel);
    // The question replaces the reminder in place, above the later "thank you".
    let ask = ann.wait_for_text("Отменить запись?", WAIT).await;
    let yes = ask
        .buttons
        .iter()
        .flatten()
        .find(|b| b.label.contains("Да, отменить"))
        .expect("yes button")
        .data
        .clone();
    ann.press_on(ask.message_id, &yes);
    ann.wait_for_text("Запись отменена", WAIT).await;
    until("the record deleted", WAIT, || {
        w.yc.records().iter().any(|r| r.id == rec.id && r.deleted)
    })
    .await;
    until("the lead lost", WAIT, || {
        w.amo.lead(&lead)["status_id"] == json!(fake_amo::LOST)
    })
    .await;
    service.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_an_admin_makes_for_a_known_client_becomes_their_booking() {
    let w = World::start().await;
    let service = w.run_with("5m", "30d", |s| {
        s.set("booking.yclients.user_token", USER_TOKEN)
            .set("sync.admin_bookings", "lead")
    });
    let (ann, rec, _lead) = w.book(5001, "+7 912 345-67-89").await;
    let leads_before = w.amo.leads().len();

    // The front desk books Ann by phone, typed as YClients stores it, two days later.
    let at = rec.local + chrono::Duration::days(2);
    let admin_rec =
        w.yc.admin_book_for(rec.staff_id, rec.service_id, at, "79123456789", "Анна");
    w.yclients_hook(&w.yc.record_webhook(admin_rec, "create"))
        .await;
    let told = ann.wait_for_text("Вы записаны", WAIT).await;
    assert!(
        told.text.contains(&at.format("%d.%m %H:%M").to_string()),
        "{}",
        told.text
    );
    until("the lead of the admin's record", WAIT, || {
        w.amo.leads().len() == leads_before + 1
    })
    .await;

    // A stranger booked the same way stays the salon's business; a replayed event changes
    // nothing.
    let stranger = w.yc.admin_book_for(
        rec.staff_id,
        rec.service_id,
        at + chrono::Duration::hours(2),
        "79990001122",
        "Пётр",
    );
    w.yclients_hook(&w.yc.record_webhook(stranger, "create"))
        .await;
    w.yclients_hook(&w.yc.record_webhook(admin_rec, "update"))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count(&ann, "Вы записаны"), 1, "{:#?}", ann.history());
    assert_eq!(w.amo.leads().len(), leads_before + 1);

    // The booking is Ann's now: she sees it second in her list, cancels it from the chat, and
    // the salon's record and its lead go.
    let admin_lead = w.amo.leads().into_iter().last().expect("lead")["id"].to_string();
    press_label(&ann, "Мои записи").await;
    ann.wait_for_text("У вас 2 записи", WAIT).await;
    press_label(&ann, "Отменить 2").await;
    press_label(&ann, "Да, отменить").await;
    ann.wait_for_text("Запись отменена", WAIT).await;
    until("the admin's record deleted", WAIT, || {
        w.yc.record(admin_rec).is_some_and(|r| r.deleted)
    })
    .await;
    until("its lead lost", WAIT, || {
        w.amo.lead(&admin_lead)["status_id"] == json!(fake_amo::LOST)
    })
    .await;
    assert!(
        !w.yc.record(rec.id).expect("record").deleted,
        "the first visit stays"
    );
    service.stop();

    let store = Store::connect(&w.store_url()).await.unwrap();
    let bookings = store.bookings(&bid("default")).await.unwrap();
    assert_eq!(bookings.len(), 2, "Ann's two bookings, not the stranger's");
    let adopted = bookings
        .iter()
        .find(|b| b.external_id.as_deref() == Some(admin_rec.to_string().as_str()))
        .expect("the admin's record is a booking of ours");
    assert_eq!(adopted.status, BookingStatus::CancelledByClient);
    assert_eq!(adopted.client_name, "Анна");
    assert_eq!(adopted.service_name, "Женская стрижка");
    assert_eq!(
        adopted.chat.as_ref().map(|c| c.chat_id.clone()),
        Some("5001".to_string())
    );
}

#[derive(Debug, Clone, Copy)]
enum RecordFault {
    /// `book_record` writes the record, its answer arrives after our timeout.
    AnswerLost,
    /// `book_record` answers 500 once and writes nothing.
    ServerErrorOnce,
    /// `book_check` answers 500 once.
    CheckErrorOnce,
}

/// One booking through the chat with one fault at a step of the schedule write: exactly one
/// record (linked to the booking), one contact, one lead, one transcript, one task, and the
/// client told once that they are booked (after "we saved your request").
async fn one_fault_one_booking(fault: RecordFault) {
    use support::e2e::book_until_confirm;
    let w = World::start().await;
    let service = w.run_with("5m", "30d", |s| {
        s.set("booking.yclients.user_token", USER_TOKEN)
            .set("booking.yclients.timeout_secs", 1)
            .set("booking.yclients.max_retries", 0)
    });
    let user = w.tg.user(6001);
    user.send_text("/start src_fault");
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    book_until_confirm(&user, "Женская стрижка", "+7 912 345-67-89", "Анна").await;
    let post = reqwest::Method::POST;
    match fault {
        RecordFault::AnswerLost => {
            w.yc.hold_next_answer(post, "/api/v1/book_record/", Duration::from_secs(3))
        }
        RecordFault::ServerErrorOnce => w.yc.fail_next(post, "/api/v1/book_record/", 500),
        RecordFault::CheckErrorOnce => w.yc.fail_next(post, "/api/v1/book_check/", 500),
    }
    press_label(&user, "Подтвердить").await;
    user.wait_for_text("не отвечает", WAIT).await;
    user.wait_for_text("подтвердило вашу запись", Duration::from_secs(40))
        .await;
    until("the CRM task", WAIT, || !w.amo.tasks().is_empty()).await;
    // Time for anything doubled to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    service.stop();

    let records = w.yc.records();
    assert_eq!(records.len(), 1, "{fault:?}: {records:#?}");
    let record = &records[0];
    assert!(!record.deleted, "{fault:?}");
    let store = Store::connect(&w.store_url()).await.unwrap();
    let bookings = store.bookings(&bid("default")).await.unwrap();
    assert_eq!(bookings.len(), 1, "{fault:?}");
    let booking = &bookings[0];
    assert_eq!(booking.status, BookingStatus::Booked, "{fault:?}");
    assert_eq!(record.api_id, booking.id, "{fault:?}");
    let linked = booking.external_id.as_deref().expect("linked");
    assert_eq!(
        zapis::booking::record_key(linked),
        record.id.to_string(),
        "{fault:?}"
    );
    assert_eq!(count(&user, "подтвердило вашу запись"), 1, "{fault:?}");
    assert_eq!(
        count(&user, "уже занято"),
        0,
        "{fault:?}: {:#?}",
        user.history()
    );
    assert_eq!(w.amo.contacts().len(), 1, "{fault:?}");
    let leads = w.amo.leads();
    assert_eq!(leads.len(), 1, "{fault:?}");
    let lead = leads[0]["id"].to_string();
    let transcripts = w
        .amo
        .notes_of(&lead)
        .iter()
        .filter(|n| n.to_string().contains("/start src_fault"))
        .count();
    assert_eq!(transcripts, 1, "{fault:?}");
    assert_eq!(w.amo.tasks().len(), 1, "{fault:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_answer_was_lost_is_found_and_linked_not_denied() {
    one_fault_one_booking(RecordFault::AnswerLost).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_once_at_the_record_step_books_once() {
    one_fault_one_booking(RecordFault::ServerErrorOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_once_at_the_check_step_books_once() {
    one_fault_one_booking(RecordFault::CheckErrorOnce).await;
}
