//! The RPC frame reader and decoders and the datagram intake, with arbitrary bytes (length
//! prefixes, truncation, oversize): see `conclave_quic::fuzzing::quic_frames`.

/// The target's body.
pub fn run(data: &[u8]) {
    conclave_quic::fuzzing::quic_frames(data);
}
