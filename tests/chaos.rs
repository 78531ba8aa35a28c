//! Random chaos: each seed turns on its own random subset of fault kinds (crash, restart
//! with and without disk, partition, one-way cut, loss, duplication, reordering,
//! corruption, stale copies, pause, clock offset, drift and jump), draws a cluster of 3-12
//! members (one seed in eight: 30-60), a minute of faults at random times on random
//! targets with random strengths, then heals everything. The first five members vote. The
//! standard checkers must judge and hold: no false failure verdict, every view whole within
//! the convergence bound of the healed phase, at most one leader per term, no two leases
//! at once, a leader every member names within its bound of the heal, no panic.
//!
//! `CONCLAVE_SEEDS=<k>` runs more seeds, `CONCLAVE_SEED=<n>` one; `conclave run --chaos
//! --seed <n>` prints a seed's timeline.

use conclave_sim::chaos::Chaos;
use conclave_sim::{Converges, ElectsAfterHeal, LeaseExclusive, NoFalseVerdicts, OneLeaderPerTerm, Status};

conclave_sim::seeded_test! {
    /// The default seeds take well under a minute in a debug build.
    fn random_chaos_holds(seed) (default_seeds = 150) {
        let chaos = Chaos::generate(seed);
        let report = chaos.run();
        // Judged, not merely unviolated.
        assert_eq!(report.status(Converges::NAME), Some(&Status::Held), "{:?}", report.checks);
        assert_eq!(report.status(NoFalseVerdicts::NAME), Some(&Status::Held), "{:?}", report.checks);
        for name in [OneLeaderPerTerm::NAME, LeaseExclusive::NAME, ElectsAfterHeal::NAME] {
            assert_eq!(report.status(name), Some(&Status::Held), "{name}: {:?}", report.checks);
        }
        report
    }
}
