//! A service workload: clients that call workers through `conclave_core::resilience`'s
//! [`Client`](conclave_core::resilience::Client), over the simulated network.
//!
//! A [`Workload`] names which members are clients and which are workers. Each client runs
//! one `resilience::Client` beside its member's `Node`: the client is fed its own member's
//! membership events, its timers go through the engine's queue, and it reads its member's
//! clock (offsets, drift and steps apply). Calls arrive at each client by an open-loop
//! Poisson process or a closed loop ([`Arrivals`]); every attempt the client makes travels
//! to the chosen worker, and the answer back, over the same simulated links as membership
//! datagrams: latency, loss, duplication, reordering, partitions and crashes apply to them
//! (a corrupted request or answer is dropped by its checksum, so it counts as lost). A
//! process stalled by a pause, or behind a slow member's backlog, handles its requests,
//! answers and client timers when it resumes.
//!
//! A worker serves requests with `capacity` servers in front of one FIFO queue (an M/G/c
//! queue), each request taking a draw of [`Workload::service`] times the worker's
//! [`WorkerKnobs::slowdown`]. A queue rather than processor sharing: a service with a fixed
//! pool of handler threads (or a semaphore over its handlers) behaves so: a request waits
//! its turn, then takes its own service time, so an overloaded worker's latency grows with
//! its backlog while the requests in service are not slowed; and a discrete-event engine
//! simulates it exactly with one event per completion, where processor sharing would move
//! every completion at every arrival. A worker honours each request's deadline (the budget
//! its caller put on the wire, turned into a deadline on the worker's clock): a request
//! whose deadline passed while it waited is dropped when its turn comes, never run. It
//! sheds with a [`ConcurrencyLimit`](conclave_core::resilience::ConcurrencyLimit) and runs
//! each request once with an [`IdempotencyWindow`](conclave_core::resilience::IdempotencyWindow)
//! when [`Workload::policy`] has them; a copy of a request in progress waits for its answer.
//! Past [`Workload::crash_backlog`] requests held (queued and in service) the worker's
//! process crashes, as [`Fault::Crash`](crate::Fault::Crash) crashes it (the trace records
//! the fault), so the load moves to the others and cascades can happen.
//!
//! Everything the workload does is a [`WorkloadEvent`] in the trace (and its hash), and the
//! checkers of [`check`](crate::check) judge them: every call ends exactly once, in time
//! ([`CallsEnd`](crate::check::CallsEnd)); no request runs twice where the idempotency window
//! covers it ([`NoDuplicateExecution`](crate::check::NoDuplicateExecution)); retries and
//! hedges stay within the retry budget ([`AttemptsWithinBudget`](crate::check::AttemptsWithinBudget)).
//! A finished run's [`Report::workload`](crate::Report::workload) holds the figures
//! ([`WorkloadReport`]). A run without a workload draws nothing and hashes nothing more: its
//! trace is what it was.
//!
//! ```
//! use std::time::Duration;
//! use conclave_core::{Instant, NodeId};
//! use conclave_sim::check::NO_ELECTION;
//! use conclave_sim::{LinkParams, SimBuilder, Workload};
//!
//! // Two clients (n1, n2) call three workers (n3..n5), 50 calls a second each, from 10 s,
//! // on links that duplicate 1 % of what they carry (so workers see copies of requests).
//! let workload = Workload::new(vec![NodeId(1), NodeId(2)], vec![NodeId(3), NodeId(4), NodeId(5)])
//!     .poisson(50.0)
//!     .stop_at(Instant::from_secs(20));
//! let links = LinkParams::constant(Duration::from_micros(500)).with_duplicate(0.01);
//! let mut sim = SimBuilder::new()
//!     .seed(1)
//!     .members(5)
//!     .network(links)
//!     .workload(workload)
//!     .opt_out_of(NO_ELECTION) // nobody votes: the leader checkers have nothing to judge
//!     .build()
//!     .expect("valid settings");
//! sim.run_until(Instant::from_secs(25));
//! let report = sim.finish();
//! let figures = report.workload.as_ref().expect("a workload ran");
//! assert!(figures.calls > 800 && figures.completed == figures.calls);
//! report.assert_clean();
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use conclave_core::resilience::{Policy, TagFilter};
use conclave_core::{Instant, NodeId, Tags};

use crate::error::Error;
use crate::network::Latency;

mod event;
mod report;

pub use event::WorkloadEvent;
pub use report::WorkloadReport;

/// The tag key and value that make a member a worker: the simulator sets it on every
/// member of [`Workload::workers`], and the clients' policy selects workers by it.
pub const WORKER_TAG: (&str, &str) = ("role", "worker");

/// When calls start at each client.
#[derive(Clone, Debug, PartialEq)]
pub enum Arrivals {
    /// Open loop: a Poisson process of `per_sec` calls a second at each client, whatever
    /// became of the calls before (the load of many independent users).
    Poisson {
        /// Calls a second, per client (above 0).
        per_sec: f64,
    },
    /// Closed loop: each client keeps `outstanding` calls under way, starting the next one
    /// `think` after one ends (a fixed pool of callers, as a benchmark driver has).
    Closed {
        /// Calls under way at once, per client (at least 1).
        outstanding: u32,
        /// The pause between a call's end and the next call.
        think: Duration,
    },
}

/// Per-worker settings for experiments.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WorkerKnobs {
    /// Service times are this many times the drawn ones (10.0: a worker ten times slower).
    pub slowdown: f64,
    /// The worker answers every request at once with an error (a full outage of errors,
    /// as when the store behind it is down), and runs none.
    pub always_fail: bool,
}

impl Default for WorkerKnobs {
    fn default() -> Self {
        Self { slowdown: 1.0, always_fail: false }
    }
}

impl WorkerKnobs {
    /// A worker `factor` times slower than the others.
    pub fn slower(factor: f64) -> Self {
        Self { slowdown: factor, ..Self::default() }
    }

    /// A worker that fails every request.
    pub fn failing() -> Self {
        Self { always_fail: true, ..Self::default() }
    }
}

/// Defects planted on purpose, to show that each workload checker catches what it is
/// meant to catch. All off by default; a real run never turns one on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Defects {
    /// Workers run every copy of a request, never asking their idempotency window.
    pub worker_skips_idempotency: bool,
    /// Clients drop every failure instead of telling their caller: the call is never
    /// ended.
    pub client_drops_failures: bool,
    /// Clients send every attempt twice, behind their `Client`'s back (a transport that
    /// retries under the retry policy).
    pub client_sends_twice: bool,
}

/// A service workload: which members call, which serve, how calls arrive and how
/// workers serve them. See the [module documentation](self).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Workload {
    /// The members that make calls.
    pub clients: Vec<NodeId>,
    /// The members that serve them: each is tagged with [`WORKER_TAG`].
    pub workers: Vec<NodeId>,
    /// The clients' resilience policy, and the workers' side of it (concurrency limit,
    /// idempotency window). Its `workers` filter is replaced by one on [`WORKER_TAG`].
    pub policy: Policy,
    /// How calls start.
    pub arrivals: Arrivals,
    /// When the clients start calling (global time; the cluster should have formed).
    pub start: Instant,
    /// When they stop starting calls; `None`: never.
    pub stop: Option<Instant>,
    /// Calls each client starts at most (across its restarts); `None`: no limit.
    pub calls_per_client: Option<u64>,
    /// The deadline each call is given, from its start on its client's clock.
    pub deadline: Duration,
    /// The time a worker takes to serve one request.
    pub service: Latency,
    /// Requests a worker serves at once; the others wait in its queue (at least 1).
    pub capacity: u32,
    /// A worker whose process holds more requests than this (queued and in service)
    /// crashes; `None`: it never does.
    pub crash_backlog: Option<u32>,
    /// Per-worker settings (the others have the defaults).
    pub knobs: BTreeMap<NodeId, WorkerKnobs>,
    /// The report's call figures count the calls started from then on (a warm-up before is
    /// left out); every other figure covers the whole run. `None`: from `start`.
    pub measure_from: Option<Instant>,
    /// Defects planted to show the checkers bite.
    pub defects: Defects,
}

impl Workload {
    /// `clients` calling `workers` with `Policy::default()`: 50 Poisson calls a second per
    /// client from 10 s on, a 1 s deadline; workers with 8 servers each and log-normal
    /// service times of median 5 ms (sigma 0.5: p99 about 16 ms), no crash on overload.
    pub fn new(clients: Vec<NodeId>, workers: Vec<NodeId>) -> Self {
        Self {
            clients,
            workers,
            policy: Policy::default(),
            arrivals: Arrivals::Poisson { per_sec: 50.0 },
            start: Instant::from_secs(10),
            stop: None,
            calls_per_client: None,
            deadline: Duration::from_secs(1),
            service: Latency::LogNormal { median: Duration::from_millis(5), sigma: 0.5 },
            capacity: 8,
            crash_backlog: None,
            knobs: BTreeMap::new(),
            measure_from: None,
            defects: Defects::default(),
        }
    }

    /// With this policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Open-loop Poisson arrivals, `per_sec` a second per client.
    pub fn poisson(mut self, per_sec: f64) -> Self {
        self.arrivals = Arrivals::Poisson { per_sec };
        self
    }

    /// A closed loop of `outstanding` calls per client, `think` between a call's end and
    /// the next.
    pub fn closed(mut self, outstanding: u32, think: Duration) -> Self {
        self.arrivals = Arrivals::Closed { outstanding, think };
        self
    }

    /// Clients start calling at `at`.
    pub fn start_at(mut self, at: Instant) -> Self {
        self.start = at;
        self
    }

    /// Clients start no call from `at` on.
    pub fn stop_at(mut self, at: Instant) -> Self {
        self.stop = Some(at);
        self
    }

    /// Each client starts `calls` calls at most.
    pub fn calls_per_client(mut self, calls: u64) -> Self {
        self.calls_per_client = Some(calls);
        self
    }

    /// Each call's deadline.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Workers' service times and servers.
    pub fn service(mut self, service: Latency, capacity: u32) -> Self {
        self.service = service;
        self.capacity = capacity;
        self
    }

    /// Workers crash past `backlog` requests held.
    pub fn crash_backlog(mut self, backlog: u32) -> Self {
        self.crash_backlog = Some(backlog);
        self
    }

    /// Worker `worker`'s settings.
    pub fn knobs(mut self, worker: NodeId, knobs: WorkerKnobs) -> Self {
        self.knobs.insert(worker, knobs);
        self
    }

    /// Call figures from `at` on.
    pub fn measure_from(mut self, at: Instant) -> Self {
        self.measure_from = Some(at);
        self
    }

    /// With these planted defects.
    pub fn defects(mut self, defects: Defects) -> Self {
        self.defects = defects;
        self
    }

    /// The clients' policy as they run it: [`Workload::policy`] with its `workers` filter
    /// on [`WORKER_TAG`].
    pub fn client_policy(&self) -> Policy {
        let mut policy = self.policy.clone();
        policy.workers = TagFilter::any().with(WORKER_TAG.0, WORKER_TAG.1);
        policy
    }

    /// The tags a worker publishes.
    pub fn worker_tags() -> Tags {
        Tags::from([(WORKER_TAG.0.to_string(), WORKER_TAG.1.to_string())])
    }

    /// The settings of worker `id`.
    pub fn knobs_of(&self, id: NodeId) -> WorkerKnobs {
        self.knobs.get(&id).cloned().unwrap_or_default()
    }

    /// When call figures start counting.
    pub fn measured_from(&self) -> Instant {
        self.measure_from.unwrap_or(self.start)
    }

    /// What is impossible in these settings, checked against the run's members.
    pub fn validate(&self, members: &[NodeId]) -> Result<(), Error> {
        let bad = |why: String| Err(Error::Workload(why));
        for id in self.clients.iter().chain(&self.workers).chain(self.knobs.keys()) {
            if !members.contains(id) {
                return Err(Error::UnknownMember(*id));
            }
        }
        if self.clients.is_empty() || self.workers.is_empty() {
            return bad("a workload needs at least one client and one worker".to_string());
        }
        self.client_policy().validate().map_err(Error::Policy)?;
        match self.arrivals {
            Arrivals::Poisson { per_sec } if !(per_sec.is_finite() && per_sec > 0.0) => {
                return bad(format!("Poisson arrivals at {per_sec} a second: the rate must be above 0"));
            }
            Arrivals::Closed { outstanding: 0, .. } => {
                return bad("a closed loop of 0 calls under way makes no call".to_string());
            }
            _ => {}
        }
        if self.capacity == 0 {
            return bad("workers with 0 servers serve nothing".to_string());
        }
        if self.deadline.is_zero() {
            return bad("a deadline of 0 leaves no call any time".to_string());
        }
        for (id, knobs) in &self.knobs {
            if !(knobs.slowdown.is_finite() && knobs.slowdown > 0.0) {
                return bad(format!("{id}'s slowdown is {}: it must be above 0", knobs.slowdown));
            }
        }
        Ok(())
    }
}
