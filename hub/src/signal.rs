//! Waiting for SIGINT or SIGTERM, on any runtime.

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;

/// Resolves when the process receives SIGINT or SIGTERM; names the signal.
pub async fn shutdown() -> std::io::Result<&'static str> {
    let mut signals = Signals::new([Signal::Int, Signal::Term])?;
    Ok(match signals.next().await.transpose()? {
        Some(Signal::Int) => "SIGINT",
        _ => "SIGTERM",
    })
}
