//! The checkers of leader election: safety ([`OneLeaderPerTerm`]), the lease
//! ([`LeaseExclusive`]) and liveness after the faults ([`ElectsAfterHeal`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conclave_core::{Instant, NodeId};

use super::{Checker, ClusterSnapshot, Finding, NodeSnapshot, Observation, RunInfo};
use crate::fault::Fault;

/// Election safety: no two members lead the same term. Any member's belief counts: a
/// follower names the leader whose heartbeat it accepted.
///
/// It judges only runs in which some member named a leader; otherwise it could not judge
/// ("no leader was ever elected").
#[derive(Debug, Default)]
pub struct OneLeaderPerTerm {
    leaders: BTreeMap<u64, (NodeId, NodeId, Instant)>,
}

impl OneLeaderPerTerm {
    /// The checker's name.
    pub const NAME: &'static str = "at-most-one-leader-per-term";
}

impl Checker for OneLeaderPerTerm {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn observe(&mut self, o: &Observation, findings: &mut Vec<Finding>) {
        let Some(leader) = o.leader else { return };
        match self.leaders.get(&o.term) {
            None => {
                self.leaders.insert(o.term, (leader, o.node, o.at));
            }
            Some(&(first, by, since)) if first != leader => findings.push(Finding {
                at: o.at,
                message: format!(
                    "term {}: {} says {} leads, but {} said {} leads (at {})",
                    o.term, o.node, leader, by, first, since
                ),
            }),
            Some(_) => {}
        }
    }

    fn not_judged(&self) -> Option<String> {
        self.leaders.is_empty().then(|| "no leader was ever elected".to_string())
    }
}

/// Liveness of the election: by `bound` after the plan's last step (every fault healed),
/// every running member names the same leader, and that leader runs.
///
/// It judges once, at that deadline; a run that ends before it could not judge.
#[derive(Debug)]
pub struct ElectsAfterHeal {
    /// `None` when no member votes: nothing to judge.
    bound: Option<Duration>,
    deadline: Option<Instant>,
    checked: bool,
}

impl ElectsAfterHeal {
    /// The checker's name.
    pub const NAME: &'static str = "elects-after-heal";

    /// A checker giving the cluster `bound` to agree on a leader after the last fault.
    pub fn new(bound: Duration) -> Self {
        Self { bound: Some(bound), deadline: None, checked: false }
    }

    /// The checker of a run in which no member votes: it cannot judge.
    pub fn without_voters() -> Self {
        Self { bound: None, deadline: None, checked: false }
    }

    /// The default bound for `election`: the members that do not vote hear of the leader
    /// at its next announcement, and an election needs a few timeouts when votes split.
    pub fn bound(election: &conclave_core::ElectionConfig) -> Duration {
        election.leader_announce_interval + election.election_timeout_max * 10
    }
}

impl Checker for ElectsAfterHeal {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        let Some(bound) = self.bound else { return Vec::new() };
        let deadline = info.plan.last_at().unwrap_or(Instant::ZERO) + bound;
        self.deadline = Some(deadline);
        vec![deadline]
    }

    fn fault(&mut self, at: Instant, _fault: &Fault, _findings: &mut Vec<Finding>) {
        let Some(bound) = self.bound else { return };
        if self.deadline.is_some_and(|d| at + bound > d) {
            self.deadline = Some(at + bound);
            self.checked = false;
        }
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        let Some(bound) = self.bound else { return };
        if self.checked || Some(snapshot.at) != self.deadline {
            return;
        }
        self.checked = true;
        let up: Vec<&NodeSnapshot> = snapshot.nodes.iter().filter(|n| n.up).collect();
        let leaders: BTreeSet<Option<NodeId>> = up.iter().map(|n| n.leader).collect();
        let agreed = match leaders.iter().collect::<Vec<_>>()[..] {
            [Some(leader)] => up.iter().any(|n| n.id == *leader).then_some(*leader),
            _ => None,
        };
        if agreed.is_none() {
            let named: Vec<String> = up
                .iter()
                .map(|n| format!("{}: {}", n.id, n.leader.map_or("none".to_string(), |l| l.to_string())))
                .collect();
            findings.push(Finding {
                at: snapshot.at,
                message: format!(
                    "{:?} after the last fault the running members do not agree on a running leader ({})",
                    bound,
                    named.join(", ")
                ),
            });
        }
    }

    fn pending(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.checked)
    }

    fn not_judged(&self) -> Option<String> {
        (!self.checked).then(|| match (self.bound, self.deadline) {
            (None, _) => "no member votes, so nobody is elected".to_string(),
            (_, Some(d)) => format!("the run ended before {d}, when the leader is judged"),
            (_, None) => "the run never started".to_string(),
        })
    }
}

/// Lease exclusivity: at no moment do two members both hold the leader lease, as long
/// as both clocks stay within the drift bound the leases are built for (and never step).
///
/// Whoever reports observations must re-read every member that last said it holds the
/// lease whenever another one claims it, so "the latest observation of each member" is
/// exact at every claim. It judges only runs in which some member held the lease.
#[derive(Debug)]
pub struct LeaseExclusive {
    max_drift_ppm: f64,
    holders: BTreeMap<NodeId, Instant>,
    ever_held: bool,
}

impl LeaseExclusive {
    /// The checker's name.
    pub const NAME: &'static str = "lease-exclusive";

    /// A checker for leases that tolerate clocks drifting up to `max_drift_ppm`.
    pub fn new(max_drift_ppm: f64) -> Self {
        Self { max_drift_ppm, holders: BTreeMap::new(), ever_held: false }
    }
}

impl Checker for LeaseExclusive {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn observe(&mut self, o: &Observation, findings: &mut Vec<Finding>) {
        let in_bound = !o.clock_stepped && o.drift_ppm.abs() <= self.max_drift_ppm;
        self.ever_held |= o.leaseholder;
        if !(o.leaseholder && in_bound) {
            self.holders.remove(&o.node);
            return;
        }
        for (&other, &since) in &self.holders {
            if other != o.node {
                findings.push(Finding {
                    at: o.at,
                    message: format!(
                        "{} holds the lease (term {}) while {} still holds it (since {})",
                        o.node, o.term, other, since
                    ),
                });
            }
        }
        self.holders.entry(o.node).or_insert(o.at);
    }

    fn fault(&mut self, _at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        if let Fault::Crash(node) | Fault::Restart { node, .. } = fault {
            self.holders.remove(node);
        }
    }

    fn not_judged(&self) -> Option<String> {
        (!self.ever_held).then(|| "no leader was ever elected, so no member ever held the lease".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(at: u64, node: u64, term: u64, leader: Option<u64>, lease: bool) -> Observation {
        Observation {
            at: Instant::from_millis(at),
            node: NodeId(node),
            term,
            leader: leader.map(NodeId),
            leaseholder: lease,
            lease_until: None,
            drift_ppm: 0.0,
            clock_stepped: false,
        }
    }

    fn run(checker: &mut dyn Checker, observations: &[Observation]) -> Vec<Finding> {
        let mut findings = Vec::new();
        for o in observations {
            checker.observe(o, &mut findings);
        }
        findings
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let ok = [obs(1, 1, 1, Some(1), false), obs(2, 2, 1, Some(1), false), obs(3, 3, 2, Some(3), false)];
        assert!(run(&mut OneLeaderPerTerm::default(), &ok).is_empty());
        let bad = [obs(1, 1, 1, Some(1), false), obs(2, 2, 1, Some(2), false)];
        let findings = run(&mut OneLeaderPerTerm::default(), &bad);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].message.contains("term 1"), "{}", findings[0].message);
    }

    #[test]
    fn overlapping_leases_are_caught_unless_clocks_break_the_bound() {
        // Hand-over: 1 gives up the lease before 2 takes it.
        let ok = [obs(1, 1, 1, Some(1), true), obs(5, 1, 1, Some(1), false), obs(6, 2, 2, Some(2), true)];
        assert!(run(&mut LeaseExclusive::new(500.0), &ok).is_empty());
        let bad = [obs(1, 1, 1, Some(1), true), obs(6, 2, 2, Some(2), true)];
        assert_eq!(run(&mut LeaseExclusive::new(500.0), &bad).len(), 1);
        // A member whose clock drifts beyond the bound voids the guarantee.
        let mut fast = obs(6, 2, 2, Some(2), true);
        fast.drift_ppm = 1000.0;
        assert!(run(&mut LeaseExclusive::new(500.0), &[obs(1, 1, 1, Some(1), true), fast]).is_empty());
    }

    #[test]
    fn leader_checkers_cannot_judge_a_run_without_a_leader() {
        let mut one = OneLeaderPerTerm::default();
        let mut lease = LeaseExclusive::new(500.0);
        let none = [obs(1, 1, 0, None, false)];
        assert!(run(&mut one, &none).is_empty() && run(&mut lease, &none).is_empty());
        assert_eq!(one.not_judged().as_deref(), Some("no leader was ever elected"));
        assert!(lease.not_judged().is_some_and(|w| w.contains("no leader was ever elected")));
        let led = [obs(2, 1, 1, Some(1), true)];
        assert!(run(&mut one, &led).is_empty() && run(&mut lease, &led).is_empty());
        assert_eq!(one.not_judged(), None);
        assert_eq!(lease.not_judged(), None);
    }
}
