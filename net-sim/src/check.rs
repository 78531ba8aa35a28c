//! Checkers: properties every run must keep, checked while it runs and at its end.
//!
//! A [`Checker`] sees what the simulator sees: faults as they are applied, every event a
//! member emits, an [`Observation`] of a member's leader, term and lease whenever one of
//! them changes, and [`ClusterSnapshot`]s of every member's view at the times it asks for
//! and at the end. It reports [`Finding`]s; the simulator turns them into
//! [`Violation`]s that carry the seed, the plan and the command that replays the run.
//!
//! The checkers only read these values, so each is unit-tested with synthetic
//! observations; the leader and lease checkers bite as soon as the core elects leaders.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use conclave_core::{Event, Instant, MemberState, NodeId};

use crate::fault::{Fault, FaultPlan, Touched};

/// One member's election state, as the simulator read it after the member handled an input.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// Global virtual time.
    pub at: Instant,
    /// The member.
    pub node: NodeId,
    /// Its term.
    pub term: u64,
    /// Whom it believes leads in that term.
    pub leader: Option<NodeId>,
    /// Whether it holds the leader lease at its own `now`.
    pub leaseholder: bool,
    /// Its clock's drift, parts per million.
    pub drift_ppm: f64,
    /// Whether its clock ever stepped (an offset change or a jump).
    pub clock_stepped: bool,
}

/// One member's view at a moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// The member.
    pub id: NodeId,
    /// Whether its process runs.
    pub up: bool,
    /// What it believes about every member it knows, itself included.
    pub view: BTreeMap<NodeId, MemberState>,
}

/// Every member's view at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// Global virtual time.
    pub at: Instant,
    /// One entry per member, running or not.
    pub nodes: Vec<NodeSnapshot>,
}

/// What a checker found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Global virtual time.
    pub at: Instant,
    /// What is wrong, in one sentence.
    pub message: String,
}

/// What a checker is told when a run starts.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// The run's seed.
    pub seed: u64,
    /// Its fault plan.
    pub plan: FaultPlan,
    /// Its members.
    pub members: Vec<NodeId>,
}

/// A property checked during and after a run. Every method has a default that does
/// nothing, so a checker implements only what it needs.
pub trait Checker {
    /// The property's name, like `at-most-one-leader-per-term`.
    fn name(&self) -> &'static str;

    /// The run starts; returns the global times at which the checker wants a snapshot.
    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        let _ = info;
        Vec::new()
    }

    /// A fault was applied.
    fn fault(&mut self, at: Instant, fault: &Fault, findings: &mut Vec<Finding>) {
        let _ = (at, fault, findings);
    }

    /// `node` emitted `event`.
    fn event(&mut self, at: Instant, node: NodeId, event: &Event, findings: &mut Vec<Finding>) {
        let _ = (at, node, event, findings);
    }

    /// A member's leader, term or lease changed, or it holds the lease.
    fn observe(&mut self, observation: &Observation, findings: &mut Vec<Finding>) {
        let _ = (observation, findings);
    }

    /// A snapshot at one of the times [`Checker::start`] asked for.
    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        let _ = (snapshot, findings);
    }

    /// The run ended here.
    fn finish(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        let _ = (snapshot, findings);
    }
}

/// A broken property, with everything needed to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property (the checker's name, or `no-panic`).
    pub checker: &'static str,
    /// The run's seed.
    pub seed: u64,
    /// Global virtual time.
    pub at: Instant,
    /// What is wrong.
    pub message: String,
    /// The run's fault plan, as JSON.
    pub plan: String,
    /// The one-line command that replays the run.
    pub replay: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at {} (seed {}): {}\n  plan: {}\n  replay: {}",
            self.checker, self.at, self.seed, self.message, self.plan, self.replay
        )
    }
}

/// Election safety: no two members lead the same term. Any member's belief counts: a
/// follower names the leader whose heartbeat it accepted.
#[derive(Debug, Default)]
pub struct OneLeaderPerTerm {
    leaders: BTreeMap<u64, (NodeId, NodeId, Instant)>,
}

impl Checker for OneLeaderPerTerm {
    fn name(&self) -> &'static str {
        "at-most-one-leader-per-term"
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
}

/// Lease exclusivity: at no moment do two members both hold the leader lease, as long
/// as both clocks stay within the drift bound the leases are built for (and never step).
///
/// The simulator re-reads every member that last said it holds the lease whenever another
/// one claims it, so "the latest observation of each member" is exact at every claim.
#[derive(Debug)]
pub struct LeaseExclusive {
    max_drift_ppm: f64,
    holders: BTreeMap<NodeId, Instant>,
}

impl LeaseExclusive {
    /// A checker for leases that tolerate clocks drifting up to `max_drift_ppm`.
    pub fn new(max_drift_ppm: f64) -> Self {
        Self { max_drift_ppm, holders: BTreeMap::new() }
    }
}

impl Checker for LeaseExclusive {
    fn name(&self) -> &'static str {
        "lease-exclusive"
    }

    fn observe(&mut self, o: &Observation, findings: &mut Vec<Finding>) {
        let in_bound = !o.clock_stepped && o.drift_ppm.abs() <= self.max_drift_ppm;
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
}

/// No failure verdict (`MemberFailed`) about a member that no fault ever touched, beyond
/// a budget of distinct false verdicts (a verdict counts once per member and incarnation,
/// however many observers reach it).
#[derive(Debug)]
pub struct NoFalseVerdicts {
    budget: usize,
    touched_all: bool,
    touched: BTreeSet<NodeId>,
    false_verdicts: BTreeSet<(NodeId, u64)>,
}

impl NoFalseVerdicts {
    /// A checker that tolerates `budget` distinct false verdicts.
    pub fn new(budget: usize) -> Self {
        Self { budget, touched_all: false, touched: BTreeSet::new(), false_verdicts: BTreeSet::new() }
    }

    /// The distinct false verdicts so far.
    pub fn false_verdicts(&self) -> usize {
        self.false_verdicts.len()
    }
}

impl Checker for NoFalseVerdicts {
    fn name(&self) -> &'static str {
        "no-false-failure-verdicts"
    }

    fn fault(&mut self, _at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        match fault.touched() {
            Touched::All => self.touched_all = true,
            Touched::Members(members) => self.touched.extend(members),
        }
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, findings: &mut Vec<Finding>) {
        let Event::MemberFailed(member) = event else { return };
        if self.touched_all || self.touched.contains(&member.id) {
            return;
        }
        if self.false_verdicts.insert((member.id, member.incarnation)) && self.false_verdicts.len() > self.budget {
            findings.push(Finding {
                at,
                message: format!(
                    "{node} declared {} failed (incarnation {}) though no fault touched it: {} false verdicts, budget {}",
                    member.id,
                    member.incarnation,
                    self.false_verdicts.len(),
                    self.budget
                ),
            });
        }
    }
}

/// Liveness: within `bound` after the plan's last step, every running member sees every
/// running member alive and no stopped member as live.
#[derive(Debug)]
pub struct Converges {
    bound: Duration,
    deadline: Option<Instant>,
    checked: bool,
}

impl Converges {
    /// A checker giving the cluster `bound` to converge after the last fault.
    pub fn new(bound: Duration) -> Self {
        Self { bound, deadline: None, checked: false }
    }

    /// Whether the run lasted long enough for the check to happen.
    pub fn checked(&self) -> bool {
        self.checked
    }

    /// The differences between the views in `snapshot` and the truth, at most `limit`.
    pub fn differences(snapshot: &ClusterSnapshot, limit: usize) -> Vec<String> {
        let up: BTreeSet<NodeId> = snapshot.nodes.iter().filter(|n| n.up).map(|n| n.id).collect();
        let mut out = Vec::new();
        let mut count = 0usize;
        for observer in snapshot.nodes.iter().filter(|n| n.up) {
            for other in &snapshot.nodes {
                let seen = observer.view.get(&other.id).copied();
                let wrong = if up.contains(&other.id) {
                    seen != Some(MemberState::Alive)
                } else {
                    seen.is_some_and(MemberState::is_live)
                };
                if wrong {
                    count += 1;
                    if out.len() < limit {
                        let truth = if other.up { "running" } else { "stopped" };
                        let seen = seen.map_or_else(|| "unknown".to_string(), |s| s.to_string());
                        out.push(format!("{} sees {} {} ({})", observer.id, other.id, seen, truth));
                    }
                }
            }
        }
        if count > out.len() {
            out.push(format!("... {} more", count - out.len()));
        }
        out
    }
}

impl Checker for Converges {
    fn name(&self) -> &'static str {
        "converges-after-heal"
    }

    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        let from = info.plan.last_at().unwrap_or(Instant::ZERO);
        let deadline = from + self.bound;
        self.deadline = Some(deadline);
        vec![deadline]
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        if Some(snapshot.at) != self.deadline {
            return;
        }
        self.checked = true;
        let diff = Self::differences(snapshot, 5);
        if !diff.is_empty() {
            findings.push(Finding {
                at: snapshot.at,
                message: format!("views not converged {:?} after the last fault: {}", self.bound, diff.join("; ")),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_core::Member;

    fn obs(at: u64, node: u64, term: u64, leader: Option<u64>, lease: bool) -> Observation {
        Observation {
            at: Instant::from_millis(at),
            node: NodeId(node),
            term,
            leader: leader.map(NodeId),
            leaseholder: lease,
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

    fn failed(id: u64, incarnation: u64) -> Event {
        Event::MemberFailed(Member {
            id: NodeId(id),
            addr: "127.0.0.1:1".parse().expect("a literal address"),
            incarnation,
            state: MemberState::Failed,
            tags: Default::default(),
        })
    }

    #[test]
    fn false_verdicts_count_against_the_budget() {
        let mut c = NoFalseVerdicts::new(1);
        let mut findings = Vec::new();
        let t = Instant::from_secs(1);
        c.fault(t, &Fault::Crash(NodeId(3)), &mut findings);
        c.event(t, NodeId(1), &failed(3, 0), &mut findings); // touched: fine
        c.event(t, NodeId(1), &failed(4, 0), &mut findings); // first false verdict: in budget
        c.event(t, NodeId(2), &failed(4, 0), &mut findings); // same verdict, another observer
        assert!(findings.is_empty());
        c.event(t, NodeId(2), &failed(5, 0), &mut findings); // second: over budget
        assert_eq!(findings.len(), 1);
        assert_eq!(c.false_verdicts(), 2);
    }

    /// A member's id, whether it runs, and its view.
    type View<'a> = (u64, bool, &'a [(u64, MemberState)]);

    fn snapshot(at: u64, nodes: &[View<'_>]) -> ClusterSnapshot {
        ClusterSnapshot {
            at: Instant::from_secs(at),
            nodes: nodes
                .iter()
                .map(|&(id, up, view)| NodeSnapshot {
                    id: NodeId(id),
                    up,
                    view: view.iter().map(|&(i, s)| (NodeId(i), s)).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn convergence_requires_every_live_view_to_match() {
        use MemberState::{Alive, Failed, Suspect};
        let plan = FaultPlan::new().at(Instant::from_secs(10), Fault::Crash(NodeId(3)));
        let info = RunInfo { seed: 1, plan, members: vec![NodeId(1), NodeId(2), NodeId(3)] };
        let mut c = Converges::new(Duration::from_secs(20));
        assert_eq!(c.start(&info), vec![Instant::from_secs(30)]);
        let good = snapshot(
            30,
            &[(1, true, &[(1, Alive), (2, Alive), (3, Failed)]), (2, true, &[(1, Alive), (2, Alive)]), (3, false, &[])],
        );
        let mut findings = Vec::new();
        c.snapshot(&good, &mut findings);
        assert!(findings.is_empty() && c.checked());
        let bad = snapshot(
            30,
            &[(1, true, &[(1, Alive), (2, Suspect), (3, Failed)]), (2, true, &[(1, Alive), (2, Alive), (3, Alive)])],
        );
        c.snapshot(&bad, &mut findings);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].message.contains("n1 sees n2 suspect"), "{}", findings[0].message);
    }
}
