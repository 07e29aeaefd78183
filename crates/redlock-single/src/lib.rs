#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - [`lock`](Lock): [`Lock`] and its builder: attempts, `with_lock`, `close`.
//! - [`options`](LockOptions): [`LockOptions`], the settings every lock type shares, their
//!   defaults and checks, and [`lock_option_setters!`], their setters on a builder.
//! - [`guard`](Guard): [`Guard`], a held lock: extend, release.
//! - [`lease`]: [`Lease`], what a holder sees (fence, validity, lost signal), its writer half,
//!   the extension loop, and [`Held`](lease::Held), a guard as that loop sees it, under
//!   `keep_extended` and `with_lock` of both lock types; for lock implementations too.
//! - [`protocol`]: the per-master protocol in one module: the [`Master`] and [`Connection`]
//!   traits and [`MasterError`], keys and tokens, the Lua [`scripts`], [`validity`]
//!   arithmetic (pure), and [`Node`], its implementation over fred (the connection, the script
//!   calls, a pure reply parser, TLS, per-request deadlines). Its items are re-exported here.
//! - [`voters`]: which masters may vote now (the restart guard's readings), for both lock
//!   types; `restart`: its rules (pure).
//! - [`background`]: the owner of a lock's background work, and the drop guard of an attempt.
//! - [`retry`](Retry): retry policies with jitter (pure), and [`Retry::run`], the acquire loop.
//! - [`error`](Error): the error enum.
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings), allow(dead_code))))]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod background;
#[cfg(feature = "broken")]
pub mod broken;
mod error;
mod guard;
pub mod lease;
mod lock;
mod options;
pub mod protocol;
mod restart;
mod retry;
pub mod voters;

pub use error::{Error, Reason, Result, round_tenth};
pub use guard::Guard;
pub use lease::Lease;
pub use lock::{Lock, LockBuilder};
pub use options::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_RETRY, DEFAULT_TTL, LockOptions};
pub use protocol::{
    Connection, DEFAULT_MAX_IN_FLIGHT, DEFAULT_PREFIX, Health, Holder, InputError, Inspection,
    LockKey, MAX_PREFIX_LEN, MAX_RESOURCE_LEN, Master, MasterError, MasterErrorKind, MasterReason,
    MasterResult, Node, NodeConn, NodeOptions, RestartKeys, TOKEN_LEN, TlsOptions, Token,
    check_prefix, scripts, validity,
};
pub use restart::{MIN_RESTART_DELAY, RECHECK_AFTER};
pub use retry::{Retry, Schedule};

/// The fred client library, re-exported so that [`LockBuilder::client`] can be given a client
/// of the same version.
pub use fred;
