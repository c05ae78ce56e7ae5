//! Soak: three simulated days on a fake clock, a few hundred bookings made through the real
//! conversation against a fake YClients and a fake amoCRM over HTTP, with random changes on
//! every side (the salon moves, cancels and marks visits, sometimes without a webhook; clients
//! cancel and confirm from reminders; managers cancel in the CRM) and random faults (the
//! schedule down, the CRM failing). Afterwards a consistency checker compares our store with
//! each fake and with the notices the clients got; its findings must be none.
//!
//! The CRM here is an in-memory fake of the `Crm` trait: our amoCRM client paces itself to the
//! vendor's 7 requests a second, which would stretch a few hundred bookings over minutes. The
//! amoCRM connector over HTTP is covered by tests/amocrm.rs and tests/two_way_e2e.rs; this test
//! is about the sync logic staying consistent under churn.

use crate::support;
use crate::support::bid;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Timelike, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::app::Settings;
use support::fake_amocrm as fake_amo;
use support::fake_yclients::{Down, FakeSalon, FakeYclients, PARTNER_TOKEN, USER_TOKEN};
use zapis::app::App;
use zapis::clock::{Clock, FakeClock};
use zapis::connectors::Failure;
use zapis::conversation::{ChatEvent, Conversations};
use zapis::crm::{
    ContactRef, ContactRequest, CreatedLead, Crm, CrmError, CrmLead, LeadRequest, Stage,
    TaskRequest, TranscriptLine,
};
use zapis::dialog::Reply;
use zapis::domain::{BookingStatus, Channel, ChatRef};
use zapis::lifecycle::effects::NotifyJob;
use zapis::sync::{Delivered, DeliveryError, Engine, Job, JobContext, JobHandler};

/// A CRM in memory, failing now and then like a real one.
#[derive(Default)]
struct MemoryCrm {
    state: Mutex<CrmState>,
}

#[derive(Default)]
struct CrmState {
    next: u64,
    /// lead id → (booking id, stage, notes)
    leads: HashMap<String, (String, i64, Vec<String>)>,
    /// Fail the next n calls with a temporary error.
    failing: u32,
}

impl MemoryCrm {
    fn call(&self) -> Result<std::sync::MutexGuard<'_, CrmState>, CrmError> {
        let mut s = self.state.lock().unwrap();
        if s.failing > 0 {
            s.failing -= 1;
            return Err(CrmError::from(Failure::transient("503").with_status(503)));
        }
        s.next += 1;
        Ok(s)
    }

    fn fail_next(&self, n: u32) {
        self.state.lock().unwrap().failing += n;
    }

    fn lead_of(&self, booking_id: &str) -> Option<(String, i64)> {
        let s = self.state.lock().unwrap();
        s.leads
            .iter()
            .find(|(_, (b, _, _))| b == booking_id)
            .map(|(id, (_, st, _))| (id.clone(), *st))
    }

    fn leads(&self) -> usize {
        self.state.lock().unwrap().leads.len()
    }
}

#[async_trait]
impl Crm for MemoryCrm {
    fn system(&self) -> zapis::domain::System {
        zapis::domain::System::AmoCrm
    }
    async fn find_or_create_contact(&self, _req: &ContactRequest) -> Result<ContactRef, CrmError> {
        let s = self.call()?;
        Ok(ContactRef {
            id: format!("c{}", s.next),
            created: true,
        })
    }
    async fn create_lead(&self, req: &LeadRequest) -> Result<CreatedLead, CrmError> {
        let mut s = self.call()?;
        let id = format!("{}", 1000 + s.next);
        s.leads.insert(
            id.clone(),
            (req.booking.id.to_string(), fake_amo::STATUS_NEW, Vec::new()),
        );
        Ok(CreatedLead {
            lead_id: id,
            contact: None,
            note_ids: Vec::new(),
        })
    }
    async fn find_lead_by_booking(&self, booking_id: &str) -> Result<Option<CrmLead>, CrmError> {
        let s = self.call()?;
        Ok(s.leads
            .iter()
            .find(|(_, (b, _, _))| b == booking_id)
            .map(|(id, (_, st, _))| CrmLead {
                id: id.clone(),
                status_id: *st,
                pipeline_id: fake_amo::PIPELINE_ID,
                price: None,
                name: None,
            }))
    }
    async fn add_notes(
        &self,
        lead_id: &str,
        transcript: &[TranscriptLine],
    ) -> Result<Vec<String>, CrmError> {
        let mut s = self.call()?;
        if let Some(l) = s.leads.get_mut(lead_id) {
            l.2.extend(transcript.iter().map(|t| t.text.clone()));
        }
        Ok(Vec::new())
    }
    async fn ensure_transcript(
        &self,
        lead_id: &str,
        transcript: &[TranscriptLine],
    ) -> Result<Vec<String>, CrmError> {
        self.add_notes(lead_id, transcript).await
    }
    async fn add_note(&self, lead_id: &str, text: &str) -> Result<String, CrmError> {
        let mut s = self.call()?;
        match s.leads.get_mut(lead_id) {
            Some(l) => {
                l.2.push(text.to_string());
                Ok(format!("n{}", s.next))
            }
            None => Err(CrmError::from(
                Failure::permanent(format!("no lead {lead_id}")).with_status(404),
            )),
        }
    }
    async fn create_task(&self, _req: &TaskRequest) -> Result<String, CrmError> {
        let s = self.call()?;
        Ok(format!("t{}", s.next))
    }
    async fn move_lead(
        &self,
        lead_id: &str,
        stage: &Stage,
        note: Option<&str>,
    ) -> Result<(), CrmError> {
        let mut s = self.call()?;
        let status = match stage {
            Stage::New => fake_amo::STATUS_NEW,
            Stage::Cancelled => fake_amo::LOST,
            Stage::Done => fake_amo::WON,
            Stage::Custom { status_id, .. } => *status_id,
        };
        match s.leads.get_mut(lead_id) {
            Some(l) => {
                l.1 = status;
                l.2.extend(note.map(str::to_string));
                Ok(())
            }
            None => Err(CrmError::from(
                Failure::permanent(format!("no lead {lead_id}")).with_status(404),
            )),
        }
    }
    async fn find_task(&self, _req: &TaskRequest) -> Result<Option<String>, CrmError> {
        let _calls = self.call()?;
        Ok(None)
    }
    async fn cancelled_among(&self, lead_ids: &[String]) -> Result<Vec<String>, CrmError> {
        let s = self.call()?;
        Ok(lead_ids
            .iter()
            .filter(|id| s.leads.get(*id).is_some_and(|l| l.1 == fake_amo::LOST))
            .cloned()
            .collect())
    }
    async fn get_lead(&self, lead_id: &str) -> Result<Option<CrmLead>, CrmError> {
        let s = self.call()?;
        Ok(s.leads.get(lead_id).map(|(_, st, _)| CrmLead {
            id: lead_id.to_string(),
            status_id: *st,
            pipeline_id: fake_amo::PIPELINE_ID,
            price: None,
            name: None,
        }))
    }
}

/// The chat side: every notice the engine delivers, by idempotency key.
#[derive(Default)]
struct Chats {
    notices: Mutex<Vec<(String, NotifyJob)>>,
}

#[async_trait]
impl JobHandler for Chats {
    async fn handle(&self, job: &Job, _ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        let notice: NotifyJob = serde_json::from_value(job.payload.clone())
            .map_err(|e| DeliveryError::permanent(e.to_string()))?;
        self.notices
            .lock()
            .unwrap()
            .push((job.idempotency_key.clone(), notice));
        Ok(Delivered::done())
    }
}

fn payload(data: &str) -> &str {
    data.split_once('|').map_or(data, |(_, p)| p)
}

fn button(replies: &[Reply], prefix: &str, rng: &mut StdRng) -> Option<String> {
    let last = replies.iter().rev().find(|r| !r.buttons.is_empty())?;
    let all: Vec<&String> = last
        .buttons
        .iter()
        .flatten()
        .map(|b| &b.data)
        .filter(|d| payload(d).starts_with(prefix))
        .collect();
    if all.is_empty() {
        return None;
    }
    Some(all[rng.random_range(0..all.len())].clone())
}

/// The whole booking flow in one chat; `None` when there was nothing free or the schedule
/// said no.
async fn book_in_chat(app: &App, chat: &ChatRef, phone: &str, rng: &mut StdRng) -> Option<()> {
    let c = &app.conversations;
    let say = |e: ChatEvent| async move { c.handle(chat, Some("ru"), e).await.ok() };
    let r = say(ChatEvent::Start { payload: None }).await?;
    let r = say(ChatEvent::button(button(&r, "B", rng)?)).await?;
    let r = say(ChatEvent::button(button(&r, "s:", rng)?)).await?;
    let r = say(ChatEvent::button(button(&r, "A", rng)?)).await?;
    let r = say(ChatEvent::button(button(&r, "d:", rng)?)).await?;
    let mut r = say(ChatEvent::button(button(&r, "t:", rng)?)).await?;
    // A new chat agrees to the personal-data policy before giving the phone.
    if let Some(agree) = button(&r, "G", rng) {
        r = say(ChatEvent::button(agree)).await?;
    }
    if r.iter().any(|x| x.request_contact) {
        r = say(ChatEvent::Text(phone.into())).await?;
    }
    if button(&r, "K", rng).is_none() {
        r = say(ChatEvent::Text("Клиент".into())).await?;
    }
    let r = say(ChatEvent::button(button(&r, "K", rng)?)).await?;
    r.iter()
        .any(|x| x.text.contains("вы записаны"))
        .then_some(())
}

fn amo_hook(lead_id: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("leads[status][0][id]", lead_id)
        .append_pair("leads[status][0][status_id]", &fake_amo::LOST.to_string())
        .append_pair(
            "leads[status][0][old_status_id]",
            &fake_amo::STATUS_NEW.to_string(),
        )
        .append_pair(
            "leads[status][0][pipeline_id]",
            &fake_amo::PIPELINE_ID.to_string(),
        )
        .append_pair("account[subdomain]", "test000002")
        .finish()
}

async fn deliver(app: &App, source: &str, body: &str, now: DateTime<Utc>) {
    let dedup = format!("{source}-{}-{}", now.timestamp_millis(), body.len());
    zapis::sync::inbox::receive(
        &app.store,
        &app.settings.business.id,
        source,
        &dedup,
        &Default::default(),
        body,
        now,
    )
    .await
    .expect("inbox");
}

async fn drain(engine: &Engine) {
    for _ in 0..20 {
        if engine.run_due().await.expect("engine") == 0 {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_days_of_random_changes_end_with_every_system_agreeing() {
    let started = std::time::Instant::now();
    let mut rng = StdRng::seed_from_u64(20261129);
    let yc = FakeYclients::start(FakeSalon::standard(777, chrono_tz::Asia::Yekaterinburg)).await;
    yc.set_rate_limit(100_000);
    let tz = yc.timezone();
    // amoCRM's address is unreachable: the soak swaps in its own CRM.
    let mut config = Settings::new("sqlite::memory:")
        .remove("business.id")
        .set("business.name", "Салон «Лилия»")
        .set("business.timezone", "Asia/Yekaterinburg")
        .set("business.address", "ул. Ленина, 1")
        .set("booking.system", "yclients")
        .set("booking.yclients.base_url", yc.base_url.to_string())
        .set("booking.yclients.company_id", 777)
        .set("booking.yclients.partner_token", PARTNER_TOKEN)
        .set("booking.yclients.user_token", USER_TOKEN)
        .set("crm.system", "amocrm")
        .set("crm.amocrm.base_url", "http://127.0.0.1:9/")
        .set("crm.amocrm.token", fake_amo::LONG_LIVED_TOKEN)
        .set("crm.amocrm.pipeline_id", fake_amo::PIPELINE_ID)
        .set("crm.amocrm.new_status_id", fake_amo::STATUS_NEW)
        .set("crm.amocrm.booking_id_field_id", fake_amo::FIELD_BOOKING_ID)
        .set("crm.amocrm.loss_reason_id", 7)
        .config();
    // The fakes take any pace; the soak is about correctness, not the vendors' ceilings.
    if let Some(y) = config.booking.yclients.as_mut() {
        y.rate_limit_per_second = 10_000;
        y.max_retries = 0;
    }
    let t0 = (Utc::now() + Duration::hours(1))
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap();
    let clock = Arc::new(FakeClock::new(t0));
    let mut app = App::build(config, clock.clone()).await.expect("app");
    let crm = Arc::new(MemoryCrm::default());
    app.crm = Some(crm.clone());
    app.conversations = Arc::new(
        Conversations::new(
            app.store.clone(),
            app.booking.clone(),
            app.settings.business.clone(),
            clock.clone(),
        )
        .with_crm(zapis::domain::System::AmoCrm),
    );
    let chats = Arc::new(Chats::default());
    let mut engine = app.engine();
    engine.register(zapis::domain::System::Telegram, chats.clone());
    let reconciler = app.reconciler();
    let reminders = app.reminders();

    let mut made = 0usize;
    let mut next_chat = 10_000i64;
    let step = Duration::minutes(30);
    let steps = 3 * 24 * 2;
    let steps = std::env::var("SOAK_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(steps);
    let mut lost_webhooks = 0;
    let (mut t_book, mut t_drain, mut t_poll) = Default::default();
    let (mut poll_calls, mut polls) = (0usize, 0usize);
    for i in 0..steps {
        let now = clock.now();
        // Faults: the schedule down for a step now and then, the CRM failing a few answers.
        let down = rng.random_bool(0.05);
        if down {
            yc.set_down(Down::Unavailable);
        }
        if rng.random_bool(0.1) {
            crm.fail_next(rng.random_range(1..4));
        }
        // New bookings from new chats, up to three at a time as clients do. Concurrent
        // clients may race for one slot and lose it, so the count made varies a little with
        // timing; three a step keeps it well above two hundred.
        if !down {
            let mut attempts = Vec::new();
            for _ in 0..3 {
                if !rng.random_bool(0.85) {
                    continue;
                }
                next_chat += 1;
                let chat = ChatRef::new(Channel::Telegram, next_chat.to_string());
                let phone = format!("+7912{:07}", next_chat);
                attempts.push((chat, phone, StdRng::seed_from_u64(rng.random())));
            }
            let t = std::time::Instant::now();
            let app = &app;
            let done = futures::future::join_all(attempts.into_iter().map(
                |(chat, phone, mut rng)| async move {
                    book_in_chat(app, &chat, &phone, &mut rng).await.is_some()
                },
            ))
            .await;
            made += done.into_iter().filter(|ok| *ok).count();
            t_book += t.elapsed();
        }
        // Changes by the salon, by clients and by managers on live bookings.
        let live: Vec<_> = app
            .store
            .active_bookings_between(
                &bid("default"),
                now - Duration::days(1),
                now + Duration::days(90),
            )
            .await
            .unwrap();
        for b in live.iter().filter(|b| b.external_id.is_some()) {
            let Some(record_id) = b
                .external_id
                .as_deref()
                .and_then(|e| e.split(':').next())
                .and_then(|id| id.parse::<u64>().ok())
            else {
                continue;
            };
            let roll: f64 = rng.random();
            let webhook = rng.random_bool(0.7);
            if b.start <= now {
                // After the start the salon marks the visit (most of the time).
                if roll < 0.5 {
                    yc.salon_mark_attendance(record_id, if rng.random_bool(0.8) { 1 } else { -1 });
                    if webhook && !down {
                        let hook = yc.record_webhook(record_id, "update");
                        deliver(&app, "yclients", &hook.to_string(), now).await;
                    } else {
                        lost_webhooks += 1;
                    }
                }
                continue;
            }
            if roll < 0.006 {
                yc.salon_delete(record_id);
                if webhook && !down {
                    let hook = yc.record_webhook(record_id, "delete");
                    deliver(&app, "yclients", &hook.to_string(), now).await;
                } else {
                    lost_webhooks += 1;
                }
            } else if roll < 0.012 {
                let local = b.start.with_timezone(&tz).naive_local()
                    + Duration::minutes(30 * rng.random_range(1..6));
                yc.salon_move(record_id, local);
                if webhook && !down {
                    let hook = yc.record_webhook(record_id, "update");
                    deliver(&app, "yclients", &hook.to_string(), now).await;
                } else {
                    lost_webhooks += 1;
                }
            } else if roll < 0.017 && !down {
                // The client answers a reminder with "Cancel", then "Yes".
                let chat = b.chat.clone().expect("chat");
                let r = app
                    .conversations
                    .handle(
                        &chat,
                        Some("ru"),
                        ChatEvent::button(format!("0|Rc:{}", b.id)),
                    )
                    .await
                    .unwrap();
                if let Some(yes) = button(&r, "Cy", &mut rng) {
                    app.conversations
                        .handle(&chat, Some("ru"), ChatEvent::button(yes))
                        .await
                        .unwrap();
                }
            } else if roll < 0.03 {
                let chat = b.chat.clone().expect("chat");
                app.conversations
                    .handle(
                        &chat,
                        Some("ru"),
                        ChatEvent::button(format!("0|Rk:{}", b.id)),
                    )
                    .await
                    .unwrap();
            } else if roll < 0.034
                && let Ok(Some(lead)) = app
                    .store
                    .external_id(
                        &bid("default"),
                        "booking",
                        &b.id,
                        zapis::domain::System::AmoCrm,
                    )
                    .await
            {
                deliver(&app, "amocrm", &amo_hook(&lead), now).await;
            }
        }
        let t = std::time::Instant::now();
        drain(&engine).await;
        t_drain += t.elapsed();
        let t = std::time::Instant::now();
        if i % 2 == 0 && !down {
            let r = reconciler.poll(now).await.unwrap();
            poll_calls += r.calls;
            polls += 1;
        }
        t_poll += t.elapsed();
        reminders.tick(now).await.unwrap();
        let t = std::time::Instant::now();
        drain(&engine).await;
        t_drain += t.elapsed();
        if down {
            yc.set_down(Down::Up);
        }
        clock.advance(step);
    }
    // Quiet: faults heal, the poll runs, retries come due and the queue empties.
    for _ in 0..12 {
        let now = clock.now();
        reconciler.poll(now).await.unwrap();
        drain(&engine).await;
        clock.advance(Duration::minutes(15));
    }

    // ---- the consistency checker --------------------------------------------------------
    let mut findings: Vec<String> = Vec::new();
    let records: HashMap<String, _> = yc
        .records()
        .into_iter()
        .map(|r| (r.api_id.clone(), r))
        .collect();
    let notices = chats.notices.lock().unwrap().clone();
    let bookings = app.store.bookings(&bid("default")).await.unwrap();
    let mut by_status: HashMap<&str, usize> = HashMap::new();
    for b in &bookings {
        *by_status.entry(b.status.as_str()).or_default() += 1;
        if b.status == BookingStatus::Failed {
            continue;
        }
        let Some(rec) = records.get(b.id.as_str()) else {
            findings.push(format!("{}: no record in the schedule", b.id));
            continue;
        };
        let rec_start = rec
            .local
            .and_local_timezone(tz)
            .single()
            .map(|t| t.with_timezone(&Utc));
        match b.status {
            BookingStatus::Booked | BookingStatus::Requested => {
                if rec.deleted {
                    findings.push(format!("{}: live here, deleted in the schedule", b.id));
                }
                // 2 is "confirmed": the client's "I'll come" must have reached the schedule,
                // and nothing else may have.
                let confirmed = app.store.visit_confirmed_at(&b.id).await.unwrap().is_some();
                let expected = if confirmed { 2 } else { 0 };
                if rec.attendance != expected {
                    findings.push(format!(
                        "{}: live here (confirmed: {confirmed}), attended {} there",
                        b.id, rec.attendance
                    ));
                }
                if rec_start != Some(b.start) {
                    findings.push(format!(
                        "{}: at {} here, {:?} there",
                        b.id, b.start, rec_start
                    ));
                }
            }
            BookingStatus::CancelledByBusiness | BookingStatus::CancelledByClient
                if !rec.deleted =>
            {
                findings.push(format!("{}: cancelled here, live in the schedule", b.id));
            }
            BookingStatus::Visited if rec.attendance != 1 => {
                findings.push(format!(
                    "{}: visited here, attendance {}",
                    b.id, rec.attendance
                ));
            }
            BookingStatus::NoShow if rec.attendance != -1 => {
                findings.push(format!(
                    "{}: no-show here, attendance {}",
                    b.id, rec.attendance
                ));
            }
            _ => {}
        }
        let Some((lead, status)) = crm.lead_of(&b.id) else {
            findings.push(format!("{}: no lead", b.id));
            continue;
        };
        let cancelled_by_manager = app
            .store
            .booking_events(&bid("default"), &b.id)
            .await
            .unwrap()
            .iter()
            .any(|e| e.origin == "crm");
        let want = match b.status {
            BookingStatus::CancelledByBusiness | BookingStatus::CancelledByClient
                if cancelled_by_manager =>
            {
                // The manager moved it in the CRM itself; we send nothing back.
                None
            }
            BookingStatus::CancelledByBusiness | BookingStatus::CancelledByClient => {
                Some(fake_amo::LOST)
            }
            BookingStatus::Visited => Some(fake_amo::WON),
            _ => Some(fake_amo::STATUS_NEW),
        };
        if let Some(want) = want
            && status != want
        {
            findings.push(format!(
                "{}: {} here, lead {} in stage {status}",
                b.id,
                b.status.as_str(),
                lead
            ));
        }
        // The client heard of a business cancellation exactly once, and never of one they
        // made themselves.
        let told = notices
            .iter()
            .filter(|(k, _)| k.contains(&format!("cancelled:{}", b.id)))
            .count();
        let want_told = usize::from(b.status == BookingStatus::CancelledByBusiness);
        if told != want_told {
            findings.push(format!(
                "{}: {} here, told of cancellation {told} times",
                b.id,
                b.status.as_str()
            ));
        }
    }
    // Reminders: never two for one visit time and offset (keys are unique by construction of
    // the queue, so count deliveries).
    let mut reminder_keys: HashMap<&str, usize> = HashMap::new();
    for (k, _) in notices.iter().filter(|(k, _)| k.contains(":reminder:")) {
        *reminder_keys.entry(k.as_str()).or_default() += 1;
    }
    for (k, n) in &reminder_keys {
        if *n > 1 {
            findings.push(format!("reminder {k} delivered {n} times"));
        }
    }
    let queue = app.engine().queue().stats().await.unwrap();
    for row in queue
        .iter()
        .filter(|r| r.state != zapis::sync::JobState::Done)
    {
        findings.push(format!(
            "queue not drained: {} {} {:?}",
            row.count, row.system, row.state
        ));
    }
    eprintln!(
        "soak time: booking {t_book:?}, engine {t_drain:?}, poll {t_poll:?}; {poll_calls} schedule calls in {polls} polls"
    );
    let _: (
        std::time::Duration,
        std::time::Duration,
        std::time::Duration,
    ) = (t_book, t_drain, t_poll);
    eprintln!(
        "soak: {made} bookings, {} records, {} leads, {} notices ({} reminders), {lost_webhooks} webhooks lost on purpose, statuses {by_status:?}, {:.1}s",
        records.len(),
        crm.leads(),
        notices.len(),
        reminder_keys.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(made >= 200, "only {made} bookings were made");
    assert!(lost_webhooks > 0);
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
}
