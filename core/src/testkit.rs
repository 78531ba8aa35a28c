//! A small in-crate cluster harness for tests: real nodes, a seeded lossy network with a
//! fixed latency, and virtual time that jumps to the next wakeup instead of sleeping.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::wire::{self, MessageKind};
use crate::{
    Command, Config, Durable, Event, InitialClusterState, Instant, MemberState, Node, NodeConfig, NodeId, Output,
    Transmit,
};

/// The address of member `i`.
pub(crate) fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, (i / 250) as u8, (i % 250) as u8 + 1)), 7946)
}

struct InFlight {
    at: Instant,
    seq: u64,
    to: usize,
    from: SocketAddr,
    payload: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One observed event: when, who saw it, what.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) at: Instant,
    pub(crate) observer: NodeId,
    pub(crate) event: Event,
}

pub(crate) struct Cluster {
    pub(crate) now: Instant,
    pub(crate) config: Config,
    nodes: Vec<Option<Node>>,
    durable: Vec<Option<Durable>>,
    /// A paused member handles nothing until this instant; its input waits.
    paused_until: Vec<Instant>,
    by_addr: BTreeMap<SocketAddr, usize>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    rng: ChaCha8Rng,
    seq: u64,
    pub(crate) latency: Duration,
    pub(crate) loss: f64,
    /// Loss on one direction of a link (from, to).
    pub(crate) link_loss: BTreeMap<(usize, usize), f64>,
    pub(crate) events: Vec<Seen>,
    pub(crate) max_transmit: usize,
    /// Datagrams that named the member they were for (`Transmit::to_id`).
    pub(crate) named: u64,
    /// Datagrams that named no member, by kind.
    pub(crate) unnamed: BTreeMap<MessageKind, u64>,
    /// Datagrams whose `to_id` is not the member at their address: (from, to_id, to).
    pub(crate) misnamed: Vec<(usize, NodeId, SocketAddr)>,
    /// Datagrams sent to a crashed member: (when, from, to, payload).
    pub(crate) to_crashed: Vec<(Instant, usize, usize, Vec<u8>)>,
    /// Datagrams sent to an address outside the cluster (a process a test drives by
    /// hand): (from, to, payload).
    outside: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    restarts: u64,
}

impl Cluster {
    /// `n` members that all join through member 0 at time zero.
    pub(crate) fn new(n: usize, config: Config, seed: u64) -> Self {
        let mut cluster = Self {
            now: Instant::ZERO,
            config,
            nodes: Vec::new(),
            durable: vec![None; n],
            paused_until: vec![Instant::ZERO; n],
            by_addr: (0..n).map(|i| (addr(i), i)).collect(),
            outside: Vec::new(),
            in_flight: BinaryHeap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            seq: 0,
            latency: Duration::from_millis(1),
            loss: 0.0,
            link_loss: BTreeMap::new(),
            events: Vec::new(),
            max_transmit: 0,
            named: 0,
            unnamed: BTreeMap::new(),
            misnamed: Vec::new(),
            to_crashed: Vec::new(),
            restarts: 0,
        };
        for i in 0..n {
            let seed = cluster.rng.random();
            let node =
                Node::new(NodeConfig::new(NodeId(i as u64), addr(i), cluster.config.clone(), seed), Instant::ZERO)
                    .expect("valid config");
            cluster.nodes.push(Some(node));
        }
        for i in 1..n {
            cluster.command(i, Command::Join(vec![addr(0)]));
        }
        cluster.drain_all();
        cluster
    }

    pub(crate) fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("member is running")
    }

    pub(crate) fn node_mut(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().expect("member is running")
    }

    pub(crate) fn is_up(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn command(&mut self, i: usize, command: Command) {
        let now = self.now;
        self.node_mut(i).handle_command(now, command).expect("command accepted");
        self.drain(i);
    }

    pub(crate) fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    /// Restarts a crashed member with its disk (the last persisted state) or without it.
    pub(crate) fn restart(&mut self, i: usize, keep_disk: bool) {
        self.restart_told(i, keep_disk, None);
    }

    /// As `restart`, with what the operator says of the cluster it starts into.
    pub(crate) fn restart_told(&mut self, i: usize, keep_disk: bool, state: Option<InitialClusterState>) {
        assert!(self.nodes[i].is_none(), "crash it first");
        self.restarts += 1;
        let mut config = NodeConfig::new(NodeId(i as u64), addr(i), self.config.clone(), 1000 + self.restarts);
        config.durable = if keep_disk { self.durable[i].clone() } else { None };
        config.initial_cluster_state = state;
        self.nodes[i] = Some(Node::new(config, self.now).expect("valid config"));
        self.command(i, Command::Join(vec![addr((i + 1) % self.len())]));
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub(crate) fn cut(&mut self, a: usize, b: usize) {
        self.link_loss.insert((a, b), 1.0);
        self.link_loss.insert((b, a), 1.0);
    }

    /// Cuts member `i` off from every other.
    pub(crate) fn isolate(&mut self, i: usize) {
        for other in 0..self.len() {
            self.cut(i, other);
        }
    }

    pub(crate) fn pause(&mut self, i: usize, duration: Duration) {
        self.paused_until[i] = self.now + duration;
    }

    /// The datagrams sent to `to`, an address outside the cluster, since the last call:
    /// (sender's address, payload).
    pub(crate) fn take_sent_to(&mut self, to: SocketAddr) -> Vec<(SocketAddr, Vec<u8>)> {
        let (taken, kept) = std::mem::take(&mut self.outside).into_iter().partition(|(_, t, _)| *t == to);
        self.outside = kept;
        taken.into_iter().map(|(from, _, payload)| (from, payload)).collect()
    }

    /// Injects a raw datagram to member `to`, as if from `from`.
    pub(crate) fn inject(&mut self, to: usize, from: SocketAddr, payload: Vec<u8>) {
        self.seq += 1;
        self.in_flight.push(Reverse(InFlight { at: self.now, seq: self.seq, to, from, payload }));
    }

    /// Runs until `until`, delivering datagrams and firing timers in time order.
    pub(crate) fn run_until(&mut self, until: Instant) {
        let mut steps = 0u64;
        loop {
            steps += 1;
            assert!(steps < 50_000_000, "drive loop did not settle");
            let next_packet = self.in_flight.peek().map(|Reverse(p)| p.at);
            let next_timer = self.next_timer();
            let next = match (next_packet, next_timer) {
                (Some(a), Some((b, _))) => a.min(b),
                (Some(a), None) => a,
                (None, Some((b, _))) => b,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_packet == Some(next) {
                let Reverse(packet) = self.in_flight.pop().expect("peeked");
                let to = packet.to;
                if self.paused_until[to] > self.now {
                    // A stalled process reads its socket later.
                    self.seq += 1;
                    let at = self.paused_until[to];
                    self.in_flight.push(Reverse(InFlight { at, seq: self.seq, ..packet }));
                    continue;
                }
                let now = self.now;
                if let Some(node) = self.nodes[to].as_mut() {
                    let _ = node.handle_datagram(now, packet.from, &packet.payload);
                    self.drain(to);
                }
            } else if let Some((_, i)) = next_timer {
                let now = self.now;
                self.node_mut(i).handle_timeout(now);
                self.drain(i);
            }
        }
        self.now = self.now.max(until);
    }

    pub(crate) fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn next_timer(&self) -> Option<(Instant, usize)> {
        let mut best: Option<(Instant, usize)> = None;
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            let Some(t) = node.poll_timeout() else { continue };
            let t = t.max(self.paused_until[i]).max(self.now);
            if best.is_none_or(|(b, _)| t < b) {
                best = Some((t, i));
            }
        }
        best
    }

    fn drain_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                self.drain(i);
            }
        }
    }

    fn drain(&mut self, i: usize) {
        let observer = NodeId(i as u64);
        while let Some(output) = self.nodes[i].as_mut().and_then(Node::poll_output) {
            match output {
                Output::Persist(d) => self.durable[i] = Some(d),
                Output::Event(event) => self.events.push(Seen { at: self.now, observer, event }),
                Output::Transmit(t) => {
                    self.max_transmit = self.max_transmit.max(t.payload.len());
                    self.count_destination(i, &t);
                    let Some(&to) = self.by_addr.get(&t.to) else {
                        self.outside.push((addr(i), t.to, t.payload));
                        continue;
                    };
                    if self.nodes[to].is_none() {
                        self.to_crashed.push((self.now, i, to, t.payload.clone()));
                    }
                    let loss = self.link_loss.get(&(i, to)).copied().unwrap_or(self.loss);
                    if loss > 0.0 && self.rng.random_bool(loss.min(1.0)) {
                        continue;
                    }
                    self.seq += 1;
                    let at = self.now + self.latency;
                    self.in_flight.push(Reverse(InFlight { at, seq: self.seq, to, from: addr(i), payload: t.payload }));
                }
            }
        }
    }

    /// Counts whether `t`, from member `from`, names its member, and whether rightly (member
    /// `i` runs as `NodeId(i)` at `addr(i)`).
    fn count_destination(&mut self, from: usize, t: &Transmit) {
        match t.to_id {
            Some(id) => {
                self.named += 1;
                if self.by_addr.get(&t.to).is_some_and(|&i| NodeId(i as u64) != id) {
                    self.misnamed.push((from, id, t.to));
                }
            }
            None => {
                let max = self.config.max_datagram;
                let kind = wire::inspect(&t.payload, self.config.cluster_id, max).expect("a member's own datagram").1;
                *self.unnamed.entry(kind).or_default() += 1;
            }
        }
    }

    /// Whether every running member sees every running member alive and no other as live.
    pub(crate) fn converged(&self) -> bool {
        let up: Vec<usize> = (0..self.len()).filter(|&i| self.is_up(i)).collect();
        for &i in &up {
            self.node(i).assert_view_consistent();
        }
        up.iter().all(|&i| {
            let node = self.node(i);
            let live: Vec<u64> = node.members().filter(|m| m.state.is_live()).map(|m| m.id.0).collect();
            live.len() == up.len()
                && up.iter().all(|&j| node.member(NodeId(j as u64)).is_some_and(|m| m.state == MemberState::Alive))
        })
    }

    /// The events matching `f`, as (observer, event) pairs.
    pub(crate) fn seen(&self, f: impl Fn(&Event) -> bool) -> Vec<&Seen> {
        self.events.iter().filter(|s| f(&s.event)).collect()
    }

    /// Members that emitted MemberFailed about `about`.
    pub(crate) fn failed_verdicts(&self, about: NodeId) -> Vec<NodeId> {
        self.events
            .iter()
            .filter(|s| matches!(&s.event, Event::MemberFailed(m) if m.id == about))
            .map(|s| s.observer)
            .collect()
    }

    pub(crate) fn durable(&self, i: usize) -> Option<&Durable> {
        self.durable[i].as_ref()
    }
}
