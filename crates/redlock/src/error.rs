//! The crate's error type: one enum, one variant per thing a caller may want to match on.

use std::fmt;
use std::time::Duration;

use redlock_single::{InputError, MasterError, round_tenth};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one master did not count towards a quorum.
#[derive(Debug, Clone)]
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
    /// It failed: timeout, connection, wrong type, refused credentials, …
    Failed(MasterError),
    /// It had not answered when the outcome was already decided.
    NoAnswer,
    /// Its health could not be read on this connection, so whether it lost locks in a restart
    /// is unknown: it does not vote until a reading succeeds. Attempts do not wait for it
    /// meanwhile; it is read again after `recheck_in`.
    Unverified {
        /// How long until its health is read again.
        recheck_in: Duration,
        /// Why the last reading failed.
        reason: MasterError,
    },
}

impl From<redlock_single::voters::Ineligible> for Cause {
    fn from(why: redlock_single::voters::Ineligible) -> Cause {
        use redlock_single::voters::Ineligible;
        match why {
            Ineligible::Down(e) => Cause::Failed(e),
            Ineligible::Restarting { ready_in } => Cause::Restarting { ready_in },
            Ineligible::Unverified { recheck_in, reason } => {
                Cause::Unverified { recheck_in, reason }
            }
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Refused => f.write_str("refused"),
            Cause::Restarting { ready_in } => write!(
                f,
                "may have lost locks in a restart; votes again in {:.1?}",
                round_tenth(*ready_in)
            ),
            Cause::Failed(e) => write!(f, "{}", e.reason()),
            Cause::NoAnswer => f.write_str("no answer in time"),
            Cause::Unverified { recheck_in, reason } => write!(
                f,
                "its health could not be read ({}); read again in {:.1?}",
                reason.reason(),
                round_tenth(*recheck_in)
            ),
        }
    }
}

/// One master that did not count, and why.
#[derive(Debug, Clone)]
pub struct MasterFailure {
    /// The master's address, `host:port`.
    pub addr: String,
    /// Why it did not count.
    pub cause: Cause,
}

impl fmt::Display for MasterFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.addr, self.cause)
    }
}

/// The failures of several masters, shown one after another.
#[derive(Debug, Clone)]
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

/// The name of a resource in messages: quoted, cut after 64 characters.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(64) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

/// Everything that can go wrong when taking, keeping or giving back a quorum lock.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given a configuration that cannot work: no masters, the same master
    /// twice, a bad URL, a zero ttl, a ttl not larger than drift plus per-master timeout, …
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The resource name cannot be used as a lock name (empty, or longer than
    /// [`MAX_RESOURCE_LEN`](redlock_single::MAX_RESOURCE_LEN)).
    #[error("invalid resource name {}: {reason}", Shown(.resource))]
    InvalidResource {
        /// The name as given.
        resource: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// Fewer than a quorum of masters could be connected within the connect timeout.
    #[error("cannot connect to a quorum: needed {needed} of {masters} masters; {failures}")]
    Connect {
        /// The quorum, `N/2 + 1`.
        needed: usize,
        /// How many masters there are.
        masters: usize,
        /// Every master that was not connected, with its cause.
        failures: Failures,
    },

    /// Someone else holds the lock: enough masters refused that no quorum was possible, and
    /// the retry policy gave up.
    #[error("lock {} is held by someone else ({refused} of {masters} masters refused)", Shown(.resource))]
    Held {
        /// The resource that was asked for.
        resource: String,
        /// How many masters said it is held.
        refused: usize,
        /// How many masters there are.
        masters: usize,
    },

    /// Not enough masters could be reached (or voted) to make a quorum.
    #[error("no quorum for {}: needed {needed} of {masters} masters; {failures}", Shown(.resource))]
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

    /// So many masters hold a value of another type under the lock's keys that no quorum is
    /// possible until someone removes it: final, not retried.
    #[error("lock {} cannot be taken: keys of the wrong type on too many masters; {failures}", Shown(.resource))]
    WrongType {
        /// The resource that was asked for.
        resource: String,
        /// Every master that did not count, with its cause.
        failures: Failures,
    },

    /// A quorum said yes, but so late that nothing of the validity was left (or less than the
    /// builder's `min_validity`). What it took is released.
    #[error("lock {} was granted too late to rely on (after {elapsed:?})", Shown(.resource))]
    TooSlow {
        /// The resource that was asked for.
        resource: String,
        /// How long the attempt took.
        elapsed: Duration,
    },

    /// The lock can no longer be guaranteed: an extension was refused by a quorum or came too
    /// late, the validity ran out without a successful extension, or the lock was released.
    #[error("lock {} was lost", Shown(.resource))]
    Lost {
        /// The resource whose lock was lost.
        resource: String,
    },

    /// The cap on extensions or on the total hold time was reached.
    #[error("lock {} reached its limit: {limit}", Shown(.resource))]
    Limit {
        /// The resource.
        resource: String,
        /// Which limit.
        limit: &'static str,
    },

    /// The locks were closed with [`Redlock::close`](crate::Redlock::close): no new locks.
    #[error("the locks were closed: they take no new locks")]
    Closed,
}

impl Error {
    /// Whether trying again later may succeed: true for a held lock, a missing quorum and a
    /// late grant; false for bad configuration or input, keys of the wrong type, a lost lock,
    /// a reached limit and closed locks.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Held { .. } | Error::NoQuorum { .. } | Error::TooSlow { .. }
        )
    }
}

impl From<InputError> for Error {
    /// A setting or resource name that the per-master layer refused; master failures are
    /// reported inside [`Error::NoQuorum`] and the like.
    fn from(e: InputError) -> Error {
        match e {
            InputError::InvalidResource { resource, reason } => {
                Error::InvalidResource { resource, reason }
            }
            InputError::Config(message) => Error::Config(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redlock_single::MasterErrorKind;

    fn timeout(addr: &str) -> MasterError {
        let timeout = Duration::from_millis(50);
        MasterError::new(addr, MasterErrorKind::Timeout { timeout })
    }

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
                    reason: timeout("127.0.0.1:7001"),
                },
            },
        ]);
        assert_eq!(
            failures.to_string(),
            "127.0.0.1:7000: may have lost locks in a restart; votes again in 29.0s; \
             127.0.0.1:7001: its health could not be read (no answer within 50.0ms); read again in 1.0s"
        );
    }

    #[test]
    fn configuration_errors_of_the_master_layer_are_not_prefixed_twice() {
        let e = Error::from(InputError::Config("ttl must be at least 1 ms".into()));
        assert_eq!(
            e.to_string(),
            "invalid configuration: ttl must be at least 1 ms"
        );
    }

    #[test]
    fn a_failed_master_is_named_once() {
        let f = MasterFailure {
            addr: "127.0.0.1:7000".into(),
            cause: Cause::Failed(timeout("127.0.0.1:7000")),
        };
        assert_eq!(f.to_string(), "127.0.0.1:7000: no answer within 50.0ms");
    }
}
