//! The connection's socket as the server writes to it: a TCP stream whose stalled writes end
//! after a timeout. Below the connection loop (`server.rs`) and TLS (`tls.rs`), which both
//! wrap it.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_io::Timer;
use futures_lite::{AsyncRead, AsyncWrite};
use smol::net::TcpStream;

/// A TCP stream whose writes fail with `TimedOut` (and shut the socket) once one has waited
/// longer than the timeout for the peer to make room.
pub struct TimedStream {
    inner: TcpStream,
    timeout: Duration,
    stalled: Option<Timer>,
}

impl TimedStream {
    pub fn new(inner: TcpStream, timeout: Duration) -> Self {
        TimedStream {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// Reads what has arrived without taking it.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.peek(buf).await
    }
}

impl Clone for TimedStream {
    fn clone(&self) -> Self {
        TimedStream::new(self.inner.clone(), self.timeout)
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => {
                let timeout = self.timeout;
                let timer = self.stalled.get_or_insert_with(|| Timer::after(timeout));
                if Pin::new(timer).poll(cx).is_ready() {
                    let _ = self.inner.shutdown(Shutdown::Both);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
