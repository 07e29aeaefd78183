//! The crate's error type: one enum, one variant per thing a caller may want to match on.

use std::time::Duration;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when taking, keeping or giving back a lock.
///
/// The variants separate what a caller decides on: the lock is held by someone else
/// ([`Error::Held`]), the lock was lost ([`Error::Lost`]), the configuration or input is wrong
/// ([`Error::Config`], [`Error::InvalidResource`]) or the master failed ([`Error::Timeout`],
/// [`Error::Unreachable`], [`Error::WrongType`], [`Error::Redis`]). A master's failure names its
/// address and keeps the cause as its `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given a configuration that cannot work (no master, a bad URL, a zero ttl,
    /// a timeout not smaller than the ttl, …). The message says which setting and why.
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

    /// The lock is held by someone else and the retry policy gave up waiting for it.
    #[error("lock {resource:?} is held by someone else")]
    Held {
        /// The resource that was asked for.
        resource: String,
    },

    /// The lock can no longer be guaranteed: an extension was refused, the validity ran out
    /// without a successful extension, or the key no longer held our token.
    #[error("lock {resource:?} was lost")]
    Lost {
        /// The resource whose lock was lost.
        resource: String,
    },

    /// The master did not answer within the per-request timeout (it may be paused or
    /// overloaded). A request that timed out may still run on the master later.
    #[error("master {addr} did not answer within {timeout:?}")]
    Timeout {
        /// The master's address, `host:port`.
        addr: String,
        /// The per-request timeout that passed.
        timeout: Duration,
    },

    /// The master could not be reached (connection refused, reset or not yet re-established).
    #[error("master {addr} is unreachable")]
    Unreachable {
        /// The master's address, `host:port`.
        addr: String,
        /// What the client saw.
        #[source]
        source: fred::error::Error,
    },

    /// The lock's key (or its fencing counter) holds a value of another type on the master:
    /// something other than this library stored data under the lock's name.
    #[error("key {key:?} on master {addr} holds a value that is not a lock (wrong type)")]
    WrongType {
        /// The master's address, `host:port`.
        addr: String,
        /// The key that holds the foreign value.
        key: String,
    },

    /// Any other error reported by the master or the client library.
    #[error("master {addr} failed")]
    Redis {
        /// The master's address, `host:port`.
        addr: String,
        /// The error as reported.
        #[source]
        source: fred::error::Error,
    },
}

impl Error {
    /// Whether trying again later may succeed: true for a held lock and for master failures
    /// that may pass (timeouts, lost connections), false for bad configuration or input and for
    /// a key of the wrong type.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Held { .. }
                | Error::Timeout { .. }
                | Error::Unreachable { .. }
                | Error::Redis { .. }
        )
    }

    /// The address of the master this error comes from, when it comes from one.
    pub fn addr(&self) -> Option<&str> {
        match self {
            Error::Timeout { addr, .. }
            | Error::Unreachable { addr, .. }
            | Error::WrongType { addr, .. }
            | Error::Redis { addr, .. } => Some(addr),
            _ => None,
        }
    }

    /// Classifies an error from fred for the master at `addr`.
    pub(crate) fn from_fred(
        addr: &str,
        key: &str,
        timeout: Duration,
        source: fred::error::Error,
    ) -> Error {
        use fred::error::ErrorKind;
        let addr = addr.to_owned();
        if source.details().contains("WRONGTYPE") {
            return Error::WrongType {
                addr,
                key: key.to_owned(),
            };
        }
        match source.kind() {
            ErrorKind::Timeout => Error::Timeout { addr, timeout },
            ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Backpressure => {
                Error::Unreachable { addr, source }
            }
            _ => Error::Redis { addr, source },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fred_error(kind: fred::error::ErrorKind, details: &str) -> fred::error::Error {
        fred::error::Error::new(kind, details.to_owned())
    }

    #[test]
    fn classifies_fred_errors() {
        use fred::error::ErrorKind;
        let t = Duration::from_millis(50);
        let e = Error::from_fred("h:1", "k", t, fred_error(ErrorKind::Timeout, "x"));
        assert!(matches!(e, Error::Timeout { ref addr, timeout } if addr == "h:1" && timeout == t));
        let e = Error::from_fred(
            "h:1",
            "k",
            t,
            fred_error(ErrorKind::Unknown, "WRONGTYPE Operation against a key"),
        );
        assert!(matches!(e, Error::WrongType { ref key, .. } if key == "k"));
        assert!(!e.is_transient());
        let e = Error::from_fred("h:1", "k", t, fred_error(ErrorKind::IO, "refused"));
        assert!(matches!(e, Error::Unreachable { .. }));
        assert!(e.is_transient());
        assert_eq!(e.addr(), Some("h:1"));
        let e = Error::from_fred("h:1", "k", t, fred_error(ErrorKind::Unknown, "ERR oops"));
        assert!(matches!(e, Error::Redis { .. }));
        assert!(std::error::Error::source(&e).is_some());
    }
}
