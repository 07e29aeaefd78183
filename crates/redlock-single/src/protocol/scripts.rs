//! The Lua scripts of the per-master protocol, and their hashes, computed once per process. Each
//! runs atomically on its master.
//!
//! `KEYS[1]` is the lock key, `KEYS[2]` the fencing counter (for `health` and `delay`: the
//! restart guard's incarnation and restart delay). A value under the lock key is the
//! holder's token, optionally followed by a space and metadata; "holds `token`" means the value
//! is the token or starts with the token and a space.
//!
//! Redis does not roll a script back when a command in it fails, so a script that fails half
//! way undoes its own writes before reporting (acquire deletes the key it set when the counter
//! turns out not to be a counter).

use std::sync::LazyLock;

use fred::bytes_utils::Str;
use fred::types::Value;
use fred::types::scripts::Script;

/// The check that opens the scripts that act only for the holder: returns 0 unless the lock
/// key holds `ARGV[1]`. The plain comparison comes first: without metadata the value is the
/// token, and that is the common case. Inline rather than a Lua function, which would be a new
/// closure on every call.
macro_rules! unless_held_return_0 {
    () => {
        "local v, t = redis.call('GET', KEYS[1]), ARGV[1]
if v ~= t and not (v and string.byte(v, #t + 1) == 32 and string.sub(v, 1, #t) == t) then
  return 0
end
"
    };
}

/// acquire(key, fence; value, ttl_ms) → the new counter, or nil when held.
///
/// The counter is **hybrid**: `max(counter + 1, S × 1,000,000)`, with `S` the whole seconds of
/// the master's `TIME`, so that a master that lost its counter starts again above every token
/// issued more than a second before (`docs/safety.md`). Common path: SET + INCR, and a SET of
/// the counter only on the first acquisition of a second. A failed INCR (the counter is not a
/// counter) deletes the key just set before reporting, so nothing is left behind.
pub const ACQUIRE: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local c = redis.pcall('INCR', KEYS[2])
  if type(c) == 'table' and c['err'] then
    redis.call('DEL', KEYS[1])
    return redis.error_reply('WRONGTYPE fencing counter is not an integer: ' .. c['err'])
  end
  local floor = redis.call('TIME')[1] * 1000000
  if c < floor then
    c = floor
    redis.call('SET', KEYS[2], string.format('%d', c))
  end
  return c
end
if redis.call('TYPE', KEYS[1])['ok'] ~= 'string' then
  return redis.error_reply('WRONGTYPE lock key holds a value that is not a lock')
end
return false
"#;

/// acquire with a plain `INCR` counter: broken on purpose, for the fault campaign only (see
/// [`crate::broken`]); a master that lost its data counts again from 1.
#[cfg(feature = "broken")]
pub const ACQUIRE_PLAIN_COUNTER: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false
"#;

/// raise(key, fence; token, t) → 1 after setting the counter to max(counter, t), 0 if not held.
pub const RAISE: &str = concat!(
    unless_held_return_0!(),
    r#"local c = redis.pcall('GET', KEYS[2])
if type(c) == 'table' or (c and not string.match(c, '^%d+$')) then
  return redis.error_reply('WRONGTYPE fencing counter is not a non-negative integer')
end
if not c or tonumber(c) < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
end
return 1
"#
);

/// extend(key; token, ttl_ms) → 1 after moving the expiry, 0 if not held.
pub const EXTEND: &str = concat!(
    unless_held_return_0!(),
    r#"redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"#
);

/// release(key; token) → 1 after deleting the key, 0 if not held.
pub const RELEASE: &str = concat!(
    unless_held_return_0!(),
    r#"redis.call('DEL', KEYS[1])
return 1
"#
);

/// inspect(key, fence) → [value or nil, pttl in ms (-2 when absent), counter or nil].
pub const INSPECT: &str = r#"
return { redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2]) }
"#;

/// Raises the restart delay under `KEYS[2]` to `ARGV[1]` (milliseconds) unless it is larger
/// already, leaving the master's value in `d`: the opening of `health` and `delay`.
macro_rules! raise_delay {
    () => {
        "local d = redis.pcall('GET', KEYS[2])
if type(d) == 'table' or (d and not string.match(d, '^%d+$')) then
  return redis.error_reply('WRONGTYPE restart delay is not a number of milliseconds')
end
if not d or tonumber(d) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[1])
  d = ARGV[1]
end
"
    };
}

/// health(incarnation, delay; delay_ms) → [incarnation or false, restart delay in ms], after
/// raising the restart delay to `delay_ms`: the restart guard's keys. The server's own state
/// (run id, uptime, persistence) comes from INFO, sent as a command of its own beside it, so
/// that a user without INFO rights gets the server's reply naming the command.
pub const HEALTH: &str = concat!(
    raise_delay!(),
    r#"local i = redis.pcall('GET', KEYS[1])
if type(i) == 'table' then
  return redis.error_reply('WRONGTYPE incarnation is not a string')
end
return { i, d }
"#
);

/// delay(_, delay; delay_ms) → the restart delay in ms, after raising it to `delay_ms`.
pub const DELAY: &str = concat!(raise_delay!(), "return d\n");

/// One script, its hash as a ready argument and its source as one (cloning either only counts
/// a reference).
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) sha: Value,
    pub(crate) lua: Value,
}

impl Loaded {
    fn new(lua: &'static str) -> Loaded {
        let script = Script::from_lua(lua);
        Loaded {
            sha: Value::from(script.sha1().clone()),
            lua: Value::String(Str::from_static(lua)),
        }
    }
}

/// The scripts, hashed once per process.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) acquire: Loaded,
    pub(crate) raise: Loaded,
    pub(crate) extend: Loaded,
    pub(crate) release: Loaded,
    pub(crate) inspect: Loaded,
    pub(crate) health: Loaded,
    pub(crate) delay: Loaded,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    acquire: Loaded::new(acquire_script()),
    raise: Loaded::new(RAISE),
    extend: Loaded::new(EXTEND),
    release: Loaded::new(RELEASE),
    inspect: Loaded::new(INSPECT),
    health: Loaded::new(HEALTH),
    delay: Loaded::new(DELAY),
});

/// The acquire script: the hybrid counter's, unless the campaign broke it on purpose.
fn acquire_script() -> &'static str {
    #[cfg(feature = "broken")]
    if crate::broken::plain_counter() {
        return ACQUIRE_PLAIN_COUNTER;
    }
    ACQUIRE
}
