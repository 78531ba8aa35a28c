//! What the catalog's checkers found in the protocol, each kept as the smallest plan that
//! shows it (made by `conclave shrink`). A find not fixed yet has its test ignored with the
//! reason (`cargo test -p conclave-scenarios --test found -- --ignored` runs those); a
//! fixed one stays as a regression test.

use conclave_scenarios::{PlanFile, Trial};
use conclave_sim::TraceMode;

/// Runs a plan file's trial and requires every check to judge and hold.
fn holds(file: &str) {
    let file: PlanFile = file.parse().expect("a plan file");
    let trial = Trial::from_file(&file).expect("a valid trial");
    let outcome = trial.run(TraceMode::Events, None).expect("it runs");
    outcome.report.assert_clean();
}

/// Random chaos seed 25 (47 members, five voting) had n8 keep running while counting n2,
/// n4 and n5 stopped, and they kept running too: two sides. Shrunk, it takes one member
/// cut off alone for 6.5 s among thirteen: at 20.051s the isolated n2 decides it keeps
/// running with n2-n5 and that only n1 stops (it had confirmed n1 failed, not yet the
/// others), and just after the heal the rest decide, on their stale picture, that n2
/// stops. The standard checkers hold; `one-side-keeps-running` (and the partition bounds
/// of `partition-heal`) do not. Found with `conclave shrink --plan chaos25.plan --check
/// one-side-keeps-running` from the chaos seed's plan under `partition-heal`'s bounds.
/// Fixed by the partition watch's roll call (issue 21): n2 hears from nobody, so it counts
/// everyone else unreachable and stops.
#[test]
fn a_member_cut_off_alone_never_keeps_running_beside_the_rest() {
    holds("scenario partition-heal\nseed 25\nmembers 13\nvoters 5\npreset lan\nat 14.479s partition n2\nat 21.008s heal\n");
}
