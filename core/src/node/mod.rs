//! [`Node`]: one member's whole protocol state.
//!
//! # How a member keeps its view
//!
//! 1. **Monitoring ring.** Every live member is watched by its `monitors` successors on a
//!    ring of sorted ids, so each member watches its `monitors` predecessors. Each
//!    protocol period (`probe_interval`) it pings one of them, in turn, unless that one
//!    watches it too and pinged it within the cycle (in small clusters: one ping and one
//!    ack per pair and cycle); any datagram from a watched peer is a heartbeat for its
//!    [`PhiAccrual`](crate::PhiAccrual) detector.
//! 2. **Indirect probing.** When phi reaches the threshold the watcher pings the peer again
//!    and asks `indirect_checks` others to ping it too (`PingReq`); they answer `Ack`, or
//!    `Nack` when they heard nothing. Any ack ends the probe.
//! 3. **Suspicion.** A probe without an ack makes the peer Suspect, gossiped with the
//!    watcher as accuser. Every member that hears it starts a Lifeguard suspicion timer
//!    that independent accusers shorten (every watcher probes and accuses on its own, and
//!    each accusation is gossiped as its own update); the first to expire declares the
//!    peer Failed. A member that starts a suspicion on another's word asks the accused
//!    once: a ping carrying the claim.
//! 4. **Refutation.** A member that hears itself suspected, failed or departed at or above
//!    its incarnation bumps its incarnation past the claim, persists it, and gossips Alive;
//!    told of a claim below its incarnation, it gossips that incarnation again, so that
//!    its ack to whoever asked carries the answer.
//! 5. **Local health.** Missed nacks and refutations raise the member's own awareness
//!    score, which stretches its probe timeouts.
//! 6. **Dissemination.** Updates ride on pings, acks and ping-reqs, and on gossip rounds
//!    to `gossip_nodes` random members (recently failed ones included), each at most
//!    `retransmit_mult * ceil(log10(n + 1))` times, never to a member known to have it,
//!    and no more once four members told it to us. Push-pull exchanges whole views: with
//!    a random member while neighbours' digests disagree, now and then with a failed
//!    member so that split clusters merge again, and at once with a member that has not
//!    heard of us.
//! 7. **Anti-entropy along the ring.** Pings carry a digest of the sender's live view
//!    while it has nothing pending, and acks carry the pinged member's when it differs; a
//!    neighbour whose digest stays different gets a push-pull, so a dissemination that
//!    died out is repaired within seconds, not minutes.
//!
//! # The parts
//!
//! `Node` composes small state machines, each in its own module with its own tests, and
//! dispatches inputs and timers to them; each part takes what it needs per call (now, the
//! RNG, the outputs sink, the config):
//!
//! - the view (`membership::view`): members, their order, the down index, the live count
//!   and the digest;
//! - the prober (`membership::prober`): watches and detectors, probes, relays, health;
//! - suspicions (`membership::suspicion`): Lifeguard's timers;
//! - dissemination (`membership::dissemination`): the update queue, gossip rounds, user
//!   broadcasts;
//! - anti-entropy (`membership::anti_entropy`): digests, push-pull, strangers;
//! - the joiner (`membership::joiner`): seeds and join attempts;
//! - partition detection (`partition`): which side of a split keeps running;
//! - the election (`election`): terms, votes, the leader and its lease;
//! - timers (`timer`): one `Timer` per kind of deadline, in a table.
//!
//! What ties them together lives here: which part handles each message and each timer,
//! and (in `claims`) how a claim about a member moves the view, starts or ends a
//! suspicion, queues the update and tells the application.
//!
//! # Outputs
//!
//! Drain [`Node::poll_output`] after every `handle_*` call, in order: a
//! [`Output::Persist`] must reach stable storage before any later output is acted on.
//! Then sleep until [`Node::poll_timeout`] and call [`Node::handle_timeout`]; calling it
//! early or twice is harmless.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{Config, NodeConfig};
use crate::durable::Durable;
use crate::election::{Ctx, Election};
use crate::error::Error;
use crate::member::{tags_encoded_len, Member, MemberState, NodeId, MAX_TAGS_BYTES};
use crate::membership::anti_entropy::{send_state, AntiEntropy};
use crate::membership::broadcast::Key;
use crate::membership::dissemination::Dissemination;
use crate::membership::joiner::{jitter, Joiner};
use crate::membership::prober::{AckOutcome, Prober};
use crate::membership::suspicion::Suspicions;
use crate::membership::view::{Peer, View};
use crate::outbox::{Outbox, To};
use crate::output::{Command, Output, Stats};
use crate::partition::{Decision, Mode, PartitionWatch, Picture, RollCallTiming};
use crate::time::Instant;
use crate::wire::{self, Gossip, Header, MemberRecord, Message, WireError};

mod claims;
mod timer;

use claims::{Claim, MAX_INCARNATION};

/// Election terms at or above this are refused, as incarnations are: no cluster holds
/// this many elections, and refusing them keeps a forged term from exhausting the count.
const MAX_TERM: u64 = 1 << 62;
use timer::{Deadline, Timer, TimerTable};

/// The most members whose conflicting addresses are remembered (see `Node::conflicts`).
pub(crate) const MAX_CONFLICTS_KEPT: usize = 256;

/// The most room for view entries a state transfer's announced size makes a member
/// reserve ahead (a view grows past it one member at a time).
const MAX_VIEW_RESERVE: usize = 1 << 14;

/// One member's protocol state: the sans-IO state machine.
///
/// See the [module documentation](self) for the protocol, its parts and the drain order.
#[derive(Debug)]
pub struct Node {
    // ----- who, and with what settings -----
    id: NodeId,
    addr: SocketAddr,
    config: Config,
    /// The time of the latest input.
    now: Instant,
    rng: ChaCha8Rng,
    /// What survives a crash (written out through `Output::Persist` when it changes).
    durable: Durable,
    /// Whether this member has left the cluster, or stopped because its id is taken.
    left: bool,
    /// Whether this member asked to join and has not yet merged a view from the cluster:
    /// a live member with its id at another address then means the id is taken.
    awaiting_view: bool,
    /// Whether this member stopped because its id is taken ([`Event::IdInUse`]): it
    /// handles nothing more.
    id_taken: bool,
    /// The address each member was last reported at in an [`Event::AddressConflict`], so
    /// that a claim repeated is reported once (bounded: cleared when it grows past
    /// [`MAX_CONFLICTS_KEPT`]).
    conflicts: BTreeMap<NodeId, SocketAddr>,
    // ----- the parts -----
    view: View,
    prober: Prober,
    suspicions: Suspicions,
    dissemination: Dissemination,
    anti_entropy: AntiEntropy,
    joiner: Joiner,
    partition: Option<PartitionWatch>,
    /// The view's version when the partition watch last looked at it.
    partition_seen: u64,
    election: Election,
    /// The latest leader announcement this member gossiped: (term, round, leader).
    leader_gossiped: Option<(u64, u64, NodeId)>,
    timers: TimerTable,
    out: Outbox,
}

impl Node {
    /// A member that knows only itself; join a cluster with [`Command::Join`].
    ///
    /// A member restarted with its [`Durable`] state comes back one incarnation above the
    /// one it had, and persists that at once, so peers that remember it failed accept it.
    pub fn new(config: NodeConfig, now: Instant) -> Result<Self, Error> {
        config.validate()?;
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
        // Spread the periodic work of members started together.
        let first_period = now + jitter(&mut rng, cluster.probe_interval);
        let first_push_pull = now + jitter(&mut rng, cluster.push_pull_interval);
        let me = Member {
            id: config.id,
            addr: config.addr,
            incarnation: durable.incarnation,
            state: MemberState::Alive,
            tags: config.tags,
        };
        let header = Header { cluster_id: cluster.cluster_id, sender: config.id };
        let said = config.initial_cluster_state;
        let election = Election::new(config.id, cluster.election.clone(), &durable, !restarted, said, now, &mut rng);
        durable.abstaining = election.is_abstaining();
        let partition = cluster.partition.clone().map(|p| {
            let roll_call = RollCallTiming {
                ask_every: cluster.probe_interval,
                answer_within: cluster.probe_period(),
                fresh: p.stable_after,
            };
            PartitionWatch::new(p, config.id, now, roll_call)
        });
        let mut node = Self {
            id: config.id,
            addr: config.addr,
            now,
            rng,
            left: false,
            awaiting_view: false,
            id_taken: false,
            conflicts: BTreeMap::new(),
            view: View::new(me, now),
            prober: Prober::new(cluster.phi.clone(), awareness_max(&cluster), cluster.probe_interval, first_period),
            suspicions: Suspicions::default(),
            dissemination: Dissemination::new(now + cluster.gossip_interval),
            anti_entropy: AntiEntropy::new(now, first_push_pull, cluster.probe_interval),
            joiner: Joiner::default(),
            partition,
            partition_seen: 0,
            election,
            leader_gossiped: None,
            timers: TimerTable::default(),
            out: Outbox::new(header, cluster.max_datagram),
            durable,
            config: cluster,
        };
        node.out.persist(node.durable.clone());
        node.sync_timers();
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
        self.view.members()
    }

    /// One member, if known.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.view.member(id)
    }

    /// A number that changes whenever [`Node::members`] does: a member comes or is
    /// forgotten, or a member's state, incarnation, address or tags change (this member's
    /// own included). A driver that copies the members out copies them again only when it
    /// moved. It only goes up, within one `Node`; a restarted node counts from zero.
    pub fn view_version(&self) -> u64 {
        self.view.changes()
    }

    /// How many members are Alive or Suspect, this one included.
    pub fn live_members(&self) -> usize {
        self.view.live()
    }

    /// The members this one watches on the monitoring ring.
    pub fn watched(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.prober.watched()
    }

    /// This member's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.durable.incarnation
    }

    /// The phi of a watched member as of the latest input, or `None` for one this member
    /// does not watch.
    pub fn phi(&self, id: NodeId) -> Option<f64> {
        self.prober.phi(id, self.now)
    }

    /// The local health score (Lifeguard): 0 is healthy; timeouts stretch by `1 + score`.
    pub fn health(&self) -> u32 {
        self.prober.awareness().score()
    }

    /// Traffic counters.
    pub fn stats(&self) -> Stats {
        self.out.stats()
    }

    /// The election term this member knows (0 before any election, or with no voters).
    pub fn term(&self) -> u64 {
        self.election.term()
    }

    /// The leader of [`Node::term`], as far as this member knows: heard directly by a
    /// voter, through gossip by a member that does not vote.
    pub fn leader(&self) -> Option<NodeId> {
        self.election.leader()
    }

    /// Whether this member leads and holds the leader lease at `now` (its own clock): while
    /// it does, no other member can be elected, as long as clocks drift apart by no more
    /// than `max_clock_drift`.
    pub fn is_leaseholder(&self, now: Instant) -> bool {
        self.is_active() && self.election.is_leaseholder(now)
    }

    /// When this member's leader lease ends, on its own clock: while it leads and a
    /// majority of the voters acked one of its heartbeat rounds (the lease may already have
    /// ended; [`Self::is_leaseholder`] says whether it holds now). `None` otherwise.
    pub fn lease_until(&self) -> Option<Instant> {
        self.election.lease_until().filter(|_| self.is_active())
    }

    /// Whether this voter, started without its durable state, still waits before it votes
    /// or stands again: for the terms of a majority of the other voters, or for the
    /// operator's [`Command::ResumeVoting`] (see [`InitialClusterState`](crate::InitialClusterState)).
    pub fn is_abstaining(&self) -> bool {
        self.election.is_abstaining()
    }

    /// Whether this member is on a side of a partition that keeps running
    /// ([`Mode::Normal`]) or not ([`Mode::ReadOnly`]).
    pub fn mode(&self) -> Mode {
        self.partition.as_ref().map_or(Mode::Normal, PartitionWatch::mode)
    }

    /// The partition decision in force, if a partition was detected and has not healed.
    pub fn partition(&self) -> Option<&Decision> {
        self.partition.as_ref().and_then(PartitionWatch::decision)
    }

    /// Whether this member has heard from the cluster since it asked to join (always true
    /// for a member that never asked).
    pub fn is_joined(&self) -> bool {
        self.joiner.is_joined()
    }

    // ----- inputs ------------------------------------------------------------------

    /// Feeds one datagram received from `from`.
    ///
    /// Any byte string is safe: a rejected datagram returns why, is counted in
    /// [`Stats::dropped`], and changes nothing else.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "datagram", level = "info", skip_all, fields(member = %self.id, now = %now, from = %from)))]
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Result<(), WireError> {
        self.datagram(now, from, None, bytes)
    }

    /// Feeds one datagram received from `from` that the driver knows member `peer` sent
    /// (the id of an authenticated connection: the QUIC runtime's peer certificate).
    ///
    /// As [`Node::handle_datagram`], and the envelope is read once: a datagram whose
    /// envelope names another sender than `peer` is refused with
    /// [`WireError::WrongSender`] (counted in [`DropCounts::wrong_sender`](crate::DropCounts::wrong_sender))
    /// before its body is read. The error tells a driver which of its own counters to
    /// bump: `WrongSender` is a member speaking for another, the envelope's errors
    /// (`TooLarge` to `WrongCluster`) are not conclave datagrams of this cluster, and
    /// `Malformed` and `Invalid` are bodies the core refused.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "datagram", level = "info", skip_all, fields(member = %self.id, now = %now, from = %from, peer = %peer)))]
    pub fn handle_datagram_from(
        &mut self,
        now: Instant,
        from: SocketAddr,
        peer: NodeId,
        bytes: &[u8],
    ) -> Result<(), WireError> {
        self.datagram(now, from, Some(peer), bytes)
    }

    fn datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        peer: Option<NodeId>,
        bytes: &[u8],
    ) -> Result<(), WireError> {
        self.now = now;
        if self.id_taken {
            // Stopped: its id belongs to another member (`Event::IdInUse`).
            return Ok(());
        }
        let decoded = wire::decode_from(bytes, self.config.cluster_id, self.config.max_datagram, peer)
            .and_then(|(header, message)| self.check(header, &message).map(|()| (header, message)));
        let (header, message) = match decoded {
            Ok(ok) => ok,
            Err(error) => {
                self.out.rejected(&error);
                return Err(error);
            }
        };
        self.out.received(message.kind(), bytes.len(), message.gossip().len());
        let sender = header.sender;
        // A member is heard at the address it is known by: datagrams under its id from
        // elsewhere (another process with its id, or its restart at a new address) neither
        // keep it alive here nor end a probe of it, so the member at the known address is
        // judged on its own answers.
        let at_its_address = self.view.member(sender).is_none_or(|m| m.addr == from || !m.state.is_live());
        if at_its_address {
            self.prober.heard_from(sender, now);
        }
        if !matches!(message, Message::Join { .. } | Message::PushPull { .. }) && !self.prober.is_neighbour(sender) {
            match self.view.member(sender).map(|m| m.state) {
                None => self.sync_with_stranger(To::member(sender, from)),
                Some(MemberState::Failed) => self.sync_with_revenant(To::member(sender, from)),
                Some(_) => {}
            }
        }
        match message {
            Message::Ping { seq, quiet: true, .. } => {
                // A roll call's question: a bare answer, with what this member's partition
                // watch sees.
                let picture = self.reported_picture();
                self.out
                    .send(To::member(sender, from), &Message::Ack { seq, digest: None, picture, gossip: Vec::new() });
            }
            Message::Ping { seq, digest, gossip, .. } => {
                if at_its_address {
                    self.prober.pinged_by(sender, now);
                }
                self.merge_gossip(sender, gossip);
                // Our digest goes back only when it tells the pinger something: not when
                // the ping carried the same one (views agree, the usual case).
                let mine = self.quiet_digest();
                let picture = self.reported_picture();
                let ack =
                    Message::Ack { seq, digest: mine.filter(|&m| digest != Some(m)), picture, gossip: Vec::new() };
                self.send_gossiping(To::member(sender, from), ack);
                self.compare_digest(sender, from, digest);
            }
            Message::Ack { seq, digest, picture, gossip } => {
                self.merge_gossip(sender, gossip);
                if let Some(partition) = &mut self.partition {
                    let out = &mut self.out;
                    partition.on_ack(now, sender, seq, picture, &mut |e| out.emit(e));
                }
                if let AckOutcome::Relayed { requester, seq } = self.prober.on_ack(sender, seq, now) {
                    self.answer_requester(requester, seq);
                }
                self.compare_digest(sender, from, digest);
            }
            Message::Nack { seq } => self.prober.on_nack(seq),
            Message::PingReq { seq, target, target_addr, gossip } => {
                self.merge_gossip(sender, gossip);
                self.relay_probe(To::member(sender, from), seq, target, target_addr);
            }
            Message::Gossip { gossip } => self.merge_gossip(sender, gossip),
            Message::PushPull { reply, part, parts, members } => {
                self.joiner.stop();
                // The sender's whole view comes in `parts` datagrams of about this many
                // records: make room for it at once. (Bounded: a forged count must not
                // make a member reserve much.)
                self.view.reserve_for(usize::from(parts).saturating_mul(members.len()).min(MAX_VIEW_RESERVE));
                for record in members {
                    self.merge_record(sender, record, false);
                }
                self.awaiting_view = false;
                if reply && part == 0 {
                    self.send_view(To::member(sender, from), false, "push-pull reply");
                }
            }
            Message::Join { member, send_state: wants_state } => {
                // A process joining under a live member's id from another address is
                // reported even when the member here is at a newer incarnation (a claim
                // relayed by others is only when it would otherwise win).
                match self.view.member(member.id) {
                    Some(current) if current.state.is_live() && current.addr != member.addr => {
                        let existing = current.clone();
                        self.address_conflict(existing, member.addr);
                    }
                    _ => self.merge_record(sender, member, true),
                }
                if wants_state {
                    self.send_view(To::member(sender, from), false, "join reply");
                }
            }
            election @ (Message::RequestVote { .. }
            | Message::Vote { .. }
            | Message::Heartbeat { .. }
            | Message::HeartbeatAck { .. }
            | Message::TimeoutNow { .. }) => {
                if self.is_active() {
                    self.with_election(|e, ctx| e.on_message(ctx, sender, from, election));
                }
            }
        }
        self.settle();
        Ok(())
    }

    /// Runs whatever is due at `now`: relays' nacks, probe and suspicion expiries, indirect
    /// probes, the protocol period, push-pull, gossip, join retries. Extra calls do nothing.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "timeout", level = "info", skip_all, fields(member = %self.id, now = %now)))]
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.id_taken {
            self.sync_timers();
            return;
        }
        for timer in Timer::ALL {
            // Each is judged after the ones before it ran: an expired probe may make an
            // indirect probe due, a suspicion may give gossip something to send.
            let deadline = self.deadline(timer);
            self.timers.set(timer, deadline);
            if self.timers.is_expired(timer, now) {
                self.fire(timer, now);
            }
        }
        self.settle();
    }

    /// Carries out an application request.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "command", level = "info", skip_all, fields(member = %self.id, now = %now)))]
    pub fn handle_command(&mut self, now: Instant, command: Command) -> Result<(), Error> {
        self.now = now;
        match command {
            Command::Join(seeds) => {
                self.joiner.start(seeds, self.addr, &mut self.rng, now);
                self.awaiting_view = self.is_active() && !self.joiner.is_joined();
                self.join_attempt(now);
            }
            Command::Leave => self.leave(),
            Command::SetTags(tags) => {
                let len = tags_encoded_len(&tags);
                if len > MAX_TAGS_BYTES {
                    return Err(Error::TagsTooLarge { len, max: MAX_TAGS_BYTES });
                }
                self.view.set_tags(tags);
                self.bump_incarnation(self.durable.incarnation);
            }
            Command::Broadcast(payload) => {
                let max = self.max_broadcast();
                if payload.len() > max {
                    return Err(Error::BroadcastTooLarge { len: payload.len(), max });
                }
                // Unique across restarts, which may replay the seeded RNG.
                let seq = self.rng.next_u64() ^ now.as_nanos().rotate_left(29) ^ self.durable.incarnation;
                self.dissemination.sent_broadcast(self.id, seq, now);
                let item = Gossip::UserBroadcast { origin: self.id, seq, payload };
                self.dissemination.push(Key::User(self.id, seq), &item);
            }
            Command::ReportUnreachable(id) => {
                if id != self.id && self.is_active() {
                    self.start_indirect_probe(id, now);
                }
            }
            Command::TransferLeadership(to) => {
                if !self.with_election(|e, ctx| e.transfer(ctx, Some(to))) {
                    return Err(Error::NotLeader { leader: self.election.leader() });
                }
            }
            Command::ResumeVoting => self.with_election(|e, ctx| e.resume_voting(ctx)),
        }
        self.settle();
        Ok(())
    }

    // ----- outputs -----------------------------------------------------------------

    /// The next output, in the order produced. See the [module docs](self) for the order rule.
    #[must_use = "outputs must be acted on"]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    /// When [`Node::handle_timeout`] should next be called, if ever.
    #[must_use = "the node must be woken at this instant"]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_wakeup()
    }

    // ----- timers ------------------------------------------------------------------

    /// When `timer` is next due, from the part that keeps it.
    fn deadline(&self, timer: Timer) -> Option<Deadline> {
        if self.id_taken {
            return None;
        }
        let active = self.is_active();
        let at = match timer {
            Timer::RelayNack => self.prober.relay_deadline(),
            Timer::ProbeTimeout => self.prober.probe_deadline(),
            Timer::Suspicion => self.suspicions.deadline(),
            Timer::IndirectProbe => self.prober.indirect_deadline().filter(|_| active),
            Timer::ProbePeriod => Some(self.prober.next_period()).filter(|_| active),
            Timer::PushPull => Some(self.anti_entropy.next_push_pull()).filter(|_| active),
            Timer::GossipRound => {
                let at = self.dissemination.next_round();
                return Some(Deadline { at, wakes: !self.dissemination.is_idle() });
            }
            Timer::JoinRetry => self.joiner.deadline(),
            Timer::Election => self.election.next_deadline().filter(|_| active),
            Timer::Partition => self.partition.as_ref().and_then(|p| p.deadline(self.now)),
        };
        at.map(Deadline::wake)
    }

    /// Runs one expired timer.
    fn fire(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::RelayNack => {
                for (requester, seq) in self.prober.expire_relays(now) {
                    self.out.send(requester, &Message::Nack { seq });
                }
            }
            Timer::ProbeTimeout => {
                while let Some(probe) = self.prober.expire_probe(now) {
                    let target = probe.target;
                    let Some(peer) = self.view.get(target) else { continue };
                    if peer.member.state.is_live() {
                        trace_event!(
                            info,
                            accused = %target,
                            incarnation = peer.member.incarnation,
                            phi = self.prober.phi(target, now),
                            relays = probe.relays,
                            nacks = probe.nacks,
                            health = self.prober.awareness().score(),
                            "suspects: no ack to the indirect probe (direct ping and {} relays)",
                            probe.relays
                        );
                        // Suspects it, or confirms the running suspicion of it.
                        let incarnation = peer.member.incarnation;
                        self.apply_claim(Claim::accusation(target, incarnation, MemberState::Suspect, self.id));
                    }
                }
            }
            Timer::Suspicion => {
                while let Some((id, mut suspicion)) = self.suspicions.expire(now) {
                    let Some(incarnation) = self.view.member(id).map(|m| m.incarnation) else { continue };
                    if self.prober.heard_since(id, suspicion.started()) && suspicion.hold_back(now) {
                        // It spoke to us after we began to suspect it: alive, its refutation
                        // lost. Let the suspicion run its maximum (the buddy system carries
                        // the claim to it meanwhile) rather than end it at the minimum.
                        trace_event!(info, accused = %id, "suspicion held back: the accused spoke since it began");
                        self.suspicions.resume(id, suspicion);
                        continue;
                    }
                    trace_event!(
                        warn,
                        accused = %id,
                        incarnation,
                        since = %suspicion.started(),
                        accusers = ?suspicion.accusers().collect::<Vec<_>>(),
                        "declares failed: suspicion expired unrefuted"
                    );
                    self.forget_accusations(id, &suspicion);
                    self.apply_claim(Claim::accusation(id, incarnation, MemberState::Failed, self.id));
                }
            }
            Timer::IndirectProbe => {
                for id in self.prober.due_indirect(now) {
                    if self.view.get(id).is_some_and(|p| self.may_accuse(p)) {
                        self.start_indirect_probe(id, now);
                    } else {
                        // Suspected and already accused by us, say: look again next interval.
                        self.prober.defer_indirect(id, now + self.config.probe_interval);
                    }
                }
            }
            Timer::ProbePeriod => {
                if let Some((id, addr, seq)) = self.prober.start_period(now) {
                    let digest = self.quiet_digest();
                    self.send_gossiping(
                        To::member(id, addr),
                        Message::Ping { seq, target: id, digest, quiet: false, gossip: Vec::new() },
                    );
                }
                self.reach_the_dead(now);
            }
            Timer::PushPull => self.push_pull(now),
            Timer::GossipRound => {
                self.dissemination.round(now, &self.view, &mut self.rng, &mut self.out, &self.config);
            }
            Timer::JoinRetry => self.join_attempt(now),
            Timer::Election => {
                self.with_election(|e, ctx| e.on_timeout(ctx));
            }
            Timer::Partition => {
                let expected = self.expected_members();
                if let Some(partition) = &mut self.partition {
                    let out = &mut self.out;
                    partition.on_timeout(now, &expected, &mut |e| out.emit(e));
                }
                self.roll_call(now);
            }
        }
    }

    /// After every input: the ring follows the view, the partition watch and a non-voter's
    /// leader the members' states, a new leader tells the others, and the timer table
    /// follows the parts.
    fn settle(&mut self) {
        if self.view.take_ring_change() {
            self.prober.refresh_ring(&self.view, self.config.monitors, self.is_active(), self.now);
        }
        if self.view.version() != self.partition_seen {
            self.partition_seen = self.view.version();
            self.watch_partition();
            if let Some(leader) = self.election.leader() {
                if self.view.down().contains(&leader) {
                    self.with_election(|e, ctx| e.on_member_down(ctx, leader));
                }
            } else if let Some(forgotten) = self.election.forgotten_leader() {
                if self.view.member(forgotten).is_some_and(|m| m.state.is_live()) {
                    self.with_election(|e, ctx| e.on_member_up(ctx, forgotten));
                }
            }
        }
        self.announce_leadership();
        self.sync_timers();
    }

    // ----- partitions and the election -----------------------------------------------

    /// The members the cluster should have, oldest first: the voters (in their configured
    /// order) that this member knows, or every member known that has not left (lowest id
    /// first).
    fn expected_members(&self) -> Vec<NodeId> {
        let departed = |m: &Member| m.state == MemberState::Left && m.id != self.id;
        if self.config.election.voters.is_empty() {
            self.view.members().filter(|m| !departed(m)).map(|m| m.id).collect()
        } else {
            let voters = &self.config.election.voters;
            voters.iter().copied().filter(|&v| self.view.member(v).is_some_and(|m| !departed(m))).collect()
        }
    }

    /// Tells the partition watch which expected members this member cannot reach (held
    /// Failed) and which are in dispute (held Suspect).
    fn watch_partition(&mut self) {
        let Some(partition) = &mut self.partition else { return };
        let voters = &self.config.election.voters;
        let expected = |id: &NodeId| voters.is_empty() || voters.contains(id);
        let view = &self.view;
        let failed = |id: &NodeId| view.member(*id).is_some_and(|m| m.state == MemberState::Failed);
        let picture = Picture {
            unreachable: view.down().iter().filter(|id| expected(id) && failed(id)).copied().collect(),
            indirect: view.suspects().iter().filter(|id| expected(id)).copied().collect(),
        };
        let alive = if picture.is_whole() {
            BTreeSet::new()
        } else {
            let me = self.id;
            let called = |m: &&Member| m.id != me && m.state.is_live() && expected(&m.id);
            view.members().filter(called).map(|m| m.id).collect()
        };
        let out = &mut self.out;
        partition.update(self.now, picture, &alive, &mut |e| out.emit(e));
    }

    /// What this member's partition watch sees, as its acks report it.
    fn reported_picture(&self) -> Option<u32> {
        self.partition.as_ref().and_then(PartitionWatch::reported_picture)
    }

    /// Pings the members the partition watch's roll call asks now.
    fn roll_call(&mut self, now: Instant) {
        let Some(partition) = &mut self.partition else { return };
        for id in partition.to_ask(now) {
            let Some(addr) = self.view.member(id).map(|m| m.addr) else { continue };
            let seq = self.prober.next_seq();
            partition.asked(id, seq, now);
            self.out.send(
                To::member(id, addr),
                &Message::Ping { seq, target: id, digest: None, quiet: true, gossip: Vec::new() },
            );
        }
    }

    /// Runs `f` on the election with what it may use of this member.
    fn with_election<R>(&mut self, f: impl FnOnce(&mut Election, &mut Ctx<'_>) -> R) -> R {
        let view = &self.view;
        let addrs = |id: NodeId| view.member(id).filter(|m| m.state != MemberState::Left).map(|m| m.addr);
        let mut ctx =
            Ctx { now: self.now, rng: &mut self.rng, out: &mut self.out, durable: &mut self.durable, addrs: &addrs };
        f(&mut self.election, &mut ctx)
    }

    /// A leader tells the members that do not vote (on election, and now and then after).
    fn announce_leadership(&mut self) {
        if self.election.take_announcement() {
            let term = self.election.term();
            let round = match self.leader_gossiped {
                Some((t, r, _)) if t == term => r + 1,
                _ => 0,
            };
            self.leader_gossiped = Some((term, round, self.id));
            self.dissemination.push(Key::Leader, &Gossip::Leader { term, leader: self.id, round });
        }
    }

    fn sync_timers(&mut self) {
        for timer in Timer::ALL {
            let deadline = self.deadline(timer);
            self.timers.set(timer, deadline);
        }
    }

    // ----- probing -----------------------------------------------------------------

    /// Whether this member still takes part (it has not left).
    fn is_active(&self) -> bool {
        !self.left
    }

    /// Whether `id` is a known member; ring neighbours, the usual case, are answered
    /// without a look into the whole view.
    fn knows(&self, id: NodeId) -> bool {
        self.prober.is_neighbour(id) || self.view.contains(id)
    }

    /// An Alive peer may be accused; a Suspect one may be accused once more by each
    /// member, which is what makes the Lifeguard confirmations independent.
    fn may_accuse(&self, peer: &Peer) -> bool {
        match peer.member.state {
            MemberState::Alive => true,
            MemberState::Suspect => self.suspicions.awaits(peer.member.id, self.id),
            MemberState::Failed | MemberState::Left => false,
        }
    }

    /// SWIM's second step: ping the peer again and ask `indirect_checks` others to ping it.
    fn start_indirect_probe(&mut self, target: NodeId, now: Instant) {
        let Some(peer) = self.view.get(target) else { return };
        if self.prober.is_probing(target) || !self.may_accuse(peer) {
            return;
        }
        let target_addr = peer.member.addr;
        let seq = self.prober.next_seq();
        // The round trip measured to the target, at least the configured timeout, at most a
        // watched peer's probe period (each is pinged every `monitors` intervals).
        let timeout = self.prober.probe_timeout(target, self.config.probe_timeout, self.config.probe_period());
        let relays = self.view.random_members(&mut self.rng, self.config.indirect_checks, |p| {
            p.member.state == MemberState::Alive && p.member.id != target
        });
        for &relay in &relays {
            if let Some(addr) = self.view.member(relay).map(|m| m.addr) {
                self.send_gossiping(
                    To::member(relay, addr),
                    Message::PingReq { seq, target, target_addr, gossip: Vec::new() },
                );
            }
        }
        let ping = Message::Ping { seq, target, digest: None, quiet: false, gossip: Vec::new() };
        self.send_gossiping(To::member(target, target_addr), ping);
        let next = now + self.prober.awareness().scale(self.config.probe_interval);
        self.prober.probe_started(seq, target, relays.len(), now + timeout, next);
    }

    fn relay_probe(&mut self, requester: To, requester_seq: u64, target: NodeId, target_addr: SocketAddr) {
        if target == self.id {
            self.answer_requester(requester, requester_seq);
            return;
        }
        let seq = self.prober.next_seq();
        // Lifeguard: nack before the requester's own timeout, so it can tell a dead target
        // from its own missing messages.
        // A late ack is still passed on for a probe period (the longest a requester waits):
        // at long round trips it comes after the nack.
        let nack_at = self.now + self.config.probe_timeout.mul_f64(0.8);
        let give_up_at = self.now + self.config.probe_period();
        self.prober.relay_started(seq, requester, requester_seq, target, (nack_at, give_up_at.max(nack_at)));
        let ping = Message::Ping { seq, target, digest: None, quiet: false, gossip: Vec::new() };
        self.send_gossiping(To::member(target, target_addr), ping);
    }

    // ----- anti-entropy and joining --------------------------------------------------

    fn push_pull(&mut self, now: Instant) {
        let exchange = self.anti_entropy.start_push_pull(now, self.config.push_pull_interval, self.view.live());
        for id in self.view.reap(now, self.config.tombstone_ttl) {
            self.anti_entropy.forget(id);
        }
        self.dissemination.forget_old(now);
        // Anti-entropy is the digests' job while neighbours keep reporting the same view;
        // the whole-view exchange with a random member is for when they do not (or cannot:
        // digests travel only when nothing is pending).
        if exchange {
            if let Some(&id) = self.view.random_members(&mut self.rng, 1, |p| p.member.state.is_live()).first() {
                let addr = self.view.member(id).expect("drawn from the view").addr;
                self.send_view(To::member(id, addr), true, "periodic push-pull");
            }
        }
        // Now and then reach past the live view, so that a healed partition merges again:
        // a member this one holds failed, or, for a member left alone, a seed.
        if self.rng.random_bool(0.5) {
            let seeds = self.joiner.seeds();
            let to = match self.view.random_failed(&mut self.rng) {
                Some(id) => self.view.member(id).map(|m| To::member(id, m.addr)),
                None if self.view.live() == 1 && !seeds.is_empty() => {
                    Some(To::addr(seeds[self.rng.random_range(0..seeds.len())]))
                }
                None => None,
            };
            if let Some(to) = to {
                self.send_view(to, true, "push-pull past the live view");
            }
        }
    }

    /// A member that hears from one it does not know has missed gossip (members that
    /// joined at once, a dissemination that died out): exchange views with it, at most
    /// once per gossip interval.
    fn sync_with_stranger(&mut self, from: To) {
        if self.is_active() && self.anti_entropy.stranger_sync(self.now, self.config.gossip_interval) {
            self.send_view(from, true, "a stranger was heard");
        }
    }

    /// A member held Failed spoke to us: the network between us works again (a healed
    /// partition) or it came back. Exchange views with it, so it hears what we hold of it and
    /// refutes, and both sides learn what they missed; at most once per gossip interval.
    fn sync_with_revenant(&mut self, from: To) {
        if self.is_active() && self.anti_entropy.revenant_sync(self.now, self.config.gossip_interval) {
            self.send_view(from, true, "a member held failed was heard");
        }
    }

    /// Once per probe period (a watched peer's, `probe_interval * monitors`), ping a random
    /// member held Failed: after a partition heals, its ack is the first datagram across,
    /// and the view exchange it sets off merges the sides within seconds.
    fn reach_the_dead(&mut self, now: Instant) {
        if !self.anti_entropy.reach_due(now) {
            return;
        }
        self.anti_entropy.reached(now + self.config.probe_period());
        let Some(id) = self.view.random_failed(&mut self.rng) else { return };
        let Some(addr) = self.view.member(id).map(|m| m.addr) else { return };
        let seq = self.prober.next_seq();
        self.out.send(
            To::member(id, addr),
            &Message::Ping { seq, target: id, digest: None, quiet: false, gossip: Vec::new() },
        );
    }

    /// Sends this member's whole view to `to` (a state transfer), for `why`.
    fn send_view(&mut self, to: To, reply: bool, why: &'static str) {
        trace_event!(debug, to = %to.addr, members = self.view.len(), reply, "state transfer: {why}");
        let _ = why;
        send_state(&self.view, &mut self.out, to, reply);
        // A member that needs a view (it joins, or comes back) needs the leader too.
        if let Some(leader) = self.election.leader() {
            let term = self.election.term();
            let round = self.leader_gossiped.filter(|&(t, _, l)| (t, l) == (term, leader)).map_or(0, |(_, r, _)| r);
            let item = Gossip::Leader { term, leader, round };
            self.out.send(to, &Message::Gossip { gossip: vec![item] });
        }
    }

    /// This member's digest, when it has nothing pending to gossip (with updates in
    /// flight, views differ for a moment and that says nothing).
    fn quiet_digest(&self) -> Option<u32> {
        self.dissemination.is_idle().then_some(self.view.digest() as u32)
    }

    /// A neighbour's quiet digest: a view that stays different gets a whole-view exchange.
    fn compare_digest(&mut self, sender: NodeId, from: SocketAddr, digest: Option<u32>) {
        let Some(digest) = digest else { return };
        if !self.dissemination.is_idle() || !self.is_active() || !self.knows(sender) {
            return;
        }
        let (probe, push_pull) = (self.config.probe_interval, self.config.push_pull_interval);
        // The wire carries the low 32 bits: a false match is one in four billion.
        let (theirs, ours) = (u64::from(digest), u64::from(self.view.digest() as u32));
        if self.anti_entropy.compare(sender, theirs, ours, self.now, probe, push_pull) {
            self.send_view(To::member(sender, from), true, "a neighbour's view digest stayed different");
        }
    }

    /// A join attempt, if one is due: tell every seed, ask one for its view.
    fn join_attempt(&mut self, now: Instant) {
        let Some(asked) = self.joiner.attempt(now, &mut self.rng, &self.config) else { return };
        let member = MemberRecord::from(self.view.me());
        for (i, &seed) in self.joiner.seeds().iter().enumerate() {
            self.out.send(To::addr(seed), &Message::Join { member: member.clone(), send_state: i == asked });
        }
    }

    fn leave(&mut self) {
        if !self.is_active() {
            return;
        }
        let incarnation = self.durable.incarnation;
        // A leader hands over before it goes.
        self.with_election(|e, ctx| e.retire(ctx));
        self.left = true;
        self.view.transition(self.id, (incarnation, MemberState::Left), None, None, self.now);
        self.joiner.stop();
        self.prober.stop_probing();
        let item = Gossip::Leave { id: self.id, incarnation };
        self.dissemination.push(Key::Member(self.id), &item);
        // Tell several members at once rather than wait for the next gossip round.
        let fanout = self.config.gossip_nodes.max(self.config.monitors) * 2;
        let targets = self.view.random_members(&mut self.rng, fanout, |p| p.member.state.is_live());
        for id in targets {
            let addr = self.view.member(id).expect("drawn from the view").addr;
            self.out.send(To::member(id, addr), &Message::Gossip { gossip: vec![item.clone()] });
        }
    }

    // ----- sending -----------------------------------------------------------------

    /// Sends a message whose gossip list is empty, packing pending updates into it, and,
    /// to a member this one holds suspect, the suspicion first (Lifeguard's buddy system:
    /// the suspect hears the claim on every probe and ack, and can refute it).
    fn send_gossiping(&mut self, to: To, message: Message) {
        let peer = to.id;
        let claim = peer.filter(|_| self.config.lifeguard.buddy_system).and_then(|id| self.suspicion_claim(id));
        let (view, config) = (&self.view, &self.config);
        self.dissemination.send_gossiping(&mut self.out, to, peer, message, claim.as_ref(), view, config);
    }

    /// Answers a ping-req: the target's ack (or this member's own, when it was the target),
    /// under the requester's sequence number. The gossip packed in is not tailored to the
    /// requester (no buddy claim, no skipping what it holds): the ack stands for the target.
    fn answer_requester(&mut self, requester: To, seq: u64) {
        let ack = Message::Ack { seq, digest: None, picture: None, gossip: Vec::new() };
        let (view, config) = (&self.view, &self.config);
        self.dissemination.send_gossiping(&mut self.out, requester, None, ack, None, view, config);
    }

    /// The suspicion of `id` this member holds, as the gossip item that carries it.
    fn suspicion_claim(&self, id: NodeId) -> Option<Gossip> {
        if self.suspicions.is_empty() {
            return None;
        }
        let member = self.view.member(id).filter(|m| m.state == MemberState::Suspect)?;
        let accuser = self.suspicions.get(id)?.accusers().next()?;
        Some(Gossip::Suspect { id, incarnation: member.incarnation, accuser })
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
            Message::RequestVote { term, .. }
            | Message::Vote { term, .. }
            | Message::Heartbeat { term, .. }
            | Message::HeartbeatAck { term, .. }
            | Message::TimeoutNow { term }
                if *term > MAX_TERM =>
            {
                Err(WireError::Invalid { why: "an election term no election reaches" })
            }
            _ => Ok(()),
        }
    }

    /// The largest user broadcast payload that fits a datagram on its own.
    fn max_broadcast(&self) -> usize {
        // Envelope, message tag, list length, item tag, origin and seq varints, payload length.
        // The envelope of the largest sender id, not this member's: others pass it on under
        // their own ids.
        let widest = Header { cluster_id: self.config.cluster_id, sender: NodeId(u64::MAX) };
        self.config.max_datagram - wire::envelope_len(widest) - 1 - 1 - 1 - 10 - 10 - 3
    }

    /// Checks the view's indexes and digest against its members, from scratch.
    #[cfg(test)]
    pub(crate) fn assert_view_consistent(&self) {
        self.view.assert_consistent();
    }

    /// When the election part acts next.
    #[cfg(test)]
    pub(crate) fn election_deadline(&self) -> Option<Instant> {
        self.election.next_deadline()
    }

    #[cfg(test)]
    pub(crate) fn digest(&self) -> u64 {
        self.view.digest()
    }
}

/// The local health score's ceiling: 1 (a score that stays 0) with local health off.
fn awareness_max(config: &Config) -> u32 {
    if config.lifeguard.local_health {
        config.awareness_max_multiplier
    } else {
        1
    }
}

impl From<&Member> for MemberRecord {
    fn from(m: &Member) -> Self {
        Self { id: m.id, addr: m.addr, incarnation: m.incarnation, state: m.state, tags: m.tags.clone() }
    }
}

#[cfg(test)]
mod tests;
