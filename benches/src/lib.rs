//! Shared pieces of the benchmarks: the raw-fred baseline that every figure is a ratio against.
//!
//! The baseline is the floor for one lock on one master with nothing but fred: `SET key token
//! NX PX ttl`, then the Lua check-and-delete by EVALSHA. It sends EVALSHA the way our `Node`
//! does (fred's custom command, pipelined), so that the ratio measures what the library adds,
//! not a difference in how fred sends scripts.

use std::time::Duration;

use redlock_single::fred::bytes_utils::Str;
use redlock_single::fred::clients::Client;
use redlock_single::fred::interfaces::{ClientLike, KeysInterface, LuaInterface};
use redlock_single::fred::prelude::{Config, Expiration, SetOptions};
use redlock_single::fred::types::{ClusterHash, CustomCommand, Value};

/// The release script of the baseline: the classic check-and-delete.
pub const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";

/// How a baseline takes a lock on one master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// `SET key token NX PX ttl`: the floor for one lock, which every target is measured against.
    Set,
    /// The library's own acquire script (`SET NX PX` and the fencing `INCR`, see
    /// `redlock_single::scripts::ACQUIRE`) by EVALSHA: the floor for the per-master protocol
    /// that the project's design fixes (`docs/safety.md`). A diagnostic: against it, the ratio shows what the library adds
    /// beyond the work its protocol makes the masters do.
    Fenced,
}

/// A raw fred client with the release script (and, for [`Acquire::Fenced`], the acquire
/// script) loaded.
#[derive(Debug, Clone)]
pub struct Baseline {
    client: Client,
    release_sha: String,
    /// The acquire script's hash when acquiring by [`Acquire::Fenced`].
    acquire_sha: Option<String>,
}

impl Baseline {
    /// Connects to `url` and loads the scripts that `acquire` needs.
    pub async fn connect(
        url: &str,
        acquire: Acquire,
    ) -> Result<Baseline, Box<dyn std::error::Error>> {
        let client = Client::new(Config::from_url(url)?, None, None, None);
        client.init().await?;
        let release_sha: String = client.script_load(RELEASE).await?;
        let acquire_sha = match acquire {
            Acquire::Set => None,
            Acquire::Fenced => Some(
                client
                    .script_load::<String, _>(redlock_single::scripts::ACQUIRE)
                    .await?,
            ),
        };
        Ok(Baseline {
            client,
            release_sha,
            acquire_sha,
        })
    }

    /// One acquisition (by `SET NX PX`, or by the acquire script with the counter under
    /// `{key}:fence`); true if it was free.
    pub async fn acquire(&self, key: &str, token: &str, ttl: Duration) -> bool {
        if let Some(sha) = &self.acquire_sha {
            let mut fence_key = String::with_capacity(key.len() + 6);
            fence_key.push_str(key);
            fence_key.push_str(":fence");
            let args: Vec<Value> = vec![
                sha.as_str().into(),
                Value::String(Str::from_static("2")),
                key.into(),
                fence_key.into(),
                token.into(),
                i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).into(),
            ];
            let counter: Option<i64> = self.client.custom(evalsha(), args).await.unwrap_or(None);
            return counter.is_some();
        }
        let px = Expiration::PX(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let reply: Option<String> = self
            .client
            .set(key, token, Some(px), Some(SetOptions::NX), false)
            .await
            .unwrap_or(None);
        reply.is_some()
    }

    /// One release by the Lua check-and-delete; true if the key held `token`.
    pub async fn release(&self, key: &str, token: &str) -> bool {
        let args: Vec<Value> = vec![
            self.release_sha.as_str().into(),
            Value::String(Str::from_static("1")),
            key.into(),
            token.into(),
        ];
        let deleted: i64 = self.client.custom(evalsha(), args).await.unwrap_or(0);
        deleted == 1
    }
}

/// EVALSHA as fred's custom command, pipelined like our `Node` sends it. (Its key count goes as
/// ready text, as ours does: an integer argument costs fred a float logarithm to encode.)
fn evalsha() -> CustomCommand {
    CustomCommand::new_static("EVALSHA", ClusterHash::FirstKey, false)
}

/// Which side of a paired measurement a criterion function reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The raw-fred baseline.
    Baseline,
    /// The library under test.
    Ours,
}

/// The per-iteration times of both sides of a pair, from runs where they alternate.
#[derive(Debug, Default)]
pub struct Pairs {
    times: std::cell::RefCell<[Vec<Duration>; 2]>,
}

impl Pairs {
    /// Runs `iters` iterations of `baseline` and of `ours`, alternating (which one goes first
    /// alternates too), records every iteration's time, and returns the total time of `side`.
    /// Both criterion functions of a pair report from runs made under the same conditions.
    pub async fn run<B, BF, O, OF>(&self, iters: u64, side: Side, baseline: B, ours: O) -> Duration
    where
        B: Fn() -> BF,
        BF: std::future::Future<Output = ()>,
        O: Fn() -> OF,
        OF: std::future::Future<Output = ()>,
    {
        let mut spent = [Duration::ZERO; 2];
        let mut times = [Vec::new(), Vec::new()];
        for i in 0..iters {
            for turn in 0..2 {
                let run_ours = (i + turn) % 2 == 1;
                let start = std::time::Instant::now();
                if run_ours {
                    ours().await;
                } else {
                    baseline().await;
                }
                let took = start.elapsed();
                spent[usize::from(run_ours)] += took;
                times[usize::from(run_ours)].push(took);
            }
        }
        let mut all = self.times.borrow_mut();
        for (all, new) in all.iter_mut().zip(times) {
            all.extend(new);
        }
        match side {
            Side::Baseline => spent[0],
            Side::Ours => spent[1],
        }
    }

    /// Writes the median of each side (ns) and the iteration count to `paired.txt` in
    /// criterion's folder for `group`, for `cargo xtask bench` to report. The ratio of these medians
    /// compares iterations that ran side by side.
    pub fn save(&self, group: &str) -> std::io::Result<()> {
        let mut times = self.times.borrow_mut();
        let [base, ours] = &mut *times;
        let median = |v: &mut Vec<Duration>| {
            v.sort_unstable();
            v.get(v.len() / 2).copied().unwrap_or_default().as_nanos()
        };
        let n = base.len().min(ours.len());
        if n == 0 {
            // Not measured in this run (filtered out): keep the figures of the last run.
            return Ok(());
        }
        let figures = [
            ("ours_ns".to_owned(), median(ours) as f64),
            ("baseline_ns".to_owned(), median(base) as f64),
            ("iterations".to_owned(), n as f64),
        ];
        save_figures(group, "paired.txt", &figures)
    }
}

/// Where criterion writes its results: `$CARGO_TARGET_DIR/criterion` or `target/criterion`
/// under the workspace root.
fn criterion_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        },
        std::path::PathBuf::from,
    );
    target.join("criterion")
}

/// The raw-fred baseline over N masters: the floor for one quorum lock.
///
/// `SET NX PX` to all N in parallel, returning at the majority's yes; the Lua release to all
/// N in parallel, returning at the majority's confirmation while the rest confirm in the
/// background (their requests are already written; only the waiting stops).
#[derive(Debug, Clone)]
pub struct QuorumBaseline {
    masters: Vec<Baseline>,
}

impl QuorumBaseline {
    /// Connects to every master.
    pub async fn connect(
        urls: &[String],
        acquire: Acquire,
    ) -> Result<QuorumBaseline, Box<dyn std::error::Error>> {
        let mut masters = Vec::new();
        for url in urls {
            masters.push(Baseline::connect(url, acquire).await?);
        }
        Ok(QuorumBaseline { masters })
    }

    fn quorum(&self) -> usize {
        self.masters.len() / 2 + 1
    }

    /// Acquires on a majority; on failure releases everywhere (in parallel, waiting for a
    /// majority) and returns false.
    pub async fn acquire(&self, key: &str, token: &str, ttl: Duration) -> bool {
        use futures::StreamExt;
        let mut round: futures::stream::FuturesUnordered<_> = self
            .masters
            .iter()
            .map(|m| m.acquire(key, token, ttl))
            .collect();
        let (mut yes, mut no) = (0, 0);
        let q = self.quorum();
        while let Some(granted) = round.next().await {
            if granted {
                yes += 1;
            } else {
                no += 1;
            }
            if yes >= q {
                return true;
            }
            if self.masters.len() - no < q {
                break;
            }
        }
        drop(round);
        self.release(key, token).await;
        false
    }

    /// Releases everywhere; returns once a majority answered.
    pub async fn release(&self, key: &str, token: &str) {
        use futures::StreamExt;
        let mut round: futures::stream::FuturesUnordered<_> =
            self.masters.iter().map(|m| m.release(key, token)).collect();
        let mut answered = 0;
        while round.next().await.is_some() {
            answered += 1;
            if answered >= self.quorum() {
                break;
            }
        }
    }
}

/// Writes `label value` lines to `name` in criterion's folder for `group`.
pub fn save_figures(group: &str, name: &str, lines: &[(String, f64)]) -> std::io::Result<()> {
    let dir = criterion_dir().join(group);
    std::fs::create_dir_all(&dir)?;
    let text: String = lines.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    std::fs::write(dir.join(name), text)
}
