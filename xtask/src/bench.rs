//! `cargo xtask bench`: runs the criterion benches, then prints one table: each measurement's
//! median against the raw-fred baseline measured in the same run, as a ratio.

use std::fs;
use std::path::Path;

use crate::{Result, cargo, ensure_redis, root};

/// (criterion group, target ratio of our median to the baseline's; none for a diagnostic).
const PAIRS: &[(&str, Option<f64>)] = &[
    ("single_acquire_release", Some(1.15)),
    ("quorum_acquire_release_n1", Some(1.10)),
    ("quorum_acquire_release_n3", Some(1.10)),
    ("quorum_acquire_release_n5", Some(1.10)),
    // Against raw fred running our acquire script (benches/quorum.rs): what the library adds
    // beyond the work its per-master protocol gives the masters.
    ("quorum_fenced_floor_n5", None),
];

pub(crate) fn run(args: &[String]) -> Result {
    ensure_redis()?;
    let mut cmd = cargo();
    cmd.args(["bench", "--locked", "-p", "redlock-benches", "--"]);
    cmd.args(args);
    crate::run(&mut cmd)?;
    report()
}

/// Reads the paired medians the benches wrote and prints the table.
fn report() -> Result {
    let dir = root().join("target").join("criterion");
    println!();
    println!(
        "{:<28} {:>14} {:>14} {:>8} {:>8} {:>10}",
        "benchmark", "ours (median)", "raw fred", "ratio", "target", "iterations"
    );
    let mut missed = Vec::new();
    for &(group, target) in PAIRS {
        let Some((ours, base, n)) = paired(&dir, group) else {
            println!("{group:<28} (not measured in this run)");
            continue;
        };
        let ratio = ours / base;
        let shown = target.map_or_else(|| "-".to_owned(), |t| format!("≤{t:.2}"));
        println!(
            "{group:<28} {:>11.1} µs {:>11.1} µs {ratio:>8.3} {shown:>8} {n:>10}",
            ours / 1000.0,
            base / 1000.0,
        );
        if let Some(target) = target.filter(|&t| ratio > t) {
            missed.push(format!("{group}: {ratio:.3} > {target:.2}"));
        }
    }
    println!(
        "medians of every iteration, the two sides alternating in the same run (see benches/); \
         target -: a diagnostic"
    );
    if let (Some((o1, b1, _)), Some((o5, b5, _))) = (
        paired(&dir, "quorum_acquire_release_n1"),
        paired(&dir, "quorum_acquire_release_n5"),
    ) {
        // For reference only: the two groups run tens of seconds apart, so the machine's
        // drift in between enters this ratio; the interleaved figure below is the one to go by.
        println!(
            "{:<28} {:>44.3} {:>8}   raw fred's own: {:.3}",
            "N=5 / N=1, groups above",
            o5 / o1,
            "-",
            b5 / b1
        );
    }
    if let Some((ratio, own)) = scaling(&dir) {
        println!(
            "{:<28} {:>44.3} {:>8}   raw fred's own: {own:.3}",
            "N=5 / N=1, interleaved", ratio, "≤1.50",
        );
        if ratio > 1.5 {
            missed.push(format!("N=5/N=1: {ratio:.3} > 1.50"));
        }
    }
    if let Some((ours, base)) = throughput(&dir) {
        let ratio = ours / base;
        println!(
            "{:<28} {:>9.0} cyc/s {:>8.0} cyc/s {ratio:>8.3} {:>7}1.00",
            "quorum contended (N=5)", ours, base, "≥"
        );
        if ratio < 1.0 {
            missed.push(format!("contended: {ratio:.3} < 1.00"));
        }
    }
    if let Some((median, max, timeout)) = no_quorum(&dir) {
        println!(
            "{:<28} median {median:.1} ms, max {max:.1} ms, per-master timeout {timeout:.0} ms",
            "no quorum (3 of 5 paused)"
        );
    }
    if !missed.is_empty() {
        println!("off target: {}", missed.join("; "));
    }
    Ok(())
}

/// (median, max, timeout) in ms from `quorum_no_quorum/latency.txt`.
fn no_quorum(dir: &Path) -> Option<(f64, f64, f64)> {
    let f = figures(dir, "quorum_no_quorum", "latency.txt")?;
    Some((f("median_ms")?, f("max_ms")?, f("timeout_ms")?))
}

/// (median ours ns, median baseline ns, iterations) from `<group>/paired.txt`.
fn paired(dir: &Path, group: &str) -> Option<(f64, f64, u64)> {
    let f = figures(dir, group, "paired.txt")?;
    Some((f("ours_ns")?, f("baseline_ns")?, f("iterations")? as u64))
}

/// The `label value` lines a bench wrote to `<group>/<file>` (see `save_figures` in
/// `benches/src/lib.rs`), as a lookup by label.
fn figures(dir: &Path, group: &str, file: &str) -> Option<impl Fn(&str) -> Option<f64>> {
    let text = fs::read_to_string(dir.join(group).join(file)).ok()?;
    Some(move |label: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            if k == label {
                v.trim().parse().ok()
            } else {
                None
            }
        })
    })
}

/// (ours, baseline) N=5 / N=1 from `quorum_scaling/scaling.txt`, where the four medians come
/// from interleaved cycles (see `scaling` in `benches/quorum.rs`).
fn scaling(dir: &Path) -> Option<(f64, f64)> {
    let f = figures(dir, "quorum_scaling", "scaling.txt")?;
    Some((
        f("ours_n5_ns")? / f("ours_n1_ns")?,
        f("baseline_n5_ns")? / f("baseline_n1_ns")?,
    ))
}

/// (ours, baseline) cycles per second from `quorum_contended/throughput.txt`.
fn throughput(dir: &Path) -> Option<(f64, f64)> {
    let f = figures(dir, "quorum_contended", "throughput.txt")?;
    Some((f("ours")?, f("baseline")?))
}
