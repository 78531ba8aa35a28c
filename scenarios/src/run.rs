//! `conclave run`: one seeded chaos run on the simulator, with its timeline and verdict.
//!
//! The built-in plan crashes a member and brings it back with its disk, partitions the
//! cluster and heals it, with the standard checkers watching throughout. The same seed
//! always prints the same timeline and trace hash.

use std::time::Duration;

use clap::Parser;
use conclave_core::{Config, Event, Instant};
use conclave_sim::{Disk, Fault, FaultPlan, SimBuilder, TraceMode, TraceRecord};

/// Flags of `conclave run`.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// Cluster size (at least 3).
    #[arg(long, default_value_t = 5)]
    members: usize,
    /// The run's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Virtual seconds to run.
    #[arg(long, default_value_t = 120)]
    duration: u64,
}

impl Default for Args {
    fn default() -> Self {
        Self { members: 5, seed: 1, duration: 120 }
    }
}

/// The built-in plan for `n` members: crash the last, restart it with its disk, cut the
/// first two off from the rest, heal.
fn plan(n: usize) -> FaultPlan {
    let ids: Vec<_> = (0..n).map(conclave_sim::sim_id).collect();
    let last = ids[n - 1];
    FaultPlan::new()
        .at(Instant::from_secs(10), Fault::Crash(last))
        .at(Instant::from_secs(25), Fault::Restart { node: last, disk: Disk::Kept })
        .at(Instant::from_secs(40), Fault::Partition(vec![ids[..2].to_vec(), ids[2..].to_vec()]))
        .at(Instant::from_secs(60), Fault::Heal)
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    if args.members < 3 {
        return Err(format!("--members {} is too small: the built-in plan needs at least 3", args.members));
    }
    let plan = plan(args.members);
    println!("conclave run: {} members, Config::lan(), seed {}, {} s virtual", args.members, args.seed, args.duration);
    println!("plan: {}", plan.to_json());
    let mut sim = SimBuilder::new()
        .seed(args.seed)
        .members(args.members)
        .config(Config::lan())
        .plan(plan)
        .trace(TraceMode::Record)
        .replay_command(format!("conclave run --members {} --seed {}", args.members, args.seed))
        .build()
        .map_err(|e| e.to_string())?;
    sim.run_for(Duration::from_secs(args.duration));
    let report = sim.finish();
    for record in &report.records {
        let line = match record {
            TraceRecord::Fault { at, fault } => format!("{at:>10}  fault  {fault:?}"),
            TraceRecord::Event { at, node, event } => match describe(event) {
                Some(what) => format!("{at:>10}  {node:>5}  {what}"),
                None => continue,
            },
            _ => continue,
        };
        println!("{line}");
    }
    println!(
        "{} datagrams delivered, {} dropped by partitions, {} to crashed members; trace hash {:#018x}",
        report.stats.delivered, report.stats.dropped_partition, report.stats.dropped_down, report.trace_hash
    );
    if report.violations.is_empty() {
        println!("every checker passed");
        Ok(())
    } else {
        for violation in &report.violations {
            println!("{violation}");
        }
        Err(format!("{} violation(s)", report.violations.len()))
    }
}

fn describe(event: &Event) -> Option<String> {
    Some(match event {
        Event::MemberJoined(m) => format!("sees {} join", m.id),
        Event::MemberUpdated(m) => format!("sees {} update its tags", m.id),
        Event::MemberSuspected(m) => format!("suspects {} (incarnation {})", m.id, m.incarnation),
        Event::MemberFailed(m) => format!("declares {} failed", m.id),
        Event::MemberRecovered(m) => format!("sees {} recover (incarnation {})", m.id, m.incarnation),
        Event::MemberLeft(m) => format!("sees {} leave", m.id),
        Event::Broadcast { origin, payload } => format!("receives {} B from {origin}", payload.len()),
        _ => return None,
    })
}
