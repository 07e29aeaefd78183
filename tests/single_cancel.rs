//! Cancel safety of the single-master lock: an `acquire` dropped at any stage of its request
//! leaves no lock behind. Each drop point is reached by an event seen on the wire or on the
//! master (the request reached the proxy, the master granted), never by a clock: the master is
//! reached through the testkit's proxy, which holds requests or replies back on demand.

use std::future::Future;
use std::time::Duration;

use redlock_single::{Lock, Retry};
use redlock_testkit::{Proxy, ProxyFaults, RedisServer};
use redlock_tests::{counter, eventually, exists};

/// Bounds only a hang: every wait ends on an event.
const BOUND: Duration = Duration::from_secs(10);

/// A master, a proxy in front of it, and a lock through the proxy that has read the master's
/// health already (so that an attempt goes straight to the acquire).
async fn setup() -> (RedisServer, Proxy, Lock) {
    let server = redlock_tests::server();
    let proxy = Proxy::start(server.port()).expect("proxy");
    // A ttl far longer than the test: a key left behind would still be there at the end.
    let lock = Lock::builder()
        .url(proxy.url())
        .ttl(Duration::from_secs(60))
        .timeout(Duration::from_millis(200))
        .retry(Retry::none())
        .connect()
        .await
        .expect("connect");
    let warm = lock
        .try_acquire("warm")
        .await
        .expect("acquire")
        .expect("free");
    warm.release().await.expect("release");
    (server, proxy, lock)
}

fn hold(proxy: &Proxy, requests: bool, replies: bool) {
    proxy.set_faults(ProxyFaults {
        hold_requests: requests,
        hold_replies: replies,
        ..ProxyFaults::default()
    });
}

/// Starts `attempt` (polls it once: its request is handed to the connection).
async fn started<F: Future>(attempt: F) -> std::pin::Pin<Box<F>> {
    let mut attempt = Box::pin(attempt);
    assert!(
        futures::poll!(attempt.as_mut()).is_pending(),
        "done at once"
    );
    attempt
}

/// Waits until the key of `resource` is gone from `server` and the acquire has run there.
async fn left_nothing(server: &RedisServer, resource: &str, before: u64) {
    let key = format!("redlock:{{{resource}}}");
    let clean = eventually(BOUND, || {
        counter(server, resource) > before && !exists(server, &key)
    })
    .await;
    assert!(
        clean,
        "the dropped acquire of {resource:?} left its key (or never ran)"
    );
}

#[tokio::test]
async fn an_acquire_dropped_before_it_is_polled_sends_nothing() {
    let (server, _proxy, lock) = setup().await;
    drop(lock.try_acquire("c"));
    lock.close().await;
    assert_eq!(counter(&server, "c"), 0, "a request went out");
}

#[tokio::test]
async fn an_acquire_dropped_before_the_request_reached_the_master_leaves_no_key() {
    let (server, proxy, lock) = setup().await;
    let before = counter(&server, "c");
    hold(&proxy, true, false);
    let sent = proxy.sent_to_server().len();
    let attempt = started(lock.try_acquire("c")).await;
    // The request left the client and waits at the proxy; the master has not seen it.
    let at_proxy = eventually(BOUND, || proxy.sent_to_server().len() > sent).await;
    assert!(at_proxy, "the request was not sent");
    drop(attempt);
    hold(&proxy, false, false);
    left_nothing(&server, "c", before).await;
}

#[tokio::test]
async fn an_acquire_dropped_after_the_master_granted_it_leaves_no_key() {
    let (server, proxy, lock) = setup().await;
    // Several rounds of the stage that needs the background release most.
    for round in 0..5 {
        let resource = format!("g{round}");
        hold(&proxy, false, true);
        let attempt = started(lock.try_acquire(&resource)).await;
        // The master ran the acquire (its counter moved); the reply has not reached us.
        let granted = eventually(BOUND, || counter(&server, &resource) > 0).await;
        assert!(granted, "the acquire never ran");
        drop(attempt);
        hold(&proxy, false, false);
        left_nothing(&server, &resource, 0).await;
    }
}

#[tokio::test]
async fn an_acquire_dropped_while_the_master_is_paused_leaves_no_key_after_it_resumes() {
    let (mut server, proxy, lock) = setup().await;
    let before = counter(&server, "c");
    server.pause().expect("pause");
    let sent = proxy.sent_to_server().len();
    let attempt = started(lock.try_acquire("c")).await;
    let out = eventually(BOUND, || proxy.sent_to_server().len() > sent).await;
    assert!(out, "the request was not sent");
    drop(attempt);
    // The acquire runs when the master resumes, with the release queued behind it.
    server.resume().expect("resume");
    left_nothing(&server, "c", before).await;
}

#[tokio::test]
async fn an_acquire_that_completed_and_whose_guard_is_dropped_leaves_no_key() {
    let (server, _proxy, lock) = setup().await;
    let before = counter(&server, "c");
    let guard = lock.try_acquire("c").await.expect("acquire").expect("free");
    drop(guard);
    left_nothing(&server, "c", before).await;
}

#[tokio::test]
async fn dropping_with_lock_releases_in_the_background() {
    let server = redlock_tests::server();
    let lock = redlock_tests::builder(&server, Duration::from_secs(60))
        .connect()
        .await
        .expect("connect");
    let work = lock.with_lock("w", |_| std::future::pending::<()>());
    let out = tokio::time::timeout(Duration::from_millis(200), work).await;
    assert!(out.is_err(), "pending work cannot finish");
    let free = eventually(Duration::from_secs(2), || !exists(&server, "redlock:{w}")).await;
    assert!(free, "the dropped with_lock left its key for the whole ttl");
}
