//! A client process of the campaign: takes locks on the resources in turn, writes twice to the
//! fenced register in each critical section, and appends each section to its history file.
//! In the library mode it uses `Redlock` itself; in the tool mode it runs `redlock exec` with
//! `redlock-chaos section` as the command. It stops after the section it is in when it gets
//! SIGTERM.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redlock::{Redlock, Retry};
use redlock_chaos::history::{Running, Section, WriteAttempt, now_us};
use redlock_chaos::register;
use redlock_single::broken::{self, Break};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long)]
    id: u32,
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<String>,
    #[arg(long)]
    ttl_ms: u64,
    #[arg(long, value_delimiter = ',')]
    resources: Vec<String>,
    /// The fenced register's port.
    #[arg(long)]
    register: u16,
    /// The history file.
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    seed: u64,
    /// `none`, `guard-off`, `plain-counter` or `own-ttl`.
    #[arg(long, default_value = "none")]
    broken: String,
    /// `lib` or `cli`.
    #[arg(long, default_value = "lib")]
    mode: String,
    /// The `redlock` binary, in the tool mode.
    #[arg(long)]
    redlock: Option<PathBuf>,
    /// A file that reads `1` while a section runs, so that the campaign can pause a client
    /// inside one.
    #[arg(long)]
    state: PathBuf,
}

/// Marks in the state file whether a section runs now, for how long it is planned.
fn in_section(state: &std::path::Path, now: Option<(u64, Duration)>) {
    let running = now.map(|(ttl_ms, hold)| {
        let start = now_us();
        let end = start + u64::try_from(hold.as_micros()).unwrap_or(u64::MAX);
        Running { ttl_ms, start, end }
    });
    Running::write(state, running);
}

/// The longest a section usually lasts; one in four lasts half to three quarters of the ttl
/// (long enough for faults to land inside it, and for an episode to end on one of the longest
/// ttl, and within the validity).
const SHORT_HOLD_MS: u64 = 30;

fn hold(rng: &mut StdRng, ttl_ms: u64) -> Duration {
    let ms = if rng.random_bool(0.25) {
        rng.random_range(ttl_ms / 2..=ttl_ms * 3 / 4)
    } else {
        rng.random_range(0..=SHORT_HOLD_MS)
    };
    Duration::from_millis(ms)
}

pub(crate) fn run(a: Args) -> ExitCode {
    match a.broken.as_str() {
        "plain-counter" => broken::enable(Break::PlainCounter),
        "own-ttl" => broken::enable(Break::OwnTtlOnly),
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("c{}: no runtime: {e}", a.id);
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        if a.mode == "cli" {
            tool_loop(&a).await
        } else {
            lib_loop(&a).await
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("c{}: {e}", a.id);
            ExitCode::FAILURE
        }
    }
}

fn history(a: &Args) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.out)
        .map_err(|e| format!("{}: {e}", a.out.display()))
}

fn append(file: &mut File, s: &Section) -> Result<(), String> {
    let line = serde_json::to_string(s).map_err(|e| e.to_string())?;
    writeln!(file, "{line}").map_err(|e| e.to_string())
}

fn write(port: u16, resource: &str, token: u64) -> WriteAttempt {
    let accepted = register::write(port, resource, token).unwrap_or(false);
    WriteAttempt {
        at: now_us(),
        accepted,
    }
}

async fn lib_loop(a: &Args) -> Result<(), String> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut rng = StdRng::seed_from_u64(a.seed);
    let mut file = history(a)?;
    let locks = Redlock::builder()
        .nodes(a.nodes.clone())
        .ttl(Duration::from_millis(a.ttl_ms))
        .timeout(Duration::from_millis(100))
        .connect_timeout(Duration::from_secs(10))
        .retry(
            Retry::exponential(Duration::from_millis(5), Duration::from_millis(100))
                .deadline(Duration::from_secs(2)),
        )
        .meta(format!("c{}", a.id))
        .restart_guard(a.broken != "guard-off")
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let resource = &a.resources[rng.random_range(0..a.resources.len())];
        let acquire_start = now_us();
        let guard = tokio::select! {
            r = locks.acquire(resource) => r,
            _ = term.recv() => break,
        };
        let Ok(guard) = guard else { continue };
        let acquire_end = now_us();
        let validity_end =
            acquire_end + u64::try_from(guard.validity().as_micros()).unwrap_or(u64::MAX);
        let token = guard.fence();
        let held = hold(&mut rng, a.ttl_ms);
        in_section(&a.state, Some((a.ttl_ms, held)));
        let mut writes = vec![write(a.register, resource, token)];
        tokio::time::sleep(held).await;
        writes.push(write(a.register, resource, token));
        let section_end = now_us();
        in_section(&a.state, None);
        let released = guard.release().await.is_ok();
        append(
            &mut file,
            &Section {
                client: a.id,
                ttl_ms: a.ttl_ms,
                resource: resource.clone(),
                token,
                acquire_start,
                acquire_end,
                validity_end,
                section_end,
                released: Some(released),
                exit: None,
                writes,
            },
        )?;
        if term_arrived(&mut term) {
            break;
        }
    }
    locks.close().await;
    Ok(())
}

/// Whether SIGTERM has arrived, without waiting.
fn term_arrived(term: &mut tokio::signal::unix::Signal) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    term.poll_recv(&mut cx).is_ready()
}

async fn tool_loop(a: &Args) -> Result<(), String> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut rng = StdRng::seed_from_u64(a.seed);
    let mut file = history(a)?;
    let tool = a
        .redlock
        .clone()
        .ok_or("--redlock is needed in the tool mode")?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let record = a.out.with_extension("section");
    let nodes = a.nodes.join(",");
    let ttl = format!("{}ms", a.ttl_ms);
    loop {
        let resource = &a.resources[rng.random_range(0..a.resources.len())];
        let acquire_start = now_us();
        let _ = std::fs::remove_file(&record);
        let mut exec = tokio::process::Command::new(&tool);
        exec.args([
            "exec",
            "--nodes",
            &nodes,
            "--key",
            resource,
            "--ttl",
            &ttl,
            "--wait",
            "2s",
            "--timeout",
            "100ms",
            "--grace",
            "1s",
            "--meta",
            &format!("c{}", a.id),
            "--",
        ])
        .arg(&me)
        .args([
            "section",
            "--register",
            &a.register.to_string(),
            "--resource",
            resource,
            "--client",
            &a.id.to_string(),
            "--ttl-ms",
            &a.ttl_ms.to_string(),
            "--hold-ms",
            &hold(&mut rng, a.ttl_ms).as_millis().to_string(),
            "--acquire-start",
            &acquire_start.to_string(),
        ])
        .arg("--record")
        .arg(&record)
        .arg("--state")
        .arg(&a.state)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        let status = exec.status().await.map_err(|e| e.to_string())?;
        if let Ok(text) = std::fs::read_to_string(&record) {
            if let Ok(mut s) = serde_json::from_str::<Section>(&text) {
                s.exit = status.code();
                append(&mut file, &s)?;
            }
        }
        if term_arrived(&mut term) {
            break;
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct SectionArgs {
    #[arg(long)]
    register: u16,
    #[arg(long)]
    resource: String,
    #[arg(long)]
    client: u32,
    #[arg(long)]
    ttl_ms: u64,
    #[arg(long)]
    hold_ms: u64,
    #[arg(long)]
    acquire_start: u64,
    #[arg(long)]
    record: PathBuf,
    #[arg(long)]
    state: PathBuf,
}

/// The command under `redlock exec`: two writes with `REDLOCK_FENCE` around a hold, and the
/// section's record. Its validity runs from its own start: later than the lock's, so a window
/// a little longer than the lock's own.
pub(crate) fn section(a: SectionArgs) -> ExitCode {
    let acquire_end = now_us();
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let (Some(token), Some(validity_ms)) = (number("REDLOCK_FENCE"), number("REDLOCK_VALIDITY_MS"))
    else {
        eprintln!("section: REDLOCK_FENCE and REDLOCK_VALIDITY_MS must be set");
        return ExitCode::FAILURE;
    };
    in_section(&a.state, Some((a.ttl_ms, Duration::from_millis(a.hold_ms))));
    let mut writes = vec![write(a.register, &a.resource, token)];
    std::thread::sleep(Duration::from_millis(a.hold_ms));
    writes.push(write(a.register, &a.resource, token));
    in_section(&a.state, None);
    let s = Section {
        client: a.client,
        ttl_ms: a.ttl_ms,
        resource: a.resource,
        token,
        acquire_start: a.acquire_start,
        acquire_end,
        validity_end: acquire_end + validity_ms * 1000,
        section_end: now_us(),
        released: None,
        exit: None,
        writes,
    };
    match serde_json::to_string(&s).map(|line| std::fs::write(&a.record, line)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
