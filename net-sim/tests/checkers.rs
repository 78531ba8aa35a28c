//! The checkers run inside real simulations, say whether they judged, and their
//! violations say how to replay.

use std::time::Duration;

use conclave_core::{Event, Instant, NodeId};
use conclave_sim::check::NO_ELECTION;
use conclave_sim::{
    seed_from_env, Checker, Converges, Fault, FaultPlan, Finding, LeaseExclusive, Observation, OneLeaderPerTerm,
    SimBuilder, Status,
};

conclave_sim::seeded_test! {
    /// Partition, heal, crash: the standard checkers judge (run until they have) and hold.
    fn partition_then_heal_converges_with_no_false_verdicts(seed) (default_seeds = 2) {
        let plan = FaultPlan::new()
            .at(Instant::from_secs(5), Fault::Partition(vec![vec![NodeId(1), NodeId(2)]]))
            .at(Instant::from_secs(15), Fault::Heal)
            .at(Instant::from_secs(20), Fault::Crash(NodeId(5)));
        let mut sim = SimBuilder::new().seed(seed).members(6).plan(plan).opt_out_of(NO_ELECTION).build().unwrap();
        assert!(sim.run_until_judged(Instant::from_secs(600)));
        let report = sim.finish();
        assert_eq!(report.status(Converges::NAME), Some(&Status::Held));
        report
    }
}

/// A run stopped before convergence is judged (heal at 25 s, judged at heal + bound, 44.5 s
/// at 5 members; stopped at 35 s) must not pass, as the README's example once did.
#[test]
fn a_run_that_stops_before_convergence_is_judged_is_not_clean() {
    let plan = FaultPlan::new()
        .at(Instant::from_secs(5), Fault::Partition(vec![vec![NodeId(5)]]))
        .at(Instant::from_secs(25), Fault::Heal);
    let builder = SimBuilder::new().seed(42).members(5).plan(plan).opt_out_of(NO_ELECTION);
    let mut sim = builder.clone().build().unwrap();
    sim.run_for(Duration::from_secs(35));
    let report = sim.finish();
    assert!(report.violations.is_empty());
    assert!(matches!(report.status(Converges::NAME), Some(Status::NotJudged(_))), "{:?}", report.checks);
    assert!(!report.is_clean());
    let problems = report.problems().join("\n");
    assert!(problems.contains("converges-after-heal could not judge") && problems.contains("seed 42"), "{problems}");
    // Run until judged instead of guessing: the judgement is made.
    let mut sim = builder.build().unwrap();
    assert!(sim.run_until_judged(Instant::from_secs(600)));
    let report = sim.finish();
    assert_eq!(report.status(Converges::NAME), Some(&Status::Held));
    report.assert_clean();
}

#[test]
fn leader_checkers_cannot_judge_a_run_without_a_leader_unless_opted_out() {
    let mut sim = SimBuilder::new().seed(seed_from_env(1)).members(3).build().unwrap();
    assert!(sim.run_until_judged(Instant::from_secs(300)));
    let report = sim.finish();
    for name in [OneLeaderPerTerm::NAME, LeaseExclusive::NAME] {
        let Some(Status::NotJudged(why)) = report.status(name) else { panic!("{name}: {:?}", report.status(name)) };
        assert!(why.contains("no leader was ever elected"), "{why}");
    }
    assert!(!report.is_clean(), "a check that could not judge counts as passed");
    // Opting out by name accepts it; opting out of a checker the run lacks does not.
    let mut sim = SimBuilder::new().seed(1).members(3).opt_out_of(NO_ELECTION).build().unwrap();
    sim.run_until_judged(Instant::from_secs(300));
    sim.finish().assert_clean();
    let mut sim =
        SimBuilder::new().seed(1).members(3).opt_out_of(NO_ELECTION).opt_out("no-such-check").build().unwrap();
    sim.run_until_judged(Instant::from_secs(300));
    assert!(sim.finish().problems().iter().any(|p| p.contains("no-such-check")));
}

#[test]
fn leader_checkers_judge_observations_fed_to_a_real_run() {
    let mut sim = SimBuilder::new().seed(3).members(3).build().unwrap();
    sim.run_for(Duration::from_secs(2));
    let at = sim.now();
    let o = |node: u64, leader: u64, lease: bool| Observation {
        at,
        node: NodeId(node),
        term: 1,
        leader: Some(NodeId(leader)),
        leaseholder: lease,
        lease_until: None,
        drift_ppm: 0.0,
        clock_stepped: false,
    };
    sim.observe(&o(1, 1, true));
    sim.observe(&o(2, 2, true));
    sim.run_until_judged(Instant::from_secs(300));
    let report = sim.finish();
    assert_eq!(report.status(OneLeaderPerTerm::NAME), Some(&Status::Violated(1)));
    assert_eq!(report.status(LeaseExclusive::NAME), Some(&Status::Violated(1)));
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
    let id = conclave_sim::TestId {
        package: env!("CARGO_PKG_NAME"),
        krate: env!("CARGO_CRATE_NAME"),
        test: "a_violation_names_seed_time_plan_and_replay_command",
        features: "",
    };
    let result = std::panic::catch_unwind(|| {
        conclave_sim::run_seeded(id, 1, |seed| {
            let mut sim = SimBuilder::new().seed(seed).members(4).plan(plan.clone()).build().unwrap();
            sim.add_checker(Box::new(NoSuspicions));
            sim.run_for(Duration::from_secs(10));
            let report = sim.finish();
            let v =
                report.violations.iter().find(|v| v.checker == "no-suspicions").expect("the crash raises a suspicion");
            assert_eq!(v.seed, seed);
            assert!(v.at > Instant::from_secs(3));
            assert!(v.message.contains("suspects n2"), "{}", v.message);
            assert_eq!(v.plan.parse::<FaultPlan>().expect("the text form parses back"), plan);
            let shown = v.to_string();
            assert!(shown.contains(&format!("seed {seed}")) && shown.contains("replay: "), "{shown}");
            assert_eq!(
                v.replay,
                format!("CONCLAVE_SEED={seed} cargo test -p conclave-sim --test checkers -- --exact a_violation_names_seed_time_plan_and_replay_command")
            );
            // The crashed member's own verdict is not a false positive.
            assert!(report.violations.iter().all(|v| v.checker == "no-suspicions"), "{:?}", report.violations);
            report
        });
    });
    assert!(result.is_err(), "the violation fails the seeded run");
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

#[test]
fn the_default_convergence_bound_is_a_suspicion_and_twenty_probe_periods() {
    let lan = conclave_core::Config::lan();
    let bound = |n| SimBuilder::default_convergence_bound(&lan, n).as_secs_f64();
    let suspicion = |n| conclave_sim::check::max_suspicion_timeout(&lan, n).as_secs_f64();
    // A probe period is 3 x 250 ms.
    assert_eq!(bound(5), 4.5 + 15.0);
    assert_eq!(bound(100), suspicion(100) + 15.0);
    assert!(bound(100) > bound(5), "suspicions run longer in larger views");
}

#[test]
fn the_promise_checkers_fire_on_real_runs_held_to_a_stricter_promise() {
    use conclave_sim::{RefutesClaims, SuspicionWithinBounds};
    // n3 is cut off for 20 s: the others declare it failed, it declares them failed. After
    // the heal the claims are refuted within seconds (the push-pull coin). Held to 10 ms,
    // the refutation checker fires.
    let plan = FaultPlan::new()
        .at(Instant::from_secs(5), Fault::Partition(vec![vec![NodeId(3)]]))
        .at(Instant::from_secs(25), Fault::Heal);
    let builder = SimBuilder::new().seed(seed_from_env(4)).members(5).plan(plan).opt_out_of(NO_ELECTION);
    let mut sim = builder.clone().build().unwrap();
    sim.add_checker(Box::new(RefutesClaims::new(Duration::from_millis(10))));
    assert!(sim.run_until_judged(Instant::from_secs(600)));
    let report = sim.finish();
    let strict = report.violations.iter().filter(|v| v.checker == RefutesClaims::NAME).count();
    assert!(strict > 0, "{:?}", report.checks);
    // The standard one (the convergence bound) holds on the same run.
    assert_eq!(report.checks.iter().filter(|c| c.checker == RefutesClaims::NAME).count(), 2);
    // A checker that believes suspicions last three times longer sees every verdict come early.
    let mut slower = conclave_core::Config::lan();
    slower.suspicion_mult *= 3;
    let mut sim = builder.build().unwrap();
    sim.add_checker(Box::new(SuspicionWithinBounds::new(slower)));
    sim.run_until_judged(Instant::from_secs(600));
    let report = sim.finish();
    let early: Vec<_> = report.violations.iter().filter(|v| v.checker == SuspicionWithinBounds::NAME).collect();
    assert!(!early.is_empty(), "{:?}", report.checks);
    assert!(early[0].message.contains("below the shortest suspicion timeout"), "{}", early[0].message);
}

#[test]
fn events_are_kept_by_default_and_reading_what_was_not_kept_fails_loudly() {
    let plan = FaultPlan::new().at(Instant::from_secs(3), Fault::Crash(NodeId(2)));
    let mut sim = SimBuilder::new().seed(2).members(3).plan(plan.clone()).build().unwrap();
    sim.run_for(Duration::from_secs(10));
    // During the run, and after it, without having asked for a trace mode.
    let during = sim.events().filter(|(_, _, e)| matches!(e, Event::MemberFailed(m) if m.id == NodeId(2))).count();
    assert_eq!(during, 2, "n1 and n3 declare n2 failed");
    let report = sim.finish();
    assert!(report.events().any(|(at, _, e)| at > Instant::from_secs(3) && matches!(e, Event::MemberFailed(_))));
    let records = std::panic::catch_unwind(|| report.records().len());
    let message = *records.expect_err("datagram records were not kept").downcast::<String>().unwrap();
    assert!(message.contains("TraceMode::Record"), "{message}");
    let mut sim =
        SimBuilder::new().seed(2).members(3).plan(plan).trace(conclave_sim::TraceMode::HashOnly).build().unwrap();
    sim.run_for(Duration::from_secs(10));
    let report = sim.finish();
    assert!(std::panic::catch_unwind(|| report.events().count()).is_err(), "no events were kept");
}

#[test]
fn outside_a_seeded_test_the_replay_line_names_no_command_that_does_not_exist() {
    let mut sim = SimBuilder::new().seed(77).members(3).build().unwrap();
    sim.add_checker(Box::new(NoSuspicions));
    sim.run_for(Duration::from_secs(2));
    sim.apply(Fault::Crash(NodeId(3)));
    sim.run_for(Duration::from_secs(10));
    let report = sim.finish();
    let v = report.violations.first().expect("the crash raises a suspicion");
    // There is no `conclave replay`, and this plain test reads no CONCLAVE_SEED.
    assert_eq!(v.replay, "build the same simulation with SimBuilder::seed(77) and the plan above");
    assert!(!v.replay.contains("conclave replay") && !v.replay.contains("cargo test"), "{}", v.replay);
}
