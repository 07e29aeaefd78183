#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - [`lock`](Lock): [`Lock`] and its builder: attempts, `with_lock`, `close`.
//! - [`options`](LockOptions): [`LockOptions`], the settings every lock type shares, their
//!   defaults and checks, and [`lock_option_setters!`], their setters on a builder.
//! - [`guard`](Guard): [`Guard`], a held lock: extend, release.
//! - [`lease`]: [`Lease`], what a holder sees (fence, validity, lost signal), its writer half,
//!   and the extension loop; for lock implementations too.
//! - [`master`](Master): the per-master protocol as two traits, [`Master`] and
//!   [`Connection`].
//! - [`node`](Node): [`Node`], a master reached through fred, reconnecting in the background;
//!   `conn`: [`NodeConn`], one connection, running the Lua scripts with bounded requests;
//!   `reply`: the replies' meaning (pure); `tls`: certificates for `rediss://`.
//! - [`scripts`]: the Lua source of the per-master protocol.
//! - [`voters`]: which masters may vote now (the restart guard's readings), for both lock
//!   types; `restart`: its rules (pure).
//! - [`background`]: the owner of a lock's background work, and the drop guard of an attempt.
//! - [`key`](LockKey): key names, random tokens and the stored value.
//! - [`retry`](Retry): retry policies with jitter (pure), and [`Retry::run`], the acquire loop.
//! - [`validity`]: validity and drift arithmetic (pure).
//! - [`error`](Error): the error enum.
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings), allow(dead_code))))]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod background;
#[cfg(feature = "broken")]
pub mod broken;
mod conn;
mod deadline;
mod error;
mod guard;
mod key;
pub mod lease;
mod lock;
mod master;
mod node;
mod options;
mod reply;
mod restart;
mod retry;
pub mod scripts;
mod tls;
pub mod validity;
pub mod voters;

pub use conn::NodeConn;
pub use error::{Error, Reason, Result, round_tenth};
pub use guard::Guard;
pub use key::{
    DEFAULT_PREFIX, Holder, LockKey, MAX_PREFIX_LEN, MAX_RESOURCE_LEN, RestartKeys, TOKEN_LEN,
    Token, check_prefix,
};
pub use lease::Lease;
pub use lock::{Lock, LockBuilder};
pub use master::{Connection, Health, Inspection, Master};
pub use node::{DEFAULT_MAX_IN_FLIGHT, Node, NodeOptions};
pub use options::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_RETRY, DEFAULT_TTL, LockOptions};
pub use restart::{MIN_RESTART_DELAY, RECHECK_AFTER};
pub use retry::{Retry, Schedule};
pub use tls::TlsOptions;

/// The fred client library, re-exported so that [`LockBuilder::client`] can be given a client
/// of the same version.
pub use fred;
