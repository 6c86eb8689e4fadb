//! roomcast's gRPC schema, package `roomcast.v1`: the messages, the `Chat` service's server
//! trait and its client, generated at build time from `roomcast/v1/chat.proto`.
#![allow(missing_docs, clippy::all)]

/// The `roomcast.v1` package.
pub mod v1 {
    tonic::include_proto!("roomcast.v1");
}

/// The encoded file descriptors, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/roomcast_descriptor.bin"));

/// The metadata key older clients named themselves with: now refused if it names anyone but
/// the token's user.
pub const USER_METADATA: &str = "roomcast-user";
/// The metadata key that carries `Bearer <token>`.
pub const AUTHORIZATION_METADATA: &str = "authorization";
