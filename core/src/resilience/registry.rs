//! The worker registry: the members that can serve a call, as membership sees them, and
//! which of them to call next.
//!
//! A worker is a member whose tags match the registry's [`TagFilter`]. It is fed by the
//! member's own [`Event`]s ([`WorkerRegistry::handle_event`]) or rebuilt from a [`Node`]'s
//! views ([`WorkerRegistry::sync`]); both give the same registry, but for the member
//! itself, which only `sync` includes (no event announces a member to itself). A worker is
//! *usable* when it is alive (not suspect, failed or gone), not on the minority side of a
//! decided partition (that side is read-only), and its circuit breaker lets a call through.
//!
//! [`Selection`] picks among the usable workers: round-robin, uniformly at random, the
//! least outstanding (ties at random), or the better of two drawn at random (the "power of
//! two choices", nearly as good as the least outstanding without herding every client onto
//! the same worker), weighed by calls outstanding alone or, the default, by latency too
//! (Finagle's and tower's peak EWMA). A caller passes the workers to avoid (those a call
//! already tried), so that a retry fails over to an untried worker.
//!
//! Peak EWMA: each worker's latency estimate jumps to any answer slower than it and
//! otherwise moves toward each answer's latency as an exponentially weighted average over
//! [`LATENCY_DECAY`]; a call cancelled before its answer (a hedge won, the caller gave up)
//! counts as at least as slow as it had run, which is how a worker slow enough to be hedged
//! around is still seen as slow. Failures say nothing of speed (the breaker weighs them).
//! While no answer comes the estimate decays toward zero with the same time constant, so
//! a worker once slow and left alone is tried again. A worker's cost is its estimate times
//! its calls outstanding plus one; a worker not measured yet costs the mean estimate of the
//! others, so a newcomer is tried without being flooded. One client at about one call in
//! flight cannot tell a slow worker by its outstanding calls; it can by its latency.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;

use crate::member::{Member, MemberState, NodeId, Tags};
use crate::node::Node;
use crate::output::Event;
use crate::partition::Decision;
use crate::resilience::breaker::{BreakerConfig, BreakerState, CircuitBreaker, Permit, Transition};
use crate::time::Instant;

/// Which members are workers: those whose tags have every required key (with the required
/// value, where one is given). The empty filter takes every member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagFilter {
    required: BTreeMap<String, Option<String>>,
}

impl TagFilter {
    /// Every member is a worker.
    pub fn any() -> Self {
        Self::default()
    }

    /// Also requires the tag `key` with the value `value`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.required.insert(key.into(), Some(value.into()));
        self
    }

    /// Also requires the tag `key`, with any value.
    pub fn has(mut self, key: impl Into<String>) -> Self {
        self.required.insert(key.into(), None);
        self
    }

    /// Whether a member with these tags is a worker.
    pub fn matches(&self, tags: &Tags) -> bool {
        self.required.iter().all(|(key, value)| match (tags.get(key), value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(have), Some(want)) => have == want,
        })
    }
}

/// How the next worker is chosen among the usable ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    /// Each in turn, in id order.
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// The one with the fewest calls outstanding (from this registry), ties at random.
    LeastOutstanding,
    /// The one with fewer calls outstanding of two drawn at random.
    PowerOfTwoChoices,
    /// The one of two drawn at random with the lower peak-EWMA latency times calls
    /// outstanding plus one (see the module's docs).
    #[default]
    PeakEwma,
}

/// The time constant of a worker's latency estimate: how fast it forgets a slow answer
/// (Finagle's and linkerd's 10 s).
pub const LATENCY_DECAY: Duration = Duration::from_secs(10);

/// A worker's peak-EWMA latency estimate, in nanoseconds, as of its last update.
#[derive(Clone, Copy, Debug, PartialEq)]
struct LatencyEstimate {
    nanos: f64,
    at: Instant,
}

impl LatencyEstimate {
    /// `e^(-elapsed / LATENCY_DECAY)`: the weight the estimate keeps after `elapsed`.
    fn kept(elapsed: Duration) -> f64 {
        libm::exp(-elapsed.as_secs_f64() / LATENCY_DECAY.as_secs_f64())
    }

    /// The estimate at `now`, decayed toward zero since its last update.
    fn at(self, now: Instant) -> f64 {
        self.nanos * Self::kept(now.saturating_duration_since(self.at))
    }

    /// The estimate after a call that ran `latency` and `answered` (or was cancelled: then
    /// it was at least that slow, and only raises the estimate).
    fn update(estimate: Option<Self>, now: Instant, latency: Duration, answered: bool) -> Option<Self> {
        let sample = latency.as_secs_f64() * 1e9;
        let Some(old) = estimate else {
            return answered.then_some(Self { nanos: sample, at: now });
        };
        let kept = Self::kept(now.saturating_duration_since(old.at));
        let current = old.nanos * kept;
        let nanos = if sample > current {
            sample
        } else if answered {
            // Toward the answer from the estimate as it stands, by the weight the time since
            // the last update gives it: always between the two.
            current * kept + sample * (1.0 - kept)
        } else {
            return Some(old);
        };
        Some(Self { nanos, at: now })
    }
}

/// Why no worker was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// No worker is alive and on a running side.
    NoWorker,
    /// Some are, but the breaker of every one not avoided refuses calls.
    CircuitOpen,
    /// Every worker that could take the call is one to avoid.
    AllAvoided,
}

/// A call under way to a worker, from [`WorkerRegistry::start_call`]: give it back to
/// [`WorkerRegistry::end_call`] when the call ends.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a ticket must be given back when its call ends, or the worker stays loaded"]
pub struct Ticket {
    worker: NodeId,
    /// When the call started.
    started: Instant,
    /// The breaker's permit (`None` with breakers off).
    permit: Option<Permit>,
}

impl Ticket {
    /// The worker called.
    pub fn worker(&self) -> NodeId {
        self.worker
    }
}

/// How a call ended, for the worker's breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It answered.
    Success {
        /// After this long.
        latency: Duration,
    },
    /// It failed: an error, no answer in time, unreachable.
    Failure {
        /// After this long.
        latency: Duration,
    },
    /// It was cancelled before it said anything about the worker.
    Cancelled,
}

/// A worker as the registry sees it.
#[derive(Clone, Debug)]
pub struct Worker {
    member: Member,
    outstanding: u32,
    latency: Option<LatencyEstimate>,
    breaker: Option<CircuitBreaker>,
}

impl Worker {
    /// Its id.
    pub fn id(&self) -> NodeId {
        self.member.id
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.member.addr
    }

    /// What membership believes about it.
    pub fn state(&self) -> MemberState {
        self.member.state
    }

    /// Its tags.
    pub fn tags(&self) -> &Tags {
        &self.member.tags
    }

    /// Calls made to it through the registry and not yet over.
    pub fn outstanding(&self) -> u32 {
        self.outstanding
    }

    /// Its peak-EWMA latency estimate at `now`, once one of its calls has answered.
    pub fn latency(&self, now: Instant) -> Option<Duration> {
        self.latency.map(|e| Duration::from_secs_f64(e.at(now).max(0.0) / 1e9))
    }

    /// Its circuit breaker, if breakers are on.
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.breaker.as_ref()
    }
}

/// The live, tag-filtered set of workers, with one circuit breaker each.
#[derive(Clone, Debug)]
pub struct WorkerRegistry {
    filter: TagFilter,
    breaker: Option<BreakerConfig>,
    /// The matching members that are not gone (left, or forgotten by membership).
    workers: BTreeMap<NodeId, Worker>,
    /// The members on the minority side of the partition decided, if any.
    minority: BTreeSet<NodeId>,
    /// The worker round-robin chose last.
    last_turn: Option<NodeId>,
    /// Breaker changes not drained yet.
    transitions: Vec<(NodeId, Transition)>,
}

impl WorkerRegistry {
    /// An empty registry of the members that match `filter`, with a breaker per worker
    /// when `breaker` is given.
    pub fn new(filter: TagFilter, breaker: Option<BreakerConfig>) -> Self {
        Self {
            filter,
            breaker,
            workers: BTreeMap::new(),
            minority: BTreeSet::new(),
            last_turn: None,
            transitions: Vec::new(),
        }
    }

    /// The filter.
    pub fn filter(&self) -> &TagFilter {
        &self.filter
    }

    /// Every worker known, usable or not, in id order.
    pub fn workers(&self) -> impl Iterator<Item = &Worker> + '_ {
        self.workers.values()
    }

    /// One worker, if known.
    pub fn worker(&self, id: NodeId) -> Option<&Worker> {
        self.workers.get(&id)
    }

    /// Whether `id` is on the minority side of the partition decided.
    pub fn is_in_minority(&self, id: NodeId) -> bool {
        self.minority.contains(&id)
    }

    /// Whether `id` is a worker that membership lets serve (alive, on a running side),
    /// whatever its breaker says.
    pub fn is_serving(&self, id: NodeId) -> bool {
        self.workers.get(&id).is_some_and(|w| w.member.state == MemberState::Alive) && !self.minority.contains(&id)
    }

    /// Whether `id` could be called at `now`: serving, and its breaker lets a call through.
    pub fn is_usable(&self, now: Instant, id: NodeId) -> bool {
        self.is_serving(id) && self.workers[&id].breaker.as_ref().is_none_or(|b| b.admits(now))
    }

    /// How many workers could be called at `now`.
    pub fn usable(&self, now: Instant) -> usize {
        self.workers.keys().filter(|id| self.is_usable(now, **id)).count()
    }

    /// Takes one membership event in. Returns the worker it removed or declared failed,
    /// if any: calls in flight to it will not be answered.
    pub fn handle_event(&mut self, event: &Event) -> Option<NodeId> {
        match event {
            Event::MemberJoined(m)
            | Event::MemberUpdated(m)
            | Event::MemberSuspected(m)
            | Event::MemberRecovered(m)
            | Event::MemberFailed(m) => self.upsert(m),
            Event::MemberLeft(m) => self.workers.remove(&m.id).map(|w| w.id()),
            Event::PartitionDetected { minority, .. } => {
                self.minority = minority.iter().copied().collect();
                None
            }
            Event::PartitionHealed => {
                self.minority.clear();
                None
            }
            _ => None,
        }
    }

    /// Rebuilds the registry from a node's views: its members (itself among them) and the
    /// partition it decided. Breakers and outstanding counts of workers still there stay.
    pub fn sync(&mut self, node: &Node) {
        self.sync_members(node.members(), node.partition());
    }

    /// Rebuilds the registry from a list of members and the partition decided, if any.
    pub fn sync_members<'a>(&mut self, members: impl IntoIterator<Item = &'a Member>, partition: Option<&Decision>) {
        let mut seen = BTreeSet::new();
        for member in members {
            if member.state != MemberState::Left {
                seen.insert(member.id);
            }
            self.upsert(member);
        }
        self.workers.retain(|id, _| seen.contains(id));
        self.minority = partition.map(|d| d.minority.iter().copied().collect()).unwrap_or_default();
    }

    /// Chooses a worker for a call at `now`, none of `avoid`.
    pub fn select(
        &mut self,
        now: Instant,
        selection: Selection,
        rng: &mut impl Rng,
        avoid: &[NodeId],
    ) -> Result<NodeId, Unavailable> {
        let candidates = self.workers.keys().filter(|id| !avoid.contains(id) && self.is_usable(now, **id)).count();
        if candidates == 0 {
            return Err(self.why_none(avoid));
        }
        let nth = |n: usize| self.candidates(now, avoid).nth(n).map(|w| w.id());
        let chosen = match selection {
            Selection::RoundRobin => {
                let after = self.last_turn;
                self.candidates(now, avoid)
                    .find(|w| after.is_some_and(|last| w.id() > last))
                    .or_else(|| self.candidates(now, avoid).next())
                    .map(Worker::id)
            }
            Selection::Random => nth(rng.random_range(0..candidates)),
            Selection::LeastOutstanding => {
                let least = self.candidates(now, avoid).map(Worker::outstanding).min();
                let tied = self.candidates(now, avoid).filter(|w| Some(w.outstanding) == least).count();
                let pick = rng.random_range(0..tied);
                self.candidates(now, avoid).filter(|w| Some(w.outstanding) == least).nth(pick).map(Worker::id)
            }
            Selection::PowerOfTwoChoices => {
                let (first, second) = two_draws(rng, candidates);
                let (a, b) = (nth(first), nth(second));
                let load = |id: Option<NodeId>| id.map_or(u32::MAX, |id| self.workers[&id].outstanding);
                if load(b) < load(a) {
                    b
                } else {
                    a
                }
            }
            Selection::PeakEwma => {
                let (first, second) = two_draws(rng, candidates);
                let (a, b) = (nth(first), nth(second));
                let (sum, measured) = self
                    .candidates(now, avoid)
                    .filter_map(|w| Some(w.latency?.at(now)))
                    .fold((0.0, 0_u32), |(sum, n), latency| (sum + latency, n + 1));
                let unmeasured = sum / f64::from(measured.max(1));
                let cost = |id: Option<NodeId>| {
                    id.map_or(f64::INFINITY, |id| {
                        let worker = &self.workers[&id];
                        // A nanosecond at least, so that calls outstanding always count.
                        let latency = worker.latency.map_or(unmeasured, |e| e.at(now)).max(1.0);
                        latency * (f64::from(worker.outstanding) + 1.0)
                    })
                };
                if cost(b) < cost(a) {
                    b
                } else {
                    a
                }
            }
        };
        // `candidates` counted at least one, and every arm picks among the same candidates.
        let chosen = chosen.ok_or(Unavailable::NoWorker)?;
        if selection == Selection::RoundRobin {
            self.last_turn = Some(chosen);
        }
        Ok(chosen)
    }

    /// A call to `id` starts at `now`: one more call outstanding, and its breaker's
    /// permit. `None` if `id` is no worker or its breaker refuses the call.
    pub fn start_call(&mut self, now: Instant, id: NodeId) -> Option<Ticket> {
        let worker = self.workers.get_mut(&id)?;
        let permit = match &mut worker.breaker {
            Some(breaker) => {
                let permit = breaker.try_acquire(now);
                Self::drain(id, breaker, &mut self.transitions);
                Some(permit?)
            }
            None => None,
        };
        worker.outstanding += 1;
        Some(Ticket { worker: id, started: now, permit })
    }

    /// The call of `ticket` ended at `now`, with `outcome` for the worker's breaker.
    pub fn end_call(&mut self, now: Instant, ticket: Ticket, outcome: Outcome) {
        let Ticket { worker: id, started, permit } = ticket;
        let Some(worker) = self.workers.get_mut(&id) else { return };
        worker.outstanding = worker.outstanding.saturating_sub(1);
        match outcome {
            Outcome::Success { latency } => {
                worker.latency = LatencyEstimate::update(worker.latency, now, latency, true);
            }
            Outcome::Cancelled => {
                let ran = now.saturating_duration_since(started);
                worker.latency = LatencyEstimate::update(worker.latency, now, ran, false);
            }
            Outcome::Failure { .. } => {}
        }
        let (Some(breaker), Some(permit)) = (&mut worker.breaker, permit) else { return };
        match outcome {
            Outcome::Success { latency } => breaker.record_success(now, permit, latency),
            Outcome::Failure { latency } => breaker.record_failure(now, permit, latency),
            Outcome::Cancelled => breaker.release(now, permit),
        }
        Self::drain(id, breaker, &mut self.transitions);
    }

    /// When a breaker's state next changes with time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.workers.values().filter_map(|w| w.breaker.as_ref()?.poll_timeout()).min()
    }

    /// Makes the breaker changes that time has made by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (id, worker) in &mut self.workers {
            if let Some(breaker) = &mut worker.breaker {
                breaker.handle_timeout(now);
                Self::drain(*id, breaker, &mut self.transitions);
            }
        }
    }

    /// The next breaker change not drained yet, oldest first.
    pub fn poll_transition(&mut self) -> Option<(NodeId, Transition)> {
        if self.transitions.is_empty() {
            None
        } else {
            Some(self.transitions.remove(0))
        }
    }

    /// The state of `id`'s breaker at `now`, if it is a worker and breakers are on.
    pub fn breaker_state(&self, now: Instant, id: NodeId) -> Option<BreakerState> {
        Some(self.workers.get(&id)?.breaker.as_ref()?.state(now))
    }

    fn drain(id: NodeId, breaker: &mut CircuitBreaker, into: &mut Vec<(NodeId, Transition)>) {
        while let Some(transition) = breaker.poll_transition() {
            trace_event!(info, worker = %id, from = ?transition.from, to = ?transition.to, "circuit breaker");
            into.push((id, transition));
        }
    }

    /// The usable workers not to avoid, in id order.
    fn candidates<'a>(&'a self, now: Instant, avoid: &'a [NodeId]) -> impl Iterator<Item = &'a Worker> + 'a {
        self.workers.values().filter(move |w| !avoid.contains(&w.id()) && self.is_usable(now, w.id()))
    }

    /// Why no worker is a candidate: none serving, or the breakers of those not avoided
    /// refuse, or all are avoided.
    fn why_none(&self, avoid: &[NodeId]) -> Unavailable {
        let mut serving = self.workers.keys().filter(|id| self.is_serving(**id)).peekable();
        if serving.peek().is_none() {
            Unavailable::NoWorker
        } else if serving.any(|id| !avoid.contains(id)) {
            Unavailable::CircuitOpen
        } else {
            Unavailable::AllAvoided
        }
    }

    /// Adds, updates or removes `member` as a worker. Returns it if it is now failed.
    fn upsert(&mut self, member: &Member) -> Option<NodeId> {
        if member.state == MemberState::Left || !self.filter.matches(&member.tags) {
            self.workers.remove(&member.id);
            return None;
        }
        let breaker = &self.breaker;
        let worker = self.workers.entry(member.id).or_insert_with(|| Worker {
            member: member.clone(),
            outstanding: 0,
            latency: None,
            breaker: breaker.clone().map(CircuitBreaker::new),
        });
        worker.member.clone_from(member);
        (member.state == MemberState::Failed).then_some(member.id)
    }
}

/// Two distinct indices below `candidates` at random (the same one when there is one).
fn two_draws(rng: &mut impl Rng, candidates: usize) -> (usize, usize) {
    let first = rng.random_range(0..candidates);
    if candidates < 2 {
        return (first, first);
    }
    let other = rng.random_range(0..candidates - 1);
    (first, if other >= first { other + 1 } else { other })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::output::Command;
    use crate::partition::{Mode, Side};
    use crate::resilience::breaker::BreakerWindow;
    use crate::testkit::{addr, Cluster};
    use crate::Config;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn member(id: u64, state: MemberState, tags: Tags) -> Member {
        Member { id: NodeId(id), addr: addr(id as usize), incarnation: 0, state, tags }
    }

    fn worker(id: u64) -> Member {
        member(id, MemberState::Alive, tags(&[("role", "worker")]))
    }

    fn with_state(id: u64, state: MemberState) -> Member {
        Member { state, ..worker(id) }
    }

    fn registry(breaker: Option<BreakerConfig>) -> WorkerRegistry {
        let mut r = WorkerRegistry::new(TagFilter::any().with("role", "worker"), breaker);
        for id in 1..=3 {
            assert_eq!(r.handle_event(&Event::MemberJoined(worker(id))), None);
        }
        r
    }

    fn breaker() -> BreakerConfig {
        BreakerConfig {
            window: BreakerWindow::Count(2),
            minimum_calls: 2,
            open_wait: Duration::from_secs(1),
            half_open_probes: 1,
            ..BreakerConfig::default()
        }
    }

    fn usable_ids(r: &WorkerRegistry, now: Instant) -> Vec<u64> {
        r.workers().filter(|w| r.is_usable(now, w.id())).map(|w| w.id().0).collect()
    }

    const T0: Instant = Instant::ZERO;

    #[test]
    fn tag_filters_match_keys_and_values() {
        let worker = tags(&[("role", "worker"), ("zone", "a")]);
        // (filter, matches the tags above, matches no tags)
        let golden = [
            (TagFilter::any(), true, true),
            (TagFilter::any().has("role"), true, false),
            (TagFilter::any().with("role", "worker"), true, false),
            (TagFilter::any().with("role", "client"), false, false),
            (TagFilter::any().has("role").with("zone", "a"), true, false),
            (TagFilter::any().has("role").with("zone", "b"), false, false),
            (TagFilter::any().has("disk"), false, false),
            (TagFilter::any().with("role", "client").with("role", "worker"), true, false),
        ];
        for (filter, on_worker, on_nothing) in golden {
            assert_eq!(filter.matches(&worker), on_worker, "{filter:?}");
            assert_eq!(filter.matches(&Tags::new()), on_nothing, "{filter:?}");
        }
    }

    #[test]
    fn members_that_match_are_workers_with_their_address_and_tags() {
        let mut r = registry(None);
        r.handle_event(&Event::MemberJoined(member(9, MemberState::Alive, tags(&[("role", "client")]))));
        assert_eq!(r.workers().map(|w| w.id().0).collect::<Vec<_>>(), [1, 2, 3]);
        let w = r.worker(NodeId(2)).expect("a worker");
        assert_eq!((w.addr(), w.state(), w.tags(), w.outstanding()), (addr(2), MemberState::Alive, &worker(2).tags, 0));
        assert!(w.breaker().is_none());
        assert_eq!(r.filter(), &TagFilter::any().with("role", "worker"));
        // A worker whose tags stop matching is no worker any more; matching again, it is back.
        r.handle_event(&Event::MemberUpdated(member(2, MemberState::Alive, tags(&[("role", "client")]))));
        assert_eq!(usable_ids(&r, T0), [1, 3]);
        assert!(r.worker(NodeId(2)).is_none());
        r.handle_event(&Event::MemberUpdated(worker(2)));
        assert_eq!(usable_ids(&r, T0), [1, 2, 3]);
        // Events that are not about members change nothing.
        assert_eq!(r.handle_event(&Event::LeaderElected { term: 1, leader: NodeId(1) }), None);
        assert_eq!(r.handle_event(&Event::QuorumLost), None);
        assert_eq!(r.usable(T0), 3);
    }

    #[test]
    fn suspect_failed_and_departed_workers_are_skipped() {
        let mut r = registry(None);
        assert_eq!(r.handle_event(&Event::MemberSuspected(with_state(1, MemberState::Suspect))), None);
        assert_eq!(usable_ids(&r, T0), [2, 3]);
        assert!(!r.is_serving(NodeId(1)));
        assert_eq!(r.handle_event(&Event::MemberRecovered(worker(1))), None);
        assert_eq!(usable_ids(&r, T0), [1, 2, 3]);
        assert_eq!(r.handle_event(&Event::MemberFailed(with_state(2, MemberState::Failed))), Some(NodeId(2)));
        assert_eq!(usable_ids(&r, T0), [1, 3]);
        assert!(r.worker(NodeId(2)).is_some(), "a failed worker is remembered (with its breaker) in case it recovers");
        assert_eq!(r.handle_event(&Event::MemberLeft(with_state(3, MemberState::Left))), Some(NodeId(3)));
        assert!(r.worker(NodeId(3)).is_none());
        assert_eq!(r.handle_event(&Event::MemberLeft(with_state(3, MemberState::Left))), None, "gone already");
        assert_eq!(usable_ids(&r, T0), [1]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..20 {
            assert_eq!(r.select(T0, Selection::Random, &mut rng, &[]), Ok(NodeId(1)));
        }
        // A member that is not a worker failing is no news.
        assert_eq!(r.handle_event(&Event::MemberFailed(member(9, MemberState::Failed, Tags::new()))), None);
        // A failed worker's record in a member list (a state transfer) is one too.
        r.sync_members([&worker(1), &with_state(2, MemberState::Failed)], None);
        assert_eq!(usable_ids(&r, T0), [1]);
        assert_eq!(r.workers().count(), 2);
    }

    #[test]
    fn the_minority_side_of_a_decided_partition_is_skipped_until_it_heals() {
        let mut r = registry(None);
        let detected = Event::PartitionDetected {
            majority: vec![NodeId(1), NodeId(2)],
            minority: vec![NodeId(3)],
            local_side: Side::Majority,
        };
        assert_eq!(r.handle_event(&detected), None);
        assert!(r.is_in_minority(NodeId(3)) && !r.is_in_minority(NodeId(1)));
        assert_eq!(usable_ids(&r, T0), [1, 2]);
        assert_eq!(r.handle_event(&Event::PartitionHealed), None);
        assert_eq!(usable_ids(&r, T0), [1, 2, 3]);
        let decision =
            Decision { majority: vec![NodeId(3)], minority: vec![NodeId(1), NodeId(2)], local_side: Side::Minority };
        r.sync_members([&worker(1), &worker(2), &worker(3)], Some(&decision));
        assert_eq!(usable_ids(&r, T0), [3]);
        r.sync_members([&worker(1), &worker(2), &worker(3)], None);
        assert_eq!(usable_ids(&r, T0), [1, 2, 3]);
    }

    #[test]
    fn an_open_breaker_takes_its_worker_out_until_a_probe_may_go() {
        let mut r = registry(Some(breaker()));
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..2 {
            let ticket = r.start_call(T0, NodeId(2)).expect("closed");
            assert_eq!(ticket.worker(), NodeId(2));
            r.end_call(T0, ticket, Outcome::Failure { latency: Duration::from_millis(1) });
        }
        assert_eq!(r.breaker_state(T0, NodeId(2)), Some(BreakerState::Open));
        assert_eq!(r.poll_transition().map(|(id, t)| (id, t.to)), Some((NodeId(2), BreakerState::Open)));
        assert_eq!(r.poll_transition(), None);
        assert_eq!(usable_ids(&r, T0), [1, 3]);
        assert!(r.is_serving(NodeId(2)) && !r.is_usable(T0, NodeId(2)));
        assert_eq!(r.start_call(T0, NodeId(2)), None, "an open breaker gives no ticket");
        for _ in 0..50 {
            assert_ne!(r.select(T0, Selection::Random, &mut rng, &[]), Ok(NodeId(2)));
        }
        assert_eq!(r.select(T0, Selection::Random, &mut rng, &[NodeId(1), NodeId(3)]), Err(Unavailable::CircuitOpen));
        // After the open wait, one probe may go (the breaker allows one).
        let later = Instant::from_secs(1);
        assert_eq!(r.poll_timeout(), Some(later));
        r.handle_timeout(later);
        assert_eq!(
            r.poll_transition().map(|(id, t)| (id, t.at, t.to)),
            Some((NodeId(2), later, BreakerState::HalfOpen))
        );
        assert_eq!(r.select(later, Selection::Random, &mut rng, &[NodeId(1), NodeId(3)]), Ok(NodeId(2)));
        let probe = r.start_call(later, NodeId(2)).expect("the probe");
        assert!(!r.is_usable(later, NodeId(2)), "one probe at a time");
        assert_eq!(r.worker(NodeId(2)).map(Worker::outstanding), Some(1));
        r.end_call(later, probe, Outcome::Cancelled);
        assert!(r.is_usable(later, NodeId(2)), "a cancelled probe makes room for another");
        assert_eq!(r.worker(NodeId(2)).map(Worker::outstanding), Some(0));
        let probe = r.start_call(later, NodeId(2)).expect("another probe");
        r.end_call(later, probe, Outcome::Success { latency: Duration::from_millis(1) });
        assert_eq!(r.breaker_state(later, NodeId(2)), Some(BreakerState::Closed));
        assert_eq!(r.poll_transition().map(|(_, t)| t.to), Some(BreakerState::Closed));
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.breaker_state(later, NodeId(9)), None);
        assert_eq!(registry(None).breaker_state(later, NodeId(1)), None);
    }

    #[test]
    fn calls_to_workers_that_went_away_end_harmlessly() {
        let mut r = registry(Some(breaker()));
        let ticket = r.start_call(T0, NodeId(1)).expect("closed");
        assert_eq!(r.start_call(T0, NodeId(9)), None, "no such worker");
        r.handle_event(&Event::MemberLeft(with_state(1, MemberState::Left)));
        r.end_call(T0, ticket, Outcome::Failure { latency: Duration::ZERO });
        assert!(r.worker(NodeId(1)).is_none());
        assert_eq!(r.poll_transition(), None);
    }

    #[test]
    fn round_robin_takes_each_worker_in_turn_and_skips_the_avoided() {
        let mut r = registry(None);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let picks: Vec<u64> =
            (0..7).map(|_| r.select(T0, Selection::RoundRobin, &mut rng, &[]).expect("workers").0).collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3, 1]);
        assert_eq!(r.select(T0, Selection::RoundRobin, &mut rng, &[NodeId(2)]), Ok(NodeId(3)));
        assert_eq!(r.select(T0, Selection::RoundRobin, &mut rng, &[NodeId(1)]), Ok(NodeId(2)));
        // A worker gone since its turn: the next one after it.
        r.handle_event(&Event::MemberFailed(with_state(3, MemberState::Failed)));
        assert_eq!(r.select(T0, Selection::RoundRobin, &mut rng, &[]), Ok(NodeId(1)));
    }

    #[test]
    fn random_covers_every_usable_worker_evenly() {
        let mut r = registry(None);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut counts = BTreeMap::new();
        for _ in 0..3000 {
            *counts.entry(r.select(T0, Selection::Random, &mut rng, &[]).expect("workers").0).or_insert(0) += 1;
        }
        assert_eq!(counts.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert!(counts.values().all(|n| (900..1100).contains(n)), "{counts:?}");
    }

    fn load(r: &mut WorkerRegistry, loads: &[(u64, u32)]) -> Vec<Ticket> {
        let mut tickets = Vec::new();
        for &(id, n) in loads {
            for _ in 0..n {
                tickets.push(r.start_call(T0, NodeId(id)).expect("a worker"));
            }
        }
        tickets
    }

    #[test]
    fn least_outstanding_takes_the_least_loaded_and_breaks_ties_at_random() {
        let mut r = registry(None);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let _tickets = load(&mut r, &[(1, 2), (2, 1), (3, 4)]);
        for _ in 0..20 {
            assert_eq!(r.select(T0, Selection::LeastOutstanding, &mut rng, &[]), Ok(NodeId(2)));
        }
        assert_eq!(r.select(T0, Selection::LeastOutstanding, &mut rng, &[NodeId(2)]), Ok(NodeId(1)));
        let _more = load(&mut r, &[(2, 1)]);
        let mut counts = BTreeMap::new();
        for _ in 0..1000 {
            *counts.entry(r.select(T0, Selection::LeastOutstanding, &mut rng, &[]).expect("workers").0).or_insert(0) +=
                1;
        }
        assert_eq!(counts.keys().copied().collect::<Vec<_>>(), [1, 2], "both at 2 outstanding");
        assert!(counts.values().all(|n| (400..600).contains(n)), "{counts:?}");
    }

    #[test]
    fn power_of_two_choices_never_takes_the_most_loaded_and_favours_the_least() {
        let mut r = registry(None);
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let _tickets = load(&mut r, &[(1, 1), (2, 5), (3, 9)]);
        let mut counts = BTreeMap::new();
        for _ in 0..3000 {
            *counts
                .entry(r.select(T0, Selection::PowerOfTwoChoices, &mut rng, &[]).expect("workers").0)
                .or_insert(0) += 1;
        }
        // Two distinct of three: the least loaded is in 2 of 3 draws, the middle wins only
        // against the most loaded (1 in 3), the most loaded never.
        assert_eq!(counts.get(&3), None, "{counts:?}");
        assert!((1900..2100).contains(&counts[&1]) && (900..1100).contains(&counts[&2]), "{counts:?}");
        // With equal loads it is uniform; with one candidate it is that one; with two, the
        // two are drawn, and the less loaded always wins.
        assert_eq!(r.select(T0, Selection::PowerOfTwoChoices, &mut rng, &[NodeId(1), NodeId(2)]), Ok(NodeId(3)));
        for selection in [Selection::PowerOfTwoChoices, Selection::PeakEwma] {
            for _ in 0..50 {
                assert_eq!(r.select(T0, selection, &mut rng, &[NodeId(1)]), Ok(NodeId(2)), "{selection:?}");
            }
        }
    }

    /// Ends one call to each of `answers`' workers at `at`, started `latency` before.
    fn answer(r: &mut WorkerRegistry, at: Instant, answers: &[(u64, u64)]) {
        for &(id, millis) in answers {
            let latency = Duration::from_millis(millis);
            let ticket = r.start_call(at - latency, NodeId(id)).expect("a worker");
            r.end_call(at, ticket, Outcome::Success { latency });
        }
    }

    fn peak_ewma_counts(r: &mut WorkerRegistry, now: Instant, rng: &mut ChaCha8Rng) -> BTreeMap<u64, u32> {
        let mut counts = BTreeMap::new();
        for _ in 0..3000 {
            *counts.entry(r.select(now, Selection::PeakEwma, rng, &[]).expect("workers").0).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn peak_ewma_keeps_first_attempts_off_a_slow_worker_until_it_has_been_left_alone() {
        let mut r = registry(None);
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let t = Instant::from_secs(10);
        answer(&mut r, t, &[(1, 50), (2, 5), (3, 5)]);
        assert!(r.worker(NodeId(1)).and_then(Worker::breaker).is_none(), "breakers off");
        let with_breakers = registry(Some(breaker()));
        assert!(with_breakers.worker(NodeId(1)).and_then(Worker::breaker).is_some());
        assert_eq!(r.worker(NodeId(1)).and_then(|w| w.latency(t)), Some(Duration::from_millis(50)));
        let counts = peak_ewma_counts(&mut r, t, &mut rng);
        assert_eq!(counts.get(&1), None, "10x slower than either other: {counts:?}");
        assert!((1400..1600).contains(&counts[&2]), "{counts:?}");
        // Ten calls outstanding at n2 make it costlier than the slow one (5 ms x 11).
        let _tickets = load(&mut r, &[(2, 10)]);
        let counts = peak_ewma_counts(&mut r, t, &mut rng);
        assert_eq!(counts.get(&2), None, "{counts:?}");
        assert!((1900..2100).contains(&counts[&3]), "n3 in 2 of 3 draws: {counts:?}");
        drop(_tickets);

        // 30 s on, with answers from the fast ones only: the slow one's estimate has decayed
        // to 50 ms * e^-3 = 2.5 ms, under theirs, and it is tried again.
        let mut r2 = registry(None);
        answer(&mut r2, t, &[(1, 50), (2, 5), (3, 5)]);
        let later = t + Duration::from_secs(30);
        answer(&mut r2, later, &[(2, 5), (3, 5)]);
        let decayed = r2.worker(NodeId(1)).and_then(|w| w.latency(later)).expect("measured");
        assert!(decayed > Duration::from_millis(2) && decayed < Duration::from_millis(3), "{decayed:?}");
        let counts = peak_ewma_counts(&mut r2, later, &mut rng);
        assert!((1900..2100).contains(&counts[&1]), "{counts:?}");
    }

    #[test]
    fn peak_ewma_jumps_to_a_slower_answer_and_averages_toward_faster_ones() {
        let mut r = registry(None);
        let t = Instant::from_secs(10);
        let latency = |r: &WorkerRegistry, at: Instant| r.worker(NodeId(1)).and_then(|w| w.latency(at));
        assert_eq!(latency(&r, t), None);
        answer(&mut r, t, &[(1, 10)]);
        answer(&mut r, t, &[(1, 40)]);
        assert_eq!(latency(&r, t), Some(Duration::from_millis(40)), "a peak is taken at once");
        // 10 s later a 10 ms answer: 40 ms decayed by e^-1 (14.7 ms) is above it, so the
        // estimate moves toward it: 14.7 e^-1 + 10 (1 - e^-1) = 11.7 ms.
        let later = t + Duration::from_secs(10);
        answer(&mut r, later, &[(1, 10)]);
        let got = latency(&r, later).expect("measured").as_secs_f64() * 1e3;
        let e = (-1.0f64).exp();
        assert!((got - (40.0 * e * e + 10.0 * (1.0 - e))).abs() < 1e-6, "{got}");
        assert!(got > 10.0 && got < 40.0 * e, "between the answer and the estimate: {got}");
        // Failures say nothing of speed; a cancelled call raises the estimate to how long it
        // ran, and one cancelled sooner than the estimate changes nothing.
        let before = latency(&r, later);
        let ticket = r.start_call(later, NodeId(1)).expect("a worker");
        r.end_call(later, ticket, Outcome::Failure { latency: Duration::from_secs(1) });
        assert_eq!(latency(&r, later), before);
        let ticket = r.start_call(later, NodeId(1)).expect("a worker");
        r.end_call(later + Duration::from_millis(1), ticket, Outcome::Cancelled);
        let unchanged = latency(&r, later + Duration::from_millis(1)).expect("measured");
        assert!(unchanged > Duration::from_millis(11), "{unchanged:?}");
        let ticket = r.start_call(later, NodeId(1)).expect("a worker");
        let cancelled = later + Duration::from_millis(300);
        r.end_call(cancelled, ticket, Outcome::Cancelled);
        assert_eq!(latency(&r, cancelled), Some(Duration::from_millis(300)));
        // A worker never answered has no estimate, even from a cancelled call.
        let ticket = r.start_call(later, NodeId(2)).expect("a worker");
        r.end_call(cancelled, ticket, Outcome::Cancelled);
        assert_eq!(r.worker(NodeId(2)).and_then(|w| w.latency(cancelled)), None);
    }

    #[test]
    fn peak_ewma_costs_an_unmeasured_worker_the_mean_of_the_others() {
        let mut r = registry(None);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let t = Instant::from_secs(10);
        // n1 at 2 ms, n2 at 10 ms, n3 unmeasured: 6 ms. n1 wins both its pairs, n3 wins
        // against n2, n2 never.
        answer(&mut r, t, &[(1, 2), (2, 10)]);
        let counts = peak_ewma_counts(&mut r, t, &mut rng);
        assert_eq!(counts.get(&2), None, "{counts:?}");
        assert!((1900..2100).contains(&counts[&1]) && (900..1100).contains(&counts[&3]), "{counts:?}");
        // Nothing measured at all: calls outstanding decide, as the power of two choices.
        let mut fresh = registry(None);
        let _tickets = load(&mut fresh, &[(1, 1), (2, 5), (3, 9)]);
        let counts = peak_ewma_counts(&mut fresh, t, &mut rng);
        assert_eq!(counts.get(&3), None, "{counts:?}");
        assert!((1900..2100).contains(&counts[&1]), "{counts:?}");
    }

    #[test]
    fn failover_avoids_tried_workers_and_says_why_when_none_is_left() {
        let mut r = registry(Some(breaker()));
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for selection in
            [Selection::RoundRobin, Selection::Random, Selection::LeastOutstanding, Selection::PowerOfTwoChoices]
        {
            for _ in 0..10 {
                assert_eq!(r.select(T0, selection, &mut rng, &[NodeId(1), NodeId(3)]), Ok(NodeId(2)), "{selection:?}");
            }
            let all = [NodeId(1), NodeId(2), NodeId(3)];
            assert_eq!(r.select(T0, selection, &mut rng, &all), Err(Unavailable::AllAvoided), "{selection:?}");
        }
        // All avoided but one whose breaker is open: the breaker is why.
        let _ = load(&mut r, &[]);
        for _ in 0..2 {
            let ticket = r.start_call(T0, NodeId(3)).expect("closed");
            r.end_call(T0, ticket, Outcome::Failure { latency: Duration::ZERO });
        }
        assert_eq!(r.select(T0, Selection::Random, &mut rng, &[NodeId(1), NodeId(2)]), Err(Unavailable::CircuitOpen));
        // No worker serving at all.
        for id in 1..=3 {
            r.handle_event(&Event::MemberSuspected(with_state(id, MemberState::Suspect)));
        }
        assert_eq!(r.select(T0, Selection::Random, &mut rng, &[]), Err(Unavailable::NoWorker));
        let mut empty = WorkerRegistry::new(TagFilter::any(), None);
        assert_eq!(empty.select(T0, Selection::RoundRobin, &mut rng, &[]), Err(Unavailable::NoWorker));
        assert_eq!(empty.usable(T0), 0);
    }

    /// Members 0..n of a test cluster with `role=worker` tags on 1..n, converged.
    fn cluster_of_workers(n: usize, seed: u64) -> Cluster {
        let mut cluster = Cluster::new(n, Config::lan(), seed);
        for i in 1..n {
            cluster.command(i, Command::SetTags(tags(&[("role", "worker")])));
        }
        cluster.run_for(Duration::from_secs(10));
        assert!(cluster.converged());
        cluster
    }

    /// A registry fed with every event `observer` emitted.
    fn from_events(cluster: &Cluster, observer: u64) -> WorkerRegistry {
        let mut r = WorkerRegistry::new(TagFilter::any().with("role", "worker"), None);
        for seen in cluster.events.iter().filter(|s| s.observer == NodeId(observer)) {
            r.handle_event(&seen.event);
        }
        r
    }

    fn summary(r: &WorkerRegistry, now: Instant) -> Vec<(u64, MemberState, bool)> {
        r.workers().map(|w| (w.id().0, w.state(), r.is_usable(now, w.id()))).collect()
    }

    #[test]
    fn a_registry_follows_a_real_clusters_membership_through_a_crash() {
        let mut cluster = cluster_of_workers(5, 11);
        let mut synced = WorkerRegistry::new(TagFilter::any().with("role", "worker"), None);
        synced.sync(cluster.node(0));
        let alive = |id| (id, MemberState::Alive, true);
        assert_eq!(summary(&synced, cluster.now), [alive(1), alive(2), alive(3), alive(4)]);
        assert_eq!(summary(&from_events(&cluster, 0), cluster.now), summary(&synced, cluster.now));

        cluster.crash(3);
        cluster.run_for(Duration::from_secs(30));
        synced.sync(cluster.node(0));
        assert_eq!(summary(&synced, cluster.now), [alive(1), alive(2), (3, MemberState::Failed, false), alive(4)]);
        assert_eq!(summary(&from_events(&cluster, 0), cluster.now), summary(&synced, cluster.now));

        // A member that leaves is no worker any more.
        cluster.command(4, Command::Leave);
        cluster.run_for(Duration::from_secs(5));
        synced.sync(cluster.node(0));
        assert_eq!(summary(&synced, cluster.now), [alive(1), alive(2), (3, MemberState::Failed, false)]);
        assert_eq!(summary(&from_events(&cluster, 0), cluster.now), summary(&synced, cluster.now));
    }

    #[test]
    fn a_member_on_the_minority_side_finds_no_worker() {
        let mut cluster = cluster_of_workers(5, 12);
        for a in 0..3 {
            for b in 3..5 {
                cluster.cut(a, b);
            }
        }
        cluster.run_for(Duration::from_secs(60));
        assert_eq!(cluster.node(3).mode(), Mode::ReadOnly);
        assert_eq!(cluster.node(0).mode(), Mode::Normal);
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        // From member 3: its own side (3, 4) is alive but read-only; the other side failed.
        let mut minority = WorkerRegistry::new(TagFilter::any().with("role", "worker"), None);
        minority.sync(cluster.node(3));
        assert!(minority.is_in_minority(NodeId(4)));
        assert_eq!(minority.worker(NodeId(4)).map(Worker::state), Some(MemberState::Alive));
        assert_eq!(minority.select(cluster.now, Selection::Random, &mut rng, &[]), Err(Unavailable::NoWorker));
        // Events never announce the member itself: the registry they build lacks member 3.
        let mut without_self = summary(&minority, cluster.now);
        without_self.retain(|w| w.0 != 3);
        assert_eq!(summary(&from_events(&cluster, 3), cluster.now), without_self);
        // From member 0, the majority: 1 and 2 serve.
        let mut majority = WorkerRegistry::new(TagFilter::any().with("role", "worker"), None);
        majority.sync(cluster.node(0));
        assert_eq!(usable_ids(&majority, cluster.now), [1, 2]);
    }
}
