//! The campaign's world: the masters, proxies and clients, which of them a fault holds now and
//! until when, the faults in progress and how each ends, and what is left on the masters
//! afterwards.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use redlock_chaos::history::{Fault, Running, now_us};
use redlock_testkit::{Persistence, Proxy, ProxyFaults, RedisServer};

/// A fault in progress and what ends it.
#[derive(Debug)]
pub(crate) struct Active {
    /// The recorded spans it ends (one per master it hits).
    pub(crate) faults: Vec<usize>,
    pub(crate) until: Instant,
    pub(crate) undo: Undo,
}

/// How long a section of the longest ttl must still be planned to last for an episode to end
/// on it: time for the restarted master to come back and be reconnected to (about 2 s), and for
/// a client of a 1 s ttl to wait out its own restart delay (2 s) and then try that resource.
const RIPE_LEFT_US: u64 = 6_000_000;

/// The least time from the start of one episode to the start of the next.
const EPISODE_EVERY: Duration = Duration::from_secs(30);

/// Whether an episode may end now, and if so, until when (µs) the section that makes it ripe
/// is planned to last: a client of the longest ttl is in a section that began during the cut
/// (so its lock is on a bare quorum) and will last `RIPE_LEFT_US` more, long enough for another
/// client to try the lock once the restarted master may vote.
pub(crate) fn ripe(w: &World, x: &Active) -> Option<u64> {
    let Undo::HealThenEmpty { bare_until, .. } = x.undo else {
        return None;
    };
    let began = x.faults.first().map_or(0, |&f| w.faults[f].start);
    let later = now_us() + RIPE_LEFT_US;
    w.in_section
        .iter()
        .flatten()
        .filter(|r| r.ttl_ms == w.longest_ttl && r.start > began && r.start < bare_until)
        .filter(|r| r.end > later)
        .map(|r| r.end)
        .max()
}

#[derive(Debug)]
pub(crate) enum Undo {
    Resume(Vec<usize>),
    /// Let the clients reach the masters cut off again, then restart another empty: a lock
    /// taken on a bare quorum while they were cut off loses one of its masters.
    HealThenEmpty {
        cut: Vec<usize>,
        victim: usize,
        /// Until when (µs) the quorum is bare: the end of the cut, or earlier, when masters
        /// faulty at its start may vote again.
        bare_until: u64,
    },
    Start(usize, Persistence),
    Clock(usize),
    Net(usize, usize),
    Client(usize),
}

pub(crate) struct World {
    pub(crate) masters: Vec<RedisServer>,
    /// Whether each master is down, paused or cut off from every client now (no other fault can
    /// hit it then).
    pub(crate) stopped: Vec<bool>,
    pub(crate) persistence: Vec<Persistence>,
    /// Until when each master counts as faulty: down, paused, cut off, or not yet voting after
    /// a restart.
    pub(crate) busy_until: Vec<Instant>,
    pub(crate) proxies: Vec<Vec<Proxy>>,
    pub(crate) clients: Vec<Child>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) active: Vec<Active>,
    pub(crate) aof_restarts: Vec<bool>,
    pub(crate) restart_wait: Duration,
    pub(crate) last_mass_restart: Option<Instant>,
    /// When the last episode (`partition`) began.
    pub(crate) last_episode: Option<Instant>,
    /// Whether episodes are on (the clients then reach the masters through proxies).
    pub(crate) episodes: bool,
    /// The longest ttl of the clients (ms).
    pub(crate) longest_ttl: u64,
    /// Each client's state file.
    pub(crate) states: Vec<PathBuf>,
    /// The section each client was in at the last reading of the state files, and when that was.
    pub(crate) in_section: Vec<Option<Running>>,
    pub(crate) read_at: Instant,
    /// Masters that no fault may hit until `spare_until`: after a ripe episode, those that a
    /// client must reach to take the lock beside the section on the bare quorum.
    pub(crate) spare: Vec<usize>,
    pub(crate) spare_until: Instant,
}

impl World {
    /// Reads the clients' state files again if the last reading is 100 ms old.
    pub(crate) fn read_sections(&mut self) {
        if self.read_at.elapsed() >= Duration::from_millis(100) {
            self.in_section = self.states.iter().map(|p| Running::read(p)).collect();
            self.read_at = Instant::now();
        }
    }

    /// The section client `c` runs now, read from its state file.
    pub(crate) fn running(&self, c: usize) -> Option<Running> {
        Running::read(&self.states[c])
    }

    pub(crate) fn faulty(&self, now: Instant) -> usize {
        self.busy_until.iter().filter(|&&b| b > now).count()
    }

    /// The masters a fault may hit now: running, and either counted faulty already or with
    /// room for one more faulty master within `minority`; not those spared (see `spare`).
    pub(crate) fn targets(&self, now: Instant, minority: usize) -> Vec<usize> {
        let room = self.faulty(now) < minority;
        let spared = |m: usize| now < self.spare_until && self.spare.contains(&m);
        (0..self.masters.len())
            .filter(|&m| !self.stopped[m] && (room || self.busy_until[m] > now) && !spared(m))
            .collect()
    }

    /// Ends episode `x` on a section planned to last until `section_end` (µs): its masters
    /// (those cut off and the one that restarts empty) are spared until then, so that a
    /// client may reach all of them while the section lasts.
    pub(crate) fn end_ripe(&mut self, x: Active, section_end: u64) {
        if let Undo::HealThenEmpty { cut, victim, .. } = &x.undo {
            self.spare = cut.iter().copied().chain([*victim]).collect();
            let left = Duration::from_micros(section_end.saturating_sub(now_us()));
            self.spare_until = Instant::now() + left;
        }
        self.end(x);
    }

    /// Whether an episode is due: episodes are on, none began in the last `EPISODE_EVERY`,
    /// and the last one's masters are no longer spared.
    pub(crate) fn episode_due(&self, now: Instant) -> bool {
        self.episodes
            && now >= self.spare_until
            && self.last_episode.is_none_or(|t| now - t >= EPISODE_EVERY)
    }

    /// Marks `m` faulty until at least `until`.
    pub(crate) fn busy(&mut self, m: usize, until: Instant) {
        self.busy_until[m] = self.busy_until[m].max(until);
    }

    pub(crate) fn record(&mut self, kind: &str, target: String, inside: bool) -> usize {
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

    pub(crate) fn end(&mut self, a: Active) {
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
            Undo::HealThenEmpty {
                cut, victim: other, ..
            } => {
                for m in cut {
                    for to in &self.proxies {
                        to[m].set_faults(ProxyFaults::default());
                    }
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
    pub(crate) fn pause_set(
        &mut self,
        masters: &[usize],
        d: Duration,
        kind: &str,
        inside: bool,
        undo: Undo,
    ) {
        for &m in masters {
            let _ = self.masters[m].pause();
        }
        self.stop_set(masters, d, kind, inside, undo);
    }

    /// Marks `masters` stopped and faulty for `d`, records a span for each, and schedules
    /// `undo` at the end: the bookkeeping of a fault that holds masters (a pause, a cut).
    fn stop_set(&mut self, masters: &[usize], d: Duration, kind: &str, inside: bool, undo: Undo) {
        let now = Instant::now();
        let mut faults = Vec::new();
        for &m in masters {
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

    /// Cuts `masters` off from every client for up to `d` (connections cut, new ones refused),
    /// records a span for each, and schedules the end of the episode: the cut heals, and
    /// `victim` restarts empty. The masters faulty already bound how long the quorum of the
    /// others is bare; the cut lasts a moment past that at most, as no lock taken later can
    /// make it ripe.
    pub(crate) fn partition(&mut self, masters: &[usize], d: Duration, victim: usize) {
        let now = Instant::now();
        self.last_episode = Some(now);
        let bare = self
            .busy_until
            .iter()
            .enumerate()
            .filter(|&(m, &b)| b > now && !masters.contains(&m))
            .map(|(_, &b)| b)
            .min()
            .map_or(d, |b| (b - now).min(d));
        let bare_until = now_us() + u64::try_from(bare.as_micros()).unwrap_or(u64::MAX);
        let d = d.min(bare + Duration::from_millis(200));
        let refuse = ProxyFaults {
            refuse: true,
            ..Default::default()
        };
        for &m in masters {
            for to in &self.proxies {
                to[m].set_faults(refuse);
                to[m].drop_connections();
            }
        }
        let undo = Undo::HealThenEmpty {
            cut: masters.to_vec(),
            victim,
            bare_until,
        };
        self.stop_set(masters, d, "partition-then-restart-empty", true, undo);
    }

    /// Kills master `m` now and schedules its restart with `p` in a moment.
    pub(crate) fn kill(&mut self, m: usize, p: Persistence, kind: &str, inside: bool) {
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

pub(crate) fn signal_client(c: &Child, s: Signal) -> nix::Result<()> {
    killpg(Pid::from_raw(i32::try_from(c.id()).unwrap_or(0)), s)
}

/// Lock keys left on the masters after the run: those on masters never restarted from an AOF
/// (leaks), and those on masters that were (a release that a master missed while down comes
/// back with its AOF, and expires with its ttl).
pub(crate) fn leaks(w: &World) -> (usize, usize) {
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
pub(crate) fn stray_sections(register: u16) -> usize {
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
