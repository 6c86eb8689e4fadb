//! The clients the generator speaks as: listeners and publishers for each kind of target.
//!
//! | target     | listens with                          | publishes with             |
//! |------------|---------------------------------------|----------------------------|
//! | `sse`      | `GET /api/v1/rooms/{room}/events`     | `POST .../messages`        |
//! | `ws`       | `GET /api/v1/rooms/{room}/ws`         | `POST .../messages`        |
//! | `grpc`     | `Stream`                              | `Submit`                   |
//! | `socketio` | Engine.IO v4 over WebSocket, `join`   | `publish` with an ack      |
//! | `floor`    | a plain socket the floor writes to    | a `PUB` line               |
//!
//! Every roomcast client signs in as a guest first, as a real one would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::{TokioAdapter, client_async_with_config};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures_util::{FutureExt, SinkExt, StreamExt};
use roomcast_proto::v1 as pb;
use roomcast_proto::v1::chat_client::ChatClient;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use crate::wire::{Seen, SseFrames, classify};

/// Which server, and so which protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// roomcast-smol, Server-Sent Events.
    Sse,
    /// roomcast-smol, WebSocket.
    Ws,
    /// roomcast-tokio, gRPC.
    Grpc,
    /// The Socket.IO 4 peer in `bench/peers/socketio`.
    Socketio,
    /// The floor: a minimal writer of the same bytes to plain sockets.
    Floor,
}

impl Kind {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sse => "sse",
            Kind::Ws => "ws",
            Kind::Grpc => "grpc",
            Kind::Socketio => "socketio",
            Kind::Floor => "floor",
        }
    }
}

type Ws = WebSocketStream<TokioAdapter<TcpStream>>;
type Auth = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

/// Bytes read from a socket at once.
const READ_BYTES: usize = 16 * 1024;
/// Most WebSocket messages handled per wake-up.
const WS_BATCH: usize = 256;

/// One listener, live (its presence snapshot or join acknowledgement has arrived).
pub enum Listener {
    /// SSE, or the floor's plain stream.
    Http {
        stream: TcpStream,
        frames: SseFrames,
        buf: Vec<u8>,
    },
    /// roomcast's WebSocket, or Socket.IO's.
    Ws { ws: Box<Ws>, socketio: bool },
    /// A gRPC stream (on its own connection).
    Grpc(Box<tonic::Streaming<pb::StreamEvent>>),
}

/// Connects on loopback; a small receive buffer makes a client that stops reading visible to
/// the server quickly (the S1 scenario's stalled listener).
async fn tcp(addr: SocketAddr, small_receive_buffer: bool) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if small_receive_buffer {
        socket.set_recv_buffer_size(4096)?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Listener {
    /// Opens a listener on `room` as `user` and returns once it is live.
    pub async fn open(
        kind: Kind,
        addr: SocketAddr,
        room: &str,
        user: &str,
        small_receive_buffer: bool,
    ) -> anyhow::Result<Listener> {
        let mut listener = match kind {
            Kind::Sse | Kind::Floor => {
                let mut stream = tcp(addr, small_receive_buffer).await?;
                let head = if kind == Kind::Floor {
                    format!("GET /floor/{room} HTTP/1.1\r\nHost: bench\r\n\r\n")
                } else {
                    let token = rest_guest(addr, user).await?;
                    format!(
                        "GET /api/v1/rooms/{room}/events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
                    )
                };
                stream.write_all(head.as_bytes()).await?;
                let (chunked, rest) = read_head(&mut stream).await?;
                let mut frames = SseFrames::new(chunked);
                let mut live = false;
                frames.push(&rest, |f| live |= is_live(f));
                let mut listener = Listener::Http {
                    stream,
                    frames,
                    buf: vec![0; READ_BYTES],
                };
                if !live {
                    listener.read_until_live().await?;
                }
                return Ok(listener);
            }
            Kind::Ws => {
                let token = rest_guest(addr, user).await?;
                let mut request =
                    format!("ws://{addr}/api/v1/rooms/{room}/ws").into_client_request()?;
                request
                    .headers_mut()
                    .insert("Authorization", format!("Bearer {token}").parse()?);
                let (ws, _) = client_async_with_config(
                    request,
                    tcp(addr, small_receive_buffer).await?,
                    ws_config(),
                )
                .await?;
                Listener::Ws {
                    ws: Box::new(ws),
                    socketio: false,
                }
            }
            Kind::Socketio => {
                let mut ws = socketio_connect(addr, small_receive_buffer).await?;
                ws.send(Message::text(format!("420{}", json!(["join", room]))))
                    .await?;
                socketio_until(&mut ws, "430").await?;
                return Ok(Listener::Ws {
                    ws: Box::new(ws),
                    socketio: true,
                });
            }
            Kind::Grpc => {
                let mut client = ChatClient::connect(format!("http://{addr}")).await?;
                let auth = grpc_guest(&mut client, addr, user).await?;
                let request = authorized(
                    &auth,
                    pb::StreamRequest {
                        room: room.into(),
                        resume_after: None,
                    },
                );
                let mut stream = client.stream(request).await?.into_inner();
                stream.message().await?.context("a presence snapshot")?;
                return Ok(Listener::Grpc(Box::new(stream)));
            }
        };
        listener.read_until_live().await?;
        Ok(listener)
    }

    async fn read_until_live(&mut self) -> anyhow::Result<()> {
        let mut live = false;
        while !live {
            match self {
                Listener::Http {
                    stream,
                    frames,
                    buf,
                } => {
                    let n = stream.read(buf).await?;
                    ensure!(n > 0, "the stream ended before it was live");
                    frames.push(&buf[..n], |f| live |= is_live(f));
                }
                Listener::Ws { ws, .. } => {
                    let text = ws.next().await.context("closed before live")??;
                    live = is_live(text.to_text().unwrap_or_default().as_bytes());
                }
                Listener::Grpc(_) => live = true,
            }
        }
        Ok(())
    }

    /// Waits for what arrives next and hands every event in it to `each`; false once the
    /// stream has ended.
    pub async fn read(&mut self, mut each: impl FnMut(Seen)) -> bool {
        match self {
            Listener::Http {
                stream,
                frames,
                buf,
            } => match stream.read(buf).await {
                Ok(0) | Err(_) => false,
                Ok(n) => {
                    frames.push(&buf[..n], |f| each(classify(f)));
                    !frames.ended
                }
            },
            Listener::Ws { ws, socketio } => {
                let mut next = ws.next().await;
                for _ in 0..WS_BATCH {
                    match next {
                        Some(Ok(Message::Text(text))) => {
                            // Engine.IO's ping: answer, or the peer drops the connection.
                            if *socketio && text.as_str() == "2" {
                                if ws.send(Message::text("3")).await.is_err() {
                                    return false;
                                }
                            } else {
                                each(classify(text.as_bytes()));
                            }
                        }
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return false,
                        Some(Ok(_)) => {}
                    }
                    match ws.next().now_or_never() {
                        Some(more) => next = more,
                        None => break,
                    }
                }
                true
            }
            Listener::Grpc(stream) => {
                let mut next = stream.message().await;
                for _ in 0..WS_BATCH {
                    match next {
                        Ok(Some(event)) => each(grpc_seen(event)),
                        Ok(None) | Err(_) => return false,
                    }
                    match stream.message().now_or_never() {
                        Some(more) => next = more,
                        None => break,
                    }
                }
                true
            }
        }
    }

    /// The local port of its connection, where there is one socket to name.
    pub fn local_port(&self) -> Option<u16> {
        match self {
            Listener::Http { stream, .. } => stream.local_addr().ok().map(|a| a.port()),
            Listener::Ws { ws, .. } => ws.get_ref().get_ref().local_addr().ok().map(|a| a.port()),
            Listener::Grpc(_) => None,
        }
    }
}

/// Whether a frame says the listener is live: roomcast's presence snapshot, the floor's hello.
fn is_live(frame: &[u8]) -> bool {
    memchr::memmem::find(frame, b"\"presence\"").is_some()
        || memchr::memmem::find(frame, b"snapshot").is_some()
        || frame.starts_with(b": live")
}

fn grpc_seen(event: pb::StreamEvent) -> Seen {
    use pb::stream_event::Event;
    match event.event {
        Some(Event::Edited(m) | Event::Deleted(m) | Event::Reaction(m) | Event::Moderation(m)) => {
            Seen::Message {
                seq: m.seq,
                due_micros: None,
            }
        }
        Some(Event::Message(m)) => Seen::Message {
            seq: m.seq,
            due_micros: m
                .text
                .strip_prefix("t=")
                .and_then(|t| t.split(' ').next())
                .and_then(|t| t.parse().ok()),
        },
        Some(Event::Gap(g)) => Seen::Gap {
            first_held: g.first_held,
        },
        Some(Event::Closed(_)) => Seen::Closed,
        _ => Seen::Other,
    }
}

/// Reads an HTTP response head; returns whether the body is chunked, and body bytes read past it.
async fn read_head(stream: &mut TcpStream) -> anyhow::Result<(bool, Vec<u8>)> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        ensure!(n > 0, "the connection closed during the response head");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = memchr::memmem::find(&head, b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            ensure!(
                text.starts_with("http/1.1 200"),
                "refused: {}",
                text.lines().next().unwrap_or_default()
            );
            return Ok((
                text.contains("transfer-encoding: chunked"),
                head[end + 4..].to_vec(),
            ));
        }
        ensure!(head.len() < 64 * 1024, "a response head over 64 KiB");
    }
}

/// tungstenite zero-fills its whole read buffer on every read: keep it to what one read brings.
fn ws_config() -> Option<WebSocketConfig> {
    Some(WebSocketConfig::default().read_buffer_size(READ_BYTES))
}

/// Engine.IO v4 over WebSocket, connected to the default namespace.
async fn socketio_connect(addr: SocketAddr, small_receive_buffer: bool) -> anyhow::Result<Ws> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) =
        client_async_with_config(url, tcp(addr, small_receive_buffer).await?, ws_config()).await?;
    socketio_until(&mut ws, "0").await?;
    ws.send(Message::text("40")).await?;
    socketio_until(&mut ws, "40").await?;
    Ok(ws)
}

/// Reads until a packet starting with `prefix` (answering pings); returns it.
async fn socketio_until(ws: &mut Ws, prefix: &str) -> anyhow::Result<String> {
    loop {
        match ws.next().await.context("Socket.IO closed")?? {
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).await?,
            Message::Text(t) if t.starts_with(prefix) => return Ok(t.to_string()),
            Message::Close(_) => bail!("Socket.IO closed"),
            Message::Text(_)
            | Message::Binary(_)
            | Message::Ping(_)
            | Message::Pong(_)
            | Message::Frame(_) => {}
        }
    }
}

/// One publishing connection.
pub enum Publisher {
    /// HTTP/1.1 keep-alive with a guest token (for `sse` and `ws`).
    Rest(BufReader<TcpStream>, String),
    /// gRPC with a guest token.
    Grpc(ChatClient<tonic::transport::Channel>, Auth),
    /// Socket.IO; acks are numbered.
    Socketio(Box<Ws>, u64),
    /// The floor's publish connection.
    Floor(TcpStream),
}

impl Publisher {
    /// Connects and signs in as `user`.
    pub async fn connect(kind: Kind, addr: SocketAddr, user: &str) -> anyhow::Result<Publisher> {
        Ok(match kind {
            Kind::Sse | Kind::Ws => Publisher::Rest(
                BufReader::new(tcp(addr, false).await?),
                rest_guest(addr, user).await?,
            ),
            Kind::Grpc => {
                let mut client = ChatClient::connect(format!("http://{addr}")).await?;
                let auth = grpc_guest(&mut client, addr, user).await?;
                Publisher::Grpc(client, auth)
            }
            Kind::Socketio => {
                Publisher::Socketio(Box::new(socketio_connect(addr, false).await?), 0)
            }
            Kind::Floor => Publisher::Floor(tcp(addr, false).await?),
        })
    }

    /// Creates a room (Socket.IO and the floor have none to create).
    pub async fn create_room(&mut self, room: &str) -> anyhow::Result<()> {
        match self {
            Publisher::Rest(conn, token) => {
                let body = json!({ "room": room }).to_string();
                let (status, _) =
                    request(conn, "POST", "/api/v1/rooms", &body, Some(token)).await?;
                ensure!(status == 201, "room {room} not created: {status}");
            }
            Publisher::Grpc(client, auth) => {
                let request = authorized(
                    auth,
                    pb::CreateRoomRequest {
                        room: room.into(),
                        private: false,
                    },
                );
                client.create_room(request).await?;
            }
            Publisher::Socketio(..) | Publisher::Floor(_) => {}
        }
        Ok(())
    }

    /// Reads the newest page of `room`'s history over REST; how many messages it held.
    pub async fn history(&mut self, room: &str) -> anyhow::Result<usize> {
        let Publisher::Rest(conn, token) = self else {
            anyhow::bail!("history is read over REST");
        };
        let path = format!("/api/v1/rooms/{room}/messages?limit=50");
        let (status, body) = request(conn, "GET", &path, "", Some(token)).await?;
        ensure!(status == 200, "history of {room}: {status}");
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        Ok(page["messages"].as_array().map_or(0, Vec::len))
    }

    /// Adds `user`'s `emoji` to message `seq` of `room`; true once the server answered that it
    /// was added (201). Only roomcast has reactions.
    pub async fn react(&mut self, room: &str, seq: u64, emoji: &str) -> bool {
        match self {
            Publisher::Rest(conn, token) => {
                let emoji: String = emoji.bytes().map(|b| format!("%{b:02X}")).collect();
                let path = format!("/api/v1/rooms/{room}/messages/{seq}/reactions/{emoji}");
                matches!(
                    request(conn, "PUT", &path, "", Some(token)).await,
                    Ok((201, _))
                )
            }
            Publisher::Grpc(client, auth) => {
                let request = authorized(
                    auth,
                    pb::ReactRequest {
                        room: room.into(),
                        seq,
                        emoji: emoji.into(),
                        remove: false,
                    },
                );
                client
                    .react(request)
                    .await
                    .is_ok_and(|r| !r.into_inner().duplicate)
            }
            Publisher::Socketio(..) | Publisher::Floor(_) => false,
        }
    }

    /// Publishes `text` to `room`; true once the server acknowledged it (the floor has no
    /// acknowledgements: true once written).
    pub async fn post(&mut self, room: &str, text: &str) -> bool {
        match self {
            Publisher::Rest(conn, token) => {
                let body = json!({ "text": text }).to_string();
                let path = format!("/api/v1/rooms/{room}/messages");
                matches!(
                    request(conn, "POST", &path, &body, Some(token)).await,
                    Ok((201, _))
                )
            }
            Publisher::Grpc(client, auth) => {
                let request = authorized(
                    auth,
                    pb::SubmitRequest {
                        room: room.into(),
                        text: text.into(),
                        idempotency_key: String::new(),
                        reply_to: 0,
                        attachments: Vec::new(),
                    },
                );
                client.submit(request).await.is_ok()
            }
            Publisher::Socketio(ws, ack) => {
                *ack += 1;
                let packet = format!("42{ack}{}", json!(["publish", room, text]));
                ws.send(Message::text(packet)).await.is_ok()
                    && socketio_until(ws, &format!("43{ack}")).await.is_ok()
            }
            Publisher::Floor(stream) => stream
                .write_all(format!("PUB {room} {text}\n").as_bytes())
                .await
                .is_ok(),
        }
    }
}

/// A minimal HTTP/1.1 request on a kept-alive connection; returns the status and body.
pub async fn request(
    stream: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let message = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.get_mut().write_all(message.as_bytes()).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("a status line")?;
    let mut length = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse()?;
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok((status, body))
}

/// Tokens by server and user: a guest name belongs to one guest while its token lives, so a
/// client that reconnects keeps its token, as a real one does.
fn tokens() -> &'static Mutex<HashMap<(SocketAddr, String), String>> {
    static TOKENS: OnceLock<Mutex<HashMap<(SocketAddr, String), String>>> = OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

fn cached_token(addr: SocketAddr, nickname: &str) -> Option<String> {
    tokens()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&(addr, nickname.to_owned()))
        .cloned()
}

/// Forgets every token kept for `addr`: a new server there (a port the OS handed out again)
/// has another secret, and would refuse them.
pub fn forget_tokens(addr: SocketAddr) {
    tokens()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(at, _), _| *at != addr);
}

fn keep_token(addr: SocketAddr, nickname: &str, token: &str) {
    tokens()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert((addr, nickname.to_owned()), token.to_owned());
}

/// A guest token for `nickname` through the JSON API (once per server and name).
pub async fn rest_guest(addr: SocketAddr, nickname: &str) -> anyhow::Result<String> {
    if let Some(token) = cached_token(addr, nickname) {
        return Ok(token);
    }
    let mut conn = BufReader::new(tcp(addr, false).await?);
    let body = json!({ "nickname": nickname }).to_string();
    let (status, answer) = request(&mut conn, "POST", "/api/v1/auth/guest", &body, None).await?;
    ensure!(status == 201, "no guest token for {nickname}: {status}");
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    let token = answer["token"].as_str().context("a token")?.to_owned();
    keep_token(addr, nickname, &token);
    Ok(token)
}

/// A guest token for `nickname` through gRPC `Guest` (once per server and name), as
/// `authorization` metadata.
async fn grpc_guest(
    client: &mut ChatClient<tonic::transport::Channel>,
    addr: SocketAddr,
    nickname: &str,
) -> anyhow::Result<Auth> {
    let token = match cached_token(addr, nickname) {
        Some(token) => token,
        None => {
            let token = client
                .guest(pb::GuestRequest {
                    nickname: nickname.into(),
                })
                .await?
                .into_inner()
                .token;
            keep_token(addr, nickname, &token);
            token
        }
    };
    Ok(format!("Bearer {token}").parse()?)
}

fn authorized<T>(auth: &Auth, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(roomcast_proto::AUTHORIZATION_METADATA, auth.clone());
    request
}

/// Retries `open` a few times: under a connection storm the kernel's accept queue can refuse.
pub async fn with_retries<T, F, Fut>(mut open: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut last = None;
    for attempt in 0..5u64 {
        match open().await {
            Ok(value) => return Ok(value),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
}
