//! `conclave bench membership`: how fast and how cheaply membership works, in virtual time.
//!
//! - **Detection**: a cluster forms, settles, then one member (seeded choice) crashes;
//!   the figure is the time until *every* live member holds it Failed, over many seeds.
//! - **Load**: messages and bytes each member sends per second once the cluster is quiet.
//! - **Join**: a formed cluster, one more member joins through a seed; the figure is the
//!   time (and gossip rounds) until every member knows it.
//!
//! Everything runs on the fast engine with `Config::lan()` and 500 µs links; times are
//! virtual, so the figures are the same on every machine. `conclave bench compare` puts
//! these figures, on lossy links and beside foca's, in one table.

use std::time::Duration;

use clap::Parser;
use conclave_core::{Command, Config, Instant, MemberState, MessageKind, NodeId};
use conclave_sim::{Fault, Sim, SimBuilder};
use hdrhistogram::Histogram;

/// Flags of `conclave bench membership`.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// Cluster sizes for crash detection.
    #[arg(long, value_delimiter = ',', default_value = "5,100")]
    detect: Vec<usize>,
    /// Seeds (crashes) per detection size.
    #[arg(long, default_value_t = 100)]
    detect_seeds: u64,
    /// Cluster sizes for the join figure.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    join: Vec<usize>,
    /// Seeds per join size.
    #[arg(long, default_value_t = 5)]
    join_seeds: u64,
    /// Virtual seconds of quiet traffic measured for the load figure.
    #[arg(long, default_value_t = 60)]
    load_seconds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// How often the views are looked at while waiting: the figures' resolution.
const POLL: Duration = Duration::from_millis(10);

pub(crate) fn run(args: &Args) -> Result<(), String> {
    let config = Config::lan();
    println!(
        "conclave bench membership: Config::lan() (probe {:?}, suspicion mult {}, gossip {:?} to {}), 500 us links",
        config.probe_interval, config.suspicion_mult, config.gossip_interval, config.gossip_nodes
    );
    for &n in &args.detect {
        detection(n, args)?;
    }
    for &n in &args.detect {
        load(n, args)?;
    }
    for &n in &args.join {
        join(n, args)?;
    }
    Ok(())
}

/// Builds `n` members and runs until every view holds all of them alive.
fn formed(n: usize, seed: u64) -> Result<Sim, String> {
    let sim = SimBuilder::new()
        .seed(seed)
        .members(n)
        .config(Config::lan())
        .default_checkers(false)
        .build()
        .map_err(|e| e.to_string())?;
    settle(sim, &[], seed)
}

/// Runs until every member but those in `outside` holds the others alive.
fn settle(mut sim: Sim, outside: &[NodeId], seed: u64) -> Result<Sim, String> {
    let limit = sim.now() + Duration::from_secs(120);
    let inside: Vec<NodeId> = sim.ids().into_iter().filter(|id| !outside.contains(id)).collect();
    while !all_alive(&sim, &inside) {
        if sim.now() >= limit {
            return Err(format!("{} members (seed {seed}) did not converge in 120 s", inside.len()));
        }
        sim.run_for(Duration::from_millis(100));
    }
    Ok(sim)
}

fn all_alive(sim: &Sim, ids: &[NodeId]) -> bool {
    ids.iter().filter(|id| sim.is_up(**id)).all(|id| {
        let node = sim.node(*id).expect("up");
        ids.iter().all(|other| !sim.is_up(*other) || node.member(*other).is_some_and(|m| m.state == MemberState::Alive))
    })
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn detection(n: usize, args: &Args) -> Result<(), String> {
    let mut times = histogram();
    let mut first = histogram();
    let mut misses = 0;
    let mut false_verdicts = 0;
    for s in 0..args.detect_seeds {
        let seed = args.seed + s;
        let mut sim = formed(n, seed)?;
        // Let the detectors learn the heartbeat rhythm before the crash.
        sim.run_for(Duration::from_secs(10));
        let ids = sim.ids();
        let victim = ids[(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 33) as usize % ids.len()];
        sim.apply(Fault::Crash(victim));
        let crashed = sim.now();
        let mut first_at: Option<Instant> = None;
        let deadline = crashed + Duration::from_secs(30);
        let done = loop {
            sim.run_for(POLL);
            let holding: Vec<bool> = ids
                .iter()
                .filter(|id| **id != victim)
                .map(|id| sim.node(*id).and_then(|n| n.member(victim)).is_some_and(|m| m.state == MemberState::Failed))
                .collect();
            if first_at.is_none() && holding.iter().any(|h| *h) {
                first_at = Some(sim.now());
            }
            if holding.iter().all(|h| *h) {
                break Some(sim.now());
            }
            if sim.now() >= deadline {
                break None;
            }
        };
        match done {
            Some(at) => times.record(micros(at - crashed)).expect("in range"),
            None => misses += 1,
        }
        if let Some(at) = first_at {
            first.record(micros(at - crashed)).expect("in range");
        }
        false_verdicts += ids
            .iter()
            .filter(|id| **id != victim)
            .filter(|id| {
                sim.node(**id).is_some_and(|node| {
                    node.members().any(|m| m.id != victim && !matches!(m.state, MemberState::Alive))
                })
            })
            .count();
    }
    println!(
        "  detection {n:>5} members  {:>4} crashes  all members hold it failed after p50 {:>7.0} ms  p99 {:>7.0} ms  max {:>7.0} ms  \
         (first member: p50 {:>5.0} ms)  undetected {misses}  false verdicts {false_verdicts}",
        args.detect_seeds,
        ms(&times, 0.5),
        ms(&times, 0.99),
        times.max() as f64 / 1000.0,
        ms(&first, 0.5),
    );
    Ok(())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn load(n: usize, args: &Args) -> Result<(), String> {
    let mut sim = formed(n, args.seed)?;
    sim.run_for(Duration::from_secs(10));
    let totals = |sim: &Sim| {
        let mut sent = 0u64;
        let mut bytes = 0u64;
        let mut per_kind = [0u64; MessageKind::ALL.len()];
        for id in sim.ids() {
            let stats = sim.node(id).expect("up").stats();
            sent += stats.sent.total();
            bytes += stats.bytes_sent;
            for kind in MessageKind::ALL {
                per_kind[kind.index()] += stats.sent.get(kind);
            }
        }
        (sent, bytes, per_kind)
    };
    let (sent0, bytes0, kinds0) = totals(&sim);
    sim.run_for(Duration::from_secs(args.load_seconds));
    let (sent1, bytes1, kinds1) = totals(&sim);
    let member_seconds = (n as u64 * args.load_seconds) as f64;
    let breakdown: Vec<String> = MessageKind::ALL
        .iter()
        .filter(|k| kinds1[k.index()] > kinds0[k.index()])
        .map(|k| format!("{} {:.2}", k.name(), (kinds1[k.index()] - kinds0[k.index()]) as f64 / member_seconds))
        .collect();
    println!(
        "  load      {n:>5} members  {:>6.2} messages and {:>8.0} bytes sent per member-second  ({})",
        (sent1 - sent0) as f64 / member_seconds,
        (bytes1 - bytes0) as f64 / member_seconds,
        breakdown.join(", ")
    );
    Ok(())
}

fn join(n: usize, args: &Args) -> Result<(), String> {
    let interval = Config::lan().gossip_interval;
    let mut times = histogram();
    for s in 0..args.join_seeds {
        let seed = args.seed + s;
        // n members form the cluster; member n + 1 is started but joins only once it is quiet.
        let mut sim = SimBuilder::new()
            .seed(seed)
            .members(n + 1)
            .config(Config::lan())
            .bootstrap(false)
            .default_checkers(false)
            .build()
            .map_err(|e| e.to_string())?;
        let ids = sim.ids();
        let (founder, newcomer) = (ids[0], ids[n]);
        let seed_addr = sim.addr(founder).expect("a member");
        for id in &ids[1..n] {
            sim.command(*id, Command::Join(vec![seed_addr])).map_err(|e| e.to_string())?;
        }
        let mut sim = settle(sim, &[newcomer], seed)?;
        sim.run_for(Duration::from_secs(5));
        let started = sim.now();
        sim.command(newcomer, Command::Join(vec![seed_addr])).map_err(|e| e.to_string())?;
        let deadline = started + Duration::from_secs(60);
        loop {
            sim.run_for(POLL);
            let all = ids[..n].iter().all(|id| {
                sim.node(*id).and_then(|n| n.member(newcomer)).is_some_and(|m| m.state == MemberState::Alive)
            });
            if all {
                times.record(micros(sim.now() - started)).expect("in range");
                break;
            }
            if sim.now() >= deadline {
                return Err(format!("join into {n} members (seed {seed}) did not reach everyone in 60 s"));
            }
        }
    }
    println!(
        "  join      {n:>5} members  {:>4} joins    known to all after p50 {:>6.0} ms  p99 {:>6.0} ms  max {:>6.0} ms  \
         ({:.1} / {:.1} gossip rounds of {:?})",
        args.join_seeds,
        ms(&times, 0.5),
        ms(&times, 0.99),
        times.max() as f64 / 1000.0,
        ms(&times, 0.5) / interval.as_secs_f64() / 1000.0,
        ms(&times, 0.99) / interval.as_secs_f64() / 1000.0,
        interval,
    );
    Ok(())
}
