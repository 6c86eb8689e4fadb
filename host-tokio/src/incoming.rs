//! The connections tonic serves: accepted here under the connection cap, each holding its place
//! until it closes. A client over the cap is closed at once (gRPC clients see `UNAVAILABLE` and
//! retry with backoff) rather than left waiting on a server out of descriptors.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use roomcast_hub::edge::{AcceptErrors, ConnectionLimit, ConnectionSlot};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Idle time before the kernel probes a connection.
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(60);
/// Time between probes.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection under the cap.
pub struct Counted {
    stream: TcpStream,
    _slot: ConnectionSlot,
}

/// Accepted connections, as tonic takes them.
pub fn incoming(
    listener: TcpListener,
    limit: Arc<ConnectionLimit>,
) -> impl Stream<Item = io::Result<Counted>> {
    futures_util::stream::unfold(
        (listener, limit, AcceptErrors::default()),
        |(listener, limit, mut errors)| async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        errors.accepted();
                        let Some(slot) = limit.try_open() else {
                            drop(stream);
                            continue;
                        };
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                        }
                        // A client that vanished without a FIN, holding a quiet stream, is
                        // found by the kernel (after a minute and a few probes) and its
                        // connection freed.
                        let probes = socket2::TcpKeepalive::new()
                            .with_time(KEEPALIVE_IDLE)
                            .with_interval(KEEPALIVE_INTERVAL);
                        if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&probes) {
                            tracing::debug!(error = %e, "cannot set TCP keepalive");
                        }
                        let counted = Counted {
                            stream,
                            _slot: slot,
                        };
                        return Some((Ok(counted), (listener, limit, errors)));
                    }
                    Err(e) => {
                        errors.failed(&e);
                        tokio::time::sleep(AcceptErrors::PAUSE).await;
                    }
                }
            }
        },
    )
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.stream.local_addr().ok(),
            remote_addr: self.stream.peer_addr().ok(),
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
