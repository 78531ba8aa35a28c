//! Membership under rough links, and the same history from the same seed, on the
//! deterministic simulator with the standard checkers watching.
//!
//! Crashes, loss, partitions, restarts, clocks and slow members are scenarios of the
//! catalog (`conclave-scenarios`, `scenarios/tests/catalog.rs`), written once there.
//!
//! Each test runs through `conclave_sim::seeded_test!`: `CONCLAVE_SEED=<n>` replays one
//! seed exactly, `CONCLAVE_SEEDS=<k>` runs more, and any failure prints the command that
//! replays it. Nobody votes here: every test opts out of the leader checkers by name.

use std::time::Duration;

use conclave::core::{Instant, NodeId};
use conclave_sim::check::NO_ELECTION;
use conclave_sim::{Disk, Fault, FaultPlan, LinkParams, LinkSelector, Report, Sim, SimBuilder};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Runs until every checker has judged (10 virtual minutes at most) and finishes.
fn judged(mut sim: Sim) -> Report {
    let limit = sim.now() + secs(600);
    assert!(sim.run_until_judged(limit), "a checker still owes a judgement at {limit}");
    sim.finish()
}

conclave_sim::seeded_test! {
    fn duplication_reordering_and_corruption_change_no_verdict(seed) (default_seeds = 1) {
        let rough = LinkParams::constant(Duration::from_micros(500))
            .with_duplicate(0.1)
            .with_reorder(0.2, Duration::from_millis(20))
            .with_corrupt(0.05);
        let plan =
            FaultPlan::new().at(Instant::from_secs(5), Fault::SetLinks { links: LinkSelector::All, params: rough });
        let mut sim = SimBuilder::new().seed(seed).members(8).plan(plan).opt_out_of(NO_ELECTION).build().unwrap();
        sim.run_for(secs(120));
        assert!(sim.stats().corrupted > 100 && sim.stats().duplicated > 100);
        let rejected: u64 = sim.ids().iter().map(|id| sim.node(*id).unwrap().stats().dropped.checksum).sum();
        assert_eq!(rejected, sim.stats().rejected, "every corrupted datagram was caught by its checksum");
        judged(sim)
    }
}

conclave_sim::seeded_test! {
    fn same_seed_same_membership_history(seed) (default_seeds = 2) {
        let run = || {
            let plan = FaultPlan::new()
                .at(Instant::from_secs(5), Fault::Crash(NodeId(2)))
                .at(Instant::from_secs(15), Fault::Restart { node: NodeId(2), disk: Disk::Amnesia });
            let sim = SimBuilder::new().seed(seed).members(6).plan(plan).opt_out_of(NO_ELECTION).build().unwrap();
            judged(sim)
        };
        let (a, b) = (run(), run());
        assert_eq!(a.trace_hash, b.trace_hash);
        let history = |r: &Report| r.events().map(|(at, n, e)| format!("{at} {n} {e:?}")).collect::<Vec<_>>();
        assert_eq!(history(&a), history(&b));
        a
    }
}
