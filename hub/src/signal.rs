//! Catching SIGINT and SIGTERM, on any runtime.

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;

/// SIGINT and SIGTERM, caught from the moment [`Shutdown::catch`] returns. Catch them before
/// announcing the listening address: a signal that arrives earlier kills the process outright.
#[derive(Debug)]
pub struct Shutdown(Signals);

impl Shutdown {
    /// Starts catching SIGINT and SIGTERM.
    pub fn catch() -> std::io::Result<Shutdown> {
        Signals::new([Signal::Int, Signal::Term]).map(Shutdown)
    }

    /// Resolves when one arrives, and logs which.
    pub async fn wait(mut self) {
        match self.0.next().await {
            Some(Ok(Signal::Int)) => tracing::info!("SIGINT: shutting down"),
            Some(Ok(_)) => tracing::info!("SIGTERM: shutting down"),
            Some(Err(e)) => tracing::error!(error = %e, "cannot watch for signals; shutting down"),
            None => tracing::error!("the signal stream ended; shutting down"),
        }
    }
}
