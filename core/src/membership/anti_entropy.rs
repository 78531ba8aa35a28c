//! Anti-entropy: repairing views that gossip did not make equal.
//!
//! Three ways, cheapest first:
//! - **Digests along the ring.** Pings and acks carry a digest of the sender's live view
//!   while it has nothing pending. A neighbour whose digest differs on two probes a probe
//!   interval apart gets a push-pull (a whole-view exchange); such syncs back off
//!   exponentially while differences persist, up to the push-pull interval.
//! - **Periodic push-pull.** Every push-pull interval (memberlist's, scaled above 32
//!   members), with a random live member unless neighbours agreed recently; and, half the
//!   time, with a member held failed (or, for a member left alone, a seed), so that split
//!   clusters merge again.
//! - **Strangers.** A member that hears from one it does not know has missed gossip:
//!   it exchanges views with it, at most once per gossip interval (forged senders cannot
//!   make it a flood).
//! - **Revenants.** Once per probe period a member pings one it holds Failed; one held
//!   Failed that speaks to us (its ack, once a partition heals) gets a view exchange, so it
//!   hears the claim, refutes it, and the sides merge within seconds.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::member::NodeId;
use crate::membership::view::View;
use crate::outbox::{Outbox, To};
use crate::time::Instant;
use crate::wire::{MessageKind, StateWriter};

/// The state of the three repairs.
#[derive(Debug)]
pub(crate) struct AntiEntropy {
    next_push_pull: Instant,
    /// Members whose quiet digest differed from ours, since when.
    mismatch: BTreeMap<NodeId, Instant>,
    /// No digest-driven sync before this.
    next_digest_sync: Instant,
    /// The pause after the next digest-driven sync.
    digest_backoff: Duration,
    /// When a neighbour last reported the same view digest as ours.
    agreed: Option<Instant>,
    /// Syncs with strangers, at most one per gossip interval.
    strangers: Gate,
    /// Syncs with members held Failed that spoke to us, at most one per gossip interval.
    revenants: Gate,
    /// No ping to a member held Failed before this.
    next_reach: Instant,
}

impl AntiEntropy {
    pub(crate) fn new(now: Instant, first_push_pull: Instant, probe_interval: Duration) -> Self {
        Self {
            next_push_pull: first_push_pull,
            mismatch: BTreeMap::new(),
            next_digest_sync: now,
            digest_backoff: probe_interval,
            agreed: None,
            strangers: Gate { next: now },
            revenants: Gate { next: now },
            next_reach: now,
        }
    }

    pub(crate) fn next_push_pull(&self) -> Instant {
        self.next_push_pull
    }

    /// Compares a neighbour's quiet `digest` with `ours`: `true` when it is time to
    /// exchange whole views with it.
    pub(crate) fn compare(
        &mut self,
        sender: NodeId,
        digest: u64,
        ours: u64,
        now: Instant,
        probe_interval: Duration,
        push_pull_interval: Duration,
    ) -> bool {
        if digest == ours {
            self.mismatch.remove(&sender);
            self.digest_backoff = probe_interval;
            self.agreed = Some(now);
            return false;
        }
        let since = *self.mismatch.entry(sender).or_insert(now);
        if now < since + probe_interval || now < self.next_digest_sync {
            return false;
        }
        self.mismatch.remove(&sender);
        self.next_digest_sync = now + self.digest_backoff;
        self.digest_backoff = (self.digest_backoff * 2).min(push_pull_interval);
        true
    }

    /// Whether a stranger may be synced with now; if so, the next may not be before
    /// `gossip_interval` has passed.
    pub(crate) fn stranger_sync(&mut self, now: Instant, gossip_interval: Duration) -> bool {
        self.strangers.pass(now, gossip_interval)
    }

    /// Whether a member held Failed that spoke to us may be synced with now; if so, the next
    /// may not be before `gossip_interval` has passed.
    pub(crate) fn revenant_sync(&mut self, now: Instant, gossip_interval: Duration) -> bool {
        self.revenants.pass(now, gossip_interval)
    }

    /// Whether a member held Failed is due a ping.
    pub(crate) fn reach_due(&self, now: Instant) -> bool {
        now >= self.next_reach
    }

    /// The next ping to a member held Failed is due at `next`.
    pub(crate) fn reached(&mut self, next: Instant) {
        self.next_reach = next;
    }

    /// Starts a push-pull period at `now` for a view of `live` members: whether a
    /// whole-view exchange with a random member is needed (not while neighbours reported
    /// the same digest within the last interval).
    pub(crate) fn start_push_pull(&mut self, now: Instant, interval: Duration, live: usize) -> bool {
        self.next_push_pull = now + push_pull_interval(interval, live);
        self.agreed.is_none_or(|at| now.saturating_duration_since(at) >= interval)
    }

    /// Forgets a member that left the view.
    pub(crate) fn forget(&mut self, id: NodeId) {
        self.mismatch.remove(&id);
    }
}

/// Lets one through, then none for a while: what keeps forged senders from making syncs a
/// flood.
#[derive(Debug)]
struct Gate {
    /// Closed before this.
    next: Instant,
}

impl Gate {
    /// Whether it is open at `now`; passing closes it for `interval`.
    fn pass(&mut self, now: Instant, interval: Duration) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + interval;
        true
    }
}

/// Sends this member's whole view to `to`, split into as many datagrams as it takes; the
/// receiver answers with its own when `reply` is set.
pub(crate) fn send_state(view: &View, out: &mut Outbox, to: To, reply: bool) {
    let mut state = StateWriter::new(out.max_datagram(), view.len());
    for member in view.members_unordered() {
        state.push(member);
    }
    for payload in state.finish(out.header(), reply) {
        out.transmit(to, MessageKind::PushPull, payload);
    }
}

/// memberlist's push-pull scaling: above 32 members, `interval * (ceil(log2 n - 5) + 1)`.
pub(crate) fn push_pull_interval(interval: Duration, n: usize) -> Duration {
    if n <= 32 {
        return interval;
    }
    let multiplier = (libm::log2(n as f64) - 5.0).ceil() + 1.0;
    interval.mul_f64(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE: Duration = Duration::from_millis(250);
    const PUSH_PULL: Duration = Duration::from_secs(30);

    #[test]
    fn a_digest_that_stays_different_for_a_probe_interval_asks_for_a_sync_with_backoff() {
        let mut ae = AntiEntropy::new(Instant::ZERO, Instant::from_secs(30), PROBE);
        let (n2, t0) = (NodeId(2), Instant::from_secs(1));
        assert!(!ae.compare(n2, 5, 6, t0, PROBE, PUSH_PULL), "the first difference may be gossip in flight");
        assert!(!ae.compare(n2, 5, 6, t0 + PROBE / 2, PROBE, PUSH_PULL));
        assert!(ae.compare(n2, 5, 6, t0 + PROBE, PROBE, PUSH_PULL), "still different a probe interval later");
        // The next syncs wait for a backoff that doubles: two intervals, then four.
        let at = |probes: u32| t0 + PROBE * probes;
        assert!(!ae.compare(n2, 5, 6, at(2), PROBE, PUSH_PULL));
        assert!(ae.compare(n2, 5, 6, at(3), PROBE, PUSH_PULL));
        assert!(!ae.compare(n2, 5, 6, at(4), PROBE, PUSH_PULL));
        assert!(ae.compare(n2, 5, 6, at(5), PROBE, PUSH_PULL));
        assert!(!ae.compare(n2, 5, 6, at(6), PROBE, PUSH_PULL));
        assert!(!ae.compare(n2, 5, 6, at(8), PROBE, PUSH_PULL), "backed off to four intervals");
        assert!(ae.compare(n2, 5, 6, at(9), PROBE, PUSH_PULL));
        let t2 = at(9);
        // Agreement resets the backoff and spares the next random push-pull.
        assert!(!ae.compare(n2, 6, 6, t2 + PROBE, PROBE, PUSH_PULL));
        assert!(!ae.start_push_pull(t2 + PROBE * 2, PUSH_PULL, 5));
        assert!(ae.start_push_pull(t2 + PUSH_PULL * 2, PUSH_PULL, 5), "agreement long ago");
    }

    #[test]
    fn strangers_are_synced_with_at_most_once_per_gossip_interval() {
        let mut ae = AntiEntropy::new(Instant::ZERO, Instant::from_secs(30), PROBE);
        let gossip = Duration::from_millis(100);
        assert!(ae.stranger_sync(Instant::ZERO, gossip));
        assert!(!ae.stranger_sync(Instant::from_millis(99), gossip));
        assert!(ae.stranger_sync(Instant::from_millis(100), gossip));
    }

    #[test]
    fn revenants_are_synced_with_at_most_once_per_gossip_interval_and_reached_on_schedule() {
        let mut ae = AntiEntropy::new(Instant::ZERO, Instant::from_secs(30), PROBE);
        let gossip = Duration::from_millis(100);
        assert!(ae.revenant_sync(Instant::ZERO, gossip));
        assert!(!ae.revenant_sync(Instant::from_millis(99), gossip));
        assert!(ae.stranger_sync(Instant::from_millis(99), gossip), "strangers have their own limit");
        assert!(ae.reach_due(Instant::ZERO));
        ae.reached(Instant::from_millis(750));
        assert!(!ae.reach_due(Instant::from_millis(749)));
        assert!(ae.reach_due(Instant::from_millis(750)));
    }

    #[test]
    fn push_pull_interval_scales_as_memberlist_above_32_members() {
        let table: &[(usize, u64)] = &[(1, 30), (32, 30), (33, 60), (64, 60), (65, 90), (128, 90), (1000, 180)];
        for &(n, secs) in table {
            assert_eq!(push_pull_interval(PUSH_PULL, n), Duration::from_secs(secs), "n = {n}");
        }
        let mut ae = AntiEntropy::new(Instant::ZERO, Instant::from_secs(30), PROBE);
        ae.start_push_pull(Instant::from_secs(30), PUSH_PULL, 100);
        assert_eq!(ae.next_push_pull(), Instant::from_secs(120));
    }
}
