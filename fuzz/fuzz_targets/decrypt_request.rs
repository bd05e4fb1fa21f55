//! cargo-fuzz target: `bao_kms_provider::fuzzing::decrypt_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bao_kms_provider::fuzzing::decrypt_request(data);
});
