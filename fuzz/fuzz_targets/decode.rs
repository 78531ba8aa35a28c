//! libFuzzer's entry to the `decode` target; its body is `conclave_fuzz::decode::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conclave_fuzz::decode::run(data));
