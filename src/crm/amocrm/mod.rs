//! amoCRM / Kommo API v4 over HTTPS. Wire types mirror the vendor JSON and stay private here;
//! callers see the [`Crm`] seam. What this relies on is listed, with sources, in
//! docs/amocrm.md.
//!
//! The folder: this file holds the type, its [`Crm`] impl, setup and check; `config.rs`
//! `[crm.amocrm]`; `client.rs` OAuth and the paced calls with their status sorting;
//! `operations.rs` the CRM steps; `wire.rs` the wire types; `webhook.rs` lead webhooks (a lead
//! moved to the cancelled stage starts there; `lifecycle::inbox` acts on it).

use crate::domain::BusinessId;
use crate::domain::System;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::connectors::pacing::Pacer;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use super::tokens::{OAuthTokens, TokenPair, TokenStore, store_error};
use super::{
    ContactDraft, ContactRecord, ContactRef, ContactRequest, CreatedLead, Crm, CrmError, CrmLead,
    FieldError, LeadRequest, Stage, TRANSCRIPT_HEADER, TaskRequest, TranscriptLine,
    transcript_notes,
};
use crate::clock::Clock;
use crate::connectors::pacing::Pace;
use crate::domain::Booking;
use crate::normalize::{Email, Phone, is_mobile_phone, unicode_email};
use crate::store::Store;
use config::{AMO_LOST_STATUS_ID, AmoCrmConfig};

mod client;
pub(super) mod config;
mod operations;
#[cfg(test)]
mod tests;
mod webhook;
mod wire;

pub use client::*;
pub use webhook::*;
use wire::*;

pub const SYSTEM: System = System::AmoCrm;

/// Documented batch ceilings: complex leads ≤ 50; plain adds "up to 250, recommended ≤ 50".
const BATCH: usize = 50;
/// Plain contact adds and updates take up to 250 per request (crm-apis.md §1.11), as do pages.
pub const CONTACT_BATCH: usize = 250;
/// amoCRM answers 403 to every request from an IP or account it blocked for exceeding the rate
/// limit; the block is temporary, so this is retried, slowly.
const BLOCKED_RETRY: Duration = Duration::from_secs(600);
const AUTH_FIX: &str = "re-run `zapis amocrm auth --code CODE` with a fresh authorisation code from the integration's settings";

/// How much later a request may reach amoCRM than its send time says, compared with the
/// request seven after it, before amoCRM counts eight in one second. It costs 7 ms a request
/// (150 ms apart instead of 143). What it has to cover is mostly the first request of a burst,
/// which opens the connection: against the fake on a loaded 2-core machine eight requests in a
/// row came within 1,130 ms of each other at 6 a second (1,167 when evenly spaced) and within
/// 908 ms at 7 with a 21 ms guard. A larger delay meets a 429, sat out once in the call
/// (`client.rs`).
pub const WINDOW_GUARD: Duration = Duration::from_millis(50);

/// One limiter per account (origin), shared by every client of that account in the process.
fn limiter_for(base_url: &Url, per_second: u32) -> Arc<Pacer> {
    let account = format!("amocrm|{}", base_url.origin().ascii_serialization());
    crate::connectors::pacing::limiter(&account, pace(per_second))
}

/// The pace of `per_second` requests a second: no sliding second holds more, with
/// [`WINDOW_GUARD`] to spare.
pub fn pace(per_second: u32) -> Pace {
    Pace::sliding_second(per_second, WINDOW_GUARD)
}

/// The amoCRM client. Cheap to clone; clones share the token cache and rate limiter.
#[derive(Clone)]
pub struct AmoCrm {
    inner: Arc<Inner>,
}

struct Inner {
    config: AmoCrmConfig,
    http: reqwest::Client,
    limiter: Arc<Pacer>,
    auth: AuthMode,
    clock: Arc<dyn Clock>,
    store: Store,
    business_id: BusinessId,
    /// What the account's lead fields say, read once and kept: every booking needs it.
    account: tokio::sync::Mutex<AccountFields>,
}

#[derive(Default)]
struct AccountFields {
    lead_fields: Option<Arc<Vec<LeadField>>>,
    booking_field: Option<(i64, FieldOrigin)>,
}

/// The name of the text field of leads that holds our booking id, when zapis finds or creates
/// it itself (no `booking_id_field_id` configured).
pub const BOOKING_FIELD_NAME: &str = "zapis: номер записи";
/// Where the field's id is kept in our store (`links`: entity, entity id).
const BOOKING_FIELD_LINK: (&str, &str) = ("crm_field", "lead_booking_id");
/// amoCRM's tracking fields of leads, by code, and the UTM parameter each holds.
const TRACKING_CODES: [(&str, &str); 5] = [
    ("UTM_SOURCE", "utm_source"),
    ("UTM_MEDIUM", "utm_medium"),
    ("UTM_CAMPAIGN", "utm_campaign"),
    ("UTM_CONTENT", "utm_content"),
    ("UTM_TERM", "utm_term"),
];
/// First line of the note carrying tracking values the account has no field for.
pub const UNTRACKED_NOTE_HEADER: &str = "Метки перехода (в amoCRM нет полей для них)";
/// The field list comes 50 to a page; an account has a few dozen fields, so this bounds what
/// is read without ever cutting a real list short.
const MAX_FIELD_PAGES: u32 = 40;

/// A custom field of leads, as the account defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadField {
    pub id: i64,
    pub name: String,
    pub code: Option<String>,
    pub field_type: String,
}

/// Where the booking id field's id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOrigin {
    /// `crm.amocrm.booking_id_field_id`.
    Configured,
    /// Found or created earlier and kept in our store.
    Stored,
    /// Found in the account by its name.
    Found,
    /// Created now.
    Created,
}

impl std::fmt::Display for FieldOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FieldOrigin::Configured => "configured (crm.amocrm.booking_id_field_id)",
            FieldOrigin::Stored => "kept in the store",
            FieldOrigin::Found => "found by name",
            FieldOrigin::Created => "created now",
        })
    }
}

/// What `setup()` settled in the account: the booking id field and the tracking fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupReport {
    pub booking_field_id: i64,
    pub booking_field_origin: FieldOrigin,
    /// Tracking field codes the account has (values go there by field id).
    pub tracking_present: Vec<String>,
    /// Tracking field codes it lacks (values go into tags and a note instead).
    pub tracking_missing: Vec<String>,
}

impl std::fmt::Display for SetupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "booking id field: {} ({})",
            self.booking_field_id, self.booking_field_origin
        )?;
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        writeln!(
            f,
            "tracking fields: {} present; missing: {} (their values go into tags and a note)",
            list(&self.tracking_present),
            list(&self.tracking_missing)
        )
    }
}

/// What a lead needs from the account: the booking id field and the tracking fields by code.
struct LeadContext {
    booking_field: i64,
    tracking: HashMap<&'static str, i64>,
}

enum AuthMode {
    LongLived(SecretString),
    OAuth(Box<OAuth>),
}

struct OAuth {
    client_id: String,
    client_secret: SecretString,
    redirect_uri: String,
    tokens: OAuthTokens,
}

/// What `check()` found in the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub account_id: i64,
    pub account_name: String,
    pub pipeline_id: i64,
    pub pipeline_name: String,
    pub stages: Vec<(i64, String)>,
}

/// A registered webhook, as amoCRM returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: i64,
    pub destination: String,
    pub settings: Vec<String>,
    pub disabled: bool,
}

impl std::fmt::Debug for AmoCrm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmoCrm")
            .field("base_url", &self.inner.config.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl AmoCrm {
    /// Builds a client. With OAuth the token pair lives in `store` under `business_id`;
    /// run [`AmoCrm::exchange_code`] (CLI `zapis amocrm auth --code CODE`) once first.
    pub fn new(
        config: AmoCrmConfig,
        store: Store,
        business_id: &BusinessId,
        clock: Arc<dyn Clock>,
    ) -> Result<AmoCrm, CrmError> {
        config
            .validate()
            .map_err(|e| CrmError::permanent(e.to_string()))?;
        let http = super::http_client(config.timeout_secs)?;
        let auth = match (
            &config.token,
            &config.client_id,
            &config.client_secret,
            &config.redirect_uri,
        ) {
            (Some(token), _, _, _) => AuthMode::LongLived(token.clone()),
            (None, Some(id), Some(secret), Some(redirect)) => AuthMode::OAuth(Box::new(OAuth {
                client_id: id.clone(),
                client_secret: secret.clone(),
                redirect_uri: redirect.clone(),
                tokens: OAuthTokens::new(
                    TokenStore::new(store.clone(), business_id, SYSTEM),
                    "amoCRM",
                    AUTH_FIX,
                ),
            })),
            _ => {
                return Err(CrmError::permanent(
                    "crm.amocrm needs a token or client_id/client_secret/redirect_uri",
                ));
            }
        };
        let limiter = limiter_for(&config.base_url, config.max_requests_per_second);
        // Every process on the store shares the account's pace too.
        limiter.share_through(&store);
        Ok(AmoCrm {
            inner: Arc::new(Inner {
                config,
                http,
                limiter,
                auth,
                clock,
                store,
                business_id: business_id.clone(),
                account: tokio::sync::Mutex::new(AccountFields::default()),
            }),
        })
    }

    pub fn config(&self) -> &AmoCrmConfig {
        &self.inner.config
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }
}

impl AmoCrm {
    // ---------------------------------------------------------------- admin

    /// Validates the token (`GET /api/v4/account`) and that the pipeline and the configured
    /// stages exist (`GET /api/v4/leads/pipelines/{id}`).
    pub async fn check(&self) -> Result<CheckReport, CrmError> {
        let cfg = &self.inner.config;
        let account: AccountIn = match self.get("/api/v4/account", &[]).await? {
            Some(bytes) => parse_body(&bytes, "account")?,
            None => return Err(CrmError::permanent("amoCRM returned no account")),
        };
        let path = format!("/api/v4/leads/pipelines/{}", cfg.pipeline_id);
        let pipeline: PipelineIn = match self.get(&path, &[]).await? {
            Some(bytes) => parse_body(&bytes, "pipeline")?,
            None => {
                return Err(CrmError::permanent(format!(
                    "pipeline {} does not exist in amoCRM (crm.amocrm.pipeline_id)",
                    cfg.pipeline_id
                )));
            }
        };
        let stages: Vec<(i64, String)> = pipeline
            .embedded
            .map(|e| e.statuses)
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.id, s.name.unwrap_or_default()))
            .collect();
        let wanted = [
            ("new_status_id", cfg.new_status_id),
            ("cancelled_status_id", Some(cfg.cancelled_status_id)),
            ("done_status_id", Some(cfg.done_status_id)),
        ];
        for (key, id) in wanted {
            if let Some(id) = id
                && !stages.iter().any(|(s, _)| *s == id)
            {
                return Err(CrmError::permanent(format!(
                    "stage {id} (crm.amocrm.{key}) is not in pipeline {}",
                    cfg.pipeline_id
                )));
            }
        }
        Ok(CheckReport {
            account_id: account.id,
            account_name: account.name.unwrap_or_default(),
            pipeline_id: pipeline.id,
            pipeline_name: pipeline.name.unwrap_or_default(),
            stages,
        })
    }

    /// Subscribes `destination` to amoCRM events (`status_lead`, `add_lead`, …). amoCRM
    /// updates the settings when the destination is already subscribed.
    pub async fn register_webhook(
        &self,
        destination: &Url,
        settings: &[&str],
    ) -> Result<Webhook, CrmError> {
        let body = WebhookOut {
            destination: destination.as_str(),
            settings,
            sort: None,
        };
        let bytes = self
            .send_json(Method::POST, "/api/v4/webhooks", &body)
            .await?
            .ok_or_else(|| CrmError::transient("amoCRM answered 204 to a webhook subscription"))?;
        let hook: WebhookIn = parse_body(&bytes, "webhook")?;
        Ok(Webhook {
            id: hook.id,
            destination: hook.destination,
            settings: hook.settings,
            disabled: hook.disabled.unwrap_or(false),
        })
    }
}

#[async_trait]
impl Crm for AmoCrm {
    fn system(&self) -> System {
        SYSTEM
    }

    /// `GET /api/v4/leads/pipelines` (every pipeline with its statuses under `_embedded`;
    /// amoCRM allows at most 50, on one page) and the lead fields.
    async fn catalog(&self) -> Result<crate::crm::CrmCatalog, CrmError> {
        let list: PipelinesIn = match self.get("/api/v4/leads/pipelines", &[]).await? {
            Some(bytes) => parse_body(&bytes, "pipeline list")?,
            None => PipelinesIn::default(),
        };
        let pipelines = list
            .embedded
            .map(|e| e.pipelines)
            .unwrap_or_default()
            .into_iter()
            .map(|p| crate::crm::CatalogPipeline {
                id: p.id.to_string(),
                name: p.name.unwrap_or_default(),
                stages: p
                    .embedded
                    .map(|e| e.statuses)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| (s.id.to_string(), s.name.unwrap_or_default()))
                    .collect(),
            })
            .collect();
        let fields = self
            .lead_fields(true)
            .await?
            .iter()
            .map(|f| crate::crm::CatalogField {
                id: f.id.to_string(),
                name: f.name.clone(),
                code: f.code.clone(),
                kind: f.field_type.clone(),
            })
            .collect();
        Ok(crate::crm::CrmCatalog {
            pipelines,
            fields,
            sources: Vec::new(),
        })
    }

    async fn find_or_create_contact(&self, req: &ContactRequest) -> Result<ContactRef, CrmError> {
        if let Some(id) = self.find_contact(&req.phone, req.email.as_ref()).await? {
            return Ok(ContactRef {
                id: id.to_string(),
                created: false,
            });
        }
        let bytes = self
            .send_json(Method::POST, "/api/v4/contacts", &[Self::contact_out(req)])
            .await?
            .ok_or_else(|| CrmError::transient("amoCRM answered 204 to adding a contact"))?;
        let added: AddedPage<ContactsAddedEmbedded> = parse_body(&bytes, "contacts response")?;
        let id = added
            .embedded
            .contacts
            .first()
            .map(|c| c.id)
            .ok_or_else(|| CrmError::transient("amoCRM added no contact"))?;
        tracing::info!(contact_id = id, phone = %req.phone.masked(), "amoCRM contact created");
        Ok(ContactRef {
            id: id.to_string(),
            created: true,
        })
    }

    async fn create_lead(&self, req: &LeadRequest) -> Result<CreatedLead, CrmError> {
        let booking = &req.booking;
        let existing = match &req.contact_id {
            Some(id) => Some(lead_id(id)?),
            None if req.without_contact => None,
            None => {
                self.find_contact(&booking.client_phone, booking.client_email.as_ref())
                    .await?
            }
        };
        let ctx = self.lead_context().await?;
        let (id, contact) = match self.post_lead(req, existing, &ctx).await {
            // A field deleted or renamed since the fields were read: read them again and
            // send once more, so an account's change never kills the booking.
            Err(e) if refuses_a_field(&e) => {
                tracing::warn!(error = %e, "amoCRM refused a lead field; re-reading the account's fields");
                self.forget_fields().await;
                let ctx = self.lead_context().await?;
                self.post_lead(req, existing, &ctx).await?
            }
            other => other?,
        };
        tracing::info!(lead_id = id, booking_id = %booking.id, "amoCRM lead created");
        let note_ids = if req.transcript.is_empty() {
            Vec::new()
        } else {
            self.add_notes(&id.to_string(), &req.transcript).await?
        };
        Ok(CreatedLead {
            lead_id: id.to_string(),
            contact,
            note_ids,
        })
    }

    async fn prepare(&self) -> Result<(), CrmError> {
        self.setup().await.map(|_| ())
    }

    async fn find_lead_by_booking(&self, booking_id: &str) -> Result<Option<CrmLead>, CrmError> {
        // `query` searches filled field values, never tags: the booking id lives in a field.
        let (field, _) = self.booking_field().await?;
        let bytes = self
            .get(
                "/api/v4/leads",
                &[("query", booking_id.to_string()), ("limit", "250".into())],
            )
            .await?;
        let Some(bytes) = bytes else { return Ok(None) };
        let page: LeadsPage = parse_body(&bytes, "lead list")?;
        let mut found: Vec<&LeadIn> = page
            .embedded
            .leads
            .iter()
            .filter(|l| Self::lead_matches_booking(l, field, booking_id))
            .collect();
        found.sort_by_key(|l| l.id);
        Ok(found.first().map(|l| l.to_domain()))
    }

    async fn ensure_booking_notes(
        &self,
        lead_id_str: &str,
        booking: &Booking,
        transcript: &[TranscriptLine],
        fresh: bool,
    ) -> Result<Vec<String>, CrmError> {
        let id = lead_id(lead_id_str)?;
        let mut texts: Vec<String> = self.untracked_note(booking).await?.into_iter().collect();
        texts.extend(transcript_notes(
            transcript,
            self.inner.config.note_max_chars,
        ));
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        if !fresh {
            let heads = self.note_heads(id).await?;
            texts.retain(|t| {
                let head = t.lines().next().unwrap_or_default();
                !heads.iter().any(|h| h == head)
            });
        }
        // One request for up to 50 notes: they land together or not at all.
        self.post_notes(id, &texts).await
    }

    async fn add_notes(
        &self,
        lead_id_str: &str,
        transcript: &[TranscriptLine],
    ) -> Result<Vec<String>, CrmError> {
        let id = lead_id(lead_id_str)?;
        let texts = transcript_notes(transcript, self.inner.config.note_max_chars);
        self.post_notes(id, &texts).await
    }

    async fn ensure_transcript(
        &self,
        lead_id_str: &str,
        transcript: &[TranscriptLine],
    ) -> Result<Vec<String>, CrmError> {
        if transcript.is_empty() {
            return Ok(Vec::new());
        }
        let heads = self.note_heads(lead_id(lead_id_str)?).await?;
        if heads.iter().any(|h| h.starts_with(TRANSCRIPT_HEADER)) {
            return Ok(Vec::new());
        }
        self.add_notes(lead_id_str, transcript).await
    }

    async fn ensure_note(&self, lead_id_str: &str, text: &str) -> Result<Option<String>, CrmError> {
        let head = text.lines().next().unwrap_or_default();
        let heads = self.note_heads(lead_id(lead_id_str)?).await?;
        if heads.iter().any(|h| h == head) {
            return Ok(None);
        }
        self.add_note(lead_id_str, text).await.map(Some)
    }

    async fn add_note(&self, lead_id_str: &str, text: &str) -> Result<String, CrmError> {
        let id = lead_id(lead_id_str)?;
        let max = self.inner.config.note_max_chars;
        let text: String = text.chars().take(max).collect();
        let ids = self.post_notes(id, &[text]).await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| CrmError::transient("amoCRM added no note"))
    }

    async fn create_task(&self, req: &TaskRequest) -> Result<String, CrmError> {
        let cfg = &self.inner.config;
        let lead_time = chrono::Duration::from_std(cfg.task_lead_time.0)
            .unwrap_or_else(|_| chrono::Duration::hours(1));
        // A booking made at the last minute still gets a task, due now rather than in the past.
        let due = (req.visit_at - lead_time).max(self.now());
        let task = TaskOut {
            text: req.text.clone(),
            complete_till: due.timestamp(),
            entity_id: lead_id(&req.lead_id)?,
            entity_type: "leads",
            task_type_id: cfg.task_type_id,
            responsible_user_id: cfg.responsible_user_id,
        };
        let bytes = self
            .send_json(Method::POST, "/api/v4/tasks", &[task])
            .await?
            .ok_or_else(|| CrmError::transient("amoCRM answered 204 to adding a task"))?;
        let added: AddedPage<TasksEmbedded> = parse_body(&bytes, "tasks response")?;
        added
            .embedded
            .tasks
            .first()
            .map(|t| t.id.to_string())
            .ok_or_else(|| CrmError::transient("amoCRM added no task"))
    }

    async fn find_task(&self, req: &TaskRequest) -> Result<Option<String>, CrmError> {
        let id = lead_id(&req.lead_id)?;
        let query = [
            ("filter[entity_type]", "leads".to_string()),
            ("filter[entity_id][]", id.to_string()),
            ("limit", "250".to_string()),
        ];
        let Some(bytes) = self.get("/api/v4/tasks", &query).await? else {
            return Ok(None);
        };
        let page: TasksPage = parse_body(&bytes, "task list")?;
        Ok(page
            .embedded
            .tasks
            .iter()
            .filter(|t| t.entity_id == Some(id) && t.text == req.text)
            .map(|t| t.id)
            .min()
            .map(|id| id.to_string()))
    }

    async fn move_lead(
        &self,
        lead_id_str: &str,
        stage: &Stage,
        note: Option<&str>,
    ) -> Result<(), CrmError> {
        let cfg = &self.inner.config;
        let id = lead_id(lead_id_str)?;
        let (pipeline_id, status_id) = match stage {
            Stage::New => (
                cfg.pipeline_id,
                cfg.new_status_id.ok_or_else(|| {
                    CrmError::permanent("crm.amocrm.new_status_id is not configured")
                })?,
            ),
            Stage::Cancelled => (cfg.pipeline_id, cfg.cancelled_status_id),
            Stage::Done => (cfg.pipeline_id, cfg.done_status_id),
            Stage::Custom {
                pipeline_id,
                status_id,
            } => (pipeline_id.unwrap_or(cfg.pipeline_id), *status_id),
        };
        // amoCRM takes a loss reason only with the "lost" stage (as its SDK sends it).
        let loss_reason_id = if status_id == AMO_LOST_STATUS_ID {
            cfg.loss_reason_id
        } else {
            None
        };
        let body = LeadPatchOut {
            pipeline_id,
            status_id,
            loss_reason_id,
        };
        self.send_json(Method::PATCH, &format!("/api/v4/leads/{id}"), &body)
            .await?;
        tracing::info!(lead_id = id, status_id, "amoCRM lead moved");
        if let Some(note) = note {
            self.add_note(lead_id_str, note).await?;
        }
        Ok(())
    }

    async fn get_lead(&self, lead_id_str: &str) -> Result<Option<CrmLead>, CrmError> {
        let id = lead_id(lead_id_str)?;
        match self.get(&format!("/api/v4/leads/{id}"), &[]).await? {
            Some(bytes) => Ok(Some(parse_body::<LeadIn>(&bytes, "lead")?.to_domain())),
            None => Ok(None),
        }
    }

    async fn cancelled_among(&self, lead_ids: &[String]) -> Result<Vec<String>, CrmError> {
        let cancelled = self.inner.config.cancelled_status_id;
        let mut found = Vec::new();
        // `filter[id][]` takes a list; a page holds at most 250 leads.
        for chunk in lead_ids.chunks(250) {
            let mut query: Vec<(&str, String)> = Vec::with_capacity(chunk.len() + 1);
            for id in chunk {
                query.push(("filter[id][]", lead_id(id)?.to_string()));
            }
            query.push(("limit", "250".into()));
            let Some(bytes) = self.get("/api/v4/leads", &query).await? else {
                continue;
            };
            let page: LeadsPage = parse_body(&bytes, "lead list")?;
            found.extend(
                page.embedded
                    .leads
                    .iter()
                    .filter(|l| l.status_id == cancelled)
                    .map(|l| l.id.to_string()),
            );
        }
        Ok(found)
    }
}
