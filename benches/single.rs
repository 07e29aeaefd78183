//! Acquire + release on one master: `redlock-single` against the raw-fred baseline, on the
//! same server in the same run. `cargo xtask bench` prints the ratio.
//!
//! The machine is shared and its speed drifts by more than the difference we measure, so each
//! sample runs the two workloads interleaved, one iteration of each in turn; the two criterion
//! functions report the time of their own side, and the ratio that `cargo xtask bench` prints
//! is that of the medians of every interleaved iteration (`paired.txt`).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use redlock_benches::{Acquire, Baseline, Pairs, Side};
use redlock_single::{Lock, Retry, Token};
use redlock_testkit::RedisServer;

const TTL: Duration = Duration::from_secs(10);

fn single(c: &mut Criterion) {
    let server = RedisServer::start().expect("start redis-server");
    // A fresh master has granted nothing: let it grant at once (RedisServer::vouch).
    server.vouch().expect("vouch");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let baseline = rt
        .block_on(Baseline::connect(&server.url(), Acquire::Set))
        .expect("baseline");
    let lock = rt
        .block_on(
            Lock::builder()
                .url(server.url())
                .ttl(TTL)
                .retry(Retry::none())
                .connect(),
        )
        .expect("lock");

    let raw = || async {
        let token = Token::random();
        assert!(baseline.acquire("bench-raw", token.as_str(), TTL).await);
        assert!(baseline.release("bench-raw", token.as_str()).await);
    };
    let ours = || async {
        let guard = lock
            .try_acquire("bench")
            .await
            .expect("acquire")
            .expect("free");
        guard.release().await.expect("release");
    };

    let pairs = Pairs::default();
    let mut group = c.benchmark_group("single_acquire_release");
    for (name, side) in [("raw_fred", Side::Baseline), ("redlock_single", Side::Ours)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| rt.block_on(pairs.run(iters, side, raw, ours)))
        });
    }
    group.finish();
    pairs
        .save("single_acquire_release")
        .expect("write paired.txt");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .sample_size(100);
    targets = single
}
criterion_main!(benches);
