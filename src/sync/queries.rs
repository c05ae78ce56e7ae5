//! What other parts ask of the queue (a booking's last job, counts for the gauges, an import's
//! open batches) and the retiring of an import's leftover jobs: statements on `sync_jobs` stay
//! with the queue.

use crate::domain::{BusinessId, System};
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Queue;
use crate::store::{StoreError, to_millis};

impl Queue {
    /// Operation and state of the newest job of `business_id` in `system` with `ordering_key`.
    pub async fn last_of_ordering_key(
        &self,
        business_id: &BusinessId,
        system: System,
        ordering_key: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT operation, state FROM sync_jobs \
             WHERE business_id = $1 AND system = $2 AND ordering_key = $3 ORDER BY id DESC LIMIT 1",
        )
        .bind(business_id.as_str())
        .bind(system.as_str())
        .bind(ordering_key)
        .fetch_optional(self.store().pool())
        .await?;
        row.map(|r| Ok((r.try_get("operation")?, r.try_get("state")?)))
            .transpose()
    }

    /// System, state and job count of every system and state `business_id` has jobs in.
    pub async fn counts_of(
        &self,
        business_id: &BusinessId,
    ) -> Result<Vec<(System, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT system, state, COUNT(*) AS n FROM sync_jobs WHERE business_id = $1 \
             GROUP BY system, state",
        )
        .bind(business_id.as_str())
        .fetch_all(self.store().pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    crate::store::system_in(r)?,
                    r.try_get("state")?,
                    r.try_get("n")?,
                ))
            })
            .collect()
    }

    /// Ends the pending and running jobs of an earlier start of an import (their process is
    /// gone): those of `business_id` in `system` whose idempotency key is `LIKE key_pattern`.
    pub async fn supersede_import_jobs(
        &self,
        business_id: &BusinessId,
        system: System,
        key_pattern: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sync_jobs SET state = 'dead', last_error = 'superseded by a later start of the import', \
               worker_id = NULL, lease_until = NULL, updated_at = $1, finished_at = $1 \
             WHERE business_id = $2 AND system = $3 AND state IN ('pending', 'running') \
               AND idempotency_key LIKE $4",
        )
        .bind(to_millis(now))
        .bind(business_id.as_str())
        .bind(system.as_str())
        .bind(key_pattern)
        .execute(self.store().pool())
        .await?;
        Ok(())
    }

    /// How many jobs of `business_id` in `system` whose idempotency key is `LIKE key_pattern`
    /// are still pending or running.
    pub async fn open_count(
        &self,
        business_id: &BusinessId,
        system: System,
        key_pattern: &str,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM sync_jobs WHERE business_id = $1 AND system = $2 \
             AND state IN ('pending', 'running') AND idempotency_key LIKE $3",
        )
        .bind(business_id.as_str())
        .bind(system.as_str())
        .bind(key_pattern)
        .fetch_one(self.store().pool())
        .await?)
    }

    /// System and operation of every job, oldest first.
    #[cfg(test)]
    pub(crate) async fn systems_and_operations(&self) -> Vec<(String, String)> {
        sqlx::query_as("SELECT system, operation FROM sync_jobs ORDER BY id")
            .fetch_all(self.store().pool())
            .await
            .unwrap()
    }

    /// Empties the queue.
    #[cfg(test)]
    pub(crate) async fn delete_all(&self) {
        sqlx::query("DELETE FROM sync_jobs")
            .execute(self.store().pool())
            .await
            .unwrap();
    }

    /// Makes job `id` dead with `error`, as if its retries had run out.
    #[cfg(test)]
    pub(crate) async fn kill(&self, id: i64, error: &str) {
        sqlx::query("UPDATE sync_jobs SET state = 'dead', last_error = $2 WHERE id = $1")
            .bind(id)
            .bind(error)
            .execute(self.store().pool())
            .await
            .unwrap();
    }

    /// How many jobs of `system` have an idempotency key `LIKE key_pattern`.
    #[cfg(test)]
    pub(crate) async fn count_with_key_like(&self, system: System, key_pattern: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM sync_jobs WHERE system = $1 AND idempotency_key LIKE $2",
        )
        .bind(system.as_str())
        .bind(key_pattern)
        .fetch_one(self.store().pool())
        .await
        .expect("count")
    }

    /// Business and idempotency key of the one job in `system`.
    #[cfg(test)]
    pub(crate) async fn only_job_of(&self, system: System) -> (String, String) {
        sqlx::query_as("SELECT business_id, idempotency_key FROM sync_jobs WHERE system = $1")
            .bind(system.as_str())
            .fetch_one(self.store().pool())
            .await
            .expect("the job is queued")
    }
}
