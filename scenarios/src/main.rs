//! The `conclave` command: `conclave bench sim` and `conclave bench membership` today; run, sweep, replay, shrink and
//! timeline come with the scenarios issue, each as one more subcommand here.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

mod membership_bench;
mod sim_bench;

/// conclave: cluster membership, failure detection and leader election, simulated.
#[derive(Debug, Parser)]
#[command(name = "conclave", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Top::Bench(Bench::Sim(args)) => sim_bench::run(&args),
        Top::Bench(Bench::Membership(args)) => membership_bench::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conclave: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
