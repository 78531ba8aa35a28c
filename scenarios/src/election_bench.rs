//! `conclave bench election`: leader election against the Raft paper, and partition
//! detection and heal times.
//!
//! **Downtime after a leader crash** reproduces section 9.3 of the Raft paper (Ongaro and
//! Ousterhout, 2014): five voters, a broadcast time (a round trip) of about 15 ms, the
//! heartbeat at half the minimum election timeout, the leader crashed at a uniformly random
//! point of its heartbeat interval, 1000 trials per range of election timeouts. The
//! downtime is the virtual time from the crash until a new leader is elected. Here PreVote
//! and CheckQuorum are on (the paper had neither), and the membership protocol runs beside
//! the election on the same links, as in a real cluster.
//!
//! **Partitions**: five members split 3/2; the time from the split until every member has
//! decided its side (`PartitionDetected`), and from the heal until every member says it
//! healed (`PartitionHealed`), over many seeds.
//!
//! **Big partitions**: 20, 50, 100 and 200 members cut in half, along their ids (the cut
//! crosses the id-sorted monitoring ring at two places) and at random (a seeded draw of
//! half the members); in how many runs some member decided on part of the picture, and when
//! the last member decided.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clap::Parser;
use conclave_core::{Config, ElectionConfig, Event, Instant, NodeId};
use conclave_sim::{sim_id, Fault, FaultPlan, LinkParams, Sim, SimBuilder, TraceMode};
use hdrhistogram::Histogram;

use conclave_scenarios::catalog::{big_partition_plan, BIG_CUT, BIG_SPLIT};

use crate::poll::poll_until;

/// Flags of `conclave bench election`.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// Trials per timeout range.
    #[arg(long, default_value_t = 1000)]
    trials: u64,
    /// Seeds for the partition figures.
    #[arg(long, default_value_t = 100)]
    partition_seeds: u64,
    /// Seeds per size and cut for the big partitions (20, 50, 100 and 200 members cut in
    /// half, along the ids and at random).
    #[arg(long, default_value_t = 12)]
    big_partition_seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Only the big partitions (skips the election and five-member partition figures).
    #[arg(long)]
    big_partitions_only: bool,
}

/// The paper's ranges (ms), with its published figures where REFERENCES.md gives them:
/// (min, max, median, worst).
const RANGES: [(u64, u64, Option<u64>, Option<u64>); 4] =
    [(150, 155, Some(287), None), (150, 175, None, None), (150, 200, None, Some(513)), (150, 300, None, None)];

/// When the leader is crashed: the cluster has formed and elected.
const WARM_UP: Duration = Duration::from_secs(3);
/// The figures' resolution.
const POLL: Duration = Duration::from_millis(1);
/// The longest wait for a new leader.
const LIMIT: Duration = Duration::from_secs(30);

pub(crate) fn run(args: &Args) -> Result<(), String> {
    if args.big_partitions_only {
        return big_partitions(args);
    }
    println!(
        "conclave bench election: 5 voters, one-way latency 6-9 ms uniform (round trip ~15 ms), heartbeat = min timeout / 2, PreVote and CheckQuorum on"
    );
    println!(
        "downtime after the leader crashes at a random point of its heartbeat interval, {} trials per range",
        args.trials
    );
    println!(
        "{:>12} {:>9} {:>9} {:>9} {:>9} {:>14} {:>13} {:>10}",
        "timeouts", "median", "p99", "worst", "no leader", "paper median", "paper worst", "at/below"
    );
    for (min, max, paper_median, paper_worst) in RANGES {
        let (hist, missing) = downtimes(config(min, max, true), min, args.seed, args.trials)?;
        let (median, p99, worst) = (hist.value_at_quantile(0.5), hist.value_at_quantile(0.99), hist.max());
        let shown = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} ms"));
        let met = paper_median.is_none_or(|p| median <= p) && paper_worst.is_none_or(|p| worst <= p) && missing == 0;
        println!(
            "{:>12} {:>6} ms {:>6} ms {:>6} ms {:>9} {:>14} {:>13} {:>10}",
            format!("{min}-{max} ms"),
            median,
            p99,
            worst,
            missing,
            shown(paper_median),
            shown(paper_worst),
            if met { "yes" } else { "NO" }
        );
    }
    println!();
    println!("the same without PreVote (Raft as in the paper, CheckQuorum on), for comparison");
    println!("{:>12} {:>9} {:>9} {:>9} {:>9}", "timeouts", "median", "p99", "worst", "no leader");
    for (min, max, _, _) in RANGES {
        let (hist, missing) = downtimes(config(min, max, false), min, args.seed, args.trials)?;
        println!(
            "{:>12} {:>6} ms {:>6} ms {:>6} ms {:>9}",
            format!("{min}-{max} ms"),
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.max(),
            missing
        );
    }
    println!();
    partitions(args)?;
    big_partitions(args)
}

/// The election settings of one range.
fn config(min: u64, max: u64, pre_vote: bool) -> Config {
    let mut config = Config::lan();
    config.election = ElectionConfig::with_voters((0..5).map(sim_id));
    config.election.election_timeout_min = Duration::from_millis(min);
    config.election.election_timeout_max = Duration::from_millis(max);
    config.election.heartbeat_interval = Duration::from_millis(min / 2);
    config.election.pre_vote = pre_vote;
    config
}

/// The link of the paper's setup: a round trip of about 15 ms.
fn link() -> LinkParams {
    LinkParams::default()
        .with_latency(conclave_sim::Latency::Uniform { min: Duration::from_millis(6), max: Duration::from_millis(9) })
}

/// The leader every running member names, if they agree.
fn leader(sim: &Sim) -> Option<NodeId> {
    let mut named = sim.ids().into_iter().filter_map(|id| sim.node(id)).map(|n| n.leader());
    let first = named.next()??;
    named.all(|l| l == Some(first)).then_some(first)
}

/// A member that leads a term above `term`.
fn new_leader(sim: &Sim, term: u64) -> Option<NodeId> {
    sim.ids().into_iter().find(|&id| sim.node(id).is_some_and(|n| n.leader() == Some(id) && n.term() > term))
}

/// Milliseconds from the crash to the next leader, per trial; and the trials that found
/// none within [`LIMIT`].
fn downtimes(config: Config, min: u64, first: u64, trials: u64) -> Result<(Histogram<u64>, u64), String> {
    let mut hist = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let mut missing = 0;
    for seed in first..first + trials {
        let mut sim = SimBuilder::new()
            .seed(seed)
            .members(5)
            .config(config.clone())
            .network(link())
            .trace(TraceMode::HashOnly)
            .default_checkers(false)
            .build()
            .map_err(|e| e.to_string())?;
        sim.run_until(Instant::ZERO + WARM_UP);
        let Some(old) = leader(&sim) else {
            missing += 1;
            continue;
        };
        let term = sim.node(old).map_or(0, |n| n.term());
        // A uniformly random point of the heartbeat interval: the offset from an arbitrary
        // moment, drawn from the seed.
        let offset = splitmix(seed) % (min / 2 * 1000);
        sim.run_for(Duration::from_micros(offset));
        sim.apply(Fault::Crash(old));
        let crashed = sim.now();
        match poll_until(&mut sim, POLL, crashed + LIMIT, |sim| new_leader(sim, term).is_some()) {
            Some(at) => hist.record((at - crashed).as_millis() as u64).map_err(|e| e.to_string())?,
            None => missing += 1,
        }
    }
    Ok((hist, missing))
}

fn partitions(args: &Args) -> Result<(), String> {
    let config = Config::lan();
    let partition = config.partition.clone().ok_or("Config::lan() detects partitions")?;
    let (_, max_suspicion) = config.suspicion_timeouts(5);
    println!(
        "partitions: 5 members split 3/2 for 30 s, Config::lan() (stable_after {:?}, suspicion at most {:?}), 500 us links, {} seeds",
        partition.stable_after, max_suspicion, args.partition_seeds
    );
    let (split, heal) = (Instant::from_secs(10), Instant::from_secs(40));
    let minority: Vec<NodeId> = (3..5).map(sim_id).collect();
    let mut detected = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let mut healed = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let mut missing = 0;
    for seed in args.seed..args.seed + args.partition_seeds {
        let plan = FaultPlan::new().at(split, Fault::Partition(vec![minority.clone()])).at(heal, Fault::Heal);
        let mut sim = SimBuilder::new()
            .seed(seed)
            .members(5)
            .plan(plan)
            .trace(TraceMode::HashOnly)
            .default_checkers(false)
            .build()
            .map_err(|e| e.to_string())?;
        sim.run_until(split);
        let all = |sim: &Sim, f: &dyn Fn(&conclave_core::Node) -> bool| {
            sim.ids().iter().all(|&id| sim.node(id).is_some_and(f))
        };
        match poll_until(&mut sim, POLL * 10, heal, |sim| all(sim, &|n| n.partition().is_some())) {
            Some(at) => detected.record((at - split).as_millis() as u64).map_err(|e| e.to_string())?,
            None => missing += 1,
        }
        sim.run_until(heal);
        match poll_until(&mut sim, POLL * 10, heal + LIMIT, |sim| all(sim, &|n| n.partition().is_none())) {
            Some(at) => healed.record((at - heal).as_millis() as u64).map_err(|e| e.to_string())?,
            None => missing += 1,
        }
    }
    println!("{:>22} {:>8} {:>8} {:>8} {:>10}", "", "p50", "p99", "max", "goal");
    phase_row("split -> all decided", &detected, max_suspicion + partition.stable_after);
    phase_row("heal -> all healed", &healed, Duration::from_secs(5));
    if missing > 0 {
        println!("{missing} phases did not finish within their limit");
    }
    Ok(())
}

/// How a big partition cuts the members in half.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// n1 to n(n/2) from the rest: the cut crosses the id-sorted ring at two places.
    AlongIds,
    /// A seeded draw of n/2 members from the rest.
    Random,
}

/// Clusters of 20, 50, 100 and 200 members cut in half for 120 s, along their ids and at
/// random. Counts the runs in which some member's first `PartitionDetected` did not name
/// the cut (it decided on part of the picture), and when the last member decided.
fn big_partitions(args: &Args) -> Result<(), String> {
    println!(
        "big partitions: half the members cut off for 120 s, Config::lan(), 500 us links, {} seeds per row",
        args.big_partition_seeds
    );
    println!("{:>22} {:>10} {:>16} {:>30}", "", "cut", "decided on part", "last member decided");
    for n in [20, 50, 100, 200] {
        for cut in [Cut::AlongIds, Cut::Random] {
            let mut partial = 0;
            let mut undecided = 0;
            let mut last_decided = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
            for seed in args.seed..args.seed + args.big_partition_seeds {
                let first = first_decisions(n, cut, seed)?;
                partial += u64::from(first.values().any(|&(_, whole)| !whole));
                match first.values().map(|&(after, _)| after).max().filter(|_| first.len() == n) {
                    Some(after) => last_decided.record(after.as_millis() as u64).map_err(|e| e.to_string())?,
                    None => {
                        undecided += 1;
                        println!("seed {seed}: not every member of {n} decided within 120 s ({cut:?})");
                    }
                }
            }
            let s = |ms: u64| ms as f64 / 1000.0;
            println!(
                "{:>22} {:>10} {:>9} of {:>3} {:>7.1}s p50 {:>6.1}s p99 {:>6.1}s max{}",
                format!("{n} members"),
                if cut == Cut::AlongIds { "along ids" } else { "random" },
                partial,
                args.big_partition_seeds,
                s(last_decided.value_at_quantile(0.5)),
                s(last_decided.value_at_quantile(0.99)),
                s(last_decided.max()),
                if undecided > 0 { format!(" ({undecided} runs undecided)") } else { String::new() }
            );
        }
    }
    Ok(())
}

/// The members a big partition cuts off: the first half by id, or a seeded draw of half.
fn cut_off(n: usize, cut: Cut, seed: u64) -> BTreeSet<NodeId> {
    match cut {
        Cut::AlongIds => (0..n / 2).map(sim_id).collect(),
        Cut::Random => {
            // A seeded shuffle (Fisher-Yates on splitmix draws), its first half.
            let mut ids: Vec<usize> = (0..n).collect();
            let mut state = seed ^ 0x5eed_c0de;
            for i in (1..n).rev() {
                state = splitmix(state);
                ids.swap(i, (state % (i as u64 + 1)) as usize);
            }
            ids[..n / 2].iter().map(|&i| sim_id(i)).collect()
        }
    }
}

/// The catalog's `big-partition` cut (along the ids) or a random one on `n` members, cut
/// off from the rest at `BIG_SPLIT` for `BIG_CUT`: each member's first `PartitionDetected`,
/// how long after the cut, and whether it named the cut. The run stops once every member
/// has decided. (The catalog's scenario judges the same property at 100 members.)
fn first_decisions(n: usize, cut: Cut, seed: u64) -> Result<BTreeMap<NodeId, (Duration, bool)>, String> {
    let cut_off = cut_off(n, cut, seed);
    let split = BIG_SPLIT;
    let plan = match cut {
        Cut::AlongIds => big_partition_plan(n),
        Cut::Random => FaultPlan::new()
            .at(split, Fault::Partition(vec![cut_off.iter().copied().collect()]))
            .at(split + BIG_CUT, Fault::Heal),
    };
    let mut sim = SimBuilder::new()
        .seed(seed)
        .members(n)
        .plan(plan)
        .trace(TraceMode::Record)
        .default_checkers(false)
        .build()
        .map_err(|e| e.to_string())?;
    sim.run_until(split);
    let ids = sim.ids();
    while sim.now() < split + BIG_CUT {
        sim.run_for(Duration::from_secs(1));
        if ids.iter().all(|&id| sim.node(id).is_some_and(|node| node.partition().is_some())) {
            break;
        }
    }
    let names_the_cut =
        |side: &[NodeId]| side.iter().all(|m| cut_off.contains(m)) || side.iter().all(|m| !cut_off.contains(m));
    let mut first = BTreeMap::new();
    for (at, node, event) in sim.events() {
        if let Event::PartitionDetected { majority, minority, .. } = event {
            let whole = majority.len() == n / 2
                && minority.len() == n / 2
                && names_the_cut(majority)
                && names_the_cut(minority);
            first.entry(node).or_insert((at - split, whole));
        }
    }
    Ok(first)
}

/// One row of the partition table: p50, p99 and max of `hist` (milliseconds), and `goal`.
fn phase_row(label: &str, hist: &Histogram<u64>, goal: Duration) {
    let s = |ms: u64| ms as f64 / 1000.0;
    println!(
        "{label:>22} {:>7.2}s {:>7.2}s {:>7.2}s {:>9.2}s",
        s(hist.value_at_quantile(0.5)),
        s(hist.value_at_quantile(0.99)),
        s(hist.max()),
        goal.as_secs_f64()
    );
}

fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
