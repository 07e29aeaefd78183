//! The command line: `redlock exec` and `redlock status`, parsed with clap and checked into
//! settings. Every mistake is reported as one line with exit status 64.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::exit::Failure;

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

Exit status of exec: the command's own (128 + N if it died of signal N); 75 when the lock was
not acquired within --wait; 76 when the lock was lost while the command ran (the command's
process group got SIGTERM, then SIGKILL after --grace); 64 for bad arguments; 69 when too few
masters can be reached.";

/// Run a command while holding a distributed lock on Redis, or show who holds one.
#[derive(Debug, Parser)]
#[command(name = "redlock", version, after_long_help = EXAMPLES, after_help = EXAMPLES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run COMMAND while holding the lock; extend it meanwhile; release it when COMMAND ends.
    Exec(ExecArgs),
    /// Show, for each master, who holds the key, its ttl left and its fence counter.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub(crate) struct Target {
    /// The masters, comma-separated: redis://host:port[,…]. One URL means a single master.
    #[arg(
        long,
        env = "REDLOCK_NODES",
        value_delimiter = ',',
        value_name = "URL[,URL…]"
    )]
    pub(crate) nodes: Vec<String>,

    /// The name of the lock.
    #[arg(long, value_name = "NAME")]
    pub(crate) key: String,

    /// How long each master has to answer one request [default: the ttl / 200, between 5 ms
    /// and 1 s]. Raise it for short ttls on busy machines or slow links.
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub(crate) timeout: Option<Duration>,
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

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (try 30s, 500ms, 2m)"))
}

impl Target {
    /// The URLs, trimmed and non-empty; fails on no nodes or an empty key.
    pub(crate) fn check(&self) -> Result<Vec<String>, Failure> {
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
        Ok(nodes)
    }

    /// The builder for these masters, with `--timeout` if given.
    pub(crate) fn builder(&self, nodes: Vec<String>) -> redlock::RedlockBuilder {
        let builder = redlock::Redlock::builder().nodes(nodes);
        match self.timeout {
            Some(t) => builder.timeout(t),
            None => builder,
        }
    }
}
