//! The `conclave` command: the scenario catalog (`list`, `run`, `replay`, `sweep`,
//! `merge`, `shrink`, `check-determinism`) and the benchmarks (`bench ...`). Without a
//! subcommand it sweeps the catalog over each scenario's default seeds.
//!
//! Exit codes: 0 every check held, 1 a check failed, 2 bad usage or input (one line
//! saying what).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod chaos_bench;
mod commands;
mod compare;
mod convergence_bench;
mod election_bench;
mod foca_peer;
mod membership_bench;
mod poll;
mod resilience_bench;
mod sim_bench;

use commands::{Output, Verdict};

/// conclave: cluster membership, failure detection and leader election, simulated.
///
/// Without a command: the catalog's sweep (every scenario over its default seeds, a table
/// of figures). `conclave list` shows the scenarios, `conclave run <scenario> --seed <n>`
/// runs one.
#[derive(Debug, Parser)]
#[command(name = "conclave", version, about)]
struct Cli {
    /// What to do; without one, `sweep` with its defaults.
    #[command(subcommand)]
    command: Option<Top>,
    /// Print every fault and event of a run (and, to standard error, why members suspect,
    /// declare failed, refute and exchange views; `RUST_LOG` sets that filter instead);
    /// every failed run of a sweep.
    #[arg(long, short, global = true, conflicts_with_all = ["quiet", "json"])]
    verbose: bool,
    /// Print the verdict alone.
    #[arg(long, short, global = true, conflicts_with = "json")]
    quiet: bool,
    /// Print JSON lines for machines.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// The scenarios of the catalog, or one in full.
    List(commands::list::Args),
    /// A scenario's seeds (or a plan file) until every check has judged: the summary, the
    /// figures, the verdict; the trace and a timeline page on request.
    Run(commands::run::Args),
    /// A saved plan file, or a scenario's seed, run again exactly.
    Replay(commands::run::ReplayArgs),
    /// Many seeds of the catalog in parallel: a progress bar and a table of percentiles;
    /// `--shard K/N` runs a deterministic slice and writes JSON lines.
    Sweep(commands::sweep::Args),
    /// The summary of sweep shards' JSON lines, as one sweep would print it.
    Merge(commands::sweep::MergeArgs),
    /// A failing seed's plan made small (fewer faults, earlier, shorter, fewer members)
    /// while it still fails the same check; saved as a plan file.
    Shrink(commands::shrink::Args),
    /// Each seed twice, the trace hashes compared.
    CheckDeterminism(commands::determinism::Args),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = match (cli.verbose, cli.quiet, cli.json) {
        (_, _, true) => Output::Json,
        (_, true, _) => Output::Quiet,
        (true, _, _) => Output::Verbose,
        _ => Output::Summary,
    };
    let runs_one = matches!(cli.command, Some(Top::Run(_) | Top::Replay(_) | Top::Bench(_)));
    init_tracing(cli.verbose && runs_one);
    let verdict = match cli.command {
        None => commands::sweep::run(&commands::sweep::Args::default(), output),
        Some(Top::List(args)) => commands::list::run(&args, output),
        Some(Top::Run(args)) => commands::run::run(&args, output),
        Some(Top::Replay(args)) => commands::run::replay(&args, output),
        Some(Top::Sweep(args)) => commands::sweep::run(&args, output),
        Some(Top::Merge(args)) => commands::sweep::merge(&args, output),
        Some(Top::Shrink(args)) => commands::shrink::run(&args, output),
        Some(Top::CheckDeterminism(args)) => commands::determinism::run(&args, output),
        Some(Top::Bench(bench)) => {
            return match run_bench(bench) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("conclave: {e}");
                    ExitCode::from(1)
                }
            }
        }
    };
    match verdict {
        Ok(Verdict::Held) => ExitCode::SUCCESS,
        Ok(Verdict::Failed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("conclave: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_bench(bench: Bench) -> Result<(), String> {
    match bench {
        Bench::Sim(args) => sim_bench::run(&args),
        Bench::Membership(args) => membership_bench::run(&args),
        Bench::Chaos(args) => chaos_bench::run(&args),
        Bench::Convergence(args) => convergence_bench::run(&args),
        Bench::Compare(args) => compare::run(&args),
        Bench::Election(args) => election_bench::run(&args),
        Bench::Resilience(args) => resilience_bench::run(&args),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
