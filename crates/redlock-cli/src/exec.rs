//! `redlock exec`: run a command under the lock.
//!
//! The command runs in its own process group, so that every signal the tool sends (forwarded
//! SIGINT/SIGTERM/SIGHUP, or SIGTERM then SIGKILL when the lock is lost) reaches the whole
//! group: a `sh -c` grandchild is not orphaned. The lock is released only after the command has
//! ended.

use std::process::ExitCode;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use redlock::{Cause, Error, Redlock, Retry};
use tokio::process::Child;
use tokio::signal::unix::{SignalKind, signal};

use crate::args::ExecArgs;
use crate::exit::{self, Failure};

pub(crate) async fn run(a: ExecArgs) -> Result<ExitCode, Failure> {
    let nodes = a.target.check()?;
    let key = a.target.key.clone();
    if a.ttl.is_zero() {
        return Err(Failure::usage("--ttl must be above zero"));
    }
    let meta = a.meta.clone().unwrap_or_else(default_meta);
    let retry = if a.wait.is_zero() {
        Retry::none()
    } else {
        Retry::exponential(Duration::from_millis(10), Duration::from_millis(500)).deadline(a.wait)
    };
    let locks = connect(a.target.builder(nodes).ttl(a.ttl).retry(retry).meta(meta)).await?;
    let outcome = run_locked(&locks, &a, &key).await;
    // On every path: the releases still in flight (of a failed attempt, or the minority of
    // our own release) get their answers before the process exits, or keys of ours would stay
    // on the masters for the whole ttl.
    locks.close().await;
    outcome
}

/// Acquires, runs the command, releases.
async fn run_locked(locks: &Redlock, a: &ExecArgs, key: &str) -> Result<ExitCode, Failure> {
    let guard = match locks.acquire(key).await {
        Ok(guard) => guard,
        Err(e) => return Err(not_acquired(locks, key, e).await),
    };

    let program = &a.command[0];
    let spawned = tokio::process::Command::new(program)
        .args(&a.command[1..])
        .env("REDLOCK_KEY", key)
        .env("REDLOCK_FENCE", guard.fence().to_string())
        .env(
            "REDLOCK_VALIDITY_MS",
            guard.validity().as_millis().to_string(),
        )
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            // Nothing ran under the lock: give it back at once rather than hold it a ttl.
            let _ = guard.release().await;
            return Err(Failure::new(127, format!("cannot run {program}: {e}")));
        }
    };
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let Some(group) = group else {
        let _ = guard.release().await;
        return Err(Failure::software("the command has no process id"));
    };

    let outcome = guard
        .keep_extended(wait_forwarding(&mut child, group), a.ttl)
        .await;
    let status = match outcome {
        Some(status) => {
            status.map_err(|e| Failure::software(format!("waiting for {program}: {e}")))?
        }
        None => {
            eprintln!("redlock: lock {key:?} lost while {program} ran; stopping it");
            stop(&mut child, group, a.grace).await;
            let _ = guard.release().await;
            return Ok(ExitCode::from(exit::LOST));
        }
    };
    if let Err(e) = guard.release().await {
        eprintln!("redlock: releasing {key:?}: {e}");
    }
    Ok(exit::of_child(status))
}

/// `hostname:pid`, shown by `status` as the holder.
fn default_meta() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host}:{}", std::process::id())
}

/// Connects, mapping bad settings to 64 and unreachable masters to 69.
pub(crate) async fn connect(builder: redlock::RedlockBuilder) -> Result<Redlock, Failure> {
    builder
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| match e {
            Error::Config(m) => Failure::usage(m),
            Error::InvalidResource { .. } => Failure::usage(e.to_string()),
            Error::Connect { .. } => Failure::new(exit::UNAVAILABLE, unreachable(&e)),
            other => Failure::software(other.to_string()),
        })
}

fn unreachable(e: &Error) -> String {
    match e {
        Error::NoQuorum {
            needed,
            masters,
            failures,
            ..
        }
        | Error::Connect {
            needed,
            masters,
            failures,
        } => {
            format!("cannot reach a quorum ({needed} of {masters} masters): {failures}")
        }
        other => other.to_string(),
    }
}

/// Exit 75 with who holds the lock, or 69 when masters could not be reached.
async fn not_acquired(locks: &Redlock, key: &str, e: Error) -> Failure {
    let down = matches!(&e, Error::NoQuorum { failures, .. }
        if failures.0.iter().any(|f| matches!(f.cause, Cause::Failed(_) | Cause::Unverified { .. })));
    if down || matches!(e, Error::WrongType { .. } | Error::Closed) {
        return Failure::new(exit::UNAVAILABLE, unreachable(&e));
    }
    let holders: Vec<String> = match locks.inspect(key).await {
        Ok(seen) => seen
            .into_iter()
            .filter_map(|(_, r)| r.ok()?.holder)
            .map(|h| {
                if h.meta.is_empty() {
                    "an unnamed holder".to_owned()
                } else {
                    h.meta
                }
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut by = holders.clone();
    by.sort();
    by.dedup();
    let message = if by.is_empty() {
        format!("lock {key:?} not acquired: {e}")
    } else {
        format!("lock {key:?} not acquired: held by {} ({e})", by.join(", "))
    };
    Failure::new(exit::NOT_ACQUIRED, message)
}

/// Waits for the child, passing SIGINT, SIGTERM and SIGHUP sent to the tool on to its group.
async fn wait_forwarding(
    child: &mut Child,
    group: Pid,
) -> std::io::Result<std::process::ExitStatus> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        let sig = tokio::select! {
            status = child.wait() => return status,
            _ = int.recv() => Signal::SIGINT,
            _ = term.recv() => Signal::SIGTERM,
            _ = hup.recv() => Signal::SIGHUP,
        };
        let _ = killpg(group, sig);
    }
}

/// SIGTERM to the group, SIGKILL after `grace`, and reap the child.
async fn stop(child: &mut Child, group: Pid, grace: Duration) {
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Whatever else is left in the group (a grandchild that ignored SIGTERM) goes too.
    let _ = killpg(group, Signal::SIGKILL);
}
