//! Changes made in the schedule by the business (a webhook or a poll noticed them) or in the
//! CRM by a manager: our store follows, the other side hears about it, and the client is told
//! in their chat. Each applied change is one line of the booking's journal.
//!
//! No ping-pong: a change that leaves the booking as it is (our own write coming back, a
//! replayed webhook) produces nothing. When two sides changed one booking at once, the schedule
//! wins on time and master (it is where the visit happens), and the latest change wins on
//! status: a change arriving for a booking already cancelled or finished is older news than the
//! status we hold, so it is journaled as a conflict and dropped.

use crate::domain::BusinessId;
use crate::domain::System;
use chrono::{DateTime, Utc};

use crate::dialog::{Button, Reply, links};
use crate::domain::{Booking, BookingId, BookingStatus, Channel, Money, RecordId, Source};
use crate::i18n::{FluentValue, Lang, Texts};
use crate::lifecycle::effects::{Operation, booking_job, client_lang, notify_job};
use crate::normalize::Phone;
use crate::store::{
    Store, StoreError, booking_for_change_in, claim_booking_link_in, insert_booking_in,
    move_booking_in, put_known_in, record_event_in, set_booking_status_in, version_of,
};
use crate::sync::{AdminBookings, NewJob, enqueue_in};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleChange {
    Cancelled,
    Moved {
        start: DateTime<Utc>,
        master_id: Option<String>,
    },
    Visited,
    NoShow,
}

impl ScheduleChange {
    fn kind(&self) -> &'static str {
        match self {
            ScheduleChange::Cancelled => "cancelled",
            ScheduleChange::Moved { .. } => "moved",
            ScheduleChange::Visited => "visited",
            ScheduleChange::NoShow => "no_show",
        }
    }
}

/// How long our own write of a change to the schedule may take before a report from the
/// schedule about that booking is believed again: longer than a vendor call with its retries,
/// short enough that a crash in between delays the truth by minutes, not hours.
pub const CHANGE_IN_FLIGHT: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// What applying a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    /// The booking already stood so: an echo, a repeat, or older news than its status.
    Unchanged,
    /// We are writing a change of this booking to the schedule right now; the report is most
    /// likely that write, seen before our store followed. Ask again once it has.
    InFlight,
}

impl Applied {
    pub fn changed(self) -> bool {
        self == Applied::Changed
    }
}

/// Where a change was made; the side it came from is not told about it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A webhook from the schedule.
    Schedule,
    /// The reconciliation poll found the schedule changed (a webhook was missed or never sent).
    Reconcile,
    Crm,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Schedule => "schedule",
            Origin::Reconcile => "reconcile",
            Origin::Crm => "crm",
        }
    }
}

pub struct ChangeApplier {
    /// The schedule's name in links and known states (`yclients`, `dikidi`, `sandbox`).
    pub schedule_system: System,
    pub crm_system: Option<System>,
    /// Whether a visit that took place gets its sales document in 1C.
    pub accounting: bool,
    pub default_lang: Lang,
    /// The business's words for the notices to clients.
    pub texts: Texts,
    pub timezone: chrono_tz::Tz,
    /// `sync.schedule_to_crm`: whether the schedule's changes move the CRM lead.
    pub schedule_to_crm: bool,
    /// `sync.notify_client`: whether the client is told of the business's changes.
    pub notify_client: bool,
    /// `sync.admin_bookings`.
    pub admin_bookings: AdminBookings,
}

/// A record found in the schedule that we did not make: an admin booked someone by phone.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignRecord {
    /// The schedule's id of the record, as links hold it.
    pub external_id: RecordId,
    pub client_phone: Phone,
    pub service_id: String,
    pub service_name: String,
    pub master_id: String,
    pub master_name: String,
    pub start: DateTime<Utc>,
    pub duration_min: u32,
    pub price: Money,
}

impl ChangeApplier {
    /// Applies one change; [`Applied::Unchanged`] when it changes nothing (our own write coming
    /// back, or a booking already in that state), so echoes never bounce.
    pub async fn apply(
        &self,
        store: &Store,
        booking: &Booking,
        change: &ScheduleChange,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError> {
        self.apply_from(store, booking, change, Origin::Schedule, now)
            .await
    }

    pub async fn apply_from(
        &self,
        store: &Store,
        booking: &Booking,
        change: &ScheduleChange,
        origin: Origin,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError> {
        let lang = client_lang(store, booking, self.default_lang).await;
        let mut tx = store.begin().await?;
        // The caller read the booking a moment ago; what counts is how it stands now, inside
        // this transaction: another path may have changed it since (a client's move, a
        // manager's cancel), and then this change is that one coming back.
        let postgres = store.backend() == crate::store::Backend::Postgres;
        let Some((fresh, changing_until)) =
            booking_for_change_in(&mut tx, postgres, &booking.business_id, &booking.id).await?
        else {
            return Ok(Applied::Unchanged);
        };
        // The CRM's path holds the booking itself while it writes to the schedule; a report
        // from the schedule meanwhile waits for our store to catch up.
        if origin != Origin::Crm && changing_until.is_some_and(|until| until > now) {
            return Ok(Applied::InFlight);
        }
        let booking = &fresh;
        let (by, crm_system) = match origin {
            Origin::Schedule | Origin::Reconcile => {
                ("business", self.crm_system.filter(|_| self.schedule_to_crm))
            }
            // The CRM made this change itself: no job goes back to it.
            Origin::Crm => ("crm", None),
        };
        if !booking.status.is_active() {
            let repeats = matches!(
                (change, booking.status),
                (
                    ScheduleChange::Cancelled,
                    BookingStatus::CancelledByBusiness | BookingStatus::CancelledByClient
                ) | (ScheduleChange::Visited, BookingStatus::Visited)
                    | (ScheduleChange::NoShow, BookingStatus::NoShow)
            );
            if !repeats {
                // Latest wins on status: ours was settled first and stays.
                record_event_in(
                    &mut tx,
                    &booking.business_id,
                    &booking.id,
                    origin.as_str(),
                    "conflict",
                    &format!(
                        "{} arrived for a booking already {}; kept {}",
                        change.kind(),
                        booking.status.as_str(),
                        booking.status.as_str()
                    ),
                    now,
                )
                .await?;
                tx.commit().await?;
                tracing::warn!(booking = %booking.id, ?change, status = booking.status.as_str(), "conflicting change dropped");
            }
            return Ok(Applied::Unchanged);
        }
        let when = |at: DateTime<Utc>| self.local_time(at);
        let mut jobs: Vec<NewJob> = Vec::new();
        match change {
            ScheduleChange::Cancelled => {
                set_booking_status_in(
                    &mut tx,
                    &booking.id,
                    BookingStatus::CancelledByBusiness,
                    now,
                )
                .await?;
                if let Some(crm) = crm_system {
                    jobs.push(booking_job(
                        &booking.business_id,
                        crm,
                        Operation::BookingCancelled,
                        &booking.id,
                        Some(by),
                        now,
                    ));
                }
                let text = self.texts.t_args(
                    lang,
                    "notify-cancelled-by-business",
                    &[
                        ("service", FluentValue::from(booking.service_name.clone())),
                        ("when", FluentValue::from(when(booking.start))),
                    ],
                );
                jobs.extend(self.notice(booking, "cancelled", text, lang));
            }
            ScheduleChange::Moved { start, master_id } => {
                let same_master = master_id.as_deref().is_none_or(|m| m == booking.master_id);
                if *start == booking.start && same_master {
                    return Ok(Applied::Unchanged);
                }
                let master = master_id
                    .clone()
                    .unwrap_or_else(|| booking.master_id.clone());
                move_booking_in(&mut tx, &booking.id, *start, &master, now).await?;
                if let Some(crm) = crm_system {
                    jobs.push(booking_job(
                        &booking.business_id,
                        crm,
                        Operation::BookingRescheduled,
                        &booking.id,
                        Some(by),
                        now,
                    ));
                }
                let text = self.texts.t_args(
                    lang,
                    "notify-moved-by-business",
                    &[
                        ("service", FluentValue::from(booking.service_name.clone())),
                        ("old", FluentValue::from(when(booking.start))),
                        ("new", FluentValue::from(when(*start))),
                    ],
                );
                jobs.extend(self.notice(
                    booking,
                    &format!("moved:{}", start.timestamp()),
                    text,
                    lang,
                ));
            }
            ScheduleChange::Visited | ScheduleChange::NoShow => {
                let (status, operation) = if *change == ScheduleChange::Visited {
                    (BookingStatus::Visited, Operation::BookingVisited)
                } else {
                    (BookingStatus::NoShow, Operation::BookingNoShow)
                };
                set_booking_status_in(&mut tx, &booking.id, status, now).await?;
                if let Some(crm) = crm_system {
                    jobs.push(booking_job(
                        &booking.business_id,
                        crm,
                        operation,
                        &booking.id,
                        Some(by),
                        now,
                    ));
                }
                if *change == ScheduleChange::Visited && self.accounting {
                    jobs.push(crate::lifecycle::effects::sales_job(
                        &booking.business_id,
                        &booking.id,
                        now,
                    ));
                }
            }
        }
        let (status, start, master) = match change {
            ScheduleChange::Cancelled => (
                BookingStatus::CancelledByBusiness,
                booking.start,
                booking.master_id.clone(),
            ),
            ScheduleChange::Moved { start, master_id } => (
                booking.status,
                *start,
                master_id
                    .clone()
                    .unwrap_or_else(|| booking.master_id.clone()),
            ),
            ScheduleChange::Visited => (
                BookingStatus::Visited,
                booking.start,
                booking.master_id.clone(),
            ),
            ScheduleChange::NoShow => (
                BookingStatus::NoShow,
                booking.start,
                booking.master_id.clone(),
            ),
        };
        let version = version_of(status.as_str(), start, &master);
        // What the origin holds now: the same state coming back from it is an echo.
        let side = match origin {
            Origin::Schedule | Origin::Reconcile => Some(self.schedule_system),
            Origin::Crm => self.crm_system,
        };
        if let Some(side) = side {
            put_known_in(
                &mut tx,
                &booking.business_id,
                &booking.id,
                side,
                &version,
                status.as_str(),
                now,
            )
            .await?;
        }
        record_event_in(
            &mut tx,
            &booking.business_id,
            &booking.id,
            origin.as_str(),
            change.kind(),
            &version,
            now,
        )
        .await?;
        for job in &jobs {
            enqueue_in(&mut tx, job, now).await?;
        }
        tx.commit().await?;
        tracing::info!(booking = %booking.id, ?change, "schedule change applied");
        Ok(Applied::Changed)
    }

    /// Links a record an admin made in the schedule to the client it is for, when that client
    /// has booked with us from a chat before: the booking becomes ours to remind, to cancel and
    /// to move from the chat, and (with `admin_bookings = "lead"`) gets its CRM lead. Returns
    /// our new booking's id; `None` when the client is unknown, the switch is off, or the record
    /// is linked already (a replayed or concurrent event).
    pub async fn adopt(
        &self,
        store: &Store,
        business_id: &BusinessId,
        record: &ForeignRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<BookingId>, StoreError> {
        if self.admin_bookings == AdminBookings::Ignore || record.start <= now {
            return Ok(None);
        }
        let Some(known) = store
            .latest_chat_booking_of(business_id, &record.client_phone)
            .await?
        else {
            tracing::debug!(
                record = %record.external_id,
                phone = %record.client_phone.masked(),
                "schedule record for a client we do not know; left alone"
            );
            return Ok(None);
        };
        let booking = Booking {
            id: BookingId::generate(),
            business_id: business_id.clone(),
            client_phone: record.client_phone.clone(),
            client_name: known.client_name.clone(),
            client_email: known.client_email.clone(),
            service_id: record.service_id.clone(),
            service_name: record.service_name.clone(),
            master_id: record.master_id.clone(),
            master_name: record.master_name.clone(),
            start: record.start,
            duration_min: record.duration_min,
            price: record.price,
            status: BookingStatus::Booked,
            source: Source::direct(Channel::Schedule),
            chat: known.chat.clone(),
            external_id: Some(record.external_id.clone()),
            created_at: now,
        };
        let mut tx = store.begin().await?;
        // The link goes first: a second event for the same record finds it taken and stops.
        let claimed = claim_booking_link_in(
            &mut tx,
            business_id,
            &booking.id,
            self.schedule_system,
            &record.external_id,
            now,
        )
        .await?;
        if claimed == 0 {
            return Ok(None);
        }
        insert_booking_in(&mut tx, &booking).await?;
        let version = version_of(booking.status.as_str(), booking.start, &booking.master_id);
        put_known_in(
            &mut tx,
            business_id,
            &booking.id,
            self.schedule_system,
            &version,
            booking.status.as_str(),
            now,
        )
        .await?;
        record_event_in(
            &mut tx,
            business_id,
            &booking.id,
            Origin::Schedule.as_str(),
            "linked",
            &format!("record {} made in the schedule", record.external_id),
            now,
        )
        .await?;
        let mut jobs = Vec::new();
        if let (AdminBookings::Lead, Some(crm)) = (self.admin_bookings, self.crm_system) {
            jobs.push(booking_job(
                business_id,
                crm,
                Operation::BookingCreated,
                &booking.id,
                Some("business"),
                now,
            ));
        }
        let lang = client_lang(store, &booking, self.default_lang).await;
        let text = self.texts.t_args(
            lang,
            "notify-booked-by-business",
            &[
                ("service", FluentValue::from(booking.service_name.clone())),
                ("when", FluentValue::from(self.local_time(booking.start))),
                ("master", FluentValue::from(booking.master_name.clone())),
            ],
        );
        jobs.extend(self.notice(&booking, "booked", text, lang));
        for job in &jobs {
            enqueue_in(&mut tx, job, now).await?;
        }
        tx.commit().await?;
        tracing::info!(booking = %booking.id, record = %record.external_id, "schedule record linked to a known client");
        Ok(Some(booking.id))
    }

    /// A moment as the client reads it in a notice: the business's local day and time.
    fn local_time(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.timezone)
            .format("%d.%m %H:%M")
            .to_string()
    }

    fn notice(&self, booking: &Booking, key: &str, text: String, lang: Lang) -> Option<NewJob> {
        if !self.notify_client {
            return None;
        }
        let chat = booking.chat.as_ref()?;
        let buttons = vec![vec![
            // The dialog honours these from any message, however old.
            Button {
                label: self.texts.t(lang, "btn-book"),
                data: links::book(),
            },
            Button {
                label: self.texts.t(lang, "btn-my"),
                data: links::my_bookings(),
            },
        ]];
        let reply = Reply {
            text,
            buttons,
            ..Reply::default()
        };
        notify_job(
            &booking.business_id,
            chat,
            &format!("{key}:{}", booking.id),
            reply,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChatRef;
    use crate::domain::bid;
    use crate::store::testing;
    use crate::sync::Queue;
    use chrono::TimeZone;

    fn applier(schedule_to_crm: bool, notify_client: bool) -> ChangeApplier {
        ChangeApplier {
            schedule_system: System::Yclients,
            crm_system: Some(System::AmoCrm),
            accounting: false,
            default_lang: Lang::Ru,
            texts: Texts::default(),
            timezone: chrono_tz::Asia::Yekaterinburg,
            schedule_to_crm,
            notify_client,
            admin_bookings: AdminBookings::Link,
        }
    }

    fn booking(id: &str, phone: &str, chat: Option<&str>) -> Booking {
        Booking {
            id: crate::domain::bk(id),
            business_id: bid("b"),
            client_phone: Phone::parse(phone).unwrap(),
            client_name: "Анна".into(),
            client_email: None,
            service_id: "101".into(),
            service_name: "Стрижка".into(),
            master_id: "11".into(),
            master_name: "Ольга".into(),
            start: Utc.with_ymd_and_hms(2030, 1, 10, 9, 0, 0).unwrap(),
            duration_min: 60,
            price: Money::from_rubles(1000),
            status: BookingStatus::Booked,
            source: Source::direct(Channel::Telegram),
            chat: chat.map(|c| ChatRef::new(Channel::Telegram, c)),
            external_id: Some(crate::domain::rec(&format!("{id}-record"))),
            created_at: Utc.with_ymd_and_hms(2029, 12, 1, 9, 0, 0).unwrap(),
        }
    }

    async fn jobs(store: &Store) -> Vec<(String, String)> {
        Queue::new(store.clone()).systems_and_operations().await
    }

    #[tokio::test]
    async fn a_report_during_our_own_write_waits_and_a_stale_copy_changes_nothing() {
        for store in testing::all().await {
            let now = Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap();
            let b = booking("bk-1", "+79123456789", Some("42"));
            store.insert_booking(&b).await.unwrap();
            let moved = ScheduleChange::Moved {
                start: b.start + chrono::Duration::hours(1),
                master_id: None,
            };

            // We are writing this booking to the schedule: the schedule's report waits.
            store
                .hold_change(&b.id, now + CHANGE_IN_FLIGHT)
                .await
                .unwrap();
            let applier = applier(true, true);
            for origin in [Origin::Schedule, Origin::Reconcile] {
                let applied = applier
                    .apply_from(&store, &b, &moved, origin, now)
                    .await
                    .unwrap();
                assert_eq!(applied, Applied::InFlight, "{origin:?}");
            }
            assert!(jobs(&store).await.is_empty());
            let stored = store.booking(&bid("b"), &b.id).await.unwrap().unwrap();
            assert_eq!(stored.start, b.start);

            // A hold left by a process that died ends on its own.
            let later = now + CHANGE_IN_FLIGHT + chrono::Duration::seconds(1);
            let applied = applier.apply(&store, &b, &moved, later).await.unwrap();
            assert_eq!(applied, Applied::Changed);

            // The caller's copy is older than the store: the client cancelled meanwhile, so
            // the schedule's "deleted" is that cancel, and nothing is told to anyone.
            Queue::new(store.clone()).delete_all().await;
            store.release_change(&b.id).await.unwrap();
            store
                .set_booking_status(&b.id, BookingStatus::CancelledByClient, later)
                .await
                .unwrap();
            let applied = applier
                .apply_from(
                    &store,
                    &b,
                    &ScheduleChange::Cancelled,
                    Origin::Reconcile,
                    later,
                )
                .await
                .unwrap();
            assert_eq!(applied, Applied::Unchanged);
            assert!(jobs(&store).await.is_empty());
            let stored = store.booking(&bid("b"), &b.id).await.unwrap().unwrap();
            assert_eq!(stored.status, BookingStatus::CancelledByClient);
        }
    }

    #[tokio::test]
    async fn each_direction_can_be_switched_off() {
        for store in testing::all().await {
            let now = Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap();
            for (to_crm, notify, expected) in [
                (true, true, vec!["amocrm", "telegram"]),
                (false, true, vec!["telegram"]),
                (true, false, vec!["amocrm"]),
                (false, false, vec![]),
            ] {
                let id = format!("bk-{to_crm}-{notify}");
                let b = booking(&id, "+79123456789", Some("42"));
                store.insert_booking(&b).await.unwrap();
                Queue::new(store.clone()).delete_all().await;
                let applied = applier(to_crm, notify)
                    .apply(&store, &b, &ScheduleChange::Cancelled, now)
                    .await
                    .unwrap();
                assert_eq!(applied, Applied::Changed);
                let systems: Vec<String> = jobs(&store).await.into_iter().map(|j| j.0).collect();
                assert_eq!(
                    systems, expected,
                    "schedule_to_crm={to_crm} notify={notify}"
                );
                let stored = store
                    .booking(&bid("b"), &crate::domain::bk(&id))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(stored.status, BookingStatus::CancelledByBusiness);
            }
        }
    }

    #[tokio::test]
    async fn a_record_for_a_known_client_is_adopted_once_and_a_stranger_is_not() {
        for store in testing::all().await {
            let now = Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap();
            store
                .insert_booking(&booking("first", "+79123456789", Some("42")))
                .await
                .unwrap();
            // A client we know only from the schedule (no chat) cannot be told anything.
            store
                .insert_booking(&booking("nochat", "+79220000000", None))
                .await
                .unwrap();
            Queue::new(store.clone()).delete_all().await;
            let record = |id: &str, phone: &str| ForeignRecord {
                external_id: crate::domain::rec(id),
                client_phone: Phone::parse(phone).unwrap(),
                service_id: "101".into(),
                service_name: "Окрашивание".into(),
                master_id: "12".into(),
                master_name: "Ирина".into(),
                start: Utc.with_ymd_and_hms(2030, 1, 12, 10, 0, 0).unwrap(),
                duration_min: 90,
                price: Money::from_rubles(3000),
            };
            let mut lead = applier(true, true);
            lead.admin_bookings = AdminBookings::Lead;
            let adopted = lead
                .adopt(&store, &bid("b"), &record("555", "8 912 345-67-89"), now)
                .await
                .unwrap()
                .expect("adopted");
            let ours = store.booking(&bid("b"), &adopted).await.unwrap().unwrap();
            assert_eq!(ours.chat, Some(ChatRef::new(Channel::Telegram, "42")));
            assert_eq!(ours.source.channel, Channel::Schedule);
            assert_eq!(
                (ours.service_name.as_str(), ours.master_name.as_str()),
                ("Окрашивание", "Ирина")
            );
            assert_eq!(
                store
                    .entity_for_external(&bid("b"), "booking", System::Yclients, "555")
                    .await
                    .unwrap(),
                Some(adopted.to_string())
            );
            let ops = jobs(&store).await;
            assert_eq!(
                ops,
                vec![
                    ("amocrm".to_string(), Operation::BookingCreated.to_string()),
                    ("telegram".to_string(), Operation::Notify.to_string())
                ]
            );
            // The same record again (a replay, or an update right after the create).
            assert_eq!(
                lead.adopt(&store, &bid("b"), &record("555", "+79123456789"), now)
                    .await
                    .unwrap(),
                None
            );
            // Strangers, chat-less clients, past records and a switched-off setting: nothing.
            assert_eq!(
                lead.adopt(&store, &bid("b"), &record("556", "+79990001122"), now)
                    .await
                    .unwrap(),
                None
            );
            assert_eq!(
                lead.adopt(&store, &bid("b"), &record("557", "+79220000000"), now)
                    .await
                    .unwrap(),
                None
            );
            let mut past = record("558", "+79123456789");
            past.start = now - chrono::Duration::hours(1);
            assert_eq!(
                lead.adopt(&store, &bid("b"), &past, now).await.unwrap(),
                None
            );
            let mut off = applier(true, true);
            off.admin_bookings = AdminBookings::Ignore;
            assert_eq!(
                off.adopt(&store, &bid("b"), &record("559", "+79123456789"), now)
                    .await
                    .unwrap(),
                None
            );
            assert_eq!(jobs(&store).await.len(), 2);
            assert_eq!(store.bookings(&bid("b")).await.unwrap().len(), 3);
        }
    }
}
