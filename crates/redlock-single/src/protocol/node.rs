//! [`Node`]: one master reached through fred. A background task keeps it connected for as long
//! as the node lives: it makes one fred client per connection (never reconnecting one
//! client), publishes the connection while it is up, and when it breaks or cannot be made,
//! tries again with a jittered backoff from 100 ms to 2 s, whatever state the master was in at
//! start (down, paused, slow).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fred::interfaces::ClientLike;
use fred::prelude::{Builder, Config, ServerConfig};
use rand::Rng;
use tokio::sync::watch;

use crate::error::Result;
use crate::protocol::conn::NodeConn;
use crate::protocol::error::{Blame, InputError, MasterError, MasterErrorKind};
use crate::protocol::master::{Master, MasterResult};
use crate::protocol::tls::TlsOptions;

/// The default bound on requests to one master that wait for an answer at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// The first wait before a new connection attempt; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How a [`Node`] talks to its master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOptions {
    /// The bound on each request.
    pub timeout: Duration,
    /// The bound on making one connection (TCP, TLS and fred's handshake).
    pub connect_timeout: Duration,
    /// How many requests may wait for an answer at once; beyond it a request fails at once with
    /// [`MasterErrorKind::Overloaded`].
    pub max_in_flight: usize,
    /// Certificates for `rediss://` URLs.
    pub tls: TlsOptions,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(5),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            tls: TlsOptions::default(),
        }
    }
}

/// One Redis (or Valkey) master, reached through fred.
///
/// A background task keeps it connected for as long as the node lives: one fred client per
/// connection (a broken one is never reconnected: a new connection is a new client, with a new
/// [`Connection::id`](crate::Connection::id)), and after a failure, a new attempt after a
/// jittered backoff from 100 ms to 2 s, whatever state the master was in at start. All requests
/// on one connection share it, so the master runs them in the order they were made. Requests
/// fail at once while the master is not connected. The task stops when the last clone is
/// dropped.
///
/// The requests' deadlines are kept by one background thread per process
/// (`redlock-deadlines`), not by a tokio timer each, so that a runtime waiting for masters
/// does not sleep with a timeout on every park (costly on virtual machines). They follow the
/// real clock, also under tokio's paused test clock.
///
/// ```no_run
/// # async fn demo() -> redlock_single::Result<()> {
/// use redlock_single::{Master, Node, NodeOptions};
/// let node = Node::connect("redis://127.0.0.1:6379", NodeOptions::default()).await?;
/// assert_eq!(node.addr(), "127.0.0.1:6379");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

#[derive(Debug)]
struct NodeInner {
    addr: String,
    state: Arc<watch::Sender<State>>,
    /// The task that keeps the node connected; aborted with the last clone.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NodeInner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where the node stands.
#[derive(Debug, Clone)]
enum State {
    /// Not connected: `failed` attempts since the last connection (or the start), the last
    /// error if any.
    Connecting {
        failed: u32,
        last: Option<MasterError>,
    },
    Connected(NodeConn),
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connection ids, unique in the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Node {
    /// Connects to the master at `url` (`redis://[user:password@]host:port[/db]`, or
    /// `rediss://` with the `tls` feature): waits until it is connected, at most
    /// `options.connect_timeout`.
    ///
    /// Fails with [`InputError::Config`] on a URL that does not name one server, and with the
    /// master's error when it cannot be reached in time.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the node and its connection attempts.
    pub async fn connect(url: &str, options: NodeOptions) -> Result<Node> {
        let connect_timeout = options.connect_timeout;
        let node = Node::build(url, options)?;
        node.wait_ready(connect_timeout).await?;
        Ok(node)
    }

    /// Builds a node for the master at `url` and starts connecting in the background, without
    /// waiting. Fails only on a bad URL or bad options, or when called outside a tokio runtime.
    pub fn build(url: &str, options: NodeOptions) -> Result<Node, InputError> {
        let tls = url.starts_with("rediss://");
        if !(tls || url.starts_with("redis://")) {
            return Err(InputError::Config(format!(
                "bad master URL {url:?}: it must start with redis:// or rediss://"
            )));
        }
        if tls && !cfg!(feature = "tls") {
            return Err(InputError::Config(format!(
                "{url:?} asks for TLS, but this build has no TLS (enable the `tls` feature); \
                 refusing to send anything in plain text"
            )));
        }
        let config = Config::from_url(url)
            .map_err(|e| InputError::Config(format!("bad master URL {url:?}: {}", e.details())))?;
        Node::from_config(config, options)
    }

    /// Builds a node from a fred configuration of one server (not a cluster or a sentinel set)
    /// and starts connecting in the background. The node makes its own clients from it.
    pub fn from_config(mut config: Config, options: NodeOptions) -> Result<Node, InputError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(InputError::Config(
                "a node must be made inside a tokio runtime (it spawns its connection task)".into(),
            ));
        }
        let addr = match &config.server {
            ServerConfig::Centralized { server } => format!("{}:{}", server.host, server.port),
            other => {
                return Err(InputError::Config(format!(
                    "a master must be one server, not {other:?}: list each master separately"
                )));
            }
        };
        check_options(&options)?;
        tls_config(&mut config, &options.tls, &addr)?;
        // Fail now on what would fail every connection attempt.
        client(&config, &options)
            .map_err(|e| InputError::Config(format!("cannot make a client: {}", e.details())))?;
        let state = Arc::new(watch::Sender::new(State::Connecting {
            failed: 0,
            last: None,
        }));
        let task = tokio::spawn(keep_connected(addr.clone(), config, options, state.clone()));
        Ok(Node {
            inner: Arc::new(NodeInner { addr, state, task }),
        })
    }

    /// Whether the master is connected now.
    pub fn is_connected(&self) -> bool {
        matches!(*self.inner.state.borrow(), State::Connected(_))
    }

    /// Waits until the master is connected, for at most `bound`; fails with the last connection
    /// error once an attempt has failed, or with a timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the node keeps connecting in the background.
    pub async fn wait_ready(&self, bound: Duration) -> MasterResult<()> {
        match tokio::time::timeout(bound, self.ready()).await {
            Ok(r) => r,
            Err(_) => Err(MasterError::new(
                &self.inner.addr,
                MasterErrorKind::Timeout { timeout: bound },
            )),
        }
    }
}

fn check_options(options: &NodeOptions) -> Result<(), InputError> {
    if options.timeout.is_zero() {
        return Err(InputError::Config("timeout must be above zero".into()));
    }
    if options.connect_timeout.is_zero() {
        return Err(InputError::Config(
            "connect timeout must be above zero".into(),
        ));
    }
    if options.max_in_flight == 0 {
        return Err(InputError::Config(
            "max_in_flight must be at least 1: no request could be sent".into(),
        ));
    }
    Ok(())
}

/// Puts our TLS configuration in `config` when its URL asked for TLS; refuses TLS options for a
/// master that does not use TLS.
fn tls_config(config: &mut Config, options: &TlsOptions, addr: &str) -> Result<(), InputError> {
    #[cfg(feature = "tls")]
    if config.tls.is_some() {
        config.tls = Some(crate::protocol::tls::config(options)?);
        return Ok(());
    }
    if options.is_set() {
        return Err(InputError::Config(format!(
            "TLS certificates are set, but master {addr} is not a rediss:// URL"
        )));
    }
    let _ = config;
    Ok(())
}

/// A fred client for one connection: no reconnection policy (a broken connection ends it),
/// fred's handshake bounded by our connect timeout, one attempt per command.
fn client(
    config: &Config,
    options: &NodeOptions,
) -> Result<fred::clients::Client, fred::error::Error> {
    let mut builder = Builder::from_config(config.clone());
    builder.with_connection_config(|c| {
        c.connection_timeout = options.connect_timeout;
        c.internal_command_timeout = options.connect_timeout;
        c.max_command_attempts = 1;
    });
    builder.build()
}

/// The error of a failed connection attempt, told apart where fred's is unclear: a failed
/// TLS handshake, and a plain connection reset before any reply (as a TLS port does).
fn connect_error(
    addr: &str,
    config: &Config,
    timeout: Duration,
    e: fred::error::Error,
) -> MasterError {
    #[cfg(feature = "tls")]
    if config.tls.is_some() {
        if let Some(tls) = crate::protocol::error::tls_handshake(addr, &e) {
            return tls;
        }
        return MasterError::from_fred(addr, Blame::Nothing, timeout, e);
    }
    let _ = config;
    if e.details().contains("ConnectionReset") {
        return MasterError::unreachable(
            addr,
            "the connection was reset before the first reply (a TLS port? then use rediss://)",
        );
    }
    MasterError::from_fred(addr, Blame::Nothing, timeout, e)
}

fn jittered(d: Duration) -> Duration {
    let half = d / 2;
    half + rand::rng().random_range(Duration::ZERO..=d - half)
}

/// Keeps the master connected, for ever: one client per connection; see the module docs.
async fn keep_connected(
    addr: String,
    config: Config,
    options: NodeOptions,
    state: Arc<watch::Sender<State>>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let failure = match client(&config, &options) {
            Err(e) => {
                MasterError::unreachable(&addr, format!("cannot make a client: {}", e.details()))
            }
            Ok(client) => {
                let mut task = AbortOnDrop(client.connect());
                let connected = tokio::select! {
                    r = client.wait_for_connect() => r,
                    r = &mut task.0 => match r {
                        Ok(Err(e)) => Err(e),
                        _ => Err(fred::error::Error::new(
                            fred::error::ErrorKind::IO,
                            "the connection ended before it was made",
                        )),
                    },
                    () = tokio::time::sleep(options.connect_timeout) => Err(fred::error::Error::new(
                        fred::error::ErrorKind::Timeout,
                        "no connection within the connect timeout",
                    )),
                };
                match connected {
                    Ok(()) => {
                        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                        let conn = NodeConn::new(
                            id,
                            addr.clone(),
                            client,
                            options.timeout,
                            options.max_in_flight,
                        );
                        tracing::debug!(master = %addr, connection = id, "connected");
                        conn.preload();
                        state.send_replace(State::Connected(conn));
                        // Until the connection closes.
                        let _ = (&mut task.0).await;
                        tracing::debug!(master = %addr, connection = id, "connection closed");
                        backoff = BACKOFF_MIN;
                        MasterError::unreachable(&addr, "the connection closed")
                    }
                    Err(e) => connect_error(&addr, &config, options.connect_timeout, e),
                }
            }
        };
        state.send_modify(|s| {
            let failed = match s {
                State::Connecting { failed, .. } => failed.saturating_add(1),
                State::Connected(_) => 0,
            };
            *s = State::Connecting {
                failed,
                last: Some(failure),
            };
        });
        tokio::time::sleep(jittered(backoff)).await;
        backoff = backoff.saturating_mul(2).min(BACKOFF_MAX);
    }
}

impl Master for Node {
    type Conn = NodeConn;

    fn addr(&self) -> &str {
        &self.inner.addr
    }

    fn connection(&self) -> MasterResult<NodeConn> {
        match &*self.inner.state.borrow() {
            State::Connected(conn) => Ok(conn.clone()),
            State::Connecting { last, .. } => Err(match last {
                Some(e) => e.clone(),
                None => MasterError::unreachable(&self.inner.addr, "not connected yet"),
            }),
        }
    }

    fn ready(&self) -> impl Future<Output = MasterResult<()>> + Send {
        let mut rx = self.inner.state.subscribe();
        let addr = self.inner.addr.clone();
        async move {
            loop {
                match &*rx.borrow_and_update() {
                    State::Connected(_) => return Ok(()),
                    State::Connecting {
                        failed,
                        last: Some(e),
                    } if *failed > 0 => return Err(e.clone()),
                    State::Connecting { .. } => {}
                }
                if rx.changed().await.is_err() {
                    return Err(MasterError::unreachable(&addr, "the node was dropped"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_runtime_is_an_error_not_a_panic() {
        let e = Node::build("redis://127.0.0.1:1", NodeOptions::default()).expect_err("no runtime");
        assert!(
            matches!(e, InputError::Config(ref m) if m.contains("tokio runtime")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn urls_that_are_not_one_server_are_refused() {
        for url in ["http://h:1", "", "redis-sentinel://h:1", "redis://[::1"] {
            let e = Node::build(url, NodeOptions::default()).expect_err(url);
            assert!(matches!(e, InputError::Config(_)), "{url}: {e}");
        }
    }

    #[tokio::test]
    async fn tls_certificates_for_a_plain_master_are_refused() {
        let options = NodeOptions {
            tls: TlsOptions {
                ca_file: Some("/nonexistent/ca.pem".into()),
                client_auth: None,
            },
            ..NodeOptions::default()
        };
        let e = Node::build("redis://127.0.0.1:1", options).expect_err("not rediss");
        assert!(
            matches!(e, InputError::Config(ref m) if m.contains("rediss")),
            "{e}"
        );
    }

    #[cfg(not(feature = "tls"))]
    #[tokio::test]
    async fn a_rediss_url_without_tls_is_refused_not_downgraded() {
        let e = Node::build("rediss://127.0.0.1:1", NodeOptions::default()).expect_err("no tls");
        assert!(
            matches!(e, InputError::Config(ref m) if m.contains("no TLS")),
            "{e}"
        );
    }

    #[cfg(feature = "tls")]
    #[tokio::test]
    async fn a_missing_ca_file_is_a_configuration_error() {
        let options = NodeOptions {
            tls: TlsOptions {
                ca_file: Some("/nonexistent/ca.pem".into()),
                client_auth: None,
            },
            ..NodeOptions::default()
        };
        let e = Node::build("rediss://127.0.0.1:1", options).expect_err("no file");
        assert!(
            matches!(e, InputError::Config(ref m) if m.contains("CA file")),
            "{e}"
        );
    }
}
