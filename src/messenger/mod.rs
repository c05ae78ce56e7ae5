//! Messenger adapters. They only translate: updates in, neutral replies out.

pub mod console;

use crate::app::App;

#[derive(Debug, thiserror::Error)]
pub enum MessengerError {
    #[error("no messenger is configured")]
    NothingConfigured,
}

/// Runs every configured messenger side by side until shutdown.
pub async fn run_all(app: &App) -> Result<(), MessengerError> {
    if app.config.telegram.is_none() {
        return Err(MessengerError::NothingConfigured);
    }
    // The Telegram adapter plugs in here.
    crate::shutdown::signal().await;
    Ok(())
}
