//! Free days and slots, reused for `slot_cache_ttl_secs` and forgotten on writes and webhooks.

use super::*;

// ---------------------------------------------------------------------------------------------
// Slot cache
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct SlotKey {
    pub(super) master: String,
    pub(super) service: String,
    pub(super) day: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct DaysKey {
    /// `"0"` for any master, the API's own spelling.
    pub(super) master: String,
    pub(super) service: String,
    pub(super) from: NaiveDate,
    pub(super) to: NaiveDate,
}

/// Catalogue and availability answers reused for a short time, so ten clients browsing the same
/// day cost the salon's rate limit one request, not ten. Keyed within one company (one client
/// instance per company).
pub(super) struct Cache {
    pub(super) ttl: Duration,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) slots: DashMap<SlotKey, (DateTime<Utc>, Vec<Slot>)>,
    pub(super) days: DashMap<DaysKey, (DateTime<Utc>, Vec<NaiveDate>)>,
    pub(super) services: DashMap<(), (DateTime<Utc>, Vec<Service>)>,
    pub(super) masters: DashMap<String, (DateTime<Utc>, Vec<Master>)>,
}

impl Cache {
    pub(super) fn on(&self) -> bool {
        self.ttl > Duration::zero()
    }

    pub(super) fn fresh(&self, stored: DateTime<Utc>) -> bool {
        self.on() && self.clock.now() < stored + self.ttl
    }

    pub(super) fn get<K: std::hash::Hash + Eq, V: Clone>(
        &self,
        map: &DashMap<K, (DateTime<Utc>, V)>,
        key: &K,
    ) -> Option<V> {
        let hit = map.get(key)?;
        self.fresh(hit.0).then(|| hit.1.clone())
    }

    pub(super) fn put<K: std::hash::Hash + Eq, V>(
        &self,
        map: &DashMap<K, (DateTime<Utc>, V)>,
        key: K,
        v: V,
    ) {
        if self.on() {
            map.insert(key, (self.clock.now(), v));
        }
    }

    pub(super) fn invalidate_day(&self, master: &str, day: NaiveDate) {
        self.slots
            .retain(|k, _| !(k.master == master && k.day == day));
        self.days.retain(|k, _| {
            !((k.master == master || k.master == "0") && k.from <= day && day <= k.to)
        });
    }

    pub(super) fn invalidate_master(&self, master: &str) {
        self.slots.retain(|k, _| k.master != master);
        self.days
            .retain(|k, _| !(k.master == master || k.master == "0"));
    }
}
