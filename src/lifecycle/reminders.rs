//! Reminders before a visit, in the chat the client booked from and in their language, with
//! "I'll come" / "Cancel" / "Move" buttons.
//!
//! Nothing is scheduled ahead: every tick computes what is due from the store, so a cancelled
//! visit is simply no longer found and a moved one is found at its new time. A reminder is
//! claimed in `reminders_sent` (keyed by booking, offset and the visit's start) in the same
//! transaction that queues its message, so it goes out once however often the process restarts.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::business::BusinessConfig;
use crate::clock::Clock;
use crate::dialog::{Reply, reminder_buttons};
use crate::domain::Booking;
use crate::i18n::FluentValue;
use crate::lifecycle::effects::{client_lang, notify_job};
use crate::shutdown::{Cadence, LeasedRounds};
use crate::store::{Store, StoreError, claim_reminder_in};
use crate::sync::config::{de_duration, de_durations};
use crate::sync::enqueue_in;

/// `[reminders]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemindersConfig {
    pub enabled: bool,
    /// How long before the visit each reminder goes.
    #[serde(deserialize_with = "de_durations")]
    pub offsets: Vec<Duration>,
    /// How often due reminders are looked for.
    #[serde(deserialize_with = "de_duration")]
    pub check_every: Duration,
}

impl Default for RemindersConfig {
    fn default() -> Self {
        RemindersConfig {
            enabled: true,
            offsets: vec![
                Duration::from_secs(24 * 3600),
                Duration::from_secs(2 * 3600),
            ],
            check_every: Duration::from_secs(60),
        }
    }
}

impl RemindersConfig {
    /// Offsets must be positive and distinct, or two reminders would share one moment.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for o in &self.offsets {
            if o.as_secs() < 60 {
                return Err(format!("offset {o:?} is shorter than a minute"));
            }
            if !seen.insert(o.as_secs()) {
                return Err(format!("offset {o:?} is listed twice"));
            }
        }
        if self.check_every.is_zero() {
            return Err("check_every must be positive".into());
        }
        Ok(())
    }
}

pub struct Reminders {
    store: Store,
    business: BusinessConfig,
    /// Seconds before the visit, largest first.
    offsets: Vec<i64>,
    /// `booking.change_cutoff`: a reminder inside it offers no cancel or move, only the phone.
    change_cutoff: Option<chrono::Duration>,
}

impl Reminders {
    pub fn new(store: Store, business: BusinessConfig, config: &RemindersConfig) -> Reminders {
        let mut offsets: Vec<i64> = config
            .offsets
            .iter()
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .collect();
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        offsets.dedup();
        Reminders {
            store,
            business,
            offsets,
            change_cutoff: None,
        }
    }

    /// Reminders closer than `cutoff` to the visit carry no "Cancel"/"Move": the chat would
    /// refuse them there, so the phone to call is written instead.
    pub fn with_change_cutoff(mut self, cutoff: Option<std::time::Duration>) -> Reminders {
        self.change_cutoff = cutoff.and_then(|c| chrono::Duration::from_std(c).ok());
        self
    }

    /// Queues every reminder due at `now` that was not handled before; returns how many.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let Some(&widest) = self.offsets.first() else {
            return Ok(0);
        };
        let horizon = now + chrono::Duration::seconds(widest);
        let upcoming = self
            .store
            .active_bookings_between(&self.business.id, now, horizon)
            .await?;
        let mut sent = 0;
        for booking in upcoming {
            if booking.chat.is_none() {
                continue;
            }
            if self.remind(&booking, now).await? {
                sent += 1;
            }
        }
        Ok(sent)
    }

    async fn remind(&self, booking: &Booking, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let due: Vec<i64> = self
            .offsets
            .iter()
            .copied()
            .filter(|o| booking.start - chrono::Duration::seconds(*o) <= now)
            .collect();
        // Only the nearest due reminder is worth sending; wider ones still open are overtaken.
        let Some((&nearest, overtaken)) = due.split_last() else {
            return Ok(false);
        };
        let done = self
            .store
            .reminders_done(&booking.business_id, &booking.id)
            .await?;
        let handled = |o: i64| {
            done.iter()
                .any(|(off, at, _)| *off == o && *at == booking.start)
        };
        if handled(nearest) && overtaken.iter().all(|o| handled(*o)) {
            return Ok(false);
        }
        let moment = booking.start - chrono::Duration::seconds(nearest);
        // A reminder whose moment came before the visit got its time (booked or moved later),
        // or one so late that half its lead is gone, would only repeat what the client knows.
        let since = match self
            .store
            .last_event_at(&booking.business_id, &booking.id, "moved")
            .await?
        {
            Some(moved) => moved.max(booking.created_at),
            None => booking.created_at,
        };
        let late = now - moment > chrono::Duration::seconds(nearest / 2);
        let skip = moment < since || late || handled(nearest);
        let lang = client_lang(&self.store, booking, self.business.locale).await;
        let mut tx = self.store.begin().await?;
        for o in overtaken {
            claim_reminder_in(
                &mut tx,
                &booking.business_id,
                &booking.id,
                *o,
                booking.start,
                true,
                now,
            )
            .await?;
        }
        let claimed = claim_reminder_in(
            &mut tx,
            &booking.business_id,
            &booking.id,
            nearest,
            booking.start,
            skip,
            now,
        )
        .await?;
        let send = claimed && !skip;
        if send && let Some(chat) = &booking.chat {
            let when = booking
                .start
                .with_timezone(&self.business.timezone)
                .format("%d.%m %H:%M")
                .to_string();
            let texts = &self.business.texts;
            let mut text = texts.t_args(
                lang,
                "reminder",
                &[
                    ("service", FluentValue::from(booking.service_name.clone())),
                    ("master", FluentValue::from(booking.master_name.clone())),
                    ("when", FluentValue::from(when)),
                    ("address", FluentValue::from(self.business.address.clone())),
                ],
            );
            let changeable = self
                .change_cutoff
                .is_none_or(|cutoff| booking.start - now >= cutoff);
            if !changeable {
                text.push_str("\n\n");
                text.push_str(&match &self.business.phone {
                    Some(phone) => texts.t_args(
                        lang,
                        "my-item-call",
                        &[(
                            "phone",
                            FluentValue::from(crate::normalize::display_phone(phone)),
                        )],
                    ),
                    None => texts.t(lang, "my-item-call-nophone"),
                });
            }
            let reply = Reply {
                text,
                buttons: reminder_buttons(texts, lang, &booking.id, changeable),
                ..Reply::default()
            };
            let key = format!(
                "reminder:{}:{nearest}:{}",
                booking.id,
                booking.start.timestamp()
            );
            if let Some(job) = notify_job(&booking.business_id, chat, &key, reply) {
                enqueue_in(&mut tx, &job, now).await?;
            }
        }
        tx.commit().await?;
        if send {
            tracing::info!(booking = %booking.id, seconds_before = nearest, "reminder queued");
        }
        Ok(send)
    }
}

/// Runs reminders every `check_every` until `stop` turns true.
pub fn spawn(
    reminders: Reminders,
    clock: Arc<dyn Clock>,
    every: Duration,
    lease: crate::store::LoopLease,
    stop: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    // Each reminder is claimed once in the store anyway; the lease spares the other instances
    // the reading.
    let mut rounds = LeasedRounds::new(Cadence::Pause(every), lease, clock, stop);
    tokio::spawn(async move {
        while let Some(now) = rounds.next().await {
            if let Err(e) = reminders.tick(now).await {
                tracing::error!(error = %e, "reminders: cannot read the store");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::dialog::links;
    use crate::domain::bid;
    use crate::domain::{BookingStatus, Channel, ChatRef, Money, Source};
    use crate::i18n::Lang;
    use crate::lifecycle::effects::{NotifyJob, Operation};
    use crate::normalize::Phone;
    use crate::store::testing;
    use crate::sync::{JobState, Queue};
    use chrono::TimeZone;

    fn business() -> BusinessConfig {
        BusinessConfig {
            id: bid("b1"),
            name: "Лилия".into(),
            timezone: chrono_tz::Europe::Moscow,
            locale: Lang::Ru,
            address: "ул. Пушкина, 10".into(),
            phone: None,
            kind: Default::default(),
            locales: None,
            texts: Default::default(),
        }
    }

    /// A reminder's three answers about `booking_id`: come, cancel, move.
    fn all_answers(booking_id: &str) -> [String; 3] {
        [
            links::confirm_visit(&crate::domain::bk(booking_id)),
            links::cancel_visit(&crate::domain::bk(booking_id)),
            links::move_visit(&crate::domain::bk(booking_id)),
        ]
    }

    /// 12:00 in Moscow on 10 January.
    fn visit() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 10, 9, 0, 0).unwrap()
    }

    fn booking(id: &str, created: DateTime<Utc>) -> Booking {
        Booking {
            id: crate::domain::bk(id),
            business_id: bid("b1"),
            client_phone: Phone::parse("+79123456789").unwrap(),
            client_name: "Анна".into(),
            client_email: None,
            service_id: "s1".into(),
            service_name: "Стрижка".into(),
            master_id: "m1".into(),
            master_name: "Ольга".into(),
            start: visit(),
            duration_min: 60,
            price: Money::from_rubles(1500),
            status: BookingStatus::Booked,
            source: Source::direct(Channel::Telegram),
            chat: Some(ChatRef::new(Channel::Telegram, "42")),
            external_id: Some(crate::domain::rec("rec-1")),
            created_at: created,
        }
    }

    async fn notices(store: &Store) -> Vec<NotifyJob> {
        let jobs = Queue::new(store.clone())
            .jobs_in_state(JobState::Pending)
            .await
            .unwrap();
        jobs.into_iter()
            .filter(|j| Operation::of(j) == Some(Operation::Notify))
            .map(|j| serde_json::from_value(j.payload).unwrap())
            .collect()
    }

    fn reminders(store: &Store) -> Reminders {
        Reminders::new(store.clone(), business(), &RemindersConfig::default())
    }

    #[tokio::test]
    async fn a_reminder_fires_once_at_its_local_time_in_the_clients_language() {
        for store in testing::all().await {
            let clock = FakeClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap());
            store
                .insert_booking(&booking("bk1", clock.now()))
                .await
                .unwrap();
            // The client chatted in English.
            store
                .save_dialog(
                    &bid("b1"),
                    "telegram:42",
                    r#"{"lang":"en","v":3}"#,
                    clock.now(),
                )
                .await
                .unwrap();
            let r = reminders(&store);
            clock.set(visit() - chrono::Duration::hours(24) - chrono::Duration::seconds(1));
            assert_eq!(r.tick(clock.now()).await.unwrap(), 0, "not a second early");
            clock.advance(chrono::Duration::seconds(1));
            assert_eq!(r.tick(clock.now()).await.unwrap(), 1);
            assert_eq!(r.tick(clock.now()).await.unwrap(), 0, "once");
            clock.advance(chrono::Duration::minutes(30));
            // A restarted process (a fresh instance over the same store) sends nothing again.
            assert_eq!(reminders(&store).tick(clock.now()).await.unwrap(), 0);
            let sent = notices(&store).await;
            assert_eq!(sent.len(), 1, "{:?}", store.backend());
            let text = &sent[0].reply.text;
            // 09:00 UTC is 12:00 in Moscow, the business' local time.
            assert!(text.contains("10.01 12:00"), "{text}");
            assert!(
                text.starts_with("A reminder"),
                "in the client's language: {text}"
            );
            let data: Vec<String> = sent[0]
                .reply
                .buttons
                .iter()
                .flatten()
                .map(|b| b.data.clone())
                .collect();
            assert_eq!(data, all_answers("bk1"));
            assert_eq!(sent[0].chat_id, "42");

            // The 2-hour reminder, once, at 10:00 Moscow time.
            clock.set(visit() - chrono::Duration::hours(2));
            assert_eq!(r.tick(clock.now()).await.unwrap(), 1);
            clock.advance(chrono::Duration::minutes(5));
            assert_eq!(r.tick(clock.now()).await.unwrap(), 0);
            assert_eq!(notices(&store).await.len(), 2);
            // After the visit began nothing more.
            clock.set(visit() + chrono::Duration::minutes(1));
            assert_eq!(r.tick(clock.now()).await.unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn inside_the_change_cutoff_a_reminder_offers_a_call_instead_of_cancel_and_move() {
        for store in testing::all().await {
            let clock = FakeClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap());
            store
                .insert_booking(&booking("bk1", clock.now()))
                .await
                .unwrap();
            let mut salon = business();
            salon.phone = Some("84951234567".into());
            let r = Reminders::new(store.clone(), salon, &RemindersConfig::default())
                .with_change_cutoff(Some(std::time::Duration::from_secs(3 * 3600)));
            let data = |n: &NotifyJob| -> Vec<String> {
                n.reply
                    .buttons
                    .iter()
                    .flatten()
                    .map(|b| b.data.clone())
                    .collect()
            };
            // A day before: outside the cut-off, all three answers.
            clock.set(visit() - chrono::Duration::hours(24));
            assert_eq!(r.tick(clock.now()).await.unwrap(), 1);
            // Two hours before: inside it.
            clock.set(visit() - chrono::Duration::hours(2));
            assert_eq!(r.tick(clock.now()).await.unwrap(), 1);
            let sent = notices(&store).await;
            assert_eq!(sent.len(), 2, "{:?}", store.backend());
            let (day, soon) = if sent[0].reply.text.contains("Позвоните") {
                (&sent[1], &sent[0])
            } else {
                (&sent[0], &sent[1])
            };
            assert_eq!(data(day), all_answers("bk1"));
            assert!(!day.reply.text.contains("Позвоните"), "{}", day.reply.text);
            assert_eq!(
                data(soon),
                [links::confirm_visit(&crate::domain::bk("bk1"))]
            );
            assert!(
                soon.reply.text.contains("Позвоните нам: +7 495 123-45-67"),
                "{}",
                soon.reply.text
            );
        }
    }

    #[tokio::test]
    async fn no_reminder_for_a_cancelled_visit_and_a_moved_one_follows_its_new_time() {
        for store in testing::all().await {
            let created = Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap();
            store
                .insert_booking(&booking("gone", created))
                .await
                .unwrap();
            store
                .insert_booking(&booking("moved", created))
                .await
                .unwrap();
            store
                .set_booking_status(
                    &crate::domain::bk("gone"),
                    BookingStatus::CancelledByBusiness,
                    created,
                )
                .await
                .unwrap();
            let r = reminders(&store);
            let day_before = visit() - chrono::Duration::hours(24);
            assert_eq!(r.tick(day_before).await.unwrap(), 1, "only the live one");
            // Moved three days later (before its 2-hour reminder): reminders follow the new time.
            let later = visit() + chrono::Duration::days(3);
            store
                .move_booking(
                    &crate::domain::bk("moved"),
                    "m1",
                    "Ольга",
                    later,
                    day_before,
                )
                .await
                .unwrap();
            assert_eq!(
                r.tick(visit() - chrono::Duration::hours(2)).await.unwrap(),
                0
            );
            assert_eq!(
                r.tick(later - chrono::Duration::hours(24)).await.unwrap(),
                1
            );
            assert_eq!(r.tick(later - chrono::Duration::hours(2)).await.unwrap(), 1);
            let sent = notices(&store).await;
            assert_eq!(sent.len(), 3);
            assert!(
                sent[1].reply.text.contains("13.01 12:00"),
                "{}",
                sent[1].reply.text
            );
            assert!(sent.iter().all(|n| {
                !n.reply
                    .buttons
                    .iter()
                    .flatten()
                    .any(|b| b.data.ends_with("gone"))
            }));
        }
    }

    #[tokio::test]
    async fn a_booking_made_after_a_reminders_moment_gets_only_the_nearer_one() {
        for store in testing::all().await {
            // Booked five hours ahead: the 24-hour moment is long gone.
            let created = visit() - chrono::Duration::hours(5);
            store
                .insert_booking(&booking("late", created))
                .await
                .unwrap();
            let r = reminders(&store);
            assert_eq!(
                r.tick(created + chrono::Duration::minutes(1))
                    .await
                    .unwrap(),
                0
            );
            assert_eq!(
                r.tick(visit() - chrono::Duration::hours(2)).await.unwrap(),
                1
            );
            assert_eq!(
                r.tick(visit() - chrono::Duration::minutes(30))
                    .await
                    .unwrap(),
                0
            );
            assert_eq!(notices(&store).await.len(), 1);
            let done = store
                .reminders_done(&bid("b1"), &crate::domain::bk("late"))
                .await
                .unwrap();
            assert_eq!(done.len(), 2, "{done:?}");
            assert!(
                done.iter()
                    .any(|(o, _, skipped)| *o == 24 * 3600 && *skipped)
            );
        }
    }

    #[test]
    fn offsets_are_validated() {
        let bad = RemindersConfig {
            offsets: vec![Duration::from_secs(7200), Duration::from_secs(7200)],
            ..RemindersConfig::default()
        };
        assert!(bad.validate().is_err());
        assert!(RemindersConfig::default().validate().is_ok());
        let c: RemindersConfig = serde_json::from_str(r#"{"offsets":["48h","30m"]}"#).unwrap();
        assert_eq!(
            c.offsets,
            [Duration::from_secs(48 * 3600), Duration::from_secs(1800)]
        );
        assert!(serde_json::from_str::<RemindersConfig>(r#"{"ofsets":["1h"]}"#).is_err());
    }
}
