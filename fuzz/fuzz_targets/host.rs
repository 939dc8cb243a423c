//! `cargo +nightly fuzz run host`: see `authgate::fuzzing::host` for the input layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::host(data));
