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
/// The ttls of the clients of a scenario, in turn: clients of one fleet that use different
/// ttls, so that the restart delay must cover the longest of them.
const TTLS: [Duration; 3] = [
    Duration::from_millis(300),
    Duration::from_millis(1000),
    Duration::from_millis(4000),
];

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
    /// Restart with this persistence from now on (what the crashed run kept is what it had).
    RestartWith(usize, bool),
    Rate(usize, f64),
    Faults(usize, Faults),
}

impl Event {
    fn master(&self) -> usize {
        match self {
            Event::Crash(i)
            | Event::Restart(i)
            | Event::RestartWith(i, _)
            | Event::Rate(i, _)
            | Event::Faults(i, _) => *i,
        }
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    masters: usize,
    clients: usize,
    rounds: usize,
    persistent: bool,
    restart_guard: bool,
    /// Whether the clients use the different ttls of [`TTLS`] (else all use [`TTL`]).
    mixed_ttls: bool,
    /// Each master's clock starts this many ms off (within the bound of `docs/safety.md`:
    /// less than the least restart delay less a second apart).
    offsets: Vec<f64>,
    seed: u64,
    /// (at, event), applied in time order while the clients run.
    events: Vec<(Duration, Event)>,
}

fn lock_for(servers: &[SimServer], guard: bool) -> Redlock<SimNode> {
    lock_with_ttl(servers, guard, TTL)
}

fn lock_with_ttl(servers: &[SimServer], guard: bool, ttl: Duration) -> Redlock<SimNode> {
    Redlock::builder()
        .ttl(ttl)
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
    for (s, offset) in servers.iter().zip(&sc.offsets) {
        s.shift_clock(*offset);
    }
    // Masters that have been up for longer than the restart delay, as in steady state.
    tokio::time::sleep(TTLS[2] * 2).await;

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
                    Event::RestartWith(i, p) => servers[i].restart_with(p),
                    Event::Rate(i, r) => servers[i].set_rate(r),
                    Event::Faults(i, f) => servers[i].set_faults(f),
                }
            }
        })
    };

    let clients: Vec<_> = (0..sc.clients)
        .map(|c| {
            let ttl = if sc.mixed_ttls {
                TTLS[c % TTLS.len()]
            } else {
                TTL
            };
            let lock = lock_with_ttl(&servers, sc.restart_guard, ttl);
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
                    // Hold for a while, up to a little past the validity (then it is simply
                    // lost).
                    let most = u64::try_from(lock.ttl().as_millis() * 6 / 5).unwrap_or(u64::MAX);
                    let hold = Duration::from_millis(rng.random_range(0..most));
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
    (0.0f64..0.6, 0.0f64..0.3, 0u64..8).prop_map(|(lose_request, lose_reply, ms)| Faults {
        lose_request,
        lose_reply,
        max_delay: Duration::from_millis(ms),
    })
}

/// Events within the assumptions: any faults on any master (delays, lost requests and
/// replies), crashes and restarts (switching persistence or not), and clock rates within the
/// drift factor (1%).
fn events(masters: usize) -> impl Strategy<Value = Vec<(Duration, Event)>> {
    let event = prop_oneof![
        (0..masters).prop_map(|i| vec![(0, Event::Crash(i))]),
        (0..masters).prop_map(|i| vec![(0, Event::Restart(i))]),
        // A crash and the restart that follows, with the persistence of the new run.
        (0..masters, 0u64..3000, any::<bool>())
            .prop_map(|(i, down, p)| vec![(0, Event::Crash(i)), (down, Event::RestartWith(i, p)),]),
        (0..masters, 0.995f64..1.0099).prop_map(|(i, r)| vec![(0, Event::Rate(i, r))]),
        (0..masters, faults()).prop_map(|(i, f)| vec![(0, Event::Faults(i, f))]),
    ];
    proptest::collection::vec(((0u64..8000), event), 0..10).prop_map(|groups| {
        groups
            .into_iter()
            .flat_map(|(at, group)| {
                group
                    .into_iter()
                    .map(move |(after, e)| (Duration::from_millis(at + after), e))
            })
            .collect()
    })
}

/// Clock offsets of the masters within the bound: less than a second apart.
fn offsets() -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec(-400.0f64..400.0, 5)
}

/// The random scenario of the two safety properties: three clients, the restart guard on, the
/// events that concern the masters there are.
fn guarded(
    masters: usize,
    seed: u64,
    persistent: bool,
    mixed_ttls: bool,
    offsets: Vec<f64>,
    events: Vec<(Duration, Event)>,
) -> Scenario {
    let events = events
        .into_iter()
        .filter(|(_, e)| e.master() < masters)
        .collect();
    Scenario {
        masters,
        clients: 3,
        rounds: 6,
        persistent,
        restart_guard: true,
        mixed_ttls,
        offsets,
        seed,
        events,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Within the assumptions (drift within the factor; the restart guard on, so that a master
    /// that may have lost locks does not vote until the longest ttl of any client has passed),
    /// no two holders ever rely on the lock at once: with empty restarts, restarts that switch
    /// persistence, and clients with different ttls.
    #[test]
    fn no_two_holders_overlap(
        masters in 3usize..=5, seed: u64, persistent: bool, mixed_ttls: bool,
        offsets in offsets(), evs in events(5),
    ) {
        let sc = guarded(masters, seed, persistent, mixed_ttls, offsets, evs);
        let (held, _) = runtime().block_on(run(sc));
        prop_assert!(overlap(&held).is_none(), "overlap: {:?}", overlap(&held));
    }

    /// Fencing tokens strictly increase in the order in which acquisitions succeeded, with
    /// masters that lose their counters in empty restarts or keep them, whatever else goes
    /// wrong, as long as the masters' clocks are less than a second apart (the hybrid
    /// counter's assumption).
    #[test]
    fn fences_strictly_increase(
        masters in 3usize..=5, seed: u64, persistent: bool, mixed_ttls: bool,
        offsets in offsets(), evs in events(5),
    ) {
        let sc = guarded(masters, seed, persistent, mixed_ttls, offsets, evs);
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
            let sc = Scenario {
                masters, clients: 3, rounds: 5, persistent: false, restart_guard: true,
                mixed_ttls: true, offsets: vec![0.0; 5], seed, events,
            };
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
        mixed_ttls: false,
        offsets: vec![0.0; 5],
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

/// Client A takes "r" on masters 0 and 1 only (its request to master 2 is lost: still a
/// quorum of 3), then master 0 crashes and comes back at once, without its keys. Returns A's
/// guard and its window.
async fn held_on_0_and_1_then_0_restarts_empty(
    servers: &[SimServer],
    a: &Redlock<SimNode>,
) -> (redlock::Guard<SimNode>, Held) {
    servers[2].set_faults(Faults {
        lose_request: 1.0,
        ..Faults::default()
    });
    let first = a
        .try_acquire("r")
        .await
        .expect("no error")
        .expect("A gets the lock");
    let held = Held {
        client: 0,
        start: Instant::now(),
        end: Instant::now() + first.validity(),
        fence: first.fence(),
    };
    servers[2].set_faults(Faults::default());
    servers[0].crash();
    servers[0].restart();
    (first, held)
}

async fn empty_restart(guard: bool) -> Vec<Held> {
    let servers = steady_servers(0).await;
    let (a, b) = (lock_for(&servers, guard), lock_for(&servers, guard));
    let (_first, first_held) = held_on_0_and_1_then_0_restarts_empty(&servers, &a).await;
    let mut held = vec![first_held];
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

/// Three masters without persistence (generators seeded from `seed`), up for longer than the
/// restart delay of every client, as in steady state.
async fn steady_servers(seed: u64) -> Vec<SimServer> {
    let servers: Vec<SimServer> = (0..3)
        .map(|i| SimServer::new(format!("sim-{i}:6379"), false, seed + i))
        .collect();
    tokio::time::sleep(TTLS[2] * 2).await;
    servers
}

/// A client with a short ttl must not let a master that restarted empty vote while a client
/// with a longer ttl still holds a lock it granted: the restart delay is the longest ttl of
/// any client of the masters, which the short one learns from the others (`voters`).
#[test]
fn a_short_ttl_client_waits_out_a_long_ttl_clients_lock_after_an_empty_restart() {
    let held = runtime().block_on(async {
        let servers = steady_servers(0).await;
        let long = lock_with_ttl(&servers, true, Duration::from_secs(8));
        let short = lock_with_ttl(&servers, true, Duration::from_millis(300));
        // Both have read every master; then the long one takes the lock on 0 and 1 only.
        for l in [&long, &short] {
            let g = l
                .try_acquire("warm")
                .await
                .expect("no error")
                .expect("free");
            g.release().await.expect("release");
        }
        // Master 0 restarts empty: only its wait stands between the short client and a quorum.
        let (first, first_held) = held_on_0_and_1_then_0_restarts_empty(&servers, &long).await;
        let mut held = vec![first_held];
        let until = Instant::now() + first.validity();
        while Instant::now() < until {
            if let Ok(Some(second)) = short.try_acquire("r").await {
                held.push(Held {
                    client: 1,
                    start: Instant::now(),
                    end: Instant::now() + second.validity(),
                    fence: second.fence(),
                });
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(first);
        held
    });
    assert!(overlap(&held).is_none(), "overlap: {held:?}");
}

/// The issue's schedule for fences: tokens from masters 0 and 1 while master 2 misses them,
/// master 0 restarts empty, and the next lock is granted by masters 0 and 2, neither of which
/// kept the count: its token must still be the largest (the hybrid counter).
#[test]
fn fences_keep_increasing_when_the_next_quorum_lost_or_missed_the_count() {
    let tokens = runtime().block_on(async {
        let servers = steady_servers(10).await;
        let locks = lock_with_ttl(&servers, true, TTL);
        let warm = locks
            .try_acquire("warm")
            .await
            .expect("no error")
            .expect("free");
        warm.release().await.expect("release");
        servers[2].set_faults(Faults {
            lose_request: 1.0,
            ..Faults::default()
        });
        let mut tokens = Vec::new();
        for _ in 0..5 {
            let g = locks
                .try_acquire("f")
                .await
                .expect("no error")
                .expect("free");
            tokens.push(g.fence());
            g.release().await.expect("release");
        }
        servers[2].set_faults(Faults::default());
        servers[0].crash();
        servers[0].restart();
        servers[1].crash();
        // Once master 0 has waited out its restart delay (attempts in between would count on
        // master 2 and hide what is being shown), one attempt on {0, 2}.
        tokio::time::sleep(redlock::MIN_RESTART_DELAY + TTL).await;
        if let Ok(Some(g)) = locks.try_acquire("f").await {
            tokens.push(g.fence());
        }
        tokens
    });
    assert_eq!(tokens.len(), 6, "masters 0 and 2 never granted again");
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "fences went back: {tokens:?}"
    );
}
