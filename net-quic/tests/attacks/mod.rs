//! Hostile peers against a running `Cluster` on loopback, and the honest callers that
//! measure what the attack costs them. Shared by the `hostile` test (which checks what
//! the cluster did) and the `hostile` example (which prints the figures of BENCHMARKS.md).
//!
//! Every attack runs for a bounded time against member n1 of a three-member cluster,
//! while n2 and n3 keep calling n1 and a sampler reads the process's resident memory.

#![allow(dead_code, unreachable_pub, reason = "the test and the example each use part of this module")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use conclave_core::{Command, Config, Event, Instant, MemberState, Node, NodeConfig, NodeId, Output};
use conclave_quic::{quinn, Cluster, Counters, DevCa, MemoryStorage};

pub const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// The limits the attacked cluster runs with: the defaults, but a short request timeout
/// and few streams, so that the slowloris attack meets them within its run.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
pub const MAX_STREAMS: u32 = 16;

/// `Config::local()`: probes every 100 ms, so that a harmed membership shows at once.
pub fn config() -> Config {
    let mut config = Config::local();
    config.max_datagram = 1024;
    config
}

/// A hostile peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// Handshakes without a client certificate, over and over.
    NoCertificate,
    /// Handshakes with a certificate for a member id, from another CA.
    OtherCa,
    /// A valid certificate (for n9), speaking as n2 in its datagrams and requests.
    SpoofedId,
    /// Oversized, truncated and malformed RPC frames, stream after stream.
    BadFrames,
    /// Streams opened and never written, as many as it is granted, held.
    Slowloris,
    /// Membership datagrams as fast as it can send them (valid, its own id).
    DatagramFlood,
}

impl Attack {
    /// Every attack.
    pub const ALL: [Self; 6] =
        [Self::NoCertificate, Self::OtherCa, Self::SpoofedId, Self::BadFrames, Self::Slowloris, Self::DatagramFlood];

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::NoCertificate => "no certificate",
            Self::OtherCa => "another CA's certificate",
            Self::SpoofedId => "valid certificate, another member's id",
            Self::BadFrames => "oversized and truncated RPC frames",
            Self::Slowloris => "slowloris (streams never written)",
            Self::DatagramFlood => "datagram flood from one peer",
        }
    }
}

/// A three-member cluster on loopback; n1 is attacked.
pub struct Harness {
    pub ca: DevCa,
    pub nodes: Vec<Cluster>,
}

async fn start(ca: &DevCa, id: u64, seeds: &[SocketAddr]) -> Cluster {
    Cluster::builder(NodeId(id))
        .bind(LOOPBACK)
        .seeds(seeds.iter().copied())
        .config(config())
        .tls(ca.tls(NodeId(id)).expect("the dev CA issues"))
        .storage(MemoryStorage::new())
        .request_timeout(REQUEST_TIMEOUT)
        .max_streams(MAX_STREAMS)
        .handler("echo", |request| async move { Ok(request.body) })
        .start()
        .await
        .expect("a member starts on loopback")
}

fn alive(node: &Cluster) -> usize {
    node.members().iter().filter(|m| m.state == MemberState::Alive).count()
}

impl Harness {
    /// Three members, formed (every view whole), within `within`.
    pub async fn new(within: Duration) -> Self {
        let ca = DevCa::new("attacked").expect("a dev CA");
        let first = start(&ca, 1, &[]).await;
        let seed = first.addr();
        let mut nodes = vec![first];
        for id in 2..=3 {
            nodes.push(start(&ca, id, &[seed]).await);
        }
        let deadline = tokio::time::Instant::now() + within;
        while !nodes.iter().all(|n| alive(n) == 3) {
            assert!(tokio::time::Instant::now() < deadline, "the cluster did not form within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { ca, nodes }
    }

    /// The attacked member.
    pub fn target(&self) -> &Cluster {
        &self.nodes[0]
    }

    pub async fn shutdown(self) {
        for node in &self.nodes {
            node.shutdown().await;
        }
    }
}

/// What happened during one attack.
#[derive(Debug)]
pub struct Outcome {
    pub attack: Attack,
    /// n1's counters before and after.
    pub before: Counters,
    pub after: Counters,
    /// n1's core counted this many more rejected datagrams.
    pub core_dropped: u64,
    /// The honest callers' calls to n1, those that succeeded, and their latencies (µs).
    pub calls: u64,
    pub ok: u64,
    pub latencies_us: Vec<u64>,
    /// Membership events any member emitted during the attack (none expected).
    pub events: Vec<(NodeId, Event)>,
    /// Whether every member saw all three alive at the end.
    pub membership_intact: bool,
    /// The process's resident memory before the attack, and its peak during it (KiB).
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    /// What the attacker saw, in a line (why it was refused, when it was).
    pub attacker_saw: String,
}

impl Outcome {
    /// The honest callers' success rate.
    pub fn success_rate(&self) -> f64 {
        if self.calls == 0 {
            return 0.0;
        }
        self.ok as f64 / self.calls as f64
    }

    /// The honest callers' 99th percentile latency, in microseconds.
    pub fn p99_us(&self) -> u64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        sorted.get((sorted.len().saturating_sub(1)) * 99 / 100).copied().unwrap_or(0)
    }
}

/// The resident memory of this process, in KiB (0 where /proc is missing).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A bare quinn endpoint on loopback with this client configuration.
fn client(config: quinn::ClientConfig) -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client(LOOPBACK).expect("a loopback socket");
    endpoint.set_default_client_config(config);
    endpoint
}

/// The datagrams a fresh core member `id` at `addr` sends to join through `seed`.
pub fn join_datagrams(id: u64, addr: SocketAddr, seed: SocketAddr) -> Vec<Vec<u8>> {
    let mut node = Node::new(NodeConfig::new(NodeId(id), addr, config(), 7), Instant::ZERO).expect("valid");
    node.handle_command(Instant::ZERO, Command::Join(vec![seed])).expect("joins");
    std::iter::from_fn(|| node.poll_output())
        .filter_map(|o| match o {
            Output::Transmit(t) => Some(t.payload),
            _ => None,
        })
        .collect()
}

/// Runs `attack` against the harness's n1 for `duration`, with honest callers.
pub async fn under_attack(harness: &Harness, attack: Attack, duration: Duration) -> Outcome {
    let target = harness.target();
    let addr = target.addr();
    let before = target.counters();
    let core_before = target.metrics().core.dropped.total();
    let rss_before_kib = rss_kib();
    let stop = Arc::new(AtomicBool::new(false));

    // Events of every member during the attack.
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut watchers = Vec::new();
    for node in &harness.nodes {
        let mut rx = node.events();
        let (id, events, stop) = (node.id(), events.clone(), stop.clone());
        watchers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Ok(event)) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
                    events.lock().expect("no panic holds it").push((id, event));
                }
            }
        }));
    }
    // Memory, sampled.
    let peak = Arc::new(Mutex::new(rss_before_kib));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let now = rss_kib();
                {
                    let mut peak = peak.lock().expect("no panic holds it");
                    *peak = (*peak).max(now);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // The attacker.
    let attacker = {
        let (stop, ca_pem) = (stop.clone(), harness.ca.ca_pem());
        let ca = DevCa::new("attacker's own").expect("a dev CA");
        let ours = harness.ca.tls(NodeId(9)).expect("the dev CA issues");
        tokio::spawn(async move { attack_loop(attack, addr, &ca, &ca_pem, ours, stop).await })
    };
    // The honest callers, n2 and n3, each a call every 5 ms.
    let mut callers = Vec::new();
    for caller in &harness.nodes[1..] {
        let stop = stop.clone();
        callers.push(async move {
            let (mut calls, mut ok, mut latencies) = (0u64, 0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let started = tokio::time::Instant::now();
                calls += 1;
                let answer = caller.call(NodeId(1), "echo", &b"honest"[..], Duration::from_secs(1)).await;
                if answer.is_ok_and(|a| a.as_ref() == b"honest") {
                    ok += 1;
                    latencies.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (calls, ok, latencies)
        });
    }
    let timer = {
        let stop = stop.clone();
        async move {
            tokio::time::sleep(duration).await;
            stop.store(true, Ordering::Relaxed);
        }
    };
    let (results, ()) = tokio::join!(futures_join(callers), timer);
    let attacker_saw = attacker.await.unwrap_or_else(|e| format!("the attacker panicked: {e}"));
    let _ = sampler.await;
    for watcher in watchers {
        let _ = watcher.await;
    }
    let (mut calls, mut ok, mut latencies_us) = (0, 0, Vec::new());
    for (c, o, l) in results {
        calls += c;
        ok += o;
        latencies_us.extend(l);
    }
    let after = target.counters();
    let rss_peak_kib = *peak.lock().expect("no panic holds it");
    let events = std::mem::take(&mut *events.lock().expect("no panic holds it"));
    Outcome {
        attack,
        before,
        after,
        core_dropped: target.metrics().core.dropped.total() - core_before,
        calls,
        ok,
        latencies_us,
        events,
        membership_intact: harness.nodes.iter().all(|n| alive(n) == 3),
        rss_before_kib,
        rss_peak_kib,
        attacker_saw,
    }
}

/// Awaits every future of `futures` together.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out = Vec::new();
    // Two callers: joined pairwise keeps this free of a futures dependency.
    let mut it = handles.into_iter();
    match (it.next(), it.next()) {
        (Some(a), Some(b)) => {
            let (a, b) = tokio::join!(a, b);
            out.push(a);
            out.push(b);
        }
        (Some(a), None) => out.push(a.await),
        _ => {}
    }
    out
}

/// `genuine`'s envelope (from member `sender`, whose id is one varint byte) around a body
/// that decodes as no message, with a valid checksum.
fn sealed_junk(genuine: &[u8], sender: u8) -> Vec<u8> {
    // magic, version, cluster id (a varint), sender (one byte): find the sender's byte.
    let cluster_end = 2 + genuine[2..].iter().position(|b| b & 0x80 == 0).expect("a varint ends") + 1;
    assert_eq!(genuine[cluster_end], sender);
    let mut bytes = genuine[..=cluster_end].to_vec();
    bytes.extend_from_slice(&[0xee; 48]);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// The attacker's loop until `stop`; returns what it saw, in a line.
async fn attack_loop(
    attack: Attack,
    addr: SocketAddr,
    other_ca: &DevCa,
    ca_pem: &str,
    ours: conclave_quic::TlsConfig,
    stop: Arc<AtomicBool>,
) -> String {
    let (_, ours) = ours.quinn_configs().expect("valid TLS");
    let mut saw = String::new();
    let running = || !stop.load(Ordering::Relaxed);
    match attack {
        Attack::NoCertificate | Attack::OtherCa => {
            let config = if attack == Attack::NoCertificate {
                anonymous(ca_pem)
            } else {
                other_ca.tls(NodeId(2)).expect("issues").quinn_configs().expect("valid").1
            };
            let endpoint = client(config);
            while running() {
                let Ok(connecting) = endpoint.connect(addr, conclave_quic::tls::SERVER_NAME) else { break };
                match connecting.await {
                    Err(e) => saw = format!("handshake failed: {e}"),
                    Ok(conn) => match conn.open_bi().await {
                        // The server refuses the client's certificate after the client's side
                        // of the handshake: the first use of the connection tells.
                        Ok((mut send, mut recv)) => {
                            let _ = send.write_all(&[0, 0, 0, 0]).await;
                            let _ = send.finish();
                            match recv.read_to_end(1 << 10).await {
                                Ok(_) => saw = "served (should not be)".into(),
                                Err(e) => saw = format!("refused: {e}"),
                            }
                        }
                        Err(e) => saw = format!("refused: {e}"),
                    },
                }
            }
        }
        Attack::SpoofedId => {
            let endpoint = client(ours);
            let me = endpoint.local_addr().expect("bound");
            match endpoint.connect(addr, conclave_quic::tls::SERVER_NAME).expect("a valid address").await {
                Err(e) => saw = format!("could not connect: {e}"),
                Ok(conn) => {
                    let as_n2 = join_datagrams(2, me, addr);
                    while running() {
                        for datagram in &as_n2 {
                            let _ = conn.send_datagram(Bytes::from(datagram.clone()));
                        }
                        // A request claiming n2.
                        if let Ok((mut send, mut recv)) = conn.open_bi().await {
                            // Version 1: version, sender, request number, budget (µs),
                            // method length, method.
                            let mut frame = vec![1u8];
                            frame.extend_from_slice(&2u64.to_le_bytes());
                            frame.extend_from_slice(&0u64.to_le_bytes());
                            frame.extend_from_slice(&1_000_000u32.to_le_bytes());
                            frame.push(4);
                            frame.extend_from_slice(b"echo");
                            let framed = [(frame.len() as u32).to_be_bytes().to_vec(), frame].concat();
                            let _ = send.write_all(&framed).await;
                            let _ = send.finish();
                            saw = match recv.read_to_end(1 << 10).await {
                                Ok(bytes) => format!("answered {bytes:?} (should not be)"),
                                Err(e) => format!("request as n2 refused: {e}"),
                            };
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
        Attack::BadFrames => {
            let endpoint = client(ours);
            match endpoint.connect(addr, conclave_quic::tls::SERVER_NAME).expect("a valid address").await {
                Err(e) => saw = format!("could not connect: {e}"),
                Ok(conn) => {
                    let frames: [Vec<u8>; 4] = [
                        u32::MAX.to_be_bytes().to_vec(),
                        [100u32.to_be_bytes().to_vec(), vec![1, 2, 3]].concat(),
                        [5u32.to_be_bytes().to_vec(), vec![3, 0, 0, 0, 0]].concat(),
                        [12u32.to_be_bytes().to_vec(), 9u64.to_le_bytes().to_vec(), vec![200, 1, 2, 3]].concat(),
                    ];
                    let mut i = 0;
                    while running() {
                        let Ok((mut send, mut recv)) = conn.open_bi().await else { break };
                        let _ = send.write_all(&frames[i % frames.len()]).await;
                        let _ = send.finish();
                        i += 1;
                        saw = match tokio::time::timeout(Duration::from_secs(2), recv.read_to_end(1 << 10)).await {
                            Ok(Ok(bytes)) => {
                                format!("refused: {}", String::from_utf8_lossy(bytes.get(5..).unwrap_or(&[])))
                            }
                            Ok(Err(e)) => format!("refused: {e}"),
                            Err(_) => "no answer within 2 s".into(),
                        };
                    }
                }
            }
        }
        Attack::Slowloris => {
            let endpoint = client(ours);
            match endpoint.connect(addr, conclave_quic::tls::SERVER_NAME).expect("a valid address").await {
                Err(e) => saw = format!("could not connect: {e}"),
                Ok(conn) => {
                    let (mut opened, mut granted_at_once, mut in_a_row) = (0u64, 0u64, 0u64);
                    let mut held = Vec::new();
                    while running() {
                        // Open as many as granted within 50 ms; write a prefix announcing a
                        // frame, then nothing.
                        match tokio::time::timeout(Duration::from_millis(50), conn.open_bi()).await {
                            Ok(Ok((mut send, recv))) => {
                                let _ = send.write_all(&64u32.to_be_bytes()).await;
                                opened += 1;
                                held.push((send, recv));
                                in_a_row += 1;
                                granted_at_once = granted_at_once.max(in_a_row);
                            }
                            Ok(Err(e)) => {
                                saw = format!("connection lost: {e}");
                                break;
                            }
                            Err(_) => {
                                // No more streams granted: the limit bites. It holds on to
                                // every stream it has (the server must take them back).
                                held.truncate(4096);
                                in_a_row = 0;
                            }
                        }
                    }
                    if saw.is_empty() {
                        saw = format!(
                            "opened {opened} streams, at most {granted_at_once} granted at once; each reset after the request timeout"
                        );
                    }
                }
            }
        }
        Attack::DatagramFlood => {
            let endpoint = client(ours);
            let me = endpoint.local_addr().expect("bound");
            match endpoint.connect(addr, conclave_quic::tls::SERVER_NAME).expect("a valid address").await {
                Err(e) => saw = format!("could not connect: {e}"),
                Ok(conn) => {
                    // Datagrams in a valid envelope from its own id (they pass the intake
                    // and reach the core), with a body no message has: every one is work.
                    let junk = Bytes::from(sealed_junk(&join_datagrams(9, me, addr)[0], 9));
                    let mut sent = 0u64;
                    while running() {
                        for _ in 0..256 {
                            if conn.send_datagram(junk.clone()).is_ok() {
                                sent += 1;
                            }
                        }
                        tokio::task::yield_now().await;
                    }
                    saw = format!("sent {sent} datagrams");
                }
            }
        }
    }
    saw
}

/// A client configuration that shows no certificate (it trusts the cluster CA).
fn anonymous(ca_pem: &str) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let ca_der = rustls::pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes()).expect("PEM");
    roots.add(ca_der).expect("a CA certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"conclave/1".to_vec()];
    let config = quinn::crypto::rustls::QuicClientConfig::try_from(config).expect("a QUIC config");
    quinn::ClientConfig::new(Arc::new(config))
}
