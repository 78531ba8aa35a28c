//! [`Converges`]: every view right within a bound of the last fault.

use std::collections::BTreeSet;
use std::time::Duration;

use conclave_core::{Instant, MemberState, NodeId};

use super::{Checker, ClusterSnapshot, Finding, RunInfo};
use crate::fault::Fault;

/// Liveness: within `bound` after the last fault (the plan's last step, or a later fault
/// applied by hand), every running member sees every running member alive and no stopped
/// member as live.
///
/// It judges once, at that deadline; a run that ends before it could not judge.
#[derive(Debug)]
pub struct Converges {
    bound: Duration,
    deadline: Option<Instant>,
    checked: bool,
    ended: Option<Instant>,
}

impl Converges {
    /// The checker's name.
    pub const NAME: &'static str = "converges-after-heal";

    /// A checker giving the cluster `bound` to converge after the last fault.
    pub fn new(bound: Duration) -> Self {
        Self { bound, deadline: None, checked: false, ended: None }
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
        Self::NAME
    }

    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        let from = info.plan.last_at().unwrap_or(Instant::ZERO);
        let deadline = from + self.bound;
        self.deadline = Some(deadline);
        vec![deadline]
    }

    fn fault(&mut self, at: Instant, _fault: &Fault, _findings: &mut Vec<Finding>) {
        // A fault applied by hand ([`Sim::apply`](crate::Sim::apply)) after the plan's last
        // step moves the deadline too.
        if self.deadline.is_some_and(|d| at + self.bound > d) {
            self.deadline = Some(at + self.bound);
            self.checked = false;
        }
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        if self.checked || Some(snapshot.at) != self.deadline {
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

    fn finish(&mut self, snapshot: &ClusterSnapshot, _findings: &mut Vec<Finding>) {
        self.ended = Some(snapshot.at);
    }

    fn pending(&self) -> Option<Instant> {
        if self.checked {
            None
        } else {
            self.deadline
        }
    }

    fn not_judged(&self) -> Option<String> {
        if self.checked {
            return None;
        }
        let deadline = self.deadline.map_or_else(|| "never set".to_string(), |d| d.to_string());
        let ended = self.ended.map_or_else(|| "?".to_string(), |e| e.to_string());
        Some(format!(
            "the run ended at {ended}, before the deadline {deadline} ({:?} after the last fault); run it longer, or use Sim::run_until_judged",
            self.bound
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::NodeSnapshot;
    use crate::fault::FaultPlan;

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
                    term: 0,
                    leader: None,
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
        assert_eq!(c.pending(), Some(Instant::from_secs(30)));
        c.snapshot(&good, &mut findings);
        assert!(findings.is_empty() && c.checked());
        assert_eq!((c.pending(), c.not_judged()), (None, None));
        let mut c = Converges::new(Duration::from_secs(20));
        c.start(&info);
        let bad = snapshot(
            30,
            &[(1, true, &[(1, Alive), (2, Suspect), (3, Failed)]), (2, true, &[(1, Alive), (2, Alive), (3, Alive)])],
        );
        c.snapshot(&bad, &mut findings);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].message.contains("n1 sees n2 suspect"), "{}", findings[0].message);
    }

    #[test]
    fn a_fault_applied_after_the_plan_moves_the_convergence_deadline() {
        let plan = FaultPlan::new().at(Instant::from_secs(5), Fault::Heal);
        let info = RunInfo { seed: 1, plan, members: vec![NodeId(1)] };
        let mut c = Converges::new(Duration::from_secs(10));
        c.start(&info);
        c.fault(Instant::from_secs(5), &Fault::Heal, &mut Vec::new());
        assert_eq!(c.pending(), Some(Instant::from_secs(15)));
        c.fault(Instant::from_secs(40), &Fault::Crash(NodeId(2)), &mut Vec::new());
        assert_eq!(c.pending(), Some(Instant::from_secs(50)));
        let quiet = snapshot(15, &[(1, true, &[(1, MemberState::Alive)])]);
        c.snapshot(&quiet, &mut Vec::new());
        assert!(!c.checked(), "15 s is no longer the deadline");
    }

    #[test]
    fn convergence_cannot_judge_a_run_that_ends_before_its_deadline() {
        let plan = FaultPlan::new().at(Instant::from_secs(25), Fault::Heal);
        let info = RunInfo { seed: 1, plan, members: vec![NodeId(1)] };
        let mut c = Converges::new(Duration::from_secs(67));
        c.start(&info);
        c.finish(&snapshot(60, &[(1, true, &[(1, MemberState::Alive)])]), &mut Vec::new());
        let why = c.not_judged().expect("60 s < 92 s");
        assert!(why.contains("ended at 60") && why.contains("92"), "{why}");
    }
}
