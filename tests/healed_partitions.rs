//! After a partition heals, verdicts stay on their side: no member declares failed a member
//! it could reach all along, although the far side declared it failed (or was about to).

use std::collections::BTreeSet;
use std::time::Duration;

use conclave::core::{Event, Instant, NodeId};
use conclave_sim::{seed_from_env, Fault, FaultPlan, SimBuilder, TraceMode, TraceRecord};

/// Every `MemberFailed` seen after `from` whose observer and accused were on the same side.
fn same_side_verdicts(records: &[TraceRecord], side: &BTreeSet<NodeId>, from: Instant) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match r {
            TraceRecord::Event { at, node, event: Event::MemberFailed(m) }
                if *at >= from && side.contains(node) == side.contains(&m.id) =>
            {
                Some(format!("{at}: {node} declared {} failed", m.id))
            }
            _ => None,
        })
        .collect()
}

fn healed(members: usize, cut: usize, split_at: u64, for_secs: u64, seed: u64) {
    let side: BTreeSet<NodeId> = (1..=cut as u64).map(NodeId).collect();
    let (split, heal) = (Instant::from_secs(split_at), Instant::from_secs(split_at + for_secs));
    let plan = FaultPlan::new().at(split, Fault::Partition(vec![side.iter().copied().collect()])).at(heal, Fault::Heal);
    let mut sim = SimBuilder::new()
        .seed(seed)
        .members(members)
        .plan(plan)
        .trace(TraceMode::Record)
        .default_checkers(false)
        .build()
        .expect("valid settings");
    sim.run_until(heal + Duration::from_secs(60));
    let report = sim.finish();
    let across = report
        .records()
        .iter()
        .filter(|r| matches!(r, TraceRecord::Event { event: Event::MemberFailed(_), .. }))
        .count();
    assert!(across > 0, "seed {seed}: the sides never declared each other failed: the partition did not bite");
    let wrong = same_side_verdicts(report.records(), &side, split);
    assert!(wrong.is_empty(), "seed {seed}: verdicts about members reachable all along:\n{}", wrong.join("\n"));
}

#[test]
fn a_hundred_members_split_in_half_for_twenty_seconds_keep_their_verdicts_on_their_side() {
    // Six seeds: before testimony from across the heal was discounted, about one seed in
    // fifteen declared a member of its own side failed; with K = 2 and without asking the
    // accused, about one in seventeen (7 of 120).
    let first = seed_from_env(1);
    for seed in first..first + 6 {
        healed(100, 50, 30, 20, seed);
    }
}

#[test]
fn five_members_with_two_cut_off_for_five_minutes_keep_their_verdicts_on_their_side() {
    let first = seed_from_env(1);
    for seed in first..first + 5 {
        healed(5, 2, 10, 300, seed);
    }
}
