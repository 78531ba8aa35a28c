//! The engine's event queue: earliest time first, and among events at the same time, the
//! one pushed first.
//!
//! A four-ary min-heap of 24-byte keys `(at, seq, slot)`; the events themselves wait in a
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
    seq: u64,
}

#[derive(Clone, Copy, Debug)]
struct Key {
    at: u64,
    seq: u64,
    slot: u32,
}

impl Key {
    #[inline]
    fn before(&self, other: &Self) -> bool {
        (self.at, self.seq) < (other.at, other.seq)
    }
}

/// Children per heap node: four keep a pop's comparisons within one or two cache lines
/// per level and halve the levels.
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
        self.seq += 1;
        self.heap.push(Key { at, seq: self.seq, slot });
        self.sift_up(self.heap.len() - 1);
    }

    /// When the earliest event is due.
    pub(crate) fn peek_at(&self) -> Option<u64> {
        self.heap.first().map(|k| k.at)
    }

    /// Takes the earliest event.
    pub(crate) fn pop(&mut self) -> Option<(u64, T)> {
        let last = self.heap.pop()?;
        let top = if self.heap.is_empty() {
            last
        } else {
            let top = self.heap[0];
            self.sift_down(last);
            top
        };
        let event = self.slab[top.slot as usize].take().expect("a queued key names a filled slot");
        self.free.push(top.slot);
        Some((top.at, event))
    }

    fn sift_up(&mut self, mut i: usize) {
        let key = self.heap[i];
        while i > 0 {
            let parent = (i - 1) / ARITY;
            if !key.before(&self.heap[parent]) {
                break;
            }
            self.heap[i] = self.heap[parent];
            i = parent;
        }
        self.heap[i] = key;
    }

    /// Puts `key` at the root (whose key was just taken) and moves it down to its place.
    fn sift_down(&mut self, key: Key) {
        let len = self.heap.len();
        let mut i = 0;
        loop {
            let first = i * ARITY + 1;
            if first >= len {
                break;
            }
            let end = (first + ARITY).min(len);
            let mut best = first;
            for c in first + 1..end {
                if self.heap[c].before(&self.heap[best]) {
                    best = c;
                }
            }
            if !self.heap[best].before(&key) {
                break;
            }
            self.heap[i] = self.heap[best];
            i = best;
        }
        self.heap[i] = key;
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
