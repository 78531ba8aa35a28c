//! The engine's event queue: earliest time first, and among events at the same time, the
//! one pushed first.
//!
//! A four-ary min-heap of 16-byte keys `(at, seq, slot)`; the events themselves wait in a
//! slab and never move. A thousand-member run holds about one timer per member, so the
//! heap stays in a few dozen kilobytes and a pop touches five or six levels of small
//! entries, where a binary heap of whole events moved 64 bytes per level across twice the
//! cache lines.

/// A min-priority queue of events by `(at, push order)`.
#[derive(Debug)]
pub(crate) struct EventQueue<T> {
    heap: Vec<Key>,
    slab: Vec<Option<T>>,
    free: Vec<u32>,
    /// The push order of the next event, below 2^32 (the queue renumbers when it runs out).
    seq: u64,
}

/// `at << 64 | seq << 32 | slot`: one integer comparison orders two events, and the key
/// names the event's slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key(u128);

impl Key {
    fn new(at: u64, seq: u64, slot: u32) -> Self {
        Self(u128::from(at) << 64 | u128::from(seq) << 32 | u128::from(slot))
    }

    fn at(self) -> u64 {
        (self.0 >> 64) as u64
    }

    fn seq(self) -> u64 {
        (self.0 >> 32) as u64 & 0xffff_ffff
    }

    fn slot(self) -> u32 {
        self.0 as u32
    }
}

/// Children per heap node: four keep a pop's comparisons within one cache line per level
/// and halve the levels.
const ARITY: usize = 4;

impl<T> EventQueue<T> {
    /// An empty queue with room for `capacity` events.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self { heap: Vec::with_capacity(capacity), slab: Vec::with_capacity(capacity), free: Vec::new(), seq: 0 }
    }

    /// How many events wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Queues `event` at `at`, after every event already queued at `at`.
    pub(crate) fn push(&mut self, at: u64, event: T) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slab.push(Some(event));
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 events in flight")
            }
        };
        if self.seq > u64::from(u32::MAX) {
            self.renumber();
        }
        self.heap.push(Key::new(at, self.seq, slot));
        self.seq += 1;
        self.sift_up(self.heap.len() - 1);
    }

    /// When the earliest event is due.
    pub(crate) fn peek_at(&self) -> Option<u64> {
        self.heap.first().map(|k| k.at())
    }

    /// Takes the earliest event.
    pub(crate) fn pop(&mut self) -> Option<(u64, T)> {
        let last = self.heap.pop()?;
        let top = match self.heap.first() {
            Some(&top) => {
                self.sift_down(last);
                top
            }
            None => last,
        };
        let event = self.slab[top.slot() as usize].take().expect("a queued key names a filled slot");
        self.free.push(top.slot());
        Some((top.at(), event))
    }

    /// Gives the queued events push orders 0, 1, 2 ... in their current order, so that
    /// push orders stay below 2^32 however long a run lasts.
    fn renumber(&mut self) {
        self.heap.sort_unstable();
        for (seq, key) in (0u64..).zip(self.heap.iter_mut()) {
            *key = Key::new(key.at(), seq, key.slot());
        }
        self.seq = self.heap.len() as u64;
        debug_assert!(self.heap.iter().all(|k| k.seq() < self.seq), "renumbered below the next push");
    }

    fn sift_up(&mut self, mut i: usize) {
        let key = self.heap[i];
        while i > 0 {
            let parent = (i - 1) / ARITY;
            if key >= self.heap[parent] {
                break;
            }
            self.heap[i] = self.heap[parent];
            i = parent;
        }
        self.heap[i] = key;
    }

    /// Puts `key` at the root (whose key was just taken) and moves it down to its place:
    /// the smallest child moves up until none is smaller than `key`.
    fn sift_down(&mut self, key: Key) {
        let heap = &mut self.heap[..];
        let len = heap.len();
        let mut i = 0;
        loop {
            let first = i * ARITY + 1;
            let best = if let Some(c) = heap.get(first..first + ARITY) {
                // A full set of children, the usual case: compare in pairs.
                let a = if c[1] < c[0] { 1 } else { 0 };
                let b = if c[3] < c[2] { 3 } else { 2 };
                first + if c[b] < c[a] { b } else { a }
            } else if first < len {
                (first + 1..len).fold(first, |best, c| if heap[c] < heap[best] { c } else { best })
            } else {
                break;
            };
            if heap[best] >= key {
                break;
            }
            heap[i] = heap[best];
            i = best;
        }
        heap[i] = key;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any mix of pushes and pops comes out as a sorted map of (time, push order) would.
        #[test]
        fn pops_in_time_then_push_order(ops in prop::collection::vec(prop::option::of(0u64..50), 0..400)) {
            let mut queue = EventQueue::with_capacity(4);
            let mut model = BTreeMap::new();
            let mut pushed = 0u64;
            for op in ops {
                match op {
                    Some(at) => {
                        pushed += 1;
                        queue.push(at, pushed);
                        model.insert((at, pushed), pushed);
                    }
                    None => {
                        let expected = model.pop_first().map(|((at, _), event)| (at, event));
                        prop_assert_eq!(queue.pop(), expected);
                    }
                }
                prop_assert_eq!(queue.len(), model.len());
                prop_assert_eq!(queue.peek_at(), model.keys().next().map(|&(at, _)| at));
            }
            while let Some((key, event)) = model.pop_first() {
                prop_assert_eq!(queue.pop(), Some((key.0, event)));
            }
            prop_assert_eq!(queue.pop(), None);
        }
    }

    #[test]
    fn push_order_survives_renumbering() {
        let mut queue = EventQueue::with_capacity(0);
        queue.seq = u64::from(u32::MAX) - 2;
        for i in 0..6u64 {
            queue.push(10 - i % 2, i);
        }
        let order: Vec<u64> = std::iter::from_fn(|| queue.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, [1, 3, 5, 0, 2, 4]);
        assert!(queue.seq < 16, "renumbered");
    }

    #[test]
    fn slots_are_reused() {
        let mut queue = EventQueue::with_capacity(0);
        for round in 0..100u64 {
            queue.push(round, round);
            queue.push(round, round + 1);
            assert_eq!(queue.pop(), Some((round, round)));
            assert_eq!(queue.pop(), Some((round, round + 1)));
        }
        assert!(queue.slab.len() <= 2, "freed slots are taken again");
    }
}
