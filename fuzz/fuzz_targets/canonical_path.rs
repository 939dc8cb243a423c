//! `cargo +nightly fuzz run canonical_path`: see `authgate::fuzzing::canonical_path` for the input layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::canonical_path(data));
