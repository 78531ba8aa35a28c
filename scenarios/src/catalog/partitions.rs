//! Scenarios of cuts: a partition and its heal, partial connectivity, a one-way cut, a
//! member bridging two sides, a big partition.

use std::time::Duration;

use conclave_core::{Config, Instant, NodeId};
use conclave_sim::check::max_suspicion_timeout;
use conclave_sim::{sim_id, Checker, Fault, FaultPlan};

use super::bounds::{ConnectedMajority, DecidesPartitions, OneSideRuns, StableLeaderUnderCuts};
use super::{draws, some_members, Members, Preset, Scenario, Setup};

/// Within this of a split every member has decided its side: the longest suspicion (the
/// far side suspected, and the roll call started), `stable_after` (the picture stays the
/// same) and three probe periods (the roll call's time to answer, with room). 11.75 s at
/// five lan members (`bench election` measures 7.5 s at most over 100 seeds).
fn decision_bound(config: &Config, n: usize) -> Duration {
    let stable = config.partition.as_ref().map_or(Duration::ZERO, |p| p.stable_after);
    max_suspicion_timeout(config, n) + stable + config.probe_period() * 3
}

/// The first `n` members in an order drawn from `rng` (Fisher-Yates).
fn shuffled(rng: &mut conclave_sim::SimRng, n: usize) -> Vec<NodeId> {
    let mut members: Vec<NodeId> = (0..n).map(sim_id).collect();
    for i in (1..members.len()).rev() {
        members.swap(i, rng.below(i as u64 + 1) as usize);
    }
    members
}

/// How old a cut must be before a decision answers to it: `stable_after` (how long the
/// picture stands, and how old the roll call's answers may be) and a probe period (a
/// member's time to answer).
fn decision_grace(config: &Config) -> Duration {
    config.partition.as_ref().map_or(Duration::ZERO, |p| p.stable_after) + config.probe_period()
}

/// Within this of the heal every member says it healed: ten probe periods for a watcher
/// to reach across, the views to merge and the news to spread (7.5 s at lan;
/// `bench election` measures 0.76 s at most at five members).
fn heal_bound(config: &Config) -> Duration {
    config.probe_period() * 10
}

/// A minority cut off, then healed.
pub(crate) const PARTITION_HEAL: Scenario = Scenario {
    name: "partition-heal",
    summary: "a minority is cut off for 20 s to 5 min: both sides decide, the minority goes read-only, all heal",
    doc: "Five members, all voting. At 10 s a minority (two of five, drawn from the seed) is cut off \
          from the rest, for 20 s, 30 s, 1 min or 5 min by the seed. Every member must decide its \
          side within the decision bound (the longest suspicion, `stable_after` and three probe \
          periods: 11.75 s), all naming the same sides, each side within one side of the cut; the \
          minority must go read-only; never may both sides run. Within ten probe periods of the \
          heal every member must say the partition healed and the minority regain quorum. Failure \
          verdicts across the cut are excused until the heal; one between members of the same side \
          is false, however long the cut lasted.",
    members: Members::Fixed(5),
    min_members: 3,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 4,
    plan: |seed, n| {
        let mut rng = draws(seed, "partition-heal");
        let minority = some_members(&mut rng, n, (n - 1) / 2);
        let length = [20, 30, 60, 300][(seed % 4) as usize];
        let split = Instant::from_secs(10);
        FaultPlan::new()
            .at(split, Fault::Partition(vec![minority]))
            .at(split + Duration::from_secs(length), Fault::Heal)
    },
    bounds: |s| {
        vec![
            Box::new(DecidesPartitions::new(
                decision_bound(&s.config, s.members),
                heal_bound(&s.config),
                false,
                s.voters.clone(),
            )) as Box<dyn Checker>,
            Box::new(OneSideRuns::default()),
        ]
    },
    service: None,
};

/// The Cloudflare topology.
pub(crate) const PARTIAL_CONNECTIVITY: Scenario = Scenario {
    name: "partial-connectivity",
    summary: "three voters fully connected, two reaching one each (Cloudflare, 2020): one stable leader",
    doc: "Five voters; at 10 s links are cut so that three of them (drawn from the seed) still \
          reach everyone, one of the other two reaches only one of the three, the other only \
          another (the half-failed switch of Cloudflare's November 2020 incident, where one etcd \
          member kept calling elections). For ten minutes, once 5 s have passed, the three fully \
          connected members must follow one of themselves and nobody may be elected again: \
          PreVote, CheckQuorum and vote stickiness keep the edge members from deposing a healthy \
          leader. Never may two sides both decide they keep running.",
    members: Members::Fixed(5),
    min_members: 5,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 4,
    plan: |seed, _| {
        let mut rng = draws(seed, "partial-connectivity");
        // The five voters in an order drawn from the seed: three at the core, two at the edge.
        let roles = shuffled(&mut rng, 5);
        let [a, b, c, d, e] = [roles[0], roles[1], roles[2], roles[3], roles[4]];
        // d reaches only b, e only c.
        let cut = vec![(d, a), (d, c), (d, e), (e, a), (e, b)];
        let at = Instant::from_secs(10);
        FaultPlan::new().at(at, Fault::CutLinks(cut)).at(at + Duration::from_secs(600), Fault::Heal)
    },
    bounds: |_| {
        vec![
            Box::new(StableLeaderUnderCuts::new(Duration::from_secs(5))) as Box<dyn Checker>,
            Box::new(OneSideRuns::default()),
        ]
    },
    service: None,
};

/// A minority that can hear the rest but not be heard.
pub(crate) const ONE_WAY_CUT: Scenario = Scenario {
    name: "one-way-cut",
    summary: "two of five can hear the others but not reach them for a minute: decided right or not at all",
    doc: "Five members, all voting. At 10 s two of them (drawn from the seed) can still receive \
          from the other three but no longer reach them, for 60 s; then every link heals. The \
          view of each side is asymmetric: the two hear the three, and the claims against \
          them, but cannot answer. A side that keeps running must be one the network lets \
          act together (never the two with the three, never both), and a leader per term with \
          exclusive leases throughout.",
    members: Members::Fixed(5),
    min_members: 3,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 4,
    plan: |seed, n| {
        let mut rng = draws(seed, "one-way-cut");
        let deaf = some_members(&mut rng, n, (n - 1) / 2);
        let rest: Vec<NodeId> = (0..n).map(sim_id).filter(|id| !deaf.contains(id)).collect();
        let at = Instant::from_secs(10);
        FaultPlan::new().at(at, Fault::OneWay { from: deaf, to: rest }).at(at + Duration::from_secs(60), Fault::Heal)
    },
    bounds: |s| {
        vec![
            Box::new(ConnectedMajority::new(decision_grace(&s.config))) as Box<dyn Checker>,
            Box::new(OneSideRuns::default()),
        ]
    },
    service: None,
};

/// Two sides that reach each other only through one member, while another member is down.
pub(crate) const BRIDGE_MEMBER: Scenario = Scenario {
    name: "bridge-member",
    summary: "two pairs cut apart, one member reaching both, one member down: no side may count the bridge as its own",
    doc: "Six members, five voting. At 5 s one member (drawn from the seed) crashes and stays \
          down, so every picture shows someone unreachable. At 10 s the other five are split \
          into two pairs that cannot reach each other and one member that still reaches both, \
          for two minutes. Each pair reaches three members, the bridge included: were each to \
          count the bridge on its side, both would take themselves for the majority. Akka's \
          indirectly connected members, Cloudflare's half-failed switch. A side that keeps \
          running must be one the network lets act together, never two sides at once, and a \
          leader per term with exclusive leases throughout. Deciding nothing is right here.",
    members: Members::Fixed(6),
    min_members: 6,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 4,
    plan: |seed, n| {
        let mut rng = draws(seed, "bridge-member");
        let roles = shuffled(&mut rng, n);
        let (down, a, b) = (roles[0], [roles[1], roles[2]], [roles[3], roles[4]]);
        let cut: Vec<(NodeId, NodeId)> = a.iter().flat_map(|&x| b.iter().map(move |&y| (x, y))).collect();
        let at = Instant::from_secs(10);
        FaultPlan::new()
            .at(Instant::from_secs(5), Fault::Crash(down))
            .at(at, Fault::CutLinks(cut))
            .at(at + Duration::from_secs(120), Fault::Heal)
    },
    bounds: |s| {
        vec![
            Box::new(ConnectedMajority::none_is_right(decision_grace(&s.config))) as Box<dyn Checker>,
            Box::new(OneSideRuns::default()),
        ]
    },
    service: None,
};

/// A hundred members cut in half along their ids.
pub(crate) const BIG_PARTITION: Scenario = Scenario {
    name: "big-partition",
    summary: "a hundred members cut in half along their ids for 2 min: every member decides on the whole picture",
    doc: "A hundred members, none voting (the expected members are everyone known); at 30 s the \
          first half (n1-n50) is cut off from the second for 120 s. The monitoring ring is sorted by \
          id, so the cut crosses it at two places only and the view finds the other side a few \
          members at a time: every member's first decision must still name the cut exactly, never \
          the few members found first (a member that did once kept running with 97 of 100), and \
          every member must decide within the decision bound; within ten probe periods of the \
          heal all say it healed. Verdicts between members of the same side are false however long the cut lasts. \
          Nobody votes, so the leader checkers have nothing to judge.",
    members: Members::Fixed(100),
    min_members: 4,
    preset: Preset::Lan,
    voters: 0,
    default_seeds: 2,
    plan: |_, n| big_partition_plan(n),
    bounds: |s: &Setup| {
        vec![
            Box::new(DecidesPartitions::new(
                decision_bound(&s.config, s.members),
                heal_bound(&s.config),
                true,
                s.voters.clone(),
            )) as Box<dyn Checker>,
            Box::new(OneSideRuns::default()),
        ]
    },
    service: None,
};

/// How long the big partition lasts.
pub const BIG_CUT: Duration = Duration::from_secs(120);

/// When the big partition begins.
pub const BIG_SPLIT: Instant = Instant::from_secs(30);

/// The big partition's plan for `n` members: n1 to n(n/2) cut off at 30 s, healed 120 s
/// later (`bench election` measures the same cut at 20, 50 and 100 members).
pub fn big_partition_plan(n: usize) -> FaultPlan {
    let half: Vec<NodeId> = (0..n / 2).map(sim_id).collect();
    FaultPlan::new().at(BIG_SPLIT, Fault::Partition(vec![half])).at(BIG_SPLIT + BIG_CUT, Fault::Heal)
}
