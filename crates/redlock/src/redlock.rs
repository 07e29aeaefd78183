//! [`Redlock`]: locks over a quorum of independent masters, the public face of the crate. The
//! attempt itself is in `attempt`, the settings in `builder`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redlock_single::lease;
use redlock_single::{Connection, Inspection, Lease, LockKey, Master, Node};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::shared::Shared;
use crate::status::{MasterView, Status};

/// Locks over a quorum of independent Redis masters.
///
/// Cheap to clone: clones share the connections and the background work. See the
/// [crate docs](crate) for an overview.
///
/// ```no_run
/// # async fn demo() -> redlock::Result<()> {
/// use std::time::Duration;
/// use redlock::{Redlock, Retry};
///
/// let locks = Redlock::builder()
///     .nodes(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])
///     .ttl(Duration::from_secs(10))
///     .retry(Retry::exponential(Duration::from_millis(10), Duration::from_millis(500))
///         .deadline(Duration::from_secs(5)))
///     .connect()
///     .await?;
/// let guard = locks.acquire("invoices/42").await?;
/// println!("fence {}", guard.fence());
/// guard.release().await?;
/// locks.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Redlock<M: Master = Node> {
    shared: Arc<Shared<M>>,
}

impl<M: Master> Clone for Redlock<M> {
    fn clone(&self) -> Self {
        Redlock {
            shared: self.shared.clone(),
        }
    }
}

impl<M: Master> Redlock<M> {
    pub(crate) fn from_shared(shared: Shared<M>) -> Redlock<M> {
        Redlock {
            shared: Arc::new(shared),
        }
    }

    /// The masters, in the order given.
    pub fn masters(&self) -> impl Iterator<Item = &M> {
        self.shared.voters.masters()
    }

    /// The quorum, `N/2 + 1`.
    pub fn quorum(&self) -> usize {
        self.shared.quorum()
    }

    /// The ttl of every lock taken here.
    pub fn ttl(&self) -> Duration {
        self.shared.options.ttl
    }

    /// The restart delay this client applies to masters that may have lost locks in a restart
    /// (see `docs/operations.md`).
    pub fn restart_delay(&self) -> Duration {
        self.shared.voters.delay()
    }

    /// Asks every master whether it may vote now, reading its health where this client has
    /// not yet (see [`voters`](redlock_single::voters)), and waits for every answer: one
    /// entry per master, in order, `Ok(())` or why it does not vote. Attempts do the same but
    /// stop waiting once their outcome is known; this is for diagnostics, and for starting
    /// with every master's health read.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: readings it started go on in the background.
    pub async fn voters(&self) -> Vec<(String, std::result::Result<(), crate::Cause>)> {
        let asks = (0..self.shared.n()).map(|i| async move {
            let addr = self.shared.voters.master(i).addr().to_owned();
            (
                addr,
                self.shared
                    .voters
                    .voter(i)
                    .await
                    .map(drop)
                    .map_err(Into::into),
            )
        });
        futures::future::join_all(asks).await
    }

    /// Makes one attempt: `Ok(Some(guard))` if a quorum granted the lock, `Ok(None)` if enough
    /// masters said someone else holds it. Fails with [`Error::NoQuorum`] when too few masters
    /// answered or may vote, with [`Error::TooSlow`] when the quorum answered too late to rely
    /// on, with [`Error::WrongType`] when foreign data on too many masters rules out a quorum,
    /// and with [`Error::Closed`] after [`close`](Redlock::close).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if the future is dropped after requests were sent, a release to every
    /// master that may hold the lock follows them in the background, on the same connections.
    pub async fn try_acquire(&self, resource: &str) -> Result<Option<Guard<M>>> {
        let key = self.shared.key(resource)?;
        match self.attempt(resource, &key, 1).await {
            Ok(guard) => Ok(Some(guard)),
            Err(Error::Held { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes the lock, waiting for it per the retry policy. Fails with the last attempt's
    /// error when the policy gives up: [`Error::Held`], [`Error::NoQuorum`] or
    /// [`Error::TooSlow`]. Bad input and final errors ([`Error::WrongType`],
    /// [`Error::Closed`]) fail at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future at any point releases whatever it had taken, in the
    /// background.
    pub async fn acquire(&self, resource: &str) -> Result<Guard<M>> {
        let key = self.shared.key(resource)?;
        let key = &key;
        self.shared
            .options
            .retry
            .run(Error::is_transient, |n| self.attempt(resource, key, n))
            .await
    }

    /// Takes the lock (waiting per the retry policy) and runs `work` under it with
    /// [`lease::run_held`]: extended on every master every third of the ttl, released when
    /// `work` returns, whose output this returns. If the lock is lost first (a quorum refuses
    /// an extension, the validity runs out while the masters do not answer, or a cap set on
    /// the builder is reached), `work` is dropped at its next await point and [`Error::Lost`]
    /// is returned.
    ///
    /// ```no_run
    /// # async fn demo(locks: redlock::Redlock) -> redlock::Result<()> {
    /// let fence = locks
    ///     .with_lock("reports/daily", |lease| async move { lease.fence() })
    ///     .await?;
    /// println!("the report was written under fence {fence}");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future drops `work` and releases the lock in the background.
    pub async fn with_lock<F, Fut, T>(&self, resource: &str, work: F) -> Result<T>
    where
        F: FnOnce(Lease) -> Fut,
        Fut: Future<Output = T>,
    {
        let guard = self.acquire(resource).await?;
        lease::run_held(guard, self.shared.options.ttl, work)
            .await
            .ok_or_else(|| Error::Lost {
                resource: resource.to_owned(),
            })
    }

    /// Asks every master who holds `resource`, how long its key has left and its fencing
    /// counter; one entry per master, in order, with the master's own error if it failed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn inspect(
        &self,
        resource: &str,
    ) -> Result<Vec<(String, redlock_single::MasterResult<Inspection>)>> {
        let key = self.shared.key(resource)?;
        let voters = &self.shared.voters;
        let reads = (0..voters.len()).map(|i| {
            let key = &key;
            async move {
                let seen = match voters.connection(i).await {
                    Ok(conn) => conn.inspect(key).await,
                    Err(e) => Err(e),
                };
                (voters.master(i).addr().to_owned(), seen)
            }
        });
        Ok(futures::future::join_all(reads).await)
    }

    /// Every master's view of `resource` ([`inspect`](Redlock::inspect)) and whether a quorum
    /// of them shows one holder: for diagnostics and `redlock status`.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn status(&self, resource: &str) -> Result<Status> {
        let masters = self
            .inspect(resource)
            .await?
            .into_iter()
            .map(|(addr, seen)| MasterView { addr, seen })
            .collect();
        Ok(Status {
            resource: resource.to_owned(),
            masters,
            quorum: self.quorum(),
        })
    }

    /// Takes no new locks from now on (attempts fail with [`Error::Closed`]), and waits until
    /// the background work has an answer from the masters: the releases of failed, cancelled
    /// and dropped attempts and guards, the minority of each release round, and the answers
    /// still out when an attempt settled. Each request is bounded by the per-master timeout.
    /// Guards still held can be extended and released as before, and
    /// [`inspect`](Redlock::inspect) still reads: after `close()` it shows none of the keys
    /// whose releases were answered.
    ///
    /// Call it before the runtime ends: a process that exits without it can leave keys on the
    /// masters until their ttl ends, blocking everyone else meanwhile.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the background work goes on, and the locks stay closed.
    pub async fn close(&self) {
        self.shared.background().close().await;
    }

    async fn attempt(&self, resource: &str, key: &LockKey, attempt: u32) -> Result<Guard<M>> {
        let span = tracing::debug_span!("redlock.attempt", resource, attempt);
        // Entering a disabled span on every poll costs more than the check.
        if span.is_disabled() {
            crate::attempt::attempt(&self.shared, resource, key).await
        } else {
            crate::attempt::attempt(&self.shared, resource, key)
                .instrument(span)
                .await
        }
    }
}
