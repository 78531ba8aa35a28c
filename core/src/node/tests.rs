//! Membership behaviour, in virtual time on the in-crate harness.

use std::time::Duration;

use super::timer::Timer;
use super::MAX_INCARNATION;
use crate::testkit::{addr, Cluster};
use crate::wire::{self, Gossip, Header, MemberRecord, Message};
use crate::{Command, Config, Event, Instant, MemberState, NodeId, Output, Tags};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn formed(n: usize, seed: u64) -> Cluster {
    formed_with(n, Config::lan(), seed)
}

/// `n` members running `config`, 5 s after they started: every view whole.
fn formed_with(n: usize, config: Config, seed: u64) -> Cluster {
    let mut cluster = Cluster::new(n, config, seed);
    cluster.run_for(secs(5));
    assert!(cluster.converged(), "{n} members did not converge in 5 s");
    cluster
}

fn datagram(sender: u64, message: &Message) -> Vec<u8> {
    let header = Header { cluster_id: Config::lan().cluster_id, sender: NodeId(sender) };
    wire::encode(header, message, Config::lan().max_datagram).expect("fits")
}

fn gossip(sender: u64, items: Vec<Gossip>) -> Vec<u8> {
    datagram(sender, &Message::Gossip { gossip: items })
}

/// `by`'s gossip that it declared `id` failed at incarnation 0.
fn failed(id: u64, by: u64) -> Vec<u8> {
    gossip(by, vec![Gossip::Failed { id: NodeId(id), incarnation: 0, accuser: NodeId(by) }])
}

/// `by`'s gossip that it suspects `id` at incarnation 0.
fn suspect(id: u64, by: u64) -> Vec<u8> {
    gossip(by, vec![Gossip::Suspect { id: NodeId(id), incarnation: 0, accuser: NodeId(by) }])
}

/// What `node` holds of member `id`.
fn state(node: &crate::Node, id: u64) -> MemberState {
    node.member(NodeId(id)).expect("known").state
}

/// A driver that holds a connection per member routes by `Transmit::to_id`: every datagram
/// for a member of the view or an answer to a member names it, and names the member that
/// runs at its address; only what goes to a seed (a join, a lone member's push-pull) does
/// not.
#[test]
fn every_datagram_names_the_member_it_is_for_except_those_to_a_seed() {
    let voters = crate::ElectionConfig::with_voters((0..5).map(NodeId));
    let mut cluster = formed_with(6, Config { election: voters, ..Config::lan() }, 61);
    cluster.crash(4);
    cluster.run_for(secs(30));
    cluster.restart(4, true);
    cluster.command(5, Command::Leave);
    cluster.run_for(secs(10));
    assert!(cluster.misnamed.is_empty(), "datagrams named another member: {:?}", cluster.misnamed);
    assert!(cluster.named > 1000, "{} named", cluster.named);
    assert!(cluster.unnamed.get(&wire::MessageKind::Join).is_some_and(|&n| n >= 5), "{:?}", cluster.unnamed);
    let others: Vec<_> = cluster
        .unnamed
        .keys()
        .filter(|k| !matches!(k, wire::MessageKind::Join | wire::MessageKind::PushPull))
        .collect();
    assert!(others.is_empty(), "only a join or a push-pull goes to a seed: {:?}", cluster.unnamed);
}

#[test]
fn the_view_version_moves_when_the_members_do_and_only_then() {
    let mut cluster = formed(3, 62);
    let snapshot = |c: &Cluster, i: usize| (c.node(i).view_version(), c.node(i).members().cloned().collect::<Vec<_>>());
    let before = snapshot(&cluster, 0);
    cluster.run_for(secs(10));
    assert_eq!(snapshot(&cluster, 0), before, "a quiet cluster: same members, same version");
    let own = cluster.node(1).view_version();
    let tags: Tags = [("role".to_string(), "db".to_string())].into_iter().collect();
    cluster.command(1, Command::SetTags(tags));
    assert!(cluster.node(1).view_version() > own, "its own tags move its version at once");
    cluster.run_for(secs(2));
    let after = snapshot(&cluster, 0);
    assert_ne!(after.1, before.1, "node 0 learned the tags");
    assert!(after.0 > before.0, "and its version went up: {} -> {}", before.0, after.0);
}

#[test]
fn members_join_through_one_seed_and_each_is_announced_once() {
    let cluster = formed(10, 1);
    for observer in 0..10u64 {
        for about in (0..10u64).filter(|&a| a != observer) {
            let joined = cluster
                .seen(|e| matches!(e, Event::MemberJoined(m) if m.id == NodeId(about)))
                .iter()
                .filter(|s| s.observer == NodeId(observer))
                .count();
            assert_eq!(joined, 1, "n{observer} announced n{about} {joined} times");
        }
    }
    assert!(cluster.seen(|e| !matches!(e, Event::MemberJoined(_))).is_empty(), "nothing else happened");
}

#[test]
fn a_crash_is_detected_by_every_live_member_once() {
    let mut cluster = formed(5, 2);
    cluster.crash(3);
    let crashed_at = cluster.now;
    cluster.run_for(secs(10));
    let mut verdicts = cluster.failed_verdicts(NodeId(3));
    verdicts.sort();
    assert_eq!(verdicts, vec![NodeId(0), NodeId(1), NodeId(2), NodeId(4)]);
    let suspected = cluster.seen(|e| matches!(e, Event::MemberSuspected(m) if m.id == NodeId(3)));
    assert!(suspected.len() <= 4, "at most one suspicion event per observer");
    let last = cluster.seen(|e| matches!(e, Event::MemberFailed(_))).iter().map(|s| s.at).max().unwrap();
    assert!(last - crashed_at <= secs(4), "detected everywhere after {:?}", last - crashed_at);
    for i in [0, 1, 2, 4] {
        assert_eq!(cluster.node(i).live_members(), 4);
    }
}

#[test]
fn a_paused_member_refutes_and_is_not_declared_failed() {
    let config = Config::lan();
    let window = config.suspicion_timeouts(5).0;
    for seed in [3, 13, 23] {
        let mut cluster = formed(5, seed);
        let incarnation = cluster.node(2).incarnation();
        // Stall n2 until the others suspect it, then for less than the suspicion window more.
        cluster.pause(2, secs(3600));
        let start = cluster.now;
        while cluster.seen(|e| matches!(e, Event::MemberSuspected(m) if m.id == NodeId(2))).is_empty() {
            assert!(cluster.now - start < secs(10), "seed {seed}: a stalled member was never suspected");
            cluster.run_for(Duration::from_millis(10));
        }
        cluster.pause(2, window / 2);
        cluster.run_for(secs(30));
        assert!(cluster.failed_verdicts(NodeId(2)).is_empty(), "seed {seed}: a paused member was declared failed");
        assert!(cluster.node(2).incarnation() > incarnation, "seed {seed}: it refuted");
        assert!(cluster.converged());
    }
}

#[test]
fn one_lossy_link_alone_never_causes_a_failure_verdict() {
    let mut cluster = formed(5, 4);
    // n2 watches n1 (its predecessor on the ring); cut them off from each other entirely.
    assert!(cluster.node(2).watched().any(|id| id == NodeId(1)));
    cluster.cut(1, 2);
    let ping_reqs_before = cluster.node(2).stats().sent.get(wire::MessageKind::PingReq);
    cluster.run_for(secs(120));
    assert!(
        cluster.node(2).stats().sent.get(wire::MessageKind::PingReq) > ping_reqs_before,
        "n2 should have probed n1 indirectly"
    );
    assert!(cluster.seen(|e| matches!(e, Event::MemberFailed(_))).is_empty());
    assert!(cluster.converged());
}

#[test]
fn twenty_percent_loss_for_ten_minutes_gives_no_false_verdict() {
    let mut cluster = formed(10, 5);
    cluster.loss = 0.2;
    cluster.run_for(secs(600));
    let failed = cluster.seen(|e| matches!(e, Event::MemberFailed(_)));
    assert!(failed.is_empty(), "false verdicts: {failed:?}");
    let probes: u64 = (0..10).map(|i| cluster.node(i).stats().sent.get(wire::MessageKind::PingReq)).sum();
    assert!(probes > 0, "loss this heavy must have triggered indirect probes");
}

#[test]
fn a_restarted_member_rejoins_with_its_disk() {
    let mut cluster = formed(5, 6);
    cluster.crash(4);
    cluster.run_for(secs(10));
    assert_eq!(cluster.failed_verdicts(NodeId(4)).len(), 4);
    let remembered = cluster.node(0).member(NodeId(4)).unwrap().incarnation;
    cluster.restart(4, true);
    cluster.run_for(secs(5));
    assert!(cluster.converged());
    assert!(cluster.node(0).member(NodeId(4)).unwrap().incarnation > remembered);
    assert_eq!(cluster.seen(|e| matches!(e, Event::MemberRecovered(m) if m.id == NodeId(4))).len(), 4);
}

#[test]
fn a_restarted_member_rejoins_whatever_incarnation_its_peers_remember() {
    let mut cluster = formed(5, 7);
    // Drive n4's incarnation up (each tag change bumps it), then lose its disk.
    for i in 0..40 {
        cluster.command(4, Command::SetTags(Tags::from([("round".into(), i.to_string())])));
        cluster.run_for(Duration::from_millis(50));
    }
    cluster.run_for(secs(5));
    let remembered = cluster.node(0).member(NodeId(4)).unwrap().incarnation;
    assert!(remembered >= 40);
    cluster.crash(4);
    cluster.run_for(secs(10));
    cluster.restart(4, false);
    assert_eq!(cluster.node(4).incarnation(), 0, "amnesia: it starts from zero");
    cluster.run_for(secs(5));
    assert!(cluster.converged(), "the restarted member is alive everywhere");
    assert!(cluster.node(4).incarnation() > remembered);
    assert!(cluster.durable(4).unwrap().incarnation > remembered, "and persisted it");
}

#[test]
fn a_graceful_leave_is_announced_once_and_never_as_a_failure() {
    let mut cluster = formed(6, 8);
    cluster.command(5, Command::Leave);
    cluster.run_for(secs(20));
    assert_eq!(cluster.seen(|e| matches!(e, Event::MemberLeft(m) if m.id == NodeId(5))).len(), 5);
    assert!(cluster.seen(|e| matches!(e, Event::MemberFailed(_) | Event::MemberSuspected(_))).is_empty());
    for i in 0..5 {
        assert_eq!(cluster.node(i).member(NodeId(5)).unwrap().state, MemberState::Left);
    }
    assert_eq!(cluster.node(5).poll_timeout(), None, "a member that left goes quiet");
}

#[test]
fn tags_reach_everyone_as_one_update() {
    let mut cluster = formed(6, 9);
    let tags = Tags::from([("zone".to_string(), "eu-1".to_string())]);
    cluster.command(1, Command::SetTags(tags.clone()));
    cluster.run_for(secs(5));
    let updates = cluster.seen(|e| matches!(e, Event::MemberUpdated(m) if m.id == NodeId(1) && m.tags == tags));
    assert_eq!(updates.len(), 5);
    let too_big = Tags::from([("k".to_string(), "v".repeat(600))]);
    let now = cluster.now;
    assert!(cluster.node_mut(1).handle_command(now, Command::SetTags(too_big)).is_err());
    assert_eq!(cluster.node(1).member(NodeId(1)).unwrap().tags, tags, "the previous tags stay");
}

#[test]
fn a_broadcast_is_delivered_once_to_every_other_member() {
    // Small clusters are where a bounded epidemic most often misses someone: each member
    // sends an update at most `retransmit_mult` times here, never to a member known to have it.
    for seed in 0..20 {
        let n = 4 + (seed as usize % 5);
        let mut cluster = formed(n, 100 + seed);
        let origin = seed as usize % n;
        cluster.command(origin, Command::Broadcast(b"deploy v2".to_vec()));
        cluster.run_for(secs(10));
        let delivered = cluster.seen(|e| matches!(e, Event::Broadcast { payload, .. } if payload == b"deploy v2"));
        let mut observers: Vec<NodeId> = delivered.iter().map(|s| s.observer).collect();
        observers.sort();
        let expected: Vec<NodeId> = (0..n as u64).filter(|&i| i != origin as u64).map(NodeId).collect();
        assert_eq!(observers, expected, "seed {seed}: {n} members, origin n{origin}");
    }
    let mut cluster = formed(3, 10);
    let now = cluster.now;
    let max = cluster.config.max_datagram;
    assert!(cluster.node_mut(0).handle_command(now, Command::Broadcast(vec![0; max])).is_err());
}

#[test]
fn a_healed_partition_merges_again() {
    let mut cluster = formed(6, 11);
    for a in 0..3 {
        for b in 3..6 {
            cluster.cut(a, b);
        }
    }
    cluster.run_for(secs(60));
    assert_eq!(cluster.node(0).live_members(), 3, "each side sees only itself");
    assert_eq!(cluster.node(5).live_members(), 3);
    cluster.link_loss.clear();
    cluster.run_for(secs(120));
    assert!(cluster.converged(), "the two sides did not merge");
}

#[test]
fn no_datagram_exceeds_max_datagram() {
    let mut cluster = Cluster::new(40, Config::lan(), 12);
    for i in 0..40 {
        let tags = Tags::from([("blob".to_string(), format!("{i:0>490}"))]);
        cluster.command(i, Command::SetTags(tags));
    }
    cluster.run_for(secs(40));
    assert!(cluster.converged());
    assert!(cluster.max_transmit <= cluster.config.max_datagram, "{} B sent", cluster.max_transmit);
    assert!(cluster.max_transmit > 1000, "the test should fill datagrams");
}

// ----- bad input -------------------------------------------------------------------------

#[test]
fn forged_incarnations_are_refused() {
    let mut cluster = formed(4, 20);
    let before = cluster.node(0).member(NodeId(2)).unwrap().clone();
    let forged = Gossip::Alive { id: NodeId(2), incarnation: MAX_INCARNATION, addr: addr(2), tags: Tags::new() };
    cluster.inject(0, addr(1), gossip(1, vec![forged]));
    let forged_failure = Gossip::Failed { id: NodeId(2), incarnation: u64::MAX, accuser: NodeId(1) };
    cluster.inject(0, addr(1), gossip(1, vec![forged_failure]));
    cluster.run_for(Duration::from_millis(10));
    assert_eq!(cluster.node(0).member(NodeId(2)), Some(&before));
    assert_eq!(cluster.node(0).stats().dropped.invalid, 2);
}

#[test]
fn stale_incarnations_change_nothing() {
    let mut cluster = formed(4, 21);
    cluster.command(2, Command::SetTags(Tags::from([("v".into(), "2".into())])));
    cluster.run_for(secs(3));
    let current = cluster.node(0).member(NodeId(2)).unwrap().clone();
    assert!(current.incarnation >= 1);
    let events = cluster.events.len();
    let stale = vec![
        Gossip::Suspect { id: NodeId(2), incarnation: current.incarnation - 1, accuser: NodeId(1) },
        Gossip::Failed { id: NodeId(2), incarnation: current.incarnation - 1, accuser: NodeId(1) },
        Gossip::Alive { id: NodeId(2), incarnation: current.incarnation - 1, addr: addr(9), tags: Tags::new() },
        Gossip::Leave { id: NodeId(2), incarnation: current.incarnation - 1 },
    ];
    cluster.inject(0, addr(1), gossip(1, stale));
    cluster.run_for(Duration::from_millis(10));
    assert_eq!(cluster.node(0).member(NodeId(2)), Some(&current));
    assert_eq!(cluster.events.len(), events, "no event for stale claims");
}

#[test]
fn gossip_about_unknown_members_only_admits_live_ones() {
    let mut cluster = formed(3, 22);
    let unknown = vec![
        Gossip::Suspect { id: NodeId(90), incarnation: 1, accuser: NodeId(1) },
        Gossip::Failed { id: NodeId(91), incarnation: 1, accuser: NodeId(1) },
        Gossip::Leave { id: NodeId(92), incarnation: 1 },
    ];
    cluster.inject(0, addr(1), gossip(1, unknown));
    cluster.run_for(Duration::from_millis(10));
    assert_eq!(cluster.node(0).members().count(), 3, "claims without an address admit no one");
    let alive = Gossip::Alive { id: NodeId(93), incarnation: 0, addr: addr(93), tags: Tags::new() };
    cluster.inject(0, addr(1), gossip(1, vec![alive]));
    cluster.run_for(Duration::from_millis(10));
    assert_eq!(cluster.node(0).member(NodeId(93)).map(|m| m.state), Some(MemberState::Alive));
}

#[test]
fn replayed_and_duplicated_datagrams_deliver_once() {
    let mut cluster = formed(3, 23);
    let item = Gossip::UserBroadcast { origin: NodeId(1), seq: 77, payload: b"once".to_vec() };
    let bytes = gossip(1, vec![item]);
    for _ in 0..3 {
        cluster.inject(0, addr(1), bytes.clone());
    }
    cluster.run_for(Duration::from_millis(10));
    cluster.run_for(secs(60));
    cluster.inject(0, addr(1), bytes);
    cluster.run_for(Duration::from_millis(10));
    let at_n0 = cluster
        .seen(|e| matches!(e, Event::Broadcast { payload, .. } if payload == b"once"))
        .iter()
        .filter(|s| s.observer == NodeId(0))
        .count();
    assert_eq!(at_n0, 1);
}

#[test]
fn suspicion_of_oneself_is_refuted_at_once_and_persisted_first() {
    let mut cluster = formed(3, 24);
    let now = cluster.now;
    let incarnation = cluster.node(0).incarnation();
    let accusation = gossip(1, vec![Gossip::Suspect { id: NodeId(0), incarnation, accuser: NodeId(1) }]);
    let node = cluster.node_mut(0);
    node.handle_datagram(now, addr(1), &accusation).unwrap();
    assert_eq!(node.incarnation(), incarnation + 1);
    assert_eq!(node.health(), 1, "having to refute lowers local health");
    match node.poll_output() {
        Some(Output::Persist(d)) => assert_eq!(d.incarnation, incarnation + 1),
        other => panic!("the new incarnation must be persisted before anything else, got {other:?}"),
    }
    while node.poll_output().is_some() {}
    // The refutation rides on the next message out.
    node.handle_timeout(now + secs(1));
    let mut refuted = false;
    while let Some(output) = node.poll_output() {
        if let Output::Transmit(t) = output {
            let (_, message) = wire::decode(&t.payload, 0, 1400).unwrap();
            refuted |= message.gossip().iter().any(
                |g| matches!(g, Gossip::Alive { id, incarnation: i, .. } if *id == NodeId(0) && *i == incarnation + 1),
            );
        }
    }
    assert!(refuted);
}

#[test]
fn a_failed_or_left_claim_about_oneself_is_refuted_though_no_suspicion_came_first() {
    // The suspicion that comes before a verdict can be lost: the verdict alone must be
    // refuted, at the incarnation it names, or the member stays dead to everyone else.
    let claims = |incarnation| {
        [
            Gossip::Failed { id: NodeId(0), incarnation, accuser: NodeId(1) },
            Gossip::Leave { id: NodeId(0), incarnation },
        ]
    };
    for (i, seed) in [26, 27].into_iter().enumerate() {
        let mut cluster = formed(3, seed);
        let now = cluster.now;
        let incarnation = cluster.node(0).incarnation();
        let claim = claims(incarnation)[i].clone();
        let node = cluster.node_mut(0);
        node.handle_datagram(now, addr(1), &gossip(1, vec![claim.clone()])).unwrap();
        assert_eq!(node.incarnation(), incarnation + 1, "{claim:?} refuted");
        assert_eq!(node.member(NodeId(0)).expect("itself").state, MemberState::Alive);
    }
}

#[test]
fn messages_claiming_another_sender_are_dropped() {
    let mut cluster = formed(3, 25);
    let before: Vec<_> = cluster.node(0).members().cloned().collect();
    let now = cluster.now;
    // A join whose record names another member than the envelope.
    let record =
        MemberRecord { id: NodeId(2), addr: addr(7), incarnation: 99, state: MemberState::Alive, tags: Tags::new() };
    let join = datagram(1, &Message::Join { member: record, send_state: true });
    // A datagram that claims to come from the receiver itself.
    let me = gossip(0, vec![Gossip::Leave { id: NodeId(1), incarnation: 50 }]);
    // A ping meant for another member.
    let ping =
        datagram(1, &Message::Ping { seq: 1, target: NodeId(2), digest: None, quiet: false, gossip: Vec::new() });
    let node = cluster.node_mut(0);
    for bytes in [join, me, ping] {
        assert!(matches!(node.handle_datagram(now, addr(1), &bytes), Err(wire::WireError::Invalid { .. })));
    }
    assert_eq!(node.stats().dropped.invalid, 3);
    assert_eq!(node.members().cloned().collect::<Vec<_>>(), before);
}

#[test]
fn damaged_and_foreign_datagrams_are_counted_and_change_nothing() {
    let mut cluster = formed(3, 26);
    let now = cluster.now;
    let good = gossip(1, vec![Gossip::Leave { id: NodeId(2), incarnation: 50 }]);
    // Cluster 0, sender n1: magic, version, cluster id, sender, then the body.
    let mut flipped = good.clone();
    flipped[5] ^= 1;
    let mut other_cluster = good.clone();
    other_cluster[2] ^= 1;
    let node = cluster.node_mut(0);
    assert_eq!(node.handle_datagram(now, addr(1), &flipped), Err(wire::WireError::Checksum));
    // The cluster id is covered by the checksum, so a flipped id is damage, not a foreign cluster.
    assert_eq!(node.handle_datagram(now, addr(1), &other_cluster), Err(wire::WireError::Checksum));
    let foreign = {
        let header = Header { cluster_id: 7, sender: NodeId(1) };
        wire::encode(header, &Message::Gossip { gossip: Vec::new() }, 1400).unwrap()
    };
    assert!(matches!(node.handle_datagram(now, addr(1), &foreign), Err(wire::WireError::WrongCluster { .. })));
    assert_eq!(node.stats().dropped.checksum, 2);
    assert_eq!(node.stats().dropped.wrong_cluster, 1);
    assert_eq!(node.member(NodeId(2)).unwrap().state, MemberState::Alive);
}

#[test]
fn a_datagram_whose_envelope_names_another_member_than_its_connection_is_refused() {
    let mut cluster = formed(3, 27);
    let now = cluster.now;
    let before: Vec<_> = cluster.node(0).members().cloned().collect();
    let leave = gossip(2, vec![Gossip::Leave { id: NodeId(2), incarnation: 50 }]);
    // Its body is read only once the sender is checked: garbage after a valid envelope
    // that names another member is refused as spoofed, not as malformed.
    let mut garbage_body = datagram(2, &Message::Gossip { gossip: Vec::new() });
    let body_at = wire::envelope_len(Header { cluster_id: 0, sender: NodeId(2) }) - 4;
    garbage_body.splice(body_at..garbage_body.len() - 4, [0xff; 12]);
    let crc = crc32fast::hash(&garbage_body[..garbage_body.len() - 4]);
    let at = garbage_body.len() - 4;
    garbage_body[at..].copy_from_slice(&crc.to_le_bytes());
    let node = cluster.node_mut(0);
    while node.poll_output().is_some() {}
    for bytes in [&leave, &garbage_body] {
        assert_eq!(
            node.handle_datagram_from(now, addr(1), NodeId(1), bytes),
            Err(wire::WireError::WrongSender { sender: NodeId(2), peer: NodeId(1) })
        );
    }
    assert_eq!(node.stats().dropped.wrong_sender, 2);
    assert_eq!(node.stats().dropped.total(), 2, "counted once, as spoofed only");
    assert_eq!(node.members().cloned().collect::<Vec<_>>(), before, "the view is untouched");
    assert_eq!(node.poll_output(), None, "nothing answered");
    // The envelope's own checks come first: a damaged datagram is damage, whoever sent it.
    let mut damaged = leave.clone();
    damaged[5] ^= 1;
    assert_eq!(node.handle_datagram_from(now, addr(1), NodeId(1), &damaged), Err(wire::WireError::Checksum));
    // Without a known sender the same body is read and refused as malformed.
    assert_eq!(node.handle_datagram(now, addr(2), &garbage_body), Err(wire::WireError::Malformed));
    // From the member it names, the datagram is taken, as `handle_datagram` takes it.
    assert_eq!(node.handle_datagram_from(now, addr(2), NodeId(2), &leave), Ok(()));
    assert_eq!(node.member(NodeId(2)).unwrap().state, MemberState::Left);
    assert_eq!(node.stats().dropped.total(), 4);
}

#[test]
fn any_bytes_from_a_known_peer_are_safe_and_each_refusal_is_counted_once() {
    use rand::{Rng, SeedableRng};
    let mut cluster = formed(3, 28);
    let now = cluster.now;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(28);
    let valid = [
        datagram(1, &Message::Ping { seq: 9, target: NodeId(0), digest: Some(3), quiet: false, gossip: Vec::new() }),
        datagram(2, &Message::Ack { seq: 9, digest: None, picture: None, gossip: Vec::new() }),
        gossip(1, vec![Gossip::Suspect { id: NodeId(2), incarnation: 0, accuser: NodeId(1) }]),
    ];
    let node = cluster.node_mut(0);
    let mut refused = 0;
    for round in 0..3000 {
        let mut bytes = valid[round % valid.len()].clone();
        match round % 4 {
            0 => bytes.truncate(rng.random_range(0..=bytes.len())),
            1 => {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
            2 => bytes = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
            _ => {}
        }
        let peer = NodeId(rng.random_range(0..4));
        if node.handle_datagram_from(now, addr(peer.0 as usize), peer, &bytes).is_err() {
            refused += 1;
        }
        while node.poll_output().is_some() {}
    }
    assert_eq!(node.stats().dropped.total(), refused);
    assert!(node.stats().dropped.wrong_sender > 0 && node.stats().dropped.checksum > 0);
    node.assert_view_consistent();
}

#[test]
fn a_member_restarted_at_the_same_instant_replays_nothing_stale() {
    // Same seed and inputs, same outputs: the node is a pure function of them.
    let run = || {
        let mut cluster = Cluster::new(6, Config::lan(), 42);
        cluster.run_for(secs(3));
        cluster.crash(2);
        cluster.run_for(secs(10));
        cluster.events.iter().map(|s| format!("{} {} {:?}", s.at, s.observer, s.event)).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
    let _ = Instant::ZERO;
}

#[test]
fn a_neighbour_with_another_view_triggers_one_state_exchange() {
    // n4 neither watches n0 nor is watched by it, so only the injected pings carry its digest.
    let mut cluster = formed(8, 27);
    cluster.run_for(secs(5));
    let pushes = |cluster: &Cluster| cluster.node(0).stats().sent.get(wire::MessageKind::PushPull);
    let digest = cluster.node(0).digest();
    let ping = |digest: u64, seq: u64| {
        datagram(
            4,
            &Message::Ping { seq, target: NodeId(0), digest: Some(digest as u32), quiet: false, gossip: Vec::new() },
        )
    };
    let before = pushes(&cluster);
    // The same view: nothing to do.
    cluster.inject(0, addr(4), ping(digest, 1_000));
    cluster.run_for(secs(1));
    cluster.inject(0, addr(4), ping(digest, 1_001));
    cluster.run_for(Duration::from_millis(5));
    assert_eq!(pushes(&cluster), before);
    // Another view on two probes a probe interval apart: one exchange of whole views.
    cluster.inject(0, addr(4), ping(digest ^ 1, 1_002));
    cluster.run_for(Duration::from_millis(5));
    assert_eq!(pushes(&cluster), before, "one differing digest may be an update in flight");
    cluster.run_for(Config::lan().probe_interval);
    cluster.inject(0, addr(4), ping(digest ^ 1, 1_003));
    cluster.run_for(Duration::from_millis(5));
    assert_eq!(pushes(&cluster), before + 1);
    assert!(cluster.converged());
}

#[test]
fn stats_count_every_datagram_by_kind_and_size() {
    let mut cluster = formed(3, 27);
    let now = cluster.now;
    let node = cluster.node_mut(0);
    while node.poll_output().is_some() {}
    let before = node.stats();
    let ping =
        datagram(2, &Message::Ping { seq: 9, target: NodeId(0), digest: None, quiet: false, gossip: Vec::new() });
    let gossip = gossip(2, vec![Gossip::Leave { id: NodeId(7), incarnation: 1 }]);
    node.handle_datagram(now, addr(2), &ping).expect("a valid ping");
    node.handle_datagram(now, addr(2), &gossip).expect("valid gossip");
    let mut sent = Vec::new();
    while let Some(output) = node.poll_output() {
        if let Output::Transmit(t) = output {
            sent.push(t.payload);
        }
    }
    let after = node.stats();
    let received = |kind| after.received.get(kind) - before.received.get(kind);
    assert_eq!(received(wire::MessageKind::Ping), 1);
    assert_eq!(received(wire::MessageKind::Gossip), 1);
    assert_eq!(
        after.sent.get(wire::MessageKind::Ack) - before.sent.get(wire::MessageKind::Ack),
        1,
        "the ping is answered"
    );
    assert_eq!(after.received.total() - before.received.total(), 2);
    assert_eq!(after.sent.total() - before.sent.total(), sent.len() as u64);
    assert_eq!(after.bytes_received - before.bytes_received, (ping.len() + gossip.len()) as u64);
    assert_eq!(after.bytes_sent - before.bytes_sent, sent.iter().map(Vec::len).sum::<usize>() as u64);
    assert_eq!(after.gossip_received - before.gossip_received, 1);
}

/// With the `tracing` feature, each suspicion, verdict, refutation and state transfer is an
/// event that says why, inside a span naming the member.
#[cfg(feature = "tracing")]
#[test]
fn suspicions_verdicts_refutations_and_state_transfers_are_traced_with_their_reasons() {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    // Process-wide: a subscriber scoped to this thread misses the callsites other test
    // threads met first, with none. (Other tests' events land here too; the checks below
    // look for this cluster's.)
    tracing::subscriber::set_global_default(subscriber).expect("the only test that sets one");
    tracing::callsite::rebuild_interest_cache();
    let mut cluster = formed(5, 3);
    // A stalled member is suspected and refutes; a crashed one is declared failed.
    cluster.pause(2, secs(3600));
    cluster.run_for(Duration::from_millis(1500));
    cluster.pause(2, Duration::from_millis(10));
    cluster.run_for(secs(5));
    cluster.crash(4);
    cluster.run_for(secs(20));
    let log = String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("text");
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).collect::<Vec<_>>();
    let suspects = lines("suspects: no ack to the indirect probe");
    assert!(suspects.iter().any(|l| l.contains("accused=n4") && l.contains("nacks=") && l.contains("phi=")));
    let verdicts = lines("declares failed: suspicion expired unrefuted");
    assert!(verdicts.iter().any(|l| l.contains("accused=n4") && l.contains("accusers=")), "{log}");
    assert!(lines("refutes a claim about itself").iter().any(|l| l.contains("member=n2")), "{log}");
    assert!(!lines("state transfer: join reply").is_empty());
    let outside: Vec<_> = suspects.iter().chain(&verdicts).filter(|l| !l.contains("timeout{member=")).collect();
    assert!(outside.is_empty(), "inside the member's span: {outside:?}");
}

/// The gossip items of every datagram `node` sent to `to`, drained.
fn gossip_sent_to(node: &mut crate::Node, to: std::net::SocketAddr) -> Vec<Vec<Gossip>> {
    let mut sent = Vec::new();
    while let Some(output) = node.poll_output() {
        if let Output::Transmit(t) = output {
            if t.to == to {
                let (_, message) = wire::decode(&t.payload, 0, 1400).expect("a valid datagram");
                sent.push(message.gossip().to_vec());
            }
        }
    }
    sent
}

#[test]
fn a_suspect_hears_the_claim_on_every_ack_while_the_buddy_system_is_on() {
    for buddy in [true, false] {
        let mut config = Config::lan();
        config.lifeguard.buddy_system = buddy;
        let mut cluster = formed_with(5, config, 31);
        let now = cluster.now;
        let node = cluster.node_mut(0);
        let accusation = gossip(1, vec![Gossip::Suspect { id: NodeId(2), incarnation: 0, accuser: NodeId(1) }]);
        node.handle_datagram(now, addr(1), &accusation).expect("valid");
        assert_eq!(node.member(NodeId(2)).expect("known").state, MemberState::Suspect);
        while node.poll_output().is_some() {}
        let claimed =
            |items: &Vec<Gossip>| items.iter().any(|g| matches!(g, Gossip::Suspect { id, .. } if *id == NodeId(2)));
        let mut carried = Vec::new();
        for seq in 1..=3 {
            let ping =
                datagram(2, &Message::Ping { seq, target: NodeId(0), digest: None, quiet: false, gossip: vec![] });
            node.handle_datagram(now, addr(2), &ping).expect("valid");
            let acks = gossip_sent_to(node, addr(2));
            carried.push(acks.iter().any(claimed));
        }
        if buddy {
            assert_eq!(carried, [true, true, true], "the claim rides on every ack to the suspect");
        } else {
            assert_eq!(carried, [true, false, false], "sent once, the update counts the suspect as a holder");
        }
    }
}

#[test]
fn a_verdict_is_a_verdict_here_only_after_a_suspicion_here_that_ran_its_minimum() {
    let config = Config::lan();
    let min = config.suspicion_timeouts(10).0;
    let mut cluster = Cluster::new(10, config, 32);
    cluster.run_for(secs(15));
    assert!(cluster.converged());
    let t = cluster.now;
    let node = cluster.node_mut(0);
    // A verdict about a member n0 held alive (the far side's, at a heal): a suspicion here.
    node.handle_datagram(t, addr(6), &failed(5, 6)).expect("valid");
    assert_eq!(state(node, 5), MemberState::Suspect);
    // n4 suspected here, then a verdict before n0's own suspicion ran its minimum: still a
    // suspicion; at the minimum, a verdict.
    node.handle_datagram(t, addr(6), &suspect(4, 6)).expect("valid");
    node.handle_datagram(t + min - Duration::from_millis(1), addr(6), &failed(4, 6)).expect("valid");
    assert_eq!(state(node, 4), MemberState::Suspect);
    node.handle_datagram(t + min, addr(6), &failed(4, 6)).expect("valid");
    assert_eq!(state(node, 4), MemberState::Failed);
    // n0 watches n8 and heard from it lately: a ripe verdict about it is still a suspicion.
    assert!(node.watched().any(|id| id == NodeId(8)));
    node.handle_datagram(t, addr(6), &suspect(8, 6)).expect("valid");
    node.handle_datagram(t + min, addr(6), &failed(8, 6)).expect("valid");
    assert_eq!(state(node, 8), MemberState::Suspect);
    let failed_ids: Vec<NodeId> = std::iter::from_fn(|| node.poll_output())
        .filter_map(|o| if let Output::Event(Event::MemberFailed(m)) = o { Some(m.id) } else { None })
        .collect();
    assert_eq!(failed_ids, [NodeId(4)]);
}

#[test]
fn a_member_held_failed_or_just_revived_neither_confirms_nor_convicts() {
    // After a heal, the far side's claims about this side are what it could not see.
    let config = Config::lan();
    let (min, max) = config.suspicion_timeouts(10);
    let mut cluster = Cluster::new(10, config, 33);
    cluster.run_for(secs(15));
    assert!(cluster.converged());
    let t = cluster.now;
    let node = cluster.node_mut(0);
    // n0 comes to hold n4 failed (n6's verdict, after n0's own suspicion ran its minimum).
    node.handle_datagram(t, addr(6), &suspect(4, 6)).expect("valid");
    node.handle_datagram(t + min, addr(6), &failed(4, 6)).expect("valid");
    assert_eq!(state(node, 4), MemberState::Failed);
    // n4's verdict about n3, with n0's suspicion of n3 ripe: only a suspicion.
    node.handle_datagram(t + min, addr(4), &suspect(3, 4)).expect("valid");
    node.handle_datagram(t + min * 2, addr(4), &failed(3, 4)).expect("valid");
    assert_eq!(state(node, 3), MemberState::Suspect, "a member held failed convicts nobody");
    // n4 comes back (it refutes); for a longest suspicion it still convicts nobody.
    let back = Gossip::Alive { id: NodeId(4), incarnation: 1, addr: addr(4), tags: Default::default() };
    let revived_at = t + min * 2;
    node.handle_datagram(revived_at, addr(4), &gossip(4, vec![back])).expect("valid");
    assert_eq!(state(node, 4), MemberState::Alive);
    node.handle_datagram(revived_at, addr(4), &suspect(2, 4)).expect("valid");
    node.handle_datagram(revived_at + min, addr(4), &failed(2, 4)).expect("valid");
    assert_eq!(state(node, 2), MemberState::Suspect, "a member revived moments ago convicts nobody");
    // Later its word counts again.
    node.handle_datagram(revived_at + max, addr(4), &failed(2, 4)).expect("valid");
    assert_eq!(state(node, 2), MemberState::Failed);
}

/// The pings among `sent` to member `id`, with the gossip each carried.
fn pings_to(sent: &[(std::net::SocketAddr, Message)], id: u64) -> Vec<Vec<Gossip>> {
    sent.iter()
        .filter_map(|(to, m)| match m {
            Message::Ping { target, gossip, .. } if *to == addr(id as usize) && *target == NodeId(id) => {
                Some(gossip.clone())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_member_that_suspects_on_another_members_word_asks_the_accused_once() {
    for ask in [true, false] {
        let mut config = Config::lan();
        config.lifeguard.ask_the_accused = ask;
        let mut cluster = formed_with(5, config, 34);
        let now = cluster.now;
        let node = cluster.node_mut(0);
        while node.poll_output().is_some() {}
        node.handle_datagram(now, addr(1), &suspect(2, 1)).expect("valid");
        let asked = pings_to(&sent(node), 2);
        let claim = Gossip::Suspect { id: NodeId(2), incarnation: 0, accuser: NodeId(1) };
        let expected = if ask { vec![vec![claim]] } else { vec![] };
        assert_eq!(asked, expected, "one ping, carrying the claim and nothing else (asking: {ask})");
        // A confirmation starts nothing new: the accused was asked.
        node.handle_datagram(now, addr(3), &suspect(2, 3)).expect("valid");
        assert!(pings_to(&sent(node), 2).is_empty());
    }
}

#[test]
fn a_member_probing_the_accused_asks_nothing_more() {
    let mut cluster = formed(5, 37);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    node.handle_command(t, Command::ReportUnreachable(NodeId(2))).expect("valid");
    assert_eq!(pings_to(&sent(node), 2).len(), 1, "the probe's own ping");
    node.handle_datagram(t, addr(1), &suspect(2, 1)).expect("valid");
    assert!(pings_to(&sent(node), 2).is_empty(), "the running probe asks already");
}

#[test]
fn a_leader_announcement_is_passed_on_once_per_round() {
    let mut cluster = formed(5, 38);
    let announce = |round| gossip(1, vec![Gossip::Leader { term: 7, leader: NodeId(1), round }]);
    let ping = |seq| datagram(3, &Message::Ping { seq, target: NodeId(0), digest: None, quiet: false, gossip: vec![] });
    let carried = |node: &mut crate::Node| {
        gossip_sent_to(node, addr(3)).iter().flatten().any(|g| matches!(g, Gossip::Leader { term: 7, .. }))
    };
    let t = cluster.now;
    let node = cluster.node_mut(0);
    node.handle_datagram(t, addr(1), &announce(1)).expect("valid");
    node.handle_datagram(t, addr(3), &ping(1)).expect("valid");
    assert!(carried(node), "a new announcement is passed on");
    // The cluster runs on: the announcement is spread and done with.
    cluster.run_for(secs(10));
    let later = cluster.now;
    let node = cluster.node_mut(0);
    node.handle_datagram(later, addr(1), &announce(1)).expect("valid");
    node.handle_datagram(later, addr(3), &ping(2)).expect("valid");
    assert!(!carried(node), "the same round again is not");
    node.handle_datagram(later, addr(1), &announce(2)).expect("valid");
    node.handle_datagram(later, addr(3), &ping(3)).expect("valid");
    assert!(carried(node), "the next round is");
    // Terms up to the bound are taken; a forged one above it is not passed on.
    let at_term = |term| gossip(1, vec![Gossip::Leader { term, leader: NodeId(1), round: 0 }]);
    let terms = |node: &mut crate::Node| -> Vec<u64> {
        let acks = gossip_sent_to(node, addr(3));
        acks.into_iter()
            .flatten()
            .filter_map(|g| if let Gossip::Leader { term, .. } = g { Some(term) } else { None })
            .collect()
    };
    node.handle_datagram(later, addr(1), &at_term(super::MAX_TERM)).expect("valid");
    node.handle_datagram(later, addr(3), &ping(4)).expect("valid");
    assert_eq!(terms(node), [super::MAX_TERM]);
    node.handle_datagram(later, addr(1), &at_term(super::MAX_TERM + 1)).expect("valid");
    node.handle_datagram(later, addr(3), &ping(5)).expect("valid");
    assert!(terms(node).iter().all(|&t| t <= super::MAX_TERM), "a forged term is refused");
}

#[test]
fn a_member_told_of_a_suspicion_it_refuted_answers_with_the_incarnation_that_did() {
    let mut cluster = formed(5, 35);
    let t = cluster.now;
    let node = cluster.node_mut(2);
    node.handle_datagram(t, addr(1), &suspect(2, 1)).expect("valid");
    assert_eq!(node.member(NodeId(2)).expect("itself").incarnation, 1, "refuted");
    // Its refutation is sent to the end of its gossip budget.
    for step in 1..=100 {
        node.handle_timeout(t + Duration::from_millis(100 * step));
    }
    let later = t + secs(11);
    let alive_again = |acks: &[Vec<Gossip>]| {
        acks.iter().flatten().any(|g| matches!(g, Gossip::Alive { id, incarnation: 1, .. } if *id == NodeId(2)))
    };
    let ping = |seq, gossip| datagram(3, &Message::Ping { seq, target: NodeId(2), digest: None, quiet: false, gossip });
    while node.poll_output().is_some() {}
    node.handle_datagram(later, addr(3), &ping(1, vec![])).expect("valid");
    assert!(!alive_again(&gossip_sent_to(node, addr(3))), "nothing pending about itself any more");
    // n3 asks with the old claim: the ack carries the incarnation that refuted it.
    let stale = Gossip::Suspect { id: NodeId(2), incarnation: 0, accuser: NodeId(1) };
    node.handle_datagram(later, addr(3), &ping(2, vec![stale])).expect("valid");
    assert!(alive_again(&gossip_sent_to(node, addr(3))));
    assert_eq!(node.member(NodeId(2)).expect("itself").incarnation, 1, "no second refutation");
}

#[test]
fn each_accusation_is_its_own_update_until_the_suspicion_ends() {
    let mut cluster = formed(5, 36);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    // n1 accuses n2; n3 confirms. n3 has not heard n1's accusation: n0 still owes it that.
    node.handle_datagram(t, addr(1), &suspect(2, 1)).expect("valid");
    node.handle_datagram(t, addr(3), &suspect(2, 3)).expect("valid");
    while node.poll_output().is_some() {}
    let ping = |from: u64, seq| {
        datagram(from, &Message::Ping { seq, target: NodeId(0), digest: None, quiet: false, gossip: vec![] })
    };
    node.handle_datagram(t, addr(3), &ping(3, 1)).expect("valid");
    let accusers = |acks: Vec<Vec<Gossip>>| -> Vec<NodeId> {
        acks.into_iter()
            .flatten()
            .filter_map(|g| match g {
                Gossip::Suspect { id: NodeId(2), accuser, .. } => Some(accuser),
                _ => None,
            })
            .collect()
    };
    assert_eq!(accusers(gossip_sent_to(node, addr(3))), [NodeId(1)], "n1's accusation, not n3's own");
    // n2 refutes: what n0 sends about it now is the refutation, no accusation.
    let back = Gossip::Alive { id: NodeId(2), incarnation: 1, addr: addr(2), tags: Tags::default() };
    node.handle_datagram(t, addr(2), &gossip(2, vec![back])).expect("valid");
    node.handle_datagram(t, addr(4), &ping(4, 2)).expect("valid");
    let acks = gossip_sent_to(node, addr(4));
    assert!(accusers(acks.clone()).is_empty(), "the accusations were dropped");
    assert!(acks.iter().flatten().any(|g| matches!(g, Gossip::Alive { id, incarnation: 1, .. } if *id == NodeId(2))));
}

/// Every datagram `node` sent, decoded with its destination, drained.
fn sent(node: &mut crate::Node) -> Vec<(std::net::SocketAddr, Message)> {
    std::iter::from_fn(|| node.poll_output())
        .filter_map(|o| if let Output::Transmit(t) = o { Some(t) } else { None })
        .map(|t| (t.to, wire::decode(&t.payload, 0, 1400).expect("a valid datagram").1))
        .collect()
}

/// The `reply` flags of the state transfers among `sent` to `to`.
fn state_transfers_to(sent: &[(std::net::SocketAddr, Message)], to: std::net::SocketAddr) -> Vec<bool> {
    sent.iter()
        .filter(|(at, _)| *at == to)
        .filter_map(|(_, m)| if let Message::PushPull { reply, .. } = m { Some(*reply) } else { None })
        .collect()
}

#[test]
fn a_member_reports_its_health_whether_it_joined_and_the_phi_of_what_it_watches() {
    let mut cluster = formed(5, 33);
    let node = cluster.node(0);
    assert_eq!(node.health(), 0, "a member of a healthy cluster is healthy");
    assert!(node.is_joined());
    let watched: Vec<NodeId> = node.watched().collect();
    assert_eq!(node.phi(NodeId(0)), None, "no member watches itself");
    let unwatched = (1..5).map(NodeId).find(|id| !watched.contains(id)).expect("5 members, 3 watched");
    assert_eq!(node.phi(unwatched), None);
    // Phi of a crashed watched member rises until it is suspected.
    let target = watched[0];
    cluster.crash(target.0 as usize);
    let before = cluster.node(0).phi(target).expect("watched");
    cluster.run_for(Duration::from_millis(600));
    let after = cluster.node(0).phi(target).expect("still watched");
    assert!(before >= 0.0 && after > before, "phi went from {before} to {after}");

    // A member that asked to join is not joined until it hears from the cluster.
    let config = crate::NodeConfig::new(NodeId(7), addr(7), Config::lan(), 7);
    let mut lone = crate::Node::new(config, Instant::ZERO).expect("valid");
    assert!(lone.is_joined(), "a member that never asked");
    lone.handle_command(Instant::ZERO, Command::Join(vec![addr(0)])).expect("accepted");
    assert!(!lone.is_joined(), "asked, heard nothing yet");
}

#[test]
fn a_stranger_heard_gets_the_view_once_and_a_joiner_only_its_join_reply() {
    let mut cluster = formed(3, 34);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    while node.poll_output().is_some() {}
    let stranger = |id: u64| crate::Member {
        id: NodeId(id),
        addr: addr(id as usize),
        incarnation: 0,
        state: MemberState::Alive,
        tags: Tags::new(),
    };
    // A joiner asks for the view: one state transfer, the join reply, and no other.
    let join = datagram(8, &Message::Join { member: MemberRecord::from(&stranger(8)), send_state: true });
    node.handle_datagram(t, addr(8), &join).expect("valid");
    assert_eq!(state_transfers_to(&sent(node), addr(8)), [false]);
    // A stranger's ping (a member that joined elsewhere): its ack, and the view, asking for
    // the stranger's in return.
    let t = t + secs(1);
    let ping = datagram(9, &Message::Ping { seq: 1, target: NodeId(0), digest: None, quiet: false, gossip: vec![] });
    node.handle_datagram(t, addr(9), &ping).expect("valid");
    let out = sent(node);
    assert_eq!(state_transfers_to(&out, addr(9)), [true]);
    assert!(out.iter().any(|(to, m)| *to == addr(9) && matches!(m, Message::Ack { seq: 1, .. })));
    // Another stranger at the same instant waits: at most one such exchange per gossip interval.
    let ping = datagram(11, &Message::Ping { seq: 1, target: NodeId(0), digest: None, quiet: false, gossip: vec![] });
    node.handle_datagram(t, addr(11), &ping).expect("valid");
    assert_eq!(state_transfers_to(&sent(node), addr(11)), [] as [bool; 0]);
    // A state transfer from a stranger is answered as asked, not as a stranger's.
    let t = t + secs(1);
    let members = vec![MemberRecord::from(&stranger(10))];
    let push = datagram(10, &Message::PushPull { reply: false, part: 0, parts: 1, members });
    node.handle_datagram(t, addr(10), &push).expect("valid");
    assert_eq!(state_transfers_to(&sent(node), addr(10)), [] as [bool; 0]);
}

#[test]
fn a_state_transfer_is_answered_once_when_asked() {
    let mut cluster = formed(3, 35);
    let t = cluster.now;
    let record = MemberRecord::from(cluster.node(1).member(NodeId(1)).expect("itself"));
    let node = cluster.node_mut(0);
    while node.poll_output().is_some() {}
    // (reply, part, parts) -> whether n0 sends its view back.
    for (reply, part, parts, answered) in [(true, 0, 1, true), (true, 1, 2, false), (false, 0, 1, false)] {
        let members = vec![record.clone()];
        let push = datagram(1, &Message::PushPull { reply, part, parts, members });
        node.handle_datagram(t, addr(1), &push).expect("valid");
        let expected: &[bool] = if answered { &[false] } else { &[] };
        assert_eq!(state_transfers_to(&sent(node), addr(1)), expected, "reply {reply}, part {part} of {parts}");
    }
}

#[test]
fn tags_and_broadcasts_at_the_limit_are_accepted_and_reach_everyone() {
    let mut cluster = formed(4, 36);
    let t = cluster.now;
    // Tags of exactly MAX_TAGS_BYTES encoded: a map of one entry, "k" and a value of
    // `len - 5` bytes (the value's length takes two varint bytes).
    let tags_of_len = |len: usize| Tags::from([("k".to_owned(), "v".repeat(len - 5))]);
    assert_eq!(crate::member::tags_encoded_len(&tags_of_len(crate::MAX_TAGS_BYTES)), crate::MAX_TAGS_BYTES);
    let node = cluster.node_mut(0);
    let too_big = node.handle_command(t, Command::SetTags(tags_of_len(crate::MAX_TAGS_BYTES + 1)));
    assert!(matches!(too_big, Err(crate::Error::TagsTooLarge { .. })), "{too_big:?}");
    let Err(crate::Error::BroadcastTooLarge { max, .. }) = node.handle_command(t, Command::Broadcast(vec![0; 2000]))
    else {
        panic!("a 2000-byte broadcast is refused")
    };
    cluster.command(0, Command::SetTags(tags_of_len(crate::MAX_TAGS_BYTES)));
    cluster.command(0, Command::Broadcast(vec![7; max]));
    cluster.run_for(secs(5));
    assert!(cluster.max_transmit <= Config::lan().max_datagram);
    for i in 1..4 {
        let tags = &cluster.node(i).member(NodeId(0)).expect("known").tags;
        assert_eq!(tags, &tags_of_len(crate::MAX_TAGS_BYTES), "n{i} has n0's tags");
        let got = cluster
            .seen(|e| matches!(e, Event::Broadcast { origin, payload } if *origin == NodeId(0) && payload.len() == max))
            .iter()
            .filter(|s| s.observer == NodeId(i as u64))
            .count();
        assert_eq!(got, 1, "n{i} got the largest broadcast once");
    }
}

#[test]
fn broadcasts_made_at_one_instant_or_across_restarts_are_all_delivered() {
    // Two broadcasts at time zero, before anything ran: distinct, so both are delivered.
    let mut cluster = Cluster::new(3, Config::lan(), 37);
    assert_eq!(cluster.now, Instant::ZERO);
    cluster.command(0, Command::Broadcast(b"first".to_vec()));
    cluster.command(0, Command::Broadcast(b"second".to_vec()));
    cluster.run_for(secs(5));
    for payload in [&b"first"[..], b"second"] {
        let mut at: Vec<NodeId> = cluster
            .seen(|e| matches!(e, Event::Broadcast { payload: p, .. } if p == payload))
            .iter()
            .map(|s| s.observer)
            .collect();
        at.sort();
        assert_eq!(at, [NodeId(1), NodeId(2)], "{payload:?}");
    }
}

#[test]
fn a_member_reports_others_unreachable_but_never_itself_nor_after_leaving() {
    let mut cluster = formed(5, 38);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    while node.poll_output().is_some() {}
    node.handle_command(t, Command::ReportUnreachable(NodeId(0))).expect("accepted");
    assert!(sent(node).is_empty(), "no probe of oneself");
    node.handle_command(t, Command::ReportUnreachable(NodeId(2))).expect("accepted");
    let out = sent(node);
    node.handle_command(t, Command::ReportUnreachable(NodeId(2))).expect("accepted");
    assert!(sent(node).is_empty(), "one probe of n2 at a time");
    assert!(out.iter().any(|(to, m)| *to == addr(2) && matches!(m, Message::Ping { target: NodeId(2), .. })));
    let relayed = out.iter().filter(|(_, m)| matches!(m, Message::PingReq { target: NodeId(2), .. })).count();
    assert_eq!(relayed, Config::lan().indirect_checks.min(3), "asks the others to ping it too");
    // Another at the same instant is probed as well, under its own sequence numbers.
    node.handle_command(t, Command::ReportUnreachable(NodeId(3))).expect("accepted");
    let seqs = |out: &[(std::net::SocketAddr, Message)], of: NodeId| -> Vec<u64> {
        out.iter()
            .filter_map(|(_, m)| match m {
                Message::Ping { seq, target, .. } | Message::PingReq { seq, target, .. } if *target == of => Some(*seq),
                _ => None,
            })
            .collect()
    };
    let (of2, of3) = (seqs(&out, NodeId(2)), seqs(&sent(node), NodeId(3)));
    assert!(!of3.is_empty(), "n3 is probed too");
    assert!(of2.iter().all(|s| !of3.contains(s)), "{of2:?} and {of3:?}");
    assert!(node.prober.is_probing(NodeId(2)) && node.prober.is_probing(NodeId(3)));
    // n2's ack ends the probe of n2 only.
    let ack = datagram(2, &Message::Ack { seq: of2[0], digest: None, picture: None, gossip: vec![] });
    node.handle_datagram(t, addr(2), &ack).expect("valid");
    assert!(!node.prober.is_probing(NodeId(2)) && node.prober.is_probing(NodeId(3)));
    // A member known to have left is not probed.
    let left = gossip(4, vec![Gossip::Leave { id: NodeId(4), incarnation: 0 }]);
    node.handle_datagram(t, addr(4), &left).expect("valid");
    assert_eq!(node.member(NodeId(4)).expect("a tombstone").state, MemberState::Left);
    while node.poll_output().is_some() {}
    node.handle_command(t, Command::ReportUnreachable(NodeId(4))).expect("accepted");
    assert!(sent(node).is_empty(), "no probe of a departed member");
    node.handle_command(t, Command::Leave).expect("accepted");
    while node.poll_output().is_some() {}
    node.handle_command(t + secs(1), Command::ReportUnreachable(NodeId(3))).expect("accepted");
    assert!(sent(node).is_empty(), "a member that left probes nobody");
}

#[test]
fn a_quiet_member_sleeps_through_gossip_rounds_and_an_update_wakes_it_for_the_next() {
    let mut cluster = formed(4, 39);
    cluster.run_for(secs(5));
    let t = cluster.now;
    let node = cluster.node_mut(0);
    let round = node.timers.get(Timer::GossipRound).expect("always kept");
    assert!(!round.wakes, "nothing to send");
    assert!(node.poll_timeout().is_some_and(|at| at != round.at), "woken for probes, not for gossip");
    node.handle_command(t, Command::Broadcast(b"news".to_vec())).expect("accepted");
    let round = node.timers.get(Timer::GossipRound).expect("always kept");
    assert!(round.wakes, "an update to send");
    assert!(round.at <= t + Config::lan().gossip_interval);
    assert!(node.poll_timeout().is_some_and(|at| at <= round.at), "woken for the round");
}

/// The sequence number of the first broadcast a member started with `durable` makes at time
/// zero, read from the gossip that carries it to its one peer.
fn first_broadcast_seq(durable: Option<crate::Durable>) -> u64 {
    let mut config = crate::NodeConfig::new(NodeId(0), addr(0), Config::lan(), 40);
    config.durable = durable;
    let mut node = crate::Node::new(config, Instant::ZERO).expect("valid");
    let peer = Gossip::Alive { id: NodeId(1), incarnation: 0, addr: addr(1), tags: Tags::new() };
    node.handle_datagram(Instant::ZERO, addr(1), &gossip(1, vec![peer])).expect("valid");
    node.handle_command(Instant::ZERO, Command::Broadcast(b"x".to_vec())).expect("accepted");
    for _ in 0..100 {
        let seq = sent(&mut node).iter().find_map(|(_, m)| {
            m.gossip().iter().find_map(|g| if let Gossip::UserBroadcast { seq, .. } = g { Some(*seq) } else { None })
        });
        if let Some(seq) = seq {
            return seq;
        }
        let at = node.poll_timeout().expect("a member always has a next timer");
        node.handle_timeout(at);
    }
    panic!("the broadcast never went out");
}

#[test]
fn a_restarted_member_that_replays_its_seed_makes_broadcasts_of_new_sequence_numbers() {
    // Restarted from its disk at incarnation k, a member comes back at k + 1 with the same
    // seed, so the same random draws: only the incarnation tells its broadcasts apart.
    let incarnations =
        std::iter::once(None).chain((0..15).map(|k| Some(crate::Durable { incarnation: k, ..Default::default() })));
    let seqs: Vec<u64> = incarnations.map(first_broadcast_seq).collect();
    let distinct: std::collections::BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len(), seqs.len(), "{seqs:x?}");
}

#[test]
fn a_strangers_view_digest_sets_off_no_exchange_of_its_own() {
    let mut cluster = formed(3, 41);
    cluster.run_for(secs(5));
    let t = cluster.now;
    let node = cluster.node_mut(0);
    while node.poll_output().is_some() {}
    // A stranger pings with a digest unlike n0's, twice, a probe period apart: each ping
    // gets the stranger's view exchange, and the digests none on top.
    let digest = Some(node.digest() as u32 ^ 1);
    for (seq, at) in [(1, t), (2, t + secs(1))] {
        let ping = datagram(9, &Message::Ping { seq, target: NodeId(0), digest, quiet: false, gossip: vec![] });
        node.handle_datagram(at, addr(9), &ping).expect("valid");
        assert_eq!(state_transfers_to(&sent(node), addr(9)), [true], "ping {seq}");
    }
}

#[test]
fn relays_bridge_a_cut_link_so_that_nobody_is_even_suspected() {
    let mut cluster = formed(5, 4);
    // As in `one_lossy_link_alone_never_causes_a_failure_verdict`: n2 watches n1; cut them off.
    assert!(cluster.node(2).watched().any(|id| id == NodeId(1)));
    cluster.cut(1, 2);
    let ping_reqs_before = cluster.node(2).stats().sent.get(wire::MessageKind::PingReq);
    let run = secs(60);
    cluster.run_for(run);
    let suspected = cluster.seen(|e| matches!(e, Event::MemberSuspected(_)));
    assert!(suspected.is_empty(), "the relays' acks reach n2 in time: {suspected:?}");
    // n2 never hears n1 directly, so it probes it indirectly once per protocol period, no
    // more often.
    let config = Config::lan();
    let ping_reqs = cluster.node(2).stats().sent.get(wire::MessageKind::PingReq) - ping_reqs_before;
    let periods = (run.as_nanos() / config.probe_interval.as_nanos()) as u64 + 1;
    assert!(ping_reqs > 0 && ping_reqs <= periods * config.indirect_checks as u64, "{ping_reqs} ping-reqs");
}

#[test]
fn a_member_reported_unreachable_that_answers_is_not_suspected() {
    let mut cluster = formed(5, 42);
    cluster.command(0, Command::ReportUnreachable(NodeId(2)));
    cluster.run_for(secs(3));
    let suspected = cluster.seen(|e| matches!(e, Event::MemberSuspected(_)));
    assert!(suspected.is_empty(), "{suspected:?}");
}

#[test]
fn a_quiet_cluster_exchanges_no_whole_views() {
    let mut cluster = formed(5, 43);
    cluster.run_for(secs(10));
    let push_pulls = |c: &Cluster| (0..5).map(|i| c.node(i).stats().sent.get(wire::MessageKind::PushPull)).sum::<u64>();
    let before = push_pulls(&cluster);
    cluster.run_for(secs(120));
    assert_eq!(push_pulls(&cluster), before, "neighbours' digests agree: nothing to repair");
}

#[test]
fn a_member_left_alone_reaches_for_its_seeds_and_one_without_seeds_waits() {
    let config = Config::lan();
    for seeds in [vec![addr(1)], vec![]] {
        let mut node = crate::Node::new(crate::NodeConfig::new(NodeId(0), addr(0), config.clone(), 44), Instant::ZERO)
            .expect("valid");
        if !seeds.is_empty() {
            node.handle_command(Instant::ZERO, Command::Join(seeds.clone())).expect("accepted");
        }
        let mut pushed = 0;
        while node.poll_timeout().is_some_and(|at| at < Instant::ZERO + config.push_pull_interval * 10) {
            let at = node.poll_timeout().expect("checked");
            node.handle_timeout(at);
            pushed += state_transfers_to(&sent(&mut node), addr(1)).len();
        }
        assert_eq!(pushed > 0, !seeds.is_empty(), "seeds {seeds:?}: {pushed} state transfers");
    }
}

#[test]
fn a_member_held_failed_that_speaks_gets_the_view_and_tombstones_are_reaped() {
    // Each member reaps at its own push-pull ticks: one that has not reaped n3 yet passes
    // it in a state transfer to one that has, which must not take it back (with a fresh
    // time to live it would bounce between them for ever).
    let mut config = Config::lan();
    config.tombstone_ttl = secs(60);
    let mut cluster = Cluster::new(5, config, 45);
    cluster.run_for(secs(5));
    cluster.crash(3);
    cluster.run_for(secs(10));
    assert_eq!(cluster.node(0).member(NodeId(3)).expect("a tombstone").state, MemberState::Failed);
    // n3 speaks again (a healed partition, say): n0 sends it the view, so it can refute.
    let t = cluster.now;
    let node = cluster.node_mut(0);
    while node.poll_output().is_some() {}
    let ping = datagram(3, &Message::Ping { seq: 1, target: NodeId(0), digest: None, quiet: false, gossip: vec![] });
    node.handle_datagram(t, addr(3), &ping).expect("valid");
    assert_eq!(state_transfers_to(&sent(node), addr(3)), [true]);
    node.handle_datagram(t, addr(3), &ping).expect("valid");
    assert_eq!(state_transfers_to(&sent(node), addr(3)), [] as [bool; 0], "at most one per gossip interval");
    // Unheard of since, its tombstone goes after the ttl, at a push-pull.
    cluster.run_for(secs(150));
    for i in [0, 1, 2, 4] {
        assert!(cluster.node(i).member(NodeId(3)).is_none(), "n{i} still holds n3");
    }
}

#[test]
fn every_member_pings_one_it_holds_failed_once_per_probe_period() {
    let mut cluster = formed(5, 46);
    cluster.crash(3);
    cluster.run_for(secs(15));
    assert_eq!(cluster.failed_verdicts(NodeId(3)).len(), 4);
    cluster.to_crashed.clear();
    let window = secs(30);
    cluster.run_for(window);
    let period = Config::lan().probe_period();
    let most = (window.as_nanos() / period.as_nanos()) as usize + 1;
    for i in [0, 1, 2, 4] {
        let pings = cluster
            .to_crashed
            .iter()
            .filter(|(_, from, to, payload)| {
                *from == i
                    && *to == 3
                    && matches!(wire::decode(payload, 0, 1400), Ok((_, Message::Ping { target: NodeId(3), .. })))
            })
            .count();
        // Its probe periods are a little longer than `probe_period` (they start on a
        // protocol period), never shorter.
        assert!(pings <= most && pings >= most * 2 / 3, "n{i} pinged n3 {pings} times in {window:?}");
    }
}

#[test]
fn pings_and_acks_carry_the_view_digest_only_while_nothing_is_pending() {
    let mut cluster = formed(4, 47);
    cluster.run_for(secs(5));
    let t = cluster.now;
    let node = cluster.node_mut(0);
    while node.poll_output().is_some() {}
    let digest = node.digest() as u32;
    let ack_digest = |node: &mut crate::Node, seq: u64, theirs: Option<u32>| {
        let ping = datagram(1, &Message::Ping { seq, target: NodeId(0), digest: theirs, quiet: false, gossip: vec![] });
        node.handle_datagram(t, addr(1), &ping).expect("valid");
        let out = sent(node);
        let acks: Vec<Option<u32>> = out
            .iter()
            .filter_map(|(_, m)| if let Message::Ack { digest, .. } = m { Some(*digest) } else { None })
            .collect();
        assert_eq!(acks.len(), 1);
        acks[0]
    };
    assert_eq!(ack_digest(node, 1, None), Some(digest), "quiet");
    assert_eq!(ack_digest(node, 2, Some(digest ^ 1)), Some(digest), "quiet, and the ping's digest differs");
    assert_eq!(ack_digest(node, 3, Some(digest)), None, "the ping's digest is ours: nothing to tell");
    node.handle_command(t, Command::Broadcast(b"news".to_vec())).expect("accepted");
    assert_eq!(ack_digest(node, 4, None), None, "an update pending");
}

#[test]
fn a_joiner_asks_exactly_one_of_its_seeds_for_the_view() {
    let config = crate::NodeConfig::new(NodeId(0), addr(0), Config::lan(), 48);
    let mut node = crate::Node::new(config, Instant::ZERO).expect("valid");
    let seeds = vec![addr(1), addr(2), addr(3)];
    node.handle_command(Instant::ZERO, Command::Join(seeds.clone())).expect("accepted");
    let joins: Vec<(std::net::SocketAddr, bool)> = sent(&mut node)
        .into_iter()
        .filter_map(|(to, m)| if let Message::Join { send_state, .. } = m { Some((to, send_state)) } else { None })
        .collect();
    let mut told: Vec<_> = joins.iter().map(|&(to, _)| to).collect();
    told.sort();
    assert_eq!(told, seeds, "every seed hears of the joiner");
    assert_eq!(joins.iter().filter(|&&(_, asked)| asked).count(), 1, "{joins:?}");
}

#[test]
fn a_leaving_member_tells_twice_its_fanout_at_once() {
    let mut cluster = formed(12, 49);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    while node.poll_output().is_some() {}
    node.handle_command(t, Command::Leave).expect("accepted");
    let told = sent(node)
        .iter()
        .filter(|(_, m)| matches!(m, Message::Gossip { gossip } if matches!(gossip[..], [Gossip::Leave { id: NodeId(0), .. }])))
        .count();
    let config = Config::lan();
    assert_eq!(told, config.gossip_nodes.max(config.monitors) * 2);
}

#[test]
fn digests_are_not_compared_while_updates_are_in_flight() {
    let mut cluster = formed(4, 50);
    cluster.run_for(secs(5));
    let t = cluster.now;
    let node = cluster.node_mut(0);
    node.handle_command(t, Command::Broadcast(b"news".to_vec())).expect("accepted");
    while node.poll_output().is_some() {}
    let other = node.digest() as u32 ^ 1;
    // A neighbour's different digest on two pings a probe interval apart would set off an
    // exchange if n0 were quiet (`a_neighbour_with_another_view_triggers_one_state_exchange`);
    // with an update pending, views differ anyway.
    for (seq, at) in [(1, t), (2, t + Config::lan().probe_interval * 2)] {
        let ping =
            datagram(1, &Message::Ping { seq, target: NodeId(0), digest: Some(other), quiet: false, gossip: vec![] });
        node.handle_datagram(at, addr(1), &ping).expect("valid");
        assert_eq!(state_transfers_to(&sent(node), addr(1)), [] as [bool; 0], "ping {seq}");
    }
}

#[test]
fn the_largest_broadcast_accepted_fills_a_datagram_at_worst() {
    // Datagrams as large as UDP allows: a payload length of three varint bytes, the most
    // the limit leaves room for.
    let mut config = Config::lan();
    config.max_datagram = wire::MAX_MAX_DATAGRAM;
    let mut node =
        crate::Node::new(crate::NodeConfig::new(NodeId(0), addr(0), config.clone(), 51), Instant::ZERO).expect("valid");
    let Err(crate::Error::BroadcastTooLarge { max, .. }) =
        node.handle_command(Instant::ZERO, Command::Broadcast(vec![0; config.max_datagram]))
    else {
        panic!("a datagram-sized broadcast is refused")
    };
    // The worst case: every varint at its longest.
    let alone = |len: usize| {
        let item = Gossip::UserBroadcast { origin: NodeId(u64::MAX), seq: u64::MAX, payload: vec![0; len] };
        let header = Header { cluster_id: config.cluster_id, sender: NodeId(u64::MAX) };
        wire::encode(header, &Message::Gossip { gossip: vec![item] }, config.max_datagram)
    };
    assert_eq!(alone(max).expect("the largest fits").len(), config.max_datagram);
    assert!(alone(max + 1).is_err(), "one byte more does not fit");
}

#[test]
fn a_late_copy_of_an_earlier_broadcast_is_not_delivered_again() {
    let mut cluster = formed(3, 52);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    while node.poll_output().is_some() {}
    let broadcast = |origin: u64, seq: u64| {
        gossip(origin, vec![Gossip::UserBroadcast { origin: NodeId(origin), seq, payload: vec![origin as u8] }])
    };
    let mut delivered = 0;
    for (origin, seq) in [(1, 5), (2, 6), (1, 5), (2, 6)] {
        node.handle_datagram(t, addr(origin as usize), &broadcast(origin, seq)).expect("valid");
        delivered += std::iter::from_fn(|| node.poll_output())
            .filter(|o| matches!(o, Output::Event(Event::Broadcast { .. })))
            .count();
    }
    assert_eq!(delivered, 2);
}

#[test]
fn gossip_rounds_reach_a_member_just_declared_failed() {
    let mut cluster = formed(5, 53);
    // Members joined longer than `gossip_to_the_dead_time` ago: it is the verdict that is recent.
    cluster.run_for(Config::lan().gossip_to_the_dead_time + secs(10));
    cluster.crash(3);
    cluster.run_for(secs(15));
    assert_eq!(cluster.failed_verdicts(NodeId(3)).len(), 4);
    // Within `gossip_to_the_dead_time` of the verdict, n0's news goes to n3 as well (so that
    // a member declared failed by mistake hears it and refutes).
    cluster.to_crashed.clear();
    for i in 0..5u8 {
        cluster.command(0, Command::Broadcast(vec![i]));
        cluster.run_for(secs(1));
    }
    let gossip_to_n3 = cluster.to_crashed.iter().filter(|(_, from, to, payload)| {
        (*from, *to) == (0, 3) && matches!(wire::decode(payload, 0, 1400), Ok((_, Message::Gossip { .. })))
    });
    assert!(gossip_to_n3.count() > 0);
}

#[test]
fn a_suspect_that_spoke_since_the_suspicion_began_gets_its_maximum() {
    let config = Config::lan();
    let (min, _) = config.suspicion_timeouts(5);
    // (when the accused last spoke, relative to the suspicion's start; held back?)
    for (spoke, held) in [(Some(Duration::from_millis(10)), true), (Some(Duration::ZERO), false), (None, false)] {
        let mut cluster = formed(5, 54);
        let t = cluster.now;
        let node = cluster.node_mut(0);
        let target = node.watched().find(|id| ![NodeId(1), NodeId(4)].contains(id)).expect("n0 watches 3 of 4");
        let from_target = datagram(
            target.0,
            &Message::Ping { seq: 7, target: NodeId(0), digest: None, quiet: false, gossip: vec![] },
        );
        let accuse = |by: u64| gossip(by, vec![Gossip::Suspect { id: target, incarnation: 0, accuser: NodeId(by) }]);
        if spoke == Some(Duration::ZERO) {
            node.handle_datagram(t, addr(target.0 as usize), &from_target).expect("valid");
        }
        // Three independent accusers (`suspicion_confirmations` is 2): the suspicion runs
        // its minimum.
        assert_eq!(config.suspicion_confirmations, 2);
        for by in (1..5).filter(|&by| by != target.0) {
            node.handle_datagram(t, addr(by as usize), &accuse(by)).expect("valid");
        }
        if let Some(after) = spoke.filter(|d| !d.is_zero()) {
            node.handle_datagram(t + after, addr(target.0 as usize), &from_target).expect("valid");
        }
        node.handle_timeout(t + min + Duration::from_millis(1));
        let state = node.member(target).expect("known").state;
        let expected = if held { MemberState::Suspect } else { MemberState::Failed };
        assert_eq!(state, expected, "the accused last spoke {spoke:?} after the suspicion began");
    }
}

#[test]
fn members_started_together_spread_their_probe_periods() {
    let config = Config::lan();
    let first_wakeups: std::collections::BTreeSet<Instant> = (0..5)
        .map(|seed| {
            let node = crate::Node::new(
                crate::NodeConfig::new(NodeId(seed), addr(seed as usize), config.clone(), seed),
                Instant::ZERO,
            )
            .expect("valid");
            node.poll_timeout().expect("a first protocol period")
        })
        .collect();
    assert_eq!(first_wakeups.len(), 5, "{first_wakeups:?}");
    assert!(first_wakeups.iter().all(|&at| at < Instant::ZERO + config.probe_interval));
}

#[test]
fn a_relay_passes_on_a_late_ack_after_its_nack() {
    let mut cluster = formed(5, 55);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    while node.poll_output().is_some() {}
    let ping_req = |seq: u64, target: u64| {
        datagram(
            1,
            &Message::PingReq { seq, target: NodeId(target), target_addr: addr(target as usize), gossip: vec![] },
        )
    };
    let relayed_seq = |out: &[(std::net::SocketAddr, Message)], target: u64| {
        out.iter()
            .find_map(|(_, m)| match m {
                Message::Ping { seq, target: of, .. } if *of == NodeId(target) => Some(*seq),
                _ => None,
            })
            .expect("the relay pings the target")
    };
    // Two relayed pings, 50 ms apart; both targets stay silent past their nacks.
    node.handle_datagram(t, addr(1), &ping_req(77, 2)).expect("valid");
    let to_n2 = relayed_seq(&sent(node), 2);
    node.handle_datagram(t + Duration::from_millis(50), addr(1), &ping_req(78, 3)).expect("valid");
    let _ = relayed_seq(&sent(node), 3);
    // Each nack goes out at 80 % of the probe timeout (100 ms), not before.
    let mut nacks: Vec<Vec<u64>> = Vec::new();
    for ms in [60, 110, 160] {
        node.handle_timeout(t + Duration::from_millis(ms));
        let out = sent(node);
        nacks.push(
            out.into_iter().filter_map(|(_, m)| if let Message::Nack { seq } = m { Some(seq) } else { None }).collect(),
        );
    }
    assert_eq!(nacks, [vec![], vec![77], vec![78]]);
    // n2's ack comes late, still within a probe period: n1 gets it.
    let ack = datagram(2, &Message::Ack { seq: to_n2, digest: None, picture: None, gossip: vec![] });
    node.handle_datagram(t + Duration::from_millis(200), addr(2), &ack).expect("valid");
    assert!(sent(node).iter().any(|(to, m)| *to == addr(1) && matches!(m, Message::Ack { seq: 77, .. })));
}

#[test]
fn a_member_that_left_accuses_nobody_of_what_its_probes_missed() {
    let mut cluster = formed(5, 56);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    node.handle_command(t, Command::ReportUnreachable(NodeId(2))).expect("accepted");
    node.handle_command(t, Command::Leave).expect("accepted");
    while node.poll_output().is_some() {}
    // No ack ever comes (nothing is delivered): the probe would have timed out by now.
    node.handle_timeout(t + secs(1));
    assert_eq!(node.member(NodeId(2)).expect("known").state, MemberState::Alive);
}

#[test]
fn a_watched_member_that_moved_is_pinged_at_its_new_address() {
    let mut cluster = formed(5, 57);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    let moved = node.watched().find(|&id| id != NodeId(1)).expect("n0 watches 3 of 4");
    let incarnation = node.member(moved).expect("known").incarnation + 1;
    let new_addr = addr(20);
    // It left, and came back elsewhere (while it is live, another address is a conflict).
    let left = Gossip::Leave { id: moved, incarnation };
    let alive = Gossip::Alive { id: moved, incarnation: incarnation + 1, addr: new_addr, tags: Tags::new() };
    node.handle_datagram(t, addr(1), &gossip(1, vec![left, alive])).expect("valid");
    assert_eq!(node.member(moved).expect("known").addr, new_addr);
    let mut pings = Vec::new();
    while pings.is_empty() {
        let at = node.poll_timeout().expect("a next timer");
        assert!(at < t + secs(2), "n0 pings each watched peer every three periods");
        node.handle_timeout(at);
        pings.extend(
            sent(node).into_iter().filter(|(_, m)| matches!(m, Message::Ping { target, .. } if *target == moved)),
        );
    }
    assert!(pings.iter().all(|(to, _)| *to == new_addr), "{pings:?}");
}

#[test]
fn the_accuser_and_a_member_with_stale_news_hear_the_refutation() {
    let mut cluster = formed(5, 58);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    while node.poll_output().is_some() {}
    let accusation = gossip(1, vec![Gossip::Suspect { id: NodeId(0), incarnation: 0, accuser: NodeId(1) }]);
    node.handle_datagram(t, addr(1), &accusation).expect("valid");
    assert_eq!(node.incarnation(), 1);
    let stale = gossip(2, vec![Gossip::Alive { id: NodeId(0), incarnation: 0, addr: addr(0), tags: Tags::new() }]);
    node.handle_datagram(t, addr(2), &stale).expect("valid");
    while node.poll_output().is_some() {}
    for peer in [1u64, 2] {
        let ping =
            datagram(peer, &Message::Ping { seq: peer, target: NodeId(0), digest: None, quiet: false, gossip: vec![] });
        node.handle_datagram(t, addr(peer as usize), &ping).expect("valid");
        let refuted = gossip_sent_to(node, addr(peer as usize))
            .iter()
            .flatten()
            .any(|g| matches!(g, Gossip::Alive { id: NodeId(0), incarnation: 1, .. }));
        assert!(refuted, "n{peer} hears n0 at incarnation 1");
    }
    // A member that says what n0 now holds of itself needs no copy.
    let current = gossip(3, vec![Gossip::Alive { id: NodeId(0), incarnation: 1, addr: addr(0), tags: Tags::new() }]);
    node.handle_datagram(t, addr(3), &current).expect("valid");
    while node.poll_output().is_some() {}
    let ping = datagram(3, &Message::Ping { seq: 3, target: NodeId(0), digest: None, quiet: false, gossip: vec![] });
    node.handle_datagram(t, addr(3), &ping).expect("valid");
    let sent = gossip_sent_to(node, addr(3));
    assert!(!sent.iter().flatten().any(|g| matches!(g, Gossip::Alive { id: NodeId(0), .. })), "{sent:?}");
}

#[test]
fn a_state_transfer_admits_unknown_members_as_they_were_and_never_one_that_left() {
    let mut cluster = formed(3, 59);
    let t = cluster.now;
    let (min, max) = Config::lan().suspicion_timeouts(5);
    let node = cluster.node_mut(0);
    let record = |id: u64, state: MemberState| MemberRecord {
        id: NodeId(id),
        addr: addr(id as usize),
        incarnation: 0,
        state,
        tags: Tags::new(),
    };
    let members = vec![record(5, MemberState::Alive), record(6, MemberState::Failed), record(7, MemberState::Left)];
    let push = datagram(1, &Message::PushPull { reply: false, part: 0, parts: 1, members });
    node.handle_datagram(t, addr(1), &push).expect("valid");
    let state = |node: &crate::Node, id: u64| node.member(NodeId(id)).map(|m| m.state);
    assert_eq!(state(node, 5), Some(MemberState::Alive));
    assert_eq!(state(node, 6), Some(MemberState::Suspect), "another's verdict is a suspicion here");
    assert_eq!(state(node, 7), None, "a member that left is not admitted");
    // n0 runs that suspicion itself: n6 never speaks, so it is failed here within the maximum.
    assert!(min <= max);
    node.handle_timeout(t + max + Duration::from_millis(1));
    assert_eq!(state(node, 6), Some(MemberState::Failed));
}

#[test]
fn a_suspicion_from_a_state_transfer_names_its_sender_as_accuser() {
    let mut cluster = formed(4, 60);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    let record =
        MemberRecord { id: NodeId(2), addr: addr(2), incarnation: 0, state: MemberState::Suspect, tags: Tags::new() };
    let push = datagram(1, &Message::PushPull { reply: false, part: 0, parts: 1, members: vec![record] });
    node.handle_datagram(t, addr(1), &push).expect("valid");
    assert_eq!(node.member(NodeId(2)).expect("known").state, MemberState::Suspect);
    while node.poll_output().is_some() {}
    // The buddy system tells n2 who accuses it.
    let ping = datagram(2, &Message::Ping { seq: 1, target: NodeId(0), digest: None, quiet: false, gossip: vec![] });
    node.handle_datagram(t, addr(2), &ping).expect("valid");
    let claims: Vec<NodeId> = gossip_sent_to(node, addr(2))
        .iter()
        .flatten()
        .filter_map(|g| match g {
            Gossip::Suspect { id: NodeId(2), accuser, .. } => Some(*accuser),
            _ => None,
        })
        .collect();
    assert_eq!(claims, [NodeId(1)]);
}

#[test]
fn in_a_cluster_of_two_a_leave_is_heard_as_a_leave() {
    let mut cluster = formed(2, 61);
    cluster.command(1, Command::Leave);
    cluster.run_for(secs(10));
    assert_eq!(cluster.seen(|e| matches!(e, Event::MemberLeft(m) if m.id == NodeId(1))).len(), 1);
    assert!(cluster.failed_verdicts(NodeId(1)).is_empty());
}

#[test]
fn a_member_with_stale_news_of_another_is_sent_the_newer() {
    let mut cluster = formed(5, 62);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    let alive = |incarnation: u64| Gossip::Alive { id: NodeId(3), incarnation, addr: addr(3), tags: Tags::new() };
    node.handle_datagram(t, addr(1), &gossip(1, vec![alive(1)])).expect("valid");
    node.handle_datagram(t, addr(2), &gossip(2, vec![alive(0)])).expect("valid");
    while node.poll_output().is_some() {}
    let ping = datagram(2, &Message::Ping { seq: 1, target: NodeId(0), digest: None, quiet: false, gossip: vec![] });
    node.handle_datagram(t, addr(2), &ping).expect("valid");
    let sent = gossip_sent_to(node, addr(2));
    assert!(sent.iter().flatten().any(|g| *g == alive(1)), "{sent:?}");
}

#[test]
fn another_is_announced_updated_only_when_its_address_or_tags_change() {
    let mut cluster = formed(4, 63);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    while node.poll_output().is_some() {}
    let updates = |node: &mut crate::Node, item: Gossip| {
        node.handle_datagram(t, addr(1), &gossip(1, vec![item])).expect("valid");
        std::iter::from_fn(|| node.poll_output())
            .filter(|o| matches!(o, Output::Event(Event::MemberUpdated(_))))
            .count()
    };
    let alive =
        |incarnation: u64, at: usize, tags: Tags| Gossip::Alive { id: NodeId(2), incarnation, addr: addr(at), tags };
    assert_eq!(updates(node, alive(1, 2, Tags::new())), 0, "a new incarnation alone");
    assert_eq!(updates(node, alive(2, 12, Tags::new())), 0, "a live member claimed elsewhere: a conflict");
    assert_eq!(node.member(NodeId(2)).expect("known").addr, addr(2));
    assert_eq!(updates(node, alive(3, 2, Tags::from([("k".to_owned(), "v".to_owned())]))), 1, "retagged");
    node.handle_datagram(t, addr(1), &gossip(1, vec![Gossip::Leave { id: NodeId(2), incarnation: 3 }])).expect("valid");
    assert_eq!(updates(node, alive(4, 12, Tags::new())), 0, "a member that left comes back: joined, not updated");
    assert_eq!(node.member(NodeId(2)).expect("known").addr, addr(12), "moved once it had left");
}

/// Two processes with one id (a copied configuration): the one that runs keeps its place
/// everywhere, every member that hears of the other reports the conflict once per
/// address, and the newcomer, told while it joins that its id runs elsewhere, stops
/// without a word on the other's behalf.
#[test]
fn a_second_process_with_a_running_id_is_a_conflict_and_the_newcomer_stops() {
    let mut cluster = formed(4, 66);
    let t = cluster.now;
    let before: Vec<_> = (0..4).map(|i| cluster.node(i).members().cloned().collect::<Vec<_>>()).collect();
    // The newcomer: n2's id, a fresh disk, another address, joining through n0.
    let config = crate::NodeConfig::new(NodeId(2), addr(22), Config::lan(), 99);
    let mut newcomer = crate::Node::new(config, t).expect("valid");
    newcomer.handle_command(t, Command::Join(vec![addr(0)])).expect("joins");
    let joins: Vec<Vec<u8>> = std::iter::from_fn(|| newcomer.poll_output())
        .filter_map(|o| match o {
            Output::Transmit(tx) if tx.to == addr(0) => Some(tx.payload),
            _ => None,
        })
        .collect();
    assert!(!joins.is_empty());
    let seed = cluster.node_mut(0);
    while seed.poll_output().is_some() {}
    let mut replies = Vec::new();
    for join in joins.iter().chain(&joins) {
        seed.handle_datagram(t, addr(22), join).expect("a valid join");
        for output in std::iter::from_fn(|| seed.poll_output()) {
            match output {
                Output::Transmit(tx) if tx.to == addr(22) => replies.push(tx.payload),
                Output::Event(Event::AddressConflict { existing, other }) => {
                    assert_eq!((existing.id, existing.addr, other), (NodeId(2), addr(2), addr(22)));
                    replies.push(Vec::new());
                }
                Output::Event(e) => panic!("the seed reported {e:?}"),
                _ => {}
            }
        }
    }
    assert_eq!(replies.iter().filter(|r| r.is_empty()).count(), 1, "one report for the same address");
    assert_eq!(seed.stats().conflicts, 2, "each claim counted");
    assert_eq!(seed.member(NodeId(2)).expect("known").addr, addr(2), "the running member keeps its place");
    // The newcomer hears the seed's view: its id runs at addr(2). It stops.
    for reply in replies.iter().filter(|r| !r.is_empty()) {
        let _ = newcomer.handle_datagram(t, addr(0), reply);
    }
    let outputs: Vec<Output> = std::iter::from_fn(|| newcomer.poll_output()).collect();
    let holder = outputs.iter().find_map(|o| match o {
        Output::Event(Event::IdInUse { holder }) => Some(holder.clone()),
        _ => None,
    });
    assert_eq!(holder.map(|h| (h.id, h.addr)), Some((NodeId(2), addr(2))), "{outputs:?}");
    assert!(!outputs.iter().any(|o| matches!(o, Output::Transmit(_))), "it says nothing more: {outputs:?}");
    assert_eq!(newcomer.poll_timeout(), None, "and wakes for nothing");
    let later = t + secs(30);
    newcomer.handle_timeout(later);
    assert!(newcomer.poll_output().is_none());
    // Nobody else noticed anything: the views are as they were.
    cluster.run_for(secs(5));
    for (i, view) in before.iter().enumerate() {
        let now: Vec<_> = cluster.node(i).members().map(|m| (m.id, m.addr, m.state)).collect();
        let then: Vec<_> = view.iter().map(|m| (m.id, m.addr, m.state)).collect();
        assert_eq!(now, then, "n{i}'s view changed");
    }
}

/// A member restarted with its disk at a new address is no newcomer: what it hears of
/// its past life is below the incarnation it restarted at. Once the others hold the old
/// address failed, they take the new one.
#[test]
fn a_member_restarted_elsewhere_with_its_disk_is_taken_once_its_old_address_fails() {
    let mut cluster = formed(4, 67);
    let t = cluster.now;
    let durable = cluster.durable(2).cloned().expect("n2 stored its state");
    // n2's old process is gone (its address silent); a new one starts at addr(22) with its disk.
    cluster.crash(2);
    let mut config = crate::NodeConfig::new(NodeId(2), addr(22), Config::lan(), 98);
    config.durable = Some(durable.clone());
    let mut moved = crate::Node::new(config, t).expect("valid");
    moved.handle_command(t, Command::Join(vec![addr(0)])).expect("joins");
    let mut now = t;
    let mut taken = false;
    for _ in 0..4000 {
        // Deliver between the moved member and the cluster by hand, in both directions.
        let outs: Vec<Output> = std::iter::from_fn(|| moved.poll_output()).collect();
        for o in outs {
            match o {
                Output::Event(Event::IdInUse { .. }) => panic!("a restart at a new address was taken for a newcomer"),
                Output::Transmit(tx) => {
                    if let Some(i) = (0..4).find(|&i| addr(i) == tx.to) {
                        cluster.inject(i, addr(22), tx.payload);
                    }
                }
                _ => {}
            }
        }
        for (to, payload) in cluster.take_sent_to(addr(22)) {
            let _ = moved.handle_datagram(now, to, &payload);
        }
        now += Duration::from_millis(10);
        cluster.run_until(now);
        moved.handle_timeout(now);
        taken = (0..4).filter(|&i| i != 2).all(|i| {
            cluster.node(i).member(NodeId(2)).is_some_and(|m| m.addr == addr(22) && m.state == MemberState::Alive)
        });
        if taken {
            break;
        }
    }
    assert!(taken, "the others never took n2's new address");
    assert!(moved.incarnation() > durable.incarnation);
}

#[test]
fn a_member_refutes_a_newer_incarnation_of_itself_and_one_at_another_address() {
    let mut cluster = formed(3, 64);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    let about_me = |incarnation: u64, at: usize| {
        gossip(1, vec![Gossip::Alive { id: NodeId(0), incarnation, addr: addr(at), tags: Tags::new() }])
    };
    node.handle_datagram(t, addr(1), &about_me(5, 0)).expect("valid");
    assert_eq!(node.incarnation(), 6, "a newer incarnation of itself: a past life, or forged");
    node.handle_datagram(t, addr(1), &about_me(6, 9)).expect("valid");
    assert_eq!(node.incarnation(), 7, "its own incarnation at another address");
    node.handle_datagram(t, addr(1), &about_me(7, 0)).expect("valid");
    node.handle_datagram(t, addr(1), &about_me(3, 9)).expect("valid");
    assert_eq!(node.incarnation(), 7, "itself as it is, or an older claim: nothing to refute");
    // At the top of the range, the refutation stays where peers accept it.
    let suspect =
        gossip(1, vec![Gossip::Suspect { id: NodeId(0), incarnation: MAX_INCARNATION - 1, accuser: NodeId(1) }]);
    node.handle_datagram(t, addr(1), &suspect).expect("valid");
    assert_eq!(node.incarnation(), MAX_INCARNATION - 1);
}

#[test]
fn the_relays_of_an_indirect_probe_are_live_members_other_than_its_target() {
    let mut cluster = formed(4, 65);
    let t = cluster.now;
    let node = cluster.node_mut(0);
    while node.poll_output().is_some() {}
    // Three relays wanted, two eligible: n1 and n3.
    node.handle_command(t, Command::ReportUnreachable(NodeId(2))).expect("accepted");
    let mut relays: Vec<std::net::SocketAddr> =
        sent(node).into_iter().filter(|(_, m)| matches!(m, Message::PingReq { .. })).map(|(to, _)| to).collect();
    relays.sort();
    assert_eq!(relays, [addr(1), addr(3)]);
}
