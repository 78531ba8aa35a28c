//! What lies between the hosts: the network that carries their datagrams (cuts, loss,
//! latency, reordering, duplication, corruption, stale copies), and the plan's faults,
//! applied to the network, the processes and the clocks.

use std::net::SocketAddr;

use conclave_core::{wire, Command, Durable, Instant, MessageKind, NodeId, Transmit};

use super::{Sim, What};
use crate::check::{Finding, IncarnationChange};
use crate::clock::Clock;
use crate::fault::{Disk, Fault};
use crate::network::{nanos, sample_latency, LinkParams, LinkSelector, Network, SimRng};
use crate::trace::{fingerprint, tag, DropReason, TraceMode, TraceRecord};

impl Sim {
    #[inline]
    fn slot_of_addr(&self, addr: SocketAddr) -> Option<u32> {
        // Built clusters encode the slot in the address; check it before the map.
        if let SocketAddr::V4(a) = addr {
            let [x, b, c, d] = a.ip().octets();
            if x == 127 && b >= 1 {
                let i = (u32::from(b - 1) << 16) | (u32::from(c) << 8) | u32::from(d);
                if self.addrs.get(i as usize) == Some(&addr) {
                    return Some(i);
                }
            }
        }
        self.by_addr.get(&addr).copied()
    }

    fn kind_of(&self, slot: u32, payload: &[u8]) -> Option<MessageKind> {
        let c = &self.hosts[slot as usize].config.cluster;
        wire::inspect(payload, c.cluster_id, c.max_datagram).ok().map(|(_, kind)| kind)
    }

    pub(super) fn dropped(&mut self, from: u32, to: Option<u32>, payload: &[u8], reason: DropReason) {
        match reason {
            DropReason::Partition => self.stats.dropped_partition += 1,
            DropReason::Loss => self.stats.dropped_loss += 1,
            DropReason::Down => self.stats.dropped_down += 1,
            DropReason::NoRoute => self.stats.dropped_no_route += 1,
        }
        let h = &mut self.hasher;
        h.lane(tag::DROPPED);
        h.lane(self.now);
        h.lane(self.slots[from as usize].id.0);
        h.lane(to.map_or(u64::MAX, |t| self.slots[t as usize].id.0));
        h.lane(reason as u64);
        h.lane(fingerprint(payload));
        if self.mode == TraceMode::Record {
            let record = TraceRecord::Dropped {
                at: Instant::from_nanos(self.now),
                from: self.slots[from as usize].id,
                to: to.map(|t| self.slots[t as usize].id),
                kind: self.kind_of(from, payload),
                reason,
            };
            self.records.push(record);
        }
    }

    /// Puts a member's datagram on the network.
    pub(super) fn send(&mut self, from: u32, transmit: Transmit) {
        // A simulated network routes by address only, as UDP does: `to_id` is not used.
        let Transmit { to, mut payload, .. } = transmit;
        let to = self.slot_of_addr(to);
        if self.datagrams {
            self.tell_datagram(from, to, &payload, false);
        }
        let Some(to) = to else {
            self.dropped(from, None, &payload, DropReason::NoRoute);
            return;
        };
        if self.net.is_cut(from, to) {
            self.dropped(from, Some(to), &payload, DropReason::Partition);
            return;
        }
        let params = self.net.params(from, to).clone();
        if self.rng.chance(params.loss) {
            self.dropped(from, Some(to), &payload, DropReason::Loss);
            return;
        }
        let mut delay = sample_latency(&params.latency, &mut self.rng);
        if self.rng.chance(params.reorder) {
            delay += self.rng.below(nanos(params.reorder_delay) + 1);
        }
        if self.rng.chance(params.corrupt) {
            corrupt(&mut payload, &mut self.rng);
            self.stats.corrupted += 1;
        }
        if self.rng.chance(params.duplicate) {
            let again = sample_latency(&params.latency, &mut self.rng);
            self.stats.duplicated += 1;
            let copy = payload.clone();
            self.push(self.now + again, What::Arrive { to, from, payload: copy, sent: self.now });
        }
        if self.rng.chance(params.stale) {
            let later = self.rng.below(nanos(params.stale_delay) + 1);
            self.stats.stale += 1;
            let copy = payload.clone();
            self.push(self.now + delay + later, What::Arrive { to, from, payload: copy, sent: self.now });
        }
        self.push(self.now + delay, What::Arrive { to, from, payload, sent: self.now });
    }

    pub(super) fn arrive(&mut self, to: u32, from: u32, payload: Vec<u8>, sent: u64) {
        let now = self.now;
        let slot = &mut self.slots[to as usize];
        if slot.node.is_none() {
            self.dropped(from, Some(to), &payload, DropReason::Down);
            return;
        }
        if slot.slow > 0 || now < slot.busy_until {
            let done = now.max(slot.busy_until) + slot.slow;
            slot.busy_until = done;
            let life = slot.life;
            self.push(done, What::Handle { to, from, payload, sent, life });
            return;
        }
        self.deliver(to, from, payload, sent);
    }

    pub(super) fn deliver(&mut self, to: u32, from: u32, payload: Vec<u8>, sent: u64) {
        let from_addr = self.addrs[from as usize];
        if self.datagrams && self.elects {
            self.tell_datagram(from, Some(to), &payload, true);
        }
        let mut result = Ok(());
        self.interact(to, |n, now| result = n.handle_datagram(now, from_addr, &payload));
        self.stats.delivered += 1;
        let h = &mut self.hasher;
        h.lane(if result.is_ok() { tag::DELIVERED } else { tag::REJECTED });
        h.lane(self.now);
        h.lane(sent);
        h.lane(self.slots[from as usize].id.0);
        h.lane(self.slots[to as usize].id.0);
        h.lane(payload.len() as u64);
        h.lane(fingerprint(&payload));
        if result.is_err() {
            self.stats.rejected += 1;
        }
        if self.mode == TraceMode::Record {
            let record = TraceRecord::Delivered {
                at: Instant::from_nanos(self.now),
                sent: Instant::from_nanos(sent),
                from: self.slots[from as usize].id,
                to: self.slots[to as usize].id,
                kind: self.kind_of(to, &payload),
                len: payload.len(),
                rejected: result.err().map(|e| e.to_string()),
            };
            self.records.push(record);
        }
    }

    fn ids_to_slots(&self, ids: &[NodeId]) -> Vec<u32> {
        ids.iter().filter_map(|&id| self.slot(id)).collect()
    }

    /// Applies `fault` now (the plan's steps go through here too).
    pub fn apply(&mut self, fault: Fault) {
        self.stats.faults += 1;
        self.hasher.lane(tag::FAULT);
        self.hasher.lane(self.now);
        self.hasher.bytes(serde_json::to_string(&fault).unwrap_or_default().as_bytes());
        let mut findings = std::mem::take(&mut self.findings);
        let at = self.now();
        for c in 0..self.checkers.len() {
            self.checkers[c].fault(at, &fault, &mut findings);
            self.report(c, &mut findings);
        }
        self.findings = findings;
        let now = self.now;
        match &fault {
            Fault::Crash(id) => {
                if let Some(i) = self.slot(*id) {
                    self.stop(i);
                }
            }
            Fault::CrashAtPersist(id) => {
                if let Some(i) = self.slot(*id) {
                    self.hosts[i as usize].crash_at_persist = self.slots[i as usize].node.is_some();
                }
            }
            Fault::Restart { node, disk } => {
                if let Some(i) = self.slot(*node) {
                    self.stop(i);
                    let host = &mut self.hosts[i as usize];
                    host.restarts += 1;
                    if *disk == Disk::Amnesia {
                        host.disk = None;
                    }
                    let durable = host.disk.as_deref().and_then(|b| Durable::decode(b).ok());
                    match self.start(i, durable, IncarnationChange::Restarted(*disk)) {
                        Ok(()) => {
                            let seeds = self.seeds_for(i);
                            self.interact(i, |n, now| {
                                // Joining only queues datagrams: it has nothing to refuse.
                                let _ = n.handle_command(now, Command::Join(seeds));
                            });
                        }
                        Err(e) => self.violation(
                            "restart",
                            Finding { at: self.now(), message: format!("{node} could not restart: {e}") },
                        ),
                    }
                }
            }
            Fault::Pause { node, duration } => {
                if let Some(i) = self.slot(*node) {
                    let slot = &mut self.slots[i as usize];
                    slot.busy_until = slot.busy_until.max(now + nanos(*duration));
                }
            }
            Fault::Slow { node, per_message } => {
                if let Some(i) = self.slot(*node) {
                    self.slots[i as usize].slow = nanos(*per_message);
                }
            }
            Fault::Partition(groups) => {
                // Unlisted members share group 0; listed groups are 1, 2, ...
                self.net.group.iter_mut().for_each(|g| *g = 0);
                for (g, members) in groups.iter().enumerate() {
                    for i in self.ids_to_slots(members) {
                        self.net.group[i as usize] = g as u32 + 1;
                    }
                }
                self.net.partitioned = true;
            }
            Fault::OneWay { from, to } => {
                let (from, to) = (self.ids_to_slots(from), self.ids_to_slots(to));
                for &a in &from {
                    for &b in &to {
                        self.net.cut.insert((a, b));
                    }
                }
            }
            Fault::CutLinks(links) => {
                for &(a, b) in links {
                    if let (Some(a), Some(b)) = (self.slot(a), self.slot(b)) {
                        self.net.cut.insert((a, b));
                        self.net.cut.insert((b, a));
                    }
                }
            }
            Fault::Heal => self.net.heal(),
            Fault::SetLinks { links, params } => self.set_links(links, params),
            Fault::ClockOffset { node, offset_nanos } => self.change_clock(*node, |c| c.set_offset(*offset_nanos)),
            Fault::ClockDrift { node, ppm } => self.change_clock(*node, |c| c.set_drift(now, *ppm)),
            Fault::ClockJump { node, nanos } => self.change_clock(*node, |c| c.jump(*nanos)),
        }
        if self.mode == TraceMode::Record {
            self.records.push(TraceRecord::Fault { at: self.now(), fault });
        }
    }

    fn set_links(&mut self, links: &LinkSelector, params: &LinkParams) {
        let n = self.slots.len() as u32;
        let set = |pairs: &mut dyn Iterator<Item = (u32, u32)>, net: &mut Network| {
            for pair in pairs {
                net.overrides.insert(pair, params.clone());
            }
        };
        match *links {
            LinkSelector::All => {
                self.net.default = params.clone();
                self.net.overrides.clear();
            }
            LinkSelector::Between(a, b) => {
                if let (Some(a), Some(b)) = (self.slot(a), self.slot(b)) {
                    set(&mut [(a, b), (b, a)].into_iter(), &mut self.net);
                }
            }
            LinkSelector::OneWay { from, to } => {
                if let (Some(a), Some(b)) = (self.slot(from), self.slot(to)) {
                    set(&mut std::iter::once((a, b)), &mut self.net);
                }
            }
            LinkSelector::From(a) => {
                if let Some(a) = self.slot(a) {
                    set(&mut (0..n).filter(|&b| b != a).map(|b| (a, b)), &mut self.net);
                }
            }
            LinkSelector::To(b) => {
                if let Some(b) = self.slot(b) {
                    set(&mut (0..n).filter(|&a| a != b).map(|a| (a, b)), &mut self.net);
                }
            }
        }
    }

    fn change_clock(&mut self, id: NodeId, change: impl FnOnce(&mut Clock)) {
        let Some(i) = self.slot(id) else { return };
        let now = self.now;
        let clock = &mut self.hosts[i as usize].clock;
        // While the clock was not skewed its readings were not taken: catch up with the
        // latest one handed out (now), which the changed clock must not go back past.
        clock.local(now);
        change(clock);
        let slot = &mut self.slots[i as usize];
        slot.skewed = true;
        // The queued wake-up was computed with the old clock: recompute it.
        slot.timer_at = u64::MAX;
        if slot.node.is_some() {
            self.arm(i);
        }
    }
}

/// Flips 1 to 3 bits after the magic and version bytes.
fn corrupt(payload: &mut [u8], rng: &mut SimRng) {
    if payload.is_empty() {
        return;
    }
    let start = if payload.len() > 5 { 5 } else { 0 };
    let bits = ((payload.len() - start) * 8) as u64;
    let flips = 1 + rng.below(3);
    let mut done = Vec::with_capacity(3);
    for _ in 0..flips {
        let bit = rng.below(bits);
        // Flipping the same bit twice would undo the damage.
        if done.contains(&bit) {
            continue;
        }
        done.push(bit);
        payload[start + (bit / 8) as usize] ^= 1 << (bit % 8);
    }
}
