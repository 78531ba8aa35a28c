//! Prints the trace hash of one seeded run: the cross-process determinism test runs this
//! twice (and the test binary itself) and compares.
//!
//! `cargo run -p conclave-sim --example trace_hash -- <seed> <members> <seconds>`

use std::time::Duration;

use conclave_core::{Instant, NodeId};
use conclave_sim::{Disk, Fault, FaultPlan, LinkParams, LinkSelector, SimBuilder};

/// The plan the determinism tests share: a bit of every fault kind.
pub fn mixed_plan(members: u64) -> FaultPlan {
    let n = |i: u64| NodeId(1 + i % members);
    FaultPlan::new()
        .at(
            Instant::from_secs(3),
            Fault::SetLinks {
                links: LinkSelector::All,
                params: LinkParams::default()
                    .with_loss(0.02)
                    .with_duplicate(0.01)
                    .with_reorder(0.05, Duration::from_millis(5))
                    .with_corrupt(0.01),
            },
        )
        .at(Instant::from_secs(4), Fault::ClockDrift { node: n(1), ppm: 200.0 })
        .at(Instant::from_secs(5), Fault::Crash(n(2)))
        .at(Instant::from_secs(6), Fault::Pause { node: n(3), duration: Duration::from_millis(800) })
        .at(Instant::from_secs(8), Fault::Restart { node: n(2), disk: Disk::Kept })
        .at(Instant::from_secs(9), Fault::Partition(vec![vec![n(0), n(1)]]))
        .at(Instant::from_secs(12), Fault::Heal)
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect("numeric arguments")).collect();
    let seed = args.first().copied().unwrap_or(1);
    let members = args.get(1).copied().unwrap_or(5);
    let seconds = args.get(2).copied().unwrap_or(20);
    let mut sim = SimBuilder::new()
        .seed(seed)
        .members(members as usize)
        .plan(mixed_plan(members))
        .default_checkers(false)
        .build()
        .expect("valid settings");
    sim.run_for(Duration::from_secs(seconds));
    let report = sim.finish();
    println!("trace-hash {:#018x} delivered {}", report.trace_hash, report.stats.delivered);
}
