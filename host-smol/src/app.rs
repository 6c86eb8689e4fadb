//! The routes and what they share. Handlers translate HTTP to hub calls and back; chat rules
//! live in the core.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use roomcast_hub::Hub;
use roomcast_hub::identity::{AuthError, Caller};
use roomcast_hub::telemetry::Metrics;
use tide::{Request, Response, StatusCode};

use crate::problem::Problem;
use crate::{api, auth, openapi, pages, sse, ws};

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
    app.at("/direct").post(h(pages::direct));
    app.at("/sign-in")
        .get(h(pages::sign_in_page))
        .post(h(pages::sign_in));
    app.at("/register")
        .get(h(pages::register_page))
        .post(h(pages::register));
    app.at("/guest").post(h(pages::guest));
    app.at("/sign-out").post(h(pages::sign_out));
    app.at("/room/:room")
        .get(h(pages::room))
        .post(h(pages::post_message))
        .delete(h(api::delete_room));
    app.at("/room/:room/members").post(h(pages::members));
    app.at("/room/:room/members/remove").post(h(pages::members));
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
    app.at("/api/v1/rooms/:room/members").post(h(api::invite));
    app.at("/api/v1/rooms/:room/members/:user")
        .delete(h(api::remove_member));
    app.at("/api/v1/direct").post(h(api::direct));
    app.at("/api/v1/auth/register").post(h(auth::register));
    app.at("/api/v1/auth/sign-in").post(h(auth::sign_in));
    app.at("/api/v1/auth/guest").post(h(auth::guest));
    app.at("/api/v1/auth/sign-out").post(h(auth::sign_out));
    app.at("/api/v1/auth/me").get(h(auth::me));
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

/// The cookie that carries a browser's session token (HttpOnly, SameSite=Lax).
pub const SESSION_COOKIE: &str = "roomcast_session";

/// The token a request carries: `Authorization: Bearer`, else the session cookie. Never the URL.
pub fn token(req: &Request<State>) -> Option<String> {
    let bearer = req.header("Authorization").and_then(|values| {
        let value = values.last().as_str();
        value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(|t| t.trim().to_owned())
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

/// The verified caller. A `?user=` naming someone else is refused, never believed.
pub fn caller(req: &Request<State>) -> Result<Caller, Problem> {
    let token = token(req).ok_or(AuthError::Missing)?;
    let caller = req.state().hub.identity().verify(&token)?;
    if let Some(named) = crate::problem::query::<_, Actor>(req)?.user {
        same_user(&named, &caller.user)?;
    }
    Ok(caller)
}

/// The verified caller's name.
pub fn actor(req: &Request<State>) -> Result<String, Problem> {
    caller(req).map(|c| c.user)
}

/// Refuses a request body or query that names a user other than the caller.
pub fn same_user(named: &str, caller: &str) -> Result<(), Problem> {
    if named == caller {
        Ok(())
    } else {
        Err(Problem::impersonation(named, caller))
    }
}
