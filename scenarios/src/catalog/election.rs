//! Scenarios of the election: the leader crashes; leases on a network faster than their
//! drift margin.

use std::time::Duration;

use conclave_core::{Config, Instant, NodeId};
use conclave_sim::{Disk, Fault, FaultPlan, LinkParams, LinkSelector, SimBuilder, TraceMode};

use super::bounds::ReplacesCrashedLeader;
use super::{draws, millis_between, some_members, Members, Preset, Scenario};

/// Within this of the leader's crash a new one is elected: the heartbeat the crash
/// interrupted, one election timeout for a follower to notice, and three more for rounds
/// that split or yield (1.25 s at lan's 150-300 ms; `bench election` measures a worst of
/// 304 ms over 1000 trials).
fn election_bound(config: &Config) -> Duration {
    config.election.heartbeat_interval + config.election.election_timeout_max * 4
}

/// The leader of a cluster of `n` running `seed` with no fault, just before `at`: the
/// member every running member names, or n1 when they do not agree.
fn leader_before(seed: u64, n: usize, at: Instant) -> NodeId {
    let sim = SimBuilder::new()
        .seed(seed)
        .members(n)
        .config(LEADER_CRASH.preset.config())
        .voters(LEADER_CRASH.voters)
        .trace(TraceMode::HashOnly)
        .build();
    // A plan-free cluster of valid size always builds; without one, n1 is as good a guess.
    let Ok(mut sim) = sim else { return NodeId(1) };
    sim.run_until(at - Duration::from_nanos(1));
    let mut named = sim.ids().into_iter().filter_map(|id| sim.node(id)).map(|node| node.leader());
    let first = named.next().flatten();
    match first {
        Some(leader) if named.all(|l| l == Some(leader)) => leader,
        _ => NodeId(1),
    }
}

/// The leader crashes.
pub(crate) const LEADER_CRASH: Scenario = Scenario {
    name: "leader-crash",
    summary: "the leader crashes at about 10 s: a new one is elected within the bound",
    doc: "Five members, all voting, elect a leader; between 10 and 11 s (by the seed) the member \
          that leads then crashes, and it restarts with its disk 20 s later. The plan names the \
          leader by its id: it is found by running the same seed without faults up to the crash \
          (the run is the same until then). A new leader must be elected in a later term within the \
          election bound (the heartbeat, then four election timeouts: 1.25 s at lan), one per term \
          and with exclusive leases throughout; the old leader rejoins as a follower.",
    members: Members::Fixed(5),
    min_members: 3,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 6,
    plan: |seed, n| {
        let mut rng = draws(seed, "leader-crash");
        let at = Instant::from_secs(10) + millis_between(&mut rng, 0, 999);
        let leader = leader_before(seed, n, at);
        FaultPlan::new()
            .at(at, Fault::Crash(leader))
            .at(at + Duration::from_secs(20), Fault::Restart { node: leader, disk: Disk::Kept })
    },
    bounds: |s| vec![Box::new(ReplacesCrashedLeader::new(election_bound(&s.config)))],
    service: None,
};

/// Leases on a network one rack wide, where the drift margin is all that keeps them apart.
pub(crate) const LEASE_FAST_NETWORK: Scenario = Scenario {
    name: "lease-fast-network",
    summary: "links of 20 us, clocks drifting at the bound, pairs cut off: leases within the voters' promises",
    doc: "Five members, all voting, one rack apart: every link delivers in 20 us, well under the \
          lease's drift margin (150 us of election_timeout_min's 150 ms at the default 500 ppm), so \
          the margin, not the network's delay, is what keeps one leader's lease from outlasting the \
          voters' promise not to elect another. From 1 s one voter's clock runs fast and another's \
          slow, at the bound; between 10 and 11 s two members drawn from the seed (the leader among \
          them two times in five) are cut off from the other three for 5 s, and at 30 s another pair \
          for 5 s. The standard checkers judge every lease held: exclusive between members, and \
          within the promises of the voters it stands on at every clock the drift bound allows \
          (`lease-within-voters-promises`; a lease that leaves out the drift margin breaks it here \
          at once, where the 500 us links of the other scenarios hide it).",
    members: Members::Fixed(5),
    min_members: 5,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 4,
    plan: |seed, n| {
        let mut rng = draws(seed, "lease-fast-network");
        let drifting = some_members(&mut rng, n, 2);
        let rack = LinkParams::constant(Duration::from_micros(20));
        let mut plan = FaultPlan::new()
            .at(Instant::ZERO, Fault::SetLinks { links: LinkSelector::All, params: rack })
            .at(Instant::from_secs(1), Fault::ClockDrift { node: drifting[0], ppm: 500.0 })
            .at(Instant::from_secs(1), Fault::ClockDrift { node: drifting[1], ppm: -500.0 });
        for start in [10, 30] {
            let pair = some_members(&mut rng, n, 2);
            let at = Instant::from_secs(start) + millis_between(&mut rng, 0, 999);
            plan = plan.at(at, Fault::Partition(vec![pair])).at(at + Duration::from_secs(5), Fault::Heal);
        }
        plan
    },
    bounds: |_| Vec::new(),
    service: None,
};
