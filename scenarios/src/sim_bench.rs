//! `conclave bench sim`: how fast the simulator runs a healthy `Config::lan()` cluster.
//!
//! For each member count, one fast-engine run of `--duration` virtual seconds: delivered
//! datagrams per wall second and the virtual/wall speedup. Then the same `--turmoil-members`
//! scenario on both engines (turmoil hosts exchanging the same core's datagrams over its
//! simulated UDP) and the ratio of their speedups. Wall time is the only real clock read
//! in the simulator's code paths, and it is read here, outside the simulation.

use std::time::Duration;

use conclave_core::wire::MessageKind;
use conclave_core::{Config, Node};
use conclave_sim::turmoil_engine::TurmoilBuilder;
use conclave_sim::SimBuilder;

/// Flags of `conclave bench sim`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Member counts to run on the fast engine.
    #[arg(long, value_delimiter = ',', default_value = "5,100,1000")]
    members: Vec<usize>,
    /// Virtual seconds per fast-engine run.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Members of the fast-engine-against-turmoil comparison (0 skips it).
    #[arg(long, default_value_t = 50)]
    turmoil_members: usize,
    /// Virtual seconds of the turmoil run (it is slow: the fast engine runs the same
    /// scenario for --duration).
    #[arg(long, default_value_t = 30)]
    turmoil_duration: u64,
    /// Turmoil's tick, in microseconds.
    #[arg(long, default_value_t = 1000)]
    turmoil_tick_us: u64,
    /// The seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run the standard checkers during the fast-engine runs (they are on in tests).
    #[arg(long)]
    checkers: bool,
}

struct Measured {
    wall: Duration,
    virtual_time: Duration,
    delivered: u64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.wall.as_secs_f64()
    }

    fn speedup(&self) -> f64 {
        self.virtual_time.as_secs_f64() / self.wall.as_secs_f64()
    }
}

#[allow(clippy::disallowed_methods, reason = "a benchmark measures wall time, outside the simulation")]
fn wall<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = std::time::Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn fast(members: usize, duration: Duration, seed: u64, checkers: bool) -> Result<Measured, String> {
    let (sim, build) =
        wall(|| SimBuilder::new().seed(seed).members(members).config(Config::lan()).default_checkers(checkers).build());
    let mut sim = sim.map_err(|e| e.to_string())?;
    let ((), run) = wall(|| sim.run_for(duration));
    // What the members did, summed: in a healthy run nearly all gossip and push-pull
    // traffic is the cluster forming.
    let (mut gossip, mut push_pull, mut bytes) = (0, 0, 0);
    for id in sim.ids() {
        if let Some(stats) = sim.node(id).map(Node::stats) {
            gossip += stats.gossip_received;
            push_pull += stats.received.get(MessageKind::PushPull);
            bytes += stats.bytes_received;
        }
    }
    let report = sim.finish();
    if !report.violations.is_empty() {
        eprintln!("  ({} violations; first: {})", report.violations.len(), report.violations[0]);
    }
    let s = report.stats;
    println!(
        "  fast     {members:>5} members  {:>5.0} s virtual  {:>8.3} s wall (+{:.3} s build)  {:>11} delivered  {:>12.0} msg/s  {:>9.0}x  trace {:#018x}",
        duration.as_secs_f64(),
        run.as_secs_f64(),
        build.as_secs_f64(),
        s.delivered,
        s.delivered as f64 / run.as_secs_f64(),
        duration.as_secs_f64() / run.as_secs_f64(),
        report.trace_hash,
    );
    println!("           engine steps {}, timer wake-ups {}, member events {}", s.steps, s.timers, s.events);
    println!("           gossip items received {gossip}, push-pull datagrams {push_pull}, bytes received {bytes}");
    Ok(Measured { wall: run, virtual_time: duration, delivered: s.delivered })
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    let duration = Duration::from_secs(args.duration);
    println!("conclave bench sim: Config::lan(), 500 us links, seed {}, one core", args.seed);
    for &members in &args.members {
        fast(members, duration, args.seed, args.checkers)?;
    }
    if args.turmoil_members > 0 {
        let members = args.turmoil_members;
        println!("same {members}-member scenario on both engines:");
        let fast = fast(members, duration, args.seed, args.checkers)?;
        let virtual_time = Duration::from_secs(args.turmoil_duration);
        let tick = Duration::from_micros(args.turmoil_tick_us);
        let builder = TurmoilBuilder::new().seed(args.seed).members(members).config(Config::lan()).tick(tick);
        let (report, wall_time) = wall(|| builder.run(virtual_time));
        let report = report.map_err(|e| e.to_string())?;
        let turmoil = Measured { wall: wall_time, virtual_time: report.elapsed, delivered: report.delivered };
        println!(
            "  turmoil  {members:>5} members  {:>5.0} s virtual  {:>8.3} s wall ({} us tick)  {:>11} delivered  {:>12.0} msg/s  {:>9.1}x",
            turmoil.virtual_time.as_secs_f64(),
            turmoil.wall.as_secs_f64(),
            args.turmoil_tick_us,
            turmoil.delivered,
            turmoil.rate(),
            turmoil.speedup(),
        );
        println!(
            "  ratio fast/turmoil: {:.0}x the speedup, {:.0}x the delivered messages per wall second",
            fast.speedup() / turmoil.speedup(),
            fast.rate() / turmoil.rate()
        );
    }
    Ok(())
}
