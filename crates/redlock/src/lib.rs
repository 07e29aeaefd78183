#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - [`redlock`](Redlock): [`Redlock`], the public face: acquire, retries, `with_lock`,
//!   inspect, close.
//! - [`builder`](RedlockBuilder): the settings, checked; connecting to a quorum.
//! - `attempt`: one attempt: parallel requests, settling early, validity, fencing, undo.
//! - [`guard`](Guard): [`Guard`]: extend, release and the lost signal over N masters.
//! - `round`: every fan-out: each request sent before any answer is counted, and `settle`,
//!   the one loop that counts answers until the verdict is known.
//! - `shared`: what the locks of one `Redlock` share.
//! - [`status`](Status): [`Status`], every master's view of one resource.
//! - `tally`: quorum counting and fence selection (pure).
//! - [`error`](Error): the error enum.
//!
//! The per-master protocol (the Lua scripts, [`Node`], [`MasterError`]; re-exported here as
//! [`protocol`]), the restart guard ([`voters`](redlock_single::voters)) and the lease live in
//! `redlock-single`, whose [`Master`] trait this crate is generic over.
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings), allow(dead_code))))]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod attempt;
mod builder;
mod error;
mod guard;
mod redlock;
mod round;
mod shared;
mod status;
mod tally;

pub use crate::builder::{MAX_MASTERS, RedlockBuilder};
pub use crate::redlock::Redlock;
pub use error::{Cause, Error, Failures, MasterFailure, Result};
pub use guard::Guard;
/// The per-master protocol of `redlock-single`: the [`Master`] and [`Connection`] traits,
/// [`MasterError`], keys and tokens, the Lua scripts, validity arithmetic and [`Node`], so
/// that one dependency is enough to implement or inspect a master.
pub use redlock_single::protocol;
pub use redlock_single::protocol::{
    Connection, Health, Inspection, Master, MasterError, MasterErrorKind, Node,
};
pub use redlock_single::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_RETRY, DEFAULT_TTL, Lease, LockOptions, MIN_RESTART_DELAY,
    RECHECK_AFTER, Retry,
};
pub use status::{MasterView, Status};
