//! Connecting to the masters against real servers: `connect` returns once a quorum is
//! connected; masters that are down, paused or slow at start join when they can, and reconnect
//! for ever; the first attempt does not wait for what it does not need; one master under two
//! names is refused.

use std::time::Duration;

use redlock::{Error, Redlock, Retry};
use redlock_testkit::{Proxy, ProxyFaults, ServerOptions};
use redlock_tests::{masters_with, persistent_masters};

/// Bounds only a hang: each wait below ends on an event long before, and a broken build would
/// take longer (the connect timeouts are set above it).
const HANG: Duration = Duration::from_secs(30);

/// Tries to acquire and release until it works, for at most `HANG`.
async fn eventually_acquired(locks: &Redlock) {
    for _ in 0..600 {
        if let Ok(Some(guard)) = locks.try_acquire("j").await {
            guard.release().await.expect("release");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never acquired");
}

fn builder(urls: Vec<String>) -> redlock::RedlockBuilder {
    Redlock::builder()
        .nodes(urls)
        .ttl(Duration::from_secs(10))
        .timeout(Duration::from_millis(200))
        .retry(Retry::none())
}

#[tokio::test]
async fn a_master_down_at_connect_joins_when_it_comes_up() {
    let mut group = masters_with(3, ServerOptions::default());
    group[2].kill().expect("kill");
    let locks = builder(group.urls())
        .connect()
        .await
        .expect("2 of 3 are up");
    // With master 1 paused, only master 0 and the one down at start can make a quorum.
    group[1].pause().expect("pause");
    group[2].restart().expect("restart");
    group[2].vouch().expect("fresh: it granted nothing");
    eventually_acquired(&locks).await;
    group[1].resume().expect("resume");
}

#[tokio::test]
async fn a_master_paused_at_connect_does_not_hold_connect_up_and_joins_when_it_resumes() {
    let mut group = persistent_masters(3);
    group[2].pause().expect("pause");
    // A connect timeout far above the bound of this test: waiting for the paused master would
    // fail it.
    let connect = builder(group.urls())
        .connect_timeout(Duration::from_secs(120))
        .connect();
    let locks = tokio::time::timeout(HANG, connect)
        .await
        .expect("connect returns once a quorum is connected")
        .expect("2 of 3 answer");
    group[1].pause().expect("pause");
    group[2].resume().expect("resume");
    eventually_acquired(&locks).await;
    group[1].resume().expect("resume");
}

#[tokio::test]
async fn a_slow_master_at_connect_joins_once_its_handshake_is_done() {
    let mut group = persistent_masters(3);
    // Every byte to and from master 2 waits 300 ms each way.
    let proxy = Proxy::start(group[2].port()).expect("proxy");
    proxy.set_faults(ProxyFaults {
        delay: Duration::from_millis(300),
        ..ProxyFaults::default()
    });
    let urls = vec![group[0].url(), group[1].url(), proxy.url()];
    let locks = builder(urls)
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(60))
        .connect()
        .await
        .expect("connect");
    group[1].pause().expect("pause");
    eventually_acquired(&locks).await;
    group[1].resume().expect("resume");
}

#[tokio::test]
async fn the_first_attempt_does_not_wait_for_a_health_reading_it_does_not_need() {
    let mut group = persistent_masters(5);
    // A per-master timeout above the bound of this test: an attempt that waited for the
    // paused master's reading would fail it.
    let locks = builder(group.urls())
        .ttl(Duration::from_secs(600))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .expect("connect");
    for node in locks.masters() {
        node.wait_ready(HANG).await.expect("connected");
    }
    // Connected, its health not read yet, and now silent.
    group[4].pause().expect("pause");
    let guard = tokio::time::timeout(HANG, locks.try_acquire("first"))
        .await
        .expect("the attempt settled on the four that answer")
        .expect("acquire")
        .expect("free");
    guard.release().await.expect("release");
    group[4].resume().expect("resume");
}

#[tokio::test]
async fn the_handshake_follows_the_connect_timeout() {
    let server = redlock_tests::server();
    server
        .cmd(&["CONFIG", "SET", "requirepass", "secret"])
        .expect("set a password");
    // AUTH through a proxy that delays each way by 1.1 s: a handshake of at least 2.2 s, above
    // the 2 s that bounded it before, well within our connect timeout.
    let proxy = Proxy::start(server.port()).expect("proxy");
    proxy.set_faults(ProxyFaults {
        delay: Duration::from_millis(1100),
        ..ProxyFaults::default()
    });
    let lock = redlock_single::Lock::builder()
        .url(format!("redis://:secret@127.0.0.1:{}", proxy.port()))
        .ttl(Duration::from_secs(60))
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(20))
        .connect()
        .await;
    assert!(lock.is_ok(), "{lock:?}");
}

#[tokio::test]
async fn one_master_under_two_names_is_refused() {
    let group = persistent_masters(2);
    let port = group[0].port();
    let err = builder(vec![
        format!("redis://127.0.0.1:{port}"),
        format!("redis://localhost:{port}"),
        group[1].url(),
    ])
    .connect()
    .await
    .expect_err("one master twice");
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("one server")),
        "{err}"
    );
}

#[tokio::test]
async fn connect_lazy_returns_without_a_quorum_and_inspect_shows_every_master() {
    let mut group = persistent_masters(3);
    group[1].kill().expect("kill");
    group[2].kill().expect("kill");
    let e = builder(group.urls())
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect_err("one of three is no quorum");
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    let locks = builder(group.urls())
        .connect_lazy()
        .await
        .expect("lazy: no master is waited for");
    let seen = locks.inspect("j").await.expect("inspect");
    assert_eq!(seen.len(), 3);
    // The live master answers once connected; the dead ones say why they do not.
    let addr = group[0].addr();
    assert!(seen.iter().skip(1).all(|(_, r)| r.is_err()), "{seen:?}");
    tokio::time::timeout(HANG, async {
        while locks.inspect("j").await.expect("inspect")[0].1.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the live master never answered");
    assert_eq!(seen[0].0, addr);
    // Bad settings still fail at once.
    let e = Redlock::builder()
        .nodes(["http://x:1"])
        .connect_lazy()
        .await
        .expect_err("bad URL");
    assert!(matches!(e, Error::Config(_)), "{e}");
}
