//! `cargo +nightly fuzz run client_basic`: see `authgate::fuzzing::client_basic` for the input layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::client_basic(data));
