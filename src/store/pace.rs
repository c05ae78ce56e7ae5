//! Vendors' rate limits across instances (`vendor_pace`, migration 0033): a request's turn is
//! taken by one atomic statement on the account's row, the generic cell rate algorithm with the
//! row as its clock, so instances sharing the store together keep within the vendor's pace.

use super::{Store, StoreError};

impl Store {
    /// Takes the next turn of `account` for a request at `now_ms`, with one request per
    /// `period_ms` and up to `burst` at once; returns how many milliseconds to wait for it.
    pub async fn take_pace_turn(
        &self,
        account: &str,
        now_ms: i64,
        period_ms: i64,
        burst: i64,
    ) -> Result<i64, StoreError> {
        let next_at: i64 = sqlx::query_scalar(
            "INSERT INTO vendor_pace (account, next_at) VALUES ($1, $2 + $3) \
             ON CONFLICT (account) DO UPDATE SET next_at = \
               CASE WHEN vendor_pace.next_at < $2 THEN $2 + $3 ELSE vendor_pace.next_at + $3 END \
             RETURNING next_at",
        )
        .bind(account)
        .bind(now_ms)
        .bind(period_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok((next_at - burst.max(1) * period_ms - now_ms).max(0))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn turns_are_spaced_by_the_period_after_the_burst_on_every_backend() {
        for store in crate::store::testing::all().await {
            let t = 1_000_000;
            // One a period, no burst: the second waits a period, the third two.
            let waits: Vec<i64> =
                futures::future::join_all((0..3).map(|_| store.take_pace_turn("even", t, 200, 1)))
                    .await
                    .into_iter()
                    .map(|w| w.expect("a turn"))
                    .collect();
            let mut sorted = waits.clone();
            sorted.sort();
            assert_eq!(sorted, [0, 200, 400], "{waits:?}");
            // Later than every turn taken: at once again.
            assert_eq!(
                store
                    .take_pace_turn("even", t + 5_000, 200, 1)
                    .await
                    .unwrap(),
                0
            );
            // A burst of 3 passes at once, the fourth waits.
            for _ in 0..3 {
                assert_eq!(store.take_pace_turn("bursty", t, 500, 3).await.unwrap(), 0);
            }
            assert_eq!(
                store.take_pace_turn("bursty", t, 500, 3).await.unwrap(),
                500
            );
        }
    }
}
