//! [`Lock`] and its builder: taking a lock on one master with retries, and `with_lock`, which
//! keeps a lock extended while the user's future runs.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::background::{Background, DropGuard};
use crate::error::{Error, Result};
use crate::guard::{Guard, release_later};
use crate::key::{DEFAULT_PREFIX, LockKey, RestartKeys, Token, check_prefix};
use crate::lease::{Lease, LeaseWriter};
use crate::master::{Connection, Inspection, Master};
use crate::node::{DEFAULT_MAX_IN_FLIGHT, Node, NodeOptions};
use crate::retry::Retry;
use crate::tls::TlsOptions;
use crate::validity::{DEFAULT_DRIFT_FACTOR, drift, validity};
use crate::voters::{RestartPolicy, Voters};

/// The default ttl of a lock.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The default retry policy of [`Lock::acquire`]: exponential backoff from 10 ms to 500 ms,
/// giving up after 10 s.
pub const DEFAULT_RETRY: Retry =
    Retry::exponential(Duration::from_millis(10), Duration::from_millis(500))
        .deadline(Duration::from_secs(10));

/// The default bound on connecting to a master.
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
    settings: Arc<Settings>,
}

impl<M: Master> Clone for Lock<M> {
    fn clone(&self) -> Self {
        Lock {
            voters: self.voters.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl Lock<Node> {
    /// A builder with the defaults: ttl 10 s, [`DEFAULT_RETRY`], prefix `redlock:`, no metadata,
    /// per-request timeout `ttl / 200` (between 5 ms and 1 s), drift factor 0.01, the restart
    /// guard on, at most [`DEFAULT_MAX_IN_FLIGHT`] requests in flight.
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
        self.voters.master(0)
    }

    /// The ttl of every lock taken here.
    pub fn ttl(&self) -> Duration {
        self.settings.ttl
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
        match self.attempt(resource, &key).await? {
            Attempt::Acquired(guard) => Ok(Some(guard)),
            Attempt::Held => Ok(None),
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
        let key = self.key(resource)?;
        self.master().connection()?.inspect(&key).await
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
        LockKey::new(&self.settings.prefix, resource)
    }

    async fn attempt(&self, resource: &str, key: &LockKey) -> Result<Attempt<M>> {
        let s = &*self.settings;
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
                return Ok(Attempt::Held);
            }
            // Refused before it was sent: there is nothing to undo.
            Err(e @ Error::Overloaded { .. }) => {
                undo.disarm();
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let elapsed = start.elapsed();
        let Some(left) = validity(s.ttl, elapsed, drift(s.ttl, s.drift_factor)) else {
            tracing::debug!(resource, ?elapsed, "granted too late to rely on; releasing");
            return Err(Error::Timeout {
                addr: self.master().addr().to_owned(),
                timeout: elapsed,
            });
        };
        undo.disarm();
        let lease = LeaseWriter::new(resource.to_owned(), fence, start + left);
        Ok(Attempt::Acquired(Guard::new(
            self.voters.clone(),
            lease,
            key.clone(),
            token,
            s.drift_factor,
        )))
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
    restart: RestartPolicy,
    max_in_flight: usize,
    tls: TlsOptions,
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
            restart: RestartPolicy::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            tls: TlsOptions::default(),
        }
    }
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

    /// The prefix of every key (default `redlock:`); no `{` or `}`.
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

    /// The bound on connecting (default 5 s), which fred's handshake follows too.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How fast a master's clock may run, as a fraction (default 0.01, the spec's).
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// Whether a master that may have lost locks in a restart grants nothing until the restart
    /// delay has passed (default on); see [`voters`](crate::voters). Off, a master that
    /// restarted empty grants a lock that another client still believes it holds.
    pub fn restart_guard(mut self, on: bool) -> Self {
        self.restart.enabled = on;
        self
    }

    /// Whether a master that persists every write (AOF with `appendfsync always`) grants locks
    /// at once after a restart (default off). Only right when the master always ran that way
    /// and never fails over to a replica: the persistence of the process that came back says
    /// nothing about the one that crashed. Needs `CONFIG GET` rights.
    pub fn trust_persistence(mut self, on: bool) -> Self {
        self.restart.trust_persistence = on;
        self
    }

    /// The least restart delay (default: the largest ttl any client of the master is known to
    /// use, at least 2 s). Set it to the largest ttl of the fleet when clients with different
    /// ttls share a single master: a master that lost its data lost what it knew of them.
    pub fn restart_delay(mut self, delay: Duration) -> Self {
        self.restart.delay = Some(delay);
        self
    }

    /// How many requests may wait for an answer from the master at once (default
    /// [`DEFAULT_MAX_IN_FLIGHT`]); beyond it a request fails at once with
    /// [`Error::Overloaded`].
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// For a `rediss://` master: the PEM file of the certificates to trust instead of the
    /// system's roots.
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.ca_file = Some(path.into());
        self
    }

    /// For a `rediss://` master that asks for a client certificate (mutual TLS): the PEM
    /// certificate chain and private key to present.
    pub fn tls_client_auth(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls.client_auth = Some((cert.into(), key.into()));
        self
    }

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
        let timeout = self.check()?;
        let options = NodeOptions {
            timeout,
            connect_timeout: self.connect_timeout,
            max_in_flight: self.max_in_flight,
            tls: self.tls.clone(),
        };
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
        node.wait_ready(self.connect_timeout).await?;
        self.finish(node, timeout)
    }

    /// Checks the settings and builds a lock on `master`, any implementation of [`Master`]
    /// (such as the testkit's in-memory model). Its own timeout applies; `url` and `client` must
    /// not be set.
    pub fn with_master<M: Master>(self, master: M) -> Result<Lock<M>> {
        let timeout = self.check()?;
        if self.url.is_some() || self.client.is_some() {
            return Err(Error::Config(
                "with_master() takes the master itself: do not set url() or client()".into(),
            ));
        }
        self.finish(master, timeout)
    }

    /// Validates the settings; returns the per-request timeout.
    fn check(&self) -> Result<Duration> {
        let timeout = crate::validity::check(self.ttl, self.timeout, self.drift_factor)
            .map_err(Error::Config)?;
        if self.connect_timeout.is_zero() {
            return Err(Error::Config("connect timeout must be above zero".into()));
        }
        if self.max_in_flight == 0 {
            return Err(Error::Config(
                "max_in_flight must be at least 1: no request could be sent".into(),
            ));
        }
        check_prefix(&self.prefix).map_err(Error::Config)?;
        self.retry.validate()?;
        Ok(timeout)
    }

    fn finish<M: Master>(self, master: M, timeout: Duration) -> Result<Lock<M>> {
        let keys = RestartKeys::new(&self.prefix)?;
        let voters = Voters::new(
            vec![master],
            keys,
            self.restart,
            self.ttl,
            timeout,
            Background::default(),
        );
        Ok(Lock {
            voters: Arc::new(voters),
            settings: Arc::new(Settings {
                ttl: self.ttl,
                retry: self.retry,
                prefix: self.prefix,
                meta: self.meta,
                drift_factor: self.drift_factor,
            }),
        })
    }
}
