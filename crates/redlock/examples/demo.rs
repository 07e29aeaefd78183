//! `cargo xtask demo`: starts five local masters and has two workers contend for one lock
//! through the quorum, printing who holds it and the fencing token of each acquisition; then
//! pauses two masters (the lock goes on), and keeps a lock extended past its ttl.

use std::time::Duration;

use redlock::{Redlock, Retry};
use redlock_testkit::{Persistence, RedisGroup, ServerOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Masters that persist every write (see docs/operations.md).
    let mut masters = RedisGroup::start_with(
        5,
        ServerOptions {
            persistence: Persistence::AofAlways,
            ..Default::default()
        },
    )?;
    // They have just started and granted nothing: let them vote at once, as a client does
    // once a master has waited out its restart delay.
    masters.vouch()?;
    println!("5 masters running:");
    for url in masters.urls() {
        println!("  {url}");
    }
    let connect = |name: &'static str, urls: Vec<String>| async move {
        Redlock::builder()
            .nodes(urls)
            .ttl(Duration::from_secs(2))
            .retry(Retry::linear(Duration::from_millis(20)).deadline(Duration::from_secs(10)))
            .meta(name)
            .connect()
            .await
    };

    let mut workers = Vec::new();
    for name in ["worker-a", "worker-b"] {
        let locks = connect(name, masters.urls()).await?;
        workers.push(tokio::spawn(async move {
            for round in 1..=3 {
                let guard = locks.acquire("demo/report").await?;
                println!(
                    "{name} holds demo/report (round {round}, fence {}, valid for {} ms)",
                    guard.fence(),
                    guard.validity().as_millis()
                );
                tokio::time::sleep(Duration::from_millis(150)).await;
                guard.release().await?;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<_, redlock::Error>(())
        }));
    }
    for w in workers {
        w.await??;
    }

    println!("pausing 2 of the 5 masters (SIGSTOP)");
    masters[0].pause()?;
    masters[1].pause()?;
    let locks = connect("worker-c", masters.urls()).await?;
    let guard = locks.acquire("demo/report").await?;
    println!(
        "worker-c holds demo/report on the remaining 3 (fence {})",
        guard.fence()
    );
    guard.release().await?;
    masters[0].resume()?;
    masters[1].resume()?;

    let fence = locks
        .with_lock("demo/report", |lease| async move {
            println!(
                "worker-c runs a 3 s job under fence {} (ttl 2 s, extended meanwhile)",
                lease.fence()
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
            lease.fence()
        })
        .await?;
    let held = locks
        .inspect("demo/report")
        .await?
        .into_iter()
        .filter(|(_, seen)| seen.as_ref().is_ok_and(|s| s.holder.is_some()))
        .count();
    println!("worker-c finished under fence {fence}; the lock is now held on {held} of 5 masters");
    Ok(())
}
