//! The parts of `roomcast-smol` that stand alone, so the fuzz target can reach them: the
//! HTTP/1.1 wire ([`http1`]). The server itself is the `roomcast-smol` binary.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod http1;
