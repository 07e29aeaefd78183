//! The crate's error type: one enum, one variant per thing a caller may want to match on.

use std::fmt;
use std::time::Duration;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one master did not count towards a quorum.
#[derive(Debug)]
#[non_exhaustive]
pub enum Cause {
    /// It answered that someone else holds the lock (or, for extend and release, that our
    /// token is no longer there).
    Refused,
    /// It may have lost locks in a restart and does not vote until `ready_in` has passed.
    Restarting {
        /// How long until it votes again.
        ready_in: Duration,
    },
    /// It failed: timeout, connection, wrong type, …
    Failed(redlock_single::Error),
    /// It had not answered when the outcome was already decided.
    NoAnswer,
    /// Its health could not be read on this connection (the reading failed less than
    /// `recheck_in` ago), so whether it lost locks in a restart is unknown: it does not vote
    /// until a reading succeeds. Attempts do not wait for it meanwhile.
    Unverified {
        /// How long until the next attempt reads its health again.
        recheck_in: Duration,
    },
}

/// One master that did not count, and why.
#[derive(Debug)]
pub struct MasterFailure {
    /// The master's address, `host:port`.
    pub addr: String,
    /// Why it did not count.
    pub cause: Cause,
}

impl fmt::Display for MasterFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::Refused => write!(f, "{}: refused", self.addr),
            Cause::Restarting { ready_in } => {
                write!(
                    f,
                    "{}: may have lost locks in a restart; votes again in {ready_in:.1?}",
                    self.addr
                )
            }
            Cause::Failed(e) => {
                write!(f, "{}: {e}", self.addr)?;
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    write!(f, ": {s}")?;
                    source = s.source();
                }
                Ok(())
            }
            Cause::NoAnswer => write!(f, "{}: no answer in time", self.addr),
            Cause::Unverified { recheck_in } => write!(
                f,
                "{}: its health could not be read (checked again in {recheck_in:.1?})",
                self.addr
            ),
        }
    }
}

/// The failures of several masters, shown one after another.
#[derive(Debug)]
pub struct Failures(pub Vec<MasterFailure>);

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong when taking, keeping or giving back a quorum lock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given a configuration that cannot work: no masters, the same master
    /// twice, a bad URL, a zero ttl, a ttl not larger than drift plus per-master timeout, …
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The resource name cannot be used as a lock name (it is empty).
    #[error("invalid resource name {resource:?}: {reason}")]
    InvalidResource {
        /// The name as given.
        resource: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// Someone else holds the lock: enough masters refused that no quorum was possible, and
    /// the retry policy gave up.
    #[error("lock {resource:?} is held by someone else ({refused} of {masters} masters refused)")]
    Held {
        /// The resource that was asked for.
        resource: String,
        /// How many masters said it is held.
        refused: usize,
        /// How many masters there are.
        masters: usize,
    },

    /// Not enough masters could be reached (or voted) to make a quorum.
    #[error("no quorum for {resource:?}: needed {needed} of {masters} masters; {failures}")]
    NoQuorum {
        /// The resource that was asked for.
        resource: String,
        /// The quorum, `N/2 + 1`.
        needed: usize,
        /// How many masters there are.
        masters: usize,
        /// Every master that did not count, with its cause.
        failures: Failures,
    },

    /// A quorum said yes, but so late that nothing of the validity was left (or less than the
    /// builder's `min_validity`). What it took is released.
    #[error("lock {resource:?} was granted too late to rely on (after {elapsed:?})")]
    TooSlow {
        /// The resource that was asked for.
        resource: String,
        /// How long the attempt took.
        elapsed: Duration,
    },

    /// The lock can no longer be guaranteed: an extension was refused by a quorum, the
    /// validity ran out without a successful extension, or the lock was released.
    #[error("lock {resource:?} was lost")]
    Lost {
        /// The resource whose lock was lost.
        resource: String,
    },

    /// The cap on extensions or on the total hold time was reached.
    #[error("lock {resource:?} reached its limit: {limit}")]
    Limit {
        /// The resource.
        resource: String,
        /// Which limit.
        limit: &'static str,
    },
}

impl Error {
    /// Whether trying again later may succeed: true for a held lock, a missing quorum and a
    /// late grant; false for bad configuration or input, a lost lock and a reached limit.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Held { .. } | Error::NoQuorum { .. } | Error::TooSlow { .. }
        )
    }
}

impl From<redlock_single::Error> for Error {
    /// Configuration and input errors of the per-master layer; master failures are reported
    /// inside [`Error::NoQuorum`].
    fn from(e: redlock_single::Error) -> Error {
        match e {
            redlock_single::Error::InvalidResource { resource, reason } => {
                Error::InvalidResource { resource, reason }
            }
            other => Error::Config(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_master_says_why_and_for_how_long_in_tenths_of_a_second() {
        let failures = Failures(vec![
            MasterFailure {
                addr: "127.0.0.1:7000".into(),
                cause: Cause::Restarting {
                    ready_in: Duration::from_nanos(28_999_612_386),
                },
            },
            MasterFailure {
                addr: "127.0.0.1:7001".into(),
                cause: Cause::Unverified {
                    recheck_in: Duration::from_millis(940),
                },
            },
        ]);
        assert_eq!(
            failures.to_string(),
            "127.0.0.1:7000: may have lost locks in a restart; votes again in 29.0s; \
             127.0.0.1:7001: its health could not be read (checked again in 940.0ms)"
        );
    }
}
