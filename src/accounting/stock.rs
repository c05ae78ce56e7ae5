//! The periodic low-stock check of `zapis run` when 1C is reached over OData: the balance
//! register is read every `onec.stock_check_interval`, and an item at or below
//! `onec.low_stock_threshold` is alerted once, then again only after it has recovered above
//! it. What was alerted is kept in the store (`onec_stock_watch`), so a restart does not
//! repeat alerts and several instances on one PostgreSQL alert once between them.

use crate::domain::BusinessId;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Accounting, AccountingError};
use crate::clock::Clock;
use crate::shutdown::{Cadence, LeasedRounds};
use crate::store::{Store, StoreError, to_millis};
use crate::sync::{Alert, AlertKind, Alerts};

#[derive(Debug, thiserror::Error)]
pub enum StockWatchError {
    #[error("reading the stock from 1C failed: {0}")]
    Accounting(#[from] AccountingError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one pass saw and did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StockReport {
    /// Items in the balance, plus those seen before and now absent (sold out).
    pub items: usize,
    /// Items that turned low in this pass and were alerted, with their quantity.
    pub alerted: Vec<(String, f64)>,
    /// Items that were low and are above the threshold again.
    pub recovered: Vec<String>,
}

pub struct StockWatch {
    pub business_id: BusinessId,
    pub accounting: Arc<dyn Accounting>,
    pub store: Store,
    pub alerts: Alerts,
    pub threshold: u64,
    /// Номенклатура key → our service or course key, to name items in the alert.
    pub names: HashMap<String, String>,
}

impl StockWatch {
    fn label(&self, item: &str) -> String {
        match self.names.get(item) {
            Some(name) => format!("{item} ({name})"),
            None => item.to_string(),
        }
    }

    /// One pass: reads the balance and alerts each item that turned low since the last pass.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<StockReport, StockWatchError> {
        // One total per item: the register has a row per warehouse (and per characteristic).
        let mut totals: BTreeMap<String, f64> = BTreeMap::new();
        for line in self.accounting.stock().await? {
            if line.item.is_empty() {
                continue;
            }
            *totals.entry(line.item).or_default() += line.quantity;
        }
        // 1C's Balance virtual table leaves out what has nothing left, so an item seen before
        // and missing now is sold out.
        let known: HashSet<String> = self
            .store
            .onec_watched_items(&self.business_id)
            .await?
            .into_iter()
            .collect();
        for item in &known {
            totals.entry(item.clone()).or_insert(0.0);
        }
        let threshold = self.threshold as f64;
        let mut report = StockReport {
            items: totals.len(),
            ..StockReport::default()
        };
        let at = to_millis(now);
        for (item, quantity) in &totals {
            let low = *quantity <= threshold;
            // Flips the item's state only when it changes; the row count says whether this
            // pass made the change, so concurrent passes alert once.
            let changed = self
                .store
                .onec_set_stock_low(&self.business_id, item, low, at)
                .await?;
            match (changed, low) {
                (true, true) => report.alerted.push((item.clone(), *quantity)),
                // A first sighting of a well-stocked item is recorded, not a recovery.
                (true, false) if known.contains(item) => report.recovered.push(item.clone()),
                _ => {}
            }
        }
        for (item, quantity) in &report.alerted {
            self.alerts
                .send(&Alert {
                    kind: AlertKind::LowStock,
                    business_id: self.business_id.clone(),
                    system: self.accounting.system(),
                    since: now,
                    at: now,
                    last_error: Some(format!("{} ({quantity})", self.label(item))),
                })
                .await;
        }
        Ok(report)
    }

    /// Runs a pass every `interval` until `shutdown` turns true. A failed pass (1C down) is
    /// logged and tried again at the next tick: nothing is lost, the balance is read afresh.
    pub async fn run(
        self,
        clock: Arc<dyn Clock>,
        interval: Duration,
        lease: crate::store::LoopLease,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut rounds = LeasedRounds::new(Cadence::Tick(interval), lease, clock, shutdown);
        while let Some(now) = rounds.next().await {
            match self.run_once(now).await {
                Ok(r) if !r.alerted.is_empty() || !r.recovered.is_empty() => tracing::info!(
                    items = r.items,
                    low = r.alerted.len(),
                    recovered = r.recovered.len(),
                    "1C stock check"
                ),
                Ok(r) => tracing::debug!(items = r.items, "1C stock check"),
                Err(e) => tracing::warn!(error = %e, "1C stock check failed"),
            }
        }
    }
}
