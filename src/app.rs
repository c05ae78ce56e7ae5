//! Wiring: builds the store, the booking system and the conversation runtime from config.

use std::sync::Arc;

use crate::booking::BookingSystem;
use crate::booking::dikidi::Dikidi;
use crate::booking::sandbox::Sandbox;
use crate::booking::yclients::Yclients;
use crate::clock::Clock;
use crate::config::{BookingSystemKind, Config};
use crate::conversation::Conversations;
use crate::store::{Store, StoreError};

pub struct App {
    pub config: Config,
    pub store: Store,
    pub booking: Arc<dyn BookingSystem>,
    /// The same system as `booking` when it is YClients, for `zapis check` and webhooks.
    pub yclients: Option<Arc<Yclients>>,
    /// The same system as `booking` when it is Dikidi, for `zapis check` and its poller.
    pub dikidi: Option<Arc<Dikidi>>,
    pub conversations: Arc<Conversations>,
    pub clock: Arc<dyn Clock>,
}

impl App {
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> Result<App, StoreError> {
        let store = Store::connect(&config.store.url).await?;
        let yclients = match (&config.booking.system, &config.booking.yclients) {
            (BookingSystemKind::Yclients, Some(y)) => {
                Some(Arc::new(Yclients::new(y, clock.clone())))
            }
            _ => None,
        };
        let dikidi = match (&config.booking.system, &config.booking.dikidi) {
            (BookingSystemKind::Dikidi, Some(d)) => Some(Arc::new(Dikidi::new(
                d,
                config.business.timezone,
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
                    &config.business.id,
                    config.business.timezone,
                    clock.clone(),
                ))
            }
        };
        let conversations = Arc::new(Conversations::new(
            store.clone(),
            booking.clone(),
            config.business.clone(),
            clock.clone(),
        ));
        Ok(App {
            config,
            store,
            booking,
            yclients,
            dikidi,
            conversations,
            clock,
        })
    }
}
