//! `conclave bench convergence`: how long after a partition heals every view is whole again.
//!
//! A cluster forms, one member (`one`) or half the members (`half`) are cut off for a
//! while, the network heals; the figure is the virtual time from the heal until every
//! member holds every member alive, over many seeds (p50, p99, max). Everything runs on
//! the fast engine with `Config::lan()` and 500 µs links: the figures are the same on
//! every machine. The default convergence bound of the simulator's checker
//! (`SimBuilder::default_convergence_bound`) is set from these figures.

use std::time::Duration;

use clap::Parser;
use conclave_core::{Config, Instant, NodeId};
use conclave_sim::{sim_id, Converges, Fault, FaultPlan, SimBuilder, TraceMode};
use hdrhistogram::Histogram;

use crate::poll::poll_until;

/// Flags of `conclave bench convergence`.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// Cluster sizes.
    #[arg(long, value_delimiter = ',', default_value = "5,100")]
    members: Vec<usize>,
    /// Partition lengths, in seconds.
    #[arg(long, value_delimiter = ',', default_value = "20,300")]
    partitions: Vec<u64>,
    /// Which members are cut off: `one` (the last), `half` (the upper half), or both.
    #[arg(long, value_delimiter = ',', default_value = "one,half")]
    shapes: Vec<String>,
    /// Seeds per cluster size and length (for clusters above 20 members, a fifth as many,
    /// at least 10).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// When the partition starts: the cluster has formed.
const SPLIT: Instant = Instant::from_secs(10);
/// How often the views are compared after the heal: the figures' resolution.
const POLL: Duration = Duration::from_millis(50);
/// The longest wait after the heal.
const LIMIT: Duration = Duration::from_secs(1200);

pub(crate) fn run(args: &Args) -> Result<(), String> {
    let config = Config::lan();
    println!(
        "conclave bench convergence: Config::lan() (probe {:?}, push-pull {:?}), 500 us links; time from the heal until every view is whole",
        config.probe_interval, config.push_pull_interval
    );
    println!(
        "{:>8} {:>6} {:>10} {:>6} {:>9} {:>9} {:>9} {:>10}",
        "members", "cut", "partition", "seeds", "p50", "p99", "max", "not within"
    );
    for &n in &args.members {
        for &length in &args.partitions {
            for shape in &args.shapes {
                let seeds = if n > 20 { (args.seeds / 5).max(10) } else { args.seeds };
                let (hist, late) = measure(n, Duration::from_secs(length), shape, args.seed, seeds)?;
                let s = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
                println!(
                    "{n:>8} {shape:>6} {:>9}s {seeds:>6} {:>8.1}s {:>8.1}s {:>8.1}s {:>10}",
                    length,
                    s(0.5),
                    s(0.99),
                    hist.max() as f64 / 1000.0,
                    late
                );
            }
        }
    }
    Ok(())
}

/// Milliseconds from the heal until the views converge, per seed; and how many seeds did
/// not converge within [`LIMIT`].
fn measure(n: usize, length: Duration, shape: &str, first: u64, seeds: u64) -> Result<(Histogram<u64>, u64), String> {
    let cut: Vec<NodeId> = match shape {
        "one" => vec![sim_id(n - 1)],
        "half" => (n / 2..n).map(sim_id).collect(),
        other => return Err(format!("unknown shape {other:?}: one or half")),
    };
    let heal = SPLIT + length;
    let mut hist = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let mut late = 0;
    for seed in first..first + seeds {
        let plan = FaultPlan::new().at(SPLIT, Fault::Partition(vec![cut.clone()])).at(heal, Fault::Heal);
        let mut sim = SimBuilder::new()
            .seed(seed)
            .members(n)
            .config(Config::lan())
            .plan(plan)
            .trace(TraceMode::HashOnly)
            .default_checkers(false)
            .build()
            .map_err(|e| e.to_string())?;
        sim.run_until(heal);
        let converged =
            poll_until(&mut sim, POLL, heal + LIMIT, |sim| Converges::differences(&sim.snapshot(), 1).is_empty());
        match converged {
            Some(at) => hist.record((at - heal).as_millis() as u64).map_err(|e| e.to_string())?,
            None => late += 1,
        }
    }
    Ok((hist, late))
}
