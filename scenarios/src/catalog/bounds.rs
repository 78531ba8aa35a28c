//! The scenarios' own bounds, as checkers: what a scenario promises beyond the standard
//! checkers (detection within so many seconds, one stable leader under partial
//! connectivity, a partition decided on its whole picture ...).
//!
//! Each reads only what the simulator shows every checker (faults as applied, events,
//! snapshots at the times it asks for), never the plan it was written for: a shrunk plan,
//! a plan file or a plan with more members is judged by the same rules. Each says when it
//! could not judge (the fault it watches never happened, or its deadline lay past the
//! run's end), and the run then fails unless the scenario opted out of it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conclave_core::{Event, Instant, MemberState, NodeId, Side};
use conclave_sim::{Checker, ClusterSnapshot, Converges, Fault, Finding, RunInfo};

/// Members as `n1 n2 n3`.
fn ids(members: &[NodeId]) -> String {
    members.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

/// When each member's process last started, and who is down, as the faults tell it.
#[derive(Debug, Default)]
struct Liveness {
    up_since: BTreeMap<NodeId, Instant>,
}

impl Liveness {
    fn start(&mut self, info: &RunInfo) {
        self.up_since = info.members.iter().map(|&m| (m, Instant::ZERO)).collect();
    }

    fn fault(&mut self, at: Instant, fault: &Fault) {
        match fault {
            Fault::Crash(node) => {
                self.up_since.remove(node);
            }
            Fault::Restart { node, .. } => {
                self.up_since.insert(*node, at);
            }
            _ => {}
        }
    }

    /// Whether `node` has run without a restart since `at` or before.
    fn up_since(&self, node: NodeId, at: Instant) -> bool {
        self.up_since.get(&node).is_some_and(|&since| since <= at)
    }

    fn is_up(&self, node: NodeId) -> bool {
        self.up_since.contains_key(&node)
    }
}

/// Deadlines a checker owes a judgement at, with what it judges then.
#[derive(Debug)]
struct Deadlines<T>(Vec<(Instant, T)>);

impl<T> Default for Deadlines<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Deadlines<T> {
    fn add(&mut self, at: Instant, what: T) {
        self.0.push((at, what));
    }

    fn earliest(&self) -> Option<Instant> {
        self.0.iter().map(|(at, _)| *at).min()
    }

    /// Takes every entry due at or before `now`.
    fn due(&mut self, now: Instant) -> Vec<(Instant, T)> {
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.0).into_iter().partition(|(at, _)| *at <= now);
        self.0 = rest;
        due
    }
}

/// Why a checker that owes judgements could not make them all.
fn unfinished<T>(deadlines: &Deadlines<T>, ended: Option<Instant>) -> Option<String> {
    let first = deadlines.earliest()?;
    let ended = ended.map_or_else(|| "?".to_string(), |e| e.to_string());
    Some(format!("the run ended at {ended}, before the judgement due at {first}"))
}

/// Every crash is detected: within `within` of a member's crash, every member that ran
/// all along has declared it failed (unless it was restarted first).
#[derive(Debug)]
pub struct DetectsCrashes {
    within: Duration,
    life: Liveness,
    /// Crashes still to judge: (crashed member, when).
    pending: Deadlines<(NodeId, Instant)>,
    /// Who declared whom failed, first, and when.
    verdicts: BTreeMap<(NodeId, NodeId), Instant>,
    judged: usize,
    ended: Option<Instant>,
}

impl DetectsCrashes {
    /// The checker's name.
    pub const NAME: &'static str = "crash-detected-within-bound";

    /// Every crash detected by every running member within `within`.
    pub fn new(within: Duration) -> Self {
        Self {
            within,
            life: Liveness::default(),
            pending: Deadlines::default(),
            verdicts: BTreeMap::new(),
            judged: 0,
            ended: None,
        }
    }
}

impl Checker for DetectsCrashes {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        self.life.start(info);
        Vec::new()
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        match fault {
            Fault::Crash(node) if self.life.is_up(*node) => {
                self.verdicts.retain(|(_, subject), _| subject != node);
                self.pending.add(at + self.within, (*node, at));
            }
            // Back before its deadline: that crash cannot be judged, and needs no judgement.
            Fault::Restart { node, .. } => self.pending.0.retain(|(_, (crashed, _))| crashed != node),
            _ => {}
        }
        self.life.fault(at, fault);
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, _findings: &mut Vec<Finding>) {
        if let Event::MemberFailed(m) = event {
            self.verdicts.entry((node, m.id)).or_insert(at);
        }
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        for (deadline, (crashed, at)) in self.pending.due(snapshot.at) {
            self.judged += 1;
            let missing: Vec<String> = snapshot
                .nodes
                .iter()
                .filter(|n| n.up && n.id != crashed && self.life.up_since(n.id, at))
                .filter(|n| !self.verdicts.contains_key(&(n.id, crashed)))
                .map(|n| n.id.to_string())
                .collect();
            if !missing.is_empty() {
                findings.push(Finding {
                    at: deadline,
                    message: format!(
                        "{crashed} crashed at {at}; {:?} later {} had not declared it failed: {}",
                        self.within,
                        if missing.len() == 1 { "one member" } else { "these members" },
                        missing.join(", ")
                    ),
                });
            }
        }
    }

    fn finish(&mut self, snapshot: &ClusterSnapshot, _findings: &mut Vec<Finding>) {
        self.ended = Some(snapshot.at);
    }

    fn pending(&self) -> Option<Instant> {
        self.pending.earliest()
    }

    fn not_judged(&self) -> Option<String> {
        unfinished(&self.pending, self.ended)
            .or_else(|| (self.judged == 0).then(|| "no member stayed down long enough to judge".to_string()))
    }
}

/// A crashed leader is replaced: within `within` of the crash of the member that leads,
/// some member is elected in a later term.
#[derive(Debug)]
pub struct ReplacesCrashedLeader {
    within: Duration,
    /// The leader of the highest term any member named.
    leader: Option<(u64, NodeId)>,
    /// Crashed leaders still to judge: (their term, when they crashed).
    pending: Deadlines<(u64, Instant)>,
    /// When each term's leader was first named.
    elected: BTreeMap<u64, Instant>,
    judged: usize,
    ended: Option<Instant>,
}

impl ReplacesCrashedLeader {
    /// The checker's name.
    pub const NAME: &'static str = "crashed-leader-replaced-within-bound";

    /// A new leader within `within` of the leader's crash.
    pub fn new(within: Duration) -> Self {
        Self { within, leader: None, pending: Deadlines::default(), elected: BTreeMap::new(), judged: 0, ended: None }
    }
}

impl Checker for ReplacesCrashedLeader {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        if let (Fault::Crash(node), Some((term, leader))) = (fault, self.leader) {
            if *node == leader && !self.pending.0.iter().any(|(_, (t, _))| *t == term) {
                self.pending.add(at + self.within, (term, at));
            }
        }
    }

    fn event(&mut self, at: Instant, _node: NodeId, event: &Event, _findings: &mut Vec<Finding>) {
        if let Event::LeaderElected { term, leader } = *event {
            self.elected.entry(term).or_insert(at);
            if self.leader.is_none_or(|(t, _)| term > t) {
                self.leader = Some((term, leader));
            }
        }
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        for (deadline, (term, at)) in self.pending.due(snapshot.at) {
            self.judged += 1;
            let next = self.elected.range(term + 1..).map(|(_, &when)| when).filter(|&when| when >= at).min();
            if next.is_none_or(|when| when > deadline) {
                findings.push(Finding {
                    at: deadline,
                    message: format!(
                        "the leader of term {term} crashed at {at}; {:?} later no member was elected in a later term",
                        self.within
                    ),
                });
            }
        }
    }

    fn finish(&mut self, snapshot: &ClusterSnapshot, _findings: &mut Vec<Finding>) {
        self.ended = Some(snapshot.at);
    }

    fn pending(&self) -> Option<Instant> {
        self.pending.earliest()
    }

    fn not_judged(&self) -> Option<String> {
        unfinished(&self.pending, self.ended).or_else(|| {
            (self.judged == 0).then(|| "no member crashed while it led (no leader, or it was not crashed)".to_string())
        })
    }
}

/// One partition: its sides, when it began, and what each member decided since.
#[derive(Debug)]
struct Split {
    at: Instant,
    /// Each member's side (0: the members no group names).
    sides: BTreeMap<NodeId, usize>,
    /// Each member's first decision since the split: (when, majority, minority, its side).
    decided: BTreeMap<NodeId, (Instant, Vec<NodeId>, Vec<NodeId>, Side)>,
    quorum_lost: BTreeSet<NodeId>,
    healed: Option<Instant>,
    /// Members that said the partition healed, after the heal.
    said_healed: BTreeSet<NodeId>,
    quorum_regained: BTreeSet<NodeId>,
}

/// What [`DecidesPartitions`] judges at a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The decisions; `complete` when the bound has run out (a heal before it only asks
    /// that the decisions made agree).
    Decide {
        complete: bool,
    },
    Heal,
}

/// A two-sided partition is decided and healed within bounds: within `decide_within` of
/// the split every running member has decided (if it lasts that long), all name the
/// same sides, each side lies within one side of the cut, and the members of the side
/// that stops went read-only (`QuorumLost`) and hold no leader lease; within `heal_within` of the heal every member
/// that decided says it healed, and those that went read-only regained quorum. With
/// `whole_picture`, each member's first decision must name the cut exactly (every
/// expected member on its side), never the few members its side found first.
///
/// The expected members are the voters, or every member when none votes.
#[derive(Debug)]
pub struct DecidesPartitions {
    decide_within: Duration,
    heal_within: Duration,
    whole_picture: bool,
    expected: Vec<NodeId>,
    life: Liveness,
    /// Who holds the leader lease, as last observed.
    leases: BTreeSet<NodeId>,
    split: Option<Split>,
    pending: Deadlines<Phase>,
    judged: usize,
    ended: Option<Instant>,
}

impl DecidesPartitions {
    /// The checker's name.
    pub const NAME: &'static str = "partition-decided-and-healed-within-bounds";

    /// A checker with these bounds; `voters` are the expected members (empty: everyone).
    pub fn new(decide_within: Duration, heal_within: Duration, whole_picture: bool, voters: Vec<NodeId>) -> Self {
        Self {
            decide_within,
            heal_within,
            whole_picture,
            expected: voters,
            life: Liveness::default(),
            leases: BTreeSet::new(),
            split: None,
            pending: Deadlines::default(),
            judged: 0,
            ended: None,
        }
    }

    fn judge_decisions(&self, split: &Split, deadline: Instant, up: &[NodeId], findings: &mut Vec<Finding>) {
        let mut problems = Vec::new();
        let undecided: Vec<String> =
            up.iter().filter(|m| !split.decided.contains_key(m)).map(ToString::to_string).collect();
        if !undecided.is_empty() {
            problems.push(format!("undecided: {}", undecided.join(", ")));
        }
        let side_of = |m: &NodeId| split.sides.get(m).copied().unwrap_or(0);
        let one_side = |set: &[NodeId]| set.iter().map(side_of).collect::<BTreeSet<_>>().len() <= 1;
        let mut majorities = BTreeSet::new();
        for (member, (_, majority, minority, side)) in &split.decided {
            majorities.insert(majority.clone());
            if !one_side(majority) || !one_side(minority) {
                problems.push(format!(
                    "{member} decided on sides that cross the cut: keeps [{}], stops [{}]",
                    ids(majority),
                    ids(minority)
                ));
            }
            if self.whole_picture {
                let kept: BTreeSet<NodeId> = majority.iter().copied().collect();
                let stopped: BTreeSet<NodeId> = minority.iter().copied().collect();
                let kept_side = majority.first().map_or(0, side_of);
                let (a, b): (BTreeSet<NodeId>, BTreeSet<NodeId>) =
                    self.expected.iter().copied().partition(|m| side_of(m) == kept_side);
                if kept != a || stopped != b {
                    problems.push(format!(
                        "{member} decided on part of the picture: keeps {} members, stops {}",
                        majority.len(),
                        minority.len()
                    ));
                }
            }
            if *side == Side::Minority && !split.quorum_lost.contains(member) {
                problems.push(format!("{member} is on the side that stops but did not go read-only"));
            }
            if *side == Side::Minority && self.leases.contains(member) {
                problems.push(format!("{member} is on the side that stops but holds the leader lease"));
            }
        }
        if majorities.len() > 1 {
            let named: Vec<String> = majorities.iter().map(|m| format!("[{}]", ids(m))).collect();
            problems.push(format!("members disagree on the side that keeps running: {}", named.join(" or ")));
        }
        if !problems.is_empty() {
            let shown: Vec<String> = problems.iter().take(4).cloned().collect();
            let more = problems.len().saturating_sub(shown.len());
            let more = if more > 0 { format!("; and {more} more") } else { String::new() };
            findings.push(Finding {
                at: deadline,
                message: format!("the partition of {}: {}{more}", split.at, shown.join("; ")),
            });
        }
    }
}

impl Checker for DecidesPartitions {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        self.life.start(info);
        if self.expected.is_empty() {
            self.expected.clone_from(&info.members);
        }
        self.expected.sort();
        Vec::new()
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        self.life.fault(at, fault);
        if let Fault::Crash(node) | Fault::Restart { node, .. } = fault {
            self.leases.remove(node);
        }
        match fault {
            Fault::Partition(groups) => {
                let sides: BTreeMap<NodeId, usize> =
                    groups.iter().enumerate().flat_map(|(g, m)| m.iter().map(move |&n| (n, g + 1))).collect();
                let count = self.expected.iter().map(|m| sides.get(m).copied().unwrap_or(0)).collect::<BTreeSet<_>>();
                // Only two-sided cuts are judged; a new partition replaces the one before.
                self.pending.0.clear();
                self.split = (count.len() == 2).then(|| Split {
                    at,
                    sides,
                    decided: BTreeMap::new(),
                    quorum_lost: BTreeSet::new(),
                    healed: None,
                    said_healed: BTreeSet::new(),
                    quorum_regained: BTreeSet::new(),
                });
                if self.split.is_some() {
                    self.pending.add(at + self.decide_within, Phase::Decide { complete: true });
                }
            }
            Fault::Heal => {
                if let Some(split) = self.split.as_mut().filter(|s| s.healed.is_none()) {
                    split.healed = Some(at);
                    // Decisions are judged at the heal at the latest; before their bound ran
                    // out, a member may not have decided yet.
                    for (deadline, phase) in &mut self.pending.0 {
                        if matches!(phase, Phase::Decide { .. }) && *deadline > at {
                            *deadline = at;
                            *phase = Phase::Decide { complete: false };
                        }
                    }
                    self.pending.add(at + self.heal_within, Phase::Heal);
                }
            }
            _ => {}
        }
    }

    fn observe(&mut self, observation: &conclave_sim::Observation, _findings: &mut Vec<Finding>) {
        if observation.leaseholder {
            self.leases.insert(observation.node);
        } else {
            self.leases.remove(&observation.node);
        }
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, _findings: &mut Vec<Finding>) {
        let Some(split) = self.split.as_mut() else { return };
        match event {
            Event::PartitionDetected { majority, minority, local_side } if split.healed.is_none() => {
                split.decided.entry(node).or_insert((at, majority.clone(), minority.clone(), *local_side));
            }
            Event::QuorumLost if split.healed.is_none() => {
                split.quorum_lost.insert(node);
            }
            Event::PartitionHealed if split.healed.is_some() => {
                split.said_healed.insert(node);
            }
            Event::QuorumRegained if split.healed.is_some() => {
                split.quorum_regained.insert(node);
            }
            _ => {}
        }
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        let due = self.pending.due(snapshot.at);
        let Some(split) = self.split.as_ref() else { return };
        let up: Vec<NodeId> =
            snapshot.nodes.iter().filter(|n| n.up && self.life.up_since(n.id, split.at)).map(|n| n.id).collect();
        for (deadline, phase) in due {
            self.judged += 1;
            match phase {
                Phase::Decide { complete } => {
                    let must_decide: &[NodeId] = if complete { &up } else { &[] };
                    self.judge_decisions(split, deadline, must_decide, findings);
                }
                Phase::Heal => {
                    let silent: Vec<String> = split
                        .decided
                        .keys()
                        .filter(|m| up.contains(m) && !split.said_healed.contains(m))
                        .map(ToString::to_string)
                        .collect();
                    let read_only: Vec<String> = split
                        .quorum_lost
                        .iter()
                        .filter(|m| up.contains(m) && !split.quorum_regained.contains(m))
                        .map(ToString::to_string)
                        .collect();
                    if !silent.is_empty() || !read_only.is_empty() {
                        findings.push(Finding {
                            at: deadline,
                            message: format!(
                                "{:?} after the heal at {}: not healed: [{}]; still read-only: [{}]",
                                self.heal_within,
                                split.healed.unwrap_or(deadline),
                                silent.join(", "),
                                read_only.join(", ")
                            ),
                        });
                    }
                }
            }
        }
    }

    fn finish(&mut self, snapshot: &ClusterSnapshot, _findings: &mut Vec<Finding>) {
        self.ended = Some(snapshot.at);
    }

    fn pending(&self) -> Option<Instant> {
        self.pending.earliest()
    }

    fn not_judged(&self) -> Option<String> {
        unfinished(&self.pending, self.ended)
            .or_else(|| (self.judged == 0).then(|| "no two-sided partition to judge".to_string()))
    }
}

/// Never two sides running: no member keeps running (decides it is on the side that
/// keeps running) while counting on the stopped side a member that itself keeps running.
/// A member's decision stands until it decides again, says the partition healed, loses
/// quorum, crashes or restarts. Without any decision there is nothing to contradict, and
/// the check holds.
#[derive(Debug, Default)]
pub struct OneSideRuns {
    /// Members that keep running: since when, and whom they count on the stopped side.
    running: BTreeMap<NodeId, (Instant, BTreeSet<NodeId>)>,
}

impl OneSideRuns {
    /// The checker's name.
    pub const NAME: &'static str = "one-side-keeps-running";
}

impl Checker for OneSideRuns {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn fault(&mut self, _at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        if let Fault::Crash(node) | Fault::Restart { node, .. } = fault {
            self.running.remove(node);
        }
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, findings: &mut Vec<Finding>) {
        match event {
            Event::PartitionDetected { minority, local_side: Side::Majority, .. } => {
                let stopped: BTreeSet<NodeId> = minority.iter().copied().collect();
                let mut clashes: Vec<String> = Vec::new();
                for (other, (since, theirs)) in &self.running {
                    if *other == node {
                        continue;
                    }
                    if stopped.contains(other) {
                        clashes.push(format!("it counts {other} stopped, which keeps running since {since}"));
                    } else if theirs.contains(&node) {
                        clashes.push(format!("{other}, running since {since}, counts it stopped"));
                    }
                }
                if !clashes.is_empty() {
                    let more = clashes.len().saturating_sub(3);
                    clashes.truncate(3);
                    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                    findings.push(Finding {
                        at,
                        message: format!(
                            "two sides keep running: {node} decided it keeps running, but {}{more}",
                            clashes.join("; ")
                        ),
                    });
                }
                self.running.insert(node, (at, stopped));
            }
            Event::PartitionDetected { .. } | Event::PartitionHealed | Event::QuorumLost => {
                self.running.remove(&node);
            }
            _ => {}
        }
    }
}

/// One stable leader under partial connectivity: once `settle` has passed after links are
/// cut, the running members that still reach a majority of the cluster (themselves
/// included) name the same leader, one of them, and no member is elected again until the
/// heal.
#[derive(Debug)]
pub struct StableLeaderUnderCuts {
    settle: Duration,
    /// The current cut: when, and how many links each member lost.
    cut: Option<(Instant, BTreeMap<NodeId, usize>)>,
    pending: Deadlines<()>,
    /// Elections in the stable window of the current cut.
    elections: Vec<(Instant, NodeId, u64, NodeId)>,
    judged: usize,
    ended: Option<Instant>,
}

impl StableLeaderUnderCuts {
    /// The checker's name.
    pub const NAME: &'static str = "leader-stable-under-partial-connectivity";

    /// A checker giving the election `settle` after each cut.
    pub fn new(settle: Duration) -> Self {
        Self { settle, cut: None, pending: Deadlines::default(), elections: Vec::new(), judged: 0, ended: None }
    }

    fn close(&mut self, at: Instant, findings: &mut Vec<Finding>) {
        let Some((cut_at, _)) = self.cut.take() else { return };
        if at < cut_at + self.settle {
            self.pending.0.clear();
            return;
        }
        if !self.elections.is_empty() {
            let shown: Vec<String> = self
                .elections
                .iter()
                .take(3)
                .map(|(when, node, term, leader)| format!("{when}: {node} follows {leader} in term {term}"))
                .collect();
            findings.push(Finding {
                at: self.elections[0].0,
                message: format!(
                    "the leader changed {} time(s) between {} and the heal at {at} (links cut at {cut_at}): {}",
                    self.elections.len(),
                    cut_at + self.settle,
                    shown.join("; ")
                ),
            });
        }
        self.elections.clear();
    }
}

impl Checker for StableLeaderUnderCuts {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn fault(&mut self, at: Instant, fault: &Fault, findings: &mut Vec<Finding>) {
        match fault {
            Fault::CutLinks(links) => {
                self.close(at, findings);
                let mut lost: BTreeMap<NodeId, usize> = BTreeMap::new();
                for &(a, b) in links {
                    *lost.entry(a).or_default() += 1;
                    *lost.entry(b).or_default() += 1;
                }
                self.cut = Some((at, lost));
                self.pending.add(at + self.settle, ());
            }
            Fault::Heal => self.close(at, findings),
            _ => {}
        }
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, _findings: &mut Vec<Finding>) {
        if let (Event::LeaderElected { term, leader }, Some((cut_at, _))) = (event, &self.cut) {
            if at >= *cut_at + self.settle {
                self.elections.push((at, node, *term, *leader));
            }
        }
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        if self.pending.due(snapshot.at).is_empty() {
            return;
        }
        let Some((cut_at, lost)) = &self.cut else { return };
        self.judged += 1;
        let n = snapshot.nodes.len();
        let reaches_majority = |id: &NodeId| (n - lost.get(id).copied().unwrap_or(0)) * 2 > n;
        let connected: Vec<_> = snapshot.nodes.iter().filter(|m| m.up && reaches_majority(&m.id)).collect();
        let leaders: BTreeSet<Option<NodeId>> = connected.iter().map(|n| n.leader).collect();
        let good = match leaders.iter().collect::<Vec<_>>()[..] {
            [Some(leader)] => connected.iter().any(|n| n.id == *leader),
            _ => false,
        };
        if !good {
            let named: Vec<String> = connected
                .iter()
                .map(|n| format!("{}: {}", n.id, n.leader.map_or("none".to_string(), |l| l.to_string())))
                .collect();
            findings.push(Finding {
                at: snapshot.at,
                message: format!(
                    "{:?} after the links were cut at {cut_at}, the members that reach a majority do not follow one of them ({})",
                    self.settle,
                    named.join(", ")
                ),
            });
        }
    }

    fn finish(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        self.ended = Some(snapshot.at);
        self.close(snapshot.at, findings);
    }

    fn pending(&self) -> Option<Instant> {
        self.pending.earliest()
    }

    fn not_judged(&self) -> Option<String> {
        unfinished(&self.pending, self.ended)
            .or_else(|| (self.judged == 0).then(|| "no links stayed cut long enough to judge".to_string()))
    }
}

/// No failure verdict at all: a scenario whose faults should never cost a member its
/// place (a flapping link that indirect probes route around, loss, clock changes).
#[derive(Debug, Default)]
pub struct NoFailureVerdicts {
    faults: usize,
}

impl NoFailureVerdicts {
    /// The checker's name.
    pub const NAME: &'static str = "no-failure-verdict";
}

impl Checker for NoFailureVerdicts {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn fault(&mut self, _at: Instant, _fault: &Fault, _findings: &mut Vec<Finding>) {
        self.faults += 1;
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, findings: &mut Vec<Finding>) {
        if let Event::MemberFailed(m) = event {
            findings.push(Finding {
                at,
                message: format!("{node} declared {} failed (incarnation {})", m.id, m.incarnation),
            });
        }
    }

    fn not_judged(&self) -> Option<String> {
        (self.faults == 0).then(|| "no fault was applied".to_string())
    }
}

/// A slow member is never declared failed: it falls behind but keeps answering (the
/// standard checker excuses verdicts about it; this one does not).
#[derive(Debug, Default)]
pub struct SlowNotFailed {
    life: Liveness,
    slow: BTreeSet<NodeId>,
    ever: bool,
}

impl SlowNotFailed {
    /// The checker's name.
    pub const NAME: &'static str = "slow-member-never-declared-failed";
}

impl Checker for SlowNotFailed {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        self.life.start(info);
        Vec::new()
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        self.life.fault(at, fault);
        if let Fault::Slow { node, per_message } = fault {
            self.ever |= !per_message.is_zero();
            if !per_message.is_zero() {
                self.slow.insert(*node);
            }
        }
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, findings: &mut Vec<Finding>) {
        if let Event::MemberFailed(m) = event {
            if self.slow.contains(&m.id) && self.life.is_up(m.id) {
                findings.push(Finding { at, message: format!("{node} declared the slow member {} failed", m.id) });
            }
        }
    }

    fn not_judged(&self) -> Option<String> {
        (!self.ever).then(|| "no member was slowed".to_string())
    }
}

/// A restarted member rejoins: within `within` of its restart, every member that ran
/// since before it holds it alive, and it holds them alive.
#[derive(Debug)]
pub struct RejoinsWithin {
    within: Duration,
    life: Liveness,
    pending: Deadlines<(NodeId, Instant)>,
    judged: usize,
    ended: Option<Instant>,
}

impl RejoinsWithin {
    /// The checker's name.
    pub const NAME: &'static str = "restarted-member-rejoins-within-bound";

    /// Every restart seen through within `within`.
    pub fn new(within: Duration) -> Self {
        Self { within, life: Liveness::default(), pending: Deadlines::default(), judged: 0, ended: None }
    }
}

impl Checker for RejoinsWithin {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        self.life.start(info);
        Vec::new()
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        self.life.fault(at, fault);
        match fault {
            Fault::Crash(node) => self.pending.0.retain(|(_, (m, _))| m != node),
            Fault::Restart { node, .. } => {
                self.pending.0.retain(|(_, (m, _))| m != node);
                self.pending.add(at + self.within, (*node, at));
            }
            // Members restarted while others are cut off cannot be judged by this rule.
            Fault::Partition(_) | Fault::OneWay { .. } | Fault::CutLinks(_) => self.pending.0.clear(),
            _ => {}
        }
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        for (deadline, (member, at)) in self.pending.due(snapshot.at) {
            self.judged += 1;
            let Some(own) = snapshot.nodes.iter().find(|n| n.id == member && n.up) else { continue };
            let mut wrong = Vec::new();
            for other in snapshot.nodes.iter().filter(|n| n.up && n.id != member && self.life.up_since(n.id, at)) {
                if other.view.get(&member) != Some(&MemberState::Alive) {
                    wrong.push(format!(
                        "{} holds it {}",
                        other.id,
                        other.view.get(&member).map_or("unknown".to_string(), ToString::to_string)
                    ));
                }
                if own.view.get(&other.id) != Some(&MemberState::Alive) {
                    wrong.push(format!(
                        "it holds {} {}",
                        other.id,
                        own.view.get(&other.id).map_or("unknown".to_string(), ToString::to_string)
                    ));
                }
            }
            if !wrong.is_empty() {
                let more = wrong.len().saturating_sub(4);
                wrong.truncate(4);
                let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                findings.push(Finding {
                    at: deadline,
                    message: format!(
                        "{member} restarted at {at}; {:?} later it has not rejoined: {}{more}",
                        self.within,
                        wrong.join(", ")
                    ),
                });
            }
        }
    }

    fn finish(&mut self, snapshot: &ClusterSnapshot, _findings: &mut Vec<Finding>) {
        self.ended = Some(snapshot.at);
    }

    fn pending(&self) -> Option<Instant> {
        self.pending.earliest()
    }

    fn not_judged(&self) -> Option<String> {
        unfinished(&self.pending, self.ended)
            .or_else(|| (self.judged == 0).then(|| "no member was restarted (outside a cut)".to_string()))
    }
}

/// The cluster forms: by `within` from the start, every running member holds every
/// running member alive.
#[derive(Debug)]
pub struct FormsWithin {
    within: Duration,
    judged: bool,
    ended: Option<Instant>,
}

impl FormsWithin {
    /// The checker's name.
    pub const NAME: &'static str = "cluster-forms-within-bound";

    /// Every view whole `within` after the start.
    pub fn new(within: Duration) -> Self {
        Self { within, judged: false, ended: None }
    }
}

impl Checker for FormsWithin {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn start(&mut self, _info: &RunInfo) -> Vec<Instant> {
        vec![Instant::ZERO + self.within]
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        if self.judged || snapshot.at != Instant::ZERO + self.within {
            return;
        }
        self.judged = true;
        let diff = Converges::differences(snapshot, 5);
        if !diff.is_empty() {
            findings.push(Finding {
                at: snapshot.at,
                message: format!("the cluster had not formed {:?} after the start: {}", self.within, diff.join("; ")),
            });
        }
    }

    fn finish(&mut self, snapshot: &ClusterSnapshot, _findings: &mut Vec<Finding>) {
        self.ended = Some(snapshot.at);
    }

    fn pending(&self) -> Option<Instant> {
        (!self.judged).then_some(Instant::ZERO + self.within)
    }

    fn not_judged(&self) -> Option<String> {
        (!self.judged).then(|| {
            let ended = self.ended.map_or_else(|| "?".to_string(), |e| e.to_string());
            format!("the run ended at {ended}, before {:?} from the start", self.within)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_core::Member;
    use conclave_sim::{FaultPlan, NodeSnapshot};

    fn info(members: u64) -> RunInfo {
        RunInfo { seed: 1, plan: FaultPlan::new(), members: (1..=members).map(NodeId).collect() }
    }

    fn member(id: u64, state: MemberState) -> Member {
        Member {
            id: NodeId(id),
            addr: "127.0.0.1:1".parse().expect("a literal address"),
            incarnation: 0,
            state,
            tags: Default::default(),
        }
    }

    fn snapshot(at: Instant, up: &[u64], down: &[u64]) -> ClusterSnapshot {
        let node = |id: u64, up: bool| NodeSnapshot {
            id: NodeId(id),
            up,
            view: if up { (1..=5).map(|i| (NodeId(i), MemberState::Alive)).collect() } else { BTreeMap::new() },
            term: 0,
            leader: None,
        };
        let mut nodes: Vec<_> = up.iter().map(|&i| node(i, true)).chain(down.iter().map(|&i| node(i, false))).collect();
        nodes.sort_by_key(|n| n.id);
        ClusterSnapshot { at, nodes }
    }

    fn secs(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    #[test]
    fn a_crash_is_judged_at_its_deadline_and_names_who_missed_it() {
        let mut c = DetectsCrashes::new(Duration::from_secs(5));
        let mut findings = Vec::new();
        c.start(&info(4));
        c.fault(secs(10), &Fault::Crash(NodeId(4)), &mut findings);
        assert_eq!(c.pending(), Some(secs(15)));
        for observer in [1, 2] {
            c.event(secs(12), NodeId(observer), &Event::MemberFailed(member(4, MemberState::Failed)), &mut findings);
        }
        c.snapshot(&snapshot(secs(15), &[1, 2, 3], &[4]), &mut findings);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].message.contains("n3") && !findings[0].message.contains("n1"), "{}", findings[0].message);
        assert_eq!((c.pending(), c.not_judged()), (None, None));
        // A member restarted before its deadline needs no judgement.
        let mut c = DetectsCrashes::new(Duration::from_secs(5));
        c.start(&info(4));
        c.fault(secs(10), &Fault::Crash(NodeId(4)), &mut findings);
        c.fault(secs(12), &Fault::Restart { node: NodeId(4), disk: conclave_sim::Disk::Kept }, &mut findings);
        assert_eq!(c.pending(), None);
        assert!(c.not_judged().is_some());
    }

    #[test]
    fn a_crashed_leader_must_be_replaced_in_a_later_term_in_time() {
        let mut findings = Vec::new();
        for (elected_at, late) in [(11, false), (20, true)] {
            let mut c = ReplacesCrashedLeader::new(Duration::from_secs(2));
            c.event(secs(1), NodeId(1), &Event::LeaderElected { term: 3, leader: NodeId(2) }, &mut findings);
            c.fault(secs(10), &Fault::Crash(NodeId(1)), &mut findings);
            assert_eq!(c.pending(), None, "n1 did not lead");
            c.fault(secs(10), &Fault::Crash(NodeId(2)), &mut findings);
            c.event(secs(elected_at), NodeId(3), &Event::LeaderElected { term: 4, leader: NodeId(3) }, &mut findings);
            c.snapshot(&snapshot(secs(12), &[3], &[1, 2]), &mut findings);
            assert_eq!(findings.len(), usize::from(late));
            findings.clear();
        }
    }

    #[test]
    fn partition_decisions_must_agree_follow_the_cut_and_go_read_only() {
        let detected = |majority: &[u64], minority: &[u64], side| Event::PartitionDetected {
            majority: majority.iter().copied().map(NodeId).collect(),
            minority: minority.iter().copied().map(NodeId).collect(),
            local_side: side,
        };
        let run = |whole: bool, decisions: &[(u64, Event)]| {
            let mut c = DecidesPartitions::new(Duration::from_secs(10), Duration::from_secs(5), whole, Vec::new());
            let mut findings = Vec::new();
            c.start(&info(5));
            c.fault(secs(10), &Fault::Partition(vec![vec![NodeId(4), NodeId(5)]]), &mut findings);
            for (node, event) in decisions {
                c.event(secs(15), NodeId(*node), event, &mut findings);
            }
            c.snapshot(&snapshot(secs(20), &[1, 2, 3, 4, 5], &[]), &mut findings);
            findings
        };
        let mut good: Vec<(u64, Event)> = (1..=3).map(|n| (n, detected(&[1, 2, 3], &[4, 5], Side::Majority))).collect();
        good.extend((4..=5).flat_map(|n| [(n, detected(&[1, 2, 3], &[4, 5], Side::Minority)), (n, Event::QuorumLost)]));
        assert!(run(true, &good).is_empty());
        assert_eq!(run(true, &good[1..]).len(), 1, "n1 undecided");
        let mut partial = good.clone();
        partial[0] = (1, detected(&[1, 2, 3, 4], &[5], Side::Majority));
        let message = run(false, &partial).pop().expect("crosses the cut").message;
        assert!(message.contains("cross the cut") && message.contains("disagree"), "{message}");
        let mut part = good.clone();
        part[0] = (1, detected(&[1, 2, 3], &[5], Side::Majority));
        assert!(run(false, &part).is_empty());
        assert!(run(true, &part).pop().expect("part of the picture").message.contains("part of the picture"));
        let no_read_only: Vec<_> = good.iter().filter(|(_, e)| *e != Event::QuorumLost).cloned().collect();
        assert!(run(true, &no_read_only).pop().expect("not read-only").message.contains("read-only"));
        // Healed before the bound: nobody had to decide, but those who did must agree.
        let short = |decisions: &[(u64, Event)]| {
            let mut c = DecidesPartitions::new(Duration::from_secs(10), Duration::from_secs(5), false, Vec::new());
            let mut findings = Vec::new();
            c.start(&info(5));
            c.fault(secs(10), &Fault::Partition(vec![vec![NodeId(4), NodeId(5)]]), &mut findings);
            for (node, event) in decisions {
                c.event(secs(13), NodeId(*node), event, &mut findings);
            }
            c.fault(secs(15), &Fault::Heal, &mut findings);
            assert_eq!(c.pending(), Some(secs(15)));
            c.snapshot(&snapshot(secs(15), &[1, 2, 3, 4, 5], &[]), &mut findings);
            findings
        };
        assert!(short(&[]).is_empty());
        assert_eq!(short(&partial[..1]).len(), 1, "a decision across the cut");
    }

    #[test]
    fn two_sides_running_are_caught_and_a_heal_or_a_crash_ends_a_decision() {
        let decides = |m: &[u64], stopped: &[u64], side| Event::PartitionDetected {
            majority: m.iter().copied().map(NodeId).collect(),
            minority: stopped.iter().copied().map(NodeId).collect(),
            local_side: side,
        };
        let mut c = OneSideRuns::default();
        let mut findings = Vec::new();
        assert_eq!(c.not_judged(), None, "nothing decided, nothing contradicted");
        c.event(secs(2), NodeId(1), &decides(&[1, 2, 3], &[4, 5], Side::Majority), &mut findings);
        c.event(secs(2), NodeId(2), &decides(&[1, 2, 3], &[4, 5], Side::Majority), &mut findings);
        c.event(secs(2), NodeId(4), &decides(&[1, 2, 3], &[4, 5], Side::Minority), &mut findings);
        // n1 decides again without n3, which crashed: the same side, smaller.
        c.fault(secs(3), &Fault::Crash(NodeId(3)), &mut findings);
        c.event(secs(4), NodeId(1), &decides(&[1, 2], &[3, 4, 5], Side::Majority), &mut findings);
        assert!(findings.is_empty(), "{findings:?}");
        // n5 keeps running, counting n1 and n2 stopped: two sides.
        c.event(secs(5), NodeId(5), &decides(&[3, 4, 5], &[1, 2], Side::Majority), &mut findings);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].message.contains("counts n1 stopped"), "{}", findings[0].message);
        // Once n1 and n2 said it healed, n5 alone runs on its decision.
        c.event(secs(6), NodeId(1), &Event::PartitionHealed, &mut findings);
        c.event(secs(6), NodeId(2), &Event::PartitionHealed, &mut findings);
        c.event(secs(7), NodeId(5), &decides(&[3, 4, 5], &[1, 2], Side::Majority), &mut findings);
        assert_eq!(findings.len(), 1);
    }

    #[test]
    fn a_leader_change_in_the_stable_window_is_caught() {
        let mut findings = Vec::new();
        // n4 reaches only n2, n5 only n3: n1-n3 reach a majority.
        let pairs = [(4, 1), (4, 3), (4, 5), (5, 1), (5, 2)];
        let cut = Fault::CutLinks(pairs.iter().map(|&(a, b)| (NodeId(a), NodeId(b))).collect());
        for (elected_at, changed) in [(12, false), (30, true)] {
            let mut c = StableLeaderUnderCuts::new(Duration::from_secs(5));
            c.fault(secs(10), &cut, &mut findings);
            c.event(secs(elected_at), NodeId(2), &Event::LeaderElected { term: 2, leader: NodeId(3) }, &mut findings);
            let mut at_settle = snapshot(secs(15), &[1, 2, 3, 4, 5], &[]);
            for n in &mut at_settle.nodes {
                n.leader = Some(NodeId(3));
            }
            c.snapshot(&at_settle, &mut findings);
            assert!(findings.is_empty());
            c.fault(secs(60), &Fault::Heal, &mut findings);
            assert_eq!(findings.len(), usize::from(changed));
            assert_eq!(c.not_judged(), None);
            findings.clear();
        }
        // The leader at the edge (n4 reaches only some) is caught at the settle time.
        let mut c = StableLeaderUnderCuts::new(Duration::from_secs(5));
        c.fault(secs(10), &cut, &mut findings);
        let mut at_settle = snapshot(secs(15), &[1, 2, 3, 4, 5], &[]);
        for n in &mut at_settle.nodes {
            n.leader = Some(NodeId(4));
        }
        c.snapshot(&at_settle, &mut findings);
        assert_eq!(findings.len(), 1);
    }

    #[test]
    fn the_slow_member_and_every_verdict_checkers_catch_verdicts() {
        let mut findings = Vec::new();
        let mut slow = SlowNotFailed::default();
        slow.start(&info(3));
        assert!(slow.not_judged().is_some());
        slow.fault(secs(1), &Fault::Slow { node: NodeId(3), per_message: Duration::from_millis(20) }, &mut findings);
        slow.event(secs(2), NodeId(1), &Event::MemberFailed(member(2, MemberState::Failed)), &mut findings);
        assert!(findings.is_empty(), "n2 is not slow");
        slow.event(secs(2), NodeId(1), &Event::MemberFailed(member(3, MemberState::Failed)), &mut findings);
        assert_eq!(findings.len(), 1);
        let mut none = NoFailureVerdicts::default();
        none.fault(secs(1), &Fault::Heal, &mut findings);
        none.event(secs(2), NodeId(1), &Event::MemberFailed(member(2, MemberState::Failed)), &mut findings);
        assert_eq!(findings.len(), 2);
        assert_eq!(none.not_judged(), None);
    }

    #[test]
    fn a_restarted_member_must_be_seen_alive_and_see_the_others() {
        let mut c = RejoinsWithin::new(Duration::from_secs(5));
        let mut findings = Vec::new();
        c.start(&info(5));
        c.fault(secs(10), &Fault::Crash(NodeId(5)), &mut findings);
        c.fault(secs(20), &Fault::Restart { node: NodeId(5), disk: conclave_sim::Disk::Amnesia }, &mut findings);
        let mut later = snapshot(secs(25), &[1, 2, 3, 4, 5], &[]);
        c.snapshot(&later, &mut findings);
        assert!(findings.is_empty());
        c.fault(secs(30), &Fault::Restart { node: NodeId(5), disk: conclave_sim::Disk::Kept }, &mut findings);
        later.at = secs(35);
        later.nodes[0].view.insert(NodeId(5), MemberState::Suspect);
        c.snapshot(&later, &mut findings);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].message.contains("n1 holds it suspect"), "{}", findings[0].message);
    }
}

/// A side that keeps running is one that can act together: every two members of a decided
/// majority reach each other both ways, as the faults in force have it. Under an
/// asymmetric view (a one-way cut, a member that bridges two sides) a member may decide
/// right or not at all; a majority that counts members the network keeps apart is wrong,
/// and so is one that includes a member from each end of a one-way cut. A decision is held
/// to the cuts that were in force `grace` before it (a member decides on a picture that has
/// stood for `stable_after`, from answers up to that old): a cut younger than that is news
/// the next decision answers to.
#[derive(Debug, Default)]
pub struct ConnectedMajority {
    grace: Duration,
    /// The directed links the faults in force cut, (sender, receiver), and since when.
    cut: BTreeMap<(NodeId, NodeId), Instant>,
    /// Members known to the run, for a partition's "everyone else".
    members: Vec<NodeId>,
    decisions: usize,
    /// Whether a run without any decision is judged right (where no side can be sure of
    /// its majority) rather than not judged.
    none_is_right: bool,
}

impl ConnectedMajority {
    /// The checker's name.
    pub const NAME: &'static str = "decided-majority-is-connected";

    /// The checker, holding decisions to the cuts in force `grace` before them.
    pub fn new(grace: Duration) -> Self {
        Self { grace, ..Self::default() }
    }

    /// The same, for a topology in which deciding nothing is right: a run without a
    /// decision holds rather than going unjudged.
    pub fn none_is_right(grace: Duration) -> Self {
        Self { grace, none_is_right: true, ..Self::default() }
    }
}

impl Checker for ConnectedMajority {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        self.members = info.members.clone();
        Vec::new()
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        match fault {
            Fault::Partition(groups) => {
                let group_of = |id: &NodeId| groups.iter().position(|g| g.contains(id));
                for a in &self.members {
                    for b in &self.members {
                        if a != b && group_of(a) != group_of(b) {
                            self.cut.entry((*a, *b)).or_insert(at);
                        }
                    }
                }
            }
            Fault::OneWay { from, to } => {
                for a in from {
                    for b in to {
                        self.cut.entry((*a, *b)).or_insert(at);
                    }
                }
            }
            Fault::CutLinks(links) => {
                for &(a, b) in links {
                    self.cut.entry((a, b)).or_insert(at);
                    self.cut.entry((b, a)).or_insert(at);
                }
            }
            Fault::Heal => self.cut.clear(),
            _ => {}
        }
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, findings: &mut Vec<Finding>) {
        let Event::PartitionDetected { majority, local_side: Side::Majority, .. } = event else { return };
        self.decisions += 1;
        let apart: Vec<String> = majority
            .iter()
            .flat_map(|a| majority.iter().map(move |b| (*a, *b)))
            .filter(|pair| self.cut.get(pair).is_some_and(|&since| since + self.grace <= at))
            .take(3)
            .map(|(a, b)| format!("{a} cannot reach {b}"))
            .collect();
        if !apart.is_empty() {
            findings.push(Finding {
                at,
                message: format!(
                    "{node} decided it keeps running with members the network keeps apart: {}",
                    apart.join("; ")
                ),
            });
        }
    }

    fn not_judged(&self) -> Option<String> {
        (self.decisions == 0 && !self.none_is_right)
            .then(|| "no member decided it keeps running: no side to judge".to_string())
    }
}
