//! `redlock exec`: run a command under the lock.
//!
//! Every way out goes through [`run`]'s last step, `close()`, so that the releases still in
//! flight (of a failed or interrupted attempt, or the minority of our own release) are answered
//! before the process exits: none of our keys stays on the masters. The command itself is
//! started and watched by [`child`].

use std::io::IsTerminal;
use std::process::ExitCode;

use redlock::{Error, Guard, Redlock};

use crate::args::ExecArgs;
use crate::child::{self, Signals};
use crate::exit::{self, Failure};

pub(crate) async fn run(a: ExecArgs) -> Result<ExitCode, Failure> {
    let meta = a.meta.clone().unwrap_or_else(default_meta);
    let builder = a.builder(&meta)?;
    let mut signals =
        Signals::install().map_err(|e| Failure::software(format!("cannot handle signals: {e}")))?;
    let locks = tokio::select! {
        sig = signals.recv() => return Ok(exit::signalled(sig)),
        r = builder.connect() => r.map_err(|e| Failure::of(&e, a.conflict_exit_code))?,
    };
    let outcome = locked(&locks, &a, &meta, &mut signals).await;
    locks.close().await;
    outcome
}

/// Acquires, runs the command, releases.
async fn locked(
    locks: &Redlock,
    a: &ExecArgs,
    meta: &str,
    signals: &mut Signals,
) -> Result<ExitCode, Failure> {
    let key = &a.target.key;
    let guard = tokio::select! {
        // The attempt is dropped: what it took is released in the background, and `close()`
        // in `run` waits for that.
        sig = signals.recv() => {
            eprintln!("redlock: {sig} while waiting for lock {key:?}: nothing was run");
            return Ok(exit::signalled(sig));
        }
        r = take(locks, a, meta) => match r {
            Ok(guard) => guard,
            Err(e) => return Err(not_acquired(locks, key, &e, a.conflict_exit_code).await),
        },
    };

    let program = &a.command[0];
    let env = [
        ("REDLOCK_KEY", key.clone()),
        ("REDLOCK_FENCE", guard.fence().to_string()),
        (
            "REDLOCK_VALIDITY_MS",
            guard.validity().as_millis().to_string(),
        ),
    ];
    let mut running = match child::spawn(program, &a.command[1..], &env, a.grace) {
        Ok(running) => running,
        Err(e) => {
            // Nothing ran under the lock: give it back at once rather than hold it a ttl.
            let _ = guard.release().await;
            return Err(Failure::new(
                exit::CANNOT_RUN,
                format!("cannot run {program}: {e}"),
            ));
        }
    };
    let outcome = guard
        .keep_extended(running.wait_forwarding(signals), a.ttl)
        .await;
    let status = match outcome {
        Some(Ok(status)) => status,
        Some(Err(e)) => {
            running.stop(a.grace).await;
            running.finish();
            let _ = guard.release().await;
            return Err(Failure::software(format!("waiting for {program}: {e}")));
        }
        None => {
            let capped = if a.max_hold.is_some() || a.max_extensions.is_some() {
                " (or --max-hold/--max-extensions was reached)"
            } else {
                ""
            };
            eprintln!("redlock: lock {key:?} lost{capped} while {program} ran; stopping it");
            running.stop(a.grace).await;
            running.finish();
            let _ = guard.release().await;
            return Ok(ExitCode::from(exit::LOST));
        }
    };
    running.finish();
    if let Err(e) = guard.release().await {
        eprintln!("redlock: releasing {key:?}: {e}");
    }
    Ok(exit::of_child(status))
}

/// Takes the lock, waiting up to `--wait`. On a terminal, a wait for a held lock is announced
/// on one line first, naming the holder.
async fn take(locks: &Redlock, a: &ExecArgs, meta: &str) -> redlock::Result<Guard> {
    let key = &a.target.key;
    if a.wait.is_zero() || !std::io::stderr().is_terminal() {
        return locks.acquire(key).await;
    }
    match locks.try_acquire(key).await {
        Ok(Some(guard)) => return Ok(guard),
        Ok(None) => {
            // Our own try may still hold a minority: its release is in flight.
            let by = holders(locks, key, Some(meta)).await;
            let by = if by.is_empty() {
                "someone else".to_owned()
            } else {
                by.join(", ")
            };
            eprintln!(
                "redlock: lock {key:?} is held by {by}; waiting for it up to {}",
                humantime::format_duration(a.wait)
            );
        }
        Err(e) if e.is_transient() => {}
        Err(e) => return Err(e),
    }
    locks.acquire(key).await
}

/// The failure for a lock not acquired; a held one names its holders.
async fn not_acquired(locks: &Redlock, key: &str, e: &Error, conflict: u8) -> Failure {
    let Error::Held {
        refused, masters, ..
    } = e
    else {
        return Failure::of(e, conflict);
    };
    // Our own releases are answered first, so that the holders named are others.
    locks.close().await;
    let by = holders(locks, key, None).await;
    if by.is_empty() {
        return Failure::of(e, conflict);
    }
    Failure::new(
        conflict,
        format!(
            "lock {key:?} is held by {} ({refused} of {masters} masters refused)",
            by.join(", ")
        ),
    )
}

/// The holders the masters show for `key`, each once, without `exclude`.
async fn holders(locks: &Redlock, key: &str, exclude: Option<&str>) -> Vec<String> {
    let Ok(seen) = locks.inspect(key).await else {
        return Vec::new();
    };
    let mut by: Vec<String> = seen
        .into_iter()
        .filter_map(|(_, r)| r.ok()?.holder)
        .map(|h| h.meta)
        .filter(|m| Some(m.as_str()) != exclude)
        .map(|m| {
            if m.is_empty() {
                "an unnamed holder".to_owned()
            } else {
                m
            }
        })
        .collect();
    by.sort();
    by.dedup();
    by
}

/// `hostname:pid`, shown by `status` as the holder.
fn default_meta() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host}:{}", std::process::id())
}
