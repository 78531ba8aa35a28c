//! `conclave bench chaos`: random-chaos seeds per wall minute, and what they found.
//!
//! Each seed draws its own chaos ([`conclave_sim::chaos::Chaos`]) and runs until every
//! checker has judged; the bench counts seeds, clean runs, and the checkers that failed.

use std::collections::BTreeMap;
use std::time::Instant as WallInstant;

use clap::Parser;
use conclave_sim::chaos::{Chaos, RUN_LIMIT};
use conclave_sim::check::WHEN_PROVOKED;
use conclave_sim::{Status, TraceMode};

/// Flags of `conclave bench chaos`.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// How many seeds (from 1).
    #[arg(long, default_value_t = 2000)]
    seeds: u64,
    /// The cluster size; without it, each seed draws its own (mostly 3-12, some 30-60).
    #[arg(long)]
    members: Option<usize>,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Print every failing seed's problems.
    #[arg(long)]
    verbose: bool,
}

#[allow(clippy::disallowed_methods, reason = "a benchmark measures wall time, outside the simulation")]
pub(crate) fn run(args: &Args) -> Result<(), String> {
    let size = args.members.map_or_else(|| "drawn per seed".to_string(), |m| m.to_string());
    println!("conclave bench chaos: {} seeds from {}, members {size}", args.seeds, args.first);
    let start = WallInstant::now();
    let mut clean = 0u64;
    let mut failing: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    // The checkers that judge only what a seed provokes: how many seeds each judged.
    let mut judged: BTreeMap<&'static str, u64> = WHEN_PROVOKED.iter().map(|&name| (name, 0)).collect();
    let mut virtual_secs = 0.0;
    let mut steps = 0u64;
    for seed in args.first..args.first + args.seeds {
        let chaos = Chaos::generate_sized(seed, args.members);
        let mut sim = chaos.builder().trace(TraceMode::HashOnly).build().map_err(|e| e.to_string())?;
        sim.run_until_judged(conclave_core::Instant::ZERO + RUN_LIMIT);
        let report = sim.finish();
        virtual_secs += report.end.as_nanos() as f64 / 1e9;
        steps += report.stats.steps;
        for check in &report.checks {
            if let (Some(count), false) = (judged.get_mut(check.checker), matches!(check.status, Status::NotJudged(_)))
            {
                *count += 1;
            }
        }
        if report.is_clean() {
            clean += 1;
            continue;
        }
        for check in &report.checks {
            let bad = match &check.status {
                Status::Violated(_) => true,
                Status::NotJudged(_) => !check.opted_out,
                Status::Held => false,
            };
            if bad {
                failing.entry(check.checker).or_default().push(seed);
            }
        }
        if args.verbose {
            let replay = match args.members {
                None => format!("; replay: conclave run random-chaos --seed {seed}"),
                Some(n) => format!("; replay: conclave run random-chaos --seed {seed} --members {n}"),
            };
            println!("seed {seed} ({} members, kinds {:?}){replay}:", chaos.members, chaos.kinds);
            for p in report.problems().iter().take(4) {
                println!("  {}", p.lines().next().unwrap_or(""));
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    println!(
        "{} seeds in {wall:.2} s wall: {:.0} seeds/minute, {:.0} virtual s per seed, {:.0} events per seed",
        args.seeds,
        args.seeds as f64 * 60.0 / wall,
        virtual_secs / args.seeds as f64,
        steps as f64 / args.seeds as f64
    );
    println!("clean: {clean} of {}", args.seeds);
    for (checker, count) in &judged {
        println!("  {checker} judged {count} of {} seeds (the others did not provoke it)", args.seeds);
    }
    for (checker, seeds) in &failing {
        let shown: Vec<String> = seeds.iter().take(10).map(u64::to_string).collect();
        println!("  {checker}: {} seeds (first: {})", seeds.len(), shown.join(", "));
    }
    if clean == args.seeds {
        Ok(())
    } else {
        Err(format!("{} of {} seeds failed", args.seeds - clean, args.seeds))
    }
}
