//! WebSocket: the same events as SSE, one JSON text frame each, and submits coming in as JSON
//! frames answered by `ack` or `error` frames. Resume works as for SSE (`?since=`).
//!
//! The upgrade is done here with a current async-tungstenite rather than tide-websockets, whose
//! tungstenite 0.13 accepts 64 MiB messages from any client; here frames are capped at
//! [`MAX_FRAME_BYTES`].

use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use futures_lite::FutureExt;
use futures_util::{SinkExt, StreamExt};
use roomcast_core::{
    Attachment, CloseReason, Kind, MarkRead, OpenListener, Resume, Seq, Submit, Typing,
};
use roomcast_hub::telemetry::ConnectionGauge;
use roomcast_hub::{Delivery, Hub, Subscription, Wire};
use tide::http::upgrade::Connection;
use tide::{Request, Response, StatusCode};

use crate::problem::Problem;
use crate::request::moderation;
use crate::request::parse_json;
use crate::request::{State, caller, room_param, token};
use crate::stream::resume_point;
use crate::wire::{Change, ClientFrame, MessageBody, StreamEvent, change};

/// The largest frame or message a client may send.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Bytes read from a client at once.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// At most this many frames are gathered into one write.
const MAX_FRAMES_PER_WRITE: usize = 256;
/// Bytes written to the socket at once.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// The most a connection may have queued for a client that is not reading (its answers to
/// pings among them); past it, frames wait in place (a pong is replaced by the newest).
const MAX_WRITE_BUFFER_BYTES: usize = 256 * 1024;

fn has_token<S>(req: &Request<S>, header: &str, token: &str) -> bool {
    req.header(header).is_some_and(|values| {
        values.iter().any(|v| {
            v.as_str()
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// `GET /api/v1/rooms/{room}/ws`: checks the handshake and opens the listener before upgrading,
/// so refusals are ordinary problem responses.
pub async fn upgrade(req: Request<State>) -> Result<Response, Problem> {
    let upgrade_required =
        |detail: &str| Problem::new(StatusCode::UpgradeRequired, "websocket-required", detail);
    // tide answers HEAD with the GET route; an upgrade is a GET only (RFC 6455).
    if req.method() != tide::http::Method::Get {
        return Err(Problem::new(
            StatusCode::MethodNotAllowed,
            "method-not-allowed",
            "a WebSocket is opened with GET",
        ));
    }
    if !(has_token(&req, "Connection", "upgrade") && has_token(&req, "Upgrade", "websocket")) {
        return Err(upgrade_required(
            "this endpoint speaks WebSocket: send Connection: Upgrade and Upgrade: websocket",
        ));
    }
    if req.header("Sec-WebSocket-Version").map(|v| v.as_str()) != Some("13") {
        return Err(upgrade_required("only WebSocket version 13 is supported"));
    }
    let Some(key) = req
        .header("Sec-WebSocket-Key")
        .map(|v| v.as_str().to_owned())
    else {
        return Err(Problem::new(
            StatusCode::BadRequest,
            "websocket-key-missing",
            "Sec-WebSocket-Key is required",
        ));
    };
    // With credentials in the handshake (cookie, Authorization), refusals are HTTP answers;
    // without, the first frame must bring a token.
    let resume = resume_point(&req)?;
    let room = room_param(&req);
    let hub = req.state().hub.clone();
    let (subscription, user) = match token(&req) {
        Some(_) => {
            let caller = caller(&req)?;
            let open = listen(&caller.user, &room, resume);
            let subscription = Subscription::open(&hub, open, Wire::WebSocket)
                .await?
                .until_signed_out(hub.identity().session_end(&caller));
            (Some(subscription), Some(caller.user))
        }
        None => (None, None),
    };
    let heartbeat = req.state().heartbeat;
    let open = req.state().streams.open();
    if let Some(peer) = req.ext::<crate::request::PeerWatch>() {
        peer.bound_send_buffer();
    }

    let mut res = Response::new(StatusCode::SwitchingProtocols);
    res.insert_header("Upgrade", "websocket");
    res.insert_header("Connection", "Upgrade");
    res.insert_header("Sec-WebSocket-Accept", derive_accept_key(key.as_bytes()));
    let http: &mut tide::http::Response = res.as_mut();
    let upgraded = http.recv_upgrade().await;
    crate::runtime::spawn(async move {
        let _open = open;
        if let Some(connection) = upgraded.await {
            session(
                connection,
                subscription,
                Session {
                    hub,
                    user: user.unwrap_or_default(),
                    room,
                    heartbeat,
                },
                resume,
            )
            .await;
        }
    })
    .detach();
    Ok(res)
}

/// Who is on the other end, for submits.
struct Session {
    hub: Hub,
    user: String,
    room: String,
    heartbeat: Duration,
}

async fn session(
    connection: Connection,
    subscription: Option<Subscription>,
    mut who: Session,
    resume: Resume,
) {
    let _gauge = ConnectionGauge::new("ws");
    // Clients send little: a small read buffer (tungstenite's default is 128 KiB per
    // connection, zero-filled on every read).
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let socket = WebSocketStream::from_raw_socket(connection, Role::Server, Some(config)).await;
    let (mut sink, mut incoming) = socket.split();
    let mut subscription = match subscription {
        Some(subscription) => subscription,
        None => match first_frame_auth(&mut incoming, &mut who, resume).await {
            Ok(subscription) => subscription,
            Err(refused) => {
                let _ = sink.send(Message::text(refused.to_json())).await;
                let close = CloseFrame {
                    code: CloseCode::Policy,
                    reason: "not signed in".into(),
                };
                let _ = sink.send(Message::Close(Some(close))).await;
                return;
            }
        },
    };
    // Answers to submits (and to pings), from the reading half to the writing half. Bounded:
    // while the writer cannot get rid of them (a client that sends and never reads), the
    // reader stops reading.
    let (answers, answered) = async_channel::bounded::<Answer>(16);
    let heartbeat_every = who.heartbeat;

    // Its own task: polled only when the client sends something. (In one task with the
    // writer, every delivery would poll the socket for reading too: a `recv` per message.)
    // When it ends (the client closed), `answers` closes and the writer stops.
    let reading = crate::runtime::spawn(async move {
        while let Some(frame) = incoming.next().await {
            let frame = match frame {
                Ok(frame) => frame,
                // A frame or message over the limit: say so with 1009 (RFC 6455 7.4.1).
                Err(WsError::Capacity(_)) => {
                    let _ = answers.send(Answer::Close(CloseCode::Size)).await;
                    break;
                }
                Err(_) => break,
            };
            let answer = match frame {
                Message::Text(text) => match submit(&who, text.as_bytes()).await {
                    Some(answer) => Answer::Event(Box::new(answer)),
                    // Typing is not answered (unless refused).
                    None => continue,
                },
                Message::Binary(_) => Answer::Event(Box::new(refusal(
                    None,
                    "binary-frame",
                    "send JSON in text frames".into(),
                ))),
                Message::Close(_) => break,
                // tungstenite has queued the pong: the writer flushes it.
                Message::Ping(_) => Answer::Pong,
                Message::Pong(_) | Message::Frame(_) => continue,
            };
            if answers.send(answer).await.is_err() {
                break;
            }
        }
    });
    let writing = async {
        let mut heartbeat = async_io::Timer::interval(heartbeat_every);
        loop {
            let next = async { Some(subscription.next().await.map(Delivered::Event)) };
            let answer = async { Some(answered.recv().await.ok().map(Delivered::Answer)) };
            let beat = async {
                heartbeat.next().await;
                None
            };
            let mut end = None;
            let mut frames = vec![match next.or(answer).or(beat).await {
                None => Message::Ping(Vec::new().into()),
                Some(None) => {
                    end = Some(CloseCode::Normal);
                    Message::Close(None)
                }
                Some(Some(Delivered::Answer(Answer::Event(event)))) => {
                    Message::text(event.to_json())
                }
                Some(Some(Delivered::Answer(Answer::Close(code)))) => {
                    let close = CloseFrame {
                        code,
                        reason: "message too big".into(),
                    };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    return;
                }
                Some(Some(Delivered::Answer(Answer::Pong))) => {
                    // A ping was answered: send the pong before reading on.
                    if sink.flush().await.is_err() {
                        return;
                    }
                    continue;
                }
                Some(Some(Delivered::Event(delivery))) => ws_frame(delivery, &mut end),
            }];
            // Everything else already waiting goes out in the same write.
            while end.is_none() && frames.len() < MAX_FRAMES_PER_WRITE {
                match subscription.try_next() {
                    Some(delivery) => frames.push(ws_frame(delivery, &mut end)),
                    None => break,
                }
            }
            // The socket's write timeout cuts off a client that stops reading.
            let sent = async {
                for frame in frames {
                    sink.feed(frame).await?;
                }
                sink.flush().await
            };
            if sent.await.is_err() {
                return;
            }
            if let Some(code) = end {
                let close = CloseFrame {
                    code,
                    reason: "stream ended".into(),
                };
                let _ = sink.send(Message::Close(Some(close))).await;
                return;
            }
        }
    };
    writing.await;
    drop(reading);
}

/// A delivery's text frame (a message's JSON is made once and shared by all its listeners);
/// sets `end` if the stream ends after it.
fn ws_frame(delivery: Delivery, end: &mut Option<CloseCode>) -> Message {
    match &delivery {
        Delivery::Closed(CloseReason::ShuttingDown) => *end = Some(CloseCode::Away),
        Delivery::Closed(
            CloseReason::Deleted { .. }
            | CloseReason::Expired
            | CloseReason::Removed
            | CloseReason::Refused(_)
            | CloseReason::Reset
            | CloseReason::SignedOut
            | CloseReason::SessionExpired
            | CloseReason::Kicked { .. }
            | CloseReason::Banned { .. },
        ) => *end = Some(CloseCode::Normal),
        Delivery::Presence(_)
        | Delivery::Gap(_)
        | Delivery::Message(_)
        | Delivery::Joined(_)
        | Delivery::Left(_)
        | Delivery::Typing(_) => {}
    }
    match delivery {
        Delivery::Message(shared) => {
            let json = shared.encoded(Wire::WebSocket, |m| StreamEvent::entry(m).to_json().into());
            // The JSON was made from a `String`, so it is UTF-8.
            Utf8Bytes::try_from(json).map_or_else(|_| Message::text(""), Message::Text)
        }
        other @ (Delivery::Presence(_)
        | Delivery::Gap(_)
        | Delivery::Joined(_)
        | Delivery::Left(_)
        | Delivery::Typing(_)
        | Delivery::Closed(_)) => Message::text(StreamEvent::from(other).to_json()),
    }
}

enum Delivered {
    Event(Delivery),
    Answer(Answer),
}

/// What the reading half asks the writing half to send.
enum Answer {
    /// An answer to a client frame (boxed: an entry's body is large beside the others).
    Event(Box<StreamEvent>),
    /// Flush the pong tungstenite queued.
    Pong,
    /// Close with this code: the client broke a rule of the protocol.
    Close(CloseCode),
}

fn refusal(reference: Option<String>, code: &str, detail: String) -> StreamEvent {
    StreamEvent::Error {
        reference,
        code: code.into(),
        detail,
    }
}

/// A refusal (core's, identity's, the hub's) as an `error` frame.
fn refused(reference: Option<String>, e: impl Into<Problem>) -> StreamEvent {
    let problem = e.into();
    refusal(reference, problem.code, problem.detail)
}

/// How long a connection without credentials may take to send its `auth` frame.
const AUTH_WITHIN: Duration = Duration::from_secs(10);

/// Reads the first frame as `{"type":"auth","token":…}`, verifies it and opens the listener.
async fn first_frame_auth(
    incoming: &mut (
             impl futures_util::Stream<Item = Result<Message, async_tungstenite::tungstenite::Error>>
             + Unpin
         ),
    who: &mut Session,
    resume: Resume,
) -> Result<Subscription, StreamEvent> {
    let unauthenticated = |detail: String| refusal(None, "unauthenticated", detail);
    let first = async { incoming.next().await }.or(async {
        async_io::Timer::after(AUTH_WITHIN).await;
        None
    });
    let Some(Ok(Message::Text(text))) = first.await else {
        return Err(unauthenticated(
            "send {\"type\":\"auth\",\"token\":…} first (or connect with the session cookie or Authorization)".into(),
        ));
    };
    let token = match parse_json(text.as_bytes()) {
        Ok(ClientFrame::Auth { token }) => token,
        Ok(_) => {
            return Err(unauthenticated(
                "the first frame must be an auth frame".into(),
            ));
        }
        Err(problem) => return Err(refusal(None, problem.code, problem.detail)),
    };
    let caller = who
        .hub
        .identity()
        .verify(&token)
        .map_err(|e| refused(None, e))?;
    who.user = caller.user.clone();
    let subscription = Subscription::open(
        &who.hub,
        listen(&who.user, &who.room, resume),
        Wire::WebSocket,
    )
    .await
    .map_err(|e| refused(None, e))?;
    Ok(subscription.until_signed_out(who.hub.identity().session_end(&caller)))
}

/// Opens `user`'s listener on `room` (never creating it).
fn listen(user: &str, room: &str, resume: Resume) -> OpenListener {
    OpenListener {
        user: user.to_owned(),
        room: room.to_owned(),
        resume,
        create_if_missing: false,
        replacing: None,
    }
}

/// Handles one client frame; the answer says what happened (a typing signal is answered
/// only if refused).
async fn submit(who: &Session, text: &[u8]) -> Option<StreamEvent> {
    let frame: ClientFrame = match parse_json(text) {
        Ok(frame) => frame,
        Err(problem) => return Some(refusal(None, problem.code, problem.detail)),
    };
    let (user, room) = (who.user.clone(), who.room.clone());
    let (submit, reference) = match frame {
        ClientFrame::Typing => {
            let typing = Typing { user, room };
            return who.hub.ask(typing).await.err().map(|e| refused(None, e));
        }
        ClientFrame::Read { seq, reference } => {
            let mark = MarkRead {
                user,
                room,
                seq: Seq(seq),
            };
            return Some(match who.hub.ask(mark).await {
                Ok(unread) => StreamEvent::Read {
                    reference,
                    up_to: unread.up_to.0,
                    unread: unread.count,
                },
                Err(e) => refused(reference, e),
            });
        }
        ClientFrame::Auth { .. } => {
            return Some(refusal(
                None,
                "already-signed-in",
                "this connection is signed in already".into(),
            ));
        }
        ClientFrame::Submit {
            text,
            idempotency_key,
            reply_to,
            attachments,
            reference,
        } => {
            let kind = Kind::Post {
                reply_to: reply_to.map(Seq),
                attachments: attachments.into_iter().map(Attachment::named).collect(),
            };
            let submit = Submit {
                idempotency_key,
                ..Submit::new(user, room, text, kind)
            };
            (submit, reference)
        }
        ClientFrame::Edit {
            of,
            text,
            reference,
        } => (
            Submit::new(user, room, text, Kind::Edit { of: Seq(of) }),
            reference,
        ),
        ClientFrame::Delete { of, reference } => (
            Submit::new(user, room, String::new(), Kind::Delete { of: Seq(of) }),
            reference,
        ),
        ClientFrame::Moderate {
            user: target,
            action,
            seconds,
            reference,
        } => match moderation(&who.hub, &target, &action, seconds).await {
            Ok(kind) => (Submit::new(user, room, String::new(), kind), reference),
            Err(e) => return Some(refused(reference, e)),
        },
        ClientFrame::React {
            of,
            emoji,
            added,
            reference,
        } => match change(
            of,
            Change::React {
                emoji: &emoji,
                added,
            },
        ) {
            Ok(kind) => (Submit::new(user, room, String::new(), kind), reference),
            Err(e) => return Some(refused(reference, e)),
        },
    };
    Some(match who.hub.submit(submit).await {
        Ok(done) => StreamEvent::Ack {
            reference,
            message: MessageBody::from(&*done.message),
            duplicate: done.duplicate,
        },
        Err(e) => refused(reference, e),
    })
}
