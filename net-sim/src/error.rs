//! conclave-sim's error type.

use std::net::SocketAddr;

use conclave_core::NodeId;

/// What can go wrong setting up or driving a simulation. A broken protocol property is
/// not an error but a [`Violation`](crate::Violation) in the report.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two members share an id; nothing was built.
    #[error("two members have the id {0}")]
    DuplicateId(NodeId),
    /// Two members share an address; nothing was built.
    #[error("two members have the address {0}")]
    DuplicateAddr(SocketAddr),
    /// A link override, a fault or a command names a member that does not exist.
    #[error("no member {0} in this simulation")]
    UnknownMember(NodeId),
    /// A command went to a member whose process is not running; nothing happened.
    #[error("{0} is not running")]
    NotRunning(NodeId),
    /// A member's node could not be built (its configuration is invalid).
    #[error("{0} could not start: {1}")]
    Start(NodeId, conclave_core::Error),
    /// The member refused a command; its state is as the core's error says.
    #[error(transparent)]
    Core(conclave_core::Error),
    /// The workload's resilience policy is impossible; nothing was built.
    #[error("the workload's {0}")]
    Policy(conclave_core::resilience::PolicyError),
    /// The workload's settings are impossible; nothing was built.
    #[error("workload: {0}")]
    Workload(String),
    /// A fault plan's text does not read (see [`fault`](crate::fault) for its form).
    #[error("cannot read `{text}`: {message}")]
    Plan {
        /// The step, or fault, as written.
        text: String,
        /// What is wrong with it.
        message: String,
    },
}
