//! Leader election and partition detection on whole simulated clusters, with the standard
//! checkers (at most one leader per term, lease exclusivity, a leader after every heal)
//! judging every run.
//!
//! The Cloudflare topology, a 3/2 partition and a leader crash are scenarios of the catalog
//! (`conclave-scenarios`: `partial-connectivity`, `partition-heal`, `leader-crash`).

use std::collections::BTreeSet;
use std::time::Duration;

use conclave_core::{Event, Instant, NodeId, Side};
use conclave_sim::{
    sim_id, Disk, ElectsAfterHeal, Fault, FaultPlan, LeaseExclusive, LinkParams, LinkSelector, OneLeaderPerTerm,
    Report, SimBuilder, Status,
};

fn judged(report: &Report) {
    for name in [OneLeaderPerTerm::NAME, LeaseExclusive::NAME, ElectsAfterHeal::NAME] {
        assert_eq!(report.status(name), Some(&Status::Held), "{name}: {:?}", report.checks);
    }
}

/// No two members ever decided they keep running with different sets of members.
fn one_majority(report: &Report, seed: u64) {
    let majorities: BTreeSet<Vec<NodeId>> = report
        .events()
        .filter_map(|(_, _, e)| match e {
            Event::PartitionDetected { majority, local_side: Side::Majority, .. } => Some(majority.clone()),
            _ => None,
        })
        .collect();
    assert!(majorities.len() <= 1, "seed {seed}: two sides both kept running: {majorities:?}");
}

conclave_sim::seeded_test! {
    /// A bridge: n3 reaches everyone, but n1-n2 and n4-n5 cannot reach each other. Each
    /// pair sees n3 alive; neither may count it to claim a majority the other also claims.
    fn a_member_that_bridges_two_sides_does_not_make_both_majorities(seed) (default_seeds = 4) {
        let ids: Vec<NodeId> = (0..5).map(sim_id).collect();
        let cut = vec![(ids[0], ids[3]), (ids[0], ids[4]), (ids[1], ids[3]), (ids[1], ids[4])];
        let (cut_at, heal_at) = (Instant::from_secs(10), Instant::from_secs(130));
        let plan = FaultPlan::new().at(cut_at, Fault::CutLinks(cut)).at(heal_at, Fault::Heal);
        let mut sim = SimBuilder::new().seed(seed).members(5).voters(5).plan(plan).build().expect("valid settings");
        assert!(sim.run_until_judged(heal_at + Duration::from_secs(600)));
        let report = sim.finish();
        judged(&report);
        one_majority(&report, seed);
        report
    }
}

conclave_sim::seeded_test! {
    /// Random fault plans on five voters: crashes, restarts with and without disk,
    /// partitions, one-way cuts, loss and clock drift within the bound. The leader checkers
    /// must judge and hold in every run.
    fn one_leader_per_term_and_exclusive_leases_under_random_faults(seed) (default_seeds = 24) {
        let plan = random_plan(seed);
        let mut sim = SimBuilder::new().seed(seed).members(5).voters(5).plan(plan).build().expect("valid settings");
        assert!(sim.run_until_judged(Instant::from_secs(1200)));
        let report = sim.finish();
        judged(&report);
        report
    }
}

/// A plan of a dozen faults in the first minute, then the heal at 60 s.
fn random_plan(seed: u64) -> FaultPlan {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let ids: Vec<NodeId> = (0..5).map(sim_id).collect();
    let mut plan = FaultPlan::new();
    let mut down = BTreeSet::new();
    for _ in 0..12 {
        let at = Instant::from_millis(5_000 + next(55_000));
        let who = ids[next(5) as usize];
        let fault = match next(8) {
            0 => {
                down.insert(who);
                Fault::Crash(who)
            }
            1 => {
                down.remove(&who);
                Fault::Restart { node: who, disk: if next(2) == 0 { Disk::Kept } else { Disk::Amnesia } }
            }
            2 => {
                let size = 1 + next(2) as usize;
                Fault::Partition(vec![ids.iter().copied().filter(|_| next(2) == 0).take(size).collect()])
            }
            3 => Fault::OneWay { from: vec![who], to: vec![ids[next(5) as usize]] },
            4 => Fault::ClockDrift { node: who, ppm: next(1000) as f64 - 500.0 },
            5 => Fault::Heal,
            6 => Fault::SetLinks {
                links: LinkSelector::All,
                params: LinkParams { loss: next(30) as f64 / 100.0, ..LinkParams::default() },
            },
            _ => Fault::Pause { node: who, duration: Duration::from_millis(next(400)) },
        };
        plan = plan.at(at, fault);
    }
    let end = Instant::from_secs(60);
    plan =
        plan.at(end, Fault::Heal).at(end, Fault::SetLinks { links: LinkSelector::All, params: LinkParams::default() });
    for node in down {
        plan = plan.at(end, Fault::Restart { node, disk: Disk::Kept });
    }
    for &node in &ids {
        plan = plan.at(end, Fault::ClockDrift { node, ppm: 0.0 });
    }
    plan
}
