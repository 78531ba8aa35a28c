//! Lifeguard's dynamic suspicion ("does the cluster agree?"), as memberlist's suspicion.go.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::member::NodeId;
use crate::time::Instant;

/// memberlist's minimum suspicion timeout: `mult * max(1, log10 n) * interval`.
pub(crate) fn suspicion_min(mult: u32, n: usize, interval: Duration) -> Duration {
    // libm's log10 and ln, not the platform's: the same timeout, to the nanosecond, everywhere.
    let scale = libm::log10(n.max(1) as f64).max(1.0);
    interval.mul_f64(f64::from(mult) * scale)
}

/// memberlist's timeout after `confirmations` independent confirmations, out of `k` that
/// bring it down from `max` to `min`: `max(min, max - (max - min) * log(c + 1) / log(k + 1))`.
pub(crate) fn suspicion_timeout(min: Duration, max: Duration, k: u32, confirmations: u32) -> Duration {
    if k == 0 {
        return min;
    }
    let fraction = libm::log(f64::from(confirmations + 1)) / libm::log(f64::from(k + 1));
    let shrunk = max.as_secs_f64() - (max.as_secs_f64() - min.as_secs_f64()) * fraction;
    Duration::from_secs_f64(shrunk.max(min.as_secs_f64()))
}

/// The most accusers one suspicion remembers.
const MAX_ACCUSERS: usize = 64;

/// A running suspicion of one member at one incarnation.
#[derive(Clone, Debug)]
pub(crate) struct Suspicion {
    /// When this member first heard of it.
    start: Instant,
    min: Duration,
    max: Duration,
    /// Confirmations that shrink the timeout: `suspicion_mult - 2`.
    k: u32,
    /// Distinct accusers heard, the first included; one confirmation each beyond the first.
    accusers: BTreeSet<NodeId>,
}

impl Suspicion {
    pub(crate) fn new(start: Instant, accuser: NodeId, min: Duration, max: Duration, k: u32) -> Self {
        Self { start, min, max, k, accusers: BTreeSet::from([accuser]) }
    }

    /// Counts an independent confirmation; `true` if it shortened the timeout, which is
    /// when the suspicion is worth gossiping again.
    ///
    /// Accusers beyond `k` change nothing but are still remembered (up to a bound), so a
    /// member knows not to accuse twice.
    pub(crate) fn confirm(&mut self, accuser: NodeId) -> bool {
        let before = self.confirmations();
        if self.accusers.len() < MAX_ACCUSERS {
            self.accusers.insert(accuser);
        }
        self.confirmations() > before
    }

    /// Whether `id` has accused (or confirmed) this suspicion.
    pub(crate) fn accused_by(&self, id: NodeId) -> bool {
        self.accusers.contains(&id)
    }

    pub(crate) fn confirmations(&self) -> u32 {
        u32::try_from(self.accusers.len().saturating_sub(1)).unwrap_or(u32::MAX).min(self.k)
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.start + suspicion_timeout(self.min, self.max, self.k, self.confirmations())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_follows_memberlist() {
        let second = Duration::from_secs(1);
        // (mult, n, expected seconds): mult * max(1, log10 n) * 1 s.
        let table: &[(u32, usize, f64)] = &[
            (4, 1, 4.0),
            (4, 5, 4.0),
            (4, 10, 4.0),
            (4, 100, 8.0),
            (4, 1000, 12.0),
            (3, 50, 3.0 * 1.698_970_004_336_018_8),
        ];
        for &(mult, n, expected) in table {
            let got = suspicion_min(mult, n, second).as_secs_f64();
            assert!((got - expected).abs() < 1e-6, "mult {mult} n {n}: {got} != {expected}");
        }
    }

    #[test]
    fn timeout_shrinks_logarithmically_with_confirmations() {
        let (min, max) = (Duration::from_secs(4), Duration::from_secs(24));
        // k = 2 (memberlist's SuspicionMult 4 - 2); expected from the formula:
        // 24 - 20 * ln(c+1)/ln(3): c=0 -> 24, c=1 -> 11.381..., c=2 -> 4, c=3 -> 4 (floor).
        let table: &[(u32, f64)] = &[(0, 24.0), (1, 24.0 - 20.0 * 2f64.ln() / 3f64.ln()), (2, 4.0), (3, 4.0)];
        for &(c, expected) in table {
            let got = suspicion_timeout(min, max, 2, c).as_secs_f64();
            assert!((got - expected).abs() < 1e-6, "c {c}: {got} != {expected}");
        }
        assert_eq!(suspicion_timeout(min, max, 0, 0), min);
    }

    #[test]
    fn timeouts_are_the_same_nanoseconds_on_every_platform() {
        // libm's log10 and ln are pure Rust: these exact values hold on every machine.
        let second = Duration::from_secs(1);
        assert_eq!(suspicion_min(4, 11, second).as_nanos(), 4_165_570_741);
        assert_eq!(suspicion_min(5, 100, Duration::from_millis(250)).as_nanos(), 2_500_000_000);
        let (min, max) = (Duration::from_secs(4), Duration::from_secs(24));
        assert_eq!(suspicion_timeout(min, max, 2, 1).as_nanos(), 11_381_404_929);
        assert_eq!(suspicion_timeout(min, max, 3, 1).as_nanos(), 14_000_000_000);
    }

    #[test]
    fn only_distinct_accusers_confirm() {
        let (min, max) = (Duration::from_secs(4), Duration::from_secs(24));
        let mut s = Suspicion::new(Instant::ZERO, NodeId(1), min, max, 2);
        assert_eq!(s.deadline(), Instant::from_secs(24));
        assert!(!s.confirm(NodeId(1)), "the first accuser again is no confirmation");
        assert!(s.confirm(NodeId(2)));
        assert!(!s.confirm(NodeId(2)));
        assert!(s.confirm(NodeId(3)));
        assert!(!s.confirm(NodeId(4)), "beyond k changes nothing");
        assert_eq!(s.deadline(), Instant::from_secs(4));
    }
}
