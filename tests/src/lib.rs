//! Shared helpers of the end-to-end tests, which live beside this crate as `<area>_<topic>.rs`
//! and run against real `redis-server` processes started through `redlock-testkit`.

use std::time::Duration;

use redlock_single::{Lock, LockBuilder, Retry};
use redlock_testkit::RedisServer;

// The README's example is compiled here, so that the front page cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// A per-request timeout generous enough for a loaded CI machine running tests in parallel.
pub const TEST_TIMEOUT: Duration = Duration::from_millis(500);

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
