//! Change detection for schedules that push no webhooks (Dikidi): upcoming bookings we made are
//! re-read on an interval, and what changed becomes a booking change like a webhook would, while
//! a payload that no longer parses raises one alert and its recovery another.

use crate::domain::System;
use crate::domain::{BookingId, BusinessId};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::changes::{ChangeApplier, ScheduleChange};
use super::schedule_reconcile::Reconciler;
use crate::booking::RecordStatus;
use crate::booking::dikidi::{DikidiEvent, KnownRecord, Poller};
use crate::clock::Clock;
use crate::shutdown::{Cadence, LeasedRounds};
use crate::store::{LoopLease, Store};
use crate::sync::{Alert, AlertKind, Alerts};

/// One line in the booking's journal; a failure to write it is logged, never fatal.
async fn journal(
    store: &Store,
    business: &BusinessId,
    booking_id: &BookingId,
    kind: &str,
    detail: &str,
    now: chrono::DateTime<chrono::Utc>,
) {
    let written = async {
        let mut tx = store
            .begin()
            .await
            .map_err(crate::store::StoreError::from)?;
        crate::store::record_event_in(&mut tx, business, booking_id, "dikidi", kind, detail, now)
            .await?;
        tx.commit().await.map_err(crate::store::StoreError::from)
    };
    if let Err(e) = written.await {
        tracing::error!(booking = %booking_id, error = %e, "cannot journal a Dikidi event");
    }
}

/// Starts the reconciliation poll, for every schedule but Dikidi, whose own poller (below)
/// already re-reads its bookings and also watches its API for drift.
pub fn spawn_reconciler(
    reconciler: Reconciler,
    clock: Arc<dyn Clock>,
    every: Duration,
    lease: LoopLease,
    stop: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut rounds = LeasedRounds::new(Cadence::PauseFirst(every), lease, clock, stop);
    tokio::spawn(async move {
        while let Some(now) = rounds.next().await {
            match reconciler.poll(now).await {
                Ok(report) if report.applied > 0 || report.failed > 0 => {
                    tracing::info!(?report, "reconciliation poll")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "reconciliation poll: store"),
            }
        }
    })
}

/// Starts the Dikidi `poller`, for when Dikidi is the schedule; it stops when `stop` turns true.
pub fn spawn(
    poller: Poller,
    store: Store,
    clock: Arc<dyn Clock>,
    business: BusinessId,
    applier: ChangeApplier,
    alerts: Alerts,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<DikidiEvent>(64);
    let known = {
        let store = store.clone();
        let clock = clock.clone();
        let business = business.clone();
        move || {
            let (store, clock, business) = (store.clone(), clock.clone(), business.clone());
            async move {
                let now = clock.now();
                match store.bookings(&business).await {
                    Ok(list) => list
                        .into_iter()
                        .filter(|b| b.status.is_active() && b.start >= now)
                        .filter_map(|b| {
                            Some(KnownRecord {
                                external_id: b.external_id?,
                                start: b.start,
                                status: RecordStatus::Active,
                            })
                        })
                        .collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list bookings to poll");
                        Vec::new()
                    }
                }
            }
        }
    };
    let stop_poll = {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(poller.run(known, tx, stop_poll));
    tokio::spawn(async move {
        let mut down_since = None;
        loop {
            let event = tokio::select! {
                e = rx.recv() => match e { Some(e) => e, None => return },
                _ = stop.wait_for(|s| *s) => return,
            };
            let now = clock.now();
            let change = match event {
                DikidiEvent::Cancelled { external_id } => {
                    Some((external_id, ScheduleChange::Cancelled))
                }
                DikidiEvent::Moved {
                    external_id,
                    new_start,
                } => Some((
                    external_id,
                    ScheduleChange::Moved {
                        start: new_start,
                        master_id: None,
                    },
                )),
                DikidiEvent::ApiChanged { endpoint, sample } => {
                    down_since = Some(now);
                    alerts
                        .send(&Alert {
                            kind: AlertKind::Down,
                            business_id: business.clone(),
                            system: System::Dikidi,
                            since: now,
                            at: now,
                            last_error: Some(format!(
                                "Dikidi's API changed at {endpoint}: {sample}"
                            )),
                        })
                        .await;
                    None
                }
                DikidiEvent::RecordsMissing { external_ids } => {
                    // Drift, not a cancellation: journal it on each booking and alert; the
                    // bookings and the clients are left alone.
                    let detail = "Dikidi's records_info did not list this record; nothing was \
                                  cancelled (absence is not a cancellation signal)";
                    let mut ours = Vec::new();
                    for id in &external_ids {
                        if let Ok(Some(booking)) = store
                            .entity_for_external(&business, "booking", System::Dikidi, id)
                            .await
                        {
                            // A link row's entity id is text for every kind of entity; a
                            // booking's is our booking id. A bad one still counts in the alert.
                            match crate::store::parse_booking_id(&booking) {
                                Ok(id) => {
                                    journal(&store, &business, &id, "records-missing", detail, now)
                                        .await
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "cannot journal a Dikidi event")
                                }
                            }
                            ours.push(booking);
                        }
                    }
                    alerts
                        .send(&Alert {
                            kind: AlertKind::Attention,
                            business_id: business.clone(),
                            system: System::Dikidi,
                            since: now,
                            at: now,
                            last_error: Some(format!(
                                "records_info answered without {} of our upcoming records \
                                 (Dikidi ids {}; bookings {}). Nothing was cancelled and no \
                                 client was told; check them in Dikidi.",
                                external_ids.len(),
                                external_ids.join(", "),
                                ours.join(", ")
                            )),
                        })
                        .await;
                    None
                }
                DikidiEvent::CaptchaDemanded { booking_id } => {
                    journal(
                        &store,
                        &business,
                        &booking_id,
                        "captcha",
                        "Dikidi demanded a captcha at the record step; zapis does not solve \
                         captchas, the client was asked to call",
                        now,
                    )
                    .await;
                    alerts
                        .send(&Alert {
                            kind: AlertKind::Attention,
                            business_id: business.clone(),
                            system: System::Dikidi,
                            since: now,
                            at: now,
                            last_error: Some(format!(
                                "Dikidi demanded a captcha to book {booking_id}, so the online \
                                 booking stopped and the client was asked to call. If it keeps \
                                 happening, ask Dikidi to turn the captcha off for the widget."
                            )),
                        })
                        .await;
                    None
                }
                DikidiEvent::ApiRecovered => {
                    alerts
                        .send(&Alert {
                            kind: AlertKind::Recovered,
                            business_id: business.clone(),
                            system: System::Dikidi,
                            since: down_since.take().unwrap_or(now),
                            at: now,
                            last_error: None,
                        })
                        .await;
                    None
                }
            };
            let Some((external_id, change)) = change else {
                continue;
            };
            let found = store
                .entity_for_external(&business, "booking", System::Dikidi, &external_id)
                .await;
            let booking = match found {
                Ok(Some(id)) => match crate::store::parse_booking_id(&id) {
                    Ok(id) => store.booking(&business, &id).await.ok().flatten(),
                    Err(_) => None,
                },
                _ => None,
            };
            if let Some(booking) = booking
                && let Err(e) = applier.apply(&store, &booking, &change, now).await
            {
                tracing::error!(booking = %booking.id, error = %e, "cannot apply a Dikidi change");
            }
        }
    })
}
