//! The crate's error type: one enum, one variant per thing a caller may want to match on.

use std::fmt;
use std::time::Duration;

use crate::protocol::error::{InputError, MasterError, MasterErrorKind};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when taking, keeping or giving back a lock.
///
/// The variants separate what a caller decides on: the lock is held by someone else
/// ([`Error::Held`]), the lock was lost ([`Error::Lost`]), the configuration or input is wrong
/// ([`Error::Config`], [`Error::InvalidResource`]), or one master failed ([`Error::Master`],
/// and the restart guard's [`Error::Restarting`] and [`Error::Unverified`], which name the
/// master's address; [`Error::addr`] returns it).
///
/// A master's failure prints as `address: reason`, naming the address once and saying the
/// cause (the server's own reply where there is one); [`Error::reason`] prints the reason alone,
/// for messages that name the address themselves. [`Error::Master`] is the master's
/// [`MasterError`] made transparent: the same message, and the same (empty) `source`, so that
/// printing the chain does not say it twice.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given a configuration that cannot work (no master, a bad URL, a zero ttl,
    /// a timeout not smaller than the ttl, …). The message says which setting and why.
    Config(String),

    /// The resource name cannot be used as a lock name (empty, or longer than
    /// [`MAX_RESOURCE_LEN`](crate::MAX_RESOURCE_LEN)).
    InvalidResource {
        /// The name as given.
        resource: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The lock is held by someone else and the retry policy gave up waiting for it.
    Held {
        /// The resource that was asked for.
        resource: String,
    },

    /// The lock can no longer be guaranteed: an extension was refused or came too late, the
    /// validity ran out without a successful extension, or the key no longer held our token.
    Lost {
        /// The resource whose lock was lost.
        resource: String,
    },

    /// The lock was closed with `close()`: it takes no new locks.
    Closed,

    /// One master failed: timeout, connection, refused credentials, a key of the wrong type,
    /// … ([`MasterError::kind`] says which). Prints as the master's error.
    Master(MasterError),

    /// The master may have lost locks it granted (it restarted, or its data came from an earlier
    /// process) and grants nothing until the restart delay has passed.
    Restarting {
        /// The master's address, `host:port`.
        addr: String,
        /// How long until it grants locks again.
        ready_in: Duration,
    },

    /// The master's health could not be read, so whether it lost locks in a restart is
    /// unknown: it grants nothing until a reading succeeds.
    Unverified {
        /// The master's address, `host:port`.
        addr: String,
        /// How long until the next reading.
        recheck_in: Duration,
        /// Why the last reading failed.
        reason: MasterError,
    },
}

impl Error {
    /// Whether trying again later may succeed: true for a held lock, a restart delay and for
    /// master failures that may pass (timeouts, lost connections); false for bad configuration
    /// or input, refused credentials, TLS failures, a cluster node and a key of the wrong type.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Held { .. } | Error::Restarting { .. } => true,
            Error::Master(e) | Error::Unverified { reason: e, .. } => e.is_transient(),
            _ => false,
        }
    }

    /// The address of the master this error comes from, when it comes from one.
    pub fn addr(&self) -> Option<&str> {
        match self {
            Error::Master(e) => Some(e.addr()),
            Error::Restarting { addr, .. } | Error::Unverified { addr, .. } => Some(addr),
            _ => None,
        }
    }

    /// The master's error, when one master's failure is what this is.
    pub fn master(&self) -> Option<&MasterError> {
        match self {
            Error::Master(e) => Some(e),
            _ => None,
        }
    }

    /// What went wrong on the master, when one master's failure is what this is: for
    /// `matches!(e.master_kind(), Some(MasterErrorKind::Timeout { .. }))`.
    pub fn master_kind(&self) -> Option<&MasterErrorKind> {
        self.master().map(MasterError::kind)
    }

    /// The message without the master's address in front: for messages that name the master
    /// themselves.
    pub fn reason(&self) -> Reason<'_> {
        Reason(self)
    }
}

impl From<InputError> for Error {
    fn from(e: InputError) -> Error {
        match e {
            InputError::Config(msg) => Error::Config(msg),
            InputError::InvalidResource { resource, reason } => {
                Error::InvalidResource { resource, reason }
            }
        }
    }
}

impl From<MasterError> for Error {
    fn from(e: MasterError) -> Error {
        Error::Master(e)
    }
}

/// The name of a resource as shown in messages: quoted, and cut after 64 characters.
pub(crate) struct Shown<'a>(pub(crate) &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        match self.0.char_indices().nth(SHOWN) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

/// An error's message without the master's address; see [`Error::reason`].
#[derive(Debug)]
pub struct Reason<'a>(&'a Error);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Error::Config(msg) => write!(f, "invalid configuration: {msg}"),
            Error::InvalidResource { resource, reason } => {
                write!(f, "invalid resource name {}: {reason}", Shown(resource))
            }
            Error::Held { resource } => {
                write!(f, "lock {} is held by someone else", Shown(resource))
            }
            Error::Lost { resource } => write!(f, "lock {} was lost", Shown(resource)),
            Error::Closed => f.write_str("the lock was closed: it takes no new locks"),
            Error::Master(e) => write!(f, "{}", e.reason()),
            Error::Restarting { ready_in, .. } => write!(
                f,
                "may have lost locks in a restart; votes again in {:.1?}",
                round_tenth(*ready_in)
            ),
            Error::Unverified {
                recheck_in, reason, ..
            } => write!(
                f,
                "whether it lost locks in a restart is unknown, its health could not be read ({}); read again in {:.1?}",
                reason.reason(),
                round_tenth(*recheck_in)
            ),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr() {
            Some(addr) => write!(f, "{addr}: {}", self.reason()),
            None => write!(f, "{}", self.reason()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Transparent: the master's error has said everything in the message.
            Error::Master(e) => std::error::Error::source(e),
            _ => None,
        }
    }
}

/// A duration rounded to a tenth of a second, for messages (29.0s, not 28.999612386s).
pub fn round_tenth(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().div_ceil(100).saturating_mul(100) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout(addr: &str) -> MasterError {
        MasterError::new(
            addr,
            MasterErrorKind::Timeout {
                timeout: Duration::from_millis(50),
            },
        )
    }

    #[test]
    fn a_master_failure_prints_as_the_masters_error_and_names_it() {
        let e = Error::from(timeout("127.0.0.1:7000"));
        assert_eq!(e.to_string(), "127.0.0.1:7000: no answer within 50.0ms");
        assert_eq!(e.addr(), Some("127.0.0.1:7000"));
        assert!(e.is_transient());
        assert!(matches!(
            e.master_kind(),
            Some(MasterErrorKind::Timeout { .. })
        ));
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn messages_name_the_master_once_and_say_the_cause() {
        let e = Error::Unverified {
            addr: "127.0.0.1:7000".into(),
            recheck_in: Duration::from_millis(940),
            reason: timeout("127.0.0.1:7000"),
        };
        let text = e.to_string();
        assert_eq!(text.matches("127.0.0.1:7000").count(), 1, "{text}");
        assert!(text.contains("no answer within 50.0ms"), "{text}");
        assert!(text.contains("read again in 1.0s"), "{text}");
        let e = Error::Config("ttl must be at least 1 ms".into());
        assert_eq!(
            e.to_string(),
            "invalid configuration: ttl must be at least 1 ms"
        );
    }

    #[test]
    fn a_long_resource_name_is_cut_in_messages() {
        let name = "x".repeat(1 << 20);
        let e = Error::InvalidResource {
            resource: name,
            reason: "too long",
        };
        let text = e.to_string();
        assert!(text.len() < 200, "{} bytes", text.len());
        assert!(text.contains("(1048576 bytes)"), "{text}");
    }
}
