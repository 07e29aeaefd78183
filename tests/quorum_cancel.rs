//! Cancel safety of the quorum lock over five real masters, one of them paused: an `acquire`
//! dropped after 0, 1, … 4 of the masters' answers reached the client leaves no key on any
//! master, the paused one included once it resumes. The drop points are reached by events:
//! every live master has run the acquire (its counter moved) while the proxies in front of them
//! hold the replies back; then `k` proxies let theirs through.

use std::time::Duration;

use redlock::{Redlock, Retry};
use redlock_testkit::{Proxy, ProxyFaults};
use redlock_tests::{counter, eventually, exists, persistent_masters};

const BOUND: Duration = Duration::from_secs(15);

fn hold_replies(proxy: &Proxy, on: bool) {
    proxy.set_faults(ProxyFaults {
        hold_replies: on,
        ..ProxyFaults::default()
    });
}

#[tokio::test]
async fn an_acquire_dropped_after_any_number_of_answers_leaves_no_key_anywhere() {
    let mut group = persistent_masters(5);
    let proxies: Vec<Proxy> = group
        .iter()
        .map(|s| Proxy::start(s.port()).expect("proxy"))
        .collect();
    let locks = redlock_tests::heard_from(
        Redlock::builder()
            .nodes(proxies.iter().map(Proxy::url))
            .ttl(Duration::from_secs(60))
            .timeout(Duration::from_millis(300))
            .retry(Retry::none()),
    )
    .await;
    // Master 4 votes but is silent: its acquire waits in it.
    group[4].pause().expect("pause");
    for k in 0..=4 {
        let resource = format!("c{k}");
        for p in &proxies {
            hold_replies(p, true);
        }
        let mut attempt = Box::pin(locks.try_acquire(&resource));
        assert!(futures::poll!(attempt.as_mut()).is_pending());
        // Every live master granted; no answer has reached the client.
        let granted = eventually(BOUND, || (0..4).all(|i| counter(&group[i], &resource) > 0)).await;
        assert!(granted, "round {k}: the acquires did not all run");
        // Let k answers through and let the attempt take them; with a quorum of them it may
        // complete, and then it is its guard that is dropped.
        for p in &proxies[..k] {
            hold_replies(p, false);
        }
        match tokio::time::timeout(Duration::from_millis(100), attempt.as_mut()).await {
            Ok(Ok(Some(guard))) => {
                assert!(
                    k >= 3,
                    "round {k}: granted with fewer than a quorum of answers"
                );
                drop(guard);
            }
            Ok(out) => panic!("round {k}: {out:?}"),
            Err(_) => {}
        }
        drop(attempt);
        for p in &proxies {
            hold_replies(p, false);
        }
        let key = format!("redlock:{{{resource}}}");
        let clean = eventually(BOUND, || (0..4).all(|i| !exists(&group[i], &key))).await;
        assert!(clean, "round {k}: a key was left on a live master");
    }
    // The paused master runs each queued acquire, and the release behind it.
    group[4].resume().expect("resume");
    let clean = eventually(BOUND, || {
        (0..=4).all(|k| {
            let resource = format!("c{k}");
            counter(&group[4], &resource) > 0
                && !exists(&group[4], &format!("redlock:{{{resource}}}"))
        })
    })
    .await;
    assert!(clean, "a key was left on the master that was paused");
}
