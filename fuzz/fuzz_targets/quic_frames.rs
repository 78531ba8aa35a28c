//! libFuzzer's entry to the `quic_frames` target; its body is `conclave_fuzz::quic_frames::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conclave_fuzz::quic_frames::run(data));
