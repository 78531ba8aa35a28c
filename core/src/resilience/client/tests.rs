//! The client in virtual time, against scripted workers.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::member::{Member, Tags};
use crate::resilience::backoff::{Backoff, Jitter};
use crate::resilience::breaker::{BreakerConfig, BreakerWindow};
use crate::resilience::budget::BudgetConfig;
use crate::resilience::hedge::HedgeConfig;
use crate::resilience::registry::Selection;
use crate::resilience::shedding::ThrottleConfig;
use crate::testkit::addr;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// How a scripted worker answers an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// Answers after this long.
    Answer(Duration),
    /// Fails with this error after this long.
    Fail(AttemptError, Duration),
    /// Never answers.
    Silent,
}

use Behaviour::{Answer, Fail, Silent};

/// A driver in virtual time: answers each Send as its worker's behaviour says, drops the
/// answer of a cancelled attempt, and jumps to the next answer or timer.
struct Harness {
    now: Instant,
    client: Client,
    behaviour: BTreeMap<NodeId, Behaviour>,
    /// Answers on their way: (when, call, attempt, outcome).
    pending: Vec<(Instant, CallId, AttemptId, Result<Duration, AttemptError>)>,
    log: Vec<(Instant, Action)>,
}

fn member(id: u64, state: MemberState) -> Member {
    Member { id: NodeId(id), addr: addr(id as usize), incarnation: 0, state, tags: Tags::new() }
}

impl Harness {
    fn new(policy: Policy, workers: &[(u64, Behaviour)]) -> Self {
        let now = Instant::from_secs(1);
        let mut client = Client::new(policy, 5, now).expect("a valid policy");
        for &(id, _) in workers {
            client.handle_event(now, &Event::MemberJoined(member(id, MemberState::Alive)));
        }
        let behaviour = workers.iter().map(|&(id, b)| (NodeId(id), b)).collect();
        Self { now, client, behaviour, pending: Vec::new(), log: Vec::new() }
    }

    fn call(&mut self, deadline: Duration) -> CallId {
        let seq = self.client.metrics().calls;
        let id = self.client.start_call(self.now, RequestId::new(1, seq), Deadline::after(self.now, deadline));
        self.drain();
        id
    }

    fn drain(&mut self) {
        while let Some(action) = self.client.poll_action() {
            if let Action::Send { call, worker, .. } = &action {
                if let Some(c) = self.client.calls.get(call) {
                    let at_worker = c.attempts.iter().filter(|a| a.is_outstanding() && a.worker == *worker).count();
                    assert_eq!(at_worker, 1, "two attempts of {call:?} outstanding at {worker}");
                }
            }
            match &action {
                Action::Send { call, attempt, worker, .. } => match self.behaviour[worker] {
                    Answer(after) => self.pending.push((self.now + after, *call, *attempt, Ok(after))),
                    Fail(error, after) => self.pending.push((self.now + after, *call, *attempt, Err(error))),
                    Silent => {}
                },
                Action::Cancel { call, attempt, .. } => self.pending.retain(|p| (p.1, p.2) != (*call, *attempt)),
                _ => {}
            }
            self.log.push((self.now, action));
        }
    }

    /// Runs until nothing is due before `until`.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..100_000 {
            let answer = self.pending.iter().map(|p| p.0).min();
            let Some(next) = [answer, self.client.poll_timeout()].into_iter().flatten().min() else { break };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if let Some(i) = self.pending.iter().position(|p| p.0 <= self.now) {
                let (_, call, attempt, outcome) = self.pending.remove(i);
                self.client.handle_response(self.now, call, attempt, outcome);
            } else {
                self.client.handle_timeout(self.now);
            }
            self.drain();
        }
        self.now = self.now.max(until);
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// The sends of `call`: (when, worker, kind).
    fn sends(&self, call: CallId) -> Vec<(Instant, NodeId, AttemptKind)> {
        self.log
            .iter()
            .filter_map(|(at, a)| match a {
                Action::Send { call: c, worker, kind, .. } if *c == call => Some((*at, *worker, *kind)),
                _ => None,
            })
            .collect()
    }

    fn cancels(&self, call: CallId) -> Vec<(Instant, AttemptId)> {
        self.log
            .iter()
            .filter_map(|(at, a)| match a {
                Action::Cancel { call: c, attempt, .. } if *c == call => Some((*at, *attempt)),
                _ => None,
            })
            .collect()
    }

    /// How `call` ended: its Complete or Fail, with when.
    fn ends(&self, call: CallId) -> Vec<(Instant, Action)> {
        self.log
            .iter()
            .filter(|(_, a)| matches!(a, Action::Complete { call: c, .. } | Action::Fail { call: c, .. } if *c == call))
            .cloned()
            .collect()
    }

    fn end(&self, call: CallId) -> (Instant, Action) {
        let ends = self.ends(call);
        assert_eq!(ends.len(), 1, "call {call:?} ended {} times: {ends:?}", ends.len());
        ends.into_iter().next().expect("one end")
    }

    fn failure(&self, call: CallId) -> (CallError, u32, Option<AttemptError>) {
        match self.end(call).1 {
            Action::Fail { error, attempts, last, .. } => (error, attempts, last),
            other => panic!("call {call:?} did not fail: {other:?}"),
        }
    }

    fn completed_by(&self, call: CallId) -> (NodeId, u32) {
        match self.end(call).1 {
            Action::Complete { worker, attempts, .. } => (worker, attempts),
            other => panic!("call {call:?} did not complete: {other:?}"),
        }
    }

    fn transitions(&self) -> Vec<(NodeId, BreakerState)> {
        self.log
            .iter()
            .filter_map(|(_, a)| match a {
                Action::BreakerChanged { worker, transition } => Some((*worker, transition.to)),
                _ => None,
            })
            .collect()
    }
}

/// Three attempts with the default backoff and nothing else.
fn retrying() -> Policy {
    let mut policy = Policy::bare();
    policy.retry.max_attempts = 3;
    policy.selection = Selection::RoundRobin;
    policy
}

#[test]
fn a_call_that_is_answered_completes_with_its_attempt() {
    let mut h = Harness::new(retrying(), &[(1, Answer(MS(3))), (2, Answer(MS(3)))]);
    let start = h.now;
    let call = h.call(MS(100));
    match &h.log[0].1 {
        Action::Send { call: c, attempt, kind, worker, addr: to, request, budget } => {
            assert_eq!((*c, *attempt, *kind, *worker), (call, AttemptId(0), AttemptKind::First, NodeId(1)));
            assert_eq!((*to, *request), (addr(1), RequestId::new(1, 0)));
            assert_eq!(*budget, MS(95), "the deadline less the 5 ms hop allowance");
        }
        other => panic!("expected a send, got {other:?}"),
    }
    assert_eq!(h.client.in_flight(), 1);
    assert_eq!(h.client.registry().worker(NodeId(1)).map(|w| w.outstanding()), Some(1));
    h.run_for(MS(50));
    assert_eq!(
        h.end(call),
        (start + MS(3), Action::Complete { call, attempt: AttemptId(0), worker: NodeId(1), attempts: 1 })
    );
    assert_eq!(h.client.in_flight(), 0);
    assert_eq!(h.client.registry().worker(NodeId(1)).map(|w| w.outstanding()), Some(0));
    assert_eq!(h.client.poll_timeout(), None, "nothing left to wake up for");
    let m = h.client.metrics();
    assert_eq!((m.calls, m.completed, m.attempts, m.retries, m.hedges, m.cancelled), (1, 1, 1, 0, 0, 0));
    assert_eq!(m.failed.total(), 0);
}

#[test]
fn a_failed_attempt_is_retried_after_its_backoff_on_an_untried_worker() {
    let mut h = Harness::new(retrying(), &[(1, Fail(AttemptError::Unreachable, MS(2))), (2, Answer(MS(3)))]);
    let start = h.now;
    let call = h.call(MS(500));
    h.run_for(MS(500));
    let sends = h.sends(call);
    assert_eq!(sends.len(), 2);
    assert_eq!((sends[0].1, sends[0].2), (NodeId(1), AttemptKind::First));
    assert_eq!((sends[1].1, sends[1].2), (NodeId(2), AttemptKind::Retry));
    // The failure came at 2 ms; full jitter under a 20 ms ceiling.
    let waited = sends[1].0 - (start + MS(2));
    assert!(waited <= MS(20), "{waited:?}");
    assert_eq!(h.completed_by(call), (NodeId(2), 2));
    assert!(h.cancels(call).is_empty());
    let m = h.client.metrics();
    assert_eq!((m.attempts, m.retries, m.completed), (2, 1, 1));
}

#[test]
fn backoff_grows_between_retries_and_a_single_worker_is_retried_again() {
    let mut policy = retrying();
    policy.retry.max_attempts = 4;
    policy.retry.backoff = Backoff::new(MS(10), MS(1000), Jitter::None);
    let mut h = Harness::new(policy, &[(1, Fail(AttemptError::Failed, MS(1)))]);
    let start = h.now;
    let call = h.call(MS(1000));
    h.run_for(MS(1000));
    let times: Vec<Duration> = h.sends(call).iter().map(|s| s.0 - start).collect();
    // Fails 1 ms after each send; waits 10, 20, 40 ms.
    assert_eq!(times, [MS(0), MS(11), MS(32), MS(73)]);
    assert!(h.sends(call).iter().all(|s| s.1 == NodeId(1)), "the only worker, tried again");
    assert_eq!(h.failure(call), (CallError::AttemptsExhausted, 4, Some(AttemptError::Failed)));
    assert_eq!(h.end(call).0, start + MS(74));
    assert_eq!(h.client.metrics().failed.get(CallError::AttemptsExhausted), 1);
}

#[test]
fn decorrelated_jitter_grows_from_the_previous_delay() {
    let mut policy = retrying();
    policy.retry.max_attempts = 6;
    policy.retry.backoff = Backoff::new(MS(10), MS(10_000), Jitter::Decorrelated);
    let mut h = Harness::new(policy, &[(1, Fail(AttemptError::Failed, MS(0)))]);
    let call = h.call(MS(60_000));
    h.run_for(MS(60_000));
    let sends = h.sends(call);
    assert_eq!(sends.len(), 6);
    let mut previous = MS(10);
    for pair in sends.windows(2) {
        let delay = pair[1].0 - pair[0].0;
        assert!(delay >= MS(10) && delay <= previous * 3, "{delay:?} after {previous:?}");
        previous = delay;
    }
}

#[test]
fn the_budget_stops_retries_when_spent() {
    let mut policy = retrying();
    policy.budget = Some(BudgetConfig { ratio: 0.0, min_per_sec: 1, ttl: Duration::from_secs(2) });
    let mut h = Harness::new(
        policy,
        &[(1, Fail(AttemptError::Unreachable, MS(1))), (2, Fail(AttemptError::Unreachable, MS(1)))],
    );
    // A reserve of 2 retries: the first call makes both, the second none.
    let first = h.call(MS(500));
    h.run_for(MS(500));
    assert_eq!(h.failure(first), (CallError::AttemptsExhausted, 3, Some(AttemptError::Unreachable)));
    let second = h.call(MS(500));
    let sent = h.now;
    h.run_for(MS(500));
    assert_eq!(h.failure(second), (CallError::BudgetExhausted, 1, Some(AttemptError::Unreachable)));
    assert_eq!(h.end(second).0, sent + MS(1), "fails as soon as its attempt fails");
    let m = h.client.metrics();
    assert_eq!((m.retries, m.budget_refused), (2, 1));
    assert_eq!(h.client.budget().map(|b| b.available(h.now)), Some(0));
    // Two seconds on, the reserve is back.
    h.run_for(Duration::from_secs(2));
    let third = h.call(MS(500));
    h.run_for(MS(500));
    assert_eq!(h.failure(third).0, CallError::AttemptsExhausted);
}

#[test]
fn retry_amplification_in_a_full_outage_stays_within_the_budget() {
    // Every worker down, 3 attempts a call: without a budget 3 attempts per call, with the
    // default budget (10 % + 1/s over 10 s) at most 1.1 per call plus the reserve.
    for (budget, most) in [(None, 3.0), (Some(BudgetConfig::default()), 1.1 + 10.0 / 1000.0)] {
        let mut policy = retrying();
        policy.budget = budget.clone();
        let workers: Vec<(u64, Behaviour)> = (1..=5).map(|id| (id, Fail(AttemptError::Unreachable, MS(1)))).collect();
        let mut h = Harness::new(policy, &workers);
        for _ in 0..1000 {
            h.call(MS(1000));
            h.run_for(MS(5));
        }
        h.run_for(Duration::from_secs(2));
        let m = *h.client.metrics();
        assert_eq!(m.failed.total(), 1000);
        let amplification = m.attempts as f64 / m.calls as f64;
        assert!(amplification <= most, "{budget:?}: {amplification}");
        if budget.is_none() {
            assert_eq!(m.attempts, 3000);
        } else {
            assert!(amplification >= 1.09, "the budget is used: {amplification}");
        }
    }
}

#[test]
fn a_fatal_answer_fails_the_call_at_once_and_counts_for_the_worker() {
    let mut policy = retrying();
    policy.breaker =
        Some(BreakerConfig { window: BreakerWindow::Count(2), minimum_calls: 2, ..BreakerConfig::default() });
    let mut h = Harness::new(policy, &[(1, Fail(AttemptError::Fatal, MS(1)))]);
    for _ in 0..3 {
        let call = h.call(MS(100));
        h.run_for(MS(100));
        assert_eq!(h.failure(call), (CallError::Rejected, 1, Some(AttemptError::Fatal)));
    }
    assert_eq!(h.client.breaker_state(h.now, NodeId(1)), Some(BreakerState::Closed), "the worker is healthy");
    assert_eq!(h.client.metrics().failed.get(CallError::Rejected), 3);
}

#[test]
fn a_worker_that_never_answers_fails_the_call_at_its_deadline() {
    let mut policy = retrying();
    policy.breaker =
        Some(BreakerConfig { window: BreakerWindow::Count(2), minimum_calls: 2, ..BreakerConfig::default() });
    let mut h = Harness::new(policy, &[(1, Silent)]);
    let start = h.now;
    let call = h.call(MS(200));
    h.run_for(MS(500));
    assert_eq!(h.failure(call), (CallError::DeadlineExceeded, 1, Some(AttemptError::Timeout)));
    assert_eq!(h.end(call).0, start + MS(200));
    assert_eq!(h.cancels(call), [(start + MS(200), AttemptId(0))]);
    // The timeout counted against the worker: a second one opens its breaker.
    let second = h.call(MS(200));
    h.run_for(MS(500));
    assert_eq!(h.failure(second).0, CallError::DeadlineExceeded);
    assert_eq!(h.client.breaker_state(h.now, NodeId(1)), Some(BreakerState::Open));
    let third = h.call(MS(200));
    assert_eq!(h.failure(third), (CallError::CircuitOpen, 0, None));
    let m = h.client.metrics();
    assert_eq!((m.cancelled, m.breakers_opened), (2, 1));
    assert_eq!(h.transitions(), [(NodeId(1), BreakerState::Open)]);
}

#[test]
fn a_retry_that_would_come_after_the_deadline_is_not_waited_for() {
    let mut policy = retrying();
    policy.retry.backoff = Backoff::new(MS(100), MS(100), Jitter::None);
    let mut h = Harness::new(policy, &[(1, Fail(AttemptError::Failed, MS(10))), (2, Answer(MS(1)))]);
    // Fails at 10 ms; at 110 ms a 150 ms deadline leaves 40 ms, 35 ms after the hop: it goes.
    let call = h.call(MS(150));
    h.run_for(MS(200));
    assert_eq!(h.completed_by(call), (NodeId(2), 2));
    // With 114 ms: at 110 ms only 4 ms would be left, less than the hop allowance.
    let late = h.call(MS(114));
    let sent = h.now;
    h.run_for(MS(200));
    assert_eq!(h.failure(late), (CallError::DeadlineExceeded, 1, Some(AttemptError::Failed)));
    assert_eq!(h.end(late).0, sent + MS(10), "fails when the attempt fails, not at the deadline");
}

#[test]
fn a_call_whose_deadline_leaves_no_time_is_not_sent() {
    let mut h = Harness::new(retrying(), &[(1, Answer(MS(1)))]);
    for deadline in [Duration::ZERO, MS(5)] {
        let call = h.call(deadline);
        assert_eq!(h.failure(call), (CallError::DeadlineExceeded, 0, None), "{deadline:?}");
        assert!(h.sends(call).is_empty());
    }
    let call = h.call(MS(6));
    assert_eq!(h.sends(call).len(), 1);
}

#[test]
fn an_attempt_timeout_fails_over_from_a_silent_worker() {
    let mut policy = retrying();
    policy.retry.attempt_timeout = Some(MS(50));
    policy.retry.backoff = Backoff::new(MS(10), MS(10), Jitter::None);
    let mut h = Harness::new(policy, &[(1, Silent), (2, Answer(MS(5)))]);
    let start = h.now;
    let call = h.call(MS(1000));
    h.run_for(MS(1000));
    assert_eq!(h.cancels(call), [(start + MS(50), AttemptId(0))]);
    let sends = h.sends(call);
    assert_eq!(sends[1], (start + MS(60), NodeId(2), AttemptKind::Retry));
    assert_eq!(h.completed_by(call), (NodeId(2), 2));
    assert_eq!(h.end(call).0, start + MS(65));
    assert_eq!(h.client.metrics().cancelled, 1);
}

#[test]
fn no_worker_and_all_breakers_open_are_told_apart() {
    let mut h = Harness::new(retrying(), &[]);
    let call = h.call(MS(100));
    assert_eq!(h.failure(call), (CallError::NoWorker, 0, None));
    assert_eq!(h.client.metrics().failed.get(CallError::NoWorker), 1);

    let mut policy = retrying();
    policy.breaker =
        Some(BreakerConfig { window: BreakerWindow::Count(1), minimum_calls: 1, ..BreakerConfig::default() });
    let mut h = Harness::new(
        policy,
        &[(1, Fail(AttemptError::Unreachable, MS(1))), (2, Fail(AttemptError::Unreachable, MS(1)))],
    );
    let first = h.call(MS(500));
    h.run_for(MS(500));
    // Each failure opened a breaker; the third attempt finds none closed.
    assert_eq!(h.failure(first), (CallError::CircuitOpen, 2, Some(AttemptError::Unreachable)));
    assert_eq!(h.transitions(), [(NodeId(1), BreakerState::Open), (NodeId(2), BreakerState::Open)]);
    let second = h.call(MS(500));
    assert_eq!(h.failure(second), (CallError::CircuitOpen, 0, None));
    // Five seconds on, the breakers let probes through.
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.client.breaker_state(h.now, NodeId(1)), Some(BreakerState::HalfOpen));
    assert_eq!(h.client.metrics().breakers_half_opened, 2);
    assert_eq!(h.client.breaker_state(h.now, NodeId(9)), None);
}

#[test]
fn breakers_steer_calls_away_from_a_dead_worker_and_back_when_it_recovers() {
    let mut policy = retrying();
    policy.breaker = Some(BreakerConfig::default());
    let mut h =
        Harness::new(policy, &[(1, Answer(MS(2))), (2, Fail(AttemptError::Unreachable, MS(2))), (3, Answer(MS(2)))]);
    let mut calls = Vec::new();
    for _ in 0..60 {
        calls.push(h.call(MS(500)));
        h.run_for(MS(20));
    }
    h.run_for(MS(500));
    // Round-robin sends a third of first attempts to 2 until its breaker opens after 10 failures.
    let to_dead = h.log.iter().filter(|(_, a)| matches!(a, Action::Send { worker: NodeId(2), .. })).count();
    assert_eq!(to_dead, 10);
    assert!(calls.iter().all(|c| matches!(h.end(*c).1, Action::Complete { .. })), "every call failed over");
    assert_eq!(h.client.breaker_state(h.now, NodeId(2)), Some(BreakerState::Open));
    // It recovers: after the open wait, probes close its breaker.
    h.behaviour.insert(NodeId(2), Answer(MS(2)));
    h.run_for(Duration::from_secs(5));
    for _ in 0..30 {
        let call = h.call(MS(500));
        h.run_for(MS(20));
        assert!(matches!(h.end(call).1, Action::Complete { .. }));
    }
    assert_eq!(h.client.breaker_state(h.now, NodeId(2)), Some(BreakerState::Closed));
    let m = h.client.metrics();
    assert_eq!((m.breakers_opened, m.breakers_half_opened, m.breakers_closed), (1, 1, 1));
}

/// A policy that hedges after the median of 10 latencies, with a generous budget.
fn hedging() -> Policy {
    let mut policy = retrying();
    policy.hedging =
        Some(HedgeConfig { quantile: 0.5, min_samples: 10, window: Duration::from_secs(60), max_hedges: 1 });
    policy.budget = Some(BudgetConfig { ratio: 1.0, min_per_sec: 0, ttl: Duration::from_secs(60) });
    policy
}

#[test]
fn hedging_starts_once_enough_latencies_are_known_and_the_faster_answer_wins() {
    let mut h = Harness::new(hedging(), &[(1, Answer(MS(10))), (2, Answer(MS(10))), (3, Answer(MS(10)))]);
    for _ in 0..10 {
        let call = h.call(MS(1000));
        h.run_for(MS(50));
        assert_eq!(h.sends(call).len(), 1, "no hedge before 10 latencies");
    }
    // Worker 2 turns slow; round-robin (1, 2, 3, 1, ...) sends the next call to it.
    h.behaviour.insert(NodeId(2), Answer(MS(200)));
    let call = h.call(MS(1000));
    let start = h.now;
    h.run_for(MS(300));
    let sends = h.sends(call);
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].1, NodeId(2));
    assert_eq!((sends[1].1, sends[1].2), (NodeId(3), AttemptKind::Hedge));
    // The median is 10 ms (within 1 %): the hedge goes then.
    let after = sends[1].0 - start;
    assert!(after >= MS(10) && after <= Duration::from_micros(10_100), "{after:?}");
    assert_eq!(h.cancels(call), [(sends[1].0 + MS(10), AttemptId(0))], "the slow attempt is cancelled");
    assert_eq!(h.end(call).1, Action::Complete { call, attempt: AttemptId(1), worker: NodeId(3), attempts: 2 });
    // The next call goes to a fast worker, which answers before any hedge.
    let call = h.call(MS(1000));
    h.run_for(MS(300));
    assert_eq!(h.sends(call).len(), 1);
    assert_eq!(h.completed_by(call), (NodeId(1), 1));
    let m = h.client.metrics();
    assert_eq!((m.hedges, m.hedge_wins), (1, 1));
}

#[test]
fn hedging_learns_the_slow_answers_it_cuts_short_and_keeps_to_its_quantile() {
    // Ten workers answering in 1 to 9 ms and 100 ms, chosen at random: a quarter of the
    // first attempts take longer than 8 ms, the 75th percentile.
    let mut policy = hedging();
    policy.selection = Selection::Random;
    policy.hedging =
        Some(HedgeConfig { quantile: 0.75, min_samples: 100, window: Duration::from_secs(600), max_hedges: 1 });
    let workers: Vec<(u64, Behaviour)> =
        (1..=10).map(|id| (id, Answer(if id == 10 { MS(100) } else { MS(id) }))).collect();
    let mut h = Harness::new(policy, &workers);
    let mut hedged = 0;
    for n in 0..2000 {
        let call = h.call(MS(1000));
        h.run_for(MS(200));
        if n >= 500 && h.sends(call).len() == 2 {
            hedged += 1;
        }
    }
    // About 20 %: the calls to the 9 ms and 100 ms workers (hedged at 8 ms, the quantile of
    // what the first attempts took). Were only the winners' own latencies learned, the
    // hedges' fast answers would replace the slow ones, the quantile fall, and hedges
    // spread to most calls.
    assert!((250..350).contains(&hedged), "{hedged} of 1500 calls hedged");
}

#[test]
fn a_hedge_needs_budget_and_an_untried_worker() {
    let mut policy = hedging();
    policy.budget = Some(BudgetConfig { ratio: 0.0, min_per_sec: 0, ttl: Duration::from_secs(60) });
    let mut h = Harness::new(policy, &[(1, Answer(MS(10))), (2, Answer(MS(10)))]);
    for _ in 0..10 {
        h.call(MS(1000));
        h.run_for(MS(50));
    }
    h.behaviour.insert(NodeId(1), Answer(MS(100)));
    h.behaviour.insert(NodeId(2), Answer(MS(100)));
    let call = h.call(MS(1000));
    h.run_for(MS(300));
    assert_eq!(h.sends(call).len(), 1, "no budget: no hedge");
    assert_eq!(h.client.metrics().budget_refused, 1);
    assert!(matches!(h.end(call).1, Action::Complete { .. }));

    // One worker and budget to spare: nobody untried to hedge to.
    let mut h = Harness::new(hedging(), &[(1, Answer(MS(10)))]);
    for _ in 0..10 {
        h.call(MS(1000));
        h.run_for(MS(50));
    }
    h.behaviour.insert(NodeId(1), Answer(MS(100)));
    let call = h.call(MS(1000));
    h.run_for(MS(300));
    assert_eq!(h.sends(call).len(), 1);
    assert!(matches!(h.end(call).1, Action::Complete { .. }));
    assert_eq!(h.client.metrics().hedges, 0);
}

#[test]
fn a_call_is_hedged_at_most_max_hedges_times() {
    let mut policy = hedging();
    policy.retry.max_attempts = 5;
    let workers: Vec<(u64, Behaviour)> = (1..=5).map(|id| (id, Answer(MS(10)))).collect();
    let mut h = Harness::new(policy, &workers);
    for _ in 0..10 {
        h.call(MS(1000));
        h.run_for(MS(50));
    }
    let before = h.client.metrics().attempts;
    assert_eq!(before, 10, "one attempt a call so far");
    // Every worker turns slow: the call is hedged once, at 10 ms, and never again.
    for id in 1..=5 {
        h.behaviour.insert(NodeId(id), Answer(MS(200)));
    }
    let call = h.call(MS(1000));
    h.run_for(MS(500));
    let kinds: Vec<AttemptKind> = h.sends(call).iter().map(|s| s.2).collect();
    assert_eq!(kinds, [AttemptKind::First, AttemptKind::Hedge]);
    assert!(matches!(h.end(call).1, Action::Complete { attempts: 2, .. }));
    let m = h.client.metrics();
    assert_eq!((m.attempts, m.hedges), (before + 2, 1));
}

#[test]
fn a_failed_attempt_waits_for_its_hedge_and_hedges_stop_at_the_attempt_limit() {
    let mut policy = hedging();
    policy.retry.max_attempts = 2;
    policy.hedging.as_mut().expect("on").max_hedges = 3;
    let mut h = Harness::new(policy, &[(1, Answer(MS(10))), (2, Answer(MS(10))), (3, Answer(MS(10)))]);
    for _ in 0..10 {
        h.call(MS(1000));
        h.run_for(MS(50));
    }
    // Every worker now fails after 30 ms: the first attempt and one hedge, then no retry.
    for id in 1..=3 {
        h.behaviour.insert(NodeId(id), Fail(AttemptError::Failed, MS(30)));
    }
    let call = h.call(MS(1000));
    let start = h.now;
    h.run_for(MS(300));
    let sends = h.sends(call);
    assert_eq!(sends.iter().map(|s| s.2).collect::<Vec<_>>(), [AttemptKind::First, AttemptKind::Hedge]);
    // The first fails at 30 ms while the hedge runs; the hedge fails at 40 ms and ends it.
    assert_eq!(h.failure(call), (CallError::AttemptsExhausted, 2, Some(AttemptError::Failed)));
    assert!(h.end(call).0 >= start + MS(40) && h.end(call).0 <= start + MS(41));
}

#[test]
fn a_new_client_never_throttles_calls_to_healthy_workers_while_they_are_in_flight() {
    let mut policy = retrying();
    policy.retry.max_attempts = 1;
    policy.throttle = Some(ThrottleConfig::default());
    let mut h = Harness::new(policy, &[(1, Answer(MS(50))), (2, Answer(MS(50)))]);
    // 50 calls at one instant, before any answer: each is sent.
    let calls: Vec<CallId> = (0..50).map(|_| h.call(MS(500))).collect();
    h.run_for(MS(100));
    for call in calls {
        assert_eq!(h.completed_by(call).1, 1, "{call:?}");
    }
    assert_eq!(h.client.metrics().throttled, 0);
}

#[test]
fn adaptive_throttling_rejects_locally_when_workers_shed_everything() {
    let mut policy = retrying();
    policy.retry.max_attempts = 1;
    policy.throttle = Some(ThrottleConfig::default());
    let mut h = Harness::new(policy, &[(1, Fail(AttemptError::Overloaded, MS(1)))]);
    let mut throttled = 0;
    for _ in 0..200 {
        let call = h.call(MS(100));
        h.run_for(MS(10));
        match h.failure(call).0 {
            CallError::Throttled => throttled += 1,
            CallError::AttemptsExhausted => {}
            other => panic!("{other:?}"),
        }
    }
    let m = h.client.metrics();
    assert_eq!(m.throttled, throttled);
    assert_eq!(m.shed + m.throttled, 200);
    assert_eq!(m.attempts, m.shed);
    // p = (n - 0) / (n + 1) climbs fast with no acceptance: most of 200 are rejected.
    assert!(throttled > 150, "{throttled} throttled");
    // A worker that answers (even with its own error) counts as accepting.
    h.behaviour.insert(NodeId(1), Fail(AttemptError::Failed, MS(1)));
    h.run_for(Duration::from_secs(120));
    for _ in 0..100 {
        let call = h.call(MS(100));
        h.run_for(MS(10));
        assert_eq!(h.failure(call).0, CallError::AttemptsExhausted);
    }
}

#[test]
fn an_attempt_to_a_member_declared_failed_fails_over_at_once() {
    let mut h = Harness::new(retrying(), &[(1, Silent), (2, Answer(MS(5)))]);
    let start = h.now;
    let call = h.call(MS(1000));
    h.run_for(MS(100));
    h.client.handle_event(h.now, &Event::MemberSuspected(member(1, MemberState::Suspect)));
    h.drain();
    assert!(h.cancels(call).is_empty(), "a suspect may still answer");
    h.client.handle_event(h.now, &Event::MemberFailed(member(1, MemberState::Failed)));
    h.drain();
    assert_eq!(h.cancels(call), [(start + MS(100), AttemptId(0))]);
    assert_eq!(h.client.metrics().cancelled, 1);
    h.run_for(MS(100));
    assert_eq!(h.completed_by(call), (NodeId(2), 2));
}

#[test]
fn a_member_declared_failed_cancels_only_the_attempts_made_to_it() {
    let mut h = Harness::new(retrying(), &[(1, Silent), (2, Silent), (3, Answer(MS(5)))]);
    let calls = [h.call(MS(1000)), h.call(MS(1000))];
    h.run_for(MS(10));
    let to: Vec<NodeId> = calls.iter().map(|c| h.sends(*c)[0].1).collect();
    assert_eq!(to, [NodeId(1), NodeId(2)], "round-robin");
    h.client.handle_event(h.now, &Event::MemberFailed(member(1, MemberState::Failed)));
    h.drain();
    assert_eq!(h.cancels(calls[0]).len(), 1);
    assert!(h.cancels(calls[1]).is_empty(), "its attempt to n2 runs on");
    assert_eq!(h.sends(calls[1]).len(), 1);
    assert_eq!(h.client.metrics().cancelled, 1);
}

#[test]
fn an_attempt_to_a_member_that_left_fails_over_at_once() {
    let mut h = Harness::new(retrying(), &[(1, Silent), (2, Answer(MS(5)))]);
    let call = h.call(MS(1000));
    h.run_for(MS(10));
    h.client.handle_event(h.now, &Event::MemberLeft(member(1, MemberState::Left)));
    h.drain();
    h.run_for(MS(100));
    assert_eq!(h.cancels(call).len(), 1);
    assert_eq!(h.completed_by(call), (NodeId(2), 2));
}

#[test]
fn sync_membership_follows_a_real_cluster_and_fails_over_from_a_crashed_worker() {
    use crate::output::Command;
    use crate::testkit::Cluster;
    use crate::Config;

    let mut cluster = Cluster::new(4, Config::lan(), 21);
    for i in 1..4 {
        cluster.command(i, Command::SetTags(Tags::from([("role".to_string(), "worker".to_string())])));
    }
    cluster.run_for(Duration::from_secs(10));
    let mut policy = retrying();
    policy.workers = crate::resilience::registry::TagFilter::any().has("role");
    let mut h = Harness::new(policy, &[]);
    h.now = cluster.now;
    h.client.sync_membership(h.now, cluster.node(0));
    h.behaviour = (1..4).map(|id| (NodeId(id), Answer(MS(5)))).collect();
    assert_eq!(h.client.registry().usable(h.now), 3);
    // Worker 1 crashes with a call outstanding to it.
    h.behaviour.insert(NodeId(1), Silent);
    let call = h.call(Duration::from_secs(60));
    assert_eq!(h.sends(call)[0].1, NodeId(1));
    cluster.crash(1);
    cluster.run_for(Duration::from_secs(30));
    h.run_until(cluster.now);
    assert!(h.ends(call).is_empty(), "still waiting");
    h.client.sync_membership(h.now, cluster.node(0));
    h.drain();
    h.run_for(MS(100));
    let (worker, attempts) = h.completed_by(call);
    assert!(worker != NodeId(1) && attempts == 2);
    assert_eq!(h.client.registry().usable(h.now), 2);
}

#[test]
fn sync_members_takes_a_copy_of_the_views_and_skips_the_minority() {
    use crate::partition::{Decision, Side};

    let mut h = Harness::new(retrying(), &[(1, Silent)]);
    h.behaviour = (1..=3).map(|id| (NodeId(id), Answer(MS(5)))).collect();
    h.behaviour.insert(NodeId(1), Silent);
    let call = h.call(Duration::from_secs(60));
    assert_eq!(h.sends(call)[0].1, NodeId(1));
    // A copy of a view in which 1 failed and 2 and 3 joined: the attempt to 1 fails at
    // once and the call fails over.
    let members = [member(1, MemberState::Failed), member(2, MemberState::Alive), member(3, MemberState::Alive)];
    h.client.sync_members(h.now, &members, None);
    h.drain();
    h.run_for(MS(100));
    assert_ne!(h.completed_by(call).0, NodeId(1));
    assert_eq!(h.client.registry().usable(h.now), 2);
    // The partition decided puts 3 in the minority: only 2 is usable.
    let decision =
        Decision { majority: vec![NodeId(1), NodeId(2)], minority: vec![NodeId(3)], local_side: Side::Majority };
    h.client.sync_members(h.now, &members, Some(&decision));
    assert_eq!(h.client.registry().usable(h.now), 1);
    assert!(h.client.registry().is_in_minority(NodeId(3)));
    // A member gone from the copy is no longer a worker.
    h.client.sync_members(h.now, &members[1..2], None);
    assert!(h.client.registry().worker(NodeId(3)).is_none());
    assert_eq!(h.client.registry().usable(h.now), 1);
}

#[test]
fn the_metrics_of_several_clients_add_up() {
    let mut one = Harness::new(retrying(), &[(1, Answer(MS(5))), (2, Fail(AttemptError::Failed, MS(1)))]);
    for _ in 0..4 {
        one.call(MS(1000));
        one.run_for(MS(50));
    }
    let mut other = Harness::new(retrying(), &[(1, Fail(AttemptError::Overloaded, MS(1)))]);
    other.call(MS(1000));
    other.run_for(MS(1000));
    let (a, b) = (*one.client.metrics(), *other.client.metrics());
    let mut sum = a;
    sum += &b;
    assert_eq!(
        (sum.calls, sum.completed, sum.attempts, sum.retries),
        (5, 4, a.attempts + b.attempts, a.retries + b.retries)
    );
    assert_eq!(sum.shed, a.shed + b.shed);
    assert!(b.shed > 0 && a.retries > 0);
    assert_eq!(sum.failed.total(), 1);
    assert_eq!(sum.failed.get(CallError::AttemptsExhausted), 1);
    // Every field is added: a sum with itself doubles each one.
    let mut twice = a;
    twice += &a;
    let fields = |m: &ClientMetrics| {
        [
            m.calls,
            m.completed,
            m.failed.total(),
            m.abandoned,
            m.attempts,
            m.retries,
            m.hedges,
            m.hedge_wins,
            m.cancelled,
            m.throttled,
            m.shed,
            m.budget_refused,
            m.breakers_opened,
            m.breakers_half_opened,
            m.breakers_closed,
        ]
    };
    let doubled: Vec<u64> = fields(&a).iter().map(|n| 2 * n).collect();
    assert_eq!(fields(&twice).to_vec(), doubled);
    // And with every field set, each to its own value: the sum is field by field.
    let numbered = |first: u64| {
        let mut m = ClientMetrics::default();
        for (i, field) in [
            &mut m.calls,
            &mut m.completed,
            &mut m.abandoned,
            &mut m.attempts,
            &mut m.retries,
            &mut m.hedges,
            &mut m.hedge_wins,
            &mut m.cancelled,
            &mut m.throttled,
            &mut m.shed,
            &mut m.budget_refused,
            &mut m.breakers_opened,
            &mut m.breakers_half_opened,
            &mut m.breakers_closed,
        ]
        .into_iter()
        .enumerate()
        {
            *field = first + 7 * i as u64;
        }
        m
    };
    let (x, y) = (numbered(3), numbered(40));
    let mut sum = x;
    sum += &y;
    let expected: Vec<u64> = fields(&x).iter().zip(fields(&y)).map(|(a, b)| a + b).collect();
    assert_eq!(fields(&sum).to_vec(), expected);
}

#[test]
fn a_cancelled_call_ends_without_an_answer_and_late_reports_change_nothing() {
    let mut h = Harness::new(retrying(), &[(1, Answer(MS(50)))]);
    let call = h.call(MS(1000));
    h.run_for(MS(10));
    assert!(h.client.cancel_call(h.now, call));
    h.drain();
    assert!(!h.client.cancel_call(h.now, call), "already over");
    assert_eq!(h.cancels(call).len(), 1);
    h.run_for(MS(100));
    assert!(h.ends(call).is_empty());
    // The answer of the cancelled attempt arrives anyway.
    h.client.handle_response(h.now, call, AttemptId(0), Ok(MS(50)));
    assert_eq!(h.client.poll_action(), None);
    let m = *h.client.metrics();
    assert_eq!((m.calls, m.abandoned, m.completed, m.cancelled), (1, 1, 0, 1));
    assert_eq!(h.client.in_flight(), 0);
    assert_eq!(h.client.registry().worker(NodeId(1)).map(|w| w.outstanding()), Some(0));
    // Reports about calls and attempts that never were change nothing either.
    let other = h.call(MS(1000));
    h.client.handle_response(h.now, CallId(99), AttemptId(0), Err(AttemptError::Failed));
    h.client.handle_response(h.now, other, AttemptId(7), Err(AttemptError::Failed));
    assert_eq!(h.client.poll_action(), None);
    h.run_for(MS(100));
    assert_eq!(h.completed_by(other), (NodeId(1), 1));
    // Nor does a second answer to an attempt that already answered.
    h.client.handle_response(h.now, other, AttemptId(0), Err(AttemptError::Failed));
    assert_eq!(h.client.poll_action(), None);
}

#[test]
fn extra_timeouts_are_harmless() {
    let mut h = Harness::new(retrying(), &[(1, Answer(MS(30)))]);
    let call = h.call(MS(1000));
    for ms in [0, 1, 1, 10, 29] {
        h.client.handle_timeout(h.now + MS(ms));
        assert_eq!(h.client.poll_action(), None, "at {ms} ms");
    }
    h.run_for(MS(100));
    assert_eq!(h.completed_by(call), (NodeId(1), 1));
}

#[test]
fn each_mechanism_switched_off_is_off() {
    // The bare policy: one attempt, no breaker, no throttle: a dead worker fails every call
    // once, and keeps being tried.
    let mut h = Harness::new(Policy::bare(), &[(1, Fail(AttemptError::Overloaded, MS(1)))]);
    for _ in 0..100 {
        let call = h.call(MS(100));
        h.run_for(MS(5));
        assert_eq!(h.failure(call), (CallError::AttemptsExhausted, 1, Some(AttemptError::Overloaded)));
    }
    let m = h.client.metrics();
    assert_eq!((m.attempts, m.throttled, m.breakers_opened), (100, 0, 0));
    assert!(h.client.budget().is_none());
    assert_eq!(h.client.policy(), &Policy::bare());
}

#[test]
fn the_same_seed_gives_the_same_actions() {
    let run = |seed: u64| {
        let mut policy = Policy::default();
        policy.hedging.as_mut().expect("on").min_samples = 5;
        let workers: Vec<(u64, Behaviour)> =
            vec![(1, Answer(MS(3))), (2, Fail(AttemptError::Unreachable, MS(1))), (3, Answer(MS(40))), (4, Silent)];
        let mut h = Harness::new(policy, &workers);
        h.client = Client::new(h.client.policy().clone(), seed, h.now).expect("valid");
        for &(id, _) in &workers {
            h.client.handle_event(h.now, &Event::MemberJoined(member(id, MemberState::Alive)));
        }
        for _ in 0..200 {
            h.call(MS(300));
            h.run_for(MS(7));
        }
        h.run_for(Duration::from_secs(1));
        h.log
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

#[test]
fn a_bad_policy_builds_no_client() {
    let mut policy = Policy::default();
    policy.retry.max_attempts = 0;
    assert_eq!(
        Client::new(policy, 1, Instant::ZERO).map(|_| ()),
        Err(PolicyError::OutOfRange {
            field: "retry.max_attempts",
            value: "0".to_string(),
            expected: "between 1 and 64"
        })
    );
    let error: crate::Error = PolicyError::Zero { field: "budget.ttl" }.into();
    assert_eq!(error.to_string(), "resilience policy: `budget.ttl` is zero; it must be positive");
}

#[test]
fn errors_say_what_happened() {
    let golden = [
        (CallError::NoWorker, "no worker to call"),
        (CallError::CircuitOpen, "circuit breaker is open"),
        (CallError::Throttled, "throttled locally"),
        (CallError::BudgetExhausted, "retry budget is spent"),
        (CallError::AttemptsExhausted, "every attempt failed"),
        (CallError::DeadlineExceeded, "deadline exceeded"),
        (CallError::Rejected, "rejected by the worker"),
    ];
    for (error, text) in golden {
        assert!(error.to_string().contains(text), "{error}");
    }
    let accepted: Vec<bool> = [
        AttemptError::Timeout,
        AttemptError::Unreachable,
        AttemptError::Overloaded,
        AttemptError::Failed,
        AttemptError::Fatal,
    ]
    .iter()
    .map(|e| e.is_accepted())
    .collect();
    assert_eq!(accepted, [false, false, false, true, true]);
    let mut counts = FailureCounts::default();
    for (i, reason) in CallError::ALL.into_iter().enumerate() {
        for _ in 0..=i {
            counts.add(reason);
        }
    }
    assert_eq!(CallError::ALL.map(|r| counts.get(r)), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(counts.total(), 28);
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    let error = prop_oneof![
        Just(AttemptError::Timeout),
        Just(AttemptError::Unreachable),
        Just(AttemptError::Overloaded),
        Just(AttemptError::Failed),
        Just(AttemptError::Fatal),
    ];
    prop_oneof![
        (0u64..200).prop_map(|ms| Answer(MS(ms))),
        (error, 0u64..50).prop_map(|(e, ms)| Fail(e, MS(ms))),
        Just(Silent),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the workers do, and with every mechanism on: every call ends exactly once,
    /// makes at most `max_attempts` attempts, never has two attempts outstanding at the
    /// same worker, and sends nothing after it ended; the metrics add up, retries and hedges
    /// stay within the budget, and no timer is left behind.
    #[test]
    fn every_call_ends_exactly_once_within_its_limits(
        workers in proptest::collection::vec(behaviour(), 0..5),
        changes in proptest::collection::vec((0usize..5, behaviour()), 0..4),
        attempt_timeout in proptest::option::of(1u64..300),
        max_attempts in 2u32..5,
        seed: u64,
    ) {
        let mut policy = Policy::default();
        policy.retry.max_attempts = max_attempts;
        policy.retry.attempt_timeout = attempt_timeout.map(MS);
        policy.hedging.as_mut().expect("on").min_samples = 3;
        let breaker = policy.breaker.as_mut().expect("on");
        breaker.minimum_calls = 3;
        breaker.open_wait = MS(200);
        let budget = policy.budget.clone().expect("on");
        let workers: Vec<(u64, Behaviour)> = workers.into_iter().enumerate().map(|(i, b)| (i as u64 + 1, b)).collect();
        let mut h = Harness::new(policy.clone(), &workers);
        h.client = Client::new(policy, seed, h.now).expect("valid");
        for &(id, _) in &workers {
            h.client.handle_event(h.now, &Event::MemberJoined(member(id, MemberState::Alive)));
        }
        let mut calls = Vec::new();
        for round in 0..4 {
            if let Some(&(i, b)) = changes.get(round) {
                if let Some(&(id, _)) = workers.get(i) {
                    h.behaviour.insert(NodeId(id), b);
                }
            }
            for _ in 0..15 {
                calls.push(h.call(MS(400)));
                h.run_for(MS(20));
            }
        }
        h.run_for(Duration::from_secs(5));
        prop_assert_eq!(h.client.in_flight(), 0);
        prop_assert!(h.client.timers.is_empty());
        for call in &calls {
            let ends = h.ends(*call);
            prop_assert_eq!(ends.len(), 1, "call {:?}", call);
            let ended_at = ends[0].0;
            let sends = h.sends(*call);
            prop_assert!(sends.len() <= max_attempts as usize);
            prop_assert!(sends.iter().all(|s| s.0 <= ended_at));
            let (Action::Complete { attempts, .. } | Action::Fail { attempts, .. }) = ends[0].1 else {
                unreachable!("ends are Complete or Fail")
            };
            prop_assert_eq!(attempts as usize, sends.len());
        }
        // (The harness checks at every send that no other attempt of the call is outstanding
        // at the same worker.)
        let m = *h.client.metrics();
        prop_assert_eq!(m.calls, calls.len() as u64);
        prop_assert_eq!(m.completed + m.failed.total() + m.abandoned, m.calls);
        prop_assert_eq!(m.attempts, h.log.iter().filter(|(_, a)| matches!(a, Action::Send { .. })).count() as u64);
        prop_assert_eq!(m.cancelled, h.log.iter().filter(|(_, a)| matches!(a, Action::Cancel { .. })).count() as u64);
        prop_assert!(m.hedge_wins <= m.hedges);
        // 60 calls within 1.6 s: one budget window.
        prop_assert!((m.retries + m.hedges) as f64 <= budget.ratio * m.calls as f64 + budget.minimum());
        prop_assert_eq!(m.attempts, m.calls - unsent(&h) + m.retries + m.hedges);
    }
}

/// Calls that ended without any attempt sent.
fn unsent(h: &Harness) -> u64 {
    h.log
        .iter()
        .filter(|(_, a)| matches!(a, Action::Complete { attempts: 0, .. } | Action::Fail { attempts: 0, .. }))
        .count() as u64
}
