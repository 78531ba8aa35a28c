//! libFuzzer's entry to the `sim_plan` target; its body is `conclave_fuzz::sim_plan::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conclave_fuzz::sim_plan::run(data));
