//! Deadlines that shrink as they cross hops.
//!
//! A caller holds its deadline as an instant on its own clock. What goes on the wire is
//! not that instant (the callee's clock may be minutes off) but the time that remains, less
//! an allowance for the hop itself (transit, queueing, the callee's clock ticking a little
//! faster); the callee turns it back into an instant on its own clock. So a deadline is
//! honoured across any number of hops whatever the clocks' offsets, and each hop's share
//! is taken out on the way, as gRPC's propagated timeouts are.

use std::time::Duration;

use crate::time::Instant;

/// The instant, on the local clock, after which a call's answer is of no use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// The deadline at `at` on the local clock.
    pub const fn at(at: Instant) -> Self {
        Self(at)
    }

    /// The deadline `budget` after `now`: for a call started here, or on receipt of the
    /// budget a caller put on the wire ([`Deadline::for_next_hop`]).
    pub fn after(now: Instant, budget: Duration) -> Self {
        Self(now + budget)
    }

    /// The instant.
    pub const fn instant(self) -> Instant {
        self.0
    }

    /// The time left at `now` (zero once it passed).
    pub fn remaining(self, now: Instant) -> Duration {
        self.0 - now
    }

    /// Whether it has passed at `now`.
    pub fn is_expired(self, now: Instant) -> bool {
        now >= self.0
    }

    /// The budget to put on the wire for a call sent at `now`: the time left less
    /// `allowance` for the hop, or `None` when nothing would be left (send nothing: the
    /// answer would come too late).
    pub fn for_next_hop(self, now: Instant, allowance: Duration) -> Option<Duration> {
        let left = self.remaining(now).checked_sub(allowance)?;
        (!left.is_zero()).then_some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_deadline_counts_down_on_the_local_clock() {
        let d = Deadline::after(Instant::from_secs(10), MS(300));
        assert_eq!(d, Deadline::at(Instant::from_millis(10_300)));
        assert_eq!(d.instant(), Instant::from_millis(10_300));
        assert_eq!(d.remaining(Instant::from_secs(10)), MS(300));
        assert_eq!(d.remaining(Instant::from_millis(10_299)), MS(1));
        assert!(!d.is_expired(Instant::from_millis(10_299)));
        assert!(d.is_expired(Instant::from_millis(10_300)));
        assert_eq!(d.remaining(Instant::from_secs(11)), Duration::ZERO);
    }

    #[test]
    fn each_hop_takes_its_allowance_out() {
        let d = Deadline::after(Instant::from_secs(10), MS(300));
        // (sent at ms, allowance ms, budget on the wire ms)
        let golden = [
            (10_000, 5, Some(295)),
            (10_100, 5, Some(195)),
            (10_294, 5, Some(1)),
            (10_295, 5, None),
            (10_400, 0, None),
            (10_000, 0, Some(300)),
        ];
        for (sent, allowance, budget) in golden {
            assert_eq!(d.for_next_hop(Instant::from_millis(sent), MS(allowance)), budget.map(MS), "sent at {sent} ms");
        }
    }

    #[test]
    fn a_callee_on_a_skewed_clock_still_honours_the_callers_deadline() {
        // The caller's clock reads 1000 s; the callee's, 90 s behind, reads 910 s at the
        // same moment. The hop takes 3 ms; the allowance is 5 ms.
        let caller = Deadline::after(Instant::from_secs(1000), MS(200));
        let budget = caller.for_next_hop(Instant::from_secs(1000), MS(5)).expect("time left");
        let callee = Deadline::after(Instant::from_secs(910) + MS(3), budget);
        // The callee gives up 2 ms before the caller would (the allowance less the transit),
        // on its own clock, and not 90 s late.
        assert_eq!(callee.instant(), Instant::from_secs(910) + MS(198));
        // A second hop from the callee, 50 ms after it received the call: 145 ms left, 140 ms sent.
        assert_eq!(callee.for_next_hop(Instant::from_secs(910) + MS(53), MS(5)), Some(MS(140)));
    }
}
