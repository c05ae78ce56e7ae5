//! Import runs (`zapis import`): one run per business, target and input digest, with a row per
//! client keyed by its normalised phone or email, and each row's state, planned action and
//! target id, so a later start of the same input resumes where the last one stopped.

use crate::domain::BusinessId;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, to_millis};

/// A client row of a run as stored: its payload and plan are the importer's JSON.
pub struct ImportRow {
    pub key: String,
    pub payload: String,
    pub action: Option<String>,
    pub external_id: Option<String>,
    pub plan: Option<String>,
}

/// A planned action for a pending row: `(key, action, target id, stored plan)`.
pub type RowPlan = (String, &'static str, Option<String>, Option<String>);

fn import_row(r: &sqlx::any::AnyRow) -> Result<ImportRow, StoreError> {
    Ok(ImportRow {
        key: r.try_get("key")?,
        payload: r.try_get("payload")?,
        action: r.try_get("action")?,
        external_id: r.try_get("external_id")?,
        plan: r.try_get("plan")?,
    })
}

impl Store {
    /// Finds the run for this input (same business, target and digest) or starts one, and
    /// records its clients (`(key, payload)`) as rows to create; rows already there keep their
    /// state. Returns the run's id.
    #[allow(clippy::too_many_arguments)]
    pub async fn open_import_run(
        &self,
        business_id: &BusinessId,
        target: &str,
        digest: &str,
        file_name: &str,
        clients: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let now_ms = to_millis(now);
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO import_runs (business_id, target, digest, file_name, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'running', $5, $5) \
             ON CONFLICT (business_id, target, digest) DO UPDATE SET updated_at = $5, state = 'running'",
        )
        .bind(business_id.as_str())
        .bind(target)
        .bind(digest)
        .bind(file_name)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let id: i64 = sqlx::query_scalar(
            "SELECT id FROM import_runs WHERE business_id = $1 AND target = $2 AND digest = $3",
        )
        .bind(business_id.as_str())
        .bind(target)
        .bind(digest)
        .fetch_one(&mut *tx)
        .await?;
        const CHUNK: usize = 200;
        for chunk in clients.chunks(CHUNK) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * 3;
                    format!("($1, ${}, ${}, 'pending', ${}, $2)", b + 3, b + 4, b + 5)
                })
                .collect();
            let sql = format!(
                "INSERT INTO import_rows (run_id, key, payload, state, action, updated_at) VALUES {} \
                 ON CONFLICT (run_id, key) DO NOTHING",
                values.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(now_ms);
            for (key, payload) in chunk {
                q = q.bind(key).bind(payload).bind("create");
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Gives the run's failed rows another chance.
    pub async fn retry_failed_import_rows(
        &self,
        run_id: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE import_rows SET state = 'pending', error = NULL, updated_at = $1 \
             WHERE run_id = $2 AND state = 'failed'",
        )
        .bind(to_millis(now))
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The run's pending rows, by key.
    pub async fn pending_import_rows(&self, run_id: i64) -> Result<Vec<ImportRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, payload, action, external_id, plan FROM import_rows \
             WHERE run_id = $1 AND state = 'pending' ORDER BY key",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(import_row).collect()
    }

    /// Those of `keys` whose rows are still pending.
    pub async fn pending_import_rows_among(
        &self,
        run_id: i64,
        keys: &[String],
    ) -> Result<Vec<ImportRow>, StoreError> {
        let mut rows = Vec::new();
        for chunk in keys.chunks(500) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT key, payload, action, external_id, plan FROM import_rows \
                 WHERE run_id = $1 AND state = 'pending' AND key IN ({})",
                marks.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(run_id);
            for k in chunk {
                q = q.bind(k);
            }
            for r in &q.fetch_all(&self.pool).await? {
                rows.push(import_row(r)?);
            }
        }
        Ok(rows)
    }

    /// Stores a fresh plan for each row still pending.
    pub async fn save_import_plans(
        &self,
        run_id: i64,
        plans: &[RowPlan],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for (key, action, id, stored) in plans {
            sqlx::query(
                "UPDATE import_rows SET action = $1, external_id = $2, plan = $3, updated_at = $4 \
                 WHERE run_id = $5 AND key = $6 AND state = 'pending'",
            )
            .bind(*action)
            .bind(id.as_deref())
            .bind(stored.as_deref())
            .bind(to_millis(now))
            .bind(run_id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks rows done with their final action (`created`, `updated`, `skipped`) and target id.
    pub async fn finish_import_rows(
        &self,
        run_id: i64,
        done: &[(String, &'static str, String)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.update_rows(
            "UPDATE import_rows SET state = 'done', action = $1, external_id = $2, updated_at = $3 \
             WHERE run_id = $4 AND key = $5",
            run_id,
            done.iter()
                .map(|(key, action, id)| (key.as_str(), [*action, id.as_str()])),
            now,
        )
        .await
    }

    /// Marks rows the target refused, with its error. A refused write is known not to have
    /// happened, so its row goes back to a plain `create` or `update`.
    pub async fn fail_import_rows(
        &self,
        run_id: i64,
        failed: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.update_rows(
            "UPDATE import_rows SET state = 'failed', error = $1, updated_at = $2, \
               action = CASE action WHEN 'sending' THEN 'create' WHEN 'updating' THEN 'update' \
                 ELSE action END \
             WHERE run_id = $3 AND key = $4 AND state = 'pending'",
            run_id,
            failed
                .iter()
                .map(|(key, error)| (key.as_str(), [error.as_str()])),
            now,
        )
        .await
    }

    /// Sets the action of those of `keys` still pending (`sending`, `updating`: their write is
    /// about to go out).
    pub async fn mark_import_rows(
        &self,
        run_id: i64,
        keys: &[String],
        action: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.update_rows(
            "UPDATE import_rows SET action = $1, updated_at = $2 \
             WHERE run_id = $3 AND key = $4 AND state = 'pending'",
            run_id,
            keys.iter().map(|key| (key.as_str(), [action])),
            now,
        )
        .await
    }

    /// Runs `sql` for each `(key, values)` of run `run_id` in one transaction, binding the `N`
    /// values as `$1`…`$N`, then `now`, the run and the key.
    async fn update_rows<'a, const N: usize>(
        &self,
        sql: &'static str,
        run_id: i64,
        rows: impl Iterator<Item = (&'a str, [&'a str; N])>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for (key, values) in rows {
            let mut query = sqlx::query(sql);
            for value in values {
                query = query.bind(value);
            }
            query
                .bind(to_millis(now))
                .bind(run_id)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Ends the run in `state` (`done`, `failed`).
    pub async fn set_import_run_state(
        &self,
        run_id: i64,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE import_runs SET state = $1, updated_at = $2 WHERE id = $3")
            .bind(state)
            .bind(to_millis(now))
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The run's rows counted by state and action.
    pub async fn import_row_counts(
        &self,
        run_id: i64,
    ) -> Result<Vec<(String, Option<String>, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, action, COUNT(*) AS n FROM import_rows WHERE run_id = $1 GROUP BY state, action",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("action")?, r.try_get("n")?)))
            .collect()
    }

    /// Payload and error of the run's failed rows, by key.
    pub async fn failed_import_rows(
        &self,
        run_id: i64,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, payload, error FROM import_rows WHERE run_id = $1 AND state = 'failed' ORDER BY key",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("payload")?, r.try_get("error")?)))
            .collect()
    }
}
