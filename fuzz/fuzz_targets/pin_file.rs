//! cargo-fuzz target: `bao_kms_provider::fuzzing::pin_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bao_kms_provider::fuzzing::pin_file(data);
});
