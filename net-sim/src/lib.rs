//! conclave-sim: the deterministic simulator.
//!
//! Runs whole clusters of [`conclave_core::Node`]s in virtual time over a simulated
//! network, applies a [`FaultPlan`], checks properties while it runs, and hashes
//! everything that happened so a seed replays exactly, on any machine.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use conclave_core::{Instant, NodeId};
//! use conclave_sim::{Fault, FaultPlan, SimBuilder};
//!
//! // Five members; n5 is cut off from the others for 20 s, then the network heals.
//! let plan = FaultPlan::new()
//!     .at(Instant::from_secs(5), Fault::Partition(vec![vec![NodeId(5)]]))
//!     .at(Instant::from_secs(25), Fault::Heal);
//! let mut sim = SimBuilder::new().seed(42).members(5).plan(plan).build().expect("valid settings");
//! sim.run_for(Duration::from_secs(30));
//! assert!(sim.stats().dropped_partition > 0);
//! let report = sim.finish();
//! println!("trace hash {:#018x}, {} datagrams delivered", report.trace_hash, report.stats.delivered);
//! ```
//!
//! # Map of the code
//!
//! - [`sim`]: the fast engine, one role to a file. `sim.rs`: [`Sim`], the run loop (one
//!   queue of (time, sequence) events, one [`SimRng`]) and the checkers' plumbing;
//!   `sim/builder.rs`: [`SimBuilder`] (seed, members, config, network, plan) and
//!   [`verify_determinism`]; `sim/host.rs`: a member's host (its `Node`, timers, clock,
//!   disk, outputs); `sim/world.rs`: the network between the hosts and the plan's faults
//!   applied; `sim/report.rs`: [`Report`], [`SimStats`]. The queue (`queue`, private) is a
//!   calendar queue of small keys over a slab.
//! - [`network`]: [`LinkParams`] and [`Latency`] distributions, [`LinkSelector`], the
//!   seeded [`SimRng`].
//! - [`fault`]: [`Fault`], [`FaultPlan`] (serde), [`Disk`].
//! - `clock` (private): each member's clock, `local = offset + (1 + drift) * global`,
//!   monotonic; timers are converted from local to global time.
//! - [`trace`]: [`TraceRecord`], [`TraceMode`], the FNV-1a trace hash over a canonical
//!   encoding.
//! - [`check`]: the [`Checker`] trait and what it is fed (`check/mod.rs`), what a checker
//!   concluded ([`Status`], [`Outcome`], [`Violation`]: `check/outcome.rs`), and the
//!   standard checkers, a family to a file: `election.rs` ([`OneLeaderPerTerm`],
//!   [`LeaseExclusive`], [`ElectsAfterHeal`]), `verdicts.rs` ([`NoFalseVerdicts`]),
//!   `convergence.rs` ([`Converges`]), `promises.rs` ([`IncarnationsNeverReused`],
//!   [`SuspicionWithinBounds`], [`RefutesClaims`]), `detection.rs` ([`DetectedWithinBound`],
//!   [`BytesWithinBound`]), `leadership.rs` ([`LeaderHearsMajority`], [`PreVoteSticky`],
//!   [`VotePersistedFirst`], [`LeaseWithinPromises`], judged from the datagrams), `partition.rs`
//!   ([`MinorityReadOnly`]), `workload.rs` ([`CallsEnd`],
//!   [`NoDuplicateExecution`], [`AttemptsWithinBudget`]). Panics are caught by the engine
//!   and reported as `no-panic` [`Violation`]s.
//! - [`workload`]: a service workload ([`Workload`]): clients calling workers through
//!   `conclave_core::resilience`'s `Client` over the simulated links, workers with
//!   servers, a queue, a concurrency limit, an idempotency window and a crash point;
//!   [`WorkloadEvent`]s in the trace, [`WorkloadReport`] in the report. The engine's side
//!   is `sim/workload.rs`.
//! - [`seeded`]: the entry point of seeded tests ([`seeded_test!`], [`run_seeded`]):
//!   `CONCLAVE_SEED`, `CONCLAVE_SEEDS`, `CONCLAVE_CHECK_DETERMINISM`, and the replay line.
//! - [`chaos`]: random fault plans in the swarm-testing style ([`chaos::Chaos`]).
//! - `turmoil_engine` (feature `turmoil`): the QUIC runtime of `conclave-quic` (the same
//!   driver as production) on turmoil hosts, and the mapping of a [`FaultPlan`] onto them.
//!
//! # Determinism
//!
//! A run is a function of the builder's settings and seed: no real clock, no thread RNG,
//! no `HashMap` iteration. Each member's RNG seed is derived from the run's seed. The
//! transcendental functions the simulator's latency draws and the core's phi and
//! suspicion timeouts use (`exp`, `ln`, `log10`, and `log2` in the push-pull interval's
//! scaling) come from the `libm` crate, pure Rust, never the platform's libm, whose last
//! bit may differ between machines (golden-bit tests pin them). The same seed gives the
//! same trace hash in every process;
//! [`SimBuilder::verify_determinism`] checks it by running twice.
//!
//! # Replaying a failure
//!
//! A [`Violation`] prints the seed, the plan (its text form) and a command. From a test written with
//! [`seeded_test!`], the command is
//! `CONCLAVE_SEED=<seed> cargo test -p <package> --test <target> -- --exact <test>`, and any
//! panic in the test prints it too; elsewhere, the builder's
//! [`SimBuilder::replay_command`], or a sentence saying what to rebuild.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod chaos;
pub mod check;
mod clock;
pub mod error;
pub mod fault;
pub mod network;
mod queue;
pub mod seeded;
pub mod sim;
pub mod trace;
#[cfg(feature = "turmoil")]
pub mod turmoil_engine;
pub mod workload;

pub use check::{
    AttemptsWithinBudget, BytesWithinBound, CallsEnd, Checker, ClusterSnapshot, Converges, DetectedWithinBound,
    ElectsAfterHeal, Finding, IncarnationChange, IncarnationsNeverReused, LeaderHearsMajority, LeaseExclusive,
    LeaseWithinPromises, MinorityReadOnly, NoDuplicateExecution, NoFalseVerdicts, NodeSnapshot, Observation,
    OneLeaderPerTerm, Outcome, PreVoteSticky, RefutesClaims, RunInfo, Status, SuspicionWithinBounds, Violation,
    VotePersistedFirst,
};
pub use error::Error;
pub use fault::{Disk, Fault, FaultPlan, Step, Touched};
pub use network::{Latency, LinkParams, LinkSelector, SimRng};
pub use seeded::{run_seeded, seed_from_env, Seeds, TestId};
pub use sim::{sim_addr, sim_id, verify_determinism, Nondeterminism, Report, Sim, SimBuilder, SimStats, SIM_PORT};
pub use trace::{DropReason, TraceHasher, TraceMode, TraceRecord};
pub use workload::{Arrivals, Defects, WorkerKnobs, Workload, WorkloadEvent, WorkloadReport};
