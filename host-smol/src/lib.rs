//! The smol + tide host (HTML, REST, SSE, WebSocket). Not built yet: it lands with the host-smol issue.
