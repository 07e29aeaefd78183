//! [`Clock`]: the control file of the LD_PRELOAD clock shim, through which a test makes one
//! server's wall clock run at another rate or jump while the server runs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The path of the shim library built by this crate's build script.
pub(crate) fn shim_path() -> &'static str {
    env!("REDLOCK_CLOCK_SHIM")
}

/// The fake wall clock of one server.
///
/// The shim computes `fake = real + offset + (real − anchor) × (rate − 1)`. Every change here
/// re-anchors at the present, so the fake clock stays continuous across rate changes and moves
/// only by the jumps asked for. The shim reads the file at most once a millisecond.
#[derive(Debug, Clone)]
pub struct Clock {
    path: PathBuf,
    state: Arc<Mutex<ClockState>>,
}

#[derive(Debug, Clone, Copy)]
struct ClockState {
    anchor_ns: i128,
    offset_ns: i128,
    rate_ppm: i64,
}

fn real_now_ns() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

impl ClockState {
    fn fake_at(&self, real: i128) -> i128 {
        real + self.offset_ns
            + (real - self.anchor_ns) * (i128::from(self.rate_ppm) - 1_000_000) / 1_000_000
    }
}

impl Clock {
    pub(crate) fn new(path: PathBuf) -> io::Result<Clock> {
        let clock = Clock {
            path,
            state: Arc::new(Mutex::new(ClockState {
                anchor_ns: real_now_ns(),
                offset_ns: 0,
                rate_ppm: 1_000_000,
            })),
        };
        clock.update(|_| {})?;
        Ok(clock)
    }

    /// The control file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the clock run at `rate` times real time from now on (2.0: twice as fast).
    pub fn set_rate(&self, rate: f64) -> io::Result<()> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "rate must be positive",
            ));
        }
        self.update(|s| s.rate_ppm = (rate * 1e6).round() as i64)
    }

    /// Moves the clock forward by `by` at once.
    pub fn jump_forward(&self, by: Duration) -> io::Result<()> {
        self.update(|s| s.offset_ns += by.as_nanos() as i128)
    }

    /// Moves the clock back by `by` at once.
    pub fn jump_back(&self, by: Duration) -> io::Result<()> {
        self.update(|s| s.offset_ns -= by.as_nanos() as i128)
    }

    /// How far the fake clock is ahead of the real one now (negative: behind).
    pub fn skew(&self) -> Duration {
        let s = *self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = real_now_ns();
        Duration::from_nanos((s.fake_at(now) - now).unsigned_abs().min(u64::MAX as u128) as u64)
    }

    /// Re-anchors at the present, applies `change`, and rewrites the file atomically.
    fn update(&self, change: impl FnOnce(&mut ClockState)) -> io::Result<()> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = real_now_ns();
        let fake_now = s.fake_at(now);
        s.anchor_ns = now;
        s.offset_ns = fake_now - now;
        change(&mut s);
        let tmp = self.path.with_extension("tmp");
        fs::write(
            &tmp,
            format!("{} {} {}\n", s.anchor_ns, s.offset_ns, s.rate_ppm),
        )?;
        fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_changes_keep_the_clock_continuous() {
        let s = ClockState {
            anchor_ns: 1_000,
            offset_ns: 0,
            rate_ppm: 2_000_000,
        };
        assert_eq!(s.fake_at(1_000), 1_000);
        assert_eq!(s.fake_at(2_000), 3_000);
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Clock::new(dir.path().join("c")).expect("clock");
        clock.set_rate(3.0).expect("rate");
        clock.jump_forward(Duration::from_secs(5)).expect("jump");
        let text = fs::read_to_string(clock.path()).expect("file");
        let parts: Vec<i128> = text
            .split_whitespace()
            .map(|p| p.parse().expect("int"))
            .collect();
        assert_eq!(parts.len(), 3);
        assert!(parts[1] >= 5_000_000_000, "{text}");
        assert_eq!(parts[2], 3_000_000);
        assert!(clock.skew() >= Duration::from_secs(5));
    }
}
