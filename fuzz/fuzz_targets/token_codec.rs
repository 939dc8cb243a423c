//! `cargo +nightly fuzz run token_codec`: see `authgate::fuzzing::token_codec` for the input layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::token_codec(data));
