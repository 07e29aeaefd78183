//! When a master that may have lost locks in a restart can vote again. Pure: the caller reads
//! the master's health and passes the present instant.

use std::time::Duration;

use redlock_single::Health;
use tokio::time::Instant;

/// What the client knows of one master's restarts.
#[derive(Debug, Clone, Default)]
pub struct Standing {
    /// The run id seen at the last check.
    pub run_id: Option<String>,
    /// The connection epoch at the last check; a different epoch means "check again".
    pub checked_epoch: Option<u64>,
    /// From when the master may vote.
    pub votes_from: Option<Instant>,
    /// The connection epoch and instant of the last reading that failed.
    pub failed: Option<(u64, Instant)>,
}

/// How long a master whose health reading failed goes without another reading: attempts in
/// between neither wait for it nor count its vote.
pub const RECHECK_AFTER: Duration = Duration::from_secs(1);

impl Standing {
    /// Records a health reading taken at `now` on connection `epoch`, with `max_ttl` the largest
    /// ttl in use, and returns from when the master may vote.
    ///
    /// - A master that persists every write comes back with its keys: it votes at once.
    /// - Otherwise it votes once its uptime exceeds `max_ttl`: every lock it granted before a
    ///   restart has expired by then.
    /// - A run id that changed since the last reading (a restart or a failover the client saw)
    ///   starts the wait again from now, whatever the uptime says: a promoted replica can have
    ///   a long uptime and still lack the locks.
    pub fn observe(
        &mut self,
        health: &Health,
        epoch: u64,
        now: Instant,
        max_ttl: Duration,
    ) -> Instant {
        let changed = self
            .run_id
            .as_deref()
            .is_some_and(|old| old != health.run_id);
        let votes_from = if health.persists_every_write {
            now
        } else if changed {
            now + max_ttl
        } else {
            now + max_ttl.saturating_sub(health.uptime)
        };
        self.run_id = Some(health.run_id.clone());
        self.checked_epoch = Some(epoch);
        self.votes_from = Some(votes_from);
        votes_from
    }

    /// Whether a reading is needed before the master may vote on connection `epoch`.
    pub fn needs_check(&self, epoch: u64) -> bool {
        self.checked_epoch != Some(epoch)
    }

    /// Records a reading on connection `epoch` that failed at `now`.
    pub fn reading_failed(&mut self, epoch: u64, now: Instant) {
        self.failed = Some((epoch, now));
    }

    /// If a reading on connection `epoch` failed less than [`RECHECK_AFTER`] before `now`: how
    /// long until the next one.
    pub fn recheck_in(&self, epoch: u64, now: Instant) -> Option<Duration> {
        match self.failed {
            Some((e, at)) if e == epoch => {
                Some((at + RECHECK_AFTER).saturating_duration_since(now)).filter(|d| !d.is_zero())
            }
            _ => None,
        }
    }

    /// How long until the master may vote (zero: now), if it was checked.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        self.votes_from.map(|t| t.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(run_id: &str, uptime_s: u64, persistent: bool) -> Health {
        Health {
            run_id: run_id.into(),
            uptime: Duration::from_secs(uptime_s),
            persists_every_write: persistent,
        }
    }

    #[test]
    fn rules() {
        let now = Instant::now();
        let ttl = Duration::from_secs(30);
        let mut s = Standing::default();
        assert!(s.needs_check(1));
        // Up for long enough: votes now.
        assert_eq!(s.observe(&health("a", 100, false), 1, now, ttl), now);
        assert!(!s.needs_check(1));
        assert!(s.needs_check(2));
        // Same run id after a reconnect, still long up.
        assert_eq!(s.observe(&health("a", 101, false), 2, now, ttl), now);
        // Restarted: new run id, waits the whole ttl even though uptime is long (failover).
        assert_eq!(s.observe(&health("b", 500, false), 3, now, ttl), now + ttl);
        assert_eq!(s.wait(now), Some(ttl));
        // First sight of a fresh master: waits out the rest of the ttl.
        let mut s = Standing::default();
        assert_eq!(
            s.observe(&health("c", 10, false), 1, now, ttl),
            now + Duration::from_secs(20)
        );
        // Persistent masters vote at once, even after a restart.
        assert_eq!(s.observe(&health("d", 0, true), 2, now, ttl), now);
    }

    #[test]
    fn a_failed_reading_is_not_repeated_for_a_while_on_the_same_connection() {
        let now = Instant::now();
        let mut s = Standing::default();
        assert_eq!(s.recheck_in(1, now), None);
        s.reading_failed(1, now);
        assert_eq!(s.recheck_in(1, now), Some(RECHECK_AFTER));
        assert!(s.recheck_in(1, now + RECHECK_AFTER / 2).is_some());
        assert_eq!(s.recheck_in(1, now + RECHECK_AFTER), None);
        // A new connection is read at once.
        assert_eq!(s.recheck_in(2, now), None);
        assert!(s.needs_check(1));
    }
}
