//! The timeline page in a real headless browser (see `browser/mod.rs`): what its script
//! drew at 300 members.
//!
//! The page of a failing chaos seed, with its violation marker, is drawn in
//! `broken_refutation.rs` (built with the `__broken_refutation` feature, as CI runs it).

mod browser;

use conclave_core::Instant;
use conclave_scenarios::{timeline, PlanFile, Trial};
use conclave_sim::TraceMode;

#[test]
fn three_hundred_members_get_a_lane_each_with_their_faults_and_merged_marks() {
    let file: PlanFile = "members 300\nvoters 5\nseed 3\nat 3s crash n7\nat 6s partition n1-n150\nat 12s heal\nat 14s restart n7 with disk"
        .parse()
        .expect("a plan file");
    let trial = Trial::from_file(&file).expect("a valid trial");
    // Twenty seconds are enough to draw; the checkers are not what this test is about.
    let mut sim = trial.builder(TraceMode::Events).default_checkers(false).build().expect("it builds");
    sim.run_until(Instant::from_secs(20));
    let report = sim.finish();
    let page = timeline::html(&trial, &report);
    assert!(page.len() < 2_000_000, "the page stays small: {} bytes", page.len());
    let path = std::env::temp_dir().join(format!("conclave-timeline-300-{}.html", std::process::id()));
    std::fs::write(&path, &page).expect("written");
    let Some(dom) = browser::dump_dom(&path) else { return };
    let _ = std::fs::remove_file(&path);
    assert_eq!(browser::count(&dom, "rect", "lane"), 300, "one lane per member");
    // The crash of n7 (down from 3 s to 14 s), and the two sides of the partition, drawn
    // as rectangles over consecutive lanes.
    assert_eq!(browser::count(&dom, "rect", "fault-band down"), 1);
    assert_eq!(browser::count(&dom, "rect", "fault-band partition"), 2);
    assert!(browser::count(&dom, "line", "tick restart") >= 1);
    // 150 members each suspect and declare failed 150 others: merged per lane and kind.
    let marks = browser::count(&dom, "circle", "mark");
    assert!(marks > 300 && marks < 10_000, "{marks} marks");
    assert!(browser::count(&dom, "rect", "term") >= 1, "the leader strip");
    assert_eq!(browser::count(&dom, "g", "violation-marker"), 0, "no violation");
    assert!(dom.contains("every check held"), "the verdict");
}
