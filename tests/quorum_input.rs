//! Bad input on the quorum lock against real masters: names too long, names with braces and
//! other awkward characters, keys of the wrong type. Each gets a clear, typed error at once,
//! or works, and loses nothing.

use std::time::Duration;

use redlock::{Error, Redlock, Retry};
use redlock_testkit::RedisGroup;
use redlock_tests::{exists, persistent_masters, script_calls};

async fn locks(group: &RedisGroup, retry: Retry) -> Redlock {
    redlock_tests::heard_from(
        Redlock::builder()
            .nodes(group.urls())
            .ttl(Duration::from_secs(10))
            .timeout(Duration::from_millis(200))
            .retry(retry),
    )
    .await
}

fn keys_on(server: &redlock_testkit::RedisServer) -> i64 {
    server
        .cmd(&["DBSIZE"])
        .expect("DBSIZE")
        .as_int()
        .expect("an integer")
}

#[tokio::test]
async fn a_name_over_the_bound_is_refused_at_once_sends_nothing_and_stays_short_in_messages() {
    let group = persistent_masters(3);
    let locks = locks(&group, Retry::none()).await;
    let before: Vec<i64> = group.iter().map(keys_on).collect();
    let calls: Vec<u64> = group.iter().map(script_calls).collect();
    let name = "n".repeat(1 << 20);
    let err = locks.try_acquire(&name).await.expect_err("too long");
    assert!(matches!(err, Error::InvalidResource { .. }), "{err:?}");
    assert!(err.to_string().len() < 200, "the message holds the name");
    assert!(!err.is_transient());
    // Nothing went to the masters: no request, no fence key left for ever.
    assert_eq!(group.iter().map(keys_on).collect::<Vec<_>>(), before);
    assert_eq!(group.iter().map(script_calls).collect::<Vec<_>>(), calls);
    // The bound itself is fine.
    let longest = "n".repeat(redlock_single::MAX_RESOURCE_LEN);
    let guard = locks
        .try_acquire(&longest)
        .await
        .expect("acquire")
        .expect("free");
    guard.release().await.expect("release");
}

#[tokio::test]
async fn awkward_names_lock_independently_with_both_keys_in_one_slot() {
    let group = persistent_masters(3);
    let locks = locks(&group, Retry::none()).await;
    let names = [
        "}x",
        "}",
        "{",
        "{}",
        "a}b",
        "%7D",
        "%",
        "nul\0in it",
        "with spaces",
        "é",
        "💥",
    ];
    let mut guards = Vec::new();
    for name in names {
        // Every name is its own lock: none of them finds another one's key.
        let guard = locks
            .try_acquire(name)
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e}"))
            .unwrap_or_else(|| panic!("{name:?} shares a lock with another name"));
        let key = guard.key();
        assert_eq!(
            redlock_single::fred::util::redis_keyslot(key.key().as_bytes()),
            redlock_single::fred::util::redis_keyslot(key.fence_key().as_bytes()),
            "{name:?}: {} and {} fall in different slots",
            key.key(),
            key.fence_key()
        );
        assert!(group.iter().all(|s| exists(s, key.key())), "{name:?}");
        guards.push(guard);
    }
    for guard in guards {
        guard.release().await.expect("release");
    }
}

#[tokio::test]
async fn a_foreign_value_on_a_quorum_fails_at_once_without_retrying() {
    let group = persistent_masters(3);
    // A retry policy that would wait a minute for anything transient.
    let locks = locks(
        &group,
        Retry::linear(Duration::from_millis(10)).deadline(Duration::from_secs(60)),
    )
    .await;
    for s in group.iter() {
        s.cmd(&["RPUSH", "redlock:{list}", "a"]).expect("RPUSH");
    }
    let calls: Vec<u64> = group.iter().map(script_calls).collect();
    let err = locks.acquire("list").await.expect_err("wrong type");
    assert!(matches!(err, Error::WrongType { .. }), "{err}");
    assert!(err.to_string().contains("wrong type"), "{err}");
    // One attempt: one acquire per master, no retry.
    let after: Vec<u64> = group.iter().map(script_calls).collect();
    for (before, after) in calls.iter().zip(&after) {
        assert_eq!(after - before, 1, "retried: {calls:?} -> {after:?}");
    }
    for s in group.iter() {
        assert_eq!(
            s.cmd(&["LLEN", "redlock:{list}"]).expect("LLEN").as_int(),
            Some(1),
            "the foreign data was touched"
        );
    }
}
