//! The routes and what they share. Handlers translate HTTP to hub calls and back; chat rules
//! live in the core.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use roomcast_hub::Hub;
use roomcast_hub::telemetry::Metrics;
use tide::{Request, Response, StatusCode};

use crate::problem::Problem;
use crate::{api, openapi, pages, sse, ws};

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

/// Adapts a handler that fails with a [`Problem`] into a tide endpoint that answers with it.
fn h<F, Fut>(f: F) -> impl tide::Endpoint<State>
where
    F: Fn(Request<State>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response, Problem>> + Send + 'static,
{
    move |req: Request<State>| {
        let f = f.clone();
        async move { Ok::<Response, tide::Error>(f(req).await.unwrap_or_else(Response::from)) }
    }
}

/// Builds the web application.
pub fn build(state: State) -> tide::Server<State> {
    let mut app = tide::with_state(state);
    app.with(tide::utils::After(fill_empty_errors));
    // The web page and the seed's routes.
    app.at("/").get(h(pages::index));
    app.at("/rooms").post(h(pages::create_room));
    app.at("/room/:room")
        .get(h(pages::room))
        .post(h(pages::post_message))
        .delete(h(api::delete_room));
    app.at("/stream/:room").get(h(sse::seed_stream));
    app.at("/submit").post(h(api::seed_submit));
    app.at("/assets/:file").get(h(pages::asset));
    // The JSON API.
    app.at("/api/openapi.json").get(h(openapi::document));
    app.at("/api/v1/rooms")
        .get(h(api::list_rooms))
        .post(h(api::create_room));
    app.at("/api/v1/rooms/:room")
        .get(h(api::room))
        .delete(h(api::delete_room));
    app.at("/api/v1/rooms/:room/messages")
        .get(h(api::history))
        .post(h(api::post_message));
    app.at("/api/v1/rooms/:room/presence").get(h(api::presence));
    app.at("/api/v1/rooms/:room/events").get(h(sse::stream));
    app.at("/api/v1/rooms/:room/ws").get(h(ws::upgrade));
    // Operations.
    app.at("/healthz").get(h(api::health));
    app.at("/metrics").get(h(api::metrics));
    app
}

/// Gives tide's own bare 404 and 405 answers a problem body, like every other refusal.
async fn fill_empty_errors(res: Response) -> tide::Result {
    let status = res.status();
    if status.is_client_error() && res.content_type().is_none() {
        let (code, detail) = match status {
            StatusCode::NotFound => ("no-such-route", "no route matches this path"),
            StatusCode::MethodNotAllowed => {
                ("method-not-allowed", "this path does not take this method")
            }
            _ => ("bad-request", "the request was refused"),
        };
        return Ok(Problem::new(status, code, detail).into());
    }
    Ok(res)
}

/// The `:room` path segment.
pub fn room_param(req: &Request<State>) -> String {
    req.param("room").unwrap_or_default().to_owned()
}

#[derive(serde::Deserialize)]
struct Actor {
    user: Option<String>,
}

/// Who acts, as the client names itself until accounts exist: `?user=`, else `anonymous`.
pub fn actor(req: &Request<State>) -> Result<String, Problem> {
    Ok(crate::problem::query::<_, Actor>(req)?
        .user
        .unwrap_or_else(|| "anonymous".into()))
}
