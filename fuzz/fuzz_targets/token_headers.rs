//! `cargo +nightly fuzz run token_headers`: see `authgate::fuzzing::token_headers` for the input layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::token_headers(data));
