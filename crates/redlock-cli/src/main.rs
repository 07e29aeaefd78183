//! `redlock`: run a command while holding a distributed lock on Redis, or show who holds one.
//!
//! # Layout
//!
//! - `args`: the command line (clap), and its validation into settings.
//! - `exec`: `redlock exec`: acquire, run the command in its own process group, keep the lock
//!   extended, stop the command if the lock is lost, release.
//! - `status`: `redlock status`: each master's view of a key, as text or JSON.
//! - `exit`: the exit codes and the one-line error type.
#![forbid(unsafe_code)]

mod args;
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
        }
    });
    match outcome {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
