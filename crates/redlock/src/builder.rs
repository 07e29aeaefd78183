//! [`RedlockBuilder`]: the settings of a quorum lock, checked, and connecting to the masters.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use redlock_single::validity::drift;
use redlock_single::{LockOptions, Master, Node};

use crate::error::{Cause, Error, Failures, MasterFailure, Result};
use crate::redlock::Redlock;
use crate::shared::Shared;
use crate::tally::{Tally, Verdict, quorum};

/// The most masters one lock may have.
pub const MAX_MASTERS: usize = 64;

impl Redlock<Node> {
    /// A builder with the defaults: ttl 10 s, [`DEFAULT_RETRY`](crate::DEFAULT_RETRY), prefix
    /// `redlock:`, no metadata, per-master timeout `ttl / 200` (between 5 ms and 1 s), drift
    /// factor 0.01, the restart guard on, at most
    /// [`DEFAULT_MAX_IN_FLIGHT`](redlock_single::DEFAULT_MAX_IN_FLIGHT) requests in flight
    /// per master.
    pub fn builder() -> RedlockBuilder {
        RedlockBuilder::default()
    }
}

/// Configures a [`Redlock`]; see [`Redlock::builder`].
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until connect() or with_masters()"]
pub struct RedlockBuilder {
    urls: Vec<String>,
    options: LockOptions,
    max_extensions: Option<u32>,
    max_hold: Option<Duration>,
    min_validity: Duration,
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

    redlock_single::lock_option_setters!();

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
        let mut ready = crate::round::started(nodes.iter().map(|node| async move {
            (node, node.wait_ready(self.options.connect_timeout).await)
        }));
        ready
            .settle(&mut tally, |tally, (node, r)| match r {
                Ok(()) => tally.yes(),
                Err(e) => {
                    tally.failed();
                    failures.push(MasterFailure {
                        addr: node.addr().to_owned(),
                        cause: Cause::Failed(e),
                    });
                }
            })
            .await;
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
        let options = self.options.node_options(timeout);
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
        same_addresses(&nodes, self.options.connect_timeout).await?;
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
        let timeout = self.options.check()?;
        if self.max_hold.is_some_and(|h| h.is_zero()) {
            return bad("max_hold must be above zero".into());
        }
        let o = &self.options;
        let most = o.ttl.saturating_sub(drift(o.ttl, o.drift_factor));
        if self.min_validity >= most {
            return bad(format!(
                "min_validity {:?} must be below ttl − drift ({most:?}): no acquisition could leave that much",
                self.min_validity
            ));
        }
        Ok(timeout)
    }

    fn finish<M: Master>(self, masters: Vec<M>, timeout: Duration) -> Result<Redlock<M>> {
        Ok(Redlock::from_shared(Shared {
            voters: self.options.voters(masters, timeout)?,
            options: self.options,
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
