//! `redlock`: run a command while holding a distributed lock on Redis, or show who holds one.
//!
//! # Layout
//!
//! - `args`: the command line (clap), and its validation into a lock builder.
//! - `exec`: `redlock exec`: acquire, run the command, keep the lock extended, stop the command
//!   if the lock is lost, release; every way out closes the locks first.
//! - `child`: the command as a process: its own process group, the terminal's foreground,
//!   forwarded signals, and the watchdog that stops the group when the tool dies.
//! - `status`: `redlock status`: each master's view of a key, as text or JSON.
//! - `exit`: the exit codes, which library error gets which, and the one-line error type.
//!
//! # Unsafe code
//!
//! Denied in the crate, and allowed in one function, `child::prepare`: registering the code
//! the child runs between fork and exec (`CommandExt::pre_exec`) is an unsafe call. That code
//! makes system calls only; its `// SAFETY:` comment says why that is sound.
#![deny(unsafe_code)]

mod args;
mod child;
mod exec;
mod exit;
mod status;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return exit::from_clap(&e),
    };
    if let args::Command::Watch(w) = &cli.command {
        // No runtime, no logging: it only waits on a socket.
        return child::watch(w.tool, w.grace);
    }
    if let Err(message) = logging(cli.verbose) {
        return exit::Failure::usage(message).report();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return exit::Failure::software(format!("cannot start the runtime: {e}")).report();
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            args::Command::Exec(a) => exec::run(a).await,
            args::Command::Status(a) => status::run(a).await,
            args::Command::Watch(_) => Ok(ExitCode::SUCCESS),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

/// Logs to stderr: `RUST_LOG` when set (a tracing filter), else by the count of `-v`: the
/// lock crates' debug events (each attempt, each master's answer and its latency), then their
/// trace events, then everything. Without either, nothing is logged: failures are one line.
fn logging(verbose: u8) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec)
            .map_err(|e| format!("RUST_LOG={spec:?} is not a tracing filter: {e}"))?,
        _ => match verbose {
            0 => return Ok(()),
            1 => EnvFilter::new("redlock=debug,redlock_single=debug"),
            2 => EnvFilter::new("redlock=trace,redlock_single=trace"),
            _ => EnvFilter::new("trace"),
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init()
        .map_err(|e| format!("cannot set up logging: {e}"))
}
