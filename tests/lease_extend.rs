//! What an extension does to the validity, on both lock types against real masters: the
//! deadline becomes what the extension gives, shorter ones included; an extension that fails or
//! comes too late can only move it earlier, and one too late to rely on marks the lock lost.

use std::time::Duration;

use redlock::{Redlock, Retry};
use redlock_tests::{connect, persistent_masters, server};

const TTL: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(500);
/// Bounds only a hang: every wait below ends on an event long before.
const HANG: Duration = Duration::from_secs(20);

async fn quorum(group: &redlock_testkit::RedisGroup) -> Redlock {
    redlock_tests::heard_from(
        Redlock::builder()
            .nodes(group.urls())
            .ttl(TTL)
            .timeout(Duration::from_millis(200))
            .retry(Retry::none()),
    )
    .await
}

#[tokio::test]
async fn a_shorter_extension_shortens_the_quorum_lock_and_another_client_gets_it_after() {
    let group = persistent_masters(3);
    let (a, b) = (quorum(&group).await, quorum(&group).await);
    let guard = a.try_acquire("x").await.expect("acquire").expect("free");
    guard.extend(SHORT).await.expect("extend");
    // The masters now expire the key in half a second: the holder must not believe in more.
    assert!(guard.validity() <= SHORT, "validity {:?}", guard.validity());
    tokio::time::timeout(HANG, guard.lost())
        .await
        .expect("lost() resolves when the shorter validity ends");
    // Another client takes it once the masters let the key go: it was not held by us then.
    let mut taken = None;
    for _ in 0..200 {
        if let Some(g) = b.try_acquire("x").await.expect("acquire") {
            taken = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let taken = taken.expect("the key expired on the masters");
    assert!(guard.is_lost(), "two holders");
    assert!(taken.fence() > guard.fence());
    taken.release().await.expect("release");
}

#[tokio::test]
async fn a_quorum_extension_too_short_to_rely_on_marks_the_lock_lost_and_wakes_its_watchers() {
    let group = persistent_masters(3);
    let locks = quorum(&group).await;
    let guard = locks
        .try_acquire("y")
        .await
        .expect("acquire")
        .expect("free");
    let lease = guard.lease();
    let watcher = tokio::spawn(async move { lease.lost().await });
    // 2 ms is less than the drift allowed for it: no validity could be left.
    let err = guard
        .extend(Duration::from_millis(2))
        .await
        .expect_err("too short");
    assert!(matches!(err, redlock::Error::Lost { .. }), "{err}");
    assert!(guard.is_lost(), "a lost extension must mark the lock lost");
    tokio::time::timeout(HANG, watcher)
        .await
        .expect("the watcher was woken")
        .expect("task");
    // Nothing was sent: the keys keep their ttl, and the lock is released normally.
    assert!(redlock_tests::exists(&group[0], "redlock:{y}"));
}

#[tokio::test]
async fn a_failed_quorum_extension_can_only_shorten_the_validity() {
    let mut group = persistent_masters(3);
    let locks = quorum(&group).await;
    let guard = locks
        .try_acquire("z")
        .await
        .expect("acquire")
        .expect("free");
    group[0].pause().expect("pause");
    group[1].pause().expect("pause");
    // Two of three silent: no quorum. But the one that answered (and the paused ones, once
    // they resume) now expire the key in half a second.
    let err = guard.extend(SHORT).await.expect_err("no quorum");
    assert!(matches!(err, redlock::Error::NoQuorum { .. }), "{err}");
    assert!(guard.validity() <= SHORT, "validity {:?}", guard.validity());
    group[0].resume().expect("resume");
    group[1].resume().expect("resume");
}

#[tokio::test]
async fn a_shorter_extension_shortens_the_single_lock() {
    let server = server();
    let lock = connect(&server, TTL).await;
    let guard = lock.try_acquire("x").await.expect("acquire").expect("free");
    guard.extend(SHORT).await.expect("extend");
    assert!(guard.validity() <= SHORT, "validity {:?}", guard.validity());
    tokio::time::timeout(HANG, guard.lost())
        .await
        .expect("lost() resolves when the shorter validity ends");
}

#[tokio::test]
async fn a_single_extension_too_short_to_rely_on_marks_the_lock_lost() {
    let server = server();
    let lock = connect(&server, TTL).await;
    let guard = lock.try_acquire("y").await.expect("acquire").expect("free");
    let lease = guard.lease();
    let watcher = tokio::spawn(async move { lease.lost().await });
    let err = guard
        .extend(Duration::from_millis(2))
        .await
        .expect_err("too short");
    assert!(matches!(err, redlock_single::Error::Lost { .. }), "{err}");
    assert!(guard.is_lost());
    tokio::time::timeout(HANG, watcher)
        .await
        .expect("the watcher was woken")
        .expect("task");
}
