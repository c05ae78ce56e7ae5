//! Requests sent per endpoint of a vendor, retries included, counted so that a benchmark or a
//! test can say where calls go.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

/// The endpoints of one vendor, each counted apart.
pub trait CountedEndpoint: Copy + Eq + std::fmt::Debug + 'static {
    /// Every endpoint, in the order their counters are kept.
    const ALL: &'static [Self];

    /// The endpoint as [`CallCounters::snapshot`] names it.
    fn name(self) -> &'static str;
}

/// HTTP requests sent per endpoint of `E`.
#[derive(Debug)]
pub struct CallCounters<E: CountedEndpoint> {
    counts: Vec<AtomicU64>,
    endpoints: PhantomData<fn() -> E>,
}

impl<E: CountedEndpoint> Default for CallCounters<E> {
    fn default() -> Self {
        CallCounters {
            counts: E::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            endpoints: PhantomData,
        }
    }
}

impl<E: CountedEndpoint> CallCounters<E> {
    /// One more request to `endpoint`.
    pub fn hit(&self, endpoint: E) {
        self.counts[Self::index(endpoint)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, endpoint: E) -> u64 {
        self.counts[Self::index(endpoint)].load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Non-zero counters by endpoint name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        E::ALL
            .iter()
            .map(|e| (e.name(), self.get(*e)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    fn index(endpoint: E) -> usize {
        E::ALL
            .iter()
            .position(|e| *e == endpoint)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Api {
        Read,
        Write,
    }

    impl CountedEndpoint for Api {
        const ALL: &'static [Api] = &[Api::Read, Api::Write];

        fn name(self) -> &'static str {
            match self {
                Api::Read => "read",
                Api::Write => "write",
            }
        }
    }

    #[test]
    fn each_endpoint_counts_apart_and_the_snapshot_names_the_used_ones() {
        let calls = CallCounters::<Api>::default();
        calls.hit(Api::Write);
        calls.hit(Api::Write);
        assert_eq!((calls.get(Api::Read), calls.get(Api::Write)), (0, 2));
        assert_eq!(calls.total(), 2);
        assert_eq!(calls.snapshot(), BTreeMap::from([("write", 2)]));
    }
}
