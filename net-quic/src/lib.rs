//! conclave-quic: the production runtime's pieces.
//!
//! This crate will carry the QUIC transport (quinn + rustls with mutual TLS) that runs
//! `conclave_core::Node` in services. What it holds today is the part every runtime needs
//! first: [`StateDir`], where a member keeps its [`Durable`] state across restarts,
//! written atomically (temporary file, fsync, rename, fsync of the directory).
//!
//! ```
//! use conclave_core::Durable;
//! use conclave_quic::StateDir;
//!
//! let dir = std::env::temp_dir().join(format!("conclave-doc-{}", std::process::id()));
//! let state = StateDir::open(&dir).unwrap();
//! assert_eq!(state.load().unwrap(), None);
//! state.store(&Durable::new(3, 0, None)).unwrap();
//! assert_eq!(state.load().unwrap(), Some(Durable::new(3, 0, None)));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

mod state;

pub use state::{StateDir, StateError};

/// Re-exported for [`StateDir`]'s signatures.
pub use conclave_core::Durable;
