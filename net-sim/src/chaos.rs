//! Random chaos: a seeded generator of fault plans, in the swarm-testing style.
//!
//! Each seed turns on its own random subset of fault kinds ([`Kind`]) — some seeds only
//! crash and partition, others only lose, corrupt and skew clocks — and draws a cluster
//! size (mostly 3 to 12 members, one seed in eight 30 to 60), then a chaos phase of random
//! faults of those kinds at random times, on random targets, with random strengths.
//! Some reach paths that plain faults rarely do: clocks drifting just inside the bound the
//! leader lease is built for, a voter dying between its vote and the write that must
//! precede it ([`Fault::CrashAtPersist`]), a member declared failed that hears the claims
//! about it out of order.
//! Disks are wiped (restarts on amnesia) on a minority of the voters at most: a majority
//! that forgot its votes is outside what a quorum can survive. The chaos phase ends with
//! everything healed: the network (cuts and link behaviour),
//! crashed members restarted with their disks, drifting clocks set right. What follows is
//! the healed phase, in which liveness must hold: the standard checkers judge that every
//! view converges within the bound after the last step. Stale copies of datagrams sent
//! during the chaos may still arrive minutes into the healed phase, as from a misbehaving
//! middlebox.
//!
//! ```
//! use conclave_core::Instant;
//! use conclave_sim::chaos::Chaos;
//!
//! let chaos = Chaos::generate(7);
//! assert_eq!(chaos, Chaos::generate(7), "a seed draws one plan");
//! let report = chaos.run();
//! println!("{} members, kinds {:?}: {:?}", chaos.members, chaos.kinds, report.checks);
//! report.assert_clean();
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use conclave_core::{Config, Instant, NodeId};

use crate::fault::{Disk, Fault, FaultPlan};
use crate::network::{Latency, LinkParams, LinkSelector, SimRng};
use crate::sim::{sim_id, Report, SimBuilder};

/// A kind of fault a chaos seed may turn on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A member's process dies (and comes back at the heal).
    Crash,
    /// A member's process is killed and restarted with its disk.
    RestartKept,
    /// A member's process is killed and restarted on a wiped disk.
    RestartAmnesia,
    /// The cluster splits into two or three sides.
    Partition,
    /// Some members stop reaching some others, one way.
    OneWay,
    /// Links lose datagrams.
    Loss,
    /// Links deliver datagrams twice.
    Duplicate,
    /// Links hold some datagrams back, so others overtake them.
    Reorder,
    /// Links flip bits.
    Corrupt,
    /// Links let stale copies through minutes later.
    Stale,
    /// A member's process stalls.
    Pause,
    /// A member's clock is set elsewhere.
    ClockOffset,
    /// A member's clock runs fast or slow.
    ClockDrift,
    /// A member's clock steps forward or back.
    ClockJump,
    /// A voter's process dies at its next durable write, between a vote (or its own
    /// candidacy) and the write that must precede it, while another voter stalls (so an
    /// election follows); it restarts with its disk soon after.
    CrashAtPersist,
    /// A member is cut off both ways for longer than a detection takes, then hears again
    /// with its incoming datagrams reordered: the claims about it (the verdict, the
    /// suspicion) may reach it in any order, and it must refute whichever comes first.
    FailedFirst,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Self; 16] = [
        Self::Crash,
        Self::RestartKept,
        Self::RestartAmnesia,
        Self::Partition,
        Self::OneWay,
        Self::Loss,
        Self::Duplicate,
        Self::Reorder,
        Self::Corrupt,
        Self::Stale,
        Self::Pause,
        Self::ClockOffset,
        Self::ClockDrift,
        Self::ClockJump,
        Self::CrashAtPersist,
        Self::FailedFirst,
    ];

    fn is_link(self) -> bool {
        matches!(self, Self::Loss | Self::Duplicate | Self::Reorder | Self::Corrupt | Self::Stale)
    }
}

/// When the chaos starts: the cluster has formed.
pub const CHAOS_START: Instant = Instant::from_secs(5);

/// How long the chaos phase lasts.
pub const CHAOS_LENGTH: Duration = Duration::from_secs(60);

/// How many members vote in a chaos run (all of them when fewer): the election runs
/// under every fault the seed turns on, and its checkers judge it.
pub const VOTERS: usize = 5;

/// The longest a chaos run lasts: the heal plus the convergence bound and stale copies
/// come well within it.
pub const RUN_LIMIT: Duration = Duration::from_secs(1800);

/// One seed's chaos: its cluster, the kinds it turned on, and its plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Chaos {
    /// The seed (of the generator and of the run).
    pub seed: u64,
    /// The cluster size.
    pub members: usize,
    /// The kinds of fault this seed turned on.
    pub kinds: BTreeSet<Kind>,
    /// The plan: the chaos phase, then the heal.
    pub plan: FaultPlan,
    /// When everything is healed.
    pub healed_at: Instant,
}

/// Uniform in `[lo, hi]`.
fn between(rng: &mut SimRng, lo: u64, hi: u64) -> u64 {
    lo + rng.below(hi - lo + 1)
}

fn uniform(rng: &mut SimRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.unit()
}

fn pick<T: Copy>(rng: &mut SimRng, from: &[T]) -> T {
    from[rng.below(from.len() as u64) as usize]
}

/// `k` distinct members of `ids`, in id order.
fn some(rng: &mut SimRng, ids: &[NodeId], k: usize) -> Vec<NodeId> {
    let mut pool = ids.to_vec();
    let mut out = Vec::with_capacity(k);
    for _ in 0..k.min(pool.len()) {
        let i = rng.below(pool.len() as u64) as usize;
        out.push(pool.swap_remove(i));
    }
    out.sort();
    out
}

impl Chaos {
    /// The chaos of `seed`: every draw from its own stream, so the same seed always gives
    /// the same cluster, kinds and plan.
    pub fn generate(seed: u64) -> Self {
        Self::generate_sized(seed, None)
    }

    /// The chaos of `seed` on a cluster of `members` (at least 3), or of the size the seed
    /// draws.
    pub fn generate_sized(seed: u64, members: Option<usize>) -> Self {
        let mut rng = SimRng::new(seed ^ 0x6368_616f_735f_6765); // "chaos_ge"
        let drawn = if rng.below(8) == 0 { between(&mut rng, 30, 60) } else { between(&mut rng, 3, 12) } as usize;
        let members = members.map_or(drawn, |m| m.max(3));
        // Swarm testing: each kind on with probability one half, at least one.
        let mut kinds: BTreeSet<Kind> = Kind::ALL.iter().copied().filter(|_| rng.below(2) == 0).collect();
        if kinds.is_empty() {
            kinds.insert(pick(&mut rng, &Kind::ALL));
        }
        let on: Vec<Kind> = kinds.iter().copied().collect();
        let ids: Vec<NodeId> = (0..members).map(sim_id).collect();
        let end = CHAOS_START + CHAOS_LENGTH;
        let mut steps: Vec<(Instant, Fault)> = Vec::new();
        let faults = between(&mut rng, 2, 12);
        let mut times: Vec<Instant> = (0..faults)
            .map(|_| CHAOS_START + Duration::from_millis(rng.below(CHAOS_LENGTH.as_millis() as u64)))
            .collect();
        // In time order, so that each clock offset knows the one before it.
        times.sort();
        let mut offsets = std::collections::BTreeMap::new();
        // Voters whose disks were wiped: at most a minority of them. A majority that lost
        // its disks has forgotten the terms it voted in, which no quorum can recover (the
        // election then waits rather than risk a second leader in a term): outside the
        // fault model a chaos run must pass.
        let voters = VOTERS.min(members);
        let mut wiped: BTreeSet<NodeId> = BTreeSet::new();
        for at in times {
            let kind = pick(&mut rng, &on);
            let node = pick(&mut rng, &ids);
            let fault = match kind {
                Kind::Crash => Fault::Crash(node),
                Kind::RestartKept => Fault::Restart { node, disk: Disk::Kept },
                Kind::RestartAmnesia => {
                    let voter = ids.iter().position(|&id| id == node).is_some_and(|i| i < voters);
                    if voter && !wiped.contains(&node) && wiped.len() >= (voters - 1) / 2 {
                        Fault::Restart { node, disk: Disk::Kept }
                    } else {
                        if voter {
                            wiped.insert(node);
                        }
                        Fault::Restart { node, disk: Disk::Amnesia }
                    }
                }
                Kind::Partition => {
                    let sides = if members >= 6 && rng.below(3) == 0 { 3 } else { 2 };
                    let mut groups = vec![Vec::new(); sides];
                    for &id in &ids {
                        groups[rng.below(sides as u64) as usize].push(id);
                    }
                    // The last side is the members no group names.
                    groups.pop();
                    Fault::Partition(groups)
                }
                Kind::OneWay => {
                    let k = between(&mut rng, 1, (members / 2).max(1) as u64) as usize;
                    let from = some(&mut rng, &ids, k);
                    let rest: Vec<NodeId> = ids.iter().copied().filter(|id| !from.contains(id)).collect();
                    let k = between(&mut rng, 1, rest.len().max(1) as u64) as usize;
                    let to = some(&mut rng, &rest, k);
                    Fault::OneWay { from, to }
                }
                Kind::Pause => {
                    let left = (end - at).as_millis() as u64;
                    Fault::Pause {
                        node,
                        duration: Duration::from_millis(between(&mut rng, 100, 10_000.min(left.max(100)))),
                    }
                }
                Kind::ClockOffset => {
                    // Offsets replace each other: a step back (which stands the member's
                    // clock still) must end before the heal, like a pause.
                    let left = (end - at).as_millis() as i64;
                    let before = offsets.get(&node).copied().unwrap_or(0);
                    let ms = (between(&mut rng, 0, 120_000) as i64 - 60_000).max(before - left);
                    offsets.insert(node, ms);
                    Fault::ClockOffset { node, offset_nanos: ms * 1_000_000 }
                }
                Kind::ClockDrift => {
                    // Half the drifts just inside the bound the lease is built for, where
                    // its margin is thinnest; the others anywhere up to twice it.
                    let bound = Config::lan().election.max_clock_drift * 1e6;
                    let ppm = if rng.below(2) == 0 {
                        let near = uniform(&mut rng, 0.8 * bound, bound);
                        if rng.below(2) == 0 {
                            near
                        } else {
                            -near
                        }
                    } else {
                        uniform(&mut rng, -2.0 * bound, 2.0 * bound)
                    };
                    Fault::ClockDrift { node, ppm }
                }
                Kind::CrashAtPersist => {
                    let voter = pick(&mut rng, &ids[..voters]);
                    let others: Vec<NodeId> = ids[..voters].iter().copied().filter(|&v| v != voter).collect();
                    if let Some(&stalled) = others.get(rng.below(others.len().max(1) as u64) as usize) {
                        let stall = Duration::from_millis(between(&mut rng, 300, 1500));
                        steps.push((at, Fault::Pause { node: stalled, duration: stall }));
                    }
                    let back = (at + Duration::from_millis(between(&mut rng, 200, 3000))).min(end);
                    steps.push((back, Fault::Restart { node: voter, disk: Disk::Kept }));
                    Fault::CrashAtPersist(voter)
                }
                Kind::FailedFirst => {
                    // Cut off both ways (a member that still sends is still heard), then
                    // back with its incoming datagrams reordered by up to two seconds, so
                    // claims about it may arrive in any order, the verdict before the
                    // suspicion; the heal restores its links.
                    let deaf = Duration::from_millis(between(&mut rng, 8_000, 15_000));
                    let back = (at + deaf).min(end);
                    let cut = LinkParams::default().with_loss(1.0);
                    let reordered =
                        LinkParams { reorder: 0.6, reorder_delay: Duration::from_secs(2), ..LinkParams::default() };
                    steps.push((at, Fault::SetLinks { links: LinkSelector::From(node), params: cut.clone() }));
                    steps.push((
                        back,
                        Fault::SetLinks { links: LinkSelector::From(node), params: LinkParams::default() },
                    ));
                    steps.push((back, Fault::SetLinks { links: LinkSelector::To(node), params: reordered }));
                    steps.push((end, Fault::SetLinks { links: LinkSelector::To(node), params: LinkParams::default() }));
                    Fault::SetLinks { links: LinkSelector::To(node), params: cut }
                }
                Kind::ClockJump => {
                    let left = (end - at).as_millis();
                    let size = between(&mut rng, 100, 10_000) as i64 * 1_000_000;
                    let back = rng.below(2) == 0 && size <= left as i64 * 1_000_000;
                    Fault::ClockJump { node, nanos: if back { -size } else { size } }
                }
                Kind::Loss | Kind::Duplicate | Kind::Reorder | Kind::Corrupt | Kind::Stale => {
                    let links = match rng.below(4) {
                        0 => LinkSelector::All,
                        1 => LinkSelector::From(node),
                        2 => LinkSelector::To(node),
                        _ => LinkSelector::Between(node, pick(&mut rng, &ids)),
                    };
                    Fault::SetLinks { links, params: link_params(&mut rng, &on) }
                }
            };
            steps.push((at, fault));
        }
        let mut plan = FaultPlan::new();
        let mut down = BTreeSet::new();
        let mut drifting = BTreeSet::new();
        for (at, fault) in steps {
            match &fault {
                Fault::Crash(n) => {
                    down.insert(*n);
                }
                Fault::Restart { node, .. } => {
                    down.remove(node);
                }
                Fault::ClockDrift { node, .. } => {
                    drifting.insert(*node);
                }
                _ => {}
            }
            plan.push(at, fault);
        }
        // The heal: the network whole again, every crashed member back with its disk,
        // every clock running at the right rate (offsets stay: they are harmless).
        plan.push(end, Fault::Heal);
        if on.iter().any(|k| k.is_link()) {
            plan.push(end, Fault::SetLinks { links: LinkSelector::All, params: LinkParams::default() });
        }
        for node in down {
            plan.push(end, Fault::Restart { node, disk: Disk::Kept });
        }
        for node in drifting {
            plan.push(end, Fault::ClockDrift { node, ppm: 0.0 });
        }
        Self { seed, members, kinds, plan, healed_at: end }
    }

    /// The simulation of this chaos: its seed, members and plan, the first
    /// [`VOTERS`] members voting, and the standard checkers (the leader checkers among them).
    pub fn builder(&self) -> SimBuilder {
        SimBuilder::new().seed(self.seed).members(self.members).voters(VOTERS).plan(self.plan.clone())
    }

    /// Runs the simulation until every checker has judged (at most [`RUN_LIMIT`]) and
    /// returns its report.
    ///
    /// # Panics
    ///
    /// If the simulation does not build: the generator names only its own members.
    pub fn run(&self) -> Report {
        let mut sim = self.builder().build().expect("a generated plan names only the cluster's members");
        sim.run_until_judged(Instant::ZERO + RUN_LIMIT);
        sim.finish()
    }
}

/// A link's behaviour with a random strength of each link kind that is on.
fn link_params(rng: &mut SimRng, on: &[Kind]) -> LinkParams {
    let mut p = LinkParams::default();
    if rng.below(2) == 0 {
        p.latency = Latency::LogNormal { median: Duration::from_micros(between(rng, 200, 5_000)), sigma: 0.5 };
    }
    for kind in on {
        match kind {
            Kind::Loss => p.loss = uniform(rng, 0.01, 0.1),
            Kind::Duplicate => p.duplicate = uniform(rng, 0.01, 0.3),
            Kind::Reorder => {
                p.reorder = uniform(rng, 0.05, 0.5);
                p.reorder_delay = Duration::from_millis(between(rng, 1, 100));
            }
            Kind::Corrupt => p.corrupt = uniform(rng, 0.005, 0.05),
            Kind::Stale => {
                p.stale = uniform(rng, 0.001, 0.02);
                p.stale_delay = Duration::from_secs(between(rng, 30, 300));
            }
            _ => {}
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_vary_kinds_sizes_and_plans_and_every_plan_ends_healed() {
        let all: Vec<Chaos> = (0..400).map(Chaos::generate).collect();
        let kinds: BTreeSet<Kind> = all.iter().flat_map(|c| c.kinds.iter().copied()).collect();
        assert_eq!(kinds.len(), Kind::ALL.len(), "every kind turns up");
        let subsets: BTreeSet<Vec<Kind>> = all.iter().map(|c| c.kinds.iter().copied().collect()).collect();
        assert!(subsets.len() > 300, "{} distinct subsets of 400", subsets.len());
        let large = all.iter().filter(|c| c.members >= 30).count();
        assert!((20..=80).contains(&large), "{large} large clusters of 400");
        assert!(all.iter().all(|c| (3..=12).contains(&c.members) || (30..=60).contains(&c.members)));
        for c in &all {
            assert_eq!(c.plan.last_at(), Some(c.healed_at));
            let healed = c.plan.steps.iter().filter(|s| s.at == c.healed_at).any(|s| s.fault == Fault::Heal);
            assert!(healed, "seed {}", c.seed);
            // Every crashed member is restarted by the end.
            let mut down = BTreeSet::new();
            for s in &c.plan.steps {
                match s.fault {
                    Fault::Crash(n) => {
                        down.insert(n);
                    }
                    Fault::Restart { node, .. } => {
                        down.remove(&node);
                    }
                    _ => {}
                }
            }
            assert!(down.is_empty(), "seed {}: {down:?} stay down", c.seed);
            let names = |f: &Fault| match f {
                Fault::Crash(_) => Some(Kind::Crash),
                Fault::Partition(_) => Some(Kind::Partition),
                Fault::OneWay { .. } => Some(Kind::OneWay),
                Fault::Pause { .. } => Some(Kind::Pause),
                Fault::ClockJump { .. } => Some(Kind::ClockJump),
                Fault::ClockOffset { .. } => Some(Kind::ClockOffset),
                _ => None,
            };
            for s in c.plan.steps.iter().filter(|s| s.at < c.healed_at) {
                // A crash at a write stalls another voter to set off an election.
                let stalls = matches!(s.fault, Fault::Pause { .. }) && c.kinds.contains(&Kind::CrashAtPersist);
                if let Some(kind) = names(&s.fault).filter(|_| !stalls) {
                    assert!(c.kinds.contains(&kind), "seed {}: {kind:?} is off", c.seed);
                }
            }
        }
        assert_eq!(Chaos::generate(3), Chaos::generate(3));
        assert_eq!(Chaos::generate_sized(3, Some(Chaos::generate(3).members)), Chaos::generate(3));
        assert_ne!(Chaos::generate(3).plan, Chaos::generate(4).plan);
    }

    #[test]
    fn every_plan_prints_and_parses_back_to_the_same_plan() {
        // A printed plan is what a failing seed shows and a plan file holds: it must replay
        // the very same run, floats (loss rates, drifts) to the last bit.
        for seed in 1..=500 {
            let plan = Chaos::generate(seed).plan;
            let text = plan.to_string();
            assert_eq!(text.parse::<FaultPlan>().as_ref(), Ok(&plan), "seed {seed}: {text}");
            assert_eq!(format!("{plan:#}").parse::<FaultPlan>(), Ok(plan), "seed {seed}");
        }
    }
}
