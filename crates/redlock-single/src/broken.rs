//! Switches that break the library on purpose, for the fault campaign (`cargo xtask chaos`)
//! only: each turns one defence off, so that the campaign can show that its checker catches the
//! break. They exist only with the `broken` feature, which nothing but the campaign enables, and
//! are off until [`enable`] is called.
//!
//! (The third break the campaign shows, the restart guard off, is the public
//! `restart_guard(false)` setting.)

use std::sync::atomic::{AtomicBool, Ordering};

/// One defence to turn off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Break {
    /// Fencing counters are plain `INCR` counters, not the hybrid counter: a master that lost
    /// its data counts again from 1.
    PlainCounter,
    /// The restart delay is this process's own largest ttl only, not the largest ttl any client
    /// of the masters uses.
    OwnTtlOnly,
}

static PLAIN_COUNTER: AtomicBool = AtomicBool::new(false);
static OWN_TTL_ONLY: AtomicBool = AtomicBool::new(false);

/// Turns `what` off for the rest of the process. Call it before the first lock is made.
pub fn enable(what: Break) {
    match what {
        Break::PlainCounter => PLAIN_COUNTER.store(true, Ordering::Relaxed),
        Break::OwnTtlOnly => OWN_TTL_ONLY.store(true, Ordering::Relaxed),
    }
}

pub(crate) fn plain_counter() -> bool {
    PLAIN_COUNTER.load(Ordering::Relaxed)
}

pub(crate) fn own_ttl_only() -> bool {
    OWN_TTL_ONLY.load(Ordering::Relaxed)
}
