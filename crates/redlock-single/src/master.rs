//! The operations of one master that the locks are built from, as a trait, so that the quorum
//! crate and the in-memory model (`SimNode` in `redlock-testkit`) share them with [`Node`].
//!
//! [`Node`]: crate::Node

use std::future::Future;
use std::time::Duration;

use crate::error::Result;
use crate::key::{Holder, LockKey, Token};

/// What one master knows about a resource, as returned by [`Master::inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Who holds the lock on this master, if anyone.
    pub holder: Option<Holder>,
    /// How long the key has left, if it is held and has an expiry.
    pub ttl: Option<Duration>,
    /// The fencing counter: the token of the latest acquisition on this master (0 if never).
    pub fence: u64,
}

/// What a master says about itself, for deciding whether it may have forgotten locks it granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The server's `run_id`: a new one after every restart.
    pub run_id: String,
    /// How long the server has been running.
    pub uptime: Duration,
    /// Whether every write is on disk before it is acknowledged (AOF with `appendfsync
    /// always`), so that a restart, even after a crash, comes back with every key and counter.
    pub persists_every_write: bool,
}

/// The per-master protocol: five atomic operations on one master.
///
/// Each call is one request to the master. Implementations keep the requests for one master in
/// the order they were made, so that a release never overtakes the acquire it undoes. Every
/// method fails with a typed [`Error`](crate::Error) naming the master when the master cannot
/// answer within the implementation's per-request timeout.
pub trait Master: std::fmt::Debug + Send + Sync + 'static {
    /// The master's address, `host:port`, as shown in errors.
    fn addr(&self) -> &str;

    /// Sets the lock key to `token` (and `meta`) with expiry `ttl` if it is free, and then
    /// increments the fencing counter. Returns the new counter, or `None` if the key was held.
    fn acquire(
        &self,
        key: &LockKey,
        token: &Token,
        ttl: Duration,
        meta: &str,
    ) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// If the key still holds `token`, raises the fencing counter to at least `fence` and
    /// returns true; otherwise returns false and changes nothing.
    fn raise(
        &self,
        key: &LockKey,
        token: &Token,
        fence: u64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// If the key still holds `token`, sets its expiry to `ttl` from now and returns true.
    fn extend(
        &self,
        key: &LockKey,
        token: &Token,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// If the key still holds `token`, deletes it and returns true.
    fn release(&self, key: &LockKey, token: &Token) -> impl Future<Output = Result<bool>> + Send;

    /// Reads the holder, the remaining ttl and the fencing counter of a resource.
    fn inspect(&self, key: &LockKey) -> impl Future<Output = Result<Inspection>> + Send;

    /// Reads the master's run id, uptime and persistence.
    fn health(&self) -> impl Future<Output = Result<Health>> + Send;

    /// A number that changes every time the connection to the master is (re)established, so
    /// that a caller knows when to read [`health`](Master::health) again.
    fn epoch(&self) -> u64;
}
