//! MAX updates delivered by webhook (`max.mode = "webhook"`), processed from the inbox through
//! the same path as long polling. The secret was checked when the delivery was stored.

use async_trait::async_trait;
use axum::http::HeaderMap;

use crate::messenger::max::{MaxBot, parse_webhook};
use crate::sync::inbox::{InboxHandler, InboxMessage};
use crate::sync::{Delivered, DeliveryError, JobContext};

pub struct MaxInbox {
    pub bot: MaxBot,
}

#[async_trait]
impl InboxHandler for MaxInbox {
    async fn process(
        &self,
        message: &InboxMessage,
        _ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let updates = parse_webhook(&HeaderMap::new(), message.body.as_bytes(), None)
            .map_err(|e| DeliveryError::permanent(format!("unreadable MAX webhook: {e}")))?;
        for update in updates {
            self.bot.handle_update(update).await;
        }
        Ok(Delivered::done())
    }
}
