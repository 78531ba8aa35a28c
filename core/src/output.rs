//! What a [`Node`](crate::Node) gives back and takes in besides bytes: [`Output`],
//! [`Event`], [`Command`] and [`Stats`].

use std::net::SocketAddr;

use crate::durable::Durable;
use crate::member::{Member, NodeId, Tags};
use crate::wire::{MessageKind, WireError};

/// One output of a node, drained in order with `Node::poll_output`.
///
/// Order matters for one kind: a [`Output::Persist`] must be on stable storage before the
/// driver acts on any output that comes after it (a vote must not leave before the vote is
/// remembered; a refutation must not leave before its incarnation is).
#[derive(Clone, Debug, PartialEq)]
#[must_use = "outputs must be acted on: dropping a Transmit loses a message, dropping a Persist risks a double vote"]
pub enum Output {
    /// Send these bytes.
    Transmit(Transmit),
    /// Tell the application.
    Event(Event),
    /// Write this durable state to stable storage (and sync) before acting on later outputs.
    Persist(Durable),
}

/// A datagram to send.
///
/// `to` is where it goes; `to_id` is the member it is for, when this member knows it: a
/// member of its view, or the sender of the datagram it answers. It is `None` for a seed
/// (a join goes to an address, whoever runs there). A driver that holds a connection per
/// member (the QUIC runtime: each connection's member id comes from its certificate) may
/// send over the connection `to_id` opened rather than dial `to`: a member behind a NAT
/// is reached where its datagrams come from, not at the address it advertises. A driver
/// of plain datagrams sends to `to` and may ignore `to_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The destination address.
    pub to: SocketAddr,
    /// The member the datagram is for, when known (`None`: a seed's address).
    pub to_id: Option<NodeId>,
    /// The datagram, at most `max_datagram` bytes.
    pub payload: Vec<u8>,
}

/// The side of a partition a member is on, as [`Event::PartitionDetected`] names it (also
/// `partition::Side`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The side that keeps running.
    Majority,
    /// The side that stops taking writes (`Mode::ReadOnly`).
    Minority,
}

/// Something the application should know. Each is emitted once per change, per observer.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A member joined (or was first heard of), alive.
    MemberJoined(Member),
    /// A member changed its tags (or its address).
    MemberUpdated(Member),
    /// A member is suspected: it missed its probes and has not yet refuted.
    MemberSuspected(Member),
    /// A member was declared failed.
    MemberFailed(Member),
    /// A suspected or failed member proved it is alive.
    MemberRecovered(Member),
    /// A member left gracefully.
    MemberLeft(Member),
    /// Someone claims that `existing`, live here, is at another address, `other`: another
    /// process runs with its id (a copied configuration), or it moved without leaving. The
    /// claim was ignored: the member keeps its place and its address until it is held
    /// failed or has left (memberlist's conflict notification). Reported once per
    /// address claimed.
    AddressConflict {
        /// The member as this member holds it.
        existing: Member,
        /// The address the claim gives it.
        other: SocketAddr,
    },
    /// This member's id is taken: while it was joining, the cluster told it that a live
    /// member with its id runs at `holder.addr`. It takes no further part (it probes,
    /// gossips and refutes nothing more, and does not leave on the other's behalf); the
    /// driver should stop it and say why.
    IdInUse {
        /// The member running with this id, as the cluster holds it.
        holder: Member,
    },
    /// A user broadcast from `origin`, delivered once.
    Broadcast {
        /// The member that broadcast it.
        origin: NodeId,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// This member learned that `leader` leads `term` (or was elected itself).
    LeaderElected {
        /// The term.
        term: u64,
        /// Its leader.
        leader: NodeId,
    },
    /// This member no longer knows a leader for `term` (it stepped down, the leader went
    /// silent, or a later term began).
    LeaderLost {
        /// The term whose leader is lost.
        term: u64,
    },
    /// Some expected members stayed unreachable for `stable_after`: which side keeps
    /// running, as this member decided it.
    PartitionDetected {
        /// The members that keep running (empty when every side goes down).
        majority: Vec<NodeId>,
        /// The members that go down (read-only).
        minority: Vec<NodeId>,
        /// This member's side.
        local_side: Side,
    },
    /// Every expected member is reachable again after a detected partition.
    PartitionHealed,
    /// This member is on a side that stopped: it enters `Mode::ReadOnly`.
    QuorumLost,
    /// It is back on a side that runs: `Mode::Normal` again.
    QuorumRegained,
}

/// An application request to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Join the cluster through these seeds, retrying with backoff until one answers.
    Join(Vec<SocketAddr>),
    /// Leave the cluster gracefully: tell the others, then stop probing.
    Leave,
    /// Publish new tags (at most `MAX_TAGS_BYTES` encoded).
    SetTags(Tags),
    /// Deliver a small payload once to every member.
    Broadcast(Vec<u8>),
    /// The application could not reach this member (a failed RPC, say): probe it now.
    ReportUnreachable(NodeId),
    /// The leader hands leadership to this voter, which stands at once; an error on a
    /// member that does not lead.
    TransferLeadership(NodeId),
    /// The operator's word that this voter, started without its disk, may vote again
    /// (see `InitialClusterState`): it ends its wait at once, closes the highest term it
    /// has learnt to further votes and votes from the next. Safe once no election it may
    /// have voted in before it lost its disk can still be under way, and no leader of such
    /// a term runs (the old cluster is gone, or the terms it learnt are the latest). Does
    /// nothing on a member that does not wait ([`Node::is_abstaining`](crate::Node::is_abstaining)).
    ResumeVoting,
}

/// Message counts per kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindCounts([u64; MessageKind::ALL.len()]);

impl KindCounts {
    /// The count for `kind`.
    pub fn get(&self, kind: MessageKind) -> u64 {
        self.0[kind.index()]
    }

    /// The sum over all kinds.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub(crate) fn add(&mut self, kind: MessageKind) {
        self.add_n(kind, 1);
    }

    pub(crate) fn add_n(&mut self, kind: MessageKind, n: u64) {
        self.0[kind.index()] += n;
    }
}

/// Datagrams rejected, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DropCounts {
    /// Larger than `max_datagram`.
    pub too_large: u64,
    /// Shorter than the envelope.
    pub truncated: u64,
    /// Not a conclave datagram.
    pub bad_magic: u64,
    /// Another protocol version.
    pub version: u64,
    /// Damaged in flight.
    pub checksum: u64,
    /// From another cluster.
    pub wrong_cluster: u64,
    /// Its envelope names another sender than the member the driver knows sent it
    /// ([`WireError::WrongSender`]).
    pub wrong_sender: u64,
    /// Undecodable body.
    pub malformed: u64,
    /// Decodable but against a protocol rule (a sender claiming to be someone else, a ping
    /// meant for another member, a member record with oversized tags ...).
    pub invalid: u64,
}

impl DropCounts {
    /// The sum over all reasons.
    pub fn total(&self) -> u64 {
        self.too_large
            + self.truncated
            + self.bad_magic
            + self.version
            + self.checksum
            + self.wrong_cluster
            + self.wrong_sender
            + self.malformed
            + self.invalid
    }

    pub(crate) fn count(&mut self, error: &WireError) {
        let counter = match error {
            WireError::TooLarge { .. } => &mut self.too_large,
            WireError::Truncated { .. } => &mut self.truncated,
            WireError::BadMagic => &mut self.bad_magic,
            WireError::UnsupportedVersion { .. } => &mut self.version,
            WireError::Checksum => &mut self.checksum,
            WireError::WrongCluster { .. } => &mut self.wrong_cluster,
            WireError::WrongSender { .. } => &mut self.wrong_sender,
            WireError::Malformed => &mut self.malformed,
            WireError::Invalid { .. } => &mut self.invalid,
        };
        *counter += 1;
    }
}

/// A node's traffic counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes of accepted datagrams.
    pub bytes_received: u64,
    /// Gossip items sent (piggybacked or on their own).
    pub gossip_sent: u64,
    /// Gossip items received.
    pub gossip_received: u64,
    /// Datagrams sent, per kind.
    pub sent: KindCounts,
    /// Datagrams accepted, per kind.
    pub received: KindCounts,
    /// Datagrams rejected, per reason.
    pub dropped: DropCounts,
    /// Claims refused because they put a live member at another address
    /// ([`Event::AddressConflict`]), each counted.
    pub conflicts: u64,
}
