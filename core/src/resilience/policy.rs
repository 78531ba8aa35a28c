//! [`Policy`]: every resilience setting of a service, client side and worker side, with
//! defaults and [`Policy::validate`].

use std::time::Duration;

use crate::error::PolicyError;
use crate::resilience::backoff::Backoff;
use crate::resilience::breaker::{BreakerConfig, BreakerWindow};
use crate::resilience::budget::BudgetConfig;
use crate::resilience::hedge::HedgeConfig;
use crate::resilience::idempotency::IdempotencyConfig;
use crate::resilience::registry::{Selection, TagFilter};
use crate::resilience::shedding::ThrottleConfig;

/// The most attempts a call may make: a bound on what one call keeps.
pub const MAX_ATTEMPTS: u32 = 64;

/// How a call retries.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts per call at most, the first, retries and hedges together (1: no retry).
    pub max_attempts: u32,
    /// The wait before each retry.
    pub backoff: Backoff,
    /// How long one attempt may go unanswered before the client counts it failed and
    /// retries elsewhere; `None`: only the call's deadline bounds it.
    pub attempt_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    /// Three attempts (the SRE book's example), the default [`Backoff`], no timeout per
    /// attempt.
    fn default() -> Self {
        Self { max_attempts: 3, backoff: Backoff::default(), attempt_timeout: None }
    }
}

/// Every resilience setting of a service. A client ([`crate::resilience::Client`]) reads
/// the client side; a worker builds its [`crate::resilience::ConcurrencyLimit`] and
/// [`crate::resilience::IdempotencyWindow`] from the worker side. Each mechanism but
/// retrying is an `Option`: `None` turns it off.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Policy {
    // ----- client side -----
    /// Which members are workers.
    pub workers: TagFilter,
    /// How a worker is chosen.
    pub selection: Selection,
    /// Attempts, backoff and the timeout per attempt.
    pub retry: RetryPolicy,
    /// Retries (and hedges) as a share of requests; `None`: only `max_attempts` bounds them.
    pub budget: Option<BudgetConfig>,
    /// A circuit breaker per worker; `None`: no breakers.
    pub breaker: Option<BreakerConfig>,
    /// Hedging; `None`: no hedges.
    pub hedging: Option<HedgeConfig>,
    /// Client-side adaptive throttling; `None`: every attempt is sent.
    pub throttle: Option<ThrottleConfig>,
    /// What each hop takes out of a deadline (see [`crate::resilience::Deadline`]).
    pub hop_allowance: Duration,
    // ----- worker side -----
    /// Requests a worker serves at once; `None`: no limit.
    pub concurrency_limit: Option<u32>,
    /// The window a worker runs each request once within; `None`: none.
    pub idempotency: Option<IdempotencyConfig>,
}

impl Default for Policy {
    /// Every mechanism on with its own defaults (see each config's `default`), the power of
    /// two choices by peak-EWMA latency over every member, 5 ms per hop (a LAN's transit and scheduling, with room),
    /// and a limit of 64 requests at once per worker.
    ///
    /// Hedging is on: the budget pays for it, so it adds at most the budget's share of
    /// requests, and the server's idempotency window keeps a hedged request from running
    /// twice.
    fn default() -> Self {
        Self {
            workers: TagFilter::any(),
            selection: Selection::default(),
            retry: RetryPolicy::default(),
            budget: Some(BudgetConfig::default()),
            breaker: Some(BreakerConfig::default()),
            hedging: Some(HedgeConfig::default()),
            throttle: Some(ThrottleConfig::default()),
            hop_allowance: Duration::from_millis(5),
            concurrency_limit: Some(64),
            idempotency: Some(IdempotencyConfig::default()),
        }
    }
}

impl Policy {
    /// One attempt per call and nothing else: no retry, budget, breaker, hedge, throttle,
    /// limit or idempotency window. The baseline each mechanism is measured against.
    pub fn bare() -> Self {
        Self {
            retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
            budget: None,
            breaker: None,
            hedging: None,
            throttle: None,
            concurrency_limit: None,
            idempotency: None,
            ..Self::default()
        }
    }

    /// What is impossible in these settings, if anything.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let retry = &self.retry;
        if retry.max_attempts == 0 || retry.max_attempts > MAX_ATTEMPTS {
            return Err(PolicyError::OutOfRange {
                field: "retry.max_attempts",
                value: retry.max_attempts.to_string(),
                expected: "between 1 and 64",
            });
        }
        if retry.backoff.cap < retry.backoff.base {
            return Err(PolicyError::Inconsistent {
                why: format!(
                    "retry.backoff.cap ({:?}) is below retry.backoff.base ({:?})",
                    retry.backoff.cap, retry.backoff.base
                ),
            });
        }
        if retry.attempt_timeout.is_some_and(|t| t.is_zero()) {
            return Err(PolicyError::Zero { field: "retry.attempt_timeout" });
        }
        if let Some(budget) = &self.budget {
            if !(budget.ratio.is_finite() && budget.ratio >= 0.0) {
                return Err(out_of_range("budget.ratio", budget.ratio, "a finite number, 0 or more"));
            }
            nonzero("budget.ttl", budget.ttl)?;
        }
        if let Some(breaker) = &self.breaker {
            validate_breaker(breaker)?;
        }
        if let Some(hedging) = &self.hedging {
            if !(hedging.quantile > 0.0 && hedging.quantile < 1.0) {
                return Err(out_of_range("hedging.quantile", hedging.quantile, "between 0 and 1, both excluded"));
            }
            nonzero("hedging.window", hedging.window)?;
            if hedging.min_samples == 0 {
                return Err(PolicyError::Zero { field: "hedging.min_samples" });
            }
            if hedging.max_hedges == 0 {
                return Err(PolicyError::Zero { field: "hedging.max_hedges" });
            }
            if retry.max_attempts < 2 {
                return Err(PolicyError::Inconsistent {
                    why: "hedging is on but retry.max_attempts is 1: a hedge is an attempt".to_string(),
                });
            }
        }
        if let Some(throttle) = &self.throttle {
            if !(throttle.k.is_finite() && throttle.k >= 1.0) {
                return Err(out_of_range("throttle.k", throttle.k, "a finite number, 1 or more (the SRE book uses 2)"));
            }
            nonzero("throttle.window", throttle.window)?;
        }
        if self.concurrency_limit == Some(0) {
            return Err(PolicyError::Zero { field: "concurrency_limit" });
        }
        if let Some(idempotency) = &self.idempotency {
            if idempotency.capacity == 0 {
                return Err(PolicyError::Zero { field: "idempotency.capacity" });
            }
            nonzero("idempotency.ttl", idempotency.ttl)?;
        }
        Ok(())
    }
}

fn validate_breaker(breaker: &BreakerConfig) -> Result<(), PolicyError> {
    match breaker.window {
        BreakerWindow::Count(0) => return Err(PolicyError::Zero { field: "breaker.window" }),
        BreakerWindow::Count(size) if breaker.minimum_calls > size => {
            return Err(PolicyError::Inconsistent {
                why: format!(
                    "breaker.minimum_calls ({}) is above the breaker's window of {size} calls: it would never open",
                    breaker.minimum_calls
                ),
            });
        }
        BreakerWindow::Time(length) => nonzero("breaker.window", length)?,
        BreakerWindow::Count(_) => {}
    }
    if breaker.minimum_calls == 0 {
        return Err(PolicyError::Zero { field: "breaker.minimum_calls" });
    }
    for (field, rate) in
        [("breaker.failure_rate", breaker.failure_rate), ("breaker.slow_call_rate", breaker.slow_call_rate)]
    {
        // NaN fails both comparisons.
        if !(rate > 0.0 && rate <= 1.0) {
            return Err(out_of_range(field, rate, "above 0 and at most 1"));
        }
    }
    nonzero("breaker.slow_call_duration", breaker.slow_call_duration)?;
    nonzero("breaker.open_wait", breaker.open_wait)?;
    nonzero("breaker.half_open_max_wait", breaker.half_open_max_wait)?;
    if breaker.half_open_probes == 0 {
        return Err(PolicyError::Zero { field: "breaker.half_open_probes" });
    }
    Ok(())
}

fn nonzero(field: &'static str, d: Duration) -> Result<(), PolicyError> {
    if d.is_zero() {
        Err(PolicyError::Zero { field })
    } else {
        Ok(())
    }
}

fn out_of_range(field: &'static str, value: f64, expected: &'static str) -> PolicyError {
    PolicyError::OutOfRange { field, value: value.to_string(), expected }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::backoff::Jitter;

    #[test]
    fn the_defaults_and_the_bare_policy_are_valid() {
        assert_eq!(Policy::default().validate(), Ok(()));
        assert_eq!(Policy::bare().validate(), Ok(()));
        let bare = Policy::bare();
        assert_eq!(bare.retry.max_attempts, 1);
        assert!(bare.budget.is_none() && bare.breaker.is_none() && bare.hedging.is_none());
        assert!(bare.throttle.is_none() && bare.concurrency_limit.is_none() && bare.idempotency.is_none());
        let default = Policy::default();
        assert_eq!((default.retry.max_attempts, default.retry.attempt_timeout), (3, None));
        assert_eq!((default.hop_allowance, default.concurrency_limit), (Duration::from_millis(5), Some(64)));
        assert_eq!(default.selection, Selection::PeakEwma);
        assert!(default.budget.is_some() && default.breaker.is_some() && default.hedging.is_some());
        assert!(default.throttle.is_some() && default.idempotency.is_some());
    }

    #[test]
    fn impossible_settings_are_named() {
        type Case = (fn(&mut Policy), &'static str);
        fn ms(millis: u64) -> Duration {
            Duration::from_millis(millis)
        }
        fn breaker(p: &mut Policy) -> &mut BreakerConfig {
            p.breaker.as_mut().expect("on by default")
        }
        fn hedging(p: &mut Policy) -> &mut HedgeConfig {
            p.hedging.as_mut().expect("on by default")
        }
        let cases: &[Case] = &[
            (|p| p.retry.max_attempts = 0, "`retry.max_attempts` is 0; it must be between 1 and 64"),
            (|p| p.retry.max_attempts = 65, "`retry.max_attempts` is 65"),
            (|p| p.retry.backoff = Backoff::new(ms(10), ms(9), Jitter::Full), "retry.backoff.cap (9ms) is below"),
            (|p| p.retry.attempt_timeout = Some(Duration::ZERO), "`retry.attempt_timeout` is zero"),
            (|p| p.budget.as_mut().expect("on").ratio = -0.1, "`budget.ratio` is -0.1"),
            (|p| p.budget.as_mut().expect("on").ratio = f64::NAN, "`budget.ratio` is NaN"),
            (|p| p.budget.as_mut().expect("on").ratio = f64::INFINITY, "`budget.ratio` is inf"),
            (|p| p.budget.as_mut().expect("on").ttl = Duration::ZERO, "`budget.ttl` is zero"),
            (|p| breaker(p).window = BreakerWindow::Count(0), "`breaker.window` is zero"),
            (|p| breaker(p).window = BreakerWindow::Time(Duration::ZERO), "`breaker.window` is zero"),
            (|p| breaker(p).window = BreakerWindow::Count(5), "minimum_calls (10) is above the breaker's window of 5"),
            (|p| breaker(p).minimum_calls = 0, "`breaker.minimum_calls` is zero"),
            (|p| breaker(p).failure_rate = 0.0, "`breaker.failure_rate` is 0"),
            (|p| breaker(p).failure_rate = 1.5, "`breaker.failure_rate` is 1.5"),
            (|p| breaker(p).slow_call_rate = 0.0, "`breaker.slow_call_rate` is 0"),
            (|p| breaker(p).slow_call_rate = f64::NAN, "`breaker.slow_call_rate` is NaN"),
            (|p| breaker(p).slow_call_duration = Duration::ZERO, "`breaker.slow_call_duration` is zero"),
            (|p| breaker(p).open_wait = Duration::ZERO, "`breaker.open_wait` is zero"),
            (|p| breaker(p).half_open_max_wait = Duration::ZERO, "`breaker.half_open_max_wait` is zero"),
            (|p| breaker(p).half_open_probes = 0, "`breaker.half_open_probes` is zero"),
            (|p| hedging(p).quantile = 1.0, "`hedging.quantile` is 1; it must be between 0 and 1"),
            (|p| hedging(p).quantile = 0.0, "`hedging.quantile` is 0"),
            (|p| hedging(p).window = Duration::ZERO, "`hedging.window` is zero"),
            (|p| hedging(p).min_samples = 0, "`hedging.min_samples` is zero"),
            (|p| hedging(p).max_hedges = 0, "`hedging.max_hedges` is zero"),
            (|p| p.retry.max_attempts = 1, "hedging is on but retry.max_attempts is 1"),
            (
                |p| p.throttle.as_mut().expect("on").k = 0.5,
                "`throttle.k` is 0.5; it must be a finite number, 1 or more",
            ),
            (|p| p.throttle.as_mut().expect("on").k = f64::INFINITY, "`throttle.k` is inf"),
            (|p| p.throttle.as_mut().expect("on").window = Duration::ZERO, "`throttle.window` is zero"),
            (|p| p.concurrency_limit = Some(0), "`concurrency_limit` is zero"),
            (|p| p.idempotency.as_mut().expect("on").capacity = 0, "`idempotency.capacity` is zero"),
            (|p| p.idempotency.as_mut().expect("on").ttl = Duration::ZERO, "`idempotency.ttl` is zero"),
        ];
        for (break_it, expected) in cases {
            let mut policy = Policy::default();
            break_it(&mut policy);
            let message = policy.validate().expect_err(expected).to_string();
            assert!(message.starts_with("resilience policy: "), "{message}");
            assert!(message.contains(expected), "{message:?} should contain {expected:?}");
        }
    }

    #[test]
    fn edge_values_that_work_are_accepted() {
        let mut policy = Policy::default();
        policy.retry.max_attempts = MAX_ATTEMPTS;
        policy.retry.backoff = Backoff::new(Duration::ZERO, Duration::ZERO, Jitter::None);
        policy.retry.attempt_timeout = Some(Duration::from_nanos(1));
        policy.budget.as_mut().expect("on").ratio = 0.0;
        let breaker = policy.breaker.as_mut().expect("on");
        breaker.window = BreakerWindow::Count(10);
        breaker.minimum_calls = 10;
        breaker.failure_rate = 1.0;
        breaker.slow_call_rate = 1.0;
        policy.throttle.as_mut().expect("on").k = 1.0;
        policy.concurrency_limit = Some(1);
        assert_eq!(policy.validate(), Ok(()));
        // Hedging off lets a single attempt through.
        policy.hedging = None;
        policy.retry.max_attempts = 1;
        assert_eq!(policy.validate(), Ok(()));
        policy.breaker.as_mut().expect("on").window = BreakerWindow::Time(Duration::from_secs(1));
        policy.breaker.as_mut().expect("on").minimum_calls = 1000;
        assert_eq!(policy.validate(), Ok(()), "a time window holds any number of calls");
    }
}
