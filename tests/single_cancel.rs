//! Cancel safety: an `acquire` dropped at any point leaves no lock behind.

use std::time::Duration;

use redlock_single::Retry;
use redlock_tests::{builder, eventually, exists};

#[tokio::test]
async fn dropping_acquire_at_random_points_leaves_no_key() {
    let server = redlock_tests::server();
    // A ttl far longer than the test: any key left behind would still be there at the end.
    let lock = builder(&server, Duration::from_secs(60))
        .retry(Retry::linear(Duration::from_millis(1)).attempts(3))
        .connect()
        .await
        .expect("connect");
    let mut completed = 0u64;
    let mut dropped_after_grant = 0u64;
    // Timeouts that grow by a microsecond a round sweep the drop point across the whole
    // acquire, until both interesting cases were seen often enough (bounded in rounds).
    for i in 0..5_000u64 {
        let granted_before = lock.inspect("c").await.expect("inspect").fence;
        match tokio::time::timeout(Duration::from_micros(i), lock.acquire("c")).await {
            Ok(Ok(guard)) => {
                completed += 1;
                guard.release().await.expect("release");
            }
            Ok(Err(e)) => panic!("round {i}: {e}"),
            // Dropped in flight: whatever it took must be released behind it.
            Err(_elapsed) => {
                if lock.inspect("c").await.expect("inspect").fence > granted_before {
                    dropped_after_grant += 1;
                }
            }
        }
        // Each round starts free, or a later acquire would just find it held.
        let free = eventually(Duration::from_secs(2), || !exists(&server, "redlock:{c}")).await;
        assert!(free, "round {i} left the lock behind");
        if completed >= 5 && dropped_after_grant >= 5 {
            break;
        }
    }
    // Both sides were exercised: acquisitions that completed, and acquisitions the master
    // granted whose futures were dropped before the reply: the background release cleaned those.
    assert!(completed >= 5, "only {completed} acquisitions completed");
    assert!(
        dropped_after_grant >= 5,
        "only {dropped_after_grant} drops after a grant"
    );
}

#[tokio::test]
async fn dropping_with_lock_releases_in_the_background() {
    let server = redlock_tests::server();
    let lock = builder(&server, Duration::from_secs(60))
        .connect()
        .await
        .expect("connect");
    let work = lock.with_lock("w", |_| std::future::pending::<()>());
    let out = tokio::time::timeout(Duration::from_millis(200), work).await;
    assert!(out.is_err(), "pending work cannot finish");
    let free = eventually(Duration::from_secs(2), || !exists(&server, "redlock:{w}")).await;
    assert!(free, "the dropped with_lock left its key for the whole ttl");
}
