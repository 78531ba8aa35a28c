//! Dissemination: the queue of updates that ride on outgoing messages.
//!
//! As memberlist's TransmitLimitedQueue: a newer update about a member replaces the older
//! one; each update is sent at most `retransmit_mult * ceil(log10(n + 1))` times; the
//! least-sent go first, and among those the newest.

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;

use crate::member::NodeId;
use crate::wire::{encode_gossip, DatagramWriter, Gossip};

/// What an update is about: a newer update with the same key replaces the older.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Key {
    /// The state of a member, unless it is suspected.
    Member(NodeId),
    /// One accuser's suspicion of a member (the member, the accuser). Lifeguard's
    /// confirmations are different updates about the same member: each must reach everyone,
    /// so a confirmation does not replace the accusation it confirms.
    Suspicion(NodeId, NodeId),
    /// One user broadcast.
    User(NodeId, u64),
    /// Who leads (only the leader gossips it).
    Leader,
}

impl Key {
    /// The key `item` goes under in the queue.
    pub(crate) fn of(item: &Gossip) -> Self {
        match *item {
            Gossip::Suspect { id, accuser, .. } => Self::Suspicion(id, accuser),
            Gossip::Alive { id, .. } | Gossip::Failed { id, .. } | Gossip::Leave { id, .. } => Self::Member(id),
            Gossip::UserBroadcast { origin, seq, .. } => Self::User(origin, seq),
            Gossip::Leader { .. } => Self::Leader,
        }
    }
}

/// The smallest encoded gossip item; below this much room a datagram is full.
const MIN_ITEM: usize = 4;

/// The most holders remembered per update: enough to finish an update early in a small
/// cluster, where a bounded epidemic most often misses someone, and to keep the checks
/// cheap in a large one.
const MAX_HOLDERS: usize = 32;

/// Room for holders an update starts with.
const HOLDERS_AT_FIRST: usize = 8;

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
    /// How many times it was sent: its level.
    transmits: u32,
}

/// Where an update sits: its slot, and the slot's generation when it was put there (a
/// slot reused by a newer update has moved on, and the old reference is skipped).
#[derive(Clone, Copy, Debug)]
struct Ref {
    slot: u32,
    generation: u32,
}

/// Pending updates, sent fewest-transmits first and, among those, newest first.
///
/// Every datagram sent takes a few updates and moves each one level up, and every item
/// heard looks one up by key, so both are O(1): updates live in slots (a slab), a fixed-hash
/// index finds them by key, and each level is a stack of slot references, newest on top.
/// Removal only frees the slot; the stale reference is dropped when a scan meets it, or
/// when stale references outnumber live ones.
#[derive(Debug, Default)]
pub(crate) struct BroadcastQueue {
    /// The slot of each key's update. Looked up for every gossip item heard, never iterated.
    by_key: IndexMap<Key, u32, FxBuildHasher>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// `levels[t]`: the updates sent `t` times, oldest first (scans start at the end).
    levels: Vec<Vec<Ref>>,
    /// References in `levels` whose update is gone.
    stale: usize,
    /// Scratch for [`Self::fill`]: the updates it sent (with their level), newest first,
    /// and those of the level being scanned that it did not.
    sent: Vec<(Ref, usize)>,
    kept: Vec<Ref>,
}

impl Ref {
    /// The update it names, unless its slot has moved on.
    fn live(self, slots: &[Slot]) -> Option<&Queued> {
        let slot = &slots[self.slot as usize];
        if slot.generation == self.generation {
            slot.queued.as_ref()
        } else {
            None
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    queued: Option<Queued>,
}

impl BroadcastQueue {
    /// Queues `item`, replacing any pending update with the same key.
    pub(crate) fn push(&mut self, key: Key, item: &Gossip) {
        self.remove(key);
        // Nearly every update gains holders (each send adds one): start with room for a few.
        let holders = Vec::with_capacity(HOLDERS_AT_FIRST);
        let queued = Queued { key, bytes: encode_gossip(item), holders, heard: 0, transmits: 0 };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot::default());
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 pending updates")
            }
        };
        let entry = &mut self.slots[slot as usize];
        entry.queued = Some(queued);
        let reference = Ref { slot, generation: entry.generation };
        self.by_key.insert(key, slot);
        self.level(0).push(reference);
    }

    pub(crate) fn remove(&mut self, key: Key) {
        self.release(key, true);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Notes that `holder` told us the pending update under `key`. Once all `others`
    /// members have it, or once [`LOSE_INTEREST`] members told it to us, it is done: the
    /// rumour is everywhere (Demers et al.'s counter, which keeps an epidemic from sending
    /// each update `n * limit` times when it is already saturated).
    pub(crate) fn mark_holder(&mut self, key: Key, holder: NodeId, others: usize) {
        let Some(&slot) = self.by_key.get(&key) else { return };
        let Some(queued) = self.slots[slot as usize].queued.as_mut() else { return };
        if queued.holders.len() < MAX_HOLDERS && !queued.holders.contains(&holder) {
            queued.holders.push(holder);
        }
        queued.heard += 1;
        if queued.holders.len() >= others || queued.heard >= LOSE_INTEREST {
            self.remove(key);
        }
    }

    /// Packs as many updates as fit into `writer` (skipping those `to` is known to have, and
    /// the one under `skip`, which the datagram carries already), counts a transmission for
    /// each, and drops those that reached `limit`. Returns how many were packed.
    pub(crate) fn fill(
        &mut self,
        writer: &mut DatagramWriter,
        to: Option<NodeId>,
        skip: Option<Key>,
        limit: u32,
        others: usize,
    ) -> usize {
        if self.by_key.is_empty() {
            return 0;
        }
        let mut misses = 0;
        let mut sent = std::mem::take(&mut self.sent);
        let mut kept = std::mem::take(&mut self.kept);
        let mut full = false;
        for level in 0..self.levels.len() {
            // Scan the level from its newest end; what is not sent goes back in order.
            while let Some(reference) = self.levels[level].pop() {
                let Some(queued) = reference.live(&self.slots) else {
                    self.stale -= 1;
                    continue;
                };
                if writer.remaining() < MIN_ITEM || misses == MAX_MISSES {
                    // Older than everything kept so far: it goes back below them.
                    kept.push(reference);
                    full = true;
                    break;
                }
                let held = to.is_some_and(|to| queued.holders.contains(&to)) || skip == Some(queued.key);
                if !held && writer.push_encoded(&queued.bytes) {
                    misses = 0;
                    sent.push((reference, level));
                } else {
                    misses += usize::from(!held);
                    kept.push(reference);
                }
            }
            self.levels[level].extend(kept.drain(..).rev());
            if full {
                break;
            }
        }
        // Each sent update moves a level up, oldest first so that the newest ends on top;
        // moving them only now keeps one datagram from carrying an update twice.
        let packed = sent.len();
        for &(reference, level) in sent.iter().rev() {
            let queued = self.slots[reference.slot as usize].queued.as_mut().expect("live: scanned just now");
            queued.transmits += 1;
            if let Some(to) = to.filter(|_| queued.holders.len() < MAX_HOLDERS) {
                queued.holders.push(to);
            }
            if queued.transmits >= limit || queued.holders.len() >= others {
                // Its reference was taken off its level: nothing stale is left behind.
                let key = queued.key;
                self.release(key, false);
            } else {
                self.level(level + 1).push(reference);
            }
        }
        sent.clear();
        self.sent = sent;
        self.kept = kept;
        packed
    }

    fn level(&mut self, level: usize) -> &mut Vec<Ref> {
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        &mut self.levels[level]
    }

    /// Drops the update under `key`, if any, and frees its slot; its reference in
    /// `levels`, if it is `referenced` there, becomes stale.
    fn release(&mut self, key: Key, referenced: bool) {
        let Some(slot) = self.by_key.swap_remove(&key) else { return };
        let entry = &mut self.slots[slot as usize];
        entry.queued = None;
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(slot);
        self.stale += usize::from(referenced);
        if self.by_key.is_empty() {
            // Nothing pending: every reference left is stale, and the slots a burst of
            // updates needed (a thousand at formation) can go.
            self.levels = Vec::new();
            self.slots = Vec::new();
            self.free = Vec::new();
            self.by_key.shrink_to_fit();
            self.stale = 0;
        } else if self.stale > 64 && self.stale > 2 * self.by_key.len() {
            self.compact();
        }
    }

    /// Drops every stale reference.
    fn compact(&mut self) {
        let slots = &self.slots;
        for level in &mut self.levels {
            level.retain(|r| r.live(slots).is_some());
        }
        while self.levels.last().is_some_and(Vec::is_empty) {
            self.levels.pop();
        }
        self.stale = 0;
    }
}

/// `retransmit_mult * ceil(log10(n + 1))`, at least 1.
pub(crate) fn retransmit_limit(mult: u32, n: usize) -> u32 {
    // ceil(log10(n + 1)) is the number of decimal digits of n, and it is asked for every
    // datagram sent, so in integers.
    let digits = n.checked_ilog10().map_or(0, |d| d + 1).max(1);
    mult.saturating_mul(digits)
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
        queue.fill(&mut writer, None, None, limit, usize::MAX);
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
        assert_eq!(queue.fill(&mut writer, Some(NodeId(7)), None, 3, 3), 0, "n7 told us");
        assert_eq!(queue.fill(&mut writer, Some(NodeId(8)), None, 3, 3), 1);
        let mut writer = DatagramWriter::new(HEADER, &message, 1400).expect("fits");
        assert_eq!(queue.fill(&mut writer, Some(NodeId(8)), None, 3, 3), 0, "n8 has it now");
        assert_eq!(queue.len(), 1);
        queue.mark_holder(Key::Member(NodeId(1)), NodeId(9), 3);
        assert!(queue.is_empty(), "all three others have it: done");
    }

    #[test]
    fn each_update_is_sent_once_before_any_is_sent_twice() {
        let mut queue = BroadcastQueue::default();
        queue.push(Key::Member(NodeId(1)), &leave(1, 1));
        queue.push(Key::Member(NodeId(2)), &leave(2, 1));
        // Datagrams with room for one item: the smallest that carries one.
        let empty = crate::wire::encode(HEADER, &Message::Gossip { gossip: Vec::new() }, 1400).expect("fits").len();
        let one = (empty..1400)
            .find(|&max| {
                let mut alone = BroadcastQueue::default();
                alone.push(Key::Member(NodeId(1)), &leave(1, 1));
                drain(&mut alone, max, 3).len() == 1
            })
            .expect("a leave fits 1400 bytes");
        let sent: Vec<Vec<Gossip>> = (0..2).map(|_| drain(&mut queue, one, 3)).collect();
        assert_eq!(sent, [vec![leave(2, 1)], vec![leave(1, 1)]]);
    }

    #[test]
    fn a_member_that_tells_an_update_twice_counts_once_toward_everyone_having_it() {
        let mut queue = BroadcastQueue::default();
        let key = Key::Member(NodeId(1));
        queue.push(key, &leave(1, 1));
        for _ in 0..LOSE_INTEREST - 1 {
            queue.mark_holder(key, NodeId(7), 3);
        }
        assert_eq!(queue.len(), 1, "only n7 of the three others has it");
        queue.mark_holder(key, NodeId(7), 3);
        assert!(queue.is_empty(), "told it {LOSE_INTEREST} times: everyone has it by now");
    }

    #[test]
    fn updates_a_member_has_do_not_crowd_out_those_it_lacks() {
        let mut queue = BroadcastQueue::default();
        for i in 0..12 {
            queue.push(Key::Member(NodeId(i)), &leave(i, 1));
        }
        // n7 has the ten newest: more than a datagram skips before it counts as full.
        for i in 2..12 {
            queue.mark_holder(Key::Member(NodeId(i)), NodeId(7), 100);
        }
        let message = Message::Gossip { gossip: Vec::new() };
        let mut writer = DatagramWriter::new(HEADER, &message, 1400).expect("fits");
        assert_eq!(queue.fill(&mut writer, Some(NodeId(7)), None, 3, 100), 2);
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

    #[test]
    fn a_datagram_carries_each_update_once_and_done_updates_leave_nothing_behind() {
        let mut queue = BroadcastQueue::default();
        for i in 0..300 {
            queue.push(Key::Member(NodeId(i)), &leave(i, 1));
        }
        for _ in 0..20 {
            let items = drain(&mut queue, 1400, 50);
            let mut ids: Vec<NodeId> = items
                .iter()
                .map(|item| match item {
                    Gossip::Leave { id, .. } => *id,
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            let sent = ids.len();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), sent, "an update twice in one datagram");
        }
        // Three members tell us every update but one: those are done.
        for i in 1..300 {
            for holder in 0..3 {
                queue.mark_holder(Key::Member(NodeId(i)), NodeId(1000 + holder), 10);
            }
            queue.mark_holder(Key::Member(NodeId(i)), NodeId(2000), 10);
        }
        assert_eq!(queue.len(), 1);
        let references: usize = queue.levels.iter().map(Vec::len).sum();
        assert!(references <= 64 + 3, "stale references were compacted: {references} left");
        assert_eq!(drain(&mut queue, 1400, 50), vec![leave(0, 1)]);
        queue.remove(Key::Member(NodeId(0)));
        assert!(queue.is_empty() && queue.levels.is_empty() && queue.slots.is_empty());
    }
}
