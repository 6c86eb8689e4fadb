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

use std::sync::Arc;

use async_io::{Async, Timer};
use futures_lite::{AsyncRead, AsyncWrite, FutureExt};
use smol::net::{TcpListener, TcpStream};
use smol::{Executor, Task};
use tide::http::headers::{CONNECTION, UPGRADE};
use tide::http::upgrade::Connection;
use tide::http::{Response, StatusCode};

use crate::app::State;

static EXECUTOR: LazyLock<Executor<'static>> = LazyLock::new(Executor::new);

/// How long a client may take to send a request's head (async-h1's default).
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);

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

/// Serves one connection's requests in turn, as `async_h1::accept` does, with two changes:
/// the request-head decoder (which holds a 4 KiB header array) is boxed, so it takes memory
/// only while a head is read; and an event stream is written by [`crate::sse::write`] straight
/// to the socket instead of through async-h1's 8 KiB copy buffer and per-read chunking. An
/// idle stream then holds little more than its subscription.
async fn connection(app: tide::Server<State>, mut stream: TimedStream, peer: SocketAddr) {
    let watch = PeerWatch(stream.inner.clone().into());
    let served = AssertUnwindSafe(async {
        loop {
            let decoded = Box::pin(async_h1::server::decode(stream.clone()))
                .or(async {
                    Timer::after(HEAD_TIMEOUT).await;
                    Ok(None)
                })
                .await;
            let (mut req, mut body) = match decoded {
                Ok(Some(decoded)) => decoded,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            };
            let header = |name| {
                req.header(name)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            let connection = header(CONNECTION);
            let upgrade_requested = !header(UPGRADE).is_empty()
                && connection
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
            let mut close = connection.eq_ignore_ascii_case("close");
            let method = req.method();
            req.set_peer_addr(Some(peer));
            req.ext_mut().insert(watch.clone());
            let mut res: Response = app.respond(req).await?;
            if let Some(events) = crate::sse::take_events(&mut res) {
                // A stream may stay open for days: keep only what writing it needs.
                let head = crate::sse::head(&res);
                drop((res, body));
                crate::sse::write(&mut stream, head, events).await?;
                return Ok(());
            }
            close |= res
                .header(CONNECTION)
                .is_some_and(|c| c.as_str().eq_ignore_ascii_case("close"));
            let upgrade = (upgrade_requested
                && res.status() == StatusCode::SwitchingProtocols
                && res.has_upgrade())
            .then(|| res.send_upgrade());
            let encoder = async_h1::server::Encoder::new(res, method);
            futures_lite::io::copy(encoder, &mut stream).await?;
            futures_lite::io::copy(&mut body, &mut futures_lite::io::sink()).await?;
            if let Some(upgrade) = upgrade {
                upgrade.send(Connection::new(stream.clone())).await;
                return Ok(());
            }
            if close {
                return Ok(());
            }
        }
    });
    match served.catch_unwind().await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended"),
        Err(_) => tracing::error!(%peer, "a request handler panicked; the connection was dropped"),
    }
}

/// Lets a streaming response notice that its client hung up while nothing is being written,
/// so the listener closes (and presence says so) at once rather than at the next heartbeat.
#[derive(Clone)]
pub struct PeerWatch(Arc<Async<std::net::TcpStream>>);

/// The kernel send buffer of a stream's socket. Autotuning would let a client that stops
/// reading park up to 4 MiB in the kernel; a chat stream needs far less in flight, and a
/// small buffer also makes a stalled client meet the write timeout sooner.
const STREAM_SEND_BUFFER_BYTES: usize = 64 * 1024;

impl PeerWatch {
    /// Bounds the socket's send buffer for a long-lived stream.
    pub fn bound_send_buffer(&self) {
        let socket = socket2::SockRef::from(self.0.get_ref());
        if let Err(e) = socket.set_send_buffer_size(STREAM_SEND_BUFFER_BYTES) {
            tracing::debug!(error = %e, "cannot bound the send buffer");
        }
    }

    /// Resolves when the peer has closed its side of the connection. A peer that sends more
    /// (a pipelined request) is left alone: this then never resolves.
    ///
    /// Peeks only when the socket turns readable (`Async::peek` would peek again at every
    /// poll of the task, that is at every message sent on the stream).
    pub async fn closed(&self) {
        let mut byte = [0u8; 1];
        loop {
            match self.0.get_ref().peek(&mut byte) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.0.readable().await.is_err() {
                        return;
                    }
                }
                Ok(0) | Err(_) => return,
                Ok(_) => std::future::pending().await,
            }
        }
    }
}

/// A TCP stream whose writes fail with `TimedOut` (and shut the socket) once one has waited
/// longer than the timeout for the peer to make room.
pub struct TimedStream {
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
