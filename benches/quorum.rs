//! The quorum lock against the raw-fred baseline on the same masters in the same run:
//! uncontended acquire + release at N = 1, 3, 5 (paired, interleaved iterations, as in
//! `single.rs`), and contended throughput: 8 tasks, 4 keys, the same retry delays. One more pair
//! at N = 5, a diagnostic without a target: against a baseline that runs our own acquire script
//! (`Acquire::Fenced`), what the library adds beyond the masters' share of the protocol.
//!
//! The masters persist every write (AOF, `appendfsync always`, on tmpfs), the setting the
//! operations guide recommends, so that the restart guard lets them vote from the start.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use redlock::{Redlock, Retry};
use redlock_benches::{Acquire, Pairs, QuorumBaseline, Side, save_figures};
use redlock_single::Token;
use redlock_testkit::RedisGroup;

const TTL: Duration = Duration::from_secs(10);
const TASKS: usize = 8;
const KEYS: usize = 4;
const RETRY_DELAY: Duration = Duration::from_millis(1);
const CONTENDED_FOR: Duration = Duration::from_secs(1);
const CONTENDED_ROUNDS: usize = 6;
const SCALING_FOR: Duration = Duration::from_secs(8);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn connect(urls: &[String], retry: Retry) -> Redlock {
    Redlock::builder()
        .nodes(urls.iter().cloned())
        .ttl(TTL)
        .retry(retry)
        .connect()
        .await
        .expect("connect")
}

fn uncontended(c: &mut Criterion) {
    // Fresh masters have granted nothing: they vote at once (RedisGroup::persistent vouches).
    let group = RedisGroup::persistent(5).expect("start masters");
    let rt = runtime();
    // The last pair is a diagnostic: against a baseline that runs our own acquire script, it
    // shows what the library adds beyond the work the per-master protocol gives the masters.
    for (n, acquire, name) in [
        (1usize, Acquire::Set, "quorum_acquire_release_n1"),
        (3, Acquire::Set, "quorum_acquire_release_n3"),
        (5, Acquire::Set, "quorum_acquire_release_n5"),
        (5, Acquire::Fenced, "quorum_fenced_floor_n5"),
    ] {
        let urls: Vec<String> = group.urls().into_iter().take(n).collect();
        let baseline = rt
            .block_on(QuorumBaseline::connect(&urls, acquire))
            .expect("baseline");
        let locks = rt.block_on(connect(&urls, Retry::none()));
        let raw = || raw_cycle(&baseline, "bench-raw");
        let ours = || ours_cycle(&locks, "bench");
        let pairs = Pairs::default();
        let mut g = c.benchmark_group(name);
        for (f, side) in [("raw_fred", Side::Baseline), ("redlock", Side::Ours)] {
            g.bench_function(f, |b| {
                b.iter_custom(|iters| rt.block_on(pairs.run(iters, side, raw, ours)))
            });
        }
        g.finish();
        pairs.save(name).expect("write paired.txt");
    }
    scaling(&rt, &group.urls());
    contended(&rt, &group.urls());
    no_quorum(&rt, group);
}

/// One uncontended acquire + release of ours.
async fn ours_cycle(locks: &Redlock, resource: &str) {
    let guard = locks
        .try_acquire(resource)
        .await
        .expect("acquire")
        .expect("free");
    guard.release().await.expect("release");
}

/// One uncontended acquire + release of the baseline.
async fn raw_cycle(baseline: &QuorumBaseline, key: &str) {
    let token = Token::random();
    assert!(baseline.acquire(key, token.as_str(), TTL).await);
    baseline.release(key, token.as_str()).await;
}

/// N=5 against N=1, for each side, with the four measurements interleaved: one cycle of each
/// (ours and the baseline, at N=1 and at N=5) in turn, the order rotating, for
/// `SCALING_FOR`. The criterion groups above run one after another, so a ratio between two of
/// them also holds whatever the machine's speed did in between; here it does not.
fn scaling(rt: &tokio::runtime::Runtime, urls: &[String]) {
    let (ours, raw) = rt.block_on(async {
        let ours = [
            connect(&urls[..1], Retry::none()).await,
            connect(urls, Retry::none()).await,
        ];
        let raw = [
            QuorumBaseline::connect(&urls[..1], Acquire::Set).await,
            QuorumBaseline::connect(urls, Acquire::Set).await,
        ]
        .map(|b| b.expect("baseline"));
        (ours, raw)
    });
    // ours N=1, ours N=5, raw N=1, raw N=5.
    let mut times: [Vec<Duration>; 4] = Default::default();
    rt.block_on(async {
        let warm_up = tokio::time::Instant::now() + Duration::from_secs(1);
        let end = warm_up + SCALING_FOR;
        for round in 0usize.. {
            let now = tokio::time::Instant::now();
            if now >= end {
                break;
            }
            for k in 0..4 {
                let which = (round + k) % 4;
                let start = tokio::time::Instant::now();
                // A resource of its own for each: the N=1 lock would otherwise raise the
                // fencing counter on one master only, and every N=5 acquisition would then need
                // a raise round to bring the others up.
                match which {
                    0 => ours_cycle(&ours[0], "scaling-1").await,
                    1 => ours_cycle(&ours[1], "scaling-5").await,
                    2 => raw_cycle(&raw[0], "scaling-raw-1").await,
                    _ => raw_cycle(&raw[1], "scaling-raw-5").await,
                }
                if now >= warm_up {
                    times[which].push(start.elapsed());
                }
            }
        }
    });
    let [o1, o5, r1, r5] = times.map(|mut t| {
        t.sort_unstable();
        t[t.len() / 2].as_secs_f64() * 1e9
    });
    println!(
        "N=5 / N=1, interleaved: ours {:.3} ({o5:.0} / {o1:.0} ns), raw fred {:.3} ({r5:.0} / {r1:.0} ns)",
        o5 / o1,
        r5 / r1
    );
    save_figures(
        "quorum_scaling",
        "scaling.txt",
        &[
            ("ours_n1_ns".into(), o1),
            ("ours_n5_ns".into(), o5),
            ("baseline_n1_ns".into(), r1),
            ("baseline_n5_ns".into(), r5),
        ],
    )
    .expect("write scaling.txt");
}

/// How long an attempt takes to report "no quorum" when a majority of the masters is paused:
/// bounded by the per-master timeout, since the attempt settles once the paused masters have
/// timed out (the live ones answer at once).
fn no_quorum(rt: &tokio::runtime::Runtime, mut group: RedisGroup) {
    let timeout = Duration::from_millis(50);
    let locks = rt.block_on(async {
        Redlock::builder()
            .nodes(group.urls())
            .ttl(TTL)
            .timeout(timeout)
            .retry(Retry::none())
            .connect()
            .await
            .expect("connect")
    });
    // Heard from first (their health read), so that what is timed is the acquire round
    // waiting out the paused masters, not the health reading.
    rt.block_on(async {
        let warm = locks.try_acquire("no-quorum").await.expect("acquire");
        warm.expect("free").release().await.expect("release");
    });
    for i in 0..3 {
        group[i].pause().expect("pause");
    }
    let mut times: Vec<Duration> = (0..40)
        .map(|_| {
            rt.block_on(async {
                let start = tokio::time::Instant::now();
                let r = locks.try_acquire("no-quorum").await;
                assert!(matches!(r, Err(redlock::Error::NoQuorum { .. })), "{r:?}");
                start.elapsed()
            })
        })
        .collect();
    for i in 0..3 {
        group[i].resume().expect("resume");
    }
    times.sort_unstable();
    let (median, max) = (times[times.len() / 2], times[times.len() - 1]);
    println!(
        "no quorum with 3 of 5 paused: median {median:?}, max {max:?}, per-master timeout {timeout:?}"
    );
    save_figures(
        "quorum_no_quorum",
        "latency.txt",
        &[
            ("median_ms".into(), median.as_secs_f64() * 1e3),
            ("max_ms".into(), max.as_secs_f64() * 1e3),
            ("timeout_ms".into(), timeout.as_secs_f64() * 1e3),
        ],
    )
    .expect("write latency.txt");
}

/// Cycles per second of 8 tasks over 4 keys, each task its own client, both sides retrying
/// after the same delay; alternating rounds of each side. Every client connects before the
/// first round, so that connecting is not timed.
fn contended(rt: &tokio::runtime::Runtime, urls: &[String]) {
    let (ours_clients, base_clients) = rt.block_on(async {
        let mut ours = Vec::new();
        let mut base = Vec::new();
        for _ in 0..TASKS {
            ours.push(
                connect(
                    urls,
                    Retry::linear(RETRY_DELAY).deadline(Duration::from_secs(5)),
                )
                .await,
            );
            base.push(
                QuorumBaseline::connect(urls, Acquire::Set)
                    .await
                    .expect("baseline"),
            );
        }
        (ours, base)
    });
    let mut totals = [0u64; 2];
    for round in 0..CONTENDED_ROUNDS * 2 {
        // Which side goes first alternates too.
        let ours = (round + round / 2) % 2 == 1;
        let cycles = Arc::new(AtomicU64::new(0));
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + CONTENDED_FOR;
            let mut tasks = Vec::new();
            for t in 0..TASKS {
                let key = format!("contended-{}", t % KEYS);
                let cycles = cycles.clone();
                if ours {
                    let locks = ours_clients[t].clone();
                    tasks.push(tokio::spawn(async move {
                        while tokio::time::Instant::now() < deadline {
                            if let Ok(g) = locks.acquire(&key).await {
                                g.release().await.expect("release");
                                cycles.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }));
                } else {
                    let base = base_clients[t].clone();
                    tasks.push(tokio::spawn(async move {
                        while tokio::time::Instant::now() < deadline {
                            let token = Token::random();
                            if base.acquire(&key, token.as_str(), TTL).await {
                                base.release(&key, token.as_str()).await;
                                cycles.fetch_add(1, Ordering::Relaxed);
                            } else {
                                // The same jittered delay as Retry::linear(RETRY_DELAY).
                                let d = RETRY_DELAY / 2
                                    + RETRY_DELAY.mul_f64(rand::random::<f64>() / 2.0);
                                tokio::time::sleep(d).await;
                            }
                        }
                    }));
                }
            }
            for t in tasks {
                t.await.expect("task");
            }
        });
        totals[usize::from(ours)] += cycles.load(Ordering::Relaxed);
    }
    let secs = CONTENDED_FOR.as_secs_f64() * CONTENDED_ROUNDS as f64;
    let (base, ours) = (totals[0] as f64 / secs, totals[1] as f64 / secs);
    println!(
        "contended (N=5, {TASKS} tasks, {KEYS} keys): ours {ours:.0}/s, raw fred {base:.0}/s, ratio {:.3}",
        ours / base
    );
    save_figures(
        "quorum_contended",
        "throughput.txt",
        &[("ours".into(), ours), ("baseline".into(), base)],
    )
    .expect("write throughput.txt");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(60);
    targets = uncontended
}
criterion_main!(benches);
