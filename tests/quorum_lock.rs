//! The quorum lock against real redis-server masters, with real faults: pauses (SIGSTOP),
//! kills and empty restarts, keys held by someone else on some masters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redlock::{Cause, Error, MasterFailure, Redlock, Retry};
use redlock_testkit::{Persistence, RedisGroup, Reply};
use redlock_tests::{counter, eventually, exists, persistent_masters};

const TTL: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_millis(100);

/// The failure that a no-quorum error names for the master at `addr`.
fn failure_of<'a>(err: &'a Error, addr: &str) -> &'a MasterFailure {
    let Error::NoQuorum { failures, .. } = err else {
        panic!("expected no quorum, got {err:?}");
    };
    failures
        .0
        .iter()
        .find(|f| f.addr == addr)
        .unwrap_or_else(|| panic!("{addr} not named: {err}"))
}

/// Whether `f` is a master that did not answer in time: its request, or the reading of its
/// health that its vote waited for.
fn timed_out(f: &MasterFailure) -> bool {
    match &f.cause {
        Cause::Failed(e) | Cause::Unverified { reason: e, .. } => {
            matches!(e.kind(), redlock::MasterErrorKind::Timeout { .. })
        }
        _ => false,
    }
}

/// Locks over `group`, connected to every master and with every master's health read: the
/// state the tests below start from (`connect` itself returns once a quorum is connected).
async fn locks(group: &RedisGroup) -> Redlock {
    let locks = connect_only(group).await;
    for (addr, vote) in locks.voters().await {
        assert!(vote.is_ok(), "{addr} does not vote: {vote:?}");
    }
    locks
}

/// Locks over `group`, connected to every master, without any master's health read yet.
async fn connect_only(group: &RedisGroup) -> Redlock {
    let locks = Redlock::builder()
        .nodes(group.urls())
        .ttl(TTL)
        .timeout(TIMEOUT)
        .retry(Retry::none())
        .connect()
        .await
        .expect("connect");
    // `connect` returns once a quorum is connected; the others follow.
    for node in locks.masters() {
        node.wait_ready(Duration::from_secs(10))
            .await
            .expect("every master connects");
    }
    locks
}

#[tokio::test]
async fn a_minority_paused_does_not_stop_the_lock() {
    let mut group = persistent_masters(5);
    let locks = locks(&group).await;
    group[3].pause().expect("pause");
    group[4].pause().expect("pause");
    for _ in 0..3 {
        let guard = locks
            .try_acquire("m")
            .await
            .expect("acquire")
            .expect("free");
        assert!(guard.validity() > TTL / 2);
        guard.release().await.expect("release");
    }
    group[3].resume().expect("resume");
    group[4].resume().expect("resume");
}

#[tokio::test]
async fn a_majority_paused_gives_no_quorum_naming_the_masters() {
    let mut group = persistent_masters(5);
    let locks = locks(&group).await;
    for i in 0..3 {
        group[i].pause().expect("pause");
    }
    let err = locks.try_acquire("m").await.expect_err("no quorum");
    let Error::NoQuorum {
        needed,
        masters,
        failures,
        ..
    } = &err
    else {
        panic!("expected no quorum, got {err:?}");
    };
    assert_eq!((*needed, *masters), (3, 5));
    // Each paused master is named with its timeout; the attempt settles without waiting for
    // the live ones once the paused ones have ruled a quorum out.
    for i in 0..3 {
        let f = failure_of(&err, &group[i].addr());
        assert!(timed_out(f), "{f}");
    }
    for f in &failures.0 {
        assert!(timed_out(f) || matches!(f.cause, Cause::NoAnswer), "{f}");
    }
    for i in 0..3 {
        group[i].resume().expect("resume");
    }
}

#[tokio::test]
async fn a_partial_acquisition_is_cleaned_up_everywhere() {
    let mut group = persistent_masters(5);
    let locks = locks(&group).await;
    // A first acquisition: every master has been heard from and votes.
    let warm = locks
        .try_acquire("p")
        .await
        .expect("acquire")
        .expect("free");
    warm.release().await.expect("release");
    // Someone else holds the key on masters 0 and 1; master 2 is paused.
    for i in 0..2 {
        let r = group[i]
            .cmd(&["SET", "redlock:{p}", "other-holder", "PX", "60000"])
            .expect("SET");
        assert_eq!(r, Reply::Status("OK".into()));
    }
    let warm_counter = counter(&group[2], "p");
    group[2].pause().expect("pause");
    let err = locks
        .try_acquire("p")
        .await
        .expect_err("2 yes, 2 no, 1 silent of 5");
    assert!(matches!(err, Error::NoQuorum { .. }), "{err}");
    group[2].resume().expect("resume");
    // The acquire runs on the paused master once it resumes (its counter moves past the
    // warm-up's), and the release queued behind it on the same connection follows.
    let ran = eventually(Duration::from_secs(5), || {
        counter(&group[2], "p") > warm_counter
    })
    .await;
    assert!(ran, "the queued acquire never ran on the resumed master");
    // Our key goes from every master, the paused one included.
    let clean = eventually(Duration::from_secs(5), || {
        (2..5).all(|i| !exists(&group[i], "redlock:{p}"))
    })
    .await;
    assert!(clean, "a partial acquisition was left behind");
    for i in 0..2 {
        let v = group[i].cmd(&["GET", "redlock:{p}"]).expect("GET");
        assert_eq!(
            v.as_str(),
            Some("other-holder"),
            "someone else's key was touched"
        );
    }
}

#[tokio::test]
async fn a_master_restarted_empty_does_not_vote_until_its_delay_has_passed() {
    let ttl = Duration::from_secs(1);
    let mut group = RedisGroup::start(3).expect("start masters");
    let locks = Redlock::builder()
        .nodes(group.urls())
        .ttl(ttl)
        .timeout(TIMEOUT)
        .retry(Retry::none())
        .connect()
        .await
        .expect("connect");
    // Fresh masters without persistence vote once they have been up for the ttl.
    let mut voted = false;
    for _ in 0..100 {
        if let Ok(Some(g)) = locks.try_acquire("r").await {
            g.release().await.expect("release");
            voted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(voted, "the masters never started voting");

    // Master 0 is killed and comes back empty; master 1 is paused: only master 2 can vote.
    group[0].kill().expect("kill");
    group[0].restart_with(Persistence::None).expect("restart");
    group[1].pause().expect("pause");
    let mut seen_restarting = false;
    for _ in 0..100 {
        match locks.try_acquire("r").await {
            Err(Error::NoQuorum { failures, .. }) => {
                if failures.0.iter().any(|f| {
                    f.addr == group[0].addr() && matches!(f.cause, Cause::Restarting { .. })
                }) {
                    seen_restarting = true;
                    break;
                }
            }
            Ok(Some(_)) => panic!("a master that restarted empty voted at once"),
            other => panic!("unexpected: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen_restarting,
        "the restarted master was never seen reconnecting"
    );
    // Once the ttl has passed since it came back, it votes again.
    let mut got = None;
    for _ in 0..200 {
        if let Ok(Some(g)) = locks.try_acquire("r").await {
            got = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let guard = got.expect("the restarted master votes again after the ttl");
    guard.release().await.expect("release");
    group[1].resume().expect("resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_strictly_increase_across_eight_clients() {
    let group = persistent_masters(5);
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let locks = Redlock::builder()
            .nodes(group.urls())
            .ttl(TTL)
            .timeout(Duration::from_millis(500))
            .retry(Retry::linear(Duration::from_millis(3)).deadline(Duration::from_secs(60)))
            .connect()
            .await
            .expect("connect");
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                let guard = locks.acquire("fenced").await.expect("acquire");
                // Recorded inside the critical section: the order of the locks themselves.
                order.lock().expect("not poisoned").push(guard.fence());
                guard.release().await.expect("release");
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let order = order.lock().expect("not poisoned").clone();
    assert_eq!(order.len(), 320);
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "fences out of order: {order:?}"
    );
}

#[tokio::test]
async fn a_refused_extension_resolves_lost() {
    let group = persistent_masters(5);
    let locks = locks(&group).await;
    let guard = locks
        .try_acquire("x")
        .await
        .expect("acquire")
        .expect("free");
    let lease = guard.lease();
    let watcher = tokio::spawn(async move { lease.lost().await });
    // Deleted behind the holder's back on every master.
    for s in group.iter() {
        s.cmd(&["DEL", "redlock:{x}"]).expect("DEL");
    }
    assert!(matches!(guard.extend(TTL).await, Err(Error::Lost { .. })));
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .expect("lost() resolved")
        .expect("task");
    assert!(guard.is_lost());
}

#[tokio::test]
async fn with_lock_extends_and_drops_the_work_when_lost() {
    let group = persistent_masters(3);
    let locks = Redlock::builder()
        .nodes(group.urls())
        .ttl(Duration::from_millis(600))
        .timeout(TIMEOUT)
        .connect()
        .await
        .expect("connect");
    // Outlives the ttl: the extension keeps it.
    let fence = locks
        .with_lock("w", |lease| async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert!(!lease.is_lost());
            lease.fence()
        })
        .await
        .expect("with_lock");
    assert!(fence >= 1);
    assert!(
        group.iter().all(|s| !exists(s, "redlock:{w}")),
        "not released"
    );
    // Deleted on every master: the next extension is refused and the work is dropped.
    let ports: Vec<u16> = group.iter().map(|s| s.port()).collect();
    let out = locks
        .with_lock("w", |_| async move {
            for p in &ports {
                redlock_testkit::command(*p, &["DEL", "redlock:{w}"]).expect("DEL");
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
    assert!(matches!(out, Err(Error::Lost { .. })), "{out:?}");
}

#[tokio::test]
async fn a_cap_on_extensions_ends_the_lock() {
    let group = persistent_masters(3);
    let locks = Redlock::builder()
        .nodes(group.urls())
        .ttl(Duration::from_millis(300))
        .timeout(Duration::from_millis(50))
        .max_extensions(2)
        .connect()
        .await
        .expect("connect");
    let guard = locks
        .try_acquire("cap")
        .await
        .expect("acquire")
        .expect("free");
    guard
        .extend(Duration::from_millis(300))
        .await
        .expect("first");
    guard
        .extend(Duration::from_millis(300))
        .await
        .expect("second");
    assert!(matches!(
        guard.extend(Duration::from_millis(300)).await,
        Err(Error::Limit { .. })
    ));
    guard.release().await.expect("release");
}

#[tokio::test]
async fn bad_configuration_and_unreachable_masters_are_typed() {
    let cfg = |r: redlock::Result<Redlock>, needle: &str| match r {
        Err(Error::Config(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected a configuration error about {needle:?}, got {other:?}"),
    };
    cfg(Redlock::builder().connect().await, "no masters");
    let url = "redis://127.0.0.1:1";
    cfg(
        Redlock::builder()
            .nodes([url, "redis://127.0.0.1:1/"])
            .connect()
            .await,
        "twice",
    );
    cfg(
        Redlock::builder().nodes(["nonsense"]).connect().await,
        "bad master URL",
    );
    cfg(
        Redlock::builder()
            .nodes([url])
            .ttl(Duration::ZERO)
            .connect()
            .await,
        "ttl",
    );
    cfg(
        Redlock::builder()
            .nodes([url])
            .ttl(Duration::from_millis(100))
            .timeout(Duration::from_millis(99))
            .connect()
            .await,
        "drift",
    );
    // Two of three masters unreachable: no quorum, each named.
    let group = persistent_masters(1);
    let dead: Vec<String> = (0..2)
        .map(|_| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .expect("bind")
                .local_addr()
                .expect("addr")
                .port();
            format!("redis://127.0.0.1:{port}")
        })
        .collect();
    let err = Redlock::builder()
        .nodes([group[0].url(), dead[0].clone(), dead[1].clone()])
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect_err("no quorum");
    let Error::Connect { failures, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(failures.0.len(), 2, "{err}");
    for d in &dead {
        let addr = d.trim_start_matches("redis://");
        assert_eq!(err.to_string().matches(addr).count(), 1, "{err}");
    }
    // One of three down is fine: it is reconnected in the background.
    let second = persistent_masters(1);
    let locks = Redlock::builder()
        .nodes([group[0].url(), second[0].url(), dead[0].clone()])
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await;
    assert!(locks.is_ok(), "{locks:?}");
    // An empty resource name.
    let locks = locks.expect("connected");
    assert!(matches!(
        locks.try_acquire("").await,
        Err(Error::InvalidResource { .. })
    ));
}

#[tokio::test]
async fn an_even_split_is_decided_at_once() {
    let group = persistent_masters(4);
    let locks = locks(&group).await;
    // Someone else holds 2 of 4: 2 yes and 2 no can never make a quorum of 3, and the refusals
    // alone rule it out, so the answer is "held", as soon as the four have answered.
    for i in 0..2 {
        group[i]
            .cmd(&["SET", "redlock:{even}", "other", "PX", "60000"])
            .expect("SET");
    }
    let out = tokio::time::timeout(Duration::from_secs(5), locks.try_acquire("even"))
        .await
        .expect("a split vote must not hang");
    assert!(out.expect("no error").is_none(), "2 of 4 is no quorum");
    // Our keys on the two free masters are released.
    let clean = eventually(Duration::from_secs(5), || {
        (2..4).all(|i| !exists(&group[i], "redlock:{even}"))
    })
    .await;
    assert!(clean, "the partial acquisition was left behind");
    // acquire reports it as held, with the count of refusals.
    let waiting = Redlock::builder()
        .nodes(group.urls())
        .timeout(TIMEOUT)
        .retry(Retry::linear(Duration::from_millis(5)).attempts(2))
        .connect()
        .await
        .expect("connect");
    let err = waiting.acquire("even").await.expect_err("held");
    assert!(
        matches!(
            err,
            Error::Held {
                refused: 2,
                masters: 4,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_release_round_counts_silent_masters_as_timed_out() {
    let mut group = persistent_masters(5);
    let locks = locks(&group).await;
    // A minority silent: the release still has its quorum.
    let guard = locks
        .try_acquire("r")
        .await
        .expect("acquire")
        .expect("free");
    for i in 0..2 {
        group[i].pause().expect("pause");
    }
    guard
        .release()
        .await
        .expect("release with 3 of 5 answering");
    // A majority silent: no quorum, each silent master named with the timeout.
    for i in 0..2 {
        group[i].resume().expect("resume");
    }
    let gone = eventually(Duration::from_secs(5), || {
        (0..5).all(|i| !exists(&group[i], "redlock:{r}"))
    })
    .await;
    assert!(gone, "the release queued on the paused masters did not run");
    let guard = locks
        .try_acquire("r")
        .await
        .expect("acquire")
        .expect("free");
    for i in 0..3 {
        group[i].pause().expect("pause");
    }
    let err = guard.release().await.expect_err("3 of 5 silent");
    for i in 0..3 {
        let f = failure_of(&err, &group[i].addr());
        assert!(timed_out(f), "{f} not named as timed out: {err}");
    }
    for i in 0..3 {
        group[i].resume().expect("resume");
    }
    // The release requests were written: they run once the masters resume.
    let gone = eventually(Duration::from_secs(5), || {
        (0..5).all(|i| !exists(&group[i], "redlock:{r}"))
    })
    .await;
    assert!(gone, "the release did not reach the resumed masters");
}

#[tokio::test]
async fn masters_still_silent_when_others_refused_are_released_after_the_round() {
    let mut group = persistent_masters(5);
    let locks = locks(&group).await;
    let warm = locks
        .try_acquire("d")
        .await
        .expect("acquire")
        .expect("free");
    warm.release().await.expect("release");
    // Held elsewhere on 3 masters (the refusals decide at once); the other 2 are paused, so
    // their answers are still out when the attempt settles.
    for i in 0..3 {
        group[i]
            .cmd(&["SET", "redlock:{d}", "other-holder", "PX", "60000"])
            .expect("SET");
    }
    let warm: Vec<u64> = (0..5).map(|i| counter(&group[i], "d")).collect();
    for i in 3..5 {
        group[i].pause().expect("pause");
    }
    assert!(
        locks
            .try_acquire("d")
            .await
            .expect("a decided refusal")
            .is_none(),
        "held by a majority elsewhere"
    );
    // Stay paused past the per-master timeout, so that the answers never come in time.
    tokio::time::sleep(TIMEOUT * 3).await;
    for i in 3..5 {
        group[i].resume().expect("resume");
    }
    // On the resumed masters our acquire runs, then the release sent when its request timed
    // out: nothing of ours stays.
    let clean = eventually(Duration::from_secs(5), || {
        (3..5).all(|i| counter(&group[i], "d") > warm[i] && !exists(&group[i], "redlock:{d}"))
    })
    .await;
    let state: Vec<_> = (3..5)
        .map(|i| {
            (
                warm[i],
                counter(&group[i], "d"),
                exists(&group[i], "redlock:{d}"),
            )
        })
        .collect();
    assert!(
        clean,
        "a key granted after the attempt settled was left behind: (warm, now, held) {state:?}"
    );
    for i in 0..3 {
        let v = group[i].cmd(&["GET", "redlock:{d}"]).expect("GET");
        assert_eq!(v.as_str(), Some("other-holder"));
    }
}

#[tokio::test]
async fn a_master_whose_health_cannot_be_read_is_not_waited_for_again_at_once() {
    let mut group = persistent_masters(5);
    let locks = connect_only(&group).await;
    // Paused before any attempt: their health, read on the first attempt, cannot be.
    for i in 0..3 {
        group[i].pause().expect("pause");
    }
    let first = locks.try_acquire("h").await.expect_err("3 of 5 silent");
    let second = locks.try_acquire("h").await.expect_err("3 of 5 silent");
    let recheck = |err: &Error, addr: &str| match &failure_of(err, addr).cause {
        Cause::Unverified { recheck_in, .. } => *recheck_in,
        other => panic!("{addr}: {other} in {err}"),
    };
    for i in 0..3 {
        let addr = group[i].addr();
        // The first attempt waited for the reading and names its timeout; the next one, a
        // moment later, does not read again: it reports the same failed reading, whose
        // recheck is nearer.
        assert!(timed_out(failure_of(&first, &addr)), "{first}");
        assert!(
            recheck(&second, &addr) < recheck(&first, &addr),
            "{first} / {second}"
        );
    }
    for i in 0..3 {
        group[i].resume().expect("resume");
    }
    // Read again once the recheck delay has passed: they vote, and the lock is taken.
    tokio::time::sleep(redlock::RECHECK_AFTER).await;
    let guard = locks
        .try_acquire("h")
        .await
        .expect("acquire")
        .expect("free");
    guard.release().await.expect("release");
}

#[tokio::test]
async fn status_shows_one_holder_on_a_quorum_and_names_a_master_that_did_not_answer() {
    let group = persistent_masters(3);
    let locks = locks(&group).await;
    let guard = locks
        .try_acquire("st")
        .await
        .expect("acquire")
        .expect("free");
    let status = locks.status("st").await.expect("status");
    assert_eq!(
        (status.answered(), status.held_on(), status.quorum),
        (3, 3, 2)
    );
    assert!(status.held_by_quorum());
    let (holder, on) = status.holder().expect("a holder");
    assert_eq!(on, 3);
    assert!(status.masters.iter().all(|m| {
        m.seen
            .as_ref()
            .is_ok_and(|i| i.holder.as_ref() == Some(holder) && i.fence == guard.fence())
    }));

    // Our key deleted on two masters behind our back: one master still shows it.
    for i in 0..2 {
        group[i].cmd(&["DEL", guard.key().key()]).expect("DEL");
    }
    let status = locks.status("st").await.expect("status");
    assert_eq!(status.held_on(), 1);
    assert!(!status.held_by_quorum());
    drop(guard);
    locks.close().await;

    let mut group = group;
    group[2].pause().expect("pause");
    let status = locks.status("st").await.expect("status");
    assert_eq!(status.answered(), 2);
    let silent = &status.masters[2];
    assert_eq!(silent.addr, group[2].addr());
    assert!(silent.seen.is_err(), "{:?}", silent.seen);
    assert_eq!(status.held_on(), 0);
    group[2].resume().expect("resume");
}
