//! What the masters' replies mean: pure parsing of the scripts' answers, no I/O.

use std::time::Duration;

use fred::types::Value;

use crate::protocol::key::Holder;
use crate::protocol::master::{Health, Inspection};

/// A reply that does not have the shape the protocol gives it; says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unexpected(pub(crate) &'static str);

type Parsed<T> = Result<T, Unexpected>;

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(i) => Some(*i),
        Value::String(s) => s.parse().ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.to_string()),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// acquire: the new fencing counter, or `None` when the lock is held.
pub(crate) fn fence(value: &Value) -> Parsed<Option<u64>> {
    match value {
        Value::Null => Ok(None),
        v => integer(v)
            .and_then(|i| u64::try_from(i).ok())
            .map(Some)
            .ok_or(Unexpected("acquire: a counter or nil")),
    }
}

/// raise, extend, release: 1 when done, 0 when the key does not hold the token.
pub(crate) fn done(value: &Value) -> Parsed<bool> {
    match integer(value) {
        Some(1) => Ok(true),
        Some(0) => Ok(false),
        _ => Err(Unexpected("0 or 1")),
    }
}

/// inspect: `[value or nil, pttl in ms (negative when absent or without expiry), counter or
/// nil]`.
pub(crate) fn inspection(value: &Value) -> Parsed<Inspection> {
    let Value::Array(parts) = value else {
        return Err(Unexpected("inspect: an array"));
    };
    let [held, pttl, counter] = parts.as_slice() else {
        return Err(Unexpected("inspect: three values"));
    };
    let holder = text(held).map(|v| Holder::parse(&v));
    let ttl = integer(pttl)
        .and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis);
    let fence = match counter {
        Value::Null => 0,
        c => integer(c)
            .and_then(|i| u64::try_from(i).ok())
            .ok_or(Unexpected("inspect: a counter"))?,
    };
    Ok(Inspection { holder, ttl, fence })
}

/// A field of an INFO reply.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// health: `INFO server`, `INFO persistence`, the health script's `[incarnation or nil,
/// restart delay in ms]`, and the fsync policy from `CONFIG GET appendfsync` when it was asked
/// (`policy`).
pub(crate) fn health(
    server: &Value,
    persistence: &Value,
    keys: &Value,
    policy: Option<&str>,
) -> Parsed<Health> {
    let server = text(server).ok_or(Unexpected("INFO server: text"))?;
    let persistence = text(persistence).ok_or(Unexpected("INFO persistence: text"))?;
    let run_id = info_field(&server, "run_id")
        .filter(|r| !r.is_empty())
        .ok_or(Unexpected("INFO server: a run_id"))?
        .to_owned();
    let uptime = info_field(&server, "uptime_in_seconds")
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .ok_or(Unexpected("INFO server: an uptime"))?;
    let aof = info_field(&persistence, "aof_enabled") == Some("1");
    let Value::Array(parts) = keys else {
        return Err(Unexpected("health: an array"));
    };
    let [incarnation, delay] = parts.as_slice() else {
        return Err(Unexpected("health: two values"));
    };
    Ok(Health {
        run_id,
        uptime,
        persists_every_write: policy.map(|p| aof && p == "always"),
        incarnation: text(incarnation),
        restart_delay: millis(delay).ok_or(Unexpected("health: a restart delay"))?,
    })
}

/// delay: the restart delay in milliseconds.
pub(crate) fn millis(value: &Value) -> Option<Duration> {
    integer(value)
        .and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis)
}

/// `CONFIG GET appendfsync`: `[name, policy]` (a map in RESP3).
pub(crate) fn fsync_policy(value: &Value) -> Parsed<String> {
    match value {
        Value::Array(parts) => match parts.as_slice() {
            [_, policy] => text(policy),
            _ => None,
        },
        Value::Map(map) => map.clone().inner().values().next().and_then(text),
        _ => None,
    }
    .ok_or(Unexpected("CONFIG GET appendfsync: the policy"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    #[test]
    fn acquire_and_done_replies() {
        assert_eq!(fence(&Value::Null), Ok(None));
        assert_eq!(
            fence(&Value::Integer(1_796_116_655_000_007)),
            Ok(Some(1_796_116_655_000_007))
        );
        assert!(fence(&Value::Integer(-1)).is_err());
        assert!(fence(&s("x")).is_err());
        assert_eq!(done(&Value::Integer(1)), Ok(true));
        assert_eq!(done(&Value::Integer(0)), Ok(false));
        assert!(done(&Value::Integer(2)).is_err());
    }

    #[test]
    fn inspect_replies() {
        let seen = inspection(&Value::Array(vec![
            s("0123456789abcdef0123456789abcdef host:1"),
            Value::Integer(1500),
            s("42"),
        ]))
        .expect("valid");
        assert_eq!(seen.holder.expect("held").meta, "host:1");
        assert_eq!(seen.ttl, Some(Duration::from_millis(1500)));
        assert_eq!(seen.fence, 42);
        let free = inspection(&Value::Array(vec![
            Value::Null,
            Value::Integer(-2),
            Value::Null,
        ]))
        .expect("valid");
        assert_eq!((free.holder, free.ttl, free.fence), (None, None, 0));
        assert!(inspection(&Value::Array(vec![Value::Null])).is_err());
        assert!(inspection(&Value::Array(vec![Value::Null, Value::Null, s("x")])).is_err());
    }

    #[test]
    fn health_replies() {
        let server =
            s("# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\nuptime_in_seconds:42\r\n");
        let persistence = s("# Persistence\r\nloading:0\r\naof_enabled:1\r\n");
        let parse = |inc: Value, policy| {
            health(
                &server,
                &persistence,
                &Value::Array(vec![inc, s("30000")]),
                policy,
            )
        };
        let h = parse(Value::Null, Some("always")).expect("valid");
        assert_eq!(h.run_id, "abc123");
        assert_eq!(h.uptime, Duration::from_secs(42));
        assert_eq!(h.persists_every_write, Some(true));
        assert_eq!(h.incarnation, None);
        assert_eq!(h.restart_delay, Duration::from_secs(30));
        let h = parse(s("abc123"), Some("everysec")).expect("valid");
        assert_eq!(h.persists_every_write, Some(false));
        assert_eq!(h.incarnation.as_deref(), Some("abc123"));
        assert_eq!(
            parse(Value::Null, None)
                .expect("valid")
                .persists_every_write,
            None
        );
        let keys = Value::Array(vec![Value::Null, s("1")]);
        assert!(health(&s("uptime_in_seconds:1"), &persistence, &keys, None).is_err());
        assert_eq!(
            fsync_policy(&Value::Array(vec![s("appendfsync"), s("always")])),
            Ok("always".into())
        );
    }
}
