//! The protocol's errors: [`MasterError`], the failure of one master (its address and what
//! went wrong, [`MasterErrorKind`]), as every request of the [`Master`](crate::Master) and
//! [`Connection`](crate::Connection) traits returns it; and [`InputError`], a setting or name
//! refused before anything is sent. Both lock types wrap them: [`Error::Master`](crate::Error::Master)
//! here, `Cause::Failed` in a quorum's failures.

use std::fmt;
use std::time::Duration;

/// A failure of one master: where, and what.
///
/// Prints as `address: reason`; [`reason`](MasterError::reason) prints the reason alone, for
/// messages that name the master themselves. The client library's error stays available in
/// the kinds that carry one, as a field rather than as a `source`, so that printing the chain
/// does not repeat it.
#[derive(Debug, Clone)]
pub struct MasterError {
    addr: String,
    kind: MasterErrorKind,
}

/// A setting or an input that cannot work, found before anything is sent: what the
/// protocol's constructors (a [`LockKey`](crate::LockKey), a [`Node`](crate::Node), the
/// [`LockOptions`](crate::LockOptions)' checks) fail with. The lock types turn it into their
/// own `Config` and `InvalidResource` variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// A setting that cannot work; the message says which and why.
    Config(String),
    /// The resource name cannot be used as a lock name (empty, or longer than
    /// [`MAX_RESOURCE_LEN`](crate::MAX_RESOURCE_LEN)).
    InvalidResource {
        /// The name as given.
        resource: String,
        /// Why it was refused.
        reason: &'static str,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Config(msg) => write!(f, "invalid configuration: {msg}"),
            InputError::InvalidResource { resource, reason } => {
                write!(
                    f,
                    "invalid resource name {}: {reason}",
                    crate::error::Shown(resource)
                )
            }
        }
    }
}

impl std::error::Error for InputError {}

/// What went wrong on one master.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MasterErrorKind {
    /// The master did not answer within the per-request timeout (it may be paused or
    /// overloaded). A request that timed out may still run on the master later.
    Timeout {
        /// The timeout that passed.
        timeout: Duration,
    },

    /// The master could not be reached: no connection (refused, reset, not yet re-established).
    Unreachable {
        /// What the client saw.
        cause: fred::error::Error,
    },

    /// So many requests to this master were still waiting for an answer that this one was
    /// refused at once, before it was sent (the master is paused or far behind).
    Overloaded {
        /// The bound on requests in flight to one master.
        limit: usize,
    },

    /// The master refused the credentials or the command: `NOAUTH`, `WRONGPASS` or `NOPERM`
    /// (an ACL user without a command the protocol needs; `docs/operations.md` lists them).
    Denied {
        /// The server's reply.
        cause: fred::error::Error,
    },

    /// The TLS handshake failed, or the server does not speak TLS on that port.
    Tls {
        /// What the client saw.
        cause: fred::error::Error,
    },

    /// The lock's key or its fencing counter holds a value of another type on the master:
    /// something other than this library stored data under the lock's name.
    WrongType {
        /// The key that holds the foreign value.
        key: String,
    },

    /// The master is a Redis Cluster node: it redirected the request to another node or has
    /// the key's slot down (`MOVED`, `ASK`, `CLUSTERDOWN`). A lock needs independent masters,
    /// each a whole server holding every key: not the nodes of one cluster.
    Cluster {
        /// The server's reply.
        cause: fred::error::Error,
    },

    /// Any other error the master replied with, or a reply the protocol does not expect.
    Reply {
        /// The error as reported.
        cause: fred::error::Error,
    },
}

impl MasterError {
    /// The error `kind` of the master at `addr` (`host:port`).
    pub fn new(addr: impl Into<String>, kind: MasterErrorKind) -> MasterError {
        MasterError {
            addr: addr.into(),
            kind,
        }
    }

    /// The master's address, `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// What went wrong.
    pub fn kind(&self) -> &MasterErrorKind {
        &self.kind
    }

    /// Whether trying again later may succeed: true for timeouts, lost connections, a full
    /// request queue and other replies; false for refused credentials, TLS failures, a cluster
    /// node and a key of the wrong type, which need someone to fix them.
    pub fn is_transient(&self) -> bool {
        use MasterErrorKind as K;
        match self.kind {
            K::Timeout { .. } | K::Unreachable { .. } | K::Overloaded { .. } | K::Reply { .. } => {
                true
            }
            K::Denied { .. } | K::Tls { .. } | K::WrongType { .. } | K::Cluster { .. } => false,
        }
    }

    /// Whether the request was refused before it was sent ([`MasterErrorKind::Overloaded`]),
    /// so that the master holds nothing it asked for.
    pub fn never_sent(&self) -> bool {
        matches!(self.kind, MasterErrorKind::Overloaded { .. })
    }

    /// The message without the master's address in front.
    pub fn reason(&self) -> MasterReason<'_> {
        MasterReason(&self.kind)
    }

    /// An error that fred reported, with its text, as [`MasterErrorKind::Reply`].
    pub(crate) fn reply(addr: &str, text: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        let cause = fred::error::Error::new(fred::error::ErrorKind::Unknown, text);
        MasterError::new(addr, MasterErrorKind::Reply { cause })
    }

    /// An unreachable master, with what the client saw.
    pub(crate) fn unreachable(addr: &str, text: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        let cause = fred::error::Error::new(fred::error::ErrorKind::IO, text);
        MasterError::new(addr, MasterErrorKind::Unreachable { cause })
    }

    /// Classifies an error from fred for the master at `addr`; `blame` names the keys of the
    /// request, so that a wrong type names the key that holds it.
    pub(crate) fn from_fred(
        addr: &str,
        blame: Blame<'_>,
        timeout: Duration,
        cause: fred::error::Error,
    ) -> MasterError {
        use MasterErrorKind as K;
        use fred::error::ErrorKind;
        let details = cause.details();
        let kind = if details.starts_with("CROSSSLOT") {
            // A script whose keys hash to several slots is refused only by a cluster node.
            K::Cluster { cause }
        } else if details.contains("WRONGTYPE") {
            // The scripts say which key is wrong when it is not the one a command named.
            let key = match blame {
                Blame::Lock(k) if details.contains("fencing counter") => k.fence_key(),
                Blame::Lock(k) => k.key(),
                Blame::Restart(k) if details.contains("incarnation") => k.incarnation(),
                Blame::Restart(k) => k.delay(),
                Blame::Nothing => "",
            };
            K::WrongType {
                key: key.to_owned(),
            }
        } else if ["NOAUTH", "WRONGPASS", "NOPERM", "can't run this command"]
            .iter()
            .any(|code| details.contains(code))
            || cause.kind() == &ErrorKind::Auth
        {
            // A script's command refused by the ACL reads "The user executing the script can't
            // run this command" before Redis 7.2 and NOPERM after.
            K::Denied { cause }
        } else {
            match cause.kind() {
                ErrorKind::Timeout => K::Timeout { timeout },
                #[cfg(feature = "tls")]
                ErrorKind::Tls => K::Tls { cause },
                ErrorKind::Cluster => K::Cluster { cause },
                ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Backpressure => {
                    K::Unreachable { cause }
                }
                _ => K::Reply { cause },
            }
        };
        MasterError::new(addr, kind)
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
/// text; this turns them into [`MasterErrorKind::Tls`] with a readable reason.
#[cfg(feature = "tls")]
pub(crate) fn tls_handshake(addr: &str, cause: &fred::error::Error) -> Option<MasterError> {
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
    let cause = fred::error::Error::new(fred::error::ErrorKind::Tls, reason);
    Some(MasterError::new(addr, MasterErrorKind::Tls { cause }))
}

/// The keys a request works on, for naming the one that holds a value of the wrong type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Blame<'a> {
    Nothing,
    Lock(&'a crate::LockKey),
    Restart(&'a crate::RestartKeys),
}

/// A master error's message without its address; see [`MasterError::reason`].
#[derive(Debug)]
pub struct MasterReason<'a>(&'a MasterErrorKind);

impl fmt::Display for MasterReason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use MasterErrorKind as K;
        match self.0 {
            K::Timeout { timeout } => write!(f, "no answer within {timeout:.1?}"),
            K::Unreachable { cause } => write!(f, "unreachable: {}", io_text(cause.details())),
            K::Overloaded { limit } => write!(
                f,
                "{limit} requests are already waiting for an answer; refused at once"
            ),
            K::Denied { cause } => write!(f, "refused: {}", cause.details()),
            K::Tls { cause } => write!(f, "TLS failed: {}", cause.details()),
            K::WrongType { key } => write!(
                f,
                "key {key:?} holds a value that is not a lock's (wrong type)"
            ),
            K::Cluster { cause } => write!(
                f,
                "a Redis Cluster node ({}): a lock needs independent masters, not the nodes of a cluster",
                cause.details()
            ),
            K::Reply { cause } => f.write_str(cause.details()),
        }
    }
}

impl fmt::Display for MasterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.addr, self.reason())
    }
}

impl std::error::Error for MasterError {}

#[cfg(test)]
mod tests {
    use super::*;
    use MasterErrorKind as K;

    fn fred_error(kind: fred::error::ErrorKind, details: &str) -> fred::error::Error {
        fred::error::Error::new(kind, details.to_owned())
    }

    fn classify(blame: Blame<'_>, kind: fred::error::ErrorKind, details: &str) -> MasterError {
        MasterError::from_fred(
            "h:1",
            blame,
            Duration::from_millis(50),
            fred_error(kind, details),
        )
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
            let e = classify(Blame::Nothing, ErrorKind::IO, details);
            assert!(matches!(e.kind(), K::Unreachable { .. }), "{e:?}");
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
        let key = crate::LockKey::new("p:", "r").expect("key");
        let e = classify(Blame::Nothing, ErrorKind::Timeout, "x");
        assert_eq!(e.addr(), "h:1");
        assert!(
            matches!(e.kind(), K::Timeout { timeout } if *timeout == Duration::from_millis(50))
        );
        assert!(e.is_transient());
        let e = classify(
            Blame::Lock(&key),
            ErrorKind::Unknown,
            "WRONGTYPE Operation against a key",
        );
        assert!(matches!(e.kind(), K::WrongType { key } if key == "p:{r}"));
        assert!(!e.is_transient());
        let e = classify(
            Blame::Lock(&key),
            ErrorKind::Unknown,
            "WRONGTYPE fencing counter is not an integer",
        );
        assert!(
            matches!(e.kind(), K::WrongType { key } if key == "p:{r}:fence"),
            "{e}"
        );
        let e = classify(Blame::Nothing, ErrorKind::IO, "refused");
        assert!(matches!(e.kind(), K::Unreachable { .. }));
        assert!(e.is_transient());
        for reply in [
            "NOAUTH Authentication required.",
            "WRONGPASS invalid username-password pair",
            "ERR Error running script: NOPERM this user has no permissions",
        ] {
            let e = classify(Blame::Nothing, ErrorKind::Unknown, reply);
            assert!(matches!(e.kind(), K::Denied { .. }), "{reply}: {e:?}");
            assert!(!e.is_transient());
        }
        for reply in [
            "CROSSSLOT Keys in request don't hash to the same slot",
            "MOVED 3999 127.0.0.1:6381",
            "ASK 3999 127.0.0.1:6381",
            "CLUSTERDOWN Hash slot not served",
        ] {
            let kind = if reply.starts_with("CROSSSLOT") {
                ErrorKind::Unknown
            } else {
                ErrorKind::Cluster
            };
            let e = classify(Blame::Nothing, kind, reply);
            assert!(matches!(e.kind(), K::Cluster { .. }), "{reply}: {e:?}");
            assert!(!e.is_transient());
            assert!(
                e.to_string().starts_with("h:1: a Redis Cluster node ("),
                "{e}"
            );
        }
        let e = classify(Blame::Nothing, ErrorKind::Unknown, "ERR oops");
        assert!(matches!(e.kind(), K::Reply { .. }));
        assert!(e.is_transient());
    }

    #[test]
    fn a_refused_credential_names_the_master_once_and_says_the_reply() {
        let cause = fred_error(
            fred::error::ErrorKind::Auth,
            "NOAUTH Authentication required.",
        );
        let e = MasterError::new("127.0.0.1:7000", K::Denied { cause });
        assert_eq!(
            e.to_string(),
            "127.0.0.1:7000: refused: NOAUTH Authentication required."
        );
        assert_eq!(
            e.reason().to_string(),
            "refused: NOAUTH Authentication required."
        );
    }

    #[test]
    fn only_a_request_refused_for_a_full_queue_was_never_sent() {
        let full = MasterError::new("h:1", K::Overloaded { limit: 8 });
        assert!(full.never_sent());
        assert!(full.is_transient());
        let late = MasterError::new(
            "h:1",
            K::Timeout {
                timeout: Duration::from_millis(5),
            },
        );
        assert!(!late.never_sent());
    }
}
