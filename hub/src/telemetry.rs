//! Logs and metrics, set up the same way by both binaries.

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::hub::{Hub, HubError};

/// Logs to stderr through `tracing`: human-readable, or one JSON object per line. The level
/// comes from `RUST_LOG` (default `info`). Colours only on a terminal (and never with
/// `NO_COLOR`), so log files hold no escape codes.
///
/// With several nodes (`node`), every line names the node: `node=<id>` first, or a `"node"`
/// field in JSON, so logs gathered from many nodes say which one spoke.
pub fn init_logging(json: bool, node: Option<String>) {
    use std::io::IsTerminal as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let format = tracing_subscriber::fmt::format().with_ansi(colour);
    // A second initialisation (only possible in tests) keeps the first.
    let _ = if json {
        let inner = format.json();
        builder
            .json()
            .event_format(NodeField { node, json, inner })
            .try_init()
    } else {
        builder
            .event_format(NodeField {
                node,
                json,
                inner: format,
            })
            .try_init()
    };
}

/// A log line's format, with the node's name in front when there is one.
struct NodeField<F> {
    node: Option<String>,
    json: bool,
    inner: F,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for NodeField<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(node) = &self.node else {
            return self.inner.format_event(ctx, writer, event);
        };
        if !self.json {
            write!(writer, "node={node} ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        match line.strip_prefix('{') {
            Some(rest) => {
                let node = serde_json::to_string(node).map_err(|_| std::fmt::Error)?;
                write!(writer, "{{\"node\":{node},{rest}")
            }
            None => writer.write_str(&line),
        }
    }
}

/// The Prometheus recorder behind `/metrics`. Installed once per process.
#[derive(Clone, Debug)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    /// Installs the process-wide recorder (once) and returns a handle to render it. `host`
    /// names the binary in `roomcast_build_info`.
    pub fn install(host: &'static str) -> Metrics {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        let handle = HANDLE.get_or_init(|| {
            // Every histogram is of seconds: buckets, so they add up across nodes.
            let recorder = PrometheusBuilder::new()
                .set_buckets(&SECONDS_BUCKETS)
                .expect("the buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours stays unused.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            metrics::gauge!(
                "roomcast_build_info",
                "version" => env!("CARGO_PKG_VERSION"),
                "host" => host
            )
            .set(1.0);
            handle
        });
        Metrics {
            handle: handle.clone(),
        }
    }

    /// The Prometheus text exposition, with the core's counters read fresh from the hub.
    pub async fn render(&self, hub: &Hub) -> Result<String, HubError> {
        let stats = hub.stats().await?;
        metrics::gauge!("roomcast_rooms").set(stats.rooms as f64);
        metrics::gauge!("roomcast_listeners").set(stats.listeners as f64);
        metrics::gauge!("roomcast_rate_limited_users").set(stats.rate_limited_users as f64);
        metrics::gauge!("roomcast_messages_held").set(stats.messages_held as f64);
        metrics::counter!("roomcast_messages_accepted_total").absolute(stats.messages_accepted);
        metrics::counter!("roomcast_duplicate_submits_total").absolute(stats.duplicates);
        metrics::counter!("roomcast_events_dropped_total").absolute(stats.events_dropped);
        for (reason, count) in stats.refused {
            metrics::counter!("roomcast_refused_total", "reason" => reason).absolute(count);
        }
        if let Some(node) = hub.node_id() {
            // Several nodes: which one this is, and how its following of the shared log goes.
            metrics::gauge!("roomcast_node_info", "node" => node.to_owned()).set(1.0);
            let up = hub.log_healthy().unwrap_or(false);
            metrics::gauge!("roomcast_pubsub_up").set(if up { 1.0 } else { 0.0 });
            metrics::counter!("roomcast_pubsub_wedged_total").absolute(hub.log_wedged());
            metrics::counter!("roomcast_log_fetches_total").absolute(stats.log_fetches);
            metrics::counter!("roomcast_log_gaps_total").absolute(stats.log_gaps);
            metrics::counter!("roomcast_log_resets_total").absolute(stats.log_resets);
        }
        Ok(self.handle.render())
    }
}

/// Counts an open connection in `roomcast_connections{transport}` for as long as it lives,
/// and its opening and closing.
#[derive(Debug)]
pub struct ConnectionGauge(metrics::Gauge, &'static str);

impl ConnectionGauge {
    /// Counts one more connection of this transport (`sse`, `ws`, `grpc`, `http`).
    pub fn new(transport: &'static str) -> Self {
        let gauge = metrics::gauge!("roomcast_connections", "transport" => transport);
        gauge.increment(1.0);
        metrics::counter!("roomcast_connections_opened_total", "transport" => transport)
            .increment(1);
        ConnectionGauge(gauge, transport)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.decrement(1.0);
        metrics::counter!("roomcast_connections_closed_total", "transport" => self.1).increment(1);
    }
}

/// The buckets of every histogram (seconds): from half a millisecond to ten seconds.
const SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What every metric means, for `# HELP`: one list for both binaries.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "roomcast_build_info",
        "The running build: its version and which server (smol or tokio); always 1."
    );
    describe_gauge!("roomcast_rooms", "Rooms this node holds.");
    describe_gauge!(
        "roomcast_listeners",
        "Listeners (streams) open on this node."
    );
    describe_gauge!(
        "roomcast_rate_limited_users",
        "Users whose posting allowance is being refilled."
    );
    describe_gauge!(
        "roomcast_messages_held",
        "Messages held in memory across rooms' history rings."
    );
    describe_counter!(
        "roomcast_messages_accepted_total",
        "Entries (messages, edits, reactions, moderations) accepted."
    );
    describe_counter!(
        "roomcast_duplicate_submits_total",
        "Retried submits answered with the original entry."
    );
    describe_counter!(
        "roomcast_events_dropped_total",
        "Events the core dropped because its queue was full."
    );
    describe_counter!(
        "roomcast_refused_total",
        "Commands refused, by reason (the stable code)."
    );
    describe_gauge!(
        "roomcast_node_info",
        "With --redis: this node's id; always 1."
    );
    describe_gauge!(
        "roomcast_pubsub_up",
        "With --redis: 1 while pub/sub delivers, 0 while it is being replaced."
    );
    describe_counter!(
        "roomcast_pubsub_wedged_total",
        "With --redis: pub/sub connections found wedged and replaced."
    );
    describe_counter!(
        "roomcast_log_fetches_total",
        "With --redis: reads of a room's log to fill a hole."
    );
    describe_counter!(
        "roomcast_log_gaps_total",
        "With --redis: entries Redis no longer had when read (told as gaps)."
    );
    describe_counter!(
        "roomcast_log_resets_total",
        "With --redis: rooms whose log started a new epoch."
    );
    describe_gauge!("roomcast_connections", "Connections open, by transport.");
    describe_counter!(
        "roomcast_connections_opened_total",
        "Connections opened, by transport."
    );
    describe_counter!(
        "roomcast_connections_closed_total",
        "Connections closed, by transport."
    );
    describe_counter!(
        "roomcast_connections_refused_total",
        "Connections refused at the connection cap."
    );
    describe_counter!(
        "roomcast_deliveries_total",
        "Events delivered to listeners, by transport."
    );
    describe_counter!(
        "roomcast_resyncs_total",
        "Listeners that fell behind and were resynced from history, by transport."
    );
    describe_counter!(
        "roomcast_gaps_total",
        "Gap notices delivered (history no longer held), by transport."
    );
    describe_histogram!(
        "roomcast_submit_seconds",
        Unit::Seconds,
        "From a submit reaching the hub to its answer, once durable (submit to ack)."
    );
    describe_histogram!(
        "roomcast_delivery_seconds",
        Unit::Seconds,
        "From a message's acceptance to its delivery to a listener's connection; one delivery in 64."
    );
    describe_counter!(
        "roomcast_http_requests_total",
        "HTTP requests answered by roomcast-smol, by route and status."
    );
    describe_counter!(
        "roomcast_grpc_requests_total",
        "gRPC calls answered by roomcast-tokio, by method and code."
    );
    describe_counter!(
        "roomcast_sign_in_failures_total",
        "Sign-ins refused, by reason."
    );
    describe_counter!(
        "roomcast_tls_handshake_failures_total",
        "TLS handshakes that did not finish, by reason (error, timeout, plain_http)."
    );
    describe_counter!(
        "roomcast_store_commits_total",
        "Store transactions committed."
    );
    describe_counter!(
        "roomcast_store_records_total",
        "Durable events written to the store."
    );
    describe_histogram!(
        "roomcast_store_commit_seconds",
        Unit::Seconds,
        "How long a store commit (one transaction, fsync included) took."
    );
    describe_counter!(
        "roomcast_store_retention_deleted_total",
        "Messages removed by retention or room purges."
    );
}

/// Who made a request, for its access log line: created by the host per request, filled in by
/// whoever verifies the caller.
#[derive(Debug, Clone, Default)]
pub struct Access(Arc<OnceLock<String>>);

impl Access {
    /// Records the verified user.
    pub fn set_user(&self, user: &str) {
        let _ = self.0.set(user.to_owned());
    }

    /// The verified user, or `-`.
    pub fn user(&self) -> &str {
        self.0.get().map_or("-", String::as_str)
    }
}
