//! When a master that may have forgotten locks may vote again: the restart guard's rules, pure
//! (the caller reads the master and passes the instants). The I/O around them is in
//! [`voters`](crate::voters); the argument is in `docs/safety.md`.
//!
//! A master votes only while the client can show that it has not forgotten a lock granted
//! within the last restart delay:
//!
//! - its incarnation key holds its current `run_id`: it is the process that clients let vote
//!   before (a reconnect changes nothing), so it votes;
//! - the key is absent: its data is empty or new, so it votes once its uptime exceeds the
//!   restart delay;
//! - the key holds another `run_id`: its data came from an earlier process (a restart from
//!   disk, or a replica promoted after a failover, which lacks the last writes), so it votes
//!   once a restart delay has passed since this client first saw that;
//! - with `trust_persistence`, a master that persists every write votes at once.
//!
//! The earliest instant a master may vote only ever moves later, whatever later readings say.

use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::master::Health;

/// The least restart delay: a master that lost its fencing counters starts them again from its
/// clock's whole seconds, which exceed every earlier token only after a full second more than
/// the clocks of the masters may differ (see `docs/safety.md`).
pub const MIN_RESTART_DELAY: Duration = Duration::from_secs(2);

/// How long a master whose health reading failed goes without another reading on the same
/// connection: attempts in between neither wait for it nor count its vote.
pub const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// What one reading of a master says about its vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Assessment {
    /// It votes: its incarnation key holds its run id.
    Vote,
    /// It votes once its incarnation key holds its run id: write it first.
    Vouch,
    /// It may vote from this instant on (which may be past already), provided that the restart
    /// delay, read again from the other masters then, does not move it later; then write its
    /// incarnation key.
    From(Instant),
}

/// What one client knows of one master's restarts, across its connections.
#[derive(Debug, Clone, Default)]
pub(crate) struct Standing {
    /// A run id whose data came from an earlier process, and when this client first saw it.
    change_seen: Option<(String, Instant)>,
    /// The earliest instant the master may vote, as far as this client has seen: only ever
    /// moves later.
    votes_from: Option<Instant>,
}

impl Standing {
    /// Assesses a reading taken at `read_at`, with `delay` the restart delay known then.
    pub(crate) fn assess(
        &mut self,
        health: &Health,
        read_at: Instant,
        delay: Duration,
        trust_persistence: bool,
    ) -> Assessment {
        if health.incarnation.as_deref() == Some(health.run_id.as_str()) {
            return Assessment::Vote;
        }
        if trust_persistence && health.persists_every_write == Some(true) {
            return Assessment::Vouch;
        }
        let from = match &health.incarnation {
            // Empty or new data: whatever it granted before, it granted at least its uptime ago
            // (uptime is read in whole seconds, rounded down: the safe side).
            None => read_at + delay.saturating_sub(health.uptime),
            // Data of an earlier process: its uptime says nothing about what it lacks.
            Some(_) => {
                let seen = match &self.change_seen {
                    Some((run_id, at)) if *run_id == health.run_id => *at,
                    _ => {
                        self.change_seen = Some((health.run_id.clone(), read_at));
                        read_at
                    }
                };
                seen + delay
            }
        };
        let from = self.votes_from.map_or(from, |earlier| earlier.max(from));
        self.votes_from = Some(from);
        Assessment::From(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(run_id: &str, uptime_s: u64, incarnation: Option<&str>) -> Health {
        Health {
            run_id: run_id.into(),
            uptime: Duration::from_secs(uptime_s),
            persists_every_write: Some(false),
            incarnation: incarnation.map(Into::into),
            restart_delay: Duration::ZERO,
        }
    }

    const DELAY: Duration = Duration::from_secs(30);

    #[test]
    fn the_same_process_votes_and_a_reconnect_changes_nothing() {
        let now = Instant::now();
        let mut s = Standing::default();
        assert_eq!(
            s.assess(&health("a", 5, Some("a")), now, DELAY, false),
            Assessment::Vote
        );
        assert_eq!(
            s.assess(&health("a", 6, Some("a")), now, DELAY, false),
            Assessment::Vote
        );
    }

    #[test]
    fn empty_data_votes_once_up_for_the_delay() {
        let now = Instant::now();
        let mut s = Standing::default();
        assert_eq!(
            s.assess(&health("a", 10, None), now, DELAY, false),
            Assessment::From(now + Duration::from_secs(20))
        );
        let mut s = Standing::default();
        assert_eq!(
            s.assess(&health("a", 100, None), now, DELAY, false),
            Assessment::From(now)
        );
    }

    #[test]
    fn data_of_an_earlier_process_waits_the_delay_whatever_the_uptime() {
        let now = Instant::now();
        let mut s = Standing::default();
        // A replica promoted after a failover: up for days, and the key names the old master.
        let promoted = health("b", 500_000, Some("a"));
        assert_eq!(
            s.assess(&promoted, now, DELAY, false),
            Assessment::From(now + DELAY)
        );
        // Seen again later (a reconnect): the wait still counts from the first sight.
        let later = now + Duration::from_secs(10);
        assert_eq!(
            s.assess(&promoted, later, DELAY, false),
            Assessment::From(now + DELAY)
        );
    }

    #[test]
    fn a_wait_is_never_cut_short_by_a_later_reading() {
        let now = Instant::now();
        let mut s = Standing::default();
        let restarted = health("b", 0, Some("a"));
        assert_eq!(
            s.assess(&restarted, now, DELAY, false),
            Assessment::From(now + DELAY)
        );
        // A second later, a reading says the key is gone and the uptime is long (a second
        // failover, or an operator deleting keys): the 30 s wait stands.
        let later = now + Duration::from_secs(1);
        assert_eq!(
            s.assess(&health("c", 100_000, None), later, DELAY, false),
            Assessment::From(now + DELAY)
        );
        // A larger delay learnt later moves it later.
        let longer = Duration::from_secs(60);
        assert_eq!(
            s.assess(&restarted, later, longer, false),
            Assessment::From(now + longer)
        );
    }

    #[test]
    fn persistence_counts_only_when_trusted() {
        let now = Instant::now();
        let mut persisting = health("b", 0, Some("a"));
        persisting.persists_every_write = Some(true);
        let mut s = Standing::default();
        assert_eq!(s.assess(&persisting, now, DELAY, true), Assessment::Vouch);
        // By default the persistence of the process that came back says nothing about the one
        // that crashed.
        let mut s = Standing::default();
        assert_eq!(
            s.assess(&persisting, now, DELAY, false),
            Assessment::From(now + DELAY)
        );
    }
}
