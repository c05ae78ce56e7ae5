//! Vendors' rate limits across instances (`vendor_pace`, migration 0033): a request's turn is
//! taken by one atomic statement on the account's row, the generic cell rate algorithm with the
//! row as its clock, so instances sharing the store together keep within the vendor's pace.

use super::{Backend, Store, StoreError};

/// The database's own clock in milliseconds when the statement runs: a statement that waited
/// for the write lock (another process's long transaction) must not take a turn by the time it
/// was asked, or the turn lies in the past and its request bunches against the next.
const SQLITE_NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";
const POSTGRES_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// A turn taken from the shared pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceTurn {
    /// When the statement ran: the later of the moment asked for and the database's clock
    /// (milliseconds since the epoch).
    pub ran_at_ms: i64,
    /// How long after `ran_at_ms` the turn comes.
    pub wait_ms: i64,
}

impl Store {
    /// Takes the next turn of `account` for a request asked for at `now_ms`, with one request
    /// per `period_ms` and up to `burst` at once. The turn is counted from the later of
    /// `now_ms` and the database's clock as the statement runs.
    pub async fn take_pace_turn(
        &self,
        account: &str,
        now_ms: i64,
        period_ms: i64,
        burst: i64,
    ) -> Result<PaceTurn, StoreError> {
        // The backends differ only in their clock, the name of `max` and SQLite's need of a
        // `WHERE` to tell `ON CONFLICT` from a join constraint.
        let (now_ms_sql, greatest, where_true) = match self.backend {
            Backend::Sqlite => (SQLITE_NOW_MS, "max($2", " WHERE true"),
            Backend::Postgres => (POSTGRES_NOW_MS, "GREATEST($2::bigint", ""),
        };
        let sql = format!(
            "WITH t(now) AS (SELECT {greatest}, {now_ms_sql})) \
             INSERT INTO vendor_pace (account, next_at) SELECT $1, now + $3 FROM t{where_true} \
             ON CONFLICT (account) DO UPDATE SET next_at = \
               CASE WHEN vendor_pace.next_at < (SELECT now FROM t) \
                 THEN (SELECT now FROM t) + $3 ELSE vendor_pace.next_at + $3 END \
             RETURNING next_at, (SELECT now FROM t)"
        );
        let (next_at, now): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(now_ms)
            .bind(period_ms)
            .fetch_one(&self.pool)
            .await?;
        Ok(PaceTurn {
            ran_at_ms: now,
            wait_ms: (next_at - burst.max(1) * period_ms - now).max(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    /// The wait of the turn taken.
    async fn wait(store: &Store, account: &str, now_ms: i64, period_ms: i64, burst: i64) -> i64 {
        store
            .take_pace_turn(account, now_ms, period_ms, burst)
            .await
            .expect("a turn")
            .wait_ms
    }

    #[tokio::test]
    async fn turns_are_spaced_by_the_period_after_the_burst_on_every_backend() {
        for store in crate::store::testing::all().await {
            // Ahead of the database's clock, so turns count from it and waits are exact.
            let t = chrono::Utc::now().timestamp_millis() + 86_400_000;
            // One a period, no burst: the second waits a period, the third two.
            let waits: Vec<i64> =
                futures::future::join_all((0..3).map(|_| wait(&store, "even", t, 200, 1))).await;
            let mut sorted = waits.clone();
            sorted.sort();
            assert_eq!(sorted, [0, 200, 400], "{waits:?}");
            // Later than every turn taken: at once again.
            assert_eq!(wait(&store, "even", t + 5_000, 200, 1).await, 0);
            // A burst of 3 passes at once, the fourth waits.
            for _ in 0..3 {
                assert_eq!(wait(&store, "bursty", t, 500, 3).await, 0);
            }
            assert_eq!(wait(&store, "bursty", t, 500, 3).await, 500);
        }
    }

    /// A turn asked for a while ago (the statement waited for another process's write) is
    /// counted from when it runs: it cannot land in the past, where it would bunch up against
    /// the turn after it.
    #[tokio::test]
    async fn a_turn_asked_for_late_counts_from_the_databases_clock() {
        for store in crate::store::testing::all().await {
            let asked = chrono::Utc::now().timestamp_millis() - 5_000;
            assert_eq!(wait(&store, "late", asked, 300, 1).await, 0);
            // Another process asks now. Had the first turn been counted from its stale moment,
            // its slot would have passed and this one would go at once, beside it.
            let now = chrono::Utc::now().timestamp_millis();
            let turn = store.take_pace_turn("late", now, 300, 1).await.unwrap();
            assert!(turn.ran_at_ms >= now, "{turn:?}");
            let wait = turn.wait_ms;
            assert!((250..=300).contains(&wait), "{wait}");
        }
    }
}
