//! [`Guard`]: a lock held on a quorum of masters, with extension, release and the lost signal.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use redlock_single::lease::{self, BoxError, Extension, Held, Lease, LeaseWriter};
use redlock_single::validity::drift;
use redlock_single::{Connection, LockKey, Master, Node, Token};
use tokio::time::Instant;

use crate::error::{Cause, Error, Failures, MasterFailure, Result};
use crate::round::Requests;
use crate::shared::Shared;
use crate::tally::{Tally, Verdict};

/// A lock held on a quorum of masters. Dropping it without [`release`](Guard::release) releases
/// it in the background when a tokio runtime is running (and
/// [`Redlock::close`](crate::Redlock::close) waits for that); the ttl is always the backstop.
///
/// ```no_run
/// # async fn demo(locks: redlock::Redlock) -> redlock::Result<()> {
/// let guard = locks.acquire("invoices/42").await?;
/// println!("fence {} valid for {:?}", guard.fence(), guard.validity());
/// guard.extend(std::time::Duration::from_secs(10)).await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[must_use = "dropping the guard releases the lock"]
#[derive(Debug)]
pub struct Guard<M: Master = Node> {
    lease: LeaseWriter,
    shared: Arc<Shared<M>>,
    key: LockKey,
    token: Token,
    acquired_at: Instant,
    extensions: AtomicU32,
    /// Cleared by `release`, which consumes the guard, so that its drop does nothing more.
    armed: bool,
}

/// The count of one round sent to every master.
struct Count {
    tally: Tally,
    failures: Vec<MasterFailure>,
}

impl<M: Master> Guard<M> {
    pub(crate) fn new(
        shared: Arc<Shared<M>>,
        lease: LeaseWriter,
        key: LockKey,
        token: Token,
        acquired_at: Instant,
    ) -> Guard<M> {
        Guard {
            lease,
            shared,
            key,
            token,
            acquired_at,
            extensions: AtomicU32::new(0),
            armed: true,
        }
    }

    /// A read-only view of this lock (fence, validity, lost signal) for other tasks.
    pub fn lease(&self) -> Lease {
        self.lease.lease().clone()
    }

    /// The keys this lock uses on every master.
    pub fn key(&self) -> &LockKey {
        &self.key
    }

    /// The ttl left on the quorum: the time until fewer than a quorum of masters still hold
    /// this lock's key, as the masters report it. `Ok(None)` when fewer than a quorum hold it.
    /// Fails with [`Error::NoQuorum`] when fewer than a quorum answered.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn remaining(&self) -> Result<Option<Duration>> {
        let s = &self.shared;
        let reads = (0..s.n()).map(|i| async move {
            match s.voters.connection(i).await {
                Ok(conn) => conn.inspect(&self.key).await,
                Err(e) => Err(e),
            }
        });
        let mut ttls = Vec::new();
        let mut failures = Vec::new();
        for (i, r) in futures::future::join_all(reads)
            .await
            .into_iter()
            .enumerate()
        {
            match r {
                Ok(seen) => {
                    if let (Some(h), Some(ttl)) = (seen.holder, seen.ttl) {
                        if h.is(&self.token) {
                            ttls.push(ttl);
                        }
                    }
                }
                Err(e) => failures.push(s.failure(i, Cause::Failed(e))),
            }
        }
        let q = s.quorum();
        if s.n() - failures.len() < q {
            return Err(Error::NoQuorum {
                resource: self.resource().to_owned(),
                needed: q,
                masters: s.n(),
                failures: Failures(failures),
            });
        }
        ttls.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ttls.get(q - 1).copied())
    }

    /// Sets the lock's expiry to `ttl` from now on every master that still holds it; succeeds
    /// when a quorum did so within the remaining validity, and the validity becomes what this
    /// extension gives, `ttl − elapsed − drift`, even if that is shorter than before.
    ///
    /// Fails with [`Error::Lost`] (and marks the lock lost) when so many masters refused that
    /// no quorum was possible, when the validity ran out first, or when `ttl` is too short to
    /// leave any validity; with [`Error::Limit`] when a cap set on the builder is reached; with
    /// [`Error::NoQuorum`] when too few masters answered. From the moment the requests are sent,
    /// the validity is at most what `ttl` could leave, so an extension that fails or is dropped
    /// can only have made it shorter.
    ///
    /// # Cancel safety
    ///
    /// The requests may still reach the masters after the future is dropped; the validity
    /// already allows for that.
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        let s = &self.shared;
        if let Err(msg) = redlock_single::validity::check_ttl(ttl) {
            return Err(Error::Config(format!("extend: {msg}")));
        }
        if self.is_lost() {
            return Err(self.lost_error());
        }
        if s.max_extensions
            .is_some_and(|max| self.extensions.load(Ordering::Relaxed) >= max)
        {
            return Err(self.limit_error("the cap on extensions"));
        }
        if s.max_hold
            .is_some_and(|max| self.acquired_at.elapsed().saturating_add(ttl) > max)
        {
            return Err(self.limit_error("the cap on the total hold time"));
        }
        s.voters.use_ttl(ttl).await;
        let Some(extension) = self
            .lease
            .begin_extension(ttl, drift(ttl, s.options.drift_factor))
        else {
            // Not even instant replies would leave any validity: nothing is sent.
            return Err(self.lost_error());
        };
        let round =
            self.round(move |conn, key, token| async move { conn.extend(&key, &token, ttl).await });
        // A quorum must answer within what is left of the validity, or the lock is gone anyway.
        let Ok((round, _)) = tokio::time::timeout(self.validity(), round).await else {
            self.lease.mark_lost();
            return Err(self.lost_error());
        };
        match round.tally.verdict() {
            Verdict::Reached => {}
            _ if round.tally.refusals_decide() => {
                self.lease.mark_lost();
                return Err(self.lost_error());
            }
            _ => {
                return Err(Error::NoQuorum {
                    resource: self.resource().to_owned(),
                    needed: s.quorum(),
                    masters: s.n(),
                    failures: Failures(round.failures),
                });
            }
        }
        self.extensions.fetch_add(1, Ordering::Relaxed);
        if self.lease.finish_extension(extension) {
            Ok(())
        } else {
            Err(self.lost_error())
        }
    }

    /// Releases the lock on every master. Returns once a quorum confirmed; the others confirm
    /// in the background, on the same connections as everything this lock sent them, and
    /// [`Redlock::close`](crate::Redlock::close) waits for them.
    ///
    /// Fails with [`Error::Lost`] if so many masters no longer held our token that it had not
    /// been held by a quorum, and with [`Error::NoQuorum`] when too few masters answered; the
    /// keys then expire at the end of their ttl.
    ///
    /// # Cancel safety
    ///
    /// The lock counts as released as soon as this is called; requests already sent still
    /// reach the masters, and otherwise the ttl ends the lock.
    pub async fn release(mut self) -> Result<()> {
        self.armed = false;
        self.lease.mark_lost();
        let (round, mut rest) = self
            .round(|conn, key, token| async move { conn.release(&key, &token).await })
            .await;
        if !rest.is_empty() {
            self.shared
                .background()
                .spawn(async move { while rest.next().await.is_some() {} });
        }
        match round.tally.verdict() {
            Verdict::Reached => Ok(()),
            _ if round.tally.refusals_decide() => Err(self.lost_error()),
            _ => Err(Error::NoQuorum {
                resource: self.resource().to_owned(),
                needed: self.shared.quorum(),
                masters: self.shared.n(),
                failures: Failures(round.failures),
            }),
        }
    }

    /// Sends `op` to every master at once, each on its current connection, and counts the
    /// answers until the outcome is known. Returns the count and the requests still out then,
    /// which run on whether awaited or not.
    async fn round<F, Fut>(
        &self,
        op: F,
    ) -> (
        Count,
        Requests<
            impl Future<Output = (usize, redlock_single::MasterResult<bool>)> + use<F, Fut, M>,
        >,
    )
    where
        F: Fn(M::Conn, LockKey, Token) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = redlock_single::MasterResult<bool>> + Send + 'static,
    {
        let s = &self.shared;
        let requests = (0..s.n()).map(|i| {
            let (voters, op) = (s.voters.clone(), op.clone());
            let (key, token) = (self.key.clone(), self.token.clone());
            // Sent in the first poll to a master that is connected (see `round`).
            async move {
                let reply = match voters.connection(i).await {
                    Ok(conn) => op(conn, key, token).await,
                    Err(e) => Err(e),
                };
                (i, reply)
            }
        });
        let mut pending = crate::round::started(requests);
        let mut tally = Tally::new(s.n());
        let mut failures = Vec::new();
        pending
            .settle(&mut tally, |tally, (i, answer)| {
                let cause = match answer {
                    Ok(true) => return tally.yes(),
                    Ok(false) => {
                        tally.refused();
                        Cause::Refused
                    }
                    Err(e) => {
                        tally.failed();
                        Cause::Failed(e)
                    }
                };
                failures.push(s.failure(i, cause));
            })
            .await;
        (Count { tally, failures }, pending)
    }

    /// Runs `work` while extending the lock by `ttl` every third of the ttl: `Some(output)`
    /// when `work` finished, `None` as soon as the lock is lost (then `work` is dropped at its
    /// next await point). An extension in flight when `work` ends is awaited first, so that a
    /// release that follows is not raced by it. The building block of
    /// [`Redlock::with_lock`](crate::Redlock::with_lock), for callers that need the guard
    /// afterwards (the command-line tool stops its child process when this returns `None`).
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops `work`; the lock stays held until released or its validity ends.
    pub async fn keep_extended<T>(
        &self,
        work: impl Future<Output = T>,
        ttl: Duration,
    ) -> Option<T> {
        lease::keep_extended(self, work, ttl).await
    }

    fn lost_error(&self) -> Error {
        Error::Lost {
            resource: self.resource().to_owned(),
        }
    }

    fn limit_error(&self, limit: &'static str) -> Error {
        Error::Limit {
            resource: self.resource().to_owned(),
            limit,
        }
    }
}

/// A guard reads like its [`Lease`]: [`resource`](Lease::resource),
/// [`fence`](Lease::fence), [`validity`](Lease::validity), [`is_lost`](Lease::is_lost) and
/// [`lost`](Lease::lost).
impl<M: Master> std::ops::Deref for Guard<M> {
    type Target = Lease;

    fn deref(&self) -> &Lease {
        self.lease.lease()
    }
}

impl<M: Master> Held for Guard<M> {
    async fn extend_once(&self, ttl: Duration) -> Extension {
        match self.extend(ttl).await {
            Ok(()) => Extension::Done,
            Err(Error::Lost { .. }) => Extension::Lost,
            Err(Error::Limit { .. }) => Extension::Capped,
            Err(e) => Extension::Failed(Box::new(e)),
        }
    }

    async fn release_now(self) -> std::result::Result<(), BoxError> {
        Ok(self.release().await?)
    }
}

impl<M: Master> Drop for Guard<M> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.lease.mark_lost();
        let (key, token) = (self.key.clone(), self.token.clone());
        for m in self.shared.voters.masters() {
            let Ok(conn) = m.connection() else {
                continue;
            };
            let (key, token) = (key.clone(), token.clone());
            self.shared.background().spawn(async move {
                if let Err(e) = conn.release(&key, &token).await {
                    tracing::debug!(error = %e,
                        "background release failed; the key expires at the end of its ttl");
                }
            });
        }
    }
}
