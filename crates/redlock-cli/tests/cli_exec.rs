//! `redlock exec` and `redlock status` run as processes against real masters.

mod common;

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn two_execs_never_interleave() {
    let g = masters();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let log = dir.join("log");
    let script = format!(
        "echo begin $$ >> {0}; sleep 0.3; echo end $$ >> {0}",
        log.display()
    );
    let n = nodes(&g);
    let children: Vec<_> = (0..2)
        .map(|_| {
            redlock(&[
                "exec", "--nodes", &n, "--key", "job", "--wait", "20s", "--", "sh", "-c", &script,
            ])
            .spawn()
            .expect("spawn")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let text = fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for pair in lines.chunks(2) {
        let (b, e) = (pair[0], pair[1]);
        assert!(
            b.starts_with("begin ") && e.starts_with("end "),
            "interleaved: {text}"
        );
        assert_eq!(
            b["begin ".len()..],
            e["end ".len()..],
            "interleaved: {text}"
        );
    }
    assert!(!key_on_any(&g, "redlock:{job}"), "not released");
}

#[test]
fn exit_status_is_the_commands_and_fences_increase() {
    let g = masters();
    let n = nodes(&g);
    let mut last = 0u64;
    for _ in 0..3 {
        let out = run(&[
            "exec",
            "--nodes",
            &n,
            "--key",
            "f",
            "--",
            "sh",
            "-c",
            "echo $REDLOCK_FENCE $REDLOCK_KEY $REDLOCK_VALIDITY_MS",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let parts: Vec<&str> = text.split_whitespace().collect();
        let fence: u64 = parts[0].parse().expect("fence");
        assert!(fence > last, "fence {fence} after {last}");
        last = fence;
        assert_eq!(parts[1], "f");
        let validity: u64 = parts[2].parse().expect("validity");
        assert!(validity > 20_000 && validity <= 30_000, "{validity}");
    }
    let out = run(&[
        "exec", "--nodes", &n, "--key", "f", "--", "sh", "-c", "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert!(!key_on_any(&g, "redlock:{f}"));
    // A short ttl with a per-master timeout set by hand (the default would be 5 ms).
    let out = run(&[
        "exec",
        "--nodes",
        &n,
        "--key",
        "f",
        "--ttl",
        "1s",
        "--timeout",
        "200ms",
        "--",
        "sh",
        "-c",
        "echo $REDLOCK_FENCE $REDLOCK_VALIDITY_MS",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let parts: Vec<u64> = text
        .split_whitespace()
        .map(|p| p.parse().expect("number"))
        .collect();
    assert!(parts[0] > last, "fence {} after {last}", parts[0]);
    assert!(parts[1] > 0 && parts[1] <= 1000, "validity {}", parts[1]);
    assert!(!key_on_any(&g, "redlock:{f}"));
}

#[test]
fn a_held_lock_exits_75_naming_the_holder() {
    let g = masters();
    let n = nodes(&g);
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let ready = dir.join("ready");
    let mut holder = redlock(&[
        "exec",
        "--nodes",
        &n,
        "--key",
        "held",
        "--meta",
        "holder-host:4242",
        "--",
        "sh",
        "-c",
        &format!("touch {}; sleep 30", ready.display()),
    ])
    .spawn()
    .expect("spawn");
    assert!(
        wait_for(Duration::from_secs(10), || ready.exists()),
        "holder never ran"
    );
    let start = Instant::now();
    let out = run(&[
        "exec", "--nodes", &n, "--key", "held", "--wait", "0", "--", "true",
    ]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holder-host:4242"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    // --wait bounds the wait.
    let out = run(&[
        "exec", "--nodes", &n, "--key", "held", "--wait", "300ms", "--", "true",
    ]);
    assert_eq!(out.status.code(), Some(75));
    assert!(start.elapsed() >= Duration::from_millis(300));

    // status, as JSON, shows the holder on a quorum of the masters. (On a quorum, not always
    // on all three: the holder's exec took the lock as soon as a quorum was connected, and a
    // master whose connection came later was not asked.)
    let out = run(&["status", "--nodes", &n, "--key", "held", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json parses");
    assert_eq!(doc["key"], "held");
    assert!(doc["held_on"].as_u64().expect("held_on") >= 2, "{doc}");
    assert_eq!(doc["quorum"], 2);
    assert_eq!(doc["held"], true);
    let masters = doc["masters"].as_array().expect("masters");
    assert_eq!(masters.len(), 3);
    for m in masters {
        assert_eq!(m["answered"], true, "{m}");
        if m["held"] == true {
            assert_eq!(m["holder"], "holder-host:4242");
            assert!(m["ttl_ms"].as_u64().expect("ttl") > 0);
            assert!(m["fence"].as_u64().expect("fence") >= 1);
        }
    }
    // And as text, with a summary line.
    let out = run(&["status", "--nodes", &n, "--key", "held"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("(held by a quorum"), "{text}");

    // SIGTERM is passed on to the command; the tool then releases and exits.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(holder.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill holder");
    let status = holder.wait().expect("wait holder");
    assert_eq!(status.code(), Some(128 + 15), "sh died of SIGTERM");
    assert!(!key_on_any(&g, "redlock:{held}"));
}

#[test]
fn a_lost_lock_stops_the_whole_group_and_exits_76() {
    let g = masters();
    let n = nodes(&g);
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let pidfile = dir.join("grandchild");
    // sh starts a grandchild and waits for it: SIGTERM must reach both.
    let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
    let start = Instant::now();
    let tool = redlock(&[
        "exec", "--nodes", &n, "--key", "lost", "--ttl", "3s", "--wait", "10s", "--grace", "2s",
        "--", "sh", "-c", &script,
    ])
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    assert!(wait_for(Duration::from_secs(10), || fs::read_to_string(
        &pidfile
    )
    .is_ok_and(|p| !p.trim().is_empty())));
    let grandchild: i32 = fs::read_to_string(&pidfile)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    // Deleted behind the tool's back on every master.
    for s in g.iter() {
        s.cmd(&["DEL", "redlock:{lost}"]).expect("DEL");
    }
    let out = tool.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(76), "{}", stderr(&out));
    assert!(stderr(&out).contains("lost"), "{}", stderr(&out));
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "the command ran to its end"
    );
    assert!(
        wait_for(Duration::from_secs(5), || !alive(grandchild)),
        "the grandchild {grandchild} survived"
    );
}

#[test]
fn a_signal_to_the_tool_reaches_the_command_and_the_lock_is_released_after() {
    let g = masters();
    let n = nodes(&g);
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let (ready, got) = (dir.join("ready"), dir.join("got"));
    let script = format!(
        "trap 'echo term > {got}; exit 3' TERM; touch {ready}; while true; do sleep 0.05; done",
        got = got.display(),
        ready = ready.display()
    );
    let tool = redlock(&[
        "exec", "--nodes", &n, "--key", "sig", "--", "sh", "-c", &script,
    ])
    .spawn()
    .expect("spawn");
    assert!(wait_for(Duration::from_secs(10), || ready.exists()));
    assert!(key_on_any(&g, "redlock:{sig}"));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(tool.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let out = tool.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(3),
        "the command's own status: {}",
        stderr(&out)
    );
    assert_eq!(fs::read_to_string(&got).expect("trap ran").trim(), "term");
    assert!(
        !key_on_any(&g, "redlock:{sig}"),
        "the lock was not released after the command ended"
    );
}

#[test]
fn bad_arguments_exit_64_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["exec", "--key", "k", "--", "true"], "no masters"),
        (
            &[
                "exec",
                "--nodes",
                "redis://127.0.0.1:1",
                "--key",
                "",
                "--",
                "true",
            ],
            "--key",
        ),
        (
            &["exec", "--nodes", "http://x:1", "--key", "k", "--", "true"],
            "bad master URL",
        ),
        (
            &[
                "exec",
                "--nodes",
                "redis://127.0.0.1:1",
                "--key",
                "k",
                "--ttl",
                "soon",
                "--",
                "true",
            ],
            "--ttl",
        ),
        (
            &[
                "exec",
                "--nodes",
                "redis://127.0.0.1:1",
                "--key",
                "k",
                "true",
            ],
            "unexpected argument",
        ),
        (
            &["exec", "--nodes", "redis://127.0.0.1:1", "--key", "k"],
            "COMMAND",
        ),
        (
            &[
                "exec",
                "--nodes",
                "redis://127.0.0.1:1,redis://127.0.0.1:1",
                "--key",
                "k",
                "--",
                "true",
            ],
            "twice",
        ),
        (&["status", "--nodes", "redis://127.0.0.1:1"], "--key"),
        (
            &[
                "exec",
                "--nodes",
                "redis://127.0.0.1:1",
                "--key",
                "k",
                "--timeout",
                "0s",
                "--",
                "true",
            ],
            "--timeout",
        ),
        (
            &[
                "exec",
                "--nodes",
                "redis://127.0.0.1:1",
                "--key",
                "k",
                "--ttl",
                "1s",
                "--timeout",
                "2s",
                "--",
                "true",
            ],
            "request timeout 2s",
        ),
        (
            &[
                "status",
                "--nodes",
                "redis://127.0.0.1:1",
                "--key",
                "k",
                "--timeout",
                "soon",
            ],
            "--timeout",
        ),
        (&["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, needle) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    }
    // REDLOCK_NODES is read when --nodes is absent.
    let out = redlock(&["exec", "--key", "k", "--", "true"])
        .env("REDLOCK_NODES", "http://x:1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("bad master URL"));
    let help = run(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("must not run twice"));
}

#[test]
fn unreachable_masters_exit_69_with_their_addresses() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let out = run(&["exec", "--nodes", &url, "--key", "k", "--", "true"]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("127.0.0.1:{port}")),
        "{}",
        stderr(&out)
    );
    let out = run(&["status", "--nodes", &url, "--key", "k"]);
    assert_eq!(out.status.code(), Some(69));
}

#[test]
fn a_failed_attempt_leaves_none_of_its_keys_when_the_tool_exits() {
    let mut g = masters_n(5);
    for i in 0..2 {
        g[i].cmd(&["SET", "redlock:{partial}", "other-holder", "PX", "60000"])
            .expect("SET");
    }
    g[2].pause().expect("pause");
    let n = nodes(&g);
    let out = run(&["exec", "--nodes", &n, "--key", "partial", "--", "true"]);
    // Two yes, two held elsewhere, one silent: not acquired.
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    // The tool has exited: whatever it took on masters 3 and 4 is gone already.
    for i in 3..5 {
        assert_eq!(
            g[i].cmd(&["EXISTS", "redlock:{partial}"])
                .expect("EXISTS")
                .as_int(),
            Some(0),
            "master {i} still holds the failed attempt's key after the tool exited"
        );
    }
    g[2].resume().expect("resume");
    assert!(
        wait_for(Duration::from_secs(5), || g[2]
            .cmd(&["EXISTS", "redlock:{partial}"])
            .expect("EXISTS")
            .as_int()
            == Some(0)),
        "the paused master kept a key"
    );
}
