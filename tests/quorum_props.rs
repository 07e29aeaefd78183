//! Property tests of the quorum algorithm over simulated masters (`SimServer`): random
//! schedules of several clients and faults, checked for the safety properties.
//!
//! Time is tokio's paused clock, so a schedule of many seconds runs in milliseconds.

use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redlock::{Redlock, Retry};
use redlock_testkit::{Faults, SimNode, SimServer};
use tokio::time::Instant;

const TTL: Duration = Duration::from_millis(1000);
const TIMEOUT: Duration = Duration::from_millis(20);

/// One successful acquisition: when `acquire` returned, until when the holder relied on it
/// (its release or its validity deadline, whichever came first), and its fencing token.
#[derive(Debug, Clone, Copy)]
struct Held {
    client: usize,
    start: Instant,
    end: Instant,
    fence: u64,
}

/// The first pair of acquisitions whose windows overlap, if any.
fn overlap(held: &[Held]) -> Option<(Held, Held)> {
    for (i, a) in held.iter().enumerate() {
        for b in &held[i + 1..] {
            if a.start < b.end && b.start < a.end {
                return Some((*a, *b));
            }
        }
    }
    None
}

/// The first acquisition whose fence is not above that of the one before it, in the order
/// in which acquisitions succeeded.
fn fence_regression(held: &[Held]) -> Option<(Held, Held)> {
    let mut sorted = held.to_vec();
    sorted.sort_by_key(|h| h.start);
    sorted
        .windows(2)
        .find(|w| w[1].fence <= w[0].fence)
        .map(|w| (w[0], w[1]))
}

#[derive(Debug, Clone)]
enum Event {
    Crash(usize),
    Restart(usize),
    Rate(usize, f64),
    Faults(usize, Faults),
}

#[derive(Debug, Clone)]
struct Scenario {
    masters: usize,
    clients: usize,
    rounds: usize,
    persistent: bool,
    restart_guard: bool,
    seed: u64,
    /// (at, event), applied in time order while the clients run.
    events: Vec<(Duration, Event)>,
}

fn lock_for(servers: &[SimServer], guard: bool) -> Redlock<SimNode> {
    Redlock::builder()
        .ttl(TTL)
        .timeout(TIMEOUT)
        .retry(Retry::linear(Duration::from_millis(30)).deadline(Duration::from_millis(600)))
        .restart_guard(guard)
        .with_masters(servers.iter().map(|s| s.connect(TIMEOUT)).collect())
        .expect("valid configuration")
}

/// Runs a scenario and returns every successful acquisition and the servers.
async fn run(sc: Scenario) -> (Vec<Held>, Vec<SimServer>) {
    let servers: Vec<SimServer> = (0..sc.masters)
        .map(|i| {
            SimServer::new(
                format!("sim-{i}:6379"),
                sc.persistent,
                sc.seed ^ (i as u64 + 1),
            )
        })
        .collect();
    // Masters that have been up for longer than the ttl, as in steady state.
    tokio::time::sleep(TTL * 2).await;

    let origin = Instant::now();
    let events = {
        let servers = servers.clone();
        let mut events = sc.events.clone();
        events.sort_by_key(|(at, _)| *at);
        tokio::spawn(async move {
            for (at, event) in events {
                tokio::time::sleep_until(origin + at).await;
                match event {
                    Event::Crash(i) => servers[i].crash(),
                    Event::Restart(i) => servers[i].restart(),
                    Event::Rate(i, r) => servers[i].set_rate(r),
                    Event::Faults(i, f) => servers[i].set_faults(f),
                }
            }
        })
    };

    let clients: Vec<_> = (0..sc.clients)
        .map(|c| {
            let lock = lock_for(&servers, sc.restart_guard);
            let mut rng = StdRng::seed_from_u64(sc.seed.wrapping_mul(31).wrapping_add(c as u64));
            tokio::spawn(async move {
                let mut held = Vec::new();
                for _ in 0..sc.rounds {
                    tokio::time::sleep(Duration::from_millis(rng.random_range(0..50))).await;
                    let Ok(guard) = lock.acquire("r").await else {
                        continue;
                    };
                    let start = Instant::now();
                    let deadline = start + guard.validity();
                    let fence = guard.fence();
                    // Hold for a while, sometimes past the validity (then it is simply lost).
                    let hold = Duration::from_millis(rng.random_range(0..1200));
                    tokio::time::sleep(hold).await;
                    let end = (start + hold).min(deadline);
                    held.push(Held {
                        client: c,
                        start,
                        end,
                        fence,
                    });
                    let _ = guard.release().await;
                }
                held
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.expect("client task"));
    }
    events.abort();
    (all, servers)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

fn faults() -> impl Strategy<Value = Faults> {
    (0.0f64..0.3, 0.0f64..0.3, 0u64..8).prop_map(|(lose_request, lose_reply, ms)| Faults {
        lose_request,
        lose_reply,
        max_delay: Duration::from_millis(ms),
    })
}

/// Events within the assumptions: any faults on any master (delays, lost requests and
/// replies), crashes and restarts, and clock rates within the drift factor (1%).
fn events(masters: usize) -> impl Strategy<Value = Vec<(Duration, Event)>> {
    let event = prop_oneof![
        (0..masters).prop_map(Event::Crash),
        (0..masters).prop_map(Event::Restart),
        (0..masters, 0.995f64..1.0099).prop_map(|(i, r)| Event::Rate(i, r)),
        (0..masters, faults()).prop_map(|(i, f)| Event::Faults(i, f)),
    ];
    proptest::collection::vec(
        (0u64..6000)
            .prop_map(Duration::from_millis)
            .prop_flat_map(move |at| event.clone().prop_map(move |e| (at, e))),
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Within the assumptions (drift within the factor; a restarted master that lost its keys
    /// does not vote until the ttl has passed), no two holders ever rely on the lock at once.
    #[test]
    fn no_two_holders_overlap(
        masters in 3usize..=5, seed: u64, persistent: bool, evs in events(5),
    ) {
        let evs: Vec<_> = evs.into_iter().filter(|(_, e)| match e {
            Event::Crash(i) | Event::Restart(i) | Event::Rate(i, _) | Event::Faults(i, _) => *i < masters,
        }).collect();
        let sc = Scenario { masters, clients: 3, rounds: 6, persistent, restart_guard: true, seed, events: evs };
        let (held, _) = runtime().block_on(run(sc));
        prop_assert!(overlap(&held).is_none(), "overlap: {:?}", overlap(&held));
    }

    /// With counters that survive crashes, fencing tokens strictly increase in the order in
    /// which acquisitions succeeded, whatever else goes wrong.
    #[test]
    fn fences_strictly_increase(masters in 3usize..=5, seed: u64, evs in events(5)) {
        let evs: Vec<_> = evs.into_iter().filter(|(_, e)| match e {
            Event::Crash(i) | Event::Restart(i) | Event::Rate(i, _) | Event::Faults(i, _) => *i < masters,
        }).collect();
        let sc = Scenario { masters, clients: 3, rounds: 6, persistent: true, restart_guard: true, seed, events: evs };
        let (held, _) = runtime().block_on(run(sc));
        prop_assert!(fence_regression(&held).is_none(), "{:?}", fence_regression(&held));
    }

    /// After the clients have released everything and the masters have applied every request,
    /// no lock key is left on any master, though the ttl is far from over.
    #[test]
    fn nothing_is_left_after_release(masters in 3usize..=5, seed: u64, reply_loss in 0.0f64..0.3, delay in 0u64..8) {
        let rt = runtime();
        let left = rt.block_on(async {
            let faults = Faults { lose_request: 0.0, lose_reply: reply_loss, max_delay: Duration::from_millis(delay) };
            let events = (0..masters).map(|i| (Duration::ZERO, Event::Faults(i, faults))).collect();
            let sc = Scenario { masters, clients: 3, rounds: 5, persistent: false, restart_guard: true, seed, events };
            let (held, servers) = run(sc).await;
            // Let every request in flight reach its master (well under the 1 s ttl).
            tokio::time::sleep(Duration::from_millis(100)).await;
            let left: Vec<String> = servers.iter().flat_map(SimServer::live_keys).collect();
            (held.len(), left)
        });
        prop_assert!(left.1.is_empty(), "left behind after {} acquisitions: {:?}", left.0, left.1);
    }
}

/// The harness is live: without faults the clients get the lock again and again, in turn
/// (some rounds give up waiting while another client holds it past the retry deadline).
#[test]
fn a_fault_free_schedule_serves_every_round() {
    let sc = Scenario {
        masters: 5,
        clients: 3,
        rounds: 6,
        persistent: false,
        restart_guard: true,
        seed: 7,
        events: vec![],
    };
    let (held, _) = runtime().block_on(run(sc));
    assert!(
        held.len() >= 6,
        "only {} of 18 rounds got the lock",
        held.len()
    );
    let mut clients: Vec<usize> = held.iter().map(|h| h.client).collect();
    clients.sort_unstable();
    clients.dedup();
    assert_eq!(clients.len(), 3, "every client got the lock at least once");
    assert!(overlap(&held).is_none());
    assert!(fence_regression(&held).is_none());
}

/// The checker can fail: a master that restarts empty at once, with the client's restart guard
/// switched off, lets a second client take a lock that the first still holds.
#[test]
fn the_checker_catches_an_empty_restart_without_the_guard() {
    let broken = runtime().block_on(empty_restart(false));
    let (a, b) = overlap(&broken).expect("the broken assumption must show as an overlap");
    assert_ne!(a.client, b.client);
    // With the guard on, the same schedule is safe: the restarted master does not vote.
    let guarded = runtime().block_on(empty_restart(true));
    assert_eq!(
        guarded.len(),
        1,
        "only the first client may get the lock: {guarded:?}"
    );
    assert!(overlap(&guarded).is_none());
}

async fn empty_restart(guard: bool) -> Vec<Held> {
    let servers: Vec<SimServer> = (0..3)
        .map(|i| SimServer::new(format!("sim-{i}:6379"), false, i))
        .collect();
    tokio::time::sleep(TTL * 2).await;
    let (a, b) = (lock_for(&servers, guard), lock_for(&servers, guard));
    // Client A's request to master 2 is lost: A holds masters 0 and 1, a quorum of 3.
    servers[2].set_faults(Faults {
        lose_request: 1.0,
        ..Faults::default()
    });
    let first = a
        .try_acquire("r")
        .await
        .expect("no error")
        .expect("A gets the lock");
    let mut held = vec![Held {
        client: 0,
        start: Instant::now(),
        end: Instant::now() + first.validity(),
        fence: first.fence(),
    }];
    servers[2].set_faults(Faults::default());
    // Master 0 crashes and comes back at once, without its keys.
    servers[0].crash();
    servers[0].restart();
    if let Ok(Some(second)) = b.try_acquire("r").await {
        held.push(Held {
            client: 1,
            start: Instant::now(),
            end: Instant::now() + second.validity(),
            fence: second.fence(),
        });
    }
    held
}
