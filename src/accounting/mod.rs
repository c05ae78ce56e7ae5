//! The business's accounting system (1C): the client base, invoices and sales documents, and
//! stock. Two mechanisms 1C offers without custom development: its OData standard interface
//! (we call 1C) and its CommerceML site exchange (1C calls us, see `http::commerceml`).

pub mod commerceml;
pub mod config;

use std::sync::Arc;

use crate::accounting::config::OnecMode;
use crate::app::App;
use crate::http::commerceml::Exchange;

/// The `/1c/exchange` endpoint's state when 1C is set up to call us.
pub fn commerceml_exchange(app: &App) -> Option<Arc<Exchange>> {
    let onec = app.config.onec.as_ref()?;
    if onec.mode != OnecMode::Commerceml {
        return None;
    }
    let cml = onec.commerceml.clone()?;
    Some(Arc::new(
        Exchange::new(
            app.store.clone(),
            &app.config.business.id,
            app.clock.clone(),
            cml,
            app.config.business.timezone,
        )
        .with_low_stock_alert(onec.low_stock_threshold, app.alerts()),
    ))
}
