//! The campaign catches broken builds: a switch that turns a defence off makes its check fail,
//! and the build as it ships passes the campaign with every fault inside the assumptions. Each
//! test runs the campaign's binary against real masters. A run that expects a violation stops
//! as soon as the histories show one (seconds, usually); `BOUND` is only how long it may take
//! before the test gives up. The broken builds get the faults that exercise the defence they
//! lack: with mixed ttls, episodes that cut a minority off, so that a lock of the longest ttl
//! is taken on a bare quorum, then restart one master of that quorum empty (for the restart
//! guard, and for a restart delay taken from one client's own ttl); every master losing its
//! data at once (for the fencing counter).

use std::process::Command;

/// The longest a run that expects a violation may take.
const BOUND: &str = "180s";

fn campaign(faults: &str, broken: &str, expect: Option<&str>, seed: &str) -> (bool, String) {
    let out = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_redlock-chaos"));
    let duration = if expect.is_some() { BOUND } else { "60s" };
    cmd.args(["run", "--duration", duration, "--seed", seed])
        .args(["--faults", faults, "--broken", broken, "--out"])
        .arg(out.path());
    if let Some(check) = expect {
        cmd.args(["--expect-violation", check]);
    }
    let o = cmd.output().expect("run the campaign");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn the_restart_guard_off_breaks_mutual_exclusion_and_the_checker_says_so() {
    let (ok, text) = campaign(
        "partition,ttls",
        "guard-off",
        Some("mutual exclusion"),
        "11",
    );
    assert!(ok, "no overlap found with the restart guard off:\n{text}");
}

#[test]
fn a_restart_delay_from_the_own_ttl_only_breaks_mutual_exclusion_and_the_checker_says_so() {
    let (ok, text) = campaign("partition,ttls", "own-ttl", Some("mutual exclusion"), "12");
    assert!(
        ok,
        "no overlap found with the restart delay from the own ttl only:\n{text}"
    );
}

#[test]
fn plain_incr_counters_break_fencing_and_the_checker_says_so() {
    let (ok, text) = campaign(
        "restart-all-empty,ttls",
        "plain-counter",
        Some("fencing"),
        "13",
    );
    assert!(
        ok,
        "no fencing violation found with plain counters:\n{text}"
    );
}

#[test]
fn the_build_as_it_ships_passes_the_campaign_inside_the_assumptions() {
    let (ok, text) = campaign("inside", "none", None, "14");
    assert!(ok, "the campaign failed:\n{text}");
    assert!(
        text.contains("| overlaps under the assumptions         |              0 |"),
        "{text}"
    );
}
