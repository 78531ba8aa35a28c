//! The wire format: a versioned, checksummed envelope around one message.
//!
//! `codec` is the body format's one definition: it writes and reads every message by hand,
//! in postcard's conventions (varints, enum indexes, length-prefixed lists), and the golden
//! bytes in the tests pin one datagram per message kind and one item per gossip kind. The
//! message types are plain data; nothing else encodes them.
//!
//! ```text
//! size  field
//! 1     magic 0xC7
//! 1     protocol version (3)
//! 1-10  cluster id, varint
//! 1-10  sender node id, varint
//! ..    body: one `Message` (see `codec`)
//! 4     CRC-32 (IEEE) of everything before it, little-endian
//! ```
//!
//! With the default cluster id and ids below 128 the envelope is 8 bytes. Version 1 had a
//! fixed 25-byte envelope (a four-byte magic, fixed-width cluster id and sender, the
//! checksum up front); version 2 added leader election's messages and gossip; version 3 is
//! this envelope: a ping with its digest went from 40 bytes to 19; version 4 put a flags byte
//! where a ping's or an ack's digest tag was (a digest follows, the ping is quiet, a
//! picture follows), for the partition watch's roll call.
//!
//! A datagram never exceeds the configured `max_datagram`: piggybacked gossip is packed to
//! fit, and a state transfer is split across as many datagrams as it needs. Decoding checks,
//! in order, the size cap, the magic, the version, the checksum and the cluster id, the
//! sender (when the driver knows who sent it), then the body, and returns a [`WireError`]
//! for the first that fails. No byte string panics it.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::member::{tags_encoded_len, Member, MemberState, NodeId, Tags, MAX_TAGS_BYTES};

mod codec;
#[cfg(test)]
mod tests;

/// The first byte of every conclave datagram.
pub const MAGIC: u8 = 0xC7;
/// The protocol version this build speaks (the second byte).
pub const VERSION: u8 = 4;
/// The checksum trailer's size.
const CRC_LEN: usize = 4;
/// The smallest envelope: magic, version, one-byte cluster id and sender, the checksum.
pub const MIN_ENVELOPE: usize = 2 + 1 + 1 + CRC_LEN;
/// The largest envelope: ten-byte varints for the cluster id and the sender.
pub const MAX_ENVELOPE: usize = 2 + 10 + 10 + CRC_LEN;
/// The smallest `max_datagram` a cluster may configure: room for the largest single
/// record (a member with [`MAX_TAGS_BYTES`] of tags) with its envelope.
pub const MIN_MAX_DATAGRAM: usize = 1024;
/// The largest `max_datagram`: the largest UDP payload over IPv4.
pub const MAX_MAX_DATAGRAM: usize = 65_507;

/// Why a datagram was rejected. The node's state did not change, except the drop counters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Larger than `max_datagram`.
    #[error("datagram of {len} B exceeds max_datagram {max} B")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Shorter than the smallest envelope.
    #[error("datagram of {len} B is shorter than the smallest envelope ({MIN_ENVELOPE} B)")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// Does not start with [`MAGIC`]: not a conclave datagram.
    #[error("not a conclave datagram (bad magic)")]
    BadMagic,
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {version} (this build speaks {VERSION})")]
    UnsupportedVersion {
        /// The version it claims.
        version: u8,
    },
    /// The checksum does not match: the datagram was damaged in flight.
    #[error("checksum mismatch: the datagram was damaged in flight")]
    Checksum,
    /// From another cluster.
    #[error("datagram for cluster {got:#x}, this is cluster {expected:#x}")]
    WrongCluster {
        /// This node's cluster id.
        expected: u64,
        /// The datagram's.
        got: u64,
    },
    /// The envelope names another sender than the member the driver knows sent it (the
    /// id of an authenticated connection, given to `Node::handle_datagram_from`): a member
    /// speaking for another. Checked after the envelope, before the body.
    #[error("datagram names sender {sender:?}, but came from member {peer:?}")]
    WrongSender {
        /// The member the envelope names.
        sender: NodeId,
        /// The member it came from.
        peer: NodeId,
    },
    /// The body is not a well-formed message.
    #[error("malformed message body")]
    Malformed,
    /// Well-formed, but breaks a protocol rule.
    #[error("invalid message: {why}")]
    Invalid {
        /// The rule it breaks.
        why: &'static str,
    },
}

/// The envelope of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The cluster it belongs to.
    pub cluster_id: u64,
    /// The member that sent it.
    pub sender: NodeId,
}

/// The kinds of message, for statistics and traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MessageKind {
    /// A direct probe.
    Ping,
    /// The answer to a probe.
    Ack,
    /// Lifeguard: an indirect prober's "I tried and heard nothing".
    Nack,
    /// A request to probe a member on the sender's behalf.
    PingReq,
    /// Gossip updates on their own.
    Gossip,
    /// A full-state exchange (or one part of it).
    PushPull,
    /// A new member's request to join.
    Join,
    /// Election: a candidate asks for a vote (or a pre-vote).
    RequestVote,
    /// Election: the answer to a vote request.
    Vote,
    /// Election: the leader's heartbeat to the voters.
    Heartbeat,
    /// Election: a voter's answer to a heartbeat.
    HeartbeatAck,
    /// Election: the leader hands over; the receiver stands at once.
    TimeoutNow,
}

impl MessageKind {
    /// Every kind, in wire order.
    pub const ALL: [Self; 12] = [
        Self::Ping,
        Self::Ack,
        Self::Nack,
        Self::PingReq,
        Self::Gossip,
        Self::PushPull,
        Self::Join,
        Self::RequestVote,
        Self::Vote,
        Self::Heartbeat,
        Self::HeartbeatAck,
        Self::TimeoutNow,
    ];

    /// Its position in [`MessageKind::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Its name, lower case.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Ack => "ack",
            Self::Nack => "nack",
            Self::PingReq => "ping-req",
            Self::Gossip => "gossip",
            Self::PushPull => "push-pull",
            Self::Join => "join",
            Self::RequestVote => "request-vote",
            Self::Vote => "vote",
            Self::Heartbeat => "heartbeat",
            Self::HeartbeatAck => "heartbeat-ack",
            Self::TimeoutNow => "timeout-now",
        }
    }
}

/// One member's full record, as exchanged by push-pull and join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberRecord {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
    pub(crate) incarnation: u64,
    pub(crate) state: MemberState,
    pub(crate) tags: Tags,
}

/// One update that rides on other messages (piggybacked) or in a `Gossip` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Gossip {
    /// `id` is alive at `incarnation`, at `addr`, with `tags`.
    Alive { id: NodeId, incarnation: u64, addr: SocketAddr, tags: Tags },
    /// `accuser` suspects `id` at `incarnation`.
    Suspect { id: NodeId, incarnation: u64, accuser: NodeId },
    /// `accuser` declared `id` failed at `incarnation`.
    Failed { id: NodeId, incarnation: u64, accuser: NodeId },
    /// `id` left gracefully at `incarnation`.
    Leave { id: NodeId, incarnation: u64 },
    /// A user broadcast: `origin`'s `seq`-th payload.
    UserBroadcast { origin: NodeId, seq: u64, payload: Vec<u8> },
    /// `leader` leads election term `term` (how non-voters learn it); `round` counts the
    /// leader's announcements in the term, so each spreads afresh.
    Leader { term: u64, leader: NodeId, round: u64 },
}

/// One message. Every variant that can carry piggybacked gossip has it as its last field,
/// which is what lets [`DatagramWriter`] append items without re-encoding the rest.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Message {
    /// Probe `target` (named so a ping that reaches a new process at an old address is
    /// ignored); answer with `Ack { seq }`. `digest` summarises the sender's live view
    /// when it has no updates pending, so two members can tell their views differ.
    /// `quiet`: a roll call's question (see partition), answered with a bare ack: no
    /// gossip rides on it either way, so it neither spends nor counts dissemination.
    Ping { seq: u64, target: NodeId, digest: Option<u32>, quiet: bool, gossip: Vec<Gossip> },
    /// The answer to the ping or ping-req numbered `seq`, with the same `digest`.
    /// `picture` digests the members the sender holds out of reach or in dispute while its
    /// partition watch's roll call runs (`None` while it reaches everyone): a member takes
    /// no side on a picture that the members it counts on its side do not share.
    Ack { seq: u64, digest: Option<u32>, picture: Option<u32>, gossip: Vec<Gossip> },
    /// Lifeguard: the relay for ping-req `seq` heard nothing from the target in time.
    Nack { seq: u64 },
    /// Probe `target` at `target_addr` for me; answer `Ack { seq }` or `Nack { seq }`.
    PingReq { seq: u64, target: NodeId, target_addr: SocketAddr, gossip: Vec<Gossip> },
    /// Updates on their own.
    Gossip { gossip: Vec<Gossip> },
    /// Part `part` of `parts` of the sender's view; answer with the receiver's own view when
    /// `reply` is set.
    PushPull { reply: bool, part: u16, parts: u16, members: Vec<MemberRecord> },
    /// The sender asks to join. With `send_state`, the answer is the receiver's view as
    /// `PushPull` parts; without, the receiver only admits it (one seed of several answers).
    Join { member: MemberRecord, send_state: bool },
    /// Election: vote for the sender in `term` (with `pre_vote`: would you, without
    /// anyone's term moving). `transfer`: the leader handed over to the sender, so a voter
    /// that still hears it does not refuse.
    RequestVote { term: u64, pre_vote: bool, transfer: bool },
    /// Election: the answer to a vote request; `term` is the voter's own.
    Vote { term: u64, pre_vote: bool, granted: bool },
    /// Election: the sender leads `term`; this is its round `seq`.
    Heartbeat { term: u64, seq: u64 },
    /// Election: the answer to heartbeat round `seq`; `term` is the voter's own.
    HeartbeatAck { term: u64, seq: u64 },
    /// Election: the sender, leader of `term`, hands over: stand now.
    TimeoutNow { term: u64 },
}

impl Message {
    pub(crate) fn kind(&self) -> MessageKind {
        match self {
            Self::Ping { .. } => MessageKind::Ping,
            Self::Ack { .. } => MessageKind::Ack,
            Self::Nack { .. } => MessageKind::Nack,
            Self::PingReq { .. } => MessageKind::PingReq,
            Self::Gossip { .. } => MessageKind::Gossip,
            Self::PushPull { .. } => MessageKind::PushPull,
            Self::Join { .. } => MessageKind::Join,
            Self::RequestVote { .. } => MessageKind::RequestVote,
            Self::Vote { .. } => MessageKind::Vote,
            Self::Heartbeat { .. } => MessageKind::Heartbeat,
            Self::HeartbeatAck { .. } => MessageKind::HeartbeatAck,
            Self::TimeoutNow { .. } => MessageKind::TimeoutNow,
        }
    }

    /// The piggybacked gossip, if this kind carries any.
    pub(crate) fn gossip(&self) -> &[Gossip] {
        self.gossip_list().unwrap_or(&[])
    }

    /// The gossip list of the kinds that end in one (Ping, Ack, PingReq, Gossip).
    pub(crate) fn gossip_list(&self) -> Option<&[Gossip]> {
        match self {
            Self::Ping { gossip, .. }
            | Self::Ack { gossip, .. }
            | Self::PingReq { gossip, .. }
            | Self::Gossip { gossip } => Some(gossip),
            _ => None,
        }
    }

    /// Protocol rules the types cannot express.
    fn check(&self) -> Result<(), WireError> {
        let tags_ok = |tags: &Tags| tags_encoded_len(tags) <= MAX_TAGS_BYTES;
        let record_ok = |r: &MemberRecord| tags_ok(&r.tags);
        let gossip_ok = |g: &Gossip| match g {
            Gossip::Alive { tags, .. } => tags_ok(tags),
            _ => true,
        };
        let ok = match self {
            Self::PushPull { part, parts, members, .. } => {
                if *parts == 0 || part >= parts {
                    return Err(WireError::Invalid { why: "push-pull part out of range" });
                }
                members.iter().all(record_ok)
            }
            Self::Join { member, .. } => record_ok(member),
            other => other.gossip().iter().all(gossip_ok),
        };
        if ok {
            Ok(())
        } else {
            Err(WireError::Invalid { why: "tags above the size limit" })
        }
    }
}

/// Reads a datagram's envelope and checks its checksum, without decoding the body.
pub fn decode_header(bytes: &[u8], max_datagram: usize) -> Result<Header, WireError> {
    open(bytes, max_datagram).map(|(header, _)| header)
}

/// Checks the envelope, in order: the size cap, the length, the magic, the version, the
/// checksum, then reads the cluster id and the sender; returns them and the body.
fn open(bytes: &[u8], max_datagram: usize) -> Result<(Header, &[u8]), WireError> {
    if bytes.len() > max_datagram {
        return Err(WireError::TooLarge { len: bytes.len(), max: max_datagram });
    }
    if bytes.len() < MIN_ENVELOPE {
        return Err(WireError::Truncated { len: bytes.len() });
    }
    if bytes[0] != MAGIC {
        // Versions 1 and 2 began with "CNCL" and their version: a member of an older build
        // is told apart from noise.
        if bytes.len() > 4 && bytes[..4] == *b"CNCL" {
            return Err(WireError::UnsupportedVersion { version: bytes[4] });
        }
        return Err(WireError::BadMagic);
    }
    if bytes[1] != VERSION {
        return Err(WireError::UnsupportedVersion { version: bytes[1] });
    }
    let (content, stored) = bytes.split_at(bytes.len() - CRC_LEN);
    if crc32fast::hash(content).to_le_bytes() != stored {
        return Err(WireError::Checksum);
    }
    // Checksummed: only a forged datagram has a bad varint here.
    let mut rest = &content[2..];
    let cluster_id = codec::take_varint(&mut rest).ok_or(WireError::Malformed)?;
    let sender = codec::take_varint(&mut rest).ok_or(WireError::Malformed)?;
    Ok((Header { cluster_id, sender: NodeId(sender) }, rest))
}

/// The envelope's size for `header`: what a datagram spends besides its message.
pub fn envelope_len(header: Header) -> usize {
    2 + codec::varint_len(header.cluster_id) + codec::varint_len(header.sender.0) + CRC_LEN
}

/// Decodes a datagram of `cluster_id` and tells what kind of message it holds: what a
/// driver's trace needs, without access to the message itself.
pub fn inspect(bytes: &[u8], cluster_id: u64, max_datagram: usize) -> Result<(Header, MessageKind), WireError> {
    decode(bytes, cluster_id, max_datagram).map(|(header, message)| (header, message.kind()))
}

/// An election message as a driver's checker reads it off the wire (the protocol's own
/// `Message` stays private).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ElectionMessage {
    /// The sender asks for a vote (`pre_vote`: would you) in `term`.
    RequestVote {
        /// The term asked for.
        term: u64,
        /// A pre-vote: nobody's term moves.
        pre_vote: bool,
        /// The leader handed over to the sender.
        transfer: bool,
    },
    /// The sender's answer to a vote request; `term` is its own.
    Vote {
        /// The voter's term.
        term: u64,
        /// The answer to a pre-vote.
        pre_vote: bool,
        /// Whether it said yes.
        granted: bool,
    },
    /// The sender leads `term`.
    Heartbeat {
        /// The leader's term.
        term: u64,
    },
    /// The sender's answer to a heartbeat; `term` is its own.
    HeartbeatAck {
        /// The voter's term.
        term: u64,
    },
    /// The sender, leader of `term`, hands over to the receiver.
    TimeoutNow {
        /// The leader's term.
        term: u64,
    },
}

/// The election message a datagram of `cluster_id` holds, with its envelope; `None` for
/// any other kind and any datagram that does not decode. Other kinds are told apart by
/// their first body byte, without decoding them (what a simulator's checker reads of
/// every datagram).
pub fn inspect_election(bytes: &[u8], cluster_id: u64, max_datagram: usize) -> Option<(Header, ElectionMessage)> {
    let mut rest = bytes.get(2..)?;
    codec::take_varint(&mut rest)?;
    codec::take_varint(&mut rest)?;
    let first = MessageKind::RequestVote.index() as u8;
    let last = MessageKind::TimeoutNow.index() as u8;
    if !(first..=last).contains(rest.first()?) {
        return None;
    }
    let (header, message) = decode(bytes, cluster_id, max_datagram).ok()?;
    let election = match message {
        Message::RequestVote { term, pre_vote, transfer } => ElectionMessage::RequestVote { term, pre_vote, transfer },
        Message::Vote { term, pre_vote, granted } => ElectionMessage::Vote { term, pre_vote, granted },
        Message::Heartbeat { term, .. } => ElectionMessage::Heartbeat { term },
        Message::HeartbeatAck { term, .. } => ElectionMessage::HeartbeatAck { term },
        Message::TimeoutNow { term } => ElectionMessage::TimeoutNow { term },
        _ => return None,
    };
    Some((header, election))
}

/// Decodes a whole datagram of `cluster_id`.
pub(crate) fn decode(bytes: &[u8], cluster_id: u64, max_datagram: usize) -> Result<(Header, Message), WireError> {
    decode_from(bytes, cluster_id, max_datagram, None)
}

/// Decodes a whole datagram of `cluster_id` that member `peer` sent, when the driver
/// knows who sent it (the id of an authenticated connection): an envelope that names
/// another sender is refused before the body is read.
pub(crate) fn decode_from(
    bytes: &[u8],
    cluster_id: u64,
    max_datagram: usize,
    peer: Option<NodeId>,
) -> Result<(Header, Message), WireError> {
    let (header, body) = open(bytes, max_datagram)?;
    if header.cluster_id != cluster_id {
        return Err(WireError::WrongCluster { expected: cluster_id, got: header.cluster_id });
    }
    if let Some(peer) = peer.filter(|&p| p != header.sender) {
        return Err(WireError::WrongSender { sender: header.sender, peer });
    }
    let Some(message) = codec::read_message(body) else {
        return Err(WireError::Malformed);
    };
    message.check()?;
    Ok((header, message))
}

/// Encodes `message` whole, or says it does not fit in `max_datagram`.
pub(crate) fn encode(header: Header, message: &Message, max_datagram: usize) -> Result<Vec<u8>, WireError> {
    let mut out = envelope(header, WRITER_CAPACITY);
    codec::put_message(&mut out, message);
    if out.len() + CRC_LEN > max_datagram {
        return Err(WireError::TooLarge { len: out.len() + CRC_LEN, max: max_datagram });
    }
    seal(&mut out);
    Ok(out)
}

/// Builds one datagram whose message ends in a gossip list, adding items while they fit.
///
/// Postcard encodes a list as a varint length then the items, and the gossip list is the
/// message's last field, so the datagram is the message encoded with an empty list minus
/// that list's one-byte length, then the real length and the items.
/// A datagram's first allocation when few items are expected: room for a ping or ack with
/// a few, and small enough for the allocator's fast per-thread caches.
const WRITER_CAPACITY: usize = 256;

pub(crate) struct DatagramWriter {
    /// The envelope, the message up to its gossip list, then the items added so far.
    out: Vec<u8>,
    /// Where the items start: the list's length goes there when the datagram is finished.
    items_start: usize,
    count: usize,
    max: usize,
}

impl DatagramWriter {
    /// Starts a datagram for `message`, whose gossip list must be empty. `None` if even that
    /// does not fit.
    #[cfg(test)]
    pub(crate) fn new(header: Header, message: &Message, max_datagram: usize) -> Option<Self> {
        Self::with_items(header, message, max_datagram, false)
    }

    /// As [`Self::new`], with room for a full datagram from the start when `many_items`
    /// are expected (no regrowth while packing).
    pub(crate) fn with_items(header: Header, message: &Message, max_datagram: usize, many_items: bool) -> Option<Self> {
        debug_assert!(message.gossip().is_empty(), "the writer adds the gossip itself");
        if message.gossip_list().is_none() {
            debug_assert!(false, "message without a trailing gossip list");
            return None;
        }
        // One buffer for the whole datagram, items included.
        let capacity = if many_items { max_datagram } else { max_datagram.min(WRITER_CAPACITY) };
        let mut out = envelope(header, capacity);
        codec::put_message_head(&mut out, message);
        let writer = Self { items_start: out.len(), out, count: 0, max: max_datagram };
        (writer.len_with(0, 0) <= max_datagram).then_some(writer)
    }

    /// Room left for items.
    pub(crate) fn remaining(&self) -> usize {
        self.max.saturating_sub(self.len_with(self.count, 0))
    }

    /// Adds `item` if it fits; `false` (and nothing added) otherwise.
    #[cfg(test)]
    pub(crate) fn push(&mut self, item: &Gossip) -> bool {
        let mark = self.out.len();
        codec::put_gossip(&mut self.out, item);
        if self.len_with(self.count + 1, 0) > self.max {
            self.out.truncate(mark);
            return false;
        }
        self.count += 1;
        true
    }

    /// Adds an item already encoded with [`encode_gossip`] if it fits.
    pub(crate) fn push_encoded(&mut self, item: &[u8]) -> bool {
        if self.len_with(self.count + 1, item.len()) > self.max {
            return false;
        }
        self.out.extend_from_slice(item);
        self.count += 1;
        true
    }

    /// How many items were added.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The finished datagram.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let mut len = [0u8; 10];
        let end = codec::varint_at(&mut len, 0, self.count as u64);
        match &len[..end] {
            // Fewer than 128 items, nearly always: one byte.
            &[byte] => self.out.insert(self.items_start, byte),
            len => {
                self.out.splice(self.items_start..self.items_start, len.iter().copied());
            }
        }
        seal(&mut self.out);
        self.out
    }

    /// The datagram's length with `count` items and `extra` more item bytes.
    fn len_with(&self, count: usize, extra: usize) -> usize {
        self.out.len() + codec::varint_len(count as u64) + extra + CRC_LEN
    }
}

/// One gossip item's encoding, for [`DatagramWriter::push_encoded`].
pub(crate) fn encode_gossip(item: &Gossip) -> Vec<u8> {
    // Room for any item but one with tags or a broadcast payload, which grow it.
    let mut out = Vec::with_capacity(32);
    codec::put_gossip(&mut out, item);
    out
}

/// The encoded size of one member record.
#[cfg(test)]
pub(crate) fn record_len(record: &MemberRecord) -> usize {
    let mut out = Vec::new();
    codec::put_record(&mut out, record);
    out.len()
}

/// Bytes a `PushPull` datagram spends besides its records (envelope, tag, flags, counts).
const PUSH_PULL_OVERHEAD: usize = MAX_ENVELOPE + 1 + 1 + 3 + 3 + 3;

/// A member's whole view as `PushPull` datagrams: each record is encoded once, into the
/// first datagram it fits.
pub(crate) struct StateWriter {
    /// The records, encoded back to back.
    records: Vec<u8>,
    /// Each part's end in `records` and its number of records.
    parts: Vec<(usize, usize)>,
    /// Where the last part starts in `records`.
    part_start: usize,
    room: usize,
}

impl StateWriter {
    /// A writer for about `members` records.
    pub(crate) fn new(max_datagram: usize, members: usize) -> Self {
        // Room for records of IPv4 members without tags; larger ones grow it.
        let records = Vec::with_capacity(members * 24);
        Self { records, parts: vec![(0, 0)], part_start: 0, room: max_datagram - PUSH_PULL_OVERHEAD }
    }

    /// Adds one member's record.
    pub(crate) fn push(&mut self, member: &Member) {
        let start = self.records.len();
        codec::put_member(&mut self.records, member);
        let last = self.parts.last_mut().expect("never empty: starts with one part");
        if last.1 > 0 && self.records.len() - self.part_start > self.room {
            // Does not fit the current part: it opens the next (a record alone always fits).
            self.part_start = start;
            self.parts.push((self.records.len(), 1));
        } else {
            *last = (self.records.len(), last.1 + 1);
        }
    }

    /// The datagrams, at most `u16::MAX` of them (the part number's range).
    pub(crate) fn finish(self, header: Header, reply: bool) -> Vec<Vec<u8>> {
        let total = u16::try_from(self.parts.len()).unwrap_or(u16::MAX);
        let mut start = 0;
        let mut datagrams = Vec::with_capacity(usize::from(total));
        for (part, &(end, count)) in (0..total).zip(&self.parts) {
            let mut out = envelope(header, PUSH_PULL_OVERHEAD + end - start);
            out.push(MessageKind::PushPull.index() as u8);
            codec::put_push_pull_head(&mut out, reply, part, total, count);
            out.extend_from_slice(&self.records[start..end]);
            seal(&mut out);
            datagrams.push(out);
            start = end;
        }
        datagrams
    }
}

/// The envelope up to the body: magic, version, cluster id, sender.
fn envelope(header: Header, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    out.push(MAGIC);
    out.push(VERSION);
    codec::put_varint(&mut out, header.cluster_id);
    codec::put_varint(&mut out, header.sender.0);
    out
}

/// Appends the checksum of everything written.
fn seal(out: &mut Vec<u8>) {
    let crc = crc32fast::hash(out);
    out.extend_from_slice(&crc.to_le_bytes());
}
