//! Bad input and failing masters give typed errors, never a panic, and lose nothing.

use std::time::Duration;

use redlock_single::{Error, Lock, MasterError, MasterErrorKind as K, Retry};
use redlock_testkit::Reply;
use redlock_tests::{builder, connect, exists};

const TTL: Duration = Duration::from_secs(10);

fn config_error<T: std::fmt::Debug>(r: redlock_single::Result<T>, needle: &str) {
    match r {
        Err(Error::Config(msg)) => assert!(msg.contains(needle), "{msg:?} lacks {needle:?}"),
        other => panic!("expected a configuration error about {needle:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_configuration_is_refused_before_connecting() {
    config_error(Lock::builder().connect().await, "no master");
    config_error(
        Lock::builder().url("http://nope").connect().await,
        "bad master URL",
    );
    config_error(
        Lock::builder().url("not a url").connect().await,
        "bad master URL",
    );
    let url = "redis://127.0.0.1:1";
    config_error(
        Lock::builder().url(url).ttl(Duration::ZERO).connect().await,
        "ttl",
    );
    config_error(
        Lock::builder()
            .url(url)
            .ttl(Duration::from_secs(1))
            .timeout(Duration::from_secs(1))
            .connect()
            .await,
        "timeout",
    );
    config_error(
        Lock::builder()
            .url(url)
            .timeout(Duration::ZERO)
            .connect()
            .await,
        "timeout",
    );
    config_error(
        Lock::builder().url(url).drift_factor(1.5).connect().await,
        "drift",
    );
    config_error(
        Lock::builder()
            .url(url)
            .drift_factor(f64::NAN)
            .connect()
            .await,
        "drift",
    );
    config_error(
        Lock::builder()
            .url(url)
            .retry(Retry::linear(Duration::ZERO))
            .connect()
            .await,
        "retry",
    );
    config_error(
        Lock::builder()
            .url(url)
            .retry(Retry::exponential(
                Duration::from_secs(2),
                Duration::from_secs(1),
            ))
            .connect()
            .await,
        "retry",
    );
    config_error(
        Lock::builder()
            .url(url)
            .retry(Retry::linear(Duration::from_millis(1)).attempts(0))
            .connect()
            .await,
        "retry",
    );
}

#[tokio::test]
async fn url_and_client_together_are_refused() {
    let server = redlock_tests::server();
    let client = redlock_single::fred::clients::Client::new(
        redlock_single::fred::prelude::Config::from_url(&server.url()).expect("url"),
        None,
        None,
        None,
    );
    config_error(
        Lock::builder()
            .url(server.url())
            .client(client.clone())
            .connect()
            .await,
        "not both",
    );
    // The client alone works, and is connected for us.
    let lock = Lock::builder()
        .client(client)
        .connect()
        .await
        .expect("connect with a client");
    let guard = lock.try_acquire("c").await.expect("acquire").expect("free");
    guard.release().await.expect("release");
}

#[tokio::test]
async fn empty_resource_is_refused() {
    let server = redlock_tests::server();
    let lock = connect(&server, TTL).await;
    for r in [
        lock.try_acquire("").await.map(|_| ()),
        lock.acquire("").await.map(|_| ()),
        lock.inspect("").await.map(|_| ()),
        lock.with_lock("", |_| async {}).await,
    ] {
        assert!(matches!(r, Err(Error::InvalidResource { .. })), "{r:?}");
    }
}

#[tokio::test]
async fn unreachable_master_is_named() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let err = Lock::builder()
        .url(format!("redis://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(
            err.master_kind(),
            Some(K::Unreachable { .. } | K::Timeout { .. })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.addr(),
        Some(format!("127.0.0.1:{port}").as_str()),
        "{err}"
    );
}

#[tokio::test]
async fn a_killed_master_fails_fast_and_typed() {
    let mut server = redlock_tests::server();
    let lock = connect(&server, TTL).await;
    server.kill().expect("kill");
    let err = lock.try_acquire("k").await.expect_err("master is dead");
    // Down before its health was read (the reading failed) or after (the request failed).
    let down = |e: &MasterError| matches!(e.kind(), K::Unreachable { .. } | K::Timeout { .. });
    assert!(
        err.master().is_some_and(down)
            || matches!(&err, Error::Unverified { reason, .. } if down(reason)),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(err.addr(), Some(server.addr().as_str()));
}

#[tokio::test]
async fn a_paused_master_times_out_and_the_lock_it_granted_late_is_released() {
    let mut server = redlock_tests::server();
    let lock = builder(&server, TTL)
        .timeout(Duration::from_millis(100))
        .connect()
        .await
        .expect("connect");
    // Heard from once, so that the master grants: the acquire itself meets the pause.
    let warm = lock
        .try_acquire("warm")
        .await
        .expect("acquire")
        .expect("free");
    warm.release().await.expect("release");
    server.pause().expect("pause");
    let err = lock.try_acquire("p").await.expect_err("paused");
    match err.master().map(|e| (e.addr(), e.kind())) {
        Some((addr, K::Timeout { timeout })) => {
            assert_eq!(addr, server.addr());
            assert_eq!(*timeout, Duration::from_millis(100));
        }
        _ => panic!("expected a timeout, got {err:?}"),
    }
    // The acquire is still queued on the paused master and runs when it resumes, with a 10 s
    // ttl counted from then; the release that followed it on the same connection removes it.
    server.resume().expect("resume");
    let gone =
        redlock_tests::eventually(Duration::from_secs(3), || !exists(&server, "redlock:{p}")).await;
    assert!(gone, "the timed-out acquire left a lock behind");
    // Nothing was lost: the counter shows the late acquire ran, and the lock is free.
    assert!(lock.inspect("p").await.expect("inspect").fence > 0);
    assert!(lock.try_acquire("p").await.expect("acquire").is_some());
}

#[tokio::test]
async fn a_foreign_value_under_the_lock_name_is_a_typed_error() {
    let server = redlock_tests::server();
    let lock = connect(&server, TTL).await;

    // Someone stored a list under the lock's key.
    assert_eq!(
        server
            .cmd(&["RPUSH", "redlock:{list}", "a"])
            .expect("RPUSH"),
        Reply::Int(1)
    );
    let err = lock.try_acquire("list").await.expect_err("wrong type");
    assert!(
        matches!(err.master_kind(), Some(K::WrongType { key }) if key == "redlock:{list}"),
        "{err:?}"
    );
    assert!(!err.is_transient());
    // acquire does not retry a wrong type, and inspect says the same.
    assert!(matches!(
        lock.acquire("list")
            .await
            .map_err(|e| e.master_kind().cloned()),
        Err(Some(K::WrongType { .. }))
    ));
    assert!(matches!(
        lock.inspect("list")
            .await
            .map_err(|e| e.master_kind().cloned()),
        Err(Some(K::WrongType { .. }))
    ));
    // The foreign data is untouched.
    assert_eq!(
        server.cmd(&["LLEN", "redlock:{list}"]).expect("LLEN"),
        Reply::Int(1)
    );

    // A fencing counter that is not a counter: refused before anything is written.
    server
        .cmd(&["SET", "redlock:{f}:fence", "banana"])
        .expect("SET");
    let err = lock.try_acquire("f").await.expect_err("bad counter");
    assert!(
        matches!(err.master_kind(), Some(K::WrongType { .. })),
        "{err:?}"
    );
    assert!(!exists(&server, "redlock:{f}"), "a lock was left behind");
    server.cmd(&["DEL", "redlock:{g}:fence"]).expect("DEL");
    server
        .cmd(&["HSET", "redlock:{g}:fence", "a", "b"])
        .expect("HSET");
    assert!(matches!(
        lock.try_acquire("g")
            .await
            .map_err(|e| e.master_kind().cloned()),
        Err(Some(K::WrongType { .. }))
    ));
    assert!(!exists(&server, "redlock:{g}"), "a lock was left behind");
}

#[tokio::test]
async fn extend_with_zero_ttl_is_refused() {
    let server = redlock_tests::server();
    let lock = connect(&server, TTL).await;
    let guard = lock.try_acquire("z").await.expect("acquire").expect("free");
    assert!(matches!(
        guard.extend(Duration::ZERO).await,
        Err(Error::Config(_))
    ));
    assert!(
        !guard.is_lost(),
        "a refused argument must not lose the lock"
    );
    guard.release().await.expect("release");
}

#[tokio::test]
async fn a_paused_master_bounds_what_waits_for_it_and_refuses_the_rest_at_once() {
    let mut server = redlock_tests::server();
    let lock = builder(&server, TTL)
        .timeout(Duration::from_millis(100))
        .max_in_flight(8)
        .connect()
        .await
        .expect("connect");
    let warm = lock
        .try_acquire("warm")
        .await
        .expect("acquire")
        .expect("free");
    warm.release().await.expect("release");
    server.pause().expect("pause");
    // Fifty attempts at once against a master that does not answer: eight go out and wait for
    // it (they keep their places after timing out, until it answers); the rest are refused
    // without being sent.
    let names: Vec<String> = (0..50).map(|i| format!("q{i}")).collect();
    let outs = futures::future::join_all(names.iter().map(|n| lock.try_acquire(n))).await;
    let refused = outs
        .iter()
        .filter(
            |o| matches!(o, Err(e) if matches!(e.master_kind(), Some(K::Overloaded { limit: 8 }))),
        )
        .count();
    assert_eq!(refused, 42, "{outs:?}");
    server.resume().expect("resume");
    // Only what went out runs when the master resumes, and none of it stays: each acquire's
    // release went out behind it.
    let clean = redlock_tests::eventually(Duration::from_secs(10), || {
        names
            .iter()
            .all(|n| !exists(&server, &format!("redlock:{{{n}}}")))
    })
    .await;
    assert!(clean, "an acquire that went out was left behind");
    let ran = names
        .iter()
        .filter(|n| redlock_tests::counter(&server, n) > 0)
        .count();
    assert_eq!(ran, 8, "more requests ran than the bound let out");
}

#[tokio::test]
async fn a_per_request_timeout_too_large_for_a_clock_never_panics() {
    use redlock_single::{Connection, LockKey, Master, Node, NodeOptions};
    let server = redlock_tests::server();
    let options = NodeOptions {
        timeout: Duration::MAX,
        ..NodeOptions::default()
    };
    let node = Node::connect(&server.url(), options)
        .await
        .expect("connect");
    let key = LockKey::new("redlock:", "max").expect("key");
    let seen = node
        .connection()
        .expect("connected")
        .inspect(&key)
        .await
        .expect("inspect");
    assert!(seen.holder.is_none());
    // On a lock, where the ttl bounds it, it is a configuration error.
    let err = builder(&server, TTL)
        .timeout(Duration::MAX)
        .connect()
        .await
        .expect_err("larger than the ttl");
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[tokio::test]
async fn a_refused_password_is_named_with_the_servers_reply_and_the_master_once() {
    let server = redlock_tests::server();
    server
        .cmd(&["CONFIG", "SET", "requirepass", "secret"])
        .expect("set a password");
    let addr = server.addr();
    // No password: refused in the handshake, with the server's reply.
    let err = builder(&server, TTL).connect().await.expect_err("NOAUTH");
    let text = err.to_string();
    assert!(
        matches!(err.master_kind(), Some(K::Denied { .. })) && text.contains("NOAUTH"),
        "{err:?}"
    );
    assert_eq!(text.matches(&addr).count(), 1, "{text}");
    assert!(!err.is_transient(), "{err:?}");
    // A wrong password: the handshake is refused.
    let err = Lock::builder()
        .url(format!("redis://:wrong@{addr}"))
        .connect()
        .await
        .expect_err("WRONGPASS");
    let text = err.to_string();
    assert!(
        matches!(err.master_kind(), Some(K::Denied { .. })) && text.contains("WRONGPASS"),
        "{err:?}"
    );
    assert_eq!(text.matches(&addr).count(), 1, "{text}");
}

#[tokio::test]
async fn a_fencing_counter_of_another_type_is_named_as_the_fence_key() {
    let server = redlock_tests::server();
    let lock = connect(&server, TTL).await;
    server
        .cmd(&["SET", "redlock:{f}:fence", "banana"])
        .expect("SET");
    let err = lock.try_acquire("f").await.expect_err("bad counter");
    assert!(
        matches!(err.master_kind(), Some(K::WrongType { key }) if key == "redlock:{f}:fence"),
        "{err:?}"
    );
    assert!(!exists(&server, "redlock:{f}"), "a lock was left behind");
}
