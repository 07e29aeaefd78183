//! Names and values on the server: the lock key and fencing key of a resource, the random
//! token, and how the token and the holder's metadata share one string value.

use std::fmt;

use fred::bytes_utils::Str;

use crate::error::{Error, Result};

/// The default key prefix: keys are `redlock:{resource}` and `redlock:{resource}:fence`.
pub const DEFAULT_PREFIX: &str = "redlock:";

/// The two keys of one resource on a master.
///
/// The resource is wrapped in `{…}` (a Redis Cluster hash tag) so that both keys always live in
/// the same slot, which the scripts need.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockKey {
    // Shared buffers: every request of a lock clones them by reference count, not by copying.
    key: Str,
    fence_key: Str,
}

impl LockKey {
    /// The keys of `resource` under `prefix`. Fails on an empty resource name.
    pub fn new(prefix: &str, resource: &str) -> Result<LockKey> {
        if resource.is_empty() {
            return Err(Error::InvalidResource {
                resource: resource.to_owned(),
                reason: "the resource name is empty",
            });
        }
        // One buffer, `{prefix}{{resource}}:fence`, with the lock key a slice of it: made on
        // every acquire, and two `format!`s cost a cycle about 1 900 instructions.
        const FENCE: &str = ":fence";
        let mut text = String::with_capacity(prefix.len() + resource.len() + 2 + FENCE.len());
        text.push_str(prefix);
        text.push('{');
        text.push_str(resource);
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

    /// The value stored under the lock key: the token, then a space and the metadata if any.
    pub(crate) fn value_with(&self, meta: &str) -> String {
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
    fn empty_resource_is_refused() {
        let e = LockKey::new("p:", "").expect_err("empty");
        assert!(matches!(e, Error::InvalidResource { .. }), "{e}");
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
