//! The tokio + tonic host (gRPC). Not built yet: it lands with the host-tokio issue.
