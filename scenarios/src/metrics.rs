//! The figures of one run: how fast crashes were detected, leaders replaced, partitions
//! decided and healed; how many verdicts were false; what the members sent.
//!
//! Read from the fault plan, the members' events and their own counters after the run,
//! never from a clock: the same seed gives the same figures.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conclave_core::{Event, Instant, Node, NodeId};
use conclave_sim::{Fault, FaultPlan, NoFalseVerdicts, Report};
use serde::{Deserialize, Serialize};

/// What the members sent, summed over every process of every member (a process's counters
/// are read just before a crash or restart stops it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Traffic {
    /// Adds what `node` sent, if its process runs.
    pub fn add(&mut self, node: Option<&Node>) {
        if let Some(node) = node {
            let stats = node.stats();
            self.messages += stats.sent.total();
            self.bytes += stats.bytes_sent;
        }
    }
}

/// One run's figures. Durations are in milliseconds of virtual time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Per crash that stayed down until every member running throughout had declared it
    /// failed: from the crash to the last of those verdicts.
    pub detection_ms: Vec<u64>,
    /// Per crash of the member that led: from the crash to the first election in a later
    /// term.
    pub election_ms: Vec<u64>,
    /// Per partition every running member decided: from the split to the last decision.
    pub partition_ms: Vec<u64>,
    /// Per heal of a decided partition: from the heal until every member that decided
    /// said it healed.
    pub heal_ms: Vec<u64>,
    /// Violations of the no-false-verdict check.
    pub false_verdicts: u64,
    /// Datagrams the members sent.
    pub messages: u64,
    /// Bytes the members sent.
    pub bytes: u64,
    /// Members times virtual seconds of the run.
    pub member_seconds: f64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Metrics {
    /// The figures of a run of `plan` on `members` members.
    pub fn of(plan: &FaultPlan, report: &Report, traffic: Traffic, members: usize) -> Self {
        let events: Vec<(Instant, NodeId, &Event)> = report.events().collect();
        let mut steps: Vec<(Instant, &Fault)> = plan.steps.iter().map(|s| (s.at, &s.fault)).collect();
        steps.sort_by_key(|(at, _)| *at);
        let (partition_ms, heal_ms) = partitions(&steps, &events, members);
        Self {
            detection_ms: detections(&steps, &events, members),
            election_ms: elections(&steps, &events),
            partition_ms,
            heal_ms,
            false_verdicts: report.violations.iter().filter(|v| v.checker == NoFalseVerdicts::NAME).count() as u64,
            messages: traffic.messages,
            bytes: traffic.bytes,
            member_seconds: members as f64 * report.end.since_epoch().as_secs_f64(),
        }
    }

    /// Datagrams per member-second.
    pub fn messages_per_member_second(&self) -> f64 {
        if self.member_seconds > 0.0 {
            self.messages as f64 / self.member_seconds
        } else {
            0.0
        }
    }

    /// Bytes per member-second.
    pub fn bytes_per_member_second(&self) -> f64 {
        if self.member_seconds > 0.0 {
            self.bytes as f64 / self.member_seconds
        } else {
            0.0
        }
    }
}

/// Each member's process starts and stops, as the plan's steps make them.
fn lives(steps: &[(Instant, &Fault)], members: usize) -> BTreeMap<NodeId, Vec<(Instant, Option<Instant>)>> {
    let mut lives: BTreeMap<NodeId, Vec<(Instant, Option<Instant>)>> =
        (0..members).map(|i| (conclave_sim::sim_id(i), vec![(Instant::ZERO, None)])).collect();
    for &(at, fault) in steps {
        match fault {
            Fault::Crash(node) => {
                if let Some(life) = lives.get_mut(node).and_then(|l| l.last_mut()).filter(|l| l.1.is_none()) {
                    life.1 = Some(at);
                }
            }
            Fault::Restart { node, .. } => {
                if let Some(l) = lives.get_mut(node) {
                    if let Some(last) = l.last_mut().filter(|l| l.1.is_none()) {
                        last.1 = Some(at);
                    }
                    l.push((at, None));
                }
            }
            _ => {}
        }
    }
    lives
}

/// Whether `node` ran without a break from `from` to `to`.
fn ran(lives: &BTreeMap<NodeId, Vec<(Instant, Option<Instant>)>>, node: NodeId, from: Instant, to: Instant) -> bool {
    lives.get(&node).is_some_and(|l| l.iter().any(|&(start, end)| start <= from && end.is_none_or(|e| e > to)))
}

fn detections(steps: &[(Instant, &Fault)], events: &[(Instant, NodeId, &Event)], members: usize) -> Vec<u64> {
    let lives = lives(steps, members);
    let mut out = Vec::new();
    for &(at, fault) in steps {
        let Fault::Crash(crashed) = *fault else { continue };
        let back = lives.get(&crashed).and_then(|l| l.iter().map(|&(start, _)| start).find(|&s| s > at));
        let mut verdicts: BTreeMap<NodeId, Instant> = BTreeMap::new();
        for &(when, node, event) in events {
            if let Event::MemberFailed(m) = event {
                if m.id == crashed && when >= at && back.is_none_or(|b| when < b) {
                    verdicts.entry(node).or_insert(when);
                }
            }
        }
        let Some(&last) = verdicts.values().max() else { continue };
        let observers: Vec<NodeId> =
            lives.keys().copied().filter(|&m| m != crashed && ran(&lives, m, at, last)).collect();
        if !observers.is_empty() && observers.iter().all(|m| verdicts.contains_key(m)) {
            let done = observers.iter().filter_map(|m| verdicts.get(m)).max().copied().unwrap_or(last);
            out.push(ms(done - at));
        }
    }
    out
}

fn elections(steps: &[(Instant, &Fault)], events: &[(Instant, NodeId, &Event)]) -> Vec<u64> {
    let mut out = Vec::new();
    for &(at, fault) in steps {
        let Fault::Crash(crashed) = *fault else { continue };
        // The leader then: of the highest term named before the crash.
        let leader = events
            .iter()
            .take_while(|(when, _, _)| *when < at)
            .filter_map(|(_, _, e)| match e {
                Event::LeaderElected { term, leader } => Some((*term, *leader)),
                _ => None,
            })
            .max();
        let Some((term, leader)) = leader.filter(|&(_, l)| l == crashed) else { continue };
        let next = events.iter().find_map(|(when, _, e)| match e {
            Event::LeaderElected { term: t, leader: l } if *when >= at && *t > term && *l != leader => Some(*when),
            _ => None,
        });
        if let Some(when) = next {
            out.push(ms(when - at));
        }
    }
    out
}

/// Split-to-decided and heal-to-healed times of each partition.
fn partitions(
    steps: &[(Instant, &Fault)],
    events: &[(Instant, NodeId, &Event)],
    members: usize,
) -> (Vec<u64>, Vec<u64>) {
    let lives = lives(steps, members);
    let (mut decided_ms, mut healed_ms) = (Vec::new(), Vec::new());
    for (i, &(split, fault)) in steps.iter().enumerate() {
        let Fault::Partition(groups) = fault else { continue };
        if groups.iter().all(Vec::is_empty) {
            continue;
        }
        // It lasts until the next heal or partition.
        let end = steps[i + 1..]
            .iter()
            .find(|(_, f)| matches!(f, Fault::Heal | Fault::Partition(_)))
            .map(|&(at, f)| (at, matches!(f, Fault::Heal)));
        let until = end.map(|(at, _)| at);
        let mut decided: BTreeMap<NodeId, Instant> = BTreeMap::new();
        for &(when, node, event) in events {
            if when >= split && until.is_none_or(|u| when < u) && matches!(event, Event::PartitionDetected { .. }) {
                decided.entry(node).or_insert(when);
            }
        }
        let Some(&last) = decided.values().max() else { continue };
        let running: Vec<NodeId> = lives.keys().copied().filter(|&m| ran(&lives, m, split, last)).collect();
        if !running.is_empty() && running.iter().all(|m| decided.contains_key(m)) {
            decided_ms.push(ms(last - split));
        }
        let Some((heal, true)) = end else { continue };
        let deciders: BTreeSet<NodeId> = decided.keys().copied().collect();
        let mut healed: BTreeMap<NodeId, Instant> = BTreeMap::new();
        for &(when, node, event) in events {
            if when >= heal && deciders.contains(&node) && *event == Event::PartitionHealed {
                healed.entry(node).or_insert(when);
            }
        }
        let still: Vec<NodeId> = deciders
            .iter()
            .copied()
            .filter(|&m| lives.get(&m).is_some_and(|l| l.last().is_some_and(|l| l.1.is_none())))
            .collect();
        if !still.is_empty() && still.iter().all(|m| healed.contains_key(m)) {
            if let Some(&done) = still.iter().filter_map(|m| healed.get(m)).max() {
                healed_ms.push(ms(done - heal));
            }
        }
    }
    (decided_ms, healed_ms)
}
