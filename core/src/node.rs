//! [`Node`]: one member's whole protocol state.
//!
//! # How a member keeps its view
//!
//! 1. **Monitoring ring.** Every live member is watched by its `monitors` successors on a
//!    ring of sorted ids, so each member watches its `monitors` predecessors. Each
//!    protocol period (`probe_interval`) it pings one of them, in turn; any datagram from a
//!    watched peer is a heartbeat for its [`PhiAccrual`] detector.
//! 2. **Indirect probing.** When phi reaches the threshold the watcher pings the peer again
//!    and asks `indirect_checks` others to ping it too (`PingReq`); they answer `Ack`, or
//!    `Nack` when they heard nothing. Any ack ends the probe.
//! 3. **Suspicion.** A probe without an ack makes the peer Suspect, gossiped with the
//!    watcher as accuser. Every member that hears it starts a Lifeguard suspicion timer
//!    that independent accusers shorten (every watcher probes and accuses on its own); the
//!    first to expire declares the peer Failed.
//! 4. **Refutation.** A member that hears itself suspected, failed or departed at or above
//!    its incarnation bumps its incarnation past the claim, persists it, and gossips Alive.
//! 5. **Local health.** Missed nacks and refutations raise the member's own awareness
//!    score, which stretches its probe timeouts.
//! 6. **Dissemination.** Updates ride on pings, acks and ping-reqs, and on gossip rounds
//!    to `gossip_nodes` random members (recently failed ones included), each at most
//!    `retransmit_mult * ceil(log10(n + 1))` times, never to a member known to have it,
//!    and no more once four members told it to us. Push-pull exchanges whole views: with
//!    a random member while neighbours' digests disagree, now and then with a failed
//!    member so that split clusters merge again, and at once with a member that has not
//!    heard of us.
//! 7. **Anti-entropy along the ring.** Pings and acks carry a digest of the sender's live
//!    view while it has nothing pending; a neighbour whose digest stays different gets a
//!    push-pull, so a dissemination that died out is repaired within seconds, not minutes.
//!
//! # Outputs
//!
//! Drain [`Node::poll_output`] after every `handle_*` call, in order: a
//! [`Output::Persist`] must reach stable storage before any later output is acted on.
//! Then sleep until [`Node::poll_timeout`] and call [`Node::handle_timeout`]; calling it
//! early or twice is harmless.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use indexmap::IndexMap;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;

use crate::config::{Config, NodeConfig};
use crate::detector::PhiAccrual;
use crate::durable::Durable;
use crate::error::Error;
use crate::member::{tags_encoded_len, Member, MemberState, NodeId, Tags, MAX_TAGS_BYTES};
use crate::membership::awareness::Awareness;
use crate::membership::broadcast::{retransmit_limit, BroadcastQueue, Key};
use crate::membership::suspicion::{suspicion_min, Suspicion};
use crate::membership::{precedence, Verdict};
use crate::output::{Command, Event, Mode, Output, Stats, Transmit};
use crate::time::Instant;
use crate::wire::{self, DatagramWriter, Gossip, Header, MemberRecord, Message, StateWriter, WireError};

/// Incarnations at or above this are refused: no member bumps its incarnation this often,
/// and refusing them keeps a forged claim from pushing a member where it cannot refute.
const MAX_INCARNATION: u64 = 1 << 62;
/// How long a delivered user broadcast is remembered, so a late copy is not delivered again.
const BROADCAST_MEMORY: Duration = Duration::from_secs(600);
/// The most user broadcasts remembered at once.
const MAX_REMEMBERED_BROADCASTS: usize = 1 << 16;

/// The most room for view entries a state transfer's announced size makes a member
/// reserve ahead (a view grows past it one member at a time).
const MAX_VIEW_RESERVE: usize = 1 << 14;

/// Output slots a drained node keeps (a few datagrams and events per input).
const OUTPUTS_KEPT: usize = 16;

/// One member's protocol state: the sans-IO state machine.
///
/// See the [module documentation](self) for the protocol and the drain order.
//
// Fields are laid out in order (`repr(C)`), those every datagram and wakeup touches first:
// a thousand simulated members keep one another's state out of cache, so each step's cost
// is mostly the cache lines it touches.
#[derive(Debug)]
#[repr(C)]
pub struct Node {
    // ----- hot: read or written on every ping, ack and probe wakeup -----
    now: Instant,
    id: NodeId,
    /// Members in state Alive or Suspect, this one included.
    live: usize,
    /// XOR of [`digest_term`] over the live members: equal views, equal digests.
    digest: u64,
    next_seq: u64,
    /// The watched peer probed last.
    next_watch: usize,
    next_probe: Instant,
    next_gossip: Instant,
    next_push_pull: Instant,
    /// Counters of the traffic every datagram is part of; [`Node::stats`] adds the rest.
    traffic: Traffic,
    // The settings every datagram uses, copied from `config` (which never changes) to sit
    // beside the state they are used with.
    cluster_id: u64,
    max_datagram: usize,
    probe_interval: Duration,
    retransmit_mult: u32,
    /// Whether this member has left the cluster.
    left: bool,
    ring_dirty: bool,
    acked_since_tick: bool,
    awareness: Awareness,
    /// The peers this member watches: its `monitors` live predecessors on the ring. Kept
    /// apart from `peers` so that the hot path (heartbeats, wakeups) stays in a few bytes.
    watches: Ring<Watch>,
    /// Each watch's detector and address, at the same index as in `watches`.
    watch_state: Vec<WatchState>,
    /// The peers that watch this member: its `monitors` live successors on the ring, the
    /// usual senders of the pings it receives.
    watchers: Ring<NodeId>,
    outputs: VecDeque<Output>,
    suspicions: BTreeMap<NodeId, Suspicion>,
    /// Indirect probes in flight, by sequence number.
    probes: BTreeMap<u64, Probe>,
    /// Pings sent on another member's behalf, by our sequence number.
    relays: BTreeMap<u64, Relay>,
    /// Members whose digest differed from ours, since when.
    digest_mismatch: BTreeMap<NodeId, Instant>,
    next_digest_sync: Instant,
    digest_backoff: Duration,
    /// When a neighbour last reported the same view digest as ours.
    digest_agreed: Option<Instant>,
    join: Option<JoinAttempt>,
    queue: BroadcastQueue,
    // ----- the rest -----
    /// The counters of rarer traffic and of rejected datagrams (its byte and gossip
    /// counters stay zero: `traffic` keeps them).
    stats: Stats,
    config: Config,
    addr: SocketAddr,
    rng: ChaCha8Rng,
    durable: Durable,
    /// Every member known, this one included, by id. A fixed-hash map in insertion order:
    /// lookups touch one or two cache lines (a thousand-member view is looked up for every
    /// gossip item), random draws index it directly, and iteration is the same every run.
    peers: IndexMap<NodeId, Peer, FxBuildHasher>,
    /// The keys of `peers`, sorted: the ring, and the id order of [`Node::members`].
    sorted: BTreeSet<NodeId>,
    /// The other members that are Failed or Left (tombstones): what reaping and the reach
    /// past the live view look at, without a scan of the whole view.
    down: BTreeSet<NodeId>,
    delivered: BTreeMap<(NodeId, u64), Instant>,
    next_stranger_sync: Instant,
    /// A detector as a new watch starts it, whose threshold is solved once.
    fresh_detector: PhiAccrual,
    seeds: Vec<SocketAddr>,
}

/// The counters every datagram bumps (nearly all are pings and acks), apart from the rest
/// of [`Stats`] so that they share a cache line.
#[derive(Clone, Copy, Debug, Default)]
struct Traffic {
    bytes_sent: u64,
    bytes_received: u64,
    gossip_sent: u64,
    gossip_received: u64,
    pings_sent: u64,
    acks_sent: u64,
    pings_received: u64,
    acks_received: u64,
}

impl Traffic {
    fn sent(&mut self, kind: wire::MessageKind, rest: &mut Stats) {
        match kind {
            wire::MessageKind::Ping => self.pings_sent += 1,
            wire::MessageKind::Ack => self.acks_sent += 1,
            other => rest.sent.add(other),
        }
    }

    fn received(&mut self, kind: wire::MessageKind, rest: &mut Stats) {
        match kind {
            wire::MessageKind::Ping => self.pings_received += 1,
            wire::MessageKind::Ack => self.acks_received += 1,
            other => rest.received.add(other),
        }
    }

    /// `rest` with these counters added.
    fn add_to(self, mut rest: Stats) -> Stats {
        rest.bytes_sent += self.bytes_sent;
        rest.bytes_received += self.bytes_received;
        rest.gossip_sent += self.gossip_sent;
        rest.gossip_received += self.gossip_received;
        rest.sent.add_n(wire::MessageKind::Ping, self.pings_sent);
        rest.sent.add_n(wire::MessageKind::Ack, self.acks_sent);
        rest.received.add_n(wire::MessageKind::Ping, self.pings_received);
        rest.received.add_n(wire::MessageKind::Ack, self.acks_received);
        rest
    }
}

#[derive(Debug)]
struct Peer {
    member: Member,
    /// When its state last changed.
    since: Instant,
}

/// Ring neighbours (watched peers, watchers): inline, in the node's first cache lines, up
/// to this many (the default `monitors` is 3); more spill to the heap.
const RING_INLINE: usize = 4;

type Ring<T> = SmallVec<[T; RING_INLINE]>;

/// A peer this member watches on the ring: what every input and wakeup reads (is the
/// sender watched, when is an indirect probe due), a few watches to a cache line.
#[derive(Debug)]
struct Watch {
    id: NodeId,
    /// No indirect probe of it before this.
    next_indirect: Instant,
    /// Its detector's deadline: phi reaches the threshold then.
    deadline: Option<Instant>,
}

/// The rest of a watch: read when the peer is heard from or probed.
#[derive(Debug)]
struct WatchState {
    detector: PhiAccrual,
    addr: SocketAddr,
}

#[derive(Debug)]
struct Probe {
    target: NodeId,
    deadline: Instant,
    expected_nacks: usize,
    nacks: usize,
}

#[derive(Debug)]
struct Relay {
    requester: SocketAddr,
    requester_seq: u64,
    target: NodeId,
    nack_at: Instant,
}

#[derive(Debug)]
struct JoinAttempt {
    attempt: u32,
    /// The seed asked for its view first; later attempts ask the next ones.
    first_seed: usize,
    next: Instant,
}

/// A claim about one member, from gossip or a push-pull record.
struct Claim {
    id: NodeId,
    incarnation: u64,
    state: MemberState,
    /// Alive claims carry the member's address and tags.
    addr: Option<SocketAddr>,
    tags: Option<Tags>,
    /// Who accuses it (Suspect, Failed); the member itself otherwise.
    accuser: NodeId,
    /// Whether a member this claim introduces is gossiped on. Not when it comes from a
    /// whole-view exchange: the sender's side knows it already, and a new member re-gossiping
    /// the whole cluster it just learned would cost `n` updates per join.
    introduce: bool,
}

impl Node {
    /// A member that knows only itself; join a cluster with [`Command::Join`].
    ///
    /// A member restarted with its [`Durable`] state comes back one incarnation above the
    /// one it had, and persists that at once, so peers that remember it failed accept it.
    pub fn new(config: NodeConfig, now: Instant) -> Result<Self, Error> {
        config.cluster.validate()?;
        let len = tags_encoded_len(&config.tags);
        if len > MAX_TAGS_BYTES {
            return Err(Error::TagsTooLarge { len, max: MAX_TAGS_BYTES });
        }
        let restarted = config.durable.is_some();
        let mut durable = config.durable.unwrap_or_default();
        if restarted {
            durable.incarnation = durable.incarnation.saturating_add(1).min(MAX_INCARNATION - 1);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let cluster = config.cluster;
        let (me_incarnation, probe_interval) = (durable.incarnation, cluster.probe_interval);
        // Spread the periodic work of members started together.
        let first_probe = now + jitter(&mut rng, cluster.probe_interval);
        let first_push_pull = now + jitter(&mut rng, cluster.push_pull_interval);
        let fresh_detector = PhiAccrual::new(cluster.phi.clone());
        let me = Member {
            id: config.id,
            addr: config.addr,
            incarnation: durable.incarnation,
            state: MemberState::Alive,
            tags: config.tags,
        };
        let mut peers = IndexMap::default();
        peers.insert(config.id, Peer::new(me, now));
        let mut node = Self {
            id: config.id,
            addr: config.addr,
            awareness: Awareness::new(cluster.awareness_max_multiplier),
            next_gossip: now + cluster.gossip_interval,
            traffic: Traffic::default(),
            cluster_id: cluster.cluster_id,
            max_datagram: cluster.max_datagram,
            probe_interval: cluster.probe_interval,
            retransmit_mult: cluster.retransmit_mult,
            config: cluster,
            rng,
            now,
            durable,
            peers,
            sorted: BTreeSet::from([config.id]),
            down: BTreeSet::new(),
            live: 1,
            watches: Ring::new(),
            watch_state: Vec::new(),
            watchers: Ring::new(),
            next_watch: 0,
            left: false,
            ring_dirty: false,
            suspicions: BTreeMap::new(),
            probes: BTreeMap::new(),
            relays: BTreeMap::new(),
            next_seq: 1,
            queue: BroadcastQueue::default(),
            delivered: BTreeMap::new(),
            fresh_detector,
            acked_since_tick: false,
            next_probe: first_probe,
            next_push_pull: first_push_pull,
            next_stranger_sync: now,
            digest: digest_term(config.id, me_incarnation),
            digest_mismatch: BTreeMap::new(),
            next_digest_sync: now,
            digest_backoff: probe_interval,
            digest_agreed: None,
            join: None,
            seeds: Vec::new(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
        };
        node.outputs.push_back(Output::Persist(node.durable.clone()));
        Ok(node)
    }

    // ----- views -------------------------------------------------------------------

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This member's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every member known, this one included, in id order; failed and departed members
    /// stay (as tombstones) for `tombstone_ttl`.
    pub fn members(&self) -> impl Iterator<Item = &Member> + '_ {
        self.sorted.iter().filter_map(|id| self.peers.get(id)).map(|peer| &peer.member)
    }

    /// One member, if known.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.peers.get(&id).map(|peer| &peer.member)
    }

    /// How many members are Alive or Suspect, this one included.
    pub fn live_members(&self) -> usize {
        self.live
    }

    /// The members this one watches on the monitoring ring.
    pub fn watched(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.watches.iter().map(|w| w.id)
    }

    /// This member's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.durable.incarnation
    }

    /// The leader this member knows of. Leader election runs only with configured voters;
    /// without them there is no leader.
    pub fn leader(&self) -> Option<NodeId> {
        None
    }

    /// The latest election term this member has seen.
    pub fn term(&self) -> u64 {
        self.durable.term
    }

    /// Whether this member holds the leader lease at `now`.
    pub fn is_leaseholder(&self, _now: Instant) -> bool {
        false
    }

    /// Whether this member's side of the cluster may accept writes.
    pub fn mode(&self) -> Mode {
        Mode::Normal
    }

    /// The phi of a watched member as of the latest input, or `None` for one this member
    /// does not watch.
    pub fn phi(&self, id: NodeId) -> Option<f64> {
        let i = self.watches.iter().position(|w| w.id == id)?;
        Some(self.watch_state[i].detector.phi(self.now))
    }

    /// The local health score (Lifeguard): 0 is healthy; timeouts stretch by `1 + score`.
    pub fn health(&self) -> u32 {
        self.awareness.score()
    }

    /// Traffic counters.
    pub fn stats(&self) -> Stats {
        self.traffic.add_to(self.stats)
    }

    /// Whether this member has heard from the cluster since it asked to join (always true
    /// for a member that never asked).
    pub fn is_joined(&self) -> bool {
        self.join.is_none()
    }

    // ----- inputs ------------------------------------------------------------------

    /// Feeds one datagram received from `from`.
    ///
    /// Any byte string is safe: a rejected datagram returns why, is counted in
    /// [`Stats::dropped`], and changes nothing else.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Result<(), WireError> {
        self.now = now;
        let decoded = wire::decode(bytes, self.cluster_id, self.max_datagram)
            .and_then(|(header, message)| self.check(header, &message).map(|()| (header, message)));
        let (header, message) = match decoded {
            Ok(ok) => ok,
            Err(error) => {
                self.stats.dropped.count(&error);
                return Err(error);
            }
        };
        self.traffic.received(message.kind(), &mut self.stats);
        self.traffic.bytes_received += bytes.len() as u64;
        let sender = header.sender;
        if let Some(i) = self.watches.iter().position(|w| w.id == sender) {
            let detector = &mut self.watch_state[i].detector;
            detector.heartbeat(now);
            self.watches[i].deadline = detector.deadline();
        }
        if !matches!(message, Message::Join { .. } | Message::PushPull { .. }) && !self.knows(sender) {
            self.sync_with_stranger(from);
        }
        let gossip_count = message.gossip().len();
        self.traffic.gossip_received += gossip_count as u64;
        match message {
            Message::Ping { seq, digest, gossip, .. } => {
                self.merge_gossip(sender, gossip);
                let ack = Message::Ack { seq, digest: self.quiet_digest(), gossip: Vec::new() };
                self.send_gossiping(from, Some(sender), ack);
                self.compare_digest(sender, from, digest);
            }
            Message::Ack { seq, digest, gossip } => {
                self.merge_gossip(sender, gossip);
                self.on_ack(sender, seq);
                self.compare_digest(sender, from, digest);
            }
            Message::Nack { seq } => {
                if let Some(probe) = self.probes.get_mut(&seq) {
                    probe.nacks += 1;
                }
            }
            Message::PingReq { seq, target, target_addr, gossip } => {
                self.merge_gossip(sender, gossip);
                self.relay_probe(from, seq, target, target_addr);
            }
            Message::Gossip { gossip } => self.merge_gossip(sender, gossip),
            Message::PushPull { reply, part, parts, members } => {
                self.join = None;
                // The sender's whole view comes in `parts` datagrams of about this many
                // records: make room for it at once rather than doubling the view's
                // storage a dozen times while a thousand members arrive.
                // (Bounded: a forged count must not make a member reserve much.)
                let expected = usize::from(parts).saturating_mul(members.len()).min(MAX_VIEW_RESERVE);
                if expected > self.peers.len() {
                    self.peers.reserve(expected - self.peers.len());
                }
                for record in members {
                    self.merge_record(sender, record, false);
                }
                if reply && part == 0 {
                    self.send_state(from, false);
                }
            }
            Message::Join { member, send_state } => {
                self.merge_record(sender, member, true);
                if send_state {
                    self.send_state(from, false);
                }
            }
            // Election messages are answered once voters are configured.
            Message::VoteRequest { .. }
            | Message::VoteReply { .. }
            | Message::LeaderHeartbeat { .. }
            | Message::HeartbeatReply { .. } => {}
        }
        self.refresh_ring();
        Ok(())
    }

    /// Runs whatever is due at `now`: probes, suspicion expiries, gossip, push-pull, join
    /// retries. Extra calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.expire_relays(now);
        self.expire_probes(now);
        self.expire_suspicions(now);
        if self.is_active() {
            self.start_due_indirect_probes(now);
            if now >= self.next_probe {
                self.probe_tick(now);
            }
            if now >= self.next_push_pull {
                self.push_pull_tick(now);
            }
        }
        if now >= self.next_gossip {
            if !self.queue.is_empty() {
                self.gossip_round();
            }
            self.next_gossip = now + self.config.gossip_interval;
        }
        self.retry_join(now);
        self.refresh_ring();
    }

    /// Carries out an application request.
    pub fn handle_command(&mut self, now: Instant, command: Command) -> Result<(), Error> {
        self.now = now;
        match command {
            Command::Join(seeds) => {
                self.seeds = seeds.into_iter().filter(|addr| *addr != self.addr).collect();
                if !self.seeds.is_empty() {
                    let first_seed = self.rng.random_range(0..self.seeds.len());
                    self.join = Some(JoinAttempt { attempt: 0, first_seed, next: now });
                    self.retry_join(now);
                }
            }
            Command::Leave => self.leave(),
            Command::SetTags(tags) => {
                let len = tags_encoded_len(&tags);
                if len > MAX_TAGS_BYTES {
                    return Err(Error::TagsTooLarge { len, max: MAX_TAGS_BYTES });
                }
                if let Some(me) = self.peers.get_mut(&self.id) {
                    me.member.tags = tags;
                }
                self.bump_incarnation(self.durable.incarnation);
            }
            Command::Broadcast(payload) => {
                let max = self.max_broadcast();
                if payload.len() > max {
                    return Err(Error::BroadcastTooLarge { len: payload.len(), max });
                }
                // Unique across restarts, which may replay the seeded RNG.
                let seq = self.rng.next_u64() ^ now.as_nanos().rotate_left(29) ^ self.durable.incarnation;
                self.delivered.insert((self.id, seq), now);
                let item = Gossip::UserBroadcast { origin: self.id, seq, payload };
                self.queue.push(Key::User(self.id, seq), &item);
            }
            Command::ReportUnreachable(id) => {
                if id != self.id && self.is_active() {
                    self.start_indirect_probe(id, now);
                }
            }
        }
        self.refresh_ring();
        Ok(())
    }

    // ----- outputs -----------------------------------------------------------------

    /// The next output, in the order produced. See the [module docs](self) for the order rule.
    #[must_use = "outputs must be acted on"]
    pub fn poll_output(&mut self) -> Option<Output> {
        let output = self.outputs.pop_front();
        if output.is_none() {
            // Drained: `clear` starts the ring again at the buffer's front (walked round,
            // it would touch a new cache line for nearly every output), and a burst's
            // room (a whole view learned at once) is given back.
            self.outputs.clear();
            if self.outputs.capacity() > OUTPUTS_KEPT {
                self.outputs.shrink_to(OUTPUTS_KEPT);
            }
        }
        output
    }

    /// When [`Node::handle_timeout`] should next be called, if ever.
    #[must_use = "the node must be woken at this instant"]
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Asked after every input: the maps are usually empty, and their iterators are
        // not free, so they are skipped then.
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if !self.relays.is_empty() {
            self.relays.values().for_each(|r| consider(r.nack_at));
        }
        if !self.probes.is_empty() {
            self.probes.values().for_each(|p| consider(p.deadline));
        }
        if !self.suspicions.is_empty() {
            self.suspicions.values().for_each(|s| consider(s.deadline()));
        }
        if self.is_active() {
            consider(self.next_probe);
            consider(self.next_push_pull);
            for watch in &self.watches {
                if let Some(t) = self.indirect_probe_due(watch) {
                    consider(t);
                }
            }
        }
        if !self.queue.is_empty() {
            consider(self.next_gossip);
        }
        if let Some(join) = &self.join {
            consider(join.next);
        }
        next
    }

    // ----- probing -----------------------------------------------------------------

    /// Whether this member still takes part (it has not left).
    fn is_active(&self) -> bool {
        !self.left
    }

    /// SWIM's protocol period: one probe per `probe_interval`, to the watched peers in
    /// turn, so each is pinged every `monitors` intervals and a member sends two
    /// datagrams (ping, ack) per interval whatever the cluster size.
    fn probe_tick(&mut self, now: Instant) {
        if self.acked_since_tick {
            self.awareness.apply(-1);
        }
        self.acked_since_tick = false;
        self.next_probe = now + self.probe_interval;
        if self.watches.is_empty() {
            return;
        }
        self.next_watch = (self.next_watch + 1) % self.watches.len();
        let (id, addr) = (self.watches[self.next_watch].id, self.watch_state[self.next_watch].addr);
        let seq = self.next_seq();
        let digest = self.quiet_digest();
        self.send_gossiping(addr, Some(id), Message::Ping { seq, target: id, digest, gossip: Vec::new() });
    }

    /// When the indirect probe of a watched peer falls due: when its phi reaches the
    /// threshold, but not while one is in flight. (Whether the peer may still be accused is
    /// checked when it falls due, off the hot path.)
    fn indirect_probe_due(&self, watch: &Watch) -> Option<Instant> {
        if self.is_probing(watch.id) {
            return None;
        }
        Some(watch.deadline?.max(watch.next_indirect))
    }

    /// Whether `id` is a known member; ring neighbours, the usual case, are answered
    /// without a look into the whole view.
    fn knows(&self, id: NodeId) -> bool {
        self.watchers.contains(&id) || self.watches.iter().any(|w| w.id == id) || self.peers.contains_key(&id)
    }

    fn is_probing(&self, id: NodeId) -> bool {
        !self.probes.is_empty() && self.probes.values().any(|p| p.target == id)
    }

    /// An Alive peer may be accused; a Suspect one may be accused once more by each
    /// member, which is what makes the Lifeguard confirmations independent.
    fn may_accuse(&self, peer: &Peer) -> bool {
        match peer.member.state {
            MemberState::Alive => true,
            MemberState::Suspect => self.suspicions.get(&peer.member.id).is_some_and(|s| !s.accused_by(self.id)),
            MemberState::Failed | MemberState::Left => false,
        }
    }

    fn start_due_indirect_probes(&mut self, now: Instant) {
        for i in 0..self.watches.len() {
            if self.indirect_probe_due(&self.watches[i]).is_none_or(|t| t > now) {
                continue;
            }
            let id = self.watches[i].id;
            if self.peers.get(&id).is_some_and(|p| self.may_accuse(p)) {
                self.start_indirect_probe(id, now);
            } else {
                // Suspected and already accused by us, say: look again next interval.
                self.watches[i].next_indirect = now + self.probe_interval;
            }
        }
    }

    /// SWIM's second step: ping the peer again and ask `indirect_checks` others to ping it.
    fn start_indirect_probe(&mut self, target: NodeId, now: Instant) {
        let Some(peer) = self.peers.get(&target) else { return };
        if self.is_probing(target) || !self.may_accuse(peer) {
            return;
        }
        let target_addr = peer.member.addr;
        let seq = self.next_seq();
        let timeout = self.awareness.scale(self.config.probe_timeout);
        let relays = self.random_members(self.config.indirect_checks, |p| {
            p.member.state == MemberState::Alive && p.member.id != target
        });
        for &relay in &relays {
            if let Some(addr) = self.peers.get(&relay).map(|p| p.member.addr) {
                self.send_gossiping(
                    addr,
                    Some(relay),
                    Message::PingReq { seq, target, target_addr, gossip: Vec::new() },
                );
            }
        }
        self.send_gossiping(target_addr, Some(target), Message::Ping { seq, target, digest: None, gossip: Vec::new() });
        self.probes.insert(seq, Probe { target, deadline: now + timeout, expected_nacks: relays.len(), nacks: 0 });
        let next = now + self.awareness.scale(self.probe_interval);
        if let Some(watch) = self.watches.iter_mut().find(|w| w.id == target) {
            watch.next_indirect = next;
        }
    }

    fn on_ack(&mut self, sender: NodeId, seq: u64) {
        self.acked_since_tick = true;
        if let Some(relay) = self.relays.get(&seq) {
            if relay.target == sender {
                let relay = self.relays.remove(&seq).expect("present: just looked up");
                let ack = Message::Ack { seq: relay.requester_seq, digest: None, gossip: Vec::new() };
                self.send_gossiping(relay.requester, None, ack);
            }
            return;
        }
        // An indirect probe ends with an ack from its target or from any of its relays.
        self.probes.remove(&seq);
    }

    fn relay_probe(&mut self, requester: SocketAddr, requester_seq: u64, target: NodeId, target_addr: SocketAddr) {
        if target == self.id {
            self.send_gossiping(requester, None, Message::Ack { seq: requester_seq, digest: None, gossip: Vec::new() });
            return;
        }
        let seq = self.next_seq();
        // Lifeguard: nack before the requester's own timeout, so it can tell a dead target
        // from its own missing messages.
        let nack_at = self.now + self.config.probe_timeout.mul_f64(0.8);
        self.relays.insert(seq, Relay { requester, requester_seq, target, nack_at });
        self.send_gossiping(target_addr, Some(target), Message::Ping { seq, target, digest: None, gossip: Vec::new() });
    }

    fn expire_relays(&mut self, now: Instant) {
        while let Some(seq) = self.relays.iter().find(|(_, r)| r.nack_at <= now).map(|(s, _)| *s) {
            let relay = self.relays.remove(&seq).expect("present: just found");
            self.send(relay.requester, &Message::Nack { seq: relay.requester_seq });
        }
    }

    fn expire_probes(&mut self, now: Instant) {
        while let Some(seq) = self.probes.iter().find(|(_, p)| p.deadline <= now).map(|(s, _)| *s) {
            let probe = self.probes.remove(&seq).expect("present: just found");
            // Lifeguard: relays that did not even nack point at our own health.
            let missed = probe.expected_nacks.saturating_sub(probe.nacks);
            self.awareness.apply(i64::try_from(missed).unwrap_or(i64::MAX));
            let Some(peer) = self.peers.get(&probe.target) else { continue };
            if peer.member.state.is_live() {
                // Suspects it, or confirms the running suspicion of it.
                let incarnation = peer.member.incarnation;
                let claim = Claim::accusation(probe.target, incarnation, MemberState::Suspect, self.id);
                self.apply_claim(claim);
            }
        }
    }

    fn expire_suspicions(&mut self, now: Instant) {
        while let Some(id) = self.suspicions.iter().find(|(_, s)| s.deadline() <= now).map(|(id, _)| *id) {
            self.suspicions.remove(&id);
            let Some(incarnation) = self.peers.get(&id).map(|p| p.member.incarnation) else { continue };
            self.apply_claim(Claim::accusation(id, incarnation, MemberState::Failed, self.id));
        }
    }

    // ----- dissemination -----------------------------------------------------------

    fn gossip_round(&mut self) {
        let dead_horizon = self.now.saturating_sub(self.config.gossip_to_the_dead_time);
        let targets =
            self.random_members(self.config.gossip_nodes, |p| p.member.state.is_live() || p.since >= dead_horizon);
        for id in targets {
            if self.queue.is_empty() {
                break;
            }
            if let Some(addr) = self.peers.get(&id).map(|p| p.member.addr) {
                self.send_gossiping(addr, Some(id), Message::Gossip { gossip: Vec::new() });
            }
        }
    }

    fn push_pull_tick(&mut self, now: Instant) {
        self.next_push_pull = now + push_pull_interval(self.config.push_pull_interval, self.live);
        self.reap(now);
        // Anti-entropy is the digests' job while neighbours keep reporting the same view;
        // the whole-view exchange with a random member is for when they do not (or cannot:
        // digests travel only when nothing is pending).
        let agreed =
            self.digest_agreed.is_some_and(|at| now.saturating_duration_since(at) < self.config.push_pull_interval);
        if !agreed {
            if let Some(id) = self.random_members(1, |p| p.member.state.is_live()).first() {
                let addr = self.peers[id].member.addr;
                self.send_state(addr, true);
            }
        }
        // Now and then reach past the live view, so that a healed partition merges again:
        // a member this one holds failed, or, for a member left alone, a seed.
        if self.rng.random_bool(0.5) {
            let addr = match self.random_failed() {
                Some(id) => Some(self.peers[&id].member.addr),
                None if self.live == 1 && !self.seeds.is_empty() => {
                    Some(self.seeds[self.rng.random_range(0..self.seeds.len())])
                }
                None => None,
            };
            if let Some(addr) = addr {
                self.send_state(addr, true);
            }
        }
    }

    /// Sends this member's whole view, split into as many datagrams as it takes.
    fn send_state(&mut self, to: SocketAddr, reply: bool) {
        let mut state = StateWriter::new(self.max_datagram, self.peers.len());
        for peer in self.peers.values() {
            state.push(&peer.member);
        }
        for payload in state.finish(self.header(), reply) {
            self.transmit(to, wire::MessageKind::PushPull, payload);
        }
    }

    /// A member that hears from one it does not know has missed gossip (members that
    /// joined at once, a dissemination that died out): exchange views with it. At most one
    /// such exchange per gossip interval, so forged senders cannot make it a flood.
    fn sync_with_stranger(&mut self, from: SocketAddr) {
        if !self.is_active() || self.now < self.next_stranger_sync {
            return;
        }
        self.next_stranger_sync = self.now + self.config.gossip_interval;
        self.send_state(from, true);
    }

    /// The digest computed from scratch, to check the incremental one.
    #[cfg(test)]
    pub(crate) fn recomputed_digest(&self) -> u64 {
        self.peers
            .values()
            .filter(|p| p.member.state.is_live())
            .fold(0, |d, p| d ^ digest_term(p.member.id, p.member.incarnation))
    }

    #[cfg(test)]
    pub(crate) fn digest(&self) -> u64 {
        self.digest
    }

    /// Whether the index of Failed and Left members matches the view.
    #[cfg(test)]
    pub(crate) fn down_index_holds(&self) -> bool {
        let down: BTreeSet<NodeId> = self
            .peers
            .values()
            .filter(|p| !p.member.state.is_live() && p.member.id != self.id)
            .map(|p| p.member.id)
            .collect();
        down == self.down
    }

    /// This member's digest, when it has nothing pending to gossip (with updates in
    /// flight, views differ for a moment and that says nothing).
    fn quiet_digest(&self) -> Option<u64> {
        self.queue.is_empty().then_some(self.digest)
    }

    /// Anti-entropy along the ring: a neighbour whose quiet digest differs from ours on two
    /// probes a probe interval apart has a view that gossip did not fix (a dissemination
    /// that died out, a merge that missed someone); exchange whole views with it. Such
    /// syncs back off exponentially while differences persist, up to the push-pull interval.
    fn compare_digest(&mut self, sender: NodeId, from: SocketAddr, digest: Option<u64>) {
        let Some(digest) = digest else { return };
        if !self.queue.is_empty() || !self.is_active() || !self.knows(sender) {
            return;
        }
        if digest == self.digest {
            self.digest_mismatch.remove(&sender);
            self.digest_backoff = self.probe_interval;
            self.digest_agreed = Some(self.now);
            return;
        }
        let now = self.now;
        let since = *self.digest_mismatch.entry(sender).or_insert(now);
        if now < since + self.probe_interval || now < self.next_digest_sync {
            return;
        }
        self.digest_mismatch.remove(&sender);
        self.next_digest_sync = now + self.digest_backoff;
        self.digest_backoff = (self.digest_backoff * 2).min(self.config.push_pull_interval);
        self.send_state(from, true);
    }

    fn reap(&mut self, now: Instant) {
        let horizon = now.saturating_sub(self.config.tombstone_ttl);
        let gone: Vec<NodeId> =
            self.down.iter().copied().filter(|id| self.peers.get(id).is_some_and(|p| p.since < horizon)).collect();
        for id in gone {
            self.peers.swap_remove(&id);
            self.sorted.remove(&id);
            self.down.remove(&id);
            self.digest_mismatch.remove(&id);
        }
        let memory = now.saturating_sub(BROADCAST_MEMORY);
        self.delivered.retain(|_, at| *at >= memory);
    }

    /// Tells every seed, as memberlist does (seeds that are themselves still joining each
    /// know part of the cluster; telling only one can leave islands), but asks only one of
    /// them per attempt, in turn, for its view: one state transfer per join, not one per seed.
    fn retry_join(&mut self, now: Instant) {
        let Some(join) = &mut self.join else { return };
        if now < join.next || self.seeds.is_empty() {
            return;
        }
        let backoff =
            self.config.join_retry_base.saturating_mul(1 << join.attempt.min(16)).min(self.config.join_retry_max);
        let attempt = join.attempt;
        join.attempt += 1;
        // Equal jitter: half fixed, half random, so members that start together spread out.
        join.next = now + backoff / 2 + jitter(&mut self.rng, backoff / 2);
        let member = MemberRecord::from(&self.peers[&self.id].member);
        let asked = (join.first_seed + attempt as usize) % self.seeds.len();
        for i in 0..self.seeds.len() {
            let seed = self.seeds[i];
            self.send(seed, &Message::Join { member: member.clone(), send_state: i == asked });
        }
    }

    fn leave(&mut self) {
        if !self.is_active() {
            return;
        }
        let incarnation = self.durable.incarnation;
        if let Some(me) = self.peers.get_mut(&self.id) {
            me.member.state = MemberState::Left;
            self.left = true;
            me.since = self.now;
        }
        self.live = self.live.saturating_sub(1);
        self.digest ^= digest_term(self.id, incarnation);
        self.join = None;
        self.probes.clear();
        self.queue.push(Key::Member(self.id), &Gossip::Leave { id: self.id, incarnation });
        // Tell several members at once rather than wait for the next gossip round.
        let fanout = self.config.gossip_nodes.max(self.config.monitors) * 2;
        let targets = self.random_members(fanout, |p| p.member.state.is_live());
        for id in targets {
            let addr = self.peers[&id].member.addr;
            self.send(addr, &Message::Gossip { gossip: vec![Gossip::Leave { id: self.id, incarnation }] });
        }
        self.ring_dirty = true;
    }

    // ----- merging claims ------------------------------------------------------------

    fn merge_gossip(&mut self, sender: NodeId, gossip: Vec<Gossip>) {
        for item in gossip {
            match item {
                Gossip::UserBroadcast { origin, seq, payload } => {
                    self.queue.mark_holder(Key::User(origin, seq), sender, self.live.saturating_sub(1));
                    self.deliver_broadcast(origin, seq, payload);
                }
                other => {
                    let Some(claim) = Claim::from_gossip(other) else { continue };
                    let id = claim.id;
                    // A sender that told us exactly what we now hold needs no copy of it;
                    // one that told us something older still does.
                    if self.apply_claim(claim) {
                        self.queue.mark_holder(Key::Member(id), sender, self.live.saturating_sub(1));
                    }
                }
            }
        }
    }

    fn deliver_broadcast(&mut self, origin: NodeId, seq: u64, payload: Vec<u8>) {
        if self.delivered.contains_key(&(origin, seq)) {
            return;
        }
        if self.delivered.len() >= MAX_REMEMBERED_BROADCASTS {
            // Forget the oldest delivery to stay bounded.
            if let Some(oldest) = self.delivered.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) {
                self.delivered.remove(&oldest);
            }
        }
        self.delivered.insert((origin, seq), self.now);
        let item = Gossip::UserBroadcast { origin, seq, payload: payload.clone() };
        self.queue.push(Key::User(origin, seq), &item);
        self.emit(Event::Broadcast { origin, payload });
    }

    /// A push-pull record is a claim, except that a remote verdict of Failed is only a
    /// suspicion here (as memberlist): this member runs its own timer before it agrees.
    fn merge_record(&mut self, sender: NodeId, record: MemberRecord, introduce: bool) {
        let state = match record.state {
            MemberState::Failed => MemberState::Suspect,
            other => other,
        };
        let known = self.peers.contains_key(&record.id);
        if !known && state == MemberState::Suspect {
            // Learn it alive first, so that it can be suspected and time out here too.
            self.apply_claim(Claim {
                id: record.id,
                incarnation: record.incarnation,
                state: MemberState::Alive,
                addr: Some(record.addr),
                tags: Some(record.tags),
                accuser: record.id,
                introduce,
            });
            self.apply_claim(Claim::accusation(record.id, record.incarnation, state, sender));
            return;
        }
        let (addr, tags) = (Some(record.addr), Some(record.tags));
        let accuser = if state == MemberState::Suspect { sender } else { record.id };
        self.apply_claim(Claim {
            id: record.id,
            incarnation: record.incarnation,
            state,
            addr,
            tags,
            accuser,
            introduce,
        });
    }

    /// Applies one claim under SWIM's precedence, emitting events and re-gossiping what changed.
    ///
    /// Returns whether this member now holds exactly what the claim says (so whoever made
    /// it needs no copy of ours).
    fn apply_claim(&mut self, claim: Claim) -> bool {
        if claim.incarnation >= MAX_INCARNATION {
            self.stats.dropped.invalid += 1;
            return false;
        }
        if claim.id == self.id {
            self.claim_about_me(&claim);
            return claim.state == MemberState::Alive && claim.incarnation == self.durable.incarnation;
        }
        if claim.addr == Some(self.addr) {
            // Another member at this member's own address is forged or stale; taking it
            // would make this member send to itself.
            self.stats.dropped.invalid += 1;
            return false;
        }
        let Some(peer) = self.peers.get(&claim.id) else {
            // Only an Alive claim brings a member in: the others name no address.
            if claim.state == MemberState::Alive {
                if let Some(addr) = claim.addr {
                    let member = Member {
                        id: claim.id,
                        addr,
                        incarnation: claim.incarnation,
                        state: MemberState::Alive,
                        tags: claim.tags.unwrap_or_default(),
                    };
                    self.peers.insert(claim.id, Peer::new(member.clone(), self.now));
                    self.live += 1;
                    self.digest ^= digest_term(claim.id, claim.incarnation);
                    self.ring_dirty = true;
                    self.sorted.insert(claim.id);
                    if claim.introduce {
                        self.queue.push(Key::Member(claim.id), &gossip_alive(&member));
                    }
                    self.emit(Event::MemberJoined(member));
                    return true;
                }
            }
            return false;
        };
        let before = (peer.member.incarnation, peer.member.state);
        let said = (claim.incarnation, claim.state);
        match precedence(before, said) {
            Verdict::Ignore => before == said,
            Verdict::Confirm => {
                let confirmed = self.suspicions.get_mut(&claim.id).is_some_and(|s| s.confirm(claim.accuser));
                if confirmed {
                    let item = Gossip::Suspect { id: claim.id, incarnation: claim.incarnation, accuser: claim.accuser };
                    self.queue.push(Key::Member(claim.id), &item);
                }
                true
            }
            Verdict::Apply => {
                self.change_state(claim, before);
                true
            }
        }
    }

    fn change_state(&mut self, claim: Claim, (old_incarnation, old_state): (u64, MemberState)) {
        let now = self.now;
        let live_before = old_state.is_live();
        let peer = self.peers.get_mut(&claim.id).expect("present: the caller looked it up");
        let moved = claim.addr.is_some_and(|addr| addr != peer.member.addr);
        let retagged = claim.tags.as_ref().is_some_and(|tags| *tags != peer.member.tags);
        // Watches keep their peer's address.
        self.ring_dirty |= moved;
        peer.member.incarnation = claim.incarnation;
        peer.member.state = claim.state;
        if let Some(addr) = claim.addr {
            peer.member.addr = addr;
        }
        if let Some(tags) = claim.tags {
            peer.member.tags = tags;
        }
        if old_state != claim.state {
            peer.since = now;
        }
        let member = peer.member.clone();
        let live_after = member.state.is_live();
        if live_before {
            self.digest ^= digest_term(claim.id, old_incarnation);
        }
        if live_after {
            self.digest ^= digest_term(claim.id, claim.incarnation);
        }
        if live_before != live_after {
            self.ring_dirty = true;
            if live_after {
                self.live += 1;
                self.down.remove(&claim.id);
            } else {
                self.live -= 1;
                self.down.insert(claim.id);
            }
        }
        if claim.state != MemberState::Suspect {
            self.suspicions.remove(&claim.id);
        }
        let item = match claim.state {
            MemberState::Alive => gossip_alive(&member),
            MemberState::Suspect => {
                Gossip::Suspect { id: claim.id, incarnation: claim.incarnation, accuser: claim.accuser }
            }
            MemberState::Failed => {
                Gossip::Failed { id: claim.id, incarnation: claim.incarnation, accuser: claim.accuser }
            }
            MemberState::Left => Gossip::Leave { id: claim.id, incarnation: claim.incarnation },
        };
        self.queue.push(Key::Member(claim.id), &item);
        let event = match (old_state, claim.state) {
            (MemberState::Left, MemberState::Alive) => Event::MemberJoined(member),
            (MemberState::Suspect | MemberState::Failed, MemberState::Alive) => Event::MemberRecovered(member),
            (MemberState::Alive, MemberState::Alive) => {
                if !moved && !retagged {
                    return;
                }
                Event::MemberUpdated(member)
            }
            (_, MemberState::Suspect) => {
                self.start_suspicion(claim.id, claim.accuser);
                if old_state == MemberState::Suspect {
                    // A fresh suspicion at a higher incarnation: the member was already
                    // reported suspect.
                    return;
                }
                Event::MemberSuspected(member)
            }
            (_, MemberState::Failed) => Event::MemberFailed(member),
            (_, MemberState::Left) => Event::MemberLeft(member),
        };
        self.emit(event);
    }

    fn start_suspicion(&mut self, id: NodeId, accuser: NodeId) {
        let min = suspicion_min(self.config.suspicion_mult, self.live, self.probe_interval);
        let max = min.saturating_mul(self.config.suspicion_max_timeout_mult);
        let k = self.config.suspicion_mult.saturating_sub(2);
        self.suspicions.insert(id, Suspicion::new(self.now, accuser, min, max, k));
    }

    /// Claims about this member: refute whatever says it is not alive, and take any
    /// incarnation someone remembers above its own.
    fn claim_about_me(&mut self, claim: &Claim) {
        if !self.is_active() {
            return;
        }
        let mine = self.durable.incarnation;
        let must_refute = match claim.state {
            MemberState::Alive => {
                claim.incarnation > mine || (claim.incarnation == mine && claim.addr.is_some_and(|a| a != self.addr))
            }
            _ => claim.incarnation >= mine,
        };
        if must_refute {
            self.awareness.apply(1);
            self.bump_incarnation(claim.incarnation.max(mine));
        }
    }

    /// Moves this member's incarnation above `above`, persists it, then gossips it.
    fn bump_incarnation(&mut self, above: u64) {
        let incarnation = above.saturating_add(1).min(MAX_INCARNATION - 1);
        self.digest ^= digest_term(self.id, self.durable.incarnation) ^ digest_term(self.id, incarnation);
        self.durable.incarnation = incarnation;
        self.outputs.push_back(Output::Persist(self.durable.clone()));
        let me = self.peers.get_mut(&self.id).expect("a node always knows itself");
        me.member.incarnation = incarnation;
        let item = gossip_alive(&me.member);
        self.queue.push(Key::Member(self.id), &item);
    }

    // ----- ring --------------------------------------------------------------------

    /// Recomputes the peers this member watches: its `monitors` live predecessors.
    fn refresh_ring(&mut self) {
        if !self.ring_dirty {
            return;
        }
        self.ring_dirty = false;
        let (mut watched, mut watchers) = (Ring::new(), Ring::new());
        if self.is_active() {
            let (before, after) = (self.sorted.range(..self.id), self.sorted.range(self.id..));
            self.first_live(before.clone().rev().chain(after.clone().rev()), &mut watched);
            self.first_live(after.chain(before), &mut watchers);
        }
        self.watchers = watchers;
        let mut old = std::mem::take(&mut self.watches);
        let mut old_state = std::mem::take(&mut self.watch_state);
        for id in watched {
            let Some(addr) = self.peers.get(&id).map(|p| p.member.addr) else { continue };
            let (watch, state) = match old.iter().position(|w| w.id == id) {
                Some(i) => (old.swap_remove(i), WatchState { addr, ..old_state.swap_remove(i) }),
                None => {
                    // Start from a heartbeat now: a peer that never answers must still
                    // become late.
                    let mut detector = self.fresh_detector.fresh();
                    detector.heartbeat(self.now);
                    let deadline = detector.deadline();
                    (Watch { id, next_indirect: self.now, deadline }, WatchState { detector, addr })
                }
            };
            self.watches.push(watch);
            self.watch_state.push(state);
        }
    }

    /// The first `monitors` live other members of `ids`, into `into`.
    fn first_live<'a>(&self, ids: impl Iterator<Item = &'a NodeId>, into: &mut Ring<NodeId>) {
        for &id in ids {
            if into.len() == self.config.monitors {
                break;
            }
            if id != self.id && self.peers.get(&id).is_some_and(|p| p.member.state.is_live()) {
                into.push(id);
            }
        }
    }

    // ----- sending -----------------------------------------------------------------

    /// Sends a message whose gossip list is empty, packing pending updates into it.
    fn send_gossiping(&mut self, to: SocketAddr, peer: Option<NodeId>, message: Message) {
        let kind = message.kind();
        let pending = !self.queue.is_empty();
        let Some(mut writer) = DatagramWriter::with_items(self.header(), &message, self.max_datagram, pending) else {
            debug_assert!(false, "fixed-size messages always fit the minimum max_datagram");
            return;
        };
        let limit = retransmit_limit(self.retransmit_mult, self.live);
        let packed = self.queue.fill(&mut writer, peer, limit, self.live.saturating_sub(1));
        if packed == 0 && kind == wire::MessageKind::Gossip {
            // Everything pending is known to be there already.
            return;
        }
        self.traffic.gossip_sent += writer.count() as u64;
        self.transmit(to, kind, writer.finish());
    }

    fn send(&mut self, to: SocketAddr, message: &Message) {
        match wire::encode(self.header(), message, self.max_datagram) {
            Ok(payload) => self.transmit(to, message.kind(), payload),
            Err(_) => debug_assert!(false, "messages are sized to fit before they are built"),
        }
    }

    /// The envelope of every datagram this member sends.
    fn header(&self) -> Header {
        Header { cluster_id: self.cluster_id, sender: self.id }
    }

    fn transmit(&mut self, to: SocketAddr, kind: wire::MessageKind, payload: Vec<u8>) {
        self.traffic.sent(kind, &mut self.stats);
        self.traffic.bytes_sent += payload.len() as u64;
        self.outputs.push_back(Output::Transmit(Transmit { to, payload }));
    }

    fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    // ----- internals ---------------------------------------------------------------

    /// Protocol rules about who may say what.
    fn check(&self, header: Header, message: &Message) -> Result<(), WireError> {
        match message {
            Message::Ping { target, .. } if *target != self.id => {
                Err(WireError::Invalid { why: "ping meant for another member" })
            }
            Message::Join { member, .. } if member.id != header.sender => {
                Err(WireError::Invalid { why: "join for another member than the sender" })
            }
            _ if header.sender == self.id => {
                Err(WireError::Invalid { why: "datagram claims to come from this member" })
            }
            _ => Ok(()),
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Up to `count` distinct random other members that pass `eligible`.
    ///
    /// Draws at random from all ids first (the eligible are usually most of them), and
    /// falls back to a scan of the eligible when draws keep missing.
    fn random_members(&mut self, count: usize, eligible: impl Fn(&Peer) -> bool) -> Vec<NodeId> {
        let mut chosen = Vec::with_capacity(count);
        if count == 0 || self.peers.len() < 2 {
            return chosen;
        }
        for _ in 0..count * 4 {
            let (&id, peer) = self.peers.get_index(self.rng.random_range(0..self.peers.len())).expect("drawn in range");
            if id != self.id && !chosen.contains(&id) && eligible(peer) {
                chosen.push(id);
                if chosen.len() == count {
                    return chosen;
                }
            }
        }
        let mut candidates: Vec<NodeId> = self
            .peers
            .values()
            .filter(|p| p.member.id != self.id && !chosen.contains(&p.member.id) && eligible(p))
            .map(|p| p.member.id)
            .collect();
        let wanted = (count - chosen.len()).min(candidates.len());
        // A partial Fisher-Yates shuffle: the first `wanted` are a uniform sample.
        for i in 0..wanted {
            let j = self.rng.random_range(i..candidates.len());
            candidates.swap(i, j);
        }
        chosen.extend_from_slice(&candidates[..wanted]);
        chosen
    }

    /// A random member this one holds Failed, if any.
    fn random_failed(&mut self) -> Option<NodeId> {
        let failed: Vec<NodeId> = self
            .down
            .iter()
            .copied()
            .filter(|id| self.peers.get(id).is_some_and(|p| p.member.state == MemberState::Failed))
            .collect();
        (!failed.is_empty()).then(|| failed[self.rng.random_range(0..failed.len())])
    }

    /// The largest user broadcast payload that fits a datagram on its own.
    fn max_broadcast(&self) -> usize {
        // Envelope, message tag, list length, item tag, origin and seq varints, payload length.
        self.max_datagram - wire::HEADER_LEN - 1 - 1 - 1 - 10 - 10 - 3
    }
}

impl Peer {
    fn new(member: Member, now: Instant) -> Self {
        Self { member, since: now }
    }
}

impl Claim {
    fn accusation(id: NodeId, incarnation: u64, state: MemberState, accuser: NodeId) -> Self {
        Self { id, incarnation, state, addr: None, tags: None, accuser, introduce: true }
    }

    fn from_gossip(item: Gossip) -> Option<Self> {
        Some(match item {
            Gossip::Alive { id, incarnation, addr, tags } => Self {
                id,
                incarnation,
                state: MemberState::Alive,
                addr: Some(addr),
                tags: Some(tags),
                accuser: id,
                introduce: true,
            },
            Gossip::Suspect { id, incarnation, accuser } => {
                Self::accusation(id, incarnation, MemberState::Suspect, accuser)
            }
            Gossip::Failed { id, incarnation, accuser } => {
                Self::accusation(id, incarnation, MemberState::Failed, accuser)
            }
            Gossip::Leave { id, incarnation } => Self::accusation(id, incarnation, MemberState::Left, id),
            Gossip::UserBroadcast { .. } => return None,
        })
    }
}

impl From<&Member> for MemberRecord {
    fn from(m: &Member) -> Self {
        Self { id: m.id, addr: m.addr, incarnation: m.incarnation, state: m.state, tags: m.tags.clone() }
    }
}

/// One live member's share of the view digest: a SplitMix64 mix of its id and incarnation.
fn digest_term(id: NodeId, incarnation: u64) -> u64 {
    let mut z = id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ incarnation.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn gossip_alive(member: &Member) -> Gossip {
    Gossip::Alive { id: member.id, incarnation: member.incarnation, addr: member.addr, tags: member.tags.clone() }
}

/// A uniformly random duration in `[0, max)`.
fn jitter(rng: &mut ChaCha8Rng, max: Duration) -> Duration {
    let nanos = crate::time::duration_nanos(max);
    if nanos == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(rng.random_range(0..nanos))
    }
}

/// memberlist's push-pull scaling: above 32 members, `interval * (ceil(log2 n - 5) + 1)`.
fn push_pull_interval(interval: Duration, n: usize) -> Duration {
    if n <= 32 {
        return interval;
    }
    let multiplier = ((n as f64).log2() - 5.0).ceil() + 1.0;
    interval.mul_f64(multiplier)
}

#[cfg(test)]
mod tests;
