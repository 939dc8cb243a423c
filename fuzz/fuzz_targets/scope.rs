//! `cargo +nightly fuzz run scope`: see `authgate::fuzzing::scope` for the input layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::scope(data));
