//! conclave-core: one cluster member's whole protocol, as a pure state machine.
//!
//! **The contract.** No IO, no clock, no threads. Time comes in as an [`Instant`] on every
//! call; bytes come in through [`Node::handle_datagram`] (or [`Node::handle_datagram_from`],
//! for a driver that knows which member sent them) and go out as [`Output::Transmit`], to an
//! address and, when the member is known, to its id; everything the application must know goes out as [`Output::Event`]; everything that must
//! survive a crash goes out as [`Output::Persist`]. All randomness is drawn from a ChaCha RNG
//! seeded by [`NodeConfig::seed`], so the same seed and the same inputs give the same outputs
//! on every machine. No byte string makes it panic.
//!
//! # The driver loop
//!
//! Every driver (the simulator, the QUIC runtime, a test) runs the same loop:
//!
//! ```
//! use conclave_core::{Command, Config, Instant, Node, NodeConfig, NodeId, Output};
//!
//! let now = Instant::ZERO;
//! let config = NodeConfig::new(NodeId(1), "127.0.0.1:7001".parse().unwrap(), Config::lan(), 42);
//! let mut node = Node::new(config, now).expect("the lan preset is valid");
//! node.handle_command(now, Command::Join(vec!["127.0.0.1:7002".parse().unwrap()])).unwrap();
//! while let Some(output) = node.poll_output() {
//!     match output {
//!         Output::Persist(durable) => { /* write durable.encode() and sync, first */ }
//!         Output::Transmit(t) => { /* socket.send_to(&t.payload, t.to) */ }
//!         Output::Event(e) => { /* tell the application */ }
//!     }
//! }
//! let next_wakeup: Option<Instant> = node.poll_timeout(); // call handle_timeout then
//! # assert!(next_wakeup.is_some());
//! ```
//!
//! # Map of the code
//!
//! - [`time`]: [`Instant`], virtual nanoseconds.
//! - [`member`]: [`NodeId`], [`Member`], [`MemberState`], [`Tags`].
//! - [`config`]: [`Config`] and its presets, [`Lifeguard`]'s switches, the partition
//!   [`Strategy`], [`NodeConfig`] with the operator's [`InitialClusterState`]. The settings import only the leaf modules below them
//!   (`member`, `detector`'s parameters, `wire`'s size limits, `durable`, `error`).
//! - [`node`]: [`Node`], which composes the parts below and dispatches inputs and timers
//!   to them (`node/mod.rs`); how a claim about a member moves the view (`node/claims.rs`);
//!   one `Timer` per kind of deadline and their table (`node/timer.rs`).
//! - `membership` (private), one small state machine a file:
//!   - `view.rs`: the members, their order (the ring), the down index, the live count and
//!     the digest, kept true together;
//!   - `prober.rs`: watched peers and their detectors, the protocol period, indirect probes,
//!     relays and nacks; `awareness.rs`: Lifeguard's local health;
//!   - `suspicion.rs`: Lifeguard's dynamic suspicion timeout and the running suspicions;
//!   - `dissemination.rs`: gossip rounds and user broadcasts over `broadcast.rs`, the queue
//!     of updates that ride on every datagram;
//!   - `anti_entropy.rs`: digests along the ring, push-pull, syncs with strangers;
//!   - `joiner.rs`: joining through seeds;
//!   - `mod.rs`: SWIM's precedence between two claims about a member.
//! - [`partition`]: partition detection and the side-decision function [`partition::decide`]
//!   (keep-majority, static-quorum, keep-oldest, down-all-when-unstable), [`Mode`].
//! - `election` (private): leader election among the configured voters (Raft's, without
//!   the log): PreVote, CheckQuorum, stickiness, the lease, transfer, what a voter that
//!   lost its disk does, the operator's switch for an empty disk, and the recovery after
//!   a majority of the voters lost theirs.
//! - `outbox` (private): the outputs sink every part writes to, and the traffic counters.
//! - [`detector`]: [`PhiAccrual`], "is this peer late?".
//! - [`wire`]: the versioned, checksummed datagram format and [`WireError`]; its hand-written
//!   codec is the format's one definition, pinned by golden bytes.
//! - [`durable`]: [`Durable`], what survives a crash.
//! - [`error`]: [`Error`], and the settings' errors [`ConfigError`] and
//!   [`resilience::PolicyError`]; it sits below everything that can fail.
//! - [`output`]: [`Output`], [`Event`], [`Command`], [`Stats`], and the [`Side`] of a
//!   partition an event names.
//! - [`resilience`]: retries done right, for the services that run on a cluster: the
//!   sans-IO [`resilience::Client`] that drives each call's attempts over a
//!   [`resilience::WorkerRegistry`] built from membership, with backoff, a retry budget,
//!   circuit breakers, hedging, load shedding, deadlines and an idempotency window, all
//!   set by one [`resilience::Policy`]. Its names stay under `resilience::`.
//!
//! # Features
//!
//! - `tracing` (off by default): a span per `handle_*` call naming the member, and an event
//!   at every suspicion, verdict, refutation and state transfer that says why. Off, it
//!   compiles to nothing.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

/// Emits a `tracing` event when the `tracing` feature is on; compiles to nothing (its
/// arguments unevaluated) when it is off.
macro_rules! trace_event {
    ($level:ident, $($arg:tt)+) => {
        #[cfg(feature = "tracing")]
        {
            tracing::$level!($($arg)+);
        }
    };
}

pub mod config;
pub mod detector;
pub mod durable;
mod election;
pub mod error;
pub mod member;
mod membership;
pub mod node;
mod outbox;
pub mod output;
pub mod partition;
pub mod resilience;
pub mod time;
pub mod wire;

#[cfg(any(fuzzing, feature = "__fuzzing"))]
pub mod fuzzing;
#[cfg(test)]
mod testkit;

pub use config::{Config, ConfigError, ElectionConfig, InitialClusterState, Lifeguard, NodeConfig, PartitionConfig};
pub use detector::{PhiAccrual, PhiParams};
pub use durable::Durable;
pub use error::Error;
pub use member::{Member, MemberState, NodeId, Tags, MAX_TAGS_BYTES};
pub use node::Node;
pub use output::{Command, DropCounts, Event, KindCounts, Output, Stats, Transmit};
pub use partition::{Mode, Side, Strategy};
pub use time::Instant;
pub use wire::{MessageKind, WireError};
