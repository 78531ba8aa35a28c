//! The turmoil engine's shared pieces: the same core over turmoil's simulated UDP, and the
//! mapping of a [`FaultPlan`] onto what turmoil can do.
//!
//! Each turmoil host runs one [`conclave_core::Node`] over `turmoil::net::UdpSocket`,
//! sleeping on tokio's (simulated) clock until its `poll_timeout`. It is the reference the
//! fast engine is measured against (the benchmark prints the ratio), and the harness the
//! QUIC runtime's adapter tests grow from: the net-quic issue replaces the plain UDP
//! socket with quinn endpoints and keeps the plan mapping.
//!
//! Turmoil models less than the fast engine: one clock for all hosts (no offset, drift or
//! jump), no per-datagram loss, duplication, reordering or corruption (its `fail_rate` is
//! a random link-level partition), no stalled or slow process. [`turmoil_actions`] says
//! which faults it cannot express instead of approximating them silently.
//!
//! Addresses here are turmoil's own simulated ones (it hands them out and treats loopback
//! as host-local); nothing leaves the process.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use conclave_core::{Command, Config, Durable, Instant, Node, NodeConfig, NodeId, Output};

use crate::check::{ClusterSnapshot, NodeSnapshot};
use crate::fault::{Disk, Fault, FaultPlan};
use crate::network::{Latency, LinkParams, LinkSelector};
use crate::sim::{sim_id, SIM_PORT};

/// One change to a turmoil simulation, by host name.
#[derive(Clone, Debug, PartialEq, Eq)]
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
            let LinkParams { latency: Latency::Constant(latency), loss, duplicate, reorder, corrupt, .. } = params
            else {
                return unsupported(
                    "turmoil links have a fixed latency or its own exponential curve, not this distribution",
                );
            };
            if [*loss, *duplicate, *reorder, *corrupt].iter().any(|&p| p > 0.0) {
                return unsupported("turmoil has no per-datagram loss, duplication, reordering or corruption");
            }
            let all = members.to_vec();
            match *links {
                LinkSelector::All => pairs(&all, &all, &|a, b| A::SetLatency(a, b, *latency)),
                LinkSelector::Between(a, b) => vec![A::SetLatency(host_name(a), host_name(b), *latency)],
                LinkSelector::OneWay { .. } => return unsupported("turmoil's link latency is symmetric"),
                LinkSelector::From(a) | LinkSelector::To(a) => pairs(&[a], &all, &|x, y| A::SetLatency(x, y, *latency)),
            }
        }
        Fault::Pause { .. } => return unsupported("turmoil cannot stall one host's timers and input"),
        Fault::Slow { .. } => return unsupported("turmoil has no per-message processing delay"),
        Fault::ClockOffset { .. } | Fault::ClockDrift { .. } | Fault::ClockJump { .. } => {
            return unsupported("turmoil hosts share one clock")
        }
    })
}

/// Settings of a turmoil run. Mirrors [`SimBuilder`](crate::SimBuilder) where turmoil can.
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
}

impl Default for TurmoilBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters and views at the end of a turmoil run.
#[derive(Clone, Debug)]
pub struct TurmoilReport {
    /// Virtual time simulated.
    pub elapsed: Duration,
    /// Datagrams handed to a node.
    pub delivered: u64,
    /// Of those, refused by the node.
    pub rejected: u64,
    /// Datagrams nodes sent.
    pub sent: u64,
    /// Events the nodes emitted.
    pub events: u64,
    /// Steps of the plan turmoil could not express, with their times.
    pub unsupported: Vec<(Instant, Unsupported)>,
    /// Every member's view at the end.
    pub snapshot: ClusterSnapshot,
}

#[derive(Default)]
struct Shared {
    delivered: u64,
    rejected: u64,
    sent: u64,
    events: u64,
    disks: BTreeMap<u64, Vec<u8>>,
    views: BTreeMap<u64, BTreeMap<NodeId, conclave_core::MemberState>>,
    restarts: BTreeMap<u64, u32>,
}

/// The failure of a turmoil run itself (not of a property).
#[derive(Debug, thiserror::Error)]
#[error("turmoil: {0}")]
pub struct TurmoilError(String);

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
        }
    }

    /// The seed of turmoil's RNG and of the nodes'.
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
        let shared = Rc::new(RefCell::new(Shared::default()));
        let members: Vec<NodeId> = (0..self.members).map(sim_id).collect();
        let seeds: Vec<String> = members.iter().take(self.seeds.max(1)).map(|&id| host_name(id)).collect();
        for (i, &id) in members.iter().enumerate() {
            let host = Host {
                id,
                config: self.config.clone(),
                seed: self.seed,
                seeds: seeds.clone(),
                join_delay: if i == 0 {
                    None
                } else {
                    // Spread like the fast engine, without its RNG: evenly.
                    Some(self.join_window.mul_f64(i as f64 / self.members as f64))
                },
                shared: shared.clone(),
            };
            sim.host(host_name(id).as_str(), move || host.clone().run());
        }
        let mut steps: Vec<(Instant, usize)> = self.plan.steps.iter().enumerate().map(|(i, s)| (s.at, i)).collect();
        steps.sort();
        let mut next = 0;
        let mut unsupported = Vec::new();
        let end = Instant::ZERO + duration;
        loop {
            let now = Instant::ZERO + sim.elapsed();
            while next < steps.len() && steps[next].0 <= now {
                let step = &self.plan.steps[steps[next].1];
                match turmoil_actions(&step.fault, &members) {
                    Ok(actions) => {
                        for action in actions {
                            apply(&mut sim, &action, &members, &shared);
                        }
                    }
                    Err(e) => unsupported.push((step.at, e)),
                }
                next += 1;
            }
            if now >= end {
                break;
            }
            sim.step().map_err(|e| TurmoilError(e.to_string()))?;
        }
        let mut snapshot = ClusterSnapshot { at: Instant::ZERO + sim.elapsed(), nodes: Vec::new() };
        for &id in &members {
            let up = sim.is_host_running(host_name(id).as_str());
            let view = if up { shared.borrow().views.get(&id.0).cloned().unwrap_or_default() } else { BTreeMap::new() };
            snapshot.nodes.push(NodeSnapshot { id, up, view });
        }
        let s = shared.borrow();
        Ok(TurmoilReport {
            elapsed: sim.elapsed(),
            delivered: s.delivered,
            rejected: s.rejected,
            sent: s.sent,
            events: s.events,
            unsupported,
            snapshot,
        })
    }
}

fn apply(sim: &mut turmoil::Sim<'_>, action: &TurmoilAction, members: &[NodeId], shared: &Rc<RefCell<Shared>>) {
    match action {
        TurmoilAction::Crash(host) => {
            if sim.is_host_running(host.as_str()) {
                sim.crash(host.as_str());
            }
        }
        TurmoilAction::Bounce { host, amnesia } => {
            if let Some(id) = host.strip_prefix('n').and_then(|s| s.parse::<u64>().ok()) {
                let mut s = shared.borrow_mut();
                if *amnesia {
                    s.disks.remove(&id);
                }
                *s.restarts.entry(id).or_default() += 1;
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
    }
}

/// One host's software: a node over turmoil UDP.
#[derive(Clone)]
struct Host {
    id: NodeId,
    config: Config,
    seed: u64,
    seeds: Vec<String>,
    join_delay: Option<Duration>,
    shared: Rc<RefCell<Shared>>,
}

fn now() -> Instant {
    let elapsed = turmoil::sim_elapsed().unwrap_or_default();
    Instant::from_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
}

impl Host {
    async fn run(self) -> turmoil::Result {
        let socket = turmoil::net::UdpSocket::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), SIM_PORT)).await?;
        let addr = SocketAddr::new(turmoil::lookup(host_name(self.id).as_str()), SIM_PORT);
        let (durable, restarts) = {
            let s = self.shared.borrow();
            let durable = s.disks.get(&self.id.0).and_then(|b| Durable::decode(b).ok());
            (durable, s.restarts.get(&self.id.0).copied().unwrap_or(0))
        };
        let seed = self.seed ^ self.id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(restarts) << 48);
        let mut config = NodeConfig::new(self.id, addr, self.config.clone(), seed);
        config.durable = durable;
        let mut node = Node::new(config, now()).map_err(|e| e.to_string())?;
        let seeds: Vec<SocketAddr> = self
            .seeds
            .iter()
            .filter(|s| **s != host_name(self.id))
            .map(|s| SocketAddr::new(turmoil::lookup(s.as_str()), SIM_PORT))
            .collect();
        let mut join_at = match (self.join_delay, restarts) {
            (_, r) if r > 0 => Some(now()),
            (Some(delay), _) => Some(Instant::ZERO + delay),
            (None, _) => None,
        };
        let mut buf = vec![0u8; 65_536];
        loop {
            if join_at.is_some_and(|t| t <= now()) {
                join_at = None;
                // Joining only queues datagrams: it has nothing to refuse.
                let _ = node.handle_command(now(), Command::Join(seeds.clone()));
            }
            while let Some(output) = node.poll_output() {
                match output {
                    Output::Transmit(t) => {
                        self.shared.borrow_mut().sent += 1;
                        // A full queue or an unknown host loses the datagram, as UDP would.
                        let _ = socket.send_to(&t.payload, t.to).await;
                    }
                    Output::Event(_) => self.shared.borrow_mut().events += 1,
                    Output::Persist(d) => {
                        self.shared.borrow_mut().disks.insert(self.id.0, d.encode());
                    }
                }
            }
            {
                let view = node.members().map(|m| (m.id, m.state)).collect();
                self.shared.borrow_mut().views.insert(self.id.0, view);
            }
            let wake = [node.poll_timeout(), join_at].into_iter().flatten().min();
            let sleep = wake.map_or(Duration::from_secs(3600), |t| t - now());
            // `biased`: tokio otherwise picks the first branch to poll at random, from a
            // thread-local RNG that no seed controls.
            tokio::select! {
                biased;
                received = socket.recv_from(&mut buf) => {
                    let (len, from) = received?;
                    let ok = node.handle_datagram(now(), from, &buf[..len]).is_ok();
                    let mut s = self.shared.borrow_mut();
                    s.delivered += 1;
                    s.rejected += u64::from(!ok);
                }
                () = tokio::time::sleep(sleep) => node.handle_timeout(now()),
            }
        }
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
        let lossy = Fault::SetLinks { links: LinkSelector::All, params: LinkParams::default().with_loss(0.1) };
        assert!(turmoil_actions(&lossy, &members).is_err());
        assert!(turmoil_actions(&Fault::ClockDrift { node: NodeId(1), ppm: 5.0 }, &members).is_err());
        assert!(turmoil_actions(&Fault::Pause { node: NodeId(1), duration: Duration::from_secs(1) }, &members).is_err());
    }

    #[test]
    fn turmoil_hosts_form_a_cluster_and_survive_a_partition() {
        let plan = FaultPlan::new()
            .at(Instant::from_secs(2), Fault::Partition(vec![vec![NodeId(1)]]))
            .at(Instant::from_secs(3), Fault::Heal)
            .at(Instant::from_secs(3), Fault::ClockDrift { node: NodeId(2), ppm: 1.0 });
        let report = TurmoilBuilder::new().seed(4).members(4).plan(plan).run(Duration::from_secs(5)).unwrap();
        assert!(report.delivered > 50, "{report:?}");
        assert_eq!(report.unsupported.len(), 1);
        assert!(report.snapshot.nodes.iter().all(|n| n.up && n.view.len() == 4), "{:?}", report.snapshot);
    }

    #[test]
    fn turmoil_runs_are_deterministic() {
        let run = || {
            let r = TurmoilBuilder::new().seed(9).members(5).run(Duration::from_secs(4)).unwrap();
            (r.delivered, r.sent, r.events, r.snapshot)
        };
        assert_eq!(run(), run());
    }
}
