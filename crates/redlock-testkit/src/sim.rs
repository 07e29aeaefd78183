//! [`SimServer`] and [`SimNode`]: an in-memory model of one master and of one client's
//! connection to it, for property tests of the quorum algorithm. Not a stand-in for Redis in
//! end-to-end tests: it models what the algorithm relies on and the faults it must survive.
//!
//! Time is tokio's, so tests run it paused (`start_paused`) and a schedule of minutes takes
//! milliseconds. The master keeps its own clock, which may run at another rate; keys expire by
//! it. A connection applies its requests in the order they were made, each after a random
//! delay; a request may be lost on the way, a reply may be lost on the way back (the request
//! was applied), and a request that the client timed out on still runs, as on a real master.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redlock_single::{Error, Health, Holder, Inspection, LockKey, Master, Result, Token};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The faults a server injects into every request, drawn from its seeded generator.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Probability that a request never reaches the master.
    pub lose_request: f64,
    /// Probability that the master applies a request but the reply never arrives.
    pub lose_reply: f64,
    /// Each way, a request or reply takes a uniform delay up to this.
    pub max_delay: Duration,
}

#[derive(Debug)]
struct State {
    addr: String,
    /// Lock key → (value, expiry in master-clock ms).
    keys: HashMap<String, (String, f64)>,
    counters: HashMap<String, u64>,
    persistent: bool,
    up: bool,
    started: Instant,
    restarts: u64,
    /// Master clock: `clock_base_ms + (now − clock_anchor) × rate`.
    clock_anchor: Instant,
    clock_base_ms: f64,
    rate: f64,
    faults: Faults,
    rng: StdRng,
}

impl State {
    fn now_ms(&self) -> f64 {
        let real = Instant::now().saturating_duration_since(self.clock_anchor);
        self.clock_base_ms + real.as_secs_f64() * 1000.0 * self.rate
    }

    fn live_value(&mut self, key: &str) -> Option<String> {
        let now = self.now_ms();
        match self.keys.get(key) {
            Some((_, expiry)) if *expiry <= now => {
                self.keys.remove(key);
                None
            }
            Some((v, _)) => Some(v.clone()),
            None => None,
        }
    }

    fn holds(&mut self, key: &str, token: &Token) -> bool {
        self.live_value(key)
            .is_some_and(|v| Holder::parse(&v).is(token))
    }
}

/// One simulated master, shared by the [`SimNode`] connections of several clients.
#[derive(Debug, Clone)]
pub struct SimServer {
    state: Arc<Mutex<State>>,
}

impl SimServer {
    /// A master named `addr`, up, with a real-rate clock, no faults and a generator seeded
    /// with `seed`. `persistent` masters keep keys and counters across a crash.
    pub fn new(addr: impl Into<String>, persistent: bool, seed: u64) -> SimServer {
        let now = Instant::now();
        SimServer {
            state: Arc::new(Mutex::new(State {
                addr: addr.into(),
                keys: HashMap::new(),
                counters: HashMap::new(),
                persistent,
                up: true,
                started: now,
                restarts: 0,
                clock_anchor: now,
                clock_base_ms: 0.0,
                rate: 1.0,
                faults: Faults::default(),
                rng: StdRng::seed_from_u64(seed),
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A client connection with a per-request timeout.
    pub fn connect(&self, timeout: Duration) -> SimNode {
        SimNode {
            addr: self.state().addr.clone(),
            server: self.clone(),
            timeout,
            next_apply: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Sets the faults injected from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    /// Makes the master's clock run at `rate` times real time from now on.
    pub fn set_rate(&self, rate: f64) {
        let mut s = self.state();
        s.clock_base_ms = s.now_ms();
        s.clock_anchor = Instant::now();
        s.rate = rate;
    }

    /// Crashes the master: it stops answering, and unless persistent it forgets every key and
    /// counter.
    pub fn crash(&self) {
        let mut s = self.state();
        s.up = false;
        if !s.persistent {
            s.keys.clear();
            s.counters.clear();
        }
    }

    /// Starts a crashed master again (a new run id, uptime from zero). Keys that a persistent
    /// master kept expire by its clock as usual.
    pub fn restart(&self) {
        let mut s = self.state();
        s.up = true;
        s.started = Instant::now();
        s.restarts += 1;
    }

    /// Whether the master answers.
    pub fn is_up(&self) -> bool {
        self.state().up
    }

    /// The lock keys that are live now (not expired by the master's clock).
    pub fn live_keys(&self) -> Vec<String> {
        let mut s = self.state();
        let keys: Vec<String> = s.keys.keys().cloned().collect();
        keys.into_iter()
            .filter(|k| s.live_value(k).is_some())
            .collect()
    }

    /// The fencing counter of a fence key.
    pub fn counter(&self, fence_key: &str) -> u64 {
        self.state().counters.get(fence_key).copied().unwrap_or(0)
    }
}

/// One client's connection to a [`SimServer`]: implements [`Master`].
#[derive(Debug, Clone)]
pub struct SimNode {
    addr: String,
    server: SimServer,
    timeout: Duration,
    /// When the last request made on this connection is applied: later ones wait for it.
    next_apply: Arc<Mutex<Instant>>,
}

/// A request applied to the master's state.
type Op = Box<dyn FnOnce(&mut State) -> Result<Reply> + Send>;

#[derive(Debug)]
enum Reply {
    Fence(Option<u64>),
    Done(bool),
    Seen(Inspection),
    Health(Health),
}

impl SimNode {
    fn unreachable(&self) -> Error {
        // A connection refused, as fred reports it.
        redlock_single::Error::Unreachable {
            addr: self.addr.clone(),
            source: fred_io_error(),
        }
    }

    /// Sends `op`: it is applied after a random delay, in order with this connection's other
    /// requests, unless lost; the reply comes back after another delay unless lost. The caller
    /// waits at most the timeout; the request runs whether or not it waits.
    async fn request(&self, op: Op) -> Result<Reply> {
        let (apply_at, reply_delay, lose_request, lose_reply) = {
            let mut s = self.server.state();
            if !s.up {
                return Err(self.unreachable());
            }
            let f = s.faults;
            let there = random_delay(&mut s.rng, f.max_delay);
            let back = random_delay(&mut s.rng, f.max_delay);
            let lose_request = s.rng.random_bool(f.lose_request.clamp(0.0, 1.0));
            let lose_reply = s.rng.random_bool(f.lose_reply.clamp(0.0, 1.0));
            let mut next = self
                .next_apply
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let apply_at = (Instant::now() + there).max(*next);
            *next = apply_at;
            (apply_at, back, lose_request, lose_reply)
        };
        let (tx, rx) = oneshot::channel();
        let server = self.server.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(apply_at).await;
            if lose_request {
                return;
            }
            let reply = {
                let mut s = server.state();
                if !s.up {
                    return;
                }
                op(&mut s)
            };
            tokio::time::sleep(reply_delay).await;
            if !lose_reply {
                let _ = tx.send(reply);
            }
        });
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(reply)) => reply,
            // The reply was lost, or the master crashed before answering: the client only
            // sees the timeout.
            Ok(Err(_)) => {
                tokio::time::sleep_until(Instant::now() + self.timeout).await;
                Err(self.timed_out())
            }
            Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> Error {
        Error::Timeout {
            addr: self.addr.clone(),
            timeout: self.timeout,
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

fn fred_io_error() -> redlock_single::fred::error::Error {
    redlock_single::fred::error::Error::new(
        redlock_single::fred::error::ErrorKind::IO,
        "simulated: the master is down",
    )
}

fn wrong_reply(what: &str) -> Error {
    Error::Config(format!("simulated master gave the wrong reply to {what}"))
}

impl Master for SimNode {
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
        let (k, f) = (key.key().to_owned(), key.fence_key().to_owned());
        let value = if meta.is_empty() {
            token.as_str().to_owned()
        } else {
            format!("{} {meta}", token.as_str())
        };
        let ttl_ms = ttl.as_secs_f64() * 1000.0;
        let op: Op = Box::new(move |s| {
            if s.live_value(&k).is_some() {
                return Ok(Reply::Fence(None));
            }
            let expiry = s.now_ms() + ttl_ms;
            s.keys.insert(k, (value, expiry));
            let c = s.counters.entry(f).or_insert(0);
            *c += 1;
            Ok(Reply::Fence(Some(*c)))
        });
        match self.request(op).await? {
            Reply::Fence(f) => Ok(f),
            _ => Err(wrong_reply("acquire")),
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
            _ => Err(wrong_reply("raise")),
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
            _ => Err(wrong_reply("extend")),
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
            _ => Err(wrong_reply("release")),
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
            _ => Err(wrong_reply("inspect")),
        }
    }

    async fn health(&self) -> Result<Health> {
        let op: Op = Box::new(|s| {
            Ok(Reply::Health(Health {
                run_id: format!("{}-run-{}", s.addr, s.restarts),
                uptime: Instant::now().saturating_duration_since(s.started),
                persists_every_write: s.persistent,
            }))
        });
        match self.request(op).await? {
            Reply::Health(h) => Ok(h),
            _ => Err(wrong_reply("health")),
        }
    }

    fn epoch(&self) -> u64 {
        // A restart drops every connection; the client reconnects, which is a new epoch.
        self.server.state().restarts
    }
}
