//! The idempotency window: a worker that sees the same request twice (a retry or a hedge
//! of a request it is serving or has served) runs it once.
//!
//! The worker asks the window before it runs a request: a new one is marked in progress
//! and run; one in progress is not run again (its first run will answer); one done gets
//! the stored response again. The window is bounded in count and in age, oldest first: a
//! retry is covered when it arrives within `ttl` of the first copy and fewer than
//! `capacity` newer requests came in between. Set `ttl` above the longest deadline a
//! client gives a call, so that every retry a client can make is covered.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::time::Instant;

/// A request's identity, the same on every attempt at it: who made it and its number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId {
    /// The client that made it (its member id, say), unique in the cluster.
    pub origin: u64,
    /// Its number at that client, never reused while a worker may remember it.
    pub seq: u64,
}

impl RequestId {
    /// Request `seq` of client `origin`.
    pub const fn new(origin: u64, seq: u64) -> Self {
        Self { origin, seq }
    }
}

/// The idempotency window's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdempotencyConfig {
    /// Requests remembered at most; the oldest is forgotten first.
    pub capacity: usize,
    /// How long a request is remembered, from its first copy.
    pub ttl: Duration,
}

impl Default for IdempotencyConfig {
    /// 10 000 requests for a minute: a minute is far above any RPC deadline, and 10 000
    /// covers a minute of a worker serving 166 requests a second (a busier worker covers
    /// 10 000 requests' worth of time).
    fn default() -> Self {
        Self { capacity: 10_000, ttl: Duration::from_secs(60) }
    }
}

/// What the window knows of a request, from [`IdempotencyWindow::begin`].
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a, R> {
    /// Not seen (or forgotten): it is now in progress; run it.
    New,
    /// A copy is being served: do not run it again.
    InProgress,
    /// Served: this was its response.
    Done(&'a R),
}

#[derive(Debug)]
struct Entry<R> {
    /// When its first copy came.
    since: Instant,
    response: Option<R>,
}

/// Requests seen by one worker, with their responses.
#[derive(Debug)]
pub struct IdempotencyWindow<R> {
    config: IdempotencyConfig,
    entries: BTreeMap<RequestId, Entry<R>>,
    /// Every request begun, oldest first, with when it began; an item whose request was
    /// abandoned (and perhaps begun again later) is skipped when it comes out.
    order: VecDeque<(Instant, RequestId)>,
}

impl<R> IdempotencyWindow<R> {
    /// An empty window.
    pub fn new(config: IdempotencyConfig) -> Self {
        Self { config, entries: BTreeMap::new(), order: VecDeque::new() }
    }

    /// Its settings.
    pub fn config(&self) -> &IdempotencyConfig {
        &self.config
    }

    /// A request arrived at `now`: whether to run it. A new request is remembered as in
    /// progress; forgets what is too old or too many first.
    pub fn begin(&mut self, now: Instant, id: RequestId) -> Seen<'_, R> {
        self.forget(now);
        if self.entries.contains_key(&id) {
            return match self.entries.get(&id).and_then(|e| e.response.as_ref()) {
                Some(response) => Seen::Done(response),
                None => Seen::InProgress,
            };
        }
        self.entries.insert(id, Entry { since: now, response: None });
        self.order.push_back((now, id));
        self.forget(now);
        Seen::New
    }

    /// The request `id` was served with `response`: later copies get it. `false` (and the
    /// response dropped) if the window no longer holds the request.
    pub fn complete(&mut self, id: RequestId, response: R) -> bool {
        match self.entries.get_mut(&id) {
            Some(entry) => {
                entry.response = Some(response);
                true
            }
            None => false,
        }
    }

    /// The request `id` could not be served (the worker failed before answering): forget
    /// it, so that a retry runs it.
    pub fn abandon(&mut self, id: RequestId) {
        self.entries.remove(&id);
        // Abandoned items stay in `order` until they come out; keep them from piling up.
        if self.order.len() > 2 * self.config.capacity.max(self.entries.len()) + 16 {
            let entries = &self.entries;
            self.order.retain(|(since, id)| entries.get(id).is_some_and(|e| e.since == *since));
        }
    }

    /// Requests remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it remembers no request.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets requests older than `ttl`, then the oldest while above `capacity`.
    fn forget(&mut self, now: Instant) {
        while let Some(&(since, id)) = self.order.front() {
            let live = self.entries.get(&id).is_some_and(|e| e.since == since);
            let expired = now - since >= self.config.ttl;
            if live && !expired && self.entries.len() <= self.config.capacity {
                break;
            }
            self.order.pop_front();
            if live {
                self.entries.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: fn(u64) -> RequestId = |seq| RequestId::new(7, seq);

    fn window(capacity: usize, ttl_secs: u64) -> IdempotencyWindow<&'static str> {
        IdempotencyWindow::new(IdempotencyConfig { capacity, ttl: Duration::from_secs(ttl_secs) })
    }

    #[test]
    fn a_request_seen_twice_runs_once_and_its_retry_gets_the_response() {
        let mut w = window(10, 60);
        let now = Instant::from_secs(1);
        assert_eq!(w.begin(now, ID(1)), Seen::New);
        assert_eq!(w.begin(now, ID(1)), Seen::InProgress);
        assert!(w.complete(ID(1), "ok"));
        assert_eq!(w.begin(now, ID(1)), Seen::Done(&"ok"));
        assert_eq!(w.begin(now, RequestId::new(8, 1)), Seen::New, "another client's request 1");
        assert_eq!(w.len(), 2);
        assert!(!w.is_empty());
        assert_eq!(w.config().capacity, 10);
    }

    #[test]
    fn abandoned_requests_do_not_pile_up_and_live_ones_still_age_out() {
        let mut w = window(4, 60);
        assert!(w.is_empty());
        let now = Instant::from_secs(1);
        for seq in 1..=3 {
            assert_eq!(w.begin(now, ID(seq)), Seen::New);
        }
        // A thousand requests begun and abandoned: the queue of arrivals keeps at most
        // 2 * capacity + 16 of them before it is compacted, and keeps the live ones.
        let mut peak = 0;
        for seq in 100..1100 {
            assert_eq!(w.begin(now, ID(seq)), Seen::New);
            w.abandon(ID(seq));
            peak = peak.max(w.order.len());
        }
        assert_eq!(peak, 2 * 4 + 16, "compacted as soon as it passes 24, not before");
        assert_eq!(w.len(), 3);
        // The live three still age out.
        assert_eq!(w.begin(Instant::from_secs(61), ID(2000)), Seen::New);
        assert_eq!(w.len(), 1);
        assert_eq!(w.begin(Instant::from_secs(61), ID(1)), Seen::New, "forgotten: it runs again");
    }

    #[test]
    fn requests_are_forgotten_by_age() {
        let mut w = window(10, 60);
        assert_eq!(w.begin(Instant::from_secs(0), ID(1)), Seen::New);
        assert!(w.complete(ID(1), "one"));
        assert_eq!(w.begin(Instant::from_secs(30), ID(2)), Seen::New);
        assert_eq!(w.begin(Instant::from_millis(59_999), ID(1)), Seen::Done(&"one"));
        // At 60 s the first is forgotten: a copy now runs again.
        assert_eq!(w.begin(Instant::from_secs(60), ID(1)), Seen::New);
        assert_eq!(w.begin(Instant::from_secs(60), ID(2)), Seen::InProgress);
        assert_eq!(w.len(), 2);
        // A completion after its request was forgotten is dropped.
        assert_eq!(w.begin(Instant::from_secs(120), ID(3)), Seen::New);
        assert!(!w.complete(ID(2), "late"));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn requests_are_forgotten_by_count_oldest_first() {
        let mut w = window(3, 60);
        for seq in 1..=3 {
            assert_eq!(w.begin(Instant::from_secs(seq), ID(seq)), Seen::New);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.begin(Instant::from_secs(4), ID(4)), Seen::New);
        assert_eq!(w.len(), 3);
        assert_eq!(w.begin(Instant::from_secs(4), ID(2)), Seen::InProgress, "the second oldest stays");
        assert_eq!(w.begin(Instant::from_secs(4), ID(1)), Seen::New, "the oldest was forgotten");
        assert_eq!(w.begin(Instant::from_secs(4), ID(3)), Seen::InProgress);
        assert_eq!(w.begin(Instant::from_secs(4), ID(2)), Seen::New, "forgotten to make room for 1 again");
    }

    #[test]
    fn an_abandoned_request_runs_again_and_keeps_its_new_age() {
        let mut w = window(3, 60);
        assert_eq!(w.begin(Instant::from_secs(0), ID(0)), Seen::New);
        assert_eq!(w.begin(Instant::from_secs(0), ID(1)), Seen::New);
        w.abandon(ID(1));
        assert_eq!(w.len(), 1);
        assert_eq!(w.begin(Instant::from_secs(50), ID(1)), Seen::New);
        // At 60 s the items of 0 s come out: request 0 is forgotten, and the item of request
        // 1's first copy must not take its second, from 50 s.
        assert_eq!(w.begin(Instant::from_secs(61), ID(1)), Seen::InProgress);
        assert_eq!(w.begin(Instant::from_secs(61), ID(0)), Seen::New);
        assert_eq!(w.begin(Instant::from_secs(110), ID(1)), Seen::New);
    }

    #[test]
    fn abandoned_requests_do_not_pile_up() {
        let mut w = window(4, 60);
        for seq in 0..3 {
            assert_eq!(w.begin(Instant::ZERO, ID(10_000 + seq)), Seen::New);
        }
        // The live requests at the front hold the abandoned ones' items behind them.
        for seq in 0..1000 {
            assert_eq!(w.begin(Instant::ZERO, ID(seq)), Seen::New);
            w.abandon(ID(seq));
            assert!(w.order.len() <= 2 * 4 + 16 + 1, "{} items kept", w.order.len());
        }
        assert_eq!(w.len(), 3);
        for seq in 0..3 {
            assert_eq!(w.begin(Instant::ZERO, ID(10_000 + seq)), Seen::InProgress);
        }
    }
}
