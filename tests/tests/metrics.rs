//! Metrics an operator can graph, read back with a Prometheus text-format parser: every family
//! with `# HELP` and `# TYPE`, latencies as histograms, requests by route and status, sign-in
//! failures, the build; the same on roomcast-tokio's `--metrics-listen`; and readiness.

use std::collections::{BTreeMap, BTreeSet};

use prometheus_parse::{Scrape, Value};
use roomcast_e2e::grpc;
use roomcast_e2e::{Server, SseStream, create_room, get_unauthenticated, post_json, say};
use serde_json::json;

/// The exposition, parsed; and each family's `# TYPE`, read from the text.
fn scrape(text: &str) -> (Scrape, BTreeMap<String, String>) {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = Scrape::parse(lines).expect("the Prometheus text format");
    let types = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect();
    (scrape, types)
}

/// Every family in the scrape has its HELP and TYPE.
fn every_family_is_described(scrape: &Scrape, types: &BTreeMap<String, String>) {
    // A histogram's `_sum` and `_count` lines belong to its family.
    let family = |name: &str| -> String {
        for suffix in ["_sum", "_count", "_bucket"] {
            if let Some(base) = name.strip_suffix(suffix)
                && types.get(base).is_some_and(|t| t == "histogram")
            {
                return base.to_owned();
            }
        }
        name.to_owned()
    };
    let families: BTreeSet<String> = scrape.samples.iter().map(|s| family(&s.metric)).collect();
    assert!(!families.is_empty());
    for family in &families {
        assert!(scrape.docs.contains_key(family), "no HELP for {family}");
        assert!(types.contains_key(family), "no TYPE for {family}");
    }
}

/// The value of the sample `name` whose labels include `labels`.
fn sample<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Value> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| &s.value)
}

fn counted(value: Option<&Value>) -> f64 {
    match value {
        Some(Value::Counter(n) | Value::Gauge(n) | Value::Untyped(n)) => *n,
        other => panic!("not a number: {other:?}"),
    }
}

/// How many observations a histogram holds.
fn observations(value: Option<&Value>) -> f64 {
    match value {
        Some(Value::Histogram(buckets)) => buckets.last().map_or(0.0, |b| b.count),
        other => panic!("not a histogram: {other:?}"),
    }
}

#[test]
fn smol_metrics_parse_and_describe_themselves() {
    let server = Server::smol(&["--rate-burst=0"]);
    create_room(&server, "m");
    let mut stream = SseStream::open(server.addr, "/api/v1/rooms/m/events?user=bob", None).unwrap();
    stream.next_event().unwrap();
    for i in 0..70 {
        say(&server, "m", "ada", &format!("message {i}"));
    }
    stream.next_of("message").unwrap();
    let failed = post_json(
        &server.url("/api/v1/auth/sign-in"),
        &json!({"name": "nobody", "password": "not the password"}),
    );
    assert_eq!(failed.status, 401, "{}", failed.body);

    let res = get_unauthenticated(&server.url("/metrics"));
    assert_eq!(res.status, 200);
    let (scrape, types) = scrape(&res.body);
    every_family_is_described(&scrape, &types);
    assert_eq!(types["roomcast_store_commit_seconds"], "histogram");
    assert!(observations(sample(&scrape, "roomcast_store_commit_seconds", &[])) >= 1.0);
    assert_eq!(types["roomcast_submit_seconds"], "histogram");
    assert!(observations(sample(&scrape, "roomcast_submit_seconds", &[])) >= 70.0);
    assert_eq!(types["roomcast_delivery_seconds"], "histogram");
    assert!(
        observations(sample(&scrape, "roomcast_delivery_seconds", &[])) >= 1.0,
        "one delivery in 64 is timed"
    );
    let version = env!("CARGO_PKG_VERSION");
    let build = sample(
        &scrape,
        "roomcast_build_info",
        &[("host", "smol"), ("version", version)],
    );
    assert_eq!(counted(build), 1.0);
    let posted = sample(
        &scrape,
        "roomcast_http_requests_total",
        &[("route", "/api/v1/rooms/:room/messages"), ("status", "201")],
    );
    assert!(counted(posted) >= 70.0);
    let refused = sample(
        &scrape,
        "roomcast_sign_in_failures_total",
        &[("reason", "bad-credentials")],
    );
    assert_eq!(counted(refused), 1.0);
    let opened = sample(
        &scrape,
        "roomcast_connections_opened_total",
        &[("transport", "sse")],
    );
    assert!(counted(opened) >= 1.0);

    let ready = get_unauthenticated(&server.url("/readyz"));
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json(), json!({ "status": "ready" }));
}

#[tokio::test(flavor = "current_thread")]
async fn tokio_serves_the_same_metrics_when_asked() {
    let server = Server::tokio(&["--rate-burst=0", "--metrics-listen", "127.0.0.1:0"]);
    let line = server.wait_for_log("metrics on http://");
    let at = line
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the address")
        .trim_end_matches("/metrics")
        .to_owned();
    let mut c = grpc::client(&server).await;
    grpc::create(&mut c, "g").await;
    grpc::submit(&mut c, "ada", "g", "counted").await;
    let base = format!("http://{at}");
    let res = tokio::task::spawn_blocking(move || {
        (
            get_unauthenticated(&format!("{base}/metrics")),
            get_unauthenticated(&format!("{base}/readyz")),
            get_unauthenticated(&format!("{base}/other")),
        )
    })
    .await
    .unwrap();
    let (metrics, ready, other) = res;
    assert_eq!(metrics.status, 200);
    let (scrape, types) = scrape(&metrics.body);
    every_family_is_described(&scrape, &types);
    let build = sample(&scrape, "roomcast_build_info", &[("host", "tokio")]);
    assert_eq!(counted(build), 1.0);
    let calls = sample(
        &scrape,
        "roomcast_grpc_requests_total",
        &[("method", "/roomcast.v1.Chat/Submit"), ("code", "Ok")],
    );
    assert!(counted(calls) >= 1.0);
    assert!(observations(sample(&scrape, "roomcast_submit_seconds", &[])) >= 1.0);
    assert_eq!(ready.status, 200);
    assert_eq!(other.status, 404);
    // Without the flag, nothing listens for it (and the log says nothing of it).
    let quiet = Server::tokio(&[]);
    assert!(quiet.log_lines_containing("metrics on").is_empty());
}
