//! Completing bookings the schedule could not take at the moment the client confirmed: the
//! sync engine retries until the schedule answers, then tells the client how it went.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::AnyConnection;

use crate::booking::{BookRequest, BookingError, BookingSystem};
use crate::dialog::{Button, Reply, links};
use crate::domain::System;
use crate::domain::{Booking, BookingStatus};
use crate::i18n::{FluentValue, Lang, Texts};
use crate::lifecycle::effects::{
    Operation, booking_job, client_lang, load_booking_job, notify_job,
};
use crate::store::{Store, StoreError, confirm_booking_in, set_booking_status_in};
use crate::sync::{Delivered, DeliveryError, Job, JobContext, JobHandler, NewJob, enqueue_in};

pub struct BookingJobs {
    booking: Arc<dyn BookingSystem>,
    crm_system: Option<System>,
    default_lang: Lang,
    texts: Texts,
    timezone: chrono_tz::Tz,
    address: String,
    /// Whether a booking confirmed from the queue also gets its 1C invoice.
    accounting: bool,
}

impl BookingJobs {
    pub fn new(
        booking: Arc<dyn BookingSystem>,
        crm_system: Option<System>,
        default_lang: Lang,
        timezone: chrono_tz::Tz,
        address: String,
    ) -> BookingJobs {
        BookingJobs {
            booking,
            crm_system,
            default_lang,
            texts: Texts::default(),
            timezone,
            address,
            accounting: false,
        }
    }

    /// The business's words for the notices to clients (built-in salon words otherwise).
    pub fn with_texts(mut self, texts: Texts) -> BookingJobs {
        self.texts = texts;
        self
    }

    pub fn with_accounting(mut self) -> BookingJobs {
        self.accounting = true;
        self
    }

    fn notice(
        &self,
        booking: &Booking,
        key: &str,
        text: String,
        book_again: bool,
        lang: Lang,
    ) -> Option<NewJob> {
        let chat = booking.chat.as_ref()?;
        let buttons = if book_again {
            // The dialog honours "book" from any message, however old.
            vec![vec![Button {
                label: self.texts.t(lang, "btn-book"),
                data: links::book(),
            }]]
        } else {
            Vec::new()
        };
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

    async fn commit(
        &self,
        store: &Store,
        now: chrono::DateTime<chrono::Utc>,
        change: impl AsyncFnOnce(&mut AnyConnection) -> Result<(), StoreError>,
        jobs: Vec<NewJob>,
    ) -> Result<(), DeliveryError> {
        let run = async {
            let mut tx = store.begin().await?;
            change(&mut tx).await?;
            for job in &jobs {
                enqueue_in(&mut tx, job, now).await?;
            }
            tx.commit().await?;
            Ok::<(), StoreError>(())
        };
        run.await
            .map_err(|e| DeliveryError::transient(format!("store: {e}")))
    }
}

#[async_trait]
impl JobHandler for BookingJobs {
    async fn handle(&self, job: &Job, ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        let (_, booking) = load_booking_job(job, ctx.store).await?;
        match Operation::of(job) {
            Some(Operation::CompleteBooking) => self.complete(booking, ctx).await,
            Some(Operation::BookingConfirmed) => self.confirm(booking, ctx).await,
            _ => Err(DeliveryError::permanent(format!(
                "no operation {:?}",
                job.operation
            ))),
        }
    }
}

impl BookingJobs {
    /// "I'll come" into the schedule's confirmation status. Setting it twice is harmless, and a
    /// visit cancelled or past meanwhile is left alone.
    async fn confirm(
        &self,
        booking: Booking,
        ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let (true, Some(external)) = (
            booking.status.is_active() && booking.start > ctx.now,
            booking.external_id.as_ref(),
        ) else {
            return Ok(Delivered::done());
        };
        let kept = match self.booking.confirm_visit(external).await {
            Ok(kept) => kept,
            // The salon removed the visit meanwhile: nothing to confirm, and the cancellation
            // reaches us through the webhook or the reconciliation poll.
            Err(BookingError::NotFound(reason)) => {
                tracing::info!(booking = %booking.id, %reason, "confirmation for a record that is gone");
                return Ok(Delivered::done());
            }
            Err(e) => return Err(DeliveryError::from(e)),
        };
        if !kept {
            tracing::debug!(booking = %booking.id, "the schedule keeps no confirmation status");
        }
        Ok(Delivered::done())
    }

    async fn complete(
        &self,
        booking: Booking,
        ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let store = ctx.store;
        if booking.status != BookingStatus::Requested {
            // Completed or cancelled meanwhile: nothing left to do.
            return Ok(Delivered::done());
        }
        let lang = client_lang(store, &booking, self.default_lang).await;
        let when = booking
            .start
            .with_timezone(&self.timezone)
            .format("%d.%m %H:%M")
            .to_string();
        let client_comment = store
            .booking_comment(&booking.id)
            .await
            .map_err(|e| DeliveryError::transient(format!("store: {e}")))?;
        let request = BookRequest {
            booking_id: booking.id.clone(),
            service_id: booking.service_id.clone(),
            master_id: booking.master_id.clone(),
            start: booking.start,
            duration_min: booking.duration_min,
            client_phone: booking.client_phone.clone(),
            client_name: booking.client_name.clone(),
            client_email: booking.client_email.clone(),
            // The administrator sees the client's comment and where they came from, as on a
            // direct booking.
            comment: crate::booking::record_comment(client_comment.as_deref(), &booking.source),
        };
        // This job exists because the dialog's own attempt got no answer: that attempt may
        // have made the record, so every try (the first one here too) looks for it before
        // asking for the slot, which that very record would show as taken.
        let found = self
            .booking
            .find_record_for_booking(&request)
            .await
            .map_err(DeliveryError::from)?;
        let outcome = match found {
            Some(record) => Ok(record),
            None => self.booking.book(&request).await,
        };
        match outcome {
            Ok(record) => {
                let text = self.texts.t_args(
                    lang,
                    "notify-booked",
                    &[
                        ("service", FluentValue::from(booking.service_name.clone())),
                        ("master", FluentValue::from(booking.master_name.clone())),
                        ("when", FluentValue::from(when)),
                        ("address", FluentValue::from(self.address.clone())),
                    ],
                );
                let mut jobs: Vec<NewJob> = self
                    .notice(&booking, "booked", text, false, lang)
                    .into_iter()
                    .collect();
                if let Some(crm) = self.crm_system {
                    jobs.push(booking_job(
                        &booking.business_id,
                        crm,
                        Operation::BookingCreated,
                        &booking.id,
                        Some("client"),
                        ctx.now,
                    ));
                }
                if self.accounting {
                    jobs.push(crate::lifecycle::effects::invoice_job(
                        &booking.business_id,
                        &booking.id,
                        ctx.now,
                    ));
                }
                let (id, ext, now) = (booking.id.clone(), record.external_id.clone(), ctx.now);
                self.commit(
                    store,
                    now,
                    async move |tx| confirm_booking_in(tx, &id, &ext, now).await,
                    jobs,
                )
                .await?;
                crate::booking::log_booked(&booking);
                Ok(Delivered::linked(
                    "booking",
                    &booking.id,
                    &record.external_id,
                ))
            }
            Err(e)
                if matches!(e, BookingError::SlotTaken | BookingError::NotFound(_))
                    || e.is_refusal() =>
            {
                let text = self.texts.t_args(
                    lang,
                    "notify-slot-gone",
                    &[
                        ("service", FluentValue::from(booking.service_name.clone())),
                        ("when", FluentValue::from(when)),
                    ],
                );
                let jobs: Vec<NewJob> = self
                    .notice(&booking, "slot-gone", text, true, lang)
                    .into_iter()
                    .collect();
                let (id, now) = (booking.id.clone(), ctx.now);
                self.commit(
                    store,
                    now,
                    async move |tx| {
                        set_booking_status_in(tx, &id, BookingStatus::Failed, now)
                            .await
                            .map(|_| ())
                    },
                    jobs,
                )
                .await?;
                Ok(Delivered::done())
            }
            Err(e) => Err(DeliveryError::from(e)),
        }
    }
}
