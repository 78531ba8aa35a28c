//! Timers as data: one [`Timer`] per kind of deadline a node keeps, and a [`TimerTable`]
//! of when each is next due.
//!
//! The node fills the table from its parts after every input; `poll_timeout` is its
//! earliest entry that wakes the node, and `handle_timeout` runs the expired ones in
//! [`Timer::ALL`]'s order. Both go through the same enum, so a new timer cannot be
//! scheduled and then forgotten (or the reverse).

use crate::time::Instant;

/// A kind of deadline, in the order expired ones are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A ping relayed for another member is due its nack.
    RelayNack,
    /// An indirect probe timed out without an ack.
    ProbeTimeout,
    /// A suspicion expired: the member is declared failed.
    Suspicion,
    /// A watched peer's phi reached the threshold: probe it indirectly.
    IndirectProbe,
    /// SWIM's protocol period: ping the next watched peer.
    ProbePeriod,
    /// Periodic push-pull (and reaping of old tombstones).
    PushPull,
    /// A gossip round.
    GossipRound,
    /// A join attempt.
    JoinRetry,
    /// The election: a heartbeat round or CheckQuorum for a leader; standing for the others.
    Election,
    /// The partition picture settled: decide which side keeps running.
    Partition,
}

impl Timer {
    /// Every timer, in the order expired ones are handled: what was already running ends
    /// (relays, probes, suspicions) before anything new starts.
    pub(crate) const ALL: [Self; 10] = [
        Self::RelayNack,
        Self::ProbeTimeout,
        Self::Suspicion,
        Self::IndirectProbe,
        Self::ProbePeriod,
        Self::PushPull,
        Self::GossipRound,
        Self::JoinRetry,
        Self::Election,
        Self::Partition,
    ];

    const fn index(self) -> usize {
        self as usize
    }
}

/// When one timer is due, and whether the node must be woken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    /// `false` for a deadline kept but not worth a wakeup of its own (a gossip round with
    /// nothing to send): it runs at the first wakeup at or after `at`.
    pub(crate) wakes: bool,
}

impl Deadline {
    /// A deadline that wakes the node.
    pub(crate) fn wake(at: Instant) -> Self {
        Self { at, wakes: true }
    }
}

/// When each timer is next due.
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    entries: [Option<Deadline>; Timer::ALL.len()],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, deadline: Option<Deadline>) {
        self.entries[timer.index()] = deadline;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Deadline> {
        self.entries[timer.index()]
    }

    /// Whether `timer` is due at `now`.
    pub(crate) fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|d| d.at <= now)
    }

    /// The earliest deadline that wakes the node.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        self.entries.iter().flatten().filter(|d| d.wakes).map(|d| d.at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_timer_once_in_its_order() {
        for (i, timer) in Timer::ALL.iter().enumerate() {
            assert_eq!(timer.index(), i);
        }
        assert!(Timer::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_next_wakeup_is_the_earliest_deadline_that_wakes() {
        let mut table = TimerTable::default();
        assert_eq!(table.next_wakeup(), None);
        table.set(Timer::ProbePeriod, Some(Deadline::wake(Instant::from_millis(250))));
        table.set(Timer::GossipRound, Some(Deadline { at: Instant::from_millis(100), wakes: false }));
        table.set(Timer::Suspicion, Some(Deadline::wake(Instant::from_secs(3))));
        assert_eq!(table.next_wakeup(), Some(Instant::from_millis(250)), "the idle gossip round wakes nobody");
        assert!(table.is_expired(Timer::GossipRound, Instant::from_millis(250)), "but runs when the node is up");
        assert!(!table.is_expired(Timer::Suspicion, Instant::from_millis(250)));
        assert!(!table.is_expired(Timer::JoinRetry, Instant::from_secs(100)), "not set");
        table.set(Timer::ProbePeriod, None);
        assert_eq!(table.next_wakeup(), Some(Instant::from_secs(3)));
    }
}
