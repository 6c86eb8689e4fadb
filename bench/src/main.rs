//! `roomcast-load`: drives a running roomcast server as real clients do, and reports what it
//! measured as a JSON line and a markdown table row.
//!
//! - `sse-fanout`: N SSE listeners on one room; messages published through REST on an
//!   open-loop schedule (each carries its scheduled time, so a slow server cannot hide queueing
//!   delay); end-to-end latency into an HDR histogram; deliveries, gaps and losses counted.
//! - `grpc-fanout`: the same with gRPC `Stream` listeners and `Submit` publishers.
//! - `ingress`: N concurrent submitters (closed loop, one connection each) posting through REST
//!   or gRPC as fast as they are answered; acknowledgements per second and acknowledgement
//!   latency (with a store, an acknowledgement means committed to disk).
//! - `sse-idle`: N idle SSE connections; the server's resident memory before and after, per
//!   connection (give `--server-pid`).
//!
//! Loopback only, bounded in connections and time. Run it as its own process: one process may
//! hold at most 20,000 open files here, so server and generator must not share one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use roomcast_proto::v1 as pb;
use roomcast_proto::v1::chat_client::ChatClient;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(
    name = "roomcast-load",
    version,
    about = "Load generator for roomcast servers"
)]
struct Cli {
    /// The server's address (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080", global = true)]
    addr: SocketAddr,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Fan-out to SSE listeners in one room at a fixed publish rate (publishing through REST).
    SseFanout(FanoutArgs),
    /// Fan-out to gRPC streams in one room (each on its own connection), publishing with Submit.
    GrpcFanout(FanoutArgs),
    /// Concurrent submitters posting as fast as they are acknowledged (start the server with
    /// `--rate-burst 0`).
    Ingress {
        /// Publish through REST (`rest`) or gRPC Submit (`grpc`).
        #[arg(long, default_value = "rest")]
        via: Via,
        /// Concurrent submitters, each on its own connection.
        #[arg(long, default_value_t = 64)]
        submitters: usize,
        /// Rooms the submitters are spread over.
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// How long to submit, in seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Bytes per message.
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Hold idle SSE connections and report the server's memory per connection.
    SseIdle {
        /// Idle connections to open.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Rooms the connections are spread over (presence in one huge room makes every
        /// join a fan-out to everyone, which is not what this measures).
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// The server's process id, to read its resident memory.
        #[arg(long)]
        server_pid: u32,
    },
}

/// How ingress submits.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Via {
    /// `POST /api/v1/rooms/{room}/messages`.
    Rest,
    /// gRPC `Submit`.
    Grpc,
}

/// The fan-out scenarios' shape.
#[derive(clap::Args)]
struct FanoutArgs {
    /// Listeners on the room.
    #[arg(long, default_value_t = 1000)]
    listeners: usize,
    /// Messages published per second (open loop).
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// How long to publish, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent publishing connections.
    #[arg(long, default_value_t = 8)]
    publishers: usize,
    /// Bytes of padding per message (on top of the timestamp).
    #[arg(long, default_value_t = 64)]
    size: usize,
}

fn ensure_loopback(addr: SocketAddr) -> anyhow::Result<()> {
    ensure!(
        addr.ip().is_loopback(),
        "roomcast-load only targets loopback addresses, not {addr}"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ensure_loopback(cli.addr)?;
    match cli.scenario {
        Scenario::SseFanout(args) => fanout(Transport::Sse, cli.addr, args).await,
        Scenario::GrpcFanout(args) => fanout(Transport::Grpc, cli.addr, args).await,
        Scenario::Ingress {
            via,
            submitters,
            rooms,
            seconds,
            size,
        } => {
            let transport = match via {
                Via::Rest => Transport::Sse,
                Via::Grpc => Transport::Grpc,
            };
            ingress(transport, cli.addr, submitters, rooms, seconds, size).await
        }
        Scenario::SseIdle {
            connections,
            rooms,
            server_pid,
        } => sse_idle(cli.addr, connections, rooms, server_pid).await,
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A minimal HTTP/1.1 request on a kept-alive connection; returns the status.
async fn request(
    stream: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .get_mut()
        .write_all(format!("{head}{body}").as_bytes())
        .await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("status line")?;
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

/// A guest token for `nickname` through the JSON API (each simulated client signs in).
async fn rest_guest(addr: SocketAddr, nickname: &str) -> anyhow::Result<String> {
    let mut conn = connect(addr).await?;
    let body = json!({ "nickname": nickname }).to_string();
    let (status, answer) = request(&mut conn, "POST", "/api/v1/auth/guest", &body, None).await?;
    ensure!(status == 201, "no guest token for {nickname}: {status}");
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    Ok(answer["token"].as_str().context("a token")?.to_owned())
}

/// A guest token for `nickname` through the gRPC `Guest` call.
async fn grpc_guest(
    client: &mut ChatClient<tonic::transport::Channel>,
    nickname: &str,
) -> anyhow::Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
    let token = client
        .guest(pb::GuestRequest {
            nickname: nickname.into(),
        })
        .await?
        .into_inner()
        .token;
    Ok(format!("Bearer {token}").parse()?)
}

/// `message` with the `authorization` metadata.
fn authorized<T>(
    auth: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    message: T,
) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert(roomcast_proto::AUTHORIZATION_METADATA, auth.clone());
    req
}

async fn connect(addr: SocketAddr) -> anyhow::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(BufReader::new(stream))
}

/// Opens an SSE stream and reads through the presence snapshot, so the listener is live.
async fn open_sse(addr: SocketAddr, room: &str, user: &str) -> anyhow::Result<SseReader> {
    let token = rest_guest(addr, user).await?;
    let mut stream = connect(addr).await?;
    let head = format!(
        "GET /api/v1/rooms/{room}/events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.get_mut().write_all(head.as_bytes()).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    ensure!(line.contains(" 200 "), "SSE refused: {line}");
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        if line.trim().is_empty() {
            break;
        }
    }
    let mut reader = SseReader {
        stream,
        pending: Vec::new(),
    };
    while !reader.next_frame().await?.contains("event: presence") {}
    Ok(reader)
}

/// Reads SSE frames out of a chunked body.
struct SseReader {
    stream: BufReader<TcpStream>,
    pending: Vec<u8>,
}

impl SseReader {
    /// The next whole frame (up to a blank line), as text.
    async fn next_frame(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.pending.drain(..end + 2).collect();
                return Ok(String::from_utf8_lossy(&frame).into_owned());
            }
            let mut size = String::new();
            if self.stream.read_line(&mut size).await? == 0 {
                bail!("the stream ended");
            }
            let size = usize::from_str_radix(size.trim(), 16).context("chunk size")?;
            if size == 0 {
                bail!("the stream ended");
            }
            let start = self.pending.len();
            self.pending.resize(start + size + 2, 0);
            self.stream.read_exact(&mut self.pending[start..]).await?;
            self.pending.truncate(start + size);
        }
    }
}

fn field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let at = frame.find(key)? + key.len();
    let rest = &frame[at..];
    Some(
        &rest[..rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len())],
    )
}

#[derive(Default)]
struct Tally {
    deliveries: AtomicU64,
    gaps: AtomicU64,
    out_of_order: AtomicU64,
    last_delivery_micros: AtomicU64,
}

/// Which protocol the listeners and publishers speak.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// SSE listeners, REST publishers.
    Sse,
    /// gRPC `Stream` listeners, gRPC `Submit` publishers.
    Grpc,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Sse => "sse-fanout",
            Transport::Grpc => "grpc-fanout",
        }
    }
}

/// What a listener saw next.
enum Seen {
    Message { seq: u64, sent_micros: Option<u64> },
    Gap { first_held: u64 },
    Other,
    End,
}

/// One listener, on either transport.
enum Listener {
    Sse(SseReader),
    Grpc(tonic::Streaming<pb::StreamEvent>),
}

impl Listener {
    async fn open(
        transport: Transport,
        addr: SocketAddr,
        room: &str,
        user: &str,
    ) -> anyhow::Result<Listener> {
        Ok(match transport {
            Transport::Sse => Listener::Sse(open_sse(addr, room, user).await?),
            Transport::Grpc => {
                let mut client = ChatClient::connect(format!("http://{addr}")).await?;
                let auth = grpc_guest(&mut client, user).await?;
                let req = authorized(
                    &auth,
                    pb::StreamRequest {
                        room: room.into(),
                        resume_after: None,
                    },
                );
                let mut stream = client.stream(req).await?.into_inner();
                // The presence snapshot: the listener is live.
                stream.message().await?.context("presence snapshot")?;
                Listener::Grpc(stream)
            }
        })
    }

    async fn next(&mut self) -> Seen {
        match self {
            Listener::Sse(sse) => {
                let Ok(frame) = sse.next_frame().await else {
                    return Seen::End;
                };
                if frame.contains("event: gap") {
                    let first_held = field(&frame, "\"first_held\":")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    return Seen::Gap { first_held };
                }
                if !frame.contains("event: message") {
                    return Seen::Other;
                }
                let seq = field(&frame, "\"seq\":")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let sent_micros = field(&frame, "\"text\":\"t=").and_then(|s| s.parse().ok());
                Seen::Message { seq, sent_micros }
            }
            Listener::Grpc(stream) => {
                use pb::stream_event::Event;
                match stream.message().await {
                    Ok(Some(pb::StreamEvent {
                        event: Some(Event::Message(m)),
                    })) => Seen::Message {
                        seq: m.seq,
                        sent_micros: m
                            .text
                            .strip_prefix("t=")
                            .and_then(|t| t.split(' ').next())
                            .and_then(|t| t.parse().ok()),
                    },
                    Ok(Some(pb::StreamEvent {
                        event: Some(Event::Gap(g)),
                    })) => Seen::Gap {
                        first_held: g.first_held,
                    },
                    Ok(Some(_)) => Seen::Other,
                    _ => Seen::End,
                }
            }
        }
    }
}

/// One publishing connection, on either transport, signed in as a guest.
enum Publisher {
    Rest(BufReader<TcpStream>, String),
    Grpc(
        ChatClient<tonic::transport::Channel>,
        tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    ),
}

impl Publisher {
    async fn connect(
        transport: Transport,
        addr: SocketAddr,
        user: &str,
    ) -> anyhow::Result<Publisher> {
        Ok(match transport {
            Transport::Sse => Publisher::Rest(connect(addr).await?, rest_guest(addr, user).await?),
            Transport::Grpc => {
                let mut client = ChatClient::connect(format!("http://{addr}")).await?;
                let auth = grpc_guest(&mut client, user).await?;
                Publisher::Grpc(client, auth)
            }
        })
    }

    /// Creates a room; it must be new.
    async fn create_room(&mut self, room: &str) -> anyhow::Result<()> {
        match self {
            Publisher::Rest(conn, token) => {
                let body = json!({ "room": room }).to_string();
                let (status, _) =
                    request(conn, "POST", "/api/v1/rooms", &body, Some(token)).await?;
                ensure!(status == 201, "room {room} not created: {status}");
            }
            Publisher::Grpc(client, auth) => {
                let req = authorized(
                    auth,
                    pb::CreateRoomRequest {
                        room: room.into(),
                        private: false,
                    },
                );
                client.create_room(req).await?;
            }
        }
        Ok(())
    }

    /// Posts; true if the server accepted it.
    async fn post(&mut self, room: &str, text: String) -> bool {
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
                let req = authorized(
                    auth,
                    pb::SubmitRequest {
                        room: room.into(),
                        text,
                        idempotency_key: String::new(),
                    },
                );
                client.submit(req).await.is_ok()
            }
        }
    }
}

async fn fanout(transport: Transport, addr: SocketAddr, args: FanoutArgs) -> anyhow::Result<()> {
    let FanoutArgs {
        listeners,
        rate,
        seconds,
        publishers,
        size,
    } = args;
    ensure!(
        listeners <= 15_000 && seconds <= 600 && rate <= 1_000_000,
        "bounded runs only"
    );
    let room = format!("fanout{}", now_micros() % 1_000_000);
    Publisher::connect(transport, addr, "admin")
        .await?
        .create_room(&room)
        .await?;

    let tally = Arc::new(Tally::default());
    let total = rate * seconds;
    let mut readers = Vec::with_capacity(listeners);
    for i in 0..listeners {
        let mut listener = Listener::open(transport, addr, &room, &format!("l{i}")).await?;
        let tally = tally.clone();
        readers.push(tokio::spawn(async move {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let mut expected = 1u64;
            while expected <= total {
                match listener.next().await {
                    Seen::End => break,
                    Seen::Other => {}
                    Seen::Gap { first_held } => {
                        tally.gaps.fetch_add(1, Ordering::Relaxed);
                        expected = first_held;
                    }
                    Seen::Message { seq, sent_micros } => {
                        let now = now_micros();
                        if seq != expected {
                            tally.out_of_order.fetch_add(1, Ordering::Relaxed);
                        }
                        expected = seq + 1;
                        if let Some(sent) = sent_micros {
                            let _ = hist.record(now.saturating_sub(sent).max(1));
                        }
                        tally.deliveries.fetch_add(1, Ordering::Relaxed);
                        tally.last_delivery_micros.fetch_max(now, Ordering::Relaxed);
                    }
                }
            }
            hist
        }));
    }

    // Open loop: message i is due at start + i / rate, whatever happened to earlier ones.
    let start = Instant::now();
    let start_micros = now_micros();
    let padding = "x".repeat(size);
    let failures = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for p in 0..publishers as u64 {
        let (padding, room, failures) = (padding.clone(), room.clone(), failures.clone());
        senders.push(tokio::spawn(async move {
            let mut publisher = Publisher::connect(transport, addr, &format!("pub{p}"))
                .await
                .expect("publisher connects");
            let mut i = p;
            while i < total {
                let due = Duration::from_micros(i * 1_000_000 / rate);
                tokio::time::sleep_until((start + due).into()).await;
                let text = format!("t={} {padding}", start_micros + due.as_micros() as u64);
                if !publisher.post(&room, text).await {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                i += publishers as u64;
            }
        }));
    }
    for s in senders {
        s.await?;
    }
    let published_in = start.elapsed();
    // Give deliveries a bounded moment to drain, then stop counting.
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while tally.deliveries.load(Ordering::Relaxed) < total * listeners as u64
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for r in readers {
        if r.is_finished() {
            hist.add(r.await?)?;
        } else {
            r.abort();
        }
    }
    let delivered = tally.deliveries.load(Ordering::Relaxed);
    let window = Duration::from_micros(
        tally
            .last_delivery_micros
            .load(Ordering::Relaxed)
            .saturating_sub(start_micros),
    );
    let result = json!({
        "scenario": transport.name(),
        "listeners": listeners,
        "rate": rate,
        "seconds": seconds,
        "published": total - failures.load(Ordering::Relaxed),
        "publish_failures": failures.load(Ordering::Relaxed),
        "publish_seconds": published_in.as_secs_f64(),
        "expected_deliveries": total * listeners as u64,
        "deliveries": delivered,
        "deliveries_per_second": delivered as f64 / window.as_secs_f64().max(1e-9),
        "gaps": tally.gaps.load(Ordering::Relaxed),
        "out_of_order": tally.out_of_order.load(Ordering::Relaxed),
        "latency_ms": {
            "p50": hist.value_at_quantile(0.50) as f64 / 1000.0,
            "p99": hist.value_at_quantile(0.99) as f64 / 1000.0,
            "p999": hist.value_at_quantile(0.999) as f64 / 1000.0,
            "max": hist.max() as f64 / 1000.0,
        },
    });
    println!("{result}");
    println!(
        "| {} | {listeners} | {rate}/s × {seconds}s | {delivered}/{} | {:.0}/s | {:.2} | {:.2} | {:.2} | {} |",
        transport.name(),
        total * listeners as u64,
        result["deliveries_per_second"].as_f64().unwrap_or(0.0),
        result["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        result["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        result["latency_ms"]["p999"].as_f64().unwrap_or(0.0),
        result["gaps"],
    );
    Ok(())
}

async fn ingress(
    transport: Transport,
    addr: SocketAddr,
    submitters: usize,
    rooms: usize,
    seconds: u64,
    size: usize,
) -> anyhow::Result<()> {
    ensure!(
        (1..=5_000).contains(&submitters) && (1..=1_000).contains(&rooms) && seconds <= 600,
        "bounded runs only"
    );
    let run = now_micros() % 1_000_000;
    let room_names: Vec<String> = (0..rooms).map(|r| format!("in{run}-{r}")).collect();
    let mut admin = Publisher::connect(transport, addr, "admin").await?;
    for room in &room_names {
        admin.create_room(room).await?;
    }
    let text = "x".repeat(size);
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let mut tasks = Vec::with_capacity(submitters);
    for s in 0..submitters {
        let (room, text) = (room_names[s % rooms].clone(), text.clone());
        let mut publisher = Publisher::connect(transport, addr, &format!("sub{s}")).await?;
        tasks.push(tokio::spawn(async move {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let (mut acked, mut failed) = (0u64, 0u64);
            while Instant::now() < until {
                let sent = Instant::now();
                if publisher.post(&room, text.clone()).await {
                    let _ = hist.record((sent.elapsed().as_micros() as u64).max(1));
                    acked += 1;
                } else {
                    failed += 1;
                }
            }
            (hist, acked, failed)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut acked, mut failed) = (0, 0);
    for task in tasks {
        let (h, a, f) = task.await?;
        hist.add(h)?;
        acked += a;
        failed += f;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let name = match transport {
        Transport::Sse => "ingress-rest",
        Transport::Grpc => "ingress-grpc",
    };
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let result = json!({
        "scenario": name,
        "submitters": submitters,
        "rooms": rooms,
        "seconds": elapsed,
        "acknowledged": acked,
        "failed": failed,
        "acks_per_second": acked as f64 / elapsed,
        "ack_latency_ms": { "p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999), "max": hist.max() as f64 / 1000.0 },
    });
    println!("{result}");
    println!(
        "| {name} | {submitters} | {rooms} | {:.0}/s | {:.2} | {:.2} | {:.2} | {failed} |",
        acked as f64 / elapsed,
        ms(0.5),
        ms(0.99),
        ms(0.999),
    );
    Ok(())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("no process {pid}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

async fn sse_idle(
    addr: SocketAddr,
    connections: usize,
    rooms: usize,
    pid: u32,
) -> anyhow::Result<()> {
    ensure!(
        connections <= 15_000 && (1..=10_000).contains(&rooms),
        "bounded runs only"
    );
    let run = now_micros() % 1_000_000;
    let room_names: Vec<String> = (0..rooms).map(|r| format!("idle{run}-{r}")).collect();
    let mut admin = Publisher::connect(Transport::Sse, addr, "admin").await?;
    for room in &room_names {
        admin.create_room(room).await?;
    }
    let room = &room_names[0];
    // Warm up allocator and executor with a few connections first, so the delta is per connection.
    let mut held = Vec::with_capacity(connections);
    for i in 0..10 {
        held.push(open_sse(addr, room, &format!("warm{i}")).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let opened_at = Instant::now();
    for i in 0..connections {
        held.push(open_sse(addr, &room_names[i % rooms], &format!("idle{i}")).await?);
    }
    let open_seconds = opened_at.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid)?;
    let per = (after.saturating_sub(before) * 1024) as f64 / connections as f64;
    let result = json!({
        "scenario": "sse-idle",
        "connections": connections,
        "rooms": rooms,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_connection": per,
        "open_seconds": open_seconds,
    });
    println!("{result}");
    println!(
        "| sse-idle | {connections} | {before} KiB → {after} KiB | {:.0} B/connection |",
        per
    );
    drop(held);
    Ok(())
}
