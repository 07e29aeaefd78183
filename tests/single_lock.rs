//! The single-master lock against a real redis-server: mutual exclusion, ownership, expiry,
//! extension, fencing, retries, `with_lock`, metadata and inspection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use redlock_single::{Error, MasterErrorKind, Retry};
use redlock_tests::{builder, connect, eventually, exists};
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(10);

#[tokio::test]
async fn two_clients_exclude_each_other() {
    let server = redlock_tests::server();
    let a = connect(&server, TTL).await;
    let b = connect(&server, TTL).await;

    let held = a.try_acquire("job").await.expect("a").expect("free");
    assert!(
        b.try_acquire("job").await.expect("b").is_none(),
        "b got a held lock"
    );
    // Another resource is independent.
    let other = b.try_acquire("other-job").await.expect("b").expect("free");

    held.release().await.expect("release");
    let taken = b
        .try_acquire("job")
        .await
        .expect("b")
        .expect("free after release");
    assert!(taken.fence() > 0);
    taken.release().await.expect("release");
    other.release().await.expect("release");
}

#[tokio::test]
async fn many_tasks_never_overlap() {
    let server = redlock_tests::server();
    let lock = builder(&server, TTL)
        .retry(Retry::linear(Duration::from_millis(2)).deadline(Duration::from_secs(30)))
        .connect()
        .await
        .expect("connect");
    let inside = Arc::new(AtomicBool::new(false));
    let entries = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (lock, inside, entries) = (lock.clone(), inside.clone(), entries.clone());
            tokio::spawn(async move {
                for _ in 0..10 {
                    let guard = lock.acquire("shared").await.expect("acquire");
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                    entries.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    inside.store(false, Ordering::SeqCst);
                    guard.release().await.expect("release");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(entries.load(Ordering::SeqCst), 80);
}

#[tokio::test]
async fn only_the_holder_releases_or_extends() {
    let server = redlock_tests::server();
    let lock = connect(&server, Duration::from_millis(500)).await;

    // A guard whose key now belongs to someone else cannot touch it.
    let old = lock.try_acquire("k").await.expect("acquire").expect("free");
    server.cmd(&["DEL", "redlock:{k}"]).expect("DEL");
    let new = lock.try_acquire("k").await.expect("acquire").expect("free");
    assert!(matches!(
        old.extend(Duration::from_secs(5)).await,
        Err(Error::Lost { .. })
    ));
    assert!(old.is_lost(), "a refused extension marks the lock lost");
    assert!(matches!(old.release().await, Err(Error::Lost { .. })));

    // The new holder's key is untouched: same value, ttl not moved to 5 s.
    let pttl = server
        .cmd(&["PTTL", "redlock:{k}"])
        .expect("PTTL")
        .as_int()
        .expect("int");
    assert!(pttl > 0 && pttl <= 500, "pttl {pttl}");
    assert!(new.remaining().await.expect("remaining").is_some());
    new.release().await.expect("release");
    assert!(!exists(&server, "redlock:{k}"));
}

#[tokio::test]
async fn the_key_expires_after_the_ttl() {
    let server = redlock_tests::server();
    let ttl = Duration::from_millis(300);
    let lock = connect(&server, ttl).await;
    let start = Instant::now();
    let guard = lock
        .try_acquire("exp")
        .await
        .expect("acquire")
        .expect("free");
    // The validity allows for drift (ttl × 0.01 + 2 ms): it ends before the key's ttl does.
    let read_at = Instant::now();
    let left = guard.validity();
    assert!(left <= ttl - Duration::from_millis(5), "{left:?}");
    // The lost signal fires at that deadline, not before (how late depends on the machine,
    // so that is not asserted).
    guard.lost().await;
    assert!(read_at.elapsed() >= left);
    let gone = eventually(Duration::from_secs(2), || !exists(&server, "redlock:{exp}")).await;
    assert!(gone, "the key outlived its ttl");
    assert!(start.elapsed() >= ttl - Duration::from_millis(5));
    let other = connect(&server, ttl).await;
    assert!(other.try_acquire("exp").await.expect("acquire").is_some());
    drop(guard);
}

#[tokio::test]
async fn extend_moves_the_expiry() {
    let server = redlock_tests::server();
    let lock = connect(&server, Duration::from_millis(400)).await;
    let guard = lock
        .try_acquire("ext")
        .await
        .expect("acquire")
        .expect("free");
    let before = guard.validity();
    guard.extend(Duration::from_secs(20)).await.expect("extend");
    assert!(
        guard.validity() > Duration::from_secs(19),
        "{:?}",
        guard.validity()
    );
    assert!(guard.validity() > before);
    let left = guard.remaining().await.expect("remaining").expect("held");
    assert!(left > Duration::from_secs(19), "{left:?}");
    // Still held well past the original ttl.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(exists(&server, "redlock:{ext}"));
    assert!(!guard.is_lost());
    guard.release().await.expect("release");
}

#[tokio::test]
async fn fences_strictly_increase_across_clients() {
    let server = redlock_tests::server();
    let a = connect(&server, TTL).await;
    let b = connect(&server, TTL).await;
    let mut last = 0;
    for i in 0..20 {
        let lock = if i % 2 == 0 { &a } else { &b };
        let guard = lock
            .try_acquire("fenced")
            .await
            .expect("acquire")
            .expect("free");
        assert!(guard.fence() > last, "fence {} after {last}", guard.fence());
        last = guard.fence();
        guard.release().await.expect("release");
    }
    // The counter survives the lock key and is what inspect reports.
    assert_eq!(a.inspect("fenced").await.expect("inspect").fence, last);
    // Each resource has its own counter, and a new one starts from the master's clock (the
    // hybrid counter): at least its whole seconds × 1,000,000, not at 1.
    let before = redlock_tests::server_seconds(&server);
    let other = a
        .try_acquire("other")
        .await
        .expect("acquire")
        .expect("free");
    assert!(
        other.fence() >= before * 1_000_000,
        "fence {}",
        other.fence()
    );
    assert!(
        other.fence() < (before + 2) * 1_000_000,
        "fence {}",
        other.fence()
    );
    other.release().await.expect("release");
}

#[tokio::test]
async fn retry_waits_for_a_release() {
    let server = redlock_tests::server();
    let holder = connect(&server, TTL).await;
    let waiter = builder(&server, TTL)
        .retry(Retry::linear(Duration::from_millis(20)).deadline(Duration::from_secs(20)))
        .connect()
        .await
        .expect("connect");
    let guard = holder
        .try_acquire("r")
        .await
        .expect("acquire")
        .expect("free");
    let released = Arc::new(AtomicBool::new(false));
    let flag = released.clone();
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        flag.store(true, Ordering::SeqCst);
        guard.release().await.expect("release");
    });
    let got = waiter
        .acquire("r")
        .await
        .expect("acquired after the release");
    assert!(released.load(Ordering::SeqCst), "acquired while still held");
    got.release().await.expect("release");
    releaser.await.expect("releaser");
}

#[tokio::test]
async fn retry_gives_up_at_its_deadline() {
    let server = redlock_tests::server();
    let holder = connect(&server, TTL).await;
    let deadline = Duration::from_millis(300);
    let waiter = builder(&server, TTL)
        .retry(
            Retry::exponential(Duration::from_millis(10), Duration::from_millis(100))
                .deadline(deadline),
        )
        .connect()
        .await
        .expect("connect");
    let guard = holder
        .try_acquire("d")
        .await
        .expect("acquire")
        .expect("free");
    let start = Instant::now();
    let err = waiter.acquire("d").await.expect_err("held throughout");
    let waited = start.elapsed();
    assert!(
        matches!(err, Error::Held { ref resource } if resource == "d"),
        "{err}"
    );
    assert!(waited >= deadline, "gave up early, after {waited:?}");

    // A number of attempts bounds it too.
    let counted = builder(&server, TTL)
        .retry(Retry::linear(Duration::from_millis(1)).attempts(3))
        .connect()
        .await
        .expect("connect");
    assert!(matches!(
        counted.acquire("d").await,
        Err(Error::Held { .. })
    ));
    guard.release().await.expect("release");
}

#[tokio::test]
async fn with_lock_returns_the_work_and_releases() {
    let server = redlock_tests::server();
    let lock = connect(&server, Duration::from_millis(300)).await;
    let (fence, held_inside) = lock
        .with_lock("w", |lease| {
            let server = &server;
            async move {
                // Outlive the ttl several times: the background extension keeps it.
                tokio::time::sleep(Duration::from_millis(900)).await;
                (
                    lease.fence(),
                    exists(server, "redlock:{w}") && !lease.is_lost(),
                )
            }
        })
        .await
        .expect("with_lock");
    assert!(fence >= 1);
    assert!(held_inside, "the lock expired while the work ran");
    assert!(!exists(&server, "redlock:{w}"), "not released at the end");
}

#[tokio::test]
async fn with_lock_drops_the_work_when_the_key_is_deleted() {
    let server = redlock_tests::server();
    let lock = connect(&server, Duration::from_millis(600)).await;
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let deleter = {
        let port = server.port();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Behind the holder's back, as an operator or a buggy client might.
            redlock_testkit::command(port, &["DEL", "redlock:{victim}"]).expect("DEL");
        })
    };
    let start = Instant::now();
    let out = lock
        .with_lock("victim", |_lease| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            flag.store(true, Ordering::SeqCst);
        })
        .await;
    assert!(
        matches!(out, Err(Error::Lost { ref resource }) if resource == "victim"),
        "{out:?}"
    );
    assert!(!finished.load(Ordering::SeqCst), "the work ran to its end");
    // Noticed at the first extension, at a third of the ttl, long before the work's 30 s.
    assert!(start.elapsed() < Duration::from_secs(5));
    deleter.await.expect("deleter");
}

#[tokio::test]
async fn metadata_and_inspect_show_the_holder() {
    let server = redlock_tests::server();
    let lock = builder(&server, TTL)
        .meta("host-a:4242")
        .connect()
        .await
        .expect("connect");
    let before = lock.inspect("m").await.expect("inspect");
    assert!(before.holder.is_none() && before.ttl.is_none());
    assert_eq!(before.fence, 0);

    let guard = lock.try_acquire("m").await.expect("acquire").expect("free");
    let seen = lock.inspect("m").await.expect("inspect");
    let holder = seen.holder.expect("held");
    assert_eq!(holder.meta, "host-a:4242");
    assert!(seen.ttl.expect("ttl") <= TTL);
    assert_eq!(seen.fence, guard.fence());
    guard.release().await.expect("release");
    assert!(lock.inspect("m").await.expect("inspect").holder.is_none());
}

#[tokio::test]
async fn dropping_a_guard_releases_it_in_the_background() {
    let server = redlock_tests::server();
    let lock = connect(&server, TTL).await;
    let guard = lock
        .try_acquire("dropped")
        .await
        .expect("acquire")
        .expect("free");
    let lease = guard.lease();
    drop(guard);
    assert!(lease.is_lost(), "a dropped guard's lease must read as lost");
    let gone = eventually(Duration::from_secs(2), || {
        !exists(&server, "redlock:{dropped}")
    })
    .await;
    assert!(gone, "the dropped guard's key stayed for its ttl");
}

#[tokio::test]
async fn release_resolves_lost_and_scripts_survive_a_restart() {
    let mut server = redlock_tests::server();
    // About the script cache, not the restart guard (tested in single_restart.rs): with the
    // guard on, the master restarted empty would not grant for the restart delay.
    let lock = builder(&server, TTL)
        .restart_guard(false)
        .connect()
        .await
        .expect("connect");
    let guard = lock.try_acquire("s").await.expect("acquire").expect("free");
    let lease = guard.lease();
    let waiter = tokio::spawn(async move { lease.lost().await });
    // Let the waiter start watching first, so that the release has to wake it.
    tokio::task::yield_now().await;
    guard.release().await.expect("release");
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("lost() resolved on release")
        .expect("task");

    // A restarted master has an empty script cache: EVALSHA gets NOSCRIPT and reloads.
    server.restart().expect("restart");
    // The client reconnects in the background; until then requests fail fast.
    let mut got = None;
    for _ in 0..100 {
        match lock.try_acquire("s").await {
            Ok(g) => {
                got = g;
                break;
            }
            Err(e)
                if matches!(
                    e.master_kind(),
                    Some(MasterErrorKind::Unreachable { .. } | MasterErrorKind::Timeout { .. })
                ) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("unexpected error after restart: {e}"),
        }
    }
    let guard = got.expect("acquired after the master restarted");
    guard.release().await.expect("release");
}

#[tokio::test]
async fn only_the_exact_token_may_extend_or_release() {
    use redlock_single::{Connection, LockKey, Master, Node, NodeOptions, Token};
    let server = redlock_tests::server();
    let options = NodeOptions {
        timeout: Duration::from_secs(1),
        ..NodeOptions::default()
    };
    let node = Node::connect(&server.url(), options)
        .await
        .expect("connect");
    let node = node.connection().expect("connected");
    let key = LockKey::new("redlock:", "exact").expect("key");
    let token = Token::random();
    let set = |value: String| {
        server
            .cmd(&["SET", key.key(), &value, "PX", "60000"])
            .expect("set")
    };
    // Values that start with the token but are not the token, or the token then metadata.
    for other in [
        format!("{}x", token.as_str()),
        format!("{}x meta", token.as_str()),
        token.as_str()[..31].to_owned(),
        format!("{} meta", Token::random().as_str()),
    ] {
        set(other.clone());
        assert!(
            !node.extend(&key, &token, TTL).await.expect("extend"),
            "extended a key holding {other:?}"
        );
        assert!(
            !node.release(&key, &token).await.expect("release"),
            "released a key holding {other:?}"
        );
        assert!(
            exists(&server, key.key()),
            "the key holding {other:?} was deleted"
        );
    }
    // The token alone, or followed by a space and metadata, is ours.
    for ours in [
        token.as_str().to_owned(),
        format!("{} host:1 x", token.as_str()),
    ] {
        set(ours.clone());
        assert!(
            node.extend(&key, &token, TTL).await.expect("extend"),
            "{ours:?}"
        );
        assert!(
            node.release(&key, &token).await.expect("release"),
            "{ours:?}"
        );
        assert!(!exists(&server, key.key()), "{ours:?} stayed after release");
    }
}

#[tokio::test]
async fn on_a_new_connection_requests_run_in_the_order_they_were_made() {
    use redlock_single::{Connection, LockKey, Master, Node, NodeOptions, Token};
    let server = redlock_tests::server();
    let node = Node::connect(&server.url(), NodeOptions::default())
        .await
        .expect("connect");
    let conn = node.connection().expect("connected");
    let key = LockKey::new("redlock:", "order").expect("key");
    let (first, second) = (Token::random(), Token::random());
    assert!(
        conn.acquire(&key, &first, TTL, "")
            .await
            .expect("acquire")
            .is_some()
    );
    // The release is made first, the next acquire right behind it, before either is answered:
    // the master must run them in that order. (Had the release's script to be loaded on
    // NOSCRIPT first, its second try would come after the acquire, which would find the lock
    // still held.)
    let (released, taken) = futures::join!(
        conn.release(&key, &first),
        conn.acquire(&key, &second, TTL, "")
    );
    assert!(
        released.expect("release"),
        "the first lock was not released"
    );
    assert!(
        taken.expect("acquire").is_some(),
        "the acquire overtook the release"
    );
}
