//! What the command-line tests share: masters, running the built binary, waiting for events.
#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use redlock_testkit::{RedisGroup, RedisServer};

/// The binary under test: this build's, or another given in `REDLOCK_CLI_TEST_BIN` (to run
/// these tests against an older build and see which of them it fails).
pub fn bin() -> String {
    std::env::var("REDLOCK_CLI_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_redlock").into())
}

/// `n` fresh masters that persist every write, vouched for so that they vote at once.
pub fn masters_n(n: usize) -> RedisGroup {
    RedisGroup::persistent(n).expect("start masters")
}

/// Three of them.
pub fn masters() -> RedisGroup {
    masters_n(3)
}

pub fn nodes(g: &RedisGroup) -> String {
    g.urls().join(",")
}

/// The tool with `args`, no REDLOCK_* settings from the environment, stdin from /dev/null.
pub fn redlock(args: &[&str]) -> Command {
    redlock_under(&[], args)
}

/// The same, run by `wrapper` (a program and its arguments that exec the tool last, as
/// `taskset -c 0`); the tool alone when `wrapper` is empty.
pub fn redlock_under(wrapper: &[&str], args: &[&str]) -> Command {
    let bin = bin();
    let (program, before) = match wrapper.split_first() {
        Some((program, rest)) => (*program, rest),
        None => (bin.as_str(), &[][..]),
    };
    let mut c = Command::new(program);
    c.args(before);
    if !wrapper.is_empty() {
        c.arg(&bin);
    }
    c.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("REDLOCK_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

pub fn run(args: &[&str]) -> Output {
    redlock(args).output().expect("run redlock")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Polls `check` every 10 ms until it holds, for at most `bound`: a bound on a wait for an
/// event, so that a hang fails the test instead of blocking it.
pub fn wait_for(bound: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + bound;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check()
}

pub fn has_key(s: &RedisServer, key: &str) -> bool {
    s.cmd(&["EXISTS", key]).expect("EXISTS").as_int() == Some(1)
}

pub fn key_on_any(g: &RedisGroup, key: &str) -> bool {
    g.iter().any(|s| has_key(s, key))
}

/// Whether `pid` runs (a zombie waiting for its reaper does not).
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| s.state != "Z")
}

/// What `/proc/PID/stat` says of a process that is there.
pub struct Stat {
    /// `R`, `S`, `Z`, …
    pub state: String,
    pub group: i32,
}

pub fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's name (in parentheses, which may hold anything): state, parent, group.
    let mut fields = text.rsplit(')').next()?.split_whitespace();
    let state = fields.next()?.to_owned();
    let group = fields.nth(1)?.parse().ok()?;
    Some(Stat { state, group })
}

/// The processes there are now.
pub fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

/// The pid written to `file` by the command under test, once it is there.
pub fn pid_in(file: &std::path::Path) -> i32 {
    assert!(
        wait_for(Duration::from_secs(20), || fs::read_to_string(file)
            .is_ok_and(|p| p.trim().parse::<i32>().is_ok())),
        "{} was never written",
        file.display()
    );
    fs::read_to_string(file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid")
}

pub fn pid_of(child: &std::process::Child) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"))
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
