//! Wiring: builds the store, the booking system and the conversation runtime from config.
//!
//! Two halves, after the config's two parts: what a process has once (the store, the HTTP
//! server, the delivery workers, alerts) comes from the [`Deployment`]; a business's
//! connectors, bots and conversations are built by `BusinessParts::build` from its
//! [`BusinessSettings`] alone, so serving another business is building another set of parts.

use crate::domain::System;
use std::sync::Arc;

use crate::accounting::config::OnecMode;
use crate::accounting::exchange::Exchange;
use crate::accounting::jobs::OnecJobs;
use crate::accounting::onec_odata::OnecOdata;
use crate::booking::BookingSystem;
use crate::booking::dikidi::Dikidi;
use crate::booking::sandbox::Sandbox;
use crate::booking::yclients::Yclients;
use crate::clock::Clock;
use crate::config::{BookingSystemKind, BusinessSettings, Config, Deployment};
use crate::conversation::Conversations;
use crate::crm::Crm;
use crate::crm::amocrm::AmoCrm;
use crate::crm::bitrix24::Bitrix24;
use crate::crm::config::{CrmConfig, CrmSystem};
use crate::lifecycle::changes::ChangeApplier;
use crate::lifecycle::crm_jobs::CrmJobs;
use crate::lifecycle::crm_reconcile::CrmReconciler;
use crate::lifecycle::effects::ONEC_SYSTEM;
use crate::lifecycle::inbox::{AmoCrmInbox, Bitrix24Inbox, YclientsInbox};
use crate::lifecycle::schedule_jobs::BookingJobs;
use crate::messenger::max::MaxBot;
use crate::messenger::max::MaxInbox;
use crate::messenger::notify::{
    MaxAlertSink, MaxChatNotifier, TelegramAlertSink, TelegramNotifier,
};
use crate::messenger::{MessengerError, StopSignal};
use crate::store::{Store, StoreError};
use crate::sync::inbox::{INBOX_SYSTEM, InboxDispatcher};
use crate::sync::{AlertSink, Alerts, EmailSink, Engine, WebhookSink};

pub struct App {
    /// The school's AlfaCRM, when `[school.alfacrm]` is configured.
    pub alfacrm: Option<Arc<crate::school::alfacrm::AlfaCrm>>,
    /// The school's GetCourse, when `[school.getcourse]` is configured.
    pub getcourse: Option<Arc<crate::school::getcourse::GetCourse>>,
    /// The CRM every booking is mirrored into, when configured.
    pub crm: Option<Arc<dyn Crm>>,
    /// The business's 1C over OData, when `[onec] mode = "odata"`.
    pub onec: Option<Arc<OnecOdata>>,
    /// What this process has once: the store's URL, the HTTP server, workers, alerts.
    pub deployment: Deployment,
    /// The business this process serves.
    pub settings: BusinessSettings,
    /// Every secret of the configuration, kept out of the delivery journal.
    scrubber: Arc<crate::secrets::Scrubber>,
    pub store: Store,
    pub booking: Arc<dyn BookingSystem>,
    /// The same system as `booking` when it is YClients, for `zapis check` and webhooks.
    pub yclients: Option<Arc<Yclients>>,
    /// The same system as `booking` when it is Dikidi, for `zapis check` and its poller.
    pub dikidi: Option<Arc<Dikidi>>,
    /// The same CRM as `crm` when it is Bitrix24, for its events (which carry only an id).
    pub bitrix24: Option<Bitrix24>,
    pub conversations: Arc<Conversations>,
    pub clock: Arc<dyn Clock>,
    /// Whether each messenger's poll loop is alive, for `/health/ready`.
    pub pollers: crate::messenger::liveness::Pollers,
}

impl App {
    /// Opens (and migrates) the configuration's store and builds every part on it.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> Result<App, StoreError> {
        let store = Store::connect(&config.store.url).await?;
        App::on_store(config, store, clock)
    }

    /// Builds every part on a store the caller opened (read-only commands open it without
    /// migrating).
    pub fn on_store(
        config: Config,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<App, StoreError> {
        let scrubber = Arc::new(crate::secrets::Scrubber::from_config(&config));
        let (deployment, settings) = config.into_parts();
        let BusinessParts {
            booking,
            yclients,
            dikidi,
            bitrix24,
            crm,
            alfacrm,
            getcourse,
            onec,
            conversations,
        } = BusinessParts::build(&settings, &store, &clock)?;
        Ok(App {
            deployment,
            settings,
            scrubber,
            store,
            booking,
            yclients,
            crm,
            onec,
            dikidi,
            bitrix24,
            conversations,
            clock,
            alfacrm,
            getcourse,
            pollers: Default::default(),
        })
    }

    /// How changes noticed in the schedule reach our store, the CRM and the client.
    pub fn change_applier(&self) -> ChangeApplier {
        ChangeApplier {
            schedule_system: self.booking.system(),
            crm_system: self.crm.as_ref().map(|c| c.system()),
            accounting: self.onec.is_some(),
            default_lang: self.settings.business.locale,
            texts: self.settings.business.texts.clone(),
            timezone: self.settings.business.timezone,
            schedule_to_crm: self.deployment.sync.schedule_to_crm,
            notify_client: self.deployment.sync.notify_client,
            admin_bookings: self.deployment.sync.admin_bookings,
        }
    }

    /// The periodic re-read of upcoming bookings' leads, when a CRM is configured and a
    /// manager's cancel is meant to reach the schedule.
    pub fn crm_reconciler(&self) -> Option<CrmReconciler> {
        let crm = self.crm.clone()?;
        let cfg = self.settings.crm.as_ref()?;
        let cancel_from_crm = match crm.system() {
            System::AmoCrm => cfg.amocrm.as_ref().is_some_and(|a| a.cancel_from_crm),
            System::Bitrix24 => cfg.bitrix24.as_ref().is_some_and(|b| b.cancel_from_crm),
            _ => false,
        };
        cancel_from_crm.then(|| CrmReconciler {
            business_id: self.settings.business.id.clone(),
            crm,
            booking: self.booking.clone(),
            applier: self.change_applier(),
        })
    }

    /// The periodic 1C stock check and its period, when 1C is reached over OData and a
    /// low-stock threshold is configured.
    pub fn stock_watch(
        &self,
    ) -> Option<(crate::accounting::stock::StockWatch, std::time::Duration)> {
        let onec = self.onec.clone()?;
        let cfg = self.settings.onec.as_ref()?;
        let every = cfg.stock_check_every()?;
        let threshold = cfg.low_stock_threshold?;
        let watch = crate::accounting::stock::StockWatch {
            business_id: self.settings.business.id.clone(),
            accounting: onec,
            store: self.store.clone(),
            alerts: self.alerts(),
            threshold,
            names: cfg
                .services
                .iter()
                .map(|(service, key)| (key.clone(), service.clone()))
                .collect(),
        };
        Some((watch, every))
    }

    /// The reconciliation poll over this configuration's schedule.
    pub fn reconciler(&self) -> crate::lifecycle::schedule_reconcile::Reconciler {
        crate::lifecycle::schedule_reconcile::Reconciler {
            booking: self.booking.clone(),
            store: self.store.clone(),
            applier: self.change_applier(),
            business_id: self.settings.business.id.clone(),
            ahead: chrono::Duration::from_std(self.deployment.sync.reconcile_ahead)
                .unwrap_or(chrono::Duration::days(60)),
        }
    }

    /// Reminders before visits, as configured.
    pub fn reminders(&self) -> crate::lifecycle::reminders::Reminders {
        crate::lifecycle::reminders::Reminders::new(
            self.store.clone(),
            self.settings.business.clone(),
            &self.settings.reminders,
        )
        .with_change_cutoff(self.settings.booking.change_cutoff)
    }

    /// The systems whose webhooks this configuration reads; others are not even stored.
    pub fn webhook_sources(&self) -> Vec<&'static str> {
        use crate::config::BookingSystemKind;
        use crate::crm::config::CrmSystem;
        use crate::messenger::config::MaxMode;
        let c = &self.settings;
        let mut sources = Vec::new();
        if c.booking.system == BookingSystemKind::Yclients {
            sources.push(System::Yclients.as_str());
        }
        match c.crm.as_ref().map(|crm| crm.system) {
            Some(CrmSystem::Amocrm) => sources.push(System::AmoCrm.as_str()),
            Some(CrmSystem::Bitrix24) => sources.push(System::Bitrix24.as_str()),
            None => {}
        }
        if c.max.as_ref().is_some_and(|m| m.mode == MaxMode::Webhook) {
            sources.push(System::Max.as_str());
        }
        if c.telegram
            .as_ref()
            .is_some_and(|t| t.mode == crate::messenger::config::TelegramMode::Webhook)
        {
            sources.push(System::Telegram.as_str());
        }
        if c.school.as_ref().is_some_and(|s| s.getcourse.is_some()) {
            sources.push(System::GetCourse.as_str());
        }
        sources
    }

    /// The HTTP face of this configuration: webhooks, and the landing forms of a school.
    pub fn http_state(&self, secret: secrecy::SecretString) -> crate::http::HttpState {
        crate::http::HttpState {
            store: self.store.clone(),
            business_id: Some(self.settings.business.id.clone()),
            secret,
            sources: self.webhook_sources(),
            clock: self.clock.clone(),
            max_secret: self
                .settings
                .max
                .as_ref()
                .and_then(|m| m.webhook_secret.clone()),
            telegram_secret: self
                .settings
                .telegram
                .as_ref()
                .filter(|t| t.mode == crate::messenger::config::TelegramMode::Webhook)
                .and_then(|t| t.webhook_secret.clone()),
            bitrix24_token: self
                .settings
                .crm
                .as_ref()
                .and_then(|c| c.bitrix24.as_ref())
                .and_then(|b| b.application_token.clone()),
            onec: self.commerceml_exchange(),
            ops: None,
            console: None,
            forms: self.settings.school.as_ref().map(|school| {
                crate::http::forms::FormsState::new(
                    self.store.clone(),
                    &self.settings.business.id,
                    self.clock.clone(),
                    school.clone(),
                    self.deployment
                        .http
                        .as_ref()
                        .map(|h| h.trusted_proxies.clone())
                        .unwrap_or_default(),
                )
            }),
        }
    }

    /// The `/1c/exchange` endpoint's state when 1C is set up to call us.
    fn commerceml_exchange(&self) -> Option<Arc<Exchange>> {
        let onec = self.settings.onec.as_ref()?;
        if onec.mode != OnecMode::Commerceml {
            return None;
        }
        let cml = onec.commerceml.clone()?;
        Some(Arc::new(
            Exchange::new(
                self.store.clone(),
                &self.settings.business.id,
                self.clock.clone(),
                cml,
                self.settings.business.timezone,
            )
            .with_low_stock_alert(onec.low_stock_threshold, self.alerts()),
        ))
    }

    /// Every configured place alerts go to.
    pub fn alerts(&self) -> Alerts {
        let mut sinks: Vec<Arc<dyn AlertSink>> = Vec::new();
        if let Some(url) = &self.deployment.alerts.webhook_url {
            sinks.push(Arc::new(WebhookSink::new(
                reqwest::Client::new(),
                url.clone(),
            )));
        }
        // The deployment's alert chats are reached through the business's bot: the deployment
        // has no bot of its own.
        if let (Some(tg), Some(chat)) = (
            &self.settings.telegram,
            self.deployment.alerts.telegram_chat_id,
        ) {
            sinks.push(Arc::new(TelegramAlertSink::new(tg, chat)));
        }
        if let (Some(max), Some(chat)) = (&self.settings.max, self.deployment.alerts.max_chat_id) {
            sinks.push(Arc::new(MaxAlertSink::new(max, chat)));
        }
        if let Some(email) = &self.deployment.alerts.email {
            // The settings were checked when the config was read, so this does not fail in
            // practice; if it did, the other sinks still work.
            match EmailSink::new(email) {
                Ok(sink) => sinks.push(Arc::new(sink)),
                Err(e) => tracing::error!(error = %e, "alerts by e-mail are off"),
            }
        }
        Alerts::new(sinks)
    }

    /// The delivery engine with a handler for every system this configuration writes to.
    pub fn engine(&self) -> Engine {
        let mut engine = Engine::new(
            self.store.clone(),
            self.clock.clone(),
            self.deployment.sync.clone(),
            self.alerts(),
            &self.settings.business.id,
        )
        .with_scrubber(self.scrubber.clone());
        let business = &self.settings.business;
        if let Some(crm) = &self.crm {
            engine.register(
                crm.system(),
                Arc::new(
                    CrmJobs::new(crm.clone(), business.locale, business.timezone)
                        .with_texts(business.texts.clone()),
                ),
            );
        }
        let mut booking_jobs = BookingJobs::new(
            self.booking.clone(),
            self.crm.as_ref().map(|c| c.system()),
            business.locale,
            business.timezone,
            business.address.clone(),
        )
        .with_texts(business.texts.clone());
        if let Some(onec) = &self.onec {
            booking_jobs = booking_jobs.with_accounting();
            let post_sales = self.settings.onec.as_ref().is_some_and(|o| o.post_sales);
            engine.register(
                ONEC_SYSTEM,
                Arc::new(OnecJobs::new(onec.clone(), business.timezone, post_sales)),
            );
        }
        engine.register(self.booking.system(), Arc::new(booking_jobs));
        let mut inbox = InboxDispatcher::default();
        if let Some(y) = &self.yclients {
            inbox.register(
                System::Yclients.as_str(),
                Arc::new(YclientsInbox {
                    yclients: y.clone(),
                    applier: self.change_applier(),
                }),
            );
        }
        if let (Some(crm), Some(amo)) = (
            &self.crm,
            self.settings.crm.as_ref().and_then(|c| c.amocrm.as_ref()),
        ) && crm.system() == System::AmoCrm
        {
            inbox.register(
                System::AmoCrm.as_str(),
                Arc::new(AmoCrmInbox {
                    booking: self.booking.clone(),
                    applier: self.change_applier(),
                    cancelled_status_id: amo.cancelled_status_id,
                    cancel_from_crm: amo.cancel_from_crm,
                }),
            );
        }
        if let (Some(b24), Some(cfg)) = (
            &self.bitrix24,
            self.settings.crm.as_ref().and_then(|c| c.bitrix24.as_ref()),
        ) {
            inbox.register(
                System::Bitrix24.as_str(),
                Arc::new(Bitrix24Inbox {
                    crm: b24.clone(),
                    booking: self.booking.clone(),
                    applier: self.change_applier(),
                    cancel_from_crm: cfg.cancel_from_crm,
                }),
            );
        }
        if let Some(max) = &self.settings.max {
            let bot = MaxBot::from_config(max, self.conversations.clone());
            inbox.register(System::Max.as_str(), Arc::new(MaxInbox { bot }));
        }
        if let Some(tg) = &self.settings.telegram
            && tg.mode == crate::messenger::config::TelegramMode::Webhook
        {
            let business = &self.settings.business;
            let adapter = crate::messenger::telegram::TelegramAdapter::new(tg)
                .default_lang(business.locale)
                .texts(business.texts.clone());
            inbox.register(
                System::Telegram.as_str(),
                Arc::new(adapter.inbox(self.conversations.clone())),
            );
        }
        if let Some(school) = &self.settings.school {
            if let (Some(alfa), Some(config)) = (&self.alfacrm, &school.alfacrm) {
                engine.register(
                    crate::school::ALFACRM,
                    Arc::new(
                        crate::school::jobs::AlfaCrmJobs::new(
                            alfa.clone(),
                            config.clone(),
                            school.clone(),
                            business.locale,
                            business.timezone,
                        )
                        .with_texts(business.texts.clone()),
                    ),
                );
            }
            if let Some(gc) = &self.getcourse {
                engine.register(
                    crate::school::GETCOURSE,
                    Arc::new(crate::school::jobs::GetCourseJobs::new(
                        gc.clone(),
                        school.clone(),
                    )),
                );
            }
            if school.getcourse.is_some() || school.alfacrm.is_some() {
                inbox.register(
                    System::GetCourse.as_str(),
                    Arc::new(crate::school::inbox::GetCourseInbox {
                        school: school.clone(),
                        // With 1C over OData each payment also becomes an invoice there.
                        accounting: self.onec.is_some(),
                    }),
                );
            }
        }
        engine.register(INBOX_SYSTEM, Arc::new(inbox));
        if let Some(support) = &self.settings.support {
            let mut chats: Vec<Box<dyn crate::support::AdminChat>> = Vec::new();
            if let (Some(tg), Some(chat)) = (&self.settings.telegram, support.telegram_chat_id) {
                chats.push(Box::new(TelegramAlertSink::new(tg, chat)));
            }
            if let (Some(max), Some(chat)) = (&self.settings.max, support.max_chat_id) {
                chats.push(Box::new(MaxAlertSink::new(max, chat)));
            }
            engine.register(
                crate::support::SUPPORT_SYSTEM,
                Arc::new(crate::support::SupportJobs::new(
                    chats,
                    business.texts.clone(),
                    business.locale,
                )),
            );
        }
        if let Some(tg) = &self.settings.telegram {
            engine.register(System::Telegram, Arc::new(TelegramNotifier::new(tg)));
        }
        if let Some(max) = &self.settings.max {
            engine.register(System::Max, Arc::new(MaxChatNotifier::new(max)));
        }
        engine
    }

    /// Runs every configured messenger side by side until Ctrl-C or SIGTERM; with none configured
    /// (a forms-only or webhooks-only deployment) it just waits for the signal. A messenger whose
    /// API cannot be reached is retried while the rest runs; one that refuses its token stops the
    /// others too and its error is returned, since no retry can fix a wrong token.
    pub async fn run_messengers(&self) -> Result<(), MessengerError> {
        self.run_messengers_until(crate::shutdown::signal()).await
    }

    /// As [`App::run_messengers`], until `until` resolves: a business of a deployment of
    /// several stops on its own when its file is removed or changed.
    pub async fn run_messengers_until(
        &self,
        until: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), MessengerError> {
        let (tg_config, max_config) = (&self.settings.telegram, &self.settings.max);
        let stop = StopSignal::new();
        let signal = {
            let stop = stop.clone();
            tokio::spawn(async move {
                until.await;
                stop.stop();
            })
        };
        let tg = async {
            let Some(config) = tg_config else {
                return Ok(());
            };
            let result = crate::messenger::telegram::run(
                config,
                self.conversations.clone(),
                self.pollers.telegram.clone(),
                stop.stopped(),
            )
            .await;
            if result.is_err() {
                stop.stop();
            }
            result.map_err(MessengerError::from)
        };
        let mx = async {
            let Some(config) = max_config else {
                return Ok(());
            };
            let result = crate::messenger::max::run(
                config,
                self.conversations.clone(),
                self.pollers.max.clone(),
                stop.stopped(),
            )
            .await;
            if result.is_err() {
                stop.stop();
            }
            result.map_err(MessengerError::from)
        };
        let (tg, mx) = if tg_config.is_none() && max_config.is_none() {
            stop.stopped().await;
            (Ok(()), Ok(()))
        } else {
            tokio::join!(tg, mx)
        };
        signal.abort();
        tg.and(mx)
    }
}

/// One business's connectors and conversations, built from its settings alone: nothing here
/// reads the deployment, so a second business is a second call.
struct BusinessParts {
    booking: Arc<dyn BookingSystem>,
    yclients: Option<Arc<Yclients>>,
    dikidi: Option<Arc<Dikidi>>,
    bitrix24: Option<Bitrix24>,
    crm: Option<Arc<dyn Crm>>,
    alfacrm: Option<Arc<crate::school::alfacrm::AlfaCrm>>,
    getcourse: Option<Arc<crate::school::getcourse::GetCourse>>,
    onec: Option<Arc<OnecOdata>>,
    conversations: Arc<Conversations>,
}

impl BusinessParts {
    fn build(
        settings: &BusinessSettings,
        store: &Store,
        clock: &Arc<dyn Clock>,
    ) -> Result<BusinessParts, StoreError> {
        let yclients = match (&settings.booking.system, &settings.booking.yclients) {
            (BookingSystemKind::Yclients, Some(y)) => {
                let yclients = Yclients::new(y, clock.clone());
                yclients.share_pace_through(store);
                Some(Arc::new(yclients))
            }
            _ => None,
        };
        let dikidi = match (&settings.booking.system, &settings.booking.dikidi) {
            (BookingSystemKind::Dikidi, Some(d)) => Some(Arc::new(Dikidi::new(
                d,
                settings.business.timezone,
                clock.clone(),
            ))),
            _ => None,
        };
        let booking: Arc<dyn BookingSystem> = match (&yclients, &dikidi) {
            (Some(y), _) => y.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => {
                // Config validation refuses the systems this build does not carry yet.
                Arc::new(Sandbox::new(
                    store.clone(),
                    &settings.business.id,
                    settings.business.timezone,
                    clock.clone(),
                ))
            }
        };
        let bitrix24 = match &settings.crm {
            Some(CrmConfig {
                system: CrmSystem::Bitrix24,
                bitrix24: Some(b24),
                ..
            }) => Some(
                Bitrix24::new(
                    b24.clone(),
                    store.clone(),
                    &settings.business.id,
                    clock.clone(),
                )
                .map_err(|e| StoreError::Corrupt(format!("crm.bitrix24: {e}")))?,
            ),
            _ => None,
        };
        let crm: Option<Arc<dyn Crm>> = match (&settings.crm, &bitrix24) {
            (
                Some(CrmConfig {
                    system: CrmSystem::Amocrm,
                    amocrm: Some(amo),
                    ..
                }),
                _,
            ) => Some(Arc::new(
                AmoCrm::new(
                    amo.clone(),
                    store.clone(),
                    &settings.business.id,
                    clock.clone(),
                )
                .map_err(|e| StoreError::Corrupt(format!("crm.amocrm: {e}")))?,
            )),
            (_, Some(b24)) => Some(Arc::new(b24.clone())),
            _ => None,
        };
        let school = settings.school.as_ref();
        let alfacrm = school
            .and_then(|s| s.alfacrm.clone())
            .map(|a| crate::school::alfacrm::AlfaCrm::new(a).map(Arc::new))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("school.alfacrm: {e}")))?;
        let getcourse = school
            .and_then(|s| s.getcourse.clone())
            .map(|g| crate::school::getcourse::GetCourse::new(g).map(Arc::new))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("school.getcourse: {e}")))?;
        let onec = match &settings.onec {
            Some(o) if o.mode == OnecMode::Odata => Some(Arc::new(
                OnecOdata::new(o).map_err(|e| StoreError::Corrupt(format!("onec: {e}")))?,
            )),
            _ => None,
        };
        let mut conversations = Conversations::new(
            store.clone(),
            booking.clone(),
            settings.business.clone(),
            clock.clone(),
        );
        conversations = conversations
            .with_change_cutoff(settings.booking.change_cutoff)
            .with_privacy(settings.privacy.clone());
        if let Some(support) = &settings.support {
            conversations = conversations.with_support(support.clone());
        }
        if let Some(crm) = &crm {
            conversations = conversations.with_crm(crm.system());
            // Schools enrol into courses, whose leads are the school CRM's affair.
            if let Some(after) = settings.crm.as_ref().and_then(|c| c.unfinished_after)
                && settings.business.kind != crate::domain::BusinessKind::School
            {
                conversations = conversations.with_unfinished(after);
            }
        }
        if settings.business.kind == crate::domain::BusinessKind::School
            && let (Some(school), Some(alfa)) = (&settings.school, &alfacrm)
        {
            conversations = conversations.with_school(school.clone(), alfa.clone());
        }
        if onec.is_some() {
            conversations = conversations.with_accounting();
        }
        let conversations = Arc::new(conversations);
        Ok(BusinessParts {
            booking,
            yclients,
            dikidi,
            bitrix24,
            crm,
            alfacrm,
            getcourse,
            onec,
            conversations,
        })
    }
}

#[cfg(test)]
mod tests;
