//! A conclave member over QUIC that prints membership changes; a worker of a service, or a
//! client that keeps calling the service's workers through the resilience policies.
//!
//! ```text
//! # certificates for members 1 to 3, from a fresh development CA
//! cargo run -p conclave-quic --example node -- --gen-certs certs --ids 1,2,3
//! # three members on loopback
//! cargo run -p conclave-quic --example node -- --id 1 --listen 127.0.0.1:7001 --certs certs --state-dir state-1
//! # add --voters 1,2,3 to each to elect a leader among them; with a new cluster, also
//! # --initial-cluster-state new (vote at once); a voter that lost its state directory
//! # rejoins with --initial-cluster-state existing, and `kill -USR1 <pid>` is the
//! # operator's word that it may vote again
//! cargo run -p conclave-quic --example node -- --id 2 --listen 127.0.0.1:7002 --seed 127.0.0.1:7001 --certs certs --state-dir state-2
//! cargo run -p conclave-quic --example node -- --id 3 --listen 127.0.0.1:7003 --seed 127.0.0.1:7001 --certs certs --state-dir state-3
//! ```
//!
//! Each line it prints is `<elapsed ms> <what>`: `ready`, `joined n<id>`, `suspected`,
//! `failed`, `recovered`, `left`, `updated`, `conflict`, leader changes. It leaves
//! gracefully on SIGINT or SIGTERM. On SIGUSR1 it gives its core the operator's word that
//! it may vote again (`Cluster::resume_voting`) and prints `resume voting`.
//!
//! With seeds it prints `ready` only once a seed answered; if none does within
//! `--join-timeout`, or the cluster says its id already runs elsewhere, it prints
//! `refused: <why>` (one line: a certificate the seed refused, a member id in use) and
//! exits with status 1.
//!
//! # A service
//!
//! `--worker work` publishes the tag `worker=work` and serves the method `work` (an echo
//! after `--work-ms`). `--client work --rate 200` calls `work` on the members tagged
//! `worker=work`, 200 calls a second (each with `--deadline-ms`), through a
//! [`ServiceClient`](conclave_quic::ServiceClient) with the default policy and a timeout
//! per attempt of `--attempt-timeout-ms` (`--no-hedging`: without hedging; `--bare`: one
//! attempt and no policy, to compare), once `--min-workers` are known, and prints a line a
//! second:
//!
//! ```text
//! 5012 calls 200 ok 200 failed 0 retried 1 hedged 9 shed 0 p50 0.61ms p99 2.10ms workers 3
//! ```
//!
//! `calls`: calls started in that second; `ok`, `failed`: calls that ended in it;
//! `retried`, `hedged`: retries and hedges sent in it; `shed`: attempts a worker shed;
//! `p50`, `p99`: the latency of the calls that ended ok in it; `workers`: the workers a
//! call could go to at the end of it. A failed call also prints `call failed: <why>` (five
//! a second at most). On SIGINT or SIGTERM the client prints the same figures for its
//! whole run after `total`, then leaves.
//!
//! ```text
//! cargo run -p conclave-quic --example node -- --gen-certs certs --ids 1,2,3,4
//! cargo run -p conclave-quic --example node -- --id 1 --listen 127.0.0.1:7001 --certs certs --state-dir state-1 --worker work
//! cargo run -p conclave-quic --example node -- --id 2 --listen 127.0.0.1:7002 --seed 127.0.0.1:7001 --certs certs --state-dir state-2 --worker work
//! cargo run -p conclave-quic --example node -- --id 3 --listen 127.0.0.1:7003 --seed 127.0.0.1:7001 --certs certs --state-dir state-3 --worker work
//! cargo run -p conclave-quic --example node -- --id 4 --listen 127.0.0.1:7004 --seed 127.0.0.1:7001 --certs certs --state-dir state-4 --client work --rate 200
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use conclave_core::resilience::{ClientMetrics, Policy, TagFilter};
use conclave_core::{Config, Event, InitialClusterState, NodeId, Tags};
use conclave_quic::{Cluster, DevCa, ServiceClient, TlsConfig};
use hdrhistogram::Histogram;
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
#[command(about = "A conclave member over QUIC that prints membership changes")]
struct Args {
    /// This member's id (its certificate must name it).
    #[arg(long, required_unless_present = "gen_certs")]
    id: Option<u64>,
    /// The UDP address to bind.
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: SocketAddr,
    /// The address to advertise (default: the listen address).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// A member to join through (repeatable).
    #[arg(long = "seed")]
    seeds: Vec<SocketAddr>,
    /// The directory holding ca.pem, node-<id>.pem and node-<id>.key.
    #[arg(long, default_value = "certs")]
    certs: PathBuf,
    /// Where the member keeps its durable state.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The protocol preset: lan, local or wan.
    #[arg(long, default_value = "lan")]
    config: String,
    /// Write a development CA and member certificates into this directory, then exit.
    #[arg(long)]
    gen_certs: Option<PathBuf>,
    /// The member ids to make certificates for, with --gen-certs.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    ids: Vec<u64>,
    /// The voters that elect a leader (the same on every member), e.g. 1,2,3; none by default.
    #[arg(long, value_delimiter = ',')]
    voters: Vec<u64>,
    /// What an empty state directory is, for a voter: `new` (a cluster that never ran: vote
    /// at once) or `existing` (a lost state, in a running cluster: wait for the voters'
    /// terms, or for SIGUSR1, the operator's word). Not given: wait for the voters' terms.
    #[arg(long, value_name = "new|existing")]
    initial_cluster_state: Option<InitialClusterState>,
    /// How long to wait for a seed to answer before giving up, in seconds.
    #[arg(long, default_value_t = 10)]
    join_timeout: u64,
    /// Serve the method `work` as a worker of this service: publish the tag `worker=<it>`.
    #[arg(long, value_name = "SERVICE", num_args = 0..=1, default_missing_value = "work")]
    worker: Option<String>,
    /// How long `work` takes on a worker, in milliseconds.
    #[arg(long, default_value_t = 1)]
    work_ms: u64,
    /// Keep calling `work` on this service's workers (the members tagged `worker=<it>`).
    #[arg(long, value_name = "SERVICE", num_args = 0..=1, default_missing_value = "work")]
    client: Option<String>,
    /// Calls a second, with --client.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Each call's deadline, in milliseconds, with --client.
    #[arg(long, default_value_t = 1000)]
    deadline_ms: u64,
    /// How long an attempt may go unanswered before it is retried elsewhere, in
    /// milliseconds (0: only the deadline bounds it), with --client.
    #[arg(long, default_value_t = 250)]
    attempt_timeout_ms: u64,
    /// Start calling once this many workers are known, with --client.
    #[arg(long, default_value_t = 1)]
    min_workers: usize,
    /// No hedging: a call tries another worker only after a timeout or an error, with --client.
    #[arg(long)]
    no_hedging: bool,
    /// One attempt per call and no other policy (to compare with the defaults), with --client.
    #[arg(long)]
    bare: bool,
}

fn name(id: NodeId) -> String {
    format!("n{}", id.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if let Some(dir) = &args.gen_certs {
        let ids: Vec<NodeId> = args.ids.iter().copied().map(NodeId).collect();
        DevCa::new("conclave example cluster")?.write_files(dir, &ids)?;
        println!("wrote certificates for {ids:?} into {}", dir.display());
        return Ok(());
    }
    let id = NodeId(args.id.ok_or("--id is required")?);
    let mut config = match args.config.as_str() {
        "lan" => Config::lan(),
        "local" => Config::local(),
        "wan" => Config::wan(),
        other => return Err(format!("unknown --config {other:?}: lan, local or wan").into()),
    };
    config.election.voters = args.voters.iter().copied().map(NodeId).collect();
    let tls = TlsConfig::from_pem_files(
        args.certs.join("ca.pem"),
        args.certs.join(format!("node-{}.pem", id.0)),
        args.certs.join(format!("node-{}.key", id.0)),
    )?;
    let state_dir = args.state_dir.clone().unwrap_or_else(|| PathBuf::from(format!("state-{}", id.0)));
    if args.rate == 0 {
        return Err("--rate must be at least 1".into());
    }
    let mut builder = Cluster::builder(id).bind(args.listen).seeds(args.seeds.clone()).config(config).tls(tls);
    if let Some(state) = args.initial_cluster_state {
        builder = builder.initial_cluster_state(state);
    }
    if let Some(advertise) = args.advertise {
        builder = builder.advertise(advertise);
    }
    if let Some(service) = &args.worker {
        let work = Duration::from_millis(args.work_ms);
        builder = builder.tags(Tags::from([("worker".to_string(), service.clone())])).handler(
            "work",
            move |request| async move {
                tokio::time::sleep(work).await;
                Ok(request.body)
            },
        );
    }
    let started = tokio::time::Instant::now();
    let ms = move || started.elapsed().as_millis();
    let node =
        match builder.state_dir(state_dir).handler("ping", |request| async move { Ok(request.body) }).start().await {
            Ok(node) => node,
            Err(e) => {
                // A state directory another process holds, a corrupt state file, a socket in use.
                println!("{} refused: {e}", ms());
                std::process::exit(1);
            }
        };
    // Subscribed first: the joins seen while waiting are printed after `ready`.
    let mut events = node.events();
    if let Err(e) = node.joined(Duration::from_secs(args.join_timeout)).await {
        println!("{} refused: {e}", ms());
        // No Leave: a member whose id runs elsewhere must not speak for it.
        node.abort();
        std::process::exit(1);
    }
    println!("{} ready {} at {}", ms(), name(id), node.addr());
    let client = match &args.client {
        Some(service) => {
            let mut policy = if args.bare { Policy::bare() } else { Policy::default() };
            policy.workers = TagFilter::any().with("worker", service.clone());
            if !args.bare && args.attempt_timeout_ms > 0 {
                policy.retry.attempt_timeout = Some(Duration::from_millis(args.attempt_timeout_ms));
            }
            if args.no_hedging {
                policy.hedging = None;
            }
            let service = node.service(policy)?;
            let calls = Calls {
                service,
                rate: args.rate,
                deadline: Duration::from_millis(args.deadline_ms),
                min_workers: args.min_workers,
                started,
            };
            let (stop, stopped) = tokio::sync::oneshot::channel();
            Some((stop, tokio::spawn(calls.run(stopped))))
        }
        None => None,
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut resume = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    let line = match event {
                        Event::MemberJoined(m) => format!("joined {} at {}", name(m.id), m.addr),
                        Event::MemberUpdated(m) => format!("updated {}", name(m.id)),
                        Event::MemberSuspected(m) => format!("suspected {}", name(m.id)),
                        Event::MemberFailed(m) => format!("failed {}", name(m.id)),
                        Event::MemberRecovered(m) => format!("recovered {}", name(m.id)),
                        Event::MemberLeft(m) => format!("left {}", name(m.id)),
                        Event::AddressConflict { existing, other } => format!(
                            "conflict: {} runs at {}, another process claims it at {other}",
                            name(existing.id),
                            existing.addr
                        ),
                        Event::Broadcast { origin, payload } => format!("broadcast from {} ({} B)", name(origin), payload.len()),
                        Event::LeaderElected { term, leader } => format!("leader {} in term {term}", name(leader)),
                        Event::LeaderLost { term } => format!("lost the leader of term {term}"),
                        Event::PartitionDetected { majority, minority, local_side } => {
                            format!("partition: {majority:?} keep running, {minority:?} stop; this side: {local_side:?}")
                        }
                        Event::PartitionHealed => "partition healed".to_string(),
                        Event::QuorumLost => "quorum lost: read-only".to_string(),
                        Event::QuorumRegained => "quorum regained".to_string(),
                        other => format!("{other:?}"),
                    };
                    println!("{} {line}", ms());
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => println!("{} missed {missed} events", ms()),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = resume.recv() => match node.resume_voting().await {
                Ok(()) => println!("{} resume voting: the operator's word", ms()),
                Err(e) => println!("{} resume voting failed: {e}", ms()),
            },
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
    if let Some((stop, calls)) = client {
        // The client prints its totals, then the member leaves.
        let _ = stop.send(());
        let _ = calls.await;
    }
    println!("{} leaving", ms());
    node.shutdown().await;
    Ok(())
}

/// The client mode: calls at a steady rate, and a line of figures a second.
struct Calls {
    service: ServiceClient,
    rate: u32,
    deadline: Duration,
    min_workers: usize,
    started: tokio::time::Instant,
}

/// Figures over a stretch of time: a second, or the whole run.
struct Figures {
    calls: u64,
    ok: u64,
    failed: u64,
    /// Latencies of the calls that ended ok, in microseconds.
    latency: Histogram<u64>,
    /// The service client's figures when the stretch began.
    since: ClientMetrics,
}

impl Figures {
    fn new(since: ClientMetrics) -> Self {
        // 1 µs to 1 h at 3 significant figures: valid bounds.
        let latency = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        Self { calls: 0, ok: 0, failed: 0, latency, since }
    }

    /// The line for this stretch, `now` being the client's figures at its end.
    fn line(&self, now: &ClientMetrics, workers: usize) -> String {
        let quantile = |q: f64| {
            if self.latency.is_empty() {
                "-".to_string()
            } else {
                format!("{:.2}ms", self.latency.value_at_quantile(q) as f64 / 1000.0)
            }
        };
        format!(
            "calls {} ok {} failed {} retried {} hedged {} shed {} p50 {} p99 {} workers {workers}",
            self.calls,
            self.ok,
            self.failed,
            now.retries - self.since.retries,
            now.hedges - self.since.hedges,
            now.shed - self.since.shed,
            quantile(0.5),
            quantile(0.99),
        )
    }

    fn record(&mut self, outcome: &Result<Duration, String>) {
        match outcome {
            Ok(latency) => {
                self.ok += 1;
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
                self.latency.saturating_record(micros);
            }
            Err(_) => self.failed += 1,
        }
    }
}

impl Calls {
    async fn run(self, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let ms = || self.started.elapsed().as_millis();
        let service = &self.service;
        loop {
            if service.workers() >= self.min_workers {
                break;
            }
            tokio::select! {
                _ = &mut stop => return,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        println!("{} calling {} workers", ms(), service.workers());
        // Each call runs in a task of its own and reports here when it ends: at most the
        // calls of one deadline are under way.
        let (done, mut ended) = mpsc::unbounded_channel::<Result<Duration, String>>();
        let mut next_call = tokio::time::interval(Duration::from_secs(1) / self.rate);
        next_call.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_line =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
        let mut second = Figures::new(service.metrics());
        let mut total = Figures::new(service.metrics());
        let mut failures_told = 0;
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                Some(outcome) = ended.recv() => {
                    if let Err(why) = &outcome {
                        if failures_told < 5 {
                            failures_told += 1;
                            println!("{} call failed: {why}", ms());
                        }
                    }
                    second.record(&outcome);
                    total.record(&outcome);
                }
                _ = next_line.tick() => {
                    let now = service.metrics();
                    println!("{} {}", ms(), second.line(&now, service.workers()));
                    second = Figures::new(now);
                    failures_told = 0;
                }
                _ = next_call.tick() => {
                    n += 1;
                    second.calls += 1;
                    total.calls += 1;
                    let (service, done, deadline) = (service.clone(), done.clone(), self.deadline);
                    tokio::spawn(async move {
                        let start = tokio::time::Instant::now();
                        let body = Bytes::from(n.to_le_bytes().to_vec());
                        let outcome = match service.call("work", body.clone(), deadline).await {
                            Ok(answer) if answer == body => Ok(start.elapsed()),
                            Ok(answer) => Err(format!("a wrong answer: {answer:?} to {body:?}")),
                            Err(e) => Err(e.to_string()),
                        };
                        let _ = done.send(outcome);
                    });
                }
            }
        }
        println!("{} total {}", ms(), total.line(&service.metrics(), service.workers()));
    }
}
