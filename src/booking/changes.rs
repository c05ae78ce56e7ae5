//! Changes made in the schedule by the business (a webhook or a poll noticed them): our store
//! follows, the CRM hears about it, and the client is told in their chat.

use chrono::{DateTime, Utc};

use crate::dialog::{Button, Reply};
use crate::domain::{Booking, BookingStatus};
use crate::effects::{
    BOOKING_CANCELLED, BOOKING_RESCHEDULED, booking_job, client_lang, notify_job,
};
use crate::i18n::{FluentValue, Lang, t, t_args};
use crate::store::{Store, StoreError, set_booking_status_in};
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

/// Where a change was made; the side it came from is not told about it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Schedule,
    Crm,
}

pub struct ChangeApplier {
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
            Origin::Schedule => ("business", self.crm_system),
            // The CRM made this change itself: no job goes back to it.
            Origin::Crm => ("crm", None),
        };
        if !booking.status.is_active() {
            return Ok(false);
        }
        let lang = client_lang(store, booking, self.default_lang).await;
        let when = |at: DateTime<Utc>| {
            at.with_timezone(&self.timezone)
                .format("%d.%m %H:%M")
                .to_string()
        };
        let mut jobs: Vec<NewJob> = Vec::new();
        let mut tx = store.pool().begin().await?;
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
            ScheduleChange::Visited => {
                set_booking_status_in(&mut tx, &booking.id, BookingStatus::Visited, now).await?;
                if self.accounting {
                    jobs.push(crate::accounting::jobs::sales_job(
                        &booking.business_id,
                        &booking.id,
                        now,
                    ));
                }
            }
            ScheduleChange::NoShow => {
                set_booking_status_in(&mut tx, &booking.id, BookingStatus::NoShow, now).await?;
            }
        }
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
