//! The workload's driver: each client member's `resilience::Client` and each worker
//! member's servers and queue, run by the engine (see [`crate::workload`] for the model).
//!
//! The engine reaches it through a few hooks: `start` and `stop` of a member's process
//! (`host.rs`) start and drop its client and its worker; every membership event a member
//! emits goes to its client (`host.rs`, `output`); [`What::Work`] events in the queue are
//! the arrivals of calls, the clients' timers, requests and answers reaching a member, and
//! services ending (`sim.rs`, `process`); `finish` (`report.rs`) takes the figures.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use conclave_core::resilience::{
    Action, Admission, AttemptError, AttemptId, AttemptKind, CallId, Client, ConcurrencyLimit, Deadline,
    IdempotencyWindow, Policy, RequestId, Seen,
};
use conclave_core::{Event, Instant, NodeId};

use super::host::node_seed;
use super::{Sim, What};
use crate::check::Finding;
use crate::fault::Fault;
use crate::network::{nanos, sample_latency};
use crate::trace::{tag, DropReason, TraceMode, TraceRecord};
use crate::workload::{Arrivals, Workload, WorkloadEvent, WorkloadReport};

/// Mixed into each client's seed, so a client's stream is not its node's.
const CLIENT_SEED_SALT: u64 = 0x636c_6965_6e74_2d31;

/// A worker's answer to one request.
type Answer = Result<(), AttemptError>;

/// A workload event due at a time, in the engine's queue.
#[derive(Debug)]
pub(super) enum Due {
    /// A client may start a call.
    Arrival { node: u32, life: u32 },
    /// A client's timer.
    ClientTimer { node: u32, life: u32 },
    /// A request or an answer reaches a member.
    Message { to: u32, from: u32, message: Message },
    /// A worker's server finished a job.
    Served { node: u32, life: u32, job: Job },
}

/// What travels between a client and a worker.
#[derive(Clone, Copy, Debug)]
pub(super) enum Message {
    /// An attempt's request, with the time the worker has.
    Request { reply: Reply, budget: Duration },
    /// The worker's answer.
    Answer { reply: Reply, answer: Answer },
}

/// Where an answer goes: the client's member and process, its call and attempt.
#[derive(Clone, Copy, Debug)]
pub(super) struct Reply {
    client: u32,
    life: u32,
    call: CallId,
    attempt: AttemptId,
    request: RequestId,
}

/// A request a worker admitted.
#[derive(Debug)]
pub(super) struct Job {
    reply: Reply,
    deadline: Deadline,
    admission: Option<Admission>,
}

/// A call under way at a client.
#[derive(Clone, Copy, Debug)]
struct OpenCall {
    /// Its number (its request's `seq`), unique at the client across restarts.
    seq: u64,
    /// When it started, in global time.
    started: u64,
    /// Whether it counts in the report's call figures.
    measured: bool,
}

/// A client member's running process, as far as the workload goes.
#[derive(Debug)]
struct ClientHost {
    client: Client,
    /// The member's process life this client runs in.
    life: u32,
    /// The global time of the timer queued for it (`u64::MAX`: none).
    timer_at: u64,
    calls: BTreeMap<CallId, OpenCall>,
    /// Attempts under way: when they were sent (client clock) and why.
    sent: BTreeMap<(CallId, AttemptId), (Instant, AttemptKind)>,
    /// Timer wake-ups at one global instant in a row (a client that never moves its
    /// deadline past `now` would spin the engine).
    spins: (u64, u32),
}

/// A worker member's running process: its servers, queue, limit and window.
#[derive(Debug)]
struct Server {
    busy: u32,
    queue: VecDeque<Job>,
    limit: Option<ConcurrencyLimit>,
    window: Option<IdempotencyWindow<Answer>>,
    /// Copies of requests in progress, waiting for their answer.
    waiters: BTreeMap<RequestId, Vec<Reply>>,
}

/// What a worker does with a request that arrived.
enum Step {
    /// Answer it at once.
    Answer(Answer),
    /// Nothing: a copy is in progress, and its answer will go to this one too.
    Wait,
    /// Refuse it: over the concurrency limit.
    Shed,
    /// Run it (with its admission under the limit, if there is one).
    Run(Option<Admission>),
}

impl Server {
    /// Asks the idempotency window (if `use_window`) and the concurrency limit what to do
    /// with `reply`'s request, arrived at `local`.
    fn admit(&mut self, local: Instant, reply: Reply, use_window: bool) -> Step {
        if let Some(window) = self.window.as_mut().filter(|_| use_window) {
            match window.begin(local, reply.request) {
                Seen::Done(answer) => return Step::Answer(*answer),
                Seen::InProgress => {
                    self.waiters.entry(reply.request).or_default().push(reply);
                    return Step::Wait;
                }
                Seen::New => {}
            }
        }
        match self.limit.as_mut().map(ConcurrencyLimit::try_admit) {
            None => Step::Run(None),
            Some(Some(admission)) => Step::Run(Some(admission)),
            Some(None) => {
                // Unserved: a retry must run it.
                if let Some(window) = self.window.as_mut().filter(|_| use_window) {
                    window.abandon(reply.request);
                }
                Step::Shed
            }
        }
    }

    /// `job` was served with `answer`: frees its server and admission, remembers the
    /// answer; returns every copy to answer.
    fn finish(&mut self, job: Job, answer: Answer, use_window: bool) -> Vec<Reply> {
        self.busy = self.busy.saturating_sub(1);
        if let (Some(limit), Some(admission)) = (self.limit.as_mut(), job.admission) {
            limit.release(admission);
        }
        if let Some(window) = self.window.as_mut().filter(|_| use_window) {
            window.complete(job.reply.request, answer);
        }
        let mut copies = vec![job.reply];
        copies.extend(self.waiters.remove(&job.reply.request).unwrap_or_default());
        copies
    }

    /// The next job in the queue whose deadline has not passed at `local`, and the
    /// requests dropped unserved before it (their deadline passed while they waited).
    fn next_job(&mut self, local: Instant) -> (Option<Job>, Vec<Reply>) {
        let mut expired = Vec::new();
        while let Some(job) = self.queue.pop_front() {
            if !job.deadline.is_expired(local) {
                return (Some(job), expired);
            }
            if let (Some(limit), Some(admission)) = (self.limit.as_mut(), job.admission) {
                limit.release(admission);
            }
            if let Some(window) = self.window.as_mut() {
                window.abandon(job.reply.request);
            }
            // Copies waiting on it are dropped too: their callers' own deadlines end them.
            self.waiters.remove(&job.reply.request);
            expired.push(job.reply);
        }
        (None, expired)
    }
}

/// The workload's state beside the hosts.
#[derive(Debug)]
pub(super) struct Driver {
    config: Workload,
    policy: Policy,
    is_client: Vec<bool>,
    is_worker: Vec<bool>,
    clients: Vec<Option<ClientHost>>,
    servers: Vec<Option<Server>>,
    /// Per member, across its restarts: its next request number, calls started, and
    /// client processes started.
    next_seq: Vec<u64>,
    started: Vec<u64>,
    client_starts: Vec<u32>,
    report: WorkloadReport,
}

impl Driver {
    /// The driver of `config` for members `ids` (in slot order); `config` is validated.
    pub(super) fn new(config: Workload, ids: &[NodeId]) -> Self {
        let n = ids.len();
        let role = |of: &[NodeId]| ids.iter().map(|id| of.contains(id)).collect::<Vec<_>>();
        Self {
            policy: config.client_policy(),
            is_client: role(&config.clients),
            is_worker: role(&config.workers),
            clients: (0..n).map(|_| None).collect(),
            servers: (0..n).map(|_| None).collect(),
            next_seq: vec![0; n],
            started: vec![0; n],
            client_starts: vec![0; n],
            report: WorkloadReport::new(config.measured_from()),
            config,
        }
    }
}

impl Workload {
    /// Tags the workers among `configs` with [`crate::workload::WORKER_TAG`].
    pub(super) fn tag_workers(&self, configs: &mut [conclave_core::NodeConfig]) {
        for c in configs.iter_mut().filter(|c| self.workers.contains(&c.id)) {
            c.tags.extend(Self::worker_tags());
        }
    }
}

impl Sim {
    fn driver(&mut self) -> &mut Driver {
        // Every caller runs only in a run with a workload (the hooks check first).
        self.workload.as_deref_mut().expect("a run with a workload")
    }

    /// Member `i`'s clock reading now.
    fn reading(&mut self, i: u32) -> Instant {
        let now = self.now;
        Instant::from_nanos(if self.slots[i as usize].skewed { self.hosts[i as usize].clock.local(now) } else { now })
    }

    /// Whether member `i`'s process is stalled now; if so, `due` is queued again for when
    /// it resumes.
    fn stalled(&mut self, i: u32, due: Box<Due>) -> Option<Box<Due>> {
        let busy = self.slots[i as usize].busy_until;
        if self.now < busy {
            self.push(busy, What::Work(due));
            None
        } else {
            Some(due)
        }
    }

    /// Hook: member `i`'s process started; its client and its worker start with it.
    pub(super) fn workload_started(&mut self, i: u32) {
        let Some(w) = self.workload.as_deref() else { return };
        let (client, worker) = (w.is_client[i as usize], w.is_worker[i as usize]);
        let life = self.slots[i as usize].life;
        if worker {
            let w = self.driver();
            let server = Server {
                busy: 0,
                queue: VecDeque::new(),
                limit: w.policy.concurrency_limit.map(ConcurrencyLimit::new),
                window: w.policy.idempotency.clone().map(IdempotencyWindow::new),
                waiters: BTreeMap::new(),
            };
            w.servers[i as usize] = Some(server);
        }
        if !client {
            return;
        }
        let local = self.reading(i);
        let id = self.slots[i as usize].id;
        let seed = self.seed ^ CLIENT_SEED_SALT;
        let Some(w) = self.workload.as_deref_mut() else { return };
        let starts = w.client_starts[i as usize];
        w.client_starts[i as usize] += 1;
        // The policy was validated when the simulation was built.
        let mut client =
            Client::new(w.policy.clone(), node_seed(seed, id, starts), local).expect("a policy validated at build");
        if let Some(node) = self.slots[i as usize].node.as_deref() {
            client.sync_membership(local, node);
        }
        let host = ClientHost {
            client,
            life,
            timer_at: u64::MAX,
            calls: BTreeMap::new(),
            sent: BTreeMap::new(),
            spins: (u64::MAX, 0),
        };
        w.clients[i as usize] = Some(host);
        let from = w.config.start.as_nanos().max(self.now);
        match w.config.arrivals {
            Arrivals::Poisson { per_sec } => {
                let at = from + self.exponential(per_sec);
                self.push(at, What::Work(Box::new(Due::Arrival { node: i, life })));
            }
            Arrivals::Closed { outstanding, .. } => {
                // Spread over a millisecond, so the clients do not start in lockstep.
                for _ in 0..outstanding {
                    let at = from + self.rng.below(1_000_000);
                    self.push(at, What::Work(Box::new(Due::Arrival { node: i, life })));
                }
            }
        }
        self.arm_client(i);
    }

    /// Hook: member `i`'s process stopped; its client's calls are abandoned, its worker's
    /// queue is gone.
    pub(super) fn workload_stopped(&mut self, i: u32) {
        let Some(w) = self.workload.as_deref_mut() else { return };
        w.servers[i as usize] = None;
        let Some(host) = w.clients[i as usize].take() else { return };
        w.report.add_client(host.client.metrics());
        let client = self.slots[i as usize].id;
        for open in host.calls.values() {
            if open.measured {
                self.driver().report.abandoned += 1;
            }
            self.record_work(WorkloadEvent::CallAbandoned { client, call: open.seq });
        }
    }

    /// Hook: member `i` emitted a membership event; its client takes it in.
    pub(super) fn workload_event(&mut self, i: u32, event: &Event) {
        let is_client = self.workload.as_deref().is_some_and(|w| w.clients[i as usize].is_some());
        if is_client {
            self.drive_client(i, |client, now| client.handle_event(now, event));
        }
    }

    /// Hook: a workload event from the queue, at global time `at`.
    pub(super) fn work(&mut self, at: u64, due: Box<Due>) {
        match *due {
            Due::Arrival { node, life } => {
                if self.slots[node as usize].life == life && self.slots[node as usize].node.is_some() {
                    if let Some(due) = self.stalled(node, due) {
                        let Due::Arrival { node, .. } = *due else { return };
                        self.arrival(node);
                    }
                }
            }
            Due::ClientTimer { node, life } => self.client_timer(at, node, life),
            Due::Message { to, from, message } => {
                if self.slots[to as usize].node.is_none() {
                    self.lost(from, to, &message, DropReason::Down);
                    return;
                }
                let Some(due) = self.stalled(to, due) else { return };
                let Due::Message { to, from, message } = *due else { return };
                match message {
                    Message::Request { reply, budget } => self.serve(to, from, reply, budget),
                    Message::Answer { reply, answer } => self.take_answer(to, reply, answer),
                }
            }
            Due::Served { node, life, .. } => {
                if self.slots[node as usize].life != life || self.slots[node as usize].node.is_none() {
                    return; // the process that served it is gone
                }
                let Some(due) = self.stalled(node, due) else { return };
                let Due::Served { node, job, .. } = *due else { return };
                self.served(node, job);
            }
        }
    }

    /// Hook: the run ends; the figures.
    pub(super) fn finish_workload(&mut self) -> Option<WorkloadReport> {
        let mut w = self.workload.take()?;
        let mut report = std::mem::replace(&mut w.report, WorkloadReport::new(Instant::ZERO));
        for host in w.clients.iter().flatten() {
            report.add_client(host.client.metrics());
            report.open += host.calls.values().filter(|c| c.measured).count() as u64;
        }
        Some(report)
    }

    // ----- clients -----------------------------------------------------------------

    /// A draw of an exponential delay, in nanoseconds, at `per_sec` a second.
    fn exponential(&mut self, per_sec: f64) -> u64 {
        let u = 1.0 - self.rng.unit(); // in (0, 1]
        let secs = -libm::log(u) / per_sec;
        // A delay of more than a year is as good as never; the cast saturates.
        (secs.min(3.15e7) * 1e9) as u64
    }

    /// Client `i` starts a call, if it may.
    fn arrival(&mut self, i: u32) {
        let now = self.now;
        let local = self.reading(i);
        let client = self.slots[i as usize].id;
        let w = self.driver();
        if w.config.stop.is_some_and(|stop| now >= stop.as_nanos())
            || w.config.calls_per_client.is_some_and(|limit| w.started[i as usize] >= limit)
        {
            return; // no more calls, and no more arrivals
        }
        let Some(host) = w.clients[i as usize].as_mut() else { return };
        let seq = w.next_seq[i as usize];
        w.next_seq[i as usize] += 1;
        w.started[i as usize] += 1;
        let deadline = w.config.deadline;
        let measured = now >= w.config.measured_from().as_nanos();
        let call = host.client.start_call(local, RequestId::new(client.0, seq), Deadline::after(local, deadline));
        host.calls.insert(call, OpenCall { seq, started: now, measured });
        let life = host.life;
        if measured {
            w.report.calls += 1;
        }
        let next = match w.config.arrivals {
            Arrivals::Poisson { per_sec } => Some(per_sec),
            Arrivals::Closed { .. } => None,
        };
        self.record_work(WorkloadEvent::CallStarted { client, call: seq, deadline });
        self.drive_client(i, |_, _| ());
        if let Some(per_sec) = next {
            let at = now + self.exponential(per_sec);
            self.push(at, What::Work(Box::new(Due::Arrival { node: i, life })));
        }
    }

    /// A closed loop's next call after one ended at client `i`.
    fn next_call(&mut self, i: u32, life: u32) {
        if let Arrivals::Closed { think, .. } = self.driver().config.arrivals {
            let at = self.now + nanos(think);
            self.push(at, What::Work(Box::new(Due::Arrival { node: i, life })));
        }
    }

    fn client_timer(&mut self, at: u64, i: u32, life: u32) {
        let now = self.now;
        let busy = self.slots[i as usize].busy_until;
        let w = self.driver();
        let Some(host) = w.clients[i as usize].as_mut() else { return };
        if host.life != life || host.timer_at != at {
            return; // a stale wake-up: a newer one replaced it
        }
        host.timer_at = u64::MAX;
        if now < busy {
            host.timer_at = busy;
            self.push(busy, What::Work(Box::new(Due::ClientTimer { node: i, life })));
            return;
        }
        host.spins = if host.spins.0 == now { (now, host.spins.1 + 1) } else { (now, 0) };
        if host.spins.1 == 10_000 {
            let id = self.slots[i as usize].id;
            let message = format!(
                "{id}'s resilience client keeps its poll_timeout at or before its now after handle_timeout: the engine would spin forever; its timers now wait 1 ms"
            );
            self.violation("no-timer-livelock", Finding { at: Instant::from_nanos(now), message });
        }
        self.drive_client(i, |client, now| client.handle_timeout(now));
    }

    /// Gives client `i` an input at its clock's reading, then acts on its actions and
    /// re-arms its timer.
    fn drive_client(&mut self, i: u32, input: impl FnOnce(&mut Client, Instant)) {
        let local = self.reading(i);
        let Some(host) = self.workload.as_deref_mut().and_then(|w| w.clients[i as usize].as_mut()) else { return };
        input(&mut host.client, local);
        let mut actions = Vec::new();
        while let Some(action) = host.client.poll_action() {
            actions.push(action);
        }
        for action in actions {
            self.act(i, local, action);
        }
        self.arm_client(i);
    }

    /// Queues a wake-up for client `i`'s next timeout, if earlier than the one queued.
    fn arm_client(&mut self, i: u32) {
        let now = self.now;
        let Some(w) = self.workload.as_deref_mut() else { return };
        let Some(host) = w.clients[i as usize].as_mut() else { return };
        let Some(deadline) = host.client.poll_timeout() else { return };
        let slot = &self.slots[i as usize];
        let global =
            if slot.skewed { self.hosts[i as usize].clock.global_at(deadline.as_nanos()) } else { deadline.as_nanos() };
        let mut at = global.max(now);
        if host.spins.1 >= 10_000 && host.spins.0 == now {
            at = now + 1_000_000;
        }
        if at < host.timer_at {
            host.timer_at = at;
            let life = host.life;
            self.push(at, What::Work(Box::new(Due::ClientTimer { node: i, life })));
        }
    }

    /// Client `i`'s process, if it runs.
    fn client_host(&mut self, i: u32) -> Option<&mut ClientHost> {
        self.workload.as_deref_mut().and_then(|w| w.clients[i as usize].as_mut())
    }

    /// Carries out one of client `i`'s actions; `local` is its clock's reading.
    fn act(&mut self, i: u32, local: Instant, action: Action) {
        let now = self.now;
        let client = self.slots[i as usize].id;
        let defects = self.driver().config.defects.clone();
        let Some(host) = self.client_host(i) else { return };
        let life = host.life;
        match action {
            Action::Send { call, attempt, kind, worker, request, budget, .. } => {
                let Some(open) = host.calls.get(&call).copied() else { return };
                host.sent.insert((call, attempt), (local, kind));
                let copies = if defects.client_sends_twice { 2 } else { 1 };
                if open.measured {
                    let report = &mut self.driver().report;
                    report.attempts += copies;
                    match kind {
                        AttemptKind::First => {}
                        AttemptKind::Retry => report.retries += 1,
                        AttemptKind::Hedge => report.hedges += 1,
                    }
                }
                let reply = Reply { client: i, life, call, attempt, request };
                let Some(to) = self.slot(worker) else { return };
                for _ in 0..copies {
                    let event = WorkloadEvent::AttemptSent { client, call: open.seq, attempt: attempt.0, kind, worker };
                    self.record_work(event);
                    self.carry(i, to, Message::Request { reply, budget });
                }
            }
            Action::Cancel { call, attempt, .. } => {
                host.sent.remove(&(call, attempt));
            }
            Action::Complete { call, attempt, worker, attempts } => {
                let won = host.sent.get(&(call, attempt)).map(|s| s.1);
                host.sent.retain(|(c, _), _| *c != call);
                let Some(open) = host.calls.remove(&call) else { return };
                let latency = Duration::from_nanos(now - open.started);
                if open.measured {
                    let report = &mut self.driver().report;
                    report.completed += 1;
                    report.record_latency(latency);
                    if won == Some(AttemptKind::Hedge) {
                        report.hedge_wins += 1;
                    }
                }
                self.record_work(WorkloadEvent::CallCompleted { client, call: open.seq, worker, attempts, latency });
                self.next_call(i, life);
            }
            Action::Fail { call, error, attempts, .. } => {
                host.sent.retain(|(c, _), _| *c != call);
                let Some(open) = host.calls.remove(&call) else { return };
                if defects.client_drops_failures {
                    return; // the planted defect: the caller is never told
                }
                if open.measured {
                    self.driver().report.add_failure(error);
                }
                self.record_work(WorkloadEvent::CallFailed { client, call: open.seq, error, attempts });
                self.next_call(i, life);
            }
            Action::BreakerChanged { worker, transition } => {
                let (from, to) = (transition.from, transition.to);
                self.record_work(WorkloadEvent::BreakerChanged { client, worker, from, to });
            }
        }
    }

    /// An answer reached client `i`.
    fn take_answer(&mut self, i: u32, reply: Reply, answer: Answer) {
        let w = self.driver();
        let Some(host) = w.clients[i as usize].as_mut() else { return };
        if host.life != reply.life {
            return; // for a call of a process that is gone
        }
        let Some(&(sent, _)) = host.sent.get(&(reply.call, reply.attempt)) else {
            return; // the attempt ended already (answered, cancelled, timed out)
        };
        if answer == Err(AttemptError::Overloaded) && host.calls.get(&reply.call).is_some_and(|c| c.measured) {
            w.report.shed += 1;
        }
        self.drive_client(i, |client, now| {
            client.handle_response(now, reply.call, reply.attempt, answer.map(|()| now - sent));
        });
    }

    // ----- workers -----------------------------------------------------------------

    /// A request reached worker `w` from member `from`.
    fn serve(&mut self, w: u32, from: u32, reply: Reply, budget: Duration) {
        let local = self.reading(w);
        let (worker, client) = (self.slots[w as usize].id, self.slots[from as usize].id);
        let call = reply.request.seq;
        self.record_work(WorkloadEvent::RequestArrived { worker, client, call, local });
        let d = self.driver();
        let always_fail = d.config.knobs.get(&worker).is_some_and(|k| k.always_fail);
        let use_window = !d.config.defects.worker_skips_idempotency;
        let (capacity, crash_backlog) = (d.config.capacity, d.config.crash_backlog);
        let Some(server) = d.servers[w as usize].as_mut() else { return };
        let step =
            if always_fail { Step::Answer(Err(AttemptError::Failed)) } else { server.admit(local, reply, use_window) };
        let admission = match step {
            Step::Answer(answer) => return self.answer(w, reply, answer),
            Step::Wait => return,
            Step::Shed => {
                self.record_work(WorkloadEvent::Shed { worker, client, call });
                return self.answer(w, reply, Err(AttemptError::Overloaded));
            }
            Step::Run(admission) => admission,
        };
        let job = Job { reply, deadline: Deadline::after(local, budget), admission };
        let backlog = if server.busy < capacity {
            let backlog = server.busy + 1 + server.queue.len() as u32;
            self.begin_service(w, job);
            backlog
        } else {
            server.queue.push_back(job);
            server.busy + server.queue.len() as u32
        };
        if crash_backlog.is_some_and(|limit| backlog > limit) {
            let now = Instant::from_nanos(self.now);
            self.driver().report.overload_crashes.push((now, worker, backlog));
            self.record_work(WorkloadEvent::OverloadCrash { worker, backlog });
            self.apply(Fault::Crash(worker));
        }
    }

    /// Worker `w` starts serving `job` on a free server.
    fn begin_service(&mut self, w: u32, job: Job) {
        let (worker, client) = (self.slots[w as usize].id, self.slots[job.reply.client as usize].id);
        let life = self.slots[w as usize].life;
        let d = self.driver();
        let slowdown = d.config.knobs.get(&worker).map_or(1.0, |k| k.slowdown);
        let service = d.config.service.clone();
        let Some(server) = d.servers[w as usize].as_mut() else { return };
        server.busy += 1;
        *d.report.executed.entry(worker).or_insert(0) += 1;
        // A float's cast to an integer saturates; slowdowns are finite and positive.
        let service = (sample_latency(&service, &mut self.rng) as f64 * slowdown) as u64;
        self.record_work(WorkloadEvent::Executed { worker, client, call: job.reply.request.seq });
        let at = self.now.saturating_add(service);
        self.push(at, What::Work(Box::new(Due::Served { node: w, life, job })));
    }

    /// Worker `w` finished `job`: it answers every copy, then takes the next job whose
    /// deadline has not passed.
    fn served(&mut self, w: u32, job: Job) {
        let local = self.reading(w);
        let worker = self.slots[w as usize].id;
        let d = self.driver();
        let use_window = !d.config.defects.worker_skips_idempotency;
        let Some(server) = d.servers[w as usize].as_mut() else { return };
        let answer: Answer = Ok(());
        let copies = server.finish(job, answer, use_window);
        let (next, expired) = server.next_job(local);
        d.report.expired += expired.len() as u64;
        for reply in copies {
            self.answer(w, reply, answer);
        }
        for reply in expired {
            let client = self.slots[reply.client as usize].id;
            self.record_work(WorkloadEvent::Expired { worker, client, call: reply.request.seq });
        }
        if let Some(job) = next {
            self.begin_service(w, job);
        }
    }

    /// Worker `w` answers `reply`.
    fn answer(&mut self, w: u32, reply: Reply, answer: Answer) {
        self.carry(w, reply.client, Message::Answer { reply, answer });
    }

    // ----- the network -------------------------------------------------------------

    /// Puts a workload message on the link `from -> to`: as a membership datagram, it may
    /// be cut, lost, delayed, reordered, duplicated or held back; a corrupted one is
    /// dropped by its checksum (so counted lost).
    fn carry(&mut self, from: u32, to: u32, message: Message) {
        if self.net.is_cut(from, to) {
            self.lost(from, to, &message, DropReason::Partition);
            return;
        }
        let params = self.net.params(from, to).clone();
        if self.rng.chance(params.loss) {
            self.lost(from, to, &message, DropReason::Loss);
            return;
        }
        let mut delay = sample_latency(&params.latency, &mut self.rng);
        if self.rng.chance(params.reorder) {
            delay += self.rng.below(nanos(params.reorder_delay) + 1);
        }
        if self.rng.chance(params.corrupt) {
            self.lost(from, to, &message, DropReason::Loss);
            return;
        }
        let now = self.now;
        if self.rng.chance(params.duplicate) {
            let again = sample_latency(&params.latency, &mut self.rng);
            self.push(now + again, What::Work(Box::new(Due::Message { to, from, message })));
        }
        if self.rng.chance(params.stale) {
            let later = self.rng.below(nanos(params.stale_delay) + 1);
            self.push(now + delay + later, What::Work(Box::new(Due::Message { to, from, message })));
        }
        self.push(now + delay, What::Work(Box::new(Due::Message { to, from, message })));
    }

    fn lost(&mut self, from: u32, to: u32, message: &Message, reason: DropReason) {
        let (reply, answer) = match message {
            Message::Request { reply, .. } => (reply, false),
            Message::Answer { reply, .. } => (reply, true),
        };
        self.driver().report.lost += 1;
        let event = WorkloadEvent::Lost {
            from: self.slots[from as usize].id,
            to: self.slots[to as usize].id,
            client: self.slots[reply.client as usize].id,
            call: reply.request.seq,
            answer,
            reason,
        };
        self.record_work(event);
    }

    // ----- the trace ---------------------------------------------------------------

    /// Puts `event` in the trace and its hash, and hands it to the checkers that read the
    /// workload.
    fn record_work(&mut self, event: WorkloadEvent) {
        self.hasher.lane(tag::WORKLOAD);
        self.hasher.lane(self.now);
        event.hash(&mut self.hasher);
        let at = self.now();
        let mut findings = std::mem::take(&mut self.findings);
        for c in 0..self.checkers.len() {
            if self.checkers[c].wants_workload() {
                self.checkers[c].workload(at, &event, &mut findings);
                self.report(c, &mut findings);
            }
        }
        self.findings = findings;
        if self.mode != TraceMode::HashOnly {
            self.records.push(TraceRecord::Workload { at, event });
        }
    }
}
