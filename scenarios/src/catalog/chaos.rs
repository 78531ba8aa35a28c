//! Random chaos: `conclave_sim::chaos` as a scenario.

use conclave_sim::chaos::{Chaos, VOTERS};

use super::{Members, Preset, Scenario};

/// Each seed its own chaos.
pub(crate) const RANDOM_CHAOS: Scenario = Scenario {
    name: "random-chaos",
    summary: "each seed turns on its own fault kinds for a minute on its own cluster, then heals all",
    doc: "Swarm testing (`conclave_sim::chaos`): each seed turns on its own subset of fault kinds \
          (crash, restart with and without disk, partition, one-way cut, loss, duplication, \
          reordering, corruption, stale copies, pause, clock offset, drift and jump), draws a \
          cluster of 3-12 members (one seed in eight 30-60; the first five vote) and a minute of \
          faults of those kinds at random times on random targets, then heals everything at 65 s. \
          Its bounds are the standard checkers' own: no false failure verdict, one leader per \
          term, exclusive leases, and once healed, every view whole and one leader named by all \
          within their bounds.",
    members: Members::Drawn { by: |seed| Chaos::generate(seed).members, label: "3-12 (1 in 8: 30-60)" },
    min_members: 3,
    preset: Preset::Lan,
    voters: VOTERS,
    default_seeds: 150,
    plan: |seed, n| Chaos::generate_sized(seed, Some(n)).plan,
    bounds: |_| Vec::new(),
    service: None,
};
