//! [`Shared`]: what every lock taken through one `Redlock` shares: the masters and who of them
//! may vote, the settings, and the background work.

use std::sync::Arc;
use std::time::Duration;

use redlock_single::background::Background;
use redlock_single::voters::Voters;
use redlock_single::{LockKey, LockOptions, Master};

use crate::error::{Cause, MasterFailure, Result};
use crate::tally::quorum;

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Shared<M> {
    pub(crate) voters: Arc<Voters<M>>,
    pub(crate) options: LockOptions,
    pub(crate) max_extensions: Option<u32>,
    pub(crate) max_hold: Option<Duration>,
    /// The least validity an acquisition must leave to count.
    pub(crate) min_validity: Duration,
}

impl<M: Master> Shared<M> {
    /// How many masters there are.
    pub(crate) fn n(&self) -> usize {
        self.voters.len()
    }

    pub(crate) fn quorum(&self) -> usize {
        quorum(self.n())
    }

    pub(crate) fn background(&self) -> &Background {
        self.voters.background()
    }

    pub(crate) fn key(&self, resource: &str) -> Result<LockKey> {
        Ok(LockKey::new(&self.options.prefix, resource)?)
    }

    /// Master `i` did not count, for `cause`.
    pub(crate) fn failure(&self, i: usize, cause: Cause) -> MasterFailure {
        MasterFailure {
            addr: self.voters.master(i).addr().to_owned(),
            cause,
        }
    }
}
