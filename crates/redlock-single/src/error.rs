//! The crate's error type: one enum, one variant per thing a caller may want to match on.

use std::fmt;
use std::time::Duration;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when taking, keeping or giving back a lock.
///
/// The variants separate what a caller decides on: the lock is held by someone else
/// ([`Error::Held`]), the lock was lost ([`Error::Lost`]), the configuration or input is wrong
/// ([`Error::Config`], [`Error::InvalidResource`]), or one master failed (every other variant,
/// which names the master's address; [`Error::addr`] returns it).
///
/// A master's failure prints as `address: reason`, naming the address once and saying the
/// cause (the server's own reply where there is one); [`Error::reason`] prints the reason alone,
/// for messages that name the address themselves. The client library's error stays available
/// in the variants that carry one, as a field rather than as a `source`, so that printing the
/// chain does not repeat it.
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

    /// The master did not answer within the per-request timeout (it may be paused or
    /// overloaded). A request that timed out may still run on the master later.
    Timeout {
        /// The master's address, `host:port`.
        addr: String,
        /// The per-request timeout that passed.
        timeout: Duration,
    },

    /// The master could not be reached: no connection (refused, reset, not yet re-established).
    Unreachable {
        /// The master's address, `host:port`.
        addr: String,
        /// What the client saw.
        cause: fred::error::Error,
    },

    /// So many requests to this master were still waiting for an answer that this one was
    /// refused at once (the master is paused or far behind).
    Overloaded {
        /// The master's address, `host:port`.
        addr: String,
        /// The bound on requests in flight to one master.
        limit: usize,
    },

    /// The master refused the credentials or the command: `NOAUTH`, `WRONGPASS` or `NOPERM`
    /// (an ACL user without a command the protocol needs; `docs/operations.md` lists them).
    Denied {
        /// The master's address, `host:port`.
        addr: String,
        /// The server's reply.
        cause: fred::error::Error,
    },

    /// The TLS handshake failed, or the server does not speak TLS on that port.
    Tls {
        /// The master's address, `host:port`.
        addr: String,
        /// What the client saw.
        cause: fred::error::Error,
    },

    /// The lock's key or its fencing counter holds a value of another type on the master:
    /// something other than this library stored data under the lock's name.
    WrongType {
        /// The master's address, `host:port`.
        addr: String,
        /// The key that holds the foreign value.
        key: String,
    },

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
        reason: Box<Error>,
    },

    /// The master is a Redis Cluster node: it redirected the request to another node or has
    /// the key's slot down (`MOVED`, `ASK`, `CLUSTERDOWN`). A lock needs independent masters,
    /// each a whole server holding every key: not the nodes of one cluster.
    Cluster {
        /// The master's address, `host:port`.
        addr: String,
        /// The server's reply.
        cause: fred::error::Error,
    },

    /// Any other error reported by the master or the client library.
    Redis {
        /// The master's address, `host:port`.
        addr: String,
        /// The error as reported.
        cause: fred::error::Error,
    },
}

impl Error {
    /// Whether trying again later may succeed: true for a held lock and for master failures
    /// that may pass (timeouts, lost connections, restarts), false for bad configuration or
    /// input, refused credentials, TLS failures, a cluster node and a key of the wrong type.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Held { .. }
            | Error::Timeout { .. }
            | Error::Unreachable { .. }
            | Error::Overloaded { .. }
            | Error::Restarting { .. }
            | Error::Redis { .. } => true,
            Error::Unverified { reason, .. } => reason.is_transient(),
            _ => false,
        }
    }

    /// The address of the master this error comes from, when it comes from one.
    pub fn addr(&self) -> Option<&str> {
        match self {
            Error::Timeout { addr, .. }
            | Error::Unreachable { addr, .. }
            | Error::Overloaded { addr, .. }
            | Error::Denied { addr, .. }
            | Error::Tls { addr, .. }
            | Error::WrongType { addr, .. }
            | Error::Restarting { addr, .. }
            | Error::Unverified { addr, .. }
            | Error::Cluster { addr, .. }
            | Error::Redis { addr, .. } => Some(addr),
            _ => None,
        }
    }

    /// The message without the master's address in front: for messages that name the master
    /// themselves.
    pub fn reason(&self) -> Reason<'_> {
        Reason(self)
    }

    /// Classifies an error from fred for the master at `addr`; `blame` names the keys of the
    /// request, so that a wrong type names the key that holds it.
    pub(crate) fn from_fred(
        addr: &str,
        blame: Blame<'_>,
        timeout: Duration,
        cause: fred::error::Error,
    ) -> Error {
        use fred::error::ErrorKind;
        let addr = addr.to_owned();
        let details = cause.details();
        // A script whose keys hash to several slots is refused only by a cluster node.
        if details.starts_with("CROSSSLOT") {
            return Error::Cluster { addr, cause };
        }
        if details.contains("WRONGTYPE") {
            // The scripts say which key is wrong when it is not the one a command named.
            let key = match blame {
                Blame::Lock(k) if details.contains("fencing counter") => k.fence_key(),
                Blame::Lock(k) => k.key(),
                Blame::Restart(k) if details.contains("incarnation") => k.incarnation(),
                Blame::Restart(k) => k.delay(),
                Blame::Nothing => "",
            };
            return Error::WrongType {
                addr,
                key: key.to_owned(),
            };
        }
        // A script's command refused by the ACL reads "The user executing the script can't run
        // this command" before Redis 7.2 and NOPERM after.
        if ["NOAUTH", "WRONGPASS", "NOPERM", "can't run this command"]
            .iter()
            .any(|code| details.contains(code))
            || cause.kind() == &ErrorKind::Auth
        {
            return Error::Denied { addr, cause };
        }
        match cause.kind() {
            ErrorKind::Timeout => Error::Timeout { addr, timeout },
            #[cfg(feature = "tls")]
            ErrorKind::Tls => Error::Tls { addr, cause },
            ErrorKind::Cluster => Error::Cluster { addr, cause },
            ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Backpressure => {
                Error::Unreachable { addr, cause }
            }
            _ => Error::Redis { addr, cause },
        }
    }
}

/// The message of an I/O error that fred passes on as its debug text (`Os { code: 111, kind:
/// ConnectionRefused, message: "Connection refused" }`): the message alone.
fn io_text(details: &str) -> &str {
    if let Some(rest) = details.strip_prefix("Os {") {
        if let Some((_, message)) = rest.split_once("message: \"") {
            return message.trim_end_matches(" }").trim_end_matches('"');
        }
    }
    if let Some(rest) = details.strip_prefix("Custom { kind: ") {
        if let Some((_, error)) = rest.split_once(", error: ") {
            return error.trim_end_matches(" }").trim_matches('"');
        }
    }
    details
}

/// The error of a failed connection to a TLS port when the TLS handshake is what failed:
/// rustls reports its failures as `InvalidData` I/O errors, which fred passes on as their debug
/// text; this turns them into [`Error::Tls`] with a readable reason.
#[cfg(feature = "tls")]
pub(crate) fn tls_handshake(addr: &str, cause: &fred::error::Error) -> Option<Error> {
    let inner = cause
        .details()
        .strip_prefix("Custom { kind: InvalidData, error: ")?
        .strip_suffix(" }")?;
    let within = |prefix: &str| inner.strip_prefix(prefix)?.strip_suffix(')');
    let reason = if let Some(alert) = within("AlertReceived(") {
        format!("the server ended the handshake with alert {alert}")
    } else if let Some(why) = within("InvalidCertificate(") {
        format!("the server's certificate was refused: {why}")
    } else if let Some(what) = within("InvalidMessage(") {
        format!("the server does not speak TLS on this port ({what})")
    } else {
        format!("the handshake failed: {inner}")
    };
    Some(Error::Tls {
        addr: addr.to_owned(),
        cause: fred::error::Error::new(fred::error::ErrorKind::Tls, reason),
    })
}

/// The keys a request works on, for naming the one that holds a value of the wrong type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Blame<'a> {
    Nothing,
    Lock(&'a crate::LockKey),
    Restart(&'a crate::RestartKeys),
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
            Error::Timeout { timeout, .. } => write!(f, "no answer within {timeout:.1?}"),
            Error::Unreachable { cause, .. } => {
                write!(f, "unreachable: {}", io_text(cause.details()))
            }
            Error::Overloaded { limit, .. } => write!(
                f,
                "{limit} requests are already waiting for an answer; refused at once"
            ),
            Error::Denied { cause, .. } => write!(f, "refused: {}", cause.details()),
            Error::Tls { cause, .. } => write!(f, "TLS failed: {}", cause.details()),
            Error::WrongType { key, .. } => write!(
                f,
                "key {key:?} holds a value that is not a lock's (wrong type)"
            ),
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
            Error::Cluster { cause, .. } => write!(
                f,
                "a Redis Cluster node ({}): a lock needs independent masters, not the nodes of a cluster",
                cause.details()
            ),
            Error::Redis { cause, .. } => f.write_str(cause.details()),
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

impl std::error::Error for Error {}

/// A duration rounded to a tenth of a second, for messages (29.0s, not 28.999612386s).
pub fn round_tenth(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().div_ceil(100).saturating_mul(100) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fred_error(kind: fred::error::ErrorKind, details: &str) -> fred::error::Error {
        fred::error::Error::new(kind, details.to_owned())
    }

    #[test]
    fn an_unreachable_master_reads_without_debug_text() {
        use fred::error::ErrorKind;
        for (details, shown) in [
            (
                "Os { code: 104, kind: ConnectionReset, message: \"Connection reset by peer\" }",
                "h:1: unreachable: Connection reset by peer",
            ),
            (
                "Custom { kind: Other, error: \"no route\" }",
                "h:1: unreachable: no route",
            ),
            (
                "the connection closed",
                "h:1: unreachable: the connection closed",
            ),
        ] {
            let e = Error::Unreachable {
                addr: "h:1".into(),
                cause: fred_error(ErrorKind::IO, details),
            };
            assert_eq!(e.to_string(), shown);
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn a_failed_tls_handshake_reads_as_tls_without_debug_text() {
        use fred::error::ErrorKind;
        for (details, reason) in [
            (
                "Custom { kind: InvalidData, error: AlertReceived(CertificateRequired) }",
                "h:1: TLS failed: the server ended the handshake with alert CertificateRequired",
            ),
            (
                "Custom { kind: InvalidData, error: InvalidMessage(InvalidContentType) }",
                "h:1: TLS failed: the server does not speak TLS on this port (InvalidContentType)",
            ),
        ] {
            let e = tls_handshake("h:1", &fred_error(ErrorKind::IO, details)).expect("tls");
            assert_eq!(e.to_string(), reason);
            assert!(!e.is_transient());
        }
        let refused = fred_error(ErrorKind::IO, "Os { code: 111, kind: ConnectionRefused }");
        assert!(tls_handshake("h:1", &refused).is_none());
    }

    #[test]
    fn classifies_fred_errors() {
        use fred::error::ErrorKind;
        let t = Duration::from_millis(50);
        let key = crate::LockKey::new("p:", "r").expect("key");
        let e = Error::from_fred(
            "h:1",
            Blame::Nothing,
            t,
            fred_error(ErrorKind::Timeout, "x"),
        );
        assert!(matches!(e, Error::Timeout { ref addr, timeout } if addr == "h:1" && timeout == t));
        let e = Error::from_fred(
            "h:1",
            Blame::Lock(&key),
            t,
            fred_error(ErrorKind::Unknown, "WRONGTYPE Operation against a key"),
        );
        assert!(matches!(e, Error::WrongType { ref key, .. } if key == "p:{r}"));
        assert!(!e.is_transient());
        let e = Error::from_fred(
            "h:1",
            Blame::Lock(&key),
            t,
            fred_error(
                ErrorKind::Unknown,
                "WRONGTYPE fencing counter is not an integer",
            ),
        );
        assert!(
            matches!(e, Error::WrongType { ref key, .. } if key == "p:{r}:fence"),
            "{e}"
        );
        let e = Error::from_fred(
            "h:1",
            Blame::Nothing,
            t,
            fred_error(ErrorKind::IO, "refused"),
        );
        assert!(matches!(e, Error::Unreachable { .. }));
        assert!(e.is_transient());
        assert_eq!(e.addr(), Some("h:1"));
        for reply in [
            "NOAUTH Authentication required.",
            "WRONGPASS invalid username-password pair",
            "ERR Error running script: NOPERM this user has no permissions",
        ] {
            let e = Error::from_fred(
                "h:1",
                Blame::Nothing,
                t,
                fred_error(ErrorKind::Unknown, reply),
            );
            assert!(matches!(e, Error::Denied { .. }), "{reply}: {e:?}");
            assert!(!e.is_transient());
        }
        for reply in [
            "CROSSSLOT Keys in request don't hash to the same slot",
            "MOVED 3999 127.0.0.1:6381",
            "ASK 3999 127.0.0.1:6381",
            "CLUSTERDOWN Hash slot not served",
        ] {
            let e = Error::from_fred(
                "h:1",
                Blame::Nothing,
                t,
                fred_error(
                    if reply.starts_with("CROSSSLOT") {
                        ErrorKind::Unknown
                    } else {
                        ErrorKind::Cluster
                    },
                    reply,
                ),
            );
            assert!(matches!(e, Error::Cluster { .. }), "{reply}: {e:?}");
            assert!(!e.is_transient());
            assert!(
                e.to_string().starts_with("h:1: a Redis Cluster node ("),
                "{e}"
            );
        }
        let e = Error::from_fred(
            "h:1",
            Blame::Nothing,
            t,
            fred_error(ErrorKind::Unknown, "ERR oops"),
        );
        assert!(matches!(e, Error::Redis { .. }));
    }

    #[test]
    fn messages_name_the_master_once_and_say_the_cause() {
        let e = Error::Denied {
            addr: "127.0.0.1:7000".into(),
            cause: fred_error(
                fred::error::ErrorKind::Auth,
                "NOAUTH Authentication required.",
            ),
        };
        assert_eq!(
            e.to_string(),
            "127.0.0.1:7000: refused: NOAUTH Authentication required."
        );
        let e = Error::Unverified {
            addr: "127.0.0.1:7000".into(),
            recheck_in: Duration::from_millis(940),
            reason: Box::new(Error::Timeout {
                addr: "127.0.0.1:7000".into(),
                timeout: Duration::from_millis(50),
            }),
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
