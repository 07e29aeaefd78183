//! The testkit's faults do what the lock tests rely on: the clock shim, pauses, persistence.

use std::time::Duration;

use redlock_testkit::{Persistence, RedisGroup, RedisServer, Reply, ServerOptions};

fn set_px(server: &RedisServer, key: &str, ms: u64) {
    let reply = server
        .cmd(&["SET", key, "v", "PX", &ms.to_string()])
        .expect("SET");
    assert_eq!(reply, Reply::Status("OK".into()));
}

fn present(server: &RedisServer, key: &str) -> bool {
    !server.cmd(&["GET", key]).expect("GET").is_nil()
}

#[test]
fn a_fast_clock_expires_keys_early() {
    let fast = RedisServer::start_with(ServerOptions {
        fake_clock: true,
        ..Default::default()
    })
    .expect("start fast");
    let normal = RedisServer::start().expect("start normal");
    fast.clock()
        .expect("fake clock")
        .set_rate(2.0)
        .expect("rate");
    set_px(&fast, "k", 2000);
    set_px(&normal, "k", 2000);
    // 1.5 s of real time is 3 s on the fast master: past the 2 s ttl there, not here.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!present(&fast, "k"), "the fast master still has the key");
    assert!(
        present(&normal, "k"),
        "the normal master lost the key early"
    );
}

#[test]
fn a_clock_jump_expires_keys_at_once() {
    let server = RedisServer::start_with(ServerOptions {
        fake_clock: true,
        ..Default::default()
    })
    .expect("start");
    set_px(&server, "k", 60_000);
    let clock = server.clock().expect("fake clock");
    clock.jump_forward(Duration::from_secs(120)).expect("jump");
    assert!(clock.skew() >= Duration::from_secs(120));
    // The shim reads its control file at most once a millisecond.
    std::thread::sleep(Duration::from_millis(20));
    assert!(!present(&server, "k"));
    // The server's own idea of the time moved too.
    let Reply::Array(Some(t)) = server.cmd(&["TIME"]).expect("TIME") else {
        panic!("TIME")
    };
    let secs: u64 = t[0].as_str().expect("secs").parse().expect("int");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("now")
        .as_secs();
    assert!(secs >= now + 119, "server time {secs}, real {now}");
}

#[test]
fn keys_expire_by_the_wall_clock_while_paused_and_queued_commands_run_on_resume() {
    let mut server = RedisServer::start().expect("start");
    set_px(&server, "short", 100);
    server.pause().expect("pause");
    // Sent while paused: it runs on resume, with its ttl counted from then.
    let port = server.port();
    let late = std::thread::spawn(move || {
        redlock_testkit::command(port, &["SET", "late", "v", "PX", "5000"])
    });
    std::thread::sleep(Duration::from_millis(300));
    server.resume().expect("resume");
    assert_eq!(
        late.join().expect("thread").expect("SET"),
        Reply::Status("OK".into())
    );
    assert!(!present(&server, "short"), "expired during the pause");
    let pttl = server
        .cmd(&["PTTL", "late"])
        .expect("PTTL")
        .as_int()
        .expect("int");
    assert!(pttl > 4000, "ttl counted from the resume, got {pttl}");
}

#[test]
fn restart_with_aof_keeps_keys_and_without_comes_back_empty() {
    let mut aof = RedisServer::start_with(ServerOptions {
        persistence: Persistence::AofAlways,
        ..Default::default()
    })
    .expect("start aof");
    let mut bare = RedisServer::start().expect("start bare");
    for s in [&aof, &bare] {
        set_px(s, "lock", 60_000);
        s.cmd(&["INCR", "fence"]).expect("INCR");
    }
    let (aof_port, bare_port) = (aof.port(), bare.port());
    aof.kill().expect("kill");
    bare.kill().expect("kill");
    assert!(!aof.is_running());
    aof.restart().expect("restart aof");
    bare.restart().expect("restart bare");
    assert_eq!(
        (aof.port(), bare.port()),
        (aof_port, bare_port),
        "same ports"
    );
    assert!(present(&aof, "lock") && present(&aof, "fence"));
    assert!(!present(&bare, "lock") && !present(&bare, "fence"));
    // Switching persistence off at restart forgets the data, as a misconfigured master would.
    aof.restart_with(Persistence::None).expect("restart");
    assert!(!present(&aof, "lock"));
}

#[test]
fn a_group_starts_independent_servers_and_kills_them_on_drop() {
    let group = RedisGroup::start(5).expect("start group");
    let urls = group.urls();
    assert_eq!(urls.len(), 5);
    let mut ports: Vec<u16> = group.iter().map(RedisServer::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 5, "ports must differ");
    set_px(&group[0], "only-here", 60_000);
    assert!(!present(&group[1], "only-here"));
    let pids: Vec<u32> = group.iter().map(|s| s.pid().expect("running")).collect();
    drop(group);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} outlived the group"
        );
    }
}

#[test]
fn wait_exit_sees_a_shutdown_and_not_a_running_server() {
    let mut server = RedisServer::start().expect("start");
    assert!(
        !server
            .wait_exit(Duration::from_millis(50))
            .expect("wait on a running server"),
        "a running server counted as exited"
    );
    assert!(server.is_running());
    // The server closes the connection as it exits; the reply, if any, does not matter.
    let _ = server.cmd(&["SHUTDOWN", "NOSAVE"]);
    assert!(
        server.wait_exit(Duration::from_secs(10)).expect("wait"),
        "the server did not exit after SHUTDOWN"
    );
    assert!(!server.is_running());
    assert!(server.cmd(&["PING"]).is_err(), "something still answers");
}
