//! Lifeguard's dynamic suspicion ("does the cluster agree?"), as memberlist's suspicion.go.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::config::Config;
use crate::member::NodeId;
use crate::time::Instant;

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
    /// Confirmations that shrink the timeout all the way: `suspicion_confirmations`.
    k: u32,
    /// Distinct accusers heard, the first included; one confirmation each beyond the first.
    accusers: BTreeSet<NodeId>,
    /// The accused was heard from after it began: the suspicion runs its maximum, whatever
    /// the confirmations.
    held_back: bool,
}

impl Suspicion {
    pub(crate) fn new(start: Instant, accuser: NodeId, min: Duration, max: Duration, k: u32) -> Self {
        Self { start, min, max, k, accusers: BTreeSet::from([accuser]), held_back: false }
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
        if self.held_back {
            return 0;
        }
        u32::try_from(self.accusers.len().saturating_sub(1)).unwrap_or(u32::MAX).min(self.k)
    }

    /// Runs it to its maximum: the accused spoke since it began (its refutation may be
    /// lost), so the confirmations no longer shorten it. `false` if it already ran that long.
    pub(crate) fn hold_back(&mut self, now: Instant) -> bool {
        self.held_back = true;
        self.deadline() > now
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.start + suspicion_timeout(self.min, self.max, self.k, self.confirmations())
    }

    /// When this member first heard of it.
    pub(crate) fn started(&self) -> Instant {
        self.start
    }

    /// The distinct accusers heard, the first included, in id order.
    pub(crate) fn accusers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.accusers.iter().copied()
    }
}

/// The suspicions this member is running, one per suspected member.
#[derive(Debug, Default)]
pub(crate) struct Suspicions {
    running: BTreeMap<NodeId, Suspicion>,
}

impl Suspicions {
    /// Starts (or restarts) the suspicion of `id`, accused by `accuser`, with memberlist's
    /// bounds for a view of `live` members.
    pub(crate) fn start(&mut self, id: NodeId, accuser: NodeId, now: Instant, live: usize, config: &Config) {
        let (min, max) = config.suspicion_timeouts(live);
        let (max, k) = if config.lifeguard.dynamic_suspicion {
            (max, config.suspicion_confirmations)
        } else {
            // SWIM's fixed timeout: confirmations change nothing.
            (min, 0)
        };
        self.running.insert(id, Suspicion::new(now, accuser, min, max, k));
    }

    /// Counts `accuser`'s confirmation of the running suspicion of `id`; `true` if it
    /// shortened the timeout.
    pub(crate) fn confirm(&mut self, id: NodeId, accuser: NodeId) -> bool {
        self.running.get_mut(&id).is_some_and(|s| s.confirm(accuser))
    }

    /// Puts back a suspicion taken by [`Suspicions::expire`].
    pub(crate) fn resume(&mut self, id: NodeId, suspicion: Suspicion) {
        self.running.insert(id, suspicion);
    }

    /// Whether a suspicion of `id` runs that `accuser` has not yet accused or confirmed:
    /// what makes Lifeguard's confirmations independent (each member accuses once).
    pub(crate) fn awaits(&self, id: NodeId, accuser: NodeId) -> bool {
        self.running.get(&id).is_some_and(|s| !s.accused_by(accuser))
    }

    /// Ends the suspicion of `id`, if one runs, and gives it back.
    pub(crate) fn end(&mut self, id: NodeId) -> Option<Suspicion> {
        self.running.remove(&id)
    }

    /// When the earliest suspicion expires.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        // Asked after every input, and nearly always empty: skip the tree walk then.
        if self.running.is_empty() {
            return None;
        }
        self.running.values().map(Suspicion::deadline).min()
    }

    /// Whether no suspicion runs.
    pub(crate) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Ends the next suspicion that expired at `now`, if any (in id order), and gives it
    /// back with its member.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<(NodeId, Suspicion)> {
        let id = self.running.iter().find(|(_, s)| s.deadline() <= now).map(|(id, _)| *id)?;
        self.running.remove(&id).map(|s| (id, s))
    }

    /// The running suspicion of `id`.
    pub(crate) fn get(&self, id: NodeId) -> Option<&Suspicion> {
        self.running.get(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::suspicion_min;

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
        assert!(s.accused_by(NodeId(4)), "but is remembered");
        // Up to a bound: a flood of forged accusers does not grow it without end.
        for id in 5..1000 {
            s.confirm(NodeId(id));
        }
        assert_eq!(s.accusers().count(), MAX_ACCUSERS);
    }

    #[test]
    fn a_held_back_suspicion_runs_its_maximum_and_no_longer() {
        let (min, max) = (Duration::from_secs(4), Duration::from_secs(24));
        let mut s = Suspicion::new(Instant::ZERO, NodeId(1), min, max, 2);
        s.confirm(NodeId(2));
        s.confirm(NodeId(3));
        assert_eq!(s.deadline(), Instant::from_secs(4));
        assert!(s.hold_back(Instant::from_secs(4)));
        assert_eq!(s.deadline(), Instant::from_secs(24), "the maximum, confirmations aside");
        assert!(!s.hold_back(Instant::from_secs(24)), "ran its maximum already");
    }

    #[test]
    fn suspicions_expire_in_id_order_once_due() {
        let config = Config::lan();
        let mut running = Suspicions::default();
        let t0 = Instant::from_secs(1);
        running.start(NodeId(7), NodeId(1), t0, 5, &config);
        running.start(NodeId(3), NodeId(1), t0 + Duration::from_secs(1), 5, &config);
        let first = running.deadline().expect("two run");
        assert!(running.expire(first - Duration::from_nanos(1)).is_none());
        assert!(!running.awaits(NodeId(7), NodeId(1)) && running.awaits(NodeId(7), NodeId(2)));
        assert!(!running.awaits(NodeId(8), NodeId(2)), "no suspicion of n8 runs");
        assert!(running.confirm(NodeId(7), NodeId(2)), "a second accuser shortens it");
        assert!(running.deadline().expect("two run") < first);
        let late = t0 + Duration::from_secs(3600);
        assert_eq!(running.expire(late).map(|(id, _)| id), Some(NodeId(3)));
        let (id, expired) = running.expire(late).expect("n7's");
        assert_eq!((id, expired.started()), (NodeId(7), t0));
        assert_eq!(expired.accusers().collect::<Vec<_>>(), [NodeId(1), NodeId(2)]);
        assert!(running.expire(late).is_none());
        running.start(NodeId(9), NodeId(1), t0, 5, &config);
        running.end(NodeId(9));
        assert_eq!(running.deadline(), None);
    }
}
