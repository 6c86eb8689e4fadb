//! What every call passes through: the access log (method, status, duration, user, client) and
//! one correction of tonic's answers. tonic refuses a request over `--max-request-bytes` with
//! `OUT_OF_RANGE`; gRPC's own rule (and the core's message-size limit) is that size limits are
//! `RESOURCE_EXHAUSTED`, so that refusal is rewritten here. Each call also counts among its
//! connection's open calls until its response ends ([`crate::incoming::Activity`]), so a
//! connection with a quiet stream open is never closed as idle.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use roomcast_hub::edge::EdgeArgs;
use roomcast_hub::telemetry::Access;
use tonic::transport::server::TcpConnectInfo;

use crate::incoming::{CallGuard, ConnInfo};

/// The layer, with the request size limit it reports.
#[derive(Debug, Clone)]
pub struct AccessLayer {
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// Client addresses behind trusted proxies.
    pub edge: EdgeArgs,
}

impl<S> tower_layer::Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            max_request_bytes: self.max_request_bytes,
            edge: self.edge.clone(),
        }
    }
}

/// The service the layer wraps around every call.
#[derive(Debug, Clone)]
pub struct AccessService<S> {
    inner: S,
    max_request_bytes: usize,
    edge: EdgeArgs,
}

/// What tonic says when a request is over its decoding limit.
const TOO_LARGE: &str = "Error, decoded message length too large";

/// A response body that holds its call open (see [`crate::incoming::Activity`]) until it ends.
pub struct Held<R> {
    body: R,
    _call: Option<CallGuard>,
}

impl<R: http_body::Body + Unpin> http_body::Body for Held<R> {
    type Data = R::Data;
    type Error = R::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl<S, B, R> tower_service::Service<Request<B>> for AccessService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = Response<Held<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Held<R>>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let started = Instant::now();
        let connection = req.extensions().get::<ConnInfo>().cloned();
        let call = connection.as_ref().map(|c| c.activity.begin());
        if let Some(connection) = connection {
            // Where tonic's `Request::remote_addr` looks for the peer.
            req.extensions_mut().insert(connection.tcp);
        }
        // What the access line says is gathered only when the line is written.
        let method = req.uri().path().to_owned();
        let logged =
            tracing::enabled!(target: "roomcast::access", tracing::Level::INFO).then(|| {
                let access = Access::default();
                req.extensions_mut().insert(access.clone());
                let client = req
                    .extensions()
                    .get::<TcpConnectInfo>()
                    .and_then(TcpConnectInfo::remote_addr)
                    .map(|a: SocketAddr| {
                        let forwarded = req
                            .headers()
                            .get_all("x-forwarded-for")
                            .iter()
                            .filter_map(|v| v.to_str().ok());
                        self.edge.client_ip(a.ip(), forwarded)
                    });
                (access, client)
            });
        let max = self.max_request_bytes;
        let answered = self.inner.call(req);
        Box::pin(async move {
            let mut res = answered.await?;
            let headers = res.headers_mut();
            let too_large = headers.get("grpc-status").is_some_and(|s| s == "11")
                && headers
                    .get("grpc-message")
                    .and_then(|m| m.to_str().ok())
                    .is_some_and(|m| m.replace("%20", " ").starts_with(TOO_LARGE));
            if too_large {
                headers.insert("grpc-status", HeaderValue::from_static("8"));
                if let Ok(message) = HeaderValue::from_str(&format!(
                    "the request is larger than --max-request-bytes ({max} bytes) (request-too-large)"
                )) {
                    headers.insert("grpc-message", message);
                }
            }
            // An error before any message comes in the headers; otherwise the call started
            // well (a stream's final status comes later).
            let status = headers
                .get("grpc-status")
                .and_then(|s| s.to_str().ok())
                .and_then(|s| s.parse::<i32>().ok())
                .map_or(tonic::Code::Ok, tonic::Code::from_i32);
            // A method that does not exist is counted as one label, whatever the client sent.
            let counted = if status == tonic::Code::Unimplemented {
                "unknown".to_owned()
            } else {
                method.clone()
            };
            metrics::counter!(
                "roomcast_grpc_requests_total",
                "method" => counted,
                "code" => format!("{status:?}")
            )
            .increment(1);
            if let Some((access, client)) = logged {
                let client = client.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
                tracing::info!(
                    target: "roomcast::access",
                    method = %method,
                    status = ?status,
                    duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                    user = %access.user(),
                    client = %client,
                    "call"
                );
            }
            Ok(res.map(|body| Held { body, _call: call }))
        })
    }
}
