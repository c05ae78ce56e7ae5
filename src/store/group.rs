//! What group commit and group reads share: callers hand their work to a queue and wait for
//! its answer; whoever finds no batch under way leads the next one, which takes the work queued
//! so far. One statement (or transaction) then serves many callers, and none waits longer than
//! the batch under way and its own.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::StoreError;

/// Work handed over and not yet done, and who runs the next batch.
pub(super) struct Group<T> {
    pending: Mutex<Vec<T>>,
    /// Held by the caller whose task runs the current batch.
    pub(super) leader: tokio::sync::Mutex<()>,
}

impl<T> Default for Group<T> {
    fn default() -> Self {
        Group {
            pending: Mutex::new(Vec::new()),
            leader: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T> std::fmt::Debug for Group<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("pending", &self.lock().len())
            .finish()
    }
}

impl<T> Group<T> {
    pub(super) fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Send + 'static> Group<T> {
    /// Queues `work` and returns what `answer` receives for it. While no answer has come, the
    /// caller takes its turn leading: `take` picks a batch from the queue and `run` serves it
    /// in a task of its own, so a caller that goes away mid-batch cannot take the answers of
    /// the others with it. `lost` is the error of a batch that ended without answering.
    pub(super) async fn wait<R, Fut>(
        &self,
        work: T,
        mut answer: oneshot::Receiver<Result<R, StoreError>>,
        lost: fn() -> StoreError,
        take: impl Fn(&mut Vec<T>) -> Vec<T>,
        run: impl Fn(Vec<T>) -> Fut,
    ) -> Result<R, StoreError>
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.lock().push(work);
        loop {
            let leader = tokio::select! {
                biased;
                r = &mut answer => return r.unwrap_or_else(|_| Err(lost())),
                g = self.leader.lock() => g,
            };
            if let Ok(r) = answer.try_recv() {
                return r;
            }
            let batch = take(&mut self.lock());
            if !batch.is_empty() {
                let _ = tokio::spawn(run(batch)).await;
            }
            drop(leader);
        }
    }
}
