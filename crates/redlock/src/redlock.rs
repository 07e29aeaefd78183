//! [`Redlock`] and its builder: the quorum algorithm of `DESIGN.md` over N masters.
//!
//! One attempt: a fresh token; acquire sent to every voting master at once; settled as soon as
//! a quorum said yes or can no longer say yes; validity `ttl − elapsed − drift`; the fencing
//! token as the largest counter, with a raise round only when fewer than a quorum already hold
//! it; on failure, release sent to all N masters in the background.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use redlock_single::validity::{DEFAULT_DRIFT_FACTOR, drift, validity};
use redlock_single::{DEFAULT_PREFIX, Inspection, LockKey, Master, Node, Retry, Token};
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::{Cause, Error, Failures, MasterFailure, Result};
use crate::guard::Guard;
use crate::restart::Standing;
use crate::tally::{Tally, Verdict, plan_fence, quorum};

/// The default ttl of a lock.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The default retry policy of [`Redlock::acquire`]: exponential backoff from 10 ms to 500 ms,
/// giving up after 10 s.
pub const DEFAULT_RETRY: Retry = redlock_single::DEFAULT_RETRY;

/// The default bound on connecting to the masters.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One master and what the client knows of its restarts.
#[derive(Debug)]
pub(crate) struct Member<M> {
    pub(crate) master: Arc<M>,
    standing: Mutex<Standing>,
}

/// Settings and masters shared by every lock taken through one [`Redlock`].
#[derive(Debug)]
pub(crate) struct Shared<M> {
    pub(crate) members: Vec<Member<M>>,
    pub(crate) ttl: Duration,
    retry: Retry,
    prefix: String,
    meta: String,
    pub(crate) drift_factor: f64,
    restart_guard: bool,
    /// The largest ttl in use, in ms: a restarted master waits this long before it votes.
    max_ttl_ms: AtomicU64,
    pub(crate) max_extensions: Option<u32>,
    pub(crate) max_hold: Option<Duration>,
    /// The least validity an acquisition must leave to count.
    min_validity: Duration,
}

impl<M: Master> Shared<M> {
    pub(crate) fn quorum(&self) -> usize {
        quorum(self.members.len())
    }

    pub(crate) fn note_ttl(&self, ttl: Duration) {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.max_ttl_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn max_ttl(&self) -> Duration {
        Duration::from_millis(self.max_ttl_ms.load(Ordering::Relaxed))
    }

    /// Sends release to every master in the background. Requests to one master share its
    /// connection, so each release runs after whatever this lock sent that master before.
    pub(crate) fn spawn_release_all(self: &Arc<Self>, key: LockKey, token: Token) {
        self.spawn_release(&Arc::new((key, token)), &vec![true; self.members.len()]);
    }

    /// Sends release in the background to the masters `which` marks.
    fn spawn_release(self: &Arc<Self>, lock: &Arc<(LockKey, Token)>, which: &[bool]) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for (m, _) in self.members.iter().zip(which).filter(|(_, w)| **w) {
            let (master, lock) = (m.master.clone(), lock.clone());
            handle.spawn(async move {
                if let Err(e) = master.release(&lock.0, &lock.1).await {
                    tracing::debug!(master = master.addr(), error = %e,
                        "background release failed; the key expires at the end of its ttl");
                }
            });
        }
    }

    /// Which masters may vote now: `Ok(epoch)` (the connection epoch the decision holds
    /// for), or why not. Reads the health of the masters whose connection is new since the last
    /// reading, all at once; in steady state it reads nothing.
    async fn voters(&self) -> Vec<Result<u64, Cause>> {
        let now = Instant::now();
        let mut verdicts = Vec::with_capacity(self.members.len());
        let mut to_check = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            let epoch = m.master.epoch();
            if !self.restart_guard {
                verdicts.push(Ok(epoch));
                continue;
            }
            let standing = lock(&m.standing);
            if standing.needs_check(epoch) {
                if let Some(recheck_in) = standing.recheck_in(epoch, now) {
                    // Its last reading failed a moment ago: do not wait for it again yet.
                    verdicts.push(Err(Cause::Unverified { recheck_in }));
                    continue;
                }
                to_check.push((i, epoch));
            }
            verdicts.push(may_vote(&standing, epoch, now));
        }
        if to_check.is_empty() {
            return verdicts;
        }
        let checks = to_check.iter().map(|&(i, epoch)| async move {
            let m = &self.members[i];
            let health = match m.master.health().await {
                Ok(h) => h,
                Err(e) => {
                    lock(&m.standing).reading_failed(epoch, Instant::now());
                    return (i, Err(Cause::Failed(e)));
                }
            };
            let mut standing = lock(&m.standing);
            let votes_from = standing.observe(&health, epoch, now, self.max_ttl());
            if votes_from > now {
                tracing::info!(master = m.master.addr(), run_id = %health.run_id,
                    uptime = ?health.uptime, votes_in = ?(votes_from - now),
                    "master may have lost locks in a restart; it does not vote until then");
            }
            (i, may_vote(&standing, epoch, Instant::now()))
        });
        for (i, verdict) in futures::future::join_all(checks).await {
            verdicts[i] = verdict;
        }
        verdicts
    }
}

/// Whether a master with `standing` may vote at `now` on connection `epoch`.
fn may_vote(standing: &Standing, epoch: u64, now: Instant) -> Result<u64, Cause> {
    match standing.wait(now) {
        Some(wait) if !wait.is_zero() => Err(Cause::Restarting { ready_in: wait }),
        _ => Ok(epoch),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Locks over a quorum of independent Redis masters.
///
/// Cheap to clone: clones share the connections. See the [crate docs](crate) for an overview.
///
/// ```no_run
/// # async fn demo() -> redlock::Result<()> {
/// use std::time::Duration;
/// use redlock::{Redlock, Retry};
///
/// let locks = Redlock::builder()
///     .nodes(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])
///     .ttl(Duration::from_secs(10))
///     .retry(Retry::exponential(Duration::from_millis(10), Duration::from_millis(500))
///         .deadline(Duration::from_secs(5)))
///     .connect()
///     .await?;
/// let guard = locks.acquire("invoices/42").await?;
/// println!("fence {}", guard.fence());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Redlock<M: Master = Node> {
    shared: Arc<Shared<M>>,
}

impl<M: Master> Clone for Redlock<M> {
    fn clone(&self) -> Self {
        Redlock {
            shared: self.shared.clone(),
        }
    }
}

impl Redlock<Node> {
    /// A builder with the defaults: ttl 10 s, [`DEFAULT_RETRY`], prefix `redlock:`, no metadata,
    /// per-master timeout `ttl / 200` (between 5 ms and 1 s), drift factor 0.01, restart guard on.
    pub fn builder() -> RedlockBuilder {
        RedlockBuilder::default()
    }
}

/// What one attempt came to.
enum Attempt<M: Master> {
    Acquired(Guard<M>),
    Failed(Error),
}

/// A master's answer in one round.
enum Answer<T> {
    Yes(T),
    No,
    Failed(Cause),
}

impl<M: Master> Redlock<M> {
    /// The masters, in the order given.
    pub fn masters(&self) -> impl Iterator<Item = &M> {
        self.shared.members.iter().map(|m| &*m.master)
    }

    /// The quorum, `N/2 + 1`.
    pub fn quorum(&self) -> usize {
        self.shared.quorum()
    }

    /// The ttl of every lock taken here.
    pub fn ttl(&self) -> Duration {
        self.shared.ttl
    }

    /// Makes one attempt: `Ok(Some(guard))` if a quorum granted the lock, `Ok(None)` if enough
    /// masters said someone else holds it. Fails with [`Error::NoQuorum`] when too few masters
    /// answered, and with [`Error::TooSlow`] when the quorum answered too late to rely on.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if the future is dropped after requests were sent, a release to every
    /// master follows them in the background, on the same connections.
    pub async fn try_acquire(&self, resource: &str) -> Result<Option<Guard<M>>> {
        let key = self.key(resource)?;
        match self.attempt(resource, &key, 1).await {
            Attempt::Acquired(guard) => Ok(Some(guard)),
            Attempt::Failed(Error::Held { .. }) => Ok(None),
            Attempt::Failed(e) => Err(e),
        }
    }

    /// Takes the lock, waiting for it per the retry policy. Fails with the last attempt's
    /// error when the policy gives up: [`Error::Held`], [`Error::NoQuorum`] or
    /// [`Error::TooSlow`]. Bad input fails at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future at any point releases whatever it had taken, in the
    /// background.
    pub async fn acquire(&self, resource: &str) -> Result<Guard<M>> {
        let key = self.key(resource)?;
        let start = Instant::now();
        let mut schedule = self.shared.retry.schedule();
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let failure = match self.attempt(resource, &key, attempt).await {
                Attempt::Acquired(guard) => return Ok(guard),
                Attempt::Failed(e) if e.is_transient() => e,
                Attempt::Failed(e) => return Err(e),
            };
            let delay = schedule.next_delay(start.elapsed(), &mut rand::rng());
            match delay {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(failure),
            }
        }
    }

    /// Takes the lock (waiting per the retry policy), runs `work` while keeping the lock
    /// extended every third of the ttl, releases the lock and returns what `work` returned.
    ///
    /// If the lock is lost (an extension is refused by a quorum, the validity runs out while
    /// the masters do not answer, or a cap set on the builder is reached), `work` is dropped at
    /// its next await point and [`Error::Lost`] is returned. An extension in flight when `work`
    /// ends is awaited before the release. A failed release at the end is logged, not
    /// returned: the work is done, and the ttl ends the lock.
    ///
    /// ```no_run
    /// # async fn demo(locks: redlock::Redlock) -> redlock::Result<()> {
    /// let fence = locks
    ///     .with_lock("reports/daily", |lease| async move { lease.fence() })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future drops `work` and releases the lock in the background.
    pub async fn with_lock<F, Fut, T>(&self, resource: &str, work: F) -> Result<T>
    where
        F: FnOnce(redlock_single::Lease) -> Fut,
        Fut: Future<Output = T>,
    {
        let guard = self.acquire(resource).await?;
        let work = work(guard.lease());
        match guard.keep_extended(work, self.shared.ttl).await {
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

    /// Asks every master who holds `resource`, how long its key has left and its fencing
    /// counter; one entry per master, in order, with the master's own error if it failed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn inspect(
        &self,
        resource: &str,
    ) -> Result<Vec<(String, redlock_single::Result<Inspection>)>> {
        let key = self.key(resource)?;
        let reads = self.shared.members.iter().map(|m| {
            let key = &key;
            async move { (m.master.addr().to_owned(), m.master.inspect(key).await) }
        });
        Ok(futures::future::join_all(reads).await)
    }

    fn key(&self, resource: &str) -> Result<LockKey> {
        Ok(LockKey::new(&self.shared.prefix, resource)?)
    }

    async fn attempt(&self, resource: &str, key: &LockKey, attempt: u32) -> Attempt<M> {
        let span = tracing::debug_span!("redlock.attempt", resource, attempt);
        // Entering a disabled span on every poll costs more than the check.
        if span.is_disabled() {
            self.attempt_inner(resource, key).await
        } else {
            self.attempt_inner(resource, key).instrument(span).await
        }
    }

    async fn attempt_inner(&self, resource: &str, key: &LockKey) -> Attempt<M> {
        let s = &self.shared;
        let n = s.members.len();
        let start = Instant::now();
        // The keys and a fresh token, shared by the requests of this attempt.
        let lock = Arc::new((key.clone(), Token::random()));
        // Until the outcome is settled, masters may have granted the lock: if this future is
        // dropped or the attempt fails, release it on every master behind the acquires.
        let mut undo = Undo {
            shared: s.clone(),
            lock: lock.clone(),
            armed: true,
            may_hold: vec![true; n],
        };

        let voters = s.voters().await;
        // Per-master latencies are measured only for the debug log.
        let timed = tracing::enabled!(tracing::Level::DEBUG);
        let mut tally = Tally::new(n);
        let mut failures = Vec::new();
        let mut yes: Vec<(usize, u64)> = Vec::with_capacity(n);
        let mut asked = Vec::with_capacity(n);
        let mut round = FuturesUnordered::new();
        for (i, voter) in voters.into_iter().enumerate() {
            let member = &s.members[i];
            match voter {
                Ok(epoch) => {
                    asked.push(i);
                    // Owned ('static), so that the answers still out when a failed attempt
                    // settles can be drained in the background.
                    let (shared, lock) = (s.clone(), lock.clone());
                    round.push(async move {
                        let sent = timed.then(Instant::now);
                        let master = &shared.members[i].master;
                        let reply = master
                            .acquire(&lock.0, &lock.1, shared.ttl, &shared.meta)
                            .await;
                        // A vote from a connection made after the health reading does not
                        // count: the master may have restarted in between.
                        let reply = match reply {
                            Ok(Some(_)) if shared.restart_guard && master.epoch() != epoch => {
                                Answer::Failed(Cause::Restarting {
                                    ready_in: shared.max_ttl(),
                                })
                            }
                            Ok(Some(fence)) => Answer::Yes(fence),
                            Ok(None) => Answer::No,
                            Err(e) => Answer::Failed(Cause::Failed(e)),
                        };
                        (i, reply, sent.map(|t| t.elapsed()))
                    });
                }
                Err(cause) => {
                    // Not asked: it cannot hold our key.
                    undo.may_hold[i] = false;
                    tally.failed();
                    failures.push(failure(member, cause));
                }
            }
        }

        let mut answered = vec![false; n];
        while tally.verdict() == Verdict::Pending {
            let Some((i, reply, latency)) = round.next().await else {
                break;
            };
            answered[i] = true;
            let addr = s.members[i].master.addr();
            match reply {
                Answer::Yes(fence) => {
                    tracing::debug!(master = addr, ?latency, fence, "granted");
                    tally.yes();
                    yes.push((i, fence));
                }
                Answer::No => {
                    // Its answer arrived, and it was no: it does not hold our key.
                    undo.may_hold[i] = false;
                    tracing::debug!(master = addr, ?latency, "held elsewhere");
                    tally.refused();
                    failures.push(failure(&s.members[i], Cause::Refused));
                }
                Answer::Failed(cause) => {
                    tracing::debug!(master = addr, ?latency, ?cause, "failed");
                    tally.failed();
                    failures.push(failure(&s.members[i], cause));
                }
            }
        }
        if tally.verdict() != Verdict::Reached {
            // Masters still out are not waited for. Their answers are drained in the
            // background, and each is released unless its answer is a no; the masters that
            // answered yes or failed are released by `undo`.
            for &i in asked.iter().filter(|&&i| !answered[i]) {
                undo.may_hold[i] = false;
                failures.push(failure(&s.members[i], Cause::NoAnswer));
            }
            if !round.is_empty() {
                let (shared, lock) = (s.clone(), lock.clone());
                tokio::spawn(async move {
                    while let Some((i, reply, _)) = round.next().await {
                        if !matches!(reply, Answer::No) {
                            let master = &shared.members[i].master;
                            if let Err(e) = master.release(&lock.0, &lock.1).await {
                                tracing::debug!(master = master.addr(), error = %e,
                                    "background release failed; the key expires at the end of its ttl");
                            }
                        }
                    }
                });
            }
            return Attempt::Failed(self.refusal(resource, &tally, failures));
        }
        // On success, masters still out are not waited for; their requests run anyway, and
        // the guard's release, sent to every master, follows them.
        drop(round);

        // The fencing token: a raise round only when fewer than a quorum hold the largest.
        let plan = plan_fence(&yes, s.quorum());
        if !plan.to_raise.is_empty() {
            let raised = self
                .raise(key, &lock.1, plan.fence, &plan.to_raise, plan.at_fence)
                .await;
            if raised < s.quorum() {
                tracing::debug!(
                    fence = plan.fence,
                    raised,
                    "fence raise fell short of a quorum"
                );
                return Attempt::Failed(Error::NoQuorum {
                    resource: resource.to_owned(),
                    needed: s.quorum(),
                    masters: n,
                    failures: Failures(failures),
                });
            }
        }

        let elapsed = start.elapsed();
        let left = validity(s.ttl, elapsed, drift(s.ttl, s.drift_factor))
            .filter(|left| *left >= s.min_validity);
        let Some(left) = left else {
            tracing::debug!(?elapsed, "granted too late to rely on; releasing");
            return Attempt::Failed(Error::TooSlow {
                resource: resource.to_owned(),
                elapsed,
            });
        };
        undo.disarm();
        tracing::debug!(fence = plan.fence, ?elapsed, validity = ?left, "acquired");
        Attempt::Acquired(Guard::new(
            s.clone(),
            resource.to_owned(),
            key.clone(),
            lock.1.clone(),
            plan.fence,
            start,
            start + left,
        ))
    }

    /// Raises the counter to `fence` on the masters `to_raise`; returns how many masters hold
    /// `counter ≥ fence` under our key (`already` of them did before), stopping once a quorum
    /// does or can no longer.
    async fn raise(
        &self,
        key: &LockKey,
        token: &Token,
        fence: u64,
        to_raise: &[usize],
        already: usize,
    ) -> usize {
        let s = &self.shared;
        let mut tally = Tally::with_quorum(already + to_raise.len(), s.quorum());
        for _ in 0..already {
            tally.yes();
        }
        let mut round: FuturesUnordered<_> = to_raise
            .iter()
            .map(|&i| async move { s.members[i].master.raise(key, token, fence).await })
            .collect();
        while tally.verdict() == Verdict::Pending {
            match round.next().await {
                Some(Ok(true)) => tally.yes(),
                Some(Ok(false)) => tally.refused(),
                Some(Err(_)) => tally.failed(),
                None => break,
            }
        }
        tally.yeses()
    }

    fn refusal(&self, resource: &str, tally: &Tally, failures: Vec<MasterFailure>) -> Error {
        let n = self.shared.members.len();
        if tally.refusals_decide() {
            Error::Held {
                resource: resource.to_owned(),
                refused: tally.refusals(),
                masters: n,
            }
        } else {
            Error::NoQuorum {
                resource: resource.to_owned(),
                needed: self.shared.quorum(),
                masters: n,
                failures: Failures(failures),
            }
        }
    }
}

fn failure<M: Master>(member: &Member<M>, cause: Cause) -> MasterFailure {
    MasterFailure {
        addr: member.master.addr().to_owned(),
        cause,
    }
}

/// Releases a possibly granted lock when dropped armed, on every master that may hold it: all
/// but those that were not asked and those whose "no" arrived. A master that timed out, failed,
/// said yes or had not answered yet is released, since its yes may be lost or still queued.
struct Undo<M: Master> {
    shared: Arc<Shared<M>>,
    lock: Arc<(LockKey, Token)>,
    armed: bool,
    may_hold: Vec<bool>,
}

impl<M: Master> Undo<M> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl<M: Master> Drop for Undo<M> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.spawn_release(&self.lock, &self.may_hold);
        }
    }
}

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
    restart_guard: bool,
    max_extensions: Option<u32>,
    max_hold: Option<Duration>,
    min_validity: Duration,
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
            restart_guard: true,
            max_extensions: None,
            max_hold: None,
            min_validity: Duration::ZERO,
        }
    }
}

impl RedlockBuilder {
    /// The masters' URLs, `redis://host:port` each: independent masters (not replicas of one
    /// another), usually 3 or 5. One URL gives a single-master lock.
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

    /// The prefix of every key (default `redlock:`).
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

    /// The bound on connecting to the masters (default 5 s).
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
    /// largest ttl in use has passed (default on). Switching it off is safe only when every
    /// master persists every write (AOF with `appendfsync always`) or operators delay every
    /// restart by the largest ttl; otherwise a master that restarts empty can grant a lock that
    /// another client still holds.
    pub fn restart_guard(mut self, on: bool) -> Self {
        self.restart_guard = on;
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

    /// Checks the settings and connects to every master in parallel.
    ///
    /// Fails with [`Error::Config`] on bad settings (no masters, the same master twice, a bad
    /// URL, a zero ttl, a ttl not larger than drift plus the per-master timeout), and with
    /// [`Error::NoQuorum`] when fewer than a quorum of masters can be reached within the
    /// connect timeout. Masters that are down are reconnected in the background.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping it drops the half-made connections.
    pub async fn connect(self) -> Result<Redlock<Node>> {
        let timeout = self.check(self.urls.len())?;
        let mut seen = std::collections::HashSet::new();
        let mut nodes = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            let node = Node::build(url, timeout)?;
            if !seen.insert(node.addr().to_owned()) {
                return Err(Error::Config(format!(
                    "master {} is listed twice: a quorum needs independent masters",
                    node.addr()
                )));
            }
            nodes.push(node);
        }
        let ready =
            futures::future::join_all(nodes.iter().map(|node| node.ready(self.connect_timeout)))
                .await;
        let mut failures = Vec::new();
        for (node, r) in nodes.iter().zip(ready) {
            if let Err(e) = r {
                failures.push(MasterFailure {
                    addr: node.addr().to_owned(),
                    cause: Cause::Failed(e),
                });
            }
        }
        let n = nodes.len();
        if n - failures.len() < quorum(n) {
            return Err(Error::NoQuorum {
                resource: String::new(),
                needed: quorum(n),
                masters: n,
                failures: Failures(failures),
            });
        }
        for f in &failures {
            tracing::warn!(master = %f.addr, "master unreachable at start; reconnecting in the background: {f}");
        }
        Ok(self.finish(nodes))
    }

    /// Checks the settings and builds locks over `masters`, any implementation of [`Master`]
    /// (such as the testkit's in-memory model). Their own timeouts apply; `nodes` must not be set.
    pub fn with_masters<M: Master>(self, masters: Vec<M>) -> Result<Redlock<M>> {
        if !self.urls.is_empty() {
            return Err(Error::Config(
                "with_masters() takes the masters themselves: do not set nodes()".into(),
            ));
        }
        self.check(masters.len())?;
        let mut seen = std::collections::HashSet::new();
        for m in &masters {
            if !seen.insert(m.addr().to_owned()) {
                return Err(Error::Config(format!(
                    "master {} is listed twice",
                    m.addr()
                )));
            }
        }
        Ok(self.finish(masters))
    }

    /// Validates the settings for `n` masters; returns the per-master timeout.
    fn check(&self, n: usize) -> Result<Duration> {
        let bad = |msg: String| Err(Error::Config(msg));
        if n == 0 {
            return bad("no masters: give at least one URL to nodes()".into());
        }
        let timeout = redlock_single::validity::check(self.ttl, self.timeout, self.drift_factor)
            .map_err(Error::Config)?;
        if self.connect_timeout.is_zero() {
            return bad("connect timeout must be above zero".into());
        }
        if self.max_hold.is_some_and(|h| h.is_zero()) {
            return bad("max_hold must be above zero".into());
        }
        let most = self.ttl.saturating_sub(drift(self.ttl, self.drift_factor));
        if self.min_validity >= most {
            return bad(format!(
                "min_validity {:?} must be below ttl − drift ({most:?}): no acquisition could leave that much",
                self.min_validity
            ));
        }
        self.retry.validate()?;
        Ok(timeout)
    }

    fn finish<M: Master>(self, masters: Vec<M>) -> Redlock<M> {
        let members = masters
            .into_iter()
            .map(|m| Member {
                master: Arc::new(m),
                standing: Mutex::new(Standing::default()),
            })
            .collect();
        let shared = Shared {
            members,
            ttl: self.ttl,
            retry: self.retry,
            prefix: self.prefix,
            meta: self.meta,
            drift_factor: self.drift_factor,
            restart_guard: self.restart_guard,
            max_ttl_ms: AtomicU64::new(0),
            max_extensions: self.max_extensions,
            max_hold: self.max_hold,
            min_validity: self.min_validity,
        };
        shared.note_ttl(self.ttl);
        Redlock {
            shared: Arc::new(shared),
        }
    }
}
