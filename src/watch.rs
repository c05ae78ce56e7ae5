//! Change detection for schedules that push no webhooks (Dikidi): upcoming bookings we made are
//! re-read on an interval, and what changed becomes a booking change like a webhook would, while
//! a payload that no longer parses raises one alert and its recovery another.

use tokio::task::JoinHandle;

use crate::app::App;
use crate::booking::RecordStatus;
use crate::booking::changes::ScheduleChange;
use crate::booking::dikidi::{DikidiEvent, KnownRecord, Poller};
use crate::sync::{Alert, AlertKind};

/// Starts the reconciliation poll for every schedule but Dikidi, whose own poller (below) already
/// re-reads its bookings and also watches its API for drift.
pub fn spawn_reconciler(
    app: &App,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if app.dikidi.is_some() {
        return None;
    }
    let reconciler = app.reconciler();
    let clock = app.clock.clone();
    let every = app.config.sync.reconcile_interval;
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match reconciler.poll(clock.now()).await {
                Ok(report) if report.applied > 0 || report.failed > 0 => {
                    tracing::info!(?report, "reconciliation poll")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "reconciliation poll: store"),
            }
        }
    }))
}

/// Starts the Dikidi poller when Dikidi is the schedule; it stops when `stop` turns true.
pub fn spawn(app: &App, mut stop: tokio::sync::watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    let dikidi = app.dikidi.clone()?;
    let store = app.store.clone();
    let clock = app.clock.clone();
    let business = app.config.business.id.clone();
    let applier = app.change_applier();
    let alerts = app.alerts();
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
    let poller = Poller::new(dikidi, clock.clone());
    let stop_poll = {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(poller.run(known, tx, stop_poll));
    Some(tokio::spawn(async move {
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
                            system: "dikidi".into(),
                            since: now,
                            at: now,
                            last_error: Some(format!(
                                "Dikidi's API changed at {endpoint}: {sample}"
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
                            system: "dikidi".into(),
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
                .entity_for_external(&business, "booking", "dikidi", &external_id)
                .await;
            let booking = match found {
                Ok(Some(id)) => store.booking(&business, &id).await.ok().flatten(),
                _ => None,
            };
            if let Some(booking) = booking
                && let Err(e) = applier.apply(&store, &booking, &change, now).await
            {
                tracing::error!(booking = %booking.id, error = %e, "cannot apply a Dikidi change");
            }
        }
    }))
}
