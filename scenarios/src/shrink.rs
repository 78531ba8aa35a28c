//! Shrinking: the smallest plan that still fails the same check.
//!
//! A failing seed's plan is mostly noise: a dozen faults of which one or two matter. The
//! shrinker keeps the seed and the check that failed, and tries smaller plans, keeping each
//! that still fails that check, until none of these changes helps (or the budget of runs
//! is spent):
//!
//! 1. **fewer faults**: delta debugging over the steps (Zeller's ddmin: halves, then
//!    quarters ..., and their complements);
//! 2. **fewer members**: the cluster cut down to the members the plan names, the named
//!    members renumbered from n1, and members taken out of partitions, cuts and one-way
//!    lists one at a time;
//! 3. **earlier**: each step moved towards the one before it (the first no earlier than
//!    the original's first);
//! 4. **shorter and milder**: pauses, clock steps and drifts halved, slow members faster,
//!    link troubles dropped one by one (loss, duplication, reordering, corruption, stale
//!    copies, latency).
//!
//! Every candidate is a full run with the same seed, judged by the same checkers: what is
//! kept fails for real, and replays exactly from its plan file. A candidate must also leave
//! no more in force after its last step than the original did (no cut left unhealed, no
//! member left down or slow, no link left lossy that the original healed): the checks of
//! liveness count from the last step and expect what the plan healed to be healed, so a
//! plan that merely stopped healing would fail them for nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conclave_core::{Instant, NodeId};
use conclave_sim::{Fault, FaultPlan, LinkParams, Step, TraceMode};

use crate::error::Error;
use crate::trial::Trial;

/// A shrunk plan and how it came to be.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The smallest failing trial found.
    pub trial: Trial,
    /// The check it fails, as the original did.
    pub check: &'static str,
    /// Faults and members before.
    pub before: (usize, usize),
    /// Runs it took.
    pub runs: usize,
    /// Whether the budget ran out before no change helped.
    pub budget_spent: bool,
}

/// What the shrinker reports as it goes: the smallest failing trial so far, and the runs.
pub type Progress<'a> = &'a mut dyn FnMut(&Trial, usize);

struct Shrinker<'a> {
    check: &'static str,
    /// What the original plan leaves in force after its last step.
    lingering: Lingering,
    /// The original plan's first step: no step moves before it.
    floor: Instant,
    best: Trial,
    runs: usize,
    budget: usize,
    progress: Progress<'a>,
}

impl Shrinker<'_> {
    /// Whether `candidate` still fails the check (and becomes the best if so).
    fn try_keep(&mut self, candidate: Trial) -> bool {
        if self.runs >= self.budget
            || candidate.validate().is_err()
            || !lingering(&candidate.plan).within(&self.lingering)
        {
            return false;
        }
        let fails = fails(&candidate, self.check);
        self.runs += 1;
        if fails {
            self.best = candidate;
        }
        (self.progress)(&self.best, self.runs);
        fails
    }

    fn with_plan(&self, steps: Vec<Step>) -> Trial {
        Trial { plan: FaultPlan { steps }, ..self.best.clone() }
    }

    /// Delta debugging over the steps.
    fn fewer_faults(&mut self) -> bool {
        let start = self.best.plan.steps.len();
        if start == 1 && self.try_keep(self.with_plan(Vec::new())) {
            return true;
        }
        let mut granularity = 2;
        while self.best.plan.steps.len() >= 2 && self.runs < self.budget {
            let steps = self.best.plan.steps.clone();
            let chunks = split(&steps, granularity);
            let mut reduced = false;
            for chunk in &chunks {
                if self.try_keep(self.with_plan(chunk.clone())) {
                    granularity = 2;
                    reduced = true;
                    break;
                }
            }
            if !reduced && chunks.len() > 2 {
                for i in 0..chunks.len() {
                    let rest: Vec<Step> = chunks
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .flat_map(|(_, c)| c.iter().cloned())
                        .collect();
                    if self.try_keep(self.with_plan(rest)) {
                        granularity = (granularity - 1).max(2);
                        reduced = true;
                        break;
                    }
                }
            }
            if !reduced {
                if granularity >= steps.len() {
                    break;
                }
                granularity = (granularity * 2).min(steps.len());
            }
        }
        self.best.plan.steps.len() < start
    }

    /// Fewer members: cut the cluster down, renumber, take members out of lists.
    fn fewer_members(&mut self) -> bool {
        let start = (self.best.members, list_sizes(&self.best.plan));
        let min = self.best.scenario.map_or(1, |s| s.min_members);
        let named = self.best.plan.highest_member().map_or(0, |m| m.0 as usize);
        for members in min.max(named).max(1)..self.best.members {
            let voters = self.best.scenario.map_or(self.best.voters, |s| s.voters_for(members)).min(members);
            if self.try_keep(Trial { members, voters, ..self.best.clone() }) {
                break;
            }
        }
        // Renumbered: the members the plan names become n1, n2 ... in order.
        let renumbered = renumber(&self.best.plan);
        let named = renumbered.highest_member().map_or(0, |m| m.0 as usize);
        if renumbered != self.best.plan {
            let members = min.max(named).max(1).min(self.best.members);
            let voters = self.best.scenario.map_or(self.best.voters, |s| s.voters_for(members)).min(members);
            self.try_keep(Trial { members, voters, plan: renumbered, ..self.best.clone() });
        }
        // Out of lists, one at a time.
        let mut i = 0;
        while i < self.best.plan.steps.len() && self.runs < self.budget {
            let mut changed = false;
            for fault in without_one_member(&self.best.plan.steps[i].fault) {
                let mut steps = self.best.plan.steps.clone();
                steps[i].fault = fault;
                if self.try_keep(self.with_plan(steps)) {
                    changed = true;
                    break;
                }
            }
            if !changed {
                i += 1;
            }
        }
        (self.best.members, list_sizes(&self.best.plan)) < start
    }

    /// Earlier: each step towards the one before it, the first no earlier than the
    /// original plan's first step (before it the cluster may not have formed: a plan moved
    /// there would test the join rather than what failed).
    fn earlier(&mut self) -> bool {
        let start: Vec<Instant> = self.best.plan.steps.iter().map(|s| s.at).collect();
        for i in 0..self.best.plan.steps.len() {
            let at = self.best.plan.steps[i].at;
            let before =
                self.best.plan.steps[..i].iter().map(|s| s.at).filter(|&t| t <= at).max().unwrap_or(self.floor);
            let room = at.saturating_duration_since(before).as_millis() as u64;
            self.search(room, |trial, ms| {
                let mut steps = trial.plan.steps.clone();
                steps[i].at = steps[i].at - Duration::from_millis(ms);
                Trial { plan: FaultPlan { steps }, ..trial.clone() }
            });
        }
        self.best.plan.steps.iter().map(|s| s.at).collect::<Vec<_>>() != start
    }

    /// The largest `x` in `0..=most` (binary search, a handful of runs) for which
    /// `change(best, x)` still fails, applied; 0 when none does.
    fn search(&mut self, most: u64, change: impl Fn(&Trial, u64) -> Trial) -> u64 {
        if most == 0 {
            return 0;
        }
        let base = self.best.clone();
        if self.try_keep(change(&base, most)) {
            return most;
        }
        let (mut lo, mut hi) = (0, most);
        let mut kept = 0;
        for _ in 0..8 {
            if hi - lo <= 1 {
                break;
            }
            let mid = lo + (hi - lo) / 2;
            if self.try_keep(change(&base, mid)) {
                lo = mid;
                kept = mid;
            } else {
                hi = mid;
            }
        }
        kept
    }

    /// Shorter and milder faults, one change at a time.
    fn milder(&mut self) -> bool {
        let mut changed = false;
        let mut i = 0;
        while i < self.best.plan.steps.len() && self.runs < self.budget {
            let mut kept = false;
            for fault in milder(&self.best.plan.steps[i].fault) {
                let mut steps = self.best.plan.steps.clone();
                steps[i].fault = fault;
                if self.try_keep(self.with_plan(steps)) {
                    kept = true;
                    changed = true;
                    break;
                }
            }
            if !kept {
                i += 1;
            }
        }
        changed
    }
}

/// Whether `trial` fails `check` (a violation of it, or, for a check that judges once, a
/// failure to judge is not enough: only violations count).
pub fn fails(trial: &Trial, check: &str) -> bool {
    let Ok(mut sim) = trial.build(TraceMode::HashOnly, None) else { return false };
    sim.run_until_judged(trial.plan.last_at().unwrap_or(Instant::ZERO) + crate::trial::JUDGEMENT_LIMIT);
    sim.violations().iter().any(|v| v.checker == check)
}

/// Shrinks `trial`, which fails `check`, within `budget` runs.
pub fn shrink(trial: &Trial, check: &'static str, budget: usize, progress: Progress<'_>) -> Result<Shrunk, Error> {
    trial.validate()?;
    let before = (trial.plan.steps.len(), trial.members);
    let floor = trial.plan.steps.iter().map(|s| s.at).min().unwrap_or(Instant::ZERO);
    let mut s =
        Shrinker { check, lingering: lingering(&trial.plan), floor, best: trial.clone(), runs: 0, budget, progress };
    loop {
        let mut progress = s.fewer_faults();
        progress |= s.fewer_members();
        progress |= s.earlier();
        progress |= s.milder();
        if !progress || s.runs >= s.budget {
            break;
        }
    }
    Ok(Shrunk { budget_spent: s.runs >= s.budget, trial: s.best, check, before, runs: s.runs })
}

/// What a plan leaves in force after its last step.
#[derive(Debug, Default, PartialEq)]
struct Lingering {
    /// A partition, one-way cut or cut link not healed.
    cut: bool,
    /// Members down.
    down: BTreeSet<NodeId>,
    /// Members slowed.
    slow: BTreeSet<NodeId>,
    /// Links whose behaviour is not the default.
    links: BTreeSet<String>,
    /// Members whose clocks drift.
    drift: BTreeSet<NodeId>,
}

impl Lingering {
    /// Whether this leaves nothing in force that `other` does not.
    fn within(&self, other: &Self) -> bool {
        (!self.cut || other.cut)
            && self.down.is_subset(&other.down)
            && self.slow.is_subset(&other.slow)
            && self.links.is_subset(&other.links)
            && self.drift.is_subset(&other.drift)
    }
}

fn lingering(plan: &FaultPlan) -> Lingering {
    let mut steps: Vec<&Step> = plan.steps.iter().collect();
    // By time; steps at the same time in the plan's order, as the engine applies them.
    steps.sort_by_key(|s| s.at);
    let mut state = Lingering::default();
    for step in steps {
        match &step.fault {
            // Armed, it may die at any later write: count it down until restarted.
            Fault::Crash(n) | Fault::CrashAtPersist(n) => {
                state.down.insert(*n);
            }
            Fault::Restart { node, .. } => {
                state.down.remove(node);
            }
            Fault::Slow { node, per_message } => {
                if per_message.is_zero() {
                    state.slow.remove(node);
                } else {
                    state.slow.insert(*node);
                }
            }
            Fault::Partition(groups) => state.cut = groups.iter().any(|g| !g.is_empty()),
            Fault::OneWay { from, to } => state.cut |= !from.is_empty() && !to.is_empty(),
            Fault::CutLinks(links) => state.cut |= !links.is_empty(),
            Fault::Heal => state.cut = false,
            Fault::SetLinks { links, params } => {
                if *links == conclave_sim::LinkSelector::All {
                    state.links.clear();
                }
                let key = format!("{links:?}");
                if *params == LinkParams::default() {
                    state.links.remove(&key);
                } else {
                    state.links.insert(key);
                }
            }
            Fault::ClockDrift { node, ppm } => {
                if *ppm == 0.0 {
                    state.drift.remove(node);
                } else {
                    state.drift.insert(*node);
                }
            }
            _ => {}
        }
    }
    state
}

/// `steps` in `n` chunks of nearly equal size.
fn split(steps: &[Step], n: usize) -> Vec<Vec<Step>> {
    let n = n.min(steps.len()).max(1);
    let (size, extra) = (steps.len() / n, steps.len() % n);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for i in 0..n {
        let len = size + usize::from(i < extra);
        out.push(steps[start..start + len].to_vec());
        start += len;
    }
    out
}

/// How many member names the plan's lists hold (partitions, one-way cuts, cut links).
fn list_sizes(plan: &FaultPlan) -> usize {
    plan.steps
        .iter()
        .map(|s| match &s.fault {
            Fault::Partition(groups) => groups.iter().map(Vec::len).sum(),
            Fault::OneWay { from, to } => from.len() + to.len(),
            Fault::CutLinks(links) => links.len() * 2,
            _ => 0,
        })
        .sum()
}

/// The fault with one member fewer in one of its lists, each way of doing so.
fn without_one_member(fault: &Fault) -> Vec<Fault> {
    let mut out = Vec::new();
    match fault {
        Fault::Partition(groups) => {
            for g in 0..groups.len() {
                for m in 0..groups[g].len() {
                    let mut groups = groups.clone();
                    groups[g].remove(m);
                    groups.retain(|g| !g.is_empty());
                    out.push(Fault::Partition(groups));
                }
            }
        }
        Fault::OneWay { from, to } => {
            for m in 0..from.len() {
                let mut from = from.clone();
                from.remove(m);
                if !from.is_empty() {
                    out.push(Fault::OneWay { from, to: to.clone() });
                }
            }
            for m in 0..to.len() {
                let mut to = to.clone();
                to.remove(m);
                if !to.is_empty() {
                    out.push(Fault::OneWay { from: from.clone(), to });
                }
            }
        }
        Fault::CutLinks(links) if links.len() > 1 => {
            for m in 0..links.len() {
                let mut links = links.clone();
                links.remove(m);
                out.push(Fault::CutLinks(links));
            }
        }
        _ => {}
    }
    out
}

/// The plan with the members it names renumbered n1, n2 ... in the order of their ids.
fn renumber(plan: &FaultPlan) -> FaultPlan {
    let mut named: Vec<NodeId> = plan.steps.iter().flat_map(|s| s.fault.named()).collect();
    named.sort();
    named.dedup();
    let map: BTreeMap<NodeId, NodeId> = named.iter().enumerate().map(|(i, &id)| (id, NodeId(i as u64 + 1))).collect();
    let to = |id: &NodeId| map.get(id).copied().unwrap_or(*id);
    let list = |ids: &[NodeId]| ids.iter().map(to).collect::<Vec<_>>();
    let steps = plan
        .steps
        .iter()
        .map(|s| {
            let fault = match &s.fault {
                Fault::Crash(n) => Fault::Crash(to(n)),
                Fault::CrashAtPersist(n) => Fault::CrashAtPersist(to(n)),
                Fault::Restart { node, disk } => Fault::Restart { node: to(node), disk: *disk },
                Fault::Pause { node, duration } => Fault::Pause { node: to(node), duration: *duration },
                Fault::Slow { node, per_message } => Fault::Slow { node: to(node), per_message: *per_message },
                Fault::Partition(groups) => Fault::Partition(groups.iter().map(|g| list(g)).collect()),
                Fault::OneWay { from, to: dest } => Fault::OneWay { from: list(from), to: list(dest) },
                Fault::CutLinks(links) => Fault::CutLinks(links.iter().map(|(a, b)| (to(a), to(b))).collect()),
                Fault::SetLinks { links, params } => {
                    use conclave_sim::LinkSelector as L;
                    let links = match links {
                        L::All => L::All,
                        L::Between(a, b) => L::Between(to(a), to(b)),
                        L::OneWay { from, to: dest } => L::OneWay { from: to(from), to: to(dest) },
                        L::From(a) => L::From(to(a)),
                        L::To(a) => L::To(to(a)),
                    };
                    Fault::SetLinks { links, params: params.clone() }
                }
                Fault::ClockOffset { node, offset_nanos } => {
                    Fault::ClockOffset { node: to(node), offset_nanos: *offset_nanos }
                }
                Fault::ClockDrift { node, ppm } => Fault::ClockDrift { node: to(node), ppm: *ppm },
                Fault::ClockJump { node, nanos } => Fault::ClockJump { node: to(node), nanos: *nanos },
                other => other.clone(),
            };
            Step { at: s.at, fault }
        })
        .collect();
    FaultPlan { steps }
}

/// Milder versions of a fault, the mildest first.
fn milder(fault: &Fault) -> Vec<Fault> {
    let halves = |d: Duration| -> Vec<Duration> {
        let mut out = Vec::new();
        let mut x = d / 2;
        while x >= Duration::from_millis(1) && out.len() < 6 {
            out.push(x);
            x /= 2;
        }
        out.reverse();
        out
    };
    match fault {
        Fault::Pause { node, duration } => {
            halves(*duration).into_iter().map(|duration| Fault::Pause { node: *node, duration }).collect()
        }
        Fault::Slow { node, per_message } if !per_message.is_zero() => {
            halves(*per_message).into_iter().map(|per_message| Fault::Slow { node: *node, per_message }).collect()
        }
        Fault::ClockOffset { node, offset_nanos } if *offset_nanos != 0 => (1..=4)
            .rev()
            .map(|k| Fault::ClockOffset { node: *node, offset_nanos: offset_nanos / (1 << k) })
            .filter(|f| f != fault)
            .collect(),
        Fault::ClockJump { node, nanos } if *nanos != 0 => (1..=4)
            .rev()
            .map(|k| Fault::ClockJump { node: *node, nanos: nanos / (1 << k) })
            .filter(|f| f != fault)
            .collect(),
        Fault::ClockDrift { node, ppm } if *ppm != 0.0 => {
            [8.0, 4.0, 2.0].into_iter().map(|k| Fault::ClockDrift { node: *node, ppm: ppm / k }).collect()
        }
        Fault::SetLinks { links, params } => {
            let mut out = Vec::new();
            let mut each = |change: &dyn Fn(&mut LinkParams) -> bool| {
                let mut p = params.clone();
                if change(&mut p) {
                    out.push(Fault::SetLinks { links: links.clone(), params: p });
                }
            };
            each(&|p| std::mem::take(&mut p.loss) != 0.0);
            each(&|p| std::mem::take(&mut p.duplicate) != 0.0);
            each(&|p| {
                let on = p.reorder != 0.0;
                p.reorder = 0.0;
                p.reorder_delay = Duration::ZERO;
                on
            });
            each(&|p| std::mem::take(&mut p.corrupt) != 0.0);
            each(&|p| {
                let on = p.stale != 0.0;
                p.stale = 0.0;
                p.stale_delay = Duration::ZERO;
                on
            });
            each(&|p| {
                let old = std::mem::replace(&mut p.latency, LinkParams::default().latency);
                old != p.latency
            });
            out
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_steps_in_order() {
        let steps: Vec<Step> =
            (0..7).map(|i| Step { at: Instant::from_secs(i), fault: Fault::Crash(NodeId(i + 1)) }).collect();
        for n in 1..=9 {
            let chunks = split(&steps, n);
            assert_eq!(chunks.concat(), steps, "{n}");
            assert!(chunks.iter().all(|c| !c.is_empty()));
        }
    }

    #[test]
    fn renumbering_keeps_the_order_of_ids_and_the_shape_of_the_plan() {
        let plan: FaultPlan =
            "at 1s crash n7; at 2s partition n3,n9 | n7; at 3s links n9<->n3 loss 10%; at 4s restart n7 with disk"
                .parse()
                .expect("a plan");
        assert_eq!(
            renumber(&plan).to_string(),
            "at 1s crash n2; at 2s partition n1,n3 | n2; at 3s links n3<->n1 latency 500us loss 10%; at 4s restart n2 with disk"
        );
    }

    #[test]
    fn milder_faults_are_milder() {
        let pause = Fault::Pause { node: NodeId(1), duration: Duration::from_secs(8) };
        let shorter = milder(&pause);
        assert_eq!(shorter.first(), Some(&Fault::Pause { node: NodeId(1), duration: Duration::from_millis(125) }));
        assert!(shorter
            .iter()
            .all(|f| matches!(f, Fault::Pause { duration, .. } if *duration < Duration::from_secs(8))));
        let links: Fault = "links all latency 2ms loss 10% corrupt 1%".parse().expect("a fault");
        let texts: Vec<String> = milder(&links).iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "links all latency 2ms corrupt 1%",
                "links all latency 2ms loss 10%",
                "links all latency 500us loss 10% corrupt 1%"
            ]
        );
        assert!(milder(&Fault::Heal).is_empty());
    }

    #[test]
    fn a_partition_loses_one_member_at_a_time() {
        let cut: Fault = "partition n1,n2 | n3".parse().expect("a fault");
        let fewer: Vec<String> = without_one_member(&cut).iter().map(ToString::to_string).collect();
        assert_eq!(fewer, ["partition n2 | n3", "partition n1 | n3", "partition n1,n2"]);
    }

    #[test]
    fn a_smaller_plan_may_not_leave_in_force_what_the_original_healed() {
        let original: FaultPlan =
            "at 5s partition n1; at 10s crash n2; at 20s links all loss 10%; at 65s heal; at 65s restart n2 with disk; at 65s links all latency 500us"
                .parse()
                .expect("a plan");
        let healed = lingering(&original);
        assert_eq!(healed, Lingering::default());
        for (candidate, ok) in [
            ("at 5s partition n1; at 65s heal", true),
            ("at 5s partition n1", false),
            ("at 65s heal; at 65s partition n1", false),
            ("at 10s crash n2", false),
            ("at 20s links all loss 10%", false),
            ("at 20s links all loss 10%; at 65s links all latency 500us", true),
            ("at 1s clock n3 drift 100ppm", false),
        ] {
            let plan: FaultPlan = candidate.parse().expect("a plan");
            assert_eq!(lingering(&plan).within(&healed), ok, "{candidate}");
        }
        let crashed: FaultPlan = "at 10s crash n2".parse().expect("a plan");
        assert!(lingering(&crashed).within(&lingering(&crashed)), "what the original leaves, a candidate may");
    }
}
