//! Dissemination: how updates reach every member.
//!
//! Updates ride on every ping, ack and ping-req this member sends, packed from the
//! [`BroadcastQueue`] to fit the datagram, and on gossip rounds: every `gossip_interval`,
//! while anything is pending, a `Gossip` datagram to `gossip_nodes` random members
//! (recently failed ones included, so a member wrongly held failed hears its refutation).
//! User broadcasts travel the same way and are delivered once.

use std::collections::BTreeMap;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;

use crate::config::Config;
use crate::member::NodeId;
use crate::membership::broadcast::{retransmit_limit, BroadcastQueue, Key};
use crate::membership::view::View;
use crate::outbox::{Outbox, To};
use crate::time::Instant;
use crate::wire::{encode_gossip, DatagramWriter, Gossip, Message, MessageKind};

/// How long a delivered user broadcast is remembered, so a late copy is not delivered again.
const BROADCAST_MEMORY: Duration = Duration::from_secs(600);
/// The most user broadcasts remembered at once.
const MAX_REMEMBERED_BROADCASTS: usize = 1 << 16;

/// Pending updates, the gossip rounds' schedule, and the broadcasts delivered.
#[derive(Debug)]
pub(crate) struct Dissemination {
    queue: BroadcastQueue,
    /// When the next gossip round is due. A round that finds nothing pending is skipped and
    /// the schedule goes on from it; an idle member is not woken for one.
    next_round: Instant,
    /// User broadcasts delivered (or sent), by origin and sequence, and when.
    delivered: BTreeMap<(NodeId, u64), Instant>,
}

impl Dissemination {
    pub(crate) fn new(first_round: Instant) -> Self {
        Self { queue: BroadcastQueue::default(), next_round: first_round, delivered: BTreeMap::new() }
    }

    /// Whether nothing is pending.
    pub(crate) fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    pub(crate) fn next_round(&self) -> Instant {
        self.next_round
    }

    /// Queues an update, replacing any pending one with the same key.
    pub(crate) fn push(&mut self, key: Key, item: &Gossip) {
        self.queue.push(key, item);
    }

    /// Drops every pending update (the member stops speaking).
    pub(crate) fn clear(&mut self) {
        self.queue = BroadcastQueue::default();
    }

    /// Drops the pending update under `key`, if any: it is out of date.
    pub(crate) fn remove(&mut self, key: Key) {
        self.queue.remove(key);
    }

    /// Notes that `holder` told us the update under `key`.
    pub(crate) fn mark_holder(&mut self, key: Key, holder: NodeId, view: &View) {
        self.queue.mark_holder(key, holder, view.live().saturating_sub(1));
    }

    /// Sends `message`, whose gossip list is empty, to `to` with as many pending updates
    /// packed in as fit (skipping those `peer` is known to have; `None` when the datagram
    /// is not this member's word to `to`, a relayed ack). `claim`, the suspicion of `peer`
    /// this member holds (Lifeguard's buddy system), goes first, whatever the queue says.
    /// A `Gossip` message with nothing to carry is not sent.
    #[allow(clippy::too_many_arguments, reason = "the parts a send reads, each passed per call")]
    pub(crate) fn send_gossiping(
        &mut self,
        out: &mut Outbox,
        to: To,
        peer: Option<NodeId>,
        message: Message,
        claim: Option<&Gossip>,
        view: &View,
        config: &Config,
    ) {
        let kind = message.kind();
        let pending = !self.queue.is_empty();
        let Some(mut writer) = DatagramWriter::with_items(out.header(), &message, out.max_datagram(), pending) else {
            debug_assert!(false, "fixed-size messages always fit the minimum max_datagram");
            return;
        };
        let mut skip = None;
        if let Some(claim) = claim {
            if writer.push_encoded(&encode_gossip(claim)) {
                skip = Some(Key::of(claim));
            }
        }
        let limit = retransmit_limit(config.retransmit_mult, view.live());
        self.queue.fill(&mut writer, peer, skip, limit, view.live().saturating_sub(1));
        if writer.count() == 0 && kind == MessageKind::Gossip {
            // Everything pending is known to be there already.
            return;
        }
        let count = writer.count();
        out.transmit_with_gossip(to, kind, writer.finish(), count);
    }

    /// The gossip round due at `now`, if it is: to `gossip_nodes` random members, live or
    /// failed within `gossip_to_the_dead_time`, while anything is left to send.
    pub(crate) fn round(&mut self, now: Instant, view: &View, rng: &mut ChaCha8Rng, out: &mut Outbox, config: &Config) {
        if now < self.next_round {
            return;
        }
        self.next_round = now + config.gossip_interval;
        if self.queue.is_empty() {
            return;
        }
        let dead_horizon = now.saturating_sub(config.gossip_to_the_dead_time);
        let targets =
            view.random_members(rng, config.gossip_nodes, |p| p.member.state.is_live() || p.since >= dead_horizon);
        for id in targets {
            if self.queue.is_empty() {
                break;
            }
            if let Some(addr) = view.member(id).map(|m| m.addr) {
                self.send_gossiping(
                    out,
                    To::member(id, addr),
                    Some(id),
                    Message::Gossip { gossip: Vec::new() },
                    None,
                    view,
                    config,
                );
            }
        }
    }

    /// Records this member's own broadcast `seq`, so that its echo is not delivered.
    pub(crate) fn sent_broadcast(&mut self, origin: NodeId, seq: u64, now: Instant) {
        self.delivered.insert((origin, seq), now);
    }

    /// Whether `origin`'s broadcast `seq` is new; if it is, remembers it (forgetting the
    /// oldest beyond the bound).
    pub(crate) fn first_delivery(&mut self, origin: NodeId, seq: u64, now: Instant) -> bool {
        if self.delivered.contains_key(&(origin, seq)) {
            return false;
        }
        if self.delivered.len() >= MAX_REMEMBERED_BROADCASTS {
            if let Some(oldest) = self.delivered.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) {
                self.delivered.remove(&oldest);
            }
        }
        self.delivered.insert((origin, seq), now);
        true
    }

    /// Forgets broadcasts delivered longer ago than the memory lasts.
    pub(crate) fn forget_old(&mut self, now: Instant) {
        let memory = now.saturating_sub(BROADCAST_MEMORY);
        self.delivered.retain(|_, at| *at >= memory);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rand::SeedableRng;

    use super::*;
    use crate::membership::view::test_member as member;
    use crate::output::Output;
    use crate::wire::{self, Header};

    fn setup(n: u64) -> (Dissemination, View, Outbox, Config) {
        let mut view = View::new(member(1), Instant::ZERO);
        for id in 2..=n {
            view.insert(member(id), Instant::ZERO);
        }
        let config = Config::lan();
        let out = Outbox::new(Header { cluster_id: config.cluster_id, sender: NodeId(1) }, config.max_datagram);
        (Dissemination::new(Instant::ZERO), view, out, config)
    }

    fn sent(out: &mut Outbox) -> Vec<SocketAddr> {
        std::iter::from_fn(|| out.pop())
            .map(|o| match o {
                Output::Transmit(t) => {
                    // A gossip round goes to members of the view: each datagram names its member.
                    let id = t.to_id.expect("a gossip target is a member");
                    assert_eq!(t.to, member(id.0).addr, "to_id names the member at the address");
                    t.to
                }
                other => panic!("only datagrams: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn rounds_run_on_schedule_only_while_updates_are_pending() {
        let (mut d, view, mut out, config) = setup(10);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        d.round(Instant::ZERO, &view, &mut rng, &mut out, &config);
        assert!(sent(&mut out).is_empty(), "nothing pending");
        assert_eq!(d.next_round(), Instant::ZERO + config.gossip_interval, "the skipped round moves the schedule");
        d.push(Key::Member(NodeId(5)), &Gossip::Leave { id: NodeId(5), incarnation: 0 });
        d.round(Instant::from_millis(50), &view, &mut rng, &mut out, &config);
        assert!(sent(&mut out).is_empty(), "not due yet");
        d.round(d.next_round(), &view, &mut rng, &mut out, &config);
        let targets = sent(&mut out);
        assert_eq!(targets.len(), config.gossip_nodes);
        assert!(!targets.contains(&member(1).addr), "never to itself");
    }

    #[test]
    fn an_update_is_not_sent_again_to_a_member_known_to_hold_it() {
        let (mut d, view, mut out, config) = setup(10);
        d.push(Key::Member(NodeId(5)), &Gossip::Leave { id: NodeId(5), incarnation: 0 });
        d.mark_holder(Key::Member(NodeId(5)), NodeId(2), &view);
        let to = To::member(NodeId(2), member(2).addr);
        d.send_gossiping(&mut out, to, Some(NodeId(2)), Message::Gossip { gossip: Vec::new() }, None, &view, &config);
        assert!(sent(&mut out).is_empty(), "a gossip datagram with nothing to carry is not sent");
        let ack = Message::Ack { seq: 1, digest: None, picture: None, gossip: Vec::new() };
        d.send_gossiping(&mut out, to, Some(NodeId(2)), ack, None, &view, &config);
        assert_eq!(out.stats().gossip_sent, 0, "the ack goes, without the update");
        d.send_gossiping(
            &mut out,
            To::member(NodeId(3), member(3).addr),
            Some(NodeId(3)),
            Message::Gossip { gossip: Vec::new() },
            None,
            &view,
            &config,
        );
        assert_eq!(out.stats().gossip_sent, 1);
        let datagrams: Vec<_> = std::iter::from_fn(|| out.pop()).collect();
        let Some(Output::Transmit(last)) = datagrams.last() else { panic!("a datagram") };
        assert_eq!(
            wire::inspect(&last.payload, config.cluster_id, config.max_datagram).map(|h| h.1),
            Ok(MessageKind::Gossip)
        );
    }

    #[test]
    fn a_buddy_claim_rides_first_and_is_not_packed_twice() {
        let (mut d, view, mut out, config) = setup(10);
        let claim = Gossip::Suspect { id: NodeId(4), incarnation: 0, accuser: NodeId(1) };
        d.push(Key::Suspicion(NodeId(4), NodeId(1)), &claim);
        d.push(Key::Member(NodeId(6)), &Gossip::Leave { id: NodeId(6), incarnation: 0 });
        let ping = Message::Ping { seq: 1, target: NodeId(4), digest: None, quiet: false, gossip: Vec::new() };
        let to = To::member(NodeId(4), member(4).addr);
        d.send_gossiping(&mut out, to, Some(NodeId(4)), ping, Some(&claim), &view, &config);
        assert_eq!(out.stats().gossip_sent, 2, "the claim and the other update, not the claim twice");
        let Some(Output::Transmit(t)) = out.pop() else { panic!("a datagram") };
        let mut expected = vec![0_u8, 1, 4, 0, 2];
        expected.extend(encode_gossip(&claim));
        let body = wire::envelope_len(out.header()) - 4;
        assert_eq!(&t.payload[body..body + expected.len()], &expected[..], "the claim first");
        // Even with nothing queued, the claim goes.
        let (mut idle, ..) = setup(10);
        let ack = Message::Ack { seq: 1, digest: None, picture: None, gossip: Vec::new() };
        idle.send_gossiping(&mut out, to, Some(NodeId(4)), ack, Some(&claim), &view, &config);
        assert_eq!(out.stats().gossip_sent, 3);
    }

    #[test]
    fn a_broadcast_is_delivered_once_and_forgotten_after_its_memory() {
        let (mut d, ..) = setup(2);
        let t = Instant::from_secs(1);
        assert!(d.first_delivery(NodeId(2), 9, t));
        assert!(!d.first_delivery(NodeId(2), 9, t));
        d.sent_broadcast(NodeId(1), 4, t);
        assert!(!d.first_delivery(NodeId(1), 4, t), "our own echo");
        d.forget_old(t + BROADCAST_MEMORY + Duration::from_secs(1));
        assert!(d.first_delivery(NodeId(2), 9, t), "forgotten");
    }
}
