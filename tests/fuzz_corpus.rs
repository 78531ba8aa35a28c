//! Every corpus file of every fuzz target, run through the target's own body (the same
//! functions libFuzzer runs, from `fuzz/src`), so every input that ever found a bug stays
//! guarded on stable Rust, in `cargo test`. The inputs that found bugs are named in
//! `fuzz/corpus/<target>/crash-*` and listed in `fuzz/README.md`.

use std::path::Path;
use std::time::Duration;

use conclave_core::{Instant, NodeId};
use conclave_sim::{Disk, Fault, FaultPlan, SimBuilder};

#[allow(unreachable_pub, dead_code, reason = "the fuzz crate's library, included whole: its items are public there")]
#[path = "../fuzz/src/lib.rs"]
mod targets;

/// The corpus files of `target`, sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus").join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a readable directory entry").path();
            let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, body) = targets::TARGETS.iter().find(|(name, _)| *name == target).expect("a known target");
    let files = corpus(target);
    assert!(!files.is_empty(), "the corpus of {target} is empty");
    for (name, bytes) in &files {
        let outcome = std::panic::catch_unwind(|| body(bytes));
        assert!(outcome.is_ok(), "fuzz/corpus/{target}/{name} fails again (its panic is printed above)");
    }
}

#[test]
fn every_target_has_a_test_here() {
    let names: Vec<&str> = targets::TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["decode", "durable", "node_datagram", "quic_frames", "sim_plan"]);
}

#[test]
fn the_decode_corpus_passes() {
    replay("decode");
}

#[test]
fn the_durable_corpus_passes() {
    replay("durable");
}

#[test]
fn the_node_datagram_corpus_passes() {
    replay("node_datagram");
}

#[test]
fn the_quic_frames_corpus_passes() {
    replay("quic_frames");
}

#[test]
fn the_sim_plan_corpus_passes() {
    replay("sim_plan");
}

/// Found by `sim_plan` (`fuzz/corpus/sim_plan/crash-lone-voter`): a cluster whose only
/// voter started without a disk never elected it. Its abstention (a voter without its
/// disk does not vote until a majority of the other voters told it their terms) waited for
/// reports that no other voter could send.
#[test]
fn crash_lone_voter_a_lone_voter_leads_from_a_first_start_and_after_a_restart() {
    for members in [1, 3] {
        let plan = FaultPlan::new()
            .at(Instant::from_secs(5), Fault::Crash(NodeId(1)))
            .at(Instant::from_secs(10), Fault::Restart { node: NodeId(1), disk: Disk::Kept });
        let mut sim = SimBuilder::new().seed(516).members(members).voters(1).plan(plan).build().expect("valid");
        sim.run_until(Instant::from_secs(4));
        let leaders = |sim: &conclave_sim::Sim| {
            sim.ids().iter().map(|&id| sim.node(id).and_then(|n| n.leader())).collect::<Vec<_>>()
        };
        assert_eq!(leaders(&sim), vec![Some(NodeId(1)); members], "{members} members, first start");
        sim.run_for(Duration::from_secs(10));
        assert_eq!(leaders(&sim), vec![Some(NodeId(1)); members], "{members} members, after the restart");
        assert!(sim.finish().violations.is_empty());
    }
}

/// Found by `sim_plan` (`fuzz/corpus/sim_plan/crash-slow-member-claims`,
/// `crash-slow-member-backlog`, `crash-slow-member-verdict`): a member slowed to 40-51 ms
/// a datagram falls behind its load for good; a claim about it was not refuted in time
/// (n3, mid-chaos), after the heal its backlog still held a stale leader (n2 named n1, the
/// others n4), and ten seconds after its speed was restored a member declared it failed
/// (its backlog still ran). Not a bug of the protocol: outside the promises, which
/// `sim_plan` now says (a member slower than its load leaves liveness and verdicts
/// unpromised); slowed within its load, everything must hold.
#[test]
fn crash_slow_member_inputs_are_outside_the_liveness_promise() {
    for name in ["crash-slow-member-claims", "crash-slow-member-backlog", "crash-slow-member-verdict"] {
        let (_, bytes) = corpus("sim_plan").into_iter().find(|(n, _)| n == name).expect("in the corpus");
        let case = targets::sim_plan::Case::read(&bytes);
        let promises = targets::sim_plan::Promises::of(&case);
        let why = promises.liveness.unwrap_or_default();
        assert!(why.contains("slower than its load"), "{name}: {why:?}");
        assert!(promises.verdicts.is_some_and(|v| v.contains("slower than its load")), "{name}");
        assert_eq!(promises.election_safety, None, "{name}: safety is still promised");
    }
}
