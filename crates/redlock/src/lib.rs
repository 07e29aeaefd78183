#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - [`redlock`](Redlock): [`Redlock`], the public face: acquire, retries, `with_lock`,
//!   inspect, close.
//! - [`builder`](RedlockBuilder): the settings, checked; connecting to a quorum.
//! - `attempt`: one attempt: parallel requests, settling early, validity, fencing, undo.
//! - [`guard`](Guard): [`Guard`]: extend, release and the lost signal over N masters.
//! - `round`: the start of every fan-out: each request sent before any answer is counted.
//! - `shared`: what the locks of one `Redlock` share.
//! - [`status`](Status): [`Status`], every master's view of one resource.
//! - `tally`: quorum counting and fence selection (pure).
//! - [`error`](Error): the error enum.
//!
//! The per-master protocol (the Lua scripts, [`Node`]), the restart guard
//! ([`voters`](redlock_single::voters)) and the lease live in `redlock-single`, whose
//! [`Master`] trait this crate is generic over.
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
pub use redlock_single::{
    Connection, DEFAULT_CONNECT_TIMEOUT, DEFAULT_RETRY, DEFAULT_TTL, Health, Inspection, Lease,
    LockOptions, Master, Node, Retry,
};
pub use redlock_single::{MIN_RESTART_DELAY, RECHECK_AFTER};
pub use status::{MasterView, Status};
