//! Service clients and the serving side over real QUIC on loopback: calls through the
//! resilience policies fail over, retry, hedge and cancel; workers shed past their limit,
//! run a request once, and drop work past its deadline.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conclave_core::resilience::{CallError, HedgeConfig, Policy, Selection, TagFilter};
use conclave_core::{Config, MemberState, NodeId, Tags};
use conclave_quic::{quinn, Cluster, ClusterBuilder, DevCa, Error, MemoryStorage};

const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

fn builder(ca: &DevCa, id: u64, seeds: &[SocketAddr]) -> ClusterBuilder {
    Cluster::builder(NodeId(id))
        .bind(LOOPBACK)
        .seeds(seeds.iter().copied())
        .config(Config::local())
        .tls(ca.tls(NodeId(id)).unwrap())
        .storage(MemoryStorage::new())
}

fn worker_tags() -> Tags {
    Tags::from([("worker".to_string(), "work".to_string())])
}

/// A worker serving `work` with an echo of the body, answering after `delay`.
fn worker(ca: &DevCa, id: u64, seeds: &[SocketAddr], delay: Duration) -> ClusterBuilder {
    builder(ca, id, seeds).tags(worker_tags()).handler("work", move |request| async move {
        tokio::time::sleep(delay).await;
        Ok(request.body)
    })
}

/// Polls `done` every 20 ms until it holds or `within` passes; panics with `what` then.
async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn alive(node: &Cluster) -> usize {
    node.members().iter().filter(|m| m.state == MemberState::Alive).count()
}

/// Starts the client member (n1, no tags) and then `workers`, and waits until all see
/// each other.
async fn form(ca: &DevCa, workers: Vec<ClusterBuilder>) -> (Cluster, Vec<Cluster>) {
    let client = builder(ca, 1, &[]).start().await.unwrap();
    let mut started = Vec::new();
    for w in workers {
        started.push(w.seeds([client.addr()]).start().await.unwrap());
    }
    let n = started.len() + 1;
    until("the cluster forms", Duration::from_secs(15), || {
        alive(&client) == n && started.iter().all(|w| alive(w) == n)
    })
    .await;
    (client, started)
}

fn policy() -> Policy {
    let mut policy = Policy::default();
    policy.workers = TagFilter::any().with("worker", "work");
    policy
}

/// [`policy`] for a test whose client retries within its first few calls: a new client
/// has no accepted requests yet, so adaptive throttling (the SRE book's formula) would
/// refuse such a retry about half the time, which is not what these tests are about.
fn unthrottled() -> Policy {
    let mut policy = policy();
    policy.throttle = None;
    policy
}

/// A guard a handler holds while it runs: `stopped` is set if its future is dropped
/// before it finished.
struct Running {
    stopped: Arc<AtomicBool>,
    finished: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished {
            self.stopped.store(true, Ordering::SeqCst);
        }
    }
}

/// A worker whose `work` takes `delay` while `slow` is set (and answers at once
/// otherwise), noting in `stopped` a run that was stopped before it finished.
fn slow_worker(
    ca: &DevCa,
    id: u64,
    delay: Duration,
    slow: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
) -> ClusterBuilder {
    builder(ca, id, &[]).tags(worker_tags()).handler("work", move |request| {
        let (slow, stopped) = (slow.clone(), stopped.clone());
        async move {
            let mut running = Running { stopped, finished: false };
            if slow.load(Ordering::SeqCst) {
                tokio::time::sleep(delay).await;
            }
            running.finished = true;
            Ok(request.body)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_the_registry_fail_over_from_a_worker_that_stops() {
    let ca = DevCa::new("failover").unwrap();
    let workers = (2..=4).map(|id| worker(&ca, id, &[], Duration::from_millis(1))).collect();
    let (client, workers) = form(&ca, workers).await;
    let mut policy = policy();
    policy.retry.attempt_timeout = Some(Duration::from_millis(300));
    let service = client.service(policy).unwrap();
    until("the client sees three workers", Duration::from_secs(5), || service.workers() == 3).await;
    for i in 0..100u32 {
        if i == 40 {
            workers[2].abort();
        }
        let body = i.to_le_bytes().to_vec();
        let answer = service.call("work", body.clone(), Duration::from_secs(5)).await;
        assert_eq!(answer.unwrap_or_else(|e| panic!("call {i}: {e}")), Bytes::from(body));
    }
    let m = service.metrics();
    assert_eq!((m.calls, m.completed, m.failed.total()), (100, 100, 0), "{m:?}");
    // The member's figures are its one client's (but for breaker transitions, which its
    // timers may make at any time).
    let member = client.metrics().resilience;
    assert_eq!(
        (member.calls, member.completed, member.attempts, member.hedges),
        (m.calls, m.completed, m.attempts, m.hedges)
    );
    // Served by the workers that lived, and by the stopped one before it stopped.
    let served: Vec<u64> = workers.iter().map(|w| w.counters().rpc_served).collect();
    assert!(served.iter().all(|&n| n > 0), "{served:?}");
    let total: u64 = served.iter().sum();
    assert!((100..=m.attempts).contains(&total), "{total} served for {m:?}");
    client.shutdown().await;
    for w in &workers[..2] {
        w.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_past_its_timeout_is_cancelled_at_the_worker_and_retried_elsewhere() {
    let ca = DevCa::new("timeout").unwrap();
    let (slow, stopped) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(false)));
    let workers =
        vec![slow_worker(&ca, 2, Duration::from_secs(30), slow, stopped.clone()), worker(&ca, 3, &[], Duration::ZERO)];
    let (client, workers) = form(&ca, workers).await;
    let mut policy = unthrottled();
    policy.selection = Selection::RoundRobin;
    policy.hedging = None;
    policy.retry.attempt_timeout = Some(Duration::from_millis(200));
    let service = client.service(policy).unwrap();
    until("the client sees two workers", Duration::from_secs(5), || service.workers() == 2).await;
    // Round robin: one of two calls goes to the slow worker first.
    for i in 0..2u8 {
        let answer = service.call("work", vec![i], Duration::from_secs(10)).await.unwrap();
        assert_eq!(answer, Bytes::from(vec![i]));
    }
    let m = service.metrics();
    assert!(m.retries >= 1 && m.cancelled >= 1, "{m:?}");
    until("the slow worker stops the work nobody waits for", Duration::from_secs(10), || {
        stopped.load(Ordering::SeqCst) && workers[0].counters().rpc_cancelled >= 1
    })
    .await;
    client.shutdown().await;
    for w in &workers {
        w.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedge_races_a_slow_attempt_and_the_loser_is_cancelled() {
    let ca = DevCa::new("hedge").unwrap();
    let (slow, stopped) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let workers = vec![
        slow_worker(&ca, 2, Duration::from_secs(30), slow.clone(), stopped.clone()),
        worker(&ca, 3, &[], Duration::ZERO),
    ];
    let (client, workers) = form(&ca, workers).await;
    let mut policy = policy();
    policy.selection = Selection::RoundRobin;
    let mut hedging = HedgeConfig::default();
    hedging.min_samples = 10;
    policy.hedging = Some(hedging);
    let service = client.service(policy).unwrap();
    until("the client sees two workers", Duration::from_secs(5), || service.workers() == 2).await;
    // Latencies to learn from, then the first worker turns slow.
    for i in 0..20u8 {
        service.call("work", vec![i], Duration::from_secs(10)).await.unwrap();
    }
    slow.store(true, Ordering::SeqCst);
    for i in 0..4u8 {
        let answer = service.call("work", vec![i], Duration::from_secs(10)).await.unwrap();
        assert_eq!(answer, Bytes::from(vec![i]));
    }
    let m = service.metrics();
    assert!(m.hedges >= 1 && m.hedge_wins >= 1, "{m:?}");
    assert_eq!(m.retries, 0, "hedges, not retries, answered: {m:?}");
    until("the slow worker stops the hedged attempt's work", Duration::from_secs(10), || {
        stopped.load(Ordering::SeqCst) && workers[0].counters().rpc_cancelled >= 1
    })
    .await;
    client.shutdown().await;
    for w in &workers {
        w.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_concurrency_limit_a_worker_sheds_and_the_call_goes_elsewhere() {
    let ca = DevCa::new("shed").unwrap();
    let mut one_at_a_time = Policy::default();
    one_at_a_time.concurrency_limit = Some(1);
    let (slow, stopped) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(false)));
    let workers = vec![
        slow_worker(&ca, 2, Duration::from_secs(3), slow, stopped).serving(&one_at_a_time),
        worker(&ca, 3, &[], Duration::ZERO),
    ];
    let (client, workers) = form(&ca, workers).await;
    let client = Arc::new(client);
    // A plain call holds n2's one place.
    let holder = {
        let client = client.clone();
        tokio::spawn(async move { client.call(NodeId(2), "work", &b"first"[..], Duration::from_secs(10)).await })
    };
    until("n2 serves the first call", Duration::from_secs(5), || workers[0].counters().rpc_served == 1).await;
    let second = client.call(NodeId(2), "work", &b"second"[..], Duration::from_secs(10)).await;
    assert!(matches!(&second, Err(Error::Overloaded { target: NodeId(2), .. })), "{second:?}");
    // Through the service, a shed attempt is retried on the other worker.
    let mut policy = unthrottled();
    policy.selection = Selection::RoundRobin;
    policy.hedging = None;
    let service = client.service(policy).unwrap();
    until("the client sees two workers", Duration::from_secs(5), || service.workers() == 2).await;
    for i in 0..2u8 {
        let answer = service.call("work", vec![i], Duration::from_secs(10)).await.unwrap();
        assert_eq!(answer, Bytes::from(vec![i]));
    }
    let m = service.metrics();
    assert!(m.shed >= 1 && m.retries >= 1, "{m:?}");
    assert!(workers[0].counters().rpc_shed >= 2, "{:?}", workers[0].counters());
    assert_eq!(holder.await.unwrap().unwrap(), Bytes::from_static(b"first"), "the first call was served");
    client.shutdown().await;
    for w in &workers {
        w.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_past_its_deadline_is_dropped_and_its_handler_stopped() {
    let ca = DevCa::new("deadline").unwrap();
    let (slow, stopped) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(false)));
    let (client, workers) = form(&ca, vec![slow_worker(&ca, 2, Duration::from_secs(30), slow, stopped.clone())]).await;
    let late = client.call(NodeId(2), "work", &b"x"[..], Duration::from_millis(300)).await;
    assert!(matches!(late, Err(Error::DeadlineExceeded { .. })), "{late:?}");
    // The worker dropped the work when the budget the request carried ran out (or when
    // the caller gave up on it, whichever it heard first).
    until("the worker stops the work", Duration::from_secs(10), || stopped.load(Ordering::SeqCst)).await;
    let c = workers[0].counters();
    assert_eq!(c.rpc_served, 1);
    assert_eq!(c.rpc_expired + c.rpc_cancelled, 1, "{c:?}");
    client.shutdown().await;
    workers[0].shutdown().await;
}

/// A request frame in the runtime's format (`conclave_quic::rpc`, version 1).
fn request_frame(sender: u64, number: u64, budget_micros: u32, method: &str, body: &[u8]) -> Vec<u8> {
    let mut request = vec![1u8];
    request.extend_from_slice(&sender.to_le_bytes());
    request.extend_from_slice(&number.to_le_bytes());
    request.extend_from_slice(&budget_micros.to_le_bytes());
    request.push(method.len() as u8);
    request.extend_from_slice(method.as_bytes());
    request.extend_from_slice(body);
    [(request.len() as u32).to_be_bytes().to_vec(), request].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_again_under_its_number_runs_once() {
    let ca = DevCa::new("once").unwrap();
    let runs = Arc::new(AtomicU64::new(0));
    let counted = runs.clone();
    let node = builder(&ca, 1, &[])
        .handler("count", move |_| {
            let runs = counted.clone();
            async move {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(Bytes::from(n.to_string()))
            }
        })
        .start()
        .await
        .unwrap();
    // n2's certificate, by hand: two copies at once, then a third after they answered.
    let (_, n2) = ca.tls(NodeId(2)).unwrap().quinn_configs().unwrap();
    let mut endpoint = quinn::Endpoint::client(LOOPBACK).unwrap();
    endpoint.set_default_client_config(n2);
    let conn = endpoint.connect(node.addr(), conclave_quic::tls::SERVER_NAME).unwrap().await.unwrap();
    let ask = |number: u64| {
        let conn = conn.clone();
        async move {
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(&request_frame(2, number, 5_000_000, "count", b"")).await.unwrap();
            let _ = send.finish();
            let answer = recv.read_to_end(1 << 10).await.unwrap();
            assert_eq!(answer.get(4), Some(&0), "status ok: {answer:?}");
            String::from_utf8(answer[5..].to_vec()).unwrap()
        }
    };
    let (a, b) = tokio::join!(ask(7), ask(7));
    let c = ask(7).await;
    assert_eq!((a.as_str(), b.as_str(), c.as_str()), ("1", "1", "1"));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(node.counters().rpc_duplicates, 2);
    // Another number is another request; number 0 is never kept.
    assert_eq!(ask(8).await, "2");
    assert_eq!(ask(0).await, "3");
    assert_eq!(ask(0).await, "4");
    assert_eq!(node.counters().rpc_served, 4);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_call_says_why_and_a_member_serves_its_own_calls_in_process() {
    let ca = DevCa::new("why").unwrap();
    let node = worker(&ca, 1, &[], Duration::ZERO).start().await.unwrap();
    // Nobody matches the filter.
    let mut nobody = policy();
    nobody.workers = TagFilter::any().with("worker", "nobody");
    let none = node.service(nobody).unwrap().call("work", &b""[..], Duration::from_secs(1)).await;
    match &none {
        Err(Error::Call { reason: CallError::NoWorker, attempts: 0, last: None, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(none.unwrap_err().to_string().contains("no worker to call"));
    // The member is its own worker: served here, with no connection to itself.
    let mut policy = policy();
    policy.retry.max_attempts = 2;
    let service = node.service(policy).unwrap();
    let answer = service.call("work", &b"me"[..], Duration::from_secs(1)).await.unwrap();
    assert_eq!(answer, Bytes::from_static(b"me"));
    assert_eq!(node.counters().connections_opened, 0);
    // A method it does not serve: every attempt fails, and the last one says how.
    let missing = service.call("nope", &b""[..], Duration::from_secs(1)).await;
    match &missing {
        Err(Error::Call { reason: CallError::AttemptsExhausted, attempts: 2, last: Some(last), .. }) => {
            assert!(last.contains("no handler for method \"nope\""), "{last}");
        }
        other => panic!("{other:?}"),
    }
    // An impossible policy is refused.
    let mut impossible = Policy::default();
    impossible.retry.max_attempts = 0;
    assert!(matches!(node.service(impossible), Err(Error::Policy(_))));
    let total = node.metrics().resilience;
    assert_eq!((total.calls, total.completed, total.failed.total()), (3, 1, 2), "{total:?}");
    assert_eq!(total.failed.get(CallError::NoWorker), 1);
    node.shutdown().await;
}
