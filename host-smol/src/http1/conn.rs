//! One HTTP/1.1 connection's reading side: its buffer of bytes not yet used, request heads read
//! from it within their deadlines, and each request's body as an `AsyncRead` for the router.
//!
//! Bytes that arrive after a head (a body, or the next pipelined request) stay in the buffer,
//! so pipelined requests are answered in order. The buffer never holds more than one head's
//! limit; bodies go straight to their reader. After each response, [`Conn::finish`] reads what
//! is left of an unread body (bounded) so the next request starts where it should, or says to
//! close when that cannot be done safely.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt, FutureExt};

use super::chunked::Chunked;
use super::head::{self, Framing, RequestHead};
use super::{Limits, Refusal};

/// What a connection runs over: a byte stream whose clones share one socket (TCP, or a TLS
/// session over it).
///
/// Closing (`AsyncWrite::poll_close`) shuts the sending side only: the peer reads an end of
/// stream, and what it still sends can be read.
pub trait Transport: AsyncRead + AsyncWrite + Clone + Unpin + Send + Sync + 'static {}

impl<S: AsyncRead + AsyncWrite + Clone + Unpin + Send + Sync + 'static> Transport for S {}

/// Bytes read from the socket at once.
const READ_BYTES: usize = 4 * 1024;
/// The interim response a client that sent `Expect: 100-continue` waits for.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Where the current request's body stands.
#[derive(Debug)]
enum Body {
    /// Read to its end (or there was none).
    Done,
    /// This many bytes left.
    Length(u64),
    /// Chunked, decoding.
    Chunked(Chunked),
    /// Its framing broke, or it timed out: the connection cannot be reused.
    Broken,
}

/// `100 Continue`: not owed, owed, or this many bytes of it written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continue {
    NotOwed,
    Owed,
    Writing(usize),
}

struct Inner<S> {
    io: S,
    buf: Vec<u8>,
    body: Body,
    continue_: Continue,
    /// When the current request (head and body) must have arrived.
    deadline: Instant,
    timer: Option<Timer>,
}

/// A connection's reading side; responses are written through [`Conn::write_all`].
pub struct Conn<S> {
    inner: Arc<Mutex<Inner<S>>>,
    writer: S,
    limits: Limits,
    /// Whether a request has been read yet (the first waits `request_timeout`, later ones
    /// `idle_timeout`, for their first byte).
    served: bool,
}

/// What to do after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Read the next request.
    KeepAlive,
    /// Close: the body could not be read to its end, or the request asked to.
    Close,
}

impl<S: Transport> Conn<S> {
    /// A connection over `io`.
    pub fn new(io: S, limits: Limits) -> Self {
        Conn {
            writer: io.clone(),
            inner: Arc::new(Mutex::new(Inner {
                io,
                buf: Vec::new(),
                body: Body::Done,
                continue_: Continue::NotOwed,
                deadline: Instant::now() + limits.request_timeout,
                timer: None,
            })),
            limits,
            served: false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the next request head. `Ok(None)` when the client closed the connection, or sent
    /// nothing before its idle timeout, between requests.
    pub async fn read_head(&mut self) -> Result<Option<RequestHead>, Refusal> {
        let wait_first = if self.served {
            self.limits.idle_timeout
        } else {
            self.limits.request_timeout
        };
        let idle_until = Instant::now() + wait_first;
        let mut started: Option<Instant> = None;
        let mut scanned = 0;
        loop {
            {
                let mut inner = self.lock();
                let blank = head::leading_empty_lines(&inner.buf);
                if blank > 0 {
                    inner.buf.drain(..blank);
                    scanned = 0;
                }
                if !inner.buf.is_empty() && started.is_none() {
                    started = Some(Instant::now());
                }
                if let Some(end) = head::find_end(&inner.buf, scanned)? {
                    let parsed = head::parse(&inner.buf[..end]);
                    inner.buf.drain(..end);
                    let head = parsed?;
                    inner.body = match head.framing {
                        Framing::Length(0) => Body::Done,
                        Framing::Length(n) => Body::Length(n),
                        Framing::Chunked => Body::Chunked(Chunked::default()),
                    };
                    inner.continue_ = if head.expects_continue && !matches!(inner.body, Body::Done)
                    {
                        Continue::Owed
                    } else {
                        Continue::NotOwed
                    };
                    inner.deadline =
                        started.unwrap_or_else(Instant::now) + self.limits.request_timeout;
                    inner.timer = None;
                    drop(inner);
                    self.served = true;
                    return Ok(Some(head));
                }
                scanned = inner.buf.len();
                if inner.buf.len() >= self.limits.max_head_bytes {
                    return Err(Refusal::head_too_large(format!(
                        "the request head is over the limit of {} bytes",
                        self.limits.max_head_bytes
                    )));
                }
            }
            let until = match started {
                None => idle_until,
                Some(at) => at + self.limits.request_timeout,
            };
            let room = self.limits.max_head_bytes + 4 - self.lock().buf.len();
            let read = poll_fn(|cx| self.lock().poll_fill(cx, room.min(READ_BYTES)))
                .or(async {
                    Timer::at(until).await;
                    Err(io::ErrorKind::TimedOut.into())
                })
                .await;
            match read {
                Ok(0) if self.lock().buf.is_empty() => return Ok(None),
                Ok(0) => return Err(Refusal::malformed("the connection ended inside a head")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut && started.is_none() => {
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(Refusal::new(
                        408,
                        "request-timeout",
                        format!(
                            "the request did not arrive within {} s",
                            self.limits.request_timeout.as_secs()
                        ),
                    ));
                }
                Err(_) => return Ok(None),
            }
        }
    }

    /// The current request's body, for the router to read.
    pub fn body(&self) -> BodyReader<S> {
        BodyReader {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Whether the connection will be closed after this response whatever happens: the body
    /// is broken, its client waits for `100 Continue` that was never sent (so it will never send
    /// the body), or more of it is left than [`Conn::finish`] would drain. The response says so
    /// (`Connection: close`).
    pub fn closes_after(&self, drain: u64) -> bool {
        let inner = self.lock();
        match (&inner.body, inner.continue_) {
            (Body::Done, _) => false,
            (Body::Broken, _) | (_, Continue::Owed) => true,
            (Body::Length(left), Continue::NotOwed | Continue::Writing(_)) => *left > drain,
            (Body::Chunked(_), Continue::NotOwed | Continue::Writing(_)) => false,
        }
    }

    /// After a response: reads what is left of the request's body (at most `drain` bytes, by
    /// its deadline) so the next request can follow, or says to close.
    pub async fn finish(&mut self, drain: u64) -> After {
        {
            let inner = self.lock();
            match (&inner.body, inner.continue_) {
                (Body::Done, _) => return After::KeepAlive,
                (Body::Broken, _) => return After::Close,
                // The client may be waiting for 100 Continue and will never send the body:
                // reading it would hang, and guessing would misread the next request.
                (_, Continue::Owed) => return After::Close,
                _ => {}
            }
        }
        let mut reader = self.body();
        let mut sink = vec![0u8; READ_BYTES];
        let mut drained = 0u64;
        while drained <= drain {
            match futures_lite::AsyncReadExt::read(&mut reader, &mut sink).await {
                Ok(0) => return After::KeepAlive,
                Ok(n) => drained += n as u64,
                Err(_) => return After::Close,
            }
        }
        After::Close
    }

    /// Writes response bytes.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// Closes without losing the last response: stops sending, then reads (and drops) what the
    /// client is still sending for a moment, so the kernel does not answer it with a reset that
    /// could destroy the response before the client reads it.
    pub async fn close(self) {
        linger_close(self.writer, LINGER).await;
    }

    /// Gives up the connection (for an upgrade or an event stream): the transport, and bytes
    /// already read past the head. `None` if a body reader is still alive elsewhere.
    pub fn into_parts(self) -> Option<(S, Vec<u8>)> {
        drop(self.writer);
        let inner = Arc::try_unwrap(self.inner).ok()?;
        let inner = inner.into_inner().unwrap_or_else(PoisonError::into_inner);
        Some((inner.io, inner.buf))
    }
}

/// How long a closing connection keeps reading what the client still sends.
pub const LINGER: Duration = Duration::from_secs(2);
/// How much it reads while lingering.
const LINGER_BYTES: usize = 64 * 1024;

/// Shuts the sending side of `io`, then reads and drops what arrives for `linger` (at most
/// [`LINGER_BYTES`]) before dropping it.
pub async fn linger_close<S: Transport>(mut io: S, linger: Duration) {
    let _ = io.close().await;
    let mut sink = [0u8; 1024];
    let mut read = 0;
    let deadline = Instant::now() + linger;
    while read < LINGER_BYTES {
        let n = futures_lite::AsyncReadExt::read(&mut io, &mut sink)
            .or(async {
                Timer::at(deadline).await;
                Ok(0)
            })
            .await;
        match n {
            Ok(0) | Err(_) => return,
            Ok(n) => read += n,
        }
    }
}

impl<S: Transport> Inner<S> {
    /// Reads up to `max` more bytes into the buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<usize>> {
        let old = self.buf.len();
        self.buf.resize(old + max.max(1), 0);
        let read = Pin::new(&mut self.io).poll_read(cx, &mut self.buf[old..]);
        let n = match &read {
            Poll::Ready(Ok(n)) => *n,
            Poll::Ready(Err(_)) | Poll::Pending => 0,
        };
        self.buf.truncate(old + n);
        read
    }

    /// Fails with `TimedOut` once the request's deadline has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = self.deadline;
        let timer = self.timer.get_or_insert_with(|| Timer::at(deadline));
        match Pin::new(timer).poll(cx) {
            Poll::Ready(_) => {
                self.body = Body::Broken;
                Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                ))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes whatever of `100 Continue` is owed.
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let written = match self.continue_ {
                Continue::NotOwed => return Poll::Ready(Ok(())),
                Continue::Owed => 0,
                Continue::Writing(n) => n,
            };
            if written == CONTINUE.len() {
                self.continue_ = Continue::NotOwed;
                return Poll::Ready(Ok(()));
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &CONTINUE[written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.continue_ = Continue::Writing(written + n);
        }
    }

    /// Reads body bytes into `out`: from the buffer first, then the socket.
    fn poll_body(&mut self, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        if out.is_empty() || matches!(self.body, Body::Done) {
            return Poll::Ready(Ok(0));
        }
        if matches!(self.body, Body::Broken) {
            return Poll::Ready(Err(io::Error::other("the request body is unreadable")));
        }
        ready!(self.poll_continue(cx))?;
        loop {
            if self.buf.is_empty() {
                match self.poll_fill(cx, READ_BYTES) {
                    Poll::Ready(Ok(0)) => {
                        self.body = Body::Broken;
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the connection ended inside the request body",
                        )));
                    }
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => {
                        self.body = Body::Broken;
                        return Poll::Ready(Err(e));
                    }
                    Poll::Pending => return self.poll_deadline(cx).map(Err),
                }
            }
            let (used, written) = match &mut self.body {
                Body::Length(left) => {
                    let n = self
                        .buf
                        .len()
                        .min(out.len())
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    out[..n].copy_from_slice(&self.buf[..n]);
                    *left -= n as u64;
                    if *left == 0 {
                        self.body = Body::Done;
                    }
                    (n, n)
                }
                Body::Chunked(decoder) => match decoder.decode(&self.buf, out) {
                    Ok((used, written)) => {
                        if decoder.is_done() {
                            self.body = Body::Done;
                        }
                        (used, written)
                    }
                    Err(refusal) => {
                        self.body = Body::Broken;
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            refusal.detail,
                        )));
                    }
                },
                Body::Done | Body::Broken => (0, 0),
            };
            self.buf.drain(..used);
            if written > 0 || matches!(self.body, Body::Done) {
                return Poll::Ready(Ok(written));
            }
        }
    }
}

/// A request's body as the router reads it. Reading past the request's deadline fails with
/// `TimedOut`, and a body that breaks its framing with `InvalidData`.
pub struct BodyReader<S> {
    inner: Arc<Mutex<Inner<S>>>,
}

impl<S: Transport> AsyncRead for BodyReader<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .poll_body(cx, out)
    }
}
