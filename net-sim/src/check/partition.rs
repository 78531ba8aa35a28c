//! [`MinorityReadOnly`]: the side of a partition that stops takes no writes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conclave_core::{Event, Instant, NodeId, Side};

use super::{Checker, ClusterSnapshot, Finding};
use crate::fault::Fault;

/// A member that decides it is on the side of a partition that stops
/// (`PartitionDetected { local_side: Minority }`) is read-only (`QuorumLost`, and no
/// `QuorumRegained` since) within `bound` of the decision, and stays read-only while that
/// decision is in force: until it says the partition healed (`PartitionHealed`) or decides
/// again that its side runs. A crash or restart ends the decision (a new process decides
/// afresh); a paused or slowed member is judged once it runs again.
///
/// A run in which no member decided it is on the stopping side could not be judged.
#[derive(Debug)]
pub struct MinorityReadOnly {
    bound: Duration,
    /// Members whose decision in force puts them on the stopping side: since when.
    minority: BTreeMap<NodeId, Instant>,
    read_only: BTreeSet<NodeId>,
    /// Decisions to judge: (deadline, member, decided at).
    pending: BTreeSet<(Instant, NodeId, Instant)>,
    held_back: BTreeMap<NodeId, Instant>,
    decisions: usize,
}

impl MinorityReadOnly {
    /// The checker's name.
    pub const NAME: &'static str = "minority-read-only-within-bound";

    /// A checker giving a member that decided it stops `bound` to go read-only.
    pub fn new(bound: Duration) -> Self {
        Self {
            bound,
            minority: BTreeMap::new(),
            read_only: BTreeSet::new(),
            pending: BTreeSet::new(),
            held_back: BTreeMap::new(),
            decisions: 0,
        }
    }

    /// The default bound: the core goes read-only as it decides, so one probe interval
    /// (a timer's slack) is generous.
    pub fn bound(config: &conclave_core::Config) -> Duration {
        config.probe_interval
    }
}

impl Checker for MinorityReadOnly {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        match fault {
            Fault::Crash(node) | Fault::Restart { node, .. } => {
                self.minority.remove(node);
                self.read_only.remove(node);
                self.pending.retain(|&(_, m, _)| m != *node);
            }
            Fault::Pause { node, duration } => {
                let e = self.held_back.entry(*node).or_insert(at);
                *e = (*e).max(at + *duration);
            }
            Fault::Slow { node, per_message } if !per_message.is_zero() => {
                self.held_back.insert(*node, Instant::from_nanos(u64::MAX));
            }
            _ => {}
        }
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, findings: &mut Vec<Finding>) {
        match event {
            Event::PartitionDetected { local_side: Side::Minority, .. } => {
                self.decisions += 1;
                self.minority.entry(node).or_insert(at);
                let start = self.held_back.get(&node).map_or(at, |&h| h.max(at));
                self.pending.insert((start.saturating_add(self.bound), node, at));
            }
            Event::PartitionDetected { .. } | Event::PartitionHealed => {
                self.minority.remove(&node);
                self.pending.retain(|&(_, m, _)| m != node);
            }
            Event::QuorumLost => {
                self.read_only.insert(node);
            }
            Event::QuorumRegained => {
                self.read_only.remove(&node);
                if let Some(&since) = self.minority.get(&node) {
                    findings.push(Finding {
                        at,
                        message: format!(
                            "{node} went read-write again while its decision since {since} put it on the side that stops (no heal, no new decision)"
                        ),
                    });
                }
            }
            _ => {}
        }
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        while let Some(&(deadline, node, decided)) = self.pending.first() {
            if deadline > snapshot.at {
                break;
            }
            self.pending.pop_first();
            let up = snapshot.nodes.iter().any(|n| n.id == node && n.up);
            if up && self.minority.contains_key(&node) && !self.read_only.contains(&node) {
                findings.push(Finding {
                    at: deadline,
                    message: format!(
                        "{node} decided at {decided} that its side stops, but {:?} later it still takes writes (no QuorumLost)",
                        deadline - decided
                    ),
                });
            }
        }
    }

    fn pending(&self) -> Option<Instant> {
        self.pending.first().map(|&(deadline, _, _)| deadline)
    }

    fn not_judged(&self) -> Option<String> {
        (self.decisions == 0).then(|| "no member decided it is on the side of a partition that stops".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::NodeSnapshot;

    fn minority() -> Event {
        Event::PartitionDetected {
            majority: vec![NodeId(1), NodeId(2)],
            minority: vec![NodeId(3)],
            local_side: Side::Minority,
        }
    }

    fn snapshot(at: Instant) -> ClusterSnapshot {
        ClusterSnapshot {
            at,
            nodes: (1..=3)
                .map(|id| NodeSnapshot { id: NodeId(id), up: true, view: BTreeMap::new(), term: 0, leader: None })
                .collect(),
        }
    }

    #[test]
    fn a_minority_left_read_write_is_caught() {
        let ms = Instant::from_millis;
        let run = |events: &[(u64, Event)]| {
            let mut c = MinorityReadOnly::new(Duration::from_millis(250));
            let mut f = Vec::new();
            for (at, e) in events {
                c.event(ms(*at), NodeId(3), e, &mut f);
            }
            if let Some(due) = c.pending() {
                assert_eq!(due, ms(1250));
                c.snapshot(&snapshot(due), &mut f);
            }
            (c, f)
        };
        let (c, f) = run(&[(1000, minority()), (1000, Event::QuorumLost)]);
        assert!(f.is_empty() && c.not_judged().is_none(), "{f:?}");
        let (_, f) = run(&[(1000, minority())]);
        assert_eq!(f.len(), 1, "never read-only");
        assert!(f[0].message.contains("still takes writes"), "{}", f[0].message);
        let (_, f) = run(&[(1000, minority()), (1000, Event::QuorumLost), (1100, Event::QuorumRegained)]);
        assert_eq!(f.len(), 2, "read-write again while the decision stands: {f:?}");
        let (_, f) = run(&[
            (1000, minority()),
            (1000, Event::QuorumLost),
            (1100, Event::PartitionHealed),
            (1100, Event::QuorumRegained),
        ]);
        assert!(f.is_empty(), "healed first: {f:?}");
        let (c, _) = run(&[]);
        assert!(c.not_judged().is_some());
    }
}
