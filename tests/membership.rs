//! Membership under faults, on the deterministic simulator, with the standard checkers
//! (no false failure verdicts, convergence after the last fault, no panics) watching.
//!
//! Each test reads its seed with `seed_from_env`: `CONCLAVE_SEED=<n>` replays one seed
//! exactly, and a violation prints the command that does.

use std::time::Duration;

use conclave::core::{Event, Instant, MemberState, NodeId};
use conclave_sim::{
    seed_from_env, Disk, Fault, FaultPlan, LinkParams, LinkSelector, NoFalseVerdicts, Sim, SimBuilder, TraceMode,
    TraceRecord,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Runs `sim` until every running member holds every running member alive, or `limit`.
fn until_converged(sim: &mut Sim, limit: Duration) -> bool {
    let end = sim.now() + limit;
    while sim.now() < end {
        let ids = sim.ids();
        let up: Vec<NodeId> = ids.iter().copied().filter(|id| sim.is_up(*id)).collect();
        let converged = up.iter().all(|id| {
            let node = sim.node(*id).expect("up");
            node.members().filter(|m| m.state.is_live()).count() == up.len()
                && up.iter().all(|other| node.member(*other).is_some_and(|m| m.state == MemberState::Alive))
        });
        if converged {
            return true;
        }
        sim.run_for(Duration::from_millis(100));
    }
    false
}

fn failed_verdicts(records: &[TraceRecord], about: NodeId) -> Vec<NodeId> {
    records
        .iter()
        .filter_map(|r| match r {
            TraceRecord::Event { node, event: Event::MemberFailed(m), .. } if m.id == about => Some(*node),
            _ => None,
        })
        .collect()
}

#[test]
fn a_crash_is_detected_by_every_live_member() {
    let crash = Instant::from_secs(10);
    let plan = FaultPlan::new().at(crash, Fault::Crash(NodeId(4)));
    let mut sim =
        SimBuilder::new().seed(seed_from_env(1)).members(10).plan(plan).trace(TraceMode::Record).build().unwrap();
    sim.run_until(crash + secs(20));
    let report = sim.finish();
    report.assert_clean();
    let mut verdicts = failed_verdicts(&report.records, NodeId(4));
    verdicts.sort();
    let expected: Vec<NodeId> = (1..=10).filter(|&i| i != 4).map(NodeId).collect();
    assert_eq!(verdicts, expected, "each live member declares the crashed one failed, once");
}

#[test]
fn heavy_loss_for_ten_minutes_gives_no_false_verdict() {
    // 20 % loss on every link from the start: members join and live through it. The loss
    // never heals, so views are never quiet for long (a suspicion comes and is refuted):
    // only the no-false-verdict and no-panic checkers apply, not convergence.
    let mut sim = SimBuilder::new()
        .seed(seed_from_env(2))
        .members(10)
        .network(LinkParams::constant(Duration::from_micros(500)).with_loss(0.2))
        .trace(TraceMode::Record)
        .default_checkers(false)
        .build()
        .unwrap();
    sim.add_checker(Box::new(NoFalseVerdicts::new(0)));
    sim.run_for(secs(600));
    let report = sim.finish();
    report.assert_clean();
    let verdicts =
        report.records.iter().filter(|r| matches!(r, TraceRecord::Event { event: Event::MemberFailed(_), .. })).count();
    assert_eq!(verdicts, 0);
    assert!(report.stats.dropped_loss > 5_000, "the loss was real: {} dropped", report.stats.dropped_loss);
}

#[test]
fn duplication_reordering_and_corruption_change_no_verdict() {
    let rough = LinkParams::constant(Duration::from_micros(500))
        .with_duplicate(0.1)
        .with_reorder(0.2, Duration::from_millis(20))
        .with_corrupt(0.05);
    let plan = FaultPlan::new().at(Instant::from_secs(5), Fault::SetLinks { links: LinkSelector::All, params: rough });
    let mut sim = SimBuilder::new().seed(seed_from_env(3)).members(8).plan(plan).build().unwrap();
    sim.run_for(secs(120));
    assert!(sim.stats().corrupted > 100 && sim.stats().duplicated > 100);
    let rejected: u64 = sim.ids().iter().map(|id| sim.node(*id).unwrap().stats().dropped.checksum).sum();
    assert_eq!(rejected, sim.stats().rejected, "every corrupted datagram was caught by its checksum");
    sim.finish().assert_clean();
}

#[test]
fn a_partition_splits_the_views_and_healing_merges_them() {
    let (split, heal) = (Instant::from_secs(10), Instant::from_secs(40));
    let plan =
        FaultPlan::new().at(split, Fault::Partition(vec![vec![NodeId(1), NodeId(2), NodeId(3)]])).at(heal, Fault::Heal);
    let mut sim = SimBuilder::new().seed(seed_from_env(4)).members(7).plan(plan).build().unwrap();
    sim.run_until(heal);
    let small_side = sim.node(NodeId(1)).unwrap();
    assert_eq!(small_side.live_members(), 3, "the minority holds the majority failed");
    assert_eq!(sim.node(NodeId(7)).unwrap().live_members(), 4);
    assert!(until_converged(&mut sim, secs(120)), "the sides did not merge within 120 s of the heal");
    sim.finish().assert_clean();
}

#[test]
fn restarts_with_and_without_disk_rejoin() {
    let plan = FaultPlan::new()
        .at(Instant::from_secs(5), Fault::Crash(NodeId(2)))
        .at(Instant::from_secs(5), Fault::Crash(NodeId(3)))
        .at(Instant::from_secs(20), Fault::Restart { node: NodeId(2), disk: Disk::Kept })
        .at(Instant::from_secs(20), Fault::Restart { node: NodeId(3), disk: Disk::Amnesia });
    let mut sim = SimBuilder::new().seed(seed_from_env(5)).members(6).plan(plan).build().unwrap();
    sim.run_until(Instant::from_secs(20));
    assert!(until_converged(&mut sim, secs(30)), "the restarted members did not rejoin");
    for id in [NodeId(2), NodeId(3)] {
        let remembered = sim.node(NodeId(1)).unwrap().member(id).unwrap().incarnation;
        assert!(remembered >= 1, "{id} came back above the incarnation it was failed at");
    }
    sim.finish().assert_clean();
}

#[test]
fn skewed_and_drifting_clocks_cause_no_false_verdict() {
    let plan = FaultPlan::new()
        .at(Instant::from_secs(1), Fault::ClockDrift { node: NodeId(1), ppm: 500.0 })
        .at(Instant::from_secs(1), Fault::ClockDrift { node: NodeId(2), ppm: -500.0 })
        .at(Instant::from_secs(1), Fault::ClockOffset { node: NodeId(3), offset_nanos: 3_600_000_000_000 })
        .at(Instant::from_secs(30), Fault::ClockJump { node: NodeId(4), nanos: 2_000_000_000 })
        .at(Instant::from_secs(60), Fault::ClockJump { node: NodeId(5), nanos: -2_000_000_000 });
    let mut sim = SimBuilder::new().seed(seed_from_env(6)).members(6).plan(plan).build().unwrap();
    sim.run_for(secs(120));
    assert!(until_converged(&mut sim, secs(1)));
    sim.finish().assert_clean();
}

#[test]
fn a_slow_member_is_not_declared_failed() {
    // Every datagram takes n3 20 ms to handle: it falls behind but keeps answering.
    let plan = FaultPlan::new()
        .at(Instant::from_secs(5), Fault::Slow { node: NodeId(3), per_message: Duration::from_millis(20) });
    let mut sim =
        SimBuilder::new().seed(seed_from_env(7)).members(6).plan(plan).trace(TraceMode::Record).build().unwrap();
    sim.run_for(secs(120));
    let report = sim.finish();
    assert!(failed_verdicts(&report.records, NodeId(3)).is_empty());
    report.assert_clean();
}

#[test]
fn same_seed_same_membership_history() {
    let run = || {
        let plan = FaultPlan::new()
            .at(Instant::from_secs(5), Fault::Crash(NodeId(2)))
            .at(Instant::from_secs(15), Fault::Restart { node: NodeId(2), disk: Disk::Amnesia });
        let mut sim = SimBuilder::new().seed(seed_from_env(8)).members(6).plan(plan).build().unwrap();
        sim.run_for(secs(30));
        sim.finish().trace_hash
    };
    assert_eq!(run(), run());
}
