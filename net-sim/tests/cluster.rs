//! A built simulation forms a cluster on its own, and the standard checkers pass on a
//! healthy run.

use std::time::Duration;

use conclave_core::MemberState;
use conclave_sim::{seed_from_env, Converges, SimBuilder};

#[test]
fn built_cluster_converges_without_faults() {
    let seed = seed_from_env(11);
    let mut sim = SimBuilder::new().seed(seed).members(8).convergence_bound(Duration::from_secs(10)).build().unwrap();
    sim.run_for(Duration::from_secs(12));
    let snapshot = sim.snapshot();
    let diff = Converges::differences(&snapshot, 10);
    assert!(diff.is_empty(), "{diff:?}");
    for node in &snapshot.nodes {
        assert_eq!(node.view.len(), 8);
        assert!(node.view.values().all(|&s| s == MemberState::Alive));
    }
    let report = sim.finish();
    report.assert_clean();
    assert_eq!(report.stats.dropped(), 0);
}
