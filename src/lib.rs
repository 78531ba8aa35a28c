//! conclave keeps a cluster of services aware of itself: who is alive, who has failed,
//! whether the cluster is split, and who leads.
//!
//! This facade re-exports the workspace's crates:
//!
//! - [`core`]: the sans-IO protocol core (always).
//! - `sim`: the deterministic simulator (feature `sim`).
//! - `quic`: the QUIC production runtime (feature `quic`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub use conclave_core as core;
#[cfg(feature = "quic")]
pub use conclave_quic as quic;
#[cfg(feature = "sim")]
pub use conclave_sim as sim;
