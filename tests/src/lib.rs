//! Shared helpers of the end-to-end tests, which live beside this crate as `<area>_<topic>.rs`
//! and run against real `redis-server` processes started through `redlock-testkit`.

use std::time::Duration;

use redlock_single::{Lock, LockBuilder, Retry};
use redlock_testkit::{RedisGroup, RedisServer, ServerOptions};

// The README's example is compiled here, so that the front page cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// A per-request timeout generous enough for a loaded CI machine running tests in parallel.
pub const TEST_TIMEOUT: Duration = Duration::from_millis(500);

/// A fresh server that votes at once: it has granted no lock, so the test vouches for it
/// (`RedisServer::vouch`), as a client does once a master has waited out its restart delay.
pub fn server() -> RedisServer {
    server_with(ServerOptions::default())
}

/// [`server`] with `options`.
pub fn server_with(options: ServerOptions) -> RedisServer {
    let server = RedisServer::start_with(options).expect("start redis");
    server.vouch().expect("vouch for the fresh server");
    server
}

/// `n` fresh masters that persist every write (AOF, `appendfsync always`), vouched for so that
/// they vote at once.
pub fn persistent_masters(n: usize) -> RedisGroup {
    RedisGroup::persistent(n).expect("start masters")
}

/// `n` fresh masters started with `options`, vouched for so that they vote at once.
pub fn masters_with(n: usize, options: ServerOptions) -> RedisGroup {
    RedisGroup::start_vouched(n, options).expect("start masters")
}

/// A builder for a lock on `server` with `ttl`, no retries and a per-request timeout of
/// [`TEST_TIMEOUT`] or a quarter of the ttl, whichever is smaller.
pub fn builder(server: &RedisServer, ttl: Duration) -> LockBuilder {
    Lock::builder()
        .url(server.url())
        .ttl(ttl)
        .timeout(TEST_TIMEOUT.min(ttl / 4))
        .retry(Retry::none())
}

/// Connects a lock on `server` with the settings of [`builder`].
pub async fn connect(server: &RedisServer, ttl: Duration) -> Lock {
    builder(server, ttl)
        .connect()
        .await
        .expect("connect to the test master")
}

/// Polls `check` every 5 ms until it holds or `bound` passes; returns whether it held.
pub async fn eventually(bound: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether `key` exists on `server`, asked without the library under test.
pub fn exists(server: &RedisServer, key: &str) -> bool {
    server
        .cmd(&["EXISTS", key])
        .expect("EXISTS")
        .as_int()
        .expect("EXISTS answers an integer")
        == 1
}

/// The fencing counter of `resource` on `server` (0 when absent), read without the library.
pub fn counter(server: &RedisServer, resource: &str) -> u64 {
    let key = redlock_single::LockKey::new(redlock_single::DEFAULT_PREFIX, resource).expect("key");
    server
        .cmd(&["GET", key.fence_key()])
        .expect("GET")
        .as_str()
        .map_or(0, |c| c.parse().expect("a counter"))
}

/// The server's clock, in whole seconds (`TIME`).
pub fn server_seconds(server: &RedisServer) -> u64 {
    let redlock_testkit::Reply::Array(Some(t)) = server.cmd(&["TIME"]).expect("TIME") else {
        panic!("TIME answers an array")
    };
    t[0].as_str().expect("seconds").parse().expect("a number")
}

/// How many times `server` ran EVALSHA (and EVAL) since it started, from its command stats.
pub fn script_calls(server: &RedisServer) -> u64 {
    let stats = server.cmd(&["INFO", "commandstats"]).expect("INFO");
    let stats = stats.as_str().expect("text");
    ["cmdstat_evalsha:", "cmdstat_eval:"]
        .iter()
        .filter_map(|name| {
            let line = stats.lines().find(|l| l.starts_with(name))?;
            let calls = line.split("calls=").nth(1)?.split(',').next()?;
            calls.parse::<u64>().ok()
        })
        .sum()
}

/// The id of `node`'s connection now, if it has one.
pub fn connection_id(node: &redlock_single::Node) -> Option<u64> {
    use redlock_single::{Connection, Master};
    node.connection().ok().map(|c| c.id())
}

/// Waits until `node` has a connection other than `old` (it reconnected), for at most
/// `bound`; panics if it does not.
pub async fn reconnected(node: &redlock_single::Node, old: Option<u64>, bound: Duration) {
    let found = eventually(bound, || {
        connection_id(node).is_some_and(|id| Some(id) != old)
    })
    .await;
    assert!(found, "{node:?} did not reconnect");
}

/// The server's uptime in seconds, from INFO.
pub fn uptime(server: &RedisServer) -> u64 {
    let info = server.cmd(&["INFO", "server"]).expect("INFO");
    info.as_str()
        .and_then(|i| i.lines().find_map(|l| l.strip_prefix("uptime_in_seconds:")))
        .and_then(|u| u.trim().parse().ok())
        .expect("INFO has the uptime")
}

/// Waits until the server has been up for `secs` seconds (by its own INFO), at most a minute.
pub async fn up_for(server: &RedisServer, secs: u64) {
    let up = eventually(Duration::from_secs(60), || uptime(server) >= secs).await;
    assert!(up, "the server did not stay up");
}

/// Connects `builder` and waits until every master has been heard from and votes: the state a
/// quorum test starts from (`connect` itself returns once a quorum is connected, and an attempt
/// reads a master's health only when it needs its vote).
pub async fn heard_from(builder: redlock::RedlockBuilder) -> redlock::Redlock {
    let locks = builder.connect().await.expect("connect");
    for (addr, vote) in locks.voters().await {
        assert!(vote.is_ok(), "{addr} does not vote: {vote:?}");
    }
    locks
}
