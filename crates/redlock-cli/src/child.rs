//! The command under the lock, as a process: its own process group, the terminal handed to
//! it, signals passed on to it, and nothing of it left running once the tool is gone.
//!
//! - **Its own group.** Every signal the tool sends reaches the whole group, so a `sh -c`
//!   grandchild is stopped with its parent.
//! - **Dies with the tool.** The command asks the kernel for SIGTERM when the tool dies
//!   (`PR_SET_PDEATHSIG`), and a small watchdog process (the tool's own binary, `redlock
//!   watch`) holds one end of a socket pair whose other end only the tool has: when the tool
//!   dies, even by SIGKILL, that end closes and the watchdog sends SIGTERM to the group, then
//!   SIGKILL after the grace period. When the tool ends normally it tells the watchdog first.
//!   The watchdog starts before the command, and the command sends its group to it before it
//!   execs: from the command's first instruction on, the watchdog knows what to stop. (A socket
//!   rather than a pipe: a send to a watchdog that is gone fails without a SIGPIPE.)
//! - **The terminal.** When the tool runs in the foreground of a terminal, the command's group
//!   becomes the terminal's foreground group for its run (so that it can read the terminal and
//!   Ctrl-C reaches it), and the tool's again afterwards.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg, pthread_sigmask};
use nix::sys::socket::{MsgFlags, send};
use nix::unistd::{Pid, getpgrp, getpid, getppid, setpgid, tcgetpgrp, tcsetpgrp};
use tokio::signal::unix::{SignalKind, signal};

/// The tool's handlers of the forwarded signals. Made before anything else, so that none of
/// them ends the tool before it has cleaned up.
#[derive(Debug)]
pub(crate) struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn install() -> io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// The next of SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to arrive.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a signal not yet received stays for the next call.
    pub(crate) async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.hup.recv() => Signal::SIGHUP,
            _ = self.quit.recv() => Signal::SIGQUIT,
            _ = self.usr1.recv() => Signal::SIGUSR1,
            _ = self.usr2.recv() => Signal::SIGUSR2,
        }
    }
}

/// The command, running.
#[derive(Debug)]
pub(crate) struct Running {
    child: tokio::process::Child,
    group: Pid,
    terminal: Option<Terminal>,
    watchdog: Option<Watchdog>,
}

/// The watchdog process and the tool's end of its socket. Dropped, it tells the watchdog to
/// leave the group alone.
#[derive(Debug)]
struct Watchdog {
    process: std::process::Child,
    socket: UnixStream,
}

/// What the tool writes to the watchdog when it is done, after the group the command wrote
/// (or in its place, when the command never started: then the watchdog reads no group).
const DONE: &[u8] = b"x";

/// Starts `program` with `args` and `env` in its own process group; see the module docs.
pub(crate) fn spawn(
    program: &str,
    args: &[String],
    env: &[(&str, String)],
    grace: Duration,
) -> io::Result<Running> {
    let terminal = Terminal::ours();
    let watchdog = match Watchdog::start(grace) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!(
                "redlock: cannot start the watchdog ({e}); the command is stopped if the tool dies, but not its children"
            );
            None
        }
    };
    let mut command = tokio::process::Command::new(program);
    command.args(args).envs(env.iter().map(|(k, v)| (*k, v)));
    let tty = match &terminal {
        Some(t) => Some(t.fd.try_clone()?),
        None => None,
    };
    let report = match &watchdog {
        Some(w) => Some(OwnedFd::from(w.socket.try_clone()?)),
        None => None,
    };
    prepare(command.as_std_mut(), getpid(), tty, report);
    let child = command.spawn()?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
        .ok_or_else(|| io::Error::other("the command has no process id"))?;
    // The child made its group the terminal's foreground before exec; the tool repeats it,
    // which changes nothing then and covers a child whose own call failed.
    if let Some(t) = &terminal {
        t.give(group);
    }
    Ok(Running {
        child,
        group,
        terminal,
        watchdog,
    })
}

/// Registers what the child does between fork and exec: a process group of its own, SIGTERM
/// when the tool dies, its group sent to the watchdog when `report` is given, and
/// the terminal's foreground for its group when `tty` is given.
#[allow(unsafe_code)]
fn prepare(
    command: &mut std::process::Command,
    tool: Pid,
    tty: Option<OwnedFd>,
    report: Option<OwnedFd>,
) {
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // functions may be called. It makes system calls only (setpgid, prctl, getppid, getpid,
    // send, pthread_sigmask, tcsetpgrp, getpgrp) through nix's thin wrappers, on values moved
    // in before the fork; it allocates nothing and takes no lock. Its errors are
    // `io::Error::from(Errno)`, which does not allocate either.
    unsafe {
        command.pre_exec(move || in_child(tool, tty.as_ref(), report.as_ref()));
    }
}

/// The child's side of [`prepare`].
fn in_child(tool: Pid, tty: Option<&OwnedFd>, report: Option<&OwnedFd>) -> io::Result<()> {
    setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
    // The kernel signals the child when the thread that forked it ends: the tool runs on one
    // thread (a current-thread runtime), so that is when the tool ends.
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
    if getppid() != tool {
        // The tool died before the request took effect: nothing must run unsupervised.
        return Err(Errno::ESRCH.into());
    }
    if let Some(report) = report {
        // Four bytes into an empty socket buffer: sent whole. A watchdog that is gone (killed
        // since it started) makes the send fail, without a signal: the command still runs, as
        // it does when the watchdog cannot be started, stopped by the signal above if the tool
        // dies.
        let group = getpid().as_raw().to_ne_bytes();
        let _ = send(report.as_raw_fd(), &group, MsgFlags::MSG_NOSIGNAL);
    }
    if let Some(tty) = tty {
        // A background group that sets the foreground gets SIGTTOU unless it blocks it.
        let ttou = SigSet::from(Signal::SIGTTOU);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), None)?;
        let given = tcsetpgrp(tty.as_fd(), getpgrp());
        pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&ttou), None)?;
        // Not fatal: the tool tries as well once the child has started.
        let _ = given;
    }
    Ok(())
}

impl Running {
    /// Waits for the command, passing the forwarded signals sent to the tool on to its group.
    pub(crate) async fn wait_forwarding(
        &mut self,
        signals: &mut Signals,
    ) -> io::Result<ExitStatus> {
        loop {
            let sig = tokio::select! {
                status = self.child.wait() => return status,
                sig = signals.recv() => sig,
            };
            let _ = killpg(self.group, sig);
        }
    }

    /// SIGTERM to the group, SIGKILL after `grace`, and reap the command.
    pub(crate) async fn stop(&mut self, grace: Duration) {
        let _ = killpg(self.group, Signal::SIGTERM);
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = killpg(self.group, Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
        // Whatever else is left in the group (a grandchild that ignored SIGTERM) goes too.
        let _ = killpg(self.group, Signal::SIGKILL);
    }

    /// After the command ended: the terminal back to the tool, the watchdog told to leave the
    /// group alone.
    pub(crate) fn finish(&mut self) {
        if let Some(t) = self.terminal.take() {
            t.take_back();
        }
        // Dropped: told to leave the group alone, and reaped.
        self.watchdog = None;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The terminal on stdin, when the tool runs in its foreground.
#[derive(Debug)]
struct Terminal {
    fd: OwnedFd,
    tool: Pid,
}

impl Terminal {
    fn ours() -> Option<Terminal> {
        let stdin = io::stdin();
        let fd = stdin.as_fd();
        let tool = getpgrp();
        if tcgetpgrp(fd).ok()? != tool {
            return None;
        }
        Some(Terminal {
            fd: fd.try_clone_to_owned().ok()?,
            tool,
        })
    }

    fn give(&self, group: Pid) {
        let _ = with_ttou_blocked(|| tcsetpgrp(self.fd.as_fd(), group));
    }

    fn take_back(&self) {
        let _ = with_ttou_blocked(|| tcsetpgrp(self.fd.as_fd(), self.tool));
    }
}

/// Runs `f` with SIGTTOU blocked in this thread: a background group that sets the terminal's
/// foreground group would otherwise be stopped by it.
fn with_ttou_blocked<T>(f: impl FnOnce() -> nix::Result<T>) -> nix::Result<T> {
    let ttou = SigSet::from(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old))?;
    let out = f();
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None)?;
    out
}

impl Watchdog {
    /// Starts the watchdog of the tool's next command, which the command names itself.
    fn start(grace: Duration) -> io::Result<Watchdog> {
        let (theirs, socket) = UnixStream::pair()?;
        let process = std::process::Command::new(std::env::current_exe()?)
            .args([
                "watch",
                "--tool",
                &getpid().as_raw().to_string(),
                "--grace",
                &format!("{}ms", grace.as_millis()),
            ])
            .stdin(OwnedFd::from(theirs))
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Watchdog { process, socket })
    }
}

impl Drop for Watchdog {
    /// Tells the watchdog to leave the group alone, and reaps it, so that it is not left behind:
    /// it exits on the byte after a group, or on the end of its input when no group came (the
    /// shutdown ends its input even while the command still holds a copy of the socket).
    fn drop(&mut self) {
        let _ = self.socket.write_all(DONE);
        let _ = self.socket.shutdown(Shutdown::Write);
        let _ = self.process.wait();
    }
}

/// `redlock watch`: reads the command's group from stdin, then waits until the tool says it is
/// done (a byte) or dies (end of stdin); in the second case stops the group: SIGTERM, then
/// SIGKILL after `grace`. An end of stdin before a whole group means no command started.
pub(crate) fn watch(tool: i32, grace: Duration) -> ExitCode {
    let mut stdin = io::stdin().lock();
    let mut group = [0u8; 4];
    if stdin.read_exact(&mut group).is_err() {
        return ExitCode::SUCCESS;
    }
    let mut byte = [0u8; 1];
    let told = loop {
        match stdin.read(&mut byte) {
            Ok(n) => break n == 1,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break false,
        }
    };
    if told {
        return ExitCode::SUCCESS;
    }
    let group = Pid::from_raw(i32::from_ne_bytes(group));
    if killpg(group, Signal::SIGTERM).is_err() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "redlock: the tool (process {tool}) ended while its command ran: sent SIGTERM to process group {group}"
    );
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if killpg(group, None) == Err(Errno::ESRCH) {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if killpg(group, Signal::SIGKILL).is_ok() {
        eprintln!("redlock: process group {group} still ran after {grace:?}: sent SIGKILL");
    }
    ExitCode::SUCCESS
}
