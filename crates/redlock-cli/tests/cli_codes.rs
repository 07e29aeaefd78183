//! Each exit status of `redlock exec` and `redlock status` from its cause, on real masters, with
//! a one-line message that names each master once.

mod common;

use std::time::Duration;

use common::*;
use redlock_testkit::{RedisServer, ServerOptions, TlsMode};

/// The one line on stderr, checked to be one line and to name `addr` exactly once.
fn one_line_naming(err: &str, addr: &str) {
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(err.matches(addr).count(), 1, "{addr} not named once: {err}");
    assert!(!err.contains("Error {"), "debug text: {err}");
}

#[test]
fn refused_credentials_exit_77_naming_the_master() {
    let server = RedisServer::start().expect("start");
    server.vouch().expect("vouch");
    // A user without EVALSHA: it connects, and the first script is refused.
    let reply = server
        .cmd(&[
            "ACL", "SETUSER", "reader", "on", ">secret", "~*", "+get", "+info", "+ping", "+hello",
            "+client",
        ])
        .expect("ACL");
    assert_eq!(reply.as_str(), Some("OK"));
    let addr = server.addr();
    let reader = format!("redis://reader:secret@{addr}");
    let out = run(&["exec", "--nodes", &reader, "--key", "k", "--", "true"]);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    one_line_naming(&stderr(&out), &addr);
    assert!(stderr(&out).contains("NOPERM"), "{}", stderr(&out));

    // A master with a password: none given, then a wrong one.
    server
        .cmd(&["CONFIG", "SET", "requirepass", "right"])
        .expect("requirepass");
    for (url, reply) in [
        (format!("redis://{addr}"), "NOAUTH"),
        (format!("redis://:wrong@{addr}"), "WRONGPASS"),
    ] {
        let out = run(&["exec", "--nodes", &url, "--key", "k", "--", "true"]);
        assert_eq!(out.status.code(), Some(77), "{url}: {}", stderr(&out));
        one_line_naming(&stderr(&out), &addr);
        assert!(stderr(&out).contains(reply), "{url}: {}", stderr(&out));
        let out = run(&["status", "--nodes", &url, "--key", "k"]);
        assert_eq!(
            out.status.code(),
            Some(77),
            "status {url}: {}",
            stderr(&out)
        );
    }
    let out = run(&[
        "exec",
        "--nodes",
        &format!("redis://:right@{addr}"),
        "--key",
        "k",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_key_of_another_type_exits_78() {
    let g = masters();
    for s in g.iter() {
        s.cmd(&["HSET", "redlock:{typed}", "field", "value"])
            .expect("HSET");
    }
    let out = run(&[
        "exec",
        "--nodes",
        &nodes(&g),
        "--key",
        "typed",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong type"), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim_end().lines().count(), 1);
}

#[test]
fn a_cluster_node_exits_78() {
    let cluster = ServerOptions {
        cluster: true,
        ..Default::default()
    };
    let a = RedisServer::start_with(cluster).expect("start");
    let b = RedisServer::start_with(cluster).expect("start");
    a.cmd(&["CLUSTER", "ADDSLOTSRANGE", "0", "8191"])
        .expect("slots");
    b.cmd(&["CLUSTER", "ADDSLOTSRANGE", "8192", "16383"])
        .expect("slots");
    a.cmd(&["CLUSTER", "MEET", "127.0.0.1", &b.port().to_string()])
        .expect("meet");
    let ok = |s: &RedisServer| {
        s.cmd(&["CLUSTER", "INFO"])
            .ok()
            .and_then(|r| r.as_str().map(|t| t.contains("cluster_state:ok")))
            .unwrap_or(false)
    };
    assert!(
        wait_for(Duration::from_secs(30), || ok(&a) && ok(&b)),
        "the two nodes never formed a cluster"
    );
    let out = run(&["exec", "--nodes", &a.url(), "--key", "job", "--", "true"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Redis Cluster node"),
        "{}",
        stderr(&out)
    );
    one_line_naming(&stderr(&out), &a.addr());
}

#[test]
fn mutual_tls_works_with_its_flags_and_a_refused_handshake_exits_78() {
    let server = RedisServer::start_with(ServerOptions {
        tls: Some(TlsMode::Mutual),
        ..Default::default()
    })
    .expect("start");
    server.vouch().expect("vouch");
    let files = server.tls_files().expect("tls files").clone();
    let url = server.tls_url().expect("tls url");
    let (ca, cert, key) = (
        files.ca_cert.display().to_string(),
        files.client_cert.display().to_string(),
        files.client_key.display().to_string(),
    );
    let out = run(&[
        "exec",
        "--nodes",
        &url,
        "--key",
        "t",
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--",
        "sh",
        "-c",
        "echo $REDLOCK_FENCE",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).trim().parse::<u64>().is_ok(),
        "{}",
        stdout(&out)
    );
    // The same from the environment, for status.
    let out = redlock(&["status", "--nodes", &url, "--key", "t"])
        .env("REDLOCK_TLS_CA", &ca)
        .env("REDLOCK_TLS_CERT", &cert)
        .env("REDLOCK_TLS_KEY", &key)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // `exec … -- true` against the TLS port with `flags`.
    let exec = |flags: &[&str]| {
        let mut args = vec!["exec", "--nodes", &url, "--key", "t"];
        args.extend_from_slice(flags);
        args.extend(["--", "true"]);
        run(&args)
    };
    // Without the client certificate the server refuses the handshake.
    let out = exec(&["--tls-ca", &ca]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    // A certificate without its key is a usage error.
    let out = exec(&["--tls-cert", &cert]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    // A CA that did not sign the server's certificate.
    let other = files.other_ca_cert.display().to_string();
    let out = exec(&["--tls-ca", &other, "--tls-cert", &cert, "--tls-key", &key]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    one_line_naming(&stderr(&out), &url["rediss://".len()..]);
    // Plain text to the TLS port: the server resets the connection, and the message says
    // what that may mean (a reset alone does not prove it, so it is not 78).
    let plain = format!("redis://127.0.0.1:{}", server.tls_port().expect("tls port"));
    let out = run(&["exec", "--nodes", &plain, "--key", "t", "--", "true"]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(stderr(&out).contains("use rediss://"), "{}", stderr(&out));
}

#[test]
fn a_paused_majority_exits_69_and_status_still_prints_every_master() {
    let mut g = masters();
    let n = nodes(&g);
    g[1].pause().expect("pause");
    g[2].pause().expect("pause");
    let out = run(&["exec", "--nodes", &n, "--key", "p", "--", "true"]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    for s in g.iter().skip(1) {
        assert_eq!(
            stderr(&out).matches(&s.addr()).count(),
            1,
            "{}",
            stderr(&out)
        );
    }

    let out = run(&["status", "--nodes", &n, "--key", "p"]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let table = stdout(&out);
    for s in g.iter() {
        assert!(table.contains(&s.addr()), "{table}");
    }
    assert!(table.contains("1 of 3 answered"), "{table}");
    assert!(
        stderr(&out).contains("only 1 of 3 masters answered"),
        "{}",
        stderr(&out)
    );
    let out = run(&["status", "--nodes", &n, "--key", "p", "--json"]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["answered"], 1, "{doc}");
    assert_eq!(doc["masters"].as_array().expect("masters").len(), 3);
    g[1].resume().expect("resume");
    g[2].resume().expect("resume");
}

#[test]
fn masters_that_just_restarted_exit_69_saying_when_they_vote() {
    // Fresh masters that nobody vouched for may have lost locks: they vote after the delay.
    let g = redlock_testkit::RedisGroup::start(3).expect("start");
    let out = run(&["exec", "--nodes", &nodes(&g), "--key", "r", "--", "true"]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(stderr(&out).contains("votes again in"), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim_end().lines().count(), 1);
}

#[test]
fn a_held_lock_exits_with_the_code_of_conflict_exit_code() {
    let g = masters();
    // Held on two of three: our attempt may take the third, and must not name itself.
    for s in g.iter().take(2) {
        s.cmd(&[
            "SET",
            "redlock:{e}",
            "0123456789abcdef0123456789abcdef night-batch:9",
            "PX",
            "60000",
        ])
        .expect("SET");
    }
    let n = nodes(&g);
    for (args, code) in [
        (vec!["-E", "3"], 3),
        (vec!["--conflict-exit-code", "0"], 0),
        (vec![], 75),
    ] {
        let mut all = vec!["exec", "--nodes", &n, "--key", "e", "--meta", "me-here"];
        all.extend(args);
        all.extend(["--", "true"]);
        let out = run(&all);
        assert_eq!(out.status.code(), Some(code), "{all:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("held by night-batch:9 ("),
            "{}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("me-here"), "{}", stderr(&out));
        assert!(!has_key(&g[2], "redlock:{e}"), "our key stayed");
    }
    let out = run(&[
        "exec", "--nodes", &n, "--key", "e", "-E", "300", "--", "true",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
}

#[test]
fn the_same_master_under_two_names_is_a_usage_error() {
    let server = RedisServer::start().expect("start");
    let p = server.port();
    let n = format!("redis://localhost:{p},redis://127.0.0.1:{p}");
    let out = run(&["exec", "--nodes", &n, "--key", "k", "--", "true"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim_end().lines().count(), 1);
}

#[test]
fn help_to_a_closed_stdout_exits_quietly() {
    for args in [&["--help"][..], &["exec", "--help"], &["--version"]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = redlock(args).stdout(writer).output().expect("run");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    let help = run(&["--help"]);
    let text = stdout(&help);
    for code in ["64", "69", "75", "76", "77", "78", "127"] {
        assert!(text.contains(&format!("  {code} ")), "--help lacks {code}");
    }
}

#[test]
fn verbose_logs_each_masters_answer_and_its_latency() {
    let g = masters();
    let n = nodes(&g);
    let out = run(&["-v", "exec", "--nodes", &n, "--key", "v", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = stderr(&out);
    let asked: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("acquire master=") && l.contains("latency="))
        .collect();
    assert!(asked.len() >= 2, "{}", stderr(&out));
    // A RUST_LOG filter instead of -v.
    let out = redlock(&["exec", "--nodes", &n, "--key", "v", "--", "true"])
        .env("RUST_LOG", "redlock=debug")
        .output()
        .expect("run");
    assert!(stderr(&out).contains("acquired fence="), "{}", stderr(&out));
    // And nothing without either.
    let out = run(&["exec", "--nodes", &n, "--key", "v", "--", "true"]);
    assert_eq!(stderr(&out), "");
}

#[test]
fn every_setting_has_a_flag_and_an_environment_variable() {
    let g = masters();
    for s in g.iter() {
        s.vouch_with_prefix("jobs:").expect("vouch");
        s.vouch_with_prefix("env:").expect("vouch");
    }
    let n = nodes(&g);
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    // --max-extensions 0: the lock is never extended, so the command is stopped when it ends.
    let script = format!("touch {}; sleep 30", ready.display());
    let start = std::time::Instant::now();
    let out = run(&[
        "exec",
        "--nodes",
        &n,
        "--key",
        "cap",
        "--prefix",
        "jobs:",
        "--ttl",
        "2s",
        "--timeout",
        "200ms",
        "--restart-delay",
        "3s",
        "--max-extensions",
        "0",
        "--grace",
        "1s",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(out.status.code(), Some(76), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--max-hold/--max-extensions"),
        "{}",
        stderr(&out)
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "the cap did not stop it"
    );
    assert!(ready.exists());
    // The prefix was used: the restart delay key is under it.
    assert!(
        g.iter().any(|s| has_key(s, "jobs:restart-delay")),
        "--prefix was not used"
    );
    // The same from the environment.
    let out = redlock(&["exec", "--key", "cap2", "--", "true"])
        .env("REDLOCK_NODES", &n)
        .env("REDLOCK_PREFIX", "env:")
        .env("REDLOCK_TIMEOUT", "200ms")
        .env("REDLOCK_RESTART_DELAY", "3s")
        .env("REDLOCK_MAX_HOLD", "1m")
        .env("REDLOCK_MAX_EXTENSIONS", "5")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(g.iter().any(|s| has_key(s, "env:restart-delay")));
    let out = redlock(&["exec", "--nodes", &n, "--key", "x", "--", "true"])
        .env("REDLOCK_MAX_HOLD", "soon")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
}
