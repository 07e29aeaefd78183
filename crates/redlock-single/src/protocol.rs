//! The per-master protocol, in one place: what both lock types say to one master and how.
//!
//! - `master`: the [`Master`] and [`Connection`] traits (one server; the atomic operations on
//!   one of its connections), with what they return: [`Inspection`], [`Health`], and
//!   `error`: [`MasterError`], the address and [`MasterErrorKind`] of a failure, and
//!   [`InputError`], a setting or name refused before anything is sent.
//! - `key`: the names and values on the server: [`LockKey`], [`RestartKeys`], the random
//!   [`Token`] and the [`Holder`] it is stored with.
//! - [`scripts`]: the Lua source of every operation, and the hashes they run by.
//! - [`validity`]: how long a granted lock can be relied on (pure).
//! - `node`: [`Node`], the implementation over fred, reconnecting in the background; `conn`:
//!   [`NodeConn`], one connection, sending the script calls with bounded requests; `reply`:
//!   what the replies mean (pure); `tls`: certificates for `rediss://`; `deadline`: the
//!   per-request deadlines.
//!
//! The restart guard ([`voters`](crate::voters)) and the leases build on it; `SimNode` in
//! `redlock-testkit` implements the traits in memory.

pub(crate) mod conn;
pub(crate) mod deadline;
pub(crate) mod error;
pub(crate) mod key;
pub(crate) mod master;
pub(crate) mod node;
pub(crate) mod reply;
pub mod scripts;
pub(crate) mod tls;
pub mod validity;

pub use conn::NodeConn;
pub use error::{InputError, MasterError, MasterErrorKind, MasterReason};
pub use key::{
    DEFAULT_PREFIX, Holder, LockKey, MAX_PREFIX_LEN, MAX_RESOURCE_LEN, RestartKeys, TOKEN_LEN,
    Token, check_prefix,
};
pub use master::{Connection, Health, Inspection, Master, MasterResult};
pub use node::{DEFAULT_MAX_IN_FLIGHT, Node, NodeOptions};
pub use tls::TlsOptions;
