//! `redlock-masters N`: starts N local masters for manual work (persisting every write, and
//! vouched for, so that they vote at once), prints their URLs, and stops them on Ctrl-C (or SIGTERM). Run it through
//! `cargo xtask redis N`.

use std::process::ExitCode;

use nix::sys::signal::{SigSet, Signal};
use redlock_testkit::{Persistence, RedisGroup, ServerOptions};

fn main() -> ExitCode {
    let n = match std::env::args().nth(1).map(|a| a.parse::<usize>()) {
        None => 3,
        Some(Ok(n)) if (1..=64).contains(&n) => n,
        Some(_) => {
            eprintln!("usage: redlock-masters [N], N from 1 to 64");
            return ExitCode::from(64);
        }
    };
    // Block the signals before any thread starts, then wait for one of them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    // AOF with appendfsync always: the masters vote from the start (see docs/operations.md).
    let options = ServerOptions {
        persistence: Persistence::AofAlways,
        ..Default::default()
    };
    // Fresh masters have granted nothing: vouch for them so that clients let them vote at once
    // (after a restart they wait out the restart delay, as they should).
    let group = match RedisGroup::start_with(n, options).and_then(|g| g.vouch().map(|()| g)) {
        Ok(group) => group,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let urls = group.urls();
    println!("{n} masters running; press Ctrl-C to stop them.");
    for url in &urls {
        println!("  {url}");
    }
    println!("REDLOCK_NODES={}", urls.join(","));
    let signal = signals.wait();
    drop(group);
    println!(
        "stopped ({})",
        signal.map_or_else(|e| e.to_string(), |s| s.as_str().to_owned())
    );
    ExitCode::SUCCESS
}
