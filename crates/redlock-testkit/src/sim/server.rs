//! [`SimServer`]: the simulated master itself: its data, its wall clock, its runs (a crash
//! ends one), and the faults it injects; the connections of [`SimNode`](super::SimNode) apply
//! their requests to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use redlock_single::{Holder, Token};
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

/// The wall clock of a simulated master at its start: 2026-12-01, in ms since the epoch.
pub(crate) const EPOCH_MS: f64 = 1_796_083_200_000.0;

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) addr: String,
    /// Lock key → (value, expiry in master-clock ms).
    pub(crate) keys: HashMap<String, (String, f64)>,
    pub(crate) counters: HashMap<String, u64>,
    /// Keys without expiry that are not counters: the restart guard's.
    pub(crate) strings: HashMap<String, String>,
    /// Whether the current run keeps its data through a crash.
    pub(crate) persistent: bool,
    pub(crate) up: bool,
    pub(crate) started: Instant,
    pub(crate) restarts: u64,
    /// Master clock: `clock_base_ms + (now − clock_anchor) × rate`.
    pub(crate) clock_anchor: Instant,
    pub(crate) clock_base_ms: f64,
    pub(crate) rate: f64,
    pub(crate) faults: Faults,
    pub(crate) rng: StdRng,
}

impl State {
    pub(crate) fn now_ms(&self) -> f64 {
        let real = Instant::now().saturating_duration_since(self.clock_anchor);
        self.clock_base_ms + real.as_secs_f64() * 1000.0 * self.rate
    }

    pub(crate) fn live_value(&mut self, key: &str) -> Option<String> {
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

    pub(crate) fn holds(&mut self, key: &str, token: &Token) -> bool {
        self.live_value(key)
            .is_some_and(|v| Holder::parse(&v).is(token))
    }

    pub(crate) fn run_id(&self) -> String {
        format!("{}-run-{}", self.addr, self.restarts)
    }

    /// Raises the restart delay under `key` to `ms` and returns the master's value.
    pub(crate) fn raise_delay(&mut self, key: &str, ms: u64) -> Duration {
        let held = self
            .strings
            .get(key)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let d = held.max(ms);
        self.strings.insert(key.to_owned(), d.to_string());
        Duration::from_millis(d)
    }
}

/// One simulated master, shared by the [`SimNode`](super::SimNode)s of several clients.
#[derive(Debug, Clone)]
pub struct SimServer {
    pub(crate) state: Arc<Mutex<State>>,
}

impl SimServer {
    /// A master named `addr`, up, with a real-rate clock, no faults and a generator seeded
    /// with `seed`. A `persistent` master keeps its data across a crash.
    pub fn new(addr: impl Into<String>, persistent: bool, seed: u64) -> SimServer {
        let now = Instant::now();
        SimServer {
            state: Arc::new(Mutex::new(State {
                addr: addr.into(),
                keys: HashMap::new(),
                counters: HashMap::new(),
                strings: HashMap::new(),
                persistent,
                up: true,
                started: now,
                restarts: 0,
                clock_anchor: now,
                clock_base_ms: EPOCH_MS,
                rate: 1.0,
                faults: Faults::default(),
                rng: StdRng::seed_from_u64(seed),
            })),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Moves the master's clock by `ms` milliseconds at once (negative: back).
    pub fn shift_clock(&self, ms: f64) {
        let mut s = self.state();
        s.clock_base_ms = s.now_ms() + ms;
        s.clock_anchor = Instant::now();
    }

    /// The master's clock now, in ms since the epoch.
    pub fn clock_ms(&self) -> f64 {
        self.state().now_ms()
    }

    /// Crashes the master: it stops answering, every connection breaks, and unless the run that
    /// crashed was persistent it forgets every key and counter.
    pub fn crash(&self) {
        let mut s = self.state();
        s.up = false;
        if !s.persistent {
            s.keys.clear();
            s.counters.clear();
            s.strings.clear();
        }
    }

    /// Starts a crashed master again (a new run id, uptime from zero), with the same
    /// persistence. Keys that a persistent master kept expire by its clock as usual.
    pub fn restart(&self) {
        let persistent = self.state().persistent;
        self.restart_with(persistent);
    }

    /// Starts a crashed master again, persistent from now on or not: switching persistence
    /// across a restart, as an operator does after an incident.
    pub fn restart_with(&self, persistent: bool) {
        let mut s = self.state();
        s.up = true;
        s.persistent = persistent;
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
