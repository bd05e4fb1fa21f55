//! cargo-fuzz target: `bao_kms_provider::fuzzing::checkpoint`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bao_kms_provider::fuzzing::checkpoint(data);
});
