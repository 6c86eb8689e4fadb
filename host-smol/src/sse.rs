//! Server-Sent Events: `id:` is the room sequence number, `event:` the kind, `data:` JSON.
//!
//! The handler answers with the stream's frames attached to the response; the connection
//! loop above the routes hands them to [`write`], which writes the head and then, each time
//! the socket takes more, every frame already waiting as one chunk in one syscall. A message's
//! frame is made once per message and shared by every listener. A client that stops reading
//! stops being written to; its subscription falls behind in the room's ring and later resyncs
//! from history (the room never waits), and the server's write timeout cuts it off.

use std::fmt::Write as _;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use async_io::Timer;
use bytes::Bytes;
use futures_lite::{AsyncWrite, AsyncWriteExt, FutureExt, StreamExt};
use roomcast_hub::telemetry::ConnectionGauge;
use roomcast_hub::{Delivery, Subscription, Wire};
use tide::{Request, Response, StatusCode};

use crate::problem::Problem;
use crate::request::PeerWatch;
use crate::request::State;
use crate::stream::subscribe;
use crate::wire::StreamEvent;

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
    let subscription = subscribe(req, Wire::Sse, create).await?;
    let peer = req.ext::<PeerWatch>().cloned();
    if let Some(peer) = &peer {
        peer.bound_send_buffer();
    }
    let frames = Frames {
        first: Some(format!("retry: {RETRY_MS}\n\n").into()),
        subscription,
        heartbeat: Timer::interval(req.state().heartbeat),
        hung_up: hang_up_watch(peer),
        _open: req.state().streams.open(),
        _gauge: ConnectionGauge::new("sse"),
        ended: false,
    };
    let mut res = Response::new(StatusCode::Ok);
    res.set_content_type("text/event-stream; charset=utf-8");
    res.insert_header("Cache-Control", "no-cache");
    res.insert_header("X-Accel-Buffering", "no");
    res.insert_ext(Events(Mutex::new(Box::new(frames))));
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
        Delivery::Message(shared) => {
            shared.encoded(Wire::Sse, |m| frame(&StreamEvent::entry(m)).into())
        }
        other @ (Delivery::Presence(_)
        | Delivery::Gap(_)
        | Delivery::Joined(_)
        | Delivery::Left(_)
        | Delivery::Typing(_)
        | Delivery::Closed(_)) => frame(&StreamEvent::from(other)).into(),
    }
}

/// What one stream's frames come from. An idle stream sends a comment every heartbeat, so
/// proxies keep it and dead peers are noticed.
pub struct Frames {
    /// The `retry:` line, before anything else.
    first: Option<Bytes>,
    subscription: Subscription,
    heartbeat: Timer,
    /// Made once: a fresh watch per frame would cost a `recv` and an epoll change each.
    hung_up: Pin<Box<dyn Future<Output = ()> + Send>>,
    _open: crate::request::StreamGuard,
    _gauge: ConnectionGauge,
    ended: bool,
}

impl Frames {
    /// The next frame if one is ready, without waiting: touches no timer or socket, so a
    /// writer can drain a burst cheaply.
    fn try_frame(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.ended {
            return None;
        }
        let delivery = self.subscription.try_next()?;
        Some(self.frame(delivery))
    }

    /// The next frame, waiting for it (or for a heartbeat); `None` once the stream has ended
    /// or the client hung up.
    async fn next_frame(&mut self) -> Option<Bytes> {
        if let Some(frame) = self.try_frame() {
            return Some(frame);
        }
        if self.ended {
            return None;
        }
        let next = async { self.subscription.next().await.map(Wake::Delivery) };
        let heartbeat = async {
            self.heartbeat.next().await;
            Some(Wake::Heartbeat)
        };
        let hung_up = async {
            self.hung_up.as_mut().await;
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

/// Resolves when the client hangs up (never, without a watch).
fn hang_up_watch(peer: Option<PeerWatch>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        match peer {
            Some(peer) => peer.closed().await,
            None => std::future::pending().await,
        }
    })
}

/// Why a stream woke up.
enum Wake {
    Delivery(Delivery),
    Heartbeat,
}

/// The frames riding on a response to the connection loop. Response extensions must be
/// `Sync`; the frames are taken out once, so the mutex is never contended.
struct Events(Mutex<Box<Frames>>);

/// The event stream a response carries, if it is one.
pub fn take_events(res: &mut tide::http::Response) -> Option<Box<Frames>> {
    let events = res.ext_mut().remove::<Events>()?;
    Some(
        events
            .0
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner),
    )
}

/// Most bytes gathered into one write.
const MAX_WRITE_BYTES: usize = 64 * 1024;

/// The buffer an idle stream keeps between writes: a delivery or two. A larger one (a presence
/// snapshot of a full room, a burst) is let go once written, as an idle stream would otherwise
/// keep it for its life.
const KEPT_WRITE_BYTES: usize = 1024;

/// Writes the response `head`, then the frames as they come: each write carries every frame
/// ready by then, as one chunk (or, for HTTP/1.0, as bytes running until the close). Returns
/// when the stream ends or the client is gone.
pub async fn write<W: AsyncWrite + Unpin>(
    out: &mut W,
    mut buf: Vec<u8>,
    mut frames: Box<Frames>,
    chunked: bool,
) -> io::Result<()> {
    out.write_all(&buf).await?;
    let mut ready = Vec::new();
    loop {
        buf.clear();
        let Some(first) = frames.next_frame().await else {
            return if chunked {
                out.write_all(b"0\r\n\r\n").await
            } else {
                Ok(())
            };
        };
        let mut len = first.len();
        ready.push(first);
        while len < MAX_WRITE_BYTES {
            let Some(frame) = frames.try_frame() else {
                break;
            };
            len += frame.len();
            ready.push(frame);
        }
        let ended = frames.ended;
        if chunked {
            let _ = write!(Adapter(&mut buf), "{len:X}\r\n");
        }
        for frame in ready.drain(..) {
            buf.extend_from_slice(&frame);
        }
        if chunked {
            buf.extend_from_slice(b"\r\n");
            if ended {
                buf.extend_from_slice(b"0\r\n\r\n");
            }
        }
        out.write_all(&buf).await?;
        if ended {
            return Ok(());
        }
        // A burst's buffer is not kept by an idle stream.
        if buf.capacity() > KEPT_WRITE_BYTES {
            buf = Vec::with_capacity(256);
        }
        ready.shrink_to(8);
    }
}

/// `fmt::Write` into a byte buffer.
struct Adapter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Adapter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
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
            by_id: None,
        };
        assert_eq!(
            frame(&closed),
            "event: closed\ndata: {\"type\":\"closed\",\"reason\":\"expired\"}\n\n"
        );
    }
}
