//! The worker registry: the members that can serve a call, as membership sees them, and
//! which of them to call next.
//!
//! A worker is a member whose tags match the registry's [`TagFilter`]. It is fed by the
//! member's own [`Event`]s ([`WorkerRegistry::handle_event`]) or rebuilt from a [`Node`]'s
//! views ([`WorkerRegistry::sync`]); both give the same registry. A worker is *usable* when
//! it is alive (not suspect, failed or gone), not on the minority side of a decided
//! partition (that side is read-only), and its circuit breaker lets a call through.
//!
//! [`Selection`] picks among the usable workers: round-robin, uniformly at random, the
//! least outstanding (ties at random), or the better of two drawn at random (the "power of
//! two choices", nearly as good as the least outstanding without herding every client onto
//! the same worker). A caller passes the workers to avoid (those a call already tried), so
//! that a retry fails over to an untried worker.

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
    #[default]
    PowerOfTwoChoices,
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
                let first = rng.random_range(0..candidates);
                let second = if candidates > 1 {
                    let other = rng.random_range(0..candidates - 1);
                    if other >= first {
                        other + 1
                    } else {
                        other
                    }
                } else {
                    first
                };
                let (a, b) = (nth(first), nth(second));
                let load = |id: Option<NodeId>| id.map_or(u32::MAX, |id| self.workers[&id].outstanding);
                if load(b) < load(a) {
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
        Some(Ticket { worker: id, permit })
    }

    /// The call of `ticket` ended at `now`, with `outcome` for the worker's breaker.
    pub fn end_call(&mut self, now: Instant, ticket: Ticket, outcome: Outcome) {
        let Ticket { worker: id, permit } = ticket;
        let Some(worker) = self.workers.get_mut(&id) else { return };
        worker.outstanding = worker.outstanding.saturating_sub(1);
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
            breaker: breaker.clone().map(CircuitBreaker::new),
        });
        worker.member.clone_from(member);
        (member.state == MemberState::Failed).then_some(member.id)
    }
}
