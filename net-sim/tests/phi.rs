//! The Phi Accrual detector earns its place in a whole cluster: crashes are suspected
//! sooner than the probes' own silence rule alone would suspect them.
//!
//! A watcher probes each peer it watches once a probe period and takes every datagram from
//! it as a heartbeat. Two rules say a peer is late: Phi (the learned mean interval, the
//! acceptable pause and a few deviations after the last heartbeat: about 1.1-1.6 s in a
//! `lan` cluster) and, whatever Phi says, three probe periods of silence plus a probe
//! timeout. The last answer before a crash comes at most one period before it, so the
//! silence rule alone cannot suspect a crashed member sooner than two periods (1.5 s)
//! after the crash, plus a round trip timeout. A detector that never says "late" leaves
//! every crash to that rule, and this test fails.

use std::time::Duration;

use conclave_core::{Config, Event, Instant, NodeId};
use conclave_sim::check::NO_ELECTION;
use conclave_sim::{Fault, FaultPlan, SimBuilder};

const MEMBERS: u64 = 10;
const RUNS: u64 = 21;

/// How long after its crash some member first suspects the crashed member, in one run.
fn first_suspicion_after_crash(seed: u64) -> Duration {
    let victim = NodeId(1 + seed % MEMBERS);
    // Spread over a probe period, so the crash falls anywhere between two probes.
    let crash = Instant::from_secs(10) + Duration::from_millis(seed * 211 % 750);
    let mut sim = SimBuilder::new()
        .seed(seed)
        .members(MEMBERS as usize)
        .plan(FaultPlan::new().at(crash, Fault::Crash(victim)))
        .opt_out_of(NO_ELECTION)
        .build()
        .expect("valid settings");
    sim.run_until(crash + Duration::from_secs(10));
    let first = sim
        .events()
        .filter(|(at, _, e)| {
            *at >= crash && matches!(e, Event::MemberSuspected(m) | Event::MemberFailed(m) if m.id == victim)
        })
        .map(|(at, _, _)| at)
        .min()
        .unwrap_or_else(|| panic!("seed {seed}: nobody suspected {victim} in the 10 s after its crash"));
    let report = sim.finish();
    assert!(report.violations.is_empty(), "seed {seed}: {:?}", report.violations);
    first - crash
}

#[test]
fn phi_suspects_most_crashes_sooner_than_the_silence_rule_could() {
    let period = Config::lan().probe_period();
    let mut delays: Vec<Duration> = (1..=RUNS).map(first_suspicion_after_crash).collect();
    delays.sort();
    let median = delays[delays.len() / 2];
    // The silence rule alone: never before two periods after the crash.
    assert!(
        median < period * 2,
        "the median first suspicion came {median:?} after the crash, not before two probe periods \
         ({:?}): Phi did not say the peer was late (all, sorted: {delays:?})",
        period * 2
    );
}
