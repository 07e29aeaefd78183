//! Fencing tokens against real masters: strictly increasing through a master of the quorum
//! losing its data (the hybrid counter; see `docs/safety.md`).

use std::time::Duration;

use redlock::{Redlock, Retry};
use redlock_testkit::ServerOptions;
use redlock_tests::masters_with;

#[tokio::test]
async fn fences_keep_increasing_after_a_master_of_the_quorum_restarts_empty() {
    let mut group = masters_with(3, ServerOptions::default());
    let locks = Redlock::builder()
        .nodes(group.urls())
        .ttl(Duration::from_secs(1))
        .timeout(Duration::from_millis(200))
        .retry(Retry::none())
        .connect()
        .await
        .expect("connect");
    // Master 2 is down: the fences come from masters 0 and 1 alone.
    group[2].kill().expect("kill");
    let mut last = 0;
    for _ in 0..5 {
        let guard = locks
            .try_acquire("f")
            .await
            .expect("acquire")
            .expect("free");
        assert!(guard.fence() > last, "fence {} after {last}", guard.fence());
        last = guard.fence();
        guard.release().await.expect("release");
    }
    // Master 2 comes back empty (it granted none of them: vouched for), master 0 restarts
    // empty, master 1 goes down: the next quorum is {0, 2}, whose counters know nothing of the
    // fences above.
    group[2].restart().expect("restart");
    group[2].vouch().expect("vouch");
    group[0].kill().expect("kill");
    group[0].restart().expect("restart");
    group[1].kill().expect("kill");
    // Master 0 votes once it has waited out its restart delay; the first lock granted then
    // must carry a larger fence than every one before.
    let mut next = None;
    for _ in 0..400 {
        if let Ok(Some(guard)) = locks.try_acquire("f").await {
            next = Some(guard);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let guard = next.expect("masters 0 and 2 grant again");
    assert!(
        guard.fence() > last,
        "fence {} after {last}: it went back",
        guard.fence()
    );
    guard.release().await.expect("release");
}
