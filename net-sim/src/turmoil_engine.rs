//! The turmoil engine: the production QUIC runtime (conclave-quic's driver, real quinn,
//! real rustls with mutual TLS) on turmoil hosts, and the mapping of a [`FaultPlan`] onto
//! what turmoil can do.
//!
//! Each turmoil host runs one `conclave_quic::Cluster` over [`TurmoilUdp`], a quinn
//! `AsyncUdpSocket` over `turmoil::net::UdpSocket`, with a clock of its own (a
//! `SkewedClock` over turmoil's global time, so each host can be offset, drift and jump)
//! and an in-memory disk that survives its crashes. Per-datagram loss happens in the socket
//! wrapper, from one seeded RNG (turmoil's own `fail_rate` is a link-level partition).
//!
//! Runs repeat exactly: the QUIC endpoints' RNGs are seeded and their connection ids
//! counted, certificates are Ed25519 (fixed-size signatures) without session resumption,
//! and every `select!` on the way is biased. The trace hash covers every datagram the
//! sockets carry (time, source, destination, size, lost or not), every fault and every
//! event; [`TurmoilBuilder::verify_determinism`] runs a plan twice and compares them.
//!
//! The standard checkers judge every run: at most one leader per term, lease exclusivity,
//! no false failure verdicts, convergence after the last fault.
//!
//! Turmoil models less than the fast engine: no latency distribution (constant latencies
//! only), no duplication, reordering, corruption or stale copies, no stalled or slow process.
//! [`turmoil_actions`] says which faults it cannot express instead of approximating them
//! silently.
//!
//! Addresses here are turmoil's own simulated ones (it hands them out and treats loopback
//! as host-local); nothing leaves the process.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use conclave_core::{Config, Event, Instant, NodeId};
use conclave_quic::quinn;
use conclave_quic::{Cluster, DevCa, MemoryStorage, SkewedClock, TlsConfig};
use rand::{RngCore, SeedableRng};

use crate::check::{
    Checker, ClusterSnapshot, Converges, Finding, LeaseExclusive, NoFalseVerdicts, NodeSnapshot, OneLeaderPerTerm,
    RunInfo,
};
use crate::fault::{Disk, Fault, FaultPlan};
use crate::network::{Latency, LinkParams, LinkSelector};
use crate::sim::{sim_id, SimBuilder, SIM_PORT};
use crate::trace::{event_label, TraceHasher};

/// One change to a turmoil simulation, by host name.
#[derive(Clone, Debug, PartialEq)]
pub enum TurmoilAction {
    /// `Sim::crash`.
    Crash(String),
    /// `Sim::bounce` (restart the host's software), after wiping its stored state if
    /// `amnesia`.
    Bounce {
        /// The host.
        host: String,
        /// Whether its durable state is lost.
        amnesia: bool,
    },
    /// `turmoil::partition`, both directions.
    Partition(String, String),
    /// `turmoil::partition_oneway`.
    PartitionOneWay(String, String),
    /// `turmoil::repair` of every pair of hosts.
    RepairAll,
    /// `Sim::set_link_latency`, both directions.
    SetLatency(String, String, Duration),
    /// Datagrams from the first host to the second are lost with this probability (in the
    /// socket wrapper).
    SetLoss(String, String, f64),
    /// The host's clock is set to this offset from global time (a step).
    ClockOffset(String, i64),
    /// The host's clock drifts by this many parts per million from now on.
    ClockDrift(String, f64),
    /// The host's clock steps by this many nanoseconds (it never goes back).
    ClockJump(String, i64),
}

/// A fault turmoil cannot express.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("turmoil cannot express {fault}: {why}")]
pub struct Unsupported {
    /// The fault's name.
    pub fault: &'static str,
    /// Why.
    pub why: &'static str,
}

/// The host name of a member.
pub fn host_name(id: NodeId) -> String {
    format!("n{}", id.0)
}

/// What `fault` becomes on a turmoil simulation of `members`.
pub fn turmoil_actions(fault: &Fault, members: &[NodeId]) -> Result<Vec<TurmoilAction>, Unsupported> {
    use TurmoilAction as A;
    let pairs = |a: &[NodeId], b: &[NodeId], f: &dyn Fn(String, String) -> A| -> Vec<A> {
        a.iter()
            .flat_map(|&x| b.iter().filter(move |&&y| y != x).map(move |&y| f(host_name(x), host_name(y))))
            .collect()
    };
    let unsupported = |why| Err(Unsupported { fault: fault.name(), why });
    Ok(match fault {
        Fault::Crash(id) => vec![A::Crash(host_name(*id))],
        Fault::Restart { node, disk } => {
            vec![A::Crash(host_name(*node)), A::Bounce { host: host_name(*node), amnesia: *disk == Disk::Amnesia }]
        }
        Fault::Partition(groups) => {
            let mut group: BTreeMap<NodeId, usize> = members.iter().map(|&m| (m, 0)).collect();
            for (g, ids) in groups.iter().enumerate() {
                for id in ids {
                    group.insert(*id, g + 1);
                }
            }
            let mut actions = vec![A::RepairAll];
            for (i, &a) in members.iter().enumerate() {
                for &b in &members[i + 1..] {
                    if group[&a] != group[&b] {
                        actions.push(A::Partition(host_name(a), host_name(b)));
                    }
                }
            }
            actions
        }
        Fault::OneWay { from, to } => pairs(from, to, &A::PartitionOneWay),
        Fault::CutLinks(links) => links.iter().map(|&(a, b)| A::Partition(host_name(a), host_name(b))).collect(),
        Fault::Heal => vec![A::RepairAll],
        Fault::SetLinks { links, params } => {
            let LinkParams { latency: Latency::Constant(latency), loss, duplicate, reorder, corrupt, stale, .. } =
                params
            else {
                return unsupported(
                    "turmoil links have a fixed latency or its own exponential curve, not this distribution",
                );
            };
            if [*duplicate, *reorder, *corrupt].iter().any(|&p| p > 0.0) {
                return unsupported("turmoil has no per-datagram duplication, reordering or corruption");
            }
            if *stale > 0.0 {
                return unsupported("turmoil cannot hold a copy of a datagram back for minutes");
            }
            let all = members.to_vec();
            let directed: Vec<(String, String)> = match *links {
                LinkSelector::All => pairs(&all, &all, &|a, b| A::Partition(a, b))
                    .into_iter()
                    .filter_map(|a| if let A::Partition(x, y) = a { Some((x, y)) } else { None })
                    .collect(),
                LinkSelector::Between(a, b) => {
                    vec![(host_name(a), host_name(b)), (host_name(b), host_name(a))]
                }
                LinkSelector::OneWay { .. } => return unsupported("turmoil's link latency is symmetric"),
                LinkSelector::From(a) | LinkSelector::To(a) => {
                    let others: Vec<NodeId> = all.iter().copied().filter(|&m| m != a).collect();
                    let out = others.iter().map(|&b| (host_name(a), host_name(b)));
                    let back = others.iter().map(|&b| (host_name(b), host_name(a)));
                    if matches!(*links, LinkSelector::From(_)) {
                        out.collect()
                    } else {
                        back.collect()
                    }
                }
            };
            let mut actions = Vec::new();
            for (a, b) in directed {
                // turmoil's latency is per pair, both ways: set it once per pair.
                if a < b || matches!(*links, LinkSelector::From(_) | LinkSelector::To(_)) {
                    actions.push(A::SetLatency(a.clone(), b.clone(), *latency));
                }
                actions.push(A::SetLoss(a, b, *loss));
            }
            actions
        }
        Fault::CrashAtPersist(_) => return unsupported("the turmoil engine does not watch its hosts' durable writes"),
        Fault::Pause { .. } => return unsupported("turmoil cannot stall one host's timers and input"),
        Fault::Slow { .. } => return unsupported("turmoil has no per-message processing delay"),
        Fault::ClockOffset { node, offset_nanos } => vec![A::ClockOffset(host_name(*node), *offset_nanos)],
        Fault::ClockDrift { node, ppm } => vec![A::ClockDrift(host_name(*node), *ppm)],
        Fault::ClockJump { node, nanos } => vec![A::ClockJump(host_name(*node), *nanos)],
    })
}

/// Settings of a turmoil run. Mirrors [`SimBuilder`] where turmoil can.
#[derive(Clone, Debug)]
pub struct TurmoilBuilder {
    seed: u64,
    members: usize,
    config: Config,
    latency: Duration,
    tick: Duration,
    plan: FaultPlan,
    seeds: usize,
    join_window: Duration,
    convergence_bound: Option<Duration>,
    false_verdict_budget: usize,
}

impl Default for TurmoilBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters, views and verdicts at the end of a turmoil run.
#[derive(Clone, Debug)]
pub struct TurmoilReport {
    /// Virtual time simulated.
    pub elapsed: Duration,
    /// Membership datagrams handed to a member's core (after the runtime's identity check).
    pub delivered: u64,
    /// Datagrams (QUIC packets) the hosts' sockets sent.
    pub packets: u64,
    /// Of those, lost in the socket wrapper.
    pub lost: u64,
    /// Events the members emitted.
    pub events: u64,
    /// Steps of the plan turmoil could not express, with their times.
    pub unsupported: Vec<(Instant, Unsupported)>,
    /// Every member's view at the end.
    pub snapshot: ClusterSnapshot,
    /// The hash of every packet, fault and event with its time.
    pub trace_hash: u64,
    /// What the checkers found, as `checker: message`.
    pub violations: Vec<String>,
    /// Checkers that asked to judge at a time past the run's end (they could not judge).
    pub unjudged: Vec<&'static str>,
}

/// What the hosts and the run loop share (one thread: turmoil runs every host on it).
struct Shared {
    events: u64,
    /// Membership datagrams each life of each member handed to its core.
    delivered: BTreeMap<(u64, u32), u64>,
    views: BTreeMap<u64, BTreeMap<NodeId, conclave_core::MemberState>>,
    restarts: BTreeMap<u64, u32>,
    checkers: Vec<Box<dyn Checker>>,
    findings: Vec<(usize, Finding)>,
    hasher: TraceHasher,
}

impl Shared {
    fn event(&mut self, at: Instant, node: NodeId, event: &Event) {
        self.events += 1;
        self.hasher.lane(at.as_nanos());
        self.hasher.lane(node.0);
        self.hasher.bytes(event_label(event).as_bytes());
        let mut findings = Vec::new();
        for (i, checker) in self.checkers.iter_mut().enumerate() {
            checker.event(at, node, event, &mut findings);
            self.findings.extend(findings.drain(..).map(|f| (i, f)));
        }
    }
}

/// What every host's socket shares: the loss table, its RNG and the packet trace.
#[derive(Debug)]
struct Links {
    loss: BTreeMap<(IpAddr, IpAddr), f64>,
    rng: rand_chacha::ChaCha8Rng,
    hasher: TraceHasher,
    packets: u64,
    lost: u64,
}

/// The failure of a turmoil run itself (not of a property).
#[derive(Debug, thiserror::Error)]
#[error("turmoil: {0}")]
pub struct TurmoilError(String);

/// The global simulated time, as the core's [`Instant`].
fn global_now() -> Instant {
    let elapsed = turmoil::sim_elapsed().unwrap_or_default();
    Instant::from_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
}

/// turmoil's global clock, which every host's skewed clock wraps.
#[derive(Debug)]
struct GlobalClock;

impl conclave_quic::Clock for GlobalClock {
    fn now(&self) -> Instant {
        global_now()
    }
}

/// One member's lasting state across crashes of its host: its disk and its clock.
#[derive(Clone, Debug)]
struct Machine {
    disk: MemoryStorage,
    clock: SkewedClock,
    offset: Rc<RefCell<i64>>,
}

impl TurmoilBuilder {
    /// Seed 0, 3 members, `Config::lan()`, 500 µs links, a 1 ms tick.
    pub fn new() -> Self {
        Self {
            seed: 0,
            members: 3,
            config: Config::lan(),
            latency: Duration::from_micros(500),
            tick: Duration::from_millis(1),
            plan: FaultPlan::new(),
            seeds: 3,
            join_window: Duration::from_millis(100),
            convergence_bound: None,
            false_verdict_budget: 0,
        }
    }

    /// The seed of turmoil's RNG, of the loss RNG, of the QUIC endpoints and of the nodes.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// `n` members, hosts `n1..=n{n}`.
    pub fn members(mut self, n: usize) -> Self {
        self.members = n;
        self
    }

    /// The protocol settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The constant one-way latency of every link.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Turmoil's tick: the granularity of its clock (and its main cost).
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// The fault plan (steps turmoil cannot express are reported, not applied).
    pub fn plan(mut self, plan: FaultPlan) -> Self {
        self.plan = plan;
        self
    }

    /// Joins are spread over this window from time zero.
    pub fn join_window(mut self, window: Duration) -> Self {
        self.join_window = window;
        self
    }

    /// How long after the plan's last step the views must have converged (default: the
    /// fast engine's bound for this config and size).
    pub fn convergence_bound(mut self, bound: Duration) -> Self {
        self.convergence_bound = Some(bound);
        self
    }

    /// How many distinct false failure verdicts the run tolerates (default 0).
    pub fn false_verdict_budget(mut self, budget: usize) -> Self {
        self.false_verdict_budget = budget;
        self
    }

    /// Runs the plan twice for `duration` and returns the trace hash if both runs gave the
    /// same one.
    pub fn verify_determinism(&self, duration: Duration) -> Result<u64, TurmoilError> {
        let first = self.run(duration)?.trace_hash;
        let second = self.run(duration)?.trace_hash;
        if first == second {
            Ok(first)
        } else {
            Err(TurmoilError(format!(
                "seed {}: the same plan gave trace hashes {first:#018x} and {second:#018x}",
                self.seed
            )))
        }
    }

    /// Runs for `duration` of virtual time.
    pub fn run(&self, duration: Duration) -> Result<TurmoilReport, TurmoilError> {
        let mut sim = turmoil::Builder::new()
            .simulation_duration(duration + Duration::from_secs(3600))
            .tick_duration(self.tick)
            .min_message_latency(self.latency)
            .max_message_latency(self.latency)
            .udp_capacity(1 << 16)
            .rng_seed(self.seed)
            .build();
        let members: Vec<NodeId> = (0..self.members).map(sim_id).collect();
        let bound =
            self.convergence_bound.unwrap_or_else(|| SimBuilder::default_convergence_bound(&self.config, self.members));
        let checkers: Vec<Box<dyn Checker>> = vec![
            Box::new(OneLeaderPerTerm::default()),
            Box::new(LeaseExclusive::new(0.0)),
            Box::new(NoFalseVerdicts::new(self.false_verdict_budget)),
            Box::new(Converges::new(bound)),
        ];
        let shared = Rc::new(RefCell::new(Shared {
            events: 0,
            delivered: BTreeMap::new(),
            views: BTreeMap::new(),
            restarts: BTreeMap::new(),
            checkers,
            findings: Vec::new(),
            hasher: TraceHasher::default(),
        }));
        let links = Arc::new(Mutex::new(Links {
            loss: BTreeMap::new(),
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ 0x6c6f_7373),
            hasher: TraceHasher::default(),
            packets: 0,
            lost: 0,
        }));
        let info = RunInfo { seed: self.seed, plan: self.plan.clone(), members: members.clone() };
        let mut snapshots: Vec<(Instant, usize)> = Vec::new();
        for (i, checker) in shared.borrow_mut().checkers.iter_mut().enumerate() {
            snapshots.extend(checker.start(&info).into_iter().map(|at| (at, i)));
        }
        snapshots.sort();

        let ca = DevCa::new("turmoil").map_err(|e| TurmoilError(e.to_string()))?;
        let mut machines = BTreeMap::new();
        let seeds: Vec<String> = members.iter().take(self.seeds.max(1)).map(|&id| host_name(id)).collect();
        for (i, &id) in members.iter().enumerate() {
            let machine = Machine {
                disk: MemoryStorage::new(),
                clock: SkewedClock::new(Arc::new(GlobalClock)),
                offset: Rc::new(RefCell::new(0)),
            };
            machines.insert(host_name(id), machine.clone());
            let host = Host {
                id,
                config: self.config.clone(),
                seed: self.seed,
                seeds: seeds.clone(),
                // Spread like the fast engine, without its RNG: evenly.
                join_delay: self.join_window.mul_f64(i as f64 / self.members as f64),
                tls: ca.tls(id).map_err(|e| TurmoilError(e.to_string()))?,
                machine,
                links: links.clone(),
                shared: shared.clone(),
            };
            sim.host(host_name(id).as_str(), move || host.clone().run());
        }
        let mut steps: Vec<(Instant, usize)> = self.plan.steps.iter().enumerate().map(|(i, s)| (s.at, i)).collect();
        steps.sort();
        let (mut next, mut next_snapshot) = (0, 0);
        let mut unsupported = Vec::new();
        let end = Instant::ZERO + duration;
        let snapshot = |sim: &mut turmoil::Sim<'_>, shared: &Rc<RefCell<Shared>>| {
            let mut snapshot = ClusterSnapshot { at: Instant::ZERO + sim.elapsed(), nodes: Vec::new() };
            for &id in &members {
                let up = sim.is_host_running(host_name(id).as_str());
                let view =
                    if up { shared.borrow().views.get(&id.0).cloned().unwrap_or_default() } else { BTreeMap::new() };
                snapshot.nodes.push(NodeSnapshot { id, up, view, term: 0, leader: None });
            }
            snapshot
        };
        loop {
            let now = Instant::ZERO + sim.elapsed();
            while next < steps.len() && steps[next].0 <= now {
                let step = &self.plan.steps[steps[next].1];
                match turmoil_actions(&step.fault, &members) {
                    Ok(actions) => {
                        for action in actions {
                            apply(&mut sim, &action, &members, &shared, &links, &machines);
                        }
                        let s = &mut *shared.borrow_mut();
                        s.hasher.lane(now.as_nanos());
                        s.hasher.bytes(step.fault.name().as_bytes());
                        let mut findings = Vec::new();
                        for (i, checker) in s.checkers.iter_mut().enumerate() {
                            checker.fault(now, &step.fault, &mut findings);
                            let found: Vec<_> = findings.drain(..).map(|f| (i, f)).collect();
                            s.findings.extend(found);
                        }
                    }
                    Err(e) => unsupported.push((step.at, e)),
                }
                next += 1;
            }
            while next_snapshot < snapshots.len() && snapshots[next_snapshot].0 <= now {
                let (at, i) = snapshots[next_snapshot];
                let mut taken = snapshot(&mut sim, &shared);
                taken.at = at;
                let mut s = shared.borrow_mut();
                let mut findings = Vec::new();
                s.checkers[i].snapshot(&taken, &mut findings);
                s.findings.extend(findings.into_iter().map(|f| (i, f)));
                next_snapshot += 1;
            }
            if now >= end {
                break;
            }
            sim.step().map_err(|e| TurmoilError(e.to_string()))?;
        }
        let last = snapshot(&mut sim, &shared);
        let s = &mut *shared.borrow_mut();
        let mut findings = Vec::new();
        for (i, checker) in s.checkers.iter_mut().enumerate() {
            checker.finish(&last, &mut findings);
            let found: Vec<_> = findings.drain(..).map(|f| (i, f)).collect();
            s.findings.extend(found);
        }
        let unjudged: Vec<&'static str> =
            snapshots[next_snapshot..].iter().map(|&(_, i)| s.checkers[i].name()).collect();
        let violations = s
            .findings
            .iter()
            .map(|(i, f)| format!("{}: at {:?}: {}", s.checkers[*i].name(), f.at.since_epoch(), f.message))
            .collect();
        let l = links.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut hasher = s.hasher;
        hasher.lane(l.hasher.finish());
        Ok(TurmoilReport {
            elapsed: sim.elapsed(),
            delivered: s.delivered.values().sum(),
            packets: l.packets,
            lost: l.lost,
            events: s.events,
            unsupported,
            snapshot: last,
            trace_hash: hasher.finish(),
            violations,
            unjudged,
        })
    }
}

fn apply(
    sim: &mut turmoil::Sim<'_>,
    action: &TurmoilAction,
    members: &[NodeId],
    shared: &Rc<RefCell<Shared>>,
    links: &Arc<Mutex<Links>>,
    machines: &BTreeMap<String, Machine>,
) {
    let ns = |nanos: i64| Duration::from_nanos(nanos.unsigned_abs());
    match action {
        TurmoilAction::Crash(host) => {
            if sim.is_host_running(host.as_str()) {
                sim.crash(host.as_str());
            }
        }
        TurmoilAction::Bounce { host, amnesia } => {
            if let Some(id) = host.strip_prefix('n').and_then(|s| s.parse::<u64>().ok()) {
                if *amnesia {
                    if let Some(machine) = machines.get(host) {
                        machine.disk.wipe();
                    }
                }
                *shared.borrow_mut().restarts.entry(id).or_default() += 1;
            }
            sim.bounce(host.as_str());
        }
        TurmoilAction::Partition(a, b) => sim.partition(a.as_str(), b.as_str()),
        TurmoilAction::PartitionOneWay(a, b) => sim.partition_oneway(a.as_str(), b.as_str()),
        TurmoilAction::RepairAll => {
            for (i, &a) in members.iter().enumerate() {
                for &b in &members[i + 1..] {
                    sim.repair(host_name(a).as_str(), host_name(b).as_str());
                }
            }
        }
        TurmoilAction::SetLatency(a, b, d) => sim.set_link_latency(a.as_str(), b.as_str(), *d),
        TurmoilAction::SetLoss(a, b, p) => {
            let key = (sim.lookup(a.as_str()), sim.lookup(b.as_str()));
            let mut l = links.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            l.loss.insert(key, *p);
        }
        TurmoilAction::ClockOffset(host, offset) => {
            if let Some(machine) = machines.get(host) {
                let delta = offset - *machine.offset.borrow();
                *machine.offset.borrow_mut() = *offset;
                machine.clock.jump(ns(delta), delta >= 0);
            }
        }
        TurmoilAction::ClockDrift(host, ppm) => {
            if let Some(machine) = machines.get(host) {
                machine.clock.set_drift(*ppm);
            }
        }
        TurmoilAction::ClockJump(host, nanos) => {
            if let Some(machine) = machines.get(host) {
                machine.clock.jump(ns(*nanos), *nanos >= 0);
            }
        }
    }
}

/// One host's software: a conclave-quic member over turmoil UDP.
#[derive(Clone)]
struct Host {
    id: NodeId,
    config: Config,
    seed: u64,
    seeds: Vec<String>,
    join_delay: Duration,
    tls: TlsConfig,
    machine: Machine,
    links: Arc<Mutex<Links>>,
    shared: Rc<RefCell<Shared>>,
}

impl Host {
    async fn run(self) -> turmoil::Result {
        let restarts = self.shared.borrow().restarts.get(&self.id.0).copied().unwrap_or(0);
        if restarts == 0 {
            tokio::time::sleep(self.join_delay).await;
        }
        let socket = turmoil::net::UdpSocket::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), SIM_PORT)).await?;
        let addr = SocketAddr::new(turmoil::lookup(host_name(self.id).as_str()), SIM_PORT);
        let socket = Arc::new(TurmoilUdp::new(socket, addr, self.links.clone()));
        let seed = self.seed ^ self.id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(restarts) << 48);
        let seeds: Vec<SocketAddr> = self
            .seeds
            .iter()
            .filter(|s| **s != host_name(self.id))
            .map(|s| SocketAddr::new(turmoil::lookup(s.as_str()), SIM_PORT))
            .collect();
        let cluster = Cluster::builder(self.id)
            .advertise(addr)
            .seeds(seeds)
            .config(self.config.clone())
            .tls(self.tls.clone())
            .storage(self.machine.disk.clone())
            .rng_seed(seed)
            .deterministic()
            .socket(socket)
            .clock(Arc::new(self.machine.clock.clone()))
            .start()
            .await
            .map_err(|e| e.to_string())?;
        let mut events = cluster.events();
        loop {
            {
                let view = cluster.members().into_iter().map(|m| (m.id, m.state)).collect();
                let mut shared = self.shared.borrow_mut();
                shared.views.insert(self.id.0, view);
                shared.delivered.insert((self.id.0, restarts), cluster.counters().datagrams_received);
            }
            // `biased`: tokio otherwise picks the first branch to poll from its RNG.
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    Ok(event) => self.shared.borrow_mut().event(global_now(), self.id, &event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        return Err(format!("{} missed {missed} events", host_name(self.id)).into());
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                },
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }
}

/// A quinn socket over turmoil's simulated UDP, losing datagrams per the shared loss table.
pub struct TurmoilUdp {
    socket: Arc<turmoil::net::UdpSocket>,
    addr: SocketAddr,
    links: Arc<Mutex<Links>>,
    readable: Mutex<Option<Readable>>,
}

type Readable = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

impl std::fmt::Debug for TurmoilUdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurmoilUdp").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl TurmoilUdp {
    fn new(socket: turmoil::net::UdpSocket, addr: SocketAddr, links: Arc<Mutex<Links>>) -> Self {
        Self { socket: Arc::new(socket), addr, links, readable: Mutex::new(None) }
    }
}

/// turmoil's UDP never pushes back: always writable.
#[derive(Debug)]
struct AlwaysWritable;

impl quinn::UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl quinn::AsyncUdpSocket for TurmoilUdp {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &quinn::udp::Transmit<'_>) -> io::Result<()> {
        let lost = {
            let mut l = self.links.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let p = l.loss.get(&(self.addr.ip(), transmit.destination.ip())).copied().unwrap_or(0.0);
            // A draw only on lossy links, so a loss-free run's draws do not shift.
            let lost = p > 0.0 && (l.rng.next_u64() as f64 / (u64::MAX as f64 + 1.0)) < p;
            l.packets += 1;
            l.lost += u64::from(lost);
            let at = global_now().as_nanos();
            l.hasher.lane(at);
            l.hasher.bytes(self.addr.to_string().as_bytes());
            l.hasher.bytes(transmit.destination.to_string().as_bytes());
            l.hasher.lane(transmit.contents.len() as u64);
            l.hasher.lane(u64::from(lost));
            lost
        };
        if !lost {
            // Like UDP: a datagram to nowhere is lost, not an error.
            let _ = self.socket.try_send_to(transmit.contents, transmit.destination);
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else { return Poll::Ready(Ok(0)) };
        loop {
            match self.socket.try_recv_from(buf) {
                Ok((len, from)) => {
                    *slot = quinn::udp::RecvMeta { addr: from, len, stride: len, ecn: None, dst_ip: None };
                    return Poll::Ready(Ok(1));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut readable = self.readable.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let socket = self.socket.clone();
                    let future = readable.get_or_insert_with(|| Box::pin(async move { socket.readable().await }));
                    match future.as_mut().poll(cx) {
                        Poll::Ready(result) => {
                            *readable = None;
                            result?;
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }

    fn may_fragment(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_maps_onto_turmoil_or_says_why_not() {
        let members: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let p = turmoil_actions(&Fault::Partition(vec![vec![NodeId(1)]]), &members).unwrap();
        assert_eq!(
            p,
            vec![
                TurmoilAction::RepairAll,
                TurmoilAction::Partition("n1".into(), "n2".into()),
                TurmoilAction::Partition("n1".into(), "n3".into()),
            ]
        );
        let one_way = Fault::OneWay { from: vec![NodeId(1)], to: vec![NodeId(2)] };
        assert_eq!(
            turmoil_actions(&one_way, &members).unwrap(),
            vec![TurmoilAction::PartitionOneWay("n1".into(), "n2".into())]
        );
        let restart = Fault::Restart { node: NodeId(2), disk: Disk::Amnesia };
        assert_eq!(
            turmoil_actions(&restart, &members).unwrap(),
            vec![TurmoilAction::Crash("n2".into()), TurmoilAction::Bounce { host: "n2".into(), amnesia: true }]
        );
        let lossy = Fault::SetLinks {
            links: LinkSelector::Between(NodeId(1), NodeId(2)),
            params: LinkParams::constant(Duration::from_millis(1)).with_loss(0.1),
        };
        assert_eq!(
            turmoil_actions(&lossy, &members).unwrap(),
            vec![
                TurmoilAction::SetLatency("n1".into(), "n2".into(), Duration::from_millis(1)),
                TurmoilAction::SetLoss("n1".into(), "n2".into(), 0.1),
                TurmoilAction::SetLoss("n2".into(), "n1".into(), 0.1),
            ]
        );
        assert_eq!(
            turmoil_actions(&Fault::ClockDrift { node: NodeId(1), ppm: 5.0 }, &members).unwrap(),
            vec![TurmoilAction::ClockDrift("n1".into(), 5.0)]
        );
        let corrupting =
            Fault::SetLinks { links: LinkSelector::All, params: LinkParams { corrupt: 0.1, ..LinkParams::default() } };
        assert!(turmoil_actions(&corrupting, &members).is_err());
        let stale = Fault::SetLinks {
            links: LinkSelector::All,
            params: LinkParams { stale: 0.01, stale_delay: Duration::from_secs(60), ..LinkParams::default() },
        };
        assert!(turmoil_actions(&stale, &members).is_err(), "stale copies are refused, not ignored");
        assert!(turmoil_actions(&Fault::Pause { node: NodeId(1), duration: Duration::from_secs(1) }, &members).is_err());
    }

    /// A fast protocol and a convergence bound that fits short runs.
    fn builder(seed: u64, members: usize, plan: FaultPlan) -> TurmoilBuilder {
        TurmoilBuilder::new()
            .seed(seed)
            .members(members)
            .config(Config::local())
            .convergence_bound(Duration::from_secs(6))
            .plan(plan)
    }

    /// Runs twice: the report of the first run, after checking the second gave the same
    /// trace hash.
    fn run_twice(builder: &TurmoilBuilder, duration: Duration) -> TurmoilReport {
        let first = builder.run(duration).unwrap();
        let second = builder.run(duration).unwrap();
        assert_eq!(first.trace_hash, second.trace_hash, "the same plan gave two traces: {first:?}\n{second:?}");
        first
    }

    fn judged_and_clean(report: &TurmoilReport) {
        assert!(report.violations.is_empty(), "{:#?}", report.violations);
        assert!(report.unjudged.is_empty(), "checkers could not judge: {:?}", report.unjudged);
        assert!(report.unsupported.is_empty(), "{:?}", report.unsupported);
        assert!(report.packets > 100 && report.delivered > 100 && report.events > 0, "{report:?}");
    }

    #[test]
    fn a_crash_is_seen_on_the_real_quic_runtime() {
        let plan = FaultPlan::new().at(Instant::from_secs(2), Fault::Crash(NodeId(3)));
        let report = run_twice(&builder(11, 4, plan), Duration::from_secs(9));
        judged_and_clean(&report);
        for node in report.snapshot.nodes.iter().filter(|n| n.up) {
            assert_eq!(node.view.get(&NodeId(3)), Some(&conclave_core::MemberState::Failed), "{node:?}");
            assert_eq!(node.view.values().filter(|s| s.is_live()).count(), 3, "{node:?}");
        }
    }

    #[test]
    fn a_partition_heals_on_the_real_quic_runtime() {
        let plan = FaultPlan::new()
            .at(Instant::from_secs(2), Fault::Partition(vec![vec![NodeId(1)]]))
            .at(Instant::from_secs(4), Fault::Heal);
        let report = run_twice(&builder(12, 4, plan), Duration::from_secs(11));
        judged_and_clean(&report);
        assert!(report.snapshot.nodes.iter().all(|n| n.up && n.view.len() == 4), "{:?}", report.snapshot);
    }

    #[test]
    fn a_restarted_member_rejoins_on_the_real_quic_runtime() {
        let plan = FaultPlan::new()
            .at(Instant::from_secs(2), Fault::Crash(NodeId(2)))
            .at(Instant::from_secs(4), Fault::Restart { node: NodeId(2), disk: Disk::Kept })
            .at(Instant::from_secs(5), Fault::Restart { node: NodeId(3), disk: Disk::Amnesia });
        let report = run_twice(&builder(14, 3, plan), Duration::from_secs(12));
        judged_and_clean(&report);
        assert!(report.snapshot.nodes.iter().all(|n| n.up && n.view.len() == 3), "{:?}", report.snapshot);
    }

    #[test]
    fn loss_and_skewed_clocks_give_no_false_verdict() {
        let lossy = Fault::SetLinks {
            links: LinkSelector::All,
            params: LinkParams::constant(Duration::from_micros(500)).with_loss(0.1),
        };
        let plan = FaultPlan::new()
            .at(Instant::from_secs(1), lossy)
            .at(Instant::from_secs(1), Fault::ClockOffset { node: NodeId(2), offset_nanos: 3_000_000_000 })
            .at(Instant::from_secs(1), Fault::ClockDrift { node: NodeId(3), ppm: 200.0 });
        let report = builder(13, 3, plan).run(Duration::from_secs(8)).unwrap();
        assert!(report.lost > 0, "{report:?}");
        judged_and_clean(&report);
    }
}
