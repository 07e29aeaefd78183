//! ACL users against a real master: the minimal ACL that `docs/operations.md` gives works for
//! both lock types, and a user without one of its commands is told which, naming the master,
//! instead of never getting a vote.

use std::time::Duration;

use redlock::{Cause, Redlock, Retry};
use redlock_testkit::RedisServer;
use redlock_tests::{builder, masters_with};

/// The minimal ACL of `docs/operations.md` (keys under the default prefix).
const MINIMAL: &[&str] = &[
    "~redlock:*",
    "+evalsha",
    "+script|load",
    "+get",
    "+set",
    "+incr",
    "+del",
    "+pexpire",
    "+pttl",
    "+type",
    "+time",
    "+info",
];

/// Creates `user` with password `secret` and `commands`.
fn user(server: &RedisServer, user: &str, commands: &[&str]) {
    let mut args = vec!["ACL", "SETUSER", user, "reset", "on", ">secret"];
    args.extend_from_slice(commands);
    let reply = server.cmd(&args).expect("ACL SETUSER");
    assert_eq!(reply.as_str(), Some("OK"), "{reply:?}");
}

fn url(server: &RedisServer, user: &str) -> String {
    format!("redis://{user}:secret@127.0.0.1:{}", server.port())
}

#[tokio::test]
async fn the_minimal_acl_locks_and_one_without_info_is_told_why() {
    let server = redlock_tests::server();
    user(&server, "locker", MINIMAL);
    let lock = builder(&server, Duration::from_secs(10))
        .url(url(&server, "locker"))
        .connect()
        .await
        .expect("connect as locker");
    let guard = lock.try_acquire("k").await.expect("acquire").expect("free");
    guard.extend(Duration::from_secs(10)).await.expect("extend");
    assert!(lock.inspect("k").await.expect("inspect").holder.is_some());
    guard.release().await.expect("release");

    let without_info: Vec<&str> = MINIMAL.iter().copied().filter(|c| *c != "+info").collect();
    user(&server, "nosy", &without_info);
    let lock = builder(&server, Duration::from_secs(10))
        .url(url(&server, "nosy"))
        .connect()
        .await
        .expect("connect as nosy");
    let err = lock.try_acquire("k").await.expect_err("no INFO, no vote");
    let text = err.to_string();
    assert!(text.contains("NOPERM") && text.contains("info"), "{text}");
    assert_eq!(text.matches(&server.addr()).count(), 1, "{text}");
}

#[tokio::test]
async fn a_quorum_names_each_master_that_refuses_the_reading() {
    let group = masters_with(3, Default::default());
    let without_info: Vec<&str> = MINIMAL.iter().copied().filter(|c| *c != "+info").collect();
    for s in group.iter() {
        user(s, "nosy", &without_info);
    }
    let locks = Redlock::builder()
        .nodes(group.iter().map(|s| url(s, "nosy")))
        .timeout(Duration::from_millis(200))
        .retry(Retry::none())
        .connect()
        .await
        .expect("connect");
    let err = locks.try_acquire("k").await.expect_err("no votes");
    assert!(matches!(err, redlock::Error::NoQuorum { .. }), "{err}");
    assert!(err.to_string().contains("NOPERM"), "{err}");
    // Each master, asked on its own, says why it does not vote.
    for (addr, vote) in locks.voters().await {
        let cause = vote.expect_err("no vote without INFO");
        assert!(
            matches!(
                &cause,
                Cause::Unverified { reason, .. }
                    if matches!(reason.kind(), redlock::MasterErrorKind::Denied { .. })
            ),
            "{addr}: {cause}"
        );
        assert!(cause.to_string().contains("'info'"), "{addr}: {cause}");
    }
}

#[tokio::test]
async fn trusting_persistence_needs_config_get_too() {
    let server = redlock_tests::server();
    let mut with_config = MINIMAL.to_vec();
    with_config.push("+config|get");
    user(&server, "trusting", &with_config);
    user(&server, "locker", MINIMAL);
    for (name, works) in [("trusting", true), ("locker", false)] {
        let lock = builder(&server, Duration::from_secs(10))
            .url(url(&server, name))
            .trust_persistence(true)
            .connect()
            .await
            .expect("connect");
        let out = lock.try_acquire(&format!("k-{name}")).await;
        match (works, out) {
            (true, Ok(Some(guard))) => guard.release().await.expect("release"),
            (false, Err(e)) => assert!(e.to_string().contains("config"), "{e}"),
            (w, other) => panic!("{name}: expected {w}, got {other:?}"),
        }
    }
}
