//! The checkers run inside real simulations and their violations say how to replay.

use std::time::Duration;

use conclave_core::{Event, Instant, NodeId};
use conclave_sim::{seed_from_env, Checker, Fault, FaultPlan, Finding, SimBuilder};

#[test]
fn partition_then_heal_converges_with_no_false_verdicts() {
    let plan = FaultPlan::new()
        .at(Instant::from_secs(5), Fault::Partition(vec![vec![NodeId(1), NodeId(2)]]))
        .at(Instant::from_secs(15), Fault::Heal)
        .at(Instant::from_secs(20), Fault::Crash(NodeId(5)));
    let builder = SimBuilder::new().seed(seed_from_env(8)).members(6).plan(plan);
    let bound = SimBuilder::default_convergence_bound(&conclave_core::Config::lan(), 6);
    let mut sim = builder.build().unwrap();
    sim.run_until(Instant::from_secs(20) + bound + Duration::from_secs(1));
    let report = sim.finish();
    report.assert_clean();
}

/// Flags the first suspicion it sees.
struct NoSuspicions;

impl Checker for NoSuspicions {
    fn name(&self) -> &'static str {
        "no-suspicions"
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, findings: &mut Vec<Finding>) {
        if let Event::MemberSuspected(m) = event {
            findings.push(Finding { at, message: format!("{node} suspects {}", m.id) });
        }
    }
}

#[test]
fn a_violation_names_seed_time_plan_and_replay_command() {
    let plan = FaultPlan::new().at(Instant::from_secs(3), Fault::Crash(NodeId(2)));
    let mut sim = SimBuilder::new().seed(99).members(4).plan(plan.clone()).build().unwrap();
    sim.add_checker(Box::new(NoSuspicions));
    sim.run_for(Duration::from_secs(10));
    let report = sim.finish();
    let v = report.violations.iter().find(|v| v.checker == "no-suspicions").expect("the crash raises a suspicion");
    assert_eq!(v.seed, 99);
    assert!(v.at > Instant::from_secs(3));
    assert!(v.message.contains("suspects n2"), "{}", v.message);
    assert_eq!(FaultPlan::from_json(&v.plan).unwrap(), plan);
    let shown = v.to_string();
    assert!(shown.contains("seed 99") && shown.contains("replay: "), "{shown}");
    assert!(
        v.replay.contains("CONCLAVE_SEED=99 cargo test -p conclave-sim")
            && v.replay.contains("a_violation_names_seed_time_plan_and_replay_command"),
        "{}",
        v.replay
    );
    // The crashed member's own verdict is not a false positive: the standard checkers pass.
    assert!(report.violations.iter().all(|v| v.checker == "no-suspicions"), "{:?}", report.violations);
}

#[test]
fn an_explicit_replay_command_is_used() {
    let mut sim = SimBuilder::new().seed(5).members(3).replay_command("conclave replay --seed 5").build().unwrap();
    sim.add_checker(Box::new(NoSuspicions));
    sim.run_for(Duration::from_secs(3));
    sim.apply(Fault::Crash(NodeId(3)));
    sim.run_for(Duration::from_secs(10));
    let report = sim.finish();
    assert!(!report.violations.is_empty());
    assert!(report.violations.iter().all(|v| v.replay == "conclave replay --seed 5"));
}
