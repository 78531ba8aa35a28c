//! [`Clock`]: how the runtime reads time, mapped onto the core's [`Instant`].
//!
//! The core's [`Instant`] is nanoseconds since an arbitrary epoch. [`TokioClock`] counts
//! them from when it was made, on tokio's clock (which turmoil simulates); [`SkewedClock`]
//! wraps any clock with an offset and a drift that can change while it runs, so a
//! simulated host can be given a wrong clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclave_core::Instant;

/// A source of the core's time. The driver reads it before every input and sleeps
/// (on tokio's clock) for the difference to the core's next deadline.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now.
    fn now(&self) -> Instant;
}

/// tokio's monotonic clock, counted from the moment the clock was made.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading [`Instant::ZERO`] now. Needs no runtime (tokio's `Instant::now`
    /// reads the simulated clock inside a runtime with paused time, the real one otherwise).
    pub fn new() -> Self {
        Self { origin: tokio::time::Instant::now() }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.origin);
        Instant::from_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// Another clock, stepped and drifting: from the last change on, it advances
/// `1 + ppm / 1e6` times as fast as the inner clock. Changes apply from the moment they are
/// made, so the reading never jumps except by an explicit [`SkewedClock::jump`], and it
/// never goes back: after a backward jump it stands still until it catches up. Clones
/// share the skew.
#[derive(Clone, Debug)]
pub struct SkewedClock {
    inner: Arc<dyn Clock>,
    skew: Arc<Mutex<Skew>>,
}

#[derive(Clone, Copy, Debug)]
struct Skew {
    /// The inner reading when the skew last changed.
    anchor: u64,
    /// This clock's reading then.
    reading: u64,
    /// Parts per million fast (positive) or slow (negative).
    ppm: f64,
    /// The last reading given: like a monotonic clock, this one never goes back (after a
    /// backward jump it stands still until it catches up).
    last: u64,
}

impl SkewedClock {
    /// `inner`, unskewed until told otherwise.
    pub fn new(inner: Arc<dyn Clock>) -> Self {
        let now = inner.now().as_nanos();
        Self { inner, skew: Arc::new(Mutex::new(Skew { anchor: now, reading: now, ppm: 0.0, last: now })) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Skew, u64) -> R) -> R {
        let inner = self.inner.now().as_nanos();
        // A poisoned lock means a panic elsewhere while holding it; the skew is plain data
        // and still consistent, so keep using it.
        let mut skew = self.skew.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut skew, inner)
    }

    fn reading(skew: &Skew, inner: u64) -> u64 {
        let elapsed = inner.saturating_sub(skew.anchor) as f64;
        let scaled = elapsed * (1.0 + skew.ppm / 1e6);
        skew.reading.saturating_add(scaled.max(0.0) as u64)
    }

    /// Moves the clock by `by` (forwards if `forward`), now.
    pub fn jump(&self, by: Duration, forward: bool) {
        self.with(|skew, inner| {
            let now = Self::reading(skew, inner);
            let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
            skew.reading = if forward { now.saturating_add(by) } else { now.saturating_sub(by) };
            skew.anchor = inner;
        });
    }

    /// From now on, runs `ppm` parts per million fast (negative: slow).
    pub fn set_drift(&self, ppm: f64) {
        self.with(|skew, inner| {
            skew.reading = Self::reading(skew, inner);
            skew.anchor = inner;
            skew.ppm = ppm;
        });
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.with(|skew, inner| {
            skew.last = skew.last.max(Self::reading(skew, inner));
            skew.last
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Manual(Mutex<u64>);
    impl Clock for Manual {
        fn now(&self) -> Instant {
            Instant::from_nanos(*self.0.lock().unwrap())
        }
    }

    #[test]
    fn skew_offsets_and_drifts_from_when_it_is_set() {
        let inner = Arc::new(Manual(Mutex::new(1_000)));
        let clock = SkewedClock::new(inner.clone());
        assert_eq!(clock.now().as_nanos(), 1_000);
        clock.jump(Duration::from_nanos(500), true);
        assert_eq!(clock.now().as_nanos(), 1_500);
        clock.set_drift(100_000.0); // 10 % fast
        *inner.0.lock().unwrap() = 2_000;
        assert_eq!(clock.now().as_nanos(), 1_500 + 1_100);
        clock.jump(Duration::from_nanos(100), false);
        assert_eq!(clock.now().as_nanos(), 2_600, "a backward jump stands still");
        *inner.0.lock().unwrap() = 2_100;
        assert_eq!(clock.now().as_nanos(), 2_600 + 10);
    }
}
