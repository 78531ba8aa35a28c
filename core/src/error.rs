//! conclave-core's error type.

use crate::config::ConfigError;
use crate::resilience::PolicyError;
use crate::wire::WireError;

/// Everything that can go wrong in core. Each variant says what happened to the state.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is impossible; no node was built.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A resilience policy is impossible; nothing was built from it.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A datagram was rejected; it changed nothing but the drop counters in `stats()`.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Stored durable state is unreadable; nothing was restored from it.
    #[error("durable state is corrupt: {why}")]
    CorruptDurable {
        /// What was wrong with it.
        why: &'static str,
    },
    /// Tags too large to publish; the previous tags stay.
    #[error("tags take {len} B encoded, above the limit of {max} B; the previous tags stay")]
    TagsTooLarge {
        /// Their encoded size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A broadcast payload too large for one datagram; nothing was sent.
    #[error("broadcast payload of {len} B is above the limit of {max} B for this max_datagram; nothing was sent")]
    BroadcastTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Leadership can only be handed over by the leader; nothing changed.
    #[error("this member does not lead (the leader it knows: {leader:?}); nothing changed")]
    NotLeader {
        /// The leader this member knows, if any.
        leader: Option<crate::member::NodeId>,
    },
}
