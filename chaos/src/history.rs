//! What a campaign records: each critical section (written by the client that ran it), each
//! attempt the fenced register saw, and each fault the campaign injected. Times are wall-clock
//! microseconds since the Unix epoch: every process of a campaign runs on one machine, and the
//! clock shim changes only the masters' clocks.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Now, in wall-clock microseconds.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// One critical section, as its client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// The client that held the lock.
    pub client: u32,
    /// The lock's ttl for this client.
    pub ttl_ms: u64,
    /// The resource locked.
    pub resource: String,
    /// The fencing token.
    pub token: u64,
    /// When the client began to ask for the lock.
    pub acquire_start: u64,
    /// When it had the lock.
    pub acquire_end: u64,
    /// Until when the lock was guaranteed, by the client's own reckoning (the start of the
    /// section plus the validity it was given).
    pub validity_end: u64,
    /// When the section's work ended (before the release).
    pub section_end: u64,
    /// Whether the release found the lock still ours: `None` when it was not asked (the tool
    /// mode knows only the tool's exit status, in `exit`).
    pub released: Option<bool>,
    /// The tool's exit status, in the tool mode.
    pub exit: Option<i32>,
    /// The section's writes to the fenced register, in order.
    pub writes: Vec<WriteAttempt>,
}

impl Section {
    /// The sections of a history file's text, a line each. `growing`: its client may be writing
    /// to it now, so a last line without its newline is one being written, and is left for the
    /// next reading; otherwise such a line is read like the others.
    pub fn parse_history(text: &str, growing: bool) -> Result<Vec<Section>, String> {
        let whole = if growing {
            text.rfind('\n').map_or("", |end| &text[..end])
        } else {
            text
        };
        whole
            .lines()
            .map(|line| {
                serde_json::from_str(line).map_err(|e| format!("bad history line {line:?}: {e}"))
            })
            .collect()
    }
}

/// One write of a section to the fenced register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAttempt {
    /// When the register answered.
    pub at: u64,
    /// Whether it accepted the write.
    pub accepted: bool,
}

/// One attempt the fenced register saw, in the order it saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterEntry {
    /// The resource written.
    pub resource: String,
    /// The token the write carried.
    pub token: u64,
    /// Whether the register accepted it.
    pub accepted: bool,
}

/// A fault the campaign injected, from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// What it was: `pause`, `partition-then-restart-empty`, `restart-aof`, `restart-empty`,
    /// `persistence-switch`, `clock-…`, `net-…`, `client-pause`, `pause-majority`,
    /// `restart-all-empty`.
    pub kind: String,
    /// What it hit: `m3` (a master) or `c5` (a client).
    pub target: String,
    /// When it began.
    pub start: u64,
    /// When it ended.
    pub end: u64,
    /// Whether it stays inside the assumptions under which mutual exclusion holds.
    pub inside: bool,
}

/// The section a client runs now, as its state file says while the section lasts, so that the
/// campaign can pause a client inside one and end an episode when a long one began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    /// The client's ttl (ms).
    pub ttl_ms: u64,
    /// When the section began.
    pub start: u64,
    /// When it plans to end.
    pub end: u64,
}

impl Running {
    /// The state file's text: `1 <ttl ms> <start µs> <planned end µs>` while a section runs,
    /// `0` when none does.
    pub fn text(now: Option<Running>) -> String {
        match now {
            Some(r) => format!("1 {} {} {}", r.ttl_ms, r.start, r.end),
            None => "0".to_owned(),
        }
    }

    /// The section a state file's text says runs, if any.
    pub fn parse(text: &str) -> Option<Running> {
        let mut parts = text.split(' ');
        if parts.next()? != "1" {
            return None;
        }
        let mut num = || parts.next()?.parse::<u64>().ok();
        Some(Running {
            ttl_ms: num()?,
            start: num()?,
            end: num()?,
        })
    }

    /// Writes the state file at `path` (best effort: a missed write only delays a fault).
    pub fn write(path: &std::path::Path, now: Option<Running>) {
        let _ = std::fs::write(path, Running::text(now));
    }

    /// Reads the state file at `path`.
    pub fn read(path: &std::path::Path) -> Option<Running> {
        Running::parse(&std::fs::read_to_string(path).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(token: u64) -> Section {
        Section {
            client: 1,
            ttl_ms: 1_000,
            resource: "r0".into(),
            token,
            acquire_start: 10,
            acquire_end: 20,
            validity_end: 1_000_020,
            section_end: 30,
            released: Some(true),
            exit: None,
            writes: vec![WriteAttempt {
                at: 25,
                accepted: true,
            }],
        }
    }

    #[test]
    fn a_history_line_still_being_written_waits_while_its_file_grows() {
        let one = serde_json::to_string(&section(1)).expect("json");
        let two = serde_json::to_string(&section(2)).expect("json");
        let torn = &two[..two.len() / 2];
        let text = format!("{one}\n{torn}");
        assert_eq!(Section::parse_history(&text, true), Ok(vec![section(1)]));
        assert!(Section::parse_history(&text, false).is_err());
        let text = format!("{one}\n{two}");
        assert_eq!(Section::parse_history(&text, true), Ok(vec![section(1)]));
        assert_eq!(
            Section::parse_history(&format!("{text}\n"), true),
            Ok(vec![section(1), section(2)])
        );
        assert_eq!(
            Section::parse_history(&text, false),
            Ok(vec![section(1), section(2)])
        );
        assert_eq!(Section::parse_history("", true), Ok(vec![]));
    }

    #[test]
    fn a_running_section_reads_back_as_written_and_an_idle_client_as_none() {
        let r = Running {
            ttl_ms: 4_000,
            start: 1_764_000_000_000_000,
            end: 1_764_000_002_500_000,
        };
        assert_eq!(Running::parse(&Running::text(Some(r))), Some(r));
        assert_eq!(Running::parse(&Running::text(None)), None);
        for torn in ["", "1", "1 4000 12", "1 x 1 2", "2 1 2 3"] {
            assert_eq!(Running::parse(torn), None, "{torn:?}");
        }
    }
}
