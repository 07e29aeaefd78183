//! Retry policies: when to try again after an attempt found the lock held, and when to stop.
//! A [`Schedule`] is pure arithmetic; [`Retry::run`] is the one acquire loop of every lock
//! type, sleeping the schedule's delays between attempts.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::protocol::InputError;

/// How [`acquire`](crate::Lock::acquire) waits for a lock that someone else holds.
///
/// Every delay is jittered: the actual wait is drawn uniformly between half the nominal delay and
/// the whole of it, so that clients that failed together do not retry together. A policy stops
/// at its deadline (the last attempt is made at the deadline itself) or after its number of
/// attempts, whichever comes first.
///
/// ```
/// use std::time::Duration;
/// use redlock_single::Retry;
/// let policy = Retry::exponential(Duration::from_millis(10), Duration::from_millis(500))
///     .deadline(Duration::from_secs(5))
///     .attempts(100);
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    backoff: Backoff,
    deadline: Option<Duration>,
    attempts: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backoff {
    None,
    Linear(Duration),
    Exponential { min: Duration, max: Duration },
}

impl Retry {
    /// One attempt, no retry.
    pub const fn none() -> Retry {
        Retry {
            backoff: Backoff::None,
            deadline: None,
            attempts: Some(1),
        }
    }

    /// Retry after (about) the same delay every time. Set a deadline or a number of attempts,
    /// or it waits forever.
    pub const fn linear(delay: Duration) -> Retry {
        Retry {
            backoff: Backoff::Linear(delay),
            deadline: None,
            attempts: None,
        }
    }

    /// Retry after a delay that starts at `min` and doubles up to `max`. Set a deadline or a
    /// number of attempts, or it waits forever.
    pub const fn exponential(min: Duration, max: Duration) -> Retry {
        Retry {
            backoff: Backoff::Exponential { min, max },
            deadline: None,
            attempts: None,
        }
    }

    /// Give up once `deadline` has passed since the first attempt began.
    #[must_use]
    pub const fn deadline(mut self, deadline: Duration) -> Retry {
        self.deadline = Some(deadline);
        self
    }

    /// Give up after `attempts` attempts in all (the first one included).
    #[must_use]
    pub const fn attempts(mut self, attempts: u32) -> Retry {
        self.attempts = Some(attempts);
        self
    }

    /// Checks that the policy can work: non-zero delays, `min <= max`, at least one attempt.
    pub fn validate(&self) -> Result<(), InputError> {
        let bad = |msg: &str| Err(InputError::Config(format!("retry policy: {msg}")));
        match self.backoff {
            Backoff::Linear(d) if d.is_zero() => return bad("the delay must be above zero"),
            Backoff::Exponential { min, .. } if min.is_zero() => {
                return bad("the minimum delay must be above zero");
            }
            Backoff::Exponential { min, max } if min > max => {
                return bad("the minimum delay is larger than the maximum");
            }
            _ => {}
        }
        if self.attempts == Some(0) {
            return bad("at least one attempt is needed");
        }
        Ok(())
    }

    /// Runs `attempt` (given the attempt's number, from 1) until it succeeds, fails for good
    /// (`transient` says the failure is not worth another attempt), or the policy gives up,
    /// sleeping the jittered delays in between; returns the last failure when the policy gives
    /// up. The acquire loop of every lock type.
    ///
    /// # Cancel safety
    ///
    /// As cancel-safe as `attempt`: dropping it drops the attempt in flight or the sleep.
    pub async fn run<T, E, F, Fut>(
        &self,
        transient: impl Fn(&E) -> bool,
        mut attempt: F,
    ) -> Result<T, E>
    where
        E: Display,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let start = tokio::time::Instant::now();
        let mut schedule = self.schedule();
        let mut made = 0u32;
        loop {
            made = made.saturating_add(1);
            let failure = match attempt(made).await {
                Ok(t) => return Ok(t),
                Err(e) if transient(&e) => e,
                Err(e) => return Err(e),
            };
            // Bound first: the generator must not live across the sleep (it is not `Send`).
            let delay = schedule.next_delay(start.elapsed(), &mut rand::rng());
            match delay {
                Some(delay) => {
                    tracing::trace!(attempt = made, ?delay, error = %failure, "retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(failure),
            }
        }
    }

    /// A fresh schedule for one call of `acquire`.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            policy: *self,
            made: 0,
        }
    }
}

/// The state of one `acquire` call under a [`Retry`] policy.
#[derive(Debug, Clone)]
pub struct Schedule {
    policy: Retry,
    made: u32,
}

impl Schedule {
    /// Records that an attempt was made `elapsed` after the first one began, and returns how
    /// long to wait before the next, or `None` to give up.
    pub fn next_delay(&mut self, elapsed: Duration, rng: &mut impl Rng) -> Option<Duration> {
        self.made = self.made.saturating_add(1);
        if self.policy.attempts.is_some_and(|n| self.made >= n) {
            return None;
        }
        let nominal = match self.policy.backoff {
            Backoff::None => return None,
            Backoff::Linear(d) => d,
            Backoff::Exponential { min, max } => {
                let shift = (self.made - 1).min(31);
                min.saturating_mul(1u32 << shift).min(max)
            }
        };
        let half = nominal / 2;
        let jittered = half + rng.random_range(Duration::ZERO..=nominal - half);
        match self.policy.deadline {
            Some(deadline) => {
                let left = deadline.checked_sub(elapsed).filter(|d| !d.is_zero())?;
                Some(jittered.min(left))
            }
            None => Some(jittered),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const MS: Duration = Duration::from_millis(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn none_makes_one_attempt() {
        let mut s = Retry::none().schedule();
        assert_eq!(s.next_delay(Duration::ZERO, &mut rand::rng()), None);
    }

    #[test]
    fn attempts_are_counted() {
        let mut s = Retry::linear(ms(10)).attempts(3).schedule();
        let rng = &mut rand::rng();
        assert!(s.next_delay(Duration::ZERO, rng).is_some());
        assert!(s.next_delay(Duration::ZERO, rng).is_some());
        assert_eq!(s.next_delay(Duration::ZERO, rng), None);
    }

    #[test]
    fn deadline_cuts_the_last_wait_and_then_stops() {
        let mut s = Retry::linear(ms(100)).deadline(ms(250)).schedule();
        let rng = &mut rand::rng();
        let d = s.next_delay(ms(200), rng).expect("before the deadline");
        assert!(d <= ms(50), "{d:?}");
        assert_eq!(s.next_delay(ms(250), rng), None);
        assert_eq!(s.next_delay(ms(300), rng), None);
    }

    #[test]
    fn bad_policies_are_refused() {
        assert!(Retry::linear(Duration::ZERO).validate().is_err());
        assert!(Retry::exponential(Duration::ZERO, MS).validate().is_err());
        assert!(Retry::exponential(ms(2), MS).validate().is_err());
        assert!(Retry::linear(MS).attempts(0).validate().is_err());
        assert!(Retry::none().validate().is_ok());
        assert!(Retry::exponential(MS, MS).deadline(MS).validate().is_ok());
    }

    proptest! {
        #[test]
        fn exponential_delays_stay_within_jitter_of_the_doubling(
            min_ms in 1u64..50, factor in 1u64..64, seed: u64, n in 1usize..40,
        ) {
            let (min, max) = (ms(min_ms), ms(min_ms * factor));
            let mut s = Retry::exponential(min, max).schedule();
            let mut rng = StdRng::seed_from_u64(seed);
            for i in 0..n {
                let d = s.next_delay(Duration::ZERO, &mut rng).expect("no limit set");
                let nominal = min.saturating_mul(1 << i.min(31)).min(max);
                prop_assert!(d >= nominal / 2 && d <= nominal, "{i}: {d:?} vs {nominal:?}");
            }
        }

        #[test]
        fn never_waits_past_the_deadline(
            delay_ms in 1u64..500, deadline_ms in 0u64..2000, elapsed_ms in 0u64..3000, seed: u64,
        ) {
            let mut s = Retry::linear(ms(delay_ms)).deadline(ms(deadline_ms)).schedule();
            let mut rng = StdRng::seed_from_u64(seed);
            match s.next_delay(ms(elapsed_ms), &mut rng) {
                Some(d) => prop_assert!(elapsed_ms < deadline_ms && (ms(elapsed_ms) + d) <= ms(deadline_ms)),
                None => prop_assert!(elapsed_ms >= deadline_ms),
            }
        }
    }
}
