//! What a handler reads from a request, written once: the shared [`State`], the verified
//! caller (token or session cookie), path and query parameters, bodies within their limits
//! (JSON, forms), and what the connection put in the request's extensions ([`ClientIp`],
//! [`PeerWatch`]). Everything here sits below the handlers and above [`crate::problem`].

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_io::Async;
use futures_lite::AsyncReadExt;
use roomcast_hub::Hub;
use roomcast_hub::identity::Caller;
use roomcast_hub::telemetry::{Access, Metrics};
use serde::de::DeserializeOwned;
use tide::http::mime;
use tide::{Request, StatusCode};

use crate::problem::Problem;

/// What every handler can reach.
#[derive(Clone)]
pub struct State {
    /// The core's owner.
    pub hub: Hub,
    /// The Prometheus recorder.
    pub metrics: Metrics,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// How often idle streams send a heartbeat.
    pub heartbeat: Duration,
    /// Counts open streams, so shutdown can wait for them to say goodbye.
    pub streams: Streams,
    /// Pages on other origins that may use the API.
    pub origins: crate::origins::AllowedOrigins,
}

/// The number of open SSE and WebSocket streams.
#[derive(Clone, Default)]
pub struct Streams(Arc<AtomicUsize>);

impl Streams {
    /// Counts a stream until the returned guard is dropped.
    pub fn open(&self) -> StreamGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        StreamGuard(self.0.clone())
    }

    /// How many are open.
    pub fn active(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// One open stream; see [`Streams`].
pub struct StreamGuard(Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The `:room` path segment.
pub fn room_param(req: &Request<State>) -> String {
    req.param("room").unwrap_or_default().to_owned()
}

#[derive(serde::Deserialize)]
struct Actor {
    user: Option<String>,
}

/// The cookie that carries a browser's session token (HttpOnly, SameSite=Lax).
pub const SESSION_COOKIE: &str = "roomcast_session";

/// The token a request carries: `Authorization: Bearer`, else the session cookie. Never the URL.
pub fn token(req: &Request<State>) -> Option<String> {
    let bearer = req.header("Authorization").and_then(|values| {
        roomcast_hub::identity::bearer(values.last().as_str()).map(str::to_owned)
    });
    bearer.or_else(|| cookie(req, SESSION_COOKIE))
}

/// A cookie's value from the `Cookie` header(s).
pub fn cookie(req: &Request<State>, name: &str) -> Option<String> {
    req.header("Cookie")?
        .iter()
        .flat_map(|v| v.as_str().split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.to_owned())
        })
}

/// The verified caller (recorded for the access log). A `?user=` naming someone else is
/// refused, never believed.
pub fn caller(req: &Request<State>) -> Result<Caller, Problem> {
    let api_key = req
        .header(roomcast_hub::identity::API_KEY_HEADER)
        .map(|v| v.last().as_str().to_owned());
    let caller = req
        .state()
        .hub
        .identity()
        .authenticate(api_key.as_deref(), token(req).as_deref())?;
    if let Some(access) = req.ext::<Access>() {
        access.set_user(&caller.user);
    }
    let named = query::<_, Actor>(req)?.user;
    caller.check_named(named.as_deref())?;
    Ok(caller)
}

/// The verified caller's id.
pub fn actor(req: &Request<State>) -> Result<String, Problem> {
    caller(req).map(|c| c.user)
}

/// The moderation a client asks for (REST, WebSocket): `action` on `target`, a name or an id,
/// resolved to whom it names (someone present, unless it takes something away).
pub async fn moderation(
    hub: &Hub,
    target: &str,
    action: &str,
    seconds: Option<u64>,
) -> Result<roomcast_core::Kind, Problem> {
    let action =
        roomcast_core::Moderation::named(action, seconds).map_err(roomcast_core::Error::from)?;
    let need = roomcast_hub::identity::Need::to_moderate(action);
    let target = hub.identity().resolve(target, need).await?;
    Ok(roomcast_core::Kind::Moderate {
        user: target,
        action,
    })
}

/// The client's address (behind a trusted proxy, the one it forwarded), for per-address limits.
pub fn client_ip(req: &Request<State>) -> std::net::IpAddr {
    req.ext::<ClientIp>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0)
}

/// The client's address (behind a trusted proxy, the one it forwarded), in request extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// Whether the client reached this server over HTTPS: served over TLS, or through a trusted
/// proxy that says so. Cookies set then are `Secure`, so the browser never sends them over
/// plain HTTP.
#[derive(Debug, Clone, Copy)]
pub struct Https(pub bool);

/// `; Secure` for a cookie set in answer to `req` if it came over HTTPS, else nothing.
pub fn secure_cookie(req: &Request<State>) -> &'static str {
    if req.ext::<Https>().is_some_and(|h| h.0) {
        "; Secure"
    } else {
        ""
    }
}

/// The route a response came from (its pattern, not the path), in response extensions.
#[derive(Debug, Clone, Copy)]
pub struct RouteName(pub &'static str);

/// Lets a streaming response notice that its client hung up while nothing is being written,
/// so the listener closes (and presence says so) at once rather than at the next heartbeat.
#[derive(Clone)]
pub struct PeerWatch {
    tcp: Arc<Async<std::net::TcpStream>>,
    /// The TLS session over `tcp`, if served over TLS: a hang-up is read through it (a peeked
    /// close_notify alert would look like data).
    tls: Option<crate::tls::TlsStream>,
}

/// The kernel send buffer of a stream's socket. Autotuning would let a client that stops
/// reading park up to 4 MiB in the kernel; a chat stream needs far less in flight, and a
/// small buffer also makes a stalled client meet the write timeout sooner.
const STREAM_SEND_BUFFER_BYTES: usize = 64 * 1024;

impl PeerWatch {
    /// Watches the connection on `tcp`.
    pub fn new(tcp: Arc<Async<std::net::TcpStream>>, tls: Option<crate::tls::TlsStream>) -> Self {
        PeerWatch { tcp, tls }
    }

    /// Bounds the socket's send buffer for a long-lived stream.
    pub fn bound_send_buffer(&self) {
        let socket = socket2::SockRef::from(self.tcp.get_ref());
        if let Err(e) = socket.set_send_buffer_size(STREAM_SEND_BUFFER_BYTES) {
            tracing::debug!(error = %e, "cannot bound the send buffer");
        }
    }

    /// Resolves when the peer has closed its side of the connection. A peer that sends more
    /// (a pipelined request) is left alone: this then never resolves.
    ///
    /// Peeks only when the socket turns readable (`Async::peek` would peek again at every
    /// poll of the task, that is at every message sent on the stream).
    pub async fn closed(&self) {
        let mut byte = [0u8; 1];
        if let Some(tls) = &self.tls {
            // Boxed: a plain connection's watch keeps no room for it.
            return Box::pin(tls_closed(tls.clone())).await;
        }
        loop {
            match self.tcp.get_ref().peek(&mut byte) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.tcp.readable().await.is_err() {
                        return;
                    }
                }
                Ok(0) | Err(_) => return,
                Ok(_) => std::future::pending().await,
            }
        }
    }
}

/// Resolves when the peer of a TLS stream has hung up. Nothing else reads a stream's
/// connection: an end (close_notify, or the socket's) or an error is the hang-up; data (a
/// pipelined request) is left alone, as on plain TCP.
async fn tls_closed(mut tls: crate::tls::TlsStream) {
    match tls.read(&mut [0u8; 1]).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Reads the request body, refusing more than the configured maximum without reading it all.
#[allow(
    clippy::wildcard_enum_match_arm,
    reason = "any other failure to read is the client's"
)]
pub async fn read_body(req: &mut Request<State>) -> Result<Vec<u8>, Problem> {
    let limit = req.state().max_body;
    let too_large = |len: usize| {
        Problem::new(
            StatusCode::PayloadTooLarge,
            "body-too-large",
            format!("the request body is {len} bytes or more, over the limit of {limit}"),
        )
    };
    if let Some(len) = req.len().filter(|len| *len > limit) {
        return Err(too_large(len));
    }
    let mut body = Vec::new();
    let limit_plus_one = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    req.take_body()
        .take(limit_plus_one)
        .read_to_end(&mut body)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut => Problem::new(
                StatusCode::RequestTimeout,
                "request-timeout",
                format!("the body did not arrive in time: {e}"),
            ),
            _ => Problem::new(
                StatusCode::BadRequest,
                "unreadable-body",
                format!("could not read the body: {e}"),
            ),
        })?;
    if body.len() > limit {
        return Err(too_large(body.len()));
    }
    Ok(body)
}

fn require_content_type<S>(req: &Request<S>, wanted: &mime::Mime) -> Result<(), Problem> {
    let given = req.content_type();
    if given.as_ref().map(mime::Mime::essence) == Some(wanted.essence()) {
        return Ok(());
    }
    let given = given.map_or_else(|| "none".to_owned(), |m| m.essence().to_owned());
    Err(Problem::new(
        StatusCode::UnsupportedMediaType,
        "unsupported-media-type",
        format!("expected Content-Type {}, got {given}", wanted.essence()),
    ))
}

/// Parses a JSON body into `T`.
pub async fn json_body<T: DeserializeOwned>(req: &mut Request<State>) -> Result<T, Problem> {
    require_content_type(req, &mime::JSON)?;
    let body = read_body(req).await?;
    parse_json(&body)
}

/// Parses JSON text into `T`, telling malformed JSON (400) from the wrong shape (422).
pub fn parse_json<T: DeserializeOwned>(text: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Problem::new(
            StatusCode::UnprocessableEntity,
            "invalid-body",
            format!("the JSON does not fit: {e}"),
        ),
        serde_json::error::Category::Io
        | serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof => Problem::new(
            StatusCode::BadRequest,
            "malformed-json",
            format!("the body is not valid JSON: {e}"),
        ),
    })
}

/// Parses an HTML form body into `T`.
pub async fn form_body<T: DeserializeOwned>(req: &mut Request<State>) -> Result<T, Problem> {
    require_content_type(req, &mime::FORM)?;
    let body = read_body(req).await?;
    serde_urlencoded::from_bytes(&body).map_err(|e| {
        Problem::new(
            StatusCode::BadRequest,
            "invalid-form",
            format!("the form does not fit: {e}"),
        )
    })
}

/// Parses the query string into `T`.
pub fn query<S, T: DeserializeOwned>(req: &Request<S>) -> Result<T, Problem> {
    serde_urlencoded::from_str(req.url().query().unwrap_or("")).map_err(|e| {
        Problem::new(
            StatusCode::BadRequest,
            "invalid-query",
            format!("the query string does not fit: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_tell_syntax_from_shape() {
        let e = parse_json::<crate::wire::PostMessage>(b"{\"user\": ").unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BadRequest, "malformed-json")
        );
        let e = parse_json::<crate::wire::PostMessage>(b"{\"user\": \"ada\"}").unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::UnprocessableEntity, "invalid-body")
        );
        assert!(e.detail.contains("missing field `text`"), "{}", e.detail);
    }
}
