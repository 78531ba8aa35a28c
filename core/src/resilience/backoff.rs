//! Exponential backoff with jitter: how long a call waits before its next attempt.
//!
//! The formulas are the AWS study's ("Exponential Backoff And Jitter"), with `n` the number
//! of retries already made (0 before the first retry) and `t = min(cap, base * 2^n)`:
//!
//! | [`Jitter`] | delay |
//! |---|---|
//! | `None` | `t` |
//! | `Full` | `U(0, t)` |
//! | `Equal` | `t/2 + U(0, t/2)` |
//! | `Decorrelated` | `min(cap, U(base, 3 * previous))`, `previous = base` before the first |
//!
//! The study found no jitter the clear loser and full jitter the one that more than halves
//! the calls of 100 contending clients, so `Full` is the default.

use std::time::Duration;

use rand::Rng;

use crate::time::duration_nanos;

/// How a retry's delay is drawn from its exponential ceiling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the ceiling: every client that failed together retries together.
    None,
    /// Uniform between zero and the ceiling (the study's winner).
    #[default]
    Full,
    /// Half the ceiling, plus uniform up to the other half.
    Equal,
    /// Uniform between the base and three times the previous delay, capped: grows without
    /// counting attempts.
    Decorrelated,
}

/// Exponential backoff: a base delay that doubles per retry up to a cap, with jitter.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// The ceiling of the first retry's delay (and the least delay with decorrelated jitter).
    pub base: Duration,
    /// No delay is longer.
    pub cap: Duration,
    /// How the delay is drawn under its ceiling.
    pub jitter: Jitter,
}

impl Default for Backoff {
    /// 20 ms doubling up to 1 s, full jitter: a cluster's RPC on a LAN answers in
    /// milliseconds, so a first retry after a few of them is no storm, and a second after
    /// up to 40 ms still fits a sub-second deadline.
    fn default() -> Self {
        Self { base: Duration::from_millis(20), cap: Duration::from_secs(1), jitter: Jitter::Full }
    }
}

impl Backoff {
    /// Backoff from `base` doubling up to `cap`, with `jitter`.
    pub const fn new(base: Duration, cap: Duration, jitter: Jitter) -> Self {
        Self { base, cap, jitter }
    }

    /// The exponential ceiling after `retries` retries: `min(cap, base * 2^retries)`.
    pub fn ceiling(&self, retries: u32) -> Duration {
        let factor = 1u64.checked_shl(retries).unwrap_or(u64::MAX);
        let nanos = duration_nanos(self.base).saturating_mul(factor);
        Duration::from_nanos(nanos).min(self.cap)
    }

    /// The range, inclusive, that the delay after `retries` retries is drawn from, before
    /// the cap; `previous` is the delay drawn before (ignored but by decorrelated jitter).
    pub fn range(&self, retries: u32, previous: Duration) -> (Duration, Duration) {
        let t = self.ceiling(retries);
        match self.jitter {
            Jitter::None => (t, t),
            Jitter::Full => (Duration::ZERO, t),
            Jitter::Equal => (t / 2, t),
            Jitter::Decorrelated => {
                let previous = previous.max(self.base);
                (self.base, previous.saturating_mul(3))
            }
        }
    }

    /// The delay before the next attempt, after `retries` retries, the last one `previous`
    /// after the attempt before it: uniform over [`Backoff::range`], then capped.
    pub fn delay(&self, retries: u32, previous: Duration, rng: &mut impl Rng) -> Duration {
        let (low, high) = self.range(retries, previous);
        let nanos = rng.random_range(duration_nanos(low)..=duration_nanos(high));
        Duration::from_nanos(nanos).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let backoff = Backoff::new(MS(10), MS(500), Jitter::None);
        let golden = [(0, 10), (1, 20), (2, 40), (3, 80), (4, 160), (5, 320), (6, 500), (7, 500), (63, 500), (64, 500)];
        for (retries, millis) in golden {
            assert_eq!(backoff.ceiling(retries), MS(millis), "after {retries} retries");
        }
        assert_eq!(Backoff::new(MS(10), Duration::MAX, Jitter::None).ceiling(200), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn each_jitter_draws_from_the_studys_range() {
        type Case = (Jitter, u32, u64, (u64, u64));
        // base 10 ms, cap 500 ms; (jitter, retries, previous ms, (low ms, high ms)).
        let golden: &[Case] = &[
            (Jitter::None, 0, 0, (10, 10)),
            (Jitter::None, 3, 0, (80, 80)),
            (Jitter::Full, 0, 0, (0, 10)),
            (Jitter::Full, 2, 0, (0, 40)),
            (Jitter::Full, 9, 0, (0, 500)),
            (Jitter::Equal, 0, 0, (5, 10)),
            (Jitter::Equal, 4, 0, (80, 160)),
            (Jitter::Equal, 9, 0, (250, 500)),
            (Jitter::Decorrelated, 0, 0, (10, 30)),
            (Jitter::Decorrelated, 5, 4, (10, 30)),
            (Jitter::Decorrelated, 1, 25, (10, 75)),
            (Jitter::Decorrelated, 7, 400, (10, 1200)),
        ];
        let backoff = |jitter| Backoff::new(MS(10), MS(500), jitter);
        for &(jitter, retries, previous, (low, high)) in golden {
            assert_eq!(backoff(jitter).range(retries, MS(previous)), (MS(low), MS(high)), "{jitter:?} {retries}");
        }
    }

    #[test]
    fn delays_are_drawn_over_the_whole_range_then_capped() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let full = Backoff::new(MS(10), MS(500), Jitter::Full);
        let draws: Vec<Duration> = (0..2000).map(|_| full.delay(2, Duration::ZERO, &mut rng)).collect();
        assert!(draws.iter().all(|d| *d <= MS(40)));
        assert!(draws.iter().any(|d| *d < MS(4)), "reaches the bottom tenth");
        assert!(draws.iter().any(|d| *d > MS(36)), "reaches the top tenth");

        let none = Backoff::new(MS(10), MS(500), Jitter::None);
        assert_eq!(none.delay(3, Duration::ZERO, &mut rng), MS(80));

        // Decorrelated draws up to 3 * 400 ms = 1.2 s and is capped at 500 ms: most draws hit the cap.
        let decorrelated = Backoff::new(MS(10), MS(500), Jitter::Decorrelated);
        let draws: Vec<Duration> = (0..1000).map(|_| decorrelated.delay(7, MS(400), &mut rng)).collect();
        assert!(draws.iter().all(|d| *d >= MS(10) && *d <= MS(500)));
        let capped = draws.iter().filter(|d| **d == MS(500)).count();
        assert!((500..700).contains(&capped), "{capped} of 1000 capped, expected about 590");
    }

    #[test]
    fn the_default_is_full_jitter_from_20ms_to_1s() {
        let backoff = Backoff::default();
        assert_eq!((backoff.base, backoff.cap, backoff.jitter), (MS(20), MS(1000), Jitter::Full));
    }

    fn jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal), Just(Jitter::Decorrelated)]
    }

    proptest! {
        #[test]
        fn a_delay_is_within_zero_and_the_cap(
            base in 0u64..5_000_000_000,
            extra in 0u64..50_000_000_000,
            jitter in jitter(),
            retries in 0u32..100,
            previous in 0u64..u64::MAX / 4,
            seed: u64,
        ) {
            let backoff = Backoff::new(Duration::from_nanos(base), Duration::from_nanos(base + extra), jitter);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let delay = backoff.delay(retries, Duration::from_nanos(previous), &mut rng);
            prop_assert!(delay <= backoff.cap);
            let (low, high) = backoff.range(retries, Duration::from_nanos(previous));
            prop_assert!(low <= high);
            prop_assert!(delay >= low.min(backoff.cap) && delay <= high);
            if jitter != Jitter::Decorrelated {
                prop_assert!(delay <= backoff.ceiling(retries));
            }
        }
    }
}
