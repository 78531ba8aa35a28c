//! libFuzzer's entry to the `durable` target; its body is `conclave_fuzz::durable::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conclave_fuzz::durable::run(data));
