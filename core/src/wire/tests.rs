//! Wire format tests: round trips, robustness against any bytes, the datagram size cap,
//! golden bytes per message and gossip kind, and the order of decode checks.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use proptest::prelude::*;

use super::*;

const CLUSTER: u64 = 0x0123_4567_89ab_cdef;
const HEADER: Header = Header { cluster_id: CLUSTER, sender: NodeId(7) };

/// Where the body of a datagram from [`HEADER`] starts: after the magic, the version, the
/// cluster id (nine varint bytes) and the sender (one).
const BODY: usize = 2 + 9 + 1;

/// `bytes` without its checksum trailer, resealed.
fn reseal(bytes: &mut Vec<u8>) {
    bytes.truncate(bytes.len() - 4);
    seal(bytes);
}

fn v4() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 7), 7946))
}

fn v6() -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7), 7946, 0, 0))
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Tags whose encoding is exactly `len` bytes (`len` in 133..=16_388): one key "k" and an
/// ASCII value. Encoded: map length (1), key length (1), "k" (1), value length (2), value.
fn tags_of_len(len: usize) -> Tags {
    let tags = tags(&[("k", &"v".repeat(len - 5))]);
    assert_eq!(tags_encoded_len(&tags), len, "the value length takes two varint bytes");
    tags
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(spaced: &str) -> Vec<u8> {
    let digits: Vec<u8> = spaced.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("hex digits are ASCII"), 16).expect("hex"))
        .collect()
}

fn golden_messages() -> Vec<(&'static str, Message)> {
    let record = MemberRecord {
        id: NodeId(9),
        addr: v6(),
        incarnation: 3,
        state: MemberState::Suspect,
        tags: tags(&[("zone", "a")]),
    };
    vec![
        (
            "ping",
            Message::Ping {
                seq: 300,
                target: NodeId(9),
                digest: Some(0x0102),
                quiet: false,
                gossip: vec![Gossip::Leave { id: NodeId(5), incarnation: 2 }],
            },
        ),
        ("ack", Message::Ack { seq: 300, digest: None, picture: Some(0x102), gossip: vec![] }),
        ("nack", Message::Nack { seq: 1 }),
        ("ping-req", Message::PingReq { seq: 2, target: NodeId(9), target_addr: v4(), gossip: vec![] }),
        (
            "gossip",
            Message::Gossip { gossip: vec![Gossip::Suspect { id: NodeId(9), incarnation: 3, accuser: NodeId(7) }] },
        ),
        ("push-pull", Message::PushPull { reply: true, part: 1, parts: 2, members: vec![record.clone()] }),
        (
            "join",
            Message::Join {
                member: MemberRecord {
                    id: NodeId(7),
                    addr: v4(),
                    incarnation: 0,
                    state: MemberState::Alive,
                    tags: Tags::new(),
                },
                send_state: true,
            },
        ),
        ("request-vote", Message::RequestVote { term: 300, pre_vote: true, transfer: false }),
        ("vote", Message::Vote { term: 5, pre_vote: false, granted: true }),
        ("heartbeat", Message::Heartbeat { term: 5, seq: 130 }),
        ("heartbeat-ack", Message::HeartbeatAck { term: 6, seq: 1 }),
        ("timeout-now", Message::TimeoutNow { term: 5 }),
    ]
}

fn golden_gossip() -> Vec<(&'static str, Gossip)> {
    vec![
        ("alive", Gossip::Alive { id: NodeId(9), incarnation: 1, addr: v4(), tags: tags(&[("role", "db")]) }),
        ("alive-v6", Gossip::Alive { id: NodeId(9), incarnation: 1, addr: v6(), tags: Tags::new() }),
        ("suspect", Gossip::Suspect { id: NodeId(9), incarnation: 200, accuser: NodeId(7) }),
        ("failed", Gossip::Failed { id: NodeId(9), incarnation: 2, accuser: NodeId(7) }),
        ("leave", Gossip::Leave { id: NodeId(9), incarnation: 2 }),
        ("user-broadcast", Gossip::UserBroadcast { origin: NodeId(7), seq: 1, payload: b"hi".to_vec() }),
        ("leader", Gossip::Leader { term: 5, leader: NodeId(7), round: 3 }),
    ]
}

// ----- golden bytes -------------------------------------------------------------------

/// The envelope of every golden datagram: magic 0xC7, version 4, cluster id
/// 0x0123456789abcdef and sender 7 as varints; then the body, then the checksum.
const GOLDEN_ENVELOPE: &str = "c7 04 ef9bafcdf8acd19101 07";

/// One datagram per message kind, as `(checksum, body)`: the datagram is
/// [`GOLDEN_ENVELOPE`], the body (split by field), the checksum. Checksums were checked
/// independently with Python's `zlib.crc32(datagram[:-4])`, little-endian. The first body byte is the kind's index in
/// [`MessageKind::ALL`]; integers are postcard varints (300 = `ac02`, port 7946 = `8a3e`);
/// a socket address is its variant (0 = V4, 1 = V6), the raw octets, the port.
const GOLDEN_MESSAGES: [(&str, &str, &str); 12] = [
    // Ping { seq: 300, target: 9, digest: Some(0x102) (flags 01), quiet: false, gossip: [Leave { id: 5, incarnation: 2 }] }
    ("ping", "9ad80efd", "00 ac02 09 01 02010000 01 030502"),
    // Ack { seq: 300, digest: None, picture: Some(0x102) (flags 04), gossip: [] }
    ("ack", "09562021", "01 ac02 04 02010000 00"),
    // Nack { seq: 1 }
    ("nack", "73aaaa06", "02 01"),
    // PingReq { seq: 2, target: 9, target_addr: 10.0.0.7:7946, gossip: [] }
    ("ping-req", "834ff233", "03 02 09 00 0a000007 8a3e 00"),
    // Gossip { gossip: [Suspect { id: 9, incarnation: 3, accuser: 7 }] }
    ("gossip", "1980d7e5", "04 01 01090307"),
    // PushPull { reply, part 1 of 2, members: [9 at [2001:db8::7]:7946, incarnation 3, Suspect, zone=a] }
    ("push-pull", "23b78a33", "05 01 01 02 01 09 01 20010db8000000000000000000000007 8a3e 03 01 01 047a6f6e65 0161"),
    // Join { member: 7 at 10.0.0.7:7946, incarnation 0, Alive, no tags; send_state: true }
    ("join", "0d7ee42e", "06 07 00 0a000007 8a3e 00 00 00 01"),
    // RequestVote { term: 300, pre_vote: true, transfer: false }
    ("request-vote", "0fba63a6", "07 ac02 01 00"),
    // Vote { term: 5, pre_vote: false, granted: true }
    ("vote", "b80c7b6c", "08 05 00 01"),
    // Heartbeat { term: 5, seq: 130 }
    ("heartbeat", "149172dd", "09 05 8201"),
    // HeartbeatAck { term: 6, seq: 1 }
    ("heartbeat-ack", "48925d2d", "0a 06 01"),
    // TimeoutNow { term: 5 }
    ("timeout-now", "23d505d0", "0b 05"),
];

/// One item per gossip kind, encoded alone as it rides in a gossip list.
const GOLDEN_GOSSIP: [(&str, &str); 7] = [
    // Alive { id: 9, incarnation: 1, addr: 10.0.0.7:7946, tags: role=db }
    ("alive", "00 09 01 00 0a000007 8a3e 01 04726f6c65 026462"),
    // Alive { id: 9, incarnation: 1, addr: [2001:db8::7]:7946, tags: {} }
    ("alive-v6", "00 09 01 01 20010db8000000000000000000000007 8a3e 00"),
    // Suspect { id: 9, incarnation: 200, accuser: 7 }
    ("suspect", "01 09 c801 07"),
    // Failed { id: 9, incarnation: 2, accuser: 7 }
    ("failed", "02 09 02 07"),
    // Leave { id: 9, incarnation: 2 }
    ("leave", "03 09 02"),
    // UserBroadcast { origin: 7, seq: 1, payload: "hi" }
    ("user-broadcast", "04 07 01 02 6869"),
    // Leader { term: 5, leader: 7, round: 3 }
    ("leader", "05 05 07 03"),
];

#[test]
fn golden_bytes_per_message_kind() {
    let messages = golden_messages();
    assert_eq!(messages.len(), MessageKind::ALL.len(), "one golden datagram per kind");
    for ((name, message), (golden_name, crc, body)) in messages.iter().zip(GOLDEN_MESSAGES) {
        assert_eq!(*name, golden_name);
        assert_eq!(message.kind().name(), *name);
        let expected = unhex(&format!("{GOLDEN_ENVELOPE} {body} {crc}"));
        let bytes = encode(HEADER, message, MIN_MAX_DATAGRAM).expect("small");
        assert_eq!(hex(&bytes), hex(&expected), "{name}: the wire format changed");
        assert_eq!(usize::from(bytes[BODY]), message.kind().index(), "{name}: body starts with the kind");
        assert_eq!(decode(&expected, CLUSTER, MIN_MAX_DATAGRAM), Ok((HEADER, message.clone())), "{name}");
        assert_eq!(inspect(&expected, CLUSTER, MIN_MAX_DATAGRAM), Ok((HEADER, message.kind())), "{name}");
    }
}

#[test]
fn inspect_election_reads_the_election_kinds_only() {
    for (name, message) in golden_messages() {
        let bytes = encode(HEADER, &message, MIN_MAX_DATAGRAM).expect("small");
        let read = inspect_election(&bytes, CLUSTER, MIN_MAX_DATAGRAM).map(|(h, m)| (h.sender, m));
        let expected = match message {
            Message::RequestVote { term, pre_vote, transfer } => {
                Some(ElectionMessage::RequestVote { term, pre_vote, transfer })
            }
            Message::Vote { term, pre_vote, granted } => Some(ElectionMessage::Vote { term, pre_vote, granted }),
            Message::Heartbeat { term, .. } => Some(ElectionMessage::Heartbeat { term }),
            Message::HeartbeatAck { term, .. } => Some(ElectionMessage::HeartbeatAck { term }),
            Message::TimeoutNow { term } => Some(ElectionMessage::TimeoutNow { term }),
            _ => None,
        };
        assert_eq!(read, expected.map(|m| (HEADER.sender, m)), "{name}");
        let mut damaged = bytes.clone();
        damaged[BODY + 1] ^= 0x01;
        assert_eq!(inspect_election(&damaged, CLUSTER, MIN_MAX_DATAGRAM), None, "{name}: a bad checksum");
        assert_eq!(inspect_election(&bytes, CLUSTER + 1, MIN_MAX_DATAGRAM), None, "{name}: another cluster");
    }
    assert_eq!(inspect_election(&[], CLUSTER, MIN_MAX_DATAGRAM), None);
}

#[test]
fn golden_bytes_per_gossip_kind() {
    for ((name, item), (golden_name, expected)) in golden_gossip().iter().zip(GOLDEN_GOSSIP) {
        assert_eq!(*name, golden_name);
        assert_eq!(hex(&encode_gossip(item)), hex(&unhex(expected)), "{name}: the gossip format changed");
        // And inside a message, where the writer puts it.
        let mut writer = DatagramWriter::new(HEADER, &Message::Gossip { gossip: vec![] }, MIN_MAX_DATAGRAM)
            .expect("an empty gossip message fits");
        assert!(writer.push(item));
        let bytes = writer.finish();
        assert_eq!(hex(&bytes[BODY..bytes.len() - 4]), format!("0401{}", hex(&unhex(expected))), "{name}");
    }
}

#[test]
fn golden_header_fields() {
    let bytes = encode(HEADER, &Message::Nack { seq: 1 }, MIN_MAX_DATAGRAM).expect("small");
    assert_eq!(bytes[..2], [MAGIC, VERSION]);
    assert_eq!(decode_header(&bytes, MIN_MAX_DATAGRAM), Ok(HEADER));
    assert_eq!(bytes.len(), envelope_len(HEADER) + 2);
    assert_eq!(envelope_len(HEADER), BODY + 4);
    // The usual envelope: cluster 0, ids below 128.
    assert_eq!(envelope_len(Header { cluster_id: 0, sender: NodeId(5) }), MIN_ENVELOPE);
    assert_eq!(envelope_len(Header { cluster_id: u64::MAX, sender: NodeId(u64::MAX) }), MAX_ENVELOPE);
}

// ----- decode checks, in order ------------------------------------------------------

fn valid() -> Vec<u8> {
    encode(
        HEADER,
        &Message::Ping { seq: 1, target: NodeId(9), digest: None, quiet: false, gossip: vec![] },
        MIN_MAX_DATAGRAM,
    )
    .expect("small")
}

/// A sealed datagram of `cluster_id` with any body, well-formed or not.
fn with_body(cluster_id: u64, body: &[u8]) -> Vec<u8> {
    let mut bytes = envelope(Header { cluster_id, sender: NodeId(7) }, 256);
    bytes.extend_from_slice(body);
    seal(&mut bytes);
    bytes
}

#[test]
fn the_size_cap_is_checked_first() {
    let max = MIN_MAX_DATAGRAM;
    // Garbage, and too large: the size is what is reported.
    assert_eq!(decode(&vec![0xff; max + 1], CLUSTER, max), Err(WireError::TooLarge { len: max + 1, max }));
    // A gossip message with one broadcast of exactly max_datagram bytes: envelope,
    // kind, count, item kind, origin, seq (5), payload length (2), payload.
    let payload = vec![0xaa; max - envelope_len(HEADER) - 5 - 2];
    let message = Message::Gossip { gossip: vec![Gossip::UserBroadcast { origin: NodeId(7), seq: 1, payload }] };
    let exact = encode(HEADER, &message, max).expect("exactly at the cap");
    assert_eq!(exact.len(), max);
    assert_eq!(decode(&exact, CLUSTER, max), Ok((HEADER, message)));
    assert_eq!(decode(&exact, CLUSTER, max - 1), Err(WireError::TooLarge { len: max, max: max - 1 }));
}

#[test]
fn each_decode_check_reports_the_first_failure() {
    let max = MIN_MAX_DATAGRAM;
    let good = valid();

    // Truncated (and with a bad magic): the length is what is reported.
    for len in 0..MIN_ENVELOPE {
        let mut short = good[..len].to_vec();
        if len > 0 {
            short[0] = b'X';
        }
        assert_eq!(decode(&short, CLUSTER, max), Err(WireError::Truncated { len }));
    }
    // A bare envelope with an empty body passes the envelope checks; the body is malformed.
    assert_eq!(decode(&with_body(CLUSTER, &[]), CLUSTER, max), Err(WireError::Malformed));

    // Bad magic (and a bad version and checksum).
    let mut bad = good.clone();
    bad[0] = b'X';
    bad[1] = 9;
    assert_eq!(decode(&bad, CLUSTER, max), Err(WireError::BadMagic));
    // A datagram of versions 1 and 2 (magic "CNCL", then the version) names its version.
    let mut old = good.clone();
    old[..5].copy_from_slice(b"CNCL\x02");
    assert_eq!(decode(&old, CLUSTER, max), Err(WireError::UnsupportedVersion { version: 2 }));

    // Bad version (and checksum).
    let mut bad = good.clone();
    bad[1] = 2;
    assert_eq!(decode(&bad, CLUSTER, max), Err(WireError::UnsupportedVersion { version: 2 }));
    let mut bad = good.clone();
    bad[1] = 0;
    reseal(&mut bad);
    assert_eq!(decode(&bad, CLUSTER, max), Err(WireError::UnsupportedVersion { version: 0 }));

    // Bad checksum, from another cluster: the damage is reported, not the cluster.
    let mut bad = with_body(CLUSTER + 1, &good[BODY..good.len() - 4]);
    *bad.last_mut().expect("not empty") ^= 1;
    assert_eq!(decode(&bad, CLUSTER, max), Err(WireError::Checksum));
    // A damaged body.
    let mut bad = good.clone();
    bad[BODY + 1] ^= 0x10;
    assert_eq!(decode(&bad, CLUSTER, max), Err(WireError::Checksum));
    // A checksummed envelope whose sender is no varint (only a forger makes one).
    let mut forged = vec![MAGIC, VERSION, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    seal(&mut forged);
    assert_eq!(decode(&forged, 0, max), Err(WireError::Malformed));

    // Wrong cluster, with a malformed body: the cluster is reported.
    let bad = with_body(CLUSTER + 1, &[0xff, 0xff]);
    assert_eq!(decode(&bad, CLUSTER, max), Err(WireError::WrongCluster { expected: CLUSTER, got: CLUSTER + 1 }));
    assert_eq!(decode_header(&bad, max), Ok(Header { cluster_id: CLUSTER + 1, sender: NodeId(7) }));

    // Malformed bodies: an unknown kind, a truncated one, trailing bytes, a bad bool.
    for body in [&[0x0b][..], &[0x7f], &[0x00, 0x01], &[0x02, 0x01, 0x00], &[0x07, 0x04, 0x02], &[0x02, 0xff]] {
        assert_eq!(decode(&with_body(CLUSTER, body), CLUSTER, max), Err(WireError::Malformed), "{}", hex(body));
    }
    // Invalid: tags above MAX_TAGS_BYTES (in a join, a push-pull record, alive gossip).
    let big = tags_of_len(MAX_TAGS_BYTES + 1);
    let record =
        MemberRecord { id: NodeId(7), addr: v4(), incarnation: 1, state: MemberState::Alive, tags: big.clone() };
    let alive = Gossip::Alive { id: NodeId(7), incarnation: 1, addr: v4(), tags: big };
    let too_big_tags = WireError::Invalid { why: "tags above the size limit" };
    for message in [
        Message::Join { member: record.clone(), send_state: false },
        Message::PushPull { reply: false, part: 0, parts: 1, members: vec![record.clone()] },
        Message::Ping { seq: 1, target: NodeId(9), digest: Some(1), quiet: false, gossip: vec![alive.clone()] },
        Message::Ack { seq: 1, digest: None, picture: None, gossip: vec![alive.clone()] },
        Message::PingReq { seq: 1, target: NodeId(9), target_addr: v4(), gossip: vec![alive.clone()] },
        Message::Gossip { gossip: vec![Gossip::Leave { id: NodeId(1), incarnation: 1 }, alive] },
    ] {
        let bytes = encode(HEADER, &message, max).expect("fits");
        assert_eq!(decode(&bytes, CLUSTER, max), Err(too_big_tags.clone()), "{:?}", message.kind());
    }
    // ... but exactly MAX_TAGS_BYTES is fine.
    let record = MemberRecord { tags: tags_of_len(MAX_TAGS_BYTES), ..record };
    let bytes = encode(HEADER, &Message::Join { member: record, send_state: true }, max).expect("fits");
    assert!(decode(&bytes, CLUSTER, max).is_ok());

    // Invalid: push-pull part out of range (checked before the records).
    let range = WireError::Invalid { why: "push-pull part out of range" };
    for (part, parts) in [(0, 0), (1, 1), (5, 2), (u16::MAX, u16::MAX)] {
        let message = Message::PushPull { reply: true, part, parts, members: vec![] };
        let bytes = encode(HEADER, &message, max).expect("fits");
        assert_eq!(decode(&bytes, CLUSTER, max), Err(range.clone()), "part {part} of {parts}");
    }
    let message = Message::PushPull { reply: true, part: u16::MAX - 1, parts: u16::MAX, members: vec![] };
    assert!(decode(&encode(HEADER, &message, max).expect("fits"), CLUSTER, max).is_ok());
}

#[test]
fn encode_refuses_what_does_not_fit() {
    let message = Message::Gossip {
        gossip: vec![Gossip::UserBroadcast { origin: NodeId(1), seq: 1, payload: vec![0; MIN_MAX_DATAGRAM] }],
    };
    let len = encode(HEADER, &message, MAX_MAX_DATAGRAM).expect("fits the largest").len();
    assert_eq!(encode(HEADER, &message, len - 1), Err(WireError::TooLarge { len, max: len - 1 }));
    assert_eq!(encode(HEADER, &message, len).map(|b| b.len()), Ok(len));
}

// ----- strategies ---------------------------------------------------------------------

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(ip.into(), port))),
        // Flow info and scope id do not travel (serde's compact form is address and port).
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(
            ip.into(),
            port,
            0,
            0
        ))),
    ]
}

fn arb_id() -> impl Strategy<Value = NodeId> {
    prop_oneof![0_u64..300, any::<u64>()].prop_map(NodeId)
}

fn arb_incarnation() -> impl Strategy<Value = u64> {
    prop_oneof![0_u64..300, any::<u64>()]
}

/// Tags within [`MAX_TAGS_BYTES`]: a few small entries of any Unicode, or one near the cap.
fn arb_tags() -> impl Strategy<Value = Tags> {
    prop_oneof![
        3 => prop::collection::btree_map("\\PC{0,12}", "\\PC{0,40}", 0..8).prop_map(|mut tags| {
            while tags_encoded_len(&tags) > MAX_TAGS_BYTES {
                let last = tags.keys().next_back().cloned().expect("too large, so not empty");
                tags.remove(&last);
            }
            tags
        }),
        1 => (133_usize..=MAX_TAGS_BYTES).prop_map(tags_of_len),
    ]
}

fn arb_state() -> impl Strategy<Value = MemberState> {
    prop_oneof![
        Just(MemberState::Alive),
        Just(MemberState::Suspect),
        Just(MemberState::Failed),
        Just(MemberState::Left)
    ]
}

fn arb_record() -> impl Strategy<Value = MemberRecord> {
    (arb_id(), arb_addr(), arb_incarnation(), arb_state(), arb_tags())
        .prop_map(|(id, addr, incarnation, state, tags)| MemberRecord { id, addr, incarnation, state, tags })
}

fn arb_gossip() -> impl Strategy<Value = Gossip> {
    prop_oneof![
        (arb_id(), arb_incarnation(), arb_addr(), arb_tags()).prop_map(|(id, incarnation, addr, tags)| Gossip::Alive {
            id,
            incarnation,
            addr,
            tags
        }),
        (arb_id(), arb_incarnation(), arb_id()).prop_map(|(id, incarnation, accuser)| Gossip::Suspect {
            id,
            incarnation,
            accuser
        }),
        (arb_id(), arb_incarnation(), arb_id()).prop_map(|(id, incarnation, accuser)| Gossip::Failed {
            id,
            incarnation,
            accuser
        }),
        (arb_id(), arb_incarnation()).prop_map(|(id, incarnation)| Gossip::Leave { id, incarnation }),
        (arb_id(), any::<u64>(), prop::collection::vec(any::<u8>(), 0..600))
            .prop_map(|(origin, seq, payload)| Gossip::UserBroadcast { origin, seq, payload }),
        (any::<u64>(), arb_id(), any::<u64>()).prop_map(|(term, leader, round)| Gossip::Leader { term, leader, round }),
    ]
}

fn arb_gossip_list() -> impl Strategy<Value = Vec<Gossip>> {
    prop::collection::vec(arb_gossip(), 0..8)
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u64>(), arb_id(), any::<Option<u32>>(), any::<bool>(), arb_gossip_list())
            .prop_map(|(seq, target, digest, quiet, gossip)| Message::Ping { seq, target, digest, quiet, gossip }),
        (any::<u64>(), any::<Option<u32>>(), any::<Option<u32>>(), arb_gossip_list())
            .prop_map(|(seq, digest, picture, gossip)| Message::Ack { seq, digest, picture, gossip }),
        any::<u64>().prop_map(|seq| Message::Nack { seq }),
        (any::<u64>(), arb_id(), arb_addr(), arb_gossip_list())
            .prop_map(|(seq, target, target_addr, gossip)| Message::PingReq { seq, target, target_addr, gossip }),
        arb_gossip_list().prop_map(|gossip| Message::Gossip { gossip }),
        (any::<bool>(), 1_u16.., any::<u16>(), prop::collection::vec(arb_record(), 0..6))
            .prop_map(|(reply, parts, part, members)| Message::PushPull { reply, part: part % parts, parts, members }),
        (arb_record(), any::<bool>()).prop_map(|(member, send_state)| Message::Join { member, send_state }),
        (any::<u64>(), any::<bool>(), any::<bool>()).prop_map(|(term, pre_vote, transfer)| Message::RequestVote {
            term,
            pre_vote,
            transfer
        }),
        (any::<u64>(), any::<bool>(), any::<bool>()).prop_map(|(term, pre_vote, granted)| Message::Vote {
            term,
            pre_vote,
            granted
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(term, seq)| Message::Heartbeat { term, seq }),
        (any::<u64>(), any::<u64>()).prop_map(|(term, seq)| Message::HeartbeatAck { term, seq }),
        any::<u64>().prop_map(|term| Message::TimeoutNow { term }),
    ]
}

fn arb_header() -> impl Strategy<Value = Header> {
    (any::<u64>(), arb_id()).prop_map(|(cluster_id, sender)| Header { cluster_id, sender })
}

/// A message kind that carries piggybacked gossip, with an empty list for the writer.
fn arb_gossip_carrier() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u64>(), arb_id(), any::<Option<u32>>()).prop_map(|(seq, target, digest)| Message::Ping {
            seq,
            target,
            digest,
            quiet: false,
            gossip: vec![]
        }),
        (any::<u64>(), any::<Option<u32>>()).prop_map(|(seq, digest)| Message::Ack {
            seq,
            digest,
            picture: None,
            gossip: vec![]
        }),
        (any::<u64>(), arb_id(), arb_addr()).prop_map(|(seq, target, target_addr)| Message::PingReq {
            seq,
            target,
            target_addr,
            gossip: vec![]
        }),
        Just(Message::Gossip { gossip: vec![] }),
    ]
}

/// A valid datagram of `CLUSTER`, at most `MIN_MAX_DATAGRAM` long.
fn arb_datagram() -> impl Strategy<Value = Vec<u8>> {
    (arb_id(), arb_message()).prop_filter_map("fits the smallest cap", |(sender, message)| {
        encode(Header { cluster_id: CLUSTER, sender }, &message, MIN_MAX_DATAGRAM).ok()
    })
}

/// What the envelope checks say about `bytes`, re-implemented from the format's table:
/// `None` when the envelope is good and the body decides.
fn envelope_verdict(bytes: &[u8], cluster_id: u64, max: usize) -> Option<WireError> {
    if bytes.len() > max {
        return Some(WireError::TooLarge { len: bytes.len(), max });
    }
    if bytes.len() < 8 {
        return Some(WireError::Truncated { len: bytes.len() });
    }
    if bytes[0] != 0xc7 {
        if bytes.len() > 4 && &bytes[..4] == b"CNCL" {
            return Some(WireError::UnsupportedVersion { version: bytes[4] });
        }
        return Some(WireError::BadMagic);
    }
    if bytes[1] != 4 {
        return Some(WireError::UnsupportedVersion { version: bytes[1] });
    }
    let (content, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(content).to_le_bytes() != crc {
        return Some(WireError::Checksum);
    }
    // The cluster id: a varint of at most ten bytes, the last of them 0 or 1.
    let mut got = 0u64;
    for (i, &byte) in content[2..].iter().take(10).enumerate() {
        if i == 9 && byte > 1 {
            return Some(WireError::Malformed);
        }
        got |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (got != cluster_id).then_some(WireError::WrongCluster { expected: cluster_id, got });
        }
    }
    Some(WireError::Malformed)
}

/// The body decoder's verdicts: anything else from it is a bug.
fn is_body_error(error: &WireError) -> bool {
    matches!(error, WireError::Malformed | WireError::Invalid { .. })
}

/// A body that is mostly a valid message: `message` encoded by the codec, then cut,
/// overwritten or stretched at random places with bytes near the decoders' edges (0, 1, 2
/// for tags and flags; runs of continuation bytes and final bytes just past a type's range
/// for varints), so that every field's decoder meets near-misses.
fn arb_near_body() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        2 => prop::sample::select(vec![0_u8, 1, 2, 3, 4, 5, 11, 0x0f, 0x10, 0x7f, 0x80, 0x81, 0xc0, 0xff]),
        1 => any::<u8>(),
    ];
    let edit = (any::<prop::sample::Index>(), byte, 0_u8..4, 1_usize..11);
    (arb_message(), prop::collection::vec(edit, 0..4)).prop_map(|(message, edits)| {
        let mut body = Vec::new();
        codec::put_message(&mut body, &message);
        for (at, byte, how, run) in edits {
            let i = at.index(body.len() + 1);
            match how {
                0 => body.truncate(i),
                1 if i < body.len() => body[i] = byte,
                2 => body.insert(i, byte),
                // A varint of `run` bytes ending in `byte`: overlong, or overflowing its type.
                _ => {
                    let varint: Vec<u8> = std::iter::repeat_n(0x80 | byte, run - 1).chain([byte & 0x7f]).collect();
                    body.splice(i..i, varint);
                }
            }
        }
        body
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// A near-valid or arbitrary body is refused, or read as a message that encodes again
    /// canonically (never longer than it came: varints may arrive overlong) and reads back
    /// the same.
    #[test]
    fn what_the_codec_reads_it_writes_again(body in prop_oneof![
        4 => arb_near_body(),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]) {
        if let Some(message) = codec::read_message(&body) {
            let mut again = Vec::new();
            codec::put_message(&mut again, &message);
            prop_assert!(again.len() <= body.len(), "{} > {}", again.len(), body.len());
            prop_assert_eq!(codec::read_message(&again), Some(message));
        }
    }
}

proptest! {
    #[test]
    fn every_message_round_trips(header in arb_header(), message in arb_message()) {
        let bytes = encode(header, &message, MAX_MAX_DATAGRAM).expect("fits the largest datagram");
        prop_assert_eq!(decode(&bytes, header.cluster_id, MAX_MAX_DATAGRAM), Ok((header, message.clone())));
        prop_assert_eq!(inspect(&bytes, header.cluster_id, bytes.len()), Ok((header, message.kind())));
        // The cap is exact: one byte less and both sides refuse.
        let len = bytes.len();
        prop_assert_eq!(encode(header, &message, len - 1), Err(WireError::TooLarge { len, max: len - 1 }));
        prop_assert_eq!(decode(&bytes, header.cluster_id, len - 1), Err(WireError::TooLarge { len, max: len - 1 }));
    }

    #[test]
    fn every_gossip_item_round_trips_alone_and_in_a_message(item in arb_gossip()) {
        let alone = encode_gossip(&item);
        let message = Message::Gossip { gossip: vec![item] };
        let bytes = encode(HEADER, &message, MAX_MAX_DATAGRAM).expect("fits");
        // The item as it rides in a list: after the kind and the list's length.
        prop_assert_eq!(&bytes[BODY + 2..bytes.len() - 4], &alone[..]);
        prop_assert_eq!(decode(&bytes, CLUSTER, MAX_MAX_DATAGRAM), Ok((HEADER, message)));
    }

    #[test]
    fn every_member_record_round_trips_and_its_length_is_known(record in arb_record()) {
        let message = Message::Join { member: record.clone(), send_state: true };
        let bytes = encode(HEADER, &message, MAX_MAX_DATAGRAM).expect("fits");
        // Envelope, the kind, the record alone, the flag.
        prop_assert_eq!(bytes.len(), envelope_len(HEADER) + 1 + record_len(&record) + 1);
        prop_assert_eq!(decode(&bytes, CLUSTER, MIN_MAX_DATAGRAM), Ok((HEADER, message)));
    }

    #[test]
    fn arbitrary_bytes_never_panic_decode(
        bytes in prop::collection::vec(any::<u8>(), 0..1200),
        max in MIN_MAX_DATAGRAM..=MAX_MAX_DATAGRAM,
        magic_prefix in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if magic_prefix && bytes.len() >= 2 {
            bytes[..2].copy_from_slice(&[MAGIC, VERSION]);
        }
        let result = decode(&bytes, CLUSTER, max);
        match envelope_verdict(&bytes, CLUSTER, max) {
            Some(expected) => prop_assert_eq!(result.map(|_| ()), Err(expected)),
            None => prop_assert!(result.as_ref().map_or_else(is_body_error, |_| true), "{:?}", result),
        }
    }

    #[test]
    fn arbitrary_bodies_in_a_valid_envelope_never_panic_decode(
        kind in 0_u8..16,
        body in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        // Start with a plausible kind so the body decoder gets past the first byte.
        let bytes = with_body(CLUSTER, &[&[kind][..], &body].concat());
        match decode(&bytes, CLUSTER, MIN_MAX_DATAGRAM) {
            Ok((header, message)) => {
                // What decodes re-encodes (canonically, so no longer) and decodes the same.
                let again = encode(header, &message, MIN_MAX_DATAGRAM).expect("no longer than the original");
                prop_assert_eq!(decode(&again, CLUSTER, MIN_MAX_DATAGRAM), Ok((header, message)));
            }
            Err(error) => prop_assert!(is_body_error(&error), "{:?}", error),
        }
    }

    #[test]
    fn a_flipped_bit_is_always_caught_by_the_envelope(datagram in arb_datagram(), bit in any::<prop::sample::Index>()) {
        let bit = bit.index(datagram.len() * 8);
        let mut bytes = datagram.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let expected = match bit / 8 {
            0 => WireError::BadMagic,
            1 => WireError::UnsupportedVersion { version: bytes[1] },
            // CRC-32 catches every single-bit error, in the header fields it covers too.
            _ => WireError::Checksum,
        };
        prop_assert_eq!(decode(&bytes, CLUSTER, MIN_MAX_DATAGRAM), Err(expected));
    }

    #[test]
    fn a_truncated_datagram_is_rejected(datagram in arb_datagram(), cut in any::<prop::sample::Index>()) {
        let len = cut.index(datagram.len());
        let expected = if len < MIN_ENVELOPE { WireError::Truncated { len } } else { WireError::Checksum };
        prop_assert_eq!(decode(&datagram[..len], CLUSTER, MIN_MAX_DATAGRAM), Err(expected));
        // A strict prefix of what the checksum covers, resealed: the checksum passes and
        // the envelope or the body is too short (postcard is self-delimiting, so no strict
        // prefix of a message is a message).
        let mut bytes = datagram[..cut.index(datagram.len() - 4)].to_vec();
        seal(&mut bytes);
        let expected = if bytes.len() < MIN_ENVELOPE { WireError::Truncated { len: bytes.len() } } else { WireError::Malformed };
        prop_assert_eq!(decode(&bytes, CLUSTER, MIN_MAX_DATAGRAM), Err(expected));
    }

    #[test]
    fn an_extended_datagram_is_rejected(
        datagram in arb_datagram(),
        extra in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let bytes = [&datagram[..], &extra[..]].concat();
        let max = MIN_MAX_DATAGRAM;
        let expected = if bytes.len() > max { WireError::TooLarge { len: bytes.len(), max } } else { WireError::Checksum };
        prop_assert_eq!(decode(&bytes, CLUSTER, max), Err(expected));
        // Resealed: a whole message followed by trailing bytes.
        let mut resealed = [&datagram[..datagram.len() - 4], &extra[..]].concat();
        seal(&mut resealed);
        if resealed.len() <= max {
            prop_assert_eq!(decode(&resealed, CLUSTER, max), Err(WireError::Malformed));
        }
    }

    #[test]
    fn a_resealed_mutated_body_never_panics_decode(
        datagram in arb_datagram(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = datagram;
        bytes.truncate(bytes.len() - 4);
        if bytes.len() > BODY {
            for (at, value) in edits {
                let at = BODY + at.index(bytes.len() - BODY);
                bytes[at] = value;
            }
        }
        seal(&mut bytes);
        match decode(&bytes, CLUSTER, MIN_MAX_DATAGRAM) {
            Ok(_) => {}
            Err(error) => prop_assert!(is_body_error(&error), "{:?}", error),
        }
    }

    #[test]
    fn the_writer_stays_within_max_datagram_and_reports_what_it_packed(
        header in arb_header(),
        base in arb_gossip_carrier(),
        items in prop::collection::vec(arb_gossip(), 0..40),
        max in MIN_MAX_DATAGRAM..=4096_usize,
    ) {
        let mut writer = DatagramWriter::new(header, &base, max).expect("every carrier fits the minimum");
        let mut encoded_writer = DatagramWriter::new(header, &base, max).expect("as above");
        let mut packed = Vec::new();
        for item in &items {
            let room = writer.remaining();
            let encoded = encode_gossip(item);
            let pushed = writer.push(item);
            prop_assert_eq!(pushed, encoded_writer.push_encoded(&encoded), "push and push_encoded agree");
            if pushed {
                prop_assert!(encoded.len() <= room, "pushed {} B with {} B of room", encoded.len(), room);
                packed.push(item.clone());
            } else {
                // Refused only when it does not fit; the count's varint may grow by a byte.
                prop_assert!(encoded.len() + 1 > room, "refused {} B with {} B of room", encoded.len(), room);
            }
            prop_assert_eq!(writer.count(), packed.len());
        }
        let bytes = writer.finish();
        prop_assert_eq!(&bytes, &encoded_writer.finish());
        prop_assert!(bytes.len() <= max, "{} B above max_datagram {}", bytes.len(), max);
        let mut expected = base;
        match &mut expected {
            Message::Ping { gossip, .. }
            | Message::Ack { gossip, .. }
            | Message::PingReq { gossip, .. }
            | Message::Gossip { gossip } => *gossip = packed,
            _ => unreachable!("the strategy makes only gossip carriers"),
        }
        // Byte for byte what encoding the whole message at once gives.
        prop_assert_eq!(&bytes, &encode(header, &expected, max).expect("fits"));
        prop_assert_eq!(decode(&bytes, header.cluster_id, max), Ok((header, expected)));
    }
}

#[test]
fn the_writer_counts_the_longer_list_length_past_127_items() {
    // An empty gossip message is 17 B besides its list length (a 16-byte envelope with this
    // cluster id, the kind); a Leave of small ids is 3 B. 127 items: 17 + 1 + 381 = 399 B.
    // The 128th needs a two-byte length: 17 + 2 + 384 = 403, so with a cap of 402 it is
    // refused although 399 + 3 = 402 would seem to fit.
    assert_eq!(envelope_len(HEADER) + 1, 17);
    let leave = Gossip::Leave { id: NodeId(1), incarnation: 1 };
    let mut writer = DatagramWriter::new(HEADER, &Message::Gossip { gossip: vec![] }, 402).expect("fits");
    for _ in 0..127 {
        assert!(writer.push(&leave));
    }
    assert!(!writer.push(&leave));
    assert!(!writer.push_encoded(&encode_gossip(&leave)));
    assert_eq!(writer.count(), 127);
    let bytes = writer.finish();
    assert_eq!(bytes.len(), 399);
    let (_, message) = decode(&bytes, CLUSTER, 402).expect("valid");
    assert_eq!(message.gossip().len(), 127);

    // With room, the list goes past 127 and the length takes two bytes.
    let mut writer = DatagramWriter::new(HEADER, &Message::Gossip { gossip: vec![] }, 1400).expect("fits");
    while writer.push(&leave) {}
    assert_eq!(writer.count(), (1400 - 17 - 2) / 3);
    let bytes = writer.finish();
    assert!(bytes.len() <= 1400);
    assert_eq!(decode(&bytes, CLUSTER, 1400).expect("valid").1.gossip().len(), (1400 - 17 - 2) / 3);
}

#[test]
fn the_writer_refuses_a_message_that_cannot_fit() {
    let ping =
        Message::Ping { seq: u64::MAX, target: NodeId(u64::MAX), digest: Some(u32::MAX), quiet: false, gossip: vec![] };
    let empty = encode(HEADER, &ping, MAX_MAX_DATAGRAM).expect("fits").len();
    assert!(DatagramWriter::new(HEADER, &ping, empty - 1).is_none());
    let writer = DatagramWriter::new(HEADER, &ping, empty).expect("fits exactly");
    assert_eq!(writer.remaining(), 0);
    assert_eq!(writer.finish().len(), empty);
}
