//! The restart guard of the single-master lock against a real master: a master that may have
//! forgotten a lock it granted grants nothing until the restart delay has passed, and says when
//! it grants again.

use std::time::Duration;

use redlock_single::{Error, Lock};
use redlock_testkit::Persistence;
use redlock_tests::{builder, connection_id, reconnected, server};

const TTL: Duration = Duration::from_secs(10);
const BOUND: Duration = Duration::from_secs(20);

/// How long until the master grants again, from a restarting error; panics on anything else.
fn restarting(out: redlock_single::Result<Option<redlock_single::Guard>>) -> Duration {
    match out {
        Err(Error::Restarting { ready_in, .. }) => ready_in,
        Ok(Some(_)) => panic!("a master that lost a held lock granted it again"),
        other => panic!("expected restarting, got {other:?}"),
    }
}

async fn lock(server: &redlock_testkit::RedisServer) -> Lock {
    builder(server, TTL).connect().await.expect("connect")
}

#[tokio::test]
async fn a_single_master_restarted_empty_grants_nothing_until_its_restart_delay() {
    let mut server = server();
    let (a, b) = (lock(&server).await, lock(&server).await);
    let held = a.try_acquire("r").await.expect("acquire").expect("free");
    let old = connection_id(b.master());
    server.kill().expect("kill");
    server.restart_with(Persistence::None).expect("restart");
    reconnected(b.master(), old, BOUND).await;
    let wait = restarting(b.try_acquire("r").await);
    assert!(wait > Duration::from_secs(5), "grants again in {wait:?}");
    // The message says when.
    let err = b.try_acquire("r").await.expect_err("restarting");
    assert!(err.to_string().contains("votes again in"), "{err}");
    drop(held);
}

#[tokio::test]
async fn a_single_master_that_came_back_persisting_every_write_grants_nothing_either() {
    let mut server = server();
    let (a, b) = (lock(&server).await, lock(&server).await);
    let held = a.try_acquire("r").await.expect("acquire").expect("free");
    let old = connection_id(b.master());
    server.kill().expect("kill");
    server
        .restart_with(Persistence::AofAlways)
        .expect("restart");
    reconnected(b.master(), old, BOUND).await;
    restarting(b.try_acquire("r").await);
    drop(held);
}
