//! The service workload in the simulator: calls through the resilience policies live
//! through a worker's crash, breakers follow a dead worker and its return, the default
//! policy stops a cascade that happens without shedding and breakers, runs replay exactly,
//! and each workload checker catches the defect planted for it.

use std::time::Duration;

use conclave_core::resilience::{BreakerState, Policy, Selection};
use conclave_core::{Instant, NodeId};
use conclave_sim::check::NO_ELECTION;
use conclave_sim::{
    sim_id, AttemptsWithinBudget, CallsEnd, Defects, Disk, Fault, FaultPlan, Latency, LinkParams, NoDuplicateExecution,
    Report, SimBuilder, Status, WorkerKnobs, Workload, WorkloadEvent,
};

/// Links of 500 µs that duplicate 1 % of what they carry: workers see copies of requests,
/// which their idempotency windows must answer without running them again.
fn duplicating() -> LinkParams {
    LinkParams::constant(Duration::from_micros(500)).with_duplicate(0.01)
}

/// Clients n1 and n2 calling workers n3 to n6, 50 calls a second each from 10 s to 40 s.
fn two_clients_four_workers(policy: Policy) -> Workload {
    Workload::new(vec![NodeId(1), NodeId(2)], (3..=6).map(NodeId).collect())
        .policy(policy)
        .poisson(50.0)
        .stop_at(Instant::from_secs(40))
}

fn run(builder: SimBuilder, until: Instant) -> Report {
    let mut sim = builder.build().expect("valid settings");
    assert!(sim.run_until_judged(until), "a checker never judged");
    sim.run_until(until);
    sim.finish()
}

conclave_sim::seeded_test! {
    /// Worker n4 crashes under load. Calls it was serving fail over to the others (by
    /// hedges, and retries after a 150 ms attempt timeout), and every call completes.
    fn every_call_completes_through_a_worker_crash(seed) (default_seeds = 3) {
        let mut policy = Policy::default();
        policy.retry.attempt_timeout = Some(Duration::from_millis(150));
        let crash = Instant::from_secs(20);
        let builder = SimBuilder::new()
            .seed(seed)
            .members(6)
            .network(duplicating())
            .plan(FaultPlan::new().at(crash, Fault::Crash(NodeId(4))))
            .workload(two_clients_four_workers(policy))
            .opt_out_of(NO_ELECTION);
        let report = run(builder, Instant::from_secs(45));
        let figures = report.workload.as_ref().expect("a workload ran");
        assert!(figures.calls > 2500, "{figures}");
        assert_eq!((figures.completed, figures.failed_total(), figures.open), (figures.calls, 0, 0), "{figures}");
        // Calls that sent an attempt to n4 after its crash were answered by another worker.
        let mut to_the_dead = std::collections::BTreeSet::new();
        let mut rescued = 0;
        for (at, event) in report.workload_events() {
            match *event {
                WorkloadEvent::AttemptSent { client, call, worker: NodeId(4), .. } if at >= crash => {
                    to_the_dead.insert((client, call));
                }
                WorkloadEvent::CallCompleted { client, call, worker, .. } if to_the_dead.contains(&(client, call)) => {
                    assert_ne!(worker, NodeId(4));
                    rescued += 1;
                }
                _ => {}
            }
        }
        assert!(rescued > 0 && rescued == to_the_dead.len(), "{rescued} of {} rescued", to_the_dead.len());
        report
    }
}

conclave_sim::seeded_test! {
    /// Worker n4 crashes at 20 s and comes back at 40 s. Each client's breaker for it
    /// opens within a second of the crash, and closes again once it serves after its
    /// return. (At 200 calls a second per client: at 50, a client sends n4 fewer calls
    /// than the breaker's minimum before membership suspects n4 and stops its selection.)
    fn breakers_open_on_a_dead_worker_and_close_after_it_recovers(seed) (default_seeds = 3) {
        let mut policy = Policy::default();
        policy.hedging = None; // so that the attempts to the dead worker fail, and count
        policy.retry.attempt_timeout = Some(Duration::from_millis(100));
        // Selection by calls outstanding, so that the dead worker keeps its share of calls
        // until its breaker opens: this test is the breaker's (peak EWMA steers calls by
        // latency and would take a share away that the breaker needs to judge).
        policy.selection = Selection::PowerOfTwoChoices;
        let (crash, back) = (Instant::from_secs(20), Instant::from_secs(40));
        let plan = FaultPlan::new()
            .at(crash, Fault::Crash(NodeId(4)))
            .at(back, Fault::Restart { node: NodeId(4), disk: Disk::Kept });
        let workload = two_clients_four_workers(policy).poisson(200.0).stop_at(Instant::from_secs(70));
        let builder = SimBuilder::new()
            .seed(seed)
            .members(6)
            .network(duplicating())
            .plan(plan)
            .workload(workload)
            .opt_out_of(NO_ELECTION);
        let report = run(builder, Instant::from_secs(75));
        for client in [NodeId(1), NodeId(2)] {
            let changes: Vec<(Instant, BreakerState)> = report.workload_events()
                .filter_map(|(at, e)| match *e {
                    WorkloadEvent::BreakerChanged { client: c, worker: NodeId(4), to, .. } if c == client => Some((at, to)),
                    _ => None,
                })
                .collect();
            let opened = changes.iter().find(|(_, to)| *to == BreakerState::Open).map(|(at, _)| *at);
            assert!(opened.is_some_and(|at| at > crash && at < crash + Duration::from_secs(1)), "{client}: {changes:?}");
            let closed = changes.iter().rev().find(|(_, to)| *to == BreakerState::Closed).map(|(at, _)| *at);
            assert!(closed.is_some_and(|at| at > back && at < back + Duration::from_secs(15)), "{client}: {changes:?}");
            assert_eq!(changes.last().map(|c| c.1), Some(BreakerState::Closed), "{client}: {changes:?}");
        }
        // Once its breakers closed, n4 serves again.
        let served_after = report.workload_events()
            .filter(|(at, e)| *at > back + Duration::from_secs(15) && matches!(e, WorkloadEvent::Executed { worker: NodeId(4), .. }))
            .count();
        assert!(served_after > 100, "n4 ran {served_after} requests after its breakers closed");
        report
    }
}

/// The cascade: clients n1 to n5 at 75 calls a second each, workers n6 to n10 with two
/// servers of about 23 ms each (88 requests a second; the five at 85 % load), crashing past
/// 100 requests held. Worker n6 crashes at 20 s: the other four are then asked 106 % of
/// what they serve.
fn cascade(seed: u64, policy: Policy) -> SimBuilder {
    let workload = Workload::new((0..5).map(sim_id).collect(), (5..10).map(sim_id).collect())
        .policy(policy)
        .poisson(75.0)
        .service(Latency::LogNormal { median: Duration::from_millis(20), sigma: 0.5 }, 2)
        .crash_backlog(100)
        .stop_at(Instant::from_secs(60));
    SimBuilder::new()
        .seed(seed)
        .members(10)
        .network(duplicating())
        .plan(FaultPlan::new().at(Instant::from_secs(20), Fault::Crash(sim_id(5))))
        .workload(workload)
        .opt_out_of(NO_ELECTION)
}

/// The default policy without the mechanisms that shed load: no concurrency limit, no
/// adaptive throttling, no circuit breakers (retries, budget, hedging, idempotency stay).
fn without_shedding_and_breakers() -> Policy {
    let mut policy = Policy::default();
    policy.concurrency_limit = None;
    policy.throttle = None;
    policy.breaker = None;
    policy
}

conclave_sim::seeded_test! {
    /// The cascade happens without shedding and breakers (more workers crash, overloaded),
    /// and not with the default policy: no worker crashes but the one the plan crashes.
    fn the_default_policy_stops_the_cascade(seed) (default_seeds = 2) {
        let end = Instant::from_secs(65);
        let unprotected = run(cascade(seed, without_shedding_and_breakers()), end);
        let crashes = &unprotected.workload.as_ref().expect("a workload ran").overload_crashes;
        assert!(crashes.len() >= 2, "without shedding and breakers only {crashes:?} crashed");
        unprotected.assert_clean();
        let report = run(cascade(seed, Policy::default()), end);
        let figures = report.workload.as_ref().expect("a workload ran");
        assert_eq!(figures.overload_crashes, [], "{figures}");
        assert!(figures.shed > 0, "the limit shed nothing: {figures}");
        assert!(figures.success_rate() > 0.7, "{figures}");
        report
    }
}

/// A short run with a planted defect, on links that duplicate 2 % of requests and with
/// two workers of four failing every request (so some calls fail).
fn planted(defects: Defects) -> Report {
    let workload = Workload::new(vec![NodeId(1), NodeId(2)], (3..=6).map(NodeId).collect())
        .poisson(100.0)
        .knobs(NodeId(5), WorkerKnobs::failing())
        .knobs(NodeId(6), WorkerKnobs::failing())
        .stop_at(Instant::from_secs(30))
        .defects(defects);
    let links = LinkParams::constant(Duration::from_micros(500)).with_duplicate(0.02);
    let builder = SimBuilder::new().seed(7).members(6).network(links).workload(workload).opt_out_of(NO_ELECTION);
    run(builder, Instant::from_secs(35))
}

fn violated(report: &Report, name: &str) -> bool {
    matches!(report.status(name), Some(Status::Violated(_)))
}

#[test]
fn without_a_planted_defect_every_workload_checker_judges_and_holds() {
    let report = planted(Defects::default());
    for name in [CallsEnd::NAME, NoDuplicateExecution::NAME, AttemptsWithinBudget::NAME] {
        assert_eq!(report.status(name), Some(&Status::Held), "{name}");
    }
    let figures = report.workload.as_ref().expect("a workload ran");
    assert!(figures.failed_total() > 0, "{figures}");
    report.assert_clean();
}

#[test]
fn a_worker_that_skips_its_idempotency_window_is_caught() {
    let mut defects = Defects::default();
    defects.worker_skips_idempotency = true;
    let report = planted(defects);
    assert!(violated(&report, NoDuplicateExecution::NAME), "{:?}", report.checks);
    assert!(!violated(&report, CallsEnd::NAME) && !violated(&report, AttemptsWithinBudget::NAME));
}

#[test]
fn a_client_that_never_tells_its_caller_of_a_failure_is_caught() {
    let mut defects = Defects::default();
    defects.client_drops_failures = true;
    let report = planted(defects);
    assert!(violated(&report, CallsEnd::NAME), "{:?}", report.checks);
    let lost = report.violations.iter().find(|v| v.checker == CallsEnd::NAME).expect("a violation");
    assert!(lost.message.contains("its caller was never told"), "{}", lost.message);
    assert!(!violated(&report, NoDuplicateExecution::NAME) && !violated(&report, AttemptsWithinBudget::NAME));
}

#[test]
fn a_client_that_sends_every_attempt_twice_is_caught() {
    let mut defects = Defects::default();
    defects.client_sends_twice = true;
    let report = planted(defects);
    assert!(violated(&report, AttemptsWithinBudget::NAME), "{:?}", report.checks);
    assert!(!violated(&report, CallsEnd::NAME) && !violated(&report, NoDuplicateExecution::NAME));
}

#[test]
fn a_workload_run_replays_exactly() {
    let plan = FaultPlan::new()
        .at(Instant::from_secs(15), Fault::Crash(NodeId(4)))
        .at(Instant::from_secs(16), Fault::ClockDrift { node: NodeId(1), ppm: 300.0 })
        .at(Instant::from_secs(18), Fault::Pause { node: NodeId(5), duration: Duration::from_millis(400) })
        .at(Instant::from_secs(22), Fault::Restart { node: NodeId(4), disk: Disk::Amnesia });
    let builder = |seed| {
        SimBuilder::new()
            .seed(seed)
            .members(6)
            .network(duplicating().with_loss(0.01))
            .plan(plan.clone())
            .workload(two_clients_four_workers(Policy::default()).stop_at(Instant::from_secs(25)))
    };
    let hash = builder(3).verify_determinism(Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    let other = builder(4).verify_determinism(Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(hash, other);
}
