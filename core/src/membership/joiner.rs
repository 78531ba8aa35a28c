//! The joiner: getting into a cluster through its seeds.
//!
//! As memberlist, every attempt tells every seed (seeds that are themselves still joining
//! each know part of the cluster; telling only one can leave islands), but asks only one of
//! them, in turn, for its view: one state transfer per attempt, not one per seed. Attempts
//! back off exponentially with equal jitter until the cluster answers.

use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::Config;
use crate::time::Instant;

#[derive(Debug)]
struct Attempt {
    number: u32,
    /// The seed asked for its view first; later attempts ask the next ones.
    first_seed: usize,
    next: Instant,
}

/// The seeds, and the join in progress if any.
#[derive(Debug, Default)]
pub(crate) struct Joiner {
    seeds: Vec<SocketAddr>,
    attempt: Option<Attempt>,
}

impl Joiner {
    /// Starts joining through `seeds` (this member's own address left out); the first
    /// attempt is due at once. Nothing to do without seeds.
    pub(crate) fn start(&mut self, seeds: Vec<SocketAddr>, own: SocketAddr, rng: &mut ChaCha8Rng, now: Instant) {
        self.seeds = seeds.into_iter().filter(|addr| *addr != own).collect();
        if !self.seeds.is_empty() {
            let first_seed = rng.random_range(0..self.seeds.len());
            self.attempt = Some(Attempt { number: 0, first_seed, next: now });
        }
    }

    /// The cluster answered (or the member left): no more attempts.
    pub(crate) fn stop(&mut self) {
        self.attempt = None;
    }

    /// Whether no join is in progress.
    pub(crate) fn is_joined(&self) -> bool {
        self.attempt.is_none()
    }

    /// When the next attempt is due.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.attempt.as_ref().map(|a| a.next)
    }

    pub(crate) fn seeds(&self) -> &[SocketAddr] {
        &self.seeds
    }

    /// The attempt due at `now`, if one is: the index of the seed to ask for its view (all
    /// are told). Schedules the next one.
    pub(crate) fn attempt(&mut self, now: Instant, rng: &mut ChaCha8Rng, config: &Config) -> Option<usize> {
        let attempt = self.attempt.as_mut()?;
        if now < attempt.next || self.seeds.is_empty() {
            return None;
        }
        let backoff = config.join_retry_base.saturating_mul(1 << attempt.number.min(16)).min(config.join_retry_max);
        let number = attempt.number;
        attempt.number += 1;
        // Equal jitter: half fixed, half random, so members that start together spread out.
        attempt.next = now + backoff / 2 + jitter(rng, backoff / 2);
        Some((attempt.first_seed + number as usize) % self.seeds.len())
    }
}

/// A uniformly random duration in `[0, max)`.
pub(crate) fn jitter(rng: &mut ChaCha8Rng, max: Duration) -> Duration {
    let nanos = crate::time::duration_nanos(max);
    if nanos == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(rng.random_range(0..nanos))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn seeds(n: u16) -> Vec<SocketAddr> {
        (0..n).map(|i| SocketAddr::from(([127, 0, 0, 1], 7000 + i))).collect()
    }

    #[test]
    fn attempts_ask_each_seed_in_turn_and_back_off_with_equal_jitter() {
        let config = Config::lan();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut joiner = Joiner::default();
        let all = seeds(4);
        joiner.start(all.clone(), all[0], &mut rng, Instant::ZERO);
        assert_eq!(joiner.seeds(), &all[1..], "not itself");
        let mut asked = Vec::new();
        let mut now = Instant::ZERO;
        for n in 0..6u32 {
            assert_eq!(joiner.deadline(), Some(now));
            asked.push(joiner.attempt(now, &mut rng, &config).expect("due"));
            assert_eq!(joiner.attempt(now, &mut rng, &config), None, "one attempt per deadline");
            let next = joiner.deadline().expect("still joining");
            let backoff = config.join_retry_base.saturating_mul(1 << n).min(config.join_retry_max);
            assert!(next >= now + backoff / 2 && next < now + backoff, "attempt {n}: equal jitter");
            now = next;
        }
        let first = asked[0];
        let expected: Vec<usize> = (0..6).map(|i| (first + i) % 3).collect();
        assert_eq!(asked, expected);
        joiner.stop();
        assert!(joiner.is_joined());
        assert_eq!(joiner.attempt(now, &mut rng, &config), None);
    }

    #[test]
    fn without_other_seeds_there_is_nothing_to_join() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut joiner = Joiner::default();
        let own = seeds(1)[0];
        joiner.start(vec![own], own, &mut rng, Instant::ZERO);
        assert!(joiner.is_joined());
        assert_eq!(joiner.deadline(), None);
    }
}
