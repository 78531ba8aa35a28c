//! conclave-scenarios' error type.

use conclave_core::NodeId;

/// What can go wrong before a scenario runs: the name, the size, the plan or a file. A
/// broken protocol property is not an error but a violation in the run's report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No scenario of the catalog has this name; nothing ran.
    #[error("no scenario `{0}` (there are: {names})", names = crate::catalog::names())]
    UnknownScenario(String),
    /// The cluster is too small for the scenario's plan; nothing ran.
    #[error("{scenario} needs at least {min} members, not {members}")]
    TooFewMembers {
        /// The scenario.
        scenario: &'static str,
        /// The size asked for.
        members: usize,
        /// The smallest it runs on.
        min: usize,
    },
    /// The plan names a member the cluster does not have; nothing ran.
    #[error("the plan names {member}, but the cluster has {members} members (n1 to n{members})")]
    PlanNamesOthers {
        /// The member named.
        member: NodeId,
        /// The cluster size.
        members: usize,
    },
    /// A line of a plan file does not read; nothing ran.
    #[error("line {line}: {message}")]
    PlanFile {
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A file could not be read or written, or its content does not read.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A line of a sweep's results does not read.
    #[error("{path} line {line}: {message}")]
    Record {
        /// The file.
        path: String,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The simulation could not be built (see its error); nothing ran.
    #[error(transparent)]
    Sim(conclave_sim::Error),
}
