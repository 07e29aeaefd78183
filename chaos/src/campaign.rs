//! The coordinator: starts the masters (and a proxy per client and master, and the fenced
//! register), starts the client processes, injects faults from a seeded schedule, stops
//! everything, then checks the history and prints the table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redlock_chaos::checker::{self, Violation};
use redlock_chaos::history::{Fault, Section, now_us};
use redlock_chaos::{register, svg};
use redlock_testkit::{Persistence, Proxy, ProxyFaults, RedisServer, ServerOptions};

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
    /// kinds: pause, pause-majority, restart-all-empty, restart-aof, restart-empty, persistence-switch, ttls,
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
    /// tests show that a broken build is caught.
    #[arg(long)]
    expect_violation: Option<String>,
}

const INSIDE: &[&str] = &[
    "pause",
    "restart-aof",
    "restart-empty",
    "persistence-switch",
    "ttls",
    "clock",
    "net",
];
const OUTSIDE: &[&str] = &[
    "pause-majority",
    "restart-all-empty",
    "clock-outside",
    "client-pause",
];

/// The ttls of the clients when `ttls` is on (in turn), else the one ttl. The longest sets
/// the restart delay, for which a restarted master counts as faulty.
const TTLS_MS: [u64; 3] = [1_000, 4_000, 10_000];
const ONE_TTL_MS: u64 = 4_000;

/// A fault in progress and what ends it.
#[derive(Debug)]
struct Active {
    /// The recorded spans it ends (one per master it hits).
    faults: Vec<usize>,
    until: Instant,
    undo: Undo,
}

/// Whether an episode may end now: a client of the longest ttl is in a section that began
/// during the pause (so its lock is on a bare quorum) and will last 5 s more, long
/// enough for another client to try the lock once the restarted master may vote.
fn ripe(w: &World, x: &Active) -> bool {
    if !matches!(x.undo, Undo::ResumeThenEmpty(..)) {
        return false;
    }
    let began = x.faults.first().map_or(0, |&f| w.faults[f].start);
    let later = now_us() + 5_000_000;
    w.in_section
        .iter()
        .flatten()
        .any(|&(ttl, start, end)| ttl == w.longest_ttl && start > began && end > later)
}

#[derive(Debug)]
enum Undo {
    Resume(Vec<usize>),
    /// Resume the paused masters, then restart another empty: a lock taken on a bare quorum
    /// while they were paused loses one of its masters.
    ResumeThenEmpty(Vec<usize>, usize),
    Start(usize, Persistence),
    Clock(usize),
    Net(usize, usize),
    Client(usize),
}

struct World {
    masters: Vec<RedisServer>,
    /// Whether each master is down or paused now (no other fault can hit it then).
    stopped: Vec<bool>,
    persistence: Vec<Persistence>,
    /// Until when each master counts as faulty: down, paused, cut off, or not yet voting after
    /// a restart.
    busy_until: Vec<Instant>,
    proxies: Vec<Vec<Proxy>>,
    clients: Vec<Child>,
    faults: Vec<Fault>,
    active: Vec<Active>,
    aof_restarts: Vec<bool>,
    restart_wait: Duration,
    last_mass_restart: Option<Instant>,
    /// The longest ttl of the clients (ms).
    longest_ttl: u64,
    /// The section each client was in at the last reading of the state files, and when that was.
    in_section: Vec<Option<(u64, u64, u64)>>,
    read_at: Instant,
}

impl World {
    /// Reads the clients' state files again if the last reading is 100 ms old.
    fn read_sections(&mut self, a: &Args) {
        if self.read_at.elapsed() >= Duration::from_millis(100) {
            self.in_section = (0..self.clients.len()).map(|c| section_of(a, c)).collect();
            self.read_at = Instant::now();
        }
    }

    fn faulty(&self, now: Instant) -> usize {
        self.busy_until.iter().filter(|&&b| b > now).count()
    }

    /// The masters a fault may hit now: running, and either counted faulty already or with
    /// room for one more faulty master within `minority`.
    fn targets(&self, now: Instant, minority: usize) -> Vec<usize> {
        let room = self.faulty(now) < minority;
        (0..self.masters.len())
            .filter(|&m| !self.stopped[m] && (room || self.busy_until[m] > now))
            .collect()
    }

    /// Marks `m` faulty until at least `until`.
    fn busy(&mut self, m: usize, until: Instant) {
        self.busy_until[m] = self.busy_until[m].max(until);
    }

    fn record(&mut self, kind: &str, target: String, inside: bool) -> usize {
        let t = now_us();
        self.faults.push(Fault {
            kind: kind.to_owned(),
            target,
            start: t,
            end: t,
            inside,
        });
        self.faults.len() - 1
    }

    fn end(&mut self, a: Active) {
        let t = now_us();
        for &f in &a.faults {
            self.faults[f].end = t;
        }
        match a.undo {
            Undo::Resume(ms) => {
                for m in ms {
                    let _ = self.masters[m].resume();
                    self.stopped[m] = false;
                }
            }
            Undo::ResumeThenEmpty(paused, other) => {
                for m in paused {
                    let _ = self.masters[m].resume();
                    self.stopped[m] = false;
                }
                if !self.stopped[other] {
                    self.kill(other, Persistence::None, "restart-empty", true);
                }
            }
            Undo::Start(m, p) => {
                if let Err(e) = self.masters[m].restart_with(p) {
                    eprintln!("chaos: restarting m{m}: {e}");
                }
                self.persistence[m] = p;
                self.stopped[m] = false;
                if p == Persistence::AofAlways {
                    self.aof_restarts[m] = true;
                }
                self.busy(m, Instant::now() + self.restart_wait);
            }
            Undo::Clock(m) => {
                if let Some(c) = self.masters[m].clock() {
                    let _ = c.set_rate(1.0);
                }
            }
            Undo::Net(c, m) => {
                self.proxies[c][m].set_faults(ProxyFaults::default());
            }
            Undo::Client(c) => {
                let _ = signal_client(&self.clients[c], Signal::SIGCONT);
            }
        }
    }

    /// Pauses `masters` for `d`, records a span for each, and schedules `undo` at the end
    /// (which resumes them).
    fn pause_set(&mut self, masters: &[usize], d: Duration, kind: &str, inside: bool, undo: Undo) {
        let now = Instant::now();
        let mut faults = Vec::new();
        for &m in masters {
            let _ = self.masters[m].pause();
            self.stopped[m] = true;
            self.busy(m, now + d);
            faults.push(self.record(kind, format!("m{m}"), inside));
        }
        self.active.push(Active {
            faults,
            until: now + d,
            undo,
        });
    }

    /// Kills master `m` now and schedules its restart with `p` in a moment.
    fn kill(&mut self, m: usize, p: Persistence, kind: &str, inside: bool) {
        let f = self.record(kind, format!("m{m}"), inside);
        let _ = self.masters[m].kill();
        self.stopped[m] = true;
        let down = Duration::from_millis(100 + (now_us() % 900));
        self.busy(m, Instant::now() + down + self.restart_wait);
        self.active.push(Active {
            faults: vec![f],
            until: Instant::now() + down,
            undo: Undo::Start(m, p),
        });
    }
}

fn signal_client(c: &Child, s: Signal) -> nix::Result<()> {
    killpg(Pid::from_raw(i32::try_from(c.id()).unwrap_or(0)), s)
}

pub(crate) fn run(a: Args) -> ExitCode {
    match campaign(&a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chaos: {e}");
            ExitCode::FAILURE
        }
    }
}

fn kinds(spec: &str) -> Result<Vec<&'static str>, String> {
    let all: Vec<&'static str> = INSIDE.iter().chain(OUTSIDE).copied().collect();
    match spec {
        "all" => Ok(all),
        "inside" => Ok(INSIDE.to_vec()),
        "none" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(|k| {
                all.iter()
                    .find(|&&a| a == k.trim())
                    .copied()
                    .ok_or_else(|| format!("unknown fault kind {k:?}"))
            })
            .collect(),
    }
}

#[allow(clippy::too_many_lines)]
fn campaign(a: &Args) -> Result<ExitCode, String> {
    let seed = a.seed.unwrap_or_else(now_us);
    let enabled = kinds(&a.faults)?;
    let on = |k: &str| enabled.contains(&k);
    let inside_only = enabled.iter().all(|k| INSIDE.contains(k));
    if a.masters == 0 || a.clients == 0 || a.resources == 0 {
        return Err("masters, clients and resources must be at least 1".into());
    }
    if a.mode == "cli" && a.redlock.is_none() {
        return Err("the tool mode needs --redlock PATH".into());
    }
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let mut rng = StdRng::seed_from_u64(seed);
    let ttls: Vec<u64> = (0..a.clients)
        .map(|c| {
            if on("ttls") {
                TTLS_MS[c % TTLS_MS.len()]
            } else {
                ONE_TTL_MS
            }
        })
        .collect();
    let max_ttl = Duration::from_millis(ttls.iter().copied().max().unwrap_or(ONE_TTL_MS));
    eprintln!(
        "chaos: seed {seed}: {} masters, {} clients ({} mode), {:?}, faults {}",
        a.masters,
        a.clients,
        a.mode,
        a.duration,
        enabled.join(",")
    );

    let options = ServerOptions {
        persistence: Persistence::AofAlways,
        fake_clock: on("clock") || on("clock-outside"),
        ..Default::default()
    };
    let io = |e: std::io::Error| e.to_string();
    let register_server = RedisServer::start().map_err(io)?;
    let masters: Vec<RedisServer> = (0..a.masters)
        .map(|_| RedisServer::start_with(options))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    for m in &masters {
        m.vouch().map_err(io)?;
    }
    let proxies: Vec<Vec<Proxy>> = if on("net") {
        (0..a.clients)
            .map(|_| masters.iter().map(|m| Proxy::start(m.port())).collect())
            .collect::<Result<_, _>>()
            .map_err(io)?
    } else {
        Vec::new()
    };
    let me = std::env::current_exe().map_err(io)?;
    let resources: Vec<String> = (0..a.resources).map(|r| format!("r{r}")).collect();
    let history = |c: usize| a.out.join(format!("c{c}.jsonl"));
    let state = |c: usize| a.out.join(format!("c{c}.state"));
    let mut clients = Vec::new();
    for c in 0..a.clients {
        let _ = std::fs::remove_file(history(c));
        let nodes: Vec<String> = if on("net") {
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
            .args(["--register", &register_server.port().to_string()])
            .arg("--out")
            .arg(history(c))
            .args([
                "--seed",
                &(seed ^ ((c as u64 + 1) * 0x9E37_79B9)).to_string(),
            ])
            .args(["--broken", &a.broken])
            .args(["--mode", &a.mode])
            .arg("--state")
            .arg(state(c))
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
    let mut w = World {
        stopped: vec![false; masters.len()],
        masters,
        persistence: vec![Persistence::AofAlways; n],
        busy_until: vec![Instant::now(); n],
        proxies,
        clients,
        faults: Vec::new(),
        active: Vec::new(),
        aof_restarts: vec![false; n],
        restart_wait: max_ttl + Duration::from_secs(1),
        last_mass_restart: None,
        longest_ttl: ttls.iter().copied().max().unwrap_or(ONE_TTL_MS),
        in_section: vec![None; a.clients],
        read_at: Instant::now(),
    };
    let minority = (n - 1) / 2;
    let start_us = now_us();
    let start = Instant::now();
    let mut next = start + Duration::from_millis(500);
    let mut injected: BTreeMap<String, usize> = BTreeMap::new();
    // `ttls` is a setting of the clients, not an event.
    let scheduled: Vec<&'static str> = enabled.iter().copied().filter(|&k| k != "ttls").collect();
    // When more than a minority of masters was faulty: no quorum to count on then.
    let mut unhealthy: Vec<(u64, u64)> = Vec::new();
    let mut unhealthy_since: Option<u64> = None;
    while start.elapsed() < a.duration {
        let now = Instant::now();
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
            .any(|x| matches!(x.undo, Undo::ResumeThenEmpty(..)))
        {
            w.read_sections(a);
        }
        let (done, live): (Vec<Active>, Vec<Active>) = std::mem::take(&mut w.active)
            .into_iter()
            .partition(|x| x.until <= now || ripe(&w, x));
        w.active = live;
        for x in done {
            w.end(x);
        }
        if now >= next && !scheduled.is_empty() {
            next = now + Duration::from_millis(rng.random_range(200..1200));
            let kind = choose_kind(&scheduled, &injected, &mut rng);
            if inject(&mut w, &mut rng, kind, minority, &ttls, a) {
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
    for c in &w.clients {
        let _ = signal_client(c, Signal::SIGCONT);
        let _ = signal_client(c, Signal::SIGTERM);
    }
    let mut failed_clients = 0;
    let mut left_behind = 0;
    let bound = Instant::now() + Duration::from_secs(60);
    for c in &mut w.clients {
        loop {
            match c.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        failed_clients += 1;
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
    left_behind += stray_sections(register_server.port());
    let panics = (0..a.clients)
        .filter_map(|c| std::fs::read_to_string(a.out.join(format!("c{c}.stderr"))).ok())
        .filter(|t| t.contains("panicked"))
        .count();

    // The history.
    let mut sections: Vec<Section> = Vec::new();
    for c in 0..a.clients {
        let text = std::fs::read_to_string(history(c)).unwrap_or_default();
        for line in text.lines() {
            match serde_json::from_str::<Section>(line) {
                Ok(s) => sections.push(s),
                Err(e) => return Err(format!("c{c}: bad history line {line:?}: {e}")),
            }
        }
    }
    let log = register::log(register_server.port()).map_err(io)?;
    let (leaked, restored) = leaks(&w);

    let fencing = checker::fencing(&sections);
    let reg = checker::register(&log);
    let overlaps = checker::overlaps(&sections);
    let gap = checker::longest_gap(&sections, start_us, end_us);
    let healthy_gap = checker::longest_healthy_gap(&sections, start_us, end_us, &unhealthy);
    let no_quorum: u64 = unhealthy
        .iter()
        .map(|&(a, b)| b.min(end_us).saturating_sub(a))
        .sum();
    let accepted = log.iter().filter(|e| e.accepted).count();
    let mut violations: Vec<Violation> = fencing.iter().chain(&reg).cloned().collect();
    if inside_only {
        violations.extend(overlaps.iter().cloned());
    }
    let secs = (end_us - start_us) as f64 / 1e6;

    let mut table = String::new();
    let row = |t: &mut String, k: &str, v: String| {
        let _ = writeln!(t, "| {k:<38} | {v:>14} |");
    };
    let _ = writeln!(table, "| {:<38} | {:>14} |", "redlock chaos", "");
    let _ = writeln!(table, "|{}|{}|", "-".repeat(40), "-".repeat(16));
    row(&mut table, "seed", seed.to_string());
    row(&mut table, "mode", a.mode.clone());
    row(&mut table, "broken on purpose", a.broken.clone());
    row(&mut table, "masters", n.to_string());
    row(
        &mut table,
        "clients (ttls ms)",
        format!("{} ({})", a.clients, dedup(&ttls)),
    );
    row(&mut table, "duration", format!("{secs:.1} s"));
    for (k, v) in &injected {
        row(&mut table, &format!("faults: {k}"), v.to_string());
    }
    let missing: Vec<&str> = scheduled
        .iter()
        .copied()
        .filter(|k| !injected.contains_key(*k))
        .collect();
    row(
        &mut table,
        "fault kinds never injected",
        if missing.is_empty() {
            "none".to_owned()
        } else {
            missing.join(",")
        },
    );
    row(&mut table, "sections completed", sections.len().to_string());
    row(
        &mut table,
        "register writes accepted / rejected",
        format!("{accepted} / {}", log.len() - accepted),
    );
    row(
        &mut table,
        "fencing violations",
        (fencing.len() + reg.len()).to_string(),
    );
    row(
        &mut table,
        "overlaps under the assumptions",
        if inside_only {
            overlaps.len().to_string()
        } else {
            format!("n/a ({} seen)", overlaps.len())
        },
    );
    row(&mut table, "keys leaked", leaked.to_string());
    row(
        &mut table,
        "keys restored by AOF restarts",
        restored.to_string(),
    );
    row(&mut table, "processes left behind", left_behind.to_string());
    row(
        &mut table,
        "panics / failed clients",
        format!("{panics} / {failed_clients}"),
    );
    row(
        &mut table,
        "throughput",
        format!("{:.1} sections/s", sections.len() as f64 / secs.max(0.001)),
    );
    row(
        &mut table,
        "longest gap",
        format!("{:.2} s", gap as f64 / 1e6),
    );
    row(
        &mut table,
        "time without a healthy quorum",
        format!("{:.1} s", no_quorum as f64 / 1e6),
    );
    row(
        &mut table,
        "longest gap with a healthy quorum",
        format!("{:.2} s", healthy_gap as f64 / 1e6),
    );
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
        n,
        a.clients,
        (start_us, end_us),
    );
    let _ = std::fs::write(a.out.join("timeline.svg"), picture);
    println!("timeline: {}", a.out.join("timeline.svg").display());

    if let Some(check) = &a.expect_violation {
        let found = match check.as_str() {
            "fencing" => !fencing.is_empty() || !reg.is_empty(),
            "mutual exclusion" => !overlaps.is_empty(),
            other => return Err(format!("unknown check {other:?}")),
        };
        println!(
            "expected a {check} violation: {}",
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

/// The section client `c` is in now, from its state file: (ttl ms, start µs, planned end µs).
fn section_of(a: &Args, c: usize) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(a.out.join(format!("c{c}.state"))).ok()?;
    let mut parts = text.split(' ');
    if parts.next()? != "1" {
        return None;
    }
    let mut num = || parts.next()?.parse::<u64>().ok();
    Some((num()?, num()?, num()?))
}

/// The kind of the next fault: one never injected yet if there is one (so that each enabled
/// kind is tried until its conditions allow it), else any.
fn choose_kind(
    enabled: &[&'static str],
    injected: &BTreeMap<String, usize>,
    rng: &mut StdRng,
) -> &'static str {
    let fresh: Vec<&'static str> = enabled
        .iter()
        .copied()
        .filter(|k| !injected.contains_key(*k))
        .collect();
    let from = if fresh.is_empty() { enabled } else { &fresh };
    from[rng.random_range(0..from.len())]
}

fn dedup(ttls: &[u64]) -> String {
    let mut v = ttls.to_vec();
    v.sort_unstable();
    v.dedup();
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// Starts one fault of `kind` if the schedule allows it now; whether it did.
fn inject(
    w: &mut World,
    rng: &mut StdRng,
    kind: &str,
    minority: usize,
    ttls: &[u64],
    a: &Args,
) -> bool {
    let n = w.masters.len();
    let now = Instant::now();
    let free = w.targets(now, minority);
    let room = !free.is_empty();
    let pick = |rng: &mut StdRng, v: &[usize]| v[rng.random_range(0..v.len())];
    let ms = |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_millis(rng.random_range(lo..hi));
    match kind {
        // Half the time an episode: a minority paused (locks are then taken on a bare
        // quorum of the others), then, as it resumes, one of the others restarts empty.
        "pause" if room && rng.random_bool(0.5) => {
            let m = pick(rng, &free);
            let d = ms(rng, 200, 3000);
            w.pause_set(&[m], d, "pause", true, Undo::Resume(vec![m]));
            true
        }
        "pause" if w.faulty(now) <= minority && minority >= 1 => {
            // The masters faulty already, and more, up to a minority.
            let mut paused: Vec<usize> = (0..n).filter(|&m| w.busy_until[m] > now).collect();
            let mut all: Vec<usize> = (0..n).filter(|&m| w.busy_until[m] <= now).collect();
            while paused.len() < minority && all.len() > 1 {
                paused.push(all.swap_remove(rng.random_range(0..all.len())));
            }
            paused.retain(|&m| !w.stopped[m]);
            if paused.is_empty() || all.is_empty() {
                return false;
            }
            let victim = pick(rng, &all);
            // Ends early once a long section began meanwhile (`ripe`).
            let d = ms(rng, 3000, 10_000);
            let undo = Undo::ResumeThenEmpty(paused.clone(), victim);
            w.pause_set(&paused, d, "pause-then-restart-empty", true, undo);
            true
        }
        // Outside the assumptions: every master loses its data at once (at most once in 25 s,
        // as no quorum votes until the restart delay has passed). Fences must still rise.
        "restart-all-empty"
            if !w.stopped.contains(&true)
                && w.last_mass_restart
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(25)) =>
        {
            w.last_mass_restart = Some(now);
            for m in 0..n {
                w.kill(m, Persistence::None, "restart-all-empty", false);
            }
            true
        }
        "pause-majority" if !w.stopped.contains(&true) => {
            let mut all: Vec<usize> = (0..n).collect();
            let q = n / 2 + 1;
            let mut chosen = Vec::new();
            while chosen.len() < q {
                chosen.push(all.swap_remove(rng.random_range(0..all.len())));
            }
            let d = ms(rng, 300, 2000);
            w.pause_set(
                &chosen,
                d,
                "pause-majority",
                false,
                Undo::Resume(chosen.clone()),
            );
            true
        }
        "restart-aof" | "restart-empty" | "persistence-switch" if room => {
            let m = pick(rng, &free);
            let p = match kind {
                "restart-aof" => w.persistence[m],
                "restart-empty" => Persistence::None,
                _ => match w.persistence[m] {
                    Persistence::None => Persistence::AofAlways,
                    Persistence::AofAlways => Persistence::None,
                },
            };
            w.kill(m, p, kind, true);
            true
        }
        "clock" if room => {
            let m = pick(rng, &free);
            let Some(clock) = w.masters[m].clock() else {
                return false;
            };
            // Within the drift factor (1%): mutual exclusion still holds.
            let _ = clock.set_rate(1.005);
            let f = w.record("clock-fast-1.005", format!("m{m}"), true);
            w.active.push(Active {
                faults: vec![f],
                until: now + ms(rng, 1000, 5000),
                undo: Undo::Clock(m),
            });
            true
        }
        "clock-outside" => {
            let m = rng.random_range(0..n);
            let Some(clock) = w.masters[m].clock() else {
                return false;
            };
            // Keep every master within 0.8 s of the others and never going back: the bound
            // under which fences survive a master's data loss (docs/safety.md).
            if clock.skew() > Duration::from_millis(300) {
                return false;
            }
            if rng.random_bool(0.5) {
                let _ = clock.jump_forward(Duration::from_millis(300));
                w.record("clock-jump-300ms", format!("m{m}"), false);
            } else {
                let _ = clock.set_rate(1.5);
                let f = w.record("clock-fast-1.5", format!("m{m}"), false);
                w.active.push(Active {
                    faults: vec![f],
                    until: now + ms(rng, 100, 600),
                    undo: Undo::Clock(m),
                });
            }
            true
        }
        "net" if room && !w.proxies.is_empty() => {
            let m = pick(rng, &free);
            let c = rng.random_range(0..w.clients.len());
            let d = ms(rng, 200, 2000);
            let (name, faults) = match rng.random_range(0..5) {
                0 => (
                    "net-delay",
                    ProxyFaults {
                        delay: ms(rng, 20, 300),
                        ..Default::default()
                    },
                ),
                1 => (
                    "net-blackhole",
                    ProxyFaults {
                        hold_requests: true,
                        ..Default::default()
                    },
                ),
                2 => (
                    "net-drop",
                    ProxyFaults {
                        hold_replies: true,
                        ..Default::default()
                    },
                ),
                3 => (
                    "net-refuse",
                    ProxyFaults {
                        refuse: true,
                        ..Default::default()
                    },
                ),
                _ => ("net-reset", ProxyFaults::default()),
            };
            w.proxies[c][m].set_faults(faults);
            if name == "net-reset" || name == "net-refuse" {
                w.proxies[c][m].drop_connections();
            }
            w.busy(m, now + d);
            let f = w.record(name, format!("m{m}"), true);
            w.active.push(Active {
                faults: vec![f],
                until: now + d,
                undo: Undo::Net(c, m),
            });
            true
        }
        "client-pause" => {
            let short: Vec<usize> = (0..w.clients.len()).filter(|&c| ttls[c] <= 5_000).collect();
            let busy: Vec<usize> = w
                .active
                .iter()
                .filter_map(|x| match x.undo {
                    Undo::Client(c) => Some(c),
                    _ => None,
                })
                .collect();
            // A client inside a section, so that it holds the lock when it is stopped.
            let idle: Vec<usize> = short
                .into_iter()
                .filter(|c| !busy.contains(c))
                .filter(|&c| section_of(a, c).is_some())
                .collect();
            if idle.is_empty() {
                return false;
            }
            let c = pick(rng, &idle);
            // Past its ttl: whatever it holds expires while it is stopped.
            let d = Duration::from_millis(ttls[c] * 13 / 10);
            if signal_client(&w.clients[c], Signal::SIGSTOP).is_err() {
                return false;
            }
            let f = w.record("client-pause", format!("c{c}"), false);
            w.active.push(Active {
                faults: vec![f],
                until: now + d,
                undo: Undo::Client(c),
            });
            true
        }
        _ => false,
    }
}

/// Lock keys left on the masters after the run: those on masters never restarted from an AOF
/// (leaks), and those on masters that were (a release that a master missed while down comes
/// back with its AOF, and expires with its ttl).
fn leaks(w: &World) -> (usize, usize) {
    let mut leaked = 0;
    let mut restored = 0;
    for (m, server) in w.masters.iter().enumerate() {
        let Ok(redlock_testkit::Reply::Array(Some(keys))) = server.cmd(&["KEYS", "redlock:*"])
        else {
            continue;
        };
        let locks = keys
            .iter()
            .filter_map(|k| k.as_str())
            .filter(|k| {
                !k.ends_with(":fence")
                    && *k != "redlock:incarnation"
                    && *k != "redlock:restart-delay"
            })
            .count();
        if w.aof_restarts[m] {
            restored += locks;
        } else {
            leaked += locks;
        }
    }
    (leaked, restored)
}

/// `redlock-chaos section` processes of this campaign still running (tool mode).
fn stray_sections(register: u16) -> usize {
    let wanted = format!("section\0--register\0{register}\0");
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&wanted))
                })
                .count()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enabled_kind_is_chosen_before_any_is_chosen_twice() {
        let enabled: Vec<&'static str> = INSIDE.iter().chain(OUTSIDE).copied().collect();
        let mut rng = StdRng::seed_from_u64(7);
        let mut injected = BTreeMap::new();
        for _ in 0..enabled.len() {
            let k = choose_kind(&enabled, &injected, &mut rng);
            assert!(!injected.contains_key(k), "{k} chosen twice");
            injected.insert(k.to_owned(), 1);
        }
        assert_eq!(injected.len(), enabled.len());
    }

    #[test]
    fn a_kind_whose_conditions_fail_is_chosen_again_until_it_is_injected() {
        let enabled = vec!["pause", "pause-majority"];
        let mut rng = StdRng::seed_from_u64(3);
        let injected = BTreeMap::from([("pause".to_owned(), 5)]);
        for _ in 0..20 {
            assert_eq!(choose_kind(&enabled, &injected, &mut rng), "pause-majority");
        }
    }
}
