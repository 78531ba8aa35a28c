//! The engine's event queue: earliest time first, and among events at the same time, the
//! one pushed first.
//!
//! A calendar queue (Brown, 1988): time is cut into buckets of [`WIDTH`] nanoseconds, and
//! a ring of [`BUCKETS`] of them covers the next second or so; events further out wait in
//! a heap until the ring reaches them. A push appends a 16-byte key `(at, seq, slot)` to
//! its bucket; a pop takes the smallest key of the current bucket, which holds the few
//! events of one millisecond. Both cost the same at any cluster size, where a heap of a
//! thousand members' timers costs a dozen comparisons and moves per pop. The events
//! themselves wait in a slab and never move.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Nanoseconds per bucket (about a millisecond).
const WIDTH_BITS: u32 = 20;
const WIDTH: u64 = 1 << WIDTH_BITS;
/// Buckets in the ring: about a second ahead (a probe interval, a link's latency).
const BUCKETS: usize = 1024;
const HORIZON: u64 = WIDTH * BUCKETS as u64;

/// A min-priority queue of events by `(at, push order)`.
#[derive(Debug)]
pub(crate) struct EventQueue<T> {
    /// `buckets[i]`: the keys of events due in the ring's `i`-th millisecond, unordered.
    buckets: Vec<Vec<Key>>,
    /// The start of the current bucket's time range, a multiple of [`WIDTH`]; no event is
    /// due before it.
    current: u64,
    /// Events in the ring.
    near: usize,
    /// Events due at or after `current + HORIZON`.
    later: BinaryHeap<Reverse<Key>>,
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

    fn slot(self) -> u32 {
        self.0 as u32
    }
}

fn bucket_of(at: u64) -> usize {
    (at >> WIDTH_BITS) as usize % BUCKETS
}

impl<T> EventQueue<T> {
    /// An empty queue with room for `capacity` events.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            current: 0,
            near: 0,
            later: BinaryHeap::new(),
            slab: Vec::with_capacity(capacity),
            free: Vec::new(),
            seq: 0,
        }
    }

    /// How many events wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.near + self.later.len()
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
        if at < self.current {
            self.rewind(at);
        }
        let key = Key::new(at, self.seq, slot);
        self.seq += 1;
        self.insert(key);
    }

    /// Moves the ring back to `at`'s bucket, for an event due before every event popped so
    /// far (the engine never pushes into its past; this keeps the order right if it did).
    fn rewind(&mut self, at: u64) {
        let keys = self.take_ring();
        self.current = at & !(WIDTH - 1);
        for key in keys {
            self.insert(key);
        }
    }

    fn insert(&mut self, key: Key) {
        if key.at() < self.current.saturating_add(HORIZON) {
            self.buckets[bucket_of(key.at())].push(key);
            self.near += 1;
        } else {
            self.later.push(Reverse(key));
        }
    }

    /// When the earliest event is due. (It leaves the ring where it is.)
    #[cfg(test)]
    pub(crate) fn peek_at(&self) -> Option<u64> {
        if self.near == 0 {
            return self.later.peek().map(|Reverse(k)| k.at());
        }
        let mut start = self.current;
        loop {
            if let Some(key) = self.buckets[bucket_of(start)].iter().min() {
                return Some(key.at());
            }
            start += WIDTH;
        }
    }

    /// Takes the earliest event.
    pub(crate) fn pop(&mut self) -> Option<(u64, T)> {
        self.pop_until(u64::MAX)
    }

    /// Takes the earliest event if it is due at or before `until`: one look at the ring
    /// for both the question and the taking.
    pub(crate) fn pop_until(&mut self, until: u64) -> Option<(u64, T)> {
        self.settle(until)?;
        let bucket = &mut self.buckets[bucket_of(self.current)];
        let (i, key) = bucket.iter().copied().enumerate().min_by_key(|&(_, k)| k)?;
        if key.at() > until {
            return None;
        }
        bucket.swap_remove(i);
        self.near -= 1;
        let event = self.slab[key.slot() as usize].take().expect("a queued key names a filled slot");
        self.free.push(key.slot());
        Some((key.at(), event))
    }

    /// Moves the ring to the first bucket that holds an event, but not to one that starts
    /// after `limit`; `None` if no such bucket holds one. Only a pop moves it, and never
    /// past the time the engine's clock then reads (the popped event's, or `limit`), so
    /// nothing is pushed before it.
    fn settle(&mut self, limit: u64) -> Option<()> {
        loop {
            if !self.buckets[bucket_of(self.current)].is_empty() {
                return Some(());
            }
            let next = if self.near == 0 {
                // Nothing within the ring: jump to the next event further out.
                let Reverse(next) = *self.later.peek()?;
                next.at() & !(WIDTH - 1)
            } else {
                self.current + WIDTH
            };
            if next > limit {
                return None;
            }
            self.current = next;
            // Events the ring now reaches leave the heap for their buckets.
            let horizon = self.current.saturating_add(HORIZON);
            while self.later.peek().is_some_and(|Reverse(k)| k.at() < horizon) {
                let Some(Reverse(key)) = self.later.pop() else { break };
                self.buckets[bucket_of(key.at())].push(key);
                self.near += 1;
            }
        }
    }

    /// Empties the ring, returning its keys.
    fn take_ring(&mut self) -> Vec<Key> {
        self.near = 0;
        self.buckets.iter_mut().flat_map(|b| b.drain(..)).collect()
    }

    /// Gives the queued events push orders 0, 1, 2 ... in their current order, so that
    /// push orders stay below 2^32 however long a run lasts.
    fn renumber(&mut self) {
        let mut keys = self.take_ring();
        keys.extend(self.later.drain().map(|Reverse(k)| k));
        keys.sort_unstable();
        self.seq = 0;
        for key in keys {
            let key = Key::new(key.at(), self.seq, key.slot());
            self.seq += 1;
            self.insert(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Times near one another (one bucket), within the ring, and beyond it.
    fn arb_delay() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..50, 0..3 * WIDTH, 0..2 * HORIZON, 0..40 * HORIZON]
    }

    proptest! {
        /// Any mix of pushes and pops comes out as a sorted map of (time, push order) would.
        /// Pushes are never earlier than the last pop, as in the engine.
        #[test]
        fn pops_in_time_then_push_order(
            ops in prop::collection::vec(prop::option::of(arb_delay()), 0..400),
            bounds in prop::collection::vec(prop::option::of(arb_delay()), 400),
        ) {
            let mut queue = EventQueue::with_capacity(4);
            let mut model = BTreeMap::new();
            let mut pushed = 0u64;
            let mut now = 0;
            for op in ops {
                match op {
                    Some(delay) => {
                        let at = now + delay;
                        pushed += 1;
                        queue.push(at, pushed);
                        model.insert((at, pushed), pushed);
                    }
                    None => match bounds[pushed as usize % bounds.len()] {
                        None => {
                            let expected = model.pop_first().map(|((at, _), event)| (at, event));
                            prop_assert_eq!(queue.pop(), expected);
                            now = expected.map_or(now, |(at, _)| at);
                        }
                        Some(ahead) => {
                            // A bounded pop, as `Sim::run_until` makes: the clock then reads
                            // the event's time, or the bound.
                            let until = now + ahead;
                            let due = model.first_key_value().is_some_and(|(&(at, _), _)| at <= until);
                            let expected = if due { model.pop_first().map(|((at, _), event)| (at, event)) } else { None };
                            prop_assert_eq!(queue.pop_until(until), expected);
                            now = expected.map_or(until, |(at, _)| at);
                        }
                    },
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
    fn an_event_pushed_before_the_last_pop_still_comes_out_in_order() {
        let mut queue = EventQueue::with_capacity(0);
        queue.push(5 * HORIZON, 'a');
        queue.push(5 * HORIZON + 3 * WIDTH, 'b');
        queue.push(9 * HORIZON, 'c');
        assert_eq!(queue.pop(), Some((5 * HORIZON, 'a')));
        queue.push(HORIZON / 2, 'd');
        queue.push(3, 'e');
        let order: Vec<char> = std::iter::from_fn(|| queue.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ['e', 'd', 'b', 'c']);
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
