//! Hostile peers against a running cluster on loopback, each bounded in time: what the
//! cluster does, that honest callers are still served, that the offence is counted, that
//! memory stays bounded; and a second process with a running member's id.
//!
//! The figures (honest success rate and p99 during each attack, peak memory) come from the
//! `hostile` example, which runs the same attacks longer: BENCHMARKS.md. These tests
//! assert behaviour only.

mod attacks;

use std::time::Duration;

use attacks::{Attack, Harness, Outcome};
use conclave_core::{Event, NodeId};
use conclave_quic::{Cluster, Error, MemoryStorage};

/// How long each attack runs here.
const ATTACK: Duration = Duration::from_secs(2);
/// Far above what a bounded attack can make the process hold (its steady state is ~30 MiB),
/// far below what an unbounded one reaches in its run.
const MEMORY_BOUND_KIB: u64 = 256 * 1024;

/// What every attack must leave: the members see each other alive and said nothing about
/// each other, honest calls kept succeeding, memory stayed bounded.
fn unharmed(outcome: &Outcome) {
    assert!(outcome.membership_intact, "{:?}: the membership changed", outcome.attack);
    let about_honest: Vec<_> = outcome
        .events
        .iter()
        .filter(|(_, e)| match e {
            Event::MemberJoined(m)
            | Event::MemberUpdated(m)
            | Event::MemberSuspected(m)
            | Event::MemberFailed(m)
            | Event::MemberRecovered(m)
            | Event::MemberLeft(m) => m.id.0 <= 3,
            _ => true,
        })
        .collect();
    assert!(about_honest.is_empty(), "{:?}: {about_honest:?}", outcome.attack);
    assert!(outcome.ok > 0, "{:?}: no honest call succeeded in {} tries", outcome.attack, outcome.calls);
    // Calls fail only by missing their deadline of a second, which a loaded machine may
    // make a few do: most succeed.
    assert!(
        outcome.ok * 10 >= outcome.calls * 9,
        "{:?}: {} of {} honest calls",
        outcome.attack,
        outcome.ok,
        outcome.calls
    );
    let grew = outcome.rss_peak_kib.saturating_sub(outcome.rss_before_kib);
    assert!(grew < MEMORY_BOUND_KIB, "{:?}: memory grew by {grew} KiB", outcome.attack);
}

async fn run(attack: Attack) -> Outcome {
    let harness = Harness::new(Duration::from_secs(15)).await;
    let outcome = attacks::under_attack(&harness, attack, ATTACK).await;
    unharmed(&outcome);
    harness.shutdown().await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused_and_counted() {
    let o = run(Attack::NoCertificate).await;
    assert!(o.after.handshakes_failed > o.before.handshakes_failed, "{o:?}");
    assert_eq!(o.after.connections_opened, o.before.connections_opened, "{o:?}");
    assert!(o.attacker_saw.starts_with("refused") || o.attacker_saw.starts_with("handshake failed"), "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_ca_is_refused_and_counted() {
    let o = run(Attack::OtherCa).await;
    assert!(o.after.handshakes_failed > o.before.handshakes_failed, "{o:?}");
    assert_eq!(o.after.connections_opened, o.before.connections_opened, "{o:?}");
    // The attacker's client does not trust the cluster's CA either: it refuses first.
    assert!(o.attacker_saw.contains("certificate") || o.attacker_saw.contains("refused"), "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_speaking_for_another_is_dropped_and_counted() {
    let o = run(Attack::SpoofedId).await;
    assert!(o.after.datagrams_spoofed > o.before.datagrams_spoofed, "{o:?}");
    assert!(o.after.rpc_spoofed > o.before.rpc_spoofed, "{o:?}");
    assert!(o.attacker_saw.contains("refused"), "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_truncated_frames_are_refused_and_counted() {
    let o = run(Attack::BadFrames).await;
    assert!(o.after.rpc_refused >= o.before.rpc_refused + 4, "{o:?}");
    assert!(o.attacker_saw.starts_with("refused"), "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_never_written_are_reset_after_the_request_timeout() {
    let o = run(Attack::Slowloris).await;
    // Each stream held gives way after the request timeout; the stream limit bites first.
    assert!(o.after.rpc_timed_out > o.before.rpc_timed_out, "{o:?}");
    assert!(o.attacker_saw.contains(&format!("at most {} granted at once", attacks::MAX_STREAMS)), "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_flood_from_one_peer_is_cut_to_its_rate() {
    let o = run(Attack::DatagramFlood).await;
    let flooded = o.after.datagrams_flooded - o.before.datagrams_flooded;
    let passed = o.after.datagrams_received - o.before.datagrams_received;
    assert!(flooded > 0, "{o:?}");
    // What passed went to the core, which refused each (no message has that body).
    assert!(o.core_dropped > 0, "{o:?}");
    // At most the rate (a burst, then 1000 a second) plus the honest members' own.
    assert!(passed < 1000 * (ATTACK.as_secs() + 2) + 2000, "{passed} passed: {o:?}");
}

/// A second process with n2's id and n2's valid certificate (a copied configuration),
/// at another address: the cluster reports the conflict, n2 keeps its place, and the
/// newcomer refuses to start, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_with_a_running_id_refuses_to_start() {
    let harness = Harness::new(Duration::from_secs(15)).await;
    let seed = harness.target().addr();
    let mut events = harness.target().events();
    let impostor = Cluster::builder(NodeId(2))
        .bind(attacks::LOOPBACK)
        .seeds([seed])
        .config(attacks::config())
        .tls(harness.ca.tls(NodeId(2)).expect("issues"))
        .storage(MemoryStorage::new())
        .start()
        .await
        .expect("it starts: the conflict shows once a seed answers");
    let refused = impostor.joined(Duration::from_secs(10)).await;
    match &refused {
        Err(Error::IdInUse { id, holder }) => {
            assert_eq!((*id, *holder), (NodeId(2), harness.nodes[1].addr()));
            let line = refused.as_ref().unwrap_err().to_string();
            assert!(line.contains("already running at") && !line.contains('\n'), "{line}");
        }
        other => panic!("the newcomer was not refused: {other:?}"),
    }
    assert!(impostor.stopped_reason().is_some_and(|r| r.contains("already running")));
    // The seed reported the conflict, naming both addresses.
    let conflict = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Ok(Event::AddressConflict { existing, other }) => return (existing, other),
                Ok(_) => {}
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await
    .expect("the conflict is reported");
    assert_eq!((conflict.0.id, conflict.0.addr, conflict.1), (NodeId(2), harness.nodes[1].addr(), impostor.addr()));
    assert!(harness.target().metrics().core.conflicts >= 1);
    // It stopped without a Leave: n2 is alive everywhere, at its own address, unmoved.
    drop(impostor);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for node in &harness.nodes {
        let n2 = node.members().into_iter().find(|m| m.id == NodeId(2)).expect("n2 known");
        assert_eq!(
            (n2.addr, n2.state),
            (harness.nodes[1].addr(), conclave_core::MemberState::Alive),
            "at {:?}",
            node.id()
        );
    }
    let mut more = Vec::new();
    while let Ok(event) = events.try_recv() {
        more.push(event);
    }
    assert!(
        !more.iter().any(|e| matches!(e, Event::MemberLeft(m) | Event::MemberUpdated(m) if m.id == NodeId(2))),
        "{more:?}"
    );
    harness.shutdown().await;
}

/// A member whose CA is not the cluster's: it says why it could not join, in a line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_another_cas_certificate_says_why_it_cannot_join() {
    let harness = Harness::new(Duration::from_secs(15)).await;
    let other = conclave_quic::DevCa::new("another cluster").expect("a dev CA");
    let stranger = Cluster::builder(NodeId(4))
        .bind(attacks::LOOPBACK)
        .seeds([harness.target().addr()])
        .config(attacks::config())
        .tls(other.tls(NodeId(4)).expect("issues"))
        .storage(MemoryStorage::new())
        .start()
        .await
        .expect("it starts");
    let refused = stranger.joined(Duration::from_secs(3)).await;
    let Err(Error::JoinTimeout { why, .. }) = &refused else { panic!("{refused:?}") };
    assert!(why.contains(&harness.target().addr().to_string()) && why.contains("certificate"), "{why}");
    assert!(stranger.counters().connections_refused > 0);
    assert!(harness.target().counters().handshakes_failed > 0, "the cluster counted the refused handshakes");
    assert!(harness.target().members().iter().all(|m| m.id != NodeId(4)));
    stranger.abort();
    harness.shutdown().await;
}
