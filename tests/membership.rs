//! Membership under faults, on the deterministic simulator, with the standard checkers
//! (no false failure verdicts, convergence after the last fault, no panics) watching.
//!
//! Each test runs through `conclave_sim::seeded_test!`: `CONCLAVE_SEED=<n>` replays one
//! seed exactly, `CONCLAVE_SEEDS=<k>` runs more, and any failure prints the command that
//! replays it. The leader checkers cannot judge (the core elects no leader yet): every
//! test opts out of them by name.

use std::time::Duration;

use conclave::core::{Event, Instant, NodeId};
use conclave_sim::check::NO_ELECTION;
use conclave_sim::{
    Converges, Disk, Fault, FaultPlan, LinkParams, LinkSelector, NoFalseVerdicts, Report, Sim, SimBuilder, Status,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Runs `sim` until every running member holds every running member alive, or `limit`.
fn until_converged(sim: &mut Sim, limit: Duration) -> bool {
    let end = sim.now() + limit;
    while sim.now() < end {
        if Converges::differences(&sim.snapshot(), 1).is_empty() {
            return true;
        }
        sim.run_for(Duration::from_millis(100));
    }
    false
}

fn failed_verdicts(report: &Report, about: NodeId) -> Vec<NodeId> {
    report
        .events()
        .filter_map(|(_, node, event)| match event {
            Event::MemberFailed(m) if m.id == about => Some(node),
            _ => None,
        })
        .collect()
}

/// Runs until every checker has judged (10 virtual minutes at most) and finishes.
fn judged(mut sim: Sim) -> Report {
    let limit = sim.now() + secs(600);
    assert!(sim.run_until_judged(limit), "a checker still owes a judgement at {limit}");
    sim.finish()
}

conclave_sim::seeded_test! {
    fn a_crash_is_detected_by_every_live_member(seed) (default_seeds = 2) {
        let crash = Instant::from_secs(10);
        let plan = FaultPlan::new().at(crash, Fault::Crash(NodeId(4)));
        let sim = SimBuilder::new().seed(seed).members(10).plan(plan).opt_out_of(NO_ELECTION).build().unwrap();
        let report = judged(sim);
        let mut verdicts = failed_verdicts(&report, NodeId(4));
        verdicts.sort();
        let expected: Vec<NodeId> = (1..=10).filter(|&i| i != 4).map(NodeId).collect();
        assert_eq!(verdicts, expected, "each live member declares the crashed one failed, once");
        report
    }
}

conclave_sim::seeded_test! {
    fn heavy_loss_for_ten_minutes_gives_no_false_verdict(seed) (default_seeds = 1) {
        // 20 % loss on every link from the start: members join and live through it. The
        // loss never heals, so views are never quiet for long (a suspicion comes and is
        // refuted): only the no-false-verdict and no-panic checkers apply, not convergence.
        let mut sim = SimBuilder::new()
            .seed(seed)
            .members(10)
            .network(LinkParams::constant(Duration::from_micros(500)).with_loss(0.2))
            .default_checkers(false)
            .build()
            .unwrap();
        sim.add_checker(Box::new(NoFalseVerdicts::new(0)));
        sim.run_for(secs(600));
        let report = sim.finish();
        let verdicts = report.events().filter(|(_, _, e)| matches!(e, Event::MemberFailed(_))).count();
        assert_eq!(verdicts, 0);
        assert!(report.stats.dropped_loss > 5_000, "the loss was real: {} dropped", report.stats.dropped_loss);
        assert_eq!(report.status(NoFalseVerdicts::NAME), Some(&Status::Held));
        report
    }
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
    fn a_partition_splits_the_views_and_healing_merges_them(seed) (default_seeds = 2) {
        let (split, heal) = (Instant::from_secs(10), Instant::from_secs(40));
        let plan = FaultPlan::new()
            .at(split, Fault::Partition(vec![vec![NodeId(1), NodeId(2), NodeId(3)]]))
            .at(heal, Fault::Heal);
        let mut sim = SimBuilder::new().seed(seed).members(7).plan(plan).opt_out_of(NO_ELECTION).build().unwrap();
        sim.run_until(heal);
        let small_side = sim.node(NodeId(1)).unwrap();
        assert_eq!(small_side.live_members(), 3, "the minority holds the majority failed");
        assert_eq!(sim.node(NodeId(7)).unwrap().live_members(), 4);
        assert!(until_converged(&mut sim, secs(120)), "the sides did not merge within 120 s of the heal");
        judged(sim)
    }
}

conclave_sim::seeded_test! {
    fn restarts_with_and_without_disk_rejoin(seed) (default_seeds = 2) {
        let plan = FaultPlan::new()
            .at(Instant::from_secs(5), Fault::Crash(NodeId(2)))
            .at(Instant::from_secs(5), Fault::Crash(NodeId(3)))
            .at(Instant::from_secs(20), Fault::Restart { node: NodeId(2), disk: Disk::Kept })
            .at(Instant::from_secs(20), Fault::Restart { node: NodeId(3), disk: Disk::Amnesia });
        let mut sim = SimBuilder::new().seed(seed).members(6).plan(plan).opt_out_of(NO_ELECTION).build().unwrap();
        sim.run_until(Instant::from_secs(20));
        assert!(until_converged(&mut sim, secs(30)), "the restarted members did not rejoin");
        for id in [NodeId(2), NodeId(3)] {
            let remembered = sim.node(NodeId(1)).unwrap().member(id).unwrap().incarnation;
            assert!(remembered >= 1, "{id} came back above the incarnation it was failed at");
        }
        judged(sim)
    }
}

conclave_sim::seeded_test! {
    fn skewed_and_drifting_clocks_cause_no_false_verdict(seed) (default_seeds = 2) {
        let plan = FaultPlan::new()
            .at(Instant::from_secs(1), Fault::ClockDrift { node: NodeId(1), ppm: 500.0 })
            .at(Instant::from_secs(1), Fault::ClockDrift { node: NodeId(2), ppm: -500.0 })
            .at(Instant::from_secs(1), Fault::ClockOffset { node: NodeId(3), offset_nanos: 3_600_000_000_000 })
            .at(Instant::from_secs(30), Fault::ClockJump { node: NodeId(4), nanos: 2_000_000_000 })
            .at(Instant::from_secs(60), Fault::ClockJump { node: NodeId(5), nanos: -2_000_000_000 });
        let mut sim = SimBuilder::new().seed(seed).members(6).plan(plan).opt_out_of(NO_ELECTION).build().unwrap();
        sim.run_for(secs(120));
        assert!(until_converged(&mut sim, secs(1)));
        let report = judged(sim);
        assert!(report.events().all(|(_, _, e)| !matches!(e, Event::MemberFailed(_))), "a clock change made a verdict");
        report
    }
}

conclave_sim::seeded_test! {
    fn a_slow_member_is_not_declared_failed(seed) (default_seeds = 2) {
        // Every datagram takes n3 20 ms to handle: it falls behind but keeps answering.
        let plan = FaultPlan::new()
            .at(Instant::from_secs(5), Fault::Slow { node: NodeId(3), per_message: Duration::from_millis(20) });
        let mut sim = SimBuilder::new().seed(seed).members(6).plan(plan).opt_out_of(NO_ELECTION).build().unwrap();
        sim.run_for(secs(120));
        let report = judged(sim);
        assert!(failed_verdicts(&report, NodeId(3)).is_empty());
        report
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
