//! Scenarios of the election: the leader crashes.

use std::time::Duration;

use conclave_core::{Config, Instant, NodeId};
use conclave_sim::{Disk, Fault, FaultPlan, SimBuilder, TraceMode};

use super::bounds::ReplacesCrashedLeader;
use super::{draws, millis_between, Members, Preset, Scenario};

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
