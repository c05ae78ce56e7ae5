//! Bitrix24 REST (classic `crm.*` methods) over HTTPS, through an incoming webhook or an OAuth
//! application. Wire types mirror the vendor JSON and stay private here; callers see the
//! [`Crm`] seam plus a few Bitrix-only helpers (`check`, `sources`, `deal_stage`,
//! [`parse_event`]). What this relies on is listed, with sources, in docs/bitrix24.md.
//!
//! The folder: this file holds the type and its [`Crm`] impl; `config.rs` `[crm.bitrix24]`;
//! `client.rs` the calls (one, a batch, pages) and the sorting of Bitrix24's errors;
//! `operations.rs` the CRM steps; `map.rs` import records; `wire.rs` encoding and the wire
//! types; `webhook.rs` the outbound events (a deal moved to the cancelled stage starts there;
//! `lifecycle::inbox` acts on it).

use crate::domain::System;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::connectors::pacing::Pacer;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use url::Url;

use super::tokens::{OAuthTokens, TokenPair, TokenStore};
use super::{
    ContactDraft, ContactRecord, ContactRef, ContactRequest, ContactUpdate, CreatedLead, Crm,
    CrmError, CrmLead, FieldError, LeadRequest, Stage, TRANSCRIPT_HEADER, TaskRequest,
    TranscriptLine, transcript_notes,
};
use crate::clock::Clock;
use crate::connectors::pacing::Pace;
use crate::domain::Booking;
use crate::normalize::{Email, Phone, is_mobile_phone, unicode_email};
use crate::store::Store;
use config::{Bitrix24Config, Bitrix24Mode, Bitrix24Todo};

mod client;
pub(super) mod config;
mod map;
mod operations;
#[cfg(test)]
mod tests;
mod webhook;
mod wire;

use client::*;
use map::*;
use wire::*;

pub use operations::authorize;
pub use webhook::{Event, EventError, EventKind, delivery_key, parse_event};
pub(crate) use webhook::{restore_token, strip_token};

pub const SYSTEM: System = System::Bitrix24;

/// `batch` takes at most 50 commands per request.
const BATCH: usize = 50;
/// An import writes this many contacts per request: one `batch` of `crm.contact.add` (or
/// `crm.contact.update`) commands.
pub const CONTACT_BATCH: usize = BATCH;
/// What an import reads of each contact. Multiple fields are returned only when named.
const IMPORT_SELECT: [&str; 7] = [
    "ID",
    "NAME",
    "LAST_NAME",
    "PHONE",
    "EMAIL",
    "ORIGINATOR_ID",
    "ORIGIN_ID",
];
/// List methods answer pages of this many.
const PAGE: u64 = 50;
/// `crm.duplicate.findbycomm` takes at most 20 values.
const MAX_DUPLICATE_VALUES: usize = 20;
/// List methods return pages of 50; a directory or a card's comments never need more pages
/// than this, and a bound keeps a misbehaving `next` from looping forever.
const MAX_PAGES: usize = 100;
/// The bucket drains at least 2 requests/s, so one second frees room for the next request.
const QUERY_LIMIT_RETRY: Duration = Duration::from_secs(1);
/// `OPERATION_TIME_LIMIT` without `operating_reset_at`: the oldest one-minute basket drops
/// within a minute.
const OPERATION_LIMIT_RETRY: Duration = Duration::from_secs(60);
/// `OVERLOAD_LIMIT` is a manual block by Bitrix24; retry slowly.
const OVERLOAD_RETRY: Duration = Duration::from_secs(600);
/// Written to `ORIGINATOR_ID` when our booking id lives in `ORIGIN_ID`.
const ORIGINATOR: &str = "zapis";
const OAUTH_FIX: &str = "re-run `zapis bitrix24 auth --code CODE` with a fresh code from the application's install (codes live 30 seconds)";
const WEBHOOK_FIX: &str =
    "create a new incoming webhook (scopes crm, task) and set crm.bitrix24.webhook_url";

/// One limiter per portal, shared by every client of that portal in the process: the portal
/// counts all our requests in one bucket. GCRA with the portal's drain rate and a burst below
/// its threshold: over any span T at most `burst + rate·T` requests leave, so the portal's
/// counter (which drains at the same rate) never passes `burst`.
fn limiter_for(portal: &Url, per_second: u32, burst: u32) -> Arc<Pacer> {
    let account = format!("bitrix24|{}", portal.origin().ascii_serialization());
    crate::connectors::pacing::limiter(&account, Pace::Bursty { per_second, burst })
}

/// The Bitrix24 client. Cheap to clone; clones share the token cache, the stage directory and
/// the rate limiter.
#[derive(Clone)]
pub struct Bitrix24 {
    inner: Arc<Inner>,
}

struct Inner {
    config: Bitrix24Config,
    http: reqwest::Client,
    limiter: Arc<Pacer>,
    auth: AuthMode,
    clock: Arc<dyn Clock>,
    /// `crm.status.list` answers by `ENTITY_ID`; stages change rarely, so one read serves all.
    directory: tokio::sync::Mutex<HashMap<String, Vec<StatusItem>>>,
}

enum AuthMode {
    /// The webhook base, `…/rest/{user}/{code}/`: secret as a whole.
    Webhook(SecretString),
    OAuth(Box<OAuth>),
}

struct OAuth {
    /// `{portal}/rest/`.
    rest: Url,
    client_id: String,
    client_secret: SecretString,
    token_url: Url,
    /// The pair, refreshed before the access token (1 hour) expires.
    tokens: OAuthTokens,
}

impl std::fmt::Debug for Bitrix24 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.inner.auth {
            AuthMode::Webhook(_) => "webhook",
            AuthMode::OAuth(_) => "oauth",
        };
        f.debug_struct("Bitrix24")
            .field("auth", &auth)
            .field("mode", &self.inner.config.mode)
            .finish_non_exhaustive()
    }
}

/// A stage (or lead status) from `crm.status.list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusItem {
    /// The directory's numeric id: what [`CrmLead::status_id`] and [`Stage::Custom`] carry.
    pub id: i64,
    /// `NEW`, `C1:WON`, `JUNK`, `WEB`…: what deals and leads carry.
    pub status_id: String,
    pub name: String,
    /// `S` success, `F` failure, absent while in process.
    pub semantics: Option<String>,
}

/// What `check()` found in the portal; `Display` prints it for the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub auth: &'static str,
    pub mode: Bitrix24Mode,
    pub category_id: i64,
    /// The `crm.status.list` directory the stages live in (`DEAL_STAGE_1`, `STATUS`).
    pub directory: String,
    pub stages: Vec<StatusItem>,
    /// `(our stage key, STATUS_ID)` as configured, all found in `stages`.
    pub configured: Vec<(&'static str, String)>,
    pub booking_id_field: String,
    pub sources: Vec<StatusItem>,
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Bitrix24 ({} auth): OK", self.auth)?;
        let what = match self.mode {
            Bitrix24Mode::Deal => format!("deals in funnel {}", self.category_id),
            Bitrix24Mode::Lead => "leads".into(),
        };
        writeln!(f, "bookings become {what}; stages from {}:", self.directory)?;
        for s in &self.stages {
            let mark = self
                .configured
                .iter()
                .filter(|(_, id)| *id == s.status_id)
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ");
            let mark = if mark.is_empty() {
                String::new()
            } else {
                format!("  <- {mark}")
            };
            writeln!(f, "  {} {}{mark}", s.status_id, s.name)?;
        }
        writeln!(f, "booking id field: {}", self.booking_id_field)?;
        let sources: Vec<String> = self.sources.iter().map(|s| s.status_id.clone()).collect();
        write!(f, "sources: {}", sources.join(", "))
    }
}

/// A deal or lead's place in the funnel, re-read after an event (events carry only the id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityStage {
    pub id: String,
    /// `STAGE_ID` of a deal, `STATUS_ID` of a lead.
    pub stage_id: String,
    /// 0 for leads.
    pub category_id: i64,
    /// The product stage this is configured as, if any.
    pub stage: Option<Stage>,
}

#[async_trait]
impl Crm for Bitrix24 {
    fn system(&self) -> System {
        SYSTEM
    }

    /// The configured funnel's stages (`crm.status.list`), the deal or lead fields
    /// (`crm.deal.fields` / `crm.lead.fields`, user fields by their list label) and the
    /// portal's sources.
    async fn catalog(&self) -> Result<crate::crm::CrmCatalog, CrmError> {
        let cfg = &self.inner.config;
        let category = if self.is_deal() { cfg.category_id } else { 0 };
        let name = self.directory_name(category);
        let stages = self.directory(&name, true).await?;
        let pipelines = vec![crate::crm::CatalogPipeline {
            id: category.to_string(),
            name,
            stages: stages.into_iter().map(|s| (s.status_id, s.name)).collect(),
        }];
        let raw = self
            .call(&format!("{}.fields", self.entity_prefix()), json!({}))
            .await?
            .result;
        let text = |v: &serde_json::Value, k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let fields = raw
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(id, f)| crate::crm::CatalogField {
                        id: id.clone(),
                        name: text(f, "listLabel")
                            .or_else(|| text(f, "formLabel"))
                            .or_else(|| text(f, "title"))
                            .unwrap_or_else(|| id.clone()),
                        code: None,
                        kind: text(f, "type").unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sources = self
            .sources()
            .await?
            .into_iter()
            .map(|s| (s.status_id, s.name))
            .collect();
        Ok(crate::crm::CrmCatalog {
            pipelines,
            fields,
            sources,
        })
    }

    async fn find_or_create_contact(&self, req: &ContactRequest) -> Result<ContactRef, CrmError> {
        if let Some(id) = self.find_contact(&req.phone, req.email.as_ref()).await? {
            return Ok(ContactRef {
                id: id.to_string(),
                created: false,
            });
        }
        Ok(ContactRef {
            id: self.add_contact(req).await?.to_string(),
            created: true,
        })
    }

    async fn contact_for_lead(&self, req: &ContactRequest) -> Result<Option<ContactRef>, CrmError> {
        match self.inner.config.mode {
            Bitrix24Mode::Deal => self.find_or_create_contact(req).await.map(Some),
            // A lead carries the client's data itself; it links a contact only if one exists.
            Bitrix24Mode::Lead => Ok(self
                .find_contact(&req.phone, req.email.as_ref())
                .await?
                .map(|id| ContactRef {
                    id: id.to_string(),
                    created: false,
                })),
        }
    }

    async fn create_lead(&self, req: &LeadRequest) -> Result<CreatedLead, CrmError> {
        let booking = &req.booking;
        let contact = match (&req.contact_id, self.inner.config.mode) {
            (Some(id), _) => Some(ContactRef {
                id: entity_id(id)?.to_string(),
                created: false,
            }),
            (None, _) if req.without_contact => None,
            (None, Bitrix24Mode::Deal) => Some(
                self.find_or_create_contact(&ContactRequest::for_booking(booking))
                    .await?,
            ),
            // A lead carries the client's data itself; it links a contact only if one exists
            // (converting the lead makes the contact in Bitrix24's own way).
            (None, Bitrix24Mode::Lead) => self
                .find_contact(&booking.client_phone, booking.client_email.as_ref())
                .await?
                .map(|id| ContactRef {
                    id: id.to_string(),
                    created: false,
                }),
        };
        let contact_id = contact.as_ref().map(|c| entity_id(&c.id)).transpose()?;
        let fields = self.entity_fields(req, contact_id);
        let method = format!("{}.add", self.entity_prefix());
        let answer = self
            .call(
                &method,
                json!({"fields": fields, "params": {"REGISTER_SONET_EVENT": "Y"}}),
            )
            .await?;
        let id = id_of(&answer.result)
            .ok_or_else(|| CrmError::transient(format!("Bitrix24 {method} returned no id")))?;
        tracing::info!(id, booking_id = %booking.id, phone = %booking.client_phone.masked(), "Bitrix24 {} created", self.timeline_type());
        let note_ids = self.add_notes(&id.to_string(), &req.transcript).await?;
        Ok(CreatedLead {
            lead_id: id.to_string(),
            contact,
            note_ids,
        })
    }

    async fn find_lead_by_booking(&self, booking_id: &str) -> Result<Option<CrmLead>, CrmError> {
        let field = &self.inner.config.booking_id_field;
        let method = format!("{}.list", self.entity_prefix());
        let mut filter = Map::new();
        filter.insert(format!("={field}"), json!(booking_id));
        let answer = self
            .call(
                &method,
                json!({
                    "filter": filter,
                    "select": ["ID", "TITLE", "STAGE_ID", "STATUS_ID", "CATEGORY_ID", "OPPORTUNITY", field],
                    "order": {"ID": "ASC"},
                }),
            )
            .await?;
        let items = match answer.result {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        // Oldest first; and check the field ourselves, so a filter Bitrix24 ignored (an
        // unknown field) cannot hand us someone else's deal.
        for item in items {
            if item.get(field.as_str()).and_then(text_of).as_deref() == Some(booking_id) {
                let e: EntityIn = parse_value(item, "entity")?;
                return Ok(Some(self.to_crm_lead(&e).await?));
            }
        }
        Ok(None)
    }

    async fn add_notes(
        &self,
        lead_id: &str,
        transcript: &[TranscriptLine],
    ) -> Result<Vec<String>, CrmError> {
        let id = entity_id(lead_id)?;
        let texts = transcript_notes(transcript, self.inner.config.note_max_chars);
        self.post_comments(id, &texts).await
    }

    /// Adds the transcript parts the card lacks. A part is recognised by its first line
    /// (`Переписка с ботом (2/3):`), so a retry after a partly failed batch adds only what is
    /// missing.
    async fn ensure_transcript(
        &self,
        lead_id: &str,
        transcript: &[TranscriptLine],
    ) -> Result<Vec<String>, CrmError> {
        if transcript.is_empty() {
            return Ok(Vec::new());
        }
        let id = entity_id(lead_id)?;
        let texts = transcript_notes(transcript, self.inner.config.note_max_chars);
        let existing: Vec<String> = self
            .comments(id)
            .await?
            .iter()
            .filter(|c| c.starts_with(TRANSCRIPT_HEADER))
            .filter_map(|c| c.lines().next().map(str::to_string))
            .collect();
        let missing: Vec<String> = texts
            .into_iter()
            .filter(|t| {
                let head = t.lines().next().unwrap_or_default();
                !existing.iter().any(|e| e == head)
            })
            .collect();
        self.post_comments(id, &missing).await
    }

    async fn ensure_note(&self, lead_id: &str, text: &str) -> Result<Option<String>, CrmError> {
        let head = text.lines().next().unwrap_or_default();
        let comments = self.comments(entity_id(lead_id)?).await?;
        if comments.iter().any(|c| c.lines().next() == Some(head)) {
            return Ok(None);
        }
        self.add_note(lead_id, text).await.map(Some)
    }

    async fn add_note(&self, lead_id: &str, text: &str) -> Result<String, CrmError> {
        let id = entity_id(lead_id)?;
        let text: String = text
            .chars()
            .take(self.inner.config.note_max_chars)
            .collect();
        self.post_comments(id, &[text])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| CrmError::transient("Bitrix24 added no comment"))
    }

    async fn create_task(&self, req: &TaskRequest) -> Result<String, CrmError> {
        let cfg = &self.inner.config;
        let id = entity_id(&req.lead_id)?;
        let lead_time = chrono::Duration::from_std(cfg.task_lead_time.0)
            .unwrap_or_else(|_| chrono::Duration::hours(1));
        // A last-minute booking still gets a reminder, due now rather than in the past.
        let due = (req.visit_at - lead_time).max(self.now());
        let deadline = due.to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        let title: String = req.text.chars().take(250).collect();
        match cfg.todo {
            Bitrix24Todo::Activity => {
                let mut params = json!({
                    "ownerTypeId": self.owner_type_id(),
                    "ownerId": id,
                    "deadline": deadline,
                    "title": title,
                    "description": req.text,
                    "pingOffsets": [0, 15],
                });
                if let Some(r) = cfg.responsible_id {
                    params["responsibleId"] = json!(r);
                }
                let answer = self.call("crm.activity.todo.add", params).await?;
                answer
                    .result
                    .get("id")
                    .and_then(id_of)
                    .map(|i| i.to_string())
                    .ok_or_else(|| CrmError::transient("Bitrix24 added no to-do"))
            }
            Bitrix24Todo::Task => {
                let binding = if self.is_deal() {
                    format!("D_{id}")
                } else {
                    format!("L_{id}")
                };
                let answer = self
                    .call(
                        "tasks.task.add",
                        json!({"fields": {
                            "TITLE": title,
                            "DESCRIPTION": req.text,
                            "RESPONSIBLE_ID": cfg.responsible_id,
                            "DEADLINE": deadline,
                            "UF_CRM_TASK": [binding],
                        }}),
                    )
                    .await?;
                answer
                    .result
                    .get("task")
                    .and_then(|t| t.get("id"))
                    .and_then(id_of)
                    .map(|i| i.to_string())
                    .ok_or_else(|| CrmError::transient("Bitrix24 added no task"))
            }
        }
    }

    async fn find_task(&self, req: &TaskRequest) -> Result<Option<String>, CrmError> {
        let id = entity_id(&req.lead_id)?;
        let title: String = req.text.chars().take(250).collect();
        let found = match self.inner.config.todo {
            Bitrix24Todo::Activity => {
                let answer = self
                    .call(
                        "crm.activity.list",
                        json!({
                            "filter": {"OWNER_TYPE_ID": self.owner_type_id(), "OWNER_ID": id},
                            "select": ["ID", "SUBJECT", "DESCRIPTION"],
                            "order": {"ID": "ASC"},
                        }),
                    )
                    .await?;
                answer.result.as_array().and_then(|items| {
                    items
                        .iter()
                        .find(|a| {
                            a.get("SUBJECT").and_then(text_of).as_deref() == Some(&title)
                                || a.get("DESCRIPTION").and_then(text_of).as_deref()
                                    == Some(&req.text)
                        })
                        .and_then(|a| a.get("ID").and_then(id_of))
                })
            }
            Bitrix24Todo::Task => {
                let binding = if self.is_deal() {
                    format!("D_{id}")
                } else {
                    format!("L_{id}")
                };
                let answer = self
                    .call(
                        "tasks.task.list",
                        json!({
                            "filter": {"UF_CRM_TASK": binding},
                            "select": ["ID", "TITLE"],
                            "order": {"ID": "asc"},
                        }),
                    )
                    .await?;
                // The tasks module answers `{"tasks": [{"id", "title"}]}` in camelCase.
                answer
                    .result
                    .get("tasks")
                    .and_then(|t| t.as_array())
                    .and_then(|items| {
                        items
                            .iter()
                            .find(|t| t.get("title").and_then(text_of).as_deref() == Some(&title))
                            .and_then(|t| t.get("id").and_then(id_of))
                    })
            }
        };
        Ok(found.map(|id| id.to_string()))
    }

    async fn move_lead(
        &self,
        lead_id: &str,
        stage: &Stage,
        note: Option<&str>,
    ) -> Result<(), CrmError> {
        let id = entity_id(lead_id)?;
        let stage_id = self.resolve_stage(stage).await?;
        let mut fields = Map::new();
        fields.insert(self.stage_field().into(), json!(stage_id));
        let update = Command {
            name: "move".into(),
            method: if self.is_deal() {
                "crm.deal.update"
            } else {
                "crm.lead.update"
            },
            params: json!({"id": id, "fields": fields, "params": {"REGISTER_HISTORY_EVENT": "Y"}}),
        };
        match note {
            None => {
                self.call(update.method, update.params).await?;
            }
            Some(note) => {
                let text: String = note
                    .chars()
                    .take(self.inner.config.note_max_chars)
                    .collect();
                let comment = Command {
                    name: "comment".into(),
                    method: "crm.timeline.comment.add",
                    params: self.comment_params(id, &text),
                };
                // halt=1: the comment says why the deal moved, so it must not land when the
                // move failed (a retry would then add it twice).
                self.batch(vec![update, comment], true).await?;
            }
        }
        tracing::info!(id, stage_id, "Bitrix24 {} moved", self.timeline_type());
        Ok(())
    }

    async fn get_lead(&self, lead_id: &str) -> Result<Option<CrmLead>, CrmError> {
        match self.get_entity(entity_id(lead_id)?).await? {
            Some(e) => Ok(Some(self.to_crm_lead(&e).await?)),
            None => Ok(None),
        }
    }

    async fn cancelled_among(&self, lead_ids: &[String]) -> Result<Vec<String>, CrmError> {
        let method = format!("{}.list", self.entity_prefix());
        let mut found = Vec::new();
        // `@ID` is Bitrix24's "in list" filter; a page holds 50 items, so 50 ids a call.
        for chunk in lead_ids.chunks(50) {
            let ids = chunk
                .iter()
                .map(|id| entity_id(id))
                .collect::<Result<Vec<i64>, CrmError>>()?;
            let answer = self
                .call(
                    &method,
                    json!({
                        "filter": {"@ID": ids},
                        "select": ["ID", "STAGE_ID", "STATUS_ID", "CATEGORY_ID"],
                    }),
                )
                .await?;
            let Value::Array(items) = answer.result else {
                continue;
            };
            for item in items {
                let e: EntityIn = parse_value(item, "entity")?;
                if self.classify(&self.stage_of(&e)) == Some(Stage::Cancelled)
                    && let Some(id) = id_of(&e.id)
                {
                    found.push(id.to_string());
                }
            }
        }
        Ok(found)
    }
}
