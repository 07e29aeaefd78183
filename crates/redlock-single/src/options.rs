//! [`LockOptions`]: the settings every lock type shares (ttl, retry, prefix, metadata,
//! timeouts, drift factor, restart guard, in-flight bound, TLS), their defaults, defined here
//! once, and their validation. [`Lock`](crate::Lock)'s and `redlock`'s builders embed it, take
//! it whole through `.options(..)`, and have its setters through [`lock_option_setters!`].

use std::sync::Arc;
use std::time::Duration;

use crate::background::Background;
use crate::protocol::error::InputError;
use crate::protocol::key::{DEFAULT_PREFIX, RestartKeys, check_prefix};
use crate::protocol::master::Master;
use crate::protocol::node::{DEFAULT_MAX_IN_FLIGHT, NodeOptions};
use crate::protocol::tls::TlsOptions;
use crate::protocol::validity::DEFAULT_DRIFT_FACTOR;
use crate::retry::Retry;
use crate::voters::{RestartPolicy, Voters};

/// The default ttl of a lock.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The default retry policy of `acquire`: exponential backoff from 10 ms to 500 ms, giving up
/// after 10 s.
pub const DEFAULT_RETRY: Retry =
    Retry::exponential(Duration::from_millis(10), Duration::from_millis(500))
        .deadline(Duration::from_secs(10));

/// The default bound on connecting to a master.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The settings of a lock, whatever the number of its masters. Build it with
/// `LockOptions { ttl: …, ..Default::default() }` or through a builder's setters; a builder
/// checks it when it connects.
///
/// ```
/// use std::time::Duration;
/// use redlock_single::{LockOptions, Retry};
///
/// let options = LockOptions {
///     ttl: Duration::from_secs(30),
///     retry: Retry::linear(Duration::from_millis(50)).deadline(Duration::from_secs(2)),
///     meta: "web-1".into(),
///     ..Default::default()
/// };
/// assert!(options.check().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// How long a lock lives on the masters unless extended (default [`DEFAULT_TTL`]).
    pub ttl: Duration,
    /// How `acquire` waits for a held lock (default [`DEFAULT_RETRY`]).
    pub retry: Retry,
    /// The prefix of every key (default `redlock:`); no `{` or `}`.
    pub prefix: String,
    /// Text stored with the token, shown by `inspect` (for example `host:pid`).
    pub meta: String,
    /// The timeout of each request to one master (default `ttl / 200`, between 5 ms and 1 s).
    pub timeout: Option<Duration>,
    /// The bound on connecting (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
    /// How fast a master's clock may run, as a fraction (default 0.01, the spec's).
    pub drift_factor: f64,
    /// The restart guard (default on, no persistence trusted, no fleet delay).
    pub restart: RestartPolicy,
    /// How many requests may wait for an answer from one master at once (default
    /// [`DEFAULT_MAX_IN_FLIGHT`]).
    pub max_in_flight: usize,
    /// Certificates for `rediss://` masters.
    pub tls: TlsOptions,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            ttl: DEFAULT_TTL,
            retry: DEFAULT_RETRY,
            prefix: DEFAULT_PREFIX.to_owned(),
            meta: String::new(),
            timeout: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            drift_factor: DEFAULT_DRIFT_FACTOR,
            restart: RestartPolicy::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            tls: TlsOptions::default(),
        }
    }
}

impl LockOptions {
    /// Checks the settings; returns the per-request timeout they give. Fails with
    /// [`InputError::Config`] on a ttl out of range, a timeout that leaves no validity, a drift
    /// factor out of range, a zero connect timeout or in-flight bound, a bad prefix or retry
    /// policy.
    pub fn check(&self) -> Result<Duration, InputError> {
        let timeout = crate::protocol::validity::check(self.ttl, self.timeout, self.drift_factor)
            .map_err(InputError::Config)?;
        if self.connect_timeout.is_zero() {
            return Err(InputError::Config(
                "connect timeout must be above zero".into(),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(InputError::Config(
                "max_in_flight must be at least 1: no request could be sent".into(),
            ));
        }
        check_prefix(&self.prefix).map_err(InputError::Config)?;
        self.retry.validate()?;
        Ok(timeout)
    }

    /// The options of a connection to one master, with the per-request `timeout` that
    /// [`check`](Self::check) gave.
    pub fn node_options(&self, timeout: Duration) -> NodeOptions {
        NodeOptions {
            timeout,
            connect_timeout: self.connect_timeout,
            max_in_flight: self.max_in_flight,
            tls: self.tls.clone(),
        }
    }

    /// The restart guard's state over `masters`, with the per-request `timeout` that
    /// [`check`](Self::check) gave, sharing one new [`Background`].
    pub fn voters<M: Master>(
        &self,
        masters: Vec<M>,
        timeout: Duration,
    ) -> Result<Arc<Voters<M>>, InputError> {
        let keys = RestartKeys::new(&self.prefix)?;
        Ok(Arc::new(Voters::new(
            masters,
            keys,
            self.restart.clone(),
            self.ttl,
            timeout,
            Background::default(),
        )))
    }
}

/// The setters of [`LockOptions`] on a builder that has a field `options: LockOptions`: the
/// same names, documents and defaults on every lock type's builder. For lock implementations.
///
/// ```
/// use redlock_single::{LockOptions, lock_option_setters};
///
/// #[derive(Default)]
/// struct SemaphoreBuilder {
///     options: LockOptions,
///     permits: usize,
/// }
///
/// impl SemaphoreBuilder {
///     lock_option_setters!();
/// }
///
/// let b = SemaphoreBuilder::default().ttl(std::time::Duration::from_secs(3));
/// assert_eq!(b.options.ttl.as_secs(), 3);
/// ```
#[macro_export]
macro_rules! lock_option_setters {
    () => {
        /// All the shared settings at once, replacing those set before.
        pub fn options(mut self, options: $crate::LockOptions) -> Self {
            self.options = options;
            self
        }

        /// How long a lock lives on the masters unless extended (default 10 s).
        pub fn ttl(mut self, ttl: ::std::time::Duration) -> Self {
            self.options.ttl = ttl;
            self
        }

        /// How `acquire` waits for a held lock (default
        /// [`DEFAULT_RETRY`]($crate::DEFAULT_RETRY)).
        pub fn retry(mut self, retry: $crate::Retry) -> Self {
            self.options.retry = retry;
            self
        }

        /// The prefix of every key (default `redlock:`); no `{` or `}`.
        pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
            self.options.prefix = prefix.into();
            self
        }

        /// Text stored with the token on every master, shown by `inspect` (for example
        /// `host:pid`).
        pub fn meta(mut self, meta: impl Into<String>) -> Self {
            self.options.meta = meta.into();
            self
        }

        /// The timeout of each request to one master (default `ttl / 200`, between 5 ms and
        /// 1 s: 50 ms for a 10 s ttl). Small against the ttl, so that a slow master does not
        /// eat the validity; it must be smaller than the ttl less the drift.
        pub fn timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.options.timeout = Some(timeout);
            self
        }

        /// The bound on connecting (default 5 s), which fred's handshake with each master
        /// follows too.
        pub fn connect_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.options.connect_timeout = timeout;
            self
        }

        /// How fast a master's clock may run, as a fraction (default 0.01, the spec's).
        pub fn drift_factor(mut self, factor: f64) -> Self {
            self.options.drift_factor = factor;
            self
        }

        /// Whether a master that may have lost locks in a restart grants nothing until the
        /// restart delay has passed (default on; see `docs/operations.md`). Switching it off
        /// is safe only when operators delay every restart by the largest ttl in use:
        /// otherwise a master that restarts empty grants a lock that another client still
        /// holds.
        pub fn restart_guard(mut self, on: bool) -> Self {
            self.options.restart.enabled = on;
            self
        }

        /// Whether a master that persists every write (AOF with `appendfsync always`) grants
        /// locks at once after a restart (default off). Right only when every master always
        /// ran that way and none ever fails over to a replica: the persistence of the process
        /// that came back says nothing about the one that crashed. Needs `CONFIG GET` rights.
        pub fn trust_persistence(mut self, on: bool) -> Self {
            self.options.restart.trust_persistence = on;
            self
        }

        /// The least restart delay for the fleet (default: the largest ttl any client of the
        /// masters is known to use, at least 2 s). Set it to the largest ttl of the fleet
        /// when clients with different ttls share the masters: a master that lost its data
        /// lost what it knew of them.
        pub fn restart_delay(mut self, delay: ::std::time::Duration) -> Self {
            self.options.restart.delay = Some(delay);
            self
        }

        /// How many requests may wait for an answer from one master at once (default
        /// [`DEFAULT_MAX_IN_FLIGHT`]($crate::DEFAULT_MAX_IN_FLIGHT)); beyond it a request
        /// fails at once.
        pub fn max_in_flight(mut self, max: usize) -> Self {
            self.options.max_in_flight = max;
            self
        }

        /// For `rediss://` masters: the PEM file of the certificates to trust instead of the
        /// system's roots.
        pub fn tls_ca_file(mut self, path: impl Into<::std::path::PathBuf>) -> Self {
            self.options.tls.ca_file = Some(path.into());
            self
        }

        /// For `rediss://` masters that ask for a client certificate (mutual TLS): the PEM
        /// certificate chain and private key to present.
        pub fn tls_client_auth(
            mut self,
            cert: impl Into<::std::path::PathBuf>,
            key: impl Into<::std::path::PathBuf>,
        ) -> Self {
            self.options.tls.client_auth = Some((cert.into(), key.into()));
            self
        }
    };
}
