#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - [`redlock`](Redlock): [`Redlock`] and its builder: parallel attempts, settling early,
//!   validity, fencing, retries, `with_lock`.
//! - [`guard`](Guard): [`Guard`]: extend, release and the lost signal over N masters.
//! - [`tally`]: quorum counting and fence selection (pure).
//! - [`restart`]: when a restarted master may vote again (pure).
//! - [`error`](Error): the error enum.
//!
//! The per-master protocol (the Lua scripts, [`Node`]) lives in `redlock-single`, whose
//! [`Master`] trait this crate is generic over.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod error;
mod guard;
mod redlock;
pub mod restart;
pub mod tally;

pub use crate::redlock::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_RETRY, DEFAULT_TTL, Redlock, RedlockBuilder,
};
pub use error::{Cause, Error, Failures, MasterFailure, Result};
pub use guard::Guard;
pub use redlock_single::{Health, Inspection, Lease, Master, Node, Retry};
pub use restart::RECHECK_AFTER;
