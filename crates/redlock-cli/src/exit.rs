//! Exit codes (from `sysexits.h` where one fits) and the one-line failure that carries them.

use std::process::ExitCode;

/// Bad arguments (EX_USAGE).
pub(crate) const USAGE: u8 = 64;
/// Masters unreachable (EX_UNAVAILABLE).
pub(crate) const UNAVAILABLE: u8 = 69;
/// Internal failure (EX_SOFTWARE).
pub(crate) const SOFTWARE: u8 = 70;
/// The lock was not acquired within `--wait` (EX_TEMPFAIL).
pub(crate) const NOT_ACQUIRED: u8 = 75;
/// The lock was lost while the command ran.
pub(crate) const LOST: u8 = 76;

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

    /// Prints `redlock: <message>` on one line and returns the exit code.
    pub(crate) fn report(self) -> ExitCode {
        let line = self.message.replace('\n', " ");
        eprintln!("redlock: {line}");
        ExitCode::from(self.code)
    }
}

/// Help and version go to stdout with status 0; any other parse error is one line, status 64.
pub(crate) fn from_clap(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            print!("{e}");
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{e}");
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
