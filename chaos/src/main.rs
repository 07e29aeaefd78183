//! `redlock-chaos`: the fault campaign's coordinator (`run`), and the client processes it
//! starts (`client`, and `section` for the command that `redlock exec` runs in the tool mode).
//! Run it through `cargo xtask chaos`.

mod campaign;
mod client;
mod report;
mod schedule;
mod world;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "redlock-chaos")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a campaign: masters, clients, faults; check the history; print the table.
    Run(campaign::Args),
    /// One client process (started by `run`).
    Client(client::Args),
    /// One critical section under `redlock exec` (started by a client in the tool mode).
    Section(client::SectionArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(a) => campaign::run(a),
        Command::Client(a) => client::run(a),
        Command::Section(a) => client::section(a),
    }
}
