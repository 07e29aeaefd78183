//! The validity an acquisition must leave: above zero, or the builder's `min_validity`.
//! Over simulated masters whose requests take time, on tokio's paused clock.

use std::time::Duration;

use redlock::{Error, Redlock, Retry};
use redlock_testkit::{Faults, SimNode, SimServer};

const TTL: Duration = Duration::from_millis(1000);
const TIMEOUT: Duration = Duration::from_millis(500);

/// Three masters whose every request and reply take up to 200 ms each way.
fn slow_masters() -> Vec<SimServer> {
    (0..3)
        .map(|i| {
            let s = SimServer::new(format!("sim-{i}:6379"), true, 7 + i);
            s.set_faults(Faults {
                max_delay: Duration::from_millis(200),
                ..Faults::default()
            });
            s
        })
        .collect()
}

fn locks(
    servers: &[SimServer],
    min_validity: Option<Duration>,
) -> redlock::Result<Redlock<SimNode>> {
    let builder = Redlock::builder()
        .ttl(TTL)
        .timeout(TIMEOUT)
        .retry(Retry::none());
    let builder = match min_validity {
        Some(min) => builder.min_validity(min),
        None => builder,
    };
    builder.with_masters(servers.iter().map(|s| s.connect(TIMEOUT)).collect())
}

#[tokio::test(start_paused = true)]
async fn an_acquisition_leaving_less_than_the_minimum_fails_and_is_released() {
    let servers = slow_masters();
    // Masters up for longer than the restart delay, as in steady state (paused time).
    tokio::time::sleep(redlock::MIN_RESTART_DELAY).await;
    // ttl − drift = 988 ms: 980 ms left means a quorum within 8 ms, which these masters,
    // 0–200 ms each way, do not give (their delays are seeded: the same every run).
    let strict = locks(&servers, Some(Duration::from_millis(980))).expect("valid");
    let err = strict
        .try_acquire("v")
        .await
        .expect_err("too slow for the minimum");
    assert!(matches!(err, Error::TooSlow { .. }), "{err}");
    // What it took is released in the background: the releases take at most 400 ms, well
    // before the keys' 1 s ttl would end them.
    tokio::time::sleep(Duration::from_millis(450)).await;
    for s in &servers {
        assert!(s.live_keys().is_empty(), "left behind: {:?}", s.live_keys());
    }
    // The same masters and delays, without a minimum: acquired, with the validity it leaves.
    let lenient = locks(&servers, None).expect("valid");
    let guard = lenient
        .try_acquire("v")
        .await
        .expect("acquire")
        .expect("free");
    assert!(guard.validity() > Duration::ZERO && guard.validity() < TTL);
    guard.release().await.expect("release");
}

#[tokio::test(start_paused = true)]
async fn a_minimum_no_acquisition_could_leave_is_refused() {
    let servers = slow_masters();
    // ttl − drift = 1000 − 12 = 988 ms.
    for min in [Duration::from_millis(988), TTL, Duration::from_secs(60)] {
        let err = locks(&servers, Some(min)).expect_err("impossible minimum");
        assert!(
            matches!(err, Error::Config(ref m) if m.contains("min_validity")),
            "{min:?}: {err}"
        );
    }
}
