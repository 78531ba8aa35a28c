//! Any bytes into the wire decoder: it must return a `WireError` or a message that
//! round-trips, and never panic. Half the inputs are wrapped in a valid envelope first, so
//! the fuzzer spends its time in the body decoder rather than on the checksum.

use conclave_core::fuzzing;
use conclave_core::wire::{MAX_MAX_DATAGRAM, MIN_MAX_DATAGRAM};
use conclave_core::{Config, NodeId};

/// The target's body.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let cluster = Config::lan().cluster_id;
    let max = if mode & 2 == 0 { MIN_MAX_DATAGRAM } else { MAX_MAX_DATAGRAM };
    if mode & 1 == 0 {
        let _ = fuzzing::decode(rest, cluster, max);
    } else {
        let _ = fuzzing::decode(&fuzzing::seal(cluster, NodeId(7), rest), cluster, max);
    }
}
