//! libFuzzer's entry to the `node_datagram` target; its body is `conclave_fuzz::node_datagram::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conclave_fuzz::node_datagram::run(data));
