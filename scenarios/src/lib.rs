//! conclave-scenarios: the scenario catalog and benchmarks behind the `conclave` command.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod service;
