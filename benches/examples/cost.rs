//! The workload that `cargo xtask cost` counts instructions of: `OPS` uncontended acquire +
//! release cycles of one side (`ours` or `raw`) on `N` masters, nothing else timed.
//!
//! ```text
//! cargo run --release -p redlock-benches --example cost -- <ours|raw> <N> <OPS>
//! ```
//!
//! Both sides connect before the loop whichever side runs, so that two runs with different
//! `OPS` differ only by the cycles. The masters are shut down with `SHUTDOWN NOSAVE` at the
//! end, so that a profiler wrapped around `redis-server` (through `REDIS_SERVER`) writes its
//! counts.

use std::time::Duration;

use redlock::{Redlock, Retry};
use redlock_benches::{Acquire, QuorumBaseline};
use redlock_single::Token;
use redlock_testkit::RedisGroup;

const TTL: Duration = Duration::from_secs(10);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [side, n, ops] = args.as_slice() else {
        return Err("usage: cost <ours|raw> <masters> <cycles>".into());
    };
    let ours = match side.as_str() {
        "ours" => true,
        "raw" => false,
        other => return Err(format!("side must be ours or raw, not {other:?}").into()),
    };
    let n: usize = n.parse()?;
    let ops: u64 = ops.parse()?;
    // Fresh masters have granted nothing: they vote at once (RedisGroup::persistent vouches).
    let mut group = RedisGroup::persistent(n)?;
    let urls = group.urls();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let base = QuorumBaseline::connect(&urls, Acquire::Set).await?;
        // A timeout that a master running under callgrind, many times slower, still meets
        // (the value does not change the work counted).
        let locks = Redlock::builder()
            .nodes(urls.iter().cloned())
            .ttl(TTL)
            .timeout(Duration::from_secs(2))
            .retry(Retry::none())
            .connect()
            .await?;
        for _ in 0..ops {
            if ours {
                let guard = locks.try_acquire("cost").await?.ok_or("held")?;
                guard.release().await?;
            } else {
                let token = Token::random();
                if !base.acquire("cost-raw", token.as_str(), TTL).await {
                    return Err("held".into());
                }
                base.release("cost-raw", token.as_str()).await;
            }
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    for i in 0..n {
        // The connection closes as the server exits: the reply does not matter.
        let _ = group[i].cmd(&["SHUTDOWN", "NOSAVE"]);
        // A profiler writes its counts as the server exits: wait for that before the group's
        // drop kills what is left.
        if !group[i].wait_exit(Duration::from_secs(60))? {
            return Err(format!("master {i} did not exit after SHUTDOWN").into());
        }
    }
    Ok(())
}
