//! An import run and its rows as stored: opened (or found again) per input, each row planned,
//! marked while its write is in flight, and finished or failed with the target's answer.

use crate::domain::{BusinessId, System};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Plan, job_system, run_tag};
use crate::import::Client;
use crate::store::imports::{ImportRow, RowPlan};
use crate::store::{Store, StoreError};
use crate::sync::Queue;

/// A planned update as stored with its row (re-planned at every start, so only one version of
/// the program reads what another wrote).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredPlan {
    pub(super) phones: Vec<String>,
    pub(super) emails: Vec<String>,
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) new_phones: Vec<String>,
    #[serde(default)]
    pub(super) new_emails: Vec<String>,
}

/// One import run.
pub struct Run {
    pub id: i64,
    pub business_id: BusinessId,
    pub target: System,
    pub tag: String,
}

/// Finds the run for this input (same business, target and digest) or starts one, and
/// records its clients; rows already there keep their state.
pub async fn open_run(
    store: &Store,
    business_id: &BusinessId,
    target: System,
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
        .open_import_run(business_id, target.as_str(), digest, file_name, &rows, now)
        .await?;
    Ok(Run {
        id,
        business_id: business_id.clone(),
        target,
        tag: run_tag(digest),
    })
}

/// Retires unfinished jobs of earlier starts (their process is gone; their rows are
/// re-planned and enqueued afresh) and gives failed rows another chance.
pub(super) async fn reset_unfinished(
    store: &Store,
    run: &Run,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    // A target that takes no import never had jobs queued for it.
    if let Ok(system) = job_system(run.target) {
        Queue::new(store.clone())
            .supersede_import_jobs(
                &run.business_id,
                system,
                &format!("import:{}:%", run.id),
                now,
            )
            .await?;
    }
    store.retry_failed_import_rows(run.id, now).await
}

pub(super) struct PendingRow {
    pub(super) key: String,
    pub(super) client: Client,
    pub(super) action: String,
    pub(super) external_id: Option<String>,
    pub(super) plan: Option<StoredPlan>,
}

pub(super) fn pending_from_row(r: ImportRow) -> Result<PendingRow, StoreError> {
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

pub(super) async fn pending_rows(
    store: &Store,
    run_id: i64,
) -> Result<Vec<PendingRow>, StoreError> {
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

pub(super) async fn save_plans(
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
pub(super) async fn finish_rows(
    store: &Store,
    run_id: i64,
    done: &[(String, &'static str, String)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store.finish_import_rows(run_id, done, now).await
}

/// Marks rows the target refused. A refused write is known not to have happened, so its row
/// goes back to a plain `create` or `update`.
pub(super) async fn fail_rows(
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
pub(super) async fn mark_sending(
    store: &Store,
    run_id: i64,
    keys: &[String],
    action: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store.mark_import_rows(run_id, keys, action, now).await
}

impl PendingRow {
    /// Takes a fresh matching decision (made while the job runs) into the row.
    pub(super) fn apply(&mut self, plan: Plan) {
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
