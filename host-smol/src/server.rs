//! Accepting connections on smol and serving each with async-h1 and the tide app, with a write
//! timeout so a client that stops reading is eventually cut off instead of held forever.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Duration;

use async_io::Timer;
use futures_lite::{AsyncRead, AsyncWrite, FutureExt};
use smol::net::{TcpListener, TcpStream};
use smol::{Executor, Task};

use crate::app::State;

static EXECUTOR: LazyLock<Executor<'static>> = LazyLock::new(Executor::new);

/// Spawns a task on the server's executor.
pub fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Task<T> {
    EXECUTOR.spawn(future)
}

/// Runs `main` on the server's executor, with one worker thread per core.
pub fn run<T>(main: impl Future<Output = T>) -> T {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    for i in 0..workers.saturating_sub(1) {
        let _ = std::thread::Builder::new()
            .name(format!("roomcast-worker-{i}"))
            .spawn(|| async_io::block_on(EXECUTOR.run(std::future::pending::<()>())));
    }
    async_io::block_on(EXECUTOR.run(main))
}

/// Serves `app` on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    app: tide::Server<State>,
    write_timeout: Duration,
    stop: async_channel::Receiver<()>,
) {
    loop {
        let accepted = async { Some(listener.accept().await) }.or(async {
            let _ = stop.recv().await;
            None
        });
        match accepted.await {
            None => return,
            Some(Ok((stream, peer))) => {
                // async-h1 writes a response's head and body separately; with Nagle on, the
                // body waits for the client's delayed ACK (40 ms).
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
                let app = app.clone();
                spawn(connection(
                    app,
                    TimedStream::new(stream, write_timeout),
                    peer,
                ))
                .detach();
            }
            Some(Err(e)) => {
                // Out of file descriptors, usually: wait a moment rather than spin.
                tracing::warn!(error = %e, "accept failed");
                Timer::after(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(app: tide::Server<State>, stream: TimedStream, peer: SocketAddr) {
    let watch = PeerWatch(stream.inner.clone());
    let served = async_h1::accept(stream, |mut req| {
        let app = app.clone();
        let watch = watch.clone();
        async move {
            req.set_peer_addr(Some(peer));
            req.ext_mut().insert(watch);
            app.respond(req).await
        }
    });
    match AssertUnwindSafe(served).catch_unwind().await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended"),
        Err(_) => tracing::error!(%peer, "a request handler panicked; the connection was dropped"),
    }
}

/// Lets a streaming response notice that its client hung up while nothing is being written,
/// so the listener closes (and presence says so) at once rather than at the next heartbeat.
#[derive(Clone)]
pub struct PeerWatch(TcpStream);

impl PeerWatch {
    /// Resolves when the peer has closed its side of the connection. A peer that sends more
    /// (a pipelined request) is left alone: this then never resolves.
    pub async fn closed(&self) {
        let mut byte = [0u8; 1];
        match self.0.peek(&mut byte).await {
            Ok(0) | Err(_) => {}
            Ok(_) => std::future::pending().await,
        }
    }
}

/// A TCP stream whose writes fail with `TimedOut` (and shut the socket) once one has waited
/// longer than the timeout for the peer to make room.
struct TimedStream {
    inner: TcpStream,
    timeout: Duration,
    stalled: Option<Timer>,
}

impl TimedStream {
    fn new(inner: TcpStream, timeout: Duration) -> Self {
        TimedStream {
            inner,
            timeout,
            stalled: None,
        }
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
