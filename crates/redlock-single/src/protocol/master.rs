//! The per-master protocol as two traits: a [`Master`] (one server, reconnecting in the
//! background) hands out its live [`Connection`], and the protocol's operations run on a
//! connection. The locks read a master's health and send their requests on one connection
//! and count a vote only from the connection whose health they read. `Node` implements the
//! traits with fred, and `SimNode` in `redlock-testkit` in memory.

use std::future::Future;
use std::time::Duration;

use crate::protocol::error::MasterError;
use crate::protocol::key::{Holder, LockKey, RestartKeys, Token};

/// The result of a request to one master.
pub type MasterResult<T, E = MasterError> = std::result::Result<T, E>;

/// What one master knows about a resource, as returned by [`Connection::inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Who holds the lock on this master, if anyone.
    pub holder: Option<Holder>,
    /// How long the key has left, if it is held and has an expiry.
    pub ttl: Option<Duration>,
    /// The fencing counter: the token of the latest acquisition on this master (0 if never).
    pub fence: u64,
}

/// What a master says about itself and the restart guard's keys, for deciding whether it may
/// have forgotten locks it granted; see [`voters`](crate::voters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The server's `run_id`: a new one for every process.
    pub run_id: String,
    /// How long the server process has been running.
    pub uptime: Duration,
    /// Whether the server now writes every write to disk before acknowledging it (AOF with
    /// `appendfsync always`); `None` when it was not asked (see
    /// [`trust_persistence`](crate::LockBuilder::trust_persistence)).
    pub persists_every_write: Option<bool>,
    /// The incarnation key: the `run_id` under which clients last let this master vote, if any.
    pub incarnation: Option<String>,
    /// The restart delay the master keeps, after the reading raised it to the client's own.
    pub restart_delay: Duration,
}

/// One master: its address, and its connection while it has one.
///
/// Implementations keep connecting in the background, for as long as they live.
pub trait Master: std::fmt::Debug + Send + Sync + 'static {
    /// A connection to this master.
    type Conn: Connection;

    /// The master's address, `host:port`, as shown in errors.
    fn addr(&self) -> &str;

    /// The live connection, or why there is none (the last connection error, or
    /// [`MasterErrorKind::Unreachable`](crate::MasterErrorKind::Unreachable)).
    fn connection(&self) -> MasterResult<Self::Conn>;

    /// Resolves with `Ok` once the master is connected, or with the error of its last
    /// connection attempt once one has failed and it is not connected. Does not wait on its
    /// own: bound it with a timeout.
    fn ready(&self) -> impl Future<Output = MasterResult<()>> + Send;
}

/// One connection to a master: the protocol's atomic operations.
///
/// Requests on one connection reach the master in the order they were made, so that a release
/// never overtakes the acquire it undoes. Every request is bounded by the implementation's
/// per-request timeout, and fails with a [`MasterError`] naming the master. A
/// connection that broke stays broken (its requests fail); the master makes a new one.
pub trait Connection: std::fmt::Debug + Clone + Send + Sync + 'static {
    /// An id that no other connection of the same master has (nor had).
    fn id(&self) -> u64;

    /// Sets the lock key to `token` (and `meta`) with expiry `ttl` if it is free, and then
    /// moves the fencing counter to `max(counter + 1, whole seconds of the master's clock ×
    /// 1,000,000)`. Returns the new counter, or `None` if the key was held.
    fn acquire(
        &self,
        key: &LockKey,
        token: &Token,
        ttl: Duration,
        meta: &str,
    ) -> impl Future<Output = MasterResult<Option<u64>>> + Send;

    /// If the key still holds `token`, raises the fencing counter to at least `fence` and
    /// returns true; otherwise returns false and changes nothing.
    fn raise(
        &self,
        key: &LockKey,
        token: &Token,
        fence: u64,
    ) -> impl Future<Output = MasterResult<bool>> + Send;

    /// If the key still holds `token`, sets its expiry to `ttl` from now and returns true.
    fn extend(
        &self,
        key: &LockKey,
        token: &Token,
        ttl: Duration,
    ) -> impl Future<Output = MasterResult<bool>> + Send;

    /// If the key still holds `token`, deletes it and returns true.
    fn release(
        &self,
        key: &LockKey,
        token: &Token,
    ) -> impl Future<Output = MasterResult<bool>> + Send;

    /// Reads the holder, the remaining ttl and the fencing counter of a resource.
    fn inspect(&self, key: &LockKey) -> impl Future<Output = MasterResult<Inspection>> + Send;

    /// Reads the master's run id, uptime and restart keys (and its persistence when
    /// `persistence` is set), raising its restart delay to `delay` first.
    fn health(
        &self,
        keys: &RestartKeys,
        delay: Duration,
        persistence: bool,
    ) -> impl Future<Output = MasterResult<Health>> + Send;

    /// Raises the master's restart delay to `delay` and returns the master's value.
    fn restart_delay(
        &self,
        keys: &RestartKeys,
        delay: Duration,
    ) -> impl Future<Output = MasterResult<Duration>> + Send;

    /// Sets the incarnation key to `run_id`: this master may vote under `run_id` from now on.
    fn vouch(
        &self,
        keys: &RestartKeys,
        run_id: &str,
    ) -> impl Future<Output = MasterResult<()>> + Send;
}
