//! `zapis run` for a deployment of several businesses (`[businesses]` in the file): one store,
//! one HTTP server and one metrics exporter for the process; for each business file, the
//! business's own connectors, bots, deliveries and loops, as `zapis run` starts them for one.
//!
//! The folder is read again on SIGHUP (`systemctl reload`): a new file starts its business, a
//! removed one stops it, a changed one restarts it, and the rest are not touched. A file that
//! does not read is refused with its path and key in the log; if its business was running, it
//! keeps running as it was. The deployment file itself is read at start only.

use std::collections::HashMap;

use futures::StreamExt;
use tokio::sync::watch;

use super::run::{business_view, console_state, serve_business, stopped};
use super::*;
use crate::config::{BusinessFile, Fleet};

/// A business at work.
struct Running {
    /// The business file's bytes it was started from: it restarts only when they change.
    digest: [u8; 32],
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    settings: crate::config::BusinessSettings,
    view: Option<crate::console::BusinessView>,
}

/// What every business of the process shares.
struct Shared {
    fleet: Fleet,
    only: Option<String>,
    store: Store,
    clock: Arc<dyn crate::clock::Clock>,
    instance: String,
    tenants: crate::http::Tenants,
    console: Option<Arc<crate::console::ConsoleState>>,
}

pub(super) async fn run_fleet(fleet: Fleet, only: Option<String>) -> anyhow::Result<()> {
    let shutdown = crate::shutdown::listen();
    let deployment = fleet.deployment.clone();
    let store = Store::connect(&deployment.store.url)
        .await
        .context("opening the store")?;
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(SystemClock);
    let metrics = match &deployment.http {
        Some(http) if http.metrics || http.metrics_listen.is_some() => {
            Some(crate::metrics::install().context("starting the metrics recorder")?)
        }
        _ => None,
    };
    let console = match &deployment.http {
        Some(http) if http.console => Some(console_state(&store, &clock, Vec::new(), http)?),
        _ => None,
    };
    let shared = Shared {
        fleet,
        only,
        store: store.clone(),
        clock: clock.clone(),
        instance: crate::store::new_id(),
        tenants: crate::http::Tenants::default(),
        console: console.clone(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = Vec::new();
    if let Some(http) = &deployment.http {
        // The process's own state: readiness is the store's, metrics the process's; each
        // business's routes are in `tenants`.
        let state = |metrics: Option<&metrics_exporter_prometheus::PrometheusHandle>| {
            crate::http::HttpState {
                store: store.clone(),
                business_id: None,
                secret: http.webhook_secret.clone(),
                sources: Vec::new(),
                clock: clock.clone(),
                max_secret: None,
                telegram_secret: None,
                bitrix24_token: None,
                forms: None,
                onec: None,
                ops: Some(Arc::new(crate::http::ops::Ops {
                    systems: Vec::new(),
                    pollers: Vec::new(),
                    metrics: metrics.cloned(),
                })),
                console: console.clone(),
            }
        };
        if let (Some(listen), Some(handle)) = (http.metrics_listen, &metrics) {
            servers.push(tokio::spawn(crate::http::ops::serve_metrics(
                listen,
                state(Some(handle)),
                stopped(stop_rx.clone()),
            )));
        }
        let limits = http
            .limits()
            .fitted_to(crate::http::server::raise_descriptor_limit());
        servers.push(tokio::spawn(crate::http::serve_deployment(
            http.listen,
            state(metrics.as_ref().filter(|_| http.metrics)),
            shared.tenants.clone(),
            limits,
            stopped(stop_rx.clone()),
        )));
    }
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("listening for SIGHUP")?;
    tokio::pin!(shutdown);
    let mut running: HashMap<String, Running> = HashMap::new();
    tracing::info!(
        folder = %shared.fleet.dir.display(),
        "zapis is running for the businesses in the folder; SIGHUP reads it again"
    );
    loop {
        refresh(&shared, &mut running).await;
        tokio::select! {
            _ = hangup.recv() => tracing::info!("SIGHUP: reading the businesses again"),
            () = &mut shutdown => break,
        }
    }
    for business in running.values() {
        let _ = business.stop.send(true);
    }
    for (_, business) in running {
        let _ = business.task.await;
    }
    let _ = stop_tx.send(true);
    for server in servers {
        match server.await {
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
    }
    store.close().await;
    Ok(())
}

/// Schedule time zones read at once when businesses start.
const ADOPT_AT_ONCE: usize = 4;

/// Brings the running businesses in line with the folder.
async fn refresh(shared: &Shared, running: &mut HashMap<String, Running>) {
    let files = match shared.fleet.businesses() {
        Ok(files) => files,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the businesses; those running keep running");
            return;
        }
    };
    let files: Vec<BusinessFile> = files
        .into_iter()
        .filter(|f| shared.only.as_ref().is_none_or(|only| *only == f.id))
        .collect();
    let gone: Vec<String> = running
        .keys()
        .filter(|id| !files.iter().any(|f| f.id == **id))
        .cloned()
        .collect();
    for id in gone {
        if let Some(business) = running.remove(&id) {
            tracing::info!(business = %id, "its file is gone: stopping the business");
            stop(shared, &id, business).await;
        }
    }
    let mut due = Vec::new();
    for file in files {
        let digest = file.digest;
        if running.get(&file.id).is_some_and(|r| r.digest == digest) {
            continue;
        }
        match file.config {
            Ok(config) => due.push((file.id, config, digest)),
            Err(e) => {
                let keeps = if running.contains_key(&file.id) {
                    "; the business keeps running as it was"
                } else {
                    ""
                };
                tracing::error!(business = %file.id, "business file refused{keeps}: {e}");
            }
        }
    }
    // Each YClients business reads its company's time zone before it starts: four at a time,
    // at the pace of their address (YClients' 5 requests a second), so fifty salons behind one
    // address start in about ten seconds.
    let due: Vec<(String, Config, [u8; 32])> = futures::stream::iter(due)
        .map(|(id, mut config, digest)| async move {
            super::run::adopt_schedule_timezone(&mut config, &shared.store).await;
            (id, config, digest)
        })
        .buffered(ADOPT_AT_ONCE)
        .collect()
        .await;
    for (id, config, digest) in due {
        if let Some(old) = running.remove(&id) {
            tracing::info!(business = %id, "its file changed: restarting the business");
            stop(shared, &id, old).await;
        }
        match start(shared, &id, config, digest).await {
            Ok(business) => {
                running.insert(id, business);
            }
            Err(e) => {
                tracing::error!(business = %id, error = format!("{e:#}"), "cannot start the business");
            }
        }
    }
    // Every running business's secrets are kept out of the log from now on.
    crate::secrets::install(crate::secrets::Scrubber::from_parts(
        &shared.fleet.deployment,
        running.values().map(|r| &r.settings),
    ));
    if let Some(console) = &shared.console {
        let mut views: Vec<_> = running.values().filter_map(|r| r.view.clone()).collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        console.set_businesses(views);
    }
}

async fn stop(shared: &Shared, id: &str, business: Running) {
    shared.tenants.remove(id);
    let _ = business.stop.send(true);
    let _ = business.task.await;
}

/// Starts one business: its routes under its id, then its deliveries, loops and bots.
async fn start(
    shared: &Shared,
    id: &str,
    config: Config,
    digest: [u8; 32],
) -> anyhow::Result<Running> {
    let app = Arc::new(App::on_store(
        config,
        shared.store.clone(),
        shared.clock.clone(),
    )?);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Built once: its systems are what readiness and the console report, and it delivers.
    let engine = app.engine();
    let mut view = None;
    if let Some(http) = &app.deployment.http {
        let secret = crate::secrets::business_secret(&http.webhook_secret, id);
        let mut state = app.http_state(secret.clone());
        let systems = engine.systems().to_vec();
        state.ops = Some(Arc::new(crate::http::ops::Ops {
            systems: systems.clone(),
            pollers: app
                .pollers
                .configured(app.settings.telegram.as_ref(), app.settings.max.as_ref()),
            metrics: None,
        }));
        if let Some(forms) = state.forms.clone() {
            tokio::spawn(forms.run_housekeeping(stop_rx.clone()));
        }
        shared.tenants.set(app.settings.business.id.clone(), state);
        let mut v = business_view(&app, &systems, http, format!("/webhooks/{id}/"));
        v.webhook_secret = secret;
        view = Some(v);
    }
    let settings = app.settings.clone();
    tracing::info!(business = %id, name = %settings.business.name, "business started");
    let business = id.to_string();
    let task = tokio::spawn({
        let instance = shared.instance.clone();
        async move {
            if let Err(e) = serve_business(app, engine, instance, stopped(stop_rx)).await {
                tracing::error!(business, error = %e, "the business's bots stopped; fix its file and send SIGHUP");
            }
        }
    });
    Ok(Running {
        digest,
        stop: stop_tx,
        task,
        settings,
        view,
    })
}
