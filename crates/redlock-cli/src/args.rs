//! The command line: `redlock exec` and `redlock status`, parsed with clap and checked into
//! a builder. Every mistake is reported as one line with exit status 64.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use redlock::{LockOptions, Redlock, RedlockBuilder, Retry};

use crate::exit::{self, Failure};

const EXAMPLES: &str = "\
Examples:
  # A nightly job that must not run twice, even when cron fires it on several hosts:
  0 3 * * * redlock exec --nodes redis://r1:6379,redis://r2:6379,redis://r3:6379 \\
              --key cron/nightly-report --ttl 60s -- /usr/local/bin/nightly-report

  # Wait up to 30 s for the lock, then run a migration; REDLOCK_FENCE goes to the database:
  export REDLOCK_NODES=redis://r1:6379,redis://r2:6379,redis://r3:6379
  redlock exec --key db/migrate --wait 30s -- sh -c 'migrate --fence \"$REDLOCK_FENCE\"'

  # Who holds it?
  redlock status --key db/migrate
  redlock status --key db/migrate --json

Exit status:
  the command's   exec: the command ran (128 + N if it died of signal N)
  128 + N         exec: signal N arrived while waiting for the lock (nothing ran)
  0               status: printed, and a quorum answered
  64              bad arguments, or the same master twice
  69              too few masters answer, or too few may vote yet (restarted masters wait)
  75              exec: held by someone else (set it with -E/--conflict-exit-code)
  76              exec: the lock was lost while the command ran; the command was stopped
  77              a master refused the credentials or a command (WRONGPASS, NOAUTH, NOPERM)
  78              a master misconfigured for locks: a key of another type, a cluster node, TLS
  127             exec: the command cannot be started (the lock is released first)";

/// Run a command while holding a distributed lock on Redis, or show who holds one.
#[derive(Debug, Parser)]
#[command(name = "redlock", version, after_long_help = EXAMPLES, after_help = EXAMPLES)]
pub(crate) struct Cli {
    /// Log to stderr what the tool does: -v each attempt and each master's answer with its
    /// latency, -vv more, -vvv the Redis client's own. RUST_LOG=… (a tracing filter) as well.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub(crate) verbose: u8,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run COMMAND while holding the lock; extend it meanwhile; release it when COMMAND ends.
    Exec(ExecArgs),
    /// Show, for each master, who holds the key, its ttl left and its fence counter.
    Status(StatusArgs),
    /// The watchdog that `exec` starts beside COMMAND (not for direct use): when `exec` dies
    /// without saying it is done, COMMAND's process group gets SIGTERM, then SIGKILL.
    #[command(hide = true)]
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub(crate) struct Target {
    // (The help is an attribute: rustdoc would read the brackets as a link.)
    #[arg(
        long,
        env = "REDLOCK_NODES",
        value_delimiter = ',',
        value_name = "URL[,URL…]",
        help = "The masters, comma-separated: redis://[user:password@]host:port[,…] \
                (rediss:// for TLS). One URL means a single master."
    )]
    pub(crate) nodes: Vec<String>,

    /// The name of the lock.
    #[arg(long, value_name = "NAME")]
    pub(crate) key: String,

    /// The prefix of every key the lock writes on the masters [default: redlock:].
    #[arg(long, env = "REDLOCK_PREFIX", value_name = "TEXT")]
    pub(crate) prefix: Option<String>,

    /// How long each master has to answer one request [default: the ttl / 200, between 5 ms
    /// and 1 s]. Raise it for short ttls on busy machines or slow links.
    #[arg(long, env = "REDLOCK_TIMEOUT", value_parser = duration, value_name = "DURATION")]
    pub(crate) timeout: Option<Duration>,

    /// The CA certificate(s) (PEM) that rediss:// masters are verified with, instead of the
    /// system's roots.
    #[arg(long, env = "REDLOCK_TLS_CA", value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,

    /// A client certificate (PEM) for mutual TLS; needs --tls-key.
    #[arg(
        long,
        env = "REDLOCK_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub(crate) tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM); needs --tls-cert.
    #[arg(
        long,
        env = "REDLOCK_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub(crate) tls_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    #[command(flatten)]
    pub(crate) target: Target,

    /// How long the lock lives without extension (it is extended every third of it).
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub(crate) ttl: Duration,

    /// How long to wait for a held lock (0: one attempt).
    #[arg(long, default_value = "0s", value_parser = duration)]
    pub(crate) wait: Duration,

    /// After a lost lock, how long COMMAND has between SIGTERM and SIGKILL.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub(crate) grace: Duration,

    /// Who holds the lock, as shown by status (default: hostname:pid).
    #[arg(long, value_name = "TEXT")]
    pub(crate) meta: Option<String>,

    /// The exit status when the lock is held by someone else (as flock(1)'s -E).
    #[arg(
        short = 'E',
        long,
        default_value_t = exit::NOT_ACQUIRED,
        value_name = "N"
    )]
    pub(crate) conflict_exit_code: u8,

    /// How long a master that may have lost locks in a restart waits before it votes, at the
    /// least [default: the longest ttl any client of the masters uses, 2 s at least].
    #[arg(long, env = "REDLOCK_RESTART_DELAY", value_parser = duration, value_name = "DURATION")]
    pub(crate) restart_delay: Option<Duration>,

    /// Stop extending after this long in all: COMMAND is then stopped when the lock runs out.
    #[arg(long, env = "REDLOCK_MAX_HOLD", value_parser = duration, value_name = "DURATION")]
    pub(crate) max_hold: Option<Duration>,

    /// Stop extending after this many extensions: COMMAND is then stopped when the lock runs
    /// out.
    #[arg(long, env = "REDLOCK_MAX_EXTENSIONS", value_name = "N")]
    pub(crate) max_extensions: Option<u32>,

    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) target: Target,

    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The process id of the tool whose command is watched (for messages: the command's
    /// group comes on stdin).
    #[arg(long)]
    pub(crate) tool: i32,

    /// How long the group has between SIGTERM and SIGKILL.
    #[arg(long, value_parser = duration)]
    pub(crate) grace: Duration,
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (try 30s, 500ms, 2m)"))
}

impl Target {
    /// The builder for these masters with the settings common to exec and status; fails on
    /// no nodes, an empty key or a zero timeout.
    pub(crate) fn builder(&self) -> Result<RedlockBuilder, Failure> {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if nodes.is_empty() {
            return Err(Failure::usage(
                "no masters: give --nodes URL[,URL…] or set REDLOCK_NODES",
            ));
        }
        if self.key.is_empty() {
            return Err(Failure::usage("--key must not be empty"));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(Failure::usage("--timeout must be above zero"));
        }
        Ok(Redlock::builder().nodes(nodes).options(self.options()))
    }

    /// The library's settings that the target's flags give: the one place the tool builds
    /// them (exec adds its own on top).
    fn options(&self) -> LockOptions {
        let mut o = LockOptions {
            connect_timeout: Duration::from_secs(3),
            timeout: self.timeout,
            ..LockOptions::default()
        };
        if let Some(p) = &self.prefix {
            o.prefix.clone_from(p);
        }
        o.tls.ca_file.clone_from(&self.tls_ca);
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            o.tls.client_auth = Some((cert.clone(), key.clone()));
        }
        o
    }
}

impl ExecArgs {
    /// The builder for exec: the target's settings, the ttl, the wait, the holder's metadata
    /// and the limits.
    pub(crate) fn builder(&self, meta: &str) -> Result<RedlockBuilder, Failure> {
        if self.ttl.is_zero() {
            return Err(Failure::usage("--ttl must be above zero"));
        }
        let retry = if self.wait.is_zero() {
            Retry::none()
        } else {
            Retry::exponential(Duration::from_millis(10), Duration::from_millis(500))
                .deadline(self.wait)
        };
        let mut builder = self.target.builder()?.ttl(self.ttl).retry(retry).meta(meta);
        if let Some(d) = self.restart_delay {
            builder = builder.restart_delay(d);
        }
        if let Some(h) = self.max_hold {
            builder = builder.max_hold(h);
        }
        if let Some(n) = self.max_extensions {
            builder = builder.max_extensions(n);
        }
        Ok(builder)
    }
}
