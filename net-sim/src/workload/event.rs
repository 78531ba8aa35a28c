//! [`WorkloadEvent`]: what the workload did, as the trace records it and the checkers see it.

use std::fmt;
use std::time::Duration;

use conclave_core::resilience::{AttemptKind, BreakerState, CallError};
use conclave_core::{Instant, NodeId};

use crate::trace::{DropReason, TraceHasher};

/// One thing the workload did. A call is named by its client and its number there
/// (`call`), which is also its request's: `RequestId { origin: client, seq: call }`, the
/// same on every attempt and never reused by the client, across its restarts too.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkloadEvent {
    /// A client started a call.
    CallStarted {
        /// The client.
        client: NodeId,
        /// The call.
        call: u64,
        /// Its deadline, from now on the client's clock.
        deadline: Duration,
    },
    /// A client sent an attempt of a call to a worker.
    AttemptSent {
        /// The client.
        client: NodeId,
        /// The call.
        call: u64,
        /// The attempt (0: the first).
        attempt: u32,
        /// Why it was made.
        kind: AttemptKind,
        /// The worker.
        worker: NodeId,
    },
    /// A call succeeded.
    CallCompleted {
        /// The client.
        client: NodeId,
        /// The call.
        call: u64,
        /// The worker whose answer it is.
        worker: NodeId,
        /// Attempts it made.
        attempts: u32,
        /// From its start to its end, in global time.
        latency: Duration,
    },
    /// A call failed, and its caller was told why.
    CallFailed {
        /// The client.
        client: NodeId,
        /// The call.
        call: u64,
        /// Why.
        error: CallError,
        /// Attempts it made.
        attempts: u32,
    },
    /// A call's client process stopped (crashed, restarted) while the call was under way:
    /// its caller went with it.
    CallAbandoned {
        /// The client.
        client: NodeId,
        /// The call.
        call: u64,
    },
    /// A client's circuit breaker for a worker changed state.
    BreakerChanged {
        /// The client.
        client: NodeId,
        /// The worker.
        worker: NodeId,
        /// The state before.
        from: BreakerState,
        /// The state now.
        to: BreakerState,
    },
    /// A copy of a request reached a worker's process.
    RequestArrived {
        /// The worker.
        worker: NodeId,
        /// The client that made it.
        client: NodeId,
        /// The call.
        call: u64,
        /// The worker's clock reading (its idempotency window ages requests by it).
        local: Instant,
    },
    /// A worker began running a request.
    Executed {
        /// The worker.
        worker: NodeId,
        /// The client that made it.
        client: NodeId,
        /// The call.
        call: u64,
    },
    /// A worker refused a request unserved: its concurrency limit was reached.
    Shed {
        /// The worker.
        worker: NodeId,
        /// The client that made it.
        client: NodeId,
        /// The call.
        call: u64,
    },
    /// A worker dropped a request whose deadline passed while it waited, unserved.
    Expired {
        /// The worker.
        worker: NodeId,
        /// The client that made it.
        client: NodeId,
        /// The call.
        call: u64,
    },
    /// A worker held more requests than it can and crashed (its process stops, as with
    /// [`Fault::Crash`](crate::Fault::Crash), which the trace records next).
    OverloadCrash {
        /// The worker.
        worker: NodeId,
        /// Requests it held (queued and in service).
        backlog: u32,
    },
    /// A request or an answer was not delivered.
    Lost {
        /// The sender.
        from: NodeId,
        /// The receiver.
        to: NodeId,
        /// The call's client.
        client: NodeId,
        /// The call.
        call: u64,
        /// An answer (worker to client) rather than a request.
        answer: bool,
        /// Why.
        reason: DropReason,
    },
}

/// A stable number for an attempt kind, in the hash.
fn kind_lane(kind: AttemptKind) -> u64 {
    match kind {
        AttemptKind::First => 0,
        AttemptKind::Retry => 1,
        AttemptKind::Hedge => 2,
    }
}

/// A stable number for a call error, in the hash: its place in `CallError::ALL`.
fn error_lane(error: CallError) -> u64 {
    CallError::ALL.iter().position(|e| *e == error).map_or(u64::MAX, |i| i as u64)
}

fn state_lane(state: BreakerState) -> u64 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    }
}

fn nanos(d: Duration) -> u64 {
    crate::network::nanos(d)
}

impl WorkloadEvent {
    /// The member whose process it happened in (the client, the worker, or the sender).
    pub fn member(&self) -> NodeId {
        match self {
            Self::CallStarted { client, .. }
            | Self::AttemptSent { client, .. }
            | Self::CallCompleted { client, .. }
            | Self::CallFailed { client, .. }
            | Self::CallAbandoned { client, .. }
            | Self::BreakerChanged { client, .. } => *client,
            Self::RequestArrived { worker, .. }
            | Self::Executed { worker, .. }
            | Self::Shed { worker, .. }
            | Self::Expired { worker, .. }
            | Self::OverloadCrash { worker, .. } => *worker,
            Self::Lost { from, .. } => *from,
        }
    }

    /// Mixes the event into the trace hash: a kind lane, then its fields.
    pub(crate) fn hash(&self, h: &mut TraceHasher) {
        match *self {
            Self::CallStarted { client, call, deadline } => {
                h.lane(1);
                h.lane(client.0);
                h.lane(call);
                h.lane(nanos(deadline));
            }
            Self::AttemptSent { client, call, attempt, kind, worker } => {
                h.lane(2);
                h.lane(client.0);
                h.lane(call);
                h.lane(u64::from(attempt));
                h.lane(kind_lane(kind));
                h.lane(worker.0);
            }
            Self::CallCompleted { client, call, worker, attempts, latency } => {
                h.lane(3);
                h.lane(client.0);
                h.lane(call);
                h.lane(worker.0);
                h.lane(u64::from(attempts));
                h.lane(nanos(latency));
            }
            Self::CallFailed { client, call, error, attempts } => {
                h.lane(4);
                h.lane(client.0);
                h.lane(call);
                h.lane(error_lane(error));
                h.lane(u64::from(attempts));
            }
            Self::CallAbandoned { client, call } => {
                h.lane(5);
                h.lane(client.0);
                h.lane(call);
            }
            Self::BreakerChanged { client, worker, from, to } => {
                h.lane(6);
                h.lane(client.0);
                h.lane(worker.0);
                h.lane(state_lane(from));
                h.lane(state_lane(to));
            }
            Self::RequestArrived { worker, client, call, local } => {
                h.lane(7);
                h.lane(worker.0);
                h.lane(client.0);
                h.lane(call);
                h.lane(local.as_nanos());
            }
            Self::Executed { worker, client, call } => {
                h.lane(8);
                h.lane(worker.0);
                h.lane(client.0);
                h.lane(call);
            }
            Self::Shed { worker, client, call } => {
                h.lane(9);
                h.lane(worker.0);
                h.lane(client.0);
                h.lane(call);
            }
            Self::Expired { worker, client, call } => {
                h.lane(10);
                h.lane(worker.0);
                h.lane(client.0);
                h.lane(call);
            }
            Self::OverloadCrash { worker, backlog } => {
                h.lane(11);
                h.lane(worker.0);
                h.lane(u64::from(backlog));
            }
            Self::Lost { from, to, client, call, answer, reason } => {
                h.lane(12);
                h.lane(from.0);
                h.lane(to.0);
                h.lane(client.0);
                h.lane(call);
                h.lane(u64::from(answer));
                h.lane(reason as u64);
            }
        }
    }
}

impl fmt::Display for WorkloadEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CallStarted { client, call, deadline } => {
                write!(f, "{client} starts call {call} (deadline {deadline:?})")
            }
            Self::AttemptSent { client, call, attempt, kind, worker } => {
                write!(f, "{client} sends call {call} attempt {attempt} ({kind:?}) to {worker}")
            }
            Self::CallCompleted { client, call, worker, attempts, latency } => {
                write!(f, "{client} call {call} completed by {worker} after {attempts} attempt(s), {latency:?}")
            }
            Self::CallFailed { client, call, error, attempts } => {
                write!(f, "{client} call {call} failed after {attempts} attempt(s): {error}")
            }
            Self::CallAbandoned { client, call } => write!(f, "{client} call {call} abandoned: its process stopped"),
            Self::BreakerChanged { client, worker, from, to } => {
                write!(f, "{client}'s breaker for {worker}: {from:?} -> {to:?}")
            }
            Self::RequestArrived { worker, client, call, local } => {
                write!(f, "{worker} receives {client}'s call {call} (its clock {local})")
            }
            Self::Executed { worker, client, call } => write!(f, "{worker} runs {client}'s call {call}"),
            Self::Shed { worker, client, call } => write!(f, "{worker} sheds {client}'s call {call}"),
            Self::Expired { worker, client, call } => {
                write!(f, "{worker} drops {client}'s call {call}: its deadline passed in the queue")
            }
            Self::OverloadCrash { worker, backlog } => {
                write!(f, "{worker} crashes, overloaded with {backlog} requests")
            }
            Self::Lost { from, to, client, call, answer, reason } => {
                let what = if *answer { "answer" } else { "request" };
                write!(f, "{from} -> {to} {what} of {client}'s call {call} lost ({})", reason.name())
            }
        }
    }
}
