//! Loading through the durable sync engine, resumably.
//!
//! An import run (one file into one target) is recorded with a row per client, keyed by the
//! client's normalised phone or email. Every start of the command (1) retires the unfinished
//! jobs of earlier starts, (2) lists the target's contacts afresh and matches the rows still
//! pending against them (so whatever an interrupted start managed to write is found, and
//! linked or updated, never created twice), (3) enqueues one job per batch of pending rows and
//! (4) runs the engine until they are done. Rows are marked (`sending`, `updating`) before their
//! write goes out, so a retried job or a later start knows whose outcome is unknown and looks at
//! the target for exactly those before writing again. Contacts the import creates carry a run
//! mark where the target has a place for one (amoCRM tag, Bitrix24 `ORIGIN_ID`), so a resumed run
//! counts them as created, not as found; elsewhere (YClients) the `sending` row is the mark.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::report::Counts;
use super::{Client, ImportError, Prepared, Problem, ProblemKind};
use crate::clock::Clock;
use crate::crm::delivery_error;
use crate::crm::{ContactDraft, ContactRecord, ContactUpdate, CrmError};
use crate::normalize::{Email, Phone};
use crate::store::imports::{ImportRow, RowPlan};
use crate::store::{Store, StoreError};
use crate::sync::{
    Alerts, Delivered, DeliveryError, Engine, Job, JobContext, JobHandler, NewJob, Queue,
    SyncConfig,
};

/// What a bulk write gives back: one outcome per item, in the order sent. A refused item fails
/// only its own row; the `Err` of the whole call is for failures of the request itself.
pub type Outcomes<T> = Vec<Result<T, CrmError>>;

/// Where an import writes: bulk contact calls of one system.
#[async_trait]
pub trait ImportTarget: Send + Sync {
    /// `amocrm`, `bitrix24`, `yclients`.
    fn system(&self) -> &'static str;
    /// The most contacts one job handles (one write request where the API takes batches).
    fn batch_size(&self) -> usize;
    /// The most contacts one `create` call carries; below `batch_size` for a target that
    /// writes one contact per request, so each request's outcome is recorded before the next.
    fn write_batch(&self) -> usize {
        self.batch_size()
    }
    /// A contact holds one phone and one email at most (YClients): ours beyond those are not
    /// added to an existing contact.
    fn single_valued(&self) -> bool {
        false
    }
    /// Created contacts carry the run tag in [`ContactRecord::tags`]. Without such a mark, a
    /// client whose create was sent by an earlier attempt and is now found counts as created.
    fn marks_own(&self) -> bool {
        true
    }
    /// Why this client cannot become a new contact there (YClients needs a phone), if so.
    fn cannot_create(&self, _client: &Client) -> Option<String> {
        None
    }
    /// Every contact the target holds (paged as it needs).
    async fn existing(&self) -> Result<Vec<ContactRecord>, CrmError>;
    /// Contacts that may be these clients: searched by their phones, then their emails.
    async fn search(&self, clients: &[Client]) -> Result<Vec<ContactRecord>, CrmError>;
    /// Creates the contacts; each one's id or refusal, in the same order.
    async fn create(&self, drafts: &[ContactDraft]) -> Result<Outcomes<String>, CrmError>;
    /// Adds our phones and emails to existing contacts.
    async fn update(&self, items: &[ContactUpdate]) -> Result<Outcomes<()>, CrmError>;
}

/// The engine system import jobs run under: distinct from the CRM's own, so only the import
/// command (which registers it) claims them.
pub fn job_system(target: &str) -> String {
    format!("import.{target}")
}

const OPERATION: &str = "import_contacts";

/// What the matcher decided for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Create,
    /// Exists and lacks some of our phones or emails.
    Update {
        id: String,
        /// Its name as the target holds it.
        name: String,
        /// Everything it should carry: its own values as typed, then ours.
        phones: Vec<String>,
        emails: Vec<String>,
        /// Ours it lacked.
        new_phones: Vec<String>,
        new_emails: Vec<String>,
    },
    /// Exists with everything we have (or everything it can hold).
    Link {
        id: String,
    },
    /// Created by an earlier start of this same run (it carries the run tag).
    Adopt {
        id: String,
    },
    /// Updated by an earlier attempt whose answer was never stored: it has everything now.
    Completed {
        id: String,
    },
}

impl Plan {
    /// The decision for a row an earlier attempt was writing when it stopped (`action` is
    /// `sending` for a create, `updating` for an update). A contact found for a create in a
    /// target that does not mark its contacts is that create's work; a contact that now
    /// holds everything after an update is that update's.
    fn resumed(self, action: &str, marks_own: bool) -> Plan {
        match (self, action) {
            (Plan::Update { id, .. } | Plan::Link { id }, "sending") if !marks_own => {
                Plan::Adopt { id }
            }
            (Plan::Link { id }, "updating") => Plan::Completed { id },
            (other, _) => other,
        }
    }
}

/// The target's contacts, indexed by normalised phone and email.
pub struct Index {
    records: Vec<ContactRecord>,
    by_phone: HashMap<Phone, usize>,
    by_email: HashMap<String, usize>,
    single_valued: bool,
}

impl Index {
    pub fn new(records: Vec<ContactRecord>) -> Index {
        let mut by_phone = HashMap::new();
        let mut by_email = HashMap::new();
        // Oldest first, so among duplicates already in the CRM the same one is picked.
        let mut records = records;
        records.sort_by_key(|r| (r.id.parse::<i64>().unwrap_or(i64::MAX), r.id.clone()));
        records.dedup_by(|a, b| a.id == b.id);
        for (i, r) in records.iter().enumerate() {
            for p in r.phones.iter().filter_map(|p| Phone::parse(p).ok()) {
                by_phone.entry(p).or_insert(i);
            }
            for e in r.emails.iter().filter_map(|e| Email::parse_ascii(e).ok()) {
                by_email.entry(e.as_str().to_lowercase()).or_insert(i);
            }
        }
        Index {
            records,
            by_phone,
            by_email,
            single_valued: false,
        }
    }

    /// For targets whose contacts hold one phone and one email: ours are added only where the
    /// contact has none.
    pub fn single_valued(mut self, on: bool) -> Index {
        self.single_valued = on;
        self
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Update or link when the client is there by any phone, then any email.
    pub fn plan(&self, client: &Client, run_tag: &str) -> Plan {
        let hit = client
            .phones
            .iter()
            .find_map(|p| self.by_phone.get(p))
            .or_else(|| {
                client
                    .emails
                    .iter()
                    .find_map(|e| self.by_email.get(&e.as_str().to_lowercase()))
            });
        let Some(&i) = hit else {
            return Plan::Create;
        };
        let record = &self.records[i];
        let id = record.id.clone();
        if !run_tag.is_empty() && record.tags.iter().any(|t| t == run_tag) {
            return Plan::Adopt { id };
        }
        let room = |held: usize| {
            if self.single_valued {
                1usize.saturating_sub(held)
            } else {
                usize::MAX
            }
        };
        let have: Vec<Phone> = record
            .phones
            .iter()
            .filter_map(|p| Phone::parse(p).ok())
            .collect();
        let new_phones: Vec<String> = client
            .phones
            .iter()
            .filter(|p| !have.contains(p))
            .take(room(record.phones.len()))
            .map(|p| p.to_string())
            .collect();
        let have: Vec<String> = record.emails.iter().map(|e| e.to_lowercase()).collect();
        let new_emails: Vec<String> = client
            .emails
            .iter()
            .filter(|e| !have.contains(&e.as_str().to_lowercase()))
            .take(room(record.emails.len()))
            .map(|e| e.to_string())
            .collect();
        if new_phones.is_empty() && new_emails.is_empty() {
            return Plan::Link { id };
        }
        Plan::Update {
            id,
            name: record.name.clone(),
            phones: record.phones.iter().chain(&new_phones).cloned().collect(),
            emails: record.emails.iter().chain(&new_emails).cloned().collect(),
            new_phones,
            new_emails,
        }
    }
}

/// The tag contacts created by a run carry.
pub fn run_tag(digest: &str) -> String {
    format!("zapis-import-{}", &digest[..digest.len().min(12)])
}

fn draft(client: &Client, tag: &str) -> ContactDraft {
    ContactDraft {
        name: client.name.clone(),
        phones: client.phones.iter().map(|p| p.to_string()).collect(),
        emails: client.emails.iter().map(|e| e.to_string()).collect(),
        birthday: client.birthday,
        comment: client.comment.clone(),
        tag: Some(tag.to_string()),
        external_key: Some(client.key.clone()),
    }
}

/// Counts for `--dry-run`: what a real run would do, with nothing written anywhere.
pub fn dry_run_counts(prepared: &Prepared, index: &Index, target: &dyn ImportTarget) -> Counts {
    let mut counts = base_counts(prepared);
    for c in &prepared.clients {
        match index.plan(c, "") {
            Plan::Create if target.cannot_create(c).is_some() => counts.failed += 1,
            Plan::Create => counts.created += 1,
            Plan::Update { .. } => counts.updated += 1,
            Plan::Completed { .. } => counts.updated += 1,
            Plan::Link { .. } | Plan::Adopt { .. } => counts.skipped += 1,
        }
    }
    counts
}

fn base_counts(prepared: &Prepared) -> Counts {
    Counts {
        read: prepared.read,
        valid: prepared.valid,
        invalid: prepared.invalid,
        merged: prepared.merged,
        clients: prepared.clients.len(),
        ..Counts::default()
    }
}

/// A planned update as stored with its row (re-planned at every start, so only one version of
/// the program reads what another wrote).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPlan {
    phones: Vec<String>,
    emails: Vec<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    new_phones: Vec<String>,
    #[serde(default)]
    new_emails: Vec<String>,
}

/// One import run.
pub struct Run {
    pub id: i64,
    pub business_id: String,
    pub target: String,
    pub tag: String,
}

/// Finds the run for this input (same business, target and digest) or starts one, and
/// records its clients; rows already there keep their state.
pub async fn open_run(
    store: &Store,
    business_id: &str,
    target: &str,
    digest: &str,
    file_name: &str,
    clients: &[Client],
    now: DateTime<Utc>,
) -> Result<Run, StoreError> {
    let rows = clients
        .iter()
        .map(|c| {
            let payload = serde_json::to_string(c)
                .map_err(|e| StoreError::Corrupt(format!("import row: {e}")))?;
            Ok((c.key.clone(), payload))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let id = store
        .open_import_run(business_id, target, digest, file_name, &rows, now)
        .await?;
    Ok(Run {
        id,
        business_id: business_id.to_string(),
        target: target.to_string(),
        tag: run_tag(digest),
    })
}

/// Retires unfinished jobs of earlier starts (their process is gone; their rows are
/// re-planned and enqueued afresh) and gives failed rows another chance.
async fn reset_unfinished(store: &Store, run: &Run, now: DateTime<Utc>) -> Result<(), StoreError> {
    Queue::new(store.clone())
        .supersede_import_jobs(
            &run.business_id,
            &job_system(&run.target),
            &format!("import:{}:%", run.id),
            now,
        )
        .await?;
    store.retry_failed_import_rows(run.id, now).await
}

struct PendingRow {
    key: String,
    client: Client,
    action: String,
    external_id: Option<String>,
    plan: Option<StoredPlan>,
}

fn pending_from_row(r: ImportRow) -> Result<PendingRow, StoreError> {
    Ok(PendingRow {
        key: r.key,
        client: serde_json::from_str(&r.payload)
            .map_err(|e| StoreError::Corrupt(format!("import row payload: {e}")))?,
        action: r.action.unwrap_or_else(|| "create".into()),
        external_id: r.external_id,
        plan: r
            .plan
            .map(|p| serde_json::from_str(&p))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("import row plan: {e}")))?,
    })
}

async fn pending_rows(store: &Store, run_id: i64) -> Result<Vec<PendingRow>, StoreError> {
    store
        .pending_import_rows(run_id)
        .await?
        .into_iter()
        .map(pending_from_row)
        .collect()
}

fn plan_columns(plan: &Plan) -> (&'static str, Option<String>, Option<String>) {
    match plan {
        Plan::Create => ("create", None, None),
        Plan::Update {
            id,
            name,
            phones,
            emails,
            new_phones,
            new_emails,
        } => (
            "update",
            Some(id.clone()),
            serde_json::to_string(&StoredPlan {
                phones: phones.clone(),
                emails: emails.clone(),
                name: name.clone(),
                new_phones: new_phones.clone(),
                new_emails: new_emails.clone(),
            })
            .ok(),
        ),
        Plan::Link { id } => ("link", Some(id.clone()), None),
        Plan::Adopt { id } => ("adopt", Some(id.clone()), None),
        Plan::Completed { id } => ("completed", Some(id.clone()), None),
    }
}

async fn save_plans(
    store: &Store,
    run_id: i64,
    plans: &[(String, Plan)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let plans: Vec<RowPlan> = plans
        .iter()
        .map(|(key, plan)| {
            let (action, id, stored) = plan_columns(plan);
            (key.clone(), action, id, stored)
        })
        .collect();
    store.save_import_plans(run_id, &plans, now).await
}

/// Marks rows done with their final action (`created`, `updated`, `skipped`) and target id.
async fn finish_rows(
    store: &Store,
    run_id: i64,
    done: &[(String, &'static str, String)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store.finish_import_rows(run_id, done, now).await
}

/// Marks rows the target refused. A refused write is known not to have happened, so its row
/// goes back to a plain `create` or `update`.
async fn fail_rows(
    store: &Store,
    run_id: i64,
    failed: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store.fail_import_rows(run_id, failed, now).await
}

/// Records that these rows' write is about to be sent (`sending` a create, `updating` an
/// update): from here until its answer is stored the outcome is unknown, and a later attempt
/// looks at the target before writing again.
async fn mark_sending(
    store: &Store,
    run_id: i64,
    keys: &[String],
    action: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store.mark_import_rows(run_id, keys, action, now).await
}

#[derive(Debug, Serialize, Deserialize)]
struct JobPayload {
    run_id: i64,
    tag: String,
    keys: Vec<String>,
}

/// The engine's handler for import jobs: one job writes one batch of clients.
pub struct ImportJobs {
    target: Arc<dyn ImportTarget>,
    progress: ProgressBar,
}

impl ImportJobs {
    pub fn new(target: Arc<dyn ImportTarget>, progress: ProgressBar) -> ImportJobs {
        ImportJobs { target, progress }
    }
}

fn store_failure(e: StoreError) -> DeliveryError {
    DeliveryError::transient(format!("store: {e}"))
}

impl PendingRow {
    /// Takes a fresh matching decision (made while the job runs) into the row.
    fn apply(&mut self, plan: Plan) {
        let (action, id, stored) = match plan {
            Plan::Create => ("create", None, None),
            Plan::Adopt { id } => ("adopt", Some(id), None),
            Plan::Completed { id } => ("completed", Some(id), None),
            Plan::Link { id } => ("link", Some(id), None),
            Plan::Update {
                id,
                name,
                phones,
                emails,
                new_phones,
                new_emails,
            } => (
                "update",
                Some(id),
                Some(StoredPlan {
                    phones,
                    emails,
                    name,
                    new_phones,
                    new_emails,
                }),
            ),
        };
        self.action = action.into();
        self.external_id = id;
        self.plan = stored;
    }
}

/// Sorts the outcomes of one write call into the rows they belong to. A missing outcome is an
/// unknown one: retried, never assumed.
fn sort_outcomes<T: Clone>(
    system: &str,
    keys: &[String],
    outcomes: &[Result<T, CrmError>],
    ok: &mut Vec<(String, T)>,
    refused: &mut Vec<(String, CrmError)>,
    retry: &mut Option<CrmError>,
) {
    for (i, key) in keys.iter().enumerate() {
        match outcomes.get(i) {
            Some(Ok(v)) => ok.push((key.clone(), v.clone())),
            Some(Err(e)) if e.is_permanent() => refused.push((key.clone(), e.clone())),
            Some(Err(e)) => {
                retry.get_or_insert_with(|| e.clone());
            }
            None => {
                retry.get_or_insert_with(|| {
                    CrmError::transient(format!(
                        "{system} answered for {} of {} contacts",
                        outcomes.len(),
                        keys.len()
                    ))
                });
            }
        }
    }
}

#[async_trait]
impl JobHandler for ImportJobs {
    async fn handle(&self, job: &Job, ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        let payload: JobPayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| DeliveryError::permanent(format!("import job payload: {e}")))?;
        let store = ctx.store;
        let target = &self.target;
        let mut rows = Vec::new();
        for r in store
            .pending_import_rows_among(payload.run_id, &payload.keys)
            .await
            .map_err(store_failure)?
        {
            rows.push(pending_from_row(r).map_err(store_failure)?);
        }
        // An earlier attempt sent these writes and its answer was never stored (a timeout, a
        // crash): look at the target before writing again.
        let in_flight = |r: &PendingRow| r.action == "sending" || r.action == "updating";
        let unsure: Vec<Client> = rows
            .iter()
            .filter(|r| in_flight(r))
            .map(|r| r.client.clone())
            .collect();
        if !unsure.is_empty() {
            let found = target.search(&unsure).await.map_err(delivery_error)?;
            let index = Index::new(found).single_valued(target.single_valued());
            for row in rows.iter_mut().filter(|r| in_flight(r)) {
                let plan = index
                    .plan(&row.client, &payload.tag)
                    .resumed(&row.action, target.marks_own());
                row.apply(plan);
            }
        }
        let batch = target.write_batch().max(1);
        let mut refused: Option<CrmError> = None;
        let mut retry: Option<CrmError> = None;
        let mut creates: Vec<&PendingRow> = Vec::new();
        let mut impossible: Vec<(String, CrmError)> = Vec::new();
        for r in rows.iter().filter(|r| r.action == "create") {
            match target.cannot_create(&r.client) {
                Some(why) => impossible.push((r.key.clone(), CrmError::permanent(why))),
                None => creates.push(r),
            }
        }
        self.record(
            store,
            payload.run_id,
            Vec::new(),
            "created",
            &impossible,
            &mut refused,
            ctx,
        )
        .await?;
        for chunk in creates.chunks(batch) {
            let keys: Vec<String> = chunk.iter().map(|r| r.key.clone()).collect();
            mark_sending(store, payload.run_id, &keys, "sending", ctx.now)
                .await
                .map_err(store_failure)?;
            let drafts: Vec<ContactDraft> = chunk
                .iter()
                .map(|r| draft(&r.client, &payload.tag))
                .collect();
            let outcomes = match target.create(&drafts).await {
                Ok(o) => o,
                Err(e) if e.is_permanent() => vec![Err(e); drafts.len()],
                Err(e) => {
                    retry = Some(e);
                    break;
                }
            };
            let (mut ok, mut no) = (Vec::new(), Vec::new());
            sort_outcomes(
                target.system(),
                &keys,
                &outcomes,
                &mut ok,
                &mut no,
                &mut retry,
            );
            // Recorded at once, so a failing call below cannot make these look new.
            self.record(store, payload.run_id, ok, "created", &no, &mut refused, ctx)
                .await?;
            if retry.is_some() {
                // The target is struggling: the engine's backoff paces the rest of the job.
                break;
            }
        }
        let mut done: Vec<(String, &'static str, String)> = Vec::new();
        let mut updates: Vec<(String, ContactUpdate)> = Vec::new();
        for r in rows.iter().filter(|r| r.action != "create") {
            let Some(id) = r.external_id.clone() else {
                continue;
            };
            match (r.action.as_str(), &r.plan) {
                ("update", Some(plan)) => updates.push((
                    r.key.clone(),
                    ContactUpdate {
                        id,
                        name: if plan.name.is_empty() {
                            r.client.name.clone()
                        } else {
                            plan.name.clone()
                        },
                        phones: plan.phones.clone(),
                        emails: plan.emails.clone(),
                        new_phones: plan.new_phones.clone(),
                        new_emails: plan.new_emails.clone(),
                    },
                )),
                ("adopt", _) => done.push((r.key.clone(), "created", id)),
                ("completed", _) => done.push((r.key.clone(), "updated", id)),
                _ => done.push((r.key.clone(), "skipped", id)),
            }
        }
        if retry.is_none() {
            for chunk in updates.chunks(batch) {
                let keys: Vec<String> = chunk.iter().map(|(k, _)| k.clone()).collect();
                let items: Vec<ContactUpdate> = chunk.iter().map(|(_, u)| u.clone()).collect();
                mark_sending(store, payload.run_id, &keys, "updating", ctx.now)
                    .await
                    .map_err(store_failure)?;
                let outcomes = match target.update(&items).await {
                    Ok(o) => o,
                    Err(e) if e.is_permanent() => vec![Err(e); items.len()],
                    Err(e) => {
                        retry = Some(e);
                        break;
                    }
                };
                let (mut ok, mut no) = (Vec::new(), Vec::new());
                sort_outcomes(
                    target.system(),
                    &keys,
                    &outcomes,
                    &mut ok,
                    &mut no,
                    &mut retry,
                );
                let ok: Vec<(String, String)> = ok
                    .into_iter()
                    .filter_map(|(k, ())| {
                        let id = chunk.iter().find(|(key, _)| *key == k)?.1.id.clone();
                        Some((k, id))
                    })
                    .collect();
                self.record(store, payload.run_id, ok, "updated", &no, &mut refused, ctx)
                    .await?;
                if retry.is_some() {
                    break;
                }
            }
        }
        finish_rows(store, payload.run_id, &done, ctx.now)
            .await
            .map_err(store_failure)?;
        self.progress.inc(done.len() as u64);
        if let Some(e) = retry {
            return Err(delivery_error(e));
        }
        // The refused rows are in the report; the dead job keeps the target's words.
        match refused {
            Some(e) => Err(delivery_error(e)),
            None => Ok(Delivered::done()),
        }
    }
}

impl ImportJobs {
    /// Stores one write call's outcomes: rows written are done, rows refused are failed.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        store: &Store,
        run_id: i64,
        written: Vec<(String, String)>,
        action: &'static str,
        refused_rows: &[(String, CrmError)],
        refused: &mut Option<CrmError>,
        ctx: &JobContext<'_>,
    ) -> Result<(), DeliveryError> {
        if written.is_empty() && refused_rows.is_empty() {
            return Ok(());
        }
        let written: Vec<(String, &'static str, String)> =
            written.into_iter().map(|(k, id)| (k, action, id)).collect();
        finish_rows(store, run_id, &written, ctx.now)
            .await
            .map_err(store_failure)?;
        let failed: Vec<(String, String)> = refused_rows
            .iter()
            .map(|(k, e)| (k.clone(), e.to_string()))
            .collect();
        fail_rows(store, run_id, &failed, ctx.now)
            .await
            .map_err(store_failure)?;
        if let Some((_, e)) = refused_rows.first() {
            tracing::warn!(
                system = self.target.system(),
                refused = refused_rows.len(),
                error = %e,
                "import: the target refused clients"
            );
            refused.get_or_insert_with(|| e.clone());
        }
        self.progress
            .inc((written.len() + refused_rows.len()) as u64);
        Ok(())
    }
}

/// Everything a real (not dry) load needs.
pub struct LoadOptions<'a> {
    pub store: &'a Store,
    pub clock: Arc<dyn Clock>,
    pub sync: SyncConfig,
    pub business_id: &'a str,
    pub digest: &'a str,
    pub file_name: &'a str,
    pub progress: ProgressBar,
}

/// Loads the prepared clients, continuing an earlier run of the same input. Returns the
/// run's counts and the rows the target refused.
pub async fn load(
    prepared: &Prepared,
    target: Arc<dyn ImportTarget>,
    opts: LoadOptions<'_>,
) -> Result<(Counts, Vec<Problem>), ImportError> {
    let store = opts.store;
    let now = opts.clock.now();
    let run = open_run(
        store,
        opts.business_id,
        target.system(),
        opts.digest,
        opts.file_name,
        &prepared.clients,
        now,
    )
    .await?;
    reset_unfinished(store, &run, now).await?;
    let pending = pending_rows(store, run.id).await?;
    let total = prepared.clients.len() as u64;
    opts.progress.set_length(total);
    opts.progress
        .set_position(total.saturating_sub(pending.len() as u64));
    if !pending.is_empty() {
        opts.progress.set_message("reading the target's contacts");
        let index = Index::new(target.existing().await.map_err(|e| {
            ImportError::Target(format!("listing {} contacts: {e}", target.system()))
        })?)
        .single_valued(target.single_valued());
        tracing::info!(
            existing = index.len(),
            pending = pending.len(),
            "import: matching against the target"
        );
        // A row still `sending` or `updating` was in flight when an earlier start stopped.
        let plans: Vec<(String, Plan)> = pending
            .iter()
            .map(|r| {
                let plan = index
                    .plan(&r.client, &run.tag)
                    .resumed(&r.action, target.marks_own());
                (r.key.clone(), plan)
            })
            .collect();
        save_plans(store, run.id, &plans, opts.clock.now()).await?;
        let generation = uuid::Uuid::new_v4().simple().to_string();
        let system = job_system(target.system());
        let keys: Vec<String> = pending.iter().map(|r| r.key.clone()).collect();
        let jobs: Vec<NewJob> = keys
            .chunks(target.batch_size().max(1))
            .enumerate()
            .map(|(n, chunk)| NewJob {
                business_id: run.business_id.clone(),
                system: system.clone(),
                operation: OPERATION.into(),
                payload: serde_json::json!(JobPayload {
                    run_id: run.id,
                    tag: run.tag.clone(),
                    keys: chunk.to_vec(),
                }),
                idempotency_key: format!("import:{}:{generation}:{n}", run.id),
                ordering_key: None,
            })
            .collect();
        let queue = Queue::new(store.clone());
        queue.enqueue_batch(&jobs, opts.clock.now()).await?;
        opts.progress.set_message("writing");
        let mut engine = Engine::new(
            store.clone(),
            opts.clock.clone(),
            opts.sync.clone(),
            Alerts::new(Vec::new()),
            &run.business_id,
        );
        engine.register(
            &system,
            Arc::new(ImportJobs::new(target.clone(), opts.progress.clone())),
        );
        loop {
            engine.run_due().await.map_err(|e| match e {
                crate::sync::worker::EngineError::Store(s) => ImportError::Store(s),
            })?;
            let open = queue
                .open_count(
                    &run.business_id,
                    &system,
                    &format!("import:{}:{generation}:%", run.id),
                )
                .await?;
            if open == 0 {
                break;
            }
            // A batch waits for its retry (backoff, or the target's Retry-After).
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    opts.progress.finish_and_clear();
    let (counts, problems) = run_counts(store, run.id, prepared).await?;
    store
        .set_import_run_state(
            run.id,
            if counts.failed == 0 { "done" } else { "failed" },
            opts.clock.now(),
        )
        .await?;
    Ok((counts, problems))
}

/// The run's totals from its rows, and a problem per row the target refused.
async fn run_counts(
    store: &Store,
    run_id: i64,
    prepared: &Prepared,
) -> Result<(Counts, Vec<Problem>), ImportError> {
    let mut counts = base_counts(prepared);
    for (state, action, n) in store.import_row_counts(run_id).await? {
        let n = n as usize;
        match (state.as_str(), action.as_deref()) {
            ("done", Some("created")) => counts.created += n,
            ("done", Some("updated")) => counts.updated += n,
            ("done", _) => counts.skipped += n,
            ("failed", _) => counts.failed += n,
            _ => {}
        }
    }
    let mut problems = Vec::new();
    for (payload, error) in store.failed_import_rows(run_id).await? {
        let client: Client = serde_json::from_str(&payload)
            .map_err(|e| ImportError::Store(StoreError::Corrupt(format!("import row: {e}"))))?;
        problems.push(Problem {
            row: client.rows.first().copied(),
            kind: ProblemKind::WriteFailed,
            value: client.name.clone(),
            detail: error.unwrap_or_default(),
        });
    }
    Ok((counts, problems))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::clock::SystemClock;
    use crate::import::{RawRecord, prepare};
    use crate::store::testing;

    /// A target in memory; refuses creates while `refuse` is set, and the one client named
    /// `refuse_name` on its own. `unmarked` leaves the run tag off what it creates.
    #[derive(Default)]
    struct Memory {
        contacts: Mutex<Vec<ContactRecord>>,
        refuse: Mutex<bool>,
        refuse_name: Option<String>,
        unmarked: bool,
        writes: Mutex<usize>,
    }

    #[async_trait]
    impl ImportTarget for Memory {
        fn system(&self) -> &'static str {
            "memory"
        }
        fn batch_size(&self) -> usize {
            2
        }
        fn marks_own(&self) -> bool {
            !self.unmarked
        }
        async fn existing(&self) -> Result<Vec<ContactRecord>, CrmError> {
            Ok(self.contacts.lock().unwrap().clone())
        }
        async fn search(&self, _clients: &[Client]) -> Result<Vec<ContactRecord>, CrmError> {
            Ok(self.contacts.lock().unwrap().clone())
        }
        async fn create(&self, drafts: &[ContactDraft]) -> Result<Outcomes<String>, CrmError> {
            if *self.refuse.lock().unwrap() {
                return Err(CrmError::permanent("refused for the test"));
            }
            *self.writes.lock().unwrap() += 1;
            let mut all = self.contacts.lock().unwrap();
            Ok(drafts
                .iter()
                .map(|d| {
                    if self.refuse_name.as_ref() == Some(&d.name) {
                        return Err(CrmError::permanent("this one is refused"));
                    }
                    let id = (all.len() + 1).to_string();
                    all.push(ContactRecord {
                        id: id.clone(),
                        name: d.name.clone(),
                        phones: d.phones.clone(),
                        emails: d.emails.clone(),
                        tags: if self.unmarked {
                            Vec::new()
                        } else {
                            d.tag.iter().cloned().collect()
                        },
                    });
                    Ok(id)
                })
                .collect())
        }
        async fn update(&self, items: &[ContactUpdate]) -> Result<Outcomes<()>, CrmError> {
            *self.writes.lock().unwrap() += 1;
            let mut all = self.contacts.lock().unwrap();
            for u in items {
                if let Some(c) = all.iter_mut().find(|c| c.id == u.id) {
                    c.phones = u.phones.clone();
                    c.emails = u.emails.clone();
                }
            }
            Ok(vec![Ok(()); items.len()])
        }
    }

    fn record(row: usize, name: &str, phone: &str, email: &str) -> RawRecord {
        RawRecord {
            row,
            full_name: Some(name.into()),
            phones: vec![phone.into()],
            emails: vec![email.into()],
            ..RawRecord::default()
        }
    }

    async fn load_once(store: &Store, target: Arc<Memory>, prepared: &Prepared) -> Counts {
        let (counts, _) = load(
            prepared,
            target,
            LoadOptions {
                store,
                clock: Arc::new(SystemClock),
                sync: SyncConfig::default(),
                business_id: "b1",
                digest: "d1d1d1d1d1d1d1d1",
                file_name: "clients.csv",
                progress: ProgressBar::hidden(),
            },
        )
        .await
        .unwrap();
        counts
    }

    #[tokio::test]
    async fn refused_then_resumed_creates_each_client_once_on_both_stores() {
        for store in testing::all().await {
            let prepared = prepare(vec![
                record(2, "Анна", "89120000001", "a@mail.ru"),
                record(3, "Борис", "89120000002", "b@mail.ru"),
                record(4, "Вера", "89120000003", "v@mail.ru"),
                record(5, "Глеб", "89120000004", "g@mail.ru"),
            ]);
            let target = Arc::new(Memory::default());
            // Already in the target: typed by hand, without the email.
            target.contacts.lock().unwrap().push(ContactRecord {
                id: "100".into(),
                name: "Анна С.".into(),
                phones: vec!["8 912 000-00-01".into()],
                ..ContactRecord::default()
            });
            // Made by an earlier start of this run that died before recording it.
            target.contacts.lock().unwrap().push(ContactRecord {
                id: "101".into(),
                name: "Борис".into(),
                phones: vec!["+79120000002".into()],
                emails: vec!["b@mail.ru".into()],
                tags: vec![run_tag("d1d1d1d1d1d1d1d1")],
            });
            *target.refuse.lock().unwrap() = true;
            let first = load_once(&store, target.clone(), &prepared).await;
            assert_eq!(
                (first.created, first.updated, first.failed),
                (1, 1, 2),
                "{first:?}"
            );
            *target.refuse.lock().unwrap() = false;
            let second = load_once(&store, target.clone(), &prepared).await;
            assert_eq!(
                (
                    second.created,
                    second.updated,
                    second.skipped,
                    second.failed
                ),
                (3, 1, 0, 0)
            );
            let contacts = target.contacts.lock().unwrap().clone();
            assert_eq!(contacts.len(), 4);
            assert_eq!(contacts[0].phones, ["8 912 000-00-01"]);
            assert_eq!(contacts[0].emails, ["a@mail.ru"]);
            let writes = *target.writes.lock().unwrap();
            let third = load_once(&store, target.clone(), &prepared).await;
            assert_eq!(third, second);
            assert_eq!(
                *target.writes.lock().unwrap(),
                writes,
                "a finished run writes nothing"
            );
        }
    }

    #[tokio::test]
    async fn a_refused_client_fails_alone_and_is_reported() {
        let store = testing::sqlite().await;
        let prepared = prepare(vec![
            record(2, "Анна", "89120000001", "a@mail.ru"),
            record(3, "Борис", "89120000002", "b@mail.ru"),
            record(4, "Вера", "89120000003", "v@mail.ru"),
        ]);
        let target = Arc::new(Memory {
            refuse_name: Some("Борис".into()),
            ..Memory::default()
        });
        let (counts, refused) = load(
            &prepared,
            target.clone(),
            LoadOptions {
                store: &store,
                clock: Arc::new(SystemClock),
                sync: SyncConfig::default(),
                business_id: "b1",
                digest: "d1d1d1d1d1d1d1d1",
                file_name: "clients.csv",
                progress: ProgressBar::hidden(),
            },
        )
        .await
        .unwrap();
        assert_eq!((counts.created, counts.failed), (2, 1), "{counts:?}");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].row, Some(3));
        assert_eq!(refused[0].kind, ProblemKind::WriteFailed);
        assert!(refused[0].detail.contains("this one is refused"));
        let names: Vec<String> = target
            .contacts
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(names, ["Анна", "Вера"]);
    }

    #[tokio::test]
    async fn an_unmarked_contact_whose_create_was_in_flight_counts_as_created() {
        for unmarked in [true, false] {
            let store = testing::sqlite().await;
            let prepared = prepare(vec![
                record(2, "Анна", "89120000001", "a@mail.ru"),
                record(3, "Борис", "89120000002", "b@mail.ru"),
            ]);
            let target = Arc::new(Memory {
                unmarked,
                ..Memory::default()
            });
            // An earlier start sent Анна's create, the target made her (without a mark), and
            // the process died before the answer was stored.
            let run = open_run(
                &store,
                "b1",
                "memory",
                "d1d1d1d1d1d1d1d1",
                "clients.csv",
                &prepared.clients,
                Utc::now(),
            )
            .await
            .unwrap();
            let anna = &prepared.clients[0];
            mark_sending(
                &store,
                run.id,
                std::slice::from_ref(&anna.key),
                "sending",
                Utc::now(),
            )
            .await
            .unwrap();
            target.contacts.lock().unwrap().push(ContactRecord {
                id: "900".into(),
                name: anna.name.clone(),
                phones: vec![anna.phones[0].to_string()],
                emails: vec![anna.emails[0].to_string()],
                tags: Vec::new(),
            });
            let counts = load_once(&store, target.clone(), &prepared).await;
            // A target that marks its contacts knows an unmarked one is not its own.
            let expected = if unmarked { (2, 0) } else { (1, 1) };
            assert_eq!(
                (counts.created, counts.skipped),
                expected,
                "unmarked {unmarked}: {counts:?}"
            );
            assert_eq!(target.contacts.lock().unwrap().len(), 2);
        }
    }

    #[tokio::test]
    async fn an_update_whose_answer_was_lost_counts_as_updated() {
        let store = testing::sqlite().await;
        let prepared = prepare(vec![record(2, "Анна", "89120000001", "a@mail.ru")]);
        let target = Arc::new(Memory::default());
        let run = open_run(
            &store,
            "b1",
            "memory",
            "d1d1d1d1d1d1d1d1",
            "clients.csv",
            &prepared.clients,
            Utc::now(),
        )
        .await
        .unwrap();
        let key = prepared.clients[0].key.clone();
        mark_sending(&store, run.id, &[key], "updating", Utc::now())
            .await
            .unwrap();
        // The update went through; its answer was lost with the process.
        target.contacts.lock().unwrap().push(ContactRecord {
            id: "100".into(),
            name: "Анна С.".into(),
            phones: vec!["8 912 000-00-01".into()],
            emails: vec!["a@mail.ru".into()],
            tags: Vec::new(),
        });
        let counts = load_once(&store, target.clone(), &prepared).await;
        assert_eq!((counts.updated, counts.skipped), (1, 0), "{counts:?}");
        assert_eq!(*target.writes.lock().unwrap(), 0);
    }

    #[test]
    fn a_single_valued_target_gets_only_what_it_can_hold() {
        let prepared = prepare(vec![RawRecord {
            row: 2,
            full_name: Some("Анна".into()),
            phones: vec!["89120000001, 89120000009".into()],
            emails: vec!["a@mail.ru".into()],
            ..RawRecord::default()
        }]);
        let held = ContactRecord {
            id: "7".into(),
            name: "Анна С.".into(),
            phones: vec!["79120000001".into()],
            ..ContactRecord::default()
        };
        let single = Index::new(vec![held.clone()]).single_valued(true);
        assert_eq!(
            single.plan(&prepared.clients[0], "tag"),
            Plan::Update {
                id: "7".into(),
                name: "Анна С.".into(),
                phones: vec!["79120000001".into()],
                emails: vec!["a@mail.ru".into()],
                new_phones: vec![],
                new_emails: vec!["a@mail.ru".into()],
            }
        );
        let multi = Index::new(vec![held]);
        let Plan::Update { new_phones, .. } = multi.plan(&prepared.clients[0], "tag") else {
            panic!("an update")
        };
        assert_eq!(new_phones, ["+79120000009"]);
    }

    #[test]
    fn matching_links_when_nothing_is_new() {
        let prepared = prepare(vec![record(2, "Анна", "89120000001", "A@Mail.ru")]);
        let index = Index::new(vec![ContactRecord {
            id: "7".into(),
            phones: vec!["+7 912 000 00 01".into()],
            emails: vec!["a@mail.ru".into()],
            ..ContactRecord::default()
        }]);
        assert_eq!(
            index.plan(&prepared.clients[0], "tag"),
            Plan::Link { id: "7".into() }
        );
        let counts = dry_run_counts(&prepared, &index, &Memory::default());
        assert_eq!((counts.created, counts.updated, counts.skipped), (0, 0, 1));
    }
}
