//! A protocol deliberately broken (the core's `__broken_refutation` feature: a member never
//! refutes a suspicion of itself) is caught by the catalog within its default seeds;
//! `shrink` makes the failing chaos plan a handful of faults that still fail the same
//! check; the timeline page of the failing seed, opened in a headless browser, shows its
//! lanes, its faults and the violation.
//!
//! `cargo test -p conclave-scenarios --features __broken_refutation --test broken_refutation`
//! (CI runs it so, with `CONCLAVE_REQUIRE_BROWSER=1`). Without the feature there is
//! nothing to catch and this file is empty.
#![cfg(feature = "__broken_refutation")]

mod browser;

use conclave_scenarios::catalog::{self, CATALOG};
use conclave_scenarios::shrink::shrink;
use conclave_scenarios::{timeline, PlanFile, Trial};
use conclave_sim::TraceMode;

/// The first of `scenario`'s default seeds that fails, with the check that failed.
fn first_failing(name: &str) -> Option<(u64, &'static str)> {
    let scenario = catalog::find(name).expect("in the catalog");
    (1..=scenario.default_seeds).find_map(|seed| {
        let trial = Trial::of(scenario, seed, None).expect("a valid trial");
        let outcome = trial.run(TraceMode::Events, None).expect("it runs");
        (!outcome.held()).then(|| (seed, outcome.failed_check().expect("a failed check")))
    })
}

#[test]
fn the_catalog_catches_a_member_that_never_refutes_within_its_default_seeds() {
    let caught: Vec<(&str, u64, &str)> =
        CATALOG.iter().filter_map(|s| first_failing(s.name).map(|(seed, check)| (s.name, seed, check))).collect();
    for (name, seed, check) in &caught {
        println!("{name}: seed {seed} fails {check}");
    }
    let names: Vec<&str> = caught.iter().map(|c| c.0).collect();
    // A suspicion that nobody refutes turns into a false verdict wherever a live member is
    // suspected: after a cut heals, under loss, after a restart.
    for expected in ["random-chaos", "partition-heal", "heavy-packet-loss", "partial-connectivity"] {
        assert!(names.contains(&expected), "{expected} did not catch it: {caught:?}");
    }
}

#[test]
fn shrink_makes_the_failing_chaos_plan_a_handful_of_faults_that_still_fail() {
    let (seed, check) = first_failing("random-chaos").expect("a chaos seed fails within the defaults");
    let trial = Trial::named("random-chaos", seed, None).expect("a valid trial");
    let before = trial.plan.steps.len();
    let shrunk = shrink(&trial, check, 2000, &mut |_, _| {}).expect("it shrinks");
    let after = shrunk.trial.plan.steps.len();
    println!(
        "random-chaos seed {seed} ({check}): {before} fault steps -> {after} in {} runs:\n{}",
        shrunk.runs,
        shrunk.trial.plan_file()
    );
    assert!(after <= 4 && after < before, "{before} -> {after}: {}", shrunk.trial.plan);
    // Replayed from the saved text, it fails the same check.
    let file: PlanFile = shrunk.trial.plan_file().to_string().parse().expect("the file reads back");
    let replayed = Trial::from_file(&file).expect("a valid trial").run(TraceMode::Events, None).expect("it runs");
    assert!(replayed.report.violations.iter().any(|v| v.checker == check), "{:?}", replayed.report.problems());
}

#[test]
fn the_timeline_of_a_failing_chaos_seed_shows_its_lanes_faults_and_violation() {
    // The first failing default seed with a cluster of eight or more.
    let scenario = catalog::find("random-chaos").expect("in the catalog");
    let (trial, outcome) = (1..=scenario.default_seeds)
        .filter(|&seed| scenario.members_for(seed) >= 8)
        .find_map(|seed| {
            let trial = Trial::of(scenario, seed, None).expect("a valid trial");
            let outcome = trial.run(TraceMode::Events, None).expect("it runs");
            (!outcome.held() && outcome.first_violation().is_some()).then_some((trial, outcome))
        })
        .expect("a failing seed of eight members or more");
    let violation = outcome.first_violation().expect("a violation").clone();
    let path = std::env::temp_dir().join(format!("conclave-timeline-chaos-{}-{}.html", std::process::id(), trial.seed));
    std::fs::write(&path, timeline::html(&trial, &outcome.report)).expect("written");
    let Some(dom) = browser::dump_dom(&path) else { return };
    let _ = std::fs::remove_file(&path);
    assert_eq!(browser::count(&dom, "rect", "lane"), trial.members, "one lane per member (seed {})", trial.seed);
    assert!(browser::count(&dom, "rect", "fault-band") >= 1, "the faults as bands");
    let marker = format!("<g class=\"violation-marker\" data-check=\"{}\"", violation.checker);
    assert!(dom.contains(&marker), "the violation marker of {}", violation.checker);
    let shown = format!("{} violated at {}", violation.checker, violation.at);
    assert!(dom.contains(&shown), "the marker's message: {shown}");
    assert!(dom.contains("a check failed"), "the verdict");
    assert!(browser::count(&dom, "circle", "mark failed") >= 1, "the false verdicts on their lanes");
}
