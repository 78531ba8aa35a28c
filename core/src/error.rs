//! conclave-core's errors: [`Error`], and the errors of the settings it wraps,
//! [`ConfigError`] and [`PolicyError`] (re-exported where their settings are, as
//! `config::ConfigError` and `resilience::PolicyError`).
//!
//! They live here, below everything that can fail, so that this module needs nothing but
//! the wire's error: the settings, durable state and the node all name their errors
//! without core's modules importing each other in a circle.

use std::time::Duration;

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

/// Why a [`Config`](crate::Config) cannot work. Nothing was built from it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("config: `{field}` is zero; it must be a positive duration")]
    ZeroDuration {
        /// The field.
        field: &'static str,
    },
    /// A count or multiplier that must be at least 1 is zero.
    #[error("config: `{field}` is zero; it must be at least 1")]
    ZeroCount {
        /// The field.
        field: &'static str,
    },
    /// The probe timeout does not leave room for a probe within its interval.
    #[error("config: probe_timeout ({probe_timeout:?}) must be shorter than probe_interval ({probe_interval:?})")]
    ProbeTimeoutNotBelowInterval {
        /// The configured timeout.
        probe_timeout: Duration,
        /// The configured interval.
        probe_interval: Duration,
    },
    /// The join backoff cap is below its base.
    #[error("config: join_retry_max ({max:?}) is below join_retry_base ({base:?})")]
    JoinRetryMaxBelowBase {
        /// The base delay.
        base: Duration,
        /// The cap.
        max: Duration,
    },
    /// The phi threshold is not a positive number.
    #[error("config: phi.threshold is {threshold}; it must be a positive, finite number (Akka uses 8.0)")]
    PhiThreshold {
        /// The configured threshold.
        threshold: f64,
    },
    /// `max_datagram` cannot hold the largest single record (a member with full tags).
    #[error("config: max_datagram {max_datagram} B is below the minimum of {min} B")]
    DatagramTooSmall {
        /// The configured size.
        max_datagram: usize,
        /// The smallest allowed.
        min: usize,
    },
    /// The election settings cannot work.
    #[error("config: election: {why}")]
    Election {
        /// What is wrong.
        why: String,
    },
    /// `max_datagram` exceeds what a UDP datagram can carry.
    #[error("config: max_datagram {max_datagram} B is above the maximum of {max} B")]
    DatagramTooLarge {
        /// The configured size.
        max_datagram: usize,
        /// The largest allowed.
        max: usize,
    },
}

/// Why a [`Policy`](crate::resilience::Policy) cannot work. Nothing was built from it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A duration or a count that must be positive is zero.
    #[error("resilience policy: `{field}` is zero; it must be positive")]
    Zero {
        /// The field.
        field: &'static str,
    },
    /// A number outside the range that makes sense.
    #[error("resilience policy: `{field}` is {value}; it must be {expected}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// Settings that contradict each other.
    #[error("resilience policy: {why}")]
    Inconsistent {
        /// What contradicts what.
        why: String,
    },
}
