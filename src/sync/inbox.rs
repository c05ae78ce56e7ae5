//! Incoming webhooks: stored raw (headers and body) in the same transaction as the job that
//! will process them, so the sender is acknowledged only after the event is durable. The
//! (business, source, dedup key) is unique, so a webhook delivered twice is processed once.

use crate::domain::BusinessId;
use crate::domain::System;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::Digest;
use sqlx::Row;

use crate::store::{Store, StoreError, from_millis, to_millis};
use crate::sync::jobs::{Job, NewJob, enqueue_in};
use crate::sync::retry::DeliveryError;
use crate::sync::worker::{Delivered, JobContext, JobHandler};

/// The system name inbox jobs are queued under.
pub const INBOX_SYSTEM: System = System::Inbox;

/// The pseudo-header the query string of a delivery is kept under: some senders (GetCourse's
/// "call URL") put every value in the URL. A colon cannot start a real header name.
pub const QUERY_HEADER: &str = ":query";

/// Headers that carry credentials are never stored.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-max-bot-api-secret",
    "x-telegram-bot-api-secret-token",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxMessage {
    pub id: i64,
    pub business_id: BusinessId,
    pub source: String,
    pub dedup_key: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Stored and queued under this id.
    New(i64),
    /// Seen before; nothing stored, nothing queued.
    Duplicate,
}

/// Keeps the headers worth keeping (lower-cased, credentials dropped).
pub fn keep_headers(headers: &axum::http::HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| !SECRET_HEADERS.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

/// Stores a webhook and queues its processing in one transaction. Acknowledge the sender
/// only after this returns `Ok`.
pub async fn receive(
    store: &Store,
    business_id: &BusinessId,
    source: &str,
    dedup_key: &str,
    headers: &BTreeMap<String, String>,
    body: &str,
    now: DateTime<Utc>,
) -> Result<Received, StoreError> {
    let headers: BTreeMap<&String, &String> = headers
        .iter()
        .filter(|(k, _)| !SECRET_HEADERS.contains(&k.to_ascii_lowercase().as_str()))
        .collect();
    let headers = serde_json::to_string(&headers)
        .map_err(|e| StoreError::Corrupt(format!("headers: {e}")))?;
    let mut tx = store.begin().await?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO sync_inbox (business_id, source, dedup_key, headers, body, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (business_id, source, dedup_key) DO NOTHING RETURNING id",
    )
    .bind(business_id.as_str())
    .bind(source)
    .bind(dedup_key)
    .bind(headers)
    .bind(body)
    .bind(to_millis(now))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        return Ok(Received::Duplicate);
    };
    let job = NewJob {
        business_id: business_id.clone(),
        system: INBOX_SYSTEM,
        operation: source.into(),
        payload: serde_json::json!({ "inbox_id": id }),
        idempotency_key: format!("{source}:{dedup_key}"),
        ordering_key: None,
    };
    enqueue_in(&mut tx, &job, now).await?;
    tx.commit().await?;
    Ok(Received::New(id))
}

/// The stored webhook `id` of `business_id`; another business's message is not found.
pub async fn message(
    store: &Store,
    business_id: &BusinessId,
    id: i64,
) -> Result<Option<InboxMessage>, StoreError> {
    let row = sqlx::query(
        "SELECT id, business_id, source, dedup_key, headers, body, received_at FROM sync_inbox \
         WHERE id = $1 AND business_id = $2",
    )
    .bind(id)
    .bind(business_id.as_str())
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| {
        let headers: String = r.try_get("headers")?;
        Ok(InboxMessage {
            id: r.try_get("id")?,
            business_id: crate::store::business_id_in(&r)?,
            source: r.try_get("source")?,
            dedup_key: r.try_get("dedup_key")?,
            headers: serde_json::from_str(&headers)
                .map_err(|e| StoreError::Corrupt(format!("inbox headers: {e}")))?,
            body: r.try_get("body")?,
            received_at: from_millis(r.try_get("received_at")?)?,
        })
    })
    .transpose()
}

/// Processes one stored webhook of a source (a connector's inbound half).
#[async_trait]
pub trait InboxHandler: Send + Sync {
    async fn process(
        &self,
        message: &InboxMessage,
        ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError>;
}

/// The [`JobHandler`] for the `inbox` system: loads the stored webhook and hands it to the
/// handler registered for its source.
#[derive(Default, Clone)]
pub struct InboxDispatcher {
    sources: HashMap<String, Arc<dyn InboxHandler>>,
}

impl InboxDispatcher {
    pub fn register(&mut self, source: &str, handler: Arc<dyn InboxHandler>) {
        self.sources.insert(source.into(), handler);
    }
}

#[async_trait]
impl JobHandler for InboxDispatcher {
    async fn handle(&self, job: &Job, ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        let handler = self.sources.get(&job.operation).ok_or_else(|| {
            DeliveryError::permanent(format!("no inbox handler for {}", job.operation))
        })?;
        let id = job
            .payload
            .get("inbox_id")
            .and_then(|v| v.as_i64())
            .ok_or_else(|| DeliveryError::permanent("inbox job without inbox_id"))?;
        let message = message(ctx.store, &job.business_id, id)
            .await
            .map_err(|e| DeliveryError::transient(format!("store: {e}")))?
            .ok_or_else(|| DeliveryError::permanent(format!("inbox message {id} is missing")))?;
        handler.process(&message, ctx).await
    }
}

// ------------------------------------------------------------ keys a vendor stamps

/// Form pairs of a PHP-style `application/x-www-form-urlencoded` body.
pub fn form_pairs(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.trim().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Keys longer than this are digested: the stamp lists every entity of a batch delivery.
pub const MAX_KEY: usize = 200;

/// `prefix:` and the parts, or a digest of them when too long for a key.
pub fn stamp_key(prefix: &str, parts: &[String]) -> String {
    let joined = parts.join("|");
    if joined.len() + prefix.len() < MAX_KEY {
        return format!("{prefix}:{joined}");
    }
    let digest = sha2::Sha256::digest(joined.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}:{hex}")
}
