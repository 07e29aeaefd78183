//! Test support for the redlock crates: real `redis-server` processes on free loopback ports,
//! with the faults a distributed lock must survive.
//!
//! ```no_run
//! use redlock_testkit::{RedisGroup, RedisServer, ServerOptions};
//! let mut masters = RedisGroup::start(3)?;
//! masters[0].pause()?;            // SIGSTOP: connections stay open, nothing answers
//! masters[0].resume()?;           // SIGCONT: what was sent meanwhile runs now
//! masters[1].kill()?;             // SIGKILL
//! masters[1].restart()?;          // same port; comes back empty unless started with AOF
//! let fast = RedisServer::start_with(ServerOptions { fake_clock: true, ..Default::default() })?;
//! fast.clock().expect("started with a fake clock").set_rate(2.0)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! `redis-server` is found through `REDIS_SERVER` or on `PATH`; when it is missing, every start
//! fails with a message that names the Debian package to install.
//!
//! # Layout
//!
//! - `server`: [`RedisServer`], one process, with pause, kill, restart, persistence and TLS
//!   options.
//! - `group`: [`RedisGroup`], N servers started together.
//! - `clock`: [`Clock`], the control file of the LD_PRELOAD clock shim (`shim/clock.c`).
//! - `resp`: a minimal blocking client for setting up and checking keys.
//! - `proxy`: [`Proxy`], a TCP proxy with network faults (delay, held requests or replies,
//!   cut connections, a switch of backend).
//! - `tls`: [`TlsFiles`], certificates made for one test server.
//! - `sim`: [`SimServer`] and [`SimNode`], an in-memory model of a master for property tests.
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings), allow(dead_code))))]

mod clock;
mod group;
mod proxy;
mod resp;
mod server;
mod sim;
mod tls;

use std::io;
use std::path::PathBuf;

pub use clock::Clock;
pub use group::RedisGroup;
pub use proxy::{Proxy, ProxyFaults};
pub use resp::{Reply, command};
pub use server::{Persistence, RedisServer, ServerOptions, TlsMode};
pub use sim::{Faults, SimConn, SimNode, SimServer};
pub use tls::TlsFiles;

/// What to tell someone whose machine has no `redis-server`.
pub const INSTALL_HINT: &str = "redis-server not found: install the Debian package `redis-server` \
     (apt-get install redis-server) or set REDIS_SERVER to its path";

/// The `redis-server` binary: `$REDIS_SERVER` if set, else the first on `PATH`.
pub fn redis_server_binary() -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("REDIS_SERVER") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("REDIS_SERVER={} is not a file", path.display()),
            ))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, INSTALL_HINT))
}
