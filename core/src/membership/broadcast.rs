//! Dissemination: the queue of updates that ride on outgoing messages.
//!
//! As memberlist's TransmitLimitedQueue: a newer update about a member replaces the older
//! one; each update is sent at most `retransmit_mult * ceil(log10(n + 1))` times; the
//! least-sent go first, and among those the newest.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::member::NodeId;
use crate::wire::{encode_gossip, DatagramWriter, Gossip};

/// What an update is about: a newer update with the same key replaces the older.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    /// The state of a member.
    Member(NodeId),
    /// One user broadcast.
    User(NodeId, u64),
}

/// Where a queued update stands in the send order: (transmits so far, newest first).
type Rank = (u32, Reverse<u64>);

/// The smallest encoded gossip item; below this much room a datagram is full.
const MIN_ITEM: usize = 4;

/// The most holders remembered per update: enough to finish an update early in a small
/// cluster, where a bounded epidemic most often misses someone, and to keep the checks
/// cheap in a large one.
const MAX_HOLDERS: usize = 32;

/// How many members must tell us an update before we stop spreading it.
const LOSE_INTEREST: u32 = 4;

/// How many updates in a row may fail to fit before a datagram counts as full.
const MAX_MISSES: usize = 8;

/// One pending update.
#[derive(Debug)]
struct Queued {
    key: Key,
    bytes: Vec<u8>,
    /// Members known to have it: sent it, or heard it from them. It is not sent to them
    /// again, so each transmission reaches a member that may still need it.
    holders: Vec<NodeId>,
    /// How many times members told us this same update.
    heard: u32,
}

/// Pending updates, ordered by (fewest transmits, newest first).
#[derive(Debug, Default)]
pub(crate) struct BroadcastQueue {
    /// The send order, with each update.
    order: BTreeMap<Rank, Queued>,
    /// Where each key's update stands.
    ranks: BTreeMap<Key, Rank>,
    next: u64,
}

impl BroadcastQueue {
    /// Queues `item`, replacing any pending update with the same key.
    pub(crate) fn push(&mut self, key: Key, item: &Gossip) {
        self.remove(key);
        let rank = (0, Reverse(self.next));
        self.next += 1;
        self.order.insert(rank, Queued { key, bytes: encode_gossip(item), holders: Vec::new(), heard: 0 });
        self.ranks.insert(key, rank);
    }

    pub(crate) fn remove(&mut self, key: Key) {
        if let Some(rank) = self.ranks.remove(&key) {
            self.order.remove(&rank);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Notes that `holder` told us the pending update under `key`. Once all `others`
    /// members have it, or once [`LOSE_INTEREST`] members told it to us, it is done: the
    /// rumour is everywhere (Demers et al.'s counter, which keeps an epidemic from sending
    /// each update `n * limit` times when it is already saturated).
    pub(crate) fn mark_holder(&mut self, key: Key, holder: NodeId, others: usize) {
        let Some(&rank) = self.ranks.get(&key) else { return };
        let Some(queued) = self.order.get_mut(&rank) else { return };
        if queued.holders.len() < MAX_HOLDERS && !queued.holders.contains(&holder) {
            queued.holders.push(holder);
        }
        queued.heard += 1;
        if queued.holders.len() >= others || queued.heard >= LOSE_INTEREST {
            self.order.remove(&rank);
            self.ranks.remove(&key);
        }
    }

    /// Packs as many updates as fit into `writer` (skipping those `to` is known to have),
    /// counts a transmission for each, and drops those that reached `limit`. Returns how
    /// many were packed.
    pub(crate) fn fill(&mut self, writer: &mut DatagramWriter, to: Option<NodeId>, limit: u32, others: usize) -> usize {
        let mut sent = Vec::new();
        let mut misses = 0;
        for (rank, queued) in &self.order {
            if writer.remaining() < MIN_ITEM || misses == MAX_MISSES {
                break;
            }
            if to.is_some_and(|to| queued.holders.contains(&to)) {
                continue;
            }
            if writer.push_encoded(&queued.bytes) {
                sent.push(*rank);
                misses = 0;
            } else {
                misses += 1;
            }
        }
        for rank in &sent {
            let Some(mut queued) = self.order.remove(rank) else { continue };
            let transmits = rank.0 + 1;
            if let Some(to) = to.filter(|_| queued.holders.len() < MAX_HOLDERS) {
                queued.holders.push(to);
            }
            if transmits >= limit || queued.holders.len() >= others {
                self.ranks.remove(&queued.key);
            } else {
                let next = (transmits, rank.1);
                self.ranks.insert(queued.key, next);
                self.order.insert(next, queued);
            }
        }
        sent.len()
    }
}

/// `retransmit_mult * ceil(log10(n + 1))`, at least 1.
pub(crate) fn retransmit_limit(mult: u32, n: usize) -> u32 {
    let scale = ((n as f64) + 1.0).log10().ceil().max(1.0);
    (f64::from(mult) * scale) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, Header, Message};

    const HEADER: Header = Header { cluster_id: 1, sender: NodeId(9) };

    fn leave(id: u64, incarnation: u64) -> Gossip {
        Gossip::Leave { id: NodeId(id), incarnation }
    }

    fn drain(queue: &mut BroadcastQueue, max: usize, limit: u32) -> Vec<Gossip> {
        let message = Message::Gossip { gossip: Vec::new() };
        let mut writer = DatagramWriter::new(HEADER, &message, max).expect("fits");
        queue.fill(&mut writer, None, limit, usize::MAX);
        let bytes = writer.finish();
        assert!(bytes.len() <= max);
        match decode(&bytes, 1, max).expect("valid").1 {
            Message::Gossip { gossip } => gossip,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn retransmit_limit_follows_the_formula() {
        // 4 * ceil(log10(n + 1)): n = 1 -> 4, 9 -> 4, 10 -> 8, 99 -> 8, 100 -> 12, 1000 -> 16.
        for (n, expected) in [(0, 4), (1, 4), (9, 4), (10, 8), (99, 8), (100, 12), (1000, 16)] {
            assert_eq!(retransmit_limit(4, n), expected, "n = {n}");
        }
    }

    #[test]
    fn newer_update_replaces_older_and_fewest_sent_go_first() {
        let mut queue = BroadcastQueue::default();
        queue.push(Key::Member(NodeId(1)), &leave(1, 1));
        queue.push(Key::Member(NodeId(2)), &leave(2, 1));
        queue.push(Key::Member(NodeId(1)), &leave(1, 2));
        assert_eq!(queue.len(), 2);
        // Newest first among the unsent.
        assert_eq!(drain(&mut queue, 1400, 3), vec![leave(1, 2), leave(2, 1)]);
        queue.push(Key::Member(NodeId(3)), &leave(3, 1));
        assert_eq!(drain(&mut queue, 1400, 3)[0], leave(3, 1), "never-sent goes before sent-once");
        drain(&mut queue, 1400, 3);
        assert_eq!(queue.len(), 1, "the first two reached the limit of 3");
        drain(&mut queue, 1400, 3);
        assert!(queue.is_empty());
    }

    #[test]
    fn an_update_is_not_sent_to_a_member_known_to_have_it() {
        let mut queue = BroadcastQueue::default();
        queue.push(Key::Member(NodeId(1)), &leave(1, 1));
        queue.mark_holder(Key::Member(NodeId(1)), NodeId(7), 3);
        let message = Message::Gossip { gossip: Vec::new() };
        let mut writer = DatagramWriter::new(HEADER, &message, 1400).expect("fits");
        assert_eq!(queue.fill(&mut writer, Some(NodeId(7)), 3, 3), 0, "n7 told us");
        assert_eq!(queue.fill(&mut writer, Some(NodeId(8)), 3, 3), 1);
        let mut writer = DatagramWriter::new(HEADER, &message, 1400).expect("fits");
        assert_eq!(queue.fill(&mut writer, Some(NodeId(8)), 3, 3), 0, "n8 has it now");
        assert_eq!(queue.len(), 1);
        queue.mark_holder(Key::Member(NodeId(1)), NodeId(9), 3);
        assert!(queue.is_empty(), "all three others have it: done");
    }

    #[test]
    fn packs_within_the_datagram_and_keeps_the_rest() {
        let mut queue = BroadcastQueue::default();
        for i in 0..100 {
            let payload = vec![i as u8; 100];
            queue.push(Key::User(NodeId(1), i), &Gossip::UserBroadcast { origin: NodeId(1), seq: i, payload });
        }
        let first = drain(&mut queue, 1024, 1);
        assert!(!first.is_empty() && first.len() < 100);
        assert_eq!(queue.len(), 100 - first.len());
    }
}
