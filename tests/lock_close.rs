//! `close()` on both lock types against real masters: once it returns, the background work of
//! failed and cancelled attempts has its answers, so a process that ends right after leaves no
//! key of theirs. Each test drops its runtime at once after `close()`, as a process exits, and
//! looks at the masters without waiting.

use std::time::Duration;

use redlock::{Redlock, Retry};
use redlock_testkit::{Proxy, ProxyFaults};
use redlock_tests::{counter, exists, persistent_masters, server};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Polls `check` every 20 ms for at most 10 s, outside any runtime.
fn soon(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_failed_quorum_attempt_closed_leaves_none_of_its_keys_when_the_process_ends() {
    let mut group = persistent_masters(5);
    for i in 0..2 {
        group[i]
            .cmd(&["SET", "redlock:{p}", "other-holder", "PX", "60000"])
            .expect("SET");
    }
    let rt = runtime();
    let err = rt.block_on(async {
        let locks = redlock_tests::heard_from(
            Redlock::builder()
                .nodes(group.urls())
                .ttl(Duration::from_secs(60))
                .timeout(Duration::from_millis(200))
                .retry(Retry::none()),
        )
        .await;
        // Master 2 votes but is silent now: its acquire is queued there.
        group[2].pause().expect("pause");
        let err = locks
            .try_acquire("p")
            .await
            .expect_err("2 yes, 2 no, 1 silent");
        locks.close().await;
        // Reading still works after close(), and shows only the other holder's keys: the
        // failed attempt's are gone from the masters that answered.
        let seen = locks.inspect("p").await.expect("inspect after close");
        for (i, (addr, r)) in seen.iter().enumerate() {
            let holder = match r {
                Ok(i) => i.holder.as_ref().map(|h| h.token.clone()),
                Err(_) => continue,
            };
            let expected = (i < 2).then(|| "other-holder".to_owned());
            assert_eq!(holder, expected, "{addr}");
        }
        err
    });
    drop(rt);
    assert!(matches!(err, redlock::Error::NoQuorum { .. }), "{err}");
    for i in 3..5 {
        assert!(
            !exists(&group[i], "redlock:{p}"),
            "master {i} still holds the failed attempt's key"
        );
    }
    // The paused master runs the queued acquire and the release behind it once it resumes:
    // both were sent before the process ended.
    let before = counter(&group[3], "p");
    group[2].resume().expect("resume");
    assert!(soon(
        || counter(&group[2], "p") > 0 && !exists(&group[2], "redlock:{p}")
    ));
    assert_eq!(counter(&group[3], "p"), before);
    for i in 0..2 {
        let v = group[i].cmd(&["GET", "redlock:{p}"]).expect("GET");
        assert_eq!(
            v.as_str(),
            Some("other-holder"),
            "someone else's key was touched"
        );
    }
}

#[test]
fn a_cancelled_single_acquire_closed_leaves_no_key_when_the_process_ends() {
    let server = server();
    let proxy = Proxy::start(server.port()).expect("proxy");
    let rt = runtime();
    rt.block_on(async {
        let lock = redlock_single::Lock::builder()
            .url(proxy.url())
            .ttl(Duration::from_secs(60))
            .timeout(Duration::from_millis(200))
            .retry(redlock_single::Retry::none())
            .connect()
            .await
            .expect("connect");
        let warm = lock.try_acquire("c").await.expect("acquire").expect("free");
        warm.release().await.expect("release");
        let before = counter(&server, "c");
        // The master grants, its reply is held: the acquire is dropped with the lock granted.
        proxy.set_faults(ProxyFaults {
            hold_replies: true,
            ..ProxyFaults::default()
        });
        let mut attempt = Box::pin(lock.try_acquire("c"));
        assert!(futures::poll!(attempt.as_mut()).is_pending());
        let granted =
            redlock_tests::eventually(Duration::from_secs(10), || counter(&server, "c") > before)
                .await;
        assert!(granted, "the acquire never ran");
        drop(attempt);
        lock.close().await;
    });
    drop(rt);
    assert!(
        !exists(&server, "redlock:{c}"),
        "the cancelled acquire left its key"
    );
}
