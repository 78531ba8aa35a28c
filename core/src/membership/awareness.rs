//! Lifeguard's local health awareness: a member that misses nacks or must refute
//! suspicions of itself is probably the slow one, so it stretches its own timeouts.

use std::time::Duration;

/// The local health score, `0..max`: timeouts are multiplied by `score + 1`.
#[derive(Clone, Debug)]
pub(crate) struct Awareness {
    score: u32,
    max: u32,
}

impl Awareness {
    /// `max` is the largest multiplier (memberlist's AwarenessMaxMultiplier, 8).
    pub(crate) fn new(max: u32) -> Self {
        Self { score: 0, max: max.max(1) }
    }

    /// Raises (positive) or lowers (negative) the score, clamped to `0..max`.
    pub(crate) fn apply(&mut self, delta: i64) {
        let score = (i64::from(self.score) + delta).clamp(0, i64::from(self.max) - 1);
        self.score = u32::try_from(score).unwrap_or(0);
    }

    pub(crate) fn score(&self) -> u32 {
        self.score
    }

    /// `timeout * (score + 1)`.
    pub(crate) fn scale(&self, timeout: Duration) -> Duration {
        timeout.saturating_mul(self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_is_clamped_and_scales_timeouts() {
        let mut a = Awareness::new(8);
        a.apply(-1);
        assert_eq!(a.score(), 0);
        a.apply(3);
        assert_eq!(a.scale(Duration::from_millis(500)), Duration::from_secs(2));
        a.apply(100);
        assert_eq!(a.score(), 7, "at most max - 1: timeouts stretch at most 8x");
        assert_eq!(a.scale(Duration::from_secs(1)), Duration::from_secs(8));
    }
}
