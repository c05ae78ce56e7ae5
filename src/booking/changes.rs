//! Changes made in the schedule by the business (a webhook or a poll noticed them) or in the
//! CRM by a manager: our store follows, the other side hears about it, and the client is told
//! in their chat. Each applied change is one line of the booking's journal.
//!
//! No ping-pong: a change that leaves the booking as it is (our own write coming back, a
//! replayed webhook) produces nothing. When two sides changed one booking at once, the schedule
//! wins on time and master (it is where the visit happens), and the latest change wins on
//! status: a change arriving for a booking already cancelled or finished is older news than the
//! status we hold, so it is journaled as a conflict and dropped.

use chrono::{DateTime, Utc};

use crate::dialog::{Button, Reply};
use crate::domain::{Booking, BookingStatus};
use crate::effects::{
    BOOKING_CANCELLED, BOOKING_NO_SHOW, BOOKING_RESCHEDULED, BOOKING_VISITED, booking_job,
    client_lang, notify_job,
};
use crate::i18n::{FluentValue, Lang, t, t_args};
use crate::store::{
    Store, StoreError, put_known_in, record_event_in, set_booking_status_in, version_of,
};
use crate::sync::{NewJob, enqueue_in};

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
    pub schedule_system: &'static str,
    pub crm_system: Option<&'static str>,
    /// Whether a visit that took place gets its sales document in 1C.
    pub accounting: bool,
    pub default_lang: Lang,
    pub timezone: chrono_tz::Tz,
}

impl ChangeApplier {
    /// Applies one change; `false` when it changes nothing (our own write coming back, or a
    /// booking already in that state), so echoes never bounce.
    pub async fn apply(
        &self,
        store: &Store,
        booking: &Booking,
        change: &ScheduleChange,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
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
    ) -> Result<bool, StoreError> {
        let (by, crm_system) = match origin {
            Origin::Schedule | Origin::Reconcile => ("business", self.crm_system),
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
                let mut conn = store.pool().acquire().await?;
                record_event_in(
                    &mut conn,
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
                tracing::warn!(booking = %booking.id, ?change, status = booking.status.as_str(), "conflicting change dropped");
            }
            return Ok(false);
        }
        let lang = client_lang(store, booking, self.default_lang).await;
        let when = |at: DateTime<Utc>| {
            at.with_timezone(&self.timezone)
                .format("%d.%m %H:%M")
                .to_string()
        };
        let mut jobs: Vec<NewJob> = Vec::new();
        let mut tx = store.begin().await?;
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
                        BOOKING_CANCELLED,
                        &booking.id,
                        Some(by),
                        now,
                    ));
                }
                let text = t_args(
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
                    return Ok(false);
                }
                sqlx::query("UPDATE bookings SET start_at = $1, master_id = $2, updated_at = $3 WHERE id = $4")
                    .bind(start.timestamp_millis())
                    .bind(master_id.clone().unwrap_or_else(|| booking.master_id.clone()))
                    .bind(now.timestamp_millis())
                    .bind(&booking.id)
                    .execute(&mut *tx)
                    .await?;
                if let Some(crm) = crm_system {
                    jobs.push(booking_job(
                        &booking.business_id,
                        crm,
                        BOOKING_RESCHEDULED,
                        &booking.id,
                        Some(by),
                        now,
                    ));
                }
                let text = t_args(
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
                    (BookingStatus::Visited, BOOKING_VISITED)
                } else {
                    (BookingStatus::NoShow, BOOKING_NO_SHOW)
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
                    jobs.push(crate::accounting::jobs::sales_job(
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
        Ok(true)
    }

    fn notice(&self, booking: &Booking, key: &str, text: String, lang: Lang) -> Option<NewJob> {
        let chat = booking.chat.as_ref()?;
        let buttons = vec![vec![
            // The dialog honours these from any message, however old.
            Button {
                label: t(lang, "btn-book"),
                data: "0|B".into(),
            },
            Button {
                label: t(lang, "btn-my"),
                data: "0|Y".into(),
            },
        ]];
        let reply = Reply {
            text,
            buttons,
            ..Reply::default()
        };
        Some(notify_job(
            &booking.business_id,
            chat,
            &format!("{key}:{}", booking.id),
            reply,
        ))
    }
}
