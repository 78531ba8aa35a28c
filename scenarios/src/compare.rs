//! `conclave bench compare`: conclave beside foca 1.0 on the same simulated links, in one run.
//!
//! conclave runs on net-sim's fast engine with `Config::lan()`; foca runs with
//! `Config::new_lan(n)` in [`crate::foca_peer`]'s loop. Both see the same link model: each
//! datagram lost with the same independent probability, and delayed uniformly in the same
//! range (LAN 0.2-2 ms, WAN 50-150 ms). Every figure is measured by the same code over
//! both. A cluster first forms on loss-free links and settles
//! (every member holds every other alive), then the loss is switched on and 10 s pass
//! before anything is measured. Times are virtual: the same seed gives the same figures.
//!
//! - **Detection**: one member (seeded choice) crashes; the time until *every* live
//!   member has reported it down (conclave `MemberFailed`, foca `MemberDown`), p50 and
//!   p99 over `--detect-seeds` crashes; a crash not reported by all within 300 s is a miss.
//! - **False downs**: a quiet run under loss, nothing crashes, so every down is false;
//!   notifications (each observer counts) per member-hour of run time.
//! - **Suspicions**: the same, counting an observer's change to holding a member suspect
//!   (conclave `MemberSuspected`; foca has no such notification, so its member list is
//!   scanned after every input for members newly `Suspect`).
//! - **Healed partitions**: `--heal-runs` times, a cluster is split in two for a while and
//!   healed, and a minute later the downs by an observer of a member on its own side are
//!   counted (it could reach that member all along); conclave also without asking the
//!   accused (`Lifeguard::ask_the_accused`).
//! - **Load**: datagrams and bytes (payloads, lost ones included) each member sends per
//!   second, quiet, loss-free LAN.
//! - **Lifeguard ablation**: 20 members, 3 of them (`--stalled`) starved in one of three
//!   ways, on LAN links with each loss of `--ablation-loss`; suspicions and downs about the
//!   *healthy* members (every one is false) and about the stalled ones, per member-hour,
//!   with all of Lifeguard's mechanisms (and asking the accused) on, each one off in turn,
//!   all off, and foca:
//!   - *slowed* (net-sim's `Fault::Slow`): each datagram handled `--slow-ms` late, one
//!     after another, timers behind the backlog;
//!   - *lagging*: every datagram to the member arrives `--lag-ms` late while its timers keep
//!     time (`Fault::SetLinks` on the links into it): a member whose acks all come late
//!     accuses healthy peers, the case local health and the buddy system are for;
//!   - *paused* (`Fault::Pause`): `--pause-ms` of stall every `--pause-every-ms`, inputs
//!     and timers handled in arrival order when it ends.
//!
//!   The foca loop models each the same way.
//!
//! The `Cluster` trait is all the figures see: [`ConclaveCluster`] over net-sim (a
//! listening checker gathers the events) and [`FocaCluster`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;
use conclave_core::{Config, Event, Instant, Lifeguard, MemberState, NodeId};
use conclave_sim::{sim_id, Checker, Fault, Finding, Latency, LinkParams, LinkSelector, Sim, SimBuilder};
use hdrhistogram::Histogram;

use crate::foca_peer::{nanos, FocaCluster, Link};

/// Flags of `conclave bench compare`.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// Crashes per detection row (each a fresh cluster and seed).
    #[arg(long, default_value_t = 200)]
    detect_seeds: u64,
    /// Member-hours of quiet run per false-down row (each side).
    #[arg(long, default_value_t = 100.0)]
    false_down_hours: f64,
    /// Member-hours of quiet run per suspicion row (each side).
    #[arg(long, default_value_t = 50.0)]
    suspicion_hours: f64,
    /// Virtual seconds of quiet traffic measured for the load rows.
    #[arg(long, default_value_t = 60)]
    load_seconds: u64,
    /// Member-hours per ablation row.
    #[arg(long, default_value_t = 20.0)]
    ablation_hours: f64,
    /// The ablation's loss on every link, in percent: one table per value.
    #[arg(long, value_delimiter = ',', default_value = "0,10")]
    ablation_loss: Vec<f64>,
    /// How many of the ablation's 20 members are stalled (slowed, or paused).
    #[arg(long, default_value_t = 3)]
    stalled: usize,
    /// The slowed members' processing time per datagram, in milliseconds.
    #[arg(long, default_value_t = 250)]
    slow_ms: u64,
    /// How late every datagram reaches a lagging member, in milliseconds.
    #[arg(long, default_value_t = 1200)]
    lag_ms: u64,
    /// How long each paused member stalls, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    pause_ms: u64,
    /// How often each paused member stalls, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pause_every_ms: u64,
    /// Skip the ablation.
    #[arg(long)]
    no_ablation: bool,
    /// Partitions per healed-partition row (each a fresh cluster and seed).
    #[arg(long, default_value_t = 100)]
    heal_runs: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const LAN: (Duration, Duration) = (Duration::from_micros(200), Duration::from_millis(2));
const WAN: (Duration, Duration) = (Duration::from_millis(50), Duration::from_millis(150));

/// A cluster as the figures see it, whichever implementation runs it.
trait Cluster {
    /// Virtual time, nanoseconds.
    fn now(&self) -> u64;
    fn run_for(&mut self, d: Duration);
    /// Every running member holds every other running member alive.
    fn converged(&self) -> bool;
    fn set_loss(&mut self, latency: (Duration, Duration), loss: f64);
    fn crash(&mut self, i: usize);
    fn slow(&mut self, i: usize, per_message: Duration);
    fn pause(&mut self, i: usize, d: Duration);
    /// Every datagram to member `i` arrives `d` late (on LAN links that lose `loss`).
    fn lag(&mut self, i: usize, d: Duration, loss: f64);
    fn counts(&self) -> Counts;
    /// The fraction of (running member, other running member) pairs where the first holds
    /// the second alive or suspect: how whole the views are.
    fn coverage(&self) -> f64;
    /// When the last running member reported crashed member `victim` down, if all have.
    fn down_at_all(&self, victim: usize) -> Option<u64>;
    /// Cuts members `0..first` off from the others, both ways.
    fn split(&mut self, first: usize);
    /// Ends the cut; the sides stay known, for [`Counts::same_side_downs`].
    fn heal(&mut self);
}

/// Counters so far, summed over the members.
#[derive(Clone, Debug, Default)]
struct Counts {
    sent: u64,
    bytes: u64,
    /// Per target.
    suspected: Vec<u64>,
    /// Per target.
    downs: Vec<u64>,
    /// Downs about a member whose process runs.
    false_downs: u64,
    /// Downs, since the last split, about a member on the observer's own side of it.
    same_side_downs: u64,
}

/// Which implementation, and for conclave which configuration.
#[derive(Clone, Debug)]
enum Side {
    Conclave(Box<Config>),
    Foca,
}

impl Side {
    fn build(&self, n: usize, seed: u64, latency: (Duration, Duration)) -> Result<Box<dyn Cluster>, String> {
        Ok(match self {
            Self::Conclave(config) => Box::new(ConclaveCluster::new(n, seed, latency, (**config).clone())?),
            Self::Foca => {
                let mut cluster = FocaCluster::new(n, seed, Link { min: latency.0, max: latency.1, loss: 0.0 });
                cluster.track_suspicions();
                Box::new(cluster)
            }
        })
    }
}

// --- conclave on net-sim -------------------------------------------------------------------

/// What the members of a net-sim run reported, gathered by a checker.
#[derive(Debug, Default)]
struct Heard {
    suspected: Vec<u64>,
    failed: Vec<u64>,
    false_failed: u64,
    crashed: Vec<bool>,
    /// (observer, crashed target) -> when it first reported the target failed.
    crashed_failed_at: BTreeMap<(usize, usize), u64>,
    /// The last split: members below this index on one side, the others on the other.
    split: Option<usize>,
    same_side_failed: u64,
}

/// A checker that only listens: net-sim hands every event and fault to its checkers.
struct Listener(Rc<RefCell<Heard>>);

fn index(id: NodeId) -> usize {
    id.0 as usize - 1
}

impl Checker for Listener {
    fn name(&self) -> &'static str {
        "bench-listener"
    }

    fn fault(&mut self, _at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        if let Fault::Crash(id) = fault {
            self.0.borrow_mut().crashed[index(*id)] = true;
        }
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, _findings: &mut Vec<Finding>) {
        let mut heard = self.0.borrow_mut();
        match event {
            Event::MemberSuspected(m) => heard.suspected[index(m.id)] += 1,
            Event::MemberFailed(m) => {
                let t = index(m.id);
                heard.failed[t] += 1;
                if heard.crashed[t] {
                    heard.crashed_failed_at.entry((index(node), t)).or_insert(at.as_nanos());
                } else {
                    heard.false_failed += 1;
                }
                if heard.split.is_some_and(|first| (index(node) < first) == (t < first)) {
                    heard.same_side_failed += 1;
                }
            }
            _ => {}
        }
    }
}

struct ConclaveCluster {
    sim: Sim,
    heard: Rc<RefCell<Heard>>,
    n: usize,
}

fn link_params(latency: (Duration, Duration), loss: f64) -> LinkParams {
    LinkParams::default().with_latency(Latency::Uniform { min: latency.0, max: latency.1 }).with_loss(loss)
}

impl ConclaveCluster {
    fn new(n: usize, seed: u64, latency: (Duration, Duration), config: Config) -> Result<Self, String> {
        let mut sim = SimBuilder::new()
            .seed(seed)
            .members(n)
            .config(config)
            .network(link_params(latency, 0.0))
            .default_checkers(false)
            .build()
            .map_err(|e| e.to_string())?;
        let heard = Rc::new(RefCell::new(Heard {
            suspected: vec![0; n],
            failed: vec![0; n],
            crashed: vec![false; n],
            ..Heard::default()
        }));
        sim.add_checker(Box::new(Listener(Rc::clone(&heard))));
        Ok(Self { sim, heard, n })
    }
}

impl Cluster for ConclaveCluster {
    fn now(&self) -> u64 {
        self.sim.now().as_nanos()
    }

    fn run_for(&mut self, d: Duration) {
        self.sim.run_for(d);
    }

    fn converged(&self) -> bool {
        let sim = &self.sim;
        let ids = sim.ids();
        ids.iter().filter(|id| sim.is_up(**id)).all(|id| {
            let node = sim.node(*id).expect("up");
            ids.iter()
                .all(|other| !sim.is_up(*other) || node.member(*other).is_some_and(|m| m.state == MemberState::Alive))
        })
    }

    fn set_loss(&mut self, latency: (Duration, Duration), loss: f64) {
        self.sim.apply(Fault::SetLinks { links: LinkSelector::All, params: link_params(latency, loss) });
    }

    fn crash(&mut self, i: usize) {
        self.sim.apply(Fault::Crash(sim_id(i)));
    }

    fn slow(&mut self, i: usize, per_message: Duration) {
        self.sim.apply(Fault::Slow { node: sim_id(i), per_message });
    }

    fn pause(&mut self, i: usize, duration: Duration) {
        self.sim.apply(Fault::Pause { node: sim_id(i), duration });
    }

    fn lag(&mut self, i: usize, d: Duration, loss: f64) {
        let params = link_params((LAN.0 + d, LAN.1 + d), loss);
        self.sim.apply(Fault::SetLinks { links: LinkSelector::To(sim_id(i)), params });
    }

    fn counts(&self) -> Counts {
        let (mut sent, mut bytes) = (0, 0);
        for id in self.sim.ids() {
            if let Some(node) = self.sim.node(id) {
                let stats = node.stats();
                sent += stats.sent.total();
                bytes += stats.bytes_sent;
            }
        }
        let heard = self.heard.borrow();
        Counts {
            sent,
            bytes,
            suspected: heard.suspected.clone(),
            downs: heard.failed.clone(),
            false_downs: heard.false_failed,
            same_side_downs: heard.same_side_failed,
        }
    }

    fn coverage(&self) -> f64 {
        let sim = &self.sim;
        let up: Vec<NodeId> = sim.ids().into_iter().filter(|id| sim.is_up(*id)).collect();
        if up.len() < 2 {
            return 1.0;
        }
        let held: usize = up
            .iter()
            .map(|id| {
                let node = sim.node(*id).expect("up");
                up.iter()
                    .filter(|o| {
                        *o != id
                            && node
                                .member(**o)
                                .is_some_and(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
                    })
                    .count()
            })
            .sum();
        held as f64 / (up.len() * (up.len() - 1)) as f64
    }

    fn down_at_all(&self, victim: usize) -> Option<u64> {
        let heard = self.heard.borrow();
        let mut last = 0;
        for i in (0..self.n).filter(|&i| i != victim && self.sim.is_up(sim_id(i))) {
            last = last.max(*heard.crashed_failed_at.get(&(i, victim))?);
        }
        Some(last)
    }

    fn split(&mut self, first: usize) {
        self.heard.borrow_mut().split = Some(first);
        self.sim.apply(Fault::Partition(vec![(0..first).map(sim_id).collect()]));
    }

    fn heal(&mut self) {
        self.sim.apply(Fault::Heal);
    }
}

// --- foca in its own loop ------------------------------------------------------------------

impl Cluster for FocaCluster {
    fn now(&self) -> u64 {
        Self::now(self)
    }

    fn run_for(&mut self, d: Duration) {
        Self::run_for(self, d);
    }

    fn converged(&self) -> bool {
        Self::converged(self)
    }

    fn set_loss(&mut self, latency: (Duration, Duration), loss: f64) {
        self.set_link(Link { min: latency.0, max: latency.1, loss });
    }

    fn crash(&mut self, i: usize) {
        Self::crash(self, i);
    }

    fn slow(&mut self, i: usize, per_message: Duration) {
        Self::slow(self, i, per_message);
    }

    fn pause(&mut self, i: usize, d: Duration) {
        Self::pause(self, i, d);
    }

    fn lag(&mut self, i: usize, d: Duration, _loss: f64) {
        // The loop's links are all alike: the lag adds to them, the loss stays.
        Self::lag(self, i, d);
    }

    fn counts(&self) -> Counts {
        let t = self.tally();
        Counts {
            sent: t.sent,
            bytes: t.bytes,
            suspected: t.suspected.clone(),
            downs: t.downs.clone(),
            false_downs: t.false_downs,
            same_side_downs: t.same_side_downs,
        }
    }

    fn coverage(&self) -> f64 {
        Self::coverage(self)
    }

    fn down_at_all(&self, victim: usize) -> Option<u64> {
        let t = self.tally();
        let mut last = 0;
        for i in (0..self.len()).filter(|&i| i != victim && self.is_up(i)) {
            let &(_, at) = t.crashed_down_at[i].iter().find(|(c, _)| *c == victim)?;
            last = last.max(at);
        }
        Some(last)
    }

    fn split(&mut self, first: usize) {
        Self::split(self, first);
    }

    fn heal(&mut self) {
        Self::heal(self);
    }
}

// --- the figures ---------------------------------------------------------------------------

/// Builds, forms (loss-free), switches the loss on and lets 10 s pass.
fn ready(
    side: &Side,
    n: usize,
    seed: u64,
    latency: (Duration, Duration),
    loss: f64,
) -> Result<Box<dyn Cluster>, String> {
    let mut c = side.build(n, seed, latency)?;
    let limit = Duration::from_secs(300);
    while !c.converged() {
        if c.now() >= nanos(limit) {
            return Err(format!("{n} members (seed {seed}) did not converge in {limit:?}"));
        }
        c.run_for(Duration::from_millis(100));
    }
    c.set_loss(latency, loss);
    c.run_for(Duration::from_secs(10));
    Ok(c)
}

struct Detection {
    p50: f64,
    p99: f64,
    misses: u64,
}

fn detection(side: &Side, n: usize, loss: f64, args: &Args) -> Result<Detection, String> {
    let mut times = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let mut misses = 0;
    for s in 0..args.detect_seeds {
        let seed = args.seed + s;
        let mut c = ready(side, n, seed, LAN, loss)?;
        let victim = (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 33) as usize % n;
        c.crash(victim);
        let crashed = c.now();
        let deadline = crashed + nanos(Duration::from_secs(300));
        loop {
            c.run_for(Duration::from_millis(100));
            if let Some(at) = c.down_at_all(victim) {
                times.record(((at - crashed) / 1000).max(1)).expect("in range");
                break;
            }
            if c.now() >= deadline {
                misses += 1;
                break;
            }
        }
    }
    let secs = |q| times.value_at_quantile(q) as f64 / 1e6;
    Ok(Detection { p50: secs(0.5), p99: secs(0.99), misses })
}

/// Downs of a member on the observer's own side after `runs` partitions that heal: the
/// total, and in how many runs any.
struct Healed {
    downs: u64,
    runs_with_any: u64,
}

/// `cut` of `n` members cut off from the rest for `length`, then healed; a minute later the
/// same-side downs are counted (from the split on).
fn healed(side: &Side, n: usize, cut: usize, length: Duration, args: &Args) -> Result<Healed, String> {
    let mut result = Healed { downs: 0, runs_with_any: 0 };
    for s in 0..args.heal_runs {
        let mut c = ready(side, n, args.seed + s, LAN, 0.0)?;
        c.split(cut);
        c.run_for(length);
        c.heal();
        c.run_for(Duration::from_secs(60));
        let downs = c.counts().same_side_downs;
        result.downs += downs;
        result.runs_with_any += u64::from(downs > 0);
    }
    Ok(result)
}

/// A quiet run's figures.
struct Quiet {
    downs_per_member_hour: f64,
    suspicions_per_member_hour: f64,
    messages_per_member_second: f64,
    bytes_per_member_second: f64,
    /// How whole the views are at the end (see [`Cluster::coverage`]).
    coverage: f64,
}

fn quiet(
    side: &Side,
    n: usize,
    latency: (Duration, Duration),
    loss: f64,
    seconds: f64,
    seed: u64,
) -> Result<Quiet, String> {
    let mut c = ready(side, n, seed, latency, loss)?;
    let before = c.counts();
    c.run_for(Duration::from_secs_f64(seconds));
    let after = c.counts();
    let member_hours = n as f64 * seconds / 3600.0;
    let member_seconds = n as f64 * seconds;
    let sum = |v: &[u64]| v.iter().sum::<u64>();
    Ok(Quiet {
        downs_per_member_hour: (after.false_downs - before.false_downs) as f64 / member_hours,
        suspicions_per_member_hour: (sum(&after.suspected) - sum(&before.suspected)) as f64 / member_hours,
        messages_per_member_second: (after.sent - before.sent) as f64 / member_seconds,
        bytes_per_member_second: (after.bytes - before.bytes) as f64 / member_seconds,
        coverage: c.coverage(),
    })
}

/// How the ablation's few members are stalled.
#[derive(Clone, Copy, Debug)]
enum Stall {
    /// Every datagram handled this late, one after another (`Fault::Slow`).
    Slow(Duration),
    /// A stall of `length` once per `every`, the members' stalls spread evenly over it
    /// (`Fault::Pause`, a garbage collector's or a starved scheduler's pause).
    Pause { length: Duration, every: Duration },
    /// Every datagram to the member arrives this late while its timers keep time: a
    /// process whose receive path lags (a full socket buffer, a starved reader thread),
    /// the case where the member itself accuses healthy peers.
    Lag(Duration),
}

/// Ablation figures, per member-hour.
struct Ablation {
    suspicions_healthy: f64,
    downs_healthy: f64,
    suspicions_stalled: f64,
    downs_stalled: f64,
}

fn ablation(side: &Side, stall: Stall, loss_percent: f64, args: &Args) -> Result<Ablation, String> {
    let n = 20;
    let seconds = args.ablation_hours * 3600.0 / n as f64;
    let loss = loss_percent / 100.0;
    let mut c = ready(side, n, args.seed, LAN, loss)?;
    let stalled: Vec<usize> = (n - args.stalled.clamp(1, n)..n).collect();
    let before = c.counts();
    let start = c.now();
    let end = start + nanos(Duration::from_secs_f64(seconds));
    match stall {
        Stall::Slow(per_message) => {
            for &i in &stalled {
                c.slow(i, per_message);
            }
            c.run_for(Duration::from_nanos(end - start));
        }
        Stall::Lag(d) => {
            for &i in &stalled {
                c.lag(i, d, loss);
            }
            c.run_for(Duration::from_nanos(end - start));
        }
        Stall::Pause { length, every } => {
            let step = every / stalled.len() as u32;
            let mut next = 0;
            while c.now() < end {
                c.pause(stalled[next % stalled.len()], length);
                next += 1;
                c.run_for(step.min(Duration::from_nanos(end - c.now())));
            }
        }
    }
    let after = c.counts();
    let member_hours = n as f64 * seconds / 3600.0;
    let delta = |a: &[u64], b: &[u64], stall: bool| {
        (0..n).filter(|i| stalled.contains(i) == stall).map(|i| a[i] - b[i]).sum::<u64>() as f64 / member_hours
    };
    Ok(Ablation {
        suspicions_healthy: delta(&after.suspected, &before.suspected, false),
        downs_healthy: delta(&after.downs, &before.downs, false),
        suspicions_stalled: delta(&after.suspected, &before.suspected, true),
        downs_stalled: delta(&after.downs, &before.downs, true),
    })
}

fn print_ablation(title: &str, stall: Stall, loss_percent: f64, args: &Args) -> Result<(), String> {
    println!();
    println!(
        "Lifeguard ablation: {title}, LAN with {} % loss, {} member-hours each",
        loss_percent, args.ablation_hours
    );
    println!(
        "{:<28} {:>15} {:>15} {:>15} {:>15}",
        "per member-hour", "suspicions of", "downs of", "suspicions of", "downs of"
    );
    println!("{:<28} {:>15} {:>15} {:>15} {:>15}", "", "healthy", "healthy", "stalled", "stalled");
    /// A row's name and how it changes `Lifeguard::ALL`.
    type Variant = (&'static str, fn(&mut Lifeguard));
    let variants: [Variant; 6] = [
        ("conclave, all on", |_| {}),
        ("conclave, no local health", |l| l.local_health = false),
        ("conclave, no dynamic susp.", |l| l.dynamic_suspicion = false),
        ("conclave, no buddy system", |l| l.buddy_system = false),
        ("conclave, no asking", |l| l.ask_the_accused = false),
        ("conclave, all off", |l| *l = Lifeguard::NONE),
    ];
    let mut sides: Vec<(&str, Side)> = variants
        .iter()
        .map(|(name, change)| {
            let mut config = Config::lan();
            let mut lifeguard = Lifeguard::ALL;
            change(&mut lifeguard);
            config.lifeguard = lifeguard;
            (*name, Side::Conclave(Box::new(config)))
        })
        .collect();
    sides.push(("foca", Side::Foca));
    // Two at a time, one per core; each run is its own deterministic world.
    for pair in sides.chunks(2) {
        let results: Vec<Result<Ablation, String>> = std::thread::scope(|s| {
            let handles: Vec<_> =
                pair.iter().map(|(_, side)| s.spawn(move || ablation(side, stall, loss_percent, args))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("an ablation run panicked".into()))).collect()
        });
        for ((name, _), result) in pair.iter().zip(results) {
            let a = result?;
            println!(
                "{:<28} {:>15.2} {:>15.3} {:>15.1} {:>15.2}",
                name, a.suspicions_healthy, a.downs_healthy, a.suspicions_stalled, a.downs_stalled
            );
        }
    }
    Ok(())
}

/// Runs `f` for conclave and for foca at once, on two threads (each side's run is its own
/// deterministic world; the threads share nothing).
fn both<T: Send>(f: impl Fn(&Side) -> Result<T, String> + Sync) -> Result<(T, T), String> {
    let conclave = Side::Conclave(Box::new(Config::lan()));
    std::thread::scope(|s| {
        let foca = s.spawn(|| f(&Side::Foca));
        let ours = f(&conclave);
        let theirs = foca.join().map_err(|_| "the foca side panicked".to_string())?;
        Ok((ours?, theirs?))
    })
}

#[allow(
    clippy::disallowed_methods,
    reason = "the wall time of the whole comparison is printed, outside the simulations"
)]
pub(crate) fn run(args: &Args) -> Result<(), String> {
    let started = std::time::Instant::now();
    println!(
        "conclave bench compare: conclave Config::lan() beside foca 1.0 Config::new_lan(n), the same links, seed {}",
        args.seed
    );
    println!("links: LAN = latency uniform 0.2-2 ms, WAN = 50-150 ms; loss independent per datagram");
    println!();
    println!("{:<34} {:>24} {:>24}   goal (issue 13)", "figure", "conclave", "foca");

    println!("crash -> down at every live member, p50 / p99 in s ({} crashes each)", args.detect_seeds);
    for (n, loss, goal) in [(5, 0.0, "p99 <= 3 s"), (20, 0.0, ""), (100, 0.0, ""), (100, 0.1, "p99 <= 4 s")] {
        let (a, b) = both(|side| detection(side, n, loss, args))?;
        let cell = |d: &Detection| {
            let miss = if d.misses > 0 { format!(" ({} missed)", d.misses) } else { String::new() };
            format!("{:.2} / {:.2}{miss}", d.p50, d.p99)
        };
        row(&format!("{n} members, {:.0} % loss", loss * 100.0), &cell(&a), &cell(&b), goal);
    }

    println!(
        "false downs per member-hour, quiet LAN ({} member-hours each; in brackets: how whole the views are at the end)",
        args.false_down_hours
    );
    for n in [5, 20] {
        for (loss, goal) in [(0.1, ""), (0.2, "0"), (0.3, "<= 0.02")] {
            let seconds = args.false_down_hours * 3600.0 / n as f64;
            let (a, b) = both(|side| quiet(side, n, LAN, loss, seconds, args.seed))?;
            let cell = |q: &Quiet| format!("{:.3} ({:.0} %)", q.downs_per_member_hour, q.coverage * 100.0);
            row(&format!("{n} members, {:.0} % loss", loss * 100.0), &cell(&a), &cell(&b), goal);
        }
    }

    println!(
        "20 members, 10 % loss, quiet ({} member-hours each): suspicions / false downs per member-hour",
        args.suspicion_hours
    );
    for (name, latency, goal) in [("LAN 0.2-2 ms", LAN, ""), ("WAN 50-150 ms", WAN, "< 10 / 0")] {
        let seconds = args.suspicion_hours * 3600.0 / 20.0;
        let (a, b) = both(|side| quiet(side, 20, latency, 0.1, seconds, args.seed))?;
        let cell = |q: &Quiet| format!("{:.1} / {:.3}", q.suspicions_per_member_hour, q.downs_per_member_hour);
        row(name, &cell(&a), &cell(&b), goal);
    }

    println!(
        "after a partition heals: downs of a member on the observer's own side ({} partitions each, loss-free LAN; in brackets: partitions with any)",
        args.heal_runs
    );
    let mut no_asking = Config::lan();
    no_asking.lifeguard.ask_the_accused = false;
    let no_asking = Side::Conclave(Box::new(no_asking));
    let cell = |h: &Healed| format!("{} ({})", h.downs, h.runs_with_any);
    for (n, cut, length, label) in [
        (100, 50, Duration::from_secs(20), "100 members, 50 cut off for 20 s"),
        (5, 2, Duration::from_secs(300), "5 members, 2 cut off for 5 min"),
    ] {
        let (a, b) = both(|side| healed(side, n, cut, length, args))?;
        row(label, &cell(&a), &cell(&b), "0");
        let without = healed(&no_asking, n, cut, length, args)?;
        row("  the same, conclave not asking", &cell(&without), "", "");
    }

    println!("sent per member-second, quiet loss-free LAN ({} s): datagrams / bytes", args.load_seconds);
    for (n, goal) in [(5, "bytes <= 2x foca's"), (20, ""), (100, "bytes <= 2x foca's")] {
        let (a, b) = both(|side| quiet(side, n, LAN, 0.0, args.load_seconds as f64, args.seed))?;
        let cell = |q: &Quiet| format!("{:.2} / {:.0}", q.messages_per_member_second, q.bytes_per_member_second);
        let ratio = a.bytes_per_member_second / b.bytes_per_member_second.max(1.0);
        let goal = if goal.is_empty() { String::new() } else { format!("{goal} (now {ratio:.1}x)") };
        row(&format!("{n} members"), &cell(&a), &cell(&b), &goal);
    }

    if !args.no_ablation {
        let stalls = [
            (
                format!("{} of 20 members slowed by {} ms per datagram", args.stalled, args.slow_ms),
                Stall::Slow(Duration::from_millis(args.slow_ms)),
            ),
            (
                format!("{} of 20 members receiving every datagram {} ms late", args.stalled, args.lag_ms),
                Stall::Lag(Duration::from_millis(args.lag_ms)),
            ),
            (
                format!("{} of 20 members paused {} ms every {} ms", args.stalled, args.pause_ms, args.pause_every_ms),
                Stall::Pause {
                    length: Duration::from_millis(args.pause_ms),
                    every: Duration::from_millis(args.pause_every_ms),
                },
            ),
        ];
        for &loss in &args.ablation_loss {
            for (title, stall) in &stalls {
                print_ablation(title, *stall, loss, args)?;
            }
        }
    }
    // Standard error: standard output is the same for the same seed and flags.
    eprintln!("wall time {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn row(label: &str, conclave: &str, foca: &str, goal: &str) {
    println!("  {label:<32} {conclave:>24} {foca:>24}   {goal}");
}
