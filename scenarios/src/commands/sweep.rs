//! `conclave sweep` and `conclave merge`: many seeds of the catalog, in parallel, with a
//! progress bar and a summary of percentiles; a deterministic shard of them as JSON lines;
//! the summary of many shards.

use std::path::PathBuf;

use clap::Parser;
use conclave_scenarios::sweep::{self, Job, Record, Shard, Summary};
use conclave_scenarios::Error;
use indicatif::{ProgressBar, ProgressStyle};

use super::run::timed;
use super::{in_parallel, parallelism, program, read, write, Output, Verdict};

/// Flags of `conclave sweep`.
#[derive(Debug, Default, Parser)]
pub(crate) struct Args {
    /// The scenarios to sweep (all when none is named).
    pub(crate) scenarios: Vec<String>,
    /// Seeds per scenario (each scenario's default when not given).
    #[arg(long)]
    pub(crate) seeds: Option<u64>,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    pub(crate) first: u64,
    /// Run only this deterministic slice of the jobs, `K/N` (K from 0 to N-1), and write
    /// its results as JSON lines (to `--out`, or standard output).
    #[arg(long, value_name = "K/N")]
    pub(crate) shard: Option<Shard>,
    /// Write every run's result to this file, as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Runs at once (default: one per core).
    #[arg(long)]
    pub(crate) jobs: Option<usize>,
    /// Run nothing: build the summary from these files of JSON lines (shards' outputs).
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with_all = ["shard", "out"])]
    pub(crate) merge: Vec<PathBuf>,
}

/// Flags of `conclave merge`.
#[derive(Debug, Parser)]
pub(crate) struct MergeArgs {
    /// Files of JSON lines, as `conclave sweep --shard K/N` writes them.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// `conclave merge`.
pub(crate) fn merge(args: &MergeArgs, output: Output) -> Result<Verdict, Error> {
    merged(&args.files, output)
}

fn merged(files: &[PathBuf], output: Output) -> Result<Verdict, Error> {
    let mut records = Vec::new();
    for path in files {
        records.extend(Record::read_lines(&read(path)?, &path.display().to_string())?);
    }
    let summary = Summary::of(&records);
    report(&summary, &records, output);
    Ok(Verdict::of(summary.failed() == 0))
}

/// `conclave sweep` (and the command's default).
pub(crate) fn run(args: &Args, output: Output) -> Result<Verdict, Error> {
    if !args.merge.is_empty() {
        return merged(&args.merge, output);
    }
    let scenarios = sweep::scenarios(&args.scenarios)?;
    let mut jobs = sweep::jobs(&scenarios, args.seeds, args.first);
    if let Some(shard) = args.shard {
        jobs = shard.take(jobs);
    }
    let threads = parallelism(args.jobs);
    let bar = if output == Output::Quiet { ProgressBar::hidden() } else { ProgressBar::new(jobs.len() as u64) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} runs, {msg} ({elapsed}, about {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let failed = std::sync::atomic::AtomicUsize::new(0);
    let (records, wall) = timed(|| {
        in_parallel(
            &jobs,
            threads,
            |job: &Job| Record::run(*job, None),
            |r: &Result<Record, Error>| {
                if r.as_ref().is_ok_and(|r| !r.held) {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                bar.set_message(format!("{} failed", failed.load(std::sync::atomic::Ordering::Relaxed)));
                bar.inc(1);
            },
        )
    });
    bar.finish_and_clear();
    let records: Vec<Record> = records.into_iter().collect::<Result<_, _>>()?;
    let lines: String = records.iter().map(|r| r.to_json() + "\n").collect();
    if let Some(path) = &args.out {
        write(path, &lines)?;
    }
    let summary = Summary::of(&records);
    if args.shard.is_some() {
        if args.out.is_none() {
            print!("{lines}");
        }
        if output != Output::Quiet {
            let shard = args.shard.map(|s| s.to_string()).unwrap_or_default();
            eprintln!(
                "shard {shard}: {} runs in {:.1}s wall, {} failed",
                records.len(),
                wall.as_secs_f64(),
                summary.failed()
            );
        }
    } else if output == Output::Json {
        print!("{lines}");
    } else {
        report(&summary, &records, output);
        if output != Output::Quiet {
            let virtual_secs: f64 = records.iter().map(|r| r.virtual_secs).sum();
            let kinds =
                if scenarios.len() == 1 { "1 scenario".to_string() } else { format!("{} scenarios", scenarios.len()) };
            println!(
                "{} runs of {kinds} in {:.1}s wall on {threads} threads ({:.0} virtual seconds, {:.0}x real time)",
                records.len(),
                wall.as_secs_f64(),
                virtual_secs,
                virtual_secs / wall.as_secs_f64().max(1e-9)
            );
        }
    }
    Ok(Verdict::of(summary.failed() == 0))
}

/// The summary table and the failed runs with their replay lines.
fn report(summary: &Summary, records: &[Record], output: Output) {
    if output == Output::Json {
        for r in records {
            println!("{}", r.to_json());
        }
        return;
    }
    if output != Output::Quiet {
        println!("{summary}");
    }
    let failures = summary.failures();
    let program = program();
    for (scenario, seed, check) in failures.iter().take(if output == Output::Verbose { usize::MAX } else { 10 }) {
        println!("FAILED: {scenario} seed {seed}: {check}; replay: {program} run {scenario} --seed {seed}");
    }
    if failures.len() > 10 && output != Output::Verbose {
        println!("... and {} more failed runs (--verbose lists them all)", failures.len() - 10);
    }
    let held = summary.runs() as usize - summary.failed();
    println!("{held} of {} runs held", summary.runs());
}
