//! [`Voters`]: the masters of a lock and which of them may vote now (the restart guard), for
//! the lock implementations of this workspace: the single-master [`Lock`](crate::Lock) is a
//! set of one, the quorum lock a set of N.
//!
//! A master votes only over a connection whose health this client has read: the attempt asks
//! [`Voters::voter`] for a master's connection and sends its request on that connection, so a
//! vote belongs to the connection that carried it. The first attempt after a connection is
//! made reads the master's health on it (one reading per connection at a time; concurrent
//! attempts wait for the same one, and an attempt that reaches its verdict without that master
//! does not wait at all), and applies the rules of the private `restart` module.
//!
//! **The restart delay covers every client of the masters.** Each master keeps the largest
//! ttl that any client has used in its restart-delay key ([`RestartKeys`]): every reading
//! raises it to this client's delay, and a client that starts using a larger ttl raises it on
//! every master it reaches first ([`Voters::use_ttl`]). The delay a client applies is the
//! largest of its own ttls, its configured `restart_delay`, every value it has read, and
//! [`MIN_RESTART_DELAY`]. Before a master that had to wait votes, the client reads the delay
//! again from every other master it is connected to, and waits longer if it learns of a longer
//! one; then it writes the master's run id to its incarnation key, so that later clients let
//! it vote at once. A master that lost its data lost those keys too; the others still hold
//! them.

use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::background::Background;
use crate::error::{Error, round_tenth};
use crate::protocol::error::MasterError;
use crate::protocol::key::RestartKeys;
use crate::protocol::master::{Connection, Health, Master};
use crate::restart::{Assessment, MIN_RESTART_DELAY, RECHECK_AFTER, Standing};

/// How the restart guard treats masters that may have lost locks in a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Whether the guard is on (default). Off, every connected master votes.
    pub enabled: bool,
    /// Whether a master that persists every write (AOF, `appendfsync always`) votes at once,
    /// even after a restart (default off): right only when every master always ran that way
    /// and none ever fails over to a replica.
    pub trust_persistence: bool,
    /// A restart delay for the whole fleet, on top of what the clients learn of each other.
    pub delay: Option<Duration>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            enabled: true,
            trust_persistence: false,
            delay: None,
        }
    }
}

/// Why a master does not vote now.
#[derive(Debug, Clone)]
pub enum Ineligible {
    /// It is not connected, or cannot be reached.
    Down(MasterError),
    /// It may have lost locks in a restart and votes again in `ready_in`.
    Restarting {
        /// How long until it votes.
        ready_in: Duration,
    },
    /// Its health could not be read on this connection; read again in `recheck_in`.
    Unverified {
        /// How long until the next reading.
        recheck_in: Duration,
        /// Why the last reading failed.
        reason: MasterError,
    },
}

impl Ineligible {
    /// The lock-level error for the master at `addr`.
    pub fn into_error(self, addr: &str) -> Error {
        match self {
            Ineligible::Down(e) => Error::Master(e),
            Ineligible::Restarting { ready_in } => Error::Restarting {
                addr: addr.to_owned(),
                ready_in,
            },
            Ineligible::Unverified { recheck_in, reason } => Error::Unverified {
                addr: addr.to_owned(),
                recheck_in,
                reason,
            },
        }
    }
}

/// Where the reading of one master's current connection stands.
#[derive(Debug, Clone)]
enum Status {
    Reading,
    Failed { at: Instant, error: MasterError },
    Waiting { until: Instant },
    Voting,
}

#[derive(Debug)]
struct MemberState {
    standing: Standing,
    /// The connection `status` is about.
    conn: Option<u64>,
    status: Status,
}

#[derive(Debug)]
struct Member<M> {
    master: M,
    state: Mutex<MemberState>,
    /// Wakes the attempts waiting for a reading.
    read: Notify,
}

/// The masters of one lock, and who of them may vote; see the [module docs](self).
#[derive(Debug)]
pub struct Voters<M> {
    members: Vec<Member<M>>,
    keys: RestartKeys,
    policy: RestartPolicy,
    /// The largest ttl this client uses, in ms.
    own_ms: AtomicU64,
    /// The largest restart delay read from any master, in ms.
    known_ms: AtomicU64,
    /// How long an attempt waits for a master that is still making its connection.
    connect_wait: Duration,
    background: Background,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<M: Master> Voters<M> {
    /// The masters of a lock whose ttl is `ttl`; an attempt waits up to `connect_wait` (the
    /// per-request timeout) for a master that is still making its connection; readings run on
    /// `background`.
    pub fn new(
        masters: Vec<M>,
        keys: RestartKeys,
        policy: RestartPolicy,
        ttl: Duration,
        connect_wait: Duration,
        background: Background,
    ) -> Voters<M> {
        let members = masters
            .into_iter()
            .map(|master| Member {
                master,
                state: Mutex::new(MemberState {
                    standing: Standing::default(),
                    conn: None,
                    status: Status::Reading,
                }),
                read: Notify::new(),
            })
            .collect();
        Voters {
            members,
            keys,
            policy,
            own_ms: AtomicU64::new(ms(ttl)),
            known_ms: AtomicU64::new(0),
            connect_wait,
            background,
        }
    }

    /// How many masters there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The `i`-th master.
    pub fn master(&self, i: usize) -> &M {
        &self.members[i].master
    }

    /// The masters, in order.
    pub fn masters(&self) -> impl Iterator<Item = &M> {
        self.members.iter().map(|m| &m.master)
    }

    /// The background work these masters' locks share.
    pub fn background(&self) -> &Background {
        &self.background
    }

    /// The restart delay this client applies now: the largest of its own ttls, the configured
    /// delay, every delay read from a master, and [`MIN_RESTART_DELAY`].
    pub fn delay(&self) -> Duration {
        let own = self.own_ms.load(Ordering::Relaxed);
        #[cfg(feature = "broken")]
        if crate::broken::own_ttl_only() {
            return Duration::from_millis(own).max(MIN_RESTART_DELAY);
        }
        let learnt = own.max(self.known_ms.load(Ordering::Relaxed));
        Duration::from_millis(learnt)
            .max(self.policy.delay.unwrap_or_default())
            .max(MIN_RESTART_DELAY)
    }

    fn learn(&self, delay: Duration) {
        self.known_ms.fetch_max(ms(delay), Ordering::Relaxed);
    }

    /// The live connection of master `i`, for any request; a master that is still making its
    /// connection (as right after `connect`, which returns once a quorum is connected) is
    /// waited for as long as one request may take, no more. Its vote is another matter: see
    /// [`voter`](Voters::voter).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits.
    pub async fn connection(&self, i: usize) -> Result<M::Conn, MasterError> {
        let master = &self.members[i].master;
        match master.connection() {
            Ok(conn) => Ok(conn),
            Err(e) => match tokio::time::timeout(self.connect_wait, master.ready()).await {
                Ok(Ok(())) => master.connection(),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(e),
            },
        }
    }

    /// Records that this client now uses `ttl`. When it is larger than any before, raises the
    /// restart delay to it on every master this client is connected to before returning, so
    /// that other clients wait long enough after a restart.
    ///
    /// # Cancel safety
    ///
    /// The requests may still reach the masters after the future is dropped.
    pub async fn use_ttl(&self, ttl: Duration) {
        if self.own_ms.fetch_max(ms(ttl), Ordering::Relaxed) >= ms(ttl) || !self.policy.enabled {
            return;
        }
        let delay = self.delay();
        let raises = self.members.iter().filter_map(|m| {
            let conn = m.master.connection().ok()?;
            Some(async move { conn.restart_delay(&self.keys, delay).await })
        });
        for d in futures::future::join_all(raises)
            .await
            .into_iter()
            .flatten()
        {
            self.learn(d);
        }
    }

    /// The connection of master `i` that may vote now, or why there is none. Waits for a
    /// health reading only when this connection has none yet (or its restart wait is over, or
    /// its last reading failed more than [`RECHECK_AFTER`] ago).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a reading it started goes on in the background, and later calls use it.
    pub async fn voter(self: &Arc<Self>, i: usize) -> Result<M::Conn, Ineligible> {
        let m = &self.members[i];
        let mut conn = self.connection(i).await.map_err(Ineligible::Down)?;
        if !self.policy.enabled {
            return Ok(conn);
        }
        // The common case, without a place among the waiters.
        {
            let st = lock(&m.state);
            if st.conn == Some(conn.id()) && matches!(st.status, Status::Voting) {
                return Ok(conn);
            }
        }
        loop {
            let mut read = pin!(m.read.notified());
            // Registered before the state is looked at, so that a reading that ends right
            // after still wakes this attempt.
            read.as_mut().enable();
            {
                let mut st = lock(&m.state);
                let now = Instant::now();
                let id = conn.id();
                match st.conn {
                    // A newer connection was made meanwhile: the older one is gone.
                    Some(newer) if newer > id => {
                        drop(st);
                        conn = m.master.connection().map_err(Ineligible::Down)?;
                        continue;
                    }
                    Some(current) if current == id => match &st.status {
                        Status::Voting => return Ok(conn),
                        Status::Waiting { until } if *until > now => {
                            return Err(Ineligible::Restarting {
                                ready_in: *until - now,
                            });
                        }
                        Status::Failed { at, error } if now < *at + RECHECK_AFTER => {
                            return Err(Ineligible::Unverified {
                                recheck_in: *at + RECHECK_AFTER - now,
                                reason: error.clone(),
                            });
                        }
                        Status::Reading => {}
                        // The wait is over, or the failed reading may be tried again.
                        Status::Waiting { .. } | Status::Failed { .. } => {
                            st.status = Status::Reading;
                            self.background.spawn(self.clone().read(i, conn.clone()));
                        }
                    },
                    _ => {
                        st.conn = Some(id);
                        st.status = Status::Reading;
                        self.background.spawn(self.clone().read(i, conn.clone()));
                    }
                }
            }
            read.await;
        }
    }

    /// Reads master `i`'s health on `conn`, decides, and wakes the attempts waiting for it.
    async fn read(self: Arc<Self>, i: usize, conn: M::Conn) {
        let status = self.reading(i, &conn).await;
        let m = &self.members[i];
        {
            let mut st = lock(&m.state);
            if st.conn == Some(conn.id()) {
                st.status = status;
            }
        }
        m.read.notify_waiters();
    }

    async fn reading(&self, i: usize, conn: &M::Conn) -> Status {
        let m = &self.members[i];
        let trust = self.policy.trust_persistence;
        let health = match conn.health(&self.keys, self.delay(), trust).await {
            Ok(health) => health,
            Err(error) => {
                tracing::info!(master = m.master.addr(), %error,
                    "its health could not be read; it does not vote until a reading succeeds");
                return Status::Failed {
                    at: Instant::now(),
                    error,
                };
            }
        };
        let read_at = Instant::now();
        self.learn(health.restart_delay);
        let assess = |voters: &Self| {
            lock(&m.state)
                .standing
                .assess(&health, read_at, voters.delay(), trust)
        };
        match assess(self) {
            Assessment::Vote => return Status::Voting,
            Assessment::Vouch => return self.vouch(i, conn, &health).await,
            Assessment::From(from) if from > Instant::now() => {
                return self.waiting(i, &health, from);
            }
            Assessment::From(_) => {}
        }
        // The wait is over as far as this client knows: confirm the delay with the others.
        self.refresh_delay(i).await;
        match assess(self) {
            Assessment::Vote => Status::Voting,
            Assessment::From(from) if from > Instant::now() => self.waiting(i, &health, from),
            Assessment::Vouch | Assessment::From(_) => self.vouch(i, conn, &health).await,
        }
    }

    fn waiting(&self, i: usize, health: &Health, until: Instant) -> Status {
        tracing::info!(master = self.members[i].master.addr(), run_id = %health.run_id,
            incarnation = ?health.incarnation, uptime = ?health.uptime,
            votes_in = ?round_tenth(until.saturating_duration_since(Instant::now())),
            "the master may have lost locks in a restart; it does not vote until then");
        Status::Waiting { until }
    }

    async fn vouch(&self, i: usize, conn: &M::Conn, health: &Health) -> Status {
        match conn.vouch(&self.keys, &health.run_id).await {
            Ok(()) => {
                tracing::debug!(master = self.members[i].master.addr(), run_id = %health.run_id,
                    "the master votes from now on");
                Status::Voting
            }
            Err(error) => Status::Failed {
                at: Instant::now(),
                error,
            },
        }
    }

    /// Reads (and raises) the restart delay on every master but `i` that is connected.
    async fn refresh_delay(&self, i: usize) {
        let delay = self.delay();
        let reads = self
            .members
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .filter_map(|(_, m)| {
                let conn = m.master.connection().ok()?;
                Some(async move { conn.restart_delay(&self.keys, delay).await })
            });
        // A master that cannot be read contributes nothing: what it holds is as good as lost.
        for d in futures::future::join_all(reads).await.into_iter().flatten() {
            self.learn(d);
        }
    }
}
