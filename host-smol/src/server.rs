//! Accepting connections on smol and serving each one's requests in turn: the HTTP/1.1 wire
//! ([`roomcast_smol::http1`]) reads them, the tide router answers, and this loop writes the
//! answers, in order, on one connection after another (pipelining and kept-alive requests
//! included). Event streams and WebSocket upgrades then take the socket over.
//!
//! Connections are capped ([`ConnectionLimit`]): a client over the cap is answered at once
//! (503 with Retry-After, or a close that an event stream reconnects after) instead of waiting
//! on a server that has run out of descriptors. Writes time out, so a client that stops reading
//! is cut off instead of held forever.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use futures_rustls::rustls;
use roomcast_hub::edge::{AcceptErrors, ConnectionLimit, ConnectionSlot, EdgeArgs, Turned};
use roomcast_hub::telemetry::Access;
use roomcast_smol::http1::{
    self, After, BodyFraming, Conn, Framing, RequestHead, ResponseHead, Transport, Version,
};
use smol::net::{TcpListener, TcpStream};
use tide::http::upgrade::Connection;
use tide::http::{self as types, StatusCode};

use crate::io::TimedStream;
use crate::problem::{Problem, Refused};
use crate::request::{ClientIp, Https, PeerWatch, RouteName, State};
use crate::runtime::spawn;

/// How connections are served.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Heads, deadlines.
    pub limits: http1::Limits,
    /// Cut off a client whose socket has taken nothing for this long.
    pub write_timeout: Duration,
    /// The most of an unread request body read (and dropped) after an early answer to keep the
    /// connection; a longer one closes it.
    pub drain_bytes: u64,
    /// Client addresses behind trusted proxies.
    pub edge: EdgeArgs,
    /// Serve TLS (`--tls-cert`) rather than plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves `app` on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    app: tide::Server<State>,
    settings: Arc<Settings>,
    limit: Arc<ConnectionLimit>,
    stop: async_channel::Receiver<()>,
) {
    let mut errors = AcceptErrors::default();
    loop {
        let accepted = async { Some(listener.accept().await) }.or(async {
            let _ = stop.recv().await;
            None
        });
        match accepted.await {
            None => return,
            Some(Ok((stream, peer))) => {
                errors.accepted();
                // Small writes (a head, then its body) must not wait for delayed ACKs.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
                // Two tasks, each only as large as its own path: a plain connection's future
                // holds no TLS handshake's state.
                match (limit.try_open(peer.ip()), &settings.tls) {
                    (Ok(slot), None) => {
                        spawn(connection(
                            app.clone(),
                            stream,
                            peer,
                            settings.clone(),
                            slot,
                        ))
                        .detach();
                    }
                    (Ok(slot), Some(config)) => {
                        let config = config.clone();
                        let served = tls_connection(
                            app.clone(),
                            stream,
                            peer,
                            settings.clone(),
                            config,
                            slot,
                        );
                        spawn(served).detach();
                    }
                    // A TLS client cannot read a plain answer: it sees the connection close.
                    (Err(_), Some(_)) => {
                        let _ = stream.shutdown(Shutdown::Both);
                    }
                    (Err(turned), None) => refuse(stream, turned),
                }
            }
            Some(Err(e)) => {
                // Out of file descriptors, usually: wait a moment rather than spin.
                errors.failed(&e);
                Timer::after(AcceptErrors::PAUSE).await;
            }
        }
    }
}

/// Over-limit clients being answered at once; more than this are just closed.
const MAX_REFUSING: usize = 256;
/// How long an over-limit client gets to show what it asked for (a client sends its request
/// as it connects; one that sends nothing must not hold a refusal for long).
const REFUSE_READ: Duration = Duration::from_millis(100);
/// How long a refused client's last bytes are read before its socket closes.
const REFUSE_LINGER: Duration = Duration::from_millis(500);

/// Answers a client over the connection cap (the server's, or its address's) and lets it go:
/// an event stream gets a plain close (EventSource reconnects after a network error, but gives
/// up on an error status); anything else a 503 problem (429 for its address) with Retry-After.
fn refuse(stream: TcpStream, turned: Turned) {
    static REFUSING: AtomicUsize = AtomicUsize::new(0);
    if REFUSING.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
        REFUSING.fetch_sub(1, Ordering::AcqRel);
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    spawn(async move {
        let mut stream = stream;
        let mut head = [0u8; 2048];
        let read = stream
            .read(&mut head)
            .or(async {
                Timer::after(REFUSE_READ).await;
                Ok(0)
            })
            .await
            .unwrap_or(0);
        let stream_request = head[..read]
            .windows(17)
            .any(|w| w.eq_ignore_ascii_case(b"text/event-stream"));
        if !stream_request {
            let mut problem = match turned {
                Turned::Full => Problem::new(
                    StatusCode::ServiceUnavailable,
                    "too-many-connections",
                    "the server holds as many connections as it allows: try again shortly",
                ),
                Turned::Address => Problem::new(
                    StatusCode::TooManyRequests,
                    "too-many-connections-from-address",
                    "your address holds as many connections as one may \
                     (--max-connections-per-address): close one first",
                ),
            };
            problem.retry_after = Some(Duration::from_secs(1));
            let mut res: types::Response = tide::Response::from(problem).into();
            let (answer, _) = encode(&mut res, true, false).await;
            let _ = stream.write_all(&answer).await;
        }
        http1::linger_close(TimedStream::new(stream, REFUSE_READ), REFUSE_LINGER).await;
        REFUSING.fetch_sub(1, Ordering::AcqRel);
    })
    .detach();
}

/// Serves a plain HTTP connection.
async fn connection(
    app: tide::Server<State>,
    stream: TcpStream,
    peer: SocketAddr,
    settings: Arc<Settings>,
    slot: ConnectionSlot,
) {
    let watch = PeerWatch::new(stream.clone().into(), None);
    let conn = Conn::new(
        TimedStream::new(stream, settings.write_timeout),
        settings.limits,
    );
    guarded(
        serve_requests(&app, conn, peer, &settings, watch, slot),
        peer,
    )
    .await;
}

/// Serves an HTTPS connection once its handshake is done; a plain HTTP request is told to use
/// HTTPS.
async fn tls_connection(
    app: tide::Server<State>,
    stream: TcpStream,
    peer: SocketAddr,
    settings: Arc<Settings>,
    config: Arc<rustls::ServerConfig>,
    slot: ConnectionSlot,
) {
    let tcp = stream.clone().into();
    let timed = TimedStream::new(stream, settings.write_timeout);
    let tls = match crate::tls::open(&config, timed, peer).await {
        crate::tls::Opened::Tls(tls) => tls,
        crate::tls::Opened::PlainHttp(mut plain) => {
            let refusal = http1::Refusal::new(
                400,
                "https-required",
                "this port serves HTTPS: use an https:// URL",
            );
            let (bytes, _) = encode(&mut refused(&refusal, ""), true, false).await;
            if plain.write_all(&bytes).await.is_ok() {
                http1::linger_close(plain, REFUSE_LINGER).await;
            }
            return;
        }
        crate::tls::Opened::Nothing => return,
    };
    let watch = PeerWatch::new(tcp, Some(tls.clone()));
    let conn = Conn::new(tls, settings.limits);
    guarded(
        serve_requests(&app, conn, peer, &settings, watch, slot),
        peer,
    )
    .await;
}

/// Runs a connection's requests; a handler's panic drops that connection only.
async fn guarded(served: impl Future<Output = ()>, peer: SocketAddr) {
    if AssertUnwindSafe(served).catch_unwind().await.is_err() {
        tracing::error!(%peer, "a request handler panicked; the connection was dropped");
    }
}

/// Serves requests on one connection until it closes, or an event stream or upgrade takes it.
async fn serve_requests<S: Transport>(
    app: &tide::Server<State>,
    mut conn: Conn<S>,
    peer: SocketAddr,
    settings: &Settings,
    watch: PeerWatch,
    mut slot: ConnectionSlot,
) {
    loop {
        let head = match conn.read_head().await {
            Ok(Some(head)) => {
                // A whole request came: no longer one of its address's fresh connections.
                slot.settled();
                head
            }
            Ok(None) => return,
            Err(refusal) => {
                let mut res = refused(&refusal, "");
                let (bytes, _) = encode(&mut res, true, false).await;
                if conn.write_all(&bytes).await.is_ok() {
                    conn.close().await;
                }
                tracing::info!(target: "roomcast::access", %peer, status = refusal.status, code = refusal.code, "request refused");
                return;
            }
        };
        let started = Instant::now();
        let client = settings
            .edge
            .client_ip(peer.ip(), head.values("x-forwarded-for"));
        let https = Https(
            settings.tls.is_some()
                || settings
                    .edge
                    .forwarded_https(peer.ip(), head.values("x-forwarded-proto")),
        );
        let access = Access::default();
        let head_only = head.method == "HEAD";
        let mut res = match request(&head, &conn, peer, (client, https), &watch, &access) {
            Ok(req) => match app.respond(req).await {
                Ok(res) => res,
                Err(e) => {
                    tracing::error!(error = %e, "the router failed");
                    refused(
                        &http1::Refusal::new(503, "unavailable", "the request failed: try again"),
                        "",
                    )
                }
            },
            Err(refusal) => refused(&refusal, head.target.split('?').next().unwrap_or_default()),
        };
        let status = u16::from(res.status());
        let route = res.ext().get::<RouteName>().map_or("-", |r| r.0);
        let user = access.user();
        let refused = res.ext().get::<Refused>().map_or("-", |r| r.0);
        // Routes are the table's patterns (`-` for none), so the labels are bounded.
        metrics::counter!(
            "roomcast_http_requests_total",
            "route" => route.to_owned(),
            "status" => status.to_string()
        )
        .increment(1);
        tracing::info!(
            target: "roomcast::access",
            method = %head.method,
            route = %route,
            status,
            refused = %refused,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            user = %user,
            client = %client,
            "request"
        );
        let asked_close = res
            .header("Connection")
            .is_some_and(|c| c.as_str().eq_ignore_ascii_case("close"));
        let close = head.close || asked_close || conn.closes_after(settings.drain_bytes);

        if head_only && let Some(frames) = crate::sse::take_events(&mut res) {
            // HEAD of an event stream: its head, and no stream.
            drop(frames);
            let bytes = encode_head(&res, BodyFraming::None, true);
            if conn.write_all(&bytes).await.is_ok() {
                conn.close().await;
            }
            return;
        }
        if let Some(frames) = crate::sse::take_events(&mut res) {
            // A stream may stay open for days: it keeps only what writing it needs.
            let chunked = head.version == Version::Http11;
            let framing = if chunked {
                BodyFraming::Chunked
            } else {
                BodyFraming::UntilClose
            };
            let bytes = encode_head(&res, framing, !chunked);
            let Some((mut stream, _)) = conn.into_parts() else {
                return;
            };
            // A task of its own: this one's state (the request, the response, the wire's
            // buffers) is not kept for the stream's life.
            spawn(async move {
                if let Err(e) = crate::sse::write(&mut stream, bytes, frames, chunked).await {
                    tracing::debug!(%peer, error = %e, "event stream ended");
                }
                drop(slot);
            })
            .detach();
            return;
        }
        if status == 101
            && res.has_upgrade()
            && head.method == "GET"
            && head.has_token("connection", "upgrade")
        {
            let bytes = encode_head(&res, BodyFraming::None, false);
            let upgrade = res.send_upgrade();
            if conn.write_all(&bytes).await.is_err() {
                return;
            }
            let Some((stream, read_ahead)) = conn.into_parts() else {
                return;
            };
            // The slot goes with the socket: the upgraded session is a connection too.
            upgrade
                .send(Connection::new(Prefixed::new(read_ahead, stream, slot)))
                .await;
            return;
        }
        let (bytes, streamed) = encode(&mut res, close, head_only).await;
        if conn.write_all(&bytes).await.is_err() {
            return;
        }
        if let Some((body, len)) = streamed
            && !stream_body(&mut conn, body, len).await
        {
            // Cut short: the client cannot take the rest for a whole response.
            conn.close().await;
            return;
        }
        if close {
            conn.close().await;
            return;
        }
        match conn.finish(settings.drain_bytes).await {
            After::KeepAlive => {}
            After::Close => {
                conn.close().await;
                return;
            }
        }
    }
}

/// A response's head, its header fields checked as they are written.
fn encode_head(res: &types::Response, framing: BodyFraming, close: bool) -> Vec<u8> {
    let status = res.status();
    let headers = res
        .iter()
        .flat_map(|(name, values)| values.iter().map(move |v| (name.as_str(), v.as_str())))
        .collect();
    let (bytes, skipped) = ResponseHead {
        status: u16::from(status),
        reason: status.canonical_reason(),
        headers,
        framing,
        close,
    }
    .encode();
    if !skipped.is_empty() {
        tracing::error!(
            ?skipped,
            "header fields with invalid names or values were not sent"
        );
    }
    bytes
}

/// Bodies longer than this (files) are written as they are read, not gathered first.
const STREAMED_OVER: usize = 64 * 1024;

/// A response's head and, unless it is the answer to HEAD or a status that has none, its
/// body: in memory if small; a long one of known length is returned to stream.
async fn encode(
    res: &mut types::Response,
    close: bool,
    head_only: bool,
) -> (Vec<u8>, Option<(types::Body, u64)>) {
    let status = u16::from(res.status());
    if let Some(len) = res.len().filter(|len| *len > STREAMED_OVER)
        && !no_body(status)
    {
        let len = len as u64;
        let head = encode_head(res, BodyFraming::Length(len), close);
        let body = (!head_only).then(|| (res.take_body(), len));
        return (head, body);
    }
    let body = res.take_body().into_bytes().await.unwrap_or_default();
    let framing = if no_body(status) {
        BodyFraming::None
    } else {
        BodyFraming::Length(body.len() as u64)
    };
    let mut bytes = encode_head(res, framing, close);
    if !head_only && !no_body(status) {
        bytes.extend_from_slice(&body);
    }
    (bytes, None)
}

/// Writes `len` bytes of `body` a buffer at a time; false if it ended early or the client
/// stopped taking them.
async fn stream_body<S: Transport>(conn: &mut Conn<S>, mut body: types::Body, len: u64) -> bool {
    use futures_lite::AsyncReadExt;
    let mut buf = vec![0; STREAMED_OVER];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = match body.read(&mut buf[..want]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if conn.write_all(&buf[..n]).await.is_err() {
            return false;
        }
        left -= n as u64;
    }
    true
}

/// Statuses whose responses carry no body and no length.
fn no_body(status: u16) -> bool {
    matches!(status, 100..=199 | 204 | 304)
}

/// The answer to a request refused at the wire, as a problem. It closes the connection: what
/// follows a refused request cannot be trusted to be the next one. A 405 says which methods the
/// path takes.
fn refused(refusal: &http1::Refusal, path: &str) -> types::Response {
    let status = StatusCode::try_from(refusal.status).unwrap_or(StatusCode::BadRequest);
    let mut res: types::Response =
        tide::Response::from(Problem::new(status, refusal.code, refusal.detail.clone())).into();
    res.insert_header("Connection", "close");
    if status == StatusCode::MethodNotAllowed
        && let Some(allowed) = crate::routes::allowed_methods(path)
    {
        res.insert_header("Allow", allowed);
    }
    res
}

/// The router's request for `head`, reading its body from `conn`.
fn request<S: Transport>(
    head: &RequestHead,
    conn: &Conn<S>,
    peer: SocketAddr,
    (client, https): (IpAddr, Https),
    watch: &PeerWatch,
    access: &Access,
) -> Result<types::Request, http1::Refusal> {
    let method = head
        .method
        .parse::<types::Method>()
        .ok()
        // http-types matches methods ignoring case; HTTP's methods are case-sensitive.
        .filter(|m| m.to_string() == head.method)
        .ok_or_else(|| {
            let path = head.target.split('?').next().unwrap_or_default();
            match crate::routes::allowed_methods(path) {
                Some(_) => http1::Refusal::new(
                    405,
                    "method-not-allowed",
                    format!("this path does not take the method {:?}", head.method),
                ),
                None => http1::Refusal::new(404, "no-such-route", "no route matches this path"),
            }
        })?;
    let url = types::Url::parse(&format!("http://{}{}", head.host, head.target)).map_err(|e| {
        http1::Refusal::new(
            400,
            "malformed-request",
            format!("the target is not a URL: {e}"),
        )
    })?;
    let mut req = types::Request::new(method, url);
    req.set_version(Some(match head.version {
        Version::Http10 => types::Version::Http1_0,
        Version::Http11 => types::Version::Http1_1,
    }));
    for (name, value) in &head.headers {
        let name = types::headers::HeaderName::from_bytes(name.as_bytes().to_vec());
        let value = types::headers::HeaderValue::from_bytes(value.as_bytes().to_vec());
        if let (Ok(name), Ok(value)) = (name, value) {
            req.append_header(name, value);
        }
    }
    match head.framing {
        Framing::Length(0) => {}
        Framing::Length(len) => req.set_body(types::Body::from_reader(
            futures_lite::io::BufReader::with_capacity(4096, conn.body()),
            usize::try_from(len).ok(),
        )),
        Framing::Chunked => req.set_body(types::Body::from_reader(
            futures_lite::io::BufReader::with_capacity(4096, conn.body()),
            None,
        )),
    }
    req.set_peer_addr(Some(peer));
    req.ext_mut().insert(watch.clone());
    req.ext_mut().insert(ClientIp(client));
    req.ext_mut().insert(https);
    req.ext_mut().insert(access.clone());
    Ok(req)
}

/// An upgraded connection: bytes read past the upgrade request's head, handed to the new
/// protocol before the socket's; and the connection's place under the cap, held as long as the
/// socket.
struct Prefixed<S> {
    read_ahead: Vec<u8>,
    at: usize,
    inner: S,
    _slot: ConnectionSlot,
}

impl<S> Prefixed<S> {
    fn new(mut read_ahead: Vec<u8>, inner: S, slot: ConnectionSlot) -> Self {
        // The connection's read buffer, usually empty: keep no capacity for the session's life.
        read_ahead.shrink_to_fit();
        Prefixed {
            read_ahead,
            at: 0,
            inner,
            _slot: slot,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.at < self.read_ahead.len() {
            let n = buf.len().min(self.read_ahead.len() - self.at);
            buf[..n].copy_from_slice(&self.read_ahead[self.at..self.at + n]);
            self.at += n;
            if self.at == self.read_ahead.len() {
                self.read_ahead = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
