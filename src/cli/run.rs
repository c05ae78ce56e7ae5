//! `zapis run` and `zapis demo`: the service itself, and a conversation in the terminal.

use super::*;

pub(super) async fn demo(
    store: Option<String>,
    start: Option<String>,
    lang: Option<String>,
) -> anyhow::Result<()> {
    // The temp dir lives until the demo ends, then takes its database with it.
    let tmp = tempfile::tempdir().context("creating a temporary directory for the demo store")?;
    let url = match store {
        Some(url) => url,
        None => format!("sqlite://{}", tmp.path().join("demo.db").display()),
    };
    let config = Config::demo(&url);
    let app = App::build(config, Arc::new(SystemClock))
        .await
        .context("opening the demo store")?;
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    crate::messenger::console::run(
        &app.conversations,
        stdin,
        tokio::io::stdout(),
        start,
        lang.as_deref(),
    )
    .await
    .context("running the demo conversation")?;
    app.store.close().await;
    Ok(())
}

pub(super) async fn run(mut config: Config) -> anyhow::Result<()> {
    let shutdown = crate::shutdown::listen();
    // Without a messenger the HTTP server (webhooks, landing forms) is the whole service;
    // without either there is nothing to serve.
    if config.telegram.is_none() && config.max.is_none() && config.http.is_none() {
        bail!(
            "nothing to run: no messenger and no [http] section are configured (add a [telegram] or [max] section with `token`, or [http] with `listen` for webhooks and forms)"
        );
    }
    let store = crate::store::Store::connect(&config.store.url)
        .await
        .context("opening the store")?;
    adopt_schedule_timezone(&mut config, &store).await;
    let app = Arc::new(
        App::on_store(config, store, Arc::new(SystemClock)).context("building the service")?,
    );
    tracing::info!(business = %app.settings.business.name, "zapis is running");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The process's own: one HTTP server and one metrics exporter, whichever business they serve.
    let deployment = &app.deployment;
    let metrics = match &deployment.http {
        Some(http) if http.metrics || http.metrics_listen.is_some() => {
            Some(crate::metrics::install().context("starting the metrics recorder")?)
        }
        _ => None,
    };
    // Built once: its systems are what ops and the console report, and it delivers.
    let engine = app.engine();
    let systems = engine.systems().to_vec();
    let mut metrics_task = None;
    let http_task = deployment.http.as_ref().map(|http| -> anyhow::Result<_> {
        let mut state = app.http_state(http.webhook_secret.clone());
        let ops = |metrics: Option<&metrics_exporter_prometheus::PrometheusHandle>| {
            Some(Arc::new(crate::http::ops::Ops {
                systems: systems.clone(),
                pollers: app
                    .pollers
                    .configured(app.settings.telegram.as_ref(), app.settings.max.as_ref()),
                metrics: metrics.cloned(),
            }))
        };
        if let (Some(listen), Some(handle)) = (http.metrics_listen, &metrics) {
            let mut alone = state.clone();
            alone.ops = ops(Some(handle));
            metrics_task = Some(tokio::spawn(crate::http::ops::serve_metrics(
                listen,
                alone,
                stopped(stop_rx.clone()),
            )));
        }
        state.ops = ops(metrics.as_ref().filter(|_| http.metrics));
        if http.console {
            let view = business_view(&app, &systems, http, "/webhooks/".into());
            state.console = Some(console_state(&app.store, &app.clock, vec![view], http)?);
        }
        let limits = http
            .limits()
            .fitted_to(crate::http::server::raise_descriptor_limit());
        Ok(tokio::spawn(crate::http::serve(
            http.listen,
            state,
            limits,
            stopped(stop_rx.clone()),
        )))
    });
    let http_task = http_task.transpose()?;
    let instance = crate::store::new_id();
    let bots = serve_business(app.clone(), engine, instance, shutdown).await;
    let _ = stop_tx.send(true);
    for task in [http_task, metrics_task].into_iter().flatten() {
        match task.await {
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
    }
    bots.context("running the messenger bots")?;
    app.store.close().await;
    Ok(())
}

pub(super) async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// One business at work until `until` resolves or its bots fail: its deliveries, its periodic
/// loops (each under a lease, so several instances sharing the store run it once) and its bots.
/// Returns the bots' error, if they stopped on one.
pub(super) async fn serve_business(
    app: Arc<App>,
    engine: crate::sync::Engine,
    instance: String,
    until: impl Future<Output = ()> + Send + 'static,
) -> Result<(), crate::messenger::MessengerError> {
    if !app.settings.privacy.consent {
        tracing::warn!(
            business = %app.settings.business.id,
            "privacy.consent = false: the bot asks clients for their phone and name without \
             asking their consent to the processing of personal data (152-ФЗ); collect it some \
             other way"
        );
    }
    if let Some(crm) = &app.crm {
        // Settled now so the first booking does not wait on it; a failure here is retried by
        // the first CRM job, which needs the same.
        if let Err(e) = crm.prepare().await {
            tracing::warn!(business = %app.settings.business.id, system = %crm.system(), error = %e, "CRM not prepared yet; the first CRM job tries again");
        }
    }
    // Deliveries and loops run beside the bots and stop after them.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let engine = Arc::new(engine);
    let engine_task = tokio::spawn(engine.run(stop_rx.clone()));
    let lease = |name: &'static str, every: std::time::Duration| {
        LoopLease::new(
            app.store.clone(),
            &app.settings.business.id,
            name,
            &instance,
            every,
        )
    };
    let watch_task = app.dikidi.clone().map(|dikidi| {
        let every = dikidi.poll_interval;
        let poller = crate::booking::dikidi::Poller::new(dikidi, app.clock.clone())
            .with_lease(lease("dikidi_poll", every));
        crate::lifecycle::watch::spawn(
            poller,
            app.store.clone(),
            app.clock.clone(),
            app.settings.business.id.clone(),
            app.change_applier(),
            app.alerts(),
            stop_rx.clone(),
        )
    });
    let crm_reconcile_task = app.crm_reconciler().map(|reconciler| {
        let interval = app
            .settings
            .crm
            .as_ref()
            .map(|c| c.reconcile_interval)
            .unwrap_or(std::time::Duration::from_secs(300));
        tokio::spawn(reconciler.run(
            app.store.clone(),
            app.clock.clone(),
            interval,
            lease("crm_reconcile", interval),
            stop_rx.clone(),
        ))
    });
    let stock_task = app.stock_watch().map(|(watch, every)| {
        tokio::spawn(watch.run(
            app.clock.clone(),
            every,
            lease("onec_stock", every),
            stop_rx.clone(),
        ))
    });
    // Dikidi's poller above already re-reads its bookings.
    let reconcile_task = app.dikidi.is_none().then(|| {
        let every = app.deployment.sync.reconcile_interval;
        crate::lifecycle::watch::spawn_reconciler(
            app.reconciler(),
            app.clock.clone(),
            every,
            lease("schedule_reconcile", every),
            stop_rx.clone(),
        )
    });
    let reminders_task = app.settings.reminders.enabled.then(|| {
        let every = app.settings.reminders.check_every;
        crate::lifecycle::reminders::spawn(
            app.reminders(),
            app.clock.clone(),
            every,
            lease("reminders", every),
            stop_rx.clone(),
        )
    });
    // Only where a CRM takes the leads and the conversation records the attempts.
    let unfinished_task = match (&app.crm, app.conversations.follows_unfinished()) {
        (Some(crm), Some(after)) => Some(crate::unfinished::spawn(
            app.store.clone(),
            app.settings.business.id.clone(),
            crm.system(),
            after,
            app.clock.clone(),
            lease("unfinished", crate::unfinished::check_every(after)),
            stop_rx.clone(),
        )),
        _ => None,
    };
    let retention_task = crate::store::retention::spawn(
        app.store.clone(),
        app.settings.business.id.clone(),
        app.deployment.retention.clone(),
        app.clock.clone(),
        lease("retention", crate::store::retention::ERASURES_EVERY),
        stop_rx.clone(),
    );
    let bots = bots_under_lease(&app, lease("bots", BOTS_LEASE_EVERY), until).await;
    let _ = stop_tx.send(true);
    for task in [
        watch_task,
        reconcile_task,
        reminders_task,
        crm_reconcile_task,
        unfinished_task,
        stock_task,
        Some(retention_task),
    ]
    .into_iter()
    .flatten()
    {
        let _ = task.await;
    }
    match engine_task.await {
        Ok(Err(e)) => tracing::error!(error = %e, "delivery engine failed"),
        Err(e) => tracing::error!(error = %e, "delivery engine task failed"),
        Ok(Ok(())) => {}
    }
    bots
}

/// How often the instance polling a business's bots renews its hold on them: another instance
/// takes them over within three of these (at least 10 s) after the holder dies.
const BOTS_LEASE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A bot may be long-polled by one process at a time (Telegram answers a second poller 409):
/// of several instances sharing the store, the one holding the business's `bots` lease polls,
/// the others wait to take over. Returns when `until` resolves or the bots fail.
async fn bots_under_lease(
    app: &Arc<App>,
    lease: LoopLease,
    until: impl Future<Output = ()> + Send + 'static,
) -> Result<(), crate::messenger::MessengerError> {
    if app.settings.telegram.is_none() && app.settings.max.is_none() {
        return app.run_messengers_until(until).await;
    }
    let (gone_tx, gone) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(async move {
        until.await;
        let _ = gone_tx.send(true);
    });
    let business = app.settings.business.id.clone();
    let mut said_waiting = false;
    let result = loop {
        if *gone.borrow() {
            break Ok(());
        }
        if !lease.hold(app.clock.now()).await {
            // Ready all the same: this instance takes the business's webhooks and deliveries.
            app.pollers.telegram.standby();
            app.pollers.max.standby();
            if !said_waiting {
                tracing::info!(
                    business = %business,
                    "another instance polls this business's bots; waiting to take over"
                );
                said_waiting = true;
            }
            let mut gone = gone.clone();
            tokio::select! {
                () = tokio::time::sleep(BOTS_LEASE_EVERY) => {}
                _ = gone.wait_for(|g| *g) => {}
            }
            continue;
        }
        said_waiting = false;
        // Held: renewed while the bots run; lost (the store unreachable past the lease, another
        // instance taking over), the bots stop here and this instance waits again.
        let (lost_tx, lost) = tokio::sync::watch::channel(false);
        let renew = {
            let (lease, clock) = (lease.clone(), app.clock.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(BOTS_LEASE_EVERY).await;
                    if !lease.hold(clock.now()).await {
                        let _ = lost_tx.send(true);
                        return;
                    }
                }
            })
        };
        let stop = {
            let (mut gone, mut lost) = (gone.clone(), lost.clone());
            async move {
                tokio::select! {
                    _ = gone.wait_for(|g| *g) => {}
                    _ = lost.wait_for(|l| *l) => {}
                }
            }
        };
        let ran = app.run_messengers_until(stop).await;
        renew.abort();
        if *lost.borrow() && !*gone.borrow() && ran.is_ok() {
            tracing::warn!(
                business = %business,
                "lost the hold on this business's bots; another instance polls them now"
            );
            continue;
        }
        lease.release().await;
        break ran;
    };
    watcher.abort();
    result
}

/// What the console shows of a business besides its rows: `webhooks` is the path its
/// webhook URLs start with.
pub(super) fn business_view(
    app: &App,
    systems: &[System],
    http: &crate::config::HttpConfig,
    webhooks: String,
) -> crate::console::BusinessView {
    let config = &app.settings;
    crate::console::BusinessView {
        id: config.business.id.clone(),
        name: config.business.name.clone(),
        timezone: config.business.timezone,
        telegram_bot: config
            .telegram
            .as_ref()
            .and_then(|t| t.bot_username.clone()),
        max_bot: config.max.as_ref().and_then(|m| m.bot_username.clone()),
        schedule: app.booking.system(),
        crm: app.crm.as_ref().map(|c| c.system()),
        systems: systems.to_vec(),
        webhook_sources: app.webhook_sources(),
        webhook_prefix: webhooks,
        webhook_secret: http.webhook_secret.clone(),
        booking: app.booking.clone(),
        crm_client: app.crm.clone(),
    }
}

/// The console over the businesses given.
pub(super) fn console_state(
    store: &Store,
    clock: &Arc<dyn crate::clock::Clock>,
    businesses: Vec<crate::console::BusinessView>,
    http: &crate::config::HttpConfig,
) -> anyhow::Result<Arc<crate::console::ConsoleState>> {
    let state = crate::console::ConsoleState::new(
        store.clone(),
        clock.clone(),
        businesses,
        http.public_url.as_ref().map(|u| u.to_string()),
    )
    .context("preparing the console")?;
    Ok(Arc::new(state))
}

/// The schedule's zone is the one every time a client sees is in: a YClients company's
/// `timezone_name` wins over a `business.timezone` that disagrees (a Yekaterinburg salon set
/// up as Moscow would show every time two hours early), with a warning naming both.
///
/// The read keeps YClients' pace as the service's own requests do: the pacer of the company's
/// address is the process's one (`connectors::pacing::limiter`), and on a PostgreSQL `store`
/// every instance's, so reads at start beside other instances' busy salons stay within 5 a
/// second.
pub(super) async fn adopt_schedule_timezone(config: &mut Config, store: &crate::store::Store) {
    let (crate::config::BookingSystemKind::Yclients, Some(yc)) =
        (&config.booking.system, &config.booking.yclients)
    else {
        return;
    };
    let client = crate::booking::yclients::Yclients::new(yc, Arc::new(SystemClock));
    client.share_pace_through(store);
    match client.company().await {
        Ok(company) if company.timezone != config.business.timezone => {
            tracing::warn!(
                "business.timezone {} disagrees with the YClients company's timezone_name {}; \
                 clients are shown times in {} (fix business.timezone)",
                config.business.timezone,
                company.timezone,
                company.timezone
            );
            config.business.timezone = company.timezone;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(
            error = %e,
            "cannot read the YClients company's time zone at start; using business.timezone {}",
            config.business.timezone
        ),
    }
}
