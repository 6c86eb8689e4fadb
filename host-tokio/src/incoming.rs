//! The connections tonic serves: accepted here under the connection cap, each holding its place
//! until it closes. A client over the cap is closed at once (gRPC clients see `UNAVAILABLE` and
//! retry with backoff) rather than left waiting on a server out of descriptors. With
//! `--tls-cert`, each connection's TLS handshake is done here too (tonic's own TLS cannot change
//! its certificate while serving; this one takes it from [`roomcast_hub::tls`] at every
//! handshake, so SIGHUP's reload reaches new connections).
//!
//! A connection that has not sent HTTP/2's preface within [`HANDSHAKE_TIMEOUT`] (then no longer
//! counts among its address's fresh ones), or that stays quiet for the idle timeout (nothing
//! read from it while no call is open on it: [`Activity`]), is closed: its reads fail, and
//! hyper drops it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use roomcast_hub::edge::{AcceptErrors, ConnectionLimit, ConnectionSlot};
use roomcast_hub::tls::{HANDSHAKE_TIMEOUT, HandshakeFailure};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Idle time before the kernel probes a connection.
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(60);
/// Time between probes.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// HTTP/2's connection preface, the first bytes every client sends.
const PREFACE_LEN: usize = 24;

/// A connection under the cap, plain or TLS.
pub struct Counted {
    stream: Io,
    slot: ConnectionSlot,
    /// Calls open on it now.
    activity: Arc<Activity>,
    /// Bytes of the preface read so far (at most [`PREFACE_LEN`]).
    preface: usize,
    /// When a quiet connection is closed: reset by every read.
    quiet: Pin<Box<tokio::time::Sleep>>,
    idle: Duration,
}

/// The calls open on one connection, counted by the access layer for as long as each one's
/// response streams ([`Activity::begin`]): a connection with one open is not idle, however
/// quiet.
#[derive(Debug, Default)]
pub struct Activity {
    calls: AtomicUsize,
}

impl Activity {
    /// A call opened: it counts until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> CallGuard {
        self.calls.fetch_add(1, Ordering::AcqRel);
        CallGuard(Arc::clone(self))
    }
}

/// One open call; see [`Activity`].
#[derive(Debug)]
pub struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a connection tells each of its calls (in the request's extensions): its addresses, and
/// its [`Activity`].
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The addresses, as tonic's own `TcpConnectInfo` (the access layer puts that in the
    /// extensions too, where `Request::remote_addr` looks).
    pub tcp: TcpConnectInfo,
    /// The calls open on the connection.
    pub activity: Arc<Activity>,
}

/// What a connection's bytes go through.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Accepted connections, as tonic takes them: with `tls`, only those whose handshake finished
/// (each on a task of its own, so a slow one holds up nobody, and within
/// [`HANDSHAKE_TIMEOUT`]).
pub fn incoming(
    listener: TcpListener,
    limit: Arc<ConnectionLimit>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    idle: Duration,
) -> impl Stream<Item = io::Result<Counted>> {
    let (ready, accepted) = tokio::sync::mpsc::channel(ACCEPTED_QUEUE);
    let tls = tls.map(TlsAcceptor::from);
    tokio::spawn(accept(listener, limit, tls, ready, idle));
    futures_util::stream::unfold(accepted, |mut accepted| async move {
        let counted = accepted.recv().await?;
        Some((Ok(counted), accepted))
    })
}

/// Connections ready for tonic that it has not taken yet.
const ACCEPTED_QUEUE: usize = 128;

/// Accepts until tonic stops taking connections.
async fn accept(
    listener: TcpListener,
    limit: Arc<ConnectionLimit>,
    tls: Option<TlsAcceptor>,
    ready: tokio::sync::mpsc::Sender<Counted>,
    idle: Duration,
) {
    let mut errors = AcceptErrors::default();
    while !ready.is_closed() {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                errors.failed(&e);
                tokio::time::sleep(AcceptErrors::PAUSE).await;
                continue;
            }
        };
        errors.accepted();
        let Ok(slot) = limit.try_open(peer.ip()) else {
            drop(stream);
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        // A client that vanished without a FIN, holding a quiet stream, is found by the
        // kernel (after a minute and a few probes) and its connection freed.
        let probes = socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL);
        if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&probes) {
            tracing::debug!(error = %e, "cannot set TCP keepalive");
        }
        let Some(tls) = &tls else {
            let counted = Counted::new(Io::Plain(stream), slot, idle);
            if ready.send(counted).await.is_err() {
                return;
            }
            continue;
        };
        let (tls, ready) = (tls.clone(), ready.clone());
        tokio::spawn(async move {
            let peer = stream.peer_addr().ok();
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let counted = Counted::new(Io::Tls(Box::new(stream)), slot, idle);
                    let _ = ready.send(counted).await;
                }
                Ok(Err(e)) => HandshakeFailure::Error.record(peer, &e),
                Err(e) => HandshakeFailure::Timeout.record(peer, &e),
            }
        });
    }
}

impl Counted {
    fn new(stream: Io, slot: ConnectionSlot, idle: Duration) -> Self {
        Counted {
            stream,
            slot,
            activity: Arc::default(),
            preface: 0,
            quiet: Box::pin(tokio::time::sleep(HANDSHAKE_TIMEOUT)),
            idle,
        }
    }

    fn tcp(&self) -> &TcpStream {
        match &self.stream {
            Io::Plain(tcp) => tcp,
            Io::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl Connected for Counted {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo {
            tcp: TcpConnectInfo {
                local_addr: self.tcp().local_addr().ok(),
                remote_addr: self.tcp().peer_addr().ok(),
            },
            activity: Arc::clone(&self.activity),
        }
    }
}

/// Calls `$method` on whichever stream the connection has.
macro_rules! through {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match &mut $self.stream {
            Io::Plain(tcp) => Pin::new(tcp).$method($($arg),*),
            Io::Tls(tls) => Pin::new(tls.as_mut()).$method($($arg),*),
        }
    };
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = through!(self, poll_read(cx, buf));
        let got = buf.filled().len() - before;
        if got > 0 {
            if self.preface < PREFACE_LEN {
                self.preface += got;
                if self.preface >= PREFACE_LEN {
                    self.slot.settled();
                }
            }
            let idle = self.idle;
            self.quiet
                .as_mut()
                .reset(tokio::time::Instant::now() + idle);
            return read;
        }
        if read.is_pending() {
            // Waiting on the client: is it quiet for too long?
            while self.quiet.as_mut().poll(cx).is_ready() {
                if self.preface < PREFACE_LEN {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no HTTP/2 preface in time",
                    )));
                }
                if self.activity.calls.load(Ordering::Acquire) == 0 {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle: no call open and nothing read",
                    )));
                }
                let idle = self.idle;
                self.quiet
                    .as_mut()
                    .reset(tokio::time::Instant::now() + idle);
            }
        }
        read
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        through!(self, poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        through!(self, poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Io::Plain(tcp) => tcp.is_write_vectored(),
            Io::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        through!(self, poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        through!(self, poll_shutdown(cx))
    }
}
