//! `roomcast-smol`: the roomcast server on smol + tide. Web chat, JSON API, Server-Sent Events
//! and WebSocket over one port. See `--help` for the flags (each also an environment variable).
#![forbid(unsafe_code)]

// In layers, each using only those below it: the server loop, the route table, the
// handlers, what SSE and WebSocket share, the request toolbox, then problems and wire shapes.
mod server;

mod routes;

mod api;
mod attachments;
mod auth;
mod openapi;
mod pages;
mod sse;
mod ws;

mod stream;

mod io;
mod request;
mod runtime;
mod tls;

mod origins;
mod problem;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use roomcast_hub::edge::EdgeArgs;
use roomcast_hub::signal::Shutdown;
use roomcast_hub::telemetry::{Metrics, init_logging};
use roomcast_hub::tls::TlsArgs;
use roomcast_hub::{CoreArgs, refuse_to_start};
use roomcast_smol::http1;

/// The roomcast chat server: web chat, JSON API, Server-Sent Events and WebSocket.
#[derive(Debug, Parser)]
#[command(name = "roomcast-smol", version)]
struct Cli {
    /// Address to listen on (port 0 picks a free one; the log says which).
    #[arg(long, env = "ROOMCAST_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "ROOMCAST_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    max_body_bytes: usize,
    /// Largest request head (request line and header fields), in bytes; a longer one gets 431.
    #[arg(long, env = "ROOMCAST_MAX_HEAD_BYTES", default_value_t = http1::Limits::default().max_head_bytes)]
    max_head_bytes: usize,
    /// How long a request (head and body) may take to arrive from its first byte; a slower one
    /// gets 408 and the connection is closed.
    #[arg(long, env = "ROOMCAST_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    #[arg(long, env = "ROOMCAST_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Cut off a client whose connection has accepted nothing for this long (it resumes where
    /// it left off when it reconnects).
    #[arg(long, env = "ROOMCAST_WRITE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    write_timeout: Duration,
    /// How often idle streams send a heartbeat (an SSE comment, a WebSocket ping).
    #[arg(long, env = "ROOMCAST_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Web pages on other origins that may use the API and its streams from a browser
    /// (comma-separated, like `https://app.example.com`; `*` for any). This server's own pages
    /// always may; no others by default.
    #[arg(long, env = "ROOMCAST_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = origins::origin)]
    allowed_origins: Vec<String>,
    /// Log one JSON object per line instead of text.
    #[arg(long, env = "ROOMCAST_LOG_JSON")]
    log_json: bool,
    /// HTTPS (HTTP/1.1 over TLS): pages, API, event streams and WebSocket.
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    edge: EdgeArgs,
    #[command(flatten)]
    core: CoreArgs,
}

/// How long open streams get to say goodbye on shutdown.
const GRACE: Duration = Duration::from_secs(5);

fn main() -> anyhow::Result<()> {
    let cli: Cli = roomcast_hub::config::parse();
    init_logging(cli.log_json, cli.core.shared_node_id());
    cli.core.set_password_or_continue();
    // Before anything records a metric (the store's writer does from its start).
    let metrics = Metrics::install("smol");
    let shutdown = Shutdown::catch().context("cannot catch SIGINT and SIGTERM")?;
    let tls = cli.tls.server_config(&[b"http/1.1"])?;
    let reload = roomcast_hub::tls::reload_on_hangup(tls.as_ref())?;
    let hub = cli.core.start_hub().unwrap_or_else(|e| refuse_to_start(&e));
    runtime::run(async move {
        runtime::spawn(reload).detach();
        let (listener, limit) = cli
            .edge
            .listen(cli.listen)
            .with_context(|| format!("cannot listen on {}", cli.listen))?;
        let listener = smol::net::TcpListener::try_from(listener)?;
        let addr = listener.local_addr()?;
        let streams = request::Streams::default();
        let state = request::State {
            hub: hub.clone(),
            metrics,
            max_body: cli.max_body_bytes,
            heartbeat: cli.heartbeat,
            streams: streams.clone(),
            origins: origins::AllowedOrigins::new(cli.allowed_origins.clone()),
        };
        let (stop, stopped) = async_channel::bounded(1);
        runtime::spawn(async move {
            shutdown.wait().await;
            let _ = stop.send(()).await;
        })
        .detach();
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!("roomcast-smol listening on {scheme}://{addr}");
        let settings = server::Settings {
            limits: http1::Limits {
                max_head_bytes: cli.max_head_bytes,
                request_timeout: cli.request_timeout,
                idle_timeout: cli.idle_timeout,
            },
            write_timeout: cli.write_timeout,
            drain_bytes: u64::try_from(cli.max_body_bytes).unwrap_or(u64::MAX),
            edge: cli.edge.clone(),
            tls: tls.map(|tls| tls.config),
        };
        server::serve(
            listener,
            routes::build(state),
            Arc::new(settings),
            limit,
            stopped,
        )
        .await;
        // Every stream gets a final `closed` event; give them a moment to flush it.
        hub.shutdown().await;
        let deadline = Instant::now() + GRACE;
        while streams.active() > 0 && Instant::now() < deadline {
            async_io::Timer::after(Duration::from_millis(20)).await;
        }
        tracing::info!("stopped");
        Ok(())
    })
}
