//! No byte string harms a node: whatever arrives, `handle_datagram` does not panic, a
//! rejected datagram changes nothing but the drop counters, and nothing a node sends
//! exceeds `max_datagram`, however big the tags and broadcasts it carries.
//!
//! The nodes run in a tiny in-test loop: every Transmit is delivered at once to the node at
//! its address, and time jumps to the earliest wakeup when nothing is in flight.

use std::collections::VecDeque;
use std::net::SocketAddr;

use conclave::core::wire::{self, WireError, MIN_MAX_DATAGRAM};
use conclave::core::{Command, Config, Event, Instant, Member, Node, NodeConfig, NodeId, Output, Tags, MAX_TAGS_BYTES};
use proptest::prelude::*;

fn addr(id: u64) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, u8::try_from(id).expect("small clusters")], 7946))
}

/// A few nodes, a queue of datagrams in flight, and a record of everything sent.
struct Cluster {
    nodes: Vec<Node>,
    now: Instant,
    in_flight: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Every datagram any node sent, `(from, to, bytes)`, in order.
    sent: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Every broadcast delivered, `(receiver, origin, payload)`.
    broadcasts: Vec<(NodeId, NodeId, Vec<u8>)>,
    /// Every datagram a node of the cluster rejected, `(from, to, why)`.
    rejected: Vec<(SocketAddr, SocketAddr, WireError)>,
    max_datagram: usize,
}

impl Cluster {
    /// `n` nodes (ids 1..=n) that all join through node 1.
    fn new(n: u64, config: &Config, seed: u64) -> Self {
        let now = Instant::ZERO;
        let nodes = (1..=n)
            .map(|i| {
                let config = NodeConfig::new(NodeId(i), addr(i), config.clone(), seed.wrapping_add(i));
                Node::new(config, now).expect("a valid config")
            })
            .collect();
        let mut cluster = Self {
            nodes,
            now,
            in_flight: VecDeque::new(),
            sent: Vec::new(),
            broadcasts: Vec::new(),
            rejected: Vec::new(),
            max_datagram: config.max_datagram,
        };
        for i in 1..n {
            cluster.nodes[usize::try_from(i).expect("small")]
                .handle_command(now, Command::Join(vec![addr(1)]))
                .expect("joining is always accepted");
        }
        cluster.drain();
        cluster
    }

    fn node(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[usize::try_from(id - 1).expect("small")]
    }

    /// Moves every node's outputs into the network, checking the size cap.
    fn drain(&mut self) {
        for node in &mut self.nodes {
            let from = node.addr();
            while let Some(output) = node.poll_output() {
                match output {
                    Output::Transmit(t) => {
                        assert!(
                            t.payload.len() <= self.max_datagram,
                            "{} sent {} B to {}, above max_datagram {}",
                            node.id(),
                            t.payload.len(),
                            t.to,
                            self.max_datagram
                        );
                        self.sent.push((from, t.to, t.payload.clone()));
                        self.in_flight.push_back((from, t.to, t.payload));
                    }
                    Output::Event(Event::Broadcast { origin, payload }) => {
                        self.broadcasts.push((node.id(), origin, payload));
                    }
                    Output::Event(_) | Output::Persist(_) => {}
                }
            }
        }
    }

    /// Delivers and ticks until `until` (virtual time), within a bounded number of steps.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..1_000_000 {
            self.drain();
            if let Some((from, to, bytes)) = self.in_flight.pop_front() {
                let now = self.now;
                if let Some(node) = self.nodes.iter_mut().find(|n| n.addr() == to) {
                    if let Err(error) = node.handle_datagram(now, from, &bytes) {
                        self.rejected.push((from, to, error));
                    }
                }
                continue;
            }
            let next = self.nodes.iter().filter_map(Node::poll_timeout).min();
            match next {
                Some(next) if next <= until => {
                    self.now = self.now.max(next);
                    let now = self.now;
                    for node in &mut self.nodes {
                        if node.poll_timeout().is_some_and(|t| t <= now) {
                            node.handle_timeout(now);
                        }
                    }
                }
                _ => {
                    self.now = self.now.max(until);
                    return;
                }
            }
        }
        panic!("the drive loop did not reach {until}: a livelock");
    }
}

fn view(node: &Node) -> Vec<Member> {
    node.members().cloned().collect()
}

/// Feeds `bytes` to `node` and checks the rejection contract: an error leaves the view
/// unchanged and adds exactly one to the drop counters.
fn feed(node: &mut Node, now: Instant, from: SocketAddr, bytes: &[u8]) -> Result<(), WireError> {
    let before = view(node);
    let dropped = node.stats().dropped.total();
    let result = node.handle_datagram(now, from, bytes);
    if result.is_err() {
        assert_eq!(view(node), before, "a rejected datagram changed the view: {result:?}");
        assert_eq!(node.stats().dropped.total(), dropped + 1, "a rejected datagram was not counted: {result:?}");
    } else {
        assert_eq!(node.stats().dropped.total(), dropped, "an accepted datagram was counted as dropped");
    }
    result
}

/// A formed three-node cluster and the datagrams it exchanged.
fn formed(seed: u64) -> Cluster {
    let mut cluster = Cluster::new(3, &Config::lan(), seed);
    cluster.run_until(Instant::from_secs(5));
    assert_eq!(cluster.rejected, [], "the nodes rejected each other's datagrams");
    cluster
}

#[test]
fn a_small_cluster_forms_in_the_test_loop() {
    let cluster = formed(1);
    for node in &cluster.nodes {
        assert_eq!(node.members().count(), 3, "{} sees {:?}", node.id(), view(node));
    }
    assert!(cluster.sent.len() > 10, "the nodes talked");
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(prop::sample::Index),
    Truncate(prop::sample::Index),
    Extend(Vec<u8>),
    Overwrite(prop::sample::Index, u8),
    /// Overwrite a body byte, then fix the checksum, so the body decoder and handlers see it.
    Reseal(prop::sample::Index, u8),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::FlipBit),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Reseal(i, b)),
    ]
}

/// Recomputes the checksum trailer (the last four bytes: CRC-32 of everything before).
fn reseal(bytes: &mut [u8]) {
    if bytes.len() < wire::MIN_ENVELOPE {
        return;
    }
    let (content, crc) = bytes.split_at_mut(bytes.len() - 4);
    crc.copy_from_slice(&(!crc_update(!0, content)).to_le_bytes());
}

/// Feeds `bytes` to a running CRC-32 (IEEE, reflected, polynomial 0xEDB88320), bit by bit:
/// the facade's tests do not depend on crc32fast, and the wire format names the algorithm,
/// not the crate.
fn crc_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    crc
}

fn mutate(mut bytes: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
    match mutation {
        Mutation::FlipBit(i) => {
            let bit = i.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        Mutation::Extend(extra) => bytes.extend_from_slice(extra),
        Mutation::Overwrite(i, b) => {
            let at = i.index(bytes.len());
            bytes[at] = *b;
        }
        Mutation::Reseal(i, b) => {
            // Past the magic and the version, before the trailer: the envelope's ids and
            // the body.
            if bytes.len() > wire::MIN_ENVELOPE {
                let at = 2 + i.index(bytes.len() - 6);
                bytes[at] = *b;
                reseal(&mut bytes);
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_a_node(
        seed in any::<u64>(),
        datagrams in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..1600), 1..16),
    ) {
        let mut cluster = formed(seed);
        let now = cluster.now;
        let node = cluster.node(1);
        for bytes in &datagrams {
            let _ = feed(node, now, addr(2), bytes);
            // And the same bytes behind a valid magic and version.
            if bytes.len() >= 2 {
                let mut bytes = bytes.clone();
                bytes[..2].copy_from_slice(&[wire::MAGIC, wire::VERSION]);
                prop_assert!(feed(node, now, addr(2), &bytes).is_err(), "a random checksum matched");
            }
        }
    }

    #[test]
    fn mutated_real_datagrams_never_panic_a_node(
        seed in any::<u64>(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), arb_mutation()), 1..32),
    ) {
        let mut cluster = formed(seed);
        let to_node_1: Vec<(SocketAddr, Vec<u8>)> =
            cluster.sent.iter().filter(|(_, to, _)| *to == addr(1)).map(|(from, _, b)| (*from, b.clone())).collect();
        prop_assert!(!to_node_1.is_empty());
        let now = cluster.now;
        let node = cluster.node(1);
        for (pick, mutation) in &picks {
            let (from, original) = &to_node_1[pick.index(to_node_1.len())];
            let bytes = mutate(original.clone(), mutation);
            let result = feed(node, now, *from, &bytes);
            // Damage the checksum does not cover cannot exist: only resealed bodies may pass.
            if !matches!(mutation, Mutation::Reseal(..)) && bytes != *original {
                prop_assert!(result.is_err(), "a damaged datagram was accepted after {:?}", mutation);
            }
        }
        // The node still works. (Forged but well-formed datagrams may have taught it nonsense,
        // such as a peer at its own address, so its peers may now reject some of its
        // datagrams: not checked here.)
        let until = cluster.now + std::time::Duration::from_secs(2);
        cluster.run_until(until);
    }
}

#[test]
fn wrong_cluster_version_or_checksum_is_dropped_and_counted() {
    let mut cluster = formed(7);
    let (from, bytes) = cluster
        .sent
        .iter()
        .rev()
        .find(|(_, to, _)| *to == addr(1))
        .map(|(from, _, bytes)| (*from, bytes.clone()))
        .expect("node 1 was sent something");
    let now = cluster.now;

    // Another cluster: a node configured with another cluster id sends to node 1.
    let mut other = Config::lan();
    other.cluster_id = 0xdead_beef;
    let mut stranger = Cluster::new(2, &other, 7);
    stranger.run_until(Instant::from_secs(2));
    let foreign = stranger.sent.first().expect("the join was sent").2.clone();
    let node = cluster.node(1);
    assert_eq!(feed(node, now, addr(9), &foreign), Err(WireError::WrongCluster { expected: 0, got: 0xdead_beef }));
    assert_eq!(node.stats().dropped.wrong_cluster, 1);

    // Another protocol version.
    let mut newer = bytes.clone();
    newer[1] = wire::VERSION + 1;
    assert_eq!(feed(node, now, from, &newer), Err(WireError::UnsupportedVersion { version: wire::VERSION + 1 }));
    assert_eq!(node.stats().dropped.version, 1);

    // Damaged in flight, in the body and in the header.
    let mut damaged = bytes.clone();
    *damaged.last_mut().expect("not empty") ^= 0x40;
    assert_eq!(feed(node, now, from, &damaged), Err(WireError::Checksum));
    let mut damaged = bytes.clone();
    damaged[3] ^= 0x01; // the sender id (after the magic, the version and cluster id 0)
    assert_eq!(feed(node, now, from, &damaged), Err(WireError::Checksum));
    assert_eq!(node.stats().dropped.checksum, 2);

    // Too large, truncated, not conclave at all.
    assert!(matches!(feed(node, now, from, &vec![0; 1401]), Err(WireError::TooLarge { len: 1401, max: 1400 })));
    assert_eq!(feed(node, now, from, &bytes[..7]), Err(WireError::Truncated { len: 7 }));
    assert_eq!(feed(node, now, from, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Err(WireError::BadMagic));
    let dropped = node.stats().dropped;
    assert_eq!((dropped.too_large, dropped.truncated, dropped.bad_magic), (1, 1, 1));
    assert_eq!(dropped.total(), 7);

    // The original still goes through.
    assert_eq!(feed(node, now, from, &bytes), Ok(()));
}

/// Tags that encode to exactly [`MAX_TAGS_BYTES`]: "role" and a long ASCII value.
fn full_tags(id: u64) -> Tags {
    // Map length (1), key length and "role" (5), value length (2), value.
    let value = format!("{id:03}").repeat(200)[..MAX_TAGS_BYTES - 8].to_string();
    Tags::from([("role".to_string(), value)])
}

/// The largest broadcast a node accepts.
fn largest_broadcast(node: &mut Node, now: Instant, max_datagram: usize, fill: u8) -> Vec<u8> {
    for len in (0..=max_datagram).rev() {
        if node.handle_command(now, Command::Broadcast(vec![fill; len])).is_ok() {
            return vec![fill; len];
        }
    }
    panic!("no broadcast accepted at all");
}

#[test]
fn no_datagram_exceeds_max_datagram_with_full_tags_and_broadcasts() {
    for max_datagram in [MIN_MAX_DATAGRAM, 1400] {
        let mut config = Config::lan();
        config.max_datagram = max_datagram;
        let mut cluster = Cluster::new(5, &config, 11);
        cluster.run_until(Instant::from_secs(3));
        let now = cluster.now;
        let mut expected_broadcasts = Vec::new();
        for id in 1..=5 {
            let node = cluster.node(id);
            node.handle_command(now, Command::SetTags(full_tags(id))).expect("tags at the limit are accepted");
            let payload = largest_broadcast(node, now, max_datagram, u8::try_from(id).expect("small"));
            assert!(payload.len() + 100 >= max_datagram, "the largest broadcast is near the cap");
            node.handle_command(now, Command::Broadcast(b"small".to_vec())).expect("a small broadcast");
            expected_broadcasts.push((NodeId(id), payload));
            expected_broadcasts.push((NodeId(id), b"small".to_vec()));
        }
        cluster.run_until(Instant::from_secs(60));
        assert_eq!(cluster.rejected, [], "the nodes rejected each other's datagrams");
        // `drain` checked the cap on every datagram; the content arrived too, so it was
        // packed rather than silently dropped.
        assert!(cluster.sent.iter().any(|(_, _, b)| b.len() > max_datagram - 100), "some datagrams were near the cap");
        for node in &cluster.nodes {
            for id in 1..=5 {
                let member = node.member(NodeId(id)).expect("everyone knows everyone");
                assert_eq!(member.tags, full_tags(id), "{} sees {}'s tags", node.id(), member.id);
            }
        }
        // Each broadcast was packed and sent, not dropped for its size, and delivered exactly
        // once to every other member: each member sends it a bounded number of times, but
        // never to a member known to have it.
        for (origin, payload) in &expected_broadcasts {
            let mut reached = 0;
            for receiver in (1..=5).map(NodeId).filter(|r| r != origin) {
                let copies =
                    cluster.broadcasts.iter().filter(|(r, o, p)| *r == receiver && o == origin && p == payload).count();
                assert!(copies <= 1, "{receiver} got {copies} copies of a {} B broadcast from {origin}", payload.len());
                reached += copies;
            }
            assert_eq!(reached, 4, "a {} B broadcast from {origin} reached {reached} of 4", payload.len());
        }
    }
}
