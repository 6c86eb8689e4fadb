//! `--metrics-listen`: the same Prometheus metrics as roomcast-smol's `/metrics`, and
//! `/readyz`, on a plain HTTP listener of their own (off by default), served by hyper.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use roomcast_hub::Hub;
use roomcast_hub::telemetry::Metrics;

/// How long a scraper may take to send its request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Listens on `addr` and answers `/metrics` and `/readyz` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Metrics, hub: Hub) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (metrics, hub) = (metrics.clone(), hub.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let (metrics, hub) = (metrics.clone(), hub.clone());
                    async move { Ok::<_, Infallible>(answer(req.uri().path(), &metrics, &hub).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn answer(path: &str, metrics: &Metrics, hub: &Hub) -> Response<String> {
    let (status, content_type, body) = match path {
        "/metrics" => match metrics.render(hub).await {
            Ok(text) => (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            ),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", e.to_string()),
        },
        "/readyz" => match hub.readiness().await {
            Ok(()) => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "only /metrics and /readyz here\n".to_owned(),
        ),
    };
    let mut res = Response::new(body);
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    res
}
