//! The fault schedule: the kinds of fault, which comes next (each enabled kind before any
//! twice), and how each is injected into the world when its conditions allow.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rand::Rng;
use rand::rngs::StdRng;
use redlock_testkit::{Persistence, ProxyFaults};

use crate::world::{Active, Undo, World, signal_client};

/// The fault kinds within the assumptions under which mutual exclusion holds.
pub(crate) const INSIDE: &[&str] = &[
    "pause",
    "partition",
    "restart-aof",
    "restart-empty",
    "persistence-switch",
    "ttls",
    "clock",
    "net",
];
/// The fault kinds outside them, under which only the fences must hold.
pub(crate) const OUTSIDE: &[&str] = &[
    "pause-majority",
    "restart-all-empty",
    "clock-outside",
    "client-pause",
];

/// The longest an episode's cut waits for a long section to begin on the bare quorum.
const EPISODE_MAX: Duration = Duration::from_secs(15);

/// The kinds a `--faults` value names: `all`, `inside`, `none` or a list.
pub(crate) fn kinds(spec: &str) -> Result<Vec<&'static str>, String> {
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

/// The kind of the next fault: one never injected yet if there is one (so that each enabled
/// kind is tried until its conditions allow it), else any.
pub(crate) fn choose_kind(
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

/// Starts one fault of `kind` if the schedule allows it now; whether it did.
pub(crate) fn inject(
    w: &mut World,
    rng: &mut StdRng,
    kind: &str,
    minority: usize,
    ttls: &[u64],
) -> bool {
    let n = w.masters.len();
    let now = Instant::now();
    // While an episode is due, other faults leave it a faulty master's room, and do not hit
    // the masters faulty already, which would keep them faulty.
    let due = kind != "partition" && w.episode_due(now);
    let minority = if due {
        minority.saturating_sub(1)
    } else {
        minority
    };
    let mut free = w.targets(now, minority);
    if due {
        free.retain(|&m| w.busy_until[m] <= now);
    }
    let room = !free.is_empty();
    let pick = |rng: &mut StdRng, v: &[usize]| v[rng.random_range(0..v.len())];
    let ms = |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_millis(rng.random_range(lo..hi));
    match kind {
        // Half the time one master, else up to a minority at once (those faulty already
        // count), briefly.
        "pause" if room => {
            let d = ms(rng, 200, 3000);
            let mut chosen = vec![pick(rng, &free)];
            if rng.random_bool(0.5) {
                let mut rest: Vec<usize> =
                    free.iter().copied().filter(|&m| m != chosen[0]).collect();
                while w.faulty(now) + chosen.len() < minority && !rest.is_empty() {
                    chosen.push(rest.swap_remove(rng.random_range(0..rest.len())));
                }
            }
            w.pause_set(&chosen, d, "pause", true, Undo::Resume(chosen.clone()));
            true
        }
        // An episode: masters cut off from every client, a minority faulty with those faulty
        // already, so that locks are taken on a bare quorum of the others (none of their
        // requests reaches the masters cut off, as it would reach a paused one when it
        // resumes). It ends once a long section began on the bare quorum (`ripe`), or when
        // none can any more: after `EPISODE_MAX`, or once a master faulty at its start may
        // vote again. Then the cut heals and one master of the bare quorum restarts empty.
        // Episodes are due one per `EPISODE_EVERY` (no other fault fits while one lasts), and
        // not while the last one's masters are spared.
        "partition" if room && w.episode_due(now) => {
            let mut healthy: Vec<usize> = free
                .iter()
                .copied()
                .filter(|&m| w.busy_until[m] <= now)
                .collect();
            let mut cut = Vec::new();
            while w.faulty(now) + cut.len() < minority && healthy.len() > 1 {
                cut.push(healthy.swap_remove(rng.random_range(0..healthy.len())));
            }
            // The loop leaves at least one healthy master: the victim.
            if cut.is_empty() {
                return false;
            }
            let victim = pick(rng, &healthy);
            w.partition(&cut, EPISODE_MAX, victim);
            true
        }
        // Outside the assumptions: every master loses its data at once (at most once in 25 s,
        // as no quorum votes until the restart delay has passed), while a client is in a
        // section, so that fences were given since the last time. Fences must still rise.
        "restart-all-empty"
            if !w.stopped.contains(&true)
                && w.last_mass_restart
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(25))
                && (0..w.clients.len()).any(|c| w.running(c).is_some()) =>
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
                .filter(|&c| w.running(c).is_some())
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

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
