//! One `#[test]` per scenario, through `conclave_sim`'s seeded-test entry point.
//!
//! ```no_run
//! conclave_scenarios::scenario_test!(
//!     /// A crashed member is declared failed by every other within the bound.
//!     crash_detection, "crash-detection"
//! );
//! ```
//!
//! The test runs the scenario's default seeds (`CONCLAVE_SEEDS=<k>` for more,
//! `CONCLAVE_SEED=<n>` for one, `CONCLAVE_CHECK_DETERMINISM=1` for each twice). Every
//! checker must judge and hold; a failure prints the scenario, the seed, each violated
//! check with its virtual time, the plan, and two commands that replay it, the test's
//! (`CONCLAVE_SEED=<n> cargo test ...`) and the `conclave` command's.

use conclave_sim::seeded::{run_seeded_with, Replay};
pub use conclave_sim::seeded::{test_path, TestId};
use conclave_sim::TraceMode;

use crate::catalog;
use crate::trial::{cargo_run, Trial};

/// Runs scenario `name`'s seeds as the test `id` (see the [module docs](self)).
///
/// # Panics
///
/// If `name` is no scenario, or a seed fails.
#[track_caller]
pub fn test_scenario(id: TestId, name: &str) {
    let scenario =
        catalog::find(name).unwrap_or_else(|| panic!("no scenario `{name}` (there are: {})", catalog::names()));
    let what = format!("scenario {name}");
    let also = |seed: u64| format!("{} run {name} --seed {seed}", cargo_run());
    let replay = Replay { what: Some(&what), also: Some(&also) };
    run_seeded_with(id, scenario.default_seeds, &replay, |seed| {
        let trial = Trial::of(scenario, seed, None).unwrap_or_else(|e| panic!("{name} seed {seed}: {e}"));
        let outcome = trial.run(TraceMode::Events, None).unwrap_or_else(|e| panic!("{name} seed {seed}: {e}"));
        outcome.report
    });
}

/// Defines a `#[test]` that runs a catalog scenario's seeds (see [`test_scenario`]).
#[macro_export]
macro_rules! scenario_test {
    ($(#[$meta:meta])* $test:ident, $name:literal) => {
        $(#[$meta])*
        #[test]
        fn $test() {
            let id = $crate::seeded::TestId {
                package: env!("CARGO_PKG_NAME"),
                krate: env!("CARGO_CRATE_NAME"),
                test: $crate::seeded::test_path(module_path!(), stringify!($test)),
                features: $crate::trial::FEATURES,
            };
            $crate::seeded::test_scenario(id, $name);
        }
    };
}
