//! The trace: what happened, in virtual time, and a stable hash of it.
//!
//! The hash is always computed; of the records, the members' events are kept by default
//! and the rest only when asked ([`TraceMode::Record`]), so a long benchmark
//! ([`TraceMode::HashOnly`]) costs a few nanoseconds per message and no memory. The hash is FNV-1a over 64-bit lanes (offset basis `0xcbf29ce484222325`, prime
//! `0x100000001b3`, each lane XORed in whole, then multiplied), over a canonical encoding:
//! per record a tag lane, then its fields as little-endian integers, one per lane, and
//! byte strings as a length lane followed by 8-byte little-endian chunks, zero-padded. It
//! does not depend on the platform, the process or `DefaultHasher`.

use conclave_core::{Durable, Event, Instant, Member, MessageKind, NodeId, Side};

use crate::fault::Fault;
use crate::workload::WorkloadEvent;

/// Which of the trace's records the simulator keeps (the hash covers them all, always).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TraceMode {
    /// Only the hash: no memory, no formatting (for benchmarks).
    HashOnly,
    /// The hash and the members' events (the default: a test can read them after the run
    /// without asking; events are few beside datagrams).
    #[default]
    Events,
    /// The hash and every record.
    Record,
}

impl TraceMode {
    /// What this mode keeps, in words.
    pub fn kept(self) -> &'static str {
        match self {
            Self::HashOnly => "none",
            Self::Events => "only the events",
            Self::Record => "all",
        }
    }
}

/// Why a datagram was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// The link is cut by a partition, a one-way cut or a cut link.
    Partition,
    /// Lost by the link's loss rate.
    Loss,
    /// The receiver's process is not running.
    Down,
    /// No member has the destination address.
    NoRoute,
}

impl DropReason {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Partition => "partition",
            Self::Loss => "loss",
            Self::Down => "down",
            Self::NoRoute => "no-route",
        }
    }
}

/// One thing that happened.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TraceRecord {
    /// A datagram reached a member, which accepted it or (`rejected`) refused it.
    Delivered {
        /// Global virtual time.
        at: Instant,
        /// When it was sent.
        sent: Instant,
        /// The sender.
        from: NodeId,
        /// The receiver.
        to: NodeId,
        /// What it held, when it decodes.
        kind: Option<MessageKind>,
        /// Its size.
        len: usize,
        /// Why the receiver refused it (a corrupted datagram's checksum, say).
        rejected: Option<String>,
    },
    /// A datagram was not delivered.
    Dropped {
        /// Global virtual time.
        at: Instant,
        /// The sender.
        from: NodeId,
        /// The receiver, if the address belongs to a member.
        to: Option<NodeId>,
        /// What it held.
        kind: Option<MessageKind>,
        /// Why.
        reason: DropReason,
    },
    /// A fault was applied.
    Fault {
        /// Global virtual time.
        at: Instant,
        /// The fault.
        fault: Fault,
    },
    /// A member emitted an event.
    Event {
        /// Global virtual time.
        at: Instant,
        /// The member that emitted it.
        node: NodeId,
        /// The event.
        event: Event,
    },
    /// A member persisted its durable state.
    Persist {
        /// Global virtual time.
        at: Instant,
        /// The member.
        node: NodeId,
        /// What it wrote.
        durable: Durable,
    },
    /// A member's process started (at build, or a restart).
    Started {
        /// Global virtual time.
        at: Instant,
        /// The member.
        node: NodeId,
        /// What it found on its disk.
        durable: Option<Durable>,
    },
    /// The service workload did something (see [`crate::workload`]).
    Workload {
        /// Global virtual time.
        at: Instant,
        /// What.
        event: WorkloadEvent,
    },
    /// A node panicked (a bug in the core): the simulator stopped its process.
    Panicked {
        /// Global virtual time.
        at: Instant,
        /// The member.
        node: NodeId,
        /// The panic message.
        message: String,
    },
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over 64-bit lanes; see the module docs for the encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHasher(u64);

impl Default for TraceHasher {
    fn default() -> Self {
        Self(FNV_OFFSET)
    }
}

impl TraceHasher {
    /// Mixes in one lane.
    #[inline]
    pub fn lane(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(FNV_PRIME);
    }

    /// Mixes in a byte string: its length, then 8-byte little-endian chunks.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.lane(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut lane = [0u8; 8];
            lane.copy_from_slice(chunk);
            self.lane(u64::from_le_bytes(lane));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut lane = [0u8; 8];
            lane[..rest.len()].copy_from_slice(rest);
            self.lane(u64::from_le_bytes(lane));
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// Record tags: part of the hash's definition, never renumber.
pub(crate) mod tag {
    pub(crate) const DELIVERED: u64 = 1;
    pub(crate) const REJECTED: u64 = 2;
    pub(crate) const DROPPED: u64 = 3;
    pub(crate) const FAULT: u64 = 4;
    pub(crate) const EVENT: u64 = 5;
    pub(crate) const PERSIST: u64 = 6;
    pub(crate) const STARTED: u64 = 7;
    pub(crate) const PANICKED: u64 = 8;
    pub(crate) const WORKLOAD: u64 = 9;
}

/// The fingerprint of a datagram's content: its CRC field, which covers every byte.
#[inline]
pub(crate) fn fingerprint(payload: &[u8]) -> u64 {
    if payload.len() >= 25 {
        u64::from(u32::from_le_bytes([payload[21], payload[22], payload[23], payload[24]]))
    } else {
        payload.iter().fold(0, |acc, &b| (acc << 8 | u64::from(b)) ^ (acc >> 56))
    }
}

pub(crate) fn hash_member(h: &mut TraceHasher, m: &Member) {
    h.lane(m.id.0);
    h.lane(m.incarnation);
    h.lane(m.state as u64);
    hash_addr(h, m.addr);
    h.lane(m.tags.len() as u64);
    for (k, v) in &m.tags {
        h.bytes(k.as_bytes());
        h.bytes(v.as_bytes());
    }
}

pub(crate) fn hash_addr(h: &mut TraceHasher, addr: std::net::SocketAddr) {
    match addr {
        std::net::SocketAddr::V4(a) => {
            h.lane(4);
            h.lane(u64::from(u32::from(*a.ip())));
        }
        std::net::SocketAddr::V6(a) => {
            h.lane(6);
            h.bytes(&a.ip().octets());
        }
    }
    h.lane(u64::from(addr.port()));
}

pub(crate) fn hash_event(h: &mut TraceHasher, event: &Event) {
    let (kind, member) = match event {
        Event::MemberJoined(m) => (1, m),
        Event::MemberUpdated(m) => (2, m),
        Event::MemberSuspected(m) => (3, m),
        Event::MemberFailed(m) => (4, m),
        Event::MemberRecovered(m) => (5, m),
        Event::MemberLeft(m) => (6, m),
        Event::Broadcast { origin, payload } => {
            h.lane(7);
            h.lane(origin.0);
            h.bytes(payload);
            return;
        }
        Event::LeaderElected { term, leader } => {
            h.lane(8);
            h.lane(*term);
            h.lane(leader.0);
            return;
        }
        Event::LeaderLost { term } => {
            h.lane(9);
            h.lane(*term);
            return;
        }
        Event::PartitionDetected { majority, minority, local_side } => {
            h.lane(10);
            h.lane(u64::from(*local_side == Side::Majority));
            for side in [majority, minority] {
                h.lane(side.len() as u64);
                for id in side {
                    h.lane(id.0);
                }
            }
            return;
        }
        Event::PartitionHealed => {
            h.lane(11);
            return;
        }
        Event::QuorumLost => {
            h.lane(12);
            return;
        }
        Event::QuorumRegained => {
            h.lane(13);
            return;
        }
        // Events added to the core later: their Debug form is deterministic.
        other => {
            h.lane(0xff);
            h.bytes(format!("{other:?}").as_bytes());
            return;
        }
    };
    h.lane(kind);
    hash_member(h, member);
}

/// A short label of an event, for reports.
pub fn event_label(event: &Event) -> String {
    match event {
        Event::MemberJoined(m) => format!("joined {}", m.id),
        Event::MemberUpdated(m) => format!("updated {}", m.id),
        Event::MemberSuspected(m) => format!("suspects {} (inc {})", m.id, m.incarnation),
        Event::MemberFailed(m) => format!("failed {} (inc {})", m.id, m.incarnation),
        Event::MemberRecovered(m) => format!("recovered {} (inc {})", m.id, m.incarnation),
        Event::MemberLeft(m) => format!("left {}", m.id),
        Event::Broadcast { origin, payload } => format!("broadcast from {origin} ({} B)", payload.len()),
        Event::LeaderElected { term, leader } => format!("leader {leader} in term {term}"),
        Event::LeaderLost { term } => format!("lost the leader of term {term}"),
        Event::PartitionDetected { majority, minority, local_side } => {
            let ids = |v: &[NodeId]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
            format!("partition: keeps [{}], downs [{}], this side {local_side:?}", ids(majority), ids(minority))
        }
        Event::PartitionHealed => "partition healed".to_string(),
        Event::QuorumLost => "quorum lost: read-only".to_string(),
        Event::QuorumRegained => "quorum regained".to_string(),
        other => format!("{other:?}"),
    }
}

impl std::fmt::Display for TraceRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = |k: &Option<MessageKind>| k.map_or("?", MessageKind::name);
        match self {
            Self::Delivered { at, sent, from, to, kind: k, len, rejected: None } => {
                write!(f, "{at} {from} -> {to} {} {len}B (sent {sent})", kind(k))
            }
            Self::Delivered { at, sent, from, to, kind: k, len, rejected: Some(why) } => {
                write!(f, "{at} {from} -> {to} {} {len}B (sent {sent}) rejected: {why}", kind(k))
            }
            Self::Dropped { at, from, to, kind: k, reason } => match to {
                Some(to) => write!(f, "{at} {from} -> {to} {} dropped ({})", kind(k), reason.name()),
                None => write!(f, "{at} {from} -> ? {} dropped ({})", kind(k), reason.name()),
            },
            Self::Fault { at, fault } => write!(f, "{at} fault {fault}"),
            Self::Event { at, node, event } => write!(f, "{at} {node} {}", event_label(event)),
            Self::Persist { at, node, durable } => write!(f, "{at} {node} persist {durable:?}"),
            Self::Started { at, node, durable } => write!(f, "{at} {node} started with {durable:?}"),
            Self::Panicked { at, node, message } => write!(f, "{at} {node} PANICKED: {message}"),
            Self::Workload { at, event } => write!(f, "{at} {event}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_golden() {
        // The hash's definition: these values must never change.
        let h = TraceHasher::default();
        assert_eq!(h.finish(), 0xcbf2_9ce4_8422_2325);
        let mut h = TraceHasher::default();
        h.lane(1);
        assert_eq!(h.finish(), (0xcbf2_9ce4_8422_2325u64 ^ 1).wrapping_mul(0x100000001b3));
        let mut a = TraceHasher::default();
        a.bytes(b"abcdefghi");
        let mut b = TraceHasher::default();
        b.lane(9);
        b.lane(u64::from_le_bytes(*b"abcdefgh"));
        b.lane(u64::from(b'i'));
        assert_eq!(a, b);
    }
}
