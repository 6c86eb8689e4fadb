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
use roomcast_hub::tls::{HANDSHAKE_TIMEOUT, HandshakeFailure};

use crate::io::TimedStream;

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

/// What a client opened on a TLS port.
pub enum Opened {
    /// A TLS session, its handshake done.
    Tls(TlsStream),
    /// A plain HTTP request (a method's first letter came rather than a handshake record): the
    /// client is told in plain HTTP that this port speaks HTTPS.
    PlainHttp(TimedStream),
    /// Nothing usable within [`HANDSHAKE_TIMEOUT`], or a failed handshake (counted and logged).
    Nothing,
}

/// The TLS session a client opens on `tcp`.
pub async fn open(
    config: &Arc<rustls::ServerConfig>,
    tcp: TimedStream,
    peer: SocketAddr,
) -> Opened {
    let opening = async {
        let mut first = [0u8; 1];
        if matches!(tcp.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase()) {
            return Ok::<_, io::Error>(Opened::PlainHttp(tcp));
        }
        let session = TlsAcceptor::from(config.clone()).accept(tcp).await?;
        Ok(Opened::Tls(TlsStream(Arc::new(Mutex::new(session)))))
    };
    let deadline = async {
        async_io::Timer::after(HANDSHAKE_TIMEOUT).await;
        Err(io::ErrorKind::TimedOut.into())
    };
    match opening.or(deadline).await {
        Ok(Opened::PlainHttp(tcp)) => {
            HandshakeFailure::PlainHttp.record(Some(peer), &"a plain HTTP request");
            Opened::PlainHttp(tcp)
        }
        Ok(opened) => opened,
        Err(e) => {
            let failure = if e.kind() == io::ErrorKind::TimedOut {
                HandshakeFailure::Timeout
            } else {
                HandshakeFailure::Error
            };
            failure.record(Some(peer), &e);
            Opened::Nothing
        }
    }
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
