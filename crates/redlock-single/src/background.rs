//! [`Background`], the owner of a lock's background work (releases after failed or cancelled
//! attempts, releases of dropped guards, the minority of a release round, the drain of late
//! answers, the restart guard's readings), which `close()` waits for.
//!
//! Every such task is made of requests bounded by the per-request timeout, so waiting for all of
//! them is bounded too. A process that exits without `close()` ends them where they stand: the
//! keys they were to remove stay until their ttl. And [`DropGuard`], which undoes what an
//! attempt may have taken when the attempt is dropped.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::task::TaskTracker;

/// The background work of one lock (and its clones); cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Background {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: TaskTracker,
    closed: AtomicBool,
}

impl Background {
    /// Runs `task` in the background if a tokio runtime is running (otherwise it is dropped:
    /// with no runtime, nothing could run it).
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            self.inner.tasks.spawn_on(task, &handle);
        }
    }

    /// Whether [`close`](Background::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Marks the lock closed and waits until every task spawned so far, and every task spawned
    /// while it waits, has finished.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the tasks go on; the lock stays closed.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// How many tasks are running.
    pub fn len(&self) -> usize {
        self.inner.tasks.len()
    }

    /// Whether no task is running.
    pub fn is_empty(&self) -> bool {
        self.inner.tasks.is_empty()
    }
}

/// Runs a closure when dropped, unless [disarmed](DropGuard::disarm) first: the undo of an
/// attempt that may have taken a lock (the shape of tokio-util's and deadpool's drop guards).
#[must_use = "dropping the guard runs its closure at once"]
pub struct DropGuard<F: FnOnce()> {
    run: Option<F>,
}

impl<F: FnOnce()> DropGuard<F> {
    /// A guard that runs `run` when dropped.
    pub fn new(run: F) -> DropGuard<F> {
        DropGuard { run: Some(run) }
    }

    /// Drops the guard without running its closure.
    pub fn disarm(mut self) {
        self.run = None;
    }
}

impl<F: FnOnce()> Drop for DropGuard<F> {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            run();
        }
    }
}

impl<F: FnOnce()> std::fmt::Debug for DropGuard<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DropGuard")
            .field("armed", &self.run.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn close_waits_for_tasks_spawned_before_and_while_it_waits() {
        let bg = Background::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = Arc::new(AtomicBool::new(false));
        let (d, later) = (done.clone(), bg.clone());
        bg.spawn(async move {
            let _ = rx.await;
            // Spawned after close() began: waited for too.
            later.spawn(async move { d.store(true, Ordering::SeqCst) });
        });
        let mut closing = Box::pin(bg.close());
        assert!(futures::poll!(closing.as_mut()).is_pending());
        assert!(bg.is_closed());
        tx.send(()).expect("task waits");
        closing.await;
        assert!(done.load(Ordering::SeqCst));
        assert!(bg.is_empty());
    }
}
