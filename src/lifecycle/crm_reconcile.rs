//! A manager's "cancelled" in the CRM reaching the schedule and the client: the shared step
//! both CRMs' webhooks end in, and the periodic reconciliation that re-reads the leads of
//! upcoming bookings, because webhooks get lost (Bitrix24 never re-sends an event, amoCRM
//! gives up after a few failures).

use crate::domain::BusinessId;
use crate::domain::System;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::booking::{BookingError, BookingSystem};
use crate::clock::Clock;
use crate::crm::{Crm, CrmError};
use crate::domain::{Booking, BookingId};
use crate::lifecycle::changes::{CHANGE_IN_FLIGHT, ChangeApplier, Origin, ScheduleChange};
use crate::shutdown::{Cadence, LeasedRounds};
use crate::store::{Store, StoreError};
use crate::sync::DeliveryError;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading leads from the CRM failed: {0}")]
    Crm(#[from] CrmError),
    #[error("cancelling booking {booking} in the schedule failed: {message}")]
    Schedule { booking: BookingId, message: String },
}

/// Cancels a booking because its lead was moved to "cancelled" in the CRM: the schedule
/// record first (the visit must really be freed), then our store, the client's notice and
/// no job back to the CRM. `false` when the booking was no longer active — our own move
/// coming back, or a second event about the same change.
pub async fn cancel_from_crm(
    store: &Store,
    booking_system: &dyn BookingSystem,
    applier: &ChangeApplier,
    booking: &Booking,
    now: DateTime<Utc>,
) -> Result<bool, DeliveryError> {
    if !booking.status.is_active() {
        return Ok(false);
    }
    let store_error = |e: StoreError| DeliveryError::transient(format!("store: {e}"));
    if let Some(record) = &booking.external_id {
        store
            .hold_change(&booking.id, now + CHANGE_IN_FLIGHT)
            .await
            .map_err(store_error)?;
        let cancelled = booking_system.cancel(record).await;
        let failure = match cancelled {
            Ok(()) | Err(BookingError::NotFound(_)) => None,
            Err(e) => Some(DeliveryError::from(e)),
        };
        if let Some(failure) = failure {
            store
                .release_change(&booking.id)
                .await
                .map_err(store_error)?;
            return Err(failure);
        }
    }
    let applied = applier
        .apply_from(store, booking, &ScheduleChange::Cancelled, Origin::Crm, now)
        .await
        .map_err(store_error)?;
    store
        .release_change(&booking.id)
        .await
        .map_err(store_error)?;
    Ok(applied.changed())
}

/// The active-or-not booking whose lead (deal) in `system` has this id, if it is ours.
pub async fn linked_booking(
    store: &Store,
    business_id: &BusinessId,
    system: System,
    lead_id: &str,
) -> Result<Option<Booking>, DeliveryError> {
    let transient = |e: StoreError| DeliveryError::transient(format!("store: {e}"));
    let Some(booking_id) = store
        .entity_for_external(business_id, "booking", system, lead_id)
        .await
        .map_err(transient)?
    else {
        return Ok(None);
    };
    // A link row's entity id is text for every kind of entity; a booking's is our booking id.
    let booking_id = crate::store::parse_booking_id(&booking_id).map_err(transient)?;
    store
        .booking(business_id, &booking_id)
        .await
        .map_err(transient)
}

/// What one reconciliation pass saw and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Upcoming active bookings with a lead in this CRM.
    pub checked: usize,
    /// Bookings cancelled because their lead was found in the cancelled stage.
    pub cancelled: Vec<BookingId>,
}

pub struct CrmReconciler {
    pub business_id: BusinessId,
    pub crm: Arc<dyn Crm>,
    pub booking: Arc<dyn BookingSystem>,
    pub applier: ChangeApplier,
}

impl CrmReconciler {
    /// Re-reads the leads of every upcoming active booking and cancels the visits whose lead a
    /// manager moved to "cancelled".
    pub async fn run_once(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<ReconcileReport, ReconcileError> {
        let linked = store
            .upcoming_linked(&self.business_id, self.crm.system(), now)
            .await?;
        let mut report = ReconcileReport {
            checked: linked.len(),
            ..ReconcileReport::default()
        };
        if linked.is_empty() {
            return Ok(report);
        }
        let lead_ids: Vec<String> = linked.iter().map(|(_, lead)| lead.clone()).collect();
        let cancelled = self.crm.cancelled_among(&lead_ids).await?;
        for (booking_id, lead) in &linked {
            if !cancelled.contains(lead) {
                continue;
            }
            let Some(booking) = store.booking(&self.business_id, booking_id).await? else {
                continue;
            };
            let changed =
                cancel_from_crm(store, self.booking.as_ref(), &self.applier, &booking, now)
                    .await
                    .map_err(|e| ReconcileError::Schedule {
                        booking: booking_id.clone(),
                        message: e.to_string(),
                    })?;
            if changed {
                tracing::info!(
                    booking = %booking_id,
                    crm = %self.crm.system(),
                    "lead found cancelled in the CRM by reconciliation; visit cancelled"
                );
                report.cancelled.push(booking_id.clone());
            }
        }
        Ok(report)
    }

    /// Runs a pass every `interval` until `shutdown` turns true. A failed pass is logged and
    /// retried at the next tick: the next pass re-reads everything anyway.
    pub async fn run(
        self,
        store: Store,
        clock: Arc<dyn Clock>,
        interval: Duration,
        lease: crate::store::LoopLease,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut rounds = LeasedRounds::new(Cadence::Tick(interval), lease, clock, shutdown);
        while let Some(now) = rounds.next().await {
            match self.run_once(&store, now).await {
                Ok(r) if !r.cancelled.is_empty() => tracing::info!(
                    checked = r.checked,
                    cancelled = r.cancelled.len(),
                    "CRM reconciliation pass"
                ),
                Ok(r) => tracing::debug!(checked = r.checked, "CRM reconciliation pass"),
                Err(e) => tracing::warn!(error = %e, "CRM reconciliation pass failed"),
            }
        }
    }
}
