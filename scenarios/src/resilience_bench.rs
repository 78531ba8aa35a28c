//! `conclave bench resilience`: the resilience policies of `conclave_core::resilience`, run
//! by the simulator's service workload, beside the published figures (REFERENCES.md).
//!
//! - **Retry amplification in a full outage** (the Google SRE book, "Handling Overload"):
//!   every worker answers every request with an error; attempts sent per call, with three
//!   attempts a call and no budget, with the default retry budget, and with every default.
//! - **One worker of ten ten times slower** ("The Tail at Scale"): latency percentiles of
//!   the calls without hedging and with it, and the extra requests hedging sends.
//! - **A worker crash under load**: five workers at 85 % load lose one; whether the others
//!   crash one after another (which, and when) without shedding and breakers, and with the
//!   default policy.
//! - **100 contending clients** (the AWS study "Exponential Backoff And Jitter"): clients
//!   updating one row under optimistic concurrency, each retrying until its write succeeds
//!   with core's `Backoff`; total calls and time to finish per jitter variant.
//!
//! The first three run on the simulator (`service.rs` has the setups); the fourth is the
//! study's own model, in virtual time too. Every figure is the same on every machine.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use clap::Parser;
use conclave_core::resilience::{Backoff, HedgeConfig, Jitter, Policy, Selection};
use conclave_core::NodeId;
use conclave_scenarios::service::{self, Service};
use conclave_sim::{SimRng, WorkloadReport};
use hdrhistogram::Histogram;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Flags of `conclave bench resilience`.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// Seeds per simulated setup.
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs per backoff variant in the contention model (the AWS study averaged 100).
    #[arg(long, default_value_t = 100)]
    trials: u64,
    /// Contending clients in the contention model.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Which parts to run: outage, slow, cascade, jitter.
    #[arg(long, value_delimiter = ',', default_value = "outage,slow,cascade,jitter")]
    parts: Vec<String>,
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    println!("conclave bench resilience: Config::lan() members on 500 us links; calls from 10 s with a 1 s deadline");
    println!("seeds {}..={} per simulated setup", args.seed, args.seed + args.seeds - 1);
    for part in &args.parts {
        println!();
        match part.as_str() {
            "outage" => outage(args)?,
            "slow" => slow(args)?,
            "cascade" => cascade(args)?,
            "jitter" => jitter(args),
            other => return Err(format!("unknown part {other:?}: outage, slow, cascade or jitter")),
        }
    }
    Ok(())
}

/// One run of `service` with `seed`: the workload's figures.
fn measure(service: &Service, seed: u64) -> Result<WorkloadReport, String> {
    let mut sim = service.bench(seed).build().map_err(|e| e.to_string())?;
    sim.run_until(service.end);
    sim.finish().workload.ok_or_else(|| "the run had no workload".to_string())
}

/// The runs of `service` over the seeds.
fn measure_all(service: &Service, args: &Args) -> Result<Vec<WorkloadReport>, String> {
    (args.seed..args.seed + args.seeds).map(|seed| measure(service, seed)).collect()
}

/// Sums, over runs: calls, attempts, completed, hedges, and the latencies merged.
struct Totals {
    calls: u64,
    attempts: u64,
    completed: u64,
    hedges: u64,
    latency: Histogram<u64>,
    /// Attempts per call of each run.
    amplification: Vec<f64>,
}

impl Totals {
    fn of(runs: &[WorkloadReport]) -> Result<Self, String> {
        let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| e.to_string())?;
        for run in runs {
            latency.add(&run.latency).map_err(|e| e.to_string())?;
        }
        Ok(Self {
            calls: runs.iter().map(|r| r.calls).sum(),
            attempts: runs.iter().map(|r| r.attempts).sum(),
            completed: runs.iter().map(|r| r.completed).sum(),
            hedges: runs.iter().map(|r| r.hedges).sum(),
            latency,
            amplification: runs.iter().map(WorkloadReport::amplification).collect(),
        })
    }

    fn amplification(&self) -> f64 {
        self.attempts as f64 / self.calls.max(1) as f64
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1e3
    }

    /// "min-max" of the runs' attempts per call.
    fn spread(&self) -> String {
        let min = self.amplification.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.amplification.iter().copied().fold(0.0, f64::max);
        format!("{min:.3}-{max:.3}")
    }
}

// ----- retry amplification in a full outage --------------------------------------------

fn outage(args: &Args) -> Result<(), String> {
    println!("## Retry amplification in a full outage");
    println!(
        "10 clients and 10 workers (the last rows: 50 and 50) answering every request with an error at once, 60 s of Poisson calls; attempts sent per call"
    );
    let with_budget = {
        let mut policy = service::retries_only();
        policy.budget = Policy::default().budget;
        policy
    };
    let rows: [(&str, Policy, usize, f64, &str); 6] = [
        ("3 attempts, no budget", service::retries_only(), 20, 100.0, "about 3x"),
        ("3 attempts, default budget", with_budget.clone(), 20, 100.0, "about 1.1x"),
        ("3 attempts, default budget", with_budget.clone(), 20, 1000.0, "about 1.1x"),
        ("every default (breakers too)", Policy::default(), 20, 100.0, "-"),
        ("3 attempts, no budget", service::retries_only(), 100, 100.0, "about 3x"),
        ("3 attempts, default budget", with_budget, 100, 100.0, "about 1.1x"),
    ];
    println!(
        "{:<30} {:>10} {:>10} {:>11} {:>10} {:>15}  SRE book",
        "policy", "calls/s", "calls", "attempts", "per call", "runs (min-max)"
    );
    for (name, policy, members, per_sec, sre) in rows {
        let totals = Totals::of(&measure_all(&service::full_outage_of(members, policy, per_sec), args)?)?;
        println!(
            "{:<30} {:>10} {:>10} {:>11} {:>9.3}x {:>15}  {}",
            name,
            format!("{per_sec} x {}", members / 2),
            totals.calls,
            totals.attempts,
            totals.amplification(),
            totals.spread(),
            sre
        );
    }
    println!("(the default budget: 10 % of requests, and at least 1 retry a second per client, over 10 s)");
    Ok(())
}

// ----- one slow worker -------------------------------------------------------------------

fn slow(args: &Args) -> Result<(), String> {
    println!("## One worker of ten 10x slower");
    println!(
        "10 clients at 100 calls/s each, 10 workers (16 servers, service log-normal median 5 ms), n11 10x slower; calls from 20 s to 70 s"
    );
    slow_rows(args, 20)?;
    println!("at 100 members: 50 clients at 100 calls/s each, 50 workers, every tenth 10x slower (n51, n61, ..., n91)");
    slow_rows(args, 100)
}

/// The slow-worker rows on a cluster of `members`.
fn slow_rows(args: &Args, members: usize) -> Result<(), String> {
    let without = {
        let mut policy = Policy::default();
        policy.hedging = None;
        policy
    };
    let at_p90 = {
        let mut policy = Policy::default();
        let mut hedging = HedgeConfig::default();
        hedging.quantile = 0.9;
        policy.hedging = Some(hedging);
        policy
    };
    let by_outstanding = |hedging: Option<HedgeConfig>| {
        let mut policy = Policy::default();
        policy.selection = Selection::PowerOfTwoChoices;
        policy.hedging = hedging;
        policy
    };
    let rows = [
        ("defaults without hedging", without),
        ("defaults (hedging at p95)", Policy::default()),
        ("hedging at p90", at_p90),
        ("P2C by outstanding, no hedging", by_outstanding(None)),
        ("P2C by outstanding, hedging", by_outstanding(Some(HedgeConfig::default()))),
    ];
    println!(
        "{:<32} {:>9} {:>9} {:>9} {:>9} {:>9} {:>15} {:>9} {:>20}",
        "policy", "p50", "p90", "p95", "p99", "p99.9", "extra requests", "hedges", "run by the slow"
    );
    let mut p99s = Vec::new();
    for (name, policy) in rows {
        let setup = service::slow_workers_of(members, policy);
        let slow_ones: Vec<NodeId> = setup.workers().iter().step_by(10).copied().collect();
        let runs = measure_all(&setup, args)?;
        let totals = Totals::of(&runs)?;
        let by_slow: u64 =
            runs.iter().flat_map(|r| slow_ones.iter().map(|w| r.executed.get(w).copied().unwrap_or(0))).sum();
        let run: u64 = runs.iter().map(WorkloadReport::executed_total).sum();
        println!(
            "{:<32} {:>6.1} ms {:>6.1} ms {:>6.1} ms {:>6.1} ms {:>6.1} ms {:>14.2}% {:>8.2}% {:>19.2}%",
            name,
            totals.ms(0.5),
            totals.ms(0.9),
            totals.ms(0.95),
            totals.ms(0.99),
            totals.ms(0.999),
            100.0 * (totals.attempts as f64 / totals.calls.max(1) as f64 - 1.0),
            100.0 * totals.hedges as f64 / totals.calls.max(1) as f64,
            100.0 * by_slow as f64 / run.max(1) as f64,
        );
        p99s.push((totals.ms(0.99), totals.attempts as f64 / totals.calls.max(1) as f64 - 1.0));
    }
    println!("goal: p99 at least halved for at most 5 % extra requests; hedging at p95 against none:");
    for (selection, none, hedged) in [("peak EWMA (the default)", 0, 1), ("P2C by outstanding", 3, 4)] {
        let ((none, _), (hedged, extra)) = (p99s[none], p99s[hedged]);
        println!(
            "  {selection}: p99 {:.2}x of no hedging, {:.2} % extra: {}",
            hedged / none,
            100.0 * extra,
            if hedged <= none / 2.0 && extra <= 0.05 { "met" } else { "NOT met" }
        );
    }
    Ok(())
}

// ----- a worker crash under load ---------------------------------------------------------

fn cascade(args: &Args) -> Result<(), String> {
    println!("## A worker crash under load");
    println!(
        "5 clients at 75 calls/s each, 5 workers (2 servers, log-normal median 20 ms: 88/s each) at 85 % load, crashing past 100 requests held; n6 crashes at 20 s"
    );
    let timelines = cascade_rows(args, 10, 1)?;
    println!("which workers crashed, overloaded, when (n6 is crashed by the plan at 20 s):");
    for (name, runs) in &timelines {
        for (seed, run) in (args.seed..).zip(runs) {
            if run.overload_crashes.is_empty() {
                continue;
            }
            let crashes: Vec<String> =
                run.overload_crashes.iter().map(|(at, worker, _)| format!("{worker} at {at}")).collect();
            println!("  {name}, seed {seed}: {}", crashes.join(", "));
        }
    }
    println!("at 100 members: 50 clients, 50 workers, the same load per worker; 10 workers (n51-n60) crash at 20 s");
    let timelines = cascade_rows(args, 100, 10)?;
    println!("overload crashes after the plan's, first and last (of 40 workers left):");
    for (name, runs) in &timelines {
        for (seed, run) in (args.seed..).zip(runs) {
            if let (Some(first), Some(last)) = (run.overload_crashes.first(), run.overload_crashes.last()) {
                println!(
                    "  {name}, seed {seed}: {}, first at {}, last at {}",
                    run.overload_crashes.len(),
                    first.0,
                    last.0
                );
            }
        }
    }
    Ok(())
}

/// The cascade's rows on a cluster of `members` losing `crashed` workers; the runs of each.
fn cascade_rows(
    args: &Args,
    members: usize,
    crashed: usize,
) -> Result<Vec<(&'static str, Vec<WorkloadReport>)>, String> {
    let rows = [
        ("3 attempts only", service::retries_only()),
        ("defaults without shedding and breakers", service::without_shedding_and_breakers()),
        ("defaults", Policy::default()),
    ];
    println!("{:<40} {:>22} {:>10} {:>10} {:>9}", "policy", "overload crashes/seed", "completed", "per call", "p99");
    let mut timelines = Vec::new();
    for (name, policy) in rows {
        let runs = measure_all(&service::cascade_of(members, crashed, policy), args)?;
        let totals = Totals::of(&runs)?;
        let crashes: Vec<String> = runs.iter().map(|r| r.overload_crashes.len().to_string()).collect();
        println!(
            "{:<40} {:>22} {:>9.1}% {:>9.3}x {:>6.0} ms",
            name,
            crashes.join(" "),
            100.0 * totals.completed as f64 / totals.calls.max(1) as f64,
            totals.amplification(),
            totals.ms(0.99)
        );
        timelines.push((name, runs));
    }
    Ok(timelines)
}

// ----- 100 contending clients --------------------------------------------------------------

/// One client's step in the contention model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// Its read reaches the row.
    Read(usize),
    /// The version it read reaches it.
    ReadAnswer(usize, u64),
    /// Its conditional write reaches the row.
    Write(usize, u64),
    /// The write's outcome reaches it.
    WriteAnswer(usize, bool),
}

/// One run of the AWS study's model: `clients` clients each update one row once under
/// optimistic concurrency (read its version, write if it is still that version), every
/// message taking |N(10 ms, 2 ms)|, and wait `backoff` (none: retry at once) after a failed
/// write before reading again. Returns the writes, the reads and when the last one
/// succeeded.
fn contention(backoff: Option<&Backoff>, clients: usize, seed: u64) -> (u64, u64, Duration) {
    let mut net = SimRng::new(seed);
    let mut jitter = ChaCha8Rng::seed_from_u64(seed ^ 0x6a69_7474_6572);
    let delay = |net: &mut SimRng| -> u64 { ((10.0 + 2.0 * net.normal()).abs() * 1e6) as u64 };
    let mut queue = BinaryHeap::new();
    let mut sequence = 0u64;
    let mut push = |queue: &mut BinaryHeap<Reverse<(u64, u64, Step)>>, at: u64, step: Step| {
        sequence += 1;
        queue.push(Reverse((at, sequence, step)));
    };
    let (mut version, mut writes, mut reads, mut finished) = (0u64, 0u64, 0u64, 0u64);
    let mut failures = vec![0u32; clients];
    let mut previous = vec![Duration::ZERO; clients];
    for client in 0..clients {
        let at = delay(&mut net);
        push(&mut queue, at, Step::Read(client));
    }
    while let Some(Reverse((now, _, step))) = queue.pop() {
        match step {
            Step::Read(client) => {
                reads += 1;
                push(&mut queue, now + delay(&mut net), Step::ReadAnswer(client, version));
            }
            Step::ReadAnswer(client, seen) => push(&mut queue, now + delay(&mut net), Step::Write(client, seen)),
            Step::Write(client, seen) => {
                writes += 1;
                let ok = seen == version;
                if ok {
                    version += 1;
                }
                push(&mut queue, now + delay(&mut net), Step::WriteAnswer(client, ok));
            }
            Step::WriteAnswer(_, true) => finished = finished.max(now),
            Step::WriteAnswer(client, false) => {
                let wait = backoff.map_or(Duration::ZERO, |b| b.delay(failures[client], previous[client], &mut jitter));
                failures[client] += 1;
                previous[client] = wait;
                let at = now + delay(&mut net) + wait.as_nanos() as u64;
                push(&mut queue, at, Step::Read(client));
            }
        }
    }
    (writes, reads, Duration::from_nanos(finished))
}

fn jitter(args: &Args) {
    let (base, cap) = (Duration::from_millis(5), Duration::from_secs(2));
    println!("## {} contending clients (AWS, \"Exponential Backoff And Jitter\")", args.clients);
    println!(
        "each client updates one row once under optimistic concurrency, retrying until its write succeeds; messages |N(10 ms, 2 ms)|; core's Backoff, base {base:?}, cap {cap:?}; mean of {} runs",
        args.trials
    );
    let variants: [(&str, Option<Backoff>); 5] = [
        ("no backoff", None),
        ("exponential, no jitter", Some(Backoff::new(base, cap, Jitter::None))),
        ("full jitter", Some(Backoff::new(base, cap, Jitter::Full))),
        ("equal jitter", Some(Backoff::new(base, cap, Jitter::Equal))),
        ("decorrelated jitter", Some(Backoff::new(base, cap, Jitter::Decorrelated))),
    ];
    println!("{:<24} {:>14} {:>12} {:>16}", "backoff", "calls (writes)", "reads", "time to finish");
    let mut means = Vec::new();
    for (name, backoff) in &variants {
        let (mut writes, mut reads, mut time) = (0u64, 0u64, Duration::ZERO);
        for seed in args.seed..args.seed + args.trials {
            let (w, r, t) = contention(backoff.as_ref(), args.clients, seed);
            writes += w;
            reads += r;
            time += t;
        }
        let n = args.trials.max(1) as f64;
        let (calls, ms) = (writes as f64 / n, time.as_secs_f64() * 1e3 / n);
        println!("{:<24} {:>14.0} {:>12.0} {:>13.0} ms", name, calls, reads as f64 / n, ms);
        means.push((*name, calls, ms));
    }
    let calls = |name: &str| means.iter().find(|m| m.0 == name).map_or(f64::NAN, |m| m.1);
    let none = calls("exponential, no jitter");
    let jittered = ["full jitter", "equal jitter", "decorrelated jitter"];
    let worst = jittered.iter().all(|j| calls(j) < none);
    let full = calls("full jitter") / none;
    println!(
        "the AWS study: no jitter the clear loser, full jitter more than halves the calls. Here: no jitter the most calls of the backoffs: {}; full jitter's calls {:.2}x of no jitter's: {}",
        if worst { "yes" } else { "NO" },
        full,
        if full < 0.5 { "more than halved" } else { "NOT halved" }
    );
}
