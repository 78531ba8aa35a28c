//! The seeded-test entry point, seen from outside: a failing seed prints its seed, its plan
//! and a replay command that selects exactly the failing test; malformed variables fail.

use std::process::Command;
use std::time::Duration;

use conclave_core::{Instant, NodeId};
use conclave_sim::{Fault, FaultPlan, SimBuilder};

conclave_sim::seeded_test! {
    /// Not a test on its own: run by `a_failing_seed_prints_seed_plan_and_replay`, it fails
    /// its own assertion on seed 3.
    fn child_fails_on_seed_three(seed) (default_seeds = 4) {
        let plan = FaultPlan::new().at(Instant::from_secs(1), Fault::Crash(NodeId(2)));
        let mut sim = SimBuilder::new().seed(seed).members(3).plan(plan).default_checkers(false).build().unwrap();
        sim.run_for(Duration::from_secs(2));
        let failing = std::env::var("CONCLAVE_SEEDED_CHILD").is_ok() && seed == 3;
        assert!(!failing, "the test's own assertion fails on seed {seed}");
        sim.finish()
    }
}

fn child(envs: &[(&str, &str)]) -> (bool, String, String) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command.args(["--exact", "child_fails_on_seed_three", "--nocapture", "--test-threads=1"]);
    command.env("CONCLAVE_SEEDED_CHILD", "1");
    for var in ["CONCLAVE_SEED", "CONCLAVE_SEEDS", "CONCLAVE_CHECK_DETERMINISM"] {
        command.env_remove(var);
    }
    command.envs(envs.iter().copied());
    let out = command.output().expect("the test binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_failing_seed_prints_seed_plan_and_replay() {
    let (ok, stdout, stderr) = child(&[]);
    assert!(!ok, "seed 3 fails");
    let all = format!("{stdout}\n{stderr}");
    assert!(all.contains("the test's own assertion fails on seed 3"), "{all}");
    assert!(all.contains("failed with seed 3"), "{all}");
    assert!(all.contains("plan: at 1s crash n2\n"), "{all}");
    let replay = "CONCLAVE_SEED=3 cargo test -p conclave-sim --test seeded -- --exact child_fails_on_seed_three";
    assert!(all.contains(&format!("replay: {replay}")), "{all}");
    // The replay line's filter selects exactly this test in this target (the binary is the
    // `seeded` target), and its seed alone fails.
    let (ok, stdout, _) = child(&[("CONCLAVE_SEED", "3")]);
    assert!(!ok && stdout.contains("running 1 test"), "{stdout}");
    let (ok, stdout, _) = child(&[("CONCLAVE_SEED", "2")]);
    assert!(ok && stdout.contains("1 passed"), "{stdout}");
    // Two seeds skip seed 3; determinism checking runs them twice and passes.
    let (ok, _, stderr) = child(&[("CONCLAVE_SEEDS", "2"), ("CONCLAVE_CHECK_DETERMINISM", "1")]);
    assert!(ok, "{stderr}");
}

#[test]
fn a_malformed_variable_fails_at_once_naming_it() {
    for (var, value) in [
        ("CONCLAVE_SEED", "0x"),
        ("CONCLAVE_SEED", "2s"),
        ("CONCLAVE_SEEDS", "many"),
        ("CONCLAVE_CHECK_DETERMINISM", "2"),
    ] {
        let (ok, stdout, stderr) = child(&[(var, value)]);
        let all = format!("{stdout}\n{stderr}");
        assert!(!ok, "{var}={value} was accepted");
        assert!(all.contains(&format!("{var}={value:?} is not")), "{all}");
        assert!(!all.contains("failed with seed"), "no seed ran: {all}");
    }
}
