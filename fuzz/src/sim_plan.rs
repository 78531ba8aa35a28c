//! An arbitrary small fault plan, run on the simulator's fast engine with every standard
//! checker on. The input picks the cluster (3 to 7 members, the `lan` or `local` preset,
//! how many vote, the seed), up to twelve faults in a minute of chaos, and which parts of
//! the closing heal to leave out.
//!
//! A violation is a finding only where the plan stays inside the fault model's promises.
//! [`Promises::of`] says, for each plan, which checkers it lets fail and why:
//!
//! - election safety (`at-most-one-leader-per-term`, `lease-exclusive`) holds while a
//!   majority of the voters keep their disks: a plan that restarts more than
//!   `voters - majority` distinct voters on a wiped disk (`Disk::Amnesia`) is outside it
//!   (the election module's documentation gives the argument);
//! - no false failure verdict (`no-false-verdicts`) holds on links that lose at most 10 %
//!   of the datagrams (the checker itself excuses cuts: half or more lost, or delays of
//!   half a second): a plan that sets a loss between the two is outside it;
//! - a member slowed (`Fault::Slow`) to more than 2 ms a datagram is slower than its load
//!   (a `local` member handles a few hundred datagrams a second): its backlog grows for as
//!   long as it is slow and outlasts its cure, so nothing is promised about when it
//!   catches up: neither liveness (below) nor the absence of false verdicts (the checker
//!   excuses verdicts about a slow member until its speed is restored, and the backlog
//!   runs on past that) is promised for such a plan. Slowed less, it keeps up, and
//!   everything must hold;
//! - liveness (`converges-after-heal`, `elects-after-heal`, `live-member-refutes-claims`) holds only
//!   after everything is healed (and no member was slower than its load): a plan that leaves a partition, a one-way cut or cut
//!   links, bad link behaviour, a member down or slow, or a clock drifting or standing
//!   still past its last step (a member isolated forever, say) is outside it; so is one
//!   whose election has no majority of the voters running, or no majority with their disks,
//!   for the leader checker.
//!
//! Everything else must hold for every plan: incarnations never reused after a restart
//! with disk, suspicions within Lifeguard's bounds, no panic, and the three above within
//! their promises.

use std::collections::BTreeSet;
use std::time::Duration;

use conclave_core::{Config, Instant, NodeId};
use conclave_sim::{
    Converges, Disk, ElectsAfterHeal, Fault, FaultPlan, LeaseExclusive, LinkParams, LinkSelector, NoFalseVerdicts,
    OneLeaderPerTerm, RefutesClaims, SimBuilder, Violation,
};

use super::input::Input;

/// When the faults start: the cluster has formed.
const START: Instant = Instant::from_secs(5);
/// How long the faults go on; the heal comes at its end.
const LENGTH: Duration = Duration::from_secs(60);
/// The most faults in a plan.
const MAX_FAULTS: usize = 12;
/// The highest loss at which the false-verdict promise holds (the chaos generator's).
const MAX_PROMISED_LOSS: f64 = 0.1;
/// From this loss on, the link counts as cut (the false-verdict checker excuses it).
const CUT_LOSS: f64 = 0.5;
/// The slowest a member may handle each datagram and still keep up with its load.
const MAX_PROMISED_SLOW: Duration = Duration::from_millis(2);
/// The steadiest a clock is promised to be (the chaos generator's range).
const MAX_DRIFT_PPM: f64 = 1000.0;

/// One run's settings, read from the input.
#[derive(Clone, Debug)]
pub struct Case {
    /// The cluster size.
    pub members: usize,
    /// The preset's name (`lan` or `local`).
    pub preset: &'static str,
    /// How many of the first members vote.
    pub voters: usize,
    /// The run's seed.
    pub seed: u64,
    /// The plan, heal included.
    pub plan: FaultPlan,
}

impl Case {
    /// Reads a case from arbitrary bytes (any bytes make one).
    pub fn read(data: &[u8]) -> Self {
        let mut input = Input(data);
        let members = 3 + usize::from(input.byte() % 5);
        let settings = input.byte();
        let preset = if settings & 1 == 0 { "lan" } else { "local" };
        let voters = usize::from(settings >> 1) % (members + 1);
        let seed = u64::from(input.u32());
        let leave_out = input.byte();
        let ids: Vec<NodeId> = (1..=members as u64).map(NodeId).collect();
        let node = |b: u8| ids[usize::from(b) % members];
        let set = |mask: u8| -> Vec<NodeId> { ids.iter().copied().filter(|id| mask >> (id.0 - 1) & 1 == 1).collect() };
        let end = START + LENGTH;
        let mut plan = FaultPlan::new();
        let mut down = BTreeSet::new();
        let mut slow = BTreeSet::new();
        let mut drifting = BTreeSet::new();
        while !input.0.is_empty() && plan.steps.len() < MAX_FAULTS {
            let (time, kind, target, param) = (input.byte(), input.byte(), input.byte(), input.byte());
            let at = START + Duration::from_millis(u64::from(time) * LENGTH.as_millis() as u64 / 256);
            let left = end - at;
            let fault = match kind % 14 {
                0 => {
                    down.insert(node(target));
                    Fault::Crash(node(target))
                }
                1 | 2 => {
                    down.remove(&node(target));
                    slow.remove(&node(target));
                    drifting.remove(&node(target));
                    let disk = if kind % 14 == 1 { Disk::Kept } else { Disk::Amnesia };
                    Fault::Restart { node: node(target), disk }
                }
                // Two sides: the members in the mask, and the others.
                3 => Fault::Partition(vec![set(param)]),
                4 => {
                    let from = set(param);
                    let to: Vec<NodeId> = set(target).into_iter().filter(|id| !from.contains(id)).collect();
                    Fault::OneWay { from, to }
                }
                5 => Fault::CutLinks(vec![(node(target), node(param))]),
                6 => Fault::Heal,
                7 | 8 => {
                    let links = match param % 4 {
                        0 => LinkSelector::All,
                        1 => LinkSelector::From(node(target)),
                        2 => LinkSelector::To(node(target)),
                        _ => LinkSelector::Between(node(target), node(param >> 2)),
                    };
                    Fault::SetLinks { links, params: link_params(kind % 14 == 7, param) }
                }
                9 => {
                    // A pause ends before the heal (a longer one is a member down at the heal).
                    let ms = (100 + u64::from(param) * 40).min(left.as_millis() as u64).max(1);
                    Fault::Pause { node: node(target), duration: Duration::from_millis(ms) }
                }
                10 => {
                    // Half the range keeps up with the load, half does not.
                    let per_message = if param < 128 {
                        Duration::from_micros(u64::from(param) * 15)
                    } else {
                        Duration::from_micros(u64::from(param - 128) * 400)
                    };
                    if per_message.is_zero() {
                        slow.remove(&node(target));
                    } else {
                        slow.insert(node(target));
                    }
                    Fault::Slow { node: node(target), per_message }
                }
                11 => Fault::ClockOffset { node: node(target), offset_nanos: (i64::from(param) - 128) * 500_000_000 },
                12 => {
                    let ppm = (f64::from(param) - 128.0) / 127.0 * MAX_DRIFT_PPM;
                    drifting.insert(node(target));
                    Fault::ClockDrift { node: node(target), ppm }
                }
                _ => Fault::ClockJump { node: node(target), nanos: (i64::from(param) - 128) * 80_000_000 },
            };
            plan.push(at, fault);
        }
        // The heal, less what the input leaves out.
        if leave_out & 1 == 0 {
            plan.push(end, Fault::Heal);
        }
        if leave_out & 2 == 0 {
            plan.push(end, Fault::SetLinks { links: LinkSelector::All, params: LinkParams::default() });
        }
        for node in down {
            if leave_out & 4 == 0 {
                plan.push(end, Fault::Restart { node, disk: Disk::Kept });
            }
        }
        for node in slow {
            if leave_out & 8 == 0 {
                plan.push(end, Fault::Slow { node, per_message: Duration::ZERO });
            }
        }
        for node in drifting {
            if leave_out & 16 == 0 {
                plan.push(end, Fault::ClockDrift { node, ppm: 0.0 });
            }
        }
        Self { members, preset, voters, seed, plan }
    }

    /// The protocol settings of the preset.
    pub fn config(&self) -> Config {
        if self.preset == "lan" {
            Config::lan()
        } else {
            Config::local()
        }
    }
}

/// A link's behaviour: lossy (`loss`) or otherwise misbehaving, its strength from `param`.
fn link_params(loss: bool, param: u8) -> LinkParams {
    let mut p = LinkParams::default();
    let strength = f64::from(param) / 255.0;
    if loss {
        // Mostly within the promise, sometimes between it and a cut, sometimes a cut.
        p.loss = match param % 8 {
            0 => CUT_LOSS + strength * (1.0 - CUT_LOSS),
            1 => MAX_PROMISED_LOSS + strength * (CUT_LOSS - MAX_PROMISED_LOSS),
            _ => strength * MAX_PROMISED_LOSS,
        };
    } else {
        p.duplicate = strength * 0.3;
        p.reorder = strength * 0.5;
        p.reorder_delay = Duration::from_millis(1 + u64::from(param % 100));
        p.corrupt = strength * 0.05;
        p.stale = strength * 0.02;
        p.stale_delay = Duration::from_secs(30 + u64::from(param));
    }
    p
}

/// Which checkers a plan lets fail, and why (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Promises {
    /// Why election safety is not promised, if it is not.
    pub election_safety: Option<String>,
    /// Why no false failure verdict is not promised, if it is not.
    pub verdicts: Option<String>,
    /// Why liveness after the heal is not promised, if it is not.
    pub liveness: Option<String>,
    /// Why a leader after the heal is not promised, if it is not (on top of `liveness`).
    pub election_liveness: Option<String>,
}

impl Promises {
    /// What the fault model promises for `case`.
    pub fn of(case: &Case) -> Self {
        let mut promises = Self::default();
        let mut overloaded = None;
        let voters: BTreeSet<NodeId> = (1..=case.voters as u64).map(NodeId).collect();
        let majority = case.voters / 2 + 1;
        let wiped: BTreeSet<NodeId> = case
            .plan
            .steps
            .iter()
            .filter_map(|s| match s.fault {
                Fault::Restart { node, disk: Disk::Amnesia } if voters.contains(&node) => Some(node),
                _ => None,
            })
            .collect();
        if !voters.is_empty() && wiped.len() > case.voters - majority {
            let why = format!("{} of {} voters lost their disks (more than a minority)", wiped.len(), case.voters);
            promises.election_safety = Some(why.clone());
            promises.election_liveness = Some(why);
        }

        // The state at the end, step by step in time order (the engine's order).
        let mut steps: Vec<_> = case.plan.steps.iter().enumerate().collect();
        steps.sort_by_key(|(i, s)| (s.at, *i));
        let mut cut = false;
        let mut links_bad = false;
        let mut down = BTreeSet::new();
        let mut slow = BTreeSet::new();
        let mut drifting = BTreeSet::new();
        let mut still_until = Instant::ZERO;
        let mut offsets = std::collections::BTreeMap::new();
        for (_, step) in &steps {
            match &step.fault {
                Fault::Crash(node) => {
                    down.insert(*node);
                }
                Fault::Restart { node, .. } => {
                    down.remove(node);
                    slow.remove(node);
                    drifting.remove(node);
                }
                Fault::Partition(_) | Fault::OneWay { .. } | Fault::CutLinks(_) => cut = true,
                Fault::Heal => cut = false,
                Fault::SetLinks { links, params } => {
                    if params.loss > MAX_PROMISED_LOSS && params.loss < CUT_LOSS {
                        promises.verdicts =
                            Some(format!("a link loses {:.0} % of the datagrams, above 10 %", params.loss * 100.0));
                    }
                    let bad = *params != LinkParams::default();
                    match links {
                        LinkSelector::All => links_bad = bad,
                        _ => links_bad |= bad,
                    }
                }
                Fault::Slow { node, per_message } => {
                    if per_message.is_zero() {
                        slow.remove(node);
                    } else {
                        slow.insert(*node);
                    }
                    if *per_message > MAX_PROMISED_SLOW {
                        overloaded =
                            Some(format!("{node} handles a datagram every {per_message:?}, slower than its load"));
                    }
                }
                Fault::ClockDrift { node, ppm } => {
                    if *ppm == 0.0 {
                        drifting.remove(node);
                    } else {
                        drifting.insert(*node);
                    }
                }
                Fault::ClockJump { nanos, .. } if *nanos < 0 => {
                    still_until = still_until.max(step.at + Duration::from_nanos(nanos.unsigned_abs()));
                }
                Fault::ClockOffset { node, offset_nanos } => {
                    let before = offsets.insert(*node, *offset_nanos).unwrap_or(0);
                    if *offset_nanos < before {
                        let back = (before - offset_nanos).unsigned_abs();
                        still_until = still_until.max(step.at + Duration::from_nanos(back));
                    }
                }
                Fault::Pause { duration, .. } => still_until = still_until.max(step.at + *duration),
                _ => {}
            }
        }
        let last = case.plan.last_at().unwrap_or(Instant::ZERO);
        let mut unhealed = Vec::new();
        if cut {
            unhealed.push("the network stays cut".to_string());
        }
        if links_bad {
            unhealed.push("links keep misbehaving".to_string());
        }
        if !down.is_empty() {
            unhealed.push(format!("{down:?} stay down"));
        }
        if !slow.is_empty() {
            unhealed.push(format!("{slow:?} stay slow"));
        }
        if !drifting.is_empty() {
            unhealed.push(format!("{drifting:?} keep drifting"));
        }
        if let Some(why) = overloaded {
            promises.verdicts.get_or_insert_with(|| why.clone());
            unhealed.push(why);
        }
        if still_until > last {
            unhealed.push(format!("a member is paused or its clock stands still until {still_until}"));
        }
        if !unhealed.is_empty() {
            promises.liveness = Some(unhealed.join(", "));
        }
        let voters_up = voters.iter().filter(|v| !down.contains(v)).count();
        if !voters.is_empty() && voters_up < majority {
            promises.election_liveness = Some(format!("{voters_up} of {} voters run at the end", case.voters));
        }
        promises
    }

    /// Why `violation` is outside this plan's promises, or `None` if it is a finding.
    pub fn excuse(&self, violation: &Violation) -> Option<String> {
        let liveness = self.liveness.clone();
        match violation.checker {
            OneLeaderPerTerm::NAME | LeaseExclusive::NAME => self.election_safety.clone(),
            NoFalseVerdicts::NAME => self.verdicts.clone(),
            Converges::NAME => liveness,
            RefutesClaims::NAME => liveness,
            ElectsAfterHeal::NAME => liveness.or(self.election_liveness.clone()),
            _ => None,
        }
    }
}

/// The target's body: runs the case until every checker has judged (bounded), and panics
/// on a violation the plan's promises do not excuse.
pub fn run(data: &[u8]) {
    let case = Case::read(data);
    let promises = Promises::of(&case);
    let mut sim = SimBuilder::new()
        .seed(case.seed)
        .members(case.members)
        .config(case.config())
        .voters(case.voters)
        .plan(case.plan.clone())
        .replay_command("the fuzz target sim_plan, on this input (fuzz/README.md)")
        .build()
        .expect("a plan that names only the cluster's members builds");
    let limit = case.plan.last_at().unwrap_or(Instant::ZERO) + Duration::from_secs(900);
    sim.run_until_judged(limit);
    let report = sim.finish();
    let findings: Vec<String> =
        report.violations.iter().filter(|v| promises.excuse(v).is_none()).map(ToString::to_string).collect();
    assert!(
        findings.is_empty(),
        "{} members ({} preset, {} voting), a plan inside the promises ({promises:?}):\n{}",
        case.members,
        case.preset,
        case.voters,
        findings.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promises_follow_the_plan() {
        // No faults at all: every promise holds.
        let calm = Case::read(&[2, 6, 1, 0, 0, 0, 0]);
        assert_eq!((calm.members, calm.voters), (5, 3));
        assert_eq!(Promises::of(&calm), Promises::default());
        // Two of three voters wiped: election safety is not promised.
        let wiped = Case::read(&[0, 6, 1, 0, 0, 0, 0, 10, 2, 0, 0, 20, 2, 1, 0]);
        assert!(Promises::of(&wiped).election_safety.is_some(), "{:?}", wiped.plan);
        // A partition never healed: liveness is not promised, safety is.
        let split = Case::read(&[0, 6, 1, 0, 0, 0, 1, 10, 3, 0, 1]);
        let promises = Promises::of(&split);
        assert!(promises.liveness.is_some() && promises.election_safety.is_none(), "{promises:?}");
    }
}
