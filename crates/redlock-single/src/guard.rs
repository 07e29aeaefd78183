//! [`Guard`], a lock held on one master: extension, release, and the lease (fencing token,
//! validity, lost signal).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::lease::{self, BoxError, Extension, Held, Lease, LeaseWriter};
use crate::protocol::key::{LockKey, Token};
use crate::protocol::master::{Connection, Master};
use crate::protocol::validity::drift;
use crate::voters::Voters;

/// A held lock. Dropping it without [`release`](Guard::release) releases it in the background
/// when a tokio runtime is running (and [`Lock::close`](crate::Lock::close) waits for that);
/// without one, the key expires at the end of its ttl, which is always the backstop.
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
    lease: LeaseWriter,
    voters: Arc<Voters<M>>,
    key: LockKey,
    token: Token,
    drift_factor: f64,
    /// Cleared by `release`, which consumes the guard, so that its drop does nothing more.
    armed: bool,
}

impl<M: Master> Guard<M> {
    pub(crate) fn new(
        voters: Arc<Voters<M>>,
        lease: LeaseWriter,
        key: LockKey,
        token: Token,
        drift_factor: f64,
    ) -> Guard<M> {
        Guard {
            lease,
            voters,
            key,
            token,
            drift_factor,
            armed: true,
        }
    }

    fn master(&self) -> &M {
        self.voters.master(0)
    }

    /// A read-only view of this lock that can be cloned and moved into other tasks.
    pub fn lease(&self) -> Lease {
        self.lease.lease().clone()
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
        let seen = self.master().connection()?.inspect(&self.key).await?;
        Ok(match seen.holder {
            Some(h) if h.is(&self.token) => seen.ttl,
            _ => None,
        })
    }

    /// Sets the lock's expiry to `ttl` from now, if it is still held; the validity becomes what
    /// this extension gives, `ttl − elapsed − drift`, even if that is shorter than before.
    ///
    /// Fails with [`Error::Lost`] (and marks the lock lost) when the key no longer holds our
    /// token, when the validity had already run out, or when `ttl` is too short to leave any
    /// validity; with a master error otherwise. From the moment the request is sent, the
    /// validity is at most what `ttl` could leave, so an extension that fails or is dropped
    /// can only have made it shorter.
    ///
    /// # Cancel safety
    ///
    /// The request may still reach the master after the future is dropped; the validity
    /// already allows for that.
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        if let Err(msg) = crate::protocol::validity::check_ttl(ttl) {
            return Err(Error::Config(format!("extend: {msg}")));
        }
        if self.is_lost() {
            return Err(self.lost_error());
        }
        self.voters.use_ttl(ttl).await;
        let Some(extension) = self
            .lease
            .begin_extension(ttl, drift(ttl, self.drift_factor))
        else {
            // Not even an instant reply would leave any validity: nothing is sent.
            return Err(self.lost_error());
        };
        let conn = self.master().connection()?;
        if !conn.extend(&self.key, &self.token, ttl).await? {
            self.lease.mark_lost();
            return Err(self.lost_error());
        }
        if self.lease.finish_extension(extension) {
            Ok(())
        } else {
            // Granted too late to rely on, or lost while the request was in flight.
            Err(self.lost_error())
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
        let conn = self.master().connection()?;
        if conn.release(&self.key, &self.token).await? {
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
        lease::keep_extended(self, work, ttl).await
    }

    fn lost_error(&self) -> Error {
        Error::Lost {
            resource: self.resource().to_owned(),
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
            Err(e) => Extension::Failed(Box::new(e)),
        }
    }

    async fn release_now(self) -> Result<(), BoxError> {
        Ok(self.release().await?)
    }
}

impl<M: Master> Drop for Guard<M> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.lease.mark_lost();
        release_later(&self.voters, self.key.clone(), self.token.clone(), None);
    }
}

/// Releases a lock in the background on the lock's one master: on `conn` (the connection that
/// carried the acquire, so that the release follows it) or, without one, on the current
/// connection. The ttl is the backstop.
pub(crate) fn release_later<M: Master>(
    voters: &Arc<Voters<M>>,
    key: LockKey,
    token: Token,
    conn: Option<M::Conn>,
) {
    let conn = match conn {
        Some(conn) => conn,
        None => match voters.master(0).connection() {
            Ok(conn) => conn,
            Err(_) => return,
        },
    };
    voters.background().spawn(async move {
        if let Err(e) = conn.release(&key, &token).await {
            tracing::debug!(key = key.key(), error = %e,
                "background release failed; the key expires at the end of its ttl");
        }
    });
}
