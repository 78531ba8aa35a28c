//! The serving side of RPC: what a member does with a request that arrived whole, from the
//! member its certificate names.
//!
//! In order ([`respond`]): the handler is looked up; a request whose budget already ran
//! out is dropped; a copy of a request the idempotency window knows (a retry, a hedge) gets
//! the answer the window keeps, or waits for the copy in progress; past the concurrency
//! limit a request is shed ("overloaded": the caller's client retries elsewhere);
//! otherwise its handler runs until it answers, its budget runs out, or its caller cancels
//! it while no copy waits. Both policies are the core's ([`ConcurrencyLimit`],
//! [`IdempotencyWindow`]), built from the worker side of a
//! [`Policy`](conclave_core::resilience::Policy).
//!
//! A request stopped before it answered (its budget ran out, its caller cancelled it) is
//! forgotten by the window, so a later copy runs it: "once" counts the runs that answered.
//! The window keeps answers up to a bound on their bytes; an answer past it is not kept,
//! and a later copy is told that the request ran and its answer is gone (status 6)
//! rather than run twice.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use conclave_core::resilience::{Admission, ConcurrencyLimit, IdempotencyConfig, IdempotencyWindow, RequestId, Seen};
use conclave_core::{Instant, NodeId};
use tokio::sync::oneshot;

use crate::cluster::{lock, read};
use crate::driver::{bump, Shared};
use crate::rpc::{self, Request, Status};

/// A member's serving state: its concurrency limit, its idempotency window and the copies
/// waiting for a request in progress.
pub(crate) struct Server {
    state: Mutex<Serving>,
    /// Bytes of answers the window keeps now.
    kept: Arc<AtomicUsize>,
    /// The most it may keep.
    max_kept: usize,
}

struct Serving {
    limit: Option<ConcurrencyLimit>,
    window: Option<IdempotencyWindow<Kept>>,
    /// Per request in progress, the copies waiting for its answer (their streams are open,
    /// so there are at most as many as the streams peers may open).
    waiters: BTreeMap<RequestId, Vec<oneshot::Sender<Bytes>>>,
}

/// An answer kept in the window for copies of its request: the response frame as it went
/// on the stream, or `None` when it did not fit in the bytes left. Its bytes are counted
/// while it is kept, and given back when the window forgets it.
struct Kept {
    frame: Option<Bytes>,
    ledger: Arc<AtomicUsize>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        if let Some(frame) = &self.frame {
            self.ledger.fetch_sub(frame.len(), Ordering::Relaxed);
        }
    }
}

/// What becomes of a request, as the window and the limit decide.
enum Step<'a> {
    /// A copy of a request that answered: this answer.
    Answer(Bytes),
    /// A copy of a request in progress: its answer will come here, or nothing if it is
    /// stopped unanswered (then this copy asks again).
    Wait(oneshot::Receiver<Bytes>),
    /// Over the concurrency limit.
    Shed,
    /// Run it.
    Run(Running<'a>),
}

impl Server {
    /// The worker side of a policy: a limit of `concurrency_limit` requests at once
    /// (`None`: no limit), an idempotency window (`None`: none) keeping at most `max_kept`
    /// bytes of answers.
    pub(crate) fn new(concurrency_limit: Option<u32>, idempotency: Option<IdempotencyConfig>, max_kept: usize) -> Self {
        let state = Serving {
            limit: concurrency_limit.map(ConcurrencyLimit::new),
            window: idempotency.map(IdempotencyWindow::new),
            waiters: BTreeMap::new(),
        };
        Self { state: Mutex::new(state), kept: Arc::new(AtomicUsize::new(0)), max_kept }
    }

    /// Asks the window (for a request with an id) and then the limit what to do with a
    /// request, arrived at `now`.
    fn admit(&self, now: Instant, id: Option<RequestId>) -> Step<'_> {
        let mut state = lock(&self.state);
        let Serving { limit, window, waiters } = &mut *state;
        let tracked = id.filter(|_| window.is_some());
        if let (Some(id), Some(window)) = (tracked, window.as_mut()) {
            match window.begin(now, id) {
                Seen::Done(kept) => {
                    return Step::Answer(kept.frame.clone().unwrap_or_else(|| frame(Status::AnswerNotKept, b"")));
                }
                Seen::InProgress => {
                    let (tx, rx) = oneshot::channel();
                    let copies = waiters.entry(id).or_default();
                    // Copies whose streams went away need no answer.
                    copies.retain(|copy| !copy.is_closed());
                    copies.push(tx);
                    return Step::Wait(rx);
                }
                Seen::New => {}
            }
        }
        let admission = match limit.as_mut().map(ConcurrencyLimit::try_admit) {
            None => None,
            Some(Some(admission)) => Some(admission),
            Some(None) => {
                // Unserved: a copy must run it.
                if let (Some(id), Some(window)) = (tracked, window.as_mut()) {
                    window.abandon(id);
                }
                return Step::Shed;
            }
        };
        Step::Run(Running { server: self, id: tracked, admission, answered: false })
    }

    /// Whether a copy waits for request `id`'s answer.
    fn has_waiters(&self, id: Option<RequestId>) -> bool {
        id.is_some_and(|id| lock(&self.state).waiters.get(&id).is_some_and(|w| w.iter().any(|c| !c.is_closed())))
    }

    /// Requests running now (under the limit), and the requests the window holds.
    #[cfg(test)]
    fn load(&self) -> (u32, usize) {
        let state = lock(&self.state);
        (state.limit.as_ref().map_or(0, ConcurrencyLimit::in_flight), state.window.as_ref().map_or(0, |w| w.len()))
    }
}

/// A request admitted to run. Its admission under the limit and its place in the window
/// are given back when it ends, however it ends: dropped unanswered (its budget ran out,
/// its caller cancelled it, the member stopped), its id is forgotten and the copies waiting
/// for it are woken to run it themselves.
struct Running<'a> {
    server: &'a Server,
    id: Option<RequestId>,
    admission: Option<Admission>,
    answered: bool,
}

impl Running<'_> {
    /// The request answered with `frame`: kept for later copies (if its bytes fit) and
    /// given to the copies waiting.
    fn answer(&mut self, frame: &Bytes) {
        self.answered = true;
        let Some(id) = self.id else { return };
        let server = self.server;
        let mut state = lock(&server.state);
        if let Some(window) = state.window.as_mut() {
            // Only answers are counted here, under the lock, so the check and the add
            // cannot interleave with another answer's.
            let fits = server.kept.load(Ordering::Relaxed).saturating_add(frame.len()) <= server.max_kept;
            if fits {
                server.kept.fetch_add(frame.len(), Ordering::Relaxed);
            }
            let kept = Kept { frame: fits.then(|| frame.clone()), ledger: server.kept.clone() };
            // A request the window forgot meanwhile (by age or count) is not kept.
            let _ = window.complete(id, kept);
        }
        for copy in state.waiters.remove(&id).unwrap_or_default() {
            // A copy whose stream went away needs no answer.
            let _ = copy.send(frame.clone());
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.server.state);
        if let (Some(limit), Some(admission)) = (state.limit.as_mut(), self.admission.take()) {
            limit.release(admission);
        }
        if let (Some(id), false) = (self.id, self.answered) {
            if let Some(window) = state.window.as_mut() {
                window.abandon(id);
            }
            // Dropping the senders wakes the copies: one of them runs it.
            state.waiters.remove(&id);
        }
    }
}

/// A response frame as it goes on the stream (length prefix included).
pub(crate) fn frame(status: Status, body: &[u8]) -> Bytes {
    Bytes::from(rpc::seal_frame(rpc::encode_response(status, body)))
}

/// Answers request `number` (0: none) for `method` from `peer` (the member its certificate
/// names), which gives it `budget` from now: the response frame to write, or `None` when
/// its caller cancelled it (`cancelled` completed) while it ran and no copy waits for its
/// answer (its handler was stopped).
pub(crate) async fn respond(
    shared: &Shared,
    peer: NodeId,
    number: u64,
    budget: Duration,
    method: &str,
    body: Bytes,
    cancelled: impl Future<Output = ()>,
) -> Option<Bytes> {
    let counters = &shared.counters;
    let Some(handler) = read(&shared.handlers).get(method).cloned() else {
        bump(&counters.rpc_refused);
        return Some(frame(Status::NoSuchMethod, b""));
    };
    if budget.is_zero() {
        bump(&counters.rpc_expired);
        return Some(frame(Status::Expired, b""));
    }
    let deadline = tokio::time::Instant::now() + budget;
    let id = (number != 0).then(|| RequestId::new(peer.0, number));
    let server = &shared.server;
    tokio::pin!(cancelled);
    let mut running = loop {
        match server.admit(shared.clock.now(), id) {
            Step::Answer(answer) => {
                bump(&counters.rpc_duplicates);
                return Some(answer);
            }
            Step::Wait(first) => {
                tokio::select! {
                    // `biased`, the answer first: the timer and the stream are looked at
                    // only while it is not there.
                    biased;
                    answer = first => match answer {
                        Ok(answer) => {
                            bump(&counters.rpc_duplicates);
                            return Some(answer);
                        }
                        // The copy in progress stopped unanswered: ask again.
                        Err(_) => continue,
                    },
                    () = tokio::time::sleep_until(deadline) => {
                        bump(&counters.rpc_expired);
                        return Some(frame(Status::Expired, b""));
                    }
                    () = &mut cancelled => return None,
                }
            }
            Step::Shed => {
                bump(&counters.rpc_shed);
                return Some(frame(Status::Overloaded, b""));
            }
            Step::Run(running) => break running,
        }
    };
    bump(&counters.rpc_served);
    let work = handler(Request { from: peer, method: method.to_string(), body });
    tokio::pin!(work);
    let mut caller_gone = false;
    let answer = loop {
        tokio::select! {
            // `biased`, the work first: a handler that answers at once never arms the
            // deadline's timer nor looks at the stream.
            biased;
            answer = &mut work => break answer,
            () = tokio::time::sleep_until(deadline) => {
                // `running` goes: the request is forgotten, its copies run it.
                bump(&counters.rpc_expired);
                return Some(frame(Status::Expired, b""));
            }
            () = &mut cancelled, if !caller_gone => {
                caller_gone = true;
                if !server.has_waiters(id) {
                    bump(&counters.rpc_cancelled);
                    return None;
                }
                // A copy waits for the answer: the work goes on for it.
            }
        }
    };
    let response = match answer {
        Ok(body) if body.len() < shared.limits.max_frame => frame(Status::Ok, &body),
        Ok(body) => {
            frame(Status::HandlerError, format!("response of {} B exceeds the frame limit", body.len()).as_bytes())
        }
        Err(message) => frame(Status::HandlerError, message.as_bytes()),
    };
    running.answer(&response);
    Some(response)
}

/// Serves one request stream from `peer`: reads its frame (within the request timeout),
/// checks its sender, answers it.
pub(crate) async fn serve(shared: Arc<Shared>, peer: NodeId, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let limits = shared.limits;
    // A request that does not arrive whole in time gives its stream back: a peer that
    // opens streams and never writes holds each for the request timeout at most, and
    // `max_streams` of them per connection at once.
    let frame = match tokio::time::timeout(limits.request_timeout, rpc::read_frame(&mut recv, limits.max_frame)).await {
        Ok(Ok(frame)) => Bytes::from(frame),
        Ok(Err(e)) => return refuse(&shared, &mut send, &mut recv, &e.to_string()).await,
        Err(_) => {
            bump(&shared.counters.rpc_timed_out);
            let _ = recv.stop(rpc::code::TIMED_OUT.into());
            let _ = send.reset(rpc::code::TIMED_OUT.into());
            return;
        }
    };
    let request = match rpc::decode_request(&frame) {
        Ok(request) => request,
        Err(e) => return refuse(&shared, &mut send, &mut recv, &e.to_string()).await,
    };
    if request.sender != peer {
        bump(&shared.counters.rpc_spoofed);
        let _ = send.reset(rpc::code::SPOOFED.into());
        let _ = recv.stop(rpc::code::SPOOFED.into());
        return;
    }
    let body = frame.slice_ref(request.body);
    // The caller stops reading (or its connection goes) when it no longer waits.
    let stopped = send.stopped();
    let cancelled = async move {
        let _ = stopped.await;
    };
    match respond(&shared, peer, request.number, request.budget, request.method, body, cancelled).await {
        Some(response) => {
            if send.write_all(&response).await.is_ok() {
                let _ = send.finish();
            }
        }
        None => {
            let _ = send.reset(rpc::code::CANCELLED.into());
        }
    }
}

/// Refuses a request that could not be read: an answer saying why.
async fn refuse(shared: &Shared, send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, why: &str) {
    bump(&shared.counters.rpc_refused);
    let _ = recv.stop(rpc::code::REFUSED.into());
    if send.write_all(&frame(Status::Refused, why.as_bytes())).await.is_ok() {
        let _ = send.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> Option<RequestId> {
        Some(RequestId::new(2, seq))
    }

    fn config() -> Option<IdempotencyConfig> {
        let mut config = IdempotencyConfig::default();
        config.capacity = 100;
        config.ttl = Duration::from_secs(60);
        Some(config)
    }

    #[test]
    fn a_copy_gets_the_kept_answer_and_a_copy_in_progress_waits_for_it() {
        let server = Server::new(Some(4), config(), 1 << 20);
        let now = Instant::ZERO;
        let Step::Run(mut first) = server.admit(now, id(1)) else { panic!("a new request runs") };
        let Step::Wait(mut waiting) = server.admit(now, id(1)) else { panic!("a copy waits") };
        assert!(server.has_waiters(id(1)));
        assert_eq!(server.load(), (1, 1), "a waiting copy holds no admission");
        let answer = frame(Status::Ok, b"done");
        first.answer(&answer);
        drop(first);
        assert_eq!(waiting.try_recv().ok(), Some(answer.clone()));
        let Step::Answer(again) = server.admit(now, id(1)) else { panic!("a later copy is answered") };
        assert_eq!(again, answer);
        assert_eq!(server.load(), (0, 1));
        assert_eq!(server.kept.load(Ordering::Relaxed), answer.len());
        // Another caller's request with the same number is another request.
        assert!(matches!(server.admit(now, Some(RequestId::new(3, 1))), Step::Run(_)));
        // A request without a number is never kept.
        let Step::Run(mut plain) = server.admit(now, None) else { panic!("runs") };
        plain.answer(&answer);
        drop(plain);
        assert!(matches!(server.admit(now, None), Step::Run(_)));
    }

    #[test]
    fn a_request_stopped_unanswered_is_forgotten_and_its_copy_runs_it() {
        let server = Server::new(Some(4), config(), 1 << 20);
        let now = Instant::ZERO;
        let Step::Run(first) = server.admit(now, id(1)) else { panic!("runs") };
        let Step::Wait(mut waiting) = server.admit(now, id(1)) else { panic!("waits") };
        drop(first);
        assert!(waiting.try_recv().is_err(), "woken without an answer");
        assert!(matches!(server.admit(now, id(1)), Step::Run(_)), "the copy runs it");
        assert_eq!(server.load(), (0, 0));
    }

    #[test]
    fn past_the_limit_requests_are_shed_unserved_and_a_retry_runs_later() {
        let server = Server::new(Some(2), config(), 1 << 20);
        let now = Instant::ZERO;
        let Step::Run(a) = server.admit(now, id(1)) else { panic!("runs") };
        let Step::Run(b) = server.admit(now, id(2)) else { panic!("runs") };
        assert!(matches!(server.admit(now, id(3)), Step::Shed));
        assert!(matches!(server.admit(now, None), Step::Shed));
        assert_eq!(server.load(), (2, 2), "the shed request is not in the window");
        drop(a);
        assert!(matches!(server.admit(now, id(3)), Step::Run(_)), "its retry runs");
        drop(b);
        assert_eq!(server.load(), (0, 0));
        // Without a limit nothing is shed.
        let open = Server::new(None, None, 0);
        let running: Vec<_> = (0..100).map(|n| open.admit(now, id(n))).collect();
        assert!(running.iter().all(|s| matches!(s, Step::Run(_))));
    }

    #[test]
    fn answers_past_the_byte_bound_are_not_kept_but_still_run_once() {
        let big = frame(Status::Ok, &[7; 100]);
        let server = Server::new(None, config(), big.len() + 10);
        let now = Instant::ZERO;
        for seq in 1..=2 {
            let Step::Run(mut running) = server.admit(now, id(seq)) else { panic!("runs") };
            running.answer(&big);
        }
        assert_eq!(server.kept.load(Ordering::Relaxed), big.len(), "only the first fits");
        let Step::Answer(first) = server.admit(now, id(1)) else { panic!("kept") };
        assert_eq!(first, big);
        let Step::Answer(second) = server.admit(now, id(2)) else { panic!("ran already") };
        assert_eq!(second, frame(Status::AnswerNotKept, b""));
        // The window forgets by age: the bytes are given back.
        let later = Instant::ZERO + Duration::from_secs(61);
        assert!(matches!(server.admit(later, id(9)), Step::Run(_)));
        assert_eq!(server.kept.load(Ordering::Relaxed), 0);
    }
}
