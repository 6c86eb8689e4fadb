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
use crate::server::{ClientIp, RouteName};
use crate::{api, auth, openapi, pages, sse, ws};
use roomcast_hub::telemetry::Access;

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

/// Adapts a handler that fails with a [`Problem`] into a tide endpoint that answers with it,
/// naming its route for the access log.
fn h<F, Fut>(route: &'static str, f: F) -> impl tide::Endpoint<State>
where
    F: Fn(Request<State>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response, Problem>> + Send + 'static,
{
    move |req: Request<State>| {
        let f = f.clone();
        async move {
            let mut res = f(req).await.unwrap_or_else(Response::from);
            res.insert_ext(RouteName(route));
            Ok::<Response, tide::Error>(res)
        }
    }
}

/// A route under construction: its pattern goes to every handler it gets.
struct Route<'a> {
    route: tide::Route<'a, State>,
    pattern: &'static str,
}

impl Route<'_> {
    fn get<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Request<State>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response, Problem>> + Send + 'static,
    {
        self.route.get(h(self.pattern, f));
        self
    }

    fn post<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Request<State>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response, Problem>> + Send + 'static,
    {
        self.route.post(h(self.pattern, f));
        self
    }

    fn delete<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Request<State>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response, Problem>> + Send + 'static,
    {
        self.route.delete(h(self.pattern, f));
        self
    }
}

fn at<'a>(app: &'a mut tide::Server<State>, pattern: &'static str) -> Route<'a> {
    Route {
        route: app.at(pattern),
        pattern,
    }
}

/// Builds the web application.
pub fn build(state: State) -> tide::Server<State> {
    let mut app = tide::with_state(state);
    app.with(tide::utils::After(fill_empty_errors));
    // The web page and the seed's routes.
    at(&mut app, "/").get(pages::index);
    at(&mut app, "/rooms").post(pages::create_room);
    at(&mut app, "/direct").post(pages::direct);
    at(&mut app, "/sign-in")
        .get(pages::sign_in_page)
        .post(pages::sign_in);
    at(&mut app, "/register")
        .get(pages::register_page)
        .post(pages::register);
    at(&mut app, "/guest").post(pages::guest);
    at(&mut app, "/sign-out").post(pages::sign_out);
    at(&mut app, "/room/:room")
        .get(pages::room)
        .post(pages::post_message)
        .delete(api::delete_room);
    at(&mut app, "/room/:room/members").post(pages::members);
    at(&mut app, "/room/:room/members/remove").post(pages::members);
    at(&mut app, "/stream/:room").get(sse::seed_stream);
    at(&mut app, "/submit").post(api::seed_submit);
    at(&mut app, "/assets/:file").get(pages::asset);
    // The JSON API.
    at(&mut app, "/api/openapi.json").get(openapi::document);
    at(&mut app, "/api/v1/rooms")
        .get(api::list_rooms)
        .post(api::create_room);
    at(&mut app, "/api/v1/rooms/:room")
        .get(api::room)
        .delete(api::delete_room);
    at(&mut app, "/api/v1/rooms/:room/messages")
        .get(api::history)
        .post(api::post_message);
    at(&mut app, "/api/v1/rooms/:room/presence").get(api::presence);
    at(&mut app, "/api/v1/rooms/:room/members").post(api::invite);
    at(&mut app, "/api/v1/rooms/:room/members/:user").delete(api::remove_member);
    at(&mut app, "/api/v1/direct").post(api::direct);
    at(&mut app, "/api/v1/auth/register").post(auth::register);
    at(&mut app, "/api/v1/auth/sign-in").post(auth::sign_in);
    at(&mut app, "/api/v1/auth/guest").post(auth::guest);
    at(&mut app, "/api/v1/auth/sign-out").post(auth::sign_out);
    at(&mut app, "/api/v1/auth/me").get(auth::me);
    at(&mut app, "/api/v1/rooms/:room/events").get(sse::stream);
    at(&mut app, "/api/v1/rooms/:room/ws").get(ws::upgrade);
    // Operations.
    at(&mut app, "/healthz").get(api::health);
    at(&mut app, "/metrics").get(api::metrics);
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

/// The verified caller (recorded for the access log). A `?user=` naming someone else is
/// refused, never believed.
pub fn caller(req: &Request<State>) -> Result<Caller, Problem> {
    let token = token(req).ok_or(AuthError::Missing)?;
    let caller = req.state().hub.identity().verify(&token)?;
    if let Some(access) = req.ext::<Access>() {
        access.set_user(&caller.user);
    }
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

/// The client's address (behind a trusted proxy, the one it forwarded), for per-address limits.
pub fn client_ip(req: &Request<State>) -> std::net::IpAddr {
    req.ext::<ClientIp>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0)
}
