//! The restart guard against real masters: a master that may have forgotten a lock it granted
//! does not vote until the restart delay has passed, whatever its persistence after the
//! restart, whatever its uptime after a failover, however often the client reconnects, and
//! for as long as the longest ttl of any client of the masters.
//!
//! In each test a client A holds a lock, the key is gone from a master that A's acquire did not
//! reach (deleted behind its back), and a master that held A's key loses it in a restart: a
//! client B could then form a quorum with that master while A still holds the lock. The guard
//! must stop it.

use std::time::Duration;

use redlock::{Cause, Error, Redlock, Retry};
use redlock_single::Node;
use redlock_testkit::{Persistence, Proxy, RedisGroup, RedisServer, ServerOptions};
use redlock_tests::{connection_id, masters_with, persistent_masters, reconnected, up_for};

const BOUND: Duration = Duration::from_secs(20);

async fn locks_on(urls: Vec<String>, ttl: Duration) -> Redlock {
    redlock_tests::heard_from(
        Redlock::builder()
            .nodes(urls)
            .ttl(ttl)
            .timeout(Duration::from_millis(200))
            .retry(Retry::none()),
    )
    .await
}

fn node(locks: &Redlock, i: usize) -> &Node {
    locks.masters().nth(i).expect("a master")
}

/// How long master `addr` waits before it votes, from a no-quorum error that names it as
/// restarting; panics on any other outcome (a grant above all).
fn restarting(out: redlock::Result<Option<redlock::Guard>>, addr: &str) -> Duration {
    let err = match out {
        Ok(Some(guard)) => panic!(
            "a master that lost a held lock voted: granted with fence {}",
            guard.fence()
        ),
        Ok(None) => panic!("held: the restarted master's vote was not the question"),
        Err(e) => e,
    };
    let Error::NoQuorum { failures, .. } = &err else {
        panic!("expected no quorum, got {err}");
    };
    let f = failures
        .0
        .iter()
        .find(|f| f.addr == addr)
        .unwrap_or_else(|| panic!("{addr} not named: {err}"));
    match f.cause {
        Cause::Restarting { ready_in } => ready_in,
        ref other => panic!("{addr}: {other} in {err}"),
    }
}

/// A takes "r" on every master of `group`, then the key is deleted from master 2 (as if A's
/// acquire had not reached it).
async fn held_on_0_and_1(a: &Redlock, group: &RedisGroup) -> redlock::Guard {
    let held = a.try_acquire("r").await.expect("acquire").expect("free");
    group[2].cmd(&["DEL", "redlock:{r}"]).expect("DEL");
    held
}

#[tokio::test]
async fn a_master_that_lost_its_data_and_came_back_persisting_every_write_does_not_vote() {
    let mut group = masters_with(3, ServerOptions::default());
    let a = locks_on(group.urls(), Duration::from_secs(10)).await;
    let b = locks_on(group.urls(), Duration::from_secs(10)).await;
    let held = held_on_0_and_1(&a, &group).await;
    // Master 0 ran without AOF, crashes, and comes back with `appendfsync always`, as an
    // operator sets it after an incident: empty, and persisting from now on.
    let old = connection_id(node(&b, 0));
    group[0].kill().expect("kill");
    group[0]
        .restart_with(Persistence::AofAlways)
        .expect("restart");
    reconnected(node(&b, 0), old, BOUND).await;
    let wait = restarting(b.try_acquire("r").await, &group[0].addr());
    assert!(wait > Duration::from_secs(5), "waits {wait:?}");
    assert!(!held.is_lost());
}

/// A replica of `group[0]` that has replicated its data (the incarnation key included).
async fn replica_of(primary: &RedisServer, persistence: Persistence) -> RedisServer {
    let replica = RedisServer::start_with(ServerOptions {
        persistence,
        ..Default::default()
    })
    .expect("start replica");
    let port = primary.port().to_string();
    replica
        .cmd(&["REPLICAOF", "127.0.0.1", &port])
        .expect("REPLICAOF");
    let incarnation = primary
        .cmd(&["GET", "redlock:incarnation"])
        .expect("GET")
        .as_str()
        .map(str::to_owned);
    let synced = redlock_tests::eventually(BOUND, || {
        replica
            .cmd(&["GET", "redlock:incarnation"])
            .is_ok_and(|r| r.as_str().map(str::to_owned) == incarnation)
    })
    .await;
    assert!(synced, "the replica did not sync");
    replica
}

/// Promotes `replica` and points `proxy` (master 0's address) at it; the replica lacks A's key,
/// as a replica lacks the last writes.
fn fail_over(replica: &RedisServer, proxy: &Proxy) {
    replica.cmd(&["REPLICAOF", "NO", "ONE"]).expect("promote");
    replica.cmd(&["DEL", "redlock:{r}"]).expect("DEL");
    proxy.switch_to(replica.port());
}

#[tokio::test]
async fn a_promoted_replica_that_persists_every_write_does_not_vote_at_once() {
    let group = persistent_masters(3);
    let proxy = Proxy::start(group[0].port()).expect("proxy");
    let urls = vec![proxy.url(), group[1].url(), group[2].url()];
    let a = locks_on(urls.clone(), Duration::from_secs(10)).await;
    let b = locks_on(urls, Duration::from_secs(10)).await;
    let replica = replica_of(&group[0], Persistence::AofAlways).await;
    let held = held_on_0_and_1(&a, &group).await;
    let old = connection_id(node(&b, 0));
    fail_over(&replica, &proxy);
    reconnected(node(&b, 0), old, BOUND).await;
    let wait = restarting(b.try_acquire("r").await, &proxy.addr());
    assert!(wait > Duration::from_secs(5), "waits {wait:?}");
    assert!(!held.is_lost());
}

#[tokio::test]
async fn a_reconnect_does_not_cut_a_restart_wait_short() {
    let group = masters_with(3, ServerOptions::default());
    let proxy = Proxy::start(group[0].port()).expect("proxy");
    let urls = vec![proxy.url(), group[1].url(), group[2].url()];
    // The restart delay is the ttl, 5 s: long enough that both readings below fall in it.
    let ttl = Duration::from_secs(5);
    let a = locks_on(urls.clone(), ttl).await;
    let b = locks_on(urls, ttl).await;
    let replica = replica_of(&group[0], Persistence::None).await;
    // Up for longer than the delay: its uptime alone would let it vote.
    up_for(&replica, 6).await;
    let held = held_on_0_and_1(&a, &group).await;
    let old = connection_id(node(&b, 0));
    fail_over(&replica, &proxy);
    reconnected(node(&b, 0), old, BOUND).await;
    let first = restarting(b.try_acquire("r").await, &proxy.addr());
    // A new connection, and with it a new reading of the same (long-up) process: the wait
    // stands, minus the time that passed.
    let old = connection_id(node(&b, 0));
    proxy.drop_connections();
    reconnected(node(&b, 0), old, BOUND).await;
    let second = restarting(b.try_acquire("r").await, &proxy.addr());
    assert!(
        second <= first,
        "the wait grew from {first:?} to {second:?}"
    );
    assert!(!second.is_zero());
    drop(held);
}

#[tokio::test]
async fn a_client_with_a_short_ttl_waits_out_the_longest_ttl_any_client_uses() {
    let mut group = masters_with(3, ServerOptions::default());
    // B uses 1 s; A, another process, holds a lock for 20 s.
    let b = locks_on(group.urls(), Duration::from_secs(1)).await;
    let a = locks_on(group.urls(), Duration::from_secs(20)).await;
    let held = held_on_0_and_1(&a, &group).await;
    let old = connection_id(node(&b, 0));
    group[0].kill().expect("kill");
    group[0].restart_with(Persistence::None).expect("restart");
    reconnected(node(&b, 0), old, BOUND).await;
    // Up for longer than B's own ttl and the least delay: B alone would let it vote.
    up_for(&group[0], 3).await;
    let wait = restarting(b.try_acquire("r").await, &group[0].addr());
    assert!(
        wait > Duration::from_secs(10),
        "waits {wait:?}, not A's 20 s"
    );
    assert!(!held.is_lost());
}

#[tokio::test]
async fn a_vote_counts_only_from_a_connection_whose_health_was_read() {
    let mut group = masters_with(3, ServerOptions::default());
    let a = locks_on(group.urls(), Duration::from_secs(10)).await;
    let b = locks_on(group.urls(), Duration::from_secs(10)).await;
    let held = held_on_0_and_1(&a, &group).await;
    for _ in 0..3 {
        let old = connection_id(node(&b, 0));
        group[0].kill().expect("kill");
        group[0].restart_with(Persistence::None).expect("restart");
        // The first attempt on the new connection: whatever else the client learnt, its
        // vote comes only after its health was read on it.
        reconnected(node(&b, 0), old, BOUND).await;
        restarting(b.try_acquire("r").await, &group[0].addr());
    }
    assert!(!held.is_lost());
}
