//! The gRPC schema and generated code. Not built yet: it lands with the host-tokio issue.
