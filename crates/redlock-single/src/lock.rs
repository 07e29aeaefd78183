//! [`Lock`] and its builder: taking a lock on one master with retries, and `with_lock`, which
//! keeps a lock extended while the user's future runs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::background::DropGuard;
use crate::error::{Error, Result};
use crate::guard::{Guard, release_later};
use crate::lease::{self, Lease, LeaseWriter};
use crate::options::LockOptions;
use crate::protocol::error::{MasterError, MasterErrorKind};
use crate::protocol::key::{LockKey, Token};
use crate::protocol::master::{Connection, Inspection, Master};
use crate::protocol::node::Node;
use crate::protocol::validity::{drift, validity};
use crate::voters::Voters;

/// Locks on one Redis master.
///
/// Cheap to clone: clones share the connection and the background work. See the
/// [crate docs](crate) for an overview.
///
/// ```no_run
/// # async fn demo() -> redlock_single::Result<()> {
/// use std::time::Duration;
/// use redlock_single::{Lock, Retry};
///
/// let lock = Lock::builder()
///     .url("redis://127.0.0.1:6379")
///     .ttl(Duration::from_secs(10))
///     .retry(Retry::linear(Duration::from_millis(50)).deadline(Duration::from_secs(2)))
///     .connect()
///     .await?;
/// let guard = lock.acquire("invoices/42").await?;
/// // ... charge the invoice, passing guard.fence() to the storage ...
/// guard.release().await?;
/// lock.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Lock<M: Master = Node> {
    voters: Arc<Voters<M>>,
    options: Arc<LockOptions>,
}

impl<M: Master> Clone for Lock<M> {
    fn clone(&self) -> Self {
        Lock {
            voters: self.voters.clone(),
            options: self.options.clone(),
        }
    }
}

impl Lock<Node> {
    /// A builder with the defaults of [`LockOptions`]: ttl 10 s,
    /// [`DEFAULT_RETRY`](crate::DEFAULT_RETRY), prefix `redlock:`, no metadata, per-request
    /// timeout `ttl / 200` (between 5 ms and 1 s), drift factor 0.01, the restart guard on, at
    /// most [`DEFAULT_MAX_IN_FLIGHT`](crate::DEFAULT_MAX_IN_FLIGHT) requests in flight.
    pub fn builder() -> LockBuilder {
        LockBuilder::default()
    }
}

impl<M: Master> Lock<M> {
    /// The master this lock runs on.
    pub fn master(&self) -> &M {
        self.voters.master(0)
    }

    /// The ttl of every lock taken here.
    pub fn ttl(&self) -> Duration {
        self.options.ttl
    }

    /// Makes one attempt: `Ok(Some(guard))` if the lock was free, `Ok(None)` if someone else
    /// holds it. Fails with [`Error::Restarting`] while the master may have lost locks in a
    /// restart (the error says when it grants again), with [`Error::Closed`] after
    /// [`close`](Lock::close), and with the master's error when it fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if the future is dropped after the request was sent, a release follows it
    /// in the background on the same connection, so the master runs it after the acquire.
    pub async fn try_acquire(&self, resource: &str) -> Result<Option<Guard<M>>> {
        let key = self.key(resource)?;
        match self.attempt(resource, &key).await {
            Ok(guard) => Ok(Some(guard)),
            Err(Error::Held { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes the lock, waiting for it per the retry policy. Fails with [`Error::Held`] when the
    /// policy gives up while someone else holds it, or with the last master error when the master
    /// kept failing; bad input and final errors (a wrong type, refused credentials) fail at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future at any point releases whatever it had taken, in the
    /// background; see [`try_acquire`](Lock::try_acquire).
    pub async fn acquire(&self, resource: &str) -> Result<Guard<M>> {
        let key = self.key(resource)?;
        self.options
            .retry
            .run(Error::is_transient, |_| self.attempt(resource, &key))
            .await
    }

    /// Takes the lock (waiting per the retry policy) and runs `work` under it with
    /// [`lease::run_held`]: extended by its ttl every third of the ttl, released when `work`
    /// returns, whose output this returns. If the lock is lost first (an extension is refused,
    /// or the validity runs out while the master does not answer), `work` is dropped at its
    /// next await point and [`Error::Lost`] is returned.
    ///
    /// ```no_run
    /// # async fn demo(lock: redlock_single::Lock) -> redlock_single::Result<()> {
    /// let fence = lock
    ///     .with_lock("reports/daily", |lease| async move {
    ///         // write with lease.fence() so that the storage can refuse a stale writer
    ///         lease.fence()
    ///     })
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
        lease::run_held(guard, self.options.ttl, work)
            .await
            .ok_or_else(|| Error::Lost {
                resource: resource.to_owned(),
            })
    }

    /// Reads who holds `resource` on the master, how long its key has left and its fencing
    /// counter.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn inspect(&self, resource: &str) -> Result<Inspection> {
        let key = self.key(resource)?;
        Ok(self.master().connection()?.inspect(&key).await?)
    }

    /// Takes no new locks from now on (attempts fail with [`Error::Closed`]), and waits until
    /// the background work (releases of failed, cancelled and dropped attempts and guards) has
    /// an answer from the master. Each of those requests is bounded by the per-request timeout.
    /// Guards still held can be extended and released as before.
    ///
    /// Call it before the runtime ends: a process that exits without it can leave keys on the
    /// master until their ttl ends.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the background work goes on, and the lock stays closed.
    pub async fn close(&self) {
        self.voters.background().close().await;
    }

    fn key(&self, resource: &str) -> Result<LockKey> {
        Ok(LockKey::new(&self.options.prefix, resource)?)
    }

    /// One attempt; [`Error::Held`] when someone else holds the lock.
    async fn attempt(&self, resource: &str, key: &LockKey) -> Result<Guard<M>> {
        let s = &*self.options;
        if self.voters.background().is_closed() {
            return Err(Error::Closed);
        }
        let conn = self
            .voters
            .voter(0)
            .await
            .map_err(|why| why.into_error(self.master().addr()))?;
        let token = Token::random();
        let start = Instant::now();
        // Until the reply is in, the master may have granted the lock: if this future is
        // dropped or the request fails, release it behind the acquire, on the same connection.
        let undo = {
            let (voters, key, token, conn) = (
                self.voters.clone(),
                key.clone(),
                token.clone(),
                conn.clone(),
            );
            DropGuard::new(move || release_later(&voters, key, token, Some(conn)))
        };
        let fence = match conn.acquire(key, &token, s.ttl, &s.meta).await {
            Ok(Some(fence)) => fence,
            Ok(None) => {
                undo.disarm();
                return Err(Error::Held {
                    resource: resource.to_owned(),
                });
            }
            // Refused before it was sent: there is nothing to undo.
            Err(e) if e.never_sent() => {
                undo.disarm();
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let elapsed = start.elapsed();
        let Some(left) = validity(s.ttl, elapsed, drift(s.ttl, s.drift_factor)) else {
            tracing::debug!(resource, ?elapsed, "granted too late to rely on; releasing");
            let late = MasterErrorKind::Timeout { timeout: elapsed };
            return Err(MasterError::new(self.master().addr(), late).into());
        };
        undo.disarm();
        let lease = LeaseWriter::new(resource.to_owned(), fence, start + left);
        Ok(Guard::new(
            self.voters.clone(),
            lease,
            key.clone(),
            token,
            s.drift_factor,
        ))
    }
}

/// Configures a [`Lock`]; see [`Lock::builder`].
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until connect() or with_master()"]
pub struct LockBuilder {
    url: Option<String>,
    client: Option<fred::clients::Client>,
    options: LockOptions,
}

impl LockBuilder {
    /// The master's URL, `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// A fred client to one server, instead of a URL: the lock makes its own connections with
    /// the client's configuration (server, credentials, database, TLS).
    pub fn client(mut self, client: fred::clients::Client) -> Self {
        self.client = Some(client);
        self
    }

    crate::lock_option_setters!();

    /// Checks the settings and connects to the master.
    ///
    /// Fails with [`Error::Config`] on bad settings, and with the master's error when it cannot
    /// be reached within the connect timeout. The master is reconnected in the background
    /// whenever its connection breaks.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping it drops the half-made connection.
    pub async fn connect(mut self) -> Result<Lock<Node>> {
        let timeout = self.options.check()?;
        let options = self.options.node_options(timeout);
        let node = match (self.url.take(), self.client.take()) {
            (Some(url), None) => Node::build(&url, options)?,
            (None, Some(client)) => Node::from_config(
                fred::interfaces::ClientLike::client_config(&client),
                options,
            )?,
            (None, None) => {
                return Err(Error::Config(
                    "no master: set url() or client() on the builder".into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "set either url() or client(), not both".into(),
                ));
            }
        };
        node.wait_ready(self.options.connect_timeout).await?;
        self.finish(node, timeout)
    }

    /// Checks the settings and builds a lock on `master`, any implementation of [`Master`]
    /// (such as the testkit's in-memory model). Its own timeout applies; `url` and `client` must
    /// not be set.
    pub fn with_master<M: Master>(self, master: M) -> Result<Lock<M>> {
        let timeout = self.options.check()?;
        if self.url.is_some() || self.client.is_some() {
            return Err(Error::Config(
                "with_master() takes the master itself: do not set url() or client()".into(),
            ));
        }
        self.finish(master, timeout)
    }

    fn finish<M: Master>(self, master: M, timeout: Duration) -> Result<Lock<M>> {
        Ok(Lock {
            voters: self.options.voters(vec![master], timeout)?,
            options: Arc::new(self.options),
        })
    }
}
