//! The five Lua scripts of the per-master protocol. Each runs atomically on its master.
//!
//! `KEYS[1]` is the lock key, `KEYS[2]` the fencing counter. A value under the lock key is the
//! holder's token, optionally followed by a space and metadata; "holds `token`" means the value
//! is the token or starts with the token and a space.
//!
//! Redis does not roll a script back when a command in it fails, so a script that fails half
//! way undoes its own writes before reporting (acquire deletes the key it set when the counter
//! turns out not to be a counter).

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
/// The counter is checked only when INCR fails, after the SET: the common path is SET + INCR,
/// and a failed INCR deletes the key it just set before reporting, so nothing is left behind.
pub const ACQUIRE: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local c = redis.pcall('INCR', KEYS[2])
  if type(c) == 'table' and c['err'] then
    redis.call('DEL', KEYS[1])
    return redis.error_reply('WRONGTYPE fencing counter is not an integer: ' .. c['err'])
  end
  return c
end
if redis.call('TYPE', KEYS[1])['ok'] ~= 'string' then
  return redis.error_reply('WRONGTYPE lock key holds a value that is not a lock')
end
return false
"#;

/// raise(key, fence; token, t) → 1 after setting the counter to max(counter, t), 0 if not held.
pub const RAISE: &str = concat!(
    unless_held_return_0!(),
    r#"local c = redis.call('GET', KEYS[2])
if c and not string.match(c, '^%d+$') then
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
