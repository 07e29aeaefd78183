//! Validity arithmetic: how long a lock that was granted can be relied on, after the time the
//! request took and an allowance for the master's clock running fast. Pure, no I/O.

use std::time::Duration;

/// The drift factor of the Redlock spec: a master's clock may run up to 1% fast.
pub const DEFAULT_DRIFT_FACTOR: f64 = 0.01;

/// A fixed allowance added to the drift, as in the spec, for the granularity of expiry.
pub const DRIFT_FLOOR: Duration = Duration::from_millis(2);

/// The clock drift allowed for a lock of `ttl`: `ttl × factor + 2 ms`.
pub fn drift(ttl: Duration, factor: f64) -> Duration {
    ttl.mul_f64(factor.clamp(0.0, 1.0))
        .saturating_add(DRIFT_FLOOR)
}

/// The time a lock of `ttl` that took `elapsed` to be granted can be relied on:
/// `ttl − elapsed − drift`, or `None` when nothing is left.
pub fn validity(ttl: Duration, elapsed: Duration, drift: Duration) -> Option<Duration> {
    ttl.checked_sub(elapsed)?
        .checked_sub(drift)
        .filter(|v| !v.is_zero())
}

/// The default per-request timeout for a ttl: `ttl / 200`, between 5 ms and 1 s. For the
/// spec's example of a 10 s ttl that is 50 ms, the top of the spec's 5–50 ms range.
pub fn default_timeout(ttl: Duration) -> Duration {
    (ttl / 200).clamp(Duration::from_millis(5), Duration::from_secs(1))
}

/// The longest ttl accepted: a year. Larger values would overflow instants and Redis's
/// millisecond expiry arithmetic, and no lock should need one.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Checks a ttl given to acquire or extend: at least 1 ms, at most [`MAX_TTL`].
pub fn check_ttl(ttl: Duration) -> Result<(), String> {
    if ttl < Duration::from_millis(1) {
        return Err(format!("ttl must be at least 1 ms, not {ttl:?}"));
    }
    if ttl > MAX_TTL {
        return Err(format!("ttl must be at most a year, not {ttl:?}"));
    }
    Ok(())
}

/// Checks the timing settings shared by every lock: a ttl of at least 1 ms, a drift factor in
/// `[0, 1)`, a non-zero per-request timeout (`ttl / 200` when not given) and a ttl larger than
/// that timeout plus the drift, so that a reply within the timeout leaves some validity.
/// Returns the timeout, or what is wrong.
pub fn check(
    ttl: Duration,
    timeout: Option<Duration>,
    drift_factor: f64,
) -> Result<Duration, String> {
    check_ttl(ttl)?;
    if !(0.0..1.0).contains(&drift_factor) {
        return Err(format!(
            "drift factor must be in [0, 1), not {drift_factor}"
        ));
    }
    let timeout = timeout.unwrap_or_else(|| default_timeout(ttl));
    if timeout.is_zero() {
        return Err("timeout must be above zero".into());
    }
    let drift = drift(ttl, drift_factor);
    if timeout.saturating_add(drift) >= ttl {
        return Err(format!(
            "ttl {ttl:?} must be larger than the request timeout {timeout:?} plus the drift {drift:?}"
        ));
    }
    Ok(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn spec_example() {
        let ttl = Duration::from_secs(10);
        assert_eq!(drift(ttl, DEFAULT_DRIFT_FACTOR), ms(102));
        assert_eq!(
            validity(ttl, ms(8), drift(ttl, DEFAULT_DRIFT_FACTOR)),
            Some(ttl - ms(110))
        );
        assert_eq!(default_timeout(ttl), ms(50));
        assert_eq!(default_timeout(MS), ms(5));
    }

    #[test]
    fn settings_are_checked() {
        let s = Duration::from_secs(1);
        assert_eq!(check(10 * s, None, 0.01), Ok(ms(50)));
        assert!(
            check(Duration::ZERO, None, 0.01)
                .unwrap_err()
                .contains("ttl")
        );
        assert!(check(s, None, 1.0).unwrap_err().contains("drift"));
        assert!(check(s, None, f64::NAN).unwrap_err().contains("drift"));
        assert!(
            check(s, Some(Duration::ZERO), 0.01)
                .unwrap_err()
                .contains("timeout")
        );
        assert!(check(s, Some(s), 0.01).unwrap_err().contains("larger"));
        assert!(
            check(ms(100), Some(ms(99)), 0.0)
                .unwrap_err()
                .contains("drift")
        );
    }

    #[test]
    fn nothing_left_is_none() {
        assert_eq!(validity(ms(10), ms(8), ms(2)), None);
        assert_eq!(validity(ms(10), ms(11), ms(2)), None);
    }

    proptest! {
        #[test]
        fn validity_never_exceeds_ttl_minus_elapsed(
            ttl in 1u64..100_000, elapsed in 0u64..100_000, factor in 0.0f64..0.5,
        ) {
            let (ttl, elapsed) = (ms(ttl), ms(elapsed));
            let d = drift(ttl, factor);
            prop_assert!(d >= DRIFT_FLOOR);
            if let Some(v) = validity(ttl, elapsed, d) {
                prop_assert!(v + elapsed + d == ttl);
            } else {
                prop_assert!(elapsed + d >= ttl);
            }
        }
    }
}
