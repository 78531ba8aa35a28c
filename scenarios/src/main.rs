//! The `conclave` command: `conclave run` (the default), `conclave bench sim`,
//! `conclave bench membership` and `conclave bench compare` (beside foca) today; run, sweep,
//! replay, shrink and timeline come with the scenarios issue, each as one more subcommand here.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

mod chaos_bench;
mod compare;
mod convergence_bench;
mod election_bench;
mod foca_peer;
mod membership_bench;
mod poll;
mod resilience_bench;
mod run;
mod sim_bench;

/// conclave: cluster membership, failure detection and leader election, simulated.
#[derive(Debug, Parser)]
#[command(name = "conclave", version, about)]
struct Cli {
    /// What to do; without one, `run` with its defaults.
    #[command(subcommand)]
    command: Option<Top>,
    /// Print why members suspect, declare failed, refute and exchange views, as it happens,
    /// stamped with virtual time (to standard error). `RUST_LOG` sets the filter instead
    /// (`RUST_LOG=debug` adds every state transfer).
    #[arg(long, short, global = true)]
    verbose: bool,
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
    /// conclave beside foca 1.0 on the same simulated links: crash detection, false downs
    /// and suspicions under loss, load, and the Lifeguard ablation with slowed members.
    Compare(compare::Args),
    /// Leader election against the Raft paper's section 9.3 (downtime after a leader
    /// crash, per range of election timeouts), and partition detection and heal times.
    Election(election_bench::Args),
    /// The resilience policies on a service workload: retry amplification in an outage,
    /// hedging against a slow worker, a cascade after a crash, and jitter under contention.
    Resilience(resilience_bench::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let result = match cli.command {
        None => run::run(&run::Args::default()),
        Some(Top::Run(args)) => run::run(&args),
        Some(Top::Bench(Bench::Sim(args))) => sim_bench::run(&args),
        Some(Top::Bench(Bench::Membership(args))) => membership_bench::run(&args),
        Some(Top::Bench(Bench::Chaos(args))) => chaos_bench::run(&args),
        Some(Top::Bench(Bench::Convergence(args))) => convergence_bench::run(&args),
        Some(Top::Bench(Bench::Compare(args))) => compare::run(&args),
        Some(Top::Bench(Bench::Election(args))) => election_bench::run(&args),
        Some(Top::Bench(Bench::Resilience(args))) => resilience_bench::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conclave: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Shows the core's `tracing` events on standard error when asked, by `--verbose` or by
/// `RUST_LOG`; otherwise installs nothing (the events then cost a check each).
fn init_tracing(verbose: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => EnvFilter::new(filter),
        _ if verbose => EnvFilter::new("info"),
        _ => return,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .without_time()
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
