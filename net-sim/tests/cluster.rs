//! A built simulation forms a cluster on its own, and the standard checkers pass on a
//! healthy run.

use std::time::Duration;

use conclave_core::MemberState;
use conclave_sim::check::NO_ELECTION;
use conclave_sim::{Converges, SimBuilder};

conclave_sim::seeded_test! {
    fn built_cluster_converges_without_faults(seed) (default_seeds = 2) {
        let mut sim = SimBuilder::new()
            .seed(seed)
            .members(8)
            .convergence_bound(Duration::from_secs(10))
            .opt_out_of(NO_ELECTION)
            .build()
            .unwrap();
        sim.run_for(Duration::from_secs(12));
        let snapshot = sim.snapshot();
        let diff = Converges::differences(&snapshot, 10);
        assert!(diff.is_empty(), "{diff:?}");
        for node in &snapshot.nodes {
            assert_eq!(node.view.len(), 8);
            assert!(node.view.values().all(|&s| s == MemberState::Alive));
        }
        let report = sim.finish();
        assert_eq!(report.stats.dropped(), 0);
        report
    }
}
