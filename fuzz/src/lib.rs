//! The fuzz targets' bodies: one function per target, taking arbitrary bytes and panicking
//! only on a bug. The targets in `fuzz_targets/` call them under libFuzzer, and the
//! workspace test `tests/fuzz_corpus.rs` includes this same file and runs every corpus
//! file of every target through them, so an input that ever found a bug stays guarded.

pub mod decode;
pub mod durable;
pub mod input;
pub mod node_datagram;
pub mod quic_frames;
pub mod sim_plan;

/// A target's body: arbitrary bytes in, a panic only on a bug.
pub type Body = fn(&[u8]);

/// Every target: its name (its corpus is `corpus/<name>/`) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("decode", decode::run),
    ("durable", durable::run),
    ("node_datagram", node_datagram::run),
    ("quic_frames", quic_frames::run),
    ("sim_plan", sim_plan::run),
];
