//! [`Node`]: one master reached through one multiplexed fred client, running the protocol's
//! scripts by EVALSHA and reloading them when the master answers NOSCRIPT (after a restart).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use fred::bytes_utils::Str;
use fred::clients::{Client, WithOptions};
use fred::interfaces::{ClientLike, ConfigInterface, EventInterface, LuaInterface};
use fred::prelude::{Builder, Config, Options, ReconnectPolicy, ServerConfig};
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand};
use fred::types::{FromValue, Value};

use crate::error::{Error, Result};
use crate::key::{Holder, LockKey, Token};
use crate::master::{Health, Inspection, Master};
use crate::scripts;

/// One script and its hash as a ready argument (cloning it only counts a reference).
struct Loaded {
    script: Script,
    sha: Value,
}

impl Loaded {
    fn new(lua: &str) -> Loaded {
        let script = Script::from_lua(lua);
        let sha = Value::from(script.sha1().clone());
        Loaded { script, sha }
    }
}

/// The scripts, hashed once per process.
struct Scripts {
    acquire: Loaded,
    raise: Loaded,
    extend: Loaded,
    release: Loaded,
    inspect: Loaded,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    acquire: Loaded::new(scripts::ACQUIRE),
    raise: Loaded::new(scripts::RAISE),
    extend: Loaded::new(scripts::EXTEND),
    release: Loaded::new(scripts::RELEASE),
    inspect: Loaded::new(scripts::INSPECT),
});

/// The bound on one TCP connection attempt and on the handshake.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a lost connection is retried, in milliseconds. Commands made while it is down
/// fail at once (`fail_fast`) rather than queue behind the reconnection.
const RECONNECT_DELAY_MS: u32 = 100;

/// One Redis (or Valkey) master, reached through one fred client.
///
/// All requests share the client's one connection, so the master runs them in the order they
/// were made. Every request is bounded by the per-request timeout and fails at once while the
/// connection is down; the client reconnects in the background.
///
/// The requests' deadlines are kept by one background thread per process
/// (`redlock-deadlines`), not by a tokio timer each, so that a runtime waiting for masters
/// does not sleep with a timeout on every park (costly on virtual machines). They follow the
/// real clock, also under tokio's paused test clock.
///
/// ```no_run
/// # async fn demo() -> redlock_single::Result<()> {
/// use std::time::Duration;
/// use redlock_single::{Master, Node};
/// let node = Node::connect(
///     "redis://127.0.0.1:6379",
///     Duration::from_millis(50),
///     Duration::from_secs(5),
/// )
/// .await?;
/// assert_eq!(node.addr(), "127.0.0.1:6379");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Node {
    client: Client,
    /// The client with the options every request is sent with (fail fast, one attempt).
    requests: WithOptions<Client>,
    addr: String,
    timeout: Duration,
    tasks: Arc<Tasks>,
}

/// The node's background tasks, stopped when the last clone of the node is dropped: the
/// connection task (when the node started it) and a listener that counts the connections
/// made, so that callers know when the master may have restarted.
#[derive(Debug)]
struct Tasks {
    count: Arc<AtomicU64>,
    listener: tokio::task::JoinHandle<Result<(), fred::error::Error>>,
    connection: Option<tokio::task::JoinHandle<Result<(), fred::error::Error>>>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.listener.abort();
        if let Some(c) = &self.connection {
            c.abort();
        }
    }
}

impl Node {
    /// Connects to the master at `url` (`redis://[user:password@]host:port[/db]`, or `rediss://`
    /// when fred's TLS features are enabled) with `timeout` for each request, and loads the scripts.
    ///
    /// Fails with [`Error::Config`] on a URL that does not name one server and with
    /// [`Error::Unreachable`] or [`Error::Timeout`] when the master does not answer within
    /// `connect_timeout`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the half-made client and its connection task.
    pub async fn connect(url: &str, timeout: Duration, connect_timeout: Duration) -> Result<Node> {
        let node = Node::build(url, timeout)?;
        node.ready(connect_timeout).await?;
        Ok(node)
    }

    /// Builds a node for the master at `url` and starts connecting in the background, without
    /// waiting: the client keeps reconnecting until the node is dropped. Requests fail fast
    /// while it is not connected. Fails only on a bad URL, or when called outside a tokio
    /// runtime.
    pub fn build(url: &str, timeout: Duration) -> Result<Node> {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(Error::Config(format!(
                "bad master URL {url:?}: it must start with redis:// or rediss://"
            )));
        }
        let bad = |e: fred::error::Error| {
            Error::Config(format!("bad master URL {url:?}: {}", e.details()))
        };
        let config = Config::from_url(url).map_err(bad)?;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = CONNECTION_TIMEOUT;
                c.internal_command_timeout = CONNECTION_TIMEOUT;
                c.max_command_attempts = 1;
            })
            .set_policy(ReconnectPolicy::new_constant(0, RECONNECT_DELAY_MS));
        let client = builder.build().map_err(bad)?;
        Node::start(client, timeout)
    }

    /// Uses an existing fred client to a single server (not a cluster or a sentinel set),
    /// connecting it first if it is not connected yet, and loads the scripts.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the client as it was given.
    pub async fn from_client(
        client: Client,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Node> {
        let node = Node::start(client, timeout)?;
        node.ready(connect_timeout).await?;
        Ok(node)
    }

    fn start(client: Client, timeout: Duration) -> Result<Node> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(
                "a node must be made inside a tokio runtime (it spawns its connection task)".into(),
            ));
        }
        let addr = match &client.client_config().server {
            ServerConfig::Centralized { server } => format!("{}:{}", server.host, server.port),
            other => {
                return Err(Error::Config(format!(
                    "a master must be one server, not {other:?}: list each master separately"
                )));
            }
        };
        let count = Arc::new(AtomicU64::new(0));
        let counter = count.clone();
        // Subscribe before connecting, so that the first connection is counted too.
        let listener = client.on_reconnect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        });
        let connection = (!client.is_connected()).then(|| client.connect());
        // The per-request timeout is applied around each call (see `eval`), not by fred.
        let requests = client.with_options(&Options {
            fail_fast: true,
            max_attempts: Some(1),
            ..Options::default()
        });
        Ok(Node {
            tasks: Arc::new(Tasks {
                count,
                listener,
                connection,
            }),
            requests,
            client,
            addr,
            timeout,
        })
    }

    /// Waits until the master is connected and the scripts are loaded, for at most
    /// `connect_timeout`.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the node keeps connecting in the background.
    pub async fn ready(&self, connect_timeout: Duration) -> Result<()> {
        let ready = async {
            if !self.client.is_connected() {
                self.client
                    .wait_for_connect()
                    .await
                    .map_err(|e| self.error("", e))?;
            }
            self.load_scripts().await
        };
        match tokio::time::timeout(connect_timeout, ready).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                addr: self.addr.clone(),
                timeout: connect_timeout,
            }),
        }
    }

    /// The fred client, for anything this crate does not do.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn load_scripts(&self) -> Result<()> {
        let s = &*SCRIPTS;
        for loaded in [&s.acquire, &s.raise, &s.extend, &s.release, &s.inspect] {
            self.load(&loaded.script).await?;
        }
        Ok(())
    }

    async fn load(&self, script: &Script) -> Result<()> {
        let lua = script.lua().cloned().unwrap_or_default();
        // Boxed: unboxed, fred's future would sit inside every `eval` future (which awaits
        // `load` after NOSCRIPT) and make each of them kilobytes larger to move.
        let load = Box::pin(self.requests.script_load::<Value, _>(lua));
        self.bounded("", load).await.map(drop)
    }

    /// Runs `script` by its hash, loading it once and trying again if the master has lost it.
    ///
    /// EVALSHA goes through fred's `custom` interface: fred sends its own `evalsha` unpipelined,
    /// which holds every later command to this master until the reply is in, and its timeout
    /// does not fire while the master is paused. A custom command is pipelined like any other,
    /// still written in the order it was made.
    async fn eval<R: FromValue>(
        &self,
        script: &Loaded,
        key: &LockKey,
        with_fence: bool,
        args: &[Arg<'_>],
    ) -> Result<R> {
        let first = self.evalsha(script, key, with_fence, args).await;
        match first {
            Err(Retry::NoScript) => {
                self.load(&script.script).await?;
                match self.evalsha(script, key, with_fence, args).await {
                    Err(Retry::NoScript) => Err(Error::Redis {
                        addr: self.addr.clone(),
                        source: fred::error::Error::new(
                            fred::error::ErrorKind::Unknown,
                            "NOSCRIPT after SCRIPT LOAD",
                        ),
                    }),
                    Err(Retry::Failed(e)) => Err(e),
                    Ok(r) => Ok(r),
                }
            }
            Err(Retry::Failed(e)) => Err(e),
            Ok(r) => Ok(r),
        }
    }

    async fn evalsha<R: FromValue>(
        &self,
        script: &Loaded,
        key: &LockKey,
        with_fence: bool,
        args: &[Arg<'_>],
    ) -> Result<R, Retry> {
        let mut all = Vec::with_capacity(4 + args.len());
        all.push(script.sha.clone());
        // The key count as ready text: fred encodes an integer argument through a float
        // logarithm and a digit conversion, which cost a cycle at N=5 about 1 800 instructions.
        if with_fence {
            all.extend([
                Value::String(Str::from_static("2")),
                Value::String(key.shared_key().clone()),
                Value::String(key.shared_fence_key().clone()),
            ]);
        } else {
            all.extend([
                Value::String(Str::from_static("1")),
                Value::String(key.shared_key().clone()),
            ]);
        }
        all.extend(args.iter().map(|a| match *a {
            Arg::Str(s) => Value::from(s),
            Arg::Shared(s) => Value::String(s.clone()),
            Arg::Int(i) => Value::Integer(i),
        }));
        let cmd = CustomCommand::new_static("EVALSHA", ClusterHash::FirstKey, false);
        // fred's request futures are about 5 KB; boxed, ours stay small, which matters when a
        // quorum round moves one per master into a FuturesUnordered or a spawned task.
        let call = Box::pin(self.requests.custom::<R, Value>(cmd, all));
        match crate::deadline::bounded(self.timeout, call).await {
            Ok(Err(e)) if e.details().starts_with("NOSCRIPT") => Err(Retry::NoScript),
            Ok(r) => r.map_err(|e| Retry::Failed(self.error(key.key(), e))),
            Err(_) => Err(Retry::Failed(self.timed_out())),
        }
    }

    /// Bounds a request (boxed by the caller) by the per-request timeout.
    async fn bounded<T>(
        &self,
        key: &str,
        request: impl Future<Output = Result<T, fred::error::Error>> + Unpin,
    ) -> Result<T> {
        match crate::deadline::bounded(self.timeout, request).await {
            Ok(r) => r.map_err(|e| self.error(key, e)),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> Error {
        Error::Timeout {
            addr: self.addr.clone(),
            timeout: self.timeout,
        }
    }

    fn error(&self, key: &str, e: fred::error::Error) -> Error {
        Error::from_fred(&self.addr, key, self.timeout, e)
    }
}

/// An argument of a script, turned into a request argument for each request sent (twice when
/// the script has to be loaded again), so that nothing is cloned on the common path.
#[derive(Clone, Copy)]
enum Arg<'a> {
    Str(&'a str),
    /// A shared buffer: sent by reference count, not copied.
    Shared(&'a fred::bytes_utils::Str),
    Int(i64),
}

/// Why an EVALSHA did not return a result.
enum Retry {
    /// The master does not know the script (it restarted): load it and try again.
    NoScript,
    Failed(Error),
}

/// Milliseconds for PX/PEXPIRE: never 0, which Redis refuses.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

impl Master for Node {
    fn addr(&self) -> &str {
        &self.addr
    }

    async fn acquire(
        &self,
        key: &LockKey,
        token: &Token,
        ttl: Duration,
        meta: &str,
    ) -> Result<Option<u64>> {
        let with_meta;
        let value = if meta.is_empty() {
            Arg::Shared(token.shared())
        } else {
            with_meta = token.value_with(meta);
            Arg::Str(&with_meta)
        };
        let args = [value, Arg::Int(millis(ttl))];
        let fence: Option<i64> = self.eval(&SCRIPTS.acquire, key, true, &args).await?;
        Ok(fence.map(|f| u64::try_from(f).unwrap_or(0)))
    }

    async fn raise(&self, key: &LockKey, token: &Token, fence: u64) -> Result<bool> {
        let fence = i64::try_from(fence).unwrap_or(i64::MAX);
        let args = [Arg::Shared(token.shared()), Arg::Int(fence)];
        let done: i64 = self.eval(&SCRIPTS.raise, key, true, &args).await?;
        Ok(done == 1)
    }

    async fn extend(&self, key: &LockKey, token: &Token, ttl: Duration) -> Result<bool> {
        let args = [Arg::Shared(token.shared()), Arg::Int(millis(ttl))];
        let done: i64 = self.eval(&SCRIPTS.extend, key, false, &args).await?;
        Ok(done == 1)
    }

    async fn release(&self, key: &LockKey, token: &Token) -> Result<bool> {
        let args = [Arg::Shared(token.shared())];
        let done: i64 = self.eval(&SCRIPTS.release, key, false, &args).await?;
        Ok(done == 1)
    }

    async fn inspect(&self, key: &LockKey) -> Result<Inspection> {
        let reply: Vec<Value> = self.eval(&SCRIPTS.inspect, key, true, &[]).await?;
        let bad = |what: &str| Error::Redis {
            addr: self.addr.clone(),
            source: fred::error::Error::new(
                fred::error::ErrorKind::Parse,
                format!("unexpected inspect reply: {what}"),
            ),
        };
        let [value, pttl, fence]: [Value; 3] = reply.try_into().map_err(|_| bad("length"))?;
        let holder = value.as_string().map(|v| Holder::parse(&v));
        let ttl = pttl
            .as_i64()
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis);
        let fence = if fence.is_null() {
            0
        } else {
            fence.as_u64().ok_or_else(|| bad("fence"))?
        };
        Ok(Inspection { holder, ttl, fence })
    }

    async fn health(&self) -> Result<Health> {
        let client = &self.requests;
        let info: String = self
            .bounded("", Box::pin(client.info::<String>(None)))
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let run_id = field("run_id").unwrap_or_default().to_owned();
        let uptime = Duration::from_secs(
            field("uptime_in_seconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        );
        let aof = field("aof_enabled") == Some("1");
        // The fsync policy is not in INFO. A server that refuses CONFIG (as managed services
        // may) counts as not persisting every write: the safe side.
        let persists_every_write = aof && {
            let reply: Result<Vec<String>> = self
                .bounded(
                    "",
                    Box::pin(client.config_get::<Vec<String>, _>("appendfsync")),
                )
                .await;
            matches!(reply.as_deref(), Ok([_, policy]) if policy == "always")
        };
        Ok(Health {
            run_id,
            uptime,
            persists_every_write,
        })
    }

    fn epoch(&self) -> u64 {
        self.tasks.count.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_runtime_is_an_error_not_a_panic() {
        let e =
            Node::build("redis://127.0.0.1:1", Duration::from_millis(5)).expect_err("no runtime");
        assert!(
            matches!(e, Error::Config(ref m) if m.contains("tokio runtime")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn urls_that_are_not_one_server_are_refused() {
        for url in ["http://h:1", "", "redis-sentinel://h:1", "redis://[::1"] {
            let e = Node::build(url, Duration::from_millis(5)).expect_err(url);
            assert!(matches!(e, Error::Config(_)), "{url}: {e}");
        }
    }
}
