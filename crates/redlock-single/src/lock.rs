//! [`Lock`] and its builder: taking a lock on one master with retries, and `with_lock`, which
//! keeps a lock extended while the user's future runs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::guard::{Guard, Lease, spawn_release};
use crate::key::{DEFAULT_PREFIX, LockKey, Token};
use crate::master::{Inspection, Master};
use crate::node::Node;
use crate::retry::Retry;
use crate::validity::{DEFAULT_DRIFT_FACTOR, drift, validity};

/// The default ttl of a lock.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The default retry policy of [`Lock::acquire`]: exponential backoff from 10 ms to 500 ms,
/// giving up after 10 s.
pub const DEFAULT_RETRY: Retry =
    Retry::exponential(Duration::from_millis(10), Duration::from_millis(500))
        .deadline(Duration::from_secs(10));

/// The default bound on connecting to a master and loading the scripts.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings shared by every lock taken through one [`Lock`].
#[derive(Debug)]
struct Settings {
    ttl: Duration,
    retry: Retry,
    prefix: String,
    meta: String,
    drift_factor: f64,
}

/// Locks on one Redis master.
///
/// Cheap to clone: clones share the connection. See the [crate docs](crate) for an overview.
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
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Lock<M: Master = Node> {
    master: Arc<M>,
    settings: Arc<Settings>,
}

impl<M: Master> Clone for Lock<M> {
    fn clone(&self) -> Self {
        Lock {
            master: self.master.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl Lock<Node> {
    /// A builder with the defaults: ttl 10 s, [`DEFAULT_RETRY`], prefix `redlock:`, no metadata,
    /// per-request timeout `ttl / 200` (between 5 ms and 1 s), drift factor 0.01.
    pub fn builder() -> LockBuilder {
        LockBuilder::default()
    }
}

/// What one attempt came to.
enum Attempt<M: Master> {
    Acquired(Guard<M>),
    Held,
}

impl<M: Master> Lock<M> {
    /// The master this lock runs on.
    pub fn master(&self) -> &M {
        &self.master
    }

    /// The ttl of every lock taken here.
    pub fn ttl(&self) -> Duration {
        self.settings.ttl
    }

    /// Makes one attempt: `Ok(Some(guard))` if the lock was free, `Ok(None)` if someone else
    /// holds it.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if the future is dropped after the request was sent, a release follows it
    /// in the background on the same connection, so the master runs it after the acquire.
    pub async fn try_acquire(&self, resource: &str) -> Result<Option<Guard<M>>> {
        let key = self.key(resource)?;
        match self.attempt(resource, &key).await? {
            Attempt::Acquired(guard) => Ok(Some(guard)),
            Attempt::Held => Ok(None),
        }
    }

    /// Takes the lock, waiting for it per the retry policy. Fails with [`Error::Held`] when the
    /// policy gives up while someone else holds it, or with the last master error when the master
    /// kept failing; bad input fails at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future at any point releases whatever it had taken, in the
    /// background; see [`try_acquire`](Lock::try_acquire).
    pub async fn acquire(&self, resource: &str) -> Result<Guard<M>> {
        let key = self.key(resource)?;
        let start = Instant::now();
        let mut schedule = self.settings.retry.schedule();
        loop {
            let failure = match self.attempt(resource, &key).await {
                Ok(Attempt::Acquired(guard)) => return Ok(guard),
                Ok(Attempt::Held) => Error::Held {
                    resource: resource.to_owned(),
                },
                Err(e) if e.is_transient() => e,
                Err(e) => return Err(e),
            };
            let delay = schedule.next_delay(start.elapsed(), &mut rand::rng());
            match delay {
                Some(delay) => {
                    tracing::trace!(resource, ?delay, error = %failure, "retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(failure),
            }
        }
    }

    /// Takes the lock (waiting per the retry policy), runs `work` while keeping the lock
    /// extended in the background, releases the lock and returns what `work` returned.
    ///
    /// The lock is extended by its ttl every third of the ttl. If it is lost (an extension is
    /// refused, or the validity runs out while the master does not answer), `work` is dropped
    /// at its next await point and [`Error::Lost`] is returned. An extension in flight when
    /// `work` ends is awaited before the release. A failed release at the end is logged, not
    /// returned: the work is done, and the ttl ends the lock.
    ///
    /// ```no_run
    /// # async fn demo(lock: redlock_single::Lock) -> redlock_single::Result<()> {
    /// let total = lock
    ///     .with_lock("reports/daily", |lease| async move {
    ///         // write with lease.fence() so that the storage can refuse a stale writer
    ///         lease.fence()
    ///     })
    ///     .await?;
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
        let work = work(guard.lease());
        match guard.keep_extended(work, self.settings.ttl).await {
            Some(out) => {
                if let Err(e) = guard.release().await {
                    tracing::warn!(resource, error = %e, "release after with_lock failed");
                }
                Ok(out)
            }
            None => Err(Error::Lost {
                resource: resource.to_owned(),
            }),
        }
    }

    /// Reads who holds `resource` on the master, how long its key has left and its fencing
    /// counter.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn inspect(&self, resource: &str) -> Result<Inspection> {
        self.master.inspect(&self.key(resource)?).await
    }

    fn key(&self, resource: &str) -> Result<LockKey> {
        LockKey::new(&self.settings.prefix, resource)
    }

    async fn attempt(&self, resource: &str, key: &LockKey) -> Result<Attempt<M>> {
        let s = &*self.settings;
        let token = Token::random();
        let start = Instant::now();
        // Until the reply is in, the master may have granted the lock: if this future is
        // dropped or the request fails, release it behind the acquire.
        let undo = Undo {
            master: self.master.clone(),
            key: key.clone(),
            token: token.clone(),
            armed: true,
        };
        let fence = match self.master.acquire(key, &token, s.ttl, &s.meta).await? {
            Some(fence) => fence,
            None => {
                undo.disarm();
                return Ok(Attempt::Held);
            }
        };
        let elapsed = start.elapsed();
        let Some(left) = validity(s.ttl, elapsed, drift(s.ttl, s.drift_factor)) else {
            tracing::debug!(resource, ?elapsed, "granted too late to rely on; releasing");
            return Err(Error::Timeout {
                addr: self.master.addr().to_owned(),
                timeout: elapsed,
            });
        };
        undo.disarm();
        Ok(Attempt::Acquired(Guard::new(
            self.master.clone(),
            resource.to_owned(),
            key.clone(),
            token,
            fence,
            start + left,
            s.drift_factor,
        )))
    }
}

/// Releases a possibly granted lock when dropped armed.
struct Undo<M: Master> {
    master: Arc<M>,
    key: LockKey,
    token: Token,
    armed: bool,
}

impl<M: Master> Undo<M> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl<M: Master> Drop for Undo<M> {
    fn drop(&mut self) {
        if self.armed {
            spawn_release(self.master.clone(), self.key.clone(), self.token.clone());
        }
    }
}

/// Configures a [`Lock`]; see [`Lock::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until connect() or with_master()"]
pub struct LockBuilder {
    url: Option<String>,
    client: Option<fred::clients::Client>,
    ttl: Duration,
    retry: Retry,
    prefix: String,
    meta: String,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    drift_factor: f64,
}

impl Default for LockBuilder {
    fn default() -> Self {
        LockBuilder {
            url: None,
            client: None,
            ttl: DEFAULT_TTL,
            retry: DEFAULT_RETRY,
            prefix: DEFAULT_PREFIX.to_owned(),
            meta: String::new(),
            timeout: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            drift_factor: DEFAULT_DRIFT_FACTOR,
        }
    }
}

impl LockBuilder {
    /// The master's URL, `redis://[user:password@]host:port[/db]`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// An existing fred client to one server, instead of a URL.
    pub fn client(mut self, client: fred::clients::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// How long a lock lives on the master unless extended (default 10 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How [`Lock::acquire`] waits for a held lock (default [`DEFAULT_RETRY`]).
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The prefix of every key (default `redlock:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Text stored with the token, shown by [`Lock::inspect`] (for example `host:pid`).
    pub fn meta(mut self, meta: impl Into<String>) -> Self {
        self.meta = meta.into();
        self
    }

    /// The timeout of each request to the master (default `ttl / 200`, between 5 ms and 1 s).
    /// Must be smaller than the ttl less the drift.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The bound on connecting and loading the scripts (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How fast a master's clock may run, as a fraction (default 0.01, the spec's).
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// Checks the settings and connects to the master.
    ///
    /// Fails with [`Error::Config`] on bad settings, and with [`Error::Unreachable`] or
    /// [`Error::Timeout`] when the master cannot be reached.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping it drops the half-made connection.
    pub async fn connect(mut self) -> Result<Lock<Node>> {
        let timeout = self.check()?;
        let node = match (self.url.take(), self.client.take()) {
            (Some(url), None) => Node::connect(&url, timeout, self.connect_timeout).await?,
            (None, Some(client)) => {
                Node::from_client(client, timeout, self.connect_timeout).await?
            }
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
        Ok(self.finish(node))
    }

    /// Checks the settings and builds a lock on `master`, any implementation of [`Master`]
    /// (such as the testkit's in-memory model). Its own timeout applies; `url` and `client` must
    /// not be set.
    pub fn with_master<M: Master>(self, master: M) -> Result<Lock<M>> {
        self.check()?;
        if self.url.is_some() || self.client.is_some() {
            return Err(Error::Config(
                "with_master() takes the master itself: do not set url() or client()".into(),
            ));
        }
        Ok(self.finish(master))
    }

    /// Validates the settings; returns the per-request timeout.
    fn check(&self) -> Result<Duration> {
        let timeout = crate::validity::check(self.ttl, self.timeout, self.drift_factor)
            .map_err(Error::Config)?;
        if self.connect_timeout.is_zero() {
            return Err(Error::Config("connect timeout must be above zero".into()));
        }
        self.retry.validate()?;
        Ok(timeout)
    }

    fn finish<M: Master>(self, master: M) -> Lock<M> {
        Lock {
            master: Arc::new(master),
            settings: Arc::new(Settings {
                ttl: self.ttl,
                retry: self.retry,
                prefix: self.prefix,
                meta: self.meta,
                drift_factor: self.drift_factor,
            }),
        }
    }
}
