//! The runtime on loopback: real QUIC, real TLS, 127.0.0.1 port 0 only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conclave_core::{
    Command, Config, Durable, ElectionConfig, Event, InitialClusterState, MemberState, Node, NodeConfig, NodeId, Output,
};
use conclave_quic::{quinn, Cluster, DevCa, Error, MemoryStorage, StateDir};

const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// `Config::local()` with a small `max_datagram`, so an oversized datagram still fits in
/// one QUIC datagram.
fn config() -> Config {
    let mut config = Config::local();
    config.max_datagram = 1024;
    config
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("conclave-quic-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn start(ca: &DevCa, id: u64, seeds: &[SocketAddr]) -> Cluster {
    Cluster::builder(NodeId(id))
        .bind(LOOPBACK)
        .seeds(seeds.iter().copied())
        .config(config())
        .tls(ca.tls(NodeId(id)).unwrap())
        .storage(MemoryStorage::new())
        .handler("echo", |request| async move { Ok(request.body) })
        .start()
        .await
        .unwrap()
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

async fn form(ca: &DevCa, n: u64) -> Vec<Cluster> {
    let first = start(ca, 1, &[]).await;
    let seed = first.addr();
    let mut nodes = vec![first];
    for id in 2..=n {
        nodes.push(start(ca, id, &[seed]).await);
    }
    until("the cluster forms", Duration::from_secs(10), || nodes.iter().all(|node| alive(node) == n as usize)).await;
    nodes
}

/// A request frame in the runtime's format (`conclave_quic::rpc`, version 1), claiming
/// `sender`, with request number `number` and a budget of a second.
fn request_frame(sender: u64, number: u64, method: &str, body: &[u8]) -> Vec<u8> {
    let mut request = vec![1u8];
    request.extend_from_slice(&sender.to_le_bytes());
    request.extend_from_slice(&number.to_le_bytes());
    request.extend_from_slice(&1_000_000u32.to_le_bytes());
    request.push(method.len() as u8);
    request.extend_from_slice(method.as_bytes());
    request.extend_from_slice(body);
    [(request.len() as u32).to_be_bytes().to_vec(), request].concat()
}

/// A bare quinn client endpoint on loopback with this client configuration.
fn client(config: quinn::ClientConfig) -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client(LOOPBACK).unwrap();
    endpoint.set_default_client_config(config);
    endpoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_form_a_cluster_and_answer_calls() {
    let ca = DevCa::new("five").unwrap();
    let nodes = form(&ca, 5).await;
    for node in &nodes {
        let ids: Vec<u64> = node.members().iter().map(|m| m.id.0).collect();
        assert_eq!(ids.len(), 5, "{ids:?}");
    }
    let answer = nodes[0].call(NodeId(5), "echo", &b"ping"[..], Duration::from_secs(2)).await.unwrap();
    assert_eq!(answer, Bytes::from_static(b"ping"));
    let missing = nodes[0].call(NodeId(5), "nope", &b""[..], Duration::from_secs(2)).await;
    assert!(matches!(missing, Err(Error::NoSuchMethod { .. })), "{missing:?}");
    let metrics = nodes[0].metrics();
    assert_eq!(metrics.rpc_latency_us.len(), 1, "one successful call was timed");
    assert!(metrics.core.sent.total() > 0 && metrics.counters.datagrams_sent > 0);

    // A graceful shutdown is seen as a departure, not a failure.
    let mut events = nodes[0].events();
    nodes[4].shutdown().await;
    let left = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(Event::MemberLeft(m)) if m.id == NodeId(5) => return true,
                Ok(Event::MemberFailed(m)) if m.id == NodeId(5) => return false,
                Ok(_) => {}
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await;
    assert_eq!(left, Ok(true), "n5's departure was not seen as MemberLeft");
    for node in &nodes[..4] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_subscriber_is_told_how_many_events_it_missed() {
    let ca = DevCa::new("lag").unwrap();
    let first = Cluster::builder(NodeId(1))
        .bind(LOOPBACK)
        .config(config())
        .tls(ca.tls(NodeId(1)).unwrap())
        .storage(MemoryStorage::new())
        .event_capacity(2)
        .start()
        .await
        .unwrap();
    let mut events = first.events();
    let mut others = Vec::new();
    for id in 2..=4 {
        others.push(start(&ca, id, &[first.addr()]).await);
    }
    until("n1 sees the others", Duration::from_secs(10), || alive(&first) == 4).await;
    match events.recv().await {
        Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => assert!(missed >= 1),
        other => panic!("a subscriber two events behind three joins was not told it lagged: {other:?}"),
    }
    assert!(matches!(events.recv().await, Ok(Event::MemberJoined(_))), "the newest events follow");
    for node in others.iter().chain([&first]) {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_member_is_seen_failed_by_the_others() {
    let ca = DevCa::new("abort").unwrap();
    let nodes = form(&ca, 4).await;
    let mut events: Vec<_> = nodes[..3].iter().map(|n| n.events()).collect();
    nodes[3].abort();
    for (i, rx) in events.iter_mut().enumerate() {
        let failed = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match rx.recv().await {
                    Ok(Event::MemberFailed(m)) if m.id == NodeId(4) => return,
                    Ok(_) => {}
                    Err(e) => panic!("event stream: {e}"),
                }
            }
        })
        .await;
        assert!(failed.is_ok(), "node {} never saw n4 failed", i + 1);
    }
    // The others are still alive to each other: no false verdict.
    for node in &nodes[..3] {
        assert_eq!(alive(node), 3, "{:?}", node.members());
    }
    for node in &nodes[..3] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_dead_member_fails_within_its_deadline() {
    let ca = DevCa::new("dead").unwrap();
    let nodes = form(&ca, 3).await;
    nodes[0].call(NodeId(2), "echo", &b"warm"[..], Duration::from_secs(2)).await.unwrap();
    nodes[1].abort();
    let deadline = Duration::from_millis(300);
    let started = tokio::time::Instant::now();
    let result = nodes[0].call(NodeId(2), "echo", &b"hello"[..], deadline).await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(Error::DeadlineExceeded { .. } | Error::Connection { .. } | Error::UnknownMember(_))),
        "{result:?}"
    );
    assert!(took < deadline + Duration::from_millis(500), "returned after {took:?}");
    let message = result.unwrap_err().to_string();
    assert!(message.contains("n") || message.contains("NodeId(2)"), "{message}");
    // Once it is declared failed, a call is refused at once.
    until("n2 is failed at n1", Duration::from_secs(15), || {
        nodes[0].members().iter().any(|m| m.id == NodeId(2) && m.state == MemberState::Failed)
    })
    .await;
    let refused = nodes[0].call(NodeId(2), "echo", &b"x"[..], deadline).await;
    assert!(matches!(refused, Err(Error::UnknownMember(NodeId(2)))), "{refused:?}");
    assert!(nodes[0].metrics().counters.rpc_failed >= 1);
    nodes[0].shutdown().await;
    nodes[2].shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_cluster_certificate_is_refused() {
    let ca = DevCa::new("ours").unwrap();
    let node = start(&ca, 1, &[]).await;

    // A certificate for the right id, from another CA.
    let stranger = DevCa::new("theirs").unwrap();
    let (_, foreign) = stranger.tls(NodeId(2)).unwrap().quinn_configs().unwrap();
    let refused = connects(client(foreign), node.addr()).await;
    assert!(!refused, "a certificate from another CA was accepted");

    // No certificate at all.
    let mut roots = rustls::RootCertStore::empty();
    let ca_der = rustls::pki_types::pem::PemObject::from_pem_slice(ca.ca_pem().as_bytes()).unwrap();
    roots.add(ca_der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut anonymous = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    anonymous.alpn_protocols = vec![b"conclave/1".to_vec()];
    let anonymous = quinn::crypto::rustls::QuicClientConfig::try_from(anonymous).unwrap();
    let refused = connects(client(quinn::ClientConfig::new(Arc::new(anonymous))), node.addr()).await;
    assert!(!refused, "a client without a certificate was accepted");

    until("both handshakes counted as failed", Duration::from_secs(5), || {
        node.metrics().counters.handshakes_failed >= 2
    })
    .await;
    assert_eq!(node.metrics().counters.connections_opened, 0);

    // The control: a certificate from the cluster CA is accepted.
    let (_, ours) = ca.tls(NodeId(2)).unwrap().quinn_configs().unwrap();
    assert!(connects(client(ours), node.addr()).await, "a cluster certificate was refused");
    node.shutdown().await;
}

/// Whether a connection to `addr` is established and still open a moment later (a
/// server that refuses the client's certificate closes it right after the client's
/// side of the handshake).
async fn connects(endpoint: quinn::Endpoint, addr: SocketAddr) -> bool {
    let Ok(connecting) = endpoint.connect(addr, conclave_quic::tls::SERVER_NAME) else { return false };
    let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), connecting).await else { return false };
    // A round trip on a stream proves the server kept the connection.
    let Ok((mut send, mut recv)) = conn.open_bi().await else { return false };
    let _ = send.write_all(&[0, 0, 0, 0]).await;
    let _ = send.finish();
    let open = matches!(tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 16)).await, Ok(Ok(_)));
    conn.close(0u32.into(), b"done");
    open
}

/// The datagrams a fresh core member `id` at `addr` sends to join through `seed`.
fn join_datagrams(id: u64, addr: SocketAddr, seed: SocketAddr) -> Vec<Vec<u8>> {
    let mut node = Node::new(NodeConfig::new(NodeId(id), addr, config(), 7), conclave_core::Instant::ZERO).unwrap();
    node.handle_command(conclave_core::Instant::ZERO, Command::Join(vec![seed])).unwrap();
    let mut out = Vec::new();
    while let Some(output) = node.poll_output() {
        if let Output::Transmit(t) = output {
            out.push(t.payload);
        }
    }
    assert!(!out.is_empty());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_speak_for_another() {
    let ca = DevCa::new("spoof").unwrap();
    let node = start(&ca, 1, &[]).await;

    // The runtime refuses to start n3 with n2's certificate.
    let wrong = Cluster::builder(NodeId(3)).tls(ca.tls(NodeId(2)).unwrap()).storage(MemoryStorage::new()).start().await;
    assert!(
        matches!(wrong, Err(Error::IdentityMismatch { cert: Some(NodeId(2)), configured: NodeId(3) })),
        "{wrong:?}"
    );

    // A hand-made client with n2's certificate sends n3's join: dropped and counted.
    let (_, n2) = ca.tls(NodeId(2)).unwrap().quinn_configs().unwrap();
    let endpoint = client(n2);
    let me = endpoint.local_addr().unwrap();
    let conn = endpoint.connect(node.addr(), conclave_quic::tls::SERVER_NAME).unwrap().await.unwrap();
    for datagram in join_datagrams(3, me, node.addr()) {
        conn.send_datagram(Bytes::from(datagram)).unwrap();
    }
    until("the spoofed datagram is counted", Duration::from_secs(5), || node.metrics().counters.datagrams_spoofed >= 1)
        .await;
    // An RPC claiming to come from n3 is refused too.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&request_frame(3, 0, "echo", b"")).await.unwrap();
    let _ = send.finish();
    let answer = recv.read_to_end(1 << 16).await;
    assert!(answer.is_err(), "a request claiming n3 was answered: {answer:?}");
    assert_eq!(node.metrics().counters.rpc_spoofed, 1);
    assert_eq!(node.metrics().counters.rpc_served, 0);

    // The control: the same connection speaking as n2 is heard.
    for datagram in join_datagrams(2, me, node.addr()) {
        conn.send_datagram(Bytes::from(datagram)).unwrap();
    }
    until("n2's own join is accepted", Duration::from_secs(5), || node.members().iter().any(|m| m.id == NodeId(2)))
        .await;
    assert!(node.members().iter().all(|m| m.id != NodeId(3)), "n3 was admitted: {:?}", node.members());
    node.shutdown().await;
}

/// A member behind a NAT advertises an address nobody answers at and connects from
/// another: the others reach it over the connection it opened (datagrams for a member go
/// by its id), never dial the advertised address, and never suspect it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_reached_where_it_connects_from_not_where_it_advertises() {
    let ca = DevCa::new("nat").unwrap();
    let n1 = start(&ca, 1, &[]).await;
    let mut events = n1.events();
    let alone = n1.members_version();
    // A socket bound and never read: the advertised address answers nothing.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let advertised = silent.local_addr().unwrap();
    let n2 = Cluster::builder(NodeId(2))
        .bind(LOOPBACK)
        .advertise(advertised)
        .seeds([n1.addr()])
        .config(config())
        .tls(ca.tls(NodeId(2)).unwrap())
        .storage(MemoryStorage::new())
        .start()
        .await
        .unwrap();
    until("n1 holds n2, alive, at the address it advertises", Duration::from_secs(10), || {
        n1.members().iter().any(|m| m.id == NodeId(2) && m.addr == advertised && m.state == MemberState::Alive)
    })
    .await;
    assert!(n1.members_version() > alone, "a member joined: the members' version moved");
    let pinged = n2.metrics().core.received.get(conclave_core::MessageKind::Ping);
    // Config::local probes every 100 ms; a member no ack came back from is suspected
    // within a few probes and failed within a few seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n2_pings = n2.metrics().core.received.get(conclave_core::MessageKind::Ping) - pinged;
    assert!(n2_pings >= 10, "n1's probes reach n2: {n2_pings} in 3 s");
    let counters = n1.metrics().counters;
    assert_eq!(counters.connections_refused, 0, "n1 dialled: {:?}", n1.last_refusal());
    assert_eq!(counters.datagrams_unsent, 0);
    let held = n1.members().into_iter().find(|m| m.id == NodeId(2)).expect("n2 is known");
    assert_eq!((held.state, held.addr), (MemberState::Alive, advertised));
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(&event, Event::MemberSuspected(m) | Event::MemberFailed(m) if m.id == NodeId(2)),
            "n1 judged n2 unreachable: {event:?}"
        );
    }
    drop(silent);
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_truncated_input_is_refused_without_harm() {
    let ca = DevCa::new("garbage").unwrap();
    let nodes = form(&ca, 2).await;
    let target = &nodes[0];
    let (_, n3) = ca.tls(NodeId(3)).unwrap().quinn_configs().unwrap();
    let endpoint = client(n3);
    let me = endpoint.local_addr().unwrap();
    let conn = endpoint.connect(target.addr(), conclave_quic::tls::SERVER_NAME).unwrap().await.unwrap();

    // Datagrams: empty, noise, a truncated envelope, an oversized one, a damaged one.
    let genuine = join_datagrams(3, me, target.addr()).remove(0);
    let mut damaged = genuine.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    let mut oversized = genuine.clone();
    oversized.resize(1100, 0);
    let garbage: Vec<Vec<u8>> =
        vec![Vec::new(), b"hello, not conclave".to_vec(), genuine[..10].to_vec(), oversized, damaged];
    let before = target.metrics();
    for datagram in &garbage {
        conn.send_datagram(Bytes::from(datagram.clone())).unwrap();
    }
    until("every bad datagram is dropped and counted", Duration::from_secs(5), || {
        let m = target.metrics();
        m.counters.datagrams_malformed - before.counters.datagrams_malformed
            + (m.core.dropped.total() - before.core.dropped.total())
            >= garbage.len() as u64
    })
    .await;

    // Stream frames: a length above the limit, a frame cut short, a malformed request.
    let max = 1u32 << 20;
    let frames: Vec<Vec<u8>> = vec![
        (max + 1).to_be_bytes().to_vec(),
        [100u32.to_be_bytes().to_vec(), vec![1, 2, 3]].concat(),
        [5u32.to_be_bytes().to_vec(), vec![3, 0, 0, 0, 0]].concat(),
        [12u32.to_be_bytes().to_vec(), 3u64.to_le_bytes().to_vec(), vec![200, 1, 2, 3]].concat(),
    ];
    for frame in &frames {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(frame).await.unwrap();
        let _ = send.finish();
        let answer = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 16)).await.unwrap();
        // Refused: status 3 with a reason, or the stream reset; never a served request.
        if let Ok(bytes) = answer {
            assert_eq!(bytes.get(4), Some(&3), "{bytes:?}");
        }
    }
    let after = target.metrics();
    assert_eq!(after.counters.rpc_refused - before.counters.rpc_refused, frames.len() as u64);
    assert_eq!(after.counters.rpc_served, before.counters.rpc_served);

    // No harm: the member still serves and still sees its peer alive.
    let answer = nodes[1].call(NodeId(1), "echo", &b"still here"[..], Duration::from_secs(2)).await.unwrap();
    assert_eq!(answer, Bytes::from_static(b"still here"));
    assert_eq!(alive(target), 2);
    // A call whose request exceeds the limit is refused before it is sent.
    let big = vec![0u8; 2 << 20];
    let too_big = nodes[1].call(NodeId(1), "echo", big, Duration::from_secs(2)).await;
    assert!(matches!(too_big, Err(Error::Frame(_))), "{too_big:?}");
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_keeps_its_incarnation_and_vote() {
    let ca = DevCa::new("restart").unwrap();
    let dir = temp_dir("restart");
    // A vote cast before: term 5, for n1.
    StateDir::open(&dir).unwrap().store(&Durable::new(0, 5, Some(NodeId(1)))).unwrap();
    let n1 = start(&ca, 1, &[]).await;
    let start_n2 = || {
        Cluster::builder(NodeId(2))
            .bind(LOOPBACK)
            .seeds([n1.addr()])
            .config(config())
            .tls(ca.tls(NodeId(2)).unwrap())
            .state_dir(&dir)
            .start()
    };
    let n2 = start_n2().await.unwrap();
    until("n2 joins", Duration::from_secs(10), || alive(&n1) == 2).await;
    let first = StateDir::open(&dir).unwrap().load().unwrap().unwrap();
    assert!(first.incarnation >= 1, "{first:?}");
    let seen = |n: &Cluster| n.members().iter().find(|m| m.id == NodeId(2)).map(|m| (m.incarnation, m.state));
    n2.abort();
    drop(n2);
    let n2 = start_n2().await.unwrap();
    let second = StateDir::open(&dir).unwrap().load().unwrap().unwrap();
    assert!(second.incarnation > first.incarnation, "{first:?} then {second:?}");
    assert_eq!((second.term, second.voted_for), (5, Some(NodeId(1))), "the vote survived");
    until("n1 sees the restarted n2 alive at its new incarnation", Duration::from_secs(10), || {
        seen(&n1) == Some((second.incarnation, MemberState::Alive))
    })
    .await;
    n2.shutdown().await;
    n1.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_told_its_cluster_exists_votes_again_only_on_the_operators_word() {
    let ca = DevCa::new("initial-cluster-state").unwrap();
    let mut voting = config();
    voting.election = ElectionConfig::with_voters([NodeId(1)]);
    let builder = |id: u64| {
        Cluster::builder(NodeId(id))
            .bind(LOOPBACK)
            .config(voting.clone())
            .tls(ca.tls(NodeId(id)).unwrap())
            .storage(MemoryStorage::new())
    };
    // The only voter, on an empty state, told its cluster exists: its lost state is a
    // majority's, so it waits (not told, it would lead within about two election timeouts,
    // 600 ms with these settings).
    let n1 = builder(1).initial_cluster_state(InitialClusterState::Existing).start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(n1.leader(), None, "it waits for the operator");
    n1.resume_voting().await.unwrap();
    until("n1 leads on the operator's word", Duration::from_secs(5), || n1.leader() == Some(NodeId(1))).await;
    n1.shutdown().await;
    // Said of a member that does not vote: a readable error, and no member.
    let Err(refused) = builder(2).initial_cluster_state(InitialClusterState::New).start().await else {
        panic!("n2 does not vote: its start must fail");
    };
    assert!(refused.to_string().contains("`new` on n2, which is not one of the voters"), "{refused}");
}

/// Storage whose writes fail (a full or read-only disk), holding a previous run's state.
struct BrokenDisk;

impl conclave_quic::Storage for BrokenDisk {
    fn load(&self) -> Result<Option<Durable>, conclave_quic::StateError> {
        Ok(Some(Durable::new(3, 0, None)))
    }

    fn store(&mut self, _: &Durable) -> Result<(), conclave_quic::StateError> {
        Err(conclave_quic::StateError::Io { path: "durable.bin".into(), source: std::io::Error::other("disk full") })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_that_cannot_be_stored_stops_the_member_before_it_speaks() {
    let ca = DevCa::new("disk").unwrap();
    // Restarted, the member must store its new incarnation before anything else: it cannot.
    let started = Cluster::builder(NodeId(1))
        .bind(LOOPBACK)
        .config(config())
        .tls(ca.tls(NodeId(1)).unwrap())
        .storage(BrokenDisk)
        .start()
        .await;
    let message = started.unwrap_err().to_string();
    assert!(message.contains("disk full"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_pool_stays_within_its_bound() {
    let ca = DevCa::new("pool").unwrap();
    let first = start(&ca, 1, &[]).await;
    let bounded = Cluster::builder(NodeId(2))
        .bind(LOOPBACK)
        .seeds([first.addr()])
        .config(config())
        .tls(ca.tls(NodeId(2)).unwrap())
        .storage(MemoryStorage::new())
        .max_connections(1)
        .start()
        .await
        .unwrap();
    let others = [start(&ca, 3, &[first.addr()]).await, start(&ca, 4, &[first.addr()]).await];
    // Talking to three peers through a pool of one, it evicts and redials, and still
    // keeps the whole cluster in view.
    until("the bounded member sees everyone", Duration::from_secs(15), || alive(&bounded) == 4).await;
    until("evictions are counted", Duration::from_secs(5), || bounded.counters().connections_evicted > 0).await;
    until("everyone sees the bounded member", Duration::from_secs(15), || {
        others.iter().chain([&first]).all(|n| alive(n) == 4)
    })
    .await;
    for node in others.iter().chain([&first, &bounded]) {
        node.shutdown().await;
    }
}
