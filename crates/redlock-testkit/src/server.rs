//! [`RedisServer`]: one real `redis-server` child process on a free loopback port, with faults.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::clock::Clock;
use crate::resp::{self, Reply};
use crate::tls::TlsFiles;

/// How long a server may take to answer PING after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many fresh ports to try when another process takes the chosen one first.
const PORT_ATTEMPTS: usize = 5;

/// What a server keeps across a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing: no snapshots (`--save ""`, passed explicitly because without a config file
    /// Redis 7 snapshots on SIGTERM) and no AOF. A restart comes back empty.
    #[default]
    None,
    /// AOF with `appendfsync always`: every write is on disk before it is acknowledged, so a
    /// restart, even after SIGKILL, comes back with every key and counter.
    AofAlways,
}

/// Whether a server also listens for TLS, and whether it asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// A TLS port beside the plain one; clients need not present a certificate.
    Server,
    /// A TLS port that accepts only clients presenting a certificate of the test CA.
    Mutual,
}

/// How to start a server.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerOptions {
    /// What survives a restart.
    pub persistence: Persistence,
    /// Run the server under the clock shim, so that [`RedisServer::clock`] can speed its wall
    /// clock up, slow it down or make it jump.
    pub fake_clock: bool,
    /// Also listen for TLS on a port of its own, with certificates made for the server
    /// ([`RedisServer::tls_files`]); the plain port stays, for the testkit's own commands.
    pub tls: Option<TlsMode>,
    /// Run as a Redis Cluster node (`--cluster-enabled yes`), owning no slots until told
    /// (`CLUSTER ADDSLOTSRANGE`): the kind of server a lock must refuse as a master.
    pub cluster: bool,
}

/// A `redis-server` child process on `127.0.0.1`, in a temporary directory of its own, killed
/// (and its directory removed) on drop.
///
/// The process is spawned directly, not through a shell, so that signals reach Redis itself.
///
/// Two behaviours that tests must allow for:
/// - a command sent to a paused server runs when it resumes, with any ttl counted from then: a
///   client that timed out on a paused master can leave a lock behind, so its release must
///   still be sent, and it runs after the acquire on the same connection;
/// - keys keep expiring by the wall clock while a server is paused: a lock whose ttl ran out
///   during the pause is gone when the server resumes.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    options: ServerOptions,
    paused: bool,
    clock: Option<Clock>,
    /// The TLS port and the certificates, when started with TLS.
    tls: Option<(u16, TlsFiles)>,
    // Dropped last: the directory outlives the process.
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server with the default options (no persistence, real clock).
    pub fn start() -> io::Result<RedisServer> {
        RedisServer::start_with(ServerOptions::default())
    }

    /// Starts a server with `options` on a free port and waits until it answers PING.
    pub fn start_with(options: ServerOptions) -> io::Result<RedisServer> {
        let dir = tempfile::Builder::new()
            .prefix("redlock-redis-")
            .tempdir_in(scratch_dir())?;
        let clock = if options.fake_clock {
            Some(Clock::new(dir.path().join("clock"))?)
        } else {
            None
        };
        let files = match options.tls {
            Some(_) => Some(TlsFiles::generate(dir.path())?),
            None => None,
        };
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let tls = match &files {
                Some(f) => Some((free_port()?, f.clone())),
                None => None,
            };
            match spawn_and_wait(port, options, dir.path(), clock.as_ref(), tls.as_ref()) {
                Ok(child) => {
                    return Ok(RedisServer {
                        child: Some(child),
                        port,
                        options,
                        paused: false,
                        clock,
                        tls,
                        dir,
                    });
                }
                // Another process took the port between our probe and Redis's bind.
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free port")))
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://127.0.0.1:tls-port`, when started with TLS.
    pub fn tls_url(&self) -> Option<String> {
        self.tls
            .as_ref()
            .map(|(port, _)| format!("rediss://127.0.0.1:{port}"))
    }

    /// The TLS port, when started with TLS.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.as_ref().map(|(port, _)| *port)
    }

    /// The certificates of the server's TLS, when started with TLS.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref().map(|(_, files)| files)
    }

    /// The server's working directory (AOF files, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (paused counts as running).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The fake clock, if the server was started with `fake_clock`.
    pub fn clock(&self) -> Option<&Clock> {
        self.clock.as_ref()
    }

    /// Stops the process with SIGSTOP: connections stay open, nothing is answered, and keys
    /// keep expiring by the wall clock.
    pub fn pause(&mut self) -> io::Result<()> {
        self.signal(Signal::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    /// Continues a paused process with SIGCONT; what was sent meanwhile runs now, in order.
    pub fn resume(&mut self) -> io::Result<()> {
        self.signal(Signal::SIGCONT)?;
        self.paused = false;
        Ok(())
    }

    /// Kills the process with SIGKILL (no chance to save anything) and reaps it.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            // SIGKILL ends a stopped process too.
            child.kill()?;
            child.wait()?;
        }
        self.paused = false;
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit on its own (after `SHUTDOWN`, say) and
    /// reaps it; true if it did. The process keeps running if it did not.
    pub fn wait_exit(&mut self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        while let Some(child) = self.child.as_mut() {
            if child.try_wait()?.is_some() {
                self.child = None;
                self.paused = false;
                break;
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(true)
    }

    /// Kills the process if it runs, then starts it again on the same port with the same options.
    pub fn restart(&mut self) -> io::Result<()> {
        self.restart_with(self.options.persistence)
    }

    /// Kills the process if it runs, then starts it again on the same port with `persistence`.
    /// Data persisted by the previous run (an AOF) is loaded only if `persistence` reads it.
    pub fn restart_with(&mut self, persistence: Persistence) -> io::Result<()> {
        self.kill()?;
        self.options.persistence = persistence;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match spawn_and_wait(
                self.port,
                self.options,
                self.dir.path(),
                self.clock.as_ref(),
                self.tls.as_ref(),
            ) {
                Ok(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                // The old socket may linger a moment after SIGKILL.
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The server's `run_id` (a new one for every process).
    pub fn run_id(&self) -> io::Result<String> {
        let info = self.cmd(&["INFO", "server"])?;
        info.as_str()
            .and_then(|i| i.lines().find_map(|l| l.strip_prefix("run_id:")))
            .map(|r| r.trim().to_owned())
            .ok_or_else(|| io::Error::other("INFO has no run_id"))
    }

    /// Writes the server's run id to the restart guard's incarnation key under the default
    /// prefix (`redlock:incarnation`), as a client does once a master has waited out its
    /// restart delay, so that the guard lets it vote at once. Truthful for a server the test
    /// has just started, which has granted no lock yet; not after a restart.
    pub fn vouch(&self) -> io::Result<()> {
        self.vouch_with_prefix(redlock_single::DEFAULT_PREFIX)
    }

    /// [`vouch`](RedisServer::vouch) for the keys of another prefix.
    pub fn vouch_with_prefix(&self, prefix: &str) -> io::Result<()> {
        let keys = redlock_single::RestartKeys::new(prefix).map_err(io::Error::other)?;
        let run_id = self.run_id()?;
        match self.cmd(&["SET", keys.incarnation(), &run_id])? {
            Reply::Status(ok) if ok == "OK" => Ok(()),
            other => Err(io::Error::other(format!("SET incarnation: {other:?}"))),
        }
    }

    /// Sends one command on a fresh connection and returns the reply; for tests that set up
    /// or check keys without going through the library under test.
    pub fn cmd(&self, args: &[&str]) -> io::Result<Reply> {
        resp::command(self.port, args)
    }

    fn signal(&self, signal: Signal) -> io::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| io::Error::other("the server is not running"))?;
        let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
        kill(Pid::from_raw(pid), signal).map_err(io::Error::from)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Starts `redis-server` on `port` (and a TLS port) in `dir` and waits until it answers PING.
fn spawn_and_wait(
    port: u16,
    options: ServerOptions,
    dir: &Path,
    clock: Option<&Clock>,
    tls: Option<&(u16, TlsFiles)>,
) -> io::Result<Child> {
    let binary = crate::redis_server_binary()?;
    let log = dir.join("redis.log");
    let mut cmd = Command::new(&binary);
    cmd.arg("--port")
        .arg(port.to_string())
        .args([
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ])
        .args(["--save", ""])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match options.persistence {
        Persistence::None => cmd.args(["--appendonly", "no"]),
        Persistence::AofAlways => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
    };
    if options.cluster {
        cmd.args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(dir.join("nodes.conf"));
    }
    if let Some((tls_port, files)) = tls {
        let mutual = options.tls == Some(TlsMode::Mutual);
        cmd.arg("--tls-port")
            .arg(tls_port.to_string())
            .arg("--tls-cert-file")
            .arg(&files.server_cert)
            .arg("--tls-key-file")
            .arg(&files.server_key)
            .arg("--tls-ca-cert-file")
            .arg(&files.ca_cert)
            .args(["--tls-auth-clients", if mutual { "yes" } else { "no" }]);
    }
    if let Some(clock) = clock {
        cmd.env("LD_PRELOAD", crate::clock::shim_path())
            .env("REDLOCK_CLOCK_FILE", clock.path());
    }
    // Start each run with a fresh log, so that errors read from it are this run's.
    let _ = fs::remove_file(&log);
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", binary.display())))?;
    match wait_ready(&mut child, port, &log) {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Where servers keep their files: `/dev/shm` when there is one, so that an AOF with
/// `appendfsync always` costs a memory write rather than a disk flush; else the temp dir.
fn scratch_dir() -> std::path::PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A port that was free a moment ago: bound and released by the kernel's choice, and not
/// handed out before by this process (servers started in parallel must not share one).
fn free_port() -> io::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no fresh free port",
    ))
}

/// Waits until the server on `port` answers PING, the process exits, or the time is up.
fn wait_ready(child: &mut Child, port: u16, log: &Path) -> io::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let text = fs::read_to_string(log).unwrap_or_default();
            let kind = if text.contains("Address already in use") {
                io::ErrorKind::AddrInUse
            } else {
                io::ErrorKind::Other
            };
            let tail: String = text.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            return Err(io::Error::new(
                kind,
                format!("redis-server on port {port} exited with {status}: {tail}"),
            ));
        }
        if is_listening(port) && answers_as(port, child.id()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("redis-server on port {port} did not answer PING within {READY_TIMEOUT:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether something accepts connections on `port` (cheap, before asking who it is).
fn is_listening(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Whether the server on `port` is the process `pid` and answers (not LOADING, not refused).
/// Checking the pid matters: another test's server may hold the port we were handed, and our
/// own child then exits with "address in use" while the other one answers PING.
fn answers_as(port: u16, pid: u32) -> bool {
    match crate::resp::command(port, &["INFO", "server"]) {
        Ok(reply) => reply.as_str().is_some_and(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("process_id:"))
                .is_some_and(|p| p.trim() == pid.to_string())
        }),
        Err(_) => false,
    }
}
