//! Service workloads on the simulator: the setups of `conclave bench resilience`, one
//! function each, so the benchmark and any other user run the same thing.
//!
//! Every setup runs `Config::lan()` members on 500 µs links, clients first (`n1`, ...),
//! workers after them, calls from 10 s (the cluster has formed), a 1 s deadline per call.

use std::time::Duration;

use conclave_core::resilience::Policy;
use conclave_core::{Instant, NodeId};
use conclave_sim::{sim_id, Fault, FaultPlan, Latency, SimBuilder, TraceMode, WorkerKnobs, Workload};

/// When the clients start calling.
pub const START: Instant = Instant::from_secs(10);

/// A service: how many clients and workers, the workload and the faults.
#[derive(Clone, Debug)]
pub struct Service {
    /// Members in all: the clients, then the workers.
    pub members: usize,
    /// What they do.
    pub workload: Workload,
    /// What goes wrong.
    pub plan: FaultPlan,
    /// When the run ends: every call has ended by then.
    pub end: Instant,
}

impl Service {
    /// The simulation of seed `seed`, for a benchmark: no checker, no record kept.
    pub fn bench(&self, seed: u64) -> SimBuilder {
        SimBuilder::new()
            .seed(seed)
            .members(self.members)
            .workload(self.workload.clone())
            .plan(self.plan.clone())
            .default_checkers(false)
            .trace(TraceMode::HashOnly)
    }

    /// The workers.
    pub fn workers(&self) -> &[NodeId] {
        &self.workload.workers
    }
}

fn clients_then_workers(clients: usize, workers: usize) -> (Vec<NodeId>, Vec<NodeId>) {
    ((0..clients).map(sim_id).collect(), (clients..clients + workers).map(sim_id).collect())
}

/// The clients and workers of a cluster of `members` (at least 2): the first half calls,
/// the rest serve.
pub fn split(members: usize) -> (Vec<NodeId>, Vec<NodeId>) {
    let clients = (members / 2).max(1);
    clients_then_workers(clients, members.saturating_sub(clients).max(1))
}

/// A full outage of errors: ten clients calling at `per_sec` a second each for 60 s, ten
/// workers that answer every request with an error at once.
pub fn full_outage(policy: Policy, per_sec: f64) -> Service {
    full_outage_of(20, policy, per_sec)
}

/// [`full_outage`] on a cluster of `members` ([`split`]: half call, half serve).
pub fn full_outage_of(members: usize, policy: Policy, per_sec: f64) -> Service {
    let (clients, workers) = split(members);
    let mut workload = Workload::new(clients, workers.clone())
        .policy(policy)
        .poisson(per_sec)
        .start_at(START)
        .stop_at(START + Duration::from_secs(60));
    for worker in workers {
        workload = workload.knobs(worker, WorkerKnobs::failing());
    }
    Service { members, workload, plan: FaultPlan::new(), end: START + Duration::from_secs(62) }
}

/// One worker of ten ten times slower: ten clients at 100 calls a second each for 60 s;
/// workers with 16 servers and log-normal service times of median 5 ms (sigma 0.5), the
/// slow one's ten times longer (median 50 ms). The load is 4 % of what the workers can
/// serve (the slow one's, about 30 %), so hardly a queue forms: the tail is the slow
/// worker's own. Call figures count from 20 s (hedging learns its quantile from 100
/// latencies first).
pub fn slow_worker(policy: Policy) -> Service {
    slow_workers_of(20, policy)
}

/// [`slow_worker`] on a cluster of `members` ([`split`]): one worker in ten is ten times
/// slower (the first of each ten), and the clients share 100 calls a second per worker,
/// the load of the ten-and-ten setup.
pub fn slow_workers_of(members: usize, policy: Policy) -> Service {
    let (clients, workers) = split(members);
    let per_sec = 100.0 * workers.len() as f64 / clients.len() as f64;
    let mut workload = Workload::new(clients, workers.clone())
        .policy(policy)
        .poisson(per_sec)
        .service(Latency::LogNormal { median: Duration::from_millis(5), sigma: 0.5 }, 16)
        .start_at(START)
        .stop_at(START + Duration::from_secs(60))
        .measure_from(START + Duration::from_secs(10));
    for slow in workers.iter().step_by(10) {
        workload = workload.knobs(*slow, WorkerKnobs::slower(10.0));
    }
    Service { members, workload, plan: FaultPlan::new(), end: START + Duration::from_secs(62) }
}

/// A worker crash under load: five clients at 75 calls a second each, five workers with
/// two servers of log-normal service times (median 20 ms, sigma 0.5: 88 requests a second
/// per worker), that crash past 100 requests held. The load is 85 % of what the five
/// serve; at 20 s the first worker crashes, and the other four are asked 106 % of what
/// they can serve. Calls stop at 70 s.
pub fn cascade(policy: Policy) -> Service {
    cascade_of(10, 1, policy)
}

/// [`cascade`] on a cluster of `members` ([`split`]) whose first `crashed` workers crash at
/// 20 s: one in five of them leaves the others asked 106 % of what they serve, as in
/// [`cascade`].
pub fn cascade_of(members: usize, crashed: usize, policy: Policy) -> Service {
    let workload = cascade_workload(members, policy);
    let mut plan = FaultPlan::new();
    for worker in workload.workers.iter().take(crashed) {
        plan = plan.at(Instant::from_secs(20), Fault::Crash(*worker));
    }
    Service { members, workload, plan, end: START + Duration::from_secs(62) }
}

/// The workload of [`cascade`] on a cluster of `members` ([`split`]): the clients share
/// 85 % of what the workers can serve (75 calls a second per client with as many clients
/// as workers).
pub fn cascade_workload(members: usize, policy: Policy) -> Workload {
    let (clients, workers) = split(members);
    let per_sec = 75.0 * workers.len() as f64 / clients.len() as f64;
    Workload::new(clients, workers)
        .policy(policy)
        .poisson(per_sec)
        .service(Latency::LogNormal { median: Duration::from_millis(20), sigma: 0.5 }, 2)
        .crash_backlog(100)
        .start_at(START)
        .stop_at(START + Duration::from_secs(60))
}

/// Calls for a retry storm on a cluster of `members` ([`split`]): each client at 100 calls a
/// second from 10 s to 70 s, workers with the default service (8 servers, median 5 ms),
/// far from overloaded: what goes wrong is the workers' going away, not their load.
pub fn storm_workload(members: usize, policy: Policy) -> Workload {
    let (clients, workers) = split(members);
    Workload::new(clients, workers)
        .policy(policy)
        .poisson(100.0)
        .start_at(START)
        .stop_at(START + Duration::from_secs(60))
}

/// Three attempts a call and nothing else: no budget, breaker, hedging, throttle, limit or
/// idempotency window (the SRE book's "3 attempts per request" baseline).
pub fn retries_only() -> Policy {
    let mut policy = Policy::bare();
    policy.retry.max_attempts = 3;
    policy
}

/// The default policy without the mechanisms that shed load: no concurrency limit, no
/// adaptive throttling, no circuit breakers (retries, budget, hedging and idempotency stay).
pub fn without_shedding_and_breakers() -> Policy {
    let mut policy = Policy::default();
    policy.concurrency_limit = None;
    policy.throttle = None;
    policy.breaker = None;
    policy
}
