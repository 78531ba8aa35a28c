//! The message body codec: the definition of the body format, written and read by hand.
//!
//! The golden bytes in the wire tests pin it (one datagram per message kind, one item per
//! gossip kind), and the fuzz targets try it on arbitrary bytes. Its rules are postcard's
//! conventions, so the primitives are tested against postcard's readers as an oracle. Why
//! by hand rather than through serde: every datagram is encoded once and decoded once, and
//! through serde's generic layers that was half of a simulated member's instructions per
//! datagram (a socket address alone took about 130 to decode). The rules:
//!
//! - integers wider than a byte are LEB128 varints; a varint of more bytes than it needs is
//!   accepted, one whose value overflows its type is not;
//! - an enum is its variant index (a `u32` varint), then its fields in order;
//! - `bool` and `Option`'s tag are one byte, 0 or 1;
//! - the one exception to varints: a view digest is four raw bytes, little-endian (a
//!   hash: as a varint it would take five);
//! - sequences, maps and strings are a length varint then their items (strings UTF-8);
//! - a socket address is its variant (0 V4, 1 V6), the raw octets, then the port.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::member::{Member, MemberState, NodeId, Tags};
use crate::wire::{Gossip, MemberRecord, Message};

// ----- writing ------------------------------------------------------------------------

/// Appends `message` to `out`.
pub(crate) fn put_message(out: &mut Vec<u8>, message: &Message) {
    put_message_head(out, message);
    if let Some(gossip) = message.gossip_list() {
        put_varint(out, gossip.len() as u64);
        for item in gossip {
            put_gossip(out, item);
        }
    }
}

/// Appends `message` without its gossip list, for the kinds that end in one; the whole
/// message for the others.
pub(crate) fn put_message_head(out: &mut Vec<u8>, message: &Message) {
    out.push(message.kind().index() as u8);
    match message {
        Message::Ping { seq, target, digest, quiet, .. } => {
            put_varint(out, *seq);
            put_varint(out, target.0);
            put_flagged(out, *digest, *quiet, None);
        }
        Message::Ack { seq, digest, picture, .. } => {
            put_varint(out, *seq);
            put_flagged(out, *digest, false, *picture);
        }
        Message::Nack { seq } => put_varint(out, *seq),
        Message::PingReq { seq, target, target_addr, .. } => {
            put_varint(out, *seq);
            put_varint(out, target.0);
            put_addr(out, *target_addr);
        }
        Message::Gossip { .. } => {}
        Message::PushPull { reply, part, parts, members } => {
            put_push_pull_head(out, *reply, *part, *parts, members.len());
            for r in members {
                put_record_fields(out, r.id, r.addr, r.incarnation, r.state, &r.tags);
            }
        }
        Message::Join { member: r, send_state } => {
            put_record_fields(out, r.id, r.addr, r.incarnation, r.state, &r.tags);
            out.push(u8::from(*send_state));
        }
        Message::RequestVote { term, pre_vote: a, transfer: b } | Message::Vote { term, pre_vote: a, granted: b } => {
            put_varint(out, *term);
            out.push(u8::from(*a));
            out.push(u8::from(*b));
        }
        Message::Heartbeat { term, seq } | Message::HeartbeatAck { term, seq } => {
            put_varint(out, *term);
            put_varint(out, *seq);
        }
        Message::TimeoutNow { term } => put_varint(out, *term),
    }
}

/// Appends a `PushPull`'s fields before its records: the records follow, `count` of them.
pub(crate) fn put_push_pull_head(out: &mut Vec<u8>, reply: bool, part: u16, parts: u16, count: usize) {
    out.push(u8::from(reply));
    put_varint(out, u64::from(part));
    put_varint(out, u64::from(parts));
    put_varint(out, count as u64);
}

/// Appends one gossip item.
pub(crate) fn put_gossip(out: &mut Vec<u8>, item: &Gossip) {
    match item {
        Gossip::Alive { id, incarnation, addr, tags } => {
            out.push(0);
            put_varint(out, id.0);
            put_varint(out, *incarnation);
            put_addr(out, *addr);
            put_tags(out, tags);
        }
        Gossip::Suspect { id, incarnation, accuser } | Gossip::Failed { id, incarnation, accuser } => {
            out.push(if matches!(item, Gossip::Suspect { .. }) { 1 } else { 2 });
            put_varint(out, id.0);
            put_varint(out, *incarnation);
            put_varint(out, accuser.0);
        }
        Gossip::Leave { id, incarnation } => {
            out.push(3);
            put_varint(out, id.0);
            put_varint(out, *incarnation);
        }
        Gossip::UserBroadcast { origin, seq, payload } => {
            out.push(4);
            put_varint(out, origin.0);
            put_varint(out, *seq);
            put_bytes(out, payload);
        }
        Gossip::Leader { term, leader, round } => {
            out.push(5);
            put_varint(out, *term);
            put_varint(out, leader.0);
            put_varint(out, *round);
        }
    }
}

/// Appends one member record.
#[cfg(test)]
pub(crate) fn put_record(out: &mut Vec<u8>, record: &MemberRecord) {
    put_record_fields(out, record.id, record.addr, record.incarnation, record.state, &record.tags);
}

/// Appends the record of `member`, without building a [`MemberRecord`] (and copying its tags).
pub(crate) fn put_member(out: &mut Vec<u8>, member: &Member) {
    put_record_fields(out, member.id, member.addr, member.incarnation, member.state, &member.tags);
}

fn put_record_fields(
    out: &mut Vec<u8>,
    id: NodeId,
    addr: SocketAddr,
    incarnation: u64,
    state: MemberState,
    tags: &Tags,
) {
    put_varint(out, id.0);
    put_addr(out, addr);
    put_varint(out, incarnation);
    out.push(state as u8);
    put_tags(out, tags);
}

pub(crate) fn put_varint(out: &mut Vec<u8>, value: u64) {
    if value < 0x80 {
        out.push(value as u8);
        return;
    }
    // Assembled on the stack and appended at once: one capacity check, not one per byte
    // (a view digest takes ten).
    let mut buf = [0u8; 10];
    let end = varint_at(&mut buf, 0, value);
    out.extend_from_slice(&buf[..end]);
}

/// Writes `value` as a varint into `buf` from `at`; returns where it ends.
pub(crate) fn varint_at(buf: &mut [u8], mut at: usize, mut value: u64) -> usize {
    while value >= 0x80 {
        buf[at] = value as u8 | 0x80;
        value >>= 7;
        at += 1;
    }
    buf[at] = value as u8;
    at + 1
}

/// A ping's or an ack's flags and digests in one byte and what it announces: bit 0, a view
/// digest follows; bit 1, the ping is quiet; bit 2, a picture digest follows. Each digest
/// is four raw bytes, little-endian. The usual ping or ack spends the one byte that
/// Option's tag of its view digest took before the flags.
fn put_flagged(out: &mut Vec<u8>, digest: Option<u32>, quiet: bool, picture: Option<u32>) {
    out.push(u8::from(digest.is_some()) | u8::from(quiet) << 1 | u8::from(picture.is_some()) << 2);
    for value in [digest, picture].into_iter().flatten() {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn put_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    // Assembled on the stack and appended at once: one capacity check, not one per byte.
    let mut buf = [0u8; 1 + 16 + 3];
    let len = match addr {
        SocketAddr::V4(a) => {
            buf[1..5].copy_from_slice(&a.ip().octets());
            5
        }
        SocketAddr::V6(a) => {
            buf[0] = 1;
            buf[1..17].copy_from_slice(&a.ip().octets());
            17
        }
    };
    let end = varint_at(&mut buf, len, u64::from(addr.port()));
    out.extend_from_slice(&buf[..end]);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads a `u64` varint from the front of `bytes`, as the body's readers do.
pub(crate) fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut r = Reader(bytes);
    let value = r.u64()?;
    *bytes = r.0;
    Some(value)
}

/// How many bytes `value` takes as a varint.
pub(crate) fn varint_len(value: u64) -> usize {
    // Seven bits a byte; zero takes one.
    (64 - value.max(1).leading_zeros() as usize).div_ceil(7)
}

fn put_tags(out: &mut Vec<u8>, tags: &Tags) {
    put_varint(out, tags.len() as u64);
    for (key, value) in tags {
        put_bytes(out, key.as_bytes());
        put_bytes(out, value.as_bytes());
    }
}

// ----- reading ------------------------------------------------------------------------

/// Reads one whole message from `body`; `None` if it is not exactly one well-formed message.
pub(crate) fn read_message(body: &[u8]) -> Option<Message> {
    let mut r = Reader(body);
    let message = r.message()?;
    r.0.is_empty().then_some(message)
}

/// The bytes not yet read.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.0.len() {
            return None;
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(taken)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// A varint of a `BITS`-wide integer, as postcard reads it: at most `ceil(BITS / 7)`
    /// bytes, and the last of that many may not carry bits past the type.
    #[inline]
    fn varint<const BITS: u32>(&mut self) -> Option<u64> {
        let bytes = self.0;
        let first = *bytes.first()?;
        if first < 0x80 {
            // One byte: small ids, incarnations, lengths and tags, the usual case.
            self.0 = &bytes[1..];
            return Some(u64::from(first));
        }
        let max_len = BITS.div_ceil(7) as usize;
        let last_max = (1u8 << (BITS - 7 * (max_len as u32 - 1))) - 1;
        let mut value = u64::from(first & 0x7f);
        for i in 1..max_len {
            let byte = *bytes.get(i)?;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i == max_len - 1 && byte > last_max {
                    return None;
                }
                self.0 = &bytes[i + 1..];
                return Some(value);
            }
        }
        None
    }

    fn u64(&mut self) -> Option<u64> {
        self.varint::<64>()
    }

    fn u16(&mut self) -> Option<u16> {
        self.varint::<16>().map(|v| v as u16)
    }

    /// An enum's variant index.
    fn variant(&mut self) -> Option<u32> {
        self.varint::<32>().map(|v| v as u32)
    }

    /// A sequence, map or string length: never more than the bytes left (every item takes at
    /// least one), so a forged length cannot reserve memory.
    fn len(&mut self) -> Option<usize> {
        let len = usize::try_from(self.varint::<64>()?).ok()?;
        (len <= self.0.len()).then_some(len)
    }

    fn bool(&mut self) -> Option<bool> {
        match self.byte()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    /// What `put_digest` wrote.
    /// What [`put_flagged`] writes: the view digest, quiet, the picture digest. Unknown
    /// flags are malformed.
    fn flagged(&mut self) -> Option<(Option<u32>, bool, Option<u32>)> {
        let flags = self.byte()?;
        if flags & !0b111 != 0 {
            return None;
        }
        let mut read = |bit: u8| -> Option<Option<u32>> {
            Some(if flags & bit != 0 { Some(u32::from_le_bytes(self.array::<4>()?)) } else { None })
        };
        let digest = read(0b001)?;
        let picture = read(0b100)?;
        Some((digest, flags & 0b010 != 0, picture))
    }

    fn id(&mut self) -> Option<NodeId> {
        self.u64().map(NodeId)
    }

    fn addr(&mut self) -> Option<SocketAddr> {
        Some(match self.variant()? {
            0 => {
                let ip = Ipv4Addr::from(self.array::<4>()?);
                SocketAddr::V4(SocketAddrV4::new(ip, self.u16()?))
            }
            1 => {
                let ip = Ipv6Addr::from(self.array::<16>()?);
                SocketAddr::V6(SocketAddrV6::new(ip, self.u16()?, 0, 0))
            }
            _ => return None,
        })
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = self.len()?;
        self.take(len).map(<[u8]>::to_vec)
    }

    fn string(&mut self) -> Option<String> {
        let len = self.len()?;
        std::str::from_utf8(self.take(len)?).ok().map(str::to_owned)
    }

    /// A later duplicate key replaces the earlier value, as serde's map does.
    fn tags(&mut self) -> Option<Tags> {
        let len = self.len()?;
        let mut tags = Tags::new();
        for _ in 0..len {
            let key = self.string()?;
            tags.insert(key, self.string()?);
        }
        Some(tags)
    }

    fn state(&mut self) -> Option<MemberState> {
        Some(match self.variant()? {
            0 => MemberState::Alive,
            1 => MemberState::Suspect,
            2 => MemberState::Failed,
            3 => MemberState::Left,
            _ => return None,
        })
    }

    fn record(&mut self) -> Option<MemberRecord> {
        Some(MemberRecord {
            id: self.id()?,
            addr: self.addr()?,
            incarnation: self.u64()?,
            state: self.state()?,
            tags: self.tags()?,
        })
    }

    fn gossip(&mut self) -> Option<Gossip> {
        Some(match self.variant()? {
            0 => Gossip::Alive { id: self.id()?, incarnation: self.u64()?, addr: self.addr()?, tags: self.tags()? },
            1 => Gossip::Suspect { id: self.id()?, incarnation: self.u64()?, accuser: self.id()? },
            2 => Gossip::Failed { id: self.id()?, incarnation: self.u64()?, accuser: self.id()? },
            3 => Gossip::Leave { id: self.id()?, incarnation: self.u64()? },
            4 => Gossip::UserBroadcast { origin: self.id()?, seq: self.u64()?, payload: self.bytes()? },
            5 => Gossip::Leader { term: self.u64()?, leader: self.id()?, round: self.u64()? },
            _ => return None,
        })
    }

    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let len = self.len()?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(item(self)?);
        }
        Some(items)
    }

    fn message(&mut self) -> Option<Message> {
        Some(match self.variant()? {
            0 => {
                let (seq, target) = (self.u64()?, self.id()?);
                let (digest, quiet, picture) = self.flagged()?;
                if picture.is_some() {
                    return None;
                }
                Message::Ping { seq, target, digest, quiet, gossip: self.list(Self::gossip)? }
            }
            1 => {
                let seq = self.u64()?;
                let (digest, quiet, picture) = self.flagged()?;
                if quiet {
                    return None;
                }
                Message::Ack { seq, digest, picture, gossip: self.list(Self::gossip)? }
            }
            2 => Message::Nack { seq: self.u64()? },
            3 => Message::PingReq {
                seq: self.u64()?,
                target: self.id()?,
                target_addr: self.addr()?,
                gossip: self.list(Self::gossip)?,
            },
            4 => Message::Gossip { gossip: self.list(Self::gossip)? },
            5 => Message::PushPull {
                reply: self.bool()?,
                part: self.u16()?,
                parts: self.u16()?,
                members: self.list(Self::record)?,
            },
            6 => Message::Join { member: self.record()?, send_state: self.bool()? },
            7 => Message::RequestVote { term: self.u64()?, pre_vote: self.bool()?, transfer: self.bool()? },
            8 => Message::Vote { term: self.u64()?, pre_vote: self.bool()?, granted: self.bool()? },
            9 => Message::Heartbeat { term: self.u64()?, seq: self.u64()? },
            10 => Message::HeartbeatAck { term: self.u64()?, seq: self.u64()? },
            11 => Message::TimeoutNow { term: self.u64()? },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Each primitive reader against postcard's (the conventions the codec follows), on
    //! every byte string near its edges; the wire tests pin whole messages with golden bytes.

    use proptest::prelude::*;
    use serde::de::DeserializeOwned;

    use super::*;

    /// postcard's reading of a `T` from the front of `bytes`, and what is left.
    fn theirs<T: DeserializeOwned>(bytes: &[u8]) -> Option<(T, usize)> {
        postcard::take_from_bytes::<T>(bytes).ok().map(|(value, rest)| (value, rest.len()))
    }

    fn ours<'a, T>(bytes: &'a [u8], read: impl FnOnce(&mut Reader<'a>) -> Option<T>) -> Option<(T, usize)> {
        let mut r = Reader(bytes);
        read(&mut r).map(|value| (value, r.0.len()))
    }

    /// Every string of up to two bytes, and runs of continuation bytes of every length up to
    /// eleven ending in every final byte: overlong, exact and overflowing varints.
    fn edge_strings() -> Vec<Vec<u8>> {
        let mut strings = vec![vec![]];
        for a in 0..=255u8 {
            strings.push(vec![a]);
            for b in 0..=255u8 {
                strings.push(vec![a, b]);
            }
        }
        for run in 1..=11 {
            for continuation in [0x80_u8, 0x81, 0xff] {
                for last in 0..=255u8 {
                    let mut s = vec![continuation; run];
                    s.push(last);
                    strings.push(s.clone());
                    s.push(0x05);
                    strings.push(s);
                }
            }
        }
        strings
    }

    #[test]
    fn integers_flags_and_tags_read_as_postcard_reads() {
        for s in edge_strings() {
            assert_eq!(ours(&s, Reader::u64), theirs::<u64>(&s), "u64 from {s:02x?}");
            assert_eq!(ours(&s, Reader::u16), theirs::<u16>(&s), "u16 from {s:02x?}");
            assert_eq!(ours(&s, Reader::variant), theirs::<u32>(&s), "u32 from {s:02x?}");
            assert_eq!(ours(&s, Reader::bool), theirs::<bool>(&s), "bool from {s:02x?}");
            assert_eq!(ours(&s, Reader::state), theirs::<MemberState>(&s), "state from {s:02x?}");
        }
    }

    #[test]
    fn flags_read_what_they_announce_and_no_other_bit() {
        for (digest, quiet, picture) in [(None, false, None), (Some(7), true, None), (Some(1), false, Some(2))] {
            let mut out = Vec::new();
            put_flagged(&mut out, digest, quiet, picture);
            assert_eq!(Reader(&out).flagged(), Some((digest, quiet, picture)));
        }
        assert_eq!(Reader(&[0b1000]).flagged(), None, "an unknown flag");
        assert_eq!(Reader(&[0b001, 1, 2]).flagged(), None, "a digest cut short");
    }

    #[test]
    fn tags_len_is_what_put_tags_writes() {
        let long = "v".repeat(300);
        let cases: [&[(&str, &str)]; 4] = [&[], &[("k", "")], &[("role", "db"), ("zone", "a")], &[("k", &long)]];
        for pairs in cases {
            let tags: Tags = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let mut out = Vec::new();
            put_tags(&mut out, &tags);
            assert_eq!(crate::member::tags_encoded_len(&tags), out.len(), "{pairs:?}");
        }
        for value in [0, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(varint_len(value), out.len(), "{value}");
        }
    }

    #[test]
    fn a_repeated_tag_key_keeps_its_last_value_as_with_postcard() {
        let map = [2, 1, b'k', 1, b'a', 1, b'k', 1, b'b'];
        assert_eq!(ours(&map, Reader::tags), theirs::<Tags>(&map));
        assert_eq!(ours(&map, Reader::tags).map(|(t, _)| t["k"].clone()), Some("b".to_string()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Addresses: any variant byte, then any octets and port bytes.
        #[test]
        fn addresses_read_as_postcard_reads(variant in 0_u8..4, rest in prop::collection::vec(any::<u8>(), 0..24)) {
            let s = [&[variant][..], &rest].concat();
            prop_assert_eq!(ours(&s, Reader::addr), theirs::<SocketAddr>(&s));
        }

        /// Strings, byte strings and tags: any length prefix, then bytes that are mostly
        /// text, sometimes not UTF-8.
        #[test]
        fn strings_and_tags_read_as_postcard_reads(
            len in prop_oneof![0_u8..12, any::<u8>()],
            text in "\\PC{0,6}",
            junk in prop::collection::vec(prop_oneof![Just(0x80_u8), Just(0xc3), Just(0xff), any::<u8>()], 0..3),
            pairs in 0_u8..4,
        ) {
            let mut s = vec![len];
            s.extend_from_slice(text.as_bytes());
            s.extend_from_slice(&junk);
            s.extend_from_slice(text.as_bytes());
            prop_assert_eq!(ours(&s, Reader::string), theirs::<String>(&s));
            prop_assert_eq!(ours(&s, Reader::bytes), theirs::<Vec<u8>>(&s));
            let map = [&[pairs][..], &s, &s].concat();
            prop_assert_eq!(ours(&map, Reader::tags), theirs::<Tags>(&map));
        }
    }
}
