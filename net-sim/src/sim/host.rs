//! One member's host: its process (the `Node`), timers, clock and disk; what the engine
//! does with the process's outputs; and its election state and incarnation as the
//! checkers see them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::panic::{catch_unwind, AssertUnwindSafe};

use conclave_core::{Durable, Instant, Node, NodeConfig, NodeId, Output};

use super::{Sim, What};
use crate::check::{Finding, IncarnationChange, Observation};
use crate::clock::Clock;
use crate::error::Error;
use crate::trace::{hash_event, tag, TraceMode, TraceRecord};

/// A member's term, leader, whether it holds the lease, and when the lease ends (global
/// time), as last reported to the checkers.
pub(super) type ElectionState = (u64, Option<NodeId>, bool, Option<Instant>);

/// The port every simulated member listens on.
pub const SIM_PORT: u16 = 7946;

/// The address of the `index`-th member (from 0) of a built cluster: `127.b.c.d:7946` with
/// the index in the low 24 bits above `127.1.0.0`. Loopback, and never bound: the fast
/// engine sends nothing on a real socket.
pub fn sim_addr(index: usize) -> SocketAddr {
    let i = index as u32;
    let ip = Ipv4Addr::new(127, (1 + (i >> 16)) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::V4(SocketAddrV4::new(ip, SIM_PORT))
}

/// The id of the `index`-th member (from 0) of a built cluster: `n1`, `n2`, ...
pub fn sim_id(index: usize) -> NodeId {
    NodeId(index as u64 + 1)
}

/// A member's seed for its `restart`-th start: splitmix64 of the run's seed, its id and the
/// restart count, so each process of each member draws its own stream.
pub(super) fn node_seed(run_seed: u64, id: NodeId, restart: u32) -> u64 {
    let mut z = run_seed ^ id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(restart) << 48);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the engine reads of a member at every event: one cache line, and a thousand of
/// them fit in a core's second-level cache beside the members' own state. (Every event
/// also reads the sender's slot or address, so a sparse layout costs a miss per event.)
#[repr(C, align(64))]
pub(super) struct Slot {
    pub(super) node: Option<Box<Node>>,
    /// The global time of the timer event in the queue that counts (`u64::MAX`: none).
    pub(super) timer_at: u64,
    /// The member's latest `poll_timeout`, in its local time (`u64::MAX`: none; a wake-up
    /// then is never queued, as with none).
    pub(super) deadline: u64,
    /// Until when the process is busy (paused, or working through a slow backlog).
    pub(super) busy_until: u64,
    /// Processing delay per datagram (a slow member).
    pub(super) slow: u64,
    pub(super) last_fire: u64,
    pub(super) id: NodeId,
    /// Bumped at every crash and start, so events of an older process are ignored.
    pub(super) life: u32,
    /// Timer wake-ups at the same global instant in a row (a core that never advances
    /// its deadline would spin the engine forever).
    pub(super) spins: u16,
    /// Whether the member's clock was ever changed (an offset, a drift, a jump): only then
    /// is its host's clock read; until then its readings are the global time.
    pub(super) skewed: bool,
}

/// The rest of a member: read when it starts, restarts, persists or changes its clock.
pub(super) struct Host {
    pub(super) clock: Clock,
    /// The member's own incarnation, as last read (when a checker wants it).
    pub(super) incarnation: u64,
    /// Its election state as last reported to the checkers: term, leader, leaseholder.
    pub(super) election: Option<ElectionState>,
    pub(super) restarts: u32,
    /// Whether its process dies at its next durable write ([`Fault::CrashAtPersist`](crate::Fault::CrashAtPersist)).
    pub(super) crash_at_persist: bool,
    pub(super) config: NodeConfig,
    pub(super) disk: Option<Vec<u8>>,
}

/// No deadline (see [`Slot::deadline`]).
pub(super) const NONE: u64 = u64::MAX;

impl Sim {
    pub(super) fn seeds_for(&self, node: u32) -> Vec<SocketAddr> {
        self.seed_slots.iter().filter(|&&s| s != node).map(|&s| self.addrs[s as usize]).collect()
    }

    pub(super) fn timer(&mut self, i: u32, life: u32, at: u64) {
        let now = self.now;
        let slot = &mut self.slots[i as usize];
        if slot.life != life || slot.node.is_none() || slot.timer_at != at {
            return; // a stale wake-up: a newer one replaced it
        }
        slot.timer_at = u64::MAX;
        if now < slot.busy_until {
            let busy = slot.busy_until;
            slot.timer_at = busy;
            self.push(busy, What::Timer { node: i, life });
            return;
        }
        let local = if slot.skewed { self.hosts[i as usize].clock.local(now) } else { now };
        if slot.deadline <= local {
            if slot.last_fire == now {
                slot.spins = slot.spins.saturating_add(1);
            } else {
                slot.spins = 0;
                slot.last_fire = now;
            }
            if slot.spins == 10_000 {
                let id = slot.id;
                self.violation(
                    "no-timer-livelock",
                    Finding {
                        at: Instant::from_nanos(now),
                        message: format!("{id}'s poll_timeout stays at or before its now after handle_timeout: the engine would spin forever; its timers now wait 1 ms"),
                    },
                );
            }
            self.stats.timers += 1;
            self.interact(i, |n, now| n.handle_timeout(now));
        } else {
            self.arm(i);
        }
    }

    /// Queues a wake-up for the member's latest deadline if it is earlier than the one queued.
    pub(super) fn arm(&mut self, i: u32) {
        let now = self.now;
        let slot = &mut self.slots[i as usize];
        if slot.deadline == NONE {
            return;
        }
        let deadline = slot.deadline;
        let mut at = if slot.skewed { self.hosts[i as usize].clock.global_at(deadline) } else { deadline }.max(now);
        if slot.spins >= 10_000 && slot.last_fire == now {
            at = now + 1_000_000;
        }
        if at < slot.timer_at {
            slot.timer_at = at;
            let life = slot.life;
            self.push(at, What::Timer { node: i, life });
        }
    }

    /// Calls into member `i`'s node at its local `now`, then acts on everything it output,
    /// re-arms its timer and observes its election state. A panic is a violation and stops
    /// the member's process.
    pub(super) fn interact(&mut self, i: u32, f: impl FnOnce(&mut Node, Instant)) {
        let now = self.now;
        #[cfg(feature = "tracing")]
        let _virtual_time = tracing::info_span!("sim", t = %Instant::from_nanos(now)).entered();
        let slot = &mut self.slots[i as usize];
        let Some(mut node) = slot.node.take() else { return };
        let local = Instant::from_nanos(if slot.skewed { self.hosts[i as usize].clock.local(now) } else { now });
        let mut outputs = std::mem::take(&mut self.outputs);
        let result = catch_unwind(AssertUnwindSafe(|| {
            f(&mut node, local);
            while let Some(output) = node.poll_output() {
                outputs.push(output);
            }
            node.poll_timeout()
        }));
        match result {
            Ok(deadline) => {
                let incarnation = node.incarnation();
                let slot = &mut self.slots[i as usize];
                slot.node = Some(node);
                slot.deadline = deadline.map_or(NONE, Instant::as_nanos);
                // A process armed to die at its next durable write dies at the first
                // `Persist`: that write and everything after it are lost.
                let dies_at = if self.hosts[i as usize].crash_at_persist {
                    outputs.iter().position(|o| matches!(o, Output::Persist(_)))
                } else {
                    None
                };
                // The write it dies at records the new incarnation: what went out before was
                // made before the bump (the core writes an incarnation before it gossips
                // it), so nothing advertised it.
                let unrecorded = dies_at.is_some_and(
                    |d| matches!(&outputs[d], Output::Persist(durable) if durable.incarnation == incarnation),
                );
                // Before the outputs: what a member sends advertises its incarnation.
                if self.incarnations && incarnation != self.hosts[i as usize].incarnation && !unrecorded {
                    self.hosts[i as usize].incarnation = incarnation;
                    self.tell_incarnation(i, incarnation, IncarnationChange::Bumped);
                }
                let kept = dies_at.unwrap_or(outputs.len());
                for output in outputs.drain(..).take(kept) {
                    self.output(i, output);
                }
                outputs.clear();
                if dies_at.is_some() {
                    self.hosts[i as usize].crash_at_persist = false;
                    let id = self.slots[i as usize].id;
                    self.apply(crate::Fault::Crash(id));
                }
                self.outputs = outputs;
                if self.elects {
                    self.observe_election(i);
                }
                self.arm(i);
            }
            Err(panic) => {
                outputs.clear();
                self.outputs = outputs;
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic payload".to_string());
                let id = self.slots[i as usize].id;
                self.hasher.lane(tag::PANICKED);
                self.hasher.lane(now);
                self.hasher.lane(id.0);
                if self.mode == TraceMode::Record {
                    self.records.push(TraceRecord::Panicked { at: self.now(), node: id, message: message.clone() });
                }
                self.violation(
                    "no-panic",
                    Finding { at: self.now(), message: format!("{id} panicked: {message}; its process was stopped") },
                );
                self.stop(i);
            }
        }
    }

    /// Reports member `i`'s election state to the checkers if it changed. A member that
    /// claims the lease makes every other member that last claimed it be read again first
    /// (a lease ends with time, not with an input), so the checker compares the present.
    fn observe_election(&mut self, i: u32) {
        let Some(state) = self.read_election(i) else { return };
        if self.hosts[i as usize].election == Some(state) {
            return;
        }
        if state.2 {
            for j in 0..self.slots.len() as u32 {
                if j != i && self.hosts[j as usize].election.is_some_and(|e| e.2) {
                    // Reported even when unchanged: its clock may have stepped meanwhile.
                    if let Some(other) = self.read_election(j) {
                        self.report_election(j, other);
                    }
                }
            }
        }
        self.report_election(i, state);
    }

    /// Member `i`'s term, leader, whether it holds the lease at its own now, and when the
    /// lease ends (global time).
    fn read_election(&mut self, i: u32) -> Option<ElectionState> {
        let now = self.now;
        let skewed = self.slots[i as usize].skewed;
        let local = if skewed { self.hosts[i as usize].clock.local(now) } else { now };
        let node = self.slots[i as usize].node.as_deref()?;
        let until = node.lease_until().map(|until| {
            let global =
                if skewed { self.hosts[i as usize].clock.global_at(until.as_nanos()) } else { until.as_nanos() };
            Instant::from_nanos(global)
        });
        Some((node.term(), node.leader(), node.is_leaseholder(Instant::from_nanos(local)), until))
    }

    fn report_election(&mut self, i: u32, (term, leader, leaseholder, lease_until): ElectionState) {
        self.hosts[i as usize].election = Some((term, leader, leaseholder, lease_until));
        let clock = &self.hosts[i as usize].clock;
        let observation = Observation {
            at: self.now(),
            node: self.slots[i as usize].id,
            term,
            leader,
            leaseholder,
            lease_until,
            drift_ppm: clock.drift_ppm(),
            clock_stepped: clock.stepped,
        };
        self.observe(&observation);
    }

    fn output(&mut self, i: u32, output: Output) {
        match output {
            Output::Transmit(t) => self.send(i, t),
            Output::Event(event) => {
                self.stats.events += 1;
                let id = self.slots[i as usize].id;
                self.hasher.lane(tag::EVENT);
                self.hasher.lane(self.now);
                self.hasher.lane(id.0);
                hash_event(&mut self.hasher, &event);
                let mut findings = std::mem::take(&mut self.findings);
                let at = self.now();
                for c in 0..self.checkers.len() {
                    self.checkers[c].event(at, id, &event, &mut findings);
                    self.report(c, &mut findings);
                }
                self.findings = findings;
                if self.workload.is_some() {
                    self.workload_event(i, &event);
                }
                if self.mode != TraceMode::HashOnly {
                    self.records.push(TraceRecord::Event { at: self.now(), node: id, event });
                }
            }
            Output::Persist(durable) => {
                let bytes = durable.encode();
                let id = self.slots[i as usize].id;
                self.hasher.lane(tag::PERSIST);
                self.hasher.lane(self.now);
                self.hasher.lane(id.0);
                self.hasher.bytes(&bytes);
                self.hosts[i as usize].disk = Some(bytes);
                if self.datagrams {
                    let at = self.now();
                    let mut findings = std::mem::take(&mut self.findings);
                    for c in 0..self.checkers.len() {
                        if self.checkers[c].wants_datagrams() {
                            self.checkers[c].persisted(at, id, &durable, &mut findings);
                            self.report(c, &mut findings);
                        }
                    }
                    self.findings = findings;
                }
                if self.mode == TraceMode::Record {
                    self.records.push(TraceRecord::Persist { at: self.now(), node: id, durable });
                }
            }
        }
    }

    fn tell_incarnation(&mut self, i: u32, incarnation: u64, change: IncarnationChange) {
        let id = self.slots[i as usize].id;
        let at = self.now();
        let mut findings = std::mem::take(&mut self.findings);
        for c in 0..self.checkers.len() {
            if self.checkers[c].wants_incarnations() {
                self.checkers[c].incarnation(at, id, incarnation, change, &mut findings);
                self.report(c, &mut findings);
            }
        }
        self.findings = findings;
    }

    /// Starts member `i`'s process with `durable` on its disk.
    pub(super) fn start(&mut self, i: u32, durable: Option<Durable>, change: IncarnationChange) -> Result<(), Error> {
        let now = self.now;
        let host = &mut self.hosts[i as usize];
        host.crash_at_persist = false;
        let slot = &mut self.slots[i as usize];
        let mut config = host.config.clone();
        config.durable = durable.clone();
        if host.restarts > 0 {
            config.seed = node_seed(config.seed, slot.id, host.restarts);
        }
        slot.life += 1;
        slot.timer_at = u64::MAX;
        slot.deadline = NONE;
        slot.busy_until = 0;
        slot.spins = 0;
        let local = Instant::from_nanos(host.clock.local(now));
        let id = slot.id;
        let node = Node::new(config, local).map_err(|e| Error::Start(id, e))?;
        let incarnation = node.incarnation();
        slot.node = Some(Box::new(node));
        self.hasher.lane(tag::STARTED);
        self.hasher.lane(now);
        self.hasher.lane(id.0);
        self.hasher.bytes(&durable.as_ref().map(Durable::encode).unwrap_or_default());
        if self.mode == TraceMode::Record {
            self.records.push(TraceRecord::Started { at: self.now(), node: id, durable });
        }
        if self.incarnations {
            self.hosts[i as usize].incarnation = incarnation;
            self.tell_incarnation(i, incarnation, change);
        }
        self.workload_started(i);
        self.interact(i, |_, _| ());
        Ok(())
    }

    /// Stops member `i`'s process: its node, timers and input backlog are gone.
    pub(super) fn stop(&mut self, i: u32) {
        self.workload_stopped(i);
        self.hosts[i as usize].election = None;
        let slot = &mut self.slots[i as usize];
        slot.node = None;
        slot.life += 1;
        slot.timer_at = u64::MAX;
        slot.deadline = NONE;
        slot.busy_until = 0;
    }
}
