//! The fenced register: a store on a server of its own (never faulted) that accepts a write
//! only when its token is at least the last one it accepted for the resource (a holder writes
//! twice with its own token; tokens are unique), and logs every attempt in order.

use std::io;

use redlock_testkit::{Reply, command};

use crate::history::RegisterEntry;

/// The script: `KEYS[1]` the resource's last accepted token, `KEYS[2]` the log; `ARGV[1]` the
/// token, `ARGV[2]` the resource. Returns 1 if accepted.
const WRITE: &str = r#"
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = tonumber(ARGV[1])
local ok = 0
if t >= last then
  redis.call('SET', KEYS[1], ARGV[1])
  ok = 1
end
redis.call('RPUSH', KEYS[2], ARGV[2] .. ' ' .. ARGV[1] .. ' ' .. ok)
return ok
"#;

/// Writes for `resource` with `token` to the register on `port`; whether it was accepted.
pub fn write(port: u16, resource: &str, token: u64) -> io::Result<bool> {
    let key = format!("register:{resource}");
    let token = token.to_string();
    let reply = command(
        port,
        &["EVAL", WRITE, "2", &key, "register-log", &token, resource],
    )?;
    match reply.as_int() {
        Some(n) => Ok(n == 1),
        None => Err(io::Error::other(format!("register: {reply:?}"))),
    }
}

/// Every attempt the register saw, in order.
pub fn log(port: u16) -> io::Result<Vec<RegisterEntry>> {
    let reply = command(port, &["LRANGE", "register-log", "0", "-1"])?;
    let Reply::Array(Some(items)) = reply else {
        return Err(io::Error::other(format!("register log: {reply:?}")));
    };
    items
        .iter()
        .map(|item| {
            let text = item.as_str().unwrap_or_default();
            let mut parts = text.rsplitn(3, ' ');
            let ok = parts.next();
            let token = parts.next().and_then(|t| t.parse().ok());
            let resource = parts.next();
            match (resource, token, ok) {
                (Some(r), Some(t), Some(ok)) => Ok(RegisterEntry {
                    resource: r.to_owned(),
                    token: t,
                    accepted: ok == "1",
                }),
                _ => Err(io::Error::other(format!("register log entry {text:?}"))),
            }
        })
        .collect()
}
