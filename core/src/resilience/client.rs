//! [`Client`]: the sans-IO state machine that drives each call's attempts through every
//! policy. See the [module documentation](crate::resilience) for the driver loop.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use smallvec::SmallVec;

use crate::error::PolicyError;
use crate::member::{Member, MemberState, NodeId};
use crate::node::Node;
use crate::output::Event;
use crate::partition::Decision;
use crate::resilience::breaker::{BreakerState, Transition};
use crate::resilience::budget::RetryBudget;
use crate::resilience::deadline::Deadline;
use crate::resilience::hedge::Hedging;
use crate::resilience::idempotency::RequestId;
use crate::resilience::policy::Policy;
use crate::resilience::registry::{Outcome, Ticket, Unavailable, WorkerRegistry};
use crate::resilience::shedding::AdaptiveThrottle;
use crate::time::Instant;

/// A call's handle, unique within its [`Client`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

/// One attempt of a call: 0 is the first, then each retry and hedge in the order sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttemptId(pub u32);

/// Why an attempt was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptKind {
    /// The call's first attempt.
    First,
    /// After an attempt failed (and the backoff).
    Retry,
    /// Beside an attempt still outstanding after the hedging quantile.
    Hedge,
}

/// How an attempt failed, as the driver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttemptError {
    /// No answer in time (the driver's own timeout, a connection that went silent).
    #[error("no answer in time")]
    Timeout,
    /// The worker could not be reached (refused, reset, no route).
    #[error("worker unreachable")]
    Unreachable,
    /// The worker refused the request unserved because it is overloaded (its concurrency
    /// limit shed it). Safe to retry elsewhere.
    #[error("worker overloaded")]
    Overloaded,
    /// The worker answered with an error that another attempt may not meet.
    #[error("worker failed")]
    Failed,
    /// The worker answered that the request itself is wrong: no attempt can succeed. The
    /// call fails at once, and the worker counts as healthy.
    #[error("request rejected")]
    Fatal,
}

impl AttemptError {
    /// Whether the worker took the request in (adaptive throttling's "accept"): it
    /// answered, even with an error of its own.
    pub fn is_accepted(self) -> bool {
        matches!(self, Self::Failed | Self::Fatal)
    }
}

/// Why a call failed. Every call the client starts ends in exactly one
/// [`Action::Complete`] or [`Action::Fail`] (or in [`Client::cancel_call`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No worker is alive, matches the filter and is on a running side of a partition.
    #[error("no worker to call: none is alive, matches the filter and is on a running side")]
    NoWorker,
    /// There are workers, but every one's circuit breaker refuses calls.
    #[error("every worker's circuit breaker is open")]
    CircuitOpen,
    /// Adaptive throttling rejected the attempt locally: the workers have been refusing
    /// most requests.
    #[error("throttled locally: the workers have been refusing most requests")]
    Throttled,
    /// An attempt failed and the retry budget allows no retry now.
    #[error("the retry budget is spent")]
    BudgetExhausted,
    /// Every attempt allowed was made and failed.
    #[error("every attempt failed")]
    AttemptsExhausted,
    /// The deadline passed (or would have before an answer could come).
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// A worker answered that the request is wrong ([`AttemptError::Fatal`]).
    #[error("rejected by the worker")]
    Rejected,
}

impl CallError {
    /// Every reason, in [`FailureCounts`]' order.
    pub const ALL: [Self; 7] = [
        Self::NoWorker,
        Self::CircuitOpen,
        Self::Throttled,
        Self::BudgetExhausted,
        Self::AttemptsExhausted,
        Self::DeadlineExceeded,
        Self::Rejected,
    ];

    const fn index(self) -> usize {
        self as usize
    }
}

/// Failed calls, per reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureCounts([u64; CallError::ALL.len()]);

impl FailureCounts {
    /// Calls failed for `reason`.
    pub fn get(&self, reason: CallError) -> u64 {
        self.0[reason.index()]
    }

    /// Calls failed in all.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn add(&mut self, reason: CallError) {
        self.0[reason.index()] += 1;
    }
}

impl core::ops::AddAssign<&Self> for FailureCounts {
    fn add_assign(&mut self, other: &Self) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

/// What a client has done, since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientMetrics {
    /// Calls started.
    pub calls: u64,
    /// Calls completed (an attempt answered).
    pub completed: u64,
    /// Calls failed, per reason.
    pub failed: FailureCounts,
    /// Calls cancelled by their caller.
    pub abandoned: u64,
    /// Attempts sent (first attempts, retries and hedges).
    pub attempts: u64,
    /// Retries sent.
    pub retries: u64,
    /// Hedges sent.
    pub hedges: u64,
    /// Calls whose answer came from a hedge.
    pub hedge_wins: u64,
    /// Attempts cancelled: losers of a hedge, attempts timed out or to a member declared
    /// failed, and those outstanding when their call ended.
    pub cancelled: u64,
    /// Attempts rejected locally by adaptive throttling.
    pub throttled: u64,
    /// Attempts a worker shed ([`AttemptError::Overloaded`]).
    pub shed: u64,
    /// Retries and hedges the budget refused.
    pub budget_refused: u64,
    /// Breakers that opened.
    pub breakers_opened: u64,
    /// Breakers that turned half-open.
    pub breakers_half_opened: u64,
    /// Breakers that closed.
    pub breakers_closed: u64,
}

impl core::ops::AddAssign<&Self> for ClientMetrics {
    /// Adds another client's counts: the figures of several clients (a runtime's service
    /// clients, a simulation's client members) summed.
    fn add_assign(&mut self, other: &Self) {
        let Self {
            calls,
            completed,
            failed,
            abandoned,
            attempts,
            retries,
            hedges,
            hedge_wins,
            cancelled,
            throttled,
            shed,
            budget_refused,
            breakers_opened,
            breakers_half_opened,
            breakers_closed,
        } = other;
        self.calls += calls;
        self.completed += completed;
        self.failed += failed;
        self.abandoned += abandoned;
        self.attempts += attempts;
        self.retries += retries;
        self.hedges += hedges;
        self.hedge_wins += hedge_wins;
        self.cancelled += cancelled;
        self.throttled += throttled;
        self.shed += shed;
        self.budget_refused += budget_refused;
        self.breakers_opened += breakers_opened;
        self.breakers_half_opened += breakers_half_opened;
        self.breakers_closed += breakers_closed;
    }
}

/// What the driver must do, drained in order with [`Client::poll_action`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "actions must be acted on: a dropped Send loses an attempt, a dropped Complete or Fail a call's end"]
pub enum Action {
    /// Send the call's request to `worker` as attempt `attempt`, with `budget` as its
    /// deadline on the wire; report how it went with [`Client::handle_response`].
    Send {
        /// The call.
        call: CallId,
        /// The attempt.
        attempt: AttemptId,
        /// Why it is made.
        kind: AttemptKind,
        /// The worker.
        worker: NodeId,
        /// Where the worker listens (as membership knows it).
        addr: SocketAddr,
        /// The request's identity, the same for every attempt: the worker's idempotency
        /// window runs it once.
        request: RequestId,
        /// The time the worker has (the deadline's remainder less the hop allowance).
        budget: Duration,
    },
    /// Stop waiting for this attempt (abort it if possible): its answer no longer counts.
    Cancel {
        /// The call.
        call: CallId,
        /// The attempt.
        attempt: AttemptId,
        /// The worker it went to.
        worker: NodeId,
    },
    /// The call succeeded: the answer is the one attempt `attempt` brought.
    Complete {
        /// The call.
        call: CallId,
        /// The attempt whose answer is the call's.
        attempt: AttemptId,
        /// The worker that answered.
        worker: NodeId,
        /// Attempts the call made.
        attempts: u32,
    },
    /// The call failed.
    Fail {
        /// The call.
        call: CallId,
        /// Why.
        error: CallError,
        /// Attempts it made.
        attempts: u32,
        /// How the last attempt that ended failed, if one did.
        last: Option<AttemptError>,
    },
    /// A worker's circuit breaker changed state (for metrics and timelines; nothing to do).
    BreakerChanged {
        /// The worker.
        worker: NodeId,
        /// The change.
        transition: Transition,
    },
}

#[derive(Debug)]
struct Attempt {
    worker: NodeId,
    kind: AttemptKind,
    sent: Instant,
    /// When the client stops waiting for it (`attempt_timeout`).
    timeout_at: Option<Instant>,
    /// The registry's ticket while it is outstanding; `None` once it ended.
    ticket: Option<Ticket>,
}

impl Attempt {
    fn is_outstanding(&self) -> bool {
        self.ticket.is_some()
    }
}

#[derive(Debug)]
struct Call {
    request: RequestId,
    deadline: Deadline,
    attempts: SmallVec<[Attempt; 3]>,
    /// When the next retry is due, while one waits out its backoff.
    retry_at: Option<Instant>,
    /// When the next hedge is due, while an attempt is outstanding.
    hedge_at: Option<Instant>,
    /// The backoff drawn before the latest retry (decorrelated jitter grows from it).
    backoff: Duration,
    retries: u32,
    hedges: u32,
    last_error: Option<AttemptError>,
    /// Its entry in the client's timer index.
    wakeup: Option<Instant>,
}

impl Call {
    fn next_wakeup(&self) -> Instant {
        let timeouts = self.attempts.iter().filter(|a| a.is_outstanding()).filter_map(|a| a.timeout_at);
        [self.retry_at, self.hedge_at].into_iter().flatten().chain(timeouts).fold(self.deadline.instant(), Instant::min)
    }

    fn has_outstanding(&self) -> bool {
        self.attempts.iter().any(Attempt::is_outstanding)
    }
}

/// A service's client: every call's attempts, through the worker registry, one circuit
/// breaker per worker, the retry budget, hedging and adaptive throttling.
///
/// Inputs are [`Client::start_call`], [`Client::handle_response`],
/// [`Client::handle_event`] (or [`Client::sync_membership`]), [`Client::cancel_call`] and
/// [`Client::handle_timeout`]; after each, drain [`Client::poll_action`] in order and sleep
/// until [`Client::poll_timeout`]. Calling `handle_timeout` early or twice is harmless.
#[derive(Debug)]
pub struct Client {
    policy: Policy,
    rng: ChaCha8Rng,
    registry: WorkerRegistry,
    budget: Option<RetryBudget>,
    hedging: Option<Hedging>,
    throttle: Option<AdaptiveThrottle>,
    calls: BTreeMap<CallId, Call>,
    /// (wakeup, call) for every call: the earliest is the next timeout.
    timers: BTreeSet<(Instant, CallId)>,
    actions: VecDeque<Action>,
    next_call: u64,
    metrics: ClientMetrics,
}

impl Client {
    /// A client with `policy` that knows no worker yet, its randomness drawn from `seed`;
    /// an error if the policy is impossible.
    pub fn new(policy: Policy, seed: u64, now: Instant) -> Result<Self, PolicyError> {
        policy.validate()?;
        Ok(Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            registry: WorkerRegistry::new(policy.workers.clone(), policy.breaker.clone()),
            budget: policy.budget.clone().map(RetryBudget::new),
            hedging: policy.hedging.clone().map(|config| Hedging::new(config, now)),
            throttle: policy.throttle.clone().map(AdaptiveThrottle::new),
            policy,
            calls: BTreeMap::new(),
            timers: BTreeSet::new(),
            actions: VecDeque::new(),
            next_call: 0,
            metrics: ClientMetrics::default(),
        })
    }

    // ----- views -------------------------------------------------------------------

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The workers, their load and their breakers.
    pub fn registry(&self) -> &WorkerRegistry {
        &self.registry
    }

    /// The state of `worker`'s breaker at `now`, if it is a worker and breakers are on.
    pub fn breaker_state(&self, now: Instant, worker: NodeId) -> Option<BreakerState> {
        self.registry.breaker_state(now, worker)
    }

    /// The retry budget, if on.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// What the client has done so far.
    pub fn metrics(&self) -> &ClientMetrics {
        &self.metrics
    }

    /// Calls started and not yet ended.
    pub fn in_flight(&self) -> usize {
        self.calls.len()
    }

    // ----- inputs ------------------------------------------------------------------

    /// Starts a call for `request`, to be answered by `deadline`. Its first attempt (or its
    /// failure) is among the actions.
    pub fn start_call(&mut self, now: Instant, request: RequestId, deadline: Deadline) -> CallId {
        let id = CallId(self.next_call);
        self.next_call += 1;
        self.metrics.calls += 1;
        if let Some(budget) = &mut self.budget {
            budget.record_request(now);
        }
        let call = Call {
            request,
            deadline,
            attempts: SmallVec::new(),
            retry_at: None,
            hedge_at: None,
            backoff: Duration::ZERO,
            retries: 0,
            hedges: 0,
            last_error: None,
            wakeup: None,
        };
        self.calls.insert(id, call);
        self.send(now, id, AttemptKind::First);
        self.settle(id);
        self.drain_transitions();
        id
    }

    /// How attempt `attempt` of call `call` went: answered after `latency` (`Ok`), or
    /// failed. A report about an attempt that is no longer outstanding (cancelled, timed
    /// out, its call over) changes nothing.
    pub fn handle_response(
        &mut self,
        now: Instant,
        call: CallId,
        attempt: AttemptId,
        outcome: Result<Duration, AttemptError>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else { return };
        let Some(a) = c.attempts.get_mut(attempt.0 as usize) else { return };
        let Some(ticket) = a.ticket.take() else { return };
        let (sent, kind) = (a.sent, a.kind);
        // A hedge that answered stands, in the latencies hedging learns from, for the
        // attempt it hedged, which had been waiting since it was sent and is now cancelled
        // unanswered. The hedge's own latency alone would leave out exactly the slow
        // answers hedging cuts short: the quantile would fall, and ever more calls be hedged.
        let waited = match kind {
            AttemptKind::Hedge => c.attempts.iter().rev().find(|h| h.kind != AttemptKind::Hedge).map(|h| sent - h.sent),
            AttemptKind::First | AttemptKind::Retry => None,
        };
        match outcome {
            Ok(latency) => {
                self.registry.end_call(now, ticket, Outcome::Success { latency });
                if let Some(throttle) = &mut self.throttle {
                    throttle.record_accept(now);
                }
                if let Some(hedging) = &mut self.hedging {
                    hedging.record(now, latency + waited.unwrap_or_default());
                }
                self.complete(now, call, attempt);
            }
            Err(error) => self.attempt_failed(now, call, ticket, error, now - sent),
        }
        self.settle(call);
        self.drain_transitions();
    }

    /// The caller gave up on `call`: its outstanding attempts are cancelled, and no
    /// Complete or Fail will come. `false` if it had already ended.
    pub fn cancel_call(&mut self, now: Instant, call: CallId) -> bool {
        let Some(c) = self.remove(call) else { return false };
        self.cancel_outstanding(now, call, c, None);
        self.metrics.abandoned += 1;
        self.drain_transitions();
        true
    }

    /// A membership event from the member this client runs beside. Attempts outstanding
    /// to a worker declared failed, or that left, fail at once (and are retried).
    pub fn handle_event(&mut self, now: Instant, event: &Event) {
        if let Some(gone) = self.registry.handle_event(event) {
            self.fail_attempts_to(now, |worker| worker == gone);
        }
        self.drain_transitions();
    }

    /// Rebuilds the workers from `node`'s views (instead of, or besides, its events).
    /// Attempts outstanding to a worker no longer there, or failed, fail at once.
    pub fn sync_membership(&mut self, now: Instant, node: &Node) {
        self.sync_members(now, node.members(), node.partition());
    }

    /// Rebuilds the workers from a copy of a node's views, for a driver that does not hold
    /// the node itself: its members (itself among them) and the partition it decided, if
    /// any. Attempts outstanding to a worker no longer there, or failed, fail at once.
    pub fn sync_members<'a>(
        &mut self,
        now: Instant,
        members: impl IntoIterator<Item = &'a Member>,
        partition: Option<&Decision>,
    ) {
        self.registry.sync_members(members, partition);
        let registry = &self.registry;
        let gone: SmallVec<[NodeId; 4]> = self
            .calls
            .values()
            .flat_map(|c| c.attempts.iter().filter(|a| a.is_outstanding()).map(|a| a.worker))
            .filter(|w| registry.worker(*w).is_none_or(|w| w.state() == MemberState::Failed))
            .collect();
        self.fail_attempts_to(now, |worker| gone.contains(&worker));
        self.drain_transitions();
    }

    /// Acts on what is due at `now`: deadlines, attempt timeouts, retries after their
    /// backoff, hedges, breakers turning half-open or reopening.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.registry.handle_timeout(now);
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, id));
            if let Some(call) = self.calls.get_mut(&id) {
                call.wakeup = None;
            }
            self.on_timer(now, id);
            self.settle(id);
        }
        self.drain_transitions();
    }

    // ----- outputs -----------------------------------------------------------------

    /// The next action, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Client::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.timers.first().map(|(at, _)| *at);
        [calls, self.registry.poll_timeout()].into_iter().flatten().min()
    }

    // ----- the calls ---------------------------------------------------------------

    /// Makes an attempt of `kind` at call `id`, if every policy lets it. A first attempt
    /// or a retry that cannot be made fails the call; a hedge that cannot is not made.
    fn send(&mut self, now: Instant, id: CallId, kind: AttemptKind) {
        let hedge = kind == AttemptKind::Hedge;
        let Some(call) = self.calls.get(&id) else { return };
        let Some(budget) = call.deadline.for_next_hop(now, self.policy.hop_allowance) else {
            if !hedge {
                self.fail(now, id, CallError::DeadlineExceeded);
            }
            return;
        };
        if call.attempts.len() >= self.policy.retry.max_attempts as usize {
            if !hedge {
                self.fail(now, id, CallError::AttemptsExhausted);
            }
            return;
        }
        let tried: SmallVec<[NodeId; 4]> = call.attempts.iter().map(|a| a.worker).collect();
        let selection = self.policy.selection;
        let mut chosen = self.registry.select(now, selection, &mut self.rng, &tried);
        if chosen == Err(Unavailable::AllAvoided) && !hedge {
            // Every usable worker was tried: a retry may go to one again (but not to one
            // still serving this call).
            let outstanding: SmallVec<[NodeId; 4]> =
                call.attempts.iter().filter(|a| a.is_outstanding()).map(|a| a.worker).collect();
            chosen = self.registry.select(now, selection, &mut self.rng, &outstanding);
        }
        let worker = match chosen {
            Ok(worker) => worker,
            Err(why) => {
                if !hedge {
                    let error =
                        if why == Unavailable::CircuitOpen { CallError::CircuitOpen } else { CallError::NoWorker };
                    self.fail(now, id, error);
                }
                return;
            }
        };
        if kind != AttemptKind::First && self.budget.as_ref().is_some_and(|b| !b.can_retry(now)) {
            self.metrics.budget_refused += 1;
            if !hedge {
                self.fail(now, id, CallError::BudgetExhausted);
            }
            return;
        }
        if let Some(throttle) = &mut self.throttle {
            // Attempts under way have no outcome yet: the throttle counts them neither way.
            let in_flight = self.registry.workers().map(|w| u64::from(w.outstanding())).sum();
            if !throttle.try_send_with(now, in_flight, &mut self.rng) {
                self.metrics.throttled += 1;
                if !hedge {
                    self.fail(now, id, CallError::Throttled);
                }
                return;
            }
        }
        if kind != AttemptKind::First {
            if let Some(budget) = &mut self.budget {
                let spent = budget.try_retry(now);
                debug_assert!(spent, "the budget allowed it at this same instant");
            }
        }
        // `select` found the worker usable at `now`, and its breaker admits at `now`.
        let Some(addr) = self.registry.worker(worker).map(|w| w.addr()) else { return };
        let Some(ticket) = self.registry.start_call(now, worker) else {
            if !hedge {
                self.fail(now, id, CallError::CircuitOpen);
            }
            return;
        };
        let max_attempts = self.policy.retry.max_attempts as usize;
        let hedge_delay = self.hedging.as_mut().and_then(|h| h.delay(now).map(|d| (d, h.config().max_hedges)));
        let Some(call) = self.calls.get_mut(&id) else { return };
        let attempt = AttemptId(call.attempts.len() as u32);
        call.attempts.push(Attempt {
            worker,
            kind,
            sent: now,
            timeout_at: self.policy.retry.attempt_timeout.map(|t| now + t),
            ticket: Some(ticket),
        });
        self.metrics.attempts += 1;
        match kind {
            AttemptKind::First => {}
            AttemptKind::Retry => {
                call.retries += 1;
                self.metrics.retries += 1;
            }
            AttemptKind::Hedge => {
                call.hedges += 1;
                self.metrics.hedges += 1;
            }
        }
        call.hedge_at = match hedge_delay {
            Some((delay, max_hedges)) if call.hedges < max_hedges && call.attempts.len() < max_attempts => {
                Some(now + delay)
            }
            _ => None,
        };
        let request = call.request;
        self.actions.push_back(Action::Send { call: id, attempt, kind, worker, addr, request, budget });
    }

    /// An outstanding attempt failed with `error` after `latency`.
    fn attempt_failed(&mut self, now: Instant, id: CallId, ticket: Ticket, error: AttemptError, latency: Duration) {
        // A request the worker judged wrong says nothing against the worker.
        let outcome =
            if error == AttemptError::Fatal { Outcome::Success { latency } } else { Outcome::Failure { latency } };
        self.registry.end_call(now, ticket, outcome);
        if error.is_accepted() {
            if let Some(throttle) = &mut self.throttle {
                throttle.record_accept(now);
            }
        }
        if error == AttemptError::Overloaded {
            self.metrics.shed += 1;
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.last_error = Some(error);
        if error == AttemptError::Fatal {
            self.fail(now, id, CallError::Rejected);
            return;
        }
        if call.has_outstanding() {
            // A hedge (or the attempt it hedged) may still answer.
            return;
        }
        if call.attempts.len() >= self.policy.retry.max_attempts as usize {
            self.fail(now, id, CallError::AttemptsExhausted);
            return;
        }
        if self.budget.as_ref().is_some_and(|b| !b.can_retry(now)) {
            self.metrics.budget_refused += 1;
            self.fail(now, id, CallError::BudgetExhausted);
            return;
        }
        let delay = self.policy.retry.backoff.delay(call.retries, call.backoff, &mut self.rng);
        if call.deadline.for_next_hop(now + delay, self.policy.hop_allowance).is_none() {
            self.fail(now, id, CallError::DeadlineExceeded);
            return;
        }
        call.backoff = delay;
        call.retry_at = Some(now + delay);
        call.hedge_at = None;
    }

    /// What is due for call `id` at `now`.
    fn on_timer(&mut self, now: Instant, id: CallId) {
        let Some(call) = self.calls.get(&id) else { return };
        if call.deadline.is_expired(now) {
            self.fail(now, id, CallError::DeadlineExceeded);
            return;
        }
        let timed_out: SmallVec<[AttemptId; 4]> = call
            .attempts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_outstanding() && a.timeout_at.is_some_and(|at| at <= now))
            .map(|(i, _)| AttemptId(i as u32))
            .collect();
        for attempt in timed_out {
            let Some(a) = self.calls.get_mut(&id).and_then(|c| c.attempts.get_mut(attempt.0 as usize)) else { return };
            let Some(ticket) = a.ticket.take() else { continue };
            let (worker, sent) = (a.worker, a.sent);
            self.actions.push_back(Action::Cancel { call: id, attempt, worker });
            self.metrics.cancelled += 1;
            self.attempt_failed(now, id, ticket, AttemptError::Timeout, now - sent);
        }
        if let Some(call) = self.calls.get_mut(&id) {
            if call.retry_at.is_some_and(|at| at <= now) {
                call.retry_at = None;
                self.send(now, id, AttemptKind::Retry);
            }
        }
        if let Some(call) = self.calls.get_mut(&id) {
            if call.hedge_at.is_some_and(|at| at <= now) {
                call.hedge_at = None;
                self.send(now, id, AttemptKind::Hedge);
            }
        }
    }

    /// Fails every outstanding attempt to a worker `gone` says is gone, as unreachable.
    fn fail_attempts_to(&mut self, now: Instant, gone: impl Fn(NodeId) -> bool) {
        let lost: Vec<(CallId, AttemptId)> = self
            .calls
            .iter()
            .flat_map(|(id, c)| {
                c.attempts
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.is_outstanding() && gone(a.worker))
                    .map(move |(i, _)| (*id, AttemptId(i as u32)))
            })
            .collect();
        for (id, attempt) in lost {
            let Some(a) = self.calls.get_mut(&id).and_then(|c| c.attempts.get_mut(attempt.0 as usize)) else {
                continue;
            };
            let Some(ticket) = a.ticket.take() else { continue };
            let (worker, sent) = (a.worker, a.sent);
            self.actions.push_back(Action::Cancel { call: id, attempt, worker });
            self.metrics.cancelled += 1;
            self.attempt_failed(now, id, ticket, AttemptError::Unreachable, now - sent);
            self.settle(id);
        }
    }

    /// Ends call `id` with the answer of `winner`; the other outstanding attempts are
    /// cancelled.
    fn complete(&mut self, now: Instant, id: CallId, winner: AttemptId) {
        let Some(call) = self.remove(id) else { return };
        let won = &call.attempts[winner.0 as usize];
        let (worker, kind) = (won.worker, won.kind);
        let attempts = call.attempts.len() as u32;
        self.cancel_outstanding(now, id, call, None);
        self.metrics.completed += 1;
        if kind == AttemptKind::Hedge {
            self.metrics.hedge_wins += 1;
        }
        self.actions.push_back(Action::Complete { call: id, attempt: winner, worker, attempts });
    }

    /// Ends call `id` with `error`. At the deadline, attempts still outstanding count as
    /// timeouts against their workers; otherwise they are only cancelled.
    fn fail(&mut self, now: Instant, id: CallId, error: CallError) {
        let Some(mut call) = self.remove(id) else { return };
        let timed_out = error == CallError::DeadlineExceeded && call.has_outstanding();
        if timed_out {
            call.last_error = Some(AttemptError::Timeout);
        }
        let (attempts, last) = (call.attempts.len() as u32, call.last_error);
        self.cancel_outstanding(now, id, call, timed_out.then_some(AttemptError::Timeout));
        self.metrics.failed.add(error);
        trace_event!(debug, call = id.0, ?error, attempts, "call failed");
        self.actions.push_back(Action::Fail { call: id, error, attempts, last });
    }

    /// Cancels a finished call's outstanding attempts, counting them against their
    /// workers as `failure` if given.
    fn cancel_outstanding(&mut self, now: Instant, id: CallId, call: Call, failure: Option<AttemptError>) {
        for (i, attempt) in call.attempts.into_iter().enumerate() {
            let Some(ticket) = attempt.ticket else { continue };
            let outcome = match failure {
                Some(_) => Outcome::Failure { latency: now - attempt.sent },
                None => Outcome::Cancelled,
            };
            self.registry.end_call(now, ticket, outcome);
            self.metrics.cancelled += 1;
            self.actions.push_back(Action::Cancel { call: id, attempt: AttemptId(i as u32), worker: attempt.worker });
        }
    }

    /// Takes call `id` out of the calls and the timer index.
    fn remove(&mut self, id: CallId) -> Option<Call> {
        let call = self.calls.remove(&id)?;
        if let Some(at) = call.wakeup {
            self.timers.remove(&(at, id));
        }
        Some(call)
    }

    /// Files call `id` (if it is still running) in the timer index at its next wakeup.
    fn settle(&mut self, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let next = call.next_wakeup();
        if call.wakeup == Some(next) {
            return;
        }
        if let Some(old) = call.wakeup.replace(next) {
            self.timers.remove(&(old, id));
        }
        self.timers.insert((next, id));
    }

    /// Passes the breakers' changes on, as actions and in the metrics.
    fn drain_transitions(&mut self) {
        while let Some((worker, transition)) = self.registry.poll_transition() {
            match transition.to {
                BreakerState::Open => self.metrics.breakers_opened += 1,
                BreakerState::HalfOpen => self.metrics.breakers_half_opened += 1,
                BreakerState::Closed => self.metrics.breakers_closed += 1,
            }
            self.actions.push_back(Action::BreakerChanged { worker, transition });
        }
    }
}

#[cfg(test)]
mod tests;
