//! [`WorkloadReport`]: the figures of a run's workload.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use conclave_core::resilience::{CallError, ClientMetrics};
use conclave_core::{Instant, NodeId};
use hdrhistogram::Histogram;

/// Latencies are kept in microseconds, from 1 µs to an hour (longer ones count as an hour).
const MAX_MICROS: u64 = 3_600_000_000;

/// What a run's workload did. The call figures (`calls` to `latency`) count the calls
/// started from [`WorkloadReport::measured_from`] on; the others cover the whole run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkloadReport {
    /// Calls started from then on count in the call figures.
    pub measured_from: Instant,
    /// Calls started.
    pub calls: u64,
    /// Of those, completed.
    pub completed: u64,
    /// Failed, per reason, in [`CallError::ALL`]'s order.
    pub failed: Vec<(CallError, u64)>,
    /// Abandoned: their client's process stopped under them.
    pub abandoned: u64,
    /// Still under way at the end.
    pub open: u64,
    /// Attempts sent on the wire (first attempts, retries, hedges, and any copy the
    /// client sent again).
    pub attempts: u64,
    /// Retries sent.
    pub retries: u64,
    /// Hedges sent.
    pub hedges: u64,
    /// Calls whose answer came from a hedge.
    pub hedge_wins: u64,
    /// Attempts a worker shed (answered "overloaded").
    pub shed: u64,
    /// Latencies of the completed calls, in microseconds, from their start to their end.
    pub latency: Histogram<u64>,
    /// Attempts the clients' adaptive throttles refused (whole run).
    pub throttled: u64,
    /// Retries and hedges the clients' retry budgets refused (whole run).
    pub budget_refused: u64,
    /// Circuit breakers that opened (whole run, every client's).
    pub breakers_opened: u64,
    /// Circuit breakers that closed again.
    pub breakers_closed: u64,
    /// Requests the workers ran, per worker (whole run).
    pub executed: BTreeMap<NodeId, u64>,
    /// Requests the workers dropped unserved, their deadline passed in the queue.
    pub expired: u64,
    /// Requests and answers lost on the way (cut, lossy or corrupting links, a process
    /// that is down).
    pub lost: u64,
    /// Workers that crashed overloaded: when, which, holding how many requests.
    pub overload_crashes: Vec<(Instant, NodeId, u32)>,
}

impl WorkloadReport {
    pub(crate) fn new(measured_from: Instant) -> Self {
        // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, 3 digits).
        let latency = Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant bounds that hdrhistogram accepts");
        Self {
            measured_from,
            calls: 0,
            completed: 0,
            failed: CallError::ALL.iter().map(|e| (*e, 0)).collect(),
            abandoned: 0,
            open: 0,
            attempts: 0,
            retries: 0,
            hedges: 0,
            hedge_wins: 0,
            shed: 0,
            latency,
            throttled: 0,
            budget_refused: 0,
            breakers_opened: 0,
            breakers_closed: 0,
            executed: BTreeMap::new(),
            expired: 0,
            lost: 0,
            overload_crashes: Vec::new(),
        }
    }

    pub(crate) fn record_latency(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS);
        self.latency.saturating_record(micros);
    }

    pub(crate) fn add_failure(&mut self, error: CallError) {
        if let Some(entry) = self.failed.iter_mut().find(|(e, _)| *e == error) {
            entry.1 += 1;
        }
    }

    /// Adds what a client's own counters say about the whole run.
    pub(crate) fn add_client(&mut self, metrics: &ClientMetrics) {
        self.throttled += metrics.throttled;
        self.budget_refused += metrics.budget_refused;
        self.breakers_opened += metrics.breakers_opened;
        self.breakers_closed += metrics.breakers_closed;
    }

    /// Calls failed for `reason`.
    pub fn failed_for(&self, reason: CallError) -> u64 {
        self.failed.iter().find(|(e, _)| *e == reason).map_or(0, |(_, n)| *n)
    }

    /// Calls failed, every reason.
    pub fn failed_total(&self) -> u64 {
        self.failed.iter().map(|(_, n)| n).sum()
    }

    /// Attempts sent per call started (the retry amplification); 0 without calls.
    pub fn amplification(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.attempts as f64 / self.calls as f64
        }
    }

    /// The share of calls started that completed; 0 without calls.
    pub fn success_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.completed as f64 / self.calls as f64
        }
    }

    /// The latency of completed calls at `quantile` (in [0, 1]); zero without any.
    pub fn latency_at(&self, quantile: f64) -> Duration {
        if self.latency.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_micros(self.latency.value_at_quantile(quantile))
    }

    /// Requests the workers ran, all of them.
    pub fn executed_total(&self) -> u64 {
        self.executed.values().sum()
    }
}

impl fmt::Display for WorkloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        writeln!(
            f,
            "calls {} (from {}): completed {}, failed {}, abandoned {}, open {}",
            self.calls,
            self.measured_from,
            self.completed,
            self.failed_total(),
            self.abandoned,
            self.open
        )?;
        let reasons: Vec<String> =
            self.failed.iter().filter(|(_, n)| *n > 0).map(|(e, n)| format!("{n} {e}")).collect();
        if !reasons.is_empty() {
            writeln!(f, "  failures: {}", reasons.join("; "))?;
        }
        writeln!(
            f,
            "attempts {} ({:.3} per call): retries {}, hedges {} ({} won), shed {}",
            self.attempts,
            self.amplification(),
            self.retries,
            self.hedges,
            self.hedge_wins,
            self.shed
        )?;
        writeln!(
            f,
            "latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            ms(self.latency_at(0.5)),
            ms(self.latency_at(0.99)),
            ms(self.latency_at(0.999)),
            ms(self.latency_at(1.0))
        )?;
        writeln!(
            f,
            "whole run: throttled {}, budget refused {}, breakers opened {} closed {}, executed {}, expired {}, lost {}",
            self.throttled,
            self.budget_refused,
            self.breakers_opened,
            self.breakers_closed,
            self.executed_total(),
            self.expired,
            self.lost
        )?;
        for (at, worker, backlog) in &self.overload_crashes {
            writeln!(f, "  {at} {worker} crashed overloaded ({backlog} requests held)")?;
        }
        Ok(())
    }
}
