//! Load shedding: a worker that refuses what it cannot take ([`ConcurrencyLimit`]), and a
//! client that stops sending what the workers keep refusing ([`AdaptiveThrottle`]).
//!
//! The throttle is the Google SRE book's client-side adaptive throttling ("Handling
//! Overload"): each client counts, over the last two minutes, the requests it wanted to
//! send and those the workers accepted, and rejects a new request locally with probability
//! `max(0, (requests - K * accepts) / (requests + 1))`, K = 2. While the workers accept
//! more than half, nothing is rejected; when they accept nothing, nearly everything is,
//! and the few requests still sent find out when they recover.

use std::time::Duration;

use rand::Rng;

use crate::resilience::sliding::SlidingCounts;
use crate::time::Instant;

/// A worker's limit on the requests it serves at once: the one past it is shed (refused at
/// once, for the client to try elsewhere) instead of queued behind the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConcurrencyLimit {
    limit: u32,
    in_flight: u32,
    shed: u64,
}

/// One admitted request, to give back to [`ConcurrencyLimit::release`] when it is done.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an admission must be released when its request is done, or the limit shrinks for good"]
pub struct Admission(());

impl ConcurrencyLimit {
    /// At most `limit` requests at once (at least one).
    pub fn new(limit: u32) -> Self {
        Self { limit: limit.max(1), in_flight: 0, shed: 0 }
    }

    /// Admits a request, or `None` (and counts it shed) when `limit` are in flight.
    pub fn try_admit(&mut self) -> Option<Admission> {
        if self.in_flight >= self.limit {
            self.shed += 1;
            return None;
        }
        self.in_flight += 1;
        Some(Admission(()))
    }

    /// An admitted request is done.
    pub fn release(&mut self, admission: Admission) {
        let Admission(()) = admission;
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Requests shed so far.
    pub fn shed(&self) -> u64 {
        self.shed
    }
}

/// Adaptive throttling's settings.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ThrottleConfig {
    /// K: how many requests per accepted one are sent before any is rejected locally (at
    /// least 1; 2 in the SRE book, lower is more aggressive).
    pub k: f64,
    /// How long a request and an acceptance count.
    pub window: Duration,
}

impl Default for ThrottleConfig {
    /// The SRE book's K = 2 over two minutes.
    fn default() -> Self {
        Self { k: 2.0, window: Duration::from_secs(120) }
    }
}

/// The probability that the SRE book's throttle rejects the next request, after `requests`
/// requests of which `accepts` were accepted: `max(0, (requests - k * accepts) / (requests + 1))`.
pub fn reject_probability(requests: u64, accepts: u64, k: f64) -> f64 {
    let requests = requests as f64;
    ((requests - k * accepts as f64) / (requests + 1.0)).max(0.0)
}

/// Requests and acceptances in one slot of the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    requests: u64,
    accepts: u64,
}

impl core::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.requests += other.requests;
        self.accepts += other.accepts;
    }
}

/// A client's adaptive throttle.
#[derive(Clone, Debug)]
pub struct AdaptiveThrottle {
    config: ThrottleConfig,
    counts: SlidingCounts<Counts>,
}

impl AdaptiveThrottle {
    /// A throttle that has seen nothing (and rejects nothing).
    pub fn new(config: ThrottleConfig) -> Self {
        let counts = SlidingCounts::new(config.window);
        Self { config, counts }
    }

    /// Its settings.
    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// The probability that a request at `now` is rejected locally.
    pub fn reject_probability(&self, now: Instant) -> f64 {
        self.reject_probability_with(now, 0)
    }

    /// The probability that a request at `now` is rejected locally while `in_flight` of the
    /// requests counted are still unanswered. Those have no outcome yet, so they count
    /// neither as requests nor as accepts: otherwise a client that has just started (or
    /// has been quiet for a window) would reject its own second request with probability
    /// 1/2 while its first is on its way, its workers healthy.
    pub fn reject_probability_with(&self, now: Instant, in_flight: u64) -> f64 {
        let Counts { requests, accepts } = self.counts.sum(now);
        reject_probability(requests.saturating_sub(in_flight), accepts, self.config.k)
    }

    /// Counts a request at `now` and says whether to send it (`false`: reject it locally).
    /// A rejected request counts too: that is what keeps the rejections up while the
    /// workers refuse.
    #[must_use = "a request the throttle rejects must not be sent"]
    pub fn try_send(&mut self, now: Instant, rng: &mut impl Rng) -> bool {
        self.try_send_with(now, 0, rng)
    }

    /// [`AdaptiveThrottle::try_send`] while `in_flight` of the requests counted are still
    /// unanswered (see [`AdaptiveThrottle::reject_probability_with`]).
    #[must_use = "a request the throttle rejects must not be sent"]
    pub fn try_send_with(&mut self, now: Instant, in_flight: u64, rng: &mut impl Rng) -> bool {
        let p = self.reject_probability_with(now, in_flight);
        self.counts.at(now).requests += 1;
        // p is in [0, 1): random_bool accepts it.
        !(p > 0.0 && rng.random_bool(p))
    }

    /// A worker accepted a request sent at or before `now` (it answered, even with an
    /// error of its own; refusing it as overloaded, or no answer at all, is no acceptance).
    pub fn record_accept(&mut self, now: Instant) {
        self.counts.at(now).accepts += 1;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn the_limit_sheds_what_is_past_it_and_takes_more_as_requests_finish() {
        let mut limit = ConcurrencyLimit::new(2);
        let a = limit.try_admit().expect("first");
        let b = limit.try_admit().expect("second");
        assert_eq!(limit.try_admit(), None);
        assert_eq!(limit.try_admit(), None);
        assert_eq!((limit.in_flight(), limit.shed(), limit.limit()), (2, 2, 2));
        limit.release(a);
        assert_eq!(limit.in_flight(), 1);
        let c = limit.try_admit().expect("room again");
        assert_eq!(limit.try_admit(), None);
        limit.release(b);
        limit.release(c);
        assert_eq!((limit.in_flight(), limit.shed()), (0, 3));
        assert_eq!(ConcurrencyLimit::new(0).limit(), 1, "a limit of zero would refuse everything for ever");
    }

    #[test]
    fn reject_probability_is_the_sre_formula() {
        // (requests, accepts, k, probability)
        let golden = [
            (0, 0, 2.0, 0.0),
            (100, 100, 2.0, 0.0),
            (100, 50, 2.0, 0.0),
            (100, 40, 2.0, 20.0 / 101.0),
            (100, 0, 2.0, 100.0 / 101.0),
            (9, 0, 2.0, 0.9),
            (1000, 100, 2.0, 800.0 / 1001.0),
            (100, 60, 1.1, 34.0 / 101.0),
            (100, 90, 1.0, 10.0 / 101.0),
        ];
        for (requests, accepts, k, p) in golden {
            let got = reject_probability(requests, accepts, k);
            assert!((got - p).abs() < 1e-12, "{requests} requests, {accepts} accepted, K {k}: {got} != {p}");
        }
    }

    #[test]
    fn the_throttle_rejects_at_the_formulas_rate_and_counts_rejections_as_requests() {
        let mut throttle = AdaptiveThrottle::new(ThrottleConfig::default());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let now = Instant::from_secs(1);
        // Healthy: every request accepted; nothing is rejected.
        for _ in 0..1000 {
            assert!(throttle.try_send(now, &mut rng));
            throttle.record_accept(now);
        }
        assert_eq!(throttle.reject_probability(now), 0.0);
        // An outage: nothing is accepted. The probability climbs as requests pile up,
        // rejected ones included.
        let mut sent = 0;
        for _ in 0..10_000 {
            if throttle.try_send(now, &mut rng) {
                sent += 1;
            }
        }
        // requests 11000, accepts 1000: p = 9000 / 11001 at the end; 0 while requests <= 2000.
        assert!((throttle.reject_probability(now) - 9000.0 / 11001.0).abs() < 1e-12);
        // Expected sends: the sum over r = 1000..11000 requests so far of
        // 1 - max(0, (r - 2000) / (r + 1)): 1001 + 2001 * ln(11000 / 2002), about 4410.
        assert!((4200..4600).contains(&sent), "{sent} sent");
        // Two minutes later the history is gone.
        assert_eq!(throttle.reject_probability(now + Duration::from_secs(120)), 0.0);
        assert_eq!(throttle.config(), &ThrottleConfig::default());
    }

    #[test]
    fn requests_in_flight_count_neither_way() {
        let mut throttle = AdaptiveThrottle::new(ThrottleConfig::default());
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let now = Instant::from_secs(1);
        // A client that has just started sends 100 requests before any answer comes.
        for in_flight in 0..100 {
            assert_eq!(throttle.reject_probability_with(now, in_flight), 0.0);
            assert!(throttle.try_send_with(now, in_flight, &mut rng), "request {in_flight} rejected");
        }
        // Counted without them, the same history rejects nearly everything.
        assert!((throttle.reject_probability(now) - 100.0 / 101.0).abs() < 1e-12);
        // Answered, refused or not, they count again: 100 requests, 30 accepted.
        for _ in 0..30 {
            throttle.record_accept(now);
        }
        assert!((throttle.reject_probability_with(now, 0) - 40.0 / 101.0).abs() < 1e-12);
        // More in flight than counted (sent before the window) changes nothing below zero.
        assert_eq!(throttle.reject_probability_with(now, 1000), 0.0);
    }

    #[test]
    fn the_default_is_k_2_over_two_minutes() {
        let c = ThrottleConfig::default();
        assert_eq!((c.k, c.window), (2.0, Duration::from_secs(120)));
        let other = ThrottleConfig { k: 1.5, window: Duration::from_secs(30) };
        assert_eq!(AdaptiveThrottle::new(other.clone()).config(), &other);
    }

    #[test]
    fn a_throttle_that_rejects_nothing_draws_nothing_from_the_rng() {
        // With every request accepted the probability is 0: the client's other draws (worker
        // selection, jitter) stay what they would be without a throttle.
        let mut throttle = AdaptiveThrottle::new(ThrottleConfig::default());
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut untouched = rng.clone();
        for ms in 0..100 {
            let now = Instant::from_millis(ms);
            assert!(throttle.try_send(now, &mut rng));
            throttle.record_accept(now);
        }
        assert_eq!(rand::RngCore::next_u64(&mut rng), rand::RngCore::next_u64(&mut untouched));
    }

    proptest! {
        #[test]
        fn the_probability_is_in_zero_to_one(requests in 0u64..1 << 40, accepts in 0u64..1 << 40, k in 1.0f64..10.0) {
            let p = reject_probability(requests, accepts, k);
            prop_assert!((0.0..1.0).contains(&p));
        }
    }
}
