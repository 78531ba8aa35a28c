//! conclave-core: one cluster member's whole protocol, as a pure state machine.
//!
//! **The contract.** No IO, no clock, no threads. Time comes in as an [`Instant`] on every
//! call; bytes come in through [`Node::handle_datagram`] and go out as [`Output::Transmit`];
//! everything the application must know goes out as [`Output::Event`]; everything that must
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
//! - [`config`]: [`Config`] and its presets, [`NodeConfig`], [`ConfigError`].
//! - [`node`]: [`Node`], the state machine that ties the pieces together.
//! - `membership` (private): the view and its precedence rules, the monitoring ring,
//!   Lifeguard suspicion and local health, dissemination.
//! - [`detector`]: [`PhiAccrual`], "is this peer late?".
//! - [`wire`]: the versioned, checksummed datagram format and [`WireError`].
//! - [`durable`]: [`Durable`], what survives a crash.
//! - [`output`]: [`Output`], [`Event`], [`Command`], [`Stats`].
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
pub mod error;
pub mod member;
mod membership;
pub mod node;
mod outbox;
pub mod output;
pub mod time;
pub mod wire;

#[cfg(fuzzing)]
pub mod fuzzing;
#[cfg(test)]
mod testkit;

pub use config::{Config, ConfigError, NodeConfig};
pub use detector::{PhiAccrual, PhiParams};
pub use durable::Durable;
pub use error::Error;
pub use member::{Member, MemberState, NodeId, Tags, MAX_TAGS_BYTES};
pub use node::Node;
pub use output::{Command, DropCounts, Event, KindCounts, Output, Stats, Transmit};
pub use time::Instant;
pub use wire::{MessageKind, WireError};
