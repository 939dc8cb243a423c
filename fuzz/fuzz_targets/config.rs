//! `cargo +nightly fuzz run config`: see `authgate::fuzzing::config` for the input layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::config(data));
