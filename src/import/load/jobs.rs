//! The engine's handler for import jobs: one job writes one batch of clients, looking at the
//! target first for rows whose earlier write has an unknown outcome.

use std::sync::Arc;

use async_trait::async_trait;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::plan::draft;
use super::rows::{PendingRow, fail_rows, finish_rows, mark_sending, pending_from_row};
use super::{ImportTarget, Index};
use crate::crm::delivery_error;
use crate::crm::{ContactDraft, ContactUpdate, CrmError};
use crate::import::Client;
use crate::store::{Store, StoreError};
use crate::sync::{Delivered, DeliveryError, Job, JobContext, JobHandler};

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct JobPayload {
    pub(super) run_id: i64,
    pub(super) tag: String,
    pub(super) keys: Vec<String>,
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

/// Sorts the outcomes of one write call into the rows they belong to. A missing outcome is an
/// unknown one: retried, never assumed.
fn sort_outcomes<T: Clone>(
    system: crate::domain::System,
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
                system = %self.target.system(),
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
