//! Every scenario of the catalog over its default seeds, one test each, so that a failing
//! test names its scenario and the replay line selects it alone.
//!
//! `CONCLAVE_SEEDS=<k>` runs more seeds, `CONCLAVE_SEED=<n>` one (as every seeded test);
//! a failure prints the scenario, the seed, each violated check with its virtual time, the
//! plan, and the `cargo test` and `conclave run` lines that replay it.

use conclave_scenarios::catalog::CATALOG;
use conclave_scenarios::scenario_test;

scenario_test!(crash_detection, "crash-detection");
scenario_test!(partition_heal, "partition-heal");
scenario_test!(slow_member, "slow-member");
scenario_test!(leader_crash, "leader-crash");
scenario_test!(lease_fast_network, "lease-fast-network");
scenario_test!(partial_connectivity, "partial-connectivity");
scenario_test!(one_way_cut, "one-way-cut");
scenario_test!(bridge_member, "bridge-member");
scenario_test!(flapping_link, "flapping-link");
scenario_test!(heavy_packet_loss, "heavy-packet-loss");
scenario_test!(clock_skew, "clock-skew");
scenario_test!(mass_restart, "mass-restart");
scenario_test!(mass_restart_amnesia, "mass-restart-amnesia");
scenario_test!(crash_recovery, "crash-recovery");
scenario_test!(churn, "churn");
scenario_test!(large_cluster, "large-cluster");
scenario_test!(big_partition, "big-partition");
scenario_test!(cascading_failure, "cascading-failure");
scenario_test!(retry_storm, "retry-storm");
scenario_test!(random_chaos, "random-chaos");

/// The list above names every scenario: a new entry of the catalog gets its test.
#[test]
fn every_scenario_of_the_catalog_has_its_test() {
    let source = include_str!("catalog.rs");
    for scenario in CATALOG {
        let line = format!("scenario_test!({}, \"{}\");", scenario.name.replace('-', "_"), scenario.name);
        assert!(source.contains(&line), "no test for {}: add `{line}`", scenario.name);
    }
}

/// A failing seed's lines replay exactly that test with that seed, with the features the
/// build had: the failing seed of the broken protocol (`__broken_refutation`) prints them
/// both; a build without it runs the same line and passes.
#[test]
fn the_printed_replay_line_selects_one_scenario_test_and_its_seed() {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args(["--exact", "random_chaos", "--test-threads=1"])
        .env("CONCLAVE_SEED", "2")
        .env_remove("CONCLAVE_SEEDS")
        .env_remove("CONCLAVE_CHECK_DETERMINISM")
        .output()
        .expect("the test binary runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("running 1 test"), "{stdout}");
    if cfg!(feature = "__broken_refutation") {
        assert!(!out.status.success(), "seed 2 of random-chaos fails with the broken protocol");
        let all = format!("{stdout}{stderr}");
        for line in [
            "failed with seed 2: scenario random-chaos",
            "converges-after-heal violated at 84.500s (seed 2)",
            "replay: CONCLAVE_SEED=2 cargo test -p conclave-scenarios --features __broken_refutation --test catalog -- --exact random_chaos",
            "or: cargo run --release -p conclave-scenarios --features __broken_refutation -- run random-chaos --seed 2",
        ] {
            assert!(all.contains(line), "{line}\n{all}");
        }
    } else {
        assert!(out.status.success() && stdout.contains("1 passed"), "{stdout}{stderr}");
    }
}
