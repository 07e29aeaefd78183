//! A held lock's lease: the read half, [`Lease`], that users see (fencing token, validity, the
//! lost-lock signal), and the write half, [`LeaseWriter`], that the lock implementation keeps
//! (renewals and marking it lost); plus [`run_extended`], the loop that keeps a lock extended
//! while some work runs, and over a guard that is [`Held`], [`keep_extended`] and
//! [`run_held`] (the body of `with_lock`). For lock implementations: both lock types of this
//! workspace are built on it.
//!
//! The rules the writer keeps: an extension moves the deadline to what that extension gives,
//! earlier or later, never more; before it is sent, the deadline moves to the earliest the
//! extension could leave the keys with, so that an extension that fails, comes too late or
//! is dropped half way can only have moved it earlier. Of several extensions in flight, only
//! the one sent last sets the deadline; the others can only move it earlier.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The state shared by the halves of a lease.
#[derive(Debug)]
struct LeaseState {
    resource: String,
    fence: u64,
    deadline: Mutex<Deadline>,
    /// Wakes the `lost()` watchers when the deadline changes.
    changed: Notify,
}

#[derive(Debug)]
struct Deadline {
    /// Until when the lock is valid; `None` once it is released or lost.
    at: Option<Instant>,
    /// How many renewals were begun: the ticket of the latest.
    begun: u64,
}

/// What the holder of a lock can see of it: its fencing token, how long it is still valid, and
/// a signal when it is lost. Cheap to clone, `'static`, and read-only.
///
/// ```no_run
/// # async fn demo(lease: redlock_single::Lease) {
/// tokio::select! {
///     () = lease.lost() => eprintln!("lost {} (fence {})", lease.resource(), lease.fence()),
///     () = tokio::time::sleep(lease.validity()) => {}
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Lease {
    state: Arc<LeaseState>,
}

impl Lease {
    fn deadline(&self) -> MutexGuard<'_, Deadline> {
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
    /// acquisition of the same resource (for a quorum lock, across all its masters). Pass it to
    /// the storage you protect and have it reject writes that carry a smaller token than one it
    /// has seen.
    pub fn fence(&self) -> u64 {
        self.state.fence
    }

    /// How long the lock can still be relied on (zero once it is lost or released). This is a
    /// local estimate that already allows for the request time and clock drift.
    pub fn validity(&self) -> Duration {
        match self.deadline().at {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => Duration::ZERO,
        }
    }

    /// Whether the lock is lost or released (or its validity has run out).
    pub fn is_lost(&self) -> bool {
        self.validity().is_zero()
    }

    /// Resolves when the lock can no longer be guaranteed: an extension was refused or came
    /// too late, the validity ran out without a successful extension, or the lock was
    /// released.
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
            let Some(deadline) = self.deadline().at else {
                return;
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    // Ran out unless an extension moved the deadline in the meantime.
                    let mut d = self.deadline();
                    if d.at == Some(deadline) {
                        d.at = None;
                        drop(d);
                        self.state.changed.notify_waiters();
                        return;
                    }
                }
                () = changed => {}
            }
        }
    }
}

/// The write half of a lease, kept by the lock that holds it; see the [module docs](self).
#[derive(Debug)]
pub struct LeaseWriter {
    lease: Lease,
}

/// An extension that was begun: hand it to [`LeaseWriter::finish`] when a quorum granted it.
#[derive(Debug)]
#[must_use = "a renewal moves the deadline only when finished"]
pub struct Renewal {
    ticket: u64,
}

/// An extension on its way: from [`LeaseWriter::begin_extension`] to
/// [`LeaseWriter::finish_extension`].
#[derive(Debug)]
#[must_use = "an extension moves the deadline only when finished"]
pub struct Extending {
    renewal: Renewal,
    start: Instant,
    ttl: Duration,
    drift: Duration,
}

impl LeaseWriter {
    /// A lease of `resource` with fencing token `fence`, valid until `deadline`.
    pub fn new(resource: String, fence: u64, deadline: Instant) -> LeaseWriter {
        LeaseWriter {
            lease: Lease {
                state: Arc::new(LeaseState {
                    resource,
                    fence,
                    deadline: Mutex::new(Deadline {
                        at: Some(deadline),
                        begun: 0,
                    }),
                    changed: Notify::new(),
                }),
            },
        }
    }

    /// The read half.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    fn change(&self, f: impl FnOnce(&mut Deadline) -> bool) -> bool {
        let done = f(&mut self.lease.deadline());
        self.lease.state.changed.notify_waiters();
        done
    }

    /// Before an extension is sent: the deadline moves to `at_most` if that is earlier (the
    /// earliest the extension could leave the keys with), and the returned renewal is the
    /// latest.
    pub fn begin(&self, at_most: Instant) -> Renewal {
        let mut ticket = 0;
        self.change(|d| {
            d.begun += 1;
            ticket = d.begun;
            if let Some(at) = &mut d.at {
                *at = (*at).min(at_most);
            }
            true
        });
        Renewal { ticket }
    }

    /// After a quorum granted `renewal`: the deadline becomes `deadline` if no later renewal
    /// was begun meanwhile, and otherwise only moves earlier. Returns false, changing nothing,
    /// if the lease is lost or has run out.
    pub fn finish(&self, renewal: Renewal, deadline: Instant) -> bool {
        self.change(|d| match &mut d.at {
            Some(at) if *at > Instant::now() => {
                *at = if renewal.ticket == d.begun {
                    deadline
                } else {
                    (*at).min(deadline)
                };
                true
            }
            _ => false,
        })
    }

    /// Before an extension by `ttl` is sent, with the masters' clocks allowed `drift`: begins
    /// its renewal (see [`begin`](Self::begin)) and starts its clock. `None`, marking the lease
    /// lost, when not even an instant reply would leave any validity: then nothing is sent.
    pub fn begin_extension(&self, ttl: Duration, drift: Duration) -> Option<Extending> {
        let start = Instant::now();
        let Some(most) = crate::protocol::validity::validity(ttl, Duration::ZERO, drift) else {
            self.mark_lost();
            return None;
        };
        Some(Extending {
            renewal: self.begin(start + most),
            start,
            ttl,
            drift,
        })
    }

    /// After the masters granted `extension`: the deadline becomes what it leaves (see
    /// [`finish`](Self::finish)). False, marking the lease lost, when it came too late to rely
    /// on or the lease was lost meanwhile.
    pub fn finish_extension(&self, extension: Extending) -> bool {
        let Extending {
            renewal,
            start,
            ttl,
            drift,
        } = extension;
        let done = crate::protocol::validity::validity(ttl, start.elapsed(), drift)
            .is_some_and(|left| self.finish(renewal, start + left));
        if !done {
            self.mark_lost();
        }
        done
    }

    /// Marks the lock lost (or released): `lost()` resolves and the validity reads zero.
    pub fn mark_lost(&self) {
        self.change(|d| {
            d.at = None;
            true
        });
    }
}

/// How one extension went, for [`run_extended`].
#[derive(Debug)]
pub enum Extension {
    /// Extended.
    Done,
    /// Refused: the lock is lost.
    Lost,
    /// No more extensions are allowed (a cap): the lock runs out at its deadline.
    Capped,
    /// Failed for now (a master did not answer): try again soon. The error says why, for the
    /// log.
    Failed(BoxError),
}

/// A held lock as the extension loop sees it: the guards of both lock types, so that keeping
/// a lock extended ([`keep_extended`]) and running work under it ([`run_held`]) are written
/// once. For lock implementations.
pub trait Held: std::ops::Deref<Target = Lease> + Sized {
    /// Extends the lock by `ttl` once, and says how that went.
    fn extend_once(&self, ttl: Duration) -> impl Future<Output = Extension> + Send;

    /// Releases the lock; why not, when that failed.
    fn release_now(self) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// An error of any lock type, for the log.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs `work` while extending `held` by `ttl` every third of the ttl: `Some(output)` when
/// `work` finished, `None` as soon as the lock is lost (then `work` is dropped at its next
/// await point). An extension in flight when `work` ends is awaited first, so that a release
/// that follows is not raced by it. See [`run_extended`].
///
/// # Cancel safety
///
/// Dropping it drops `work` and the extension in flight; the lock stays held until released
/// or its validity ends.
pub async fn keep_extended<H: Held, T>(
    held: &H,
    work: impl Future<Output = T>,
    ttl: Duration,
) -> Option<T> {
    run_extended(held, || held.extend_once(ttl), work, ttl).await
}

/// The body of every `with_lock`: runs `work` (given the lease) under `held`, kept extended by
/// `ttl`, then releases it and returns `Some(output)`; `None` when the lock was lost first (the
/// guard is dropped then, which releases it in the background). A failed release at the end is
/// logged, not returned: the work is done, and the ttl ends the lock.
///
/// # Cancel safety
///
/// Dropping it drops `work` and the guard, which releases the lock in the background.
pub async fn run_held<H, F, Fut, T>(held: H, ttl: Duration, work: F) -> Option<T>
where
    H: Held,
    F: FnOnce(Lease) -> Fut,
    Fut: Future<Output = T>,
{
    let work = work(Lease::clone(&held));
    let out = keep_extended(&held, work, ttl).await?;
    let resource = held.resource().to_owned();
    if let Err(e) = held.release_now().await {
        tracing::warn!(resource, error = %e, "release after with_lock failed");
    }
    Some(out)
}

/// The loop behind `keep_extended` of both guard types: runs `work` while calling `extend`
/// every third of `ttl` (a tenth after a failure), returns `Some(output)` when `work` ends and
/// `None` as soon as `lease` is lost. An extension in flight when `work` ends is awaited first,
/// so that a release that follows is not raced by it.
///
/// # Cancel safety
///
/// Dropping it drops `work` and the extension in flight, if any.
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

    fn watch(lease: &Lease) -> tokio::task::JoinHandle<()> {
        let watched = lease.clone();
        tokio::spawn(async move { watched.lost().await })
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[tokio::test(start_paused = true)]
    async fn lost_follows_renewals_and_fires_at_the_last_deadline() {
        let start = Instant::now();
        let writer = LeaseWriter::new("r".into(), 1, start + secs(1.0));
        let watcher = watch(writer.lease());
        tokio::task::yield_now().await;

        let r = writer.begin(start + secs(3.0));
        assert!(writer.finish(r, start + secs(3.0)));
        // Past the first deadline: the renewal moved it, so nothing is lost yet.
        assert!(!lost_by(&watcher, start + secs(2.0)).await);
        // Past the last deadline: lost, and a renewal can no longer revive it.
        assert!(lost_by(&watcher, start + secs(3.1)).await);
        assert!(writer.lease().is_lost());
        let r = writer.begin(start + secs(10.0));
        assert!(!writer.finish(r, start + secs(10.0)));
        assert_eq!(writer.lease().validity(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_extension_moves_the_deadline_earlier_at_once() {
        let start = Instant::now();
        let writer = LeaseWriter::new("r".into(), 1, start + secs(10.0));
        let watcher = watch(writer.lease());
        tokio::task::yield_now().await;
        // Sent: from now on the keys may expire half a second from now.
        let r = writer.begin(start + secs(0.5));
        assert!(writer.lease().validity() <= secs(0.5));
        // Whether or not it is ever granted, the lock is lost at the earlier deadline.
        assert!(lost_by(&watcher, start + secs(0.6)).await);
        assert!(!writer.finish(r, start + secs(0.4)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_granted_extension_sets_the_deadline_it_gives_even_if_earlier() {
        let start = Instant::now();
        let writer = LeaseWriter::new("r".into(), 1, start + secs(10.0));
        let r = writer.begin(start + secs(5.0));
        assert!(writer.finish(r, start + secs(4.0)));
        assert_eq!(writer.lease().validity(), secs(4.0));
    }

    #[tokio::test(start_paused = true)]
    async fn of_two_extensions_in_flight_the_one_sent_last_decides() {
        let start = Instant::now();
        let writer = LeaseWriter::new("r".into(), 1, start + secs(10.0));
        // A long extension, then a short one sent after it; the long one's answer comes last.
        let long = writer.begin(start + secs(30.0));
        let short = writer.begin(start + secs(1.0));
        assert!(writer.finish(short, start + secs(0.9)));
        assert!(writer.finish(long, start + secs(29.0)));
        // The masters applied the short one last: the long grant must not move it later.
        assert_eq!(writer.lease().validity(), secs(0.9));
        // The other order: the long one sent last sets it.
        let short = writer.begin(start + secs(0.5));
        let long = writer.begin(start + secs(20.0));
        assert!(writer.finish(short, start + secs(0.4)));
        assert!(writer.finish(long, start + secs(19.0)));
        assert_eq!(writer.lease().validity(), secs(19.0));
    }

    #[tokio::test(start_paused = true)]
    async fn mark_lost_wakes_a_watcher_and_a_later_watcher_returns_at_once() {
        let writer = LeaseWriter::new("r".into(), 1, Instant::now() + secs(60.0));
        let watcher = watch(writer.lease());
        tokio::task::yield_now().await;
        assert!(!watcher.is_finished());
        writer.mark_lost();
        // No time passes: only the wake-up can finish the watcher.
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        assert!(watcher.is_finished(), "mark_lost did not wake the watcher");
        assert!(writer.lease().is_lost());
        // Nothing to wait for any more.
        tokio::time::timeout(Duration::from_millis(1), writer.lease().lost())
            .await
            .expect("lost() of a lost lease returns at once");
    }

    /// A guard of a lock on nothing: its extensions renew the lease for the ttl while `grant`
    /// says so and lose it otherwise; its release is counted, and fails.
    struct Fake {
        writer: LeaseWriter,
        grant: bool,
        released: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl std::ops::Deref for Fake {
        type Target = Lease;

        fn deref(&self) -> &Lease {
            self.writer.lease()
        }
    }

    impl Held for Fake {
        async fn extend_once(&self, ttl: Duration) -> Extension {
            if !self.grant {
                self.writer.mark_lost();
                return Extension::Lost;
            }
            let until = Instant::now() + ttl;
            let r = self.writer.begin(until);
            assert!(self.writer.finish(r, until));
            Extension::Done
        }

        async fn release_now(self) -> Result<(), BoxError> {
            self.released
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err("the master refused".into())
        }
    }

    fn fake(grant: bool) -> (Fake, Arc<std::sync::atomic::AtomicUsize>) {
        let released = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writer = LeaseWriter::new("r".into(), 7, Instant::now() + secs(3.0));
        let f = Fake {
            writer,
            grant,
            released: released.clone(),
        };
        (f, released)
    }

    #[tokio::test(start_paused = true)]
    async fn run_held_outlives_the_ttl_by_extending_then_releases_once_even_if_that_fails() {
        let (held, released) = fake(true);
        // Three ttls long: only the extensions keep the lease alive that long.
        let out = run_held(held, secs(3.0), |lease| async move {
            tokio::time::sleep(secs(9.0)).await;
            assert!(!lease.is_lost());
            lease.fence()
        })
        .await;
        assert_eq!(out, Some(7));
        assert_eq!(released.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn run_held_drops_the_work_when_an_extension_is_refused_and_does_not_release() {
        let (held, released) = fake(false);
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = finished.clone();
        let out = run_held(held, secs(3.0), |_| async move {
            tokio::time::sleep(secs(9.0)).await;
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
        .await;
        assert_eq!(out, None);
        assert!(!finished.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(released.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
