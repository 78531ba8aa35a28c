//! Counts over a sliding window of time, kept in a fixed ring of slots (as Finagle's and
//! tower's retry budgets, and resilience4j's time-based breaker window, keep theirs).
//!
//! The window is cut into [`SLOTS`] slots of `window / SLOTS`; a count lands in the slot of
//! its instant, and a sum covers the slot of `now` and the `SLOTS - 1` before it. So a sum
//! sees at least the last `window * (SLOTS - 1) / SLOTS` and never anything older than
//! `window`. No allocation, O(SLOTS) per call, and the same answer for the same instants on
//! every run.

use core::ops::AddAssign;
use std::time::Duration;

use crate::time::{duration_nanos, Instant};

/// How many slots a window is cut into.
pub(crate) const SLOTS: usize = 10;

/// Counts of type `T` over the last `window`.
#[derive(Clone, Debug)]
pub(crate) struct SlidingCounts<T> {
    slot_nanos: u64,
    /// Per slot: its number (`nanos / slot_nanos` of the instants it holds) and its counts.
    slots: [(u64, T); SLOTS],
}

impl<T: Copy + Default + AddAssign> SlidingCounts<T> {
    /// Empty counts over `window` (a window shorter than `SLOTS` nanoseconds has slots of one
    /// nanosecond).
    pub(crate) fn new(window: Duration) -> Self {
        let slot_nanos = (duration_nanos(window) / SLOTS as u64).max(1);
        Self { slot_nanos, slots: [(0, T::default()); SLOTS] }
    }

    /// The counts of the slot that holds `now`, emptied first if it held an older slot.
    pub(crate) fn at(&mut self, now: Instant) -> &mut T {
        let number = now.as_nanos() / self.slot_nanos;
        let slot = &mut self.slots[slot_index(number)];
        if slot.0 != number {
            *slot = (number, T::default());
        }
        &mut slot.1
    }

    /// The sum over the slot of `now` and the `SLOTS - 1` before it. Slots from after `now`
    /// (an input with an earlier `now`) are left out.
    pub(crate) fn sum(&self, now: Instant) -> T {
        let number = now.as_nanos() / self.slot_nanos;
        let mut total = T::default();
        for (slot, counts) in &self.slots {
            if number.wrapping_sub(*slot) < SLOTS as u64 {
                total += *counts;
            }
        }
        total
    }
}

fn slot_index(number: u64) -> usize {
    // The remainder is below SLOTS, which is a usize.
    (number % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_stays_for_the_window_and_no_longer() {
        let mut counts = SlidingCounts::<u64>::new(Duration::from_secs(10));
        *counts.at(Instant::from_millis(500)) += 3;
        *counts.at(Instant::from_millis(1500)) += 1;
        assert_eq!(counts.sum(Instant::from_millis(1500)), 4);
        // The slot of 0.5 s is [0, 1 s): it counts until 10 s, the slot of 1.5 s until 11 s.
        assert_eq!(counts.sum(Instant::from_millis(9_999)), 4);
        assert_eq!(counts.sum(Instant::from_secs(10)), 1);
        assert_eq!(counts.sum(Instant::from_millis(10_999)), 1);
        assert_eq!(counts.sum(Instant::from_secs(11)), 0);
    }

    #[test]
    fn a_slot_reused_a_window_later_starts_empty() {
        let mut counts = SlidingCounts::<u64>::new(Duration::from_secs(10));
        *counts.at(Instant::from_millis(200)) += 5;
        // 10.2 s falls in the same ring position as 0.2 s.
        *counts.at(Instant::from_millis(10_200)) += 1;
        assert_eq!(counts.sum(Instant::from_millis(10_200)), 1);
        // The same slot again adds to it.
        *counts.at(Instant::from_millis(10_900)) += 1;
        assert_eq!(counts.sum(Instant::from_millis(10_900)), 2);
    }

    #[test]
    fn slots_ahead_of_now_are_not_counted() {
        let mut counts = SlidingCounts::<u64>::new(Duration::from_secs(10));
        *counts.at(Instant::from_secs(5)) += 2;
        assert_eq!(counts.sum(Instant::from_secs(4)), 0);
        assert_eq!(counts.sum(Instant::from_secs(5)), 2);
    }

    #[test]
    fn a_tiny_window_has_one_nanosecond_slots() {
        let mut counts = SlidingCounts::<u64>::new(Duration::from_nanos(3));
        *counts.at(Instant::from_nanos(7)) += 1;
        assert_eq!(counts.sum(Instant::from_nanos(16)), 1);
        assert_eq!(counts.sum(Instant::from_nanos(17)), 0);
    }
}
