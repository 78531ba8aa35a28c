//! conclave-quic: the production runtime. It runs one `conclave_core::Node` per member
//! over QUIC (quinn, rustls with mutual TLS) in a tokio service.
//!
//! ```no_run
//! use std::time::Duration;
//! use conclave_core::{Config, NodeId};
//! use conclave_quic::{Cluster, DevCa};
//!
//! # async fn run() -> Result<(), conclave_quic::Error> {
//! let ca = DevCa::new("my cluster")?; // production: TlsConfig::from_pem_files(ca, cert, key)
//! let node = Cluster::builder(NodeId(1))
//!     .bind("127.0.0.1:7001".parse().unwrap())
//!     .seeds(["127.0.0.1:7000".parse().unwrap()])
//!     .config(Config::lan())
//!     .tls(ca.tls(NodeId(1))?)
//!     .state_dir("state/conclave-1")
//!     .handler("echo", |request| async move { Ok(request.body) })
//!     .start()
//!     .await?;
//! let mut events = node.events();
//! while let Ok(event) = events.recv().await {
//!     println!("{event:?}");
//! }
//! let answer = node.call(NodeId(2), "echo", &b"hello"[..], Duration::from_millis(500)).await?;
//! // A service: the members tagged worker=echo, called through the resilience policies.
//! let mut policy = conclave_core::resilience::Policy::default();
//! policy.workers = conclave_core::resilience::TagFilter::any().with("worker", "echo");
//! let echo = node.service(policy)?;
//! let answer = echo.call("echo", &b"hello"[..], Duration::from_millis(500)).await?;
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Map of the code
//!
//! - [`cluster`]: [`Cluster::builder`], [`ClusterBuilder`] and the handle, [`Cluster`]:
//!   events, members, calls, service clients, handlers, metrics, shutdown.
//! - `client` (private; its public type is [`ServiceClient`]): [`Cluster::call`]'s one
//!   request, and [`ServiceClient`], a task that drives one
//!   `conclave_core::resilience::Client` (every policy is the core's) and runs each of its
//!   attempts as an RPC, hedges concurrently, cancelling the losers with a stream reset.
//! - `server` (private): how a member answers a request: handler, budget, idempotency
//!   window, concurrency limit ([`ClusterBuilder::serving`]).
//! - `driver` (private): the task that owns the core's `Node` and acts on its outputs in
//!   order, the connection pool, and the connection tasks. Generic over the socket
//!   ([`ClusterBuilder::socket`]) and the clock ([`ClusterBuilder::clock`]): the turmoil
//!   engine of conclave-sim runs the same code.
//! - [`tls`]: [`TlsConfig`] from PEM files, [`DevCa`]; how an id is bound to a
//!   certificate (a `conclave://node/<id>` URI).
//! - [`rpc`]: the request/response framing on bidirectional streams (its format, version
//!   1: a request carries its call's number and the caller's budget), [`Request`].
//! - [`clock`]: [`Clock`], [`TokioClock`], [`SkewedClock`].
//! - [`metrics`]: [`Metrics`], [`Counters`].
//! - [`StateDir`], [`MemoryStorage`]: where [`Durable`] state is kept, written atomically
//!   (temporary file, fsync, rename, fsync of the directory); a test cuts a store after
//!   every system call and at every byte, on an in-memory file system that forgets what
//!   was not synced, and the member always restarts on the old state or the new one.
//! - `fuzzing` (with `--cfg fuzzing` or the test-only feature `__fuzzing`): the bodies of
//!   the `durable` and `quic_frames` fuzz targets.
//!
//! Membership datagrams travel as QUIC datagrams (unreliable, like the UDP the core was
//! designed for) on pooled connections; RPC as one request and one response frame on a
//! bidirectional stream. A datagram whose envelope names another sender than the
//! connection's certificate, or a request that claims one, is dropped and counted.
//!
//! # What one peer can make a member hold
//!
//! Everything a peer sends is bounded and counted in [`Cluster::metrics`]: handshakes
//! without a certificate of the cluster CA fail (`handshakes_failed`); a connection may
//! deliver [`ClusterBuilder::datagram_rate`] membership datagrams a second
//! (`datagrams_flooded` beyond), each at most `max_datagram` (`datagrams_malformed`), into
//! a bounded queue (`datagrams_overflow`); it may have [`ClusterBuilder::max_streams`]
//! requests open, each a frame of at most [`ClusterBuilder::max_frame`] that must arrive
//! within [`ClusterBuilder::request_timeout`] (`rpc_refused`, `rpc_timed_out`), with a
//! receive window of two frames per connection; the pool keeps
//! [`ClusterBuilder::max_connections`]. Requests are served under the worker side of a
//! resilience policy ([`ClusterBuilder::serving`]): at most its concurrency limit run at
//! once (`rpc_shed` beyond), each for at most the budget its request carries
//! (`rpc_expired`), and the idempotency window keeps at most its count of requests for at
//! most its age, their answers within [`ClusterBuilder::kept_answers`] bytes; a copy of a
//! request waiting for the one in progress holds only its stream. A member that cannot join says why
//! ([`Cluster::joined`], [`Cluster::last_refusal`]); one whose id already runs elsewhere
//! stops ([`Error::IdInUse`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

mod client;
pub mod clock;
pub mod cluster;
mod driver;
mod error;
#[cfg(any(fuzzing, feature = "__fuzzing"))]
pub mod fuzzing;
pub mod metrics;
pub mod rpc;
mod server;
mod state;
pub mod tls;

pub use client::ServiceClient;
pub use clock::{Clock, SkewedClock, TokioClock};
pub use cluster::{Cluster, ClusterBuilder};
pub use error::Error;
pub use metrics::{Counters, Metrics};
pub use rpc::{HandlerResult, Request};
pub use state::{MemoryStorage, StateDir, StateError, Storage};
pub use tls::{DevCa, NodeCert, TlsConfig};

/// Re-exported for [`StateDir`]'s signatures.
pub use conclave_core::Durable;
/// Re-exported for the socket a simulated network supplies ([`ClusterBuilder::socket`]).
pub use quinn;
