//! `conclave check-determinism`: each seed twice, the trace hashes compared.

use clap::Parser;
use conclave_core::Instant;
use conclave_scenarios::sweep::{self, Job};
use conclave_scenarios::trial::JUDGEMENT_LIMIT;
use conclave_scenarios::{Error, Trial};
use conclave_sim::TraceMode;

use super::{in_parallel, parallelism, Output, Verdict};

/// Flags of `conclave check-determinism`.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// The scenarios (all when none is named).
    scenarios: Vec<String>,
    /// Seeds per scenario.
    #[arg(long, default_value_t = 2)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Runs at once (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
}

/// A run's trace hash.
fn hash(trial: &Trial) -> Result<u64, Error> {
    let mut sim = trial.build(TraceMode::HashOnly, None)?;
    sim.run_until_judged(trial.plan.last_at().unwrap_or(Instant::ZERO) + JUDGEMENT_LIMIT);
    Ok(sim.finish().trace_hash)
}

pub(crate) fn run(args: &Args, output: Output) -> Result<Verdict, Error> {
    let scenarios = sweep::scenarios(&args.scenarios)?;
    let jobs = sweep::jobs(&scenarios, Some(args.seeds), args.first);
    let results = in_parallel(
        &jobs,
        parallelism(args.jobs),
        |job: &Job| -> Result<(u64, u64), Error> {
            let trial = Trial::of(job.scenario, job.seed, None)?;
            Ok((hash(&trial)?, hash(&trial)?))
        },
        |_| {},
    );
    let mut differ = 0;
    for (job, result) in jobs.iter().zip(results) {
        let (a, b) = result?;
        let same = a == b;
        differ += usize::from(!same);
        match output {
            Output::Json => println!(
                "{}",
                serde_json::json!({"scenario": job.scenario.name, "seed": job.seed, "hashes": [format!("{a:#018x}"), format!("{b:#018x}")], "same": same})
            ),
            _ if !same => println!("DIFFER: {} seed {}: {a:#018x} then {b:#018x}", job.scenario.name, job.seed),
            Output::Verbose => println!("same: {} seed {}: {a:#018x}", job.scenario.name, job.seed),
            _ => {}
        }
    }
    if output != Output::Json {
        println!("{} of {} seeds gave the same trace hash twice", jobs.len() - differ, jobs.len());
    }
    Ok(Verdict::of(differ == 0))
}
