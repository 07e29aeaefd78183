//! [`RedlockBuilder`]: the settings of a quorum lock, checked, and connecting to the masters.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use redlock_single::background::Background;
use redlock_single::validity::{DEFAULT_DRIFT_FACTOR, drift};
use redlock_single::voters::{RestartPolicy, Voters};
use redlock_single::{
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_PREFIX, Master, Node, NodeOptions, RestartKeys, Retry,
    TlsOptions, check_prefix,
};

use crate::error::{Cause, Error, Failures, MasterFailure, Result};
use crate::redlock::Redlock;
use crate::shared::Shared;
use crate::tally::{Tally, Verdict, quorum};

/// The default ttl of a lock.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The default retry policy of [`Redlock::acquire`]: exponential backoff from 10 ms to 500 ms,
/// giving up after 10 s.
pub const DEFAULT_RETRY: Retry = redlock_single::DEFAULT_RETRY;

/// The most masters one lock may have.
pub const MAX_MASTERS: usize = 64;

/// The default bound on connecting to the masters.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Configures a [`Redlock`]; see [`Redlock::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until connect() or with_masters()"]
pub struct RedlockBuilder {
    urls: Vec<String>,
    ttl: Duration,
    retry: Retry,
    prefix: String,
    meta: String,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    drift_factor: f64,
    restart: RestartPolicy,
    max_extensions: Option<u32>,
    max_hold: Option<Duration>,
    min_validity: Duration,
    max_in_flight: usize,
    tls: TlsOptions,
}

impl Default for RedlockBuilder {
    fn default() -> Self {
        RedlockBuilder {
            urls: Vec::new(),
            ttl: DEFAULT_TTL,
            retry: DEFAULT_RETRY,
            prefix: DEFAULT_PREFIX.to_owned(),
            meta: String::new(),
            timeout: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            drift_factor: DEFAULT_DRIFT_FACTOR,
            restart: RestartPolicy::default(),
            max_extensions: None,
            max_hold: None,
            min_validity: Duration::ZERO,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            tls: TlsOptions::default(),
        }
    }
}

impl RedlockBuilder {
    /// The masters' URLs, `redis://host:port` (or `rediss://` for TLS) each: independent
    /// masters (not replicas of one another), usually 3 or 5. One URL gives a single-master
    /// lock.
    pub fn nodes<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// How long a lock lives on the masters unless extended (default 10 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How [`Redlock::acquire`] waits for a held lock (default [`DEFAULT_RETRY`]).
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The prefix of every key (default `redlock:`); no `{` or `}`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Text stored with the token on every master (for example `host:pid`).
    pub fn meta(mut self, meta: impl Into<String>) -> Self {
        self.meta = meta.into();
        self
    }

    /// The timeout of each request to one master (default `ttl / 200`, between 5 ms and 1 s:
    /// 50 ms for a 10 s ttl). Small against the ttl, so that a slow master does not eat the
    /// validity.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The bound on connecting (default 5 s): `connect` returns as soon as a quorum is
    /// connected, and fred's handshake with each master follows this bound too.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How fast a master's clock may run, as a fraction (default 0.01, the spec's).
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// Whether a master that may have lost locks in a restart is kept from voting until the
    /// restart delay has passed (default on; see `docs/operations.md`). Switching it off is safe
    /// only when operators delay every restart by the largest ttl in use: otherwise a master
    /// that restarts empty can grant a lock that another client still holds.
    pub fn restart_guard(mut self, on: bool) -> Self {
        self.restart.enabled = on;
        self
    }

    /// Whether a master that persists every write (AOF with `appendfsync always`) votes at once
    /// after a restart (default off). Right only when every master always ran that way and none
    /// ever fails over to a replica: the persistence of the process that came back says nothing
    /// about the one that crashed. Needs `CONFIG GET` rights on the masters.
    pub fn trust_persistence(mut self, on: bool) -> Self {
        self.restart.trust_persistence = on;
        self
    }

    /// The least restart delay for the fleet (default: the largest ttl any client of these
    /// masters is known to use, at least 2 s; see `docs/operations.md`).
    pub fn restart_delay(mut self, delay: Duration) -> Self {
        self.restart.delay = Some(delay);
        self
    }

    /// Caps how many times one lock may be extended (default: no cap). Past it, `extend` fails
    /// with [`Error::Limit`] and `with_lock` lets the lock run out.
    pub fn max_extensions(mut self, max: u32) -> Self {
        self.max_extensions = Some(max);
        self
    }

    /// Caps the total time one lock may be held through extensions (default: no cap).
    pub fn max_hold(mut self, max: Duration) -> Self {
        self.max_hold = Some(max);
        self
    }

    /// The least validity an acquisition must leave to count (default: anything above zero).
    /// A quorum that answers so late that less is left fails the attempt with
    /// [`Error::TooSlow`], and what it took is released; `acquire` retries per its policy. Use
    /// it when the work under the lock needs a known time before its first extension. Must be
    /// below `ttl − drift`, or no acquisition could count; above `ttl − drift − per-master
    /// timeout`, only acquisitions faster than the timeout count.
    pub fn min_validity(mut self, min: Duration) -> Self {
        self.min_validity = min;
        self
    }

    /// How many requests may wait for an answer from one master at once (default
    /// [`DEFAULT_MAX_IN_FLIGHT`]); beyond it a request fails at once and that master does not
    /// count for the attempt.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// For `rediss://` masters: the PEM file of the certificates to trust instead of the
    /// system's roots.
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.ca_file = Some(path.into());
        self
    }

    /// For `rediss://` masters that ask for a client certificate (mutual TLS): the PEM
    /// certificate chain and private key to present.
    pub fn tls_client_auth(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls.client_auth = Some((cert.into(), key.into()));
        self
    }

    /// Checks the settings and connects to every master in parallel; returns as soon as a
    /// quorum is connected. The others go on connecting in the background, with backoff, for as
    /// long as the locks live, and so does any master whose connection breaks later.
    ///
    /// Fails with [`Error::Config`] on bad settings (no masters, the same master twice, even
    /// under two names that resolve to one address, a bad URL, a zero ttl, a ttl not larger
    /// than drift plus the per-master timeout), and with [`Error::Connect`] as soon as a
    /// quorum of masters can no longer be connected within the connect timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping it drops the half-made connections.
    pub async fn connect(self) -> Result<Redlock<Node>> {
        let (nodes, timeout) = self.nodes_checked().await?;
        let n = nodes.len();
        let mut tally = Tally::new(n);
        let mut failures = Vec::new();
        let mut ready: FuturesUnordered<_> = nodes
            .iter()
            .map(|node| async move { (node, node.wait_ready(self.connect_timeout).await) })
            .collect();
        while tally.verdict() == Verdict::Pending {
            let Some((node, r)) = ready.next().await else {
                break;
            };
            match r {
                Ok(()) => tally.yes(),
                Err(e) => {
                    tally.failed();
                    failures.push(MasterFailure {
                        addr: node.addr().to_owned(),
                        cause: Cause::Failed(e),
                    });
                }
            }
        }
        drop(ready);
        if tally.verdict() != Verdict::Reached {
            return Err(Error::Connect {
                needed: quorum(n),
                masters: n,
                failures: Failures(failures),
            });
        }
        for node in nodes.iter().filter(|n| !n.is_connected()) {
            tracing::info!(
                master = node.addr(),
                "not connected yet; connecting in the background"
            );
        }
        self.finish(nodes, timeout)
    }

    /// Checks the settings like [`connect`](Self::connect) and starts connecting to every
    /// master, but returns at once, without waiting for any: for tools that report on each
    /// master even when a quorum is down (`redlock status`). A request to a master that is
    /// still connecting waits for it up to the per-master timeout, then fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping it drops the half-made connections.
    pub async fn connect_lazy(self) -> Result<Redlock<Node>> {
        let (nodes, timeout) = self.nodes_checked().await?;
        self.finish(nodes, timeout)
    }

    /// The settings checked and a node made for each URL, connecting in the background.
    async fn nodes_checked(&self) -> Result<(Vec<Node>, Duration)> {
        let timeout = self.check(self.urls.len())?;
        let options = NodeOptions {
            timeout,
            connect_timeout: self.connect_timeout,
            max_in_flight: self.max_in_flight,
            tls: self.tls.clone(),
        };
        let mut seen = HashSet::new();
        let mut nodes = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            let node = Node::build(url, options.clone())?;
            if !seen.insert(node.addr().to_owned()) {
                return Err(Error::Config(format!(
                    "master {} is listed twice: a quorum needs independent masters",
                    node.addr()
                )));
            }
            nodes.push(node);
        }
        same_addresses(&nodes, self.connect_timeout).await?;
        Ok((nodes, timeout))
    }

    /// Checks the settings and builds locks over `masters`, any implementation of [`Master`]
    /// (such as the testkit's in-memory model). Their own timeouts apply; `nodes` must not be set.
    pub fn with_masters<M: Master>(self, masters: Vec<M>) -> Result<Redlock<M>> {
        if !self.urls.is_empty() {
            return Err(Error::Config(
                "with_masters() takes the masters themselves: do not set nodes()".into(),
            ));
        }
        let timeout = self.check(masters.len())?;
        let mut seen = HashSet::new();
        for m in &masters {
            if !seen.insert(m.addr().to_owned()) {
                return Err(Error::Config(format!(
                    "master {} is listed twice",
                    m.addr()
                )));
            }
        }
        self.finish(masters, timeout)
    }

    /// Validates the settings for `n` masters; returns the per-master timeout.
    fn check(&self, n: usize) -> Result<Duration> {
        let bad = |msg: String| Err(Error::Config(msg));
        if n == 0 {
            return bad("no masters: give at least one URL to nodes()".into());
        }
        if n > MAX_MASTERS {
            return bad(format!(
                "{n} masters: at most {MAX_MASTERS} (a quorum of independent masters is 3 to 7)"
            ));
        }
        let timeout = redlock_single::validity::check(self.ttl, self.timeout, self.drift_factor)
            .map_err(Error::Config)?;
        if self.connect_timeout.is_zero() {
            return bad("connect timeout must be above zero".into());
        }
        if self.max_hold.is_some_and(|h| h.is_zero()) {
            return bad("max_hold must be above zero".into());
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight must be at least 1: no request could be sent".into());
        }
        let most = self.ttl.saturating_sub(drift(self.ttl, self.drift_factor));
        if self.min_validity >= most {
            return bad(format!(
                "min_validity {:?} must be below ttl − drift ({most:?}): no acquisition could leave that much",
                self.min_validity
            ));
        }
        check_prefix(&self.prefix).map_err(Error::Config)?;
        self.retry.validate()?;
        Ok(timeout)
    }

    fn finish<M: Master>(self, masters: Vec<M>, timeout: Duration) -> Result<Redlock<M>> {
        let keys = RestartKeys::new(&self.prefix)?;
        let voters = Voters::new(
            masters,
            keys,
            self.restart,
            self.ttl,
            timeout,
            Background::default(),
        );
        Ok(Redlock::from_shared(Shared {
            voters: Arc::new(voters),
            ttl: self.ttl,
            retry: self.retry,
            prefix: self.prefix,
            meta: self.meta,
            drift_factor: self.drift_factor,
            max_extensions: self.max_extensions,
            max_hold: self.max_hold,
            min_validity: self.min_validity,
        }))
    }
}

/// Fails when two masters resolve to a common address: `127.0.0.1:P` and `localhost:P` are
/// one master, and counting it twice makes a fake quorum. A name that does not resolve within
/// `bound` (its DNS may be down) is not compared; nor can one master behind two different
/// addresses (a proxy, NAT) be told from two.
async fn same_addresses(nodes: &[Node], bound: Duration) -> Result<()> {
    let lookups = nodes.iter().map(|node| async move {
        let Some((host, port)) = node.addr().rsplit_once(':') else {
            return HashSet::new();
        };
        let Ok(port) = port.parse::<u16>() else {
            return HashSet::new();
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match tokio::time::timeout(bound, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => addrs.collect::<HashSet<SocketAddr>>(),
            _ => HashSet::new(),
        }
    });
    let resolved = futures::future::join_all(lookups).await;
    for (i, a) in resolved.iter().enumerate() {
        for (j, b) in resolved.iter().enumerate().skip(i + 1) {
            if let Some(shared) = a.intersection(b).next() {
                return Err(Error::Config(format!(
                    "masters {} and {} are one server (both resolve to {shared}): a quorum needs \
                     independent masters",
                    nodes[i].addr(),
                    nodes[j].addr()
                )));
            }
        }
    }
    Ok(())
}
