//! Request heads and chunked bodies as a client could send them, cut into arbitrary reads: no
//! panic, and the same answer however the bytes arrive. The body is
//! `roomcast_smol::http1::fuzz::run`, which `cargo test` also runs over the committed corpus in
//! `fuzz/corpus/http1/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| roomcast_smol::http1::fuzz::run(data));
