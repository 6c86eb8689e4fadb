//! Server-Sent Events: `id:` is the room sequence number, `event:` the kind, `data:` JSON.
//!
//! A writer task turns the subscription into frames and writes them into a bounded pipe that
//! is the response body. Frames that pile up while the socket is busy leave in one write. A
//! client that stops reading fills the pipe, the writer stops pulling, and the subscription
//! falls behind and later resyncs from history: the room never waits.

use std::fmt::Write as _;
use std::time::Duration;

use futures_lite::{AsyncWriteExt, FutureExt, io::BufReader};
use roomcast_hub::telemetry::ConnectionGauge;
use roomcast_hub::{Delivery, Subscription};
use tide::{Body, Request, Response, StatusCode};

use crate::app::State;
use crate::problem::Problem;
use crate::server::PeerWatch;
use crate::stream::subscribe;
use crate::wire::StreamEvent;

/// The reconnect delay suggested to browsers, in milliseconds.
const RETRY_MS: u32 = 2000;
/// Bytes buffered between the writer task and the socket.
const PIPE_BYTES: usize = 4 * 1024;

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
    let (reader, writer) = piper::pipe(PIPE_BYTES);
    let open = req.state().streams.open();
    let peer = req.ext::<PeerWatch>().cloned();
    let heartbeat = req.state().heartbeat;
    crate::server::spawn(async move {
        let _open = open;
        let hung_up = async {
            match peer {
                Some(peer) => peer.closed().await,
                None => std::future::pending().await,
            }
        };
        write_events(subscription, writer, heartbeat)
            .or(hung_up)
            .await;
    })
    .detach();
    let mut res = Response::new(StatusCode::Ok);
    res.set_content_type("text/event-stream; charset=utf-8");
    res.insert_header("Cache-Control", "no-cache");
    res.insert_header("X-Accel-Buffering", "no");
    res.set_body(Body::from_reader(
        BufReader::with_capacity(512, reader),
        None,
    ));
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

/// Writes the stream; an idle stream sends a comment every `heartbeat`, so proxies keep it and
/// dead peers are noticed.
async fn write_events(mut subscription: Subscription, mut out: piper::Writer, heartbeat: Duration) {
    let _gauge = ConnectionGauge::new("sse");
    let mut pending = format!("retry: {RETRY_MS}\n\n");
    loop {
        // A closed pipe (the client went away) accepts nothing: stop, which closes the listener.
        if out.write_all(pending.as_bytes()).await.is_err() {
            return;
        }
        pending.clear();
        let next = async { Some(subscription.next().await) };
        let heartbeat = async {
            async_io::Timer::after(heartbeat).await;
            None
        };
        match next.or(heartbeat).await {
            None => pending.push_str(": keep-alive\n\n"),
            Some(None) => return,
            Some(Some(delivery)) => {
                let last = matches!(delivery, Delivery::Closed(_));
                pending.push_str(&frame(&StreamEvent::from(delivery)));
                if last {
                    let _ = out.write_all(pending.as_bytes()).await;
                    return;
                }
            }
        }
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
