//! [`Error`]: what can go wrong in the runtime.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use conclave_core::resilience::{CallError, PolicyError};
use conclave_core::NodeId;

use crate::state::StateError;

/// Why the runtime could not do what was asked. Each variant says what happened to the
/// state: a failed `start` built nothing, a failed `call` changed nothing at the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given settings that cannot work; nothing was started.
    #[error("configuration: {0}")]
    Config(String),
    /// The protocol settings are impossible; nothing was started.
    #[error(transparent)]
    Core(#[from] conclave_core::Error),
    /// A PEM file could not be read or holds no usable certificate or key; nothing was started.
    #[error("TLS file {path}: {why}")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
    /// The TLS material is unusable (a key that does not match, an unsupported algorithm ...).
    #[error("TLS: {0}")]
    Tls(String),
    /// The node's certificate names another member than the one configured.
    #[error("the certificate is for {cert:?} but the node is configured as {configured:?}")]
    IdentityMismatch {
        /// The id in the certificate.
        cert: Option<NodeId>,
        /// The configured id.
        configured: NodeId,
    },
    /// The durable state could not be read or written. A failed write stops the node
    /// before it acts on any later output.
    #[error(transparent)]
    State(#[from] StateError),
    /// A socket could not be bound or used.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The target of a call is not a live member known to this node.
    #[error("no live member {0:?} is known")]
    UnknownMember(NodeId),
    /// A call did not complete within its deadline; it may or may not have run remotely.
    #[error("call {method:?} to {target:?} missed its deadline of {deadline:?}")]
    DeadlineExceeded {
        /// The target.
        target: NodeId,
        /// The method.
        method: String,
        /// The deadline.
        deadline: Duration,
    },
    /// A connection could not be made or broke during a call.
    #[error("connection to {target:?}: {why}")]
    Connection {
        /// The target.
        target: NodeId,
        /// What failed.
        why: String,
    },
    /// The peer answered that it has no handler for this method.
    #[error("{target:?} has no handler for method {method:?}")]
    NoSuchMethod {
        /// The target.
        target: NodeId,
        /// The method.
        method: String,
    },
    /// The remote handler returned an error.
    #[error("handler {method:?} on {target:?} failed: {message}")]
    Remote {
        /// The target.
        target: NodeId,
        /// The method.
        method: String,
        /// The handler's message.
        message: String,
    },
    /// The target shed the call unserved: it was serving as many requests at once as its
    /// concurrency limit allows. Nothing ran; a call elsewhere, or later, may succeed.
    #[error("{target:?} is overloaded: it shed call {method:?} unserved")]
    Overloaded {
        /// The target.
        target: NodeId,
        /// The method.
        method: String,
    },
    /// A call through a [`crate::ServiceClient`] failed. `reason` is the resilience
    /// policy's: no worker, every breaker open, throttled, the retry budget spent, every
    /// attempt failed, the deadline passed, or the request rejected; `last` says how the
    /// last attempt that ended failed, if one did. Attempts may have run on workers.
    #[error("call {method:?} failed: {reason} ({attempts} attempts{})", last_attempt(.last))]
    Call {
        /// The method.
        method: String,
        /// Why, as the policy decided.
        reason: CallError,
        /// The attempts made.
        attempts: u32,
        /// How the last attempt that ended failed, in a line.
        last: Option<String>,
    },
    /// The resilience policy is impossible; no service client was made.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A request or response frame exceeds the size limit, or is malformed.
    #[error("frame refused: {0}")]
    Frame(String),
    /// The node was shut down, or its driver stopped after a failure (the message says which).
    #[error("the node is stopped: {0}")]
    Stopped(String),
    /// Another process runs with this member's id: the cluster holds it live at `holder`.
    /// This one stopped while joining, without a word on the other's behalf.
    #[error("member id {id:?} is already running at {holder}: this process stopped without joining (a copied configuration?)")]
    IdInUse {
        /// The id.
        id: NodeId,
        /// Where the cluster holds the member that runs with it.
        holder: std::net::SocketAddr,
    },
    /// No seed answered within the wait; the member keeps trying in the background.
    #[error("no seed answered within {within:?}: {why}")]
    JoinTimeout {
        /// How long it waited.
        within: Duration,
        /// The last thing that went wrong on the way to a seed, in a line.
        why: String,
    },
}

/// The end of [`Error::Call`]'s message: how the last attempt failed, if one did.
fn last_attempt(last: &Option<String>) -> String {
    last.as_ref().map(|why| format!("; the last: {why}")).unwrap_or_default()
}
