//! Random operation sequences against the core and its reference model: no panic, every
//! invariant holds. The body is `roomcast_core::sim::run_fuzz_input`, which `cargo test` also
//! runs over the committed corpus in `fuzz/corpus/core_ops/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| roomcast_core::sim::run_fuzz_input(data));
