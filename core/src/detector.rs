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
//! `exp` and `log10` are the `libm` crate's, pure Rust, so phi is the same bits on every
//! platform (a test pins them).

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
    /// [`Self::deadline`], kept current by every heartbeat: drivers ask for it after every
    /// input, and it changes only when a heartbeat arrives.
    deadline: Option<Instant>,
    last: Option<Instant>,
    sum: f64,
    sum_squares: f64,
    /// Standard deviations past the mean at which phi reaches the threshold; fixed by the
    /// threshold, so computed once.
    threshold_y: f64,
    /// The interval that leaves the window at the next push once it is full: read a
    /// heartbeat ahead, so that no heartbeat waits on a window slot out of cache.
    leaving: f64,
    /// Inter-arrival intervals in milliseconds: in arrival order until the window is full,
    /// then a ring whose oldest is at `oldest`.
    intervals: Vec<f64>,
    oldest: usize,
    params: PhiParams,
}

impl PhiAccrual {
    /// A detector that has heard nothing yet; its window holds the two seed samples.
    pub fn new(params: PhiParams) -> Self {
        let threshold_y = logistic_y_for_phi(params.threshold);
        Self::with_threshold_y(params, threshold_y)
    }

    /// A new detector with this one's parameters, as [`Self::new`] makes it, without
    /// solving for the threshold again (a bisection: a member that learns a thousand peers
    /// at once changes its watches often).
    pub(crate) fn fresh(&self) -> Self {
        Self::with_threshold_y(self.params.clone(), self.threshold_y)
    }

    fn with_threshold_y(params: PhiParams, threshold_y: f64) -> Self {
        let mut detector = Self {
            threshold_y,
            leaving: 0.0,
            intervals: Vec::with_capacity(params.max_sample_size.clamp(2, 64)),
            oldest: 0,
            params,
            sum: 0.0,
            sum_squares: 0.0,
            last: None,
            deadline: None,
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
    /// negative interval. As Akka, the interval that ends a period in which the peer was
    /// already late (phi at or above the threshold) is not recorded: one long outage must
    /// not teach the detector that outages are normal.
    pub fn heartbeat(&mut self, now: Instant) {
        if let Some(last) = self.last {
            if now < last {
                return;
            }
            if self.is_available(now) {
                self.push(millis(now - last));
            }
        }
        self.last = Some(now);
        self.deadline = self.compute_deadline();
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

    /// `true` while phi is below the threshold: before [`Self::deadline`].
    pub fn is_available(&self, now: Instant) -> bool {
        self.deadline.is_none_or(|deadline| now < deadline)
    }

    /// When phi will reach the threshold if no heartbeat arrives, or `None` before the
    /// first heartbeat. Drivers use it to schedule the next check instead of polling.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn compute_deadline(&self) -> Option<Instant> {
        let last = self.last?;
        let mean = self.mean() + millis(self.params.acceptable_pause);
        let std_dev = self.effective_std_dev();
        let after_ms = (mean + self.threshold_y * std_dev).max(0.0);
        // Whole nanoseconds, rounded up so that phi(deadline) >= threshold.
        let nanos = (after_ms * 1e6).ceil();
        let mut nanos = if nanos >= u64::MAX as f64 { u64::MAX } else { nanos as u64 };
        // The estimate goes through other roundings than `phi` itself: step, a few
        // nanoseconds at most, to the first nanosecond at which `Self::phi` reaches the
        // threshold, so that the deadline and `is_available` agree with phi exactly. Phi
        // grows with `y`, the standard deviations past the mean, and reaches the threshold
        // at `threshold_y` (the least such `y`, to the last bit): comparing `y` as `phi`
        // computes it says the same without its `exp` and `log10` on every heartbeat.
        let threshold_y = self.threshold_y;
        let reached = |nanos: u64| (millis(Duration::from_nanos(nanos)) - mean) / std_dev >= threshold_y;
        for _ in 0..DEADLINE_STEPS {
            if nanos == u64::MAX || reached(nanos) {
                break;
            }
            nanos += 1;
        }
        for _ in 0..DEADLINE_STEPS {
            if nanos == 0 || !reached(nanos - 1) {
                break;
            }
            nanos -= 1;
        }
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
        let max = self.params.max_sample_size.max(1);
        if self.intervals.len() >= max {
            let oldest = self.leaving;
            self.sum -= oldest;
            self.sum_squares -= oldest * oldest;
            if let Some(slot) = self.intervals.get_mut(self.oldest) {
                *slot = interval_ms;
            }
            self.oldest = (self.oldest + 1) % self.intervals.len();
        } else {
            self.intervals.push(interval_ms);
        }
        if self.intervals.len() >= max {
            self.leaving = self.intervals.get(self.oldest).copied().unwrap_or(0.0);
        }
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

/// How far [`PhiAccrual::compute_deadline`] steps from its estimate, at most.
const DEADLINE_STEPS: u32 = 64;

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Akka's phi: `-log10` of the logistic approximation of the normal tail beyond `elapsed`.
pub(crate) fn phi(elapsed_ms: f64, mean_ms: f64, std_dev_ms: f64) -> f64 {
    let y = (elapsed_ms - mean_ms) / std_dev_ms;
    // libm's exp and log10, not the platform's: the same bits everywhere.
    let e = libm::exp(-y * (1.5976 + 0.070566 * y * y));
    if elapsed_ms > mean_ms {
        -libm::log10(e / (1.0 + e))
    } else {
        -libm::log10(1.0 - 1.0 / (1.0 + e))
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ms(millis: u64) -> Instant {
        Instant::from_millis(millis)
    }

    /// `a` and `b` agree to 1e-9 relative (or both are zero).
    fn assert_close(actual: f64, expected: f64, what: &str) {
        let scale = actual.abs().max(expected.abs());
        assert!(
            actual == expected || (actual - expected).abs() <= 1e-9 * scale,
            "{what}: got {actual:e}, expected {expected:e}"
        );
    }

    /// One history of heartbeats and the phi expected at several instants after the last.
    struct Case {
        name: &'static str,
        max_sample_size: usize,
        min_std_dev_ms: u64,
        acceptable_pause_ms: u64,
        estimate_ms: u64,
        heartbeats_ms: &'static [u64],
        /// `(query time in ms, expected phi)`.
        expected: &'static [(u64, f64)],
    }

    impl Case {
        fn detector(&self) -> PhiAccrual {
            let mut detector = PhiAccrual::new(PhiParams {
                threshold: 8.0,
                max_sample_size: self.max_sample_size,
                min_std_dev: Duration::from_millis(self.min_std_dev_ms),
                acceptable_pause: Duration::from_millis(self.acceptable_pause_ms),
                first_heartbeat_estimate: Duration::from_millis(self.estimate_ms),
            });
            for &at in self.heartbeats_ms {
                detector.heartbeat(ms(at));
            }
            detector
        }
    }

    /// Golden values, each computed independently by `core/testdata/phi_golden.py`: a plain
    /// list as the window, `statistics.mean` and `statistics.pstdev` over it, and Akka's
    /// logistic formula `-log10(e / (1 + e))`, `e = exp(-y (1.5976 + 0.070566 y²))`,
    /// `y = (elapsed - (mean + pause)) / max(pstdev, min_std_dev)`. The comment on each row
    /// is the Python call `phi(elapsed, mean + pause, std-dev used)` that gave it.
    #[rustfmt::skip]
    #[allow(clippy::approx_constant, reason = "phi at the mean is -log10(1/2), which is log10(2) indeed")]
    const GOLDEN: &[Case] = &[
    Case {
        name: "seed window only, Akka defaults",
        max_sample_size: 1000,
        min_std_dev_ms: 100,
        acceptable_pause_ms: 3000,
        estimate_ms: 1000,
        heartbeats_ms: &[0],
        // window [750, 1250]
        // mean = 1000.0, pstdev = 250.0, std-dev used = 250.0
        expected: &[
            (0, -0.0), // phi(0, 1000.0 + 3000, 250.0)
            (1000, -0.0), // phi(1000, 1000.0 + 3000, 250.0)
            (4000, 0.3010299956639812), // phi(4000, 1000.0 + 3000, 250.0)
            (4250, 0.7995083208395598), // phi(4250, 1000.0 + 3000, 250.0)
            (4500, 1.6428278854871123), // phi(4500, 1000.0 + 3000, 250.0)
            (5000, 4.736694582705181), // phi(5000, 1000.0 + 3000, 250.0)
            (6000, 21.241600212221336), // phi(6000, 1000.0 + 3000, 250.0)
        ],
    },
    Case {
        name: "seed window only, no pause",
        max_sample_size: 1000,
        min_std_dev_ms: 100,
        acceptable_pause_ms: 0,
        estimate_ms: 1000,
        heartbeats_ms: &[0],
        // window [750, 1250]
        // mean = 1000.0, pstdev = 250.0, std-dev used = 250.0
        expected: &[
            (500, 0.009998761629963108), // phi(500, 1000.0 + 0, 250.0)
            (1000, 0.3010299956639812), // phi(1000, 1000.0 + 0, 250.0)
            (1250, 0.7995083208395598), // phi(1250, 1000.0 + 0, 250.0)
            (1500, 1.6428278854871123), // phi(1500, 1000.0 + 0, 250.0)
            (2000, 4.736694582705181), // phi(2000, 1000.0 + 0, 250.0)
            (2500, 10.782600858295707), // phi(2500, 1000.0 + 0, 250.0)
        ],
    },
    Case {
        name: "seed window only, 2 s estimate",
        max_sample_size: 1000,
        min_std_dev_ms: 100,
        acceptable_pause_ms: 0,
        estimate_ms: 2000,
        heartbeats_ms: &[5000],
        // window [1500, 2500]
        // mean = 2000.0, pstdev = 500.0, std-dev used = 500.0
        expected: &[
            (6000, 0.009998761629963108), // phi(1000, 2000.0 + 0, 500.0)
            (7000, 0.3010299956639812), // phi(2000, 2000.0 + 0, 500.0)
            (8000, 1.6428278854871123), // phi(3000, 2000.0 + 0, 500.0)
            (9000, 4.736694582705181), // phi(4000, 2000.0 + 0, 500.0)
        ],
    },
    Case {
        name: "regular 1 s, 10 samples, no pause (seeds keep the std-dev above the floor)",
        max_sample_size: 1000,
        min_std_dev_ms: 100,
        acceptable_pause_ms: 0,
        estimate_ms: 1000,
        heartbeats_ms: &[0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000],
        // window [750, 1250, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000]
        // mean = 1000.0, pstdev = 102.06207261596576, std-dev used = 102.06207261596576
        expected: &[
            (10500, 4.3197837807407514e-08), // phi(500, 1000.0 + 0, 102.06207261596576)
            (11000, 0.3010299956639812), // phi(1000, 1000.0 + 0, 102.06207261596576)
            (11100, 0.7862218035307389), // phi(1100, 1000.0 + 0, 102.06207261596576)
            (11200, 1.601246814186491), // phi(1200, 1000.0 + 0, 102.06207261596576)
            (11300, 2.818398369251302), // phi(1300, 1000.0 + 0, 102.06207261596576)
        ],
    },
    Case {
        name: "regular 1 s, 20 samples, Akka defaults (floor active)",
        max_sample_size: 1000,
        min_std_dev_ms: 100,
        acceptable_pause_ms: 3000,
        estimate_ms: 1000,
        heartbeats_ms: &[0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 11000, 12000, 13000, 14000, 15000, 16000, 17000, 18000, 19000, 20000],
        // window [750, 1250, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000]
        // mean = 1000.0, pstdev = 75.3778361444409, std-dev used = 100.0
        expected: &[
            (20000, -0.0), // phi(0, 1000.0 + 3000, 100.0)
            (21000, -0.0), // phi(1000, 1000.0 + 3000, 100.0)
            (24000, 0.3010299956639812), // phi(4000, 1000.0 + 3000, 100.0)
            (24100, 0.7995083208395598), // phi(4100, 1000.0 + 3000, 100.0)
            (24200, 1.6428278854871123), // phi(4200, 1000.0 + 3000, 100.0)
            (24500, 7.299947394460206), // phi(4500, 1000.0 + 3000, 100.0)
        ],
    },
    Case {
        name: "regular 1 s, 20 samples, no pause (floor active)",
        max_sample_size: 1000,
        min_std_dev_ms: 100,
        acceptable_pause_ms: 0,
        estimate_ms: 1000,
        heartbeats_ms: &[0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 11000, 12000, 13000, 14000, 15000, 16000, 17000, 18000, 19000, 20000],
        // window [750, 1250, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000]
        // mean = 1000.0, pstdev = 75.3778361444409, std-dev used = 100.0
        expected: &[
            (20500, 2.1768922219645073e-08), // phi(500, 1000.0 + 0, 100.0)
            (21000, 0.3010299956639812), // phi(1000, 1000.0 + 0, 100.0)
            (21100, 0.7995083208395598), // phi(1100, 1000.0 + 0, 100.0)
            (21200, 1.6428278854871123), // phi(1200, 1000.0 + 0, 100.0)
            (21300, 2.9094753264849538), // phi(1300, 1000.0 + 0, 100.0)
        ],
    },
    Case {
        name: "jittered, no pause (floor inactive)",
        max_sample_size: 1000,
        min_std_dev_ms: 100,
        acceptable_pause_ms: 0,
        estimate_ms: 1000,
        heartbeats_ms: &[0, 1100, 1900, 3200, 3800, 5000, 6300],
        // window [750, 1250, 1100, 800, 1300, 600, 1200, 1300]
        // mean = 1037.5, pstdev = 260.70817018267763, std-dev used = 260.70817018267763
        expected: &[
            (6800, 0.008599040210626905), // phi(500, 1037.5 + 0, 260.70817018267763)
            (7300, 0.2539502154125928), // phi(1000, 1037.5 + 0, 260.70817018267763)
            (7600, 0.8040600957367859), // phi(1300, 1037.5 + 0, 260.70817018267763)
            (8000, 2.268365081641494), // phi(1700, 1037.5 + 0, 260.70817018267763)
            (8500, 5.810821731999386), // phi(2200, 1037.5 + 0, 260.70817018267763)
        ],
    },
    Case {
        name: "jittered, Akka defaults (floor inactive)",
        max_sample_size: 1000,
        min_std_dev_ms: 100,
        acceptable_pause_ms: 3000,
        estimate_ms: 1000,
        heartbeats_ms: &[0, 1100, 1900, 3200, 3800, 5000, 6300],
        // window [750, 1250, 1100, 800, 1300, 600, 1200, 1300]
        // mean = 1037.5, pstdev = 260.70817018267763, std-dev used = 260.70817018267763
        expected: &[
            (9300, 8.814972552622882e-06), // phi(3000, 1037.5 + 3000, 260.70817018267763)
            (10000, 0.044724579366168464), // phi(3700, 1037.5 + 3000, 260.70817018267763)
            (11000, 2.268365081641494), // phi(4700, 1037.5 + 3000, 260.70817018267763)
        ],
    },
    Case {
        name: "small jitter, window 4, no pause (floor active)",
        max_sample_size: 4,
        min_std_dev_ms: 100,
        acceptable_pause_ms: 0,
        estimate_ms: 1000,
        heartbeats_ms: &[0, 1000, 2010, 2990, 4000, 5005],
        // window [1010, 980, 1010, 1005]
        // mean = 1001.25, pstdev = 12.43734296383275, std-dev used = 100.0
        expected: &[
            (5900, 0.06754911409131419), // phi(895, 1001.25 + 0, 100.0)
            (6005, 0.2967151849018972), // phi(1000, 1001.25 + 0, 100.0)
            (6100, 0.7588607721975416), // phi(1095, 1001.25 + 0, 100.0)
            (6200, 1.5787993011814678), // phi(1195, 1001.25 + 0, 100.0)
            (6300, 2.8155943796271736), // phi(1295, 1001.25 + 0, 100.0)
        ],
    },
    Case {
        name: "small jitter, window 4, no pause, 1 ms floor (floor inactive)",
        max_sample_size: 4,
        min_std_dev_ms: 1,
        acceptable_pause_ms: 0,
        estimate_ms: 1000,
        heartbeats_ms: &[0, 1000, 2010, 2990, 4000, 5005],
        // window [1010, 980, 1010, 1005]
        // mean = 1001.25, pstdev = 12.43734296383275, std-dev used = 12.43734296383275
        expected: &[
            (6000, 0.15958746181440917), // phi(995, 1001.25 + 0, 12.43734296383275)
            (6010, 0.4186243028285111), // phi(1005, 1001.25 + 0, 12.43734296383275)
            (6020, 0.8712100930983837), // phi(1015, 1001.25 + 0, 12.43734296383275)
            (6030, 1.5507081856302252), // phi(1025, 1001.25 + 0, 12.43734296383275)
        ],
    },
    Case {
        name: "window 3 wrapped past the seeds, no pause",
        max_sample_size: 3,
        min_std_dev_ms: 100,
        acceptable_pause_ms: 0,
        estimate_ms: 1000,
        heartbeats_ms: &[0, 500, 1000, 2000, 4000],
        // window [500, 500, 1000]
        // mean = 666.6666666666666, pstdev = 235.70226039551585, std-dev used = 235.70226039551585
        expected: &[
            (4500, 0.11898402323108136), // phi(500, 666.6666666666666 + 0, 235.70226039551585)
            (5000, 1.1035434774046415), // phi(1000, 666.6666666666666 + 0, 235.70226039551585)
            (6000, 9.472484156489795), // phi(2000, 666.6666666666666 + 0, 235.70226039551585)
            (7000, 36.60019940954631), // phi(3000, 666.6666666666666 + 0, 235.70226039551585)
            (8000, 96.49339997611406), // phi(4000, 666.6666666666666 + 0, 235.70226039551585)
        ],
    },
    Case {
        name: "window 3 wrapped past the seeds, 1 s pause",
        max_sample_size: 3,
        min_std_dev_ms: 100,
        acceptable_pause_ms: 1000,
        estimate_ms: 1000,
        heartbeats_ms: &[0, 500, 1000, 2000, 4000],
        // window [500, 1000, 2000]
        // mean = 1166.6666666666667, pstdev = 623.6095644623235, std-dev used = 623.6095644623235
        expected: &[
            (6000, 0.21790499944848535), // phi(2000, 1166.6666666666667 + 1000, 623.6095644623235)
            (7000, 1.0416637752475402), // phi(3000, 1166.6666666666667 + 1000, 623.6095644623235)
            (8000, 2.8191205476404186), // phi(4000, 1166.6666666666667 + 1000, 623.6095644623235)
            (9000, 6.026687060750115), // phi(5000, 1166.6666666666667 + 1000, 623.6095644623235)
        ],
    },
    ];

    #[test]
    fn golden_phi() {
        for case in GOLDEN {
            let detector = case.detector();
            for &(at, expected) in case.expected {
                assert_close(detector.phi(ms(at)), expected, &format!("{} at {at} ms", case.name));
            }
        }
    }

    #[test]
    fn phi_is_zero_before_the_first_heartbeat() {
        let detector = PhiAccrual::new(PhiParams::default());
        assert_eq!(detector.phi(Instant::ZERO), 0.0);
        assert_eq!(detector.phi(Instant::from_secs(3600)), 0.0);
        assert!(detector.is_available(Instant::from_secs(3600)));
        assert_eq!(detector.deadline(), None);
        assert_eq!(detector.last_heartbeat(), None);
    }

    #[test]
    fn the_window_starts_with_akkas_two_seed_samples() {
        for estimate_ms in [1, 1000, 2000, 5000] {
            let params =
                PhiParams { first_heartbeat_estimate: Duration::from_millis(estimate_ms), ..Default::default() };
            let mut detector = PhiAccrual::new(params);
            assert_eq!(detector.sample_count(), 2);
            assert_eq!(detector.mean_interval(), Duration::from_millis(estimate_ms));
            // std-dev = estimate / 4: pstdev([0.75 e, 1.25 e]).
            let std_dev = detector.std_dev_interval().as_secs_f64();
            assert_close(std_dev, estimate_ms as f64 / 4000.0, "seed std-dev");
            // The first heartbeat records no interval: there is nothing to measure from.
            detector.heartbeat(ms(10_000));
            assert_eq!(detector.sample_count(), 2);
            assert_eq!(detector.last_heartbeat(), Some(ms(10_000)));
        }
    }

    #[test]
    fn the_window_keeps_the_last_max_sample_size_intervals() {
        let params = PhiParams { max_sample_size: 5, ..Default::default() };
        let mut detector = PhiAccrual::new(params);
        let intervals_ms = [900_u64, 1100, 1000, 1700, 400, 1000, 2500, 800, 1200, 1000, 300, 4000];
        let mut at = 0;
        detector.heartbeat(ms(at));
        for (i, &interval) in intervals_ms.iter().enumerate() {
            at += interval;
            detector.heartbeat(ms(at));
            // The two seeds, then the intervals, of which only the last five stay.
            let all: Vec<f64> =
                [750.0, 1250.0].into_iter().chain(intervals_ms[..=i].iter().map(|&x| x as f64)).collect();
            let window = &all[all.len().saturating_sub(5)..];
            assert_eq!(detector.sample_count(), window.len());
            let mean = window.iter().sum::<f64>() / window.len() as f64;
            let variance = window.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / window.len() as f64;
            assert_close(detector.mean_interval().as_secs_f64() * 1000.0, mean, "window mean");
            assert!(
                (detector.std_dev_interval().as_secs_f64() * 1000.0 - variance.sqrt()).abs() < 1e-6,
                "window std-dev after {} intervals",
                i + 1
            );
        }
    }

    #[test]
    fn a_window_of_one_keeps_only_the_latest_interval() {
        let params = PhiParams { max_sample_size: 1, ..Default::default() };
        let mut detector = PhiAccrual::new(params);
        assert_eq!(detector.sample_count(), 1);
        for (at, interval) in [(0, None), (700, Some(700)), (3700, Some(3000)), (3800, Some(100))] {
            detector.heartbeat(ms(at));
            if let Some(interval) = interval {
                assert_eq!(detector.mean_interval(), Duration::from_millis(interval));
                assert_eq!(detector.std_dev_interval(), Duration::ZERO);
            }
            assert_eq!(detector.sample_count(), 1);
        }
    }

    #[test]
    fn a_heartbeat_older_than_the_last_is_ignored() {
        let mut detector = PhiAccrual::new(PhiParams::default());
        for at in [0, 1000, 2000, 3000] {
            detector.heartbeat(ms(at));
        }
        let (count, mean, std_dev) = (detector.sample_count(), detector.mean_interval(), detector.std_dev_interval());
        let phi = detector.phi(ms(7000));
        detector.heartbeat(ms(2500));
        assert_eq!(detector.last_heartbeat(), Some(ms(3000)));
        assert_eq!(detector.sample_count(), count);
        assert_eq!(detector.mean_interval(), mean);
        assert_eq!(detector.std_dev_interval(), std_dev);
        assert_eq!(detector.phi(ms(7000)), phi);
        // A heartbeat at the same instant is not older: it records a zero interval.
        detector.heartbeat(ms(3000));
        assert_eq!(detector.sample_count(), count + 1);
    }

    #[test]
    fn phi_at_a_query_before_the_last_heartbeat_is_that_of_zero_elapsed() {
        let mut detector = PhiAccrual::new(PhiParams::default());
        detector.heartbeat(ms(5000));
        assert_eq!(detector.phi(ms(1000)), detector.phi(ms(5000)));
    }

    #[test]
    fn golden_deadline() {
        // Seed window, no pause: mean 1000 ms, std-dev 250 ms. Python, bisecting phi_golden.py's
        // `phi(y, 0, 1) >= 8` over y: y = 5.225986644093564, so the deadline is
        // 1000 + 250 y = 2306.496661023391 ms after the heartbeat.
        let params = PhiParams { acceptable_pause: Duration::ZERO, ..Default::default() };
        let mut detector = PhiAccrual::new(params);
        detector.heartbeat(ms(10_000));
        let deadline = detector.deadline().expect("heard once");
        let after = (deadline - ms(10_000)).as_secs_f64() * 1000.0;
        assert!((after - 2306.496661023391).abs() < 2e-6, "deadline {after} ms after the heartbeat");
        assert!(detector.phi(deadline) >= 8.0);
        assert!(detector.phi(deadline - Duration::from_nanos(1)) < 8.0);
        assert!(detector.is_available(deadline - Duration::from_nanos(1)));
        assert!(!detector.is_available(deadline));
    }

    fn arb_params() -> impl Strategy<Value = PhiParams> {
        (0.5_f64..20.0, 1_usize..40, 0_u64..300_000_000, 0_u64..5_000_000_000, 1_u64..5_000_000_000).prop_map(
            |(threshold, max_sample_size, min_std_dev, pause, estimate)| PhiParams {
                threshold,
                max_sample_size,
                min_std_dev: Duration::from_nanos(min_std_dev),
                acceptable_pause: Duration::from_nanos(pause),
                first_heartbeat_estimate: Duration::from_nanos(estimate),
            },
        )
    }

    /// A detector fed heartbeats at random intervals (nanoseconds), some of them equal.
    fn arb_detector() -> impl Strategy<Value = PhiAccrual> {
        let interval = prop_oneof![Just(1_000_000_000_u64), 0_u64..10_000_000_000];
        (arb_params(), 0_u64..1_000_000_000_000, prop::collection::vec(interval, 0..60)).prop_map(
            |(params, start, intervals)| {
                let mut detector = PhiAccrual::new(params);
                let mut at = Instant::from_nanos(start);
                detector.heartbeat(at);
                for interval in intervals {
                    at += Duration::from_nanos(interval);
                    detector.heartbeat(at);
                }
                detector
            },
        )
    }

    proptest! {
        #[test]
        fn phi_never_decreases_while_no_heartbeat_arrives(
            detector in arb_detector(),
            steps in prop::collection::vec(0_u64..2_000_000_000, 1..40),
        ) {
            let mut at = detector.last_heartbeat().expect("heard once");
            let mut previous = detector.phi(at);
            prop_assert!(previous >= 0.0);
            for step in steps {
                at += Duration::from_nanos(step);
                let phi = detector.phi(at);
                prop_assert!(!phi.is_nan(), "phi is NaN at {at}");
                prop_assert!(phi >= previous, "phi fell from {previous} to {phi} at {at}");
                previous = phi;
            }
        }

        #[test]
        fn the_deadline_is_the_first_nanosecond_at_the_threshold(detector in arb_detector()) {
            let threshold = detector.params().threshold;
            let last = detector.last_heartbeat().expect("heard once");
            let deadline = detector.deadline().expect("heard once");
            prop_assert!(deadline >= last);
            prop_assert!(detector.phi(deadline) >= threshold, "phi {} at the deadline", detector.phi(deadline));
            prop_assert!(!detector.is_available(deadline));
            if deadline > last {
                let before = deadline - Duration::from_nanos(1);
                prop_assert!(detector.phi(before) < threshold, "phi {} just before the deadline", detector.phi(before));
            }
        }
    }

    /// Phi is computed with libm's pure-Rust `exp` and `log10`, so it is the same bits on
    /// every platform; these are those bits. (The platform's libm may round the last bit
    /// differently, and a verdict one nanosecond earlier forks a simulated trace.)
    #[test]
    fn phi_is_the_same_bits_on_every_platform() {
        let cases: &[((f64, f64, f64), u64)] = &[
            ((1000.0, 1000.0, 100.0), PHI_BITS[0]),
            ((1234.5, 1000.0, 100.0), PHI_BITS[1]),
            ((1500.0, 1000.0, 250.0), PHI_BITS[2]),
            ((3000.0, 1000.0, 200.0), PHI_BITS[3]),
            ((200.0, 1000.0, 300.0), PHI_BITS[4]),
            ((1000.3, 1000.0, 0.5), PHI_BITS[5]),
        ];
        for &((elapsed, mean, std_dev), bits) in cases {
            let got = phi(elapsed, mean, std_dev);
            assert_eq!(got.to_bits(), bits, "phi({elapsed}, {mean}, {std_dev}) = {got:e} ({:#018x})", got.to_bits());
        }
        // And the functions themselves, at a few points.
        assert_eq!(libm::exp(-1.5).to_bits(), PHI_BITS[6], "exp(-1.5) = {:#018x}", libm::exp(-1.5).to_bits());
        assert_eq!(libm::log10(0.3).to_bits(), PHI_BITS[7], "log10(0.3) = {:#018x}", libm::log10(0.3).to_bits());
        assert_eq!(libm::log(3.0).to_bits(), PHI_BITS[8], "ln(3) = {:#018x}", libm::log(3.0).to_bits());
    }

    const PHI_BITS: [u64; 9] = [
        0x3fd3_4413_509f_79ff,
        0x4000_35eb_4f0c_8b49,
        0x3ffa_4905_e491_fbd3,
        0x4042_cad7_e097_d028,
        0x3f5a_4e2a_bbc1_1950,
        0x3fe1_fc58_d5d6_0af6,
        0x3fcc_8f87_724b_5c1d,
        0xbfe0_bb6c_34d8_1502,
        // One bit below what a common platform libm returns for ln 3 (…030b): the reason
        // for libm.
        0x3ff1_93ea_7aad_030a,
    ];
}
