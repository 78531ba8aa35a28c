//! The calling side of RPC: [`Cluster::call`](crate::Cluster::call)'s one request to a
//! named member, and [`ServiceClient`], which calls a service's workers through the
//! resilience policies of [`conclave_core::resilience`].
//!
//! A service client is a handle on a task that owns one core
//! [`Client`](conclave_core::resilience::Client): the task feeds it the member's own
//! membership events, the calls its handles start, the answers of their attempts and its
//! timers (real time read from the member's [`Clock`](crate::Clock), as the driver does),
//! and acts on what it decides: each [`Action::Send`] is an RPC on a stream of its own,
//! run concurrently with the call's other attempts (so a hedge races the attempt it
//! hedges); each [`Action::Cancel`] resets that attempt's stream, which tells the worker to
//! stop its work if no copy waits for it; [`Action::Complete`] and [`Action::Fail`] answer
//! the caller. No policy is decided here: every one is the core's.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conclave_core::resilience::{
    Action, AttemptError, AttemptId, CallId, Client, ClientMetrics, Deadline, Policy, RequestId,
};
use conclave_core::{Event, Instant, NodeId};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::cluster::{lock, random_seed, read};
use crate::driver::{adopt, bump, connect, Shared};
use crate::error::Error;
use crate::rpc::{self, FrameError, RequestFrame, Status, MAX_METHOD_LEN};
use crate::server;

// ----- one request ----------------------------------------------------------------------

/// A request on its way out.
struct Outgoing<'a> {
    /// The call's number across its attempts; 0: a call never retried.
    number: u64,
    /// The time the target has.
    budget: Duration,
    method: &'a str,
    body: &'a Bytes,
}

/// What became of one request.
enum Reply {
    /// Answered, with this body.
    Answered(Bytes),
    /// Answered with another status: refused, shed, expired, failed in its handler ...
    Declined(Error, AttemptError),
    /// No answer: the connection failed, or the answer did not read.
    Broken(Error),
}

/// Refuses, before anything is sent, a request that cannot be: a method name too long, a
/// frame past the limit, or a member that stopped.
fn check_request(shared: &Shared, method: &str, body: usize) -> Result<(), Error> {
    if method.len() > MAX_METHOD_LEN {
        return Err(Error::Frame(format!("method name of {} B exceeds {} B", method.len(), MAX_METHOD_LEN)));
    }
    let len = rpc::request_len(method, body);
    if len > shared.limits.max_frame {
        return Err(Error::Frame(format!("request of {len} B exceeds the limit of {} B", shared.limits.max_frame)));
    }
    if let Some(why) = lock(&shared.stopped).clone() {
        return Err(Error::Stopped(why));
    }
    Ok(())
}

/// Sends `request` to `target` at `addr` and reads its answer, unless `cancel` completes
/// first (`None`: then the stream is reset, which tells the target to stop). A request to
/// this member itself is served here, without a connection to itself. Counted in the
/// runtime's counters and, when answered, its latency histogram.
async fn exchange(
    shared: &Arc<Shared>,
    target: NodeId,
    addr: SocketAddr,
    request: &Outgoing<'_>,
    cancel: impl Future<Output = ()>,
) -> Option<Reply> {
    tokio::pin!(cancel);
    bump(&shared.counters.rpc_calls);
    let start = tokio::time::Instant::now();
    let response = if target == shared.id {
        let body = request.body.clone();
        let served = server::respond(shared, target, request.number, request.budget, request.method, body, &mut cancel);
        Ok(served.await?.slice(4..))
    } else {
        let frame = rpc::encode_request(&RequestFrame {
            sender: shared.id,
            number: request.number,
            budget: request.budget,
            method: request.method,
            body: request.body,
        });
        let broken = |why: String| Error::Connection { target, why };
        // `biased`: the exchange first, the cancel switch only while it waits.
        match tokio::select! { biased; opened = open(shared, target, addr) => opened, () = &mut cancel => return None }
        {
            Err(e) => Err(e),
            Ok((mut send, mut recv)) => {
                let outcome = {
                    let exchange = async {
                        rpc::write_frame(&mut send, frame).await.map_err(|e| broken(e.to_string()))?;
                        let _ = send.finish();
                        rpc::read_frame(&mut recv, shared.limits.max_frame).await.map_err(|e| match e {
                            FrameError::Truncated => broken("the stream ended before a response".into()),
                            e => Error::Frame(e.to_string()),
                        })
                    };
                    tokio::select! { biased; read = exchange => Some(read), () = &mut cancel => None }
                };
                match outcome {
                    Some(read) => read.map(Bytes::from),
                    None => {
                        let _ = send.reset(rpc::code::CANCELLED.into());
                        let _ = recv.stop(rpc::code::CANCELLED.into());
                        return None;
                    }
                }
            }
        }
    };
    let reply = match response {
        Ok(response) => read_reply(target, request.method, response),
        Err(e) => Reply::Broken(e),
    };
    if let Reply::Answered(_) = reply {
        bump(&shared.counters.rpc_ok);
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
        lock(&shared.latency).saturating_record(micros);
    } else {
        bump(&shared.counters.rpc_failed);
    }
    Some(reply)
}

/// Opens a stream to `target` at `addr`, on the pooled connection or a new one.
async fn open(
    shared: &Arc<Shared>,
    target: NodeId,
    addr: SocketAddr,
) -> Result<(quinn::SendStream, quinn::RecvStream), Error> {
    let broken = |why: String| Error::Connection { target, why };
    let pooled = lock(&shared.pool).ready(addr);
    let (conn, id) = match pooled {
        Some(pooled) => pooled,
        None => {
            let (conn, id) = connect(shared, addr).await.map_err(broken)?;
            adopt(shared, conn.clone(), id);
            (conn, id)
        }
    };
    if id != target {
        return Err(broken(format!("the member at {addr} is not {target:?}")));
    }
    conn.open_bi().await.map_err(|e| broken(e.to_string()))
}

/// What a response frame from `target` says.
fn read_reply(target: NodeId, method: &str, response: Bytes) -> Reply {
    let method = || method.to_string();
    let text = |body: &[u8]| String::from_utf8_lossy(body).into_owned();
    let (status, body) = match rpc::decode_response(&response) {
        Ok(read) => read,
        Err(e) => return Reply::Broken(Error::Frame(format!("the answer of {target:?}: {e}"))),
    };
    let (error, attempt) = match status {
        Status::Ok => return Reply::Answered(response.slice_ref(body)),
        // Another worker may serve it: this one is misconfigured, and its breaker says so.
        Status::NoSuchMethod => (Error::NoSuchMethod { target, method: method() }, AttemptError::Failed),
        Status::HandlerError => (Error::Remote { target, method: method(), message: text(body) }, AttemptError::Failed),
        // The request itself is wrong (too large, malformed): no attempt can succeed.
        Status::Refused => (Error::Frame(format!("refused by {target:?}: {}", text(body))), AttemptError::Fatal),
        Status::Overloaded => (Error::Overloaded { target, method: method() }, AttemptError::Overloaded),
        Status::Expired => (
            Error::Remote {
                target,
                method: method(),
                message: "dropped unanswered: the time the call gave it ran out".into(),
            },
            AttemptError::Timeout,
        ),
        Status::AnswerNotKept => (
            Error::Remote {
                target,
                method: method(),
                message: "it ran there already, and its answer was too large to keep for a copy".into(),
            },
            AttemptError::Failed,
        ),
    };
    Reply::Declined(error, attempt)
}

/// [`Cluster::call`](crate::Cluster::call): one request to `target`, answered within
/// `deadline`.
pub(crate) async fn call(
    shared: &Arc<Shared>,
    target: NodeId,
    method: &str,
    body: Bytes,
    deadline: Duration,
) -> Result<Bytes, Error> {
    check_request(shared, method, body.len())?;
    let addr = read(&shared.members)
        .iter()
        .find(|m| m.id == target && m.state.is_live())
        .map(|m| m.addr)
        .ok_or(Error::UnknownMember(target))?;
    let request = Outgoing { number: 0, budget: deadline, method, body: &body };
    let expired = || Error::DeadlineExceeded { target, method: method.to_string(), deadline };
    match exchange(shared, target, addr, &request, tokio::time::sleep(deadline)).await {
        None => {
            bump(&shared.counters.rpc_failed);
            Err(expired())
        }
        Some(Reply::Answered(answer)) => Ok(answer),
        Some(Reply::Declined(_, AttemptError::Timeout)) => Err(expired()),
        Some(Reply::Declined(error, _) | Reply::Broken(error)) => Err(error),
    }
}

// ----- the service client ---------------------------------------------------------------

/// The figures of a member's service clients, for [`crate::Metrics::resilience`].
#[derive(Debug, Default)]
pub(crate) struct ServiceFigures {
    /// Those running, by their number.
    live: BTreeMap<u64, ClientMetrics>,
    /// The sum of those that stopped.
    retired: ClientMetrics,
    next: u64,
}

impl ServiceFigures {
    /// Every service client's figures, summed.
    pub(crate) fn total(&self) -> ClientMetrics {
        let mut total = self.retired;
        for figures in self.live.values() {
            total += figures;
        }
        total
    }
}

/// A client of a service: calls a method on the workers its [`Policy`] picks (its
/// [`TagFilter`](conclave_core::resilience::TagFilter) over this member's view), through
/// every resilience policy of [`conclave_core::resilience`]: worker selection that skips
/// suspect, failed and minority-side members and members whose circuit breaker is open;
/// failover to an untried worker; retries with backoff and jitter, within a retry budget;
/// hedging after a latency quantile; client-side adaptive throttling; deadlines that
/// shrink on the way. Made by [`Cluster::service`](crate::Cluster::service).
///
/// Every attempt of a call carries the call's request number, so a worker runs it once
/// within its idempotency window (see [`ClusterBuilder::serving`](crate::ClusterBuilder::serving)),
/// and the time left to the call's deadline, so a worker drops work nobody waits for.
///
/// Cheap to clone (the clones share one client and its figures); calls from many tasks
/// run concurrently. The client stops when its last clone is dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use conclave_core::resilience::{Policy, TagFilter};
/// # async fn run(node: conclave_quic::Cluster) -> Result<(), conclave_quic::Error> {
/// let mut policy = Policy::default();
/// policy.workers = TagFilter::any().with("worker", "resize");
/// policy.retry.attempt_timeout = Some(Duration::from_millis(250));
/// let resize = node.service(policy)?;
/// let image = resize.call("resize", &b"..."[..], Duration::from_secs(1)).await?;
/// println!("{} calls, {} retries", resize.metrics().calls, resize.metrics().retries);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ServiceClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    policy: Policy,
    /// Its number among the member's service clients (for the figures).
    number: u64,
    commands: mpsc::Sender<Command>,
    /// The next request number (never 0).
    next_request: AtomicU64,
    /// Workers usable now, as of the client's last input.
    usable: Arc<AtomicUsize>,
}

/// What a handle tells the client task.
#[derive(Debug)]
enum Command {
    /// Start a call.
    Start {
        request: u64,
        method: Arc<str>,
        body: Bytes,
        deadline: Duration,
        reply: oneshot::Sender<Result<Bytes, Error>>,
    },
    /// The caller no longer waits for the call (its future was dropped).
    Abandon { request: u64 },
}

/// How many calls may wait for the client task to take them before a caller waits too.
const COMMANDS: usize = 1024;

/// Made by [`Cluster::service`](crate::Cluster::service).
pub(crate) fn service(shared: &Arc<Shared>, policy: Policy) -> Result<ServiceClient, Error> {
    let now = shared.clock.now();
    let mut client = Client::new(policy.clone(), random_seed(), now)?;
    // Subscribed before the copy of the view is read: an event that comes between is
    // applied after it (each event carries its member whole, so the newest state wins).
    let events = shared.events.subscribe();
    client.sync_members(now, read(&shared.members).iter(), lock(&shared.partition).as_ref());
    let usable = Arc::new(AtomicUsize::new(client.registry().usable(now)));
    let number = {
        let mut figures = lock(&shared.resilience);
        figures.next += 1;
        let number = figures.next;
        figures.live.insert(number, *client.metrics());
        number
    };
    let (commands, inbox) = mpsc::channel(COMMANDS);
    let (answers_tx, answers) = mpsc::unbounded_channel();
    let task = Task {
        shared: shared.clone(),
        client,
        number,
        usable: usable.clone(),
        calls: BTreeMap::new(),
        requests: BTreeMap::new(),
        attempts: BTreeMap::new(),
        answered: None,
        answers_tx,
    };
    tokio::spawn(task.run(inbox, events, answers));
    // Request numbers start at a random point, so a client made again (in this process or
    // after a restart) does not reuse the numbers a worker's window still holds.
    let next_request = AtomicU64::new(random_seed().max(1));
    Ok(ServiceClient {
        inner: Arc::new(Inner { shared: shared.clone(), policy, number, commands, next_request, usable }),
    })
}

impl ServiceClient {
    /// Calls `method` with `body` on a worker, retrying, failing over and hedging as the
    /// policy says, and answers within `deadline`: the answer of the attempt that
    /// succeeded, or one error that says why the call failed ([`Error::Call`], with the
    /// policy's [`CallError`](conclave_core::resilience::CallError), the attempts made
    /// and how the last one failed). A request that cannot be sent at all (a method name
    /// or body too large, a stopped member) is refused at once. Dropping the future
    /// cancels the call's attempts.
    pub async fn call(&self, method: &str, body: impl Into<Bytes>, deadline: Duration) -> Result<Bytes, Error> {
        let inner = &self.inner;
        let body = body.into();
        check_request(&inner.shared, method, body.len())?;
        let request = inner.next_request();
        let (reply, answer) = oneshot::channel();
        let start = Command::Start { request, method: method.into(), body, deadline, reply };
        inner.commands.send(start).await.map_err(|_| inner.stopped())?;
        let mut abandon = Abandon { commands: &inner.commands, request: Some(request) };
        let answer = answer.await;
        abandon.request = None;
        answer.map_err(|_| inner.stopped())?
    }

    /// What this client did so far: calls started, completed and failed per reason,
    /// attempts, retries, hedges, shed and throttled attempts, breaker transitions.
    pub fn metrics(&self) -> ClientMetrics {
        lock(&self.inner.shared.resilience).live.get(&self.inner.number).copied().unwrap_or_default()
    }

    /// The workers a call could go to now: alive, matching the filter, on a running side,
    /// their breaker not open (as of the client's last input: a call, an answer, an event
    /// or a timer).
    pub fn workers(&self) -> usize {
        self.inner.usable.load(Ordering::Relaxed)
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }
}

impl Inner {
    fn next_request(&self) -> u64 {
        loop {
            let n = self.next_request.fetch_add(1, Ordering::Relaxed);
            // 0 on the wire is a call never retried.
            if n != 0 {
                return n;
            }
        }
    }

    fn stopped(&self) -> Error {
        Error::Stopped(lock(&self.shared.stopped).clone().unwrap_or_else(|| "the service client stopped".into()))
    }
}

/// Tells the client task that a call's caller gave up, if its future is dropped before
/// the answer.
struct Abandon<'a> {
    commands: &'a mpsc::Sender<Command>,
    request: Option<u64>,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if let Some(request) = self.request {
            // With the queue full the call ends at its deadline instead.
            let _ = self.commands.try_send(Command::Abandon { request });
        }
    }
}

/// A call under way.
struct Open {
    request: u64,
    method: Arc<str>,
    body: Bytes,
    reply: oneshot::Sender<Result<Bytes, Error>>,
    /// How its last attempt that failed failed, in a line.
    last: Option<String>,
}

/// An attempt under way: when it was sent (on the member's clock), and its cancel switch.
struct Sent {
    at: Instant,
    cancel: oneshot::Sender<()>,
}

/// An attempt's end, from its task.
struct Answered {
    call: CallId,
    attempt: AttemptId,
    reply: Reply,
}

/// The task that owns a service client's core [`Client`].
struct Task {
    shared: Arc<Shared>,
    client: Client,
    number: u64,
    usable: Arc<AtomicUsize>,
    calls: BTreeMap<CallId, Open>,
    /// Calls by their request number (to abandon them).
    requests: BTreeMap<u64, CallId>,
    attempts: BTreeMap<(CallId, AttemptId), Sent>,
    /// The answer of the attempt just reported, until the client says whether it completes
    /// its call.
    answered: Option<(CallId, AttemptId, Bytes)>,
    /// Each attempt's task sends its end here. Unbounded, but each attempt sends once, and
    /// attempts are bounded by the calls under way times the policy's attempts per call.
    answers_tx: mpsc::UnboundedSender<Answered>,
}

impl Task {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: broadcast::Receiver<Event>,
        mut answers: mpsc::UnboundedReceiver<Answered>,
    ) {
        loop {
            self.act();
            let now = self.shared.clock.now();
            let wake = self.client.poll_timeout();
            if wake.is_some_and(|t| t <= now) {
                self.client.handle_timeout(now);
                continue;
            }
            let sleep = wake.map_or(Duration::from_secs(3600), |t| t.saturating_duration_since(now));
            // `biased`: answers first, then what the member saw, then new calls.
            tokio::select! {
                biased;
                Some(answered) = answers.recv() => self.answered(answered),
                event = events.recv() => match event {
                    Ok(event) => self.client.handle_event(self.shared.clock.now(), &event),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Events were missed: the view is read again whole.
                        let shared = &self.shared;
                        let now = shared.clock.now();
                        self.client.sync_members(now, read(&shared.members).iter(), lock(&shared.partition).as_ref());
                    }
                    // The member is gone (its handle and driver dropped): so is the service.
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                command = commands.recv() => match command {
                    Some(Command::Start { request, method, body, deadline, reply }) => {
                        let now = self.shared.clock.now();
                        let id = RequestId::new(self.shared.id.0, request);
                        let call = self.client.start_call(now, id, Deadline::after(now, deadline));
                        self.calls.insert(call, Open { request, method, body, reply, last: None });
                        self.requests.insert(request, call);
                    }
                    Some(Command::Abandon { request }) => {
                        if let Some(call) = self.requests.remove(&request) {
                            self.calls.remove(&call);
                            let _ = self.client.cancel_call(self.shared.clock.now(), call);
                        }
                    }
                    // Every handle is gone.
                    None => break,
                },
                () = tokio::time::sleep(sleep) => self.client.handle_timeout(self.shared.clock.now()),
            }
        }
        // Attempts still under way are cancelled as their switches drop.
        let mut figures = lock(&self.shared.resilience);
        if let Some(mine) = figures.live.remove(&self.number) {
            figures.retired += &mine;
        }
    }

    /// An attempt ended: the client hears how.
    fn answered(&mut self, Answered { call, attempt, reply }: Answered) {
        let Some(sent) = self.attempts.remove(&(call, attempt)) else {
            return; // cancelled meanwhile: its answer no longer counts
        };
        let now = self.shared.clock.now();
        let outcome = match reply {
            Reply::Answered(answer) => {
                self.answered = Some((call, attempt, answer));
                Ok(now.saturating_duration_since(sent.at))
            }
            Reply::Declined(error, attempt_error) => {
                if let Some(open) = self.calls.get_mut(&call) {
                    open.last = Some(error.to_string());
                }
                Err(attempt_error)
            }
            Reply::Broken(error) => {
                if let Some(open) = self.calls.get_mut(&call) {
                    open.last = Some(error.to_string());
                }
                Err(match error {
                    Error::Frame(_) => AttemptError::Failed,
                    _ => AttemptError::Unreachable,
                })
            }
        };
        self.client.handle_response(now, call, attempt, outcome);
    }

    /// Carries out the client's actions, publishes its figures, then answers the callers
    /// whose calls ended (so a caller that has its answer finds its call in the figures).
    fn act(&mut self) {
        let mut ended = Vec::new();
        while let Some(action) = self.client.poll_action() {
            match action {
                Action::Send { call, attempt, worker, addr, budget, .. } => {
                    self.send(call, attempt, worker, addr, budget)
                }
                Action::Cancel { call, attempt, .. } => {
                    if let Some(sent) = self.attempts.remove(&(call, attempt)) {
                        let _ = sent.cancel.send(());
                    }
                }
                Action::Complete { call, attempt, .. } => {
                    let answer = match self.answered.take() {
                        Some((c, a, answer)) if (c, a) == (call, attempt) => answer,
                        // The client completes a call only with the answer just reported.
                        _ => continue,
                    };
                    if let Some(open) = self.end(call) {
                        ended.push((open.reply, Ok(answer)));
                    }
                }
                Action::Fail { call, error, attempts, last } => {
                    if let Some(open) = self.end(call) {
                        let last = open.last.or_else(|| last.map(|e| e.to_string()));
                        let error = Error::Call { method: open.method.to_string(), reason: error, attempts, last };
                        ended.push((open.reply, Err(error)));
                    }
                }
                // Counted in the client's figures.
                Action::BreakerChanged { .. } => {}
            }
        }
        self.answered = None;
        let now = self.shared.clock.now();
        self.usable.store(self.client.registry().usable(now), Ordering::Relaxed);
        if let Some(mine) = lock(&self.shared.resilience).live.get_mut(&self.number) {
            *mine = *self.client.metrics();
        }
        for (reply, answer) in ended {
            // A caller that gave up does not wait for it.
            let _ = reply.send(answer);
        }
    }

    /// Call `call` is over.
    fn end(&mut self, call: CallId) -> Option<Open> {
        let open = self.calls.remove(&call)?;
        self.requests.remove(&open.request);
        Some(open)
    }

    /// Sends attempt `attempt` of `call` to `worker`, giving it `budget`, in a task of its
    /// own.
    fn send(&mut self, call: CallId, attempt: AttemptId, worker: NodeId, addr: SocketAddr, budget: Duration) {
        let Some(open) = self.calls.get(&call) else { return };
        let (cancel, cancelled) = oneshot::channel::<()>();
        self.attempts.insert((call, attempt), Sent { at: self.shared.clock.now(), cancel });
        let (shared, answers) = (self.shared.clone(), self.answers_tx.clone());
        let (request, method, body) = (open.request, open.method.clone(), open.body.clone());
        tokio::spawn(async move {
            let outgoing = Outgoing { number: request, budget, method: &method, body: &body };
            // A dropped switch (the client stopped) cancels too.
            let cancel = async move {
                let _ = cancelled.await;
            };
            if let Some(reply) = exchange(&shared, worker, addr, &outgoing, cancel).await {
                let _ = answers.send(Answered { call, attempt, reply });
            }
        });
    }
}
