//! Seeded tests: one entry point that picks the seeds, reports a failing one, and says how
//! to replay it.
//!
//! A test written with [`seeded_test!`](crate::seeded_test) (or [`run_seeded`]) runs its
//! body once per seed. The environment chooses the seeds:
//!
//! - `CONCLAVE_SEED=<n>`: exactly this seed (decimal, or hex with `0x`), the way a failure
//!   is replayed;
//! - `CONCLAVE_SEEDS=<k>`: the first `k` seeds (`1..=k`) instead of the test's small default;
//! - `CONCLAVE_CHECK_DETERMINISM=1`: each seed twice, and the two trace hashes compared.
//!
//! A malformed value fails at once, naming the variable; none is ever ignored. The body
//! returns its run's [`Report`], which must be clean ([`Report::assert_clean`]). Any panic
//! inside the body (the test's own assertion, a checker's violation, a nondeterministic
//! hash) prints the seed, the fault plan of the simulation the body built, and the command
//! that replays exactly that seed of exactly that test:
//! `CONCLAVE_SEED=<n> cargo test -p <package> --test <target> -- --exact <test>`. The package,
//! the test target and the test's path are taken at compile time by the macro.
//!
//! ```
//! use conclave_core::{Instant, NodeId};
//! use conclave_sim::{Fault, FaultPlan, SimBuilder};
//!
//! conclave_sim::seeded_test! {
//!     /// n5 is cut off for 20 s; once healed, every view is whole again.
//!     fn an_isolated_member_rejoins(seed) (default_seeds = 4) {
//!         let plan = FaultPlan::new()
//!             .at(Instant::from_secs(5), Fault::Partition(vec![vec![NodeId(5)]]))
//!             .at(Instant::from_secs(25), Fault::Heal);
//!         let mut sim = SimBuilder::new()
//!             .seed(seed)
//!             .members(5)
//!             .plan(plan)
//!             .voters(5) // they elect a leader, and the leader checkers judge it
//!             .build()
//!             .expect("valid settings");
//!         // No guessing how long to run: until every checker has judged (bounded).
//!         assert!(sim.run_until_judged(Instant::from_secs(600)));
//!         sim.finish()
//!     }
//! }
//! ```

use std::cell::RefCell;
use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::sim::Report;

/// The variable that names one exact seed.
pub const SEED_VAR: &str = "CONCLAVE_SEED";
/// The variable that says how many seeds to run.
pub const SEEDS_VAR: &str = "CONCLAVE_SEEDS";
/// The variable that asks for each seed to run twice with the trace hashes compared.
pub const DETERMINISM_VAR: &str = "CONCLAVE_CHECK_DETERMINISM";

/// A malformed environment variable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?} is not {expected}")]
pub struct EnvError {
    /// The variable.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// What it should be.
    pub expected: &'static str,
}

/// Which seeds a seeded test runs, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeds {
    /// The seeds, in order.
    pub seeds: Vec<u64>,
    /// Whether each runs twice with the trace hashes compared.
    pub check_determinism: bool,
}

impl Seeds {
    /// The seeds from the three variables' values (`None`: unset), with `default_count`
    /// seeds when neither names any.
    pub fn from_values(
        seed: Option<&str>,
        seeds: Option<&str>,
        determinism: Option<&str>,
        default_count: u64,
    ) -> Result<Self, EnvError> {
        let check_determinism = match determinism.map(str::trim) {
            None | Some("" | "0" | "false" | "no") => false,
            Some("1" | "true" | "yes") => true,
            Some(other) => {
                return Err(EnvError {
                    var: DETERMINISM_VAR,
                    value: other.to_string(),
                    expected: "1, true, yes, 0, false or no",
                })
            }
        };
        if let Some(value) = seed {
            let exact = parse_u64(value).ok_or_else(|| EnvError {
                var: SEED_VAR,
                value: value.to_string(),
                expected: "a seed (a decimal integer, or hex after 0x)",
            })?;
            if let Some(count) = seeds {
                return Err(EnvError {
                    var: SEEDS_VAR,
                    value: count.to_string(),
                    expected: "set together with CONCLAVE_SEED (which names one exact seed)",
                });
            }
            return Ok(Self { seeds: vec![exact], check_determinism });
        }
        let count = match seeds {
            None => default_count,
            Some(value) => parse_u64(value).filter(|&k| k > 0).ok_or_else(|| EnvError {
                var: SEEDS_VAR,
                value: value.to_string(),
                expected: "a positive decimal count of seeds",
            })?,
        };
        Ok(Self { seeds: (1..=count).collect(), check_determinism })
    }

    /// The seeds from the environment.
    pub fn from_env(default_count: u64) -> Result<Self, EnvError> {
        let var = |name: &str| std::env::var(name).ok();
        Self::from_values(
            var(SEED_VAR).as_deref(),
            var(SEEDS_VAR).as_deref(),
            var(DETERMINISM_VAR).as_deref(),
            default_count,
        )
    }
}

/// Decimal, or hex after `0x`; nothing else (no unit, no sign, no space inside).
fn parse_u64(value: &str) -> Option<u64> {
    let v = value.trim();
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => u64::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v.parse().ok(),
        None => None,
    }
}

/// The run's seed from `CONCLAVE_SEED` if set (how a failing seed is replayed), else `default`.
///
/// # Panics
///
/// If `CONCLAVE_SEED` is set but is not a seed: a typo must not silently run another seed.
#[track_caller]
pub fn seed_from_env(default: u64) -> u64 {
    match std::env::var(SEED_VAR) {
        Err(_) => default,
        Ok(value) => parse_u64(&value).unwrap_or_else(|| {
            panic!("{}", EnvError { var: SEED_VAR, value, expected: "a seed (a decimal integer, or hex after 0x)" })
        }),
    }
}

/// Where a seeded test lives, as the macro takes it at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestId {
    /// The package (`CARGO_PKG_NAME`).
    pub package: &'static str,
    /// The crate the test is compiled into (`CARGO_CRATE_NAME`): the library's, or an
    /// integration test target's.
    pub krate: &'static str,
    /// The test's path inside its crate, as `cargo test -- --exact` takes it.
    pub test: &'static str,
    /// The Cargo features the test needs, as `--features` takes them (empty: none).
    pub features: &'static str,
}

impl TestId {
    /// The command that runs this test alone with `seed`.
    pub fn replay(&self, seed: u64) -> String {
        let target = if self.krate == self.package.replace('-', "_") {
            "--lib".to_string()
        } else {
            format!("--test {}", self.krate)
        };
        let features = if self.features.is_empty() { String::new() } else { format!(" --features {}", self.features) };
        format!("CONCLAVE_SEED={seed} cargo test -p {}{features} {target} -- --exact {}", self.package, self.test)
    }
}

impl fmt::Display for TestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.test, self.package)
    }
}

/// The seeded test running on this thread, and the plan of the last simulation it built.
#[derive(Debug)]
struct Current {
    id: TestId,
    seed: u64,
    plan: Option<String>,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// The replay command of the seeded test running on this thread, if `seed` is its seed.
pub(crate) fn replay_command(seed: u64) -> Option<String> {
    CURRENT.with(|c| c.borrow().as_ref().filter(|c| c.seed == seed).map(|c| c.id.replay(seed)))
}

/// A simulation was built on this thread with this plan: a failure prints it.
pub(crate) fn note_plan(seed: u64, plan: &str) {
    CURRENT.with(|c| {
        if let Some(c) = c.borrow_mut().as_mut().filter(|c| c.seed == seed) {
            c.plan = Some(plan.to_string());
        }
    });
}

/// Runs `body` once per seed the environment chooses (see the [module docs](self)),
/// asserts each report is clean, and on any panic prints the seed, the plan and the
/// replay command before passing the panic on.
///
/// # Panics
///
/// If a variable is malformed, a run panics or is not clean, or (when asked) a seed's two
/// runs differ.
#[track_caller]
pub fn run_seeded(id: TestId, default_seeds: u64, body: impl Fn(u64) -> Report) {
    run_seeded_with(id, default_seeds, &Replay::default(), body);
}

/// What a failing seed prints beyond the test, the seed, the plan and the `cargo test`
/// line: what runs (a scenario's name, say) and another command that replays the seed.
#[derive(Default)]
pub struct Replay<'a> {
    /// What the test runs, in a few words.
    pub what: Option<&'a str>,
    /// Another command that replays a seed (such as the `conclave` command's).
    pub also: Option<&'a dyn Fn(u64) -> String>,
}

impl fmt::Debug for Replay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay").field("what", &self.what).field("also", &self.also.map(|also| also(0))).finish()
    }
}

/// [`run_seeded`], printing `replay`'s lines too when a seed fails.
///
/// # Panics
///
/// As [`run_seeded`].
#[track_caller]
pub fn run_seeded_with(id: TestId, default_seeds: u64, replay: &Replay<'_>, body: impl Fn(u64) -> Report) {
    let seeds = Seeds::from_env(default_seeds).unwrap_or_else(|e| panic!("{e}"));
    for &seed in &seeds.seeds {
        CURRENT.with(|c| *c.borrow_mut() = Some(Current { id, seed, plan: None }));
        let result = catch_unwind(AssertUnwindSafe(|| {
            let report = body(seed);
            report.assert_clean();
            if seeds.check_determinism {
                let again = body(seed);
                assert_eq!(
                    report.trace_hash, again.trace_hash,
                    "seed {seed} is not deterministic: two runs gave trace hashes {:#018x} and {:#018x}",
                    report.trace_hash, again.trace_hash
                );
            }
        }));
        let current = CURRENT.with(|c| c.borrow_mut().take());
        if let Err(panic) = result {
            let plan = current.and_then(|c| c.plan).unwrap_or_else(|| "(no simulation was built)".to_string());
            let what = replay.what.map_or_else(String::new, |w| format!(": {w}"));
            let also = replay.also.map_or_else(String::new, |also| format!("\n      or: {}", also(seed)));
            eprintln!(
                "\nseeded test {id} failed with seed {seed}{what}\n  plan: {plan}\n  replay: {}{also}\n",
                id.replay(seed)
            );
            resume_unwind(panic);
        }
    }
}

/// Defines a `#[test]` that runs its body once per seed through [`run_seeded`], with the
/// package and the test's path taken at compile time for the replay command.
///
/// ```
/// conclave_sim::seeded_test! {
///     /// Docs and attributes go first.
///     fn my_seeded_test(seed) (default_seeds = 3) {
///         let mut sim = conclave_sim::SimBuilder::new().seed(seed).default_checkers(false).build().unwrap();
///         sim.run_for(std::time::Duration::from_secs(1));
///         sim.finish()
///     }
/// }
/// ```
#[macro_export]
macro_rules! seeded_test {
    ($(#[$meta:meta])* fn $name:ident($seed:ident) (default_seeds = $count:expr) $body:block) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            let id = $crate::seeded::TestId {
                package: env!("CARGO_PKG_NAME"),
                krate: env!("CARGO_CRATE_NAME"),
                test: $crate::seeded::test_path(module_path!(), stringify!($name)),
                features: "",
            };
            $crate::seeded::run_seeded(id, $count, |$seed: u64| -> $crate::Report { $body });
        }
    };
}

/// `module_path!()` without its crate, joined to `name`: the test's path as the test
/// harness names it. Leaks the string once per test.
pub fn test_path(module_path: &'static str, name: &'static str) -> &'static str {
    match module_path.split_once("::") {
        Some((_, rest)) => Box::leak(format!("{rest}::{name}").into_boxed_str()),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_strictly_and_name_the_variable() {
        let ok = |seed, seeds, det| Seeds::from_values(seed, seeds, det, 4);
        assert_eq!(ok(None, None, None).unwrap(), Seeds { seeds: vec![1, 2, 3, 4], check_determinism: false });
        assert_eq!(ok(Some("42"), None, None).unwrap().seeds, vec![42]);
        assert_eq!(ok(Some("0x2a"), None, None).unwrap().seeds, vec![42]);
        assert_eq!(ok(Some(" 7 "), None, None).unwrap().seeds, vec![7]);
        assert_eq!(ok(None, Some("2"), Some("1")).unwrap(), Seeds { seeds: vec![1, 2], check_determinism: true });
        for (seed, seeds, det, var) in [
            (Some("2s"), None, None, SEED_VAR),
            (Some("0x"), None, None, SEED_VAR),
            (Some("0xg"), None, None, SEED_VAR),
            (Some("-1"), None, None, SEED_VAR),
            (Some(""), None, None, SEED_VAR),
            (Some("18446744073709551616"), None, None, SEED_VAR),
            (None, Some("ten"), None, SEEDS_VAR),
            (None, Some("0"), None, SEEDS_VAR),
            (Some("3"), Some("5"), None, SEEDS_VAR),
            (None, None, Some("maybe"), DETERMINISM_VAR),
        ] {
            let e = ok(seed, seeds, det).expect_err("malformed");
            assert_eq!(e.var, var, "{e}");
            assert!(e.to_string().starts_with(var), "{e}");
        }
    }

    #[test]
    fn replay_names_the_target_the_test_lives_in() {
        let lib = TestId { package: "conclave-sim", krate: "conclave_sim", test: "seeded::tests::x", features: "" };
        assert_eq!(lib.replay(5), "CONCLAVE_SEED=5 cargo test -p conclave-sim --lib -- --exact seeded::tests::x");
        let it = TestId { package: "conclave", krate: "chaos", test: "random_chaos", features: "" };
        assert_eq!(it.replay(9), "CONCLAVE_SEED=9 cargo test -p conclave --test chaos -- --exact random_chaos");
        let featured = TestId { features: "a,b", ..it };
        assert_eq!(
            featured.replay(9),
            "CONCLAVE_SEED=9 cargo test -p conclave --features a,b --test chaos -- --exact random_chaos"
        );
        assert_eq!(test_path("chaos", "t"), "t");
        assert_eq!(test_path("conclave_sim::seeded::tests", "t"), "seeded::tests::t");
    }
}
