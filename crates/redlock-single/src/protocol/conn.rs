//! [`NodeConn`]: one connection to a master, through one fred client that never reconnects
//! (the [`Node`](crate::Node) makes a new client for every connection, so that a reply is
//! known to come over the connection that carried its request).
//!
//! It runs the protocol's scripts by EVALSHA, loading a script when the master answers
//! NOSCRIPT, and bounds every request twice: by the per-request timeout, and by how many
//! requests may wait for an answer at once. A request keeps its place in that count until fred
//! is done with it (the master answered, or the connection closed), whether or not anyone still
//! waits for the answer: the place rides in the request's first argument, which fred keeps
//! until then. So a paused master cannot make the client queue requests without bound.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Context;
use std::time::Duration;

use fred::bytes_utils::Str;
use fred::clients::{Client, WithOptions};
use fred::interfaces::ClientLike;
use fred::prelude::Options;
use fred::types::{ClusterHash, CustomCommand, Value};

use crate::protocol::error::{Blame, MasterError, MasterErrorKind};
use crate::protocol::key::{LockKey, RestartKeys, Token};
use crate::protocol::master::MasterResult as Result;
use crate::protocol::master::{Connection, Health, Inspection};
use crate::protocol::reply::{self, Unexpected};
use crate::protocol::scripts::{Loaded, SCRIPTS};

/// One connection to a master, through one fred client that never reconnects: the protocol's
/// scripts by EVALSHA, every request bounded by the per-request timeout and by how many may
/// wait for an answer at once (a request keeps its place until the master answers or the
/// connection closes, also after its caller stopped waiting). Cheap to clone.
#[derive(Clone)]
pub struct NodeConn {
    inner: Arc<ConnInner>,
}

struct ConnInner {
    id: u64,
    addr: String,
    client: Client,
    /// The client with the options every request is sent with (fail fast, one attempt).
    requests: WithOptions<Client>,
    timeout: Duration,
    limit: usize,
    in_flight: Arc<AtomicUsize>,
}

impl fmt::Debug for NodeConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConn")
            .field("addr", &self.inner.addr)
            .field("id", &self.inner.id)
            .field("in_flight", &self.inner.in_flight.load(Ordering::Relaxed))
            .finish()
    }
}

/// A place among the requests in flight; given back when dropped.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The first argument of a request, carrying the request's place in the count. fred keeps a
/// request's arguments until it is done with it (its answer, or the end of the connection), so
/// the place is given back exactly then, also for a request whose caller stopped waiting: a
/// timed-out or dropped request is simply dropped, and still counts while fred holds it.
struct Counted {
    text: fred::bytes::Bytes,
    _slot: Slot,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.text
    }
}

/// `first`, as a request's first argument carrying `slot`.
fn counted(first: &Value, slot: Slot) -> Value {
    let text = match first {
        Value::String(s) => s.inner().clone(),
        Value::Bytes(b) => b.clone(),
        // Every first argument here is text; another would count only while awaited.
        other => return other.clone(),
    };
    Value::Bytes(fred::bytes::Bytes::from_owner(Counted {
        text,
        _slot: slot,
    }))
}

/// An argument of a script, turned into a request argument for each request sent (twice when
/// the script has to be loaded first), so that nothing is cloned on the common path.
#[derive(Clone, Copy)]
enum Arg<'a> {
    Str(&'a str),
    /// A shared buffer: sent by reference count, not copied.
    Shared(&'a Str),
    Int(i64),
}

/// Why an EVALSHA did not return a result.
enum Retry {
    /// The master does not know the script (it restarted): load it and try again.
    NoScript,
    Failed(MasterError),
}

/// Milliseconds for PX/PEXPIRE and the restart delay: never 0, which Redis refuses for PX.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn command(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

impl NodeConn {
    /// Wraps a connected fred client; `id` is unique among the connections of the process.
    pub(crate) fn new(
        id: u64,
        addr: String,
        client: Client,
        timeout: Duration,
        limit: usize,
    ) -> NodeConn {
        // The per-request timeout is applied around each call (see `send`), not by fred.
        let requests = client.with_options(&Options {
            fail_fast: true,
            max_attempts: Some(1),
            ..Options::default()
        });
        NodeConn {
            inner: Arc::new(ConnInner {
                id,
                addr,
                client,
                requests,
                timeout,
                limit,
                in_flight: Arc::new(AtomicUsize::new(0)),
            }),
        }
    }

    /// Sends `SCRIPT LOAD` of every script without waiting for the answers: called before the
    /// connection is handed out, so that these are its first requests and no script request
    /// on it meets NOSCRIPT. A reload after NOSCRIPT is a second request sent later, which a
    /// request made in between would overtake (a release reloaded behind the next acquire
    /// would leave that acquire's lock in place); it stays only for a script cache flushed
    /// while the connection lives.
    pub(crate) fn preload(&self) {
        let s = &*SCRIPTS;
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for script in [
            &s.acquire, &s.raise, &s.extend, &s.release, &s.inspect, &s.health, &s.delay,
        ] {
            let load = vec![Value::String(Str::from_static("LOAD")), script.lua.clone()];
            // fred hands a command to its connection when the request is first polled: this
            // sends it now; the answer is not waited for.
            let mut call = Box::pin(
                self.inner
                    .requests
                    .custom::<Value, Value>(command("SCRIPT"), load),
            );
            let _ = call.as_mut().poll(&mut cx);
        }
    }

    /// The fred client of this connection, for anything this crate does not do.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// How many requests are waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    fn error(&self, blame: Blame<'_>, e: fred::error::Error) -> MasterError {
        MasterError::from_fred(&self.inner.addr, blame, self.inner.timeout, e)
    }

    fn unexpected(&self, what: Unexpected) -> MasterError {
        let cause = fred::error::Error::new(
            fred::error::ErrorKind::Parse,
            format!("unexpected reply: expected {}", what.0),
        );
        MasterError::new(&self.inner.addr, MasterErrorKind::Reply { cause })
    }

    /// Sends one command, bounded by the timeout and by the requests in flight: `limit` of
    /// them, or twice that for a release, so that the release that undoes a timed-out acquire
    /// (which keeps its place until the master answers) still goes out. Each release undoes at
    /// most one acquire, so what waits stays bounded.
    async fn send(
        &self,
        cmd: CustomCommand,
        mut args: Vec<Value>,
        blame: Blame<'_>,
        release: bool,
    ) -> Result<Value> {
        let inner = &*self.inner;
        let slot = Slot(inner.in_flight.clone());
        let limit = if release {
            inner.limit.saturating_mul(2)
        } else {
            inner.limit
        };
        if inner.in_flight.fetch_add(1, Ordering::AcqRel) >= limit {
            let limit = inner.limit;
            return Err(MasterError::new(
                &inner.addr,
                MasterErrorKind::Overloaded { limit },
            ));
        }
        if let Some(first) = args.first_mut() {
            *first = counted(first, slot);
        }
        // Boxed: fred's request futures are kilobytes, and a quorum round holds one per master.
        let call = Box::pin(inner.requests.custom::<Value, Value>(cmd, args));
        match crate::protocol::deadline::bounded(inner.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(blame, e)),
            Err(_) => Err(MasterError::new(
                &inner.addr,
                MasterErrorKind::Timeout {
                    timeout: inner.timeout,
                },
            )),
        }
    }

    /// Runs `script` by its hash, loading it once and trying again if the master lacks it.
    ///
    /// EVALSHA goes through fred's `custom` interface: fred sends its own `evalsha` unpipelined,
    /// which holds every later command to this master until the reply is in. A custom command
    /// is pipelined like any other, still written in the order it was made.
    async fn eval(
        &self,
        script: &Loaded,
        keys: &[&Str],
        args: &[Arg<'_>],
        blame: Blame<'_>,
    ) -> Result<Value> {
        let release = std::ptr::eq(script, &SCRIPTS.release);
        match self.evalsha(script, keys, args, blame, release).await {
            Err(Retry::NoScript) => {
                let load = vec![Value::String(Str::from_static("LOAD")), script.lua.clone()];
                self.send(command("SCRIPT"), load, Blame::Nothing, release)
                    .await?;
                match self.evalsha(script, keys, args, blame, release).await {
                    Err(Retry::NoScript) => Err(MasterError::reply(
                        &self.inner.addr,
                        "NOSCRIPT after SCRIPT LOAD",
                    )),
                    Err(Retry::Failed(e)) => Err(e),
                    Ok(r) => Ok(r),
                }
            }
            Err(Retry::Failed(e)) => Err(e),
            Ok(r) => Ok(r),
        }
    }

    async fn evalsha(
        &self,
        script: &Loaded,
        keys: &[&Str],
        args: &[Arg<'_>],
        blame: Blame<'_>,
        release: bool,
    ) -> Result<Value, Retry> {
        let mut all = Vec::with_capacity(2 + keys.len() + args.len());
        all.push(script.sha.clone());
        // The key count as ready text: fred encodes an integer argument through a float
        // logarithm and a digit conversion (docs/benchmarks.md).
        all.push(Value::String(Str::from_static(match keys.len() {
            1 => "1",
            _ => "2",
        })));
        all.extend(keys.iter().map(|k| Value::String((*k).clone())));
        all.extend(args.iter().map(|a| match *a {
            Arg::Str(s) => Value::from(s),
            Arg::Shared(s) => Value::String(s.clone()),
            Arg::Int(i) => Value::Integer(i),
        }));
        match self.send(command("EVALSHA"), all, blame, release).await {
            Err(e)
                if matches!(e.kind(), MasterErrorKind::Reply { cause }
                    if cause.details().starts_with("NOSCRIPT")) =>
            {
                Err(Retry::NoScript)
            }
            r => r.map_err(Retry::Failed),
        }
    }

    fn lock_keys(key: &LockKey) -> [&Str; 2] {
        [key.shared_key(), key.shared_fence_key()]
    }
}

impl Connection for NodeConn {
    fn id(&self) -> u64 {
        self.inner.id
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
        let reply = self
            .eval(
                &SCRIPTS.acquire,
                &Self::lock_keys(key),
                &args,
                Blame::Lock(key),
            )
            .await?;
        reply::fence(&reply).map_err(|e| self.unexpected(e))
    }

    async fn raise(&self, key: &LockKey, token: &Token, fence: u64) -> Result<bool> {
        let fence = i64::try_from(fence).unwrap_or(i64::MAX);
        let args = [Arg::Shared(token.shared()), Arg::Int(fence)];
        let reply = self
            .eval(
                &SCRIPTS.raise,
                &Self::lock_keys(key),
                &args,
                Blame::Lock(key),
            )
            .await?;
        reply::done(&reply).map_err(|e| self.unexpected(e))
    }

    async fn extend(&self, key: &LockKey, token: &Token, ttl: Duration) -> Result<bool> {
        let args = [Arg::Shared(token.shared()), Arg::Int(millis(ttl))];
        let reply = self
            .eval(
                &SCRIPTS.extend,
                &[key.shared_key()],
                &args,
                Blame::Lock(key),
            )
            .await?;
        reply::done(&reply).map_err(|e| self.unexpected(e))
    }

    async fn release(&self, key: &LockKey, token: &Token) -> Result<bool> {
        let args = [Arg::Shared(token.shared())];
        let reply = self
            .eval(
                &SCRIPTS.release,
                &[key.shared_key()],
                &args,
                Blame::Lock(key),
            )
            .await?;
        reply::done(&reply).map_err(|e| self.unexpected(e))
    }

    async fn inspect(&self, key: &LockKey) -> Result<Inspection> {
        let reply = self
            .eval(
                &SCRIPTS.inspect,
                &Self::lock_keys(key),
                &[],
                Blame::Lock(key),
            )
            .await?;
        reply::inspection(&reply).map_err(|e| self.unexpected(e))
    }

    async fn health(
        &self,
        keys: &RestartKeys,
        delay: Duration,
        persistence: bool,
    ) -> Result<Health> {
        let (incarnation, delay_key) = keys.shared();
        let args = [Arg::Int(millis(delay))];
        let both = [incarnation, delay_key];
        let info = |section: &'static str| {
            let args = vec![Value::String(Str::from_static(section))];
            self.send(command("INFO"), args, Blame::Nothing, false)
        };
        // Sent one after the other on the connection, answered in one round trip.
        let read = futures::future::join3(
            info("server"),
            info("persistence"),
            self.eval(&SCRIPTS.health, &both, &args, Blame::Restart(keys)),
        );
        let ((server, persisting, restart), policy) = if persistence {
            // The fsync policy is not in INFO.
            let config = vec![
                Value::String(Str::from_static("GET")),
                Value::String(Str::from_static("appendfsync")),
            ];
            let policy = self.send(command("CONFIG"), config, Blame::Nothing, false);
            let (read, policy) = futures::future::join(read, policy).await;
            let policy = reply::fsync_policy(&policy?).map_err(|e| self.unexpected(e))?;
            (read, Some(policy))
        } else {
            (read.await, None)
        };
        reply::health(&server?, &persisting?, &restart?, policy.as_deref())
            .map_err(|e| self.unexpected(e))
    }

    async fn restart_delay(&self, keys: &RestartKeys, delay: Duration) -> Result<Duration> {
        let (incarnation, delay_key) = keys.shared();
        let args = [Arg::Int(millis(delay))];
        let reply = self
            .eval(
                &SCRIPTS.delay,
                &[incarnation, delay_key],
                &args,
                Blame::Restart(keys),
            )
            .await?;
        reply::millis(&reply).ok_or_else(|| self.unexpected(Unexpected("a restart delay")))
    }

    async fn vouch(&self, keys: &RestartKeys, run_id: &str) -> Result<()> {
        let (incarnation, _) = keys.shared();
        let args = vec![Value::String(incarnation.clone()), Value::from(run_id)];
        self.send(command("SET"), args, Blame::Restart(keys), false)
            .await
            .map(drop)
    }
}
