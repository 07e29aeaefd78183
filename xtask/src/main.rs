//! `cargo xtask`: the project's make (the cargo-xtask pattern). Standard library only, so that
//! it builds in seconds.
//!
//! - `ci`: installs `redis-server` (and `script(1)`, for the CLI's terminal tests) if needed, then fmt check, clippy with warnings denied, all
//!   tests against real servers, the per-master crate's unit tests without TLS, doc tests,
//!   and the docs built with warnings denied.
//! - `demo`: local masters and workers contending for one lock.
//! - `bench`: the criterion benches, then one table of ratios against the raw-fred baseline.
//! - `cost [CYCLES]`: instructions per acquire + release, ours against raw fred, counted by
//!   callgrind on the client and on one master: figures that the machine's noise does not move.
//! - `redis N`: N local masters for manual work, until Ctrl-C.
//! - `tidy`: the house rules over the repository's files (`tidy.rs`).
//! - `chaos [--masters 5] [--clients 8] [--duration 60s] [--seed S] [--faults LIST] [--mode
//!   lib|cli] [--broken …]`: the fault campaign on real masters (`chaos/`), release build; its
//!   table on stdout, its history and timeline under `target/chaos/`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};

mod bench;
mod cost;
mod tidy;

type Result<T = ()> = std::result::Result<T, String>;

/// The tasks, with what each does: what `cargo xtask` alone prints.
const TASKS: &[(&str, &str)] = &[
    (
        "ci",
        "the whole test suite: tidy, fmt, clippy, tests on real servers, docs, a short fault campaign",
    ),
    ("demo", "local masters and workers contending for one lock"),
    (
        "bench",
        "the criterion benches, then one table of ratios against raw fred",
    ),
    (
        "cost [CYCLES]",
        "instructions per acquire + release against raw fred (callgrind)",
    ),
    ("redis [N]", "N local masters for manual work, until Ctrl-C"),
    (
        "chaos [OPTIONS]",
        "the fault campaign on real masters (docs/chaos.md)",
    ),
    (
        "tidy",
        "the house rules: module docs, nothing hidden, no outside files, no figures in comments",
    ),
];

fn tasks() -> String {
    let mut text = String::from("usage: cargo xtask TASK\n\ntasks:\n");
    for (name, what) in TASKS {
        text.push_str(&format!("  {name:<17} {what}\n"));
    }
    text
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("help" | "-h" | "--help") => {
            print!("{}", tasks());
            Ok(())
        }
        Some("ci") => ci(),
        Some("demo") => demo(),
        Some("bench") => bench::run(&args[1..]),
        Some("cost") => cost::run(args.get(1).map(String::as_str)),
        Some("redis") => redis(args.get(1).map(String::as_str)),
        Some("chaos") => chaos(&args[1..]),
        Some("tidy") => tidy(),
        Some(other) => Err(format!("no task {other:?}\n{}", tasks())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Set by `ci`: the builds are made once, from whatever is in `target/`, so incremental caches
/// would only take disk (several times the build itself over a few runs).
static ONE_SHOT: AtomicBool = AtomicBool::new(false);

fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    if ONE_SHOT.load(Ordering::Relaxed) && env::var_os("CARGO_INCREMENTAL").is_none() {
        cmd.env("CARGO_INCREMENTAL", "0");
    }
    cmd
}

/// What a `cargo xtask ci` from a clean checkout writes under `target/`, in KiB, with a margin
/// of about twice (the README gives the measured figure).
const CI_DISK_KIB: u64 = 3 << 20;

/// The KiB free on the file system of `target/` (or of the checkout, before the first build), as
/// `df` reports them; `None` where there is no `df` or its answer cannot be read.
fn free_kib() -> Option<u64> {
    let target = root().join("target");
    let dir = if target.is_dir() { target } else { root() };
    let out = Command::new("df").arg("-Pk").arg(&dir).output().ok()?;
    available_kib(&String::from_utf8_lossy(&out.stdout))
}

/// The `Available` column of `df -P`'s one line under its heading.
fn available_kib(df: &str) -> Option<u64> {
    df.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// A warning when the disk may be too small for a clean run, so that a build stopped by a full
/// disk says why before cargo's own message.
fn warn_if_disk_low() {
    if let Some(free) = free_kib().filter(|&kib| kib < CI_DISK_KIB) {
        eprintln!(
            "xtask: warning: {:.1} GiB free under target/, less than the {:.1} GiB that a clean \
             `cargo xtask ci` should have there (a build that was run before needs less)",
            free as f64 / (1u64 << 20) as f64,
            CI_DISK_KIB as f64 / (1u64 << 20) as f64,
        );
    }
}

/// Runs `cmd`, echoing it first; fails with its exit status.
fn run(cmd: &mut Command) -> Result {
    let shown = format!("{cmd:?}").replace('"', "");
    eprintln!("$ {shown}");
    let status = cmd.status().map_err(|e| format!("{shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown}: {status}"))
    }
}

/// Where `program` is on PATH, if it is.
fn find_on_path(program: &str) -> Option<PathBuf> {
    env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn on_path(program: &str) -> bool {
    find_on_path(program).is_some()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure `redis-server` can be run: `$REDIS_SERVER`, or on PATH, or installed with
/// apt-get when we are root on a Debian-like system.
fn ensure_redis() -> Result {
    if let Some(path) = env::var_os("REDIS_SERVER") {
        return if Path::new(&path).is_file() {
            Ok(())
        } else {
            Err(format!(
                "REDIS_SERVER={} is not a file",
                Path::new(&path).display()
            ))
        };
    }
    ensure_installed("redis-server", "redis-server")
}

/// Makes sure `program` is on PATH, installing the Debian `package` with apt-get when we are
/// root on a Debian-like system; otherwise says what to install.
fn ensure_installed(program: &str, package: &str) -> Result {
    if on_path(program) {
        return Ok(());
    }
    if !(is_root() && on_path("apt-get")) {
        let hint = if program == "redis-server" {
            " or set REDIS_SERVER to its path"
        } else {
            ""
        };
        return Err(format!(
            "{program} is missing: install the Debian package `{package}` \
             (sudo apt-get install {package}){hint}"
        ));
    }
    eprintln!("xtask: {program} is missing; installing the Debian package {package}");
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    if on_path(program) {
        Ok(())
    } else {
        Err(format!(
            "apt-get installed {package} but {program} is not on PATH"
        ))
    }
}

/// Builds the campaign and the tool; returns the directory of the binaries.
fn campaign_binaries(release: bool) -> Result<PathBuf> {
    let mut build = cargo();
    build.args([
        "build",
        "--locked",
        "-p",
        "redlock-chaos",
        "-p",
        "redlock-cli",
    ]);
    if release {
        build.arg("--release");
    }
    run(&mut build)?;
    Ok(root()
        .join("target")
        .join(if release { "release" } else { "debug" }))
}

/// The fault campaign, built for release, with `args` passed on.
fn chaos(args: &[String]) -> Result {
    ensure_redis()?;
    let release = campaign_binaries(true)?;
    let mut cmd = Command::new(release.join("redlock-chaos"));
    cmd.current_dir(root()).arg("run").args(args);
    if !args.iter().any(|a| a == "--redlock") {
        cmd.arg("--redlock").arg(release.join("redlock"));
    }
    run(&mut cmd)
}

fn ci() -> Result {
    ONE_SHOT.store(true, Ordering::Relaxed);
    warn_if_disk_low();
    let result = ci_steps();
    if result.is_err() {
        warn_if_disk_low();
    }
    result
}

fn ci_steps() -> Result {
    tidy()?;
    ensure_redis()?;
    // The CLI tests run an interactive command under a pseudo-terminal made by script(1).
    ensure_installed("script", "bsdutils")?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args([
        "clippy",
        "--locked",
        "-p",
        "redlock-single",
        "--no-default-features",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let nextest = cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if nextest {
        run(cargo().args([
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--no-fail-fast",
        ]))?;
    } else {
        eprintln!("xtask: cargo-nextest not found; running the tests with cargo test");
        run(cargo().args([
            "test",
            "--workspace",
            "--locked",
            "--lib",
            "--bins",
            "--tests",
        ]))?;
    }
    // The build without TLS, where a rediss:// URL must be a configuration error.
    run(cargo().args([
        "test",
        "--locked",
        "-p",
        "redlock-single",
        "--no-default-features",
        "--lib",
    ]))?;
    run(cargo().args(["test", "--workspace", "--locked", "--doc"]))?;
    // A short seeded fault campaign with every fault, through the library and through the
    // tool (the debug builds the tests made).
    let debug = campaign_binaries(false)?;
    for (mode, duration, seed) in [("lib", "45s", "1"), ("cli", "30s", "2")] {
        run(Command::new(debug.join("redlock-chaos"))
            .current_dir(root())
            .args([
                "run",
                "--mode",
                mode,
                "--duration",
                duration,
                "--seed",
                seed,
            ])
            .args(["--faults", "all", "--out"])
            .arg(
                root()
                    .join("target")
                    .join("chaos")
                    .join(format!("ci-{mode}")),
            )
            .arg("--redlock")
            .arg(debug.join("redlock")))?;
    }
    run(cargo()
        .args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    eprintln!("xtask: ci passed");
    Ok(())
}

fn tidy() -> Result {
    let breaches = tidy::check(&root());
    if breaches.is_empty() {
        eprintln!("xtask: tidy");
        Ok(())
    } else {
        Err(format!(
            "{} breaches of the house rules:\n{}",
            breaches.len(),
            breaches.join("\n")
        ))
    }
}

fn demo() -> Result {
    ensure_redis()?;
    run(cargo().args([
        "run",
        "--quiet",
        "--locked",
        "-p",
        "redlock",
        "--example",
        "demo",
    ]))
}

fn redis(n: Option<&str>) -> Result {
    let n = n.unwrap_or("3");
    match n.parse::<usize>() {
        Ok(k) if (1..=64).contains(&k) => {}
        _ => return Err(format!("redis: N must be a number from 1 to 64, not {n:?}")),
    }
    ensure_redis()?;
    run(cargo().args([
        "run",
        "--quiet",
        "--locked",
        "-p",
        "redlock-testkit",
        "--bin",
        "redlock-masters",
        "--",
        n,
    ]))
}

#[cfg(test)]
mod tests {
    use super::available_kib;

    #[test]
    fn the_free_disk_is_the_available_column_of_df() {
        let df = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                  /dev/vda         264212084 34889420  60396468      37% /\n";
        assert_eq!(available_kib(df), Some(60_396_468));
        assert_eq!(
            available_kib("Filesystem 1024-blocks Used Available\n"),
            None
        );
        assert_eq!(available_kib("heading\n/dev/vda 1 2 lots 3% /\n"), None);
    }
}
