//! `cargo xtask cost [CYCLES]`: what one uncontended acquire + release costs in instructions,
//! ours against the raw-fred baseline, counted by callgrind (valgrind).
//!
//! Timings on a shared two-core machine drift by more than the differences they are meant to
//! show; instruction counts do not. Each figure is the difference between a run of `2 × CYCLES`
//! and a run of `CYCLES` cycles of `benches/examples/cost.rs`, divided by `CYCLES`, so that
//! start-up and connection set-up cancel out:
//!
//! - client: the process that takes and releases the lock (redis-server runs natively);
//! - server: one master's redis-server under callgrind (the client runs natively), N = 1.
//!
//! Kernel time (system calls, the loopback network) is not counted; both sides make the same
//! system calls (one write and one read per request).

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Result, cargo, ensure_installed, ensure_redis, find_on_path, root};

const DEFAULT_CYCLES: u64 = 1000;

pub(crate) fn run(cycles: Option<&str>) -> Result {
    let cycles = match cycles {
        None => DEFAULT_CYCLES,
        Some(c) => match c.parse::<u64>() {
            Ok(k) if k > 0 => k,
            _ => return Err(format!("cost: CYCLES must be a positive number, not {c:?}")),
        },
    };
    ensure_redis()?;
    ensure_installed("valgrind", "valgrind")?;
    crate::run(cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "redlock-benches",
        "--example",
        "cost",
    ]))?;
    let exe = root().join("target/release/examples/cost");
    let dir = root().join("target/cost");
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    let mut rows = Vec::new();
    for n in [1usize, 5] {
        let [raw, ours] = ["raw", "ours"].map(|side| client_per_cycle(&exe, &dir, side, n, cycles));
        rows.push((format!("client, N={n}"), ours?, raw?));
    }
    let wrapper = server_wrapper(&dir)?;
    let [raw, ours] =
        ["raw", "ours"].map(|side| server_per_cycle(&exe, &dir, &wrapper, side, cycles));
    rows.push(("server, one master".to_owned(), ours?, raw?));

    println!();
    println!(
        "{:<22} {:>12} {:>12} {:>8}",
        "instructions / cycle", "ours", "raw fred", "ratio"
    );
    for (name, ours, raw) in rows {
        println!("{name:<22} {ours:>12.0} {raw:>12.0} {:>8.3}", ours / raw);
    }
    println!(
        "one cycle = uncontended acquire + release; callgrind counts, {cycles} and {} cycles differenced",
        2 * cycles
    );
    Ok(())
}

/// Instructions per cycle of the client process.
fn client_per_cycle(exe: &Path, dir: &Path, side: &str, n: usize, cycles: u64) -> Result<f64> {
    per_cycle(cycles, |k| {
        let out = dir.join(format!("client-{side}-{n}-{k}.out"));
        let mut cmd = Command::new("valgrind");
        cmd.arg("--tool=callgrind")
            .arg("--quiet")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(exe)
            .args([side, &n.to_string(), &k.to_string()]);
        (cmd, out)
    })
}

/// Instructions per cycle of one master.
fn server_per_cycle(
    exe: &Path,
    dir: &Path,
    wrapper: &Path,
    side: &str,
    cycles: u64,
) -> Result<f64> {
    per_cycle(cycles, |k| {
        let out = dir.join(format!("server-{side}-{k}"));
        let mut cmd = Command::new(exe);
        cmd.args([side, "1", &k.to_string()])
            .env("REDIS_SERVER", wrapper)
            .env("COST_SERVER_OUT", &out);
        (cmd, out)
    })
}

/// Runs `counted(k)`'s command for `2 × cycles` and for `cycles` cycles and returns the
/// difference of the instruction totals it writes to its file, per cycle.
fn per_cycle(cycles: u64, counted: impl Fn(u64) -> (Command, PathBuf)) -> Result<f64> {
    let count = |k: u64| -> Result<f64> {
        let (mut cmd, out) = counted(k);
        crate::run(&mut cmd)?;
        summary(&out)
    };
    Ok((count(2 * cycles)? - count(cycles)?) / cycles as f64)
}

/// A script that runs the real redis-server under callgrind, writing to `$COST_SERVER_OUT`;
/// the testkit starts it through `REDIS_SERVER`. Valgrind replaces the shell in the same
/// process, so the testkit's check that the server answering is its child still holds.
fn server_wrapper(dir: &Path) -> Result<PathBuf> {
    let redis = match env::var_os("REDIS_SERVER") {
        Some(p) => PathBuf::from(p),
        None => find_on_path("redis-server").ok_or("redis-server is not on PATH")?,
    };
    let path = dir.join("redis-server-callgrind.sh");
    let script = format!(
        "#!/bin/sh\nexec valgrind --tool=callgrind --quiet \
         --callgrind-out-file=\"$COST_SERVER_OUT\" '{}' \"$@\"\n",
        redis.display()
    );
    fs::write(&path, script)
        .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o755)))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// The total instruction count in a callgrind output file.
fn summary(out: &Path) -> Result<f64> {
    let text = fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("{}: no instruction total", out.display()))
}
