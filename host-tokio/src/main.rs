//! `roomcast-tokio`: the roomcast gRPC server on tokio + tonic, with the standard health
//! service and server reflection. See `--help` for the flags (each also an environment variable).
#![forbid(unsafe_code)]

mod access;
mod convert;
mod incoming;
mod metrics;
mod service;

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use roomcast_hub::edge::EdgeArgs;
use roomcast_hub::signal::Shutdown;
use roomcast_hub::telemetry::{Metrics, init_logging};
use roomcast_hub::tls::TlsArgs;
use roomcast_hub::{CoreArgs, refuse_to_start};
use roomcast_proto::fast::chat_server::ChatServer;

/// The roomcast gRPC server.
#[derive(Debug, Parser)]
#[command(name = "roomcast-tokio", version)]
struct Cli {
    /// Address to listen on (port 0 picks a free one; the log says which).
    #[arg(long, env = "ROOMCAST_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Largest request message accepted, in bytes.
    #[arg(long, env = "ROOMCAST_MAX_REQUEST_BYTES", default_value_t = 64 * 1024)]
    max_request_bytes: usize,
    /// Most concurrent streams (calls) on one connection; a client waits for one to end before
    /// opening another.
    #[arg(
        long,
        env = "ROOMCAST_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 100
    )]
    max_streams_per_connection: u32,
    /// How long a request that streams from the client (an upload) may take to arrive whole.
    #[arg(long, env = "ROOMCAST_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    request_timeout: std::time::Duration,
    /// How long a connection may stay quiet (nothing read from it, no call open) before it is
    /// closed; one that has not sent HTTP/2's preface gets 10 s.
    #[arg(long, env = "ROOMCAST_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: std::time::Duration,
    /// Log one JSON object per line instead of text.
    #[arg(long, env = "ROOMCAST_LOG_JSON")]
    log_json: bool,
    /// Also serve Prometheus metrics (`/metrics`) and readiness (`/readyz`) over plain HTTP on
    /// this address (off unless given).
    #[arg(long, env = "ROOMCAST_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// gRPC over TLS (HTTP/2).
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    edge: EdgeArgs,
    #[command(flatten)]
    core: CoreArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = roomcast_hub::config::parse();
    init_logging(cli.log_json, cli.core.shared_node_id());
    cli.core.set_password_or_continue();
    let shutdown = Shutdown::catch().context("cannot catch SIGINT and SIGTERM")?;
    let hub = cli.core.start_hub().unwrap_or_else(|e| refuse_to_start(&e));
    let (listener, limit) = cli
        .edge
        .listen(cli.listen)
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    let metrics = Metrics::install("tokio");
    if let Some(at) = cli.metrics_listen {
        let bound = metrics::serve(at, metrics.clone(), hub.clone())
            .await
            .with_context(|| format!("cannot listen for metrics on {at}"))?;
        tracing::info!("metrics on http://{bound}/metrics");
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ChatServer<service::Service>>().await;
    if hub.log_healthy().is_some() {
        // With several nodes, gRPC health says what /healthz says: NOT_SERVING while the
        // subscriber to the shared log is being replaced.
        let (hub, health) = (hub.clone(), health.clone());
        tokio::spawn(async move {
            let mut serving = true;
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                let now = hub.log_healthy() != Some(false);
                if now != serving {
                    serving = now;
                    if serving {
                        health.set_serving::<ChatServer<service::Service>>().await;
                    } else {
                        health
                            .set_not_serving::<ChatServer<service::Service>>()
                            .await;
                    }
                }
            }
        });
    }
    // Reflection in both versions of its protocol: `v1`, and `v1alpha`, which older grpcurl,
    // BloomRPC and Python's grpcio-reflection speak.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(roomcast_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .context("building the reflection service")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building the reflection service (v1alpha)")?;
    let chat = ChatServer::new(service::Service {
        hub: hub.clone(),
        edge: cli.edge.clone(),
        upload_within: cli.request_timeout,
    })
    .max_decoding_message_size(cli.max_request_bytes);

    let stopping = {
        let hub = hub.clone();
        async move {
            shutdown.wait().await;
            health
                .set_not_serving::<ChatServer<service::Service>>()
                .await;
            // Every stream gets a final `closed` event and ends with an OK status.
            hub.shutdown().await;
        }
    };
    let tls = cli.tls.server_config(&[b"h2"])?;
    tokio::spawn(roomcast_hub::tls::reload_on_hangup(tls.as_ref())?);
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("roomcast-tokio listening on {scheme}://{addr}");
    tonic::transport::Server::builder()
        .max_concurrent_streams(cli.max_streams_per_connection)
        // Heads (metadata) are small. (HTTP/2 pings would find dead peers too, but cost every
        // delivery a few µs with thousands of connections: the sockets' TCP keepalive does it.)
        .http2_max_header_list_size(16 * 1024)
        .layer(access::AccessLayer {
            max_request_bytes: cli.max_request_bytes,
            edge: cli.edge.clone(),
        })
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(chat)
        .serve_with_incoming_shutdown(
            incoming::incoming(listener, limit, tls.map(|tls| tls.config), cli.idle_timeout),
            stopping,
        )
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}
