//! Hedging: a second attempt at another worker when the first is slower than most.
//!
//! "The Tail at Scale" (Dean and Barroso, 2013): defer the second request until the first
//! has been outstanding longer than the 95th-percentile latency, which limits the extra
//! load to about 5 % while cutting the tail. The percentile comes from the latencies of the
//! client's recent successful attempts, kept in a [`LatencyWindow`]: two hdrhistograms, the
//! window being filled and the one before it, so the figure follows the workers as they
//! slow down or recover. Below `min_samples` latencies the client does not hedge at all:
//! a percentile of a handful is noise. Each hedge is paid from the retry budget.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::time::Instant;

/// Hedging's settings.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HedgeConfig {
    /// The latency quantile after which a call is hedged, in (0, 1): 0.95 is the 95th
    /// percentile.
    pub quantile: f64,
    /// No hedging until the window holds this many latencies.
    pub min_samples: u64,
    /// How long each of the two histograms fills before it rotates: the quantile covers the
    /// last one to two of these.
    pub window: Duration,
    /// Hedges per call at most (each after another quantile's wait).
    pub max_hedges: u32,
}

impl Default for HedgeConfig {
    /// The paper's 95th percentile, one hedge per call, over the last 10 to 20 s, and not
    /// before 100 latencies (at fewer, the 95th percentile is one of the five slowest).
    fn default() -> Self {
        Self { quantile: 0.95, min_samples: 100, window: Duration::from_secs(10), max_hedges: 1 }
    }
}

/// Latencies are kept in microseconds, from 1 µs up to this (an hour); longer ones count as
/// an hour.
const MAX_MICROS: u64 = 3_600_000_000;
/// Two significant digits: a quantile is within 1 % of the truth, in about 13 KB per
/// histogram.
const SIGNIFICANT_DIGITS: u8 = 2;

/// The latencies of the last one to two `window`s, with their quantiles.
#[derive(Clone, Debug)]
pub struct LatencyWindow {
    window: Duration,
    /// When `current` started filling.
    rotated: Instant,
    current: Histogram<u32>,
    previous: Histogram<u32>,
    /// `current + previous`, kept so that a quantile reads one histogram.
    both: Histogram<u32>,
}

impl LatencyWindow {
    /// An empty window whose first histogram starts filling at `now`.
    pub fn new(window: Duration, now: Instant) -> Self {
        // The bounds are constants hdrhistogram accepts (low >= 1, high >= 2 * low,
        // digits <= 5); a test builds one.
        let empty = Histogram::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_DIGITS)
            .expect("constant bounds that hdrhistogram accepts");
        Self { window, rotated: now, current: empty.clone(), previous: empty.clone(), both: empty }
    }

    /// One latency, at `now`.
    pub fn record(&mut self, now: Instant, latency: Duration) {
        self.rotate(now);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS);
        self.current.saturating_record(micros);
        self.both.saturating_record(micros);
    }

    /// How many latencies the window holds at `now`.
    pub fn len(&mut self, now: Instant) -> u64 {
        self.rotate(now);
        self.both.len()
    }

    /// Whether the window holds no latency at `now`.
    pub fn is_empty(&mut self, now: Instant) -> bool {
        self.len(now) == 0
    }

    /// The latency at `quantile` (in [0, 1]) of those the window holds at `now`, or `None`
    /// when it holds none.
    pub fn quantile(&mut self, now: Instant, quantile: f64) -> Option<Duration> {
        self.rotate(now);
        if self.both.is_empty() {
            return None;
        }
        Some(Duration::from_micros(self.both.value_at_quantile(quantile)))
    }

    /// Starts a new histogram for each `window` that has passed since the current one
    /// started: after one, the current becomes the previous; after two, both are empty.
    fn rotate(&mut self, now: Instant) {
        let elapsed = now - self.rotated;
        if elapsed < self.window {
            return;
        }
        if elapsed < self.window.saturating_mul(2) {
            core::mem::swap(&mut self.current, &mut self.previous);
            self.current.reset();
            self.both.reset();
            // Same bounds on both sides: adding cannot fail; if it could, the window would
            // only forget the previous latencies early.
            let _ = self.both.add(&self.previous);
            self.rotated += self.window;
        } else {
            self.current.reset();
            self.previous.reset();
            self.both.reset();
            let windows = (elapsed.as_nanos() / self.window.as_nanos().max(1)) as u32;
            self.rotated += self.window.saturating_mul(windows);
        }
    }
}

/// When to hedge: the configured quantile of the window, once it holds enough latencies.
#[derive(Clone, Debug)]
pub struct Hedging {
    config: HedgeConfig,
    latencies: LatencyWindow,
}

impl Hedging {
    /// Hedging with no latency seen yet, from `now`.
    pub fn new(config: HedgeConfig, now: Instant) -> Self {
        let latencies = LatencyWindow::new(config.window, now);
        Self { config, latencies }
    }

    /// Its settings.
    pub fn config(&self) -> &HedgeConfig {
        &self.config
    }

    /// A successful attempt's latency.
    pub fn record(&mut self, now: Instant, latency: Duration) {
        self.latencies.record(now, latency);
    }

    /// How long an attempt may be outstanding at `now` before the call is hedged, or `None`
    /// while the window holds fewer than `min_samples` latencies.
    pub fn delay(&mut self, now: Instant) -> Option<Duration> {
        if self.latencies.len(now) < self.config.min_samples {
            return None;
        }
        self.latencies.quantile(now, self.config.quantile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_window_rotates_at_each_whole_window() {
        let mut w = LatencyWindow::new(Duration::from_secs(10), Instant::ZERO);
        w.record(Instant::ZERO, MS(1));
        // At exactly 10 s the first histogram becomes the previous one, and a new one fills.
        w.record(Instant::from_secs(10), MS(2));
        assert_eq!(w.len(Instant::from_secs(10)), 2);
        // At 20 s the first is gone and the second is the previous.
        assert_eq!(w.len(Instant::from_secs(20)), 1);
        assert_eq!(w.quantile(Instant::from_secs(20), 0.0), Some(MS(2)));
        assert_eq!(w.len(Instant::from_secs(40)), 0);
        // Two whole windows after the last rotation, both histograms are empty.
        let mut w = LatencyWindow::new(Duration::from_secs(10), Instant::ZERO);
        w.record(Instant::ZERO, MS(1));
        w.record(Instant::from_secs(10), MS(2));
        let mut later = w.clone();
        assert_eq!(later.len(Instant::from_secs(30)), 0, "the latency of 10 s is two windows old");
        assert_eq!(w.len(Instant::from_millis(29_999)), 1, "and not a nanosecond before");
    }

    #[test]
    fn quantiles_of_recorded_latencies_within_one_percent() {
        let mut w = LatencyWindow::new(Duration::from_secs(10), Instant::ZERO);
        assert_eq!(w.quantile(Instant::ZERO, 0.5), None);
        assert!(w.is_empty(Instant::ZERO));
        for ms in 1..=100 {
            w.record(Instant::from_millis(ms), MS(ms));
        }
        assert_eq!(w.len(Instant::from_secs(1)), 100);
        assert!(!w.is_empty(Instant::from_secs(1)));
        // (quantile, expected ms)
        for (q, ms) in [(0.0, 1), (0.5, 50), (0.95, 95), (0.99, 99), (1.0, 100)] {
            let got = w.quantile(Instant::from_secs(1), q).expect("latencies recorded").as_secs_f64() * 1e3;
            assert!((got - ms as f64).abs() <= ms as f64 * 0.01, "q {q}: {got} ms, expected {ms} ms");
        }
    }

    #[test]
    fn latencies_are_kept_from_a_microsecond_to_an_hour() {
        let mut w = LatencyWindow::new(Duration::from_secs(10), Instant::ZERO);
        w.record(Instant::ZERO, Duration::ZERO);
        assert_eq!(w.quantile(Instant::ZERO, 1.0), Some(Duration::from_micros(1)));
        w.record(Instant::ZERO, Duration::from_secs(86_400));
        let top = w.quantile(Instant::ZERO, 1.0).expect("recorded");
        assert!(top >= Duration::from_secs(3590) && top <= Duration::from_secs(3636), "{top:?}");
        w.record(Instant::ZERO, Duration::MAX);
        assert_eq!(w.len(Instant::ZERO), 3);
    }

    #[test]
    fn the_window_forgets_latencies_one_to_two_windows_old() {
        let mut w = LatencyWindow::new(Duration::from_secs(10), Instant::ZERO);
        w.record(Instant::from_secs(1), MS(500));
        w.record(Instant::from_secs(12), MS(10));
        // At 12 s the first latency is in the previous histogram: both count.
        assert_eq!(w.len(Instant::from_secs(12)), 2);
        assert!(w.quantile(Instant::from_secs(19), 1.0).expect("recorded") >= MS(495));
        // At 20 s the histogram of [0, 10 s) is gone; the one of [10 s, 20 s) stays.
        assert_eq!(w.len(Instant::from_secs(20)), 1);
        assert!(w.quantile(Instant::from_secs(20), 1.0).expect("recorded") <= MS(11));
        // Two windows with nothing recorded: empty.
        assert_eq!(w.len(Instant::from_secs(40)), 0);
        // The rotation stays aligned on 10 s: at 49.9 s a latency from 40.5 s still counts.
        w.record(Instant::from_millis(40_500), MS(7));
        assert_eq!(w.len(Instant::from_millis(49_900)), 1);
        assert_eq!(w.len(Instant::from_millis(59_999)), 1);
        assert_eq!(w.len(Instant::from_secs(60)), 0);
    }

    #[test]
    fn a_window_that_skips_many_rotations_stays_aligned() {
        let mut w = LatencyWindow::new(Duration::from_secs(10), Instant::ZERO);
        w.record(Instant::from_secs(1), MS(1));
        // 35 s later: three windows passed; the new one started at 30 s.
        w.record(Instant::from_secs(35), MS(2));
        assert_eq!(w.len(Instant::from_secs(35)), 1);
        assert_eq!(w.len(Instant::from_millis(39_999)), 1);
        assert_eq!(w.len(Instant::from_secs(45)), 1, "the previous window, [30 s, 40 s), counts until 50 s");
        assert_eq!(w.len(Instant::from_secs(50)), 0);
    }

    #[test]
    fn hedging_waits_for_enough_latencies_then_uses_the_quantile() {
        let config = HedgeConfig { quantile: 0.9, min_samples: 10, window: Duration::from_secs(10), max_hedges: 1 };
        let mut h = Hedging::new(config.clone(), Instant::ZERO);
        assert_eq!(h.config(), &config);
        for ms in 1..=9 {
            h.record(Instant::ZERO, MS(ms * 10));
            assert_eq!(h.delay(Instant::ZERO), None, "{ms} latencies");
        }
        h.record(Instant::ZERO, MS(100));
        let delay = h.delay(Instant::ZERO).expect("ten latencies");
        assert!(delay >= MS(89) && delay <= MS(91), "{delay:?}");
        // Twenty seconds later they have all gone.
        assert_eq!(h.delay(Instant::from_secs(20)), None);
    }

    #[test]
    fn the_default_hedges_once_at_the_95th_percentile_after_100_latencies() {
        let c = HedgeConfig::default();
        assert_eq!((c.quantile, c.min_samples, c.window, c.max_hedges), (0.95, 100, Duration::from_secs(10), 1));
    }
}
