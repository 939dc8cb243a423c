//! `cargo +nightly fuzz run redirect_uri`: see `authgate::fuzzing::redirect_uri` for the input layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::redirect_uri(data));
