//! Resilience policies: retries done right, as pure state machines.
//!
//! One implementation for every driver: the QUIC runtime's client feeds it real time
//! converted to [`Instant`](crate::Instant)s, the simulator's workloads feed it virtual time. Like the rest
//! of core it reads no clock, starts no thread and draws every random number from a ChaCha
//! RNG seeded by its caller, so the same seed and the same inputs give the same attempts.
//!
//! # Map of the code
//!
//! - [`Client`] (`client.rs`): a service's client. It owns the [`WorkerRegistry`] (with one
//!   [`CircuitBreaker`] per worker), the [`RetryBudget`], [`Hedging`] and the
//!   [`AdaptiveThrottle`], and drives each call's attempts through them.
//! - [`WorkerRegistry`] (`registry.rs`): the members that can serve a call ([`TagFilter`]),
//!   built from membership [`Event`](crate::Event)s or a [`Node`](crate::Node)'s views;
//!   [`Selection`] among the usable ones, failover to an untried one.
//! - [`Backoff`] and [`Jitter`] (`backoff.rs`): exponential backoff, the AWS study's jitters.
//! - [`RetryBudget`] (`budget.rs`): retries as a share of requests plus a minimum per second.
//! - [`CircuitBreaker`] (`breaker.rs`): count- or time-based window, failure-rate and
//!   slow-call thresholds, bounded half-open probes that cannot stick.
//! - [`Hedging`] and [`LatencyWindow`] (`hedge.rs`): a second attempt after a latency
//!   quantile of a rotating hdrhistogram window.
//! - [`ConcurrencyLimit`] and [`AdaptiveThrottle`] (`shedding.rs`): load shedding, on the
//!   worker and on the client (the SRE book's formula, [`reject_probability`]).
//! - [`Deadline`] (`deadline.rs`): deadlines that shrink hop by hop, whatever the clocks.
//! - [`IdempotencyWindow`] (`idempotency.rs`): a worker runs each [`RequestId`] once.
//! - [`Policy`] (`policy.rs`): every setting, with defaults, a switch per mechanism and
//!   [`Policy::validate`].
//!
//! # The driver loop
//!
//! A driver starts a call with [`Client::start_call`] (now, a [`RequestId`], a
//! [`Deadline`]) and drains [`Client::poll_action`] after every input, in order:
//!
//! - [`Action::Send`]: send the request to that worker as that attempt; later, report how
//!   it went with [`Client::handle_response`]: `Ok(latency)` or `Err(`[`AttemptError`]`)`.
//! - [`Action::Cancel`]: that attempt's answer no longer counts (abort it if possible).
//! - [`Action::Complete`]: the call succeeded with that attempt's answer.
//! - [`Action::Fail`]: the call failed, and [`CallError`] says why. Every call ends in
//!   exactly one `Complete` or `Fail`, unless its caller cancels it first
//!   ([`Client::cancel_call`]).
//! - [`Action::BreakerChanged`]: for metrics and timelines.
//!
//! Membership comes in through [`Client::handle_event`] (every [`Event`](crate::Event) of
//! the member the client runs beside) or [`Client::sync_membership`] ([`Client::sync_members`]
//! from a copy of its views). Timers are data: sleep until [`Client::poll_timeout`], then
//! call [`Client::handle_timeout`]; calling it early or twice is harmless.
//! [`Client::metrics`] counts calls, attempts, retries, hedges, shed and throttled
//! attempts, and breaker transitions; several clients' [`ClientMetrics`] add up with `+=`.
//!
//! A worker builds a [`ConcurrencyLimit`] and an [`IdempotencyWindow`] from the same
//! [`Policy`], and gives each request the [`Deadline`] the caller's budget makes on its own
//! clock ([`Deadline::after`]).
//!
//! ```
//! use std::time::Duration;
//!
//! use conclave_core::resilience::{Action, AttemptError, Client, Deadline, Policy, RequestId, TagFilter};
//! use conclave_core::{Event, Instant, Member, MemberState, NodeId, Tags};
//!
//! let mut now = Instant::ZERO;
//! let mut policy = Policy::default();
//! policy.workers = TagFilter::any().has("worker");
//! let mut client = Client::new(policy, 42, now).expect("the default policy is valid");
//!
//! // Three workers, as membership announces them.
//! for i in 1..=3 {
//!     let tags = Tags::from([("worker".to_string(), "echo".to_string())]);
//!     let addr = format!("127.0.0.1:700{i}").parse().expect("an address");
//!     let member = Member { id: NodeId(i), addr, incarnation: 0, state: MemberState::Alive, tags };
//!     client.handle_event(now, &Event::MemberJoined(member));
//! }
//!
//! // One call; the first worker it tries is down, the others answer in 2 ms.
//! let call = client.start_call(now, RequestId::new(1, 1), Deadline::after(now, Duration::from_millis(500)));
//! let mut down = None;
//! let mut answers = Vec::new(); // (when, call, attempt, outcome)
//! let answered_by = loop {
//!     let mut done = None;
//!     while let Some(action) = client.poll_action() {
//!         match action {
//!             Action::Send { call, attempt, worker, .. } => {
//!                 let down = *down.get_or_insert(worker);
//!                 let outcome = if worker == down { Err(AttemptError::Unreachable) } else { Ok(Duration::from_millis(2)) };
//!                 answers.push((now + Duration::from_millis(2), call, attempt, outcome));
//!             }
//!             Action::Complete { worker, .. } => done = Some(worker),
//!             Action::Fail { error, .. } => panic!("the call failed: {error}"),
//!             _ => {} // Cancel, BreakerChanged
//!         }
//!     }
//!     if let Some(worker) = done {
//!         break worker;
//!     }
//!     // Jump to the next answer or timer, whichever comes first.
//!     let next_answer = answers.iter().map(|a| a.0).min();
//!     now = [next_answer, client.poll_timeout()].into_iter().flatten().min().expect("something is due");
//!     if let Some(i) = answers.iter().position(|a| a.0 == now) {
//!         let (_, call, attempt, outcome) = answers.remove(i);
//!         client.handle_response(now, call, attempt, outcome);
//!     } else {
//!         client.handle_timeout(now);
//!     }
//! };
//! assert_ne!(Some(answered_by), down, "the retry failed over to another worker");
//! assert_eq!((client.metrics().attempts, client.metrics().retries, client.metrics().completed), (2, 1, 1));
//! # let _ = call;
//! ```

mod backoff;
mod breaker;
mod budget;
mod client;
mod deadline;
mod hedge;
mod idempotency;
mod policy;
mod registry;
mod shedding;
mod sliding;

pub use crate::error::PolicyError;
pub use backoff::{Backoff, Jitter};
pub use breaker::{BreakerConfig, BreakerState, BreakerWindow, CircuitBreaker, Permit, Transition};
pub use budget::{BudgetConfig, RetryBudget};
pub use client::{
    Action, AttemptError, AttemptId, AttemptKind, CallError, CallId, Client, ClientMetrics, FailureCounts,
};
pub use deadline::Deadline;
pub use hedge::{HedgeConfig, Hedging, LatencyWindow};
pub use idempotency::{IdempotencyConfig, IdempotencyWindow, RequestId, Seen};
pub use policy::{Policy, RetryPolicy, MAX_ATTEMPTS};
pub use registry::{Outcome, Selection, TagFilter, Ticket, Unavailable, Worker, WorkerRegistry, LATENCY_DECAY};
pub use shedding::{reject_probability, AdaptiveThrottle, Admission, ConcurrencyLimit, ThrottleConfig};
