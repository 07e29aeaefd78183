//! Names and values on the server: the lock key and fencing key of a resource, the random
//! token, and how the token and the holder's metadata share one string value.

use std::fmt;

use fred::bytes_utils::Str;

use crate::protocol::error::InputError;

/// The default key prefix: keys are `redlock:{resource}` and `redlock:{resource}:fence`.
pub const DEFAULT_PREFIX: &str = "redlock:";

/// The longest resource name accepted, in bytes. Every request carries the name twice (the
/// lock key and the fencing counter's key), and the counter's key stays on every master for
/// ever; no lock needs a longer name.
pub const MAX_RESOURCE_LEN: usize = 1024;

/// The longest key prefix accepted, in bytes.
pub const MAX_PREFIX_LEN: usize = 256;

/// The two keys of one resource on a master.
///
/// The resource goes inside `{…}`, a Redis Cluster hash tag, so that both keys always live in
/// the same slot, which the two-key scripts need. A name may hold any character: `%` and `}`
/// are written `%25` and `%7D`, so that no name ends the tag early or makes it empty (an empty
/// tag would hash each whole key, and the two keys would fall in different slots), and two
/// different names never share a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockKey {
    // Shared buffers: every request of a lock clones them by reference count, not by copying.
    key: Str,
    fence_key: Str,
}

impl LockKey {
    /// The keys of `resource` under `prefix`. Fails with [`InputError::InvalidResource`] on an
    /// empty name or one longer than [`MAX_RESOURCE_LEN`], and with [`InputError::Config`] on a prefix
    /// that [`check_prefix`] refuses.
    pub fn new(prefix: &str, resource: &str) -> Result<LockKey, InputError> {
        if resource.is_empty() {
            return Err(InputError::InvalidResource {
                resource: resource.to_owned(),
                reason: "the resource name is empty",
            });
        }
        if resource.len() > MAX_RESOURCE_LEN {
            return Err(InputError::InvalidResource {
                resource: resource.to_owned(),
                reason: "the resource name is longer than 1024 bytes",
            });
        }
        check_prefix(prefix).map_err(InputError::Config)?;
        // One buffer, `{prefix}{{resource}}:fence`, with the lock key a slice of it: made on
        // every acquire.
        const FENCE: &str = ":fence";
        let mut text = String::with_capacity(prefix.len() + resource.len() + 2 + FENCE.len());
        text.push_str(prefix);
        text.push('{');
        if resource.bytes().any(|b| b == b'%' || b == b'}') {
            for c in resource.chars() {
                match c {
                    '%' => text.push_str("%25"),
                    '}' => text.push_str("%7D"),
                    c => text.push(c),
                }
            }
        } else {
            text.push_str(resource);
        }
        text.push('}');
        let key_len = text.len();
        text.push_str(FENCE);
        let fence_key = Str::from(text);
        Ok(LockKey {
            key: fence_key.slice(..key_len),
            fence_key,
        })
    }

    /// The key that holds the token while the lock is held.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key that holds the resource's fencing counter; it never expires.
    pub fn fence_key(&self) -> &str {
        &self.fence_key
    }

    pub(crate) fn shared_key(&self) -> &Str {
        &self.key
    }

    pub(crate) fn shared_fence_key(&self) -> &Str {
        &self.fence_key
    }
}

/// Checks a key prefix: at most [`MAX_PREFIX_LEN`] bytes, and no `{` or `}`, which would
/// change the hash tag of every key (see [`LockKey`]).
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(format!(
            "the key prefix is longer than {MAX_PREFIX_LEN} bytes"
        ));
    }
    if prefix.contains(['{', '}']) {
        return Err(format!(
            "the key prefix {prefix:?} holds a brace: the lock's keys put the resource in {{…}}, \
             a cluster hash tag, which a brace in the prefix would change"
        ));
    }
    Ok(())
}

/// The two small keys of a prefix that the restart guard keeps on every master (see
/// [`voters`](crate::voters)): the **incarnation**, the `run_id` under which clients last let
/// the master vote, and the **restart delay** in milliseconds, the largest ttl that any client
/// of the masters has used. Neither expires. Neither can be a lock's key: those always hold a
/// `{` after the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartKeys {
    incarnation: Str,
    delay: Str,
}

impl RestartKeys {
    /// The keys under `prefix` (checked with [`check_prefix`]).
    pub fn new(prefix: &str) -> Result<RestartKeys, InputError> {
        check_prefix(prefix).map_err(InputError::Config)?;
        Ok(RestartKeys {
            incarnation: format!("{prefix}incarnation").into(),
            delay: format!("{prefix}restart-delay").into(),
        })
    }

    /// The key of the incarnation: `{prefix}incarnation`.
    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// The key of the restart delay: `{prefix}restart-delay`.
    pub fn delay(&self) -> &str {
        &self.delay
    }

    pub(crate) fn shared(&self) -> (&Str, &Str) {
        (&self.incarnation, &self.delay)
    }
}

/// A random 128-bit value, written as 32 lowercase hex digits, that identifies one acquisition.
///
/// Only the holder knows it, so only the holder can extend or release the lock.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(Str);

/// The length of a token in characters.
pub const TOKEN_LEN: usize = 32;

impl Token {
    /// A fresh token from the thread's cryptographically secure generator.
    pub fn random() -> Token {
        Token(format!("{:032x}", rand::random::<u128>()).into())
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token as a shared buffer, for requests.
    pub(crate) fn shared(&self) -> &Str {
        &self.0
    }

    /// The value stored under the lock key: the token, then a space and the metadata if any
    /// (what [`Holder::parse`] reads back). For implementations of [`Connection`](crate::Connection).
    pub fn value_with(&self, meta: &str) -> String {
        if meta.is_empty() {
            self.0.to_string()
        } else {
            format!("{} {meta}", &*self.0)
        }
    }
}

// The token is a secret of the holder: keep it out of logs that print a guard.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}…)", &self.0[..8.min(self.0.len())])
    }
}

/// Who holds a lock on one master, as read back from its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holder's token.
    pub token: String,
    /// The metadata the holder stored with it (for example `host:pid`), empty if none.
    pub meta: String,
}

impl Holder {
    /// Splits a stored value into token and metadata. A value that another program wrote comes
    /// back whole as the token, with empty metadata.
    pub fn parse(value: &str) -> Holder {
        match value.split_once(' ') {
            Some((token, meta)) if token.len() == TOKEN_LEN => Holder {
                token: token.to_owned(),
                meta: meta.to_owned(),
            },
            _ => Holder {
                token: value.to_owned(),
                meta: String::new(),
            },
        }
    }

    /// Whether this is the holder of `token`.
    pub fn is(&self, token: &Token) -> bool {
        self.token == token.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_hash_tag() {
        let k = LockKey::new("redlock:", "invoices/42").expect("valid");
        assert_eq!(k.key(), "redlock:{invoices/42}");
        assert_eq!(k.fence_key(), "redlock:{invoices/42}:fence");
    }

    #[test]
    fn empty_and_overlong_resources_are_refused() {
        let e = LockKey::new("p:", "").expect_err("empty");
        assert!(matches!(e, InputError::InvalidResource { .. }), "{e}");
        let e = LockKey::new("p:", &"x".repeat(MAX_RESOURCE_LEN + 1)).expect_err("long");
        assert!(matches!(e, InputError::InvalidResource { .. }), "{e}");
        assert!(LockKey::new("p:", &"x".repeat(MAX_RESOURCE_LEN)).is_ok());
    }

    /// Names that a hash tag handles badly, and names that an escape could confuse.
    const AWKWARD: &[&str] = &[
        "}x",
        "}",
        "{",
        "{}",
        "a}b",
        "a{b}c",
        "%",
        "%7D",
        "%25",
        "%%}}",
        "nul\0in it",
        "with spaces",
        " ",
        "é",
        "\u{fffd}",
        "💥",
        "a:fence",
        "}:fence",
        "x}:fence{",
    ];

    #[test]
    fn both_keys_of_any_name_share_one_cluster_slot() {
        use fred::util::redis_keyslot;
        for name in AWKWARD {
            let k = LockKey::new("redlock:", name).expect("valid");
            assert_eq!(
                redis_keyslot(k.key().as_bytes()),
                redis_keyslot(k.fence_key().as_bytes()),
                "{name:?}: {} and {} fall in different slots",
                k.key(),
                k.fence_key()
            );
            assert!(k.fence_key().starts_with(k.key()), "{name:?}");
        }
    }

    #[test]
    fn distinct_names_never_share_a_key() {
        let mut keys = std::collections::HashSet::new();
        for name in AWKWARD {
            let k = LockKey::new("redlock:", name).expect("valid");
            assert!(
                keys.insert(k.key().to_owned()),
                "{name:?} shares {}",
                k.key()
            );
            assert!(keys.insert(k.fence_key().to_owned()), "{name:?}");
        }
        // Neither restart key can be a lock's key.
        let restart = RestartKeys::new("redlock:").expect("valid");
        assert!(!keys.contains(restart.incarnation()) && !keys.contains(restart.delay()));
    }

    #[test]
    fn a_prefix_with_a_brace_is_refused() {
        for prefix in ["a{", "a}", "{}", "x{y}:"] {
            let e = LockKey::new(prefix, "r").expect_err(prefix);
            assert!(
                matches!(e, InputError::Config(ref m) if m.contains("brace")),
                "{prefix}: {e}"
            );
            assert!(RestartKeys::new(prefix).is_err());
        }
        assert!(LockKey::new(&"p".repeat(MAX_PREFIX_LEN + 1), "r").is_err());
        assert!(LockKey::new("", "r").is_ok());
    }

    #[test]
    fn tokens_are_random_and_fixed_length() {
        let a = Token::random();
        let b = Token::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), TOKEN_LEN);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn value_round_trips_through_holder() {
        let t = Token::random();
        let h = Holder::parse(&t.value_with("host:12 with spaces"));
        assert!(h.is(&t));
        assert_eq!(h.meta, "host:12 with spaces");
        let h = Holder::parse(&t.value_with(""));
        assert!(h.is(&t));
        assert_eq!(h.meta, "");
        let h = Holder::parse("foreign value");
        assert_eq!(h.token, "foreign value");
        assert!(!h.is(&t));
    }
}
