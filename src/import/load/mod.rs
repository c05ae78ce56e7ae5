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

mod jobs;
mod plan;
mod rows;
#[cfg(test)]
mod tests;

use crate::domain::{BusinessId, System};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use indicatif::ProgressBar;
use tokio_util::task::AbortOnDropHandle;

use super::report::Counts;
use super::{Client, ImportError, Prepared, Problem, ProblemKind};
use crate::clock::Clock;
use crate::crm::{ContactDraft, ContactRecord, ContactUpdate, CrmError};
use crate::store::{Store, StoreError};
use crate::sync::{Alerts, Engine, NewJob, Queue, SyncConfig};
use jobs::JobPayload;
use plan::base_counts;
use rows::{open_run, pending_rows, reset_unfinished, save_plans};

pub use jobs::ImportJobs;
pub use plan::{Index, Plan, dry_run_counts, run_tag};
pub use rows::Run;

/// What a bulk write gives back: one outcome per item, in the order sent. A refused item fails
/// only its own row; the `Err` of the whole call is for failures of the request itself.
pub type Outcomes<T> = Vec<Result<T, CrmError>>;

/// Where an import writes: bulk contact calls of one system.
#[async_trait]
pub trait ImportTarget: Send + Sync {
    /// [`System::AmoCrm`], [`System::Bitrix24`], [`System::Yclients`].
    fn system(&self) -> System;
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
pub fn job_system(target: System) -> Result<System, ImportError> {
    target
        .import()
        .ok_or_else(|| ImportError::Target(format!("{target} takes no import")))
}

const OPERATION: &str = "import_contacts";

/// The target's contacts, listed on a task of their own while the rest gets ready: the
/// listing is the import's first request and every write waits on it, so the file read and
/// the run recorded meanwhile cost no time on the target's pace. Dropped unfinished (nothing
/// left to write, or a failure before), it stops.
pub struct Listing(AbortOnDropHandle<Result<Vec<ContactRecord>, CrmError>>);

impl Listing {
    /// Starts listing `target`'s contacts now.
    pub fn start(target: &Arc<dyn ImportTarget>) -> Listing {
        let target = target.clone();
        Listing(AbortOnDropHandle::new(tokio::spawn(async move {
            target.existing().await
        })))
    }

    async fn finish(self) -> Result<Vec<ContactRecord>, CrmError> {
        self.0
            .await
            .map_err(|e| CrmError::transient(format!("listing the contacts stopped: {e}")))?
    }
}

/// Everything a real (not dry) load needs.
pub struct LoadOptions<'a> {
    pub store: &'a Store,
    pub clock: Arc<dyn Clock>,
    pub sync: SyncConfig,
    pub business_id: &'a BusinessId,
    pub digest: &'a str,
    pub file_name: &'a str,
    pub progress: ProgressBar,
    /// The target's contacts, if their listing was started earlier ([`Listing::start`]);
    /// otherwise it starts with the load.
    pub listing: Option<Listing>,
}

/// Loads the prepared clients, continuing an earlier run of the same input. Returns the
/// run's counts and the rows the target refused.
pub async fn load(
    prepared: &Prepared,
    target: Arc<dyn ImportTarget>,
    opts: LoadOptions<'_>,
) -> Result<(Counts, Vec<Problem>), ImportError> {
    let store = opts.store;
    let listing = match opts.listing {
        Some(listing) => listing,
        None => Listing::start(&target),
    };
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
        let index = Index::new(listing.finish().await.map_err(|e| {
            ImportError::Target(format!("listing {} contacts: {e}", target.system()))
        })?)
        .single_valued(target.single_valued());
        tracing::info!(
            existing = index.len(),
            pending = pending.len(),
            "import: matching against the target"
        );
        // A row still `sending` or `updating` was in flight when an earlier start stopped.
        // A row whose plan is what it holds already (on a first start every new client's:
        // `create`) is not written again: one statement each, they were most of the wait
        // before the first write.
        let plans: Vec<(String, Plan)> = pending
            .iter()
            .filter_map(|r| {
                let plan = index
                    .plan(&r.client, &run.tag)
                    .resumed(&r.action, target.marks_own());
                let unchanged = matches!(plan, Plan::Create)
                    && r.action == "create"
                    && r.external_id.is_none()
                    && r.plan.is_none();
                (!unchanged).then(|| (r.key.clone(), plan))
            })
            .collect();
        save_plans(store, run.id, &plans, opts.clock.now()).await?;
        let generation = uuid::Uuid::new_v4().simple().to_string();
        let system = job_system(target.system())?;
        let keys: Vec<String> = pending.iter().map(|r| r.key.clone()).collect();
        let jobs: Vec<NewJob> = keys
            .chunks(target.batch_size().max(1))
            .enumerate()
            .map(|(n, chunk)| NewJob {
                business_id: run.business_id.clone(),
                system,
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
            system,
            Arc::new(ImportJobs::new(target.clone(), opts.progress.clone())),
        );
        loop {
            engine.run_due().await.map_err(|e| match e {
                crate::sync::worker::EngineError::Store(s) => ImportError::Store(s),
            })?;
            let open = queue
                .open_count(
                    &run.business_id,
                    system,
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
