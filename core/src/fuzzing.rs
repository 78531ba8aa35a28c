//! Internals the fuzz targets in `fuzz/` need, compiled only with `--cfg fuzzing`.
//!
//! The wire's message types are private; these wrappers let a target drive the decoder,
//! wrap arbitrary bodies in a valid envelope (so the fuzzer reaches the body decoder and the
//! node's handlers instead of stopping at the checksum), and build valid datagrams for seed
//! corpora.

use std::net::SocketAddr;

use crate::member::{MemberState, NodeId, Tags};
use crate::wire::{self, Gossip, Header, MemberRecord, Message, MessageKind, WireError};

/// Decodes `bytes` as a datagram of `cluster_id`, and checks that whatever decodes encodes
/// again, no longer than it came, and decodes to the same message.
///
/// # Panics
///
/// If the decoder accepts a message it cannot round-trip: a bug.
pub fn decode(bytes: &[u8], cluster_id: u64, max_datagram: usize) -> Result<MessageKind, WireError> {
    let (header, message) = wire::decode(bytes, cluster_id, max_datagram)?;
    let again = wire::encode(header, &message, bytes.len())
        .expect("a decoded message re-encodes canonically, no longer than it came");
    let (header_again, message_again) =
        wire::decode(&again, cluster_id, max_datagram).expect("a re-encoded message decodes");
    assert_eq!(header_again, header, "the header round-trips");
    assert_eq!(message_again, message, "the message round-trips");
    Ok(message.kind())
}

/// `body` in a valid envelope of `cluster_id` from `sender`, with a correct checksum.
pub fn seal(cluster_id: u64, sender: NodeId, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(wire::MAX_ENVELOPE + body.len());
    bytes.push(wire::MAGIC);
    bytes.push(wire::VERSION);
    for mut value in [cluster_id, sender.0] {
        while value >= 0x80 {
            bytes.push(value as u8 | 0x80);
            value >>= 7;
        }
        bytes.push(value as u8);
    }
    bytes.extend_from_slice(body);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Valid datagrams of `cluster_id` from `sender` (at `sender_addr`) to `receiver`: at least
/// one of every message kind and every gossip kind, for seed corpora.
pub fn sample_datagrams(cluster_id: u64, sender: NodeId, sender_addr: SocketAddr, receiver: NodeId) -> Vec<Vec<u8>> {
    let header = Header { cluster_id, sender };
    let tags: Tags = [("role".to_string(), "db".to_string())].into_iter().collect();
    let record = MemberRecord { id: sender, addr: sender_addr, incarnation: 1, state: MemberState::Alive, tags };
    let third = NodeId(sender.0.wrapping_add(100));
    let gossip = vec![
        Gossip::Alive { id: sender, incarnation: 1, addr: sender_addr, tags: record.tags.clone() },
        Gossip::Suspect { id: third, incarnation: 1, accuser: sender },
        Gossip::Failed { id: third, incarnation: 1, accuser: sender },
        Gossip::Leave { id: third, incarnation: 2 },
        Gossip::UserBroadcast { origin: sender, seq: 1, payload: b"hello".to_vec() },
        Gossip::Leader { term: 3, leader: sender, round: 1 },
    ];
    let messages = [
        Message::Join { member: record.clone(), send_state: true },
        Message::Ping { seq: 1, target: receiver, digest: Some(7), quiet: false, gossip: gossip.clone() },
        Message::Ack { seq: 1, digest: None, picture: None, gossip: gossip.clone() },
        Message::Nack { seq: 1 },
        Message::PingReq { seq: 2, target: third, target_addr: sender_addr, gossip: vec![] },
        Message::Gossip { gossip },
        Message::PushPull { reply: true, part: 0, parts: 1, members: vec![record] },
        Message::RequestVote { term: 3, pre_vote: true, transfer: false },
        Message::Vote { term: 3, pre_vote: false, granted: true },
        Message::Heartbeat { term: 3, seq: 9 },
        Message::HeartbeatAck { term: 3, seq: 9 },
        Message::TimeoutNow { term: 3 },
    ];
    messages
        .iter()
        .map(|message| wire::encode(header, message, wire::MIN_MAX_DATAGRAM).expect("the samples are small"))
        .collect()
}
