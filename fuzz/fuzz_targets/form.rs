//! `cargo +nightly fuzz run form`: see `authgate::fuzzing::form` for the input layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::form(data));
