//! [`SimServer`] and [`SimNode`]: an in-memory model of one master and of one client's
//! connections to it, for property tests of the quorum algorithm. Not a stand-in for Redis in
//! end-to-end tests: it models what the algorithm relies on and the faults it must survive.
//!
//! Time is tokio's, so tests run it paused (`start_paused`) and a schedule of minutes takes
//! milliseconds. The master keeps its own wall clock (a realistic epoch, an offset, a rate); keys
//! expire by it and the hybrid fencing counter reads its seconds. A connection applies its
//! requests in the order they were made, each after a random delay; a request may be lost on
//! the way, a reply may be lost on the way back (the request was applied), and a request that
//! the client timed out on still runs, as on a real master. A crash breaks every connection;
//! the master forgets its data unless the run that crashed was persistent, whatever the next
//! run is.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use redlock_single::protocol::{
    Connection, Health, Holder, Inspection, LockKey, Master, MasterError, MasterErrorKind,
    MasterResult as Result, RestartKeys, Token,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

mod server;

use self::server::State;
pub use self::server::{Faults, SimServer};

/// One client's view of a [`SimServer`]: implements [`Master`]. It is connected whenever the
/// server is up; a crash breaks the connection, and the next one is new.
#[derive(Debug, Clone)]
pub struct SimNode {
    addr: String,
    server: SimServer,
    timeout: Duration,
    /// When the last request made to this master is applied: later ones wait for it.
    next_apply: Arc<Mutex<Instant>>,
}

/// One connection of a [`SimNode`]: the server's run it was made to.
#[derive(Debug, Clone)]
pub struct SimConn {
    node: SimNode,
    run: u64,
}

/// A request applied to the master's state.
type Op = Box<dyn FnOnce(&mut State) -> Result<Reply> + Send>;

#[derive(Debug)]
enum Reply {
    Fence(Option<u64>),
    Done(bool),
    Seen(Inspection),
    Health(Health),
    Delay(Duration),
}

fn fred_io_error(what: &str) -> redlock_single::fred::error::Error {
    redlock_single::fred::error::Error::new(
        redlock_single::fred::error::ErrorKind::IO,
        format!("simulated: {what}"),
    )
}

impl SimServer {
    /// A client's view of this master, with a per-request timeout.
    pub fn connect(&self, timeout: Duration) -> SimNode {
        SimNode {
            addr: self.state().addr.clone(),
            server: self.clone(),
            timeout,
            next_apply: Arc::new(Mutex::new(Instant::now())),
        }
    }
}

impl SimNode {
    fn unreachable(&self, what: &str) -> MasterError {
        let cause = fred_io_error(what);
        MasterError::new(&self.addr, MasterErrorKind::Unreachable { cause })
    }

    fn timed_out(&self) -> MasterError {
        let timeout = self.timeout;
        MasterError::new(&self.addr, MasterErrorKind::Timeout { timeout })
    }
}

impl SimConn {
    /// Sends `op`: it is applied after a random delay, in order with this master's other
    /// requests, unless lost or unless the master restarted since the connection was made; the
    /// reply comes back after another delay unless lost. The caller waits at most the timeout;
    /// the request runs whether or not it waits.
    async fn request(&self, op: Op) -> Result<Reply> {
        let node = &self.node;
        let (apply_at, reply_delay, lose_request, lose_reply) = {
            let mut s = node.server.state();
            if !s.up || s.restarts != self.run {
                return Err(node.unreachable("the connection broke"));
            }
            let f = s.faults;
            let there = random_delay(&mut s.rng, f.max_delay);
            let back = random_delay(&mut s.rng, f.max_delay);
            let lose_request = s.rng.random_bool(f.lose_request.clamp(0.0, 1.0));
            let lose_reply = s.rng.random_bool(f.lose_reply.clamp(0.0, 1.0));
            let mut next = node
                .next_apply
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let apply_at = (Instant::now() + there).max(*next);
            *next = apply_at;
            (apply_at, back, lose_request, lose_reply)
        };
        let (tx, rx) = oneshot::channel();
        let (server, run) = (node.server.clone(), self.run);
        tokio::spawn(async move {
            tokio::time::sleep_until(apply_at).await;
            if lose_request {
                return;
            }
            let reply = {
                let mut s = server.state();
                if !s.up || s.restarts != run {
                    return;
                }
                op(&mut s)
            };
            tokio::time::sleep(reply_delay).await;
            if !lose_reply {
                let _ = tx.send(reply);
            }
        });
        match tokio::time::timeout(node.timeout, rx).await {
            Ok(Ok(reply)) => reply,
            // The reply was lost, or the master crashed before answering: the client only
            // sees the timeout.
            Ok(Err(_)) => {
                tokio::time::sleep_until(Instant::now() + node.timeout).await;
                Err(node.timed_out())
            }
            Err(_) => Err(node.timed_out()),
        }
    }
}

fn random_delay(rng: &mut StdRng, max: Duration) -> Duration {
    if max.is_zero() {
        Duration::ZERO
    } else {
        rng.random_range(Duration::ZERO..=max)
    }
}

impl SimConn {
    fn wrong_reply(&self, what: &str) -> MasterError {
        let cause = redlock_single::fred::error::Error::new(
            redlock_single::fred::error::ErrorKind::Parse,
            format!("simulated master gave the wrong reply to {what}"),
        );
        MasterError::new(&self.node.addr, MasterErrorKind::Reply { cause })
    }
}

impl Master for SimNode {
    type Conn = SimConn;

    fn addr(&self) -> &str {
        &self.addr
    }

    fn connection(&self) -> Result<SimConn> {
        let s = self.server.state();
        if s.up {
            Ok(SimConn {
                node: self.clone(),
                run: s.restarts,
            })
        } else {
            Err(self.unreachable("the master is down"))
        }
    }

    async fn ready(&self) -> Result<()> {
        self.connection().map(drop)
    }
}

impl Connection for SimConn {
    fn id(&self) -> u64 {
        // Each run of the server gets one connection, newer runs larger ids.
        self.run + 1
    }

    async fn acquire(
        &self,
        key: &LockKey,
        token: &Token,
        ttl: Duration,
        meta: &str,
    ) -> Result<Option<u64>> {
        let (k, f) = (key.key().to_owned(), key.fence_key().to_owned());
        let value = token.value_with(meta);
        let ttl_ms = ttl.as_secs_f64() * 1000.0;
        let op: Op = Box::new(move |s| {
            if s.live_value(&k).is_some() {
                return Ok(Reply::Fence(None));
            }
            let now = s.now_ms();
            s.keys.insert(k, (value, now + ttl_ms));
            // The hybrid counter: max(counter + 1, whole seconds × 1,000,000).
            let floor = (now / 1000.0).floor() as u64 * 1_000_000;
            let c = s.counters.entry(f).or_insert(0);
            *c = (*c + 1).max(floor);
            Ok(Reply::Fence(Some(*c)))
        });
        match self.request(op).await? {
            Reply::Fence(f) => Ok(f),
            _ => Err(self.wrong_reply("acquire")),
        }
    }

    async fn raise(&self, key: &LockKey, token: &Token, fence: u64) -> Result<bool> {
        let (k, f, token) = (
            key.key().to_owned(),
            key.fence_key().to_owned(),
            token.clone(),
        );
        let op: Op = Box::new(move |s| {
            if !s.holds(&k, &token) {
                return Ok(Reply::Done(false));
            }
            let c = s.counters.entry(f).or_insert(0);
            *c = (*c).max(fence);
            Ok(Reply::Done(true))
        });
        match self.request(op).await? {
            Reply::Done(d) => Ok(d),
            _ => Err(self.wrong_reply("raise")),
        }
    }

    async fn extend(&self, key: &LockKey, token: &Token, ttl: Duration) -> Result<bool> {
        let (k, token) = (key.key().to_owned(), token.clone());
        let ttl_ms = ttl.as_secs_f64() * 1000.0;
        let op: Op = Box::new(move |s| {
            if !s.holds(&k, &token) {
                return Ok(Reply::Done(false));
            }
            let expiry = s.now_ms() + ttl_ms;
            if let Some(entry) = s.keys.get_mut(&k) {
                entry.1 = expiry;
            }
            Ok(Reply::Done(true))
        });
        match self.request(op).await? {
            Reply::Done(d) => Ok(d),
            _ => Err(self.wrong_reply("extend")),
        }
    }

    async fn release(&self, key: &LockKey, token: &Token) -> Result<bool> {
        let (k, token) = (key.key().to_owned(), token.clone());
        let op: Op = Box::new(move |s| {
            if !s.holds(&k, &token) {
                return Ok(Reply::Done(false));
            }
            s.keys.remove(&k);
            Ok(Reply::Done(true))
        });
        match self.request(op).await? {
            Reply::Done(d) => Ok(d),
            _ => Err(self.wrong_reply("release")),
        }
    }

    async fn inspect(&self, key: &LockKey) -> Result<Inspection> {
        let (k, f) = (key.key().to_owned(), key.fence_key().to_owned());
        let op: Op = Box::new(move |s| {
            let now = s.now_ms();
            let holder = s.live_value(&k).map(|v| Holder::parse(&v));
            let ttl = s
                .keys
                .get(&k)
                .map(|(_, expiry)| Duration::from_secs_f64(((expiry - now) / 1000.0).max(0.0)));
            let fence = s.counters.get(&f).copied().unwrap_or(0);
            Ok(Reply::Seen(Inspection { holder, ttl, fence }))
        });
        match self.request(op).await? {
            Reply::Seen(i) => Ok(i),
            _ => Err(self.wrong_reply("inspect")),
        }
    }

    async fn health(
        &self,
        keys: &RestartKeys,
        delay: Duration,
        persistence: bool,
    ) -> Result<Health> {
        let (inc, dk) = (keys.incarnation().to_owned(), keys.delay().to_owned());
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let op: Op = Box::new(move |s| {
            let restart_delay = s.raise_delay(&dk, ms);
            // Whole seconds, rounded down, as INFO reports them.
            let up = Instant::now().saturating_duration_since(s.started);
            Ok(Reply::Health(Health {
                run_id: s.run_id(),
                uptime: Duration::from_secs(up.as_secs()),
                persists_every_write: persistence.then_some(s.persistent),
                incarnation: s.strings.get(&inc).cloned(),
                restart_delay,
            }))
        });
        match self.request(op).await? {
            Reply::Health(h) => Ok(h),
            _ => Err(self.wrong_reply("health")),
        }
    }

    async fn restart_delay(&self, keys: &RestartKeys, delay: Duration) -> Result<Duration> {
        let dk = keys.delay().to_owned();
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let op: Op = Box::new(move |s| Ok(Reply::Delay(s.raise_delay(&dk, ms))));
        match self.request(op).await? {
            Reply::Delay(d) => Ok(d),
            _ => Err(self.wrong_reply("restart_delay")),
        }
    }

    async fn vouch(&self, keys: &RestartKeys, run_id: &str) -> Result<()> {
        let (inc, run_id) = (keys.incarnation().to_owned(), run_id.to_owned());
        let op: Op = Box::new(move |s| {
            s.strings.insert(inc, run_id);
            Ok(Reply::Done(true))
        });
        self.request(op).await.map(drop)
    }
}
