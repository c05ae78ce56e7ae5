//! Leases on periodic loops, so that several instances on one store run each business's loop
//! once: PostgreSQL (or SQLite) is the coordinator, with no protocol of our own beyond one row
//! per loop.

use crate::domain::BusinessId;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Store, StoreError, to_millis};

impl Store {
    /// Takes the lease on loop `name` of `business_id` for `holder` until `until`, or renews
    /// it; `false` while another holder's lease has not run out at `now`.
    pub async fn take_lease(
        &self,
        business_id: &BusinessId,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO loop_leases (business_id, name, holder, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (business_id, name) DO UPDATE \
               SET holder = excluded.holder, expires_at = excluded.expires_at \
               WHERE loop_leases.holder = excluded.holder OR loop_leases.expires_at <= $5",
        )
        .bind(business_id.as_str())
        .bind(name)
        .bind(holder)
        .bind(to_millis(until))
        .bind(to_millis(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease up at once (a clean stop), so another instance need not wait it out.
    pub async fn drop_lease(
        &self,
        business_id: &BusinessId,
        name: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM loop_leases WHERE business_id = $1 AND name = $2 AND holder = $3")
            .bind(business_id.as_str())
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// One instance's hold on one business's periodic loop.
#[derive(Clone, Debug)]
pub struct LoopLease {
    store: Store,
    business_id: BusinessId,
    name: &'static str,
    holder: String,
    ttl: chrono::Duration,
}

impl LoopLease {
    /// A loop that runs every `every`: its lease outlives three missed rounds (and at least
    /// 10 s), so a slow round does not hand the loop over, and a dead holder's loop moves on
    /// within that time.
    pub fn new(
        store: Store,
        business_id: &BusinessId,
        name: &'static str,
        holder: &str,
        every: Duration,
    ) -> LoopLease {
        let ttl = (every * 3).max(Duration::from_secs(10));
        LoopLease {
            store,
            business_id: business_id.clone(),
            name,
            holder: holder.to_string(),
            ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(15)),
        }
    }

    /// Whether this instance runs the loop's round at `now`. A store that cannot answer means
    /// no: a round skipped is caught up by the next, a round run twice may not be harmless.
    pub async fn hold(&self, now: DateTime<Utc>) -> bool {
        match self
            .store
            .take_lease(
                &self.business_id,
                self.name,
                &self.holder,
                now,
                now + self.ttl,
            )
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(loop = self.name, error = %e, "cannot renew the loop's lease; skipping a round");
                false
            }
        }
    }

    pub async fn release(&self) {
        if let Err(e) = self
            .store
            .drop_lease(&self.business_id, self.name, &self.holder)
            .await
        {
            tracing::warn!(loop = self.name, error = %e, "cannot give the loop's lease up; it runs out on its own");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bid;
    use crate::store::testing;
    use chrono::TimeZone;

    #[tokio::test]
    async fn one_holder_at_a_time_and_a_dead_one_is_replaced_after_its_lease() {
        for store in testing::all().await {
            let every = Duration::from_secs(5);
            let a = LoopLease::new(store.clone(), &bid("b1"), "reconcile", "instance-a", every);
            let b = LoopLease::new(store.clone(), &bid("b1"), "reconcile", "instance-b", every);
            let other = LoopLease::new(store.clone(), &bid("b2"), "reconcile", "instance-b", every);
            let t0 = Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap();

            assert!(a.hold(t0).await);
            assert!(!b.hold(t0).await, "a holds it");
            assert!(other.hold(t0).await, "another business's loop is its own");
            // a renews every round; b keeps being refused.
            let t1 = t0 + chrono::Duration::seconds(5);
            assert!(a.hold(t1).await);
            assert!(!b.hold(t1 + chrono::Duration::seconds(14)).await);
            // a dies: after its lease (3 rounds from its last renewal), b takes over.
            let after = t1 + chrono::Duration::seconds(15);
            assert!(b.hold(after).await);
            assert!(!a.hold(after).await, "a comes back and finds b holding");
            // A clean stop hands over at once.
            b.release().await;
            assert!(a.hold(after).await);
        }
    }
}
