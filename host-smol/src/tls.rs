//! Serving over TLS (`--tls-cert`): the handshake, with the certificate [`roomcast_hub::tls`]
//! reloads on SIGHUP, and a TLS stream the connection's parts share as they share a TCP
//! socket (the HTTP/1 reader and writer, then an event stream's writer and its hang-up watch).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite, FutureExt};
use futures_rustls::{TlsAcceptor, rustls};
use roomcast_hub::tls::HANDSHAKE_TIMEOUT;
use smol::net::TcpStream;

use crate::server::TimedStream;

/// One TLS session, shared: each read or write holds it only while it is polled. Reads wait on
/// the socket's readable side and writes on its writable side, each with its own waker, so a
/// reader and a writer on two tasks each wake when their side can go on.
#[derive(Clone)]
pub struct TlsStream(Arc<Mutex<futures_rustls::server::TlsStream<TimedStream>>>);

impl TlsStream {
    fn lock(&self) -> MutexGuard<'_, futures_rustls::server::TlsStream<TimedStream>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The TLS session a client opens on `tcp`, or `None` (logged) if its handshake fails or
/// takes longer than [`HANDSHAKE_TIMEOUT`].
pub async fn handshake(
    config: &Arc<rustls::ServerConfig>,
    tcp: TimedStream,
    peer: SocketAddr,
) -> Option<TlsStream> {
    let accepted = TlsAcceptor::from(config.clone()).accept(tcp).or(async {
        async_io::Timer::after(HANDSHAKE_TIMEOUT).await;
        Err(io::ErrorKind::TimedOut.into())
    });
    match accepted.await {
        Ok(stream) => Some(TlsStream(Arc::new(Mutex::new(stream)))),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
    }
}

/// Whether the client on `tcp` began with a plain HTTP request (a method's first letter) rather
/// than a TLS handshake record: it is answered in plain HTTP that this port speaks HTTPS.
pub async fn sent_plain_http(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    let peeked = tcp.peek(&mut first).or(async {
        async_io::Timer::after(HANDSHAKE_TIMEOUT).await;
        Ok(0)
    });
    matches!(peeked.await, Ok(1) if first[0].is_ascii_uppercase())
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_flush(cx)
    }

    /// Sends TLS's close_notify, then shuts the socket's sending side.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_close(cx)
    }
}
