//! The durable state's decoder and the state directory's reader, with arbitrary bytes and
//! truncations, and stores cut by a crash: see `conclave_quic::fuzzing::durable`.

/// The target's body.
pub fn run(data: &[u8]) {
    conclave_quic::fuzzing::durable(data);
}
