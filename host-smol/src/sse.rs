//! Server-Sent Events: `id:` is the room sequence number, `event:` the kind, `data:` JSON.
//!
//! The response body pulls straight from the subscription whenever the connection has room:
//! every frame already waiting goes into the one buffer async-h1 writes, so a burst leaves in
//! one syscall, and a message's frame is made once per message and shared by every listener.
//! A client that stops reading stops being polled; its subscription falls behind in the room's
//! ring and later resyncs from history (the room never waits), and the server's write timeout
//! cuts the connection off.

use std::fmt::Write as _;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use async_io::Timer;
use bytes::{Buf, Bytes};
use futures_lite::{AsyncBufRead, AsyncRead, FutureExt, Stream, StreamExt};
use roomcast_hub::telemetry::ConnectionGauge;
use roomcast_hub::{Delivery, Subscription, Wire};
use tide::{Body, Request, Response, StatusCode};

use crate::app::State;
use crate::problem::Problem;
use crate::server::PeerWatch;
use crate::stream::subscribe;
use crate::wire::{MessageBody, StreamEvent};

/// The reconnect delay suggested to browsers, in milliseconds.
const RETRY_MS: u32 = 2000;

/// `GET /api/v1/rooms/{room}/events`: the room must exist.
pub async fn stream(req: Request<State>) -> Result<Response, Problem> {
    respond(&req, false).await
}

/// The seed's `GET /stream/{room}`: creates the room if needed.
pub async fn seed_stream(req: Request<State>) -> Result<Response, Problem> {
    respond(&req, true).await
}

async fn respond(req: &Request<State>, create: bool) -> Result<Response, Problem> {
    let subscription = subscribe(req, "sse", create).await?;
    let frames = Frames {
        subscription,
        heartbeat: Timer::interval(req.state().heartbeat),
        peer: req.ext::<PeerWatch>().cloned(),
        _open: req.state().streams.open(),
        _gauge: ConnectionGauge::new("sse"),
        ended: false,
    };
    let body = EventBody {
        frames: Mutex::new(Box::pin(frames.into_stream())),
        current: Bytes::from(format!("retry: {RETRY_MS}\n\n")),
        ended: false,
    };
    let mut res = Response::new(StatusCode::Ok);
    res.set_content_type("text/event-stream; charset=utf-8");
    res.insert_header("Cache-Control", "no-cache");
    res.insert_header("X-Accel-Buffering", "no");
    res.set_body(Body::from_reader(body, None));
    Ok(res)
}

/// One SSE frame.
pub fn frame(event: &StreamEvent) -> String {
    let mut frame = String::with_capacity(256);
    if let Some(id) = event.resume_point() {
        let _ = writeln!(frame, "id: {id}");
    }
    let _ = write!(
        frame,
        "event: {}\ndata: {}\n\n",
        event.kind(),
        event.to_json()
    );
    frame
}

/// A delivery's frame; a message's is made once and shared by all its listeners.
fn encode(delivery: Delivery) -> Bytes {
    match delivery {
        Delivery::Message(shared) => shared.encoded(Wire::Sse, |m| {
            frame(&StreamEvent::Message(MessageBody::from(m))).into()
        }),
        other => frame(&StreamEvent::from(other)).into(),
    }
}

/// What one stream's frames come from. An idle stream sends a comment every heartbeat, so
/// proxies keep it and dead peers are noticed.
struct Frames {
    subscription: Subscription,
    heartbeat: Timer,
    peer: Option<PeerWatch>,
    _open: crate::app::StreamGuard,
    _gauge: ConnectionGauge,
    ended: bool,
}

impl Frames {
    fn into_stream(self) -> impl Stream<Item = Bytes> + Send {
        futures_lite::stream::unfold(self, |mut this| async move {
            let frame = this.next_frame().await?;
            Some((frame, this))
        })
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        // Ready deliveries first: a busy stream neither waits for nor arms anything.
        if let Some(delivery) = self.subscription.try_next() {
            return Some(self.frame(delivery));
        }
        let peer = self.peer.clone();
        let next = async { self.subscription.next().await.map(Wake::Delivery) };
        let heartbeat = async {
            self.heartbeat.next().await;
            Some(Wake::Heartbeat)
        };
        let hung_up = async {
            if let Some(peer) = peer {
                peer.closed().await;
            } else {
                std::future::pending::<()>().await;
            }
            None
        };
        match next.or(heartbeat).or(hung_up).await? {
            Wake::Delivery(delivery) => Some(self.frame(delivery)),
            Wake::Heartbeat => Some(Bytes::from_static(b": keep-alive\n\n")),
        }
    }

    fn frame(&mut self, delivery: Delivery) -> Bytes {
        self.ended = matches!(delivery, Delivery::Closed(_));
        encode(delivery)
    }
}

/// Why a stream woke up.
enum Wake {
    Delivery(Delivery),
    Heartbeat,
}

/// The response body: copies as many pending frames as fit into each read.
struct EventBody {
    /// The body must be `Sync` while the stream's futures are only `Send`; only `&mut` access
    /// ever happens, so the mutex is never locked.
    frames: Mutex<Pin<Box<dyn Stream<Item = Bytes> + Send>>>,
    /// The rest of the frame being read.
    current: Bytes,
    ended: bool,
}

impl EventBody {
    /// Makes `current` non-empty unless nothing is ready (or the stream has ended).
    fn poll_current(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.current.is_empty() && !self.ended {
            let frames = self
                .frames
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner);
            match frames.as_mut().poll_next(cx) {
                Poll::Ready(Some(frame)) => self.current = frame,
                Poll::Ready(None) => self.ended = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }
}

impl AsyncRead for EventBody {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut filled = 0;
        while filled < buf.len() {
            if self.poll_current(cx).is_pending() || self.current.is_empty() {
                break;
            }
            let n = self.current.len().min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&self.current[..n]);
            self.current.advance(n);
            filled += n;
        }
        if filled == 0 && !self.ended {
            return Poll::Pending;
        }
        Poll::Ready(Ok(filled))
    }
}

impl AsyncBufRead for EventBody {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        match this.poll_current(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Ok(&this.current[..])),
        }
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        self.current.advance(amt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::GapBody;

    #[test]
    fn frames_follow_the_event_stream_format() {
        let gap = StreamEvent::Gap(GapBody {
            after: 3,
            first_held: 10,
        });
        assert_eq!(
            frame(&gap),
            "id: 9\nevent: gap\ndata: {\"type\":\"gap\",\"after\":3,\"first_held\":10}\n\n"
        );
        let closed = StreamEvent::Closed {
            reason: "expired".into(),
            by: None,
        };
        assert_eq!(
            frame(&closed),
            "event: closed\ndata: {\"type\":\"closed\",\"reason\":\"expired\"}\n\n"
        );
    }
}
