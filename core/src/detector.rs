//! Phi Accrual failure detection ("is this peer late?"), on Akka's model.
//!
//! Hayashibara et al.'s detector outputs a suspicion level `phi` instead of a yes/no:
//! `phi = -log10(P(a heartbeat arrives later than now))`, with inter-arrival times taken as
//! normally distributed over a bounded window of recent samples. As Akka's
//! `PhiAccrualFailureDetector`, conclave
//!
//! - floors the standard deviation at `min_std_dev`, so a perfectly regular peer does not
//!   become suspect after one slightly late heartbeat;
//! - adds `acceptable_pause` to the mean, tolerating known pauses (GC, a slow probe);
//! - seeds the window with two samples, `estimate ± estimate/4`, from the first-heartbeat
//!   estimate, so phi is meaningful from the second heartbeat on;
//! - approximates the normal CDF with the logistic function `1 / (1 + e^(-y(1.5976 + 0.070566 y²)))`.
//!
//! Updates are O(1): the window keeps running sums of the intervals and of their squares.

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::Instant;

/// The parameters of a [`PhiAccrual`] detector.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PhiParams {
    /// Phi at or above which the peer is considered late (Akka: 8.0).
    pub threshold: f64,
    /// How many inter-arrival intervals the window keeps (Akka: 1000).
    pub max_sample_size: usize,
    /// The floor of the standard deviation (Akka: 100 ms).
    pub min_std_dev: Duration,
    /// Added to the mean interval: a pause this long is no cause for suspicion (Akka: 3 s).
    pub acceptable_pause: Duration,
    /// The interval assumed before any has been measured (Akka: the heartbeat interval, 1 s).
    pub first_heartbeat_estimate: Duration,
}

impl Default for PhiParams {
    /// Akka's defaults (`akka.cluster.failure-detector` in reference.conf).
    fn default() -> Self {
        Self {
            threshold: 8.0,
            max_sample_size: 1000,
            min_std_dev: Duration::from_millis(100),
            acceptable_pause: Duration::from_secs(3),
            first_heartbeat_estimate: Duration::from_secs(1),
        }
    }
}

/// A Phi Accrual failure detector for one peer.
#[derive(Clone, Debug)]
pub struct PhiAccrual {
    params: PhiParams,
    /// Inter-arrival intervals in milliseconds, oldest first.
    intervals: VecDeque<f64>,
    sum: f64,
    sum_squares: f64,
    last: Option<Instant>,
}

impl PhiAccrual {
    /// A detector that has heard nothing yet; its window holds the two seed samples.
    pub fn new(params: PhiParams) -> Self {
        let mut detector = Self {
            intervals: VecDeque::with_capacity(params.max_sample_size.clamp(2, 64)),
            params,
            sum: 0.0,
            sum_squares: 0.0,
            last: None,
        };
        let mean = millis(detector.params.first_heartbeat_estimate);
        let std_dev = mean / 4.0;
        detector.push(mean - std_dev);
        detector.push(mean + std_dev);
        detector
    }

    /// Records a heartbeat (any sign of life) received at `now`.
    ///
    /// A heartbeat older than the last one is ignored, so reordered inputs cannot record a
    /// negative interval.
    pub fn heartbeat(&mut self, now: Instant) {
        if let Some(last) = self.last {
            if now < last {
                return;
            }
            self.push(millis(now - last));
        }
        self.last = Some(now);
    }

    /// The suspicion level at `now`: 0 before the first heartbeat, then rising while no
    /// heartbeat arrives.
    pub fn phi(&self, now: Instant) -> f64 {
        let Some(last) = self.last else {
            return 0.0;
        };
        let elapsed = millis(now.saturating_duration_since(last));
        let mean = self.mean() + millis(self.params.acceptable_pause);
        phi(elapsed, mean, self.effective_std_dev())
    }

    /// `true` while phi is below the threshold.
    pub fn is_available(&self, now: Instant) -> bool {
        self.phi(now) < self.params.threshold
    }

    /// When phi will reach the threshold if no heartbeat arrives, or `None` before the
    /// first heartbeat. Drivers use it to schedule the next check instead of polling.
    pub fn deadline(&self) -> Option<Instant> {
        let last = self.last?;
        let mean = self.mean() + millis(self.params.acceptable_pause);
        let y = logistic_y_for_phi(self.params.threshold);
        let after_ms = (mean + y * self.effective_std_dev()).max(0.0);
        // Whole nanoseconds, rounded up so that phi(deadline) >= threshold.
        let nanos = (after_ms * 1e6).ceil();
        let nanos = if nanos >= u64::MAX as f64 { u64::MAX } else { nanos as u64 };
        Some(Instant::from_nanos(last.as_nanos().saturating_add(nanos)))
    }

    /// When the last heartbeat arrived.
    pub fn last_heartbeat(&self) -> Option<Instant> {
        self.last
    }

    /// The mean inter-arrival interval in the window.
    pub fn mean_interval(&self) -> Duration {
        Duration::from_secs_f64(self.mean().max(0.0) / 1000.0)
    }

    /// The standard deviation of the intervals in the window (before the floor applies).
    pub fn std_dev_interval(&self) -> Duration {
        Duration::from_secs_f64(self.std_dev() / 1000.0)
    }

    /// How many intervals the window holds (the two seed samples count).
    pub fn sample_count(&self) -> usize {
        self.intervals.len()
    }

    /// The parameters.
    pub fn params(&self) -> &PhiParams {
        &self.params
    }

    fn push(&mut self, interval_ms: f64) {
        if self.intervals.len() >= self.params.max_sample_size.max(1) {
            if let Some(oldest) = self.intervals.pop_front() {
                self.sum -= oldest;
                self.sum_squares -= oldest * oldest;
            }
        }
        self.intervals.push_back(interval_ms);
        self.sum += interval_ms;
        self.sum_squares += interval_ms * interval_ms;
    }

    /// The standard deviation phi uses: floored at `min_std_dev`, and never zero so that
    /// phi stays a number even with a zero floor.
    fn effective_std_dev(&self) -> f64 {
        self.std_dev().max(millis(self.params.min_std_dev)).max(1e-6)
    }

    fn mean(&self) -> f64 {
        self.sum / self.intervals.len().max(1) as f64
    }

    fn std_dev(&self) -> f64 {
        let n = self.intervals.len().max(1) as f64;
        let mean = self.sum / n;
        // Population variance, as Akka; running sums can dip below zero by rounding.
        (self.sum_squares / n - mean * mean).max(0.0).sqrt()
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Akka's phi: `-log10` of the logistic approximation of the normal tail beyond `elapsed`.
pub(crate) fn phi(elapsed_ms: f64, mean_ms: f64, std_dev_ms: f64) -> f64 {
    let y = (elapsed_ms - mean_ms) / std_dev_ms;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    if elapsed_ms > mean_ms {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    }
}

/// The `y` (standard deviations past the mean) at which [`phi`] reaches `threshold`,
/// found by bisection: phi is monotonic in `y`.
fn logistic_y_for_phi(threshold: f64) -> f64 {
    let (mut lo, mut hi) = (-20.0_f64, 40.0_f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if phi(mid, 0.0, 1.0) >= threshold {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}
