//! The retry budget: retries (and hedges) as a share of requests, so that a full outage
//! cannot multiply the load on the workers.
//!
//! As the Google SRE book's per-client budget: retries may be `ratio` of the requests
//! counted over `ttl`, and a floor of `min_per_sec * ttl` retries lets a client with little
//! traffic retry at all. The floor is a floor, not an addition (Finagle's and tower's
//! `TpsBudget` add their reserve to the deposits): a busy client in a full outage retries
//! `ratio` of its calls and no more, a quiet one `min_per_sec` a second. Over the counted
//! window (between `ttl * 9/10` and `ttl`, see `sliding`), retries never exceed
//! `max(ratio * requests, min_per_sec * ttl)`.
//!
//! The Google SRE book measured three attempts per request growing the load about 3x in an
//! outage and a 10 % per-client budget cutting it to about 1.1x.

use std::time::Duration;

use crate::resilience::sliding::SlidingCounts;
use crate::time::Instant;

/// The retry budget's settings.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BudgetConfig {
    /// Retries allowed per request (0.1: one retry per ten requests).
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic, so a quiet client can retry: a
    /// floor under `ratio`'s share, not added to it.
    pub min_per_sec: u32,
    /// How long a request or a retry counts.
    pub ttl: Duration,
}

impl Default for BudgetConfig {
    /// 10 % of requests (the SRE book's per-client figure; Finagle's 20 % lets an outage
    /// grow the load 1.2x), and at least 1 retry per second, over 10 s (Finagle's window).
    /// Finagle's minimum is 10/s, but the minimum is per client and a cluster has many: 100
    /// clients at 10 requests per second each could double the load of an outage on the
    /// minimum alone.
    fn default() -> Self {
        Self { ratio: 0.1, min_per_sec: 1, ttl: Duration::from_secs(10) }
    }
}

impl BudgetConfig {
    /// The floor: retries allowed with no request at all, and whenever `ratio`'s share of
    /// the requests is smaller.
    pub fn minimum(&self) -> f64 {
        f64::from(self.min_per_sec) * self.ttl.as_secs_f64()
    }
}

/// Requests and retries in one slot of the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    requests: u64,
    retries: u64,
}

impl core::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.requests += other.requests;
        self.retries += other.retries;
    }
}

/// A client's retry budget.
#[derive(Clone, Debug)]
pub struct RetryBudget {
    config: BudgetConfig,
    counts: SlidingCounts<Counts>,
}

impl RetryBudget {
    /// An empty budget (its floor only).
    pub fn new(config: BudgetConfig) -> Self {
        let counts = SlidingCounts::new(config.ttl);
        Self { config, counts }
    }

    /// Its settings.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// A new request (not a retry): `ratio` of a retry more, once the share is above the
    /// floor.
    pub fn record_request(&mut self, now: Instant) {
        self.counts.at(now).requests += 1;
    }

    /// How many retries may be made at `now`.
    pub fn available(&self, now: Instant) -> u64 {
        let Counts { requests, retries } = self.counts.sum(now);
        // Counts are far below 2^53, so the product is exact enough; a float to integer
        // cast saturates (and maps NaN, impossible here, to zero).
        let allowed = (self.config.ratio * requests as f64).max(self.config.minimum()).floor() as u64;
        allowed.saturating_sub(retries)
    }

    /// Whether a retry may be made at `now`.
    pub fn can_retry(&self, now: Instant) -> bool {
        self.available(now) > 0
    }

    /// Withdraws one retry if the budget allows it; `false` (and nothing withdrawn) if not.
    #[must_use = "a refused retry must not be made"]
    pub fn try_retry(&mut self, now: Instant) -> bool {
        if !self.can_retry(now) {
            return false;
        }
        self.counts.at(now).retries += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn budget(ratio: f64, min_per_sec: u32, ttl_secs: u64) -> RetryBudget {
        RetryBudget::new(BudgetConfig { ratio, min_per_sec, ttl: Duration::from_secs(ttl_secs) })
    }

    #[test]
    fn retries_are_a_share_of_requests_or_the_floor_whichever_is_more() {
        // (ratio, min/s, ttl s, requests, retries allowed)
        let golden = [
            (0.1, 0, 10, 0, 0),
            (0.1, 0, 10, 9, 0),
            (0.1, 0, 10, 10, 1),
            (0.1, 0, 10, 1000, 100),
            (0.2, 10, 10, 0, 100),
            (0.2, 10, 10, 100, 100),
            (0.2, 10, 10, 504, 100),
            (0.2, 10, 10, 505, 101),
            (0.2, 10, 10, 1000, 200),
            (0.1, 1, 10, 50, 10),
            (0.1, 1, 10, 1000, 100),
            (0.0, 1, 10, 1000, 10),
            (1.5, 0, 10, 10, 15),
        ];
        for (ratio, min, ttl, requests, allowed) in golden {
            let mut b = budget(ratio, min, ttl);
            let now = Instant::from_secs(1);
            for _ in 0..requests {
                b.record_request(now);
            }
            assert_eq!(b.available(now), allowed, "{ratio} + {min}/s over {ttl} s, {requests} requests");
            let mut made = 0;
            while b.try_retry(now) {
                made += 1;
            }
            assert_eq!(made, allowed);
            assert_eq!(b.available(now), 0);
            assert!(!b.can_retry(now));
        }
    }

    #[test]
    fn the_default_is_ten_percent_and_one_per_second_over_ten_seconds() {
        let config = BudgetConfig::default();
        assert_eq!((config.ratio, config.min_per_sec, config.ttl), (0.1, 1, Duration::from_secs(10)));
        assert_eq!(config.minimum(), 10.0);
        assert_eq!(RetryBudget::new(config.clone()).config(), &config);
        let other = BudgetConfig { ratio: 0.25, min_per_sec: 3, ttl: Duration::from_secs(4) };
        assert_eq!(RetryBudget::new(other.clone()).config(), &other);
    }

    #[test]
    fn spent_retries_come_back_after_the_ttl() {
        let mut b = budget(0.0, 1, 10);
        let start = Instant::from_secs(100);
        for _ in 0..10 {
            assert!(b.try_retry(start));
        }
        assert!(!b.try_retry(start + Duration::from_secs(9)));
        assert!(b.try_retry(start + Duration::from_secs(10)));
    }

    #[test]
    fn requests_stop_counting_after_the_ttl() {
        let mut b = budget(0.5, 0, 10);
        for _ in 0..10 {
            b.record_request(Instant::ZERO);
        }
        assert_eq!(b.available(Instant::from_millis(9_999)), 5);
        assert_eq!(b.available(Instant::from_secs(10)), 0);
    }

    proptest! {
        /// Within one counted window (9 s of a 10 s ttl), whatever the order of requests and
        /// retries, retries never exceed `max(ratio * requests, floor)`.
        #[test]
        fn retries_never_exceed_the_share_or_the_floor(
            ratio in 0.0f64..2.0,
            min_per_sec in 0u32..20,
            steps in proptest::collection::vec((0u64..30_000_000, any::<bool>()), 0..400),
        ) {
            let mut b = budget(ratio, min_per_sec, 10);
            let mut now = Instant::ZERO;
            let (mut requests, mut retries) = (0u64, 0u64);
            for (dt, is_request) in steps {
                now += Duration::from_nanos(dt);
                if now >= Instant::from_secs(9) {
                    break;
                }
                if is_request {
                    b.record_request(now);
                    requests += 1;
                } else if b.try_retry(now) {
                    retries += 1;
                }
                prop_assert!(retries as f64 <= (ratio * requests as f64).max(f64::from(min_per_sec) * 10.0));
            }
        }

        /// Over any run, retries never exceed `ratio * requests` plus one floor per 9 s
        /// (each counted window holds at least the last 9 s).
        #[test]
        fn retries_over_a_long_run_stay_within_the_share_plus_a_floor_per_window(
            ratio in 0.0f64..1.0,
            min_per_sec in 0u32..5,
            steps in proptest::collection::vec((0u64..500_000_000, 0u8..4), 0..600),
        ) {
            let mut b = budget(ratio, min_per_sec, 10);
            let mut now = Instant::ZERO;
            let (mut requests, mut retries) = (0u64, 0u64);
            for (dt, what) in steps {
                now += Duration::from_nanos(dt);
                if what == 0 {
                    b.record_request(now);
                    requests += 1;
                } else if b.try_retry(now) {
                    retries += 1;
                }
            }
            let windows = (now.as_nanos() / 9_000_000_000 + 1) as f64;
            prop_assert!(retries as f64 <= ratio * requests as f64 + f64::from(min_per_sec) * 10.0 * windows);
        }
    }
}
