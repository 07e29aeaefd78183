//! The coordinator: starts the masters (and a proxy per client and master, and the fenced
//! register), starts the client processes, injects faults from a seeded schedule
//! ([`schedule`](crate::schedule)) into the [`World`], stops everything, then checks the
//! history and prints the [`Report`].

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redlock_chaos::checker::{self, Violation};
use redlock_chaos::history::{RegisterEntry, Section, now_us};
use redlock_chaos::{register, svg};
use redlock_testkit::{Persistence, Proxy, RedisServer, ServerOptions};

use crate::report::Report;
use crate::schedule::{INSIDE, choose_kind, inject, kinds};
use crate::world::{Undo, World, leaks, ripe, signal_client, stray_sections};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long, default_value_t = 5)]
    masters: usize,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The seed of the fault schedule and of the clients' choices [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// `all`, `inside` (only faults inside the assumptions of mutual exclusion), or a list of
    /// kinds: pause, partition, pause-majority, restart-all-empty, restart-aof, restart-empty,
    /// persistence-switch, ttls,
    /// clock, clock-outside, net, client-pause.
    #[arg(long, default_value = "all")]
    faults: String,
    /// `lib` (clients use the library) or `cli` (clients run `redlock exec`).
    #[arg(long, default_value = "lib")]
    mode: String,
    /// Break the library on purpose (library mode): none, guard-off, plain-counter, own-ttl.
    #[arg(long, default_value = "none")]
    broken: String,
    #[arg(long, default_value_t = 3)]
    resources: usize,
    /// The `redlock` binary, for the tool mode.
    #[arg(long)]
    redlock: Option<PathBuf>,
    /// Where the history, the table and the timeline go.
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
    /// Succeed only if this check (`fencing` or `mutual exclusion`) finds a violation: how the
    /// tests show that a broken build is caught. The run then stops as soon as the histories
    /// show one, and `--duration` is the longest it may take.
    #[arg(long)]
    expect_violation: Option<String>,
}

/// The check that `--expect-violation` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Fencing,
    MutualExclusion,
}

impl Expect {
    fn parse(check: &str) -> Result<Self, String> {
        match check {
            "fencing" => Ok(Self::Fencing),
            "mutual exclusion" => Ok(Self::MutualExclusion),
            other => Err(format!("unknown check {other:?}")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Fencing => "fencing",
            Self::MutualExclusion => "mutual exclusion",
        }
    }

    /// Whether this check finds a violation in `sections` and the register's `log`.
    fn found(self, sections: &[Section], log: &[RegisterEntry]) -> bool {
        match self {
            Self::Fencing => {
                !checker::fencing(sections).is_empty() || !checker::register(log).is_empty()
            }
            Self::MutualExclusion => !checker::overlaps(sections).is_empty(),
        }
    }
}

/// The ttls of the clients when `ttls` is on (in turn), else the one ttl. The longest sets
/// the restart delay, for which a restarted master counts as faulty.
const TTLS_MS: [u64; 3] = [1_000, 4_000, 10_000];
const ONE_TTL_MS: u64 = 4_000;

pub(crate) fn run(a: Args) -> ExitCode {
    match campaign(&a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chaos: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the fault loop saw: the faults injected per kind, and the spans (µs) when more than
/// a minority of masters was faulty.
struct Drive {
    injected: BTreeMap<String, usize>,
    unhealthy: Vec<(u64, u64)>,
    start_us: u64,
    end_us: u64,
    /// When the expected violation was first seen (µs), if the run stopped for it.
    found_us: Option<u64>,
}

fn campaign(a: &Args) -> Result<ExitCode, String> {
    let seed = a.seed.unwrap_or_else(now_us);
    let enabled = kinds(&a.faults)?;
    let expect = a
        .expect_violation
        .as_deref()
        .map(Expect::parse)
        .transpose()?;
    let on = |k: &str| enabled.contains(&k);
    if a.masters == 0 || a.clients == 0 || a.resources == 0 {
        return Err("masters, clients and resources must be at least 1".into());
    }
    if a.mode == "cli" && a.redlock.is_none() {
        return Err("the tool mode needs --redlock PATH".into());
    }
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let ttls: Vec<u64> = (0..a.clients)
        .map(|c| {
            if on("ttls") {
                TTLS_MS[c % TTLS_MS.len()]
            } else {
                ONE_TTL_MS
            }
        })
        .collect();
    eprintln!(
        "chaos: seed {seed}: {} masters, {} clients ({} mode), {:?}, faults {}",
        a.masters,
        a.clients,
        a.mode,
        a.duration,
        enabled.join(",")
    );
    let io = |e: std::io::Error| e.to_string();
    let register_server = RedisServer::start().map_err(io)?;
    let mut w = start(a, seed, &ttls, &enabled, register_server.port())?;
    // `ttls` is a setting of the clients, not an event.
    let scheduled: Vec<&'static str> = enabled.iter().copied().filter(|&k| k != "ttls").collect();
    let watch = expect.map(|check| (check, register_server.port()));
    let drive = drive(a, &mut w, seed, &scheduled, &ttls, watch);
    let (failed_clients, mut left_behind) = stop_clients(&mut w.clients);
    left_behind += stray_sections(register_server.port());
    let panics = (0..a.clients)
        .filter_map(|c| std::fs::read_to_string(a.out.join(format!("c{c}.stderr"))).ok())
        .filter(|t| t.contains("panicked"))
        .count();
    let sections = read_history(a, false)?;
    let log = register::log(register_server.port()).map_err(io)?;
    let (leaked, restored) = leaks(&w);

    let Drive {
        injected,
        unhealthy,
        start_us,
        end_us,
        found_us,
    } = drive;
    let fencing = checker::fencing(&sections);
    let reg = checker::register(&log);
    let overlaps = checker::overlaps(&sections);
    let inside_only = enabled.iter().all(|k| INSIDE.contains(k));
    let mut violations: Vec<Violation> = fencing.iter().chain(&reg).cloned().collect();
    if inside_only {
        violations.extend(overlaps.iter().cloned());
    }
    let accepted = log.iter().filter(|e| e.accepted).count();
    let missing: Vec<&'static str> = scheduled
        .iter()
        .copied()
        .filter(|k| !injected.contains_key(*k))
        .collect();
    let report = Report {
        seed,
        mode: a.mode.clone(),
        broken: a.broken.clone(),
        masters: a.masters,
        ttls,
        secs: (end_us - start_us) as f64 / 1e6,
        injected,
        missing: missing.clone(),
        sections: sections.len(),
        accepted,
        rejected: log.len() - accepted,
        fencing_violations: fencing.len() + reg.len(),
        overlaps: overlaps.len(),
        inside_only,
        leaked,
        restored,
        left_behind,
        panics,
        failed_clients,
        gap: checker::longest_gap(&sections, start_us, end_us),
        healthy_gap: checker::longest_healthy_gap(&sections, start_us, end_us, &unhealthy),
        no_quorum: unhealthy
            .iter()
            .map(|&(from, to)| to.min(end_us).saturating_sub(from))
            .sum(),
    };
    let table = report.table();
    print!("{table}");
    for v in violations.iter().take(10) {
        println!("violation ({}): {}", v.check, v.what);
    }
    let _ = std::fs::write(a.out.join("table.md"), &table);
    let _ = std::fs::write(
        a.out.join("faults.json"),
        serde_json::to_string(&w.faults).unwrap_or_default(),
    );
    let marked: Vec<Violation> = fencing.iter().chain(&overlaps).cloned().collect();
    let picture = svg::timeline(
        &sections,
        &w.faults,
        &marked,
        a.masters,
        a.clients,
        (start_us, end_us),
    );
    let _ = std::fs::write(a.out.join("timeline.svg"), picture);
    println!("timeline: {}", a.out.join("timeline.svg").display());

    if let Some(check) = expect {
        let found = check.found(&sections, &log);
        let when = found_us.map_or(String::new(), |t| {
            format!(
                " ({:.1} s into the run)",
                t.saturating_sub(start_us) as f64 / 1e6
            )
        });
        println!(
            "expected a {} violation: {}{when}",
            check.name(),
            if found { "found" } else { "NOT found" }
        );
        return Ok(if found {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if !missing.is_empty() {
        println!(
            "not tested: the fault kinds {} were never injected (run longer)",
            missing.join(",")
        );
    }
    let healthy = violations.is_empty()
        && missing.is_empty()
        && leaked == 0
        && left_behind == 0
        && panics == 0
        && failed_clients == 0
        && !sections.is_empty();
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Starts the masters (and the proxies, with `net`) and the client processes.
fn start(
    a: &Args,
    seed: u64,
    ttls: &[u64],
    enabled: &[&str],
    register: u16,
) -> Result<World, String> {
    let on = |k: &str| enabled.contains(&k);
    let options = ServerOptions {
        persistence: Persistence::AofAlways,
        fake_clock: on("clock") || on("clock-outside"),
        ..Default::default()
    };
    let io = |e: std::io::Error| e.to_string();
    let masters: Vec<RedisServer> = (0..a.masters)
        .map(|_| RedisServer::start_with(options))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    for m in &masters {
        m.vouch().map_err(io)?;
    }
    let proxies: Vec<Vec<Proxy>> = if on("net") || on("partition") {
        (0..a.clients)
            .map(|_| masters.iter().map(|m| Proxy::start(m.port())).collect())
            .collect::<Result<_, _>>()
            .map_err(io)?
    } else {
        Vec::new()
    };
    let me = std::env::current_exe().map_err(io)?;
    let resources: Vec<String> = (0..a.resources).map(|r| format!("r{r}")).collect();
    let states: Vec<PathBuf> = (0..a.clients)
        .map(|c| a.out.join(format!("c{c}.state")))
        .collect();
    let mut clients = Vec::new();
    for c in 0..a.clients {
        let history = a.out.join(format!("c{c}.jsonl"));
        let _ = std::fs::remove_file(&history);
        let nodes: Vec<String> = if !proxies.is_empty() {
            proxies[c].iter().map(Proxy::url).collect()
        } else {
            masters.iter().map(RedisServer::url).collect()
        };
        let mut cmd = Command::new(&me);
        cmd.arg("client")
            .args(["--id", &c.to_string()])
            .args(["--nodes", &nodes.join(",")])
            .args(["--ttl-ms", &ttls[c].to_string()])
            .args(["--resources", &resources.join(",")])
            .args(["--register", &register.to_string()])
            .arg("--out")
            .arg(history)
            .args([
                "--seed",
                &(seed ^ ((c as u64 + 1) * 0x9E37_79B9)).to_string(),
            ])
            .args(["--broken", &a.broken])
            .args(["--mode", &a.mode])
            .arg("--state")
            .arg(&states[c])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(a.out.join(format!("c{c}.stderr"))).map_err(io)?)
            .process_group(0);
        if let Some(tool) = &a.redlock {
            cmd.arg("--redlock").arg(tool);
        }
        clients.push(cmd.spawn().map_err(io)?);
    }
    let n = a.masters;
    let longest_ttl = ttls.iter().copied().max().unwrap_or(ONE_TTL_MS);
    Ok(World {
        stopped: vec![false; n],
        masters,
        persistence: vec![Persistence::AofAlways; n],
        busy_until: vec![Instant::now(); n],
        proxies,
        clients,
        faults: Vec::new(),
        active: Vec::new(),
        aof_restarts: vec![false; n],
        // With the guard off, a restarted master votes as soon as it is up.
        restart_wait: if a.broken == "guard-off" {
            Duration::ZERO
        } else {
            Duration::from_millis(longest_ttl) + Duration::from_secs(1)
        },
        last_mass_restart: None,
        last_episode: None,
        episodes: on("partition"),
        longest_ttl,
        states,
        in_section: vec![None; a.clients],
        read_at: Instant::now(),
        spare: Vec::new(),
        spare_until: Instant::now(),
    })
}

/// How often a run that expects a violation reads the histories to look for it.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Injects faults for the campaign's duration, or until the histories show the violation that
/// `watch` (the check, the register's port) expects; then ends every fault and lets the clients
/// finish their sections.
fn drive(
    a: &Args,
    w: &mut World,
    seed: u64,
    scheduled: &[&'static str],
    ttls: &[u64],
    watch: Option<(Expect, u16)>,
) -> Drive {
    let mut rng = StdRng::seed_from_u64(seed);
    let minority = (a.masters - 1) / 2;
    let start_us = now_us();
    let start = Instant::now();
    let mut next = start + Duration::from_millis(500);
    let mut injected: BTreeMap<String, usize> = BTreeMap::new();
    // When more than a minority of masters was faulty: no quorum to count on then.
    let mut unhealthy: Vec<(u64, u64)> = Vec::new();
    let mut unhealthy_since: Option<u64> = None;
    let mut found_us = None;
    let mut looked = start;
    while start.elapsed() < a.duration {
        let now = Instant::now();
        if let Some((check, register)) = watch
            && now.duration_since(looked) >= LOOK_EVERY
        {
            looked = now;
            let log = register::log(register).unwrap_or_default();
            if read_history(a, true).is_ok_and(|s| check.found(&s, &log)) {
                found_us = Some(now_us());
                break;
            }
        }
        match (w.faulty(now) > minority, unhealthy_since) {
            (true, None) => unhealthy_since = Some(now_us()),
            (false, Some(since)) => {
                unhealthy.push((since, now_us()));
                unhealthy_since = None;
            }
            _ => {}
        }
        if w.active
            .iter()
            .any(|x| matches!(x.undo, Undo::HealThenEmpty { .. }))
        {
            w.read_sections();
        }
        for x in std::mem::take(&mut w.active) {
            if let Some(section_end) = ripe(w, &x) {
                w.end_ripe(x, section_end);
            } else if x.until <= now {
                w.end(x);
            } else {
                w.active.push(x);
            }
        }
        if now >= next && !scheduled.is_empty() {
            next = now + Duration::from_millis(rng.random_range(200..1200));
            let kind = choose_kind(scheduled, &injected, &mut rng);
            if inject(w, &mut rng, kind, minority, ttls) {
                *injected.entry(kind.to_owned()).or_default() += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Every fault ends; the clients finish their sections and close.
    for x in std::mem::take(&mut w.active) {
        w.end(x);
    }
    std::thread::sleep(Duration::from_secs(1));
    let end_us = now_us();
    if let Some(since) = unhealthy_since {
        // Restarted masters may still be waiting out their restart delay.
        let until = w
            .busy_until
            .iter()
            .max()
            .copied()
            .unwrap_or_else(Instant::now);
        let left = until.saturating_duration_since(Instant::now());
        unhealthy.push((since, end_us + left.as_micros() as u64));
    }
    Drive {
        injected,
        unhealthy,
        start_us,
        end_us,
        found_us,
    }
}

/// Stops the clients (SIGTERM: each ends after its section) and waits up to a minute for them;
/// returns how many failed and how many had to be killed.
fn stop_clients(clients: &mut [Child]) -> (usize, usize) {
    for c in clients.iter() {
        let _ = signal_client(c, Signal::SIGCONT);
        let _ = signal_client(c, Signal::SIGTERM);
    }
    let mut failed = 0;
    let mut left_behind = 0;
    let bound = Instant::now() + Duration::from_secs(60);
    for c in clients {
        loop {
            match c.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        failed += 1;
                    }
                    break;
                }
                Ok(None) if Instant::now() < bound => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    left_behind += 1;
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
            }
        }
    }
    (failed, left_behind)
}

/// Every client's sections, from their history files. `live`: the clients still run (see
/// [`Section::parse_history`]).
fn read_history(a: &Args, live: bool) -> Result<Vec<Section>, String> {
    let mut sections: Vec<Section> = Vec::new();
    for c in 0..a.clients {
        let text = std::fs::read_to_string(a.out.join(format!("c{c}.jsonl"))).unwrap_or_default();
        sections.extend(Section::parse_history(&text, live).map_err(|e| format!("c{c}: {e}"))?);
    }
    Ok(sections)
}
