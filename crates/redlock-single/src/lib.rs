#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - [`lock`](Lock): [`Lock`] and its builder: attempts, retries and `with_lock`.
//! - [`guard`](Guard): [`Guard`], a held lock, and [`Lease`], its read-only view.
//! - [`master`](Master): the [`Master`] trait, the five operations of one master.
//! - [`node`](Node): [`Node`], the master reached through fred, running the Lua scripts.
//! - `scripts`: the Lua source of the per-master protocol.
//! - [`key`](LockKey): key names, random tokens and the stored value.
//! - [`retry`](Retry): retry policies with jitter (pure).
//! - [`validity`]: validity and drift arithmetic (pure).
//! - [`error`](Error): the error enum.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod deadline;
mod error;
mod guard;
mod key;
mod lock;
mod master;
mod node;
mod retry;
pub mod scripts;
pub mod validity;

pub use error::{Error, Result};
pub use guard::{Extension, Guard, Lease, run_extended};
pub use key::{DEFAULT_PREFIX, Holder, LockKey, TOKEN_LEN, Token};
pub use lock::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_RETRY, DEFAULT_TTL, Lock, LockBuilder};
pub use master::{Health, Inspection, Master};
pub use node::Node;
pub use retry::{Retry, Schedule};

/// The fred client library, re-exported so that [`LockBuilder::client`] can be given a client
/// of the same version.
pub use fred;
