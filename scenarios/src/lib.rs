//! conclave-scenarios: the scenario catalog behind the `conclave` command, and what the
//! command does with it.
//!
//! # Map of the code
//!
//! - [`catalog`]: the named scenarios ([`catalog::CATALOG`]), each a fault plan drawn
//!   from a seed, a cluster and its own bounds ([`catalog::bounds`], checkers judged beside
//!   the standard ones).
//! - [`trial`]: one scenario (or a plan file) on one cluster with one seed, run until
//!   every checker has judged ([`Trial`], [`Outcome`]).
//! - [`metrics`]: a run's figures: detection, election and partition times, false
//!   verdicts, load.
//! - [`plan_file`]: plans people read and write, with the header that makes them run on
//!   their own ([`PlanFile`]).
//! - [`sweep`]: many seeds of many scenarios, in shards that merge into one summary of
//!   percentiles.
//! - [`shrink`]: a failing plan made small (fewer faults, earlier, shorter, fewer members)
//!   while it still fails the same check.
//! - [`timeline`]: a run as a self-contained HTML page, one lane per member.
//! - [`seeded`]: one `#[test]` per scenario ([`scenario_test!`]).
//! - [`service`]: the service workloads (clients calling workers through the resilience
//!   policies) of `conclave bench resilience` and of the catalog's service scenarios.
//!
//! # Example
//!
//! ```
//! use conclave_scenarios::Trial;
//! use conclave_sim::TraceMode;
//!
//! let trial = Trial::named("crash-detection", 1, Some(5)).expect("a scenario of the catalog");
//! println!("{}", trial.plan_file());
//! let outcome = trial.run(TraceMode::Events, None).expect("it builds");
//! assert!(outcome.held(), "{:?}", outcome.report.problems());
//! assert_eq!(outcome.metrics.detection_ms.len(), 1, "one crash, detected by everyone");
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod catalog;
pub mod error;
pub mod metrics;
pub mod plan_file;
pub mod seeded;
pub mod service;
pub mod shrink;
pub mod sweep;
pub mod timeline;
pub mod trial;

pub use error::Error;
pub use plan_file::PlanFile;
pub use trial::{Outcome, Trial};
