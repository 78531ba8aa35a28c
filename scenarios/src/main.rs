//! The `conclave` command: `conclave run` (the default), `conclave bench sim` and
//! `conclave bench membership` today; run, sweep, replay, shrink and
//! timeline come with the scenarios issue, each as one more subcommand here.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

mod chaos_bench;
mod convergence_bench;
mod membership_bench;
mod run;
mod sim_bench;

/// conclave: cluster membership, failure detection and leader election, simulated.
#[derive(Debug, Parser)]
#[command(name = "conclave", version, about)]
struct Cli {
    /// What to do; without one, `run` with its defaults.
    #[command(subcommand)]
    command: Option<Top>,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// One seeded chaos run (crash, restart, partition, heal) with its timeline and the
    /// checkers' verdict.
    Run(run::Args),
    /// Reproducible benchmarks.
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// The simulator's speed: delivered messages per wall second and virtual/wall speedup,
    /// fast engine against turmoil.
    Sim(sim_bench::Args),
    /// Membership in virtual time: crash detection latency (p50/p99 over many seeds),
    /// messages and bytes per member-second, and how fast a join reaches everyone.
    Membership(membership_bench::Args),
    /// Random chaos: seeds per wall minute, and which checkers failed on which seeds.
    Chaos(chaos_bench::Args),
    /// Convergence after a partition heals: time until every view is whole, p50/p99/max
    /// over many seeds.
    Convergence(convergence_bench::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run::run(&run::Args::default()),
        Some(Top::Run(args)) => run::run(&args),
        Some(Top::Bench(Bench::Sim(args))) => sim_bench::run(&args),
        Some(Top::Bench(Bench::Membership(args))) => membership_bench::run(&args),
        Some(Top::Bench(Bench::Chaos(args))) => chaos_bench::run(&args),
        Some(Top::Bench(Bench::Convergence(args))) => convergence_bench::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conclave: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
