//! Checkers of a service workload (see [`crate::workload`]): what a caller, a worker and
//! the load on the workers are promised.
//!
//! - [`CallsEnd`]: every call ends exactly once, completed, failed with its reason, or
//!   abandoned with its caller, and by its deadline plus a stated slack.
//! - [`NoDuplicateExecution`]: no worker runs a request twice while its idempotency window
//!   covers the request.
//! - [`AttemptsWithinBudget`]: no call makes more attempts than the policy allows, and the
//!   retries and hedges of each client stay within what its retry budget allows.
//!
//! Each reads only [`WorkloadEvent`]s and faults, so each is tested here with synthetic
//! ones, and in the simulator with planted defects (`net-sim/tests/workload.rs`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use conclave_core::resilience::{BudgetConfig, IdempotencyConfig, Policy};
use conclave_core::{Instant, NodeId};

use super::{Checker, ClusterSnapshot, Finding};
use crate::fault::Fault;
use crate::workload::WorkloadEvent;

/// A call: its client and its number there.
type CallKey = (NodeId, u64);

/// Every call the clients start ends exactly once, by its deadline plus a slack: it
/// completes, or fails and its caller is told why, or its client's own process stops
/// under it (the caller goes with it). None is lost, none ends twice.
///
/// The slack is 1 ms plus 1 % of the deadline: the client ends a call at its deadline on
/// its own clock, and the slack covers the rounding and a clock drift up to 1 %. A call
/// whose client is paused has its due time moved by the pause; a call whose client is
/// slowed (a backlog before every input) or whose clock steps, or drifts by more than 1 %,
/// is judged for ending once but not for ending in time. Calls still under way when the
/// run ends, their due time past it, are not judged; a run in which no call could be
/// judged is reported so ([`Checker::not_judged`]).
#[derive(Debug, Default)]
pub struct CallsEnd {
    open: BTreeMap<CallKey, Option<Instant>>,
    /// (due, call) of every open call judged on time.
    dues: BTreeSet<(Instant, CallKey)>,
    /// Calls that ended, and whether they were reported late before they did.
    ended: BTreeMap<CallKey, bool>,
    /// Clients whose calls are not judged on time from now on.
    untimed: BTreeSet<NodeId>,
    started: u64,
    judged: u64,
    unjudged_at_end: usize,
}

impl CallsEnd {
    /// The checker's name.
    pub const NAME: &'static str = "every-call-ends-once-in-time";

    /// A checker with nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The slack after a call's deadline: 1 ms plus 1 % of it.
    pub fn slack(deadline: Duration) -> Duration {
        Duration::from_millis(1) + deadline / 100
    }

    fn end(&mut self, at: Instant, key: CallKey, how: &str, findings: &mut Vec<Finding>) {
        let (client, call) = key;
        if let Some(due) = self.open.remove(&key) {
            self.judged += 1;
            self.ended.insert(key, false);
            if let Some(due) = due {
                self.dues.remove(&(due, key));
            }
            return;
        }
        match self.ended.get(&key) {
            Some(true) => {
                // Reported late already; it ended at last.
                self.ended.insert(key, false);
            }
            Some(false) => findings
                .push(Finding { at, message: format!("{client}'s call {call} ended twice: {how} after it had ended") }),
            None => {
                findings.push(Finding { at, message: format!("{client}'s call {call} {how}, but it never started") })
            }
        }
    }

    /// Stops judging on time the open calls of `client`.
    fn untime(&mut self, client: NodeId) {
        for (key, due) in self.open.range_mut((client, 0)..=(client, u64::MAX)) {
            if let Some(at) = due.take() {
                self.dues.remove(&(at, *key));
            }
        }
    }

    /// Reports every open call whose due time has come by `at`.
    fn overdue(&mut self, at: Instant, findings: &mut Vec<Finding>) {
        while let Some(&(due, key)) = self.dues.first() {
            if due > at {
                break;
            }
            self.dues.remove(&(due, key));
            self.open.remove(&key);
            self.ended.insert(key, true);
            self.judged += 1;
            let (client, call) = key;
            findings.push(Finding {
                at,
                message: format!(
                    "{client}'s call {call} has not ended by {due}, its deadline plus slack: its caller was never told"
                ),
            });
        }
    }
}

impl Checker for CallsEnd {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants_workload(&self) -> bool {
        true
    }

    fn workload(&mut self, at: Instant, event: &WorkloadEvent, findings: &mut Vec<Finding>) {
        match *event {
            WorkloadEvent::CallStarted { client, call, deadline } => {
                let key = (client, call);
                if self.open.contains_key(&key) || self.ended.contains_key(&key) {
                    findings.push(Finding { at, message: format!("{client} started call {call} twice") });
                    return;
                }
                self.started += 1;
                let due = (!self.untimed.contains(&client)).then(|| at + deadline + Self::slack(deadline));
                self.open.insert(key, due);
                if let Some(due) = due {
                    self.dues.insert((due, key));
                }
            }
            WorkloadEvent::CallCompleted { client, call, .. } => self.end(at, (client, call), "completed", findings),
            WorkloadEvent::CallFailed { client, call, .. } => self.end(at, (client, call), "failed", findings),
            WorkloadEvent::CallAbandoned { client, call } => self.end(at, (client, call), "was abandoned", findings),
            _ => {}
        }
    }

    fn fault(&mut self, _at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        match *fault {
            Fault::Pause { node, duration } => {
                let moved: Vec<(CallKey, Instant)> = self
                    .open
                    .range((node, 0)..=(node, u64::MAX))
                    .filter_map(|(key, due)| due.map(|d| (*key, d)))
                    .collect();
                for (key, due) in moved {
                    self.dues.remove(&(due, key));
                    let later = due + duration;
                    self.dues.insert((later, key));
                    self.open.insert(key, Some(later));
                }
            }
            Fault::Slow { node, per_message } => {
                if per_message.is_zero() {
                    self.untimed.remove(&node);
                } else {
                    self.untimed.insert(node);
                    self.untime(node);
                }
            }
            Fault::ClockOffset { node, .. } | Fault::ClockJump { node, .. } => self.untime(node),
            Fault::ClockDrift { node, ppm } if ppm.abs() > 10_000.0 => self.untime(node),
            _ => {}
        }
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        self.overdue(snapshot.at, findings);
    }

    fn finish(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        self.overdue(snapshot.at, findings);
        self.unjudged_at_end = self.open.len();
    }

    fn pending(&self) -> Option<Instant> {
        self.dues.first().map(|(due, _)| *due)
    }

    fn not_judged(&self) -> Option<String> {
        (self.judged == 0).then(|| {
            format!(
                "no call could be judged: {} started, {} still under way at the end (their due time past it, or not judged on time)",
                self.started, self.unjudged_at_end
            )
        })
    }
}

/// What the checker knows of one request at one worker process.
#[derive(Debug)]
struct Seen {
    /// When its copy that the window took in arrived (the worker's clock).
    first: Instant,
    /// How many requests the window had taken in before it.
    ordinal: u64,
    executed: bool,
    /// Whether the latest copy arrived while the window covered it.
    covered: bool,
}

/// One worker process's requests, as its window would hold them.
#[derive(Debug, Default)]
struct WorkerWindow {
    taken: u64,
    seen: BTreeMap<CallKey, Seen>,
    /// (ordinal, request) in the order taken in, to forget what no copy can be covered
    /// for any more.
    order: VecDeque<(u64, Instant, CallKey)>,
}

/// No worker runs a request twice while its idempotency window covers it.
///
/// The window (`conclave_core::resilience::IdempotencyWindow`) covers a copy of a request
/// that arrives within `ttl` of the copy it took in (on the worker's clock) and with fewer
/// than `capacity` requests taken in since: it then holds the request whatever else
/// happened, since it forgets the oldest first and only beyond `capacity`. The checker
/// keeps that account itself, from the requests arriving at each worker, so a worker that
/// does not ask its window is caught. A request the worker refused or dropped unserved
/// (shed, or expired in its queue) is forgotten, as the window forgets it; a worker whose
/// process stops starts with an empty window. A run in which no copy reached a worker
/// within its window is reported as not judged.
#[derive(Debug)]
pub struct NoDuplicateExecution {
    config: Option<IdempotencyConfig>,
    workers: BTreeMap<NodeId, WorkerWindow>,
    covered: u64,
}

impl NoDuplicateExecution {
    /// The checker's name.
    pub const NAME: &'static str = "no-request-runs-twice-in-its-window";

    /// A checker for workers with this window (`None`: they have none, and nothing is
    /// judged).
    pub fn new(config: Option<IdempotencyConfig>) -> Self {
        Self { config, workers: BTreeMap::new(), covered: 0 }
    }
}

impl Checker for NoDuplicateExecution {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants_workload(&self) -> bool {
        self.config.is_some()
    }

    fn workload(&mut self, at: Instant, event: &WorkloadEvent, findings: &mut Vec<Finding>) {
        let Some(config) = &self.config else { return };
        let (capacity, ttl) = (config.capacity as u64, config.ttl);
        match *event {
            WorkloadEvent::RequestArrived { worker, client, call, local } => {
                let w = self.workers.entry(worker).or_default();
                // Forget what no later copy can be covered for.
                while let Some(&(ordinal, first, key)) = w.order.front() {
                    if w.taken - ordinal <= capacity && local - first < ttl {
                        break;
                    }
                    w.order.pop_front();
                    if w.seen.get(&key).is_some_and(|s| s.ordinal == ordinal) {
                        w.seen.remove(&key);
                    }
                }
                let key = (client, call);
                let taken = w.taken;
                match w.seen.get_mut(&key) {
                    // `taken - ordinal - 1` requests were taken in after it.
                    Some(s) if local - s.first < ttl && taken - s.ordinal - 1 < capacity => {
                        s.covered = true;
                        self.covered += 1;
                    }
                    _ => {
                        w.seen.insert(key, Seen { first: local, ordinal: taken, executed: false, covered: false });
                        w.order.push_back((taken, local, key));
                        w.taken += 1;
                    }
                }
            }
            WorkloadEvent::Executed { worker, client, call } => {
                let Some(s) = self.workers.get_mut(&worker).and_then(|w| w.seen.get_mut(&(client, call))) else {
                    return;
                };
                if s.executed && s.covered {
                    findings.push(Finding {
                        at,
                        message: format!(
                            "{worker} ran {client}'s call {call} a second time, for a copy that arrived while its idempotency window covered it"
                        ),
                    });
                }
                s.executed = true;
            }
            WorkloadEvent::Shed { worker, client, call } | WorkloadEvent::Expired { worker, client, call } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.seen.remove(&(client, call));
                }
            }
            _ => {}
        }
    }

    fn fault(&mut self, _at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        if let Fault::Crash(node) | Fault::Restart { node, .. } = fault {
            self.workers.remove(node);
        }
    }

    fn not_judged(&self) -> Option<String> {
        if self.config.is_none() {
            return Some("the workers have no idempotency window".to_string());
        }
        (self.covered == 0).then(|| {
            "no copy of a request reached a worker while its window covered it (no duplicated request, no retry to the same worker)".to_string()
        })
    }
}

/// One client process's tally.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    /// Attempts sent beyond each call's first: retries, hedges, copies sent again.
    extra: u64,
    /// When its first call started.
    since: Option<Instant>,
    /// Clock steps forward since, which let its budget forget early.
    stepped: Duration,
    /// Attempts sent per call under way.
    sends: BTreeMap<u64, u32>,
    reported: bool,
}

/// No call makes more attempts than the policy's `max_attempts`, and each client's
/// retries and hedges stay within what its retry budget allows.
///
/// The bound follows from the budget's definition (`conclave_core::resilience::RetryBudget`):
/// it counts requests and retries in ten slots of `ttl / 10`, and allows a retry at `t`
/// only while the retries of the ten slots up to `t` stay within `ratio` times their
/// requests or `min_per_sec * ttl`, whichever is more, so within their sum. Give each slot `ratio` tokens per request in it plus a
/// tenth of that reserve; a retry takes a token from a slot of its own window, the
/// earliest first, and never lacks one (else the retries of its window would have spent
/// the window's whole allowance, and the budget refused it). So a client's retries and
/// hedges, from its first call to `t`, are at most the tokens of the slots from nine
/// before its first retry to `t`:
/// `ratio * requests + min_per_sec * (elapsed + 1.1 * ttl)`. The checker allows 1 % more
/// time (clock drift) and a slot of rounding (`1.2 * ttl`), and adds any forward step of
/// the client's clock to `elapsed`. A client whose process restarts starts a new budget,
/// and a new tally. Only attempts on the wire count: a copy the client sends again behind
/// its policy's back is one more. A run in which no call made more than its first
/// attempt is reported as not judged.
#[derive(Debug)]
pub struct AttemptsWithinBudget {
    budget: Option<BudgetConfig>,
    max_attempts: u32,
    clients: BTreeMap<NodeId, Tally>,
    offsets: BTreeMap<NodeId, i64>,
    extra: u64,
}

impl AttemptsWithinBudget {
    /// The checker's name.
    pub const NAME: &'static str = "attempts-within-the-retry-budget";

    /// A checker for clients with `budget` (`None`: only `max_attempts` bounds them) and
    /// at most `max_attempts` attempts per call.
    pub fn new(budget: Option<BudgetConfig>, max_attempts: u32) -> Self {
        Self { budget, max_attempts, clients: BTreeMap::new(), offsets: BTreeMap::new(), extra: 0 }
    }

    /// A checker for clients with this policy.
    pub fn for_policy(policy: &Policy) -> Self {
        Self::new(policy.budget.clone(), policy.retry.max_attempts)
    }

    /// The most retries and hedges `budget` allows a client that made `requests` requests
    /// over `elapsed` from its first.
    pub fn allowance(budget: &BudgetConfig, requests: u64, elapsed: Duration) -> f64 {
        let ttl = budget.ttl.as_secs_f64();
        budget.ratio * requests as f64 + f64::from(budget.min_per_sec) * (elapsed.as_secs_f64() * 1.01 + 1.2 * ttl)
    }
}

impl Checker for AttemptsWithinBudget {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants_workload(&self) -> bool {
        true
    }

    fn workload(&mut self, at: Instant, event: &WorkloadEvent, findings: &mut Vec<Finding>) {
        match *event {
            WorkloadEvent::CallStarted { client, call, .. } => {
                let tally = self.clients.entry(client).or_default();
                tally.requests += 1;
                tally.since.get_or_insert(at);
                tally.sends.insert(call, 0);
            }
            WorkloadEvent::AttemptSent { client, call, attempt, .. } => {
                let tally = self.clients.entry(client).or_default();
                let Some(sends) = tally.sends.get_mut(&call) else { return };
                *sends += 1;
                if *sends > self.max_attempts {
                    findings.push(Finding {
                        at,
                        message: format!(
                            "{client}'s call {call} sent its attempt {attempt}, its {} on the wire: the policy allows {}",
                            *sends, self.max_attempts
                        ),
                    });
                }
                if *sends == 1 {
                    return;
                }
                tally.extra += 1;
                self.extra += 1;
                let Some(budget) = &self.budget else { return };
                let elapsed = (at - tally.since.unwrap_or(at)) + tally.stepped;
                let allowed = Self::allowance(budget, tally.requests, elapsed);
                if tally.extra as f64 > allowed && !tally.reported {
                    tally.reported = true;
                    findings.push(Finding {
                        at,
                        message: format!(
                            "{client} sent {} retries and hedges for {} calls over {elapsed:?}: its budget ({} per request + {}/s over {:?}) allows {allowed:.1}",
                            tally.extra, tally.requests, budget.ratio, budget.min_per_sec, budget.ttl
                        ),
                    });
                }
            }
            WorkloadEvent::CallCompleted { client, call, .. }
            | WorkloadEvent::CallFailed { client, call, .. }
            | WorkloadEvent::CallAbandoned { client, call } => {
                if let Some(tally) = self.clients.get_mut(&client) {
                    tally.sends.remove(&call);
                }
            }
            _ => {}
        }
    }

    fn fault(&mut self, _at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        let (node, step) = match *fault {
            Fault::Crash(node) | Fault::Restart { node, .. } => {
                self.clients.remove(&node);
                return;
            }
            Fault::ClockJump { node, nanos } => (node, nanos),
            Fault::ClockOffset { node, offset_nanos } => {
                let before = self.offsets.insert(node, offset_nanos).unwrap_or(0);
                (node, offset_nanos.saturating_sub(before))
            }
            _ => return,
        };
        if let (Some(tally), Ok(forward)) = (self.clients.get_mut(&node), u64::try_from(step)) {
            tally.stepped += Duration::from_nanos(forward);
        }
    }

    fn not_judged(&self) -> Option<String> {
        (self.extra == 0).then(|| "no call made more than its first attempt: nothing to hold to the budget".to_string())
    }
}

#[cfg(test)]
mod tests {
    use conclave_core::resilience::{AttemptKind, CallError};

    use super::*;
    use crate::check::ClusterSnapshot;

    const C: NodeId = NodeId(1);
    const W: NodeId = NodeId(2);
    const MS: fn(u64) -> Instant = Instant::from_millis;

    fn at_end(at: Instant) -> ClusterSnapshot {
        ClusterSnapshot { at, nodes: Vec::new() }
    }

    fn started(call: u64) -> WorkloadEvent {
        WorkloadEvent::CallStarted { client: C, call, deadline: Duration::from_secs(1) }
    }

    fn completed(call: u64) -> WorkloadEvent {
        WorkloadEvent::CallCompleted { client: C, call, worker: W, attempts: 1, latency: Duration::from_millis(5) }
    }

    fn failed(call: u64) -> WorkloadEvent {
        WorkloadEvent::CallFailed { client: C, call, error: CallError::DeadlineExceeded, attempts: 2 }
    }

    fn feed(checker: &mut dyn Checker, events: &[(Instant, WorkloadEvent)]) -> Vec<Finding> {
        let mut findings = Vec::new();
        for (at, event) in events {
            checker.workload(*at, event, &mut findings);
        }
        findings
    }

    #[test]
    fn calls_that_end_once_in_time_hold() {
        let mut c = CallsEnd::new();
        assert_eq!(c.not_judged().map(|s| s.starts_with("no call could be judged")), Some(true));
        let events = [(MS(0), started(1)), (MS(0), started(2)), (MS(5), completed(1)), (MS(1000), failed(2))];
        assert!(feed(&mut c, &events).is_empty());
        assert_eq!(c.pending(), None);
        let mut findings = Vec::new();
        c.finish(&at_end(MS(5000)), &mut findings);
        assert!(findings.is_empty());
        assert_eq!(c.not_judged(), None);
        assert_eq!(CallsEnd::slack(Duration::from_secs(1)), Duration::from_millis(11));
    }

    #[test]
    fn a_lost_call_a_late_end_and_a_second_end_are_found() {
        let mut c = CallsEnd::new();
        let events = [(MS(0), started(1)), (MS(0), started(2)), (MS(0), started(3))];
        assert!(feed(&mut c, &events).is_empty());
        // Due at 1 s + 11 ms.
        assert_eq!(c.pending(), Some(MS(1011)));
        let mut findings = Vec::new();
        c.snapshot(&at_end(MS(1011)), &mut findings);
        assert_eq!(findings.len(), 3, "{findings:?}");
        assert!(findings[0].message.contains("has not ended by 1.011s"), "{}", findings[0].message);
        // One of them ends at last: no second finding. Then it ends again: one.
        assert!(feed(&mut c, &[(MS(1500), failed(1))]).is_empty());
        let again = feed(&mut c, &[(MS(1600), completed(1))]);
        assert_eq!(again.len(), 1);
        assert!(again[0].message.contains("ended twice"));
        let never = feed(&mut c, &[(MS(1700), completed(9)), (MS(1800), started(2))]);
        assert!(never[0].message.contains("never started") && never[1].message.contains("started call 2 twice"));
    }

    #[test]
    fn a_pause_moves_the_due_time_and_a_clock_step_stops_judging_time() {
        let mut c = CallsEnd::new();
        let mut findings = Vec::new();
        feed(&mut c, &[(MS(0), started(1))]);
        c.fault(MS(10), &Fault::Pause { node: C, duration: Duration::from_secs(2) }, &mut findings);
        assert_eq!(c.pending(), Some(MS(3011)));
        c.fault(MS(20), &Fault::ClockJump { node: C, nanos: -1_000_000_000 }, &mut findings);
        assert_eq!(c.pending(), None);
        c.finish(&at_end(MS(9000)), &mut findings);
        assert!(findings.is_empty());
        assert_eq!(c.not_judged().map(|s| s.contains("1 still under way")), Some(true));
        // A slowed client's calls are judged for ending once only.
        let mut c = CallsEnd::new();
        c.fault(MS(0), &Fault::Slow { node: C, per_message: Duration::from_millis(3) }, &mut findings);
        feed(&mut c, &[(MS(0), started(1))]);
        assert_eq!(c.pending(), None);
        assert!(feed(&mut c, &[(MS(9000), failed(1))]).is_empty());
        assert_eq!(c.not_judged(), None);
    }

    fn arrived(call: u64, ms: u64) -> WorkloadEvent {
        WorkloadEvent::RequestArrived { worker: W, client: C, call, local: MS(ms) }
    }

    fn executed(call: u64) -> WorkloadEvent {
        WorkloadEvent::Executed { worker: W, client: C, call }
    }

    fn window(capacity: usize, ttl_secs: u64) -> NoDuplicateExecution {
        let mut config = IdempotencyConfig::default();
        config.capacity = capacity;
        config.ttl = Duration::from_secs(ttl_secs);
        NoDuplicateExecution::new(Some(config))
    }

    #[test]
    fn a_second_run_of_a_covered_copy_is_found() {
        let mut c = window(10, 60);
        assert!(c.not_judged().is_some());
        let events = [(MS(0), arrived(1, 0)), (MS(0), executed(1)), (MS(10), arrived(1, 10)), (MS(10), executed(1))];
        let findings = feed(&mut c, &events);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].message.contains("a second time"));
        assert_eq!(c.not_judged(), None);
    }

    #[test]
    fn copies_the_window_no_longer_covers_may_run_again() {
        // Too old: 60 s on the worker's clock.
        let mut c = window(10, 60);
        let events = [(MS(0), arrived(1, 0)), (MS(0), executed(1)), (MS(1), arrived(1, 60_000)), (MS(1), executed(1))];
        assert!(feed(&mut c, &events).is_empty());
        // Too many in between: 2 requests taken in after it, capacity 2.
        let mut c = window(2, 60);
        let events = [
            (MS(0), arrived(1, 0)),
            (MS(0), executed(1)),
            (MS(1), arrived(2, 1)),
            (MS(1), arrived(3, 1)),
            (MS(2), arrived(1, 2)),
            (MS(2), executed(1)),
        ];
        assert!(feed(&mut c, &events).is_empty());
        // One in between with capacity 2 is covered.
        let mut c = window(2, 60);
        let events = [
            (MS(0), arrived(1, 0)),
            (MS(0), executed(1)),
            (MS(1), arrived(2, 1)),
            (MS(2), arrived(1, 2)),
            (MS(2), executed(1)),
        ];
        assert_eq!(feed(&mut c, &events).len(), 1);
        // A shed request is forgotten, and a crashed worker's window is empty.
        let mut c = window(10, 60);
        let mut findings = feed(
            &mut c,
            &[
                (MS(0), arrived(1, 0)),
                (MS(0), WorkloadEvent::Shed { worker: W, client: C, call: 1 }),
                (MS(1), arrived(1, 1)),
                (MS(1), executed(1)),
            ],
        );
        c.fault(MS(2), &Fault::Crash(W), &mut findings);
        findings.extend(feed(&mut c, &[(MS(3), arrived(1, 3)), (MS(3), executed(1))]));
        assert!(findings.is_empty(), "{findings:?}");
        assert!(NoDuplicateExecution::new(None).not_judged().is_some_and(|s| s.contains("no idempotency window")));
    }

    fn sent(call: u64, attempt: u32) -> WorkloadEvent {
        let kind = if attempt == 0 { AttemptKind::First } else { AttemptKind::Retry };
        WorkloadEvent::AttemptSent { client: C, call, attempt, kind, worker: W }
    }

    #[test]
    fn the_allowance_is_the_share_plus_the_reserve_over_the_time() {
        let budget = BudgetConfig::default();
        // 0.1 * 1000 + 1/s * (10 s * 1.01 + 12 s).
        let allowed = AttemptsWithinBudget::allowance(&budget, 1000, Duration::from_secs(10));
        assert!((allowed - 122.1).abs() < 1e-9, "{allowed}");
    }

    #[test]
    fn retries_beyond_the_budget_and_attempts_beyond_the_policy_are_found() {
        let mut c = AttemptsWithinBudget::new(Some(BudgetConfig::default()), 3);
        assert!(c.not_judged().is_some());
        // Calls at one instant, each retried once: the budget allows 0.1 per call + 12, so
        // the 14th call's retry is one too many.
        let mut events = Vec::new();
        for call in 0..100 {
            events.extend([(MS(0), started(call)), (MS(0), sent(call, 0)), (MS(0), sent(call, 1))]);
        }
        let findings = feed(&mut c, &events);
        assert_eq!(findings.len(), 1, "reported once: {findings:?}");
        assert!(findings[0].message.contains("14 retries and hedges for 14 calls"), "{}", findings[0].message);
        assert_eq!(c.not_judged(), None);
        // A fourth attempt of one call, within the budget's allowance.
        let mut c = AttemptsWithinBudget::new(None, 3);
        let events = [(MS(0), started(1)), (MS(0), sent(1, 0)), (MS(1), sent(1, 1)), (MS(2), sent(1, 2))];
        assert!(feed(&mut c, &events).is_empty());
        let findings = feed(&mut c, &[(MS(3), sent(1, 2))]);
        assert!(findings[0].message.contains("its 4 on the wire: the policy allows 3"), "{}", findings[0].message);
    }

    #[test]
    fn a_restarted_client_starts_a_new_tally_and_a_clock_step_widens_it() {
        let mut c = AttemptsWithinBudget::new(Some(BudgetConfig::default()), 3);
        let mut findings = Vec::new();
        let mut events = vec![(MS(0), started(0)), (MS(0), sent(0, 0))];
        for n in 1..=3 {
            events.push((MS(0), sent(0, n)));
        }
        // 3 extra sends (one beyond max_attempts) are within the reserve.
        assert_eq!(feed(&mut c, &events).len(), 1);
        c.fault(MS(1), &Fault::Crash(C), &mut findings);
        assert!(c.clients.is_empty());
        feed(&mut c, &[(MS(2), started(1))]);
        c.fault(MS(3), &Fault::ClockJump { node: C, nanos: 5_000_000_000 }, &mut findings);
        c.fault(MS(3), &Fault::ClockOffset { node: C, offset_nanos: 2_000_000_000 }, &mut findings);
        c.fault(MS(3), &Fault::ClockOffset { node: C, offset_nanos: 1_000_000_000 }, &mut findings);
        assert_eq!(c.clients[&C].stepped, Duration::from_secs(7));
        assert!(findings.is_empty());
    }
}
