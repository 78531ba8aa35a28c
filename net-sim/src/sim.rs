//! The fast engine: a discrete-event loop over `conclave_core::Node`s.
//!
//! One priority queue of events ordered by (global time, sequence number), one seeded RNG
//! for every draw, and each member's own clock between the global time and its `now`.
//! Nothing touches a real socket or the real clock.
//!
//! The engine reads by role:
//!
//! - this file: [`Sim`], its queue of events and the run loop that dispatches them, what a
//!   test reads of a running simulation, and the checkers' plumbing (observations,
//!   snapshots, findings turned into violations);
//! - `builder`: [`SimBuilder`], the settings of a run and the simulation it builds at time
//!   zero; [`verify_determinism`];
//! - `host`: one member's host: its process (the `Node`), timers, clock and disk, what the
//!   engine does with its outputs, and its election state as the checkers see it;
//! - `world`: what lies between the hosts: the network that carries their datagrams
//!   (cuts, loss, latency, duplication, corruption), and the plan's faults applied to it
//!   and to the hosts;
//! - `report`: [`Report`] and [`SimStats`], what a finished run hands back;
//! - `workload`: the service workload's driver (clients and workers, see
//!   [`crate::workload`]), reached through a few hooks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use conclave_core::{wire, Command, Event, Instant, Node, NodeId, Output};

use crate::check::{Checker, ClusterSnapshot, Finding, NodeSnapshot, Observation, RunInfo, Violation};
use crate::error::Error;
use crate::fault::FaultPlan;
use crate::network::{nanos, Network, SimRng};
use crate::queue::EventQueue;
use crate::trace::{DropReason, TraceHasher, TraceMode, TraceRecord};

mod builder;
mod host;
mod report;
mod workload;
mod world;

pub use builder::{verify_determinism, Nondeterminism, SimBuilder};
pub use host::{sim_addr, sim_id, SIM_PORT};
pub use report::{Report, SimStats};

use host::{Host, Slot};
use report::{all_records, events_of};

/// What the queue holds.
#[derive(Debug)]
enum What {
    /// A datagram reaches `to`'s host.
    Arrive { to: u32, from: u32, payload: Vec<u8>, sent: u64 },
    /// A datagram that waited behind a slow or paused process is handled.
    Handle { to: u32, from: u32, payload: Vec<u8>, sent: u64, life: u32 },
    /// A member's timer.
    Timer { node: u32, life: u32 },
    /// The plan's `index`-th step.
    Fault { index: u32 },
    /// A member joins through the seeds.
    Join { node: u32, life: u32 },
    /// A checker's snapshot.
    Snapshot { checker: u32 },
    /// The workload's (boxed: the queue's entries stay small).
    Work(Box<workload::Due>),
}

/// The deterministic simulator. See the [crate docs](crate) for the map.
pub struct Sim {
    seed: u64,
    now: u64,
    queue: EventQueue<What>,
    rng: SimRng,
    slots: Vec<Slot>,
    /// Each member's address, by slot: read for every datagram (the sender's, the
    /// destination's check), so kept dense.
    addrs: Vec<SocketAddr>,
    hosts: Vec<Host>,
    by_addr: BTreeMap<SocketAddr, u32>,
    by_id: BTreeMap<NodeId, u32>,
    seed_slots: Vec<u32>,
    net: Network,
    plan: FaultPlan,
    plan_text: String,
    mode: TraceMode,
    hasher: TraceHasher,
    records: Vec<TraceRecord>,
    stats: SimStats,
    checkers: Vec<Box<dyn Checker>>,
    /// The time of the earliest snapshot queued for each checker (`u64::MAX`: none).
    wakes: Vec<u64>,
    /// Whether some checker reads the members' own incarnations.
    incarnations: bool,
    /// Whether some checker reads the datagrams (their sizes, the election messages).
    datagrams: bool,
    /// Whether any member has voters configured: then every member's election state is
    /// read after each input and reported to the checkers when it changes.
    elects: bool,
    opt_outs: Vec<&'static str>,
    findings: Vec<Finding>,
    violations: Vec<Violation>,
    replay: String,
    outputs: Vec<Output>,
    /// The service workload, if the run has one.
    workload: Option<Box<workload::Driver>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("now", &Instant::from_nanos(self.now))
            .field("members", &self.slots.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Adds a checker; it sees the run from now on.
    pub fn add_checker(&mut self, mut checker: Box<dyn Checker>) {
        let info =
            RunInfo { seed: self.seed, plan: self.plan.clone(), members: self.slots.iter().map(|s| s.id).collect() };
        let index = self.checkers.len() as u32;
        for at in checker.start(&info) {
            if at.as_nanos() >= self.now {
                self.push(at.as_nanos(), What::Snapshot { checker: index });
            }
        }
        if checker.wants_incarnations() && !self.incarnations {
            self.incarnations = true;
            for i in 0..self.slots.len() {
                if let Some(node) = self.slots[i].node.as_deref() {
                    self.hosts[i].incarnation = node.incarnation();
                }
            }
        }
        self.datagrams |= checker.wants_datagrams();
        self.checkers.push(checker);
        self.wakes.push(u64::MAX);
        self.rearm_checker(index as usize);
    }

    /// Queues a snapshot for checker `c` at its pending judgement, unless one is queued
    /// at or before it.
    fn rearm_checker(&mut self, c: usize) {
        if let Some(at) = self.checkers[c].pending() {
            let at = at.as_nanos().max(self.now);
            if at < self.wakes[c] {
                self.wakes[c] = at;
                self.push(at, What::Snapshot { checker: c as u32 });
            }
        }
    }

    /// Hands `observation` of a member's election state to every checker. The simulator
    /// reports every member's own after each of its inputs (when it changed) in runs with
    /// voters; a test may add its own.
    pub fn observe(&mut self, observation: &Observation) {
        let mut findings = std::mem::take(&mut self.findings);
        for c in 0..self.checkers.len() {
            self.checkers[c].observe(observation, &mut findings);
            self.report(c, &mut findings);
        }
        self.findings = findings;
    }

    /// Tells the checkers that read datagrams of one from slot `from` to slot `to` (`None`:
    /// to no member): its size when it is sent, and what it holds when it is an election
    /// message, sent or (`delivered`) about to be handled.
    fn tell_datagram(&mut self, from: u32, to: Option<u32>, payload: &[u8], delivered: bool) {
        let at = self.now();
        let sender = self.slots[from as usize].id;
        let election = match to {
            Some(to) if self.elects => {
                let reader = if delivered { to } else { from };
                let c = &self.hosts[reader as usize].config.cluster;
                wire::inspect_election(payload, c.cluster_id, c.max_datagram)
                    .map(|(_, m)| (self.slots[to as usize].id, m))
            }
            _ => None,
        };
        let mut findings = std::mem::take(&mut self.findings);
        for c in 0..self.checkers.len() {
            if !self.checkers[c].wants_datagrams() {
                continue;
            }
            if !delivered {
                self.checkers[c].sent(at, sender, payload.len(), &mut findings);
            }
            if let Some((receiver, message)) = &election {
                self.checkers[c].election(at, sender, *receiver, message, delivered, &mut findings);
            }
            self.report(c, &mut findings);
        }
        self.findings = findings;
    }

    /// The earliest judgement a checker still owes, if any.
    pub fn pending_judgement(&self) -> Option<Instant> {
        self.checkers.iter().filter_map(|c| c.pending()).min()
    }

    /// Runs until no checker owes a judgement (every deadline of the run is past and
    /// judged), or until `limit`; returns whether every judgement was made. The clock then
    /// reads the time of the last judgement, or `limit`.
    pub fn run_until_judged(&mut self, limit: Instant) -> bool {
        loop {
            let Some(due) = self.checkers.iter().filter_map(|c| c.pending()).max() else { return true };
            if due > limit {
                self.run_until(limit);
                return self.checkers.iter().all(|c| c.pending().is_none());
            }
            let before = self.now;
            self.run_until(due);
            if self.now == before && self.checkers.iter().filter_map(|c| c.pending()).max() == Some(due) {
                // A checker keeps owing a judgement at a time already reached: it never makes it.
                return false;
            }
        }
    }

    #[inline]
    fn push(&mut self, at: u64, what: What) {
        self.queue.push(at, what);
    }

    /// The global virtual time.
    pub fn now(&self) -> Instant {
        Instant::from_nanos(self.now)
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The members' ids, in slot order.
    pub fn ids(&self) -> Vec<NodeId> {
        self.slots.iter().map(|s| s.id).collect()
    }

    /// The address of member `id`.
    pub fn addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.slot(id).map(|i| self.addrs[i as usize])
    }

    /// Member `id`'s node, if its process runs.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.slot(id).and_then(|i| self.slots[i as usize].node.as_deref())
    }

    /// Whether member `id`'s process runs.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.node(id).is_some()
    }

    /// The durable bytes on member `id`'s disk.
    pub fn disk(&self, id: NodeId) -> Option<&[u8]> {
        self.slot(id).and_then(|i| self.hosts[i as usize].disk.as_deref())
    }

    /// Member `id`'s clock reading now (its `now`).
    pub fn local_now(&mut self, id: NodeId) -> Option<Instant> {
        let i = self.slot(id)? as usize;
        let now = self.now;
        Some(Instant::from_nanos(self.hosts[i].clock.local(now)))
    }

    /// Member `id`'s clock: its drift in parts per million, and whether it ever stepped
    /// (what an [`Observation`] of its lease needs).
    pub fn clock(&self, id: NodeId) -> Option<(f64, bool)> {
        let clock = &self.hosts[self.slot(id)? as usize].clock;
        Some((clock.drift_ppm(), clock.stepped))
    }

    /// Counters so far.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// The trace hash so far.
    pub fn trace_hash(&self) -> u64 {
        self.hasher.finish()
    }

    /// The records so far.
    ///
    /// # Panics
    ///
    /// If the run does not keep them all: build it with `.trace(TraceMode::Record)`.
    #[track_caller]
    pub fn records(&self) -> &[TraceRecord] {
        all_records(self.mode, &self.records)
    }

    /// Every event the members emitted so far: `(time, member, event)`, in order. (A
    /// [`Checker`] sees each as it happens.)
    ///
    /// # Panics
    ///
    /// If the run keeps no records (`TraceMode::HashOnly`).
    #[track_caller]
    pub fn events(&self) -> impl Iterator<Item = (Instant, NodeId, &Event)> + '_ {
        events_of(self.mode, &self.records)
    }

    /// The violations so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The fault plan.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    fn slot(&self, id: NodeId) -> Option<u32> {
        self.by_id.get(&id).copied()
    }

    /// Runs until the queue is empty or the next event is after `until`; the clock then
    /// reads `until`.
    pub fn run_until(&mut self, until: Instant) {
        let until = until.as_nanos();
        while let Some((at, what)) = self.queue.pop_until(until) {
            self.process(at, what);
        }
        self.now = self.now.max(until);
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now.saturating_add(nanos(duration));
        self.run_until(Instant::from_nanos(until));
    }

    /// Processes the next event; returns its time, or `None` if nothing is queued.
    pub fn step(&mut self) -> Option<Instant> {
        let (at, what) = self.queue.pop()?;
        self.process(at, what);
        Some(Instant::from_nanos(self.now))
    }

    fn process(&mut self, at: u64, what: What) {
        self.now = self.now.max(at);
        self.stats.steps += 1;
        match what {
            What::Arrive { to, from, payload, sent } => self.arrive(to, from, payload, sent),
            What::Handle { to, from, payload, sent, life } => {
                if self.slots[to as usize].node.is_some() && self.slots[to as usize].life == life {
                    self.deliver(to, from, payload, sent);
                } else {
                    self.dropped(from, Some(to), &payload, DropReason::Down);
                }
            }
            What::Timer { node, life } => self.timer(node, life, at),
            What::Fault { index } => {
                let fault = self.plan.steps[index as usize].fault.clone();
                self.apply(fault);
            }
            What::Join { node, life } => {
                if self.slots[node as usize].life == life && self.slots[node as usize].node.is_some() {
                    let seeds = self.seeds_for(node);
                    self.interact(node, |n, now| {
                        // Joining only queues datagrams: it has nothing to refuse.
                        let _ = n.handle_command(now, Command::Join(seeds));
                    });
                }
            }
            What::Snapshot { checker } => {
                let c = checker as usize;
                if self.wakes[c] <= at {
                    self.wakes[c] = u64::MAX;
                }
                let snapshot = self.snapshot();
                let mut findings = std::mem::take(&mut self.findings);
                self.checkers[c].snapshot(&snapshot, &mut findings);
                self.report(c, &mut findings);
                self.findings = findings;
            }
            What::Work(due) => self.work(at, due),
        }
    }

    /// Gives member `id` an application command now (a test's workload).
    pub fn command(&mut self, id: NodeId, command: Command) -> Result<(), Error> {
        let i = self.slot(id).ok_or(Error::UnknownMember(id))?;
        if self.slots[i as usize].node.is_none() {
            return Err(Error::NotRunning(id));
        }
        let mut result = Ok(());
        self.interact(i, |n, now| result = n.handle_command(now, command));
        result.map_err(Error::Core)
    }

    /// Every member's view now.
    pub fn snapshot(&self) -> ClusterSnapshot {
        ClusterSnapshot {
            at: Instant::from_nanos(self.now),
            nodes: self
                .slots
                .iter()
                .map(|s| NodeSnapshot {
                    id: s.id,
                    up: s.node.is_some(),
                    view: s.node.as_ref().map(|n| n.members().map(|m| (m.id, m.state)).collect()).unwrap_or_default(),
                    term: s.node.as_ref().map_or(0, |n| n.term()),
                    leader: s.node.as_ref().and_then(|n| n.leader()),
                })
                .collect(),
        }
    }

    /// Turns what checker `checker` just found into violations, and queues the snapshot
    /// its next pending judgement needs.
    fn report(&mut self, checker: usize, findings: &mut Vec<Finding>) {
        let name = self.checkers[checker].name();
        for f in findings.drain(..) {
            self.violation(name, f);
        }
        self.rearm_checker(checker);
    }

    fn violation(&mut self, checker: &'static str, finding: Finding) {
        self.violations.push(Violation {
            checker,
            seed: self.seed,
            at: finding.at,
            message: finding.message,
            plan: self.plan_text.clone(),
            replay: self.replay.clone(),
        });
    }
}
