//! `redlock exec` as a process among processes: nothing of it is left behind on any way out
//! (a command that cannot start, a signal while it waits, the tool killed by SIGKILL), every
//! forwarded signal reaches the command, and an interactive command owns the terminal.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use nix::sys::signal::{Signal, kill};

#[test]
fn a_command_that_cannot_start_exits_127_and_leaves_no_key() {
    let g = masters();
    let n = nodes(&g);
    let out = run(&[
        "exec",
        "--nodes",
        &n,
        "--key",
        "typo",
        "--",
        "/nonexistent/command",
    ]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot run /nonexistent/command"));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(
        !key_on_any(&g, "redlock:{typo}"),
        "the lock stayed behind a command that never ran"
    );
    // And so the next host gets it at once.
    let out = run(&["exec", "--nodes", &n, "--key", "typo", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn killing_the_tool_takes_the_commands_whole_group_with_it() {
    let g = masters();
    let n = nodes(&g);
    let dir = tempfile::tempdir().expect("tempdir");
    let (sh, grandchild) = (dir.path().join("sh"), dir.path().join("grandchild"));
    let script = format!(
        "echo $$ > {}; sleep 60 & echo $! > {}; wait",
        sh.display(),
        grandchild.display()
    );
    let mut tool = redlock(&[
        "exec", "--nodes", &n, "--key", "orphan", "--grace", "2s", "--", "sh", "-c", &script,
    ])
    .spawn()
    .expect("spawn");
    let (sh, grandchild) = (pid_in(&sh), pid_in(&grandchild));
    let pid = pid_of(&tool);
    kill(pid, Signal::SIGKILL).expect("kill -9 the tool");
    tool.wait().expect("reap the tool");
    // The watchdog sees the tool's end at once; the bound only keeps a regression from hanging.
    assert!(
        wait_for(Duration::from_secs(10), || !alive(sh) && !alive(grandchild)),
        "the command outlived the tool: sh {} grandchild {}",
        alive(sh),
        alive(grandchild)
    );
    // Nor is the watchdog left behind once its work is done.
    assert!(
        wait_for(Duration::from_secs(10), || watchdogs_of(pid.as_raw())
            .is_empty()),
        "the watchdog of tool {pid} still runs: {:?}",
        watchdogs_of(pid.as_raw())
    );
}

#[test]
fn the_command_is_watched_from_its_first_instruction() {
    let g = masters();
    let n = nodes(&g);
    let dir = tempfile::tempdir().expect("tempdir");
    let sh = dir.path().join("sh");
    // The command's first act is to kill the tool; it ignores SIGTERM (as do the children it
    // starts next), so only the watchdog's SIGKILL can end it.
    let script = format!(
        "trap '' TERM; echo $$ > {}; kill -9 $PPID; sleep 60 & wait",
        sh.display()
    );
    // One CPU, first-in first-out: once the command has started, nothing else of the tree
    // runs until it blocks, so the tool is killed before it takes another step. (`taskset`
    // and `chrt` exec into the tool: their process is the tool.) Where the scheduling class
    // cannot be set (no CAP_SYS_NICE), the same run without it.
    let pinned = ["taskset", "-c", "0", "chrt", "--fifo", "1"];
    let forced = std::process::Command::new(pinned[0])
        .args(&pinned[1..])
        .arg("true")
        .status()
        .is_ok_and(|s| s.success());
    if !forced {
        eprintln!("taskset -c 0 chrt --fifo 1 is refused here: the order is left to the scheduler");
    }
    let wrapper: &[&str] = if forced { &pinned } else { &[] };
    let mut tool = redlock_under(
        wrapper,
        &[
            "exec", "--nodes", &n, "--key", "first", "--grace", "100ms", "--", "sh", "-c", &script,
        ],
    )
    .spawn()
    .expect("spawn the tool");
    let group = pid_in(&sh);
    tool.wait().expect("reap the tool");
    let outlived = !wait_for(Duration::from_secs(10), || members_of(group).is_empty());
    let left = members_of(group);
    // Not left to run for a minute after a failure.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), Signal::SIGKILL);
    assert!(
        !outlived,
        "the command's group outlived the tool that it killed at once: {left:?}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || watchdogs_of(
            pid_of(&tool).as_raw()
        )
        .is_empty()),
        "the watchdog is left behind"
    );
}

/// The live (not zombie) processes of process group `group`.
fn members_of(group: i32) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|&pid| stat(pid).is_some_and(|s| s.state != "Z" && s.group == group))
        .collect()
}

/// The processes running `redlock watch --tool <tool>`.
fn watchdogs_of(tool: i32) -> Vec<i32> {
    let wanted = format!("watch\0--tool\0{tool}\0");
    pids()
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&wanted))
                && alive(*pid)
        })
        .collect()
}

/// Spawns the tool with its stderr piped and returns the lines it writes there, as they come.
fn stderr_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let err = child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line with `needle`, returning everything read up to it.
fn line_with(lines: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {needle:?} in {seen:#?}"),
        }
    }
}

#[test]
fn a_signal_while_waiting_for_the_lock_ends_the_wait_and_leaves_no_key() {
    let g = masters();
    let n = nodes(&g);
    // Someone else holds it on two masters; our attempts take the third, then give it back.
    for s in g.iter().take(2) {
        s.cmd(&[
            "SET",
            "redlock:{busy}",
            "0123456789abcdef0123456789abcdef other-host:1",
            "PX",
            "60000",
        ])
        .expect("SET");
    }
    let mut tool = redlock(&[
        "-v", "exec", "--nodes", &n, "--key", "busy", "--wait", "60s", "--", "true",
    ])
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let lines = stderr_lines(&mut tool);
    // The first attempt's answers are logged: the tool is waiting now.
    line_with(&lines, "acquire master=");
    kill(pid_of(&tool), Signal::SIGUSR1).expect("signal the tool");
    let status = tool.wait().expect("wait");
    assert_eq!(status.code(), Some(128 + 10), "128 + SIGUSR1");
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("SIGUSR1 while waiting")),
        "{rest:#?}"
    );
    assert!(
        !has_key(&g[2], "redlock:{busy}"),
        "the interrupted attempt left its key on the free master"
    );
    for s in g.iter().take(2) {
        let v = s.cmd(&["GET", "redlock:{busy}"]).expect("GET");
        assert!(
            v.as_str().is_some_and(|v| v.ends_with("other-host:1")),
            "the holder's key was touched: {v:?}"
        );
    }
}

#[test]
fn quit_usr1_and_usr2_sent_to_the_tool_reach_the_command() {
    let g = masters();
    let n = nodes(&g);
    let dir = tempfile::tempdir().expect("tempdir");
    let (ready, got) = (dir.path().join("ready"), dir.path().join("got"));
    let script = format!(
        "for s in QUIT USR1 USR2; do trap \"echo $s >> {got}\" $s; done; trap 'exit 5' TERM; \
         touch {ready}; while true; do sleep 0.05; done",
        got = got.display(),
        ready = ready.display()
    );
    let mut tool = redlock(&[
        "exec", "--nodes", &n, "--key", "sigs", "--", "sh", "-c", &script,
    ])
    .spawn()
    .expect("spawn");
    assert!(wait_for(Duration::from_secs(20), || ready.exists()));
    for (sig, name) in [
        (Signal::SIGQUIT, "QUIT"),
        (Signal::SIGUSR1, "USR1"),
        (Signal::SIGUSR2, "USR2"),
    ] {
        kill(pid_of(&tool), sig).expect("signal the tool");
        assert!(
            wait_for(Duration::from_secs(20), || fs::read_to_string(&got)
                .is_ok_and(|t| t.lines().any(|l| l == name))),
            "{name} did not reach the command"
        );
    }
    assert!(
        alive(i32::try_from(tool.id()).expect("pid")),
        "a forwarded signal ended the tool"
    );
    kill(pid_of(&tool), Signal::SIGTERM).expect("signal the tool");
    let status = tool.wait().expect("wait");
    assert_eq!(status.code(), Some(5), "the command's own status");
    assert!(!key_on_any(&g, "redlock:{sigs}"));
}

/// Runs `command` under a pseudo-terminal made by `script(1)`, with `input` typed on it, and
/// returns what the terminal showed and the exit status.
fn under_terminal(command: &str, input: &str) -> (String, Option<i32>) {
    let mut script = std::process::Command::new("script")
        .args(["--quiet", "--return", "--command", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1), from util-linux");
    let mut stdin = script.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("type");
    let pid = script.id();
    // A command stopped on the terminal would hang: end it after a bound, and fail.
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = script.wait_with_output().expect("wait for script");
        let _ = tx.send(());
        out
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
            Signal::SIGKILL,
        );
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", command])
            .status();
        let out = waiter.join().expect("waiter");
        panic!(
            "hung under the terminal; it showed: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    drop(stdin);
    let out = waiter.join().expect("waiter");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code(),
    )
}

#[test]
fn an_interactive_command_reads_the_terminal() {
    let g = masters();
    let command = format!(
        "{} exec --nodes {} --key tty -- sh -c 'read line; echo got:$line; exit 4'",
        bin(),
        nodes(&g)
    );
    let (shown, code) = under_terminal(&command, "hello\n");
    assert!(shown.contains("got:hello"), "{shown:?}");
    assert_eq!(code, Some(4), "{shown:?}");
    assert!(!key_on_any(&g, "redlock:{tty}"));
}

#[test]
fn a_wait_on_a_terminal_says_who_holds_the_lock() {
    let g = masters();
    for s in g.iter() {
        s.cmd(&[
            "SET",
            "redlock:{shown}",
            "0123456789abcdef0123456789abcdef batch-host:77",
            "PX",
            "60000",
        ])
        .expect("SET");
    }
    let command = format!(
        "{} exec --nodes {} --key shown --wait 300ms -- true",
        bin(),
        nodes(&g)
    );
    let (shown, code) = under_terminal(&command, "");
    assert_eq!(code, Some(75), "{shown:?}");
    assert!(
        shown.contains("is held by batch-host:77; waiting for it up to 300ms"),
        "{shown:?}"
    );
}
