//! Exit codes (from `sysexits.h` where one fits), the one-line failure that carries them, and
//! which code each library error gets.

use std::io::Write;
use std::process::ExitCode;

use nix::sys::signal::Signal;
use redlock::{Cause, Error, Failures, MasterError, MasterErrorKind};

/// Bad arguments (EX_USAGE).
pub(crate) const USAGE: u8 = 64;
/// Too few masters answer or may vote (EX_UNAVAILABLE).
pub(crate) const UNAVAILABLE: u8 = 69;
/// Internal failure (EX_SOFTWARE).
pub(crate) const SOFTWARE: u8 = 70;
/// The lock is held by someone else (EX_TEMPFAIL); `-E` changes it.
pub(crate) const NOT_ACQUIRED: u8 = 75;
/// The lock was lost while the command ran.
pub(crate) const LOST: u8 = 76;
/// A master refused the credentials or a command (EX_NOPERM).
pub(crate) const DENIED: u8 = 77;
/// A master is misconfigured for locks (EX_CONFIG).
pub(crate) const MISCONFIGURED: u8 = 78;
/// The command cannot be started (as in shells).
pub(crate) const CANNOT_RUN: u8 = 127;

/// A failure of the tool: one line for stderr and an exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure::new(USAGE, message)
    }

    pub(crate) fn software(message: impl Into<String>) -> Failure {
        Failure::new(SOFTWARE, message)
    }

    /// The failure for a library error: its message and the code of [`code_of`].
    pub(crate) fn of(e: &Error, conflict: u8) -> Failure {
        Failure::new(code_of(e, conflict), e.to_string())
    }

    /// Prints `redlock: <message>` on one line and returns the exit code.
    pub(crate) fn report(self) -> ExitCode {
        let line = self.message.replace('\n', " ");
        eprintln!("redlock: {line}");
        ExitCode::from(self.code)
    }
}

/// The exit code of a library error: 64 for bad settings, `conflict` when the lock is held,
/// 77 when a master refused us, 78 when a master is misconfigured for locks, 69 when too few
/// masters answered or may vote.
pub(crate) fn code_of(e: &Error, conflict: u8) -> u8 {
    match e {
        Error::Config(_) | Error::InvalidResource { .. } => USAGE,
        Error::Held { .. } => conflict,
        Error::WrongType { .. } => MISCONFIGURED,
        Error::Connect { failures, .. } | Error::NoQuorum { failures, .. } => {
            code_of_failures(failures)
        }
        Error::TooSlow { .. } => UNAVAILABLE,
        _ => SOFTWARE,
    }
}

/// 77 if a master refused us, else 78 if one is misconfigured, else 69: what the operator must
/// fix first.
pub(crate) fn code_of_failures(failures: &Failures) -> u8 {
    let errors = failures.0.iter().filter_map(|f| match &f.cause {
        Cause::Failed(e) => Some(e),
        Cause::Unverified { reason, .. } => Some(reason),
        _ => None,
    });
    code_of_masters(errors)
}

/// Like [`code_of_failures`], for the errors of single masters.
pub(crate) fn code_of_masters<'a>(errors: impl Iterator<Item = &'a MasterError>) -> u8 {
    use MasterErrorKind as K;
    let mut code = UNAVAILABLE;
    for e in errors {
        match e.kind() {
            K::Denied { .. } => return DENIED,
            K::WrongType { .. } | K::Cluster { .. } | K::Tls { .. } => code = MISCONFIGURED,
            _ => {}
        }
    }
    code
}

/// The exit code of a tool stopped by `signal` before the command ran: 128 + N, as a shell
/// reports a process killed by it.
pub(crate) fn signalled(signal: Signal) -> ExitCode {
    ExitCode::from(u8::try_from(128 + signal as i32).unwrap_or(255))
}

/// Writes `text` to stdout; a closed stdout (`redlock --help | head -1`) is not an error: the
/// reader has what it wanted.
pub(crate) fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Help and version go to stdout with status 0; any other parse error is one line, status 64.
pub(crate) fn from_clap(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            print(&e.to_string());
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = write!(std::io::stderr(), "{e}");
            ExitCode::from(USAGE)
        }
        _ => {
            // clap's message, up to its usage section, folded into one line.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            Failure::usage(format!("{message} (see redlock --help)")).report()
        }
    }
}

/// The exit code of a finished child: its own status, or 128 + the signal that ended it.
pub(crate) fn of_child(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(255)),
        (None, None) => ExitCode::from(1),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use redlock::MasterFailure;

    use super::*;

    fn failed(e: MasterError) -> MasterFailure {
        MasterFailure {
            addr: "h:1".into(),
            cause: Cause::Failed(e),
        }
    }

    fn timeout() -> MasterError {
        let timeout = Duration::from_millis(50);
        MasterError::new("h:1", MasterErrorKind::Timeout { timeout })
    }

    fn fred(details: &str) -> fred_error::Error {
        fred_error::Error::new(fred_error::ErrorKind::Unknown, details.to_owned())
    }

    mod fred_error {
        pub(super) use redlock_single::fred::error::{Error, ErrorKind};
    }

    #[test]
    fn a_refusal_of_credentials_decides_before_misconfiguration_and_silence() {
        use MasterErrorKind as K;
        let cause = fred("WRONGPASS invalid username-password pair");
        let denied = MasterError::new("h:2", K::Denied { cause });
        let wrong = MasterError::new("h:3", K::WrongType { key: "k".into() });
        let cause = fred("MOVED 1 h:5");
        let cluster = MasterError::new("h:4", K::Cluster { cause });
        let all = |v: Vec<MasterError>| Failures(v.into_iter().map(failed).collect());
        assert_eq!(code_of_failures(&all(vec![timeout()])), UNAVAILABLE);
        assert_eq!(
            code_of_failures(&all(vec![timeout(), wrong.clone()])),
            MISCONFIGURED
        );
        assert_eq!(
            code_of_failures(&all(vec![timeout(), cluster])),
            MISCONFIGURED
        );
        assert_eq!(
            code_of_failures(&all(vec![wrong, timeout(), denied.clone()])),
            DENIED
        );
        // A health reading refused by the ACL is a refusal too.
        let unverified = Failures(vec![MasterFailure {
            addr: "h:2".into(),
            cause: Cause::Unverified {
                recheck_in: Duration::from_secs(1),
                reason: denied,
            },
        }]);
        assert_eq!(code_of_failures(&unverified), DENIED);
        let restarting = Failures(vec![MasterFailure {
            addr: "h:2".into(),
            cause: Cause::Restarting {
                ready_in: Duration::from_secs(1),
            },
        }]);
        assert_eq!(code_of_failures(&restarting), UNAVAILABLE);
    }

    #[test]
    fn a_held_lock_exits_with_the_conflict_code() {
        let held = Error::Held {
            resource: "r".into(),
            refused: 2,
            masters: 3,
        };
        assert_eq!(code_of(&held, NOT_ACQUIRED), 75);
        assert_eq!(code_of(&held, 3), 3);
        assert_eq!(code_of(&Error::Config("x".into()), 3), USAGE);
    }
}
