//! `cargo xtask demo`: starts a local master and has two workers contend for one lock, printing
//! who holds it and the fencing token each acquisition got.

use std::time::Duration;

use redlock_single::{Lock, Retry};
use redlock_testkit::RedisServer;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = RedisServer::start()?;
    println!("master running at {}", server.url());

    let mut workers = Vec::new();
    for name in ["worker-a", "worker-b"] {
        let lock = Lock::builder()
            .url(server.url())
            .ttl(Duration::from_secs(2))
            .retry(Retry::linear(Duration::from_millis(20)).deadline(Duration::from_secs(10)))
            .meta(name)
            .connect()
            .await?;
        workers.push(tokio::spawn(async move {
            for round in 1..=3 {
                let guard = lock.acquire("demo/report").await?;
                println!(
                    "{name} holds demo/report (round {round}, fence {}, valid for {} ms)",
                    guard.fence(),
                    guard.validity().as_millis()
                );
                tokio::time::sleep(Duration::from_millis(150)).await;
                guard.release().await?;
                println!("{name} released it");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<_, redlock_single::Error>(())
        }));
    }
    for w in workers {
        w.await??;
    }

    // with_lock keeps the lock extended while the work runs, past its 2 s ttl.
    let lock = Lock::builder()
        .url(server.url())
        .ttl(Duration::from_secs(2))
        .meta("worker-c")
        .connect()
        .await?;
    let fence = lock
        .with_lock("demo/report", |lease| async move {
            println!(
                "worker-c runs a 3 s job under fence {} (ttl 2 s)",
                lease.fence()
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
            lease.fence()
        })
        .await?;
    let seen = lock.inspect("demo/report").await?;
    println!(
        "worker-c finished under fence {fence}; the lock is now {}, fence counter {}",
        if seen.holder.is_some() {
            "held"
        } else {
            "free"
        },
        seen.fence
    );
    Ok(())
}
