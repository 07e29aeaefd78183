//! [`Guard`], a held lock, and [`Lease`], the read-only view of it that `with_lock` hands to the
//! user's code: fencing token, validity and the lost-lock signal.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::key::{LockKey, Token};
use crate::master::Master;
use crate::validity::{drift, validity};

/// The state shared by a guard and its leases.
#[derive(Debug)]
struct LeaseState {
    resource: String,
    fence: u64,
    /// The instant until which the lock is valid; `None` once it is released or lost.
    /// Only moves forward while held.
    deadline: Mutex<Option<Instant>>,
    /// Wakes the `lost()` watchers when the deadline changes. (A `watch` channel did this
    /// before: made and dropped with every guard, it cost an acquire + release cycle about
    /// 700 instructions more, most of them waking no one on drop.)
    changed: Notify,
}

/// A read-only view of a held lock: its fencing token, how long it stays valid and a signal for
/// when it is lost. Cheap to clone and `'static`, so it can go into the tasks that do the work.
#[derive(Debug, Clone)]
pub struct Lease {
    state: Arc<LeaseState>,
}

impl Lease {
    /// A lease valid until `deadline`. For lock implementations (the quorum crate); users get
    /// leases from guards.
    #[doc(hidden)]
    pub fn new(resource: String, fence: u64, deadline: Instant) -> Lease {
        Lease {
            state: Arc::new(LeaseState {
                resource,
                fence,
                deadline: Mutex::new(Some(deadline)),
                changed: Notify::new(),
            }),
        }
    }

    fn deadline(&self) -> MutexGuard<'_, Option<Instant>> {
        self.state
            .deadline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The resource this lock is for.
    pub fn resource(&self) -> &str {
        &self.state.resource
    }

    /// The fencing token of this acquisition: strictly greater than the token of every earlier
    /// acquisition of the same resource. Pass it to the storage you protect and have it reject
    /// writes that carry a smaller token than one it has seen.
    pub fn fence(&self) -> u64 {
        self.state.fence
    }

    /// How long the lock can still be relied on (zero once it is lost or released). This is a
    /// local estimate that already allows for the request time and clock drift.
    pub fn validity(&self) -> Duration {
        let deadline = *self.deadline();
        match deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => Duration::ZERO,
        }
    }

    /// Whether the lock is lost or released (or its validity has run out).
    pub fn is_lost(&self) -> bool {
        self.validity().is_zero()
    }

    /// Resolves when the lock can no longer be guaranteed: an extension was refused, the
    /// validity ran out without a successful extension, or the lock was released.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only watches; dropping it changes nothing.
    pub async fn lost(&self) {
        loop {
            let mut changed = pin!(self.state.changed.notified());
            // Registered before the deadline is read, so that a change right after the
            // reading still wakes this watcher.
            changed.as_mut().enable();
            let Some(deadline) = *self.deadline() else {
                return;
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    // Ran out unless an extension moved the deadline in the meantime.
                    if *self.deadline() == Some(deadline) {
                        self.mark_lost();
                        return;
                    }
                }
                () = changed => {}
            }
        }
    }

    /// Marks the lock lost (or released): `lost()` resolves and the validity reads zero.
    #[doc(hidden)]
    pub fn mark_lost(&self) {
        *self.deadline() = None;
        self.state.changed.notify_waiters();
    }

    /// Moves the deadline to `deadline` unless the lock is already lost. Returns false if lost.
    #[doc(hidden)]
    pub fn renew(&self, deadline: Instant) -> bool {
        {
            let mut d = self.deadline();
            match &mut *d {
                Some(old) if *old > Instant::now() => *old = deadline.max(*old),
                _ => return false,
            }
        }
        self.state.changed.notify_waiters();
        true
    }
}

/// How one extension went, for [`run_extended`].
#[doc(hidden)]
#[derive(Debug)]
pub enum Extension {
    /// Extended.
    Done,
    /// Refused: the lock is lost.
    Lost,
    /// No more extensions are allowed (a cap): the lock runs out at its deadline.
    Capped,
    /// Failed for now (a master did not answer): try again soon.
    Failed(String),
}

/// The loop behind `keep_extended` of both guard types: runs `work` while calling `extend`
/// every third of `ttl` (a tenth after a failure), returns `Some(output)` when `work` ends and
/// `None` as soon as `lease` is lost. An extension in flight when `work` ends is awaited first,
/// so that a release that follows is not raced by it.
#[doc(hidden)]
pub async fn run_extended<T, F, Fut>(
    lease: &Lease,
    extend: F,
    work: impl Future<Output = T>,
    ttl: Duration,
) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Extension>,
{
    let mut work = pin!(work);
    let mut wait = ttl / 3;
    loop {
        tokio::select! {
            out = &mut work => return Some(out),
            () = lease.lost() => return None,
            () = tokio::time::sleep(wait) => {}
        }
        let mut extension = pin!(extend());
        let outcome = tokio::select! {
            r = &mut extension => r,
            out = &mut work => {
                let _ = extension.await;
                return Some(out);
            }
            () = lease.lost() => return None,
        };
        wait = match outcome {
            Extension::Done => ttl / 3,
            Extension::Lost => return None,
            Extension::Capped => {
                // No more extensions: the work goes on until the validity runs out.
                tokio::select! {
                    out = &mut work => return Some(out),
                    () = lease.lost() => return None,
                }
            }
            Extension::Failed(e) => {
                // The lock stays valid until its deadline: try again soon.
                tracing::warn!(resource = lease.resource(), error = %e, "extension failed");
                (ttl / 10).max(Duration::from_millis(1))
            }
        };
    }
}

/// A held lock. Dropping it without [`release`](Guard::release) releases it in the background
/// when a tokio runtime is running; without one, the key expires at the end of its ttl, which is
/// always the backstop.
///
/// ```no_run
/// # async fn demo(lock: redlock_single::Lock) -> redlock_single::Result<()> {
/// let guard = lock.acquire("invoices/42").await?;
/// println!("fence {} valid for {:?}", guard.fence(), guard.validity());
/// guard.extend(std::time::Duration::from_secs(10)).await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[must_use = "dropping the guard releases the lock"]
#[derive(Debug)]
pub struct Guard<M: Master = crate::Node> {
    lease: Lease,
    master: Arc<M>,
    key: LockKey,
    token: Token,
    drift_factor: f64,
    /// Cleared by `release`, so that drop does nothing more.
    armed: bool,
}

impl<M: Master> Guard<M> {
    pub(crate) fn new(
        master: Arc<M>,
        resource: String,
        key: LockKey,
        token: Token,
        fence: u64,
        deadline: Instant,
        drift_factor: f64,
    ) -> Guard<M> {
        Guard {
            lease: Lease::new(resource, fence, deadline),
            master,
            key,
            token,
            drift_factor,
            armed: true,
        }
    }

    /// The resource this lock is for.
    pub fn resource(&self) -> &str {
        self.lease.resource()
    }

    /// The fencing token; see [`Lease::fence`].
    pub fn fence(&self) -> u64 {
        self.lease.fence()
    }

    /// How long the lock can still be relied on; see [`Lease::validity`].
    pub fn validity(&self) -> Duration {
        self.lease.validity()
    }

    /// Whether the lock is lost, released or past its validity.
    pub fn is_lost(&self) -> bool {
        self.lease.is_lost()
    }

    /// Resolves when the lock can no longer be guaranteed; see [`Lease::lost`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn lost(&self) {
        self.lease.lost().await;
    }

    /// A read-only view of this lock that can be cloned and moved into other tasks.
    pub fn lease(&self) -> Lease {
        self.lease.clone()
    }

    /// The keys this lock uses on the master.
    pub fn key(&self) -> &LockKey {
        &self.key
    }

    /// Asks the master how long the key has left. `Ok(None)` when the key no longer holds this
    /// lock's token (it expired, or was deleted behind our back).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn remaining(&self) -> Result<Option<Duration>> {
        let seen = self.master.inspect(&self.key).await?;
        Ok(match seen.holder {
            Some(h) if h.is(&self.token) => seen.ttl,
            _ => None,
        })
    }

    /// Sets the lock's expiry to `ttl` from now, if it is still held, and moves the validity.
    ///
    /// Fails with [`Error::Lost`] (and marks the lock lost) when the key no longer holds our
    /// token or the validity had already run out; with a master error otherwise, in which case
    /// the lock stays valid until its current deadline.
    ///
    /// # Cancel safety
    ///
    /// The request may still reach the master after the future is dropped; the validity is only
    /// moved by a completed call, so dropping it never overstates the validity.
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        if let Err(msg) = crate::validity::check_ttl(ttl) {
            return Err(Error::Config(format!("extend: {msg}")));
        }
        if self.is_lost() {
            return Err(self.lost_error());
        }
        let start = Instant::now();
        if !self.master.extend(&self.key, &self.token, ttl).await? {
            self.lease.mark_lost();
            return Err(self.lost_error());
        }
        let left = validity(ttl, start.elapsed(), drift(ttl, self.drift_factor));
        match left {
            Some(left) if self.lease.renew(start + left) => Ok(()),
            // Granted too late to rely on, or lost while the request was in flight.
            _ => Err(self.lost_error()),
        }
    }

    /// Releases the lock: deletes the key if it still holds our token.
    ///
    /// Fails with [`Error::Lost`] if the key no longer held our token (the lock had expired or
    /// was taken away), and with a master error if the master could not be reached; the key then
    /// expires at the end of its ttl.
    ///
    /// # Cancel safety
    ///
    /// The lock counts as released as soon as this is called; if the future is dropped before
    /// the master answered, the request may still reach it, and otherwise the ttl ends the lock.
    pub async fn release(mut self) -> Result<()> {
        self.armed = false;
        self.lease.mark_lost();
        if self.master.release(&self.key, &self.token).await? {
            Ok(())
        } else {
            Err(self.lost_error())
        }
    }

    /// Runs `work` while extending the lock by `ttl` every third of the ttl: `Some(output)`
    /// when `work` finished, `None` as soon as the lock is lost (then `work` is dropped at its
    /// next await point). An extension in flight when `work` ends is awaited first. The
    /// building block of [`Lock::with_lock`](crate::Lock::with_lock), for callers that need
    /// the guard afterwards.
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops `work`; the lock stays held until released or its validity ends.
    pub async fn keep_extended<T>(
        &self,
        work: impl Future<Output = T>,
        ttl: Duration,
    ) -> Option<T> {
        let extend = || async {
            match self.extend(ttl).await {
                Ok(()) => Extension::Done,
                Err(Error::Lost { .. }) => Extension::Lost,
                Err(e) => Extension::Failed(e.to_string()),
            }
        };
        run_extended(&self.lease, extend, work, ttl).await
    }

    fn lost_error(&self) -> Error {
        Error::Lost {
            resource: self.resource().to_owned(),
        }
    }
}

impl<M: Master> Drop for Guard<M> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.lease.mark_lost();
        spawn_release(self.master.clone(), self.key.clone(), self.token.clone());
    }
}

/// Releases a lock in the background, if a tokio runtime is running; the ttl is the backstop.
pub(crate) fn spawn_release<M: Master>(master: Arc<M>, key: LockKey, token: Token) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            if let Err(e) = master.release(&key, &token).await {
                tracing::debug!(master = master.addr(), key = key.key(), error = %e,
                    "background release failed; the key expires at the end of its ttl");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `watcher` (a task awaiting a lease's `lost()` since before) has finished once
    /// the paused clock reaches `at`.
    async fn lost_by(watcher: &tokio::task::JoinHandle<()>, at: Instant) -> bool {
        tokio::time::sleep_until(at).await;
        // Lets the watcher run after the clock moved.
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        watcher.is_finished()
    }

    #[tokio::test(start_paused = true)]
    async fn lost_follows_renewals_and_fires_at_the_last_deadline() {
        let start = Instant::now();
        let lease = Lease::new("r".into(), 1, start + Duration::from_secs(1));
        let watched = lease.clone();
        let watcher = tokio::spawn(async move { watched.lost().await });
        tokio::task::yield_now().await;

        assert!(lease.renew(start + Duration::from_secs(3)));
        // Past the first deadline: the renewal moved it, so nothing is lost yet.
        assert!(!lost_by(&watcher, start + Duration::from_secs(2)).await);
        assert!(!lease.is_lost());
        // An earlier deadline never moves it back.
        assert!(lease.renew(start + Duration::from_millis(2500)));
        assert!(!lost_by(&watcher, start + Duration::from_millis(2900)).await);
        // Past the last deadline: lost, and a renewal can no longer revive it.
        assert!(lost_by(&watcher, start + Duration::from_millis(3100)).await);
        assert!(lease.is_lost());
        assert!(!lease.renew(start + Duration::from_secs(10)));
        assert_eq!(lease.validity(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn mark_lost_wakes_a_watcher_and_a_later_watcher_returns_at_once() {
        let lease = Lease::new("r".into(), 1, Instant::now() + Duration::from_secs(60));
        let watched = lease.clone();
        let watcher = tokio::spawn(async move { watched.lost().await });
        tokio::task::yield_now().await;
        assert!(!watcher.is_finished());
        lease.mark_lost();
        // No time passes: only the wake-up can finish the watcher.
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        assert!(watcher.is_finished(), "mark_lost did not wake the watcher");
        assert!(lease.is_lost());
        // Nothing to wait for any more.
        tokio::time::timeout(Duration::from_millis(1), lease.lost())
            .await
            .expect("lost() of a lost lease returns at once");
    }
}
