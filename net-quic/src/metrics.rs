//! [`Metrics`]: what the runtime counts, and RPC latencies.

use std::sync::atomic::{AtomicU64, Ordering};

use conclave_core::resilience::ClientMetrics;
use conclave_core::Stats;
use hdrhistogram::Histogram;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// The runtime's counters (the core's own are in [`Metrics::core`]).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Counters {
            $($(#[$doc])* pub $name: u64,)*
        }

        #[derive(Debug, Default)]
        pub(crate) struct AtomicCounters {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl AtomicCounters {
            pub(crate) fn snapshot(&self) -> Counters {
                Counters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Membership datagrams handed to QUIC.
    datagrams_sent,
    /// Membership datagrams whose envelope named their connection's member: the core took
    /// them, or refused their body (counted in the core's `Stats::dropped`).
    datagrams_received,
    /// Datagrams the core refused for their envelope: truncated, oversized, damaged, not
    /// conclave, another version or cluster.
    datagrams_malformed,
    /// Datagrams the core refused because the sender in the envelope is not the
    /// certificate's member (`WireError::WrongSender`).
    datagrams_spoofed,
    /// Datagrams that could not be sent (no connection in time, too large for the path,
    /// a full queue).
    datagrams_unsent,
    /// Datagrams dropped because the driver's input queue was full.
    datagrams_overflow,
    /// Datagrams dropped because their connection sent more than its rate allows
    /// (a flood from one peer).
    datagrams_flooded,
    /// Requests sent: each `Cluster::call`, and each attempt of a service client's calls.
    rpc_calls,
    /// Of those, answered successfully.
    rpc_ok,
    /// Of those, failed (deadline, connection, shed, remote error); an attempt a service
    /// client cancelled (a hedge's loser, one past its timeout) is neither ok nor failed.
    rpc_failed,
    /// Requests served by a handler.
    rpc_served,
    /// Requests shed unserved because the member served as many as its concurrency limit
    /// allows (answered "overloaded"; the caller's client retries elsewhere).
    rpc_shed,
    /// Requests dropped because their budget ran out before an answer (their handler was
    /// stopped, or never started).
    rpc_expired,
    /// Copies of a request (a retry, a hedge) answered without running it again: from the
    /// idempotency window, or by waiting for the copy in progress.
    rpc_duplicates,
    /// Requests whose caller cancelled them (a hedge's loser) while their handler ran,
    /// with no copy waiting for the answer: the handler was stopped.
    rpc_cancelled,
    /// Requests refused: unknown method, oversized or malformed frame.
    rpc_refused,
    /// Requests refused because the claimed sender is not the certificate's member.
    rpc_spoofed,
    /// Requests whose frame did not arrive whole within the request timeout (a peer that
    /// opens streams and never writes): the stream was reset.
    rpc_timed_out,
    /// Connections established (dialled or accepted).
    connections_opened,
    /// Connections evicted from the pool (least recently used beyond its bound).
    connections_evicted,
    /// Handshakes that failed: no certificate, a certificate from another CA, a timeout.
    handshakes_failed,
    /// Authenticated connections refused because the certificate names no member.
    connections_without_id,
    /// Dials that failed, or connections of this member's that the peer closed with an
    /// error (a refused certificate, say); the last reason is in `Cluster::last_refusal`.
    connections_refused,
}

/// A snapshot of a member's metrics.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Metrics {
    /// Round-trip times of successful calls, in microseconds.
    pub rpc_latency_us: Histogram<u64>,
    /// The runtime's counters.
    pub counters: Counters,
    /// The core's counters: messages and bytes sent and received per kind, drops by reason.
    pub core: Stats,
    /// What the service clients made from this member ([`crate::Cluster::service`]) did,
    /// summed, since the member started (those dropped since included): calls started,
    /// completed and failed (per reason, [`conclave_core::resilience::CallError`]),
    /// attempts, retries, hedges and the calls hedges won, attempts cancelled, shed by a
    /// worker and throttled locally, retries the budget refused, and breaker transitions.
    pub resilience: ClientMetrics,
}

pub(crate) fn latency_histogram() -> Histogram<u64> {
    // 1 µs to 1 h at 3 significant figures: valid bounds, so this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("the bounds are valid")
}
